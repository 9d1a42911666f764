/* nabla/nn.h — models, modules, parameters, initialisation.
 *
 * A model owns its parameters in two flat float buffers (values and
 * gradients), its modules, and a name and configuration string that are saved
 * with the weights so a file alone rebuilds its model. Modules refer to their
 * parameters by index, so the buffers may move while a model is built.
 * Parameter names follow a PyTorch state_dict ("0.weight", "2.bias"). */
#ifndef NABLA_NN_H
#define NABLA_NN_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_model nb_model;
typedef struct nb_module nb_module;

typedef struct nb_param {
    char     *name;                 /* state_dict name, owned */
    nb_tensor t;                    /* data/grad point into the flat buffers */
    size_t    offset;               /* first element in the flat buffers */
    int       no_decay;             /* 1: weight_decay skips it (default 0, as torch) */
    int       buffer;               /* 1: state saved with the weights but never trained
                                       (BatchNorm running statistics); requires_grad 0 */
} nb_param;

/* Spatial footprint of a layer, for summaries and receptive fields. */
typedef struct nb_layer_geometry {
    int     kernel[2], stride[2], padding[2], dilation[2];
    int64_t macs_per_output;        /* multiply-accumulates per output element */
    int64_t macs_per_input;         /* and per input element (a transposed conv's
                                       work follows its input) */
    int     transposed;             /* 1: an upsampling (transposed) conv: the
                                       receptive-field recurrence does not apply */
} nb_layer_geometry;

typedef struct nb_module_vt {
    const char *kind;               /* "Linear", "ReLU", "Sequential", ... */
    /* y = module(x); NULL on error (as an op). */
    nb_tensor *(*forward)(nb_module *m, nb_ctx *ctx, nb_tensor *x);
    /* One line of configuration, e.g. "in_features=784, out_features=256". */
    void (*describe)(const nb_module *m, char *buf, size_t size);
    /* Optional: fill g (it arrives zeroed) and return 1 for layers with a
     * spatial footprint (conv, pool), 0 for those without one that still
     * count MACs (Linear); NULL = no footprint, no MACs. */
    int (*geometry)(const nb_module *m, nb_layer_geometry *g);
} nb_module_vt;

struct nb_module {
    const nb_module_vt *vt;
    nb_model  *model;               /* owner of the module and its parameters */
    int       *params;              /* indices of the parameters of the subtree */
    int        nparams;
    nb_module **children;           /* Sequential and other containers */
    char     **child_names;         /* "0", "1", ... or "conv1", "downsample" */
    int        nchildren;
    float      f[4];                /* layer settings (slope, ...) */
    int64_t    i[8];                /* layer sizes and parameter indices */
};

/* The longest configuration string a model keeps (a "sequential" spec),
 * terminating NUL included; nb_model_build refuses a longer one. */
#define NB_MODEL_CONFIG_MAX 4096

struct nb_model {
    nb_param  *params;
    int        nparams;
    float     *data, *grad;         /* numel floats each, 64-byte aligned */
    size_t     numel;
    nb_module *root;
    int        training;            /* 1 = train mode (default), 0 = eval */
    char       name[32];            /* "mlp", ... (saved as metadata) */
    char       config[NB_MODEL_CONFIG_MAX]; /* e.g. "784,256,128,100,10" */
    /* private */
    size_t     cap;
    nb_module **modules;
    int        nmodules;
    /* While param_override is set, nb_model_param(param_override_index)
     * returns it instead of the parameter (and sets param_override_used):
     * how a weight-normalised layer sees its computed weight. */
    nb_tensor *param_override;
    int        param_override_index, param_override_used;
};

nb_model  *nb_model_new(const char *name, const char *config);
void       nb_model_free(nb_model *m);       /* modules and buffers too */
/* Add a parameter (uninitialised); returns its index, or -1 (NB_ERR_NOMEM). */
int        nb_model_add_param(nb_model *m, const char *name, int ndim, const int64_t *shape);
/* Add a buffer: saved and loaded with the parameters, not trained (zeros). */
int        nb_model_add_buffer(nb_model *m, const char *name, int ndim, const int64_t *shape);
nb_tensor *nb_model_param(nb_model *m, int index);
int        nb_model_find_param(const nb_model *m, const char *name);  /* -1 if absent */
nb_tensor *nb_model_forward(nb_model *m, nb_ctx *ctx, nb_tensor *x);
void       nb_model_zero_grad(nb_model *m);
void       nb_model_train(nb_model *m, int training);
/* Like p.requires_grad_(on) for every parameter. While off, a forward
 * through the model records no parameter gradients (backward leaves the
 * model's grad buffer untouched) but gradients still flow through it to its
 * inputs: the generator step of a GAN through a frozen discriminator. */
