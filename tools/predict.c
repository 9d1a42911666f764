/* nabla predict (alias show) — a saved model's predictions on test images,
 * drawn as ASCII art and optionally as a PNG grid. */
#include "cli.h"
#include "nabla/image.h"

#include <stdlib.h>
#include <string.h>

const cli_cmd cli_predict_cmd = {
    "predict",
    "show test images with the predicted and the true label (alias: show)",
    "--weights FILE.safetensors [--count N] [--seed S] [--out FILE.png] [options]",
    "Without --seed the first N test images are shown, with it N distinct ones drawn\n"
    "at random. --out writes the images as a PNG grid (left to right, top to bottom,\n"
    "in the order printed).\n",
};

#define MAX_COUNT 256

/* 2 pixel rows per text row, so a 28x28 image is 28 columns by 14 lines. */
static void ascii_art(const float *img, int h, int w)
{
    static const char ramp[] = " .:-=+*#%@";
    const int levels = (int)sizeof ramp - 1;
    for (int y = 0; y < h; y += 2) {
        fputs("    ", stdout);
        for (int x = 0; x < w; x++) {
            float v = img[y * w + x];
            if (y + 1 < h) v = 0.5f * (v + img[(y + 1) * w + x]);
            int k = (int)(v * (float)levels);
            if (!(k >= 0)) k = 0;
            if (k >= levels) k = levels - 1;
            putchar(ramp[k]);
        }
        putchar('\n');
    }
}

int cmd_predict(int argc, char **argv)
{
    const char *weights = NULL, *model = NULL, *out = NULL, *data = nb_fashion_mnist_default_dir();
    int count = 8, threads = 0, scale = 4, no_ascii = 0;
    uint64_t seed = 0;
    cli_opt opts[] = {
        {"weights", CLI_STR, &weights, 0, 0, "FILE", "weights saved by nabla train (required)", 0},
        {"count", CLI_INT, &count, 1, MAX_COUNT, "N", "how many test images", 0},
        {"seed", CLI_U64, &seed, 0, 0, "S", "pick the images at random with this seed (else the first N)", 0},
        {"out", CLI_STR, &out, 0, 0, "FILE", "also write the images as a PNG grid", 0},
        {"scale", CLI_INT, &scale, 1, 16, "K", "PNG pixels per image pixel", 0},
        {"no-ascii", CLI_FLAG, &no_ascii, 0, 0, NULL, "print the labels only", 0},
        {"model", CLI_STR, &model, 0, 0, "NAME", "expected model name (checked against the file)", 0},
        {"data", CLI_STR, &data, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"threads", CLI_INT, &threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    int r = cli_parse(&cli_predict_cmd, opts, nopts, argc, argv);
    if (r >= 0) return r;
    if (!weights) return cli_usage_error("predict", "--weights FILE is required");
    int random_pick = opts[2].seen;
    nb_set_threads(threads);

    nb_model *m = NULL;
    nb_dataset *test = NULL;
    nb_ctx *ctx = NULL;
    float *images = NULL;
    uint8_t *grid = NULL;
    uint32_t *idx = NULL;
    int rc = CLI_FAIL;
    if (cli_load_weights(weights, model, &m) || cli_load_fashion_mnist(data, 0, &test)) goto done;
    if (count > test->n) count = (int)test->n;
    if (count < 1) {
        cli_fail("the test set is empty");
        goto done;
    }
    const int h = test->h, w = test->w, sample = test->c * test->h * test->w;
    images = malloc((size_t)count * (size_t)sample * sizeof(float));
    idx = malloc((size_t)test->n * sizeof(uint32_t));
    ctx = nb_ctx_new(seed);
    if (!images || !idx || !ctx) {
        cli_fail("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < test->n; i++) idx[i] = (uint32_t)i;
    if (random_pick) nb_rng_shuffle_u32(nb_ctx_rng(ctx), idx, (size_t)test->n);
    for (int k = 0; k < count; k++)
        memcpy(images + (size_t)k * (size_t)sample, test->x + (size_t)idx[k] * (size_t)sample,
               (size_t)sample * sizeof(float));

    nb_set_grad_enabled(ctx, 0);
    nb_model_train(m, 0);
    nb_tensor *x = nb_tensor_from(ctx, 4, (int64_t[]){count, test->c, h, w}, images);
    nb_tensor *prob = nb_softmax(ctx, nb_model_forward(m, ctx, x), 1);
    nb_tensor *pred = nb_argmax(ctx, prob, 1);
    if (!pred) {
        cli_lib_error();
        goto done;
    }
    int ncls = (int)prob->shape[1], right = 0;
    for (int k = 0; k < count; k++) {
        int p = (int)pred->data[k], t = test->y[idx[k]];
        float conf = prob->data[(int64_t)k * ncls + p];
        const char *pn = p >= 0 && p < 10 ? nb_fashion_mnist_classes[p] : "?";
        const char *tn = t >= 0 && t < 10 ? nb_fashion_mnist_classes[t] : "?";
        right += p == t;
        printf("test image %u  predicted: %s (%.2f)  true: %s%s\n", idx[k], pn, (double)conf, tn,
               p == t ? "" : "  <- wrong");
        if (!no_ascii) ascii_art(images + (size_t)k * (size_t)sample, h, w);
    }
    printf("%d of %d right\n", right, count);

    if (out) {
        int cols = count < 8 ? count : 8, gw, gh;
        if (nb_image_grid_size(count, h, w, cols, scale, 2, &gw, &gh) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        if (!(grid = malloc((size_t)gw * (size_t)gh))) {
            cli_fail("out of memory");
            goto done;
        }
        if (nb_image_grid(images, count, h, w, cols, scale, 2, 96, grid) != NB_OK ||
            nb_png_write_gray(out, gw, gh, grid) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        printf("wrote %s (%dx%d: %d images, %d per row, in the order above)\n", out, gw, gh, count, cols);
    }
    rc = CLI_OK;
done:
    free(grid);
    free(idx);
    free(images);
    nb_ctx_free(ctx);
    nb_dataset_free(test);
    nb_model_free(m);
    return rc;
}
