/* nabla/ops.h — differentiable operations.
 *
 * Every op takes the context first, allocates its result in the context's
 * arena and, when autograd is on and an input requires a gradient, records
 * itself on the tape. On error an op returns NULL, keeps a message for
 * nb_last_error() and sets nb_ctx_status(); a NULL input makes an op return
 * NULL at once without touching the first message, so chains need one check.
 * Inputs may be views (any strides); results are contiguous unless the op is
 * a view (reshape of a contiguous tensor, permute, transpose, slice).
 * Semantics, defaults and broadcasting follow PyTorch.
 */
#ifndef NABLA_OPS_H
#define NABLA_OPS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise, with NumPy/PyTorch broadcasting ------------------------ */
nb_tensor *nb_add(nb_ctx *ctx, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_sub(nb_ctx *ctx, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_mul(nb_ctx *ctx, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_div(nb_ctx *ctx, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_scale(nb_ctx *ctx, nb_tensor *x, float s);       /* x * s */
nb_tensor *nb_add_scalar(nb_ctx *ctx, nb_tensor *x, float s);  /* x + s */
nb_tensor *nb_exp(nb_ctx *ctx, nb_tensor *x);
nb_tensor *nb_log(nb_ctx *ctx, nb_tensor *x);
nb_tensor *nb_sqrt(nb_ctx *ctx, nb_tensor *x);
nb_tensor *nb_pow(nb_ctx *ctx, nb_tensor *x, float p);          /* x ** p */

/* ---- matrix products ------------------------------------------------------
 * matmul: (M,K)@(K,N) -> (M,N); batched (...,M,K)@(...,K,N) with the batch
 * dimensions broadcast; a 2-D operand is shared by every batch. */
nb_tensor *nb_matmul(nb_ctx *ctx, nb_tensor *a, nb_tensor *b);
/* linear: x (*,in) -> x @ w^T + b, w (out,in), b (out) or NULL (torch F.linear). */
nb_tensor *nb_linear(nb_ctx *ctx, nb_tensor *x, nb_tensor *w, nb_tensor *b);

/* ---- reductions -----------------------------------------------------------
 * axes: naxes entries (negative counts from the end); naxes == 0 reduces all.
 * keepdim keeps reduced axes as size 1. max's gradient goes to the first
 * maximum along the reduced axes. */
nb_tensor *nb_sum(nb_ctx *ctx, nb_tensor *x, const int *axes, int naxes, int keepdim);
nb_tensor *nb_mean(nb_ctx *ctx, nb_tensor *x, const int *axes, int naxes, int keepdim);
nb_tensor *nb_max(nb_ctx *ctx, nb_tensor *x, const int *axes, int naxes, int keepdim);
/* Index of the maximum along `axis` (first one on ties), as float values;
 * the axis is removed. No gradient. */
nb_tensor *nb_argmax(nb_ctx *ctx, nb_tensor *x, int axis);

/* ---- shape ----------------------------------------------------------------
 * reshape: one entry may be -1. A view when x is contiguous, else a copy. */
nb_tensor *nb_reshape(nb_ctx *ctx, nb_tensor *x, int ndim, const int64_t *shape);
nb_tensor *nb_flatten(nb_ctx *ctx, nb_tensor *x, int start_dim);  /* keeps dims < start_dim */
nb_tensor *nb_permute(nb_ctx *ctx, nb_tensor *x, const int *perm); /* view */
nb_tensor *nb_transpose(nb_ctx *ctx, nb_tensor *x, int d0, int d1); /* view */
/* slice: x[..., start:end:step, ...] along axis (step >= 1; negative start/end
 * count from the end, clamped like Python). A view. */
nb_tensor *nb_slice(nb_ctx *ctx, nb_tensor *x, int axis, int64_t start, int64_t end, int64_t step);
nb_tensor *nb_concat(nb_ctx *ctx, nb_tensor *const *xs, int n, int axis);
nb_tensor *nb_contiguous(nb_ctx *ctx, nb_tensor *x);  /* x itself if contiguous */

/* ---- activations (the notes §1, §11) --------------------------------------*/
nb_tensor *nb_sigmoid(nb_ctx *ctx, nb_tensor *x);
nb_tensor *nb_tanh(nb_ctx *ctx, nb_tensor *x);
nb_tensor *nb_relu(nb_ctx *ctx, nb_tensor *x);
nb_tensor *nb_leaky_relu(nb_ctx *ctx, nb_tensor *x, float negative_slope); /* torch default 0.01 */
/* softmax/log_softmax along `axis`, max-subtracted: log_softmax([1000, 1]) = [0, -999]. */
nb_tensor *nb_softmax(nb_ctx *ctx, nb_tensor *x, int axis);
nb_tensor *nb_log_softmax(nb_ctx *ctx, nb_tensor *x, int axis);

/* ---- losses (the notes §12) -----------------------------------------------
 * Reductions as torch: MEAN over all elements (cross-entropy: over the
 * non-ignored targets), SUM, NONE (per-element/per-sample result).
 * Gradients flow to `input`; targets are constants unless stated. */
typedef enum nb_reduction {
    NB_REDUCTION_MEAN = 0,
    NB_REDUCTION_SUM,
    NB_REDUCTION_NONE,
    NB_REDUCTION_BATCHMEAN  /* kl_div only: sum / batch size */
} nb_reduction;

/* (input - target)^2; same shapes or broadcastable as torch; gradient to both. */
nb_tensor *nb_mse_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r);
/* |input - target| (MAE); gradient to both (sign, 0 at 0 as torch). */
nb_tensor *nb_l1_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r);
/* Cross-entropy from logits (N,C) or (N,C,d1,...) with class indices target
 * (N) or (N,d1,...) (copied). Entries equal to ignore_index (torch: -100)
 * contribute nothing. weight: C class weights or NULL (copied). Computed with
 * a fused, max-subtracted log-softmax. */
nb_tensor *nb_cross_entropy(nb_ctx *ctx, nb_tensor *logits, const int32_t *target,
                            const float *weight, int ignore_index, nb_reduction r);
/* Binary cross-entropy on probabilities in [0,1]; log clamped at -100 as torch. */
nb_tensor *nb_bce_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r);
/* BCE with logits, stable for |x| large: max(x,0) - x*y + log(1 + exp(-|x|)). */
nb_tensor *nb_bce_with_logits(nb_ctx *ctx, nb_tensor *logits, nb_tensor *target, nb_reduction r);
/* KL divergence, torch F.kl_div: input holds log-probabilities; target holds
 * probabilities (or log-probabilities if log_target). Pointwise
 * target*(log target - input), 0 where target == 0. */
nb_tensor *nb_kl_div(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r, int log_target);
/* Binary hinge loss of the notes: max(0, 1 - y*yhat), y in {-1, +1}. */
nb_tensor *nb_hinge_loss(nb_ctx *ctx, nb_tensor *input, nb_tensor *target, nb_reduction r);
/* torch.nn.MultiMarginLoss: input (N,C) or (C), target class per sample,
 * p in {1, 2}, margin (torch default 1), weight C or NULL. */
nb_tensor *nb_multi_margin_loss(nb_ctx *ctx, nb_tensor *input, const int32_t *target,
                                int p, float margin, const float *weight, nb_reduction r);

/* ---- convolution, pooling, normalisation, dropout (NCHW, as torch) -------
 * Option structs: a zero stride, dilation or groups means 1; kernel sizes
 * must be given. Output size per spatial dim:
 *   floor((in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1
 * (ceil instead of floor with ceil_mode, as torch, for the pools). */
typedef struct nb_conv2d_opts {
    int stride[2], padding[2], dilation[2];
    int groups;
} nb_conv2d_opts;
/* x (N,C,H,W), w (O, C/groups, kh, kw), b (O) or NULL -> (N,O,OH,OW).
 * opts NULL = stride 1, padding 0, dilation 1, groups 1. */
nb_tensor *nb_conv2d(nb_ctx *ctx, nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv2d_opts *opts);

typedef struct nb_pool2d_opts {
    int kernel[2], stride[2], padding[2], dilation[2];  /* stride 0 = kernel (torch default) */
    int ceil_mode;
    int count_include_pad;   /* avg_pool2d: torch default 1 (set it: 0 here means 0) */
} nb_pool2d_opts;
/* max_pool2d (N,C,H,W): padding is -inf; gradient to the first maximum of each window. */
nb_tensor *nb_max_pool2d(nb_ctx *ctx, nb_tensor *x, const nb_pool2d_opts *opts);
nb_tensor *nb_avg_pool2d(nb_ctx *ctx, nb_tensor *x, const nb_pool2d_opts *opts);
/* adaptive_avg_pool2d: windows [floor(i*H/OH), ceil((i+1)*H/OH)) as torch. */
nb_tensor *nb_adaptive_avg_pool2d(nb_ctx *ctx, nb_tensor *x, int out_h, int out_w);

/* batch_norm: x (N,C) or (N,C,*); weight, bias (C) or NULL. Training: batch
 * statistics (biased variance to normalise); running_mean/running_var (C
 * floats, or NULL) updated in place as torch: r = (1-momentum) r + momentum s,
 * with the unbiased batch variance. Evaluation: the running statistics. */
nb_tensor *nb_batch_norm(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias,
                         float *running_mean, float *running_var, int training,
                         float momentum, float eps);
/* dropout: training zeroes each element with probability p (ctx generator)
 * and scales the rest by 1/(1-p); identity when !training or p == 0. */
nb_tensor *nb_dropout(nb_ctx *ctx, nb_tensor *x, float p, int training);

/* ---- transposed convolution, instance norm (GAN building blocks) ---------
 * conv_transpose2d: the adjoint (gradient w.r.t. the input) of conv2d, as
 * torch F.conv_transpose2d. x (N,Cin,H,W), w (Cin, Cout/groups, kh, kw) as
 * torch, b (Cout) or NULL -> (N,Cout,OH,OW) with per spatial dim
 *   out = (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1.
 * A zero stride, dilation or groups means 1; opts NULL = all defaults.
 * NB_ERR_ARG (as torch) when output_padding >= both stride and dilation,
 * channels do not match w, groups does not divide Cin, or out < 1. */
typedef struct nb_conv_transpose2d_opts {
    int stride[2], padding[2], output_padding[2], dilation[2];
    int groups;
} nb_conv_transpose2d_opts;
nb_tensor *nb_conv_transpose2d(nb_ctx *ctx, nb_tensor *x, nb_tensor *w, nb_tensor *b,
                               const nb_conv_transpose2d_opts *opts);
/* instance_norm: x (N,C,*) normalised per sample and channel over the
 * spatial elements (biased variance), then weight*xhat + bias when weight,
 * bias (C) are given (each may be NULL). As torch F.instance_norm
 * without running statistics. */
nb_tensor *nb_instance_norm(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias, float eps);

/* ---- padding (VGG on 28x28 images) ---------------------------------------
 * pad2d: zeros around the last two dimensions of x (..., H, W), as torch
 * F.pad(x, (left, right, top, bottom)) with value 0: pad[4] = {left, right,
 * top, bottom}, each in [0, 2^20] (NB_ERR_ARG otherwise) -> (..., H+top+bottom,
 * W+left+right). */
nb_tensor *nb_pad2d(nb_ctx *ctx, nb_tensor *x, const int pad[4]);

#ifdef __cplusplus
}
#endif
#endif
