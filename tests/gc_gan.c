/* Gradient-check cases (see tests/gradcheck.h) for the GAN building blocks:
 * conv_transpose2d (stride, padding, output padding, dilation, groups,
 * with and without bias, rectangular kernels, several tiles of input rows,
 * strided leaves) and instance_norm (with and without affine parameters,
 * 3-D and 4-D inputs, a transposed input view). */
#include "gradcheck.h"
#include <stdint.h>
#include <string.h>

static nb_tensor *leaf(nb_ctx *ctx, int nd, const int64_t *shape)
{
    return nb_requires_grad(nb_tensor_randn(ctx, nd, shape), 1);
}

/* ---- conv_transpose2d ----------------------------------------------------- */

typedef struct {
    const char *label;
    int64_t N, Cin, H, W, Cout, kh, kw;
    int sh, sw, ph, pw, oph, opw, dh, dw, groups, bias;
    int xview;                          /* input as a transposed (N,C,W,H) view */
} convt_gc;

static const convt_gc convt_cases[] = {
    {"3x3 plain, bias", 2, 3, 4, 5, 2, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0},
    {"DCGAN 4x4 stride 2 padding 1", 2, 3, 3, 3, 2, 4, 4, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1, 0},
    {"stride 2 padding 1 output_padding 1, no bias", 1, 2, 3, 4, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"stride (3,2) output_padding (2,1)", 1, 2, 3, 3, 2, 3, 2, 3, 2, 0, 1, 2, 1, 1, 1, 1, 1, 0},
    {"dilation 2 padding 1", 1, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 0, 0, 2, 2, 1, 1, 0},
    {"dilation 2 output_padding 1 (smaller than dilation)", 1, 2, 3, 3, 2, 2, 2, 1, 1, 0, 0, 1, 1, 2, 2, 1, 1, 0},
    {"groups 2", 2, 4, 3, 3, 6, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 2, 1, 0},
    {"groups 3 depthwise-like, dilation (1,2)", 1, 3, 4, 3, 3, 2, 3, 1, 2, 0, 1, 0, 1, 1, 2, 3, 1, 0},
    {"1x1 stride 2", 2, 3, 3, 3, 2, 1, 1, 2, 2, 0, 0, 1, 0, 1, 1, 1, 1, 0},
    {"padding larger than the kernel reach", 1, 2, 6, 5, 2, 3, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1, 0},
    {"transposed input view, groups 2, stride 2", 2, 4, 3, 4, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1},
    /* K*W beyond the 256K-float column tile: one input row per tile */
    {"wide: 4 tiles of input rows", 1, 2, 4, 520, 32, 4, 4, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0},
};

static nb_tensor *f_convt(nb_ctx *ctx, gc_case *c)
{
    const convt_gc *k = &convt_cases[c->iarg[0]];
    nb_conv_transpose2d_opts o = {{k->sh, k->sw}, {k->ph, k->pw}, {k->oph, k->opw}, {k->dh, k->dw}, k->groups};
    return nb_conv_transpose2d(ctx, c->in[0], c->in[1], k->bias ? c->in[2] : NULL, &o);
}

int gc_conv_transpose2d(nb_ctx *ctx, int variant, gc_case *c)
{
    if (variant < 0 || variant >= (int)(sizeof convt_cases / sizeof convt_cases[0])) return 0;
    const convt_gc *k = &convt_cases[variant];
    c->label = k->label;
    c->fn = f_convt;
    c->iarg[0] = variant;
    if (k->xview) {
        nb_tensor *t = nb_tensor_randn(ctx, 4, (int64_t[]){k->N, k->Cin, k->W, k->H});
        c->in[0] = nb_requires_grad(nb_transpose(ctx, t, 2, 3), 1);
    } else {
        c->in[0] = leaf(ctx, 4, (int64_t[]){k->N, k->Cin, k->H, k->W});
    }
    c->in[1] = leaf(ctx, 4, (int64_t[]){k->Cin, k->Cout / k->groups, k->kh, k->kw});
    c->nin = 2;
    if (k->bias) c->in[c->nin++] = leaf(ctx, 1, (int64_t[]){k->Cout});
    return 1;
}

/* ---- instance_norm ----------------------------------------------------------- */

/* iarg[0] has weight, iarg[1] has bias; farg[0] eps */
static nb_tensor *f_in(nb_ctx *ctx, gc_case *c)
{
    int k = 1;
    nb_tensor *w = c->iarg[0] ? c->in[k++] : NULL;
    nb_tensor *b = c->iarg[1] ? c->in[k++] : NULL;
    return nb_instance_norm(ctx, c->in[0], w, b, c->farg[0]);
}

static int in_case(nb_ctx *ctx, gc_case *c, const char *label, int has_w, int has_b, int transposed, int nd,
                   const int64_t *shape)
{
    c->label = label;
    c->fn = f_in;
    c->iarg[0] = has_w;
    c->iarg[1] = has_b;
    c->farg[0] = 1e-5f;
    int64_t sh[NB_MAX_DIMS];
    memcpy(sh, shape, (size_t)nd * sizeof *sh);
    if (transposed) {
        sh[nd - 2] = shape[nd - 1];
        sh[nd - 1] = shape[nd - 2];
    }
    nb_tensor *x = nb_tensor_randn(ctx, nd, sh);
    if (!x) return 1;
    for (int64_t i = 0; i < nb_tensor_numel(x); i++) x->data[i] = 1.5f * x->data[i] + 0.5f;
    if (transposed) x = nb_transpose(ctx, x, -1, -2);
    c->nin = 0;
    c->in[c->nin++] = nb_requires_grad(x, 1);
    if (has_w) c->in[c->nin++] = leaf(ctx, 1, (int64_t[]){shape[1]});
    if (has_b) c->in[c->nin++] = leaf(ctx, 1, (int64_t[]){shape[1]});
    return 1;
}

int gc_instance_norm(nb_ctx *ctx, int v, gc_case *c)
{
    switch (v) {
    case 0: return in_case(ctx, c, "(2,3,4,5) affine", 1, 1, 0, NB_SHAPE(2, 3, 4, 5));
    case 1: return in_case(ctx, c, "(2,3,3,3) no affine", 0, 0, 0, NB_SHAPE(2, 3, 3, 3));
    case 2: return in_case(ctx, c, "(3,2,6) 1-D spatial, weight only", 1, 0, 0, NB_SHAPE(3, 2, 6));
    case 3: return in_case(ctx, c, "(2,2,3,4) transposed view, bias only", 0, 1, 1, NB_SHAPE(2, 2, 3, 4));
    case 4: return in_case(ctx, c, "(1,4,2,2) four elements a plane, affine", 1, 1, 0, NB_SHAPE(1, 4, 2, 2));
    default: return 0;
    }
}
