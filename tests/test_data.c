/* IDX reader (raw, gzip, every bad input), Fashion-MNIST, datasets, loaders. */
#include "test.h"
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ------------------------------------------------------------------ */

/* An IDX image in buf: magic, dims, then `plen` payload bytes. Returns its size. */
static size_t make_idx(unsigned char *buf, int type, int ndim, const uint32_t *dims,
                       const void *payload, size_t plen)
{
    size_t k = 0;
    buf[k++] = 0;
    buf[k++] = 0;
    buf[k++] = (unsigned char)type;
    buf[k++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        buf[k++] = (unsigned char)(dims[i] >> 24);
        buf[k++] = (unsigned char)(dims[i] >> 16);
        buf[k++] = (unsigned char)(dims[i] >> 8);
        buf[k++] = (unsigned char)dims[i];
    }
    if (plen) memcpy(buf + k, payload, plen);
    return k + plen;
}

static int write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = len ? fwrite(buf, 1, len, f) : 0;
    return (fclose(f) == 0) & (w == len);
}

static int write_gz(const char *path, const char *mode, const void *buf, size_t len)
{
    gzFile g = gzopen(path, mode);
    if (!g) return 0;
    int w = len ? gzwrite(g, buf, (unsigned)len) : 0;
    return (gzclose(g) == Z_OK) & (w == (int)len);
}

/* The whole file in a malloc'd buffer (NULL on failure). */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

/* ---- IDX: good files ------------------------------------------------------------ */

TEST(idx_parse_ubyte)
{
    unsigned char buf[64], pay[6] = {0, 1, 2, 127, 128, 255};
    size_t len = make_idx(buf, 0x08, 2, (uint32_t[]){2, 3}, pay, 6);
    nb_idx *x = NULL;
    CHECK_OK(nb_idx_parse(buf, len, &x));
    CHECK(x->type == 0x08 && x->ndim == 2 && x->dims[0] == 2 && x->dims[1] == 3 && x->count == 6);
    for (int i = 0; i < 6; i++) CHECK(x->values[i] == (float)pay[i]);
    nb_idx_free(x);
}

/* Every type, with values whose byte order and sign matter. */
TEST(idx_parse_all_types)
{
    unsigned char buf[128], pay[64];
    nb_idx *x = NULL;

    unsigned char sb[3] = {0xff, 0x80, 0x7f};
    CHECK_OK(nb_idx_parse(buf, make_idx(buf, 0x09, 1, (uint32_t[]){3}, sb, 3), &x));
    CHECK(x->values[0] == -1 && x->values[1] == -128 && x->values[2] == 127);
    nb_idx_free(x);

    put_be(pay, (uint16_t)-2, 2);
    put_be(pay + 2, 300, 2);
    CHECK_OK(nb_idx_parse(buf, make_idx(buf, 0x0B, 1, (uint32_t[]){2}, pay, 4), &x));
    CHECK(x->values[0] == -2 && x->values[1] == 300);
    nb_idx_free(x);

    put_be(pay, (uint32_t)-70000, 4);
    put_be(pay + 4, 123456, 4);
    CHECK_OK(nb_idx_parse(buf, make_idx(buf, 0x0C, 2, (uint32_t[]){1, 2}, pay, 8), &x));
    CHECK(x->values[0] == -70000 && x->values[1] == 123456);
    nb_idx_free(x);

    float f[2] = {1.5f, -0.25f};
    for (int i = 0; i < 2; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        put_be(pay + 4 * i, u, 4);
    }
    CHECK_OK(nb_idx_parse(buf, make_idx(buf, 0x0D, 1, (uint32_t[]){2}, pay, 8), &x));
    CHECK(x->values[0] == 1.5f && x->values[1] == -0.25f);
    nb_idx_free(x);

    double dv[3] = {3.25, -1e300, 1e-3};
    for (int i = 0; i < 3; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        put_be(pay + 8 * i, u, 8);
    }
    CHECK_OK(nb_idx_parse(buf, make_idx(buf, 0x0E, 1, (uint32_t[]){3}, pay, 24), &x));
    CHECK(x->values[0] == 3.25f && isinf(x->values[1]) && x->values[1] < 0 && x->values[2] == 1e-3f);
    nb_idx_free(x);
}

