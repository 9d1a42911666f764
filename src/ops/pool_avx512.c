/* AVX-512 row kernels of the pools (see pool_simd.h): 16 outputs per step,
 * even and odd input columns split with vpermt2ps, the row's tail done with
 * masked loads and stores (which never touch memory outside their lanes), so
 * short rows (28 or 14 columns) run as vector code too. */
#include "pool_simd.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

static inline __mmask16 first(int64_t k) { return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? 0 : (__mmask16)((1u << k) - 1u); }

#define EVEN_IDX _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODD_IDX _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define EVEN2_IDX _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 0)

/* Keep v (index vi) where v > m or v is NaN. */
#define MAXV(v, vi)                                                                            \
    do {                                                                                       \
        __mmask16 t_ = _mm512_cmp_ps_mask((v), m, _CMP_GT_OQ) | _mm512_cmp_ps_mask((v), (v), _CMP_UNORD_Q); \
        m = _mm512_mask_blend_ps(t_, m, (v));                                                  \
        mi = _mm512_mask_blend_epi32(t_, mi, (vi));                                            \
    } while (0)

/* Columns 2o (even) and 2o+1 (odd) of 16 outputs from row r, of which the
 * first `cols` input columns may be read. */
static inline void split2(const float *r, int64_t cols, __m512 *even, __m512 *odd)
{
    __m512 lo = _mm512_maskz_loadu_ps(first(cols), r);
    __m512 hi = _mm512_maskz_loadu_ps(first(cols - 16), r + 16);
    *even = _mm512_permutex2var_ps(lo, EVEN_IDX, hi);
    *odd = _mm512_permutex2var_ps(lo, ODD_IDX, hi);
}

/* Columns 2o, 2o+1, 2o+2 (reads 2*16+1 columns at most). */
static inline void split3(const float *r, int64_t cols, __m512 *c0, __m512 *c1, __m512 *c2)
{
    __m512 lo = _mm512_maskz_loadu_ps(first(cols), r);
    __m512 hi = _mm512_maskz_loadu_ps(first(cols - 16), r + 16);
    *c0 = _mm512_permutex2var_ps(lo, EVEN_IDX, hi);
    *c1 = _mm512_permutex2var_ps(lo, ODD_IDX, hi);
    __m512 e2 = _mm512_permutex2var_ps(lo, EVEN2_IDX, hi);
    if (cols > 32) e2 = _mm512_mask_broadcastss_ps(e2, (__mmask16)0x8000, _mm_load_ss(r + 32));
    *c2 = e2;
}

static void max_k2s2(const float *r0, const float *r1, int32_t base, int32_t W, float *out, int32_t *idx,
                     int64_t n)
{
    const __m512i ev = EVEN_IDX;
    for (int64_t o = 0; o < n; o += 16) {
        int64_t k = n - o, cols = 2 * k;
        __mmask16 km = first(k);
        __m512 a, b, c, d;
        split2(r0 + 2 * o, cols, &a, &b);
        split2(r1 + 2 * o, cols, &c, &d);
        __m512 m = a;
        __m512i ia = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int32_t)o), ev), mi = ia;
        __m512i one = _mm512_set1_epi32(1), w = _mm512_set1_epi32(W);
        MAXV(b, _mm512_add_epi32(ia, one));
        __m512i ic = _mm512_add_epi32(ia, w);
        MAXV(c, ic);
        MAXV(d, _mm512_add_epi32(ic, one));
        _mm512_mask_storeu_ps(out + o, km, m);
        if (idx) _mm512_mask_storeu_epi32(idx + o, km, mi);
    }
}

static void max_k3s2(const float *r0, const float *r1, const float *r2, int32_t base, int32_t W, float *out,
                     int32_t *idx, int64_t n)
{
    const __m512i ev = EVEN_IDX, one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), w = _mm512_set1_epi32(W);
    for (int64_t o = 0; o < n; o += 16) {
        int64_t k = n - o, cols = 2 * k + 1;
        __mmask16 km = first(k);
        __m512 v0, v1, v2;
        __m512i i0 = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int32_t)o), ev);
        split3(r0 + 2 * o, cols, &v0, &v1, &v2);
        __m512 m = v0;
        __m512i mi = i0;
        MAXV(v1, _mm512_add_epi32(i0, one));
        MAXV(v2, _mm512_add_epi32(i0, two));
        i0 = _mm512_add_epi32(i0, w);
        split3(r1 + 2 * o, cols, &v0, &v1, &v2);
        MAXV(v0, i0);
        MAXV(v1, _mm512_add_epi32(i0, one));
        MAXV(v2, _mm512_add_epi32(i0, two));
        i0 = _mm512_add_epi32(i0, w);
        split3(r2 + 2 * o, cols, &v0, &v1, &v2);
        MAXV(v0, i0);
        MAXV(v1, _mm512_add_epi32(i0, one));
        MAXV(v2, _mm512_add_epi32(i0, two));
        _mm512_mask_storeu_ps(out + o, km, m);
        if (idx) _mm512_mask_storeu_epi32(idx + o, km, mi);
    }
}

