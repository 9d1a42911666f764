/* nabla train --distributed: data parallelism over MPI (see train_dist.h).
 *
 * Every rank builds the same loader over the same data with the same seed, so
 * every rank draws the same global batch; rank r keeps the r-th contiguous
 * share of it (nb_dist_share). The step is then two collectives: one
 * all-reduce of the flat gradient buffer (or its buckets, started during the
 * backward with --dist-bucket) and one small agreement (the loss and whether
 * any rank failed); with --sync-bn each BatchNorm adds small ones. */
#include "train_dist.h"

#include <math.h>

/* How long a finishing rank waits for the others before it aborts the job.
 * A rank that succeeded waits as long as any collective (--dist-timeout):
 * the others may still be writing files (rank 0) or finishing their share
 * of the evaluation. A rank that failed waits briefly: when every rank
 * fails together (the same bad setting or file everywhere, a non-finite
 * loss they all saw) they arrive together and leave cleanly; when it failed
 * alone the others are blocked in a collective, waiting for it, and only an
 * abort ends them. */
#define FINISH_FAIL_WAIT_S 3.0

/* Time spent in train_dist_grad and the traffic of those calls. */
static struct {
    int64_t steps;
    double  grad_s, comm_s;
} traffic;

static train_dist_opts settings;

int train_dist_start(nb_dist **d, const train_dist_opts *o)
{
    settings = *o;
    if (nb_dist_init(d) != NB_OK) return cli_fail("--distributed: %s", nb_last_error());
    if (nb_dist_set_timeout(*d, o->timeout_s) || nb_dist_set_sync_batchnorm(*d, o->sync_bn) ||
        nb_dist_set_overlap(*d, (size_t)((double)o->bucket_kib * 1024)))
        return cli_fail("--distributed: %s", nb_last_error());
    return 0;
}

int train_dist_finish(nb_dist *d, int rc)
{
    int job_rc = rc;
    if (nb_dist_finalize(d, rc, rc ? FINISH_FAIL_WAIT_S : (double)settings.timeout_s, &job_rc) == NB_OK) return job_rc;
    cli_fail("rank %d of %d %s; stopping every rank", nb_dist_rank(d), nb_dist_size(d),
             rc ? "failed and the others are still running" : "finished but the others did not");
    nb_dist_abort(d, rc ? rc : CLI_FAIL);   /* returns only if MPI could not abort */
    cli_lib_error();
    return CLI_FAIL;
}

int train_dist_setup(nb_dist *d, nb_model *m, nb_rng *rng)
{
    (void)rng; /* the same on every rank: the steps derive theirs from it */
    return nb_dist_broadcast_params(d, m) == NB_OK ? 0 : cli_lib_error();
}

nb_status train_dist_grad(nb_dist *d, nb_model *m, nb_ctx *ctx, const nb_batch *b, train_grad_fn fn, void *arg,
                          float *loss)
{
    double t0 = cli_now();
    nb_dist_stats before, after;
    nb_dist_get_stats(d, &before);
    const int rank = nb_dist_rank(d), size = nb_dist_size(d);
    int64_t begin, count;
    nb_dist_share(b->n, rank, size, &begin, &count);
    /* --sync-bn needs every rank in every BatchNorm: all refuse a batch
     * smaller than the job together (in nb_dist_step_begin). */
    double weight = settings.sync_bn && b->n < size ? 0 : (double)count * size / (double)b->n;
    nb_status s = nb_dist_step_begin(d, m, weight);
    if (s) return s;
    /* This step's draws (dropout) come from the rank's own generator; ctx's
     * advances alike on every rank, so rank 0's checkpoint fits all. */
    nb_rng *rng = nb_ctx_rng(ctx), shared = *rng;
    if (size > 1) {
        nb_rng_u64(&shared);
        nb_rng_seed(rng, nb_rng_u64(rng) ^ (0x9e3779b97f4a7c15ull * (uint64_t)(rank + 1)));
    }
    float v = 0;
    if (count > 0) {
        nb_batch mine = {nb_slice(ctx, b->x, 0, begin, begin + count, 1), b->y + begin, count};
        s = mine.x ? fn(arg, &mine, &v) : nb_ctx_status(ctx);
    } else {
        nb_model_zero_grad(m); /* a batch smaller than the job: this rank adds nothing */
    }
    if (size > 1) *rng = shared;
    /* Always, failed or not: the others wait for this rank's gradient. */
    nb_status e = nb_dist_step_end(d, m);
    if (e) return e;
    /* A non-finite loss is not a failure: the sum carries it to every rank. */
    double sums[1] = {(double)v * (double)count};
    s = nb_dist_agree(d, s == NB_ERR_NONFINITE ? NB_OK : s, sums, 1);
    if (s == NB_OK) {
        *loss = (float)(sums[0] / (double)b->n);
        if (!isfinite(*loss)) s = NB_ERR_NONFINITE;
    }
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
           "per step",
           n, (long long)batch, (long long)(batch / n), (long long)((batch + n - 1) / n), m->numel * sizeof(float));
    if (settings.bucket_kib > 0) printf(" in buckets of %g KiB during the backward", (double)settings.bucket_kib);
    if (settings.sync_bn) printf(", synchronised BatchNorm");
    printf("\n");
}

void train_dist_print_traffic(const nb_dist *d)
{
    if (!traffic.steps) return;
    printf("distributed: %lld steps on %d ranks; communication %.3f ms per step, %.1f%% of the gradient time "
           "(%.3f ms per step)\n",
           (long long)traffic.steps, nb_dist_size(d), 1e3 * traffic.comm_s / (double)traffic.steps,
           traffic.grad_s > 0 ? 100 * traffic.comm_s / traffic.grad_s : 0, 1e3 * traffic.grad_s / (double)traffic.steps);
}
