/* Recurrent layers as fused ops: one op runs one layer in one direction over
 * a whole sequence (nb_rnn_sequence), and the cells are that op over one step.
 *
 * Forward: the input projections of all T steps, X W_ih^T + b_ih (+ b_hh
 * for RNN and LSTM), are one GEMM of (T*N, I) by (I, G*H) before the
 * recurrence; each step then adds h W_hh^T (one GEMM of (N,H) by (H,G*H) for
 * all gates together) and runs the gate math in one pass over the rows. The
 * activated gates, the state before each step (and tanh(c) for LSTM) are
 * kept, all indexed by time, so backward (BPTT) runs the recurrence back with
 * one GEMM per step (dh_prev = dG W_hh) and then gets every weight gradient
 * with one GEMM over all T*N rows: dW_ih += dG^T X, dW_hh += dG^T H_prev,
 * dX += dG W_ih.
 *
 * The op's one output packs what callers need as views: rows 0..T-1 are
 * h_1..h_T in time order (also for reverse, which runs t = T-1 down to 0), and
 * for LSTM a row T holds the final cell state. */
#include "../core/internal.h"
#include "../kernels/simd.h"
#include "fastmath.h"
#include <limits.h>
#include <math.h>

enum { IN_X, IN_H0, IN_C0, IN_WIH, IN_WHH, IN_BIH, IN_BHH, IN_COUNT };

typedef struct {
    int mode, reverse;
    int T, N, I, H, G;      /* G gates (1, 4 or 3) of H columns each */
    int gs;                 /* columns per row of `gates` */
    int pos[IN_COUNT];      /* position of each input among the node's, -1 if absent */
    const float *x, *wih, *whh;
    int ldx, ldwih, ldwhh;
    float *whh_t;           /* (H, G*H): w_hh transposed once, so each step's
                               product reads a row-major B in place */
    float *gates;           /* (T,N,gs) activated gates; GRU: r, z, n, then h W_hn^T + b_hn */
    float *hprev;           /* (T,N,H) the hidden state each step started from */
    float *cprev, *tc;      /* LSTM: (T,N,H) the cell state each step started from, tanh(c') */
} seq_saved;

static int gate_count(int mode) { return mode == NB_RNN_LSTM ? 4 : mode == NB_RNN_GRU ? 3 : 1; }

static const char *mode_name(int mode)
{
    static const char *const names[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
    return names[mode];
}

/* ---- gate math (one step, N rows) --------------------------------------------
 * Plain arithmetic on exp_nonpos (fastmath.h), so each loop vectorises; the
 * clones pick AVX-512 or AVX2 at run time. Both functions are within a few
 * float ulps of 1 in absolute terms (what the gates need): tanh via
 * (1-e)/(1+e) loses relative, not absolute, accuracy near 0. NaN stays NaN. */

static inline float sigm(float v)
{
    float e = exp_nonpos(-fabsf(v)), r = 1.0f / (1.0f + e);
    return sel(v >= 0, r, e * r);
}

static inline float tanh_(float v)
{
    float e = exp_nonpos(-2.0f * fabsf(v));
    return copysignf((1.0f - e) / (1.0f + e), v);
}

/* g (N, 4H): pre-activations in, activated i, f, g, o out. */
NB_CLONES static void lstm_step(int N, int H, float *restrict g, const float *restrict cp, float *restrict cn,
                               float *restrict tc, float *restrict h)
{
    for (int b = 0; b < N; b++) {
        float *gr = g + (size_t)b * 4 * H;
        const float *cpr = cp + (size_t)b * H;
        float *cnr = cn + (size_t)b * H, *tcr = tc + (size_t)b * H, *hr = h + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float i = sigm(gr[j]), f = sigm(gr[H + j]), gg = tanh_(gr[2 * H + j]), o = sigm(gr[3 * H + j]);
            float c = f * cpr[j] + i * gg, t = tanh_(c);
            gr[j] = i;
            gr[H + j] = f;
            gr[2 * H + j] = gg;
            gr[3 * H + j] = o;
            cnr[j] = c;
            tcr[j] = t;
            hr[j] = o * t;
        }
    }
}

