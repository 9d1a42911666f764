/* Claims 8 and 10: a CNN against a fully connected network (§5), and the
 * receptive field of the notes' formula against the one measured by
 * back-propagation (§8). */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t trainable(const nb_model *m)
{
    int64_t n = 0;
    for (int k = 0; k < m->nparams; k++)
        if (!m->params[k].buffer) n += nb_tensor_numel(&m->params[k].t);
    return n;
}

/* ---- claim 8: CNN against fully connected ----------------------------------------- */

typedef struct net_run {
    const char    *name;
    int64_t        params;
    double         train_acc, test_acc;
    lab_fit_result fit;
} net_run;

static int run_cnn(lab_section *s)
{
    lab *L = s->L;
    const nb_dataset *train, *test;
    if (lab_data(L, &train, &test)) return -1;
    nb_dataset tr = lab_subset(train, L->quick ? 2000 : 10000), te = lab_subset(test, L->quick ? 2000 : 10000);
    int epochs = L->quick ? 3 : 15;
    int64_t per_epoch = (tr.n + 63) / 64;
    net_run runs[2] = {{.name = "mlp"}, {.name = "cnn"}};
    for (int i = 0; i < 2; i++) {
        nb_rng rng;
        nb_rng_seed(&rng, L->seed);
        nb_model *m = NULL;
        if (nb_model_build(runs[i].name, NULL, &rng, &m)) return cli_lib_error(), -1;
        runs[i].params = trainable(m);
        lab_fit_opts fo = {.optim = lab_optim(NB_OPTIM_ADAM, 1e-3), .batch = 64, .steps = epochs * per_epoch,
                           .seed = L->seed, .log_every = (int)per_epoch};
        double loss;
        int rc = lab_fit(m, &tr, &fo, &runs[i].fit);
        if (!rc) rc = lab_eval(m, &tr, &loss, &runs[i].train_acc);
        if (!rc) rc = lab_eval(m, &te, &loss, &runs[i].test_acc);
        nb_model_free(m);
        if (rc) {
            lab_fit_result_free(&runs[0].fit), lab_fit_result_free(&runs[1].fit);
            return -1;
        }
    }
    /* Layer for layer: each conv of the notes' CNN against a Linear layer
     * mapping the same input values to the same output values. */
    static const struct { const char *what; int cin, cout, k, hw; } convs[] = {
        {"conv 1 (1→32, 3×3, 28×28)", 1, 32, 3, 28},
        {"conv 2 (32→64, 3×3, 14×14)", 32, 64, 3, 14},
    };
    fprintf(s->md,
            "\n**Experiment.** The zoo's `mlp` (784-256-128-100-10, ReLU) and the notes' CNN, the zoo's `cnn` "
            "(conv 3×3 32 → BN → ReLU → max-pool → conv 3×3 64 → BN → ReLU → max-pool → Linear 3136→128 → ReLU → "
            "Dropout 0.3 → Linear 128→10), trained alike from the same seed: Adam lr 0.001, batch 64, %d epochs on "
            "the first %lld training images (a small set, so overfitting shows), tested on %lld. Training accuracy "
            "is measured in eval mode over the training subset. *Gap* = training − test accuracy. Complexity is "
            "counted in trainable parameters, for the whole models and layer for layer: each convolution against "
            "the fully connected layer that maps the same input values to the same output values.\n\n",
            epochs, (long long)tr.n, (long long)te.n);
    fputs("| model | parameters | train accuracy | test accuracy | gap | final train loss | seconds |\n"
          "|---|---|---|---|---|---|---|\n",
          s->md);
    for (int i = 0; i < 2; i++)
        fprintf(s->md, "| %s | %lld | %.4f | %.4f | %.4f | %.4f | %.1f |\n", runs[i].name, (long long)runs[i].params,
                runs[i].train_acc, runs[i].test_acc, runs[i].train_acc - runs[i].test_acc, runs[i].fit.last_loss,
                runs[i].fit.seconds);
    fputs("\n| layer | conv parameters | fully connected parameters (same inputs and outputs) | ratio |\n"
          "|---|---|---|---|\n",
          s->md);
    double worst_ratio = INFINITY;
    for (int i = 0; i < 2; i++) {
        double conv = (double)convs[i].cout * convs[i].cin * convs[i].k * convs[i].k + convs[i].cout;
        double in = (double)convs[i].cin * convs[i].hw * convs[i].hw, out = (double)convs[i].cout * convs[i].hw * convs[i].hw;
        double fc = in * out + out;
        worst_ratio = fmin(worst_ratio, fc / conv);
        fprintf(s->md, "| %s | %.0f | %.0f | %.0f× |\n", convs[i].what, conv, fc, fc / conv);
    }
    lab_csv csv;
    if (lab_csv_open(s, &csv, "models", "model,params,train_acc,test_acc,gap,final_loss,seconds")) goto fail;
    for (int i = 0; i < 2; i++)
        lab_csv_row(&csv, runs[i].name,
                    (double[]){(double)runs[i].params, runs[i].train_acc, runs[i].test_acc,
                               runs[i].train_acc - runs[i].test_acc, runs[i].fit.last_loss, runs[i].fit.seconds},
                    6);
    if (lab_csv_close(s, &csv)) goto fail;
    nb_plot *p = lab_plot_new("training loss per epoch", "epoch", "mean training loss");
    if (!p) goto fail;
    for (int i = 0; i < 2; i++) {
        double x[256];
        int n = runs[i].fit.ncurve < 256 ? runs[i].fit.ncurve : 256;
        for (int k = 0; k < n; k++) x[k] = k + 1;
        nb_plot_line_points(p, runs[i].name, x, runs[i].fit.curve, n);
    }
    if (lab_plot_save(s, p, "loss", "Mean training loss per epoch of the two models.")) goto fail;

    double gap_mlp = runs[0].train_acc - runs[0].test_acc, gap_cnn = runs[1].train_acc - runs[1].test_acc;
    int fewer = runs[1].params < runs[0].params, less_overfit = gap_cnn <= gap_mlp - 0.005;
    const char *rule = "Rule: \"lower complexity\" holds layer for layer when each convolution needs fewer "
                       "parameters than the fully connected layer it replaces, and for the whole model when the "
                       "CNN has fewer parameters than the MLP; \"less overfitting\" when the CNN's gap is at least "
                       "0.005 smaller. Confirmed when all hold; depends when less overfitting holds but the whole "
                       "CNN is not smaller; refuted when the CNN does not overfit less.";
    lab_verdict v = !less_overfit ? LAB_REFUTED : fewer && worst_ratio > 1 ? LAB_CONFIRMED : LAB_DEPENDS;
    lab_verdict_set(s, v,
                    "%s Measured: each convolution needs at least %.0f× fewer parameters than its fully connected "
                    "counterpart; whole models: cnn %lld against mlp %lld parameters%s; gap cnn %.4f against mlp "
                    "%.4f (test accuracy %.4f against %.4f).",
                    rule, worst_ratio, (long long)runs[1].params, (long long)runs[0].params,
                    fewer ? "" : " (the CNN's Linear 3136→128 head alone has 401,536: the saving is in the "
                                 "convolutions, not the whole model)",
                    gap_cnn, gap_mlp, runs[1].test_acc, runs[0].test_acc);
    lab_fit_result_free(&runs[0].fit), lab_fit_result_free(&runs[1].fit);
    return 0;
fail:
    lab_fit_result_free(&runs[0].fit), lab_fit_result_free(&runs[1].fit);
    return -1;
}

