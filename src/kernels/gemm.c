/* nb_gemm: packed GEMM (Goto/BLIS design) with a run-time choice of
 * micro-kernel (AVX-512, AVX2 or portable C) and OpenMP over the output.
 *
 * Per thread, for a rectangle of C:
 *   for jc in N step NC:            B block (KC x NC) stays in L2
 *     for pc in K step KC:          one rank-KC update of C
 *       pack B block (or use B in place when it is already row-major)
 *       for ic in M step MC:
 *         pack A block into MR-row panels
 *         macro-kernel: for each MR panel (held in L1), sweep the NR
 *                       panels of B with the register-blocked micro-kernel
 * Threads own disjoint rectangles of C and never split K, so every element
 * is computed by the same sequence of operations whatever the thread count:
 * results are bit-identical for 1, 2, ... threads. */
#include "../core/internal.h"
#include "simd.h"
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef NB_OPENBLAS
#include <cblas.h>

void nb_gemm(int transa, int transb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                transb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}

const char *nb_gemm_isa(void) { return "openblas"; }

#else

/* ---- portable micro-kernel (plain C; the compiler vectorises what it can) - */
#define SMR 4
#define SNR 8

static void scalar_pack_a(int trans, const float *A, ptrdiff_t lda, int mc, int kc, float *dst)
{
    for (int i0 = 0; i0 < mc; i0 += SMR, dst += SMR * kc) {
        const int rows = mc - i0 < SMR ? mc - i0 : SMR;
        for (int k = 0; k < kc; k++) /* pad rows are zero: the kernel reads them */
            for (int i = 0; i < SMR; i++)
                dst[k * SMR + i] = i >= rows ? 0.0f : trans ? A[k * lda + i0 + i] : A[(i0 + i) * lda + k];
    }
}

static void scalar_pack_b(int trans, const float *B, ptrdiff_t ldb, int kc, int nc, float *dst)
{
    for (int j0 = 0; j0 < nc; j0 += SNR, dst += SNR * kc) {
        const int cols = nc - j0 < SNR ? nc - j0 : SNR;
        for (int k = 0; k < kc; k++)
            for (int j = 0; j < cols; j++)
                dst[k * SNR + j] = trans ? B[(j0 + j) * ldb + k] : B[k * ldb + j0 + j];
    }
}

static void scalar_tile(int mr, int nr, int kc, const float *a, const float *b,
                        ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    float acc[SMR][SNR] = {{0}};
    if (nr == SNR) {
        for (int k = 0; k < kc; k++, a += SMR, b += rsb)
            for (int i = 0; i < SMR; i++)
                for (int j = 0; j < SNR; j++) acc[i][j] += a[i] * b[j];
    } else {
        for (int k = 0; k < kc; k++, a += SMR, b += rsb)
            for (int i = 0; i < SMR; i++)
                for (int j = 0; j < nr; j++) acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *cij = &c[i * ldc + j];
            *cij = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *cij;
        }
}

static void scalar_macro(int mc, int nc, int kc, float alpha, const float *Ap,
                         const float *B, ptrdiff_t rsb, ptrdiff_t panel,
                         float beta, float *C, ptrdiff_t ldc)
{
    for (int ir = 0; ir < mc; ir += SMR)
        for (int jr = 0; jr < nc; jr += SNR)
            scalar_tile(mc - ir < SMR ? mc - ir : SMR, nc - jr < SNR ? nc - jr : SNR, kc,
                        Ap + (ptrdiff_t)ir * kc, B + jr / SNR * panel, rsb,
                        C + ir * ldc + jr, ldc, alpha, beta);
}

static const nb__gemm_impl scalar_impl = {
    "scalar", SMR, SNR, 256, 64, 1024, scalar_pack_a, scalar_pack_b, scalar_macro,
};

/* ---- choosing the kernel --------------------------------------------------- */

