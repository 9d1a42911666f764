/* nabla gan — train a GAN of the notes' family on Fashion-MNIST, with sample
 * grids, a loss chart, checkpoints and a classifier's scores every epoch;
 * or draw samples from a saved generator. */
#include "cli.h"
#include "nabla/gan.h"
#include "nabla/image.h"
#include "nabla/plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* How the scoring classifier is trained when --classifier is not given: the
 * CNN's own recipe (see load_classifier); one place for the help, the run
 * and its message. */
#define SCORER_EPOCHS "10"
#define SCORER_SEED "1"
#define SCORER_CMD "nabla train --model cnn --epochs " SCORER_EPOCHS " --seed " SCORER_SEED

const cli_cmd cli_gan_cmd = {
    "gan",
    "train a GAN (gan, dcgan, cgan, wgan, cyclegan) on Fashion-MNIST and score it",
    "--variant gan|dcgan|cgan|wgan|cyclegan --out DIR [--epochs N] [--batch B] [--lr LR]\n"
    "                 [--seed S] [--threads T] [--classifier W] [--max-steps N] [--minutes M] [options]\n"
    "       nabla gan --sample --weights DIR/generator.safetensors --out FILE.png [--class K] [--count N]",
    "Training writes into DIR after every epoch: samples_NNN.png (a grid of samples\n"
    "from the same noise each epoch; CGAN one row per class, or only class K with\n"
    "--class K; CycleGAN rows of input, translation and reconstruction, of domain A\n"
    "then of B), loss.png (discriminator and generator losses; WGAN's Wasserstein\n"
    "estimate), checkpoints with the optimizer state (generator.safetensors and\n"
    "discriminator.safetensors; CycleGAN generator_ab, generator_ba,\n"
    "discriminator_a, discriminator_b; with --ema also generator_ema.safetensors,\n"
    "the averaged weights that then make the samples and scores), and one JSON\n"
    "line per epoch in metrics.jsonl (with \"elapsed\", the seconds since training\n"
    "began).\n"
    "--max-steps N or --minutes M end training early; the last, partial epoch\n"
    "still writes its samples, checkpoints and scores.\n\n"
    "Scores come from a Fashion-MNIST classifier: --classifier W (weights of\n"
    "`nabla train --model cnn`), or else DIR/classifier.safetensors, trained first if\n"
    "absent with `" SCORER_CMD "` (same --threads). Each\n"
    "epoch: the Frechet distance between the classifier's penultimate features of\n"
    "--eval-samples test images and as many samples (CycleGAN: domain-B test images\n"
    "and translations of domain A), the classes it gives the samples, the fraction\n"
    "it labels with confidence >= 0.7 (beside it, \"real\": the same for those test\n"
    "images; metrics.jsonl also has their accuracy), CGAN's fraction classified as\n"
    "their conditioning class, CycleGAN's fraction of translated test images\n"
    "classified into the target domain and its mean cycle L1 (pixels in [0, 1]).\n"
    "A classifier is confident about some noise too (uniform noise: 82%), so the\n"
    "confident fraction means something only beside a low Frechet distance.\n\n"
    "Settings as the papers: Adam lr 2e-4, betas (0.5, 0.999); WGAN RMSprop lr 5e-5,\n"
    "5 critic steps per generator step, weights clipped at 0.01; CycleGAN least\n"
    "squares, cycle L1 weight 10, identity 5, pools of 50, sneakers (7) <-> ankle\n"
    "boots (9) unless --domains (e.g. 0:1 or 0,2,4:1,3). CGAN is a conditional\n"
    "DCGAN (the one-hot label joins G's noise and D's input as 10 planes). GAN and\n"
    "WGAN are MLPs.\n\n"
    "Faster to good samples than the paper's settings: a generator that learns\n"
    "twice as fast as the discriminator, averaged, e.g. `--variant dcgan --lr 4e-4\n"
    "--lr-d 2e-4 --ema 0.999` (see the README for what it reaches in 10 minutes).\n\n"
    "--sample draws --count samples from a saved generator into one PNG (a CGAN\n"
    "generator: one row per class, or class K only with --class K; a CycleGAN\n"
    "generator: the first test images of its source domain beside their\n"
    "translations).\n",
};

typedef struct {
    const char *variant, *out, *classifier, *data, *domains, *g_config, *d_config, *weights;
    int epochs, threads, quiet, cls, sample, count, eval_samples;
    int64_t batch, max_steps, limit_train;
    float lr, lr_d, real_label, ema, minutes;
    uint64_t seed;
} gan_args;

