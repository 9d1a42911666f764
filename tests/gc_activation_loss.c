/* Gradient-check cases (see tests/gradcheck.h) for the activations and the
 * losses. Each gc_<name> covers several shapes, axes, reductions, weights,
 * ignore_index, spatial cross-entropy and non-contiguous leaves. The points
 * where a function has a kink (relu and leaky_relu at 0, l1 at input ==
 * target, hinge at margin 0, multi-margin at z == 0) are kept at least 0.1
 * away by construction, farther than the checker's step. */
#include "gradcheck.h"
#include <stdint.h>
#include <string.h>

/* ---- leaves ----------------------------------------------------------------- */

enum { VN, VAWAY, VPROB, VUNIT, VSIGN };  /* N(0,1)*scale; |v| >= 0.1; [0.1, 0.9]; [0, 1); +-1 */
enum { LC, LT, LS };                      /* contiguous; last two dims transposed; stepped last dim */

/* A leaf of the given shape, values and layout (LT: storage holds the
 * transpose; LS: every other element of a wider buffer). The view is made
 * before requires_grad is set, so it is a leaf. */
static nb_tensor *leaf(nb_ctx *ctx, int vals, float scale, int layout, int req, int nd, const int64_t *shape)
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
        float v = t->data[i] * scale;
        if (vals == VAWAY) v = v >= 0 ? v + 0.1f : v - 0.1f;
        if (vals == VPROB) v = 0.1f + 0.8f * nb_rng_uniform(r);
        if (vals == VUNIT) v = nb_rng_uniform(r);
        if (vals == VSIGN) v = nb_rng_uniform(r) < 0.5f ? -1.0f : 1.0f;
        t->data[i] = v;
    }
    if (layout == LT && nd >= 2) t = nb_transpose(ctx, t, -1, -2);
    else if (layout == LS && nd >= 1) t = nb_slice(ctx, t, -1, 1, INT64_MAX, 2);
    return nb_requires_grad(t, req);
}

#define S(...) NB_SHAPE(__VA_ARGS__)

/* Row-major element e of a (possibly strided) tensor. */
static float *at(nb_tensor *t, int64_t e)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (e % t->shape[d]) * t->stride[d];
        e /= t->shape[d];
    }
    return t->data + off;
}

static int set_case(gc_case *c, const char *label, nb_tensor *(*fn)(nb_ctx *, gc_case *), nb_tensor *a,
                    nb_tensor *b)
{
    c->label = label;
    c->fn = fn;
    c->nin = b ? 2 : 1;
    c->in[0] = a;
    c->in[1] = b;
    return 1;
}

/* ---- activations ---------------------------------------------------------- */

static nb_tensor *f_sigmoid(nb_ctx *ctx, gc_case *c) { return nb_sigmoid(ctx, c->in[0]); }
static nb_tensor *f_tanh(nb_ctx *ctx, gc_case *c) { return nb_tanh(ctx, c->in[0]); }
static nb_tensor *f_relu(nb_ctx *ctx, gc_case *c) { return nb_relu(ctx, c->in[0]); }
static nb_tensor *f_leaky(nb_ctx *ctx, gc_case *c) { return nb_leaky_relu(ctx, c->in[0], c->farg[0]); }
static nb_tensor *f_softmax(nb_ctx *ctx, gc_case *c) { return nb_softmax(ctx, c->in[0], c->iarg[0]); }
static nb_tensor *f_log_softmax(nb_ctx *ctx, gc_case *c) { return nb_log_softmax(ctx, c->in[0], c->iarg[0]); }

/* Shared by the smooth elementwise activations: shapes, a scalar, views. */
static int smooth_unary(nb_ctx *ctx, int variant, gc_case *c, nb_tensor *(*fn)(nb_ctx *, gc_case *))
{
    switch (variant) {
    case 0: return set_case(c, "(3,4)", fn, leaf(ctx, VN, 2, LC, 1, S(3, 4)), NULL);
    case 1: return set_case(c, "(2,1,5) transposed", fn, leaf(ctx, VN, 1.5f, LT, 1, S(2, 1, 5)), NULL);
    case 2: return set_case(c, "scalar", fn, leaf(ctx, VN, 1, LC, 1, 0, NULL), NULL);
    case 3: return set_case(c, "(7) stepped, large", fn, leaf(ctx, VN, 4, LS, 1, S(7)), NULL);
    default: return 0;
    }
}

