/* nabla compare — train one model with several optimizers, learning rates
 * and seeds on Fashion-MNIST and measure what the notes' optimizer table
 * claims. This file holds the flags and the runs; compare_report.c writes
 * what they measured. */
#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_OPTIMS "sgd,momentum,rmsprop,adagrad,adam,adamw"
/* Half-decade steps, 10^(k/2) for k = -3..2, to three digits. */
#define DEFAULT_LRS "x0.0316,x0.1,x0.316,x1,x3.16,x10"

const cli_cmd cli_compare_cmd = {
    "compare",
    "compare optimizers on Fashion-MNIST: curves, a learning-rate sweep, the notes' table",
    "[--model mlp|cnn] [--optims LIST] [--seeds LIST] [--lrs LIST] [--epochs N]\n"
    "                     [--limit-train N] [--target-acc A] [--out DIR] [--quick] [options]",
    "For every seed the model is built once; every optimizer at every learning rate\n"
    "then trains from those same initial weights, on the same batches in the same\n"
    "order (the shuffle is seeded by the seed), at a constant learning rate.\n"
    "\n"
    "--optims: names among " CLI_OPTIM_NAMES "\n"
    "  (momentum is SGD with momentum 0.9; the others use torch.optim's defaults,\n"
    "  adamw its weight decay 0.01). Each has a default learning rate, as\n"
    "  `nabla train`: sgd 0.1, momentum 0.05, rmsprop 1e-3, adagrad 1e-2, adam 1e-3,\n"
    "  adamw 1e-3.\n"
    "--lrs: the learning-rate sweep, a comma list of items; xM is M times each\n"
    "  optimizer's default (x0.1), a plain number is that learning rate for every\n"
    "  optimizer (0.01). The default learning rate is always added, so the\n"
    "  curves at the defaults exist; duplicates are merged. The default\n"
    "  " DEFAULT_LRS " is six log-spaced values, half a decade apart.\n"
    "--seeds: a comma list; each seed gives other initial weights and batch order.\n"
    "--target-acc: convergence is the first step at which the training accuracy\n"
    "  over the last K steps (the logging interval, --log-every) reaches it.\n"
    "--log-every K: the curves hold the mean training loss and accuracy over each\n"
    "  K steps; 0 picks about 20 intervals per epoch (at least 5 steps each).\n"
    "--threads: runs are many and short, and a batch of the MLP is too small to\n"
    "  share well between cores, so one thread is the default (and keeps the\n"
    "  seconds comparable); the cnn gains from more.\n"
    "A run whose loss or gradient becomes NaN or infinite stops there and is\n"
    "recorded as diverged (its test accuracy is that of the weights it stopped\n"
    "with); the comparison goes on.\n"
    "\n"
    "--quick: a small run for tests and a first look (a few seconds here):\n"
    "  --limit-train 3000 --limit-test 1000 --epochs 1 --seeds 0,1\n"
    "  --target-acc 0.6, the same six learning rates; flags given explicitly win.\n"
    "The default run (mlp, 6 optimizers x 6 learning rates x 3 seeds x 2 epochs on\n"
    "all 60,000 images: 108 runs) needs about 3 minutes of one core on the\n"
    "development machine (AVX-512), about 7 minutes of wall time when it is busy;\n"
    "--model cnn costs far more per step (use --limit-train and fewer --lrs).\n"
    "\n"
    "Written to --out (created if missing; each file complete or absent):\n"
    "  curves.csv    optimizer,lr,seed,step,seconds,train_loss,train_acc: one row\n"
    "                per logging interval (seconds = training time, evaluation\n"
    "                excluded)\n"
    "  epochs.csv    optimizer,lr,seed,epoch,step,seconds,train_loss,train_acc,\n"
    "                test_loss,test_acc: one row per completed epoch\n"
    "  sweep.csv     optimizer,lr,seed,test_acc,test_loss,steps_to_target,\n"
    "                seconds_to_target,seconds,diverged: one row per run\n"
    "                (steps_to_target 'never' when not reached)\n"
    "  summary.csv   one row per optimizer: the numbers of REPORT.md\n"
    "  loss.png      training loss against step at the default learning rates\n"
    "                (line: mean over seeds; band: min to max)\n"
    "  loss_time.png the same against training seconds\n"
    "  acc_lr.png    final test accuracy against learning rate (log axis)\n"
    "  REPORT.md     the notes' table (convergence speed, hyperparameter\n"
    "                sensitivity, theory) with the measured values beside the\n"
    "                notes' words and a verdict per claim computed from them\n",
};

