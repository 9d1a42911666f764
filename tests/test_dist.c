/* Data-parallel training over MPI (nabla/dist.h, nabla train --distributed),
 * run as real mpirun jobs of 2 ranks on this machine (--oversubscribe, one
 * thread each). Skipped, visibly, when nabla is built without MPI or mpirun
 * is missing (scripts/install-deps.sh installs Open MPI). mpirun refuses to
 * run as root unless told, so the jobs get OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM). */
#include "test.h"
#include "../src/ops/batchnorm.h" /* the synchronised BatchNorm hook */
#include "../src/kernels/simd.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>

/* Skip the running test unless MPI jobs can run. */
#define NEED_MPI()                                                                                       \
    do {                                                                                                 \
        if (!nb_dist_available()) SKIP("nabla built without MPI (install libopenmpi-dev; make MPI=1)"); \
        if (nbt_shell(NULL, 0, NULL, 0, "command -v mpirun") != 0) SKIP("mpirun not found (openmpi-bin)"); \
    } while (0)

/* Under AddressSanitizer (make asan) the leak check stays off in the jobs:
 * Open MPI's plugins keep memory until exit, which LeakSanitizer reports. */
#define MPIRUN                                                                                      \
    "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 OMPI_ALLOW_RUN_AS_ROOT=1 "          \
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2"

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    /* grouped, so that nbt_shell's redirections capture every command */
    return nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "{ %s\n}", cmd);
}

TEST(dist_share_splits_evenly)
{
    int64_t b, c, next = 0;
    for (int r = 0; r < 3; r++) {
        nb_dist_share(10, r, 3, &b, &c);
        CHECK(b == next && c == (r == 0 ? 4 : 3));
        next = b + c;
    }
    nb_dist_share(1, 1, 2, &b, &c);
    CHECK(c == 0);
    nb_dist_share(5, 2, 2, &b, &c); /* no such rank */
    CHECK(b == 0 && c == 0);
}

TEST(dist_without_a_job)
{
    if (nb_dist_available()) {
        CHECK(nb_dist_rank(NULL) == 0 && nb_dist_size(NULL) == 1);
        CHECK_ERR(nb_dist_allreduce_grads(NULL, NULL, 1), NB_ERR_ARG, "NULL");
    } else {
        nb_dist *d = (nb_dist *)1;
        CHECK_ERR(nb_dist_init(&d), NB_ERR_STATE, "built without MPI");
        CHECK(d == NULL);
    }
}

/* ---- the synchronised BatchNorm hook in one process: two threads as the
 * two ranks of a job, whose all-reduce is a barrier ------------------------ */

#define SB_N 8   /* the whole batch; each "rank" takes 4 */
#define SB_C 3

typedef struct {
    pthread_barrier_t bar;
    const double *part[2];
} fake_job;

typedef struct {
    fake_job *job;
    int rank;
} fake_rank;

/* nb__bn_sync.sum: v becomes part 0 + part 1 on both threads. */
static nb_status fake_sum(void *user, double *v, int64_t n, int phase)
{
    (void)phase;
    fake_rank *r = user;
    double *sum = malloc((size_t)n * sizeof *sum);
    r->job->part[r->rank] = v;
    pthread_barrier_wait(&r->job->bar);
    for (int64_t i = 0; i < n && sum; i++) sum[i] = r->job->part[0][i] + r->job->part[1][i];
    pthread_barrier_wait(&r->job->bar); /* both have read before either writes */
    if (sum) memcpy(v, sum, (size_t)n * sizeof *sum);
    free(sum);
    return sum ? NB_OK : NB_ERR_NOMEM;
}

/* One BatchNorm in training mode and its backward for the loss sum(y * r):
 * kind 0 an (N, C) input, 1 (N, C, 4, 5), 2 the fused BatchNorm, ReLU and
 * 2x2 max-pool of (N, C, 4, 4), 3 the same after a 3x3 convolution (padding
 * 1) of (N, 1, 4, 4) images, fused too (its weight gradient in dcw, no dx).
 * n rows of x (and of r, by output rows) from row `first`; results to y,
 * dx, dw, db (rows from `first` too), rm, rv. */
