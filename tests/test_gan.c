/* The GAN family: the Fréchet distance against closed forms, the models
 * (shapes, save/load), short DCGAN and CGAN runs whose losses move while the
 * frozen model's parameters stay put, WGAN and CycleGAN steps, and the
 * `nabla gan` command line. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ---- the Fréchet distance ---------------------------------------------------------- */

TEST(gan_fd_closed_form_2d)
{
    /* A: covariance diag(2/3, 8/3), mean 0. B: points of covariance
     * diag(6, 2/3) rotated by 45 degrees, shifted by (1, 1). The two
     * covariances do not commute; for 2x2 matrices
     * tr sqrt(Sa Sb) = sqrt(tr(Sa Sb) + 2 sqrt(det Sa det Sb)), which gives
     * FD = 2 + 10/3 + 20/3 - (2/3) sqrt(148) (torch.linalg agrees). */
    const float a[] = {1, 0, -1, 0, 0, 2, 0, -2};
    const float h = 0.70710678f;
    const float b[] = {1 + 3 * h, 1 + 3 * h, 1 - 3 * h, 1 - 3 * h, 1 - h, 1 + h, 1 + h, 1 - h};
    double fd;
    CHECK_OK(nb_frechet_distance(a, 4, b, 4, 2, &fd));
    CHECK_NEAR(fd, 12.0 - 2.0 / 3.0 * sqrt(148.0), 1e-5, 1e-6);
    CHECK_OK(nb_frechet_distance(b, 4, a, 4, 2, &fd));   /* symmetric */
    CHECK_NEAR(fd, 12.0 - 2.0 / 3.0 * sqrt(148.0), 1e-5, 1e-6);
    CHECK_OK(nb_frechet_distance(a, 4, a, 4, 2, &fd));
    CHECK_NEAR(fd, 0.0, 0, 1e-9);
}

TEST(gan_fd_scaled_correlated_features)
{
    /* B = s A + c for correlated 32-d features: Sb = s^2 Sa, so
     * FD = |(1 - s) mu_a - c|^2 + (1 - s)^2 tr Sa exactly. */
    enum { N = 300, D = 32 };
    static float a[N * D], b[N * D];
    nb_rng r;
    nb_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        float z[D];
        for (int j = 0; j < D; j++) z[j] = nb_rng_normal(&r);
        for (int j = 0; j < D; j++)   /* mix neighbours: a full covariance */
            a[i * D + j] = 1.0f + 0.1f * (float)j + z[j] + 0.8f * z[(j + 1) % D] - 0.5f * z[(j + 5) % D];
    }
    const float s = 0.5f;
    for (int i = 0; i < N * D; i++) b[i] = s * a[i] + 0.25f * (float)(i % D % 3);
    double mu[D] = {0}, tr = 0, want = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) mu[j] += a[i * D + j] / (double)N;
    for (int j = 0; j < D; j++) {
        double v = 0;
        for (int i = 0; i < N; i++) v += (a[i * D + j] - mu[j]) * (a[i * D + j] - mu[j]);
        tr += v / (N - 1);
        double dm = (1 - s) * mu[j] - 0.25 * (j % 3);
        want += dm * dm;
    }
    want += (1 - s) * (1 - s) * tr;
    double fd;
    CHECK_OK(nb_frechet_distance(a, N, b, N, D, &fd));
    CHECK_NEAR(fd, want, 1e-5, 1e-6);
}

TEST(gan_fd_errors)
{
    float a[4] = {0, 1, 2, NAN};
    double fd;
    CHECK_ERR(nb_frechet_distance(a, 1, a, 2, 1, &fd), NB_ERR_ARG, "at least 2");
    CHECK_ERR(nb_frechet_distance(a, 4, a, 3, 1, &fd), NB_ERR_NONFINITE, "not finite");
    CHECK_ERR(nb_frechet_distance(a, 2, a, 2, 0, &fd), NB_ERR_ARG, "dim");
}

/* ---- models ------------------------------------------------------------------------ */

