/* conv2d against PyTorch (tests/fixtures/conv.safetensors, from
 * scripts/gen_conv_fixtures.py), its errors, thread-count independence and
 * the Conv2d module.
 *
 * Tolerance against torch, per tensor: max_i |a_i - b_i| <= 1e-4 * max_i |b_i|
 * (the sums differ in order between the two libraries, so elements near 0
 * are judged on the tensor's scale, not their own). */
#include "test.h"
#include <stdint.h>
#include <stdlib.h>

/* ---- fixtures ---------------------------------------------------------------- */

/* The inputs of the fixture: lowbias32 of i + seed * 0x9E3779B9, top 24
 * bits mapped to [-1, 1), times a power of two (see the script). */
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

static nb_tensor *hashed_tensor(nb_ctx *ctx, int nd, const int64_t *shape, uint32_t seed, float scale)
{
    nb_tensor *t = nb_tensor_new(ctx, nd, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = hashed((uint32_t)i, seed) * scale;
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

static int check_config(const nb_safetensors *f, const char *cfg)
{
    char key[96];
    snprintf(key, sizeof key, "%s.cfg", cfg);
    const nb_st_tensor *ct = nb_safetensors_find(f, key);
    if (!ct || ct->numel != 17) {
        nbt_fail(__FILE__, __LINE__, "%s: bad configuration record", cfg);
        return 0;
    }
    int v[17];
    for (int i = 0; i < 17; i++) v[i] = (int)ct->data[i];
    const int64_t N = v[0], C = v[1], H = v[2], W = v[3], O = v[4], kh = v[5], kw = v[6];
    const int groups = v[13], bias = v[14], xstep = v[15], wlog2 = v[16];
    nb_conv2d_opts o = {{v[7], v[8]}, {v[9], v[10]}, {v[11], v[12]}, groups};
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *base = hashed_tensor(ctx, 4, (int64_t[]){N, C, H, W * xstep}, 1, 1.0f);
    nb_tensor *x = xstep > 1 ? nb_slice(ctx, base, 3, 0, INT64_MAX, xstep) : base;
    nb_tensor *w = hashed_tensor(ctx, 4, (int64_t[]){O, C / groups, kh, kw}, 2, ldexpf(1.0f, wlog2));
    nb_tensor *b = bias ? hashed_tensor(ctx, 1, (int64_t[]){O}, 3, 0.5f) : NULL;
    int ok = 0;
    if (!x || !w || (bias && !b)) goto done;
    nb_requires_grad(x, 1);
    nb_requires_grad(w, 1);
    if (b) nb_requires_grad(b, 1);
    nb_tensor *y = nb_conv2d(ctx, x, w, b, &o);
    snprintf(key, sizeof key, "%s.y", cfg);
    const nb_st_tensor *ty = nb_safetensors_find(f, key);
    if (!y || !ty || ty->numel != nb_tensor_numel(y)) {
        nbt_fail(__FILE__, __LINE__, "%s: forward failed or wrong size: %s", cfg, nb_last_error());
        goto done;
    }
    nb_tensor *r = hashed_tensor(ctx, 4, y->shape, 4, 1.0f);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    if (!loss || nb_backward(ctx, loss) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "%s: backward failed: %s", cfg, nb_last_error());
        goto done;
    }
    const struct { const char *name; const nb_tensor *t; const float *v; } cmp[] = {
        {"y", y, y->data}, {"dx", x, x->grad}, {"dw", w, w->grad}, {"db", b, b ? b->grad : NULL}};
    ok = 1;
    for (int i = 0; i < 4 && ok; i++) {
        if (!cmp[i].t) continue;
        snprintf(key, sizeof key, "%s.%s", cfg, cmp[i].name);
        const nb_st_tensor *ref = nb_safetensors_find(f, key);
        if (!ref || ref->numel != nb_tensor_numel(cmp[i].t) || !cmp[i].v) {
            nbt_fail(__FILE__, __LINE__, "%s: missing %s (fixture or gradient)", cfg, cmp[i].name);
            ok = 0;
            break;
        }
        ok = close_scaled(cfg, cmp[i].name, cmp[i].v, ref->data, ref->numel, 1e-4);
    }
done:
    nb_ctx_free(ctx);
    return ok;
}

TEST(conv2d_matches_torch)
{
    nb_safetensors *f = NULL;
    CHECK_OK(nb_safetensors_load(nbt_fixture("conv.safetensors"), &f));
    int configs = 0, ok = 1, vgg = 0;
    for (int i = 0; i < f->n; i++) {
        const char *name = f->tensors[i].name, *dot = strrchr(name, '.');
        if (!dot || strcmp(dot, ".cfg")) continue;
        char cfg[64];
        snprintf(cfg, sizeof cfg, "%.*s", (int)(dot - name), name);
        configs++;
        vgg += !strcmp(cfg, "vgg64");
        ok &= check_config(f, cfg);
    }
    nb_safetensors_free(f);
    CHECK(ok);
    CHECK_MSG(configs >= 8 && vgg == 1, "fixture has %d configurations (vgg64: %d)", configs, vgg);
}

/* ---- errors ------------------------------------------------------------------ */

/* Status of nb_conv2d on fresh tensors of the given shapes (b_len 0: no bias). */
static nb_status conv_status(int xnd, const int64_t *xs, int wnd, const int64_t *ws, int64_t b_len,
                             const nb_conv2d_opts *o)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_tensor_zeros(ctx, xnd, xs), *w = nb_tensor_zeros(ctx, wnd, ws);
    nb_tensor *b = b_len ? nb_tensor_zeros(ctx, 1, (int64_t[]){b_len}) : NULL;
    nb_tensor *y = nb_conv2d(ctx, x, w, b, o);
    nb_status s = y ? NB_OK : nb_ctx_status(ctx);
    nb_ctx_free(ctx);
    return s;
}

