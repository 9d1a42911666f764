/* Shape ops: reshape, flatten, permute, transpose, slice, concat, contiguous.
 *
 * permute, transpose, slice and reshape of a contiguous tensor are views: the
 * result shares x's storage with new shape and strides. Gradients are always
 * contiguous, so a view's backward adds the output gradient into the matching
 * (strided) part of the input gradient. transpose and flatten record as
 * permute and reshape. */
#include "../core/internal.h"
#include <stdio.h>

#define SH_PAR_MIN 32768

/* Shape as "[2, 3]" for messages. */
static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    nb_tensor t;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return nb_shape_str(&t, buf, size);
}

#define SH_TILE 32

/* One strided copy (or add when acc) over m merged dimensions sh, with the
 * strides a of dst and b of src, as its parallel pieces see it. */
typedef struct {
    int acc, m, k;              /* k: tiled_op's transposed dimension */
    float *dst;
    const float *src;
    const int64_t *a, *b, *sh;
    int64_t tiles;              /* tiled_op: tiles along k */
} copy_job;

/* Pieces [lo, hi) of tiled_op: one row of tiles each. */
static void copy_tile_pieces(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const copy_job *c = ctx;
    const int m = c->m, k = c->k;
    const int64_t *a = c->a, *b = c->b, *sh = c->sh;
    const int64_t nk = sh[k], inner = sh[m - 1], ak = a[k], bk = b[k], ia = a[m - 1], ib = b[m - 1];
    for (int64_t p = lo; p < hi; p++) {
        int64_t o = p / c->tiles, i0 = (p % c->tiles) * SH_TILE, i1 = i0 + SH_TILE < nk ? i0 + SH_TILE : nk;
        int64_t offd = 0, offs = 0;
        for (int d = m - 2; d >= 0; d--) {
            if (d == k) continue;
            int64_t i = o % sh[d];
            o /= sh[d];
            offd += i * a[d];
            offs += i * b[d];
        }
        for (int64_t j0 = 0; j0 < inner; j0 += SH_TILE) {
            int64_t j1 = j0 + SH_TILE < inner ? j0 + SH_TILE : inner;
            for (int64_t i = i0; i < i1; i++) {
                float *o_ = c->dst + offd + i * ak;
                const float *s_ = c->src + offs + i * bk;
                if (c->acc) for (int64_t j = j0; j < j1; j++) o_[j * ia] += s_[j * ib];
                else for (int64_t j = j0; j < j1; j++) o_[j * ia] = s_[j * ib];
            }
        }
    }
}

/* strided_op's transpose path: dims k and m-1 of the merged layout are
 * walked in SH_TILE x SH_TILE tiles, one side being unit-stride along m-1 and
 * the other along k, so both stay in cache. Pieces (outer index, row of
 * tiles) write disjoint parts of dst. */
static void tiled_op(int acc, float *dst, const int64_t *a, const float *src, const int64_t *b, int m,
                     const int64_t *sh, int k)
{
    int64_t outer = 1;
    for (int d = 0; d < m - 1; d++)
        if (d != k) outer *= sh[d];
    int64_t nk = sh[k], inner = sh[m - 1];
    copy_job c = {.acc = acc, .m = m, .k = k, .dst = dst, .src = src, .a = a, .b = b, .sh = sh,
                  .tiles = (nk + SH_TILE - 1) / SH_TILE};
    int64_t pieces = outer * c.tiles;
    nb__par_for(pieces, nb__par_parts(pieces, outer * nk * inner >= SH_PAR_MIN), copy_tile_pieces, &c);
}

