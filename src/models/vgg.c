/* VGG11 (configuration "A" of Simonyan & Zisserman), as the notes' PyTorch
 * class VGG_A (§16) writes it, and its batch-norm variant as torchvision's
 * vgg11_bn names it.
 *
 * The model is a root module with the children of the torch class:
 *   [pad]       ZeroPad2d, only with pad_to (no parameters, so the
 *               state_dict names are those of VGG_A)
 *   features    Sequential: conv3-64 M conv3-128 M conv3-256 x2 M conv3-512
 *               x2 M conv3-512 x2 M, each conv followed by ReLU (by
 *               BatchNorm2d then ReLU in vgg11_bn)
 *   classifier  Sequential: Linear(512*f*f, hidden) ReLU Dropout
 *               Linear(hidden, hidden) ReLU Dropout Linear(hidden, classes)
 * and forward = classifier(flatten(features(pad(x)))), f the size of the
 * last feature map (7 at 224, 1 at 32). */
#include "../core/internal.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define VGG_POOLS 5           /* the feature map halves five times */
#define VGG_MAX_SIZE 8192
#define VGG_MAX_WIDTH 16.0f
#define VGG_MAX_HIDDEN 65536

/* Configuration A: output channels of each conv at width 1, 0 = max pool. */
static const int vgg11_cfg[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
#define VGG11_LAYERS ((int)(sizeof vgg11_cfg / sizeof vgg11_cfg[0]))

void nb_vgg_default_opts(nb_vgg_opts *o)
{
    *o = (nb_vgg_opts){.in_channels = 3, .size = 224, .pad_to = 0, .num_classes = 1000, .width = 1.0f,
                       .hidden = 4096, .dropout = 0.5f, .batch_norm = 0};
}

/* Channels of a width-1 layer at this width multiplier (at least 1). */
static int scaled(int channels, float width)
{
    long c = lroundf((float)channels * width);
    return c < 1 ? 1 : (int)c;
}

/* The size of the image the convolutions see. */
static int padded_size(const nb_vgg_opts *o) { return o->pad_to ? o->pad_to : o->size; }

static nb_status check_opts(const nb_vgg_opts *o)
{
    if (o->in_channels < 1 || o->in_channels > 65536)
        return nb__fail(NB_ERR_ARG, "vgg: in=%d input channels (1 to 65536)", o->in_channels);
    if (o->size < 1 || o->size > VGG_MAX_SIZE)
        return nb__fail(NB_ERR_ARG, "vgg: size=%d (1 to %d)", o->size, VGG_MAX_SIZE);
    if (o->pad_to && (o->pad_to < o->size || o->pad_to > VGG_MAX_SIZE))
        return nb__fail(NB_ERR_ARG, "vgg: pad_to=%d must be 0 (none) or between size=%d and %d", o->pad_to,
                        o->size, VGG_MAX_SIZE);
    if (padded_size(o) < (1 << VGG_POOLS))
        return nb__fail(NB_ERR_ARG, "vgg: a %dx%d input does not survive five 2x2 poolings (at least 32; "
                        "pad_to=32 pads a smaller image)", padded_size(o), padded_size(o));
    if (o->num_classes < 1 || o->num_classes > (1 << 24))
        return nb__fail(NB_ERR_ARG, "vgg: classes=%d (1 to 2^24)", o->num_classes);
    if (!(o->width > 0.0f && o->width <= VGG_MAX_WIDTH))
        return nb__fail(NB_ERR_ARG, "vgg: width=%g must be in (0, %g]", (double)o->width, (double)VGG_MAX_WIDTH);
    if (o->hidden < 1 || o->hidden > VGG_MAX_HIDDEN)
        return nb__fail(NB_ERR_ARG, "vgg: hidden=%d (1 to %d)", o->hidden, VGG_MAX_HIDDEN);
    if ((unsigned)o->init > NB_VGG_INIT_KAIMING) return nb__fail(NB_ERR_ARG, "vgg: init %d unknown", (int)o->init);
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f))
        return nb__fail(NB_ERR_ARG, "vgg: dropout=%g must be in [0, 1)", (double)o->dropout);
    return NB_OK;
}

/* The init= schemes other than torch's layer defaults, which the layer
 * constructors drew first. torchvision's VGG._initialize_weights:
 * kaiming_normal_(fan_out, relu) for convs, N(0, 0.01) for Linear weights,
 * zero biases; kaiming: kaiming_normal_(fan_in, relu) for both, zero
 * biases. BatchNorm keeps its ones and zeros. */
