/* Gradient-check cases (see tests/gradcheck.h) for pooling and dropout:
 * kernels 2 and 3, strides 1 to 3, padding, dilation, ceil_mode (with the
 * rule that drops a last window starting past the input), count_include_pad
 * both ways, (C,H,W) inputs, non-contiguous leaves, rows wide enough for the
 * vectorised kernels, adaptive sizes that do and do not divide the input.
 * Max-pool inputs hold distinct values 0.1 apart, so no window has a tie
 * within the checker's step. Dropout re-seeds the generator inside the case
 * function, so every evaluation draws the same mask. */
#include "gradcheck.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S(...) NB_SHAPE(__VA_ARGS__)

/* A leaf of N(0,1) values; transposed: a view of the transpose of the last two
 * dimensions (non-contiguous). distinct: the values are a shuffled ramp with
 * steps of 0.1 (written through the view). */
static nb_tensor *leaf(nb_ctx *ctx, int transposed, int distinct, int nd, const int64_t *shape)
{
    int64_t sh[NB_MAX_DIMS];
    for (int d = 0; d < nd; d++) sh[d] = shape[d];
    if (transposed) {
        sh[nd - 2] = shape[nd - 1];
        sh[nd - 1] = shape[nd - 2];
    }
    nb_tensor *t = nb_tensor_randn(ctx, nd, sh);
    if (!t) return NULL;
    if (transposed) t = nb_transpose(ctx, t, -1, -2);
    if (!t) return NULL;
    if (distinct) {
        int64_t n = nb_tensor_numel(t);
        uint32_t *perm = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)n * sizeof(uint32_t));
        if (!perm) return NULL;
        for (uint32_t i = 0; i < (uint32_t)n; i++) perm[i] = i;
        nb_rng_shuffle_u32(nb_ctx_rng(ctx), perm, (size_t)n);
        int64_t idx[NB_MAX_DIMS] = {0};
        for (int64_t k = 0; k < n; k++) {
            int64_t off = 0;
            for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
            t->data[off] = 0.1f * ((float)perm[k] - (float)n / 2);
            for (int d = t->ndim - 1; d >= 0; d--) {
                if (++idx[d] < t->shape[d]) break;
                idx[d] = 0;
            }
        }
    }
    return nb_requires_grad(t, 1);
}

/* One pooling case; in gc_case: iarg[0..5] kernel, stride, padding (h, w),
 * iarg[6] dilation h | w << 8, iarg[7] ceil_mode | count_include_pad << 1. */
typedef struct {
    const char *label;
    int nd;
    int64_t shape[4];
    int transposed;
    nb_pool2d_opts o;
} pool_case;

static nb_pool2d_opts case_opts(const gc_case *c)
{
    nb_pool2d_opts o;
    memset(&o, 0, sizeof o);
    o.kernel[0] = c->iarg[0], o.kernel[1] = c->iarg[1];
    o.stride[0] = c->iarg[2], o.stride[1] = c->iarg[3];
    o.padding[0] = c->iarg[4], o.padding[1] = c->iarg[5];
    o.dilation[0] = c->iarg[6] & 0xff, o.dilation[1] = c->iarg[6] >> 8;
    o.ceil_mode = c->iarg[7] & 1;
    o.count_include_pad = c->iarg[7] >> 1;
    return o;
}

static nb_tensor *f_max(nb_ctx *ctx, gc_case *c)
{
    nb_pool2d_opts o = case_opts(c);
    return nb_max_pool2d(ctx, c->in[0], &o);
}

static nb_tensor *f_avg(nb_ctx *ctx, gc_case *c)
{
    nb_pool2d_opts o = case_opts(c);
    return nb_avg_pool2d(ctx, c->in[0], &o);
}

static int set_pool(nb_ctx *ctx, gc_case *c, const pool_case *p, nb_tensor *(*fn)(nb_ctx *, gc_case *),
                    int distinct)
{
    c->label = p->label;
    c->fn = fn;
    c->nin = 1;
    c->in[0] = leaf(ctx, p->transposed, distinct, p->nd, p->shape);
    const nb_pool2d_opts *o = &p->o;
    c->iarg[0] = o->kernel[0], c->iarg[1] = o->kernel[1];
    c->iarg[2] = o->stride[0], c->iarg[3] = o->stride[1];
    c->iarg[4] = o->padding[0], c->iarg[5] = o->padding[1];
    c->iarg[6] = o->dilation[0] | o->dilation[1] << 8;
    c->iarg[7] = o->ceil_mode | o->count_include_pad << 1;
    return 1;
}

