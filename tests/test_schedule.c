/* Learning-rate schedules and gradient clipping against torch
 * (tests/fixtures/schedule.safetensors, from scripts/gen_schedule_fixtures.py),
 * the spec parser, state restore, bad arguments and non-finite gradients.
 *
 * Schedules: the lrs of two groups (0.1 and 0.025) after creation and after
 * each of 40 steps, within 1e-13 relative of torch's doubles at every step
 * (the fixture holds them as two float32s, hi + lo, good to about 1e-14):
 * nabla repeats torch's double arithmetic operation for operation, and on
 * this machine gives the same bits. Clipping: the
 * total norm and every clipped gradient within 1e-6 relative of torch's
 * float64 results. */
#include "test.h"
#include <stdint.h>
#include <stdlib.h>

#define STEPS 40
#define TOL 1e-6        /* clipping */
#define TOL_LR 1e-13    /* schedules */

static nb_safetensors *fixture(void)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(nbt_fixture("schedule.safetensors"), &f) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "cannot load fixture: %s", nb_last_error());
        return NULL;
    }
    return f;
}

static const nb_st_tensor *get(const nb_safetensors *f, const char *fmt, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, fmt, name);
    const nb_st_tensor *t = nb_safetensors_find(f, key);
    if (!t) nbt_fail(__FILE__, __LINE__, "fixture has no tensor %s", key);
    return t;
}

/* |a - b| / |b|, with an absolute floor far below any lr of the fixture
 * (a cosine reaches exactly 0). */
static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-12); }

/* ---- schedules against torch ---------------------------------------------------- */

static const double BASE[2] = {0.1, 0.025};

/* A model of two parameters, each in its own SGD group (lrs BASE). */
static nb_optimizer *two_groups(nb_model **mout)
{
    nb_model *m = nb_model_new("two", "");
    if (!m || nb_model_add_param(m, "a", 1, (int64_t[]){2}) < 0 || nb_model_add_param(m, "b", 1, (int64_t[]){2}) < 0)
        return NULL;
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_SGD);
    o.lr = BASE[0];
    nb_optimizer *opt = nb_optim_new(m, &o);
    if (!opt) return NULL;
    o.lr = BASE[1];
    if (nb_optim_add_group(opt, &o) != 1 || nb_optim_set_group(opt, 1, 1) != NB_OK) return NULL;
    *mout = m;
    return opt;
}

static void free_two(nb_optimizer *o, nb_model *m)
{
    nb_optim_free(o);
    nb_model_free(m);
}

typedef struct sched_case {
    const char *name, *spec;
    int64_t     total;        /* nb_schedule_parse's total_steps */
    int         halve_after;  /* halve both lrs by hand after this step (0: never) */
    const char *metric;       /* "loss", "acc" or NULL */
} sched_case;

/* The table of scripts/gen_schedule_fixtures.py */
static const sched_case CASES[] = {
    {"constant", "constant", 0, 0, NULL},
    {"step_3", "step:3:0.5", 0, 0, NULL},
    {"step_10", "step:10", 0, 0, NULL},
    {"step_halved", "step:4:0.5", 0, 9, NULL},
    {"multistep", "multistep:4,10,10,25:0.3", 0, 0, NULL},
    {"multistep_0", "multistep:0,7:0.5", 0, 0, NULL},
    {"exp", "exp:0.95", 0, 0, NULL},
    {"exp_fast", "exp:0.7", 0, 0, NULL},
    {"cosine", "cosine", 40, 0, NULL},
    {"cosine_periods", "cosine:10:0.001", 0, 0, NULL},
    {"cosine_eta_above", "cosine:7:0.03", 0, 0, NULL},
    {"cosine_halved", "cosine:15:0.001", 0, 12, NULL},
    {"linear", "linear", 0, 0, NULL},
    {"linear_warm", "linear:0.1:10", 0, 0, NULL},
    {"linear_decay", "linear:1:30:0.2", 0, 0, NULL},
    {"warmup_cosine", "warmup:5:0.1+cosine", 40, 0, NULL},
    {"warmup_step", "warmup:3+step:5:0.5", 0, 0, NULL},
    {"warmup_multistep", "warmup:4:0.25+multistep:10,20:0.1", 0, 0, NULL},
    {"warmup_multistep_0", "warmup:3+multistep:0,5:0.5", 0, 0, NULL},
    {"warmup_exp", "warmup:2:0.5+exp:0.9", 0, 0, NULL},
    {"warmup_linear", "warmup:6:0.2+linear:1:20:0.1", 0, 0, NULL},
    {"warmup_constant", "warmup:3", 0, 0, NULL},
    {"warmup_cosine_halved", "warmup:4:0.1+cosine:12", 0, 20, NULL},
    {"plateau_min", "plateau:0.5:2", 0, 0, "loss"},
    {"plateau_max", "plateau:0.5:3:mode=max:threshold=0.01:cooldown=2:min_lr=0.004", 0, 0, "acc"},
    {"plateau_min_abs", "plateau:0.1:1:threshold_mode=abs:threshold=0.05:eps=0.001", 0, 0, "loss"},
    {"plateau_max_abs", "plateau:0.5:0:max:0:abs:1", 0, 0, "acc"},
};

/* One case: nabla's lrs step by step against the fixture; *err gets the
 * largest relative error. Returns 0 after reporting a failure. */
