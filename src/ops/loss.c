/* Losses (the notes §12), with torch.nn.functional's formulas, defaults and
 * reductions: mse_loss, l1_loss, cross_entropy, bce_loss, bce_with_logits,
 * kl_div, hinge_loss (the notes' binary hinge), multi_margin_loss.
 *
 * Conventions shared by all of them:
 * - MEAN/SUM give a 0-dim tensor, NONE the per-element (per-sample) values;
 *   BATCHMEAN is accepted by kl_div only (NB_ERR_ARG elsewhere).
 * - Sums run in double over fixed blocks of elements and then over the
 *   blocks in order, so a loss has the same bits for any thread count.
 * - NaN is not an op-level error: a NaN in an input propagates into the loss
 *   and gradients as in torch, and the training loop is the place that checks
 *   for non-finite losses. (bce_loss follows that rule too, where torch's own
 *   range check would reject a NaN input; multi_margin_loss, like torch's
 *   kernel, only adds terms whose margin compares > 0, so it skips NaN terms.)
 * - Class indices (cross_entropy, multi_margin_loss) and hinge targets (-1 or
 *   +1) are checked: NB_ERR_ARG naming the first bad index and value.
 * - Gradients go to `input`; mse_loss and l1_loss also give one to `target`.
 *   The other losses treat their target as a constant: it is not put on the
 *   tape, and its values are kept for the backward pass. */
#include "../core/internal.h"
#include "fastmath.h"
#include <math.h>
#include <stdint.h>

#define NB__LOSS_PAR_MIN 32768  /* elements below which one thread is faster */
#define NB__SUM_BLOCK 4096      /* elements per partial sum */

/* ---- vectorisable math (sel, exp_nonpos in fastmath.h) ---------------- */

/* log(1 + e) for e in [0, 1] (bce_with_logits' softplus term) as
 * 2 atanh(s), s = e / (2 + e) <= 1/3: no cancellation for small e; within
 * 2 ulp of double-precision log1p over every float in [0, 1]. */
static inline float log1p_unit(float e)
{
    float s = e / (2.0f + e), z = s * s;
    float p = 1.0f / 15;
    p = p * z + 1.0f / 13;
    p = p * z + 1.0f / 11;
    p = p * z + 1.0f / 9;
    p = p * z + 1.0f / 7;
    p = p * z + 1.0f / 5;
    p = p * z + 1.0f / 3;
    return 2.0f * (s + s * z * p);
}

/* ---- shared plumbing ------------------------------------------------------ */

static int check_reduction(nb_ctx *ctx, const char *name, nb_reduction r, int batchmean_ok)
{
    int ri = (int)r;
    if (ri < 0 || ri > (int)NB_REDUCTION_BATCHMEAN) {
        nb__op_fail(ctx, NB_ERR_ARG, "%s: unknown reduction %d", name, ri);
        return 0;
    }
    if (r == NB_REDUCTION_BATCHMEAN && !batchmean_ok) {
        nb__op_fail(ctx, NB_ERR_ARG, "%s: reduction batchmean is only valid for kl_div "
                                     "(use mean, sum or none)", name);
        return 0;
    }
    return 1;
}

static void *arena_alloc(nb_ctx *ctx, size_t bytes)
{
    void *p = nb_arena_alloc(nb_ctx_arena(ctx), bytes);
    if (!p) nb__ctx_set_status(ctx, NB_ERR_NOMEM);
    return p;
}

static nb_tensor *nomem(nb_ctx *ctx, const char *name)
{
    return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
}

typedef struct {
    const float *v;
    int64_t n;
    double *part;
} sum_job;

/* part[b] = sum of block b of v, for blocks [lo, hi). */
static void block_sums(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const sum_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        int64_t e = (b + 1) * NB__SUM_BLOCK < j->n ? (b + 1) * NB__SUM_BLOCK : j->n;
        double s = 0;
        for (int64_t i = b * NB__SUM_BLOCK; i < e; i++) s += j->v[i];
        j->part[b] = s;
    }
}

/* Sum of v[0..n) in double: blocks of NB__SUM_BLOCK (in parallel for big n),
 * then the block sums in order, so the result does not depend on threads. */
static int det_sum(nb_ctx *ctx, const float *v, int64_t n, double *out)
{
    int64_t nblk = (n + NB__SUM_BLOCK - 1) / NB__SUM_BLOCK;
    double small[64], *part = nblk <= 64 ? small : arena_alloc(ctx, (size_t)nblk * sizeof(double));
    if (!part) return 0;
    sum_job j = {v, n, part};
    nb__par_for(nblk, nb__par_parts(nblk, n >= NB__LOSS_PAR_MIN), block_sums, &j);
    double s = 0;
    for (int64_t b = 0; b < nblk; b++) s += part[b];
    *out = s;
    return 1;
}