/* ---- small helpers ---------------------------------------------------------- */

static const char *join(const char *dir, const char *name)
{
    static char bufs[4][1024];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, sizeof bufs[0], "%s/%s", dir, name);
    return p;
}

/* "7:9", "0,2,4:1,3" -> two class masks; 0 on success. */
static int parse_domains(const char *s, unsigned *a, unsigned *b)
{
    unsigned m[2] = {0, 0};
    int side = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9') m[side] |= 1u << (*p - '0');
        else if (*p == ':' && side == 0) side = 1;
        else if (*p != ',') return -1;
    }
    if (side != 1 || !m[0] || !m[1] || (m[0] & m[1])) return -1;
    *a = m[0], *b = m[1];
    return 0;
}

/* A grid of n 28x28 images (values in [0, 1]) in cols columns, as a PNG. */
static int write_grid(const char *path, const float *images, int n, int cols)
{
    int w, h;
    if (nb_image_grid_size(n, 28, 28, cols, 2, 2, &w, &h) != NB_OK) return cli_lib_error();
    uint8_t *px = malloc((size_t)w * (size_t)h);
    if (!px) return cli_fail("out of memory");
    int bad = nb_image_grid(images, n, 28, 28, cols, 2, 2, 64, px) != NB_OK || nb_png_write_gray(path, w, h, px) != NB_OK;
    free(px);
    return bad ? cli_lib_error() : 0;
}

static void json_num(FILE *f, const char *key, double v)
{
    if (isfinite(v)) fprintf(f, ", \"%s\": %.6g", key, v);
    else fprintf(f, ", \"%s\": null", key);
}

/* ---- the scoring classifier ---------------------------------------------------
 * The zoo's CNN trained by `nabla train` itself, so the scores rest on a
 * checked, reproducible training step rather than on a shipped blob: the
 * CNN's own recipe (10 epochs, test accuracy 0.9255), not a shortened one (2
 * epochs reach 0.899, a judge less sure of real images too). */
static int load_classifier(const gan_args *a, nb_model **out)
{
    const char *path = a->classifier;
    struct stat st;
    if (!path) {
        path = join(a->out, "classifier.safetensors");
        if (stat(path, &st) != 0) {
            char threads[16];
            snprintf(threads, sizeof threads, "%d", a->threads);
            char *argv[] = {"train", "--model", "cnn", "--epochs", SCORER_EPOCHS, "--seed", SCORER_SEED, "--threads",
                            threads, "--data", (char *)a->data, "--out", (char *)path, "--quiet", NULL};
            if (!a->quiet) printf("training the scoring classifier: " SCORER_CMD " -> %s\n", path);
            fflush(stdout);
            if (cmd_train((int)(sizeof argv / sizeof argv[0]) - 1, argv) != CLI_OK)
                return cli_fail("training the scoring classifier failed");
        }
    }
    if (nb_model_load_file(path, out) != NB_OK) return cli_lib_error();
    if (strcmp((*out)->name, "cnn")) return cli_fail("--classifier %s: a model '%s', expected a cnn", path, (*out)->name);
    return 0;
}

/* ---- training -------------------------------------------------------------------- */

typedef struct {
    const gan_args *a;
    nb_gan *g;
    nb_model *cls;
    nb_dataset *train, *train_b, *test, *dom[2];  /* CycleGAN: train = domain A */
    nb_loader *l, *lb;
    nb_ctx *ctx;
    int64_t step;
    double t_start;   /* when training began, for --minutes and "elapsed" */
    /* per-step curves for loss.png */
    double *xs, *dl, *gl, *wd;
    int64_t ncurve, cap;
} run_state;

static int record(run_state *r, const nb_gan_losses *ls)
{
    if (r->ncurve == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 1024;
        double *p[4] = {r->xs, r->dl, r->gl, r->wd};
        for (int k = 0; k < 4; k++) {
            double *q = realloc(p[k], sizeof(double) * (size_t)cap);
            if (!q) return cli_fail("out of memory");
            p[k] = q;
        }
        r->xs = p[0], r->dl = p[1], r->gl = p[2], r->wd = p[3];
        r->cap = cap;
    }
    r->xs[r->ncurve] = (double)r->step;
    r->dl[r->ncurve] = ls->d_loss;
    r->gl[r->ncurve] = ls->g_updated ? ls->g_loss : NAN;
    r->wd[r->ncurve] = ls->wasserstein;
    r->ncurve++;
    return 0;
}

