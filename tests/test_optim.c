/* Optimizers: SGD, RMSprop, Adagrad, Adam, AdamW and parameter groups
 * against torch.optim (tests/fixtures/optim.safetensors, from
 * scripts/gen_optim_fixtures.py), two steps by hand per optimizer, options,
 * groups, state access and restore, non-finite gradients, determinism.
 *
 * Tolerances of the trajectories (50 steps of the MLP 6-8-3, reference run in
 * float64 by torch; error = max |ours - ref| / max(|ref|, 0.01) over weights,
 * plain relative error for losses): nabla's float32 losses stay within 1e-6
 * of the float64 ones at every step, the weights after the first step within
 * 2e-6, and the final weights within 1e-4. 1e-6 on the final weights is not
 * possible in float32: torch's own float32 run ends 0.6e-6 to 5e-5 away from
 * the float64 one on the same cases (stored in the fixture's metadata,
 * "torch_f32_error"), because rounding differences in the forward/backward
 * pass grow with training; nabla lands at the same distance (set
 * NB_OPTIM_REPORT=1 to print each case's errors). */
#include "test.h"
#include <stdint.h>
#include <stdlib.h>

/* ---- trajectories against torch ------------------------------------------------ */

static nb_safetensors *fixture(void)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(nbt_fixture("optim.safetensors"), &f) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "cannot load fixture: %s", nb_last_error());
        return NULL;
    }
    return f;
}

static const nb_st_tensor *get(const nb_safetensors *f, const char *prefix, const char *name)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", prefix, name);
    const nb_st_tensor *t = nb_safetensors_find(f, key);
    if (!t) nbt_fail(__FILE__, __LINE__, "fixture has no tensor %s", key);
    return t;
}

/* max_i |a_i - b_i| / max(|b_i|, floor) */
static double rel_err(const float *a, const float *b, int64_t n, double floor)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), floor);
        if (!(d <= e)) e = d;   /* NaN wins */
    }
    return e;
}

/* The model's error against "<case>.<stage>.<param>" tensors. */
static double weights_err(const nb_model *m, const nb_safetensors *f, const char *name, const char *stage)
{
    double e = 0;
    for (int i = 0; i < m->nparams; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s.%s", stage, m->params[i].name);
        const nb_st_tensor *t = get(f, name, key);
        if (!t || t->numel != nb_tensor_numel(&m->params[i].t)) return INFINITY;
        e = fmax(e, rel_err(m->params[i].t.data, t->data, t->numel, 1e-2));
    }
    return e;
}

enum { GROUPS_NONE, GROUPS_BIASES, GROUPS_NO_DECAY_1D };

#define TOL_LOSS 1e-6
#define TOL_STEP1 2e-6
#define TOL_FINAL 1e-4

/* 50 steps of the fixture's problem with opts for group 0 and, for
 * GROUPS_BIASES, bias_opts for a second group holding the biases;
 * GROUPS_NO_DECAY_1D builds that group with nb_optim_no_decay_for_1d and
 * gives it bias_opts->lr. */
static void trajectory(const char *name, const nb_optim_opts *opts, int groups, const nb_optim_opts *bias_opts)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", "6,8,3", nb_ctx_rng(ctx), &m));
    for (int i = 0; i < m->nparams; i++) {
        const nb_st_tensor *t = get(f, "optim.init", m->params[i].name);
        CHECK(t && t->numel == nb_tensor_numel(&m->params[i].t));
        memcpy(m->params[i].t.data, t->data, (size_t)t->numel * sizeof(float));
    }
    nb_optimizer *o = nb_optim_new(m, opts);
    CHECK_MSG(o, "%s", nb_last_error());
    if (groups == GROUPS_BIASES) {
        int g = nb_optim_add_group(o, bias_opts);
        CHECK_MSG(g == 1, "%s", nb_last_error());
        for (int i = 0; i < m->nparams; i++)
            if (strstr(m->params[i].name, "bias")) CHECK_OK(nb_optim_set_group(o, i, g));
    } else if (groups == GROUPS_NO_DECAY_1D) {
        CHECK_OK(nb_optim_no_decay_for_1d(o));
        CHECK(nb_optim_group_count(o) == 2);
        CHECK_OK(nb_optim_set_lr(o, 1, bias_opts->lr));
    }
    const nb_st_tensor *data = get(f, "optim", "data"), *lab = get(f, "optim", "labels");
    const nb_st_tensor *losses = get(f, name, "losses");
    CHECK(data && lab && losses && lab->numel == 16 && losses->numel == 50);
    int32_t labels[16];
    for (int i = 0; i < 16; i++) labels[i] = (int32_t)lab->data[i];
    double loss_err = 0, step1_err = 0;
    int ok = 1;
    for (int step = 0; step < 50 && ok; step++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = nb_tensor_from(ctx, data->ndim, data->shape, data->data);
        nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, x), labels, NULL, -100, NB_REDUCTION_MEAN);
        nb_model_zero_grad(m);
        if (!loss || nb_backward(ctx, loss) != NB_OK || nb_optim_step(o) != NB_OK) {
            nbt_fail(__FILE__, __LINE__, "%s step %d: %s", name, step, nb_last_error());
            ok = 0;
            break;
        }
        float l = nb_tensor_item(loss);
        loss_err = fmax(loss_err, rel_err(&l, &losses->data[step], 1, 1e-30));
        if (step == 0) step1_err = weights_err(m, f, name, "step1");
    }
    double final_err = weights_err(m, f, name, "final");
    if (getenv("NB_OPTIM_REPORT"))
        fprintf(stderr, "  %-28s loss %.2e  step1 %.2e  final %.2e\n", name, loss_err, step1_err, final_err);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_safetensors_free(f);
    CHECK(ok);
    CHECK_MSG(loss_err <= TOL_LOSS, "%s: loss error %.3g", name, loss_err);
    CHECK_MSG(step1_err <= TOL_STEP1, "%s: error after step 1 %.3g", name, step1_err);
    CHECK_MSG(final_err <= TOL_FINAL, "%s: final error %.3g", name, final_err);
}

