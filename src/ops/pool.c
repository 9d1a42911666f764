/* Pooling (NCHW, as torch): max_pool2d, avg_pool2d, adaptive_avg_pool2d,
 * forward and backward. Inputs are (N,C,H,W) or (C,H,W); each of the N*C
 * planes is pooled on its own, the planes split into contiguous ranges on the
 * thread pool, so results do not depend on the thread count.
 *
 * Windows follow torch's CPU kernels exactly:
 *   - output size floor((in + 2p - d(k-1) - 1) / s) + 1, or with ceil_mode
 *     ceil(...) + 1 less one when the last window would start past the input
 *     and left padding (torch's pooling_output_shape);
 *   - max scans a window row by row and keeps v when v > max or v is NaN, so
 *     the gradient goes to the first maximum, and a NaN wins (the last NaN);
 *     padding never wins (it is -inf). The flat index of the winner in its
 *     plane is saved (int32) for backward;
 *   - avg divides the window's sum by its size: with count_include_pad the
 *     window clipped to the padded input, else clipped to the input;
 *   - adaptive windows are [floor(i*H/OH), ceil((i+1)*H/OH)) and the sum is
 *     divided by the rows then the columns (sum / kh / kw), as torch.
 *
 * Outputs whose windows lie inside the input (the interior) run row kernels
 * without bounds checks. Kernel 2 stride 2 and kernel 3 stride 2 have their
 * own (pool_simd.h): AVX-512 intrinsics with masked row tails
 * (pool_avx512.c) when the CPU has them, else portable C written so GCC
 * vectorises it (selects on values become blends), compiled for AVX2 and
 * baseline x86-64 with the variant chosen at load time (target_clones). Both
 * give the same bits. Border outputs take the general path. */
#include "../core/internal.h"
#include "pool_simd.h"
#include "../kernels/simd.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>

#define POOL_PAR_MIN 32768   /* input elements before threads pay off */

typedef struct {
    int64_t N, C, H, W, OH, OW;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int ceil_mode, cip;
    /* outputs whose whole window lies inside the input: [lo, hi) */
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    int k2s2, k3s2;                  /* kernel 2 / 3, stride 2, dilation 1 */
    const nb__pool_kernels *K;       /* row kernels for those */
} pool_geom;

static const nb__pool_kernels *pool_kernels(void);

typedef struct {
    pool_geom g;
    int32_t *idx;            /* max: flat in-plane index of each output's winner, -1 none */
    int64_t *rows, *cols;    /* adaptive: [start, end) of each output row / column */
} pool_saved;

/* What the plane loops below share: planes [lo, hi) of x (input side, read)
 * into y, or of gy into gx for a backward; ip and op are the input and
 * output plane sizes. */
typedef struct {
    const pool_geom *g;
    const float *x, *gy;
    float *y, *gx;
    int32_t *idx;
    const int64_t *rows, *cols;
    const float *cw;
    int64_t planes, ip, op;
} plane_job;

/* ---- geometry --------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* torch's pooling_output_shape_pad with equal padding on both sides. */
static int64_t pool_out_size(int64_t in, int k, int s, int p, int d, int ceil_mode)
{
    int64_t o = floor_div(in + 2 * (int64_t)p - (int64_t)d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (o - 1) * s >= in + p) o--;
    return o;
}

/* Outputs [lo, hi) along one dimension whose windows start at >= 0 and end
 * inside the input (the rest need bounds checks). */
