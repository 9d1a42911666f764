/* nabla/optim.h — optimizers over a model's flat parameter buffer.
 *
 * SGD follows torch.optim.SGD exactly:
 *   g = grad + weight_decay * p                      (p not marked no_decay)
 *   v = momentum * v + (1 - dampening) * g           (v = g at the first step)
 *   g = nesterov ? g + momentum * v : v              (when momentum != 0)
 *   p = p - lr * g
 * The notes write momentum as v = mu*v - lr*g; p = p + v. The two agree while
 * lr is constant and differ when it changes: torch's v carries no lr. */
#ifndef NABLA_OPTIM_H
#define NABLA_OPTIM_H

#include "core.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_sgd_opts {
    float lr;
    float momentum;        /* 0 = plain SGD */
    float dampening;
    float weight_decay;
    int   nesterov;
} nb_sgd_opts;

typedef struct nb_optimizer nb_optimizer;

struct nb_optimizer {
    const char *kind;      /* "SGD" */
    nb_model   *model;
    float       lr;        /* may be changed between steps (schedules) */
    int64_t     steps;     /* completed steps */
    float      *state;     /* per-parameter state, state_len floats */
    size_t      state_len;
    nb_sgd_opts sgd;
    /* private */
    nb_status (*step)(nb_optimizer *o);
};

/* Fails (NULL, nb_last_error) on a negative lr/momentum or nesterov without
 * momentum or with dampening, as torch does. */
nb_optimizer *nb_sgd_new(nb_model *m, nb_sgd_opts opts);
/* One update from the gradients in the model's grad buffer. A non-finite
 * gradient makes it fail with NB_ERR_NONFINITE and leave the weights as they were. */
nb_status     nb_optim_step(nb_optimizer *o);
void          nb_optim_free(nb_optimizer *o);

#ifdef __cplusplus
}
#endif
#endif
