/* BatchNorm1d/2d, weight_norm, Residual and BasicBlock against PyTorch
 * (tests/fixtures/batchnorm.safetensors from scripts/gen_bn_fixtures.py), the
 * notes' claims (§10: BN output has per-channel mean 0 and variance 1 in
 * training; §14: residual connections), running statistics in train and eval
 * mode, state_dict names, model files, optimizers leaving buffers alone,
 * errors, and thread-count independence. */
#include "test.h"
#include <math.h>
#include <stdlib.h>

static nb_safetensors *fixture(void)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(nbt_fixture("batchnorm.safetensors"), &f) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "cannot load fixture: %s", nb_last_error());
        return NULL;
    }
    return f;
}

static const nb_st_tensor *get(const nb_safetensors *f, const char *fmt, const char *a, const char *b)
{
    char name[160];
    snprintf(name, sizeof name, fmt, a, b);
    const nb_st_tensor *t = nb_safetensors_find(f, name);
    if (!t) nbt_fail(__FILE__, __LINE__, "fixture has no tensor %s", name);
    return t;
}

/* |a_i - b_i| <= rtol * (|b_i| + floor) for all i, floor = 1e-2 * max|b| (so
 * values that cancel to nearly 0 are judged on the tensor's scale). */
static int close_to(const char *what, const float *a, const nb_st_tensor *b, double rtol)
{
    if (!a || !b) {
        nbt_fail(__FILE__, __LINE__, "%s: missing values", what);
        return 0;
    }
    double mx = 0;
    for (int64_t i = 0; i < b->numel; i++) mx = fmax(mx, fabs((double)b->data[i]));
    for (int64_t i = 0; i < b->numel; i++)
        if (!(fabs((double)a[i] - b->data[i]) <= rtol * (fabs((double)b->data[i]) + 1e-2 * mx + 1e-30))) {
            nbt_fail(__FILE__, __LINE__, "%s[%lld] = %.9g, torch %.9g", what, (long long)i, a[i], b->data[i]);
            return 0;
        }
    return 1;
}

static nb_tensor *from(nb_ctx *ctx, const nb_st_tensor *t, int req)
{
    return t ? nb_requires_grad(nb_tensor_from(ctx, t->ndim, t->shape, t->data), req) : NULL;
}

/* Copy "<prefix><param name>" from the fixture into every parameter/buffer. */
static int load_named(nb_model *m, const nb_safetensors *f, const char *prefix)
{
    for (int i = 0; i < m->nparams; i++) {
        const nb_st_tensor *t = get(f, "%s%s", prefix, m->params[i].name);
        if (!t || t->numel != nb_tensor_numel(&m->params[i].t)) return 0;
        memcpy(m->params[i].t.data, t->data, (size_t)t->numel * sizeof(float));
    }
    return 1;
}

static float *param_data(nb_model *m, const char *name)
{
    int i = nb_model_find_param(m, name);
    return i >= 0 ? m->params[i].t.data : NULL;
}

static float *param_grad(nb_model *m, const char *name)
{
    int i = nb_model_find_param(m, name);
    return i >= 0 ? m->params[i].t.grad : NULL;
}

/* ---- BatchNorm against torch -------------------------------------------------- */

typedef struct {
    const char *name;
    int dims, c;
    float eps, momentum;
    int affine;
} bn_cfg;

static const bn_cfg BN_CFGS[] = {
    {"bn1d", 1, 5, 1e-5f, 0.1f, 1},       {"bn1d_seq", 1, 3, 1e-5f, 0.1f, 1},
    {"bn1d_wide", 1, 70, 1e-5f, 0.2f, 1}, {"bn1d_cma", 1, 4, 1e-5f, NAN, 1},
    {"bn2d", 2, 4, 1e-5f, 0.1f, 1},       {"bn2d_plain", 2, 3, 1e-3f, 0.3f, 0},
};