static nb_optim_opts defaults(nb_optim_kind k) { return nb_optim_defaults(k); }

TEST(optim_sgd_matches_torch)
{
    nb_optim_opts o = defaults(NB_OPTIM_SGD);
    o.lr = 0.1;
    trajectory("sgd_plain", &o, GROUPS_NONE, NULL);
    o.lr = 0.05, o.momentum = 0.9;
    trajectory("sgd_momentum", &o, GROUPS_NONE, NULL);
    o.nesterov = 1;
    trajectory("sgd_nesterov", &o, GROUPS_NONE, NULL);
    o.nesterov = 0, o.dampening = 0.3;
    trajectory("sgd_dampening", &o, GROUPS_NONE, NULL);
    o.dampening = 0, o.momentum = 0.5, o.weight_decay = 0.01;
    trajectory("sgd_weight_decay", &o, GROUPS_NONE, NULL);
}

TEST(optim_rmsprop_matches_torch)
{
    nb_optim_opts o = defaults(NB_OPTIM_RMSPROP);
    trajectory("rmsprop_default", &o, GROUPS_NONE, NULL);
    o.centered = 1;
    trajectory("rmsprop_centered", &o, GROUPS_NONE, NULL);
    o = defaults(NB_OPTIM_RMSPROP);
    o.lr = 0.001, o.momentum = 0.9;
    trajectory("rmsprop_momentum", &o, GROUPS_NONE, NULL);
    o.momentum = 0.5, o.centered = 1, o.alpha = 0.9;
    trajectory("rmsprop_centered_momentum", &o, GROUPS_NONE, NULL);
    o = defaults(NB_OPTIM_RMSPROP);
    o.weight_decay = 0.01;
    trajectory("rmsprop_weight_decay", &o, GROUPS_NONE, NULL);
}

TEST(optim_adagrad_matches_torch)
{
    nb_optim_opts o = defaults(NB_OPTIM_ADAGRAD);
    trajectory("adagrad_default", &o, GROUPS_NONE, NULL);
    o.lr = 0.1, o.lr_decay = 0.05;
    trajectory("adagrad_lr_decay", &o, GROUPS_NONE, NULL);
    o.lr_decay = 0, o.initial_accumulator_value = 0.1;
    trajectory("adagrad_initial_accumulator", &o, GROUPS_NONE, NULL);
    o.initial_accumulator_value = 0, o.weight_decay = 0.01;
    trajectory("adagrad_weight_decay", &o, GROUPS_NONE, NULL);
}

TEST(optim_adam_matches_torch)
{
    nb_optim_opts o = defaults(NB_OPTIM_ADAM);
    trajectory("adam_default", &o, GROUPS_NONE, NULL);
    o.lr = 0.01, o.amsgrad = 1;
    trajectory("adam_amsgrad", &o, GROUPS_NONE, NULL);
    o.amsgrad = 0, o.weight_decay = 0.01;
    trajectory("adam_weight_decay", &o, GROUPS_NONE, NULL);
    o.weight_decay = 0, o.beta1 = 0.8, o.beta2 = 0.99, o.eps = 1e-6;
    trajectory("adam_betas", &o, GROUPS_NONE, NULL);
}

TEST(optim_adamw_matches_torch)
{
    nb_optim_opts o = defaults(NB_OPTIM_ADAMW);
    trajectory("adamw_default", &o, GROUPS_NONE, NULL);
    o.lr = 0.01, o.weight_decay = 0.05, o.amsgrad = 1;
    trajectory("adamw_amsgrad", &o, GROUPS_NONE, NULL);
}

TEST(optim_groups_match_torch)
{
    nb_optim_opts o = defaults(NB_OPTIM_SGD), b;
    o.lr = 0.05, o.momentum = 0.9, o.weight_decay = 0.01;
    b = o;
    b.lr = 0.1, b.weight_decay = 0;
    trajectory("groups_sgd", &o, GROUPS_BIASES, &b);
    o = defaults(NB_OPTIM_ADAMW);
    o.lr = 0.01, o.weight_decay = 0.1;
    b = o;
    b.lr = 0.005;
    trajectory("groups_adamw", &o, GROUPS_NO_DECAY_1D, &b);
    o = defaults(NB_OPTIM_ADAGRAD);
    o.lr = 0.05, o.initial_accumulator_value = 0.1;
    b = o;
    b.lr = 0.1, b.lr_decay = 0.01, b.initial_accumulator_value = 0.5;
    trajectory("groups_adagrad", &o, GROUPS_BIASES, &b);
}

/* ---- two steps by hand on three weights ----------------------------------------- */

/* A model with one parameter "w" of 3 weights. */
static nb_model *three(void)
{
    nb_model *m = nb_model_new("three", "");
    if (!m || nb_model_add_param(m, "w", 1, (int64_t[]){3}) != 0) return NULL;
    m->params[0].t.data[0] = 0.5f;
    m->params[0].t.data[1] = -1.25f;
    m->params[0].t.data[2] = 2.0f;
    return m;
}

/* The gradient of sum(c_i w_i^2 / 2 + d_i w_i) (fixed c, d), in double. */
static const double C3[3] = {1.0, 3.0, 0.5}, D3[3] = {0.25, -0.5, 1.0};
static double grad3(int i, double w) { return C3[i] * w + D3[i]; }

/* The update of every optimizer written out in double from nabla/optim.h;
 * w, st (state, 3 slots x 3) advance one step t. */