int gc_sigmoid(nb_ctx *ctx, int variant, gc_case *c) { return smooth_unary(ctx, variant, c, f_sigmoid); }
int gc_tanh(nb_ctx *ctx, int variant, gc_case *c) { return smooth_unary(ctx, variant, c, f_tanh); }

int gc_relu(nb_ctx *ctx, int variant, gc_case *c)
{
    switch (variant) {
    case 0: return set_case(c, "(3,4)", f_relu, leaf(ctx, VAWAY, 1, LC, 1, S(3, 4)), NULL);
    case 1: return set_case(c, "(4,1,3) transposed", f_relu, leaf(ctx, VAWAY, 1, LT, 1, S(4, 1, 3)), NULL);
    case 2: return set_case(c, "(2,5) stepped", f_relu, leaf(ctx, VAWAY, 2, LS, 1, S(2, 5)), NULL);
    case 3: return set_case(c, "scalar", f_relu, leaf(ctx, VAWAY, 1, LC, 1, 0, NULL), NULL);
    default: return 0;
    }
}

int gc_leaky_relu(nb_ctx *ctx, int variant, gc_case *c)
{
    static const float slopes[] = {0.01f, 0.2f, -0.5f, 1.5f};
    static const char *const labels[] = {"(3,4) slope 0.01", "(2,3,2) transposed slope 0.2",
                                         "(6) stepped slope -0.5", "(2,4) slope 1.5"};
    if (variant < 0 || variant > 3) return 0;
    c->farg[0] = slopes[variant];
    nb_tensor *x = variant == 0 ? leaf(ctx, VAWAY, 1, LC, 1, S(3, 4))
                 : variant == 1 ? leaf(ctx, VAWAY, 1, LT, 1, S(2, 3, 2))
                 : variant == 2 ? leaf(ctx, VAWAY, 1, LS, 1, S(6))
                                : leaf(ctx, VAWAY, 1, LC, 1, S(2, 4));
    return set_case(c, labels[variant], f_leaky, x, NULL);
}

/* Softmax cases: every axis kind (last, first, middle, negative), a slab
 * wider than the kernels' block of 64 positions, size-1 axes, views. */
static int softmax_cases(nb_ctx *ctx, int variant, gc_case *c, nb_tensor *(*fn)(nb_ctx *, gc_case *))
{
    nb_tensor *x;
    const char *label;
    int axis;
    switch (variant) {
    case 0: x = leaf(ctx, VN, 2, LC, 1, S(3, 5)), axis = -1, label = "(3,5) axis -1"; break;
    case 1: x = leaf(ctx, VN, 1, LC, 1, S(3, 4, 2)), axis = 0, label = "(3,4,2) axis 0"; break;
    case 2: x = leaf(ctx, VN, 1, LC, 1, S(2, 3, 4)), axis = 1, label = "(2,3,4) axis 1"; break;
    case 3: x = leaf(ctx, VN, 1, LC, 1, S(2, 2, 3, 2)), axis = -2, label = "(2,2,3,2) axis -2"; break;
    case 4: x = leaf(ctx, VN, 1, LC, 1, S(2, 66)), axis = 0, label = "(2,66) axis 0 (wide slab)"; break;
    case 5: x = leaf(ctx, VN, 1, LT, 1, S(3, 4)), axis = 1, label = "(3,4) transposed axis 1"; break;
    case 6: x = leaf(ctx, VN, 1, LS, 1, S(2, 5)), axis = 0, label = "(2,5) stepped axis 0"; break;
    case 7: x = leaf(ctx, VN, 1, LC, 1, S(4, 1)), axis = 1, label = "(4,1) axis of size 1"; break;
    case 8: x = leaf(ctx, VN, 3, LC, 1, S(6)), axis = 0, label = "(6) 1-D"; break;
    default: return 0;
    }
    c->iarg[0] = axis;
    return set_case(c, label, fn, x, NULL);
}

