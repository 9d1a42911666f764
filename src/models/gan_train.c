/* Training the GAN family: one discriminator step, one generator step, the
 * two optimizers, CycleGAN's image pool, and the classifier's scores. */
#include "../core/internal.h"
#include <math.h>
#include <stdio.h>

#define NB__IMG 784

nb_gan_opts nb_gan_defaults(nb_gan_variant v)
{
    nb_gan_opts o = {0};
    o.variant = v;
    o.lr = v == NB_GAN_WGAN ? 5e-5 : 2e-4;
    o.n_critic = 5;
    o.clip = 0.01f;
    o.lambda_cycle = 10.0f;
    o.lambda_identity = 0.5f;
    o.pool_size = 50;
    o.domain_a = 1u << 7;   /* sneaker */
    o.domain_b = 1u << 9;   /* ankle boot */
    o.real_label = 1.0f;
    o.seed = 1;
    return o;
}

/* The paper's optimizer of each variant: Adam(lr, betas 0.5, 0.999) as DCGAN
 * and CycleGAN, RMSprop for WGAN. */
static nb_optimizer *make_optim(nb_model *m, const nb_gan_opts *o, int generator)
{
    nb_optim_opts oo = nb_optim_defaults(o->variant == NB_GAN_WGAN ? NB_OPTIM_RMSPROP : NB_OPTIM_ADAM);
    oo.lr = !generator && o->lr_d > 0 ? o->lr_d : o->lr;
    oo.beta1 = 0.5;
    return nb_optim_new(m, &oo);
}

static const char *role_name(nb_gan_variant v, int generator)
{
    static const char *const names[NB_GAN_VARIANT_COUNT][2] = {
        {"gan_discriminator", "gan_generator"},     {"dcgan_discriminator", "dcgan_generator"},
        {"cgan_discriminator", "cgan_generator"},   {"wgan_critic", "wgan_generator"},
        {"cyclegan_discriminator", "cyclegan_generator"}};
    return names[v][generator != 0];
}

nb_status nb_gan_new(const nb_gan_opts *opts, nb_gan **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "gan_new: out is NULL");
    *out = NULL;
    nb_gan_opts o = opts ? *opts : nb_gan_defaults(NB_GAN_GAN);
    if (o.variant < 0 || o.variant >= NB_GAN_VARIANT_COUNT)
        return nb__fail(NB_ERR_ARG, "gan_new: unknown variant %d", (int)o.variant);
    if (!(o.lr > 0) || !(o.lr_d >= 0) || o.n_critic < 1 || !(o.clip > 0) || !(o.lambda_cycle >= 0) ||
        !(o.lambda_identity >= 0) || o.pool_size < 0 || o.pool_size > 100000 || !(o.real_label > 0 && o.real_label <= 1) ||
        !(o.ema >= 0 && o.ema < 1))
        return nb__fail(NB_ERR_ARG, "gan_new: lr and clip must be > 0, lr_d >= 0, n_critic >= 1, the lambdas >= 0, "
                                    "pool_size in [0, 100000], real_label in (0, 1], ema in [0, 1)");
    if (o.variant == NB_GAN_CYCLEGAN && o.ema > 0)
        return nb__fail(NB_ERR_ARG, "gan_new: ema averages a noise-to-image generator, not CycleGAN's");
    if (o.variant == NB_GAN_CYCLEGAN && (!(o.domain_a & 0x3ff) || !(o.domain_b & 0x3ff) || (o.domain_a & o.domain_b)))
        return nb__fail(NB_ERR_ARG, "gan_new: the CycleGAN domains must be non-empty, disjoint sets of classes 0-9");
    nb_gan *g = NB_MALLOC(sizeof *g);
    if (!g) return nb__fail(NB_ERR_NOMEM, "gan_new: out of memory");
    memset(g, 0, sizeof *g);
    snprintf(g->g_config, sizeof g->g_config, "%s", o.g_config ? o.g_config : "");
    snprintf(g->d_config, sizeof g->d_config, "%s", o.d_config ? o.d_config : "");
    o.g_config = g->g_config;
    o.d_config = g->d_config;
    g->opts = o;
    nb_rng rng;
    nb_rng_seed(&rng, o.seed);
    int two = o.variant == NB_GAN_CYCLEGAN;
    nb_status s = nb_gan_model_build(role_name(o.variant, 1), o.g_config, &rng, &g->g);
    if (!s) s = nb_gan_model_build(role_name(o.variant, 0), o.d_config, &rng, &g->d);
    if (!s && two) s = nb_gan_model_build(role_name(o.variant, 1), o.g_config, &rng, &g->g2);
    if (!s && two) s = nb_gan_model_build(role_name(o.variant, 0), o.d_config, &rng, &g->d2);
    if (!s && o.ema > 0) s = nb_gan_model_build(role_name(o.variant, 1), o.g_config, &rng, &g->g_ema);
    if (!s && g->g_ema) {   /* the average starts at G's initial state and is never trained */
        memcpy(g->g_ema->data, g->g->data, sizeof(float) * g->g->numel);
        nb_model_set_requires_grad(g->g_ema, 0);
    }
    if (!s && !((g->opt_g = make_optim(g->g, &o, 1)) && (g->opt_d = make_optim(g->d, &o, 0)))) s = NB_ERR_NOMEM;
    if (!s && two && !((g->opt_g2 = make_optim(g->g2, &o, 1)) && (g->opt_d2 = make_optim(g->d2, &o, 0)))) s = NB_ERR_NOMEM;
    for (int k = 0; k < 2 && !s && two && o.pool_size; k++)
        if (!(g->pool[k] = NB_MALLOC(sizeof(float) * NB__IMG * (size_t)o.pool_size)))
            s = nb__fail(NB_ERR_NOMEM, "gan_new: out of memory");
    if (s) {
        nb_gan_free(g);
        return s;
    }
    *out = g;
    return NB_OK;
}

