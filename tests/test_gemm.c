/* nb_gemm against nb_gemm_ref: every transpose, alpha/beta, edge sizes,
 * padded leading dimensions, each micro-kernel this CPU runs, and bit-equal
 * results for 1 and 2 threads. */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv, clock_gettime */
#endif
#include "test.h"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* Test hook in src/kernels/gemm.c: force a kernel ("avx512", "avx2",
 * "scalar"; NULL = automatic). 0 if this CPU cannot run it. */
int nb__gemm_force_isa(const char *name);

static const char *const isas[] = {"scalar", "avx2", "avx512"};

static uint32_t rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* rows x cols with leading dimension ld, allocated to the last element
 * exactly (no slack), so the sanitizer sees any read past the matrix. */
static float *mat(int rows, int cols, int ld)
{
    size_t n = rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + cols : 1;
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) p[i] = frand();
    return p;
}

typedef struct { int ta, tb, M, N, K, lda_pad, ldb_pad, ldc_pad; float alpha, beta; int nan_c; } gcase;

/* Runs one case through nb_gemm and the reference; 1 if they agree within
 * fp32 rounding (relative to sum |alpha a b| + |beta c|) and nb_gemm left
 * the padding of C alone. */
static int check_case(const gcase *t, char *why, size_t nwhy)
{
    const int ar = t->ta ? t->K : t->M, ac = t->ta ? t->M : t->K;
    const int br = t->tb ? t->N : t->K, bc = t->tb ? t->K : t->N;
    const int lda = ac + t->lda_pad, ldb = bc + t->ldb_pad, ldc = t->N + t->ldc_pad;
    float *A = mat(ar, ac, lda), *B = mat(br, bc, ldb), *C = mat(t->M, t->N, ldc);
    float *R = mat(t->M, t->N, ldc), *S = mat(t->M, t->N, ldc);
    float *Aa = mat(ar, ac, lda), *Ba = mat(br, bc, ldb);
    int ok = A && B && C && R && S && Aa && Ba;
    if (!ok) snprintf(why, nwhy, "out of memory");
    const size_t nc = t->M > 0 && t->N > 0 ? (size_t)(t->M - 1) * ldc + t->N : 1;
    if (ok) {
        for (size_t i = 0; i < nc; i++) {
            if (t->nan_c) C[i] = NAN;
            R[i] = C[i];
            S[i] = fabsf(C[i]);
        }
        for (size_t i = 0; i < (ar > 0 && ac > 0 ? (size_t)(ar - 1) * lda + ac : 1); i++) Aa[i] = fabsf(A[i]);
        for (size_t i = 0; i < (br > 0 && bc > 0 ? (size_t)(br - 1) * ldb + bc : 1); i++) Ba[i] = fabsf(B[i]);
        nb_gemm(t->ta, t->tb, t->M, t->N, t->K, t->alpha, A, lda, B, ldb, t->beta, C, ldc);
        nb_gemm_ref(t->ta, t->tb, t->M, t->N, t->K, t->alpha, A, lda, B, ldb, t->beta, R, ldc);
        /* error scale: the same product over absolute values */
        nb_gemm_ref(t->ta, t->tb, t->M, t->N, t->K, fabsf(t->alpha), Aa, lda, Ba, ldb,
                    t->nan_c ? 0.0f : fabsf(t->beta), S, ldc);
        const double tol = 1e-6 * (2.0 + sqrt((double)t->K));
        for (int i = 0; ok && i < t->M; i++)
            for (int j = 0; ok && j < ldc && (size_t)i * ldc + j < nc; j++) {
                const size_t x = (size_t)i * ldc + j;
                if (j >= t->N) { /* padding: untouched (NaN stays NaN) */
                    if (!(C[x] == R[x] || (isnan(C[x]) && isnan(R[x])))) {
                        snprintf(why, nwhy, "padding C[%d][%d] changed", i, j);
                        ok = 0;
                    }
                } else if (!(fabs((double)C[x] - R[x]) <= tol * S[x] + 1e-30)) {
                    snprintf(why, nwhy, "C[%d][%d] = %.9g, reference %.9g (scale %.3g)", i, j,
                             C[x], R[x], S[x]);
                    ok = 0;
                }
            }
    }
    free(A), free(B), free(C), free(R), free(S), free(Aa), free(Ba);
    return ok;
}

