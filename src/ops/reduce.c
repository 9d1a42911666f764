/* Reductions: sum, mean, max over a set of axes, and argmax along one axis.
 *
 * The input is read row-major (a strided input is copied first). Dimensions
 * of size 1 are dropped and neighbours that are both reduced or both kept are
 * merged, so every reduction is a short alternation of kept (K) and reduced
 * (R) blocks: [R] (everything), [K,R] (rows), [R,K] (columns), ... Sums
 * accumulate in double. Threads split the work so that each output element is
 * computed by one thread in a fixed order (or, for a full reduction, from
 * fixed-size chunks combined in order): results do not depend on the thread
 * count. */
#include "../core/internal.h"
#include <math.h>

#define RED_PAR_MIN 32768   /* elements before threads pay off */
#define RED_CHUNK   8192    /* piece of a full reduction */
#define RED_COLS    256     /* columns per thread in an [R,K] reduction */

typedef struct {
    int     m;                      /* merged dimensions */
    int64_t shape[NB_MAX_DIMS];
    int     red[NB_MAX_DIMS];       /* 1 = reduced */
    int64_t ostr[NB_MAX_DIMS];      /* output stride (0 on reduced blocks) */
} red_layout;

/* Validate axes into mask[0..ndim); NB_OK or an error naming the op. */
static nb_status parse_axes(const char *name, const nb_tensor *x, const int *axes, int naxes, int *mask)
{
    char b[96];
    for (int d = 0; d < NB_MAX_DIMS; d++) mask[d] = naxes == 0;
    if (naxes < 0) return nb__fail(NB_ERR_ARG, "%s: naxes is negative (%d)", name, naxes);
    if (naxes > 0 && !axes) return nb__fail(NB_ERR_ARG, "%s: axes is NULL with naxes = %d", name, naxes);
    for (int k = 0; k < naxes; k++) {
        int a = nb__axis(axes[k], x->ndim);
        if (a < 0)
            return nb__fail(NB_ERR_ARG, "%s: axis %d is out of range for a %d-D tensor %s", name, axes[k],
                            x->ndim, nb_shape_str(x, b, sizeof b));
        if (mask[a]) return nb__fail(NB_ERR_ARG, "%s: axis %d appears twice in axes", name, axes[k]);
        mask[a] = 1;
    }
    return NB_OK;
}

/* Output shape of a reduction (reduced axes dropped, or kept as 1). */
static int out_shape(const nb_tensor *x, const int *mask, int keepdim, int64_t *shape)
{
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!mask[d]) shape[nd++] = x->shape[d];
        else if (keepdim) shape[nd++] = 1;
    }
    return nd;
}

static void make_layout(red_layout *L, int ndim, const int64_t *shape, const int *mask)
{
    int m = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        if (m > 0 && L->red[m - 1] == mask[d]) {
            L->shape[m - 1] *= shape[d];
        } else {
            L->shape[m] = shape[d];
            L->red[m] = mask[d];
            m++;
        }
    }
    if (m == 0) {
        L->shape[0] = 1;
        L->red[0] = 1;
        m = 1;
    }
    L->m = m;
    int64_t s = 1;
    for (int d = m - 1; d >= 0; d--) {
        L->ostr[d] = L->red[d] ? 0 : s;
        if (!L->red[d]) s *= L->shape[d];
    }
}

/* x as a contiguous row-major buffer (x's data, or a copy in the arena). */
static const float *contig_data(nb_ctx *ctx, const nb_tensor *x)
{
    if (nb_tensor_is_contiguous(x)) return x->data;
    float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(x) * sizeof(float));
    if (c) nb_tensor_copy_out(x, c);
    return c;
}

/* ---- sum ------------------------------------------------------------------- */

/* x[0] + ... + x[n-1] in double (vectorised: a fixed order per build). */
static double sum_row(const float *x, int64_t n)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += x[j];
    return s;
}

