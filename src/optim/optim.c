/* The optimizer object: options, validation, parameter groups, state
 * buffers and the step driver (the per-kind kernels are in sgd.c,
 * rmsprop.c, adagrad.c, adam.c; formulas in nabla/optim.h). */
#include "optim_impl.h"
#include <ctype.h>
#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

typedef void (*update_fn)(const nb_optim_opts *g, double lr, int64_t t, const nb__optim_param *p);

static const struct kind_info {
    const char *name, *key;
    int         nslots;
    const char *slot[3];
    update_fn   update;
} KINDS[NB_OPTIM_KIND_COUNT] = {
    [NB_OPTIM_SGD] = {"SGD", "sgd", 1, {"momentum_buffer"}, nb__sgd_update},
    [NB_OPTIM_RMSPROP] = {"RMSprop", "rmsprop", 3, {"square_avg", "momentum_buffer", "grad_avg"},
                          nb__rmsprop_update},
    [NB_OPTIM_ADAGRAD] = {"Adagrad", "adagrad", 1, {"sum"}, nb__adagrad_update},
    [NB_OPTIM_ADAM] = {"Adam", "adam", 3, {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}, nb__adam_update},
    [NB_OPTIM_ADAMW] = {"AdamW", "adamw", 3, {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}, nb__adam_update},
};

static int kind_ok(nb_optim_kind k) { return k >= 0 && k < NB_OPTIM_KIND_COUNT; }

/* Does a group with these options use state slot s? */
static int slot_needed(const nb_optim_opts *g, int s)
{
    switch (g->kind) {
    case NB_OPTIM_SGD: return g->momentum != 0;
    case NB_OPTIM_RMSPROP: return s == 0 || (s == 1 && g->momentum > 0) || (s == 2 && g->centered);
    case NB_OPTIM_ADAGRAD: return 1;
    case NB_OPTIM_ADAM:
    case NB_OPTIM_ADAMW: return s < 2 || g->amsgrad;
    default: return 0;
    }
}

static int trainable(const nb_param *p) { return !p->buffer && p->t.requires_grad; }

/* ---- options ---------------------------------------------------------------- */

nb_optim_opts nb_optim_defaults(nb_optim_kind kind)
{
    nb_optim_opts o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    switch (kind) {
    case NB_OPTIM_SGD: o.lr = 1e-3; break;
    case NB_OPTIM_RMSPROP:
        o.lr = 1e-2;
        o.alpha = 0.99;
        o.eps = 1e-8;
        break;
    case NB_OPTIM_ADAGRAD:
        o.lr = 1e-2;
        o.eps = 1e-10;
        break;
    case NB_OPTIM_ADAM:
    case NB_OPTIM_ADAMW:
        o.lr = 1e-3;
        o.beta1 = 0.9;
        o.beta2 = 0.999;
        o.eps = 1e-8;
        o.weight_decay = kind == NB_OPTIM_ADAMW ? 1e-2 : 0;
        break;
    default: o.kind = NB_OPTIM_UNKNOWN; break;
    }
    return o;
}

const char *nb_optim_kind_name(nb_optim_kind kind) { return kind_ok(kind) ? KINDS[kind].name : NULL; }

nb_optim_kind nb_optim_kind_from_name(const char *name)
{
    for (int k = 0; name && k < NB_OPTIM_KIND_COUNT; k++) {
        const char *a = name, *b = KINDS[k].key;
        while (*a && tolower((unsigned char)*a) == *b) a++, b++;
        if (!*a && !*b) return (nb_optim_kind)k;
    }
    nb__fail(NB_ERR_ARG, "unknown optimizer '%s' (sgd, rmsprop, adagrad, adam, adamw)", name ? name : "(null)");
    return NB_OPTIM_UNKNOWN;
}

