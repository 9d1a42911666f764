/* main() for the fuzz targets when they are not built with libFuzzer: runs
 * LLVMFuzzerTestOneInput over every file given (directories are read
 * recursively, in sorted order) and, with --random N, over N deterministic
 * mutations of each (bit flips, byte changes, truncations, insertions,
 * deletions, copied chunks). Generic: nothing here knows the file format.
 *
 *   fuzz_x [--random N] [--seed S] PATH...
 *
 * Exit status 0 when every input ran, 1 when no input was found or a file
 * could not be read, 2 on a usage error. A crash ends the process as it
 * would under libFuzzer; the input that caused it is written to
 * replay-crash.bin in the current directory first (on signals, and under
 * the sanitizers through their death callback). */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);
__attribute__((weak)) void __sanitizer_set_death_callback(void (*cb)(void));

/* ---- the input being run, for the crash report -------------------------- */

static const uint8_t *cur_data;
static size_t cur_size;
static const char *cur_file;
static unsigned long cur_mutation; /* 0 = the file itself */

static void put(int fd, const char *s) { ssize_t r = write(fd, s, strlen(s)); (void)r; }

static void put_ulong(int fd, unsigned long v)
{
    char b[24];
    int i = sizeof b;
    b[--i] = 0;
    do b[--i] = (char)('0' + v % 10); while ((v /= 10) && i > 0);
    put(fd, b + i);
}