static int bn_case(const nb_safetensors *f, const bn_cfg *cfg)
{
    char pre[64], what[96], desc[160];
    snprintf(pre, sizeof pre, "bn.%s", cfg->name);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_model *m = nb_model_new("bn", "");
    m->root = cfg->dims == 2 ? nb_nn_batch_norm2d(m, cfg->c, cfg->eps, cfg->momentum, cfg->affine)
                             : nb_nn_batch_norm1d(m, cfg->c, cfg->eps, cfg->momentum, cfg->affine);
    int ok = m->root != NULL;
    /* the repr is torch's */
    const char *want = nb_safetensors_meta(f, (snprintf(what, sizeof what, "%s.config", pre), what));
    nb_module_print(m->root, desc, sizeof desc);
    if (ok && (!want || strncmp(desc, want, strlen(want)))) {
        nbt_fail(__FILE__, __LINE__, "%s: print gives '%s', torch '%s'", pre, desc, want ? want : "?");
        ok = 0;
    }
    if (ok && cfg->affine) {
        const nb_st_tensor *w = get(f, "%s.%s", pre, "weight"), *b = get(f, "%s.%s", pre, "bias");
        ok = w && b;
        if (ok) {
            memcpy(param_data(m, "weight"), w->data, (size_t)cfg->c * sizeof(float));
            memcpy(param_data(m, "bias"), b->data, (size_t)cfg->c * sizeof(float));
        }
    }
    const char *steps[] = {"0", "1", "2", "e"};
    for (int s = 0; s < 4 && ok; s++) {
        if (s == 3) {
            nb_model_train(m, 0);
            /* eval never moves the statistics */
            ok = close_to("running_mean", param_data(m, "running_mean"), get(f, "%s.%s", pre, "running_mean"), 1e-5) &&
                 close_to("running_var", param_data(m, "running_var"), get(f, "%s.%s", pre, "running_var"), 1e-5) &&
                 close_to("num_batches_tracked", param_data(m, "num_batches_tracked"),
                          get(f, "%s.%s", pre, "num_batches_tracked"), 0);
            if (!ok) break;
        }
        nb_ctx_reset(ctx);
        char key[16];
        snprintf(key, sizeof key, "x%s", steps[s]);
        nb_tensor *x = from(ctx, get(f, "%s.%s", pre, key), 1);
        snprintf(key, sizeof key, "r%s", steps[s]);
        nb_tensor *r = from(ctx, get(f, "%s.%s", pre, key), 0);
        nb_tensor *y = nb_model_forward(m, ctx, x);
        nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
        nb_model_zero_grad(m);
        if (!loss || nb_backward(ctx, loss) != NB_OK) {
            nbt_fail(__FILE__, __LINE__, "%s step %s: %s", pre, steps[s], nb_last_error());
            ok = 0;
            break;
        }
        snprintf(key, sizeof key, "y%s", steps[s]);
        snprintf(what, sizeof what, "%s.%s", pre, key);
        ok = close_to(what, y->data, get(f, "%s.%s", pre, key), 1e-5);
        snprintf(key, sizeof key, "dx%s", steps[s]);
        snprintf(what, sizeof what, "%s.%s", pre, key);
        ok = ok && close_to(what, x->grad, get(f, "%s.%s", pre, key), 1e-5);
        if (ok && cfg->affine) {
            snprintf(key, sizeof key, "dweight%s", steps[s]);
            snprintf(what, sizeof what, "%s.%s", pre, key);
            ok = close_to(what, param_grad(m, "weight"), get(f, "%s.%s", pre, key), 1e-5);
            snprintf(key, sizeof key, "dbias%s", steps[s]);
            snprintf(what, sizeof what, "%s.%s", pre, key);
            ok = ok && close_to(what, param_grad(m, "bias"), get(f, "%s.%s", pre, key), 1e-5);
        }
    }
    /* after the eval step the statistics are still those of step 2 */
    ok = ok && close_to("running_mean after eval", param_data(m, "running_mean"),
                        get(f, "%s.%s", pre, "running_mean"), 1e-5) &&
         close_to("running_var after eval", param_data(m, "running_var"), get(f, "%s.%s", pre, "running_var"), 1e-5) &&
         param_data(m, "num_batches_tracked")[0] == 3.0f;
    nb_model_free(m);
    nb_ctx_free(ctx);
    return ok;
}

TEST(batchnorm_modules_match_torch)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    int ok = 1;
    for (size_t i = 0; i < sizeof BN_CFGS / sizeof BN_CFGS[0]; i++) {
        int r = bn_case(f, &BN_CFGS[i]);
        if (!r) nbt_fail(__FILE__, __LINE__, "config %s", BN_CFGS[i].name);
        ok &= r;
    }
    nb_safetensors_free(f);
    CHECK(ok);
}

/* ---- the notes §10: normalised outputs ------------------------------------------- */

TEST(batchnorm_training_output_has_mean_0_variance_1_per_channel)
{
    nb_ctx *ctx = nb_ctx_new(3);
    const int64_t N = 16, C = 6, H = 7, W = 5, S = H * W;
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(N, C, H, W));
    CHECK(x);
    for (int64_t i = 0; i < N * C * S; i++) {   /* channel c: mean 3c - 5, std c + 0.5 */
        int64_t c = (i / S) % C;
        x->data[i] = x->data[i] * ((float)c + 0.5f) + 3.0f * (float)c - 5.0f;
    }
    float gamma[6] = {1, 2, 0.5f, -1, 3, 1}, beta[6] = {0, 1, -2, 0.5f, 0, 4};
    nb_tensor *g = nb_tensor_from(ctx, NB_SHAPE(6), gamma), *b = nb_tensor_from(ctx, NB_SHAPE(6), beta);
    for (int affine = 0; affine < 2; affine++) {
        nb_tensor *y = nb_batch_norm(ctx, x, affine ? g : NULL, affine ? b : NULL, NULL, NULL, 1, 0.1f, 1e-5f);
        CHECK(y);
        for (int64_t c = 0; c < C; c++) {
            double s = 0, s2 = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t k = 0; k < S; k++) {
                    double v = y->data[(n * C + c) * S + k];
                    s += v;
                    s2 += v * v;
                }
            double mean = s / (double)(N * S), var = s2 / (double)(N * S) - mean * mean;
            double want_mean = affine ? beta[c] : 0, want_var = affine ? (double)gamma[c] * gamma[c] : 1;
            CHECK_NEAR(mean, want_mean, 0, 1e-5);
            CHECK_NEAR(var, want_var, 1e-4, 0);
        }
    }
    nb_ctx_free(ctx);
}

/* ---- running statistics ------------------------------------------------------------ */

