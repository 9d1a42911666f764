/* LSTM training throughput beside bench/torch_lstm.py (the same models,
 * sizes, optimizer and timing):
 *   --model rows: Fashion-MNIST read as 28 rows of 28 pixels, LSTM(28, 128,
 *     batch_first) -> last step -> Linear(128, 10) -> cross entropy;
 *   --model char: a character model, Embedding(100, 64) -> 2-layer
 *     LSTM(64, 256, batch_first) -> Linear(256, 100) -> cross entropy over
 *     every position (sequence 100).
 * Both on one batch of random data (the speed does not depend on the values),
 * batch 64, SGD (lr 0.05, momentum 0.9). Prints the peak RSS, then the median
 * rate of the rounds in sequences per second:
 *   "nabla lstm rows train batch 64 threads 2: 5321 seq/s"
 *   build/bench/bench_lstm [--model rows|char] [--batch 64] [--threads 2] [--seconds 1] [--rounds 3] */
#include "nabla.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    int char_model;
    int64_t batch, T, in, hidden, layers, vocab, classes;
    nb_model *m;
    nb_module *emb, *rnn, *fc;
    float *x;          /* rows: (batch, T, in) pixels; char: (batch, T) token ids */
    int32_t *y;        /* rows: (batch); char: (batch * T) next tokens */
} bench;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int build(bench *b, nb_rng *rng)
{
    b->m = nb_model_new("lstm_bench", "");
    if (!b->m) return 1;
    int64_t in = b->in;
    if (b->char_model) {
        b->emb = nb_nn_embedding(b->m, rng, (int)b->vocab, (int)b->in);
        if (!b->emb) return 1;
    }
    nb_rnn_opts o = {.mode = NB_RNN_LSTM, .input_size = (int)in, .hidden_size = (int)b->hidden,
                     .num_layers = (int)b->layers, .batch_first = 1};
    b->rnn = nb_nn_rnn(b->m, rng, &o);
    b->fc = nb_nn_linear(b->m, rng, (int)b->hidden, (int)b->classes, 1);
    if (!b->rnn || !b->fc) return 1;
    int64_t nx = b->batch * b->T * (b->char_model ? 1 : in), ny = b->char_model ? b->batch * b->T : b->batch;
    b->x = malloc(sizeof(float) * (size_t)nx);
    b->y = malloc(sizeof(int32_t) * (size_t)ny);
    if (!b->x || !b->y) return 1;
    for (int64_t i = 0; i < nx; i++)
        b->x[i] = b->char_model ? (float)nb_rng_below(rng, (uint32_t)b->vocab) : nb_rng_uniform(rng);
    for (int64_t i = 0; i < ny; i++) b->y[i] = (int32_t)nb_rng_below(rng, (uint32_t)b->classes);
    return 0;
}

static int step(bench *b, nb_optimizer *o, nb_ctx *ctx)
{
    nb_ctx_reset(ctx);
    int64_t B = b->batch, T = b->T, H = b->hidden;
    nb_tensor *x, *logits;
    if (b->char_model) {
        x = b->emb->vt->forward(b->emb, ctx, nb_tensor_from(ctx, 2, (int64_t[]){B, T}, b->x));
        nb_tensor *y = nb_rnn_forward(b->rnn, ctx, x, NULL);
        logits = b->fc->vt->forward(b->fc, ctx, nb_reshape(ctx, nb_contiguous(ctx, y), 2, (int64_t[]){B * T, H}));
    } else {
        x = nb_tensor_from(ctx, 3, (int64_t[]){B, T, b->in}, b->x);
        nb_tensor *y = nb_rnn_forward(b->rnn, ctx, x, NULL);
        nb_tensor *last = nb_reshape(ctx, nb_slice(ctx, y, 1, T - 1, T, 1), 2, (int64_t[]){B, H});
        logits = b->fc->vt->forward(b->fc, ctx, last);
    }
    nb_tensor *loss = nb_cross_entropy(ctx, logits, b->y, NULL, -100, NB_REDUCTION_MEAN);
    if (!loss) return 1;
    nb_model_zero_grad(b->m);
    return nb_backward(ctx, loss) != NB_OK || nb_optim_step(o) != NB_OK;
}

int main(int argc, char **argv)
{
    bench b = {.batch = 64};
    int threads = 2, rounds = 3;
    double seconds = 1.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model") && (!strcmp(argv[i + 1], "rows") || !strcmp(argv[i + 1], "char")))
            b.char_model = !strcmp(argv[i + 1], "char");
        else if (!strcmp(argv[i], "--batch")) b.batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_lstm [--model rows|char] [--batch B] [--threads T] [--seconds S] "
                            "[--rounds R]\n");
            return 2;
        }
    }
    if (argc % 2 == 0 || b.batch < 1 || rounds < 1 || rounds > 100 || !(seconds > 0)) {
        fprintf(stderr, "bench_lstm: bad option value\n");
        return 2;
    }
    if (b.char_model) b.T = 100, b.in = 64, b.hidden = 256, b.layers = 2, b.vocab = 100, b.classes = 100;
    else b.T = 28, b.in = 28, b.hidden = 128, b.layers = 1, b.classes = 10;
    const char *name = b.char_model ? "char" : "rows";
    nb_set_threads(threads);
    nb_ctx *ctx = nb_ctx_new(0);
    nb_optimizer *o = NULL;
    if (!ctx || build(&b, nb_ctx_rng(ctx)) || !(o = nb_sgd_new(b.m, (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f}))) {
        fprintf(stderr, "bench_lstm: %s\n", nb_last_error());
        return 1;
    }
    long k = 0;
    for (double t0 = now(); now() - t0 < 0.3 || k < 5; k++) /* warm-up */
        if (step(&b, o, ctx)) goto fail;
    double rate[100];
    for (int rd = 0; rd < rounds; rd++) {
        long steps = 0;
        double t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t;
        do {
            if (step(&b, o, ctx)) goto fail;
            k++, steps++;
        } while ((t = now() - t0) < seconds);
        rate[rd] = (double)steps * (double)b.batch / t;
        /* CPU time of all threads per step: steadier than the rate when
         * other processes share the cores */
        fprintf(stderr, "  round %d: %ld steps, %.0f seq/s, %.2f ms/step, %.2f CPU ms/step\n", rd + 1, steps,
                rate[rd], 1e3 * t / (double)steps, 1e3 * (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)steps);
    }
    qsort(rate, (size_t)rounds, sizeof rate[0], cmp_double);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf("nabla lstm %s peak RSS: %.1f MiB\n", name, ru.ru_maxrss / 1024.0);
    printf("nabla lstm %s train batch %lld threads %d (gemm %s): %.0f seq/s\n", name, (long long)b.batch,
           nb_get_threads(), nb_gemm_isa(), rate[rounds / 2]);
    nb_optim_free(o);
    nb_model_free(b.m);
    nb_ctx_free(ctx);
    free(b.x);
    free(b.y);
    return 0;
fail:
    fprintf(stderr, "bench_lstm: step %ld: %s\n", k, nb_last_error());
    return 1;
}