/* g (N, H): pre-activations in, h' out (kept in g for backward too). */
NB_CLONES static void rnn_step(int N, int H, int relu, float *restrict g, float *restrict h)
{
    int64_t n = (int64_t)N * H;
    if (relu)
        for (int64_t k = 0; k < n; k++) g[k] = sel(g[k] > 0, g[k], 0.0f);
    else
        for (int64_t k = 0; k < n; k++) g[k] = tanh_(g[k]);
    memcpy(h, g, (size_t)n * sizeof(float));
}

/* g (N, 4H): x W_ih^T + b_ih in the first 3H columns; gh (N, 3H): h W_hh^T +
 * b_hh. Out: r, z, n and h W_hn^T + b_hn in g, h' in h. */
NB_CLONES static void gru_step(int N, int H, float *restrict g, const float *restrict gh, const float *restrict hp,
                              float *restrict h)
{
    for (int b = 0; b < N; b++) {
        float *gr = g + (size_t)b * 4 * H;
        const float *ghr = gh + (size_t)b * 3 * H, *hpr = hp + (size_t)b * H;
        float *hr = h + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float r = sigm(gr[j] + ghr[j]), z = sigm(gr[H + j] + ghr[H + j]);
            float hn = ghr[2 * H + j], n = tanh_(gr[2 * H + j] + r * hn);
            gr[j] = r;
            gr[H + j] = z;
            gr[2 * H + j] = n;
            gr[3 * H + j] = hn;
            hr[j] = (1.0f - z) * n + z * hpr[j];
        }
    }
}

/* ---- forward ------------------------------------------------------------------- */

/* t's values as a row-major (rows x cols) matrix with leading dimension *ld:
 * t's own data when its layout allows, else a copy in the arena. */
static const float *as_matrix(nb_ctx *ctx, const nb_tensor *t, int64_t rows, int64_t cols, int *ld)
{
    int nd = t->ndim;
    int64_t scol = t->stride[nd - 1], srow = nd > 1 ? t->stride[nd - 2] : cols;
    int ok = (cols == 1 || scol == 1) && srow >= cols && srow <= INT_MAX;
    for (int d = nd - 3; d >= 0 && ok; d--)   /* leading dimensions merge into rows */
        ok = t->shape[d] == 1 || t->stride[d] == t->stride[d + 1] * t->shape[d + 1];
    if (ok) {
        *ld = (int)(rows == 1 ? cols : srow);
        return t->data;
    }
    float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(rows * cols) * sizeof(float));
    if (c) nb_tensor_copy_out(t, c);
    *ld = (int)cols;
    return c;
}

/* A vector's values (n floats), copied when strided; NULL for no tensor. */
static const float *as_vector(nb_ctx *ctx, const nb_tensor *t, int64_t n, int *fail)
{
    if (!t) return NULL;
    if (t->stride[t->ndim - 1] == 1 || n == 1) return t->data;
    float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)n * sizeof(float));
    if (c) nb_tensor_copy_out(t, c);
    else *fail = 1;
    return c;
}

static int has_shape(const nb_tensor *t, int nd, int64_t a, int64_t b, int64_t c)
{
    int64_t want[3] = {a, b, c};
    if (t->ndim != nd) return 0;
    for (int d = 0; d < nd; d++)
        if (t->shape[d] != want[d]) return 0;
    return 1;
}

/* Shapes: x (T,N,I), w_ih (G*H,I), w_hh (G*H,H), biases (G*H), h0 and c0
 * (N,H). NB_OK or the failure. */
