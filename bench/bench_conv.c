/* Convolution throughput: nb_conv2d forward and its backward (data and
 * weight gradients, plus the bias) in GFLOP/s for 1 and 2 threads, with the
 * share of the machine's peak for that thread count, measured here by the
 * FMA probe of bench_gemm (fma_peak.inc). GFLOP/s count the direct
 * convolution's arithmetic (2 N O OH OW C k^2 forward, twice that backward),
 * as PyTorch's peer does: a 3x3 layer that runs by Winograd (2.25x fewer
 * multiply-adds) can thus pass 100% of the peak.
 *
 * Shapes: a VGG/ResNet layer (3x3, 64 -> 64 channels, 56x56, batch 32,
 * padding 1) and the two convolutions of the small Fashion-MNIST CNN (1 -> 32
 * at 28x28 and 32 -> 64 at 14x14, batch 64, 3x3, padding 1). The backward is
 * timed alone: the output gradient is set and the op's backward called on
 * its tape node (nb__bw_conv2d), as bench/torch_conv.py times
 * aten::convolution_backward. Times are the best of the runs.
 *
 * Usage: bench_conv [seconds per measurement, default 0.5] [case filter] [threads: 1 or 2, default both]
 * The last line is the headline number for scripts/bench.sh. */
#include "../src/core/internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fma_peak.inc"

typedef struct { const char *name; int N, C, H, W, O, k, pad, stride; } conv_case;

static const conv_case cases[] = {
    {"vgg 64->64 56x56 b32", 32, 64, 56, 56, 64, 3, 1, 1},
    {"fmnist conv1 1->32 28x28 b64", 64, 1, 28, 28, 32, 3, 1, 1},
    {"fmnist conv2 32->64 14x14 b64", 64, 32, 14, 14, 64, 3, 1, 1},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(nb_tensor *t, unsigned *seed)
{
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        t->data[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
}

typedef struct { double fwd, bwd; } timing; /* seconds, best of the runs */

/* Each run: reset the op context (as a training step does), forward with
 * autograd on, then the backward of that node alone. Leaves, their
 * gradients and the output gradient live in a second context. */
static int run(const conv_case *c, double secs, timing *out)
{
    nb_ctx *lctx = nb_ctx_new(1), *ctx = nb_ctx_new(2);
    if (!lctx || !ctx) return 0;
    unsigned seed = 42;
    nb_tensor *x = nb_tensor_new(lctx, 4, (int64_t[]){c->N, c->C, c->H, c->W});
    nb_tensor *w = nb_tensor_new(lctx, 4, (int64_t[]){c->O, c->C, c->k, c->k});
    nb_tensor *b = nb_tensor_new(lctx, 1, (int64_t[]){c->O});
    if (!x || !w || !b) return 0;
    fill(x, &seed);
    fill(w, &seed);
    fill(b, &seed);
    nb_requires_grad(x, 1);
    nb_requires_grad(w, 1);
    nb_requires_grad(b, 1);
    if (!nb__grad(lctx, x) || !nb__grad(lctx, w) || !nb__grad(lctx, b)) return 0;
    nb_conv2d_opts o = {{c->stride, c->stride}, {c->pad, c->pad}, {1, 1}, 1};
    nb_tensor *g = NULL;
    out->fwd = out->bwd = 1e30;
    double start = now();
    for (int runs = 0; runs < 3 || now() - start < secs; runs++) {
        nb_ctx_reset(ctx);
        double t = now();
        nb_tensor *y = nb_conv2d(ctx, x, w, b, &o);
        t = now() - t;
        if (!y || !y->node) {
            fprintf(stderr, "conv2d failed: %s\n", nb_last_error());
            return 0;
        }
        if (t < out->fwd) out->fwd = t;
        if (!g) {
            g = nb_tensor_new(lctx, y->ndim, y->shape);
            if (!g) return 0;
            fill(g, &seed);
        }
        y->grad = g->data;
        t = now();
        if (nb__bw_conv2d(ctx, y->node) != NB_OK) return 0;
        t = now() - t;
        if (t < out->bwd) out->bwd = t;
    }
    nb_ctx_free(ctx);
    nb_ctx_free(lctx);
    return 1;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    const char *filter = argc > 2 ? argv[2] : NULL;
    const int only = argc > 3 ? atoi(argv[3]) : 0;
    if (secs <= 0) secs = 0.5;
    const double peak[3] = {0, fma_peak(1), fma_peak(2)};
    printf("nb_conv2d, GEMM kernel %s; best of %.1f s; FMA peak (%s probe): 1 thread %.1f GFLOP/s, 2 threads "
           "%.1f GFLOP/s\n", nb_gemm_isa(), secs, nb_gemm_isa(), peak[1], peak[2]);
    printf("%-32s %3s %9s %8s %9s %8s %10s %7s\n", "case", "thr", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s",
           "fwd+bwd", "% peak");
    double headline = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *c = &cases[i];
        if (filter && !strstr(c->name, filter)) continue;
        const int oh = (c->H + 2 * c->pad - c->k) / c->stride + 1, ow = (c->W + 2 * c->pad - c->k) / c->stride + 1;
        const double flop = 2.0 * c->N * c->O * (double)oh * ow * c->C * c->k * c->k; /* forward */
        for (int th = 1; th <= 2; th++) {
            if (only && th != only) continue;
            nb_set_threads(th);
            timing t;
            if (!run(c, secs, &t)) {
                fprintf(stderr, "bench_conv: %s failed: %s\n", c->name, nb_last_error());
                return 1;
            }
            const double gf = flop / t.fwd * 1e-9, gb = 2 * flop / t.bwd * 1e-9;
            const double gt = 3 * flop / (t.fwd + t.bwd) * 1e-9;
            printf("%-32s %3d %9.3f %8.1f %9.3f %8.1f %10.1f %6.1f%%\n", c->name, th, t.fwd * 1e3, gf,
                   t.bwd * 1e3, gb, gt, peak[th] > 0 ? 100 * gt / peak[th] : 0);
            if (i == 0 && th == 2) headline = gt;
            fflush(stdout);
        }
    }
    printf("conv 64->64 56x56 b32 forward+backward, 2 threads: %.1f GFLOP/s\n", headline);
    return 0;
}
