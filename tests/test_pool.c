/* Pooling and dropout: max/avg/adaptive pooling against PyTorch
 * (tests/fixtures/pool.safetensors from scripts/gen_pool_fixtures.py), NaN
 * and tie rules, option and shape errors, dropout statistics and
 * determinism, and the modules' reprs. */
#include "test.h"
#include "../src/kernels/simd.h"
#include <stdint.h>
#include <stdlib.h>

static nb_safetensors *fixture(void)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(nbt_fixture("pool.safetensors"), &f) != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "cannot load fixture: %s", nb_last_error());
        return NULL;
    }
    return f;
}

/* max_i |a_i - b_i| <= atol + rtol |b_i|, reporting the first bad element */
static int close_to(const char *what, const float *a, const float *b, int64_t n, double rtol, double atol)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= atol + rtol * fabs((double)b[i]))) {
            nbt_fail(__FILE__, __LINE__, "%s[%lld] = %.9g, torch %.9g", what, (long long)i, a[i], b[i]);
            return 0;
        }
    return 1;
}

enum { OP_MAX, OP_AVG, OP_ADAPTIVE };

/* Runs configuration `i` of `op` from the fixture: y and d sum(y * r)/dx
 * against torch. Returns 0 when the fixture has no such configuration. */
static int run_config(const nb_safetensors *f, int op, int i, int *ok)
{
    static const char *const names[] = {"max", "avg", "adaptive"};
    char key[64];
    const nb_st_tensor *t[5];
    static const char *const parts[] = {"cfg", "x", "r", "y", "dx"};
    for (int k = 0; k < 5; k++) {
        snprintf(key, sizeof key, "%s.%d.%s", names[op], i, parts[k]);
        t[k] = nb_safetensors_find(f, key);
        if (!t[k]) {
            if (k) {
                nbt_fail(__FILE__, __LINE__, "fixture lacks %s", key);
                *ok = 0;
            }
            return 0;
        }
    }
    const float *c = t[0]->data;
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_requires_grad(nb_tensor_from(ctx, t[1]->ndim, t[1]->shape, t[1]->data), 1);
    nb_tensor *y = NULL;
    nb_pool2d_opts o;
    memset(&o, 0, sizeof o);
    if (op == OP_MAX) {
        o = (nb_pool2d_opts){{(int)c[0], (int)c[1]}, {(int)c[2], (int)c[3]}, {(int)c[4], (int)c[5]},
                             {(int)c[6], (int)c[7]}, (int)c[8], 0};
        y = nb_max_pool2d(ctx, x, &o);
    } else if (op == OP_AVG) {
        o = (nb_pool2d_opts){{(int)c[0], (int)c[1]}, {(int)c[2], (int)c[3]}, {(int)c[4], (int)c[5]},
                             {0, 0}, (int)c[6], (int)c[7]};
        y = nb_avg_pool2d(ctx, x, &o);
    } else {
        y = nb_adaptive_avg_pool2d(ctx, x, (int)c[0], (int)c[1]);
    }
    char what[64];
    snprintf(what, sizeof what, "%s.%d", names[op], i);
    int good = y != NULL;
    if (!y) nbt_fail(__FILE__, __LINE__, "%s: %s", what, nb_last_error());
    if (good && (y->ndim != t[3]->ndim || memcmp(y->shape, t[3]->shape, sizeof(int64_t) * (size_t)y->ndim))) {
        char b[64];
        nbt_fail(__FILE__, __LINE__, "%s: shape %s differs from torch's", what, nb_shape_str(y, b, sizeof b));
        good = 0;
    }
    if (good) {
        nb_tensor *r = nb_tensor_from(ctx, t[2]->ndim, t[2]->shape, t[2]->data);
        nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
        good = loss && nb_backward(ctx, loss) == NB_OK;
        if (!good) nbt_fail(__FILE__, __LINE__, "%s: backward: %s", what, nb_last_error());
    }
    if (good) {
        char wy[80], wd[80];
        snprintf(wy, sizeof wy, "%s y", what);
        snprintf(wd, sizeof wd, "%s dx", what);
        good = close_to(wy, y->data, t[3]->data, t[3]->numel, 1e-5, 1e-6) &&
               close_to(wd, x->grad, t[4]->data, t[4]->numel, 1e-5, 1e-6);
    }
    nb_ctx_free(ctx);
    if (!good) *ok = 0;
    return 1;
}