/* t's values row-major over its own shape: t->data, or an arena copy when t
 * is a strided view. NULL when out of memory. */
static const float *own_values(nb_ctx *ctx, nb_tensor *t)
{
    if (nb_tensor_is_contiguous(t)) return t->data;
    float *buf = arena_alloc(ctx, (size_t)nb_tensor_numel(t) * sizeof(float));
    if (buf) nb_tensor_copy_out(t, buf);
    return buf;
}

static int same_shape(const nb_tensor *t, int ndim, const int64_t *shape)
{
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

/* v (row-major over t's shape) broadcast to (ndim, shape): v itself when the
 * shapes are equal, else an arena copy. */
static const float *expand_to(nb_ctx *ctx, const float *v, const nb_tensor *t, int ndim, const int64_t *shape)
{
    if (same_shape(t, ndim, shape)) return v;
    int64_t n = nb__numel(ndim, shape), cs[NB_MAX_DIMS], bs[NB_MAX_DIMS], idx[NB_MAX_DIMS] = {0};
    float *buf = arena_alloc(ctx, (size_t)n * sizeof(float));
    if (!buf) return NULL;
    nb__contig_strides(t->ndim, t->shape, cs);
    for (int i = 0; i < ndim; i++) {
        int it = t->ndim - ndim + i;
        bs[i] = (it >= 0 && t->shape[it] != 1) ? cs[it] : 0;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < ndim; d++) off += idx[d] * bs[d];
        buf[k] = v[off];
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
    return buf;
}

/* The output of a loss: 0-dim for MEAN/SUM/BATCHMEAN, (ndim, shape) for NONE. */
static nb_tensor *loss_out(nb_ctx *ctx, nb_reduction r, int ndim, const int64_t *shape)
{
    return r == NB_REDUCTION_NONE ? nb_tensor_new(ctx, ndim, shape) : nb_tensor_new(ctx, 0, NULL);
}

/* Writes sum(l[0..n)) / denom into out (reduced losses). */
static int reduce_into(nb_ctx *ctx, nb_tensor *out, const float *l, int64_t n, double denom)
{
    double s;
    if (!det_sum(ctx, l, n, &s)) return 0;
    out->data[0] = (float)(s / denom);
    return 1;
}

/* ---- pointwise losses ------------------------------------------------------
 * mse, l1, bce, bce_with_logits, kl_div and hinge share one engine: input and
 * target broadcast to one shape, a per-element loss, then the reduction. */

enum { PW_MSE, PW_L1, PW_BCE, PW_BCEL, PW_KL, PW_HINGE };

static const struct {
    const char *name;
    int op;
    int equal_shapes;  /* torch refuses to broadcast (bce, bce_with_logits) */
    int target_grad;   /* target goes on the tape and gets a gradient */
} pw_info[] = {
    [PW_MSE] = {"mse_loss", NB__OP_MSE_LOSS, 0, 1},
    [PW_L1] = {"l1_loss", NB__OP_L1_LOSS, 0, 1},
    [PW_BCE] = {"bce_loss", NB__OP_BCE_LOSS, 1, 0},
    [PW_BCEL] = {"bce_with_logits", NB__OP_BCE_WITH_LOGITS, 1, 0},
    [PW_KL] = {"kl_div", NB__OP_KL_DIV, 0, 0},
    [PW_HINGE] = {"hinge_loss", NB__OP_HINGE_LOSS, 0, 0},
};

typedef struct {
    const float *x, *t;  /* input and target, contiguous over the broadcast shape */
    int ndim;            /* the broadcast shape */
    int64_t shape[NB_MAX_DIMS];
    int64_t n;
    nb_reduction red;
    double denom;        /* what a reduced loss was divided by */
    int log_target;      /* kl_div */
} pw_saved;

/* torch's clamp of log terms in binary_cross_entropy, and the epsilon of its
 * backward: grad * (x - y) / max((1 - x) * x, 1e-12). */
#define BCE_LOG_MIN (-100.0f)
#define BCE_EPS 1e-12f

/* Checks an input or target element by element; 0 (with the op failed) at
 * the first bad one. */
static int pw_validate(nb_ctx *ctx, int kind, nb_tensor *x, const float *xo, nb_tensor *t, const float *to)
{
    if (kind == PW_BCE) {
        int64_t n = nb_tensor_numel(x);
        for (int64_t i = 0; i < n; i++)
            if (xo[i] < 0 || xo[i] > 1) {  /* NaN passes: see the note at the top */
                nb__op_fail(ctx, NB_ERR_ARG, "bce_loss: all elements of input should be between 0 and 1 "
                                             "(input[%lld] = %g; apply sigmoid first or use bce_with_logits)",
                            (long long)i, (double)xo[i]);
                return 0;
            }
    } else if (kind == PW_HINGE) {
        int64_t n = nb_tensor_numel(t);
        for (int64_t i = 0; i < n; i++)
            if (to[i] != 1.0f && to[i] != -1.0f) {
                nb__op_fail(ctx, NB_ERR_ARG, "hinge_loss: target[%lld] = %g, but targets must be -1 or +1",
                            (long long)i, (double)to[i]);
                return 0;
            }
    }
    return 1;
}

/* One pointwise loss's elements: forward (l from x and t) or backward (dx
 * from x, t and the incoming gradient g, or c0 when the loss is reduced). */
typedef struct {
    int kind, log_target;
    const float *x, *t;
    float *l;
    const pw_saved *sv;
    const float *g;
    float *dx;
    float c0;
} pw_job;

/* l[i] = loss of element i, for i in [lo, hi). */
static void pw_forward_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const pw_job *j = ctx;
    const float *restrict x = j->x, *restrict t = j->t;
    float *restrict l = j->l;
    switch (j->kind) {
    case PW_MSE:
        for (int64_t i = lo; i < hi; i++) l[i] = (x[i] - t[i]) * (x[i] - t[i]);
        break;
    case PW_L1:
        for (int64_t i = lo; i < hi; i++) l[i] = fabsf(x[i] - t[i]);
        break;
    case PW_BCE:
        for (int64_t i = lo; i < hi; i++) {
            float lx = fmaxf(logf(x[i]), BCE_LOG_MIN), l1x = fmaxf(log1pf(-x[i]), BCE_LOG_MIN);
            if (x[i] != x[i]) lx = l1x = x[i];  /* fmaxf would drop the NaN */
            l[i] = (t[i] - 1.0f) * l1x - t[i] * lx;
        }
        break;
    case PW_BCEL:
        /* max(x, 0) - x*y + log(1 + e^-|x|): finite for any finite x */
        for (int64_t i = lo; i < hi; i++)
            l[i] = sel(x[i] > 0, x[i], 0.0f) - x[i] * t[i] + log1p_unit(exp_nonpos(-fabsf(x[i])));
        break;
    case PW_KL:
        if (j->log_target) {
            for (int64_t i = lo; i < hi; i++) l[i] = expf(t[i]) * (t[i] - x[i]);
        } else {
            /* xlogy(t, t) - t*x: 0 where t == 0, as torch */
            for (int64_t i = lo; i < hi; i++) l[i] = (t[i] == 0 ? 0.0f : t[i] * logf(t[i])) - t[i] * x[i];
        }
        break;
    case PW_HINGE:
        for (int64_t i = lo; i < hi; i++) {
            float m = 1.0f - t[i] * x[i];
            l[i] = m < 0 ? 0.0f : m;  /* keeps a NaN */
        }
        break;
    }
}

