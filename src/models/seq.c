/* Recurrent models of the zoo: the sequence classifier "lstm" (Fashion-MNIST
 * rows, the adding problem) and the character language model "charlm", with
 * their glue (reshape to a sequence, take the last step) and the charlm's
 * evaluation, sampling and files. nabla/seq.h documents them. */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define SEQ_MAX_SIZE (1 << 24)

int nb_rnn_mode_from_name(const char *name)
{
    static const char *const names[] = {"rnn", "relu", "lstm", "gru"};
    for (int k = 0; k < 4; k++)
        if (name && !strcmp(name, names[k])) return k;
    return -1;
}

const char *nb_rnn_mode_name(nb_rnn_mode mode)
{
    static const char *const names[] = {"rnn", "relu", "lstm", "gru"};
    return mode >= NB_RNN_TANH && mode <= NB_RNN_GRU ? names[mode] : NULL;
}

/* Parse "a,b,...,cell": nsizes positive integers then a cell name. */
static nb_status parse_config(const char *model, const char *config, const char *example, int *v, int nsizes,
                              nb_rnn_mode *mode)
{
    const char *p = config;
    for (int k = 0; k < nsizes; k++) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x <= 0 || x > SEQ_MAX_SIZE || *end != ',')
            return nb__fail(NB_ERR_ARG, "%s: config \"%s\" must be like %s (positive sizes, then rnn, relu, lstm or gru)",
                            model, config, example);
        v[k] = (int)x;
        p = end + 1;
    }
    int m = nb_rnn_mode_from_name(p);
    if (m < 0)
        return nb__fail(NB_ERR_ARG, "%s: config \"%s\": unknown cell '%s' (rnn, relu, lstm or gru)", model, config, p);
    *mode = (nb_rnn_mode)m;
    return NB_OK;
}

static void no_describe(const nb_module *m, char *buf, size_t size)
{
    (void)m;
    if (size) buf[0] = 0;
}

/* The recurrent child's forward: through its vtable when no state is asked
 * for, so that tools that watch module calls (nabla summary) see it. */
static nb_tensor *rnn_child(nb_module *rnn, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state)
{
    return state ? nb_rnn_forward(rnn, ctx, x, state) : rnn->vt->forward(rnn, ctx, x);
}

/* ---- the sequence classifier ------------------------------------------------
 * i[0] T, i[1] I; children rnn, fc. */
static nb_tensor *classifier_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state)
{
    if (!x) return NULL;
    nb_tensor *seq = nb_reshape(ctx, x, 3, (int64_t[]){-1, m->i[0], m->i[1]});
    nb_tensor *y = rnn_child(m->children[0], ctx, seq, state);        /* (N,T,H) */
    if (!y) return NULL;
    /* y[:, -1] */
    nb_tensor *last = nb_reshape(ctx, nb_slice(ctx, y, 1, -1, y->shape[1], 1), 2, (int64_t[]){y->shape[0], y->shape[2]});
    nb_module *fc = m->children[1];
    return fc->vt->forward(fc, ctx, last);
}

static nb_tensor *classifier_vt_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    return classifier_forward(m, ctx, x, NULL);
}

static const nb_module_vt classifier_vt = {"SeqClassifier", classifier_vt_forward, no_describe, NULL};

/* "T,I,H,C,cell" */
nb_status nb__build_seq_classifier(nb_model *m, const char *config, nb_rng *rng)
{
    int v[4];
    nb_rnn_mode mode = NB_RNN_LSTM;
    nb_status s = parse_config("lstm", config, "28,28,128,10,lstm", v, 4, &mode);
    if (s) return s;
    nb_module *root = nb_module_new(m, &classifier_vt);
    if (!root) return NB_ERR_NOMEM;
    m->root = root;
    root->i[0] = v[0];
    root->i[1] = v[1];
    nb_rnn_opts o = {.mode = mode, .input_size = v[1], .hidden_size = v[2], .batch_first = 1};
    s = nb_module_add_child(root, "rnn", nb_nn_rnn(m, rng, &o));
    if (!s) s = nb_module_add_child(root, "fc", nb_nn_linear(m, rng, v[2], v[3], 1));
    return s;
}