/* acc (over the kept blocks) += x summed over the reduced blocks, for the
 * blocks d0..m-1 of L (x and acc already offset to this part). */
static void sum_serial(const float *x, const red_layout *L, int d0, double *acc)
{
    int m = L->m;
    int64_t inner = L->shape[m - 1], rows = 1;
    for (int d = d0; d < m - 1; d++) rows *= L->shape[d];
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int d = d0; d < m - 1; d++) off += idx[d] * L->ostr[d];
        const float *xr = x + r * inner;
        if (L->red[m - 1]) {
            acc[off] += sum_row(xr, inner);
        } else {
            double *o = acc + off;
            for (int64_t j = 0; j < inner; j++) o[j] += xr[j];
        }
        for (int d = m - 2; d >= d0; d--) {
            if (++idx[d] < L->shape[d]) break;
            idx[d] = 0;
        }
    }
}

/* What the parallel loops of the sums and maxima share: contiguous x over
 * L, `total` elements, cut into chunks or first-block items of xs elements. */
typedef struct {
    const float *x;
    const red_layout *L;
    int64_t total, xs;
    double *acc, *part;     /* sums: the output, chunk sums */
    float *best, *pb;       /* maxima: the output, chunk maxima */
    int64_t *bi, *pi;       /* and their flat indices */
} red_job;

/* [R]: part[c] = sum of chunk c. */
static void sum_chunks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const red_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) {
        int64_t j0 = c * RED_CHUNK, j1 = j0 + RED_CHUNK < j->total ? j0 + RED_CHUNK : j->total;
        j->part[c] = sum_row(j->x + j0, j1 - j0);
    }
}

/* [R,K]: columns of blocks [lo, hi) summed over the rows. */
static void sum_column_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const red_job *j = ctx;
    int64_t R = j->L->shape[0], K = j->L->shape[1];
    for (int64_t blk = lo; blk < hi; blk++) {
        int64_t j0 = blk * RED_COLS, j1 = j0 + RED_COLS < K ? j0 + RED_COLS : K;
        for (int64_t r = 0; r < R; r++) {
            const float *xr = j->x + r * K;
            for (int64_t c = j0; c < j1; c++) j->acc[c] += xr[c];
        }
    }
}

/* [K,...]: items [lo, hi) of the first block, each on its own. */
static void sum_first_block(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const red_job *j = ctx;
    for (int64_t i = lo; i < hi; i++) sum_serial(j->x + i * j->xs, j->L, 1, j->acc + i * j->L->ostr[0]);
}

/* acc (zeroed, numel of the output) = sums of contiguous x over L. */
static nb_status sum_into(nb_ctx *ctx, const float *x, const red_layout *L, int64_t total, double *acc)
{
    int m = L->m;
    if (total == 0) return NB_OK;
    int par = total >= RED_PAR_MIN;
    if (m == 1 && L->red[0]) {                       /* [R]: fixed chunks */
        int64_t nc = (total + RED_CHUNK - 1) / RED_CHUNK;
        double *part = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nc * sizeof(double));
        if (!part) return NB_ERR_NOMEM;
        red_job j = {.x = x, .L = L, .total = total, .part = part};
        nb__par_for(nc, nb__par_parts(nc, par), sum_chunks, &j);
        double s = 0;
        for (int64_t c = 0; c < nc; c++) s += part[c];
        acc[0] = s;
    } else if (m == 2 && L->red[0]) {                /* [R,K]: column blocks */
        int64_t nb = (L->shape[1] + RED_COLS - 1) / RED_COLS;
        red_job j = {.x = x, .L = L, .total = total, .acc = acc};
        nb__par_for(nb, nb__par_parts(nb, par), sum_column_blocks, &j);
    } else if (!L->red[0] && m > 1) {                /* [K,...]: split the first block */
        int64_t n0 = L->shape[0];
        red_job j = {.x = x, .L = L, .total = total, .xs = total / n0, .acc = acc};
        nb__par_for(n0, nb__par_parts(n0, par), sum_first_block, &j);
    } else {
        sum_serial(x, L, 0, acc);
    }
    return NB_OK;
}

