/* nb_gemm: packed GEMM (Goto/BLIS design) with a run-time choice of
 * micro-kernel (AVX-512, AVX2 or portable C), threaded over the output.
 *
 * Per thread, for a rectangle of C:
 *   for pc in K step KC:            one rank-KC update of C
 *     (several N blocks: pack all of op(A)[:, pc block] once for them)
 *     for jc in N step NC:          B block (KC x NC) stays in L2
 *       pack B block (or use B in place when it is already row-major)
 *       for ic in M step MC:
 *         pack A block into MR-row panels (unless packed whole above)
 *         macro-kernel: for each MR panel (held in L1), sweep the NR
 *                       panels of B with the register-blocked micro-kernel
 * Small M is where packing hurts (each element of B is used only M times):
 * a row-major B is then read in place, and a transposed B (x W^T, the
 * forward of a linear layer) is not transposed at all: the kernel computes
 * tiles of C^T = B op(A)^T with B's rows as the broadcast operand and
 * stores them transposed (use_transposed).
 *
 * Threads compute disjoint rectangles of C and never split K, so every
 * element is computed by the same sequence of operations whatever the
 * thread count or the rectangles: results are bit-identical for 1, 2, ...
 * threads. */
#include "../core/internal.h"
#include "../core/pool.h"
#include "simd.h"
#include <pthread.h>
#include <stdint.h>

#ifdef NB_OPENBLAS
#if defined(__has_include) && !__has_include(<cblas.h>)
#error "make BLAS=openblas needs OpenBLAS's headers: scripts/install-deps.sh --blas (libopenblas-dev)"
#endif
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

/* The test hook of the native build: nothing to choose here. */
int nb__gemm_force_isa(const char *name)
{
    (void)name;
    return 1;
}

#else

/* ---- portable micro-kernel (plain C; the compiler vectorises what it can) - */
#define SMR 4
#define SNR 8

