/* Forward values, views, errors, NULL propagation and small end-to-end checks
 * of the core ops (elementwise, matmul/linear, reductions, shape ops). */
#include "test.h"
#include <stdint.h>
#include <stdlib.h>

#define S(...) NB_SHAPE(__VA_ARGS__)

static nb_tensor *arange(nb_ctx *ctx, int nd, const int64_t *shape, float start)
{
    nb_tensor *t = nb_tensor_new(ctx, nd, shape);
    if (!t) return NULL;
    for (int64_t i = 0; i < nb_tensor_numel(t); i++) t->data[i] = start + (float)i;
    return t;
}

/* 1 if t has the given shape. */
static int has_shape(const nb_tensor *t, int nd, const int64_t *shape)
{
    if (!t || t->ndim != nd) return 0;
    for (int d = 0; d < nd; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

/* Element e (row-major) of a possibly strided tensor. */
static float at(const nb_tensor *t, int64_t e)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (e % t->shape[d]) * t->stride[d];
        e /= t->shape[d];
    }
    return t->data[off];
}

/* ---- elementwise --------------------------------------------------------------- */

TEST(ops_broadcast_values)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *a = arange(ctx, S(2, 3), 1);               /* [[1,2,3],[4,5,6]] */
    nb_tensor *b = nb_tensor_from(ctx, S(3), (float[]){10, 20, 30});
    nb_tensor *c = nb_tensor_from(ctx, S(2, 1), (float[]){100, 200});
    nb_tensor *s = nb_tensor_scalar(ctx, 2);
    nb_tensor *y = nb_add(ctx, a, b);
    CHECK(has_shape(y, S(2, 3)));
    const float add[] = {11, 22, 33, 14, 25, 36};
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], add[i], 0, 0);
    y = nb_sub(ctx, b, c);                                /* (3) - (2,1) -> (2,3) */
    CHECK(has_shape(y, S(2, 3)));
    const float sub[] = {-90, -80, -70, -190, -180, -170};
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], sub[i], 0, 0);
    y = nb_mul(ctx, c, b);
    const float mul[] = {1000, 2000, 3000, 2000, 4000, 6000};
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], mul[i], 0, 0);
    y = nb_div(ctx, a, s);
    CHECK(has_shape(y, S(2, 3)));
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], (i + 1) / 2.0, 0, 0);
    y = nb_div(ctx, s, b);
    for (int i = 0; i < 3; i++) CHECK_NEAR(y->data[i], 2.0f / (10.0f * (i + 1)), 1e-6, 0);
    /* (2,1,3) * (4,1) -> (2,4,3) */
    nb_tensor *p = arange(ctx, S(2, 1, 3), 0), *q = arange(ctx, S(4, 1), 1);
    y = nb_mul(ctx, p, q);
    CHECK(has_shape(y, S(2, 4, 3)));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++) CHECK_NEAR(y->data[(i * 4 + j) * 3 + k], (i * 3 + k) * (j + 1.0), 0, 0);
    /* 0-d with 0-d stays 0-d */
    y = nb_add(ctx, s, nb_tensor_scalar(ctx, 5));
    CHECK(y && y->ndim == 0 && nb_tensor_item(y) == 7);
    /* a transposed operand */
    nb_tensor *t = nb_transpose(ctx, arange(ctx, S(3, 2), 0), 0, 1);   /* [[0,2,4],[1,3,5]] */
    y = nb_add(ctx, t, b);
    const float tr[] = {10, 22, 34, 11, 23, 35};
    for (int i = 0; i < 6; i++) CHECK_NEAR(y->data[i], tr[i], 0, 0);
    CHECK(nb_ctx_status(ctx) == NB_OK);
    nb_ctx_free(ctx);
}

