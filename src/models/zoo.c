/* The model zoo: build a model from its name and configuration string. */
#include "../core/internal.h"
#include <stdio.h>
#include <stdlib.h>

#define NB__MLP_MAX_LAYERS 16

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

typedef struct {
    const char *name, *default_config;
    nb_status (*build)(nb_model *m, const char *config, nb_rng *rng);
} nb__zoo_entry;

static const nb__zoo_entry zoo[] = {
    {"mlp", "784,256,128,100,10", build_mlp},
};

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
    if (!e) return nb__fail(NB_ERR_NOTFOUND, "unknown model '%s' (known: mlp)", name ? name : "(null)");
    if (!config || !*config) config = e->default_config;
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
