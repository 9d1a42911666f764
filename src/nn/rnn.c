/* torch.nn.RNN, LSTM and GRU (multi-layer, batch_first, bidirectional,
 * dropout between layers) on the fused sequence op of src/ops/rnn_cell.c,
 * and torch.nn.Embedding. */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>

/* i[]: the layer's settings; f[0] dropout. */
enum { R_MODE, R_INPUT, R_HIDDEN, R_LAYERS, R_BIAS, R_BATCH_FIRST, R_BIDIR, R_PARAM0 };

static int gates(int mode) { return mode == NB_RNN_LSTM ? 4 : mode == NB_RNN_GRU ? 3 : 1; }

static void rnn_describe(const nb_module *m, char *buf, size_t size)
{
    /* torch's extra_repr: only what differs from the defaults */
    int n = snprintf(buf, size, "%lld, %lld", (long long)m->i[R_INPUT], (long long)m->i[R_HIDDEN]);
    if (m->i[R_LAYERS] != 1 && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - n, ", num_layers=%lld", (long long)m->i[R_LAYERS]);
    if (!m->i[R_BIAS] && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - n, ", bias=False");
    if (m->i[R_BATCH_FIRST] && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - n, ", batch_first=True");
    if (m->f[0] != 0 && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - n, ", dropout=%g", (double)m->f[0]);
    if (m->i[R_BIDIR] && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - n, ", bidirectional=True");
    if (m->i[R_MODE] == NB_RNN_RELU && n >= 0 && (size_t)n < size) snprintf(buf + n, size - n, ", nonlinearity='relu'");
}

/* MACs per element of the output (T,N,D*H): every layer's products,
 * G*(I_l + H) per hidden unit and direction. No spatial footprint. */
static int rnn_geometry(const nb_module *m, nb_layer_geometry *g)
{
    int64_t D = m->i[R_BIDIR] ? 2 : 1, H = m->i[R_HIDDEN], macs = 0;
    for (int64_t l = 0; l < m->i[R_LAYERS]; l++) macs += (l ? D * H : m->i[R_INPUT]) + H;
    g->macs_per_output = gates((int)m->i[R_MODE]) * macs;
    return 0;
}

static nb_tensor *rnn_vt_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x) { return nb_rnn_forward(m, ctx, x, NULL); }

static const nb_module_vt rnn_vts[] = {
    {"RNN", rnn_vt_forward, rnn_describe, rnn_geometry},
    {"RNN", rnn_vt_forward, rnn_describe, rnn_geometry},
    {"LSTM", rnn_vt_forward, rnn_describe, rnn_geometry},
    {"GRU", rnn_vt_forward, rnn_describe, rnn_geometry},
};