/* Mean of the finite values of v over windows of w points, so a long run
 * still draws a readable curve. */
static int64_t smooth(const double *x, const double *v, int64_t n, int64_t w, double *sx, double *sv)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i += w, m++) {
        double s = 0;
        int64_t c = 0;
        for (int64_t k = i; k < n && k < i + w; k++)
            if (isfinite(v[k])) s += v[k], c++;
        sx[m] = x[i];
        sv[m] = c ? s / (double)c : NAN;
    }
    return m;
}

static int write_loss_plot(const run_state *r)
{
    int64_t n = r->ncurve, w = n / 400 + 1, m = (n + w - 1) / w;
    double *sx = malloc(sizeof(double) * (size_t)(m + 1)), *sv = malloc(sizeof(double) * (size_t)(m + 1));
    nb_plot *p = nb_plot_new(800, 500);
    int rc = 0;
    if (!sx || !sv || !p) rc = cli_fail("out of memory");
    const char *names[3] = {r->g->opts.variant == NB_GAN_WGAN ? "critic loss" : "D loss", "G loss", "Wasserstein estimate"};
    const double *vals[3] = {r->dl, r->gl, r->wd};
    if (!rc) {
        char title[64];
        snprintf(title, sizeof title, "%s training losses", nb_gan_variant_name(r->g->opts.variant));
        nb_plot_title(p, title);
        nb_plot_labels(p, "step", "loss");
        for (int k = 0; k < (r->g->opts.variant == NB_GAN_WGAN ? 3 : 2) && !rc; k++) {
            int64_t mm = smooth(r->xs, vals[k], n, w, sx, sv);
            if (nb_plot_line(p, names[k], sx, sv, (int)mm) != NB_OK) rc = cli_lib_error();
        }
    }
    if (!rc && nb_plot_save(p, join(r->a->out, "loss.png")) != NB_OK) rc = cli_lib_error();
    nb_plot_free(p);
    free(sx);
    free(sv);
    return rc;
}

/* The epoch's picture: the same noise (a context seeded alike) every epoch. */
static int write_samples(run_state *r, int epoch)
{
    const gan_args *a = r->a;
    nb_gan *g = r->g;
    char name[64];
    snprintf(name, sizeof name, "samples_%03d.png", epoch);
    nb_ctx *ctx = nb_ctx_new(a->seed + 1000);
    float *img = malloc(sizeof(float) * 784 * 100);
    int32_t labels[100];
    int rc = !ctx || !img ? cli_fail("out of memory") : 0, n = 64, cols = 8;
    if (!rc && g->opts.variant == NB_GAN_CYCLEGAN) {
        /* each row: a domain-A image, its translation and reconstruction,
         * then the same for a domain-B image */
        n = 48, cols = 6;
        for (int d = 0; d < 2 && !rc; d++) {
            nb_model *fwd = d ? g->g2 : g->g, *back = d ? g->g : g->g2;
            for (int i = 0; i < 8; i++) memcpy(img + (size_t)(6 * i + 3 * d) * 784, r->dom[d]->x + (size_t)i * 784, 784 * sizeof(float));
            float trans[8 * 784], rec[8 * 784], in[8 * 784];
            memcpy(in, r->dom[d]->x, sizeof in);
            if (nb_gan_translate(fwd, ctx, in, 8, trans) != NB_OK || nb_gan_translate(back, ctx, trans, 8, rec) != NB_OK)
                rc = cli_lib_error();
            for (int i = 0; i < 8 && !rc; i++) {
                memcpy(img + (size_t)(6 * i + 3 * d + 1) * 784, trans + i * 784, 784 * sizeof(float));
                memcpy(img + (size_t)(6 * i + 3 * d + 2) * 784, rec + i * 784, 784 * sizeof(float));
            }
        }
    } else if (!rc) {
        if (g->opts.variant == NB_GAN_CGAN) n = 100, cols = 10;
        for (int i = 0; i < n; i++) labels[i] = a->cls >= 0 ? a->cls : i / 10;
        if (nb_gan_generate(nb_gan_sampler(g), ctx, n, labels, img) != NB_OK) rc = cli_lib_error();
    }
    if (!rc) rc = write_grid(join(a->out, name), img, n, cols);
    free(img);
    nb_ctx_free(ctx);
    return rc;
}