/* sum and mean: out = scale * sum over the axes. */
static nb_tensor *sum_like(nb_ctx *ctx, int opcode, const char *name, nb_tensor *x,
                           const int *axes, int naxes, int keepdim, int mean)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "%s: context is NULL", name);
    int mask[NB_MAX_DIMS];
    nb_status st = parse_axes(name, x, axes, naxes, mask);
    if (st) {
        nb__ctx_set_status(ctx, st);
        return NULL;
    }
    int64_t shape[NB_MAX_DIMS];
    int nd = out_shape(x, mask, keepdim, shape);
    nb_tensor *out = nb_tensor_new(ctx, nd, shape);
    if (!out) return NULL;
    int64_t total = nb_tensor_numel(x), nout = nb_tensor_numel(out);
    int64_t count = 1;                   /* elements summed into each output */
    for (int d = 0; d < x->ndim; d++)
        if (mask[d]) count *= x->shape[d];
    const float *xd = contig_data(ctx, x);
    double *acc = nb_arena_calloc(nb_ctx_arena(ctx), (size_t)(nout ? nout : 1) * sizeof(double));
    if (!xd || !acc) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
    red_layout L;
    make_layout(&L, x->ndim, x->shape, mask);
    if (sum_into(ctx, xd, &L, total, acc)) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
    double scale = !mean ? 1.0 : count ? 1.0 / (double)count : NAN;   /* torch: mean of nothing is NaN */
    for (int64_t i = 0; i < nout; i++) out->data[i] = (float)(acc[i] * scale);
    nb__node *n = nb__record(ctx, opcode, out, &x, 1);
    if (n) {
        n->f[0] = (float)scale;
        for (int d = 0; d < x->ndim; d++) n->i[d] = mask[d];
    }
    return out;
}

nb_tensor *nb_sum(nb_ctx *ctx, nb_tensor *x, const int *axes, int naxes, int keepdim)
{
    return sum_like(ctx, NB__OP_SUM, "sum", x, axes, naxes, keepdim, 0);
}

nb_tensor *nb_mean(nb_ctx *ctx, nb_tensor *x, const int *axes, int naxes, int keepdim)
{
    return sum_like(ctx, NB__OP_MEAN, "mean", x, axes, naxes, keepdim, 1);
}

typedef struct {
    const red_layout *L;
    float s;
    const float *g;
    float *gx;
} sum_bw_job;

/* Rows [lo, hi) of the innermost block of gx. */
static void sum_bw_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const sum_bw_job *j = ctx;
    const red_layout *L = j->L;
    int m = L->m;
    int64_t inner = L->shape[m - 1];
    const float s = j->s;
    for (int64_t r = lo; r < hi; r++) {
        int64_t off = 0, rr = r;
        for (int d = m - 2; d >= 0; d--) {
            off += (rr % L->shape[d]) * L->ostr[d];
            rr /= L->shape[d];
        }
        float *o = j->gx + r * inner;
        if (L->red[m - 1]) {
            float v = s * j->g[off];
            for (int64_t k = 0; k < inner; k++) o[k] += v;
        } else {
            const float *gr = j->g + off;
            for (int64_t k = 0; k < inner; k++) o[k] += s * gr[k];
        }
    }
}

/* x->grad += s * g broadcast back over the reduced axes (n->i holds the mask). */
static nb_status bw_sum_like(nb__node *n)
{
    nb_tensor *x = n->in[0];
    float s = n->f[0];
    const float *g = n->out->grad;
    int mask[NB_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) mask[d] = (int)n->i[d];
    red_layout L;
    make_layout(&L, x->ndim, x->shape, mask);
    int m = L.m;
    int64_t inner = L.shape[m - 1], total = nb_tensor_numel(x), rows = inner ? total / inner : 0;
    sum_bw_job j = {&L, s, g, x->grad};
    nb__par_for(rows, nb__par_parts(rows, total >= RED_PAR_MIN), sum_bw_rows, &j);
    return NB_OK;
}