void nb_gan_free(nb_gan *g)
{
    if (!g) return;
    nb_optim_free(g->opt_g);
    nb_optim_free(g->opt_d);
    nb_optim_free(g->opt_g2);
    nb_optim_free(g->opt_d2);
    nb_model_free(g->g);
    nb_model_free(g->d);
    nb_model_free(g->g2);
    nb_model_free(g->d2);
    nb_model_free(g->g_ema);
    NB_FREE(g->pool[0]);
    NB_FREE(g->pool[1]);
    NB_FREE(g);
}

nb_model *nb_gan_sampler(const nb_gan *g) { return g ? (g->g_ema ? g->g_ema : g->g) : NULL; }

/* ---- pieces ---------------------------------------------------------------------- */

nb_tensor *nb_gan_condition(nb_ctx *ctx, nb_tensor *z, const int32_t *labels)
{
    if (!z) return NULL;
    if (!labels || z->ndim != 2) return nb__op_fail(ctx, NB_ERR_ARG, "gan_condition: needs z (N, nz) and N labels");
    nb_tensor *onehot = nb_tensor_zeros(ctx, NB_SHAPE(z->shape[0], 10));
    if (!onehot) return NULL;
    for (int64_t i = 0; i < z->shape[0]; i++) {
        if (labels[i] < 0 || labels[i] > 9)
            return nb__op_fail(ctx, NB_ERR_ARG, "gan_condition: label %d outside [0, 10)", labels[i]);
        onehot->data[i * 10 + labels[i]] = 1.0f;
    }
    return nb_concat(ctx, (nb_tensor *[]){z, onehot}, 2, 1);
}

nb_tensor *nb_gan_condition_image(nb_ctx *ctx, nb_tensor *x, const int32_t *labels)
{
    if (!x) return NULL;
    if (!labels || x->ndim != 4)
        return nb__op_fail(ctx, NB_ERR_ARG, "gan_condition_image: needs images (N, C, H, W) and N labels");
    int64_t n = x->shape[0], plane = x->shape[2] * x->shape[3];
    nb_tensor *planes = nb_tensor_zeros(ctx, NB_SHAPE(n, 10, x->shape[2], x->shape[3]));
    if (!planes) return NULL;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] > 9)
            return nb__op_fail(ctx, NB_ERR_ARG, "gan_condition_image: label %d outside [0, 10)", labels[i]);
        float *p = planes->data + (i * 10 + labels[i]) * plane;
        for (int64_t k = 0; k < plane; k++) p[k] = 1.0f;
    }
    return nb_concat(ctx, (nb_tensor *[]){x, planes}, 2, 1);
}

