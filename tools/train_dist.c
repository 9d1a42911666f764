/* nabla train --distributed: data parallelism over MPI (see train_dist.h).
 *
 * Every rank builds the same loader over the same data with the same seed, so
 * every rank draws the same global batch; rank r keeps the r-th contiguous
 * share of it (nb_dist_share). The step is then two collectives: one small
 * agreement (the loss and whether any rank failed) and one all-reduce of the
 * flat gradient buffer. */
#include "train_dist.h"

#include <math.h>

/* How long a finishing rank waits for the others before it aborts the job.
 * A rank that succeeded waits long: the others may still be writing files
 * (rank 0) or finishing their share of the evaluation. A rank that failed
 * waits briefly: when every rank fails together (the same bad setting or
 * file everywhere, a non-finite loss they all saw) they arrive together and
 * leave cleanly; when it failed alone the others are blocked in a
 * collective, waiting for it, and only an abort ends them. */
#define FINISH_OK_WAIT_S   300.0
#define FINISH_FAIL_WAIT_S 3.0

/* Time spent in train_dist_grad and the traffic of those calls. */
static struct {
    int64_t steps;
    double  grad_s, comm_s;
} traffic;

int train_dist_start(nb_dist **d)
{
    return nb_dist_init(d) == NB_OK ? 0 : cli_fail("--distributed: %s", nb_last_error());
}

int train_dist_finish(nb_dist *d, int rc)
{
    int job_rc = rc;
    if (nb_dist_finalize(d, rc, rc ? FINISH_FAIL_WAIT_S : FINISH_OK_WAIT_S, &job_rc) == NB_OK) return job_rc;
    cli_fail("rank %d of %d %s; stopping every rank", nb_dist_rank(d), nb_dist_size(d),
             rc ? "failed and the others are still running" : "finished but the others did not");
    nb_dist_abort(d, rc ? rc : CLI_FAIL);   /* returns only if MPI could not abort */
    cli_lib_error();
    return CLI_FAIL;
}

int train_dist_setup(nb_dist *d, nb_model *m, nb_rng *rng)
{
    if (nb_dist_broadcast_params(d, m) != NB_OK) return cli_lib_error();
    int rank = nb_dist_rank(d);
    if (rank > 0) {
        /* Rank 0 keeps the stream a single process would use; the others
         * draw from streams seeded from it and their rank. */
        nb_rng probe = *rng;
        nb_rng_seed(rng, nb_rng_u64(&probe) ^ (0x9e3779b97f4a7c15ull * (uint64_t)rank));
    }
    return 0;
}

nb_status train_dist_grad(nb_dist *d, nb_model *m, nb_ctx *ctx, const nb_batch *b, train_grad_fn fn, void *arg,
                          float *loss)
{
    double t0 = cli_now();
    nb_dist_stats before, after;
    nb_dist_get_stats(d, &before);
    int64_t begin, count;
    nb_dist_share(b->n, nb_dist_rank(d), nb_dist_size(d), &begin, &count);
    nb_status s = NB_OK;
    float v = 0;
    if (count > 0) {
        nb_batch mine = {nb_slice(ctx, b->x, 0, begin, begin + count, 1), b->y + begin, count};
        s = mine.x ? fn(arg, &mine, &v) : nb_ctx_status(ctx);
    } else {
        nb_model_zero_grad(m); /* a batch smaller than the job: this rank adds nothing */
    }
    /* A non-finite loss is not a failure: the sum carries it to every rank. */
    double sums[1] = {(double)v * (double)count};
    s = nb_dist_agree(d, s == NB_ERR_NONFINITE ? NB_OK : s, sums, 1);
    if (s == NB_OK) {
        *loss = (float)(sums[0] / (double)b->n);
        if (!isfinite(*loss)) s = NB_ERR_NONFINITE;
    }
    if (s == NB_OK) s = nb_dist_allreduce_grads(d, m, (double)count * nb_dist_size(d) / (double)b->n);
    nb_dist_get_stats(d, &after);
    traffic.steps++;
    traffic.grad_s += cli_now() - t0;
    traffic.comm_s += after.seconds - before.seconds;
    return s;
}

nb_status train_dist_evaluate(nb_dist *d, nb_model *m, nb_ctx *ctx, const nb_dataset *data, double *loss,
                              double *acc)
{
    /* The ranks' weights must still be equal (their BatchNorm statistics
     * may differ and become rank 0's). */
    nb_status s = nb_dist_check_same(d, m);
    if (!s) s = nb_dist_broadcast_params(d, m);
    if (s) return s;
    int64_t begin, count;
    nb_dist_share(data->n, nb_dist_rank(d), nb_dist_size(d), &begin, &count);
    nb_dataset mine = *data;
    int64_t sample = (int64_t)data->c * data->h * data->w;
    mine.n = count, mine.x = data->x + begin * sample, mine.y = data->y + begin;
    double l = 0, a = 0;
    if (count > 0) s = cli_evaluate(m, ctx, &mine, &l, &a);
    /* sums of losses and of correct answers (a count, so rounded back) */
    double sums[2] = {l * (double)count, round(a * (double)count)};
    if ((s = nb_dist_agree(d, s, sums, 2)) != NB_OK) return s;
    *loss = data->n ? sums[0] / (double)data->n : 0;
    *acc = data->n ? sums[1] / (double)data->n : 0;
    return NB_OK;
}

void train_dist_print_header(const nb_dist *d, const nb_model *m, int64_t batch)
{
    int n = nb_dist_size(d);
    printf("distributed over %d ranks: global batch %lld (%lld-%lld per rank), %zu bytes of gradients all-reduced "
           "per step\n",
           n, (long long)batch, (long long)(batch / n), (long long)((batch + n - 1) / n), m->numel * sizeof(float));
}

void train_dist_print_traffic(const nb_dist *d)
{
    if (!traffic.steps) return;
    printf("distributed: %lld steps on %d ranks; communication %.3f ms per step, %.1f%% of the gradient time "
           "(%.3f ms per step)\n",
           (long long)traffic.steps, nb_dist_size(d), 1e3 * traffic.comm_s / (double)traffic.steps,
           traffic.grad_s > 0 ? 100 * traffic.comm_s / traffic.grad_s : 0, 1e3 * traffic.grad_s / (double)traffic.steps);
}