static void pw_forward(int kind, const float *x, const float *t, float *l, int64_t n, int log_target)
{
    pw_job j = {.kind = kind, .log_target = log_target, .x = x, .t = t, .l = l};
    nb__par_for(n, nb__par_parts(n, n >= NB__LOSS_PAR_MIN), pw_forward_range, &j);
}

static nb_tensor *pointwise_loss(nb_ctx *ctx, int kind, nb_tensor *x, nb_tensor *t, nb_reduction r, int log_target)
{
    const char *name = pw_info[kind].name;
    nb_tensor *in[2] = {x, t};
    if (nb__any_null(in, 2)) return NULL;
    if (!check_reduction(ctx, name, r, kind == PW_KL)) return NULL;
    int ndim;
    int64_t shape[NB_MAX_DIMS];
    if (pw_info[kind].equal_shapes && !same_shape(t, x->ndim, x->shape)) {
        char a[96], b[96];
        return nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input shape %s and target shape %s differ "
                                              "(they must be equal, as in torch)",
                           name, nb_shape_str(x, a, sizeof a), nb_shape_str(t, b, sizeof b));
    }
    nb_status s = nb__broadcast_shape(name, x, t, &ndim, shape);
    if (s) {
        nb__ctx_set_status(ctx, s);
        return NULL;
    }
    const float *xo = own_values(ctx, x), *to = own_values(ctx, t);
    if (!xo || !to) return nomem(ctx, name);
    if (!pw_validate(ctx, kind, x, xo, t, to)) return NULL;
    const float *xb = expand_to(ctx, xo, x, ndim, shape), *tb = expand_to(ctx, to, t, ndim, shape);
    if (!xb || !tb) return nomem(ctx, name);

    int64_t n = nb__numel(ndim, shape);
    nb_tensor *out = loss_out(ctx, r, ndim, shape);
    float *l = r == NB_REDUCTION_NONE ? (out ? out->data : NULL) : arena_alloc(ctx, (size_t)n * sizeof(float));
    if (!out || !l) return nomem(ctx, name);
    pw_forward(kind, xb, tb, l, n, log_target);
    double denom = 1;
    if (r == NB_REDUCTION_MEAN) denom = (double)n;
    /* torch: sum / input.size(0), and the plain sum for a 0-dim input */
    if (r == NB_REDUCTION_BATCHMEAN && x->ndim > 0) denom = (double)x->shape[0];
    if (r != NB_REDUCTION_NONE && !reduce_into(ctx, out, l, n, denom)) return nomem(ctx, name);

    int nin = pw_info[kind].target_grad ? 2 : 1;
    int want = nb_grad_enabled(ctx) && (x->requires_grad || (nin == 2 && t->requires_grad));
    pw_saved *sv = NULL;
    if (want) {
        sv = arena_alloc(ctx, sizeof *sv);
        if (!sv) return nomem(ctx, name);
        *sv = (pw_saved){.x = xb, .t = tb, .ndim = ndim, .n = n, .red = r, .denom = denom, .log_target = log_target};
        memcpy(sv->shape, shape, sizeof shape);
    }
    nb__node *node = nb__record(ctx, pw_info[kind].op, out, in, nin);
    if (want && !node) return nomem(ctx, name);
    if (node) node->saved = sv;
    return out;
}