nb_module *nb_nn_rnn(nb_model *m, nb_rng *rng, const nb_rnn_opts *o)
{
    if (!m || !rng || !o) {
        nb__fail(NB_ERR_ARG, "RNN: model, generator or options is NULL");
        return NULL;
    }
    if ((int)o->mode < NB_RNN_TANH || o->mode > NB_RNN_GRU) {
        nb__fail(NB_ERR_ARG, "RNN: unknown mode %d", (int)o->mode);
        return NULL;
    }
    const char *kind = rnn_vts[o->mode].kind;
    int L = o->num_layers ? o->num_layers : 1, D = o->bidirectional ? 2 : 1, H = o->hidden_size;
    int G = gates(o->mode);
    if (o->input_size <= 0 || H <= 0 || L < 0 || (int64_t)G * H > INT32_MAX / 4 || o->input_size > INT32_MAX / 4) {
        nb__fail(NB_ERR_ARG, "%s: input_size=%d, hidden_size=%d and num_layers=%d must be positive", kind,
                 o->input_size, H, o->num_layers);
        return NULL;
    }
    if (!(o->dropout >= 0 && o->dropout <= 1)) {
        nb__fail(NB_ERR_ARG, "%s: dropout=%g must be in [0, 1]", kind, (double)o->dropout);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &rnn_vts[o->mode]);
    if (!mod) return NULL;
    mod->i[R_MODE] = o->mode;
    mod->i[R_INPUT] = o->input_size;
    mod->i[R_HIDDEN] = H;
    mod->i[R_LAYERS] = L;
    mod->i[R_BIAS] = !o->no_bias;
    mod->i[R_BATCH_FIRST] = o->batch_first != 0;
    mod->i[R_BIDIR] = D == 2;
    mod->f[0] = o->dropout;
    /* torch's order: per layer, per direction: w_ih, w_hh, b_ih, b_hh, each
     * U(-1/sqrt(H), 1/sqrt(H)) drawn in that order */
    float bound = 1.0f / sqrtf((float)H);
    for (int l = 0; l < L; l++) {
        for (int d = 0; d < D; d++) {
            int64_t in = l ? (int64_t)D * H : o->input_size;
            const char *sfx = d ? "_reverse" : "";
            char name[64];
            int64_t shapes[4][2] = {{(int64_t)G * H, in}, {(int64_t)G * H, H}, {(int64_t)G * H, 0}, {(int64_t)G * H, 0}};
            static const char *const base[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
            for (int k = 0; k < (o->no_bias ? 2 : 4); k++) {
                snprintf(name, sizeof name, "%s_l%d%s", base[k], l, sfx);
                int idx = nb__module_add_param(mod, name, k < 2 ? 2 : 1, shapes[k]);
                if (idx < 0) return NULL;
                if (l == 0 && d == 0 && k == 0) mod->i[R_PARAM0] = idx;
                nb_init_uniform(nb_model_param(m, idx), rng, -bound, bound);
            }
        }
    }
    return mod;
}

/* Parameter k (0 w_ih, 1 w_hh, 2 b_ih, 3 b_hh) of layer l, direction d;
 * indices are consecutive from R_PARAM0 in the constructor's order. */
static nb_tensor *param(nb_module *m, int l, int d, int k)
{
    int per = m->i[R_BIAS] ? 4 : 2, D = m->i[R_BIDIR] ? 2 : 1;
    if (k >= per) return NULL;
    return nb_model_param(m->model, (int)m->i[R_PARAM0] + (l * D + d) * per + k);
}

/* Entry k of a (L*D, N, H) state as (N, H), or NULL when there is no state. */
static nb_tensor *state_entry(nb_ctx *ctx, nb_tensor *s, int k)
{
    if (!s) return NULL;
    return nb_reshape(ctx, nb_slice(ctx, s, 0, k, k + 1, 1), 2, (int64_t[]){s->shape[1], s->shape[2]});
}

/* (L*D) tensors (N,H) stacked into (L*D, N, H). */
static nb_tensor *stack_states(nb_ctx *ctx, nb_tensor **s, int n)
{
    for (int k = 0; k < n; k++) {
        if (!s[k]) return NULL;
        s[k] = nb_reshape(ctx, s[k], 3, (int64_t[]){1, s[k]->shape[0], s[k]->shape[1]});
    }
    return nb_concat(ctx, s, n, 0);
}

static int check_state(nb_ctx *ctx, const char *kind, const char *what, const nb_tensor *s, int64_t LD, int64_t N,
                       int64_t H)
{
    char b[96];
    if (!s || (s->ndim == 3 && s->shape[0] == LD && s->shape[1] == N && s->shape[2] == H)) return 1;
    nb__op_fail(ctx, NB_ERR_SHAPE, "%s: %s must be (num_layers*directions %lld, batch %lld, hidden_size %lld), got %s",
                kind, what, (long long)LD, (long long)N, (long long)H, nb_shape_str(s, b, sizeof b));
    return 0;
}

/* The forward direction of the last layer step by step, each step's h a tape
 * tensor the caller keeps in steps[] (its gradient is dL/dh_t). */
static nb_status run_steps(nb_module *m, nb_ctx *ctx, int l, nb_tensor *seq, nb_tensor *h, nb_tensor *c,
                           nb_tensor **steps, nb_tensor **y, nb_tensor **hn, nb_tensor **cn)
{
    int mode = (int)m->i[R_MODE];
    int64_t T = seq->shape[0];
    nb_tensor **rows = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *rows * (size_t)T);
    if (!rows) {
        nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", m->vt->kind);
        return NB_ERR_NOMEM;
    }
    for (int64_t t = 0; t < T; t++) {
        nb_tensor *xt = nb_slice(ctx, seq, 0, t, t + 1, 1);
        nb_status st = nb_rnn_sequence(ctx, (nb_rnn_mode)mode, 0, xt, h, c, param(m, l, 0, 0), param(m, l, 0, 1),
                                       param(m, l, 0, 2), param(m, l, 0, 3), NULL, &h,
                                       mode == NB_RNN_LSTM ? &c : NULL);
        if (st) return st;
        steps[t] = h;
        rows[t] = nb_reshape(ctx, h, 3, (int64_t[]){1, h->shape[0], h->shape[1]});
    }
    *y = nb_concat(ctx, rows, (int)T, 0);
    *hn = h;
    *cn = c;
    return *y ? NB_OK : nb_ctx_status(ctx);
}

