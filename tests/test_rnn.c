/* Recurrent layers and Embedding: parity with torch.nn.RNN/LSTM/GRU
 * (tests/fixtures/rnn.safetensors from scripts/gen_rnn_fixtures.py: outputs,
 * final states, every parameter gradient and the input and state gradients),
 * the module's names, printing and errors, dropout between layers, the
 * `steps` probe, and the Embedding module. */
#include "test.h"
#include <stdlib.h>

#define RNN_T 5
#define RNN_N 3
#define RNN_I 4
#define RNN_H 6
#define PARITY_TOL 1e-5

/* the CASES table of scripts/gen_rnn_fixtures.py */
static const struct {
    const char *name;
    nb_rnn_mode mode;
    int layers, batch_first, bidirectional, no_bias, states;
} cases[] = {
    {"rnn_tanh", NB_RNN_TANH, 1, 0, 0, 0, 1},
    {"rnn_relu_2l_bf", NB_RNN_RELU, 2, 1, 0, 0, 0},
    {"lstm_1l", NB_RNN_LSTM, 1, 0, 0, 0, 1},
    {"lstm_2l_bf", NB_RNN_LSTM, 2, 1, 0, 0, 1},
    {"lstm_2l_bi", NB_RNN_LSTM, 2, 0, 1, 0, 1},
    {"lstm_nobias_bf_bi", NB_RNN_LSTM, 1, 1, 1, 1, 0},
    {"gru_1l_bi", NB_RNN_GRU, 1, 0, 1, 0, 1},
    {"gru_2l_bf", NB_RNN_GRU, 2, 1, 0, 0, 1},
};

static const nb_st_tensor *fx(const nb_safetensors *f, const char *c, const char *what)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", c, what);
    return nb_safetensors_find(f, key);
}

/* max |a - b| / max |b|: the error relative to the tensor's scale. */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double e = 0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)b[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / m;
        if (!(d <= e)) e = d;
    }
    return e;
}

/* An arena tensor holding fixture tensor `what` of case c. */
static nb_tensor *load(nb_ctx *ctx, const nb_safetensors *f, const char *c, const char *what)
{
    const nb_st_tensor *t = fx(f, c, what);
    return t ? nb_tensor_from(ctx, t->ndim, t->shape, t->data) : NULL;
}

/* Error of t's values (or its gradient) against fixture tensor `what`;
 * INFINITY when absent or of another size. */
static double err_of(const nb_tensor *t, const float *vals, const nb_safetensors *f, const char *c, const char *what)
{
    const nb_st_tensor *r = fx(f, c, what);
    if (!t || !vals || !r || r->numel != nb_tensor_numel(t)) return INFINITY;
    return rel_err(vals, r->data, r->numel);
}

static double contiguous_err(const nb_tensor *t, const nb_safetensors *f, const char *c, const char *what)
{
    if (!t) return INFINITY;
    int64_t n = nb_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return INFINITY;
    nb_tensor_copy_out(t, v);
    double e = err_of(t, v, f, c, what);
    free(v);
    return e;
}

static nb_tensor *dot(nb_ctx *ctx, nb_tensor *a, nb_tensor *b)
{
    return nb_sum(ctx, nb_mul(ctx, a, b), NULL, 0, 0);
}