#define K(h, w) .kernel = {h, w}
#define ST(h, w) .stride = {h, w}
#define PD(h, w) .padding = {h, w}
#define DL(h, w) .dilation = {h, w}

static const pool_case max_cases[] = {
    {"k2 s2 (2,2,6,6)", 4, {2, 2, 6, 6}, 0, {K(2, 2)}},
    {"k3 s2 p1 (1,2,7,7)", 4, {1, 2, 7, 7}, 0, {K(3, 3), ST(2, 2), PD(1, 1)}},
    {"k3 s1 p1 (1,2,5,6)", 4, {1, 2, 5, 6}, 0, {K(3, 3), ST(1, 1), PD(1, 1)}},
    {"k2 s2 ceil (1,2,7,7)", 4, {1, 2, 7, 7}, 0, {K(2, 2), .ceil_mode = 1}},
    {"k2 s3 p1 ceil, last window dropped (1,1,5,5)", 4, {1, 1, 5, 5}, 0, {K(2, 2), ST(3, 3), PD(1, 1), .ceil_mode = 1}},
    {"k3 s1 p1 dilation 2 (1,2,7,7)", 4, {1, 2, 7, 7}, 0, {K(3, 3), ST(1, 1), PD(1, 1), DL(2, 2)}},
    {"k(2,3) s(1,2) p(1,1) (2,1,6,7)", 4, {2, 1, 6, 7}, 0, {K(2, 3), ST(1, 2), PD(1, 1)}},
    {"(C,H,W) k2 (3,6,6)", 3, {3, 6, 6}, 0, {K(2, 2)}},
    {"transposed (1,2,6,5) k2 s1", 4, {1, 2, 6, 5}, 1, {K(2, 2), ST(1, 1)}},
    {"wide rows k2 s2 (1,1,6,40)", 4, {1, 1, 6, 40}, 0, {K(2, 2)}},
    {"wide rows k3 s2 p1 ceil (1,1,7,41)", 4, {1, 1, 7, 41}, 0, {K(3, 3), ST(2, 2), PD(1, 1), .ceil_mode = 1}},
    {"k(3,2) s(2,1) d(2,3) p(1,1) (1,2,9,9)", 4, {1, 2, 9, 9}, 0, {K(3, 2), ST(2, 1), PD(1, 1), DL(2, 3)}},
};

static const pool_case avg_cases[] = {
    {"k2 s2 (2,2,6,6)", 4, {2, 2, 6, 6}, 0, {K(2, 2), .count_include_pad = 1}},
    {"k3 s2 p1 count_include_pad (1,2,7,7)", 4, {1, 2, 7, 7}, 0, {K(3, 3), ST(2, 2), PD(1, 1), .count_include_pad = 1}},
    {"k3 s2 p1 exclude pad (1,2,7,7)", 4, {1, 2, 7, 7}, 0, {K(3, 3), ST(2, 2), PD(1, 1)}},
    {"k3 s2 p1 ceil count_include_pad (1,2,8,8)", 4, {1, 2, 8, 8}, 0,
     {K(3, 3), ST(2, 2), PD(1, 1), .ceil_mode = 1, .count_include_pad = 1}},
    {"k3 s2 p1 ceil exclude pad (1,2,8,8)", 4, {1, 2, 8, 8}, 0, {K(3, 3), ST(2, 2), PD(1, 1), .ceil_mode = 1}},
    {"k2 s3 p1 ceil (1,1,5,5)", 4, {1, 1, 5, 5}, 0, {K(2, 2), ST(3, 3), PD(1, 1), .ceil_mode = 1, .count_include_pad = 1}},
    {"k(2,3) s(1,2) p(1,1) exclude pad (2,1,6,7)", 4, {2, 1, 6, 7}, 0, {K(2, 3), ST(1, 2), PD(1, 1)}},
    {"(C,H,W) k3 s1 p1 (3,6,6)", 3, {3, 6, 6}, 0, {K(3, 3), ST(1, 1), PD(1, 1), .count_include_pad = 1}},
    {"transposed (1,2,6,5) k2 s1", 4, {1, 2, 6, 5}, 1, {K(2, 2), ST(1, 1), .count_include_pad = 1}},
    {"wide rows k2 s2 (1,1,6,40)", 4, {1, 1, 6, 40}, 0, {K(2, 2), .count_include_pad = 1}},
    {"wide rows k3 s2 (1,1,7,41)", 4, {1, 1, 7, 41}, 0, {K(3, 3), ST(2, 2)}},
};