#define X4(...) 4, (int64_t[]){__VA_ARGS__}
#define X3(...) 3, (int64_t[]){__VA_ARGS__}

TEST(conv2d_errors)
{
    const nb_conv2d_opts g2 = {{1, 1}, {0, 0}, {1, 1}, 2}, neg = {{1, 1}, {-1, 0}, {1, 1}, 1};
    const nb_conv2d_opts big_dil = {{1, 1}, {0, 0}, {3, 1}, 1};
    CHECK_ERR(conv_status(X3(3, 5, 5), X4(2, 3, 3, 3), 0, NULL), NB_ERR_SHAPE, "input must be 4-D");
    CHECK_ERR(conv_status(X4(1, 3, 5, 5), X3(2, 3, 3), 0, NULL), NB_ERR_SHAPE, "weight must be 4-D");
    CHECK_ERR(conv_status(X4(1, 3, 5, 5), X4(2, 1, 3, 3), 0, &g2), NB_ERR_SHAPE,
              "[1, 3, 5, 5] has 3 channels, not divisible by groups=2");
    CHECK_ERR(conv_status(X4(1, 3, 5, 5), X4(2, 2, 3, 3), 0, NULL), NB_ERR_SHAPE,
              "weight [2, 2, 3, 3] expects 2 input channels");
    CHECK_ERR(conv_status(X4(1, 4, 5, 5), X4(3, 2, 3, 3), 0, &g2), NB_ERR_SHAPE,
              "weight [3, 2, 3, 3] has 3 output channels, not divisible by groups=2");
    CHECK_ERR(conv_status(X4(1, 4, 5, 5), X4(4, 2, 3, 3), 0, &g2), NB_OK, "");
    CHECK_ERR(conv_status(X4(1, 3, 5, 5), X4(2, 3, 3, 3), 5, NULL), NB_ERR_SHAPE,
              "bias [5] must be 1-D with out_channels = 2");
    CHECK_ERR(conv_status(X4(1, 1, 2, 2), X4(1, 1, 3, 3), 0, NULL), NB_ERR_SHAPE, "output size 0x0 is too small");
    CHECK_ERR(conv_status(X4(1, 1, 5, 5), X4(1, 1, 3, 3), 0, &big_dil), NB_ERR_SHAPE,
              "output size 0x3 is too small");
    CHECK_ERR(conv_status(X4(1, 1, 5, 5), X4(1, 1, 3, 3), 0, &neg), NB_ERR_ARG, "negative option: stride=(1, 1), padding=(-1, 0)");
    CHECK_ERR(conv_status(X4(1, 1, 5, 5), X4(1, 1, 0, 3), 0, NULL), NB_ERR_SHAPE, "weight [1, 1, 0, 3] has an empty");
    /* a NULL input passes through and keeps the first message */
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *w = nb_tensor_zeros(ctx, X4(1, 1, 3, 3));
    nb_clear_error();
    CHECK(nb_conv2d(ctx, NULL, w, NULL, NULL) == NULL && !strcmp(nb_last_error(), ""));
    nb_ctx_free(ctx);
}

/* ---- thread-count independence ------------------------------------------------- */

typedef struct { int64_t N, C, H, W, O, k; nb_conv2d_opts o; int bias, xview; } thr_case;

