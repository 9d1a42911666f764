/* Option parsing, error reporting, timing and the progress bar of the CLI. */
#include "cli.h"
#include "nabla.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------- */

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("nabla: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd) fprintf(stderr, "\nTry 'nabla %s --help' for more information.\n", cmd);
    else fputs("\nTry 'nabla --help' for more information.\n", stderr);
    return CLI_USAGE;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("nabla: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

int cli_lib_error(void)
{
    const char *msg = nb_last_error();
    return cli_fail("%s", msg && *msg ? msg : "unknown error");
}

/* ---- option parsing ----------------------------------------------------- */

static void print_default(FILE *f, const cli_opt *o)
{
    switch (o->type) {
    case CLI_INT: fprintf(f, " (default %d)", *(int *)o->dst); break;
    case CLI_I64: fprintf(f, " (default %lld)", (long long)*(int64_t *)o->dst); break;
    case CLI_U64: fprintf(f, " (default %llu)", (unsigned long long)*(uint64_t *)o->dst); break;
    case CLI_FLOAT: /* NaN: the default depends on other options, as the help says */
        if (!isnan(*(float *)o->dst)) fprintf(f, " (default %g)", (double)*(float *)o->dst);
        break;
    case CLI_STR:
        if (*(const char **)o->dst) fprintf(f, " (default %s)", *(const char **)o->dst);
        break;
    case CLI_FLAG: break;
    }
}

void cli_print_help(FILE *f, const cli_cmd *cmd, const cli_opt *opts, int n)
{
    fprintf(f, "usage: nabla %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (n) fputs("\noptions:\n", f);
    for (int i = 0; i < n; i++) {
        const cli_opt *o = &opts[i];
        char left[64];
        if (o->metavar) snprintf(left, sizeof left, "--%s %s", o->name, o->metavar);
        else snprintf(left, sizeof left, "--%s", o->name);
        fprintf(f, "  %-22s %s", left, o->help);
        print_default(f, o);
        fputc('\n', f);
    }
    fprintf(f, "  %-22s %s\n", "-h, --help", "show this help");
    if (cmd->details) fprintf(f, "\n%s", cmd->details);
}

static int bad_value(const cli_cmd *cmd, const cli_opt *o, const char *v, const char *why)
{
    return cli_usage_error(cmd->name, "option --%s: '%s' %s", o->name, v, why);
}

/* Store text v into o; CLI_USAGE (message printed) when it does not parse or
 * is out of range. */
static int set_value(const cli_cmd *cmd, cli_opt *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_INT:
    case CLI_I64: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno == ERANGE) return bad_value(cmd, o, v, "is not an integer");
        if ((double)x < o->min || (double)x > o->max) {
            char why[96];
            snprintf(why, sizeof why, "is out of range [%.0f, %.0f]", o->min, o->max);
            return bad_value(cmd, o, v, why);
        }
        if (o->type == CLI_INT) *(int *)o->dst = (int)x;
        else *(int64_t *)o->dst = (int64_t)x;
        return -1;
    }
    case CLI_U64: {
        if (*v == '-') return bad_value(cmd, o, v, "must not be negative");
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end || errno == ERANGE) return bad_value(cmd, o, v, "is not a non-negative integer");
        *(uint64_t *)o->dst = (uint64_t)x;
        return -1;
    }
    case CLI_FLOAT: {
        double x = strtod(v, &end);
        if (end == v || *end) return bad_value(cmd, o, v, "is not a number");
        if (!isfinite(x) || !isfinite((float)x)) return bad_value(cmd, o, v, "is not a finite float");
        if (x < o->min || x > o->max) {
            char why[96];
            snprintf(why, sizeof why, "is out of range [%g, %g]", o->min, o->max);
            return bad_value(cmd, o, v, why);
        }
        *(float *)o->dst = (float)x;
        return -1;
    }
    case CLI_STR:
        if (!*v) return bad_value(cmd, o, v, "must not be empty");
        *(const char **)o->dst = v;
        return -1;
    case CLI_FLAG: *(int *)o->dst = 1; return -1;
    }
    return -1;
}

int cli_given(const cli_opt *opts, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(opts[i].name, name)) return opts[i].seen;
    return 0;
}

int cli_parse(const cli_cmd *cmd, cli_opt *opts, int n, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_print_help(stdout, cmd, opts, n);
            return CLI_OK;
        }
        if (strncmp(a, "--", 2) || !a[2])
            return cli_usage_error(cmd->name, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int k = 0; k < n && !o; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len)) o = &opts[k];
        if (!o) return cli_usage_error(cmd->name, "unknown option '--%.*s' for '%s'", (int)len, name, cmd->name);
        const char *v;
        if (o->type == CLI_FLAG) {
            if (eq) return cli_usage_error(cmd->name, "option --%s takes no value", o->name);
            v = "";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return cli_usage_error(cmd->name, "option --%s needs a value (%s)", o->name, o->metavar);
            v = argv[++i];
        }
        int r = set_value(cmd, o, v);
        if (r >= 0) return r;
        o->seen = 1;
    }
    return -1;
}

/* ---- small helpers ------------------------------------------------------ */

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int cli_dir_writable(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) return access(".", W_OK | X_OK) == 0;
    size_t len = (size_t)(slash - path);
    if (len == 0) len = 1; /* "/file" */
    if (len >= sizeof dir) return 0;
    memcpy(dir, path, len);
    dir[len] = 0;
    return access(dir, W_OK | X_OK) == 0;
}

/* ---- progress bar ------------------------------------------------------- */