/* [0, 1] -> [-1, 1], the range of the generators' Tanh. */
static nb_tensor *to_tanh_range(nb_ctx *ctx, nb_tensor *x) { return nb_add_scalar(ctx, nb_scale(ctx, x, 2.0f), -1.0f); }

/* G(z) for n fresh noise vectors (CGAN: conditioned on labels). */
static nb_tensor *generate(nb_gan *g, nb_ctx *ctx, int64_t n, const int32_t *labels)
{
    nb_tensor *z = nb_tensor_randn(ctx, NB_SHAPE(n, nb_gan_latent_size(g->g)));
    if (g->opts.variant == NB_GAN_CGAN) z = nb_gan_condition(ctx, z, labels);
    return nb_model_forward(g->g, ctx, z);
}

/* D(x) (CGAN: the image with the label's one-hot planes). */
static nb_tensor *discriminate(nb_gan *g, nb_model *d, nb_ctx *ctx, nb_tensor *x, const int32_t *labels)
{
    if (g->opts.variant == NB_GAN_CGAN) x = nb_gan_condition_image(ctx, x, labels);
    return nb_model_forward(d, ctx, x);
}

static float mean_of(const nb_tensor *t, int sigmoid)
{
    int64_t n = nb_tensor_numel(t);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += sigmoid ? 1.0 / (1.0 + exp(-(double)t->data[i])) : t->data[i];
    return (float)(s / (double)n);
}

static nb_tensor *bce_to(nb_ctx *ctx, nb_tensor *logits, float target)
{
    if (!logits) return NULL;
    return nb_bce_with_logits(ctx, logits, nb_tensor_full(ctx, logits->ndim, logits->shape, target), NB_REDUCTION_MEAN);
}

static nb_tensor *mse_to(nb_ctx *ctx, nb_tensor *y, float target)
{
    if (!y) return NULL;
    return nb_mse_loss(ctx, y, nb_tensor_full(ctx, y->ndim, y->shape, target), NB_REDUCTION_MEAN);
}

static nb_status ctx_error(nb_ctx *ctx) { return nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_STATE; }

/* Zero the model's gradients, back-propagate loss, step. */
static nb_status update(nb_ctx *ctx, nb_tensor *loss, nb_model *m1, nb_optimizer *o1, nb_model *m2, nb_optimizer *o2)
{
    if (!loss) return ctx_error(ctx);
    nb_model_zero_grad(m1);
    if (m2) nb_model_zero_grad(m2);
    nb_status s = nb_backward(ctx, loss);
    if (!s) s = nb_optim_step(o1);
    if (!s && o2) s = nb_optim_step(o2);
    return s;
}

/* CycleGAN's image pool (Shrivastava et al.): each fake is stored while the
 * pool fills; later, half the time it is swapped for a stored one, which D
 * sees instead, so D also remembers older generators. Returns a new arena
 * tensor of x's shape; x (values in [-1, 1]) is not changed. */
static nb_tensor *pool_query(nb_gan *g, int k, nb_ctx *ctx, nb_tensor *x)
{
    nb_tensor *y = x ? nb_tensor_from(ctx, x->ndim, x->shape, x->data) : NULL;
    if (!y || !g->opts.pool_size) return y;
    nb_rng *r = nb_ctx_rng(ctx);
    for (int64_t i = 0; i < y->shape[0]; i++) {
        float *img = y->data + i * NB__IMG;
        if (g->pool_n[k] < g->opts.pool_size) {
            memcpy(g->pool[k] + (size_t)g->pool_n[k]++ * NB__IMG, img, sizeof(float) * NB__IMG);
        } else if (nb_rng_uniform(r) >= 0.5f) {
            float tmp[NB__IMG], *slot = g->pool[k] + (size_t)nb_rng_below(r, (uint32_t)g->opts.pool_size) * NB__IMG;
            memcpy(tmp, slot, sizeof tmp);
            memcpy(slot, img, sizeof tmp);
            memcpy(img, tmp, sizeof tmp);
        }
    }
    return y;
}

