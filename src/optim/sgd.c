/* torch.optim.SGD over the model's flat buffers (formulas in nabla/optim.h). */
#include "../core/internal.h"
#include <math.h>

static nb_status sgd_step(nb_optimizer *o)
{
    nb_model *m = o->model;
    const nb_sgd_opts *s = &o->sgd;
    /* Refuse a non-finite gradient before touching any weight. */
    int bad = 0;
    #pragma omp parallel for reduction(|:bad) schedule(static) if (m->numel > 65536)
    for (size_t i = 0; i < m->numel; i++) bad |= !isfinite(m->grad[i]);
    if (bad) return nb__fail(NB_ERR_NONFINITE, "SGD: non-finite gradient at step %lld; weights unchanged",
                             (long long)o->steps + 1);
    const float lr = o->lr, mu = s->momentum, damp = 1.0f - s->dampening;
    const int first = o->steps == 0;
    for (int k = 0; k < m->nparams; k++) {
        nb_param *p = &m->params[k];
        if (p->buffer) continue;
        float *w = p->t.data, *g = p->t.grad, *v = o->state ? o->state + p->offset : NULL;
        const float wd = p->no_decay ? 0.0f : s->weight_decay;
        const int64_t n = nb_tensor_numel(&p->t);
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i] + wd * w[i];
            if (v) {
                v[i] = first ? gi : mu * v[i] + damp * gi;
                gi = s->nesterov ? gi + mu * v[i] : v[i];
            }
            w[i] -= lr * gi;
        }
    }
    o->steps++;
    return NB_OK;
}

nb_optimizer *nb_sgd_new(nb_model *m, nb_sgd_opts opts)
{
    if (!m) {
        nb__fail(NB_ERR_ARG, "SGD: model is NULL");
        return NULL;
    }
    if (!(opts.lr >= 0) || !(opts.momentum >= 0) || !(opts.weight_decay >= 0)) {
        nb__fail(NB_ERR_ARG, "SGD: invalid lr %g, momentum %g or weight_decay %g (must be >= 0)",
                 opts.lr, opts.momentum, opts.weight_decay);
        return NULL;
    }
    if (opts.nesterov && (opts.momentum <= 0 || opts.dampening != 0)) {
        nb__fail(NB_ERR_ARG, "SGD: nesterov momentum requires a momentum and zero dampening");
        return NULL;
    }
    nb_optimizer *o = NB_MALLOC(sizeof *o);
    if (!o) {
        nb__fail(NB_ERR_NOMEM, "SGD: out of memory");
        return NULL;
    }
    memset(o, 0, sizeof *o);
    o->kind = "SGD";
    o->model = m;
    o->lr = opts.lr;
    o->sgd = opts;
    o->step = sgd_step;
    if (opts.momentum != 0) {
        o->state_len = m->numel;
        o->state = NB_MALLOC((m->numel ? m->numel : 1) * sizeof(float));
        if (!o->state) {
            NB_FREE(o);
            nb__fail(NB_ERR_NOMEM, "SGD: cannot allocate momentum buffers");
            return NULL;
        }
        memset(o->state, 0, m->numel * sizeof(float));
    }
    return o;
}

nb_status nb_optim_step(nb_optimizer *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    return o->step(o);
}

void nb_optim_free(nb_optimizer *o)
{
    if (!o) return;
    NB_FREE(o->state);
    NB_FREE(o);
}