nb_tensor *nb_rnn_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "rnn_forward: context is NULL");
    if (!m || m->vt->describe != rnn_describe)
        return nb__op_fail(ctx, NB_ERR_ARG, "rnn_forward: %s is not an RNN, LSTM or GRU", m ? m->vt->kind : "NULL");
    const char *kind = m->vt->kind;
    int mode = (int)m->i[R_MODE], L = (int)m->i[R_LAYERS], D = m->i[R_BIDIR] ? 2 : 1;
    int64_t H = m->i[R_HIDDEN];
    char b[96];
    if (x->ndim != 3 || x->shape[2] != m->i[R_INPUT])
        return nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input must be %s with input_size %lld, got %s", kind,
                           m->i[R_BATCH_FIRST] ? "(N, T, input_size)" : "(T, N, input_size)",
                           (long long)m->i[R_INPUT], nb_shape_str(x, b, sizeof b));
    nb_tensor *seq = m->i[R_BATCH_FIRST] ? nb_transpose(ctx, x, 0, 1) : x;
    if (!seq) return NULL;
    int64_t N = seq->shape[1];
    nb_tensor *h0 = state ? state->h0 : NULL, *c0 = state ? state->c0 : NULL;
    if (c0 && mode != NB_RNN_LSTM) return nb__op_fail(ctx, NB_ERR_ARG, "%s: c0 is for LSTM only", kind);
    if (!check_state(ctx, kind, "h0", h0, (int64_t)L * D, N, H) || !check_state(ctx, kind, "c0", c0, (int64_t)L * D, N, H))
        return NULL;
    nb_tensor **hn = nb_arena_calloc(nb_ctx_arena(ctx), sizeof *hn * (size_t)(2 * L * D));
    if (!hn) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", kind);
    nb_tensor **cn = hn + L * D;
    for (int l = 0; l < L; l++) {
        nb_tensor *out[2] = {NULL, NULL};
        for (int d = 0; d < D; d++) {
            int k = l * D + d;
            nb_tensor *h = state_entry(ctx, h0, k), *c = state_entry(ctx, c0, k);
            nb_tensor **cnk = mode == NB_RNN_LSTM ? &cn[k] : NULL;
            nb_status st;
            if (state && state->steps && l == L - 1 && d == 0)
                st = run_steps(m, ctx, l, seq, h, c, state->steps, &out[d], &hn[k], &cn[k]);
            else
                st = nb_rnn_sequence(ctx, (nb_rnn_mode)mode, d, seq, h, c, param(m, l, d, 0), param(m, l, d, 1),
                                     param(m, l, d, 2), param(m, l, d, 3), &out[d], &hn[k], cnk);
            if (st) return NULL;
        }
        seq = D == 2 ? nb_concat(ctx, out, 2, 2) : out[0];
        if (l < L - 1 && m->f[0] > 0) seq = nb_dropout(ctx, seq, m->f[0], m->model->training);
    }
    nb_tensor *y = m->i[R_BATCH_FIRST] ? nb_transpose(ctx, seq, 0, 1) : seq;
    if (state) {
        state->hn = stack_states(ctx, hn, L * D);
        state->cn = mode == NB_RNN_LSTM ? stack_states(ctx, cn, L * D) : NULL;
        if (!state->hn || (mode == NB_RNN_LSTM && !state->cn)) return NULL;
    }
    return y;
}

/* ---- Embedding ------------------------------------------------------------------ */

/* i[0] num_embeddings, i[1] dim, i[2] weight index */
static nb_tensor *embedding_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    int64_t n = nb_tensor_numel(x);
    int32_t *idx = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *idx * (size_t)(n ? n : 1));
    float *v = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *v * (size_t)(n ? n : 1));
    if (!idx || !v) return nb__op_fail(ctx, NB_ERR_NOMEM, "Embedding: out of memory");
    nb_tensor_copy_out(x, v);
    for (int64_t k = 0; k < n; k++) {
        if (!(v[k] >= 0 && v[k] < (float)m->i[0] && v[k] == floorf(v[k])))
            return nb__op_fail(ctx, NB_ERR_ARG, "Embedding: index %lld is %g, not a whole number in [0, %lld)",
                               (long long)k, (double)v[k], (long long)m->i[0]);
        idx[k] = (int32_t)v[k];
    }
    return nb_embedding(ctx, nb_model_param(m->model, (int)m->i[2]), idx, x->ndim, x->shape);
}

static void embedding_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "%lld, %lld", (long long)m->i[0], (long long)m->i[1]);
}

static const nb_module_vt embedding_vt = {"Embedding", embedding_forward, embedding_describe, NULL};

nb_module *nb_nn_embedding(nb_model *m, nb_rng *rng, int num_embeddings, int dim)
{
    if (!m || !rng || num_embeddings <= 0 || dim <= 0) {
        nb__fail(NB_ERR_ARG, "Embedding: num_embeddings=%d and dim=%d must be positive (and model, generator set)",
                 num_embeddings, dim);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &embedding_vt);
    if (!mod) return NULL;
    mod->i[0] = num_embeddings;
    mod->i[1] = dim;
    int wi = nb__module_add_param(mod, "weight", 2, (int64_t[]){num_embeddings, dim});
    if (wi < 0) return NULL;
    mod->i[2] = wi;
    nb_init_normal(nb_model_param(m, wi), rng, 0.0f, 1.0f);
    return mod;
}
