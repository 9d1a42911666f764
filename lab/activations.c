/* Claims 1 and 2: an activation must be nonlinear (§1), and what the
 * activations of §11 compute: output range and derivative (§1, §3, §11). */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- claim 1: nonlinearity ---------------------------------------------------- */

/* Two concentric rings (radius 0.5 and 1.0, Gaussian noise 0.1), half of
 * each class: no straight line separates them. As a dataset of 1x1x2
 * "images" so the common loader and training loop take it. */
static int make_rings(nb_rng *r, int64_t n, nb_dataset *d)
{
    memset(d, 0, sizeof *d);
    d->x = malloc((size_t)n * 2 * sizeof *d->x);
    d->y = malloc((size_t)n * sizeof *d->y);
    if (!d->x || !d->y) return free(d->x), free(d->y), cli_fail("out of memory"), -1;
    d->n = n, d->c = 1, d->h = 1, d->w = 2, d->nclasses = 2;
    for (int64_t i = 0; i < n; i++) {
        int cls = (int)(i & 1);
        double angle = 2 * M_PI * nb_rng_uniform(r), radius = (cls ? 1.0 : 0.5) + 0.1 * nb_rng_normal(r);
        d->x[2 * i] = (float)(radius * cos(angle));
        d->x[2 * i + 1] = (float)(radius * sin(angle));
        d->y[i] = cls;
    }
    return 0;
}

/* The largest difference between the network without activations and the
 * single affine map x -> A x + c read off it (c = f(0), column i of A =
 * f(e_i) - f(0)), over the first `count` samples of d: a stack of Linear
 * layers is one Linear layer. */
static double collapse_error(nb_model *m, const nb_dataset *d, int count)
{
    int in = d->c * d->h * d->w;
    nb_ctx *ctx = nb_ctx_new(0);
    if (!ctx) return NAN;
    nb_set_grad_enabled(ctx, 0);
    nb_model_train(m, 0);
    /* rows: 0, e_1 .. e_in, then the samples */
    int rows = 1 + in + count;
    nb_tensor *x = nb_tensor_zeros(ctx, 2, (int64_t[]){rows, in});
    if (!x) return nb_ctx_free(ctx), NAN;
    for (int i = 0; i < in; i++) x->data[(int64_t)(1 + i) * in + i] = 1;
    memcpy(x->data + (int64_t)(1 + in) * in, d->x, (size_t)count * in * sizeof *x->data);
    nb_tensor *y = nb_model_forward(m, ctx, x);
    double worst = NAN;
    if (y) {
        int64_t k = y->shape[1];
        const float *c = y->data;
        worst = 0;
        for (int s = 0; s < count; s++) {
            const float *xs = d->x + (int64_t)s * in, *ys = y->data + (int64_t)(1 + in + s) * k;
            for (int64_t j = 0; j < k; j++) {
                double v = c[j];
                for (int i = 0; i < in; i++) v += (double)xs[i] * (y->data[(int64_t)(1 + i) * k + j] - c[j]);
                worst = fmax(worst, fabs(v - ys[j]));
            }
        }
    }
    nb_ctx_free(ctx);
    nb_model_train(m, 1);
    return worst;
}

typedef struct nl_run {
    const char *task;
    int nonlinear;
    double train_acc, test_acc, collapse;
    lab_fit_result fit;
} nl_run;

static int nl_train(lab *L, nl_run *r, const int *sizes, int nsizes, const nb_dataset *train,
                    const nb_dataset *test, const lab_fit_opts *fo)
{
    nb_rng rng;
    nb_rng_seed(&rng, L->seed);
    nb_model *m = lab_mlp(sizes, nsizes, r->nonlinear, 0, &rng);
    if (!m) return cli_lib_error(), -1;
    int rc = lab_fit(m, train, fo, &r->fit);
    double loss;
    if (!rc) rc = lab_eval(m, train, &loss, &r->train_acc);
    if (!rc) rc = lab_eval(m, test, &loss, &r->test_acc);
    r->collapse = r->nonlinear ? NAN : collapse_error(m, test, 200);
    nb_model_free(m);
    return rc;
}

