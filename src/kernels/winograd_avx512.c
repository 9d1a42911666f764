/* The Winograd transforms (winograd.h) with AVX-512, 8 tiles of a tile row
 * at a time: the 4 input rows under them (18 columns) in two vectors each,
 * transformed down the rows, then permuted into the 4 columns of each tile
 * and transformed across; the output the same way back, its two column
 * vectors interleaved into a row. A tile row of a small image holds few
 * tiles (7 at 14x14), too few for the portable loops' vectorisation along
 * a row. Measured and not kept: 16 tiles per vector wherever they lie,
 * with gathers and scatters: 5x slower (gathers are slow on this CPU).
 * Each lane does the portable loops' operations in their order: the same
 * bits. */
#include "winograd.h"
#include "simd.h"

#ifdef NB_SIMD_AVX512
#include <immintrin.h>

/* Brings the line 32 floats past p into L1 before the narrow kernels'
 * stores reach it. They write 16 streams (one per xi, rows far apart) 56
 * bytes at a time into a chunk's V or dM, which lives in L2; without this a
 * stream's next line is fetched only when a store misses it. Measured on
 * the CNN's conv2 (perf shares of bench_cnn, 2 runs each): input 10.0% ->
 * 7.6%, grad 4.2% -> 3.2%. The wide kernels, whose stores walk along a row
 * 32 bytes at a time, ran 7% slower with it. A prefetch never faults, past
 * the buffer's end included. */
static inline void store_ahead(const float *p) { _mm_prefetch((const char *)(p + 32), _MM_HINT_T0); }

/* Lanes of the permutes: column 2k + s of the 32 in (lo, hi), k < 8. */
static __m512i cols(int s)
{
    int32_t i[16];
    for (int k = 0; k < 16; k++) i[k] = k < 8 ? 2 * k + s : 0;
    return _mm512_loadu_si512(i);
}

/* 16 floats of row r (n floats) from column c on, 0 outside the row. */
static inline __m512 row_load(const float *r, int64_t n, int64_t c)
{
    const int64_t lo = c < 0 ? -c : 0, hi = n - c < 16 ? n - c : 16;
    if (hi <= lo) return _mm512_setzero_ps();
    const __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    return _mm512_maskz_loadu_ps(m, r + c); /* lanes outside m are not read */
}

/* The rows down a tile row segment (B^T d): r[i] for the 4 input rows
 * under tiles tx0 .. tx0 + m of tile row ty, columns 2 tx0 - pw + 0..15. */
static inline void down_rows(const nb__wg_geom *g, const float *plane, int64_t ty, int64_t tx0, __m512 r[4])
{
    const int64_t c0 = 2 * tx0 - g->pw;
    __m512 a[4];
    for (int i = 0; i < 4; i++) {
        const int64_t ih = 2 * ty - g->ph + i;
        a[i] = ih >= 0 && ih < g->H ? row_load(plane + ih * g->W, g->W, c0) : _mm512_setzero_ps();
    }
    r[0] = _mm512_sub_ps(a[0], a[2]);
    r[1] = _mm512_add_ps(a[1], a[2]);
    r[2] = _mm512_sub_ps(a[2], a[1]);
    r[3] = _mm512_sub_ps(a[1], a[3]);
}

/* Segment t of tiles [t0, t1): its sample, tile row, first column and
 * length (to the row's end or t1). */
static inline int64_t segment(const nb__wg_geom *g, int64_t t, int64_t t1, int64_t *n, int64_t *ty, int64_t *tx0)
{
    const int64_t T = g->th * g->tw;
    *n = t / T, *ty = t % T / g->tw, *tx0 = t % g->tw;
    return g->tw - *tx0 < t1 - t ? g->tw - *tx0 : t1 - t;
}

/* A segment as a record: m tiles from column tx0 of tile row ty of sample
 * n, at column tt of V and M. */
typedef struct { int32_t n, ty, tx0, m, tt; } seg;

/* The segments of tiles [t0, t1) (t1 - t0 <= NB__WG_CHUNK_MAX) in order,
 * then an empty one (m = 0), so that they can be taken two at a time;
 * returns their count, the empty one not counted. input_narrow and
 * output_narrow list them once per call rather than once per channel
 * (input 4% and output 1.4x faster alone); grad_narrow, whose loop is
 * bound by its stores, ran 15-20% slower that way and finds them as it
 * goes. */
