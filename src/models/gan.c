/* The generator/discriminator pairs of the GAN family, as named models that
 * save and rebuild like the zoo's, and sampling from a generator. */
#include "../core/internal.h"
#include <stdio.h>
#include <stdlib.h>

#define NB__GAN_MAX_LAYERS 8
#define NB__IMG 784            /* 1 x 28 x 28 */

static const char *const variant_names[NB_GAN_VARIANT_COUNT] = {"gan", "dcgan", "cgan", "wgan", "cyclegan"};

const char *nb_gan_variant_name(nb_gan_variant v)
{
    return v >= 0 && v < NB_GAN_VARIANT_COUNT ? variant_names[v] : NULL;
}

nb_gan_variant nb_gan_variant_from_name(const char *name)
{
    for (int v = 0; v < NB_GAN_VARIANT_COUNT; v++)
        if (name && !strcmp(name, variant_names[v])) return (nb_gan_variant)v;
    nb__fail(NB_ERR_ARG, "unknown GAN variant '%s' (known: gan, dcgan, cgan, wgan, cyclegan)", name ? name : "(null)");
    return NB_GAN_UNKNOWN;
}

/* "100,256,512" into sizes; the count, or -1 when malformed. */
static int parse_sizes(const char *config, int *sizes, int max)
{
    int n = 0;
    for (const char *p = config; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 4096 || n == max) return -1;
        sizes[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

/* ---- Unflatten: (N, C*H*W) -> (N, C, H, W), torch.nn.Unflatten(1, (C, H, W)) */

static nb_tensor *unflatten_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    return nb_reshape(ctx, x, NB_SHAPE(x->shape[0], m->i[0], m->i[1], m->i[2]));
}

static void unflatten_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "dim=1, unflattened_size=(%lld, %lld, %lld)", (long long)m->i[0], (long long)m->i[1],
             (long long)m->i[2]);
}

static const nb_module_vt unflatten_vt = {"Unflatten", unflatten_forward, unflatten_describe, NULL};

static nb_module *unflatten(nb_model *m, int c, int h, int w)
{
    nb_module *mod = nb_module_new(m, &unflatten_vt);
    if (mod) mod->i[0] = c, mod->i[1] = h, mod->i[2] = w;
    return mod;
}

/* Append the modules to seq, stopping at the first failure. */
static nb_status add_all(nb_module *seq, nb_module *const *mods, int n)
{
    nb_status s = seq ? NB_OK : NB_ERR_NOMEM;
    for (int i = 0; i < n && !s; i++) s = nb_sequential_add(seq, mods[i]);
    return s;
}
#define ADD_ALL(seq, ...) add_all(seq, (nb_module *[]){__VA_ARGS__}, (int)(sizeof((nb_module *[]){__VA_ARGS__}) / sizeof(nb_module *)))

/* ---- MLPs: GAN, WGAN -------------------------------------------------------- */

/* Linear nz -> h1 -> ... -> hk, LeakyReLU(0.2) after each, then Linear ->
 * 784, Tanh and the reshape to an image. */
static nb_status mlp_g(nb_model *m, const char *config, nb_rng *rng)
{
    int v[NB__GAN_MAX_LAYERS];
    int n = parse_sizes(config, v, NB__GAN_MAX_LAYERS);
    if (n < 2)
        return nb__fail(NB_ERR_ARG, "%s: config \"%s\" must be nz,h1,...,hk (2 to %d sizes)", m->name, config,
                        NB__GAN_MAX_LAYERS);
    nb_module *seq = m->root = nb_nn_sequential(m);
    nb_status s = seq ? NB_OK : NB_ERR_NOMEM;
    for (int i = 0; i + 1 < n && !s; i++)
        s = ADD_ALL(seq, nb_nn_linear(m, rng, v[i], v[i + 1], 1), nb_nn_leaky_relu(m, 0.2f));
    if (!s) s = ADD_ALL(seq, nb_nn_linear(m, rng, v[n - 1], NB__IMG, 1), nb_nn_tanh(m), unflatten(m, 1, 28, 28));
    return s;
}