TEST(rnn_parity_with_torch)
{
    nb_safetensors *f = NULL;
    CHECK_OK(nb_safetensors_load(nbt_fixture("rnn.safetensors"), &f));
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *c = cases[k].name;
        nb_model *m = nb_model_new("rnn", "");
        nb_rng rng;
        nb_rng_seed(&rng, 1);
        nb_rnn_opts o = {.mode = cases[k].mode, .input_size = RNN_I, .hidden_size = RNN_H,
                         .num_layers = cases[k].layers, .no_bias = cases[k].no_bias,
                         .batch_first = cases[k].batch_first, .bidirectional = cases[k].bidirectional};
        nb_module *rnn = nb_nn_rnn(m, &rng, &o);
        nb_ctx *ctx = nb_ctx_new(1);
        CHECK_MSG(rnn && ctx, "%s: %s", c, nb_last_error());
        m->root = rnn;
        /* the state_dict has exactly our names and shapes */
        int nsd = 0;
        for (int i = 0; i < f->n; i++) {
            char prefix[96];
            snprintf(prefix, sizeof prefix, "%s.param.", c);
            nsd += strncmp(f->tensors[i].name, prefix, strlen(prefix)) == 0;
        }
        CHECK_MSG(nsd == m->nparams, "%s: %d parameters, torch has %d", c, m->nparams, nsd);
        for (int i = 0; i < m->nparams; i++) {
            char key[96];
            snprintf(key, sizeof key, "param.%s", m->params[i].name);
            const nb_st_tensor *p = fx(f, c, key);
            CHECK_MSG(p && p->numel == nb_tensor_numel(&m->params[i].t), "%s: no parameter %s of that size", c, key);
            CHECK_MSG(p->ndim == m->params[i].t.ndim && !memcmp(p->shape, m->params[i].t.shape, sizeof(int64_t) * (size_t)p->ndim),
                      "%s: %s has another shape", c, key);
            memcpy(m->params[i].t.data, p->data, (size_t)p->numel * sizeof(float));
        }
        nb_model_zero_grad(m);
        nb_tensor *x = nb_requires_grad(load(ctx, f, c, "x"), 1);
        nb_rnn_state st = {0};
        if (cases[k].states) {
            st.h0 = nb_requires_grad(load(ctx, f, c, "h0"), 1);
            if (cases[k].mode == NB_RNN_LSTM) st.c0 = nb_requires_grad(load(ctx, f, c, "c0"), 1);
        }
        nb_tensor *y = nb_rnn_forward(rnn, ctx, x, &st);
        CHECK_MSG(y && st.hn, "%s: forward failed: %s", c, nb_last_error());
        nb_tensor *loss = nb_add(ctx, dot(ctx, y, load(ctx, f, c, "ry")), dot(ctx, st.hn, load(ctx, f, c, "rh")));
        if (st.cn) loss = nb_add(ctx, loss, dot(ctx, st.cn, load(ctx, f, c, "rc")));
        CHECK_OK(nb_backward(ctx, loss));
        double e;
        CHECK_MSG((e = contiguous_err(y, f, c, "y")) <= PARITY_TOL, "%s: y error %g", c, e);
        CHECK_MSG((e = contiguous_err(st.hn, f, c, "hn")) <= PARITY_TOL, "%s: hn error %g", c, e);
        if (cases[k].mode == NB_RNN_LSTM)
            CHECK_MSG((e = contiguous_err(st.cn, f, c, "cn")) <= PARITY_TOL, "%s: cn error %g", c, e);
        else
            CHECK_MSG(!st.cn, "%s: cn for a non-LSTM", c);
        for (int i = 0; i < m->nparams; i++) {
            char key[96];
            snprintf(key, sizeof key, "grad.%s", m->params[i].name);
            e = err_of(&m->params[i].t, m->params[i].t.grad, f, c, key);
            CHECK_MSG(e <= PARITY_TOL, "%s: %s error %g", c, key, e);
        }
        CHECK_MSG((e = err_of(x, x->grad, f, c, "grad_x")) <= PARITY_TOL, "%s: grad_x error %g", c, e);
        if (st.h0) CHECK_MSG((e = err_of(st.h0, st.h0->grad, f, c, "grad_h0")) <= PARITY_TOL, "%s: grad_h0 error %g", c, e);
        if (st.c0) CHECK_MSG((e = err_of(st.c0, st.c0->grad, f, c, "grad_c0")) <= PARITY_TOL, "%s: grad_c0 error %g", c, e);
        nb_ctx_free(ctx);
        nb_model_free(m);
    }
    nb_safetensors_free(f);
}

static nb_module *make_rnn(nb_model *m, nb_rnn_mode mode, int I, int H, int layers, int bf, int bi, float dropout)
{
    nb_rng rng;
    nb_rng_seed(&rng, 3);
    nb_rnn_opts o = {.mode = mode, .input_size = I, .hidden_size = H, .num_layers = layers, .batch_first = bf,
                     .bidirectional = bi, .dropout = dropout};
    nb_module *r = nb_nn_rnn(m, &rng, &o);
    if (r) m->root = r;
    return r;
}