int nb__pool_use_simd(int on);   /* test hook in src/ops/pool.c */

/* Every configuration, with the AVX-512 row kernels (where the CPU has
 * them) and with the portable ones. */
static void run_all(int op, int min_configs)
{
    nb_safetensors *f = fixture();
    CHECK(f);
    int ok = 1, n = 0, old = nb__pool_use_simd(0);
    while (run_config(f, op, n, &ok)) n++;
    nb__pool_use_simd(1);
    for (int i = 0; i < n; i++) run_config(f, op, i, &ok);
    nb__pool_use_simd(old);
    nb_safetensors_free(f);
    CHECK(ok);
    CHECK_MSG(n >= min_configs, "only %d configurations in the fixture", n);
}

TEST(pool_max_matches_torch) { run_all(OP_MAX, 10); }
TEST(pool_avg_matches_torch) { run_all(OP_AVG, 10); }
TEST(pool_adaptive_matches_torch) { run_all(OP_ADAPTIVE, 8); }

/* torch keeps v when v > max or v is NaN: a NaN wins (the last one), ties go
 * to the first maximum, an all -inf window to its first element. */
TEST(pool_max_nan_ties_and_infinities)
{
    nb_ctx *ctx = nb_ctx_new(1);
    float v[16] = {1, NAN, 5, 5,     NAN, 2, 5, 3,
                   -INFINITY, -INFINITY, 7, 9, -INFINITY, -INFINITY, 9, 8};
    nb_tensor *x = nb_requires_grad(nb_tensor_from(ctx, NB_SHAPE(1, 1, 4, 4), v), 1);
    nb_pool2d_opts o = {.kernel = {2, 2}};
    nb_tensor *y = nb_max_pool2d(ctx, x, &o);
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2);
    CHECK(isnan(y->data[0]));
    CHECK(y->data[1] == 5.0f);
    CHECK(y->data[2] == -INFINITY);
    CHECK(y->data[3] == 9.0f);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, y, NULL, 0, 0)));
    float want[16] = {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++) CHECK_MSG(x->grad[i] == want[i], "grad[%d] = %g, want %g", i, x->grad[i], want[i]);
    /* the same through the general path (kernel 2, stride 1 windows) */
    nb_pool2d_opts o1 = {.kernel = {2, 2}, .stride = {2, 1}};
    nb_tensor *y1 = nb_max_pool2d(ctx, x, &o1);
    CHECK(y1 && isnan(y1->data[0]) && isnan(y1->data[1]) && y1->data[2] == 5.0f);
    nb_ctx_free(ctx);
}

/* A strided input pools like its contiguous copy; results do not depend
 * on the thread count. */
TEST(pool_strided_input_and_thread_count)
{
    nb_ctx *ctx = nb_ctx_new(3);
    nb_tensor *base = nb_tensor_randn(ctx, NB_SHAPE(4, 16, 40, 38));
    nb_tensor *xt = nb_transpose(ctx, base, 2, 3);             /* (4,16,38,40) view */
    nb_tensor *xc = nb_contiguous(ctx, nb_transpose(ctx, base, 2, 3));
    CHECK(xt && xc && !nb_tensor_is_contiguous(xt) && nb_tensor_is_contiguous(xc));
    nb_pool2d_opts cases[] = {{.kernel = {2, 2}},
                              {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}},
                              {.kernel = {3, 2}, .stride = {1, 2}, .padding = {1, 0}, .dilation = {2, 1},
                               .ceil_mode = 1}};
    int saved = nb_get_threads();
    for (int c = 0; c < 3; c++) {
        for (int op = 0; op < 2; op++) {
            if (op == 1 && c == 2) continue;   /* avg has no dilation */
            nb_tensor *(*fn)(nb_ctx *, nb_tensor *, const nb_pool2d_opts *) = op ? nb_avg_pool2d : nb_max_pool2d;
            nb_set_threads(1);
            nb_tensor *a = fn(ctx, xt, &cases[c]);
            nb_set_threads(2);
            nb_tensor *b = fn(ctx, xc, &cases[c]);
            CHECK(a && b && nb_tensor_numel(a) == nb_tensor_numel(b));
            CHECK_MSG(!memcmp(a->data, b->data, (size_t)nb_tensor_numel(a) * sizeof(float)),
                      "case %d op %d: strided/1 thread differs from contiguous/2 threads", c, op);
        }
    }
    nb_set_threads(1);
    nb_tensor *a = nb_adaptive_avg_pool2d(ctx, xt, 5, 3);
    nb_set_threads(2);
    nb_tensor *b = nb_adaptive_avg_pool2d(ctx, xc, 5, 3);
    nb_set_threads(saved);
    CHECK(a && b && !memcmp(a->data, b->data, (size_t)nb_tensor_numel(a) * sizeof(float)));
    CHECK(nb_ctx_status(ctx) == NB_OK);
    nb_ctx_free(ctx);
}

