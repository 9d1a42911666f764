/* The `nabla` command line, run as a program: exit codes, files it writes,
 * what it prints; and the PNG writer/reader behind `nabla predict`. */
#include "test.h"
#include "nabla/image.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

/* One short training run shared by the tests that need a weights file:
 * 2,000 images, one epoch. Returns 1 when it succeeded. */
static int trained_ok = -1;
static char train_stdout[4096]; /* the first 4095 bytes */
static int ensure_trained(void)
{
    if (trained_ok < 0) {
        int rc = nbt_nabla("train --limit-train 2000 --epochs 1 --threads 2 --seed 1 --out '%s' --metrics '%s'",
                       nbt_tmp_path("mlp.safetensors"), nbt_tmp_path("mlp.jsonl"));
        trained_ok = rc == 0;
        memcpy(train_stdout, nbt_out, sizeof train_stdout - 1);
        if (!trained_ok) fprintf(stderr, "  nabla train exited %d: %s\n", rc, nbt_err);
    }
    return trained_ok;
}

TEST(cli_help_exits_0_and_lists_commands)
{
    CHECK(nbt_nabla("--help") == 0);
    CHECK(strstr(nbt_out, "train") && strstr(nbt_out, "eval") && strstr(nbt_out, "predict"));
    CHECK(nbt_nabla("train --help") == 0);
    CHECK(strstr(nbt_out, "--epochs") && strstr(nbt_out, "--metrics") && strstr(nbt_out, "--limit-train"));
    CHECK(nbt_nabla("eval --help") == 0);
    CHECK(strstr(nbt_out, "--weights"));
    CHECK(nbt_nabla("help predict") == 0);
    CHECK(strstr(nbt_out, "--count"));
    CHECK(nbt_nabla("--version") == 0);
    CHECK(strstr(nbt_out, NB_VERSION));
}

TEST(cli_usage_errors_exit_2)
{
    CHECK(nbt_nabla("%s", "") == 2);
    CHECK(nbt_nabla("frobnicate") == 2);
    CHECK(strstr(nbt_err, "unknown command") && strstr(nbt_err, "--help"));
    CHECK(nbt_nabla("train --epochs abc") == 2);
    CHECK(strstr(nbt_err, "--epochs") && strstr(nbt_err, "abc"));
    CHECK(nbt_nabla("train --epochs 0") == 2);
    CHECK(nbt_nabla("train --lr -1") == 2);
    CHECK(nbt_nabla("train --lr 1x") == 2);
    CHECK(nbt_nabla("train --batch") == 2);
    CHECK(strstr(nbt_err, "needs a value"));
    CHECK(nbt_nabla("train --no-such-option 3") == 2);
    CHECK(strstr(nbt_err, "no-such-option"));
    CHECK(nbt_nabla("train --model no-such-model") == 2);
    CHECK(nbt_nabla("train --optim nadam") == 2);
    CHECK(strstr(nbt_err, "nadam") && strstr(nbt_err, "adamw"));
    CHECK(nbt_nabla("train --config 784,x,10") == 2);
    CHECK(strstr(nbt_err, "784,x,10"));
    CHECK(nbt_nabla("eval") == 2);
    CHECK(strstr(nbt_err, "--weights"));
    CHECK(nbt_nabla("predict --weights x --count 0") == 2);
}

/* The optimizer follows the model (adam for the CNN) and --optim, with
 * the optimizer's own default learning rate unless --lr is given. */
TEST(cli_train_optimizer_choice)
{
    CHECK(nbt_nabla("train --model cnn --limit-train 256 --epochs 1 --threads 2 --schedule constant") == 0);
    CHECK(strstr(nbt_out, "adam (Adam) lr 0.001 (constant)"));
    CHECK(nbt_nabla("train --optim rmsprop --momentum 0.5 --limit-train 256 --epochs 1 --threads 2") == 0);
    CHECK(strstr(nbt_out, "rmsprop (RMSprop) lr 0.001 (cosine) momentum 0.5"));
    CHECK(nbt_nabla("train --optim adamw --lr 0.01 --limit-train 256 --epochs 1 --threads 2") == 0);
    CHECK(strstr(nbt_out, "adamw (AdamW) lr 0.01 (cosine) weight decay 0.01"));
}