#define NONNEG(field)                                                                         \
    if (!(o->field >= 0))                                                                     \
        return nb__fail(NB_ERR_ARG, "%s: invalid " #field " %g (must be >= 0)", n, o->field)
#define BETA(field, i)                                                                        \
    if (!(o->field >= 0 && o->field < 1))                                                     \
        return nb__fail(NB_ERR_ARG, "%s: invalid " #field " %g (beta parameter at index " #i  \
                        " must be in [0, 1))", n, o->field)

nb_status nb_optim_validate(const nb_optim_opts *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer options are NULL");
    if (!kind_ok(o->kind)) return nb__fail(NB_ERR_ARG, "unknown optimizer kind %d", (int)o->kind);
    const char *n = KINDS[o->kind].name;
    NONNEG(lr);
    NONNEG(weight_decay);
    switch (o->kind) {
    case NB_OPTIM_SGD:
        NONNEG(momentum);
        if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
            return nb__fail(NB_ERR_ARG, "SGD: nesterov momentum requires a momentum and zero dampening");
        break;
    case NB_OPTIM_RMSPROP:
        NONNEG(eps);
        NONNEG(momentum);
        NONNEG(alpha);
        break;
    case NB_OPTIM_ADAGRAD:
        NONNEG(lr_decay);
        NONNEG(initial_accumulator_value);
        NONNEG(eps);
        break;
    default:
        NONNEG(eps);
        BETA(beta1, 0);
        BETA(beta2, 1);
        break;
    }
    return NB_OK;
}

/* ---- construction and state ---------------------------------------------------- */

/* Allocate (zeroed) the state slots a group with options g needs. */
static nb_status ensure_state(nb_optimizer *o, const nb_optim_opts *g)
{
    for (int s = 0; s < o->nstate; s++) {
        if (o->state[s] || !slot_needed(g, s)) continue;
        o->state[s] = NB_MALLOC((o->numel ? o->numel : 1) * sizeof(float));
        if (!o->state[s]) return nb__fail(NB_ERR_NOMEM, "%s: cannot allocate %s", o->name, o->state_name[s]);
        memset(o->state[s], 0, o->numel * sizeof(float));
    }
    return NB_OK;
}

/* Adagrad's sum starts at the initial_accumulator_value given to
 * nb_optim_new for every trainable parameter, whatever its group: torch
 * fills it in the constructor from the constructor's argument. */
static void adagrad_initial_sums(nb_optimizer *o, double value)
{
    nb_model *m = o->model;
    for (int k = 0; k < o->nparams; k++) {
        const nb_param *p = &m->params[k];
        if (!trainable(p)) continue;
        float *s = o->state[0] + p->offset;
        for (int64_t i = 0, n = nb_tensor_numel(&p->t); i < n; i++) s[i] = (float)value;
    }
}

nb_optimizer *nb_optim_new(nb_model *m, const nb_optim_opts *opts)
{
    if (!m) {
        nb__fail(NB_ERR_ARG, "optimizer: model is NULL");
        return NULL;
    }
    if (nb_optim_validate(opts) != NB_OK) return NULL;
    nb_optimizer *o = NB_MALLOC(sizeof *o);
    if (!o) {
        nb__fail(NB_ERR_NOMEM, "optimizer: out of memory");
        return NULL;
    }
    memset(o, 0, sizeof *o);
    o->kind = opts->kind;
    o->name = KINDS[opts->kind].name;
    o->model = m;
    o->lr = opts->lr;
    o->nparams = m->nparams;
    o->numel = m->numel;
    o->nstate = KINDS[opts->kind].nslots;
    for (int s = 0; s < o->nstate; s++) o->state_name[s] = KINDS[opts->kind].slot[s];
    o->cap_groups = 4;
    o->groups = NB_MALLOC((size_t)o->cap_groups * sizeof *o->groups);
    o->param_group = NB_MALLOC((size_t)(m->nparams ? m->nparams : 1) * sizeof *o->param_group);
    if (!o->groups || !o->param_group) {
        nb_optim_free(o);
        nb__fail(NB_ERR_NOMEM, "%s: out of memory", KINDS[opts->kind].name);
        return NULL;
    }
    memset(o->param_group, 0, (size_t)m->nparams * sizeof *o->param_group);
    o->groups[0] = *opts;
    o->ngroups = 1;
    if (ensure_state(o, opts) != NB_OK) {
        nb_optim_free(o);
        return NULL;
    }
    if (o->kind == NB_OPTIM_ADAGRAD) adagrad_initial_sums(o, opts->initial_accumulator_value);
    return o;
}

void nb_optim_free(nb_optimizer *o)
{
    if (!o) return;
    for (int s = 0; s < 3; s++) NB_FREE(o->state[s]);
    NB_FREE(o->groups);
    NB_FREE(o->param_group);
    NB_FREE(o);
}

int nb_optim_state_count(const nb_optimizer *o)
{
    int c = 0;
    for (int s = 0; o && s < o->nstate; s++) c += o->state[s] != NULL;
    return c;
}

nb_status nb_optim_state_get(const nb_optimizer *o, int i, const char **name, float **buf, size_t *len)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    for (int s = 0, c = 0; s < o->nstate; s++) {
        if (!o->state[s]) continue;
        if (c++ != i) continue;
        if (name) *name = o->state_name[s];
        if (buf) *buf = o->state[s];
        if (len) *len = o->numel;
        return NB_OK;
    }
    return nb__fail(NB_ERR_ARG, "%s: no state buffer %d (it has %d)", o->name, i, nb_optim_state_count(o));
}

