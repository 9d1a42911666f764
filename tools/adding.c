/* nabla adding — the adding problem: does a recurrent cell carry a value
 * across T steps, and does its gradient vanish back in time? */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const cli_cmd cli_adding_cmd = {
    "adding",
    "the adding problem: long-range memory and vanishing gradients of rnn, lstm, gru",
    "[--cell rnn|lstm|gru[,...]] [--T N] [--steps S] [--hidden H] [--batch B] [--lr LR]\n"
    "                    [--seed S] [--threads T] [--out DIR]",
    "Each sample is T steps of two inputs: a value in [0,1) and a marker set at two\n"
    "steps (one in each half); the target is the sum of the two marked values.\n"
    "Predicting 1 always has MSE 1/6 = 0.167; a model well below it carries the\n"
    "values across the sequence. The model is the zoo's \"lstm\" with config\n"
    "T,2,H,1,CELL, trained with Adam and gradient-norm clipping on fresh batches.\n"
    "Before and after training it prints the test MSE and ||dL/dh_t||, the norm of\n"
    "the loss gradient at the hidden state of step t (t = 0 is the first step),\n"
    "averaged over --probe-batches batches: an RNN's falls by orders of magnitude\n"
    "going back in time (the vanishing gradient of the notes §4), an LSTM's far less.\n"
    "With torch's initialisation the forget gate starts near 0.5, so an untrained\n"
    "LSTM's gradient vanishes too; --forget-bias 1 starts it near 0.73.\n"
    "--cell takes a comma list to compare cells on the same data.\n"
    "With --out DIR: DIR/adding_T<N>.csv (t and, per cell, the norms at init and\n"
    "end) and DIR/adding_T<N>.png (the same on a log axis).\n\n"
    "example:\n"
    "  nabla adding --cell rnn,lstm --T 100 --steps 3000 --out adding\n",
};

#define MAX_CELLS 4

typedef struct {
    const char *cells, *out;
    int T, steps, hidden, batch, probe, threads, log_every;
    float lr, clip, forget_bias;
    uint64_t seed;
} adding_args;

static void log_line(void *arg, int step, double mse)
{
    printf("  %s step %d  train_mse %.4f\n", (const char *)arg, step, mse);
    fflush(stdout);
}

/* Split "rnn,lstm" into modes; the count, or -1 (usage error printed). */
static int parse_cells(const char *list, nb_rnn_mode *modes)
{
    int n = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int m = nb_rnn_mode_from_name(tok);
        if (m < 0 || n == MAX_CELLS) {
            cli_usage_error("adding", "option --cell: '%s' is not a list of up to %d of rnn, relu, lstm, gru", list,
                            MAX_CELLS);
            return -1;
        }
        modes[n++] = (nb_rnn_mode)m;
    }
    if (!n) cli_usage_error("adding", "option --cell: empty list");
    return n ? n : -1;
}

static int write_csv(const char *path, const nb_adding_result *r, const nb_rnn_mode *modes, int n)
{
    FILE *f = fopen(path, "w");
    if (!f) return cli_fail("%s: %s", path, strerror(errno));
    fputs("t", f);
    for (int c = 0; c < n; c++) fprintf(f, ",%s_init,%s_final", nb_rnn_mode_name(modes[c]), nb_rnn_mode_name(modes[c]));
    fputc('\n', f);
    for (int t = 0; t < r[0].T; t++) {
        fprintf(f, "%d", t);
        for (int c = 0; c < n; c++) fprintf(f, ",%.6g,%.6g", r[c].grad_init[t], r[c].grad_final[t]);
        fputc('\n', f);
    }
    if (fclose(f) != 0) return cli_fail("%s: %s", path, strerror(errno));
    return 0;
}

static int write_png(const char *path, const nb_adding_result *r, const nb_rnn_mode *modes, int n)
{
    int T = r[0].T;
    double *t = malloc(sizeof *t * (size_t)T);
    nb_plot *p = nb_plot_new(900, 560);
    int rc = t && p ? 0 : cli_fail("out of memory");
    char title[96], label[64];
    snprintf(title, sizeof title, "adding problem, T = %d: ||dL/dh_t||", T);
    if (!rc && (nb_plot_title(p, title) || nb_plot_labels(p, "step t", "gradient norm") ||
                nb_plot_scale(p, NB_PLOT_LINEAR, NB_PLOT_LOG)))
        rc = cli_lib_error();
    for (int k = 0; k < T && t; k++) t[k] = k;
    for (int c = 0; c < n && !rc; c++) {
        snprintf(label, sizeof label, "%s at init", nb_rnn_mode_name(modes[c]));
        if (nb_plot_line(p, label, t, r[c].grad_init, T)) rc = cli_lib_error();
        snprintf(label, sizeof label, "%s trained", nb_rnn_mode_name(modes[c]));
        if (!rc && nb_plot_line(p, label, t, r[c].grad_final, T)) rc = cli_lib_error();
    }
    if (!rc && nb_plot_save(p, path)) rc = cli_lib_error();
    nb_plot_free(p);
    free(t);
    return rc;
}

