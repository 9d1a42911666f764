/* Claims 6 and 11: weight decay against overfitting (§3D), and what adds or
 * removes a model's capacity: depth, dropout, learning rate (§9). Training
 * accuracy measures how much a model can fit (capacity); the gap to the
 * test accuracy measures overfitting. */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One training run of an MLP on train, measured on train and test. */
typedef struct mlp_run {
    double train_acc, test_acc, final_loss, wiggle, weight_norm;
    int    diverged;
} mlp_run;

/* Standard deviation of the last k points of a loss curve: how far the
 * loss still moves at the end (NAN when diverged). */
static double tail_std(const lab_fit_result *f, int k)
{
    if (f->diverged || f->ncurve < k) return NAN;
    double mean = 0, var = 0;
    for (int i = f->ncurve - k; i < f->ncurve; i++) mean += f->curve[i] / k;
    for (int i = f->ncurve - k; i < f->ncurve; i++) var += (f->curve[i] - mean) * (f->curve[i] - mean) / k;
    return sqrt(var);
}

static int mlp_train(const int *sizes, int n, float dropout, const lab_fit_opts *fo, uint64_t seed,
                     const nb_dataset *train, const nb_dataset *test, mlp_run *r)
{
    nb_rng rng;
    nb_rng_seed(&rng, seed);
    nb_model *m = lab_mlp(sizes, n, 1, dropout, &rng);
    if (!m) return cli_lib_error(), -1;
    lab_fit_opts o = *fo;
    o.seed = seed;
    lab_fit_result fit;
    double loss, ss = 0;
    int rc = lab_fit(m, train, &o, &fit);
    if (!rc) rc = lab_eval(m, train, &loss, &r->train_acc);
    if (!rc) rc = lab_eval(m, test, &loss, &r->test_acc);
    r->final_loss = fit.last_loss;
    r->diverged = fit.diverged;
    r->wiggle = tail_std(&fit, 5);
    for (int k = 0; k < m->nparams; k++)
        if (m->params[k].t.ndim == 2)
            for (int64_t i = 0; i < nb_tensor_numel(&m->params[k].t); i++)
                ss += (double)m->params[k].t.data[i] * m->params[k].t.data[i];
    r->weight_norm = sqrt(ss);
    lab_fit_result_free(&fit);
    nb_model_free(m);
    return rc;
}

/* ---- claim 6: weight decay ---------------------------------------------------------- */

