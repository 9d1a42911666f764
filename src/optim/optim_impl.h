/* Private to src/optim: the per-kind update kernels and their helpers. */
#ifndef NABLA_OPTIM_IMPL_H
#define NABLA_OPTIM_IMPL_H

#include "../core/internal.h"
#include "../kernels/simd.h"

/* Elements per block of the kernels that take square roots: a block's roots
 * are taken in one vector loop (nb__optim_sqrt), so the element loops around
 * it vectorise (a sqrtf call, which may set errno, would stop them). */
#define NB__OPTIM_BLOCK 256
/* The kernels' element loops: NB_CLONES (simd.h), the same bits in every variant. */
#define NB__OPTIM_KERNEL NB_CLONES

/* Tensors with more elements run on the thread pool (static chunks). */
#define NB__OPTIM_PAR_MIN 65536

/* One parameter as a kernel sees it: n weights w, gradients g, its slices of
 * the state slots (NULL where the kind or group has none) and the weight
 * decay that applies to it (0 for no_decay parameters). */
typedef struct nb__optim_param {
    float       *w;
    const float *g;
    float       *s[3];
    int64_t      n;
    double       wd;
} nb__optim_param;

/* fn(args, lo, hi) over [0, n): one call, or static chunks on the thread pool
 * for a large n (the clipping of one parameter's gradient). Kernels are
 * elementwise, so the result does not depend on the split. */
typedef void (*nb__optim_range_fn)(const void *args, int64_t lo, int64_t hi);
void nb__optim_for(nb__optim_range_fn fn, const void *args, int64_t n);
/* x[i] = sqrt(x[i]) for i < n, vectorised where the compiler cannot. */
void nb__optim_sqrt(float *x, int n);

/* Update a slice of one parameter (p's pointers and n) for step t (1 at
 * the first step) with a group's hyperparameters g and learning rate lr,
 * on the calling thread: nb_optim_step shares the slices between threads. */
void nb__sgd_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p);
void nb__rmsprop_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p);
void nb__adagrad_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p);
void nb__adam_update(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p);  /* and AdamW */

#endif
