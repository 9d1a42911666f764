/* The lab's registry, the REPORT.md writer, and what the claims share: data,
 * CSV files, plots, a training loop and gradient norms. */
#include "lab.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const lab_claim *const lab_claims[] = {
    &lab_claim_nonlinearity, &lab_claim_activations, &lab_claim_optimizers, &lab_claim_vanishing,
    &lab_claim_exploding,    &lab_claim_weight_decay, &lab_claim_lstm,      &lab_claim_cnn,
    &lab_claim_loop,         &lab_claim_receptive_field, &lab_claim_capacity, &lab_claim_batchnorm,
};
const int lab_nclaims = (int)(sizeof lab_claims / sizeof lab_claims[0]);

const char *lab_verdict_name(lab_verdict v)
{
    switch (v) {
    case LAB_CONFIRMED: return "confirmed";
    case LAB_REFUTED: return "refuted";
    case LAB_DEPENDS: return "depends";
    case LAB_UNAVAILABLE: return "not yet available";
    case LAB_FAILED: return "failed";
    case LAB_PENDING: break;
    }
    return "failed (no verdict)";
}

const lab_claim *lab_find(const char *name)
{
    char *end;
    long k = strtol(name, &end, 10);
    for (int i = 0; i < lab_nclaims; i++)
        if ((end != name && !*end && lab_claims[i]->number == k) || !strcmp(name, lab_claims[i]->id))
            return lab_claims[i];
    return NULL;
}

int lab_is_available(const lab_claim *c) { return !c->available || c->available(); }

void lab_verdict_set(lab_section *s, lab_verdict v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->verdict = v;
}

/* ---- data ------------------------------------------------------------------- */

int lab_data(lab *L, const nb_dataset **train, const nb_dataset **test)
{
    if (!L->train && cli_load_fashion_mnist(L->data_dir, 1, &L->train)) return -1;
    if (!L->test && cli_load_fashion_mnist(L->data_dir, 0, &L->test)) return -1;
    if (train) *train = L->train;
    if (test) *test = L->test;
    return 0;
}

nb_dataset lab_subset(const nb_dataset *d, int64_t n)
{
    nb_dataset v = *d;
    if (n < v.n) v.n = n;
    return v;
}

/* ---- files ------------------------------------------------------------------ */

nb_plot *lab_plot_new(const char *title, const char *xlabel, const char *ylabel)
{
    nb_plot *p = nb_plot_new(900, 540);
    if (!p || nb_plot_title(p, title) || nb_plot_labels(p, xlabel, ylabel)) {
        cli_lib_error();
        nb_plot_free(p);
        return NULL;
    }
    return p;
}

int lab_plot_save(lab_section *s, nb_plot *p, const char *name, const char *caption)
{
    char file[160], path[4400];
    snprintf(file, sizeof file, "claim%02d_%s.png", s->claim->number, name);
    snprintf(path, sizeof path, "%s/%s", s->L->out, file);
    nb_status st = nb_plot_save(p, path);
    nb_plot_free(p);
    if (st) return cli_fail("%s: %s", path, nb_last_error()), -1;
    fprintf(s->md, "\n![%s](%s)\n\n*%s*\n", caption, file, caption);
    s->nplots++;
    return 0;
}

int lab_csv_open(lab_section *s, lab_csv *c, const char *name, const char *header)
{
    char path[4200];
    snprintf(c->name, sizeof c->name, "claim%02d_%s.csv", s->claim->number, name);
    snprintf(path, sizeof path, "%s/%s", s->L->out, c->name);
    if (!(c->f = cli_atomic_open(&c->file, path))) return -1;
    fprintf(c->f, "%s\n", header);
    return 0;
}

static void put_num(FILE *f, double v)
{
    if (isnan(v)) fputs("nan", f);
    else if (isinf(v)) fputs(v > 0 ? "inf" : "-inf", f);
    else fprintf(f, "%.6g", v);
}

