/* 2-D convolution (torch.nn.functional.conv2d), forward and backward, NCHW.
 *
 * Per sample n and group g (Cg = C/groups input channels, Og = O/groups
 * outputs, K = Cg*kh*kw, P = OH*OW output pixels):
 *   forward   Y[n,g] (Og x P)  = W[g] (Og x K) @ col(X[n,g]) (K x P) + b
 *   data      dcol   (K x P)   = W[g]^T @ dY[n,g];  dX[n,g] += col2im(dcol)
 *   weights   dW[g]  (Og x K) += dY[n,g] @ col(X[n,g])^T
 *   bias      db[o]           += sum over n and pixels of dY[n,o]
 * all on nb_gemm. The column matrix, by shape:
 *  - 1x1, stride 1, no padding: X[n,g] is already the K x P matrix.
 *  - otherwise im2col, one tile of output rows at a time, so the column
 *    buffer (K x tile, CV_TILE_FLOATS) stays in L2 and the workspace is
 *    bounded whatever the batch. With stride 1 and OW == W ("same"
 *    padding) a kernel tap's rows are one shifted span of the input plane:
 *    one copy (or one add, for col2im) per tap and channel instead of one
 *    per row, which made im2col/col2im about 3x cheaper. With a width
 *    stride of 1 and AVX-512, src/kernels/im2col_avx512.c does better
 *    still (the same bits): one masked load and store per row for im2col,
 *    and col2im as a gather that stores each input row once (a scatter
 *    re-reads, tap after tap, the overlapping spans it has just stored: 2x
 *    slower); together half the time of the span copies in a profile of
 *    the CNN's training.
 *  - depthwise (groups > 1, one input channel each): direct loops; the
 *    GEMMs would be (O/groups) x P x (kh*kw).
 *  - one-channel images (C = 1, stride 1, dilation 1, up to 5x5), the
 *    first layer of image models: direct AVX-512 kernels
 *    (src/kernels/conv_direct_avx512.c) for the forward and the weight and
 *    bias gradients, where im2col would copy the image kh*kw times for a
 *    GEMM with K = kh*kw; the data gradient stays on im2col.
 *  - 3x3, stride 1, dilation 1, one group, padding <= 2, enough channels:
 *    Winograd F(2x2, 3x3) (src/kernels/winograd.c): 16 multiplies per 2x2
 *    outputs and input channel where im2col has 36. The forward, the data
 *    gradient (a convolution of dY with the rotated kernel, padding 2 - p)
 *    and the weight gradient (summed in Winograd's space, then mapped back
 *    by G^T dU G). Measured with 1 thread on a shared machine (best of 40,
 *    forward / backward): the CNN's 32->64 14x14 layer, batch 64, 3.8 / 11.0
 *    ms on im2col, 2.4 / 6.2 ms; 64->64 28x28, 97 / 179 ms against 42 /
 *    113 ms; the VGG layer 64->64 56x56, batch 32, 119 / 315 against 68 /
 *    167 ms (there the weight gradient on im2col or Winograd is a tie).
 * The bias is written with the output (the GEMM adds onto it). Measured on
 * bench/bench_conv.c and not kept: "shifted GEMMs" (kh*kw GEMMs with
 * K = channels over views of one zero-padded copy of the input rows, no
 * im2col) ran at the same speed as the tiled im2col on the 64->64 56x56 and
 * 32->64 14x14 layers; tiles of 96K and 384K floats were slower than 256K.
 *
 * Threads: the work is split into items (forward: (sample, tile) pairs,
 * whose outputs are disjoint; data gradient: samples, which own their slice
 * of dX, since col2im tiles overlap; with both gradients and one tile per
 * sample, a sample's data and weight gradients run back to back on one
 * thread while its dY is in cache). With enough items each thread runs
 * whole items with single-threaded GEMMs; otherwise items run one after
 * another with threaded GEMMs and im2col/col2im split over channels.
 * nb_gemm gives the same bits for any thread count and each output element
 * sees the same sequence of operations either way, so the results do not
 * depend on the thread count. The weight and bias gradients sum over items:
 * items are cut into `parts` contiguous ranges, a number fixed by the shape
 * alone (never by the thread count); each range accumulates into its own
 * buffer (range 0 straight into the gradient) and the buffers are added in
 * order at the end. */
#include "../core/internal.h"
#include "../kernels/conv_direct.h"
#include "batchnorm.h"
#include "../kernels/im2col.h"
#include "../kernels/winograd.h"
#include "../kernels/simd.h"
#include "prefetch.h"
#include <limits.h>

#ifndef CV_TILE_FLOATS
#define CV_TILE_FLOATS  (256 * 1024)    /* column buffer per thread (K x tile) */
#endif
#define CV_PAR_FLOPS    2.0e6           /* below this, everything on one thread */
#define CV_INNER_MIN    32768           /* floats of im2col work worth a fork */
#define CV_PARTS_MAX    8               /* weight-gradient partial sums */
#define CV_WG_PARTS_MAX 16              /* the same for Winograd's (measured: the CNN's
                                           main thread waited 6% of its time with 10 runs
                                           of 2 chunks, 7-12% with 8 runs of 2 or 3) */
#define CV_PARTS_BYTES  (32u << 20)     /* their memory, at most */

typedef struct {
    int64_t N, C, H, W, O, OH, OW;
    int kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int64_t Cg, Og, K, P;   /* K = Cg*kh*kw, P = OH*OW */
    int pointwise;          /* 1x1, stride 1, no padding: no im2col */
    int depthwise;          /* groups > 1, Cg == 1: direct loops */
    int direct;             /* C == 1 image: the conv_direct kernels */
    int wino;               /* Winograd forward and gradients */
    nb__cd_geom cd;         /* their geometry */
    int64_t rows, ntiles;   /* output rows per tile, tiles per sample */
} cv_geom;

typedef struct {
    cv_geom g;
    const float *x, *w;     /* contiguous input and weight (tensors or copies) */
} cv_saved;

/* ---- im2col / col2im on one tile of output rows ---------------------------- */

/* Rows [*t0, *t1) of a tile (output rows oh0 + t) whose input row
 * (oh0 + t)*sh - ph + i*dh lies inside the input. */
static void valid_rows(const cv_geom *g, int64_t oh0, int64_t oh1, int i, int64_t *t0, int64_t *t1)
{
    const int64_t base = oh0 * g->sh - g->ph + (int64_t)i * g->dh; /* input row of t = 0 */
    int64_t lo = base >= 0 ? 0 : (-base + g->sh - 1) / g->sh;
    int64_t hi = g->H - 1 - base >= 0 ? (g->H - 1 - base) / g->sh + 1 : 0;
    if (hi > oh1 - oh0) hi = oh1 - oh0;
    if (lo > hi) lo = hi;
    *t0 = lo;
    *t1 = hi;
}

/* Stride 1 with OW == W ("same" width): a col row is the input plane shifted
 * by one offset, so rows t0..t1 are one contiguous span; only the padded
 * columns at the left or right edge need fixing. */
static int flat_rows(const cv_geom *g) { return g->sh == 1 && g->sw == 1 && g->OW == g->W; }

/* col rows of input channels [c0, c1) for output rows [oh0, oh1):
 * col[((c*kh + i)*kw + j)][(oh - oh0)*OW + ow] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw]
 * (0 outside the input). x is one group of one sample: (Cg, H, W). */