/* A zero dimension is an empty array: no payload, count 0. */
TEST(idx_zero_dimension)
{
    unsigned char buf[64];
    nb_idx *x = NULL;
    size_t len = make_idx(buf, 0x08, 3, (uint32_t[]){0, 28, 28}, NULL, 0);
    CHECK_OK(nb_idx_parse(buf, len, &x));
    CHECK(x->count == 0 && x->dims[0] == 0 && x->dims[1] == 28 && x->values);
    nb_idx_free(x);
    /* a huge other dimension does not matter when the array is empty */
    len = make_idx(buf, 0x0E, 3, (uint32_t[]){0xffffffffu, 0, 0xffffffffu}, NULL, 0);
    CHECK_OK(nb_idx_parse(buf, len, &x));
    CHECK(x->count == 0);
    nb_idx_free(x);
    len = make_idx(buf, 0x08, 2, (uint32_t[]){5, 0}, "ab", 2);
    CHECK_ERR(nb_idx_parse(buf, len, &x), NB_ERR_FORMAT, "2 trailing bytes");
    CHECK(x == NULL);
}

TEST(idx_load_raw_and_gzip)
{
    unsigned char buf[4096], pay[2 * 3 * 50 * 2];
    for (int i = 0; i < 300; i++) put_be(pay + 2 * i, (uint16_t)(i * 997 - 30000), 2);
    size_t len = make_idx(buf, 0x0B, 3, (uint32_t[]){2, 3, 50}, pay, sizeof pay);
    const char *raw = nbt_tmp_path("i16.idx"), *gz = nbt_tmp_path("i16.idx.gz");
    CHECK(write_file(raw, buf, len));
    CHECK(write_gz(gz, "wb9", buf, len));
    nb_idx *a = NULL, *b = NULL;
    CHECK_OK(nb_idx_load(raw, &a));
    CHECK_OK(nb_idx_load(gz, &b));
    CHECK(a->count == 300 && b->count == 300 && b->ndim == 3 && b->dims[2] == 50);
    for (int i = 0; i < 300; i++) {
        CHECK(a->values[i] == (float)(int16_t)(uint16_t)(i * 997 - 30000));
        CHECK(b->values[i] == a->values[i]);
    }
    nb_idx_free(a);
    nb_idx_free(b);

    /* a gzip file of two members (gzip -c a b > c) is one stream */
    const char *two = nbt_tmp_path("two.gz");
    CHECK(write_gz(two, "wb", buf, 100));
    CHECK(write_gz(two, "ab", buf + 100, len - 100));
    CHECK_OK(nb_idx_load(two, &a));
    CHECK(a->count == 300 && a->values[299] == (float)(int16_t)(uint16_t)(299 * 997 - 30000));
    nb_idx_free(a);
}

/* ---- IDX: every bad input has its own status and message ------------------------ */

TEST(idx_bad_headers)
{
    unsigned char buf[256] = {0};
    nb_idx *x = (nb_idx *)buf;   /* must come back NULL */
    CHECK_ERR(nb_idx_parse(buf, 0, &x), NB_ERR_FORMAT, "too short for the 4-byte IDX magic");
    CHECK(x == NULL);
    CHECK_ERR(nb_idx_parse("\0\0\x08", 3, &x), NB_ERR_FORMAT, "too short for the 4-byte IDX magic number (3 bytes)");
    CHECK_ERR(nb_idx_parse("\x01\0\x08\x01", 4, &x), NB_ERR_FORMAT, "bad magic: first two bytes are 01 00");
    CHECK_ERR(nb_idx_parse("\0\x02\x08\x01", 4, &x), NB_ERR_FORMAT, "bad magic: first two bytes are 00 02");
    CHECK_ERR(nb_idx_parse("\x1f\x8b\x08\x00", 4, &x), NB_ERR_FORMAT, "gzip data");
    CHECK_ERR(nb_idx_parse("\0\0\x0a\x01\0\0\0\x01x", 9, &x), NB_ERR_FORMAT, "unknown type code 0x0a");
    CHECK_ERR(nb_idx_parse("\0\0\x07\x01", 4, &x), NB_ERR_FORMAT, "unknown type code 0x07");
    CHECK_ERR(nb_idx_parse("\0\0\x08\x00", 4, &x), NB_ERR_FORMAT, "0 dimensions (1..6 supported)");
    CHECK_ERR(nb_idx_parse("\0\0\x08\x07", 4, &x), NB_ERR_FORMAT, "7 dimensions (1..6 supported)");
    CHECK_ERR(nb_idx_parse("\0\0\x08\x02\0\0\0\x01\0\0", 10, &x), NB_ERR_FORMAT,
              "truncated header: 2 dimensions need 8 bytes, found 6");
    /* size cap and overflow: refused before any allocation */
    size_t len = make_idx(buf, 0x08, 2, (uint32_t[]){65536, 65536}, NULL, 0);
    CHECK_ERR(nb_idx_parse(buf, len, &x), NB_ERR_FORMAT, "declare more than 2147483648 values (dimension 1 is 65536)");
    len = make_idx(buf, 0x0E, 6, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, NULL, 0);
    CHECK_ERR(nb_idx_parse(buf, len, &x), NB_ERR_FORMAT, "more than 2147483648 values");
    len = make_idx(buf, 0x08, 1, (uint32_t[]){0x80000000u}, NULL, 0);   /* exactly the cap: short data */
    CHECK_ERR(nb_idx_parse(buf, len, &x), NB_ERR_FORMAT, "truncated: expected 2147483648 bytes of data, found 0");
    CHECK(x == NULL);
    CHECK_ERR(nb_idx_parse(NULL, 4, &x), NB_ERR_ARG, "buffer is NULL");
    CHECK_ERR(nb_idx_parse(buf, 4, NULL), NB_ERR_ARG, "out is NULL");
}

