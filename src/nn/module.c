/* Modules: registration with the owning model, Sequential, and the
 * parameter-free layers (activations, Flatten). */
#include "fuse.h"
#include <stdio.h>

nb_module *nb_module_new(nb_model *m, const nb_module_vt *vt)
{
    if (!m || !vt) {
        nb__fail(NB_ERR_ARG, "module: model or vtable is NULL");
        return NULL;
    }
    nb_module **list = NB_REALLOC(m->modules, sizeof *list * (size_t)(m->nmodules + 1));
    nb_module *mod = NB_MALLOC(sizeof *mod);
    if (!list || !mod) {
        if (list) m->modules = list;
        NB_FREE(mod);
        nb__fail(NB_ERR_NOMEM, "module: out of memory");
        return NULL;
    }
    m->modules = list;
    memset(mod, 0, sizeof *mod);
    mod->vt = vt;
    mod->model = m;
    list[m->nmodules++] = mod;
    return mod;
}

/* Record parameter `index` as belonging to mod's subtree. */
static nb_status own_param(nb_module *mod, int index)
{
    int *p = NB_REALLOC(mod->params, sizeof *p * (size_t)(mod->nparams + 1));
    if (!p) return nb__fail(NB_ERR_NOMEM, "module: out of memory");
    mod->params = p;
    p[mod->nparams++] = index;
    return NB_OK;
}

int nb__module_add_param(nb_module *mod, const char *name, int ndim, const int64_t *shape)
{
    int i = nb_model_add_param(mod->model, name, ndim, shape);
    if (i < 0 || own_param(mod, i)) return -1;
    return i;
}

int nb__module_add_buffer(nb_module *mod, const char *name, int ndim, const int64_t *shape)
{
    int i = nb_model_add_buffer(mod->model, name, ndim, shape);
    if (i < 0 || own_param(mod, i)) return -1;
    return i;
}

/* ---- Sequential ------------------------------------------------------------ */
/* Children in order; a run that a fused op computes (fuse.h) runs as one. */
static nb_tensor *seq_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    for (int i = 0; i < m->nchildren && x;) {
        int used = 0;
        nb_tensor *y = nb__nn_conv_bn_relu_pool_forward(m->children + i, m->nchildren - i, ctx, x, &used);
        if (!used) y = nb__nn_bn_relu_pool_forward(m->children + i, m->nchildren - i, ctx, x, &used);
        if (used) {
            x = y;
            i += used;
        } else {
            x = m->children[i]->vt->forward(m->children[i], ctx, x);
            i++;
        }
    }
    return x;
}

static void seq_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "%d modules", m->nchildren);
}

static const nb_module_vt seq_vt = {"Sequential", seq_forward, seq_describe, NULL};

nb_module *nb_nn_sequential(nb_model *m) { return nb_module_new(m, &seq_vt); }

nb_status nb_module_add_child(nb_module *parent, const char *name, nb_module *child)
{
    if (!child) return NB_ERR_ARG; /* its constructor failed and kept the message */
    if (!parent || !name || !*name) return nb__fail(NB_ERR_ARG, "add_child: NULL module or empty name");
    if (child->model != parent->model) return nb__fail(NB_ERR_ARG, "add_child: modules of different models");
    nb_module **c = NB_REALLOC(parent->children, sizeof *c * (size_t)(parent->nchildren + 1));
    if (c) parent->children = c;
    char **names = NB_REALLOC(parent->child_names, sizeof *names * (size_t)(parent->nchildren + 1));
    if (names) parent->child_names = names;
    char *copy = strdup(name);
    if (!c || !names || !copy) {
        NB_FREE(copy);
        return nb__fail(NB_ERR_NOMEM, "add_child: out of memory");
    }
    c[parent->nchildren] = child;
    names[parent->nchildren++] = copy;
    nb_model *m = parent->model;
    for (int k = 0; k < child->nparams; k++) {
        nb_param *p = &m->params[child->params[k]];
        size_t len = strlen(p->name) + strlen(name) + 2;
        char *full = NB_MALLOC(len);
        if (!full) return nb__fail(NB_ERR_NOMEM, "add_child: out of memory");
        snprintf(full, len, "%s.%s", name, p->name);
        NB_FREE(p->name);
        p->name = full;
        if (own_param(parent, child->params[k])) return NB_ERR_NOMEM;
    }
    return NB_OK;
}