/* The AVX-512 row kernels give the same bits as the portable C, forward and
 * backward, for every row length (masked tails) and with NaNs and ties. */

/* y and d sum(y * r)/dx of one pooling, copied out (malloc'ed; NULL on error). */
static float *pool_run(nb_ctx *ctx, const nb_tensor *x, int avg, const nb_pool2d_opts *o, int64_t *ny)
{
    nb_tensor *xi = nb_requires_grad(nb_tensor_from(ctx, x->ndim, x->shape, x->data), 1);
    nb_tensor *y = avg ? nb_avg_pool2d(ctx, xi, o) : nb_max_pool2d(ctx, xi, o);
    if (!y) return NULL;
    nb_rng_seed(nb_ctx_rng(ctx), 99);
    nb_tensor *r = nb_tensor_randn(ctx, y->ndim, y->shape);
    if (nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0)) != NB_OK) return NULL;
    int64_t m = nb_tensor_numel(y), n = nb_tensor_numel(xi);
    float *res = malloc((size_t)(m + n) * sizeof(float));
    if (!res) return NULL;
    memcpy(res, y->data, (size_t)m * sizeof(float));
    memcpy(res + m, xi->grad, (size_t)n * sizeof(float));
    *ny = m + n;
    return res;
}

TEST(pool_simd_kernels_match_portable)
{
    nb_pool2d_opts opts[] = {{.kernel = {2, 2}, .count_include_pad = 1},
                             {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}},
                             {.kernel = {3, 3}, .stride = {2, 2}, .ceil_mode = 1, .count_include_pad = 1},
                             {.kernel = {2, 2}, .ceil_mode = 1}};
    if (!nb__cpu_avx512()) SKIP("no AVX-512 on this CPU: only the portable kernels run");
    int old = nb__pool_use_simd(1), bad = 0;
    for (int w = 3; w <= 1001 && !bad; w = w < 40 ? w + 1 : w < 75 ? w + 7 : w < 1000 ? 1000 : w + 1) {
        nb_ctx *ctx = nb_ctx_new((uint64_t)w);
        nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(2, 3, 7, w));
        CHECK(x);
        int64_t n = nb_tensor_numel(x);
        for (int64_t i = 0; i < n; i += 13) x->data[i] = x->data[(i * 7) % n];   /* ties */
        for (int64_t i = 5; i < n; i += 37) x->data[i] = NAN;
        for (int c = 0; c < 4 && !bad; c++) {
            for (int avg = 0; avg < 2 && !bad; avg++) {
                int64_t n0 = 0, n1 = 0;
                nb__pool_use_simd(0);
                float *a = pool_run(ctx, x, avg, &opts[c], &n0);
                nb__pool_use_simd(1);
                float *b = pool_run(ctx, x, avg, &opts[c], &n1);
                bad = !a || !b || n0 != n1 || memcmp(a, b, (size_t)n0 * sizeof(float));
                if (bad)
                    nbt_fail(__FILE__, __LINE__, "width %d, case %d, %s: AVX-512 and portable differ (%s)", w, c,
                             avg ? "avg" : "max", nb_last_error());
                free(a);
                free(b);
            }
        }
        nb_ctx_free(ctx);
    }
    nb__pool_use_simd(old);
}

/* Adaptive average pooling sums spans of 32 or more in 64 running sums
 * (sum64): the AVX-512 kernel gives the portable one's bits for every span
 * length around its steps, as whole rows (output height 1) and as parts
 * of a row. */