/* --schedule takes the library's specs and steps once per epoch;
 * clipping runs before each step. */
TEST(cli_train_schedule_and_clipping)
{
    CHECK(nbt_nabla("train --schedule step:1:0.5 --lr 0.08 --epochs 3 --limit-train 256 --threads 2 "
                "--clip-grad-norm 1 --clip-grad-value 0.5") == 0);
    CHECK(strstr(nbt_out, "epoch 1/3  lr 0.08 ") && strstr(nbt_out, "epoch 2/3  lr 0.04 ") &&
          strstr(nbt_out, "epoch 3/3  lr 0.02 "));
    CHECK(nbt_nabla("train --schedule warmup:2 --lr 0.09 --epochs 3 --limit-train 256 --threads 2") == 0);
    CHECK(strstr(nbt_out, "epoch 1/3  lr 0.03 ") && strstr(nbt_out, "epoch 2/3  lr 0.06 ") &&
          strstr(nbt_out, "epoch 3/3  lr 0.09 "));
    CHECK(nbt_nabla("train --schedule step:0") == 2);
    CHECK(strstr(nbt_err, "--schedule") && strstr(nbt_err, "step_size"));
    CHECK(nbt_nabla("train --schedule warmup:3+plateau") == 2);
    CHECK(nbt_nabla("train --clip-grad-norm -1") == 2);
}

/* Parse one metrics line: exactly the six fields, each a number. */
static int metrics_line_ok(const char *line, double *test_acc)
{
    static const char *const keys[] = {"epoch", "train_loss", "test_loss", "test_acc", "img_per_s", "seconds"};
    const char *p = line;
    if (*p++ != '{') return 0;
    for (int k = 0; k < 6; k++) {
        while (*p == ' ') p++;
        char want[32];
        snprintf(want, sizeof want, "\"%s\":", keys[k]);
        if (strncmp(p, want, strlen(want))) return 0;
        p += strlen(want);
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || v < 0) return 0;
        if (k == 3) *test_acc = v;
        p = end;
        while (*p == ' ') p++;
        if (*p != (k == 5 ? '}' : ',')) return 0;
        p++;
    }
    return *p == '\n' || *p == 0;
}

TEST(cli_train_writes_weights_and_metrics)
{
    CHECK(ensure_trained());
    CHECK(strstr(train_stdout, "epoch 1/1") && strstr(train_stdout, "test_acc") && strstr(train_stdout, "img/s"));
    char *m = NULL;
    size_t len = 0;
    CHECK(nbt_read_file(nbt_tmp_path("mlp.jsonl"), &m, &len));
    double acc = -1;
    int ok = metrics_line_ok(m, &acc), lines = 0;
    for (size_t i = 0; i < len; i++) lines += m[i] == '\n';
    CHECK_MSG(ok && lines == 1, "metrics file: %s", m);
    free(m);
    CHECK_MSG(acc > 0.3 && acc <= 1, "test_acc %g after one epoch on 2,000 images (chance is 0.1)", acc);

    nb_model *model = NULL;
    CHECK_OK(nb_model_load_file(nbt_tmp_path("mlp.safetensors"), &model));
    int64_t nparam = 0;
    for (int i = 0; i < model->nparams; i++) nparam += nb_tensor_numel(&model->params[i].t);
    CHECK(!strcmp(model->name, "mlp") && model->nparams == 8);
    CHECK(nparam == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 100 + 100 + 100 * 10 + 10);
    nb_model_free(model);

    /* eval of the saved file reproduces the accuracy the run reported */
    CHECK(nbt_nabla("eval --weights '%s' --threads 2", nbt_tmp_path("mlp.safetensors")) == 0);
    const char *p = strstr(nbt_out, "test_acc ");
    CHECK_MSG(p, "eval printed: %s", nbt_out);
    CHECK_NEAR(atof(p + 9), acc, 0, 1e-4);
    CHECK(strstr(nbt_out, "test_loss"));
    CHECK(nbt_nabla("eval --weights '%s' --model mlp --threads 2", nbt_tmp_path("mlp.safetensors")) == 0);
}