/* Output and gradients of one case (x, w, b from the seeded generator) into a
 * malloc'ed buffer; *n floats. */
static float *conv_results(const thr_case *c, int64_t *n)
{
    nb_ctx *ctx = nb_ctx_new(99);
    const int g = c->o.groups ? c->o.groups : 1;
    nb_tensor *x = nb_tensor_randn(ctx, X4(c->N, c->C, c->H, c->W * (c->xview ? 2 : 1)));
    if (c->xview) x = nb_slice(ctx, x, 3, 1, INT64_MAX, 2);
    nb_tensor *w = nb_tensor_randn(ctx, X4(c->O, c->C / g, c->k, c->k));
    nb_tensor *b = c->bias ? nb_tensor_randn(ctx, 1, (int64_t[]){c->O}) : NULL;
    nb_requires_grad(x, 1);
    nb_requires_grad(w, 1);
    if (b) nb_requires_grad(b, 1);
    nb_tensor *y = nb_conv2d(ctx, x, w, b, &c->o);
    nb_tensor *r = y ? nb_tensor_randn(ctx, y->ndim, y->shape) : NULL;
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    float *out = NULL;
    if (loss && nb_backward(ctx, loss) == NB_OK) {
        int64_t ny = nb_tensor_numel(y), nx = nb_tensor_numel(x), nw = nb_tensor_numel(w), nb = b ? c->O : 0;
        *n = ny + nx + nw + nb;
        out = malloc((size_t)*n * sizeof(float));
        if (out) {
            memcpy(out, y->data, (size_t)ny * sizeof(float));
            memcpy(out + ny, x->grad, (size_t)nx * sizeof(float));
            memcpy(out + ny + nx, w->grad, (size_t)nw * sizeof(float));
            if (b) memcpy(out + ny + nx + nw, b->grad, (size_t)nb * sizeof(float));
        }
    }
    nb_ctx_free(ctx);
    return out;
}

