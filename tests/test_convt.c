/* The GAN building blocks: conv_transpose2d and instance_norm against
 * PyTorch (tests/fixtures/convt.safetensors and instnorm.safetensors, from
 * scripts/gen_gan_fixtures.py), their errors and thread-count independence,
 * the ConvTranspose2d and InstanceNorm2d modules, their summary rows, and
 * freezing a model (nb_model_set_requires_grad) or detaching a tensor in a
 * generator -> discriminator chain.
 *
 * Tolerance against torch, per tensor: max_i |a_i - b_i| <= 1e-4 * max_i |b_i|
 * (sums run in a different order in the two libraries). */
#include "test.h"
#include "nabla/summary.h"
#include <stdint.h>
#include <stdlib.h>

/* ---- fixtures ---------------------------------------------------------------- */

/* The inputs of the fixtures: lowbias32 of i + seed * 0x9E3779B9, top 24
 * bits mapped to [-1, 1) (see the script). */
static float hashed(uint32_t i, uint32_t seed)
{
    uint32_t h = i + seed * 0x9E3779B9u;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    return (float)((double)(h >> 8) / 8388608.0 - 1.0);
}

/* hashed values * scale + shift, as the script's tensor(shape, seed, scale) + shift */
static nb_tensor *hashed_tensor(nb_ctx *ctx, int nd, const int64_t *shape, uint32_t seed, float scale, float shift)
{
    nb_tensor *t = nb_tensor_new(ctx, nd, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = hashed((uint32_t)i, seed) * scale + shift;
    return t;
}

/* max|a - b| <= rtol * max|b| over n elements; reports the worst element. */
static int close_scaled(const char *cfg, const char *what, const float *a, const float *b, int64_t n, double rtol)
{
    double scale = 0, worst = -1;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = d, wi = i;   /* NaN counts as worst */
    }
    if (n && !(worst <= rtol * scale)) {
        nbt_fail(__FILE__, __LINE__, "%s.%s[%lld] = %.9g, torch %.9g (|diff| %.3g > %.0e * max|torch| %.3g)", cfg,
                 what, (long long)wi, a[wi], b[wi], worst, rtol, scale);
        return 0;
    }
    return 1;
}

/* Backward of sum(y * r) (r hashed with seed 4), then y, dx, dw, db compared
 * with the fixture's NAME.y, .dx, .dw, .db (those of NULL tensors skipped). */
static int compare_with_torch(const nb_safetensors *f, const char *cfg, nb_ctx *ctx, nb_tensor *y, nb_tensor *x,
                              nb_tensor *w, nb_tensor *b)
{
    char key[96];
    snprintf(key, sizeof key, "%s.y", cfg);
    const nb_st_tensor *ty = nb_safetensors_find(f, key);
    if (!y || !ty || ty->numel != nb_tensor_numel(y)) {
        nbt_fail(__FILE__, __LINE__, "%s: forward failed or wrong size: %s", cfg, nb_last_error());
        return 0;
    }
    nb_tensor *r = hashed_tensor(ctx, y->ndim, y->shape, 4, 1.0f, 0.0f);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    if (!loss || nb_backward(ctx, loss) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "%s: backward failed: %s", cfg, nb_last_error());
        return 0;
    }
    const struct { const char *name; const nb_tensor *t; const float *v; } cmp[] = {
        {"y", y, y->data}, {"dx", x, x->grad}, {"dw", w, w ? w->grad : NULL}, {"db", b, b ? b->grad : NULL}};
    for (int i = 0; i < 4; i++) {
        if (!cmp[i].t) continue;
        snprintf(key, sizeof key, "%s.%s", cfg, cmp[i].name);
        const nb_st_tensor *ref = nb_safetensors_find(f, key);
        if (!ref || ref->numel != nb_tensor_numel(cmp[i].t) || !cmp[i].v) {
            nbt_fail(__FILE__, __LINE__, "%s: missing %s (fixture or gradient)", cfg, cmp[i].name);
            return 0;
        }
        if (!close_scaled(cfg, cmp[i].name, cmp[i].v, ref->data, ref->numel, 1e-4)) return 0;
    }
    return 1;
}

/* The configuration's numbers (n of them), or NULL after a failure. */
static const float *config(const nb_safetensors *f, const char *cfg, int64_t n)
{
    char key[96];
    snprintf(key, sizeof key, "%s.cfg", cfg);
    const nb_st_tensor *ct = nb_safetensors_find(f, key);
    if (!ct || ct->numel != n) {
        nbt_fail(__FILE__, __LINE__, "%s: bad configuration record", cfg);
        return NULL;
    }
    return ct->data;
}