TEST(gan_models_shapes_and_files)
{
    static const struct { const char *name, *config; int in[4], nin, out[4], nout; } cases[] = {
        {"gan_generator", "8,16", {3, 8}, 2, {3, 1, 28, 28}, 4},
        {"gan_discriminator", "16", {3, 1, 28, 28}, 4, {3, 1}, 2},
        {"cgan_generator", "8,4", {3, 18}, 2, {3, 1, 28, 28}, 4},
        {"cgan_discriminator", "4", {3, 11, 28, 28}, 4, {3, 1}, 2},
        {"wgan_critic", "16", {3, 1, 28, 28}, 4, {3, 1}, 2},
        {"dcgan_generator", "8,4", {3, 8}, 2, {3, 1, 28, 28}, 4},
        {"dcgan_discriminator", "4", {3, 1, 28, 28}, 4, {3, 1}, 2},
        {"cyclegan_generator", "2,1", {3, 1, 28, 28}, 4, {3, 1, 28, 28}, 4},
        {"cyclegan_discriminator", "4", {3, 1, 28, 28}, 4, {3, 1, 5, 5}, 4},
    };
    nb_ctx *ctx = nb_ctx_new(1);
    char path[512];
    snprintf(path, sizeof path, "%s/gan_model.safetensors", nbt_tmpdir());
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nb_model *m = NULL, *back = NULL;
        CHECK_OK(nb_gan_model_build(cases[k].name, cases[k].config, nb_ctx_rng(ctx), &m));
        int64_t shape[4];
        for (int d = 0; d < cases[k].nin; d++) shape[d] = cases[k].in[d];
        nb_ctx_reset(ctx);
        nb_tensor *y = nb_model_forward(m, ctx, nb_tensor_randn(ctx, cases[k].nin, shape));
        CHECK_MSG(y && y->ndim == cases[k].nout, "%s: %s", cases[k].name, nb_last_error());
        for (int d = 0; d < y->ndim; d++) CHECK_MSG(y->shape[d] == cases[k].out[d], "%s: dim %d", cases[k].name, d);
        CHECK_OK(nb_model_save(m, path));
        CHECK_OK(nb_gan_model_load_file(path, &back));
        CHECK(back->numel == m->numel && !memcmp(back->data, m->data, m->numel * sizeof(float)));
        nb_model_free(back);
        nb_model_free(m);
    }
    nb_ctx_free(ctx);
}

TEST(gan_models_init_and_errors)
{
    nb_rng r;
    nb_rng_seed(&r, 3);
    nb_model *m = NULL;
    /* DCGAN's N(0, 0.02): the 4-d weights have about that spread */
    CHECK_OK(nb_gan_model_build("dcgan_discriminator", "32", &r, &m));
    nb_tensor *w = nb_model_param(m, nb_model_find_param(m, "2.weight"));
    double ss = 0;
    int64_t n = nb_tensor_numel(w);
    for (int64_t i = 0; i < n; i++) ss += (double)w->data[i] * w->data[i];
    CHECK_NEAR(sqrt(ss / (double)n), 0.02, 0.05, 0);
    CHECK_NEAR(nb_model_param(m, nb_model_find_param(m, "3.bias"))->data[0], 0.0, 0, 0);
    CHECK(nb_gan_model_variant(m, NULL) == NB_GAN_DCGAN);
    nb_model_free(m);
    CHECK_ERR(nb_gan_model_build("gan_generator", "100", &r, &m), NB_ERR_ARG, "nz,h1");
    CHECK_ERR(nb_gan_model_build("nope", NULL, &r, &m), NB_ERR_NOTFOUND, "unknown GAN model");
    CHECK(nb_gan_variant_from_name("cyclegan") == NB_GAN_CYCLEGAN);
    CHECK(nb_gan_variant_from_name("vae") == NB_GAN_UNKNOWN && strstr(nb_last_error(), "wgan"));
}

/* ---- training -------------------------------------------------------------------------- */

static nb_dataset *small_train(int64_t n)
{
    nb_dataset *d = NULL;
    if (nb_fashion_mnist_load(NULL, 1, &d) != NB_OK) return NULL;
    nb_dataset_truncate(d, n);
    return d;
}

/* Copies of a model's trainable values and a check that they (and, when
 * grads_zero, its gradients) did not move. */
static float *snapshot(const nb_model *m)
{
    float *s = malloc(m->numel * sizeof(float));
    memcpy(s, m->data, m->numel * sizeof(float));
    return s;
}

static int params_unchanged(const nb_model *m, const float *before, int grads_zero)
{
    for (int i = 0; i < m->nparams; i++) {
        const nb_param *p = &m->params[i];
        if (p->buffer) continue;   /* BN running statistics follow every forward in train mode */
        int64_t n = nb_tensor_numel(&p->t);
        for (int64_t k = 0; k < n; k++) {
            if (p->t.data[k] != before[p->offset + k]) return 0;
            if (grads_zero && p->t.grad[k] != 0) return 0;
        }
    }
    return 1;
}

