/* Matrix products on nb_gemm: matmul (2-D and batched with broadcast batch
 * dimensions) and linear (torch F.linear), forward and backward.
 *
 * An operand is passed to nb_gemm as it lies in memory whenever its matrix
 * dimensions form a row-major matrix or the transpose of one (a transposed
 * view costs nothing); anything else (stride 0, steps) is copied once.
 * Backward products accumulate straight into the gradients with beta = 1. */
#include "../core/internal.h"
#include <limits.h>

#define MM_PAR_MIN 32768
#define MM_SMALL   (64 * 64 * 64)   /* flops of a product too small to thread */

/* How a (rows x cols) matrix with strides (srow, scol) is given to nb_gemm:
 * trans = 0 row-major with ld = row stride, trans = 1 stored transposed with
 * ld = column stride. Returns 0 if neither works. */
static int mat_layout(int64_t rows, int64_t cols, int64_t srow, int64_t scol, int *trans, int64_t *ld)
{
    if ((cols == 1 || scol == 1) && (rows == 1 || srow >= cols) && srow <= INT_MAX) {
        *trans = 0;
        *ld = rows == 1 ? cols : srow;
        return *ld >= 1;
    }
    if ((rows == 1 || srow == 1) && (cols == 1 || scol >= rows) && scol <= INT_MAX) {
        *trans = 1;
        *ld = cols == 1 ? rows : scol;
        return *ld >= 1;
    }
    return 0;
}

/* One operand as nb_gemm sees it. */
typedef struct {
    const float *data;
    int trans;
    int64_t ld;
    int64_t bstride[NB_MAX_DIMS];   /* per output batch dimension; 0 = broadcast */
} mm_operand;

typedef struct {
    mm_operand a, b;
    int nbd;                        /* output batch dimensions */
    int64_t M, N, K;
    int fold;                       /* a's batches folded into M: one GEMM */
} mm_saved;

/* Fills op for the matrices of t (rows x cols = its last two dimensions),
 * copying t when its layout does not suit nb_gemm. */
static int mm_operand_init(nb_ctx *ctx, const nb_tensor *t, int nbd, mm_operand *op)
{
    int nd = t->ndim;
    int64_t rows = t->shape[nd - 2], cols = t->shape[nd - 1];
    const float *data = t->data;
    int64_t st[NB_MAX_DIMS];
    for (int d = 0; d < nd; d++) st[d] = t->stride[d];
    if (!mat_layout(rows, cols, st[nd - 2], st[nd - 1], &op->trans, &op->ld)) {
        float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(t) * sizeof(float));
        if (!c) return 0;
        nb_tensor_copy_out(t, c);
        data = c;
        nb__contig_strides(nd, t->shape, st);
        op->trans = 0;     /* row-major; ld matters only when no size is 0 */
        op->ld = cols ? cols : 1;
    }
    op->data = data;
    for (int i = 0; i < nbd; i++) {
        int it = (nd - 2) - nbd + i;
        op->bstride[i] = (it >= 0 && t->shape[it] != 1) ? st[it] : 0;
    }
    return 1;
}

/* Offset of batch p (row-major over bshape) for the given batch strides. */
static int64_t batch_off(int64_t p, int nbd, const int64_t *bshape, const int64_t *bstride)
{
    int64_t off = 0;
    for (int d = nbd - 1; d >= 0; d--) {
        off += (p % bshape[d]) * bstride[d];
        p /= bshape[d];
    }
    return off;
}

/* Whether batches are better run in parallel than each GEMM threaded. */
static int small_batches(int64_t nbatch, int64_t M, int64_t N, int64_t K)
{
    return nbatch > 1 && M * N * K <= MM_SMALL && nbatch * M * N * K >= MM_PAR_MIN;
}

/* 1 if no output batch dimension of size > 1 is broadcast in gs, i.e. every
 * batch owns its slice of the gradient. */
static int owns_batches(int nbd, const int64_t *shape, const int64_t *gs)
{
    for (int i = 0; i < nbd; i++)
        if (shape[i] > 1 && gs[i] == 0) return 0;
    return 1;
}