TEST(rnn_names_print_and_init)
{
    nb_model *m = nb_model_new("lstm", "");
    nb_module *r = make_rnn(m, NB_RNN_LSTM, 28, 128, 1, 1, 0, 0);
    CHECK(r);
    char buf[256];
    nb_module_print(r, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "LSTM(28, 128, batch_first=True)\n"), "printed \"%s\"", buf);
    CHECK(m->nparams == 4 && !strcmp(m->params[0].name, "weight_ih_l0") && !strcmp(m->params[3].name, "bias_hh_l0"));
    /* torch's count: 4*128*(28+128) + 2*4*128 */
    CHECK(m->numel == 4 * 128 * (28 + 128) + 2 * 4 * 128);
    /* U(-1/sqrt(H), 1/sqrt(H)) for every parameter */
    float bound = 1.0f / sqrtf(128.0f), lo = 1, hi = -1;
    for (size_t i = 0; i < m->numel; i++) {
        lo = fminf(lo, m->data[i]);
        hi = fmaxf(hi, m->data[i]);
    }
    CHECK(lo >= -bound && hi <= bound && lo < -0.9f * bound && hi > 0.9f * bound);
    nb_model_free(m);

    m = nb_model_new("gru", "");
    nb_rng rng;
    nb_rng_seed(&rng, 1);
    nb_rnn_opts o = {.mode = NB_RNN_RELU, .input_size = 3, .hidden_size = 4, .num_layers = 2, .no_bias = 1,
                     .dropout = 0.5f, .bidirectional = 1};
    r = nb_nn_rnn(m, &rng, &o);
    CHECK(r);
    nb_module_print(r, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "RNN(3, 4, num_layers=2, bias=False, dropout=0.5, bidirectional=True, nonlinearity='relu')\n"),
              "printed \"%s\"", buf);
    static const char *const names[] = {"weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse",
                                        "weight_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1",
                                        "weight_ih_l1_reverse", "weight_hh_l1_reverse"};
    CHECK(m->nparams == 8);
    for (int i = 0; i < 8; i++) CHECK_MSG(!strcmp(m->params[i].name, names[i]), "param %d is %s", i, m->params[i].name);
    CHECK(m->params[4].t.shape[0] == 4 && m->params[4].t.shape[1] == 8);   /* layer 1 sees both directions */
    nb_model_free(m);
}

TEST(rnn_summary_counts_params)
{
    nb_model *m = nb_model_new("lstm", "");
    CHECK(make_rnn(m, NB_RNN_LSTM, 28, 128, 1, 1, 0, 0));
    nb_layer_info *rows = NULL;
    int n = 0;
    CHECK_OK(nb_model_summary(m, 2, (int64_t[]){28, 28}, &rows, &n));
    CHECK(n == 1 && !strcmp(rows[0].kind, "LSTM") && rows[0].params == (int64_t)m->numel);
    CHECK(rows[0].ndim == 3 && rows[0].out_shape[1] == 28 && rows[0].out_shape[2] == 128);
    CHECK(rows[0].macs == 28 * 4 * 128 * (28 + 128));
    free(rows);
    nb_model_free(m);
}