NB_CLONES static void im2col(const cv_geom *g, const float *x, int64_t c0, int64_t c1, int64_t oh0,
                          int64_t oh1, float *col)
{
    const int64_t OW = g->OW, H = g->H, W = g->W, pt = (oh1 - oh0) * OW;
    const int flat = flat_rows(g);
    for (int64_t c = c0; c < c1; c++)
        for (int i = 0; i < g->kh; i++) {
            int64_t t0, t1;
            valid_rows(g, oh0, oh1, i, &t0, &t1);
            const int64_t ih0 = oh0 * g->sh - g->ph + (int64_t)i * g->dh; /* input row of t = 0 */
            for (int j = 0; j < g->kw; j++) {
                float *dst = col + ((c * g->kh + i) * g->kw + j) * pt;
                const int64_t off = (int64_t)j * g->dw - g->pw;
                int64_t lo, hi;
                nb__conv_span(OW, W, g->sw, off, &lo, &hi);
                memset(dst, 0, (size_t)(t0 * OW) * sizeof(float));
                memset(dst + t1 * OW, 0, (size_t)((oh1 - oh0 - t1) * OW) * sizeof(float));
                if (flat && t1 > t0) {
                    /* dst[k] = plane[ih0*W + off + k] for k in rows t0..t1, clipped to the plane */
                    const float *plane = x + c * H * W;
                    int64_t k0 = t0 * OW, k1 = t1 * OW;
                    const int64_t shift = ih0 * W + off;
                    if (shift + k0 < 0) k0 = -shift;
                    if (shift + k1 > H * W) k1 = H * W - shift;
                    if (k1 > k0) memcpy(dst + k0, plane + shift + k0, (size_t)(k1 - k0) * sizeof(float));
                    for (int64_t t = t0; t < t1; t++) {
                        for (int64_t ow = 0; ow < lo; ow++) dst[t * OW + ow] = 0.0f;
                        for (int64_t ow = hi; ow < OW; ow++) dst[t * OW + ow] = 0.0f;
                    }
                    continue;
                }
                for (int64_t t = t0; t < t1; t++) {
                    float *d = dst + t * OW;
                    const float *src = x + (c * H + ih0 + t * g->sh) * W;
                    for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                    if (g->sw == 1)
                        memcpy(d + lo, src + lo + off, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int64_t ow = lo; ow < hi; ow++) d[ow] = src[ow * g->sw + off];
                    for (int64_t ow = hi; ow < OW; ow++) d[ow] = 0.0f;
                }
            }
        }
}

/* The adjoint: dx[c][ih][iw] += col[...] for the same index map. Channels
 * own disjoint planes of dx, so channel ranges may run in parallel. The
 * flat path zeroes col's padded columns first (it owns the buffer) so one
 * contiguous add covers whole rows. */
NB_CLONES static void col2im(const cv_geom *g, float *col, int64_t c0, int64_t c1, int64_t oh0, int64_t oh1,
                          float *dx)
{
    const int64_t OW = g->OW, H = g->H, W = g->W, pt = (oh1 - oh0) * OW;
    const int flat = flat_rows(g);
    for (int64_t c = c0; c < c1; c++)
        for (int i = 0; i < g->kh; i++) {
            int64_t t0, t1;
            valid_rows(g, oh0, oh1, i, &t0, &t1);
            const int64_t ih0 = oh0 * g->sh - g->ph + (int64_t)i * g->dh;
            for (int j = 0; j < g->kw; j++) {
                float *src = col + ((c * g->kh + i) * g->kw + j) * pt;
                const int64_t off = (int64_t)j * g->dw - g->pw;
                int64_t lo, hi;
                nb__conv_span(OW, W, g->sw, off, &lo, &hi);
                if (flat && t1 > t0) {
                    float *restrict plane = dx + c * H * W;
                    int64_t k0 = t0 * OW, k1 = t1 * OW;
                    const int64_t shift = ih0 * W + off;
                    for (int64_t t = t0; t < t1; t++) {
                        for (int64_t ow = 0; ow < lo; ow++) src[t * OW + ow] = 0.0f;
                        for (int64_t ow = hi; ow < OW; ow++) src[t * OW + ow] = 0.0f;
                    }
                    if (shift + k0 < 0) k0 = -shift;
                    if (shift + k1 > H * W) k1 = H * W - shift;
                    if (k1 > k0) {
                        float *restrict d = plane + shift + k0;
                        const float *restrict sv = src + k0;
                        for (int64_t k = 0; k < k1 - k0; k++) d[k] += sv[k];
                    }
                    continue;
                }
                for (int64_t t = t0; t < t1; t++) {
                    float *restrict d = dx + (c * H + ih0 + t * g->sh) * W;
                    const float *restrict sv = src + t * OW;
                    if (g->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) d[ow + off] += sv[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) d[ow * g->sw + off] += sv[ow];
                }
            }
        }
}

static int simd_on = 1, wino_on = 1;

/* Test hook: 0 keeps every convolution on the portable im2col loops and the
 * GEMM (no direct kernels); returns the previous setting. */
int nb__conv_use_simd(int on)
{
    int old = simd_on;
    simd_on = on != 0;
    return old;
}

/* Test hook: 0 keeps 3x3 convolutions off Winograd; returns the previous
 * setting. */
int nb__conv_use_winograd(int on)
{
    int old = wino_on;
    wino_on = on != 0;
    return old;
}

/* The AVX-512 row kernels (src/kernels/im2col_avx512.c) when the width
 * stride is 1 and the CPU has them: the same bits, without a call per row. */
static const nb__im2col_kernels *row_kernels(const cv_geom *g)
{
    if (simd_on && g->sw == 1 && g->kw <= 16 && g->OW <= 1024 && g->W <= 1024 && nb__im2col_avx512.im2col &&
        nb__cpu_avx512())
        return &nb__im2col_avx512;
    return NULL;
}

static nb__im2col_geom row_geom(const cv_geom *g)
{
    return (nb__im2col_geom){g->H, g->W, g->OW, g->kh, g->kw, g->sh, g->ph, g->pw, g->dh, g->dw};
}

/* One tile's im2col (x into col) or col2im (col into dx), channel by channel. */
typedef struct {
    const cv_geom *g;
    const nb__im2col_kernels *K;    /* NULL: the portable loops */
    nb__im2col_geom rg;
    const float *x;
    float *col, *dx;
    int64_t oh0, oh1, plane, taps;  /* floats of a channel's plane and of its col rows */
} col_job;

static col_job col_job_init(const cv_geom *g, int64_t oh0, int64_t oh1)
{
    return (col_job){.g = g, .K = row_kernels(g), .rg = row_geom(g), .oh0 = oh0, .oh1 = oh1,
                     .plane = g->H * g->W, .taps = (int64_t)g->kh * g->kw * (oh1 - oh0) * g->OW};
}

static void im2col_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const col_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) {
        if (j->K) j->K->im2col(&j->rg, j->x + c * j->plane, j->oh0, j->oh1, j->col + c * j->taps);
        else im2col(j->g, j->x, c, c + 1, j->oh0, j->oh1, j->col);
    }
}

static void col2im_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const col_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) {
        if (j->K) j->K->col2im(&j->rg, j->col + c * j->taps, j->oh0, j->oh1, j->dx + c * j->plane);
        else col2im(j->g, j->col, c, c + 1, j->oh0, j->oh1, j->dx);
    }
}