static int save_checkpoints(run_state *r, int epoch)
{
    nb_gan *g = r->g;
    int two = g->opts.variant == NB_GAN_CYCLEGAN;
    char ep[16], steps[24], dom[2][16];
    snprintf(ep, sizeof ep, "%d", epoch);
    snprintf(steps, sizeof steps, "%lld", (long long)r->step);
    snprintf(dom[0], sizeof dom[0], "%u", g->opts.domain_a);
    snprintf(dom[1], sizeof dom[1], "%u", g->opts.domain_b);
    struct { const char *file; nb_model *m; nb_optimizer *o; int src; } files[4] = {
        {two ? "generator_ab.safetensors" : "generator.safetensors", g->g, g->opt_g, 0},
        {two ? "discriminator_b.safetensors" : "discriminator.safetensors", g->d, g->opt_d, 1},
        {"generator_ba.safetensors", g->g2, g->opt_g2, 1},
        {"discriminator_a.safetensors", g->d2, g->opt_d2, 0},
    };
    for (int k = 0; k < (two ? 4 : 2); k++) {
        /* gan.source / gan.target: the class masks a CycleGAN generator maps
         * between (what --sample needs to pick its inputs) */
        const char *meta[] = {"gan.variant", nb_gan_variant_name(g->opts.variant), "gan.epoch", ep,
                              "gan.steps", steps, "gan.source", dom[files[k].src], "gan.target", dom[!files[k].src]};
        nb_checkpoint c = {files[k].m, files[k].o, NULL, NULL, NULL};
        if (!cli_all_finite(files[k].m->data, files[k].m->numel))
            return cli_fail("training diverged: non-finite weights after epoch %d; %s not written", epoch, files[k].file);
        if (nb_checkpoint_save(join(r->a->out, files[k].file), &c, meta, two ? 5 : 3) != NB_OK) return cli_lib_error();
    }
    /* the averaged generator: weights only, as it is never trained itself */
    if (g->g_ema && !cli_all_finite(g->g_ema->data, g->g_ema->numel))
        return cli_fail("training diverged: non-finite averaged weights after epoch %d", epoch);
    if (g->g_ema && nb_model_save(g->g_ema, join(r->a->out, "generator_ema.safetensors")) != NB_OK) return cli_lib_error();
    return 0;
}

/* Whether --minutes of training (scoring included) have passed. */
static int out_of_time(const run_state *r)
{
    return r->a->minutes > 0 && cli_now() - r->t_start >= 60.0 * r->a->minutes;
}

/* One pass over the data (CycleGAN: as many batch pairs as the smaller domain
 * gives); *stopped is set when --max-steps or --minutes ended it early. */
static int train_epoch(run_state *r, int epoch, double *d_mean, double *g_mean, double *w_mean, int *stopped)
{
    const gan_args *a = r->a;
    cli_progress bar;
    int64_t total = nb_loader_num_batches(r->l);
    if (r->lb && nb_loader_num_batches(r->lb) < total) total = nb_loader_num_batches(r->lb);
    cli_progress_start(&bar, epoch, a->epochs, total, a->quiet);
    double ds = 0, gs = 0, ws = 0, t0 = cli_now();
    int64_t done = 0, gn = 0;
    int rc = 0;
    nb_loader_start_epoch(r->l);
    if (r->lb) nb_loader_start_epoch(r->lb);
    *stopped = 0;
    for (;;) {
        if (a->max_steps > 0 && r->step >= a->max_steps) {
            *stopped = 1;
            break;
        }
        nb_ctx_reset(r->ctx);
        nb_batch b, bb = {0};
        if (nb_loader_next(r->l, r->ctx, &b) != NB_OK || (r->lb && nb_loader_next(r->lb, r->ctx, &bb) != NB_OK)) {
            rc = cli_lib_error();
            break;
        }
        if (!b.n || (r->lb && !bb.n)) break;
        nb_gan_losses ls;
        if (nb_gan_step(r->g, r->ctx, b.x, b.y, r->lb ? bb.x : NULL, &ls) != NB_OK) {
            rc = cli_lib_error();
            break;
        }
        if (!isfinite(ls.d_loss) || (ls.g_updated && !isfinite(ls.g_loss))) {
            rc = cli_fail("training diverged: a non-finite loss at step %lld", (long long)r->step + 1);
            break;
        }
        r->step++;
        done++;
        ds += ls.d_loss;
        if (ls.g_updated) gs += ls.g_loss, gn++;
        if (isfinite(ls.wasserstein)) ws += ls.wasserstein;
        if ((rc = record(r, &ls)) != 0) break;
        cli_progress_update(&bar, done, ds / (double)done, (double)(done * b.n) / (cli_now() - t0 + 1e-9));
        if (out_of_time(r)) {   /* checked after a step, so every epoch makes one */
            *stopped = 1;
            break;
        }
    }
    cli_progress_end(&bar);
    *d_mean = done ? ds / (double)done : NAN;
    *g_mean = gn ? gs / (double)gn : NAN;
    *w_mean = done && r->g->opts.variant == NB_GAN_WGAN ? ws / (double)done : NAN;
    return rc;
}

