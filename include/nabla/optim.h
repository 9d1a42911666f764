/* nabla/optim.h — optimizers over a model's flat parameter buffer.
 *
 * SGD, RMSprop, Adagrad, Adam and AdamW with the formulas, defaults and
 * epsilon placement of torch.optim (1.13, the single-tensor CPU code). Per
 * element, with g the gradient, p the weight and t the step count (1 at the
 * first step):
 *
 *   weight decay (all but AdamW)  g = g + weight_decay * p      (L2 in the gradient)
 *   SGD      v = momentum * v + (1 - dampening) * g       (v = g at step 1)
 *            g = nesterov ? g + momentum * v : v          (when momentum != 0)
 *            p = p - lr * g
 *   RMSprop  s = alpha * s + (1 - alpha) * g^2                        square_avg
 *            a = alpha * a + (1 - alpha) * g         (centered)       grad_avg
 *            d = sqrt(s - a^2) + eps  (centered)  or  sqrt(s) + eps
 *            b = momentum * b + g / d; p = p - lr * b   (momentum > 0)  momentum_buffer
 *            p = p - lr * g / d                         (momentum = 0)
 *   Adagrad  s = s + g^2                                              sum
 *            (s starts at the initial_accumulator_value given to
 *            nb_optim_new, for every group: torch fills it in the
 *            constructor and ignores a group's own value)
 *            p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
 *   Adam     m = beta1 * m + (1 - beta1) * g                          exp_avg
 *            v = beta2 * v + (1 - beta2) * g^2                        exp_avg_sq
 *            vmax = max(vmax, v)   (amsgrad; v below means vmax)      max_exp_avg_sq
 *            p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *   AdamW    p = p * (1 - lr * weight_decay), then Adam's update without L2
 *            (decoupled weight decay; default 0.01).
 *
 * Where the study notes differ:
 * - Momentum: the notes write v = mu*v - lr*g; p = p + v, torch (and nabla)
 *   v = mu*v + g; p = p - lr*v. With a constant lr the two give the same
 *   weights (the notes' v is -lr times torch's); when lr changes (a schedule)
 *   they differ: the notes' v keeps the old lr inside the velocity, torch's
 *   applies the new lr to the whole velocity at once.
 * - RMSprop: the notes' table puts eps inside the square root,
 *   sqrt(E[g^2] + eps); torch and the notes' code (and nabla) add it outside,
 *   sqrt(E[g^2]) + eps.
 * - Adagrad and Adam: as the notes' code (eps outside the root, Adam's bias
 *   correction), with torch's default eps (1e-10 for Adagrad).
 *
 * Hyperparameters are doubles and each coefficient is rounded to float once,
 * as torch does with its Python floats: 1 - beta2 with beta2 = 0.999f would
 * be 1.3e-5 away from 0.001. The arithmetic itself is float32 (the state
 * buffers are float32), one vectorised pass over the model's parameters,
 * their slices shared by the library's threads when the model is large
 * (results do not depend on the thread count).
 *
 * Parameter groups (torch's param_groups): group 0 starts with every
 * parameter; nb_optim_add_group adds a group with its own hyperparameters and
 * nb_optim_set_group moves parameters into it. Parameters marked buffer
 * (BatchNorm running statistics) are never updated; parameters marked
 * no_decay get no weight decay (L2 or decoupled) in any group.
 *
 * State (for checkpoints): each state buffer holds model->numel floats at
 * the same offsets as the model's flat data/grad buffers (parameter k's state
 * starts at model->params[k].offset), with torch's names; the step count is
 * o->steps. Restore by writing the saved floats into the buffers of
 * nb_optim_state_get and setting o->steps. */
#ifndef NABLA_OPTIM_H
#define NABLA_OPTIM_H

#include "core.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nb_optim_kind {
    NB_OPTIM_UNKNOWN = -1,
    NB_OPTIM_SGD = 0,
    NB_OPTIM_RMSPROP,
    NB_OPTIM_ADAGRAD,
    NB_OPTIM_ADAM,
    NB_OPTIM_ADAMW,
    NB_OPTIM_KIND_COUNT
} nb_optim_kind;