/* Async-signal-safe: open/write/close only. */
static void dump_crash(void)
{
    static volatile sig_atomic_t done;
    if (done || !cur_file) return;
    done = 1;
    put(2, "replay: crash on ");
    put(2, cur_file);
    if (cur_mutation) { put(2, " mutation "); put_ulong(2, cur_mutation); }
    int fd = open("replay-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        size_t off = 0;
        while (off < cur_size) {
            ssize_t w = write(fd, cur_data + off, cur_size - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
        close(fd);
        put(2, "; input written to replay-crash.bin");
    }
    put(2, "\n");
}

static void on_signal(int sig)
{
    dump_crash();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run(const uint8_t *data, size_t size, const char *file, unsigned long mutation)
{
    cur_data = data;
    cur_size = size;
    cur_file = file;
    cur_mutation = mutation;
    LLVMFuzzerTestOneInput(data, size);
}

/* ---- deterministic mutations ------------------------------------------- */

static uint64_t rng_s;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rnd(size_t n) { return n ? (size_t)(rng_next() % n) : 0; }

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Bytes that matter to most text and binary formats. */
static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x20, '{', '}', '[', ']', '"', ',',
                                      ':', '\\', '-', '.', '0', '1', '9', 'e', 'u', 0xc0, 0xed, 0xf4};

/* Weights of the edits below, out of 16: length-preserving edits are the
 * most common, since a length change mostly breaks size fields and stops
 * a reader early. */
enum { E_FLIP, E_BYTE, E_MAGIC, E_TRUNC, E_INSERT, E_DELETE, E_COPY, E_NUMBER };
static const unsigned char edit_of[16] = {E_FLIP,   E_FLIP,   E_FLIP,   E_BYTE,   E_BYTE,   E_MAGIC,
                                          E_MAGIC,  E_MAGIC,  E_TRUNC,  E_INSERT, E_INSERT, E_DELETE,
                                          E_DELETE, E_COPY,   E_NUMBER, E_NUMBER};

/* One to four edits of src into dst (capacity cap >= len + 64). */
static size_t mutate(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    memcpy(dst, src, len);
    size_t n = len;
    int edits = 1 + (int)rnd(4);
    for (int e = 0; e < edits; e++) {
        size_t pos = rnd(n + 1), k;
        switch (edit_of[rnd(16)]) {
        case E_FLIP: /* flip one bit */
            if (n) { pos = rnd(n); dst[pos] ^= (uint8_t)(1u << rnd(8)); }
            break;
        case E_BYTE: /* a random byte */
            if (n) dst[rnd(n)] = (uint8_t)rng_next();
            break;
        case E_MAGIC: /* an interesting byte */
            if (n) dst[rnd(n)] = interesting[rnd(sizeof interesting)];
            break;
        case E_TRUNC:
            n = rnd(n + 1);
            break;
        case E_INSERT: /* 1..8 random or interesting bytes */
            k = 1 + rnd(8);
            if (n + k > cap) break;
            memmove(dst + pos + k, dst + pos, n - pos);
            for (size_t i = 0; i < k; i++)
                dst[pos + i] = rnd(2) ? (uint8_t)rng_next() : interesting[rnd(sizeof interesting)];
            n += k;
            break;
        case E_DELETE: /* 1..16 bytes */
            if (pos >= n) break;
            k = 1 + rnd(n - pos < 16 ? n - pos : 16);
            memmove(dst + pos, dst + pos + k, n - pos - k);
            n -= k;
            break;
        case E_COPY: /* a chunk of itself inserted elsewhere */
            if (!n) break;
            {
                size_t from = rnd(n), len2 = 1 + rnd(n - from < 32 ? n - from : 32);
                if (n + len2 > cap) break;
                uint8_t tmp[32];
                memcpy(tmp, dst + from, len2);
                memmove(dst + pos + len2, dst + pos, n - pos);
                memcpy(dst + pos, tmp, len2);
                n += len2;
            }
            break;
        default: /* a little-endian number near a boundary over 4 or 8 bytes */
            if (n >= 8) {
                static const uint64_t vals[] = {0, 1, 7, 8, 0x7f, 0xff, 0x100, 0xffff, 0x7fffffff, 0xffffffffull,
                                                0x6400000ull, 0x6400001ull, 0x20000000000000ull, UINT64_MAX};
                uint64_t v = vals[rnd(sizeof vals / sizeof vals[0])];
                int w = rnd(2) ? 8 : 4;
                pos = rnd(n - (size_t)w + 1);
                for (int i = 0; i < w; i++) dst[pos + (size_t)i] = (uint8_t)(v >> (8 * i));
            }
        }
    }
    return n;
}

/* ---- the file list ------------------------------------------------------ */

typedef struct { char **v; size_t n, cap; } list;

static int list_add(list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Files under path (recursively); -1 if path cannot be read. */
static int collect(const char *path, list *out, int depth)
{
    struct stat sb;
    if (stat(path, &sb) != 0) { perror(path); return -1; }
    if (!S_ISDIR(sb.st_mode)) return list_add(out, path);
    if (depth > 8) return 0;
    DIR *d = opendir(path);
    if (!d) { perror(path); return -1; }
    list sub = {0};
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && list_add(&sub, de->d_name)) { closedir(d); return -1; }
    closedir(d);
    qsort(sub.v, sub.n, sizeof *sub.v, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < sub.n && !rc; i++) {
        size_t len = strlen(path) + strlen(sub.v[i]) + 2;
        char *p = malloc(len);
        if (!p) { rc = -1; break; }
        snprintf(p, len, "%s/%s", path, sub.v[i]);
        rc = collect(p, out, depth + 1);
        free(p);
    }
    for (size_t i = 0; i < sub.n; i++) free(sub.v[i]);
    free(sub.v);
    return rc;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) { perror(path); return NULL; }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap) break;
        uint8_t *b = realloc(buf, cap * 2);
        if (!b) { free(buf); buf = NULL; break; }
        buf = b;
        cap *= 2;
    }
    if (buf && ferror(fp)) { perror(path); free(buf); buf = NULL; }
    fclose(fp);
    *len = n;
    return buf;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--random N] [--seed S] FILE-OR-DIR...\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    unsigned long nrandom = 0;
    uint64_t seed = 1;
    list files = {0};
    int npaths = 0;
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--random") || !strcmp(argv[i], "--seed")) {
            if (i + 1 >= argc) return usage(argv[0]);
            unsigned long long v = strtoull(argv[i + 1], &end, 10);
            if (!*argv[i + 1] || *end) return usage(argv[0]);
            if (argv[i][2] == 'r') nrandom = (unsigned long)v;
            else seed = v;
            i++;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(argv[0]);
            return 0;
        } else if (argv[i][0] == '-') {
            return usage(argv[0]);
        } else if (npaths++, collect(argv[i], &files, 0)) {
            return 1;
        }
    }
    if (!npaths) return usage(argv[0]);
    if (files.n == 0) {
        fprintf(stderr, "%s: no input files\n", argv[0]);
        return 1;
    }

    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGILL, on_signal);
    signal(SIGFPE, on_signal);
    signal(SIGABRT, on_signal);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(dump_crash);

    unsigned long long inputs = 0;
    size_t max_len = 0;
    for (size_t f = 0; f < files.n; f++) {
        size_t len;
        uint8_t *buf = read_all(files.v[f], &len);
        if (!buf) return 1;
        /* Exact-size copies, so ASan sees any read past the end. */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) { fprintf(stderr, "out of memory\n"); return 1; }
        memcpy(exact, buf, len);
        run(exact, len, files.v[f], 0);
        free(exact);
        inputs++;
        if (nrandom) {
            size_t cap = 2 * len + 64;
            uint8_t *m = malloc(cap);
            if (!m) { fprintf(stderr, "out of memory\n"); return 1; }
            rng_s = seed ^ fnv1a(buf, len);
            for (unsigned long k = 1; k <= nrandom; k++) {
                size_t n = mutate(buf, len, m, cap);
                exact = malloc(n ? n : 1);
                if (!exact) { fprintf(stderr, "out of memory\n"); return 1; }
                memcpy(exact, m, n);
                run(exact, n, files.v[f], k);
                free(exact);
                inputs++;
            }
            free(m);
        }
        if (len > max_len) max_len = len;
        free(buf);
    }
    cur_file = NULL;
    printf("%s: %zu files (largest %zu bytes), %llu inputs with %lu mutations each, no crash\n", argv[0], files.n,
           max_len, inputs, nrandom);
    for (size_t f = 0; f < files.n; f++) free(files.v[f]);
    free(files.v);
    return 0;
}
