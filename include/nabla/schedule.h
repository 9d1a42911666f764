/* nabla/schedule.h — learning-rate schedules and gradient clipping.
 *
 * ---- schedules ---------------------------------------------------------------
 * torch.optim.lr_scheduler (1.13) on every parameter group of an optimizer.
 * A schedule remembers each group's lr when it is made (base_lrs, torch's
 * initial_lr) and, like torch's constructor, sets the lrs of epoch 0 at once.
 * Call nb_schedule_step once per epoch (or per batch, if the schedule counts
 * batches) AFTER nb_optim_step, as torch >= 1.1 expects:
 *
 *     for (epoch = 0; epoch < E; epoch++) {
 *         train_one_epoch(...);                  (nb_optim_step per batch)
 *         nb_schedule_step(s);                   (or nb_schedule_step_metric(s, val_loss))
 *     }
 *
 * Each step adds 1 to last_epoch (e below, 1 at the first step) and sets
 * every group's lr through nb_optim_set_lr. Like torch, the non-plateau
 * kinds use the recursive ("chainable") form: the new lr is computed from the
 * group's CURRENT lr (nb_optim_get_lr), so a change made between steps (by
 * hand or by another schedule) carries on. With lr the current lr, base the
 * group's base lr and the same double operations as torch:
 *
 *   constant     lr (never changes)
 *   step         e % step_size == 0 ? lr * gamma : lr          (e > 0)
 *   multistep    lr * gamma^k, k = how many milestones equal e (repeats count)
 *   exponential  lr * gamma                                    (e > 0)
 *   cosine       e = 0:                          lr
 *                (e - 1 - T_max) % (2 T_max) == 0:
 *                                 lr + (base - eta_min) * (1 - cos(pi / T_max)) / 2
 *                otherwise:       (1 + cos(pi e / T_max)) / (1 + cos(pi (e - 1) / T_max))
 *                                 * (lr - eta_min) + eta_min
 *                In exact arithmetic this is eta_min + (base - eta_min) *
 *                (1 + cos(pi e / T_max)) / 2: it reaches eta_min at e = T_max
 *                and, past T_max, rises again (period 2 T_max), as torch does.
 *   linear       e = 0: lr * start_factor;  e > total_iters: lr;  otherwise
 *                lr * (1 + (end_factor - start_factor) / (total_iters * start_factor
 *                          + (e - 1) * (end_factor - start_factor)))
 *                = base * (start_factor + (end_factor - start_factor) * min(e, total_iters)
 *                / total_iters): a linear warm-up from start_factor * base.
 *   plateau      torch's ReduceLROnPlateau, fed nb_schedule_step_metric (below).
 *
 * Warm-up: opts.warmup = w > 0 runs torch's SequentialLR([LinearLR(
 * warmup_start_factor, 1.0, w), X], milestones=[w]) where X is opts.kind:
 * epochs 0 .. w-1 follow the linear formula above (start_factor =
 * warmup_start_factor, end_factor 1, total_iters w); at e = w X starts at its
 * closed form for its epoch 0 (base for every kind but multistep with
 * milestone 0, base * gamma^k, and linear, base * start_factor); after that
 * X's recursive form runs with X's epoch e - w. So a cosine after a warm-up
 * of w epochs needs T_max = total - w to end at eta_min (what
 * nb_schedule_parse gives by default). A plateau cannot follow a warm-up
 * (torch's SequentialLR cannot hold one either).
 *
 * Plateau (torch's ReduceLROnPlateau): nb_schedule_step_metric(s, m), once per
 * epoch after validation; nothing changes at creation. With best starting at
 * +inf (mode min) or -inf (mode max), m is an improvement when
 *   min, rel: m < best * (1 - threshold)     min, abs: m < best - threshold
 *   max, rel: m > best * (1 + threshold)     max, abs: m > best + threshold
 * (a NaN metric never improves). An improvement sets best = m and
 * num_bad_epochs = 0, anything else adds 1 to num_bad_epochs. While
 * cooldown_counter > 0 it counts down and num_bad_epochs stays 0. When
 * num_bad_epochs > patience, each group's lr becomes new = max(lr * factor,
 * min_lr), kept only if lr - new > eps, then cooldown_counter = cooldown and
 * num_bad_epochs = 0.
 *
 * State (checkpoints): last_epoch, base_lrs, lrs, best, num_bad_epochs and
 * cooldown_counter are the whole state; with the same opts the next steps
 * only depend on them (and the optimizer's current lrs). To restore: make
 * the schedule with the saved opts on the optimizer (which applies the
 * epoch-0 lrs), write the saved fields into it and call nb_schedule_restore,
 * which checks them and sets each group's lr to lrs[g].
 *
 * ---- gradient clipping ---------------------------------------------------------
 * Over a model's trainable parameters (not buffers, requires_grad set), as
 * torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (1.13) over
 * model.parameters() with gradients. See nb_clip_grad_norm below. */
#ifndef NABLA_SCHEDULE_H
#define NABLA_SCHEDULE_H

