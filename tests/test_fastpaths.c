/* The fast paths of CNN training against the plain ones they replace:
 *  - the fused batch_norm -> relu -> max_pool2d(2) op against the three ops
 *    (output and running statistics bit for bit, gradients to rounding), its
 *    AVX-512 kernels against its portable ones (bit for bit), and
 *    Sequential's use of it against running the layers one by one; the same
 *    with a one-channel Conv2d in front (the first block of the CNN);
 *  - gradients written into fresh buffers (autograd's writes_fresh) against
 *    the accumulating path: a leaf that already holds a gradient gets the
 *    same gradient added, for every case of the gradient checks of those ops;
 *  - conv2d's AVX-512 paths (direct kernels for one-channel images, row
 *    kernels for im2col/col2im) against the portable im2col loops;
 *  - conv2d's Winograd path (3x3, stride 1) against im2col, and its AVX-512
 *    transforms against the portable ones (bit for bit);
 *  - a few training steps of the zoo CNN on 1 and 2 threads, bit for bit. */
#include "test.h"
#include "gradcheck.h"
#include "../src/ops/batchnorm.h"
#include "../src/kernels/simd.h"
#include <stdint.h>
#include <stdlib.h>

int nb__conv_use_simd(int on);   /* test hooks in src/ops/conv.c */
int nb__conv_use_winograd(int on);
int nb__wg_use_simd(int on);      /* src/kernels/winograd.c */

#define S(...) NB_SHAPE(__VA_ARGS__)

/* max_i |a_i - b_i| <= rtol * max_i |b_i| + atol */
static int close_all(const float *a, const float *b, int64_t n, double rtol, double atol, int64_t *worst)
{
    double scale = 0, w = -1;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= w)) w = d, *worst = i;
    }
    return n == 0 || w <= rtol * scale + atol;
}

/* a == b elementwise (so -0 == +0; the data here holds no NaN) */
static int64_t first_diff(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i])) return i;
    return -1;
}

static nb_tensor *filled(nb_ctx *ctx, int nd, const int64_t *shape, float scale, float shift)
{
    nb_tensor *t = nb_tensor_randn(ctx, nd, shape);
    if (!t) return NULL;
    for (int64_t i = 0; i < nb_tensor_numel(t); i++) t->data[i] = t->data[i] * scale + shift;
    return t;
}

/* ---- the fused op ---------------------------------------------------------------- */

typedef struct {
    int64_t N, C, H, W;
    int training, affine, transposed;
} fused_cfg;

typedef struct {
    float *y, *dx, *dw, *db, *rm, *rv;
    int64_t ny, nx;
} fused_out;

static void fused_free(fused_out *o)
{
    free(o->y), free(o->dx), free(o->dw), free(o->db), free(o->rm), free(o->rv);
    memset(o, 0, sizeof *o);
}

static float *copy_of(const float *p, int64_t n)
{
    float *c = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (c && n) memcpy(c, p, (size_t)n * sizeof(float));
    return c;
}

/* One forward and backward (loss = sum(y * R)), fused or as the three ops,
 * from inputs that depend only on the configuration. */
static int fused_run(const fused_cfg *k, int fused, fused_out *o)
{
    memset(o, 0, sizeof *o);
    nb_ctx *ctx = nb_ctx_new(42);
    const int64_t C = k->C;
    int64_t shape[4] = {k->N, C, k->transposed ? k->W : k->H, k->transposed ? k->H : k->W};
    nb_tensor *x = filled(ctx, 4, shape, 1.3f, 0.4f);
    if (x && k->transposed) x = nb_transpose(ctx, x, -1, -2);
    nb_tensor *w = k->affine ? filled(ctx, 1, &C, 0.5f, 1.0f) : NULL;
    nb_tensor *b = k->affine ? filled(ctx, 1, &C, 0.3f, 0.1f) : NULL;
    float *rm = calloc((size_t)C, sizeof(float)), *rv = calloc((size_t)C, sizeof(float));
    int ok = 0;
    if (!x || (k->affine && (!w || !b)) || !rm || !rv) goto done;
    for (int64_t c = 0; c < C; c++) rm[c] = 0.1f * (float)c, rv[c] = 0.5f + 0.1f * (float)c;
    nb_requires_grad(x, 1);
    if (w) nb_requires_grad(w, 1), nb_requires_grad(b, 1);
    nb_tensor *y;
    if (fused) {
        y = nb__batch_norm_relu_max_pool(ctx, x, w, b, rm, rv, k->training, 0.1f, 1e-5f);
    } else {
        nb_pool2d_opts po = {.kernel = {2, 2}};
        y = nb_max_pool2d(ctx, nb_relu(ctx, nb_batch_norm(ctx, x, w, b, rm, rv, k->training, 0.1f, 1e-5f)), &po);
    }
    if (!y) goto done;
    nb_tensor *r = filled(ctx, y->ndim, y->shape, 1.0f, 0.0f);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    if (!loss || nb_backward(ctx, loss) != NB_OK) goto done;
    o->ny = nb_tensor_numel(y);
    o->nx = nb_tensor_numel(x);
    o->y = copy_of(y->data, o->ny);
    o->dx = copy_of(x->grad, o->nx);
    o->dw = w ? copy_of(w->grad, C) : NULL;
    o->db = b ? copy_of(b->grad, C) : NULL;
    o->rm = copy_of(rm, C);
    o->rv = copy_of(rv, C);
    ok = o->y && o->dx && o->rm && o->rv && (!w || (o->dw && o->db));
done:
    free(rm);
    free(rv);
    nb_ctx_free(ctx);
    return ok;
}

