/* Elementwise ops with NumPy/PyTorch broadcasting: add, sub, mul, div, scale,
 * add_scalar, exp, log, sqrt, pow — forward and backward side by side.
 *
 * Every loop runs through one strided iterator: the output (contiguous) and
 * up to two operands with their own strides (0 along broadcast dimensions).
 * Dimensions of size 1 are dropped and neighbours that are laid out alike are
 * merged, so same-shape contiguous operands become one flat, vectorisable
 * row. Large tensors are split into rows or chunks, in contiguous ranges on
 * the thread pool; each output element is computed by one thread from the
 * same inputs, so results do not depend on the thread count. */
#include "../core/internal.h"
#include <math.h>

#define EW_PAR_MIN 32768    /* elements before threads pay off */
#define EW_CHUNK   16384    /* piece of a long row given to one thread */
#define EW_TILE    32       /* tile side for transposed operands */

enum ew_op {
    EW_ADD, EW_SUB, EW_MUL, EW_DIV,          /* x op y */
    EW_SCALE, EW_ADDS,                       /* x * s, x + s */
    EW_EXP, EW_LOG, EW_SQRT,                 /* f(x) */
    EW_POW, EW_SQR, EW_CUBE, EW_RECIP,       /* x ** s (s = 2, 3, -1 fast) */
    EW_NEGDIV,                               /* -x / y      (div backward) */
    EW_SQRTGRAD,                             /* x / (2y)    (sqrt backward) */
    EW_TWOMUL,                               /* x * 2y      (pow 2 backward) */
    EW_POWGRAD                               /* x * s * y ** (s - 1) */
};

/* The operand layout of one elementwise loop after merging dimensions. */
typedef struct {
    int     nd;
    int64_t shape[NB_MAX_DIMS];
    int64_t sa[NB_MAX_DIMS], sb[NB_MAX_DIMS];
} ew_layout;

static void ew_coalesce(ew_layout *L, int nd, const int64_t *shape, const int64_t *sa, const int64_t *sb)
{
    int m = 0;
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 1) continue;
        if (m > 0 && L->sa[m - 1] == sa[d] * shape[d] && L->sb[m - 1] == sb[d] * shape[d]) {
            L->shape[m - 1] *= shape[d];
            L->sa[m - 1] = sa[d];
            L->sb[m - 1] = sb[d];
        } else {
            L->shape[m] = shape[d];
            L->sa[m] = sa[d];
            L->sb[m] = sb[d];
            m++;
        }
    }
    if (m == 0) {
        L->shape[0] = 1;
        L->sa[0] = L->sb[0] = 0;
        m = 1;
    }
    L->nd = m;
}

/* o[j] = F(a[j*sa], b[j*sb]) (or += when acc), specialised on the common
 * stride patterns so the compiler vectorises them. F may use `s`. */
#define EW_LOOP(F)                                                              \
    do {                                                                        \
        if (sa == 1 && sb == 1) {                                               \
            if (acc) for (int64_t j = 0; j < n; j++) o[j] += F(a[j], b[j]);     \
            else     for (int64_t j = 0; j < n; j++) o[j] = F(a[j], b[j]);      \
        } else if (sa == 1 && sb == 0) {                                        \
            const float y_ = b[0]; (void)y_;                                    \
            if (acc) for (int64_t j = 0; j < n; j++) o[j] += F(a[j], y_);       \
            else     for (int64_t j = 0; j < n; j++) o[j] = F(a[j], y_);        \
        } else if (sa == 0 && sb == 1) {                                        \
            const float x_ = a[0]; (void)x_;                                    \
            if (acc) for (int64_t j = 0; j < n; j++) o[j] += F(x_, b[j]);       \
            else     for (int64_t j = 0; j < n; j++) o[j] = F(x_, b[j]);        \
        } else {                                                                \
            if (acc) for (int64_t j = 0; j < n; j++) o[j] += F(a[j * sa], b[j * sb]); \
            else     for (int64_t j = 0; j < n; j++) o[j] = F(a[j * sa], b[j * sb]);  \
        }                                                                       \
    } while (0)

