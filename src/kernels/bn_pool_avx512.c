/* AVX-512 plane kernels of the fused batch_norm -> relu -> max_pool2d(2) op
 * (see bn_pool.h): 16 outputs per step, the even and odd input columns
 * split with vpermt2ps (and merged back for dx), row tails with masked loads
 * and stores, so the short rows of small images (7 or 14 outputs) are one
 * vector step. Plain multiplies and adds, never FMA: the same bits as the
 * portable C in src/ops/bn_relu_pool.c. */
#include "bn_pool.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

static inline __mmask16 first(int64_t k)
{
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? 0 : (__mmask16)((1u << k) - 1u);
}

#define EVEN_IDX _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODD_IDX _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define ILO_IDX _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define IHI_IDX _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)

/* Columns 2o (even) and 2o+1 (odd) of 16 outputs; `cols` columns may be read. */
static inline void split2(const float *r, int64_t cols, __m512 *even, __m512 *odd)
{
    __m512 lo = _mm512_maskz_loadu_ps(first(cols), r);
    __m512 hi = _mm512_maskz_loadu_ps(first(cols - 16), r + 16);
    *even = _mm512_permutex2var_ps(lo, EVEN_IDX, hi);
    *odd = _mm512_permutex2var_ps(lo, ODD_IDX, hi);
}

/* row[0 .. cols) = (or +=) interleave(even, odd) */
static inline void put2(float *row, int64_t cols, __m512 even, __m512 odd, int fresh)
{
    __mmask16 klo = first(cols), khi = first(cols - 16);
    __m512 lo = _mm512_permutex2var_ps(even, ILO_IDX, odd);
    __m512 hi = _mm512_permutex2var_ps(even, IHI_IDX, odd);
    if (!fresh) {
        lo = _mm512_add_ps(_mm512_maskz_loadu_ps(klo, row), lo);
        hi = _mm512_add_ps(_mm512_maskz_loadu_ps(khi, row + 16), hi);
    }
    _mm512_mask_storeu_ps(row, klo, lo);
    _mm512_mask_storeu_ps(row + 16, khi, hi);
}

/* (v - mc) * a + b */
static inline __m512 norm(__m512 v, __m512 mc, __m512 a, __m512 b)
{
    return _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, mc), a), b);
}

/* v wins over m when greater or NaN */
static inline __mmask16 wins(__m512 v, __m512 m)
{
    return _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

static void forward(const float *x, int64_t W, int64_t OH, int64_t OW, float mc, float a, float b, float *out,
                    uint8_t *win)
{
    const __m512 vm = _mm512_set1_ps(mc), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b), zero = _mm512_setzero_ps();
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        for (int64_t o = 0; o < OW; o += 16) {
            const int64_t k = OW - o;
            const __mmask16 km = first(k);
            __m512 z0, z1, z2, z3;
            split2(r0 + 2 * o, 2 * k, &z0, &z1);
            split2(r1 + 2 * o, 2 * k, &z2, &z3);
            z0 = norm(z0, vm, va, vb);
            z1 = norm(z1, vm, va, vb);
            z2 = norm(z2, vm, va, vb);
            z3 = norm(z3, vm, va, vb);
            __m512 m = z0;
            __m512i pos = _mm512_setzero_si512();
            __mmask16 t = wins(z1, m);
            m = _mm512_mask_blend_ps(t, m, z1);
            pos = _mm512_mask_blend_epi32(t, pos, _mm512_set1_epi32(1));
            t = wins(z2, m);
            m = _mm512_mask_blend_ps(t, m, z2);
            pos = _mm512_mask_blend_epi32(t, pos, _mm512_set1_epi32(2));
            t = wins(z3, m);
            m = _mm512_mask_blend_ps(t, m, z3);
            pos = _mm512_mask_blend_epi32(t, pos, _mm512_set1_epi32(3));
            const __mmask16 positive = _mm512_cmp_ps_mask(m, zero, _CMP_GT_OQ);
            const __mmask16 keep = positive | _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
            const __m512 relu0 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z0, zero, _CMP_LT_OQ), z0, zero);
            _mm512_mask_storeu_ps(out + oh * OW + o, km, _mm512_mask_blend_ps(keep, relu0, m));
            if (win) {
                const __m512i code = _mm512_mask_blend_epi32(positive, _mm512_set1_epi32(NB__BP_NONE), pos);
                _mm512_mask_cvtepi32_storeu_epi8(win + oh * OW + o, km, code);
            }
        }
    }
}

/* The input under each output's winner (code 4, none, picks the last). */
static inline __m512 at_winner(__m512i code, __m512 x0, __m512 x1, __m512 x2, __m512 x3)
{
    __m512 v = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(0)), x3, x0);
    v = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(1)), v, x1);
    return _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(2)), v, x2);
}