static void interior(int64_t in, int64_t out, int k, int s, int p, int d, int64_t *lo, int64_t *hi)
{
    int64_t l = (p + s - 1) / s;                       /* o*s - p >= 0 */
    int64_t last = in - 1 - (int64_t)(k - 1) * d + p;  /* o*s <= last */
    int64_t h = last < 0 ? 0 : last / s + 1;
    if (l > out) l = out;
    if (h > out) h = out;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* Kernel taps [lo, hi) of a window starting at s (step d, k taps) that fall
 * inside [0, n). */
static inline void taps(int64_t s, int k, int d, int64_t n, int *lo, int *hi)
{
    int64_t l = s < 0 ? (-s + d - 1) / d : 0;
    int64_t last = n - 1 - s;
    int64_t h = last < 0 ? 0 : last / d + 1;
    if (l > k) l = k;
    if (h > k) h = k;
    if (h < l) h = l;
    *lo = (int)l;
    *hi = (int)h;
}

static void pair_str(char *b, size_t size, const int *v) { snprintf(b, size, "(%d, %d)", v[0], v[1]); }

/* Validates x and opts as torch does and fills g; on error records it in
 * ctx and returns 0. avg: dilation must be 1, count_include_pad used. */
static int pool_setup(nb_ctx *ctx, const char *name, const nb_tensor *x, const nb_pool2d_opts *o, int avg,
                      pool_geom *g)
{
    char sx[96], a[32], b[32], c[32];
    if (!o) {
        nb__op_fail(ctx, NB_ERR_ARG, "%s: options are NULL (the kernel size must be given)", name);
        return 0;
    }
    int k[2], s[2], p[2], d[2];
    for (int i = 0; i < 2; i++) {
        k[i] = o->kernel[i];
        s[i] = o->stride[i] ? o->stride[i] : o->kernel[i];
        p[i] = o->padding[i];
        d[i] = o->dilation[i] ? o->dilation[i] : 1;
    }
    if (k[0] <= 0 || k[1] <= 0) {
        pair_str(a, sizeof a, k);
        nb__op_fail(ctx, NB_ERR_ARG, "%s: kernel size must be positive, got %s", name, a);
        return 0;
    }
    if (s[0] < 0 || s[1] < 0) {
        pair_str(a, sizeof a, o->stride);
        nb__op_fail(ctx, NB_ERR_ARG, "%s: stride must be positive (0 = kernel size), got %s", name, a);
        return 0;
    }
    if (d[0] < 0 || d[1] < 0) {
        pair_str(a, sizeof a, o->dilation);
        nb__op_fail(ctx, NB_ERR_ARG, "%s: dilation must be positive (0 = 1), got %s", name, a);
        return 0;
    }
    if (avg && (d[0] != 1 || d[1] != 1)) {
        pair_str(a, sizeof a, d);
        nb__op_fail(ctx, NB_ERR_ARG, "%s: dilation must be 1 (torch's avg_pool2d has none), got %s", name, a);
        return 0;
    }
    if (p[0] < 0 || p[1] < 0) {
        pair_str(a, sizeof a, p);
        nb__op_fail(ctx, NB_ERR_ARG, "%s: padding must be non-negative, got %s", name, a);
        return 0;
    }
    if (p[0] > k[0] / 2 || p[1] > k[1] / 2) {
        pair_str(a, sizeof a, p);
        pair_str(b, sizeof b, k);
        nb__op_fail(ctx, NB_ERR_ARG, "%s: padding %s must be at most half the kernel size %s", name, a, b);
        return 0;
    }
    if (x->ndim != 3 && x->ndim != 4) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input must be (N,C,H,W) or (C,H,W), got %s", name,
                    nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    int b4 = x->ndim == 4;
    g->N = b4 ? x->shape[0] : 1;
    g->C = x->shape[b4];
    g->H = x->shape[b4 + 1];
    g->W = x->shape[b4 + 2];
    if (g->C < 1 || g->H < 1 || g->W < 1) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: channels, height and width must be non-zero, got %s", name,
                    nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    if (g->H * g->W > INT32_MAX) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: planes of %s are too large (over 2^31 elements)", name,
                    nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    g->kh = k[0], g->kw = k[1], g->sh = s[0], g->sw = s[1];
    g->ph = p[0], g->pw = p[1], g->dh = d[0], g->dw = d[1];
    g->ceil_mode = o->ceil_mode != 0;
    g->cip = o->count_include_pad != 0;
    g->OH = pool_out_size(g->H, k[0], s[0], p[0], d[0], g->ceil_mode);
    g->OW = pool_out_size(g->W, k[1], s[1], p[1], d[1], g->ceil_mode);
    if (g->OH < 1 || g->OW < 1) {
        pair_str(a, sizeof a, k);
        pair_str(b, sizeof b, p);
        pair_str(c, sizeof c, d);
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "%s: input %s is too small for kernel %s with padding %s and dilation %s: "
                    "the output would be %lldx%lld",
                    name, nb_shape_str(x, sx, sizeof sx), a, b, c, (long long)g->OH, (long long)g->OW);
        return 0;
    }
    interior(g->H, g->OH, k[0], s[0], p[0], d[0], &g->oh_lo, &g->oh_hi);
    interior(g->W, g->OW, k[1], s[1], p[1], d[1], &g->ow_lo, &g->ow_hi);
    g->k2s2 = k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && d[0] == 1 && d[1] == 1;
    g->k3s2 = k[0] == 3 && k[1] == 3 && s[0] == 2 && s[1] == 2 && d[0] == 1 && d[1] == 1;
    g->K = pool_kernels();
    return 1;
}

/* The output tensor: x's batch and channel dimensions, then (oh, ow). */
static nb_tensor *pool_out(nb_ctx *ctx, const nb_tensor *x, int64_t oh, int64_t ow)
{
    int64_t shape[4];
    int nd = x->ndim;
    for (int i = 0; i < nd - 2; i++) shape[i] = x->shape[i];
    shape[nd - 2] = oh;
    shape[nd - 1] = ow;
    return nb_tensor_new(ctx, nd, shape);
}