int gc_softmax(nb_ctx *ctx, int variant, gc_case *c) { return softmax_cases(ctx, variant, c, f_softmax); }
int gc_log_softmax(nb_ctx *ctx, int variant, gc_case *c) { return softmax_cases(ctx, variant, c, f_log_softmax); }

/* ---- pointwise losses: iarg[0] = reduction, iarg[1] = log_target ----------- */

static nb_tensor *f_mse(nb_ctx *ctx, gc_case *c) { return nb_mse_loss(ctx, c->in[0], c->in[1], (nb_reduction)c->iarg[0]); }
static nb_tensor *f_l1(nb_ctx *ctx, gc_case *c) { return nb_l1_loss(ctx, c->in[0], c->in[1], (nb_reduction)c->iarg[0]); }
static nb_tensor *f_bce(nb_ctx *ctx, gc_case *c) { return nb_bce_loss(ctx, c->in[0], c->in[1], (nb_reduction)c->iarg[0]); }
static nb_tensor *f_bcel(nb_ctx *ctx, gc_case *c)
{ return nb_bce_with_logits(ctx, c->in[0], c->in[1], (nb_reduction)c->iarg[0]); }
static nb_tensor *f_kl(nb_ctx *ctx, gc_case *c)
{ return nb_kl_div(ctx, c->in[0], c->in[1], (nb_reduction)c->iarg[0], c->iarg[1]); }
static nb_tensor *f_hinge(nb_ctx *ctx, gc_case *c)
{ return nb_hinge_loss(ctx, c->in[0], c->in[1], (nb_reduction)c->iarg[0]); }

enum { RM = NB_REDUCTION_MEAN, RS = NB_REDUCTION_SUM, RN = NB_REDUCTION_NONE, RB = NB_REDUCTION_BATCHMEAN };

int gc_mse_loss(nb_ctx *ctx, int variant, gc_case *c)
{
    nb_tensor *a, *b;
    const char *label;
    switch (variant) {
    case 0: a = leaf(ctx, VN, 1, LC, 1, S(3, 4)), b = leaf(ctx, VN, 1, LC, 1, S(3, 4)), c->iarg[0] = RM, label = "(3,4) mean"; break;
    case 1: a = leaf(ctx, VN, 1, LT, 1, S(2, 5)), b = leaf(ctx, VN, 1, LC, 1, S(2, 5)), c->iarg[0] = RS, label = "(2,5) transposed sum"; break;
    case 2: a = leaf(ctx, VN, 1, LC, 1, S(2, 3)), b = leaf(ctx, VN, 1, LS, 1, S(2, 3)), c->iarg[0] = RN, label = "(2,3) stepped target none"; break;
    case 3: a = leaf(ctx, VN, 1, LC, 1, S(4, 3)), b = leaf(ctx, VN, 1, LC, 1, S(3)), c->iarg[0] = RM, label = "(4,3) vs (3) mean"; break;
    case 4: a = leaf(ctx, VN, 1, LC, 1, S(4, 1)), b = leaf(ctx, VN, 1, LC, 1, S(1, 3)), c->iarg[0] = RN, label = "(4,1) vs (1,3) none"; break;
    case 5: a = leaf(ctx, VN, 1, LC, 1, 0, NULL), b = leaf(ctx, VN, 1, LC, 0, S(2, 2)), c->iarg[0] = RS, label = "scalar vs (2,2) constant sum"; break;
    default: return 0;
    }
    return set_case(c, label, f_mse, a, b);
}

/* target = input + d, |d| >= 0.1, elementwise (same shapes only). */
static void l1_targets(nb_tensor *a, nb_tensor *b)
{
    int64_t n = nb_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) *at(b, i) = *at(a, i) + *at(b, i);
}

