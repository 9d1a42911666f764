/* nn and optim: Linear and SGD against PyTorch (tests/fixtures/nn_sgd.safetensors,
 * from scripts/gen_nn_fixtures.py), model files, names, init, determinism. */
#include "test.h"
#include <stdlib.h>

static nb_safetensors *fixture(void)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(nbt_fixture("nn_sgd.safetensors"), &f) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "cannot load fixture: %s", nb_last_error());
        return NULL;
    }
    return f;
}

static const nb_st_tensor *get(const nb_safetensors *f, const char *name)
{
    const nb_st_tensor *t = nb_safetensors_find(f, name);
    if (!t) nbt_fail(__FILE__, __LINE__, "fixture has no tensor %s", name);
    return t;
}

/* max_i |a_i - b_i| / (|b_i| + atol) <= rtol, reporting the worst element */
static int close_to(const char *what, const float *a, const float *b, int64_t n, double rtol, double atol)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= atol + rtol * fabs((double)b[i]))) {
            nbt_fail(__FILE__, __LINE__, "%s[%lld] = %.9g, torch %.9g", what, (long long)i, a[i], b[i]);
            return 0;
        }
    return 1;
}

static nb_tensor *fixture_tensor(nb_ctx *ctx, const nb_st_tensor *t)
{
    return nb_tensor_from(ctx, t->ndim, t->shape, t->data);
}

TEST(linear_matches_torch)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_model *m = nb_model_new("linear", "");
    m->root = nb_nn_linear(m, nb_ctx_rng(ctx), 4, 3, 1);
    CHECK(m->root);
    CHECK(!strcmp(m->params[0].name, "weight") && !strcmp(m->params[1].name, "bias"));
    memcpy(m->params[0].t.data, get(f, "linear.weight")->data, 12 * sizeof(float));
    memcpy(m->params[1].t.data, get(f, "linear.bias")->data, 3 * sizeof(float));
    nb_tensor *x = nb_requires_grad(fixture_tensor(ctx, get(f, "linear.x")), 1);
    nb_tensor *y = nb_model_forward(m, ctx, x);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, fixture_tensor(ctx, get(f, "linear.r"))), NULL, 0, 0);
    CHECK(loss);
    nb_model_zero_grad(m);
    CHECK_OK(nb_backward(ctx, loss));
    int ok = close_to("y", y->data, get(f, "linear.y")->data, 15, 1e-5, 1e-6) &&
             close_to("dx", x->grad, get(f, "linear.dx")->data, 20, 1e-5, 1e-6) &&
             close_to("dW", m->params[0].t.grad, get(f, "linear.dweight")->data, 12, 1e-5, 1e-6) &&
             close_to("db", m->params[1].t.grad, get(f, "linear.dbias")->data, 3, 1e-5, 1e-6);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_safetensors_free(f);
    CHECK(ok);
}

/* Copy "<prefix>.<param name>" tensors from the fixture into the model. */
static int set_weights(nb_model *m, const nb_safetensors *f, const char *prefix)
{
    for (int i = 0; i < m->nparams; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s.%s", prefix, m->params[i].name);
        const nb_st_tensor *t = get(f, name);
        if (!t || t->numel != nb_tensor_numel(&m->params[i].t)) return 0;
        memcpy(m->params[i].t.data, t->data, (size_t)t->numel * sizeof(float));
    }
    return 1;
}

static void sgd_case(const char *name, nb_sgd_opts opts)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", "6,8,3", nb_ctx_rng(ctx), &m));
    CHECK(set_weights(m, f, "sgd.init"));
    nb_optimizer *o = nb_sgd_new(m, opts);
    CHECK(o);
    const nb_st_tensor *data = get(f, "sgd.data"), *lab = get(f, "sgd.labels");
    int32_t labels[16];
    for (int i = 0; i < 16; i++) labels[i] = (int32_t)lab->data[i];
    char key[128];
    snprintf(key, sizeof key, "sgd.%s.losses", name);
    const nb_st_tensor *losses = get(f, key);
    CHECK(losses);
    int ok = 1;
    for (int step = 0; step < 50 && ok; step++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = fixture_tensor(ctx, data);
        nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, x), labels, NULL, -100, NB_REDUCTION_MEAN);
        if (!loss) {
            nbt_fail(__FILE__, __LINE__, "step %d: %s", step, nb_last_error());
            ok = 0;
            break;
        }
        float l = nb_tensor_item(loss);
        nb_model_zero_grad(m);
        ok = nb_backward(ctx, loss) == NB_OK && nb_optim_step(o) == NB_OK;
        char what[64];
        snprintf(what, sizeof what, "%s loss at step %d", name, step);
        ok = ok && close_to(what, &l, &losses->data[step], 1, 1e-5, 1e-6);
    }
    for (int i = 0; i < m->nparams && ok; i++) {
        snprintf(key, sizeof key, "sgd.%s.final.%s", name, m->params[i].name);
        const nb_st_tensor *t = get(f, key);
        ok = t && close_to(key, m->params[i].t.data, t->data, t->numel, 1e-5, 1e-6);
    }
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_safetensors_free(f);
    CHECK(ok);
}

