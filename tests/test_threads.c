/* The library's thread pool (src/core/pool.c): the loops of the ops.
 *  - nb__par_for_shared runs every range exactly once, on at most the
 *    threads asked for, each with a slot (nb__pool_slot) that no other
 *    thread holds meanwhile, whatever the counts;
 *  - a loop started inside a task runs alone on that thread as slot 0, and
 *    the task's own slot is back after it;
 *  - nb__par_for's ranges are nb__par_for_shared's with one per thread. */
#include "test.h"
#include "../src/core/pool.h"
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define ITEMS 1000
#define SLOTS 8

typedef struct {
    atomic_int seen[ITEMS];      /* times each item was visited */
    atomic_int busy[SLOTS];      /* a slot's holder while it runs a range */
    atomic_int ranges, clash, bad_slot, bad_nested;
    int threads;
    int nested;                  /* run a loop inside every range */
} visit;

static void inner_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    visit *v = ctx;
    if (nb__pool_slot() != 0) atomic_fetch_add(&v->bad_nested, 1);
    (void)lo, (void)hi;
}

static void visit_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    visit *v = ctx;
    const int s = nb__pool_slot();
    if (s < 0 || s >= v->threads || s >= SLOTS) {
        atomic_fetch_add(&v->bad_slot, 1);
        return;
    }
    if (atomic_exchange(&v->busy[s], 1)) atomic_fetch_add(&v->clash, 1);
    atomic_fetch_add(&v->ranges, 1);
    for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&v->seen[i], 1);
    if (v->nested) {
        nb__par_for_shared(10, 5, 2, inner_range, v);
        if (nb__pool_slot() != s) atomic_fetch_add(&v->bad_nested, 1);
    }
    atomic_store(&v->busy[s], 0);
}

TEST(par_for_shared_runs_each_range_once)
{
    const int saved = nb_get_threads();
    nb_set_threads(2);
    const struct { int64_t n, parts; int threads, nested; } cases[] = {
        /* 3 threads: more than the cores here, as test_gemm (a helper started
         * here stays for the rest of the run) */
        {ITEMS, 37, 2, 0}, {ITEMS, 1000, 2, 0}, {ITEMS, 2, 2, 0}, {ITEMS, 64, 1, 0},
        {7, 50, 2, 0},     {ITEMS, 100, 3, 0},  {ITEMS, 9, 2, 1},   {1, 1, 2, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        visit *v = calloc(1, sizeof *v);
        CHECK(v);
        v->threads = cases[c].threads;
        v->nested = cases[c].nested;
        for (int rep = 0; rep < 20; rep++) /* helpers asleep, spinning, late */
            nb__par_for_shared(cases[c].n, cases[c].parts, cases[c].threads, visit_range, v);
        const int64_t parts = cases[c].parts < cases[c].n ? cases[c].parts : cases[c].n;
        CHECK_MSG(atomic_load(&v->ranges) == 20 * parts, "case %zu: %d ranges, expected %lld", c,
                  atomic_load(&v->ranges), (long long)(20 * parts));
        for (int64_t i = 0; i < ITEMS; i++) {
            const int want = i < cases[c].n ? 20 : 0;
            CHECK_MSG(atomic_load(&v->seen[i]) == want, "case %zu: item %lld visited %d times, expected %d", c,
                      (long long)i, atomic_load(&v->seen[i]), want);
        }
        CHECK_MSG(!atomic_load(&v->bad_slot), "case %zu: a slot outside 0..threads-1", c);
        CHECK_MSG(!atomic_load(&v->clash), "case %zu: two threads held one slot at once", c);
        CHECK_MSG(!atomic_load(&v->bad_nested), "case %zu: a nested loop's slot was not 0, or not restored", c);
        free(v);
    }
    CHECK(nb__pool_slot() == 0);
    nb_set_threads(saved);
}

static void mark_part(void *ctx, int64_t lo, int64_t hi, int part)
{
    int *owner = ctx;
    for (int64_t i = lo; i < hi; i++) owner[i] = part;
}

/* nb__par_for(n, parts): part p covers [n p / parts, n (p + 1) / parts). */
TEST(par_for_ranges_depend_on_n_and_parts_only)
{
    const int saved = nb_get_threads();
    nb_set_threads(2);
    int owner[101];
    for (int parts = 1; parts <= 4; parts++) {
        for (int i = 0; i < 101; i++) owner[i] = -1;
        nb__par_for(101, parts, mark_part, owner);
        for (int i = 0; i < 101; i++) {
            int p = 0;
            while ((int64_t)101 * (p + 1) / parts <= i) p++;
            CHECK_MSG(owner[i] == p, "parts %d: item %d in part %d, expected %d", parts, i, owner[i], p);
        }
    }
    nb_set_threads(saved);
}
