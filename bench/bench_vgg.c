/* VGG11 (the notes' class) forward and training step, the work of
 * bench/torch_vgg.py: 3x224x224 images at batch 4 (1000 classes) and
 * 3x32x32 at batch 64 (10 classes, classifier 512 -> 4096 -> 4096 -> 10),
 * random images and labels, SGD (lr 0.01, momentum 0.9) with cross-entropy,
 * dropout on in the training step; forward in eval mode without a tape.
 *   build/bench/bench_vgg [--threads 2] [--rounds 3] [--size 224|32|0 (both)]
 * Prints ms per image (median of the rounds; wall time, and the CPU time of
 * all threads, steadier on shared cores), the forward's GFLOP/s against
 * the machine's FMA peak (measured here: 2 FLOPs per multiply-accumulate,
 * the MACs of nb_model_summary), the peak resident memory, and last the
 * 224x224 training throughput:
 *   "nabla vgg11 224 train batch 4 threads 2: 1.95 img/s" */
#include "nabla.h"
#include "nabla/summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fma_peak.inc"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of all threads: steadier than wall time when other processes
 * share the cores (it still grows with their cache traffic). */
static double cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- one size --------------------------------------------------------------- */
typedef struct {
    double fwd_ms, train_ms;    /* wall time per image */
    double fwd_cpu_ms, train_cpu_ms;   /* CPU time of all threads per image */
    double fwd_gflops;
} result;

static int forward(nb_model *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_ctx_reset(ctx);
    nb_tensor *xt = nb_tensor_from(ctx, x->ndim, x->shape, x->data);
    return nb_model_forward(m, ctx, xt) ? 0 : 1;
}

static int train_step(nb_model *m, nb_optimizer *o, nb_ctx *ctx, nb_tensor *x, const int32_t *y)
{
    nb_ctx_reset(ctx);
    nb_tensor *xt = nb_tensor_from(ctx, x->ndim, x->shape, x->data);
    nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, xt), y, NULL, -100, NB_REDUCTION_MEAN);
    if (!loss) return 1;
    nb_model_zero_grad(m);
    return nb_backward(ctx, loss) != NB_OK || nb_optim_step(o) != NB_OK;
}

static int bench_size(int size, int batch, int classes, int rounds, result *r)
{
    char config[128];
    snprintf(config, sizeof config, "in=3,size=%d,classes=%d", size, classes);
    nb_ctx *ctx = nb_ctx_new(0), *data = nb_ctx_new(1);
    nb_model *m = NULL;
    if (!ctx || !data || nb_model_build("vgg11", config, nb_ctx_rng(ctx), &m) != NB_OK) return 1;
    nb_layer_info *rows = NULL;
    int nrows = 0;
    double macs = 0;
    if (nb_model_summary(m, 3, (int64_t[]){3, size, size}, &rows, &nrows) != NB_OK) return 1;
    for (int i = 0; i < nrows; i++) macs += (double)rows[i].macs;
    free(rows);
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.01f, .momentum = 0.9f});
    nb_tensor *x = nb_tensor_rand(data, 4, (int64_t[]){batch, 3, size, size});
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    if (!o || !x || !y) return 1;
    for (int i = 0; i < batch; i++) y[i] = (int32_t)nb_rng_below(nb_ctx_rng(data), (uint32_t)classes);

    double t[2][100], c[2][100];
    nb_model_train(m, 0);
    nb_set_grad_enabled(ctx, 0);
    if (forward(m, ctx, x)) return 1;   /* warm-up: arenas and workspaces */
    for (int k = 0; k < rounds; k++) {
        double t0 = now(), c0 = cpu();
        if (forward(m, ctx, x)) return 1;
        t[0][k] = (now() - t0) / batch;
        c[0][k] = (cpu() - c0) / batch;
    }
    nb_model_train(m, 1);
    nb_set_grad_enabled(ctx, 1);
    if (train_step(m, o, ctx, x, y)) return 1;
    for (int k = 0; k < rounds; k++) {
        double t0 = now(), c0 = cpu();
        if (train_step(m, o, ctx, x, y)) return 1;
        t[1][k] = (now() - t0) / batch;
        c[1][k] = (cpu() - c0) / batch;
    }
    for (int p = 0; p < 2; p++) {
        qsort(t[p], (size_t)rounds, sizeof(double), cmp_double);
        qsort(c[p], (size_t)rounds, sizeof(double), cmp_double);
    }
    r->fwd_cpu_ms = 1e3 * c[0][rounds / 2];
    r->train_cpu_ms = 1e3 * c[1][rounds / 2];
    r->fwd_ms = 1e3 * t[0][rounds / 2];
    r->train_ms = 1e3 * t[1][rounds / 2];
    r->fwd_gflops = 2.0 * macs / t[0][rounds / 2] * 1e-9;
    free(y);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_ctx_free(data);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 2, rounds = 3, only = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) only = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_vgg [--threads T] [--rounds R] [--size 224|32|0]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 100 || (only && only != 224 && only != 32)) {
        fprintf(stderr, "bench_vgg: bad option value\n");
        return 2;
    }
    nb_set_threads(threads);
    double peak = fma_peak(nb_get_threads());
    static const struct { int size, batch, classes; } cases[] = {{32, 64, 10}, {224, 4, 1000}};
    result r[2] = {{0}};
    for (int c = 0; c < 2; c++) {
        if (only && only != cases[c].size) continue;
        if (bench_size(cases[c].size, cases[c].batch, cases[c].classes, rounds, &r[c])) {
            fprintf(stderr, "bench_vgg: %dx%d: %s\n", cases[c].size, cases[c].size, nb_last_error());
            return 1;
        }
        printf("nabla vgg11 %dx%d batch %d threads %d: forward %.2f ms/img (%.1f GFLOP/s, %.0f%% of the %.0f "
               "GFLOP/s FMA peak), train step %.2f ms/img; CPU time: forward %.2f, train step %.2f ms/img\n",
               cases[c].size, cases[c].size, cases[c].batch, nb_get_threads(), r[c].fwd_ms, r[c].fwd_gflops,
               peak > 0 ? 100 * r[c].fwd_gflops / peak : 0, peak, r[c].train_ms, r[c].fwd_cpu_ms,
               r[c].train_cpu_ms);
        fflush(stdout);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) printf("nabla vgg11 peak RSS: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    int last = r[1].train_ms > 0 ? 1 : 0;
    printf("nabla vgg11 %d train batch %d threads %d (gemm %s): %.3f img/s\n", cases[last].size, cases[last].batch,
           nb_get_threads(), nb_gemm_isa(), 1e3 / r[last].train_ms);
    return 0;
}