nb_status nb__bw_sum(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    return bw_sum_like(n);
}

nb_status nb__bw_mean(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    return bw_sum_like(n);
}

/* ---- max / argmax ------------------------------------------------------------ */

/* Keep the first maximum; NaN wins over numbers (and the first NaN stays). */
static inline void max_take(float v, int64_t i, float *best, int64_t *bi)
{
    if (*bi < 0 || v > *best || (v != v && *best == *best)) {
        *best = v;
        *bi = i;
    }
}

/* Index of the first maximum of x[0..n) (n >= 1), or of the first NaN: a
 * max over 8 independent lanes (vectorisable without reassociating), then a
 * search for its first occurrence. */
static int64_t row_argmax(const float *x, int64_t n)
{
    float lane[8], mx = x[0];
    int nan = 0;
    for (int l = 0; l < 8; l++) lane[l] = x[0];
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    for (int l = 0; l < 8; l++) mx = lane[l] > mx ? lane[l] : mx;
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    for (j = 0; j < n; j++) nan |= x[j] != x[j];
    for (j = 0; j < n; j++)
        if (nan ? x[j] != x[j] : x[j] == mx) return j;
    return 0;
}

/* Running max over blocks d0..m-1 of L; x, best and bi offset to this part;
 * base is the flat index of x[0] in the whole input. */
static void max_serial(const float *x, int64_t base, const red_layout *L, int d0, float *best, int64_t *bi)
{
    int m = L->m;
    int64_t inner = L->shape[m - 1], rows = 1;
    for (int d = d0; d < m - 1; d++) rows *= L->shape[d];
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int d = d0; d < m - 1; d++) off += idx[d] * L->ostr[d];
        const float *xr = x + r * inner;
        int64_t fi = base + r * inner;
        if (L->red[m - 1]) {
            int64_t j = row_argmax(xr, inner);
            max_take(xr[j], fi + j, best + off, bi + off);
        } else
            for (int64_t j = 0; j < inner; j++) max_take(xr[j], fi + j, best + off + j, bi + off + j);
        for (int d = m - 2; d >= d0; d--) {
            if (++idx[d] < L->shape[d]) break;
            idx[d] = 0;
        }
    }
}

/* [R]: pb[c], pi[c] = the first maximum of chunk c and its index. */
static void max_chunks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const red_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) {
        int64_t j1 = (c + 1) * RED_CHUNK < j->total ? (c + 1) * RED_CHUNK : j->total;
        j->pi[c] = c * RED_CHUNK + row_argmax(j->x + c * RED_CHUNK, j1 - c * RED_CHUNK);
        j->pb[c] = j->x[j->pi[c]];
    }
}

/* [K,...]: items [lo, hi) of the first block, each on its own. */
static void max_first_block(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const red_job *j = ctx;
    const int64_t o = j->L->ostr[0];
    for (int64_t i = lo; i < hi; i++) max_serial(j->x + i * j->xs, i * j->xs, j->L, 1, j->best + i * o, j->bi + i * o);
}

/* best/bi over the output (bi initialised to -1): the first maximum and its
 * flat row-major index in x. */
static nb_status max_into(nb_ctx *ctx, const float *x, const red_layout *L, int64_t total, float *best, int64_t *bi)
{
    int m = L->m;
    int par = total >= RED_PAR_MIN;
    if (m == 1 && L->red[0] && par) {                /* [R]: fixed chunks, combined in order */
        int64_t nc = (total + RED_CHUNK - 1) / RED_CHUNK;
        float *pb = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nc * sizeof(float));
        int64_t *pi = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nc * sizeof(int64_t));
        if (!pb || !pi) return NB_ERR_NOMEM;
        red_job j = {.x = x, .L = L, .total = total, .pb = pb, .pi = pi};
        nb__par_for(nc, nb__par_parts(nc, 1), max_chunks, &j);
        for (int64_t c = 0; c < nc; c++) max_take(pb[c], pi[c], best, bi);
    } else if (!L->red[0] && m > 1) {                /* [K,...]: split the first block */
        int64_t n0 = L->shape[0];
        red_job j = {.x = x, .L = L, .total = total, .xs = total / n0, .best = best, .bi = bi};
        nb__par_for(n0, nb__par_parts(n0, par), max_first_block, &j);
    } else {
        max_serial(x, 0, L, 0, best, bi);
    }
    return NB_OK;
}