static int run_case(const nb_safetensors *f, const sched_case *c, double *err)
{
    const nb_st_tensor *hi = get(f, "schedule.%s.lrs", c->name), *lo = get(f, "schedule.%s.lrs_lo", c->name);
    const nb_st_tensor *metric = c->metric ? get(f, "schedule.%s", c->metric) : NULL;
    if (!hi || !lo || hi->numel != 2 * (STEPS + 1) || lo->numel != hi->numel ||
        (c->metric && (!metric || metric->numel != STEPS)))
        return 0;
    nb_model *m = NULL;
    nb_optimizer *o = two_groups(&m);
    nb_schedule_opts opts;
    nb_schedule *s = NULL;
    int ok = o && nb_schedule_parse(c->spec, c->total, &opts) == NB_OK && (s = nb_schedule_new(o, &opts));
    if (!ok) nbt_fail(__FILE__, __LINE__, "%s: %s", c->name, nb_last_error());
    *err = 0;
    for (int step = 0; ok && step <= STEPS; step++) {
        if (step > 0) {
            nb_status st = metric ? nb_schedule_step_metric(s, metric->data[step - 1]) : nb_schedule_step(s);
            if (st != NB_OK) {
                nbt_fail(__FILE__, __LINE__, "%s step %d: %s", c->name, step, nb_last_error());
                ok = 0;
                break;
            }
        }
        for (int g = 0; g < 2; g++) {
            const int i = 2 * step + g;
            const double want = (double)hi->data[i] + lo->data[i], lr = nb_optim_get_lr(o, g), e = rel(lr, want);
            *err = fmax(*err, e);
            if (!(e <= TOL_LR) || s->lrs[g] != lr || s->last_epoch != step) {
                nbt_fail(__FILE__, __LINE__, "%s step %d group %d: lr %.17g (schedule says %.17g, epoch %lld), "
                         "torch %.17g", c->name, step, g, lr, s->lrs[g], (long long)s->last_epoch, want);
                ok = 0;
            }
        }
        if (c->halve_after && step == c->halve_after)
            for (int g = 0; g < 2; g++) nb_optim_set_lr(o, g, 0.5 * nb_optim_get_lr(o, g));
    }
    nb_schedule_free(s);
    free_two(o, m);
    return ok;
}

TEST(schedule_matches_torch)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    double worst = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        double e = 0;
        if (!run_case(f, &CASES[i], &e)) break;
        worst = fmax(worst, e);
        if (getenv("NB_SCHEDULE_REPORT")) fprintf(stderr, "  %-22s max rel err %.2e\n", CASES[i].name, e);
    }
    nb_safetensors_free(f);
    CHECK(worst <= TOL_LR);
}

/* Every schedule's lrs against a closed form written from the header, in
 * double: catches a formula that the fixture's float32 would round away. */
TEST(schedule_closed_forms)
{
    nb_model *m = NULL;
    nb_optimizer *o = two_groups(&m);
    CHECK(o);
    const char *specs[] = {"step:3:0.5", "multistep:2,5,5:0.5", "exp:0.9", "cosine:8:0.01", "linear:0.25:6:0.75",
                           "warmup:4:0.2+cosine:10:0.001", "warmup:2+exp:0.8"};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        nb_schedule_opts so;
        CHECK_OK(nb_schedule_parse(specs[k], 0, &so));
        CHECK_OK(nb_optim_set_lr(o, 0, BASE[0]));
        CHECK_OK(nb_optim_set_lr(o, 1, BASE[1]));
        nb_schedule *s = nb_schedule_new(o, &so);
        CHECK(s);
        for (int64_t e = 0; e <= 30; e++) {
            if (e > 0) CHECK_OK(nb_schedule_step(s));
            for (int g = 0; g < 2; g++) {
                const double b = BASE[g];
                const int64_t w = so.warmup, x = e - w;   /* x: the kind's own epoch */
                double want;
                if (e < w) {
                    want = b * (so.warmup_start_factor + (1 - so.warmup_start_factor) * (double)e / (double)w);
                } else if (so.kind == NB_SCHEDULE_STEP) {
                    want = b * pow(so.gamma, (double)(x / so.step_size));
                } else if (so.kind == NB_SCHEDULE_MULTISTEP) {
                    int n = 0;
                    for (int i = 0; i < so.nmilestones; i++) n += so.milestones[i] <= x;
                    want = b * pow(so.gamma, n);
                } else if (so.kind == NB_SCHEDULE_EXPONENTIAL) {
                    want = b * pow(so.gamma, (double)x);
                } else if (so.kind == NB_SCHEDULE_COSINE) {
                    want = so.eta_min + (b - so.eta_min) * (1 + cos(M_PI * (double)x / (double)so.T_max)) / 2;
                } else {
                    want = b * (so.start_factor + (so.end_factor - so.start_factor) *
                                                      (double)(x < so.total_iters ? x : so.total_iters) / (double)so.total_iters);
                }
                double got = nb_optim_get_lr(o, g);
                CHECK_MSG(fabs(got - want) <= 1e-12 * b, "%s epoch %lld group %d: %.17g, closed form %.17g",
                          specs[k], (long long)e, g, got, want);
            }
        }
        nb_schedule_free(s);
    }
    free_two(o, m);
}

/* ---- state: save and restore ------------------------------------------------------ */

/* Run spec for `first` steps, copy its state into a fresh optimizer and
 * schedule, then step both `more` times: the lrs must agree bit for bit. */