/* Batches of one product (forward) or of one gradient (backward), one GEMM
 * each: the output batch shape, dC, and the gradient with its batch strides. */
typedef struct {
    const mm_saved *s;
    const int64_t *shape;
    float *out;
    const float *g;
    float *grad;
    const int64_t *gs;
} mm_job;

static void mm_batches(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const mm_job *j = ctx;
    const mm_saved *s = j->s;
    const int M = (int)s->M, N = (int)s->N, K = (int)s->K;
    for (int64_t p = lo; p < hi; p++)
        nb_gemm(s->a.trans, s->b.trans, M, N, K, 1.0f, s->a.data + batch_off(p, s->nbd, j->shape, s->a.bstride),
                (int)s->a.ld, s->b.data + batch_off(p, s->nbd, j->shape, s->b.bstride), (int)s->b.ld, 0.0f,
                j->out + p * M * N, N);
}

/* dA += dC B^T, batch by batch */
static void mm_batches_bw_a(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const mm_job *j = ctx;
    const mm_saved *s = j->s;
    const int M = (int)s->M, N = (int)s->N, K = (int)s->K;
    for (int64_t p = lo; p < hi; p++)
        nb_gemm(0, !s->b.trans, M, K, N, 1.0f, j->g + p * (int64_t)M * N, N,
                s->b.data + batch_off(p, s->nbd, j->shape, s->b.bstride), (int)s->b.ld, 1.0f,
                j->grad + batch_off(p, s->nbd, j->shape, j->gs), K);
}

/* dB += A^T dC, batch by batch */
static void mm_batches_bw_b(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const mm_job *j = ctx;
    const mm_saved *s = j->s;
    const int M = (int)s->M, N = (int)s->N, K = (int)s->K;
    for (int64_t p = lo; p < hi; p++)
        nb_gemm(!s->a.trans, 0, K, N, M, 1.0f, s->a.data + batch_off(p, s->nbd, j->shape, s->a.bstride),
                (int)s->a.ld, j->g + p * (int64_t)M * N, N, 1.0f, j->grad + batch_off(p, s->nbd, j->shape, j->gs),
                N);
}