TEST(pool_adaptive_sum_simd_matches_portable)
{
    if (!nb__cpu_avx512()) SKIP("no AVX-512 on this CPU: only the portable kernels run");
    static const int64_t widths[] = {32, 33, 47, 63, 64, 65, 127, 128, 129, 1000, 1001};
    int old = nb__pool_use_simd(1);
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        nb_ctx *ctx = nb_ctx_new((uint64_t)widths[i]);
        nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(2, 3, 3, widths[i]));
        CHECK(x);
        const int64_t out[3][2] = {{1, 1}, {3, 1}, {1, 2}}; /* whole plane, whole rows, half rows */
        for (int o = 0; o < 3; o++) {
            nb__pool_use_simd(0);
            nb_tensor *a = nb_adaptive_avg_pool2d(ctx, x, out[o][0], out[o][1]);
            nb__pool_use_simd(1);
            nb_tensor *b = nb_adaptive_avg_pool2d(ctx, x, out[o][0], out[o][1]);
            CHECK_MSG(a && b, "width %lld: %s", (long long)widths[i], nb_last_error());
            CHECK_MSG(!memcmp(a->data, b->data, (size_t)nb_tensor_numel(a) * sizeof(float)),
                      "width %lld, output %lldx%lld: AVX-512 and portable sums differ", (long long)widths[i],
                      (long long)out[o][0], (long long)out[o][1]);
        }
        nb_ctx_free(ctx);
    }
    nb__pool_use_simd(old);
}

