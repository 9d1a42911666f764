/* AVX-512 GEMM micro-kernel and packing (compiled with -mavx512f ...).
 *
 * Micro-tile MR x NR = 14 x 32: 28 zmm accumulators (14 rows x 2 vectors),
 * 2 zmm for the B row and broadcasts of A from memory. Per k: 2 B loads and
 * 14 broadcasts feed 28 FMAs, so both FMA ports stay busy and the 4-cycle
 * FMA latency is hidden (measured in L1: ~92% of the FMA peak; 12 x 32,
 * 10 x 32 and 8 x 32 tiles were no faster). Each C element is one FMA chain
 * over k in order, whichever tile variant computes it: edge tiles give the
 * same bits.
 *
 * Blocking (Xeon, 48 KiB L1d, 2 MiB L2 per core): KC = 384 keeps an A
 * micro-panel (14 x 384 floats, 21 KiB) in L1; NC = 512 keeps the B block
 * (384 x 512, 768 KiB) in L2 (NC = 1536 ran 10-20% slower on large N). */
#include "simd.h"

#ifdef NB_SIMD_AVX512
#include <immintrin.h>

#define MR 14
#define NR 32

static inline __attribute__((always_inline)) __mmask16 lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : nb_vmask_first(n);
}

/* In-register transpose of 16 rows of 16 floats: r[i] lane j -> r[j] lane i. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + j], 128-bit lane L: rows 4g..4g+3 of column 4L + j */
    for (int g = 0; g < 4; g++) {
        __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
        __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
        __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xdd);
        r[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xdd);
    }
}

/* One tile of mr x (16 nv) accumulators; mr, nv, edge, rows and tout are
 * compile-time constants after inlining.
 *   broadcast operand, row i at step k: rows ? a[i*rsa + k] (rows of the
 *     caller's matrix) : a[k*rsa + i] (a packed panel, rsa = MR, or the
 *     caller's K x M matrix);
 *   vector operand at step k: b[k*rsb + 0..16nv), `edge` masks lanes >= nr
 *     (B may be the caller's matrix, so masked lanes are never touched);
 *   tout = 0: acc row i is row i of C (columns nr-masked);
 *   tout = 1: acc row i is column i of C, lane l row l (rows < nr stored). */
static inline __attribute__((always_inline)) void
tile(const int mr, const int nv, const int edge, const int rows, const int tout,
     int kc, const float *a, ptrdiff_t rsa, const float *b, ptrdiff_t rsb,
     float *c, ptrdiff_t ldc, int nr, float alpha, float beta)
{
    __m512 acc[MR][2];
    const __mmask16 m0 = edge ? lanes(nr) : 0xffff;
    const __mmask16 m1 = edge ? lanes(nr - 16) : 0xffff;

#pragma GCC unroll 14
    for (int i = 0; i < mr; i++) {
        if (!tout) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            if (nv == 2) _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
        }
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1 = _mm512_setzero_ps();
        if (edge && nv == 1) b0 = _mm512_maskz_loadu_ps(m0, b);
        else b0 = _mm512_loadu_ps(b);
        if (nv == 2) b1 = edge ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < mr; i++) {
            __m512 ai = _mm512_set1_ps(rows ? a[i * rsa] : a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            if (nv == 2) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += rows ? 1 : rsa;
        b += rsb;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (!tout) {
#pragma GCC unroll 14
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
            if (beta != 0.0f) {
                r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
                if (nv == 2) r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
            }
            _mm512_mask_storeu_ps(ci, m0, r0);
            if (nv == 2) _mm512_mask_storeu_ps(ci + 16, m1, r1);
        }
        return;
    }
    /* transposed store: 16 x 16 blocks, C row (16v + l) gets lanes 0..mr-1 */
    const __mmask16 mcols = lanes(mr);
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) r[i] = i < mr ? acc[i][v] : _mm512_setzero_ps();
        transpose16(r);
        const int nrow = nr - 16 * v < 16 ? nr - 16 * v : 16;
        for (int l = 0; l < nrow; l++) {
            float *ci = c + (16 * v + l) * ldc;
            __m512 x = _mm512_mul_ps(va, r[l]);
            if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mcols, ci), x);
            _mm512_mask_storeu_ps(ci, mcols, x);
        }
    }
}

/* tile() for every row count; three column cases: a full 32-wide tile, a
 * masked 17..31-wide one and a masked 1..16-wide one. */