static nb_status check_batch(nb_gan *g, nb_tensor *real, const int32_t *labels, nb_tensor *real_b, nb_gan_losses *out)
{
    if (!g || !real || !out) return nb__fail(NB_ERR_ARG, "gan step: NULL argument");
    int shape_ok = real->ndim == 4 && real->shape[1] == 1 && real->shape[2] == 28 && real->shape[3] == 28;
    if (!shape_ok) return nb__fail(NB_ERR_SHAPE, "gan step: real images must be (N, 1, 28, 28)");
    if (g->opts.variant == NB_GAN_CGAN && !labels) return nb__fail(NB_ERR_ARG, "gan step: CGAN needs the labels");
    if (g->opts.variant == NB_GAN_CYCLEGAN &&
        (!real_b || real_b->ndim != 4 || real_b->shape[0] != real->shape[0] || real_b->shape[1] != 1 ||
         real_b->shape[2] != 28 || real_b->shape[3] != 28))
        return nb__fail(NB_ERR_SHAPE, "gan step: CycleGAN needs a domain-B batch shaped as the domain-A one");
    return NB_OK;
}

/* Every trainable critic weight into [-c, c] (WGAN's Lipschitz constraint). */
static void clip_weights(nb_model *m, float c)
{
    for (int i = 0; i < m->nparams; i++) {
        nb_param *p = &m->params[i];
        if (p->buffer || !p->t.requires_grad) continue;
        int64_t n = nb_tensor_numel(&p->t);
        for (int64_t k = 0; k < n; k++) p->t.data[k] = fminf(fmaxf(p->t.data[k], -c), c);
    }
}

/* ---- the discriminator step ------------------------------------------------------- */

static nb_status cyclegan_step_d(nb_gan *g, nb_ctx *ctx, nb_tensor *a, nb_tensor *b, nb_gan_losses *out)
{
    int grad = nb_set_grad_enabled(ctx, 0);   /* the detached fakes */
    nb_tensor *fake_b = nb_model_forward(g->g, ctx, a), *fake_a = nb_model_forward(g->g2, ctx, b);
    nb_set_grad_enabled(ctx, grad);
    fake_b = pool_query(g, 0, ctx, fake_b);
    fake_a = pool_query(g, 1, ctx, fake_a);
    nb_tensor *real_b_out = nb_model_forward(g->d, ctx, b), *fake_b_out = nb_model_forward(g->d, ctx, fake_b);
    nb_tensor *real_a_out = nb_model_forward(g->d2, ctx, a), *fake_a_out = nb_model_forward(g->d2, ctx, fake_a);
    nb_tensor *loss_b = nb_scale(ctx, nb_add(ctx, mse_to(ctx, real_b_out, 1.0f), mse_to(ctx, fake_b_out, 0.0f)), 0.5f);
    nb_tensor *loss_a = nb_scale(ctx, nb_add(ctx, mse_to(ctx, real_a_out, 1.0f), mse_to(ctx, fake_a_out, 0.0f)), 0.5f);
    nb_tensor *loss = nb_add(ctx, loss_a, loss_b);
    if (!loss) return ctx_error(ctx);
    out->d_loss = nb_tensor_item(loss);
    out->d_real = 0.5f * (mean_of(real_b_out, 0) + mean_of(real_a_out, 0));
    out->d_fake = 0.5f * (mean_of(fake_b_out, 0) + mean_of(fake_a_out, 0));
    return update(ctx, loss, g->d, g->opt_d, g->d2, g->opt_d2);
}

/* The D step; fake: G's output for this batch (seen detached), or NULL to
 * make one without autograd. */
