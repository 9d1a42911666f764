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
#include <mpi.h>
#include <math.h>
#include <time.h>

struct nb_dist {
    MPI_Comm comm;          /* every collective of the training */
    MPI_Comm end_comm;      /* only nb_dist_finalize's meeting, with its */
    MPI_Request end_req;    /* request and buffers, which must outlive */
    int end_code[2];        /* the call when it gives up */
    int rank, size;
    nb_dist_stats stats;
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

/* Count one collective of `bytes` that started at t0. */
static void account(nb_dist *d, double t0, size_t bytes)
{
    d->stats.calls++;
    d->stats.bytes += (int64_t)bytes;
    d->stats.seconds += MPI_Wtime() - t0;
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
    /* Only the main thread talks to MPI; the kernels' threads never do. */
    int provided = 0;
    int err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) {
        NB_FREE(d);
        return mpi_fail(err, "MPI_Init_thread");
    }
    /* A private communicator whose errors come back as return codes. */
    if ((err = MPI_Comm_dup(MPI_COMM_WORLD, &d->comm)) != MPI_SUCCESS ||
        (err = MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (err = MPI_Comm_dup(d->comm, &d->end_comm)) != MPI_SUCCESS) {
        NB_FREE(d);
        return mpi_fail(err, "MPI_Comm_dup");
    }
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    *out = d;
    return NB_OK;
}

nb_status nb_dist_finalize(nb_dist *d, int code, double timeout_s, int *job_code)
{
    if (!d || !job_code) return nb__fail(NB_ERR_ARG, "dist: finalize: NULL argument");
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
    MPI_Comm_free(&d->end_comm);
    MPI_Finalize();
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
    unsigned long long numel[2] = {m->numel, ~(unsigned long long)m->numel}, agreed[2];
    int err = MPI_Allreduce(numel, agreed, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, d->comm);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce");
    if (agreed[0] != numel[0] || agreed[1] != numel[1])
        return nb__fail(NB_ERR_SHAPE, "dist: the ranks' models differ in size (this rank: %zu values)", m->numel);
    for (size_t off = 0; off < m->numel; off += CHUNK) {
        size_t n = m->numel - off < CHUNK ? m->numel - off : CHUNK;
        if ((err = MPI_Bcast(m->data + off, (int)n, MPI_FLOAT, 0, d->comm)) != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Bcast");
    }
    account(d, t0, m->numel * sizeof(float));
    return NB_OK;
}

nb_status nb_dist_allreduce_grads(nb_dist *d, nb_model *m, double weight)
{
    if (!d || !m) return nb__fail(NB_ERR_ARG, "dist: allreduce: NULL argument");
    if (!isfinite(weight) || weight < 0) return nb__fail(NB_ERR_ARG, "dist: allreduce: weight %g", weight);
    float *g = m->grad;
    if (weight != 1.0) {
        float w = (float)weight;
        for (size_t i = 0; i < m->numel; i++) g[i] *= w;
    }
    double t0 = MPI_Wtime();
    for (size_t off = 0; off < m->numel; off += CHUNK) {
        size_t n = m->numel - off < CHUNK ? m->numel - off : CHUNK;
        int err = MPI_Allreduce(MPI_IN_PLACE, g + off, (int)n, MPI_FLOAT, MPI_SUM, d->comm);
        if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce");
    }
    account(d, t0, m->numel * sizeof(float));
    float size = (float)d->size;
    for (size_t i = 0; i < m->numel; i++) g[i] /= size;
    return NB_OK;
}

nb_status nb_dist_sum(nb_dist *d, double *v, int n)
{
    if (!d || (n > 0 && !v) || n < 0) return nb__fail(NB_ERR_ARG, "dist: sum: bad argument");
    if (!n) return NB_OK;
    double t0 = MPI_Wtime();
    int err = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, d->comm);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce");
    account(d, t0, (size_t)n * sizeof(double));
    return NB_OK;
}

/* The failures ride along with the caller's sums in one MPI_Allreduce: the
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
    int mine[3] = {np, -np, !h}, all[3];
    int err = MPI_Allreduce(mine, all, 3, MPI_INT, MPI_MAX, d->comm);
    if (err != MPI_SUCCESS || all[2] || all[0] != np || -all[1] != np) {
        NB_FREE(h);
        if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce");
        if (all[2]) return nb__fail(NB_ERR_NOMEM, "dist: check: out of memory on a rank");
        return nb__fail(NB_ERR_STATE, "dist: the ranks' models have different parameter counts");
    }
    unsigned long long *ref = h + np;
    for (int i = 0; i < np; i++)
        h[i] = ref[i] = m->params[i].buffer ? 0 : hash_floats(m->params[i].t.data, (size_t)nb_tensor_numel(&m->params[i].t));
    int first = np;
    if ((err = MPI_Bcast(ref, np, MPI_UNSIGNED_LONG_LONG, 0, d->comm)) == MPI_SUCCESS) {
        for (int i = np - 1; i >= 0; i--)
            if (h[i] != ref[i]) first = i;
        int local = first;
        err = MPI_Allreduce(&local, &first, 1, MPI_INT, MPI_MIN, d->comm);
    }
    NB_FREE(h);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI collective");
    if (first < np)
        return nb__fail(NB_ERR_STATE, "dist: the ranks' weights differ (first at parameter %s)", m->params[first].name);
    return NB_OK;
}

void nb_dist_get_stats(const nb_dist *d, nb_dist_stats *st)
{
    if (!st) return;
    *st = d ? d->stats : (nb_dist_stats){0};
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
void nb_dist_get_stats(const nb_dist *d, nb_dist_stats *st)
{
    (void)d;
    if (st) *st = (nb_dist_stats){0};
}
#endif