TEST(rnn_bad_inputs)
{
    nb_model *m = nb_model_new("lstm", "");
    nb_module *r = make_rnn(m, NB_RNN_LSTM, 4, 3, 2, 0, 0, 0);
    nb_ctx *ctx = nb_ctx_new(1);
    CHECK(r && ctx);
    nb_tensor *bad = nb_tensor_zeros(ctx, NB_SHAPE(5, 2, 7));
    CHECK(!nb_rnn_forward(r, ctx, bad, NULL));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_SHAPE, "input_size 4");
    nb_ctx_reset(ctx);
    nb_tensor *x = nb_tensor_zeros(ctx, NB_SHAPE(5, 2, 4));
    nb_rnn_state st = {.h0 = nb_tensor_zeros(ctx, NB_SHAPE(1, 2, 3))};
    CHECK(!nb_rnn_forward(r, ctx, x, &st));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_SHAPE, "h0 must be (num_layers*directions 2, batch 2, hidden_size 3)");
    nb_ctx_reset(ctx);
    x = nb_tensor_zeros(ctx, NB_SHAPE(5, 2, 4));
    st.h0 = NULL;
    st.c0 = nb_tensor_zeros(ctx, NB_SHAPE(2, 3, 3));
    CHECK(!nb_rnn_forward(r, ctx, x, &st));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_SHAPE, "c0 must be");
    nb_ctx_reset(ctx);
    /* not a recurrent module; NULL input passes through quietly */
    nb_module *lin = nb_nn_linear(m, &(nb_rng){{1, 2, 3, 4}, 0, 0}, 4, 2, 1);
    x = nb_tensor_zeros(ctx, NB_SHAPE(5, 2, 4));
    CHECK(!nb_rnn_forward(lin, ctx, x, NULL));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_ARG, "not an RNN");
    nb_ctx_reset(ctx);
    CHECK(!nb_rnn_forward(r, ctx, NULL, NULL) && nb_ctx_status(ctx) == NB_OK);
    /* cells: h of the wrong size, c0 for a GRU-shaped weight */
    nb_tensor *w_ih = nb_tensor_zeros(ctx, NB_SHAPE(12, 4)), *w_hh = nb_tensor_zeros(ctx, NB_SHAPE(12, 4));
    nb_tensor *xc = nb_tensor_zeros(ctx, NB_SHAPE(2, 4)), *h = nb_tensor_zeros(ctx, NB_SHAPE(2, 5)), *ho, *co;
    CHECK_ERR(nb_lstm_cell(ctx, xc, h, NULL, w_ih, w_hh, NULL, NULL, &ho, &co), NB_ERR_SHAPE, "weight_hh must be");
    nb_ctx_reset(ctx);
    w_ih = nb_tensor_zeros(ctx, NB_SHAPE(16, 4));
    w_hh = nb_tensor_zeros(ctx, NB_SHAPE(16, 4));
    xc = nb_tensor_zeros(ctx, NB_SHAPE(2, 4));
    h = nb_tensor_zeros(ctx, NB_SHAPE(3, 4));
    CHECK_ERR(nb_lstm_cell(ctx, xc, h, NULL, w_ih, w_hh, NULL, NULL, &ho, &co), NB_ERR_SHAPE, "h0 must be (batch 2");
    CHECK(!ho && !co);
    nb_ctx_reset(ctx);
    nb_tensor *gw = nb_tensor_zeros(ctx, NB_SHAPE(9, 4)), *gh = nb_tensor_zeros(ctx, NB_SHAPE(9, 3));
    CHECK(!nb_gru_cell(ctx, nb_tensor_zeros(ctx, NB_SHAPE(2, 5)), NULL, gw, gh, NULL, NULL));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_SHAPE, "weight_ih");
    nb_ctx_reset(ctx);
    /* constructors */
    nb_rnn_opts o = {.mode = NB_RNN_GRU, .input_size = 0, .hidden_size = 3};
    CHECK(!nb_nn_rnn(m, &(nb_rng){{1, 2, 3, 4}, 0, 0}, &o));
    CHECK(strstr(nb_last_error(), "must be positive"));
    o.input_size = 2;
    o.dropout = 1.5f;
    CHECK(!nb_nn_rnn(m, &(nb_rng){{1, 2, 3, 4}, 0, 0}, &o));
    CHECK(strstr(nb_last_error(), "dropout"));
    /* embedding: index out of range, not whole */
    nb_tensor *w = nb_tensor_zeros(ctx, NB_SHAPE(5, 2));
    CHECK(!nb_embedding(ctx, w, (int32_t[]){1, 5}, 1, (int64_t[]){2}));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_ARG, "index 1 is 5, outside [0, 5)");
    nb_ctx_reset(ctx);
    nb_module *emb = nb_nn_embedding(m, &(nb_rng){{1, 2, 3, 4}, 0, 0}, 5, 2);
    CHECK(emb);
    nb_tensor *ix = nb_tensor_from(ctx, NB_SHAPE(2), (float[]){1.5f, 2});
    CHECK(!emb->vt->forward(emb, ctx, ix));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_ARG, "not a whole number");
    nb_ctx_reset(ctx);
    ix = nb_tensor_from(ctx, NB_SHAPE(2), (float[]){-1, 2});
    CHECK(!emb->vt->forward(emb, ctx, ix));
    CHECK_ERR(nb_ctx_status(ctx), NB_ERR_ARG, "index 0 is -1");
    CHECK(!nb_nn_embedding(m, &(nb_rng){{1, 2, 3, 4}, 0, 0}, 0, 2));
    nb_ctx_free(ctx);
    nb_model_free(m);
}

/* The steps probe runs the last layer step by step: the same outputs and
 * gradients as the fused path, and steps[t]->grad is dL/dh_t. */
