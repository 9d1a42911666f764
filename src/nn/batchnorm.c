/* torch.nn.BatchNorm1d and BatchNorm2d on the batch_norm op (the notes §10).
 *
 * State as torch's state_dict: parameters weight (ones) and bias (zeros) when
 * affine; buffers running_mean (zeros), running_var (ones) and
 * num_batches_tracked. torch keeps num_batches_tracked as a 0-d int64; here
 * it is a 0-d float buffer (exact up to 2^24 steps) so that state_dicts map
 * one to one (a torch file's int64 is read back as a float). */
#include "fuse.h"
#include "../ops/batchnorm.h"
#include <math.h>
#include <stdio.h>

/* i[0] num_features, i[1] weight or -1, i[2] bias or -1, i[3] running_mean,
 * i[4] running_var, i[5] num_batches_tracked, i[6] 1 or 2 (BatchNorm1d/2d);
 * f[0] eps, f[1] momentum (NAN: cumulative average, torch's None). */
typedef struct {
    nb_tensor *w, *b;
    float *rm, *rv, *tracked;
    float count, momentum;
} bn_args;

/* The layer's tensors and momentum for input x; 0 (error recorded) when x
 * does not fit the layer. */
static int bn_prepare(nb_module *m, nb_ctx *ctx, nb_tensor *x, bn_args *a)
{
    char sx[96];
    const int two = m->i[6] == 2;
    const char *kind = two ? "BatchNorm2d" : "BatchNorm1d";
    if (two ? x->ndim != 4 : (x->ndim != 2 && x->ndim != 3)) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: expected %s input (got %dD input %s)", kind,
                    two ? "4D (N,C,H,W)" : "2D (N,C) or 3D (N,C,L)", x->ndim, nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    if (x->shape[1] != m->i[0]) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input %s has %lld channels, expected num_features=%lld", kind,
                    nb_shape_str(x, sx, sizeof sx), (long long)x->shape[1], (long long)m->i[0]);
        return 0;
    }
    nb_model *md = m->model;
    a->w = m->i[1] >= 0 ? nb_model_param(md, (int)m->i[1]) : NULL;
    a->b = m->i[2] >= 0 ? nb_model_param(md, (int)m->i[2]) : NULL;
    a->rm = nb_model_param(md, (int)m->i[3])->data;
    a->rv = nb_model_param(md, (int)m->i[4])->data;
    a->tracked = nb_model_param(md, (int)m->i[5])->data;
    /* torch counts the batch first; momentum None averages over all of them */
    a->count = a->tracked[0] + 1.0f;
    a->momentum = isnan(m->f[1]) ? 1.0f / a->count : m->f[1];
    return 1;
}

static nb_tensor *bn_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    bn_args a;
    if (!x || !bn_prepare(m, ctx, x, &a)) return NULL;
    const int training = m->model->training;
    nb_tensor *y = nb_batch_norm(ctx, x, a.w, a.b, a.rm, a.rv, training, a.momentum, m->f[0]);
    if (y && training) a.tracked[0] = a.count;
    return y;
}

static void bn_describe(const nb_module *m, char *buf, size_t size)
{
    char mom[32];
    if (isnan(m->f[1])) snprintf(mom, sizeof mom, "None");
    else snprintf(mom, sizeof mom, "%g", m->f[1]);
    snprintf(buf, size, "%lld, eps=%g, momentum=%s, affine=%s, track_running_stats=True", (long long)m->i[0],
             m->f[0], mom, m->i[1] >= 0 ? "True" : "False");
}

static const nb_module_vt bn1_vt = {"BatchNorm1d", bn_forward, bn_describe, NULL};
static const nb_module_vt bn2_vt = {"BatchNorm2d", bn_forward, bn_describe, NULL};