static void sums(const float *x, int64_t W, int64_t OH, int64_t OW, const float *g, const uint8_t *win, float mc,
                 double *sdy, double *sdyx)
{
    const __m512 vm = _mm512_set1_ps(mc), zero = _mm512_setzero_ps();
    __m512d a0 = _mm512_loadu_pd(sdy), a1 = _mm512_loadu_pd(sdy + 8);
    __m512d b0 = _mm512_loadu_pd(sdyx), b1 = _mm512_loadu_pd(sdyx + 8);
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        for (int64_t o = 0; o < OW; o += 16) {
            const int64_t k = OW - o;
            const __mmask16 km = first(k);
            __m512 x0, x1, x2, x3;
            split2(r0 + 2 * o, 2 * k, &x0, &x1);
            split2(r1 + 2 * o, 2 * k, &x2, &x3);
            const __m512i code = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(km, win + oh * OW + o));
            const __m512 gv = _mm512_maskz_loadu_ps(km, g + oh * OW + o);
            const __m512 gw = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(NB__BP_NONE)), gv,
                                                   zero);
            const __m512 prod = _mm512_mul_ps(gw, _mm512_sub_ps(at_winner(code, x0, x1, x2, x3), vm));
            const __mmask8 lo = (__mmask8)km, hi = (__mmask8)(km >> 8);
            a0 = _mm512_mask_add_pd(a0, lo, a0, _mm512_cvtps_pd(_mm512_castps512_ps256(gw)));
            a1 = _mm512_mask_add_pd(a1, hi, a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(gw, 1)));
            b0 = _mm512_mask_add_pd(b0, lo, b0, _mm512_cvtps_pd(_mm512_castps512_ps256(prod)));
            b1 = _mm512_mask_add_pd(b1, hi, b1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(prod, 1)));
        }
    }
    _mm512_storeu_pd(sdy, a0);
    _mm512_storeu_pd(sdy + 8, a1);
    _mm512_storeu_pd(sdyx, b0);
    _mm512_storeu_pd(sdyx + 8, b1);
}

/* k * dz - p * (v - mc) - q */
static inline __m512 grad(__m512 dz, __m512 v, __m512 mc, __m512 k, __m512 p, __m512 q)
{
    return _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(k, dz), _mm512_mul_ps(p, _mm512_sub_ps(v, mc))), q);
}

/* dz = 0: a row (stride 1) or the odd last column (stride W) outside every
 * window, n floats. */
static void dx_rest(const float *x, int64_t n, int64_t stride, float mc, float k, float p, float q, float *dx,
                    int fresh)
{
    if (stride != 1) {
        for (int64_t i = 0; i < n; i++) {
            const float v = k * 0.0f - p * (x[i * stride] - mc) - q;
            dx[i * stride] = fresh ? v : dx[i * stride] + v;
        }
        return;
    }
    const __m512 vm = _mm512_set1_ps(mc), vp = _mm512_set1_ps(p), vq = _mm512_set1_ps(q);
    const __m512 kz = _mm512_mul_ps(_mm512_set1_ps(k), _mm512_setzero_ps());
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 km = first(n - j);
        const __m512 xv = _mm512_maskz_loadu_ps(km, x + j);
        __m512 v = _mm512_sub_ps(_mm512_sub_ps(kz, _mm512_mul_ps(vp, _mm512_sub_ps(xv, vm))), vq);
        if (!fresh) v = _mm512_add_ps(_mm512_maskz_loadu_ps(km, dx + j), v);
        _mm512_mask_storeu_ps(dx + j, km, v);
    }
}

static void dx(const float *x, int64_t H, int64_t W, int64_t OW, const float *g, const uint8_t *win, float mc,
               float k, float p, float q, float *d, int fresh)
{
    const __m512 vm = _mm512_set1_ps(mc), vk = _mm512_set1_ps(k), vp = _mm512_set1_ps(p), vq = _mm512_set1_ps(q);
    const __m512 zero = _mm512_setzero_ps();
    const int64_t OH = H / 2;
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *d0 = d + 2 * oh * W, *d1 = d0 + W;
        for (int64_t o = 0; o < OW; o += 16) {
            const int64_t n = OW - o;
            const __mmask16 km = first(n);
            __m512 x0, x1, x2, x3;
            split2(r0 + 2 * o, 2 * n, &x0, &x1);
            split2(r1 + 2 * o, 2 * n, &x2, &x3);
            const __m512i code = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(km, win + oh * OW + o));
            const __m512 gv = _mm512_maskz_loadu_ps(km, g + oh * OW + o);
            __m512 dz[4];
            for (int j = 0; j < 4; j++)
                dz[j] = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(j)), zero, gv);
            put2(d0 + 2 * o, 2 * n, grad(dz[0], x0, vm, vk, vp, vq), grad(dz[1], x1, vm, vk, vp, vq), fresh);
            put2(d1 + 2 * o, 2 * n, grad(dz[2], x2, vm, vk, vp, vq), grad(dz[3], x3, vm, vk, vp, vq), fresh);
        }
    }
    if (W % 2) dx_rest(x + W - 1, 2 * OH, W, mc, k, p, q, d + W - 1, fresh);
    if (H % 2) dx_rest(x + (H - 1) * W, W, 1, mc, k, p, q, d + (H - 1) * W, fresh);
}

const nb__bn_pool_kernels nb__bn_pool_avx512 = {forward, sums, dx};

#else
/* Not built for AVX-512 (another compiler's flags, another CPU family). */
const nb__bn_pool_kernels nb__bn_pool_avx512 = {0, 0, 0};
#endif
