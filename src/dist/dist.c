/* Data parallelism over MPI (nabla/dist.h). Compiled with -DNB_MPI and
 * mpicc's flags when the Makefile finds MPI; without it only the stubs at
 * the end and nb_dist_share are built. */
#include "../core/internal.h"

#include <stdio.h>
#include <stdlib.h>

void nb_dist_share(int64_t n, int rank, int size, int64_t *begin, int64_t *count)
{
    if (n < 0 || size < 1 || rank < 0 || rank >= size) {
        *begin = 0, *count = 0;
        return;
    }
    int64_t base = n / size, extra = n % size;
    *begin = rank * base + (rank < extra ? rank : extra);
    *count = base + (rank < extra);
}

#ifdef NB_MPI
#include "../ops/batchnorm.h"
#include <mpi.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <time.h>

#define DEFAULT_TIMEOUT_S 300.0

/* A piece of the flat gradient buffer all-reduced on its own while the
 * backward goes on (nb_dist_set_overlap). */
typedef struct {
    size_t off, n;          /* floats of m->grad */
    int64_t final_at;       /* the backward node after which none of them changes; -1: before it starts */
    MPI_Request req;        /* MPI_REQUEST_NULL once complete */
    int posted;
} bucket;

struct nb_dist {
    MPI_Comm comm;          /* every collective of the training but: */
    MPI_Comm bn_comm;       /* synchronised BatchNorm's sums, which come in
                               their own order among the gradient buckets */
    MPI_Comm end_comm;      /* only nb_dist_finalize's meeting, with its */
    MPI_Request end_req;    /* request and buffers, which must outlive */
    int end_code[2];        /* the call when it gives up */
    int rank, size;
    double timeout_s;
    int broken;             /* a collective timed out and is still pending */
    nb_dist_stats stats;
    /* settings of the steps */
    int sync_bn;
    size_t bucket_floats;   /* 0: one all-reduce after the backward */
    /* the step in progress (nb_dist_step_begin .. nb_dist_step_end) */
    int in_step;
    int64_t steps;          /* steps begun since nb_dist_init */
    nb_model *m;
    double weight;
    nb__bn_sync bn_hook;
    nb__backward_hook bw_hook;
    const nb__bn_sync *prev_bn;
    const nb__backward_hook *prev_bw;
    int64_t *bn_open;       /* channels of each BatchNorm synchronised in this */
    int nbn_open, bn_cap;   /* step's forward whose backward has not met yet */
    bucket *buckets;
    int nbuckets, next;     /* next: the highest bucket not posted yet (-1: all) */
    size_t bucket_numel;    /* the m->numel the buckets were cut for */
    int backward_seen;
};

int nb_dist_available(void) { return 1; }

/* NB_ERR_IO with MPI's own words for error code `err` of `what`. */
static nb_status mpi_fail(int err, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", err);
    return nb__fail(NB_ERR_IO, "dist: %s failed: %s", what, msg);
}

static nb_status broken_fail(void)
{
    return nb__fail(NB_ERR_STATE, "dist: an earlier collective timed out; the job can only be aborted (nb_dist_abort)");
}

/* Count one collective of `bytes` that started at t0. */
static void account(nb_dist *d, double t0, size_t bytes)
{
    d->stats.calls++;
    d->stats.bytes += (int64_t)bytes;
    d->stats.seconds += MPI_Wtime() - t0;
}

/* Wait for request *req of collective `what` until the time limit, polling:
 * MPI_Test alone for the first 50 us (the short collectives of a step
 * finish in that), then yielding the core between tests up to 10 ms (a
 * rank sharing this core gets it, and the transfer, which Open MPI moves
 * only inside MPI calls, keeps going: naps here made the gradient
 * all-reduce of bench_dist take 0.50 ms instead of 0.43), then with sleeps
 * of a twentieth of the time waited so far (at most 1 ms), so that a long
 * wait for a slow or stuck rank costs no CPU and a sleep overshoots the
 * end of a wait by 5% at most. On the limit the request stays pending (its
 * buffers must outlive it: the caller aborts the job) and d is broken. */