#define TILE_CASES(NV, EDGE, ROWS, TOUT)                                      \
    switch (mr) {                                                             \
    case 1: tile(1, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 2: tile(2, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 3: tile(3, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 4: tile(4, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 5: tile(5, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 6: tile(6, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 7: tile(7, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 8: tile(8, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 9: tile(9, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break;   \
    case 10: tile(10, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 11: tile(11, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 12: tile(12, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    case 13: tile(13, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    default: tile(14, NV, EDGE, ROWS, TOUT, kc, a, rsa, b, rsb, c, ldc, nr, alpha, beta); break; \
    }

/* Edge tiles of the normal product: A packed (rsa = MR) or in place. */
static void tile_edge(int mr, int nr, int kc, const float *a, ptrdiff_t rsa, const float *b,
                      ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    if (nr == NR) TILE_CASES(2, 0, 0, 0)
    else if (nr > 16) TILE_CASES(2, 1, 0, 0)
    else TILE_CASES(1, 1, 0, 0)
}

/* Any tile of the transposed product: rows of B in place, C^T stored. */
static void tile_trans(int mr, int nr, int kc, const float *a, ptrdiff_t rsa,
                       const float *b, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    const ptrdiff_t rsb = NR;
    if (nr == NR) TILE_CASES(2, 0, 1, 1)
    else if (nr > 16) TILE_CASES(2, 1, 1, 1)
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

/* dst[k*ds + i] = src[i*ld + k] for i < rows, k < kw (both <= 8): an 8x8
 * transpose in ymm registers. Rows are loaded as 128-bit halves paired
 * across the two lanes ([row i | row i+4]), so two in-lane shuffle stages
 * finish the job; in-lane ymm shuffles issue on two ports, zmm shuffles on
 * one, which makes this the fastest transpose here (~0.15 cycle/float). */
static inline __attribute__((always_inline)) void
transpose8(const float *s, ptrdiff_t ld, int rows, int kw, float *d, ptrdiff_t ds)
{
    const int full = rows == 8 && kw == 8;
    const __mmask8 klo = (__mmask8)lanes(kw), khi = (__mmask8)lanes(kw - 4);
    __m128 lo[8], hi[8];
    for (int i = 0; i < 8; i++) {
        if (full) {
            lo[i] = _mm_loadu_ps(s + i * ld);
            hi[i] = _mm_loadu_ps(s + i * ld + 4);
        } else if (i < rows) {
            lo[i] = _mm_maskz_loadu_ps(klo, s + i * ld);
            hi[i] = _mm_maskz_loadu_ps(khi, s + i * ld + 4);
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
        const __mmask8 rmask = (__mmask8)lanes(rows);
        for (int c = 0; c < kw; c++) _mm256_mask_storeu_ps(d + c * ds, rmask, o[c]);
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

/* Row-major source into panels of P (<= 32) columns: element (k, j) goes
 * to dst[(j/P)*P*kc + k*P + j%P] for j < n, k < kc. Each source row is read
 * once, left to right, which keeps the hardware prefetchers streaming when
 * the rows are far apart (a panel-at-a-time walk would touch kc rows, often
 * kc pages, for every P columns). */
static void pack_rows(const float *src, ptrdiff_t ld, int n, int kc, float *dst, int P)
{
    const int full = n / P * P;
    const __mmask16 p0 = lanes(P), p1 = lanes(P - 16);
    const __mmask16 t0 = lanes(n - full), t1 = lanes(n - full - 16);
    const ptrdiff_t pstep = (ptrdiff_t)P * kc;
    for (int k = 0; k < kc; k++) {
        const float *s = src + k * ld;
        float *d = dst + k * P;
        int j = 0;
        if (P == 32)
            for (; j < full; j += 32, d += pstep) {
                _mm512_storeu_ps(d, _mm512_loadu_ps(s + j));
                _mm512_storeu_ps(d + 16, _mm512_loadu_ps(s + j + 16));
            }
        else
            for (; j < full; j += P, d += pstep) {
                _mm512_mask_storeu_ps(d, p0, _mm512_maskz_loadu_ps(p0, s + j));
                if (p1) _mm512_mask_storeu_ps(d + 16, p1, _mm512_maskz_loadu_ps(p1, s + j + 16));
            }
        if (j < n) {
            _mm512_mask_storeu_ps(d, t0, _mm512_maskz_loadu_ps(t0, s + j));
            if (t1) _mm512_mask_storeu_ps(d + 16, t1, _mm512_maskz_loadu_ps(t1, s + j + 16));
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

const nb__gemm_impl nb__gemm_impl_avx512 = {
    "avx512", MR, NR, 384, 112, 512, pack_a, pack_b, macro, macro_t,
};

#else
/* Not built for AVX-512 (e.g. another compiler's flags): never selected. */
const nb__gemm_impl nb__gemm_impl_avx512 = {"avx512", 0, 0, 0, 0, 0, 0, 0, 0, 0};
#endif
