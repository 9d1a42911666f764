/* Activations (the notes §1, §11): sigmoid, tanh, relu, leaky_relu, softmax,
 * log_softmax. Each result is a new contiguous tensor of x's shape.
 *
 * A strided x is first copied into the result's buffer and transformed in
 * place, so every kernel below runs over contiguous memory. Backward passes
 * read the saved output (sigmoid, tanh, relu, softmax, log_softmax) or the
 * input (leaky_relu, whose sign test must be on x as in torch). Loops split
 * into contiguous ranges on the thread pool once a tensor is big enough;
 * each element or row is computed by one thread, so results do not depend on
 * the thread count. The kernels are NB_CLONES (simd.h): AVX-512, AVX2 or
 * baseline x86-64 chosen at load time, with the same bits. */
#include "../core/internal.h"
#include "fastmath.h"
#include "../kernels/simd.h"
#include <math.h>
#include <stdint.h>

/* Below this many elements a single thread is faster than a parallel loop. */
#define NB__ACT_PAR_MIN 32768

/* ---- vectorisable math -----------------------------------------------------
 * libm's expf/tanhf are calls that stop the compiler from vectorising a loop.
 * These inline versions are plain arithmetic and bit operations, and choose
 * with sel() (bit masks) rather than ?:, because GCC will not if-convert a ?:
 * that guards floating-point arithmetic without -fno-trapping-math. Checked
 * over every float of their domain against double-precision exp/tanh:
 * exp_nonpos within 1 ulp, tanh_fast within 1.6 ulp (glibc's tanhf: 2.2).
 * sel and exp_nonpos are in fastmath.h. */

/* tanh: Cephes' odd polynomial below |x| = 0.625, (1 - e)/(1 + e) with
 * e = e^-2|x| above (no cancellation there). */
static inline float tanh_fast(float x)
{
    float ax = fabsf(x), z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float e = exp_nonpos(-2.0f * ax);
    float big = copysignf((1.0f - e) / (1.0f + e), x);
    return sel(ax < 0.625f, small, big);
}

/* ---- shared plumbing ------------------------------------------------------ */

/* Allocates y like x and returns x's values as a contiguous array: x->data
 * when x is contiguous, else y->data after copying x into it (the kernels may
 * then work in place). */
static nb_tensor *unary_out(nb_ctx *ctx, nb_tensor *x, const float **src)
{
    nb_tensor *y = nb_tensor_new(ctx, x->ndim, x->shape);
    if (!y) return NULL;
    if (nb_tensor_is_contiguous(x)) {
        *src = x->data;
    } else {
        nb_tensor_copy_out(x, y->data);
        *src = y->data;
    }
    return y;
}

/* x's values as a contiguous array for a backward pass (a copy in the arena
 * when x is a strided view); NULL when out of memory. */
static const float *contiguous_values(nb_ctx *ctx, nb_tensor *x)
{
    if (nb_tensor_is_contiguous(x)) return x->data;
    float *buf = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(x) * sizeof(float));
    if (!buf) {
        nb__ctx_set_status(ctx, NB_ERR_NOMEM);
        return NULL;
    }
    nb_tensor_copy_out(x, buf);
    return buf;
}

/* An elementwise kernel's operands: out[i] from x[i] (forward; out may be
 * x), or gx[i] from y[i] (the saved output, or the input for leaky_relu)
 * and g[i]. */
typedef struct {
    const float *x, *y, *g;
    float *out, *gx;
    float slope;
} act_job;

/* fn over [0, n) of an elementwise kernel, in parallel when n is large. */
static void act_for(int64_t n, nb__range_fn fn, act_job *j)
{
    nb__par_for(n, nb__par_parts(n, n >= NB__ACT_PAR_MIN), fn, j);
}

static nb_tensor *record1(nb_ctx *ctx, int op, const char *name, nb_tensor *x, nb_tensor *y, float f0)
{
    int want = nb_grad_enabled(ctx) && x->requires_grad;
    nb__node *n = nb__record(ctx, op, y, &x, 1);
    if (want && !n) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory recording the op", name);
    if (n) n->f[0] = f0;
    return y;
}

/* ---- sigmoid -------------------------------------------------------------- */

/* 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) below, through e = e^-|x| <= 1: no
 * overflow for any x, and tiny outputs keep their relative precision. */