static const fused_cfg fused_cfgs[] = {
    {4, 3, 8, 8, 1, 1, 0},     {2, 5, 7, 9, 1, 1, 0},  /* odd H and W */
    {3, 2, 6, 40, 1, 0, 0},    /* rows of 20 outputs: two vector steps */
    {2, 4, 10, 6, 0, 1, 0},    /* evaluation */
    {2, 3, 6, 5, 1, 1, 1},     /* transposed (strided) input */
    {64, 8, 14, 14, 1, 1, 0},  /* the CNN's second block, fewer channels */
    {1, 2, 5, 1001, 1, 1, 0},  /* rows of 500 outputs: 31 vector steps and a tail */
    {2, 3, 9, 17, 1, 1, 0},    /* rows of 8 outputs (two rows a step), odd H and W */
    {2, 2, 6, 18, 1, 1, 0},    /* rows of 9: one row a step */
    {3, 2, 2, 6, 0, 1, 0},     /* one output row, evaluation */
};

TEST(fused_bn_relu_pool_matches_three_ops)
{
    for (size_t i = 0; i < sizeof fused_cfgs / sizeof fused_cfgs[0]; i++) {
        const fused_cfg *k = &fused_cfgs[i];
        fused_out a, b;
        int ok = fused_run(k, 1, &a) && fused_run(k, 0, &b);
        CHECK_MSG(ok, "config %zu: run failed: %s", i, nb_last_error());
        int64_t d = first_diff(a.y, b.y, a.ny), wi = 0;
        CHECK_MSG(d < 0, "config %zu: output %lld differs: %.9g vs %.9g", i, (long long)d, a.y[d], b.y[d]);
        CHECK_MSG(first_diff(a.rm, b.rm, k->C) < 0 && first_diff(a.rv, b.rv, k->C) < 0,
                  "config %zu: running statistics differ", i);
        CHECK_MSG(close_all(a.dx, b.dx, a.nx, 1e-5, 0, &wi), "config %zu: dx[%lld] %.9g vs %.9g", i, (long long)wi,
                  a.dx[wi], b.dx[wi]);
        if (k->affine) {
            CHECK_MSG(close_all(a.dw, b.dw, k->C, 1e-5, 1e-6, &wi), "config %zu: dw[%lld] %.9g vs %.9g", i,
                      (long long)wi, a.dw[wi], b.dw[wi]);
            CHECK_MSG(close_all(a.db, b.db, k->C, 1e-5, 1e-6, &wi), "config %zu: db[%lld] %.9g vs %.9g", i,
                      (long long)wi, a.db[wi], b.db[wi]);
        }
        fused_free(&a);
        fused_free(&b);
    }
}

TEST(fused_bn_relu_pool_simd_matches_portable)
{
    if (!nb__cpu_avx512()) SKIP("no AVX-512 on this CPU: only the portable kernels run");
    for (size_t i = 0; i < sizeof fused_cfgs / sizeof fused_cfgs[0]; i++) {
        const fused_cfg *k = &fused_cfgs[i];
        fused_out a, b;
        int old = nb__bn_pool_use_simd(1);
        int ok = fused_run(k, 1, &a);
        nb__bn_pool_use_simd(0);
        ok = ok && fused_run(k, 1, &b);
        nb__bn_pool_use_simd(old);
        CHECK_MSG(ok, "config %zu: run failed: %s", i, nb_last_error());
        CHECK_MSG(first_diff(a.y, b.y, a.ny) < 0, "config %zu: outputs differ", i);
        CHECK_MSG(first_diff(a.dx, b.dx, a.nx) < 0, "config %zu: dx differs", i);
        if (k->affine)
            CHECK_MSG(first_diff(a.dw, b.dw, k->C) < 0 && first_diff(a.db, b.db, k->C) < 0,
                      "config %zu: dw or db differs", i);
        fused_free(&a);
        fused_free(&b);
    }
}