TEST(idx_bad_lengths)
{
    unsigned char buf[64], pay[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    nb_idx *x = NULL;
    size_t len = make_idx(buf, 0x08, 2, (uint32_t[]){2, 3}, pay, 6);
    CHECK_ERR(nb_idx_parse(buf, len - 1, &x), NB_ERR_FORMAT, "truncated: expected 6 bytes of data, found 5");
    CHECK_ERR(nb_idx_parse(buf, len - 6, &x), NB_ERR_FORMAT, "truncated: expected 6 bytes of data, found 0");
    len = make_idx(buf, 0x08, 2, (uint32_t[]){2, 3}, pay, 9);
    CHECK_ERR(nb_idx_parse(buf, len, &x), NB_ERR_FORMAT, "3 trailing bytes after the 6 bytes of data");
    /* the same as files */
    const char *p = nbt_tmp_path("long.idx");
    CHECK(write_file(p, buf, len));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "3 trailing bytes after the 6 bytes of data");
    CHECK(strstr(nb_last_error(), p));
    CHECK(write_file(p, buf, len - 5));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "truncated: expected 6 bytes of data, found 4");
    /* int32: the payload must hold whole values too */
    len = make_idx(buf, 0x0C, 1, (uint32_t[]){2}, pay, 7);
    CHECK_ERR(nb_idx_parse(buf, len, &x), NB_ERR_FORMAT, "truncated: expected 8 bytes of data, found 7");
    CHECK(x == NULL);
}

TEST(idx_bad_gzip)
{
    unsigned char buf[4096], pay[600];
    for (int i = 0; i < 600; i++) pay[i] = (unsigned char)(i * 7 + i / 13);
    nb_idx *x = NULL;
    const char *p = nbt_tmp_path("bad.gz");

    size_t len = make_idx(buf, 0x08, 2, (uint32_t[]){20, 30}, pay, 600);
    CHECK(write_gz(p, "wb", buf, len - 1));            /* a valid gzip of a short file */
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "truncated: expected 600 bytes of data, found 599");
    CHECK(write_gz(p, "wb", buf, len - 600));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "truncated: expected 600 bytes of data, found 0");
    len = make_idx(buf, 0x08, 2, (uint32_t[]){20, 30}, pay, 600);
    buf[len++] = 0;
    CHECK(write_gz(p, "wb", buf, len));                /* one byte too many */
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "trailing bytes after the 600 bytes of data (the decompressed data");
    CHECK(write_gz(p, "wb", buf, 2));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "too short for the 4-byte IDX magic number (2 bytes)");
    CHECK(write_gz(p, "wb", "\x01\x02\x08\x01", 4));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "bad magic: first two bytes are 01 02");

    /* corrupt compressed data and a corrupt checksum: zlib's message */
    len = make_idx(buf, 0x08, 2, (uint32_t[]){20, 30}, pay, 600);
    CHECK(write_gz(p, "wb", buf, len));
    size_t glen;
    unsigned char *g = read_file(p, &glen);
    CHECK(g && glen > 30);
    g[glen - 6] ^= 0x55;                               /* inside the CRC-32 */
    CHECK(write_file(p, g, glen));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "corrupt gzip data: incorrect data check");
    g[glen - 6] ^= 0x55;
    g[3] = 0xe0;                                       /* reserved flag bits */
    CHECK(write_file(p, g, glen));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "corrupt gzip data");
    g[3] = 0;
    memset(g + 10, 0xff, 8);                           /* garbage deflate blocks */
    CHECK(write_file(p, g, glen));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "corrupt gzip data");
    /* a valid member followed by garbage */
    len = make_idx(buf, 0x08, 2, (uint32_t[]){20, 30}, pay, 600);
    CHECK(write_gz(p, "wb", buf, len));
    free(g);
    g = read_file(p, &glen);
    memcpy(g + glen, "garbage!", 8);
    CHECK(write_file(p, g, glen + 8));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "corrupt gzip data: incorrect header check");
    free(g);
    CHECK(x == NULL);
}