float *nb_optim_state_find(const nb_optimizer *o, const char *name)
{
    for (int s = 0; o && name && s < o->nstate; s++)
        if (o->state[s] && !strcmp(o->state_name[s], name)) return o->state[s];
    return NULL;
}

/* ---- groups ------------------------------------------------------------------- */

static nb_status check_group_opts(const nb_optimizer *o, const nb_optim_opts *opts)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    nb_status s = nb_optim_validate(opts);
    if (s != NB_OK) return s;
    if (opts->kind != o->kind)
        return nb__fail(NB_ERR_ARG, "%s: a parameter group must be of the same kind, not %s", o->name,
                        KINDS[opts->kind].name);
    return NB_OK;
}

static nb_status add_group(nb_optimizer *o, const nb_optim_opts *opts, int *index)
{
    nb_status s = check_group_opts(o, opts);
    if (s != NB_OK) return s;
    if (o->ngroups == o->cap_groups) {
        nb_optim_opts *g = NB_REALLOC(o->groups, 2 * (size_t)o->cap_groups * sizeof *g);
        if (!g) return nb__fail(NB_ERR_NOMEM, "%s: out of memory", o->name);
        o->groups = g;
        o->cap_groups *= 2;
    }
    if ((s = ensure_state(o, opts)) != NB_OK) return s;
    o->groups[o->ngroups] = *opts;
    *index = o->ngroups++;
    return NB_OK;
}

int nb_optim_add_group(nb_optimizer *o, const nb_optim_opts *opts)
{
    int index = -1;
    return add_group(o, opts, &index) == NB_OK ? index : -1;
}

nb_status nb_optim_set_group(nb_optimizer *o, int param_index, int group)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    if (param_index < 0 || param_index >= o->nparams)
        return nb__fail(NB_ERR_ARG, "%s: no parameter %d (the model has %d)", o->name, param_index, o->nparams);
    if (group < 0 || group >= o->ngroups)
        return nb__fail(NB_ERR_ARG, "%s: no group %d (there are %d)", o->name, group, o->ngroups);
    const nb_param *p = &o->model->params[param_index];
    if (p->buffer)
        return nb__fail(NB_ERR_ARG, "%s: %s is a buffer, never trained", o->name, p->name);
    o->param_group[param_index] = group;
    return NB_OK;
}

nb_status nb_optim_no_decay_for_1d(nb_optimizer *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    nb_optim_opts g = o->groups[0];
    g.lr = o->lr;
    g.weight_decay = 0;
    int gi = -1;
    nb_status s = add_group(o, &g, &gi);
    if (s != NB_OK) return s;
    for (int k = 0; k < o->nparams; k++)
        if (trainable(&o->model->params[k]) && o->model->params[k].t.ndim <= 1) o->param_group[k] = gi;
    return NB_OK;
}

int nb_optim_group_count(const nb_optimizer *o) { return o ? o->ngroups : 0; }

