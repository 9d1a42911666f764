/* A small test harness: TEST(name) { ... CHECK(...); } in any test_*.c file
 * registers itself; build/run_tests runs them all (or those whose name or file
 * contains argv[1]) and ends with the line "N passed, N failed, N skipped". */
#ifndef NABLA_TEST_H
#define NABLA_TEST_H
#include "nabla.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*nbt_fn)(void);
void nbt_register(const char *name, const char *file, nbt_fn fn);
/* Report a failed check in the running test (it still runs to its return). */
void nbt_fail(const char *file, int line, const char *fmt, ...);
/* Mark the running test skipped, with the reason (printed); see SKIP. */
void nbt_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Directory of built artefacts (build/ or build-asan/). */
const char *nbt_build_dir(void);
/* A fresh temporary directory for this test run (removed at exit). */
const char *nbt_tmpdir(void);
/* Run a shell command with stdin from /dev/null, its stdout and stderr
 * captured into out and err (NUL-terminated, truncated to their sizes; either
 * may be NULL to discard); returns the exit status, -1 if it did not exit. */
int nbt_shell(char *out, size_t outsz, char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Run "<build>/nabla ARGS" with stdout and stderr captured into nbt_out and
 * nbt_err (NUL-terminated, truncated); returns the exit status, -1 if it did
 * not exit normally. */
extern char nbt_out[1 << 16], nbt_err[1 << 16];
int nbt_nabla(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The whole file at path into *data (malloc'ed, NUL-terminated; the caller
 * frees it) and its length into *len; 0 when it cannot be read whole. */
int nbt_read_file(const char *path, char **data, size_t *len);
/* Whether the files at a and b can be read and hold the same bytes. */
int nbt_same_files(const char *a, const char *b);
/* "<nbt_tmpdir()>/name" in one of 4 rotating buffers. */
const char *nbt_tmp_path(const char *name);
/* Path of a file in tests/fixtures. */
const char *nbt_fixture(const char *name);

#define TEST(name)                                                          \
    static void name(void);                                                 \
    __attribute__((constructor)) static void nbt_reg_##name(void)           \
    { nbt_register(#name, __FILE__, name); }                                \
    static void name(void)

/* Stop the running test and count it as skipped, never silently: for a
 * check that needs something optional (python3-torch, clang). */
#define SKIP(...) do { nbt_skip(__VA_ARGS__); return; } while (0)
#define CHECK(c)                                                            \
    do { if (!(c)) { nbt_fail(__FILE__, __LINE__, "CHECK(%s)", #c); return; } } while (0)
#define CHECK_MSG(c, ...)                                                   \
    do { if (!(c)) { nbt_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
/* |a - b| <= atol + rtol * |b| */
#define CHECK_NEAR(a, b, rtol, atol)                                        \
    do { double nbt_a = (a), nbt_b = (b);                                   \
         if (!(fabs(nbt_a - nbt_b) <= (atol) + (rtol) * fabs(nbt_b))) {     \
             nbt_fail(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g",  \
                      #a, nbt_a, #b, nbt_b); return; } } while (0)
#define CHECK_OK(expr)                                                      \
    do { nb_status nbt_s = (expr); if (nbt_s != NB_OK) {                    \
         nbt_fail(__FILE__, __LINE__, "%s failed: %s: %s", #expr,           \
                  nb_status_str(nbt_s), nb_last_error()); return; } } while (0)
/* expr returns status `want` and nb_last_error() contains `substr`. */
#define CHECK_ERR(expr, want, substr)                                       \
    do { nb_status nbt_s = (expr);                                          \
         if (nbt_s != (want) || !strstr(nb_last_error(), (substr))) {       \
             nbt_fail(__FILE__, __LINE__, "%s gave %s \"%s\", expected %s containing \"%s\"", \
                      #expr, nb_status_str(nbt_s), nb_last_error(),         \
                      nb_status_str(want), (substr)); return; } } while (0)
#endif