static nb_module *batch_norm(nb_model *m, int dims, int c, float eps, float momentum, int affine)
{
    const char *kind = dims == 2 ? "BatchNorm2d" : "BatchNorm1d";
    if (c <= 0) {
        nb__fail(NB_ERR_ARG, "%s: num_features=%d must be positive", kind, c);
        return NULL;
    }
    if (!(eps >= 0) || isinf(eps) || isinf(momentum)) {
        nb__fail(NB_ERR_ARG, "%s: eps=%g must be finite and >= 0 and momentum=%g finite (NAN for None)", kind, eps,
                 momentum);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, dims == 2 ? &bn2_vt : &bn1_vt);
    if (!mod) return NULL;
    mod->i[0] = c;
    mod->i[6] = dims;
    mod->f[0] = eps;
    mod->f[1] = momentum;
    int64_t shape[1] = {c};
    mod->i[1] = affine ? nb__module_add_param(mod, "weight", 1, shape) : -1;
    mod->i[2] = affine ? nb__module_add_param(mod, "bias", 1, shape) : -1;
    if (affine && (mod->i[1] < 0 || mod->i[2] < 0)) return NULL;
    mod->i[3] = nb__module_add_buffer(mod, "running_mean", 1, shape);
    mod->i[4] = nb__module_add_buffer(mod, "running_var", 1, shape);
    mod->i[5] = nb__module_add_buffer(mod, "num_batches_tracked", 0, NULL);
    if (mod->i[3] < 0 || mod->i[4] < 0 || mod->i[5] < 0) return NULL;
    if (affine) {
        nb_init_constant(nb_model_param(m, (int)mod->i[1]), 1.0f);
        nb_init_constant(nb_model_param(m, (int)mod->i[2]), 0.0f);
    }
    nb_init_constant(nb_model_param(m, (int)mod->i[3]), 0.0f);
    nb_init_constant(nb_model_param(m, (int)mod->i[4]), 1.0f);
    nb_init_constant(nb_model_param(m, (int)mod->i[5]), 0.0f);
    return mod;
}

/* Whether mods[0..2] (of n) are BatchNorm2d, ReLU, MaxPool2d(2) that the
 * fused op computes for an input of `shape` (N, C, H, W). */
static int bn_relu_pool_run(nb_module *const *mods, int n, const int64_t *shape)
{
    nb_pool2d_opts o;
    if (n < 3 || mods[0]->vt != &bn2_vt || !nb__nn_is_relu(mods[1]) || !nb__nn_max_pool_opts(mods[2], &o)) return 0;
    for (int d = 0; d < 2; d++)
        if (o.kernel[d] != 2 || o.stride[d] != 2 || o.padding[d] != 0 || o.dilation[d] != 1) return 0;
    /* anything else the layers report themselves, one at a time */
    return !o.ceil_mode && shape[1] == mods[0]->i[0] && shape[2] >= 2 && shape[3] >= 2;
}

nb_tensor *nb__nn_bn_relu_pool_forward(nb_module *const *mods, int n, nb_ctx *ctx, nb_tensor *x, int *used)
{
    *used = 0;
    if (x->ndim != 4 || !bn_relu_pool_run(mods, n, x->shape)) return NULL;
    *used = 3;
    bn_args a;
    if (!bn_prepare(mods[0], ctx, x, &a)) return NULL;
    const int training = mods[0]->model->training;
    nb_tensor *y =
        nb__batch_norm_relu_max_pool(ctx, x, a.w, a.b, a.rm, a.rv, training, a.momentum, mods[0]->f[0]);
    if (y && training) a.tracked[0] = a.count;
    return y;
}

nb_tensor *nb__nn_conv_bn_relu_pool_forward(nb_module *const *mods, int n, nb_ctx *ctx, nb_tensor *x, int *used)
{
    *used = 0;
    nb_tensor *cw, *cb;
    nb_conv2d_opts co;
    nb__cd_geom cd;
    if (!ctx || n < 4 || x->requires_grad || !nb__nn_conv2d_args(mods[0], &cw, &cb, &co) ||
        !nb__conv_direct_geometry(x, cw, cb, &co, &cd) ||
        !bn_relu_pool_run(mods + 1, n - 1, (int64_t[]){x->shape[0], cd.O, cd.OH, cd.OW}))
        return NULL;
    *used = 4;
    /* the convolution's output, not recorded: the fused op's node stands for it */
    const int grad = nb_set_grad_enabled(ctx, 0);
    nb_tensor *y1 = nb_conv2d(ctx, x, cw, cb, &co);
    nb_set_grad_enabled(ctx, grad);
    bn_args a;
    if (!y1 || !bn_prepare(mods[1], ctx, y1, &a)) return NULL;
    const int training = mods[1]->model->training;
    nb_tensor *y = nb__conv_batch_norm_relu_max_pool(ctx, x, cw, cb, &co, y1, a.w, a.b, a.rm, a.rv, training,
                                                     a.momentum, mods[1]->f[0]);
    if (y && training) a.tracked[0] = a.count;
    return y;
}

nb_module *nb_nn_batch_norm1d(nb_model *m, int num_features, float eps, float momentum, int affine)
{
    return batch_norm(m, 1, num_features, eps, momentum, affine);
}

nb_module *nb_nn_batch_norm2d(nb_model *m, int num_features, float eps, float momentum, int affine)
{
    return batch_norm(m, 2, num_features, eps, momentum, affine);
}
