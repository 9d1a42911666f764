/* torch.optim.Adagrad (formulas in nabla/optim.h): lr decayed per step,
 * the sum starting at initial_accumulator_value, eps outside the root. */
#include "optim_impl.h"

typedef struct adagrad_args {
    float       *w, *sum;
    const float *g;
    float        wd, eps, neg_clr;
} adagrad_args;

NB__OPTIM_KERNEL static void adagrad_range(const void *args, int64_t lo, int64_t hi)
{
    const adagrad_args *a = args;
    const float wd = a->wd, eps = a->eps, neg_clr = a->neg_clr;
    float d[NB__OPTIM_BLOCK];
    for (int64_t b = lo; b < hi; b += NB__OPTIM_BLOCK) {
        const int n = (int)(hi - b < NB__OPTIM_BLOCK ? hi - b : NB__OPTIM_BLOCK);
        float *restrict w = a->w + b, *restrict sum = a->sum + b;
        const float *restrict g = a->g + b;
        for (int j = 0; j < n; j++) {
            const float gj = g[j] + wd * w[j];
            sum[j] = sum[j] + gj * gj;
            d[j] = sum[j];
        }
        nb__optim_sqrt(d, n);
        for (int j = 0; j < n; j++) {
            const float gj = g[j] + wd * w[j];
            w[j] = w[j] + neg_clr * gj / (d[j] + eps);
        }
    }
}

void nb__adagrad_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p)
{
    const double clr = lr / (1 + (double)(t - 1) * g->lr_decay);
    adagrad_args a = {.w = p->w, .g = p->g, .sum = p->s[0], .wd = (float)p->wd, .eps = (float)g->eps,
                      .neg_clr = (float)-clr};
    adagrad_range(&a, 0, p->n);
}