int gc_l1_loss(nb_ctx *ctx, int variant, gc_case *c)
{
    nb_tensor *a, *b;
    const char *label;
    switch (variant) {
    case 0: a = leaf(ctx, VN, 1, LC, 1, S(3, 4)), b = leaf(ctx, VAWAY, 1, LC, 1, S(3, 4)), c->iarg[0] = RM, label = "(3,4) mean"; break;
    case 1: a = leaf(ctx, VN, 1, LT, 1, S(2, 5)), b = leaf(ctx, VAWAY, 1, LC, 1, S(2, 5)), c->iarg[0] = RS, label = "(2,5) transposed sum"; break;
    case 2: a = leaf(ctx, VN, 1, LC, 1, S(2, 3)), b = leaf(ctx, VAWAY, 1, LS, 1, S(2, 3)), c->iarg[0] = RN, label = "(2,3) stepped target none"; break;
    case 3:
        /* broadcast: input values at multiples of 1, targets offset by 0.5 */
        a = leaf(ctx, VN, 1, LC, 1, S(4, 3)), b = leaf(ctx, VN, 1, LC, 1, S(3)), c->iarg[0] = RS;
        for (int64_t i = 0; i < 12; i++) a->data[i] = (float)(i % 5) - 2.0f;
        for (int64_t i = 0; i < 3; i++) b->data[i] = (float)i - 0.5f;
        return set_case(c, "(4,3) vs (3) sum", f_l1, a, b);
    default: return 0;
    }
    if (!a || !b) return set_case(c, label, f_l1, a, b);
    l1_targets(a, b);
    return set_case(c, label, f_l1, a, b);
}

int gc_bce_loss(nb_ctx *ctx, int variant, gc_case *c)
{
    nb_tensor *a, *b;
    const char *label;
    switch (variant) {
    case 0: a = leaf(ctx, VPROB, 1, LC, 1, S(3, 4)), b = leaf(ctx, VUNIT, 1, LC, 0, S(3, 4)), c->iarg[0] = RM, label = "(3,4) mean"; break;
    case 1: a = leaf(ctx, VPROB, 1, LT, 1, S(2, 5)), b = leaf(ctx, VUNIT, 1, LC, 0, S(2, 5)), c->iarg[0] = RS, label = "(2,5) transposed sum"; break;
    case 2: a = leaf(ctx, VPROB, 1, LS, 1, S(7)), b = leaf(ctx, VSIGN, 1, LC, 0, S(7)), c->iarg[0] = RN, label = "(7) stepped hard targets none"; break;
    default: return 0;
    }
    if (variant == 2 && b)
        for (int i = 0; i < 7; i++) b->data[i] = b->data[i] > 0;  /* 0/1 targets */
    return set_case(c, label, f_bce, a, b);
}

int gc_bce_with_logits(nb_ctx *ctx, int variant, gc_case *c)
{
    nb_tensor *a, *b;
    const char *label;
    switch (variant) {
    case 0: a = leaf(ctx, VN, 2, LC, 1, S(3, 4)), b = leaf(ctx, VUNIT, 1, LC, 0, S(3, 4)), c->iarg[0] = RM, label = "(3,4) mean"; break;
    case 1: a = leaf(ctx, VN, 5, LT, 1, S(2, 5)), b = leaf(ctx, VUNIT, 1, LC, 0, S(2, 5)), c->iarg[0] = RS, label = "(2,5) transposed large sum"; break;
    case 2: a = leaf(ctx, VN, 1, LS, 1, S(2, 3)), b = leaf(ctx, VUNIT, 1, LC, 0, S(2, 3)), c->iarg[0] = RN, label = "(2,3) stepped none"; break;
    default: return 0;
    }
    return set_case(c, label, f_bcel, a, b);
}