void cli_progress_start(cli_progress *p, int epoch, int epochs, int64_t total, int quiet)
{
    const char *off = getenv("NO_PROGRESS");
    memset(p, 0, sizeof *p);
    p->active = !quiet && isatty(STDERR_FILENO) && !(off && *off);
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->t0 = cli_now();
    p->last = 0;
}

void cli_progress_update(cli_progress *p, int64_t done, double loss, double img_per_s)
{
    if (!p->active) return;
    double now = cli_now();
    if (done < p->total && now - p->last < 0.1) return;
    p->last = now;
    enum { BAR = 30 };
    char bar[BAR + 1];
    int fill = p->total > 0 ? (int)(BAR * done / p->total) : BAR;
    for (int i = 0; i < BAR; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[BAR] = 0;
    int w = fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld  loss %.4f  %.0f img/s ", p->epoch, p->epochs, bar,
                    (long long)done, (long long)p->total, loss, img_per_s);
    if (w > 1 && w - 1 < p->width) fprintf(stderr, "%*s", p->width - (w - 1), "");
    if (w > 1) p->width = w - 1;
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (!p->active || !p->width) return;
    fprintf(stderr, "\r%*s\r", p->width, "");
    fflush(stderr);
    p->width = 0;
}

/* ---- shared pieces of train/eval/predict -------------------------------- */

nb_status cli_evaluate(nb_model *m, nb_ctx *ctx, const nb_dataset *d, double *loss, double *acc)
{
    nb_loader *l = NULL;
    nb_status s = nb_loader_new(d, 1000, 0, 0, 0, &l);
    if (s) return s;
    int was_training = m->training, had_grad = nb_set_grad_enabled(ctx, 0);
    nb_model_train(m, 0);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (;;) {
        nb_ctx_reset(ctx);
        nb_batch b;
        if ((s = nb_loader_next(l, ctx, &b)) != NB_OK || !b.n) break;
        nb_tensor *logits = nb_model_forward(m, ctx, b.x);
        nb_tensor *bl = nb_cross_entropy(ctx, logits, b.y, NULL, -100, NB_REDUCTION_SUM);
        nb_tensor *pred = nb_argmax(ctx, logits, 1);
        if (!bl || !pred) {
            s = nb_ctx_status(ctx);
            if (!s) s = NB_ERR_STATE;
            break;
        }
        loss_sum += (double)nb_tensor_item(bl);
        for (int64_t i = 0; i < b.n; i++) correct += (int32_t)pred->data[i] == b.y[i];
        seen += b.n;
    }
    nb_ctx_reset(ctx);
    nb_model_train(m, was_training);
    nb_set_grad_enabled(ctx, had_grad);
    nb_loader_free(l);
    if (s) return s;
    *loss = seen ? loss_sum / (double)seen : 0.0;
    *acc = seen ? (double)correct / (double)seen : 0.0;
    return NB_OK;
}

int cli_load_fashion_mnist(const char *dir, int train, nb_dataset **out)
{
    if (nb_fashion_mnist_load(dir, train, out) != NB_OK) return cli_lib_error();
    return 0;
}

static const struct {
    const char   *name;
    nb_optim_kind kind;
    double        lr, momentum;
} cli_optims[] = {
    {"sgd", NB_OPTIM_SGD, 0.1, 0},         {"momentum", NB_OPTIM_SGD, 0.05, 0.9},
    {"rmsprop", NB_OPTIM_RMSPROP, 1e-3, 0}, {"adagrad", NB_OPTIM_ADAGRAD, 1e-2, 0},
    {"adam", NB_OPTIM_ADAM, 1e-3, 0},       {"adamw", NB_OPTIM_ADAMW, 1e-3, 0},
};

int cli_optim_opts(const char *name, nb_optim_opts *out)
{
    for (size_t i = 0; i < sizeof cli_optims / sizeof cli_optims[0]; i++)
        if (!strcmp(name, cli_optims[i].name)) {
            *out = nb_optim_defaults(cli_optims[i].kind);
            out->lr = cli_optims[i].lr;
            out->momentum = cli_optims[i].momentum;
            return 0;
        }
    return -1;
}

double cli_optim_lr(const char *name)
{
    nb_optim_opts o;
    return cli_optim_opts(name, &o) ? NAN : o.lr;
}

FILE *cli_atomic_open(cli_atomic *a, const char *path)
{
    snprintf(a->path, sizeof a->path, "%s", path);
    const char *slash = strrchr(a->path, '/');
    const int dir = slash ? (int)(slash - a->path + 1) : 0;
    snprintf(a->tmp, sizeof a->tmp, "%.*s.%s.XXXXXX", dir, a->path, a->path + dir);
    a->f = NULL;
    a->fd = mkstemp(a->tmp);
    if (a->fd >= 0 && !(a->f = fdopen(a->fd, "w"))) {
        const int err = errno;
        close(a->fd);
        unlink(a->tmp);
        errno = err;
    }
    if (!a->f) {
        cli_fail("%s: %s", a->path, strerror(errno));
        return NULL;
    }
    fchmod(a->fd, 0644); /* mkstemp's 0600 would hide the results from others */
    return a->f;
}

int cli_atomic_close(cli_atomic *a)
{
    int bad = ferror(a->f) || fflush(a->f) != 0 || fsync(a->fd) != 0;
    int err = errno;
    if (fclose(a->f) != 0 && !bad) bad = 1, err = errno;
    a->f = NULL;
    if (!bad && rename(a->tmp, a->path) != 0) bad = 1, err = errno;
    if (!bad) return CLI_OK;
    unlink(a->tmp);
    return cli_fail("%s: %s", a->path, strerror(err));
}
