/* nabla/dist.h — data-parallel training over MPI (Open MPI).
 *
 * The design of Horovod and llm.c: every process (rank) holds the whole
 * model, computes the gradient of its share of each global batch, and the
 * ranks average their gradients with one all-reduce of the model's flat
 * gradient buffer before each runs the same optimizer step. Starting from the
 * same weights (broadcast from rank 0) the ranks stay identical without ever
 * sending weights again.
 *
 * Built only when MPI is present (`make MPI=1`, or detected through
 * `mpicc --showme`). Without it these functions still exist: nb_dist_init
 * fails with NB_ERR_STATE ("built without MPI") and nb_dist_available()
 * returns 0, so programs need no #ifdef.
 *
 * Errors: MPI failures are returned as NB_ERR_IO with MPI's message (the
 * communicator uses MPI_ERRORS_RETURN). A rank that dies is not an error MPI
 * reports: mpirun notices and kills the job. A rank that hangs (alive but
 * stuck: a stopped process, a deadlock, a dead network link) is caught by a
 * time limit: every collective of these functions is non-blocking, polled
 * (with sleeps, no busy wait) until nb_dist_set_timeout's limit (default
 * 300 s), and then fails with NB_ERR_TIMEOUT naming the collective. The
 * request is then still pending and its rank's nb_dist is spent: the caller
 * must end the job with nb_dist_abort. A rank that fails on its own,
 * where the others cannot learn of it through nb_dist_agree, must call
 * nb_dist_abort too, never just return: the others would wait for it until
 * their time limit. Only the thread that called nb_dist_init may call these
 * functions.
 *
 * BatchNorm normalises each rank's share with that share's statistics (as
 * PyTorch's DistributedDataParallel without SyncBatchNorm), or, with
 * nb_dist_set_sync_batchnorm, with the statistics of the global batch (as
 * torch.nn.SyncBatchNorm). */
#ifndef NABLA_DIST_H
#define NABLA_DIST_H

#include "core.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_dist nb_dist;

/* 1 when this libnabla was built with MPI. */
int       nb_dist_available(void);
/* Initialise MPI (once per process) and return a handle on all the ranks of
 * the job (a duplicate of MPI_COMM_WORLD). Run outside mpirun it is a job of
 * one rank. NB_ERR_STATE without MPI or when called twice. */
nb_status nb_dist_init(nb_dist **out);
/* Leave the job with this rank's exit code `code` (0 = success). The ranks
 * meet on a communicator of their own, waiting up to timeout_s seconds for
 * each other: when all arrive, *job_code is the largest code of any rank (a
 * failure on one rank is a failure of the job), MPI is finalised and d is
 * freed. NB_ERR_STATE, d untouched, when some rank did not arrive in time:
 * it is dead, or blocked in a collective that waits for this rank; the
 * caller then ends the job with nb_dist_abort. */
nb_status nb_dist_finalize(nb_dist *d, int code, double timeout_s, int *job_code);
/* The time limit of every later collective (seconds > 0; default 300): a
 * rank that waits longer for the others fails with NB_ERR_TIMEOUT. Set it
 * above the longest time one rank may legitimately lag behind another (a
 * slower host, rank 0 writing a checkpoint). NB_ERR_ARG for a bad value. */
nb_status nb_dist_set_timeout(nb_dist *d, double seconds);
/* Kill every rank of the job, this one included (MPI_Abort), with exit
 * code `code`: for a failure the other ranks cannot learn of otherwise.
 * Returns only when MPI could not do it (the error status). */
nb_status nb_dist_abort(nb_dist *d, int code);
int       nb_dist_rank(const nb_dist *d);   /* 0 .. size-1; 0 for NULL */
int       nb_dist_size(const nb_dist *d);   /* 1 for NULL */

/* Copy rank 0's parameters and buffers (the whole flat m->data, BatchNorm
 * statistics included) to every rank. The models must have the same layout
 * (same m->numel, checked: NB_ERR_SHAPE on every rank when they differ). */
nb_status nb_dist_broadcast_params(nb_dist *d, nb_model *m);