int gc_kl_div(nb_ctx *ctx, int variant, gc_case *c)
{
    nb_tensor *a, *b;
    const char *label;
    c->iarg[1] = 0;
    switch (variant) {
    case 0: a = leaf(ctx, VN, 1, LC, 1, S(3, 4)), b = leaf(ctx, VUNIT, 1, LC, 0, S(3, 4)), c->iarg[0] = RM, label = "(3,4) mean"; break;
    case 1: a = leaf(ctx, VN, 1, LT, 1, S(3, 4)), b = leaf(ctx, VUNIT, 1, LC, 0, S(3, 4)), c->iarg[0] = RB, label = "(3,4) transposed batchmean"; break;
    case 2: a = leaf(ctx, VN, 1, LC, 1, S(2, 3)), b = leaf(ctx, VUNIT, 1, LC, 0, S(2, 3)), c->iarg[0] = RN, label = "(2,3) zeros in target none"; break;
    case 3: a = leaf(ctx, VN, 1, LC, 1, S(2, 3, 2)), b = leaf(ctx, VN, 1, LS, 0, S(2, 3, 2)), c->iarg[0] = RB, c->iarg[1] = 1, label = "(2,3,2) log_target batchmean"; break;
    case 4: a = leaf(ctx, VN, 1, LS, 1, S(5)), b = leaf(ctx, VN, 1, LC, 0, S(5)), c->iarg[0] = RS, c->iarg[1] = 1, label = "(5) stepped log_target sum"; break;
    case 5: a = leaf(ctx, VN, 1, LC, 1, S(4, 3)), b = leaf(ctx, VUNIT, 1, LC, 0, S(3)), c->iarg[0] = RS, label = "(4,3) vs (3) sum"; break;
    default: return 0;
    }
    if (variant == 2 && b) b->data[1] = b->data[4] = 0;
    return set_case(c, label, f_kl, a, b);
}

/* input such that the margin 1 - y*x is at least 0.1 away from 0 */
static void hinge_away(nb_tensor *x, nb_tensor *y)
{
    int64_t n = nb_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        float *v = at(x, i), yv = *at(y, i), m = 1.0f - yv * *v;
        if (m > -0.1f && m < 0.1f) *v -= 0.3f * yv;  /* moves the margin by +0.3 */
    }
}

int gc_hinge_loss(nb_ctx *ctx, int variant, gc_case *c)
{
    nb_tensor *a, *b;
    const char *label;
    switch (variant) {
    case 0: a = leaf(ctx, VN, 1.5f, LC, 1, S(3, 4)), b = leaf(ctx, VSIGN, 1, LC, 0, S(3, 4)), c->iarg[0] = RM, label = "(3,4) mean"; break;
    case 1: a = leaf(ctx, VN, 1.5f, LT, 1, S(2, 5)), b = leaf(ctx, VSIGN, 1, LC, 0, S(2, 5)), c->iarg[0] = RS, label = "(2,5) transposed sum"; break;
    case 2: a = leaf(ctx, VN, 1.5f, LS, 1, S(8)), b = leaf(ctx, VSIGN, 1, LC, 0, S(8)), c->iarg[0] = RN, label = "(8) stepped none"; break;
    default: return 0;
    }
    if (a && b) hinge_away(a, b);
    return set_case(c, label, f_hinge, a, b);
}

/* ---- cross_entropy: iarg = {reduction, ignore_index, weights?}, labels ----- */

static const float ce_w[] = {0.5f, 1.5f, 1.0f, 2.0f, 0.75f};

static nb_tensor *f_ce(nb_ctx *ctx, gc_case *c)
{
    return nb_cross_entropy(ctx, c->in[0], c->labels, c->iarg[2] ? ce_w : NULL, c->iarg[1], (nb_reduction)c->iarg[0]);
}