typedef struct {
    int kind, n, first;
    const float *x, *r;
    float *y, *dx, dw[SB_C], db[SB_C], rm[SB_C], rv[SB_C], dcw[SB_C * 9];
    const nb__bn_sync *hook;
    nb_status status;
} sb_run;

static void *run_bn(void *arg)
{
    sb_run *a = arg;
    const nb__bn_sync *old = nb__bn_set_sync(a->hook);
    const int64_t in_row = a->kind == 0 ? SB_C : a->kind == 3 ? 16 : SB_C * (a->kind == 1 ? 20 : 16);
    const int64_t out_row = a->kind >= 2 ? SB_C * 4 : in_row;
    int64_t shape[4] = {a->n, a->kind == 3 ? 1 : SB_C, 4, a->kind == 1 ? 5 : 4};
    const float wb[2][SB_C] = {{1.5f, 0.5f, -1.0f}, {0.1f, -0.2f, 0.3f}};
    nb_ctx *ctx = nb_ctx_new(1);
    nb_tensor *x = nb_requires_grad(nb_tensor_from(ctx, a->kind ? 4 : 2, shape, a->x + a->first * in_row), a->kind != 3);
    float cwv[SB_C * 9];
    for (int k = 0; k < SB_C * 9; k++) cwv[k] = 0.3f * (float)(k % 5) - 0.5f;
    nb_tensor *cw = nb_requires_grad(nb_tensor_from(ctx, 4, (int64_t[]){SB_C, 1, 3, 3}, cwv), 1);
    const nb_conv2d_opts co = {{1, 1}, {1, 1}, {1, 1}, 1};
    nb_tensor *w = nb_requires_grad(nb_tensor_from(ctx, 1, (int64_t[]){SB_C}, wb[0]), 1);
    nb_tensor *b = nb_requires_grad(nb_tensor_from(ctx, 1, (int64_t[]){SB_C}, wb[1]), 1);
    for (int c = 0; c < SB_C; c++) a->rm[c] = 0, a->rv[c] = 1;
    nb_tensor *y;
    if (a->kind == 3) {
        nb_set_grad_enabled(ctx, 0);
        nb_tensor *y1 = nb_conv2d(ctx, x, cw, NULL, &co);
        nb_set_grad_enabled(ctx, 1);
        y = nb__conv_batch_norm_relu_max_pool(ctx, x, cw, NULL, &co, y1, w, b, a->rm, a->rv, 1, 0.1f, 1e-5f);
    } else {
        y = a->kind == 2 ? nb__batch_norm_relu_max_pool(ctx, x, w, b, a->rm, a->rv, 1, 0.1f, 1e-5f)
                         : nb_batch_norm(ctx, x, w, b, a->rm, a->rv, 1, 0.1f, 1e-5f);
    }
    nb_tensor *r = y ? nb_tensor_from(ctx, y->ndim, y->shape, a->r + a->first * out_row) : NULL;
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, y, r), NULL, 0, 0);
    a->status = loss ? nb_backward(ctx, loss) : (nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_STATE);
    if (!a->status) {
        memcpy(a->y + a->first * out_row, y->data, (size_t)(a->n * out_row) * sizeof(float));
        if (a->kind == 3) memcpy(a->dcw, cw->grad, sizeof a->dcw);
        else memcpy(a->dx + a->first * in_row, x->grad, (size_t)(a->n * in_row) * sizeof(float));
        memcpy(a->dw, w->grad, sizeof a->dw);
        memcpy(a->db, b->grad, sizeof a->db);
    }
    nb_ctx_free(ctx);
    nb__bn_set_sync(old);
    return NULL;
}

