/* The adding problem (nabla/seq.h): data, training with Adam and clipping,
 * and the gradient norms ||dL/dh_t|| that show whether a recurrent cell's
 * gradient vanishes back in time (the notes §4, §14). */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>
#include <time.h>

void nb_adding_batch(nb_rng *rng, int T, int n, float *x, float *y)
{
    for (int b = 0; b < n; b++) {
        float *xb = x + (int64_t)b * T * 2;
        for (int t = 0; t < T; t++) {
            xb[2 * t] = nb_rng_uniform(rng);
            xb[2 * t + 1] = 0.0f;
        }
        int half = T / 2;
        int t1 = (int)nb_rng_below(rng, (uint32_t)half), t2 = half + (int)nb_rng_below(rng, (uint32_t)(T - half));
        xb[2 * t1 + 1] = xb[2 * t2 + 1] = 1.0f;
        y[b] = xb[2 * t1] + xb[2 * t2];
    }
}

nb_adding_opts nb_adding_defaults(void)
{
    return (nb_adding_opts){.mode = NB_RNN_LSTM, .T = 100, .steps = 3000, .hidden = 64, .batch = 64, .lr = 3e-3,
                            .clip = 1.0, .probe_batches = 4, .seed = 1};
}

void nb_adding_result_free(nb_adding_result *r)
{
    if (!r) return;
    NB_FREE(r->grad_init);
    NB_FREE(r->grad_final);
    r->grad_init = r->grad_final = NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const nb_adding_opts *o;
    nb_model *m;
    nb_ctx *ctx;
    float *x, *y;           /* one batch */
    nb_tensor **steps;      /* T probes */
} run;

/* The mean MSE of one fresh batch from rng, its graph on ctx (reset first);
 * with probes, run->steps gets h_t of every step. NULL on error. */
static nb_tensor *batch_loss(run *r, nb_rng *rng, int probe)
{
    const nb_adding_opts *o = r->o;
    nb_ctx_reset(r->ctx);
    nb_adding_batch(rng, o->T, o->batch, r->x, r->y);
    nb_tensor *x = nb_tensor_from(r->ctx, 3, (int64_t[]){o->batch, o->T, 2}, r->x);
    nb_tensor *y = nb_tensor_from(r->ctx, 2, (int64_t[]){o->batch, 1}, r->y);
    nb_rnn_state st = {.steps = r->steps};
    if (probe) memset(r->steps, 0, sizeof *r->steps * (size_t)o->T);
    return nb_mse_loss(r->ctx, nb_seq_forward(r->m, r->ctx, x, probe ? &st : NULL), y, NB_REDUCTION_MEAN);
}

/* Test MSE and ||dL/dh_t|| averaged over probe_batches batches drawn from a
 * generator seeded the same way each time (so init and end see the same data). */
static nb_status probe(run *r, double *mse, double *norms)
{
    const nb_adding_opts *o = r->o;
    nb_rng rng;
    nb_rng_seed(&rng, o->seed ^ 0x9e3779b97f4a7c15ull);
    *mse = 0;
    for (int t = 0; t < o->T; t++) norms[t] = 0;
    for (int k = 0; k < o->probe_batches; k++) {
        nb_tensor *loss = batch_loss(r, &rng, 1);
        if (!loss) return nb_ctx_status(r->ctx);
        nb_status s = nb_backward(r->ctx, loss);
        if (s) return s;
        *mse += nb_tensor_item(loss) / o->probe_batches;
        for (int t = 0; t < o->T; t++) {
            const nb_tensor *h = r->steps[t];
            double ss = 0;
            int64_t n = h && h->grad ? nb_tensor_numel(h) : 0;
            for (int64_t e = 0; e < n; e++) ss += (double)h->grad[e] * h->grad[e];
            norms[t] += sqrt(ss) / o->probe_batches;
        }
    }
    nb_model_zero_grad(r->m); /* the probes must not leak into training */
    nb_ctx_reset(r->ctx);
    return NB_OK;
}

/* Shift the LSTM's forget-gate biases (rows H..2H of bias_ih, gates i, f, g, o). */
static void add_forget_bias(nb_model *m, int H, double v)
{
    int k = nb_model_find_param(m, "rnn.bias_ih_l0");
    if (k < 0) return;
    float *b = nb_model_param(m, k)->data;
    for (int j = H; j < 2 * H; j++) b[j] += (float)v;
}

