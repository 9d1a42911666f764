/* Learning-rate schedules (torch.optim.lr_scheduler 1.13, formulas in
 * nabla/schedule.h) and their text spec. The arithmetic is torch's Python
 * arithmetic in double, operation for operation, so the lrs are torch's bit
 * for bit (with the same libm cos): every formula below keeps torch's order
 * of operations even where algebra would simplify it. */
#include "../core/internal.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static const char *const KIND_NAMES[NB_SCHEDULE_KIND_COUNT] = {
    [NB_SCHEDULE_CONSTANT] = "constant", [NB_SCHEDULE_STEP] = "step",
    [NB_SCHEDULE_MULTISTEP] = "multistep", [NB_SCHEDULE_EXPONENTIAL] = "exp",
    [NB_SCHEDULE_COSINE] = "cosine", [NB_SCHEDULE_LINEAR] = "linear",
    [NB_SCHEDULE_PLATEAU] = "plateau",
};

static int kind_ok(nb_schedule_kind k) { return k >= 0 && k < NB_SCHEDULE_KIND_COUNT; }

const char *nb_schedule_kind_name(nb_schedule_kind kind) { return kind_ok(kind) ? KIND_NAMES[kind] : NULL; }

nb_schedule_opts nb_schedule_defaults(nb_schedule_kind kind)
{
    nb_schedule_opts o;
    memset(&o, 0, sizeof o);
    o.kind = kind_ok(kind) ? kind : NB_SCHEDULE_UNKNOWN;
    o.warmup_start_factor = 1.0 / 3;
    switch (kind) {
    case NB_SCHEDULE_STEP: o.step_size = 1; o.gamma = 0.1; break;
    case NB_SCHEDULE_MULTISTEP: o.gamma = 0.1; break;
    case NB_SCHEDULE_EXPONENTIAL: o.gamma = 0.1; break;
    case NB_SCHEDULE_COSINE: o.T_max = 1; break;
    case NB_SCHEDULE_LINEAR:
        o.start_factor = 1.0 / 3;
        o.end_factor = 1.0;
        o.total_iters = 5;
        break;
    case NB_SCHEDULE_PLATEAU:
        o.factor = 0.1;
        o.patience = 10;
        o.threshold = 1e-4;
        o.eps = 1e-8;
        break;
    default: break;
    }
    return o;
}

/* ---- validation ------------------------------------------------------------------ */

#define CHECK_INT(ok, field, want)                                                           \
    if (!(ok)) return nb__fail(NB_ERR_ARG, "%s schedule: invalid " #field " %lld (%s)", name,  \
                               (long long)o->field, want)
