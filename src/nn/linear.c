/* torch.nn.Linear: y = x W^T + b with W (out,in), b (out). */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>

/* i[0] in, i[1] out, i[2] weight index, i[3] bias index or -1 */
static nb_tensor *linear_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_tensor *w = nb_model_param(m->model, (int)m->i[2]);
    nb_tensor *b = m->i[3] >= 0 ? nb_model_param(m->model, (int)m->i[3]) : NULL;
    return nb_linear(ctx, x, w, b);
}

static void linear_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "in_features=%lld, out_features=%lld, bias=%s", (long long)m->i[0],
             (long long)m->i[1], m->i[3] >= 0 ? "True" : "False");
}

/* in_features MACs per output element; no spatial footprint (returns 0). */
static int linear_geometry(const nb_module *m, nb_layer_geometry *g)
{
    g->macs_per_output = m->i[0];
    return 0;
}

static const nb_module_vt linear_vt = {"Linear", linear_forward, linear_describe, linear_geometry};

nb_module *nb_nn_linear(nb_model *m, nb_rng *rng, int in, int out, int bias)
{
    if (in <= 0 || out <= 0) {
        nb__fail(NB_ERR_ARG, "Linear: in_features=%d and out_features=%d must be positive", in, out);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &linear_vt);
    if (!mod) return NULL;
    mod->i[0] = in;
    mod->i[1] = out;
    int wi = nb__module_add_param(mod, "weight", 2, (int64_t[]){out, in});
    int bi = bias ? nb__module_add_param(mod, "bias", 1, (int64_t[]){out}) : -1;
    if (wi < 0 || (bias && bi < 0)) return NULL;
    mod->i[2] = wi;
    mod->i[3] = bi;
    /* torch: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in));
     * the bias uses the same bound. */
    nb_init_kaiming_uniform(nb_model_param(m, wi), rng, sqrtf(5.0f), NB_FAN_IN);
    if (bias) {
        float bound = 1.0f / sqrtf((float)in);
        nb_init_uniform(nb_model_param(m, bi), rng, -bound, bound);
    }
    return mod;
}
