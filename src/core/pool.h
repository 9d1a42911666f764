/* The library's one thread pool: nb_gemm and every parallel loop of the
 * ops and optimizers run on it (private to libnabla).
 *
 * A job is a fixed number of tasks run by the caller and up to threads - 1
 * helper threads (threads <= ntasks). Each thread claims the next task not
 * yet taken until none is left, so the caller never waits for a helper
 * that has not started (a late or descheduled helper finds the tasks done
 * by the others), and with more tasks than threads the faster thread runs
 * more of them. Which thread runs a task never changes a result bit. One
 * job runs at a time; a job started while another runs (a loop inside a
 * task, another thread's call) runs all its tasks on its caller. */
#ifndef NABLA_POOL_H
#define NABLA_POOL_H

#include <stdatomic.h>
#include <stdint.h>

#define NB__POOL_MAX_THREADS 64

typedef struct nb__pool_job nb__pool_job;
struct nb__pool_job {
    void (*run)(nb__pool_job *j, int task); /* computes task 0 .. ntasks-1 */
    int ntasks;                             /* >= 1 */
    int threads;                            /* at most; 0: ntasks (<= NB__POOL_MAX_THREADS) */
    /* the pool's bookkeeping */
    int helpers;
    atomic_int next, left;
};

/* Runs every task of j (on the caller alone when it has one thread or the
 * pool is busy) and returns when all are done. */
void nb__pool_run(nb__pool_job *j);

/* The thread running the current task: 0 for the job's caller (and
 * outside jobs), 1 .. threads-1 for helpers; an index for per-thread
 * scratch in a job of more tasks than threads. */
int nb__pool_slot(void);

/* The parallel loop of the ops: fn(ctx, lo, hi, part) for `parts`
 * contiguous ranges [lo, hi) that cover [0, n), of sizes differing by at
 * most one, part = 0 .. parts-1 (an index for per-part scratch). The ranges
 * depend on n and parts alone. */
typedef void (*nb__range_fn)(void *ctx, int64_t lo, int64_t hi, int part);
void nb__par_for(int64_t n, int parts, nb__range_fn fn, void *ctx);

/* The same loop over `parts` ranges run by at most `threads` threads
 * (1 .. NB__POOL_MAX_THREADS), each taking the next range as it
 * finishes one: for loops whose ranges may take unequal times (a busy
 * core, a helper that starts late). fn finds its thread's scratch by
 * nb__pool_slot(). */
void nb__par_for_shared(int64_t n, int64_t parts, int threads, nb__range_fn fn, void *ctx);

/* The loop for work bound by memory, whose equal ranges still finish
 * apart: `par` as nb__par_parts, and when that gives several threads they
 * share NB__PAR_RANGES_PER_THREAD ranges each (nb__par_for_shared; measured
 * on the CNN's step: two halves left the caller waiting 12-26% of such a
 * loop). Returns the number of ranges (fn's part is below it, at most
 * NB__PAR_RANGES_MAX). */
#define NB__PAR_RANGES_PER_THREAD 4
#define NB__PAR_RANGES_MAX (NB__PAR_RANGES_PER_THREAD * NB__POOL_MAX_THREADS)
int nb__par_for_balanced(int64_t n, int par, nb__range_fn fn, void *ctx);

/* dst[0, n) = src[0, n), or zeros when src is NULL, on the pool's threads
 * when n is large: the clears and copies of gradient buffers (a step of the
 * CNN clears 1.7 MB and copies 0.8 MB, each 30-70 us on one thread). */
void nb__par_copy(float *dst, const float *src, int64_t n);

/* How many parts a loop of n items should use: 1 when !par, else the
 * thread count (nb_get_threads) capped by n. Inside a task of a running
 * job it is 1: the pool is taken, so more parts would only run in turn. */
int nb__par_parts(int64_t n, int par);

#endif
