/* Gradient-check cases (see tests/gradcheck.h) for the fused
 * batch_norm -> relu -> max_pool2d(2) op (src/ops/bn_relu_pool.c): training
 * and evaluation, with and without weight and bias, odd heights and widths
 * (inputs outside every window), a non-contiguous input.
 *
 * The function has kinks where a normalised value crosses 0 (relu) or two
 * values of a window tie (max), so the inputs keep well away from both: each
 * channel holds a shuffled ramp symmetric about 0 with steps of 0.1 (its mean
 * is 0, no value is within 0.05 of it, and no two are closer than 0.1), and
 * the bias moves the relu's zero to x = 0.1 * j, half a step from any value. */
#include "gradcheck.h"
#include "../src/ops/batchnorm.h"
#include <math.h>
#include <stdint.h>

#define S(...) NB_SHAPE(__VA_ARGS__)
#define EPS 1e-5f

/* (N, C, H, W) leaf, or a view of the transpose of its last two dimensions;
 * channel c holds the values 0.1 * (k - (n - 1) / 2), k < n = N*H*W,
 * shuffled. */
static nb_tensor *ramp_leaf(nb_ctx *ctx, int transposed, const int64_t *shape)
{
    int64_t sh[4] = {shape[0], shape[1], transposed ? shape[3] : shape[2], transposed ? shape[2] : shape[3]};
    nb_tensor *t = nb_tensor_zeros(ctx, 4, sh);
    if (t && transposed) t = nb_transpose(ctx, t, -1, -2);
    if (!t) return NULL;
    const int64_t N = shape[0], C = shape[1], H = shape[2], W = shape[3], n = N * H * W;
    uint32_t *perm = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)n * sizeof(uint32_t));
    if (!perm) return NULL;
    for (int64_t c = 0; c < C; c++) {
        for (uint32_t k = 0; k < (uint32_t)n; k++) perm[k] = k;
        nb_rng_shuffle_u32(nb_ctx_rng(ctx), perm, (size_t)n);
        for (int64_t k = 0; k < n; k++) {
            int64_t i = k / (H * W), h = k / W % H, w = k % W;
            t->data[i * t->stride[0] + c * t->stride[1] + h * t->stride[2] + w * t->stride[3]] =
                0.1f * ((float)perm[k] - (float)(n - 1) / 2);
        }
    }
    return nb_requires_grad(t, 1);
}

/* Running statistics for evaluation: means on the 0.1 grid (the relu's zero
 * half a step from any value), variances near 1. */
static void running(int64_t C, float *rm, float *rv)
{
    for (int64_t c = 0; c < C; c++) {
        rm[c] = 0.1f * (float)(c % 3 - 1);
        rv[c] = 0.6f + 0.2f * (float)(c % 4);
    }
}

/* iarg[0] training, iarg[1] has weight, iarg[2] has bias. */
static nb_tensor *f_fused(nb_ctx *ctx, gc_case *c)
{
    float rm[16], rv[16];
    running(16, rm, rv);
    int k = 1;
    nb_tensor *w = c->iarg[1] ? c->in[k++] : NULL;
    nb_tensor *b = c->iarg[2] ? c->in[k++] : NULL;
    return nb__batch_norm_relu_max_pool(ctx, c->in[0], w, b, rm, rv, c->iarg[0], 0.1f, EPS);
}

/* Weight 0.8, 1.0, 1.2, ... and a bias putting the relu's zero at x = 0.1 j
 * (j = -1, 0, 1, ...): b = -0.1 j * weight * invstd, with the statistics of a
 * ramp of n values in training (mean 0) or the running ones in evaluation
 * (whose mean is already on the grid: j = 0 there); appended to c's leaves
 * as asked. */
static int bn_params(nb_ctx *ctx, gc_case *c, int training, int has_w, int has_b, int64_t C, int64_t n)
{
    nb_tensor *w = has_w ? nb_tensor_new(ctx, 1, &C) : NULL;
    nb_tensor *b = has_b ? nb_tensor_new(ctx, 1, &C) : NULL;
    if ((has_w && !w) || (has_b && !b)) return 0;
    float rm[16], rv[16];
    running(16, rm, rv);
    double var = 0;   /* the ramp's biased variance: mean of its squares */
    for (int64_t k = 0; k < n; k++) var += pow(0.1 * ((double)k - (double)(n - 1) / 2), 2) / (double)n;
    for (int64_t ch = 0; ch < C; ch++) {
        float gamma = 0.8f + 0.2f * (float)(ch % 3);
        if (w) w->data[ch] = gamma;
        double invstd = 1.0 / sqrt((training ? var : (double)rv[ch]) + (double)EPS);
        if (b) b->data[ch] = training ? (float)(-0.1 * (double)(ch % 3 - 1) * (w ? gamma : 1.0f) * invstd) : 0.0f;
    }
    if (w) c->in[c->nin++] = nb_requires_grad(w, 1);
    if (b) c->in[c->nin++] = nb_requires_grad(b, 1);
    return 1;
}

/* A case of the op on a ramp (see bn_params for its parameters). */
static int fused_case(nb_ctx *ctx, gc_case *c, const char *label, int training, int has_w, int has_b,
                      int transposed, const int64_t *shape)
{
    const int64_t N = shape[0], C = shape[1], n = N * shape[2] * shape[3];
    c->label = label;
    c->fn = f_fused;
    c->iarg[0] = training;
    c->iarg[1] = has_w;
    c->iarg[2] = has_b;
    c->nin = 0;
    c->in[c->nin++] = ramp_leaf(ctx, transposed, shape);
    return bn_params(ctx, c, training, has_w, has_b, C, n);
}