#define F_ADD(x, y)      ((x) + (y))
#define F_SUB(x, y)      ((x) - (y))
#define F_MUL(x, y)      ((x) * (y))
#define F_DIV(x, y)      ((x) / (y))
#define F_SCALE(x, y)    ((x) * s)
#define F_ADDS(x, y)     ((x) + s)
#define F_EXP(x, y)      expf(x)
#define F_LOG(x, y)      logf(x)
#define F_SQRT(x, y)     sqrtf(x)
#define F_POW(x, y)      powf((x), s)
#define F_SQR(x, y)      ((x) * (x))
#define F_CUBE(x, y)     ((x) * (x) * (x))
#define F_RECIP(x, y)    (1.0f / (x))
#define F_NEGDIV(x, y)   (-(x) / (y))
#define F_SQRTGRAD(x, y) ((x) / (2.0f * (y)))
#define F_TWOMUL(x, y)   ((x) * (2.0f * (y)))
#define F_POWGRAD(x, y)  ((x) * (s * powf((y), s - 1.0f)))

static void ew_row(int op, int acc, float *o, const float *a, int64_t sa,
                   const float *b, int64_t sb, int64_t n, float s)
{
    switch (op) {
    case EW_ADD: EW_LOOP(F_ADD); break;
    case EW_SUB: EW_LOOP(F_SUB); break;
    case EW_MUL: EW_LOOP(F_MUL); break;
    case EW_DIV: EW_LOOP(F_DIV); break;
    case EW_SCALE: EW_LOOP(F_SCALE); break;
    case EW_ADDS: EW_LOOP(F_ADDS); break;
    case EW_EXP: EW_LOOP(F_EXP); break;
    case EW_LOG: EW_LOOP(F_LOG); break;
    case EW_SQRT: EW_LOOP(F_SQRT); break;
    case EW_POW: EW_LOOP(F_POW); break;
    case EW_SQR: EW_LOOP(F_SQR); break;
    case EW_CUBE: EW_LOOP(F_CUBE); break;
    case EW_RECIP: EW_LOOP(F_RECIP); break;
    case EW_NEGDIV: EW_LOOP(F_NEGDIV); break;
    case EW_SQRTGRAD: EW_LOOP(F_SQRTGRAD); break;
    case EW_TWOMUL: EW_LOOP(F_TWOMUL); break;
    case EW_POWGRAD: EW_LOOP(F_POWGRAD); break;
    default: NB_ASSERT(0);
    }
}

/* One ew_run or ew_tiled call, as its parallel pieces see it. */
typedef struct {
    int op, acc;
    float *o;
    const float *a, *b;
    const ew_layout *L;
    float s;
    int k;                      /* tiled: the transposed dimension */
    int64_t os[NB_MAX_DIMS];    /* tiled: the output's strides */
    int64_t tiles, per_row;     /* tiles along k; chunks per row */
} ew_job;

/* Pieces [lo, hi) of ew_tiled: one tile of dimension k, all its columns. */
static void ew_tile_pieces(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const ew_job *j = ctx;
    const ew_layout *L = j->L;
    const int nd = L->nd, k = j->k;
    const int64_t nk = L->shape[k], inner = L->shape[nd - 1], isa = L->sa[nd - 1], isb = L->sb[nd - 1];
    for (int64_t p = lo; p < hi; p++) {
        int64_t r = p / j->tiles, i0 = (p % j->tiles) * EW_TILE, i1 = i0 + EW_TILE < nk ? i0 + EW_TILE : nk;
        int64_t offo = 0, offa = 0, offb = 0;
        for (int d = nd - 2; d >= 0; d--) {
            if (d == k) continue;
            int64_t i = r % L->shape[d];
            r /= L->shape[d];
            offo += i * j->os[d];
            offa += i * L->sa[d];
            offb += i * L->sb[d];
        }
        for (int64_t j0 = 0; j0 < inner; j0 += EW_TILE) {
            int64_t n = inner - j0 < EW_TILE ? inner - j0 : EW_TILE;
            for (int64_t i = i0; i < i1; i++)
                ew_row(j->op, j->acc, j->o + offo + i * j->os[k] + j0, j->a + offa + i * L->sa[k] + j0 * isa, isa,
                       j->b + offb + i * L->sb[k] + j0 * isb, isb, n, j->s);
        }
    }
}

/* ew_run for a transposed operand: it is unit-stride along dimension k, the
 * output along the last one; both are walked in EW_TILE x EW_TILE tiles so
 * the strided reads stay in cache. */