static int check_convt(const nb_safetensors *f, const char *cfg)
{
    const float *c = config(f, cfg, 20);
    if (!c) return 0;
    int v[20];
    for (int i = 0; i < 20; i++) v[i] = (int)c[i];
    const int64_t N = v[0], C = v[1], H = v[2], W = v[3], O = v[4], kh = v[5], kw = v[6];
    const int groups = v[15], bias = v[16], xstep = v[17], wlog2 = v[18];
    nb_conv_transpose2d_opts o = {{v[7], v[8]}, {v[9], v[10]}, {v[11], v[12]}, {v[13], v[14]}, groups};
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *base = hashed_tensor(ctx, 4, (int64_t[]){N, C, H, W * xstep}, 1, 1.0f, 0.0f);
    nb_tensor *x = xstep > 1 ? nb_slice(ctx, base, 3, 0, INT64_MAX, xstep) : base;
    nb_tensor *w = hashed_tensor(ctx, 4, (int64_t[]){C, O / groups, kh, kw}, 2, ldexpf(1.0f, wlog2), 0.0f);
    nb_tensor *b = bias ? hashed_tensor(ctx, 1, (int64_t[]){O}, 3, 0.5f, 0.0f) : NULL;
    int ok = 0;
    if (x && w && (!bias || b)) {
        nb_requires_grad(x, 1);
        nb_requires_grad(w, 1);
        if (b) nb_requires_grad(b, 1);
        ok = compare_with_torch(f, cfg, ctx, nb_conv_transpose2d(ctx, x, w, b, &o), x, w, b);
    }
    nb_ctx_free(ctx);
    return ok;
}

static int check_instnorm(const nb_safetensors *f, const char *cfg)
{
    const float *c = config(f, cfg, 6);
    if (!c) return 0;
    const int64_t N = (int64_t)c[0], C = (int64_t)c[1], H = (int64_t)c[2], W = (int64_t)c[3];
    const int affine = (int)c[4], transposed = (int)c[5];
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = transposed ? hashed_tensor(ctx, 4, (int64_t[]){N, C, W, H}, 1, 2.0f, 0.75f)
                              : hashed_tensor(ctx, 4, (int64_t[]){N, C, H, W}, 1, 2.0f, 0.75f);
    if (transposed) x = nb_transpose(ctx, x, 2, 3);
    nb_tensor *w = affine ? hashed_tensor(ctx, 1, (int64_t[]){C}, 2, 0.5f, 1.0f) : NULL;
    nb_tensor *b = affine ? hashed_tensor(ctx, 1, (int64_t[]){C}, 3, 0.5f, 0.0f) : NULL;
    int ok = 0;
    if (x && (!affine || (w && b))) {
        nb_requires_grad(x, 1);
        if (affine) {
            nb_requires_grad(w, 1);
            nb_requires_grad(b, 1);
        }
        ok = compare_with_torch(f, cfg, ctx, nb_instance_norm(ctx, x, w, b, 1e-5f), x, w, b);
    }
    nb_ctx_free(ctx);
    return ok;
}

/* Runs check on every NAME.cfg of a fixture file; the number of configurations. */
static int each_config(const char *file, int (*check)(const nb_safetensors *, const char *), int *ok)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(nbt_fixture(file), &f) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "%s: %s", file, nb_last_error());
        *ok = 0;
        return 0;
    }
    int configs = 0;
    for (int i = 0; i < f->n; i++) {
        const char *name = f->tensors[i].name, *dot = strrchr(name, '.');
        if (!dot || strcmp(dot, ".cfg")) continue;
        char cfg[64];
        snprintf(cfg, sizeof cfg, "%.*s", (int)(dot - name), name);
        configs++;
        *ok &= check(f, cfg);
    }
    nb_safetensors_free(f);
    return configs;
}

TEST(conv_transpose2d_matches_torch)
{
    int ok = 1, n = each_config("convt.safetensors", check_convt, &ok);
    CHECK(ok);
    CHECK_MSG(n >= 12, "fixture has %d configurations", n);
}

TEST(instance_norm_matches_torch)
{
    int ok = 1, n = each_config("instnorm.safetensors", check_instnorm, &ok);
    CHECK(ok);
    CHECK_MSG(n >= 4, "fixture has %d configurations", n);
}

/* ---- errors ------------------------------------------------------------------ */

#define X4(...) 4, (int64_t[]){__VA_ARGS__}
#define X3(...) 3, (int64_t[]){__VA_ARGS__}