#define CHECK_DBL(ok, field, want)                                                           \
    if (!(ok)) return nb__fail(NB_ERR_ARG, "%s schedule: invalid " #field " %g (%s)", name, o->field, want)
#define STR_(x) #x
#define STR(x) STR_(x)
#define FINITE_NONNEG(field) CHECK_DBL(o->field >= 0 && isfinite(o->field), field, "must be finite and >= 0")

static nb_status validate_kind(const nb_schedule_opts *o, const char *name)
{
    switch (o->kind) {
    case NB_SCHEDULE_STEP:
        CHECK_INT(o->step_size >= 1, step_size, "must be >= 1");
        FINITE_NONNEG(gamma);
        break;
    case NB_SCHEDULE_EXPONENTIAL: FINITE_NONNEG(gamma); break;
    case NB_SCHEDULE_MULTISTEP:
        FINITE_NONNEG(gamma);
        CHECK_INT(o->nmilestones >= 1 && o->nmilestones <= NB_SCHEDULE_MAX_MILESTONES, nmilestones,
                  "give 1 to " STR(NB_SCHEDULE_MAX_MILESTONES) " milestones");
        for (int i = 0; i < o->nmilestones; i++)
            if (o->milestones[i] < 0 || (i > 0 && o->milestones[i] < o->milestones[i - 1]))
                return nb__fail(NB_ERR_ARG, "multistep schedule: invalid milestones[%d] %lld (must be >= 0 and "
                                "not below the one before)", i, (long long)o->milestones[i]);
        break;
    case NB_SCHEDULE_COSINE:
        CHECK_INT(o->T_max >= 1, T_max, "must be >= 1");
        FINITE_NONNEG(eta_min);
        break;
    case NB_SCHEDULE_LINEAR:
        CHECK_DBL(o->start_factor > 0 && o->start_factor <= 1, start_factor, "must be in (0, 1]");
        CHECK_DBL(o->end_factor >= 0 && o->end_factor <= 1, end_factor, "must be in [0, 1]");
        CHECK_INT(o->total_iters >= 1, total_iters, "must be >= 1");
        break;
    case NB_SCHEDULE_PLATEAU:
        CHECK_DBL(o->factor >= 0 && o->factor < 1, factor, "must be in [0, 1)");
        CHECK_INT(o->patience >= 0, patience, "must be >= 0");
        FINITE_NONNEG(threshold);
        CHECK_INT(o->cooldown >= 0, cooldown, "must be >= 0");
        FINITE_NONNEG(min_lr);
        FINITE_NONNEG(eps);
        CHECK_INT(o->mode_max == 0 || o->mode_max == 1, mode_max, "0 = min or 1 = max");
        CHECK_INT(o->threshold_abs == 0 || o->threshold_abs == 1, threshold_abs, "0 = rel or 1 = abs");
        break;
    default: break;
    }
    return NB_OK;
}

nb_status nb_schedule_validate(const nb_schedule_opts *o)
{
    if (!o) return nb__fail(NB_ERR_ARG, "schedule options are NULL");
    if (!kind_ok(o->kind)) return nb__fail(NB_ERR_ARG, "unknown schedule kind %d", (int)o->kind);
    const char *name = KIND_NAMES[o->kind];
    nb_status s = validate_kind(o, name);
    if (s != NB_OK) return s;
    CHECK_INT(o->warmup >= 0, warmup, "must be >= 0");
    if (o->warmup > 0) {
        CHECK_DBL(o->warmup_start_factor > 0 && o->warmup_start_factor <= 1, warmup_start_factor,
                  "must be in (0, 1]");
        if (o->kind == NB_SCHEDULE_PLATEAU)
            return nb__fail(NB_ERR_ARG, "plateau schedule: cannot follow a warm-up (it reacts to a metric, "
                            "not to the epoch)");
    }
    return NB_OK;
}

/* ---- the formulas ------------------------------------------------------------------ */

/* torch's LinearLR.get_lr at epoch e from the current lr. */
static double linear_chain(double start, double end, int64_t total, int64_t e, double lr)
{
    if (e == 0) return lr * start;
    if (e > total) return lr;
    return lr * (1. + (end - start) / ((double)total * start + (double)(e - 1) * (end - start)));
}

/* How many milestones are equal to e (torch's Counter), or at most e (its
 * bisect_right over the sorted list). */
static int milestones_at(const nb_schedule_opts *o, int64_t e, int up_to)
{
    int k = 0;
    for (int i = 0; i < o->nmilestones; i++) k += up_to ? o->milestones[i] <= e : o->milestones[i] == e;
    return k;
}

/* The recursive form (torch's get_lr) at the kind's own epoch e. */
static double chain(const nb_schedule_opts *o, int64_t e, double lr, double base)
{
    switch (o->kind) {
    case NB_SCHEDULE_STEP: return e == 0 || e % o->step_size != 0 ? lr : lr * o->gamma;
    case NB_SCHEDULE_MULTISTEP: {
        int k = milestones_at(o, e, 0);
        return k == 0 ? lr : lr * pow(o->gamma, k);
    }
    case NB_SCHEDULE_EXPONENTIAL: return e == 0 ? lr : lr * o->gamma;
    case NB_SCHEDULE_COSINE: {
        const int64_t T = o->T_max;
        const double eta = o->eta_min;
        if (e == 0) return lr;
        if ((e - 1 - T) % (2 * T) == 0) return lr + (base - eta) * (1 - cos(M_PI / (double)T)) / 2;
        return (1 + cos(M_PI * (double)e / (double)T)) / (1 + cos(M_PI * (double)(e - 1) / (double)T)) *
                   (lr - eta) + eta;
    }
    case NB_SCHEDULE_LINEAR: return linear_chain(o->start_factor, o->end_factor, o->total_iters, e, lr);
    default: return lr;   /* constant */
    }
}

/* The closed form (torch's _get_closed_form_lr) at the kind's epoch e: what
 * SequentialLR applies when it hands over to the kind after the warm-up. */
static double closed_form(const nb_schedule_opts *o, int64_t e, double base)
{
    switch (o->kind) {
    case NB_SCHEDULE_STEP: return base * pow(o->gamma, (double)(e / o->step_size));
    case NB_SCHEDULE_MULTISTEP: return base * pow(o->gamma, milestones_at(o, e, 1));
    case NB_SCHEDULE_EXPONENTIAL: return base * pow(o->gamma, (double)e);
    case NB_SCHEDULE_COSINE:
        return o->eta_min + (base - o->eta_min) * (1 + cos(M_PI * (double)e / (double)o->T_max)) / 2;
    case NB_SCHEDULE_LINEAR: {
        const double s = o->start_factor, f = o->end_factor;
        const int64_t T = o->total_iters;
        return base * (s + (f - s) * (double)(e < T ? e : T) / (double)T);
    }
    default: return base;   /* constant (torch's ConstantLR with factor 1) */
    }
}

/* Group lr at schedule epoch e from its current lr: the warm-up (torch's
 * SequentialLR over LinearLR and the kind) or the kind alone. */
static double lr_at(const nb_schedule_opts *o, int64_t e, double lr, double base)
{
    const int64_t w = o->warmup;
    if (w > 0 && e < w) return linear_chain(o->warmup_start_factor, 1.0, w, e, lr);
    if (w > 0 && e == w) return closed_form(o, 0, base);
    return chain(o, e - w, lr, base);
}

/* ---- the schedule ------------------------------------------------------------------ */

static nb_status check_groups(const nb_schedule *s)
{
    if (nb_optim_group_count(s->optim) != s->ngroups)
        return nb__fail(NB_ERR_STATE, "%s schedule: the optimizer has %d parameter groups, %d when the "
                        "schedule was made", KIND_NAMES[s->opts.kind], nb_optim_group_count(s->optim), s->ngroups);
    return NB_OK;
}

/* Sets every group's lr for epoch e, or none of them if one would be
 * invalid (a lr set by hand below eta_min can make a cosine negative). */
static nb_status apply_epoch(nb_schedule *s, int64_t e)
{
    for (int g = 0; g < s->ngroups; g++) {
        double lr = lr_at(&s->opts, e, nb_optim_get_lr(s->optim, g), s->base_lrs[g]);
        if (!(lr >= 0 && isfinite(lr)))
            return nb__fail(NB_ERR_ARG, "%s schedule: group %d would get lr %g at epoch %lld (its lr is %g)",
                            KIND_NAMES[s->opts.kind], g, lr, (long long)e, nb_optim_get_lr(s->optim, g));
    }
    for (int g = 0; g < s->ngroups; g++) {
        s->lrs[g] = lr_at(&s->opts, e, nb_optim_get_lr(s->optim, g), s->base_lrs[g]);
        nb_optim_set_lr(s->optim, g, s->lrs[g]);
    }
    s->last_epoch = e;
    return NB_OK;
}

nb_schedule *nb_schedule_new(nb_optimizer *o, const nb_schedule_opts *opts)
{
    if (!o || !opts) {
        nb__fail(NB_ERR_ARG, "schedule: optimizer or options are NULL");
        return NULL;
    }
    if (nb_schedule_validate(opts) != NB_OK) return NULL;
    nb_schedule *s = NB_MALLOC(sizeof *s);
    const int n = nb_optim_group_count(o);
    double *lrs = NB_MALLOC(2 * (size_t)n * sizeof *lrs);
    if (!s || !lrs) {
        NB_FREE(s);
        NB_FREE(lrs);
        nb__fail(NB_ERR_NOMEM, "schedule: out of memory");
        return NULL;
    }
    *s = (nb_schedule){.opts = *opts, .optim = o, .ngroups = n, .base_lrs = lrs, .lrs = lrs + n,
                       .best = opts->mode_max ? -INFINITY : INFINITY};
    for (int g = 0; g < n; g++) s->base_lrs[g] = s->lrs[g] = nb_optim_get_lr(o, g);
    /* torch's constructor takes the step to epoch 0; a plateau has none. */
    if (opts->kind != NB_SCHEDULE_PLATEAU && apply_epoch(s, 0) != NB_OK) {
        nb_schedule_free(s);
        return NULL;
    }
    return s;
}

void nb_schedule_free(nb_schedule *s)
{
    if (!s) return;
    NB_FREE(s->base_lrs);   /* lrs shares its allocation */
    NB_FREE(s);
}

nb_status nb_schedule_step(nb_schedule *s)
{
    if (!s) return nb__fail(NB_ERR_ARG, "schedule is NULL");
    if (s->opts.kind == NB_SCHEDULE_PLATEAU)
        return nb__fail(NB_ERR_STATE, "plateau schedule: step it with nb_schedule_step_metric");
    nb_status st = check_groups(s);
    return st != NB_OK ? st : apply_epoch(s, s->last_epoch + 1);
}

/* torch's ReduceLROnPlateau.is_better */
static int improves(const nb_schedule_opts *o, double a, double best)
{
    if (!o->mode_max) return o->threshold_abs ? a < best - o->threshold : a < best * (1. - o->threshold);
    return o->threshold_abs ? a > best + o->threshold : a > best * (o->threshold + 1.);
}

nb_status nb_schedule_step_metric(nb_schedule *s, double metric)
{
    if (!s) return nb__fail(NB_ERR_ARG, "schedule is NULL");
    if (s->opts.kind != NB_SCHEDULE_PLATEAU) return nb_schedule_step(s);
    nb_status st = check_groups(s);
    if (st != NB_OK) return st;
    const nb_schedule_opts *o = &s->opts;
    s->last_epoch++;
    if (improves(o, metric, s->best)) {
        s->best = metric;
        s->num_bad_epochs = 0;
    } else {
        s->num_bad_epochs++;
    }
    if (s->cooldown_counter > 0) {
        s->cooldown_counter--;
        s->num_bad_epochs = 0;   /* bad epochs in the cooldown do not count */
    }
    if (s->num_bad_epochs > o->patience) {
        for (int g = 0; g < s->ngroups; g++) {
            const double old = nb_optim_get_lr(s->optim, g), scaled = old * o->factor;
            const double lr = o->min_lr > scaled ? o->min_lr : scaled;   /* Python's max(scaled, min_lr) */
            if (old - lr > o->eps) nb_optim_set_lr(s->optim, g, lr);
        }
        s->cooldown_counter = o->cooldown;
        s->num_bad_epochs = 0;
    }
    for (int g = 0; g < s->ngroups; g++) s->lrs[g] = nb_optim_get_lr(s->optim, g);
    return NB_OK;
}

nb_status nb_schedule_restore(nb_schedule *s)
{
    if (!s) return nb__fail(NB_ERR_ARG, "schedule is NULL");
    nb_status st = check_groups(s);
    if (st != NB_OK) return st;
    const char *name = KIND_NAMES[s->opts.kind];
    if (s->last_epoch < 0 || s->num_bad_epochs < 0 || s->cooldown_counter < 0)
        return nb__fail(NB_ERR_ARG, "%s schedule: negative last_epoch (%lld), num_bad_epochs (%lld) or "
                        "cooldown_counter (%lld)", name, (long long)s->last_epoch, (long long)s->num_bad_epochs,
                        (long long)s->cooldown_counter);
    if (isnan(s->best)) return nb__fail(NB_ERR_ARG, "%s schedule: best is NaN", name);
    for (int g = 0; g < s->ngroups; g++)
        if (!(s->lrs[g] >= 0 && isfinite(s->lrs[g]) && s->base_lrs[g] >= 0 && isfinite(s->base_lrs[g])))
            return nb__fail(NB_ERR_ARG, "%s schedule: group %d has lr %g and base lr %g (must be finite and "
                            ">= 0)", name, g, s->lrs[g], s->base_lrs[g]);
    for (int g = 0; g < s->ngroups; g++) nb_optim_set_lr(s->optim, g, s->lrs[g]);
    return NB_OK;
}

/* ---- the text spec ------------------------------------------------------------------ */

typedef enum { V_INT, V_DOUBLE, V_LIST, V_MODE, V_THRESHOLD_MODE } value_type;

typedef struct key_info {
    const char *name;
    value_type  type;
    size_t      offset;   /* in nb_schedule_opts */
} key_info;

#define KEY(n, t, field) {n, t, offsetof(nb_schedule_opts, field)}
#define MAX_KEYS 8
/* Each kind's keys in positional order; the warm-up's in WARMUP_KEYS. */
static const key_info KEYS[NB_SCHEDULE_KIND_COUNT][MAX_KEYS] = {
    [NB_SCHEDULE_STEP] = {KEY("step_size", V_INT, step_size), KEY("gamma", V_DOUBLE, gamma)},
    [NB_SCHEDULE_MULTISTEP] = {KEY("milestones", V_LIST, milestones), KEY("gamma", V_DOUBLE, gamma)},
    [NB_SCHEDULE_EXPONENTIAL] = {KEY("gamma", V_DOUBLE, gamma)},
    [NB_SCHEDULE_COSINE] = {KEY("T_max", V_INT, T_max), KEY("eta_min", V_DOUBLE, eta_min)},
    [NB_SCHEDULE_LINEAR] = {KEY("start_factor", V_DOUBLE, start_factor), KEY("total_iters", V_INT, total_iters),
                            KEY("end_factor", V_DOUBLE, end_factor)},
    [NB_SCHEDULE_PLATEAU] = {KEY("factor", V_DOUBLE, factor), KEY("patience", V_INT, patience),
                             KEY("mode", V_MODE, mode_max), KEY("threshold", V_DOUBLE, threshold),
                             KEY("threshold_mode", V_THRESHOLD_MODE, threshold_abs),
                             KEY("cooldown", V_INT, cooldown), KEY("min_lr", V_DOUBLE, min_lr),
                             KEY("eps", V_DOUBLE, eps)},
};
static const key_info WARMUP_KEYS[MAX_KEYS] = {KEY("total_iters", V_INT, warmup),
                                               KEY("start_factor", V_DOUBLE, warmup_start_factor)};
/* The key each kind cannot do without (-1: none). */
static const int REQUIRED[NB_SCHEDULE_KIND_COUNT] = {
    [NB_SCHEDULE_CONSTANT] = -1, [NB_SCHEDULE_STEP] = 0, [NB_SCHEDULE_MULTISTEP] = 0,
    [NB_SCHEDULE_EXPONENTIAL] = 0, [NB_SCHEDULE_COSINE] = -1, [NB_SCHEDULE_LINEAR] = -1,
    [NB_SCHEDULE_PLATEAU] = -1,
};
#define SPEC_MAX 512
static const char *const EXAMPLE[NB_SCHEDULE_KIND_COUNT] = {
    [NB_SCHEDULE_STEP] = "step:10:0.1", [NB_SCHEDULE_MULTISTEP] = "multistep:5,10:0.1",
    [NB_SCHEDULE_EXPONENTIAL] = "exp:0.95",
};

static int same_word(const char *a, const char *b)
{
    while (*a && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
    return !*a && !*b;
}

static nb_status parse_int(const char *spec, const char *key, const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || errno)
        return nb__fail(NB_ERR_ARG, "schedule \"%s\": %s needs an integer, not \"%s\"", spec, key, text);
    *out = v;
    return NB_OK;
}

/* text is the writable copy (a list is cut at its commas). */
static nb_status parse_value(const char *spec, const key_info *k, char *text, nb_schedule_opts *o)
{
    char *field = (char *)o + k->offset, *end;
    switch (k->type) {
    case V_INT: return parse_int(spec, k->name, text, (int64_t *)field);
    case V_DOUBLE: {
        errno = 0;
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v))
            return nb__fail(NB_ERR_ARG, "schedule \"%s\": %s needs a finite number, not \"%s\"", spec, k->name,
                            text);
        *(double *)field = v;
        return NB_OK;
    }
    case V_MODE:
    case V_THRESHOLD_MODE: {
        const char *w0 = k->type == V_MODE ? "min" : "rel", *w1 = k->type == V_MODE ? "max" : "abs";
        if (!same_word(text, w0) && !same_word(text, w1))
            return nb__fail(NB_ERR_ARG, "schedule \"%s\": %s is %s or %s, not \"%s\"", spec, k->name, w0, w1,
                            text);
        *(int *)field = same_word(text, w1);
        return NB_OK;
    }
    case V_LIST: {
        int n = 0;
        for (char *item = text, *comma;; item = comma + 1) {
            if (n == NB_SCHEDULE_MAX_MILESTONES)
                return nb__fail(NB_ERR_ARG, "schedule \"%s\": more than %d milestones", spec,
                                NB_SCHEDULE_MAX_MILESTONES);
            comma = strchr(item, ',');
            if (comma) *comma = 0;
            nb_status s = parse_int(spec, "each milestone", item, &o->milestones[n++]);
            if (s != NB_OK) return s;
            if (!comma) break;
        }
        o->nmilestones = n;
        return NB_OK;
    }
    }
    return NB_OK;
}