static nb_status check_shapes(int mode, nb_tensor *const *in)
{
    const char *op = mode_name(mode);
    char s1[96], s2[96];
    nb_tensor *x = in[IN_X], *wih = in[IN_WIH], *whh = in[IN_WHH];
    if (x->ndim != 3)
        return nb__fail(NB_ERR_SHAPE, "%s: input must be (T, N, input_size), got %s", op, nb_shape_str(x, s1, sizeof s1));
    int64_t T = x->shape[0], N = x->shape[1], I = x->shape[2];
    if (T < 1 || N < 1 || I < 1)
        return nb__fail(NB_ERR_SHAPE, "%s: input %s has an empty dimension", op, nb_shape_str(x, s1, sizeof s1));
    if (whh->ndim != 2 || whh->shape[1] < 1 || whh->shape[0] != gate_count(mode) * whh->shape[1])
        return nb__fail(NB_ERR_SHAPE, "%s: weight_hh must be (%d*hidden_size, hidden_size), got %s", op,
                        gate_count(mode), nb_shape_str(whh, s1, sizeof s1));
    int64_t H = whh->shape[1], GH = whh->shape[0];
    if (!has_shape(wih, 2, GH, I, 0))
        return nb__fail(NB_ERR_SHAPE, "%s: weight_ih %s does not fit input size %lld and weight_hh %s", op,
                        nb_shape_str(wih, s1, sizeof s1), (long long)I, nb_shape_str(whh, s2, sizeof s2));
    static const char *const bname[2] = {"bias_ih", "bias_hh"};
    for (int k = 0; k < 2; k++) {
        nb_tensor *b = in[IN_BIH + k];
        if (b && !has_shape(b, 1, GH, 0, 0))
            return nb__fail(NB_ERR_SHAPE, "%s: %s must be (%lld), got %s", op, bname[k], (long long)GH,
                            nb_shape_str(b, s1, sizeof s1));
    }
    static const char *const sname[2] = {"h0", "c0"};
    for (int k = 0; k < 2; k++) {
        nb_tensor *h = in[IN_H0 + k];
        if (h && !has_shape(h, 2, N, H, 0))
            return nb__fail(NB_ERR_SHAPE, "%s: %s must be (batch %lld, hidden_size %lld), got %s", op, sname[k],
                            (long long)N, (long long)H, nb_shape_str(h, s1, sizeof s1));
    }
    if (in[IN_C0] && mode != NB_RNN_LSTM) return nb__fail(NB_ERR_ARG, "%s: c0 is for LSTM only", op);
    if (T * N > INT_MAX / (4 * (H > I ? H : I)))
        return nb__fail(NB_ERR_SHAPE, "%s: input %s is too large", op, nb_shape_str(x, s1, sizeof s1));
    return NB_OK;
}

/* Allocates the saved state and the views of the inputs as matrices. */
static seq_saved *seq_prepare(nb_ctx *ctx, int mode, int reverse, nb_tensor *const *in)
{
    nb_arena *a = nb_ctx_arena(ctx);
    seq_saved *s = nb_arena_alloc(a, sizeof *s);
    if (!s) return NULL;
    nb_tensor *x = in[IN_X];
    s->mode = mode;
    s->reverse = reverse != 0;
    s->T = (int)x->shape[0];
    s->N = (int)x->shape[1];
    s->I = (int)x->shape[2];
    s->H = (int)in[IN_WHH]->shape[1];
    s->G = gate_count(mode);
    s->gs = mode == NB_RNN_GRU ? 4 * s->H : s->G * s->H;
    size_t rows = (size_t)s->T * (size_t)s->N, nh = rows * (size_t)s->H;
    s->x = as_matrix(ctx, x, (int64_t)rows, s->I, &s->ldx);
    s->wih = as_matrix(ctx, in[IN_WIH], s->G * s->H, s->I, &s->ldwih);
    s->whh = as_matrix(ctx, in[IN_WHH], s->G * s->H, s->H, &s->ldwhh);
    s->whh_t = nb_arena_alloc(a, (size_t)s->G * s->H * (size_t)s->H * sizeof(float));
    if (s->whh && s->whh_t)
        for (int r = 0; r < s->G * s->H; r++)
            for (int c = 0; c < s->H; c++) s->whh_t[(size_t)c * s->G * s->H + r] = s->whh[(size_t)r * s->ldwhh + c];
    s->gates = nb_arena_alloc(a, rows * (size_t)s->gs * sizeof(float));
    s->hprev = nb_arena_alloc(a, nh * sizeof(float));
    s->cprev = mode == NB_RNN_LSTM ? nb_arena_alloc(a, nh * sizeof(float)) : NULL;
    s->tc = mode == NB_RNN_LSTM ? nb_arena_alloc(a, nh * sizeof(float)) : NULL;
    if (!s->x || !s->wih || !s->whh || !s->whh_t || !s->gates || !s->hprev || (mode == NB_RNN_LSTM && (!s->cprev || !s->tc)))
        return NULL;
    return s;
}

/* Every row of m (rows x cols, ld) = b1 (+ b2); b1, b2 may be NULL (zeros). */
static void fill_bias(float *m, int rows, int cols, int ld, const float *b1, const float *b2)
{
    for (int r = 0; r < rows; r++) {
        float *mr = m + (size_t)r * ld;
        for (int j = 0; j < cols; j++) mr[j] = (b1 ? b1[j] : 0.0f) + (b2 ? b2[j] : 0.0f);
    }
}