void lab_csv_row(lab_csv *c, const char *key, const double *v, int n)
{
    if (key) fputs(key, c->f);
    for (int i = 0; i < n; i++) {
        if (key || i) fputc(',', c->f);
        put_num(c->f, v[i]);
    }
    fputc('\n', c->f);
}

int lab_csv_close(lab_section *s, lab_csv *c)
{
    c->f = NULL;
    if (cli_atomic_close(&c->file)) return -1;
    fprintf(s->md, "\nData: [`%s`](%s)\n", c->name, c->name);
    return 0;
}

/* ---- training ---------------------------------------------------------------- */

nb_optim_opts lab_optim(nb_optim_kind kind, double lr)
{
    nb_optim_opts o = nb_optim_defaults(kind);
    o.lr = lr;
    return o;
}

int lab_eval(nb_model *m, const nb_dataset *d, double *loss, double *acc)
{
    nb_ctx *ctx = nb_ctx_new(0);
    if (!ctx) return cli_lib_error(), -1;
    nb_status st = cli_evaluate(m, ctx, d, loss, acc);
    nb_ctx_free(ctx);
    return st ? (cli_lib_error(), -1) : 0;
}

void lab_fit_result_free(lab_fit_result *r)
{
    free(r->curve);
    memset(r, 0, sizeof *r);
}

/* One step on batch b: 0, 1 when the loss or a gradient is not finite, -1
 * on a library error. */
static int fit_step(nb_model *m, nb_ctx *ctx, nb_optimizer *opt, const lab_fit_opts *o, const nb_batch *b,
                    int64_t step, double *loss)
{
    nb_tensor *logits = nb_model_forward(m, ctx, b->x);
    nb_tensor *l = nb_cross_entropy(ctx, logits, b->y, NULL, -100, NB_REDUCTION_MEAN);
    if (!l) return -1;
    *loss = (double)nb_tensor_item(l);
    if (!isfinite(*loss)) return 1;
    nb_model_zero_grad(m);
    if (nb_backward(ctx, l) != NB_OK) return -1;
    if (o->on_grad && o->on_grad(o->user, m, step, *loss)) return -1;
    if (o->clip_norm > 0) {
        double norm = 0;
        nb_status cs = nb_clip_grad_norm(m, o->clip_norm, 2.0, 1, &norm);
        if (cs == NB_ERR_NONFINITE) return 1;
        if (cs) return -1;
    }
    nb_status st = nb_optim_step(opt);
    return st == NB_ERR_NONFINITE ? 1 : st ? -1 : 0;
}

int lab_fit(nb_model *m, const nb_dataset *train, const lab_fit_opts *o, lab_fit_result *r)
{
    memset(r, 0, sizeof *r);
    r->last_loss = NAN;
    int every = o->log_every > 0 ? o->log_every : 1;
    int cap = (int)((o->steps + every - 1) / every) + 1;
    r->curve = malloc((size_t)cap * sizeof *r->curve);
    nb_ctx *ctx = nb_ctx_new(o->seed);
    nb_optimizer *opt = nb_optim_new(m, &o->optim);
    nb_loader *ld = NULL;
    int rc = -1;
    if (!r->curve || !ctx || !opt || nb_loader_new(train, o->batch, 1, 0, o->seed, &ld)) goto done;
    double t0 = cli_now(), sum = 0;
    int in_interval = 0;
    nb_model_train(m, 1);
    while (r->steps < o->steps) {
        nb_ctx_reset(ctx);
        nb_batch b;
        if (nb_loader_next(ld, ctx, &b)) goto done;
        if (!b.n) {
            nb_loader_start_epoch(ld);
            continue;
        }
        double loss = NAN;
        int s = fit_step(m, ctx, opt, o, &b, r->steps, &loss);
        if (s < 0) goto done;
        if (s > 0) {
            r->diverged = 1;
            r->curve[r->ncurve++] = NAN; /* the interval where it happened */
            break;
        }
        r->steps++;
        sum += loss;
        if (++in_interval == every) {
            r->curve[r->ncurve++] = sum / every;
            sum = 0, in_interval = 0;
        }
    }
    if (in_interval && !r->diverged) r->curve[r->ncurve++] = sum / in_interval;
    if (!r->diverged && r->ncurve) r->last_loss = r->curve[r->ncurve - 1];
    r->seconds = cli_now() - t0;
    rc = 0;
done:
    if (rc) {
        const char *msg = nb_last_error();
        cli_fail("training failed: %s", *msg ? msg : "out of memory");
    }
    nb_loader_free(ld);
    nb_optim_free(opt);
    nb_ctx_free(ctx);
    return rc;
}