NB_CLONES static void sigmoid_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *s = j->x;
    float *d = j->out;
    for (int64_t i = lo; i < hi; i++) {
        float v = s[i], e = exp_nonpos(-fabsf(v)), r = 1.0f / (1.0f + e);
        d[i] = sel(v >= 0, 1.0f, e) * r;
    }
}

NB_CLONES static void sigmoid_bw_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *y = j->y, *g = j->g;
    float *gx = j->gx;
    for (int64_t i = lo; i < hi; i++) gx[i] += g[i] * y[i] * (1.0f - y[i]);
}

nb_tensor *nb_sigmoid(nb_ctx *ctx, nb_tensor *x)
{
    if (nb__any_null(&x, 1)) return NULL;
    const float *s;
    nb_tensor *y = unary_out(ctx, x, &s);
    if (!y) return NULL;
    act_for(nb_tensor_numel(x), sigmoid_range, &(act_job){.x = s, .out = y->data});
    return record1(ctx, NB__OP_SIGMOID, "sigmoid", x, y, 0);
}

nb_status nb__bw_sigmoid(nb_ctx *ctx, nb__node *nd)
{
    (void)ctx;
    act_for(nb_tensor_numel(nd->out), sigmoid_bw_range,
            &(act_job){.y = nd->out->data, .g = nd->out->grad, .gx = nd->in[0]->grad});
    return NB_OK;
}

/* ---- tanh ----------------------------------------------------------------- */

NB_CLONES static void tanh_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *s = j->x;
    float *d = j->out;
    for (int64_t i = lo; i < hi; i++) d[i] = tanh_fast(s[i]);
}

NB_CLONES static void tanh_bw_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *y = j->y, *g = j->g;
    float *gx = j->gx;
    for (int64_t i = lo; i < hi; i++) gx[i] += g[i] * (1.0f - y[i] * y[i]);
}

nb_tensor *nb_tanh(nb_ctx *ctx, nb_tensor *x)
{
    if (nb__any_null(&x, 1)) return NULL;
    const float *s;
    nb_tensor *y = unary_out(ctx, x, &s);
    if (!y) return NULL;
    act_for(nb_tensor_numel(x), tanh_range, &(act_job){.x = s, .out = y->data});
    return record1(ctx, NB__OP_TANH, "tanh", x, y, 0);
}

nb_status nb__bw_tanh(nb_ctx *ctx, nb__node *nd)
{
    (void)ctx;
    act_for(nb_tensor_numel(nd->out), tanh_bw_range,
            &(act_job){.y = nd->out->data, .g = nd->out->grad, .gx = nd->in[0]->grad});
    return NB_OK;
}

/* ---- relu ----------------------------------------------------------------- */

/* max(0, x); NaN passes through (torch's clamp_min). The gradient is 0 at
 * x == 0, as torch (threshold_backward on the result). */
NB_CLONES static void relu_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *s = j->x;
    float *d = j->out;
    for (int64_t i = lo; i < hi; i++) d[i] = s[i] < 0 ? 0.0f : s[i];
}

/* gx = dy where y > 0 (a fresh gradient), else 0 */
NB_CLONES static void relu_bw_set_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *y = j->y, *g = j->g;
    float *gx = j->gx;
    for (int64_t i = lo; i < hi; i++) gx[i] = sel(y[i] > 0, g[i], 0.0f);
}

NB_CLONES static void relu_bw_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *y = j->y, *g = j->g;
    float *gx = j->gx;
    for (int64_t i = lo; i < hi; i++) gx[i] += sel(y[i] > 0, g[i], 0.0f);
}

nb_tensor *nb_relu(nb_ctx *ctx, nb_tensor *x)
{
    if (nb__any_null(&x, 1)) return NULL;
    const float *s;
    nb_tensor *y = unary_out(ctx, x, &s);
    if (!y) return NULL;
    act_for(nb_tensor_numel(x), relu_range, &(act_job){.x = s, .out = y->data});
    return record1(ctx, NB__OP_RELU, "relu", x, y, 0);
}

nb_status nb__bw_relu(nb_ctx *ctx, nb__node *nd)
{
    (void)ctx;
    act_job j = {.y = nd->out->data, .g = nd->out->grad, .gx = nd->in[0]->grad};
    act_for(nb_tensor_numel(nd->out), nb__fresh(nd, 0) ? relu_bw_set_range : relu_bw_range, &j);
    return NB_OK;
}

/* ---- leaky_relu ----------------------------------------------------------- */

/* x > 0 ? x : slope*x; gradient x > 0 ? 1 : slope (so `slope` at 0), as
 * torch's leaky_relu_backward, for any slope (also negative or > 1). */