void       nb_model_set_requires_grad(nb_model *m, int on);
/* Weights as safetensors (float32, atomic write) with metadata "model" and
 * "config"; load requires the same names and shapes (each mismatch named). */
nb_status  nb_model_save(const nb_model *m, const char *path);
nb_status  nb_model_load(nb_model *m, const char *path);
/* Rebuild a model from a file's metadata and load its weights. */
nb_status  nb_model_load_file(const char *path, nb_model **out);

/* ---- modules (constructors register with the model, which frees them) -- */
/* Module registration for new module kinds: allocates a module owned by m. */
nb_module *nb_module_new(nb_model *m, const nb_module_vt *vt);
/* torch.nn.Linear: weight (out,in) and bias (out), PyTorch's default init
 * (kaiming_uniform(a=sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)) for both). */
nb_module *nb_nn_linear(nb_model *m, nb_rng *rng, int in_features, int out_features, int bias);
/* torch.nn.Conv2d: weight (out, in/groups, kh, kw) and bias (out), PyTorch's
 * default init (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, fan_in =
 * in/groups*kh*kw). opts: nb_conv2d_opts of nabla/ops.h, as nb_conv2d (NULL =
 * stride 1, no padding). */
nb_module *nb_nn_conv2d(nb_model *m, nb_rng *rng, int in_channels, int out_channels, int kh, int kw,
                        const struct nb_conv2d_opts *opts, int bias);
nb_module *nb_nn_relu(nb_model *m);
nb_module *nb_nn_sigmoid(nb_model *m);
nb_module *nb_nn_tanh(nb_model *m);
nb_module *nb_nn_leaky_relu(nb_model *m, float negative_slope);
nb_module *nb_nn_softmax(nb_model *m, int axis);
nb_module *nb_nn_log_softmax(nb_model *m, int axis);
nb_module *nb_nn_flatten(nb_model *m, int start_dim);  /* torch default 1 */
/* torch.nn.Sequential: children in order. Two runs of children are computed
 * as one op each, faster, with the same output and running statistics bit
 * for bit and the same gradients up to rounding: BatchNorm2d, ReLU,
 * MaxPool2d(2) (kernel 2, stride 2, no padding); and Conv2d, BatchNorm2d,
 * ReLU, MaxPool2d(2) on one-channel images that need no gradient (stride 1,
 * dilation 1, up to 5x5, on CPUs with AVX-512), whose backward never forms
 * the gradient of the convolution's output. */
nb_module *nb_nn_sequential(nb_model *m);
/* torch.nn.MaxPool2d / AvgPool2d (opts as nb_max_pool2d / nb_avg_pool2d,
 * copied; stride 0 = kernel), AdaptiveAvgPool2d, Dropout (train/eval from
 * the model's training flag). NULL with NB_ERR_ARG on bad settings. */
struct nb_pool2d_opts;   /* nabla/ops.h */
nb_module *nb_nn_max_pool2d(nb_model *m, const struct nb_pool2d_opts *opts);
nb_module *nb_nn_avg_pool2d(nb_model *m, const struct nb_pool2d_opts *opts);
nb_module *nb_nn_adaptive_avg_pool2d(nb_model *m, int out_h, int out_w);
nb_module *nb_nn_dropout(nb_model *m, float p);
/* torch.nn.BatchNorm1d (input (N,C) or (N,C,L)) and BatchNorm2d ((N,C,H,W)),
 * torch defaults eps 1e-5, momentum 0.1 (NAN = torch's momentum=None: a
 * cumulative average). Parameters "weight" (ones) and "bias" (zeros) when
 * affine; buffers "running_mean" (zeros), "running_var" (ones) and
 * "num_batches_tracked" (0-d; a float count here, int64 in torch), saved with
 * the weights and never trained. Train mode (nb_model_train) normalises with
 * the batch statistics and updates the buffers; eval mode uses the running
 * statistics. */
nb_module *nb_nn_batch_norm1d(nb_model *m, int num_features, float eps, float momentum, int affine);
nb_module *nb_nn_batch_norm2d(nb_model *m, int num_features, float eps, float momentum, int affine);
/* torch.nn.ConvTranspose2d: weight (in, out/groups, kh, kw) and bias (out),
 * PyTorch's default init (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, with
 * torch's fan_in = size(1)*kh*kw = out/groups*kh*kw). opts as
 * nb_conv_transpose2d (copied; NULL = defaults). */
