/* nabla/summary.h — model summaries (torchsummary) and receptive fields.
 *
 * Receptive field along a chain of layers (the notes §8), per spatial axis:
 *     r_out = r_in + (k_eff - 1) * j_in        k_eff = d * (k - 1) + 1
 *     j_out = j_in * s
 *     start_out = start_in + ((k_eff - 1) / 2 - p) * j_in
 * r is the field's size in input pixels, j (the jump) the distance in input
 * pixels between neighbouring output units, start the centre of the field of
 * output unit 0 in input pixel coordinates (pixel i is at i; a field may
 * reach into the padding, so start can be negative). The input itself has
 * r = 1, j = 1, start = 0. Output unit y then sees the input pixels
 * [start + y*j - (r-1)/2, start + y*j + (r-1)/2], clipped to the image. */
#ifndef NABLA_SUMMARY_H
#define NABLA_SUMMARY_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One row of a summary: a leaf module (or a container with parameters of its
 * own), in the order the forward pass called it. */
typedef struct nb_layer_info {
    char    name[64];       /* dotted path as in the state_dict: "features.0" */
    char    kind[32];       /* "Conv2d", ... */
    char    desc[160];      /* the module's describe() line */
    int     ndim;           /* of the output (batch dimension of 1 included);
                               -1 for a module with parameters that never ran */
    int64_t out_shape[NB_MAX_DIMS];
    int64_t params;         /* trainable elements (0 for a repeated call of a
                               shared module: counted once) */
    int64_t buffers;        /* non-trainable state (BatchNorm running stats) */
    int64_t macs;           /* per sample: numel(out without batch) * macs_per_output */
    int     has_rf;         /* rf/jump/start valid: a (N,C,H,W) output that
                               descends from the (N,C,H,W) input through layers
                               whose geometry matches the shapes seen */
    int64_t rf[2], jump[2]; /* [0] along H, [1] along W */
    double  start[2];       /* centre of output unit 0's field (see above) */
} nb_layer_info;

/* One receptive-field step for a layer of kernel k, stride s, padding p and
 * dilation d along one axis (0 for s or d means 1). */
void nb_rf_step(int64_t *rf, int64_t *jump, double *start, int k, int s, int p, int d);

/* Summarise m for one sample of shape input_shape (ndim dims, no batch: C,H,W
 * for images, 784 for vectors). Runs one forward pass on zeros with batch 1
 * in eval mode (the model's mode is restored after) in a private context;
 * each module's forward is wrapped for the pass so every leaf is seen,
 * whatever container calls it, and the receptive field follows the data:
 * through a residual block it is the union of the branches. Layers without
 * a geometry callback are pointwise when they keep H and W (activations,
 * BatchNorm) and end the field otherwise (Flatten, adaptive pooling), as do
 * layers whose geometry does not give the output size seen (a transposed
 * conv). An op a container runs itself (the residual add) joins the fields
 * of its inputs when it keeps H and W, so a raw nb_conv2d there is missed.
 * *layers (malloc'd, the caller frees it) gets *nlayers rows. Errors: NB_ERR_ARG (NULL, bad
 * shape), NB_ERR_STATE (no modules), the forward pass's own errors. Not safe
 * while another thread uses the same model. */
nb_status nb_model_summary(nb_model *m, int ndim, const int64_t *input_shape,
                           nb_layer_info **layers, int *nlayers);

/* A torchsummary-like table of n rows (name, type, output shape, params,
 * MACs, receptive field, jump) and the totals: parameters (as torch counts
 * them: buffers apart), buffers, MACs per sample ("7.61 G"), the output
 * shape of the last layer that ran.
 * *text is malloc'd (the caller frees it). */
nb_status nb_summary_format(const nb_layer_info *layers, int n, char **text);

/* The receptive field measured by back-propagation: the bounding box
 * [y0, y1] x [x0, x1] (box = {y0, x0, y1, x1}, inclusive, input pixels) of
 * the input positions whose gradient is non-zero when back-propagating from
 * channel 0 of output unit (out_y, out_x) of sample 0 (a negative coordinate
 * means the centre). input_shape is (C,H,W) and the model's output must be
 * (N,C,OH,OW). Measures which inputs CAN influence the unit: for the pass
 * every parameter is set to a small positive constant (1/fan_in for weights,
 * 0.01 for vectors), BatchNorm-style buffers to neutral values (running_var
 * 1, others 0), and the input to random values in [0.5, 1.5), so every
 * activation is positive and every local derivative of conv, linear, ReLU,
 * average pooling and BatchNorm is positive; max pooling, whose gradient
 * reaches one element per window, is replaced for the pass by an average
 * over the same windows (avg_pool2d with its kernel, stride and padding;
 * MaxPool2d with dilation is refused, NB_ERR_ARG). The model's values,
 * buffers, mode and modules are restored afterwards. A field reaching past
 * the border is clipped. */
nb_status nb_receptive_field_box(nb_model *m, int ndim, const int64_t *input_shape,
                                 int out_y, int out_x, int64_t box[4]);
/* The size of that box: rf_h = y1 - y0 + 1, rf_w = x1 - x0 + 1. */
nb_status nb_receptive_field_empirical(nb_model *m, int ndim, const int64_t *input_shape,
                                       int out_y, int out_x, int64_t *rf_h, int64_t *rf_w);

#ifdef __cplusplus
}
#endif
#endif