typedef struct compare_opts {
    const char *model, *optims, *seeds, *lrs, *out, *data;
    int         epochs, threads, log_every, quick, quiet;
    int64_t     batch, limit_train, limit_test;
    float       target_acc;
} compare_opts;

int cmp_run_count(const cmp_setup *S)
{
    int n = 0;
    for (int o = 0; o < S->nopt; o++) n += S->nlr[o] * S->nseeds;
    return n;
}

int cmp_run_index(const cmp_setup *S, int o, int l, int s)
{
    int base = 0;
    for (int k = 0; k < o; k++) base += S->nlr[k] * S->nseeds;
    return base + l * S->nseeds + s;
}

/* ---- the lists of the command line -------------------------------------- */

/* Split a comma list into at most max items (pointers into buf, a copy of
 * text). Returns the count, or -1 for an empty item or too many. */
static int split_list(const char *text, char *buf, size_t size, char **items, int max)
{
    if (snprintf(buf, size, "%s", text) >= (int)size) return -1;
    int n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (!*p || n == max) return -1;
        items[n++] = p;
        if (!comma) return n;
        p = comma + 1;
    }
}

static int parse_optims(const char *text, cmp_setup *S)
{
    static char buf[1024]; /* the names point into it for the whole run */
    char *items[CMP_MAX_OPTIMS];
    int n = split_list(text, buf, sizeof buf, items, CMP_MAX_OPTIMS);
    if (n < 0)
        return cli_usage_error("compare", "option --optims: '%s' must be a comma list of 1 to %d names (%s)", text,
                               CMP_MAX_OPTIMS, CLI_OPTIM_NAMES);
    for (int i = 0; i < n; i++) {
        nb_optim_opts probe;
        if (cli_optim_opts(items[i], &probe))
            return cli_usage_error("compare", "option --optims: unknown optimizer '%s' (known: %s)", items[i],
                                   CLI_OPTIM_NAMES);
        for (int k = 0; k < i; k++)
            if (!strcmp(items[k], items[i]))
                return cli_usage_error("compare", "option --optims: '%s' is listed twice", items[i]);
        S->optim[i] = items[i];
        S->default_lr[i] = probe.lr;
    }
    S->nopt = n;
    return 0;
}

static int parse_seeds(const char *text, cmp_setup *S)
{
    char buf[1024], *items[CMP_MAX_SEEDS];
    int n = split_list(text, buf, sizeof buf, items, CMP_MAX_SEEDS);
    if (n < 0)
        return cli_usage_error("compare", "option --seeds: '%s' must be a comma list of 1 to %d seeds", text,
                               CMP_MAX_SEEDS);
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(items[i], &end, 10);
        if (items[i][0] == '-' || end == items[i] || *end || errno == ERANGE)
            return cli_usage_error("compare", "option --seeds: '%s' is not a non-negative integer", items[i]);
        for (int k = 0; k < i; k++)
            if (S->seed[k] == v) return cli_usage_error("compare", "option --seeds: seed %llu is listed twice", v);
        S->seed[i] = (uint64_t)v;
    }
    S->nseeds = n;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The sweep of optimizer o: the items of --lrs (xM relative to its default,
 * V absolute) and the default itself, sorted, near-duplicates merged. */
static void build_grid(cmp_setup *S, int o, const double *value, const int *relative, int n)
{
    double g[CMP_MAX_LRS + 1];
    int m = 0;
    for (int i = 0; i < n; i++) g[m++] = relative[i] ? value[i] * S->default_lr[o] : value[i];
    g[m++] = S->default_lr[o];
    qsort(g, (size_t)m, sizeof g[0], cmp_double);
    int k = 0;
    for (int i = 0; i < m; i++)
        if (!k || g[i] > S->lr[o][k - 1] * (1 + 1e-9)) S->lr[o][k++] = g[i];
    S->nlr[o] = k;
    S->default_lr_index[o] = 0;
    for (int i = 0; i < S->nlr[o]; i++)
        if (fabs(S->lr[o][i] - S->default_lr[o]) <= 1e-9 * S->default_lr[o]) S->default_lr_index[o] = i;
}