int gc_max_pool2d(nb_ctx *ctx, int v, gc_case *c)
{
    if (v < 0 || v >= (int)(sizeof max_cases / sizeof max_cases[0])) return 0;
    return set_pool(ctx, c, &max_cases[v], f_max, 1);
}

int gc_avg_pool2d(nb_ctx *ctx, int v, gc_case *c)
{
    if (v < 0 || v >= (int)(sizeof avg_cases / sizeof avg_cases[0])) return 0;
    return set_pool(ctx, c, &avg_cases[v], f_avg, 0);
}

/* ---- adaptive: iarg[0], iarg[1] output size ---------------------------------- */

static nb_tensor *f_adaptive(nb_ctx *ctx, gc_case *c)
{
    return nb_adaptive_avg_pool2d(ctx, c->in[0], c->iarg[0], c->iarg[1]);
}

int gc_adaptive_avg_pool2d(nb_ctx *ctx, int v, gc_case *c)
{
    static const struct {
        const char *label;
        int nd;
        int64_t shape[4];
        int transposed, oh, ow;
    } cases[] = {
        {"7x7 -> 3x3", 4, {1, 2, 7, 7}, 0, 3, 3},
        {"5x5 -> 2x2", 4, {2, 1, 5, 5}, 0, 2, 2},
        {"8x8 -> 4x4 (divides)", 4, {1, 2, 8, 8}, 0, 4, 4},
        {"6x9 -> 4x5", 4, {1, 1, 6, 9}, 0, 4, 5},
        {"global 5x5 -> 1x1", 4, {2, 3, 5, 5}, 0, 1, 1},
        {"3x3 -> 5x5 (larger)", 4, {1, 2, 3, 3}, 0, 5, 5},
        {"(C,H,W) 6x6 -> 3x2", 3, {2, 6, 6}, 0, 3, 2},
        {"transposed 6x7 -> 4x3", 4, {1, 2, 6, 7}, 1, 4, 3},
        {"global 17x18 -> 1x1 (long sums)", 4, {1, 1, 17, 18}, 0, 1, 1},
    };
    if (v < 0 || v >= (int)(sizeof cases / sizeof cases[0])) return 0;
    c->label = cases[v].label;
    c->fn = f_adaptive;
    c->nin = 1;
    c->in[0] = leaf(ctx, cases[v].transposed, 0, cases[v].nd, cases[v].shape);
    c->iarg[0] = cases[v].oh;
    c->iarg[1] = cases[v].ow;
    return 1;
}

/* ---- dropout: farg[0] p, iarg[0] training -------------------------------------- */

static nb_tensor *f_dropout(nb_ctx *ctx, gc_case *c)
{
    nb_rng_seed(nb_ctx_rng(ctx), 7);   /* the same mask at every evaluation */
    return nb_dropout(ctx, c->in[0], c->farg[0], c->iarg[0]);
}

int gc_dropout(nb_ctx *ctx, int v, gc_case *c)
{
    static const struct {
        const char *label;
        int nd;
        int64_t shape[4];
        int transposed, training;
        float p;
    } cases[] = {
        {"(4,5) p=0.5", 2, {4, 5}, 0, 1, 0.5f},
        {"(3,4,5) p=0.2", 3, {3, 4, 5}, 0, 1, 0.2f},
        {"transposed (6,7) p=0.7", 2, {6, 7}, 1, 1, 0.7f},
        {"(2,3,4,4) p=1", 4, {2, 3, 4, 4}, 0, 1, 1.0f},
        {"(5,6) eval", 2, {5, 6}, 0, 0, 0.5f},
        {"(5,6) p=0", 2, {5, 6}, 0, 1, 0.0f},
    };
    if (v < 0 || v >= (int)(sizeof cases / sizeof cases[0])) return 0;
    c->label = cases[v].label;
    c->fn = f_dropout;
    c->nin = 1;
    c->in[0] = leaf(ctx, cases[v].transposed, 0, cases[v].nd, cases[v].shape);
    c->iarg[0] = cases[v].training;
    c->farg[0] = cases[v].p;
    return 1;
}