static nb_status step_d(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                        nb_tensor *fake, nb_gan_losses *out)
{
    nb_status s = check_batch(g, real, labels, real_b, out);
    if (s) return s;
    out->g_loss = NAN, out->wasserstein = NAN, out->cycle = NAN, out->identity = NAN, out->g_updated = 0;
    nb_model_set_requires_grad(g->d, 1);
    nb_tensor *x = to_tanh_range(ctx, real);
    if (g->opts.variant == NB_GAN_CYCLEGAN) {
        nb_model_set_requires_grad(g->d2, 1);
        s = cyclegan_step_d(g, ctx, x, to_tanh_range(ctx, real_b), out);
    } else {
        if (fake) {
            fake = nb_detach(ctx, fake);   /* no gradient of this step reaches G */
        } else {
            int grad = nb_set_grad_enabled(ctx, 0);   /* no tape through G at all */
            fake = generate(g, ctx, real->shape[0], labels);
            nb_set_grad_enabled(ctx, grad);
        }
        nb_tensor *d_real = discriminate(g, g->d, ctx, x, labels), *d_fake = discriminate(g, g->d, ctx, fake, labels);
        nb_tensor *loss;
        int wgan = g->opts.variant == NB_GAN_WGAN;
        if (wgan) /* the critic maximises E[C(real)] - E[C(fake)] */
            loss = nb_sub(ctx, nb_mean(ctx, d_fake, NULL, 0, 0), nb_mean(ctx, d_real, NULL, 0, 0));
        else
            loss = nb_add(ctx, bce_to(ctx, d_real, g->opts.real_label), bce_to(ctx, d_fake, 0.0f));
        if (!loss) return ctx_error(ctx);
        out->d_loss = nb_tensor_item(loss);
        out->d_real = mean_of(d_real, !wgan);
        out->d_fake = mean_of(d_fake, !wgan);
        if (wgan) out->wasserstein = out->d_real - out->d_fake;
        s = update(ctx, loss, g->d, g->opt_d, NULL, NULL);
        if (!s && wgan) clip_weights(g->d, g->opts.clip);
    }
    if (!s) g->d_steps++;
    return s;
}

/* ---- the generator step ------------------------------------------------------------- */

/* avg = d avg + (1 - d) m over the whole state, d warmed up by the step count
 * t >= 1 (see nb_gan_step_g). */
static void ema_update(nb_model *avg, const nb_model *m, float ema, int64_t t)
{
    double warm = (1.0 + (double)t) / (10.0 + (double)t);
    float d = (float)(warm < ema ? warm : ema), e = 1.0f - d;
    float *a = avg->data;
    const float *x = m->data;
    for (size_t i = 0; i < m->numel; i++) a[i] = d * a[i] + e * x[i];
}

static nb_status cyclegan_step_g(nb_gan *g, nb_ctx *ctx, nb_tensor *a, nb_tensor *b, nb_gan_losses *out)
{
    nb_tensor *fake_b = nb_model_forward(g->g, ctx, a), *fake_a = nb_model_forward(g->g2, ctx, b);
    nb_tensor *rec_a = nb_model_forward(g->g2, ctx, fake_b), *rec_b = nb_model_forward(g->g, ctx, fake_a);
    nb_tensor *adv = nb_add(ctx, mse_to(ctx, nb_model_forward(g->d, ctx, fake_b), 1.0f),
                            mse_to(ctx, nb_model_forward(g->d2, ctx, fake_a), 1.0f));
    nb_tensor *cycle = nb_add(ctx, nb_l1_loss(ctx, rec_a, a, NB_REDUCTION_MEAN), nb_l1_loss(ctx, rec_b, b, NB_REDUCTION_MEAN));
    nb_tensor *loss = nb_add(ctx, adv, nb_scale(ctx, cycle, g->opts.lambda_cycle));
    nb_tensor *idt = NULL;
    float lambda_idt = g->opts.lambda_cycle * g->opts.lambda_identity;
    if (lambda_idt > 0) {   /* G_AB should leave a B image alone, and G_BA an A image */
        idt = nb_add(ctx, nb_l1_loss(ctx, nb_model_forward(g->g, ctx, b), b, NB_REDUCTION_MEAN),
                     nb_l1_loss(ctx, nb_model_forward(g->g2, ctx, a), a, NB_REDUCTION_MEAN));
        loss = nb_add(ctx, loss, nb_scale(ctx, idt, lambda_idt));
    }
    if (!loss) return ctx_error(ctx);
    out->g_loss = nb_tensor_item(loss);
    out->cycle = 0.5f * nb_tensor_item(cycle);
    out->identity = idt ? 0.5f * nb_tensor_item(idt) : NAN;
    return update(ctx, loss, g->g, g->opt_g, g->g2, g->opt_g2);
}