/* Flatten, Linear 784 -> h1, LeakyReLU(0.2), ..., Linear -> 1 (a logit). */
static nb_status mlp_d(nb_model *m, const char *config, nb_rng *rng)
{
    int v[NB__GAN_MAX_LAYERS];
    int n = parse_sizes(config, v, NB__GAN_MAX_LAYERS);
    if (n < 1)
        return nb__fail(NB_ERR_ARG, "%s: config \"%s\" must be hidden sizes h1,...,hk (1 to %d)", m->name, config,
                        NB__GAN_MAX_LAYERS);
    nb_module *seq = m->root = nb_nn_sequential(m);
    nb_status s = ADD_ALL(seq, nb_nn_flatten(m, 1));
    for (int i = 0; i < n && !s; i++)
        s = ADD_ALL(seq, nb_nn_linear(m, rng, i ? v[i - 1] : NB__IMG, v[i], 1), nb_nn_leaky_relu(m, 0.2f));
    if (!s) s = ADD_ALL(seq, nb_nn_linear(m, rng, v[n - 1], 1, 1));
    return s;
}

/* ---- DCGAN (Radford et al. 2015, for 28x28) and the conditional DCGAN of CGAN -- */

/* The paper's initialisation, as its reference code: conv weights N(0, 0.02),
 * BatchNorm weights N(1, 0.02), biases 0. Conv weights are the 4-d
 * parameters; the 1-d "weight"s of these models are norm weights. */
static void init_paper(nb_model *m, nb_rng *rng)
{
    for (int i = 0; i < m->nparams; i++) {
        nb_param *p = &m->params[i];
        if (p->buffer) continue;
        size_t len = strlen(p->name);
        int is_weight = len >= 6 && !strcmp(p->name + len - 6, "weight");
        if (is_weight && p->t.ndim == 4) nb_init_normal(&p->t, rng, 0.0f, 0.02f);
        else if (is_weight) nb_init_normal(&p->t, rng, 1.0f, 0.02f);
        else nb_init_constant(&p->t, 0.0f);
    }
}

/* z as (nz + extra, 1, 1) -> ConvT 7x7 -> 2ngf x 7x7 -> ConvT 4x4/2 -> ngf x
 * 14x14 -> ConvT 4x4/2 -> 1 x 28x28, Tanh; CGAN's extra 10 input channels
 * are the one-hot label. */
static nb_status build_dcgan_g(nb_model *m, const char *config, nb_rng *rng, int extra_in)
{
    int v[2];
    if (parse_sizes(config, v, 2) != 2)
        return nb__fail(NB_ERR_ARG, "%s: config \"%s\" must be nz,ngf like 100,32", m->name, config);
    int in = v[0] + extra_in, ngf = v[1];
    nb_conv_transpose2d_opts up = {.stride = {2, 2}, .padding = {1, 1}};
    nb_status s = ADD_ALL(m->root = nb_nn_sequential(m), unflatten(m, in, 1, 1),
                          nb_nn_conv_transpose2d(m, rng, in, 2 * ngf, 7, 7, NULL, 0),     /* 7x7 */
                          nb_nn_batch_norm2d(m, 2 * ngf, 1e-5f, 0.1f, 1), nb_nn_relu(m),
                          nb_nn_conv_transpose2d(m, rng, 2 * ngf, ngf, 4, 4, &up, 0),     /* 14x14 */
                          nb_nn_batch_norm2d(m, ngf, 1e-5f, 0.1f, 1), nb_nn_relu(m),
                          nb_nn_conv_transpose2d(m, rng, ngf, 1, 4, 4, &up, 0),           /* 28x28 */
                          nb_nn_tanh(m));
    if (!s) init_paper(m, rng);
    return s;
}

/* (1 + extra) x 28x28 -> Conv 4x4/2 -> ndf x 14x14 -> Conv 4x4/2 -> 2ndf x
 * 7x7 -> Conv 7x7 -> 1 logit; CGAN's extra 10 input planes are the one-hot
 * label. */