TEST(batchnorm_running_stats_move_in_train_not_in_eval)
{
    nb_ctx *ctx = nb_ctx_new(5);
    nb_model *m = nb_model_new("bn", "");
    m->root = nb_nn_batch_norm2d(m, 3, 1e-5f, 0.1f, 1);
    CHECK(m->root);
    float *rm = param_data(m, "running_mean"), *rv = param_data(m, "running_var");
    float *nbt = param_data(m, "num_batches_tracked");
    CHECK(rm[0] == 0 && rv[0] == 1 && nbt[0] == 0);
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(4, 3, 2, 5));
    for (int i = 0; i < 120; i++) x->data[i] = x->data[i] * 2 + 1;
    CHECK(nb_model_forward(m, ctx, x));
    /* by hand: r = 0.9 r + 0.1 stat, unbiased variance */
    for (int c = 0; c < 3; c++) {
        double s = 0, s2 = 0;
        for (int n = 0; n < 4; n++)
            for (int k = 0; k < 10; k++) s += x->data[(n * 3 + c) * 10 + k];
        double mean = s / 40;
        for (int n = 0; n < 4; n++)
            for (int k = 0; k < 10; k++) {
                double d = x->data[(n * 3 + c) * 10 + k] - mean;
                s2 += d * d;
            }
        CHECK_NEAR(rm[c], 0.1 * mean, 1e-6, 1e-7);
        CHECK_NEAR(rv[c], 0.9 + 0.1 * s2 / 39, 1e-6, 0);
    }
    CHECK(nbt[0] == 1);
    float keep[7];
    memcpy(keep, rm, 3 * sizeof(float));
    memcpy(keep + 3, rv, 3 * sizeof(float));
    keep[6] = nbt[0];
    nb_model_train(m, 0);
    nb_tensor *y = nb_model_forward(m, ctx, x);
    CHECK(y);
    CHECK(memcmp(keep, rm, 3 * sizeof(float)) == 0 && memcmp(keep + 3, rv, 3 * sizeof(float)) == 0);
    CHECK(nbt[0] == keep[6]);
    /* eval output: (x - running_mean) / sqrt(running_var + eps) * 1 + 0 */
    for (int i = 0; i < 120; i++) {
        int c = (i / 10) % 3;
        CHECK_NEAR(y->data[i], (x->data[i] - rm[c]) / sqrtf(rv[c] + 1e-5f), 1e-5, 1e-6);
    }
    /* a failed training forward counts nothing */
    nb_model_train(m, 1);
    CHECK(!nb_model_forward(m, ctx, nb_tensor_randn(ctx, NB_SHAPE(1, 3, 1, 1))));
    CHECK(nbt[0] == keep[6] && memcmp(keep, rm, 3 * sizeof(float)) == 0);
    nb_model_free(m);
    nb_ctx_free(ctx);
}

TEST(batchnorm_errors)
{
    nb_ctx *ctx = nb_ctx_new(1);
    float rm[3] = {0}, rv[3] = {1, 1, 1};
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(4, 3, 2));
    CHECK(!nb_batch_norm(ctx, nb_tensor_randn(ctx, NB_SHAPE(5)), NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f));
    CHECK(nb_ctx_status(ctx) == NB_ERR_SHAPE && strstr(nb_last_error(), "(N, C)"));
    CHECK(!nb_batch_norm(ctx, x, nb_tensor_randn(ctx, NB_SHAPE(4)), NULL, NULL, NULL, 1, 0.1f, 1e-5f));
    CHECK(strstr(nb_last_error(), "weight [4] does not match the 3 channels"));
    CHECK(!nb_batch_norm(ctx, x, NULL, nb_tensor_randn(ctx, NB_SHAPE(3, 1)), NULL, NULL, 1, 0.1f, 1e-5f));
    CHECK(strstr(nb_last_error(), "bias [3, 1]"));
    CHECK(!nb_batch_norm(ctx, x, NULL, NULL, rm, NULL, 0, 0.1f, 1e-5f));
    CHECK(strstr(nb_last_error(), "evaluation mode"));
    CHECK(!nb_batch_norm(ctx, x, NULL, NULL, NULL, NULL, 1, 0.1f, -1.0f));
    CHECK(strstr(nb_last_error(), "eps"));
    /* torch: "Expected more than 1 value per channel when training" */
    CHECK(!nb_batch_norm(ctx, nb_tensor_randn(ctx, NB_SHAPE(1, 3)), NULL, NULL, rm, rv, 1, 0.1f, 1e-5f));
    CHECK(strstr(nb_last_error(), "Expected more than 1 value per channel when training"));
    CHECK(!nb_batch_norm(ctx, nb_tensor_randn(ctx, NB_SHAPE(1, 3, 1, 1)), NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f));
    CHECK(rm[0] == 0 && rv[0] == 1);
    /* ... but one sample of several values trains, and one value evaluates */
    CHECK(nb_batch_norm(ctx, nb_tensor_randn(ctx, NB_SHAPE(1, 3, 2)), NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f));
    CHECK(nb_batch_norm(ctx, nb_tensor_randn(ctx, NB_SHAPE(1, 3)), NULL, NULL, rm, rv, 0, 0.1f, 1e-5f));
    /* a NULL input passes through without a new message */
    nb_clear_error();
    CHECK(!nb_batch_norm(ctx, NULL, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f) && !*nb_last_error());
    /* modules check dimensions and channels */
    nb_model *m = nb_model_new("bn", ""), *m2 = nb_model_new("bn", "");
    nb_module *b1 = nb_nn_batch_norm1d(m, 3, 1e-5f, 0.1f, 1), *b2 = nb_nn_batch_norm2d(m2, 3, 1e-5f, 0.1f, 0);
    CHECK(b1 && b2);
    CHECK(!b1->vt->forward(b1, ctx, nb_tensor_randn(ctx, NB_SHAPE(2, 3, 2, 2))));
    CHECK(strstr(nb_last_error(), "BatchNorm1d: expected 2D (N,C) or 3D (N,C,L) input (got 4D input"));
    CHECK(!b2->vt->forward(b2, ctx, x));
    CHECK(strstr(nb_last_error(), "BatchNorm2d: expected 4D (N,C,H,W) input (got 3D input"));
    CHECK(!b2->vt->forward(b2, ctx, nb_tensor_randn(ctx, NB_SHAPE(2, 4, 2, 2))));
    CHECK(strstr(nb_last_error(), "has 4 channels, expected num_features=3"));
    CHECK(b1->vt->forward(b1, ctx, x) && b1->vt->forward(b1, ctx, nb_tensor_randn(ctx, NB_SHAPE(5, 3))));
    CHECK(!nb_nn_batch_norm2d(m, 0, 1e-5f, 0.1f, 1) && strstr(nb_last_error(), "num_features=0"));
    CHECK(!nb_nn_batch_norm1d(m, 4, -1e-5f, 0.1f, 1) && strstr(nb_last_error(), "eps"));
    nb_model_free(m);
    nb_model_free(m2);
    nb_ctx_free(ctx);
}