/* im2col / col2im of a whole group's channels, split over threads when par. */
static void im2col_all(const cv_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col, int par)
{
    col_job j = col_job_init(g, oh0, oh1);
    j.x = x;
    j.col = col;
    nb__par_for(g->Cg, nb__par_parts(g->Cg, par), im2col_channels, &j);
}

static void col2im_all(const cv_geom *g, float *col, int64_t oh0, int64_t oh1, float *dx, int par)
{
    col_job j = col_job_init(g, oh0, oh1);
    j.col = col;
    j.dx = dx;
    nb__par_for(g->Cg, nb__par_parts(g->Cg, par), col2im_channels, &j);
}

/* ---- scheduling --------------------------------------------------------------- */

/* The threads a loop may use here: 1 inside a task of the pool. */
static int cv_max_threads(void)
{
    return nb__par_parts(NB__POOL_MAX_THREADS, 1);
}

/* Threads to run `items` equal items on, one item per thread at a time; 1
 * means one by one (each GEMM then threads itself). Items go to threads
 * when the split is within 25% of even. */
static int items_threads(int64_t items, double flops)
{
    int nth = cv_max_threads();
    if (nth < 2 || items < 2 || flops < CV_PAR_FLOPS) return 1;
    if (items < nth) nth = (int)items;
    int64_t per = (items + nth - 1) / nth;
    return per * nth * 4 <= items * 5 ? nth : 1;
}

/* Fetch sample n + 1's input while sample n is worked on (its planes are
 * read in an order the hardware prefetchers do not follow). */
static void next_sample(const cv_geom *g, const float *x, int64_t n)
{
    const int64_t len = g->C * g->H * g->W;
    if (n + 1 < g->N) nb__prefetch(x + (n + 1) * len, (size_t)len * sizeof(float));
}

/* Rows [*oh0, *oh1) of tile t. */
static void tile_rows(const cv_geom *g, int64_t t, int64_t *oh0, int64_t *oh1)
{
    *oh0 = t * g->rows;
    *oh1 = *oh0 + g->rows < g->OH ? *oh0 + g->rows : g->OH;
}

static int64_t col_floats(const cv_geom *g)
{
    return g->pointwise || g->depthwise ? 0 : g->K * g->rows * g->OW;
}

/* ---- depthwise: direct loops ----------------------------------------------------
 * One input channel per group; each output channel o reads channel
 * o / (O/C). Loops run over output rows with the taps outside, so the inner
 * loop is a scaled add along a row. */

/* y[oh][ow] (+)= sum_ij w[i][j] x[oh*sh - ph + i*dh][ow*sw - pw + j*dw] on one plane. */
NB_CLONES static void dw_forward_plane(const cv_geom *g, const float *x, const float *w, float bias, float *y)
{
    const int64_t OW = g->OW, H = g->H, W = g->W;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *restrict yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = bias;
        for (int i = 0; i < g->kh; i++) {
            const int64_t ih = oh * g->sh - g->ph + (int64_t)i * g->dh;
            if (ih < 0 || ih >= H) continue;
            const float *restrict xr = x + ih * W;
            for (int j = 0; j < g->kw; j++) {
                const float wv = w[i * g->kw + j];
                const int64_t off = (int64_t)j * g->dw - g->pw;
                int64_t lo, hi;
                nb__conv_span(OW, W, g->sw, off, &lo, &hi);
                if (g->sw == 1)
                    for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow + off];
                else
                    for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * g->sw + off];
            }
        }
    }
}

/* The planes of a depthwise convolution: forward (x, w, bias b with stride
 * bs into y) or data gradient (w, dy into dx, zeroed first when fresh). */
typedef struct {
    const cv_geom *g;
    const float *x, *w, *b, *dy;
    int64_t bs;
    float *y, *dx;
    int fresh;
} dw_job;

/* Planes q = n*O + o of y. */
static void dw_forward_planes(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const dw_job *j = ctx;
    const cv_geom *g = j->g;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t n = q / g->O, o = q % g->O;
        dw_forward_plane(g, j->x + (n * g->C + o / g->Og) * g->H * g->W, j->w + o * g->kh * g->kw,
                         j->b ? j->b[o * j->bs] : 0.0f, j->y + q * g->P);
    }
}

/* dx += w (*) dy and dw += x (*) dy on one plane (either may be NULL). */
NB_CLONES static void dw_backward_plane(const cv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                                     float *dwt)
{
    const int64_t OW = g->OW, H = g->H, W = g->W;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *restrict gr = dy + oh * OW;
        for (int i = 0; i < g->kh; i++) {
            const int64_t ih = oh * g->sh - g->ph + (int64_t)i * g->dh;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < g->kw; j++) {
                const int64_t off = (int64_t)j * g->dw - g->pw;
                int64_t lo, hi;
                nb__conv_span(OW, W, g->sw, off, &lo, &hi);
                if (dx) {
                    const float wv = w[i * g->kw + j];
                    float *restrict d = dx + ih * W;
                    if (g->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) d[ow + off] += wv * gr[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) d[ow * g->sw + off] += wv * gr[ow];
                }
                if (dwt) {
                    const float *restrict xr = x + ih * W;
                    float s = 0.0f;
                    if (g->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) s += xr[ow + off] * gr[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) s += xr[ow * g->sw + off] * gr[ow];
                    dwt[i * g->kw + j] += s;
                }
            }
        }
    }
}

/* ---- one-channel images: direct kernels ------------------------------------------ */

static const nb__conv_direct_kernels *direct_kernels(void)
{
    if (simd_on && nb__conv_direct_avx512.forward && nb__cpu_avx512()) return &nb__conv_direct_avx512;
    return NULL;
}

static int direct_fits(const cv_geom *g)
{
    return g->C == 1 && g->groups == 1 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
           g->kh * g->kw <= NB__CD_TAPS_MAX && g->kw <= 16 && direct_kernels();
}

/* Per-thread padded planes, zeroed (the kernels only rewrite their interior). */
static float *direct_pads(nb_ctx *ctx, const cv_geom *g, int nth)
{
    const int64_t pf = nb__cd_pad_floats(&g->cd);
    float *pads = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(pf * nth) * sizeof(float));
    if (pads) memset(pads, 0, (size_t)(pf * nth) * sizeof(float));
    return pads;
}

/* Samples of a one-channel convolution (forward: x, w, bias into y) or
 * runs of them (weight gradient: x, dy into acc, a partial sum per run),
 * the tasks of a shared loop (see wino_job); each thread has its padded
 * plane, pads + nb__pool_slot() * pf. */
typedef struct {
    const cv_geom *g;
    const nb__conv_direct_kernels *K;
    const float *x, *w, *bias, *dy;
    float *y, *acc, *pads;
    int64_t pf, accf, parts;
} direct_job;

static void direct_samples(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const direct_job *j = ctx;
    const cv_geom *g = j->g;
    float *pad = j->pads + nb__pool_slot() * j->pf;
    for (int64_t n = lo; n < hi; n++)
        j->K->forward(&g->cd, j->x + n * g->H * g->W, j->w, j->bias, j->y + n * g->O * g->P, pad);
}

/* Runs p of samples, each summed into its own acc + p * accf. */
static void direct_weight_runs(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const direct_job *j = ctx;
    const cv_geom *g = j->g;
    float *pad = j->pads + nb__pool_slot() * j->pf;
    for (int64_t p = lo; p < hi; p++)
        for (int64_t n = g->N * p / j->parts; n < g->N * (p + 1) / j->parts; n++)
            j->K->weight_acc(&g->cd, j->x + n * g->H * g->W, j->dy + n * g->O * g->P, j->acc + p * j->accf, pad);
}