static int64_t segments(const nb__wg_geom *g, int64_t t0, int64_t t1, seg *s)
{
    int64_t k = 0;
    for (int64_t t = t0; t < t1; k++) {
        int64_t n, ty, tx0;
        const int64_t m = segment(g, t, t1, &n, &ty, &tx0);
        s[k] = (seg){(int32_t)n, (int32_t)ty, (int32_t)tx0, (int32_t)m, (int32_t)(t - t0)};
        t += m;
    }
    s[k] = (seg){0, 0, 0, 0, (int32_t)(t1 - t0)};
    return k;
}

/* The permute of two segments' columns into one vector: lane l < first
 * takes column 2l + s of a (lanes 0-15), the others column 2(l - first) +
 * s of b (lanes 16-31). */
static __m512i two_segments(int first, int s)
{
    int32_t l[16];
    for (int k = 0; k < 16; k++) l[k] = k < first ? 2 * k + s : (16 + 2 * (k - first) + s) & 31;
    return _mm512_loadu_si512(l);
}

/* input() for images whose tile rows hold at most 7 tiles: one vector
 * holds a segment's 2m + 2 <= 16 columns, so two consecutive segments of
 * V share each vector (lanes 0 .. ma-1 the first's tiles, then the
 * second's): half the loads, arithmetic and stores of the 8-lane path. */
static void input_narrow(const nb__wg_geom *g, const float *x, int64_t t0, int64_t t1, float *V, int64_t ch,
                         int64_t vs)
{
    const int64_t C = g->C, HW = g->H * g->W;
    __m512i idx[8][4]; /* [tiles of the first segment][column 0..3 of a tile] */
    for (int ma = 1; ma < 8; ma++)
        for (int s = 0; s < 4; s++) idx[ma][s] = two_segments(ma, s);
    seg sg[NB__WG_CHUNK_MAX + 1];
    const int64_t ns = segments(g, t0, t1, sg);
    for (int64_t c = 0; c < C; c++)
        for (int64_t k = 0; k < ns; k += 2) {
            const seg *a = &sg[k], *b = &sg[k + 1];
            __m512 ra[4], rb[4];
            down_rows(g, x + (a->n * C + c) * HW, a->ty, a->tx0, ra);
            if (b->m) {
                down_rows(g, x + (b->n * C + c) * HW, b->ty, b->tx0, rb);
            } else {
                for (int i = 0; i < 4; i++) rb[i] = _mm512_setzero_ps();
            }
            const __mmask16 st = (__mmask16)((1u << (a->m + b->m)) - 1u);
            const __m512i *ix = idx[a->m];
            float *v = V + c * ch + a->tt;
            for (int i = 0; i < 4; i++) { /* across: columns 2t, 2t+1, 2t+2, 2t+3 */
                const __m512 e = _mm512_permutex2var_ps(ra[i], ix[0], rb[i]);
                const __m512 o = _mm512_permutex2var_ps(ra[i], ix[1], rb[i]);
                const __m512 e1 = _mm512_permutex2var_ps(ra[i], ix[2], rb[i]);
                const __m512 o1 = _mm512_permutex2var_ps(ra[i], ix[3], rb[i]);
                float *vi = v + 4 * i * vs;
                for (int q = 0; q < 4; q++) store_ahead(vi + q * vs);
                _mm512_mask_storeu_ps(vi, st, _mm512_sub_ps(e, e1));
                _mm512_mask_storeu_ps(vi + vs, st, _mm512_add_ps(o, e1));
                _mm512_mask_storeu_ps(vi + 2 * vs, st, _mm512_sub_ps(e1, o));
                _mm512_mask_storeu_ps(vi + 3 * vs, st, _mm512_sub_ps(o, o1));
            }
        }
}

