/* simd.h — one small vocabulary for the vectorised kernels.
 *
 * A file whose name contains _avx512 is compiled with AVX-512 (16 float
 * lanes), _avx2 with AVX2+FMA (8 lanes); any other file gets SSE2 (4 lanes,
 * baseline x86-64) or plain scalar code elsewhere. Kernels written against
 * these names compile at every width; NB_VL says how many lanes there are.
 *
 *   nb_vf                 a vector of NB_VL floats
 *   nb_vmask              a lane mask (__mmask16 or a vector of 0/-1)
 *   nb_vf_zero()          all lanes 0
 *   nb_vf_set1(x)         all lanes x
 *   nb_vf_load(p)         unaligned load of NB_VL floats
 *   nb_vf_store(p, v)     unaligned store
 *   nb_vmask_first(n)     mask of the first n lanes (0 <= n <= NB_VL)
 *   nb_vf_load_mask(p, m) load the lanes in m, 0 elsewhere; never touches
 *                         memory of lanes outside m (safe at array ends)
 *   nb_vf_store_mask(p, m, v)  store only the lanes in m
 *   nb_vf_add / mul(a, b)
 *   nb_vf_fma(a, b, c)    a * b + c (fused where the ISA has FMA)
 *
 * The end of this file declares the interface between the GEMM driver
 * (gemm.c) and its per-ISA micro-kernels (gemm_<isa>.c). */
#ifndef NABLA_SIMD_H
#define NABLA_SIMD_H

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#include <immintrin.h>
#define NB_SIMD_AVX512 1
#define NB_VL 16
typedef __m512 nb_vf;
typedef __mmask16 nb_vmask;
#define nb_vf_zero() _mm512_setzero_ps()
#define nb_vf_set1(x) _mm512_set1_ps(x)
#define nb_vf_load(p) _mm512_loadu_ps(p)
#define nb_vf_store(p, v) _mm512_storeu_ps((p), (v))
#define nb_vmask_first(n) ((__mmask16)((1u << (n)) - 1u))
#define nb_vf_load_mask(p, m) _mm512_maskz_loadu_ps((m), (p))
#define nb_vf_store_mask(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define nb_vf_add(a, b) _mm512_add_ps((a), (b))
#define nb_vf_mul(a, b) _mm512_mul_ps((a), (b))
#define nb_vf_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define NB_SIMD_AVX2 1
#define NB_VL 8
typedef __m256 nb_vf;
typedef __m256i nb_vmask;
#define nb_vf_zero() _mm256_setzero_ps()
#define nb_vf_set1(x) _mm256_set1_ps(x)
#define nb_vf_load(p) _mm256_loadu_ps(p)
#define nb_vf_store(p, v) _mm256_storeu_ps((p), (v))
#define nb_vmask_first(n) \
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define nb_vf_load_mask(p, m) _mm256_maskload_ps((p), (m))
#define nb_vf_store_mask(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define nb_vf_add(a, b) _mm256_add_ps((a), (b))
#define nb_vf_mul(a, b) _mm256_mul_ps((a), (b))
#define nb_vf_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))

#elif defined(__SSE2__)
#include <emmintrin.h>
#define NB_SIMD_SSE2 1
#define NB_VL 4
typedef __m128 nb_vf;
typedef int nb_vmask; /* SSE2 has no masked moves: a lane count */
#define nb_vf_zero() _mm_setzero_ps()
#define nb_vf_set1(x) _mm_set1_ps(x)
#define nb_vf_load(p) _mm_loadu_ps(p)
#define nb_vf_store(p, v) _mm_storeu_ps((p), (v))
#define nb_vmask_first(n) (n)
static inline __m128 nb__sse_load_n(const float *p, int n)
{
    float t[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) t[i] = p[i];
    return _mm_loadu_ps(t);
}
static inline void nb__sse_store_n(float *p, int n, __m128 v)
{
    float t[4];
    _mm_storeu_ps(t, v);
    for (int i = 0; i < n; i++) p[i] = t[i];
}
#define nb_vf_load_mask(p, m) nb__sse_load_n((p), (m))
#define nb_vf_store_mask(p, m, v) nb__sse_store_n((p), (m), (v))
#define nb_vf_add(a, b) _mm_add_ps((a), (b))
#define nb_vf_mul(a, b) _mm_mul_ps((a), (b))
#define nb_vf_fma(a, b, c) _mm_add_ps(_mm_mul_ps((a), (b)), (c))