/* Rows [lo, hi) of strided_op: every dimension but the last. */
static void copy_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const copy_job *c = ctx;
    const int m = c->m;
    const int64_t *a = c->a, *b = c->b, *sh = c->sh;
    const int64_t inner = sh[m - 1], ia = a[m - 1], ib = b[m - 1];
    for (int64_t r = lo; r < hi; r++) {
        int64_t offd = 0, offs = 0, rr = r;
        for (int d = m - 2; d >= 0; d--) {
            int64_t i = rr % sh[d];
            rr /= sh[d];
            offd += i * a[d];
            offs += i * b[d];
        }
        float *o = c->dst + offd;
        const float *s = c->src + offs;
        if (c->acc) {
            if (ia == 1 && ib == 1) for (int64_t j = 0; j < inner; j++) o[j] += s[j];
            else for (int64_t j = 0; j < inner; j++) o[j * ia] += s[j * ib];
        } else {
            if (ia == 1 && ib == 1) memcpy(o, s, (size_t)inner * sizeof(float));
            else for (int64_t j = 0; j < inner; j++) o[j * ia] = s[j * ib];
        }
    }
}

/* dst (strides ds) = src (strides ss) over shape, or += when acc. Dimensions
 * of size 1 are dropped and mergeable neighbours merged first. */
static void strided_op(int acc, float *dst, const int64_t *ds, const float *src, const int64_t *ss,
                       int ndim, const int64_t *shape)
{
    int64_t sh[NB_MAX_DIMS], a[NB_MAX_DIMS], b[NB_MAX_DIMS];
    int m = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        if (shape[d] == 0) return;
        if (m > 0 && a[m - 1] == ds[d] * shape[d] && b[m - 1] == ss[d] * shape[d]) {
            sh[m - 1] *= shape[d];
            a[m - 1] = ds[d];
            b[m - 1] = ss[d];
        } else {
            sh[m] = shape[d];
            a[m] = ds[d];
            b[m] = ss[d];
            m++;
        }
    }
    if (m == 0) {
        sh[0] = 1;
        a[0] = b[0] = 0;
        m = 1;
    }
    int64_t inner = sh[m - 1], ia = a[m - 1], ib = b[m - 1], rows = 1;
    for (int d = 0; d < m - 1; d++) rows *= sh[d];
    if ((ia == 1) != (ib == 1) && inner >= SH_TILE) {
        /* A transpose: the side that is not unit-stride along the last
         * dimension is along some other dimension k. */
        const int64_t *other = ia == 1 ? b : a;
        for (int k = m - 2; k >= 0; k--)
            if (other[k] == 1 && sh[k] >= SH_TILE) {
                tiled_op(acc, dst, a, src, b, m, sh, k);
                return;
            }
    }
    copy_job c = {.acc = acc, .m = m, .dst = dst, .src = src, .a = a, .b = b, .sh = sh};
    nb__par_for(rows, nb__par_parts(rows, rows * inner >= SH_PAR_MIN), copy_rows, &c);
}

/* A contiguous copy of x in a new arena tensor. */
static nb_tensor *copy_contig(nb_ctx *ctx, const nb_tensor *x)
{
    nb_tensor *out = nb_tensor_new(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    strided_op(0, out->data, out->stride, x->data, x->stride, x->ndim, x->shape);
    return out;
}

typedef struct {
    float *gx;
    const float *g;
} add_job;

static void add_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const add_job *j = ctx;
    float *restrict gx = j->gx;
    const float *restrict g = j->g;
    for (int64_t i = lo; i < hi; i++) gx[i] += g[i];
}

/* in->grad += out->grad (= when fresh), both contiguous with the same
 * number of elements. */
static void add_flat(nb__node *n)
{
    int64_t m = nb_tensor_numel(n->out);
    float *gx = n->in[0]->grad;
    const float *g = n->out->grad;
    if (nb__fresh(n, 0)) {
        nb__par_copy(gx, g, m);
        return;
    }
    add_job j = {gx, g};
    nb__par_for_balanced(m, m >= SH_PAR_MIN, add_range, &j);
}

/* ---- reshape / flatten ------------------------------------------------------- */

