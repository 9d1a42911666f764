/* Augmentation (src/data/augment.c): parsing, crop and flip against a
 * by-hand reference on small images, the spread of the draws, determinism
 * from the loader's state (a loader restored mid-epoch augments the rest of
 * the epoch identically), and the shapes and labels of augmented batches. */
#include "test.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n samples (C,H,W) with distinct positive values: x = 1 + index; label i. */
static nb_dataset *dataset(int64_t n, int c, int h, int w)
{
    nb_dataset *d = calloc(1, sizeof *d);
    d->n = n, d->c = c, d->h = h, d->w = w, d->nclasses = (int)n;
    int64_t len = n * c * h * w;
    d->x = malloc((size_t)len * sizeof(float));
    d->y = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < len; i++) d->x[i] = (float)(1 + i);
    for (int64_t i = 0; i < n; i++) d->y[i] = (int32_t)i;
    return d;
}

static void dataset_free(nb_dataset *d)
{
    free(d->x);
    free(d->y);
    free(d);
}

TEST(augment_parse)
{
    nb_augment a;
    CHECK_OK(nb_augment_parse("crop:4,flip", &a));
    CHECK(a.crop_padding == 4 && a.hflip == 1);
    CHECK_OK(nb_augment_parse("flip", &a));
    CHECK(a.crop_padding == 0 && a.hflip == 1);
    CHECK_OK(nb_augment_parse("", &a));
    CHECK(!a.crop_padding && !a.hflip);
    CHECK_OK(nb_augment_parse(NULL, &a));
    CHECK_ERR(nb_augment_parse("crop:x", &a), NB_ERR_ARG, "crop:x");
    CHECK_ERR(nb_augment_parse("crop:-1", &a), NB_ERR_ARG, "crop padding");
    CHECK_ERR(nb_augment_parse("crop:4,rotate", &a), NB_ERR_ARG, "rotate");
}

/* Each augmented sample equals the reference: out(r, c) = in(r + dy, c' + dx)
 * with c' = W-1-c when flipped, 0 outside, for every channel. */
TEST(augment_crop_and_flip_match_reference)
{
    enum { N = 16, C = 2, H = 5, W = 4 };
    nb_dataset *d = dataset(N, C, H, W);
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *x = nb_tensor_from(ctx, 4, (int64_t[]){N, C, H, W}, d->x);
    nb_augment a = {.crop_padding = 2, .hflip = 1};
    CHECK_OK(nb_augment_apply(&a, 42, 100, x));
    int flips = 0, shifted = 0;
    for (int i = 0; i < N; i++) {
        int dy, dx, flip;
        nb_augment_draw(&a, 42, 100 + i, &dy, &dx, &flip);
        CHECK(dy >= -2 && dy <= 2 && dx >= -2 && dx <= 2 && (flip == 0 || flip == 1));
        flips += flip, shifted += dy || dx;
        for (int c = 0; c < C; c++)
            for (int r = 0; r < H; r++)
                for (int k = 0; k < W; k++) {
                    int sr = r + dy, sc = (flip ? W - 1 - k : k) + dx;
                    float want = sr >= 0 && sr < H && sc >= 0 && sc < W ? d->x[((i * C + c) * H + sr) * W + sc] : 0;
                    float got = x->data[((i * C + c) * H + r) * W + k];
                    CHECK_MSG(got == want, "sample %d (dy %d dx %d flip %d) c%d (%d,%d): %g, want %g", i, dy, dx,
                              flip, c, r, k, got, want);
                }
    }
    CHECK(flips > 0 && flips < N && shifted > 0);

    /* the identity without options; a layout it cannot take */
    nb_augment none = {0};
    nb_tensor *y = nb_tensor_from(ctx, 4, (int64_t[]){N, C, H, W}, d->x);
    CHECK_OK(nb_augment_apply(&none, 42, 0, y));
    CHECK(!memcmp(y->data, d->x, sizeof(float) * N * C * H * W));
    CHECK_ERR(nb_augment_apply(&a, 0, 0, nb_transpose(ctx, y, 2, 3)), NB_ERR_SHAPE, "contiguous");
    nb_ctx_free(ctx);
    dataset_free(d);
}

/* Over many draws every shift in [-p, p] and both flips occur, about evenly. */
TEST(augment_draws_cover_the_range)
{
    nb_augment a = {.crop_padding = 4, .hflip = 1};
    int counts[9] = {0}, flips = 0, n = 9000;
    for (int i = 0; i < n; i++) {
        int dy, dx, flip;
        nb_augment_draw(&a, 7, i, &dy, &dx, &flip);
        counts[dy + 4]++;
        flips += flip;
        CHECK(dx >= -4 && dx <= 4);
    }
    for (int k = 0; k < 9; k++) CHECK_MSG(counts[k] > 800 && counts[k] < 1200, "shift %d drawn %d times", k - 4, counts[k]);
    CHECK(flips > 4200 && flips < 4800);
}

/* Batches of an augmented epoch, all labels and values into buf. */
static void epoch_values(nb_loader *l, const nb_augment *a, nb_ctx *ctx, float *vals, int32_t *labels, int64_t *n)
{
    nb_batch b;
    *n = 0;
    for (;;) {
        nb_ctx_reset(ctx);
        if (nb_loader_next_augmented(l, a, ctx, &b) != NB_OK || !b.n) return;
        memcpy(vals + *n * 12, b.x->data, (size_t)b.n * 12 * sizeof(float));
        memcpy(labels + *n, b.y, (size_t)b.n * sizeof(int32_t));
        *n += b.n;
    }
}