static int epoch_report(run_state *r, FILE *mf, int epoch, double d, double gl, double w, double secs)
{
    const gan_args *a = r->a;
    nb_gan_metrics m;
    nb_ctx *ectx = nb_ctx_new(a->seed + 2000);   /* the same noise every epoch */
    if (!ectx) return cli_fail("out of memory");
    nb_status s = nb_gan_evaluate(r->g, r->cls, ectx, r->test, a->eval_samples, &m);
    nb_ctx_free(ectx);
    if (s != NB_OK) return cli_lib_error();
    if (!a->quiet) {
        printf("epoch %d/%d  steps %lld  d_loss %.4f  g_loss %.4f  fd %.3f  confident %.3f (real %.3f)", epoch,
               a->epochs, (long long)r->step, d, gl, m.fd, m.confident, m.real_confident);
        if (isfinite(w)) printf("  wasserstein %.4f", w);
        if (isfinite(m.cond_acc)) printf("  class_acc %.3f", m.cond_acc);
        if (isfinite(m.target_rate)) printf("  target_rate %.3f  cycle_l1 %.4f", m.target_rate, m.cycle_l1);
        printf("  classes");
        for (int k = 0; k < 10; k++) printf(" %lld", (long long)m.hist[k]);
        printf("  (%.1f s, %.1f s in all)\n", secs, cli_now() - r->t_start);
        fflush(stdout);
    }
    fprintf(mf, "{\"epoch\": %d, \"steps\": %lld", epoch, (long long)r->step);
    json_num(mf, "d_loss", d);
    json_num(mf, "g_loss", gl);
    json_num(mf, "wasserstein", w);
    json_num(mf, "fd", m.fd);
    json_num(mf, "confident", m.confident);
    json_num(mf, "class_acc", m.cond_acc);
    json_num(mf, "target_rate", m.target_rate);
    json_num(mf, "cycle_l1", m.cycle_l1);
    json_num(mf, "real_confident", m.real_confident);
    json_num(mf, "real_acc", m.real_acc);
    fprintf(mf, ", \"samples\": %lld, \"class_hist\": [", (long long)m.n);
    for (int k = 0; k < 10; k++) fprintf(mf, "%s%lld", k ? ", " : "", (long long)m.hist[k]);
    fprintf(mf, "], \"seconds\": %.3f, \"elapsed\": %.3f}\n", secs, cli_now() - r->t_start);
    if (fflush(mf) != 0) return cli_fail("%s: %s", join(a->out, "metrics.jsonl"), strerror(errno));
    return 0;
}

static int setup_data(run_state *r)
{
    const gan_args *a = r->a;
    nb_gan *g = r->g;
    if (cli_load_fashion_mnist(a->data, 1, &r->train) || cli_load_fashion_mnist(a->data, 0, &r->test)) return CLI_FAIL;
    if (a->limit_train > 0) nb_dataset_truncate(r->train, a->limit_train);
    if (g->opts.variant != NB_GAN_CYCLEGAN)
        return nb_loader_new(r->train, a->batch, 1, 1, a->seed, &r->l) != NB_OK ? cli_lib_error() : 0;
    /* two unpaired streams: each domain shuffled by its own generator */
    nb_dataset *tr[2] = {NULL, NULL};
    int rc = 0;
    if (nb_gan_domain(r->train, g->opts.domain_a, &tr[0]) || nb_gan_domain(r->train, g->opts.domain_b, &tr[1]) ||
        nb_gan_domain(r->test, g->opts.domain_a, &r->dom[0]) || nb_gan_domain(r->test, g->opts.domain_b, &r->dom[1]) ||
        r->dom[0]->n < 8 || r->dom[1]->n < 8)
        rc = cli_fail("--domains: too few images in a domain (%s)", nb_last_error());
    /* the loaders keep pointers: the domain sets replace the full train set */
    if (!rc) {
        nb_dataset_free(r->train);
        r->train = tr[0];
        r->train_b = tr[1];
        tr[0] = tr[1] = NULL;
        if (nb_loader_new(r->train, a->batch, 1, 1, a->seed, &r->l) != NB_OK ||
            nb_loader_new(r->train_b, a->batch, 1, 1, a->seed + 1, &r->lb) != NB_OK)
            rc = cli_lib_error();
    }
    nb_dataset_free(tr[0]);
    nb_dataset_free(tr[1]);
    return rc;
}