/* Status of nb_conv_transpose2d on zero tensors of the given shapes (b_len 0: no bias). */
static nb_status convt_status(int xnd, const int64_t *xs, int wnd, const int64_t *ws, int64_t b_len,
                              const nb_conv_transpose2d_opts *o)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_tensor_zeros(ctx, xnd, xs), *w = nb_tensor_zeros(ctx, wnd, ws);
    nb_tensor *b = b_len ? nb_tensor_zeros(ctx, 1, (int64_t[]){b_len}) : NULL;
    nb_tensor *y = nb_conv_transpose2d(ctx, x, w, b, o);
    nb_status s = y ? NB_OK : nb_ctx_status(ctx);
    nb_ctx_free(ctx);
    return s;
}

TEST(conv_transpose2d_errors)
{
    /* output_padding must be below the stride or the dilation (torch) */
    const nb_conv_transpose2d_opts op_s = {{2, 2}, {0, 0}, {2, 0}, {1, 1}, 1};
    const nb_conv_transpose2d_opts op_1 = {{1, 1}, {0, 0}, {0, 1}, {1, 1}, 1};
    const nb_conv_transpose2d_opts op_d = {{1, 1}, {0, 0}, {1, 1}, {2, 2}, 1};
    const nb_conv_transpose2d_opts op_ok = {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 1};
    const nb_conv_transpose2d_opts g2 = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 2};
    const nb_conv_transpose2d_opts neg = {{1, 1}, {0, 0}, {-1, 0}, {1, 1}, 1};
    const nb_conv_transpose2d_opts pad = {{1, 1}, {2, 2}, {0, 0}, {1, 1}, 1};
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X4(2, 1, 3, 3), 0, &op_s), NB_ERR_ARG,
              "output padding must be smaller than either stride or dilation");
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X4(2, 1, 3, 3), 0, &op_1), NB_ERR_ARG, "output_padding=(0, 1)");
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X4(2, 1, 3, 3), 0, &op_d), NB_OK, "");
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X4(2, 1, 3, 3), 0, &op_ok), NB_OK, "");
    /* channels: weight (Cin, Cout/groups, kh, kw) */
    CHECK_ERR(convt_status(X4(1, 3, 3, 3), X4(2, 1, 3, 3), 0, NULL), NB_ERR_SHAPE,
              "weight [2, 1, 3, 3] expects input with 2 channels, input [1, 3, 3, 3] has 3");
    CHECK_ERR(convt_status(X4(1, 3, 3, 3), X4(3, 1, 3, 3), 0, &g2), NB_ERR_SHAPE,
              "[1, 3, 3, 3] has 3 channels, not divisible by groups=2");
    CHECK_ERR(convt_status(X4(1, 4, 3, 3), X4(4, 3, 3, 3), 6, &g2), NB_OK, "");
    CHECK_ERR(convt_status(X4(1, 4, 3, 3), X4(4, 3, 3, 3), 3, &g2), NB_ERR_SHAPE,
              "bias [3] must be 1-D with out_channels = 6");
    CHECK_ERR(convt_status(X3(2, 3, 3), X4(2, 1, 3, 3), 0, NULL), NB_ERR_SHAPE, "input must be 4-D");
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X3(2, 1, 3), 0, NULL), NB_ERR_SHAPE, "weight must be 4-D");
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X4(2, 0, 3, 3), 0, NULL), NB_ERR_SHAPE, "has an empty dimension");
    CHECK_ERR(convt_status(X4(1, 2, 3, 3), X4(2, 1, 3, 3), 0, &neg), NB_ERR_ARG, "negative option");
    /* (1-1)*1 - 4 + 2 + 1 = -1 */
    CHECK_ERR(convt_status(X4(1, 2, 1, 1), X4(2, 1, 3, 3), 0, &pad), NB_ERR_SHAPE, "output size -1x-1 is too small");
    /* a NULL input passes through and keeps the first message */
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *w = nb_tensor_zeros(ctx, X4(1, 1, 3, 3));
    nb_clear_error();
    CHECK(nb_conv_transpose2d(ctx, NULL, w, NULL, NULL) == NULL && !strcmp(nb_last_error(), ""));
    nb_ctx_free(ctx);
}

