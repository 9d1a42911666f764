/* torch.nn.Conv2d: y = conv2d(x, W, b) with W (out, in/groups, kh, kw), b (out). */
#include "../core/internal.h"
#include "fuse.h"
#include "slots.h"
#include <math.h>
#include <stdio.h>

/* Settings live in the module's integer slots, two 32-bit values per slot:
 * i[0] in | groups, i[1] out, i[2] weight index, i[3] bias index or -1,
 * i[4] kernel, i[5] stride, i[6] padding, i[7] dilation (each h | w). */

static const nb_module_vt conv2d_vt;

static nb_conv2d_opts conv_opts(const nb_module *m)
{
    nb_conv2d_opts o;
    conv_slots(m, o.stride, o.padding, o.dilation, &o.groups);
    return o;
}

static nb_tensor *conv2d_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_tensor *w = nb_model_param(m->model, (int)m->i[2]);
    nb_tensor *b = m->i[3] >= 0 ? nb_model_param(m->model, (int)m->i[3]) : NULL;
    nb_conv2d_opts o = conv_opts(m);
    return nb_conv2d(ctx, x, w, b, &o);
}

int nb__nn_conv2d_args(const nb_module *m, nb_tensor **w, nb_tensor **b, nb_conv2d_opts *o)
{
    if (m->vt != &conv2d_vt) return 0;
    *w = nb_model_param(m->model, (int)m->i[2]);
    *b = m->i[3] >= 0 ? nb_model_param(m->model, (int)m->i[3]) : NULL;
    *o = conv_opts(m);
    return 1;
}

/* torch's Conv2d.extra_repr: padding, dilation, groups and bias only when
 * they differ from the defaults. */
static void conv2d_describe(const nb_module *m, char *buf, size_t size)
{
    if (!size) return;
    size_t n = conv_repr(m, buf, size);
    const int groups = lo32(m->i[0]);
    if (groups != 1 && n < size) n += (size_t)snprintf(buf + n, size - n, ", groups=%d", groups);
    if (m->i[3] < 0 && n < size) snprintf(buf + n, size - n, ", bias=False");
}

static int conv2d_geometry(const nb_module *m, nb_layer_geometry *g)
{
    conv_slots_geometry(m, g);
    g->macs_per_output = (int64_t)(hi32(m->i[0]) / lo32(m->i[0])) * g->kernel[0] * g->kernel[1];
    return 1;
}

static const nb_module_vt conv2d_vt = {"Conv2d", conv2d_forward, conv2d_describe, conv2d_geometry};

nb_module *nb_nn_conv2d(nb_model *m, nb_rng *rng, int in, int out, int kh, int kw, const nb_conv2d_opts *opts,
                        int bias)
{
    static const nb_conv2d_opts defaults = {{1, 1}, {0, 0}, {1, 1}, 1};
    nb_conv2d_opts o = opts ? *opts : defaults;
    for (int d = 0; d < 2; d++) {
        if (o.stride[d] == 0) o.stride[d] = 1;
        if (o.dilation[d] == 0) o.dilation[d] = 1;
    }
    if (o.groups == 0) o.groups = 1;
    if (!m || !rng) {
        nb__fail(NB_ERR_ARG, "Conv2d: model or generator is NULL");
        return NULL;
    }
    if (in <= 0 || out <= 0 || kh <= 0 || kw <= 0) {
        nb__fail(NB_ERR_ARG, "Conv2d: in_channels=%d, out_channels=%d and kernel_size=(%d, %d) must be positive",
                 in, out, kh, kw);
        return NULL;
    }
    if (o.stride[0] < 0 || o.stride[1] < 0 || o.padding[0] < 0 || o.padding[1] < 0 || o.dilation[0] < 0 ||
        o.dilation[1] < 0 || o.groups < 0) {
        nb__fail(NB_ERR_ARG, "Conv2d: negative option: stride=(%d, %d), padding=(%d, %d), dilation=(%d, %d), "
                             "groups=%d",
                 o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0], o.dilation[1], o.groups);
        return NULL;
    }
    if (in % o.groups || out % o.groups) {
        nb__fail(NB_ERR_ARG, "Conv2d: in_channels=%d and out_channels=%d must be divisible by groups=%d", in, out,
                 o.groups);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &conv2d_vt);
    if (!mod) return NULL;
    mod->i[0] = pack2(in, o.groups);
    mod->i[1] = out;
    mod->i[4] = pack2(kh, kw);
    mod->i[5] = pack2(o.stride[0], o.stride[1]);
    mod->i[6] = pack2(o.padding[0], o.padding[1]);
    mod->i[7] = pack2(o.dilation[0], o.dilation[1]);
    int wi = nb__module_add_param(mod, "weight", 4, (int64_t[]){out, in / o.groups, kh, kw});
    int bi = bias ? nb__module_add_param(mod, "bias", 1, (int64_t[]){out}) : -1;
    if (wi < 0 || (bias && bi < 0)) return NULL;
    mod->i[2] = wi;
    mod->i[3] = bi;
    /* torch: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
     * fan_in = in/groups*kh*kw; the bias uses the same bound. */
    nb_init_kaiming_uniform(nb_model_param(m, wi), rng, sqrtf(5.0f), NB_FAN_IN);
    if (bias) {
        float bound = (float)(1.0 / sqrt((double)(in / o.groups) * kh * kw));
        nb_init_uniform(nb_model_param(m, bi), rng, -bound, bound);
    }
    return mod;
}
