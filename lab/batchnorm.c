/* Claim 12: batch normalization makes each layer's input mean 0 and
 * variance 1, and acts on the inputs, not the weights: weight normalization
 * is the technique for the weights (§10). */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { NLAYER = 3, HIDDEN = 256, PROBE_N = 512, MAX_PROBES = 128 };
enum { BN_NONE, BN_BN, BN_WN, NBNV };
static const char *const bnv_name[NBNV] = {"no normalization", "batch norm", "weight norm"};

/* Flatten, 3 x (Linear 784/256 -> 256, [BatchNorm1d], ReLU), Linear 256 -> 10;
 * weight norm (dim 0) on the three hidden Linear layers for BN_WN. */
static nb_model *bn_mlp(int variant, nb_rng *rng)
{
    nb_model *m = nb_model_new("lab", "");
    if (!m) return NULL;
    nb_module *seq = nb_nn_sequential(m);
    m->root = seq;
    nb_status st = seq ? nb_sequential_add(seq, nb_nn_flatten(m, 1)) : NB_ERR_NOMEM;
    for (int l = 0; l < NLAYER && !st; l++) {
        nb_module *lin = nb_nn_linear(m, rng, l ? HIDDEN : 784, HIDDEN, 1);
        st = nb_sequential_add(seq, lin);
        if (!st && variant == BN_WN) st = nb_nn_weight_norm(lin, 0);
        if (!st && variant == BN_BN) st = nb_sequential_add(seq, nb_nn_batch_norm1d(m, HIDDEN, 1e-5f, 0.1f, 1));
        if (!st) st = nb_sequential_add(seq, nb_nn_relu(m));
    }
    if (!st) st = nb_sequential_add(seq, nb_nn_linear(m, rng, HIDDEN, 10, 1));
    if (st) nb_model_free(m), m = NULL;
    return m;
}

/* Per probe and layer: mean over units of |batch mean| and mean over units
 * of the batch variance, of the values entering each ReLU. */
typedef struct bn_log {
    const nb_dataset *probe;
    nb_ctx  *ctx;
    float   *saved;             /* the model's values, restored after a probe */
    int      every, n;
    double   step[MAX_PROBES], mean[MAX_PROBES][NLAYER], var[MAX_PROBES][NLAYER];
} bn_log;

static void unit_stats(const nb_tensor *x, double *mean_abs, double *var)
{
    int64_t n = x->shape[0], f = x->shape[1];
    *mean_abs = *var = 0;
    for (int64_t j = 0; j < f; j++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < n; i++) s += x->data[i * f + j];
        double mu = s / (double)n;
        for (int64_t i = 0; i < n; i++) ss += (x->data[i * f + j] - mu) * (x->data[i * f + j] - mu);
        *mean_abs += fabs(mu) / (double)f, *var += ss / (double)n / (double)f;
    }
}

/* A forward pass on the probe batch in train mode, child by child, noting the
 * input of each ReLU; BatchNorm's running statistics are put back after. */
static int probe(void *user, nb_model *m, int64_t step, double loss)
{
    (void)loss;
    bn_log *g = user;
    if (step % g->every || g->n == MAX_PROBES) return 0;
    memcpy(g->saved, m->data, m->numel * sizeof *g->saved);
    nb_ctx_reset(g->ctx);
    nb_set_grad_enabled(g->ctx, 0);
    nb_tensor *x = nb_tensor_from(g->ctx, 4, (int64_t[]){PROBE_N, 1, 28, 28}, g->probe->x);
    nb_module *seq = m->root;
    int layer = 0;
    for (int i = 0; i < seq->nchildren && x; i++) {
        x = seq->children[i]->vt->forward(seq->children[i], g->ctx, x);
        if (x && i + 1 < seq->nchildren && !strcmp(seq->children[i + 1]->vt->kind, "ReLU") && layer < NLAYER) {
            unit_stats(x, &g->mean[g->n][layer], &g->var[g->n][layer]);
            layer++;
        }
    }
    memcpy(m->data, g->saved, m->numel * sizeof *g->saved);
    if (!x) return cli_lib_error(), -1;
    g->step[g->n++] = (double)step;
    return 0;
}