TEST(ops_unary_values)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_tensor_from(ctx, S(5), (float[]){0.25f, 1, 2, 4, 9});
    nb_tensor *e = nb_exp(ctx, x), *l = nb_log(ctx, x), *r = nb_sqrt(ctx, x);
    nb_tensor *sc = nb_scale(ctx, x, -2), *as = nb_add_scalar(ctx, x, 1.5f);
    nb_tensor *p2 = nb_pow(ctx, x, 2), *p3 = nb_pow(ctx, x, 3), *ph = nb_pow(ctx, x, 0.5f);
    nb_tensor *pm = nb_pow(ctx, x, -1), *pg = nb_pow(ctx, x, 1.7f), *p0 = nb_pow(ctx, x, 0);
    CHECK(nb_ctx_status(ctx) == NB_OK);
    for (int i = 0; i < 5; i++) {
        double v = x->data[i];
        CHECK_NEAR(e->data[i], exp(v), 1e-6, 0);
        CHECK_NEAR(l->data[i], log(v), 1e-6, 1e-7);
        CHECK_NEAR(r->data[i], sqrt(v), 1e-6, 0);
        CHECK_NEAR(sc->data[i], -2 * v, 0, 0);
        CHECK_NEAR(as->data[i], v + 1.5, 0, 0);
        CHECK_NEAR(p2->data[i], v * v, 1e-6, 0);
        CHECK_NEAR(p3->data[i], v * v * v, 1e-6, 0);
        CHECK_NEAR(ph->data[i], sqrt(v), 1e-6, 0);
        CHECK_NEAR(pm->data[i], 1 / v, 1e-6, 0);
        CHECK_NEAR(pg->data[i], pow(v, 1.7), 1e-6, 0);
        CHECK_NEAR(p0->data[i], 1, 0, 0);
    }
    nb_ctx_free(ctx);
}

/* torch's pow gradient p * x^(p-1) at x = 0, and exactly 0 for p = 0. */
TEST(ops_pow_grad_edge_cases)
{
    static const float ps[] = {0, 1, 2, 3, 0.5f};
    for (int k = 0; k < 5; k++) {
        nb_ctx *ctx = nb_ctx_new(1);
        nb_tensor *x = nb_requires_grad(nb_tensor_from(ctx, S(3), (float[]){0, 2, -1}), 1);
        nb_tensor *y = nb_sum(ctx, nb_pow(ctx, x, ps[k]), NULL, 0, 0);
        CHECK_OK(nb_backward(ctx, y));
        float p = ps[k];
        if (p == 0) {
            for (int i = 0; i < 3; i++) CHECK(x->grad[i] == 0);
        } else if (p == 1) {
            for (int i = 0; i < 3; i++) CHECK(x->grad[i] == 1);
        } else if (p == 2) {
            CHECK(x->grad[0] == 0 && x->grad[1] == 4 && x->grad[2] == -2);
        } else if (p == 3) {
            CHECK(x->grad[0] == 0 && x->grad[1] == 12 && x->grad[2] == 3);
        } else {
            CHECK(isinf(x->grad[0]) && x->grad[0] > 0);   /* 0.5 / sqrt(0) */
            CHECK_NEAR(x->grad[1], 0.5 / sqrt(2.0), 1e-6, 0);
            CHECK(isnan(x->grad[2]));                     /* (-1)^-0.5 */
        }
        nb_ctx_free(ctx);
    }
}

/* Above the threading threshold, results match a plain loop and do not depend
 * on the thread count. */
TEST(ops_large_tensors_threads)
{
    nb_ctx *ctx = nb_ctx_new(3);
    nb_tensor *a = nb_tensor_randn(ctx, S(300, 257)), *b = nb_tensor_randn(ctx, S(257));
    nb_tensor *y[2], *s[2], *m[2], *cs[2];
    for (int t = 0; t < 2; t++) {
        nb_set_threads(t ? 2 : 1);
        y[t] = nb_mul(ctx, a, b);
        s[t] = nb_sum(ctx, a, NULL, 0, 0);
        m[t] = nb_max(ctx, a, (int[]){0}, 1, 0);
        cs[t] = nb_sum(ctx, nb_transpose(ctx, a, 0, 1), (int[]){1}, 1, 0);
    }
    nb_set_threads(2);
    CHECK(nb_ctx_status(ctx) == NB_OK);
    int64_t n = nb_tensor_numel(a);
    CHECK(memcmp(y[0]->data, y[1]->data, (size_t)n * sizeof(float)) == 0);
    CHECK(memcmp(s[0]->data, s[1]->data, sizeof(float)) == 0);
    CHECK(memcmp(m[0]->data, m[1]->data, 257 * sizeof(float)) == 0);
    CHECK(memcmp(cs[0]->data, cs[1]->data, 257 * sizeof(float)) == 0);
    double tot = 0;
    for (int64_t i = 0; i < n; i++) {
        CHECK(y[0]->data[i] == a->data[i] * b->data[i % 257]);
        tot += a->data[i];
    }
    CHECK_NEAR(s[0]->data[0], tot, 1e-6, 1e-4);
    for (int j = 0; j < 257; j++) {
        float best = a->data[j];
        double col = 0;
        for (int i = 0; i < 300; i++) {
            if (a->data[i * 257 + j] > best) best = a->data[i * 257 + j];
            col += a->data[i * 257 + j];
        }
        CHECK(m[0]->data[j] == best);
        CHECK_NEAR(cs[0]->data[j], col, 1e-5, 1e-5);
    }
    nb_ctx_free(ctx);
}