static void direct_forward(nb_ctx *ctx, const cv_geom *g, const float *x, const float *w, const float *b,
                           int64_t bs, float *y, int *ok)
{
    const nb__conv_direct_kernels *K = &nb__conv_direct_avx512;   /* g->direct: it is there */
    const double flops = 2.0 * (double)g->N * (double)g->O * (double)g->P * (double)g->K;
    const int nth = items_threads(g->N, flops);
    float *pads = direct_pads(ctx, g, nth);
    float *bc = b && bs != 1 ? nb_arena_alloc(nb_ctx_arena(ctx), (size_t)g->O * sizeof(float)) : NULL;
    if (!pads || (b && bs != 1 && !bc)) {
        *ok = 0;
        return;
    }
    if (bc)
        for (int64_t o = 0; o < g->O; o++) bc[o] = b[o * bs];
    direct_job j = {.g = g, .K = K, .x = x, .w = w, .bias = bc ? bc : b, .y = y, .pads = pads,
                    .pf = nb__cd_pad_floats(&g->cd)};
    nb__par_for_shared(g->N, g->N, nth, direct_samples, &j);
}

/* dw (O x kh*kw) and db (O), either NULL, += the sums over the batch:
 * `parts` runs of samples (fixed by the batch size) each summed in lanes
 * into its own buffer, then the buffers and lanes added in a fixed order. */
static nb_status direct_weight(nb_ctx *ctx, const cv_geom *g, const float *x, const float *dy, float *dw, float *db)
{
    const nb__conv_direct_kernels *K = &nb__conv_direct_avx512;   /* g->direct: it is there */
    const int T = g->kh * g->kw;
    const int64_t parts = g->N < CV_PARTS_MAX ? g->N : CV_PARTS_MAX, pf = nb__cd_pad_floats(&g->cd);
    const int64_t accf = (g->O + NB__CD_OB - 1) / NB__CD_OB * NB__CD_OB * (T + 1) * NB__CD_LANES;
    const double flops = 2.0 * (double)g->N * (double)g->O * (double)g->P * (double)g->K;
    const int nth = items_threads(parts, flops);
    float *acc = nb_arena_calloc(nb_ctx_arena(ctx), (size_t)(accf * parts) * sizeof(float));
    float *pads = direct_pads(ctx, g, nth);
    if (!acc || !pads) return nb__fail(NB_ERR_NOMEM, "conv2d backward: out of memory for partial sums");
    direct_job j = {.g = g, .K = K, .x = x, .dy = dy, .acc = acc, .pads = pads, .pf = pf, .accf = accf,
                    .parts = parts};
    nb__par_for_shared(parts, parts, nth, direct_weight_runs, &j);
    for (int64_t o = 0; o < g->O; o++)
        for (int t = 0; t <= T; t++) {
            float lane[NB__CD_LANES];
            for (int l = 0; l < NB__CD_LANES; l++) {
                lane[l] = 0.0f;
                for (int64_t p = 0; p < parts; p++) lane[l] += acc[p * accf + (o * (T + 1) + t) * NB__CD_LANES + l];
            }
            const float sum = nb__sum_lanes16(lane);
            if (t < T && dw) dw[o * T + t] += sum;
            if (t == T && db) db[o] += sum;
        }
    return NB_OK;
}

/* ---- Winograd F(2x2, 3x3) -------------------------------------------------------- */

/* Channels below which the transforms cost more than the GEMMs save. */
#define CV_WINO_MIN_C 16  /* measured: a tie at 8 */

static int wino_fits(const cv_geom *g)
{
    return wino_on && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
           g->groups == 1 && g->ph <= 2 && g->pw <= 2 && g->C >= CV_WINO_MIN_C && g->O >= CV_WINO_MIN_C &&
           !g->direct;
}

/* Winograd chunks: forward (U, x, bias b into y, added when add) or
 * weight gradient (runs p of chunks of x and dy, each into dU + p * us);
 * each thread has its workspace, ws + nb__pool_slot() * wsf. The chunks
 * (runs) are the tasks of a shared loop: a thread takes the next as it
 * finishes one, so a core that runs slower (another process on it, a
 * helper that starts late) holds up the step by one chunk at most; with
 * one range per thread the caller waited 20% of its time for the helper
 * in these loops (perf, bench_cnn). */
typedef struct {
    const nb__wg_geom *wg;
    const float *U, *x, *b, *dy;
    int add;
    float *y, *dU, *db, *ws;  /* db: the parts' bias gradients, O floats each */
    int64_t wsf, us, parts;
} wino_job;

static void wino_chunks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const wino_job *j = ctx;
    float *ws = j->ws + nb__pool_slot() * j->wsf;
    for (int64_t k = lo; k < hi; k++) nb__wg_chunk(j->wg, j->U, j->x, j->b, j->add, j->y, k, ws);
}

static void wino_grad_runs(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const wino_job *j = ctx;
    const int64_t nchunks = j->wg->nchunks, slot = nb__pool_slot();
    for (int64_t p = lo; p < hi; p++) {
        const int64_t k0 = nchunks * p / j->parts, k1 = nchunks * (p + 1) / j->parts;
        for (int64_t k = k0; k < k1; k++)
            nb__wg_chunk_grad(j->wg, j->x, j->dy, k == k0, j->dU + p * j->us, j->db ? j->db + p * j->wg->O : NULL,
                              k, j->ws + slot * j->wsf);
    }
}

typedef struct {
    const float *w;
    int64_t O, C;
    int flip;
    float *U;
} wg_weights_job;

/* U's rows [lo, hi) (see nb__wg_weights). On one thread, the CNN's 32 -> 64
 * layer spent about 25 us a call here with the other thread idle (perf). */
static void wg_weights_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const wg_weights_job *j = ctx;
    nb__wg_weights(j->w, j->O, j->C, j->flip, lo, hi, j->U);
}

/* y (N, Co, ...) = conv of x (N, Ci, Hi, Wi) with padding (ph, pw): the
 * forward (flip = 0, w is (Co, Ci, 3, 3)) or the data gradient (flip = 1,
 * w is (Ci, Co, 3, 3), the layer's own weight); add: y += instead of =.
 * Chunks go to threads, each with its own workspace. */
static int wino_run(nb_ctx *ctx, int64_t N, int64_t Ci, int64_t Hi, int64_t Wi, int64_t Co, int ph, int pw,
                    const float *x, const float *w, int flip, const float *b, int64_t bs, int add, float *y)
{
    nb__wg_geom wg;
    if (!nb__wg_init(&wg, N, Ci, Hi, Wi, Co, ph, pw)) return 1;
    const double flops = 2.0 * (double)N * (double)Co * (double)(wg.OH * wg.OW) * (double)(Ci * 9);
    const int nth = items_threads(wg.nchunks, flops);
    const int64_t wsf = nb__wg_ws_floats(&wg);
    nb_arena *ar = nb_ctx_arena(ctx);
    float *U = nb_arena_alloc(ar, (size_t)nb__wg_u_floats(Co, Ci) * sizeof(float));
    float *ws = nb_arena_alloc(ar, (size_t)(wsf * nth) * sizeof(float));
    float *bc = b && bs != 1 ? nb_arena_alloc(ar, (size_t)Co * sizeof(float)) : NULL;
    if (!U || !ws || (b && bs != 1 && !bc)) return 0;
    if (bc)
        for (int64_t o = 0; o < Co; o++) bc[o] = b[o * bs];
    wg_weights_job wj = {w, flip ? Ci : Co, flip ? Co : Ci, flip, U};
    nb__par_for_balanced(Ci, nth > 1, wg_weights_range, &wj); /* Ci: the cols either way */
    wino_job j = {.wg = &wg, .U = U, .x = x, .b = bc ? bc : b, .add = add, .y = y, .ws = ws, .wsf = wsf};
    nb__par_for_shared(wg.nchunks, wg.nchunks, nth, wino_chunks, &j);
    return 1;
}