/* Runs the recurrence; out is (T[+1],N,H). */
static int seq_run(nb_ctx *ctx, seq_saved *s, const float *h0, const float *c0, const float *bih,
                   const float *bhh, float *out)
{
    int T = s->T, N = s->N, I = s->I, H = s->H, GH = s->G * s->H, gs = s->gs;
    size_t nh = (size_t)N * H;
    int gru = s->mode == NB_RNN_GRU;
    /* input projections of every step; GRU keeps b_hh for its own product */
    fill_bias(s->gates, T * N, GH, gs, bih, gru ? NULL : bhh);
    nb_gemm(0, 1, T * N, GH, I, 1.0f, s->x, s->ldx, s->wih, s->ldwih, 1.0f, s->gates, gs);
    float *gh = NULL;
    if (gru && !(gh = nb_arena_alloc(nb_ctx_arena(ctx), nh * 3 * sizeof(float)))) return 0;
    for (int k = 0; k < T; k++) {
        int t = s->reverse ? T - 1 - k : k, tp = s->reverse ? t + 1 : t - 1;
        float *hp = s->hprev + (size_t)t * nh, *g = s->gates + (size_t)t * N * gs, *h = out + (size_t)t * nh;
        if (k == 0) {
            if (h0) memcpy(hp, h0, nh * sizeof(float));
            else memset(hp, 0, nh * sizeof(float));
        } else {
            memcpy(hp, out + (size_t)tp * nh, nh * sizeof(float));
        }
        if (gru) {
            fill_bias(gh, N, GH, GH, bhh, NULL);
            nb_gemm(0, 0, N, GH, H, 1.0f, hp, H, s->whh_t, GH, 1.0f, gh, GH);
            gru_step(N, H, g, gh, hp, h);
        } else {
            nb_gemm(0, 0, N, GH, H, 1.0f, hp, H, s->whh_t, GH, 1.0f, g, gs);
            if (s->mode == NB_RNN_LSTM) {
                float *cp = s->cprev + (size_t)t * nh;
                if (k == 0) {
                    if (c0) memcpy(cp, c0, nh * sizeof(float));
                    else memset(cp, 0, nh * sizeof(float));
                }
                /* c' goes where the next step starts from, the last into row T */
                float *cn = k == T - 1 ? out + (size_t)T * nh : s->cprev + (size_t)(s->reverse ? t - 1 : t + 1) * nh;
                lstm_step(N, H, g, cp, cn, s->tc + (size_t)t * nh, h);
            } else {
                rnn_step(N, H, s->mode == NB_RNN_RELU, g, h);
            }
        }
    }
    return 1;
}

/* t's n values in row-major order: its data when contiguous, else a copy. */
static const float *as_dense(nb_ctx *ctx, const nb_tensor *t, int *fail)
{
    if (!t) return NULL;
    if (nb_tensor_is_contiguous(t)) return t->data;
    float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(t) * sizeof(float));
    if (c) nb_tensor_copy_out(t, c);
    else *fail = 1;
    return c;
}

/* The fused op; in has IN_COUNT entries, the optional ones NULL. */
static nb_tensor *seq_op(nb_ctx *ctx, int mode, int reverse, nb_tensor **in)
{
    if (!in[IN_X] || !in[IN_WIH] || !in[IN_WHH]) return NULL;
    const char *op = mode_name(mode);
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "%s: context is NULL", op);
    nb_status st = check_shapes(mode, in);
    if (st) {
        nb__ctx_set_status(ctx, st);
        return NULL;
    }
    seq_saved *s = seq_prepare(ctx, mode, reverse, in);
    int fail = !s;
    const float *h0 = NULL, *c0 = NULL, *bih = NULL, *bhh = NULL;
    if (s) {
        h0 = as_dense(ctx, in[IN_H0], &fail);
        c0 = as_dense(ctx, in[IN_C0], &fail);
        bih = as_vector(ctx, in[IN_BIH], (int64_t)s->G * s->H, &fail);
        bhh = as_vector(ctx, in[IN_BHH], (int64_t)s->G * s->H, &fail);
    }
    nb_tensor *out = fail ? NULL : nb_tensor_new(ctx, 3, (int64_t[]){s->T + (mode == NB_RNN_LSTM), s->N, s->H});
    if (!out || !seq_run(ctx, s, h0, c0, bih, bhh, out->data))
        return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", op);
    nb_tensor *rec[IN_COUNT];
    int nin = 0, want = 0;
    for (int k = 0; k < IN_COUNT; k++) {
        s->pos[k] = in[k] ? nin : -1;
        if (in[k]) {
            want |= in[k]->requires_grad;
            rec[nin++] = in[k];
        }
    }
    nb__node *n = nb__record(ctx, NB__OP_RNN_SEQUENCE, out, rec, nin);
    if (want && nb_grad_enabled(ctx) && !n) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory recording the op", op);
    if (n) n->saved = s;
    return out;
}