/* ---- matmul / linear ------------------------------------------------------------- */

TEST(ops_matmul_matches_reference)
{
    nb_ctx *ctx = nb_ctx_new(2);
    /* (2,3,5,7) @ (7,4): b shared by every batch */
    nb_tensor *a = nb_tensor_randn(ctx, S(2, 3, 5, 7)), *b = nb_tensor_randn(ctx, S(7, 4));
    nb_tensor *y = nb_matmul(ctx, a, b);
    CHECK(has_shape(y, S(2, 3, 5, 4)));
    float ref[20];
    for (int p = 0; p < 6; p++) {
        nb_gemm_ref(0, 0, 5, 4, 7, 1, a->data + p * 35, 7, b->data, 4, 0, ref, 4);
        for (int i = 0; i < 20; i++) CHECK_NEAR(y->data[p * 20 + i], ref[i], 1e-5, 1e-5);
    }
    /* (2,1,3,4) @ (3,4,2): batch dims broadcast to (2,3) */
    nb_tensor *c = nb_tensor_randn(ctx, S(2, 1, 3, 4)), *d = nb_tensor_randn(ctx, S(3, 4, 2));
    y = nb_matmul(ctx, c, d);
    CHECK(has_shape(y, S(2, 3, 3, 2)));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            nb_gemm_ref(0, 0, 3, 2, 4, 1, c->data + i * 12, 4, d->data + j * 8, 2, 0, ref, 2);
            for (int k = 0; k < 6; k++) CHECK_NEAR(y->data[(i * 3 + j) * 6 + k], ref[k], 1e-5, 1e-5);
        }
    /* transposed and stepped views give the same product as contiguous copies */
    nb_tensor *at_ = nb_transpose(ctx, nb_tensor_randn(ctx, S(6, 5)), 0, 1);         /* (5,6) */
    nb_tensor *bs = nb_slice(ctx, nb_tensor_randn(ctx, S(12, 3)), 0, 0, 12, 2);      /* (6,3) */
    y = nb_matmul(ctx, at_, bs);
    nb_tensor *y2 = nb_matmul(ctx, nb_contiguous(ctx, at_), nb_contiguous(ctx, bs));
    CHECK(has_shape(y, S(5, 3)) && has_shape(y2, S(5, 3)));
    for (int i = 0; i < 15; i++) CHECK_NEAR(y->data[i], y2->data[i], 1e-5, 1e-6);
    /* a 2-D operand shared on the left */
    nb_tensor *w = nb_tensor_randn(ctx, S(2, 3)), *xs = nb_tensor_randn(ctx, S(4, 3, 5));
    y = nb_matmul(ctx, w, xs);
    CHECK(has_shape(y, S(4, 2, 5)));
    for (int p = 0; p < 4; p++) {
        nb_gemm_ref(0, 0, 2, 5, 3, 1, w->data, 3, xs->data + p * 15, 5, 0, ref, 5);
        for (int k = 0; k < 10; k++) CHECK_NEAR(y->data[p * 10 + k], ref[k], 1e-5, 1e-5);
    }
    /* many small products (run in parallel), with a shared left operand:
     * dW sums over batches, dX per batch */
    nb_tensor *W = nb_requires_grad(nb_tensor_randn(ctx, S(8, 8)), 1);
    nb_tensor *X = nb_requires_grad(nb_tensor_randn(ctx, S(64, 8, 8)), 1);
    nb_tensor *R = nb_tensor_randn(ctx, S(64, 8, 8));
    y = nb_matmul(ctx, W, X);
    CHECK(has_shape(y, S(64, 8, 8)));
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, y, R), NULL, 0, 0)));
    float gw[64] = {0}, r64[64];
    for (int p = 0; p < 64; p++) {
        nb_gemm_ref(0, 0, 8, 8, 8, 1, W->data, 8, X->data + p * 64, 8, 0, r64, 8);
        for (int k = 0; k < 64; k++) CHECK_NEAR(y->data[p * 64 + k], r64[k], 1e-5, 1e-5);
        nb_gemm_ref(1, 0, 8, 8, 8, 1, W->data, 8, R->data + p * 64, 8, 0, r64, 8);
        for (int k = 0; k < 64; k++) CHECK_NEAR(X->grad[p * 64 + k], r64[k], 1e-5, 1e-5);
        nb_gemm_ref(0, 1, 8, 8, 8, 1, R->data + p * 64, 8, X->data + p * 64, 8, 1, gw, 8);
    }
    for (int k = 0; k < 64; k++) CHECK_NEAR(W->grad[k], gw[k], 1e-4, 1e-4);
    CHECK(nb_ctx_status(ctx) == NB_OK);
    nb_ctx_free(ctx);
}

