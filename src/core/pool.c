/* The thread pool (see pool.h).
 *
 * Why not OpenMP: an OpenMP region ends in a barrier that waits for every
 * thread of the team, and libgomp's idle threads spin for milliseconds.
 * When other processes share the cores, a spinning or preempted team member
 * is descheduled for a whole time slice and every region waits for it
 * (measured on this 2-core box beside other jobs: 2-thread GEMMs at 0.4-7
 * GFLOP/s against 180 on one thread). And beside a second pool (nb_gemm's),
 * the team's spinning threads took the cores from the GEMM's helpers: one
 * pool for everything removes both. A helper with no work spins briefly,
 * then yields its core, then sleeps (NB_POOL_SPIN_NS). */
#include "internal.h"
#include "pool.h"
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>

/* How an idle helper waits for the next job: it spins NB_POOL_SPIN_NS,
 * then yields its core (sched_yield: it stays runnable, and any other
 * thread that wants the core gets it) until NB_POOL_YIELD_NS, then sleeps.
 * A sleeping helper is slow to wake on a virtual machine (its vCPU halts),
 * and a training step's parallel regions are often 20-200 us apart.
 * Measured on the CNN's step, 2 threads, 250 steps: spinning 30 us and
 * then sleeping, the helper slept through 1,910 of 3,731 jobs and took
 * 66 us on average to start each of them, and a step took 11.7-12.1 ms;
 * yielding until 1 ms, it slept through 1 of 3,750 and a step took
 * 10.6-10.7 ms (interleaved runs). */
#define NB_POOL_SPIN_NS 30000
#define NB_POOL_YIELD_NS 1000000

static struct {
    pthread_mutex_t run;  /* one job at a time */
    pthread_mutex_t lock; /* guards the sleep below */
    pthread_cond_t wake;
    atomic_uint gen;      /* bumped for every job */
    atomic_int sleepers;  /* helpers waiting on `wake` */
    atomic_int active;    /* helpers that may be reading `job` */
    _Atomic(nb__pool_job *) job;
    int nhelpers;         /* started (under `run`) */
} pool = {.run = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e9 * (double)t.tv_sec + (double)t.tv_nsec;
}

/* Nonzero on a thread while it runs the tasks of a job with helpers. */
static _Thread_local int in_job;
/* The thread's slot in the job it runs (see nb__pool_slot). */
static _Thread_local int slot;

int nb__pool_slot(void) { return slot; }

/* Thread `me` (0: the caller) runs the next task left until none is. */
static void work(nb__pool_job *j, int me)
{
    in_job = 1;
    slot = me;
    for (int t; (t = atomic_fetch_add(&j->next, 1)) < j->ntasks;) {
        j->run(j, t);
        atomic_fetch_sub(&j->left, 1);
    }
    in_job = 0;
    slot = 0;
}

/* Waits until gen differs from seen (spinning, yielding, then asleep: see
 * NB_POOL_SPIN_NS) and returns it. */
