/* Data-parallel training over MPI (nabla/dist.h, nabla train --distributed),
 * run as real mpirun jobs of 2 ranks on this machine (--oversubscribe, one
 * thread each). Skipped, visibly, when nabla is built without MPI or mpirun
 * is missing (scripts/install-deps.sh installs Open MPI). mpirun refuses to
 * run as root unless told, so the jobs get OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM). */
#include "test.h"

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

    nb_safetensors *a = NULL, *b = NULL;
    CHECK_OK(nb_safetensors_load(nbt_tmp_path("one.safetensors"), &a));
    nb_status s = nb_safetensors_load(nbt_tmp_path("two.safetensors"), &b);
    if (s) nb_safetensors_free(a);
    CHECK_OK(s);
    int ok = a->n == b->n && a->n > 0;
    double worst = 0;
    for (int i = 0; ok && i < a->n; i++) {
        const nb_st_tensor *x = &a->tensors[i], *y = nb_safetensors_find(b, x->name);
        if (!y || y->numel != x->numel) {
            ok = 0;
            break;
        }
        double big = 0, diff = 0;
        for (int64_t k = 0; k < x->numel; k++) {
            big = fmax(big, fabs(x->data[k]));
            diff = fmax(diff, fabs(x->data[k] - y->data[k]));
        }
        worst = fmax(worst, big > 0 ? diff / big : diff);
    }
    nb_safetensors_free(a);
    nb_safetensors_free(b);
    CHECK_MSG(ok, "the two weight files hold different tensors");
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

/* Kill -9 rank 1 mid-training: rank 0 must be gone and mpirun must exit
 * non-zero within 60 seconds (mpirun's own abort of the job). */
TEST(dist_killed_rank_stops_the_job)
{
    NEED_MPI();
    int rc = sh("%s"
                "sleep 0.5; kill -9 $(cat pid.1); "
                "i=0; while kill -0 $(cat pid.0) 2>/dev/null; do "
                "i=$((i+1)); [ $i -gt 600 ] && { echo 'rank 0 still runs after 60 s'; kill $job; exit 4; }; sleep 0.1; done; "
                "wait $job; echo \"mpirun exit $?\"; cat job.err >&2",
                start_job(""));
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