/* ---- state_dict, files, optimizers -------------------------------------------------- */

TEST(batchnorm_state_dict_names_files_and_sgd)
{
    nb_ctx *ctx = nb_ctx_new(9);
    nb_model *m = nb_model_new("bnnet", "");
    m->root = nb_nn_sequential(m);
    CHECK_OK(nb_sequential_add(m->root, nb_nn_linear(m, nb_ctx_rng(ctx), 5, 4, 1)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_batch_norm1d(m, 4, 1e-5f, 0.1f, 1)));
    const char *want[] = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                          "1.num_batches_tracked"};
    const int buffer[] = {0, 0, 0, 0, 1, 1, 1};
    CHECK(m->nparams == 7);
    for (int i = 0; i < 7; i++) {
        CHECK_MSG(!strcmp(m->params[i].name, want[i]), "param %d is %s", i, m->params[i].name);
        CHECK(m->params[i].buffer == buffer[i] && m->params[i].t.requires_grad == !buffer[i]);
    }
    CHECK(m->params[6].t.ndim == 0);   /* torch: a 0-d tensor */
    char buf[512];
    nb_module_print(m->root, buf, sizeof buf);
    CHECK(strstr(buf, "(1): BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"));
    /* train a few steps with SGD: weights move, buffers only by the forward */
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f});
    CHECK(o);
    for (int step = 0; step < 3; step++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(8, 5));
        nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, nb_model_forward(m, ctx, x), nb_tensor_randn(ctx, NB_SHAPE(8, 4))),
                                 NULL, 0, 0);
        CHECK(loss);
        nb_model_zero_grad(m);
        CHECK_OK(nb_backward(ctx, loss));
        float stats[9];
        for (int i = 0; i < 9; i++) stats[i] = m->params[4 + i / 4].t.data[i % 4];
        float w0 = m->params[2].t.data[0];
        /* even a gradient written into the buffers' slots is ignored */
        for (int k = 4; k < 7; k++) m->params[k].t.grad[0] = 100.0f;
        CHECK_OK(nb_optim_step(o));
        for (int i = 0; i < 9; i++) CHECK(stats[i] == m->params[4 + i / 4].t.data[i % 4]);
        CHECK(m->params[2].t.data[0] != w0);
    }
    CHECK(param_data(m, "1.num_batches_tracked")[0] == 3.0f);
    CHECK(param_data(m, "1.running_var")[0] != 1.0f);
    nb_optim_free(o);
    /* the buffers are saved and loaded with the weights */
    char path[512];
    snprintf(path, sizeof path, "%s/bn.safetensors", nbt_tmpdir());
    CHECK_OK(nb_model_save(m, path));
    nb_safetensors *f = NULL;
    CHECK_OK(nb_safetensors_load(path, &f));
    int names_ok = f->n == 7;
    for (int i = 0; i < 7; i++) names_ok = names_ok && nb_safetensors_find(f, want[i]);
    const nb_st_tensor *t = nb_safetensors_find(f, "1.num_batches_tracked");
    names_ok = names_ok && t && t->ndim == 0 && t->data[0] == 3.0f;
    nb_safetensors_free(f);
    CHECK(names_ok);
    nb_model *m2 = nb_model_new("bnnet", "");
    m2->root = nb_nn_sequential(m2);
    CHECK_OK(nb_sequential_add(m2->root, nb_nn_linear(m2, nb_ctx_rng(ctx), 5, 4, 1)));
    CHECK_OK(nb_sequential_add(m2->root, nb_nn_batch_norm1d(m2, 4, 1e-5f, 0.1f, 1)));
    CHECK_OK(nb_model_load(m2, path));
    CHECK(m2->numel == m->numel && memcmp(m->data, m2->data, m->numel * sizeof(float)) == 0);
    nb_model_free(m2);
    nb_model_free(m);
    nb_ctx_free(ctx);
}