static void hand_step(const nb_optim_opts *o, int64_t t, double w[3], double st[3][3])
{
    for (int i = 0; i < 3; i++) {
        double g = grad3(i, (float)w[i]), p = w[i];
        if (o->kind != NB_OPTIM_ADAMW) g += o->weight_decay * p;
        switch (o->kind) {
        case NB_OPTIM_SGD:
            if (o->momentum != 0) {
                double *v = &st[0][i];
                *v = t == 1 ? g : o->momentum * *v + (1 - o->dampening) * g;
                g = o->nesterov ? g + o->momentum * *v : *v;
            }
            w[i] = p - o->lr * g;
            break;
        case NB_OPTIM_RMSPROP: {
            double *s = &st[0][i], *b = &st[1][i], *a = &st[2][i];
            *s = o->alpha * *s + (1 - o->alpha) * g * g;
            double d;
            if (o->centered) {
                *a = o->alpha * *a + (1 - o->alpha) * g;
                d = sqrt(*s - *a * *a) + o->eps;
            } else {
                d = sqrt(*s) + o->eps;
            }
            if (o->momentum > 0) {
                *b = o->momentum * *b + g / d;
                w[i] = p - o->lr * *b;
            } else {
                w[i] = p - o->lr * g / d;
            }
            break;
        }
        case NB_OPTIM_ADAGRAD: {
            double *s = &st[0][i];
            if (t == 1) *s = o->initial_accumulator_value;
            *s += g * g;
            w[i] = p - o->lr / (1 + (double)(t - 1) * o->lr_decay) * g / (sqrt(*s) + o->eps);
            break;
        }
        default: {   /* Adam, AdamW */
            double *m = &st[0][i], *v = &st[1][i], *vmax = &st[2][i];
            if (o->kind == NB_OPTIM_ADAMW) p *= 1 - o->lr * o->weight_decay;
            *m = o->beta1 * *m + (1 - o->beta1) * g;
            *v = o->beta2 * *v + (1 - o->beta2) * g * g;
            *vmax = fmax(*vmax, *v);
            double vhat = (o->amsgrad ? *vmax : *v) / (1 - pow(o->beta2, (double)t));
            double mhat = *m / (1 - pow(o->beta1, (double)t));
            w[i] = p - o->lr * mhat / (sqrt(vhat) + o->eps);
            break;
        }
        }
    }
}

static void by_hand(const char *what, const nb_optim_opts *opts)
{
    nb_model *m = three();
    CHECK(m);
    nb_optimizer *o = nb_optim_new(m, opts);
    CHECK_MSG(o, "%s: %s", what, nb_last_error());
    float *w = m->params[0].t.data, *g = m->params[0].t.grad;
    double hw[3] = {w[0], w[1], w[2]}, st[3][3] = {{0}};
    int ok = 1;
    for (int64_t t = 1; t <= 2 && ok; t++) {
        for (int i = 0; i < 3; i++) g[i] = (float)grad3(i, w[i]);
        hand_step(opts, t, hw, st);
        ok = nb_optim_step(o) == NB_OK;
        for (int i = 0; i < 3 && ok; i++)
            if (!(fabs(w[i] - hw[i]) <= 1e-6 * fabs(hw[i]) + 1e-7)) {
                nbt_fail(__FILE__, __LINE__, "%s step %lld: w[%d] = %.9g, by hand %.9g", what, (long long)t, i,
                         w[i], hw[i]);
                ok = 0;
            }
    }
    nb_optim_free(o);
    nb_model_free(m);
    CHECK(ok);
}

TEST(optim_two_steps_by_hand)
{
    nb_optim_opts o = defaults(NB_OPTIM_SGD);
    o.lr = 0.1;
    by_hand("sgd", &o);
    o.momentum = 0.9, o.dampening = 0.2, o.weight_decay = 0.1;
    by_hand("sgd momentum", &o);
    o.dampening = 0, o.nesterov = 1;
    by_hand("sgd nesterov", &o);

    o = defaults(NB_OPTIM_RMSPROP);
    by_hand("rmsprop", &o);
    o.centered = 1, o.momentum = 0.8, o.alpha = 0.9, o.weight_decay = 0.05, o.eps = 1e-3;
    by_hand("rmsprop centered momentum", &o);

    o = defaults(NB_OPTIM_ADAGRAD);
    by_hand("adagrad", &o);
    o.lr_decay = 0.5, o.initial_accumulator_value = 0.3, o.weight_decay = 0.2;
    by_hand("adagrad options", &o);

    o = defaults(NB_OPTIM_ADAM);
    o.lr = 0.1;
    by_hand("adam", &o);
    o.amsgrad = 1, o.weight_decay = 0.1, o.beta1 = 0.5, o.beta2 = 0.7;
    by_hand("adam amsgrad", &o);

    o = defaults(NB_OPTIM_ADAMW);
    o.lr = 0.1, o.weight_decay = 0.5;
    by_hand("adamw", &o);
    o.amsgrad = 1;
    by_hand("adamw amsgrad", &o);
}

TEST(optim_amsgrad_keeps_the_largest_second_moment)
{
    /* a large gradient then a small one: vmax keeps the first v */
    nb_model *m = three();
    CHECK(m);
    nb_optim_opts opts = defaults(NB_OPTIM_ADAM);
    opts.amsgrad = 1;
    nb_optimizer *o = nb_optim_new(m, &opts);
    CHECK(o);
    float *g = m->params[0].t.grad;
    g[0] = 10, g[1] = -10, g[2] = 1;
    CHECK_OK(nb_optim_step(o));
    g[0] = 0.01f, g[1] = 0.01f, g[2] = 0.01f;
    CHECK_OK(nb_optim_step(o));
    const float *v = nb_optim_state_find(o, "exp_avg_sq"), *vmax = nb_optim_state_find(o, "max_exp_avg_sq");
    CHECK(v && vmax);
    CHECK_NEAR(vmax[0], 0.001 * 100, 1e-6, 0);
    CHECK(vmax[0] > v[0] && vmax[1] > v[1] && vmax[2] > v[2]);
    nb_optim_free(o);
    nb_model_free(m);
}

/* ---- options, names, errors --------------------------------------------------- */