TEST(ops_linear_values)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_tensor_from(ctx, S(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    nb_tensor *w = nb_tensor_from(ctx, S(2, 3), (float[]){1, 0, -1, 0.5f, 0.5f, 0.5f});
    nb_tensor *b = nb_tensor_from(ctx, S(2), (float[]){10, 20});
    nb_tensor *y = nb_linear(ctx, x, w, b), *y0 = nb_linear(ctx, x, w, NULL);
    CHECK(has_shape(y, S(2, 2)) && has_shape(y0, S(2, 2)));
    const float want[] = {1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5f + 20};
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(y->data[i], want[i], 1e-6, 0);
        CHECK_NEAR(y0->data[i], want[i] - (i % 2 ? 20 : 10), 1e-6, 0);
    }
    /* (2,2,3) input: leading dims are batch */
    nb_tensor *x3 = nb_reshape(ctx, nb_concat(ctx, (nb_tensor *[]){x, x}, 2, 0), S(2, 2, 3));
    y = nb_linear(ctx, x3, w, b);
    CHECK(has_shape(y, S(2, 2, 2)));
    for (int i = 0; i < 8; i++) CHECK_NEAR(y->data[i], want[i % 4], 1e-6, 0);
    /* gradients of a known case: dx = dy w, dw = dy^T x, db = colsum dy */
    nb_ctx_reset(ctx);
    x = nb_requires_grad(nb_tensor_from(ctx, S(2, 3), (float[]){1, 2, 3, 4, 5, 6}), 1);
    w = nb_requires_grad(nb_tensor_from(ctx, S(2, 3), (float[]){1, 0, -1, 0.5f, 0.5f, 0.5f}), 1);
    b = nb_requires_grad(nb_tensor_from(ctx, S(2), (float[]){10, 20}), 1);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_linear(ctx, x, w, b), NULL, 0, 0)));
    for (int i = 0; i < 2; i++) {
        CHECK_NEAR(b->grad[i], 2, 0, 0);
        CHECK_NEAR(x->grad[i * 3 + 0], 1.5, 1e-6, 0);
        CHECK_NEAR(x->grad[i * 3 + 1], 0.5, 1e-6, 0);
        CHECK_NEAR(x->grad[i * 3 + 2], -0.5, 1e-6, 0);
        for (int j = 0; j < 3; j++) CHECK_NEAR(w->grad[i * 3 + j], 5 + 2 * j, 1e-6, 0);
    }
    nb_ctx_free(ctx);
}

/* ---- reductions -------------------------------------------------------------------- */

TEST(ops_reduce_values)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = arange(ctx, S(2, 3, 4), 0);
    nb_tensor *all = nb_sum(ctx, x, NULL, 0, 0);
    CHECK(all && all->ndim == 0 && nb_tensor_item(all) == 276);
    nb_tensor *s1 = nb_sum(ctx, x, (int[]){1}, 1, 0);
    CHECK(has_shape(s1, S(2, 4)));
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) CHECK_NEAR(s1->data[i * 4 + k], 3 * (12 * i + k) + 12, 0, 0);
    nb_tensor *s02 = nb_sum(ctx, x, (int[]){-1, 0}, 2, 1);
    CHECK(has_shape(s02, S(1, 3, 1)));
    for (int j = 0; j < 3; j++) CHECK_NEAR(s02->data[j], 8 * (4 * j) + 12 + 12 * 4, 0, 0);
    nb_tensor *mk = nb_mean(ctx, x, NULL, 0, 1);
    CHECK(has_shape(mk, S(1, 1, 1)) && mk->data[0] == 11.5f);
    nb_tensor *m2 = nb_mean(ctx, x, (int[]){2}, 1, 0);
    CHECK(has_shape(m2, S(2, 3)));
    for (int i = 0; i < 6; i++) CHECK_NEAR(m2->data[i], 4 * i + 1.5, 0, 0);
    nb_tensor *mx = nb_max(ctx, x, (int[]){0, 2}, 2, 0);
    CHECK(has_shape(mx, S(3)));
    for (int j = 0; j < 3; j++) CHECK(mx->data[j] == 12 + 4 * j + 3);
    /* argmax: first maximum on ties, axis removed, values as floats */
    nb_tensor *v = nb_tensor_from(ctx, S(2, 4), (float[]){1, 5, 5, 0, -1, -3, -1, -2});
    nb_tensor *am = nb_argmax(ctx, v, 1), *am0 = nb_argmax(ctx, v, -2);
    CHECK(has_shape(am, S(2)) && am->data[0] == 1 && am->data[1] == 0);
    CHECK(has_shape(am0, S(4)) && am0->data[0] == 0 && am0->data[1] == 0 && am0->data[3] == 0);
    CHECK(!am->requires_grad && !am->node);
    /* max's gradient goes to the first maximum only */
    nb_requires_grad(v, 1);
    nb_tensor *mv = nb_max(ctx, v, (int[]){1}, 1, 1);
    CHECK(has_shape(mv, S(2, 1)) && mv->data[0] == 5 && mv->data[1] == -1);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, mv, NULL, 0, 0)));
    const float g[] = {0, 1, 0, 0, 1, 0, 0, 0};
    for (int i = 0; i < 8; i++) CHECK(v->grad[i] == g[i]);
    /* a reduction of a transposed view */
    nb_tensor *tv = nb_transpose(ctx, arange(ctx, S(3, 2), 0), 0, 1);   /* [[0,2,4],[1,3,5]] */
    nb_tensor *ts = nb_sum(ctx, tv, (int[]){1}, 1, 0);
    CHECK(has_shape(ts, S(2)) && ts->data[0] == 6 && ts->data[1] == 9);
    /* sum over an empty axis is 0, mean of nothing is NaN (as torch) */
    nb_tensor *e = nb_tensor_new(ctx, S(2, 0));
    nb_tensor *es = nb_sum(ctx, e, (int[]){1}, 1, 0), *em = nb_mean(ctx, e, NULL, 0, 0);
    CHECK(has_shape(es, S(2)) && es->data[0] == 0 && es->data[1] == 0);
    CHECK(em && isnan(em->data[0]));
    CHECK(nb_ctx_status(ctx) == NB_OK);
    nb_ctx_free(ctx);
}