/* ---- thread-count independence ------------------------------------------------------ */

static void bn_run(int threads, int64_t N, int64_t C, int64_t S, float *y, float *dx, float *dw, float *rm)
{
    nb_set_threads(threads);
    nb_ctx *ctx = nb_ctx_new(77);
    nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, NB_SHAPE(N, C, S)), 1);
    nb_tensor *w = nb_requires_grad(nb_tensor_randn(ctx, NB_SHAPE(C)), 1);
    nb_tensor *r = nb_tensor_randn(ctx, NB_SHAPE(N, C, S));
    if (S == 1) {
        x = nb_requires_grad(nb_tensor_randn(ctx, NB_SHAPE(N, C)), 1);
        r = nb_tensor_randn(ctx, NB_SHAPE(N, C));
    }
    for (int64_t c = 0; c < C; c++) rm[c] = 0, rm[C + c] = 1;
    nb_tensor *out = nb_batch_norm(ctx, x, w, NULL, rm, rm + C, 1, 0.1f, 1e-5f);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, out, r), NULL, 0, 0);
    if (loss && nb_backward(ctx, loss) == NB_OK) {
        memcpy(y, out->data, (size_t)(N * C * S) * sizeof(float));
        memcpy(dx, x->grad, (size_t)(N * C * S) * sizeof(float));
        memcpy(dw, w->grad, (size_t)C * sizeof(float));
    }
    nb_ctx_free(ctx);
    nb_set_threads(2);
}

TEST(batchnorm_same_bits_for_any_thread_count)
{
    const int64_t shapes[2][3] = {{8, 24, 400}, {512, 200, 1}};
    for (int k = 0; k < 2; k++) {
        int64_t N = shapes[k][0], C = shapes[k][1], S = shapes[k][2], n = N * C * S;
        float *a = calloc((size_t)(4 * n + 6 * C), sizeof(float)), *b = calloc((size_t)(4 * n + 6 * C), sizeof(float));
        CHECK(a && b);
        bn_run(1, N, C, S, a, a + n, a + 2 * n, a + 2 * n + C);
        bn_run(2, N, C, S, b, b + n, b + 2 * n, b + 2 * n + C);
        int same = memcmp(a, b, (size_t)(2 * n + 3 * C) * sizeof(float)) == 0;
        int nonzero = a[0] != 0 && a[n] != 0;
        free(a);
        free(b);
        CHECK_MSG(same, "shape %d: 1 and 2 threads differ", k);
        CHECK(nonzero);
    }
}

/* ---- weight_norm ---------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int conv, dim, after;   /* after: weight_norm applied after adding to the Sequential */
} wn_cfg;

static int wn_case(const nb_safetensors *f, const wn_cfg *cfg)
{
    char pre[64], what[128];
    snprintf(pre, sizeof pre, "wn.%s", cfg->name);
    nb_ctx *ctx = nb_ctx_new(4);
    nb_model *m = nb_model_new("wn", "");
    m->root = nb_nn_sequential(m);
    nb_conv2d_opts pad1 = {{1, 1}, {1, 1}, {1, 1}, 1};
    nb_module *layer = cfg->conv ? nb_nn_conv2d(m, nb_ctx_rng(ctx), 2, 3, 3, 3, &pad1, 1)
                                 : nb_nn_linear(m, nb_ctx_rng(ctx), 4, 3, 1);
    int ok = layer != NULL;
    /* g starts at ||v|| of the layer's weight */
    const nb_st_tensor *w0 = get(f, "%s.%s", pre, "weight");
    ok = ok && w0 && w0->numel == nb_tensor_numel(&m->params[0].t);
    if (ok) memcpy(m->params[0].t.data, w0->data, (size_t)w0->numel * sizeof(float));
    if (ok && !cfg->after) ok = nb_nn_weight_norm(layer, cfg->dim) == NB_OK;
    ok = ok && nb_sequential_add(m->root, layer) == NB_OK;
    if (ok && cfg->after) ok = nb_nn_weight_norm(layer, cfg->dim) == NB_OK;
    if (!ok) {
        nbt_fail(__FILE__, __LINE__, "%s: building: %s", pre, nb_last_error());
        goto done;
    }
    ok = close_to("g at init", param_data(m, "0.weight_g"), get(f, "%s.%s", pre, "g_init"), 1e-6) &&
         close_to("v at init", param_data(m, "0.weight_v"), w0, 0);
    /* the state_dict names of nn.Sequential(weight_norm(layer)), no "weight" */
    snprintf(what, sizeof what, "%s.keys", pre);
    const char *keys = nb_safetensors_meta(f, what);
    ok = ok && keys && nb_model_find_param(m, "0.weight") < 0 && m->nparams == 3;
    for (int i = 0; ok && i < m->nparams; i++) {
        char quoted[80];
        snprintf(quoted, sizeof quoted, "\"%s\"", m->params[i].name);
        if (!strstr(keys, quoted)) {
            nbt_fail(__FILE__, __LINE__, "%s: parameter %s is not in torch's %s", pre, m->params[i].name, keys);
            ok = 0;
        }
    }
    /* the container owns weight_g too */
    ok = ok && m->root->nparams == 3 && layer->nparams == 3;
    ok = ok && load_named(m, f, (snprintf(what, sizeof what, "%s.", pre), what));
    if (!ok) goto done;
    nb_tensor *x = from(ctx, get(f, "%s.%s", pre, "x"), 1), *r = from(ctx, get(f, "%s.%s", pre, "r"), 0);
    nb_tensor *y = nb_model_forward(m, ctx, x);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    nb_model_zero_grad(m);
    if (!loss || nb_backward(ctx, loss) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "%s: %s", pre, nb_last_error());
        ok = 0;
        goto done;
    }
    ok = close_to("y", y->data, get(f, "%s.%s", pre, "y"), 1e-5) &&
         close_to("dx", x->grad, get(f, "%s.%s", pre, "dx"), 1e-5);
    for (int i = 0; ok && i < m->nparams; i++) {
        snprintf(what, sizeof what, "%s grad %s", pre, m->params[i].name);
        ok = close_to(what, m->params[i].t.grad, get(f, "%s.grad.%s", pre, m->params[i].name), 1e-5);
    }
    /* the layer prints as itself */
    char buf[256];
    nb_module_print(m->root, buf, sizeof buf);
    ok = ok && strstr(buf, cfg->conv ? "(0): Conv2d(2, 3, kernel_size=(3, 3)" : "(0): Linear(in_features=4");