TEST(instance_norm_errors)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_tensor_zeros(ctx, X4(2, 3, 4, 4)), *w4 = nb_tensor_zeros(ctx, 1, (int64_t[]){4});
    CHECK(!nb_instance_norm(ctx, nb_tensor_zeros(ctx, 2, (int64_t[]){2, 3}), NULL, NULL, 1e-5f));
    CHECK(strstr(nb_last_error(), "spatial dimensions"));
    CHECK(!nb_instance_norm(ctx, x, w4, NULL, 1e-5f) && strstr(nb_last_error(), "weight [4] must be 1-D with 3"));
    CHECK(!nb_instance_norm(ctx, x, NULL, w4, 1e-5f) && strstr(nb_last_error(), "bias [4]"));
    CHECK(!nb_instance_norm(ctx, x, NULL, NULL, -1.0f) && strstr(nb_last_error(), "eps"));
    /* torch: one value per plane has no variance */
    CHECK(!nb_instance_norm(ctx, nb_tensor_zeros(ctx, X4(2, 3, 1, 1)), NULL, NULL, 1e-5f));
    CHECK(strstr(nb_last_error(), "more than 1 spatial element"));
    /* a constant plane normalises to 0 (eps keeps it finite) */
    nb_tensor *y = nb_instance_norm(ctx, nb_tensor_full(ctx, X4(1, 2, 3, 3), 5.0f), NULL, NULL, 1e-5f);
    CHECK(y);
    for (int i = 0; i < 18; i++) CHECK(y->data[i] == 0.0f);
    nb_ctx_free(ctx);
}

/* ---- thread-count independence --------------------------------------------------- */

/* y, dx, dw, db of a conv_transpose2d on seeded random inputs, malloc'ed; *n floats. */
static float *convt_results(int64_t N, int64_t C, int64_t H, int64_t O, int k, const nb_conv_transpose2d_opts *o,
                            int64_t *n)
{
    nb_ctx *ctx = nb_ctx_new(99);
    const int g = o->groups ? o->groups : 1;
    nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, X4(N, C, H, H)), 1);
    nb_tensor *w = nb_requires_grad(nb_tensor_randn(ctx, X4(C, O / g, k, k)), 1);
    nb_tensor *b = nb_requires_grad(nb_tensor_randn(ctx, 1, (int64_t[]){O}), 1);
    nb_tensor *y = nb_conv_transpose2d(ctx, x, w, b, o);
    nb_tensor *r = y ? nb_tensor_randn(ctx, y->ndim, y->shape) : NULL;
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    float *out = NULL;
    if (loss && nb_backward(ctx, loss) == NB_OK) {
        const nb_tensor *t[4] = {y, x, w, b};
        const float *v[4] = {y->data, x->grad, w->grad, b->grad};
        *n = 0;
        for (int i = 0; i < 4; i++) *n += nb_tensor_numel(t[i]);
        out = malloc((size_t)*n * sizeof(float));
        for (int i = 0, at = 0; out && i < 4; at += (int)nb_tensor_numel(t[i]), i++)
            memcpy(out + at, v[i], (size_t)nb_tensor_numel(t[i]) * sizeof(float));
    }
    nb_ctx_free(ctx);
    return out;
}

TEST(conv_transpose2d_threads_bit_identical)
{
    const struct { int64_t N, C, H, O; int k; nb_conv_transpose2d_opts o; } cases[] = {
        {50, 16, 7, 16, 4, {{2, 2}, {1, 1}, {0, 0}, {1, 1}, 1}},   /* blocks of 20, 20 and 10 samples */
        {6, 8, 20, 32, 4, {{2, 2}, {1, 1}, {0, 0}, {1, 1}, 1}},    /* one sample a block, six partial sums */
        {40, 16, 1, 512, 7, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}},  /* 1x1 noise to 7x7: 4 blocks of 10 */
        {3, 16, 9, 8, 3, {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 2}},     /* one block, groups */
        {1, 64, 8, 32, 4, {{2, 2}, {1, 1}, {0, 0}, {1, 1}, 1}},    /* batch 1: threaded GEMMs */
    };
    const int saved = nb_get_threads();
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && ok; i++) {
        int64_t n1 = 0, n2 = 0;
        nb_set_threads(1);
        float *a = convt_results(cases[i].N, cases[i].C, cases[i].H, cases[i].O, cases[i].k, &cases[i].o, &n1);
        nb_set_threads(2);
        float *b = convt_results(cases[i].N, cases[i].C, cases[i].H, cases[i].O, cases[i].k, &cases[i].o, &n2);
        if (!a || !b || n1 != n2) {
            nbt_fail(__FILE__, __LINE__, "case %zu: conv_transpose2d failed: %s", i, nb_last_error());
            ok = 0;
        } else if (memcmp(a, b, (size_t)n1 * sizeof(float))) {
            nbt_fail(__FILE__, __LINE__, "case %zu: 1 and 2 threads differ", i);
            ok = 0;
        }
        free(a);
        free(b);
    }
    nb_set_threads(saved);
    CHECK(ok);
}

/* ---- modules --------------------------------------------------------------------- */

