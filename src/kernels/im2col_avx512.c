/* AVX-512 im2col / col2im for width stride 1 (see im2col.h): a col row is
 * written 16 columns at a time with one masked load and one masked store,
 * the masks (one table per tap) cutting the padding columns, so there is no
 * call per row and no separate zeroing of the padded edges; col2im gathers
 * (see there). Masked-off lanes are never read or written, so loads may
 * start left of a row. */
#include "im2col.h"

#if defined(__AVX512F__)
#include <immintrin.h>

/* Lanes l of a 16-column step at ow with lo <= ow + l < hi. */
static inline __mmask16 span(int64_t ow, int64_t lo, int64_t hi)
{
    int64_t a = lo - ow, b = hi - ow;
    if (a < 0) a = 0;
    if (b > 16) b = 16;
    if (b <= a) return 0;
    return (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u));
}

/* Output columns ow whose input column ow + off lies in [0, W): [*lo, *hi). */
static inline void cols(int64_t OW, int64_t W, int64_t off, int64_t *lo, int64_t *hi)
{
    int64_t l = off < 0 ? -off : 0, h = W - off;
    if (h > OW) h = OW;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

#define MAX_CHUNKS 64   /* 16-column steps of a row in a mask table: conv.c keeps W, OW <= 1024 */
#define MAX_KW     16   /* kernel widths in col2im's table: conv.c keeps kw <= 16 */

static void im2col(const nb__im2col_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col)
{
    const int64_t OW = g->OW, rows = oh1 - oh0, nc = (OW + 15) / 16;
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 put[MAX_CHUNKS], get[MAX_CHUNKS];
    for (int64_t c = 0; c < nc; c++) put[c] = span(16 * c, 0, OW);
    for (int i = 0; i < g->kh; i++)
        for (int j = 0; j < g->kw; j++) {
            const int64_t off = (int64_t)j * g->dw - g->pw;
            int64_t lo, hi;
            cols(OW, g->W, off, &lo, &hi);
            for (int64_t c = 0; c < nc; c++) get[c] = span(16 * c, lo, hi);
            const __mmask16 get0 = get[0], put0 = put[0];
            float *dst = col + (int64_t)(i * g->kw + j) * rows * OW;
            for (int64_t t = 0; t < rows; t++, dst += OW) {
                const int64_t ih = (oh0 + t) * g->sh - g->ph + (int64_t)i * g->dh;
                if (ih < 0 || ih >= g->H) {
                    for (int64_t c = 0; c < nc; c++) _mm512_mask_storeu_ps(dst + 16 * c, put[c], zero);
                    continue;
                }
                const float *src = x + ih * g->W + off;
                if (nc == 1) { /* the common short row: masks stay in registers */
                    _mm512_mask_storeu_ps(dst, put0, _mm512_maskz_loadu_ps(get0, src));
                    continue;
                }
                for (int64_t c = 0; c < nc; c++)
                    _mm512_mask_storeu_ps(dst + 16 * c, put[c], _mm512_maskz_loadu_ps(get[c], src + 16 * c));
            }
        }
}

/* A gather: each 16 columns of an input row collect the col values of
 * every tap that reads them, in tap order (the order the scatter of the
 * portable loops adds them), and are stored once. */
static void col2im(const nb__im2col_geom *g, const float *col, int64_t oh0, int64_t oh1, float *dx)
{
    const int64_t OW = g->OW, W = g->W, rows = oh1 - oh0, nc = (W + 15) / 16;
    /* per 16 columns: the lanes inside the row, and per width tap those
     * whose output column ow = iw + pw - j*dw lies in [0, OW) */
    __mmask16 in_row[MAX_CHUNKS], take[MAX_CHUNKS][MAX_KW];
    for (int64_t c = 0; c < nc; c++) {
        in_row[c] = span(16 * c, 0, W);
        for (int j = 0; j < g->kw; j++) {
            const int64_t off = 16 * c + g->pw - (int64_t)j * g->dw;
            take[c][j] = in_row[c] & span(0, -off, OW - off);
        }
    }
    /* input rows this tile's windows reach */
    int64_t ih_lo = oh0 * g->sh - g->ph, ih_hi = (oh1 - 1) * g->sh - g->ph + (int64_t)(g->kh - 1) * g->dh + 1;
    if (ih_lo < 0) ih_lo = 0;
    if (ih_hi > g->H) ih_hi = g->H;
    for (int64_t ih = ih_lo; ih < ih_hi; ih++)
        for (int64_t c = 0; c < nc; c++) {
            const int64_t iw = 16 * c;
            __m512 acc = _mm512_maskz_loadu_ps(in_row[c], dx + ih * W + iw);
            for (int i = 0; i < g->kh; i++) {
                const int64_t r = ih + g->ph - (int64_t)i * g->dh;   /* = oh * sh */
                if (r < 0 || r % g->sh) continue;
                const int64_t t = r / g->sh - oh0;
                if (t < 0 || t >= rows) continue;
                const float *src = col + ((int64_t)i * g->kw * rows + t) * OW + iw + g->pw;
                for (int j = 0; j < g->kw; j++, src += rows * OW - g->dw) {
                    const __mmask16 k = take[c][j];
                    acc = _mm512_mask_add_ps(acc, k, acc, _mm512_maskz_loadu_ps(k, src));
                }
            }
            _mm512_mask_storeu_ps(dx + ih * W + iw, in_row[c], acc);
        }
}

const nb__im2col_kernels nb__im2col_avx512 = {im2col, col2im};

#else
/* Not built for AVX-512 (another compiler's flags, another CPU family). */
const nb__im2col_kernels nb__im2col_avx512 = {0, 0};
#endif