/* dx[i] += c_i * d loss_i / d x_i (the target's gradient of mse/l1 is its negative),
 * where c_i is the incoming gradient of element i (NONE) or the reduced
 * loss's gradient over its denominator. */
static void pw_grad_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const pw_job *j = ctx;
    const pw_saved *sv = j->sv;
    const float *restrict x = sv->x, *restrict t = sv->t, *g = j->g;
    float *restrict dx = j->dx;
    const float c0 = j->c0;
/* One loop per loss, written once for each coefficient (PW_C) so that the
 * compiler sees a plain load or a loop invariant, never a choice. */
#define PW_LOOPS(PW_C)                                                                      \
    switch (j->kind) {                                                                      \
    case PW_MSE:                                                                            \
        for (int64_t i = lo; i < hi; i++) dx[i] += 2.0f * (x[i] - t[i]) * (PW_C);           \
        break;                                                                              \
    case PW_L1: /* sign, 0 at 0 */                                                          \
        for (int64_t i = lo; i < hi; i++)                                                   \
            dx[i] += (float)((x[i] - t[i] > 0) - (x[i] - t[i] < 0)) * (PW_C);               \
        break;                                                                              \
    case PW_BCE:                                                                            \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            float den = (1.0f - x[i]) * x[i];                                               \
            dx[i] += (PW_C) * (x[i] - t[i]) / sel(den > BCE_EPS, den, BCE_EPS);             \
        }                                                                                   \
        break;                                                                              \
    case PW_BCEL: /* sigmoid(x) - y */                                                      \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            float e = exp_nonpos(-fabsf(x[i])), r = 1.0f / (1.0f + e);                      \
            dx[i] += (sel(x[i] >= 0, 1.0f, e) * r - t[i]) * (PW_C);                         \
        }                                                                                   \
        break;                                                                              \
    case PW_KL:                                                                             \
        if (sv->log_target) {                                                               \
            for (int64_t i = lo; i < hi; i++) dx[i] -= expf(t[i]) * (PW_C);                 \
        } else {                                                                            \
            for (int64_t i = lo; i < hi; i++) dx[i] -= t[i] * (PW_C);                       \
        }                                                                                   \
        break;                                                                              \
    case PW_HINGE: /* -y where the margin 1 - y*x is positive */                            \
        for (int64_t i = lo; i < hi; i++)                                                   \
            dx[i] -= sel(1.0f - t[i] * x[i] > 0, t[i] * (PW_C), 0.0f);                      \
        break;                                                                              \
    }
    if (sv->red == NB_REDUCTION_NONE) {
        PW_LOOPS(g[i])
    } else {
        PW_LOOPS(c0)
    }
#undef PW_LOOPS
}

static void pw_grad_input(int kind, const pw_saved *sv, const float *g, float *dx)
{
    pw_job j = {.kind = kind, .sv = sv, .g = g, .dx = dx, .c0 = (float)(g[0] / sv->denom)};
    nb__par_for(sv->n, nb__par_parts(sv->n, sv->n >= NB__LOSS_PAR_MIN), pw_grad_range, &j);
}

/* Adds into `in`'s gradient: straight when its shape is the broadcast shape,
 * else through a buffer summed over the broadcast dimensions. `negate` gives
 * the target's gradient of mse/l1 (d/dt = -d/dx). */