TEST(optim_defaults_are_torchs)
{
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_ADAM);
    CHECK(o.kind == NB_OPTIM_ADAM && o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8 &&
          o.weight_decay == 0 && !o.amsgrad);
    o = nb_optim_defaults(NB_OPTIM_ADAMW);
    CHECK(o.lr == 1e-3 && o.weight_decay == 1e-2 && o.eps == 1e-8 && o.beta2 == 0.999);
    o = nb_optim_defaults(NB_OPTIM_RMSPROP);
    CHECK(o.lr == 1e-2 && o.alpha == 0.99 && o.eps == 1e-8 && o.momentum == 0 && !o.centered);
    o = nb_optim_defaults(NB_OPTIM_ADAGRAD);
    CHECK(o.lr == 1e-2 && o.eps == 1e-10 && o.lr_decay == 0 && o.initial_accumulator_value == 0);
    o = nb_optim_defaults(NB_OPTIM_SGD);
    CHECK(o.lr == 1e-3 && o.momentum == 0 && o.dampening == 0 && !o.nesterov);
    CHECK(nb_optim_defaults((nb_optim_kind)42).kind == NB_OPTIM_UNKNOWN);

    const char *names[] = {"SGD", "RMSprop", "Adagrad", "Adam", "AdamW"};
    const char *keys[] = {"sgd", "rmsprop", "adagrad", "adam", "adamw"};
    for (int k = 0; k < NB_OPTIM_KIND_COUNT; k++) {
        CHECK(!strcmp(nb_optim_kind_name((nb_optim_kind)k), names[k]));
        CHECK(nb_optim_kind_from_name(keys[k]) == k);
        CHECK(nb_optim_kind_from_name(names[k]) == k);
    }
    CHECK(nb_optim_kind_from_name("ADAMW") == NB_OPTIM_ADAMW);
    CHECK(nb_optim_kind_from_name("adam ") == NB_OPTIM_UNKNOWN && strstr(nb_last_error(), "unknown optimizer"));
    CHECK(nb_optim_kind_from_name("") == NB_OPTIM_UNKNOWN);
    CHECK(nb_optim_kind_from_name(NULL) == NB_OPTIM_UNKNOWN);
    CHECK(nb_optim_kind_name(NB_OPTIM_UNKNOWN) == NULL);
}

TEST(optim_rejects_bad_options_as_torch)
{
    struct { nb_optim_kind kind; const char *field; double value; const char *msg; } bad[] = {
        {NB_OPTIM_SGD, "lr", -1, "SGD: invalid lr -1"},
        {NB_OPTIM_SGD, "momentum", -0.5, "invalid momentum"},
        {NB_OPTIM_SGD, "weight_decay", -1e-4, "invalid weight_decay"},
        {NB_OPTIM_RMSPROP, "alpha", -0.1, "RMSprop: invalid alpha"},
        {NB_OPTIM_RMSPROP, "eps", -1e-8, "invalid eps"},
        {NB_OPTIM_RMSPROP, "momentum", NAN, "invalid momentum"},
        {NB_OPTIM_ADAGRAD, "lr_decay", -1, "Adagrad: invalid lr_decay"},
        {NB_OPTIM_ADAGRAD, "initial_accumulator_value", -1, "invalid initial_accumulator_value"},
        {NB_OPTIM_ADAM, "beta1", 1.0, "beta parameter at index 0"},
        {NB_OPTIM_ADAM, "beta2", -0.1, "beta parameter at index 1"},
        {NB_OPTIM_ADAMW, "beta2", 1.5, "AdamW: invalid beta2"},
        {NB_OPTIM_ADAMW, "lr", NAN, "invalid lr"},
        {NB_OPTIM_ADAM, "eps", -1, "Adam: invalid eps"},
    };
    nb_model *m = three();
    CHECK(m);
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        nb_optim_opts o = nb_optim_defaults(bad[c].kind);
        double *f = !strcmp(bad[c].field, "lr") ? &o.lr
                  : !strcmp(bad[c].field, "momentum") ? &o.momentum
                  : !strcmp(bad[c].field, "weight_decay") ? &o.weight_decay
                  : !strcmp(bad[c].field, "alpha") ? &o.alpha
                  : !strcmp(bad[c].field, "eps") ? &o.eps
                  : !strcmp(bad[c].field, "lr_decay") ? &o.lr_decay
                  : !strcmp(bad[c].field, "initial_accumulator_value") ? &o.initial_accumulator_value
                  : !strcmp(bad[c].field, "beta1") ? &o.beta1 : &o.beta2;
        *f = bad[c].value;
        CHECK_ERR(nb_optim_validate(&o), NB_ERR_ARG, bad[c].msg);
        CHECK_MSG(!nb_optim_new(m, &o) && strstr(nb_last_error(), bad[c].msg), "case %zu: %s", c, nb_last_error());
    }
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_SGD);
    o.nesterov = 1;
    CHECK_ERR(nb_optim_validate(&o), NB_ERR_ARG, "nesterov momentum requires a momentum");
    o.momentum = 0.9, o.dampening = 0.1;
    CHECK_ERR(nb_optim_validate(&o), NB_ERR_ARG, "zero dampening");
    o.kind = NB_OPTIM_UNKNOWN;
    CHECK_ERR(nb_optim_validate(&o), NB_ERR_ARG, "unknown optimizer kind");
    CHECK_ERR(nb_optim_validate(NULL), NB_ERR_ARG, "NULL");
    CHECK(!nb_optim_new(NULL, &o) && strstr(nb_last_error(), "model is NULL"));
    CHECK(!nb_optim_new(m, NULL));
    /* eps = 0, betas = 0, momentum ignored by Adam: all accepted as by torch */
    o = nb_optim_defaults(NB_OPTIM_ADAM);
    o.eps = 0, o.beta1 = 0, o.beta2 = 0, o.momentum = -1;
    CHECK_OK(nb_optim_validate(&o));
    CHECK_ERR(nb_optim_step(NULL), NB_ERR_ARG, "NULL");
    nb_optim_free(NULL);
    nb_model_free(m);
}