/* ---- backward ------------------------------------------------------------------ */

/* One LSTM step back: dh (N,H) in; dc (N,H) in and out (carried to the step
 * before); the gate gradients into dg (N,4H). */
NB_CLONES static void lstm_step_back(int N, int H, const float *restrict g, const float *restrict cp,
                                    const float *restrict tc, const float *restrict dh, float *restrict dc,
                                    float *restrict dg)
{
    for (int b = 0; b < N; b++) {
        const float *gr = g + (size_t)b * 4 * H, *cpr = cp + (size_t)b * H, *tcr = tc + (size_t)b * H;
        const float *dhr = dh + (size_t)b * H;
        float *dcr = dc + (size_t)b * H, *dgr = dg + (size_t)b * 4 * H;
        for (int j = 0; j < H; j++) {
            float i = gr[j], f = gr[H + j], gg = gr[2 * H + j], o = gr[3 * H + j], t = tcr[j];
            float d = dcr[j] + dhr[j] * o * (1.0f - t * t);
            dgr[j] = d * gg * i * (1.0f - i);
            dgr[H + j] = d * cpr[j] * f * (1.0f - f);
            dgr[2 * H + j] = d * i * (1.0f - gg * gg);
            dgr[3 * H + j] = dhr[j] * t * o * (1.0f - o);
            dcr[j] = d * f;
        }
    }
}

NB_CLONES static void rnn_step_back(int64_t n, int relu, const float *restrict h, const float *restrict dh,
                                   float *restrict dg)
{
    if (relu)
        for (int64_t k = 0; k < n; k++) dg[k] = sel(h[k] > 0, dh[k], 0.0f);
    else
        for (int64_t k = 0; k < n; k++) dg[k] = dh[k] * (1.0f - h[k] * h[k]);
}

/* GRU step back: dgx (N,3H) gets d(x W_ih^T + b_ih), dgh (N,3H) d(h W_hh^T +
 * b_hh); dhp (N,H) gets the direct part dh * z of dh_prev. */
NB_CLONES static void gru_step_back(int N, int H, const float *restrict g, const float *restrict hp,
                                   const float *restrict dh, float *restrict dgx, float *restrict dgh,
                                   float *restrict dhp)
{
    for (int b = 0; b < N; b++) {
        const float *gr = g + (size_t)b * 4 * H, *hpr = hp + (size_t)b * H, *dhr = dh + (size_t)b * H;
        float *dxr = dgx + (size_t)b * 3 * H, *dhh = dgh + (size_t)b * 3 * H, *dpr = dhp + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float r = gr[j], z = gr[H + j], n = gr[2 * H + j], hn = gr[3 * H + j];
            float dn = dhr[j] * (1.0f - z) * (1.0f - n * n);
            float dz = dhr[j] * (hpr[j] - n) * z * (1.0f - z);
            float dr = dn * hn * r * (1.0f - r);
            dxr[j] = dhh[j] = dr;
            dxr[H + j] = dhh[H + j] = dz;
            dxr[2 * H + j] = dn;
            dhh[2 * H + j] = dn * r;
            dpr[j] = dhr[j] * z;
        }
    }
}

/* db += the column sums of m (rows x cols). */
NB_CLONES static void add_colsum(float *restrict db, const float *restrict m, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        const float *mr = m + (size_t)r * cols;
        for (int j = 0; j < cols; j++) db[j] += mr[j];
    }
}

static nb_tensor *input_of(nb__node *n, const seq_saved *s, int k)
{
    return s->pos[k] >= 0 ? n->in[s->pos[k]] : NULL;
}

static int needs(const nb_tensor *t) { return t && t->requires_grad; }