TEST(sgd_plain_matches_torch) { sgd_case("plain", (nb_sgd_opts){.lr = 0.1f}); }
TEST(sgd_momentum_matches_torch) { sgd_case("momentum", (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f}); }
TEST(sgd_dampening_matches_torch)
{
    sgd_case("dampening", (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .dampening = 0.3f});
}
TEST(sgd_nesterov_matches_torch)
{
    sgd_case("nesterov", (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .nesterov = 1});
}
TEST(sgd_weight_decay_matches_torch)
{
    sgd_case("decay", (nb_sgd_opts){.lr = 0.05f, .momentum = 0.5f, .weight_decay = 0.01f});
}

TEST(sgd_rejects_bad_options_and_nonfinite_gradients)
{
    nb_rng r;
    nb_rng_seed(&r, 3);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", "4,3", &r, &m));
    CHECK(!nb_sgd_new(m, (nb_sgd_opts){.lr = 0.1f, .nesterov = 1}));
    CHECK(strstr(nb_last_error(), "nesterov"));
    CHECK(!nb_sgd_new(m, (nb_sgd_opts){.lr = -1}));
    CHECK(strstr(nb_last_error(), "invalid lr"));
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    CHECK(o);
    float before = m->data[0];
    for (size_t i = 0; i < m->numel; i++) m->grad[i] = 1;
    m->grad[m->numel - 1] = NAN;
    nb_status s = nb_optim_step(o);
    int unchanged = m->data[0] == before && o->steps == 0;
    nb_optim_free(o);
    nb_model_free(m);
    CHECK(s == NB_ERR_NONFINITE && strstr(nb_last_error(), "non-finite"));
    CHECK(unchanged);
}

TEST(mlp_names_and_sizes_follow_pytorch)
{
    nb_rng r;
    nb_rng_seed(&r, 1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", NULL, &r, &m));
    const char *want[] = {"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias", "7.weight", "7.bias"};
    CHECK(m->nparams == 8);
    size_t total = 0;
    for (int i = 0; i < 8; i++) {
        CHECK_MSG(!strcmp(m->params[i].name, want[i]), "param %d is %s", i, m->params[i].name);
        total += (size_t)nb_tensor_numel(&m->params[i].t);
        CHECK(((uintptr_t)m->params[i].t.data & 63) == 0);
    }
    CHECK(total == 247766);
    CHECK(!strcmp(m->config, "784,256,128,100,10"));
    /* torch's default Linear init: |w| <= 1/sqrt(in_features) */
    float bound = 1.0f / sqrtf(784.0f), mx = 0;
    for (int64_t i = 0; i < 256 * 784; i++) mx = fmaxf(mx, fabsf(m->params[0].t.data[i]));
    CHECK(mx <= bound && mx > 0.95f * bound);
    char buf[1024];
    nb_module_print(m->root, buf, sizeof buf);
    CHECK(strstr(buf, "(1): Linear(in_features=784, out_features=256, bias=True)"));
    CHECK(strstr(buf, "(2): ReLU()"));
    nb_model_free(m);
    CHECK(nb_model_build("mlp", "784,x", &r, &m) == NB_ERR_ARG && strstr(nb_last_error(), "config"));
    CHECK(nb_model_build("resnet999", NULL, &r, &m) == NB_ERR_NOTFOUND && strstr(nb_last_error(), "unknown model"));
}

TEST(init_functions_have_torch_scales)
{
    nb_ctx *ctx = nb_ctx_new(5);
    nb_tensor *w = nb_tensor_new(ctx, NB_SHAPE(400, 300));
    nb_rng *r = nb_ctx_rng(ctx);
    double n = 400.0 * 300.0;
    struct { int kind; double want_std; } cases[] = {
        {0, sqrt(2.0 / 700.0)},            /* xavier_normal, gain 1 */
        {1, sqrt(2.0 / 700.0)},            /* xavier_uniform: var = a^2/3 */
        {2, sqrt(2.0) / sqrt(300.0)},      /* kaiming_normal relu fan_in */
        {3, sqrt(2.0) / sqrt(400.0)},      /* kaiming_uniform relu fan_out */
    };
    for (int c = 0; c < 4; c++) {
        switch (cases[c].kind) {
        case 0: nb_init_xavier_normal(w, r, 1); break;
        case 1: nb_init_xavier_uniform(w, r, 1); break;
        case 2: nb_init_kaiming_normal(w, r, 0, NB_FAN_IN); break;
        case 3: nb_init_kaiming_uniform(w, r, 0, NB_FAN_OUT); break;
        }
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < 120000; i++) s += w->data[i], s2 += (double)w->data[i] * w->data[i];
        double sd = sqrt(s2 / n - (s / n) * (s / n));
        CHECK_NEAR(sd, cases[c].want_std, 0.02, 0);
        CHECK(fabs(s / n) < 0.01 * cases[c].want_std * 10);
    }
    CHECK_NEAR(nb_init_gain("relu", 0), sqrt(2.0), 1e-6, 0);
    CHECK_NEAR(nb_init_gain("tanh", 0), 5.0 / 3.0, 1e-6, 0);
    CHECK_NEAR(nb_init_gain("leaky_relu", 0.2f), sqrt(2.0 / 1.04), 1e-6, 0);
    nb_ctx_free(ctx);
}