static void restore_case(const char *spec, int first, int more)
{
    nb_model *m1 = NULL, *m2 = NULL;
    nb_optimizer *o1 = two_groups(&m1), *o2 = two_groups(&m2);
    CHECK(o1 && o2);
    nb_schedule_opts so;
    CHECK_OK(nb_schedule_parse(spec, 50, &so));
    nb_schedule *a = nb_schedule_new(o1, &so);
    CHECK(a);
    /* a metric with plateaus, so plateau state is mid-way somewhere */
#define METRIC(t) (1.0 / (1 + (t) / 4))
    for (int t = 0; t < first; t++) CHECK_OK(nb_schedule_step_metric(a, METRIC(t)));
    /* what a checkpoint would hold */
    const int64_t last_epoch = a->last_epoch, bad = a->num_bad_epochs, cool = a->cooldown_counter;
    const double best = a->best, base[2] = {a->base_lrs[0], a->base_lrs[1]}, lrs[2] = {a->lrs[0], a->lrs[1]};

    CHECK_OK(nb_optim_set_lr(o2, -1, 0.7));   /* whatever the new run starts with */
    nb_schedule *b = nb_schedule_new(o2, &so);
    CHECK(b);
    b->last_epoch = last_epoch, b->num_bad_epochs = bad, b->cooldown_counter = cool, b->best = best;
    for (int g = 0; g < 2; g++) b->base_lrs[g] = base[g], b->lrs[g] = lrs[g];
    CHECK_OK(nb_schedule_restore(b));
    for (int g = 0; g < 2; g++) CHECK(nb_optim_get_lr(o2, g) == nb_optim_get_lr(o1, g));
    for (int t = first; t < first + more; t++) {
        CHECK_OK(nb_schedule_step_metric(a, METRIC(t)));
        CHECK_OK(nb_schedule_step_metric(b, METRIC(t)));
        for (int g = 0; g < 2; g++)
            CHECK_MSG(nb_optim_get_lr(o2, g) == nb_optim_get_lr(o1, g), "%s step %d group %d: %.17g vs %.17g", spec,
                      t + 1, g, nb_optim_get_lr(o2, g), nb_optim_get_lr(o1, g));
        CHECK(b->last_epoch == a->last_epoch && b->num_bad_epochs == a->num_bad_epochs &&
              b->cooldown_counter == a->cooldown_counter && b->best == a->best);
    }
#undef METRIC
    nb_schedule_free(a);
    nb_schedule_free(b);
    free_two(o1, m1);
    free_two(o2, m2);
}

TEST(schedule_restore_continues_exactly)
{
    restore_case("warmup:5:0.1+cosine", 3, 30);       /* inside the warm-up */
    restore_case("warmup:5:0.1+cosine", 17, 30);      /* inside the cosine */
    restore_case("cosine:10:0.001", 14, 20);          /* past T_max */
    restore_case("multistep:3,9:0.5", 4, 10);
    restore_case("plateau:0.5:1:cooldown=2", 9, 20);
    restore_case("plateau:0.5:2:mode=max", 6, 20);
}

TEST(schedule_restore_rejects_bad_state)
{
    nb_model *m = NULL;
    nb_optimizer *o = two_groups(&m);
    CHECK(o);
    nb_schedule_opts so = nb_schedule_defaults(NB_SCHEDULE_EXPONENTIAL);
    so.gamma = 0.5;
    nb_schedule *s = nb_schedule_new(o, &so);
    CHECK(s);
    CHECK_OK(nb_schedule_step(s));
    s->last_epoch = -1;
    CHECK_ERR(nb_schedule_restore(s), NB_ERR_ARG, "last_epoch");
    s->last_epoch = 1;
    s->lrs[1] = NAN;
    CHECK_ERR(nb_schedule_restore(s), NB_ERR_ARG, "group 1");
    s->lrs[1] = 0.0125;
    s->base_lrs[0] = -1;
    CHECK_ERR(nb_schedule_restore(s), NB_ERR_ARG, "group 0");
    s->base_lrs[0] = 0.1;
    s->best = NAN;
    CHECK_ERR(nb_schedule_restore(s), NB_ERR_ARG, "best");
    s->best = INFINITY;
    CHECK(nb_optim_get_lr(o, 1) == 0.0125);   /* untouched by the failures */
    s->lrs[0] = 0.2;
    CHECK_OK(nb_schedule_restore(s));
    CHECK(nb_optim_get_lr(o, 0) == 0.2);
    nb_schedule_free(s);
    free_two(o, m);
}

/* ---- misuse ------------------------------------------------------------------------ */