#define CHECK_CASE(tc)                                                              \
    do { char why_[160]; const gcase *t_ = (tc);                                    \
         CHECK_MSG(check_case(t_, why_, sizeof why_),                               \
                   "%s ta=%d tb=%d M=%d N=%d K=%d pads=%d,%d,%d alpha=%g beta=%g nan=%d: %s", \
                   nb_gemm_isa(), t_->ta, t_->tb, t_->M, t_->N, t_->K, t_->lda_pad,    \
                   t_->ldb_pad, t_->ldc_pad, t_->alpha, t_->beta, t_->nan_c, why_); } while (0)

/* Sizes around every tile and block edge of the three kernels, plus sizes
 * large enough to cross KC, MC and NC blocks and to use two threads. */
static const int edge_mnk[][3] = {
    {1, 1, 1}, {1, 1, 7}, {2, 3, 1}, {1, 40, 5}, {40, 1, 5}, {3, 17, 2},
    {4, 8, 8}, {5, 9, 3}, {6, 16, 16}, {7, 15, 17}, {13, 31, 9}, {14, 32, 16},
    {15, 33, 15}, {28, 64, 31}, {29, 63, 33}, {56, 48, 20}, {57, 47, 19},
    {64, 10, 100}, {10, 100, 64}, {64, 100, 10}, {100, 128, 64},
    {20, 1600, 40}, {30, 40, 900}, {250, 70, 50}, {113, 97, 385}, {256, 50, 30},
    {257, 50, 30}, {301, 40, 20}, {130, 1100, 40},
};

static void run_all_shapes(void)
{
    const float ab[][2] = {{1, 0}, {0.5f, 1}, {-2, 0.25f}, {1, -1}};
    for (size_t s = 0; s < sizeof edge_mnk / sizeof edge_mnk[0]; s++)
        for (int tr = 0; tr < 4; tr++)
            for (int v = 0; v < 4; v++) {
                const int big = edge_mnk[s][0] * edge_mnk[s][1] * edge_mnk[s][2] > 100000;
                if (big && v > 1) continue; /* the reference is slow */
                gcase t = {tr >> 1, tr & 1, edge_mnk[s][0], edge_mnk[s][1], edge_mnk[s][2],
                           v & 1 ? 3 : 0, v & 2 ? 5 : 0, v ? 7 : 0, ab[v][0], ab[v][1], 0};
                CHECK_CASE(&t);
            }
}

static void run_random_sizes(void)
{
    uint32_t seed = 777;
    for (int r = 0; r < 60; r++) {
        seed = seed * 1664525u + 1013904223u;
        const uint32_t x = seed;
        gcase t = {(int)(x & 1), (int)(x >> 1 & 1), 1 + (int)(x >> 2 & 63),
                   1 + (int)(x >> 8 & 63), 1 + (int)(x >> 14 & 63), (int)(x >> 20 & 3),
                   (int)(x >> 22 & 3), (int)(x >> 24 & 3), 1.5f, (x >> 26 & 1) ? 0.0f : -0.5f, 0};
        CHECK_CASE(&t);
    }
}

static void run_nan_c(void)
{
    for (int tr = 0; tr < 4; tr++) {
        gcase t = {tr >> 1, tr & 1, 37, 45, 29, 1, 2, 3, 0.75f, 0.0f, 1};
        CHECK_CASE(&t);
        gcase u = {tr >> 1, tr & 1, 64, 256, 300, 0, 0, 0, 1.0f, 0.0f, 1}; /* threaded */
        CHECK_CASE(&u);
        gcase v = {tr >> 1, tr & 1, 300, 40, 50, 0, 0, 0, 1.0f, 0.0f, 1}; /* packed NT */
        CHECK_CASE(&v);
    }
}

/* Runs fn once per kernel this CPU has; the automatic choice is restored
 * even when fn failed. */
