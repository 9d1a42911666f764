/* The test runner: runs every registered TEST, prints failures and the
 * closing line "N passed, N failed, N skipped"; exit status 1 if any failed. */
#include "test.h"
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct { const char *name, *file; nbt_fn fn; } nbt_case;
static nbt_case cases[1024];
static int ncases, cur_failed, cur_skipped;
static char tmpdir[256];

void nbt_register(const char *name, const char *file, nbt_fn fn)
{
    if (ncases < (int)(sizeof cases / sizeof cases[0])) cases[ncases++] = (nbt_case){name, file, fn};
}

void nbt_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cur_failed = 1;
}

void nbt_skip(const char *fmt, ...)
{
    va_list ap;
    fputs("  SKIP: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cur_skipped = 1;
}

/* Absolute, so that tests which change directory (the MPI jobs) still find
 * the programs; as given when it cannot be resolved. */
const char *nbt_build_dir(void)
{
    static char path[PATH_MAX];
    const char *b = getenv("NABLA_BUILD");
    if (!b || !*b) b = "build";
    if (!path[0] && !realpath(b, path)) snprintf(path, sizeof path, "%s", b);
    return path;
}

const char *nbt_tmpdir(void) { return tmpdir; }

char nbt_out[1 << 16], nbt_err[1 << 16];

int nbt_nabla(const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return nbt_shell(nbt_out, sizeof nbt_out, nbt_err, sizeof nbt_err, "%s/nabla %s", nbt_build_dir(), args);
}

int nbt_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL, *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    int ok = n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (*data = malloc((size_t)n + 1)) &&
             (*len = fread(*data, 1, (size_t)n, f)) == (size_t)n;
    if (*data) (*data)[*len] = 0;
    fclose(f);
    return ok;
}

int nbt_same_files(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    int same = nbt_read_file(a, &x, &lx) && nbt_read_file(b, &y, &ly) && lx == ly && !memcmp(x, y, lx);
    free(x);
    free(y);
    return same;
}

const char *nbt_tmp_path(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

const char *nbt_fixture(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    return path;
}

static void cleanup(void)
{
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

int main(int argc, char **argv)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nabla-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    nb_set_threads(2);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < ncases; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1]) && !strstr(cases[i].file, argv[1])) continue;
        cur_failed = cur_skipped = 0;
        nb_clear_error();
        cases[i].fn();
        if (cur_failed) {
            failed++;
            fprintf(stderr, "FAILED %s (%s)\n", cases[i].name, cases[i].file);
        } else if (cur_skipped) {
            skipped++;
            fprintf(stderr, "SKIPPED %s (%s)\n", cases[i].name, cases[i].file);
        } else {
            passed++;
            if (getenv("NABLA_TEST_VERBOSE")) fprintf(stderr, "ok %s\n", cases[i].name);
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

static void nbt_slurp(const char *path, char *buf, size_t size)
{
    if (!buf) return;
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = 0;
    fclose(f);
}

int nbt_shell(char *out, size_t outsz, char *err, size_t errsz, const char *fmt, ...)
{
    char args[4096], cmd[6144], o[512], e[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/shell.out", nbt_tmpdir());
    snprintf(e, sizeof e, "%s/shell.err", nbt_tmpdir());
    snprintf(cmd, sizeof cmd, "%s >'%s' 2>'%s' </dev/null", args, o, e);
    int st = system(cmd);
    nbt_slurp(o, out, outsz);
    nbt_slurp(e, err, errsz);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