struct nb_conv_transpose2d_opts;   /* nabla/ops.h */
nb_module *nb_nn_conv_transpose2d(nb_model *m, nb_rng *rng, int in_channels, int out_channels,
                                  int kh, int kw, const struct nb_conv_transpose2d_opts *opts,
                                  int bias);
/* torch.nn.InstanceNorm2d (x (N,C,H,W)), torch defaults eps 1e-5,
 * affine 0, track_running_stats 0 (per-instance statistics
 * in train and eval mode). affine: "weight" (ones) and "bias" (zeros). */
nb_module *nb_nn_instance_norm2d(nb_model *m, int num_features, float eps, int affine);
/* torch.nn.utils.weight_norm(layer, "weight", dim): the parameter "weight"
 * (any layer with one: Linear, Conv2d, ...) becomes "weight_v" (same shape
 * and values) and a new "weight_g" (size of dimension dim, 1 elsewhere; 0-d
 * for dim = -1, torch's dim=None: one norm over the whole tensor), initialised
 * to ||v|| so the layer is unchanged; each forward uses
 * w = g * v / ||v|| (norm over every dimension but dim), built from ops, so
 * g and v get their gradients from autograd. Apply it before or after adding
 * the layer to a container. NB_ERR_ARG: no "weight", a container, applied
 * twice, dim out of range. */
nb_status  nb_nn_weight_norm(nb_module *layer, int dim);
/* Append child: its parameters are renamed "<index>.<name>". */
nb_status  nb_sequential_add(nb_module *seq, nb_module *child);
/* Make child a named child of parent (any kind): its parameters and buffers
 * are renamed "<name>.<old name>", as torch's attribute modules. */
nb_status  nb_module_add_child(nb_module *parent, const char *name, nb_module *child);
/* Residual addition: y = x + body(x), body a child named "body"; body must
 * keep x's shape. */
nb_module *nb_nn_residual(nb_model *m, nb_module *body);
/* torchvision's ResNet BasicBlock: out = relu(bn2(conv2(relu(bn1(conv1(x)))))
 * + shortcut(x)); conv1 3x3 stride `stride` padding 1, conv2 3x3 padding 1,
 * both without bias; shortcut = x, or downsample = Sequential(1x1 conv stride
 * `stride` without bias, BatchNorm2d) when stride != 1 or the channel count
 * changes. Children conv1, bn1, relu, conv2, bn2[, downsample] as torchvision
 * names them ("conv1.weight", "downsample.1.running_mean", ...). */
nb_module *nb_nn_basic_block(nb_model *m, nb_rng *rng, int in_channels, int out_channels, int stride);
/* One line per module into buf: "(0): Linear(in_features=784, ...)". */
void       nb_module_print(const nb_module *mod, char *buf, size_t size);

/* ---- initialisation (torch.nn.init; fans as torch: fan_in = size(1) *
 * receptive field, fan_out = size(0) * receptive field) ----------------- */
typedef enum nb_fan_mode { NB_FAN_IN = 0, NB_FAN_OUT } nb_fan_mode;
void  nb_init_uniform(nb_tensor *t, nb_rng *r, float a, float b);
void  nb_init_normal(nb_tensor *t, nb_rng *r, float mean, float std);
void  nb_init_constant(nb_tensor *t, float v);
void  nb_init_xavier_uniform(nb_tensor *t, nb_rng *r, float gain);
void  nb_init_xavier_normal(nb_tensor *t, nb_rng *r, float gain);
/* a: negative slope of the rectifier after the layer (0 for ReLU). */
void  nb_init_kaiming_uniform(nb_tensor *t, nb_rng *r, float a, nb_fan_mode mode);
void  nb_init_kaiming_normal(nb_tensor *t, nb_rng *r, float a, nb_fan_mode mode);
/* torch.nn.init.calculate_gain for "linear", "sigmoid", "tanh", "relu",
 * "leaky_relu" (with param); 1 for unknown names. */
float nb_init_gain(const char *nonlinearity, float param);

/* ---- the model zoo -------------------------------------------------------
 * "mlp": config "784,256,128,100,10" — Flatten then Linear/ReLU pairs (no
 * ReLU after the last); parameter names as nn.Sequential(Flatten, Linear,
 * ReLU, ...) would give ("1.weight", ...).
 * "sequential": any nn.Sequential of these layers, written as text: torch.nn
 * class names (any case) separated by spaces, commas or semicolons, each
 * with torch's arguments in torch's order and names and torch's defaults,
 * e.g. "conv2d(1,32,3,padding=1) batchnorm2d(32) relu maxpool2d(2) flatten
 * linear(6272,10)". A pair is N, (A,B) or AxB; a bool true/false or 1/0.
 * Layers: Conv2d, ConvTranspose2d, Linear, BatchNorm1d, BatchNorm2d,
 * InstanceNorm2d, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax(dim),
 * LogSoftmax(dim), Flatten, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
 * Dropout, ZeroPad2d((left,right,top,bottom)), BasicBlock(in, out, stride).
 * The default is the zoo's "cnn" written out (same names and shapes).
 * NB_ERR_ARG names the layer and argument at fault. */