const lab_claim lab_claim_cnn = {
    8, "cnn", "A CNN is less complex and overfits less than a fully connected net", "§5",
    "§5 「CNN（卷积神经网络）通过卷积和池化层提取局部特征，全连接网络（FCN）则每个神经元与上一层全部连接。CNN的结构确实降低复杂度并缓解过拟合」",
    "A CNN extracts local features with convolutions and pooling, while each neuron of a fully connected network "
    "connects to every unit of the previous layer; the CNN's structure lowers complexity and reduces overfitting.",
    NULL, NULL, run_cnn,
};

/* ---- claim 10: receptive field --------------------------------------------------------- */

enum { RF_MAX_ROWS = 64, RF_MAX_DEPTH = 8 };

/* One row: a layer with a 4-D output, in forward order. */
typedef struct rf_row {
    char    name[64], kind[32];
    int64_t notes_r, notes_j;     /* the notes' recurrence applied to the layer's kernel and stride */
    int64_t nabla_r, nabla_j;     /* nb_model_summary's */
    int64_t expect, measured;     /* the centre unit's field clipped to the image; by back-propagation (-1: not run) */
} rf_row;

typedef struct rf_walk {
    nb_model           *m;
    const nb_layer_info *info;
    int                 ninfo, hw, c, measure;
    int64_t             r, j;     /* the notes' r_in, j_in so far */
    nb_module          *stack[RF_MAX_DEPTH];
    int                 index[RF_MAX_DEPTH], depth;
    rf_row             *rows;
    int                 nrows, rc;
} rf_walk;