nb_status nb__bw_rnn_sequence(nb_ctx *ctx, nb__node *n)
{
    const seq_saved *s = n->saved;
    int T = s->T, N = s->N, I = s->I, H = s->H, GH = s->G * s->H, gs = s->gs;
    size_t nh = (size_t)N * H, rows = (size_t)T * N;
    int gru = s->mode == NB_RNN_GRU, lstm = s->mode == NB_RNN_LSTM;
    const float *gy = n->out->grad;
    nb_arena *a = nb_ctx_arena(ctx);
    /* the gate gradients of every step, by time; GRU has a second set for
     * the hidden products */
    float *dgx = nb_arena_alloc(a, rows * GH * sizeof(float));
    float *dgh = gru ? nb_arena_alloc(a, rows * GH * sizeof(float)) : dgx;
    float *dh = nb_arena_alloc(a, nh * sizeof(float)), *dhrec = nb_arena_calloc(a, nh * sizeof(float));
    float *dc = lstm ? nb_arena_alloc(a, nh * sizeof(float)) : NULL;
    if (!dgx || !dgh || !dh || !dhrec || (lstm && !dc)) return nb__fail(NB_ERR_NOMEM, "%s backward: out of memory", mode_name(s->mode));
    if (lstm) memcpy(dc, gy + (size_t)T * nh, nh * sizeof(float));
    for (int k = T - 1; k >= 0; k--) {
        int t = s->reverse ? T - 1 - k : k;
        const float *gyt = gy + (size_t)t * nh, *g = s->gates + (size_t)t * N * gs;
        for (size_t e = 0; e < nh; e++) dh[e] = gyt[e] + dhrec[e];
        float *dgt = dgx + (size_t)t * N * GH;
        if (lstm) lstm_step_back(N, H, g, s->cprev + (size_t)t * nh, s->tc + (size_t)t * nh, dh, dc, dgt);
        else if (gru) gru_step_back(N, H, g, s->hprev + (size_t)t * nh, dh, dgt, dgh + (size_t)t * N * GH, dhrec);
        else rnn_step_back((int64_t)nh, s->mode == NB_RNN_RELU, g, dh, dgt);
        /* dh_prev (+)= dG_h W_hh */
        nb_gemm(0, 0, N, H, GH, 1.0f, dgh + (size_t)t * N * GH, GH, s->whh, s->ldwhh, gru ? 1.0f : 0.0f, dhrec, H);
    }
    nb_tensor *x = input_of(n, s, IN_X), *h0 = input_of(n, s, IN_H0), *c0 = input_of(n, s, IN_C0);
    nb_tensor *wih = input_of(n, s, IN_WIH), *whh = input_of(n, s, IN_WHH);
    nb_tensor *bih = input_of(n, s, IN_BIH), *bhh = input_of(n, s, IN_BHH);
    if (needs(x)) nb_gemm(0, 0, (int)rows, I, GH, 1.0f, dgx, GH, s->wih, s->ldwih, 1.0f, x->grad, I);
    if (needs(wih)) nb_gemm(1, 0, GH, I, (int)rows, 1.0f, dgx, GH, s->x, s->ldx, 1.0f, wih->grad, I);
    if (needs(whh)) nb_gemm(1, 0, GH, H, (int)rows, 1.0f, dgh, GH, s->hprev, H, 1.0f, whh->grad, H);
    if (needs(bih)) add_colsum(bih->grad, dgx, (int)rows, GH);
    if (needs(bhh)) add_colsum(bhh->grad, dgh, (int)rows, GH);
    if (needs(h0))
        for (size_t e = 0; e < nh; e++) h0->grad[e] += dhrec[e];
    if (needs(c0))
        for (size_t e = 0; e < nh; e++) c0->grad[e] += dc[e];
    return NB_OK;
}

/* ---- public entry points ------------------------------------------------------- */

static int valid_mode(int mode) { return mode >= NB_RNN_TANH && mode <= NB_RNN_GRU; }