/* ---- the character language model -------------------------------------------
 * children embed, rnn, fc. */
static nb_tensor *charlm_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state)
{
    nb_module *embed = m->children[0], *fc = m->children[2];
    nb_tensor *e = embed->vt->forward(embed, ctx, x);                 /* (N,T,E) */
    nb_tensor *y = rnn_child(m->children[1], ctx, e, state);          /* (N,T,H) */
    return y ? fc->vt->forward(fc, ctx, y) : NULL;                    /* (N,T,V) */
}

static nb_tensor *charlm_vt_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    return charlm_forward(m, ctx, x, NULL);
}

static const nb_module_vt charlm_vt = {"CharLM", charlm_vt_forward, no_describe, NULL};

/* "V,E,H,L,cell" */
nb_status nb__build_charlm(nb_model *m, const char *config, nb_rng *rng)
{
    int v[4];
    nb_rnn_mode mode = NB_RNN_LSTM;
    nb_status s = parse_config("charlm", config, "2585,64,256,2,lstm", v, 4, &mode);
    if (s) return s;
    nb_module *root = nb_module_new(m, &charlm_vt);
    if (!root) return NB_ERR_NOMEM;
    m->root = root;
    nb_rnn_opts o = {.mode = mode, .input_size = v[1], .hidden_size = v[2], .num_layers = v[3], .batch_first = 1};
    s = nb_module_add_child(root, "embed", nb_nn_embedding(m, rng, v[0], v[1]));
    if (!s) s = nb_module_add_child(root, "rnn", nb_nn_rnn(m, rng, &o));
    if (!s) s = nb_module_add_child(root, "fc", nb_nn_linear(m, rng, v[2], v[0], 1));
    return s;
}

static int is_charlm(const nb_model *m) { return m && m->root && m->root->vt == &charlm_vt; }

/* V: the rows of the embedding table. */
static int64_t charlm_vocab_size(nb_model *m) { return nb_model_param(m, m->root->children[0]->params[0])->shape[0]; }

nb_tensor *nb_seq_forward(nb_model *m, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state)
{
    if (!x) return NULL;
    if (m && m->root && m->root->vt == &classifier_vt) return classifier_forward(m->root, ctx, x, state);
    if (is_charlm(m)) return charlm_forward(m->root, ctx, x, state);
    return nb__op_fail(ctx, NB_ERR_ARG, "seq_forward: model '%s' is not a recurrent model of the zoo (lstm, charlm)",
                       m ? m->name : "(null)");
}

/* ---- charlm: evaluation ---------------------------------------------------------- */

nb_status nb_charlm_bits_per_char(nb_model *m, nb_ctx *ctx, const int32_t *ids, int64_t len, int seq, int batch,
                                  double *bpc)
{
    if (!is_charlm(m) || !ctx || !ids || !bpc || seq < 1 || batch < 1)
        return nb__fail(NB_ERR_ARG, "charlm_bits_per_char: needs a charlm model, a context, ids, seq >= 1, batch >= 1");
    if (len < 2) return nb__fail(NB_ERR_ARG, "charlm_bits_per_char: needs at least 2 tokens (got %lld)", (long long)len);
    if (seq > len - 1) seq = (int)(len - 1);
    int64_t windows = (len - 1) / seq;
    int was_training = m->training, grad = nb_set_grad_enabled(ctx, 0);
    nb_model_train(m, 0);
    double nats = 0;
    nb_status s = NB_OK;
    for (int64_t w0 = 0; w0 < windows && !s; w0 += batch) {
        int n = (int)(windows - w0 < batch ? windows - w0 : batch);
        nb_ctx_reset(ctx);
        nb_tensor *x = nb_tensor_new(ctx, 2, (int64_t[]){n, seq});
        int32_t *y = x ? nb_arena_alloc(nb_ctx_arena(ctx), sizeof *y * (size_t)n * seq) : NULL;
        if (!y) {
            s = nb__fail(NB_ERR_NOMEM, "charlm_bits_per_char: out of memory");
            break;
        }
        for (int b = 0; b < n; b++) {
            const int32_t *src = ids + (w0 + b) * seq;
            for (int t = 0; t < seq; t++) {
                x->data[(int64_t)b * seq + t] = (float)src[t];
                y[(int64_t)b * seq + t] = src[t + 1];
            }
        }
        nb_tensor *logits = charlm_forward(m->root, ctx, x, NULL);
        nb_tensor *flat = logits ? nb_reshape(ctx, logits, 2, (int64_t[]){-1, logits->shape[2]}) : NULL;
        nb_tensor *loss = nb_cross_entropy(ctx, flat, y, NULL, -100, NB_REDUCTION_SUM);
        if (!loss) s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_ARG;
        else nats += nb_tensor_item(loss);
    }
    nb_ctx_reset(ctx);
    nb_model_train(m, was_training);
    nb_set_grad_enabled(ctx, grad);
    if (!s) *bpc = nats / (double)(windows * seq) / log(2.0);
    return s;
}