/* A run of BatchNorm2d, ReLU, MaxPool2d(2) inside a Sequential runs as the
 * fused op; called one by one, the same layers give the same bits, and the
 * BatchNorm layer counts one batch either way. */
TEST(sequential_fuses_bn_relu_pool)
{
    nb_ctx *ctx = nb_ctx_new(3);
    nb_model *m = nb_model_new("t", "");
    CHECK(ctx && m);
    nb_module *seq = nb_nn_sequential(m);
    m->root = seq;
    nb_pool2d_opts p2 = {.kernel = {2, 2}};
    CHECK_OK(nb_sequential_add(seq, nb_nn_batch_norm2d(m, 3, 1e-5f, 0.1f, 1)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_relu(m)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_max_pool2d(m, &p2)));
    nb_tensor *x = filled(ctx, 4, (int64_t[]){5, 3, 6, 8}, 2.0f, 0.5f);
    CHECK(x);
    for (int training = 1; training >= 0; training--) {
        nb_model_train(m, training);
        size_t nbytes = m->numel * sizeof(float);
        float *state = malloc(nbytes);
        CHECK(state);
        memcpy(state, m->data, nbytes);
        nb_tensor *y = nb_model_forward(m, ctx, x);
        float *after = malloc(nbytes);
        CHECK(y && after && y->node && y->node->op == NB__OP_BATCH_NORM_RELU_MAX_POOL);
        memcpy(after, m->data, nbytes);
        memcpy(m->data, state, nbytes);
        nb_tensor *z = x;
        for (int i = 0; i < seq->nchildren && z; i++) z = seq->children[i]->vt->forward(seq->children[i], ctx, z);
        CHECK(z && nb_tensor_numel(z) == nb_tensor_numel(y));
        CHECK_MSG(first_diff(y->data, z->data, nb_tensor_numel(y)) < 0, "training %d: outputs differ", training);
        CHECK_MSG(!memcmp(after, m->data, nbytes), "training %d: buffers differ", training);
        free(state);
        free(after);
    }
    /* a pool the fused op does not cover runs layer by layer */
    nb_model *m2 = nb_model_new("t2", "");
    nb_module *s2 = nb_nn_sequential(m2);
    m2->root = s2;
    nb_pool2d_opts p3 = {.kernel = {3, 3}, .stride = {2, 2}};
    CHECK_OK(nb_sequential_add(s2, nb_nn_batch_norm2d(m2, 3, 1e-5f, 0.1f, 1)));
    CHECK_OK(nb_sequential_add(s2, nb_nn_relu(m2)));
    CHECK_OK(nb_sequential_add(s2, nb_nn_max_pool2d(m2, &p3)));
    nb_tensor *y2 = nb_model_forward(m2, ctx, x);
    CHECK(y2 && y2->node && y2->node->op == NB__OP_MAX_POOL2D && y2->shape[2] == 2 && y2->shape[3] == 3);
    nb_model_free(m2);
    nb_model_free(m);
    nb_ctx_free(ctx);
}

/* ---- the fused first block: conv2d of one-channel images, then the op above ----- */

/* A Sequential Conv2d(1, O, 3, padding 1), BatchNorm2d, ReLU, MaxPool2d(2):
 * forward and backward (loss = sum(y * R)) of images x, run as the model
 * runs it (fused when x needs no gradient) or layer by layer; the output,
 * the running statistics and every gradient into *o (the conv's weight
 * gradient in dx, the batch norm's in dw and db). */