static void input(const nb__wg_geom *g, const float *x, int64_t t0, int64_t t1, float *V, int64_t ch, int64_t vs)
{
    const int64_t C = g->C, H = g->H, W = g->W, HW = H * W;
    if (2 * g->tw + 2 <= 16) {
        input_narrow(g, x, t0, t1, V, ch, vs);
        return;
    }
    const __m512i ie = cols(0), io = cols(1), ie1 = cols(2), io1 = cols(3);
    /* channel by channel: the rows of a plane are read in order */
    for (int64_t c = 0; c < C; c++) NB__WG_FOR_ROWS(g, t0, t1, {
        {
            const float *plane = x + (n * C + c) * HW;
            float *v = V + c * ch + tt;
            /* 8 tiles at a time: padded columns c0 .. c0 + 17 */
            for (int64_t k = 0; k < m; k += 8) {
                const int64_t c0 = 2 * (tx0 + k) - g->pw;
                const __mmask16 st = (__mmask16)((1u << (m - k < 8 ? m - k : 8)) - 1u);
                __m512 lo[4], hi[4];
                for (int i = 0; i < 4; i++) {
                    const int64_t ih = 2 * ty - g->ph + i;
                    const int in = ih >= 0 && ih < H;
                    lo[i] = in ? row_load(plane + ih * W, W, c0) : _mm512_setzero_ps();
                    hi[i] = in ? row_load(plane + ih * W, W, c0 + 16) : _mm512_setzero_ps();
                }
                __m512 r[4][2]; /* down the rows: B^T d */
                for (int h = 0; h < 2; h++) {
                    const __m512 a0 = h ? hi[0] : lo[0], a1 = h ? hi[1] : lo[1];
                    const __m512 a2 = h ? hi[2] : lo[2], a3 = h ? hi[3] : lo[3];
                    r[0][h] = _mm512_sub_ps(a0, a2);
                    r[1][h] = _mm512_add_ps(a1, a2);
                    r[2][h] = _mm512_sub_ps(a2, a1);
                    r[3][h] = _mm512_sub_ps(a1, a3);
                }
                for (int i = 0; i < 4; i++) { /* across: columns 2t, 2t+1, 2t+2, 2t+3 */
                    const __m512 e = _mm512_permutex2var_ps(r[i][0], ie, r[i][1]);
                    const __m512 o = _mm512_permutex2var_ps(r[i][0], io, r[i][1]);
                    const __m512 e1 = _mm512_permutex2var_ps(r[i][0], ie1, r[i][1]);
                    const __m512 o1 = _mm512_permutex2var_ps(r[i][0], io1, r[i][1]);
                    float *vi = v + 4 * i * vs + k;
                    _mm512_mask_storeu_ps(vi, st, _mm512_sub_ps(e, e1));
                    _mm512_mask_storeu_ps(vi + vs, st, _mm512_add_ps(o, e1));
                    _mm512_mask_storeu_ps(vi + 2 * vs, st, _mm512_sub_ps(e1, o));
                    _mm512_mask_storeu_ps(vi + 3 * vs, st, _mm512_sub_ps(o, o1));
                }
            }
        }
    });
}

/* output() when a tile row holds at most 8 tiles: two segments' tiles per
 * vector down the rows, each segment's columns interleaved apart. */
static void output_narrow(const nb__wg_geom *g, const float *M, int64_t ch, int64_t ms, int64_t t0, int64_t t1,
                          const float *bias, int add, float *y)
{
    const int64_t O = g->O, OW = g->OW, OHW = g->OH * OW;
    __m512i inter[9]; /* [first tile]: lanes 2k, 2k + 1 from v0, v1 lane first + k */
    for (int f = 0; f < 9; f++) {
        int32_t il[16];
        for (int k = 0; k < 16; k++) il[k] = ((f + k / 2) & 15) + (k % 2) * 16;
        inter[f] = _mm512_loadu_si512(il);
    }
    seg sg[NB__WG_CHUNK_MAX + 1];
    const int64_t ns = segments(g, t0, t1, sg);
    for (int64_t o = 0; o < O; o++)
        for (int64_t k = 0; k < ns; k += 2) {
            const seg *p = &sg[k];
            const __mmask16 ld = (__mmask16)((1u << (p[0].m + p[1].m)) - 1u);
            const float *mo = M + o * ch + p->tt;
            __m512 s[2][4];
            for (int j = 0; j < 4; j++) { /* down: A^T m */
                const __m512 m0 = _mm512_maskz_loadu_ps(ld, mo + j * ms);
                const __m512 m1 = _mm512_maskz_loadu_ps(ld, mo + (4 + j) * ms);
                const __m512 m2 = _mm512_maskz_loadu_ps(ld, mo + (8 + j) * ms);
                const __m512 m3 = _mm512_maskz_loadu_ps(ld, mo + (12 + j) * ms);
                s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
            for (int i = 0; i < 2; i++) { /* across: (A^T m) A, then each segment's columns interleaved */
                const __m512 v0 = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]);
                const __m512 v1 = _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]);
                for (int q = 0, f = 0; q < 2 && p[q].m; f += p[q].m, q++) {
                    if (2 * p[q].ty + i >= g->OH) continue;
                    const int64_t ow = 2 * p[q].tx0, nw = OW - ow < 2 * p[q].m ? OW - ow : 2 * p[q].m;
                    const __mmask16 st = (__mmask16)((1u << nw) - 1u);
                    float *d = y + (p[q].n * O + o) * OHW + (2 * p[q].ty + i) * OW + ow;
                    __m512 v = _mm512_permutex2var_ps(v0, inter[f], v1);
                    v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(st, d), v) : _mm512_add_ps(v, b);
                    _mm512_mask_storeu_ps(d, st, v);
                }
            }
        }
}