/* A non-finite gradient anywhere: the step fails and nothing moves. */
TEST(optim_nonfinite_gradient_changes_nothing)
{
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < NB_OPTIM_KIND_COUNT; k++) {
        nb_rng r;
        nb_rng_seed(&r, 5);
        nb_model *m = NULL;
        CHECK_OK(nb_model_build("mlp", "4,3,2", &r, &m));
        nb_optim_opts opts = nb_optim_defaults((nb_optim_kind)k);
        opts.momentum = k == NB_OPTIM_SGD || k == NB_OPTIM_RMSPROP ? 0.9 : 0;
        opts.centered = opts.amsgrad = 1;
        opts.weight_decay = 0.01;
        nb_optimizer *o = nb_optim_new(m, &opts);
        CHECK(o);
        for (size_t i = 0; i < m->numel; i++) m->grad[i] = 0.01f * (float)(i % 7) - 0.02f;
        CHECK_OK(nb_optim_step(o));            /* some state first */
        size_t n = m->numel, ns = (size_t)nb_optim_state_count(o);
        CHECK(ns >= 1);
        float *keep = malloc((ns + 1) * n * sizeof(float));
        CHECK(keep);
        memcpy(keep, m->data, n * sizeof(float));
        for (size_t s = 0; s < ns; s++) {
            float *buf;
            CHECK_OK(nb_optim_state_get(o, (int)s, NULL, &buf, NULL));
            memcpy(keep + (s + 1) * n, buf, n * sizeof(float));
        }
        int same = 1;
        for (int b = 0; b < 3; b++) {
            size_t at = m->params[m->nparams - 1].offset + 1;   /* the last parameter */
            m->grad[at] = bad[b];
            nb_status st = nb_optim_step(o);
            m->grad[at] = 0;
            CHECK_MSG(st == NB_ERR_NONFINITE && strstr(nb_last_error(), "non-finite gradient in 3.bias"),
                      "%s: %s", nb_optim_kind_name((nb_optim_kind)k), nb_last_error());
            same = same && o->steps == 1 && !memcmp(keep, m->data, n * sizeof(float));
            for (size_t s = 0; s < ns; s++) {
                float *buf;
                CHECK_OK(nb_optim_state_get(o, (int)s, NULL, &buf, NULL));
                same = same && !memcmp(keep + (s + 1) * n, buf, n * sizeof(float));
            }
        }
        free(keep);
        CHECK_OK(nb_optim_step(o));            /* and it goes on afterwards */
        CHECK(o->steps == 2);
        nb_optim_free(o);
        nb_model_free(m);
        CHECK_MSG(same, "%s: weights or state changed", nb_optim_kind_name((nb_optim_kind)k));
    }
}

/* A model large enough for the step to split its flat buffers between
 * threads, with a parameter across the split (mlp 784,256,10: 1.weight is
 * 200,704 of 203,530 floats): weights and state after 3 steps on 2 threads
 * are the 1-thread bits for every kind (with weight decay and a group of
 * its own for the biases), and a non-finite gradient is reported in the
 * first parameter that has one, whichever part finds it. */
static float *big_steps(nb_optim_kind k, int threads, size_t *n)
{
    nb_set_threads(threads);
    nb_rng r;
    nb_rng_seed(&r, 11);
    nb_model *m = NULL;
    float *out = NULL;
    if (nb_model_build("mlp", "784,256,10", &r, &m) != NB_OK) return NULL;
    nb_optim_opts opts = nb_optim_defaults(k);
    opts.momentum = k == NB_OPTIM_SGD || k == NB_OPTIM_RMSPROP ? 0.9 : 0;
    opts.centered = opts.amsgrad = 1;
    opts.weight_decay = 0.01;
    nb_optimizer *o = nb_optim_new(m, &opts);
    nb_optim_opts bias = opts;
    bias.lr *= 2;
    const int g = o ? nb_optim_add_group(o, &bias) : -1;
    if (g < 0 || nb_optim_set_group(o, 1, g) != NB_OK || nb_optim_set_group(o, 3, g) != NB_OK) goto done;
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < m->numel; i++) m->grad[i] = 0.01f * (float)((i * 7 + (size_t)step) % 13) - 0.06f;
        if (nb_optim_step(o) != NB_OK) goto done;
    }
    const int ns = nb_optim_state_count(o);
    *n = m->numel * (size_t)(ns + 1);
    out = malloc(*n * sizeof(float));
    if (!out) goto done;
    memcpy(out, m->data, m->numel * sizeof(float));
    for (int q = 0; q < ns; q++) {
        float *buf;
        if (nb_optim_state_get(o, q, NULL, &buf, NULL) != NB_OK) {
            free(out);
            out = NULL;
            goto done;
        }
        memcpy(out + (size_t)(q + 1) * m->numel, buf, m->numel * sizeof(float));
    }
done:
    nb_optim_free(o);
    nb_model_free(m);
    nb_set_threads(2);
    return out;
}