nb_status nb_rnn_sequence(nb_ctx *ctx, nb_rnn_mode mode, int reverse, nb_tensor *x, nb_tensor *h0, nb_tensor *c0,
                          nb_tensor *w_ih, nb_tensor *w_hh, nb_tensor *b_ih, nb_tensor *b_hh, nb_tensor **y,
                          nb_tensor **hn, nb_tensor **cn)
{
    if (y) *y = NULL;
    if (hn) *hn = NULL;
    if (cn) *cn = NULL;
    if (!ctx) return nb__fail(NB_ERR_ARG, "rnn_sequence: context is NULL");
    if (!valid_mode((int)mode)) {
        nb__op_fail(ctx, NB_ERR_ARG, "rnn_sequence: unknown mode %d", (int)mode);
        return NB_ERR_ARG;
    }
    if (!x || !w_ih || !w_hh) {
        nb_status st = nb_ctx_status(ctx);
        if (st) return st;
        nb__op_fail(ctx, NB_ERR_ARG, "%s: x, weight_ih and weight_hh are required", mode_name(mode));
        return NB_ERR_ARG;
    }
    nb_tensor *in[IN_COUNT] = {x, h0, c0, w_ih, w_hh, b_ih, b_hh};
    nb_tensor *out = seq_op(ctx, (int)mode, reverse, in);
    if (!out) return nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_ARG;
    int64_t T = x->shape[0], N = out->shape[1], H = out->shape[2];
    int lstm = mode == NB_RNN_LSTM;
    nb_tensor *seq = lstm ? nb_slice(ctx, out, 0, 0, T, 1) : out;
    int64_t last = reverse ? 0 : T - 1;
    nb_tensor *h = hn ? nb_reshape(ctx, nb_slice(ctx, out, 0, last, last + 1, 1), 2, (int64_t[]){N, H}) : NULL;
    nb_tensor *c = cn && lstm ? nb_reshape(ctx, nb_slice(ctx, out, 0, T, T + 1, 1), 2, (int64_t[]){N, H}) : NULL;
    if (!seq || (hn && !h) || (cn && lstm && !c)) return nb_ctx_status(ctx);
    if (y) *y = seq;
    if (hn) *hn = h;
    if (cn) *cn = c;
    return NB_OK;
}

/* x (N,I) as a one-step sequence (1,N,I). */
static nb_tensor *one_step(nb_ctx *ctx, nb_tensor *x, const char *op)
{
    if (!x) return NULL;
    char b[96];
    if (x->ndim != 2)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input must be (N, input_size), got %s", op, nb_shape_str(x, b, sizeof b));
    return nb_reshape(ctx, x, 3, (int64_t[]){1, x->shape[0], x->shape[1]});
}

nb_tensor *nb_rnn_cell(nb_ctx *ctx, nb_tensor *x, nb_tensor *h, nb_tensor *w_ih, nb_tensor *w_hh,
                       nb_tensor *b_ih, nb_tensor *b_hh, int relu)
{
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "rnn_cell: context is NULL");
    nb_tensor *hn = NULL;
    if (nb_rnn_sequence(ctx, relu ? NB_RNN_RELU : NB_RNN_TANH, 0, one_step(ctx, x, "rnn_cell"), h, NULL, w_ih, w_hh,
                        b_ih, b_hh, NULL, &hn, NULL))
        return NULL;
    return hn;
}

nb_status nb_lstm_cell(nb_ctx *ctx, nb_tensor *x, nb_tensor *h, nb_tensor *c, nb_tensor *w_ih, nb_tensor *w_hh,
                       nb_tensor *b_ih, nb_tensor *b_hh, nb_tensor **h_out, nb_tensor **c_out)
{
    if (h_out) *h_out = NULL;
    if (c_out) *c_out = NULL;
    if (!ctx) return nb__fail(NB_ERR_ARG, "lstm_cell: context is NULL");
    if (!h_out || !c_out) {
        nb__op_fail(ctx, NB_ERR_ARG, "lstm_cell: h_out and c_out are required");
        return NB_ERR_ARG;
    }
    return nb_rnn_sequence(ctx, NB_RNN_LSTM, 0, one_step(ctx, x, "lstm_cell"), h, c, w_ih, w_hh, b_ih, b_hh, NULL,
                           h_out, c_out);
}

nb_tensor *nb_gru_cell(nb_ctx *ctx, nb_tensor *x, nb_tensor *h, nb_tensor *w_ih, nb_tensor *w_hh,
                       nb_tensor *b_ih, nb_tensor *b_hh)
{
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "gru_cell: context is NULL");
    nb_tensor *hn = NULL;
    if (nb_rnn_sequence(ctx, NB_RNN_GRU, 0, one_step(ctx, x, "gru_cell"), h, NULL, w_ih, w_hh, b_ih, b_hh, NULL, &hn,
                        NULL))
        return NULL;
    return hn;
}