static int parse_lrs(const char *text, cmp_setup *S)
{
    char buf[1024], *items[CMP_MAX_LRS - 1]; /* room for the default */
    double value[CMP_MAX_LRS];
    int relative[CMP_MAX_LRS];
    int n = split_list(text, buf, sizeof buf, items, CMP_MAX_LRS - 1);
    if (n < 0)
        return cli_usage_error("compare", "option --lrs: '%s' must be a comma list of 1 to %d items (xM or a value)",
                               text, CMP_MAX_LRS - 1);
    for (int i = 0; i < n; i++) {
        relative[i] = items[i][0] == 'x';
        const char *num = items[i] + relative[i];
        char *end;
        value[i] = strtod(num, &end);
        if (end == num || *end || !isfinite(value[i]) || value[i] <= 0 || value[i] > 1e6)
            return cli_usage_error("compare",
                                   "option --lrs: '%s' is not a positive number (a learning rate) or xM (M times "
                                   "each optimizer's default)",
                                   items[i]);
    }
    for (int o = 0; o < S->nopt; o++) build_grid(S, o, value, relative, n);
    return 0;
}

/* ---- one run ------------------------------------------------------------- */

/* Sums over a stretch of batches. */
typedef struct tally {
    double  loss;                /* sum of batch mean loss x batch size */
    int64_t correct, seen;
} tally;

static void tally_add(tally *t, double loss, int64_t correct, int64_t n)
{
    t->loss += loss * (double)n;
    t->correct += correct;
    t->seen += n;
}

static double tally_loss(const tally *t) { return t->seen ? t->loss / (double)t->seen : NAN; }
static double tally_acc(const tally *t) { return t->seen ? (double)t->correct / (double)t->seen : NAN; }

/* The training accuracy over the last `size` batches (a ring). */
typedef struct window {
    int64_t *correct, *n;
    int      size, filled, next;
    int64_t  sum_correct, sum_n;
} window;

static void window_push(window *w, int64_t correct, int64_t n)
{
    if (w->filled == w->size) {
        w->sum_correct -= w->correct[w->next];
        w->sum_n -= w->n[w->next];
    } else {
        w->filled++;
    }
    w->correct[w->next] = correct;
    w->n[w->next] = n;
    w->sum_correct += correct;
    w->sum_n += n;
    w->next = (w->next + 1) % w->size;
}

/* What one run works with; the cmp_run it fills. */
typedef struct runner {
    const cmp_setup  *S;
    nb_model         *m;
    nb_ctx           *ctx;
    nb_optimizer     *o;
    nb_loader        *l;
    const nb_dataset *test;
    cmp_run          *r;
    int               cap_curve;
    tally             interval;
    window            win;
} runner;

/* One step on batch b. Returns 0, 1 when the loss or a gradient is not
 * finite (the run diverged), -1 on a library error. */
static int train_step(runner *R, const nb_batch *b, double *loss, int64_t *correct)
{
    nb_tensor *logits = nb_model_forward(R->m, R->ctx, b->x);
    nb_tensor *l = nb_cross_entropy(R->ctx, logits, b->y, NULL, -100, NB_REDUCTION_MEAN);
    nb_tensor *pred = nb_argmax(R->ctx, logits, 1);
    if (!l || !pred) return -1;
    *loss = (double)nb_tensor_item(l);
    if (!isfinite(*loss)) return 1;
    *correct = 0;
    for (int64_t i = 0; i < b->n; i++) *correct += (int32_t)pred->data[i] == b->y[i];
    nb_model_zero_grad(R->m);
    if (nb_backward(R->ctx, l) != NB_OK) return -1;
    nb_status s = nb_optim_step(R->o);
    if (s == NB_ERR_NONFINITE) return 1;
    return s == NB_OK ? 0 : -1;
}

/* Close the current logging interval (if it holds any batch) as a point. */
static int flush_interval(runner *R, int64_t step, double seconds)
{
    if (!R->interval.seen) return 0;
    cmp_run *r = R->r;
    if (r->ncurve == R->cap_curve) {
        int cap = R->cap_curve ? 2 * R->cap_curve : 64;
        cmp_point *p = realloc(r->curve, (size_t)cap * sizeof *p);
        if (!p) return -1;
        r->curve = p;
        R->cap_curve = cap;
    }
    r->curve[r->ncurve++] = (cmp_point){step, seconds, tally_loss(&R->interval), tally_acc(&R->interval)};
    R->interval = (tally){0};
    return 0;
}

