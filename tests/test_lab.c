/* `nabla lab`, run as a program: the --quick report of a subset of claims
 * (every chosen claim has its section, the notes' words, a table of numbers,
 * a PNG that exists and a computed verdict; the same seed gives the same
 * numbers), --list, --help and an unknown claim. The experiments need
 * Fashion-MNIST; that test says so and skips without it. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

/* The claims the report test runs: the machinery (CSV, plots, the compare
 * subcommand) and several experiments, a few seconds in all. */
static const int chosen[] = {1, 2, 3, 5, 9, 10, 12};
enum { NCHOSEN = (int)(sizeof chosen / sizeof chosen[0]) };

static int have_fashion_mnist(void)
{
    static const char *const names[] = {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", nb_fashion_mnist_default_dir(), names[i]);
        if (access(path, R_OK) == 0) return 1;
    }
    return 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) free(s), s = NULL;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static int is_png(const char *path)
{
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(head, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(head, magic, 8);
}

static int run_quick(const char *dir)
{
    char claims[64] = "";
    for (int i = 0; i < NCHOSEN; i++) snprintf(claims + strlen(claims), sizeof claims - strlen(claims), " %d", chosen[i]);
    return nbt_shell(NULL, 0, nbt_err, sizeof nbt_err, "%s/nabla lab --quick --quiet --seed 3 --out %s%s",
                     nbt_build_dir(), dir, claims);
}

/* Check claim k's section of the report: heading, quoted notes, a table row
 * with a number, an existing PNG, a verdict word. */
static void check_section(const char *report, const char *dir, int k)
{
    char heading[32];
    snprintf(heading, sizeof heading, "\n## %d. ", k);
    const char *sec = strstr(report, heading);
    CHECK(sec);
    const char *end = strstr(sec + 1, "\n## ");
    size_t len = end ? (size_t)(end - sec) : strlen(sec);
    char *s = strndup(sec, len);
    CHECK(s);
    CHECK(strstr(s, "> §"));                         /* the notes, quoted with their section */
    CHECK(strstr(s, "「"));
    CHECK(strstr(s, "**Claim.**"));
    int table_number = 0;                            /* a table row holding a number */
    for (const char *p = strstr(s, "\n| "); p && !table_number; p = strstr(p + 1, "\n| "))
        for (const char *q = p + 3; *q && *q != '\n'; q++)
            if (*q >= '0' && *q <= '9') table_number = 1;
    CHECK(table_number);
    const char *img = strstr(s, "\n![");               /* the first picture */
    CHECK(img);
    img = strstr(img, "](");
    CHECK(img);
    char name[200], path[1400];
    CHECK(sscanf(img + 2, "%199[^)]", name) == 1);
    CHECK(strstr(name, ".png"));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(is_png(path));
    const char *v = strstr(s, "**Verdict: ");
    CHECK(v);
    v += strlen("**Verdict: ");
    CHECK(!strncmp(v, "confirmed.", 10) || !strncmp(v, "refuted.", 8) || !strncmp(v, "depends.", 8));
    CHECK(strstr(v, "Rule:") && strstr(v, "Measured"));
    free(s);
}

TEST(lab_quick_report)
{
    if (!have_fashion_mnist())
        SKIP("Fashion-MNIST is not in %s (Debian package dataset-fashion-mnist)", nb_fashion_mnist_default_dir());
    char dir[1024], again[1024];
    snprintf(dir, sizeof dir, "%s/lab-quick", nbt_tmpdir());
    snprintf(again, sizeof again, "%s/lab-quick-again", nbt_tmpdir());
    int rc = run_quick(dir);
    if (rc) fprintf(stderr, "%s", nbt_err);
    CHECK(rc == 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/REPORT.md", dir);
    char *report = slurp(path);
    CHECK(report);
    for (int i = 0; i < NCHOSEN; i++) {
        check_section(report, dir, chosen[i]);
        char row[64];
        snprintf(row, sizeof row, "\n| %d | [", chosen[i]); /* the summary table lists it */
        CHECK(strstr(report, row));
    }
    CHECK(!strstr(report, "\n## 4. "));               /* claims not asked for are absent */
    free(report);
    snprintf(path, sizeof path, "%s/verdicts.csv", dir);
    char *verdicts = slurp(path);
    CHECK(verdicts && !strncmp(verdicts, "claim,id,verdict,seconds,plots\n", 31));
    int lines = 0;
    for (const char *p = verdicts; *p; p++) lines += *p == '\n';
    CHECK(lines == NCHOSEN + 1);
    CHECK(!strstr(verdicts, "failed"));
    free(verdicts);

    /* the same seed and thread count give the same numbers */
    CHECK(run_quick(again) == 0);
    static const char *const csvs[] = {"claim01_accuracy.csv", "claim05_runs.csv", "claim09_step.csv",
                                       "claim12_layer_stats.csv"};
    for (int i = 0; i < 4; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/%s", dir, csvs[i]);
        snprintf(b, sizeof b, "%s/%s", again, csvs[i]);
        char *x = slurp(a), *y = slurp(b);
        CHECK(x && y);
        CHECK(!strcmp(x, y));
        free(x), free(y);
    }
}

TEST(lab_list)
{
    int rc = nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "%s/nabla lab --list", nbt_build_dir());
    CHECK(rc == 0);
    static const char *const ids[] = {"nonlinearity", "activations", "optimizers", "vanishing",
                                      "exploding", "weight-decay", "lstm", "cnn",
                                      "loop", "receptive-field", "capacity", "batchnorm"};
    for (int i = 0; i < 12; i++) {
        char line[64];
        snprintf(line, sizeof line, "%2d  %s ", i + 1, ids[i]);
        CHECK(strstr(nbt_out, line));
    }
}

TEST(lab_usage)
{
    CHECK(nbt_shell(NULL, 0, nbt_err, sizeof nbt_err, "%s/nabla lab --out %s/lab-none nosuch", nbt_build_dir(),
                    nbt_tmpdir()) == 2);
    CHECK(strstr(nbt_err, "unknown claim 'nosuch'"));
    CHECK(nbt_shell(NULL, 0, nbt_err, sizeof nbt_err, "%s/nabla lab 13", nbt_build_dir()) == 2);
    CHECK(nbt_shell(NULL, 0, nbt_err, sizeof nbt_err, "%s/nabla lab --threads 0", nbt_build_dir()) == 2);
    CHECK(nbt_shell(NULL, 0, nbt_err, sizeof nbt_err, "%s/nabla lab --bogus", nbt_build_dir()) == 2);
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, NULL, 0, "%s/nabla lab --help", nbt_build_dir()) == 0);
    CHECK(strstr(nbt_out, "usage: nabla lab"));
    CHECK(strstr(nbt_out, "--quick"));
    CHECK(nbt_shell(nbt_out, sizeof nbt_out, NULL, 0, "%s/nabla --help", nbt_build_dir()) == 0);
    CHECK(strstr(nbt_out, "  lab "));
}