static nb_status pw_accumulate(nb_ctx *ctx, int kind, const pw_saved *sv, const float *g, nb_tensor *in, int negate)
{
    int direct = same_shape(in, sv->ndim, sv->shape) && !negate;
    float *buf = direct ? in->grad : nb_arena_calloc(nb_ctx_arena(ctx), (size_t)sv->n * sizeof(float));
    if (!buf) return nb__fail(NB_ERR_NOMEM, "%s backward: out of memory", pw_info[kind].name);
    pw_grad_input(kind, sv, g, buf);
    if (direct) return NB_OK;
    if (negate)
        for (int64_t i = 0; i < sv->n; i++) buf[i] = -buf[i];
    nb__sum_to(in->grad, in->ndim, in->shape, buf, sv->ndim, sv->shape);
    return NB_OK;
}

static nb_status pw_backward(nb_ctx *ctx, nb__node *nd, int kind)
{
    const pw_saved *sv = nd->saved;
    const float *g = nd->out->grad;
    nb_status s = NB_OK;
    if (nd->in[0]->requires_grad) s = pw_accumulate(ctx, kind, sv, g, nd->in[0], 0);
    if (!s && nd->nin > 1 && nd->in[1]->requires_grad) s = pw_accumulate(ctx, kind, sv, g, nd->in[1], 1);
    return s;
}

nb_tensor *nb_mse_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r)
{ return pointwise_loss(ctx, PW_MSE, input, target, r, 0); }
nb_tensor *nb_l1_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r)
{ return pointwise_loss(ctx, PW_L1, input, target, r, 0); }
nb_tensor *nb_bce_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r)
{ return pointwise_loss(ctx, PW_BCE, input, target, r, 0); }
nb_tensor *nb_bce_with_logits(nb_ctx *ctx, nb_tensor *logits, nb_tensor *target, nb_reduction r)
{ return pointwise_loss(ctx, PW_BCEL, logits, target, r, 0); }
nb_tensor *nb_kl_div(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r, int log_target)
{ return pointwise_loss(ctx, PW_KL, input, target, r, log_target != 0); }
nb_tensor *nb_hinge_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r)
{ return pointwise_loss(ctx, PW_HINGE, input, target, r, 0); }

nb_status nb__bw_mse_loss(nb_ctx *ctx, nb__node *n) { return pw_backward(ctx, n, PW_MSE); }
nb_status nb__bw_l1_loss(nb_ctx *ctx, nb__node *n) { return pw_backward(ctx, n, PW_L1); }
nb_status nb__bw_bce_loss(nb_ctx *ctx, nb__node *n) { return pw_backward(ctx, n, PW_BCE); }
nb_status nb__bw_bce_with_logits(nb_ctx *ctx, nb__node *n) { return pw_backward(ctx, n, PW_BCEL); }
nb_status nb__bw_kl_div(nb_ctx *ctx, nb__node *n) { return pw_backward(ctx, n, PW_KL); }
nb_status nb__bw_hinge_loss(nb_ctx *ctx, nb__node *n) { return pw_backward(ctx, n, PW_HINGE); }

/* ---- cross_entropy ---------------------------------------------------------
 * logits (N, C, d1..dk) seen as (N, C, inner); position p = n*inner + s has
 * target y[p]. Per position: m = max_c x, ls = log sum_c exp(x - m),
 * log p_y = (x_y - m) - ls, loss = -w[y] log p_y; the gradient is
 * w[y] * (softmax - onehot(y)) times the incoming gradient. */

#define CE_BLOCK 64

typedef struct {
    const float *x;    /* logits, contiguous */
    const int32_t *y;  /* N*inner targets (arena copy) */
    const float *w;    /* C class weights (arena copy) or NULL */
    const float *m, *ls;
    int64_t N, C, inner;
    int ignore;
    nb_reduction red;
    double denom;      /* MEAN: sum of w[y] over non-ignored positions */
} ce_saved;

/* m and ls of positions [i0, i0+w) of one sample (inner > 1). */
static void ce_lse_block(const float *x, int64_t C, int64_t inner, int64_t i0, int w, float *m, float *ls)
{
    for (int k = 0; k < w; k++) m[k] = -INFINITY, ls[k] = 0;
    for (int64_t c = 0; c < C; c++) {
        const float *xr = x + c * inner + i0;
        for (int k = 0; k < w; k++) m[k] = xr[k] > m[k] ? xr[k] : m[k];
    }
    for (int64_t c = 0; c < C; c++) {
        const float *xr = x + c * inner + i0;
        for (int k = 0; k < w; k++) ls[k] += exp_nonpos(xr[k] - m[k]);
    }
    for (int k = 0; k < w; k++) ls[k] = logf(ls[k]);
}

/* One cross entropy's rows (inner == 1) or blocks of CE_BLOCK positions
 * (nblk per sample): forward, the max m and log-sum-exp ls of each position;
 * backward, dx from the saved values and the incoming gradient g (c0 when
 * the loss is reduced). */
typedef struct {
    const float *x;
    float *m, *ls;
    int64_t C, inner, nblk;
    const ce_saved *sv;
    const float *g;
    float *dx;
    int none;
    float c0;
} ce_job;