TEST(augment_loader_deterministic_and_resumable)
{
    enum { N = 10 };
    nb_dataset *d = dataset(N, 1, 3, 4);
    nb_ctx *ctx = nb_ctx_new(0);
    nb_augment a = {.crop_padding = 1, .hflip = 1};
    nb_loader *l1 = NULL, *l2 = NULL;
    CHECK_OK(nb_loader_new(d, 3, 1, 0, 5, &l1));
    CHECK_OK(nb_loader_new(d, 3, 1, 0, 5, &l2));
    float v1[N * 12], v2[N * 12], v3[N * 12];
    int32_t y1[N], y2[N], y3[N];
    int64_t n1, n2, n3;
    epoch_values(l1, &a, ctx, v1, y1, &n1);
    epoch_values(l2, &a, ctx, v2, y2, &n2);
    CHECK(n1 == N && n2 == N && !memcmp(v1, v2, sizeof v1) && !memcmp(y1, y2, sizeof y1));
    /* labels stay with their (augmented) images: a sample's pixels come from its own image */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 12; k++)
            CHECK(v1[i * 12 + k] == 0 || (v1[i * 12 + k] > y1[i] * 12 && v1[i * 12 + k] <= y1[i] * 12 + 12));

    /* the next epoch draws other choices; a loader restored after its first
     * batch gives the rest of that epoch identically */
    nb_loader_start_epoch(l1);
    nb_batch b;
    nb_ctx_reset(ctx);
    CHECK_OK(nb_loader_next_augmented(l1, &a, ctx, &b));
    nb_loader_state st;
    nb_loader_get_state(l1, &st);
    memcpy(v3, b.x->data, (size_t)b.n * 12 * sizeof(float));
    int64_t first = b.n;
    epoch_values(l1, &a, ctx, v3 + first * 12, y3, &n3);
    CHECK(n3 == N - first);
    CHECK(memcmp(v3, v1, sizeof v1));   /* epoch 2 differs from epoch 1 */
    CHECK_OK(nb_loader_set_state(l2, &st));
    epoch_values(l2, &a, ctx, v2, y2, &n2);
    CHECK(n2 == n3 && !memcmp(v2, v3 + first * 12, (size_t)n2 * 12 * sizeof(float)) &&
          !memcmp(y2, y3, (size_t)n2 * sizeof(int32_t)));
    /* without options: exactly nb_loader_next */
    nb_loader_start_epoch(l1);
    nb_ctx_reset(ctx);
    CHECK_OK(nb_loader_next_augmented(l1, NULL, ctx, &b));
    CHECK(b.n == 3 && b.x->shape[0] == 3 && b.x->shape[1] == 1 && b.x->shape[2] == 3 && b.x->shape[3] == 4);
    for (int i = 0; i < 3; i++) CHECK(!memcmp(b.x->data + i * 12, d->x + b.y[i] * 12, 12 * sizeof(float)));
    nb_loader_free(l1);
    nb_loader_free(l2);
    nb_ctx_free(ctx);
    dataset_free(d);
}

/* ---- through `nabla train` ------------------------------------------------- */
static int same_file(const char *a, const char *b)
{
    char cmd[1200], o[16], e[16];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return nbt_shell(o, sizeof o, e, sizeof e, "%s", cmd) == 0;
}

/* An augmented run stopped by --max-steps and resumed from its checkpoint
 * ends with the same weights as one that never stopped: the crops and flips
 * follow the loader's restored state and --augment is kept in the file. */
TEST(augment_cli_resume_is_exact)
{
    nb_dataset *d = NULL;
    if (nb_fashion_mnist_load(NULL, 0, &d) != NB_OK) SKIP("Fashion-MNIST is not installed: %s", nb_last_error());
    nb_dataset_free(d);
    char a[512], r[512], ck[512];
    snprintf(a, sizeof a, "%s/aug-a.safetensors", nbt_tmpdir());
    snprintf(r, sizeof r, "%s/aug-r.safetensors", nbt_tmpdir());
    snprintf(ck, sizeof ck, "%s/aug.ckpt", nbt_tmpdir());
#define AUG_RUN "%s/nabla train --limit-train 300 --batch 50 --epochs 2 --threads 1 --seed 4 --augment crop:2,flip"
    const char *b = nbt_build_dir();
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, AUG_RUN " --out '%s'", b, a) == 0);
    CHECK(strstr(nbt_out, "augment crop:2,flip"));
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, AUG_RUN " --checkpoint '%s' --max-steps 8", b,
                    ck) == 0);
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "%s/nabla train --resume '%s' --out '%s' "
                    "--threads 1", b, ck, r) == 0);
    CHECK_MSG(same_file(a, r), "the resumed augmented run differs from the uninterrupted one");
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "%s/nabla train --augment crop:4,spin", b) == 2);
    CHECK(strstr(nbt_err, "spin"));
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "%s/nabla train --resume '%s' --augment flip",
                    b, ck) == 2);
#undef AUG_RUN
}
