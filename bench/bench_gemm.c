/* GEMM throughput: GFLOP/s of nb_gemm on the shapes nabla runs (an MLP
 * training step with batch 64, large squares, im2col convolutions) for 1
 * and 2 threads. The last line is the MLP step's GEMMs together (total
 * flops / total time, 2 threads), the figure scripts/bench.sh reports.
 * Usage: bench_gemm [seconds per case, default 0.3] [filter]
 * NABLA_GEMM_ISA=avx2|scalar forces a lower instruction set. */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv, clock_gettime */
#endif
#include "nabla.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int ta, tb, M, N, K; } shape;

static const shape shapes[] = {
    /* MLP 784-256-128-100-10, batch 64: forward x W^T, dW = dY^T X, dX = dY W */
    {"mlp fwd 64x256x784 (NT)", 0, 1, 64, 256, 784},
    {"mlp dW 256x784x64 (TN)", 1, 0, 256, 784, 64},
    {"mlp dX 64x784x256 (NN)", 0, 0, 64, 784, 256},
    {"mlp fwd 64x128x256 (NT)", 0, 1, 64, 128, 256},
    {"mlp dW 128x256x64 (TN)", 1, 0, 128, 256, 64},
    {"mlp dX 64x256x128 (NN)", 0, 0, 64, 256, 128},
    {"mlp fwd 64x100x128 (NT)", 0, 1, 64, 100, 128},
    {"mlp dW 100x128x64 (TN)", 1, 0, 100, 128, 64},
    {"mlp dX 64x128x100 (NN)", 0, 0, 64, 128, 100},
    {"mlp fwd 64x10x100 (NT)", 0, 1, 64, 10, 100},
    {"mlp dW 10x100x64 (TN)", 1, 0, 10, 100, 64},
    {"mlp dX 64x100x10 (NN)", 0, 0, 64, 100, 10},
    /* large squares */
    {"square 512 (NN)", 0, 0, 512, 512, 512},
    {"square 1024 (NN)", 0, 0, 1024, 1024, 1024},
    {"square 1024 (NT)", 0, 1, 1024, 1024, 1024},
    {"square 1024 (TN)", 1, 0, 1024, 1024, 1024},
    {"square 2048 (NN)", 0, 0, 2048, 2048, 2048},
    /* convolutions as im2col GEMMs: Cout x (H*W) x (Cin*k*k) */
    {"conv 64x50176x27", 0, 0, 64, 50176, 27},
    {"conv 64x784x288", 0, 0, 64, 784, 288},
    {"conv 128x12544x576", 0, 0, 128, 12544, 576},
    {"conv 256x3136x1152", 0, 0, 256, 3136, 1152},
    {"conv 512x784x2304", 0, 0, 512, 784, 2304},
    {"conv 512x784x4608", 0, 0, 512, 784, 4608},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* n random floats, 64-byte aligned like nabla's tensors. */
static float *randm(size_t n, unsigned *seed)
{
    float *p = aligned_alloc(64, (n * sizeof *p + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

/* Best GFLOP/s over repeated calls for `secs` seconds (best: the least
 * disturbed by the rest of the machine). */
static double run(const shape *s, double secs)
{
    unsigned seed = 42;
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    float *A = randm((size_t)s->M * s->K, &seed), *B = randm((size_t)s->K * s->N, &seed);
    float *C = randm((size_t)s->M * s->N, &seed);
    const double flop = 2.0 * s->M * s->N * s->K;
    nb_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N); /* warm */
    int reps = 1;
    double best = 1e30, start = now();
    while (now() - start < secs) {
        double t = now();
        for (int r = 0; r < reps; r++)
            nb_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        t = (now() - t) / reps;
        if (t < best) best = t;
        if (t * reps < 1e-3) reps *= 2; /* batch tiny calls above timer noise */
    }
    free(A);
    free(B);
    free(C);
    return flop / best * 1e-9;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    const char *filter = argc > 2 ? argv[2] : NULL;
    if (secs <= 0) secs = 0.3;
    printf("nb_gemm, kernel %s; GFLOP/s (best of %.1f s)\n", nb_gemm_isa(), secs);
    printf("%-28s %10s %10s\n", "shape (M x N x K)", "1 thread", "2 threads");
    double mlp_flop = 0, mlp_time = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        if (filter && !strstr(s->name, filter)) continue;
        nb_set_threads(1);
        const double g1 = run(s, secs);
        nb_set_threads(2);
        const double g2 = run(s, secs);
        printf("%-28s %10.1f %10.1f\n", s->name, g1, g2);
        fflush(stdout);
        if (!strncmp(s->name, "mlp", 3)) {
            const double flop = 2.0 * s->M * s->N * s->K;
            mlp_flop += flop;
            mlp_time += flop / (g2 * 1e9);
        }
    }
    if (mlp_time > 0)
        printf("MLP step GEMMs (batch 64, 2 threads, %s): %.1f GFLOP/s\n", nb_gemm_isa(),
               mlp_flop / mlp_time * 1e-9);
    return 0;
}