/* `steps` steps of batch 32; checks that the frozen model never moves and
 * that both losses change from the first 20 steps to the last 20. */
static void short_run(nb_gan_variant v, const char *gcfg, const char *dcfg, int steps)
{
    nb_dataset *d = small_train(1024);
    if (!d) SKIP("Fashion-MNIST is not installed (%s)", nb_last_error());
    nb_gan_opts o = nb_gan_defaults(v);
    o.g_config = gcfg, o.d_config = dcfg, o.seed = 5;
    nb_gan *g = NULL;
    nb_loader *l = NULL;
    nb_ctx *ctx = nb_ctx_new(5);
    CHECK_OK(nb_gan_new(&o, &g));
    CHECK_OK(nb_loader_new(d, 32, 1, 1, 5, &l));
    double d_first = 0, d_last = 0, g_first = 0, g_last = 0;
    for (int step = 0; step < steps; step++) {
        nb_ctx_reset(ctx);
        nb_batch b;
        CHECK_OK(nb_loader_next(l, ctx, &b));
        if (!b.n) {
            nb_loader_start_epoch(l);
            CHECK_OK(nb_loader_next(l, ctx, &b));
        }
        nb_gan_losses ls;
        /* the D step: G is untouched, and no gradient reached it */
        float *gs = snapshot(g->g);
        nb_model_zero_grad(g->g);
        CHECK_OK(nb_gan_step_d(g, ctx, b.x, b.y, NULL, &ls));
        int g_still = params_unchanged(g->g, gs, 1);
        free(gs);
        CHECK_MSG(g_still, "step %d: the D step changed the generator or its gradients", step);
        double dl = ls.d_loss;
        /* the G step through the frozen D: D and its gradients stay */
        float *ds = snapshot(g->d);
        nb_model_zero_grad(g->d);
        CHECK_OK(nb_gan_step_g(g, ctx, b.x, b.y, NULL, &ls));
        int d_still = params_unchanged(g->d, ds, 1);
        free(ds);
        CHECK_MSG(d_still, "step %d: the G step changed the discriminator or its gradients", step);
        CHECK(isfinite(dl) && isfinite(ls.g_loss) && ls.g_updated);
        if (step < 20) d_first += dl / 20, g_first += ls.g_loss / 20;
        if (step >= steps - 20) d_last += dl / 20, g_last += ls.g_loss / 20;
    }
    CHECK(g->d_steps == steps && g->g_steps == steps);
    CHECK_MSG(fabs(d_last - d_first) > 0.05 && fabs(g_last - g_first) > 0.05,
              "losses did not move: D %.4f -> %.4f, G %.4f -> %.4f", d_first, d_last, g_first, g_last);
    nb_loader_free(l);
    nb_ctx_free(ctx);
    nb_gan_free(g);
    nb_dataset_free(d);
}

/* Models this small spend more time waking threads than computing. */
static void short_run_1thread(nb_gan_variant v, const char *gcfg, const char *dcfg, int steps)
{
    int threads = nb_get_threads();
    nb_set_threads(1);
    short_run(v, gcfg, dcfg, steps);
    nb_set_threads(threads);
}

TEST(gan_dcgan_short_run_frozen_models) { short_run_1thread(NB_GAN_DCGAN, "16,8", "8", 200); }
TEST(gan_cgan_short_run_frozen_models) { short_run_1thread(NB_GAN_CGAN, "16,8", "8", 120); }

/* nb_gan_step makes one G(z) for both steps; with the same noise it must
 * give exactly the weights of nb_gan_step_d then nb_gan_step_g, so the
 * frozen-model checks of those carry over to it. */
