/* torch.nn.utils.weight_norm: w = g * v / ||v|| (the notes §10: BN acts on a
 * layer's inputs, weight normalisation on its weights).
 *
 * How a layer is reparametrised, without knowing its kind:
 *  - its parameter "weight" is renamed "weight_v" (same slot, shape, values),
 *    and "weight_g" is added, owned by the layer and every container above it;
 *  - its vtable is swapped for a copy of the original whose forward first
 *    computes w from g and v with ops (so autograd gives their gradients),
 *    then runs the original forward while the model hands out w for the
 *    weight's index (nb_model's param_override, read by nb_model_param); the
 *    layer's own settings (i[], f[]) are untouched, so describe and geometry
 *    are the original ones;
 *  - the indices of g and v, dim and the original vtable live in a small
 *    state module owned by the model, reached through the layer's children
 *    array beyond nchildren (a leaf has none, so nothing walks it).
 * A layer whose forward does not read its weight through nb_model_param is
 * caught at its first forward (NB_ERR_STATE) rather than silently using v. */
#include "../core/internal.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#define WN_MAX_KINDS 32

/* One wrapper vtable per original one, made on first use, never freed. */
static struct {
    const nb_module_vt *orig;
    nb_module_vt vt;
} wn_kinds[WN_MAX_KINDS];
static int wn_nkinds;
static pthread_mutex_t wn_kinds_lock = PTHREAD_MUTEX_INITIALIZER; /* threads may wrap layers at once */

static nb_tensor *wn_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x);

static nb_tensor *state_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    (void)m;
    (void)x;
    return nb__op_fail(ctx, NB_ERR_STATE, "weight_norm: its state module is not a layer");
}

/* i[0] weight_g index, i[1] weight_v index, i[2] dim (-1: whole tensor),
 * i[3] entry of wn_kinds */
static const nb_module_vt wn_state_vt = {"WeightNormState", state_forward, NULL, NULL};

static int wrapper_kind(const nb_module_vt *orig)
{
    int k = -1;
    pthread_mutex_lock(&wn_kinds_lock);
    for (int i = 0; i < wn_nkinds && k < 0; i++)
        if (wn_kinds[i].orig == orig) k = i;
    if (k < 0 && wn_nkinds < WN_MAX_KINDS) {
        k = wn_nkinds;
        wn_kinds[k].orig = orig;
        wn_kinds[k].vt = *orig;
        wn_kinds[k].vt.forward = wn_forward;
        wn_nkinds++;
    }
    pthread_mutex_unlock(&wn_kinds_lock);
    return k;
}

static nb_module *state_of(const nb_module *layer)
{
    nb_module *s = layer->nchildren == 0 && layer->children ? layer->children[0] : NULL;
    return s && s->vt == &wn_state_vt ? s : NULL;
}

/* w = v * (g / ||v||), the norm over every dimension but dim (all for -1). */
static nb_tensor *wn_weight(nb_ctx *ctx, nb_tensor *g, nb_tensor *v, int dim)
{
    int axes[NB_MAX_DIMS], na = 0;
    for (int d = 0; d < v->ndim; d++)
        if (d != dim) axes[na++] = d;
    nb_tensor *sq = nb_mul(ctx, v, v);
    nb_tensor *norm = nb_sqrt(ctx, na ? nb_sum(ctx, sq, axes, na, 1) : sq);
    return nb_mul(ctx, v, nb_div(ctx, g, norm));
}

static nb_tensor *wn_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    nb_module *st = state_of(m);
    if (!st)
        return nb__op_fail(ctx, NB_ERR_STATE, "weight_norm: the %s lost its state (was a child added to it?)",
                           m->vt->kind);
    nb_model *md = m->model;
    const int gi = (int)st->i[0], vi = (int)st->i[1];
    const nb_module_vt *orig = wn_kinds[st->i[3]].orig;
    nb_tensor *w = wn_weight(ctx, nb_model_param(md, gi), nb_model_param(md, vi), (int)st->i[2]);
    if (!w) return NULL;
    nb_tensor *old = md->param_override;
    int old_index = md->param_override_index, old_used = md->param_override_used;
    md->param_override = w;
    md->param_override_index = vi;
    md->param_override_used = 0;
    nb_tensor *y = orig->forward(m, ctx, x);
    int used = md->param_override_used;
    md->param_override = old;
    md->param_override_index = old_index;
    md->param_override_used = old_used;
    if (y && !used)
        return nb__op_fail(ctx, NB_ERR_STATE,
                           "weight_norm: %s does not read its weight through nb_model_param; "
                           "weight normalisation cannot reach it",
                           orig->kind);
    return y;
}

static int owns(const nb_module *mod, int index)
{
    for (int k = 0; k < mod->nparams; k++)
        if (mod->params[k] == index) return 1;
    return 0;
}