nb_tensor *nb_matmul(nb_ctx *ctx, nb_tensor *a, nb_tensor *b)
{
    nb_tensor *in[2] = {a, b};
    if (nb__any_null(in, 2)) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "matmul: context is NULL");
    char sa[96], sb[96];
    if (a->ndim < 2 || b->ndim < 2)
        return nb__op_fail(ctx, NB_ERR_SHAPE,
                           "matmul: operands must have at least 2 dimensions, got %s @ %s "
                           "(reshape a vector to (1,n) or (n,1))",
                           nb_shape_str(a, sa, sizeof sa), nb_shape_str(b, sb, sizeof sb));
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != K)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "matmul: inner dimensions differ: %s @ %s (%lld vs %lld)",
                           nb_shape_str(a, sa, sizeof sa), nb_shape_str(b, sb, sizeof sb), (long long)K,
                           (long long)b->shape[b->ndim - 2]);
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "matmul: matrices %s @ %s are too large",
                           nb_shape_str(a, sa, sizeof sa), nb_shape_str(b, sb, sizeof sb));
    /* Batch dimensions broadcast like elementwise ops. */
    int nba = a->ndim - 2, nbb = b->ndim - 2, nbd = nba > nbb ? nba : nbb;
    int64_t shape[NB_MAX_DIMS];
    for (int i = 0; i < nbd; i++) {
        int ia = nba - nbd + i, ib = nbb - nbd + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return nb__op_fail(ctx, NB_ERR_SHAPE, "matmul: batch dimensions of %s and %s do not broadcast",
                               nb_shape_str(a, sa, sizeof sa), nb_shape_str(b, sb, sizeof sb));
        shape[i] = da == 1 ? db : da;
    }
    shape[nbd] = M;
    shape[nbd + 1] = N;
    nb_tensor *out = nb_tensor_new(ctx, nbd + 2, shape);
    if (!out) return NULL;
    mm_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
    if (!s || !mm_operand_init(ctx, a, nbd, &s->a) || !mm_operand_init(ctx, b, nbd, &s->b))
        return nb__op_fail(ctx, NB_ERR_NOMEM, "matmul: out of memory");
    s->nbd = nbd;
    s->M = M;
    s->N = N;
    s->K = K;
    int64_t nbatch = nb__numel(nbd, shape);
    /* b shared by every batch and a's batches evenly spaced rows: one GEMM
     * of (batch*M, K) @ (K, N). */
    int fold = !s->a.trans && nbatch > 1;
    int64_t expect = M * s->a.ld;
    for (int i = nbd - 1; i >= 0 && fold; i--) {
        if (s->b.bstride[i] != 0) fold = 0;
        if (shape[i] == 1) continue;
        if (s->a.bstride[i] != expect) fold = 0;
        expect *= shape[i];
    }
    if (fold && nbatch * M > INT_MAX) fold = 0;
    s->fold = fold;
    if (M && N) {
        if (K == 0) {
            memset(out->data, 0, (size_t)nb_tensor_numel(out) * sizeof(float));
        } else if (fold) {
            nb_gemm(0, s->b.trans, (int)(nbatch * M), (int)N, (int)K, 1.0f, s->a.data, (int)s->a.ld, s->b.data,
                    (int)s->b.ld, 0.0f, out->data, (int)N);
        } else {
            /* many small products: batches across the threads (nb_gemm
             * runs on its caller inside a pool task, with the same results) */
            mm_job j = {.s = s, .shape = shape, .out = out->data};
            nb__par_for(nbatch, nb__par_parts(nbatch, small_batches(nbatch, M, N, K)), mm_batches, &j);
        }
    }
    nb__node *n = nb__record(ctx, NB__OP_MATMUL, out, in, 2);
    if (n) n->saved = s;
    return out;
}

/* Batch strides of t's (contiguous) gradient over the output batch dims. */
static void grad_bstride(const nb_tensor *t, int nbd, int64_t *gs)
{
    int nd = t->ndim;
    int64_t cs[NB_MAX_DIMS];
    nb__contig_strides(nd, t->shape, cs);
    for (int i = 0; i < nbd; i++) {
        int it = (nd - 2) - nbd + i;
        gs[i] = (it >= 0 && t->shape[it] != 1) ? cs[it] : 0;
    }
}

/* C = A B per batch: dA += dC B^T, dB += A^T dC (summed over broadcast batches). */
nb_status nb__bw_matmul(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    const mm_saved *s = n->saved;
    nb_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    int nbd = s->nbd;
    int M = (int)s->M, N = (int)s->N, K = (int)s->K;
    if (!M || !N || !K) return NB_OK;
    const float *g = out->grad;
    int64_t nbatch = nb__numel(nbd, out->shape);
    if (s->fold) {
        int BM = (int)(nbatch * M);
        if (a->requires_grad)
            nb_gemm(0, !s->b.trans, BM, K, N, 1.0f, g, N, s->b.data, (int)s->b.ld, 1.0f, a->grad, K);
        if (b->requires_grad)
            nb_gemm(1, 0, K, N, BM, 1.0f, s->a.data, (int)s->a.ld, g, N, 1.0f, b->grad, N);
        return NB_OK;
    }
    /* A gradient shared by several batches (broadcast operand) sums their
     * products in batch order; otherwise batches may run in parallel. */
    int64_t gsa[NB_MAX_DIMS], gsb[NB_MAX_DIMS];
    grad_bstride(a, nbd, gsa);
    grad_bstride(b, nbd, gsb);
    int small = small_batches(nbatch, M, N, K);
    if (a->requires_grad) {
        mm_job j = {.s = s, .shape = out->shape, .g = g, .grad = a->grad, .gs = gsa};
        nb__par_for(nbatch, nb__par_parts(nbatch, small && owns_batches(nbd, out->shape, gsa)), mm_batches_bw_a, &j);
    }
    if (b->requires_grad) {
        mm_job j = {.s = s, .shape = out->shape, .g = g, .grad = b->grad, .gs = gsb};
        nb__par_for(nbatch, nb__par_parts(nbatch, small && owns_batches(nbd, out->shape, gsb)), mm_batches_bw_b, &j);
    }
    return NB_OK;
}

