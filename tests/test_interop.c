/* `nabla inspect` and `nabla run`, run as programs, and the PyTorch round
 * trip of scripts/interop_check.py (skipped, visibly, without python3-torch). */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Run a shell command with stdout and stderr captured into nbt_out and
 * nbt_err; returns the exit status (-1 if it did not exit normally). */
static int shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int shell(const char *fmt, ...)
{
    char cmd[3200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "%s", cmd);
}

#define NABLA "'%s/nabla' "
#define NABLA_BIN nbt_build_dir()

/* A small mlp "6,5,3" with seeded weights saved to `path`; the model is
 * returned for reference outputs (caller frees). */
static nb_model *small_mlp(const char *path)
{
    nb_rng rng;
    nb_rng_seed(&rng, 11);
    nb_model *m = NULL;
    if (nb_model_build("mlp", "6,5,3", &rng, &m) != NB_OK) return NULL;
    if (nb_model_save(m, path) != NB_OK) {
        nb_model_free(m);
        return NULL;
    }
    return m;
}

/* n inputs of 6 values as the tensor "input" of `path`, also into x. */
static nb_status save_input(const char *path, const char *name, int64_t n, float *x)
{
    for (int64_t i = 0; i < n * 6; i++) x[i] = (float)((i * 7919) % 23) / 11.0f - 1.0f;
    const int64_t shape[2] = {n, 6};
    nb_st_entry e = {name, 2, shape, x};
    return nb_safetensors_save(path, &e, 1, NB_ST_F32, NULL, 0);
}

TEST(cli_run_matches_the_library_forward)
{
    const char *w = nbt_tmp_path("run_w.safetensors"), *xp = nbt_tmp_path("run_x.safetensors"),
               *yp = nbt_tmp_path("run_y.safetensors");
    nb_model *m = small_mlp(w);
    CHECK(m);
    enum { N = 300 }; /* more than one batch of 256 */
    static float x[N * 6];
    CHECK_OK(save_input(xp, "input", N, x));
    int rc = shell(NABLA "run --weights '%s' --input '%s' --output '%s' --threads 1", NABLA_BIN, w, xp, yp);
    if (rc != 0) nb_model_free(m);
    CHECK_MSG(rc == 0, "nabla run exited %d: %s", rc, nbt_err);
    CHECK(strstr(nbt_out, "output [300, 3] written to"));

    nb_ctx *ctx = nb_ctx_new(0);
    nb_model_train(m, 0);
    nb_tensor *y = nb_model_forward(m, ctx, nb_tensor_from(ctx, NB_SHAPE(N, 6), x));
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_load(yp, &f);
    const nb_st_tensor *t = s ? NULL : nb_safetensors_find(f, "output");
    int ok = y && t && t->ndim == 2 && t->shape[0] == N && t->shape[1] == 3 &&
             !strcmp(nb_safetensors_meta(f, "model"), "mlp") && !strcmp(nb_safetensors_meta(f, "config"), "6,5,3");
    /* Batches of 256 and 44 against one batch of 300: the same sums per row. */
    for (int64_t i = 0; ok && i < N * 3; i++) ok = fabsf(t->data[i] - y->data[i]) <= 1e-6f * (1 + fabsf(y->data[i]));
    nb_safetensors_free(f);
    nb_ctx_free(ctx);
    nb_model_free(m);
    CHECK_OK(s);
    CHECK(ok);

    /* --dtype bf16 writes BF16. */
    rc = shell(NABLA "run --weights '%s' --input '%s' --output '%s' --dtype bf16", NABLA_BIN, w, xp, yp);
    CHECK_MSG(rc == 0, "nabla run --dtype bf16 exited %d: %s", rc, nbt_err);
    CHECK_OK(nb_safetensors_load_header(yp, &f));
    ok = f->n == 1 && !strcmp(f->tensors[0].dtype, "BF16");
    nb_safetensors_free(f);
    CHECK(ok);
}