/* ---- shape ops ------------------------------------------------------------------------ */

TEST(ops_views_share_data)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = arange(ctx, S(4, 5), 0);
    /* slice: a view; writing through it changes x */
    nb_tensor *s = nb_slice(ctx, x, 1, 1, -1, 2);          /* columns 1, 3 */
    CHECK(has_shape(s, S(4, 2)) && s->data == x->data + 1 && s->stride[0] == 5 && s->stride[1] == 2);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) CHECK(at(s, i * 2 + j) == 5 * i + 1 + 2 * j);
    s->data[s->stride[0] * 2 + s->stride[1]] = -7;         /* s[2,1] is x[2,3] */
    CHECK(x->data[13] == -7);
    x->data[13] = 13;
    /* Python clamping of out-of-range and negative bounds */
    nb_tensor *c1 = nb_slice(ctx, x, 0, -100, 100, 1), *c2 = nb_slice(ctx, x, 0, 3, 1, 1);
    nb_tensor *c3 = nb_slice(ctx, x, -1, -2, INT64_MAX, 1);
    CHECK(has_shape(c1, S(4, 5)) && has_shape(c2, S(0, 5)) && has_shape(c3, S(4, 2)));
    CHECK(at(c3, 0) == 3 && at(c3, 1) == 4);
    /* permute / transpose: views with permuted strides */
    nb_tensor *y = arange(ctx, S(2, 3, 4), 0);
    nb_tensor *p = nb_permute(ctx, y, (int[]){2, 0, 1});
    CHECK(has_shape(p, S(4, 2, 3)) && p->data == y->data);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) CHECK(at(p, (k * 2 + i) * 3 + j) == y->data[(i * 3 + j) * 4 + k]);
    nb_tensor *t = nb_transpose(ctx, x, 0, -1);
    CHECK(has_shape(t, S(5, 4)) && t->data == x->data && !nb_tensor_is_contiguous(t));
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) CHECK(at(t, i * 4 + j) == x->data[j * 5 + i]);
    /* reshape: a view of contiguous x, a copy of a transposed one */
    nb_tensor *r = nb_reshape(ctx, x, S(2, -1));
    CHECK(has_shape(r, S(2, 10)) && r->data == x->data);
    nb_tensor *rt = nb_reshape(ctx, t, S(20));
    CHECK(has_shape(rt, S(20)) && rt->data != x->data);
    for (int i = 0; i < 20; i++) CHECK(rt->data[i] == at(t, i));
    nb_tensor *f = nb_flatten(ctx, y, 1), *f0 = nb_flatten(ctx, nb_tensor_scalar(ctx, 3), 0);
    CHECK(has_shape(f, S(2, 12)) && f->data == y->data);
    CHECK(has_shape(f0, S(1)) && f0->data[0] == 3);
    /* contiguous: x itself when already contiguous, else a copy */
    CHECK(nb_contiguous(ctx, x) == x);
    nb_tensor *tc = nb_contiguous(ctx, t);
    CHECK(tc != t && nb_tensor_is_contiguous(tc) && has_shape(tc, S(5, 4)));
    for (int i = 0; i < 20; i++) CHECK(tc->data[i] == at(t, i));
    CHECK(nb_ctx_status(ctx) == NB_OK);
    nb_ctx_free(ctx);
}