int gc_batch_norm_relu_max_pool(nb_ctx *ctx, int v, gc_case *c)
{
    switch (v) {
    case 0: return fused_case(ctx, c, "train (2,3,4,4) affine", 1, 1, 1, 0, (int64_t[]){2, 3, 4, 4});
    case 1: return fused_case(ctx, c, "train (3,2,5,6) no affine, odd H", 1, 0, 0, 0, (int64_t[]){3, 2, 5, 6});
    case 2: return fused_case(ctx, c, "eval (2,3,4,6) affine", 0, 1, 1, 0, (int64_t[]){2, 3, 4, 6});
    case 3: return fused_case(ctx, c, "train (2,2,7,5) weight only, odd H and W", 1, 1, 0, 0, (int64_t[]){2, 2, 7, 5});
    case 4: return fused_case(ctx, c, "train transposed (2,2,4,6) affine", 1, 1, 1, 1, (int64_t[]){2, 2, 4, 6});
    case 5: return fused_case(ctx, c, "eval (1,2,3,2) bias only", 0, 0, 1, 0, (int64_t[]){1, 2, 3, 2});
    default: return 0;
    }
}

/* ---- with the one-channel convolution in front ------------------------------------
 * The images are a shuffled ramp (no gradient); the 3x3 kernels are 1 at the
 * centre and +-0.001 elsewhere, so each channel of the convolution's output
 * is the ramp moved by at most 0.03: still clear of the relu's zero and of
 * ties, also with the checker's step (eps 2e-3 here). */

/* iarg[0] training, iarg[1] conv bias, iarg[2] batch-norm weight, iarg[3]
 * batch-norm bias, iarg[4] padding. */
static nb_tensor *f_conv_fused(nb_ctx *ctx, gc_case *c)
{
    float rm[16], rv[16];
    running(16, rm, rv);
    int k = 1;
    nb_tensor *x = c->in[0], *cw = c->in[k++];
    nb_tensor *cb = c->iarg[1] ? c->in[k++] : NULL;
    nb_tensor *w = c->iarg[2] ? c->in[k++] : NULL;
    nb_tensor *b = c->iarg[3] ? c->in[k++] : NULL;
    nb_conv2d_opts co = {{1, 1}, {c->iarg[4], c->iarg[4]}, {1, 1}, 1};
    nb__cd_geom cd;
    const int grad = nb_set_grad_enabled(ctx, 0);
    nb_tensor *y1 = nb_conv2d(ctx, x, cw, cb, &co);
    nb_set_grad_enabled(ctx, grad);
    if (!nb__conv_direct_geometry(x, cw, cb, &co, &cd)) /* no AVX-512: the unfused ops (a vacuous check) */
        return nb__batch_norm_relu_max_pool(ctx, nb_conv2d(ctx, x, cw, cb, &co), w, b, rm, rv, c->iarg[0], 0.1f,
                                            EPS);
    return nb__conv_batch_norm_relu_max_pool(ctx, x, cw, cb, &co, y1, w, b, rm, rv, c->iarg[0], 0.1f, EPS);
}

static int conv_fused_case(nb_ctx *ctx, gc_case *c, const char *label, int training, int has_cb, int has_w,
                           int has_b, int pad, const int64_t *shape, int64_t O)
{
    c->label = label;
    c->fn = f_conv_fused;
    c->eps = 2e-3f;
    c->iarg[0] = training;
    c->iarg[1] = has_cb;
    c->iarg[2] = has_w;
    c->iarg[3] = has_b;
    c->iarg[4] = pad;
    c->nin = 0;
    nb_tensor *x = ramp_leaf(ctx, 0, shape);
    if (!x) return 0;
    nb_requires_grad(x, 0);
    c->in[c->nin++] = x;
    nb_tensor *cw = nb_tensor_new(ctx, 4, (int64_t[]){O, 1, 3, 3});
    if (!cw) return 0;
    for (int64_t i = 0; i < O * 9; i++) cw->data[i] = i % 9 == 4 ? 1.0f : 0.001f * (float)((i * 7 % 3) - 1);
    c->in[c->nin++] = nb_requires_grad(cw, 1);
    if (has_cb) {
        nb_tensor *cb = nb_tensor_new(ctx, 1, &O);
        if (!cb) return 0;
        for (int64_t o = 0; o < O; o++) cb->data[o] = 0.01f * (float)(o - 1); /* moves the mean, not the spacing */
        c->in[c->nin++] = nb_requires_grad(cb, 1);
    }
    return bn_params(ctx, c, training, has_w, has_b, O, shape[0] * shape[2] * shape[3]);
}

int gc_conv_batch_norm_relu_max_pool(nb_ctx *ctx, int v, gc_case *c)
{
    switch (v) {
    case 0: return conv_fused_case(ctx, c, "train (2,1,6,6) pad 1, 3 channels, conv bias, bn weight", 1, 1, 1, 0, 1,
                                   (int64_t[]){2, 1, 6, 6}, 3);
    case 1: return conv_fused_case(ctx, c, "train (2,1,7,9) pad 0 (odd 5x7 output), bn affine", 1, 0, 1, 1, 0,
                                   (int64_t[]){2, 1, 7, 9}, 2);
    case 2: return conv_fused_case(ctx, c, "eval (1,1,6,8) pad 1, conv bias, bn bias", 0, 1, 0, 1, 1,
                                   (int64_t[]){1, 1, 6, 8}, 3);
    default: return 0;
    }
}