static void output(const nb__wg_geom *g, const float *M, int64_t ch, int64_t ms, int64_t t0, int64_t t1,
                   const float *bias, int add, float *y)
{
    if (g->tw <= 8) {
        output_narrow(g, M, ch, ms, t0, t1, bias, add, y);
        return;
    }
    const int64_t O = g->O, OW = g->OW, OHW = g->OH * OW;
    int32_t il[16];
    for (int k = 0; k < 16; k++) il[k] = k / 2 + (k % 2) * 16; /* interleave two vectors' first 8 lanes */
    const __m512i inter = _mm512_loadu_si512(il);
    for (int64_t o = 0; o < O; o++) NB__WG_FOR_ROWS(g, t0, t1, {
        const int two = 2 * ty + 1 < g->OH;
        {
            const float *mo = M + o * ch + tt;
            float *yr = y + (n * O + o) * OHW + 2 * ty * OW;
            const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
            for (int64_t k = 0; k < m; k += 8) {
                const __mmask16 ld = (__mmask16)((1u << (m - k < 8 ? m - k : 8)) - 1u);
                const int64_t ow = 2 * (tx0 + k), left = 2 * (m - k) < 16 ? 2 * (m - k) : 16;
                const int64_t nw = OW - ow < left ? OW - ow : left; /* this segment's columns only */
                const __mmask16 st = (__mmask16)((1u << nw) - 1u);
                __m512 s[2][4];
                for (int j = 0; j < 4; j++) { /* down: A^T m */
                    const __m512 m0 = _mm512_maskz_loadu_ps(ld, mo + j * ms + k);
                    const __m512 m1 = _mm512_maskz_loadu_ps(ld, mo + (4 + j) * ms + k);
                    const __m512 m2 = _mm512_maskz_loadu_ps(ld, mo + (8 + j) * ms + k);
                    const __m512 m3 = _mm512_maskz_loadu_ps(ld, mo + (12 + j) * ms + k);
                    s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                    s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
                }
                for (int i = 0; i < 1 + two; i++) { /* across: (A^T m) A, then columns interleaved */
                    const __m512 v0 = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]);
                    const __m512 v1 = _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]);
                    __m512 v = _mm512_permutex2var_ps(v0, inter, v1);
                    float *d = yr + i * OW + ow;
                    v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(st, d), v) : _mm512_add_ps(v, b);
                    _mm512_mask_storeu_ps(d, st, v);
                }
            }
        }
    });
}

/* grad() when a tile row holds at most 8 tiles: two segments' tiles per
 * vector. */