/* Hyperparameters of one optimizer or parameter group. Start from
 * nb_optim_defaults(kind) and change what you need: a zeroed struct is not
 * torch's defaults (betas 0, eps 0). Fields a kind does not use are ignored. */
typedef struct nb_optim_opts {
    nb_optim_kind kind;
    double lr;
    double weight_decay;              /* L2; AdamW: decoupled */
    double momentum;                  /* SGD, RMSprop */
    double dampening;                 /* SGD */
    int    nesterov;                  /* SGD */
    double alpha;                     /* RMSprop smoothing */
    double eps;                       /* RMSprop, Adagrad, Adam, AdamW */
    int    centered;                  /* RMSprop */
    double lr_decay;                  /* Adagrad */
    double initial_accumulator_value; /* Adagrad */
    double beta1, beta2;              /* Adam, AdamW */
    int    amsgrad;                   /* Adam, AdamW */
} nb_optim_opts;

/* torch.optim's defaults (the unused fields 0):
 *   SGD      lr 1e-3 (torch 1.13 requires lr; torch >= 2.2 defaults to 1e-3),
 *            momentum 0, dampening 0, weight_decay 0, nesterov 0
 *   RMSprop  lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0, momentum 0, centered 0
 *   Adagrad  lr 1e-2, lr_decay 0, weight_decay 0, initial_accumulator_value 0, eps 1e-10
 *   Adam     lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0, amsgrad 0
 *   AdamW    lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2, amsgrad 0
 * An unknown kind gives a zeroed struct with kind NB_OPTIM_UNKNOWN. */
nb_optim_opts nb_optim_defaults(nb_optim_kind kind);
/* "sgd", "rmsprop", "adagrad", "adam", "adamw" (any case); NB_OPTIM_UNKNOWN
 * (and a message naming the choices for nb_last_error) otherwise. */
nb_optim_kind nb_optim_kind_from_name(const char *name);
/* torch's class name: "SGD", "RMSprop", "Adagrad", "Adam", "AdamW"; NULL if unknown. */
const char   *nb_optim_kind_name(nb_optim_kind kind);
/* Check opts as torch's constructor does: NB_ERR_ARG with a message naming
 * the field for a negative (or NaN) lr, weight_decay, momentum, eps, alpha,
 * lr_decay or initial_accumulator_value, betas outside [0, 1), nesterov
 * without momentum or with dampening, an unknown kind. */
nb_status     nb_optim_validate(const nb_optim_opts *opts);

typedef struct nb_optimizer nb_optimizer;

struct nb_optimizer {
    nb_optim_kind kind;
    const char   *name;      /* nb_optim_kind_name(kind) */
    nb_model     *model;     /* not owned; must outlive the optimizer and keep its parameters */
    double        lr;        /* group 0's learning rate: set it between steps (schedules),
                                as nb_optim_set_lr(o, 0, lr) does */
    int64_t       steps;     /* completed steps (torch's state "step"); restore it with the state */
    /* private */
    nb_optim_opts *groups;   /* groups[0].lr unused: o->lr is group 0's */
    int            ngroups, cap_groups;
    int           *param_group;            /* group of each model parameter */
    int            nparams;                /* model->nparams at creation */
    size_t         numel;                  /* model->numel at creation */
    int            nstate;
    const char    *state_name[3];
    float         *state[3];
};

/* A new optimizer over every trainable parameter of m (group 0 with opts).
 * Trainable: not a buffer and requires_grad set (torch skips parameters
 * without a gradient, so a frozen parameter gets no decay or momentum).
 * NULL on error (nb_last_error): invalid opts (nb_optim_validate), NULL
 * arguments, out of memory. State buffers start at zero (Adagrad's sum at
 * initial_accumulator_value). The caller frees it with nb_optim_free. */