static void shared_fake_matches_separate_steps(nb_gan_variant v)
{
    nb_gan_opts o = nb_gan_defaults(v);
    o.g_config = "8,4", o.d_config = "4";
    nb_gan *a = NULL, *b = NULL;
    CHECK_OK(nb_gan_new(&o, &a));
    CHECK_OK(nb_gan_new(&o, &b));
    nb_ctx *ca = nb_ctx_new(9), *cb = nb_ctx_new(9);
    float img[8 * 784];
    int32_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 9};
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 8 * 784; i++) img[i] = nb_rng_uniform(nb_ctx_rng(ca));
        *nb_ctx_rng(cb) = *nb_ctx_rng(ca);
        nb_ctx_reset(ca), nb_ctx_reset(cb);
        nb_tensor *xa = nb_tensor_from(ca, NB_SHAPE(8, 1, 28, 28), img), *xb = nb_tensor_from(cb, NB_SHAPE(8, 1, 28, 28), img);
        nb_gan_losses la, lb;
        CHECK_OK(nb_gan_step(a, ca, xa, labels, NULL, &la));
        nb_rng noise = *nb_ctx_rng(cb);   /* the G step draws the D step's z again */
        CHECK_OK(nb_gan_step_d(b, cb, xb, labels, NULL, &lb));
        *nb_ctx_rng(cb) = noise;
        CHECK_OK(nb_gan_step_g(b, cb, xb, labels, NULL, &lb));
        CHECK(la.g_updated && la.g_loss == lb.g_loss);
    }
    CHECK(a->d_steps == 3 && a->g_steps == 3);
    CHECK(params_unchanged(a->d, b->d->data, 0) && params_unchanged(a->g, b->g->data, 0));
    nb_ctx_free(ca), nb_ctx_free(cb);
    nb_gan_free(a), nb_gan_free(b);
}

TEST(gan_step_shares_the_fake)
{
    shared_fake_matches_separate_steps(NB_GAN_DCGAN);
    shared_fake_matches_separate_steps(NB_GAN_CGAN);
}

TEST(gan_cgan_condition_image_planes)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(2, 1, 3, 4));
    int32_t labels[2] = {7, 0};
    nb_tensor *y = nb_gan_condition_image(ctx, x, labels);
    CHECK(y && y->ndim == 4 && y->shape[0] == 2 && y->shape[1] == 11 && y->shape[2] == 3 && y->shape[3] == 4);
    for (int i = 0; i < 2; i++) {
        CHECK(!memcmp(y->data + i * 11 * 12, x->data + i * 12, 12 * sizeof(float)));   /* the image first */
        for (int c = 0; c < 10; c++)
            for (int k = 0; k < 12; k++) CHECK(y->data[(i * 11 + 1 + c) * 12 + k] == (c == labels[i] ? 1.0f : 0.0f));
    }
    nb_tensor *flat = nb_tensor_randn(ctx, NB_SHAPE(2, 12));
    CHECK(!nb_gan_condition_image(ctx, flat, labels) && strstr(nb_last_error(), "(N, C, H, W)"));
    labels[1] = 10;
    CHECK(!nb_gan_condition_image(ctx, x, labels) && strstr(nb_last_error(), "outside [0, 10)"));
    nb_ctx_free(ctx);
}