/* op(ctx, x, opts) fails with status `want` and a message containing substr. */
#define POOL_ERR(call, want, substr)                                                  \
    do {                                                                              \
        nb_ctx *ectx = nb_ctx_new(1);                                                 \
        nb_tensor *x4 = nb_tensor_zeros(ectx, NB_SHAPE(1, 2, 5, 5));                  \
        nb_tensor *x2 = nb_tensor_zeros(ectx, NB_SHAPE(5, 5));                        \
        (void)x4, (void)x2;                                                           \
        nb_tensor *res = (call);                                                      \
        nb_status st = nb_ctx_status(ectx);                                           \
        nb_ctx_free(ectx);                                                            \
        CHECK_MSG(!res, "%s succeeded", #call);                                       \
        CHECK_ERR(st, want, substr);                                                  \
    } while (0)

TEST(pool_rejects_bad_options_and_shapes)
{
    nb_pool2d_opts k0 = {.kernel = {0, 2}};
    nb_pool2d_opts pad = {.kernel = {3, 3}, .padding = {2, 1}};
    nb_pool2d_opts neg = {.kernel = {2, 2}, .stride = {-1, 1}};
    nb_pool2d_opts negpad = {.kernel = {2, 2}, .padding = {-1, 0}};
    nb_pool2d_opts big = {.kernel = {6, 6}};
    nb_pool2d_opts dil = {.kernel = {3, 3}, .dilation = {3, 3}};
    nb_pool2d_opts avgdil = {.kernel = {2, 2}, .dilation = {2, 1}};
    nb_pool2d_opts ok = {.kernel = {2, 2}};
    POOL_ERR(nb_max_pool2d(ectx, x4, NULL), NB_ERR_ARG, "kernel size must be given");
    POOL_ERR(nb_max_pool2d(ectx, x4, &k0), NB_ERR_ARG, "kernel size must be positive, got (0, 2)");
    POOL_ERR(nb_avg_pool2d(ectx, x4, &k0), NB_ERR_ARG, "avg_pool2d: kernel size must be positive");
    POOL_ERR(nb_max_pool2d(ectx, x4, &pad), NB_ERR_ARG, "padding (2, 1) must be at most half the kernel size (3, 3)");
    POOL_ERR(nb_avg_pool2d(ectx, x4, &pad), NB_ERR_ARG, "must be at most half the kernel size");
    POOL_ERR(nb_max_pool2d(ectx, x4, &neg), NB_ERR_ARG, "stride must be positive");
    POOL_ERR(nb_max_pool2d(ectx, x4, &negpad), NB_ERR_ARG, "padding must be non-negative");
    POOL_ERR(nb_max_pool2d(ectx, x4, &big), NB_ERR_SHAPE, "is too small for kernel (6, 6)");
    POOL_ERR(nb_avg_pool2d(ectx, x4, &big), NB_ERR_SHAPE, "the output would be 0x0");
    POOL_ERR(nb_max_pool2d(ectx, x4, &dil), NB_ERR_SHAPE, "dilation (3, 3)");
    POOL_ERR(nb_avg_pool2d(ectx, x4, &avgdil), NB_ERR_ARG, "dilation must be 1");
    POOL_ERR(nb_max_pool2d(ectx, x2, &ok), NB_ERR_SHAPE, "input must be (N,C,H,W) or (C,H,W), got [5, 5]");
    POOL_ERR(nb_avg_pool2d(ectx, x2, &ok), NB_ERR_SHAPE, "got [5, 5]");
    POOL_ERR(nb_adaptive_avg_pool2d(ectx, x2, 2, 2), NB_ERR_SHAPE, "adaptive_avg_pool2d: input must be");
    POOL_ERR(nb_adaptive_avg_pool2d(ectx, x4, 0, 2), NB_ERR_ARG, "output size must be positive, got (0, 2)");
    POOL_ERR(nb_max_pool2d(ectx, nb_tensor_zeros(ectx, NB_SHAPE(1, 0, 4, 4)), &ok), NB_ERR_SHAPE, "non-zero");
    /* a NULL input passes through without a new message */
    nb_ctx *ctx = nb_ctx_new(1);
    nb_clear_error();
    CHECK(!nb_max_pool2d(ctx, NULL, &ok) && !nb_avg_pool2d(ctx, NULL, &ok) &&
          !nb_adaptive_avg_pool2d(ctx, NULL, 1, 1) && !nb_dropout(ctx, NULL, 0.5f, 1));
    CHECK(!strcmp(nb_last_error(), "") && nb_ctx_status(ctx) == NB_OK);
    /* an empty batch is fine; a 3-D input gives a 3-D result */
    nb_tensor *e = nb_max_pool2d(ctx, nb_tensor_zeros(ctx, NB_SHAPE(0, 2, 4, 4)), &ok);
    CHECK(e && e->ndim == 4 && e->shape[0] == 0 && e->shape[2] == 2);
    nb_tensor *t3 = nb_avg_pool2d(ctx, nb_tensor_zeros(ctx, NB_SHAPE(2, 4, 6)), &ok);
    CHECK(t3 && t3->ndim == 3 && t3->shape[0] == 2 && t3->shape[1] == 2 && t3->shape[2] == 3);
    nb_ctx_free(ctx);
}

/* ---- dropout ---------------------------------------------------------------- */

#define DN 100000

TEST(dropout_statistics)
{
    nb_ctx *ctx = nb_ctx_new(42);
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(100, 1000));
    CHECK(x);
    const float ps[] = {0.1f, 0.5f, 0.8f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k], scale = 1.0f / (1.0f - p);
        nb_tensor *ones = nb_tensor_full(ctx, NB_SHAPE(DN), 1.0f);
        nb_tensor *y1 = nb_dropout(ctx, ones, p, 1);
        nb_tensor *y = nb_dropout(ctx, x, p, 1);
        CHECK(y1 && y && y != x);
        int64_t zeros = 0, bad = 0;
        double mean = 0;
        for (int64_t i = 0; i < DN; i++) {
            if (y1->data[i] == 0.0f) zeros++;
            else if (y1->data[i] != scale) bad++;
            mean += y1->data[i];
            if (y->data[i] != 0.0f && y->data[i] != x->data[i] * scale) bad++;
        }
        mean /= DN;
        double frac = (double)zeros / DN, sd = sqrt(p * (1 - p) / DN);
        CHECK_MSG(fabs(frac - p) < 5 * sd, "p = %g: %.4f of the elements zeroed", p, frac);
        CHECK_MSG(fabs(mean - 1.0) < 5 * sqrt(p / (1 - p) / DN), "p = %g: mean %.5f, want 1", p, mean);
        CHECK_MSG(bad == 0, "p = %g: %lld kept values not scaled by 1/(1-p)", p, (long long)bad);
    }
    /* p == 1: zeros (and NaN * 0 stays NaN, as torch) */
    nb_tensor *z = nb_dropout(ctx, nb_tensor_full(ctx, NB_SHAPE(3, 5), 2.0f), 1.0f, 1);
    CHECK(z);
    for (int i = 0; i < 15; i++) CHECK(z->data[i] == 0.0f);
    nb_ctx_free(ctx);
}