/* Copies and gradients of permuted views large enough for the tiled
 * transpose path and for threads. */
TEST(ops_large_permute_copy_and_grad)
{
    nb_ctx *ctx = nb_ctx_new(4);
    nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, S(3, 70, 45)), 1);
    nb_tensor *p = nb_permute(ctx, x, (int[]){2, 0, 1});            /* (45, 3, 70) */
    nb_tensor *c = nb_contiguous(ctx, p);
    CHECK(has_shape(c, S(45, 3, 70)) && c != p);
    for (int64_t e = 0; e < 45 * 3 * 70; e++) CHECK(c->data[e] == at(p, e));
    nb_tensor *R = nb_tensor_randn(ctx, S(45, 3, 70));
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, c, R), NULL, 0, 0)));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 70; j++)
            for (int k = 0; k < 45; k++) CHECK(x->grad[(i * 70 + j) * 45 + k] == R->data[(k * 3 + i) * 70 + j]);
    /* a transposed operand in concat and in reshape */
    nb_tensor *m = nb_tensor_randn(ctx, S(300, 200)), *mt = nb_transpose(ctx, m, 0, 1);
    nb_tensor *cat = nb_concat(ctx, (nb_tensor *[]){mt, mt}, 2, 1);
    nb_tensor *flat = nb_reshape(ctx, mt, S(-1));
    CHECK(has_shape(cat, S(200, 600)) && has_shape(flat, S(60000)));
    for (int i = 0; i < 200; i++)
        for (int j = 0; j < 600; j++) CHECK(cat->data[i * 600 + j] == m->data[(j % 300) * 200 + i]);
    for (int64_t e = 0; e < 60000; e++) CHECK(flat->data[e] == at(mt, e));
    /* elementwise ops with a transposed operand, forward and backward */
    nb_tensor *q = nb_tensor_randn(ctx, S(200, 300));
    nb_tensor *sum = nb_sub(ctx, mt, q);
    CHECK(has_shape(sum, S(200, 300)));
    for (int64_t e = 0; e < 60000; e++) CHECK(sum->data[e] == at(mt, e) - q->data[e]);
    nb_requires_grad(m, 1);
    mt = nb_transpose(ctx, m, 0, 1);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, nb_pow(ctx, mt, 2), q), NULL, 0, 0)));
    for (int i = 0; i < 300; i++)
        for (int j = 0; j < 200; j++)
            CHECK(m->grad[i * 200 + j] == q->data[j * 300 + i] * (2 * m->data[i * 200 + j]));
    nb_ctx_free(ctx);
}

TEST(ops_concat_values)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *a = arange(ctx, S(2, 2), 0), *b = arange(ctx, S(2, 3), 10);
    nb_tensor *y = nb_concat(ctx, (nb_tensor *[]){a, b}, 2, -1);
    CHECK(has_shape(y, S(2, 5)));
    const float w1[] = {0, 1, 10, 11, 12, 2, 3, 13, 14, 15};
    for (int i = 0; i < 10; i++) CHECK(y->data[i] == w1[i]);
    nb_tensor *c = nb_transpose(ctx, arange(ctx, S(2, 2), 20), 0, 1);  /* [[20,22],[21,23]] */
    y = nb_concat(ctx, (nb_tensor *[]){a, c, a}, 3, 0);
    CHECK(has_shape(y, S(6, 2)));
    const float w0[] = {0, 1, 2, 3, 20, 22, 21, 23, 0, 1, 2, 3};
    for (int i = 0; i < 12; i++) CHECK(y->data[i] == w0[i]);
    /* gradients are the matching slices of the output gradient */
    nb_requires_grad(a, 1);
    nb_requires_grad(b, 1);
    y = nb_concat(ctx, (nb_tensor *[]){a, b}, 2, 1);
    nb_tensor *R = arange(ctx, S(2, 5), 1);
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, y, R), NULL, 0, 0)));
    const float ga[] = {1, 2, 6, 7}, gb[] = {3, 4, 5, 8, 9, 10};
    for (int i = 0; i < 4; i++) CHECK(a->grad[i] == ga[i]);
    for (int i = 0; i < 6; i++) CHECK(b->grad[i] == gb[i]);
    nb_ctx_free(ctx);
}