static void for_each_isa(void (*fn)(void))
{
    int ran = 0;
    for (int i = 0; i < 3; i++)
        if (nb__gemm_force_isa(isas[i])) {
            ran++;
            fn();
        }
    nb__gemm_force_isa(NULL);
    CHECK(ran >= 1); /* scalar always runs */
}

TEST(gemm_matches_reference_every_kernel) { for_each_isa(run_all_shapes); }
TEST(gemm_random_sizes_every_kernel) { for_each_isa(run_random_sizes); }
TEST(gemm_beta_zero_ignores_nan_c) { for_each_isa(run_nan_c); }


TEST(gemm_degenerate_sizes)
{
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8};
    float C[4] = {NAN, NAN, NAN, NAN};
    nb_gemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 2); /* K = 0, beta = 0 */
    for (int i = 0; i < 4; i++) CHECK(C[i] == 0.0f);
    float D[4] = {1, 2, 3, 4};
    nb_gemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, D, 2); /* K = 0: C = beta C */
    CHECK(D[0] == 2 && D[1] == 4 && D[2] == 6 && D[3] == 8);
    nb_gemm(0, 0, 2, 2, 2, 0.0f, A, 2, B, 2, 1.0f, D, 2); /* alpha = 0 */
    CHECK(D[0] == 2 && D[3] == 8);
    nb_gemm(0, 0, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, D, 2); /* M = 0: nothing */
    nb_gemm(0, 0, 2, 0, 2, 1.0f, A, 2, B, 2, 0.0f, D, 2); /* N = 0: nothing */
    CHECK(D[0] == 2 && D[3] == 8);
    float c1 = 10;
    nb_gemm(1, 1, 1, 1, 1, 2.0f, A, 1, B, 1, 0.5f, &c1, 1);
    CHECK(c1 == 2.0f * 1 * 5 + 5.0f);
}

/* The exact product of small integers: every kernel and path is exact. */
static void run_exact(void)
{
    enum { M = 19, N = 35, K = 23 };
    static float A[M * K], B[K * N], Bt[N * K], C[M * N];
    for (int i = 0; i < M * K; i++) A[i] = (float)(i % 7 - 3);
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) Bt[n * K + k] = B[k * N + n] = (float)((k * N + n) % 5 - 2);
    for (int tb = 0; tb < 2; tb++) { /* tb = 1: B as N x K, the transposed path */
        nb_gemm(0, tb, M, N, K, 1.0f, A, K, tb ? Bt : B, tb ? K : N, 0.0f, C, N);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float want = 0;
                for (int k = 0; k < K; k++) want += A[m * K + k] * B[k * N + n];
                CHECK_MSG(C[m * N + n] == want, "%s tb=%d: C[%d][%d] = %g, want %g",
                          nb_gemm_isa(), tb, m, n, C[m * N + n], want);
            }
    }
}
TEST(gemm_exact_small_integers) { for_each_isa(run_exact); }

/* Threads own disjoint blocks of C and never split K: same bits for 1, 2
 * and 3 threads. */
static void run_threads(void)
{
    static const int shapes[][5] = {
        {0, 1, 64, 256, 784}, {1, 0, 256, 784, 64}, {0, 0, 64, 784, 256},
        {0, 0, 301, 203, 517}, {1, 1, 97, 1700, 45}, {0, 0, 2000, 33, 70},
        {0, 1, 400, 100, 50}, {1, 1, 300, 300, 30},
    };
    const int saved = nb_get_threads();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int ta = shapes[s][0], tb = shapes[s][1], M = shapes[s][2], N = shapes[s][3],
                  K = shapes[s][4];
        /* C0: the initial C (beta != 0 reads it), C1: one thread, Cn: nth */
        const size_t bytes = (size_t)M * N * sizeof(float);
        float *A = mat(M, K, K), *B = mat(K, N, N), *C0 = mat(M, N, N);
        float *C1 = malloc(bytes), *Cn = malloc(bytes);
        int same = A && B && C0 && C1 && Cn, nth = 1;
        for (; same && nth <= 3; nth++) { /* 3: more threads than cores */
            float *C = nth == 1 ? C1 : Cn;
            memcpy(C, C0, bytes);
            nb_set_threads(nth);
            nb_gemm(ta, tb, M, N, K, 0.7f, A, ta ? M : K, B, tb ? K : N, 0.3f, C, N);
            same = nth == 1 || !memcmp(C1, Cn, bytes);
        }
        nth--;
        free(A), free(B), free(C0), free(C1), free(Cn);
        nb_set_threads(saved);
        CHECK_MSG(same, "%s: %dx%dx%d ta=%d tb=%d differs between 1 and %d threads",
                  nb_gemm_isa(), M, N, K, ta, tb, nth);
    }
}
TEST(gemm_thread_count_gives_same_bits) { for_each_isa(run_threads); }

