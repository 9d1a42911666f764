/* GEMM throughput of nb_gemm beside OpenBLAS, as GFLOP/s and as % of this
 * machine's peak, measured here by an FMA probe.
 *   bench_gemm [seconds per case and library, default 0.2] [filter]
 * NABLA_GEMM_ISA=avx2|scalar forces a lower instruction set.
 *
 * Shapes: squares (n = 256 ... 2048) in the transpose combinations a
 * backward pass uses (Y = X W^T: NT; dX = dY W: NN; dW = dY^T X: TN), the
 * GEMMs of one training step of the notes' CNN (batch 64; the Winograd
 * GEMMs of its second convolution run per chunk inside the conv's own
 * tasks, so their 1-thread figure is the one that counts) and of the MLP
 * 784-256-128-100-10.
 *
 * OpenBLAS is loaded with dlopen("libopenblas.so.0") when present (Debian's
 * libopenblas0, which scripts/install-deps.sh --peer installs), so it is
 * no build dependency;
 * set OPENBLAS_CORETYPE=SkylakeX on this command line for its best kernel.
 * All nabla cases run, then all OpenBLAS cases, PASSES times (the best of
 * the passes counts): idle threads of one library spin for a while and
 * would slow the other's two-thread runs, and passes spread over the run
 * let both libraries meet the quiet moments of a shared machine (its
 * disturbances last seconds: with 2 passes, one shape's 1- or 2-thread
 * figure fell 15-25% in about one run of three).
 *
 * The last two lines are the figures scripts/bench.sh puts in its table:
 *   "peer OpenBLAS ... square n>=512, 1 thread: 250.0 GFLOP/s"
 *   "nabla square n>=512, 1 thread (...): 240.0 GFLOP/s"
 * (total flops / total time over the squares with n >= 512). */
#include "nabla.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fma_peak.inc"

typedef struct { const char *name; int ta, tb, M, N, K; } shape;

static const shape shapes[] = {
    {"square 256 NN", 0, 0, 256, 256, 256},
    {"square 512 NN", 0, 0, 512, 512, 512},
    {"square 512 NT", 0, 1, 512, 512, 512},
    {"square 512 TN", 1, 0, 512, 512, 512},
    {"square 1024 NN", 0, 0, 1024, 1024, 1024},
    {"square 1024 NT", 0, 1, 1024, 1024, 1024},
    {"square 1024 TN", 1, 0, 1024, 1024, 1024},
    {"square 1024 TT", 1, 1, 1024, 1024, 1024},
    {"square 2048 NN", 0, 0, 2048, 2048, 2048},
    /* CNN, batch 64: conv2 (32->64 at 14x14) by Winograd F(2x2, 3x3), 16
     * GEMMs per chunk of 160 tiles (src/kernels/winograd.c; conv1 is
     * direct, no GEMM), then the classifier */
    {"cnn conv2 wino fwd 64x160x32 TN", 1, 0, 64, 160, 32},
    {"cnn conv2 wino dX 32x160x64 TN", 1, 0, 32, 160, 64},
    {"cnn conv2 wino dW 32x64x160 NT", 0, 1, 32, 64, 160},
    {"cnn fc1 fwd 64x128x3136 NT", 0, 1, 64, 128, 3136},
    {"cnn fc1 dX 64x3136x128", 0, 0, 64, 3136, 128},
    {"cnn fc1 dW 128x3136x64 TN", 1, 0, 128, 3136, 64},
    {"cnn fc2 fwd 64x10x128 NT", 0, 1, 64, 10, 128},
    /* MLP 784-256-128-100-10, batch 64 */
    {"mlp fwd 64x256x784 NT", 0, 1, 64, 256, 784},
    {"mlp dW 256x784x64 TN", 1, 0, 256, 784, 64},
    {"mlp dX 64x784x256", 0, 0, 64, 784, 256},
    {"mlp fwd 64x128x256 NT", 0, 1, 64, 128, 256},
    {"mlp dW 128x256x64 TN", 1, 0, 128, 256, 64},
    {"mlp dX 64x256x128", 0, 0, 64, 256, 128},
    {"mlp fwd 64x100x128 NT", 0, 1, 64, 100, 128},
    {"mlp dW 100x128x64 TN", 1, 0, 100, 128, 64},
    {"mlp dX 64x128x100", 0, 0, 64, 128, 100},
    {"mlp fwd 64x10x100 NT", 0, 1, 64, 10, 100},
    {"mlp dW 10x100x64 TN", 1, 0, 10, 100, 64},
    {"mlp dX 64x100x10", 0, 0, 64, 100, 10},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ---- OpenBLAS, when installed -------------------------------------------------- */

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta,
                         float *C, int ldc);