TEST(idx_open_errors)
{
    nb_idx *x = NULL;
    const char *p = nbt_tmp_path("no-such-file.idx");
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_NOTFOUND, p);
    CHECK(strstr(nb_last_error(), "no such file"));
    CHECK_ERR(nb_idx_load(nbt_tmp_path("no-dir/x.idx"), &x), NB_ERR_NOTFOUND, "no-dir/x.idx");
    CHECK_ERR(nb_idx_load(nbt_tmpdir(), &x), NB_ERR_IO, "Is a directory");
    CHECK(strstr(nb_last_error(), nbt_tmpdir()));
    CHECK_ERR(nb_idx_load(NULL, &x), NB_ERR_ARG, "path is NULL");
    CHECK(x == NULL);
}

/* Every proper prefix of a valid file fails cleanly, raw and gzipped. */
TEST(idx_every_truncation_fails)
{
    unsigned char buf[1024], pay[3 * 40 * 4];
    for (int i = 0; i < 120; i++) put_be(pay + 4 * i, (uint32_t)(i * 2654435761u), 4);
    size_t len = make_idx(buf, 0x0D, 2, (uint32_t[]){3, 40}, pay, sizeof pay);
    nb_idx *x = NULL;
    CHECK_OK(nb_idx_parse(buf, len, &x));
    nb_idx_free(x);
    x = NULL;
    const char *p = nbt_tmp_path("prefix.idx");
    for (size_t k = 0; k < len; k++) {
        CHECK_MSG(nb_idx_parse(buf, k, &x) == NB_ERR_FORMAT && !x, "parse of a %zu-byte prefix: %s", k, nb_last_error());
        CHECK(write_file(p, buf, k));
        CHECK_MSG(nb_idx_load(p, &x) == NB_ERR_FORMAT && !x, "load of a %zu-byte prefix: %s", k, nb_last_error());
    }
    const char *gp = nbt_tmp_path("prefix.idx.gz");
    CHECK(write_gz(gp, "wb", buf, len));
    size_t glen;
    unsigned char *g = read_file(gp, &glen);
    CHECK(g && glen > 20);
    CHECK_OK(nb_idx_load(gp, &x));
    nb_idx_free(x);
    x = NULL;
    for (size_t k = 0; k < glen; k++) {
        CHECK(write_file(p, g, k));
        nb_status s = nb_idx_load(p, &x);
        if (s != NB_ERR_FORMAT || x) {
            free(g);
            CHECK_MSG(0, "load of a %zu-byte gzip prefix gave %s: %s", k, nb_status_str(s), nb_last_error());
        }
        /* past the magic bytes, every failure is a gzip one */
        if (k >= 2 && !strstr(nb_last_error(), "corrupt gzip data")) {
            free(g);
            CHECK_MSG(0, "%zu-byte gzip prefix: %s", k, nb_last_error());
        }
    }
    free(g);
}

/* A valid gzip stream that inflates far past its header's size is refused
 * once the declared size is passed. The stream's end (CRC and length) is cut
 * off, so a reader that inflated it all would report a gzip error instead. */