typedef struct {
    const cv_geom *g;
    const float *dy;
    float *db;
} bias_grad_job;

/* db[o] += the sum of dy's planes of channel o, sample by sample. */
static void bias_grad_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bias_grad_job *j = ctx;
    const cv_geom *g = j->g;
    for (int64_t o = lo; o < hi; o++)
        for (int64_t n = 0; n < g->N; n++) j->db[o] += nb__sum16(j->dy + (n * g->O + o) * g->P, g->P);
}

/* Kernels [lo, hi) of the weight gradient back from Winograd's space. */
typedef struct {
    const float *dU;
    int64_t parts, O, C;
    float *dw;
} wg_kernel_job;

/* parts x O x C (each of the O x C kernels reads `parts` times 16 floats of
 * dU) from which the transform back is worth threads: on one thread it
 * was 0.9% of the CNN's training step (its conv2: 64 x 32 kernels). */
#define CV_WG_KERNELS_PAR 4096

static void wg_kernels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const wg_kernel_job *k = ctx;
    nb__wg_weight_grad(k->dU, k->parts, k->O, k->C, lo, hi, k->dw);
}

/* dw (O, C, 3, 3) += the weight gradient in Winograd's space (see
 * nb__wg_chunk_grad), db (O) += the sums of dY (either may be NULL):
 * `parts` runs of chunks, a number fixed by the shape, each summed into
 * its own dU and its own db, the parts then added in order. The bias
 * gradient alone (a frozen weight) takes its own pass over dY. */
static nb_status wino_weight(nb_ctx *ctx, const cv_geom *g, const float *x, const float *dy, float *dw, float *db)
{
    if (!dw) {
        if (db) {
            bias_grad_job j = {g, dy, db};
            nb__par_for(g->O, nb__par_parts(g->O, g->N * g->O * g->P >= CV_INNER_MIN), bias_grad_channels, &j);
        }
        return NB_OK;
    }
    nb__wg_geom wg;
    if (!nb__wg_init(&wg, g->N, g->C, g->H, g->W, g->O, g->ph, g->pw)) return NB_OK;
    const int64_t us = nb__wg_u_floats(g->O, g->C), wsf = nb__wg_ws_floats(&wg);
    /* runs of equal length as far as can be, at most CV_WG_PARTS_MAX: the
     * threads share them as tasks (the CNN's 20 chunks: 10 runs of 2) */
    const int64_t per = (wg.nchunks + CV_WG_PARTS_MAX - 1) / CV_WG_PARTS_MAX;
    int64_t parts = (wg.nchunks + per - 1) / per;
    while (parts > 1 && (uint64_t)parts * (uint64_t)us * sizeof(float) > CV_PARTS_BYTES) parts--;
    const double flops = 2.0 * (double)g->N * (double)g->O * (double)g->P * (double)g->K;
    const int nth = items_threads(parts, flops);
    nb_arena *ar = nb_ctx_arena(ctx);
    float *dU = nb_arena_alloc(ar, (size_t)(us * parts) * sizeof(float));
    float *ws = nb_arena_alloc(ar, (size_t)(wsf * nth) * sizeof(float));
    float *dbp = db ? nb_arena_alloc(ar, (size_t)(g->O * parts) * sizeof(float)) : NULL;
    if (!dU || !ws || (db && !dbp))
        return nb__fail(NB_ERR_NOMEM, "conv2d backward: out of memory for the Winograd workspace");
    wino_job j = {.wg = &wg, .x = x, .dy = dy, .dU = dU, .db = dbp, .ws = ws, .wsf = wsf, .us = us, .parts = parts};
    nb__par_for_shared(parts, parts, nth, wino_grad_runs, &j);
    if (db)
        for (int64_t p = 0; p < parts; p++)
            for (int64_t o = 0; o < g->O; o++) db[o] += dbp[p * g->O + o];
    wg_kernel_job k = {dU, parts, g->O, g->C, dw};
    nb__par_for_balanced(g->O * g->C, parts * g->O * g->C >= CV_WG_KERNELS_PAR, wg_kernels, &k);
    return NB_OK;
}

/* ---- forward ------------------------------------------------------------------ */

/* rows x n block of y (row stride ld): row o = b[o * bs]. */
NB_CLONES static void fill_bias(float *y, int64_t rows, int64_t n, int64_t ld, const float *b, int64_t bs)
{
    for (int64_t o = 0; o < rows; o++) {
        const float bv = b[o * bs];
        float *restrict r = y + o * ld;
        for (int64_t p = 0; p < n; p++) r[p] = bv;
    }
}

/* Output rows [oh0, oh1) of sample n, every group. col: this thread's buffer. */
static void fw_tile(const cv_geom *g, const float *x, const float *w, const float *b, int64_t bs, float *y,
                    int64_t n, int64_t oh0, int64_t oh1, float *col, int par)
{
    const int64_t P = g->P, p0 = oh0 * g->OW, pt = (oh1 - oh0) * g->OW;
    if (oh0 == 0) next_sample(g, x, n);
    for (int64_t gi = 0; gi < g->groups; gi++) {
        const float *xg = x + (n * g->C + gi * g->Cg) * g->H * g->W;
        float *yg = y + (n * g->O + gi * g->Og) * P + p0;
        if (b) /* the bias goes in first; the GEMM adds to it */
            fill_bias(yg, g->Og, pt, P, b + gi * g->Og * bs, bs);
        const float *B = xg + p0;
        int64_t ldb = P;
        if (!g->pointwise) {
            im2col_all(g, xg, oh0, oh1, col, par);
            B = col;
            ldb = pt;
        }
        nb_gemm(0, 0, (int)g->Og, (int)pt, (int)g->K, 1.0f, w + gi * g->Og * g->K, (int)g->K, B, (int)ldb,
                b ? 1.0f : 0.0f, yg, (int)P);
    }
}

/* Items (sample, tile) of the forward, each thread with its column buffer
 * ws + slot * cf. */
typedef struct {
    const cv_geom *g;
    const float *x, *w, *b;
    int64_t bs, cf;
    float *y, *ws;
} tile_job;

static void fw_tiles(void *ctx, int64_t lo, int64_t hi, int slot)
{
    const tile_job *j = ctx;
    const cv_geom *g = j->g;
    for (int64_t it = lo; it < hi; it++) {
        int64_t oh0, oh1;
        tile_rows(g, it % g->ntiles, &oh0, &oh1);
        fw_tile(g, j->x, j->w, j->b, j->bs, j->y, it / g->ntiles, oh0, oh1, j->ws ? j->ws + slot * j->cf : NULL, 0);
    }
}