NB_CLONES static void leaky_relu_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *s = j->x, slope = j->slope;
    float *d = j->out;
    for (int64_t i = lo; i < hi; i++) d[i] = sel(s[i] > 0, s[i], s[i] * slope);
}

/* (y holds the input here) */
NB_CLONES static void leaky_relu_bw_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const act_job *j = ctx;
    const float *x = j->y, *g = j->g, slope = j->slope;
    float *gx = j->gx;
    for (int64_t i = lo; i < hi; i++) gx[i] += sel(x[i] > 0, g[i], g[i] * slope);
}

nb_tensor *nb_leaky_relu(nb_ctx *ctx, nb_tensor *x, float slope)
{
    if (nb__any_null(&x, 1)) return NULL;
    const float *s;
    nb_tensor *y = unary_out(ctx, x, &s);
    if (!y) return NULL;
    act_for(nb_tensor_numel(x), leaky_relu_range, &(act_job){.x = s, .out = y->data, .slope = slope});
    return record1(ctx, NB__OP_LEAKY_RELU, "leaky_relu", x, y, slope);
}

nb_status nb__bw_leaky_relu(nb_ctx *ctx, nb__node *nd)
{
    const float *x = contiguous_values(ctx, nd->in[0]), *g = nd->out->grad;
    if (!x) return nb__fail(NB_ERR_NOMEM, "leaky_relu backward: out of memory");
    act_for(nb_tensor_numel(nd->out), leaky_relu_bw_range,
            &(act_job){.y = x, .g = g, .gx = nd->in[0]->grad, .slope = nd->f[0]});
    return NB_OK;
}

/* ---- softmax and log_softmax ---------------------------------------------
 * x is seen as (outer, dim, inner) with dim the softmax axis. With inner == 1
 * (the last axis) a row is contiguous; otherwise the kernels sweep `dim`
 * with the inner positions, a block of SM_BLOCK at a time, as the vector lanes,
 * so every loop still walks memory with stride 1. */

#define SM_BLOCK 64

typedef struct { int64_t outer, dim, inner; } sm_geom;

static int sm_geometry(nb_ctx *ctx, const char *name, nb_tensor *x, int axis, sm_geom *g)
{
    int nd = x->ndim ? x->ndim : 1;  /* a scalar has one axis of size 1, as torch */
    int ax = nb__axis(axis, nd);
    if (ax < 0) {
        char b[96];
        nb__op_fail(ctx, NB_ERR_ARG, "%s: axis %d is out of range for shape %s", name, axis,
                    nb_shape_str(x, b, sizeof b));
        return 0;
    }
    g->outer = g->inner = 1;
    g->dim = x->ndim ? x->shape[ax] : 1;
    for (int i = 0; i < ax; i++) g->outer *= x->shape[i];
    for (int i = ax + 1; i < x->ndim; i++) g->inner *= x->shape[i];
    return 1;
}

/* A row's sums run in SM_LANES fixed lanes (element j in lane j %
 * SM_LANES), added up by nb__sum_lanes16: the same bits in every NB_CLONES
 * variant, whatever its vector width (an `omp simd` reduction would group
 * the sum by the width). */
#define SM_LANES 16

/* sum_j e^(x[j] - m), each term stored in y[j] when y is not NULL. */
static inline float sm_exp_sum(const float *x, float m, float *y, int64_t dim)
{
    float a[SM_LANES] = {0};
    int64_t j = 0;
    for (; j + SM_LANES <= dim; j += SM_LANES)
        for (int l = 0; l < SM_LANES; l++) {
            const float e = exp_nonpos(x[j + l] - m);
            if (y) y[j + l] = e;
            a[l] += e;
        }
    for (int l = 0; j + l < dim; l++) {
        const float e = exp_nonpos(x[j + l] - m);
        if (y) y[j + l] = e;
        a[l] += e;
    }
    return nb__sum_lanes16(a);
}

/* sum_j g[j] * (y ? y[j] : 1) */
static inline float sm_dot(const float *g, const float *y, int64_t dim)
{
    float a[SM_LANES] = {0};
    int64_t j = 0;
    for (; j + SM_LANES <= dim; j += SM_LANES)
        for (int l = 0; l < SM_LANES; l++) a[l] += y ? g[j + l] * y[j + l] : g[j + l];
    for (int l = 0; j + l < dim; l++) a[l] += y ? g[j + l] * y[j + l] : g[j + l];
    return nb__sum_lanes16(a);
}

