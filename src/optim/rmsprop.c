/* torch.optim.RMSprop (formulas in nabla/optim.h): eps outside the square
 * root, optional centering (grad_avg) and momentum (momentum_buffer). The
 * operations and their order are torch's single-tensor code. */
#include "optim_impl.h"

typedef struct rmsprop_args {
    float       *w, *sq, *buf, *ga;  /* buf, ga: NULL without momentum / centering */
    const float *g;
    float        wd, alpha, c, eps, mu, neg_lr;   /* c = 1 - alpha */
} rmsprop_args;

NB__OPTIM_KERNEL static void rmsprop_range(const void *args, int64_t lo, int64_t hi)
{
    const rmsprop_args *a = args;
    const float wd = a->wd, alpha = a->alpha, c = a->c, eps = a->eps, mu = a->mu, neg_lr = a->neg_lr;
    float d[NB__OPTIM_BLOCK];
    for (int64_t b = lo; b < hi; b += NB__OPTIM_BLOCK) {
        const int n = (int)(hi - b < NB__OPTIM_BLOCK ? hi - b : NB__OPTIM_BLOCK);
        float *restrict w = a->w + b, *restrict sq = a->sq + b;
        const float *restrict g = a->g + b;
        if (a->ga) {
            float *restrict ga = a->ga + b;
            for (int j = 0; j < n; j++) {
                const float gj = g[j] + wd * w[j];
                sq[j] = sq[j] * alpha + c * gj * gj;
                ga[j] = ga[j] * alpha + c * gj;
                d[j] = sq[j] - ga[j] * ga[j];
            }
        } else {
            for (int j = 0; j < n; j++) {
                const float gj = g[j] + wd * w[j];
                sq[j] = sq[j] * alpha + c * gj * gj;
                d[j] = sq[j];
            }
        }
        nb__optim_sqrt(d, n);
        if (a->buf) {
            float *restrict buf = a->buf + b;
            for (int j = 0; j < n; j++) {
                const float gj = g[j] + wd * w[j];
                buf[j] = buf[j] * mu + gj / (d[j] + eps);
                w[j] = w[j] + neg_lr * buf[j];
            }
        } else {
            for (int j = 0; j < n; j++) {
                const float gj = g[j] + wd * w[j];
                w[j] = w[j] + neg_lr * gj / (d[j] + eps);
            }
        }
    }
}

void nb__rmsprop_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p)
{
    (void)t;
    rmsprop_args a = {.w = p->w, .g = p->g, .sq = p->s[0], .buf = g->momentum > 0 ? p->s[1] : NULL,
                      .ga = g->centered ? p->s[2] : NULL, .wd = (float)p->wd, .alpha = (float)g->alpha,
                      .c = (float)(1.0 - g->alpha), .eps = (float)g->eps, .mu = (float)g->momentum,
                      .neg_lr = (float)-lr};
    rmsprop_range(&a, 0, p->n);
}
