/* Gradient-check cases (see tests/gradcheck.h) for the core ops: elementwise,
 * matmul/linear, reductions and shape ops. Each gc_<name> covers plain
 * shapes, broadcasting, 0-d and size-1 dimensions and non-contiguous leaves
 * (transposed or stepped views of a larger buffer). */
#include "gradcheck.h"
#include <stdint.h>
#include <string.h>

/* ---- leaves ------------------------------------------------------------------ */

enum { DN, DP, DA };          /* N(0,1); positive in [0.5, 2); +-[0.5, 1.5) */
enum { LC, LT, LS };          /* contiguous; last two dims transposed; stepped last dim */

/* A leaf of the given shape, values and memory layout. LT: the storage holds
 * the transpose (a leaf that is a transposed view); LS: every other element
 * of a wider buffer. Views are built before requires_grad is set, so they
 * are leaves. */
static nb_tensor *mk(nb_ctx *ctx, int dist, int layout, int req, int nd, const int64_t *shape)
{
    int64_t sh[NB_MAX_DIMS] = {0};
    for (int d = 0; d < nd; d++) sh[d] = shape[d];
    if (layout == LT && nd >= 2) {
        sh[nd - 2] = shape[nd - 1];
        sh[nd - 1] = shape[nd - 2];
    } else if (layout == LS && nd >= 1) {
        sh[nd - 1] = 2 * shape[nd - 1] + 1;
    }
    nb_tensor *t = nb_tensor_randn(ctx, nd, sh);
    if (!t) return NULL;
    nb_rng *r = nb_ctx_rng(ctx);
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (dist == DP) t->data[i] = 0.5f + 1.5f * nb_rng_uniform(r);
        if (dist == DA) t->data[i] = (nb_rng_uniform(r) < 0.5f ? -1.0f : 1.0f) * (0.5f + nb_rng_uniform(r));
    }
    if (layout == LT && nd >= 2) t = nb_transpose(ctx, t, -1, -2);
    else if (layout == LS && nd >= 1) t = nb_slice(ctx, t, -1, 1, INT64_MAX, 2);
    return nb_requires_grad(t, req);
}

#define S(...) NB_SHAPE(__VA_ARGS__)
#define G(...) mk(ctx, DN, LC, 1, S(__VA_ARGS__))        /* normal leaf needing grad */

