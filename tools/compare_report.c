/* What `nabla compare` writes: the CSV files of every curve and run, the
 * charts, and REPORT.md, the notes' optimizer table with the measured values
 * beside its words and a verdict per claim computed from them. */
#include "compare.h"
#include "nabla/plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Accuracy differences below this, and step counts within this fraction,
 * are ties when a claim is checked: smaller than what seeds change. */
#define ACC_TIE   0.005
#define STEPS_TIE 0.05
/* "Near the best" learning rates: within this much test accuracy. */
#define NEAR_BEST 0.02

/* ---- numbers per optimizer ----------------------------------------------- */

typedef struct opt_summary {
    /* the sweep: test accuracy per learning rate over the seeds */
    double acc_mean[CMP_MAX_LRS], acc_min[CMP_MAX_LRS], acc_max[CMP_MAX_LRS];
    int    best;                  /* lr index of the highest mean */
    double spread;                /* max - min of acc_mean (NAN with one lr) */
    int    near_best;             /* lrs whose mean is within NEAR_BEST of the best */
    int    diverged, runs;
    /* the default learning rate */
    double acc, acc_lo, acc_hi;   /* final test accuracy: mean, min, max over seeds */
    int    reached;               /* seeds that reached the target accuracy */
    double steps_to_target;       /* mean over those seeds (NAN if none) */
    double seconds_to_target;
    double last_loss;             /* mean over seeds of the last curve point */
    double seconds;               /* training seconds per run */
    /* milliseconds per step over every run of the sweep: the median, and
     * the range (wall time on a shared machine is noisy) */
    double ms_per_step, ms_lo, ms_hi;
} opt_summary;

typedef struct report {
    const cmp_setup *S;
    const cmp_run   *runs;
    opt_summary      sum[CMP_MAX_OPTIMS];
} report;