static const nb_layer_info *info_named(const rf_walk *w, const char *name)
{
    for (int i = 0; i < w->ninfo; i++)
        if (!strcmp(w->info[i].name, name)) return &w->info[i];
    return NULL;
}

/* Measure the field of the centre unit of the layer at the current path by
 * cutting every container on the path after it. */
static int64_t measure_here(rf_walk *w, int64_t oh)
{
    int saved[RF_MAX_DEPTH];
    for (int d = 0; d < w->depth; d++) saved[d] = w->stack[d]->nchildren, w->stack[d]->nchildren = w->index[d] + 1;
    int64_t shape[3] = {w->c, w->hw, w->hw}, rh = -1, rw = -1;
    nb_status st = nb_receptive_field_empirical(w->m, 3, shape, (int)(oh / 2), (int)(oh / 2), &rh, &rw);
    for (int d = 0; d < w->depth; d++) w->stack[d]->nchildren = saved[d];
    if (st) w->rc = -1, cli_lib_error();
    return rh;
}

/* Depth-first over the modules in child order (the forward order of these
 * models), applying the notes' recurrence at each layer with a footprint. */
static void walk(rf_walk *w, nb_module *mod, const char *path)
{
    if (w->rc) return;
    if (mod->nchildren) {
        if (w->depth == RF_MAX_DEPTH) return;
        w->stack[w->depth++] = mod;
        for (int i = 0; i < mod->nchildren && !w->rc; i++) {
            char child[64];
            snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", mod->child_names[i]);
            w->index[w->depth - 1] = i;
            walk(w, mod->children[i], child);
        }
        w->depth--;
        return;
    }
    nb_layer_geometry g = {0};
    if (mod->vt->geometry && mod->vt->geometry(mod, &g) == 1) {
        int k = g.dilation[0] > 1 ? g.dilation[0] * (g.kernel[0] - 1) + 1 : g.kernel[0];
        w->r = w->r + (int64_t)(k - 1) * w->j; /* r_out = r_in + (k - 1) j_in */
        w->j = w->j * (g.stride[0] ? g.stride[0] : 1); /* j_out = j_in s */
    }
    const nb_layer_info *li = info_named(w, path);
    if (!li || li->ndim != 4 || !li->has_rf || w->nrows == RF_MAX_ROWS) return;
    rf_row *row = &w->rows[w->nrows++];
    snprintf(row->name, sizeof row->name, "%s", path);
    snprintf(row->kind, sizeof row->kind, "%s", li->kind);
    row->notes_r = w->r, row->notes_j = w->j;
    row->nabla_r = li->rf[0], row->nabla_j = li->jump[0];
    int64_t oh = li->out_shape[2];
    double centre = li->start[0] + (double)(oh / 2) * (double)li->jump[0];
    double lo = fmax(0, centre - (double)(li->rf[0] - 1) / 2), hi = fmin(w->hw - 1, centre + (double)(li->rf[0] - 1) / 2);
    row->expect = (int64_t)(hi - lo + 1);
    row->measured = w->measure ? measure_here(w, oh) : -1;
}