/* One part "name:v:v:key=v" (written into, it is a copy) into o, whose kind
 * keys gives. *set gets a bit per key given. */
static nb_status parse_part(const char *spec, char *part, const key_info *keys, nb_schedule_opts *o,
                            unsigned *set)
{
    const char *kind = part;
    char *colon = strchr(part, ':');
    int positional = 0, named = 0;
    *set = 0;
    while (colon) {
        *colon = 0;
        char *text = colon + 1, *eq;
        colon = strchr(text, ':');
        if (colon) *colon = 0;
        int k = -1;
        if ((eq = strchr(text, '=')) != NULL) {
            *eq = 0;
            for (int i = 0; i < MAX_KEYS && keys[i].name && k < 0; i++)
                if (same_word(text, keys[i].name)) k = i;
            if (k < 0) {
                char names[256] = "";
                for (int i = 0; i < MAX_KEYS && keys[i].name; i++)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                             keys[i].name);
                return nb__fail(NB_ERR_ARG, "schedule \"%s\": %s has no key \"%s\" (%s)", spec, kind, text,
                                names[0] ? names : "it takes none");
            }
            named = 1;
            text = eq + 1;
        } else {
            if (named)
                return nb__fail(NB_ERR_ARG, "schedule \"%s\": positional value \"%s\" after a named one", spec,
                                text);
            k = positional++;
            if (k >= MAX_KEYS || !keys[k].name)
                return nb__fail(NB_ERR_ARG, "schedule \"%s\": too many values for %s (it takes %d)", spec, kind,
                                k);
        }
        if (*set & 1u << k)
            return nb__fail(NB_ERR_ARG, "schedule \"%s\": %s given twice", spec, keys[k].name);
        *set |= 1u << k;
        nb_status s = parse_value(spec, &keys[k], text, o);
        if (s != NB_OK) return s;
    }
    return NB_OK;
}