static int run_batchnorm(lab_section *s)
{
    lab *L = s->L;
    const nb_dataset *train, *test;
    if (lab_data(L, &train, &test)) return -1;
    nb_dataset tr = lab_subset(train, L->quick ? 10000 : 60000), te = lab_subset(test, L->quick ? 2000 : 10000);
    nb_dataset pr = lab_subset(train, PROBE_N);
    int64_t steps = L->quick ? 300 : 3000;
    bn_log *logs = calloc(NBNV, sizeof *logs);
    double test_acc[NBNV];
    int rc = logs ? 0 : -1;
    for (int v = 0; v < NBNV && !rc; v++) {
        nb_rng rng;
        nb_rng_seed(&rng, L->seed);
        nb_model *m = bn_mlp(v, &rng);
        bn_log *g = &logs[v];
        g->probe = &pr, g->every = (int)(steps / 20);
        g->ctx = nb_ctx_new(L->seed);
        g->saved = m ? malloc(m->numel * sizeof *g->saved) : NULL;
        lab_fit_opts fo = {.optim = lab_optim(NB_OPTIM_SGD, 0.01), .batch = 64, .steps = steps + 1, .seed = L->seed,
                           .log_every = 50, .on_grad = probe, .user = g};
        fo.optim.momentum = 0.9;
        lab_fit_result fit = {0};
        double loss;
        rc = !m || !g->ctx || !g->saved ? (cli_lib_error(), -1) : lab_fit(m, &tr, &fo, &fit);
        if (!rc) rc = lab_eval(m, &te, &loss, &test_acc[v]);
        lab_fit_result_free(&fit);
        nb_ctx_free(g->ctx);
        free(g->saved);
        nb_model_free(m);
    }
    if (rc) goto done;

    fprintf(s->md,
            "\n**Experiment.** An MLP 784-256-256-256-10 with ReLU on Fashion-MNIST (%lld training images, SGD "
            "momentum 0.9, lr 0.01, batch 64, %lld steps) in three variants from the same seed: no normalization; "
            "BatchNorm1d between each hidden Linear layer and its ReLU; weight normalization (w = g·v/‖v‖ per "
            "output unit) on each hidden Linear layer. Every %d steps the values entering each ReLU — the input "
            "the normalization acts on — are measured on a fixed probe batch of %d training images (train mode, "
            "BatchNorm's running statistics restored after): per unit the mean and variance over the batch, "
            "then averaged over the %d units (|mean| is averaged as an absolute value).\n\n",
            (long long)tr.n, (long long)steps, logs[0].every, PROBE_N, HIDDEN);
    fputs("| variant | when | layer 1 mean, variance | layer 2 mean, variance | layer 3 mean, variance | test accuracy |\n"
          "|---|---|---|---|---|---|\n",
          s->md);
    lab_csv csv;
    if ((rc = lab_csv_open(s, &csv, "layer_stats", "variant,step,mean1,var1,mean2,var2,mean3,var3"))) goto done;
    for (int v = 0; v < NBNV; v++) {
        const bn_log *g = &logs[v];
        for (int p = 0; p < g->n; p++) {
            double row[1 + 2 * NLAYER] = {g->step[p]};
            for (int l = 0; l < NLAYER; l++) row[1 + 2 * l] = g->mean[p][l], row[2 + 2 * l] = g->var[p][l];
            lab_csv_row(&csv, bnv_name[v], row, 1 + 2 * NLAYER);
        }
        for (int k = 0; k < 2; k++) {
            int p = k ? g->n - 1 : 0;
            fprintf(s->md, "| %s | step %.0f |", bnv_name[v], g->step[p]);
            for (int l = 0; l < NLAYER; l++) fprintf(s->md, " %.3f, %.3f |", g->mean[p][l], g->var[p][l]);
            if (k) fprintf(s->md, " %.4f |\n", test_acc[v]);
            else fputs(" |\n", s->md);
        }
    }
    if ((rc = lab_csv_close(s, &csv))) goto done;
    for (int v = 0; v < NBNV && !rc; v++) {
        const bn_log *g = &logs[v];
        char title[96], name[32], caption[160];
        snprintf(title, sizeof title, "%s: inputs of each ReLU during training", bnv_name[v]);
        nb_plot *p = lab_plot_new(title, "step", "mean |unit mean|, mean unit variance");
        if (!p) {
            rc = -1;
            break;
        }
        for (int l = 0; l < NLAYER; l++) {
            double y[MAX_PROBES];
            char label[48];
            for (int i = 0; i < g->n; i++) y[i] = g->var[i][l];
            snprintf(label, sizeof label, "layer %d variance", l + 1);
            nb_plot_line_points(p, label, g->step, y, g->n);
            for (int i = 0; i < g->n; i++) y[i] = g->mean[i][l];
            snprintf(label, sizeof label, "layer %d |mean|", l + 1);
            nb_plot_line(p, label, g->step, y, g->n);
        }
        nb_plot_hline(p, "the claim: variance 1, mean 0", 1);
        nb_plot_hline(p, NULL, 0);
        snprintf(name, sizeof name, "stats_%s", v == BN_NONE ? "none" : v == BN_BN ? "bn" : "wn");
        snprintf(caption, sizeof caption, "%s: per-layer |mean| and variance of the ReLU inputs over training.",
                 bnv_name[v]);
        rc = lab_plot_save(s, p, name, caption);
    }
    if (rc) goto done;

    /* within: |mean| <= 0.2 and variance in [0.5, 2] at every probe and layer */
    int within[NBNV];
    double worst_mean[NBNV], var_lo[NBNV], var_hi[NBNV];
    for (int v = 0; v < NBNV; v++) {
        worst_mean[v] = 0, var_lo[v] = INFINITY, var_hi[v] = 0;
        for (int p = 0; p < logs[v].n; p++)
            for (int l = 0; l < NLAYER; l++) {
                worst_mean[v] = fmax(worst_mean[v], logs[v].mean[p][l]);
                var_lo[v] = fmin(var_lo[v], logs[v].var[p][l]), var_hi[v] = fmax(var_hi[v], logs[v].var[p][l]);
            }
        within[v] = worst_mean[v] <= 0.2 && var_lo[v] >= 0.5 && var_hi[v] <= 2;
    }
    const char *rule = "Rule: a variant keeps its layer inputs at mean 0, variance 1 when at every probe and layer "
                       "the average |mean| is at most 0.2 and the average variance within [0.5, 2]. Confirmed when "
                       "batch norm does and weight normalization does not (it normalises the weights, not the "
                       "inputs); depends when both or neither differ as claimed; refuted when batch norm does not.";
    lab_verdict v = !within[BN_BN] ? LAB_REFUTED : !within[BN_WN] ? LAB_CONFIRMED : LAB_DEPENDS;
    lab_verdict_set(s, v,
                    "%s Measured over training: batch norm |mean| ≤ %.3f, variance %.3f–%.3f; weight norm |mean| "
                    "≤ %.3f, variance %.3f–%.3f; none |mean| ≤ %.3f, variance %.3f–%.3f. Test accuracy: none %.4f, "
                    "batch norm %.4f, weight norm %.4f.",
                    rule, worst_mean[BN_BN], var_lo[BN_BN], var_hi[BN_BN], worst_mean[BN_WN], var_lo[BN_WN],
                    var_hi[BN_WN], worst_mean[BN_NONE], var_lo[BN_NONE], var_hi[BN_NONE], test_acc[BN_NONE],
                    test_acc[BN_BN], test_acc[BN_WN]);
done:
    free(logs);
    return rc;
}

const lab_claim lab_claim_batchnorm = {
    12, "batchnorm", "Batch norm makes layer inputs mean 0, variance 1; weight norm is for weights", "§10",
    "§10 「BN通过标准化将每一层输入的均值调整为0， 方差调整为1」\n"
    "§10 「核心功能之一就是让输入范围大致固定」\n"
    "§10 「BN作用域层的输入，而不是权重本身，要用到另一个技术权重归一化(weight normalization)」",
    "Batch normalization standardises each layer's input to mean 0 and variance 1, keeping its range roughly "
    "fixed; it acts on the inputs, not on the weights — normalising the weights is weight normalization.",
    NULL, NULL, run_batchnorm,
};
