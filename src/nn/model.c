/* A model: flat parameter buffers, the modules it owns, save and load. */
#include "../core/internal.h"
#include <stdio.h>

nb_model *nb_model_new(const char *name, const char *config)
{
    nb_model *m = NB_MALLOC(sizeof *m);
    if (!m) {
        nb__fail(NB_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->training = 1;
    snprintf(m->name, sizeof m->name, "%s", name ? name : "");
    snprintf(m->config, sizeof m->config, "%s", config ? config : "");
    return m;
}

void nb_model_free(nb_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->nmodules; i++) {
        NB_FREE(m->modules[i]->params);
        for (int k = 0; k < m->modules[i]->nchildren; k++) NB_FREE(m->modules[i]->child_names[k]);
        NB_FREE(m->modules[i]->child_names);
        NB_FREE(m->modules[i]->children);
        NB_FREE(m->modules[i]);
    }
    NB_FREE(m->modules);
    for (int i = 0; i < m->nparams; i++) NB_FREE(m->params[i].name);
    NB_FREE(m->params);
    NB_FREE(m->data);
    NB_FREE(m->grad);
    NB_FREE(m);
}

/* Point every parameter tensor at its slice of the (possibly moved) buffers. */
static void rebind(nb_model *m)
{
    for (int i = 0; i < m->nparams; i++) {
        m->params[i].t.data = m->data + m->params[i].offset;
        m->params[i].t.grad = m->grad + m->params[i].offset;
    }
}

static float *aligned_floats(size_t n)
{
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* Grow both buffers to hold at least `need` floats; contents are kept. */
static nb_status reserve(nb_model *m, size_t need)
{
    if (need <= m->cap) return NB_OK;
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < need) cap *= 2;
    float *d = aligned_floats(cap), *g = aligned_floats(cap);
    if (!d || !g) {
        NB_FREE(d);
        NB_FREE(g);
        return nb__fail(NB_ERR_NOMEM, "model: cannot allocate %zu parameters", cap);
    }
    if (m->numel) {
        memcpy(d, m->data, m->numel * sizeof(float));
        memcpy(g, m->grad, m->numel * sizeof(float));
    }
    memset(d + m->numel, 0, (cap - m->numel) * sizeof(float)); /* alignment gaps stay 0 */
    memset(g + m->numel, 0, (cap - m->numel) * sizeof(float));
    NB_FREE(m->data);
    NB_FREE(m->grad);
    m->data = d;
    m->grad = g;
    m->cap = cap;
    rebind(m);
    return NB_OK;
}

int nb_model_add_buffer(nb_model *m, const char *name, int ndim, const int64_t *shape)
{
    int i = nb_model_add_param(m, name, ndim, shape);
    if (i >= 0) {
        m->params[i].buffer = 1;
        m->params[i].t.requires_grad = 0;
    }
    return i;
}

/* While nb_model_load_file builds the model a file's metadata names, the
 * parameters may not outgrow the values the file holds: a config string of
 * a few bytes must not make us allocate terabytes. 0 = no limit. */
static _Thread_local size_t load_budget;
static _Thread_local int load_budget_hit;

int nb_model_add_param(nb_model *m, const char *name, int ndim, const int64_t *shape)
{
    if (!m || !name || ndim < 0 || ndim > NB_MAX_DIMS) {
        nb__fail(NB_ERR_ARG, "model: bad parameter arguments");
        return -1;
    }
    /* Names need not be unique yet: a layer built before it joins its
     * container is renamed then; nb_model_save refuses duplicates. */
    int64_t n = nb__numel(ndim, shape);
    /* Each parameter starts on a 64-byte boundary (16 floats) for SIMD. */
    size_t off = (m->numel + 15) & ~(size_t)15;
    if (load_budget && (n < 0 || (uint64_t)n > load_budget || off > load_budget - (size_t)n)) {
        load_budget_hit = 1;
        nb__fail(NB_ERR_FORMAT, "model: more parameters than the file holds");
        return -1;
    }
    nb_param *p = NB_REALLOC(m->params, sizeof *p * (size_t)(m->nparams + 1));
    if (!p) {
        nb__fail(NB_ERR_NOMEM, "model: out of memory");
        return -1;
    }
    m->params = p;
    if (reserve(m, off + (size_t)n)) return -1;
    p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    if (!p->name) {
        nb__fail(NB_ERR_NOMEM, "model: out of memory");
        return -1;
    }
    p->offset = off;
    p->t.ndim = ndim;
    for (int i = 0; i < ndim; i++) p->t.shape[i] = shape[i];
    nb__contig_strides(ndim, p->t.shape, p->t.stride);
    p->t.requires_grad = 1;
    m->numel = off + (size_t)n;
    m->nparams++;
    rebind(m);
    return m->nparams - 1;
}

nb_tensor *nb_model_param(nb_model *m, int index)
{
    if (m->param_override && index == m->param_override_index) {   /* weight norm */
        m->param_override_used = 1;
        return m->param_override;
    }
    return index >= 0 && index < m->nparams ? &m->params[index].t : NULL;
}

int nb_model_find_param(const nb_model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return i;
    return -1;
}

nb_tensor *nb_model_forward(nb_model *m, nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    if (!m->root) return nb__op_fail(ctx, NB_ERR_STATE, "model '%s' has no modules", m->name);
    return m->root->vt->forward(m->root, ctx, x);
}

void nb_model_zero_grad(nb_model *m)
{
    if (m->grad) nb__par_copy(m->grad, NULL, (int64_t)m->numel);
}

void nb_model_train(nb_model *m, int training) { m->training = training != 0; }

/* A parameter that does not require a gradient makes the ops record nothing
 * for it (and skip its gradient in backward), while inputs that require one
 * keep their tape: freezing is this flag alone. Buffers never train. */
void nb_model_set_requires_grad(nb_model *m, int on)
{
    if (!m) return;
    for (int i = 0; i < m->nparams; i++)
        if (!m->params[i].buffer) m->params[i].t.requires_grad = on != 0;
}

nb_status nb_model_save(const nb_model *m, const char *path)
{
    nb_st_entry *e = NB_MALLOC(sizeof *e * (size_t)(m->nparams ? m->nparams : 1));
    if (!e) return nb__fail(NB_ERR_NOMEM, "save: out of memory");
    for (int i = 0; i < m->nparams; i++)
        e[i] = (nb_st_entry){m->params[i].name, m->params[i].t.ndim, m->params[i].t.shape,
                             m->params[i].t.data};
    const char *meta[] = {"model", m->name, "config", m->config, "format", "nabla " NB_VERSION};
    nb_status s = nb_safetensors_save(path, e, m->nparams, NB_ST_F32, meta, 3);
    NB_FREE(e);
    return s;
}

/* Copy the file's tensors into m after checking that names and shapes match
 * exactly (a checkpoint's optimizer state, "__optim__.*", is skipped); on any
 * mismatch m is left untouched. */
static nb_status load_into(nb_model *m, const nb_safetensors *f, const char *path)
{
    for (int i = 0; i < m->nparams; i++) {
        const nb_param *p = &m->params[i];
        const nb_st_tensor *t = nb_safetensors_find(f, p->name);
        if (!t) return nb__fail(NB_ERR_FORMAT, "%s: tensor '%s' is missing", path, p->name);
        int same = t->ndim == p->t.ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == p->t.shape[d];
        if (!same) {
            char want[96], got[96];
            nb_tensor tmp = {0};
            tmp.ndim = t->ndim;
            memcpy(tmp.shape, t->shape, sizeof tmp.shape);
            return nb__fail(NB_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model needs %s", path,
                            p->name, nb_shape_str(&tmp, got, sizeof got), nb_shape_str(&p->t, want, sizeof want));
        }
    }
    for (int i = 0; i < f->n; i++)
        if (strncmp(f->tensors[i].name, "__optim__.", 10) && nb_model_find_param(m, f->tensors[i].name) < 0)
            return nb__fail(NB_ERR_FORMAT, "%s: unexpected tensor '%s' (not a parameter of model '%s')", path,
                            f->tensors[i].name, m->name);
    for (int i = 0; i < m->nparams; i++) {
        const nb_st_tensor *t = nb_safetensors_find(f, m->params[i].name);
        memcpy(m->params[i].t.data, t->data, (size_t)t->numel * sizeof(float));
    }
    return NB_OK;
}

nb_status nb_model_load(nb_model *m, const char *path)
{
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_load(path, &f);
    if (s) return s;
    s = load_into(m, f, path);
    nb_safetensors_free(f);
    return s;
}

nb_status nb_model_load_file(const char *path, nb_model **out)
{
    *out = NULL;
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_load(path, &f);
    if (s) return s;
    const char *name = nb_safetensors_meta(f, "model"), *config = nb_safetensors_meta(f, "config");
    if (!name) {
        nb_safetensors_free(f);
        return nb__fail(NB_ERR_FORMAT, "%s: no \"model\" in the metadata; give the model name", path);
    }
    nb_rng rng;
    nb_rng_seed(&rng, 0);
    nb_model *m = NULL;
    load_budget = 16;   /* each parameter may start 15 floats of alignment later */
    for (int i = 0; i < f->n; i++) load_budget += (size_t)f->tensors[i].numel + 16;
    load_budget_hit = 0;
    s = nb_model_build(name, config, &rng, &m);
    load_budget = 0;
    if (s && load_budget_hit)
        s = nb__fail(NB_ERR_FORMAT, "%s: model '%s' with config \"%s\" has more parameters than the file holds",
                     path, name, config ? config : "");
    if (!s) s = load_into(m, f, path);
    nb_safetensors_free(f);
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}