nb_model *lab_mlp(const int *sizes, int n, int relu, float dropout, nb_rng *rng)
{
    nb_model *m = nb_model_new("lab", "");
    if (!m) return NULL;
    nb_module *seq = nb_nn_sequential(m);
    m->root = seq;
    nb_status st = seq ? nb_sequential_add(seq, nb_nn_flatten(m, 1)) : NB_ERR_NOMEM;
    for (int i = 0; i + 1 < n && !st; i++) {
        st = nb_sequential_add(seq, nb_nn_linear(m, rng, sizes[i], sizes[i + 1], 1));
        if (i + 2 == n) break;
        if (!st && relu) st = nb_sequential_add(seq, nb_nn_relu(m));
        if (!st && dropout > 0) st = nb_sequential_add(seq, nb_nn_dropout(m, dropout));
    }
    if (st) nb_model_free(m), m = NULL;
    return m;
}

int lab_weight_grad_norms(const nb_model *m, double *norms, int max)
{
    int n = 0;
    for (int k = 0; k < m->nparams && n < max; k++) {
        const nb_param *p = &m->params[k];
        if (p->buffer || p->t.ndim != 2) continue;
        double ss = 0;
        int64_t numel = nb_tensor_numel(&p->t);
        for (int64_t i = 0; i < numel; i++) ss += (double)p->t.grad[i] * p->t.grad[i];
        norms[n++] = sqrt(ss);
    }
    return n;
}

/* ---- the report --------------------------------------------------------------- */

typedef struct result {
    const lab_claim *claim;
    lab_verdict      verdict;
    char             why[2048];
    char            *body;     /* markdown (malloc'd) */
    double           seconds;
    int              nplots;
} result;

static void run_claim(lab *L, const lab_claim *c, result *r)
{
    memset(r, 0, sizeof *r);
    r->claim = c;
    if (!lab_is_available(c)) {
        r->verdict = LAB_UNAVAILABLE;
        snprintf(r->why, sizeof r->why, "%s", c->why_unavailable);
        return;
    }
    lab_section s = {.L = L, .claim = c};
    size_t len = 0;
    s.md = open_memstream(&r->body, &len);
    if (!s.md) {
        r->verdict = LAB_FAILED;
        snprintf(r->why, sizeof r->why, "out of memory");
        return;
    }
    nb_set_threads(L->threads);
    nb_clear_error();
    double t0 = cli_now();
    int rc = c->run(&s);
    r->seconds = cli_now() - t0;
    fclose(s.md);
    r->nplots = s.nplots;
    if (rc) {
        const char *msg = nb_last_error();
        r->verdict = LAB_FAILED;
        snprintf(r->why, sizeof r->why, "the experiment stopped: %s", *msg ? msg : "see the messages of the run");
    } else {
        r->verdict = s.verdict;
        memcpy(r->why, s.why, sizeof r->why);
    }
}

static void write_section(FILE *f, const result *r)
{
    const lab_claim *c = r->claim;
    fprintf(f, "\n## %d. %s (%s)\n\n", c->number, c->title, c->where);
    fputs("The notes:\n\n", f);
    for (const char *p = c->notes; *p;) { /* one quoted line per line of the notes' words */
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "> %.*s\n>\n", (int)n, p);
        p += n + (nl != NULL);
    }
    fprintf(f, "\n**Claim.** %s\n", c->english);
    if (r->body) fputs(r->body, f);
    fprintf(f, "\n**Verdict: %s.** %s\n", lab_verdict_name(r->verdict), r->why);
    if (r->verdict != LAB_UNAVAILABLE) fprintf(f, "\n(%.1f s)\n", r->seconds);
}