static void grad_narrow(const nb__wg_geom *g, const float *dy, int64_t t0, int64_t t1, float *dM, int64_t ch,
                        int64_t ms)
{
    const int64_t O = g->O, OW = g->OW, OHW = g->OH * OW;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512i split[9][2]; /* [tiles of the first segment][even, odd columns] */
    for (int f = 0; f < 9; f++)
        for (int s = 0; s < 2; s++) split[f][s] = two_segments(f, s);
    for (int64_t o = 0; o < O; o++)
        for (int64_t t = t0; t < t1;) {
            int64_t n, ty, tx0, m[2] = {0, 0};
            __m512 y[2][2]; /* [segment][row] */
            for (int q = 0; q < 2; q++) {
                const int64_t u = t + (q ? m[0] : 0);
                y[q][0] = y[q][1] = _mm512_setzero_ps();
                if (u >= t1) continue;
                m[q] = segment(g, u, t1, &n, &ty, &tx0);
                const int64_t ow = 2 * tx0, nw = OW - ow < 2 * m[q] ? OW - ow : 2 * m[q];
                const __mmask16 ld = (__mmask16)((1u << nw) - 1u);
                const float *yr = dy + (n * O + o) * OHW + 2 * ty * OW + ow;
                y[q][0] = _mm512_maskz_loadu_ps(ld, yr);
                if (2 * ty + 1 < g->OH) y[q][1] = _mm512_maskz_loadu_ps(ld, yr + OW);
            }
            const __m512i *sp = split[m[0]];
            const __m512 d00 = _mm512_permutex2var_ps(y[0][0], sp[0], y[1][0]);
            const __m512 d01 = _mm512_permutex2var_ps(y[0][0], sp[1], y[1][0]);
            const __m512 d10 = _mm512_permutex2var_ps(y[0][1], sp[0], y[1][1]);
            const __m512 d11 = _mm512_permutex2var_ps(y[0][1], sp[1], y[1][1]);
            const __m512 r[4][2] = {{d00, d01},
                                    {_mm512_add_ps(d00, d10), _mm512_add_ps(d01, d11)},
                                    {_mm512_sub_ps(d00, d10), _mm512_sub_ps(d01, d11)},
                                    {_mm512_xor_ps(d10, sign), _mm512_xor_ps(d11, sign)}};
            const __mmask16 st = (__mmask16)((1u << (m[0] + m[1])) - 1u);
            float *d = dM + o * ch + (t - t0);
            for (int i = 0; i < 4; i++) {
                float *di = d + 4 * i * ms;
                for (int q = 0; q < 4; q++) store_ahead(di + q * ms);
                _mm512_mask_storeu_ps(di, st, r[i][0]);
                _mm512_mask_storeu_ps(di + ms, st, _mm512_add_ps(r[i][0], r[i][1]));
                _mm512_mask_storeu_ps(di + 2 * ms, st, _mm512_sub_ps(r[i][0], r[i][1]));
                _mm512_mask_storeu_ps(di + 3 * ms, st, _mm512_xor_ps(r[i][1], sign));
            }
            t += m[0] + m[1];
        }
}

static void grad(const nb__wg_geom *g, const float *dy, int64_t t0, int64_t t1, float *dM, int64_t ch, int64_t ms)
{
    if (g->tw <= 8) {
        grad_narrow(g, dy, t0, t1, dM, ch, ms);
        return;
    }
    const int64_t O = g->O, OW = g->OW, OHW = g->OH * OW;
    const __m512i ie = cols(0), io = cols(1);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t o = 0; o < O; o++) NB__WG_FOR_ROWS(g, t0, t1, {
        const int two = 2 * ty + 1 < g->OH;
        const float *yr = dy + (n * O + o) * OHW + 2 * ty * OW;
        float *d = dM + o * ch + tt;
        for (int64_t k = 0; k < m; k += 8) {
            const __mmask16 st = (__mmask16)((1u << (m - k < 8 ? m - k : 8)) - 1u);
            const int64_t ow = 2 * (tx0 + k), left = 2 * (m - k) < 16 ? 2 * (m - k) : 16;
            const int64_t nw = OW - ow < left ? OW - ow : left;
            const __mmask16 ld = (__mmask16)((1u << nw) - 1u);
            const __m512 y0 = _mm512_maskz_loadu_ps(ld, yr + ow);
            const __m512 y1 = two ? _mm512_maskz_loadu_ps(ld, yr + OW + ow) : _mm512_setzero_ps();
            const __m512 d00 = _mm512_permutexvar_ps(ie, y0), d01 = _mm512_permutexvar_ps(io, y0);
            const __m512 d10 = _mm512_permutexvar_ps(ie, y1), d11 = _mm512_permutexvar_ps(io, y1);
            const __m512 r[4][2] = {{d00, d01},
                                    {_mm512_add_ps(d00, d10), _mm512_add_ps(d01, d11)},
                                    {_mm512_sub_ps(d00, d10), _mm512_sub_ps(d01, d11)},
                                    {_mm512_xor_ps(d10, sign), _mm512_xor_ps(d11, sign)}};
            for (int i = 0; i < 4; i++) {
                float *di = d + 4 * i * ms + k;
                _mm512_mask_storeu_ps(di, st, r[i][0]);
                _mm512_mask_storeu_ps(di + ms, st, _mm512_add_ps(r[i][0], r[i][1]));
                _mm512_mask_storeu_ps(di + 2 * ms, st, _mm512_sub_ps(r[i][0], r[i][1]));
                _mm512_mask_storeu_ps(di + 3 * ms, st, _mm512_xor_ps(r[i][1], sign));
            }
        }
    });
}

const nb__wg_kernels nb__wg_avx512 = {input, output, grad};

#else
/* Not built for AVX-512: never selected. */
const nb__wg_kernels nb__wg_avx512 = {0, 0, 0};
#endif