/* The rows of model `name` built with `config` for c x hw x hw inputs. */
static int rf_model(lab *L, const char *name, const char *config, int c, int hw, int measure, rf_row *rows,
                    int *nrows)
{
    nb_rng rng;
    nb_rng_seed(&rng, L->seed);
    nb_model *m = NULL;
    if (nb_model_build(name, config, &rng, &m)) return cli_lib_error(), -1;
    int64_t shape[3] = {c, hw, hw};
    nb_layer_info *info = NULL;
    int n = 0;
    if (nb_model_summary(m, 3, shape, &info, &n)) return nb_model_free(m), cli_lib_error(), -1;
    rf_walk w = {.m = m, .info = info, .ninfo = n, .hw = hw, .c = c, .measure = measure, .r = 1, .j = 1, .rows = rows};
    walk(&w, m->root, "");
    *nrows = w.nrows;
    free(info);
    nb_model_free(m);
    return w.rc;
}

static int run_receptive_field(lab_section *s)
{
    lab *L = s->L;
    int have_vgg = nb_model_default_config("vgg11") != NULL;
    /* VGG11 with its channels scaled down: the field depends only on kernels,
     * strides and paddings, and the measurement gets cheap. */
    const char *vgg_config = L->quick ? "in=1,size=64,classes=10,width=0.0625,hidden=8"
                                      : "in=3,size=224,classes=10,width=0.125,hidden=16";
    int vgg_hw = L->quick ? 64 : 224;
    rf_row rows[2][RF_MAX_ROWS];
    int nrows[2] = {0, 0};
    if (rf_model(L, "cnn", NULL, 1, 28, 1, rows[0], &nrows[0])) return -1;
    if (have_vgg && rf_model(L, "vgg11", vgg_config, L->quick ? 1 : 3, vgg_hw, 1, rows[1], &nrows[1])) return -1;
    fprintf(s->md,
            "\n**Experiment.** For every layer with an image-shaped output, three receptive fields (along the "
            "height; these models are square): *notes* — the notes' recurrence r_out = r_in + (k − 1)·j_in, "
            "j_out = j_in·s applied here to each layer's kernel and stride, from r = j = 1 at the input; *nabla* — "
            "`nb_model_summary`'s analytic field; *measured* — `nb_receptive_field_empirical`: the model cut after "
            "that layer, back-propagation from the centre output unit, and the extent of the input pixels whose "
            "gradient is non-zero (all weights positive for the pass, max pooling as average pooling, so nothing "
            "cancels). A field larger than the image is clipped at its border, so the measurement is compared "
            "with the analytic field of that unit clipped the same way (*expected*). Models: the notes' CNN (the "
            "zoo's `cnn`, 28×28)%s.\n\n",
            have_vgg ? (L->quick ? " and VGG11 (the zoo's `vgg11`, configuration A, at 64×64 with 1/16 of its "
                                   "channels: the field does not depend on the channel count)"
                                 : " and VGG11 (the zoo's `vgg11`, configuration A, at 224×224 with 1/8 of its "
                                   "channels: the field does not depend on the channel count)")
                     : "; VGG11 is not in this build's zoo");
    fputs("| model | layer | kind | notes r (j) | nabla r (j) | expected (clipped) | measured |\n"
          "|---|---|---|---|---|---|---|\n",
          s->md);
    lab_csv csv;
    if (lab_csv_open(s, &csv, "fields", "model,layer,notes_r,notes_j,nabla_r,nabla_j,expected,measured")) return -1;
    int rows_total = 0, agree = 0;
    char against[512] = "";
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nrows[k]; i++) {
            const rf_row *r = &rows[k][i];
            const char *model = k ? "vgg11" : "cnn";
            fprintf(s->md, "| %s | %s | %s | %lld (%lld) | %lld (%lld) | %lld | %lld |\n", model, r->name, r->kind,
                    (long long)r->notes_r, (long long)r->notes_j, (long long)r->nabla_r, (long long)r->nabla_j,
                    (long long)r->expect, (long long)r->measured);
            char key[128];
            snprintf(key, sizeof key, "%s,%.60s", model, r->name);
            lab_csv_row(&csv, key,
                        (double[]){(double)r->notes_r, (double)r->notes_j, (double)r->nabla_r, (double)r->nabla_j,
                                   (double)r->expect, (double)r->measured},
                        6);
            int ok = r->notes_r == r->nabla_r && r->notes_j == r->nabla_j && r->expect == r->measured;
            rows_total++, agree += ok;
            if (!ok && strlen(against) < sizeof against - 80) {
                size_t len = strlen(against);
                snprintf(against + len, sizeof against - len, "%s%s %.60s", len ? ", " : "", model, r->name);
            }
        }
    if (lab_csv_close(s, &csv)) return -1;
    for (int k = 0; k < (have_vgg ? 2 : 1); k++) {
        nb_plot *p = lab_plot_new(k ? "VGG11: receptive field per layer" : "notes' CNN: receptive field per layer",
                                  "layer (image-shaped outputs, in order)", "receptive field (input pixels)");
        if (!p) return -1;
        double x[RF_MAX_ROWS], notes[RF_MAX_ROWS], expect[RF_MAX_ROWS], meas[RF_MAX_ROWS];
        for (int i = 0; i < nrows[k]; i++)
            x[i] = i + 1, notes[i] = (double)rows[k][i].notes_r, expect[i] = (double)rows[k][i].expect,
            meas[i] = (double)rows[k][i].measured;
        nb_plot_line(p, "notes' formula (unclipped)", x, notes, nrows[k]);
        nb_plot_line(p, "expected, clipped to the image", x, expect, nrows[k]);
        nb_plot_line_points(p, "measured by back-propagation", x, meas, nrows[k]);
        nb_plot_hline(p, "image size", k ? vgg_hw : 28);
        if (lab_plot_save(s, p, k ? "vgg11" : "cnn",
                          k ? "VGG11: the notes' field, the clipped expectation and the measurement per layer."
                            : "The notes' CNN: the notes' field, the clipped expectation and the measurement per layer."))
            return -1;
    }
    const char *rule = "Rule: confirmed when, at every layer, the notes' recurrence gives the same field and jump "
                       "as nabla's analysis and the measured field equals the analytic one clipped to the image; "
                       "refuted otherwise (the layers that differ are named).";
    if (agree == rows_total && rows_total)
        lab_verdict_set(s, LAB_CONFIRMED, "%s Measured: %d of %d layers agree%s (largest field %lld pixels%s).", rule,
                        agree, rows_total, have_vgg ? " over both models" : "",
                        (long long)(have_vgg && nrows[1] ? rows[1][nrows[1] - 1].notes_r : rows[0][nrows[0] - 1].notes_r),
                        have_vgg ? " at VGG11's last pooling layer" : "");
    else
        lab_verdict_set(s, LAB_REFUTED, "%s Measured: %d of %d layers agree; differing: %s.", rule, agree, rows_total,
                        against);
    return 0;
}

const lab_claim lab_claim_receptive_field = {
    10, "receptive-field", "Receptive field: the notes' formula against measurement", "§8",
    "§8 「**感受野**：是指输入图像中，某个特定神经元在输出层所能“看到”的区域大小.」\n"
    "§8 「计算感受野：如果对一层，卷积核为k，步长为s，前一层感受野大小r_in,前一层步长为j_in，该层感受野大小和间隔的计算公式：$r_{out} =r_{in} +(k - 1) \\ j_{in}$     $j_{out} = j_{in} s$」",
    "The receptive field of a unit is the region of the input it can see; layer by layer r_out = r_in + (k − 1)·j_in "
    "and j_out = j_in·s.",
    NULL, NULL, run_receptive_field,
};