/* Largest |a - b| relative to the largest |b|. */
static double rel_diff(const float *a, const float *b, int64_t n)
{
    double big = 0, diff = 0;
    for (int64_t i = 0; i < n; i++) big = fmax(big, fabs(b[i])), diff = fmax(diff, fabs(a[i] - b[i]));
    return big > 0 ? diff / big : diff;
}

/* Two halves, each normalised with the statistics of the whole batch through
 * the hook, give the whole batch's output, input gradient and running
 * statistics; their affine gradients add up to the whole batch's. Without
 * MPI: the hook that nb_dist_set_sync_batchnorm installs, in every layout. */
TEST(dist_sync_batchnorm_hook_equals_whole_batch)
{
    enum { MAXROW = SB_C * 20 };
    float x[SB_N * MAXROW], r[SB_N * MAXROW];
    nb_rng g;
    nb_rng_seed(&g, 11);
    for (int i = 0; i < SB_N * MAXROW; i++) x[i] = 3.0f + 2.0f * nb_rng_normal(&g), r[i] = nb_rng_normal(&g);
    for (int kind = 0; kind < 4; kind++) {
        if (kind == 3 && !nb__cpu_avx512()) continue; /* the fused conv needs its kernels */
        float y1[SB_N * MAXROW], dx1[SB_N * MAXROW], y2[SB_N * MAXROW], dx2[SB_N * MAXROW];
        sb_run whole = {kind, SB_N, 0, x, r, y1, dx1, {0}, {0}, {0}, {0}, {0}, NULL, NB_OK};
        run_bn(&whole);
        CHECK_MSG(whole.status == NB_OK, "kind %d: %s", kind, nb_last_error());
        fake_job job;
        pthread_barrier_init(&job.bar, NULL, 2);
        fake_rank ranks[2] = {{&job, 0}, {&job, 1}};
        nb__bn_sync hooks[2] = {{fake_sum, &ranks[0]}, {fake_sum, &ranks[1]}};
        sb_run half[2];
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            half[k] = (sb_run){kind, SB_N / 2, k * SB_N / 2, x, r, y2, dx2, {0}, {0}, {0}, {0}, {0}, &hooks[k], NB_OK};
            pthread_create(&th[k], NULL, run_bn, &half[k]);
        }
        for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
        pthread_barrier_destroy(&job.bar);
        CHECK_MSG(half[0].status == NB_OK && half[1].status == NB_OK, "kind %d: a half failed", kind);
        const int64_t in_n = kind == 3 ? 0 : SB_N * (kind == 0 ? SB_C : SB_C * (kind == 1 ? 20 : 16));
        const int64_t out_n = kind >= 2 ? SB_N * SB_C * 4 : in_n;
        float dw[SB_C], db[SB_C], dcw[SB_C * 9];
        for (int c = 0; c < SB_C; c++) dw[c] = half[0].dw[c] + half[1].dw[c], db[c] = half[0].db[c] + half[1].db[c];
        for (int k = 0; k < SB_C * 9; k++) dcw[k] = half[0].dcw[k] + half[1].dcw[k];
        double worst = fmax(rel_diff(y2, y1, out_n), rel_diff(dx2, dx1, in_n));
        if (kind == 3) worst = fmax(worst, rel_diff(dcw, whole.dcw, SB_C * 9));
        worst = fmax(worst, fmax(rel_diff(dw, whole.dw, SB_C), rel_diff(db, whole.db, SB_C)));
        for (int k = 0; k < 2; k++)
            worst = fmax(worst, fmax(rel_diff(half[k].rm, whole.rm, SB_C), rel_diff(half[k].rv, whole.rv, SB_C)));
        CHECK_MSG(worst <= 1e-5, "kind %d: relative difference %g from the whole batch", kind, worst);
        /* and without the hook each half has statistics of its own */
        half[0].hook = NULL;
        run_bn(&half[0]);
        CHECK_MSG(rel_diff(half[0].rm, whole.rm, SB_C) > 1e-3, "kind %d: the halves' statistics agree anyway", kind);
    }
}