static void ew_tiled(int op, int acc, float *o, const float *a, const float *b, const ew_layout *L, int k, float s)
{
    int nd = L->nd;
    ew_job j = {.op = op, .acc = acc, .o = o, .a = a, .b = b, .L = L, .s = s, .k = k};
    nb__contig_strides(nd, L->shape, j.os);
    int64_t outer = 1;
    for (int d = 0; d < nd - 1; d++)
        if (d != k) outer *= L->shape[d];
    int64_t nk = L->shape[k], inner = L->shape[nd - 1];
    j.tiles = (nk + EW_TILE - 1) / EW_TILE;
    int64_t pieces = outer * j.tiles;
    nb__par_for(pieces, nb__par_parts(pieces, outer * nk * inner >= EW_PAR_MIN), ew_tile_pieces, &j);
}

/* Pieces [lo, hi) of ew_run: chunk p % per_row of row p / per_row. */
static void ew_row_pieces(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const ew_job *j = ctx;
    const ew_layout *L = j->L;
    const int nd = L->nd;
    const int64_t inner = L->shape[nd - 1], isa = L->sa[nd - 1], isb = L->sb[nd - 1], per_row = j->per_row;
    for (int64_t p = lo; p < hi; p++) {
        int64_t r = p / per_row, q = p % per_row;
        int64_t j0 = inner * q / per_row, j1 = inner * (q + 1) / per_row;
        int64_t offa = 0, offb = 0, rr = r;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = rr % L->shape[d];
            rr /= L->shape[d];
            offa += i * L->sa[d];
            offb += i * L->sb[d];
        }
        ew_row(j->op, j->acc, j->o + r * inner + j0, j->a + offa + j0 * isa, isa, j->b + offb + j0 * isb, isb,
               j1 - j0, j->s);
    }
}

/* o (contiguous over L's shape) = or += op(a, b) with L's strides. */
static void ew_run(int op, int acc, float *o, const float *a, const float *b, const ew_layout *L, float s)
{
    int nd = L->nd;
    int64_t inner = L->shape[nd - 1], isa = L->sa[nd - 1], isb = L->sb[nd - 1];
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++) rows *= L->shape[d];
    int64_t total = rows * inner;
    if (total == 0) return;
    if ((isa > 1 || isb > 1) && inner >= EW_TILE)
        for (int k = nd - 2; k >= 0; k--)
            if (L->shape[k] >= EW_TILE && ((isa > 1 && L->sa[k] == 1) || (isb > 1 && L->sb[k] == 1))) {
                ew_tiled(op, acc, o, a, b, L, k, s);
                return;
            }
    /* Few long rows: cut each row into chunks so every thread gets work. */
    ew_job j = {.op = op, .acc = acc, .o = o, .a = a, .b = b, .L = L, .s = s};
    j.per_row = (total >= EW_PAR_MIN && rows < 64) ? (inner + EW_CHUNK - 1) / EW_CHUNK : 1;
    int64_t pieces = rows * j.per_row;
    nb__par_for(pieces, nb__par_parts(pieces, total >= EW_PAR_MIN), ew_row_pieces, &j);
}

/* ---- binary ops ------------------------------------------------------------ */

static nb_tensor *binary(nb_ctx *ctx, int opcode, int ewop, const char *name, nb_tensor *a, nb_tensor *b)
{
    nb_tensor *in[2] = {a, b};
    if (nb__any_null(in, 2)) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "%s: context is NULL", name);
    int nd;
    int64_t shape[NB_MAX_DIMS], sa[NB_MAX_DIMS], sb[NB_MAX_DIMS];
    nb_status st = nb__broadcast_shape(name, a, b, &nd, shape);
    if (st) {
        nb__ctx_set_status(ctx, st);
        return NULL;
    }
    nb_tensor *out = nb_tensor_new(ctx, nd, shape);
    if (!out) return NULL;
    nb__broadcast_strides(a, nd, sa);
    nb__broadcast_strides(b, nd, sb);
    ew_layout L;
    ew_coalesce(&L, nd, shape, sa, sb);
    ew_run(ewop, 0, out->data, a->data, b->data, &L, 0.0f);
    nb__record(ctx, opcode, out, in, 2);
    return out;
}

nb_tensor *nb_add(nb_ctx *ctx, nb_tensor *a, nb_tensor *b) { return binary(ctx, NB__OP_ADD, EW_ADD, "add", a, b); }
nb_tensor *nb_sub(nb_ctx *ctx, nb_tensor *a, nb_tensor *b) { return binary(ctx, NB__OP_SUB, EW_SUB, "sub", a, b); }
nb_tensor *nb_mul(nb_ctx *ctx, nb_tensor *a, nb_tensor *b) { return binary(ctx, NB__OP_MUL, EW_MUL, "mul", a, b); }
nb_tensor *nb_div(nb_ctx *ctx, nb_tensor *a, nb_tensor *b) { return binary(ctx, NB__OP_DIV, EW_DIV, "div", a, b); }

