/* AVX2+FMA GEMM micro-kernel and packing (compiled with -mavx2 -mfma).
 *
 * Micro-tile MR x NR = 6 x 16: 12 ymm accumulators (6 rows x 2 vectors),
 * 2 for the B row, 1 for the broadcast of A: 15 of the 16 ymm registers.
 * Per k: 2 loads + 6 broadcasts feed 12 FMAs. Same layout, edge rules and
 * transposed path as gemm_avx512.c, so gemm.c drives both alike. */
#include "simd.h"

/* Guarded on the compiler's flags, not on simd.h's choice: built with
 * -march=native on an AVX-512 machine this file must still give AVX2. */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define MR 6
#define NR 16

/* Mask of the first n of 8 lanes (n clamped to 0..8). */
static inline __attribute__((always_inline)) __m256i lanes(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* In-register transpose of 8 rows of 8 floats: r[i] lane j -> r[j] lane i. */
static inline __attribute__((always_inline)) void transpose8_regs(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + j], 128-bit lane L: rows 4g..4g+3 of column 4L + j */
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* One tile of mr x (8 nv) accumulators; see tile() in gemm_avx512.c for
 * the meaning of edge, rows (broadcast from rows of the caller's matrix)
 * and tout (store the tile transposed). */
static inline __attribute__((always_inline)) void
tile(const int mr, const int nv, const int edge, const int rows, const int tout,
     int kc, const float *a, ptrdiff_t rsa, const float *b, ptrdiff_t rsb,
     float *c, ptrdiff_t ldc, int nr, float alpha, float beta)
{
    __m256 acc[MR][2];
    const __m256i m0 = lanes(edge ? nr : 8), m1 = lanes(edge ? nr - 8 : 8);

#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (!tout) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 b0, b1 = _mm256_setzero_ps();
        if (edge && nv == 1) b0 = _mm256_maskload_ps(b, m0);
        else b0 = _mm256_loadu_ps(b);
        if (nv == 2) b1 = edge ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m256 ai = _mm256_broadcast_ss(rows ? a + i * rsa : a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (nv == 2) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += rows ? 1 : rsa;
        b += rsb;
    }

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (!tout) {
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
            if (edge) {
                if (beta != 0.0f) {
                    r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
                    if (nv == 2) r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
                }
                _mm256_maskstore_ps(ci, m0, r0);
                if (nv == 2) _mm256_maskstore_ps(ci + 8, m1, r1);
            } else {
                if (beta != 0.0f) {
                    r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
                    if (nv == 2) r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
                }
                _mm256_storeu_ps(ci, r0);
                if (nv == 2) _mm256_storeu_ps(ci + 8, r1);
            }
        }
        return;
    }
    /* transposed store: 8 x 8 blocks, C row (8v + l) gets lanes 0..mr-1 */
    const __m256i mcols = lanes(mr);
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) r[i] = i < mr ? acc[i][v] : _mm256_setzero_ps();
        transpose8_regs(r);
        const int nrow = nr - 8 * v < 8 ? nr - 8 * v : 8;
        for (int l = 0; l < nrow; l++) {
            float *ci = c + (8 * v + l) * ldc;
            __m256 x = _mm256_mul_ps(va, r[l]);
            if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, mcols), x);
            _mm256_maskstore_ps(ci, mcols, x);
        }
    }
}