static int run_train(const gan_args *a, nb_gan_opts *go)
{
    run_state r = {.a = a};
    FILE *mf = NULL;
    int rc = CLI_FAIL;
    if (mkdir(a->out, 0777) != 0 && errno != EEXIST) return cli_fail("--out %s: %s", a->out, strerror(errno));
    if (!cli_dir_writable(join(a->out, "x"))) return cli_fail("--out %s: not a writable directory", a->out);
    if (nb_gan_new(go, &r.g) != NB_OK || !(r.ctx = nb_ctx_new(a->seed))) {
        rc = cli_lib_error();
        goto done;
    }
    if (setup_data(&r) || load_classifier(a, &r.cls)) goto done;
    if (!(mf = fopen(join(a->out, "metrics.jsonl"), "w"))) {
        cli_fail("%s: %s", join(a->out, "metrics.jsonl"), strerror(errno));
        goto done;
    }
    if (!a->quiet) {
        printf("%s: %s \"%s\" (%zu parameters), %s \"%s\" (%zu parameters)%s\n", nb_gan_variant_name(go->variant),
               r.g->g->name, r.g->g->config, r.g->g->numel, r.g->d->name, r.g->d->config, r.g->d->numel,
               r.g->g2 ? ", two of each" : "");
        printf("%lld training images%s, batch %lld, %s lr %g", (long long)r.train->n, r.train_b ? " in domain A" : "",
               (long long)a->batch, r.g->opt_g->name, go->lr);
        if (go->lr_d > 0) printf(" (discriminator %g)", go->lr_d);
        if (go->real_label != 1) printf(", real label %g", go->real_label);
        if (go->ema > 0) printf(", generator average %g", go->ema);
        printf(", seed %llu, %d threads\n", (unsigned long long)a->seed, nb_get_threads());
        fflush(stdout);
    }
    r.t_start = cli_now();
    for (int epoch = 1; epoch <= a->epochs; epoch++) {
        double t0 = cli_now(), d, gl, w;
        int stopped;
        if (train_epoch(&r, epoch, &d, &gl, &w, &stopped) || write_samples(&r, epoch) || write_loss_plot(&r) ||
            save_checkpoints(&r, epoch) || epoch_report(&r, mf, epoch, d, gl, w, cli_now() - t0))
            goto done;
        if (stopped || (epoch < a->epochs && out_of_time(&r))) {
            if (!a->quiet)
                printf("stopped after step %lld (%s)\n", (long long)r.step, out_of_time(&r) ? "--minutes" : "--max-steps");
            break;
        }
    }
    if (!a->quiet) printf("samples, loss.png, checkpoints and metrics.jsonl in %s\n", a->out);
    rc = CLI_OK;
done:
    if (mf && fclose(mf) != 0 && rc == CLI_OK) rc = cli_fail("metrics.jsonl: %s", strerror(errno));
    nb_loader_free(r.l);
    nb_loader_free(r.lb);
    nb_dataset_free(r.train);
    nb_dataset_free(r.train_b);
    nb_dataset_free(r.test);
    nb_dataset_free(r.dom[0]);
    nb_dataset_free(r.dom[1]);
    nb_model_free(r.cls);
    nb_ctx_free(r.ctx);
    nb_gan_free(r.g);
    free(r.xs), free(r.dl), free(r.gl), free(r.wd);
    return rc;
}

/* ---- sampling from a saved generator ----------------------------------------------- */