TEST(idx_gzip_bomb)
{
    enum { ZEROS = 64 << 20 };
    unsigned char hdr[64];
    size_t len = make_idx(hdr, 0x08, 1, (uint32_t[]){16}, "0123456789abcdef", 16);
    const char *p = nbt_tmp_path("bomb.gz");
    gzFile g = gzopen(p, "wb9");
    CHECK(g);
    CHECK(gzwrite(g, hdr, (unsigned)len) == (int)len);
    unsigned char *zeros = calloc(1, 1 << 20);
    for (int i = 0; i < ZEROS >> 20; i++) gzwrite(g, zeros, 1 << 20);
    free(zeros);
    CHECK(gzclose(g) == Z_OK);
    size_t glen;
    unsigned char *b = read_file(p, &glen);
    CHECK(b && glen > 8 && glen < (1 << 20));
    CHECK(write_file(p, b, glen - 8));
    free(b);
    nb_idx *x = NULL;
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "trailing bytes after the 16 bytes of data");
    CHECK(x == NULL);

    /* a header declaring the maximum size over a few bytes of data */
    len = make_idx(hdr, 0x0E, 2, (uint32_t[]){16384, 131072}, "12345678", 8);
    CHECK(write_gz(p, "wb", hdr, len));
    CHECK_ERR(nb_idx_load(p, &x), NB_ERR_FORMAT, "truncated: expected 17179869184 bytes of data, found 8");
}

/* ---- datasets ------------------------------------------------------------------- */

TEST(dataset_from_idx_and_truncate)
{
    unsigned char ib[256], lb[64], pix[4 * 2 * 3], lab[4] = {2, 0, 1, 2};
    for (int i = 0; i < 24; i++) pix[i] = (unsigned char)(i * 11);
    nb_idx *im = NULL, *lbl = NULL;
    CHECK_OK(nb_idx_parse(ib, make_idx(ib, 0x08, 3, (uint32_t[]){4, 2, 3}, pix, 24), &im));
    CHECK_OK(nb_idx_parse(lb, make_idx(lb, 0x08, 1, (uint32_t[]){4}, lab, 4), &lbl));
    nb_dataset *d = NULL;
    CHECK_OK(nb_dataset_from_idx(im, lbl, 3, &d));
    CHECK(d->n == 4 && d->c == 1 && d->h == 2 && d->w == 3 && d->nclasses == 3);
    for (int i = 0; i < 24; i++) CHECK(d->x[i] == (float)pix[i] / 255.0f);
    for (int i = 0; i < 4; i++) CHECK(d->y[i] == lab[i]);
    nb_dataset_truncate(d, 10);
    CHECK(d->n == 4);
    nb_dataset_truncate(d, 2);
    CHECK(d->n == 2 && d->y[1] == 0);
    nb_dataset_free(d);

    nb_dataset *bad = (nb_dataset *)ib;
    CHECK_ERR(nb_dataset_from_idx(im, lbl, 2, &bad), NB_ERR_FORMAT, "label 2 of sample 0 is not a class in [0, 2)");
    CHECK(bad == NULL);
    CHECK_ERR(nb_dataset_from_idx(im, lbl, 0, &bad), NB_ERR_ARG, "nclasses is 0");
    CHECK_ERR(nb_dataset_from_idx(lbl, lbl, 3, &bad), NB_ERR_SHAPE, "images have 1 dimensions");
    CHECK_ERR(nb_dataset_from_idx(im, im, 3, &bad), NB_ERR_SHAPE, "labels have 3 dimensions");
    nb_idx_free(lbl);
    CHECK_OK(nb_idx_parse(lb, make_idx(lb, 0x08, 1, (uint32_t[]){3}, lab, 3), &lbl));
    CHECK_ERR(nb_dataset_from_idx(im, lbl, 3, &bad), NB_ERR_SHAPE, "4 images but 3 labels");
    nb_idx_free(lbl);
    float fl[4] = {0, 1, 1.5f, 2};   /* a non-integer label */
    unsigned char fb[16];
    for (int i = 0; i < 4; i++) {
        uint32_t u;
        memcpy(&u, &fl[i], 4);
        put_be(fb + 4 * i, u, 4);
    }
    CHECK_OK(nb_idx_parse(lb, make_idx(lb, 0x0D, 1, (uint32_t[]){4}, fb, 16), &lbl));
    CHECK_ERR(nb_dataset_from_idx(im, lbl, 3, &bad), NB_ERR_FORMAT, "label 1.5 of sample 2");
    nb_idx_free(lbl);
    nb_idx_free(im);
    nb_dataset_free(NULL);
}