done:
    nb_model_free(m);
    nb_ctx_free(ctx);
    return ok;
}

TEST(weight_norm_matches_torch)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    const wn_cfg cfgs[] = {{"linear", 0, 0, 0}, {"linear_dim1", 0, 1, 1}, {"linear_all", 0, -1, 0}, {"conv", 1, 0, 1}};
    int ok = 1;
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        int r = wn_case(f, &cfgs[i]);
        if (!r) nbt_fail(__FILE__, __LINE__, "config %s", cfgs[i].name);
        ok &= r;
    }
    nb_safetensors_free(f);
    CHECK(ok);
}

/* sum(y * r) of the model's output, in double. */
static int wn_contract(nb_model *m, const float *x, const int64_t *xs, int xnd, const float *r, double *out)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *xt = nb_tensor_from(ctx, xnd, xs, x);
    nb_tensor *y = xt ? nb_model_forward(m, ctx, xt) : NULL;
    int ok = y != NULL;
    double s = 0;
    for (int64_t i = 0; ok && i < nb_tensor_numel(y); i++) s += (double)y->data[i] * r[i];
    *out = s;
    nb_ctx_free(ctx);
    return ok;
}

/* The gradients of g, v, the bias and the input through a weight-normed
 * Linear or Conv2d (each dim) against central differences, as
 * test_gradcheck.c does for the ops: the reparametrisation is built from
 * ops, so no entry of ops.def covers it whole. */
TEST(weight_norm_gradients_match_finite_differences)
{
    const struct { int conv, dim; } cfgs[] = {{0, 0}, {0, 1}, {0, -1}, {1, 0}, {1, 1}, {1, 3}, {1, -1}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        nb_ctx *ctx = nb_ctx_new(11 + k);
        nb_model *m = nb_model_new("wn", "");
        m->root = nb_nn_sequential(m);
        nb_conv2d_opts o = {{2, 1}, {1, 0}, {1, 1}, 1};
        nb_module *layer = cfgs[k].conv ? nb_nn_conv2d(m, nb_ctx_rng(ctx), 2, 3, 3, 2, &o, 1)
                                        : nb_nn_linear(m, nb_ctx_rng(ctx), 4, 3, 1);
        CHECK(layer && nb_sequential_add(m->root, layer) == NB_OK);
        CHECK_OK(nb_nn_weight_norm(layer, cfgs[k].dim));
        int ig = nb_model_find_param(m, "0.weight_g");
        CHECK(ig >= 0);
        for (int64_t i = 0; i < nb_tensor_numel(&m->params[ig].t); i++)
            m->params[ig].t.data[i] *= 0.5f + 0.25f * (float)i; /* g no longer ||v|| */
        const int64_t xs4[4] = {2, 2, 5, 4}, xs2[2] = {3, 4};
        const int64_t *xs = cfgs[k].conv ? xs4 : xs2;
        const int xnd = cfgs[k].conv ? 4 : 2;
        nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, xnd, xs), 1);
        nb_tensor *y = nb_model_forward(m, ctx, x);
        CHECK_MSG(y, "%s", nb_last_error());
        nb_tensor *r = nb_tensor_randn(ctx, y->ndim, y->shape);
        nb_model_zero_grad(m);
        CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0)));
        int checked = 0;
        for (int q = -1; q < m->nparams; q++) { /* -1: the input */
            float *data = q < 0 ? x->data : m->params[q].t.data;
            const float *grad = q < 0 ? x->grad : m->params[q].t.grad;
            const int64_t n = q < 0 ? nb_tensor_numel(x) : nb_tensor_numel(&m->params[q].t);
            for (int64_t i = 0; i < n; i++, checked++) {
                const float v = data[i], eps = 1e-2f;
                double fp, fm;
                data[i] = v + eps;
                int ok = wn_contract(m, x->data, xs, xnd, r->data, &fp);
                data[i] = v - eps;
                ok = ok && wn_contract(m, x->data, xs, xnd, r->data, &fm);
                data[i] = v;
                CHECK_MSG(ok, "%s", nb_last_error());
                const double num = (fp - fm) / ((double)(v + eps) - (double)(v - eps)), ana = grad[i];
                const double scale = fabs(num) > fabs(ana) ? fabs(num) : fabs(ana);
                CHECK_MSG(fabs(ana - num) <= 1e-3 + 1e-2 * scale, "%s dim %d, %s element %lld: analytic %.7g vs "
                          "numeric %.7g", cfgs[k].conv ? "conv" : "linear", cfgs[k].dim,
                          q < 0 ? "input" : m->params[q].name, (long long)i, ana, num);
            }
        }
        CHECK(checked > 20);
        nb_model_free(m);
        nb_ctx_free(ctx);
    }
}

