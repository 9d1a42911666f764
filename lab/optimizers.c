/* Claim 3: the notes' optimizer table (§2). The runs are `nabla
 * compare`'s (tools/compare.c), called as a subcommand into a directory of
 * the report; this file reads its summary.csv and judges the table's rows
 * on convergence speed and hyperparameter sensitivity. */
#include "lab.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_OPT = 8 };

typedef struct opt_row {
    char   name[16];
    double default_lr, test_acc, steps_to_target, spread, best_lr, best_acc, seconds;
    int    reached, seeds, diverged, runs;
} opt_row;

/* Column index of name in the header line (a copy is tokenised). */
static int column(const char *header, const char *name)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", header);
    int k = 0;
    for (char *save, *tok = strtok_r(buf, ",\n", &save); tok; tok = strtok_r(NULL, ",\n", &save), k++)
        if (!strcmp(tok, name)) return k;
    return -1;
}

/* Field k of a CSV line as a number ("never" -> INFINITY). */
static double field(const char *line, int k)
{
    const char *p = line;
    for (int i = 0; i < k && p; i++) {
        p = strchr(p, ',');
        if (p) p++;
    }
    if (!p || k < 0) return NAN;
    if (!strncmp(p, "never", 5)) return INFINITY;
    return strtod(p, NULL);
}

static int read_summary(const char *path, opt_row *rows, int max)
{
    FILE *f = fopen(path, "r");
    if (!f) return cli_fail("%s: %s", path, strerror(errno)), -1;
    char header[1024], line[1024];
    int n = 0;
    if (!fgets(header, sizeof header, f)) n = -1;
    static const char *const cols[] = {"default_lr", "test_acc", "steps_to_target", "sweep_spread", "best_lr",
                                       "best_test_acc", "seconds_per_run", "seeds_reaching_target", "seeds",
                                       "diverged_runs", "runs"};
    int idx[11];
    for (int i = 0; i < 11 && n >= 0; i++)
        if ((idx[i] = column(header, cols[i])) < 0) n = -1;
    while (n >= 0 && n < max && fgets(line, sizeof line, f)) {
        opt_row *r = &rows[n++];
        size_t len = strcspn(line, ",");
        snprintf(r->name, sizeof r->name, "%.*s", (int)len, line);
        r->default_lr = field(line, idx[0]), r->test_acc = field(line, idx[1]);
        r->steps_to_target = field(line, idx[2]), r->spread = field(line, idx[3]);
        r->best_lr = field(line, idx[4]), r->best_acc = field(line, idx[5]), r->seconds = field(line, idx[6]);
        r->reached = (int)field(line, idx[7]), r->seeds = (int)field(line, idx[8]);
        r->diverged = (int)field(line, idx[9]), r->runs = (int)field(line, idx[10]);
    }
    fclose(f);
    if (n < 0) return cli_fail("%s: not the summary `nabla compare` writes", path), -1;
    return n;
}

static const opt_row *find_row(const opt_row *rows, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name)) return &rows[i];
    return NULL;
}

/* Over the pairs the notes rank (Adam before RMSprop before SGD), how many
 * the measure orders the same way (lower is better), within tol. */
static int pairs_agree(const opt_row *const *r, int speed, double tol, char *detail, size_t size)
{
    int agree = 0;
    size_t len = 0;
    detail[0] = 0;
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++) { /* r[a] claimed better than r[b] */
            double va = speed ? r[a]->steps_to_target : r[a]->spread;
            double vb = speed ? r[b]->steps_to_target : r[b]->spread;
            double t = speed && isfinite(va) && isfinite(vb) ? tol * fmin(va, vb) : tol;
            int ok = va < vb - t;
            agree += ok;
            len += (size_t)snprintf(detail + len, len < size ? size - len : 0, "%s%s %s %s", len ? "; " : "",
                                    r[a]->name, ok ? "<" : "not <", r[b]->name);
        }
    return agree;
}