/* A leaf whose values are distinct and at least 0.1 apart (for max). */
static nb_tensor *distinct(nb_ctx *ctx, int layout, int nd, const int64_t *shape)
{
    nb_tensor *t = mk(ctx, DN, layout, 1, nd, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    uint32_t perm[512];
    if (n > 512) return NULL;
    for (uint32_t i = 0; i < (uint32_t)n; i++) perm[i] = i;
    nb_rng_shuffle_u32(nb_ctx_rng(ctx), perm, (size_t)n);
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {     /* write through the view's strides */
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        t->data[off] = 0.1f * ((float)perm[k] - (float)n / 2);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
    return t;
}

static int set2(gc_case *c, const char *label, nb_tensor *a, nb_tensor *b)
{
    c->label = label;
    c->nin = b ? 2 : 1;
    c->in[0] = a;
    c->in[1] = b;
    return 1;
}

/* ---- elementwise ------------------------------------------------------------ */

static nb_tensor *f_add(nb_ctx *ctx, gc_case *c) { return nb_add(ctx, c->in[0], c->in[1]); }
static nb_tensor *f_sub(nb_ctx *ctx, gc_case *c) { return nb_sub(ctx, c->in[0], c->in[1]); }
static nb_tensor *f_mul(nb_ctx *ctx, gc_case *c) { return nb_mul(ctx, c->in[0], c->in[1]); }
static nb_tensor *f_div(nb_ctx *ctx, gc_case *c) { return nb_div(ctx, c->in[0], c->in[1]); }

/* The shared binary cases; div keeps its divisor away from zero. */
static int binary_cases(nb_ctx *ctx, int v, gc_case *c, nb_tensor *(*fn)(nb_ctx *, gc_case *), int div)
{
    int db = div ? DA : DN;
    c->fn = fn;
    switch (v) {
    case 0: return set2(c, "(3,4) & (3,4)", G(3, 4), mk(ctx, db, LC, 1, S(3, 4)));
    case 1: return set2(c, "(3,1) & (4)", G(3, 1), mk(ctx, db, LC, 1, S(4)));
    case 2: return set2(c, "(2,3,4) & (3,1)", G(2, 3, 4), mk(ctx, db, LC, 1, S(3, 1)));
    case 3: return set2(c, "0-d & (2,3)", mk(ctx, db, LC, 1, 0, NULL), mk(ctx, db, LC, 1, S(2, 3)));
    case 4: return set2(c, "(2,3) & 0-d", G(2, 3), mk(ctx, db, LC, 1, 0, NULL));
    case 5: return set2(c, "(2,1,3) & (1,4,1)", G(2, 1, 3), mk(ctx, db, LC, 1, S(1, 4, 1)));
    case 6:
        return set2(c, "transposed (3,4) & stepped (3,4)", mk(ctx, DN, LT, 1, S(3, 4)), mk(ctx, db, LS, 1, S(3, 4)));
    case 7:
        return set2(c, "transposed (2,4,3) & constant (3)", mk(ctx, DN, LT, 1, S(2, 4, 3)),
                    mk(ctx, db, LC, 0, S(3)));
    case 8: {
        nb_tensor *a = mk(ctx, db, LC, 1, S(2, 3));
        return set2(c, "x op x", a, a);
    }
    case 9: return set2(c, "(1) & (1)", G(1), mk(ctx, db, LC, 1, S(1)));
    case 10: return set2(c, "constant (4,1) & (5)", mk(ctx, DN, LC, 0, S(4, 1)), mk(ctx, db, LS, 1, S(5)));
    default: return 0;
    }
}

int gc_add(nb_ctx *ctx, int v, gc_case *c) { return binary_cases(ctx, v, c, f_add, 0); }
int gc_sub(nb_ctx *ctx, int v, gc_case *c) { return binary_cases(ctx, v, c, f_sub, 0); }
int gc_mul(nb_ctx *ctx, int v, gc_case *c) { return binary_cases(ctx, v, c, f_mul, 0); }
int gc_div(nb_ctx *ctx, int v, gc_case *c) { return binary_cases(ctx, v, c, f_div, 1); }

/* Unary cases over inputs of distribution dist; farg[0] is the scalar. */
static int unary_cases(nb_ctx *ctx, int v, gc_case *c, nb_tensor *(*fn)(nb_ctx *, gc_case *), int dist)
{
    c->fn = fn;
    switch (v) {
    case 0: return set2(c, "(3,4)", mk(ctx, dist, LC, 1, S(3, 4)), NULL);
    case 1: return set2(c, "transposed (4,3)", mk(ctx, dist, LT, 1, S(4, 3)), NULL);
    case 2: return set2(c, "0-d", mk(ctx, dist, LC, 1, 0, NULL), NULL);
    case 3: return set2(c, "stepped (2,1,5)", mk(ctx, dist, LS, 1, S(2, 1, 5)), NULL);
    default: return 0;
    }
}

static nb_tensor *f_scale(nb_ctx *ctx, gc_case *c) { return nb_scale(ctx, c->in[0], c->farg[0]); }
static nb_tensor *f_add_scalar(nb_ctx *ctx, gc_case *c) { return nb_add_scalar(ctx, c->in[0], c->farg[0]); }
static nb_tensor *f_exp(nb_ctx *ctx, gc_case *c) { return nb_exp(ctx, c->in[0]); }
static nb_tensor *f_log(nb_ctx *ctx, gc_case *c) { return nb_log(ctx, c->in[0]); }
static nb_tensor *f_sqrt(nb_ctx *ctx, gc_case *c) { return nb_sqrt(ctx, c->in[0]); }
static nb_tensor *f_pow(nb_ctx *ctx, gc_case *c) { return nb_pow(ctx, c->in[0], c->farg[0]); }

int gc_scale(nb_ctx *ctx, int v, gc_case *c)
{
    c->farg[0] = v % 2 ? -0.75f : 2.5f;
    return unary_cases(ctx, v, c, f_scale, DN);
}

int gc_add_scalar(nb_ctx *ctx, int v, gc_case *c)
{
    c->farg[0] = v % 2 ? -3.0f : 0.5f;
    return unary_cases(ctx, v, c, f_add_scalar, DN);
}

int gc_exp(nb_ctx *ctx, int v, gc_case *c) { return unary_cases(ctx, v, c, f_exp, DN); }
int gc_log(nb_ctx *ctx, int v, gc_case *c) { return unary_cases(ctx, v, c, f_log, DP); }
int gc_sqrt(nb_ctx *ctx, int v, gc_case *c) { return unary_cases(ctx, v, c, f_sqrt, DP); }

int gc_pow(nb_ctx *ctx, int v, gc_case *c)
{
    /* exponents with their own kernels (2, 3, 0.5, -1), the general path,
     * p = 0 (zero gradient) and p = 1; negative bases for integer p */
    static const struct { float p; int dist, layout; const char *label; } k[] = {
        {2.0f, DN, LC, "p=2, normal"},     {3.0f, DN, LT, "p=3, normal, transposed"},
        {0.5f, DP, LC, "p=0.5, positive"}, {-1.0f, DA, LS, "p=-1, stepped"},
        {-1.5f, DP, LC, "p=-1.5, positive"}, {2.7f, DP, LT, "p=2.7, positive, transposed"},
        {4.0f, DN, LC, "p=4, normal"},     {0.0f, DN, LC, "p=0"},
        {1.0f, DN, LS, "p=1, stepped"},
    };
    if (v >= (int)(sizeof k / sizeof k[0])) return 0;
    c->fn = f_pow;
    c->farg[0] = k[v].p;
    return set2(c, k[v].label, mk(ctx, k[v].dist, k[v].layout, 1, S(3, 4)), NULL);
}

/* ---- matmul / linear ----------------------------------------------------------- */

static nb_tensor *f_matmul(nb_ctx *ctx, gc_case *c) { return nb_matmul(ctx, c->in[0], c->in[1]); }

int gc_matmul(nb_ctx *ctx, int v, gc_case *c)
{
    c->fn = f_matmul;
    switch (v) {
    case 0: return set2(c, "(3,4)@(4,5)", G(3, 4), G(4, 5));
    case 1: return set2(c, "(2,3,4)@(4,5) shared b", G(2, 3, 4), G(4, 5));
    case 2: return set2(c, "(3,4)@(2,4,5) shared a", G(3, 4), G(2, 4, 5));
    case 3: return set2(c, "(2,1,3,4)@(3,4,2) broadcast batch", G(2, 1, 3, 4), G(3, 4, 2));
    case 4: return set2(c, "transposed (3,4) @ transposed (4,5)", mk(ctx, DN, LT, 1, S(3, 4)), mk(ctx, DN, LT, 1, S(4, 5)));
    case 5: return set2(c, "(1,4)@(4,1)", G(1, 4), G(4, 1));
    case 6: return set2(c, "(2,3,4) @ transposed (2,4,5)", G(2, 3, 4), mk(ctx, DN, LT, 1, S(2, 4, 5)));
    case 7: return set2(c, "stepped (3,4) @ stepped (4,2) (copied)", mk(ctx, DN, LS, 1, S(3, 4)), mk(ctx, DN, LS, 1, S(4, 2)));
    case 8: return set2(c, "constant (2,3) @ (3,2)", mk(ctx, DN, LC, 0, S(2, 3)), G(3, 2));
    case 9: return set2(c, "(2,3,4)@(1,4,5)", G(2, 3, 4), G(1, 4, 5));
    case 10: return set2(c, "transposed (2,3,4) @ (4,2)", mk(ctx, DN, LT, 1, S(2, 3, 4)), G(4, 2));
    default: return 0;
    }
}

static nb_tensor *f_linear(nb_ctx *ctx, gc_case *c)
{
    return nb_linear(ctx, c->in[0], c->in[1], c->nin > 2 ? c->in[2] : NULL);
}

static int set3(gc_case *c, const char *label, nb_tensor *x, nb_tensor *w, nb_tensor *b)
{
    set2(c, label, x, w);
    c->fn = f_linear;
    if (b) {
        c->in[2] = b;
        c->nin = 3;
    }
    return 1;
}

int gc_linear(nb_ctx *ctx, int v, gc_case *c)
{
    switch (v) {
    case 0: return set3(c, "x (4,3), w (5,3), b (5)", G(4, 3), G(5, 3), G(5));
    case 1: return set3(c, "no bias", G(4, 3), G(5, 3), NULL);
    case 2:
        return set3(c, "transposed x and w, stepped b", mk(ctx, DN, LT, 1, S(4, 3)), mk(ctx, DN, LT, 1, S(5, 3)),
                    mk(ctx, DN, LS, 1, S(5)));
    case 3: return set3(c, "x (2,3,4)", G(2, 3, 4), G(5, 4), G(5));
    case 4: return set3(c, "x (3) vector", G(3), G(2, 3), G(2));
    case 5: return set3(c, "constant w and b", G(4, 3), mk(ctx, DN, LC, 0, S(2, 3)), mk(ctx, DN, LC, 0, S(2)));
    case 6: return set3(c, "stepped x (copied), one output", mk(ctx, DN, LS, 1, S(4, 3)), G(1, 3), G(1));
    case 7: return set3(c, "transposed x (2,3,4) (copied)", mk(ctx, DN, LT, 1, S(2, 3, 4)), G(2, 4), NULL);
    default: return 0;
    }
}

/* ---- reductions ------------------------------------------------------------------ */

/* iarg: [0] naxes, [1] keepdim, [2..] axes */
static nb_tensor *f_sum(nb_ctx *ctx, gc_case *c) { return nb_sum(ctx, c->in[0], c->iarg + 2, c->iarg[0], c->iarg[1]); }
static nb_tensor *f_mean(nb_ctx *ctx, gc_case *c) { return nb_mean(ctx, c->in[0], c->iarg + 2, c->iarg[0], c->iarg[1]); }
static nb_tensor *f_max(nb_ctx *ctx, gc_case *c) { return nb_max(ctx, c->in[0], c->iarg + 2, c->iarg[0], c->iarg[1]); }

static int reduce_cases(nb_ctx *ctx, int v, gc_case *c, nb_tensor *(*fn)(nb_ctx *, gc_case *), int dist_values)
{
    static const struct {
        const char *label;
        int nd;
        int64_t shape[4];
        int layout, naxes, keepdim, axes[3];
    } k[] = {
        {"(3,4) all", 2, {3, 4}, LC, 0, 0, {0}},
        {"(3,4) axis 0", 2, {3, 4}, LC, 1, 0, {0}},
        {"(3,4) axis -1 keepdim", 2, {3, 4}, LC, 1, 1, {-1}},
        {"(2,3,4) axes 0,2", 3, {2, 3, 4}, LC, 2, 0, {0, 2}},
        {"(2,3,4) axis 1 keepdim", 3, {2, 3, 4}, LC, 1, 1, {1}},
        {"transposed (4,3) axis 0", 2, {4, 3}, LT, 1, 0, {0}},
        {"0-d", 0, {0}, LC, 0, 0, {0}},
        {"(2,3,2,3) axes 3,0", 4, {2, 3, 2, 3}, LC, 2, 0, {3, 0}},
        {"(2,3,4) all keepdim", 3, {2, 3, 4}, LC, 3, 1, {0, 1, 2}},
        {"stepped (2,1,4) axis 2", 3, {2, 1, 4}, LS, 1, 0, {2}},
        {"(4,1,3) axis 1", 3, {4, 1, 3}, LC, 1, 0, {1}},
    };
    if (v >= (int)(sizeof k / sizeof k[0])) return 0;
    c->fn = fn;
    c->iarg[0] = k[v].naxes;
    c->iarg[1] = k[v].keepdim;
    for (int i = 0; i < k[v].naxes; i++) c->iarg[2 + i] = k[v].axes[i];
    nb_tensor *x = dist_values ? distinct(ctx, k[v].layout, k[v].nd, k[v].shape)
                               : mk(ctx, DN, k[v].layout, 1, k[v].nd, k[v].shape);
    return set2(c, k[v].label, x, NULL);
}

int gc_sum(nb_ctx *ctx, int v, gc_case *c) { return reduce_cases(ctx, v, c, f_sum, 0); }
int gc_mean(nb_ctx *ctx, int v, gc_case *c) { return reduce_cases(ctx, v, c, f_mean, 0); }
int gc_max(nb_ctx *ctx, int v, gc_case *c) { return reduce_cases(ctx, v, c, f_max, 1); }

/* ---- shape ------------------------------------------------------------------------ */

/* iarg: [0] ndim, [1..] shape */
static nb_tensor *f_reshape(nb_ctx *ctx, gc_case *c)
{
    int64_t sh[NB_MAX_DIMS];
    for (int d = 0; d < c->iarg[0]; d++) sh[d] = c->iarg[1 + d];
    return nb_reshape(ctx, c->in[0], c->iarg[0], sh);
}

static nb_tensor *f_flatten(nb_ctx *ctx, gc_case *c) { return nb_flatten(ctx, c->in[0], c->iarg[0]); }

int gc_reshape(nb_ctx *ctx, int v, gc_case *c)
{
    static const struct { const char *label; int nd; int64_t shape[3]; int layout; int to[4]; } k[] = {
        {"(2,3,4) -> (6,4)", 3, {2, 3, 4}, LC, {2, 6, 4}},
        {"(2,3,4) -> (-1)", 3, {2, 3, 4}, LC, {1, -1}},
        {"(3,4) -> (2,-1,3)", 2, {3, 4}, LC, {3, 2, -1, 3}},
        {"transposed (3,4) -> (12) (copied)", 2, {3, 4}, LT, {1, 12}},
        {"(1,1) -> 0-d", 2, {1, 1}, LC, {0}},
        {"stepped (2,3) -> (3,2) (copied)", 2, {2, 3}, LS, {2, 3, 2}},
    };
    int nk = (int)(sizeof k / sizeof k[0]);
    if (v == nk) {   /* flatten records as reshape */
        c->fn = f_flatten;
        c->iarg[0] = 1;
        return set2(c, "flatten (2,3,4) from 1, transposed", mk(ctx, DN, LT, 1, S(2, 3, 4)), NULL);
    }
    if (v > nk) return 0;
    c->fn = f_reshape;
    for (int i = 0; i < 4; i++) c->iarg[i] = k[v].to[i];
    return set2(c, k[v].label, mk(ctx, DN, k[v].layout, 1, k[v].nd, k[v].shape), NULL);
}

/* iarg: [0..ndim) perm, or [6], [7] for transpose (iarg[5] = 1) */
static nb_tensor *f_permute(nb_ctx *ctx, gc_case *c)
{
    if (c->iarg[5]) return nb_transpose(ctx, c->in[0], c->iarg[6], c->iarg[7]);
    return nb_permute(ctx, c->in[0], c->iarg);
}

int gc_permute(nb_ctx *ctx, int v, gc_case *c)
{
    static const struct { const char *label; int nd; int64_t shape[4]; int layout; int perm[4]; } k[] = {
        {"(2,3,4) by (2,0,1)", 3, {2, 3, 4}, LC, {2, 0, 1}},
        {"(3,4) by (1,0)", 2, {3, 4}, LC, {1, 0}},
        {"stepped (2,3,4) by (1,2,0)", 3, {2, 3, 4}, LS, {1, 2, 0}},
        {"(2,3,2,3) by (3,1,0,2)", 4, {2, 3, 2, 3}, LC, {3, 1, 0, 2}},
        {"(5) by (0)", 1, {5}, LC, {0}},
        {"transposed (2,3,4) by (-1,0,1)", 3, {2, 3, 4}, LT, {-1, 0, 1}},
    };
    int nk = (int)(sizeof k / sizeof k[0]);
    if (v == nk) {   /* transpose records as permute */
        c->fn = f_permute;
        c->iarg[5] = 1;
        c->iarg[6] = 0;
        c->iarg[7] = -1;
        return set2(c, "transpose (2,3,4) dims 0,-1", G(2, 3, 4), NULL);
    }
    if (v > nk) return 0;
    c->fn = f_permute;
    for (int i = 0; i < 4; i++) c->iarg[i] = k[v].perm[i];
    return set2(c, k[v].label, mk(ctx, DN, k[v].layout, 1, k[v].nd, k[v].shape), NULL);
}

/* iarg: axis, start, end, step, end-is-INT64_MAX */
static nb_tensor *f_slice(nb_ctx *ctx, gc_case *c)
{
    return nb_slice(ctx, c->in[0], c->iarg[0], c->iarg[1], c->iarg[4] ? INT64_MAX : c->iarg[2], c->iarg[3]);
}

int gc_slice(nb_ctx *ctx, int v, gc_case *c)
{
    static const struct { const char *label; int nd; int64_t shape[3]; int layout; int a[5]; } k[] = {
        {"(5,4) axis 0 [1:4]", 2, {5, 4}, LC, {0, 1, 4, 1, 0}},
        {"(5,4) axis 1 [-3:-1]", 2, {5, 4}, LC, {1, -3, -1, 1, 0}},
        {"(5,4) axis 0 [0:5:2]", 2, {5, 4}, LC, {0, 0, 5, 2, 0}},
        {"transposed (4,5) axis -1 [1::3]", 2, {4, 5}, LT, {-1, 1, 0, 3, 1}},
        {"(2,5,3) axis 1 [-100:100:2]", 3, {2, 5, 3}, LC, {1, -100, 100, 2, 0}},
        {"stepped (3,4) axis 0 [2:1] (empty)", 2, {3, 4}, LS, {0, 2, 1, 1, 0}},
        {"(6) [4:]", 1, {6}, LC, {0, 4, 0, 1, 1}},
    };
    if (v >= (int)(sizeof k / sizeof k[0])) return 0;
    c->fn = f_slice;
    for (int i = 0; i < 5; i++) c->iarg[i] = k[v].a[i];
    return set2(c, k[v].label, mk(ctx, DN, k[v].layout, 1, k[v].nd, k[v].shape), NULL);
}

/* iarg[0] axis */
static nb_tensor *f_concat(nb_ctx *ctx, gc_case *c) { return nb_concat(ctx, c->in, c->nin, c->iarg[0]); }

int gc_concat(nb_ctx *ctx, int v, gc_case *c)
{
    c->fn = f_concat;
    switch (v) {
    case 0:
        c->iarg[0] = 1;
        return set2(c, "(2,3) (2,2) axis 1", G(2, 3), G(2, 2));
    case 1:
        c->iarg[0] = 0;
        set2(c, "(1,3) (2,3) (3,3) axis 0", G(1, 3), G(2, 3));
        c->in[2] = G(3, 3);
        c->nin = 3;
        return 1;
    case 2:
        c->iarg[0] = -1;
        return set2(c, "transposed (2,3) stepped (2,3) axis -1", mk(ctx, DN, LT, 1, S(2, 3)), mk(ctx, DN, LS, 1, S(2, 3)));
    case 3:
        c->iarg[0] = 1;
        return set2(c, "(2,3,2) constant (2,1,2) axis 1", G(2, 3, 2), mk(ctx, DN, LC, 0, S(2, 1, 2)));
    case 4:
        c->iarg[0] = 0;
        return set2(c, "single (3,2) axis 0", G(3, 2), NULL);
    case 5:
        c->iarg[0] = 2;
        set2(c, "four (2,2,k) axis 2", G(2, 2, 1), G(2, 2, 3));
        c->in[2] = mk(ctx, DN, LT, 1, S(2, 2, 2));
        c->in[3] = G(2, 2, 1);
        c->nin = 4;
        return 1;
    default: return 0;
    }
}

static nb_tensor *f_contiguous(nb_ctx *ctx, gc_case *c) { return nb_contiguous(ctx, c->in[0]); }

int gc_contiguous(nb_ctx *ctx, int v, gc_case *c)
{
    c->fn = f_contiguous;
    switch (v) {
    case 0: return set2(c, "transposed (3,4) (copied)", mk(ctx, DN, LT, 1, S(3, 4)), NULL);
    case 1: return set2(c, "contiguous (3,4) (itself)", G(3, 4), NULL);
    case 2: return set2(c, "stepped (2,3,4) (copied)", mk(ctx, DN, LS, 1, S(2, 3, 4)), NULL);
    default: return 0;
    }
}
