/* AVX-512 plane kernels of the fused batch_norm -> relu -> max_pool2d(2) op
 * (see bn_pool.h): 16 outputs per step, the even and odd input columns
 * split with vpermt2ps (and merged back for dx), row tails with masked loads
 * and stores, so a row of 14 outputs (28x28 images) is one vector step, and
 * rows of at most 8 (7 at 14x14) go two to a step. Plain multiplies and
 * adds, never FMA: the same bits as the portable C in src/ops/bn_relu_pool.c. */
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

/* Even and odd columns of two row pieces: lanes 0-7 from a (na floats may
 * be read), lanes 8-15 from b (nb floats). One row of up to 32 columns is
 * a and a + 16; two rows of up to 16 are a and b. */
static inline void split2(const float *a, int64_t na, const float *b, int64_t nb, __m512 *even, __m512 *odd)
{
    __m512 lo = _mm512_maskz_loadu_ps(first(na), a);
    __m512 hi = _mm512_maskz_loadu_ps(first(nb), b);
    *even = _mm512_permutex2var_ps(lo, EVEN_IDX, hi);
    *odd = _mm512_permutex2var_ps(lo, ODD_IDX, hi);
}

/* a[0 .. na) and b[0 .. nb) = (or +=) lanes 0-7 and 8-15 of even and odd,
 * interleaved back into columns (split2's inverse). */
static inline void put2(float *a, int64_t na, float *b, int64_t nb, __m512 even, __m512 odd, int fresh)
{
    __mmask16 ka = first(na), kb = first(nb);
    __m512 lo = _mm512_permutex2var_ps(even, ILO_IDX, odd);
    __m512 hi = _mm512_permutex2var_ps(even, IHI_IDX, odd);
    if (!fresh) {
        lo = _mm512_add_ps(_mm512_maskz_loadu_ps(ka, a), lo);
        hi = _mm512_add_ps(_mm512_maskz_loadu_ps(kb, b), hi);
    }
    _mm512_mask_storeu_ps(a, ka, lo);
    _mm512_mask_storeu_ps(b, kb, hi);
}

/* A step of 16 lanes over the outputs: 16 outputs of one row, or, when
 * rows hold at most 8 (NB__BP_PAIR_MAX), two rows, oh in lanes 0..OW-1 and
 * oh + 1 in lanes 8..8+OW-1 (the lanes of nb__bp_lane). The outputs (and
 * g, win) of a step are contiguous: `at` is the first one's index, `n`
 * their count; `pair` moves them to their lanes and back. */
typedef struct {
    int64_t at, n;
    int pair;
} bp_step;

typedef struct {
    __m512i to, from; /* permutes: contiguous -> lanes, lanes -> contiguous */
    __mmask16 lanes;  /* the lanes of a pair step */
} bp_pair;

static inline bp_pair pair_of(int64_t OW)
{
    int32_t to[16], from[16];
    for (int l = 0; l < 16; l++) {
        to[l] = l < 8 ? l : (int32_t)(OW + l - 8) & 15;
        from[l] = l < OW ? l : (int32_t)(8 + l - OW) & 15;
    }
    const __mmask16 m = first(OW);
    return (bp_pair){_mm512_loadu_si512(to), _mm512_loadu_si512(from), (__mmask16)(m | (m << 8))};
}

static inline __mmask16 step_lanes(const bp_step *s, const bp_pair *p) { return s->pair ? p->lanes : first(s->n); }

static inline __m512 load_step(const float *v, const bp_step *s, const bp_pair *p)
{
    const __m512 x = _mm512_maskz_loadu_ps(first(s->n), v + s->at);
    return s->pair ? _mm512_permutexvar_ps(p->to, x) : x;
}

static inline void store_step(float *v, const bp_step *s, const bp_pair *p, __m512 x)
{
    if (s->pair) x = _mm512_permutexvar_ps(p->from, x);
    _mm512_mask_storeu_ps(v + s->at, first(s->n), x);
}

static inline __m512i load_win(const uint8_t *win, const bp_step *s, const bp_pair *p)
{
    const __m512i c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(first(s->n), win + s->at));
    return s->pair ? _mm512_permutexvar_epi32(p->to, c) : c;
}

static inline void store_win(uint8_t *win, const bp_step *s, const bp_pair *p, __m512i c)
{
    if (s->pair) c = _mm512_permutexvar_epi32(p->from, c);
    _mm512_mask_cvtepi32_storeu_epi8(win + s->at, first(s->n), c);
}

/* The four input rows under a step, as x0 x1 (top: even, odd columns) and
 * x2 x3 (bottom); r0 is input row 2 oh, o the step's first output column. */
static inline void step_inputs(const float *r0, int64_t W, int64_t o, const bp_step *s, __m512 *x0, __m512 *x1,
                               __m512 *x2, __m512 *x3)
{
    const float *r1 = r0 + W;
    if (s->pair) { /* rows 2oh, 2oh+2 (top) and 2oh+1, 2oh+3 (bottom) */
        const int64_t c = s->n; /* 2 OW columns a row */
        split2(r0, c, r0 + 2 * W, c, x0, x1);
        split2(r1, c, r1 + 2 * W, c, x2, x3);
    } else {
        const int64_t c = 2 * s->n;
        split2(r0 + 2 * o, c, r0 + 2 * o + 16, c - 16, x0, x1);
        split2(r1 + 2 * o, c, r1 + 2 * o + 16, c - 16, x2, x3);
    }
}

