/* AVX-512 direct convolution of one-channel images (see conv_direct.h).
 *
 * Both kernels first copy the plane into a zero-padded buffer whose rows
 * are PW floats (at least the output row rounded up to 16, plus kw - 1), so
 * tap (i, j) of output pixels ow..ow+15 of row oh is one unaligned load at
 * (oh + i) * PW + ow + j, padding and row tails included (they read zeros).
 *   forward:    8 output channels x 16 pixels in registers; per tap one load
 *               and 8 multiply-adds with broadcast weights.
 *   weight_acc: 2 output channels x 9 taps (+ the bias) of 16 lanes in
 *               registers over every pixel of the sample; per 16 pixels
 *               9 loads of x, 2 of dy, 20 multiply-adds. Taps beyond 9
 *               (5x5) take further blocks of 9. For 3x3 (weight_acc3)
 *               each row of taps is two aligned loads and two lane shifts. */
#include "conv_direct.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define TB 9   /* taps per block of weight_acc */

static inline __mmask16 first(int64_t k)
{
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? 0 : (__mmask16)((1u << k) - 1u);
}

/* The interior of the padded plane (its border stays as the caller zeroed it). */
static void copy_in(const nb__cd_geom *g, const float *x, float *pad)
{
    for (int64_t h = 0; h < g->H; h++)
        memcpy(pad + (h + g->ph) * g->PW + g->pw, x + h * g->W, (size_t)g->W * sizeof(float));
}

static void forward(const nb__cd_geom *g, const float *x, const float *w, const float *b, float *y, float *pad)
{
    const int T = g->kh * g->kw;
    const int64_t OH = g->OH, OW = g->OW, PW = g->PW;
    int64_t off[NB__CD_TAPS_MAX];
    for (int t = 0; t < T; t++) off[t] = (t / g->kw) * PW + t % g->kw;
    copy_in(g, x, pad);
    for (int64_t o0 = 0; o0 < g->O; o0 += NB__CD_OB) {
        const int ob = g->O - o0 < NB__CD_OB ? (int)(g->O - o0) : NB__CD_OB;
        float wb[NB__CD_OB][NB__CD_TAPS_MAX] = {{0}}, bb[NB__CD_OB] = {0};
        for (int q = 0; q < ob; q++) {
            for (int t = 0; t < T; t++) wb[q][t] = w[(o0 + q) * T + t];
            bb[q] = b ? b[o0 + q] : 0.0f;
        }
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow += 16) {
                const float *src = pad + oh * PW + ow;
                __m512 acc[NB__CD_OB];
                for (int q = 0; q < NB__CD_OB; q++) acc[q] = _mm512_set1_ps(bb[q]);
                for (int t = 0; t < T; t++) {
                    const __m512 v = _mm512_loadu_ps(src + off[t]);
                    for (int q = 0; q < NB__CD_OB; q++) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(wb[q][t]), v, acc[q]);
                }
                const __mmask16 m = first(OW - ow);
                for (int q = 0; q < ob; q++) _mm512_mask_storeu_ps(y + ((o0 + q) * OH + oh) * OW + ow, m, acc[q]);
            }
    }
}

/* The running sums of taps t0 .. t0+nt-1 (the rest of the TB zeroed) and of
 * the bias (slot T) of a channel pair's accumulators a0, a1, and their
 * store back (a1 only for a pair of two). */
static inline __attribute__((always_inline)) void
load_sums(const float *a0, const float *a1, int t0, int nt, int T, __m512 s0[TB], __m512 s1[TB], __m512 *b0,
          __m512 *b1)
{
    for (int k = 0; k < TB; k++) {
        s0[k] = k < nt ? _mm512_loadu_ps(a0 + (t0 + k) * NB__CD_LANES) : _mm512_setzero_ps();
        s1[k] = k < nt ? _mm512_loadu_ps(a1 + (t0 + k) * NB__CD_LANES) : _mm512_setzero_ps();
    }
    *b0 = _mm512_loadu_ps(a0 + T * NB__CD_LANES);
    *b1 = _mm512_loadu_ps(a1 + T * NB__CD_LANES);
}

static inline __attribute__((always_inline)) void
store_sums(float *a0, float *a1, int two, int t0, int nt, int T, int bias, const __m512 s0[TB],
           const __m512 s1[TB], __m512 b0, __m512 b1)
{
    for (int k = 0; k < nt; k++) {
        _mm512_storeu_ps(a0 + (t0 + k) * NB__CD_LANES, s0[k]);
        if (two) _mm512_storeu_ps(a1 + (t0 + k) * NB__CD_LANES, s1[k]);
    }
    if (bias) {
        _mm512_storeu_ps(a0 + T * NB__CD_LANES, b0);
        if (two) _mm512_storeu_ps(a1 + T * NB__CD_LANES, b1);
    }
}

/* dy of the pair's two planes at pixels ow .. ow+15 of row oh (0 past the
 * row), with the pair after it fetched (the next pair's planes or the
 * next sample's: each plane is too short a run for the hardware
 * prefetchers). */