/* One row (inner == 1): y = softmax(x) or log_softmax(x); y may equal x. The
 * maximum does not depend on the order it is taken in. */
NB_CLONES static void sm_row(const float *x, float *y, int64_t dim, int logsm)
{
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < dim; j++) m = x[j] > m ? x[j] : m;
    if (logsm) {
        float ls = logf(sm_exp_sum(x, m, NULL, dim));
        for (int64_t j = 0; j < dim; j++) y[j] = (x[j] - m) - ls;
    } else {
        float r = 1.0f / sm_exp_sum(x, m, y, dim);
        for (int64_t j = 0; j < dim; j++) y[j] *= r;
    }
}

/* Positions [i0, i0+w) of one outer slab (dim x inner, inner > 1). */
NB_CLONES static void sm_block(const float *x, float *y, int64_t dim, int64_t inner, int64_t i0, int w, int logsm)
{
    float m[SM_BLOCK], s[SM_BLOCK];
    for (int k = 0; k < w; k++) m[k] = -INFINITY, s[k] = 0;
    for (int64_t j = 0; j < dim; j++) {
        const float *xr = x + j * inner + i0;
        for (int k = 0; k < w; k++) m[k] = xr[k] > m[k] ? xr[k] : m[k];
    }
    for (int64_t j = 0; j < dim; j++) {
        const float *xr = x + j * inner + i0;
        float *yr = y + j * inner + i0;
        if (logsm)
            for (int k = 0; k < w; k++) s[k] += exp_nonpos(xr[k] - m[k]);
        else
            for (int k = 0; k < w; k++) {
                float e = exp_nonpos(xr[k] - m[k]);
                yr[k] = e;
                s[k] += e;
            }
    }
    if (logsm) {
        for (int k = 0; k < w; k++) s[k] = logf(s[k]);
        for (int64_t j = 0; j < dim; j++) {
            const float *xr = x + j * inner + i0;
            float *yr = y + j * inner + i0;
            for (int k = 0; k < w; k++) yr[k] = (xr[k] - m[k]) - s[k];
        }
    } else {
        for (int k = 0; k < w; k++) s[k] = 1.0f / s[k];
        for (int64_t j = 0; j < dim; j++) {
            float *yr = y + j * inner + i0;
            for (int k = 0; k < w; k++) yr[k] *= s[k];
        }
    }
}

/* One softmax, forward (x into y) or backward (y, g into gx), over rows
 * (inner == 1) or blocks of SM_BLOCK inner positions (nblk per slab). */
typedef struct {
    const float *x, *y, *g;
    float *out, *gx;
    int64_t dim, inner, nblk;
    int logsm;
} sm_job;

static void sm_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const sm_job *j = ctx;
    for (int64_t r = lo; r < hi; r++) sm_row(j->x + r * j->dim, j->out + r * j->dim, j->dim, j->logsm);
}

/* Block t of a softmax over a middle dimension: its offset (the outer
 * index's slab), first inner column i0 and width. */
static int64_t sm_tile(const sm_job *j, int64_t t, int64_t *i0, int *w)
{
    *i0 = (t % j->nblk) * SM_BLOCK;
    *w = (int)(j->inner - *i0 < SM_BLOCK ? j->inner - *i0 : SM_BLOCK);
    return t / j->nblk * j->dim * j->inner;
}

static void sm_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const sm_job *j = ctx;
    for (int64_t t = lo; t < hi; t++) {
        int64_t i0;
        int w;
        const int64_t off = sm_tile(j, t, &i0, &w);
        sm_block(j->x + off, j->out + off, j->dim, j->inner, i0, w, j->logsm);
    }
}

static nb_tensor *softmax_any(nb_ctx *ctx, nb_tensor *x, int axis, int logsm)
{
    const char *name = logsm ? "log_softmax" : "softmax";
    if (nb__any_null(&x, 1)) return NULL;
    sm_geom g;
    if (!sm_geometry(ctx, name, x, axis, &g)) return NULL;
    const float *s;
    nb_tensor *y = unary_out(ctx, x, &s);
    if (!y) return NULL;
    int64_t n = g.outer * g.dim * g.inner;
    sm_job j = {.x = s, .out = y->data, .dim = g.dim, .inner = g.inner, .logsm = logsm};
    if (g.inner == 1) {
        nb__par_for(g.outer, nb__par_parts(g.outer, n >= NB__ACT_PAR_MIN), sm_rows, &j);
    } else {
        j.nblk = (g.inner + SM_BLOCK - 1) / SM_BLOCK;
        int64_t tasks = g.outer * j.nblk;
        nb__par_for(tasks, nb__par_parts(tasks, n >= NB__ACT_PAR_MIN), sm_blocks, &j);
    }
    nb_tensor *r = record1(ctx, logsm ? NB__OP_LOG_SOFTMAX : NB__OP_SOFTMAX, name, x, y, 0);
    if (r && r->node) {
        r->node->i[0] = g.outer;
        r->node->i[1] = g.dim;
        r->node->i[2] = g.inner;
    }
    return r;
}