/* Write a small fake Fashion-MNIST split into dir (images raw, labels gzipped). */
static int write_fake_split(const char *dir, int n, int h, int nlab, int badlabel)
{
    static unsigned char buf[64 + 8 * 28 * 28];
    unsigned char pix[8 * 28 * 28], lab[8];
    char path[512];
    for (int i = 0; i < n * h * 28; i++) pix[i] = (unsigned char)(i * 31 + 7);
    for (int i = 0; i < nlab; i++) lab[i] = (unsigned char)(i % 10);
    if (badlabel) lab[nlab - 1] = 10;
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    size_t len = make_idx(buf, 0x08, 3, (uint32_t[]){(uint32_t)n, (uint32_t)h, 28}, pix, (size_t)n * h * 28);
    if (!write_file(path, buf, len)) return 0;
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    len = make_idx(buf, 0x08, 1, (uint32_t[]){(uint32_t)nlab}, lab, (size_t)nlab);
    return write_gz(path, "wb", buf, len);
}

TEST(fashion_mnist_small_dir)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fmnist", nbt_tmpdir());
    CHECK(mkdir(dir, 0755) == 0);
    CHECK(write_fake_split(dir, 5, 28, 5, 0));
    nb_dataset *d = NULL;
    CHECK_OK(nb_fashion_mnist_load(dir, 0, &d));
    CHECK(d->n == 5 && d->c == 1 && d->h == 28 && d->w == 28 && d->nclasses == 10);
    for (int i = 0; i < 5 * 784; i++) CHECK(d->x[i] == (float)(unsigned char)(i * 31 + 7) / 255.0f);
    for (int i = 0; i < 5; i++) CHECK(d->y[i] == i);
    nb_dataset_free(d);
    d = NULL;

    CHECK(write_fake_split(dir, 5, 28, 4, 0));
    CHECK_ERR(nb_fashion_mnist_load(dir, 0, &d), NB_ERR_FORMAT, "has 5 images but 4 labels");
    CHECK(write_fake_split(dir, 5, 28, 5, 1));
    CHECK_ERR(nb_fashion_mnist_load(dir, 0, &d), NB_ERR_FORMAT, "label 10 of sample 4 is not a class in [0, 10)");
    CHECK(write_fake_split(dir, 5, 27, 5, 0));
    CHECK_ERR(nb_fashion_mnist_load(dir, 0, &d), NB_ERR_FORMAT, "holds (5,27,28) values of type 0x08, expected (n,28,28) ubyte");
    CHECK(d == NULL);
    /* the train files are missing here: the message names the file and the package */
    CHECK_ERR(nb_fashion_mnist_load(dir, 1, &d), NB_ERR_NOTFOUND, "train-labels-idx1-ubyte.gz not found");
    CHECK(strstr(nb_last_error(), dir));
    /* the environment variable picks the default directory */
    const char *old = getenv("NABLA_FASHION_MNIST");
    char *saved = old ? strdup(old) : NULL;
    setenv("NABLA_FASHION_MNIST", dir, 1);
    int same = strcmp(nb_fashion_mnist_default_dir(), dir) == 0;
    CHECK(write_fake_split(dir, 3, 28, 3, 0));
    nb_status s = nb_fashion_mnist_load(NULL, 0, &d);
    if (saved) setenv("NABLA_FASHION_MNIST", saved, 1);
    else unsetenv("NABLA_FASHION_MNIST");
    free(saved);
    CHECK(same);
    CHECK_OK(s);
    CHECK(d->n == 3);
    nb_dataset_free(d);
}

TEST(fashion_mnist_missing_dir)
{
    nb_dataset *d = NULL;
    const char *dir = nbt_tmp_path("no-fashion-here");
    CHECK_ERR(nb_fashion_mnist_load(dir, 0, &d), NB_ERR_NOTFOUND,
              "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set NABLA_FASHION_MNIST");
    CHECK(strstr(nb_last_error(), "no-fashion-here/t10k-labels-idx1-ubyte.gz"));
    CHECK(d == NULL);
    CHECK(strcmp(nb_fashion_mnist_classes[0], "T-shirt/top") == 0);
    CHECK(strcmp(nb_fashion_mnist_classes[9], "Ankle boot") == 0);
}