/* The '+' between a warm-up and a schedule: the first one before a letter
 * (a '+' in a number such as 1e+3 is followed by a digit). */
static char *find_plus(char *s)
{
    for (char *p = strchr(s, '+'); p; p = strchr(p + 1, '+'))
        if (isalpha((unsigned char)p[1])) return p;
    return NULL;
}

static nb_schedule_kind kind_of(const char *part)
{
    size_t n = strcspn(part, ":");
    for (int k = 0; k < NB_SCHEDULE_KIND_COUNT; k++)
        if (strlen(KIND_NAMES[k]) == n && strncasecmp(part, KIND_NAMES[k], n) == 0) return (nb_schedule_kind)k;
    return NB_SCHEDULE_UNKNOWN;
}

static int is_warmup(const char *part) { return strncasecmp(part, "warmup", 6) == 0 && (!part[6] || part[6] == ':'); }

nb_status nb_schedule_parse(const char *spec, int64_t total_steps, nb_schedule_opts *out)
{
    if (!spec || !out) return nb__fail(NB_ERR_ARG, "schedule spec or output is NULL");
    char buf[SPEC_MAX];
    if (strlen(spec) >= sizeof buf)
        return nb__fail(NB_ERR_ARG, "schedule spec longer than %d characters", SPEC_MAX - 1);
    strcpy(buf, spec);
    char *warm = NULL, *body = buf, *plus = find_plus(buf);
    if (plus) {
        *plus = 0;
        warm = buf;
        body = plus + 1;
        if (!is_warmup(warm))
            return nb__fail(NB_ERR_ARG, "schedule \"%s\": only a warm-up (warmup:N) may come before '+'", spec);
    } else if (is_warmup(buf)) {
        warm = buf;
        body = "constant";
    }
    nb_schedule_kind kind = kind_of(body);
    if (kind == NB_SCHEDULE_UNKNOWN) {
        if (is_warmup(body)) return nb__fail(NB_ERR_ARG, "schedule \"%s\": one warm-up at most, first", spec);
        return nb__fail(NB_ERR_ARG, "schedule \"%s\": unknown schedule \"%.*s\" (constant, step, multistep, exp, "
                        "cosine, linear, plateau, or warmup:N+one of them)", spec, (int)strcspn(body, ":"), body);
    }
    nb_schedule_opts o = nb_schedule_defaults(kind);
    unsigned set = 0;
    nb_status s;
    if (warm) {
        if ((s = parse_part(spec, warm, WARMUP_KEYS, &o, &set)) != NB_OK) return s;
        if (!(set & 1u)) return nb__fail(NB_ERR_ARG, "schedule \"%s\": warmup needs its length, warmup:N", spec);
        if (o.warmup < 1) return nb__fail(NB_ERR_ARG, "schedule \"%s\": the warm-up needs >= 1 steps", spec);
    }
    char body_copy[SPEC_MAX];
    strcpy(body_copy, body);   /* body may be the literal "constant" */
    if ((s = parse_part(spec, body_copy, KEYS[kind], &o, &set)) != NB_OK) return s;
    if (REQUIRED[kind] >= 0 && !(set & 1u << REQUIRED[kind]))
        return nb__fail(NB_ERR_ARG, "schedule \"%s\": %s needs %s (e.g. %s)", spec, KIND_NAMES[kind],
                        KEYS[kind][REQUIRED[kind]].name, EXAMPLE[kind]);
    if (kind == NB_SCHEDULE_COSINE && !(set & 1u)) {
        if (total_steps - o.warmup < 1)
            return nb__fail(NB_ERR_ARG, "schedule \"%s\": cosine needs T_max, or total steps (%lld) above the "
                            "warm-up (%lld)", spec, (long long)total_steps, (long long)o.warmup);
        o.T_max = total_steps - o.warmup;
    }
    if ((s = nb_schedule_validate(&o)) != NB_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        return nb__fail(s, "schedule \"%s\": %s", spec, msg);
    }
    *out = o;
    return NB_OK;
}