/* x's values, contiguous (x->data or a copy in the arena); NULL: no memory. */
static const float *pool_src(nb_ctx *ctx, const nb_tensor *x)
{
    if (nb_tensor_is_contiguous(x)) return x->data;
    float *buf = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(x) * sizeof(float));
    if (buf) nb_tensor_copy_out(x, buf);
    return buf;
}

/* ---- row kernels: portable C and the choice of implementation ---------------- */

/* Keep v (at flat index k) when it beats m or is NaN: torch's rule. The
 * selects are plain ?: on values, which GCC turns into vector blends. */
#define MAX_STEP(v, k)                                                    \
    do {                                                                  \
        float v_ = (v);                                                   \
        int t_ = (v_ > m) | (v_ != v_);                                   \
        m = t_ ? v_ : m;                                                  \
        mi = t_ ? (k) : mi;                                               \
    } while (0)

NB_CLONES static void max_k2s2_c(const float *restrict r0, const float *restrict r1, int32_t base, int32_t W,
                                float *restrict out, int32_t *restrict idx, int64_t n)
{
    if (!idx) {
        for (int64_t o = 0; o < n; o++) {
            float m = r0[2 * o];
            int32_t mi = 0;
            MAX_STEP(r0[2 * o + 1], 1);
            MAX_STEP(r1[2 * o], 2);
            MAX_STEP(r1[2 * o + 1], 3);
            (void)mi;
            out[o] = m;
        }
        return;
    }
    for (int64_t o = 0; o < n; o++) {
        int32_t i0 = base + 2 * (int32_t)o;
        float m = r0[2 * o];
        int32_t mi = i0;
        MAX_STEP(r0[2 * o + 1], i0 + 1);
        MAX_STEP(r1[2 * o], i0 + W);
        MAX_STEP(r1[2 * o + 1], i0 + W + 1);
        out[o] = m;
        idx[o] = mi;
    }
}

NB_CLONES static void max_k3s2_c(const float *restrict r0, const float *restrict r1, const float *restrict r2,
                                int32_t base, int32_t W, float *restrict out, int32_t *restrict idx, int64_t n)
{
    for (int64_t o = 0; o < n; o++) {
        int32_t i0 = base + 2 * (int32_t)o, i1 = i0 + W, i2 = i1 + W;
        float m = r0[2 * o];
        int32_t mi = i0;
        MAX_STEP(r0[2 * o + 1], i0 + 1);
        MAX_STEP(r0[2 * o + 2], i0 + 2);
        MAX_STEP(r1[2 * o], i1);
        MAX_STEP(r1[2 * o + 1], i1 + 1);
        MAX_STEP(r1[2 * o + 2], i1 + 2);
        MAX_STEP(r2[2 * o], i2);
        MAX_STEP(r2[2 * o + 1], i2 + 1);
        MAX_STEP(r2[2 * o + 2], i2 + 2);
        out[o] = m;
        if (idx) idx[o] = mi;
    }
}

/* g0 - base is the plane's gradient: a scatter (windows do not overlap). */
static void max_k2s2_bw_c(const float *go, const int32_t *idx, int32_t base, int32_t W, float *g0, float *g1,
                          int64_t n)
{
    (void)W, (void)g1;
    float *gi = g0 - base;
    for (int64_t o = 0; o < n; o++) gi[idx[o]] += go[o];
}

NB_CLONES static void avg_k2s2_c(const float *restrict r0, const float *restrict r1, float *restrict out, int64_t n)
{
    for (int64_t o = 0; o < n; o++) out[o] = (((r0[2 * o] + r0[2 * o + 1]) + r1[2 * o]) + r1[2 * o + 1]) * 0.25f;
}

NB_CLONES static void avg_k3s2_c(const float *restrict r0, const float *restrict r1, const float *restrict r2,
                                float *restrict out, int64_t n)
{
    for (int64_t o = 0; o < n; o++) {
        float s = r0[2 * o] + r0[2 * o + 1] + r0[2 * o + 2];
        s = s + r1[2 * o] + r1[2 * o + 1] + r1[2 * o + 2];
        s = s + r2[2 * o] + r2[2 * o + 1] + r2[2 * o + 2];
        out[o] = s / 9.0f;
    }
}

NB_CLONES static void avg_k2s2_bw_c(const float *restrict go, float *restrict g0, float *restrict g1, int64_t n)
{
    for (int64_t c = 0; c < 2 * n; c++) {
        float v = go[c >> 1] * 0.25f;
        g0[c] += v;
        g1[c] += v;
    }
}

/* The order of pool_simd.h: lanes k, k + 64, ...; then halves. */
NB_CLONES static float sum64_c(const float *restrict p, int64_t n)
{
    float a[64] = {0};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int k = 0; k < 64; k++) a[k] += p[i + k];
    for (int64_t k = 0; k < n - i; k++) a[k] += p[i + k];
    for (int h = 32; h >= 1; h /= 2)
        for (int k = 0; k < h; k++) a[k] += a[k + h];
    return a[0];
}

