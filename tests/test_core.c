/* Core: generator, arena, tensors, autograd bookkeeping, errors. */
#include "test.h"

TEST(rng_is_deterministic_and_uniform)
{
    nb_rng a, b;
    nb_rng_seed(&a, 2024);
    nb_rng_seed(&b, 2024);
    for (int i = 0; i < 1000; i++) CHECK(nb_rng_u64(&a) == nb_rng_u64(&b));
    nb_rng_seed(&b, 2025);
    CHECK(nb_rng_u64(&a) != nb_rng_u64(&b));
    /* xoshiro256** from splitmix64(0): first output is fixed forever */
    nb_rng_seed(&a, 0);
    uint64_t first = nb_rng_u64(&a);
    nb_rng_seed(&a, 0);
    CHECK(nb_rng_u64(&a) == first);
    double s = 0, s2 = 0;
    int counts[10] = {0};
    for (int i = 0; i < 100000; i++) {
        float u = nb_rng_uniform(&a), z = nb_rng_normal(&a);
        CHECK(u >= 0 && u < 1);
        s += z, s2 += (double)z * z;
        counts[nb_rng_below(&a, 10)]++;
    }
    CHECK_NEAR(s / 1e5, 0, 0, 0.02);
    CHECK_NEAR(s2 / 1e5, 1, 0.02, 0);
    for (int i = 0; i < 10; i++) CHECK(counts[i] > 9500 && counts[i] < 10500);
    uint32_t p[100];
    for (uint32_t i = 0; i < 100; i++) p[i] = i;
    nb_rng_shuffle_u32(&a, p, 100);
    int seen[100] = {0}, moved = 0;
    for (int i = 0; i < 100; i++) seen[p[i]]++, moved += p[i] != (uint32_t)i;
    for (int i = 0; i < 100; i++) CHECK(seen[i] == 1);
    CHECK(moved > 80);
}

TEST(arena_resets_to_one_block)
{
    nb_arena *a = nb_arena_new(1024);
    CHECK(a);
    for (int i = 0; i < 100; i++) {
        char *p = nb_arena_alloc(a, 1000);
        CHECK(p && ((uintptr_t)p & 63) == 0);
        memset(p, i, 1000);
    }
    size_t hw = nb_arena_high_water(a);
    CHECK(hw >= 100000);
    nb_arena_reset(a);
    CHECK(nb_arena_used(a) == 0);
    for (int i = 0; i < 100; i++) CHECK(nb_arena_alloc(a, 1000));
    CHECK(nb_arena_high_water(a) == hw);
    CHECK(!nb_arena_alloc(a, SIZE_MAX - 10));
    CHECK(strstr(nb_last_error(), "arena"));
    nb_arena_free(a);
}

TEST(tensor_constructors_and_errors)
{
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *t = nb_tensor_full(ctx, NB_SHAPE(2, 3, 4, 5, 6), 1.5f);
    CHECK(t && t->ndim == 5 && nb_tensor_numel(t) == 720 && nb_tensor_is_contiguous(t));
    CHECK(t->stride[0] == 360 && t->stride[4] == 1 && t->data[719] == 1.5f);
    char buf[64];
    CHECK(!strcmp(nb_shape_str(t, buf, sizeof buf), "[2, 3, 4, 5, 6]"));
    nb_tensor *s = nb_tensor_scalar(ctx, 3);
    CHECK(s && s->ndim == 0 && nb_tensor_numel(s) == 1 && nb_tensor_item(s) == 3);
    CHECK(nb_ctx_status(ctx) == NB_OK);
    CHECK(!nb_tensor_new(ctx, NB_SHAPE(2, -1)));
    CHECK(strstr(nb_last_error(), "negative") && nb_ctx_status(ctx) == NB_ERR_SHAPE);
    CHECK(!nb_tensor_new(ctx, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}));
    CHECK(strstr(nb_last_error(), "dimensions"));
    nb_ctx_reset(ctx);
    CHECK(nb_ctx_status(ctx) == NB_OK);
    nb_ctx_free(ctx);
}

TEST(autograd_bookkeeping)
{
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *x = nb_requires_grad(nb_tensor_full(ctx, NB_SHAPE(3), 2.0f), 1);
    nb_tensor *c = nb_tensor_full(ctx, NB_SHAPE(3), 5.0f);
    /* a result that depends on no gradient-requiring input records nothing */
    nb_tensor *k = nb_mul(ctx, c, c);
    CHECK(k && !k->requires_grad && !k->node);
    /* y = sum(x * x * c): dy/dx = 2 x c = 20 */
    nb_tensor *y = nb_sum(ctx, nb_mul(ctx, nb_mul(ctx, x, x), c), NULL, 0, 0);
    CHECK(y && y->requires_grad);
    CHECK_OK(nb_backward(ctx, y));
    CHECK(x->grad[0] == 20 && x->grad[2] == 20);
    /* a second backward accumulates into the leaf, as torch with retain_graph */
    CHECK_OK(nb_backward(ctx, y));
    CHECK(x->grad[1] == 40);
    CHECK_OK(nb_zero_grad(ctx, x));
    CHECK(x->grad[1] == 0);
    /* detach and no_grad cut the graph */
    nb_tensor *d = nb_detach(ctx, x);
    CHECK(d && !d->requires_grad && d->data == x->data);
    int old = nb_set_grad_enabled(ctx, 0);
    nb_tensor *z = nb_sum(ctx, nb_mul(ctx, x, x), NULL, 0, 0);
    nb_set_grad_enabled(ctx, old);
    CHECK(z && !z->requires_grad && !z->node);
    CHECK_ERR(nb_backward(ctx, z), NB_ERR_STATE, "does not require grad");
    nb_tensor *v = nb_mul(ctx, x, x);
    CHECK_ERR(nb_backward(ctx, v), NB_ERR_SHAPE, "one element");
    CHECK_ERR(nb_backward(ctx, NULL), NB_ERR_ARG, "NULL");
    nb_ctx_free(ctx);
}

TEST(status_strings)
{
    CHECK(!strcmp(nb_status_str(NB_OK), "ok"));
    CHECK(!strcmp(nb_status_str(NB_ERR_FORMAT), "bad file format"));
    nb_clear_error();
    CHECK(!strcmp(nb_last_error(), ""));
}