/* snprintf at buf + *len, adding to *len the length it needs even when it
 * does not fit (snprintf's contract for nb_schedule_format). */
NB__PRINTF(4, 5) static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*len < size ? buf + *len : NULL, *len < size ? size - *len : 0, fmt, ap);
    va_end(ap);
    *len += n > 0 ? (size_t)n : 0;
}

/* The shortest %g form of v that reads back as v ("0.1", not
 * "0.10000000000000001"). */
static void shortest(double v, char out[32])
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(out, 32, "%.*g", digits, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* Appends ":value" (positional) or ":key=value" for each key of keys. */
static void format_keys(const key_info *keys, const nb_schedule_opts *o, int positional, char *buf, size_t size,
                        size_t *len)
{
    for (int i = 0; i < MAX_KEYS && keys[i].name; i++) {
        const char *field = (const char *)o + keys[i].offset;
        if (positional) append(buf, size, len, ":");
        else append(buf, size, len, ":%s=", keys[i].name);
        switch (keys[i].type) {
        case V_INT: append(buf, size, len, "%lld", (long long)*(const int64_t *)field); break;
        case V_DOUBLE: {
            char num[32];
            shortest(*(const double *)field, num);
            append(buf, size, len, "%s", num);
            break;
        }
        case V_MODE: append(buf, size, len, "%s", *(const int *)field ? "max" : "min"); break;
        case V_THRESHOLD_MODE: append(buf, size, len, "%s", *(const int *)field ? "abs" : "rel"); break;
        case V_LIST:
            for (int m = 0; m < o->nmilestones; m++)
                append(buf, size, len, "%s%lld", m ? "," : "", (long long)o->milestones[m]);
            break;
        }
    }
}

int nb_schedule_format(const nb_schedule_opts *opts, char *buf, size_t size)
{
    if (!opts || !kind_ok(opts->kind)) return -1;
    if (size > 0) buf[0] = 0;
    size_t len = 0;
    if (opts->warmup > 0) {
        append(buf, size, &len, "warmup");
        format_keys(WARMUP_KEYS, opts, 1, buf, size, &len);
        append(buf, size, &len, "+");
    }
    append(buf, size, &len, "%s", KIND_NAMES[opts->kind]);
    format_keys(KEYS[opts->kind], opts, 0, buf, size, &len);
    return (int)len;
}