#include "core.h"
#include "nn.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nb_schedule_kind {
    NB_SCHEDULE_UNKNOWN = -1,
    NB_SCHEDULE_CONSTANT = 0,
    NB_SCHEDULE_STEP,           /* torch StepLR */
    NB_SCHEDULE_MULTISTEP,      /* MultiStepLR */
    NB_SCHEDULE_EXPONENTIAL,    /* ExponentialLR */
    NB_SCHEDULE_COSINE,         /* CosineAnnealingLR */
    NB_SCHEDULE_LINEAR,         /* LinearLR */
    NB_SCHEDULE_PLATEAU,        /* ReduceLROnPlateau */
    NB_SCHEDULE_KIND_COUNT
} nb_schedule_kind;

#define NB_SCHEDULE_MAX_MILESTONES 32

/* Settings of a schedule. Start from nb_schedule_defaults(kind) (torch's
 * defaults) and change what you need; fields a kind does not use are
 * ignored. */
typedef struct nb_schedule_opts {
    nb_schedule_kind kind;
    int64_t step_size;                  /* step: >= 1 */
    double  gamma;                      /* step, multistep, exponential: >= 0 */
    int64_t milestones[NB_SCHEDULE_MAX_MILESTONES]; /* multistep: >= 0, non-decreasing */
    int     nmilestones;                /* multistep: 1 .. NB_SCHEDULE_MAX_MILESTONES */
    int64_t T_max;                      /* cosine: >= 1 */
    double  eta_min;                    /* cosine: >= 0 */
    double  start_factor, end_factor;   /* linear: (0, 1] and [0, 1] */
    int64_t total_iters;                /* linear: >= 1 */
    int     mode_max;                   /* plateau: 0 = mode 'min', 1 = 'max' */
    double  factor;                     /* plateau: [0, 1) */
    int64_t patience;                   /* plateau: >= 0 */
    double  threshold;                  /* plateau: >= 0 */
    int     threshold_abs;              /* plateau: 0 = threshold_mode 'rel', 1 = 'abs' */
    int64_t cooldown;                   /* plateau: >= 0 */
    double  min_lr;                     /* plateau: >= 0, every group */
    double  eps;                        /* plateau: >= 0 */
    int64_t warmup;                     /* 0 = none; > 0: linear warm-up epochs before kind */
    double  warmup_start_factor;        /* (0, 1] */
} nb_schedule_opts;

/* torch's defaults (the other fields 0):
 *   step       step_size 1 (torch requires it), gamma 0.1
 *   multistep  no milestones (torch requires them: set at least one), gamma 0.1
 *   exponential gamma 0.1 (torch requires it)
 *   cosine     T_max 1 (torch requires it), eta_min 0
 *   linear     start_factor 1/3, end_factor 1, total_iters 5
 *   plateau    mode min, factor 0.1, patience 10, threshold 1e-4, rel,
 *              cooldown 0, min_lr 0, eps 1e-8
 *   every kind warmup 0, warmup_start_factor 1/3 (LinearLR's default)
 * An unknown kind gives kind NB_SCHEDULE_UNKNOWN. */
nb_schedule_opts nb_schedule_defaults(nb_schedule_kind kind);
/* The spec names: "constant", "step", "multistep", "exp", "cosine",
 * "linear", "plateau"; NULL if unknown. */
const char      *nb_schedule_kind_name(nb_schedule_kind kind);
/* NB_ERR_ARG naming the field for a value outside the ranges above (NaN and
 * infinities included, but for eta_min, min_lr and gamma, which only must be
 * finite and >= 0), an unknown kind, a plateau after a warm-up. */
nb_status        nb_schedule_validate(const nb_schedule_opts *opts);

/* ---- the text spec (CLI) -------------------------------------------------------
 *   spec     = [warmup "+"] schedule | warmup
 *   warmup   = "warmup:" total_iters [":" start_factor]        (start_factor 1/3)
 *   schedule = name {":" value} {":" key "=" value}
 * Positional values fill a kind's keys in the order below; any key may be
 * named instead (after the positional ones). Names, keys and words ignore
 * case; numbers are C numbers (strtod, strtoll) and must fill their field.
 *   constant
 *   step:step_size[:gamma]                        gamma 0.1
 *   multistep:m1,m2,...[:gamma]                   gamma 0.1
 *   exp:gamma
 *   cosine[:T_max[:eta_min]]                      T_max total_steps - warmup, eta_min 0
 *   linear[:start_factor[:total_iters[:end_factor]]]   1/3, 5, 1
 *   plateau[:factor[:patience[:mode[:threshold[:threshold_mode[:cooldown[:min_lr[:eps]]]]]]]]
 *                                                 0.1, 10, min, 1e-4, rel, 0, 0, 1e-8;
 *                                                 mode min|max, threshold_mode rel|abs
 * "warmup:N" alone is a warm-up then constant. Examples: "cosine",
 * "step:10:0.1", "multistep:5,10:0.1", "exp:0.95", "linear:0.1:5",
 * "warmup:3+cosine", "warmup:5:0.01+cosine:eta_min=1e-5",
 * "plateau:0.1:2", "plateau:0.5:3:mode=max:cooldown=1".
 * total_steps is the number of nb_schedule_step calls the run will make
 * (epochs, or batches); only a cosine without T_max uses it (and then needs
 * total_steps > warmup). On success *out holds validated opts; NB_ERR_ARG
 * with a message naming the part at fault otherwise (*out untouched). */
