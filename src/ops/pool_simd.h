/* Row kernels of the pools (src/ops/pool.c) for kernel 2 and kernel 3 with
 * stride 2, dilation 1, over windows that lie inside the input. Output o of
 * a row reads input columns 2o .. 2o+k-1 of rows r0, r1 (, r2), which are W
 * apart; `base` is the flat in-plane index of r0[0]. Every kernel gives the
 * same bits as the portable C in pool.c (same comparisons, same order of
 * additions). src/ops/pool_avx512.c fills nb__pool_avx512 when it is built
 * for AVX-512; otherwise every entry is NULL. */
#ifndef NABLA_POOL_SIMD_H
#define NABLA_POOL_SIMD_H
#include <stdint.h>

typedef struct nb__pool_kernels {
    /* max over each window; idx (may be NULL) gets the flat index of the
     * winner: the first maximum, or the last NaN (torch's rule) */
    void (*max_k2s2)(const float *r0, const float *r1, int32_t base, int32_t W, float *out, int32_t *idx,
                     int64_t n);
    void (*max_k3s2)(const float *r0, const float *r1, const float *r2, int32_t base, int32_t W, float *out,
                     int32_t *idx, int64_t n);
    /* backward of max_k2s2: g0 is the gradient at flat index base (row r0),
     * g1 = g0 + W; go[o] is added at idx[o] */
    void (*max_k2s2_bw)(const float *go, const int32_t *idx, int32_t base, int32_t W, float *g0, float *g1,
                        int64_t n);
    /* means: (((a + b) + c) + d) * 0.25 and the 9-term row-major sum / 9 */
    void (*avg_k2s2)(const float *r0, const float *r1, float *out, int64_t n);
    void (*avg_k3s2)(const float *r0, const float *r1, const float *r2, float *out, int64_t n);
    /* backward of avg_k2s2: go[o] * 0.25 added to the 4 elements of window o */
    void (*avg_k2s2_bw)(const float *go, float *g0, float *g1, int64_t n);
    /* sum of p[0 .. n): 64 running sums (lane k takes p[k], p[k + 64], ...),
     * folded in halves (lane k += lane k + 32, then + 16, ... + 1) */
    float (*sum64)(const float *p, int64_t n);
} nb__pool_kernels;

extern const nb__pool_kernels nb__pool_avx512;

/* Test hook (pool.c): 0 forces the portable kernels, 1 allows AVX-512;
 * returns the previous setting. */
int nb__pool_use_simd(int on);

#endif