static nb_status wait_req(nb_dist *d, MPI_Request *req, const char *what)
{
    const double t0 = MPI_Wtime();
    for (;;) {
        int done = 0, err = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) return mpi_fail(err, what);
        if (done) return NB_OK;
        double waited = MPI_Wtime() - t0;
        if (waited > d->timeout_s) {
            d->broken = 1;
            return nb__fail(NB_ERR_TIMEOUT, "dist: rank %d of %d timed out after %g s in %s (training step %lld "
                            "of this process): another rank is stuck or far slower", d->rank, d->size, d->timeout_s,
                            what, (long long)d->steps);
        }
        if (waited > 10e-3) nanosleep(&(struct timespec){0, (long)(1e9 * fmin(waited / 20, 1e-3))}, NULL);
        else if (waited > 50e-6) sched_yield();
    }
}

/* The blocking collectives of the library, each a non-blocking one waited
 * for with the time limit. */
static nb_status allreduce(nb_dist *d, MPI_Comm comm, void *buf, int n, MPI_Datatype type, MPI_Op op,
                           const char *what)
{
    if (d->broken) return broken_fail();
    MPI_Request req;
    int err = MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, op, comm, &req);
    return err != MPI_SUCCESS ? mpi_fail(err, what) : wait_req(d, &req, what);
}

static nb_status bcast(nb_dist *d, void *buf, int n, MPI_Datatype type, const char *what)
{
    if (d->broken) return broken_fail();
    MPI_Request req;
    int err = MPI_Ibcast(buf, n, type, 0, d->comm, &req);
    return err != MPI_SUCCESS ? mpi_fail(err, what) : wait_req(d, &req, what);
}

nb_status nb_dist_init(nb_dist **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "dist: out is NULL");
    *out = NULL;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited || finalized) return nb__fail(NB_ERR_STATE, "dist: MPI is already initialised (nb_dist_init runs once per process)");
    nb_dist *d = NB_MALLOC(sizeof *d);
    if (!d) return nb__fail(NB_ERR_NOMEM, "dist: out of memory");
    memset(d, 0, sizeof *d);
    d->timeout_s = DEFAULT_TIMEOUT_S;
    /* Only the main thread talks to MPI; the kernels' threads never do. */
    int provided = 0;
    int err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) {
        NB_FREE(d);
        return mpi_fail(err, "MPI_Init_thread");
    }
    /* Private communicators whose errors come back as return codes. */
    if ((err = MPI_Comm_dup(MPI_COMM_WORLD, &d->comm)) != MPI_SUCCESS ||
        (err = MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (err = MPI_Comm_dup(d->comm, &d->bn_comm)) != MPI_SUCCESS ||
        (err = MPI_Comm_dup(d->comm, &d->end_comm)) != MPI_SUCCESS) {
        NB_FREE(d);
        return mpi_fail(err, "MPI_Comm_dup");
    }
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    *out = d;
    return NB_OK;
}

nb_status nb_dist_set_timeout(nb_dist *d, double seconds)
{
    if (!d || !(seconds > 0) || isinf(seconds)) return nb__fail(NB_ERR_ARG, "dist: timeout %g s must be positive", seconds);
    d->timeout_s = seconds;
    return NB_OK;
}