/* One epoch; *train_s accumulates training time. Returns as train_step. */
static int run_epoch(runner *R, int epoch, double *train_s)
{
    const cmp_setup *S = R->S;
    cmp_run *r = R->r;
    tally ep = {0};
    double t0 = cli_now();
    nb_model_train(R->m, 1);
    for (;;) {
        nb_ctx_reset(R->ctx);
        nb_batch b;
        if (nb_loader_next(R->l, R->ctx, &b) != NB_OK) return -1;
        if (!b.n) break;
        double loss = 0;
        int64_t correct = 0;
        int rc = train_step(R, &b, &loss, &correct);
        if (rc) {
            *train_s += cli_now() - t0;
            if (rc > 0 && flush_interval(R, r->steps, *train_s)) return -1;
            return rc;
        }
        r->steps++;
        tally_add(&ep, loss, correct, b.n);
        tally_add(&R->interval, loss, correct, b.n);
        window_push(&R->win, correct, b.n);
        double now = *train_s + (cli_now() - t0);
        if (r->steps_to_target < 0 && R->win.filled == R->win.size &&
            (double)R->win.sum_correct >= S->target_acc * (double)R->win.sum_n) {
            r->steps_to_target = r->steps;
            r->seconds_to_target = now;
        }
        if (r->steps % S->log_every == 0 && flush_interval(R, r->steps, now)) return -1;
    }
    nb_ctx_reset(R->ctx);
    *train_s += cli_now() - t0;
    if (epoch == S->epochs && flush_interval(R, r->steps, *train_s)) return -1;
    cmp_epoch *e = &r->epochs[r->nepochs];
    *e = (cmp_epoch){epoch, r->steps, *train_s, tally_loss(&ep), tally_acc(&ep), NAN, NAN};
    if (cli_evaluate(R->m, R->ctx, R->test, &e->test_loss, &e->test_acc) != NB_OK) return -1;
    r->nepochs++;
    return 0;
}

/* Train the run R->r describes from the weights `init`. A divergence is a
 * result; returns 0, or -1 on a library error (nb_last_error; empty when
 * an allocation here failed). */
static int run_one(runner *R, const float *init, const nb_dataset *train)
{
    const cmp_setup *S = R->S;
    cmp_run *r = R->r;
    uint64_t seed = S->seed[r->seed_index];
    int rc = -1;
    nb_optim_opts oo;
    cli_optim_opts(S->optim[r->optim], &oo); /* the names were checked */
    oo.lr = S->lr[r->optim][r->lr_index];
    memcpy(R->m->data, init, R->m->numel * sizeof *init);
    r->steps_to_target = -1;
    r->seconds_to_target = NAN;
    R->win.size = S->log_every;
    R->win.correct = calloc((size_t)S->log_every, sizeof *R->win.correct);
    R->win.n = calloc((size_t)S->log_every, sizeof *R->win.n);
    r->epochs = calloc((size_t)S->epochs, sizeof *r->epochs);
    /* A fresh context per run: the same dropout draws for every optimizer. */
    R->ctx = nb_ctx_new(seed);
    if (!R->win.correct || !R->win.n || !r->epochs || !R->ctx) goto done;
    if (!(R->o = nb_optim_new(R->m, &oo))) goto done;
    if (nb_loader_new(train, S->batch, 1, 0, seed, &R->l) != NB_OK) goto done;
    double train_s = 0;
    int step_rc = 0;
    for (int epoch = 1; epoch <= S->epochs && !step_rc; epoch++) {
        if (epoch > 1) nb_loader_start_epoch(R->l);
        step_rc = run_epoch(R, epoch, &train_s);
    }
    if (step_rc < 0) goto done;
    r->seconds = train_s;
    r->diverged = step_rc > 0;
    if (r->nepochs == S->epochs) {
        r->test_loss = r->epochs[r->nepochs - 1].test_loss;
        r->test_acc = r->epochs[r->nepochs - 1].test_acc;
    } else if (cli_evaluate(R->m, R->ctx, R->test, &r->test_loss, &r->test_acc) != NB_OK) {
        goto done;
    }
    rc = 0;
done:
    nb_loader_free(R->l);
    nb_optim_free(R->o);
    nb_ctx_free(R->ctx);
    free(R->win.correct);
    free(R->win.n);
    R->l = NULL, R->o = NULL, R->ctx = NULL;
    R->win = (window){0};
    R->interval = (tally){0};
    R->cap_curve = 0;
    return rc;
}