TEST(dropout_eval_and_zero_p_return_the_input)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, NB_SHAPE(4, 5)), 1);
    nb_rng before = *nb_ctx_rng(ctx);
    CHECK(nb_dropout(ctx, x, 0.5f, 0) == x);
    CHECK(nb_dropout(ctx, x, 0.0f, 1) == x);
    CHECK(x->node == NULL);
    CHECK(!memcmp(&before, nb_ctx_rng(ctx), sizeof before));   /* nothing drawn */
    nb_ctx_free(ctx);
}

TEST(dropout_is_deterministic)
{
    int saved = nb_get_threads();
    float *masks[3];
    for (int run = 0; run < 3; run++) {
        nb_set_threads(run == 0 ? 1 : 2);
        nb_ctx *ctx = nb_ctx_new(run == 2 ? 8 : 7);
        nb_tensor *x = nb_tensor_full(ctx, NB_SHAPE(3 * DN + 7), 1.0f);
        nb_tensor *y = nb_dropout(ctx, x, 0.4f, 1);
        CHECK(y);
        masks[run] = malloc((size_t)nb_tensor_numel(y) * sizeof(float));
        memcpy(masks[run], y->data, (size_t)nb_tensor_numel(y) * sizeof(float));
        nb_ctx_free(ctx);
    }
    nb_set_threads(saved);
    size_t bytes = (size_t)(3 * DN + 7) * sizeof(float);
    int same = !memcmp(masks[0], masks[1], bytes), differ = memcmp(masks[0], masks[2], bytes) != 0;
    for (int i = 0; i < 3; i++) free(masks[i]);
    CHECK_MSG(same, "the same seed gave different masks on 1 and 2 threads");
    CHECK_MSG(differ, "different seeds gave the same mask");
}

TEST(dropout_backward_uses_the_mask)
{
    nb_ctx *ctx = nb_ctx_new(5);
    nb_tensor *base = nb_tensor_randn(ctx, NB_SHAPE(300, 201));
    nb_tensor *x = nb_requires_grad(nb_slice(ctx, base, 1, 0, 200, 1), 1);   /* strided leaf */
    nb_tensor *y = nb_dropout(ctx, x, 0.3f, 1);
    CHECK(y && y->node);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, y, NULL, 0, 0)));
    float scale = 1.0f / 0.7f;
    for (int64_t i = 0; i < 300 * 200; i++) {
        float xv = base->data[(i / 200) * 201 + i % 200];
        float want = y->data[i] != 0.0f ? scale : 0.0f;
        CHECK_MSG(xv == 0.0f || x->grad[i] == want, "grad[%lld] = %g, want %g", (long long)i, x->grad[i], want);
    }
    nb_ctx_free(ctx);
}

TEST(dropout_rejects_bad_p)
{
    const float bad[] = {-0.1f, 1.5f, NAN};
    for (int i = 0; i < 3; i++) {
        nb_ctx *ctx = nb_ctx_new(1);
        nb_tensor *x = nb_tensor_zeros(ctx, NB_SHAPE(2, 2));
        CHECK(!nb_dropout(ctx, x, bad[i], 1));
        CHECK(!nb_dropout(ctx, x, bad[i], 0));   /* checked in eval mode too, as torch */
        CHECK_ERR(nb_ctx_status(ctx), NB_ERR_ARG, "dropout: probability p must be between 0 and 1");
        nb_ctx_free(ctx);
    }
    nb_model *m = nb_model_new("t", "");
    nb_clear_error();
    CHECK(!nb_nn_dropout(m, 1.5f));
    CHECK(strstr(nb_last_error(), "Dropout: probability p must be between 0 and 1, got 1.5"));
    nb_model_free(m);
}

/* ---- modules ------------------------------------------------------------------ */