static const nb__pool_kernels pool_portable = {max_k2s2_c, max_k3s2_c, max_k2s2_bw_c, avg_k2s2_c,
                                               avg_k3s2_c, avg_k2s2_bw_c, sum64_c};

static int pool_simd_on = 1;

/* Test hook: 0 forces the portable kernels, 1 allows AVX-512; returns the
 * previous setting. */
int nb__pool_use_simd(int on)
{
    int old = pool_simd_on;
    pool_simd_on = on != 0;
    return old;
}

static const nb__pool_kernels *pool_kernels(void)
{
    if (pool_simd_on && nb__pool_avx512.max_k2s2 && nb__cpu_avx512()) return &nb__pool_avx512;
    return &pool_portable;
}

/* ---- max_pool2d ----------------------------------------------------------------- */

/* One output with bounds checks (border windows, any geometry). */
static void max_window(const float *in, const pool_geom *g, int64_t oh, int64_t ow, float *out, int32_t *idx)
{
    int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
    int ilo, ihi, jlo, jhi;
    taps(hs, g->kh, g->dh, g->H, &ilo, &ihi);
    taps(ws, g->kw, g->dw, g->W, &jlo, &jhi);
    float m = -INFINITY;
    int32_t mi = -1;
    if (ilo < ihi && jlo < jhi) {
        mi = (int32_t)((hs + (int64_t)ilo * g->dh) * g->W + ws + (int64_t)jlo * g->dw);
        for (int i = ilo; i < ihi; i++) {
            int64_t r = (hs + (int64_t)i * g->dh) * g->W;
            for (int j = jlo; j < jhi; j++) {
                int32_t k = (int32_t)(r + ws + (int64_t)j * g->dw);
                MAX_STEP(in[k], k);
            }
        }
    }
    *out = m;
    if (idx) *idx = mi;
}

/* Any geometry, windows inside the input: outputs [lo, hi) of row oh. */
static void max_row_any(const float *in, const pool_geom *g, int64_t oh, int64_t lo, int64_t hi, float *out,
                        int32_t *idx)
{
    int64_t hs = oh * g->sh - g->ph;
    for (int64_t ow = lo; ow < hi; ow++) {
        int64_t ws = ow * g->sw - g->pw;
        int32_t mi = (int32_t)(hs * g->W + ws);
        float m = in[mi];
        for (int i = 0; i < g->kh; i++) {
            int64_t r = (hs + (int64_t)i * g->dh) * g->W + ws;
            for (int j = 0; j < g->kw; j++) {
                int32_t k = (int32_t)(r + (int64_t)j * g->dw);
                MAX_STEP(in[k], k);
            }
        }
        out[ow] = m;
        if (idx) idx[ow] = mi;
    }
}

/* The interior outputs [*lo, *hi) of output row oh (empty on border rows). */
static inline void row_interior(const pool_geom *g, int64_t oh, int64_t *lo, int64_t *hi)
{
    *lo = g->ow_lo;
    *hi = g->ow_hi;
    if (oh < g->oh_lo || oh >= g->oh_hi || *hi <= *lo) *lo = *hi = g->OW;
}

static void max_plane(const float *in, float *out, int32_t *idx, const pool_geom *g)
{
    int32_t W = (int32_t)g->W;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *o = out + oh * g->OW;
        int32_t *ix = idx ? idx + oh * g->OW : NULL;
        int64_t lo, hi;
        row_interior(g, oh, &lo, &hi);
        for (int64_t ow = 0; ow < lo; ow++) max_window(in, g, oh, ow, o + ow, ix ? ix + ow : NULL);
        if (hi > lo) {
            int32_t base = (int32_t)((oh * g->sh - g->ph) * W + lo * g->sw - g->pw);
            if (g->k2s2)
                g->K->max_k2s2(in + base, in + base + W, base, W, o + lo, ix ? ix + lo : NULL, hi - lo);
            else if (g->k3s2)
                g->K->max_k3s2(in + base, in + base + W, in + base + 2 * W, base, W, o + lo, ix ? ix + lo : NULL,
                               hi - lo);
            else
                max_row_any(in, g, oh, lo, hi, o, ix);
        }
        for (int64_t ow = hi; ow < g->OW; ow++) max_window(in, g, oh, ow, o + ow, ix ? ix + ow : NULL);
    }
}

static void max_planes(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const plane_job *j = ctx;
    for (int64_t p = lo; p < hi; p++)
        max_plane(j->x + p * j->ip, j->y + p * j->op, j->idx ? j->idx + p * j->op : NULL, j->g);
}