static void conv_forward(nb_ctx *ctx, const cv_geom *g, const float *x, const float *w, const float *b,
                         int64_t bs, float *y, int *ok)
{
    const double flops = 2.0 * (double)g->N * (double)g->O * (double)g->P * (double)g->K;
    if (g->direct) {
        direct_forward(ctx, g, x, w, b, bs, y, ok);
        return;
    }
    if (g->wino) {
        *ok = wino_run(ctx, g->N, g->C, g->H, g->W, g->O, g->ph, g->pw, x, w, 0, b, bs, 0, y);
        return;
    }
    if (g->depthwise) {
        const int64_t planes = g->N * g->O;
        dw_job j = {.g = g, .x = x, .w = w, .b = b, .bs = bs, .y = y};
        nb__par_for(planes, nb__par_parts(planes, items_threads(planes, flops) > 1), dw_forward_planes, &j);
        return;
    }
    const int64_t items = g->N * g->ntiles, cf = col_floats(g);
    const int nth = items_threads(items, flops);
    float *ws = cf ? nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(cf * nth) * sizeof(float)) : NULL;
    if (cf && !ws) {
        *ok = 0;
        return;
    }
    if (nth > 1) {
        tile_job j = {.g = g, .x = x, .w = w, .b = b, .bs = bs, .cf = cf, .y = y, .ws = ws};
        nb__par_for(items, nth, fw_tiles, &j);
    } else {
        const int inner = cv_max_threads() > 1 && g->K * g->rows * g->OW >= CV_INNER_MIN;
        for (int64_t it = 0; it < items; it++) {
            int64_t oh0, oh1;
            tile_rows(g, it % g->ntiles, &oh0, &oh1);
            fw_tile(g, x, w, b, bs, y, it / g->ntiles, oh0, oh1, ws, inner);
        }
    }
}

/* ---- validation and the op ---------------------------------------------------- */

static int64_t out_size(int64_t in, int pad, int dil, int k, int stride)
{
    int64_t span = in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

/* Fills g from the shapes and options, or records the failure. */
static int conv_geometry(nb_ctx *ctx, const nb_tensor *x, const nb_tensor *w, const nb_tensor *b,
                         const nb_conv2d_opts *opts, cv_geom *g)
{
    char sx[96], sw[96], sb[96];
    static const nb_conv2d_opts defaults = {{1, 1}, {0, 0}, {1, 1}, 1};
    const nb_conv2d_opts *o = opts ? opts : &defaults;
    if (x->ndim != 4) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: input must be 4-D (N, C, H, W), got %s",
                    nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    if (w->ndim != 4) {
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), got %s",
                    nb_shape_str(w, sw, sizeof sw));
        return 0;
    }
    for (int d = 0; d < 2; d++)
        if (o->stride[d] < 0 || o->padding[d] < 0 || o->dilation[d] < 0 || o->groups < 0) {
            nb__op_fail(ctx, NB_ERR_ARG,
                        "conv2d: negative option: stride=(%d, %d), padding=(%d, %d), dilation=(%d, %d), groups=%d",
                        o->stride[0], o->stride[1], o->padding[0], o->padding[1], o->dilation[0],
                        o->dilation[1], o->groups);
            return 0;
        }
    memset(g, 0, sizeof *g);
    g->sh = o->stride[0] ? o->stride[0] : 1;
    g->sw = o->stride[1] ? o->stride[1] : 1;
    g->ph = o->padding[0];
    g->pw = o->padding[1];
    g->dh = o->dilation[0] ? o->dilation[0] : 1;
    g->dw = o->dilation[1] ? o->dilation[1] : 1;
    g->groups = o->groups ? o->groups : 1;
    g->N = x->shape[0];
    g->C = x->shape[1];
    g->H = x->shape[2];
    g->W = x->shape[3];
    g->O = w->shape[0];
    nb_shape_str(x, sx, sizeof sx);
    nb_shape_str(w, sw, sizeof sw);
    if (g->O < 1 || w->shape[1] < 1 || w->shape[2] < 1 || w->shape[3] < 1) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: weight %s has an empty dimension", sw);
        return 0;
    }
    if (w->shape[2] > INT_MAX || w->shape[3] > INT_MAX) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: kernel of weight %s is too large", sw);
        return 0;
    }
    g->kh = (int)w->shape[2];
    g->kw = (int)w->shape[3];
    if (g->C % g->groups) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: input %s has %lld channels, not divisible by groups=%d", sx,
                    (long long)g->C, g->groups);
        return 0;
    }
    if (w->shape[1] * g->groups != g->C) {
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "conv2d: weight %s expects %lld input channels (%lld per group x groups=%d), input %s has %lld",
                    sw, (long long)(w->shape[1] * g->groups), (long long)w->shape[1], g->groups, sx,
                    (long long)g->C);
        return 0;
    }
    if (g->O % g->groups) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: weight %s has %lld output channels, not divisible by groups=%d",
                    sw, (long long)g->O, g->groups);
        return 0;
    }
    if (b && (b->ndim != 1 || b->shape[0] != g->O)) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: bias %s must be 1-D with out_channels = %lld entries (weight %s)",
                    nb_shape_str(b, sb, sizeof sb), (long long)g->O, sw);
        return 0;
    }
    g->OH = out_size(g->H, g->ph, g->dh, g->kh, g->sh);
    g->OW = out_size(g->W, g->pw, g->dw, g->kw, g->sw);
    if (g->OH < 1 || g->OW < 1) {
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "conv2d: output size %lldx%lld is too small (must be >= 1): input %s, kernel %dx%d, "
                    "stride=(%d, %d), padding=(%d, %d), dilation=(%d, %d)",
                    (long long)g->OH, (long long)g->OW, sx, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh,
                    g->dw);
        return 0;
    }
    g->Cg = g->C / g->groups;
    g->Og = g->O / g->groups;
    g->K = g->Cg * g->kh * g->kw;
    g->P = g->OH * g->OW;
    if (g->K > INT_MAX || g->P > INT_MAX || g->O > INT_MAX || g->H * g->W > INT_MAX) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv2d: input %s with weight %s is too large", sx, sw);
        return 0;
    }
    g->pointwise = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    g->depthwise = g->Cg == 1 && g->groups > 1 && !g->pointwise;
    g->direct = direct_fits(g);
    g->wino = wino_fits(g);
    if (g->direct) /* padded rows: the output row rounded up to 16, and room for kw - 1 more */
        g->cd = (nb__cd_geom){g->H, g->W, g->OH, g->OW, g->O, g->kh, g->kw, g->ph, g->pw, (g->OW + 15) / 16 * 16 + 16};
    if (g->pointwise) {
        g->rows = g->OH; /* x itself is the column matrix: no buffer to bound */
    } else {
        int64_t r = CV_TILE_FLOATS / (g->K * g->OW);
        g->rows = r < 1 ? 1 : r > g->OH ? g->OH : r;
    }
    g->ntiles = (g->OH + g->rows - 1) / g->rows;
    return 1;
}