/* The value of key on line `line` (from 0) of a metrics file, or NAN. */
static double metric(const char *path, int line, const char *key)
{
    FILE *f = fopen(path, "r");
    char buf[512], pat[64];
    double v = NAN;
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    for (int i = 0; f && fgets(buf, sizeof buf, f); i++) {
        char *p = strstr(buf, pat);
        if (i == line && p) v = strtod(p + strlen(pat), NULL);
    }
    if (f) fclose(f);
    return v;
}

/* How far apart the tensors of two safetensors files are: the largest
 * difference of a tensor relative to its largest value, or to `floor` when
 * that is larger (0: equal), *bitwise 1 when every value has the same bits;
 * -1 when the files cannot be read or hold different tensors (names,
 * sizes). */
static double tensor_distance(const char *path_a, const char *path_b, double floor, int *bitwise)
{
    nb_safetensors *a = NULL, *b = NULL;
    if (nb_safetensors_load(path_a, &a) || nb_safetensors_load(path_b, &b)) {
        nb_safetensors_free(a);
        return -1;
    }
    double worst = a->n == b->n && a->n > 0 ? 0 : -1;
    *bitwise = worst == 0;
    for (int i = 0; worst >= 0 && i < a->n; i++) {
        const nb_st_tensor *x = &a->tensors[i], *y = nb_safetensors_find(b, x->name);
        if (!y || y->numel != x->numel) {
            worst = -1;
            break;
        }
        double big = 0, diff = 0;
        for (int64_t k = 0; k < x->numel; k++) {
            big = fmax(big, fabs(x->data[k]));
            diff = fmax(diff, fabs(x->data[k] - y->data[k]));
        }
        big = fmax(big, floor);
        worst = fmax(worst, big > 0 ? diff / big : diff);
        *bitwise = *bitwise && (!x->numel || !memcmp(x->data, y->data, (size_t)x->numel * sizeof(float)));
    }
    nb_safetensors_free(a);
    nb_safetensors_free(b);
    return worst;
}

/* Two ranks with 26 + 25 of each batch of 51 (unequal shares: the weighting
 * of nb_dist_allreduce_grads matters) take the same 20 steps as one process
 * with batches of 51: the weights agree within 1e-5 of each tensor's largest
 * value, and the loss falls. The 2-rank run stops after 13 steps and resumes
 * from its checkpoint on both ranks. Rank 0 alone prints. */
TEST(dist_two_ranks_match_one_process)
{
    NEED_MPI();
    const char *common = "train --limit-train 510 --batch 51 --epochs 2 --threads 1 --seed 7";
    int rc = sh("%s/nabla %s --out '%s' --metrics '%s'", nbt_build_dir(), common, nbt_tmp_path("one.safetensors"),
                nbt_tmp_path("one.jsonl"));
    CHECK_MSG(rc == 0, "one process exited %d: %s", rc, nbt_err);
    rc = sh(MPIRUN " %s/nabla %s --distributed --max-steps 13 --checkpoint '%s' --metrics '%s'", nbt_build_dir(),
            common, nbt_tmp_path("two.ckpt"), nbt_tmp_path("two.jsonl"));
    CHECK_MSG(rc == 0, "mpirun exited %d: %s", rc, nbt_err);
    rc = sh(MPIRUN " %s/nabla train --distributed --threads 1 --resume '%s' --out '%s' --metrics '%s'", nbt_build_dir(),
            nbt_tmp_path("two.ckpt"), nbt_tmp_path("two.safetensors"), nbt_tmp_path("two.jsonl"));
    CHECK_MSG(rc == 0, "mpirun --resume exited %d: %s", rc, nbt_err);
    char *first = strstr(nbt_out, "distributed over 2 ranks");
    CHECK_MSG(first && !strstr(first + 1, "distributed over 2 ranks"), "stdout: %s", nbt_out);
    CHECK_MSG(strstr(nbt_out, "(25-26 per rank)"), "stdout: %s", nbt_out);
    first = strstr(nbt_out, "epoch 2/2");
    CHECK_MSG(first && !strstr(first + 1, "epoch 2/2"), "only rank 0 prints; stdout: %s", nbt_out);

    int bitwise;
    double worst = tensor_distance(nbt_tmp_path("one.safetensors"), nbt_tmp_path("two.safetensors"), 0, &bitwise);
    CHECK_MSG(worst >= 0, "the two weight files hold different tensors");
    CHECK_MSG(worst <= 1e-5, "relative difference %g between 1 and 2 ranks", worst);

    double l1 = metric(nbt_tmp_path("two.jsonl"), 0, "train_loss"), l2 = metric(nbt_tmp_path("two.jsonl"), 1, "train_loss");
    CHECK_MSG(l2 < l1, "train loss %g then %g", l1, l2);
    CHECK_NEAR(l1, metric(nbt_tmp_path("one.jsonl"), 0, "train_loss"), 1e-4, 0);
    CHECK_NEAR(metric(nbt_tmp_path("two.jsonl"), 1, "test_acc"), metric(nbt_tmp_path("one.jsonl"), 1, "test_acc"), 0, 2e-4);
}