static int run_optimizers(lab_section *s)
{
    lab *L = s->L;
    char dir[4200], seeds[96], threads[16], summary[4300];
    snprintf(dir, sizeof dir, "%s/claim03_optimizers", L->out);
    if (L->quick) snprintf(seeds, sizeof seeds, "%llu", (unsigned long long)L->seed);
    else
        snprintf(seeds, sizeof seeds, "%llu,%llu,%llu", (unsigned long long)L->seed,
                 (unsigned long long)L->seed + 1, (unsigned long long)L->seed + 2);
    snprintf(threads, sizeof threads, "%d", L->threads);
    char *quick_argv[] = {"compare", "--quick", "--optims", "sgd,rmsprop,adam", "--lrs", "x0.1,x10", "--seeds", seeds, "--threads", threads, "--data",
                          (char *)L->data_dir, "--out", dir, "--quiet"};
    char *full_argv[] = {"compare", "--optims", "sgd,momentum,rmsprop,adam", "--epochs", "1", "--target-acc",
                         "0.8", "--seeds", seeds, "--threads", threads, "--data", (char *)L->data_dir, "--out", dir,
                         "--quiet"};
    int rc = L->quick ? cmd_compare((int)(sizeof quick_argv / sizeof *quick_argv), quick_argv)
                      : cmd_compare((int)(sizeof full_argv / sizeof *full_argv), full_argv);
    if (rc) return cli_fail("nabla compare failed (exit %d)", rc), -1;
    snprintf(summary, sizeof summary, "%s/summary.csv", dir);
    opt_row rows[MAX_OPT];
    int n = read_summary(summary, rows, MAX_OPT);
    if (n < 0) return -1;
    const opt_row *notes[3] = {find_row(rows, n, "adam"), find_row(rows, n, "rmsprop"), find_row(rows, n, "sgd")};
    if (!notes[0] || !notes[1] || !notes[2]) return cli_fail("%s lacks adam, rmsprop or sgd", summary), -1;

    fprintf(s->md,
            "\n**Experiment.** `nabla compare` (the optimizer comparison of the CLI, run by the lab as `%s`): the "
            "notes' MLP (784-256-128-100-10) on Fashion-MNIST, every optimizer from the same initial weights on "
            "the same batches, a sweep of learning rates around each optimizer's default (torch's), seed%s %s. "
            "*Speed*: steps until the running training accuracy reaches the target, at the default learning rate. "
            "*Sensitivity*: the spread (best − worst) of the final test accuracy across the sweep. Its full "
            "report, with the notes' whole table, is [claim03_optimizers/REPORT.md](claim03_optimizers/REPORT.md)."
            "\n\n",
            L->quick ? "--quick --optims sgd,rmsprop,adam --lrs x0.1,x10"
                     : "--optims sgd,momentum,rmsprop,adam --epochs 1 --target-acc 0.8",
            strchr(seeds, ',') ? "s" : "", seeds);
    fputs("| optimizer | notes: 收敛速度 | notes: 超参数敏感性 | default lr | steps to target (seeds reaching it) | "
          "spread across the sweep | best lr (test accuracy) | test accuracy at the default lr |\n"
          "|---|---|---|---|---|---|---|---|\n",
          s->md);
    for (int i = 0; i < n; i++) {
        const opt_row *r = &rows[i];
        const char *speed = !strcmp(r->name, "adam") ? "快" : !strcmp(r->name, "rmsprop") ? "较快" : "较慢";
        const char *sens = !strcmp(r->name, "adam")      ? "低（默认超参数通常有效）"
                           : !strcmp(r->name, "rmsprop") ? "中等（衰减率等需调整）"
                                                         : "高（学习率、动量需手动调参）";
        fprintf(s->md, "| %s | %s | %s | %g | ", r->name, speed, sens, r->default_lr);
        if (isfinite(r->steps_to_target)) fprintf(s->md, "%.0f (%d/%d)", r->steps_to_target, r->reached, r->seeds);
        else fprintf(s->md, "never (0/%d)", r->seeds);
        fprintf(s->md, " | %.3f | %g (%.4f) | %.4f |\n", r->spread, r->best_lr, r->best_acc, r->test_acc);
    }
    fputs("\n(momentum, where present, is SGD with momentum 0.9 — the notes' \"可结合动量法\"; the verdict uses the "
          "three columns of the notes' table: sgd, rmsprop, adam.)\n",
          s->md);
    fputs("\n![Final test accuracy against learning rate](claim03_optimizers/acc_lr.png)\n\n*Final test accuracy "
          "against the learning rate (from `nabla compare`).*\n"
          "\n![Training loss at the default learning rates](claim03_optimizers/loss.png)\n\n*Training loss at the "
          "default learning rates.*\n\nData: [`claim03_optimizers/summary.csv`](claim03_optimizers/summary.csv), "
          "[`claim03_optimizers/sweep.csv`](claim03_optimizers/sweep.csv)\n",
          s->md);
    s->nplots += 2;

    char speed_detail[256], sens_detail[256];
    int speed = pairs_agree(notes, 1, 0.05, speed_detail, sizeof speed_detail);
    int sens = pairs_agree(notes, 0, 0.005, sens_detail, sizeof sens_detail);
    const char *rule = "Rule: the notes rank Adam before RMSprop before SGD on convergence speed (fewer steps to "
                       "the target, ties within 5%) and on insensitivity to the learning rate (smaller spread, ties "
                       "within 0.005): 6 ordered pairs. Confirmed when all 6 agree, refuted when none does, "
                       "depends otherwise (the rows that hold are named).";
    lab_verdict v = speed + sens == 6 ? LAB_CONFIRMED : speed + sens == 0 ? LAB_REFUTED : LAB_DEPENDS;
    lab_verdict_set(s, v,
                    "%s Measured: speed %d of 3 pairs (%s; steps adam %.0f, rmsprop %.0f, sgd %.0f); sensitivity %d "
                    "of 3 pairs (%s; spreads adam %.3f, rmsprop %.3f, sgd %.3f).%s",
                    rule, speed, speed_detail, notes[0]->steps_to_target, notes[1]->steps_to_target,
                    notes[2]->steps_to_target, sens, sens_detail, notes[0]->spread, notes[1]->spread,
                    notes[2]->spread,
                    v == LAB_DEPENDS ? " As the notes themselves say, 收敛效果…取决于任务、数据集、模型架构和超参数设置." : "");
    return 0;
}

const lab_claim lab_claim_optimizers = {
    3, "optimizers", "Optimizers: Adam converges fastest, SGD is the most sensitive", "§2",
    "§2 收敛速度: SGD 「较慢」, RMSprop 「较快」, Adam 「快」\n"
    "§2 超参数敏感性: SGD 「高（学习率、动量需手动调参）」, RMSprop 「中等（衰减率等需调整）」, Adam 「低（默认超参数通常有效）」\n"
    "§2 「综合动量和自适应学习率，收敛快且对超参数鲁棒。」 (Adam)\n"
    "§2 「收敛效果（即最终达到的损失值或模型性能）取决于任务、数据集、模型架构和超参数设置。」",
    "Adam converges fastest, RMSprop next and SGD slowest; SGD is the most sensitive to its learning rate, "
    "RMSprop moderately, Adam the least.",
    NULL, NULL, run_optimizers,
};
