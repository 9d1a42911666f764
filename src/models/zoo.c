/* The model zoo: build a model from its name and configuration string. */
#include "../core/internal.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#define NB__MLP_MAX_LAYERS 16

/* The default "sequential": the zoo's "cnn", written out layer by layer. */
#define NB__SEQUENTIAL_CNN                                                                          \
    "conv2d(1,32,3,padding=1) batchnorm2d(32) relu maxpool2d(2) conv2d(32,64,3,padding=1) batchnorm2d(64) " \
    "relu maxpool2d(2) flatten linear(3136,128) relu dropout(0.3) linear(128,10)"

/* Parse "784,256,128,10" into sizes; returns the count or -1. */
static int parse_sizes(const char *config, int *sizes, int max)
{
    int n = 0;
    const char *p = config;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > (1 << 24) || n == max) return -1;
        sizes[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

/* nn.Sequential(Flatten(), Linear, ReLU, ..., Linear) */
static nb_status build_mlp(nb_model *m, const char *config, nb_rng *rng)
{
    int sizes[NB__MLP_MAX_LAYERS + 1];
    int n = parse_sizes(config, sizes, NB__MLP_MAX_LAYERS + 1);
    if (n < 2)
        return nb__fail(NB_ERR_ARG, "mlp: config \"%s\" must be layer sizes like 784,256,10 (2 to %d positive integers)",
                        config, NB__MLP_MAX_LAYERS + 1);
    nb_module *seq = nb_nn_sequential(m);
    if (!seq) return NB_ERR_NOMEM;
    m->root = seq;
    nb_status s = nb_sequential_add(seq, nb_nn_flatten(m, 1));
    for (int i = 0; i + 1 < n && !s; i++) {
        s = nb_sequential_add(seq, nb_nn_linear(m, rng, sizes[i], sizes[i + 1], 1));
        if (!s && i + 2 < n) s = nb_sequential_add(seq, nb_nn_relu(m));
    }
    return s;
}

/* The notes' CNN for 28x28 images (issue: conv 3x3 32 -> BN -> ReLU -> maxpool
 * 2 -> conv 3x3 64 -> BN -> ReLU -> maxpool 2 -> flatten -> Linear 3136->128
 * -> ReLU -> Dropout 0.3 -> Linear 128->10). config "C,H,W,c1,c2,hidden,classes"
 * ("1,28,28,32,64,128,10"); names as the same nn.Sequential in torch. */
static nb_status build_cnn(nb_model *m, const char *config, nb_rng *rng)
{
    int v[7];
    if (parse_sizes(config, v, 7) != 7)
        return nb__fail(NB_ERR_ARG, "cnn: config \"%s\" must be C,H,W,conv1,conv2,hidden,classes like 1,28,28,32,64,128,10",
                        config);
    if (v[1] % 4 || v[2] % 4) return nb__fail(NB_ERR_ARG, "cnn: input height and width must be multiples of 4");
    int64_t flat = (int64_t)v[4] * (v[1] / 4); /* features into the first Linear, kept within int */
    if (flat > INT_MAX / (v[2] / 4))
        return nb__fail(NB_ERR_ARG, "cnn: config \"%s\" gives more than %d features after the convolutions", config,
                        INT_MAX);
    flat *= v[2] / 4;
    nb_module *seq = nb_nn_sequential(m);
    if (!seq) return NB_ERR_NOMEM;
    m->root = seq;
    nb_conv2d_opts pad1 = {.padding = {1, 1}};
    nb_pool2d_opts pool2 = {.kernel = {2, 2}};
    nb_module *layers[] = {
        nb_nn_conv2d(m, rng, v[0], v[3], 3, 3, &pad1, 1),
        nb_nn_batch_norm2d(m, v[3], 1e-5f, 0.1f, 1),
        nb_nn_relu(m),
        nb_nn_max_pool2d(m, &pool2),
        nb_nn_conv2d(m, rng, v[3], v[4], 3, 3, &pad1, 1),
        nb_nn_batch_norm2d(m, v[4], 1e-5f, 0.1f, 1),
        nb_nn_relu(m),
        nb_nn_max_pool2d(m, &pool2),
        nb_nn_flatten(m, 1),
        nb_nn_linear(m, rng, (int)flat, v[5], 1),
        nb_nn_relu(m),
        nb_nn_dropout(m, 0.3f),
        nb_nn_linear(m, rng, v[5], v[6], 1),
    };
    nb_status s = NB_OK;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0] && !s; i++) s = nb_sequential_add(seq, layers[i]);
    return s;
}

/* VGG11 and VGG11-BN (vgg.c) */
nb_status nb__build_vgg11(nb_model *m, const char *config, nb_rng *rng);
nb_status nb__build_vgg11_bn(nb_model *m, const char *config, nb_rng *rng);
/* the recurrent models (seq.c, nabla/seq.h) */
nb_status nb__build_seq_classifier(nb_model *m, const char *config, nb_rng *rng);
nb_status nb__build_charlm(nb_model *m, const char *config, nb_rng *rng);
/* any nn.Sequential written as text (spec.c) */
nb_status nb__build_sequential(nb_model *m, const char *config, nb_rng *rng);

typedef struct {
    const char *name, *default_config;
    nb_status (*build)(nb_model *m, const char *config, nb_rng *rng);
} nb__zoo_entry;

static const nb__zoo_entry zoo[] = {
    {"mlp", "784,256,128,100,10", build_mlp},
    {"cnn", "1,28,28,32,64,128,10", build_cnn},
    {"vgg11", "in=3,size=224,classes=1000", nb__build_vgg11},       /* vgg.c */
    {"vgg11_bn", "in=3,size=224,classes=1000", nb__build_vgg11_bn},
    {"lstm", "28,28,128,10,lstm", nb__build_seq_classifier},         /* seq.c */
    {"charlm", "96,64,256,2,lstm", nb__build_charlm},
    {"sequential", NB__SEQUENTIAL_CNN, nb__build_sequential},        /* spec.c */
};

const char *nb_model_name(int i)
{
    return i >= 0 && i < (int)(sizeof zoo / sizeof zoo[0]) ? zoo[i].name : NULL;
}

/* "mlp, cnn, ..." for messages */
static void zoo_names(char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; nb_model_name(i) && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", nb_model_name(i));
}

const char *nb_model_default_config(const char *name)
{
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0]; i++)
        if (name && !strcmp(zoo[i].name, name)) return zoo[i].default_config;
    return NULL;
}

nb_status nb_model_build(const char *name, const char *config, nb_rng *rng, nb_model **out)
{
    *out = NULL;
    const nb__zoo_entry *e = NULL;
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0]; i++)
        if (name && !strcmp(zoo[i].name, name)) e = &zoo[i];
    if (!e) {
        char known[256];
        zoo_names(known, sizeof known);
        return nb__fail(NB_ERR_NOTFOUND, "unknown model '%s' (known: %s)", name ? name : "(null)", known);
    }
    if (!config || !*config) config = e->default_config;
    if (strlen(config) >= NB_MODEL_CONFIG_MAX)
        return nb__fail(NB_ERR_ARG, "%s: config of %zu characters (at most %d)", name, strlen(config),
                        NB_MODEL_CONFIG_MAX - 1);
    nb_model *m = nb_model_new(name, config);
    if (!m) return NB_ERR_NOMEM;
    nb_status s = e->build(m, config, rng);
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}
