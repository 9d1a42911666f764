/* `nabla compare`, run as a program: the files of a --quick comparison (CSV
 * headers and row counts, loss going down at the default learning rates,
 * the report's table, the charts), a diverging run recorded as a result,
 * and bad flags. Needs Fashion-MNIST; says so and skips otherwise. */
#include "test.h"
#include "nabla/image.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

#define NEED_FASHION_MNIST()                                                                       \
    do {                                                                                           \
        if (!have_fashion_mnist())                                                                 \
            SKIP("Fashion-MNIST is not in %s (Debian package dataset-fashion-mnist)",             \
                 nb_fashion_mnist_default_dir());                                                  \
    } while (0)

/* ---- a CSV file in memory -------------------------------------------------- */

enum { MAX_ROWS = 8192, MAX_COLS = 24 };

typedef struct csv {
    char  *text;
    int    nrows;                      /* data rows, the header not counted */
    int    ncols;                      /* of the header */
    char  *header;                     /* the header line as written */
    char **cell;                       /* nrows x ncols */
} csv;

static void csv_free(csv *c)
{
    free(c->text);
    free(c->header);
    free(c->cell);
    memset(c, 0, sizeof *c);
}

static int csv_parse(csv *c);

/* Load dir/name; 0 if it is missing or malformed (a row's width differs
 * from the header's, a line without its newline). */
static int csv_load(const char *dir, const char *name, csv *c)
{
    char path[1024];
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    c->text = malloc((size_t)n + 1);
    c->cell = malloc(sizeof *c->cell * MAX_ROWS * MAX_COLS);
    size_t got = fread(c->text, 1, (size_t)n, f);
    fclose(f);
    c->text[got] = 0;
    if (csv_parse(c)) return 1;
    csv_free(c);
    return 0;
}

static int csv_parse(csv *c)
{
    char *line = c->text, *next;
    int row = -1;
    for (; *line; line = next, row++) {
        next = strchr(line, '\n');
        if (!next) return 0; /* every line ends with a newline */
        *next++ = 0;
        if (row < 0) {
            c->header = strdup(line);
            c->ncols = 1;
            for (char *p = line; *p; p++) c->ncols += *p == ',';
            continue;
        }
        if (row >= MAX_ROWS) return 0;
        int k = 0;
        for (char *p = line;; k++) {
            char *comma = strchr(p, ',');
            if (k < MAX_COLS) c->cell[row * MAX_COLS + k] = p;
            if (!comma) break;
            *comma = 0;
            p = comma + 1;
        }
        if (k + 1 != c->ncols) return 0;
    }
    c->nrows = row;
    return 1;
}

static const char *cell(const csv *c, int row, int col) { return c->cell[row * MAX_COLS + col]; }

/* ---- the quick comparison, run once ---------------------------------------- */

static const char *const optims[] = {"sgd", "momentum", "rmsprop", "adagrad", "adam", "adamw"};
enum { NOPT = 6, NLRS = 6, NSEEDS = 2, QUICK_STEPS = 47 }; /* --quick: 3000 images / batch 64 */

static char quick_dir[512];
static int quick_rc = -2;

static int quick_ok(void)
{
    if (quick_rc == -2) {
        snprintf(quick_dir, sizeof quick_dir, "%s/compare-quick", nbt_tmpdir());
        quick_rc = nbt_nabla("compare --quick --out '%s'", quick_dir);
        if (quick_rc) fprintf(stderr, "  nabla compare --quick exited %d: %s\n", quick_rc, nbt_err);
    }
    return quick_rc == 0;
}

TEST(compare_quick_writes_csv_files_with_every_run)
{
    NEED_FASHION_MNIST();
    CHECK(quick_ok());
    csv sweep, curves, epochs, summary;
    CHECK(csv_load(quick_dir, "sweep.csv", &sweep));
    CHECK(csv_load(quick_dir, "curves.csv", &curves));
    CHECK(csv_load(quick_dir, "epochs.csv", &epochs));
    CHECK(csv_load(quick_dir, "summary.csv", &summary));
    CHECK(!strcmp(sweep.header, "optimizer,lr,seed,test_acc,test_loss,steps_to_target,seconds_to_target,seconds,diverged"));
    CHECK(!strcmp(curves.header, "optimizer,lr,seed,step,seconds,train_loss,train_acc"));
    CHECK(!strcmp(epochs.header, "optimizer,lr,seed,epoch,step,seconds,train_loss,train_acc,test_loss,test_acc"));
    CHECK(!strncmp(summary.header, "optimizer,default_lr,test_acc,", 30));
    CHECK_MSG(sweep.nrows == NOPT * NLRS * NSEEDS, "sweep.csv has %d rows", sweep.nrows);
    CHECK_MSG(summary.nrows == NOPT, "summary.csv has %d rows", summary.nrows);
    for (int o = 0; o < NOPT; o++) CHECK(!strcmp(cell(&summary, o, 0), optims[o]));

    /* Each run: its curve ends at the last step and it has one epoch row,
     * unless it diverged; accuracies are fractions. */
    int epoch_rows = 0;
    for (int i = 0; i < sweep.nrows; i++) {
        const char *opt = cell(&sweep, i, 0), *lr = cell(&sweep, i, 1), *seed = cell(&sweep, i, 2);
        int diverged = atoi(cell(&sweep, i, 8));
        double acc = atof(cell(&sweep, i, 3));
        CHECK(acc >= 0 && acc <= 1);
        CHECK(!strcmp(cell(&sweep, i, 5), "never") || atoi(cell(&sweep, i, 5)) > 0);
        int points = 0, last_step = 0;
        for (int k = 0; k < curves.nrows; k++)
            if (!strcmp(cell(&curves, k, 0), opt) && !strcmp(cell(&curves, k, 1), lr) && !strcmp(cell(&curves, k, 2), seed)) {
                int step = atoi(cell(&curves, k, 3));
                CHECK(step > last_step);
                last_step = step, points++;
            }
        if (!diverged) {
            CHECK_MSG(points >= 5 && last_step == QUICK_STEPS, "%s lr %s seed %s: %d points, last step %d", opt, lr,
                      seed, points, last_step);
            epoch_rows++;
        }
    }
    CHECK_MSG(epochs.nrows == epoch_rows, "epochs.csv has %d rows, %d runs finished", epochs.nrows, epoch_rows);
    csv_free(&sweep), csv_free(&curves), csv_free(&epochs), csv_free(&summary);
}