static int run_nonlinearity(lab_section *s)
{
    lab *L = s->L;
    const nb_dataset *fm_train, *fm_test;
    if (lab_data(L, &fm_train, &fm_test)) return -1;
    nb_dataset rings_train, rings_test;
    nb_rng rng;
    nb_rng_seed(&rng, L->seed ^ 0x72696e6773ULL);
    if (make_rings(&rng, 2000, &rings_train)) return -1;
    if (make_rings(&rng, 2000, &rings_test)) return free(rings_train.x), free(rings_train.y), -1;
    nb_dataset ftrain = lab_subset(fm_train, L->quick ? 10000 : 60000);
    nb_dataset ftest = lab_subset(fm_test, L->quick ? 2000 : 10000);
    int64_t ring_steps = L->quick ? 600 : 3000, fm_steps = L->quick ? 400 : 2814; /* full: 3 epochs of 938 */
    static const int ring_sizes[] = {2, 32, 32, 2}, fm_sizes[] = {784, 256, 128, 10};
    nl_run runs[4] = {{.task = "rings"}, {.task = "rings", .nonlinear = 1}, {.task = "Fashion-MNIST"},
                      {.task = "Fashion-MNIST", .nonlinear = 1}};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        int rings = i < 2;
        lab_fit_opts fo = {.optim = lab_optim(NB_OPTIM_ADAM, rings ? 1e-2 : 1e-3), .batch = 64,
                           .steps = rings ? ring_steps : fm_steps, .seed = L->seed, .log_every = L->quick ? 20 : 50};
        rc = rings ? nl_train(L, &runs[i], ring_sizes, 4, &rings_train, &rings_test, &fo)
                   : nl_train(L, &runs[i], fm_sizes, 4, &ftrain, &ftest, &fo);
    }
    free(rings_train.x), free(rings_train.y), free(rings_test.x), free(rings_test.y);
    if (rc) goto done;

    fprintf(s->md,
            "\n**Experiment.** The same network with and without activations, trained the same way from the same "
            "seed. *Rings*: two concentric rings in the plane (radii 0.5 and 1.0, noise 0.1; 2,000 training and "
            "2,000 test points, not linearly separable), network 2-32-32-2, Adam lr 0.01, batch 64, %lld steps. "
            "*Fashion-MNIST*: network 784-256-128-10, Adam lr 0.001, batch 64, %lld steps on %lld training "
            "images, tested on %lld. \"With\" puts a ReLU after every hidden Linear layer; \"without\" stacks the "
            "Linear layers directly. For the networks without activations, *collapse error* is the largest "
            "difference, over 200 test inputs, between the network and the single affine map read off it "
            "(f(0) and f(e_i) − f(0)): a stack of linear layers is one linear layer.\n\n",
            (long long)ring_steps, (long long)fm_steps, (long long)ftrain.n, (long long)ftest.n);
    fputs("| task | activations | train accuracy | test accuracy | final train loss | collapse error |\n"
          "|---|---|---|---|---|---|\n",
          s->md);
    lab_csv csv;
    if ((rc = lab_csv_open(s, &csv, "accuracy", "task,activations,train_acc,test_acc,final_loss,collapse_error")))
        goto done;
    for (int i = 0; i < 4; i++) {
        nl_run *r = &runs[i];
        char key[64];
        snprintf(key, sizeof key, "%s,%s", r->task, r->nonlinear ? "relu" : "none");
        lab_csv_row(&csv, key, (double[]){r->train_acc, r->test_acc, r->fit.last_loss, r->collapse}, 4);
        fprintf(s->md, "| %s | %s | %.4f | %.4f | %.4f | ", r->task, r->nonlinear ? "ReLU" : "none", r->train_acc,
                r->test_acc, r->fit.last_loss);
        if (r->nonlinear) fputs("— |\n", s->md);
        else fprintf(s->md, "%.2g |\n", r->collapse);
    }
    if ((rc = lab_csv_close(s, &csv))) goto done;

    nb_plot *p = lab_plot_new("training loss with and without activations", "step", "mean training loss");
    if (!p) {
        rc = -1;
        goto done;
    }
    nb_plot_scale(p, NB_PLOT_LINEAR, NB_PLOT_LOG);
    for (int i = 0; i < 4; i++) {
        nl_run *r = &runs[i];
        int every = L->quick ? 20 : 50;
        double *x = malloc((size_t)r->fit.ncurve * sizeof *x);
        if (!x) break;
        for (int k = 0; k < r->fit.ncurve; k++) x[k] = (double)(k + 1) * every;
        char label[64];
        snprintf(label, sizeof label, "%s, %s", r->task, r->nonlinear ? "ReLU" : "no activation");
        nb_plot_line(p, label, x, r->fit.curve, r->fit.ncurve);
        free(x);
    }
    if ((rc = lab_plot_save(s, p, "loss", "Training loss of the four runs (log scale)."))) goto done;

    double ring_gain = runs[1].test_acc - runs[0].test_acc, fm_gain = runs[3].test_acc - runs[2].test_acc;
    const char *rule = "Rule: the activations are needed where a network with them beats the same network "
                       "without them by at least 0.10 test accuracy on the rings and 0.005 on Fashion-MNIST; "
                       "confirmed when both hold, depends when only the rings do, refuted when the rings do not.";
    if (ring_gain >= 0.10 && fm_gain >= 0.005)
        lab_verdict_set(s, LAB_CONFIRMED,
                        "%s Measured: +%.3f on the rings (%.3f against %.3f: without activations the network "
                        "is one linear map, collapse error %.1g, and cannot separate the rings), +%.3f on "
                        "Fashion-MNIST.",
                        rule, ring_gain, runs[1].test_acc, runs[0].test_acc, runs[0].collapse, fm_gain);
    else if (ring_gain >= 0.10)
        lab_verdict_set(s, LAB_DEPENDS,
                        "%s Measured: +%.3f on the rings but %+.3f on Fashion-MNIST: the nonlinearity matters "
                        "where the classes are not linearly separable.",
                        rule, ring_gain, fm_gain);
    else
        lab_verdict_set(s, LAB_REFUTED, "%s Measured: %+.3f on the rings, %+.3f on Fashion-MNIST.", rule, ring_gain,
                        fm_gain);