static void ce_lse_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const ce_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t p = lo; p < hi; p++) {
        const float *xr = j->x + p * C;
        float mx = -INFINITY, s = 0;
#pragma omp simd reduction(max : mx)
        for (int64_t c = 0; c < C; c++) mx = xr[c] > mx ? xr[c] : mx;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; c++) s += exp_nonpos(xr[c] - mx);
        j->m[p] = mx;
        j->ls[p] = logf(s);
    }
}

static void ce_lse_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const ce_job *j = ctx;
    const int64_t C = j->C, inner = j->inner;
    for (int64_t t = lo; t < hi; t++) {
        int64_t n = t / j->nblk, i0 = (t % j->nblk) * CE_BLOCK;
        int w = (int)(inner - i0 < CE_BLOCK ? inner - i0 : CE_BLOCK);
        ce_lse_block(j->x + n * C * inner, C, inner, i0, w, j->m + n * inner + i0, j->ls + n * inner + i0);
    }
}

nb_tensor *nb_cross_entropy(nb_ctx *ctx, nb_tensor *logits, const int32_t *target,
                            const float *weight, int ignore_index, nb_reduction r)
{
    static const char name[] = "cross_entropy";
    if (nb__any_null(&logits, 1)) return NULL;
    if (!check_reduction(ctx, name, r, 0)) return NULL;
    char b[96];
    if (logits->ndim < 1)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "cross_entropy: logits must be (N, C), (N, C, d1, ...) "
                                              "or (C), got shape %s", nb_shape_str(logits, b, sizeof b));
    int64_t N = 1, C, inner = 1;
    if (logits->ndim == 1) {
        C = logits->shape[0];
    } else {
        N = logits->shape[0];
        C = logits->shape[1];
        for (int i = 2; i < logits->ndim; i++) inner *= logits->shape[i];
    }
    int64_t P = N * inner;
    if (P > 0 && !target) return nb__op_fail(ctx, NB_ERR_ARG, "cross_entropy: target is NULL");
    for (int64_t p = 0; p < P; p++)
        if (target[p] != ignore_index && (target[p] < 0 || target[p] >= C))
            return nb__op_fail(ctx, NB_ERR_ARG, "cross_entropy: target[%lld] = %d is out of range "
                                                "[0, %lld) for logits of shape %s (ignore_index is %d)",
                               (long long)p, (int)target[p], (long long)C, nb_shape_str(logits, b, sizeof b),
                               ignore_index);

    /* the output of NONE: the logits' shape without the class axis */
    int ondim = logits->ndim - 1;
    int64_t oshape[NB_MAX_DIMS];
    if (ondim > 0) oshape[0] = N;
    for (int i = 2; i < logits->ndim; i++) oshape[i - 1] = logits->shape[i];

    const float *x = own_values(ctx, logits);
    float *m = arena_alloc(ctx, (size_t)P * sizeof(float)), *ls = arena_alloc(ctx, (size_t)P * sizeof(float));
    nb_tensor *out = loss_out(ctx, r, ondim, oshape);
    float *l = r == NB_REDUCTION_NONE ? (out ? out->data : NULL) : arena_alloc(ctx, (size_t)P * sizeof(float));
    if (!x || !m || !ls || !out || !l) return nomem(ctx, name);

    ce_job j = {.x = x, .m = m, .ls = ls, .C = C, .inner = inner, .nblk = (inner + CE_BLOCK - 1) / CE_BLOCK};
    if (inner == 1) {
        nb__par_for(P, nb__par_parts(P, P * C >= NB__LOSS_PAR_MIN), ce_lse_rows, &j);
    } else {
        int64_t tasks = N * j.nblk;
        nb__par_for(tasks, nb__par_parts(tasks, P * C >= NB__LOSS_PAR_MIN), ce_lse_blocks, &j);
    }
    double wsum = 0;
    for (int64_t p = 0; p < P; p++) {
        int32_t y = target[p];
        if (y == ignore_index) {
            l[p] = 0;
            continue;
        }
        int64_t n = p / inner, s = p % inner;
        float w = weight ? weight[y] : 1.0f, xy = x[(n * C + y) * inner + s];
        l[p] = -w * ((xy - m[p]) - ls[p]);
        wsum += w;
    }
    double denom = r == NB_REDUCTION_MEAN ? wsum : 1;  /* all ignored: 0/0 = NaN, as torch */
    if (r != NB_REDUCTION_NONE && !reduce_into(ctx, out, l, P, denom)) return nomem(ctx, name);

    int want = nb_grad_enabled(ctx) && logits->requires_grad;
    ce_saved *sv = NULL;
    if (want) {
        sv = arena_alloc(ctx, sizeof *sv);
        int32_t *yc = arena_alloc(ctx, (size_t)P * sizeof(int32_t));
        float *wc = weight ? arena_alloc(ctx, (size_t)C * sizeof(float)) : NULL;
        if (!sv || !yc || (weight && !wc)) return nomem(ctx, name);
        if (P) memcpy(yc, target, (size_t)P * sizeof(int32_t));
        if (wc && C) memcpy(wc, weight, (size_t)C * sizeof(float));
        *sv = (ce_saved){.x = x, .y = yc, .w = wc, .m = m, .ls = ls, .N = N, .C = C, .inner = inner,
                         .ignore = ignore_index, .red = r, .denom = denom};
    }
    nb__node *node = nb__record(ctx, NB__OP_CROSS_ENTROPY, out, &logits, 1);
    if (want && !node) return nomem(ctx, name);
    if (node) node->saved = sv;
    return out;
}