nb_optimizer *nb_optim_new(nb_model *m, const nb_optim_opts *opts);
/* One update from the gradients in the model's grad buffer; o->steps + 1.
 * Every trainable gradient is checked first: a NaN or infinity makes it fail
 * with NB_ERR_NONFINITE and leave the weights, the state and o->steps as they
 * were. NB_ERR_ARG for a group lr that is negative or NaN, NB_ERR_STATE if
 * the model gained parameters since nb_optim_new. */
nb_status     nb_optim_step(nb_optimizer *o);
void          nb_optim_free(nb_optimizer *o);

/* ---- parameter groups ----------------------------------------------------- */
/* Add an empty group; opts->kind must be the optimizer's. Returns its index
 * (>= 1), or -1 (NB_ERR_ARG: invalid opts or another kind; NB_ERR_NOMEM). */
int           nb_optim_add_group(nb_optimizer *o, const nb_optim_opts *opts);
/* Move model parameter param_index into group; its state is kept.
 * NB_ERR_ARG for a bad index or group, or a buffer. */
nb_status     nb_optim_set_group(nb_optimizer *o, int param_index, int group);
/* The common recipe: a new group with group 0's hyperparameters and
 * weight_decay 0, holding every trainable parameter with at most one
 * dimension (biases, norm weights, 0-d scales), wherever it was. The new
 * group is the last one (nb_optim_group_count(o) - 1). */
nb_status     nb_optim_no_decay_for_1d(nb_optimizer *o);
int           nb_optim_group_count(const nb_optimizer *o);
int           nb_optim_param_group(const nb_optimizer *o, int param_index);  /* -1 if bad */
/* A copy of a group's hyperparameters (group 0's lr is o->lr). */
nb_status     nb_optim_get_group(const nb_optimizer *o, int group, nb_optim_opts *out);
/* Replace a group's hyperparameters (validated, same kind; group 0 sets
 * o->lr too), as torch code edits param_groups between steps. A state
 * buffer this creates after the first step starts at zero (torch would
 * start an SGD momentum buffer at the gradient). */
nb_status     nb_optim_set_group_opts(nb_optimizer *o, int group, const nb_optim_opts *opts);
/* A group's learning rate (NAN for a bad group). */
double        nb_optim_get_lr(const nb_optimizer *o, int group);
/* Set a group's learning rate, or every group's with group = -1.
 * NB_ERR_ARG for a bad group or a negative or NaN lr. */
nb_status     nb_optim_set_lr(nb_optimizer *o, int group, double lr);

/* ---- state (checkpoints) ---------------------------------------------------
 * The buffers in torch's order per kind:
 *   SGD      momentum_buffer (when some group has momentum != 0)
 *   RMSprop  square_avg, momentum_buffer (some momentum > 0), grad_avg (some centered)
 *   Adagrad  sum
 *   Adam(W)  exp_avg, exp_avg_sq, max_exp_avg_sq (some group amsgrad)
 * A buffer appears when a group first needs it (nb_optim_new, add_group or
 * set_group_opts). The slots of untrained parameters (buffers, frozen) and
 * of groups that do not use a buffer stay as they are (zero). */
int           nb_optim_state_count(const nb_optimizer *o);
/* Buffer i: *name (static string), *buf (owned by o, writable) and *len
 * (= model->numel). NB_ERR_ARG for a bad index. Any out pointer may be NULL. */
nb_status     nb_optim_state_get(const nb_optimizer *o, int i, const char **name, float **buf, size_t *len);
/* The buffer with that name, or NULL. */
float        *nb_optim_state_find(const nb_optimizer *o, const char *name);

/* ---- SGD, the original interface (kept for existing callers) ------------- */
typedef struct nb_sgd_opts {
    float lr;
    float momentum;        /* 0 = plain SGD */
    float dampening;
    float weight_decay;
    int   nesterov;
} nb_sgd_opts;

/* nb_optim_new with SGD and these settings. Fails (NULL, nb_last_error) on
 * a negative lr/momentum/weight_decay or nesterov without momentum or with
 * dampening, as torch does. */
nb_optimizer *nb_sgd_new(nb_model *m, nb_sgd_opts opts);

#ifdef __cplusplus
}
#endif
#endif