done:
    for (int i = 0; i < 4; i++) lab_fit_result_free(&runs[i].fit);
    return rc;
}

const lab_claim lab_claim_nonlinearity = {
    1, "nonlinearity", "An activation must be nonlinear", "§1",
    "§1 「一种非线性的数学函数，能够让网络学习复杂的非线性模式，解决线性模型无法处理的问题」",
    "An activation function is a nonlinear function; it lets a network learn nonlinear patterns and solve "
    "problems a linear model cannot.",
    NULL, NULL, run_nonlinearity,
};

/* ---- claim 2: the activations, measured --------------------------------------- */

enum { ACT_SIGMOID, ACT_TANH, ACT_RELU, ACT_LEAKY, ACT_SOFTMAX, NACT };
static const char *const act_name[NACT] = {"sigmoid", "tanh", "ReLU", "Leaky ReLU (a = 0.01)", "softmax"};
#define LEAKY_SLOPE 0.01f

/* The notes' formulas (§11) in double precision: the value and its
 * derivative. Softmax is taken over z = (x, 1, -1) and its first component
 * s_0 is plotted, d s_0 / dx = s_0 (1 - s_0). */
static double formula(int a, double x, double *deriv)
{
    switch (a) {
    case ACT_SIGMOID: {
        double y = 1 / (1 + exp(-x));
        *deriv = y * (1 - y);
        return y;
    }
    case ACT_TANH: {
        double y = (exp(x) - exp(-x)) / (exp(x) + exp(-x));
        *deriv = 1 - y * y;
        return y;
    }
    case ACT_RELU: *deriv = x > 0; return fmax(0, x);
    case ACT_LEAKY: *deriv = x > 0 ? 1 : LEAKY_SLOPE; return fmax(LEAKY_SLOPE * x, x);
    default: {
        double y = exp(x) / (exp(x) + exp(1) + exp(-1));
        *deriv = y * (1 - y);
        return y;
    }
    }
}

typedef struct act_stats {
    double ymin, ymax, dmax, dmax_at, dmin, value_err, deriv_err, sum_err;
} act_stats;

/* Values and derivatives of activation a at the n points x (autograd:
 * backward of the sum), into y and dy. */