static unsigned wait_job(unsigned seen)
{
    unsigned g;
    const double t0 = now_ns();
    for (int i = 0; (g = atomic_load(&pool.gen)) == seen; i++) {
        if ((i & 63) != 63) {
            cpu_relax();
            continue;
        }
        const double waited = now_ns() - t0;
        if (waited < NB_POOL_SPIN_NS) continue;
        if (waited < NB_POOL_YIELD_NS) {
            sched_yield();
            continue;
        }
        pthread_mutex_lock(&pool.lock);
        atomic_fetch_add(&pool.sleepers, 1);
        while ((g = atomic_load(&pool.gen)) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        atomic_fetch_sub(&pool.sleepers, 1);
        pthread_mutex_unlock(&pool.lock);
        break;
    }
    return g;
}

/* Helper `id` (1, 2, ...): works on each job that wants that many threads.
 * `active` brackets every look at the job, so its owner can return once
 * the count drops to zero (the job lives on the owner's stack). */
static void *helper_main(void *arg)
{
    const int id = (int)(uintptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        seen = wait_job(seen);
        atomic_fetch_add(&pool.active, 1);
        nb__pool_job *j = atomic_load(&pool.job);
        if (j && id <= j->helpers) work(j, id);
        atomic_fetch_sub(&pool.active, 1);
    }
    return NULL;
}

/* In a child of fork() only the forking thread exists: no helpers, and
 * the pool's locks and counts as if none had ever run. */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.run, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.active, 0);
    atomic_store(&pool.job, NULL);
    pool.nhelpers = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void fork_init(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

/* Starts helpers until there are n (under pool.run); returns how many run.
 * Helpers block every signal: the caller's threads handle them. */
static int start_helpers(int n)
{
    pthread_once(&fork_once, fork_init);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (pool.nhelpers < n) {
        pthread_attr_t at;
        pthread_t t;
        int ok = pthread_attr_init(&at) == 0;
        ok = ok && pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0 &&
             pthread_create(&t, &at, helper_main, (void *)(uintptr_t)(pool.nhelpers + 1)) == 0;
        pthread_attr_destroy(&at);
        if (!ok) break;
        pool.nhelpers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool.nhelpers;
}

/* Waits, spinning and then yielding the core, until *v == 0. */
static void wait_zero(atomic_int *v)
{
    for (int i = 0; atomic_load(v) != 0; i++) {
        if (i < 2000) cpu_relax();
        else sched_yield(); /* a preempted helper may need this core */
    }
}

/* All of j's tasks on this thread, as slot 0 (also inside another job's
 * task, whose slot is restored after). */
static void run_alone(nb__pool_job *j)
{
    const int outer = slot;
    slot = 0;
    for (int t = 0; t < j->ntasks; t++) j->run(j, t);
    slot = outer;
}

void nb__pool_run(nb__pool_job *j)
{
    const int n = j->ntasks;
    int threads = j->threads > 0 && j->threads < n ? j->threads : n;
    if (threads > NB__POOL_MAX_THREADS) threads = NB__POOL_MAX_THREADS;
    if (threads <= 1 || in_job || pthread_mutex_trylock(&pool.run) != 0) {
        run_alone(j);
        return;
    }
    const int started = start_helpers(threads - 1);
    j->helpers = started < threads - 1 ? started : threads - 1;
    atomic_init(&j->next, 0);
    atomic_init(&j->left, n);
    atomic_store(&pool.job, j);
    atomic_fetch_add(&pool.gen, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    work(j, 0);
    wait_zero(&j->left); /* tasks that helpers still run */
    atomic_store(&pool.job, NULL);
    wait_zero(&pool.active); /* nobody reads *j any more */
    pthread_mutex_unlock(&pool.run);
}

/* ---- the parallel loop ------------------------------------------------------ */

typedef struct {
    nb__pool_job job;
    int64_t n;
    nb__range_fn fn;
    void *ctx;
} range_job;

static void run_range(nb__pool_job *j, int part)
{
    range_job *r = (range_job *)j;
    const int64_t lo = r->n * part / j->ntasks, hi = r->n * (part + 1) / j->ntasks;
    if (hi > lo) r->fn(r->ctx, lo, hi, part);
}

void nb__par_for_shared(int64_t n, int64_t parts, int threads, nb__range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (parts > n) parts = n;
    if (parts > INT_MAX) parts = INT_MAX;
    if (threads < 1) threads = 1;
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    range_job r = {.job = {.run = run_range, .ntasks = (int)parts, .threads = threads}, .n = n, .fn = fn, .ctx = ctx};
    nb__pool_run(&r.job);
}

void nb__par_for(int64_t n, int parts, nb__range_fn fn, void *ctx)
{
    if (parts > NB__POOL_MAX_THREADS) parts = NB__POOL_MAX_THREADS;
    nb__par_for_shared(n, parts, parts, fn, ctx);
}

int nb__par_for_balanced(int64_t n, int par, nb__range_fn fn, void *ctx)
{
    const int threads = nb__par_parts(n, par);
    int64_t parts = threads > 1 ? (int64_t)NB__PAR_RANGES_PER_THREAD * threads : 1;
    if (parts > n) parts = n;
    if (parts < 1) parts = 1;
    nb__par_for_shared(n, parts, threads, fn, ctx);
    return (int)parts;
}

int nb__par_parts(int64_t n, int par)
{
    if (!par || in_job || n <= 1) return 1;
    int t = nb_get_threads();
    if (t > NB__POOL_MAX_THREADS) t = NB__POOL_MAX_THREADS;
    return n < t ? (int)n : t;
}

/* ---- copies and clears -------------------------------------------------------- */

#define NB_POOL_COPY_PAR_MIN 65536 /* floats before threads pay off */

typedef struct {
    float *dst;
    const float *src;
} copy_job;

static void copy_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const copy_job *c = ctx;
    if (c->src) memcpy(c->dst + lo, c->src + lo, (size_t)(hi - lo) * sizeof(float));
    else memset(c->dst + lo, 0, (size_t)(hi - lo) * sizeof(float));
}

void nb__par_copy(float *dst, const float *src, int64_t n)
{
    if (n <= 0) return;
    copy_job c = {dst, src};
    nb__par_for_balanced(n, n >= NB_POOL_COPY_PAR_MIN, copy_range, &c);
}