TEST(gan_cgan_label_conditions_samples)
{
    nb_gan_opts o = nb_gan_defaults(NB_GAN_CGAN);
    o.g_config = "8,16";
    nb_gan *g = NULL;
    CHECK_OK(nb_gan_new(&o, &g));
    nb_ctx *ctx = nb_ctx_new(1), *ctx2 = nb_ctx_new(1);   /* same noise */
    float a[784], b[784];
    int32_t l0 = 0, l1 = 1;
    CHECK_OK(nb_gan_generate(g->g, ctx, 1, &l0, a));
    CHECK_OK(nb_gan_generate(g->g, ctx2, 1, &l1, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    for (int i = 0; i < 784; i++) CHECK(a[i] >= 0 && a[i] <= 1);
    CHECK_ERR(nb_gan_generate(g->g, ctx, 1, NULL, a), NB_ERR_ARG, "labels");
    nb_ctx_free(ctx);
    nb_ctx_free(ctx2);
    nb_gan_free(g);
}

TEST(gan_wgan_clips_and_estimates)
{
    nb_dataset *d = small_train(256);
    if (!d) SKIP("Fashion-MNIST is not installed (%s)", nb_last_error());
    nb_gan_opts o = nb_gan_defaults(NB_GAN_WGAN);
    o.g_config = "8,32", o.d_config = "32";
    nb_gan *g = NULL;
    CHECK_OK(nb_gan_new(&o, &g));
    CHECK(!strcmp(g->opt_d->name, "RMSprop") && !strcmp(g->d->name, "wgan_critic"));
    nb_ctx *ctx = nb_ctx_new(2);
    nb_tensor *x = nb_tensor_from(ctx, NB_SHAPE(16, 1, 28, 28), d->x);
    int g_updates = 0;
    for (int k = 0; k < 10; k++) {
        nb_gan_losses ls;
        CHECK_OK(nb_gan_step(g, ctx, x, NULL, NULL, &ls));
        CHECK(isfinite(ls.wasserstein) && fabsf(ls.wasserstein - (ls.d_real - ls.d_fake)) < 1e-6f);
        g_updates += ls.g_updated;
    }
    CHECK(g_updates == 2);   /* after critic steps 5 and 10 */
    for (size_t i = 0; i < g->d->numel; i++) CHECK(fabsf(g->d->data[i]) <= 0.01f);
    nb_ctx_free(ctx);
    nb_gan_free(g);
    nb_dataset_free(d);
}

static void cyclegan_steps_and_scores(void);
TEST(gan_cyclegan_steps_and_scores)
{
    int threads = nb_get_threads();
    nb_set_threads(1);
    cyclegan_steps_and_scores();
    nb_set_threads(threads);
}

static void cyclegan_steps_and_scores(void)
{
    nb_dataset *d = NULL, *test = NULL, *a = NULL, *b = NULL;
    if (nb_fashion_mnist_load(NULL, 0, &test) != NB_OK) SKIP("Fashion-MNIST is not installed (%s)", nb_last_error());
    nb_gan_opts o = nb_gan_defaults(NB_GAN_CYCLEGAN);
    o.g_config = "2,1", o.d_config = "4", o.pool_size = 4;
    nb_gan *g = NULL;
    CHECK_OK(nb_gan_new(&o, &g));
    CHECK(g->g2 && g->d2 && g->opt_g2 && g->opt_d2);
    CHECK_OK(nb_gan_domain(test, o.domain_a, &a));
    CHECK_OK(nb_gan_domain(test, o.domain_b, &b));
    CHECK(a->n == 1000 && b->n == 1000 && a->y[0] == 7 && b->y[0] == 9);
    nb_ctx *ctx = nb_ctx_new(3);
    for (int k = 0; k < 3; k++) {
        nb_ctx_reset(ctx);
        nb_tensor *xa = nb_tensor_from(ctx, NB_SHAPE(4, 1, 28, 28), a->x + k * 4 * 784);
        nb_tensor *xb = nb_tensor_from(ctx, NB_SHAPE(4, 1, 28, 28), b->x + k * 4 * 784);
        nb_gan_losses ls;
        CHECK_OK(nb_gan_step(g, ctx, xa, NULL, xb, &ls));
        CHECK(isfinite(ls.d_loss) && isfinite(ls.g_loss) && isfinite(ls.cycle) && isfinite(ls.identity));
    }
    CHECK(g->pool_n[0] == 4 && g->pool_n[1] == 4);
    /* scores with an untrained classifier: only that they are well formed */
    nb_model *cls = NULL;
    CHECK_OK(nb_model_build("cnn", NULL, nb_ctx_rng(ctx), &cls));
    nb_gan_metrics m;
    CHECK_OK(nb_gan_evaluate(g, cls, ctx, test, 20, &m));
    CHECK(m.n == 40 && m.target_rate >= 0 && m.target_rate <= 1 && m.cycle_l1 > 0 && m.fd >= 0 && isnan(m.cond_acc));
    CHECK(m.real_confident >= 0 && m.real_confident <= 1 && m.real_acc >= 0 && m.real_acc <= 1);
    int64_t total = 0;
    for (int k = 0; k < 10; k++) total += m.hist[k];
    CHECK(total == 40);
    CHECK_ERR(nb_gan_step(g, ctx, nb_tensor_from(ctx, NB_SHAPE(4, 1, 28, 28), a->x), NULL, NULL, &(nb_gan_losses){0}),
              NB_ERR_SHAPE, "domain-B");
    nb_model_free(cls);
    nb_ctx_free(ctx);
    nb_gan_free(g);
    nb_dataset_free(a);
    nb_dataset_free(b);
    nb_dataset_free(test);
    nb_dataset_free(d);
}

/* The real images' scores beside the samples': the classifier's confident
 * fraction and accuracy on the n test images of the Fréchet distance, as
 * counted here from its probabilities. */
TEST(gan_evaluate_scores_the_real_images)
{
    nb_dataset *test = NULL;
    if (nb_fashion_mnist_load(NULL, 0, &test) != NB_OK) SKIP("Fashion-MNIST is not installed (%s)", nb_last_error());
    nb_gan_opts o = nb_gan_defaults(NB_GAN_DCGAN);
    o.g_config = "8,4", o.d_config = "4";
    nb_gan *g = NULL;
    CHECK_OK(nb_gan_new(&o, &g));
    nb_ctx *ctx = nb_ctx_new(6);
    nb_model *cls = NULL;
    CHECK_OK(nb_model_build("cnn", NULL, nb_ctx_rng(ctx), &cls));
    /* a sharper last layer, so that some images pass the 0.7 bar and some not */
    int last = -1;
    for (int i = 0; i < cls->nparams; i++)
        if (!cls->params[i].buffer && cls->params[i].t.ndim == 2) last = i;
    CHECK(last >= 0 && cls->params[last].t.shape[0] == 10);
    for (int64_t k = 0; k < nb_tensor_numel(&cls->params[last].t); k++) cls->params[last].t.data[k] *= 200.0f;
    const int n = 200, shape[3] = {1, 28, 28};
    nb_gan_metrics m;
    CHECK_OK(nb_gan_evaluate(g, cls, ctx, test, n, &m));
    float probs[200 * 10];
    CHECK_OK(nb_classifier_run(cls, ctx, test->x, n, shape, NULL, NULL, probs, 10));
    int confident = 0, hits = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (probs[i * 10 + k] > probs[i * 10 + best]) best = k;
        confident += probs[i * 10 + best] >= 0.7f;
        hits += best == test->y[i];
    }
    CHECK_MSG(confident > 0 && confident < n, "%d of %d confident: the check would not tell", confident, n);
    CHECK_MSG(m.real_confident == confident / (double)n && m.real_acc == hits / (double)n,
              "real_confident %g real_acc %g, counted %g %g", m.real_confident, m.real_acc, confident / (double)n,
              hits / (double)n);
    CHECK(m.n == n && m.confident >= 0 && m.confident <= 1 && isnan(m.cond_acc));
    nb_model_free(cls);
    nb_ctx_free(ctx);
    nb_gan_free(g);
    nb_dataset_free(test);
}

/* ---- the command line --------------------------------------------------------------------- */

/* The averaged generator: it starts as G, each G step moves it by the
 * warmed-up decay over the whole state, and it is what samples come from. */
TEST(gan_ema_follows_the_generator)
{
    nb_gan_opts o = nb_gan_defaults(NB_GAN_DCGAN);
    o.g_config = "8,4", o.d_config = "4", o.ema = 0.9f;
    nb_gan *g = NULL;
    CHECK_OK(nb_gan_new(&o, &g));
    CHECK(g->g_ema && nb_gan_sampler(g) == g->g_ema && g->g_ema->numel == g->g->numel);
    CHECK(!memcmp(g->g_ema->data, g->g->data, g->g->numel * sizeof(float)));
    nb_ctx *ctx = nb_ctx_new(4);
    float img[8 * 784];
    for (int step = 1; step <= 30; step++) {
        for (int i = 0; i < 8 * 784; i++) img[i] = nb_rng_uniform(nb_ctx_rng(ctx));
        nb_ctx_reset(ctx);
        float *before = snapshot(g->g_ema);
        nb_gan_losses ls;
        CHECK_OK(nb_gan_step(g, ctx, nb_tensor_from(ctx, NB_SHAPE(8, 1, 28, 28), img), NULL, NULL, &ls));
        double warm = (1.0 + step) / (10.0 + step);
        float d = (float)(warm < 0.9 ? warm : 0.9);
        int same = 1;
        for (size_t i = 0; i < g->g->numel; i++) same &= g->g_ema->data[i] == d * before[i] + (1.0f - d) * g->g->data[i];
        free(before);
        CHECK_MSG(same, "step %d: g_ema is not %g g_ema + %g G", step, d, 1.0f - d);
    }
    /* after 30 steps the averaged weights lag G's: they differ, but not by much */
    double diff = 0, norm = 0;
    for (int k = 0; k < g->g->nparams; k++) {
        const nb_param *p = &g->g->params[k];
        if (p->buffer) continue;
        for (int64_t i = 0; i < nb_tensor_numel(&p->t); i++) {
            double e = (double)g->g_ema->data[p->offset + i] - p->t.data[i];
            diff += e * e, norm += (double)p->t.data[i] * p->t.data[i];
        }
    }
    CHECK_MSG(diff > 0 && diff < 0.01 * norm, "squared difference %g, squared norm %g", diff, norm);
    nb_ctx_free(ctx);
    nb_gan_free(g);
    o.ema = 0;
    CHECK_OK(nb_gan_new(&o, &g));
    CHECK(!g->g_ema && nb_gan_sampler(g) == g->g);
    nb_gan_free(g);
    o.ema = 1.0f;
    CHECK_ERR(nb_gan_new(&o, &g), NB_ERR_ARG, "ema in [0, 1)");
    o = nb_gan_defaults(NB_GAN_CYCLEGAN);
    o.ema = 0.99f;
    CHECK_ERR(nb_gan_new(&o, &g), NB_ERR_ARG, "not CycleGAN");
}

/* real_label t: D's loss on a real batch becomes BCE(D(x), t), which differs
 * from BCE(D(x), 1) by (1 - t) times the mean logit; lr_d sets D's rate. */
TEST(gan_real_label_and_lr_d)
{
    nb_gan_opts o = nb_gan_defaults(NB_GAN_DCGAN);
    o.g_config = "8,4", o.d_config = "4";
    nb_gan *a = NULL, *b = NULL;
    CHECK_OK(nb_gan_new(&o, &a));
    CHECK(a->opt_d->lr == a->opt_g->lr);
    o.real_label = 0.9f, o.lr_d = 5e-5;
    CHECK_OK(nb_gan_new(&o, &b));
    CHECK(b->opt_d->lr == 5e-5 && b->opt_g->lr == 2e-4);
    nb_ctx *ca = nb_ctx_new(6), *cb = nb_ctx_new(6);
    float img[8 * 784];
    for (int i = 0; i < 8 * 784; i++) img[i] = nb_rng_uniform(nb_ctx_rng(ca));
    /* the mean logit of D on the real batch as the step sees it, in [-1, 1] */
    int grad = nb_set_grad_enabled(ca, 0);
    nb_tensor *x = nb_tensor_from(ca, NB_SHAPE(8, 1, 28, 28), img);
    nb_tensor *logits = nb_model_forward(a->d, ca, nb_add_scalar(ca, nb_scale(ca, x, 2.0f), -1.0f));
    nb_set_grad_enabled(ca, grad);
    CHECK(logits);
    double mean = 0;
    for (int i = 0; i < 8; i++) mean += logits->data[i] / 8.0;
    nb_ctx_reset(ca);
    *nb_ctx_rng(cb) = *nb_ctx_rng(ca);
    nb_gan_losses la, lb;
    CHECK_OK(nb_gan_step_d(a, ca, nb_tensor_from(ca, NB_SHAPE(8, 1, 28, 28), img), NULL, NULL, &la));
    CHECK_OK(nb_gan_step_d(b, cb, nb_tensor_from(cb, NB_SHAPE(8, 1, 28, 28), img), NULL, NULL, &lb));
    CHECK_NEAR(lb.d_loss - la.d_loss, 0.1 * mean, 1e-5, 1e-4);
    nb_ctx_free(ca), nb_ctx_free(cb);
    nb_gan_free(a), nb_gan_free(b);
    o.real_label = 0;
    CHECK_ERR(nb_gan_new(&o, &a), NB_ERR_ARG, "real_label in (0, 1]");
    o.real_label = 1, o.lr_d = -1;
    CHECK_ERR(nb_gan_new(&o, &a), NB_ERR_ARG, "lr_d >= 0");
}

static int exists(const char *dir, const char *name)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && st.st_size > 0;
}