static int act_eval(int a, const double *x, int n, double *y, double *dy, double *sum_err)
{
    nb_ctx *ctx = nb_ctx_new(0);
    if (!ctx) return cli_lib_error(), -1;
    int cols = a == ACT_SOFTMAX ? 3 : 1;
    nb_tensor *in = nb_tensor_zeros(ctx, 2, (int64_t[]){n, cols});
    if (!in) return nb_ctx_free(ctx), cli_lib_error(), -1;
    for (int i = 0; i < n; i++) {
        in->data[i * cols] = (float)x[i];
        if (cols == 3) in->data[i * 3 + 1] = 1, in->data[i * 3 + 2] = -1;
    }
    nb_requires_grad(in, 1);
    nb_tensor *out = a == ACT_SIGMOID ? nb_sigmoid(ctx, in)
                     : a == ACT_TANH  ? nb_tanh(ctx, in)
                     : a == ACT_RELU  ? nb_relu(ctx, in)
                     : a == ACT_LEAKY ? nb_leaky_relu(ctx, in, LEAKY_SLOPE)
                                      : nb_softmax(ctx, in, 1);
    nb_tensor *first = nb_slice(ctx, out, 1, 0, 1, 1);
    nb_tensor *total = nb_sum(ctx, first, NULL, 0, 0);
    if (!total || nb_backward(ctx, total)) return nb_ctx_free(ctx), cli_lib_error(), -1;
    *sum_err = 0;
    for (int i = 0; i < n; i++) {
        y[i] = out->data[i * cols];
        dy[i] = in->grad[i * cols];
        if (cols == 3)
            *sum_err = fmax(*sum_err, fabs((double)out->data[i * 3] + out->data[i * 3 + 1] + out->data[i * 3 + 2] - 1));
    }
    nb_ctx_free(ctx);
    return 0;
}