/* Which kernels this CPU can run, best first. */
static const nb__gemm_impl *isa_supported(const char *name)
{
    if (!strcmp(name, "avx512") && nb__gemm_impl_avx512.mr &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
        return &nb__gemm_impl_avx512;
    if (!strcmp(name, "avx2") && nb__gemm_impl_avx2.mr &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &nb__gemm_impl_avx2;
    if (!strcmp(name, "scalar")) return &scalar_impl;
    return NULL;
}

static const nb__gemm_impl *auto_impl(void)
{
    static const char *const order[] = {"avx512", "avx2", "scalar"};
    const char *want = getenv("NABLA_GEMM_ISA"); /* may only lower the choice */
    int start = 0;
    for (int i = 0; want && i < 3; i++)
        if (!strcmp(want, order[i])) start = i;
    for (int i = start; i < 3; i++) {
        const nb__gemm_impl *im = isa_supported(order[i]);
        if (im) return im;
    }
    return &scalar_impl;
}

static const nb__gemm_impl *current_impl; /* atomics: set once, read often */

static const nb__gemm_impl *get_impl(void)
{
    const nb__gemm_impl *im = __atomic_load_n(&current_impl, __ATOMIC_ACQUIRE);
    if (!im) {
        im = auto_impl();
        __atomic_store_n(&current_impl, im, __ATOMIC_RELEASE);
    }
    return im;
}

/* Test hook: force "avx512", "avx2" or "scalar" (NULL: back to automatic).
 * Returns 0 when this CPU cannot run the named kernel (nothing changes). */
int nb__gemm_force_isa(const char *name)
{
    const nb__gemm_impl *im = name ? isa_supported(name) : auto_impl();
    if (!im) return 0;
    __atomic_store_n(&current_impl, im, __ATOMIC_RELEASE);
    return 1;
}

const char *nb_gemm_isa(void) { return get_impl()->name; }

/* ---- per-thread packing buffers -------------------------------------------- */

/* Grown on demand, kept for the thread's life: no allocation per call in a
 * steady state. 64-byte aligned for full-line vector loads. */
typedef struct { void *raw; float *p; size_t cap; } pack_buf;
static _Thread_local pack_buf tls_a, tls_b;

static float *buf_get(pack_buf *b, size_t nfloat)
{
    if (nfloat <= b->cap) return b->p;
    void *raw = NB_MALLOC(nfloat * sizeof(float) + 64);
    if (!raw) return NULL;
    NB_FREE(b->raw);
    b->raw = raw;
    b->p = (float *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    b->cap = nfloat;
    return b->p;
}

/* ---- the blocked product over one rectangle of C --------------------------- */

typedef struct {
    int transa, transb, K;
    float alpha, beta;
    const float *A, *B;
    ptrdiff_t lda, ldb, ldc;
    float *C;
} gemm_args;

/* op(A)[i, k] and op(B)[k, j] as pointers. */
static const float *a_at(const gemm_args *g, int i, int k)
{
    return g->transa ? g->A + (ptrdiff_t)k * g->lda + i : g->A + (ptrdiff_t)i * g->lda + k;
}
static const float *b_at(const gemm_args *g, int k, int j)
{
    return g->transb ? g->B + (ptrdiff_t)j * g->ldb + k : g->B + (ptrdiff_t)k * g->ldb + j;
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* Whether B is read in place rather than packed. Packing pays when the B
 * block is swept by many A panels; for a few (small M) the copy costs more
 * than it saves. Only a row-major B (no transpose) can be read in place. */
static int b_in_place(const nb__gemm_impl *im, const gemm_args *g, int m)
{
    return !g->transb && m <= 4 * im->mr;
}

/* C[i0:i0+m, j0:j0+n] of the product. Returns 0 when a buffer could not be
 * allocated (nothing written). */
static int gemm_block(const nb__gemm_impl *im, const gemm_args *g, int i0, int m, int j0, int n)
{
    const int K = g->K, MR = im->mr, NR = im->nr;
    const int kcmax = K < im->kc ? K : im->kc;
    const int mcmax = m < im->mc ? m : im->mc;
    const int ncmax = n < im->nc ? n : im->nc;
    const int direct = b_in_place(im, g, m);
    float *Ap = buf_get(&tls_a, (size_t)round_up(mcmax, MR) * kcmax);
    float *Bp = direct ? NULL : buf_get(&tls_b, (size_t)round_up(ncmax, NR) * kcmax);
    if (!Ap || (!direct && !Bp)) return 0;

    for (int jc = 0; jc < n; jc += im->nc) {
        const int nc = n - jc < im->nc ? n - jc : im->nc;
        for (int pc = 0; pc < K; pc += im->kc) {
            const int kc = K - pc < im->kc ? K - pc : im->kc;
            const float beta = pc == 0 ? g->beta : 1.0f;
            const float *Bk;
            ptrdiff_t rsb, panel;
            if (direct) {
                Bk = b_at(g, pc, j0 + jc);
                rsb = g->ldb;
                panel = NR;
            } else {
                im->pack_b(g->transb, b_at(g, pc, j0 + jc), g->ldb, kc, nc, Bp);
                Bk = Bp;
                rsb = NR;
                panel = (ptrdiff_t)NR * kc;
            }
            for (int ic = 0; ic < m; ic += im->mc) {
                const int mc = m - ic < im->mc ? m - ic : im->mc;
                im->pack_a(g->transa, a_at(g, i0 + ic, pc), g->lda, mc, kc, Ap);
                im->macro(mc, nc, kc, g->alpha, Ap, Bk, rsb, panel, beta,
                          g->C + (ptrdiff_t)(i0 + ic) * g->ldc + j0 + jc, g->ldc);
            }
        }
    }
    return 1;
}

/* The same rectangle by the reference loop: the fallback when out of memory. */
static void gemm_block_ref(const gemm_args *g, int i0, int m, int j0, int n)
{
    nb_gemm_ref(g->transa, g->transb, m, n, g->K, g->alpha, a_at(g, i0, 0), (int)g->lda,
                b_at(g, 0, j0), (int)g->ldb, g->beta,
                g->C + (ptrdiff_t)i0 * g->ldc + j0, (int)g->ldc);
}

/* Below this many flops one thread is faster than waking a second (the
 * fork/join costs a few microseconds; measured with bench/bench_gemm). */
#define NB_GEMM_MT_FLOPS 400000.0

/* Split C into a tm x tn grid of rectangles, one per thread, that keeps
 * every thread's share of micro-tiles nearly equal and packs least. */
static void choose_grid(int nth, int mt, int nt, int *tm, int *tn)
{
    double best = -1;
    for (int a = 1; a <= nth; a++) {
        if (nth % a) continue;
        const int b = nth / a;
        if (a > mt || b > nt) continue;
        /* the largest rectangle, in tiles; ties go to splitting N (each
         * thread then packs all of A, the smaller panel set) */
        const double cost = (double)((mt + a - 1) / a) * ((nt + b - 1) / b) + 1e-3 * a;
        if (best < 0 || cost < best) best = cost, *tm = a, *tn = b;
    }
    if (best < 0) *tm = 1, *tn = 1;
}

static void scale_c(int M, int N, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (ptrdiff_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

void nb_gemm(int transa, int transb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { /* BLAS semantics: A and B not read */
        scale_c(M, N, beta, C, ldc);
        return;
    }
    const nb__gemm_impl *im = get_impl();
    const gemm_args g = {transa, transb, K, alpha, beta, A, B, lda, ldb, ldc, C};
    const int mt = (M + im->mr - 1) / im->mr, nt = (N + im->nr - 1) / im->nr;

    int nth = nb_get_threads();
#ifdef _OPENMP
    if (omp_in_parallel()) nth = 1; /* already inside a parallel caller */
#endif
    if (2.0 * M * N * K < NB_GEMM_MT_FLOPS) nth = 1;
    if (nth > mt * nt) nth = mt * nt;
    if (nth <= 1) {
        if (!gemm_block(im, &g, 0, M, 0, N)) gemm_block_ref(&g, 0, M, 0, N);
        return;
    }
    int tm = 1, tn = 1;
    choose_grid(nth, mt, nt, &tm, &tn);
#pragma omp parallel num_threads(tm * tn)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        /* tile ranges [lo, hi) of this thread's rectangle, in micro-tiles */
        const int ti = t / tn, tj = t % tn;
        const int ilo = (int)((long)mt * ti / tm), ihi = (int)((long)mt * (ti + 1) / tm);
        const int jlo = (int)((long)nt * tj / tn), jhi = (int)((long)nt * (tj + 1) / tn);
        const int i0 = ilo * im->mr, i1 = ihi * im->mr < M ? ihi * im->mr : M;
        const int j0 = jlo * im->nr, j1 = jhi * im->nr < N ? jhi * im->nr : N;
        if (i1 > i0 && j1 > j0 && !gemm_block(im, &g, i0, i1 - i0, j0, j1 - j0))
            gemm_block_ref(&g, i0, i1 - i0, j0, j1 - j0);
    }
}

#endif /* NB_OPENBLAS */