/* ---- errors ---------------------------------------------------------------------------- */

/* expr must return NULL with status `want` in ctx and `substr` in the message. */
#define CHECK_OP_ERR(ctx, expr, want, substr)                                      \
    do {                                                                           \
        nb_ctx_reset(ctx);                                                         \
        nb_clear_error();                                                          \
        nb_tensor *e_ = (expr);                                                    \
        CHECK_MSG(!e_, "%s did not fail", #expr);                                  \
        CHECK_ERR(nb_ctx_status(ctx), want, substr);                               \
    } while (0)

TEST(ops_errors)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *a = nb_tensor_zeros(ctx, S(2, 3)), *b = nb_tensor_zeros(ctx, S(4)), *v = nb_tensor_zeros(ctx, S(3));
    nb_tensor *m = nb_tensor_zeros(ctx, S(4, 5)), *bt = nb_tensor_zeros(ctx, S(2, 3, 4));
    /* the tensors above live in the arena: CHECK_OP_ERR resets only the status */
    nb_ctx *c2 = nb_ctx_new(1);
#define E(expr, want, substr) CHECK_OP_ERR(c2, expr, want, substr)
    E(nb_add(c2, a, b), NB_ERR_SHAPE, "add: shapes [2, 3] and [4] do not broadcast");
    E(nb_mul(c2, a, nb_tensor_zeros(ctx, S(3, 3))), NB_ERR_SHAPE, "mul: shapes");
    E(nb_matmul(c2, a, m), NB_ERR_SHAPE, "matmul: inner dimensions differ: [2, 3] @ [4, 5] (3 vs 4)");
    E(nb_matmul(c2, v, a), NB_ERR_SHAPE, "at least 2 dimensions");
    E(nb_matmul(c2, bt, nb_tensor_zeros(ctx, S(3, 4, 5))), NB_ERR_SHAPE, "batch dimensions");
    E(nb_linear(c2, a, m, NULL), NB_ERR_SHAPE, "linear: input [2, 3]");
    E(nb_linear(c2, a, nb_tensor_zeros(ctx, S(4, 3)), v), NB_ERR_SHAPE, "linear: bias [3] does not match out_features = 4");
    E(nb_sum(c2, a, (int[]){2}, 1, 0), NB_ERR_ARG, "sum: axis 2 is out of range");
    E(nb_mean(c2, a, (int[]){-3}, 1, 0), NB_ERR_ARG, "mean: axis -3");
    E(nb_max(c2, a, (int[]){1, -1}, 2, 0), NB_ERR_ARG, "appears twice");
    E(nb_max(c2, nb_tensor_zeros(ctx, S(0, 2)), (int[]){0}, 1, 0), NB_ERR_SHAPE, "size 0");
    E(nb_argmax(c2, a, 2), NB_ERR_ARG, "argmax: axis 2");
    E(nb_permute(c2, bt, (int[]){0, 0, 1}), NB_ERR_ARG, "permute: [0, 0, 1] is not a permutation");
    E(nb_permute(c2, bt, (int[]){0, 1, 3}), NB_ERR_ARG, "not a permutation");
    E(nb_transpose(c2, a, 0, 2), NB_ERR_ARG, "transpose");
    E(nb_reshape(c2, a, S(4, 2)), NB_ERR_SHAPE, "reshape: cannot reshape [2, 3] (6 elements) to [4, 2] (8 elements)");
    E(nb_reshape(c2, a, S(-1, 4)), NB_ERR_SHAPE, "cannot reshape [2, 3]");
    E(nb_reshape(c2, a, S(-1, -1)), NB_ERR_ARG, "more than one -1");
    E(nb_slice(c2, a, 0, 0, 2, 0), NB_ERR_ARG, "step must be >= 1");
    E(nb_slice(c2, a, 3, 0, 2, 1), NB_ERR_ARG, "slice: axis 3");
    E(nb_concat(c2, (nb_tensor *[]){a, bt}, 2, 0), NB_ERR_SHAPE, "concat: tensor 1 has shape [2, 3, 4]");
    E(nb_concat(c2, (nb_tensor *[]){a, nb_tensor_zeros(ctx, S(3, 3))}, 2, 1), NB_ERR_SHAPE,
      "does not match [2, 3] except along axis 1");
    E(nb_concat(c2, (nb_tensor *[]){a}, 0, 0), NB_ERR_ARG, "at least one");
#undef E
    nb_ctx_free(c2);
    nb_ctx_free(ctx);
}

/* A NULL input gives NULL without replacing the first error; the chain is
 * checked once at its end. */