TEST(conv_transpose2d_module)
{
    nb_ctx *ctx = nb_ctx_new(5);
    nb_model *m = nb_model_new("g", "");
    const nb_conv_transpose2d_opts up = {{2, 2}, {1, 1}, {0, 0}, {1, 1}, 1};
    nb_module *c1 = nb_nn_conv_transpose2d(m, nb_ctx_rng(ctx), 16, 8, 4, 4, &up, 1);
    CHECK(c1);
    CHECK(m->nparams == 2 && !strcmp(m->params[0].name, "weight") && !strcmp(m->params[1].name, "bias"));
    const nb_tensor *w = &m->params[0].t, *b = &m->params[1].t;
    CHECK(w->ndim == 4 && w->shape[0] == 16 && w->shape[1] == 8 && w->shape[2] == 4 && w->shape[3] == 4);
    CHECK(b->ndim == 1 && b->shape[0] == 8);
    /* torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = size(1)*kh*kw = 8*4*4 */
    const float bound = 1.0f / sqrtf(128.0f);
    float wmax = 0, bmax = 0;
    for (int i = 0; i < 2048; i++) wmax = fmaxf(wmax, fabsf(w->data[i]));
    for (int i = 0; i < 8; i++) bmax = fmaxf(bmax, fabsf(b->data[i]));
    CHECK_MSG(wmax <= bound && wmax > 0.95f * bound, "max |weight| %g, bound %g", wmax, bound);
    CHECK_MSG(bmax <= bound && bmax > 0.3f * bound, "max |bias| %g, bound %g", bmax, bound);
    char desc[192];
    c1->vt->describe(c1, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "16, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1)"), "repr: %s", desc);

    /* the module computes nb_conv_transpose2d with its parameters */
    m->root = c1;
    nb_tensor *x = nb_tensor_randn(ctx, X4(2, 16, 7, 7));
    nb_tensor *y = nb_model_forward(m, ctx, x);
    nb_tensor *ref = nb_conv_transpose2d(ctx, x, &m->params[0].t, &m->params[1].t, &up);
    CHECK(y && ref && y->shape[0] == 2 && y->shape[1] == 8 && y->shape[2] == 14 && y->shape[3] == 14);
    CHECK(!memcmp(y->data, ref->data, (size_t)nb_tensor_numel(y) * sizeof(float)));
    nb_model_free(m);

    /* every option in the repr, in torch's order; no bias; NULL opts */
    m = nb_model_new("g", "");
    const nb_conv_transpose2d_opts all = {{2, 1}, {0, 2}, {1, 0}, {2, 2}, 2};
    nb_module *c2 = nb_nn_conv_transpose2d(m, nb_ctx_rng(ctx), 4, 8, 3, 5, &all, 0);
    CHECK(c2 && m->nparams == 1 && m->params[0].t.shape[0] == 4 && m->params[0].t.shape[1] == 4);
    c2->vt->describe(c2, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "4, 8, kernel_size=(3, 5), stride=(2, 1), padding=(0, 2), dilation=(2, 2), "
                            "output_padding=(1, 0), groups=2, bias=False"),
              "repr: %s", desc);
    nb_module *c3 = nb_nn_conv_transpose2d(m, nb_ctx_rng(ctx), 100, 64, 4, 4, NULL, 1);
    CHECK(c3);
    c3->vt->describe(c3, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "100, 64, kernel_size=(4, 4), stride=(1, 1)"), "repr: %s", desc);

    /* bad settings */
    const nb_conv_transpose2d_opts g3 = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 3};
    const nb_conv_transpose2d_opts op = {{2, 2}, {0, 0}, {2, 2}, {1, 1}, 1};
    CHECK(nb_nn_conv_transpose2d(m, nb_ctx_rng(ctx), 4, 6, 3, 3, &g3, 1) == NULL);
    CHECK_ERR(NB_ERR_ARG, NB_ERR_ARG, "divisible by groups=3");
    CHECK(nb_nn_conv_transpose2d(m, nb_ctx_rng(ctx), 4, 6, 3, 3, &op, 1) == NULL);
    CHECK_ERR(NB_ERR_ARG, NB_ERR_ARG, "smaller than either stride or dilation");
    CHECK(nb_nn_conv_transpose2d(m, nb_ctx_rng(ctx), 4, 0, 3, 3, NULL, 1) == NULL);
    CHECK_ERR(NB_ERR_ARG, NB_ERR_ARG, "must be positive");
    nb_model_free(m);
    nb_ctx_free(ctx);
}