static int run_weight_decay(lab_section *s)
{
    lab *L = s->L;
    const nb_dataset *train, *test;
    if (lab_data(L, &train, &test)) return -1;
    nb_dataset tr = lab_subset(train, 1000), te = lab_subset(test, L->quick ? 2000 : 10000);
    static const double full_wd[] = {0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2}, quick_wd[] = {0, 1e-3, 1e-2};
    const double *wd = L->quick ? quick_wd : full_wd;
    int nwd = L->quick ? 3 : 6, nseeds = L->quick ? 1 : 2, epochs = L->quick ? 60 : 200;
    static const int sizes[] = {784, 256, 128, 10};
    mlp_run mean[6];
    memset(mean, 0, sizeof mean);
    lab_fit_opts fo = {.optim = lab_optim(NB_OPTIM_SGD, 0.05), .batch = 64, .steps = (int64_t)epochs * 16,
                       .log_every = 16};
    fo.optim.momentum = 0.9;
    for (int k = 0; k < nwd; k++)
        for (int sd = 0; sd < nseeds; sd++) {
            mlp_run r;
            fo.optim.weight_decay = wd[k];
            if (mlp_train(sizes, 4, 0, &fo, L->seed + (uint64_t)sd, &tr, &te, &r)) return -1;
            mean[k].train_acc += r.train_acc / nseeds, mean[k].test_acc += r.test_acc / nseeds;
            mean[k].final_loss += r.final_loss / nseeds, mean[k].weight_norm += r.weight_norm / nseeds;
        }
    fprintf(s->md,
            "\n**Experiment.** The MLP 784-256-128-10 (ReLU) trained on only the first 1,000 Fashion-MNIST "
            "training images — few enough to overfit — for %d epochs (SGD, momentum 0.9, lr 0.05, batch 64), with "
            "weight decay λ_torch added to the gradient (g + λ_torch·w, torch's `weight_decay`, which is the "
            "notes' penalty λ∑w² with λ = λ_torch/2). Training accuracy on the 1,000 images, test accuracy on %lld "
            "test images, mean of %d seed%s. *Gap* = training − test accuracy: the overfitting.\n\n",
            epochs, (long long)te.n, nseeds, nseeds == 1 ? "" : "s");
    fputs("| weight decay | train accuracy | test accuracy | gap | final train loss | weight norm |\n"
          "|---|---|---|---|---|---|\n",
          s->md);
    for (int k = 0; k < nwd; k++)
        fprintf(s->md, "| %g | %.4f | %.4f | %.4f | %.4f | %.2f |\n", wd[k], mean[k].train_acc, mean[k].test_acc,
                mean[k].train_acc - mean[k].test_acc, mean[k].final_loss, mean[k].weight_norm);
    lab_csv csv;
    if (lab_csv_open(s, &csv, "weight_decay", "weight_decay,train_acc,test_acc,gap,final_loss,weight_norm")) return -1;
    for (int k = 0; k < nwd; k++)
        lab_csv_row(&csv, NULL,
                    (double[]){wd[k], mean[k].train_acc, mean[k].test_acc, mean[k].train_acc - mean[k].test_acc,
                               mean[k].final_loss, mean[k].weight_norm},
                    6);
    if (lab_csv_close(s, &csv)) return -1;

    nb_plot *p = lab_plot_new("weight decay on 1,000 images", "weight decay (log)", "accuracy");
    if (!p) return -1;
    double x[6], ytr[6], yte[6], gap[6];
    for (int k = 1; k < nwd; k++)
        x[k - 1] = wd[k], ytr[k - 1] = mean[k].train_acc, yte[k - 1] = mean[k].test_acc,
                 gap[k - 1] = mean[k].train_acc - mean[k].test_acc;
    nb_plot_scale(p, NB_PLOT_LOG, NB_PLOT_LINEAR);
    nb_plot_line_points(p, "train accuracy", x, ytr, nwd - 1);
    nb_plot_line_points(p, "test accuracy", x, yte, nwd - 1);
    nb_plot_line_points(p, "gap (train - test)", x, gap, nwd - 1);
    nb_plot_hline(p, "gap without weight decay", mean[0].train_acc - mean[0].test_acc);
    nb_plot_hline(p, "test accuracy without weight decay", mean[0].test_acc);
    if (lab_plot_save(s, p, "accuracy", "Accuracy and gap against weight decay; dashed: without weight decay."))
        return -1;

    double gap0 = mean[0].train_acc - mean[0].test_acc;
    int best = -1, tradeoff = -1;
    for (int k = 1; k < nwd; k++) {
        double g = mean[k].train_acc - mean[k].test_acc;
        if (g > gap0 - 0.01) continue;
        if (mean[k].test_acc >= mean[0].test_acc - 0.005) {
            if (best < 0 || g < mean[best].train_acc - mean[best].test_acc) best = k;
        } else if (tradeoff < 0) {
            tradeoff = k;
        }
    }
    const char *rule = "Rule: a weight decay reduces overfitting when it shrinks the gap by at least 0.01 while the "
                       "test accuracy drops by at most 0.005. Confirmed when some value does; depends when the gap "
                       "shrinks only at the cost of test accuracy (underfitting); refuted when no value shrinks "
                       "the gap.";
    if (best > 0)
        lab_verdict_set(s, LAB_CONFIRMED,
                        "%s Measured: gap %.4f without weight decay, %.4f with %g (test accuracy %.4f against %.4f).",
                        rule, gap0, mean[best].train_acc - mean[best].test_acc, wd[best], mean[best].test_acc,
                        mean[0].test_acc);
    else if (tradeoff > 0)
        lab_verdict_set(s, LAB_DEPENDS,
                        "%s Measured: gap %.4f without weight decay, %.4f with %g, but the test accuracy falls to "
                        "%.4f from %.4f: it depends on λ being small enough to keep the fit.",
                        rule, gap0, mean[tradeoff].train_acc - mean[tradeoff].test_acc, wd[tradeoff],
                        mean[tradeoff].test_acc, mean[0].test_acc);
    else
        lab_verdict_set(s, LAB_REFUTED, "%s Measured: gap %.4f without weight decay; no value shrank it by 0.01.", rule,
                        gap0);
    return 0;
}

const lab_claim lab_claim_weight_decay = {
    6, "weight-decay", "Weight decay reduces overfitting", "§3D",
    "§3 「D.使用参数weight decay，在一程度上可防止模型过拟合  一种正则化技术，在损失函数中添加权重范数的惩罚项（如L2范数），形式为$L=L_{original}+λ∑w^{2}_{i}$ ,λ是正则化系数.」",
    "Weight decay (an L2 penalty λ∑w² added to the loss) prevents overfitting to some degree.",
    NULL, NULL, run_weight_decay,
};

/* ---- claim 11: capacity ------------------------------------------------------------- */