static nb_status build_dcgan_d(nb_model *m, const char *config, nb_rng *rng, int extra_in)
{
    int ndf;
    if (parse_sizes(config, &ndf, 1) != 1)
        return nb__fail(NB_ERR_ARG, "%s: config \"%s\" must be ndf like 32", m->name, config);
    nb_conv2d_opts down = {.stride = {2, 2}, .padding = {1, 1}};
    nb_status s = ADD_ALL(m->root = nb_nn_sequential(m),
                          nb_nn_conv2d(m, rng, 1 + extra_in, ndf, 4, 4, &down, 0), nb_nn_leaky_relu(m, 0.2f), /* 14x14 */
                          nb_nn_conv2d(m, rng, ndf, 2 * ndf, 4, 4, &down, 0),                         /* 7x7 */
                          nb_nn_batch_norm2d(m, 2 * ndf, 1e-5f, 0.1f, 1), nb_nn_leaky_relu(m, 0.2f),
                          nb_nn_conv2d(m, rng, 2 * ndf, 1, 7, 7, NULL, 0), nb_nn_flatten(m, 1));    /* (N, 1) */
    if (!s) init_paper(m, rng);
    return s;
}

static nb_status dcgan_g(nb_model *m, const char *c, nb_rng *r) { return build_dcgan_g(m, c, r, 0); }
static nb_status cgan_g(nb_model *m, const char *c, nb_rng *r) { return build_dcgan_g(m, c, r, 10); }
static nb_status dcgan_d(nb_model *m, const char *c, nb_rng *r) { return build_dcgan_d(m, c, r, 0); }
static nb_status cgan_d(nb_model *m, const char *c, nb_rng *r) { return build_dcgan_d(m, c, r, 10); }

/* ---- CycleGAN (Zhu et al. 2017, scaled to 28x28) --------------------------------- */

static nb_module *conv(nb_model *m, nb_rng *rng, int in, int out, int k, int stride, int pad)
{
    nb_conv2d_opts o = {.stride = {stride, stride}, .padding = {pad, pad}};
    return nb_nn_conv2d(m, rng, in, out, k, k, &o, 1);
}

/* conv 3x3, IN, ReLU, conv 3x3, IN; the residual adds the input. */
static nb_module *res_block(nb_model *m, nb_rng *rng, int ch)
{
    nb_module *body = nb_nn_sequential(m);
    if (ADD_ALL(body, conv(m, rng, ch, ch, 3, 1, 1), nb_nn_instance_norm2d(m, ch, 1e-5f, 0), nb_nn_relu(m),
                conv(m, rng, ch, ch, 3, 1, 1), nb_nn_instance_norm2d(m, ch, 1e-5f, 0)))
        return NULL;
    return nb_nn_residual(m, body);
}

static nb_status cyclegan_g(nb_model *m, const char *config, nb_rng *rng)
{
    int v[2];
    if (parse_sizes(config, v, 2) != 2 || v[1] > 16)
        return nb__fail(NB_ERR_ARG, "cyclegan_generator: config \"%s\" must be ngf,blocks like 16,3 (blocks <= 16)", config);
    int f = v[0];
    nb_conv_transpose2d_opts up = {.stride = {2, 2}, .padding = {1, 1}, .output_padding = {1, 1}};
    nb_module *seq = m->root = nb_nn_sequential(m);
    nb_status s = ADD_ALL(seq, conv(m, rng, 1, f, 7, 1, 3), nb_nn_instance_norm2d(m, f, 1e-5f, 0), nb_nn_relu(m),
                          conv(m, rng, f, 2 * f, 3, 2, 1), nb_nn_instance_norm2d(m, 2 * f, 1e-5f, 0), nb_nn_relu(m),
                          conv(m, rng, 2 * f, 4 * f, 3, 2, 1), nb_nn_instance_norm2d(m, 4 * f, 1e-5f, 0), nb_nn_relu(m));
    for (int b = 0; b < v[1] && !s; b++) s = ADD_ALL(seq, res_block(m, rng, 4 * f));
    if (!s)
        s = ADD_ALL(seq, nb_nn_conv_transpose2d(m, rng, 4 * f, 2 * f, 3, 3, &up, 1),
                    nb_nn_instance_norm2d(m, 2 * f, 1e-5f, 0), nb_nn_relu(m),
                    nb_nn_conv_transpose2d(m, rng, 2 * f, f, 3, 3, &up, 1),
                    nb_nn_instance_norm2d(m, f, 1e-5f, 0), nb_nn_relu(m),
                    conv(m, rng, f, 1, 7, 1, 3), nb_nn_tanh(m));
    if (!s) init_paper(m, rng);
    return s;
}

