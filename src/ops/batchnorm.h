/* Private to libnabla: the batch-norm statistics shared by batch_norm
 * (batchnorm.c) and the fused batch_norm -> relu -> max_pool2d op
 * (bn_relu_pool.c), and that fused op, which nn's Sequential runs for a
 * BatchNorm2d, ReLU, MaxPool2d(2) run of layers (src/nn/batchnorm.c). */
#ifndef NABLA_OPS_BATCHNORM_H
#define NABLA_OPS_BATCHNORM_H
#include "../core/internal.h"
#include "prefetch.h"
#include "../kernels/conv_direct.h"

/* Channel c, N planes of S floats, the first at x and each `stride` floats
 * after the previous (C*S in an (N, C, S) tensor): training: mean (as float
 * and double) and invstd = 1/sqrt(biased var + eps) from the batch, and the
 * running statistics rm, rv (either may be NULL) moved by momentum with the
 * unbiased variance; evaluation: the same from rm and rv. The results go to
 * index c. Sums run in double in a fixed order. */
void nb__bn_channel_stats(const float *x, int64_t stride, int64_t N, int64_t S, int64_t c, int training, float eps,
                          float momentum, float *rm, float *rv, float *mean, double *meand, float *invstd);

/* y = (x - mean) * a + b per channel: a = gamma * invstd and b = beta with
 * the rounding of the mean to float corrected (see batchnorm.c); weight and
 * bias may be NULL (1 and 0). */
void nb__bn_coefficients(const nb_tensor *weight, const nb_tensor *bias, int64_t c, float mean, double meand,
                         float invstd, float *a, float *b);

/* Synchronised batch norm (torch.nn.SyncBatchNorm; set by src/dist/dist.c):
 * while a hook is set on the calling thread, batch_norm and the fused op
 * below take their training statistics over every process of a job.
 * sum(user, v, n, phase) adds v[0..n) over the processes, in place, in the
 * same order on all: in forward each channel's sum with the count of values
 * (NB__BN_SUMS, C + 1), then the squared deviations from the job's mean
 * (NB__BN_SQUARES, C); in backward sum dy then sum dy (x - mean) of each
 * channel (NB__BN_GRADS, 2C), which the hook may weight (a process's loss
 * being a mean over its own share). The affine gradients stay this
 * process's own (the job averages them with the other gradients). NULL by
 * default; thread-local. Returns the previous hook. */
enum { NB__BN_SUMS, NB__BN_SQUARES, NB__BN_GRADS };
typedef struct nb__bn_sync {
    nb_status (*sum)(void *user, double *v, int64_t n, int phase);
    void *user;
} nb__bn_sync;
const nb__bn_sync *nb__bn_set_sync(const nb__bn_sync *h);
const nb__bn_sync *nb__bn_get_sync(void);

/* Training statistics of all C channels of x (N, C, S) over the job through
 * h: as nb__bn_channel_stats for each channel, with *count the job's number
 * of values per channel. Temporary space from ar. */
nb_status nb__bn_sync_stats(const nb__bn_sync *h, nb_arena *ar, const float *x, int64_t N, int64_t C, int64_t S,
                            float eps, float momentum, float *rm, float *rv, float *mean, double *meand,
                            float *invstd, int64_t *count);

/* max_pool2d(relu(batch_norm(x, ...)), kernel 2, stride 2) of an (N, C, H, W)
 * x (H, W >= 2), with the arguments and results of nb_batch_norm, the
 * output (N, C, H/2, W/2) of the three ops bit for bit, and one backward
 * that never forms the intermediate tensors. */
nb_tensor *nb__batch_norm_relu_max_pool(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias,
                                        float *running_mean, float *running_var, int training, float momentum,
                                        float eps);

/* Whether conv2d(x, w, b, opts) runs on the direct kernels of one-channel
 * images (src/ops/conv.c): their geometry into *cd, or NULL (nothing
 * recorded: nb_conv2d itself reports what is wrong with the arguments). */
const nb__conv_direct_kernels *nb__conv_direct_geometry(const nb_tensor *x, const nb_tensor *w, const nb_tensor *b,
                                                       const nb_conv2d_opts *opts, nb__cd_geom *cd);

/* The same op with the one-channel convolution in front:
 * max_pool2d(relu(batch_norm(conv2d(x, cw, cb, co), ...))) for images x that
 * need no gradient and a convolution nb__conv_direct_geometry accepts. y1 is
 * that convolution's output, computed by the caller without recording it
 * (nb_conv2d with autograd off); the op records one node for the whole
 * block, whose backward gives cw and cb their gradients without forming
 * y1's (see bn_relu_pool.c). */
nb_tensor *nb__conv_batch_norm_relu_max_pool(nb_ctx *ctx, nb_tensor *x, nb_tensor *cw, nb_tensor *cb,
                                             const nb_conv2d_opts *co, nb_tensor *y1, nb_tensor *weight,
                                             nb_tensor *bias, float *running_mean, float *running_var,
                                             int training, float momentum, float eps);

/* Test hook: 0 runs the fused op on its portable plane kernels, 1 allows
 * AVX-512; returns the previous setting. */
int nb__bn_pool_use_simd(int on);

#endif
