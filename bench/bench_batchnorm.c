/* Batch-norm throughput: nb_batch_norm in training mode (batch statistics,
 * running statistics updated, affine) forward, and its backward (gradients of
 * x, weight and bias) timed alone by calling the op's backward on its tape
 * node, as bench/torch_batchnorm.py times torch's. Elements per second (x's
 * numel over the time), 1 and 2 threads; best of the runs.
 *
 * Usage: bench_batchnorm [seconds per measurement, default 0.5] [case filter]
 * The last line is the headline number for scripts/bench.sh: the ResNet-like
 * case, forward + backward, 2 threads. */
#include "../src/core/internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int64_t N, C, H, W; } bn_case;

static const bn_case cases[] = {
    {"resnet 64ch 56x56 b32", 32, 64, 56, 56},
    {"cnn 32ch 28x28 b64", 64, 32, 28, 28},
    {"bn1d 512 features b256", 256, 512, 1, 1},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(nb_tensor *t, unsigned *seed, float scale, float shift)
{
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        t->data[i] = shift + scale * ((float)(*seed >> 8) / 16777216.0f - 0.5f);
    }
}

typedef struct { double fwd, bwd; } timing;

static int run(const bn_case *c, double secs, timing *out)
{
    nb_ctx *ctx = nb_ctx_new(1);
    if (!ctx) return 0;
    unsigned seed = 42;
    const int two_d = c->H == 1 && c->W == 1;
    nb_tensor *x = two_d ? nb_tensor_new(ctx, 2, (int64_t[]){c->N, c->C})
                         : nb_tensor_new(ctx, 4, (int64_t[]){c->N, c->C, c->H, c->W});
    nb_tensor *w = nb_tensor_new(ctx, 1, (int64_t[]){c->C}), *b = nb_tensor_new(ctx, 1, (int64_t[]){c->C});
    float *rs = calloc((size_t)(2 * c->C), sizeof(float));
    if (!x || !w || !b || !rs) return 0;
    fill(x, &seed, 2.0f, 1.0f);
    fill(w, &seed, 1.0f, 1.0f);
    fill(b, &seed, 1.0f, 0.0f);
    nb_requires_grad(x, 1);
    nb_requires_grad(w, 1);
    nb_requires_grad(b, 1);
    if (!nb__grad(ctx, x) || !nb__grad(ctx, w) || !nb__grad(ctx, b)) return 0;
    nb_tensor *y = nb_batch_norm(ctx, x, w, b, rs, rs + c->C, 1, 0.1f, 1e-5f);
    if (!y || !y->node) {
        fprintf(stderr, "batch_norm failed: %s\n", nb_last_error());
        return 0;
    }
    nb_tensor *g = nb_tensor_new(ctx, y->ndim, y->shape);
    if (!g) return 0;
    fill(g, &seed, 1.0f, 0.0f);
    y->grad = g->data;
    nb__node *node = y->node;
    out->fwd = out->bwd = 1e30;
    nb_ctx *fctx = nb_ctx_new(2);
    if (!fctx) return 0;
    nb_set_grad_enabled(fctx, 0);
    double start = now();
    int runs = 0;
    while (runs < 3 || now() - start < secs) {
        nb_ctx_reset(fctx);
        double t = now();
        nb_tensor *yy = nb_batch_norm(fctx, x, w, b, rs, rs + c->C, 1, 0.1f, 1e-5f);
        t = now() - t;
        if (!yy) return 0;
        if (t < out->fwd) out->fwd = t;
        runs++;
    }
    start = now();
    runs = 0;
    while (runs < 3 || now() - start < secs) {
        double t = now();
        if (nb__bw_batch_norm(ctx, node) != NB_OK) return 0;
        t = now() - t;
        if (t < out->bwd) out->bwd = t;
        runs++;
    }
    free(rs);
    nb_ctx_free(fctx);
    nb_ctx_free(ctx);
    return 1;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    const char *filter = argc > 2 ? argv[2] : NULL;
    if (secs <= 0) secs = 0.5;
    printf("nb_batch_norm (training, affine); best of %.1f s\n", secs);
    printf("%-26s %3s %9s %9s %9s %9s %11s\n", "case", "thr", "fwd ms", "Melem/s", "bwd ms", "Melem/s",
           "fwd+bwd/s");
    double headline = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bn_case *c = &cases[i];
        if (filter && !strstr(c->name, filter)) continue;
        const double n = (double)(c->N * c->C * c->H * c->W);
        for (int thr = 1; thr <= 2; thr++) {
            nb_set_threads(thr);
            timing t;
            if (!run(c, secs, &t)) {
                fprintf(stderr, "%s failed: %s\n", c->name, nb_last_error());
                return 1;
            }
            double both = n / (t.fwd + t.bwd) / 1e6;
            printf("%-26s %3d %9.3f %9.1f %9.3f %9.1f %11.1f\n", c->name, thr, 1e3 * t.fwd, n / t.fwd / 1e6,
                   1e3 * t.bwd, n / t.bwd / 1e6, both);
            if (i == 0 && thr == 2) headline = both;
        }
    }
    printf("nabla batch_norm fwd+bwd resnet 64ch 56x56 b32 threads 2: %.1f Melem/s\n", headline);
    return 0;
}