static nb_status cyclegan_d(nb_model *m, const char *config, nb_rng *rng)
{
    int f;
    if (parse_sizes(config, &f, 1) != 1)
        return nb__fail(NB_ERR_ARG, "cyclegan_discriminator: config \"%s\" must be ndf like 32", config);
    nb_status s = ADD_ALL(m->root = nb_nn_sequential(m),
                          conv(m, rng, 1, f, 4, 2, 1), nb_nn_leaky_relu(m, 0.2f),                 /* 14x14 */
                          conv(m, rng, f, 2 * f, 4, 2, 1), nb_nn_instance_norm2d(m, 2 * f, 1e-5f, 0),
                          nb_nn_leaky_relu(m, 0.2f),                                               /* 7x7 */
                          conv(m, rng, 2 * f, 4 * f, 4, 1, 1), nb_nn_instance_norm2d(m, 4 * f, 1e-5f, 0),
                          nb_nn_leaky_relu(m, 0.2f),                                               /* 6x6 */
                          conv(m, rng, 4 * f, 1, 4, 1, 1));                                        /* 5x5 */
    if (!s) init_paper(m, rng);
    return s;
}

/* ---- the table ---------------------------------------------------------------- */

typedef struct {
    const char *name, *default_config;
    nb_gan_variant variant;
    int generator;
    nb_status (*build)(nb_model *m, const char *config, nb_rng *rng);
} gan_entry;

static const gan_entry table[] = {
    {"gan_generator", "100,256,512,1024", NB_GAN_GAN, 1, mlp_g},
    {"gan_discriminator", "512,256", NB_GAN_GAN, 0, mlp_d},
    /* DCGAN and CGAN at half the width of the usual 28x28 port (64): a
     * quarter of the FLOPs, and as good per step on Fashion-MNIST, so
     * better samples for the same CPU time */
    {"dcgan_generator", "100,32", NB_GAN_DCGAN, 1, dcgan_g},
    {"dcgan_discriminator", "32", NB_GAN_DCGAN, 0, dcgan_d},
    {"cgan_generator", "100,32", NB_GAN_CGAN, 1, cgan_g},
    {"cgan_discriminator", "32", NB_GAN_CGAN, 0, cgan_d},
    {"wgan_generator", "100,256,512,1024", NB_GAN_WGAN, 1, mlp_g},
    {"wgan_critic", "512,256", NB_GAN_WGAN, 0, mlp_d},
    {"cyclegan_generator", "16,3", NB_GAN_CYCLEGAN, 1, cyclegan_g},
    {"cyclegan_discriminator", "32", NB_GAN_CYCLEGAN, 0, cyclegan_d},
};
#define NTABLE (int)(sizeof table / sizeof table[0])

static const gan_entry *find_entry(const char *name)
{
    for (int i = 0; i < NTABLE; i++)
        if (name && !strcmp(name, table[i].name)) return &table[i];
    return NULL;
}

nb_status nb_gan_model_build(const char *name, const char *config, nb_rng *rng, nb_model **out)
{
    if (!out || !rng) return nb__fail(NB_ERR_ARG, "gan_model_build: NULL argument");
    *out = NULL;
    const gan_entry *e = find_entry(name);
    if (!e)
        return nb__fail(NB_ERR_NOTFOUND, "unknown GAN model '%s' (known: <variant>_generator, "
                                         "<variant>_discriminator, wgan_critic)", name ? name : "(null)");
    if (!config || !*config) config = e->default_config;
    nb_model *m = nb_model_new(name, config);
    if (!m) return NB_ERR_NOMEM;
    nb_status s = e->build(m, config, rng);
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}

nb_status nb_gan_model_load_file(const char *path, nb_model **out)
{
    if (!path || !out) return nb__fail(NB_ERR_ARG, "gan_model_load_file: NULL argument");
    *out = NULL;
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_load_header(path, &f);
    if (s) return s;
    const char *name = nb_safetensors_meta(f, "model"), *config = nb_safetensors_meta(f, "config");
    if (!name || !find_entry(name)) {
        s = nb__fail(NB_ERR_FORMAT, "%s: not a GAN model file (its model is '%s')", path, name ? name : "(none)");
        nb_safetensors_free(f);
        return s;
    }
    nb_rng rng;
    nb_rng_seed(&rng, 0);
    nb_model *m = NULL;
    s = nb_gan_model_build(name, config, &rng, &m);
    nb_safetensors_free(f);
    if (!s) s = nb_model_load(m, path);
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}