TEST(rnn_steps_probe)
{
    for (int mode = NB_RNN_TANH; mode <= NB_RNN_GRU; mode++) {
        enum { T = 6, N = 2, I = 3, H = 4 };
        nb_model *m = nb_model_new("r", "");
        nb_module *r = make_rnn(m, (nb_rnn_mode)mode, I, H, 2, 1, 0, 0);
        nb_ctx *ctx = nb_ctx_new(5);
        CHECK(r && ctx);
        nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(N, T, I)), *rt = nb_tensor_randn(ctx, NB_SHAPE(N, H));
        float *g0 = malloc(m->numel * sizeof(float));
        float y0[N * T * H];
        CHECK(g0);
        nb_tensor *steps[T];
        for (int probe = 0; probe < 2; probe++) {
            nb_model_zero_grad(m);
            nb_rnn_state st = {.steps = probe ? steps : NULL};
            nb_tensor *y = nb_rnn_forward(r, ctx, x, &st);
            CHECK(y && y->shape[0] == N && y->shape[1] == T);
            /* loss through the last output only */
            nb_tensor *last = nb_reshape(ctx, nb_slice(ctx, y, 1, T - 1, T, 1), 2, (int64_t[]){N, H});
            CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, last, rt), NULL, 0, 0)));
            if (!probe) {
                nb_tensor_copy_out(y, y0);
                memcpy(g0, m->grad, m->numel * sizeof(float));
                continue;
            }
            float y1[N * T * H];
            nb_tensor_copy_out(y, y1);
            for (int i = 0; i < N * T * H; i++) CHECK_NEAR(y1[i], y0[i], 1e-6, 1e-7);
            for (size_t i = 0; i < m->numel; i++) CHECK_NEAR(m->grad[i], g0[i], 1e-5, 1e-7);
            for (int t = 0; t < T; t++) CHECK(steps[t] && steps[t]->grad && steps[t]->shape[1] == H);
            for (int i = 0; i < N * H; i++) CHECK_NEAR(steps[T - 1]->grad[i], rt->data[i], 1e-6, 0);
            double g_first = 0;   /* reaches back to the first step */
            for (int i = 0; i < N * H; i++) g_first += fabs(steps[0]->grad[i]);
            CHECK(g_first > 0);
        }
        free(g0);
        nb_ctx_free(ctx);
        nb_model_free(m);
    }
}

TEST(rnn_dropout_between_layers)
{
    enum { T = 4, N = 3, I = 2, H = 5 };
    nb_model *m = nb_model_new("a", ""), *m2 = nb_model_new("b", "");
    nb_module *r = make_rnn(m, NB_RNN_GRU, I, H, 2, 0, 0, 0.5f), *r2 = make_rnn(m2, NB_RNN_GRU, I, H, 2, 0, 0, 0);
    nb_ctx *ctx = nb_ctx_new(9);
    CHECK(r && r2 && ctx && m->numel == m2->numel);
    memcpy(m2->data, m->data, m->numel * sizeof(float));
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(T, N, I));
    float a[T * N * H], b[T * N * H], c[T * N * H];
    nb_model_train(m, 0);
    nb_tensor_copy_out(nb_rnn_forward(r, ctx, x, NULL), a);
    nb_tensor_copy_out(nb_rnn_forward(r2, ctx, x, NULL), b);
    CHECK(!memcmp(a, b, sizeof a));   /* eval: no dropout */
    nb_model_train(m, 1);
    nb_tensor_copy_out(nb_rnn_forward(r, ctx, x, NULL), c);
    CHECK(memcmp(a, c, sizeof a) != 0);
    nb_ctx_free(ctx);
    nb_model_free(m);
    nb_model_free(m2);
}

TEST(rnn_embedding_module)
{
    nb_model *m = nb_model_new("e", "");
    nb_rng rng;
    nb_rng_seed(&rng, 2);
    nb_module *e = nb_nn_embedding(m, &rng, 6, 3);
    nb_ctx *ctx = nb_ctx_new(1);
    CHECK(e && ctx && !strcmp(m->params[0].name, "weight"));
    char buf[64];
    nb_module_print(e, buf, sizeof buf);
    CHECK(!strcmp(buf, "Embedding(6, 3)\n"));
    nb_tensor *ix = nb_tensor_from(ctx, NB_SHAPE(2, 2), (float[]){4, 0, 4, 5});
    nb_tensor *y = e->vt->forward(e, ctx, ix);
    CHECK(y && y->ndim == 3 && y->shape[2] == 3);
    for (int j = 0; j < 3; j++) {
        CHECK(y->data[j] == m->data[4 * 3 + j] && y->data[3 + j] == m->data[j]);
        CHECK(y->data[9 + j] == m->data[5 * 3 + j]);
    }
    nb_model_zero_grad(m);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, y, NULL, 0, 0)));
    for (int j = 0; j < 3; j++) CHECK(m->grad[4 * 3 + j] == 2 && m->grad[j] == 1 && m->grad[3 + j] == 0);
    nb_ctx_free(ctx);
    nb_model_free(m);
}