nb_status nb_gan_step_d(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                        nb_gan_losses *out)
{
    return step_d(g, ctx, real, labels, real_b, NULL, out);
}

/* The G step; fake: G's output for this batch, recorded with autograd, or
 * NULL to make one. */
static nb_status step_g(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                        nb_tensor *fake, nb_gan_losses *out)
{
    nb_status s = check_batch(g, real, labels, real_b, out);
    if (s) return s;
    /* D is a fixed function in this step: gradients flow through it to G,
     * but none is recorded for its parameters. */
    nb_model_set_requires_grad(g->d, 0);
    if (g->d2) nb_model_set_requires_grad(g->d2, 0);
    if (g->opts.variant == NB_GAN_CYCLEGAN) {
        s = cyclegan_step_g(g, ctx, to_tanh_range(ctx, real), to_tanh_range(ctx, real_b), out);
    } else {
        if (!fake) fake = generate(g, ctx, real->shape[0], labels);
        nb_tensor *d_fake = discriminate(g, g->d, ctx, fake, labels);
        /* Non-saturating: maximise log D(G(z)) rather than minimise
         * log(1 - D(G(z))), which has no gradient while D wins. */
        nb_tensor *loss = g->opts.variant == NB_GAN_WGAN ? nb_scale(ctx, nb_mean(ctx, d_fake, NULL, 0, 0), -1.0f)
                                                         : bce_to(ctx, d_fake, 1.0f);
        s = loss ? NB_OK : ctx_error(ctx);
        if (!s) {
            out->g_loss = nb_tensor_item(loss);
            s = update(ctx, loss, g->g, g->opt_g, NULL, NULL);
        }
    }
    nb_model_set_requires_grad(g->d, 1);
    if (g->d2) nb_model_set_requires_grad(g->d2, 1);
    if (!s) {
        g->g_steps++;
        out->g_updated = 1;
        if (g->g_ema) ema_update(g->g_ema, g->g, g->opts.ema, g->g_steps);
    }
    return s;
}

nb_status nb_gan_step_g(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                        nb_gan_losses *out)
{
    return step_g(g, ctx, real, labels, real_b, NULL, out);
}

nb_status nb_gan_step(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                      nb_gan_losses *out)
{
    nb_status s = check_batch(g, real, labels, real_b, out);
    if (s) return s;
    int g_steps = g->opts.variant != NB_GAN_WGAN || (g->d_steps + 1) % g->opts.n_critic == 0;
    nb_tensor *fake = NULL;
    if (g_steps && g->opts.variant != NB_GAN_CYCLEGAN) {
        /* One G(z) serves both steps, as in PyTorch's DCGAN example: D sees
         * it detached, and the G step back-propagates through its tape,
         * which saves a generator forward per step. */
        fake = generate(g, ctx, real->shape[0], labels);
        if (!fake) return ctx_error(ctx);
    }
    s = step_d(g, ctx, real, labels, real_b, fake, out);
    if (s || !g_steps) return s;
    nb_gan_losses gl;
    s = step_g(g, ctx, real, labels, real_b, fake, &gl);
    if (!s) {
        out->g_loss = gl.g_loss;
        out->cycle = gl.cycle;
        out->identity = gl.identity;
        out->g_updated = 1;
    }
    return s;
}

/* ---- data ------------------------------------------------------------------------------ */