/* t->grad += sum_to_t( op(a, b) ), where a and b are read with strides sa, sb
 * over out's shape. t's shape broadcasts to out's; when their sizes match no
 * reduction is needed and the loop accumulates in place. */
static nb_status grad_into(nb_ctx *ctx, nb_tensor *t, const nb_tensor *out, int ewop, float s,
                           const float *a, const int64_t *sa, const float *b, const int64_t *sb)
{
    ew_layout L;
    ew_coalesce(&L, out->ndim, out->shape, sa, sb);
    int64_t n = nb_tensor_numel(out);
    if (nb_tensor_numel(t) == n) {
        ew_run(ewop, 1, t->grad, a, b, &L, s);
        return NB_OK;
    }
    float *tmp = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)n * sizeof(float));
    if (!tmp) return nb__fail(NB_ERR_NOMEM, "%s backward: out of memory", nb__op_names[out->node->op]);
    ew_run(ewop, 0, tmp, a, b, &L, s);
    nb__sum_to(t->grad, t->ndim, t->shape, tmp, out->ndim, out->shape);
    return NB_OK;
}

/* d(a ± b): the output gradient summed back to each input's shape. */
static nb_status bw_addsub(nb_ctx *ctx, nb__node *n, float sign_b)
{
    nb_tensor *out = n->out;
    int64_t cs[NB_MAX_DIMS], zero[NB_MAX_DIMS] = {0};
    nb__contig_strides(out->ndim, out->shape, cs);
    for (int k = 0; k < 2; k++) {
        if (!n->in[k]->requires_grad) continue;
        nb_status st = grad_into(ctx, n->in[k], out, EW_SCALE, k ? sign_b : 1.0f, out->grad, cs, out->grad, zero);
        if (st) return st;
    }
    return NB_OK;
}

nb_status nb__bw_add(nb_ctx *ctx, nb__node *n) { return bw_addsub(ctx, n, 1.0f); }
nb_status nb__bw_sub(nb_ctx *ctx, nb__node *n) { return bw_addsub(ctx, n, -1.0f); }

nb_status nb__bw_mul(nb_ctx *ctx, nb__node *n)
{
    nb_tensor *out = n->out;
    int64_t cs[NB_MAX_DIMS], so[NB_MAX_DIMS];
    nb__contig_strides(out->ndim, out->shape, cs);
    for (int k = 0; k < 2; k++) {
        if (!n->in[k]->requires_grad) continue;
        nb_tensor *other = n->in[1 - k];
        nb__broadcast_strides(other, out->ndim, so);
        nb_status st = grad_into(ctx, n->in[k], out, EW_MUL, 0.0f, out->grad, cs, other->data, so);
        if (st) return st;
    }
    return NB_OK;
}

/* out = a / b: da = g / b, db = -g * a / b^2 = -(g * out) / b. */
nb_status nb__bw_div(nb_ctx *ctx, nb__node *n)
{
    nb_tensor *out = n->out, *a = n->in[0], *b = n->in[1];
    int64_t cs[NB_MAX_DIMS], sbs[NB_MAX_DIMS];
    nb__contig_strides(out->ndim, out->shape, cs);
    nb__broadcast_strides(b, out->ndim, sbs);
    if (a->requires_grad) {
        nb_status st = grad_into(ctx, a, out, EW_DIV, 0.0f, out->grad, cs, b->data, sbs);
        if (st) return st;
    }
    if (b->requires_grad) {
        int64_t m = nb_tensor_numel(out);
        float *go = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)m * sizeof(float));
        if (!go) return nb__fail(NB_ERR_NOMEM, "div backward: out of memory");
        ew_layout F = {.nd = 1, .shape = {m}, .sa = {1}, .sb = {1}};
        ew_run(EW_MUL, 0, go, out->grad, out->data, &F, 0.0f);
        nb_status st = grad_into(ctx, b, out, EW_NEGDIV, 0.0f, go, cs, b->data, sbs);
        if (st) return st;
    }
    return NB_OK;
}

/* ---- unary ops ------------------------------------------------------------- */