nb_tensor *nb_reshape(nb_ctx *ctx, nb_tensor *x, int ndim, const int64_t *shape)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "reshape: context is NULL");
    if (ndim < 0 || ndim > NB_MAX_DIMS)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "reshape: %d dimensions (0..%d supported)", ndim, NB_MAX_DIMS);
    if (ndim > 0 && !shape) return nb__op_fail(ctx, NB_ERR_ARG, "reshape: shape is NULL");
    char bx[96], bs[96];
    int64_t sh[NB_MAX_DIMS], known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        sh[d] = shape[d];
        if (shape[d] == -1) {
            if (infer >= 0) return nb__op_fail(ctx, NB_ERR_ARG, "reshape: more than one -1 in %s",
                                               shape_str(ndim, shape, bs, sizeof bs));
            infer = d;
        } else if (shape[d] < 0) {
            return nb__op_fail(ctx, NB_ERR_SHAPE, "reshape: negative dimension in %s",
                               shape_str(ndim, shape, bs, sizeof bs));
        } else {
            if (shape[d] && known > INT64_MAX / shape[d])
                return nb__op_fail(ctx, NB_ERR_SHAPE, "reshape: shape %s is too large",
                                   shape_str(ndim, shape, bs, sizeof bs));
            known *= shape[d];
        }
    }
    int64_t n = nb_tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || n % known)
            return nb__op_fail(ctx, NB_ERR_SHAPE, "reshape: cannot reshape %s (%lld elements) to %s",
                               nb_shape_str(x, bx, sizeof bx), (long long)n, shape_str(ndim, shape, bs, sizeof bs));
        sh[infer] = n / known;
        known = n;
    }
    if (known != n)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "reshape: cannot reshape %s (%lld elements) to %s (%lld elements)",
                           nb_shape_str(x, bx, sizeof bx), (long long)n, shape_str(ndim, shape, bs, sizeof bs),
                           (long long)known);
    nb_tensor *out;
    if (nb_tensor_is_contiguous(x)) {
        out = nb__view_struct(ctx, x->data, ndim, sh);
        if (!out) return nb__op_fail(ctx, NB_ERR_NOMEM, "reshape: out of memory");
    } else {
        nb_tensor *c = copy_contig(ctx, x);
        if (!c) return NULL;
        out = nb__view_struct(ctx, c->data, ndim, sh);
        if (!out) return nb__op_fail(ctx, NB_ERR_NOMEM, "reshape: out of memory");
    }
    nb__record(ctx, NB__OP_RESHAPE, out, &x, 1);
    return out;
}

nb_status nb__bw_reshape(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    add_flat(n);
    return NB_OK;
}

nb_tensor *nb_flatten(nb_ctx *ctx, nb_tensor *x, int start_dim)
{
    if (!x) return NULL;
    int nd = x->ndim ? x->ndim : 1;   /* torch: a 0-d tensor flattens to (1) */
    int s = nb__axis(start_dim, nd);
    if (s < 0) {
        char b[96];
        return nb__op_fail(ctx, NB_ERR_ARG, "flatten: start_dim %d is out of range for a %d-D tensor %s",
                           start_dim, x->ndim, nb_shape_str(x, b, sizeof b));
    }
    int64_t sh[NB_MAX_DIMS];
    for (int d = 0; d < s; d++) sh[d] = x->shape[d];
    int64_t rest = 1;
    for (int d = s; d < x->ndim; d++) rest *= x->shape[d];
    sh[s] = rest;
    return nb_reshape(ctx, x, s + 1, sh);
}

/* ---- permute / transpose --------------------------------------------------- */

