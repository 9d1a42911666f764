/* torch.optim.Adam and AdamW (formulas in nabla/optim.h): bias correction as
 * torch 1.13's single-tensor code (step size lr / (1 - beta1^t) and
 * sqrt(1 - beta2^t) in double, the rest in float), amsgrad, L2 weight decay
 * (Adam) or decoupled weight decay (AdamW). */
#include "optim_impl.h"
#include <math.h>

typedef struct adam_args {
    float       *w, *m, *v, *vmax;  /* vmax: NULL without amsgrad */
    const float *g;
    float        l2, decay;         /* Adam: g + l2 * w; AdamW: w * decay first */
    float        b1, c1, b2, c2, bc2_sqrt, eps, neg_step;
    int          decoupled;
} adam_args;

NB__OPTIM_KERNEL static void adam_range(const void *args, int64_t lo, int64_t hi)
{
    const adam_args *a = args;
    const float l2 = a->l2, decay = a->decay, b1 = a->b1, c1 = a->c1, b2 = a->b2, c2 = a->c2;
    const float bc2_sqrt = a->bc2_sqrt, eps = a->eps, neg_step = a->neg_step;
    float d[NB__OPTIM_BLOCK];
    for (int64_t b = lo; b < hi; b += NB__OPTIM_BLOCK) {
        const int n = (int)(hi - b < NB__OPTIM_BLOCK ? hi - b : NB__OPTIM_BLOCK);
        float *restrict w = a->w + b, *restrict m = a->m + b, *restrict v = a->v + b;
        const float *restrict g = a->g + b;
        for (int j = 0; j < n; j++) {
            const float gj = g[j] + l2 * w[j];
            m[j] = m[j] * b1 + c1 * gj;
            v[j] = v[j] * b2 + c2 * gj * gj;
            d[j] = v[j];
        }
        if (a->vmax) {
            float *restrict vmax = a->vmax + b;
            for (int j = 0; j < n; j++) {
                vmax[j] = v[j] > vmax[j] ? v[j] : vmax[j];
                d[j] = vmax[j];
            }
        }
        nb__optim_sqrt(d, n);
        if (a->decoupled)
            for (int j = 0; j < n; j++) w[j] = w[j] * decay + neg_step * m[j] / (d[j] / bc2_sqrt + eps);
        else
            for (int j = 0; j < n; j++) w[j] = w[j] + neg_step * m[j] / (d[j] / bc2_sqrt + eps);
    }
}

void nb__adam_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p)
{
    const int decoupled = g->kind == NB_OPTIM_ADAMW;
    const double bc1 = 1 - pow(g->beta1, (double)t), bc2 = 1 - pow(g->beta2, (double)t);
    adam_args a = {.w = p->w, .g = p->g, .m = p->s[0], .v = p->s[1], .vmax = g->amsgrad ? p->s[2] : NULL,
                   .l2 = decoupled ? 0.0f : (float)p->wd, .decay = (float)(1 - lr * (decoupled ? p->wd : 0)),
                   .b1 = (float)g->beta1, .c1 = (float)(1 - g->beta1), .b2 = (float)g->beta2,
                   .c2 = (float)(1 - g->beta2), .bc2_sqrt = (float)sqrt(bc2), .eps = (float)g->eps,
                   .neg_step = (float)-(lr / bc1), .decoupled = decoupled};
    adam_range(&a, 0, p->n);
}