static void init_weights(nb_model *m, nb_rng *rng, nb_vgg_init init)
{
    for (int i = 0; i < m->nparams; i++) {
        nb_param *p = &m->params[i];
        const char *dot = strrchr(p->name, '.');
        int is_bias = dot && !strcmp(dot, ".bias");
        if (p->buffer) continue;
        if (p->t.ndim == 4)
            nb_init_kaiming_normal(&p->t, rng, 0.0f, init == NB_VGG_INIT_KAIMING ? NB_FAN_IN : NB_FAN_OUT);
        else if (p->t.ndim == 2 && init == NB_VGG_INIT_KAIMING) nb_init_kaiming_normal(&p->t, rng, 0.0f, NB_FAN_IN);
        else if (p->t.ndim == 2) nb_init_normal(&p->t, rng, 0.0f, 0.01f);
        else if (is_bias) nb_init_constant(&p->t, 0.0f);
    }
}

static const char *const init_names[] = {"torchvision", "torch", "kaiming"};

static nb_tensor *vgg_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    for (int i = 0; i < m->nchildren && x; i++) {
        if (!strcmp(m->child_names[i], "classifier")) x = nb_flatten(ctx, x, 1);
        x = m->children[i]->vt->forward(m->children[i], ctx, x);
    }
    return x;
}

static void vgg_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "%s", m->model->config);
}

static const nb_module_vt vgg_vt = {"VGG", vgg_forward, vgg_describe, NULL};

static nb_status build_features(nb_model *m, nb_module *seq, const nb_vgg_opts *o, nb_rng *rng, int *channels)
{
    nb_conv2d_opts pad1 = {.padding = {1, 1}};
    nb_pool2d_opts pool2 = {.kernel = {2, 2}};
    int c = o->in_channels;
    nb_status s = NB_OK;
    for (int k = 0; k < VGG11_LAYERS && !s; k++) {
        if (!vgg11_cfg[k]) {
            s = nb_sequential_add(seq, nb_nn_max_pool2d(m, &pool2));
            continue;
        }
        int out = scaled(vgg11_cfg[k], o->width);
        s = nb_sequential_add(seq, nb_nn_conv2d(m, rng, c, out, 3, 3, &pad1, 1));
        if (!s && o->batch_norm) s = nb_sequential_add(seq, nb_nn_batch_norm2d(m, out, 1e-5f, 0.1f, 1));
        if (!s) s = nb_sequential_add(seq, nb_nn_relu(m));
        c = out;
    }
    *channels = c;
    return s;
}

static nb_status build_classifier(nb_model *m, nb_module *seq, const nb_vgg_opts *o, nb_rng *rng, int flat)
{
    nb_module *layers[] = {
        nb_nn_linear(m, rng, flat, o->hidden, 1),          nb_nn_relu(m), nb_nn_dropout(m, o->dropout),
        nb_nn_linear(m, rng, o->hidden, o->hidden, 1),     nb_nn_relu(m), nb_nn_dropout(m, o->dropout),
        nb_nn_linear(m, rng, o->hidden, o->num_classes, 1),
    };
    nb_status s = NB_OK;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0] && !s; i++) s = nb_sequential_add(seq, layers[i]);
    return s;
}

/* Build the modules of o into the empty model m. */
static nb_status build_vgg(nb_model *m, const nb_vgg_opts *o, nb_rng *rng)
{
    nb_status s = check_opts(o);
    if (s) return s;
    int fmap = padded_size(o) >> VGG_POOLS, channels = scaled(512, o->width);
    int64_t flat = (int64_t)channels * fmap * fmap;
    if (flat > INT_MAX || flat * o->hidden > ((int64_t)1 << 32))
        return nb__fail(NB_ERR_ARG, "vgg: %d channels of %dx%d into %d hidden units are too many parameters for "
                        "the classifier (at most 2^32)", channels, fmap, fmap, o->hidden);
    nb_module *root = nb_module_new(m, &vgg_vt);
    nb_module *features = nb_nn_sequential(m), *classifier = nb_nn_sequential(m);
    if (!root || !features || !classifier) return NB_ERR_NOMEM;
    m->root = root;
    if (o->pad_to > o->size) {
        int before = (o->pad_to - o->size) / 2, after = o->pad_to - o->size - before;
        s = nb_module_add_child(root, "pad", nb_nn_zero_pad2d(m, before, after, before, after));
    }
    if (!s) s = build_features(m, features, o, rng, &channels);
    if (!s) s = build_classifier(m, classifier, o, rng, (int)flat);
    if (!s) s = nb_module_add_child(root, "features", features);
    if (!s) s = nb_module_add_child(root, "classifier", classifier);
    if (!s && o->init != NB_VGG_INIT_TORCH) init_weights(m, rng, o->init);
    return s;
}