/* The real data from the Debian package (or $NABLA_FASHION_MNIST). */
TEST(fashion_mnist_real)
{
    for (int train = 0; train <= 1; train++) {
        nb_dataset *d = NULL;
        CHECK_OK(nb_fashion_mnist_load(NULL, train, &d));
        int64_t n = train ? 60000 : 10000;
        CHECK(d->n == n && d->c == 1 && d->h == 28 && d->w == 28 && d->nclasses == 10);
        int64_t hist[10] = {0};
        for (int64_t i = 0; i < d->n; i++) {
            if (d->y[i] < 0 || d->y[i] > 9) { nb_dataset_free(d); CHECK(0); }
            hist[d->y[i]]++;
        }
        for (int c = 0; c < 10; c++) CHECK_MSG(hist[c] == n / 10, "class %d has %lld samples", c, (long long)hist[c]);
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < d->n * 784; i++) {
            lo = d->x[i] < lo ? d->x[i] : lo;
            hi = d->x[i] > hi ? d->x[i] : hi;
        }
        CHECK(lo == 0 && hi == 1);
        /* pixel sums of the first image, from Python's gzip module */
        double sum = 0;
        for (int i = 0; i < 784; i++) sum += d->x[i] * 255.0f;
        CHECK_NEAR(sum, train ? 76247 : 33456, 0, 1e-2);
        if (!train) {
            CHECK(d->y[0] == 9);   /* Ankle boot */
            CHECK(d->y[1] == 2 && d->y[2] == 1);
            CHECK(d->x[577] == 1.0f);
        } else {
            CHECK(d->y[0] == 9 && d->y[59999] == 5);
        }
        nb_dataset_free(d);
    }
}

/* ---- loaders -------------------------------------------------------------------- */

/* n samples of shape (1,2,3): x[i] = 6i .. 6i+5, label i. */
static nb_dataset *ramp_dataset(int64_t n)
{
    nb_dataset *d = calloc(1, sizeof *d);
    d->n = n;
    d->c = 1, d->h = 2, d->w = 3;
    d->nclasses = (int)n;
    d->x = malloc((size_t)(n ? n : 1) * 6 * sizeof(float));
    d->y = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n * 6; i++) d->x[i] = (float)i;
    for (int64_t i = 0; i < n; i++) d->y[i] = (int32_t)i;
    return d;
}

/* One epoch's labels into order[]; returns the number of batches, -1 on a
 * mismatch between a batch's x and the dataset row of its label. */
static int run_epoch(nb_loader *l, nb_ctx *ctx, const nb_dataset *d, int32_t *order, int64_t *sizes)
{
    nb_batch b;
    int nb = 0;
    int64_t k = 0;
    for (;;) {
        nb_ctx_reset(ctx);
        if (nb_loader_next(l, ctx, &b) != NB_OK) return -1;
        if (b.n == 0) break;
        if (b.x->ndim != 4 || b.x->shape[0] != b.n || b.x->shape[1] != 1 || b.x->shape[2] != 2 || b.x->shape[3] != 3)
            return -1;
        for (int64_t i = 0; i < b.n; i++) {
            if (memcmp(b.x->data + 6 * i, d->x + 6 * (int64_t)b.y[i], 6 * sizeof(float))) return -1;
            order[k++] = b.y[i];
        }
        if (sizes) sizes[nb] = b.n;
        nb++;
    }
    return nb;
}