nb_tensor *nb_max_pool2d(nb_ctx *ctx, nb_tensor *x, const nb_pool2d_opts *opts)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "max_pool2d: context is NULL");
    pool_geom g;
    if (!pool_setup(ctx, "max_pool2d", x, opts, 0, &g)) return NULL;
    nb_tensor *out = pool_out(ctx, x, g.OH, g.OW);
    if (!out) return NULL;
    const float *src = pool_src(ctx, x);
    int want = nb_grad_enabled(ctx) && x->requires_grad;
    int64_t planes = g.N * g.C, ip = g.H * g.W, op = g.OH * g.OW;
    pool_saved *s = want ? nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s) : NULL;
    int32_t *idx = want ? nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(planes * op) * sizeof(int32_t)) : NULL;
    if (!src || (want && (!s || !idx))) return nb__op_fail(ctx, NB_ERR_NOMEM, "max_pool2d: out of memory");
    plane_job j = {.g = &g, .x = src, .y = out->data, .idx = idx, .ip = ip, .op = op};
    nb__par_for(planes, nb__par_parts(planes, planes * ip >= POOL_PAR_MIN), max_planes, &j);
    nb__node *n = nb__record(ctx, NB__OP_MAX_POOL2D, out, &x, 1);
    if (want && !n) return nb__op_fail(ctx, NB_ERR_NOMEM, "max_pool2d: out of memory recording the op");
    if (n) {
        s->g = g;
        s->idx = idx;
        n->saved = s;
    }
    return out;
}

static void max_plane_bw(const float *go, const int32_t *ix, float *gi, const pool_geom *g)
{
    if (!g->k2s2) {
        int64_t op = g->OH * g->OW;
        for (int64_t o = 0; o < op; o++)
            if (ix[o] >= 0) gi[ix[o]] += go[o];
        return;
    }
    /* kernel 2 stride 2: windows do not overlap, so interior rows may add
     * densely and the borders by scatter, in any order */
    int32_t W = (int32_t)g->W;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *gr = go + oh * g->OW;
        const int32_t *xr = ix + oh * g->OW;
        int64_t lo, hi;
        row_interior(g, oh, &lo, &hi);
        if (hi > lo) {
            int32_t base = (int32_t)((oh * g->sh - g->ph) * W + lo * g->sw - g->pw);
            g->K->max_k2s2_bw(gr + lo, xr + lo, base, W, gi + base, gi + base + W, hi - lo);
        }
        for (int64_t ow = 0; ow < g->OW; ow++) {
            if (ow == lo) ow = hi;
            if (ow >= g->OW) break;
            if (xr[ow] >= 0) gi[xr[ow]] += gr[ow];
        }
    }
}

static void max_planes_bw(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const plane_job *j = ctx;
    for (int64_t p = lo; p < hi; p++) max_plane_bw(j->gy + p * j->op, j->idx + p * j->op, j->gx + p * j->ip, j->g);
}

nb_status nb__bw_max_pool2d(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0];
    if (!x->requires_grad) return NB_OK;
    const pool_saved *s = n->saved;
    const pool_geom *g = &s->g;
    int64_t planes = g->N * g->C, ip = g->H * g->W, op = g->OH * g->OW;
    const float *gy = n->out->grad;
    float *gx = x->grad;
    plane_job j = {.g = g, .gy = gy, .gx = gx, .idx = s->idx, .ip = ip, .op = op};
    nb__par_for(planes, nb__par_parts(planes, planes * ip >= POOL_PAR_MIN), max_planes_bw, &j);
    return NB_OK;
}

/* ---- avg_pool2d ----------------------------------------------------------------- */

/* The clipped window of output (oh, ow) and torch's divisor; 0 if the
 * window holds no input element. */
static inline int avg_window(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0,
                             int64_t *w1, float *div)
{
    int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
    int64_t he = hs + g->kh < g->H + g->ph ? hs + g->kh : g->H + g->ph;
    int64_t we = ws + g->kw < g->W + g->pw ? ws + g->kw : g->W + g->pw;
    int64_t pool = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > g->H) he = g->H;
    if (we > g->W) we = g->W;
    if (hs >= he || ws >= we) return 0;
    *h0 = hs, *h1 = he, *w0 = ws, *w1 = we;
    *div = (float)(g->cip ? pool : (he - hs) * (we - ws));
    return 1;
}

static void avg_window_fw(const float *in, const pool_geom *g, int64_t oh, int64_t ow, float *out)
{
    int64_t h0, h1, w0, w1;
    float div, sum = 0.0f;
    if (!avg_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) {
        *out = 0.0f;
        return;
    }
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) sum += in[ih * g->W + iw];
    *out = sum / div;
}