const nb__conv_direct_kernels *nb__conv_direct_geometry(const nb_tensor *x, const nb_tensor *w, const nb_tensor *b,
                                                       const nb_conv2d_opts *opts, nb__cd_geom *cd)
{
    /* every case conv_geometry would refuse (and report) is refused here
     * first, silently: nb_conv2d reports it when the layers run */
    static const nb_conv2d_opts defaults = {{1, 1}, {0, 0}, {1, 1}, 1};
    const nb_conv2d_opts *o = opts ? opts : &defaults;
    if (!x || !w || x->ndim != 4 || w->ndim != 4 || x->shape[1] != 1 || w->shape[1] != 1 || w->shape[0] < 1 ||
        w->shape[2] < 1 || w->shape[3] < 1 || w->shape[2] * w->shape[3] > NB__CD_TAPS_MAX || o->groups < 0 ||
        o->groups > 1 || (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) || x->shape[2] * x->shape[3] > INT_MAX)
        return NULL;
    for (int d = 0; d < 2; d++)
        if (o->stride[d] < 0 || o->padding[d] < 0 || o->dilation[d] < 0 ||
            out_size(x->shape[2 + d], o->padding[d], o->dilation[d] ? o->dilation[d] : 1, (int)w->shape[2 + d],
                     o->stride[d] ? o->stride[d] : 1) < 1)
            return NULL;
    cv_geom g;
    if (!conv_geometry(NULL, x, w, b, opts, &g) || !g.direct) return NULL;
    *cd = g.cd;
    return direct_kernels();
}

nb_tensor *nb_conv2d(nb_ctx *ctx, nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv2d_opts *opts)
{
    nb_tensor *in[3] = {x, w, b};
    if (nb__any_null(in, 2)) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "conv2d: context is NULL");
    cv_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
    if (!s) return nb__op_fail(ctx, NB_ERR_NOMEM, "conv2d: out of memory");
    if (!conv_geometry(ctx, x, w, b, opts, &s->g)) return NULL;
    const cv_geom *g = &s->g;
    nb_tensor *out = nb_tensor_new(ctx, 4, (int64_t[]){g->N, g->O, g->OH, g->OW});
    if (!out) return NULL;
    s->x = nb__contiguous_data(ctx, x);
    s->w = nb__contiguous_data(ctx, w);
    if (!s->x || !s->w) return nb__op_fail(ctx, NB_ERR_NOMEM, "conv2d: out of memory");
    int ok = 1;
    if (g->N) conv_forward(ctx, g, s->x, s->w, b ? b->data : NULL, b ? b->stride[0] : 0, out->data, &ok);
    if (!ok) return nb__op_fail(ctx, NB_ERR_NOMEM, "conv2d: out of memory for the column buffer");
    nb__node *n = nb__record(ctx, NB__OP_CONV2D, out, in, b ? 3 : 2);
    if (n) n->saved = s;
    return out;
}

/* ---- backward ------------------------------------------------------------------ */

/* dX of sample n, every tile and group in order; fresh: dX's slice is
 * uninitialised (zeroed here, where it is about to be used). */
static void bw_data_sample(const cv_geom *g, const float *w, const float *dy, float *dx, int64_t n, float *col,
                           int par, int fresh)
{
    const int64_t P = g->P;
    if (fresh) memset(dx + n * g->C * g->H * g->W, 0, (size_t)(g->C * g->H * g->W) * sizeof(float));
    for (int64_t t = 0; t < g->ntiles; t++) {
        int64_t oh0, oh1;
        tile_rows(g, t, &oh0, &oh1);
        const int64_t p0 = oh0 * g->OW, pt = (oh1 - oh0) * g->OW;
        for (int64_t gi = 0; gi < g->groups; gi++) {
            const float *wg = w + gi * g->Og * g->K, *dyg = dy + (n * g->O + gi * g->Og) * P + p0;
            float *dxg = dx + (n * g->C + gi * g->Cg) * g->H * g->W;
            if (g->pointwise) {
                nb_gemm(1, 0, (int)g->K, (int)pt, (int)g->Og, 1.0f, wg, (int)g->K, dyg, (int)P, 1.0f, dxg + p0,
                        (int)P);
            } else {
                nb_gemm(1, 0, (int)g->K, (int)pt, (int)g->Og, 1.0f, wg, (int)g->K, dyg, (int)P, 0.0f, col,
                        (int)pt);
                col2im_all(g, col, oh0, oh1, dxg, par);
            }
        }
    }
}

/* Items [i0, i1) ((sample, tile) pairs) into dw (O x K) and db (O), either NULL. */
static void bw_weight_range(const cv_geom *g, const float *x, const float *dy, float *dw, float *db,
                            int64_t i0, int64_t i1, float *col, int par)
{
    const int64_t P = g->P;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t n = it / g->ntiles;
        int64_t oh0, oh1;
        tile_rows(g, it % g->ntiles, &oh0, &oh1);
        const int64_t p0 = oh0 * g->OW, pt = (oh1 - oh0) * g->OW;
        if (oh0 == 0) next_sample(g, x, n);
        for (int64_t gi = 0; gi < g->groups; gi++) {
            const float *xg = x + (n * g->C + gi * g->Cg) * g->H * g->W;
            const float *dyg = dy + (n * g->O + gi * g->Og) * P + p0;
            if (db)
                for (int64_t o = 0; o < g->Og; o++) db[gi * g->Og + o] += nb__sum16(dyg + o * P, pt);
            if (!dw) continue;
            const float *B = xg + p0;
            int64_t ldb = P;
            if (!g->pointwise) {
                im2col_all(g, xg, oh0, oh1, col, par);
                B = col;
                ldb = pt;
            }
            nb_gemm(0, 1, (int)g->Og, (int)g->K, (int)pt, 1.0f, dyg, (int)P, B, (int)ldb, 1.0f,
                    dw + gi * g->Og * g->K, (int)g->K);
        }
    }
}

/* Depthwise weight/bias gradient of planes [q0, q1) (q = n*O + o). */
static void dw_weight_range(const cv_geom *g, const float *x, const float *dy, float *dw, float *db, int64_t q0,
                            int64_t q1)
{
    for (int64_t q = q0; q < q1; q++) {
        const int64_t n = q / g->O, o = q % g->O;
        if (db) db[o] += nb__sum16(dy + q * g->P, g->P);
        if (dw)
            dw_backward_plane(g, x + (n * g->C + o / g->Og) * g->H * g->W, NULL, dy + q * g->P, NULL,
                              dw + o * g->kh * g->kw);
    }
}

/* Planes q = n*C + c of dx: the output channels of input channel c. */
static void dw_data_planes(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const dw_job *j = ctx;
    const cv_geom *g = j->g;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t n = q / g->C, c = q % g->C;
        if (j->fresh) memset(j->dx + q * g->H * g->W, 0, (size_t)(g->H * g->W) * sizeof(float));
        for (int64_t o = c * g->Og; o < (c + 1) * g->Og; o++)
            dw_backward_plane(g, NULL, j->w + o * g->kh * g->kw, j->dy + (n * g->O + o) * g->P,
                              j->dx + q * g->H * g->W, NULL);
    }
}

/* The backward's loops: samples of the data gradient, or parts (runs of
 * items, each into its own partial sum of dw and db: part 0 straight into
 * the gradients, part p > 0 into partial + (p - 1) * wsz). Each thread has
 * its column buffer (two when merged) at ws + slot * cf * (merged ? 2 : 1). */
typedef struct {
    const cv_saved *s;
    const float *dy;
    float *dx, *dw, *db, *partial, *ws;
    int64_t cf, items, parts, wsz;
    int fresh_x, merged, inner;     /* inner: im2col on threads of its own */
} bw_job;

static void bw_data_samples(void *ctx, int64_t lo, int64_t hi, int slot)
{
    const bw_job *j = ctx;
    for (int64_t n = lo; n < hi; n++)
        bw_data_sample(&j->s->g, j->s->w, j->dy, j->dx, n, j->ws ? j->ws + slot * j->cf : NULL, 0, j->fresh_x);
}