static nb_status check_opts(const nb_adding_opts *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "adding: NULL options");
    if (!nb_rnn_mode_name(o->mode)) return nb__fail(NB_ERR_ARG, "adding: unknown cell mode %d", (int)o->mode);
    if (o->T < 2 || o->T > 100000) return nb__fail(NB_ERR_ARG, "adding: T must be in [2, 100000] (got %d)", o->T);
    if (o->steps < 0 || o->hidden < 1 || o->batch < 1 || o->probe_batches < 1)
        return nb__fail(NB_ERR_ARG, "adding: steps >= 0, hidden, batch and probe_batches >= 1 (got %d, %d, %d, %d)",
                        o->steps, o->hidden, o->batch, o->probe_batches);
    if (!(o->lr > 0) || !(o->clip >= 0) || !isfinite(o->lr) || !isfinite(o->forget_bias))
        return nb__fail(NB_ERR_ARG, "adding: lr must be > 0, clip >= 0, forget_bias finite (got %g, %g, %g)", o->lr,
                        o->clip, o->forget_bias);
    return NB_OK;
}

/* The training loop: Adam on fresh batches, clipped, logging mean MSEs. */
static nb_status train(run *r, nb_optimizer *opt)
{
    const nb_adding_opts *o = r->o;
    nb_rng rng;
    nb_rng_seed(&rng, o->seed + 1);
    double sum = 0;
    int count = 0;
    for (int step = 1; step <= o->steps; step++) {
        nb_tensor *loss = batch_loss(r, &rng, 0);
        if (!loss) return nb_ctx_status(r->ctx);
        float v = nb_tensor_item(loss);
        if (!isfinite(v)) return nb__fail(NB_ERR_NONFINITE, "adding: the loss is not finite at step %d (try a smaller lr)", step);
        nb_model_zero_grad(r->m);
        nb_status s = nb_backward(r->ctx, loss);
        if (!s && o->clip > 0) s = nb_clip_grad_norm(r->m, o->clip, 2.0, 0, NULL);
        if (!s) s = nb_optim_step(opt);
        if (s) return s;
        sum += v;
        count++;
        if (o->log && o->log_every > 0 && step % o->log_every == 0) {
            o->log(o->log_arg, step, sum / count);
            sum = 0, count = 0;
        }
    }
    nb_ctx_reset(r->ctx);
    return NB_OK;
}

nb_status nb_adding_run(const nb_adding_opts *o, nb_adding_result *res)
{
    if (!res) return nb__fail(NB_ERR_ARG, "adding: NULL result");
    memset(res, 0, sizeof *res);
    nb_status s = check_opts(o);
    if (s) return s;
    char config[96];
    snprintf(config, sizeof config, "%d,2,%d,1,%s", o->T, o->hidden, nb_rnn_mode_name(o->mode));
    run r = {.o = o};
    nb_rng init;
    nb_rng_seed(&init, o->seed);
    nb_optimizer *opt = NULL;
    size_t bx = sizeof(float) * (size_t)o->batch * (size_t)o->T * 2;
    r.x = NB_MALLOC(bx);
    r.y = NB_MALLOC(sizeof(float) * (size_t)o->batch);
    r.steps = NB_MALLOC(sizeof *r.steps * (size_t)o->T);
    res->grad_init = NB_MALLOC(sizeof(double) * (size_t)o->T);
    res->grad_final = NB_MALLOC(sizeof(double) * (size_t)o->T);
    if (!r.x || !r.y || !r.steps || !res->grad_init || !res->grad_final)
        s = nb__fail(NB_ERR_NOMEM, "adding: out of memory");
    if (!s && !(r.ctx = nb_ctx_new(o->seed))) s = nb__fail(NB_ERR_NOMEM, "adding: out of memory");
    if (!s) s = nb_model_build("lstm", config, &init, &r.m);
    if (!s && o->mode == NB_RNN_LSTM) add_forget_bias(r.m, o->hidden, o->forget_bias);
    nb_optim_opts adam = nb_optim_defaults(NB_OPTIM_ADAM);
    adam.lr = o->lr;
    if (!s && !(opt = nb_optim_new(r.m, &adam))) s = NB_ERR_NOMEM;
    if (!s) s = probe(&r, &res->mse_init, res->grad_init);
    double t0 = now();
    if (!s) s = train(&r, opt);
    res->seconds = now() - t0;
    if (!s) s = probe(&r, &res->mse_final, res->grad_final);
    res->T = o->T;
    nb_optim_free(opt);
    nb_model_free(r.m);
    nb_ctx_free(r.ctx);
    NB_FREE(r.x);
    NB_FREE(r.y);
    NB_FREE(r.steps);
    if (s) nb_adding_result_free(res);
    return s;
}