static int block_run(int fused, int training, int64_t N, int64_t O, int64_t H, int64_t W, fused_out *o, int *op)
{
    memset(o, 0, sizeof *o);
    nb_ctx *ctx = nb_ctx_new(7);
    nb_model *m = nb_model_new("b", "");
    nb_rng rng;
    nb_rng_seed(&rng, 11);
    int ok = 0;
    if (!ctx || !m) goto done;
    nb_module *seq = nb_nn_sequential(m);
    m->root = seq;
    nb_conv2d_opts co = {{1, 1}, {1, 1}, {1, 1}, 1};
    nb_pool2d_opts p2 = {.kernel = {2, 2}};
    if (nb_sequential_add(seq, nb_nn_conv2d(m, &rng, 1, (int)O, 3, 3, &co, 1)) ||
        nb_sequential_add(seq, nb_nn_batch_norm2d(m, (int)O, 1e-5f, 0.1f, 1)) ||
        nb_sequential_add(seq, nb_nn_relu(m)) || nb_sequential_add(seq, nb_nn_max_pool2d(m, &p2)))
        goto done;
    nb_tensor *bw = nb_model_param(m, seq->children[1]->params[0]); /* weight, bias: not 1, 0 */
    nb_tensor *bb = nb_model_param(m, seq->children[1]->params[1]);
    for (int64_t c = 0; c < O; c++) bw->data[c] = 0.7f + 0.05f * (float)c, bb->data[c] = 0.1f - 0.02f * (float)c;
    nb_model_train(m, training);
    nb_tensor *x = filled(ctx, 4, (int64_t[]){N, 1, H, W}, 1.0f, 0.3f);
    if (!x) goto done;
    nb_tensor *y;
    if (fused) {
        y = nb_model_forward(m, ctx, x);
    } else {
        y = x;
        for (int i = 0; i < seq->nchildren && y; i++) y = seq->children[i]->vt->forward(seq->children[i], ctx, y);
    }
    if (!y) goto done;
    *op = y->node ? y->node->op : -1;
    nb_tensor *r = filled(ctx, y->ndim, y->shape, 1.0f, 0.0f);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    if (!loss || nb_backward(ctx, loss) != NB_OK) goto done;
    nb_tensor *cw = nb_model_param(m, seq->children[0]->params[0]);
    o->ny = nb_tensor_numel(y);
    o->nx = O * 9;
    o->y = copy_of(y->data, o->ny);
    o->dx = copy_of(cw->grad, o->nx);
    o->db = copy_of(nb_model_param(m, seq->children[0]->params[1])->grad, O); /* the conv's bias */
    o->dw = copy_of(bw->grad, O);
    float *rm = nb_model_param(m, (int)seq->children[1]->i[3])->data;
    float *rv = nb_model_param(m, (int)seq->children[1]->i[4])->data;
    o->rm = copy_of(rm, O);
    o->rv = copy_of(rv, O);
    ok = o->y && o->dx && o->db && o->dw && o->rm && o->rv;
done:
    nb_model_free(m);
    nb_ctx_free(ctx);
    return ok;
}

/* The block of the notes' CNN (and odd sizes, a lone last channel) gives
 * the layers' output and running statistics bit for bit and their
 * gradients to rounding; evaluation too. */
TEST(sequential_fuses_conv_bn_relu_pool)
{
    static const int64_t cfg[][5] = {{8, 32, 28, 28, 1}, {3, 5, 9, 7, 1}, {2, 3, 6, 10, 0}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        fused_out a, b;
        int opa = -1, opb = -1;
        int ok = block_run(1, (int)cfg[i][4], cfg[i][0], cfg[i][1], cfg[i][2], cfg[i][3], &a, &opa) &&
                 block_run(0, (int)cfg[i][4], cfg[i][0], cfg[i][1], cfg[i][2], cfg[i][3], &b, &opb);
        CHECK_MSG(ok, "config %zu: run failed: %s", i, nb_last_error());
        CHECK_MSG(opa == NB__OP_CONV_BATCH_NORM_RELU_MAX_POOL && opb == NB__OP_MAX_POOL2D,
                  "config %zu: ops %d and %d", i, opa, opb);
        int64_t d = first_diff(a.y, b.y, a.ny), wi = 0;
        CHECK_MSG(d < 0, "config %zu: output %lld differs: %.9g vs %.9g", i, (long long)d, a.y[d], b.y[d]);
        const int64_t O = cfg[i][1];
        CHECK_MSG(first_diff(a.rm, b.rm, O) < 0 && first_diff(a.rv, b.rv, O) < 0,
                  "config %zu: running statistics differ", i);
        CHECK_MSG(close_all(a.dx, b.dx, a.nx, 1e-5, 0, &wi), "config %zu: conv weight grad[%lld] %.9g vs %.9g", i,
                  (long long)wi, a.dx[wi], b.dx[wi]);
        /* in training the conv's bias gradient is 0 but for rounding (the batch
         * norm removes the mean): a sum of N*H*W terms of either sign */
        CHECK_MSG(close_all(a.db, b.db, O, 1e-5, 5e-4, &wi), "config %zu: conv bias grad[%lld] %.9g vs %.9g", i,
                  (long long)wi, a.db[wi], b.db[wi]);
        CHECK_MSG(close_all(a.dw, b.dw, O, 1e-5, 1e-6, &wi), "config %zu: bn weight grad[%lld] %.9g vs %.9g", i,
                  (long long)wi, a.dw[wi], b.dw[wi]);
        fused_free(&a);
        fused_free(&b);
    }
}

