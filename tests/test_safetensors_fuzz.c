/* The fuzz targets of tests/fuzz/ as tests: the replay builds (made by
 * `make test` with the project's compiler) over the seed corpora and
 * deterministic mutations of them, and the libFuzzer builds (clang, ASan and
 * UBSan) for FUZZ_TEST_SECONDS each, skipped visibly when clang's libFuzzer
 * is not installed. The safetensors and IDX replays are in
 * test_safetensors.c and test_data.c. */
#include "test.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char log_text[8192];

/* Run cmd with its output in log_text; the exit status or -1. */
static int run_logged(const char *cmd)
{
    char full[2048], log[600];
    snprintf(log, sizeof log, "%s/fuzz.log", nbt_tmpdir());
    snprintf(full, sizeof full, "%s > '%s' 2>&1", cmd, log);
    int st = system(full);
    log_text[0] = 0;
    FILE *f = fopen(log, "rb");
    if (f) {
        size_t n = fread(log_text, 1, sizeof log_text - 1, f);
        log_text[n] = 0;
        fclose(f);
    }
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The replay build of target over its corpus and `mutations` of each file. */
static int replay(const char *target, const char *corpus, int mutations)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s/fuzz/%s' --random %d tests/fuzz/corpus/%s", nbt_build_dir(), target, mutations,
             corpus);
    return run_logged(cmd);
}

TEST(fuzz_json_corpus_and_mutations)
{
    int rc = replay("fuzz_json", "json", 3000);
    CHECK_MSG(rc == 0 && strstr(log_text, "no crash"), "fuzz_json replay exited %d: %s", rc, log_text);
}

TEST(fuzz_model_corpus_and_mutations)
{
    int rc = replay("fuzz_model", "model", 300);
    CHECK_MSG(rc == 0 && strstr(log_text, "no crash"), "fuzz_model replay exited %d: %s", rc, log_text);
}

TEST(fuzz_libfuzzer_targets)
{
    char dir[600], cmd[1200];
    snprintf(dir, sizeof dir, "%s/libfuzzer", nbt_build_dir());
    const char *targets[] = {"fuzz_safetensors", "fuzz_idx", "fuzz_json", "fuzz_model"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", dir, targets[i]);
        if (access(cmd, X_OK) != 0)
            SKIP("%s is not built: `make test` builds the libFuzzer targets when clang and libFuzzer are installed "
                 "(scripts/install-deps.sh)", cmd);
    }
    const char *secs = getenv("FUZZ_TEST_SECONDS");
    int s = secs && *secs ? atoi(secs) : 20;
    snprintf(cmd, sizeof cmd, "tests/fuzz/run_libfuzzer.sh '%s' %d", dir, s > 0 ? s : 20);
    int rc = run_logged(cmd);
    CHECK_MSG(rc == 0, "%s exited %d:\n%s", cmd, rc, log_text);
    fprintf(stderr, "%s", log_text); /* executions per target, for the record */
}