TEST(instance_norm2d_module)
{
    nb_ctx *ctx = nb_ctx_new(6);
    nb_model *m = nb_model_new("in", "");
    nb_module *plain = nb_nn_instance_norm2d(m, 3, 1e-5f, 0);
    CHECK(plain && m->nparams == 0);
    char desc[192];
    plain->vt->describe(plain, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False"), "%s", desc);
    nb_module *aff = nb_nn_instance_norm2d(m, 3, 1e-5f, 1);
    CHECK(aff && m->nparams == 2 && !strcmp(m->params[0].name, "weight") && !strcmp(m->params[1].name, "bias"));
    for (int c = 0; c < 3; c++) CHECK(m->params[0].t.data[c] == 1.0f && m->params[1].t.data[c] == 0.0f);
    aff->vt->describe(aff, desc, sizeof desc);
    CHECK_MSG(strstr(desc, "affine=True"), "%s", desc);

    /* per-instance statistics in train and eval mode alike: each plane of
     * the output has mean 0 and (biased) variance 1 */
    m->root = aff;
    nb_tensor *x = nb_tensor_randn(ctx, X4(2, 3, 5, 4));
    for (int64_t i = 0; i < nb_tensor_numel(x); i++) x->data[i] = 3.0f * x->data[i] + (float)(i / 20);
    for (int mode = 1; mode >= 0; mode--) {
        nb_model_train(m, mode);
        nb_tensor *y = nb_model_forward(m, ctx, x);
        CHECK(y);
        for (int q = 0; q < 6; q++) {
            double s = 0, s2 = 0;
            for (int e = 0; e < 20; e++) s += y->data[q * 20 + e];
            for (int e = 0; e < 20; e++) s2 += (y->data[q * 20 + e] - s / 20) * (y->data[q * 20 + e] - s / 20);
            CHECK_NEAR(s / 20, 0.0, 0, 1e-5);
            CHECK_NEAR(s2 / 20, 1.0, 1e-4, 0);
        }
    }
    nb_tensor *bad = nb_model_forward(m, ctx, nb_tensor_zeros(ctx, X4(1, 4, 3, 3)));
    CHECK(!bad && strstr(nb_last_error(), "expected num_features=3"));
    CHECK(!nb_model_forward(m, ctx, nb_tensor_zeros(ctx, X3(3, 3, 3))) && strstr(nb_last_error(), "4D"));
    CHECK(nb_nn_instance_norm2d(m, 0, 1e-5f, 0) == NULL);
    CHECK_ERR(NB_ERR_ARG, NB_ERR_ARG, "num_features=0");
    nb_model_free(m);
    nb_ctx_free(ctx);
}

/* ---- summary --------------------------------------------------------------------- */

TEST(summary_of_a_dcgan_generator)
{
    nb_rng rng;
    nb_rng_seed(&rng, 3);
    nb_model *m = nb_model_new("g", "");
    const nb_conv_transpose2d_opts up = {{2, 2}, {1, 1}, {0, 0}, {1, 1}, 1};
    m->root = nb_nn_sequential(m);
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv_transpose2d(m, &rng, 16, 8, 7, 7, NULL, 0)));   /* 1 -> 7 */
    CHECK_OK(nb_sequential_add(m->root, nb_nn_batch_norm2d(m, 8, 1e-5f, 0.1f, 1)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_relu(m)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv_transpose2d(m, &rng, 8, 4, 4, 4, &up, 0)));   /* 7 -> 14 */
    CHECK_OK(nb_sequential_add(m->root, nb_nn_instance_norm2d(m, 4, 1e-5f, 1)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv_transpose2d(m, &rng, 4, 1, 4, 4, &up, 1)));   /* 14 -> 28 */
    CHECK_OK(nb_sequential_add(m->root, nb_nn_tanh(m)));
    nb_layer_info *rows = NULL;
    int n = 0;
    nb_status s = nb_model_summary(m, NB_SHAPE(16, 1, 1), &rows, &n);
    if (s) nb_model_free(m);
    CHECK_OK(s);
    /* MACs: every input element times out/groups*kh*kw */
    static const int64_t macs[7] = {16 * 8 * 49, 0, 0, 8 * 49 * 4 * 16, 0, 4 * 196 * 16, 0};
    static const int64_t params[7] = {16 * 8 * 49, 16, 0, 8 * 4 * 16, 8, 4 * 16 + 1, 0};
    static const int64_t side[7] = {7, 7, 7, 14, 14, 28, 28};
    int ok = n == 7;
    for (int i = 0; ok && i < 7; i++) {
        ok = rows[i].macs == macs[i] && rows[i].params == params[i] && rows[i].ndim == 4 &&
             rows[i].out_shape[2] == side[i] && rows[i].out_shape[3] == side[i] && !rows[i].has_rf;
        if (!ok) nbt_fail(__FILE__, __LINE__, "row %d: %s %s params %lld macs %lld rf %d", i, rows[i].name,
                          rows[i].kind, (long long)rows[i].params, (long long)rows[i].macs, rows[i].has_rf);
    }
    char *text = NULL;
    if (ok) CHECK_OK(nb_summary_format(rows, n, &text));
    CHECK_MSG(ok && strstr(text, "ConvTranspose2d") && strstr(text, "InstanceNorm2d") &&
                  strstr(text, "Output shape: [-1, 1, 28, 28]") && strstr(text, "MACs per sample: 43,904"),
              "unexpected table:\n%s", text ? text : "");
    free(text);
    free(rows);
    nb_model_free(m);
}