/* Images that need a gradient (a GAN's generated ones, say) keep the
 * layers: the fused op gives none to its input. */
TEST(sequential_keeps_conv_when_input_needs_grad)
{
    nb_ctx *ctx = nb_ctx_new(5);
    nb_model *m = nb_model_new("g", "");
    nb_rng rng;
    nb_rng_seed(&rng, 3);
    CHECK(ctx && m);
    nb_module *seq = nb_nn_sequential(m);
    m->root = seq;
    nb_conv2d_opts co = {{1, 1}, {1, 1}, {1, 1}, 1};
    nb_pool2d_opts p2 = {.kernel = {2, 2}};
    CHECK_OK(nb_sequential_add(seq, nb_nn_conv2d(m, &rng, 1, 4, 3, 3, &co, 1)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_batch_norm2d(m, 4, 1e-5f, 0.1f, 1)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_relu(m)));
    CHECK_OK(nb_sequential_add(seq, nb_nn_max_pool2d(m, &p2)));
    nb_tensor *x = filled(ctx, 4, (int64_t[]){2, 1, 8, 8}, 1.0f, 0.0f);
    CHECK(x);
    nb_requires_grad(x, 1);
    nb_tensor *y = nb_model_forward(m, ctx, x);
    CHECK(y && y->node && y->node->op == NB__OP_BATCH_NORM_RELU_MAX_POOL);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, y, NULL, 0, 0)));
    CHECK(x->grad != NULL);
    nb_model_free(m);
    nb_ctx_free(ctx);
}

/* ---- fresh gradients against accumulation ------------------------------------------ */

/* The ops whose backward writes fresh gradients (autograd.c's writes_fresh). */
static const struct { const char *name; int (*gen)(nb_ctx *, int, gc_case *); } fresh_ops[] = {
    {"reshape", gc_reshape}, {"contiguous", gc_contiguous}, {"linear", gc_linear},
    {"relu", gc_relu},       {"dropout", gc_dropout},       {"conv2d", gc_conv2d},
    {"batch_norm", gc_batch_norm}, {"batch_norm_relu_max_pool", gc_batch_norm_relu_max_pool},
};

/* Case v of an op: the leaves' gradients after backward of sum(out * R),
 * the leaves holding `start` (a number) or nothing (start NaN) before. */
static float *case_grads(int (*gen)(nb_ctx *, int, gc_case *), int v, float start, int64_t *n, int *more)
{
    nb_ctx *ctx = nb_ctx_new(1234u + (uint64_t)v);
    gc_case c;
    memset(&c, 0, sizeof c);
    float *out = NULL;
    *more = ctx && gen(ctx, v, &c);
    if (!*more) goto done;
    *n = 0;
    for (int k = 0; k < c.nin; k++) {
        if (!c.in[k]->requires_grad) continue;
        *n += nb_tensor_numel(c.in[k]);
        if (start == start) {
            if (nb_zero_grad(ctx, c.in[k]) != NB_OK) goto done;
            for (int64_t i = 0; i < nb_tensor_numel(c.in[k]); i++) c.in[k]->grad[i] = start;
        }
    }
    nb_tensor *y = c.fn(ctx, &c);
    if (!y) goto done;
    nb_tensor *r = nb_tensor_zeros(ctx, y->ndim, y->shape);
    if (!r) goto done;
    for (int64_t i = 0; i < nb_tensor_numel(r); i++) r->data[i] = (float)((i * 7) % 11) * 0.25f - 1.0f;
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    if (!loss || nb_backward(ctx, loss) != NB_OK) goto done;
    out = malloc((size_t)(*n ? *n : 1) * sizeof(float));
    if (!out) goto done;
    int64_t at = 0;
    for (int k = 0; k < c.nin; k++) {
        if (!c.in[k]->requires_grad) continue;
        memcpy(out + at, c.in[k]->grad, (size_t)nb_tensor_numel(c.in[k]) * sizeof(float));
        at += nb_tensor_numel(c.in[k]);
    }
done:
    nb_ctx_free(ctx);
    return out;
}