#else
#define NB_SIMD_SCALAR 1
#define NB_VL 1
typedef float nb_vf;
typedef int nb_vmask;
#define nb_vf_zero() 0.0f
#define nb_vf_set1(x) ((float)(x))
#define nb_vf_load(p) (*(p))
#define nb_vf_store(p, v) (*(p) = (v))
#define nb_vmask_first(n) (n)
#define nb_vf_load_mask(p, m) ((m) ? *(p) : 0.0f)
#define nb_vf_store_mask(p, m, v) ((m) ? (void)(*(p) = (v)) : (void)0)
#define nb_vf_add(a, b) ((a) + (b))
#define nb_vf_mul(a, b) ((a) * (b))
#define nb_vf_fma(a, b, c) ((a) * (b) + (c))
#endif

/* Loops in plain C that the compiler vectorises, compiled for AVX-512,
 * AVX2 and baseline x86-64, the variant chosen at load time (GCC's
 * target_clones), in files built without ISA flags. -std=c11 keeps
 * floating-point contraction off and GCC never reassociates without
 * -ffast-math, so no clone fuses a multiply-add or reorders a sum: every
 * variant gives the same bits. NB_NO_CLONES (or another compiler) keeps the
 * baseline alone. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && !defined(NB_NO_CLONES)
#define NB_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NB_CLONES
#endif

/* The sum of 16 partial sums in a fixed tree (lane l adds l + 8, then l + 4,
 * l + 2, l + 1): the same bits whichever code or vector width filled the
 * lanes (the direct convolution's weight gradient, softmax's rows). */
static inline float nb__sum_lanes16(float lane[16])
{
    for (int h = 8; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) lane[l] += lane[l + h];
    return lane[0];
}

/* The sum of v[0, n): element i in lane i % 16, then nb__sum_lanes16; the
 * same bits in every variant (NB_CLONES; src/kernels/sum.c). */
float nb__sum16(const float *v, int64_t n);

/* Whether this CPU runs the *_avx512.c kernels: the Makefile compiles them
 * with AVX-512 F, DQ, BW and VL and FMA, so the compiler may use any of
 * those (a CPU with F alone, such as Xeon Phi, would fault). Every choice
 * of an AVX-512 kernel, and the tests that compare those kernels with the
 * portable ones, ask this. */
static inline int nb__cpu_avx512(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* ---- GEMM: driver <-> micro-kernel interface ------------------------------
 * The driver (gemm.c) blocks the problem for the caches and packs:
 *   A block (mc x kc of op(A)) into panels of MR rows: panel p holds
 *     element (p*MR + i, k) at dst[p*MR*kc + k*MR + i];
 *   B block (kc x nc of op(B)) into panels of NR columns: panel q holds
 *     element (k, q*NR + j) at dst[q*NR*kc + k*NR + j].
 * Lanes of the last panel past mc (or nc) are never read. Either block can
 * also be read in place when its layout already matches: B row-major
 * (K x N), A transposed (stored K x M). */
typedef struct nb__gemm_impl {
    const char *name;
    int mr, nr;     /* micro-tile: MR rows x NR columns of C */
    int kc, mc, nc; /* cache blocks (tuned on the target machine) */
    /* Pack op(A)[0:mc, 0:kc]: A points at its first element; trans means
     * A is stored K x M (element (i, k) at A[k*lda + i]). */
    void (*pack_a)(int trans, const float *A, ptrdiff_t lda, int mc, int kc, float *dst);
    /* Pack op(B)[0:kc, 0:nc]: trans means B is stored N x K. */
    void (*pack_b)(int trans, const float *B, ptrdiff_t ldb, int kc, int nc, float *dst);
    /* C[0:mc, 0:nc] = alpha * op(A) B + beta * C (beta == 0: C not read).
     * A is packed (lda = 0) or in place, stored K x M (element (i, k) at
     * A[k*lda + i]). B is packed (rsb = NR, panel = NR*kc) or in place
     * (rsb = ldb, panel = NR): element (k, j) of panel q at
     * B[q*panel + k*rsb + j]. */
    void (*macro)(int mc, int nc, int kc, float alpha, const float *A, ptrdiff_t lda,
                  const float *B, ptrdiff_t rsb, ptrdiff_t panel,
                  float beta, float *C, ptrdiff_t ldc);
    /* Optional (NULL if absent): C[0:m, 0:n] = alpha * op(A) B^T + beta * C
     * for B stored N x K (rows ldb apart), read in place: micro-tiles of C^T
     * broadcast rows of B against At, op(A)^T packed like a B block
     * (pack_b of kc x m), and are stored transposed. For small M this
     * avoids transposing all of B into panels. */
    void (*macro_t)(int m, int n, int kc, float alpha, const float *At,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);
} nb__gemm_impl;

extern const nb__gemm_impl nb__gemm_impl_avx512;
extern const nb__gemm_impl nb__gemm_impl_avx2;

#endif