static void avg_plane(const float *in, float *out, const pool_geom *g)
{
    int64_t W = g->W;
    float area = (float)((int64_t)g->kh * g->kw);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *o = out + oh * g->OW;
        int64_t lo, hi;
        row_interior(g, oh, &lo, &hi);
        for (int64_t ow = 0; ow < lo; ow++) avg_window_fw(in, g, oh, ow, o + ow);
        if (hi > lo) {
            const float *r = in + (oh * g->sh - g->ph) * W + lo * g->sw - g->pw;
            if (g->k2s2) {
                g->K->avg_k2s2(r, r + W, o + lo, hi - lo);
            } else if (g->k3s2) {
                g->K->avg_k3s2(r, r + W, r + 2 * W, o + lo, hi - lo);
            } else {
                /* windows inside the input: torch's divisor is the kernel area either way */
                for (int64_t ow = lo; ow < hi; ow++, r += g->sw) {
                    float sum = 0.0f;
                    for (int i = 0; i < g->kh; i++)
                        for (int j = 0; j < g->kw; j++) sum += r[i * W + j];
                    o[ow] = sum / area;
                }
            }
        }
        for (int64_t ow = hi; ow < g->OW; ow++) avg_window_fw(in, g, oh, ow, o + ow);
    }
}

static void avg_planes(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const plane_job *j = ctx;
    for (int64_t p = lo; p < hi; p++) avg_plane(j->x + p * j->ip, j->y + p * j->op, j->g);
}

nb_tensor *nb_avg_pool2d(nb_ctx *ctx, nb_tensor *x, const nb_pool2d_opts *opts)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "avg_pool2d: context is NULL");
    pool_geom g;
    if (!pool_setup(ctx, "avg_pool2d", x, opts, 1, &g)) return NULL;
    nb_tensor *out = pool_out(ctx, x, g.OH, g.OW);
    if (!out) return NULL;
    const float *src = pool_src(ctx, x);
    if (!src) return nb__op_fail(ctx, NB_ERR_NOMEM, "avg_pool2d: out of memory");
    int64_t planes = g.N * g.C, ip = g.H * g.W, op = g.OH * g.OW;
    plane_job j = {.g = &g, .x = src, .y = out->data, .ip = ip, .op = op};
    nb__par_for(planes, nb__par_parts(planes, planes * ip >= POOL_PAR_MIN), avg_planes, &j);
    int want = nb_grad_enabled(ctx) && x->requires_grad;
    nb__node *n = nb__record(ctx, NB__OP_AVG_POOL2D, out, &x, 1);
    pool_saved *s = n ? nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s) : NULL;
    if (want && !s) return nb__op_fail(ctx, NB_ERR_NOMEM, "avg_pool2d: out of memory recording the op");
    if (n) {
        s->g = g;
        n->saved = s;
    }
    return out;
}

#define AVG_SPAN 1024   /* columns of the row buffer of the general backward */

/* dst[k * stride] += v[k], k < n: one tap of every window of a block, so
 * no add waits on the one before (window by window, overlapping windows
 * would chain stores and loads through the same columns). Not inlined, so
 * the compiler cannot interchange the loops back. */
__attribute__((noinline)) static void add_strided(float *restrict dst, int64_t stride, const float *restrict v,
                                                  int64_t n)
{
    for (int64_t k = 0; k < n; k++) dst[k * stride] += v[k];
}

/* Interior outputs [lo, hi) of row oh, any kernel: the row's gradient is
 * spread over a buffer of input columns once (kw adds per output), then the
 * buffer is added to each of the kh input rows (vectorised), instead of
 * kh*kw scattered adds per output. Outputs go in blocks that fit the buffer. */
static void avg_row_bw_any(const float *gr, float *gi, const pool_geom *g, int64_t oh, int64_t lo, int64_t hi)
{
    float span[AVG_SPAN], v[AVG_SPAN];
    float area = (float)((int64_t)g->kh * g->kw);
    int64_t W = g->W, per = (AVG_SPAN - g->kw) / g->sw + 1;   /* outputs per block */
    float *rows = gi + (oh * g->sh - g->ph) * W;
    for (int64_t b0 = lo; b0 < hi; b0 += per) {
        int64_t b1 = hi - b0 < per ? hi : b0 + per;
        int64_t c0 = b0 * g->sw - g->pw, cols = (b1 - 1 - b0) * g->sw + g->kw;
        memset(span, 0, (size_t)cols * sizeof(float));
        for (int64_t ow = b0; ow < b1; ow++) v[ow - b0] = gr[ow] / area;
        for (int j = 0; j < g->kw; j++) add_strided(span + j, g->sw, v, b1 - b0);
        for (int i = 0; i < g->kh; i++) {
            float *r = rows + i * W + c0;
            for (int64_t c = 0; c < cols; c++) r[c] += span[c];
        }
    }
}