nb_tensor *nb_permute(nb_ctx *ctx, nb_tensor *x, const int *perm)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "permute: context is NULL");
    if (x->ndim > 0 && !perm) return nb__op_fail(ctx, NB_ERR_ARG, "permute: perm is NULL");
    int p[NB_MAX_DIMS], seen[NB_MAX_DIMS] = {0}, ok = 1;
    for (int d = 0; d < x->ndim; d++) {
        p[d] = nb__axis(perm[d], x->ndim);
        if (p[d] < 0 || seen[p[d]]) ok = 0;
        else seen[p[d]] = 1;
    }
    if (!ok) {
        char b[96], ps[96];
        size_t k = 0;
        ps[0] = 0;
        for (int d = 0; d < x->ndim && k < sizeof ps; d++)
            k += (size_t)snprintf(ps + k, sizeof ps - k, d ? ", %d" : "%d", perm[d]);
        return nb__op_fail(ctx, NB_ERR_ARG, "permute: [%s] is not a permutation of the %d dimensions of %s",
                           ps, x->ndim, nb_shape_str(x, b, sizeof b));
    }
    nb_tensor *out = nb__view_struct(ctx, x->data, 0, NULL);
    if (!out) return nb__op_fail(ctx, NB_ERR_NOMEM, "permute: out of memory");
    out->ndim = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
        out->shape[d] = x->shape[p[d]];
        out->stride[d] = x->stride[p[d]];
    }
    nb__node *n = nb__record(ctx, NB__OP_PERMUTE, out, &x, 1);
    if (n)
        for (int d = 0; d < x->ndim; d++) n->i[d] = p[d];
    return out;
}

/* gx[..] += g permuted back: out dim d walks x's dim perm[d]. */
nb_status nb__bw_permute(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0], *out = n->out;
    int64_t cs[NB_MAX_DIMS], ds[NB_MAX_DIMS], gs[NB_MAX_DIMS];
    nb__contig_strides(x->ndim, x->shape, cs);
    nb__contig_strides(out->ndim, out->shape, gs);
    for (int d = 0; d < out->ndim; d++) ds[d] = cs[n->i[d]];
    strided_op(1, x->grad, ds, out->grad, gs, out->ndim, out->shape);
    return NB_OK;
}

nb_tensor *nb_transpose(nb_ctx *ctx, nb_tensor *x, int d0, int d1)
{
    if (!x) return NULL;
    int a = nb__axis(d0, x->ndim), b = nb__axis(d1, x->ndim);
    if (a < 0 || b < 0) {
        char s[96];
        return nb__op_fail(ctx, NB_ERR_ARG, "transpose: dimensions %d and %d: out of range for a %d-D tensor %s",
                           d0, d1, x->ndim, nb_shape_str(x, s, sizeof s));
    }
    int perm[NB_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    perm[a] = b;
    perm[b] = a;
    return nb_permute(ctx, x, perm);
}

/* ---- slice --------------------------------------------------------------------- */

nb_tensor *nb_slice(nb_ctx *ctx, nb_tensor *x, int axis, int64_t start, int64_t end, int64_t step)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "slice: context is NULL");
    char b[96];
    int a = nb__axis(axis, x->ndim);
    if (a < 0)
        return nb__op_fail(ctx, NB_ERR_ARG, "slice: axis %d is out of range for a %d-D tensor %s", axis, x->ndim,
                           nb_shape_str(x, b, sizeof b));
    if (step < 1) return nb__op_fail(ctx, NB_ERR_ARG, "slice: step must be >= 1, got %lld", (long long)step);
    int64_t n = x->shape[a];
    if (start < 0) start = start < -n ? 0 : start + n;
    if (start > n) start = n;
    if (end < 0) end = end < -n ? 0 : end + n;
    if (end > n) end = n;
    int64_t len = end > start ? (end - start - 1) / step + 1 : 0;
    nb_tensor *out = nb__view_struct(ctx, len ? x->data + start * x->stride[a] : x->data, 0, NULL);
    if (!out) return nb__op_fail(ctx, NB_ERR_NOMEM, "slice: out of memory");
    out->ndim = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
        out->shape[d] = x->shape[d];
        out->stride[d] = x->stride[d];
    }
    out->shape[a] = len;
    out->stride[a] = x->stride[a] * step;
    nb__node *nd = nb__record(ctx, NB__OP_SLICE, out, &x, 1);
    if (nd) {
        nd->i[0] = a;
        nd->i[1] = start;
        nd->i[2] = step;
    }
    return out;
}