/* step_inputs' inverse for dx: e0 o0 into the top rows under the step, e1
 * o1 into the bottom ones (d0 is row 2 oh of dx), written or added. */
static inline void step_outputs(float *d0, int64_t W, int64_t o, const bp_step *s, __m512 e0, __m512 o0, __m512 e1,
                                __m512 o1, int fresh)
{
    float *d1 = d0 + W;
    if (s->pair) {
        const int64_t c = s->n;
        put2(d0, c, d0 + 2 * W, c, e0, o0, fresh);
        put2(d1, c, d1 + 2 * W, c, e1, o1, fresh);
    } else {
        const int64_t c = 2 * s->n;
        put2(d0 + 2 * o, c, d0 + 2 * o + 16, c - 16, e0, o0, fresh);
        put2(d1 + 2 * o, c, d1 + 2 * o + 16, c - 16, e1, o1, fresh);
    }
}

/* Runs body over the steps of an (OH, OW) output plane, with oh, o (the
 * step's first row and column) and st (its bp_step) in scope. */
#define BP_STEPS(OH, OW, ...)                                                                  \
    for (int64_t oh = 0; oh < (OH);) {                                                         \
        const int pair_ = (OW) <= NB__BP_PAIR_MAX && oh + 1 < (OH);                            \
        for (int64_t o = 0; o < (OW); o += 16) {                                               \
            const bp_step st = {oh * (OW) + o, pair_ ? 2 * (OW) : ((OW) - o < 16 ? (OW) - o : 16), pair_}; \
            __VA_ARGS__;                                                                       \
        }                                                                                      \
        oh += pair_ ? 2 : 1;                                                                   \
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
    const bp_pair pr = pair_of(OW);
    BP_STEPS(OH, OW, {
        __m512 z0, z1, z2, z3;
        step_inputs(x + 2 * oh * W, W, o, &st, &z0, &z1, &z2, &z3);
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
        store_step(out, &st, &pr, _mm512_mask_blend_ps(keep, relu0, m));
        if (win) store_win(win, &st, &pr, _mm512_mask_blend_epi32(positive, _mm512_set1_epi32(NB__BP_NONE), pos));
    });
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
    const bp_pair pr = pair_of(OW);
    __m512d a0 = _mm512_loadu_pd(sdy), a1 = _mm512_loadu_pd(sdy + 8);
    __m512d b0 = _mm512_loadu_pd(sdyx), b1 = _mm512_loadu_pd(sdyx + 8);
    BP_STEPS(OH, OW, {
        __m512 x0, x1, x2, x3;
        step_inputs(x + 2 * oh * W, W, o, &st, &x0, &x1, &x2, &x3);
        const __m512i code = load_win(win, &st, &pr);
        const __m512 gv = load_step(g, &st, &pr);
        const __m512 gw =
            _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(NB__BP_NONE)), gv, zero);
        const __m512 prod = _mm512_mul_ps(gw, _mm512_sub_ps(at_winner(code, x0, x1, x2, x3), vm));
        const __mmask16 km = step_lanes(&st, &pr);
        const __mmask8 lo = (__mmask8)km, hi = (__mmask8)(km >> 8);
        a0 = _mm512_mask_add_pd(a0, lo, a0, _mm512_cvtps_pd(_mm512_castps512_ps256(gw)));
        a1 = _mm512_mask_add_pd(a1, hi, a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(gw, 1)));
        b0 = _mm512_mask_add_pd(b0, lo, b0, _mm512_cvtps_pd(_mm512_castps512_ps256(prod)));
        b1 = _mm512_mask_add_pd(b1, hi, b1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(prod, 1)));
    });
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
    const bp_pair pr = pair_of(OW);
    BP_STEPS(OH, OW, {
        __m512 x0, x1, x2, x3;
        step_inputs(x + 2 * oh * W, W, o, &st, &x0, &x1, &x2, &x3);
        const __m512i code = load_win(win, &st, &pr);
        const __m512 gv = load_step(g, &st, &pr);
        __m512 dz[4];
        for (int j = 0; j < 4; j++)
            dz[j] = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(j)), zero, gv);
        step_outputs(d + 2 * oh * W, W, o, &st, grad(dz[0], x0, vm, vk, vp, vq), grad(dz[1], x1, vm, vk, vp, vq),
                     grad(dz[2], x2, vm, vk, vp, vq), grad(dz[3], x3, vm, vk, vp, vq), fresh);
    });
    if (W % 2) dx_rest(x + W - 1, 2 * OH, W, mc, k, p, q, d + W - 1, fresh);
    if (H % 2) dx_rest(x + (H - 1) * W, W, 1, mc, k, p, q, d + (H - 1) * W, fresh);
}

const nb__bn_pool_kernels nb__bn_pool_avx512 = {forward, sums, dx};

#else
/* Not built for AVX-512 (another compiler's flags, another CPU family). */
const nb__bn_pool_kernels nb__bn_pool_avx512 = {0, 0, 0};
#endif