TEST(loader_batch_counts)
{
    nb_dataset *d = ramp_dataset(10);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_loader *l = NULL;
    int32_t order[10];
    int64_t sizes[8];
    CHECK_OK(nb_loader_new(d, 4, 0, 0, 1, &l));
    CHECK(nb_loader_num_batches(l) == 3);
    CHECK(run_epoch(l, ctx, d, order, sizes) == 3);
    CHECK(sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 2);
    for (int i = 0; i < 10; i++) CHECK(order[i] == i);   /* no shuffle: dataset order */
    nb_batch b;
    CHECK_OK(nb_loader_next(l, ctx, &b));                 /* still at the end */
    CHECK(b.n == 0 && b.x == NULL);
    nb_loader_start_epoch(l);
    CHECK(run_epoch(l, ctx, d, order, sizes) == 3);
    nb_loader_free(l);

    CHECK_OK(nb_loader_new(d, 4, 1, 1, 1, &l));
    CHECK(nb_loader_num_batches(l) == 2);
    CHECK(run_epoch(l, ctx, d, order, sizes) == 2);
    CHECK(sizes[0] == 4 && sizes[1] == 4);
    nb_loader_free(l);

    CHECK_OK(nb_loader_new(d, 5, 1, 1, 1, &l));           /* exact fit */
    CHECK(nb_loader_num_batches(l) == 2 && run_epoch(l, ctx, d, order, sizes) == 2);
    nb_loader_free(l);
    CHECK_OK(nb_loader_new(d, 64, 1, 0, 1, &l));          /* batch larger than the data */
    CHECK(nb_loader_num_batches(l) == 1 && run_epoch(l, ctx, d, order, sizes) == 1 && sizes[0] == 10);
    nb_loader_free(l);
    CHECK_OK(nb_loader_new(d, 64, 1, 1, 1, &l));
    CHECK(nb_loader_num_batches(l) == 0 && run_epoch(l, ctx, d, order, sizes) == 0);
    nb_loader_free(l);

    l = (nb_loader *)d;
    CHECK_ERR(nb_loader_new(d, 0, 1, 0, 1, &l), NB_ERR_ARG, "batch size 0");
    CHECK(l == NULL);
    CHECK_ERR(nb_loader_new(d, -3, 1, 0, 1, &l), NB_ERR_ARG, "batch size -3");
    CHECK_ERR(nb_loader_new(NULL, 4, 1, 0, 1, &l), NB_ERR_ARG, "dataset is NULL");

    nb_dataset *e = ramp_dataset(0);                      /* empty: no batches */
    CHECK_OK(nb_loader_new(e, 4, 1, 0, 1, &l));
    CHECK(nb_loader_num_batches(l) == 0 && run_epoch(l, ctx, e, order, sizes) == 0);
    nb_loader_free(l);
    nb_dataset_free(e);
    nb_ctx_free(ctx);
    nb_dataset_free(d);
}

TEST(loader_shuffle_order)
{
    enum { N = 100 };
    nb_dataset *d = ramp_dataset(N);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_loader *a = NULL, *b = NULL, *c = NULL;
    int32_t oa[3][N], ob[3][N], oc[N];
    CHECK_OK(nb_loader_new(d, 7, 1, 0, 42, &a));
    CHECK_OK(nb_loader_new(d, 7, 1, 0, 42, &b));
    CHECK_OK(nb_loader_new(d, 7, 1, 0, 43, &c));
    CHECK(nb_loader_num_batches(a) == 15);
    for (int e = 0; e < 3; e++) {
        if (e) nb_loader_start_epoch(a), nb_loader_start_epoch(b);
        CHECK(run_epoch(a, ctx, d, oa[e], NULL) == 15);
        CHECK(run_epoch(b, ctx, d, ob[e], NULL) == 15);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) seen[oa[e][i]]++;
        for (int i = 0; i < N; i++) CHECK_MSG(seen[i] == 1, "epoch %d saw sample %d %d times", e, i, seen[i]);
        CHECK(memcmp(oa[e], ob[e], sizeof oa[e]) == 0);   /* same seed, same order */
    }
    CHECK(memcmp(oa[0], oa[1], sizeof oa[0]) != 0);        /* new epoch, new order */
    CHECK(memcmp(oa[1], oa[2], sizeof oa[0]) != 0);
    int identity = 1;
    for (int i = 0; i < N; i++) identity &= oa[0][i] == i;
    CHECK(!identity);
    CHECK(run_epoch(c, ctx, d, oc, NULL) == 15);
    CHECK(memcmp(oa[0], oc, sizeof oc) != 0);              /* another seed, another order */
    /* epoch 1's order does not depend on how much of epoch 0 was read */
    nb_loader_free(b);
    CHECK_OK(nb_loader_new(d, 7, 1, 0, 42, &b));
    nb_batch bt;
    CHECK_OK(nb_loader_next(b, ctx, &bt));
    nb_loader_start_epoch(b);
    CHECK(run_epoch(b, ctx, d, ob[1], NULL) == 15);
    CHECK(memcmp(oa[1], ob[1], sizeof oa[1]) == 0);
    nb_loader_free(a);
    nb_loader_free(b);
    nb_loader_free(c);
    nb_ctx_free(ctx);
    nb_dataset_free(d);
}

/* ---- fuzz target, replayed over its corpus and random mutations ------------------ */

TEST(fuzz_idx_replay)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/fuzz/fuzz_idx tests/fuzz/corpus/idx --random 2000 >/dev/null", nbt_build_dir());
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "`%s` exited with status %d", cmd, rc);
}