static void avg_plane_bw(const float *go, float *gi, const pool_geom *g)
{
    int64_t W = g->W;
    int spread = g->kw <= AVG_SPAN / 2;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *gr = go + oh * g->OW;
        int64_t lo, hi;
        row_interior(g, oh, &lo, &hi);
        if (hi > lo && g->k2s2) {
            float *r = gi + (oh * g->sh - g->ph) * W + lo * g->sw - g->pw;
            g->K->avg_k2s2_bw(gr + lo, r, r + W, hi - lo);
        } else if (hi > lo && spread) {
            avg_row_bw_any(gr, gi, g, oh, lo, hi);
        } else {
            lo = hi = g->OW;   /* all by windows */
        }
        for (int64_t ow = 0; ow < g->OW; ow++) {
            if (ow == lo) ow = hi;
            if (ow >= g->OW) break;
            int64_t h0, h1, w0, w1;
            float div;
            if (!avg_window(g, oh, ow, &h0, &h1, &w0, &w1, &div)) continue;
            float v = gr[ow] / div;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++) gi[ih * W + iw] += v;
        }
    }
}

static void avg_planes_bw(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const plane_job *j = ctx;
    for (int64_t p = lo; p < hi; p++) avg_plane_bw(j->gy + p * j->op, j->gx + p * j->ip, j->g);
}

nb_status nb__bw_avg_pool2d(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0];
    if (!x->requires_grad) return NB_OK;
    const pool_geom *g = &((const pool_saved *)n->saved)->g;
    int64_t planes = g->N * g->C, ip = g->H * g->W, op = g->OH * g->OW;
    const float *gy = n->out->grad;
    float *gx = x->grad;
    plane_job j = {.g = g, .gy = gy, .gx = gx, .ip = ip, .op = op};
    nb__par_for(planes, nb__par_parts(planes, planes * ip >= POOL_PAR_MIN), avg_planes_bw, &j);
    return NB_OK;
}

/* ---- adaptive_avg_pool2d ---------------------------------------------------------- */

/* Sum of n contiguous floats: in order for short spans (torch's order), in
 * 64 running sums (pool_simd.h) for long ones. */
static inline float sum_span(const nb__pool_kernels *K, const float *p, int64_t n)
{
    if (n >= 32) return K->sum64(p, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += p[i];
    return s;
}

#define ADA_CHUNK 64   /* planes summed before their divisions */

/* Planes [0, np): window sums first, then torch's sum / kh / kw for all the
 * outputs at once (vectorised; one division after another per output would
 * stall when the planes are small, as in global pooling). cw: column widths. */
static void adaptive_chunk(const float *in, float *out, int64_t np, const pool_geom *g, const int64_t *rows,
                           const int64_t *cols, const float *cw)
{
    int64_t ip = g->H * g->W, op = g->OH * g->OW;
    for (int64_t p = 0; p < np; p++) {
        const float *pin = in + p * ip;
        float *po = out + p * op;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            int64_t h0 = rows[2 * oh], h1 = rows[2 * oh + 1];
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t w0 = cols[2 * ow], w1 = cols[2 * ow + 1];
                float sum = 0.0f;
                if (w0 == 0 && w1 == g->W && h1 - h0 > 1) {
                    sum = sum_span(g->K, pin + h0 * g->W, (h1 - h0) * g->W);   /* whole rows */
                } else {
                    for (int64_t ih = h0; ih < h1; ih++) sum += sum_span(g->K, pin + ih * g->W + w0, w1 - w0);
                }
                po[oh * g->OW + ow] = sum;
            }
        }
    }
    if (op == 1) {
        float kh = (float)(rows[1] - rows[0]), kw = cw[0];
        for (int64_t p = 0; p < np; p++) out[p] = out[p] / kh / kw;
        return;
    }
    for (int64_t p = 0; p < np; p++)
        for (int64_t oh = 0; oh < g->OH; oh++) {
            float kh = (float)(rows[2 * oh + 1] - rows[2 * oh]), *o = out + p * op + oh * g->OW;
            for (int64_t ow = 0; ow < g->OW; ow++) o[ow] = o[ow] / kh / cw[ow];
        }
}

static void adaptive_plane_bw(const float *go, float *gi, const pool_geom *g, const int64_t *rows,
                              const int64_t *cols)
{
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t h0 = rows[2 * oh], h1 = rows[2 * oh + 1];
        float kh = (float)(h1 - h0);
        for (int64_t ow = 0; ow < g->OW; ow++) {
            int64_t w0 = cols[2 * ow], w1 = cols[2 * ow + 1];
            float v = go[oh * g->OW + ow] / kh / (float)(w1 - w0);
            for (int64_t ih = h0; ih < h1; ih++) {
                float *r = gi + ih * g->W;
                for (int64_t iw = w0; iw < w1; iw++) r[iw] += v;
            }
        }
    }
}