TEST(cli_train_is_deterministic_for_a_seed)
{
    CHECK(ensure_trained());
    CHECK(nbt_nabla("train --limit-train 2000 --epochs 1 --threads 2 --seed 1 --quiet --out '%s'",
                nbt_tmp_path("again.safetensors")) == 0);
    CHECK(nbt_out[0] == 0); /* --quiet */
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    CHECK(nbt_read_file(nbt_tmp_path("mlp.safetensors"), &a, &la) &&
          nbt_read_file(nbt_tmp_path("again.safetensors"), &b, &lb));
    int same = la == lb && !memcmp(a, b, la);
    free(a);
    free(b);
    CHECK_MSG(same, "two runs with seed 1 and 2 threads gave different files");
}

TEST(cli_missing_dataset_exits_1_naming_the_package)
{
    CHECK(nbt_nabla("train --data /nonexistent --epochs 1") == 1);
    CHECK_MSG(strstr(nbt_err, "nabla: ") && strstr(nbt_err, "dataset-fashion-mnist"), "stderr: %s", nbt_err);
    CHECK(nbt_nabla("train --out /nonexistent/dir/m.safetensors") == 1);
    CHECK(strstr(nbt_err, "/nonexistent/dir"));
}

TEST(cli_eval_rejects_bad_weights_files)
{
    const char *bad = nbt_tmp_path("corrupt.safetensors");
    FILE *f = fopen(bad, "wb");
    CHECK(f);
    static const char junk[] = "\x40\x00\x00\x00\x00\x00\x00\x00{\"1.weight\": not json";
    CHECK(fwrite(junk, 1, sizeof junk - 1, f) == sizeof junk - 1);
    fclose(f);
    CHECK(nbt_nabla("eval --weights '%s'", bad) == 1);
    CHECK_MSG(!strncmp(nbt_err, "nabla: ", 7) && strstr(nbt_err, "corrupt.safetensors"), "stderr: %s", nbt_err);
    CHECK(nbt_nabla("eval --weights '%s'", nbt_tmp_path("absent.safetensors")) == 1);
    CHECK(nbt_nabla("predict --weights '%s'", bad) == 1);
    /* a good file of another model name is refused when --model is given */
    CHECK(ensure_trained());
    CHECK(nbt_nabla("eval --weights '%s' --model cnn", nbt_tmp_path("mlp.safetensors")) == 1);
}