/* A script that starts a long 2-rank training in the background, each rank
 * writing its pid to pid.<rank>, and waits (at most 60 s) until it trains. */
static const char *start_job(const char *extra)
{
    static char script[2048];
    snprintf(script, sizeof script,
             "cd '%s' && rm -f pid.0 pid.1 && "
             "{ " MPIRUN " sh -c 'echo $$ > pid.$OMPI_COMM_WORLD_RANK; exec %s/nabla train --distributed --threads 1 "
             "--limit-train 20000 --epochs 100 %s' > job.out 2> job.err & }; job=$!; "
             "i=0; until [ -s pid.1 ] && grep -q '^distributed over' job.out; do "
             "i=$((i+1)); [ $i -gt 600 ] && { echo 'the job did not start'; kill $job; exit 3; }; sleep 0.1; done; ",
             nbt_tmpdir(), nbt_build_dir(), extra);
    return script;
}

/* Start a job with extra options, send rank 1 `signal` mid-training and
 * wait up to 60 s for rank 0 to end; then resume rank 1 (if stopped), wait
 * for mpirun and print "mpirun exit N" with the job's stderr on stderr.
 * Returns the script's status: 0 unless the job did not start (3) or rank 0
 * outlived the 60 s (4). */
static int signal_rank1(const char *signal, const char *extra)
{
    return sh("%s"
              "sleep 0.5; kill -%s $(cat pid.1); "
              "i=0; while kill -0 $(cat pid.0) 2>/dev/null; do "
              "i=$((i+1)); [ $i -gt 600 ] && { echo 'rank 0 still runs after 60 s'; kill -9 $(cat pid.1) 2>/dev/null; "
              "kill $job; exit 4; }; sleep 0.1; done; "
              "kill -CONT $(cat pid.1) 2>/dev/null; wait $job; echo \"mpirun exit $?\"; cat job.err >&2",
              start_job(extra), signal);
}

/* Kill -9 rank 1 mid-training: rank 0 must be gone and mpirun must exit
 * non-zero within 60 seconds (mpirun's own abort of the job). */
TEST(dist_killed_rank_stops_the_job)
{
    NEED_MPI();
    int rc = signal_rank1("9", "");
    CHECK_MSG(rc == 0, "exit %d: %s %s", rc, nbt_out, nbt_err);
    CHECK_MSG(strstr(nbt_out, "mpirun exit ") && !strstr(nbt_out, "mpirun exit 0"), "stdout: %s stderr: %s", nbt_out,
              nbt_err);
    CHECK_MSG(strstr(nbt_err, "signal 9"), "stderr: %s", nbt_err);
}

