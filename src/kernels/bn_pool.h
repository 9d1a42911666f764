/* Plane kernels of the fused batch_norm -> relu -> max_pool2d(2) op
 * (src/ops/bn_relu_pool.c): one (H, W) plane x of one sample and channel,
 * its (OH, OW) = (H/2, W/2) outputs. The portable C versions live in
 * bn_relu_pool.c; src/kernels/bn_pool_avx512.c fills nb__bn_pool_avx512
 * when it is built for AVX-512 (else every entry is NULL). Both give the
 * same bits: the same operations (no fused multiply-add) in the same order,
 * and the sums in the same 16 lanes. */
#ifndef NABLA_KERNELS_BN_POOL_H
#define NABLA_KERNELS_BN_POOL_H
#include <stdint.h>

#define NB__BP_NONE  4    /* win code: no gradient flows through this output */
#define NB__BP_LANES 16   /* double accumulators of the backward sums */

/* The lane of output (oh, o) in the backward sums: o % NB__BP_LANES, or,
 * when rows hold at most 8 outputs (7 at 14x14), o + 8 for odd oh: the
 * AVX-512 kernels then take two output rows per vector (lanes 0-7 and
 * 8-15), and both versions add in the same lanes. */
#define NB__BP_PAIR_MAX 8
static inline int nb__bp_lane(int64_t oh, int64_t o, int64_t OW)
{
    return OW <= NB__BP_PAIR_MAX ? (int)(o + NB__BP_PAIR_MAX * (oh & 1)) : (int)(o % NB__BP_LANES);
}

typedef struct nb__bn_pool_kernels {
    /* z = (x - mc) * a + b; out = relu of the window's maximum of z (a later
     * value wins when greater or NaN; a non-positive maximum gives the relu
     * of the window's first z); win (may be NULL) = the winner's position
     * 0..3 (row-major) when the maximum is > 0, else NB__BP_NONE. */
    void (*forward)(const float *x, int64_t W, int64_t OH, int64_t OW, float mc, float a, float b, float *out,
                    uint8_t *win);
    /* sdy[l] += g at the winner and sdyx[l] += (float)(g * (x - mc)) there,
     * in double, for the outputs (oh, o) with nb__bp_lane(oh, o, OW) == l. */
    void (*sums)(const float *x, int64_t W, int64_t OH, int64_t OW, const float *g, const uint8_t *win, float mc,
                 double *sdy, double *sdyx);
    /* dx = k * dz - p * (x - mc) - q over the whole (H, W) plane, written
     * (fresh) or added; dz = g at each winner, 0 elsewhere. */
    void (*dx)(const float *x, int64_t H, int64_t W, int64_t OW, const float *g, const uint8_t *win, float mc,
               float k, float p, float q, float *dx, int fresh);
} nb__bn_pool_kernels;

extern const nb__bn_pool_kernels nb__bn_pool_avx512;

#endif
