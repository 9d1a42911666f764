/* Gradient-check cases (see tests/gradcheck.h) for batch_norm: (N,C),
 * (N,C,L) and (N,C,H,W); training (batch statistics: the gradient flows
 * through the mean and variance) and evaluation (given running statistics);
 * with and without weight and bias; strided leaves; (N,C) with more than one
 * block of channels. */
#include "gradcheck.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { LC, LT };   /* contiguous; last two dims transposed */

static nb_tensor *leaf(nb_ctx *ctx, float scale, float shift, int layout, int req, int nd, const int64_t *shape)
{
    int64_t sh[NB_MAX_DIMS] = {0};
    for (int d = 0; d < nd; d++) sh[d] = shape[d];
    if (layout == LT) {
        sh[nd - 2] = shape[nd - 1];
        sh[nd - 1] = shape[nd - 2];
    }
    nb_tensor *t = nb_tensor_randn(ctx, nd, sh);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = t->data[i] * scale + shift;
    if (layout == LT) t = nb_transpose(ctx, t, -1, -2);
    return nb_requires_grad(t, req);
}

#define S(...) NB_SHAPE(__VA_ARGS__)

/* iarg[0] training, iarg[1] has weight, iarg[2] has bias; farg[0] momentum,
 * farg[1] eps. Running statistics are fixed per channel (C <= 64). */
static nb_tensor *f_bn(nb_ctx *ctx, gc_case *c)
{
    float rm[64], rv[64];
    for (int k = 0; k < 64; k++) {
        rm[k] = 0.3f * sinf((float)k + 1.0f);
        rv[k] = 0.5f + 0.25f * (float)(k % 5);
    }
    int k = 1;
    nb_tensor *w = c->iarg[1] ? c->in[k++] : NULL;
    nb_tensor *b = c->iarg[2] ? c->in[k++] : NULL;
    return nb_batch_norm(ctx, c->in[0], w, b, rm, rv, c->iarg[0], c->farg[0], c->farg[1]);
}

static int bn_case(nb_ctx *ctx, gc_case *c, const char *label, int training, int has_w, int has_b, int req_x,
                   int layout, int nd, const int64_t *shape)
{
    c->label = label;
    c->fn = f_bn;
    c->iarg[0] = training;
    c->iarg[1] = has_w;
    c->iarg[2] = has_b;
    c->farg[0] = 0.1f;
    c->farg[1] = 1e-5f;
    c->nin = 0;
    c->in[c->nin++] = leaf(ctx, 1.5f, 0.5f, layout, req_x, nd, shape);
    int64_t C = shape[1];
    if (has_w) c->in[c->nin++] = leaf(ctx, 0.5f, 1.0f, LC, 1, S(C));
    if (has_b) c->in[c->nin++] = leaf(ctx, 1.0f, 0.0f, LC, 1, S(C));
    return 1;
}

int gc_batch_norm(nb_ctx *ctx, int v, gc_case *c)
{
    switch (v) {
    case 0: return bn_case(ctx, c, "train (6,3) affine", 1, 1, 1, 1, LC, S(6, 3));
    case 1: return bn_case(ctx, c, "train (2,3,4,5) affine", 1, 1, 1, 1, LC, S(2, 3, 4, 5));
    case 2: return bn_case(ctx, c, "eval (5,3) affine", 0, 1, 1, 1, LC, S(5, 3));
    case 3: return bn_case(ctx, c, "eval (2,3,3,3) affine", 0, 1, 1, 1, LC, S(2, 3, 3, 3));
    case 4: return bn_case(ctx, c, "train (3,4,5) no affine", 1, 0, 0, 1, LC, S(3, 4, 5));
    case 5: return bn_case(ctx, c, "eval (3,2,4) no affine", 0, 0, 0, 1, LC, S(3, 2, 4));
    case 6: return bn_case(ctx, c, "train transposed (2,3,4,3), weight only", 1, 1, 0, 1, LT, S(2, 3, 4, 3));
    case 7: return bn_case(ctx, c, "train (5,40) affine: two channel blocks", 1, 1, 1, 1, LC, S(5, 40));
    case 8: return bn_case(ctx, c, "train (4,2,3) bias only, constant x", 1, 0, 1, 0, LC, S(4, 2, 3));
    case 9: return bn_case(ctx, c, "train (4,2,2,2) constant x, affine", 1, 1, 1, 0, LC, S(4, 2, 2, 2));
    case 10: return bn_case(ctx, c, "eval transposed (4,3) affine", 0, 1, 1, 1, LT, S(4, 3));
    case 11: return bn_case(ctx, c, "train transposed (4,3) affine (strided (N,C))", 1, 1, 1, 1, LT, S(4, 3));
    case 12: return bn_case(ctx, c, "train (2,1,3) one channel", 1, 1, 1, 1, LC, S(2, 1, 3));
    default: return 0;
    }
}