nb_status nb_gan_domain(const nb_dataset *d, unsigned mask, nb_dataset **out)
{
    if (!d || !out) return nb__fail(NB_ERR_ARG, "gan_domain: NULL argument");
    *out = NULL;
    int64_t per = (int64_t)d->c * d->h * d->w, n = 0;
    for (int64_t i = 0; i < d->n; i++) n += d->y[i] >= 0 && d->y[i] < 32 && (mask >> d->y[i] & 1);
    if (!n) return nb__fail(NB_ERR_ARG, "gan_domain: no image of the classes in mask 0x%x", mask);
    nb_dataset *s = NB_MALLOC(sizeof *s);
    if (s) {
        *s = *d;
        s->n = n;
        s->x = NB_MALLOC(sizeof(float) * (size_t)(n * per));
        s->y = NB_MALLOC(sizeof(int32_t) * (size_t)n);
    }
    if (!s || !s->x || !s->y) {
        if (s) NB_FREE(s->x), NB_FREE(s->y);
        NB_FREE(s);
        return nb__fail(NB_ERR_NOMEM, "gan_domain: out of memory");
    }
    for (int64_t i = 0, k = 0; i < d->n; i++)
        if (d->y[i] >= 0 && d->y[i] < 32 && (mask >> d->y[i] & 1)) {
            memcpy(s->x + k * per, d->x + i * per, sizeof(float) * (size_t)per);
            s->y[k++] = d->y[i];
        }
    *out = s;
    return NB_OK;
}

/* ---- scores ------------------------------------------------------------------------------ */

static int argmax10(const float *p)
{
    int best = 0;
    for (int k = 1; k < 10; k++)
        if (p[k] > p[best]) best = k;
    return best;
}

/* The fraction of n images whose top class probability is >= 0.7; hist
 * (may be NULL) counts their top classes, hits (may be NULL) those equal
 * to labels. */
static double confident_of(const float *probs, int64_t n, int64_t *hist, const int32_t *labels, int64_t *hits)
{
    int64_t confident = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *p = probs + i * 10;
        int c = argmax10(p);
        if (hist) hist[c]++;
        if (hits) *hits += c == labels[i];
        confident += p[c] >= 0.7f;
    }
    return n ? (double)confident / (double)n : NAN;
}

/* The classifier on n real images: probs from it, their labels. */
static void tally_real(const float *probs, const int32_t *labels, int64_t n, nb_gan_metrics *out)
{
    int64_t hits = 0;
    out->real_confident = confident_of(probs, n, NULL, labels, &hits);
    out->real_acc = n ? (double)hits / (double)n : NAN;
}

static const int img_shape[3] = {1, 28, 28};

/* Translations of both test domains, their classes, the cycle L1 and the
 * Fréchet distance of A->B translations to real B images. */
static nb_status score_cyclegan(nb_gan *g, nb_model *cls, nb_ctx *ctx, const nb_dataset *test, int64_t n,
                                nb_gan_metrics *out, int nfeat)
{
    nb_dataset *dom[2] = {NULL, NULL};
    nb_status s = nb_gan_domain(test, g->opts.domain_a, &dom[0]);
    if (!s) s = nb_gan_domain(test, g->opts.domain_b, &dom[1]);
    int64_t na = dom[0] && dom[0]->n < n ? dom[0]->n : n, nbb = dom[1] && dom[1]->n < n ? dom[1]->n : n;
    int64_t most = na > nbb ? na : nbb;
    float *fake = NB_MALLOC(sizeof(float) * NB__IMG * (size_t)most), *rec = NB_MALLOC(sizeof(float) * NB__IMG * (size_t)most);
    float *probs = NB_MALLOC(sizeof(float) * 10 * (size_t)(na + nbb));
    float *feat_fake = NB_MALLOC(sizeof(float) * (size_t)(nfeat * na)), *feat_real = NB_MALLOC(sizeof(float) * (size_t)(nfeat * nbb));
    if (!s && (!fake || !rec || !probs || !feat_fake || !feat_real)) s = nb__fail(NB_ERR_NOMEM, "gan_evaluate: out of memory");
    int64_t hits = 0;
    double l1 = 0;
    for (int dir = 0; dir < 2 && !s; dir++) {   /* 0: A -> B -> A, 1: B -> A -> B */
        int64_t m = dir ? nbb : na;
        nb_model *fwd = dir ? g->g2 : g->g, *back = dir ? g->g : g->g2;
        unsigned target = dir ? g->opts.domain_a : g->opts.domain_b;
        float *p = probs + (dir ? na * 10 : 0);
        s = nb_gan_translate(fwd, ctx, dom[dir]->x, m, fake);
        if (!s) s = nb_gan_translate(back, ctx, fake, m, rec);
        if (!s) s = nb_classifier_run(cls, ctx, fake, m, img_shape, dir ? NULL : feat_fake, NULL, p, 10);
        for (int64_t i = 0; i < m && !s; i++) hits += target >> argmax10(p + i * 10) & 1;
        for (int64_t i = 0; i < m * NB__IMG && !s; i++) l1 += fabsf(rec[i] - dom[dir]->x[i]);
    }
    if (!s) out->confident = confident_of(probs, na + nbb, out->hist, NULL, NULL);   /* before probs holds the real images' */
    if (!s) s = nb_classifier_run(cls, ctx, dom[1]->x, nbb, img_shape, feat_real, NULL, probs, 10);
    if (!s) s = nb_frechet_distance(feat_real, nbb, feat_fake, na, nfeat, &out->fd);
    if (!s) {
        tally_real(probs, dom[1]->y, nbb, out);
        out->target_rate = (double)hits / (double)(na + nbb);
        out->cycle_l1 = l1 / ((double)(na + nbb) * NB__IMG);
        out->n = na + nbb;
    }
    NB_FREE(fake), NB_FREE(rec), NB_FREE(probs), NB_FREE(feat_fake), NB_FREE(feat_real);
    nb_dataset_free(dom[0]);
    nb_dataset_free(dom[1]);
    return s;
}