TEST(gan_cli_help_and_usage_errors)
{
    CHECK(nbt_nabla("gan --help") == 0 && strstr(nbt_out, "--variant") && strstr(nbt_out, "--sample"));
    CHECK(nbt_nabla("gan --variant vae --out %s/x", nbt_tmpdir()) == 2 && strstr(nbt_err, "unknown GAN variant 'vae'"));
    CHECK(nbt_nabla("gan --variant gan") == 2 && strstr(nbt_err, "--out"));
    CHECK(nbt_nabla("gan --out %s/x", nbt_tmpdir()) == 2 && strstr(nbt_err, "--variant is required"));
    CHECK(nbt_nabla("gan --variant gan --class 3 --out %s/x", nbt_tmpdir()) == 2 && strstr(nbt_err, "cgan"));
    CHECK(nbt_nabla("gan --variant cgan --class 10 --out %s/x", nbt_tmpdir()) == 2);
    CHECK(nbt_nabla("gan --variant cyclegan --domains 7:7 --out %s/x", nbt_tmpdir()) == 2 && strstr(nbt_err, "disjoint"));
    CHECK(nbt_nabla("gan --sample --out %s/x.png", nbt_tmpdir()) == 2 && strstr(nbt_err, "--weights"));
    CHECK(nbt_nabla("gan --variant cyclegan --ema 0.99 --out %s/x", nbt_tmpdir()) == 2 && strstr(nbt_err, "--ema"));
    CHECK(nbt_nabla("gan --variant dcgan --real-label 0 --out %s/x", nbt_tmpdir()) == 2 && strstr(nbt_err, "--real-label"));
    CHECK(nbt_nabla("gan --sample --weights %s/none.safetensors --out %s/x.png", nbt_tmpdir(), nbt_tmpdir()) == 1);
}