TEST(weight_norm_trains_saves_and_refuses_misuse)
{
    nb_ctx *ctx = nb_ctx_new(8);
    nb_rng *rng = nb_ctx_rng(ctx);
    nb_model *m = nb_model_new("wn", "");
    m->root = nb_nn_sequential(m);
    nb_module *lin = nb_nn_linear(m, rng, 6, 4, 1), *relu = nb_nn_relu(m);
    CHECK_OK(nb_sequential_add(m->root, lin));
    CHECK_OK(nb_sequential_add(m->root, relu));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_linear(m, rng, 4, 2, 0)));
    CHECK_OK(nb_nn_weight_norm(lin, -2));   /* = dim 0 of a 2-D weight */
    CHECK(m->params[nb_model_find_param(m, "0.weight_g")].t.ndim == 2 &&
          m->params[nb_model_find_param(m, "0.weight_g")].t.shape[0] == 4);
    CHECK_ERR(nb_nn_weight_norm(lin, 0), NB_ERR_ARG, "already applied");
    CHECK_ERR(nb_nn_weight_norm(relu, 0), NB_ERR_ARG, "no parameter named 'weight'");
    CHECK_ERR(nb_nn_weight_norm(m->root, 0), NB_ERR_ARG, "container");
    nb_model *mo = nb_model_new("other", "");
    nb_module *other = nb_nn_linear(mo, rng, 2, 2, 1);
    CHECK_ERR(nb_nn_weight_norm(other, 2), NB_ERR_ARG, "dim 2 is out of range");
    CHECK_ERR(nb_nn_weight_norm(other, -3), NB_ERR_ARG, "dim -3 is out of range");
    CHECK(mo->nparams == 2 && !strcmp(mo->params[0].name, "weight"));
    nb_model_free(mo);
    CHECK(nb_nn_weight_norm(NULL, 0) == NB_ERR_ARG);
    /* the output is unchanged by the reparametrisation; SGD moves g and v */
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.05f});
    CHECK(o);
    float first = 0, last = 0;
    nb_tensor *x = NULL, *t = NULL;
    for (int step = 0; step < 30; step++) {
        nb_ctx_reset(ctx);
        nb_rng r;
        nb_rng_seed(&r, 5);
        x = nb_tensor_new(ctx, NB_SHAPE(16, 6));
        t = nb_tensor_new(ctx, NB_SHAPE(16, 2));
        for (int i = 0; i < 96; i++) x->data[i] = nb_rng_normal(&r);
        for (int i = 0; i < 32; i++) t->data[i] = nb_rng_normal(&r);
        nb_tensor *loss = nb_mse_loss(ctx, nb_model_forward(m, ctx, x), t, NB_REDUCTION_MEAN);
        CHECK(loss);
        if (step == 0) first = nb_tensor_item(loss);
        last = nb_tensor_item(loss);
        nb_model_zero_grad(m);
        CHECK_OK(nb_backward(ctx, loss));
        CHECK(param_grad(m, "0.weight_g")[0] != 0 && param_grad(m, "0.weight_v")[0] != 0);
        CHECK_OK(nb_optim_step(o));
    }
    CHECK_MSG(last < first, "loss %g -> %g", first, last);
    nb_optim_free(o);
    /* a file round trip keeps g and v */
    char path[512];
    snprintf(path, sizeof path, "%s/wn.safetensors", nbt_tmpdir());
    CHECK_OK(nb_model_save(m, path));
    nb_model *m2 = nb_model_new("wn", "");
    m2->root = nb_nn_sequential(m2);
    nb_module *l2 = nb_nn_linear(m2, rng, 6, 4, 1);
    CHECK_OK(nb_nn_weight_norm(l2, 0));
    CHECK_OK(nb_sequential_add(m2->root, l2));
    CHECK_OK(nb_sequential_add(m2->root, nb_nn_relu(m2)));
    CHECK_OK(nb_sequential_add(m2->root, nb_nn_linear(m2, rng, 4, 2, 0)));
    CHECK_OK(nb_model_load(m2, path));
    nb_tensor *y1 = nb_model_forward(m, ctx, x), *y2 = nb_model_forward(m2, ctx, x);
    CHECK(y1 && y2 && memcmp(y1->data, y2->data, 32 * sizeof(float)) == 0);
    nb_model_free(m2);
    nb_model_free(m);
    nb_ctx_free(ctx);
}

/* ---- Residual and BasicBlock --------------------------------------------------------- */