nb_status  nb_model_build(const char *name, const char *config, nb_rng *rng, nb_model **out);
/* The default configuration of a model name (NULL if unknown). */
const char *nb_model_default_config(const char *name);
/* The zoo's model names in order: nb_model_name(0), ... until NULL. */
const char *nb_model_name(int i);

/* ---- VGG11 and ZeroPad2d (the notes §16) -----------------------------------
 * torch.nn.ZeroPad2d((left, right, top, bottom)): nb_pad2d as a module (no
 * parameters). NULL with NB_ERR_ARG for a negative padding. */
nb_module *nb_nn_zero_pad2d(nb_model *m, int left, int right, int top, int bottom);
/* Zoo models "vgg11" (the notes' class VGG_A) and "vgg11_bn" (torchvision's
 * vgg11_bn: BatchNorm2d after each conv). Children, in forward order:
 * "pad" (ZeroPad2d, only when pad_to > size; no parameters), "features"
 * (convs 3x3 padding 1 of 64 128 M 256 256 M 512 512 M 512 512 M channels
 * times width, each followed by ReLU (vgg11_bn: BatchNorm2d, ReLU), M =
 * MaxPool2d 2), then flatten and "classifier" (Linear(512*width*f*f, hidden),
 * ReLU, Dropout, Linear(hidden, hidden), ReLU, Dropout, Linear(hidden,
 * classes)) with f = (pad_to or size) / 32 rounded down: the classifier's
 * input follows the feature map. Names as torch: "features.0.weight" ...
 * "classifier.6.bias" (vgg11_bn: "features.1.running_mean", ...). At the
 * defaults (the notes' class) 132,863,336 parameters, 7.6 G MACs per image.
 * Initialisation (init=): "torchvision" (default) as torchvision's VGG: convs
 * kaiming_normal(fan_out, relu), Linear weights N(0, 0.01), biases 0; or
 * "torch": each layer's torch default, as the notes' class VGG_A gets them
 * (it sets none itself); or "kaiming": He et al.'s kaiming_normal(fan_in,
 * relu) for every conv and Linear weight, biases 0. N(0, 0.01) suits the
 * 4096-wide classifier; a narrow one (hidden=256) starts with a vanishing
 * signal there, and torch's defaults shrink it at every layer: without
 * BatchNorm only "kaiming" trains such a VGG11 (measured on Fashion-MNIST,
 * width 0.25, hidden 256, lr 0.02: test accuracy 0.58 after 100 steps,
 * chance for the other two).
 * Config: comma-separated key=value pairs, any subset, the rest default:
 *   in=3 size=224 (square input) pad_to=0 (zero-pad the input to this size,
 *   centred: in=1,size=28,pad_to=32 takes Fashion-MNIST; 0 = no padding)
 *   classes=1000 width=1 (channel multiplier, each layer rounded, at least
 *   1) hidden=4096 (classifier width) dropout=0.5 init=torchvision.
 * The padded size must be at least 32. */
typedef enum nb_vgg_init { NB_VGG_INIT_TORCHVISION = 0, NB_VGG_INIT_TORCH, NB_VGG_INIT_KAIMING } nb_vgg_init;
typedef struct nb_vgg_opts {
    int   in_channels, size, pad_to, num_classes, hidden;
    float width, dropout;
    int   batch_norm;               /* 1: vgg11_bn */
    nb_vgg_init init;               /* init=torchvision (0), torch or kaiming */
} nb_vgg_opts;
void      nb_vgg_default_opts(nb_vgg_opts *o);   /* the notes' class; batch_norm 0 */
/* Parse a config into *o (defaults for keys not given; o->batch_norm kept);
 * NB_ERR_ARG naming a bad key or value. */
nb_status nb_vgg_parse_config(const char *config, nb_vgg_opts *o);
/* Build a VGG11 (name "vgg11" or "vgg11_bn", its config the full key list). */
nb_status nb_vgg11(const nb_vgg_opts *o, nb_rng *rng, nb_model **out);

#ifdef __cplusplus
}
#endif
#endif
