/* Direct convolution of one-channel images (C = 1, groups 1) with stride 1
 * and dilation 1: the first layer of a small image model, where im2col
 * copies the image kh*kw times and the GEMM has K = kh*kw (9), so the
 * copies and the thin product cost more than the arithmetic. Used by
 * src/ops/conv.c for the forward and the weight and bias gradients (the
 * data gradient, rarely needed for an input image, stays on im2col).
 * src/kernels/conv_direct_avx512.c fills nb__conv_direct_avx512 when it is
 * built for AVX-512; otherwise its entries are NULL and conv.c keeps the
 * GEMM path. */
#ifndef NABLA_KERNELS_CONV_DIRECT_H
#define NABLA_KERNELS_CONV_DIRECT_H
#include <stdint.h>

#define NB__CD_TAPS_MAX 25   /* kh * kw at most (up to 5x5) */
#define NB__CD_OB       8    /* output channels per register block */
#define NB__CD_LANES    16   /* partial sums per weight in the gradient (nb__sum_lanes16 adds them) */
_Static_assert(NB__CD_LANES == 16, "the lanes are added by nb__sum_lanes16 (simd.h)");

typedef struct nb__cd_geom {
    int64_t H, W, OH, OW, O;   /* input (H, W), output (O, OH, OW) per sample */
    int kh, kw, ph, pw;
    int64_t PW;                /* row length of the padded copy of the input */
} nb__cd_geom;

/* Floats of the zero-padded copy of one input plane the kernels work on. */
static inline int64_t nb__cd_pad_floats(const nb__cd_geom *g) { return (g->OH + g->kh - 1) * g->PW + 16; }


typedef struct nb__conv_direct_kernels {
    /* y (O, OH, OW) = b + w (O, kh*kw) (*) x (H, W) for one sample; b may be
     * NULL. Each output is b then its taps in order (fused multiply-adds).
     * pad: scratch of nb__cd_pad_floats(g) floats that the caller zeroed
     * before its first use (the kernels only rewrite its interior). */
    void (*forward)(const nb__cd_geom *g, const float *x, const float *w, const float *b, float *y, float *pad);
    /* acc += the sums of the weight and bias gradients over one sample:
     * acc is (O rounded up to NB__CD_OB) x (kh*kw + 1) x NB__CD_LANES floats,
     * lane l of [o][t] summing dy[o][p] * x shifted by tap t over the
     * pixels p of each row with p % NB__CD_LANES == l (the last slot t =
     * kh*kw: dy alone, the bias). */
    void (*weight_acc)(const nb__cd_geom *g, const float *x, const float *dy, float *acc, float *pad);
} nb__conv_direct_kernels;

extern const nb__conv_direct_kernels nb__conv_direct_avx512;

#endif