/* One "key=value" of a config into o; NB_ERR_ARG names a bad one. */
static nb_status parse_pair(const char *key, size_t klen, const char *val, nb_vgg_opts *o)
{
    static const char *const ints[] = {"in", "size", "pad_to", "classes", "hidden"};
    int *const targets[] = {&o->in_channels, &o->size, &o->pad_to, &o->num_classes, &o->hidden};
    char *end;
    errno = 0;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strlen(ints[i]) != klen || strncmp(key, ints[i], klen)) continue;
        long v = strtol(val, &end, 10);
        if (end == val || (*end && *end != ',') || errno || v < 0 || v > INT_MAX) break;
        *targets[i] = (int)v;
        return NB_OK;
    }
    float *const floats[] = {&o->width, &o->dropout};
    static const char *const fnames[] = {"width", "dropout"};
    for (size_t i = 0; i < 2; i++) {
        if (strlen(fnames[i]) != klen || strncmp(key, fnames[i], klen)) continue;
        float v = strtof(val, &end);
        if (end == val || (*end && *end != ',') || errno || !isfinite(v)) break;
        *floats[i] = v;
        return NB_OK;
    }
    size_t vlen = strcspn(val, ",");
    if (klen == 4 && !strncmp(key, "init", 4))
        for (int i = 0; i < 3; i++)
            if (strlen(init_names[i]) == vlen && !strncmp(val, init_names[i], vlen)) {
                o->init = (nb_vgg_init)i;
                return NB_OK;
            }
    return nb__fail(NB_ERR_ARG, "vgg: bad config entry \"%.*s=%.*s\" (keys: in, size, pad_to, classes, width, "
                    "hidden, dropout, init=torchvision|torch|kaiming)", (int)klen, key, (int)vlen, val);
}

nb_status nb_vgg_parse_config(const char *config, nb_vgg_opts *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "vgg: options are NULL");
    int bn = o->batch_norm;
    nb_vgg_default_opts(o);
    o->batch_norm = bn;
    for (const char *p = config ? config : ""; *p;) {
        const char *eq = strchr(p, '='), *comma = strchr(p, ',');
        if (!eq || (comma && comma < eq))
            return nb__fail(NB_ERR_ARG, "vgg: config \"%s\" must be key=value pairs separated by commas, like "
                            "in=1,size=28,pad_to=32,classes=10", config);
        nb_status s = parse_pair(p, (size_t)(eq - p), eq + 1, o);
        if (s) return s;
        p = comma ? comma + 1 : eq + strlen(eq);
    }
    return check_opts(o);
}

/* The zoo's builders (zoo.c): the config string into options, then build. */
static nb_status build_named(nb_model *m, const char *config, nb_rng *rng, int batch_norm)
{
    nb_vgg_opts o = {.batch_norm = batch_norm};
    nb_status s = nb_vgg_parse_config(config, &o);
    return s ? s : build_vgg(m, &o, rng);
}

nb_status nb__build_vgg11(nb_model *m, const char *config, nb_rng *rng) { return build_named(m, config, rng, 0); }
nb_status nb__build_vgg11_bn(nb_model *m, const char *config, nb_rng *rng) { return build_named(m, config, rng, 1); }

nb_status nb_vgg11(const nb_vgg_opts *o, nb_rng *rng, nb_model **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "vgg: out is NULL");
    *out = NULL;
    if (!o || !rng) return nb__fail(NB_ERR_ARG, "vgg: options or generator is NULL");
    nb_status s = check_opts(o);
    if (s) return s;
    char config[256];
    snprintf(config, sizeof config, "in=%d,size=%d,pad_to=%d,classes=%d,width=%.9g,hidden=%d,dropout=%.9g,init=%s",
             o->in_channels, o->size, o->pad_to, o->num_classes, (double)o->width, o->hidden, (double)o->dropout,
             init_names[o->init]);
    nb_model *m = nb_model_new(o->batch_norm ? "vgg11_bn" : "vgg11", config);
    if (!m) return NB_ERR_NOMEM;
    s = build_vgg(m, o, rng);
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}
