/* Pooling and dropout modules: torch.nn.MaxPool2d, AvgPool2d,
 * AdaptiveAvgPool2d and Dropout (train/eval from the owning model). */
#include "fuse.h"
#include <stdio.h>

/* Pool settings in the module: i[0..1] kernel, i[2..3] stride (resolved),
 * i[4..5] padding, i[6..7] dilation (resolved); f[0] ceil_mode, f[1]
 * count_include_pad. */
static nb_pool2d_opts pool_opts(const nb_module *m)
{
    nb_pool2d_opts o;
    memset(&o, 0, sizeof o);
    for (int k = 0; k < 2; k++) {
        o.kernel[k] = (int)m->i[0 + k];
        o.stride[k] = (int)m->i[2 + k];
        o.padding[k] = (int)m->i[4 + k];
        o.dilation[k] = (int)m->i[6 + k];
    }
    o.ceil_mode = m->f[0] != 0.0f;
    o.count_include_pad = m->f[1] != 0.0f;
    return o;
}

static nb_tensor *max_fw(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_pool2d_opts o = pool_opts(m);
    return nb_max_pool2d(ctx, x, &o);
}

static nb_tensor *avg_fw(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_pool2d_opts o = pool_opts(m);
    return nb_avg_pool2d(ctx, x, &o);
}

/* "2" when both values agree, "(2, 3)" otherwise (torch prints what it was
 * given; an int is the common case). */
static const char *pair(char *b, size_t size, int64_t h, int64_t w)
{
    if (h == w) snprintf(b, size, "%lld", (long long)h);
    else snprintf(b, size, "(%lld, %lld)", (long long)h, (long long)w);
    return b;
}

static void max_desc(const nb_module *m, char *buf, size_t size)
{
    char k[32], s[32], p[32], d[32];
    snprintf(buf, size, "kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s",
             pair(k, sizeof k, m->i[0], m->i[1]), pair(s, sizeof s, m->i[2], m->i[3]),
             pair(p, sizeof p, m->i[4], m->i[5]), pair(d, sizeof d, m->i[6], m->i[7]),
             m->f[0] != 0.0f ? "True" : "False");
}

/* torch's AvgPool2d.extra_repr shows only these three. */
static void avg_desc(const nb_module *m, char *buf, size_t size)
{
    char k[32], s[32], p[32];
    snprintf(buf, size, "kernel_size=%s, stride=%s, padding=%s", pair(k, sizeof k, m->i[0], m->i[1]),
             pair(s, sizeof s, m->i[2], m->i[3]), pair(p, sizeof p, m->i[4], m->i[5]));
}

static int pool_geometry(const nb_module *m, nb_layer_geometry *g, int64_t macs)
{
    for (int k = 0; k < 2; k++) {
        g->kernel[k] = (int)m->i[0 + k];
        g->stride[k] = (int)m->i[2 + k];
        g->padding[k] = (int)m->i[4 + k];
        g->dilation[k] = (int)m->i[6 + k];
    }
    g->macs_per_output = macs;
    return 1;
}

static int max_geom(const nb_module *m, nb_layer_geometry *g) { return pool_geometry(m, g, 0); }
static int avg_geom(const nb_module *m, nb_layer_geometry *g) { return pool_geometry(m, g, m->i[0] * m->i[1]); }

static const nb_module_vt max_vt = {"MaxPool2d", max_fw, max_desc, max_geom};
static const nb_module_vt avg_vt = {"AvgPool2d", avg_fw, avg_desc, avg_geom};

int nb__nn_max_pool_opts(const nb_module *m, nb_pool2d_opts *o)
{
    if (m->vt != &max_vt) return 0;
    *o = pool_opts(m);
    return 1;
}

/* Checks the options as the ops will (so a bad module fails when built) and
 * stores them resolved. */
