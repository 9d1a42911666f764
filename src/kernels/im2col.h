/* im2col and col2im for one input channel and a tile of output rows, when
 * the convolution's width stride is 1 (every col row is a run of one input
 * row): src/ops/conv.c calls them for those convolutions, in place of its
 * portable loops. The column row of tap (i, j) and tile row t holds
 *   col[((i * kw + j) * rows + t) * OW + ow] = x[ih][ow + j*dw - pw],
 *   ih = (oh0 + t) * sh - ph + i * dh,
 * and 0 where (ih, iw) falls outside the (H, W) plane. col2im adds each
 * column value back into dx at the same place, taps in order, so both give
 * the portable loops' bits. src/kernels/im2col_avx512.c fills
 * nb__im2col_avx512 when built for AVX-512 (else its entries are NULL). */
#ifndef NABLA_KERNELS_IM2COL_H
#define NABLA_KERNELS_IM2COL_H
#include <stdint.h>

typedef struct nb__im2col_geom {
    int64_t H, W, OW;
    int kh, kw, sh, ph, pw, dh, dw;
} nb__im2col_geom;

typedef struct nb__im2col_kernels {
    /* the kh*kw col rows of one channel plane x, output rows [oh0, oh1) */
    void (*im2col)(const nb__im2col_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col);
    /* dx (one channel plane) += the same kh*kw col rows, scattered back */
    void (*col2im)(const nb__im2col_geom *g, const float *col, int64_t oh0, int64_t oh1, float *dx);
} nb__im2col_kernels;

extern const nb__im2col_kernels nb__im2col_avx512;

#endif