static int run_activations(lab_section *s)
{
    enum { N = 321 };                       /* x = -8 .. 8 in steps of 0.05 */
    double x[N], y[NACT][N], dy[NACT][N];
    act_stats st[NACT];
    for (int i = 0; i < N; i++) x[i] = -8 + 0.05 * i;
    for (int a = 0; a < NACT; a++) {
        act_stats *t = &st[a];
        if (act_eval(a, x, N, y[a], dy[a], &t->sum_err)) return -1;
        t->ymin = t->dmin = INFINITY, t->ymax = t->dmax = -INFINITY;
        t->value_err = t->deriv_err = 0;
        for (int i = 0; i < N; i++) {
            double d, v = formula(a, x[i], &d);
            t->ymin = fmin(t->ymin, y[a][i]), t->ymax = fmax(t->ymax, y[a][i]);
            if (dy[a][i] > t->dmax) t->dmax = dy[a][i], t->dmax_at = x[i];
            t->dmin = fmin(t->dmin, dy[a][i]);
            t->value_err = fmax(t->value_err, fabs(v - y[a][i]));
            if (fabs(x[i]) > 1e-9) t->deriv_err = fmax(t->deriv_err, fabs(d - dy[a][i])); /* kink of ReLU at 0 */
        }
    }
    fprintf(s->md,
            "\n**Experiment.** Each activation of nabla (`nb_sigmoid`, `nb_tanh`, `nb_relu`, `nb_leaky_relu` with "
            "torch's slope 0.01, `nb_softmax`) evaluated at %d points x = −8 … 8 (step 0.05); the derivative is "
            "measured by autograd (backward of the sum), not by the formula. Softmax is a function of a vector: "
            "it is taken over z = (x, 1, −1) and its first component is shown. *Value error* and *derivative "
            "error* are the largest differences from the notes' formulas (§11) evaluated in double precision "
            "(ReLU's kink at 0 excluded).\n\n",
            N);
    fputs("| activation | smallest output | largest output | largest derivative (at x) | smallest derivative | "
          "value error | derivative error |\n|---|---|---|---|---|---|---|\n",
          s->md);
    for (int a = 0; a < NACT; a++)
        fprintf(s->md, "| %s | %.6g | %.6g | %.6g (%.2f) | %.6g | %.1e | %.1e |\n", act_name[a], st[a].ymin,
                st[a].ymax, st[a].dmax, st[a].dmax_at, st[a].dmin, st[a].value_err, st[a].deriv_err);
    fprintf(s->md, "\nSoftmax over each z sums to 1 within %.1e.\n", st[ACT_SOFTMAX].sum_err);
    lab_csv csv;
    if (lab_csv_open(s, &csv, "curves", "x,sigmoid,tanh,relu,leaky_relu,softmax0,d_sigmoid,d_tanh,d_relu,"
                                        "d_leaky_relu,d_softmax0"))
        return -1;
    for (int i = 0; i < N; i++) {
        double row[2 * NACT + 1] = {x[i]};
        for (int a = 0; a < NACT; a++) row[1 + a] = y[a][i], row[1 + NACT + a] = dy[a][i];
        lab_csv_row(&csv, NULL, row, 2 * NACT + 1);
    }
    if (lab_csv_close(s, &csv)) return -1;

    for (int k = 0; k < 2; k++) {
        nb_plot *p = lab_plot_new(k ? "derivatives (measured by autograd)" : "activations", "x",
                                  k ? "derivative" : "output");
        if (!p) return -1;
        for (int a = 0; a < NACT; a++) nb_plot_line(p, act_name[a], x, k ? dy[a] : y[a], N);
        if (k) nb_plot_hline(p, "0.25: the largest derivative of sigmoid", 0.25);
        else nb_plot_ylim(p, -1.5, 3);
        if (lab_plot_save(s, p, k ? "derivatives" : "functions",
                          k ? "Derivatives; sigmoid's never exceeds 0.25 (dashed line)."
                            : "Outputs over x = -8 ... 8 (ReLU and Leaky ReLU cut at 3)."))
            return -1;
    }

    /* the checks: ranges as the notes state them, sigmoid' <= 0.25 at 0, formulas */
    int range_ok = st[ACT_SIGMOID].ymin > 0 && st[ACT_SIGMOID].ymax < 1 && st[ACT_TANH].ymin > -1 &&
                   st[ACT_TANH].ymax < 1 && st[ACT_RELU].ymin == 0 && st[ACT_LEAKY].ymin < 0 &&
                   st[ACT_SOFTMAX].ymin > 0 && st[ACT_SOFTMAX].ymax < 1;
    int sig_ok = fabs(st[ACT_SIGMOID].dmax - 0.25) < 1e-6 && fabs(st[ACT_SIGMOID].dmax_at) < 1e-9;
    double worst = 0;
    for (int a = 0; a < NACT; a++) worst = fmax(worst, fmax(st[a].value_err, st[a].deriv_err));
    int formula_ok = worst < 1e-5 && st[ACT_SOFTMAX].sum_err < 1e-6;
    const char *rule = "Rule: confirmed when the measured outputs stay in the ranges the notes give (sigmoid in "
                       "(0,1), tanh in (−1,1), ReLU ≥ 0, softmax in (0,1) summing to 1), the largest derivative of "
                       "sigmoid is 0.25 at x = 0 (within 1e-6) so sigmoid' < 1 everywhere, and nabla matches the "
                       "notes' formulas within 1e-5; refuted otherwise.";
    if (range_ok && sig_ok && formula_ok)
        lab_verdict_set(s, LAB_CONFIRMED,
                        "%s Measured: sigmoid' at most %.6f (x = %.2f), largest formula difference %.1e.", rule,
                        st[ACT_SIGMOID].dmax, st[ACT_SIGMOID].dmax_at, worst);
    else
        lab_verdict_set(s, LAB_REFUTED, "%s Measured: ranges %s, sigmoid' max %.6f at %.2f, formula difference %.1e.",
                        rule, range_ok ? "as stated" : "NOT as stated", st[ACT_SIGMOID].dmax, st[ACT_SIGMOID].dmax_at,
                        worst);
    return 0;
}

const lab_claim lab_claim_activations = {
    2, "activations", "The activations: output range and derivative", "§1, §3, §11",
    "§11 「Sigmoid函数 $f(x) = \\frac{1}{1 + e^{-x}}$」\n"
    "§11 「Tanh激活函数$f(x) = \\frac{e^x - e^{-x}}{e^x + e^{-x}}$」\n"
    "§11 「Relu函数 relu(x) = max(0, x)」\n"
    "§11 「Leaky ReLU f(x) = max(ax, x)」\n"
    "§11 「softmax(x) $f(x) = \\frac{e^{z_i}}{\\sum_{j=1}^{n} e^{z_j}}$」\n"
    "§3 「$f(x) =\\frac{1}{1+e^{-x}}$ 输出范围是(0,1)」\n"
    "§3 「（sigmoid的倒数<1 会造成梯度消失）」",
    "Sigmoid, tanh, ReLU, Leaky ReLU and softmax follow these formulas; sigmoid's output lies in (0, 1) and its "
    "derivative is below 1 (at most 0.25), which is why products of many of them vanish.",
    NULL, NULL, run_activations,
};