TEST(ops_null_propagation)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *a = nb_tensor_zeros(ctx, S(2, 3)), *b = nb_tensor_zeros(ctx, S(4));
    nb_tensor *bad = nb_add(ctx, a, b);
    CHECK(!bad);
    char first[256];
    snprintf(first, sizeof first, "%s", nb_last_error());
    CHECK(strstr(first, "add:"));
    nb_tensor *y = nb_exp(ctx, nb_mul(ctx, bad, a));
    y = nb_matmul(ctx, y, a);
    y = nb_linear(ctx, y, a, NULL);
    y = nb_sum(ctx, nb_mean(ctx, nb_max(ctx, y, NULL, 0, 0), NULL, 0, 0), NULL, 0, 0);
    y = nb_reshape(ctx, nb_permute(ctx, nb_slice(ctx, y, 0, 0, 1, 1), (int[]){0}), S(1));
    y = nb_contiguous(ctx, nb_flatten(ctx, nb_transpose(ctx, y, 0, 1), 0));
    y = nb_concat(ctx, (nb_tensor *[]){a, y}, 2, 0);
    y = nb_pow(ctx, nb_sqrt(ctx, nb_log(ctx, nb_scale(ctx, nb_add_scalar(ctx, y, 1), 2))), 2);
    y = nb_div(ctx, a, nb_sub(ctx, y, a));
    CHECK(!y && !nb_argmax(ctx, y, 0) && !nb_linear(ctx, a, y, NULL));
    CHECK(strcmp(nb_last_error(), first) == 0);
    CHECK(nb_ctx_status(ctx) == NB_ERR_SHAPE);
    nb_ctx_free(ctx);
}

/* ---- autograd ----------------------------------------------------------------------------- */

TEST(ops_grad_accumulates_across_backward)
{
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_requires_grad(nb_tensor_from(ctx, S(3), (float[]){1, 2, 3}), 1);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, x, x), NULL, 0, 0);   /* d/dx = 2x */
    CHECK_OK(nb_backward(ctx, loss));
    for (int i = 0; i < 3; i++) CHECK(x->grad[i] == 2 * (i + 1));
    CHECK_OK(nb_backward(ctx, loss));                               /* the tape is kept */
    for (int i = 0; i < 3; i++) CHECK(x->grad[i] == 4 * (i + 1));
    CHECK_OK(nb_zero_grad(ctx, x));
    CHECK_OK(nb_backward(ctx, nb_mean(ctx, x, NULL, 0, 0)));
    for (int i = 0; i < 3; i++) CHECK_NEAR(x->grad[i], 1.0 / 3, 1e-7, 0);
    /* a view's gradient lands in the viewed part of the leaf */
    nb_tensor *m = nb_requires_grad(nb_tensor_zeros(ctx, S(3, 4)), 1);
    nb_tensor *s = nb_slice(ctx, nb_transpose(ctx, m, 0, 1), 0, 1, 4, 2);   /* m[:, 1::2]^T */
    CHECK_OK(nb_backward(ctx, nb_sum(ctx, s, NULL, 0, 0)));
    for (int i = 0; i < 12; i++) CHECK(m->grad[i] == (i % 4 == 1 || i % 4 == 3));
    nb_ctx_free(ctx);
}

/* Fit y = 2x + 1 with linear and a hand-written mean squared error. */
TEST(ops_fit_line)
{
    nb_ctx *ctx = nb_ctx_new(5);
    float wv = 0.3f, bv = -0.2f;
    float loss_v = 0;
    for (int step = 0; step < 300; step++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = nb_tensor_rand(ctx, S(16, 1));
        nb_tensor *x2 = nb_add_scalar(ctx, nb_scale(ctx, x, 4), -2);      /* U[-2, 2) */
        nb_tensor *t = nb_add_scalar(ctx, nb_scale(ctx, x2, 2), 1);
        nb_tensor *w = nb_requires_grad(nb_tensor_full(ctx, S(1, 1), wv), 1);
        nb_tensor *b = nb_requires_grad(nb_tensor_full(ctx, S(1), bv), 1);
        nb_tensor *d = nb_sub(ctx, nb_linear(ctx, x2, w, b), t);
        nb_tensor *loss = nb_mean(ctx, nb_mul(ctx, d, d), NULL, 0, 0);
        CHECK_OK(nb_backward(ctx, loss));
        loss_v = nb_tensor_item(loss);
        wv -= 0.1f * w->grad[0];
        bv -= 0.1f * b->grad[0];
    }
    CHECK_NEAR(wv, 2, 0, 1e-3);
    CHECK_NEAR(bv, 1, 0, 1e-3);
    CHECK(loss_v < 1e-6);
    nb_ctx_free(ctx);
}
