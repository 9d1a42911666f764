/* torch.nn.BatchNorm1d and BatchNorm2d on the batch_norm op (the notes §10).
 *
 * State as torch's state_dict: parameters weight (ones) and bias (zeros) when
 * affine; buffers running_mean (zeros), running_var (ones) and
 * num_batches_tracked. torch keeps num_batches_tracked as a 0-d int64; here
 * it is a 0-d float buffer (exact up to 2^24 steps) so that state_dicts map
 * one to one (a torch file's int64 is read back as a float). */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>

/* i[0] num_features, i[1] weight or -1, i[2] bias or -1, i[3] running_mean,
 * i[4] running_var, i[5] num_batches_tracked, i[6] 1 or 2 (BatchNorm1d/2d);
 * f[0] eps, f[1] momentum (NAN: cumulative average, torch's None). */
static nb_tensor *bn_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    char sx[96];
    const int two = m->i[6] == 2;
    const char *kind = two ? "BatchNorm2d" : "BatchNorm1d";
    if (two ? x->ndim != 4 : (x->ndim != 2 && x->ndim != 3))
        return nb__op_fail(ctx, NB_ERR_SHAPE, "%s: expected %s input (got %dD input %s)", kind,
                           two ? "4D (N,C,H,W)" : "2D (N,C) or 3D (N,C,L)", x->ndim,
                           nb_shape_str(x, sx, sizeof sx));
    if (x->shape[1] != m->i[0])
        return nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input %s has %lld channels, expected num_features=%lld", kind,
                           nb_shape_str(x, sx, sizeof sx), (long long)x->shape[1], (long long)m->i[0]);
    nb_model *md = m->model;
    const int training = md->training;
    nb_tensor *w = m->i[1] >= 0 ? nb_model_param(md, (int)m->i[1]) : NULL;
    nb_tensor *b = m->i[2] >= 0 ? nb_model_param(md, (int)m->i[2]) : NULL;
    float *rm = nb_model_param(md, (int)m->i[3])->data, *rv = nb_model_param(md, (int)m->i[4])->data;
    float *tracked = nb_model_param(md, (int)m->i[5])->data;
    /* torch counts the batch first; momentum None averages over all of them */
    const float count = tracked[0] + 1.0f, momentum = isnan(m->f[1]) ? 1.0f / count : m->f[1];
    nb_tensor *y = nb_batch_norm(ctx, x, w, b, rm, rv, training, momentum, m->f[0]);
    if (y && training) tracked[0] = count;
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

nb_module *nb_nn_batch_norm1d(nb_model *m, int num_features, float eps, float momentum, int affine)
{
    return batch_norm(m, 1, num_features, eps, momentum, affine);
}

nb_module *nb_nn_batch_norm2d(nb_model *m, int num_features, float eps, float momentum, int affine)
{
    return batch_norm(m, 2, num_features, eps, momentum, affine);
}