int nb_optim_param_group(const nb_optimizer *o, int param_index)
{
    return o && param_index >= 0 && param_index < o->nparams ? o->param_group[param_index] : -1;
}

nb_status nb_optim_get_group(const nb_optimizer *o, int group, nb_optim_opts *out)
{
    if (!o || !out) return nb__fail(NB_ERR_ARG, "optimizer or output is NULL");
    if (group < 0 || group >= o->ngroups)
        return nb__fail(NB_ERR_ARG, "%s: no group %d (there are %d)", o->name, group, o->ngroups);
    *out = o->groups[group];
    if (group == 0) out->lr = o->lr;
    return NB_OK;
}

nb_status nb_optim_set_group_opts(nb_optimizer *o, int group, const nb_optim_opts *opts)
{
    nb_status s = check_group_opts(o, opts);
    if (s != NB_OK) return s;
    if (group < 0 || group >= o->ngroups)
        return nb__fail(NB_ERR_ARG, "%s: no group %d (there are %d)", o->name, group, o->ngroups);
    if ((s = ensure_state(o, opts)) != NB_OK) return s;
    o->groups[group] = *opts;
    if (group == 0) o->lr = opts->lr;
    return NB_OK;
}

double nb_optim_get_lr(const nb_optimizer *o, int group)
{
    if (!o || group < 0 || group >= o->ngroups) return NAN;
    return group == 0 ? o->lr : o->groups[group].lr;
}

nb_status nb_optim_set_lr(nb_optimizer *o, int group, double lr)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    if (group < -1 || group >= o->ngroups)
        return nb__fail(NB_ERR_ARG, "%s: no group %d (there are %d)", o->name, group, o->ngroups);
    if (!(lr >= 0)) return nb__fail(NB_ERR_ARG, "%s: invalid lr %g (must be >= 0)", o->name, lr);
    for (int g = 0; g < o->ngroups; g++)
        if (group == -1 || g == group) {
            o->groups[g].lr = lr;
            if (g == 0) o->lr = lr;
        }
    return NB_OK;
}

/* ---- the step ---------------------------------------------------------------- */

/* Chunks of 16 blocks: every part but the last starts and ends on a block. */
#define OPTIM_CHUNK (16 * NB__OPTIM_BLOCK)

typedef struct {
    nb__optim_range_fn fn;
    const void *args;
    int64_t n;
} optim_for_args;

static void optim_chunks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const optim_for_args *a = ctx;
    a->fn(a->args, lo * OPTIM_CHUNK, hi * OPTIM_CHUNK < a->n ? hi * OPTIM_CHUNK : a->n);
}

void nb__optim_for(nb__optim_range_fn fn, const void *args, int64_t n)
{
    if (n <= NB__OPTIM_PAR_MIN) {
        fn(args, 0, n);
        return;
    }
    const int64_t nchunks = (n + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
    optim_for_args a = {fn, args, n};
    nb__par_for(nchunks, nb__par_parts(nchunks, 1), optim_chunks, &a);
}

void nb__optim_sqrt(float *x, int n)
{
    int i = 0;
#if defined(__SSE__) || defined(__x86_64__)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#elif defined(__aarch64__)
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vsqrtq_f32(vld1q_f32(x + i)));
#endif
    for (; i < n; i++) x[i] = sqrtf(x[i]);
}

/* Nonzero if some element of g[lo, hi) is a NaN or an infinity (all
 * exponent bits set): integer tests, so the loop vectorises without
 * -ffast-math. */
NB__OPTIM_KERNEL static uint32_t nonfinite_range(const float *g, int64_t lo, int64_t hi)
{
    uint32_t bad = 0;
    for (int64_t i = lo; i < hi; i++) {
        uint32_t u;
        memcpy(&u, g + i, sizeof u);
        bad |= (~u & 0x7f800000u) == 0;
    }
    return bad;
}