int gc_cross_entropy(nb_ctx *ctx, int variant, gc_case *c)
{
    static const struct {
        const char *label;
        int ndim;
        int64_t shape[4];
        int layout, red, ignore, weighted;
        float scale;
    } cs[] = {
        {"(5,4) mean", 2, {5, 4}, LC, RM, -100, 0, 2},
        {"(6,5) weight sum", 2, {6, 5}, LC, RS, -100, 1, 2},
        {"(6,3) ignore -100 none", 2, {6, 3}, LC, RN, -100, 0, 1},
        {"(6,5) weight ignore -100 mean", 2, {6, 5}, LC, RM, -100, 1, 1},
        {"(5,4) ignore_index 1 weight mean", 2, {5, 4}, LC, RM, 1, 1, 1},
        {"(4,5) transposed mean", 2, {4, 5}, LT, RM, -100, 0, 1},
        {"(2,3,4) spatial weight ignore mean", 3, {2, 3, 4}, LC, RM, -100, 1, 1},
        {"(2,4,3,2) spatial stepped none", 4, {2, 4, 3, 2}, LS, RN, -100, 0, 1},
        {"(2,3,2,5) spatial transposed sum", 4, {2, 3, 2, 5}, LT, RS, -100, 1, 1},
        {"(5) unbatched", 1, {5}, LC, RN, -100, 1, 1},
        {"(3,4) large logits mean", 2, {3, 4}, LC, RM, -100, 0, 8},
    };
    if (variant < 0 || variant >= (int)(sizeof cs / sizeof cs[0])) return 0;
    nb_tensor *x = leaf(ctx, VN, cs[variant].scale, cs[variant].layout, 1, cs[variant].ndim, cs[variant].shape);
    int64_t C = cs[variant].ndim == 1 ? cs[variant].shape[0] : cs[variant].shape[1];
    int64_t P = cs[variant].ndim == 1 ? 1 : cs[variant].shape[0];
    for (int d = 2; d < cs[variant].ndim; d++) P *= cs[variant].shape[d];
    nb_rng *r = nb_ctx_rng(ctx);
    for (int64_t p = 0; p < P && p < 64; p++) {
        c->labels[p] = (int32_t)nb_rng_below(r, (uint32_t)C);
        if (cs[variant].ignore == -100 && p % 4 == 1 && variant >= 2) c->labels[p] = -100;
    }
    c->iarg[0] = cs[variant].red;
    c->iarg[1] = cs[variant].ignore;
    c->iarg[2] = cs[variant].weighted;
    return set_case(c, cs[variant].label, f_ce, x, NULL);
}

/* ---- multi_margin_loss: iarg = {reduction, p, weights?}, farg[0] = margin -- */

static const float mm_w[] = {1.25f, 0.5f, 2.0f, 1.0f, 0.8f};

static nb_tensor *f_mm(nb_ctx *ctx, gc_case *c)
{
    return nb_multi_margin_loss(ctx, c->in[0], c->labels, c->iarg[1], c->farg[0], c->iarg[2] ? mm_w : NULL,
                                (nb_reduction)c->iarg[0]);
}

int gc_multi_margin_loss(nb_ctx *ctx, int variant, gc_case *c)
{
    static const struct {
        const char *label;
        int ndim, layout, red, p, weighted;
        int64_t n, classes;
        float margin;
    } cs[] = {
        {"(6,5) p1 mean", 2, LC, RM, 1, 0, 6, 5, 1.0f},
        {"(6,5) p2 sum", 2, LC, RS, 2, 0, 6, 5, 1.0f},
        {"(6,5) p1 weight none", 2, LC, RN, 1, 1, 6, 5, 1.0f},
        {"(4,5) transposed p2 weight mean", 2, LT, RM, 2, 1, 4, 5, 1.0f},
        {"(5,3) stepped p1 margin 0.5 sum", 2, LS, RS, 1, 0, 5, 3, 0.5f},
        {"(5) unbatched p2 margin 2", 1, LC, RN, 2, 1, 1, 5, 2.0f},
    };
    if (variant < 0 || variant >= (int)(sizeof cs / sizeof cs[0])) return 0;
    int64_t N = cs[variant].n, C = cs[variant].classes;
    nb_tensor *x = cs[variant].ndim == 1 ? leaf(ctx, VN, 1, LC, 1, S(C))
                                         : leaf(ctx, VN, 1, cs[variant].layout, 1, S(N, C));
    float margin = cs[variant].margin;
    nb_rng *r = nb_ctx_rng(ctx);
    for (int64_t n = 0; n < N; n++) c->labels[n] = (int32_t)nb_rng_below(r, (uint32_t)C);
    /* keep every z = margin - x[y] + x[i] at least 0.1 away from 0 */
    for (int64_t n = 0; x && n < N; n++) {
        float xy = *at(x, n * C + c->labels[n]);
        for (int64_t i = 0; i < C; i++) {
            float *v = at(x, n * C + i), z = margin - xy + *v;
            if (i != c->labels[n] && z > -0.1f && z < 0.1f) *v += 0.3f;
        }
    }
    c->iarg[0] = cs[variant].red;
    c->iarg[1] = cs[variant].p;
    c->iarg[2] = cs[variant].weighted;
    c->farg[0] = margin;
    return set_case(c, cs[variant].label, f_mm, x, NULL);
}