static nb_module *pool_new(nb_model *m, const nb_module_vt *vt, const nb_pool2d_opts *o, int avg)
{
    const char *name = vt->kind;
    if (!m) {
        nb__fail(NB_ERR_ARG, "%s: model is NULL", name);
        return NULL;
    }
    if (!o) {
        nb__fail(NB_ERR_ARG, "%s: options are NULL (the kernel size must be given)", name);
        return NULL;
    }
    int k[2], s[2], p[2], d[2];
    for (int i = 0; i < 2; i++) {
        k[i] = o->kernel[i];
        s[i] = o->stride[i] ? o->stride[i] : o->kernel[i];
        p[i] = o->padding[i];
        d[i] = o->dilation[i] ? o->dilation[i] : 1;
        if (k[i] <= 0 || s[i] <= 0 || d[i] <= 0 || p[i] < 0) {
            nb__fail(NB_ERR_ARG,
                     "%s: kernel size, stride and dilation must be positive and padding non-negative, got "
                     "kernel (%d, %d), stride (%d, %d), padding (%d, %d), dilation (%d, %d)",
                     name, o->kernel[0], o->kernel[1], o->stride[0], o->stride[1], o->padding[0], o->padding[1],
                     o->dilation[0], o->dilation[1]);
            return NULL;
        }
        if (p[i] > k[i] / 2) {
            nb__fail(NB_ERR_ARG, "%s: padding (%d, %d) must be at most half the kernel size (%d, %d)", name,
                     o->padding[0], o->padding[1], o->kernel[0], o->kernel[1]);
            return NULL;
        }
    }
    if (avg && (d[0] != 1 || d[1] != 1)) {
        nb__fail(NB_ERR_ARG, "%s: dilation must be 1 (torch's AvgPool2d has none), got (%d, %d)", name, d[0],
                 d[1]);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, vt);
    if (!mod) return NULL;
    for (int i = 0; i < 2; i++) {
        mod->i[0 + i] = k[i];
        mod->i[2 + i] = s[i];
        mod->i[4 + i] = p[i];
        mod->i[6 + i] = d[i];
    }
    mod->f[0] = o->ceil_mode ? 1.0f : 0.0f;
    mod->f[1] = o->count_include_pad ? 1.0f : 0.0f;
    return mod;
}

nb_module *nb_nn_max_pool2d(nb_model *m, const nb_pool2d_opts *opts) { return pool_new(m, &max_vt, opts, 0); }
nb_module *nb_nn_avg_pool2d(nb_model *m, const nb_pool2d_opts *opts) { return pool_new(m, &avg_vt, opts, 1); }

/* ---- AdaptiveAvgPool2d: i[0], i[1] output size ------------------------------ */
static nb_tensor *adaptive_fw(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    return nb_adaptive_avg_pool2d(ctx, x, (int)m->i[0], (int)m->i[1]);
}

static void adaptive_desc(const nb_module *m, char *buf, size_t size)
{
    char o[32];
    snprintf(buf, size, "output_size=%s", pair(o, sizeof o, m->i[0], m->i[1]));
}

static const nb_module_vt adaptive_vt = {"AdaptiveAvgPool2d", adaptive_fw, adaptive_desc, NULL};

nb_module *nb_nn_adaptive_avg_pool2d(nb_model *m, int out_h, int out_w)
{
    if (out_h < 1 || out_w < 1) {
        nb__fail(NB_ERR_ARG, "AdaptiveAvgPool2d: output size must be positive, got (%d, %d)", out_h, out_w);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &adaptive_vt);
    if (!mod) return NULL;
    mod->i[0] = out_h;
    mod->i[1] = out_w;
    return mod;
}

/* ---- Dropout: f[0] p ----------------------------------------------------------- */
static nb_tensor *dropout_fw(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    return nb_dropout(ctx, x, m->f[0], m->model->training);
}

static void dropout_desc(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "p=%g, inplace=False", (double)m->f[0]);
}

static const nb_module_vt dropout_vt = {"Dropout", dropout_fw, dropout_desc, NULL};

nb_module *nb_nn_dropout(nb_model *m, float p)
{
    if (!(p >= 0.0f && p <= 1.0f)) {
        nb__fail(NB_ERR_ARG, "Dropout: probability p must be between 0 and 1, got %g", (double)p);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &dropout_vt);
    if (mod) mod->f[0] = p;
    return mod;
}