TEST(fresh_gradients_match_accumulated)
{
    for (size_t i = 0; i < sizeof fresh_ops / sizeof fresh_ops[0]; i++)
        for (int v = 0;; v++) {
            int64_t n1 = 0, n2 = 0;
            int more = 0;
            float *fresh = case_grads(fresh_ops[i].gen, v, NAN, &n1, &more);
            if (!more) break;
            float *acc = case_grads(fresh_ops[i].gen, v, 0.5f, &n2, &more);
            CHECK_MSG(fresh && acc && n1 == n2, "%s case %d: run failed: %s", fresh_ops[i].name, v, nb_last_error());
            for (int64_t e = 0; e < n1; e++)
                CHECK_MSG(fabsf(acc[e] - (0.5f + fresh[e])) <= 1e-5f * (1.0f + fabsf(fresh[e])),
                          "%s case %d element %lld: accumulated %.9g, fresh %.9g + 0.5", fresh_ops[i].name, v,
                          (long long)e, acc[e], fresh[e]);
            free(fresh);
            free(acc);
        }
}

/* ---- conv2d's AVX-512 paths ---------------------------------------------------------- */

typedef struct {
    int64_t N, C, H, W, O;
    int kh, kw;
    nb_conv2d_opts o;
    int bias;
    int frozen; /* the weight needs no gradient (dw left out) */
} conv_cfg;

/* y, dx, dw (unless frozen), db of one conv (loss = sum(y * R)) in one
 * malloc'd array. */
static float *conv_all(const conv_cfg *k, int64_t *n)
{
    nb_ctx *ctx = nb_ctx_new(9);
    nb_tensor *x = filled(ctx, 4, (int64_t[]){k->N, k->C, k->H, k->W}, 1.0f, 0.0f);
    nb_tensor *w = filled(ctx, 4, (int64_t[]){k->O, k->C / (k->o.groups ? k->o.groups : 1), k->kh, k->kw}, 0.3f, 0);
    nb_tensor *b = k->bias ? filled(ctx, 1, &k->O, 0.5f, 0.0f) : NULL;
    float *out = NULL;
    if (!x || !w || (k->bias && !b)) goto done;
    nb_requires_grad(x, 1);
    nb_requires_grad(w, !k->frozen);
    if (b) nb_requires_grad(b, 1);
    nb_tensor *y = nb_conv2d(ctx, x, w, b, &k->o);
    nb_tensor *r = y ? filled(ctx, 4, y->shape, 1.0f, 0.0f) : NULL;
    nb_tensor *loss = r ? nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0) : NULL;
    if (!loss || nb_backward(ctx, loss) != NB_OK) goto done;
    const nb_tensor *parts[4] = {y, x, k->frozen ? NULL : w, b};
    float *vals[4] = {y->data, x->grad, w->grad, b ? b->grad : NULL};
    *n = 0;
    for (int i = 0; i < 4; i++) *n += parts[i] ? nb_tensor_numel(parts[i]) : 0;
    out = malloc((size_t)*n * sizeof(float));
    if (!out) goto done;
    int64_t at = 0;
    for (int i = 0; i < 4; i++)
        if (parts[i]) {
            memcpy(out + at, vals[i], (size_t)nb_tensor_numel(parts[i]) * sizeof(float));
            at += nb_tensor_numel(parts[i]);
        }
done:
    nb_ctx_free(ctx);
    return out;
}