TEST(pool_modules_repr_geometry_and_mode)
{
    nb_model *m = nb_model_new("t", "");
    nb_module *seq = nb_nn_sequential(m);
    nb_pool2d_opts mp = {.kernel = {2, 2}};
    nb_pool2d_opts mp2 = {.kernel = {2, 3}, .padding = {1, 0}, .dilation = {1, 2}, .ceil_mode = 1};
    nb_pool2d_opts ap = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .count_include_pad = 1};
    CHECK_OK(nb_sequential_add(seq, nb_nn_max_pool2d(m, &mp)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_max_pool2d(m, &mp2)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_avg_pool2d(m, &ap)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_adaptive_avg_pool2d(m, 3, 3)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_adaptive_avg_pool2d(m, 3, 2)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_dropout(m, 0.5f)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_dropout(m, 0.1f)));
    m->root = seq;
    char buf[1024];
    nb_module_print(seq, buf, sizeof buf);
    const char *want =
        "Sequential()\n"
        "  (0): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
        "  (1): MaxPool2d(kernel_size=(2, 3), stride=(2, 3), padding=(1, 0), dilation=(1, 2), ceil_mode=True)\n"
        "  (2): AvgPool2d(kernel_size=3, stride=2, padding=1)\n"
        "  (3): AdaptiveAvgPool2d(output_size=3)\n"
        "  (4): AdaptiveAvgPool2d(output_size=(3, 2))\n"
        "  (5): Dropout(p=0.5, inplace=False)\n"
        "  (6): Dropout(p=0.1, inplace=False)\n";
    CHECK_MSG(!strcmp(buf, want), "got:\n%s", buf);
    CHECK(m->nparams == 0);
    const char *kinds[] = {"MaxPool2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveAvgPool2d",
                           "Dropout", "Dropout"};
    for (int i = 0; i < 7; i++) CHECK(!strcmp(seq->children[i]->vt->kind, kinds[i]));
    nb_layer_geometry g;
    memset(&g, 0, sizeof g);
    CHECK(seq->children[1]->vt->geometry && seq->children[1]->vt->geometry(seq->children[1], &g) == 1);
    CHECK(g.kernel[0] == 2 && g.kernel[1] == 3 && g.stride[0] == 2 && g.stride[1] == 3 && g.padding[0] == 1 &&
          g.padding[1] == 0 && g.dilation[0] == 1 && g.dilation[1] == 2 && g.macs_per_output == 0);
    CHECK(seq->children[2]->vt->geometry(seq->children[2], &g) == 1);
    CHECK(g.kernel[0] == 3 && g.stride[0] == 2 && g.padding[1] == 1 && g.dilation[0] == 1 && g.macs_per_output == 9);

    /* forward through the modules: (2,3,12,12) -> pools -> dropout */
    nb_ctx *ctx = nb_ctx_new(9);
    nb_tensor *x = nb_tensor_randn(ctx, NB_SHAPE(2, 3, 12, 12));
    nb_tensor *y = nb_model_forward(m, ctx, x);
    CHECK_MSG(y && y->ndim == 4 && y->shape[2] == 3 && y->shape[3] == 2, "%s", nb_last_error());
    /* eval: Dropout is the identity */
    nb_model_train(m, 0);
    nb_tensor *d = seq->children[5]->vt->forward(seq->children[5], ctx, x);
    CHECK(d == x);
    nb_model_train(m, 1);
    d = seq->children[5]->vt->forward(seq->children[5], ctx, x);
    CHECK(d && d != x);
    nb_ctx_free(ctx);

    /* bad settings fail when the module is built */
    nb_pool2d_opts badpad = {.kernel = {2, 2}, .padding = {2, 0}};
    nb_pool2d_opts avgdil = {.kernel = {2, 2}, .dilation = {2, 2}};
    nb_pool2d_opts k0 = {.kernel = {0, 0}};
    CHECK(!nb_nn_max_pool2d(m, NULL) && strstr(nb_last_error(), "MaxPool2d: options are NULL"));
    CHECK(!nb_nn_max_pool2d(m, &badpad) && strstr(nb_last_error(), "at most half the kernel size"));
    CHECK(!nb_nn_avg_pool2d(m, &k0) && strstr(nb_last_error(), "AvgPool2d: kernel size"));
    CHECK(!nb_nn_avg_pool2d(m, &avgdil) && strstr(nb_last_error(), "dilation must be 1"));
    CHECK(!nb_nn_adaptive_avg_pool2d(m, 0, 1) && strstr(nb_last_error(), "output size must be positive"));
    nb_model_free(m);
}
