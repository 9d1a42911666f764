/* torch.optim.SGD (formulas in nabla/optim.h): plain, momentum, dampening,
 * Nesterov, L2 weight decay. */
#include "optim_impl.h"

typedef struct sgd_args {
    float       *w, *v;            /* v: momentum_buffer slice, NULL without momentum */
    const float *g;
    float        wd, mu, damp, lr; /* damp = 1 - dampening */
    int          first, nesterov;
} sgd_args;

NB__OPTIM_KERNEL static void sgd_range(const void *args, int64_t lo, int64_t hi)
{
    const sgd_args *a = args;
    float *restrict w = a->w, *restrict v = a->v;
    const float *restrict g = a->g;
    const float wd = a->wd, mu = a->mu, damp = a->damp, lr = a->lr;
    if (!v) {
        for (int64_t i = lo; i < hi; i++) w[i] -= lr * (g[i] + wd * w[i]);
    } else if (a->first) {             /* torch: buf = clone(g) */
        for (int64_t i = lo; i < hi; i++) {
            const float gi = g[i] + wd * w[i];
            v[i] = gi;
            w[i] -= lr * (a->nesterov ? gi + mu * gi : gi);
        }
    } else if (a->nesterov) {
        for (int64_t i = lo; i < hi; i++) {
            const float gi = g[i] + wd * w[i];
            v[i] = mu * v[i] + damp * gi;
            w[i] -= lr * (gi + mu * v[i]);
        }
    } else {
        for (int64_t i = lo; i < hi; i++) {
            const float gi = g[i] + wd * w[i];
            v[i] = mu * v[i] + damp * gi;
            w[i] -= lr * v[i];
        }
    }
}

void nb__sgd_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p)
{
    sgd_args a = {.w = p->w, .g = p->g, .v = g->momentum != 0 ? p->s[0] : NULL, .wd = (float)p->wd,
                  .mu = (float)g->momentum, .damp = (float)(1.0 - g->dampening), .lr = (float)lr,
                  .first = t == 1, .nesterov = g->nesterov};
    sgd_range(&a, 0, p->n);
}

nb_optimizer *nb_sgd_new(nb_model *m, nb_sgd_opts opts)
{
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_SGD);
    o.lr = opts.lr;
    o.momentum = opts.momentum;
    o.dampening = opts.dampening;
    o.weight_decay = opts.weight_decay;
    o.nesterov = opts.nesterov;
    return nb_optim_new(m, &o);
}
