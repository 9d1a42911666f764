/* Gradient-check cases (see tests/gradcheck.h) for conv2d: stride, padding,
 * dilation, groups and depthwise, with and without bias, rectangular and
 * 1x1 kernels, non-square inputs, batches of 1 and 3, and non-contiguous
 * leaves (a stepped input view, a permuted weight). */
#include "gradcheck.h"
#include <stdint.h>
#include <string.h>

/* A N(0,1) leaf needing a gradient. */
static nb_tensor *leaf(nb_ctx *ctx, int nd, const int64_t *shape)
{
    return nb_requires_grad(nb_tensor_randn(ctx, nd, shape), 1);
}

/* x[..., ::2] of a (N, C, H, 2W+1) tensor: a leaf with stride 2 along W. */
static nb_tensor *stepped_leaf(nb_ctx *ctx, int64_t N, int64_t C, int64_t H, int64_t W)
{
    nb_tensor *t = nb_tensor_randn(ctx, 4, (int64_t[]){N, C, H, 2 * W + 1});
    return nb_requires_grad(nb_slice(ctx, t, 3, 1, INT64_MAX, 2), 1);
}

/* A weight (O, Cg, kh, kw) stored as (Cg, O, kh, kw) and permuted: strided. */
static nb_tensor *permuted_leaf(nb_ctx *ctx, int64_t O, int64_t Cg, int64_t kh, int64_t kw)
{
    nb_tensor *t = nb_tensor_randn(ctx, 4, (int64_t[]){Cg, O, kh, kw});
    return nb_requires_grad(nb_permute(ctx, t, (const int[]){1, 0, 2, 3}), 1);
}

/* iarg: stride h w, padding h w, dilation h w, groups, has bias */
static nb_tensor *f_conv(nb_ctx *ctx, gc_case *c)
{
    const int *a = c->iarg;
    nb_conv2d_opts o = {{a[0], a[1]}, {a[2], a[3]}, {a[4], a[5]}, a[6]};
    return nb_conv2d(ctx, c->in[0], c->in[1], a[7] ? c->in[2] : NULL, &o);
}

typedef struct {
    const char *label;
    int64_t N, C, H, W, O, kh, kw;
    int sh, sw, ph, pw, dh, dw, groups, bias;
    int xview, wview;                 /* stepped input, permuted weight */
} conv_gc;

static const conv_gc cases[] = {
    {"3x3 plain, bias", 2, 3, 5, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0},
    {"stride 2 padding 1", 1, 2, 7, 7, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0},
    {"padding 2, no bias", 1, 2, 5, 5, 2, 3, 3, 1, 1, 2, 2, 1, 1, 1, 0, 0, 0},
    {"dilation 2 padding 1", 1, 2, 7, 8, 3, 3, 3, 1, 1, 1, 1, 2, 2, 1, 1, 0, 0},
    {"groups 2", 2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 0, 0},
    {"depthwise", 2, 3, 6, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, 1, 0, 0},
    {"depthwise x2 stride 2 dilation 2, no bias", 1, 3, 7, 7, 6, 3, 3, 2, 2, 2, 2, 2, 2, 3, 0, 0, 0},
    {"rectangular 2x3 kernel, stride (2,1), padding (1,0)", 1, 3, 6, 7, 2, 2, 3, 2, 1, 1, 0, 1, 1, 1, 1, 0, 0},
    {"1x1", 3, 4, 3, 4, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0},
    {"1x1 stride 2, no bias", 1, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0, 0},
    {"1x1 groups 2", 2, 4, 3, 3, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2, 1, 0, 0},
    {"non-square 3x2 kernel, dilation (1,2), batch 3", 3, 2, 4, 7, 3, 3, 2, 1, 1, 0, 1, 1, 2, 1, 1, 0, 0},
    {"strided input view", 2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0},
    {"permuted weight view, groups 2", 1, 4, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 0, 1},
    {"strided input, depthwise", 1, 2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 1, 0},
    {"dilation 2 padding 2 (same size)", 2, 2, 6, 7, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 0, 0},
    {"1x3 kernel padding (0,1) (same size)", 1, 3, 4, 6, 2, 1, 3, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0},
    {"5x5 padding 2 batch 3 (same size)", 3, 2, 6, 5, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1, 0, 0},
    /* wider layers, still small enough to check every weight often */
    {"16 channels, 3x3 padding (1,2) dilation (1,2)", 1, 16, 5, 4, 16, 3, 3, 1, 1, 1, 2, 1, 2, 1, 1, 0, 0},
    {"32 channels groups 2, strided input", 2, 32, 4, 3, 16, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 1, 0},
};

int gc_conv2d(nb_ctx *ctx, int variant, gc_case *c)
{
    if (variant < 0 || variant >= (int)(sizeof cases / sizeof cases[0])) return 0;
    const conv_gc *k = &cases[variant];
    const int64_t cg = k->C / k->groups;
    c->label = k->label;
    c->fn = f_conv;
    c->in[0] = k->xview ? stepped_leaf(ctx, k->N, k->C, k->H, k->W)
                        : leaf(ctx, 4, (int64_t[]){k->N, k->C, k->H, k->W});
    c->in[1] = k->wview ? permuted_leaf(ctx, k->O, cg, k->kh, k->kw)
                        : leaf(ctx, 4, (int64_t[]){k->O, cg, k->kh, k->kw});
    c->nin = 2;
    if (k->bias) {
        c->in[2] = leaf(ctx, 1, (int64_t[]){k->O});
        c->nin = 3;
    }
    const int a[8] = {k->sh, k->sw, k->ph, k->pw, k->dh, k->dw, k->groups, k->bias};
    memcpy(c->iarg, a, sizeof a);
    return 1;
}