/* ---- charlm: sampling ------------------------------------------------------------- */

/* A state tensor's values copied out of the arena (it is reset every step). */
typedef struct {
    float  *h, *c;
    int64_t shape[3];
    int     has_c;
} saved_state;

static nb_status keep_state(const nb_rnn_state *st, saved_state *k)
{
    int64_t n = nb_tensor_numel(st->hn);
    if (!k->h) {
        k->h = NB_MALLOC(sizeof(float) * (size_t)n);
        k->c = st->cn ? NB_MALLOC(sizeof(float) * (size_t)n) : NULL;
        if (!k->h || (st->cn && !k->c)) return nb__fail(NB_ERR_NOMEM, "charlm_sample: out of memory");
        memcpy(k->shape, st->hn->shape, sizeof k->shape);
        k->has_c = st->cn != NULL;
    }
    nb_tensor_copy_out(st->hn, k->h);
    if (k->has_c) nb_tensor_copy_out(st->cn, k->c);
    return NB_OK;
}

/* Draw from softmax(logits / temperature) (V values). */
static int32_t draw(nb_rng *rng, const float *logits, int V, float temperature, double *p)
{
    double mx = -INFINITY, sum = 0;
    for (int k = 0; k < V; k++) mx = fmax(mx, logits[k] / temperature);
    for (int k = 0; k < V; k++) sum += p[k] = exp(logits[k] / temperature - mx);
    double u = (double)nb_rng_uniform(rng) * sum;
    for (int k = 0; k < V; k++) {
        u -= p[k];
        if (u < 0) return k;
    }
    return V - 1; /* rounding left u at the end */
}

nb_status nb_charlm_sample(nb_model *m, nb_ctx *ctx, nb_rng *rng, const int32_t *prime, int n_prime, int length,
                           float temperature, int32_t *out)
{
    if (!is_charlm(m) || !ctx || !rng || !prime || n_prime < 1 || length < 0 || (length && !out))
        return nb__fail(NB_ERR_ARG, "charlm_sample: needs a charlm model, a context, a generator, a prime of >= 1 ids");
    if (!(temperature > 0) || !isfinite(temperature))
        return nb__fail(NB_ERR_ARG, "charlm_sample: temperature must be > 0 (got %g)", (double)temperature);
    int V = (int)charlm_vocab_size(m);
    for (int k = 0; k < n_prime; k++)
        if (prime[k] < 0 || prime[k] >= V)
            return nb__fail(NB_ERR_ARG, "charlm_sample: prime id %d is outside the vocabulary [0, %d)", prime[k], V);
    double *p = NB_MALLOC(sizeof *p * (size_t)V);
    float *logits = NB_MALLOC(sizeof *logits * (size_t)V);
    saved_state k = {0};
    if (!p || !logits) {
        NB_FREE(p);
        NB_FREE(logits);
        return nb__fail(NB_ERR_NOMEM, "charlm_sample: out of memory");
    }
    int was_training = m->training, grad = nb_set_grad_enabled(ctx, 0);
    nb_model_train(m, 0);
    nb_status s = NB_OK;
    /* step 0 feeds the whole prime, each later step the last drawn id */
    for (int i = 0; i <= length && !s; i++) {
        nb_ctx_reset(ctx);
        int n = i ? 1 : n_prime;
        nb_tensor *x = nb_tensor_new(ctx, 2, (int64_t[]){1, n});
        nb_rnn_state st = {0};
        if (x && k.h) {
            st.h0 = nb_tensor_from(ctx, 3, k.shape, k.h);
            if (k.has_c) st.c0 = nb_tensor_from(ctx, 3, k.shape, k.c);
        }
        if (x)
            for (int t = 0; t < n; t++) x->data[t] = (float)(i ? out[i - 1] : prime[t]);
        nb_tensor *y = charlm_forward(m->root, ctx, x, &st);
        if (!y) {
            s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_NOMEM;
            break;
        }
        if (i == length) break; /* the state after the last id is not needed */
        nb_tensor *last = nb_slice(ctx, y, 1, -1, y->shape[1], 1);
        if (!last) {
            s = nb_ctx_status(ctx);
            break;
        }
        nb_tensor_copy_out(last, logits);
        s = keep_state(&st, &k);
        if (!s) out[i] = draw(rng, logits, V, temperature, p);
    }
    nb_ctx_reset(ctx);
    nb_model_train(m, was_training);
    nb_set_grad_enabled(ctx, grad);
    NB_FREE(k.h);
    NB_FREE(k.c);
    NB_FREE(p);
    NB_FREE(logits);
    return s;
}