/* ---- linear ------------------------------------------------------------------ */

typedef struct {
    const float *x, *w;    /* as given to nb_gemm (views or copies) */
    int tx, tw;
    int64_t ldx, ldw;
    int64_t rows, in, out;
} lin_saved;

/* x as a (rows x in) matrix for nb_gemm: its leading dimensions must merge
 * into one row dimension; else (or if the layout does not suit) a copy. */
static int lin_x_layout(nb_ctx *ctx, const nb_tensor *x, int64_t rows, int64_t in, lin_saved *s)
{
    int nd = x->ndim;
    int64_t scol = x->stride[nd - 1], srow = in;   /* srow for rows == 1 */
    int ok = 1, found = 0;
    int64_t expect = 0;
    for (int d = nd - 2; d >= 0; d--) {           /* merge leading dims into one */
        if (x->shape[d] == 1) continue;
        if (!found) {
            srow = x->stride[d];
            found = 1;
        } else if (x->stride[d] != expect) {
            ok = 0;
        }
        expect = x->stride[d] * x->shape[d];
    }
    s->x = x->data;
    if (ok && mat_layout(rows, in, srow, scol, &s->tx, &s->ldx)) return 1;
    float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(x) * sizeof(float));
    if (!c) return 0;
    nb_tensor_copy_out(x, c);
    s->x = c;
    s->tx = 0;
    s->ldx = in ? in : 1;
    return 1;
}

/* The rows of linear's output filled with the bias (stride bs), or the
 * bias gradient summed over the rows of dy. */
typedef struct {
    float *y, *gb;
    const float *b, *g;
    int64_t bs, rows, fo;
} bias_job;

static void bias_rows(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bias_job *j = ctx;
    const int64_t fo = j->fo, bs = j->bs;
    for (int64_t r = lo; r < hi; r++) {
        float *yr = j->y + r * fo;
        if (bs == 1) memcpy(yr, j->b, (size_t)fo * sizeof(float));
        else for (int64_t c = 0; c < fo; c++) yr[c] = j->b[c * bs];
    }
}

/* Blocks of 256 columns of gb += the sum of dy's rows. */
static void bias_grad_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bias_job *j = ctx;
    const int64_t fo = j->fo;
    float *restrict gb = j->gb;
    for (int64_t blk = lo; blk < hi; blk++) {
        int64_t j0 = blk * 256, j1 = j0 + 256 < fo ? j0 + 256 : fo;
        for (int64_t r = 0; r < j->rows; r++) {
            const float *restrict gr = j->g + r * fo;
            for (int64_t c = j0; c < j1; c++) gb[c] += gr[c];
        }
    }
}