TEST(gan_cli_cgan_run_and_sample)
{
    char dir[512], cls[600];
    snprintf(dir, sizeof dir, "%s/gan_cli", nbt_tmpdir());
    snprintf(cls, sizeof cls, "%s/gan_cls.safetensors", nbt_tmpdir());
    int rc = nbt_nabla("train --model cnn --limit-train 500 --epochs 1 --threads 1 --seed 1 --quiet --out %s", cls);
    if (rc != 0 && strstr(nbt_err, "dataset-fashion-mnist")) SKIP("Fashion-MNIST is not installed");
    CHECK_MSG(rc == 0, "train: %s", nbt_err);
    rc = nbt_nabla("gan --variant cgan --epochs 2 --max-steps 12 --limit-train 320 --batch 32 --g-config 8,16 "
               "--d-config 16 --eval-samples 50 --threads 1 --classifier %s --out %s",
               cls, dir);
    CHECK_MSG(rc == 0, "gan: %s", nbt_err);
    CHECK(strstr(nbt_out, "epoch 1/2") && strstr(nbt_out, "class_acc") && strstr(nbt_out, " (real 0.") &&
          strstr(nbt_out, "stopped after step 12"));
    CHECK(exists(dir, "samples_001.png") && exists(dir, "samples_002.png") && exists(dir, "loss.png"));
    CHECK(exists(dir, "generator.safetensors") && exists(dir, "discriminator.safetensors"));
    char path[700];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    char line[1024];
    int lines = 0, ok = 1;
    while (fgets(line, sizeof line, f))
        lines++, ok &= strstr(line, "\"fd\": ") && strstr(line, "\"class_acc\": 0") && strstr(line, "\"class_hist\": [") &&
                       strstr(line, "\"real_confident\": ") && strstr(line, "\"real_acc\": 0");
    fclose(f);
    CHECK_MSG(lines == 2 && ok, "metrics.jsonl: %d lines, last %s", lines, line);
    /* a checkpoint is a weights file: sample class 3 from it */
    rc = nbt_nabla("gan --sample --weights %s/generator.safetensors --class 3 --count 8 --out %s/three.png", dir, dir);
    CHECK_MSG(rc == 0 && strstr(nbt_out, "class 3, Dress"), "sample: %s %s", nbt_out, nbt_err);
    CHECK(exists(dir, "three.png"));
    CHECK(nbt_nabla("gan --sample --variant gan --weights %s/generator.safetensors --out %s/x.png", dir, dir) == 1 &&
          strstr(nbt_err, "cgan generator"));
    CHECK(nbt_nabla("gan --sample --weights %s/discriminator.safetensors --out %s/x.png", dir, dir) == 1 &&
          strstr(nbt_err, "not a generator"));
    /* --minutes: a budget this small ends training after its first step,
     * and that epoch still writes its outputs */
    rc = nbt_nabla("gan --variant dcgan --epochs 3 --minutes 0.000001 --limit-train 96 --batch 32 --g-config 8,4 "
                   "--d-config 4 --eval-samples 20 --threads 1 --ema 0.99 --real-label 0.9 --lr-d 1e-4 "
                   "--classifier %s --out %s/minutes",
                   cls, dir);
    CHECK_MSG(rc == 0 && strstr(nbt_out, "epoch 1/3  steps 1 ") && strstr(nbt_out, "stopped after step 1 (--minutes)") &&
                  !strstr(nbt_out, "epoch 2/3"),
              "gan --minutes: %s %s", nbt_out, nbt_err);
    snprintf(path, sizeof path, "%s/minutes/metrics.jsonl", dir);
    f = fopen(path, "r");
    CHECK(f && fgets(line, sizeof line, f) && strstr(line, "\"steps\": 1,") && strstr(line, "\"elapsed\": "));
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/minutes", dir);
    CHECK(exists(path, "samples_001.png") && exists(path, "generator.safetensors"));
    CHECK(exists(path, "generator_ema.safetensors"));
    rc = nbt_nabla("gan --sample --weights %s/generator_ema.safetensors --count 4 --out %s/ema.png", path, dir);
    CHECK_MSG(rc == 0 && exists(dir, "ema.png"), "sample from the average: %s", nbt_err);
}