/* Train the same settings on the real labels (train and test accuracy) and
 * on random labels (training accuracy = how much the model can memorise,
 * its capacity). */
static int capacity_pair(lab *L, const int *sizes, int n, float dropout, const lab_fit_opts *fo,
                         const nb_dataset *real, const nb_dataset *noise, const nb_dataset *test, mlp_run *r,
                         double *memorised)
{
    mlp_run m;
    if (mlp_train(sizes, n, dropout, fo, L->seed, real, test, r)) return -1;
    if (mlp_train(sizes, n, dropout, fo, L->seed, noise, test, &m)) return -1;
    *memorised = m.train_acc;
    return 0;
}

static int run_capacity(lab_section *s)
{
    lab *L = s->L;
    const nb_dataset *train, *test;
    if (lab_data(L, &train, &test)) return -1;
    nb_dataset tr = lab_subset(train, L->quick ? 2500 : 5000), te = lab_subset(test, L->quick ? 2000 : 10000);
    /* the same images with labels drawn at random: nothing to learn but memorise */
    nb_dataset noise = tr;
    int32_t *labels = malloc((size_t)tr.n * sizeof *labels);
    if (!labels) return cli_fail("out of memory"), -1;
    nb_rng rng;
    nb_rng_seed(&rng, L->seed ^ 0x6e6f697365ULL);
    for (int64_t i = 0; i < tr.n; i++) labels[i] = (int32_t)nb_rng_below(&rng, 10);
    noise.y = labels;
    int epochs = L->quick ? 15 : 60;
    int64_t per_epoch = (tr.n + 63) / 64;
    lab_fit_opts fo = {.optim = lab_optim(NB_OPTIM_ADAM, 1e-3), .batch = 64, .steps = epochs * per_epoch,
                       .log_every = (int)per_epoch};
    /* depth: hidden layers of 32 units; dropout and lr: two hidden layers of 256 */
    static const int depths[] = {1, 2, 3, 4};
    static const float drops[] = {0, 0.3f, 0.6f};
    static const double lrs[] = {1e-4, 1e-3, 1e-2, 1e-1};
    static const int wide[] = {784, 256, 256, 10};
    mlp_run runs[3][4];
    double mem[3][4];
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        int sizes[8] = {784};
        for (int k = 1; k <= depths[i]; k++) sizes[k] = 32;
        sizes[depths[i] + 1] = 10;
        rc = capacity_pair(L, sizes, depths[i] + 2, 0, &fo, &tr, &noise, &te, &runs[0][i], &mem[0][i]);
    }
    for (int i = 0; i < 3 && !rc; i++)
        rc = capacity_pair(L, wide, 4, drops[i], &fo, &tr, &noise, &te, &runs[1][i], &mem[1][i]);
    for (int i = 0; i < 4 && !rc; i++) {
        lab_fit_opts o = fo;
        o.optim.lr = lrs[i];
        rc = capacity_pair(L, wide, 4, 0, &o, &tr, &noise, &te, &runs[2][i], &mem[2][i]);
    }
    free(labels);
    if (rc) return -1;
    fprintf(s->md,
            "\n**Experiment.** MLPs trained on the first %lld Fashion-MNIST training images for %d epochs (Adam, "
            "batch 64), one setting varied at a time, all from the same seed. *Depth*: 1, 2, 3 or 4 hidden layers "
            "of 32 units, lr 0.001. *Dropout*: two hidden layers of 256 with dropout p after each, lr 0.001. "
            "*Learning rate*: the same 256-256 network without dropout at lr 0.0001 … 0.1. Each setting is trained "
            "twice: on the real labels (training and test accuracy; training accuracy in eval mode over the "
            "subset) and on the same images with *random labels*, where nothing generalises and the training "
            "accuracy reached measures how much the model can memorise — its capacity (chance: 0.1). *Loss "
            "wiggle*: the standard deviation of the real-label training loss over the last 5 epochs.\n\n",
            (long long)tr.n, epochs);
    fputs("| varied | setting | capacity: random-label train accuracy | train accuracy | test accuracy | gap | "
          "loss wiggle |\n|---|---|---|---|---|---|---|\n",
          s->md);
    lab_csv csv;
    if (lab_csv_open(s, &csv, "capacity", "varied,setting,random_label_train_acc,train_acc,test_acc,final_loss,loss_wiggle"))
        return -1;
    static const char *const what[3] = {"depth (hidden layers)", "dropout p", "learning rate"};
    static const char *const key[3] = {"depth", "dropout", "lr"};
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < (g == 1 ? 3 : 4); i++) {
            const mlp_run *r = &runs[g][i];
            double setting = g == 0 ? depths[i] : g == 1 ? drops[i] : lrs[i];
            fprintf(s->md, "| %s | %g | %.4f | %.4f | %.4f | %.4f | %.4f |\n", what[g], setting, mem[g][i],
                    r->train_acc, r->test_acc, r->train_acc - r->test_acc, r->wiggle);
            lab_csv_row(&csv, key[g], (double[]){setting, mem[g][i], r->train_acc, r->test_acc, r->final_loss, r->wiggle},
                        6);
        }
    if (lab_csv_close(s, &csv)) return -1;

    static const char *const titles[3] = {"depth (32 units per hidden layer)", "dropout (256-256)",
                                          "learning rate (256-256, Adam)"};
    static const char *const xl[3] = {"hidden layers", "dropout p", "learning rate (log)"};
    for (int g = 0; g < 3; g++) {
        nb_plot *p = lab_plot_new(titles[g], xl[g], "accuracy");
        if (!p) return -1;
        int n = g == 1 ? 3 : 4;
        double x[4], ym[4], ytr[4], yte[4];
        for (int i = 0; i < n; i++) {
            x[i] = g == 0 ? depths[i] : g == 1 ? drops[i] : lrs[i];
            ym[i] = mem[g][i], ytr[i] = runs[g][i].train_acc, yte[i] = runs[g][i].test_acc;
        }
        if (g == 2) nb_plot_scale(p, NB_PLOT_LOG, NB_PLOT_LINEAR);
        nb_plot_line_points(p, "capacity: random-label train accuracy", x, ym, n);
        nb_plot_line_points(p, "train accuracy", x, ytr, n);
        nb_plot_line_points(p, "test accuracy", x, yte, n);
        char caption[160];
        snprintf(caption, sizeof caption, "Capacity (random labels), training and test accuracy against %s.", xl[g]);
        if (lab_plot_save(s, p, key[g], caption)) return -1;
    }

    int depth_adds = mem[0][3] >= mem[0][0] + 0.01;
    int dropout_removes = mem[1][2] <= mem[1][0] - 0.01;
    int best_lr = 0;
    for (int i = 1; i < 4; i++)
        if (mem[2][i] > mem[2][best_lr]) best_lr = i;
    int lr_not_capacity = best_lr != 3;
    int held = depth_adds + dropout_removes + lr_not_capacity;
    const char *rule = "Rule (capacity = random-label training accuracy): depth adds capacity when 4 hidden layers "
                       "memorise at least 0.01 more than 1; dropout removes capacity when p = 0.6 memorises at "
                       "least 0.01 less than p = 0; the learning rate does not add capacity when the largest "
                       "learning rate is not the one that memorises most (more step size is not more capacity). "
                       "Confirmed when all three hold, refuted when none does, depends otherwise.";
    lab_verdict_set(s, held == 3 ? LAB_CONFIRMED : held == 0 ? LAB_REFUTED : LAB_DEPENDS,
                    "%s Measured: depth %s (%.4f with 1 hidden layer, %.4f with 4; real-label test accuracy %.4f "
                    "and %.4f); dropout %s (%.4f at p = 0, %.4f at p = 0.6); the learning rate %s (most memorised "
                    "%.4f at lr %g; at lr 0.1: %.4f, and the real-label training loss ends at %.4f against %.4f at lr "
                    "0.001).",
                    rule, depth_adds ? "adds capacity" : "does not add capacity here", mem[0][0], mem[0][3],
                    runs[0][0].test_acc, runs[0][3].test_acc,
                    dropout_removes ? "removes capacity" : "does not remove capacity here", mem[1][0], mem[1][2],
                    lr_not_capacity ? "does not add capacity" : "adds capacity here", mem[2][best_lr], lrs[best_lr],
                    mem[2][3], runs[2][3].final_loss, runs[2][1].final_loss);
    return 0;
}

const lab_claim lab_claim_capacity = {
    11, "capacity", "Depth adds capacity, dropout removes it, the learning rate does not add it", "§9",
    "§9 「增加隐藏层数，加深网络，但可能会增加过拟合风险或训练难度」\n"
    "§9 「Dropout是一项正则化技术，用来降低模型能力的，防止过拟合」\n"
    "§9 「学习率是参数更新的步长，影响收敛速度和稳定性，影响训练效果，不直接增加模型能力，学习率过大会导致损失函数难以稳定在最优值。」",
    "More hidden layers increase a model's capacity (at some risk of overfitting or harder training); dropout "
    "reduces capacity; the learning rate changes speed and stability but does not add capacity, and a too-large "
    "one keeps the loss from settling.",
    NULL, NULL, run_capacity,
};