TEST(optim_step_split_over_threads_same_bits)
{
    for (int k = 0; k < NB_OPTIM_KIND_COUNT; k++) {
        size_t n1 = 0, n2 = 0;
        float *a = big_steps((nb_optim_kind)k, 1, &n1), *b = big_steps((nb_optim_kind)k, 2, &n2);
        CHECK_MSG(a && b && n1 == n2 && !memcmp(a, b, n1 * sizeof(float)), "%s: %s",
                  nb_optim_kind_name((nb_optim_kind)k), a && b ? "1 and 2 threads differ" : nb_last_error());
        free(a);
        free(b);
    }
    nb_rng r;
    nb_rng_seed(&r, 12);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", "784,256,10", &r, &m)); /* 1.weight 1.bias 3.weight 3.bias */
    nb_optimizer *o = nb_optim_new(m, &(nb_optim_opts){.kind = NB_OPTIM_SGD, .lr = 0.1});
    CHECK(o);
    memset(m->grad, 0, m->numel * sizeof(float));
    m->grad[m->params[2].offset + 5] = NAN;       /* in the second half of the buffer */
    CHECK_ERR(nb_optim_step(o), NB_ERR_NONFINITE, "non-finite gradient in 3.weight");
    m->grad[m->params[0].offset + 150000] = INFINITY; /* and one in 1.weight, also past the middle */
    CHECK_ERR(nb_optim_step(o), NB_ERR_NONFINITE, "non-finite gradient in 1.weight");
    m->grad[m->params[0].offset + 10] = -INFINITY; /* the first half too */
    CHECK_ERR(nb_optim_step(o), NB_ERR_NONFINITE, "non-finite gradient in 1.weight");
    CHECK(o->steps == 0);
    nb_optim_free(o);
    nb_model_free(m);
}

/* ---- groups, buffers, the legacy interface ---------------------------------------- */

TEST(optim_groups_lrs_and_no_decay_recipe)
{
    nb_rng r;
    nb_rng_seed(&r, 9);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", "4,3,2", &r, &m));   /* 1.weight 1.bias 3.weight 3.bias */
    nb_optim_opts sgd = nb_optim_defaults(NB_OPTIM_SGD);
    sgd.lr = 0.1, sgd.weight_decay = 0.5;
    nb_optimizer *o = nb_optim_new(m, &sgd);
    CHECK(o && nb_optim_group_count(o) == 1 && nb_optim_param_group(o, 3) == 0);
    /* a group of another kind or with bad options is refused */
    nb_optim_opts adam = nb_optim_defaults(NB_OPTIM_ADAM);
    CHECK(nb_optim_add_group(o, &adam) == -1 && strstr(nb_last_error(), "same kind"));
    nb_optim_opts bad = sgd;
    bad.lr = -1;
    CHECK(nb_optim_add_group(o, &bad) == -1 && strstr(nb_last_error(), "invalid lr"));
    CHECK_OK(nb_optim_no_decay_for_1d(o));
    CHECK(nb_optim_group_count(o) == 2);
    for (int i = 0; i < 4; i++) CHECK(nb_optim_param_group(o, i) == (i % 2 ? 1 : 0));
    CHECK(nb_optim_param_group(o, 4) == -1 && nb_optim_param_group(o, -1) == -1);
    nb_optim_opts g1;
    CHECK_OK(nb_optim_get_group(o, 1, &g1));
    CHECK(g1.weight_decay == 0 && g1.lr == 0.1 && g1.kind == NB_OPTIM_SGD);
    CHECK_ERR(nb_optim_get_group(o, 2, &g1), NB_ERR_ARG, "no group 2");
    /* learning rates: o->lr is group 0's */
    CHECK_OK(nb_optim_set_lr(o, 1, 0.25));
    CHECK(nb_optim_get_lr(o, 0) == 0.1 && nb_optim_get_lr(o, 1) == 0.25 && isnan(nb_optim_get_lr(o, 2)));
    o->lr = 0.2;
    CHECK(nb_optim_get_lr(o, 0) == 0.2);
    CHECK_OK(nb_optim_get_group(o, 0, &g1));
    CHECK(g1.lr == 0.2);
    CHECK_ERR(nb_optim_set_lr(o, 5, 0.1), NB_ERR_ARG, "no group 5");
    CHECK_ERR(nb_optim_set_lr(o, 0, -0.1), NB_ERR_ARG, "invalid lr");
    CHECK_ERR(nb_optim_set_group(o, 4, 0), NB_ERR_ARG, "no parameter 4");
    CHECK_ERR(nb_optim_set_group(o, 0, 2), NB_ERR_ARG, "no group 2");
    /* one step: weights get decay 0.5 at lr 0.2, biases no decay at lr 0.25 */
    float before[256], grad[256];
    CHECK(m->numel <= 256);
    for (size_t i = 0; i < m->numel; i++) m->grad[i] = grad[i] = 0.1f * (float)(i % 5) - 0.2f;
    memcpy(before, m->data, m->numel * sizeof(float));
    CHECK_OK(nb_optim_step(o));
    for (int k = 0; k < 4; k++) {
        const nb_param *p = &m->params[k];
        for (int64_t i = 0; i < nb_tensor_numel(&p->t); i++) {
            size_t j = p->offset + (size_t)i;
            double want = k % 2 ? before[j] - 0.25 * grad[j] : before[j] - 0.2 * (grad[j] + 0.5 * before[j]);
            CHECK_NEAR(m->data[j], want, 1e-6, 1e-7);
        }
    }
    /* set_lr(-1): every group; set_group_opts edits a group */
    CHECK_OK(nb_optim_set_lr(o, -1, 0.01));
    CHECK(o->lr == 0.01 && nb_optim_get_lr(o, 1) == 0.01);
    nb_optim_opts g0;
    CHECK_OK(nb_optim_get_group(o, 0, &g0));
    g0.lr = 0.03, g0.momentum = 0.9;
    CHECK(nb_optim_state_count(o) == 0);
    CHECK_OK(nb_optim_set_group_opts(o, 0, &g0));
    CHECK(o->lr == 0.03 && nb_optim_state_count(o) == 1);   /* momentum_buffer appears */
    g0.kind = NB_OPTIM_ADAM;
    CHECK_ERR(nb_optim_set_group_opts(o, 0, &g0), NB_ERR_ARG, "same kind");
    nb_optim_free(o);
    nb_model_free(m);
}