static void print_run(const cmp_setup *S, const cmp_run *r, int done, int total)
{
    printf("[%*d/%d] seed %llu  %-8s lr %-9.3g test_acc %.4f  ", total >= 100 ? 3 : 2, done, total,
           (unsigned long long)S->seed[r->seed_index], S->optim[r->optim], S->lr[r->optim][r->lr_index],
           r->test_acc);
    if (r->diverged) printf("diverged at step %lld", (long long)r->steps + 1);
    else if (r->steps_to_target >= 0)
        printf("%.0f%% at step %lld", 100 * S->target_acc, (long long)r->steps_to_target);
    else printf("%.0f%% never", 100 * S->target_acc);
    printf("  %.2f s\n", r->seconds);
    fflush(stdout);
}

/* Every run of seed index s: the model is built once and each run starts
 * from a copy of its weights. */
static int run_seed(const cmp_setup *S, int s, const nb_dataset *train, const nb_dataset *test, cmp_run *runs,
                    int *done, int quiet)
{
    int rc = CLI_FAIL;
    nb_model *m = NULL;
    float *init = NULL;
    nb_ctx *ctx = nb_ctx_new(S->seed[s]);
    if (!ctx || nb_model_build(S->model, NULL, nb_ctx_rng(ctx), &m) != NB_OK) {
        cli_lib_error();
        goto done;
    }
    if (!(init = malloc(m->numel * sizeof *init))) {
        cli_fail("out of memory");
        goto done;
    }
    memcpy(init, m->data, m->numel * sizeof *init);
    int total = cmp_run_count(S);
    for (int o = 0; o < S->nopt; o++)
        for (int l = 0; l < S->nlr[o]; l++) {
            cmp_run *r = &runs[cmp_run_index(S, o, l, s)];
            r->optim = o, r->lr_index = l, r->seed_index = s;
            runner R = {.S = S, .m = m, .test = test, .r = r};
            nb_clear_error();
            if (run_one(&R, init, train)) {
                const char *msg = nb_last_error();
                cli_fail("%s at lr %g, seed %llu: %s", S->optim[o], S->lr[o][l], (unsigned long long)S->seed[s],
                         *msg ? msg : "out of memory");
                goto done;
            }
            ++*done;
            if (!quiet) print_run(S, r, *done, total);
        }
    rc = CLI_OK;
done:
    free(init);
    nb_model_free(m);
    nb_ctx_free(ctx);
    return rc;
}

/* ---- the command --------------------------------------------------------- */

static int make_out_dir(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return cli_fail("--out %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return cli_fail("--out %s: not a directory", dir);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/x", dir);
    if (!cli_dir_writable(probe)) return cli_fail("--out %s: the directory is not writable", dir);
    return 0;
}

static int run(const cmp_setup *S, const char *data_dir, int quiet)
{
    int rc = CLI_FAIL, done = 0;
    nb_dataset *train = NULL, *test = NULL;
    int nruns = cmp_run_count(S);
    cmp_run *runs = calloc((size_t)nruns, sizeof *runs);
    if (!runs) return cli_fail("out of memory");
    if (make_out_dir(S->out)) goto done;
    if (cli_load_fashion_mnist(data_dir, 1, &train) || cli_load_fashion_mnist(data_dir, 0, &test)) goto done;
    if (S->train_images) nb_dataset_truncate(train, S->train_images);
    if (S->test_images) nb_dataset_truncate(test, S->test_images);
    cmp_setup setup = *S;
    setup.train_images = train->n, setup.test_images = test->n;
    setup.steps_per_epoch = (train->n + S->batch - 1) / S->batch;
    if (!setup.log_every) {
        int64_t k = setup.steps_per_epoch / 20;
        setup.log_every = k < 5 ? 5 : (int)k;
    }
    nb_set_threads(S->threads);
    if (!quiet) {
        printf("comparing %d optimizers, %d seed%s: %d runs of %s, %d epoch%s of %lld steps (%lld images, batch "
               "%lld), %d thread%s\n",
               S->nopt, S->nseeds, S->nseeds == 1 ? "" : "s", nruns, S->model, S->epochs, S->epochs == 1 ? "" : "s",
               (long long)setup.steps_per_epoch, (long long)train->n, (long long)S->batch, nb_get_threads(),
               nb_get_threads() == 1 ? "" : "s");
        fflush(stdout);
    }
    double t0 = cli_now();
    for (int s = 0; s < S->nseeds; s++)
        if (run_seed(&setup, s, train, test, runs, &done, quiet)) goto done;
    if (cmp_write_outputs(&setup, runs)) goto done;
    if (!quiet) printf("%d runs in %.1f s; results in %s/ (REPORT.md, *.csv, *.png)\n", nruns, cli_now() - t0, S->out);
    rc = CLI_OK;
done:
    for (int i = 0; i < nruns; i++) {
        free(runs[i].curve);
        free(runs[i].epochs);
    }
    free(runs);
    nb_dataset_free(train);
    nb_dataset_free(test);
    return rc;
}