nb_status nb__bw_slice(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0], *out = n->out;
    int a = (int)n->i[0];
    int64_t cs[NB_MAX_DIMS], gs[NB_MAX_DIMS];
    nb__contig_strides(x->ndim, x->shape, cs);
    nb__contig_strides(out->ndim, out->shape, gs);
    if (nb_tensor_numel(out) == 0) return NB_OK;
    float *dst = x->grad + n->i[1] * cs[a];
    cs[a] *= n->i[2];
    strided_op(1, dst, cs, out->grad, gs, out->ndim, out->shape);
    return NB_OK;
}

/* ---- concat ------------------------------------------------------------------ */

nb_tensor *nb_concat(nb_ctx *ctx, nb_tensor *const *xs, int n, int axis)
{
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "concat: context is NULL");
    if (n < 1 || !xs) return nb__op_fail(ctx, NB_ERR_ARG, "concat: needs at least one tensor (n = %d)", n);
    if (nb__any_null(xs, n)) return NULL;
    char b0[96], bk[96];
    const nb_tensor *x0 = xs[0];
    if (x0->ndim == 0) return nb__op_fail(ctx, NB_ERR_SHAPE, "concat: cannot concatenate 0-d tensors");
    int a = nb__axis(axis, x0->ndim);
    if (a < 0)
        return nb__op_fail(ctx, NB_ERR_ARG, "concat: axis %d is out of range for a %d-D tensor %s", axis, x0->ndim,
                           nb_shape_str(x0, b0, sizeof b0));
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < x0->ndim; d++) shape[d] = x0->shape[d];
    shape[a] = 0;
    for (int k = 0; k < n; k++) {
        const nb_tensor *x = xs[k];
        int ok = x->ndim == x0->ndim;
        for (int d = 0; ok && d < x0->ndim; d++) ok = d == a || x->shape[d] == x0->shape[d];
        if (!ok)
            return nb__op_fail(ctx, NB_ERR_SHAPE,
                               "concat: tensor %d has shape %s, which does not match %s except along axis %d", k,
                               nb_shape_str(x, bk, sizeof bk), nb_shape_str(x0, b0, sizeof b0), a);
        shape[a] += x->shape[a];
    }
    nb_tensor *out = nb_tensor_new(ctx, x0->ndim, shape);
    if (!out) return NULL;
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        const nb_tensor *x = xs[k];
        strided_op(0, out->data + off * out->stride[a], out->stride, x->data, x->stride, x->ndim, x->shape);
        off += x->shape[a];
    }
    nb__node *nd = nb__record(ctx, NB__OP_CONCAT, out, xs, n);
    if (nd) nd->i[0] = a;
    return out;
}

nb_status nb__bw_concat(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *out = n->out;
    int a = (int)n->i[0];
    int64_t gs[NB_MAX_DIMS];
    nb__contig_strides(out->ndim, out->shape, gs);
    int64_t off = 0;
    for (int k = 0; k < n->nin; k++) {
        nb_tensor *x = n->in[k];
        int64_t cs[NB_MAX_DIMS];
        if (x->requires_grad) {
            nb__contig_strides(x->ndim, x->shape, cs);
            strided_op(1, x->grad, cs, out->grad + off * gs[a], gs, x->ndim, x->shape);
        }
        off += x->shape[a];
    }
    return NB_OK;
}

/* ---- contiguous --------------------------------------------------------------- */

nb_tensor *nb_contiguous(nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    if (nb_tensor_is_contiguous(x)) return x;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "contiguous: context is NULL");
    nb_tensor *out = copy_contig(ctx, x);
    if (!out) return NULL;
    nb__record(ctx, NB__OP_CONTIGUOUS, out, &x, 1);
    return out;
}

nb_status nb__bw_contiguous(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    add_flat(n);
    return NB_OK;
}