/* ---- charlm: files ------------------------------------------------------------------ */

nb_status nb_charlm_save(const nb_model *m, const uint32_t *vocab, int nvocab, const char *path)
{
    if (!is_charlm(m) || !vocab || nvocab < 1 || !path) return nb__fail(NB_ERR_ARG, "charlm_save: needs a charlm model, a vocabulary and a path");
    char *text = NB_MALLOC((size_t)nvocab * 4 + 1);
    nb_st_entry *e = NB_MALLOC(sizeof *e * (size_t)m->nparams);
    if (!text || !e) {
        NB_FREE(text);
        NB_FREE(e);
        return nb__fail(NB_ERR_NOMEM, "charlm_save: out of memory");
    }
    size_t len = 0;
    for (int k = 0; k < nvocab; k++) len += (size_t)nb_utf8_encode(vocab[k], text + len);
    text[len] = 0;
    for (int i = 0; i < m->nparams; i++)
        e[i] = (nb_st_entry){m->params[i].name, m->params[i].t.ndim, m->params[i].t.shape, m->params[i].t.data};
    const char *meta[] = {"model", m->name, "config", m->config, "format", "nabla " NB_VERSION, "vocab", text};
    nb_status s = nb_safetensors_save(path, e, m->nparams, NB_ST_F32, meta, 4);
    NB_FREE(e);
    NB_FREE(text);
    return s;
}

nb_status nb_charlm_load(const char *path, nb_model **m, uint32_t **vocab, int *nvocab)
{
    if (!path || !m || !vocab || !nvocab) return nb__fail(NB_ERR_ARG, "charlm_load: NULL argument");
    *m = NULL;
    *vocab = NULL;
    nb_safetensors *h = NULL;
    nb_status s = nb_safetensors_load_header(path, &h);
    if (s) return s;
    const char *text = nb_safetensors_meta(h, "vocab"), *name = nb_safetensors_meta(h, "model");
    uint32_t *cps = NULL;
    int64_t n = 0;
    if (!name || strcmp(name, "charlm") || !text)
        s = nb__fail(NB_ERR_FORMAT, "%s: not a charlm file (no \"vocab\" in its metadata; train one with nabla textgen train)", path);
    else s = nb_utf8_decode(text, strlen(text), &cps, &n);
    nb_safetensors_free(h);
    if (!s) s = nb_model_load_file(path, m);
    if (!s && (!is_charlm(*m) || charlm_vocab_size(*m) != n))
        s = nb__fail(NB_ERR_FORMAT, "%s: the vocabulary (%lld characters) does not match the model", path, (long long)n);
    if (s) {
        nb_model_free(*m);
        *m = NULL;
        NB_FREE(cps);
        return s;
    }
    *vocab = cps;
    *nvocab = (int)n;
    return NB_OK;
}