/* Two caller threads running 2-thread GEMMs at once: one gets nb_gemm's
 * helper threads, the other runs alone; both give the 1-thread bits. */
typedef struct { const float *A, *B; float *C; } concurrent_arg;
static void *concurrent_gemm(void *p)
{
    concurrent_arg *c = p;
    for (int r = 0; r < 20; r++) nb_gemm(0, 1, 200, 300, 150, 1.0f, c->A, 150, c->B, 150, 0.0f, c->C, 300);
    return NULL;
}

TEST(gemm_concurrent_callers_same_bits)
{
    const size_t nc = 200 * 300;
    float *A = mat(200, 150, 150), *B = mat(300, 150, 150), *R = malloc(nc * sizeof *R);
    float *C[2] = {malloc(nc * sizeof(float)), malloc(nc * sizeof(float))};
    CHECK(A && B && R && C[0] && C[1]);
    if (A && B && R && C[0] && C[1]) {
        const int saved = nb_get_threads();
        nb_set_threads(1);
        nb_gemm(0, 1, 200, 300, 150, 1.0f, A, 150, B, 150, 0.0f, R, 300);
        nb_set_threads(2);
        concurrent_arg arg[2] = {{A, B, C[0]}, {A, B, C[1]}};
        pthread_t t[2];
        int started[2];
        for (int i = 0; i < 2; i++) started[i] = pthread_create(&t[i], NULL, concurrent_gemm, &arg[i]) == 0;
        for (int i = 0; i < 2; i++)
            if (started[i]) pthread_join(t[i], NULL);
        nb_set_threads(saved);
        CHECK(started[0] && started[1]);
        CHECK(!memcmp(C[0], R, nc * sizeof(float)) && !memcmp(C[1], R, nc * sizeof(float)));
    }
    free(A), free(B), free(R), free(C[0]), free(C[1]);
}

TEST(gemm_isa_env_and_name)
{
    nb__gemm_force_isa(NULL);
    const char *isa = nb_gemm_isa();
    if (!strcmp(isa, "openblas")) { /* make BLAS=openblas: nothing to choose */
        CHECK(nb__gemm_force_isa("scalar") && !strcmp(nb_gemm_isa(), "openblas"));
        return;
    }
    CHECK(!strcmp(isa, "avx512") || !strcmp(isa, "avx2") || !strcmp(isa, "scalar"));
    CHECK(nb__gemm_force_isa("scalar"));
    CHECK(!strcmp(nb_gemm_isa(), "scalar"));
    CHECK(!nb__gemm_force_isa("sse9"));
    CHECK(!strcmp(nb_gemm_isa(), "scalar")); /* unchanged by a bad name */
    /* NABLA_GEMM_ISA may lower the automatic choice */
    char *old = getenv("NABLA_GEMM_ISA");
    char saved[32] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("NABLA_GEMM_ISA", "scalar", 1);
    nb__gemm_force_isa(NULL);
    CHECK(!strcmp(nb_gemm_isa(), "scalar"));
    if (old) setenv("NABLA_GEMM_ISA", saved, 1);
    else unsetenv("NABLA_GEMM_ISA");
    nb__gemm_force_isa(NULL);
    CHECK(!strcmp(nb_gemm_isa(), isa));
}