TEST(compare_quick_training_loss_goes_down_at_default_lr)
{
    NEED_FASHION_MNIST();
    CHECK(quick_ok());
    csv curves, summary;
    CHECK(csv_load(quick_dir, "curves.csv", &curves));
    CHECK(csv_load(quick_dir, "summary.csv", &summary));
    CHECK(summary.nrows == NOPT);
    for (int o = 0; o < NOPT; o++) {
        const char *opt = cell(&summary, o, 0), *lr = cell(&summary, o, 1); /* default_lr, written as curves' lr */
        for (int s = 0; s < NSEEDS; s++) {
            char seed[16];
            snprintf(seed, sizeof seed, "%d", s);
            double first = NAN, last = NAN;
            for (int k = 0; k < curves.nrows; k++)
                if (!strcmp(cell(&curves, k, 0), opt) && !strcmp(cell(&curves, k, 1), lr) && !strcmp(cell(&curves, k, 2), seed)) {
                    if (isnan(first)) first = atof(cell(&curves, k, 5));
                    last = atof(cell(&curves, k, 5));
                }
            CHECK_MSG(isfinite(first) && last < first, "%s lr %s seed %d: loss %g -> %g", opt, lr, s, first, last);
        }
    }
    csv_free(&curves), csv_free(&summary);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

TEST(compare_quick_report_has_the_notes_table_and_charts)
{
    NEED_FASHION_MNIST();
    CHECK(quick_ok());
    char path[1024];
    snprintf(path, sizeof path, "%s/REPORT.md", quick_dir);
    char *md = slurp(path);
    CHECK(md);
    static const char *const rows[] = {"收敛速度", "超参数敏感性", "理论保证", "较慢", "快", "| sgd | momentum |",
                                       "spread of final test accuracy", "steps to 60%", "Verdict"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) CHECK_MSG(strstr(md, rows[i]), "no '%s' in REPORT.md", rows[i]);
    for (int o = 0; o < NOPT; o++) CHECK_MSG(strstr(md, optims[o]), "no %s in REPORT.md", optims[o]);
    free(md);
    static const char *const charts[] = {"loss.png", "loss_time.png", "acc_lr.png"};
    for (int i = 0; i < 3; i++) {
        int w = 0, h = 0;
        uint8_t *px = NULL;
        snprintf(path, sizeof path, "%s/%s", quick_dir, charts[i]);
        CHECK_OK(nb_png_read_gray(path, &w, &h, &px));
        CHECK(w >= 200 && h >= 200);
        free(px);
    }
    /* No temporary file is left beside the results. */
    snprintf(path, sizeof path, "ls -A '%s' | grep -q '^\\.'", quick_dir);
    CHECK(system(path) != 0);
}

TEST(compare_records_a_diverging_run_and_goes_on)
{
    NEED_FASHION_MNIST();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/compare-diverge", nbt_tmpdir());
    int rc = nbt_nabla("compare --optims sgd --lrs 1e4 --seeds 3 --limit-train 640 --limit-test 100 --epochs 1 --out '%s'", dir);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, nbt_err);
    csv sweep;
    CHECK(csv_load(dir, "sweep.csv", &sweep));
    CHECK(sweep.nrows == 2); /* 1e4 and the default 0.1 */
    CHECK(!strcmp(cell(&sweep, 0, 1), "0.1") && !strcmp(cell(&sweep, 0, 8), "0"));
    CHECK(!strcmp(cell(&sweep, 1, 1), "10000") && !strcmp(cell(&sweep, 1, 8), "1"));
    csv_free(&sweep);
}

TEST(compare_bad_flags_exit_2)
{
    CHECK(nbt_nabla("compare --help") == 0);
    CHECK(nbt_nabla("compare --optims sgd,nadam") == 2);
    CHECK(strstr(nbt_err, "nadam") && strstr(nbt_err, "unknown optimizer"));
    CHECK(nbt_nabla("compare --optims adam,adam") == 2);
    CHECK(nbt_nabla("compare --optims sgd,,adam") == 2);
    CHECK(nbt_nabla("compare --lrs x0.1,abc") == 2);
    CHECK(strstr(nbt_err, "--lrs") && strstr(nbt_err, "abc"));
    CHECK(nbt_nabla("compare --lrs 0") == 2);
    CHECK(nbt_nabla("compare --lrs x-1") == 2);
    CHECK(nbt_nabla("compare --lrs inf") == 2);
    CHECK(nbt_nabla("compare --seeds 1,1") == 2);
    CHECK(nbt_nabla("compare --seeds -3") == 2);
    CHECK(nbt_nabla("compare --model resnet") == 2);
    CHECK(nbt_nabla("compare --target-acc 2") == 2);
    CHECK(nbt_nabla("compare --out") == 2);
}