/* A rank that fails on its own (its data missing) stops the other, which
 * waits in a collective for it: the job exits 1, naming the problem. */
TEST(dist_failed_rank_stops_the_job)
{
    NEED_MPI();
    int rc = sh("cd '%s' && " MPIRUN " sh -c 'if [ $OMPI_COMM_WORLD_RANK = 1 ]; then export NABLA_FASHION_MNIST=%s/none; fi; "
                "exec %s/nabla train --distributed --threads 1 --limit-train 1000 --epochs 1'",
                nbt_tmpdir(), nbt_tmpdir(), nbt_build_dir());
    CHECK_MSG(rc != 0, "mpirun exited 0: %s", nbt_err);
    CHECK_MSG(strstr(nbt_err, "not found") && strstr(nbt_err, "rank 1 of 2 failed"), "stderr: %s", nbt_err);
}

/* Every rank sees a non-finite loss together and stops cleanly (exit 1,
 * no abort), or with --skip-nonfinite all skip the same updates. */
TEST(dist_nonfinite_seen_by_all_ranks)
{
    NEED_MPI();
    const char *run = MPIRUN " %s/nabla train --distributed --threads 1 --limit-train 256 --epochs 1 --lr 1e30 %s";
    int rc = sh(run, nbt_build_dir(), "");
    CHECK_MSG(rc == 1, "mpirun exited %d: %s", rc, nbt_err);
    CHECK_MSG(strstr(nbt_err, "training diverged") && !strstr(nbt_err, "stopping every rank"), "stderr: %s", nbt_err);
    rc = sh(run, nbt_build_dir(), "--skip-nonfinite");
    CHECK_MSG(rc == 0, "mpirun exited %d: %s", rc, nbt_err);
    CHECK_MSG(strstr(nbt_out, "skipped"), "stdout: %s", nbt_out);
}

/* SIGSTOP rank 1 mid-training (alive but stuck): rank 0 gives up waiting
 * for it after --dist-timeout 5 s, saying so, and ends the job: mpirun exits
 * non-zero within 60 seconds. */
TEST(dist_hung_rank_times_out)
{
    NEED_MPI();
    int rc = signal_rank1("STOP", "--dist-timeout 5");
    CHECK_MSG(rc == 0, "exit %d: %s %s", rc, nbt_out, nbt_err);
    CHECK_MSG(strstr(nbt_out, "mpirun exit ") && !strstr(nbt_out, "mpirun exit 0"), "stdout: %s stderr: %s", nbt_out,
              nbt_err);
    CHECK_MSG(strstr(nbt_err, "timed out after 5 s in the gradient all-reduce") ||
                  strstr(nbt_err, "timed out after 5 s in a sum over the ranks"),
              "stderr: %s", nbt_err);
}

/* A tiny VGG11-BN without dropout (each BatchNorm run: alone and fused with
 * ReLU and pooling): 2 ranks with --sync-bn and unequal shares (16 + 15 of
 * each batch of 31) take the steps of one process with the whole batch:
 * weights, running statistics and momentum buffers agree within 1e-5 (of
 * each tensor's largest value, or of 0.01 for the biases of the convolutions
 * before a BatchNorm: their gradient is 0 but for rounding, so they stay
 * near 0 and hold only noise; measured 1e-6, against 2e-2 without
 * --sync-bn). The gradient all-reduce overlapped with the backward in small
 * buckets gives the same bits as the one after it. */