TEST(residual_adds_its_input)
{
    nb_ctx *ctx = nb_ctx_new(2);
    nb_model *m = nb_model_new("res", "");
    m->root = nb_nn_residual(m, nb_nn_linear(m, nb_ctx_rng(ctx), 4, 4, 1));
    CHECK(m->root && !strcmp(m->params[0].name, "body.weight"));
    nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, NB_SHAPE(3, 4)), 1);
    nb_tensor *y = nb_model_forward(m, ctx, x);
    nb_tensor *z = nb_linear(ctx, x, &m->params[0].t, &m->params[1].t);
    CHECK(y && z);
    for (int i = 0; i < 12; i++) CHECK_NEAR(y->data[i], x->data[i] + z->data[i], 1e-6, 1e-6);
    /* the identity path passes the gradient through: dx = 1 + W^T 1 */
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, y, NULL, 0, 0)));
    for (int j = 0; j < 4; j++) {
        double s = 1;
        for (int o = 0; o < 4; o++) s += m->params[0].t.data[o * 4 + j];
        CHECK_NEAR(x->grad[j], s, 1e-5, 1e-6);
    }
    nb_model *m2 = nb_model_new("res", "");
    m2->root = nb_nn_residual(m2, nb_nn_linear(m2, nb_ctx_rng(ctx), 4, 3, 1));
    CHECK(m2->root);
    CHECK(!nb_model_forward(m2, ctx, x) && strstr(nb_last_error(), "Residual: the body maps [3, 4] to [3, 3]"));
    nb_model_free(m2);
    nb_model_free(m);
    nb_ctx_free(ctx);
}

static int block_case(const nb_safetensors *f, int stride, int cin, int cout)
{
    char pre[32], what[160];
    snprintf(pre, sizeof pre, "block%d", stride);
    nb_ctx *ctx = nb_ctx_new(6);
    nb_model *m = nb_model_new("block", "");
    m->root = nb_nn_basic_block(m, nb_ctx_rng(ctx), cin, cout, stride);
    int ok = m->root != NULL;
    if (!ok) {
        nbt_fail(__FILE__, __LINE__, "%s: %s", pre, nb_last_error());
        goto done;
    }
    /* names and order of torchvision's state_dict */
    snprintf(what, sizeof what, "%s.keys", pre);
    const char *keys = nb_safetensors_meta(f, what);
    char mine[2048] = "[";
    for (int i = 0; i < m->nparams; i++) {
        size_t n = strlen(mine);
        snprintf(mine + n, sizeof mine - n, "%s\"%s\"", i ? ", " : "", m->params[i].name);
    }
    strncat(mine, "]", sizeof mine - strlen(mine) - 1);
    if (!keys || strcmp(keys, mine)) {
        nbt_fail(__FILE__, __LINE__, "%s: names %s, torchvision %s", pre, mine, keys ? keys : "?");
        ok = 0;
        goto done;
    }
    snprintf(what, sizeof what, "%s.init.", pre);
    ok = load_named(m, f, what);
    nb_tensor *x = from(ctx, get(f, "%s.%s", pre, "x"), 1), *r = from(ctx, get(f, "%s.%s", pre, "r"), 0);
    nb_tensor *y = ok ? nb_model_forward(m, ctx, x) : NULL;
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    nb_model_zero_grad(m);
    if (!loss || nb_backward(ctx, loss) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "%s: %s", pre, nb_last_error());
        ok = 0;
        goto done;
    }
    ok = close_to("block y", y->data, get(f, "%s.%s", pre, "y"), 1e-4) &&
         close_to("block dx", x->grad, get(f, "%s.%s", pre, "dx"), 1e-4);
    for (int i = 0; ok && i < m->nparams; i++) {
        const char *name = m->params[i].name;
        snprintf(what, sizeof what, "%s %s", pre, name);
        if (m->params[i].buffer)
            ok = close_to(what, m->params[i].t.data, get(f, "%s.after.%s", pre, name), 1e-5);
        else
            ok = close_to(what, m->params[i].t.grad, get(f, "%s.grad.%s", pre, name), 1e-4);
    }
    nb_model_train(m, 0);
    nb_ctx_reset(ctx);
    x = from(ctx, get(f, "%s.%s", pre, "x"), 0);
    y = nb_model_forward(m, ctx, x);
    ok = ok && y && close_to("block eval y", y->data, get(f, "%s.%s", pre, "ye"), 1e-4);
    char buf[2048];
    nb_module_print(m->root, buf, sizeof buf);
    snprintf(what, sizeof what, "(conv1): Conv2d(%d, %d, kernel_size=(3, 3), stride=(%d, %d), padding=(1, 1), bias=False)",
             cin, cout, stride, stride);
    ok = ok && strstr(buf, "BasicBlock(") && strstr(buf, what) &&
         strstr(buf, "(bn2): BatchNorm2d(") && strstr(buf, "(relu): ReLU()") &&
         (stride == 1 || strstr(buf, "(downsample): Sequential("));
    if (!ok) nbt_fail(__FILE__, __LINE__, "%s: print:\n%s", pre, buf);
done:
    nb_model_free(m);
    nb_ctx_free(ctx);
    return ok;
}

TEST(basic_block_matches_torchvision)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    int ok = block_case(f, 1, 4, 4);
    ok &= block_case(f, 2, 4, 8);
    nb_safetensors_free(f);
    CHECK(ok);
    nb_rng r;
    nb_rng_seed(&r, 1);
    nb_model *m = nb_model_new("b", "");
    CHECK(!nb_nn_basic_block(m, &r, 4, 4, 0) && strstr(nb_last_error(), "stride=0"));
    nb_model_free(m);
}