static int count_tmp_leftovers(void)
{
    DIR *d = opendir(nbt_tmpdir());
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

TEST(cli_diverged_run_keeps_the_old_weights)
{
    CHECK(ensure_trained());
    const char *out = nbt_tmp_path("keep.safetensors");
    char *before = NULL, *after = NULL;
    size_t lb = 0, la = 0;
    CHECK(nbt_read_file(nbt_tmp_path("mlp.safetensors"), &before, &lb));
    FILE *f = fopen(out, "wb");
    CHECK(f && fwrite(before, 1, lb, f) == lb);
    fclose(f);
    int rc = nbt_nabla("train --limit-train 1000 --epochs 2 --lr 1e30 --threads 2 --out '%s' --metrics '%s'", out,
                   nbt_tmp_path("nan.jsonl"));
    CHECK_MSG(rc == 1, "exit %d, stderr %s", rc, nbt_err);
    CHECK_MSG(strstr(nbt_err, "diverged") || strstr(nbt_err, "non-finite"), "stderr: %s", nbt_err);
    CHECK(nbt_read_file(out, &after, &la));
    int same = la == lb && !memcmp(before, after, la);
    free(before);
    free(after);
    CHECK_MSG(same, "the --out file changed after a diverged run");
    CHECK(count_tmp_leftovers() == 0);
    nb_model *m = NULL;
    CHECK_OK(nb_model_load_file(out, &m));
    nb_model_free(m);
}

TEST(cli_predict_prints_labels_and_writes_png)
{
    CHECK(ensure_trained());
    const char *png = nbt_tmp_path("pred.png");
    CHECK(nbt_nabla("predict --weights '%s' --count 3 --out '%s' --threads 2", nbt_tmp_path("mlp.safetensors"), png) == 0);
    int n = 0;
    for (const char *p = nbt_out; (p = strstr(p, "predicted: ")); p++) n++;
    CHECK_MSG(n == 3, "stdout: %s", nbt_out);
    CHECK(strstr(nbt_out, "true: Ankle boot")); /* test image 0 */
    CHECK(strstr(nbt_out, "@"));                 /* the ASCII art */
    int w = 0, h = 0, gw = 0, gh = 0;
    uint8_t *px = NULL;
    CHECK_OK(nb_png_read_gray(png, &w, &h, &px));
    CHECK_OK(nb_image_grid_size(3, 28, 28, 3, 4, 2, &gw, &gh));
    CHECK(w == gw && h == gh);
    int bright = 0;
    for (int i = 0; i < w * h; i++) bright += px[i] > 200;
    free(px);
    CHECK(bright > 100); /* garments, not an empty frame */
    CHECK(count_tmp_leftovers() == 0);
}

TEST(png_grid_round_trip)
{
    /* two 2x3 images, scale 2, pad 1, 2 columns: (2*(3*2+1)+1) x (1*(2*2+1)+1) = 15 x 6 */
    float img[12] = {0, 0.5f, 1, 2, -1, NAN, 1, 1, 1, 0, 0, 0};
    int w = 0, h = 0;
    CHECK_OK(nb_image_grid_size(2, 2, 3, 2, 2, 1, &w, &h));
    CHECK(w == 15 && h == 6);
    uint8_t grid[15 * 6];
    CHECK_OK(nb_image_grid(img, 2, 2, 3, 2, 2, 1, 7, grid));
    CHECK(grid[0] == 7 && grid[15 * 5 + 14] == 7); /* border */
    CHECK(grid[1 * 15 + 1] == 0 && grid[1 * 15 + 3] == 128 && grid[2 * 15 + 6] == 255);
    CHECK(grid[3 * 15 + 1] == 255 && grid[3 * 15 + 3] == 0 && grid[4 * 15 + 5] == 0); /* clamped, NaN */
    CHECK(grid[1 * 15 + 8] == 255 && grid[4 * 15 + 13] == 0);                         /* second tile */
    CHECK(grid[1 * 15 + 7] == 7);                                                     /* gap */
    const char *path = nbt_tmp_path("grid.png");
    CHECK_OK(nb_png_write_gray(path, w, h, grid));
    uint8_t *back = NULL;
    int bw = 0, bh = 0;
    CHECK_OK(nb_png_read_gray(path, &bw, &bh, &back));
    CHECK(bw == w && bh == h && !memcmp(back, grid, sizeof grid));
    free(back);
    CHECK_ERR(nb_image_grid_size(0, 28, 28, 1, 1, 0, &w, &h), NB_ERR_ARG, "positive");
    CHECK_ERR(nb_image_grid_size(10000, 28, 28, 1, 4, 0, &w, &h), NB_ERR_ARG, "larger");
    CHECK_ERR(nb_png_write_gray(path, 0, 5, grid), NB_ERR_ARG, "size");
    CHECK_ERR(nb_png_write_gray("/nonexistent/dir/x.png", 2, 2, grid), NB_ERR_IO, "/nonexistent/dir/x.png");
    CHECK_ERR(nb_png_read_gray(nbt_tmp_path("none.png"), &bw, &bh, &back), NB_ERR_NOTFOUND, "none.png");
    FILE *f = fopen(nbt_tmp_path("fake.png"), "wb");
    CHECK(f);
    fputs("\x89PNG\r\n\x1a\nnot really", f);
    fclose(f);
    CHECK_ERR(nb_png_read_gray(nbt_tmp_path("fake.png"), &bw, &bh, &back), NB_ERR_FORMAT, "fake.png");
    CHECK(back == NULL);
}

/* Determinism and exact resume through the command line: two runs with the
 * same seed write the same bytes; a run stopped mid-epoch by --max-steps and
 * continued with --resume ends with the same weights too. */
TEST(cli_train_resume_is_exact_and_runs_repeat)
{
#define RUN "train --limit-train 600 --batch 50 --epochs 2 --threads 2 --seed 3 --schedule warmup:1+cosine --optim adamw"
    const char *a = nbt_tmp_path("det-a.safetensors"), *b = nbt_tmp_path("det-b.safetensors"),
               *r = nbt_tmp_path("det-r.safetensors"), *ck = nbt_tmp_path("det.ckpt");
    CHECK(nbt_nabla(RUN " --out '%s'", a) == 0);
    CHECK(nbt_nabla(RUN " --out '%s'", b) == 0);
    CHECK_MSG(nbt_same_files(a, b), "two runs with the same seed differ");
    char ms[4096]; /* nbt_tmp_path keeps 4 paths, all in use above */
    snprintf(ms, sizeof ms, "%s/det-ms.safetensors", nbt_tmpdir());
    CHECK(nbt_nabla(RUN " --checkpoint '%s' --checkpoint-every 4 --max-steps 17 --out '%s'", ck, ms) == 0);
    CHECK(strstr(nbt_out, "stopped after step 17 (--max-steps); weights in"));
    /* --out holds the weights of step 17, as the checkpoint does */
    nb_model *wm = NULL, *cm = NULL;
    CHECK_OK(nb_model_load_file(ms, &wm));
    CHECK_OK(nb_model_load_file(ck, &cm));
    CHECK(wm->numel == cm->numel && !memcmp(wm->data, cm->data, wm->numel * sizeof(float)));
    nb_model_free(wm);
    nb_model_free(cm);
    CHECK(nbt_nabla("train --resume '%s' --out '%s' --threads 2", ck, r) == 0);
    CHECK(strstr(nbt_out, "resuming from") && strstr(nbt_out, "epoch 2, step 17"));
    CHECK_MSG(nbt_same_files(a, r), "the resumed run differs from the uninterrupted one");
    /* the checkpoint is a weights file too */
    CHECK(nbt_nabla("eval --weights '%s'", ck) == 0);
    /* settings come from the checkpoint */
    CHECK(nbt_nabla("train --resume '%s' --lr 0.1", ck) == 2);
    CHECK(strstr(nbt_err, "--lr") && strstr(nbt_err, "--resume"));
    CHECK(nbt_nabla("train --resume '%s'", a) == 1); /* weights, not a checkpoint */
    CHECK(strstr(nbt_err, "not a nabla checkpoint"));
    CHECK(nbt_nabla("train --checkpoint-every 5") == 2);
#undef RUN
}

/* A diverging run stops, naming the step, and leaves the last good
 * checkpoint; --skip-nonfinite skips and counts the bad updates instead. */
TEST(cli_train_nonfinite_keeps_checkpoint_or_skips)
{
    const char *ck = nbt_tmp_path("nan.ckpt"), *copy = nbt_tmp_path("nan-copy.ckpt");
    CHECK(nbt_nabla("train --limit-train 200 --epochs 1 --threads 2 --checkpoint '%s'", ck) == 0);
    CHECK(nbt_nabla("train --limit-train 200 --epochs 1 --threads 2 --checkpoint '%s'", copy) == 0);
    CHECK(nbt_nabla("train --limit-train 1000 --epochs 1 --lr 1e30 --threads 2 --checkpoint '%s'", ck) == 1);
    CHECK_MSG(strstr(nbt_err, "diverged") && strstr(nbt_err, "step"), "stderr: %s", nbt_err);
    CHECK_MSG(nbt_same_files(ck, copy), "the checkpoint changed after a diverged run");
    CHECK(nbt_nabla("train --limit-train 1000 --epochs 1 --lr 1e30 --threads 2 --skip-nonfinite") == 0);
    CHECK_MSG(strstr(nbt_out, "skipped"), "stdout: %s", nbt_out);
}
