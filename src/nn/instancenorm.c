/* torch.nn.InstanceNorm2d on the instance_norm op, with torch's defaults
 * (affine=False, track_running_stats=False): every sample and channel is
 * normalised by its own statistics, in train and eval mode alike, so the
 * layer keeps no buffers. */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>

/* i[0] num_features, i[1] weight or -1, i[2] bias or -1; f[0] eps. */
static nb_tensor *in_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    char sx[96];
    if (!x) return NULL;
    if (x->ndim != 4)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "InstanceNorm2d: expected 4D (N,C,H,W) input (got %dD input %s)",
                           x->ndim, nb_shape_str(x, sx, sizeof sx));
    /* torch only warns when affine=False; a mismatch is a bug either way */
    if (x->shape[1] != m->i[0])
        return nb__op_fail(ctx, NB_ERR_SHAPE, "InstanceNorm2d: input %s has %lld channels, expected num_features=%lld",
                           nb_shape_str(x, sx, sizeof sx), (long long)x->shape[1], (long long)m->i[0]);
    nb_tensor *w = m->i[1] >= 0 ? nb_model_param(m->model, (int)m->i[1]) : NULL;
    nb_tensor *b = m->i[2] >= 0 ? nb_model_param(m->model, (int)m->i[2]) : NULL;
    return nb_instance_norm(ctx, x, w, b, m->f[0]);
}

static void in_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "%lld, eps=%g, momentum=0.1, affine=%s, track_running_stats=False", (long long)m->i[0],
             m->f[0], m->i[1] >= 0 ? "True" : "False");
}

static const nb_module_vt in_vt = {"InstanceNorm2d", in_forward, in_describe, NULL};

nb_module *nb_nn_instance_norm2d(nb_model *m, int num_features, float eps, int affine)
{
    if (!m) {
        nb__fail(NB_ERR_ARG, "InstanceNorm2d: model is NULL");
        return NULL;
    }
    if (num_features <= 0) {
        nb__fail(NB_ERR_ARG, "InstanceNorm2d: num_features=%d must be positive", num_features);
        return NULL;
    }
    if (!(eps >= 0) || isinf(eps)) {
        nb__fail(NB_ERR_ARG, "InstanceNorm2d: eps=%g must be finite and >= 0", eps);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &in_vt);
    if (!mod) return NULL;
    mod->i[0] = num_features;
    mod->f[0] = eps;
    int64_t shape[1] = {num_features};
    mod->i[1] = affine ? nb__module_add_param(mod, "weight", 1, shape) : -1;
    mod->i[2] = affine ? nb__module_add_param(mod, "bias", 1, shape) : -1;
    if (affine && (mod->i[1] < 0 || mod->i[2] < 0)) return NULL;
    if (affine) {
        nb_init_constant(nb_model_param(m, (int)mod->i[1]), 1.0f);
        nb_init_constant(nb_model_param(m, (int)mod->i[2]), 0.0f);
    }
    return mod;
}