/* Shared by max and argmax: out values (or NULL) and flat indices. */
static nb_tensor *max_core(nb_ctx *ctx, const char *name, nb_tensor *x, const int *mask, int keepdim,
                           int64_t **index)
{
    char b[96];
    for (int d = 0; d < x->ndim; d++)
        if (mask[d] && x->shape[d] == 0)
            return nb__op_fail(ctx, NB_ERR_SHAPE, "%s: cannot reduce over axis %d of size 0 (shape %s)", name,
                               d, nb_shape_str(x, b, sizeof b));
    int64_t shape[NB_MAX_DIMS];
    int nd = out_shape(x, mask, keepdim, shape);
    nb_tensor *out = nb_tensor_new(ctx, nd, shape);
    if (!out) return NULL;
    int64_t total = nb_tensor_numel(x), nout = nb_tensor_numel(out);
    const float *xd = contig_data(ctx, x);
    int64_t *bi = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(nout ? nout : 1) * sizeof(int64_t));
    if (!xd || !bi) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
    for (int64_t i = 0; i < nout; i++) bi[i] = -1;
    red_layout L;
    make_layout(&L, x->ndim, x->shape, mask);
    if (total > 0 && max_into(ctx, xd, &L, total, out->data, bi))
        return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
    *index = bi;
    return out;
}

nb_tensor *nb_max(nb_ctx *ctx, nb_tensor *x, const int *axes, int naxes, int keepdim)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "max: context is NULL");
    int mask[NB_MAX_DIMS];
    nb_status st = parse_axes("max", x, axes, naxes, mask);
    if (st) {
        nb__ctx_set_status(ctx, st);
        return NULL;
    }
    int64_t *bi = NULL;
    nb_tensor *out = max_core(ctx, "max", x, mask, keepdim, &bi);
    if (!out) return NULL;
    nb__node *n = nb__record(ctx, NB__OP_MAX, out, &x, 1);
    if (n) n->saved = bi;
    return out;
}

/* The gradient goes to the first maximum of each reduced group. */
nb_status nb__bw_max(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    const int64_t *bi = n->saved;
    const float *g = n->out->grad;
    float *gx = n->in[0]->grad;
    int64_t nout = nb_tensor_numel(n->out);
    for (int64_t i = 0; i < nout; i++) gx[bi[i]] += g[i];
    return NB_OK;
}

nb_tensor *nb_argmax(nb_ctx *ctx, nb_tensor *x, int axis)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "argmax: context is NULL");
    int a = nb__axis(axis, x->ndim);
    if (a < 0) {
        char b[96];
        return nb__op_fail(ctx, NB_ERR_ARG, "argmax: axis %d is out of range for a %d-D tensor %s", axis,
                           x->ndim, nb_shape_str(x, b, sizeof b));
    }
    int mask[NB_MAX_DIMS] = {0};
    mask[a] = 1;
    int64_t *bi = NULL;
    nb_tensor *out = max_core(ctx, "argmax", x, mask, 0, &bi);
    if (!out) return NULL;
    int64_t inner = 1;
    for (int d = a + 1; d < x->ndim; d++) inner *= x->shape[d];
    int64_t nout = nb_tensor_numel(out);
    for (int64_t i = 0; i < nout; i++) out->data[i] = (float)((bi[i] / inner) % x->shape[a]);
    return out;
}