nb_status nb_dist_finalize(nb_dist *d, int code, double timeout_s, int *job_code)
{
    if (!d || !job_code) return nb__fail(NB_ERR_ARG, "dist: finalize: NULL argument");
    if (d->broken) return broken_fail();
    /* Non-blocking, so that a rank whose peers are stuck elsewhere (in a
     * collective waiting for this very rank) can give up; the request then
     * stays pending until the caller aborts the job. */
    d->end_code[0] = code;
    int done = 0, err = MPI_Iallreduce(d->end_code, d->end_code + 1, 1, MPI_INT, MPI_MAX, d->end_comm, &d->end_req);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Iallreduce");
    double t0 = MPI_Wtime();
    for (;;) {
        if ((err = MPI_Test(&d->end_req, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Test");
        if (done) break;
        if (MPI_Wtime() - t0 > timeout_s)
            return nb__fail(NB_ERR_STATE, "dist: rank %d waited %.0f s for the other ranks to finish", d->rank, timeout_s);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    *job_code = d->end_code[1];
    MPI_Comm_free(&d->comm);
    MPI_Comm_free(&d->bn_comm);
    MPI_Comm_free(&d->end_comm);
    MPI_Finalize();
    NB_FREE(d->bn_open);
    NB_FREE(d->buckets);
    NB_FREE(d);
    return NB_OK;
}

nb_status nb_dist_abort(nb_dist *d, int code)
{
    /* MPI_Abort ends every process of the job and does not return on
     * success; the library itself never exits */
    return mpi_fail(MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code), "MPI_Abort");
}

int nb_dist_rank(const nb_dist *d) { return d ? d->rank : 0; }
int nb_dist_size(const nb_dist *d) { return d ? d->size : 1; }

/* MPI counts are ints: big buffers go in pieces. */
#define CHUNK (1 << 30)

nb_status nb_dist_broadcast_params(nb_dist *d, nb_model *m)
{
    if (!d || !m) return nb__fail(NB_ERR_ARG, "dist: broadcast: NULL argument");
    /* Every rank must take part in the same calls, so the layout check is
     * itself a collective: a rank with another size would otherwise hang
     * in a broadcast of another length. */
    double t0 = MPI_Wtime();
    unsigned long long numel[2] = {m->numel, ~(unsigned long long)m->numel};
    nb_status s = allreduce(d, d->comm, numel, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, "the parameter broadcast");
    if (s) return s;
    if (numel[0] != m->numel || numel[1] != ~(unsigned long long)m->numel)
        return nb__fail(NB_ERR_SHAPE, "dist: the ranks' models differ in size (this rank: %zu values)", m->numel);
    for (size_t off = 0; off < m->numel && !s; off += CHUNK) {
        size_t n = m->numel - off < CHUNK ? m->numel - off : CHUNK;
        s = bcast(d, m->data + off, (int)n, MPI_FLOAT, "the parameter broadcast");
    }
    if (!s) account(d, t0, m->numel * sizeof(float));
    return s;
}

/* g[0..n) *= w before the sum (the rank's share of the loss). */
static void scale(float *g, size_t n, double weight)
{
    if (weight == 1.0) return;
    float w = (float)weight;
    for (size_t i = 0; i < n; i++) g[i] *= w;
}

/* g[0..n) /= size after the sum. */
static void average(float *g, size_t n, int size)
{
    float f = (float)size;
    for (size_t i = 0; i < n; i++) g[i] /= f;
}

static int bad_weight(double weight) { return !isfinite(weight) || weight < 0; }

nb_status nb_dist_allreduce_grads(nb_dist *d, nb_model *m, double weight)
{
    if (!d || !m) return nb__fail(NB_ERR_ARG, "dist: allreduce: NULL argument");
    if (bad_weight(weight)) return nb__fail(NB_ERR_ARG, "dist: allreduce: weight %g", weight);
    float *g = m->grad;
    scale(g, m->numel, weight);
    double t0 = MPI_Wtime();
    nb_status s = NB_OK;
    for (size_t off = 0; off < m->numel && !s; off += CHUNK) {
        size_t n = m->numel - off < CHUNK ? m->numel - off : CHUNK;
        s = allreduce(d, d->comm, g + off, (int)n, MPI_FLOAT, MPI_SUM, "the gradient all-reduce");
    }
    if (s) return s;
    account(d, t0, m->numel * sizeof(float));
    average(g, m->numel, d->size);
    return NB_OK;
}

nb_status nb_dist_sum(nb_dist *d, double *v, int n)
{
    if (!d || (n > 0 && !v) || n < 0) return nb__fail(NB_ERR_ARG, "dist: sum: bad argument");
    if (!n) return NB_OK;
    double t0 = MPI_Wtime();
    nb_status s = allreduce(d, d->comm, v, n, MPI_DOUBLE, MPI_SUM, "a sum over the ranks");
    if (!s) account(d, t0, (size_t)n * sizeof(double));
    return s;
}

/* The failures ride along with the caller's sums in one all-reduce: the
 * count of failed ranks and the sum of their ranks (which names the rank
 * when only one failed). */
#define AGREE_MAX 14
nb_status nb_dist_agree(nb_dist *d, nb_status local, double *sums, int n)
{
    if (!d || n < 0 || n > AGREE_MAX || (n && !sums)) return nb__fail(NB_ERR_ARG, "dist: agree: bad argument");
    double v[AGREE_MAX + 2];
    for (int i = 0; i < n; i++) v[i] = sums[i];
    v[n] = local != NB_OK;
    v[n + 1] = local != NB_OK ? d->rank : 0;
    nb_status s = nb_dist_sum(d, v, n + 2);
    if (s) return s;
    for (int i = 0; i < n; i++) sums[i] = v[i];
    if (local != NB_OK) return local;
    if (v[n] == 1) return nb__fail(NB_ERR_STATE, "rank %.0f of %d failed (its message is above)", v[n + 1], d->size);
    if (v[n] > 1) return nb__fail(NB_ERR_STATE, "%.0f ranks of %d failed (their messages are above)", v[n], d->size);
    return NB_OK;
}

/* FNV-1a over the bytes of n floats. */
static uint64_t hash_floats(const float *x, size_t n)
{
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

nb_status nb_dist_check_same(nb_dist *d, const nb_model *m)
{
    if (!d || !m) return nb__fail(NB_ERR_ARG, "dist: check: NULL argument");
    /* Every rank must make the same calls with the same counts, so the
     * parameter count and the allocation are agreed on first. */
    int np = m->nparams;
    unsigned long long *h = NB_MALLOC(2 * (size_t)(np ? np : 1) * sizeof *h);
    int all[3] = {np, -np, !h};
    nb_status s = allreduce(d, d->comm, all, 3, MPI_INT, MPI_MAX, "the weight check");
    if (s || all[2] || all[0] != np || -all[1] != np) {
        NB_FREE(h);
        if (s) return s;
        if (all[2]) return nb__fail(NB_ERR_NOMEM, "dist: check: out of memory on a rank");
        return nb__fail(NB_ERR_STATE, "dist: the ranks' models have different parameter counts");
    }
    unsigned long long *ref = h + np;
    for (int i = 0; i < np; i++)
        h[i] = ref[i] = m->params[i].buffer ? 0 : hash_floats(m->params[i].t.data, (size_t)nb_tensor_numel(&m->params[i].t));
    int first = np;
    if (!(s = bcast(d, ref, np, MPI_UNSIGNED_LONG_LONG, "the weight check"))) {
        for (int i = np - 1; i >= 0; i--)
            if (h[i] != ref[i]) first = i;
        s = allreduce(d, d->comm, &first, 1, MPI_INT, MPI_MIN, "the weight check");
    }
    NB_FREE(h);
    if (s) return s;
    if (first < np)
        return nb__fail(NB_ERR_STATE, "dist: the ranks' weights differ (first at parameter %s)", m->params[first].name);
    return NB_OK;
}

void nb_dist_get_stats(const nb_dist *d, nb_dist_stats *st)
{
    if (!st) return;
    *st = d ? d->stats : (nb_dist_stats){0};
}

/* ---- synchronised BatchNorm (nb__bn_sync of src/ops/batchnorm.h) ------------- */

/* Push or pop the channel count of a BatchNorm whose backward is due. */
static nb_status bn_push(nb_dist *d, int64_t c)
{
    if (d->nbn_open == d->bn_cap) {
        int cap = d->bn_cap ? 2 * d->bn_cap : 16;
        int64_t *p = NB_REALLOC(d->bn_open, (size_t)cap * sizeof *p);
        if (!p) return nb__fail(NB_ERR_NOMEM, "dist: out of memory");
        d->bn_open = p, d->bn_cap = cap;
    }
    d->bn_open[d->nbn_open++] = c;
    return NB_OK;
}

/* The sums of a BatchNorm over the ranks. A backward's sums are those of
 * the rank's loss, a mean over its share: weighted by the share (as the
 * gradients) for the sum, and back, they are those of the mean over the
 * global batch seen from this rank (exact for unequal shares). */
static nb_status bn_sum(void *user, double *v, int64_t n, int phase)
{
    nb_dist *d = user;
    if (n > INT_MAX) return nb__fail(NB_ERR_ARG, "dist: BatchNorm with %lld channels", (long long)n);
    if (phase == NB__BN_GRADS) {
        if (!d->nbn_open || 2 * d->bn_open[d->nbn_open - 1] != n)
            return nb__fail(NB_ERR_STATE, "dist: a BatchNorm backward that matches no forward of this step");
        d->nbn_open--;
    }
    const double w = phase == NB__BN_GRADS ? d->weight : 1.0;
    if (w != 1.0)
        for (int64_t i = 0; i < n; i++) v[i] *= w;
    double t0 = MPI_Wtime();
    nb_status s = allreduce(d, d->bn_comm, v, (int)n, MPI_DOUBLE, MPI_SUM, "a synchronised BatchNorm");
    if (s) return s;
    account(d, t0, (size_t)n * sizeof(double));
    if (w != 1.0)
        for (int64_t i = 0; i < n; i++) v[i] /= w;
    return phase == NB__BN_SQUARES ? bn_push(d, n) : NB_OK;
}

/* The backward sums this rank still owes the others (its backward failed
 * or did not run): NaN, so that no rank can use them by mistake. */
static nb_status bn_settle(nb_dist *d)
{
    nb_status s = NB_OK;
    while (d->nbn_open && !s) {
        int64_t n = 2 * d->bn_open[--d->nbn_open];
        double *v = NB_MALLOC((size_t)n * sizeof *v);
        if (!v) return nb__fail(NB_ERR_NOMEM, "dist: out of memory");
        for (int64_t i = 0; i < n; i++) v[i] = NAN;
        s = allreduce(d, d->bn_comm, v, (int)n, MPI_DOUBLE, MPI_SUM, "a synchronised BatchNorm");
        NB_FREE(v);
    }
    return s;
}

/* ---- the gradient all-reduce overlapped with the backward ----------------- */

static nb_status post_bucket(nb_dist *d, bucket *b)
{
    float *g = d->m->grad + b->off;
    scale(g, b->n, d->weight);
    double t0 = MPI_Wtime();
    int err = MPI_Iallreduce(MPI_IN_PLACE, g, (int)b->n, MPI_FLOAT, MPI_SUM, d->comm, &b->req);
    d->stats.seconds += MPI_Wtime() - t0;
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Iallreduce");
    b->posted = 1;
    return NB_OK;
}

/* Post, from the last, every bucket final once the backward is done with
 * node k (the same order on every rank, whatever the timing), then let MPI
 * move the posted ones on: it progresses only inside its calls. */
static nb_status post_ready(nb_dist *d, int64_t k)
{
    for (; d->next >= 0 && d->buckets[d->next].final_at <= k; d->next--) {
        nb_status s = post_bucket(d, &d->buckets[d->next]);
        if (s) return s;
    }
    for (int i = d->nbuckets - 1; i > d->next; i--) {
        if (d->buckets[i].req == MPI_REQUEST_NULL) continue;
        int done = 0, err = MPI_Test(&d->buckets[i].req, &done, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Test");
        break;  /* one call progresses them all */
    }
    return NB_OK;
}

/* Index of the parameter whose values hold flat element off. */
static int param_at(const nb_model *m, size_t off)
{
    int lo = 0, hi = m->nparams - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (m->params[mid].offset <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Before the backward: a bucket is final after the last node (in the
 * backward's order) with an input among its parameters. */
static nb_status bw_begin(void *user, const nb__node *tape)
{
    nb_dist *d = user;
    nb_model *m = d->m;
    if (d->backward_seen++)
        return nb__fail(NB_ERR_STATE, "dist: a second backward in one step (the gradient is already being summed)");
    for (int i = 0; i < d->nbuckets; i++) d->buckets[i].final_at = -1;
    const uintptr_t lo = (uintptr_t)m->data, hi = (uintptr_t)(m->data + m->numel);
    int64_t k = 0;
    for (const nb__node *n = tape; n; n = n->prev, k++)
        for (int i = 0; i < n->nin; i++) {
            const nb_tensor *t = n->in[i];
            uintptr_t a = (uintptr_t)t->data;
            if (!t->requires_grad || a < lo || a >= hi) continue;
            const nb_param *p = &m->params[param_at(m, (size_t)(t->data - m->data))];
            size_t first = p->offset / d->bucket_floats;
            size_t last = (p->offset + (size_t)nb_tensor_numel(&p->t) - 1) / d->bucket_floats;
            for (size_t b = first; b <= last && b < (size_t)d->nbuckets; b++) d->buckets[b].final_at = k;
        }
    return post_ready(d, -1);
}

static nb_status bw_after(void *user, int64_t k) { return post_ready(user, k); }

/* Cut m->grad into buckets (again when the model changed). */
static nb_status make_buckets(nb_dist *d, const nb_model *m)
{
    size_t nb = (m->numel + d->bucket_floats - 1) / d->bucket_floats;
    if (nb > INT_MAX) return nb__fail(NB_ERR_ARG, "dist: too many gradient buckets");
    if (d->bucket_numel != m->numel || d->nbuckets != (int)nb) {
        bucket *b = NB_REALLOC(d->buckets, (nb ? nb : 1) * sizeof *b);
        if (!b) return nb__fail(NB_ERR_NOMEM, "dist: out of memory");
        d->buckets = b, d->nbuckets = (int)nb, d->bucket_numel = m->numel;
    }
    for (int i = 0; i < d->nbuckets; i++) {
        size_t off = (size_t)i * d->bucket_floats;
        d->buckets[i] = (bucket){off, m->numel - off < d->bucket_floats ? m->numel - off : d->bucket_floats, -1,
                                 MPI_REQUEST_NULL, 0};
    }
    d->next = d->nbuckets - 1;
    return NB_OK;
}

/* After the backward: post what is left and wait for everything. */
static nb_status finish_buckets(nb_dist *d)
{
    nb_status s = post_ready(d, INT64_MAX);
    double t0 = MPI_Wtime();
    for (int i = d->nbuckets - 1; i >= 0 && !s; i--) s = wait_req(d, &d->buckets[i].req, "the gradient all-reduce");
    if (s) return s;
    d->stats.seconds += MPI_Wtime() - t0;
    d->stats.calls += d->nbuckets;
    d->stats.bytes += (int64_t)(d->m->numel * sizeof(float));
    average(d->m->grad, d->m->numel, d->size);
    return NB_OK;
}

/* ---- steps ---------------------------------------------------------------- */

nb_status nb_dist_set_sync_batchnorm(nb_dist *d, int on)
{
    if (!d || d->in_step) return nb__fail(NB_ERR_ARG, "dist: sync batchnorm: %s", d ? "inside a step" : "NULL");
    d->sync_bn = on != 0;
    return NB_OK;
}

nb_status nb_dist_set_overlap(nb_dist *d, size_t bucket_bytes)
{
    if (!d || d->in_step) return nb__fail(NB_ERR_ARG, "dist: overlap: %s", d ? "inside a step" : "NULL");
    if (bucket_bytes && (bucket_bytes < sizeof(float) || bucket_bytes / sizeof(float) > CHUNK))
        return nb__fail(NB_ERR_ARG, "dist: overlap: bucket of %zu bytes (4 bytes to 4 GiB, or 0 = off)", bucket_bytes);
    d->bucket_floats = bucket_bytes / sizeof(float);
    return NB_OK;
}

nb_status nb_dist_step_begin(nb_dist *d, nb_model *m, double weight)
{
    if (!d || !m) return nb__fail(NB_ERR_ARG, "dist: step: NULL argument");
    if (d->in_step) return nb__fail(NB_ERR_STATE, "dist: step begun twice");
    if (bad_weight(weight)) return nb__fail(NB_ERR_ARG, "dist: step: weight %g", weight);
    if (d->broken) return broken_fail();
    if (d->sync_bn && weight == 0)
        return nb__fail(NB_ERR_SHAPE, "dist: a synchronised BatchNorm needs a share of every batch on every rank "
                        "(a batch of at least as many samples as ranks)");
    if (d->bucket_floats) {
        nb_status s = make_buckets(d, m);
        if (s) return s;
    }
    d->m = m, d->weight = weight, d->in_step = 1, d->steps++, d->nbn_open = 0, d->backward_seen = 0;
    if (d->sync_bn) {
        d->bn_hook = (nb__bn_sync){bn_sum, d};
        d->prev_bn = nb__bn_set_sync(&d->bn_hook);
    }
    if (d->bucket_floats) {
        d->bw_hook = (nb__backward_hook){bw_begin, bw_after, d};
        d->prev_bw = nb__set_backward_hook(&d->bw_hook);
    }
    return NB_OK;
}

nb_status nb_dist_step_end(nb_dist *d, nb_model *m)
{
    if (!d || !m) return nb__fail(NB_ERR_ARG, "dist: step: NULL argument");
    if (!d->in_step || m != d->m) return nb__fail(NB_ERR_STATE, "dist: step end without its begin");
    d->in_step = 0;
    if (d->sync_bn) nb__bn_set_sync(d->prev_bn);
    if (d->bucket_floats) nb__set_backward_hook(d->prev_bw);
    nb_status s = bn_settle(d);
    if (s) return s;
    return d->bucket_floats ? finish_buckets(d) : nb_dist_allreduce_grads(d, m, d->weight);
}

#else /* built without MPI */

int nb_dist_available(void) { return 0; }

static nb_status no_mpi(void)
{
    return nb__fail(NB_ERR_STATE, "nabla was built without MPI (install libopenmpi-dev and build with make MPI=1)");
}

nb_status nb_dist_init(nb_dist **out)
{
    if (out) *out = NULL;
    return no_mpi();
}
nb_status nb_dist_finalize(nb_dist *d, int code, double timeout_s, int *job_code)
{
    (void)d, (void)code, (void)timeout_s, (void)job_code;
    return no_mpi();
}
nb_status nb_dist_abort(nb_dist *d, int code)
{
    (void)d, (void)code;
    return no_mpi();
}
int nb_dist_rank(const nb_dist *d) { (void)d; return 0; }
int nb_dist_size(const nb_dist *d) { (void)d; return 1; }
nb_status nb_dist_broadcast_params(nb_dist *d, nb_model *m) { (void)d, (void)m; return no_mpi(); }
nb_status nb_dist_allreduce_grads(nb_dist *d, nb_model *m, double w) { (void)d, (void)m, (void)w; return no_mpi(); }
nb_status nb_dist_sum(nb_dist *d, double *v, int n) { (void)d, (void)v, (void)n; return no_mpi(); }
nb_status nb_dist_agree(nb_dist *d, nb_status local, double *sums, int n) { (void)d, (void)local, (void)sums, (void)n; return no_mpi(); }
nb_status nb_dist_check_same(nb_dist *d, const nb_model *m) { (void)d, (void)m; return no_mpi(); }
nb_status nb_dist_set_timeout(nb_dist *d, double s) { (void)d, (void)s; return no_mpi(); }
nb_status nb_dist_set_sync_batchnorm(nb_dist *d, int on) { (void)d, (void)on; return no_mpi(); }
nb_status nb_dist_set_overlap(nb_dist *d, size_t b) { (void)d, (void)b; return no_mpi(); }
nb_status nb_dist_step_begin(nb_dist *d, nb_model *m, double w) { (void)d, (void)m, (void)w; return no_mpi(); }
nb_status nb_dist_step_end(nb_dist *d, nb_model *m) { (void)d, (void)m; return no_mpi(); }
void nb_dist_get_stats(const nb_dist *d, nb_dist_stats *st)
{
    (void)d;
    if (st) *st = (nb_dist_stats){0};
}
#endif