static int write_report(const lab *L, const result *res, int n, const char *cmdline)
{
    char path[4200];
    cli_atomic a;
    snprintf(path, sizeof path, "%s/REPORT.md", L->out);
    FILE *f = cli_atomic_open(&a, path);
    if (!f) return CLI_FAIL;
    fputs("# The lab: the notes' claims, measured\n\n", f);
    fprintf(f,
            "Each section quotes the study notes (`seed/`, in Chinese, with their section numbers), states the "
            "claim in English, describes the experiment and its settings, gives the measured numbers (also as CSV) "
            "and a plot, and ends with a verdict — **confirmed**, **refuted** or **depends** (with the condition) — "
            "computed from the numbers by the rule written beside it. Nothing in a verdict is written by hand.\n\n"
            "Generated by `%s` (%s run, seed %llu, %d thread%s). Regenerate with `make && build/nabla lab --out "
            "docs/lab` (the full run: longer trainings on more data) or `build/nabla lab --quick` (every "
            "experiment reduced, about a minute); `nabla lab --list` names the claims, and `nabla lab 4 5` runs "
            "only those. The same seed and thread count give the same numbers; timings vary.\n\n",
            cmdline, L->quick ? "a --quick" : "the full", (unsigned long long)L->seed, L->threads,
            L->threads == 1 ? "" : "s");
    fputs("| # | claim | notes | verdict | seconds |\n|---|---|---|---|---|\n", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "| %d | [%s](#%d) | %s | **%s** | %.1f |\n", res[i].claim->number, res[i].claim->title,
                res[i].claim->number, res[i].claim->where, lab_verdict_name(res[i].verdict), res[i].seconds);
    for (int i = 0; i < n; i++) {
        fprintf(f, "\n<a id=\"%d\"></a>\n", res[i].claim->number);
        write_section(f, &res[i]);
    }
    return cli_atomic_close(&a);
}

static int write_verdicts_csv(const lab *L, const result *res, int n)
{
    char path[4200];
    cli_atomic a;
    snprintf(path, sizeof path, "%s/verdicts.csv", L->out);
    FILE *f = cli_atomic_open(&a, path);
    if (!f) return CLI_FAIL;
    fputs("claim,id,verdict,seconds,plots\n", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%d,%s,%s,%.3f,%d\n", res[i].claim->number, res[i].claim->id, lab_verdict_name(res[i].verdict),
                res[i].seconds, res[i].nplots);
    return cli_atomic_close(&a);
}

int lab_run(lab *L, const lab_claim *const *claims, int n, const char *cmdline, int quiet)
{
    result *res = calloc((size_t)n, sizeof *res);
    if (!res) return cli_fail("out of memory");
    int failed = 0;
    double t0 = cli_now();
    for (int i = 0; i < n; i++) {
        if (!quiet) {
            printf("[%d/%d] claim %d, %s ...\n", i + 1, n, claims[i]->number, claims[i]->title);
            fflush(stdout);
        }
        run_claim(L, claims[i], &res[i]);
        if (res[i].verdict == LAB_PENDING) {
            res[i].verdict = LAB_FAILED;
            snprintf(res[i].why, sizeof res[i].why, "the experiment set no verdict");
        }
        failed |= res[i].verdict == LAB_FAILED;
        if (!quiet) {
            printf("      %s (%.1f s)\n", lab_verdict_name(res[i].verdict), res[i].seconds);
            fflush(stdout);
        }
    }
    int rc = write_report(L, res, n, cmdline) || write_verdicts_csv(L, res, n) ? CLI_FAIL : CLI_OK;
    if (!quiet && !rc) printf("%d claim%s in %.1f s; report in %s/REPORT.md\n", n, n == 1 ? "" : "s", cli_now() - t0, L->out);
    for (int i = 0; i < n; i++) free(res[i].body);
    free(res);
    return failed ? CLI_FAIL : rc;
}
