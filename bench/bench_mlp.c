/* Training throughput of the Fashion-MNIST MLP 784-256-128-100-10 (ReLU):
 * SGD (lr 0.05, momentum 0.9) on the Fashion-MNIST training images in order,
 * the same work as bench/torch_mlp.py. Without the dataset both fall back to
 * random images and labels (and say so).
 *   build/bench/bench_mlp [--batch 64] [--threads 2] [--seconds 1] [--rounds 3]
 * Prints the median of the rounds in images per second on its last line:
 *   "nabla mlp train batch 64 threads 2: 41234 img/s" */
#include "nabla.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SYNTHETIC 60000 /* images when the dataset is missing */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int step(nb_model *m, nb_optimizer *o, nb_ctx *ctx, const float *x, const int32_t *y, int64_t batch)
{
    nb_ctx_reset(ctx);
    nb_tensor *xt = nb_tensor_from(ctx, 4, (int64_t[]){batch, 1, 28, 28}, x);
    nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, xt), y, NULL, -100, NB_REDUCTION_MEAN);
    if (!loss) return 1;
    nb_model_zero_grad(m);
    if (nb_backward(ctx, loss) != NB_OK || nb_optim_step(o) != NB_OK) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int64_t batch = 64;
    int threads = 2, rounds = 3;
    double seconds = 1.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_mlp [--batch B] [--threads T] [--seconds S] [--rounds R]\n");
            return 2;
        }
    }
    if (batch < 1 || rounds < 1 || rounds > 100 || !(seconds > 0)) {
        fprintf(stderr, "bench_mlp: bad option value\n");
        return 2;
    }
    nb_set_threads(threads);
    nb_ctx *ctx = nb_ctx_new(0);
    nb_model *m = NULL;
    if (!ctx || nb_model_build("mlp", "784,256,128,100,10", nb_ctx_rng(ctx), &m) != NB_OK) {
        fprintf(stderr, "bench_mlp: %s\n", nb_last_error());
        return 1;
    }
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f});
    nb_dataset *d = NULL;
    const char *source = "Fashion-MNIST";
    if (nb_fashion_mnist_load(NULL, 1, &d) != NB_OK) {
        fprintf(stderr, "bench_mlp: %s\nbench_mlp: using random images instead\n", nb_last_error());
        source = "random images";
        d = calloc(1, sizeof *d);
        if (d) *d = (nb_dataset){.n = SYNTHETIC, .c = 1, .h = 28, .w = 28, .nclasses = 10,
                                 .x = malloc(sizeof(float) * SYNTHETIC * 784),
                                 .y = malloc(sizeof(int32_t) * SYNTHETIC)};
        if (!d || !d->x || !d->y) {
            fprintf(stderr, "bench_mlp: out of memory\n");
            return 1;
        }
        nb_rng r;
        nb_rng_seed(&r, 1);
        for (int64_t i = 0; i < SYNTHETIC * 784; i++) d->x[i] = nb_rng_uniform(&r);
        for (int64_t i = 0; i < SYNTHETIC; i++) d->y[i] = (int32_t)nb_rng_below(&r, 10);
    }
    int64_t nb = d->n / batch; /* whole batches, cycled in order */
    if (!o || nb < 1) {
        fprintf(stderr, "bench_mlp: %s\n", o ? "batch larger than the dataset" : nb_last_error());
        return 1;
    }
    const float *x = d->x;
    const int32_t *y = d->y;

    long k = 0;
    for (double t0 = now(); now() - t0 < 0.3 || k < 20; k++) /* warm-up */
        if (step(m, o, ctx, x + (k % nb) * batch * 784, y + (k % nb) * batch, batch)) goto fail;
    double rate[100];
    for (int rd = 0; rd < rounds; rd++) {
        long steps = 0;
        double t0 = now(), t;
        do {
            if (step(m, o, ctx, x + (k % nb) * batch * 784, y + (k % nb) * batch, batch)) goto fail;
            k++, steps++;
        } while ((t = now() - t0) < seconds);
        rate[rd] = (double)steps * (double)batch / t;
        fprintf(stderr, "  round %d: %ld steps, %.0f img/s\n", rd + 1, steps, rate[rd]);
    }
    qsort(rate, (size_t)rounds, sizeof rate[0], cmp_double);
    printf("nabla mlp train batch %lld threads %d (gemm %s, %s): %.0f img/s\n", (long long)batch,
           nb_get_threads(), nb_gemm_isa(), source, rate[rounds / 2]);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    if (!strcmp(source, "Fashion-MNIST")) {
        nb_dataset_free(d);
    } else {
        free(d->x);
        free(d->y);
        free(d);
    }
    return 0;
fail:
    fprintf(stderr, "bench_mlp: step %ld: %s\n", k, nb_last_error());
    return 1;
}