/* The data gradient alone: samples own their slice of dX. */
static nb_status bw_data(nb_ctx *ctx, const cv_saved *s, const float *dy, float *dx, float *ws, int fresh_x)
{
    const cv_geom *g = &s->g;
    if (g->wino)
        return wino_run(ctx, g->N, g->O, g->OH, g->OW, g->C, 2 - g->ph, 2 - g->pw, dy, s->w, 1, NULL, 0, !fresh_x, dx)
                   ? NB_OK
                   : nb__fail(NB_ERR_NOMEM, "conv2d backward: out of memory for the Winograd workspace");
    const double flops = 2.0 * (double)g->N * (double)g->O * (double)g->P * (double)g->K;
    const int64_t cf = col_floats(g);
    if (g->depthwise) {
        /* planes of one sample and input channel: o in [c*Og, (c+1)*Og) */
        const int64_t planes = g->N * g->C;
        dw_job j = {.g = g, .w = s->w, .dy = dy, .dx = dx, .fresh = fresh_x};
        nb__par_for(planes, nb__par_parts(planes, items_threads(planes, flops) > 1), dw_data_planes, &j);
        return NB_OK;
    }
    const int nth = items_threads(g->N, flops);
    if (nth > 1) {
        bw_job j = {.s = s, .dy = dy, .dx = dx, .ws = ws, .cf = cf, .fresh_x = fresh_x};
        nb__par_for(g->N, nth, bw_data_samples, &j);
    } else {
        const int inner = cv_max_threads() > 1 && cf >= CV_INNER_MIN;
        for (int64_t n = 0; n < g->N; n++) bw_data_sample(g, s->w, dy, dx, n, ws, inner, fresh_x);
    }
    return NB_OK;
}

static void bw_weight_parts(void *ctx, int64_t lo, int64_t hi, int slot)
{
    const bw_job *j = ctx;
    const cv_saved *s = j->s;
    const cv_geom *g = &s->g;
    for (int64_t p = lo; p < hi; p++) {
        float *pw = p ? j->partial + (p - 1) * j->wsz : NULL;
        float *tdw = j->dw ? (p ? pw : j->dw) : NULL;
        float *tdb = j->db ? (p ? pw + g->O * g->K : j->db) : NULL;
        const int64_t i0 = j->items * p / j->parts, i1 = j->items * (p + 1) / j->parts;
        float *col = j->ws ? j->ws + slot * j->cf * (j->merged ? 2 : 1) : NULL;
        if (g->depthwise)
            dw_weight_range(g, s->x, j->dy, tdw, tdb, i0, i1);
        else if (j->merged)
            for (int64_t it = i0; it < i1; it++) {
                bw_data_sample(g, s->w, j->dy, j->dx, it, col ? col + j->cf : NULL, 0, j->fresh_x);
                bw_weight_range(g, s->x, j->dy, tdw, tdb, it, it + 1, col, 0);
            }
        else
            bw_weight_range(g, s->x, j->dy, tdw, tdb, i0, i1, col, j->inner);
    }
}

/* dw[e] += the partial sums of parts 1, 2, ... in order. */
static void add_weight_parts(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bw_job *j = ctx;
    for (int64_t e = lo; e < hi; e++) {
        float a = j->dw[e];
        for (int64_t p = 1; p < j->parts; p++) a += j->partial[(p - 1) * j->wsz + e];
        j->dw[e] = a;
    }
}

nb_status nb__bw_conv2d(nb_ctx *ctx, nb__node *node)
{
    const cv_saved *s = node->saved;
    const cv_geom *g = &s->g;
    nb_tensor *x = node->in[0], *w = node->in[1], *b = node->nin > 2 ? node->in[2] : NULL;
    const float *dy = node->out->grad;
    float *dx = x->requires_grad ? x->grad : NULL;
    float *dw = w->requires_grad ? w->grad : NULL;
    float *db = b && b->requires_grad ? b->grad : NULL;
    const int fresh_x = nb__fresh(node, 0);
    if (nb__fresh(node, 1)) memset(dw, 0, (size_t)(g->O * g->K) * sizeof(float));
    if (nb__fresh(node, 2)) memset(db, 0, (size_t)g->O * sizeof(float));
    if (!g->N) return NB_OK;
    const double flops = 2.0 * (double)g->N * (double)g->O * (double)g->P * (double)g->K;
    const int64_t cf = col_floats(g);
    const int maxth = cv_max_threads();

    /* weight and bias gradients: `parts` ranges of items, fixed by the shape */
    const int64_t items = g->depthwise ? g->N * g->O : g->N * g->ntiles;
    const int64_t wsz = g->O * g->K + g->O;   /* one partial: dW then db */
    int64_t parts = items < CV_PARTS_MAX ? items : CV_PARTS_MAX;
    while (parts > 1 && (uint64_t)(parts - 1) * (uint64_t)wsz * sizeof(float) > CV_PARTS_BYTES) parts--;
    int nth = items_threads(parts, flops);
    /* a part is a run of items; run parts on threads only when they split evenly */
    if (nth > 1 && parts % nth) nth = 1;
    /* with both gradients and one tile per sample, a thread does a sample's
     * data and weight gradients back to back, while its dY is in cache
     * (two column buffers a thread); the results are the same */
    const int merged =
        dx && (dw || db) && !g->depthwise && !g->direct && !g->wino && g->ntiles == 1 && (nth > 1 || maxth == 1);
    const int64_t wsf = cf * maxth * (merged ? 2 : 1);
    float *ws = cf ? nb_arena_alloc(nb_ctx_arena(ctx), (size_t)wsf * sizeof(float)) : NULL;
    if (cf && !ws) return nb__fail(NB_ERR_NOMEM, "conv2d backward: out of memory for the column buffer");
    if (dx && !merged) {
        const nb_status st = bw_data(ctx, s, dy, dx, ws, fresh_x);
        if (st != NB_OK) return st;
    }
    if (!dw && !db) return NB_OK;
    if (g->direct) return direct_weight(ctx, g, s->x, dy, dw, db);
    if (g->wino) return wino_weight(ctx, g, s->x, dy, dw, db);
    float *part = parts > 1 ? nb_arena_calloc(nb_ctx_arena(ctx), (size_t)((parts - 1) * wsz) * sizeof(float))
                            : NULL;
    if (parts > 1 && !part) return nb__fail(NB_ERR_NOMEM, "conv2d backward: out of memory for partial sums");
    bw_job j = {.s = s, .dy = dy, .dx = dx, .dw = dw, .db = db, .partial = part, .ws = ws, .cf = cf,
                .items = items, .parts = parts, .wsz = wsz, .fresh_x = fresh_x, .merged = merged,
                .inner = nth == 1 && maxth > 1 && cf >= CV_INNER_MIN};
    nb__par_for(parts, nth, bw_weight_parts, &j);
    if (parts > 1) {
        const int64_t nw = g->O * g->K;
        if (dw) nb__par_for(nw, nb__par_parts(nw, nw >= 65536), add_weight_parts, &j);
        if (db)
            for (int64_t o = 0; o < g->O; o++) {
                float a = db[o];
                for (int64_t p = 1; p < parts; p++) a += part[(p - 1) * wsz + nw + o];
                db[o] = a;
            }
    }
    return NB_OK;
}