/* 1 when option `name` was on the command line. */
int cmd_compare(int argc, char **argv)
{
    compare_opts a = {
        .model = "mlp", .optims = DEFAULT_OPTIMS, .seeds = "0,1,2", .lrs = DEFAULT_LRS, .out = "compare-out",
        .epochs = 2, .threads = 1, .batch = 64, .target_acc = 0.85f,
    };
    cli_opt opts[] = {
        {"model", CLI_STR, &a.model, 0, 0, "NAME", "model of the zoo: mlp or cnn", 0},
        {"optims", CLI_STR, &a.optims, 0, 0, "LIST", "optimizers to compare", 0},
        {"seeds", CLI_STR, &a.seeds, 0, 0, "LIST", "seeds of the initial weights and batch order", 0},
        {"lrs", CLI_STR, &a.lrs, 0, 0, "LIST", "learning-rate sweep: xM (times the default) or values", 0},
        {"epochs", CLI_INT, &a.epochs, 1, 1000, "N", "passes over the training set per run", 0},
        {"limit-train", CLI_I64, &a.limit_train, 0, 1e12, "N", "use only the first N training images, 0 = all", 0},
        {"limit-test", CLI_I64, &a.limit_test, 0, 1e12, "N", "test on the first N test images only, 0 = all", 0},
        {"batch", CLI_I64, &a.batch, 1, 60000, "B", "mini-batch size", 0},
        {"target-acc", CLI_FLOAT, &a.target_acc, 0.01, 1, "A", "running training accuracy that counts as converged", 0},
        {"log-every", CLI_INT, &a.log_every, 0, 1000000, "K", "steps per curve point, 0 = about 20 per epoch", 0},
        {"threads", CLI_INT, &a.threads, 0, 4096, "T", "kernel threads per run, 0 = all cores (small models: 1 is fastest)", 0},
        {"out", CLI_STR, &a.out, 0, 0, "DIR", "directory of the results", 0},
        {"quick", CLI_FLAG, &a.quick, 0, 0, NULL, "a small comparison in seconds (see below)", 0},
        {"data", CLI_STR, &a.data, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"quiet", CLI_FLAG, &a.quiet, 0, 0, NULL, "print nothing but errors", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    a.data = nb_fashion_mnist_default_dir();
    int r = cli_parse(&cli_compare_cmd, opts, nopts, argc, argv);
    if (r >= 0) return r;
    if (a.quick) { /* smaller defaults; what the command line gave stays */
        if (!cli_given(opts, nopts, "seeds")) a.seeds = "0,1";
        if (!cli_given(opts, nopts, "epochs")) a.epochs = 1;
        if (!cli_given(opts, nopts, "limit-train")) a.limit_train = 3000;
        if (!cli_given(opts, nopts, "limit-test")) a.limit_test = 1000;
        if (!cli_given(opts, nopts, "target-acc")) a.target_acc = 0.6f;
    }
    if (!nb_model_default_config(a.model))
        return cli_usage_error("compare", "unknown model '%s' (known: mlp, cnn)", a.model);
    cmp_setup S = {
        .model = a.model, .out = a.out, .epochs = a.epochs, .log_every = a.log_every, .threads = a.threads,
        .batch = a.batch, .train_images = a.limit_train, .test_images = a.limit_test, .target_acc = a.target_acc,
        .quick = a.quick,
    };
    if ((r = parse_optims(a.optims, &S)) || (r = parse_seeds(a.seeds, &S)) || (r = parse_lrs(a.lrs, &S))) return r;
    return run(&S, a.data, a.quiet);
}