static nb_tensor *unary(nb_ctx *ctx, int ewop, const char *name, nb_tensor *x, float s)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "%s: context is NULL", name);
    nb_tensor *out = nb_tensor_new(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    int64_t zero[NB_MAX_DIMS] = {0};
    ew_layout L;
    ew_coalesce(&L, x->ndim, x->shape, x->stride, zero);
    ew_run(ewop, 0, out->data, x->data, x->data, &L, s);
    return out;
}

/* A unary op, recorded with its scalar in f[0]. */
static nb_tensor *unary_rec(nb_ctx *ctx, int opcode, int ewop, const char *name, nb_tensor *x, float s)
{
    nb_tensor *out = unary(ctx, ewop, name, x, s);
    if (!out) return NULL;
    nb__node *n = nb__record(ctx, opcode, out, &x, 1);
    if (n) n->f[0] = s;
    return out;
}

nb_tensor *nb_scale(nb_ctx *ctx, nb_tensor *x, float s) { return unary_rec(ctx, NB__OP_SCALE, EW_SCALE, "scale", x, s); }
nb_tensor *nb_add_scalar(nb_ctx *ctx, nb_tensor *x, float s) { return unary_rec(ctx, NB__OP_ADD_SCALAR, EW_ADDS, "add_scalar", x, s); }
nb_tensor *nb_exp(nb_ctx *ctx, nb_tensor *x) { return unary_rec(ctx, NB__OP_EXP, EW_EXP, "exp", x, 0.0f); }
nb_tensor *nb_log(nb_ctx *ctx, nb_tensor *x) { return unary_rec(ctx, NB__OP_LOG, EW_LOG, "log", x, 0.0f); }
nb_tensor *nb_sqrt(nb_ctx *ctx, nb_tensor *x) { return unary_rec(ctx, NB__OP_SQRT, EW_SQRT, "sqrt", x, 0.0f); }

/* torch computes x**2, x**3, x**0.5 and x**-1 with dedicated kernels. */
nb_tensor *nb_pow(nb_ctx *ctx, nb_tensor *x, float p)
{
    int op = p == 2.0f ? EW_SQR : p == 3.0f ? EW_CUBE : p == 0.5f ? EW_SQRT : p == -1.0f ? EW_RECIP
           : p == 1.0f ? EW_SCALE : EW_POW;
    return unary_rec(ctx, NB__OP_POW, op, "pow", x, op == EW_SCALE ? 1.0f : p);
}

/* in->grad += op(out->grad, v) with v contiguous over the same shape. */
static void grad_flat(nb__node *n, int ewop, const float *v, float s)
{
    int64_t m = nb_tensor_numel(n->out);
    ew_layout F = {.nd = 1, .shape = {m}, .sa = {1}, .sb = {1}};
    ew_run(ewop, 1, n->in[0]->grad, n->out->grad, v, &F, s);
}

/* in->grad += op(out->grad, x) with x read through its strides. */
static void grad_x(nb__node *n, int ewop, float s)
{
    nb_tensor *x = n->in[0];
    int64_t cs[NB_MAX_DIMS];
    nb__contig_strides(x->ndim, x->shape, cs);
    ew_layout L;
    ew_coalesce(&L, x->ndim, x->shape, cs, x->stride);
    ew_run(ewop, 1, x->grad, n->out->grad, x->data, &L, s);
}

nb_status nb__bw_scale(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    grad_flat(n, EW_SCALE, n->out->grad, n->f[0]);
    return NB_OK;
}

nb_status nb__bw_add_scalar(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    grad_flat(n, EW_SCALE, n->out->grad, 1.0f);
    return NB_OK;
}

nb_status nb__bw_exp(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    grad_flat(n, EW_MUL, n->out->data, 0.0f);
    return NB_OK;
}

nb_status nb__bw_log(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    grad_x(n, EW_DIV, 0.0f);
    return NB_OK;
}

/* torch: grad / (2 * result). */
nb_status nb__bw_sqrt(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    grad_flat(n, EW_SQRTGRAD, n->out->data, 0.0f);
    return NB_OK;
}

/* torch: p * x ** (p - 1), and exactly zero when p == 0. */
nb_status nb__bw_pow(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    float p = n->f[0];
    if (p == 0.0f) return NB_OK;
    if (p == 1.0f) grad_flat(n, EW_SCALE, n->out->grad, 1.0f);
    else if (p == 2.0f) grad_x(n, EW_TWOMUL, 0.0f);
    else grad_x(n, EW_POWGRAD, p);
    return NB_OK;
}
