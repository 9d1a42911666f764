/* Private to libnabla: how Sequential (module.c) recognises runs of layers
 * that one fused op computes faster, bit for bit the same output. */
#ifndef NABLA_NN_FUSE_H
#define NABLA_NN_FUSE_H
#include "../core/internal.h"

/* Whether m is a ReLU module (module.c). */
int nb__nn_is_relu(const nb_module *m);
/* Whether m is a MaxPool2d module (pool.c); its options into *o. */
int nb__nn_max_pool_opts(const nb_module *m, nb_pool2d_opts *o);
/* BatchNorm2d, ReLU, MaxPool2d(kernel 2, stride 2, no padding, dilation 1,
 * floor mode) at mods[0..2] (of n) as one op (batchnorm.c): sets *used to 3
 * and returns the result (NULL on error, as the layers would), or sets
 * *used to 0 when the layers are not that run (a summary's hooks hide it
 * too, so every layer is seen on its own). */
nb_tensor *nb__nn_bn_relu_pool_forward(nb_module *const *mods, int n, nb_ctx *ctx, nb_tensor *x, int *used);

/* Whether m is a Conv2d module (conv2d.c): its weight, bias (NULL when it
 * has none) and options. */
int nb__nn_conv2d_args(const nb_module *m, nb_tensor **w, nb_tensor **b, nb_conv2d_opts *o);
/* Conv2d over one-channel images that need no gradient (computed by the
 * direct kernels), then the run above, at mods[0..3]: as one op
 * (batchnorm.c), *used 4; or *used 0. */
nb_tensor *nb__nn_conv_bn_relu_pool_forward(nb_module *const *mods, int n, nb_ctx *ctx, nb_tensor *x, int *used);

#endif