static void ce_grad_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const ce_job *j = ctx;
    const ce_saved *sv = j->sv;
    const int64_t C = sv->C;
    for (int64_t p = lo; p < hi; p++) {
        int32_t y = sv->y[p];
        if (y == sv->ignore) continue;
        float coef = (j->none ? j->g[p] : j->c0) * (sv->w ? sv->w[y] : 1.0f), mp = sv->m[p], lp = sv->ls[p];
        const float *xr = sv->x + p * C;
        float *dr = j->dx + p * C;
        for (int64_t c = 0; c < C; c++) dr[c] += coef * exp_nonpos((xr[c] - mp) - lp);
        dr[y] -= coef;
    }
}

static void ce_grad_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const ce_job *j = ctx;
    const ce_saved *sv = j->sv;
    const int64_t C = sv->C, inner = sv->inner;
    const float *x = sv->x;
    float *dx = j->dx;
    for (int64_t t = lo; t < hi; t++) {
        int64_t n = t / j->nblk, i0 = (t % j->nblk) * CE_BLOCK;
        int w = (int)(inner - i0 < CE_BLOCK ? inner - i0 : CE_BLOCK);
        int64_t p0 = n * inner + i0;
        float coef[CE_BLOCK];
        for (int k = 0; k < w; k++) {
            int32_t y = sv->y[p0 + k];
            coef[k] = y == sv->ignore ? 0.0f : (j->none ? j->g[p0 + k] : j->c0) * (sv->w ? sv->w[y] : 1.0f);
        }
        const float *mp = sv->m + p0, *lp = sv->ls + p0;
        for (int64_t c = 0; c < C; c++) {
            const float *xr = x + (n * C + c) * inner + i0;
            float *dr = dx + (n * C + c) * inner + i0;
            for (int k = 0; k < w; k++) dr[k] += coef[k] * exp_nonpos((xr[k] - mp[k]) - lp[k]);
        }
        for (int k = 0; k < w; k++) {
            int32_t y = sv->y[p0 + k];
            if (y != sv->ignore) dx[(n * C + y) * inner + i0 + k] -= coef[k];
        }
    }
}

nb_status nb__bw_cross_entropy(nb_ctx *ctx, nb__node *nd)
{
    (void)ctx;
    const ce_saved *sv = nd->saved;
    const float *g = nd->out->grad;
    int none = sv->red == NB_REDUCTION_NONE;
    int64_t C = sv->C, inner = sv->inner, P = sv->N * inner;
    ce_job j = {.sv = sv, .g = g, .dx = nd->in[0]->grad, .none = none,
                .c0 = none ? 0.0f : (float)(g[0] / sv->denom), .nblk = (inner + CE_BLOCK - 1) / CE_BLOCK};
    if (inner == 1) {
        nb__par_for(P, nb__par_parts(P, P * C >= NB__LOSS_PAR_MIN), ce_grad_rows, &j);
    } else {
        int64_t tasks = sv->N * j.nblk;
        nb__par_for(tasks, nb__par_parts(tasks, P * C >= NB__LOSS_PAR_MIN), ce_grad_blocks, &j);
    }
    return NB_OK;
}

/* ---- multi_margin_loss -----------------------------------------------------
 * torch.nn.MultiMarginLoss: per sample with target y,
 * loss = sum_{i != y} w[y] * max(0, margin - x[y] + x[i])^p / C. */

typedef struct {
    const float *x;
    const int32_t *y;
    const float *w;
    int64_t N, C;
    int p;
    float margin;
    nb_reduction red;
    double denom;
} mm_saved;

/* One multi-margin loss's samples: forward (l from x, target and weight)
 * or backward (dx from the saved values and g, or c0 when reduced). */
typedef struct {
    const float *x;
    const int32_t *target;
    const float *weight;
    float *l;
    int64_t C;
    int p;
    float margin;
    const mm_saved *sv;
    const float *g;
    float *dx;
    int none;
    float c0;
} margin_job;