TEST(summary_rf_ends_at_a_same_size_transposed_conv)
{
    /* stride 1, padding 1, 3x3 keeps the size: the conv recurrence would
     * fit the shapes, but a transposed conv is not that conv */
    nb_rng rng;
    nb_rng_seed(&rng, 4);
    nb_model *m = nb_model_new("t", "");
    const nb_conv2d_opts same = {{1, 1}, {1, 1}, {1, 1}, 1};
    const nb_conv_transpose2d_opts tsame = {{1, 1}, {1, 1}, {0, 0}, {1, 1}, 1};
    m->root = nb_nn_sequential(m);
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv2d(m, &rng, 1, 2, 3, 3, &same, 1)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv_transpose2d(m, &rng, 2, 2, 3, 3, &tsame, 1)));
    nb_layer_info *rows = NULL;
    int n = 0;
    nb_status s = nb_model_summary(m, NB_SHAPE(1, 8, 8), &rows, &n);
    if (s) nb_model_free(m);
    CHECK_OK(s);
    CHECK(n == 2 && rows[0].has_rf && rows[0].rf[0] == 3 && !rows[1].has_rf && rows[1].macs == 2 * 64 * 2 * 9);
    free(rows);
    nb_model_free(m);
}

/* ---- freezing and detaching: a generator -> discriminator chain ----------------- */

typedef struct {
    nb_model *g, *d;
} gan;

/* G: z (N,4,3,3) -> ConvTranspose2d(4,3,4,s2,p1) -> InstanceNorm2d(3, affine) -> Tanh: (N,3,6,6)
 * D: Conv2d(3,2,3,s2) -> LeakyReLU(0.2) -> BatchNorm2d(2) -> Flatten -> Linear(8,1) */
static int gan_build(gan *p)
{
    nb_rng rng;
    nb_rng_seed(&rng, 11);
    const nb_conv_transpose2d_opts up = {{2, 2}, {1, 1}, {0, 0}, {1, 1}, 1};
    const nb_conv2d_opts down = {{2, 2}, {0, 0}, {1, 1}, 1};
    p->g = nb_model_new("g", "");
    p->d = nb_model_new("d", "");
    if (!p->g || !p->d) return 0;
    nb_model *g = p->g, *d = p->d;
    g->root = nb_nn_sequential(g);
    d->root = nb_nn_sequential(d);
    return !nb_sequential_add(g->root, nb_nn_conv_transpose2d(g, &rng, 4, 3, 4, 4, &up, 1)) &&
           !nb_sequential_add(g->root, nb_nn_instance_norm2d(g, 3, 1e-5f, 1)) &&
           !nb_sequential_add(g->root, nb_nn_tanh(g)) &&
           !nb_sequential_add(d->root, nb_nn_conv2d(d, &rng, 3, 2, 3, 3, &down, 1)) &&
           !nb_sequential_add(d->root, nb_nn_leaky_relu(d, 0.2f)) &&
           !nb_sequential_add(d->root, nb_nn_batch_norm2d(d, 2, 1e-5f, 0.1f, 1)) &&
           !nb_sequential_add(d->root, nb_nn_flatten(d, 1)) &&
           !nb_sequential_add(d->root, nb_nn_linear(d, &rng, 8, 1, 1));
}

/* One backward of mean(D(G(z))) (detach: D sees G's output detached) with
 * the same z (seeded) every time; the status. */
static nb_status gan_backward(gan *p, int detach)
{
    nb_ctx *ctx = nb_ctx_new(21);
    nb_tensor *z = nb_tensor_randn(ctx, X4(3, 4, 3, 3));
    nb_tensor *fake = nb_model_forward(p->g, ctx, z);
    if (detach) fake = nb_detach(ctx, fake);
    nb_tensor *loss = nb_mean(ctx, nb_model_forward(p->d, ctx, fake), NULL, 0, 0);
    nb_status s = loss ? nb_backward(ctx, loss) : nb_ctx_status(ctx);
    nb_ctx_free(ctx);
    return s;
}