TEST(schedule_bad_arguments)
{
    nb_model *m = NULL;
    nb_optimizer *o = two_groups(&m);
    CHECK(o);
    nb_schedule_opts so = nb_schedule_defaults(NB_SCHEDULE_COSINE);
    CHECK(nb_schedule_new(NULL, &so) == NULL && strstr(nb_last_error(), "NULL"));
    CHECK(nb_schedule_new(o, NULL) == NULL);
    CHECK_ERR(nb_schedule_step(NULL), NB_ERR_ARG, "NULL");
    CHECK_ERR(nb_schedule_step_metric(NULL, 1), NB_ERR_ARG, "NULL");
    CHECK_ERR(nb_schedule_restore(NULL), NB_ERR_ARG, "NULL");
    nb_schedule_free(NULL);

    /* each range check names its field */
    struct { nb_schedule_kind kind; const char *field; void (*spoil)(nb_schedule_opts *); } bad[] = {
        {NB_SCHEDULE_STEP, "step_size", NULL}, {NB_SCHEDULE_STEP, "gamma", NULL},
        {NB_SCHEDULE_EXPONENTIAL, "gamma", NULL}, {NB_SCHEDULE_MULTISTEP, "nmilestones", NULL},
        {NB_SCHEDULE_COSINE, "T_max", NULL}, {NB_SCHEDULE_COSINE, "eta_min", NULL},
        {NB_SCHEDULE_LINEAR, "start_factor", NULL}, {NB_SCHEDULE_LINEAR, "end_factor", NULL},
        {NB_SCHEDULE_LINEAR, "total_iters", NULL}, {NB_SCHEDULE_PLATEAU, "factor", NULL},
        {NB_SCHEDULE_PLATEAU, "patience", NULL}, {NB_SCHEDULE_PLATEAU, "threshold", NULL},
        {NB_SCHEDULE_PLATEAU, "cooldown", NULL}, {NB_SCHEDULE_PLATEAU, "min_lr", NULL},
        {NB_SCHEDULE_PLATEAU, "eps", NULL}, {NB_SCHEDULE_PLATEAU, "mode_max", NULL},
        {NB_SCHEDULE_PLATEAU, "threshold_abs", NULL}, {NB_SCHEDULE_CONSTANT, "warmup", NULL},
        {NB_SCHEDULE_CONSTANT, "warmup_start_factor", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        so = nb_schedule_defaults(bad[i].kind);
        const char *f = bad[i].field;
        if (!strcmp(f, "step_size")) so.step_size = 0;
        else if (!strcmp(f, "gamma")) so.gamma = NAN;
        else if (!strcmp(f, "nmilestones")) so.nmilestones = 0;
        else if (!strcmp(f, "T_max")) so.T_max = 0;
        else if (!strcmp(f, "eta_min")) so.eta_min = -1e-3;
        else if (!strcmp(f, "start_factor")) so.start_factor = 0;
        else if (!strcmp(f, "end_factor")) so.end_factor = 1.5;
        else if (!strcmp(f, "total_iters")) so.total_iters = 0;
        else if (!strcmp(f, "factor")) so.factor = 1;
        else if (!strcmp(f, "patience")) so.patience = -1;
        else if (!strcmp(f, "threshold")) so.threshold = INFINITY;
        else if (!strcmp(f, "cooldown")) so.cooldown = -2;
        else if (!strcmp(f, "min_lr")) so.min_lr = -1;
        else if (!strcmp(f, "eps")) so.eps = NAN;
        else if (!strcmp(f, "mode_max")) so.mode_max = 2;
        else if (!strcmp(f, "threshold_abs")) so.threshold_abs = -1;
        else if (!strcmp(f, "warmup")) so.warmup = -1;
        else so.warmup = 3, so.warmup_start_factor = 0;
        CHECK_ERR(nb_schedule_validate(&so), NB_ERR_ARG, f);
        CHECK_MSG(nb_schedule_new(o, &so) == NULL, "%s accepted", f);
    }
    so = nb_schedule_defaults(NB_SCHEDULE_MULTISTEP);
    so.nmilestones = 2, so.milestones[0] = 5, so.milestones[1] = 3;
    CHECK_ERR(nb_schedule_validate(&so), NB_ERR_ARG, "milestones[1] 3");
    so = nb_schedule_defaults(NB_SCHEDULE_PLATEAU);
    so.warmup = 2;
    CHECK_ERR(nb_schedule_validate(&so), NB_ERR_ARG, "cannot follow a warm-up");
    so.kind = NB_SCHEDULE_KIND_COUNT;
    CHECK_ERR(nb_schedule_validate(&so), NB_ERR_ARG, "unknown schedule kind");
    CHECK(nb_schedule_defaults((nb_schedule_kind)99).kind == NB_SCHEDULE_UNKNOWN);
    CHECK(nb_schedule_kind_name(NB_SCHEDULE_UNKNOWN) == NULL);
    CHECK(!strcmp(nb_schedule_kind_name(NB_SCHEDULE_EXPONENTIAL), "exp"));
    CHECK(nb_optim_get_lr(o, 0) == BASE[0] && nb_optim_get_lr(o, 1) == BASE[1]);   /* no failure touched it */

    /* a plateau needs its metric */
    so = nb_schedule_defaults(NB_SCHEDULE_PLATEAU);
    nb_schedule *s = nb_schedule_new(o, &so);
    CHECK(s);
    CHECK(s->best == INFINITY && nb_optim_get_lr(o, 0) == BASE[0]);
    CHECK_ERR(nb_schedule_step(s), NB_ERR_STATE, "nb_schedule_step_metric");
    CHECK(s->last_epoch == 0);
    nb_schedule_free(s);

    /* a group added after the schedule was made */
    so = nb_schedule_defaults(NB_SCHEDULE_STEP);
    s = nb_schedule_new(o, &so);
    CHECK(s);
    nb_optim_opts g = nb_optim_defaults(NB_OPTIM_SGD);
    CHECK(nb_optim_add_group(o, &g) == 2);
    CHECK_ERR(nb_schedule_step(s), NB_ERR_STATE, "3 parameter groups, 2 when");
    CHECK_ERR(nb_schedule_restore(s), NB_ERR_STATE, "parameter groups");
    nb_schedule_free(s);
    free_two(o, m);

    /* a cosine whose lr was set by hand far below eta_min would go negative */
    o = two_groups(&m);
    CHECK(o);
    so = nb_schedule_defaults(NB_SCHEDULE_COSINE);
    so.T_max = 4, so.eta_min = 0.05;
    s = nb_schedule_new(o, &so);
    CHECK(s);
    for (int t = 0; t < 5; t++) CHECK_OK(nb_schedule_step(s));   /* past T_max: the lr rises again */
    CHECK_OK(nb_optim_set_lr(o, 1, 0));
    CHECK_ERR(nb_schedule_step(s), NB_ERR_ARG, "group 1 would get lr");
    CHECK(s->last_epoch == 5 && nb_optim_get_lr(o, 1) == 0 && nb_optim_get_lr(o, 0) == s->lrs[0]);
    nb_schedule_free(s);
    free_two(o, m);
}

/* The non-plateau kinds step the same with or without a metric; a NaN
 * metric is a bad epoch for a plateau (torch's comparisons are false). */
TEST(schedule_step_metric_all_kinds)
{
    nb_model *m1 = NULL, *m2 = NULL;
    nb_optimizer *o1 = two_groups(&m1), *o2 = two_groups(&m2);
    CHECK(o1 && o2);
    nb_schedule_opts so;
    CHECK_OK(nb_schedule_parse("warmup:2+step:3:0.5", 0, &so));
    nb_schedule *a = nb_schedule_new(o1, &so), *b = nb_schedule_new(o2, &so);
    CHECK(a && b);
    for (int t = 0; t < 10; t++) {
        CHECK_OK(nb_schedule_step(a));
        CHECK_OK(nb_schedule_step_metric(b, NAN));
        CHECK(nb_optim_get_lr(o1, 0) == nb_optim_get_lr(o2, 0) && nb_optim_get_lr(o1, 1) == nb_optim_get_lr(o2, 1));
    }
    nb_schedule_free(a);
    nb_schedule_free(b);
    CHECK_OK(nb_optim_set_lr(o1, 0, 0.1));
    CHECK_OK(nb_schedule_parse("plateau:0.5:1", 0, &so));
    a = nb_schedule_new(o1, &so);
    CHECK(a);
    CHECK_OK(nb_schedule_step_metric(a, 1.0));
    CHECK_OK(nb_schedule_step_metric(a, NAN));
    CHECK(a->num_bad_epochs == 1 && a->best == 1.0);
    CHECK_OK(nb_schedule_step_metric(a, NAN));
    CHECK(a->num_bad_epochs == 0 && nb_optim_get_lr(o1, 0) == 0.05 && a->lrs[0] == 0.05);
    nb_schedule_free(a);
    free_two(o1, m1);
    free_two(o2, m2);
}

/* ---- the spec parser --------------------------------------------------------------- */

static int same_opts(const nb_schedule_opts *a, const nb_schedule_opts *b)
{
    int same = a->kind == b->kind && a->step_size == b->step_size && a->gamma == b->gamma &&
               a->nmilestones == b->nmilestones && a->T_max == b->T_max && a->eta_min == b->eta_min &&
               a->start_factor == b->start_factor && a->end_factor == b->end_factor &&
               a->total_iters == b->total_iters && a->mode_max == b->mode_max && a->factor == b->factor &&
               a->patience == b->patience && a->threshold == b->threshold && a->threshold_abs == b->threshold_abs &&
               a->cooldown == b->cooldown && a->min_lr == b->min_lr && a->eps == b->eps && a->warmup == b->warmup &&
               a->warmup_start_factor == b->warmup_start_factor;
    for (int i = 0; same && i < a->nmilestones; i++) same = a->milestones[i] == b->milestones[i];
    return same;
}

TEST(schedule_parse_good_specs)
{
    struct { const char *spec; int64_t total; nb_schedule_opts want; } good[24];
    int n = 0;
#define GOOD(s, t, k) (good[n].spec = (s), good[n].total = (t), good[n].want = nb_schedule_defaults(k), &good[n++].want)
    nb_schedule_opts *w;
    GOOD("constant", 0, NB_SCHEDULE_CONSTANT);
    w = GOOD("step:10:0.1", 0, NB_SCHEDULE_STEP);
    w->step_size = 10;
    w = GOOD("STEP:7", 0, NB_SCHEDULE_STEP);
    w->step_size = 7;
    w = GOOD("multistep:5,10:0.1", 0, NB_SCHEDULE_MULTISTEP);
    w->nmilestones = 2, w->milestones[0] = 5, w->milestones[1] = 10;
    w = GOOD("multistep:gamma=0.5:milestones=3", 0, NB_SCHEDULE_MULTISTEP);
    w->nmilestones = 1, w->milestones[0] = 3, w->gamma = 0.5;
    w = GOOD("exp:0.95", 0, NB_SCHEDULE_EXPONENTIAL);
    w->gamma = 0.95;
    w = GOOD("cosine", 90, NB_SCHEDULE_COSINE);
    w->T_max = 90;
    w = GOOD("cosine:20:1e-5", 0, NB_SCHEDULE_COSINE);
    w->T_max = 20, w->eta_min = 1e-5;
    w = GOOD("cosine:eta_min=1e+0:t_max=3", 0, NB_SCHEDULE_COSINE);
    w->T_max = 3, w->eta_min = 1;
    w = GOOD("linear:0.1:5", 0, NB_SCHEDULE_LINEAR);
    w->start_factor = 0.1, w->total_iters = 5;
    GOOD("linear", 0, NB_SCHEDULE_LINEAR);
    w = GOOD("warmup:3+cosine", 50, NB_SCHEDULE_COSINE);
    w->warmup = 3, w->T_max = 47;
    w = GOOD("warmup:5:0.01+cosine:eta_min=1e-5", 100, NB_SCHEDULE_COSINE);
    w->warmup = 5, w->warmup_start_factor = 0.01, w->T_max = 95, w->eta_min = 1e-5;
    w = GOOD("warmup:total_iters=4:start_factor=1e-1", 0, NB_SCHEDULE_CONSTANT);
    w->warmup = 4, w->warmup_start_factor = 0.1;
    w = GOOD("Warmup:2+Exp:0.5", 0, NB_SCHEDULE_EXPONENTIAL);
    w->warmup = 2, w->gamma = 0.5;
    w = GOOD("plateau:0.1:2", 0, NB_SCHEDULE_PLATEAU);
    w->patience = 2;
    w = GOOD("plateau:0.5:3:mode=MAX:cooldown=1", 0, NB_SCHEDULE_PLATEAU);
    w->factor = 0.5, w->patience = 3, w->mode_max = 1, w->cooldown = 1;
    w = GOOD("plateau:0.2:4:max:1e-3:abs:2:1e-6:0", 0, NB_SCHEDULE_PLATEAU);
    w->factor = 0.2, w->patience = 4, w->mode_max = 1, w->threshold = 1e-3, w->threshold_abs = 1, w->cooldown = 2;
    w->min_lr = 1e-6, w->eps = 0;
#undef GOOD
    for (int i = 0; i < n; i++) {
        nb_schedule_opts got;
        CHECK_MSG(nb_schedule_parse(good[i].spec, good[i].total, &got) == NB_OK, "%s: %s", good[i].spec,
                  nb_last_error());
        CHECK_MSG(same_opts(&got, &good[i].want), "%s parsed to other settings", good[i].spec);
        /* the formatted spec parses back to the same settings */
        char buf[512];
        int len = nb_schedule_format(&got, buf, sizeof buf);
        CHECK(len > 0 && (size_t)len == strlen(buf));
        nb_schedule_opts again;
        CHECK_MSG(nb_schedule_parse(buf, 0, &again) == NB_OK, "%s -> %s: %s", good[i].spec, buf, nb_last_error());
        CHECK_MSG(same_opts(&again, &got), "%s -> %s parsed to other settings", good[i].spec, buf);
    }
    char buf[64], small[8];
    nb_schedule_opts so;
    CHECK_OK(nb_schedule_parse("warmup:5:0.1+cosine:45", 0, &so));
    CHECK(nb_schedule_format(&so, buf, sizeof buf) > 0);
    CHECK_MSG(!strcmp(buf, "warmup:5:0.1+cosine:T_max=45:eta_min=0"), "%s", buf);
    int need = nb_schedule_format(&so, small, sizeof small);
    CHECK(need == (int)strlen(buf) && !strcmp(small, "warmup:"));
    CHECK(nb_schedule_format(&so, NULL, 0) == need);
    so.kind = NB_SCHEDULE_UNKNOWN;
    CHECK(nb_schedule_format(&so, buf, sizeof buf) == -1 && nb_schedule_format(NULL, buf, sizeof buf) == -1);
}

TEST(schedule_parse_bad_specs)
{
    static const struct { const char *spec; int64_t total; const char *msg; } bad[] = {
        {"", 0, "unknown schedule \"\""},
        {"sine", 0, "unknown schedule \"sine\" (constant, step"},
        {"step", 0, "step needs step_size (e.g. step:10:0.1)"},
        {"step:ten", 0, "step_size needs an integer, not \"ten\""},
        {"step:0", 0, "invalid step_size 0"},
        {"step:10:0.1:3", 0, "too many values for step (it takes 2)"},
        {"step:10:fast=1", 0, "step has no key \"fast\" (step_size, gamma)"},
        {"step:gamma=0.5:10", 0, "positional value \"10\" after a named one"},
        {"step:10:step_size=3", 0, "step_size given twice"},
        {"exp", 0, "exp needs gamma (e.g. exp:0.95)"},
        {"exp:nan", 0, "gamma needs a finite number, not \"nan\""},
        {"exp:0.9x", 0, "not \"0.9x\""},
        {"exp:-0.5", 0, "invalid gamma -0.5"},
        {"multistep", 0, "multistep needs milestones"},
        {"multistep:5,,10", 0, "each milestone needs an integer, not \"\""},
        {"multistep:10,5", 0, "not below the one before"},
        {"multistep:1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33", 0,
         "more than 32 milestones"},
        {"cosine", 0, "cosine needs T_max, or total steps (0) above the warm-up (0)"},
        {"warmup:10+cosine", 10, "above the warm-up (10)"},
        {"cosine:0", 0, "invalid T_max 0"},
        {"constant:1", 0, "too many values for constant (it takes 0)"},
        {"constant:x=1", 0, "constant has no key \"x\" (it takes none)"},
        {"linear:0:5", 0, "invalid start_factor 0"},
        {"linear:1.5", 0, "invalid start_factor 1.5"},
        {"plateau:1", 0, "invalid factor 1"},
        {"plateau:0.1:2:sideways", 0, "mode is min or max, not \"sideways\""},
        {"plateau:threshold_mode=both", 0, "threshold_mode is rel or abs"},
        {"warmup", 0, "warmup needs its length"},
        {"warmup:0+cosine:5", 0, "the warm-up needs >= 1 steps"},
        {"warmup:3:2+cosine:5", 0, "invalid warmup_start_factor 2"},
        {"warmup:3+plateau", 0, "cannot follow a warm-up"},
        {"cosine:5+warmup:3", 0, "only a warm-up (warmup:N) may come before '+'"},
        {"warmup:3+warmup:2", 0, "one warm-up at most"},
        {"warmup:3+", 0, "total_iters needs an integer, not \"3+\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nb_schedule_opts so = nb_schedule_defaults(NB_SCHEDULE_STEP);
        so.step_size = 1234;
        nb_status s = nb_schedule_parse(bad[i].spec, bad[i].total, &so);
        CHECK_MSG(s == NB_ERR_ARG && strstr(nb_last_error(), bad[i].msg), "\"%s\": %s \"%s\", expected \"%s\"",
                  bad[i].spec, nb_status_str(s), nb_last_error(), bad[i].msg);
        CHECK_MSG(so.step_size == 1234, "\"%s\" wrote its output", bad[i].spec);
    }
    char longer[600];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    nb_schedule_opts so;
    CHECK_ERR(nb_schedule_parse(longer, 0, &so), NB_ERR_ARG, "longer than");
    CHECK_ERR(nb_schedule_parse(NULL, 0, &so), NB_ERR_ARG, "NULL");
    CHECK_ERR(nb_schedule_parse("constant", 0, NULL), NB_ERR_ARG, "NULL");
}

/* ---- clipping against torch --------------------------------------------------------- */

/* The fixture's model: trainable parameters, a frozen one and a buffer, with
 * the fixture's gradients. */
static nb_model *clip_model(const nb_safetensors *f)
{
    static const struct { const char *name; int ndim; int64_t shape[2]; int kind; } P[] = {
        {"fc1.weight", 2, {5, 4}, 0}, {"fc1.bias", 1, {5}, 0}, {"frozen.weight", 2, {3, 3}, 1},
        {"bn.running_mean", 1, {5}, 2}, {"fc2.weight", 2, {3, 5}, 0}, {"fc2.bias", 1, {3}, 0}, {"scale", 0, {0}, 0},
    };
    nb_model *m = nb_model_new("clip", "");
    if (!m) return NULL;
    for (size_t i = 0; i < sizeof P / sizeof *P; i++) {
        int k = P[i].kind == 2 ? nb_model_add_buffer(m, P[i].name, P[i].ndim, P[i].shape)
                               : nb_model_add_param(m, P[i].name, P[i].ndim, P[i].shape);
        if (k < 0) return NULL;
        if (P[i].kind == 1) m->params[k].t.requires_grad = 0;
    }
    for (int i = 0; i < m->nparams; i++) {
        const nb_st_tensor *t = get(f, "clip.grad.%s", m->params[i].name);
        if (!t || t->numel != nb_tensor_numel(&m->params[i].t)) return NULL;
        memcpy(m->params[i].t.grad, t->data, (size_t)t->numel * sizeof(float));
    }
    return m;
}

static int trainable(const nb_param *p) { return !p->buffer && p->t.requires_grad; }

TEST(clip_matches_torch)
{
    static const struct { const char *name; int by_value; double arg, p; } C[] = {
        {"norm2", 0, 1.0, 2}, {"norm2_below", 0, 100.0, 2}, {"norm1", 0, 2.0, 1}, {"norm_inf", 0, 0.1, INFINITY},
        {"norm3", 0, 0.5, 3}, {"norm_half", 0, 1.0, 0.5}, {"norm2_zero", 0, 0.0, 2}, {"value", 1, 0.05, 0},
    };
    nb_safetensors *f = fixture();
    CHECK(f);
    for (size_t c = 0; c < sizeof C / sizeof *C; c++) {
        nb_model *m = clip_model(f);
        CHECK(m);
        double total = -1;
        if (C[c].by_value) CHECK_OK(nb_clip_grad_value(m, C[c].arg));
        else CHECK_OK(nb_clip_grad_norm(m, C[c].arg, C[c].p, 1, &total));
        const nb_st_tensor *want_total = get(f, "clip.%s.total", C[c].name);
        CHECK(want_total);
        if (!C[c].by_value)
            CHECK_MSG(rel(total, want_total->data[0]) <= TOL, "%s: total %.9g, torch %.9g", C[c].name, total,
                      want_total->data[0]);
        for (int i = 0; i < m->nparams; i++) {
            const nb_param *p = &m->params[i];
            char key[96];
            snprintf(key, sizeof key, "%s.%s", C[c].name, p->name);
            const nb_st_tensor *want = get(f, trainable(p) ? "clip.%s" : "clip.grad.%s", trainable(p) ? key : p->name);
            CHECK(want && want->numel == nb_tensor_numel(&p->t));
            for (int64_t j = 0; j < want->numel; j++)
                CHECK_MSG(fabs(p->t.grad[j] - want->data[j]) <= TOL * fabs(want->data[j]) + 1e-12,
                          "%s %s[%lld]: %.9g, torch %.9g", C[c].name, p->name, (long long)j, p->t.grad[j],
                          want->data[j]);
        }
        nb_model_free(m);
    }
    nb_safetensors_free(f);
}

TEST(clip_nonfinite)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    nb_model *m = clip_model(f);
    CHECK(m);
    const size_t bytes = m->numel * sizeof(float);
    float *before = malloc(bytes);
    CHECK(before);
    m->params[4].t.grad[3] = NAN;   /* fc2.weight */
    memcpy(before, m->grad, bytes);
    const double types[] = {2, 1, 3, INFINITY};
    for (int k = 0; k < 4; k++) {
        double total = 0;
        CHECK_ERR(nb_clip_grad_norm(m, 1.0, types[k], 1, &total), NB_ERR_NONFINITE, "gradients unchanged");
        CHECK(isnan(total) && memcmp(before, m->grad, bytes) == 0);
    }
    /* without the check, as torch: multiplied by a NaN coefficient */
    double total = 0;
    CHECK_OK(nb_clip_grad_norm(m, 1.0, 2, 0, &total));
    CHECK(isnan(total) && isnan(m->params[0].t.grad[0]) && isnan(m->params[6].t.grad[0]));
    CHECK(m->params[2].t.grad[0] == before[m->params[2].offset]);   /* frozen: untouched */

    /* an infinite gradient: an infinite total, coef 0, so inf * 0 = NaN and the rest 0 */
    memcpy(m->grad, before, bytes);
    m->params[4].t.grad[3] = -INFINITY;
    CHECK_ERR(nb_clip_grad_norm(m, 1.0, INFINITY, 1, &total), NB_ERR_NONFINITE, "is inf");
    CHECK(isinf(total) && m->params[4].t.grad[3] == -INFINITY && m->params[0].t.grad[1] == before[m->params[0].offset + 1]);
    CHECK_OK(nb_clip_grad_norm(m, 1.0, 2, 0, &total));
    CHECK(isinf(total) && isnan(m->params[4].t.grad[3]) && m->params[4].t.grad[2] == 0 && m->params[0].t.grad[1] == 0);

    /* a NaN or infinity in a frozen parameter or a buffer does not count */
    memcpy(m->grad, before, bytes);
    m->params[4].t.grad[3] = 0.5f;
    m->params[2].t.grad[0] = NAN;
    m->params[3].t.grad[1] = INFINITY;
    CHECK_OK(nb_clip_grad_norm(m, 1.0, INFINITY, 1, &total));
    CHECK(isfinite(total));
    /* clip by value keeps NaN */
    m->params[0].t.grad[0] = NAN;
    m->params[0].t.grad[1] = -INFINITY;
    CHECK_OK(nb_clip_grad_value(m, 0.01));
    CHECK(isnan(m->params[0].t.grad[0]) && m->params[0].t.grad[1] == -0.01f);
    CHECK(isnan(m->params[2].t.grad[0]) && isinf(m->params[3].t.grad[1]));   /* not trainable: untouched */
    free(before);
    nb_model_free(m);
    nb_safetensors_free(f);
}

TEST(clip_bad_arguments)
{
    nb_model *m = nb_model_new("empty", "");
    CHECK(m);
    double total = -1;
    CHECK_ERR(nb_clip_grad_norm(NULL, 1, 2, 0, &total), NB_ERR_ARG, "NULL");
    CHECK_ERR(nb_clip_grad_norm(m, -1, 2, 0, &total), NB_ERR_ARG, "max_norm -1");
    CHECK_ERR(nb_clip_grad_norm(m, NAN, 2, 0, &total), NB_ERR_ARG, "max_norm nan");
    CHECK_ERR(nb_clip_grad_norm(m, 1, 0, 0, &total), NB_ERR_ARG, "norm_type 0");
    CHECK_ERR(nb_clip_grad_norm(m, 1, -INFINITY, 0, &total), NB_ERR_ARG, "norm_type -inf");
    CHECK_ERR(nb_clip_grad_norm(m, 1, NAN, 0, &total), NB_ERR_ARG, "norm_type nan");
    CHECK(total == -1);
    CHECK_ERR(nb_clip_grad_value(NULL, 1), NB_ERR_ARG, "NULL");
    CHECK_ERR(nb_clip_grad_value(m, -0.5), NB_ERR_ARG, "clip_value -0.5");
    CHECK_ERR(nb_clip_grad_value(m, NAN), NB_ERR_ARG, "clip_value nan");
    /* no trainable parameters: total 0 */
    CHECK_OK(nb_clip_grad_norm(m, 1, 2, 1, &total));
    CHECK(total == 0);
    CHECK_OK(nb_clip_grad_norm(m, INFINITY, INFINITY, 1, NULL));
    CHECK_OK(nb_clip_grad_value(m, INFINITY));
    nb_model_free(m);
}

/* A gradient large enough for the parallel chunks: the norm is the same bit
 * for bit with 1 and 2 threads and agrees with a plain double sum. */
TEST(clip_large_deterministic)
{
    nb_model *m = nb_model_new("large", "");
    CHECK(m);
    const int64_t n = 300001;
    CHECK(nb_model_add_param(m, "w", 1, &n) == 0 && nb_model_add_param(m, "b", 1, (int64_t[]){7}) == 1);
    float *g = m->params[0].t.grad;
    uint32_t x = 12345;
    for (int64_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        g[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.01f;
    }
    for (int i = 0; i < 7; i++) m->params[1].t.grad[i] = 0.25f * (float)(i - 3);
    const double types[] = {2, 1, 3, INFINITY};
    const int threads = nb_get_threads();
    for (int k = 0; k < 4; k++) {
        double want = 0, got[2];
        for (int p = 0; p < 2; p++)
            for (int64_t i = 0; i < nb_tensor_numel(&m->params[p].t); i++) {
                double a = fabs((double)m->params[p].t.grad[i]);
                want = isinf(types[k]) ? fmax(want, a) : want + pow(a, types[k]);
            }
        if (!isinf(types[k])) want = pow(want, 1 / types[k]);
        for (int t = 0; t < 2; t++) {
            nb_set_threads(t + 1);
            CHECK_OK(nb_clip_grad_norm(m, INFINITY, types[k], 1, &got[t]));
        }
        nb_set_threads(threads);
        CHECK_MSG(got[0] == got[1], "norm %g: %.17g with 1 thread, %.17g with 2", types[k], got[0], got[1]);
        CHECK_MSG(rel(got[0], want) <= 1e-12, "norm %g: %.17g, plain sum %.17g", types[k], got[0], want);
    }
    /* and the clipped gradients are the float product */
    double total;
    const float g0 = g[12345], b6 = m->params[1].t.grad[6];
    CHECK_OK(nb_clip_grad_norm(m, 0.5, 2, 0, &total));
    const float c = (float)(0.5 / (total + 1e-6));
    CHECK(g[12345] == g0 * c && m->params[1].t.grad[6] == b6 * c);
    nb_model_free(m);
}