static nb_status own(nb_module *mod, int index)
{
    int *p = NB_REALLOC(mod->params, sizeof *p * (size_t)(mod->nparams + 1));
    if (!p) return nb__fail(NB_ERR_NOMEM, "weight_norm: out of memory");
    mod->params = p;
    p[mod->nparams++] = index;
    return NB_OK;
}

nb_status nb_nn_weight_norm(nb_module *layer, int dim)
{
    if (!layer) return nb__fail(NB_ERR_ARG, "weight_norm: layer is NULL");
    const char *kind = layer->vt->kind;
    if (state_of(layer)) return nb__fail(NB_ERR_ARG, "weight_norm: already applied to this %s", kind);
    if (layer->nchildren)
        return nb__fail(NB_ERR_ARG, "weight_norm: %s is a container; apply it to a layer with a weight", kind);
    nb_model *m = layer->model;
    int wi = -1;
    for (int k = 0; k < layer->nparams && wi < 0; k++) {
        const char *name = m->params[layer->params[k]].name;
        size_t len = strlen(name);
        if (!strcmp(name, "weight") || (len > 7 && !strcmp(name + len - 7, ".weight"))) wi = layer->params[k];
    }
    if (wi < 0 || m->params[wi].buffer)
        return nb__fail(NB_ERR_ARG, "weight_norm: %s has no parameter named 'weight'", kind);
    const nb_tensor *v = &m->params[wi].t;
    const int nd = v->ndim;
    if (nd == 0 || !(dim == -1 || (dim >= -nd && dim < nd)))
        return nb__fail(NB_ERR_ARG, "weight_norm: dim %d is out of range for the %d-D weight of %s", dim, nd, kind);
    if (dim < -1) dim += nd;   /* -1 is torch's dim=None: the whole tensor */
    int64_t gshape[NB_MAX_DIMS];
    for (int d = 0; d < nd; d++) gshape[d] = d == dim ? v->shape[d] : 1;
    int kidx = wrapper_kind(layer->vt);
    if (kidx < 0) return nb__fail(NB_ERR_STATE, "weight_norm: more than %d layer kinds", WN_MAX_KINDS);
    /* new names: "<prefix>weight_v" and "<prefix>weight_g" */
    const char *old = m->params[wi].name;
    size_t len = strlen(old);
    char *vname = NB_MALLOC(len + 3), *gname = NB_MALLOC(len + 3);
    nb_module **hidden = NB_MALLOC(sizeof *hidden);
    if (!vname || !gname || !hidden) {
        NB_FREE(vname);
        NB_FREE(gname);
        NB_FREE(hidden);
        return nb__fail(NB_ERR_NOMEM, "weight_norm: out of memory");
    }
    snprintf(vname, len + 3, "%s_v", old);
    snprintf(gname, len + 3, "%s_g", old);
    nb_status s = NB_OK;
    if (nb_model_find_param(m, vname) >= 0 || nb_model_find_param(m, gname) >= 0)
        s = nb__fail(NB_ERR_ARG, "weight_norm: %s already has a parameter %s or %s", kind, vname, gname);
    nb_module *st = s ? NULL : nb_module_new(m, &wn_state_vt);
    int gi = st ? nb_model_add_param(m, gname, dim < 0 ? 0 : nd, gshape) : -1;
    NB_FREE(gname);
    if (gi < 0) {   /* the cause kept its message */
        NB_FREE(vname);
        NB_FREE(hidden);
        return s ? s : NB_ERR_NOMEM;
    }
    NB_FREE(m->params[wi].name);
    m->params[wi].name = vname;
    /* g belongs to the layer and to every container that holds the weight */
    for (int k = 0; k < m->nmodules; k++) {
        nb_module *mod = m->modules[k];
        if ((mod == layer || (mod != st && owns(mod, wi))) && own(mod, gi)) {
            NB_FREE(hidden);
            return NB_ERR_NOMEM;
        }
    }
    /* g = ||v|| so that w = v to start with */
    v = &m->params[wi].t;
    float *g = m->params[gi].t.data;
    int64_t n = nb_tensor_numel(v), inner = 1, size = dim < 0 ? 1 : v->shape[dim];
    for (int d = dim + 1; dim >= 0 && d < nd; d++) inner *= v->shape[d];
    double *acc = NB_MALLOC(sizeof(double) * (size_t)size);
    if (!acc) {
        NB_FREE(hidden);
        return nb__fail(NB_ERR_NOMEM, "weight_norm: out of memory");
    }
    for (int64_t j = 0; j < size; j++) acc[j] = 0;
    for (int64_t e = 0; e < n; e++) acc[(e / inner) % size] += (double)v->data[e] * v->data[e];
    for (int64_t j = 0; j < size; j++) g[j] = (float)sqrt(acc[j]);
    NB_FREE(acc);
    st->i[0] = gi;
    st->i[1] = wi;
    st->i[2] = dim;
    st->i[3] = kidx;
    hidden[0] = st;
    NB_FREE(layer->children);   /* a leaf: NULL */
    layer->children = hidden;
    layer->vt = &wn_kinds[kidx].vt;
    return NB_OK;
}