TEST(dist_sync_batchnorm_matches_one_process)
{
    NEED_MPI();
    const char *common = "train --model vgg11_bn --config in=1,size=28,pad_to=32,classes=10,width=0.0625,hidden=32,"
                         "dropout=0 --limit-train 310 --batch 31 --max-steps 6 --threads 1 --seed 3";
    int rc = sh("%s/nabla %s --quiet --checkpoint '%s'", nbt_build_dir(), common, nbt_tmp_path("bn1.ckpt"));
    CHECK_MSG(rc == 0, "one process exited %d: %s", rc, nbt_err);
    rc = sh(MPIRUN " %s/nabla %s --distributed --sync-bn --checkpoint '%s'", nbt_build_dir(), common,
            nbt_tmp_path("bn2.ckpt"));
    CHECK_MSG(rc == 0, "mpirun exited %d: %s", rc, nbt_err);
    CHECK_MSG(strstr(nbt_out, "synchronised BatchNorm"), "stdout: %s", nbt_out);
    rc = sh(MPIRUN " %s/nabla %s --distributed --sync-bn --dist-bucket 2 --checkpoint '%s'", nbt_build_dir(), common,
            nbt_tmp_path("bn2o.ckpt"));
    CHECK_MSG(rc == 0, "mpirun --dist-bucket exited %d: %s", rc, nbt_err);
    int bitwise;
    double worst = tensor_distance(nbt_tmp_path("bn1.ckpt"), nbt_tmp_path("bn2.ckpt"), 0.01, &bitwise);
    CHECK_MSG(worst >= 0, "the checkpoints hold different tensors");
    CHECK_MSG(worst <= 1e-5, "relative difference %g between 1 process and 2 ranks with --sync-bn", worst);
    worst = tensor_distance(nbt_tmp_path("bn2.ckpt"), nbt_tmp_path("bn2o.ckpt"), 0, &bitwise);
    CHECK_MSG(worst == 0 && bitwise, "--dist-bucket changed the result (relative difference %g)", worst);
}

/* The CNN (dropout 0.3) on 2 ranks: 4 steps, a checkpoint, and 6 more after
 * --resume end with the bits of 10 steps without a stop: weights, Adam
 * moments and the generators. */
TEST(dist_resume_with_dropout_is_exact)
{
    NEED_MPI();
    const char *common = "--distributed --threads 1 --quiet";
    int rc = sh(MPIRUN " %s/nabla train %s --model cnn --limit-train 640 --batch 32 --seed 5 --max-steps 10 "
                "--checkpoint '%s'", nbt_build_dir(), common, nbt_tmp_path("whole.ckpt"));
    CHECK_MSG(rc == 0, "mpirun exited %d: %s", rc, nbt_err);
    rc = sh(MPIRUN " %s/nabla train %s --model cnn --limit-train 640 --batch 32 --seed 5 --max-steps 4 "
            "--checkpoint '%s'", nbt_build_dir(), common, nbt_tmp_path("part.ckpt"));
    CHECK_MSG(rc == 0, "mpirun exited %d: %s", rc, nbt_err);
    rc = sh(MPIRUN " %s/nabla train %s --resume '%s' --max-steps 10 --checkpoint '%s'", nbt_build_dir(), common,
            nbt_tmp_path("part.ckpt"), nbt_tmp_path("resumed.ckpt"));
    CHECK_MSG(rc == 0, "mpirun --resume exited %d: %s", rc, nbt_err);
    int bitwise = 0;
    double worst = tensor_distance(nbt_tmp_path("whole.ckpt"), nbt_tmp_path("resumed.ckpt"), 0, &bitwise);
    CHECK_MSG(worst >= 0, "the checkpoints hold different tensors");
    CHECK_MSG(bitwise, "resumed run differs from the uninterrupted one (relative difference %g)", worst);
    nb_safetensors *a = NULL, *b = NULL;
    CHECK_OK(nb_safetensors_load(nbt_tmp_path("whole.ckpt"), &a));
    nb_status s = nb_safetensors_load(nbt_tmp_path("resumed.ckpt"), &b);
    const char *ra = nb_safetensors_meta(a, "nabla.rng"), *rb = s ? NULL : nb_safetensors_meta(b, "nabla.rng");
    int same_rng = ra && rb && !strcmp(ra, rb);
    nb_safetensors_free(a);
    nb_safetensors_free(b);
    CHECK_OK(s);
    CHECK_MSG(same_rng, "the dropout generators differ");
}