/* ---- the step over the model's flat buffers ----------------------------------- *
 * Parameters live in one buffer (nb_param.offset), their gradients and the
 * optimizer's state slots alike. A step's loops run once over it, cut into
 * ranges of whole chunks: each range visits the slice of every trainable
 * parameter inside it. The kernels are elementwise, so a slice gives the
 * same bits as the whole tensor, and one job replaces one per large
 * parameter with the small ones on the caller alone (the CNN's: 10
 * parameters, one of them large; its small ones took 1% of the step with
 * the other thread idle, perf).
 * The loops are bound by memory: the threads share several ranges each
 * (nb__par_for_balanced); two equal halves left each thread idle about
 * 0.5% of the CNN's step waiting for the other (perf). */
typedef struct {
    nb_optimizer *o;
    int64_t t;         /* the step being taken */
    int bad[NB__PAR_RANGES_MAX]; /* check: per part, the first parameter with a non-finite gradient, or -1 */
    int check;         /* 1: look for non-finite gradients; 0: update */
} step_job;

static void step_range(void *ctx, int64_t lo, int64_t hi, int part)
{
    step_job *j = ctx;
    const nb_optimizer *o = j->o;
    const nb_model *m = o->model;
    const int64_t numel = (int64_t)m->numel;
    const int64_t e0 = lo * OPTIM_CHUNK, e1 = hi * OPTIM_CHUNK < numel ? hi * OPTIM_CHUNK : numel;
    j->bad[part] = -1;
    for (int k = 0; k < m->nparams; k++) {
        const nb_param *p = &m->params[k];
        const int64_t off = (int64_t)p->offset, n = nb_tensor_numel(&p->t);
        const int64_t a = off > e0 ? off : e0, b = off + n < e1 ? off + n : e1;
        if (!trainable(p) || a >= b) continue;
        if (j->check) {
            if (nonfinite_range(p->t.grad, a - off, b - off)) {
                j->bad[part] = k;
                return;
            }
            continue;
        }
        const nb_optim_opts *g = &o->groups[o->param_group[k]];
        nb__optim_param s = {.w = p->t.data + (a - off), .g = p->t.grad + (a - off), .n = b - a,
                             .wd = p->no_decay ? 0.0 : g->weight_decay};
        for (int q = 0; q < o->nstate; q++) s.s[q] = o->state[q] ? o->state[q] + a : NULL;
        KINDS[o->kind].update(g, o->param_group[k] == 0 ? o->lr : g->lr, j->t, &s);
    }
}

/* Runs the check or the update over the whole model; returns the first
 * parameter (in the model's order) with a non-finite gradient, or -1. */
static int step_all(step_job *j)
{
    const int64_t numel = (int64_t)j->o->model->numel, nchunks = (numel + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
    if (nchunks == 0) return -1;
    const int parts = nb__par_for_balanced(nchunks, numel > NB__OPTIM_PAR_MIN, step_range, j);
    int first = -1;
    for (int q = 0; q < parts; q++)
        if (j->bad[q] >= 0 && (first < 0 || j->bad[q] < first)) first = j->bad[q];
    return first;
}

nb_status nb_optim_step(nb_optimizer *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "optimizer is NULL");
    nb_model *m = o->model;
    if (m->nparams != o->nparams || m->numel != o->numel)
        return nb__fail(NB_ERR_STATE, "%s: the model has %d parameters (%zu floats), %d (%zu) when the optimizer "
                        "was made", o->name, m->nparams, m->numel, o->nparams, o->numel);
    for (int g = 0; g < o->ngroups; g++) {
        double lr = nb_optim_get_lr(o, g);
        if (!(lr >= 0)) return nb__fail(NB_ERR_ARG, "%s: group %d has an invalid lr %g", o->name, g, lr);
    }
    /* Refuse a non-finite gradient before touching any weight or state. */
    step_job j = {.o = o, .t = o->steps + 1, .check = 1};
    const int bad = step_all(&j);
    if (bad >= 0)
        return nb__fail(NB_ERR_NONFINITE, "%s: non-finite gradient in %s at step %lld; weights and state "
                        "unchanged", o->name, m->params[bad].name, (long long)o->steps + 1);
    j.check = 0;
    step_all(&j);
    o->steps = j.t;
    return NB_OK;
}