nb_gan_variant nb_gan_model_variant(const nb_model *m, int *is_generator)
{
    const gan_entry *e = m ? find_entry(m->name) : NULL;
    if (is_generator) *is_generator = e ? e->generator : 0;
    return e ? e->variant : NB_GAN_UNKNOWN;
}

int nb_gan_latent_size(const nb_model *g)
{
    int gen = 0;
    nb_gan_variant v = nb_gan_model_variant(g, &gen);
    if (!gen || v == NB_GAN_CYCLEGAN) return 0;
    return atoi(g->config);   /* every other generator's config starts with nz */
}

/* ---- sampling ------------------------------------------------------------------ */

/* Generator output in [-1, 1] -> n x 784 floats in [0, 1]. */
static void to_unit(const nb_tensor *y, float *out, int64_t n)
{
    nb_tensor_copy_out(y, out);
    for (int64_t i = 0; i < n * NB__IMG; i++) out[i] = 0.5f * (out[i] + 1.0f);
}

#define NB__SAMPLE_BATCH 500

nb_status nb_gan_generate(nb_model *g, nb_ctx *ctx, int64_t n, const int32_t *labels, float *out)
{
    int gen = 0;
    nb_gan_variant v = nb_gan_model_variant(g, &gen);
    if (!ctx || !out || n < 0 || !gen || v == NB_GAN_CYCLEGAN)
        return nb__fail(NB_ERR_ARG, "gan_generate: needs a noise-to-image generator (got '%s'), a context and an output",
                        g ? g->name : "(null)");
    if (v == NB_GAN_CGAN) {
        if (!labels) return nb__fail(NB_ERR_ARG, "gan_generate: a CGAN generator needs the labels");
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] > 9)
                return nb__fail(NB_ERR_ARG, "gan_generate: label %d outside [0, 10)", labels[i]);
    }
    int nz = nb_gan_latent_size(g), was_training = g->training, grad = nb_set_grad_enabled(ctx, 0);
    nb_model_train(g, 0);
    nb_status s = NB_OK;
    for (int64_t i0 = 0; i0 < n && !s; i0 += NB__SAMPLE_BATCH) {
        int64_t bn = n - i0 < NB__SAMPLE_BATCH ? n - i0 : NB__SAMPLE_BATCH;
        nb_ctx_reset(ctx);
        nb_tensor *z = nb_tensor_randn(ctx, NB_SHAPE(bn, nz));
        if (v == NB_GAN_CGAN) z = nb_gan_condition(ctx, z, labels + i0);
        nb_tensor *y = nb_model_forward(g, ctx, z);
        if (!y) s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_STATE;
        else to_unit(y, out + i0 * NB__IMG, bn);
    }
    nb_ctx_reset(ctx);
    nb_model_train(g, was_training);
    nb_set_grad_enabled(ctx, grad);
    return s;
}

nb_status nb_gan_translate(nb_model *g, nb_ctx *ctx, const float *x, int64_t n, float *out)
{
    int gen = 0;
    if (nb_gan_model_variant(g, &gen) != NB_GAN_CYCLEGAN || !gen || !ctx || !x || !out || n < 0)
        return nb__fail(NB_ERR_ARG, "gan_translate: needs a CycleGAN generator (got '%s'), images and an output",
                        g ? g->name : "(null)");
    int was_training = g->training, grad = nb_set_grad_enabled(ctx, 0);
    nb_model_train(g, 0);
    nb_status s = NB_OK;
    for (int64_t i0 = 0; i0 < n && !s; i0 += NB__SAMPLE_BATCH) {
        int64_t bn = n - i0 < NB__SAMPLE_BATCH ? n - i0 : NB__SAMPLE_BATCH;
        nb_ctx_reset(ctx);
        nb_tensor *in = nb_tensor_from(ctx, NB_SHAPE(bn, 1, 28, 28), x + i0 * NB__IMG);
        nb_tensor *y = nb_model_forward(g, ctx, nb_add_scalar(ctx, nb_scale(ctx, in, 2.0f), -1.0f));
        if (!y) s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_STATE;
        else to_unit(y, out + i0 * NB__IMG, bn);
    }
    nb_ctx_reset(ctx);
    nb_model_train(g, was_training);
    nb_set_grad_enabled(ctx, grad);
    return s;
}