nb_status        nb_schedule_parse(const char *spec, int64_t total_steps, nb_schedule_opts *out);
/* The spec of opts with every key named (e.g. "warmup:5:0.1+cosine:T_max=45:
 * eta_min=0"), each number with the fewest significant digits (15 to 17)
 * that read back as the same double, so
 * nb_schedule_parse of the result gives the same opts.
 * snprintf's contract: returns the length it needs, writes at most size
 * bytes; -1 for an unknown kind or NULL opts. */
int              nb_schedule_format(const nb_schedule_opts *opts, char *buf, size_t size);

/* ---- the schedule ------------------------------------------------------------- */
typedef struct nb_schedule {
    nb_schedule_opts opts;      /* a copy; read-only */
    nb_optimizer *optim;        /* not owned; must outlive the schedule */
    int      ngroups;           /* the optimizer's group count at creation */
    /* state */
    int64_t  last_epoch;        /* steps taken: 0 after creation (torch's last_epoch) */
    double  *base_lrs;          /* ngroups: each group's lr at creation (torch's initial_lr) */
    double  *lrs;               /* ngroups: the lrs set by the last step or creation
                                   (torch's get_last_lr()) */
    double   best;              /* plateau: best metric so far (+-inf before the first) */
    int64_t  num_bad_epochs;    /* plateau */
    int64_t  cooldown_counter;  /* plateau */
} nb_schedule;

/* A schedule over every group of o, which sets the lrs of epoch 0 now (all
 * but linear, warm-up and multistep with a milestone 0 leave them as they
 * are). NULL on error (nb_last_error): NULL arguments, invalid opts, out of
 * memory. The caller frees it with nb_schedule_free. */
nb_schedule *nb_schedule_new(nb_optimizer *o, const nb_schedule_opts *opts);
/* One epoch: last_epoch + 1 and the new lrs (formulas above). NB_ERR_STATE
 * for a plateau (it needs a metric) or when the optimizer's group count has
 * changed; NB_ERR_ARG when a group's lr has become invalid (NaN or
 * negative, e.g. set by hand below a cosine's eta_min): then nothing changes. */
nb_status    nb_schedule_step(nb_schedule *s);
/* One epoch with a metric (e.g. the validation loss): a plateau's step; the
 * other kinds ignore the metric and step as nb_schedule_step, so a training
 * loop can always call this one. */
nb_status    nb_schedule_step_metric(nb_schedule *s, double metric);
/* After writing saved state into the fields: checks it (last_epoch,
 * num_bad_epochs and cooldown_counter >= 0, lrs and base_lrs finite and >=
 * 0, best not NaN, the optimizer's group count unchanged) and sets each
 * group's lr to lrs[g]. NB_ERR_ARG or NB_ERR_STATE otherwise (the optimizer
 * untouched). */
nb_status    nb_schedule_restore(nb_schedule *s);
void         nb_schedule_free(nb_schedule *s);

/* ---- gradient clipping ------------------------------------------------------------
 * nb_clip_grad_norm: torch.nn.utils.clip_grad_norm_ (1.13) over the gradients
 * of m's trainable parameters, seen as one vector:
 *   total = (sum |g|^p)^(1/p)   (norm_type p > 0; 1 and 2 have fast paths)
 *   total = max |g|             (norm_type INFINITY)
 *   coef  = max_norm / (total + 1e-6), clamped to at most 1; g = g * coef
 * (nothing to do when coef is 1). Sums run in double in a fixed order, so
 * the result does not depend on the thread count; the multiply is float32
 * with coef rounded to float, as torch's float32 code. A NaN or infinite
 * total makes it fail with NB_ERR_NONFINITE and leave the gradients as they
 * are when error_if_nonfinite is set; without it, as torch, the gradients
 * are multiplied anyway (by NaN, or by 0 for an infinite total: an infinite
 * gradient then becomes NaN). *total_norm_out (may be NULL) gets the total
 * before clipping, in every case but NB_ERR_ARG (0 for a model without
 * trainable parameters). NB_ERR_ARG for a NULL model, a NaN or negative
 * max_norm (INFINITY is fine) or a norm_type that is not > 0 (NaN, -inf). */
nb_status nb_clip_grad_norm(nb_model *m, double max_norm, double norm_type, int error_if_nonfinite,
                            double *total_norm_out);
/* torch.nn.utils.clip_grad_value_: every trainable gradient clamped to
 * [-clip_value, clip_value] (a NaN stays NaN). NB_ERR_ARG for a NULL model
 * or a NaN or negative clip_value. */
nb_status nb_clip_grad_value(nb_model *m, double clip_value);

#ifdef __cplusplus
}
#endif
#endif