/* Average the ranks' gradients in place: m->grad becomes
 * sum_r(weight_r * grad_r) / size on every rank, in one MPI_Allreduce
 * (MPI_IN_PLACE, MPI_SUM) of the whole flat buffer. weight 1 on every rank is
 * the plain average; a rank whose loss is a mean over n_r of the global
 * batch's n samples passes n_r * size / n, so unequal shares give the mean
 * over the global batch. A non-finite gradient on any rank makes the result
 * non-finite on all (the optimizer then refuses it everywhere). */
nb_status nb_dist_allreduce_grads(nb_dist *d, nb_model *m, double weight);

/* ---- training steps ----
 * One step of data-parallel training on every rank:
 *     nb_dist_step_begin(d, m, weight);
 *     forward and backward of this rank's share (one nb_backward);
 *     nb_dist_step_end(d, m);    -> m->grad as nb_dist_allreduce_grads's
 * step_end must follow every step_begin, also when the forward or backward
 * failed on this rank (it then sends what the others expect, so that no
 * rank waits forever; the caller learns of failures through nb_dist_agree
 * afterwards). Between the two calls two options act on the calling thread:
 *
 * Synchronised BatchNorm (nb_dist_set_sync_batchnorm, off by default): every
 * BatchNorm in training mode normalises with the mean and variance of the
 * global batch (per channel, the ranks' sums, sums of squared deviations and
 * counts all-reduced in forward; the running variance uses the global
 * unbiased count) and its backward all-reduces the two per-channel sums of
 * its input gradient (sum dy, sum dy xhat), as torch.nn.SyncBatchNorm; with
 * unequal shares the sums are weighted so that the gradient is that of the
 * mean loss over the global batch. Every rank needs at least one sample:
 * step_begin refuses weight 0 (NB_ERR_SHAPE), and every rank must then
 * refuse that step (pass 0 on all when some rank has no sample). One thread
 * per BatchNorm while synchronised.
 *
 * Overlap (nb_dist_set_overlap(d, bucket_bytes), off by default): the flat
 * gradient buffer is cut into buckets of that size, and each bucket's
 * all-reduce starts during the backward as soon as the tape has no node
 * left that adds into it (the last layers' parameters finish first). The
 * result is the non-overlapped one bit for bit on 2 ranks (the same two
 * numbers added per element); with more ranks MPI may add in another order
 * for another message size. */
nb_status nb_dist_set_sync_batchnorm(nb_dist *d, int on);
nb_status nb_dist_set_overlap(nb_dist *d, size_t bucket_bytes);   /* 0 = off */
/* weight as nb_dist_allreduce_grads's. NB_ERR_STATE when a step is open. */
nb_status nb_dist_step_begin(nb_dist *d, nb_model *m, double weight);
nb_status nb_dist_step_end(nb_dist *d, nb_model *m);

/* Sum n doubles over the ranks, in place (evaluation counts and losses). */
nb_status nb_dist_sum(nb_dist *d, double *v, int n);

/* The collective that keeps the ranks in step: every rank passes its own
 * status and n doubles to sum (may be 0). Returns NB_OK when every rank
 * passed NB_OK; otherwise the local failure (its message kept) on the ranks
 * that failed and NB_ERR_STATE "rank R failed" on the others, so that all
 * ranks stop together. NB_ERR_NONFINITE counts as a failure. */
nb_status nb_dist_agree(nb_dist *d, nb_status local, double *sums, int n);

/* NB_OK when every rank's trained parameters are bitwise rank 0's (a 64-bit
 * hash of each compared; buffers are left out: BatchNorm statistics are
 * per rank); otherwise NB_ERR_STATE on every rank, naming the first that
 * differs somewhere. A cheap guard against drift. */
nb_status nb_dist_check_same(nb_dist *d, const nb_model *m);

/* Rank `rank`'s share of n items split among `size` ranks: the contiguous
 * range [*begin, *begin + *count), sizes differing by at most one (the first
 * n % size ranks get one more). Works without MPI. */
void      nb_dist_share(int64_t n, int rank, int size, int64_t *begin, int64_t *count);

/* Traffic since nb_dist_init: collective calls, bytes this rank contributed
 * (the payload, not what the algorithm sends on the wire) and wall seconds
 * spent inside them (waiting for slower ranks included). */
typedef struct nb_dist_stats {
    int64_t calls, bytes;
    double  seconds;
} nb_dist_stats;
void      nb_dist_get_stats(const nb_dist *d, nb_dist_stats *st);

#ifdef __cplusplus
}
#endif
#endif