TEST(optim_never_touches_buffers_frozen_or_no_decay_parameters)
{
    nb_ctx *ctx = nb_ctx_new(3);
    nb_model *m = nb_model_new("bn", "");
    m->root = nb_nn_sequential(m);
    CHECK_OK(nb_sequential_add(m->root, nb_nn_linear(m, nb_ctx_rng(ctx), 3, 4, 1)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_batch_norm1d(m, 4, 1e-5f, 0.1f, 1)));
    /* 0.weight 0.bias 1.weight 1.bias 1.running_mean 1.running_var 1.num_batches_tracked */
    CHECK(m->nparams == 7 && m->params[4].buffer);
    for (int k = 0; k < NB_OPTIM_KIND_COUNT; k++) {
        nb_optim_opts opts = nb_optim_defaults((nb_optim_kind)k);
        opts.weight_decay = 0.5;
        opts.lr = 0.1;
        nb_optimizer *o = nb_optim_new(m, &opts);
        CHECK(o);
        CHECK_ERR(nb_optim_set_group(o, 5, 0), NB_ERR_ARG, "buffer");
        m->params[1].t.requires_grad = 0;      /* frozen, as torch skips a None grad */
        m->params[2].no_decay = 1;             /* gradient 0: only decay could move it */
        for (size_t i = 0; i < m->numel; i++) m->grad[i] = 1.0f;
        for (int64_t i = 0; i < 4; i++) m->params[2].t.grad[i] = 0;
        float keep[256];
        CHECK(m->numel <= 256);
        memcpy(keep, m->data, m->numel * sizeof(float));
        CHECK_OK(nb_optim_step(o));
        for (int p = 0; p < m->nparams; p++) {
            int moves = p == 0 || p == 3;
            const nb_param *q = &m->params[p];
            int changed = memcmp(keep + q->offset, q->t.data, (size_t)nb_tensor_numel(&q->t) * sizeof(float)) != 0;
            CHECK_MSG(changed == moves, "%s: %s %s", nb_optim_kind_name((nb_optim_kind)k), q->name,
                      changed ? "changed" : "did not change");
        }
        m->params[1].t.requires_grad = 1;
        m->params[2].no_decay = 0;
        nb_optim_free(o);
    }
    nb_model_free(m);
    nb_ctx_free(ctx);
}

TEST(optim_sgd_new_is_the_generic_sgd)
{
    nb_optim_opts g = nb_optim_defaults(NB_OPTIM_SGD);
    g.lr = 0.05f, g.momentum = 0.9f, g.dampening = 0.1f, g.weight_decay = 0.01f;
    float w[2][256] = {{0}};
    for (int run = 0; run < 2; run++) {
        nb_rng r;
        nb_rng_seed(&r, 21);
        nb_model *m = NULL;
        CHECK_OK(nb_model_build("mlp", "5,4,3", &r, &m));
        CHECK(m->numel <= 256);
        nb_optimizer *o = run ? nb_optim_new(m, &g)
                              : nb_sgd_new(m, (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .dampening = 0.1f,
                                                            .weight_decay = 0.01f});
        CHECK(o && o->kind == NB_OPTIM_SGD && !strcmp(o->name, "SGD"));
        for (int s = 0; s < 5; s++) {
            for (size_t i = 0; i < m->numel; i++) m->grad[i] = sinf((float)(i + 7 * s));
            CHECK_OK(nb_optim_step(o));
        }
        memcpy(w[run], m->data, m->numel * sizeof(float));
        nb_optim_free(o);
        nb_model_free(m);
    }
    CHECK(!memcmp(w[0], w[1], sizeof w[0]));
}

/* ---- state ------------------------------------------------------------------ */