nb_tensor *nb_linear(nb_ctx *ctx, nb_tensor *x, nb_tensor *w, nb_tensor *b)
{
    nb_tensor *in[3] = {x, w, b};
    if (nb__any_null(in, 2)) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "linear: context is NULL");
    char sx[96], sw[96], sbb[96];
    if (w->ndim != 2)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "linear: weight must be 2-D (out_features, in_features), got %s",
                           nb_shape_str(w, sw, sizeof sw));
    int64_t fo = w->shape[0], fi = w->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != fi)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "linear: input %s does not end in in_features = %lld of weight %s",
                           nb_shape_str(x, sx, sizeof sx), (long long)fi, nb_shape_str(w, sw, sizeof sw));
    if (b && (b->ndim != 1 || b->shape[0] != fo))
        return nb__op_fail(ctx, NB_ERR_SHAPE, "linear: bias %s does not match out_features = %lld of weight %s",
                           nb_shape_str(b, sbb, sizeof sbb), (long long)fo, nb_shape_str(w, sw, sizeof sw));
    int64_t rows = nb_tensor_numel(x) / (fi ? fi : 1);
    if (fi == 0) rows = nb__numel(x->ndim - 1, x->shape);
    if (rows > INT_MAX || fi > INT_MAX || fo > INT_MAX)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "linear: input %s with weight %s is too large",
                           nb_shape_str(x, sx, sizeof sx), nb_shape_str(w, sw, sizeof sw));
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = fo;
    nb_tensor *out = nb_tensor_new(ctx, x->ndim, shape);
    if (!out) return NULL;
    lin_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
    if (!s || !lin_x_layout(ctx, x, rows, fi, s)) return nb__op_fail(ctx, NB_ERR_NOMEM, "linear: out of memory");
    s->rows = rows;
    s->in = fi;
    s->out = fo;
    s->w = w->data;
    if (!mat_layout(fo, fi, w->stride[0], w->stride[1], &s->tw, &s->ldw)) {
        float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(w) * sizeof(float));
        if (!c) return nb__op_fail(ctx, NB_ERR_NOMEM, "linear: out of memory");
        nb_tensor_copy_out(w, c);
        s->w = c;
        s->tw = 0;
        s->ldw = fi ? fi : 1;
    }
    float *y = out->data;
    if (b) {   /* the bias goes in first; the GEMM adds x w^T to it */
        bias_job j = {.y = y, .b = b->data, .bs = b->stride[0], .fo = fo};
        nb__par_for(rows, nb__par_parts(rows, rows * fo >= MM_PAR_MIN), bias_rows, &j);
    }
    if (rows && fo) {
        if (fi)
            nb_gemm(s->tx, !s->tw, (int)rows, (int)fo, (int)fi, 1.0f, s->x, (int)s->ldx, s->w, (int)s->ldw,
                    b ? 1.0f : 0.0f, y, (int)fo);
        else if (!b)
            memset(y, 0, (size_t)(rows * fo) * sizeof(float));
    }
    nb__node *n = nb__record(ctx, NB__OP_LINEAR, out, in, b ? 3 : 2);
    if (n) n->saved = s;
    return out;
}

/* y = x w^T + b: dx += dy w, dw += dy^T x, db += column sums of dy. */
nb_status nb__bw_linear(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    const lin_saved *s = n->saved;
    nb_tensor *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
    int rows = (int)s->rows, fi = (int)s->in, fo = (int)s->out;
    const float *g = n->out->grad;
    if (!rows || !fo) {   /* an empty product: fresh gradients are zeros */
        if (nb__fresh(n, 0)) memset(x->grad, 0, (size_t)rows * (size_t)fi * sizeof(float));
        if (nb__fresh(n, 1)) memset(w->grad, 0, (size_t)fo * (size_t)fi * sizeof(float));
        if (nb__fresh(n, 2)) memset(b->grad, 0, (size_t)fo * sizeof(float));
        return NB_OK;
    }
    if (fi && x->requires_grad)
        nb_gemm(0, s->tw, rows, fi, fo, 1.0f, g, fo, s->w, (int)s->ldw, nb__fresh(n, 0) ? 0.0f : 1.0f, x->grad, fi);
    if (fi && w->requires_grad)
        nb_gemm(1, s->tx, fo, fi, rows, 1.0f, g, fo, s->x, (int)s->ldx, nb__fresh(n, 1) ? 0.0f : 1.0f, w->grad, fi);
    if (b && b->requires_grad) {
        float *gb = b->grad;
        if (nb__fresh(n, 2)) memset(gb, 0, (size_t)fo * sizeof(float));
        int64_t blocks = (fo + 255) / 256;
        bias_job j = {.gb = gb, .g = g, .rows = rows, .fo = fo};
        nb__par_for(blocks, nb__par_parts(blocks, (int64_t)rows * fo >= MM_PAR_MIN), bias_grad_blocks, &j);
    }
    return NB_OK;
}