TEST(cli_run_model_from_flag_or_metadata)
{
    const char *w = nbt_tmp_path("run_w2.safetensors"), *xp = nbt_tmp_path("run_x2.safetensors"),
               *yp = nbt_tmp_path("run_y2.safetensors"), *bare = nbt_tmp_path("run_bare.safetensors");
    nb_model *m = small_mlp(w);
    CHECK(m);
    static float x[4 * 6];
    nb_status s = save_input(xp, "input", 4, x);
    /* The same weights without metadata, as a torch state_dict would come. */
    nb_st_entry e[8];
    for (int i = 0; i < m->nparams && i < 8; i++)
        e[i] = (nb_st_entry){m->params[i].name, m->params[i].t.ndim, m->params[i].t.shape, m->params[i].t.data};
    if (!s) s = nb_safetensors_save(bare, e, m->nparams, NB_ST_F32, NULL, 0);
    nb_model_free(m);
    CHECK_OK(s);

    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s'", NABLA_BIN, bare, xp, yp) == 1);
    CHECK(strstr(nbt_err, "the metadata names no model; give --model NAME"));
    CHECK(shell(NABLA "run --model mlp --config 6,5,3 --weights '%s' --input '%s' --output '%s'", NABLA_BIN, bare,
                xp, yp) == 0);
    /* The default configuration does not fit these weights: a clear error. */
    CHECK(shell(NABLA "run --model mlp --weights '%s' --input '%s' --output '%s'", NABLA_BIN, bare, xp, yp) == 1);
    CHECK_MSG(strstr(nbt_err, "has shape [5, 6], the model needs [256, 784]"), "%s", nbt_err);
    CHECK(shell(NABLA "run --model cnn --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, xp, yp) == 1);
    CHECK(strstr(nbt_err, "holds a 'mlp' model, not 'cnn'"));
    CHECK(shell(NABLA "run --model mlp --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, xp, yp) == 0);
}

TEST(cli_run_errors)
{
    const char *w = nbt_tmp_path("run_w3.safetensors"), *xp = nbt_tmp_path("run_x3.safetensors"),
               *yp = nbt_tmp_path("run_y3.safetensors"), *wrong = nbt_tmp_path("run_wrong.safetensors");
    nb_model *m = small_mlp(w);
    CHECK(m);
    nb_model_free(m);
    static float x[2 * 6];
    CHECK_OK(save_input(xp, "input", 2, x));
    CHECK_OK(save_input(wrong, "images", 2, x));

    CHECK(shell(NABLA "run --help", NABLA_BIN) == 0 && strstr(nbt_out, "usage: nabla run"));
    CHECK(shell(NABLA "help run", NABLA_BIN) == 0 && strstr(nbt_out, "--weights"));
    CHECK(shell(NABLA "run --weights '%s' --input '%s'", NABLA_BIN, w, xp) == 2);
    CHECK(strstr(nbt_err, "(missing --output)") && strstr(nbt_err, "Try 'nabla run --help'"));
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s' --dtype f8", NABLA_BIN, w, xp, yp) == 2);
    CHECK(strstr(nbt_err, "'f8' is not f32, f16 or bf16"));
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s' --batch 0", NABLA_BIN, w, xp, yp) == 2);
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s' extra", NABLA_BIN, w, xp, yp) == 2);

    CHECK(shell(NABLA "run --weights '%s/none' --input '%s' --output '%s'", NABLA_BIN, nbt_tmpdir(), xp, yp) == 1);
    CHECK(strstr(nbt_err, "No such file or directory"));
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, wrong, yp) == 1);
    CHECK_MSG(strstr(nbt_err, "has no tensor \"input\" (it has 1 other tensor)"), "%s", nbt_err);
    /* Inputs of the wrong width: the op's shape error, naming the rows. */
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, w, yp) == 1);
    CHECK(shell(NABLA "run --model mlp --config 5,3 --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, xp,
                yp) == 1);
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s/no/dir/y.safetensors'", NABLA_BIN, w, xp,
                nbt_tmpdir()) == 1);
    CHECK(strstr(nbt_err, "directory is missing"));
    /* A bad weights file: the reader's own message. */
    FILE *fp = fopen(nbt_tmp_path("run_bad.safetensors"), "wb");
    CHECK(fp);
    static const char bad[] = "\x07\x00\x00\x00\x00\x00\x00\x00{\"a\":1}";
    fwrite(bad, 1, sizeof bad - 1, fp);
    fclose(fp);
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s'", NABLA_BIN, nbt_tmp_path("run_bad.safetensors"),
                xp, yp) == 1);
    CHECK_MSG(strstr(nbt_err, "its entry is not an object"), "%s", nbt_err);
}

TEST(cli_run_input_of_the_wrong_shape)
{
    const char *w = nbt_tmp_path("run_w4.safetensors"), *xp = nbt_tmp_path("run_x4.safetensors"),
               *yp = nbt_tmp_path("run_y4.safetensors");
    nb_model *m = small_mlp(w);
    CHECK(m);
    nb_model_free(m);
    const float x[8] = {0};
    const int64_t shape[2] = {2, 4};
    nb_st_entry e = {"input", 2, shape, x};
    CHECK_OK(nb_safetensors_save(xp, &e, 1, NB_ST_F32, NULL, 0));
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, xp, yp) == 1);
    CHECK_MSG(strstr(nbt_err, "forward pass on input rows 0..1: "), "%s", nbt_err);
    const int64_t empty[2] = {0, 6};
    e = (nb_st_entry){"input", 2, empty, NULL};
    CHECK_OK(nb_safetensors_save(xp, &e, 1, NB_ST_F32, NULL, 0));
    CHECK(shell(NABLA "run --weights '%s' --input '%s' --output '%s'", NABLA_BIN, w, xp, yp) == 1);
    CHECK(strstr(nbt_err, "needs a first (batch) dimension of at least 1"));
}