static void margin_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const margin_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = j->x + n * C;
        int32_t y = j->target[n];
        float s = 0, xy = xr[y];
        for (int64_t i = 0; i < C; i++) {
            float z = j->margin - xy + xr[i];
            if (i != y && z > 0) s += j->p == 1 ? z : z * z;
        }
        j->l[n] = (j->weight ? s * j->weight[y] : s) / (float)C;
    }
}

static void margin_grad_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const margin_job *j = ctx;
    const mm_saved *sv = j->sv;
    const int64_t C = sv->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = sv->x + n * C;
        float *dr = j->dx + n * C;
        int32_t y = sv->y[n];
        float coef = (j->none ? j->g[n] : j->c0) * (sv->w ? sv->w[y] : 1.0f) / (float)C, xy = xr[y], dy = 0;
        for (int64_t i = 0; i < C; i++) {
            float z = sv->margin - xy + xr[i];
            if (i != y && z > 0) {
                float h = coef * (sv->p == 1 ? 1.0f : 2.0f * z);
                dr[i] += h;
                dy -= h;
            }
        }
        dr[y] += dy;
    }
}

nb_tensor *nb_multi_margin_loss(nb_ctx *ctx, nb_tensor *input, const int32_t *target,
                                int p, float margin, const float *weight, nb_reduction r)
{
    static const char name[] = "multi_margin_loss";
    if (nb__any_null(&input, 1)) return NULL;
    if (!check_reduction(ctx, name, r, 0)) return NULL;
    if (p != 1 && p != 2) return nb__op_fail(ctx, NB_ERR_ARG, "multi_margin_loss: p must be 1 or 2, got %d", p);
    char b[96];
    if ((input->ndim != 1 && input->ndim != 2) || input->shape[input->ndim - 1] == 0)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "multi_margin_loss: input must be (N, C) or (C) with C > 0, got shape %s",
                           nb_shape_str(input, b, sizeof b));
    int64_t N = input->ndim == 2 ? input->shape[0] : 1, C = input->shape[input->ndim - 1];
    if (N > 0 && !target) return nb__op_fail(ctx, NB_ERR_ARG, "multi_margin_loss: target is NULL");
    for (int64_t i = 0; i < N; i++)
        if (target[i] < 0 || target[i] >= C)
            return nb__op_fail(ctx, NB_ERR_ARG, "multi_margin_loss: target[%lld] = %d is out of range [0, %lld)",
                               (long long)i, (int)target[i], (long long)C);
    const float *x = own_values(ctx, input);
    nb_tensor *out = loss_out(ctx, r, input->ndim - 1, input->shape);
    float *l = r == NB_REDUCTION_NONE ? (out ? out->data : NULL) : arena_alloc(ctx, (size_t)N * sizeof(float));
    if (!x || !out || !l) return nomem(ctx, name);
    margin_job j = {.x = x, .target = target, .weight = weight, .l = l, .C = C, .p = p, .margin = margin};
    nb__par_for(N, nb__par_parts(N, N * C >= NB__LOSS_PAR_MIN), margin_rows, &j);
    double denom = r == NB_REDUCTION_MEAN ? (double)N : 1;
    if (r != NB_REDUCTION_NONE && !reduce_into(ctx, out, l, N, denom)) return nomem(ctx, name);

    int want = nb_grad_enabled(ctx) && input->requires_grad;
    mm_saved *sv = NULL;
    if (want) {
        sv = arena_alloc(ctx, sizeof *sv);
        int32_t *yc = arena_alloc(ctx, (size_t)N * sizeof(int32_t));
        float *wc = weight ? arena_alloc(ctx, (size_t)C * sizeof(float)) : NULL;
        if (!sv || !yc || (weight && !wc)) return nomem(ctx, name);
        if (N) memcpy(yc, target, (size_t)N * sizeof(int32_t));
        if (wc) memcpy(wc, weight, (size_t)C * sizeof(float));
        *sv = (mm_saved){.x = x, .y = yc, .w = wc, .N = N, .C = C, .p = p, .margin = margin, .red = r, .denom = denom};
    }
    nb__node *node = nb__record(ctx, NB__OP_MULTI_MARGIN_LOSS, out, &input, 1);
    if (want && !node) return nomem(ctx, name);
    if (node) node->saved = sv;
    return out;
}

nb_status nb__bw_multi_margin_loss(nb_ctx *ctx, nb__node *nd)
{
    (void)ctx;
    const mm_saved *sv = nd->saved;
    const float *g = nd->out->grad;
    int none = sv->red == NB_REDUCTION_NONE;
    int64_t N = sv->N, C = sv->C;
    margin_job j = {.sv = sv, .g = g, .dx = nd->in[0]->grad, .none = none,
                    .c0 = none ? 0.0f : (float)(g[0] / sv->denom)};
    nb__par_for(N, nb__par_parts(N, N * C >= NB__LOSS_PAR_MIN), margin_grad_rows, &j);
    return NB_OK;
}
