/* torch.nn.ConvTranspose2d: y = conv_transpose2d(x, W, b) with
 * W (in, out/groups, kh, kw), b (out). */
#include "../core/internal.h"
#include "slots.h"
#include <math.h>
#include <stdio.h>

/* Settings live in the module's integer slots, two 32-bit values per slot:
 * i[0] in | groups, i[1] out, i[2] weight index | bias index (-1: none),
 * i[3] output_padding, i[4] kernel, i[5] stride, i[6] padding,
 * i[7] dilation (each h | w). */

static nb_conv_transpose2d_opts convt_opts(const nb_module *m)
{
    nb_conv_transpose2d_opts o;
    conv_slots(m, o.stride, o.padding, o.dilation, &o.groups);
    o.output_padding[0] = hi32(m->i[3]);
    o.output_padding[1] = lo32(m->i[3]);
    return o;
}

static nb_tensor *convt_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_tensor *w = nb_model_param(m->model, hi32(m->i[2]));
    nb_tensor *b = lo32(m->i[2]) >= 0 ? nb_model_param(m->model, lo32(m->i[2])) : NULL;
    nb_conv_transpose2d_opts o = convt_opts(m);
    return nb_conv_transpose2d(ctx, x, w, b, &o);
}

/* torch's extra_repr: padding, dilation, output_padding, groups and bias
 * only when they differ from the defaults. */
static void convt_describe(const nb_module *m, char *buf, size_t size)
{
    nb_conv_transpose2d_opts o = convt_opts(m);
    if (!size) return;
    size_t n = conv_repr(m, buf, size);
#define CT_APPEND(...)                                                                 \
    do {                                                                               \
        if (n < size) n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__);          \
    } while (0)
    if (o.output_padding[0] || o.output_padding[1])
        CT_APPEND(", output_padding=(%d, %d)", o.output_padding[0], o.output_padding[1]);
    if (o.groups != 1) CT_APPEND(", groups=%d", o.groups);
    if (lo32(m->i[2]) < 0) CT_APPEND(", bias=False");
#undef CT_APPEND
}

/* Every input element feeds out/groups*kh*kw outputs, so the work follows
 * the input; an upsampling layer has no receptive-field step. */
static int convt_geometry(const nb_module *m, nb_layer_geometry *g)
{
    conv_slots_geometry(m, g);
    g->macs_per_input = (int64_t)(m->i[1] / lo32(m->i[0])) * g->kernel[0] * g->kernel[1];
    g->transposed = 1;
    return 1;
}

static const nb_module_vt convt_vt = {"ConvTranspose2d", convt_forward, convt_describe, convt_geometry};

nb_module *nb_nn_conv_transpose2d(nb_model *m, nb_rng *rng, int in, int out, int kh, int kw,
                                  const nb_conv_transpose2d_opts *opts, int bias)
{
    static const nb_conv_transpose2d_opts defaults = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
    nb_conv_transpose2d_opts o = opts ? *opts : defaults;
    for (int d = 0; d < 2; d++) {
        if (o.stride[d] == 0) o.stride[d] = 1;
        if (o.dilation[d] == 0) o.dilation[d] = 1;
    }
    if (o.groups == 0) o.groups = 1;
    if (!m || !rng) {
        nb__fail(NB_ERR_ARG, "ConvTranspose2d: model or generator is NULL");
        return NULL;
    }
    if (in <= 0 || out <= 0 || kh <= 0 || kw <= 0) {
        nb__fail(NB_ERR_ARG,
                 "ConvTranspose2d: in_channels=%d, out_channels=%d and kernel_size=(%d, %d) must be positive", in,
                 out, kh, kw);
        return NULL;
    }
    for (int d = 0; d < 2; d++)
        if (o.stride[d] < 0 || o.padding[d] < 0 || o.output_padding[d] < 0 || o.dilation[d] < 0 || o.groups < 0) {
            nb__fail(NB_ERR_ARG,
                     "ConvTranspose2d: negative option: stride=(%d, %d), padding=(%d, %d), output_padding=(%d, %d), "
                     "dilation=(%d, %d), groups=%d",
                     o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.output_padding[0], o.output_padding[1],
                     o.dilation[0], o.dilation[1], o.groups);
            return NULL;
        }
    for (int d = 0; d < 2; d++)
        if (o.output_padding[d] >= o.stride[d] && o.output_padding[d] >= o.dilation[d]) {
            nb__fail(NB_ERR_ARG,
                     "ConvTranspose2d: output padding must be smaller than either stride or dilation, but got "
                     "output_padding=(%d, %d), stride=(%d, %d), dilation=(%d, %d)",
                     o.output_padding[0], o.output_padding[1], o.stride[0], o.stride[1], o.dilation[0],
                     o.dilation[1]);
            return NULL;
        }
    if (in % o.groups || out % o.groups) {
        nb__fail(NB_ERR_ARG, "ConvTranspose2d: in_channels=%d and out_channels=%d must be divisible by groups=%d",
                 in, out, o.groups);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &convt_vt);
    if (!mod) return NULL;
    mod->i[0] = pack2(in, o.groups);
    mod->i[1] = out;
    mod->i[3] = pack2(o.output_padding[0], o.output_padding[1]);
    mod->i[4] = pack2(kh, kw);
    mod->i[5] = pack2(o.stride[0], o.stride[1]);
    mod->i[6] = pack2(o.padding[0], o.padding[1]);
    mod->i[7] = pack2(o.dilation[0], o.dilation[1]);
    int wi = nb__module_add_param(mod, "weight", 4, (int64_t[]){in, out / o.groups, kh, kw});
    int bi = bias ? nb__module_add_param(mod, "bias", 1, (int64_t[]){out}) : -1;
    if (wi < 0 || (bias && bi < 0)) return NULL;
    mod->i[2] = pack2(wi, bi);
    /* torch: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
     * with torch's fan_in of the weight, size(1)*kh*kw = out/groups*kh*kw;
     * the bias uses the same bound. */
    nb_init_kaiming_uniform(nb_model_param(m, wi), rng, sqrtf(5.0f), NB_FAN_IN);
    if (bias) {
        float bound = (float)(1.0 / sqrt((double)(out / o.groups) * kh * kw));
        nb_init_uniform(nb_model_param(m, bi), rng, -bound, bound);
    }
    return mod;
}