static sgemm_fn cblas_sgemm;
static void (*openblas_set_num_threads)(int);
static char *(*openblas_get_corename)(void);
static char *(*openblas_get_config)(void);

/* 1 when OpenBLAS was found and has what we call. */
static int load_openblas(void)
{
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) return 0;
    cblas_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    openblas_set_num_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    openblas_get_corename = (char *(*)(void))dlsym(h, "openblas_get_corename");
    openblas_get_config = (char *(*)(void))dlsym(h, "openblas_get_config");
    return cblas_sgemm && openblas_set_num_threads && openblas_get_corename && openblas_get_config;
}

/* ---- timing --------------------------------------------------------------------- */

typedef enum { LIB_NABLA, LIB_OPENBLAS } lib;

static void gemm(lib l, const shape *s, const float *A, const float *B, float *C)
{
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    if (l == LIB_NABLA)
        nb_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
    else
        cblas_sgemm(CBLAS_ROW_MAJOR, s->ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
                    s->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, s->M, s->N, s->K, 1.0f, A, lda, B,
                    ldb, 0.0f, C, s->N);
}

static void set_threads(lib l, int n)
{
    if (l == LIB_NABLA) nb_set_threads(n);
    else openblas_set_num_threads(n);
}

/* n random floats, 64-byte aligned like nabla's tensors. */
static float *randm(size_t n, unsigned *seed)
{
    float *p = aligned_alloc(64, (n * sizeof *p + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

/* Seconds per call: the best over repeated calls for `secs` seconds, and
 * over at least MIN_CALLS calls per pass (the least disturbed by the rest
 * of the machine; a 2048^3 product takes 0.1 s, and the best of one or two
 * calls in all read 73% of the peak in a run where three others read
 * 85-87%). */
#define PASSES 4
#define MIN_CALLS 2

static double run(lib l, const shape *s, double secs)
{
    unsigned seed = 42;
    float *A = randm((size_t)s->M * s->K, &seed), *B = randm((size_t)s->K * s->N, &seed);
    float *C = randm((size_t)s->M * s->N, &seed);
    gemm(l, s, A, B, C); /* warm: buffers, pages, caches */
    int reps = 1;
    double best = 1e30, start = now();
    for (int calls = 0; calls < MIN_CALLS || now() - start < secs;) {
        double t = now();
        for (int r = 0; r < reps; r++) gemm(l, s, A, B, C);
        t = (now() - t) / reps;
        calls += reps;
        if (t < best) best = t;
        if (t * reps < 1e-3) reps *= 2; /* batch tiny calls above timer noise */
    }
    free(A);
    free(B);
    free(C);
    return best;
}

static double flops(const shape *s) { return 2.0 * s->M * s->N * s->K; }

/* ---- report ------------------------------------------------------------------- */

/* 100 * x / of, 0 when there is no peak to compare with. */
static double pct(double x, double of) { return of > 0 ? 100 * x / of : 0; }

/* "x" formatted, or "-" when there is no figure (v <= 0). */
static const char *fmt(char *buf, size_t n, const char *f, double v)
{
    if (v > 0) snprintf(buf, n, f, v);
    else snprintf(buf, n, "-");
    return buf;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.2;
    const char *filter = argc > 2 ? argv[2] : NULL;
    if (!(secs > 0)) secs = 0.2;
    const int have_blas = load_openblas();

    const double peak[3] = {0, fma_peak(1), fma_peak(2)};
    printf("nb_gemm kernel %s; ", nb_gemm_isa());
    if (have_blas)
        printf("OpenBLAS %s core %s (OPENBLAS_CORETYPE=%s)\n", openblas_get_config(),
               openblas_get_corename(), getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    else
        printf("OpenBLAS not found (libopenblas.so.0: scripts/install-deps.sh --peer)\n");
    printf("FMA peak (%s probe): 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n", nb_gemm_isa(),
           peak[1], peak[2]);

    /* seconds per call: [library][threads - 1][shape]; the best of the
     * passes, so that both libraries see the machine's quiet moments */
    static double t[2][2][NSHAPES];
    for (int pass = 0; pass < PASSES; pass++)
        for (int l = 0; l < (have_blas ? 2 : 1); l++) {
            if (have_blas) usleep(300000); /* let the other library's threads sleep */
            for (int i = 0; i < NSHAPES; i++) {
                if (filter && !strstr(shapes[i].name, filter)) continue;
                for (int th = 1; th <= 2; th++) {
                    set_threads((lib)l, th);
                    const double s = run((lib)l, &shapes[i], secs / PASSES);
                    if (pass == 0 || s < t[l][th - 1][i]) t[l][th - 1][i] = s;
                }
            }
        }

    printf("GFLOP/s (best of %d x %.2f s, at least %d calls each), %% of the FMA peak for that thread count, "
           "nabla/OpenBLAS\n", PASSES, secs / PASSES, MIN_CALLS);
    printf("%-31s | %7s %5s %8s %6s | %7s %5s %8s %6s | %5s\n", "shape (M x N x K)", "nabla 1", "%pk",
           "OpenBLAS", "ratio", "nabla 2", "%pk", "OpenBLAS", "ratio", "2T/1T");
    double sq_flop = 0, sq_time[2] = {0, 0}, mlp_flop = 0, mlp_time = 0, worst_pk = 1e30, worst_mt = 1e30;
    for (int i = 0; i < NSHAPES; i++) {
        const shape *s = &shapes[i];
        if (filter && !strstr(s->name, filter)) continue;
        char b[6][16];
        double g[2][2];
        for (int l = 0; l < 2; l++)
            for (int th = 0; th < 2; th++) g[l][th] = t[l][th][i] > 0 ? flops(s) / t[l][th][i] * 1e-9 : 0;
        printf("%-31s | %7.1f %5s %8s %6s | %7.1f %5s %8s %6s | %5.2f\n", s->name, g[0][0],
               fmt(b[0], 16, "%.0f", pct(g[0][0], peak[1])),
               fmt(b[1], 16, "%.1f", g[1][0]), fmt(b[2], 16, "%.2f", g[1][0] > 0 ? g[0][0] / g[1][0] : 0),
               g[0][1], fmt(b[3], 16, "%.0f", pct(g[0][1], peak[2])),
               fmt(b[4], 16, "%.1f", g[1][1]), fmt(b[5], 16, "%.2f", g[1][1] > 0 ? g[0][1] / g[1][1] : 0),
               g[0][1] / g[0][0]);
        if (!strncmp(s->name, "square", 6) && s->M >= 512) {
            sq_flop += flops(s);
            sq_time[0] += t[0][0][i];
            sq_time[1] += t[1][0][i];
            if (g[0][0] / peak[1] < worst_pk) worst_pk = g[0][0] / peak[1];
            if (g[0][1] / g[0][0] < worst_mt) worst_mt = g[0][1] / g[0][0];
        }
        if (!strncmp(s->name, "mlp", 3)) {
            mlp_flop += flops(s);
            mlp_time += t[0][1][i];
        }
    }
    if (mlp_time > 0)
        printf("MLP step GEMMs (batch 64, 2 threads): %.1f GFLOP/s\n", mlp_flop / mlp_time * 1e-9);
    if (sq_flop > 0) {
        if (peak[1] > 0)
            printf("square n>=512: worst %.0f%% of the 1-thread peak, worst 2T/1T %.2fx\n", 100 * worst_pk,
                   worst_mt);
        if (have_blas)
            printf("peer OpenBLAS %s square n>=512, 1 thread: %.1f GFLOP/s\n", openblas_get_corename(),
                   sq_flop / sq_time[1] * 1e-9);
        printf("nabla square n>=512, 1 thread (%s, %.0f%% of peak): %.1f GFLOP/s\n", nb_gemm_isa(),
               peak[1] > 0 ? 100 * sq_flop / sq_time[0] * 1e-9 / peak[1] : 0, sq_flop / sq_time[0] * 1e-9);
    }
    return 0;
}