TEST(conv2d_threads_bit_identical)
{
    const thr_case cases[] = {
        /* batch over threads, one tile per sample */
        {4, 16, 20, 20, 16, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        /* several tiles per sample, batch 3 (uneven split) */
        {3, 32, 40, 40, 24, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        /* batch 1: threaded GEMMs, im2col split over channels */
        {1, 16, 24, 24, 32, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        /* strides, dilation, groups, strided input */
        {5, 8, 17, 19, 12, 3, {{2, 1}, {2, 1}, {1, 2}, 2}, 0, 1},
        /* depthwise with channel multiplier 2 */
        {6, 16, 18, 18, 32, 3, {{1, 1}, {1, 1}, {1, 1}, 16}, 1, 0},
        /* 1x1 */
        {4, 32, 14, 14, 48, 1, {{1, 1}, {0, 0}, {1, 1}, 1}, 1, 0},
        /* batch 16: eight partial sums */
        {16, 8, 12, 12, 8, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
    };
    const int saved = nb_get_threads();
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && ok; i++) {
        int64_t n1 = 0, n2 = 0;
        nb_set_threads(1);
        float *a = conv_results(&cases[i], &n1);
        nb_set_threads(2);
        float *b = conv_results(&cases[i], &n2);
        if (!a || !b || n1 != n2) {
            nbt_fail(__FILE__, __LINE__, "case %zu: conv failed: %s", i, nb_last_error());
            ok = 0;
        } else if (memcmp(a, b, (size_t)n1 * sizeof(float))) {
            int64_t k = 0;
            while (a[k] == b[k]) k++;
            nbt_fail(__FILE__, __LINE__, "case %zu: 1 and 2 threads differ at element %lld: %.9g vs %.9g", i,
                     (long long)k, a[k], b[k]);
            ok = 0;
        }
        free(a);
        free(b);
    }
    nb_set_threads(saved);
    CHECK(ok);
}

/* ---- the Conv2d module --------------------------------------------------------- */

TEST(conv2d_module)
{
    nb_ctx *ctx = nb_ctx_new(5);
    nb_model *m = nb_model_new("conv", "");
    const nb_conv2d_opts pad1 = {{1, 1}, {1, 1}, {1, 1}, 1};
    nb_module *c1 = nb_nn_conv2d(m, nb_ctx_rng(ctx), 1, 32, 3, 3, &pad1, 1);
    CHECK(c1);
    CHECK(m->nparams == 2 && !strcmp(m->params[0].name, "weight") && !strcmp(m->params[1].name, "bias"));
    const nb_tensor *w = &m->params[0].t, *b = &m->params[1].t;
    CHECK(w->ndim == 4 && w->shape[0] == 32 && w->shape[1] == 1 && w->shape[2] == 3 && w->shape[3] == 3);
    CHECK(b->ndim == 1 && b->shape[0] == 32);
    /* torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 1*3*3 */
    const float bound = 1.0f / 3.0f;
    float wmax = 0, bmax = 0;
    for (int i = 0; i < 288; i++) wmax = fmaxf(wmax, fabsf(w->data[i]));
    for (int i = 0; i < 32; i++) bmax = fmaxf(bmax, fabsf(b->data[i]));
    CHECK_MSG(wmax <= bound && wmax > 0.9f * bound, "max |weight| %g, bound %g", wmax, bound);
    CHECK_MSG(bmax <= bound && bmax > 0.6f * bound, "max |bias| %g, bound %g", bmax, bound);
    char desc[192];
    c1->vt->describe(c1, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)"), "repr: %s", desc);
    nb_layer_geometry g;
    memset(&g, 0, sizeof g);
    CHECK(c1->vt->geometry && c1->vt->geometry(c1, &g) == 1);
    CHECK(g.kernel[0] == 3 && g.kernel[1] == 3 && g.stride[0] == 1 && g.stride[1] == 1 && g.padding[0] == 1 &&
          g.padding[1] == 1 && g.dilation[0] == 1 && g.dilation[1] == 1 && g.macs_per_output == 9);

    /* the module computes nb_conv2d with its parameters */
    m->root = c1;
    nb_tensor *x = nb_tensor_randn(ctx, 4, (int64_t[]){2, 1, 6, 5});
    nb_tensor *y = nb_model_forward(m, ctx, x);
    nb_tensor *ref = nb_conv2d(ctx, x, &m->params[0].t, &m->params[1].t, &pad1);
    CHECK(y && ref && y->shape[0] == 2 && y->shape[1] == 32 && y->shape[2] == 6 && y->shape[3] == 5);
    CHECK(!memcmp(y->data, ref->data, (size_t)nb_tensor_numel(y) * sizeof(float)));

    nb_model_free(m);

    /* every option in the repr, in torch's order; no bias */
    m = nb_model_new("conv", "");
    const nb_conv2d_opts o2 = {{2, 1}, {0, 2}, {2, 2}, 2};
    nb_module *c2 = nb_nn_conv2d(m, nb_ctx_rng(ctx), 4, 8, 3, 5, &o2, 0);
    CHECK(c2 && m->nparams == 1);
    c2->vt->describe(c2, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "4, 8, kernel_size=(3, 5), stride=(2, 1), padding=(0, 2), dilation=(2, 2), "
                            "groups=2, bias=False"), "repr: %s", desc);
    CHECK(c2->vt->geometry(c2, &g) == 1 && g.macs_per_output == 2 * 3 * 5 && g.kernel[1] == 5 && g.stride[0] == 2 &&
          g.padding[1] == 2 && g.dilation[0] == 2);
    const nb_tensor *w2 = &m->params[0].t;
    CHECK(w2->shape[0] == 8 && w2->shape[1] == 2 && w2->shape[2] == 3 && w2->shape[3] == 5);
    const float bound2 = 1.0f / sqrtf(30.0f);
    for (int i = 0; i < 240; i++) CHECK(fabsf(w2->data[i]) <= bound2);

    nb_model_free(m);

    /* NULL opts: torch's defaults */
    m = nb_model_new("conv", "");
    nb_module *c3 = nb_nn_conv2d(m, nb_ctx_rng(ctx), 2, 3, 1, 1, NULL, 1);
    CHECK(c3);
    c3->vt->describe(c3, desc, sizeof desc);
    CHECK_MSG(!strcmp(desc, "2, 3, kernel_size=(1, 1), stride=(1, 1)"), "repr: %s", desc);

    /* bad settings */
    const nb_conv2d_opts g3 = {{1, 1}, {0, 0}, {1, 1}, 3};
    CHECK(nb_nn_conv2d(m, nb_ctx_rng(ctx), 4, 6, 3, 3, &g3, 1) == NULL);
    CHECK_ERR(NB_ERR_ARG, NB_ERR_ARG, "divisible by groups=3");
    CHECK(nb_nn_conv2d(m, nb_ctx_rng(ctx), 4, 6, 0, 3, NULL, 1) == NULL);
    CHECK_ERR(NB_ERR_ARG, NB_ERR_ARG, "must be positive");
    nb_model_free(m);
    nb_ctx_free(ctx);
}