#define ILO_IDX _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define IHI_IDX _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)

/* row[0 .. cols) += interleave(even, odd) */
static inline void add_interleaved(float *row, int64_t cols, __m512 even, __m512 odd)
{
    __mmask16 klo = first(cols), khi = first(cols - 16);
    __m512 lo = _mm512_permutex2var_ps(even, ILO_IDX, odd);
    __m512 hi = _mm512_permutex2var_ps(even, IHI_IDX, odd);
    _mm512_mask_storeu_ps(row, klo, _mm512_add_ps(_mm512_maskz_loadu_ps(klo, row), lo));
    _mm512_mask_storeu_ps(row + 16, khi, _mm512_add_ps(_mm512_maskz_loadu_ps(khi, row + 16), hi));
}

static void max_k2s2_bw(const float *go, const int32_t *idx, int32_t base, int32_t W, float *g0, float *g1,
                        int64_t n)
{
    const __m512i ev = EVEN_IDX, one = _mm512_set1_epi32(1), w = _mm512_set1_epi32(W);
    for (int64_t o = 0; o < n; o += 16) {
        int64_t k = n - o;
        __mmask16 km = first(k);
        __m512 g = _mm512_maskz_loadu_ps(km, go + o);
        __m512i ix = _mm512_maskz_loadu_epi32(km, idx + o);
        __m512i ia = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int32_t)o), ev);
        __m512i ic = _mm512_add_epi32(ia, w);
        __m512 a = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ix, ia), g);
        __m512 b = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ix, _mm512_add_epi32(ia, one)), g);
        __m512 c = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ix, ic), g);
        __m512 d = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ix, _mm512_add_epi32(ic, one)), g);
        add_interleaved(g0 + 2 * o, 2 * k, a, b);
        add_interleaved(g1 + 2 * o, 2 * k, c, d);
    }
}

static void avg_k2s2(const float *r0, const float *r1, float *out, int64_t n)
{
    const __m512 q = _mm512_set1_ps(0.25f);
    for (int64_t o = 0; o < n; o += 16) {
        int64_t k = n - o;
        __m512 a, b, c, d;
        split2(r0 + 2 * o, 2 * k, &a, &b);
        split2(r1 + 2 * o, 2 * k, &c, &d);
        __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), c), d);
        _mm512_mask_storeu_ps(out + o, first(k), _mm512_mul_ps(s, q));
    }
}

static void avg_k3s2(const float *r0, const float *r1, const float *r2, float *out, int64_t n)
{
    const __m512 nine = _mm512_set1_ps(9.0f);
    for (int64_t o = 0; o < n; o += 16) {
        int64_t k = n - o, cols = 2 * k + 1;
        __m512 v0, v1, v2;
        split3(r0 + 2 * o, cols, &v0, &v1, &v2);
        __m512 s = _mm512_add_ps(_mm512_add_ps(v0, v1), v2);
        split3(r1 + 2 * o, cols, &v0, &v1, &v2);
        s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s, v0), v1), v2);
        split3(r2 + 2 * o, cols, &v0, &v1, &v2);
        s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s, v0), v1), v2);
        _mm512_mask_storeu_ps(out + o, first(k), _mm512_div_ps(s, nine));
    }
}

static void avg_k2s2_bw(const float *go, float *g0, float *g1, int64_t n)
{
    const __m512 q = _mm512_set1_ps(0.25f);
    for (int64_t o = 0; o < n; o += 16) {
        int64_t k = n - o;
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(first(k), go + o), q);
        add_interleaved(g0 + 2 * o, 2 * k, v, v);
        add_interleaved(g1 + 2 * o, 2 * k, v, v);
    }
}

/* 64 sums as four vectors; the tail goes to the first lanes (masked loads) */
static float sum64(const float *p, int64_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    int64_t r = n - i;
    if (r > 0) {
        a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(first(r), p + i));
        a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(first(r - 16), p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_maskz_loadu_ps(first(r - 32), p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_maskz_loadu_ps(first(r - 48), p + i + 48));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3));   /* k += k+32; k += k+16 */
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

const nb__pool_kernels nb__pool_avx512 = {max_k2s2, max_k3s2, max_k2s2_bw, avg_k2s2, avg_k3s2, avg_k2s2_bw, sum64};

#else
/* Not built for AVX-512 (another compiler's flags, another CPU family). */
const nb__pool_kernels nb__pool_avx512 = {0, 0, 0, 0, 0, 0, 0};
#endif