static int run(const adding_args *a, const nb_rnn_mode *modes, int n)
{
    nb_adding_result res[MAX_CELLS] = {{0}};
    int rc = CLI_OK;
    nb_set_threads(a->threads);
    printf("adding problem: T %d, hidden %d, batch %d, %d Adam steps (lr %g, clip %g), seed %llu, %d threads\n", a->T,
           a->hidden, a->batch, a->steps, (double)a->lr, (double)a->clip, (unsigned long long)a->seed, nb_get_threads());
    printf("baseline (always predict 1): MSE %.4f\n", NB_ADDING_BASELINE_MSE);
    fflush(stdout);
    for (int c = 0; c < n && rc == CLI_OK; c++) {
        nb_adding_opts o = nb_adding_defaults();
        o.mode = modes[c], o.T = a->T, o.steps = a->steps, o.hidden = a->hidden, o.batch = a->batch;
        o.lr = a->lr, o.clip = a->clip, o.probe_batches = a->probe, o.seed = a->seed, o.forget_bias = a->forget_bias;
        o.log_every = a->log_every, o.log = log_line, o.log_arg = (void *)nb_rnn_mode_name(modes[c]);
        if (nb_adding_run(&o, &res[c]) != NB_OK) {
            rc = cli_lib_error();
            break;
        }
        const nb_adding_result *r = &res[c];
        printf("%-4s T=%d: test MSE %.4f after %d steps (%.4f at init; %s the baseline 0.167)  (%.1f s)\n",
               nb_rnn_mode_name(modes[c]), a->T, r->mse_final, a->steps, r->mse_init,
               r->mse_final < 0.5 * NB_ADDING_BASELINE_MSE ? "well below" : "not well below", r->seconds);
        printf("     ||dL/dh_t|| at t = 0, T/2, T-1: init %.3g %.3g %.3g (first/last %.3g); trained %.3g %.3g %.3g "
               "(first/last %.3g)\n",
               r->grad_init[0], r->grad_init[a->T / 2], r->grad_init[a->T - 1], r->grad_init[0] / r->grad_init[a->T - 1],
               r->grad_final[0], r->grad_final[a->T / 2], r->grad_final[a->T - 1],
               r->grad_final[0] / r->grad_final[a->T - 1]);
        fflush(stdout);
    }
    if (rc == CLI_OK && a->out) {
        char csv[4096], png[4096];
        snprintf(csv, sizeof csv, "%s/adding_T%d.csv", a->out, a->T);
        snprintf(png, sizeof png, "%s/adding_T%d.png", a->out, a->T);
        rc = write_csv(csv, res, modes, n);
        if (!rc) rc = write_png(png, res, modes, n);
        if (!rc) printf("wrote %s and %s\n", csv, png);
    }
    for (int c = 0; c < n; c++) nb_adding_result_free(&res[c]);
    return rc;
}

int cmd_adding(int argc, char **argv)
{
    nb_adding_opts d = nb_adding_defaults();
    adding_args a = {.cells = "lstm", .T = d.T, .steps = d.steps, .hidden = d.hidden, .batch = d.batch,
                     .probe = d.probe_batches, .lr = (float)d.lr, .clip = (float)d.clip, .seed = d.seed,
                     .log_every = 500};
    cli_opt opts[] = {
        {"cell", CLI_STR, &a.cells, 0, 0, "LIST", "rnn, relu, lstm or gru, or a comma list of them", 0},
        {"T", CLI_INT, &a.T, 2, 100000, "N", "sequence length", 0},
        {"steps", CLI_INT, &a.steps, 0, 10000000, "S", "training steps (0: measure at init only)", 0},
        {"hidden", CLI_INT, &a.hidden, 1, 1 << 16, "H", "hidden size", 0},
        {"batch", CLI_INT, &a.batch, 1, 1 << 20, "B", "samples per step", 0},
        {"lr", CLI_FLOAT, &a.lr, 1e-12, 10, "LR", "Adam's learning rate", 0},
        {"clip", CLI_FLOAT, &a.clip, 0, 1e30, "N", "clip the gradients' 2-norm to N, 0 = off", 0},
        {"forget-bias", CLI_FLOAT, &a.forget_bias, -100, 100, "B", "lstm: add B to the forget gate's bias at init (0 = torch's init)", 0},
        {"probe-batches", CLI_INT, &a.probe, 1, 10000, "K", "batches for the test MSE and gradient norms", 0},
        {"log-every", CLI_INT, &a.log_every, 0, 10000000, "N", "print the training MSE every N steps, 0 = never", 0},
        {"seed", CLI_U64, &a.seed, 0, 0, "S", "seed of the weights and the data", 0},
        {"threads", CLI_INT, &a.threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
        {"out", CLI_STR, &a.out, 0, 0, "DIR", "write the gradient norms as CSV and PNG into DIR", 0},
    };
    int r = cli_parse(&cli_adding_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    nb_rnn_mode modes[MAX_CELLS];
    int n = parse_cells(a.cells, modes);
    if (n < 0) return CLI_USAGE;
    if (a.out) {
        char probe[4096];
        snprintf(probe, sizeof probe, "%s/x", a.out);
        if (!cli_dir_writable(probe)) return cli_fail("--out %s: not a writable directory", a.out);
    }
    return run(&a, modes, n);
}