TEST(conv2d_simd_paths_match_portable)
{
    const conv_cfg cfgs[] = {
        /* one-channel images: the direct kernels (same sums in another order) */
        {64, 1, 28, 28, 32, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        {3, 1, 9, 40, 17, 3, 3, {{1, 1}, {0, 0}, {1, 1}, 1}, 1, 0},
        {2, 1, 11, 7, 5, 5, 5, {{1, 1}, {2, 2}, {1, 1}, 1}, 0, 0},
        {10, 1, 6, 5, 3, 2, 4, {{1, 1}, {1, 3}, {1, 1}, 1}, 1, 0},
        /* width stride 1: the row kernels (the same bits) */
        {2, 3, 14, 14, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        {2, 2, 9, 37, 3, 3, 5, {{2, 1}, {1, 2}, {2, 1}, 1}, 1, 0},
        {1, 4, 8, 20, 4, 3, 3, {{1, 1}, {2, 2}, {2, 2}, 2}, 0, 0},
        {3, 2, 7, 6, 2, 1, 3, {{3, 1}, {0, 1}, {1, 1}, 1}, 1, 0},
        /* long rows: many vector steps and a tail */
        {1, 1, 4, 1001, 3, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        {1, 2, 4, 1000, 2, 3, 5, {{1, 1}, {1, 2}, {1, 1}, 1}, 1, 0},
    };
    if (!nb__cpu_avx512()) SKIP("no AVX-512 on this CPU: only the portable kernels run");
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        int64_t n1 = 0, n2 = 0, wi = 0;
        int old = nb__conv_use_simd(1);
        float *a = conv_all(&cfgs[i], &n1);
        nb__conv_use_simd(0);
        float *b = conv_all(&cfgs[i], &n2);
        nb__conv_use_simd(old);
        CHECK_MSG(a && b && n1 == n2, "config %zu: conv failed: %s", i, nb_last_error());
        if (cfgs[i].C == 1)
            CHECK_MSG(close_all(a, b, n1, 2e-6, 0, &wi), "config %zu: element %lld: %.9g vs %.9g", i, (long long)wi,
                      a[wi], b[wi]);
        else
            CHECK_MSG((wi = first_diff(a, b, n1)) < 0, "config %zu: element %lld: %.9g vs %.9g", i, (long long)wi,
                      a[wi], b[wi]);
        free(a);
        free(b);
    }
}

/* Winograd's sums differ from im2col's by rounding: outputs and gradients
 * agree to 1e-5 of each part's largest value. The shapes cover odd output
 * sizes (a last tile row or column half outside), paddings 0, 1 and 2 (the
 * data gradient then runs with padding 2, 1 and 0), odd channel counts, a
 * chunk boundary inside a row of tiles (40x40 at 8 + 8 channels: 1024-tile
 * chunks), the CNN's second layer (whose bias gradient comes with the
 * weight's, from the transformed dY) and the same with a frozen weight
 * (the bias gradient alone). The AVX-512 transforms give the portable
 * ones' bits. */
TEST(conv2d_winograd_matches_im2col)
{
    const conv_cfg cfgs[] = {
        {64, 32, 14, 14, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        {2, 9, 7, 11, 17, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0},
        {3, 8, 40, 40, 8, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 0, 0},
        {2, 12, 9, 6, 10, 3, 3, {{1, 1}, {0, 0}, {1, 1}, 1}, 1, 0},
        {1, 8, 5, 8, 9, 3, 3, {{1, 1}, {2, 2}, {1, 1}, 1}, 0, 0},
        {2, 16, 3, 3, 8, 3, 3, {{1, 1}, {0, 2}, {1, 1}, 1}, 1, 0},
        {1, 3, 4, 1001, 2, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 0}, /* 501 tiles a row */
        {8, 32, 14, 14, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, 1, 1}, /* db without dw: its own pass */
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        int64_t n1 = 0, n2 = 0, n3 = 0, wi;
        int old = nb__conv_use_winograd(1);
        float *a = conv_all(&cfgs[i], &n1);
        int old_simd = nb__wg_use_simd(0);
        float *p = conv_all(&cfgs[i], &n3);
        nb__wg_use_simd(old_simd);
        nb__conv_use_winograd(0);
        float *b = conv_all(&cfgs[i], &n2);
        nb__conv_use_winograd(old);
        CHECK_MSG(a && b && p && n1 == n2 && n1 == n3, "config %zu: conv failed: %s", i, nb_last_error());
        if (!a || !b || !p || n1 != n2 || n1 != n3) continue;
        CHECK_MSG((wi = first_diff(a, p, n1)) < 0, "config %zu: AVX-512 and portable transforms differ at %lld: "
                  "%.9g vs %.9g", i, (long long)wi, a[wi], p[wi]);
        const conv_cfg *k = &cfgs[i];
        const int64_t OH = k->H + 2 * k->o.padding[0] - 2, OW = k->W + 2 * k->o.padding[1] - 2;
        const int64_t len[4] = {k->N * k->O * OH * OW, k->N * k->C * k->H * k->W, k->frozen ? 0 : k->O * k->C * 9,
                                k->bias ? k->O : 0};
        const char *what[4] = {"y", "dx", "dw", "db"};
        int64_t at = 0;
        for (int q = 0; q < 4; at += len[q], q++) {
            wi = 0;
            CHECK_MSG(close_all(a + at, b + at, len[q], 1e-5, 0, &wi), "config %zu: %s[%lld]: %.9g vs %.9g", i,
                      what[q], (long long)wi, a[at + wi], b[at + wi]);
        }
        free(a);
        free(b);
        free(p);
    }
}

/* dX of sum(conv(x) * r) + sum(x * s): the mul's backward runs first and
 * writes x's gradient, conv2d's then adds into it (Winograd's `add`). */
static float *conv_dx_added(int64_t *n)
{
    nb_ctx *ctx = nb_ctx_new(4);
    nb_tensor *x = filled(ctx, S(2, 16, 9, 7), 1.0f, 0.0f);
    nb_tensor *w = filled(ctx, S(16, 16, 3, 3), 0.3f, 0.0f);
    float *out = NULL;
    nb_requires_grad(x, 1);
    nb_tensor *y = nb_conv2d(ctx, x, w, NULL, &(nb_conv2d_opts){.padding = {1, 1}});
    nb_tensor *r = y ? filled(ctx, 4, y->shape, 1.0f, 0.0f) : NULL;
    nb_tensor *s = filled(ctx, 4, x->shape, 1.0f, 0.0f);
    nb_tensor *loss = r && s ? nb_add(ctx, nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0),
                                      nb_sum(ctx, nb_mul(ctx, x, s), NULL, 0, 0))
                             : NULL;
    if (loss && nb_backward(ctx, loss) == NB_OK && (out = malloc((size_t)nb_tensor_numel(x) * sizeof(float)))) {
        *n = nb_tensor_numel(x);
        memcpy(out, x->grad, (size_t)*n * sizeof(float));
    }
    nb_ctx_free(ctx);
    return out;
}

TEST(conv2d_winograd_adds_into_gradient)
{
    int64_t n1 = 0, n2 = 0, wi = 0;
    int old = nb__conv_use_winograd(1);
    float *a = conv_dx_added(&n1);
    nb__conv_use_winograd(0);
    float *b = conv_dx_added(&n2);
    nb__conv_use_winograd(old);
    CHECK_MSG(a && b && n1 == n2, "conv failed: %s", nb_last_error());
    if (a && b && n1 == n2)
        CHECK_MSG(close_all(a, b, n1, 1e-5, 0, &wi), "dx[%lld]: %.9g vs %.9g", (long long)wi, a[wi], b[wi]);
    free(a);
    free(b);
}

/* ---- the whole CNN ------------------------------------------------------------------- */

/* The zoo CNN's parameters after 3 SGD steps on random images. */
static float *cnn_steps(int threads, size_t *n)
{
    nb_set_threads(threads);
    nb_ctx *ctx = nb_ctx_new(5);
    nb_model *m = NULL;
    float *out = NULL;
    if (!ctx || nb_model_build("cnn", NULL, nb_ctx_rng(ctx), &m) != NB_OK) goto done;
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f});
    if (!o) goto done;
    int32_t y[16];
    for (int step = 0; step < 3; step++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = nb_tensor_rand(ctx, 4, (int64_t[]){16, 1, 28, 28});
        for (int i = 0; i < 16; i++) y[i] = (int32_t)nb_rng_below(nb_ctx_rng(ctx), 10);
        nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, x), y, NULL, -100, NB_REDUCTION_MEAN);
        nb_model_zero_grad(m);
        if (!loss || nb_backward(ctx, loss) != NB_OK || nb_optim_step(o) != NB_OK) {
            nb_optim_free(o);
            goto done;
        }
    }
    *n = m->numel;
    out = copy_of(m->data, (int64_t)m->numel);
    nb_optim_free(o);
done:
    nb_model_free(m);
    nb_ctx_free(ctx);
    return out;
}

TEST(cnn_training_same_bits_on_1_and_2_threads)
{
    const int saved = nb_get_threads();
    size_t n1 = 0, n2 = 0, n3 = 0;
    float *a = cnn_steps(1, &n1), *b = cnn_steps(2, &n2), *c = cnn_steps(2, &n3);
    nb_set_threads(saved);
    CHECK_MSG(a && b && c && n1 == n2 && n2 == n3, "training failed: %s", nb_last_error());
    CHECK_MSG(!memcmp(b, c, n2 * sizeof(float)), "two runs on 2 threads differ");
    CHECK_MSG(!memcmp(a, b, n1 * sizeof(float)), "1 and 2 threads differ");
    free(a);
    free(b);
    free(c);
}