TEST(optim_state_names_layout_and_restore)
{
    struct { nb_optim_kind kind; int momentum, centered, amsgrad; const char *names; } cases[] = {
        {NB_OPTIM_SGD, 0, 0, 0, ""},
        {NB_OPTIM_SGD, 1, 0, 0, "momentum_buffer,"},
        {NB_OPTIM_RMSPROP, 0, 0, 0, "square_avg,"},
        {NB_OPTIM_RMSPROP, 1, 1, 0, "square_avg,momentum_buffer,grad_avg,"},
        {NB_OPTIM_RMSPROP, 0, 1, 0, "square_avg,grad_avg,"},
        {NB_OPTIM_ADAGRAD, 0, 0, 0, "sum,"},
        {NB_OPTIM_ADAM, 0, 0, 0, "exp_avg,exp_avg_sq,"},
        {NB_OPTIM_ADAMW, 0, 0, 1, "exp_avg,exp_avg_sq,max_exp_avg_sq,"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nb_optim_opts opts = nb_optim_defaults(cases[c].kind);
        opts.momentum = cases[c].momentum ? 0.9 : 0;
        opts.centered = cases[c].centered, opts.amsgrad = cases[c].amsgrad;
        opts.initial_accumulator_value = 0.25;
        opts.lr = 0.01;
        nb_model *m[2] = {NULL, NULL};
        nb_optimizer *o[2];
        for (int k = 0; k < 2; k++) {
            nb_rng r;
            nb_rng_seed(&r, 4);
            CHECK_OK(nb_model_build("mlp", "5,4,3", &r, &m[k]));
            o[k] = nb_optim_new(m[k], &opts);
            CHECK(o[k]);
        }
        char names[128] = "";
        for (int i = 0; i < nb_optim_state_count(o[0]); i++) {
            const char *name;
            float *buf;
            size_t len;
            CHECK_OK(nb_optim_state_get(o[0], i, &name, &buf, &len));
            CHECK(len == m[0]->numel && nb_optim_state_find(o[0], name) == buf);
            strcat(names, name);
            strcat(names, ",");
        }
        CHECK_MSG(!strcmp(names, cases[c].names), "%s: state %s", nb_optim_kind_name(cases[c].kind), names);
        CHECK_ERR(nb_optim_state_get(o[0], nb_optim_state_count(o[0]), NULL, NULL, NULL), NB_ERR_ARG, "no state");
        CHECK(!nb_optim_state_find(o[0], "nonsense"));
        if (cases[c].kind == NB_OPTIM_ADAGRAD) {   /* sum starts at initial_accumulator_value */
            const float *s = nb_optim_state_find(o[0], "sum");
            CHECK(s[0] == 0.25f && s[m[0]->params[3].offset + 2] == 0.25f);
        }
        /* three steps on o[0]; copy weights, state and step count into o[1]; both go on alike */
        for (int s = 0; s < 5; s++) {
            if (s == 3) {
                memcpy(m[1]->data, m[0]->data, m[0]->numel * sizeof(float));
                for (int i = 0; i < nb_optim_state_count(o[0]); i++) {
                    float *a, *b;
                    size_t len;
                    CHECK_OK(nb_optim_state_get(o[0], i, NULL, &a, &len));
                    CHECK_OK(nb_optim_state_get(o[1], i, NULL, &b, NULL));
                    memcpy(b, a, len * sizeof(float));
                }
                o[1]->steps = o[0]->steps;
            }
            for (int k = 0; k < 2; k++) {
                for (size_t i = 0; i < m[k]->numel; i++) m[k]->grad[i] = cosf((float)(3 * i + s)) + 0.01f * m[k]->data[i];
                if (k == 0 || s >= 3) CHECK_OK(nb_optim_step(o[k]));
            }
            /* SGD's momentum buffer after the first step is the gradient */
            if (s == 0 && cases[c].kind == NB_OPTIM_SGD && cases[c].momentum)
                CHECK(nb_optim_state_find(o[0], "momentum_buffer")[2] == m[0]->grad[2]);
        }
        CHECK(o[0]->steps == 5 && o[1]->steps == 5);
        CHECK_MSG(!memcmp(m[0]->data, m[1]->data, m[0]->numel * sizeof(float)), "%s: restored run differs",
                  nb_optim_kind_name(cases[c].kind));
        for (int k = 0; k < 2; k++) {
            nb_optim_free(o[k]);
            nb_model_free(m[k]);
        }
    }
}

TEST(optim_adagrad_sum_starts_at_the_constructors_value)
{
    /* as torch: a group's own initial_accumulator_value is not used */
    nb_model *m = three();
    CHECK(m);
    CHECK(nb_model_add_param(m, "b", 1, (int64_t[]){2}) == 1);
    nb_optim_opts a = nb_optim_defaults(NB_OPTIM_ADAGRAD), b = a;
    a.initial_accumulator_value = 1, b.initial_accumulator_value = 2;
    nb_optimizer *o = nb_optim_new(m, &a);
    CHECK(o);
    CHECK(nb_optim_add_group(o, &b) == 1);
    CHECK_OK(nb_optim_set_group(o, 1, 1));
    const float *s = nb_optim_state_find(o, "sum");
    CHECK(s[0] == 1 && s[2] == 1 && s[m->params[1].offset] == 1 && s[m->params[1].offset + 1] == 1);
    nb_optim_free(o);
    nb_model_free(m);
}

TEST(optim_results_do_not_depend_on_threads)
{
    /* one large parameter (the threaded path) and one small; 1 vs 3 threads */
    int keep = nb_get_threads();
    for (int k = 0; k < NB_OPTIM_KIND_COUNT; k++) {
        float *w[2] = {NULL, NULL};
        size_t n = 0;
        for (int run = 0; run < 2; run++) {
            nb_set_threads(run ? 3 : 1);
            nb_model *m = nb_model_new("big", "");
            CHECK(m && nb_model_add_param(m, "w", 2, (int64_t[]){300, 301}) == 0);
            CHECK(nb_model_add_param(m, "b", 1, (int64_t[]){301}) == 1);
            for (size_t i = 0; i < m->numel; i++) m->data[i] = sinf((float)i);
            nb_optim_opts opts = nb_optim_defaults((nb_optim_kind)k);
            opts.momentum = 0.9, opts.centered = 1, opts.amsgrad = 1, opts.weight_decay = 0.01;
            nb_optimizer *o = nb_optim_new(m, &opts);
            CHECK(o);
            for (int s = 0; s < 3; s++) {
                for (size_t i = 0; i < m->numel; i++) m->grad[i] = cosf((float)(i * (s + 1))) + m->data[i];
                CHECK_OK(nb_optim_step(o));
            }
            n = m->numel;
            w[run] = malloc(n * sizeof(float));
            CHECK(w[run]);
            memcpy(w[run], m->data, n * sizeof(float));
            nb_optim_free(o);
            nb_model_free(m);
        }
        nb_set_threads(keep);
        int same = !memcmp(w[0], w[1], n * sizeof(float));
        free(w[0]);
        free(w[1]);
        CHECK_MSG(same, "%s differs with 3 threads", nb_optim_kind_name((nb_optim_kind)k));
    }
}

TEST(optim_refuses_a_model_that_grew)
{
    nb_model *m = three();
    CHECK(m);
    nb_optimizer *o = nb_optim_new(m, &(nb_optim_opts){.kind = NB_OPTIM_SGD, .lr = 0.1});
    CHECK(o);
    CHECK(nb_model_add_param(m, "late", 1, (int64_t[]){2}) == 1);
    CHECK_ERR(nb_optim_step(o), NB_ERR_STATE, "when the optimizer was made");
    nb_optim_free(o);
    nb_model_free(m);
}

TEST(optim_step_refuses_a_bad_lr_set_directly)
{
    nb_model *m = three();
    CHECK(m);
    nb_optimizer *o = nb_optim_new(m, &(nb_optim_opts){.kind = NB_OPTIM_SGD, .lr = 0.1});
    CHECK(o);
    float w0 = m->params[0].t.data[0];
    o->lr = NAN;
    CHECK_ERR(nb_optim_step(o), NB_ERR_ARG, "group 0 has an invalid lr");
    CHECK(m->params[0].t.data[0] == w0 && o->steps == 0);
    nb_optim_free(o);
    nb_model_free(m);
}