nb_tensor *nb_softmax(nb_ctx *ctx, nb_tensor *x, int axis) { return softmax_any(ctx, x, axis, 0); }
nb_tensor *nb_log_softmax(nb_ctx *ctx, nb_tensor *x, int axis) { return softmax_any(ctx, x, axis, 1); }

/* softmax:     dx = y * (g - sum_j g_j y_j)
 * log_softmax: dx = g - exp(y) * sum_j g_j      (y is the saved output) */
NB_CLONES static void sm_bw_row(const float *y, const float *g, float *gx, int64_t dim, int logsm)
{
    if (logsm) {
        const float s = sm_dot(g, NULL, dim);
        for (int64_t j = 0; j < dim; j++) gx[j] += g[j] - exp_nonpos(y[j]) * s;
    } else {
        const float s = sm_dot(g, y, dim);
        for (int64_t j = 0; j < dim; j++) gx[j] += y[j] * (g[j] - s);
    }
}

NB_CLONES static void sm_bw_block(const float *y, const float *g, float *gx, int64_t dim, int64_t inner,
                        int64_t i0, int w, int logsm)
{
    float s[SM_BLOCK];
    for (int k = 0; k < w; k++) s[k] = 0;
    for (int64_t j = 0; j < dim; j++) {
        const float *yr = y + j * inner + i0, *gr = g + j * inner + i0;
        if (logsm)
            for (int k = 0; k < w; k++) s[k] += gr[k];
        else
            for (int k = 0; k < w; k++) s[k] += gr[k] * yr[k];
    }
    for (int64_t j = 0; j < dim; j++) {
        const float *yr = y + j * inner + i0, *gr = g + j * inner + i0;
        float *xr = gx + j * inner + i0;
        if (logsm)
            for (int k = 0; k < w; k++) xr[k] += gr[k] - exp_nonpos(yr[k]) * s[k];
        else
            for (int k = 0; k < w; k++) xr[k] += yr[k] * (gr[k] - s[k]);
    }
}

static void sm_bw_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const sm_job *j = ctx;
    const int64_t dim = j->dim;
    for (int64_t r = lo; r < hi; r++) sm_bw_row(j->y + r * dim, j->g + r * dim, j->gx + r * dim, dim, j->logsm);
}

static void sm_bw_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const sm_job *j = ctx;
    for (int64_t t = lo; t < hi; t++) {
        int64_t i0;
        int w;
        const int64_t off = sm_tile(j, t, &i0, &w);
        sm_bw_block(j->y + off, j->g + off, j->gx + off, j->dim, j->inner, i0, w, j->logsm);
    }
}

static nb_status softmax_bw(nb__node *nd, int logsm)
{
    int64_t outer = nd->i[0], dim = nd->i[1], inner = nd->i[2], n = outer * dim * inner;
    sm_job j = {.y = nd->out->data, .g = nd->out->grad, .gx = nd->in[0]->grad, .dim = dim, .inner = inner,
                .logsm = logsm};
    if (inner == 1) {
        nb__par_for(outer, nb__par_parts(outer, n >= NB__ACT_PAR_MIN), sm_bw_rows, &j);
    } else {
        j.nblk = (inner + SM_BLOCK - 1) / SM_BLOCK;
        int64_t tasks = outer * j.nblk;
        nb__par_for(tasks, nb__par_parts(tasks, n >= NB__ACT_PAR_MIN), sm_bw_blocks, &j);
    }
    return NB_OK;
}

nb_status nb__bw_softmax(nb_ctx *ctx, nb__node *nd) { (void)ctx; return softmax_bw(nd, 0); }
nb_status nb__bw_log_softmax(nb_ctx *ctx, nb__node *nd) { (void)ctx; return softmax_bw(nd, 1); }