static int run_sample(const gan_args *a, int variant_given, nb_gan_variant want)
{
    nb_model *g = NULL;
    nb_ctx *ctx = NULL;
    nb_dataset *test = NULL, *src = NULL;
    nb_safetensors *meta = NULL;
    float *img = NULL;
    int32_t *labels = NULL;
    int rc = CLI_FAIL, gen = 0;
    if (nb_gan_model_load_file(a->weights, &g) != NB_OK) return cli_lib_error();
    nb_gan_variant v = nb_gan_model_variant(g, &gen);
    if (!gen) {
        rc = cli_fail("--weights %s: '%s' is not a generator", a->weights, g->name);
        goto done;
    }
    if (variant_given && v != want) {
        rc = cli_fail("--weights %s holds a %s generator, not %s", a->weights, nb_gan_variant_name(v), nb_gan_variant_name(want));
        goto done;
    }
    if (a->cls >= 0 && v != NB_GAN_CGAN) {
        rc = cli_usage_error("gan", "--class needs a cgan generator");
        goto done;
    }
    int n = a->count > 0 ? a->count : v == NB_GAN_CGAN && a->cls < 0 ? 100 : 64, cols = v == NB_GAN_CGAN && a->cls < 0 ? 10 : 8;
    if (v == NB_GAN_CGAN && a->cls < 0) n = (n + 9) / 10 * 10;   /* whole rows, one per class */
    ctx = nb_ctx_new(a->seed);
    img = malloc(sizeof(float) * 784 * (size_t)n * 2);
    labels = malloc(sizeof(int32_t) * (size_t)n);
    if (!ctx || !img || !labels) {
        rc = cli_fail("out of memory");
        goto done;
    }
    if (v == NB_GAN_CYCLEGAN) {
        /* inputs from the generator's source domain, each beside its translation */
        if (nb_checkpoint_open_meta(a->weights, &meta) != NB_OK) {
            rc = cli_lib_error();
            goto done;
        }
        const char *s = nb_safetensors_meta(meta, "gan.source");
        unsigned mask = s ? (unsigned)strtoul(s, NULL, 10) : 0;
        if (!mask) {
            rc = cli_fail("--weights %s: no source domain in its metadata (not written by nabla gan?)", a->weights);
            goto done;
        }
        if (cli_load_fashion_mnist(a->data, 0, &test) || nb_gan_domain(test, mask, &src)) {
            if (!src) cli_lib_error();
            goto done;
        }
        if (n > src->n) n = (int)src->n;
        float *trans = img + (size_t)n * 784;
        if (nb_gan_translate(g, ctx, src->x, n, trans) != NB_OK) {
            rc = cli_lib_error();
            goto done;
        }
        float *pairs = malloc(sizeof(float) * 784 * 2 * (size_t)n);
        if (!pairs) {
            rc = cli_fail("out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++) {
            memcpy(pairs + (size_t)(2 * i) * 784, src->x + (size_t)i * 784, 784 * sizeof(float));
            memcpy(pairs + (size_t)(2 * i + 1) * 784, trans + (size_t)i * 784, 784 * sizeof(float));
        }
        rc = write_grid(a->out, pairs, 2 * n, 8);
        free(pairs);
    } else {
        if (v == NB_GAN_CGAN && a->cls < 0) cols = n / 10;   /* row k holds class k */
        for (int i = 0; i < n; i++) labels[i] = a->cls >= 0 ? a->cls : i / cols % 10;
        if (nb_gan_generate(g, ctx, n, labels, img) != NB_OK) {
            rc = cli_lib_error();
            goto done;
        }
        rc = write_grid(a->out, img, n, cols);
    }
    if (!rc && !a->quiet) {
        printf("wrote %s: %d %s from %s", a->out, n, v == NB_GAN_CYCLEGAN ? "translations" : "samples", a->weights);
        if (a->cls >= 0) printf(" (class %d, %s)", a->cls, nb_fashion_mnist_classes[a->cls]);
        putchar('\n');
    }
done:
    nb_safetensors_free(meta);
    nb_dataset_free(src);
    nb_dataset_free(test);
    free(labels);
    free(img);
    nb_ctx_free(ctx);
    nb_model_free(g);
    return rc;
}

int cmd_gan(int argc, char **argv)
{
    gan_args a = {.data = nb_fashion_mnist_default_dir(), .epochs = 5, .batch = 64, .lr = NAN, .real_label = 1, .seed = 1,
                  .cls = -1, .eval_samples = 2000};
    cli_opt opts[] = {
        {"variant", CLI_STR, &a.variant, 0, 0, "V", "gan, dcgan, cgan, wgan or cyclegan (required to train)", 0},
        {"epochs", CLI_INT, &a.epochs, 1, 100000, "N", "passes over the training images", 0},
        {"out", CLI_STR, &a.out, 0, 0, "DIR", "output directory (created); with --sample the PNG file", 0},
        {"batch", CLI_I64, &a.batch, 2, 65536, "B", "mini-batch size (dcgan, cgan: 32)", 0},
        {"lr", CLI_FLOAT, &a.lr, 0, 10, "LR", "learning rate of G, and of D unless --lr-d (default 2e-4; wgan 5e-5)", 0},
        {"lr-d", CLI_FLOAT, &a.lr_d, 0, 10, "LR", "the discriminator's own learning rate, 0 = --lr", 0},
        {"real-label", CLI_FLOAT, &a.real_label, 0, 1, "P", "gan, dcgan, cgan: D's target for real images "
                                                          "(0.9: one-sided label smoothing)", 0},
        {"ema", CLI_FLOAT, &a.ema, 0, 0.999999, "D", "sample and score an exponential moving average of the "
                                                  "generator's weights, decay D (e.g. 0.999); 0 = none", 0},
        {"seed", CLI_U64, &a.seed, 0, 0, "S", "seed of the weights, data order and noise", 0},
        {"threads", CLI_INT, &a.threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
        {"class", CLI_INT, &a.cls, 0, 9, "K", "cgan: sample class K only (grids and --sample)", 0},
        {"classifier", CLI_STR, &a.classifier, 0, 0, "W", "weights of `nabla train --model cnn` for the scores", 0},
        {"max-steps", CLI_I64, &a.max_steps, 0, 1e15, "N", "stop after N steps in all, 0 = no limit", 0},
        {"minutes", CLI_FLOAT, &a.minutes, 0, 1e6, "M", "stop at the first step after M minutes of training "
                                                          "(scores included), then write the epoch's outputs; 0 = no limit", 0},
        {"limit-train", CLI_I64, &a.limit_train, 0, 1e9, "N", "use only the first N training images, 0 = all", 0},
        {"eval-samples", CLI_INT, &a.eval_samples, 2, 10000, "N", "samples scored per epoch", 0},
        {"domains", CLI_STR, &a.domains, 0, 0, "A:B", "cyclegan: the two groups of classes (default 7:9)", 0},
        {"g-config", CLI_STR, &a.g_config, 0, 0, "CFG", "generator configuration (see the library header)", 0},
        {"d-config", CLI_STR, &a.d_config, 0, 0, "CFG", "discriminator configuration", 0},
        {"sample", CLI_FLAG, &a.sample, 0, 0, NULL, "draw samples from --weights into the PNG --out", 0},
        {"weights", CLI_STR, &a.weights, 0, 0, "FILE", "--sample: a generator saved by nabla gan", 0},
        {"count", CLI_INT, &a.count, 1, 1000, "N", "--sample: how many samples (default 64; cgan 100)", 0},
        {"data", CLI_STR, &a.data, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"quiet", CLI_FLAG, &a.quiet, 0, 0, NULL, "print nothing but errors", 0},
    };
    int r = cli_parse(&cli_gan_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    nb_gan_variant v = NB_GAN_UNKNOWN;
    if (a.variant && (v = nb_gan_variant_from_name(a.variant)) == NB_GAN_UNKNOWN)
        return cli_usage_error("gan", "%s", nb_last_error());
    if (!a.out) return cli_usage_error("gan", "--out is required");
    nb_set_threads(a.threads);
    if (a.sample) {
        if (!a.weights) return cli_usage_error("gan", "--sample needs --weights FILE");
        return run_sample(&a, a.variant != NULL, v);
    }
    if (!a.variant) return cli_usage_error("gan", "--variant is required (gan, dcgan, cgan, wgan, cyclegan)");
    if (a.cls >= 0 && v != NB_GAN_CGAN) return cli_usage_error("gan", "--class needs --variant cgan");
    /* the convolutional pairs learn as much per step from 32 images as from
     * 64 on Fashion-MNIST, so 32 gives better samples per CPU second */
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strcmp(opts[i].name, "batch") && !opts[i].seen && (v == NB_GAN_DCGAN || v == NB_GAN_CGAN)) a.batch = 32;
    nb_gan_opts go = nb_gan_defaults(v);
    if (a.domains && (v != NB_GAN_CYCLEGAN || parse_domains(a.domains, &go.domain_a, &go.domain_b)))
        return cli_usage_error("gan", "--domains '%s': needs --variant cyclegan and two disjoint class lists like 7:9",
                               a.domains);
    if (isfinite(a.lr)) {
        if (!(a.lr > 0)) return cli_usage_error("gan", "--lr must be positive");
        go.lr = a.lr;
    }
    if (!(a.real_label > 0)) return cli_usage_error("gan", "--real-label must be in (0, 1]");
    if (a.ema > 0 && v == NB_GAN_CYCLEGAN) return cli_usage_error("gan", "--ema needs a noise-to-image variant, not cyclegan");
    go.lr_d = a.lr_d;
    go.real_label = a.real_label;
    go.ema = a.ema;
    go.g_config = a.g_config;
    go.d_config = a.d_config;
    go.seed = a.seed;
    return run_train(&a, &go);
}