static float *copy_floats(const float *v, size_t n)
{
    float *c = malloc(n * sizeof(float));
    if (c) memcpy(c, v, n * sizeof(float));
    return c;
}

static int all_equal(const float *a, float v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != v) return 0;
    return 1;
}

TEST(frozen_discriminator_passes_gradients_to_the_generator)
{
    gan p = {0};
    int built = gan_build(&p);
    if (!built) {
        nb_model_free(p.g);
        nb_model_free(p.d);
    }
    CHECK_MSG(built, "cannot build the models: %s", nb_last_error());
    /* the reference: nothing frozen */
    nb_model_zero_grad(p.g);
    nb_model_zero_grad(p.d);
    nb_status s = gan_backward(&p, 0);
    float *g_ref = copy_floats(p.g->grad, p.g->numel), *d_ref = copy_floats(p.d->grad, p.d->numel);
    float *d_before = copy_floats(p.d->data, p.d->numel);
    int ok = s == NB_OK && g_ref && d_ref && d_before && !all_equal(g_ref, 0.0f, p.g->numel) &&
             !all_equal(d_ref, 0.0f, p.d->numel);

    /* the generator step: D frozen, its grad buffer left exactly as it was
     * (a sentinel), G's gradients those of the unfrozen pass */
    nb_model_zero_grad(p.g);
    for (size_t i = 0; i < p.d->numel; i++) p.d->grad[i] = 7.0f;
    nb_model_set_requires_grad(p.d, 0);
    ok = ok && gan_backward(&p, 0) == NB_OK;
    ok = ok && all_equal(p.d->grad, 7.0f, p.d->numel);
    ok = ok && !memcmp(p.g->grad, g_ref, p.g->numel * sizeof(float));
    /* the forward still updates D's running statistics, as torch's does */
    ok = ok && memcmp(p.d->data, d_before, p.d->numel * sizeof(float));
    for (int i = 0; i < p.d->nparams; i++) ok = ok && p.d->params[i].t.requires_grad == 0;

    /* unfrozen again: D's gradients come back (added onto the zeroed buffer) */
    nb_model_set_requires_grad(p.d, 1);
    for (int i = 0; i < p.d->nparams; i++) ok = ok && p.d->params[i].t.requires_grad == !p.d->params[i].buffer;
    nb_model_zero_grad(p.g);
    nb_model_zero_grad(p.d);
    ok = ok && gan_backward(&p, 0) == NB_OK && !all_equal(p.d->grad, 0.0f, p.d->numel);
    free(g_ref);
    free(d_ref);
    free(d_before);
    nb_model_free(p.g);
    nb_model_free(p.d);
    CHECK_MSG(ok, "freezing D: %s", nb_last_error());
}

TEST(detach_stops_gradients_into_the_generator)
{
    gan p = {0};
    int built = gan_build(&p);
    if (!built) {
        nb_model_free(p.g);
        nb_model_free(p.d);
    }
    CHECK_MSG(built, "cannot build the models: %s", nb_last_error());
    /* the discriminator step: G's output detached, G's buffer untouched */
    nb_model_zero_grad(p.d);
    for (size_t i = 0; i < p.g->numel; i++) p.g->grad[i] = -3.0f;
    int ok = gan_backward(&p, 1) == NB_OK;
    ok = ok && all_equal(p.g->grad, -3.0f, p.g->numel) && !all_equal(p.d->grad, 0.0f, p.d->numel);
    /* the same D gradients as without detach (G's path only adds G's) */
    float *d_det = copy_floats(p.d->grad, p.d->numel);
    nb_model_zero_grad(p.d);
    nb_model_zero_grad(p.g);
    ok = ok && d_det && gan_backward(&p, 0) == NB_OK;
    for (size_t i = 0; ok && i < p.d->numel; i++) ok = fabsf(p.d->grad[i] - d_det[i]) <= 1e-6f + 1e-5f * fabsf(d_det[i]);
    /* both models frozen and z constant: there is nothing to back-propagate */
    nb_model_set_requires_grad(p.g, 0);
    nb_model_set_requires_grad(p.d, 0);
    ok = ok && gan_backward(&p, 0) == NB_ERR_STATE;
    free(d_det);
    nb_model_free(p.g);
    nb_model_free(p.d);
    CHECK_MSG(ok, "detach: %s", nb_last_error());
}
