/* Gradient clipping (torch.nn.utils.clip_grad_norm_ and clip_grad_value_,
 * formulas in nabla/schedule.h) over a model's trainable gradients.
 *
 * The norm is deterministic: each gradient is cut into fixed chunks, each
 * chunk is reduced over fixed lanes and the partial results are added in
 * order, so neither the thread count nor the instruction set (the lanes are
 * independent and -std=c11 fuses no multiply-add) changes a bit of it. */
#include "optim_impl.h"
#include <math.h>
#include <stdint.h>

/* Elements per chunk of a gradient, and chunks reduced per parallel loop
 * (their partial results live on the stack). */
#define CHUNK 65536
#define MAX_TASKS 64
/* Independent accumulators of a chunk's reduction: the lane loop is what
 * the compiler vectorises (two AVX-512 registers of doubles). */
#define LANES 16

typedef enum { NORM_1, NORM_2, NORM_P, NORM_INF } norm_kind;

static int trainable(const nb_param *p) { return !p->buffer && p->t.requires_grad; }

static double lanes_sum(const double *acc)
{
    double s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

/* sum g^2, in double (each square is exact in double) */
NB__OPTIM_KERNEL static double sum_sq(const float *g, int64_t n)
{
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (double)g[i] * (double)g[i];
    return lanes_sum(acc);
}

/* sum |g| */
NB__OPTIM_KERNEL static double sum_abs(const float *g, int64_t n)
{
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += fabs((double)g[i + j]);
    for (int j = 0; i < n; i++, j++) acc[j] += fabs((double)g[i]);
    return lanes_sum(acc);
}

/* max |g|, NaN if any g is NaN. The bits of a float without its sign order
 * like the magnitudes, and a NaN's are above infinity's, so an unsigned
 * integer max does it (and vectorises, where a float max drops NaNs). */
NB__OPTIM_KERNEL static double max_abs(const float *g, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, g + i, sizeof u);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

/* sum |g|^p for any other p (a libm call per element: not the common case) */
static double sum_pow(const float *g, int64_t n, double p)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += pow(fabs((double)g[i]), p);
    return s;
}

static double reduce_range(norm_kind k, double p, const float *g, int64_t n)
{
    switch (k) {
    case NORM_1: return sum_abs(g, n);
    case NORM_2: return sum_sq(g, n);
    case NORM_INF: return max_abs(g, n);
    default: return sum_pow(g, n, p);
    }
}

/* Partial results combined: a sum, or a max that keeps a NaN. */
static double combine(norm_kind k, double a, double b)
{
    if (k != NORM_INF) return a + b;
    return isnan(a) || a > b ? a : b;
}

typedef struct {
    norm_kind k;
    double p;
    const float *g;
    int64_t n, c0;     /* chunks c0 + t of g */
    double *part;      /* part[t]: chunk c0 + t reduced */
} chunk_args;

static void reduce_chunks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const chunk_args *a = ctx;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t b = (a->c0 + t) * CHUNK, e = b + CHUNK < a->n ? b + CHUNK : a->n;
        a->part[t] = reduce_range(a->k, a->p, a->g + b, e - b);
    }
}

/* One gradient's reduction: chunks in parallel, combined in order. */
static double reduce_grad(norm_kind k, double p, const float *g, int64_t n)
{
    if (n <= CHUNK) return reduce_range(k, p, g, n);
    const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    double r = 0, part[MAX_TASKS];
    chunk_args a = {k, p, g, n, 0, part};
    for (a.c0 = 0; a.c0 < nchunks; a.c0 += MAX_TASKS) {
        const int ntasks = nchunks - a.c0 < MAX_TASKS ? (int)(nchunks - a.c0) : MAX_TASKS;
        nb__par_for(ntasks, nb__par_parts(ntasks, 1), reduce_chunks, &a);
        for (int t = 0; t < ntasks; t++) r = combine(k, r, part[t]);
    }
    return r;
}

typedef struct scale_args {
    float *g;
    float  c;
} scale_args;

NB__OPTIM_KERNEL static void scale_range(const void *args, int64_t lo, int64_t hi)
{
    const scale_args *a = args;
    float *restrict g = a->g;
    const float c = a->c;
    for (int64_t i = lo; i < hi; i++) g[i] *= c;
}

nb_status nb_clip_grad_norm(nb_model *m, double max_norm, double norm_type, int error_if_nonfinite,
                            double *total_norm_out)
{
    if (!m) return nb__fail(NB_ERR_ARG, "clip_grad_norm: model is NULL");
    if (!(max_norm >= 0))
        return nb__fail(NB_ERR_ARG, "clip_grad_norm: invalid max_norm %g (must be >= 0)", max_norm);
    if (!(norm_type > 0))
        return nb__fail(NB_ERR_ARG, "clip_grad_norm: invalid norm_type %g (must be > 0, or INFINITY)", norm_type);
    const norm_kind k = isinf(norm_type) ? NORM_INF : norm_type == 1 ? NORM_1 : norm_type == 2 ? NORM_2 : NORM_P;
    double total = 0;
    for (int i = 0; i < m->nparams; i++) {
        const nb_param *p = &m->params[i];
        if (trainable(p)) total = combine(k, total, reduce_grad(k, norm_type, p->t.grad, nb_tensor_numel(&p->t)));
    }
    if (k == NORM_2) total = sqrt(total);
    else if (k == NORM_P) total = pow(total, 1.0 / norm_type);
    if (total_norm_out) *total_norm_out = total;
    if (error_if_nonfinite && !isfinite(total))
        return nb__fail(NB_ERR_NONFINITE, "clip_grad_norm: the total norm of order %g of the gradients is %g; "
                        "gradients unchanged", norm_type, total);
    const double coef = max_norm / (total + 1e-6);
    if (coef >= 1) return NB_OK;   /* clamped to 1: nothing changes (a NaN coef still multiplies, as torch) */
    for (int i = 0; i < m->nparams; i++) {
        const nb_param *p = &m->params[i];
        if (!trainable(p)) continue;
        scale_args a = {.g = p->t.grad, .c = (float)coef};
        nb__optim_for(scale_range, &a, nb_tensor_numel(&p->t));
    }
    return NB_OK;
}

typedef struct clamp_args {
    float *g;
    float  lo, hi;
} clamp_args;

NB__OPTIM_KERNEL static void clamp_range(const void *args, int64_t lo, int64_t hi)
{
    const clamp_args *a = args;
    float *restrict g = a->g;
    const float vlo = a->lo, vhi = a->hi;
    for (int64_t i = lo; i < hi; i++) g[i] = g[i] < vlo ? vlo : g[i] > vhi ? vhi : g[i];   /* NaN stays */
}

nb_status nb_clip_grad_value(nb_model *m, double clip_value)
{
    if (!m) return nb__fail(NB_ERR_ARG, "clip_grad_value: model is NULL");
    if (!(clip_value >= 0))
        return nb__fail(NB_ERR_ARG, "clip_grad_value: invalid clip_value %g (must be >= 0)", clip_value);
    for (int i = 0; i < m->nparams; i++) {
        const nb_param *p = &m->params[i];
        if (!trainable(p)) continue;
        clamp_args a = {.g = p->t.grad, .lo = (float)-clip_value, .hi = (float)clip_value};
        nb__optim_for(clamp_range, &a, nb_tensor_numel(&p->t));
    }
    return NB_OK;
}