static const cmp_run *run_at(const report *R, int o, int l, int s)
{
    return &R->runs[cmp_run_index(R->S, o, l, s)];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of the milliseconds per step of optimizer o's runs. */
static void step_times(const report *R, int o, opt_summary *u)
{
    double ms[CMP_MAX_LRS * CMP_MAX_SEEDS];
    int n = 0;
    for (int l = 0; l < R->S->nlr[o]; l++)
        for (int s = 0; s < R->S->nseeds; s++) {
            const cmp_run *r = run_at(R, o, l, s);
            if (r->steps) ms[n++] = 1e3 * r->seconds / (double)r->steps;
        }
    if (!n) {
        u->ms_per_step = u->ms_lo = u->ms_hi = NAN;
        return;
    }
    qsort(ms, (size_t)n, sizeof ms[0], cmp_double);
    u->ms_per_step = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    u->ms_lo = ms[0], u->ms_hi = ms[n - 1];
}

static void summarize(const report *R, int o, opt_summary *u)
{
    const cmp_setup *S = R->S;
    memset(u, 0, sizeof *u);
    for (int l = 0; l < S->nlr[o]; l++) {
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        for (int s = 0; s < S->nseeds; s++) {
            const cmp_run *r = run_at(R, o, l, s);
            sum += r->test_acc;
            lo = fmin(lo, r->test_acc), hi = fmax(hi, r->test_acc);
            u->diverged += r->diverged;
            u->runs++;
        }
        u->acc_mean[l] = sum / S->nseeds, u->acc_min[l] = lo, u->acc_max[l] = hi;
        if (u->acc_mean[l] > u->acc_mean[u->best]) u->best = l;
    }
    double worst = u->acc_mean[0];
    for (int l = 0; l < S->nlr[o]; l++) {
        worst = fmin(worst, u->acc_mean[l]);
        u->near_best += u->acc_mean[l] >= u->acc_mean[u->best] - NEAR_BEST;
    }
    u->spread = S->nlr[o] > 1 ? u->acc_mean[u->best] - worst : NAN;

    int d = S->default_lr_index[o];
    double acc = 0, steps = 0, secs_target = 0, secs = 0, last = 0;
    u->acc_lo = INFINITY, u->acc_hi = -INFINITY;
    for (int s = 0; s < S->nseeds; s++) {
        const cmp_run *r = run_at(R, o, d, s);
        acc += r->test_acc;
        u->acc_lo = fmin(u->acc_lo, r->test_acc), u->acc_hi = fmax(u->acc_hi, r->test_acc);
        if (r->steps_to_target >= 0) {
            u->reached++;
            steps += (double)r->steps_to_target;
            secs_target += r->seconds_to_target;
        }
        last += r->ncurve ? r->curve[r->ncurve - 1].loss : NAN;
        secs += r->seconds;
    }
    u->acc = acc / S->nseeds;
    u->steps_to_target = u->reached ? steps / u->reached : NAN;
    u->seconds_to_target = u->reached ? secs_target / u->reached : NAN;
    u->last_loss = last / S->nseeds;
    u->seconds = secs / S->nseeds;
    step_times(R, o, u);
}

/* ---- files ---------------------------------------------------------------- */

/* A number for a CSV cell or the report: %.6g, and nan/inf spelled one way. */
static void put_num(FILE *f, double v)
{
    if (isnan(v)) fputs("nan", f);
    else if (isinf(v)) fputs(v > 0 ? "inf" : "-inf", f);
    else fprintf(f, "%.6g", v);
}

/* ",v1,v2,...": n cells after the ones already on the line. */
static void put_cells(FILE *f, const double *v, int n)
{
    for (int i = 0; i < n; i++) fputc(',', f), put_num(f, v[i]);
}

static void path_in_out(const cmp_setup *S, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", S->out, name);
}

/* Write S->out/name through fn: the file is complete or absent. */
static int write_atomic(const report *R, const char *name, void (*fn)(FILE *, const report *))
{
    char path[4200];
    cli_atomic a;
    path_in_out(R->S, name, path, sizeof path);
    if (!cli_atomic_open(&a, path)) return CLI_FAIL;
    fn(a.f, R);
    return cli_atomic_close(&a);
}

static void run_key(FILE *f, const report *R, const cmp_run *r)
{
    const cmp_setup *S = R->S;
    fprintf(f, "%s,", S->optim[r->optim]);
    put_num(f, S->lr[r->optim][r->lr_index]);
    fprintf(f, ",%llu", (unsigned long long)S->seed[r->seed_index]);
}

static void csv_curves(FILE *f, const report *R)
{
    fputs("optimizer,lr,seed,step,seconds,train_loss,train_acc\n", f);
    for (int i = 0; i < cmp_run_count(R->S); i++) {
        const cmp_run *r = &R->runs[i];
        for (int k = 0; k < r->ncurve; k++) {
            const cmp_point *p = &r->curve[k];
            run_key(f, R, r);
            fprintf(f, ",%lld", (long long)p->step);
            put_cells(f, (double[]){p->seconds, p->loss, p->acc}, 3);
            fputc('\n', f);
        }
    }
}

static void csv_epochs(FILE *f, const report *R)
{
    fputs("optimizer,lr,seed,epoch,step,seconds,train_loss,train_acc,test_loss,test_acc\n", f);
    for (int i = 0; i < cmp_run_count(R->S); i++) {
        const cmp_run *r = &R->runs[i];
        for (int k = 0; k < r->nepochs; k++) {
            const cmp_epoch *e = &r->epochs[k];
            run_key(f, R, r);
            fprintf(f, ",%d,%lld", e->epoch, (long long)e->step);
            put_cells(f, (double[]){e->seconds, e->train_loss, e->train_acc, e->test_loss, e->test_acc}, 5);
            fputc('\n', f);
        }
    }
}

static void csv_sweep(FILE *f, const report *R)
{
    fputs("optimizer,lr,seed,test_acc,test_loss,steps_to_target,seconds_to_target,seconds,diverged\n", f);
    for (int i = 0; i < cmp_run_count(R->S); i++) {
        const cmp_run *r = &R->runs[i];
        run_key(f, R, r);
        put_cells(f, (double[]){r->test_acc, r->test_loss}, 2);
        if (r->steps_to_target >= 0) fprintf(f, ",%lld", (long long)r->steps_to_target), put_cells(f, &r->seconds_to_target, 1);
        else fputs(",never,never", f);
        put_cells(f, &r->seconds, 1);
        fprintf(f, ",%d\n", r->diverged);
    }
}

static void csv_summary(FILE *f, const report *R)
{
    const cmp_setup *S = R->S;
    fputs("optimizer,default_lr,test_acc,test_acc_min,test_acc_max,target_acc,seeds,seeds_reaching_target,"
          "steps_to_target,seconds_to_target,last_train_loss,best_lr,best_test_acc,sweep_spread,lrs_near_best,lrs,"
          "diverged_runs,runs,seconds_per_run,ms_per_step,ms_per_step_min,ms_per_step_max\n",
          f);
    for (int o = 0; o < S->nopt; o++) {
        const opt_summary *u = &R->sum[o];
        fputs(S->optim[o], f);
        put_cells(f, (double[]){S->default_lr[o], u->acc, u->acc_lo, u->acc_hi, S->target_acc}, 5);
        fprintf(f, ",%d,%d", S->nseeds, u->reached);
        if (u->reached) put_cells(f, (double[]){u->steps_to_target, u->seconds_to_target}, 2);
        else fputs(",never,never", f);
        put_cells(f, (double[]){u->last_loss, S->lr[o][u->best], u->acc_mean[u->best], u->spread}, 4);
        fprintf(f, ",%d,%d,%d,%d", u->near_best, S->nlr[o], u->diverged, u->runs);
        put_cells(f, (double[]){u->seconds, u->ms_per_step, u->ms_lo, u->ms_hi}, 4);
        fputc('\n', f);
    }
}

/* ---- charts --------------------------------------------------------------- */

/* The curves of optimizer o at its default lr, point by point over the
 * seeds: x (step, or mean seconds when by_time), mean, min and max loss.
 * A run that stopped early leaves its later points to the other seeds.
 * Arrays hold `cap` values; returns the count. */
static int default_lr_curve(const report *R, int o, int by_time, double *x, double *mean, double *lo, double *hi,
                            int cap)
{
    const cmp_setup *S = R->S;
    int n = 0;
    for (int s = 0; s < S->nseeds; s++) {
        int c = run_at(R, o, S->default_lr_index[o], s)->ncurve;
        if (c > n) n = c;
    }
    if (n > cap) n = cap;
    for (int k = 0; k < n; k++) {
        double sx = 0, sy = 0, mn = INFINITY, mx = -INFINITY;
        int cnt = 0;
        for (int s = 0; s < S->nseeds; s++) {
            const cmp_run *r = run_at(R, o, S->default_lr_index[o], s);
            if (k >= r->ncurve) continue;
            const cmp_point *p = &r->curve[k];
            sx += by_time ? p->seconds : (double)p->step;
            sy += p->loss, mn = fmin(mn, p->loss), mx = fmax(mx, p->loss);
            cnt++;
        }
        x[k] = sx / cnt, mean[k] = sy / cnt, lo[k] = mn, hi[k] = mx;
    }
    return n;
}

static nb_status plot_losses(const report *R, int by_time, const char *path)
{
    const cmp_setup *S = R->S;
    int cap = 0;
    for (int i = 0; i < cmp_run_count(S); i++)
        if (R->runs[i].ncurve > cap) cap = R->runs[i].ncurve;
    double *buf = malloc(4 * (size_t)(cap ? cap : 1) * sizeof *buf);
    nb_plot *p = nb_plot_new(900, 560);
    nb_status st = buf && p ? NB_OK : NB_ERR_NOMEM;
    char title[160];
    snprintf(title, sizeof title, "%s: training loss at the default learning rates (%d seed%s)", S->model,
             S->nseeds, S->nseeds == 1 ? "" : "s");
    if (!st) st = nb_plot_title(p, title);
    if (!st) st = nb_plot_labels(p, by_time ? "training seconds" : "step", "mean training loss per interval");
    for (int o = 0; o < S->nopt && !st; o++) {
        double *x = buf, *y = buf + cap, *lo = buf + 2 * cap, *hi = buf + 3 * cap;
        int n = default_lr_curve(R, o, by_time, x, y, lo, hi, cap);
        char label[64];
        snprintf(label, sizeof label, "%s lr %g", S->optim[o], S->default_lr[o]);
        if (S->nseeds > 1) st = nb_plot_band(p, x, lo, hi, n);
        if (!st) st = nb_plot_line(p, label, x, y, n);
    }
    if (!st) st = nb_plot_save(p, path);
    nb_plot_free(p);
    free(buf);
    return st;
}

static nb_status plot_sweep(const report *R, const char *path)
{
    const cmp_setup *S = R->S;
    nb_plot *p = nb_plot_new(900, 560);
    if (!p) return NB_ERR_NOMEM;
    char title[160];
    snprintf(title, sizeof title, "%s: final test accuracy against learning rate (%d epoch%s, %d seed%s)", S->model,
             S->epochs, S->epochs == 1 ? "" : "s", S->nseeds, S->nseeds == 1 ? "" : "s");
    nb_status st = nb_plot_title(p, title);
    if (!st) st = nb_plot_labels(p, "learning rate", "test accuracy");
    if (!st) st = nb_plot_scale(p, NB_PLOT_LOG, NB_PLOT_LINEAR);
    if (!st) st = nb_plot_ylim(p, 0, 1);
    for (int o = 0; o < S->nopt && !st; o++) {
        const opt_summary *u = &R->sum[o];
        if (S->nseeds > 1) st = nb_plot_band(p, S->lr[o], u->acc_min, u->acc_max, S->nlr[o]);
        if (!st) st = nb_plot_line_points(p, S->optim[o], S->lr[o], u->acc_mean, S->nlr[o]);
    }
    if (!st) st = nb_plot_save(p, path);
    nb_plot_free(p);
    return st;
}

static int write_charts(const report *R)
{
    static const char *const names[] = {"loss.png", "loss_time.png", "acc_lr.png"};
    for (int i = 0; i < 3; i++) {
        char path[4200];
        path_in_out(R->S, names[i], path, sizeof path);
        nb_status st = i < 2 ? plot_losses(R, i == 1, path) : plot_sweep(R, path);
        if (st) return cli_fail("%s: %s", path, nb_last_error());
    }
    return 0;
}

/* ---- the notes' claims ------------------------------------------------------
 * The notes' table has the columns SGD, RMSprop and Adam; momentum is SGD
 * "可结合动量法" (combined with momentum). adagrad and adamw are not in it. */
enum { NOTES_SGD, NOTES_RMSPROP, NOTES_ADAM, NOTES_COLS };
static const char *const notes_col_name[NOTES_COLS] = {"SGD", "RMSprop", "Adam"};

static int notes_col(const char *optim)
{
    if (!strcmp(optim, "sgd") || !strcmp(optim, "momentum")) return NOTES_SGD;
    if (!strcmp(optim, "rmsprop")) return NOTES_RMSPROP;
    if (!strcmp(optim, "adam")) return NOTES_ADAM;
    return -1;
}

/* -1 when optimizer a measured better than b, 1 when worse, 0 a tie;
 * tie = 0 ranks by the raw numbers (a strict order, for sorting), tie = 1
 * counts differences within ACC_TIE or STEPS_TIE as ties. */
typedef int (*compare_fn)(const opt_summary *a, const opt_summary *b, int tie);

static int by_tolerance(double a, double b, double tol) /* lower is better */
{
    return a < b - tol ? -1 : a > b + tol ? 1 : 0;
}

/* More seeds reaching the target first, then fewer steps. */
static int faster(const opt_summary *a, const opt_summary *b, int tie)
{
    if (a->reached != b->reached) return a->reached > b->reached ? -1 : 1;
    if (!a->reached) return 0;
    return by_tolerance(a->steps_to_target, b->steps_to_target,
                        tie * STEPS_TIE * fmin(a->steps_to_target, b->steps_to_target));
}

static int less_sensitive(const opt_summary *a, const opt_summary *b, int tie)
{
    return by_tolerance(a->spread, b->spread, tie * ACC_TIE);
}

static int more_accurate(const opt_summary *a, const opt_summary *b, int tie)
{
    return by_tolerance(-a->acc_mean[a->best], -b->acc_mean[b->best], tie * ACC_TIE);
}

typedef struct claim {
    const char *row;                   /* the notes' row, and in English */
    const char *words[NOTES_COLS];     /* the notes' cells */
    int         rank[NOTES_COLS];      /* the order they claim, 0 = best */
    const char *measure;               /* what decides it */
    compare_fn  better;
} claim;

static const claim claims[] = {
    {"收敛速度 convergence speed", {"较慢", "较快", "快"}, {2, 1, 0},
     "steps to the target training accuracy at the default learning rate", faster},
    {"超参数敏感性 hyperparameter sensitivity",
     {"高（学习率、动量需手动调参）", "中等（衰减率等需调整）", "低（默认超参数通常有效）"}, {2, 1, 0},
     "spread (max - min) of the final test accuracy across the learning-rate sweep", less_sensitive},
    {"理论保证 theoretical guarantee", {"强（凸问题可收敛到全局最优）", "中等（无强理论保证）", "弱（可能收敛到次优解）"},
     {0, 1, 2}, "best final test accuracy in the sweep (\"converges to the optimum\" vs \"may end suboptimal\")",
     more_accurate},
};
enum { NCLAIMS = (int)(sizeof claims / sizeof claims[0]) };

/* The measured value of optimizer o for claim c, as text. */
static void claim_value(const report *R, int c, int o, char *buf, size_t size)
{
    const opt_summary *u = &R->sum[o];
    if (c == 0) {
        if (u->reached) snprintf(buf, size, "%.0f steps", u->steps_to_target);
        else snprintf(buf, size, "never");
    } else if (c == 1) {
        if (isfinite(u->spread)) snprintf(buf, size, "%.3f", u->spread);
        else snprintf(buf, size, "— (one learning rate)");
    } else {
        snprintf(buf, size, "%.4f", u->acc_mean[u->best]);
    }
}

/* One sentence per claim: does the measured order agree with the notes'
 * order on every pair of optimizers the notes rank differently? */
static void verdict(FILE *f, const report *R, int c)
{
    const cmp_setup *S = R->S;
    const claim *cl = &claims[c];
    int order[CMP_MAX_OPTIMS], n = S->nopt;
    for (int o = 0; o < n; o++) order[o] = o;
    for (int i = 1; i < n; i++) /* insertion sort, best first; stable for ties */
        for (int j = i; j > 0 && cl->better(&R->sum[order[j]], &R->sum[order[j - 1]], 0) < 0; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    fprintf(f, "- **%s** — notes: ", cl->row);
    for (int k = 0; k < NOTES_COLS; k++) fprintf(f, "%s%s %s", k ? ", " : "", notes_col_name[k], cl->words[k]);
    fprintf(f, ". Measured by the %s, best first: ", cl->measure);
    for (int i = 0; i < n; i++) {
        char v[64];
        claim_value(R, c, order[i], v, sizeof v);
        fprintf(f, "%s%s %s", i ? ", " : "", S->optim[order[i]], v);
    }
    fputs(". ", f);
    int single_lr = 0;
    for (int o = 0; o < n; o++) single_lr |= S->nlr[o] < 2;
    if (c == 1 && single_lr) {
        fputs("Verdict: cannot be checked with a single learning rate.\n", f);
        return;
    }
    int agree = 0, ties = 0, pairs = 0;
    char against[512] = "";
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            int ca = notes_col(S->optim[a]), cb = notes_col(S->optim[b]);
            if (ca < 0 || cb < 0 || cl->rank[ca] >= cl->rank[cb]) continue; /* notes: a better than b */
            int m = cl->better(&R->sum[a], &R->sum[b], 1);
            pairs++;
            agree += m < 0, ties += m == 0;
            if (m > 0 && strlen(against) < sizeof against - 64) {
                size_t len = strlen(against);
                snprintf(against + len, sizeof against - len, "%s%s was not better than %s", len ? "; " : "",
                         S->optim[a], S->optim[b]);
            }
        }
    if (!pairs) {
        fputs("Verdict: cannot be checked: it needs two of the notes' optimizers that the notes rank "
              "differently (sgd or momentum, rmsprop, adam).\n",
              f);
        return;
    }
    if (ties == pairs) {
        fprintf(f, "Verdict: **undecided** here: %d pair%s, all tie%s.\n", pairs, pairs == 1 ? "" : "s",
                pairs == 1 ? "d" : "");
        return;
    }
    const char *word = agree == pairs ? "holds" : agree + ties == pairs ? "holds within ties" : agree == 0 ? "does not hold" : "holds in part";
    fprintf(f, "Verdict: the notes' order **%s** here: %d of %d pairs as the notes say, %d tie%s, %d against", word,
            agree, pairs, ties, ties == 1 ? "" : "s", pairs - agree - ties);
    fprintf(f, "%s%s%s.\n", *against ? " (" : "", against, *against ? ")" : "");
}

/* ---- REPORT.md ------------------------------------------------------------ */

static void row_start(FILE *f, const char *label) { fprintf(f, "| %s |", label); }

static void cell_num(FILE *f, double v, const char *fmt)
{
    fputc(' ', f);
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("—", f);
    fputs(" |", f);
}

static void notes_row(FILE *f, const report *R, int c)
{
    char label[128];
    snprintf(label, sizeof label, "**%s** — notes", claims[c].row);
    row_start(f, label);
    for (int o = 0; o < R->S->nopt; o++) {
        int k = notes_col(R->S->optim[o]);
        fprintf(f, " %s |", k < 0 ? "—" : claims[c].words[k]);
    }
    fputc('\n', f);
}

static void md_table(FILE *f, const report *R)
{
    const cmp_setup *S = R->S;
    int n = S->nopt;
    fputs("| | ", f);
    for (int o = 0; o < n; o++) fprintf(f, "%s%s", S->optim[o], o + 1 < n ? " | " : " |\n|---|");
    for (int o = 0; o < n; o++) fputs("---|", f);
    fputc('\n', f);
    row_start(f, "the notes' column");
    for (int o = 0; o < n; o++) {
        int k = notes_col(S->optim[o]);
        if (!strcmp(S->optim[o], "momentum")) fputs(" SGD（可结合动量法: with momentum 0.9） |", f);
        else fprintf(f, " %s |", k < 0 ? "— (not in the notes)" : notes_col_name[k]);
    }
    fputc('\n', f);

    char label[160];
    notes_row(f, R, 0);
    snprintf(label, sizeof label, "measured: steps to %.0f%% running training accuracy (seeds reaching it)",
             100 * S->target_acc);
    row_start(f, label);
    for (int o = 0; o < n; o++) {
        const opt_summary *u = &R->sum[o];
        if (u->reached) fprintf(f, " %.0f (%d/%d) |", u->steps_to_target, u->reached, S->nseeds);
        else fprintf(f, " never (0/%d) |", S->nseeds);
    }
    snprintf(label, sizeof label, "measured: training seconds to %.0f%%", 100 * S->target_acc);
    fputc('\n', f), row_start(f, label);
    for (int o = 0; o < n; o++) cell_num(f, R->sum[o].seconds_to_target, "%.2f");
    fputc('\n', f), row_start(f, "measured: training loss of the last interval");
    for (int o = 0; o < n; o++) cell_num(f, R->sum[o].last_loss, "%.4f");
    fputc('\n', f);

    notes_row(f, R, 1);
    row_start(f, "measured: spread of final test accuracy across the sweep (max − min)");
    for (int o = 0; o < n; o++) cell_num(f, R->sum[o].spread, "%.3f");
    fputc('\n', f), row_start(f, "measured: best learning rate (its test accuracy)");
    for (int o = 0; o < n; o++) fprintf(f, " %.3g (%.4f) |", S->lr[o][R->sum[o].best], R->sum[o].acc_mean[R->sum[o].best]);
    fputc('\n', f), row_start(f, "measured: test accuracy lost by keeping the default learning rate (best − default)");
    for (int o = 0; o < n; o++) cell_num(f, R->sum[o].acc_mean[R->sum[o].best] - R->sum[o].acc, "%.4f");
    snprintf(label, sizeof label, "measured: learning rates within %.2f of the best", NEAR_BEST);
    fputc('\n', f), row_start(f, label);
    for (int o = 0; o < n; o++) fprintf(f, " %d of %d |", R->sum[o].near_best, S->nlr[o]);
    fputc('\n', f), row_start(f, "measured: diverged runs");
    for (int o = 0; o < n; o++) fprintf(f, " %d of %d |", R->sum[o].diverged, R->sum[o].runs);
    fputc('\n', f);

    notes_row(f, R, 2);
    row_start(f, "measured: final test accuracy at the default learning rate (min–max over seeds)");
    for (int o = 0; o < n; o++) fprintf(f, " %.4f (%.4f–%.4f) |", R->sum[o].acc, R->sum[o].acc_lo, R->sum[o].acc_hi);
    fputc('\n', f), row_start(f, "measured: best final test accuracy in the sweep");
    for (int o = 0; o < n; o++) cell_num(f, R->sum[o].acc_mean[R->sum[o].best], "%.4f");
    fputc('\n', f);

    row_start(f, "**time** — not in the notes");
    for (int o = 0; o < n; o++) fputs(" |", f);
    fputc('\n', f), row_start(f, "measured: training seconds per run at the default learning rate");
    for (int o = 0; o < n; o++) cell_num(f, R->sum[o].seconds, "%.2f");
    fputc('\n', f), row_start(f, "measured: milliseconds per step, median of all runs (range)");
    for (int o = 0; o < n; o++) fprintf(f, " %.3f (%.3f–%.3f) |", R->sum[o].ms_per_step, R->sum[o].ms_lo, R->sum[o].ms_hi);
    fputc('\n', f);
}

static void time_verdict(FILE *f, const report *R)
{
    const cmp_setup *S = R->S;
    int lo = 0, hi = 0;
    for (int o = 1; o < S->nopt; o++) {
        if (R->sum[o].ms_per_step < R->sum[lo].ms_per_step) lo = o;
        if (R->sum[o].ms_per_step > R->sum[hi].ms_per_step) hi = o;
    }
    const opt_summary *a = &R->sum[lo], *b = &R->sum[hi];
    if (S->nopt == 1) {
        fprintf(f, "- **time** — not in the notes. %s took %.3f ms per step (median of all runs).\n", S->optim[0],
                a->ms_per_step);
        return;
    }
    fprintf(f,
            "- **time** — not in the notes. Per step (median of all runs), %s was the cheapest (%.3f ms) and %s "
            "the dearest (%.3f ms, %.2fx); ",
            S->optim[lo], a->ms_per_step, S->optim[hi], b->ms_per_step, b->ms_per_step / a->ms_per_step);
    if (b->ms_lo > a->ms_hi)
        fputs("every run of the one was faster than every run of the other.\n", f);
    else
        fprintf(f, "their runs overlap (%.3f–%.3f ms against %.3f–%.3f ms): the difference is within the "
                   "run-to-run noise of the wall clock.\n",
                a->ms_lo, a->ms_hi, b->ms_lo, b->ms_hi);
}

static void md_report(FILE *f, const report *R)
{
    const cmp_setup *S = R->S;
    fprintf(f, "# Optimizers compared: the notes' table, measured\n\n");
    fprintf(f,
            "`nabla compare`%s: model %s (%s) on Fashion-MNIST, %lld training images, %d epoch%s of %lld steps "
            "(batch %lld), constant learning rate; test accuracy on %lld test images. Seeds ",
            S->quick ? " --quick" : "", S->model, nb_model_default_config(S->model), (long long)S->train_images,
            S->epochs, S->epochs == 1 ? "" : "s", (long long)S->steps_per_epoch, (long long)S->batch,
            (long long)S->test_images);
    for (int s = 0; s < S->nseeds; s++) fprintf(f, "%s%llu", s ? ", " : "", (unsigned long long)S->seed[s]);
    fprintf(f,
            ": within a seed every run starts from the same initial weights and sees the same batches in the "
            "same order. Curves are means over intervals of %d steps; \"running training accuracy\" is the "
            "accuracy over the last %d steps.\n\n",
            S->log_every, S->log_every);
    fputs("Learning rates (the default in bold):\n\n", f);
    for (int o = 0; o < S->nopt; o++) {
        fprintf(f, "- %s:", S->optim[o]);
        for (int l = 0; l < S->nlr[o]; l++)
            fprintf(f, l == S->default_lr_index[o] ? " **%.3g**" : " %.3g", S->lr[o][l]);
        fputc('\n', f);
    }
    fputs("\n## The notes' table beside the measurements\n\n", f);
    md_table(f, R);
    fputs("\n## Verdicts (computed from the numbers above)\n\n", f);
    for (int c = 0; c < NCLAIMS; c++) verdict(f, R, c);
    time_verdict(f, R);
    fprintf(f,
            "\nTies: accuracies within %.3f, step counts within %.0f%%. Pairs are the notes' optimizers that "
            "the notes rank differently (sgd and momentum both stand for the notes' SGD).\n",
            ACC_TIE, 100 * STEPS_TIE);
    fputs("\n## What this does not measure\n\n"
          "The notes' rows 是什么, 为什么, 有什么用, 适用场景, 优点 and 缺点 (RNNs, non-stationary problems, "
          "sparse data, large-scale data) are not measured by this experiment. The notes themselves say the "
          "result 取决于任务、数据集、模型架构和超参数设置 (depends on task, data, architecture and "
          "hyperparameters): these numbers hold for this model, this data and this training budget; "
          "\"theoretical guarantee\" is a statement about convex problems that a final accuracy can only hint at.\n",
          f);
    fputs("\n## Files\n\n"
          "- `curves.csv`: the training loss and accuracy of every run per interval, by step and seconds\n"
          "- `epochs.csv`: train and test loss and accuracy per epoch\n"
          "- `sweep.csv`: one row per run (final test accuracy, steps to target, seconds, diverged)\n"
          "- `summary.csv`: the numbers of the table above\n"
          "- `loss.png`, `loss_time.png`: training loss at the default learning rates against step and "
          "seconds (band: min to max over seeds)\n"
          "- `acc_lr.png`: final test accuracy against learning rate (band: min to max over seeds)\n",
          f);
}

int cmp_write_outputs(const cmp_setup *S, const cmp_run *runs)
{
    report *R = malloc(sizeof *R);
    if (!R) return cli_fail("out of memory");
    R->S = S, R->runs = runs;
    for (int o = 0; o < S->nopt; o++) summarize(R, o, &R->sum[o]);
    int rc = write_atomic(R, "curves.csv", csv_curves) || write_atomic(R, "epochs.csv", csv_epochs) ||
             write_atomic(R, "sweep.csv", csv_sweep) || write_atomic(R, "summary.csv", csv_summary) ||
             write_charts(R) || write_atomic(R, "REPORT.md", md_report);
    free(R);
    return rc ? CLI_FAIL : 0;
}
