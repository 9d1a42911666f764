/* Fuzz target for model files: the bytes as a safetensors file given to
 * nb_model_load_file, which reads the header, rebuilds the model from the
 * metadata's name and configuration string (the zoo's text parser, reached
 * by `nabla eval/run/predict/summary --weights`) and loads the weights. Any
 * input must give a model or a clean error, never a crash, a leak or an
 * allocation out of proportion to the file; a model that loads must run a
 * forward pass. Seeds: tests/fuzz/corpus/model (small mlp, cnn and sequential
 * files). */
#include "nabla.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* One kernel thread: tiny models, and no thread pool to wake per input. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    nb_set_threads(1);
    return 0;
}

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

static nb_ctx *ctx;

/* One sample through the model, shaped as the zoo's models take it. A
 * "sequential" gets an image, which its text may not take: it must then
 * fail cleanly. */
static void forward_once(nb_model *m)
{
    int64_t shape[4] = {1, 0, 0, 0};
    int ndim = 2;
    long c, h, w;
    const int any = !strcmp(m->name, "sequential");
    if (any) {
        shape[1] = 1, shape[2] = shape[3] = 28;
        ndim = 4;
    } else if (!strcmp(m->name, "cnn") && sscanf(m->config, "%ld,%ld,%ld", &c, &h, &w) == 3) {
        shape[1] = c, shape[2] = h, shape[3] = w;
        ndim = 4;
    } else {
        shape[1] = strtol(m->config, NULL, 10);
    }
    if (!ctx) ctx = nb_ctx_new(0);
    REQUIRE(ctx);
    nb_ctx_reset(ctx);
    nb_model_train(m, 0);
    nb_set_grad_enabled(ctx, 0);
    nb_tensor *x = nb_tensor_zeros(ctx, ndim, shape);
    nb_tensor *y = x ? nb_model_forward(m, ctx, x) : NULL;
    if (any) {
        REQUIRE(y ? y->shape[0] == 1 : nb_ctx_status(ctx) != NB_OK && *nb_last_error());
        return;
    }
    REQUIRE(y && y->ndim == 2 && y->shape[0] == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_model", 0);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    if (off == size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        nb_model *m = (nb_model *)1;
        nb_status s = nb_model_load_file(path, &m);
        if (s != NB_OK) {
            REQUIRE(m == NULL && nb_last_error()[0]);
        } else {
            REQUIRE(m && m->nparams > 0);
            /* The parameters came from the file: 4 bytes or more each. */
            size_t numel = 0;
            for (int i = 0; i < m->nparams; i++) numel += (size_t)nb_tensor_numel(&m->params[i].t);
            REQUIRE(numel <= size / 4);
            forward_once(m);
            nb_model_free(m);
        }
    }
    close(fd);
    return 0;
}