static inline __attribute__((always_inline)) void
pair_grads(const float *d0, const float *d1, int64_t P, int64_t OW, int64_t oh, int64_t ow, __m512 *g0, __m512 *g1)
{
    const __mmask16 m = first(OW - ow);
    *g0 = _mm512_maskz_loadu_ps(m, d0 + oh * OW + ow);
    *g1 = _mm512_maskz_loadu_ps(m, d1 + oh * OW + ow);
    _mm_prefetch((const char *)(d0 + 2 * P + oh * OW + ow), _MM_HINT_T0);
    _mm_prefetch((const char *)(d0 + 3 * P + oh * OW + ow), _MM_HINT_T0);
}

/* weight_acc for 3x3 kernels: each row of taps from two aligned loads of
 * the padded row and two lane shifts (valignd) instead of three unaligned
 * loads, two of which straddle cache lines; the same values in the same
 * order, so the same sums. */
static void weight_acc3(const nb__cd_geom *g, const float *dy, float *acc, const float *pad)
{
    const int64_t OH = g->OH, OW = g->OW, PW = g->PW, P = OH * OW;
    for (int64_t o0 = 0; o0 < g->O; o0 += 2) {
        const int two = o0 + 1 < g->O;
        const float *d0 = dy + o0 * P, *d1 = two ? d0 + P : d0;   /* a lone last channel is done twice */
        float *a0 = acc + o0 * 10 * NB__CD_LANES, *a1 = a0 + 10 * NB__CD_LANES;
        __m512 s0[TB], s1[TB], b0, b1;
        load_sums(a0, a1, 0, TB, TB, s0, s1, &b0, &b1);
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow += 16) {
                __m512 g0, g1;
                pair_grads(d0, d1, P, OW, oh, ow, &g0, &g1);
                for (int i = 0; i < 3; i++) {
                    const float *r = pad + (oh + i) * PW + ow;
                    const __m512 lo = _mm512_load_ps(r), hi = _mm512_load_ps(r + 16);
                    const __m512 v1 = _mm512_castsi512_ps(
                        _mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), 1));
                    const __m512 v2 = _mm512_castsi512_ps(
                        _mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), 2));
                    s0[3 * i] = _mm512_fmadd_ps(g0, lo, s0[3 * i]);
                    s1[3 * i] = _mm512_fmadd_ps(g1, lo, s1[3 * i]);
                    s0[3 * i + 1] = _mm512_fmadd_ps(g0, v1, s0[3 * i + 1]);
                    s1[3 * i + 1] = _mm512_fmadd_ps(g1, v1, s1[3 * i + 1]);
                    s0[3 * i + 2] = _mm512_fmadd_ps(g0, v2, s0[3 * i + 2]);
                    s1[3 * i + 2] = _mm512_fmadd_ps(g1, v2, s1[3 * i + 2]);
                }
                b0 = _mm512_add_ps(b0, g0);
                b1 = _mm512_add_ps(b1, g1);
            }
        store_sums(a0, a1, two, 0, TB, TB, 1, s0, s1, b0, b1);
    }
}

static void weight_acc(const nb__cd_geom *g, const float *x, const float *dy, float *acc, float *pad)
{
    const int T = g->kh * g->kw, slots = T + 1;
    const int64_t OH = g->OH, OW = g->OW, PW = g->PW, P = OH * OW;
    copy_in(g, x, pad);
    if (g->kh == 3 && g->kw == 3 && ((uintptr_t)pad & 63) == 0) {
        weight_acc3(g, dy, acc, pad);
        return;
    }
    for (int64_t o0 = 0; o0 < g->O; o0 += 2) {
        const int two = o0 + 1 < g->O;
        const float *d0 = dy + o0 * P, *d1 = two ? d0 + P : d0;   /* a lone last channel is done twice */
        float *a0 = acc + o0 * slots * NB__CD_LANES, *a1 = a0 + slots * NB__CD_LANES;
        for (int t0 = 0; t0 < T; t0 += TB) {
            const int nt = T - t0 < TB ? T - t0 : TB, bias = t0 + TB >= T;   /* the last block adds the bias */
            int64_t off[TB];
            for (int k = 0; k < TB; k++) {
                const int t = t0 + (k < nt ? k : 0);
                off[k] = (t / g->kw) * PW + t % g->kw;
            }
            __m512 s0[TB], s1[TB], b0, b1;
            load_sums(a0, a1, t0, nt, T, s0, s1, &b0, &b1);
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow += 16) {
                    __m512 g0, g1;
                    pair_grads(d0, d1, P, OW, oh, ow, &g0, &g1);
                    const float *src = pad + oh * PW + ow;
                    for (int k = 0; k < TB; k++) {
                        const __m512 v = _mm512_loadu_ps(src + off[k]);
                        s0[k] = _mm512_fmadd_ps(g0, v, s0[k]);
                        s1[k] = _mm512_fmadd_ps(g1, v, s1[k]);
                    }
                    b0 = _mm512_add_ps(b0, g0);
                    b1 = _mm512_add_ps(b1, g1);
                }
            store_sums(a0, a1, two, t0, nt, T, bias, s0, s1, b0, b1);
        }
    }
}

const nb__conv_direct_kernels nb__conv_direct_avx512 = {forward, weight_acc};

#else
/* Not built for AVX-512 (another compiler's flags, another CPU family). */
const nb__conv_direct_kernels nb__conv_direct_avx512 = {0, 0};
#endif