TEST(cli_inspect_prints_metadata_and_statistics)
{
    const char *p = nbt_tmp_path("inspect.safetensors");
    const float a[6] = {1, -2, 3, NAN, INFINITY, 4};
    const float b[1] = {0.5f};
    const int64_t sa[2] = {2, 3}, sb[1] = {1}, sc[2] = {0, 4};
    nb_st_entry e[3] = {{"layer.weight", 2, sa, a}, {"odd\x01name", 1, sb, b}, {"empty", 2, sc, NULL}};
    const char *meta[] = {"model", "mlp", "note", "line\nbreak"};
    CHECK_OK(nb_safetensors_save(p, e, 3, NB_ST_F32, meta, 2));
    int rc = shell(NABLA "inspect '%s'", NABLA_BIN, p);
    CHECK_MSG(rc == 0, "nabla inspect exited %d: %s", rc, nbt_err);
    CHECK_MSG(strstr(nbt_out, "3 tensors, 7 values"), "%s", nbt_out);
    CHECK(strstr(nbt_out, "metadata:\n  model  mlp\n  note   line\\x0abreak\n"));
    /* min -2, max 4, mean 1.5 over the four finite values; 2 non-finite. */
    char *line = strstr(nbt_out, "layer.weight");
    CHECK_MSG(line && strstr(line, "F32   [2, 3]") && strstr(line, "-2            4          1.5          2\n"),
              "%s", nbt_out);
    CHECK(strstr(nbt_out, "odd\\x01name"));
    line = strstr(nbt_out, "empty");
    CHECK(line && strstr(line, "[0, 4]                        -            -            -          0"));

    CHECK(shell(NABLA "inspect", NABLA_BIN) == 2 && strstr(nbt_err, "give the FILE to inspect"));
    CHECK(shell(NABLA "inspect --help", NABLA_BIN) == 0 && strstr(nbt_out, "usage: nabla inspect FILE"));
    CHECK(shell(NABLA "inspect '%s' '%s'", NABLA_BIN, p, p) == 2);
    CHECK(shell(NABLA "inspect '%s/none'", NABLA_BIN, nbt_tmpdir()) == 1 && strstr(nbt_err, "cannot open"));
    CHECK(shell(NABLA "inspect tests/fixtures/golden.txt", NABLA_BIN) == 1);
    CHECK_MSG(strstr(nbt_err, "safetensors: ") && strstr(nbt_err, "golden.txt"), "%s", nbt_err);
}

/* A file of a few bytes whose metadata asks for a huge model: refused
 * before anything of that size is allocated (found by fuzz_model). */
TEST(model_file_config_cannot_outgrow_the_file)
{
    static const struct { const char *meta; nb_status status; const char *want; } cases[] = {
        {"\"model\":\"mlp\",\"config\":\"784,16777216,10\"", NB_ERR_FORMAT,
         "model 'mlp' with config \"784,16777216,10\" has more parameters than the file holds"},
        {"\"model\":\"mlp\",\"config\":\"16777216,16777216,16777216\"", NB_ERR_FORMAT, "than the file holds"},
        {"\"model\":\"cnn\",\"config\":\"1,16777216,16777216,16,16,8,10\"", NB_ERR_ARG,
         "features after the convolutions"},
    };
    const char *p = nbt_tmp_path("huge.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hdr[256];
        int n = snprintf(hdr, sizeof hdr, "{\"__metadata__\":{%s},\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
                         "\"data_offsets\":[0,4]}}", cases[i].meta);
        unsigned char prefix[8] = {(unsigned char)n}, zeros[4] = {0};
        FILE *fp = fopen(p, "wb");
        CHECK(fp);
        fwrite(prefix, 1, 8, fp);
        fwrite(hdr, 1, (size_t)n, fp);
        fwrite(zeros, 1, 4, fp);
        fclose(fp);
        nb_model *m = (nb_model *)1;
        CHECK_ERR(nb_model_load_file(p, &m), cases[i].status, cases[i].want);
        CHECK(m == NULL);
    }
}

TEST(interop_pytorch_round_trip)
{
    /* Optional by design: the reference framework is not a build dependency. */
    if (shell("/usr/bin/python3 -c 'import torch'") != 0)
        SKIP("python3-torch is not installed (scripts/install-deps.sh --peer): no PyTorch round trip");
    int rc = shell("/usr/bin/python3 scripts/interop_check.py --nabla '%s/nabla'", NABLA_BIN);
    CHECK_MSG(rc == 0 && strstr(nbt_out, "interop: all checks passed"), "scripts/interop_check.py exited %d:\n%s%s",
              rc, nbt_out, nbt_err);
}