nb_status nb_sequential_add(nb_module *seq, nb_module *child)
{
    if (!child) return NB_ERR_ARG; /* its constructor failed and kept the message */
    if (!seq) return nb__fail(NB_ERR_ARG, "sequential_add: NULL module");
    if (seq->vt != &seq_vt) return nb__fail(NB_ERR_ARG, "sequential_add: %s is not a Sequential", seq->vt->kind);
    char index[16];
    snprintf(index, sizeof index, "%d", seq->nchildren);
    return nb_module_add_child(seq, index, child);
}

static void print_rec(const nb_module *mod, const char *label, int depth, char *buf, size_t size, size_t *n)
{
    char desc[192] = "";
    if (mod->vt->describe) mod->vt->describe(mod, desc, sizeof desc);
    if (*n < size)
        *n += (size_t)snprintf(buf + *n, size - *n, "%*s%s%s(%s)\n", depth * 2, "", label, mod->vt->kind,
                               mod->nchildren ? "" : desc);
    for (int i = 0; i < mod->nchildren; i++) {
        char l[80];
        snprintf(l, sizeof l, "(%s): ", mod->child_names[i]);
        print_rec(mod->children[i], l, depth + 1, buf, size, n);
    }
}

void nb_module_print(const nb_module *mod, char *buf, size_t size)
{
    size_t n = 0;
    if (!size) return;
    buf[0] = 0;
    print_rec(mod, "", 0, buf, size, &n);
}

/* ---- parameter-free layers ----------------------------------------------- */
static nb_tensor *relu_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { (void)m; return nb_relu(c, x); }
static nb_tensor *sigmoid_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { (void)m; return nb_sigmoid(c, x); }
static nb_tensor *tanh_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { (void)m; return nb_tanh(c, x); }
static nb_tensor *leaky_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { return nb_leaky_relu(c, x, m->f[0]); }
static nb_tensor *softmax_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { return nb_softmax(c, x, (int)m->i[0]); }
static nb_tensor *logsm_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { return nb_log_softmax(c, x, (int)m->i[0]); }
static nb_tensor *flatten_fw(nb_module *m, nb_ctx *c, nb_tensor *x) { return nb_flatten(c, x, (int)m->i[0]); }

static void no_desc(const nb_module *m, char *b, size_t s) { (void)m; if (s) b[0] = 0; }
static void slope_desc(const nb_module *m, char *b, size_t s) { snprintf(b, s, "negative_slope=%g", m->f[0]); }
static void dim_desc(const nb_module *m, char *b, size_t s) { snprintf(b, s, "dim=%lld", (long long)m->i[0]); }
static void flat_desc(const nb_module *m, char *b, size_t s) { snprintf(b, s, "start_dim=%lld, end_dim=-1", (long long)m->i[0]); }

static const nb_module_vt relu_vt = {"ReLU", relu_fw, no_desc, NULL};
static const nb_module_vt sigmoid_vt = {"Sigmoid", sigmoid_fw, no_desc, NULL};
static const nb_module_vt tanh_vt = {"Tanh", tanh_fw, no_desc, NULL};
static const nb_module_vt leaky_vt = {"LeakyReLU", leaky_fw, slope_desc, NULL};
static const nb_module_vt softmax_vt = {"Softmax", softmax_fw, dim_desc, NULL};
static const nb_module_vt logsm_vt = {"LogSoftmax", logsm_fw, dim_desc, NULL};
static const nb_module_vt flatten_vt = {"Flatten", flatten_fw, flat_desc, NULL};

nb_module *nb_nn_relu(nb_model *m) { return nb_module_new(m, &relu_vt); }
int nb__nn_is_relu(const nb_module *m) { return m->vt == &relu_vt; }
nb_module *nb_nn_sigmoid(nb_model *m) { return nb_module_new(m, &sigmoid_vt); }
nb_module *nb_nn_tanh(nb_model *m) { return nb_module_new(m, &tanh_vt); }

nb_module *nb_nn_leaky_relu(nb_model *m, float slope)
{
    nb_module *mod = nb_module_new(m, &leaky_vt);
    if (mod) mod->f[0] = slope;
    return mod;
}

static nb_module *with_int(nb_model *m, const nb_module_vt *vt, int v)
{
    nb_module *mod = nb_module_new(m, vt);
    if (mod) mod->i[0] = v;
    return mod;
}

nb_module *nb_nn_softmax(nb_model *m, int axis) { return with_int(m, &softmax_vt, axis); }
nb_module *nb_nn_log_softmax(nb_model *m, int axis) { return with_int(m, &logsm_vt, axis); }
nb_module *nb_nn_flatten(nb_model *m, int start_dim) { return with_int(m, &flatten_vt, start_dim); }