static void scalar_pack_a(int trans, const float *A, ptrdiff_t lda, int mc, int kc, float *dst)
{
    for (int i0 = 0; i0 < mc; i0 += SMR, dst += SMR * kc) {
        const int rows = mc - i0 < SMR ? mc - i0 : SMR;
        for (int k = 0; k < kc; k++)
            for (int i = 0; i < rows; i++)
                dst[k * SMR + i] = trans ? A[k * lda + i0 + i] : A[(i0 + i) * lda + k];
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

/* A is packed (as = SMR, pad rows zero) or in place (as = lda, only mr
 * rows exist). */
static void scalar_tile(int mr, int nr, int kc, const float *a, ptrdiff_t as, const float *b,
                        ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    float acc[SMR][SNR] = {{0}};
    if (mr == SMR && nr == SNR) {
        for (int k = 0; k < kc; k++, a += as, b += rsb)
            for (int i = 0; i < SMR; i++)
                for (int j = 0; j < SNR; j++) acc[i][j] += a[i] * b[j];
    } else {
        for (int k = 0; k < kc; k++, a += as, b += rsb)
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++) acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *cij = &c[i * ldc + j];
            *cij = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *cij;
        }
}

static void scalar_macro(int mc, int nc, int kc, float alpha, const float *A, ptrdiff_t lda,
                         const float *B, ptrdiff_t rsb, ptrdiff_t panel,
                         float beta, float *C, ptrdiff_t ldc)
{
    for (int ir = 0; ir < mc; ir += SMR)
        for (int jr = 0; jr < nc; jr += SNR)
            scalar_tile(mc - ir < SMR ? mc - ir : SMR, nc - jr < SNR ? nc - jr : SNR, kc,
                        lda ? A + ir : A + (ptrdiff_t)ir * kc, lda ? lda : SMR,
                        B + jr / SNR * panel, rsb, C + ir * ldc + jr, ldc, alpha, beta);
}

static const nb__gemm_impl scalar_impl = {
    "scalar", SMR, SNR, 256, 64, 1024, scalar_pack_a, scalar_pack_b, scalar_macro, NULL,
};

/* ---- choosing the kernel --------------------------------------------------- */

/* Which kernels this CPU can run, best first. */
static const nb__gemm_impl *isa_supported(const char *name)
{
    if (!strcmp(name, "avx512") && nb__gemm_impl_avx512.mr && nb__cpu_avx512()) return &nb__gemm_impl_avx512;
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

/* Grown on demand and kept for the thread's life: no allocation per call
 * in a steady state. 64-byte aligned for full-line vector loads. A thread's
 * buffers are freed when it exits (a caller's own threads) by a pthread key
 * destructor. */
typedef struct { void *raw; float *p; size_t cap; } pack_buf;
typedef struct { pack_buf a, b; } pack_bufs;

static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;
static int bufs_key_ok;
static _Thread_local pack_bufs *tls_bufs;

static void bufs_free(void *p)
{
    pack_bufs *b = p;
    NB_FREE(b->a.raw);
    NB_FREE(b->b.raw);
    NB_FREE(b);
}

static void bufs_key_init(void) { bufs_key_ok = pthread_key_create(&bufs_key, bufs_free) == 0; }

/* This thread's buffers; NULL when out of memory. */
static pack_bufs *bufs_get(void)
{
    if (tls_bufs) return tls_bufs;
    pack_bufs *b = NB_MALLOC(sizeof *b);
    if (!b) return NULL;
    memset(b, 0, sizeof *b);
    pthread_once(&bufs_once, bufs_key_init);
    if (bufs_key_ok) pthread_setspecific(bufs_key, b); /* else kept until exit */
    return tls_bufs = b;
}

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

/* Largest M for the transposed path (use_transposed); measured. */
#define NB_GEMM_T_MAX_M 256

/* Whether B is read in place rather than packed (only a row-major B can
 * be). Packing pays when many A panels sweep the B block; for a few (small
 * M) the copy costs more than it saves, unless the rows of B are far apart
 * (TLB misses) or 4 KiB apart (every row in the same L1 sets). Measured:
 * M = 64 gains 7-20% in place for N < 1024, M >= 128 gains nothing. */
static int b_in_place(const gemm_args *g, int m)
{
    return !g->transb && m <= 96 && g->ldb < 1024;
}

/* Whether to compute C^T tiles from B^T rows in place (macro_t): for a
 * transposed B and small M, where transposing B into panels would cost as
 * much as the product itself. Depends on the whole problem only, so every
 * thread takes the same path (same bits for any thread count). */
static int use_transposed(const nb__gemm_impl *im, const gemm_args *g, int M)
{
    return g->transb && im->macro_t && M <= NB_GEMM_T_MAX_M;
}

/* Whether A is read in place rather than packed: only a transposed A
 * (stored K x M, the dW = dY^T X of a linear layer) is laid out like a
 * panel, and only for a short K (the batch): an in-place micro-panel takes
 * up to 2 cache lines per k instead of 56 bytes, so K <= 128 keeps it in
 * L1 unless its rows are a multiple of 2 KiB apart (then they share too few
 * L1 sets). Measured: 100x128x64 +10%, 256x784x64 +3%, lda = 512 -4%. */
static int a_in_place(const gemm_args *g)
{
    return g->transa && g->K <= 128 && g->lda % 512 != 0;
}

/* The depth of each K block: K split into as few blocks of at most kc as
 * possible, of nearly equal depth. A short last block (K = 2048 in blocks
 * of 384 leaves 128) would pay a full pass over C for a third of the
 * arithmetic. */
static int balanced_kc(int K, int kc)
{
    const int blocks = (K + kc - 1) / kc;
    return blocks > 1 ? (K + blocks - 1) / blocks : K;
}

/* The most floats of op(A) packed at once for a whole column block (see
 * gemm_block): 8 MiB. */
#define NB_GEMM_A_WHOLE_MAX (2 << 20)

/* C[i0:i0+m, j0:j0+n] of the product. Returns 0 when a buffer could not be
 * allocated (nothing written).
 * Loop order pc (K blocks), jc (N blocks), ic (M blocks). When there are
 * several N blocks, all m rows of op(A)[:, pc block] are packed once and
 * reused by every jc: otherwise each jc would pack A again, a pass over A in
 * memory each time (measured: 2.6% of 1024^3 per pass, memory-bound). */
static int gemm_block(const nb__gemm_impl *im, const gemm_args *g, int i0, int m, int j0, int n)
{
    const int K = g->K, MR = im->mr, NR = im->nr;
    const int kcmax = K < im->kc ? K : im->kc;
    const int ncmax = n < im->nc ? n : im->nc;
    const int direct = b_in_place(g, m), adirect = a_in_place(g);
    const int whole = !adirect && n > im->nc && (size_t)round_up(m, MR) * kcmax <= NB_GEMM_A_WHOLE_MAX;
    const int arows = whole ? m : (m < im->mc ? m : im->mc); /* rows packed at once */
    pack_bufs *bufs = bufs_get();
    if (!bufs) return 0;
    float *Ap = adirect ? NULL : buf_get(&bufs->a, (size_t)round_up(arows, MR) * kcmax);
    float *Bp = direct ? NULL : buf_get(&bufs->b, (size_t)round_up(ncmax, NR) * kcmax);
    if ((!adirect && !Ap) || (!direct && !Bp)) return 0;

    const int kcb = balanced_kc(K, im->kc);
    for (int pc = 0; pc < K; pc += kcb) {
        const int kc = K - pc < kcb ? K - pc : kcb;
        const float beta = pc == 0 ? g->beta : 1.0f;
        if (whole) im->pack_a(g->transa, a_at(g, i0, pc), g->lda, m, kc, Ap);
        for (int jc = 0; jc < n; jc += im->nc) {
            const int nc = n - jc < im->nc ? n - jc : im->nc;
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
                const float *Ak = a_at(g, i0 + ic, pc), *a = Ak;
                ptrdiff_t as = g->lda;
                if (!adirect) { /* mc is a multiple of MR: panels of whole start at ic */
                    if (!whole) im->pack_a(g->transa, Ak, g->lda, mc, kc, Ap);
                    a = whole ? Ap + (ptrdiff_t)ic * kc : Ap;
                    as = 0;
                }
                im->macro(mc, nc, kc, g->alpha, a, as, Bk, rsb, panel, beta,
                          g->C + (ptrdiff_t)(i0 + ic) * g->ldc + j0 + jc, g->ldc);
            }
        }
    }
    return 1;
}

/* The same for use_transposed(): op(A)^T packed as B panels (all m rows at
 * once: m is small), B's rows read in place. */
static int gemm_block_t(const nb__gemm_impl *im, const gemm_args *g, int i0, int m, int j0, int n)
{
    const int K = g->K;
    const int kcmax = K < im->kc ? K : im->kc;
    pack_bufs *bufs = bufs_get();
    float *At = bufs ? buf_get(&bufs->a, (size_t)round_up(m, im->nr) * kcmax) : NULL;
    if (!At) return 0;
    const int kcb = balanced_kc(K, im->kc);
    for (int pc = 0; pc < K; pc += kcb) {
        const int kc = K - pc < kcb ? K - pc : kcb;
        im->pack_b(!g->transa, a_at(g, i0, pc), g->lda, kc, m, At);
        im->macro_t(m, n, kc, g->alpha, At, b_at(g, pc, j0), g->ldb,
                    pc == 0 ? g->beta : 1.0f, g->C + (ptrdiff_t)i0 * g->ldc + j0, g->ldc);
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

/* The largest extent, in elements, of `parts` nearly equal runs of the
 * `tiles` tiles of size `unit` covering `total`. */
static int max_share(int total, int unit, int tiles, int parts)
{
    int worst = 0;
    for (int t = 0; t < parts; t++) {
        const int lo = (int)((long)tiles * t / parts) * unit;
        int hi = (int)((long)tiles * (t + 1) / parts) * unit;
        if (hi > total) hi = total;
        if (hi - lo > worst) worst = hi - lo;
    }
    return worst;
}

/* Start of part t of `parts` nearly equal runs of the tiles covering
 * [0, total). Given C (splitting columns), an inner boundary moves left to
 * the start of a 64-byte line of C's first row: two threads writing one
 * line would pass it back and forth (measured: 128x256x64 went from 19 to
 * 13 us on 2 threads). Moving boundaries changes no result bit: every
 * element is computed the same way in any tile. */
static int split_at(int total, int unit, int tiles, int t, int parts, const float *C)
{
    if (t <= 0) return 0;
    if (t >= parts) return total;
    int x = (int)((long)tiles * t / parts) * unit;
    if (x > total) x = total;
    if (C) x -= (int)(((uintptr_t)(C + x) & 63) / sizeof(float));
    return x;
}

/* Split C into a tm x tn grid of rectangles (tm * tn <= nth threads) that
 * makes the largest rectangle smallest: the slowest thread sets the time.
 * When C's rows do not start on 64-byte lines, a split of the columns
 * makes two threads share the line at every row end, so it counts 20%
 * more. Ties go to fewer threads, then to splitting N (each thread then
 * packs all of A, usually the smaller operand). */
static void choose_grid(int nth, int M, int N, int mu, int nu, const float *C, int ldc,
                        int *tm, int *tn)
{
    const int mt = (M + mu - 1) / mu, nt = (N + nu - 1) / nu;
    const int ragged = (((uintptr_t)C | (uintptr_t)ldc * sizeof(float)) & 63) != 0;
    double best = -1;
    *tm = *tn = 1;
    for (int a = 1; a <= nth && a <= mt; a++)
        for (int b = 1; a * b <= nth && b <= nt; b++) {
            const double cost = (double)max_share(M, mu, mt, a) * max_share(N, nu, nt, b) *
                                (ragged && b > 1 ? 1.2 : 1.0) * (1 + 1e-6 * (a * b) + 1e-9 * a);
            if (best < 0 || cost < best) best = cost, *tm = a, *tn = b;
        }
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

/* ---- threads ------------------------------------------------------------------
 * C is cut into one rectangle per thread, the tasks of a job of the
 * library's pool (src/core/pool.h): the caller never waits for a helper
 * that has not started, and which thread computes a rectangle changes no
 * result bit. */

/* Below this many flops one thread is faster than handing half to a helper
 * (measured with the helper spinning: 64x48x64 2.6 us on one thread, 2.8 on
 * two; 64x64x64 3.1 and 2.9; 64x100x128 10.9 and 7.3). */
#define NB_GEMM_MT_FLOPS 5.0e5

typedef struct {
    nb__pool_job job;
    const nb__gemm_impl *im;
    gemm_args g;
    int tr; /* the transposed path (use_transposed) */
    int M, N, mu, nu, mt, nt, tm, tn;
} gemm_job;

/* Computes rectangle t of the job's tm x tn grid of C. */
static void run_rect(nb__pool_job *pj, int t)
{
    gemm_job *j = (gemm_job *)pj;
    const int ti = t / j->tn, tj = t % j->tn;
    const int i0 = split_at(j->M, j->mu, j->mt, ti, j->tm, NULL);
    const int i1 = split_at(j->M, j->mu, j->mt, ti + 1, j->tm, NULL);
    const int j0 = split_at(j->N, j->nu, j->nt, tj, j->tn, j->g.C);
    const int j1 = split_at(j->N, j->nu, j->nt, tj + 1, j->tn, j->g.C);
    if (i1 > i0 && j1 > j0 &&
        !(j->tr ? gemm_block_t : gemm_block)(j->im, &j->g, i0, i1 - i0, j0, j1 - j0))
        gemm_block_ref(&j->g, i0, i1 - i0, j0, j1 - j0);
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
    gemm_job j = {.job = {.run = run_rect},
                  .im = get_impl(), .g = {transa, transb, K, alpha, beta, A, B, lda, ldb, ldc, C}, .M = M, .N = N};
    j.tr = use_transposed(j.im, &j.g, M);
    /* micro-tile sizes along M and N (swapped on the transposed path) */
    j.mu = j.tr ? j.im->nr : j.im->mr;
    j.nu = j.tr ? j.im->mr : j.im->nr;
    j.mt = (M + j.mu - 1) / j.mu;
    j.nt = (N + j.nu - 1) / j.nu;

    const int nth = nb__par_parts(j.mt * j.nt, 2.0 * M * N * K >= NB_GEMM_MT_FLOPS);
    j.tm = j.tn = 1;
    if (nth > 1) choose_grid(nth, M, N, j.mu, j.nu, C, ldc, &j.tm, &j.tn);
    j.job.ntasks = j.tm * j.tn;
    nb__pool_run(&j.job);
}

#endif /* NB_OPENBLAS */