#define TILE_CASES(NV, EDGE, ROWS, TOUT)                                                      \
    switch (mr) {                                                                             \
    case 1: tile(1, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 2: tile(2, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 3: tile(3, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 4: tile(4, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 5: tile(5, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    default: tile(6, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    }

/* Edge tiles of the normal product: A packed (rsa = MR) or in place. */
static void tile_edge(int mr, int nr, int kc, const float *a, ptrdiff_t rsa, const float *b,
                      ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    if (nr == NR) TILE_CASES(2, 0, 0, 0)
    else if (nr > 8) TILE_CASES(2, 1, 0, 0)
    else if (nr == 8) TILE_CASES(1, 0, 0, 0)
    else TILE_CASES(1, 1, 0, 0)
}

/* Any tile of the transposed product: rows of B in place, C^T stored. */
static void tile_trans(int mr, int nr, int kc, const float *a, ptrdiff_t rsa,
                       const float *b, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    const ptrdiff_t rsb = NR;
    if (nr == NR) TILE_CASES(2, 0, 1, 1)
    else if (nr > 8) TILE_CASES(2, 1, 1, 1)
    else TILE_CASES(1, 1, 1, 1)
}

static void macro(int mc, int nc, int kc, float alpha, const float *A, ptrdiff_t lda,
                  const float *B, ptrdiff_t rsb, ptrdiff_t panel,
                  float beta, float *C, ptrdiff_t ldc)
{
    const ptrdiff_t as = lda ? lda : MR; /* A's step per k */
    for (int ir = 0; ir < mc; ir += MR) {
        const int mr = mc - ir < MR ? mc - ir : MR;
        const float *a = lda ? A + ir : A + (ptrdiff_t)ir * kc;
        float *c = C + ir * ldc;
        int jr = 0;
        if (mr == MR) /* the hot path: full tiles, no dispatch */
            for (; jr + NR <= nc; jr += NR)
                tile(MR, 2, 0, 0, 0, kc, a, as, B + jr / NR * panel, rsb, c + jr, ldc, NR,
                     alpha, beta);
        for (; jr < nc; jr += NR) {
            const int nr = nc - jr < NR ? nc - jr : NR;
            tile_edge(mr, nr, kc, a, as, B + jr / NR * panel, rsb, c + jr, ldc, alpha, beta);
        }
    }
}

static void macro_t(int m, int n, int kc, float alpha, const float *At,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc)
{
    for (int jr = 0; jr < n; jr += MR) {
        const int mr = n - jr < MR ? n - jr : MR;
        for (int ir = 0; ir < m; ir += NR) {
            const int nr = m - ir < NR ? m - ir : NR;
            tile_trans(mr, nr, kc, B + jr * ldb, ldb, At + (ptrdiff_t)ir * kc,
                       C + ir * ldc + jr, ldc, alpha, beta);
        }
    }
}

/* ---- packing -------------------------------------------------------------- */

/* dst[k*ds + i] = src[i*ld + k] for i < rows, k < kw (both <= 8). Rows
 * are loaded as 128-bit halves paired across lanes ([row i | row i+4]), so
 * two in-lane shuffle stages finish the transpose. */
static inline __attribute__((always_inline)) void
transpose8(const float *s, ptrdiff_t ld, int rows, int kw, float *d, ptrdiff_t ds)
{
    const int full = rows == 8 && kw == 8;
    const __m128i klo = _mm256_castsi256_si128(lanes(kw)), khi = _mm256_castsi256_si128(lanes(kw - 4));
    __m128 lo[8], hi[8];
    for (int i = 0; i < 8; i++) {
        if (full) {
            lo[i] = _mm_loadu_ps(s + i * ld);
            hi[i] = _mm_loadu_ps(s + i * ld + 4);
        } else if (i < rows) {
            lo[i] = _mm_maskload_ps(s + i * ld, klo);
            hi[i] = _mm_maskload_ps(s + i * ld + 4, khi);
        } else {
            lo[i] = hi[i] = _mm_setzero_ps();
        }
    }
    __m256 o[8];
    for (int h = 0; h < 2; h++) { /* columns 0-3, then 4-7 */
        const __m128 *x = h ? hi : lo;
        __m256 r0 = _mm256_insertf128_ps(_mm256_castps128_ps256(x[0]), x[4], 1);
        __m256 r1 = _mm256_insertf128_ps(_mm256_castps128_ps256(x[1]), x[5], 1);
        __m256 r2 = _mm256_insertf128_ps(_mm256_castps128_ps256(x[2]), x[6], 1);
        __m256 r3 = _mm256_insertf128_ps(_mm256_castps128_ps256(x[3]), x[7], 1);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        o[4 * h + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
        o[4 * h + 1] = _mm256_shuffle_ps(t0, t2, 0xee);
        o[4 * h + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
        o[4 * h + 3] = _mm256_shuffle_ps(t1, t3, 0xee);
    }
    if (full) {
        for (int c = 0; c < 8; c++) _mm256_storeu_ps(d + c * ds, o[c]);
    } else {
        const __m256i rmask = lanes(rows);
        for (int c = 0; c < kw; c++) _mm256_maskstore_ps(d + c * ds, rmask, o[c]);
    }
}

/* dst[k*ds + i] = src[i*ld + k] for i < rows, k < kc. */
static void pack_transposed(const float *src, ptrdiff_t ld, int rows, int kc,
                            float *dst, ptrdiff_t ds)
{
    for (int i = 0; i < rows; i += 8) {
        const int r = rows - i < 8 ? rows - i : 8;
        int k = 0;
        if (r == 8)
            for (; k + 8 <= kc; k += 8) transpose8(src + i * ld + k, ld, 8, 8, dst + k * ds + i, ds);
        for (; k < kc; k += 8)
            transpose8(src + i * ld + k, ld, r, kc - k < 8 ? kc - k : 8, dst + k * ds + i, ds);
    }
}

/* Row-major source into panels of P (<= 16) columns: element (k, j) goes
 * to dst[(j/P)*P*kc + k*P + j%P]. Each source row is read once, left to
 * right, so the hardware prefetchers keep streaming (see gemm_avx512.c). */
static void pack_rows(const float *src, ptrdiff_t ld, int n, int kc, float *dst, int P)
{
    const int full = n / P * P;
    const __m256i p0 = lanes(P), p1 = lanes(P - 8);
    const __m256i t0 = lanes(n - full), t1 = lanes(n - full - 8);
    const ptrdiff_t pstep = (ptrdiff_t)P * kc;
    for (int k = 0; k < kc; k++) {
        const float *s = src + k * ld;
        float *d = dst + k * P;
        int j = 0;
        if (P == 16)
            for (; j < full; j += 16, d += pstep) {
                _mm256_storeu_ps(d, _mm256_loadu_ps(s + j));
                _mm256_storeu_ps(d + 8, _mm256_loadu_ps(s + j + 8));
            }
        else
            for (; j < full; j += P, d += pstep) {
                _mm256_maskstore_ps(d, p0, _mm256_maskload_ps(s + j, p0));
                if (P > 8) _mm256_maskstore_ps(d + 8, p1, _mm256_maskload_ps(s + j + 8, p1));
            }
        if (j < n) {
            _mm256_maskstore_ps(d, t0, _mm256_maskload_ps(s + j, t0));
            if (n - j > 8) _mm256_maskstore_ps(d + 8, t1, _mm256_maskload_ps(s + j + 8, t1));
        }
    }
}

static void pack_a(int trans, const float *A, ptrdiff_t lda, int mc, int kc, float *dst)
{
    if (trans) {
        pack_rows(A, lda, mc, kc, dst, MR);
        return;
    }
    for (int i = 0; i < mc; i += MR, dst += MR * kc)
        pack_transposed(A + i * lda, lda, mc - i < MR ? mc - i : MR, kc, dst, MR);
}

static void pack_b(int trans, const float *B, ptrdiff_t ldb, int kc, int nc, float *dst)
{
    if (!trans) {
        pack_rows(B, ldb, nc, kc, dst, NR);
        return;
    }
    for (int j = 0; j < nc; j += NR, dst += NR * kc)
        pack_transposed(B + j * ldb, ldb, nc - j < NR ? nc - j : NR, kc, dst, NR);
}

const nb__gemm_impl nb__gemm_impl_avx2 = {
    "avx2", MR, NR, 256, 72, 512, pack_a, pack_b, macro, macro_t,
};

#else
const nb__gemm_impl nb__gemm_impl_avx2 = {"avx2", 0, 0, 0, 0, 0, 0, 0, 0, 0};
#endif