TEST(model_file_round_trip_and_mismatches)
{
    nb_rng r;
    nb_rng_seed(&r, 11);
    nb_model *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(nb_model_build("mlp", "6,5,3", &r, &a));
    CHECK_OK(nb_model_build("mlp", "6,5,3", &r, &b));
    char path[512];
    snprintf(path, sizeof path, "%s/mlp.safetensors", nbt_tmpdir());
    CHECK_OK(nb_model_save(a, path));
    CHECK(memcmp(a->data, b->data, a->numel * sizeof(float)) != 0);
    CHECK_OK(nb_model_load(b, path));
    CHECK(memcmp(a->data, b->data, a->numel * sizeof(float)) == 0);
    /* the file alone rebuilds the model */
    nb_model *d = NULL;
    CHECK_OK(nb_model_load_file(path, &d));
    CHECK(!strcmp(d->name, "mlp") && !strcmp(d->config, "6,5,3"));
    CHECK(d->numel == a->numel && memcmp(a->data, d->data, a->numel * sizeof(float)) == 0);
    nb_model_free(d);
    /* a model of another shape is refused and left untouched */
    CHECK_OK(nb_model_build("mlp", "6,4,3", &r, &c));
    float keep = c->data[0];
    CHECK_ERR(nb_model_load(c, path), NB_ERR_FORMAT, "has shape [5, 6], the model needs [4, 6]");
    CHECK(c->data[0] == keep);
    nb_model_free(c);
    CHECK_OK(nb_model_build("mlp", "6,5,5,3", &r, &c));
    CHECK_ERR(nb_model_load(c, path), NB_ERR_FORMAT, "tensor '3.weight' has shape");
    nb_model_free(c);
    /* the first layer alone: its names and shapes are in the file, 3.* is extra */
    c = nb_model_new("mlp", "6,5");
    c->root = nb_nn_sequential(c);
    CHECK_OK(nb_sequential_add(c->root, nb_nn_flatten(c, 1)));
    CHECK_OK(nb_sequential_add(c->root, nb_nn_linear(c, &r, 6, 5, 1)));
    CHECK_ERR(nb_model_load(c, path), NB_ERR_FORMAT, "unexpected tensor '3.weight'");
    nb_model_free(c);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.safetensors", nbt_tmpdir());
    CHECK(nb_model_load(a, missing) == NB_ERR_NOTFOUND);
    nb_model_free(a);
    nb_model_free(b);
}

TEST(same_seed_same_training)
{
    float w[2][64];
    for (int run = 0; run < 2; run++) {
        nb_ctx *ctx = nb_ctx_new(42);
        nb_model *m = NULL;
        CHECK_OK(nb_model_build("mlp", "8,16,4", nb_ctx_rng(ctx), &m));
        nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
        for (int step = 0; step < 10; step++) {
            nb_ctx_reset(ctx);
            nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(32, 8));
            int32_t y[32];
            for (int i = 0; i < 32; i++) y[i] = (int32_t)nb_rng_below(nb_ctx_rng(ctx), 4);
            nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, x), y, NULL, -100, NB_REDUCTION_MEAN);
            CHECK(loss);
            nb_model_zero_grad(m);
            CHECK_OK(nb_backward(ctx, loss));
            CHECK_OK(nb_optim_step(o));
        }
        memcpy(w[run], m->data, sizeof w[run]);
        nb_optim_free(o);
        nb_model_free(m);
        nb_ctx_free(ctx);
    }
    CHECK(memcmp(w[0], w[1], sizeof w[0]) == 0);
}