/* Chunks [lo, hi) of ADA_CHUNK planes (the last may be short). */
static void adaptive_chunks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const plane_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) {
        int64_t p0 = c * ADA_CHUNK, np = j->planes - p0 < ADA_CHUNK ? j->planes - p0 : ADA_CHUNK;
        adaptive_chunk(j->x + p0 * j->ip, j->y + p0 * j->op, np, j->g, j->rows, j->cols, j->cw);
    }
}

static void adaptive_planes_bw(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const plane_job *j = ctx;
    for (int64_t p = lo; p < hi; p++)
        adaptive_plane_bw(j->gy + p * j->op, j->gx + p * j->ip, j->g, j->rows, j->cols);
}

/* [floor(i*in/out), ceil((i+1)*in/out)) for i < out, as pairs. */
static void adaptive_ranges(int64_t in, int64_t out, int64_t *r)
{
    for (int64_t i = 0; i < out; i++) {
        r[2 * i] = i * in / out;
        r[2 * i + 1] = ((i + 1) * in + out - 1) / out;
    }
}

nb_tensor *nb_adaptive_avg_pool2d(nb_ctx *ctx, nb_tensor *x, int out_h, int out_w)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "adaptive_avg_pool2d: context is NULL");
    char sx[96];
    if (out_h < 1 || out_w < 1)
        return nb__op_fail(ctx, NB_ERR_ARG, "adaptive_avg_pool2d: output size must be positive, got (%d, %d)",
                           out_h, out_w);
    if (x->ndim != 3 && x->ndim != 4)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "adaptive_avg_pool2d: input must be (N,C,H,W) or (C,H,W), got %s",
                           nb_shape_str(x, sx, sizeof sx));
    pool_geom g;
    memset(&g, 0, sizeof g);
    int b4 = x->ndim == 4;
    g.N = b4 ? x->shape[0] : 1;
    g.C = x->shape[b4];
    g.H = x->shape[b4 + 1];
    g.W = x->shape[b4 + 2];
    g.OH = out_h;
    g.OW = out_w;
    g.K = pool_kernels();
    if (g.C < 1 || g.H < 1 || g.W < 1)
        return nb__op_fail(ctx, NB_ERR_SHAPE,
                           "adaptive_avg_pool2d: channels, height and width must be non-zero, got %s",
                           nb_shape_str(x, sx, sizeof sx));
    nb_tensor *out = pool_out(ctx, x, g.OH, g.OW);
    if (!out) return NULL;
    const float *src = pool_src(ctx, x);
    pool_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
    int64_t *rows = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(2 * (g.OH + g.OW)) * sizeof(int64_t));
    float *cw = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)g.OW * sizeof(float));
    if (!src || !s || !rows || !cw) return nb__op_fail(ctx, NB_ERR_NOMEM, "adaptive_avg_pool2d: out of memory");
    int64_t *cols = rows + 2 * g.OH;
    adaptive_ranges(g.H, g.OH, rows);
    adaptive_ranges(g.W, g.OW, cols);
    for (int64_t ow = 0; ow < g.OW; ow++) cw[ow] = (float)(cols[2 * ow + 1] - cols[2 * ow]);
    int64_t planes = g.N * g.C, ip = g.H * g.W, op = g.OH * g.OW, chunks = (planes + ADA_CHUNK - 1) / ADA_CHUNK;
    plane_job j = {.g = &g, .x = src, .y = out->data, .rows = rows, .cols = cols, .cw = cw, .planes = planes,
                   .ip = ip, .op = op};
    nb__par_for(chunks, nb__par_parts(chunks, planes * (ip + op) >= POOL_PAR_MIN), adaptive_chunks, &j);
    int want = nb_grad_enabled(ctx) && x->requires_grad;
    nb__node *n = nb__record(ctx, NB__OP_ADAPTIVE_AVG_POOL2D, out, &x, 1);
    if (want && !n) return nb__op_fail(ctx, NB_ERR_NOMEM, "adaptive_avg_pool2d: out of memory recording the op");
    if (n) {
        s->g = g;
        s->rows = rows;
        s->cols = cols;
        n->saved = s;
    }
    return out;
}

nb_status nb__bw_adaptive_avg_pool2d(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0];
    if (!x->requires_grad) return NB_OK;
    const pool_saved *s = n->saved;
    const pool_geom *g = &s->g;
    int64_t planes = g->N * g->C, ip = g->H * g->W, op = g->OH * g->OW;
    const float *gy = n->out->grad;
    float *gx = x->grad;
    plane_job j = {.g = g, .gy = gy, .gx = gx, .rows = s->rows, .cols = s->cols, .ip = ip, .op = op};
    nb__par_for(planes, nb__par_parts(planes, planes * (ip + op) >= POOL_PAR_MIN), adaptive_planes_bw, &j);
    return NB_OK;
}