nb_status nb_gan_evaluate(nb_gan *g, nb_model *cls, nb_ctx *ctx, const nb_dataset *test, int64_t n, nb_gan_metrics *out)
{
    if (!g || !cls || !ctx || !test || !out || n < 2)
        return nb__fail(NB_ERR_ARG, "gan_evaluate: NULL argument or fewer than 2 samples");
    if (test->c != 1 || test->h != 28 || test->w != 28)
        return nb__fail(NB_ERR_SHAPE, "gan_evaluate: test images must be 1x28x28");
    memset(out, 0, sizeof *out);
    out->cond_acc = out->target_rate = out->cycle_l1 = out->real_confident = out->real_acc = NAN;
    if (n > test->n) n = test->n;
    int nfeat = 0;
    nb_status s = nb_classifier_run(cls, ctx, test->x, 1, img_shape, NULL, &nfeat, NULL, 10);
    if (s) return s;
    if (g->opts.variant == NB_GAN_CYCLEGAN) return score_cyclegan(g, cls, ctx, test, n, out, nfeat);
    float *fake = NB_MALLOC(sizeof(float) * NB__IMG * (size_t)n), *probs = NB_MALLOC(sizeof(float) * 10 * (size_t)n);
    float *feat_real = NB_MALLOC(sizeof(float) * (size_t)(nfeat * n)), *feat_fake = NB_MALLOC(sizeof(float) * (size_t)(nfeat * n));
    int32_t *labels = NB_MALLOC(sizeof(int32_t) * (size_t)n);
    if (!fake || !probs || !feat_real || !feat_fake || !labels) s = nb__fail(NB_ERR_NOMEM, "gan_evaluate: out of memory");
    for (int64_t i = 0; i < n && !s; i++) labels[i] = (int32_t)(i % 10);
    if (!s) s = nb_gan_generate(nb_gan_sampler(g), ctx, n, labels, fake);
    if (!s) s = nb_classifier_run(cls, ctx, fake, n, img_shape, feat_fake, NULL, probs, 10);
    if (!s) {   /* before probs holds the real images' */
        int64_t hits = 0;
        out->confident = confident_of(probs, n, out->hist, labels, &hits);
        if (g->opts.variant == NB_GAN_CGAN) out->cond_acc = (double)hits / (double)n;
        out->n = n;
    }
    if (!s) s = nb_classifier_run(cls, ctx, test->x, n, img_shape, feat_real, NULL, probs, 10);
    if (!s) s = nb_frechet_distance(feat_real, n, feat_fake, n, nfeat, &out->fd);
    if (!s) tally_real(probs, test->y, n, out);
    NB_FREE(fake), NB_FREE(probs), NB_FREE(feat_real), NB_FREE(feat_fake), NB_FREE(labels);
    return s;
}
