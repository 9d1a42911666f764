/* safetensors reader/writer and the JSON parser under it. */
#include "test.h"
#include "../src/io/json.h"
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------- */

/* A file image: 8-byte LE length of hdr, hdr, then dlen bytes of data (zeros
 * if data is NULL). Caller frees. */
static uint8_t *image(const char *hdr, size_t hlen, const void *data, size_t dlen, size_t *len)
{
    *len = 8 + hlen + dlen;
    uint8_t *b = calloc(1, *len);
    if (!b) return NULL;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, hdr, hlen);
    if (data && dlen) memcpy(b + 8 + hlen, data, dlen);
    return b;
}

/* Parse a file made of hdr and dlen zero bytes; frees any result. */
static nb_status hparse(const char *hdr, size_t dlen)
{
    size_t len;
    uint8_t *b = image(hdr, strlen(hdr), NULL, dlen, &len);
    nb_safetensors *f = (nb_safetensors *)1;
    nb_status s = b ? nb_safetensors_parse(b, len, &f) : NB_ERR_NOMEM;
    if (s == NB_OK) nb_safetensors_free(f);
    else if (f != NULL) s = NB_ERR_STATE; /* *out must be NULL on failure */
    free(b);
    return s;
}

/* This file's own folder in the test run's temporary directory, so its
 * count of leftover temporary files sees only this file's saves. */
static const char *st_dir(void)
{
    static char dir[300];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/st", nbt_tmpdir());
        mkdir(dir, 0755);
    }
    return dir;
}

static void tpath(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", st_dir(), name);
}

static int put_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = fwrite(p, 1, n, fp);
    return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) { free(b); b = NULL; }
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* Entries of dir whose name contains ".tmp." (leftover temporary files). */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint64_t rd64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* x rounded to nearest-even in a binary format with p significand bits,
 * smallest normal exponent emin, and |x| >= inf_at rounding to infinity. An
 * independent reference for the writer's F16/BF16 rounding. */
static double ref_round(double x, int p, int emin, double inf_at)
{
    if (isnan(x)) return x;
    double a = fabs(x);
    if (a >= inf_at) return copysign(INFINITY, x);
    int e;
    frexp(a, &e);
    int E = a == 0 ? emin : e - 1;
    if (E < emin) E = emin;
    double q = ldexp(1.0, E - (p - 1));
    return copysign(nearbyint(a / q) * q, x);
}
#define REF_F16(x) ref_round((x), 11, -14, 65520.0)
#define REF_BF16(x) ref_round((x), 8, -126, 0x1.ffp127)

/* IEEE half bits -> value, by the definition. */
static double ref_half(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* ---- round trips ------------------------------------------------------- */

TEST(st_roundtrip_f32_with_metadata)
{
    char path[512];
    tpath(path, sizeof path, "st_rt_f32.safetensors");
    float w[6] = {1.5f, -2.25f, 0.0f, -0.0f, INFINITY, NAN};
    float s = 3.0f, dummy = 0;
    float big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (float)i * 0.001f - 0.3f;
    const char *odd = "q\"uo\\te\n\tcaf\xc3\xa9/\x01";
    nb_st_entry e[] = {
        {"features.0.weight", 2, (int64_t[]){2, 3}, w},
        {"scalar", 0, NULL, &s},
        {"empty", 2, (int64_t[]){0, 4}, NULL},
        {odd, 1, (int64_t[]){1000}, big},
        {"zero_dim_with_data", 3, (int64_t[]){2, 0, 1}, &dummy},
    };
    const char *meta[] = {"format", "pt", "note \"x\"", "line1\nline2 \xe2\x9c\x93"};
    CHECK_OK(nb_safetensors_save(path, e, 5, NB_ST_F32, meta, 2));

    nb_safetensors *f = NULL;
    CHECK_OK(nb_safetensors_load(path, &f));
    CHECK(f->n == 5);
    for (int i = 0; i < 5; i++) {
        const nb_st_tensor *t = &f->tensors[i];
        CHECK_MSG(!strcmp(t->name, e[i].name), "tensor %d is %s", i, t->name); /* offset order = given order */
        CHECK(!strcmp(t->dtype, "F32"));
        CHECK(t->ndim == e[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] == e[i].shape[d]);
            numel *= t->shape[d];
        }
        CHECK(t->numel == numel);
        if (numel == 0) CHECK(t->data == NULL);
        for (int64_t k = 0; k < numel; k++) CHECK_MSG(fbits(t->data[k]) == fbits(e[i].data[k]), "%s[%d]", t->name, (int)k);
    }
    CHECK(f->nmeta == 2);
    CHECK(!strcmp(nb_safetensors_meta(f, "format"), "pt"));
    CHECK(!strcmp(nb_safetensors_meta(f, "note \"x\""), meta[3]));
    CHECK(nb_safetensors_meta(f, "absent") == NULL);
    CHECK(nb_safetensors_find(f, odd) == &f->tensors[3]);
    CHECK(nb_safetensors_find(f, "nope") == NULL);
    CHECK(nb_safetensors_find(NULL, "x") == NULL && nb_safetensors_meta(f, NULL) == NULL);
    nb_safetensors_free(f);
    nb_safetensors_free(NULL);

    /* The layout: metadata first, header padded with spaces to 8 bytes. */
    size_t len;
    uint8_t *b = slurp(path, &len);
    CHECK(b);
    uint64_t n = rd64le(b);
    CHECK(n % 8 == 0 && 8 + n <= len);
    CHECK(!memcmp(b + 8, "{\"__metadata__\":{\"format\":\"pt\",", 31));
    CHECK(len == 8 + n + 4 * (6 + 1 + 1000));
    CHECK(b[8 + n - 1] == ' ' || b[8 + n - 1] == '}');
    free(b);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
    CHECK(count_tmp(st_dir()) == 0);
}

TEST(st_roundtrip_f16_bf16)
{
    char path[512];
    enum { N = 40000 };
    float *x = malloc(N * sizeof *x);
    CHECK(x);
    /* Hand-picked edges, then random bit patterns and random values in the
     * ranges where rounding matters. */
    const float edge[] = {0.0f, -0.0f, 1.0f, -1.0f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-8f,
                          1.0f + 3 * 0x1p-8f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e9f, 0x1p-24f, 0x1p-25f,
                          0x1.000002p-25f, 3 * 0x1p-26f, 0x1p-14f, 0x1.ffcp-15f, 0x1p-133f, 0x1p-134f, FLT_MAX,
                          -FLT_MAX, FLT_MIN, 0x1p-149f, INFINITY, -INFINITY, NAN, 3.14159265f};
    int ne = (int)(sizeof edge / sizeof edge[0]);
    nb_rng r;
    nb_rng_seed(&r, 42);
    for (int i = 0; i < N; i++) {
        if (i < ne) x[i] = edge[i];
        else if (i % 3 == 0) x[i] = bitsf((uint32_t)nb_rng_u64(&r));
        else if (i % 3 == 1) x[i] = (nb_rng_uniform(&r) - 0.5f) * 140000.0f;
        else x[i] = ldexpf(nb_rng_uniform(&r) - 0.5f, -(int)nb_rng_below(&r, 30));
    }
    for (int pass = 0; pass < 2; pass++) {
        nb_st_dtype dt = pass ? NB_ST_BF16 : NB_ST_F16;
        tpath(path, sizeof path, pass ? "st_rt_bf16.safetensors" : "st_rt_f16.safetensors");
        nb_st_entry e = {"x", 1, (int64_t[]){N}, x};
        const char *meta[] = {"dtype", pass ? "bf16" : "f16"};
        CHECK_OK(nb_safetensors_save(path, &e, 1, dt, meta, 1));
        nb_safetensors *f;
        CHECK_OK(nb_safetensors_load(path, &f));
        CHECK(f->n == 1 && f->tensors[0].numel == N);
        CHECK(!strcmp(f->tensors[0].dtype, pass ? "BF16" : "F16"));
        CHECK(!strcmp(nb_safetensors_meta(f, "dtype"), meta[1]));
        int bad = -1;
        for (int i = 0; i < N && bad < 0; i++) {
            double want = pass ? REF_BF16(x[i]) : REF_F16(x[i]);
            float got = f->tensors[0].data[i];
            if (!(isnan(want) ? isnan(got) : (got == want && !signbit(got) == !signbit(want)))) bad = i;
        }
        if (bad >= 0)
            nbt_fail(__FILE__, __LINE__, "%s: %a became %a, expected %a", meta[1], x[bad], f->tensors[0].data[bad],
                     pass ? REF_BF16(x[bad]) : REF_F16(x[bad]));
        nb_safetensors_free(f);
        if (bad >= 0) break;

        /* A few exact encodings. */
        size_t len;
        uint8_t *b = slurp(path, &len);
        CHECK(b);
        const uint8_t *d = b + 8 + rd64le(b);
#define HALF(i) ((uint16_t)(d[2 * (i)] | d[2 * (i) + 1] << 8))
        if (!pass) {
            CHECK(HALF(0) == 0x0000 && HALF(1) == 0x8000 && HALF(2) == 0x3c00);
            CHECK(HALF(4) == 0x3c00 && HALF(5) == 0x3c02); /* ties to even */
            CHECK(HALF(8) == 0x7bff && HALF(9) == 0x7bff && HALF(10) == 0x7c00 && HALF(11) == 0xfc00);
            CHECK(HALF(13) == 0x0001 && HALF(14) == 0x0000 && HALF(15) == 0x0001 && HALF(16) == 0x0001);
            CHECK(HALF(17) == 0x0400 && HALF(18) == 0x0400);
            CHECK((HALF(27) & 0x7c00) == 0x7c00 && (HALF(27) & 0x3ff));
        } else {
            CHECK(HALF(2) == 0x3f80 && HALF(6) == 0x3f80 && HALF(7) == 0x3f82);
            CHECK(HALF(21) == 0x7f80 && HALF(22) == 0xff80); /* FLT_MAX rounds up to inf */
            CHECK(HALF(27) == 0x7fc0);
        }
#undef HALF
        free(b);
    }
    free(x);
}

TEST(st_half_decode_exhaustive)
{
    /* Every F16 and BF16 bit pattern, from a hand-made file; back through the
     * writer they must give the same bits (NaNs stay NaNs). */
    static uint8_t data[2 * 65536];
    for (int i = 0; i < 65536; i++) { data[2 * i] = (uint8_t)i; data[2 * i + 1] = (uint8_t)(i >> 8); }
    for (int pass = 0; pass < 2; pass++) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "{\"h\":{\"dtype\":\"%s\",\"shape\":[65536],\"data_offsets\":[0,131072]}}",
                 pass ? "BF16" : "F16");
        size_t len;
        uint8_t *b = image(hdr, strlen(hdr), data, sizeof data, &len);
        nb_safetensors *f;
        CHECK_OK(nb_safetensors_parse(b, len, &f));
        free(b);
        const float *v = f->tensors[0].data;
        int bad = -1;
        for (int i = 0; i < 65536 && bad < 0; i++) {
            double want = pass ? (double)bitsf((uint32_t)i << 16) : ref_half((uint16_t)i);
            if (!(isnan(want) ? isnan(v[i]) : (v[i] == want && !signbit(v[i]) == !signbit(want)))) bad = i;
        }
        CHECK_MSG(bad < 0, "%s 0x%04x decoded to %a", pass ? "BF16" : "F16", bad, v[bad]);
        char path[512];
        tpath(path, sizeof path, "st_half_all.safetensors");
        nb_st_entry e = {"h", 1, (int64_t[]){65536}, v};
        nb_status s = nb_safetensors_save(path, &e, 1, pass ? NB_ST_BF16 : NB_ST_F16, NULL, 0);
        nb_safetensors_free(f);
        CHECK_OK(s);
        b = slurp(path, &len);
        CHECK(b && len == 8 + rd64le(b) + sizeof data);
        const uint8_t *d = b + 8 + rd64le(b);
        for (int i = 0; i < 65536 && bad < 0; i++) {
            uint16_t got = (uint16_t)(d[2 * i] | d[2 * i + 1] << 8);
            int expnan = pass ? 0x7f80 : 0x7c00, mant = pass ? 0x7f : 0x3ff;
            int isn = (i & expnan) == expnan && (i & mant);
            if (isn ? !((got & expnan) == expnan && (got & mant)) : got != i) bad = i;
        }
        free(b);
        CHECK_MSG(bad < 0, "%s 0x%04x did not survive a round trip", pass ? "BF16" : "F16", bad);
    }
}

TEST(st_f64_conversion)
{
    const double v[] = {0.1, -2.5, 1e300, -1e300, 1e-50, (double)FLT_MAX + 0x1p102, 0x1.ffffffp127, -0.0, NAN};
    uint8_t data[sizeof v];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t u;
        memcpy(&u, &v[i], 8);
        for (int k = 0; k < 8; k++) data[8 * i + k] = (uint8_t)(u >> (8 * k));
    }
    const char *hdr = "{\"d\":{\"dtype\":\"F64\",\"shape\":[9],\"data_offsets\":[0,72]}}";
    size_t len;
    uint8_t *b = image(hdr, strlen(hdr), data, sizeof data, &len);
    nb_safetensors *f;
    nb_status s = nb_safetensors_parse(b, len, &f);
    free(b);
    CHECK_OK(s);
    const float *x = f->tensors[0].data;
    int ok = x[0] == 0.1f && x[1] == -2.5f && x[2] == INFINITY && x[3] == -INFINITY && x[4] == 0.0f &&
             x[5] == FLT_MAX && x[6] == INFINITY && x[7] == 0.0f && signbit(x[7]) && isnan(x[8]);
    CHECK(!strcmp(f->tensors[0].dtype, "F64"));
    nb_safetensors_free(f);
    CHECK(ok);
}

TEST(st_integer_dtypes)
{
    /* What a PyTorch state_dict holds besides floats (BatchNorm's
     * num_batches_tracked is I64): little-endian two's complement. */
    static const uint8_t data[] = {
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x05, 0, 0, 0, 0, 0, 0, 0x01, /* I64: -2, 2^56 + 5 */
        0x00, 0x00, 0x00, 0x80, 0xff, 0xff, 0xff, 0x7f,                               /* I32: -2^31, 2^31-1 */
        0x00, 0x80, 0x34, 0x12,                                                       /* I16: -32768, 0x1234 */
        0x80, 0x7f,                                                                   /* I8: -128, 127 */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,                               /* U64: 2^64-1 */
        0xff, 0xff, 0xff, 0xff,                                                       /* U32 */
        0xff, 0xff,                                                                   /* U16 */
        0xff, 0x00,                                                                   /* U8 */
        0x01, 0x00, 0x02,                                                             /* BOOL */
    };
    const char *hdr = "{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                      "\"c\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[24,28]},"
                      "\"d\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[28,30]},"
                      "\"e\":{\"dtype\":\"U64\",\"shape\":[],\"data_offsets\":[30,38]},"
                      "\"f\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[38,42]},"
                      "\"g\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[42,44]},"
                      "\"h\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[44,46]},"
                      "\"i\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[46,49]}}";
    size_t len;
    uint8_t *b = image(hdr, strlen(hdr), data, sizeof data, &len);
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_parse(b, len, &f);
    free(b);
    CHECK_OK(s);
    const float want[] = {-2.0f, 0x1p56f, -0x1p31f, 2147483647.0f, -32768.0f, 4660.0f, -128.0f, 127.0f,
                          0x1p64f, 4294967295.0f, 65535.0f, 255.0f, 0.0f, 1.0f, 0.0f, 1.0f};
    const char *dtypes[] = {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"};
    int k = 0, ok = f->n == 9;
    for (int i = 0; ok && i < f->n; i++) {
        ok = !strcmp(f->tensors[i].dtype, dtypes[i]);
        for (int64_t j = 0; ok && j < f->tensors[i].numel; j++, k++) ok = f->tensors[i].data[j] == want[k];
    }
    nb_safetensors_free(f);
    CHECK_MSG(ok && k == 16, "integer values differ at element %d", k);
}

TEST(st_load_header_only)
{
    char path[512];
    tpath(path, sizeof path, "st_header_only.safetensors");
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    nb_st_entry e = {"w", 2, shape, w};
    const char *meta[] = {"model", "mlp"};
    CHECK_OK(nb_safetensors_save(path, &e, 1, NB_ST_F32, meta, 1));
    nb_safetensors *f = NULL;
    CHECK_OK(nb_safetensors_load_header(path, &f));
    int ok = f->n == 1 && f->tensors[0].numel == 6 && f->tensors[0].data == NULL &&
             !strcmp(f->tensors[0].dtype, "F32") && !strcmp(nb_safetensors_meta(f, "model"), "mlp");
    nb_safetensors_free(f);
    CHECK(ok);
    /* The header is still checked against the file's size. */
    size_t len;
    uint8_t *b = slurp(path, &len);
    CHECK(b && put_file(path, b, len - 1) == 0);
    free(b);
    f = (nb_safetensors *)1;
    CHECK_ERR(nb_safetensors_load_header(path, &f), NB_ERR_FORMAT, "file is truncated");
    CHECK(f == NULL);
    CHECK_ERR(nb_safetensors_load_header(NULL, &f), NB_ERR_ARG, "nb_safetensors_load_header: path is NULL");
}

/* ---- known bytes ----------------------------------------------------------- */

TEST(st_known_bytes)
{
    /* The layout of the format's documentation, made by hand. */
    const char hdr[] = "{\"test\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"__metadata__\":{\"foo\":\"bar\"}}";
    const uint8_t data[16] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40,
                              0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0xc0};
    size_t len;
    uint8_t *b = image(hdr, sizeof hdr - 1, data, 16, &len);
    nb_safetensors *f;
    nb_status s = nb_safetensors_parse(b, len, &f);
    free(b);
    CHECK_OK(s);
    CHECK(f->n == 1 && f->nmeta == 1 && !strcmp(f->meta_keys[0], "foo") && !strcmp(f->meta_values[0], "bar"));
    const nb_st_tensor *t = nb_safetensors_find(f, "test");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 2 && t->numel == 4);
    CHECK(t->data[0] == 1.0f && t->data[1] == 2.0f && t->data[2] == 3.0f && t->data[3] == -4.0f);
    nb_safetensors_free(f);

    /* The writer's output, byte for byte. */
    char path[512];
    tpath(path, sizeof path, "st_known.safetensors");
    nb_st_entry e[] = {{"a", 1, (int64_t[]){2}, (float[]){1.0f, -2.0f}}, {"b\"c", 0, NULL, (float[]){0.5f}}};
    const char *meta[] = {"k", "v"};
    CHECK_OK(nb_safetensors_save(path, e, 2, NB_ST_F32, meta, 1));
    const char want_hdr[] = "{\"__metadata__\":{\"k\":\"v\"},"
                            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\\\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}";
    size_t hl = sizeof want_hdr - 1, padded = (hl + 7) / 8 * 8;
    uint8_t want[512] = {0};
    want[0] = (uint8_t)padded;
    memcpy(want + 8, want_hdr, hl);
    memset(want + 8 + hl, ' ', padded - hl);
    const uint8_t wdata[12] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0, 0x3f};
    memcpy(want + 8 + padded, wdata, 12);
    b = slurp(path, &len);
    CHECK(b);
    int same = len == 8 + padded + 12 && !memcmp(b, want, len);
    free(b);
    CHECK_MSG(same, "the writer's bytes differ from the expected file");
}

TEST(st_reference_fixture)
{
    /* Written by scripts/gen_safetensors_fixtures.py from PyTorch tensors in
     * the layout of safetensors' save_file. */
    nb_safetensors *f;
    CHECK_OK(nb_safetensors_load(nbt_fixture("st_reference.safetensors"), &f));
    const char *order[] = {"x.f64", "empty", "features.0.randn", "scalar", "weight", "emb.bf16", "bias.f16"};
    CHECK(f->n == 7);
    for (int i = 0; i < 7; i++) CHECK_MSG(!strcmp(f->tensors[i].name, order[i]), "tensor %d: %s", i, f->tensors[i].name);
    const nb_st_tensor *t = nb_safetensors_find(f, "weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    for (int i = 0; i < 6; i++) CHECK(t->data[i] == i * 0.25f - 0.5f);
    t = nb_safetensors_find(f, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && t->data[0] == 7.0f);
    t = nb_safetensors_find(f, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && t->numel == 0 && !t->data);
    t = nb_safetensors_find(f, "bias.f16");
    CHECK(t && !strcmp(t->dtype, "F16") && t->numel == 4);
    CHECK(t->data[0] == 1.5f && t->data[1] == -2.0f && t->data[2] == 65504.0f && t->data[3] == 0x1p-24f);
    t = nb_safetensors_find(f, "emb.bf16");
    CHECK(t && !strcmp(t->dtype, "BF16") && t->shape[0] == 2 && t->shape[1] == 2);
    CHECK(t->data[0] == 1.0f && t->data[1] == -0.5f && t->data[2] == 3.140625f && t->data[3] == -INFINITY);
    t = nb_safetensors_find(f, "x.f64");
    CHECK(t && !strcmp(t->dtype, "F64") && t->data[0] == 0.1f && t->data[1] == -INFINITY && t->data[2] == 2.5f);
    t = nb_safetensors_find(f, "features.0.randn");
    CHECK(t && t->numel == 20);
    double sum = 0;
    for (int i = 0; i < 20; i++) sum += t->data[i];
    CHECK(!strcmp(nb_safetensors_meta(f, "format"), "pt"));
    CHECK(!strcmp(nb_safetensors_meta(f, "note"), "caf\xc3\xa9 \xe2\x9c\x93"));
    CHECK_NEAR(sum, strtod(nb_safetensors_meta(f, "randn_sum"), NULL), 0, 1e-9);
    nb_safetensors_free(f);
}

TEST(st_json_escapes_in_names)
{
    /* Keys may be escaped, even the field names; names decode to UTF-8. */
    const char *hdr = "{\"\\u00e9\\ud83d\\ude00\\n\\/\":{\"\\u0064type\":\"F32\",\"shape\":[1],"
                      "\"data_offsets\":[0,4]}}      ";
    size_t len;
    uint8_t *b = image(hdr, strlen(hdr), (uint8_t[]){0, 0, 0x80, 0x3f}, 4, &len);
    nb_safetensors *f;
    nb_status s = nb_safetensors_parse(b, len, &f);
    free(b);
    CHECK_OK(s);
    CHECK(!strcmp(f->tensors[0].name, "\xc3\xa9\xf0\x9f\x98\x80\n/") && f->tensors[0].data[0] == 1.0f);
    nb_safetensors_free(f);
    CHECK_OK(hparse("{}", 0));
    CHECK_OK(hparse("{}      \t\r\n ", 0));
    CHECK_OK(hparse("{\"__metadata__\":{}}", 0));
    CHECK_OK(hparse("{\"\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0));
    CHECK_OK(hparse("{\"a\":{\"shape\":[2],\"data_offsets\":[0,4],\"dtype\":\"BF16\"}}", 4));
    /* Several zero-size tensors at one offset do not overlap. */
    CHECK_OK(hparse("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]}}", 4));
}

TEST(st_many_entries_any_order)
{
    /* 3000 tensors listed in reverse offset order and 1000 metadata pairs:
     * the result is in offset order. */
    enum { NT = 3000, NM = 1000 };
    size_t cap = (size_t)NT * 96 + (size_t)NM * 32 + 64, o = 0;
    char *h = malloc(cap);
    uint8_t *data = malloc(NT * 2);
    CHECK(h && data);
    o += (size_t)snprintf(h + o, cap - o, "{\"__metadata__\":{");
    for (int i = 0; i < NM; i++) o += (size_t)snprintf(h + o, cap - o, "%s\"k%d\":\"v%d\"", i ? "," : "", i, i);
    o += (size_t)snprintf(h + o, cap - o, "}");
    for (int i = NT - 1; i >= 0; i--) {
        o += (size_t)snprintf(h + o, cap - o, ",\"t%d\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[%d,%d]}", i,
                              2 * i, 2 * i + 2);
        data[2 * i] = 0;
        data[2 * i + 1] = (uint8_t)(0x3f + (i % 2)); /* 0.5 (0x3f00) or 2.0 (0x4000) */
    }
    o += (size_t)snprintf(h + o, cap - o, "}");
    CHECK(o < cap);
    size_t len;
    uint8_t *b = image(h, o, data, NT * 2, &len);
    free(h);
    free(data);
    nb_safetensors *f;
    nb_status st = nb_safetensors_parse(b, len, &f);
    free(b);
    CHECK_OK(st);
    int ok = f->n == NT && f->nmeta == NM;
    for (int i = 0; ok && i < NT; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        ok = !strcmp(f->tensors[i].name, name) && f->tensors[i].data[0] == (i % 2 ? 2.0f : 0.5f);
    }
    ok = ok && !strcmp(nb_safetensors_meta(f, "k999"), "v999") && !strcmp(f->meta_keys[10], "k10");
    nb_safetensors_free(f);
    CHECK(ok);
}

TEST(st_messages_stay_readable)
{
    /* A long name is cut, control and non-UTF-8 bytes are escaped. */
    char hdr[1024], name[400];
    memset(name, 'n', 300);
    name[300] = 0;
    snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
    CHECK_ERR(hparse(hdr, 1), NB_ERR_FORMAT, "unsupported dtype \"Q8\" for tensor \"nnnnnnnn");
    CHECK(strstr(nb_last_error(), "n...\"") && strlen(nb_last_error()) < 300);
    CHECK_ERR(hparse("{\"a\\u0001\\u00e9\":1}", 0), NB_ERR_FORMAT, "tensor \"a\\x01\xc3\xa9\": its entry is not an object");
    /* Names of escapes and of multi-byte characters, cut at every length. */
    for (int n = 1; n < 60; n++) {
        char h[1200];
        size_t o = 0;
        o += (size_t)snprintf(h + o, sizeof h - o, "{\"");
        for (int i = 0; i < n; i++) o += (size_t)snprintf(h + o, sizeof h - o, "%s", i % 3 ? "\\u0001" : "\xc3\xa9\\\"");
        snprintf(h + o, sizeof h - o, "\":1}");
        CHECK_ERR(hparse(h, 0), NB_ERR_FORMAT, "its entry is not an object");
    }
    char path[512];
    tpath(path, sizeof path, "st_msg.safetensors");
    nb_st_entry e = {"bad\xff\x01", 0, NULL, (float[]){1}};
    CHECK_ERR(nb_safetensors_save(path, &e, 1, NB_ST_F32, NULL, 0), NB_ERR_ARG,
              "tensor name \"bad\\xff\\x01\" is not valid UTF-8");
}

/* ---- bad files: each with its status and message ------------------------- */

#define BAD(hdr, dlen, substr) CHECK_ERR(hparse(hdr, dlen), NB_ERR_FORMAT, substr)
#define ENTRY(dt, shape, off) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

TEST(st_bad_prefix)
{
    nb_safetensors *f = (nb_safetensors *)1;
    uint8_t b[32] = {0};
    CHECK_ERR(nb_safetensors_parse(b, 0, &f), NB_ERR_FORMAT, "empty file");
    CHECK(f == NULL);
    CHECK_ERR(nb_safetensors_parse(NULL, 0, &f), NB_ERR_FORMAT, "empty file");
    CHECK_ERR(nb_safetensors_parse(b, 5, &f), NB_ERR_FORMAT, "file of 5 bytes is too short");
    CHECK_ERR(nb_safetensors_parse(NULL, 5, &f), NB_ERR_ARG, "buf is NULL");
    CHECK_ERR(nb_safetensors_parse(b, 5, NULL), NB_ERR_ARG, "out is NULL");
    b[0] = 100; /* header length 100 in a 20-byte file */
    CHECK_ERR(nb_safetensors_parse(b, 20, &f), NB_ERR_FORMAT, "header length 100 exceeds the file size 20");
    uint64_t big = (uint64_t)NB_SAFETENSORS_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(big >> (8 * i));
    CHECK_ERR(nb_safetensors_parse(b, 32, &f), NB_ERR_FORMAT, "header length 104857601 exceeds the limit of 104857600");
    memset(b, 0xff, 8);
    CHECK_ERR(nb_safetensors_parse(b, 32, &f), NB_ERR_FORMAT, "exceeds the limit");
    memset(b, 0, 8);
    CHECK_ERR(nb_safetensors_parse(b, 32, &f), NB_ERR_FORMAT, "header is empty");
    CHECK(f == NULL);
}

TEST(st_bad_json)
{
    BAD("[]", 0, "header does not start with '{' (it starts with '[')");
    BAD(" {}", 0, "header does not start with '{'");
    BAD("\"x\"", 0, "header does not start with '{'");
    BAD("{\"a\":", 0, "header is not valid JSON: unexpected end of input");
    BAD("{bad}", 0, "not valid JSON: expected a string key");
    BAD("{}x", 0, "not valid JSON: trailing 'x' after the JSON value at byte 2");
    BAD("{} {}", 0, "trailing '{'");
    BAD("{\"a\":{},}", 0, "trailing comma");
    BAD("{\"w\":" ENTRY("F32", "[1,]", "[0,4]") "}", 4, "trailing comma in an array");
    BAD("{\"a\" 1}", 0, "expected ':'");
    BAD("{\"a\":1 \"b\":2}", 0, "expected ',' or '}'");
    BAD("{\"a\nb\":1}", 0, "control character byte 0x0a in a string");
    BAD("{\"a\\qb\":1}", 0, "invalid escape \\'q'");
    BAD("{\"\\ud800x\":1}", 0, "lone high surrogate \\ud800");
    BAD("{\"\\udc00\":1}", 0, "lone low surrogate \\udc00");
    BAD("{\"\\u12g4\":1}", 0, "four hex digits");
    BAD("{\"\xff\":1}", 0, "invalid UTF-8");
    BAD("{\"\xc0\x80\":1}", 0, "invalid UTF-8");       /* overlong */
    BAD("{\"\xed\xa0\x80\":1}", 0, "invalid UTF-8");   /* encoded surrogate */
    BAD("{\"\xf4\x90\x80\x80\":1}", 0, "invalid UTF-8"); /* > U+10FFFF */
    BAD("{\"a\":tru}", 0, "invalid literal");
    BAD("{\"a\":01}", 0, "number with a leading zero");
    BAD("{\"a\":1.}", 0, "expected a digit after '.'");
    BAD("{\"a\":-}", 0, "expected a digit");
    BAD("{\"a\":1e}", 0, "expected a digit in an exponent");
    BAD("{\"a\":+1}", 0, "unexpected '+'");
    BAD("{\"a\":NaN}", 0, "unexpected 'N'");
    BAD("{\"a\":\"x", 0, "unterminated string");
    BAD("{\"__metadata__\":{\"a\":[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}}", 0, "nesting deeper than 16 levels");
    /* A NUL byte inside the header. */
    const char raw[] = "{} \0 ";
    size_t len;
    uint8_t *b = image(raw, sizeof raw - 1, NULL, 0, &len);
    nb_safetensors *f;
    nb_status s = nb_safetensors_parse(b, len, &f);
    free(b);
    CHECK_ERR(s, NB_ERR_FORMAT, "trailing byte 0x00");
}

TEST(st_bad_entries)
{
    BAD("{\"w\":1}", 0, "tensor \"w\": its entry is not an object");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor \"w\": missing \"data_offsets\"");
    BAD("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor \"w\": missing \"dtype\"");
    BAD("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor \"w\": missing \"shape\"");
    BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unexpected key \"x\"");
    BAD("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        "duplicate key \"dtype\"");
    BAD("{\"w\":" ENTRY("F8_E4M3", "[1]", "[0,1]") "}", 1, "unsupported dtype \"F8_E4M3\" for tensor \"w\"");
    BAD("{\"w\":" ENTRY("I128", "[1]", "[0,16]") "}", 16, "unsupported dtype \"I128\"");
    BAD("{\"w\":" ENTRY("f32", "[1]", "[0,4]") "}", 4, "unsupported dtype \"f32\"");
    BAD("{\"w\":" ENTRY("F32\\u0000", "[1]", "[0,4]") "}", 4, "unsupported dtype");
    BAD("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string");
    BAD("{\"w\":" ENTRY("F32", "[-1]", "[0,4]") "}", 4, "tensor \"w\": shape[0] = -1 is negative");
    BAD("{\"w\":" ENTRY("F32", "[-0]", "[0,0]") "}", 0, "shape[0] = -0 is negative");
    BAD("{\"w\":" ENTRY("F32", "[1, 1.5]", "[0,4]") "}", 4, "shape[1] = 1.5 is not an integer");
    BAD("{\"w\":" ENTRY("F32", "[1e0]", "[0,4]") "}", 4, "shape[0] = 1e0 is not an integer");
    BAD("{\"w\":" ENTRY("F32", "[\"1\"]", "[0,4]") "}", 4, "shape[0] is not a number");
    BAD("{\"w\":" ENTRY("F32", "[9007199254740993]", "[0,4]") "}", 4, "is larger than 2^53");
    BAD("{\"w\":" ENTRY("F32", "{}", "[0,4]") "}", 4, "shape is not an array");
    BAD("{\"w\":" ENTRY("F32", "[1,1,1,1,1,1,1]", "[0,4]") "}", 4, "shape has more than 6 dimensions");
    BAD("{\"w\":" ENTRY("F32", "[1099511627776,1099511627776]", "[0,4]") "}", 4, "element count overflows");
    BAD("{\"w\":" ENTRY("F32", "[2147483648,2147483648]", "[0,4]") "}", 4, "byte size overflows");
    BAD("{\"w\":" ENTRY("F32", "[3]", "[0,8]") "}", 8,
        "tensor \"w\": shape of 3 F32 elements needs 12 bytes but data_offsets [0, 8] span 8");
    BAD("{\"w\":" ENTRY("BF16", "[2,2]", "[0,16]") "}", 16, "needs 8 bytes");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[8,4]") "}", 8, "data_offsets begin 8 is after end 4");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[0]") "}", 4, "data_offsets has 1 element, not two");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[0,4,8]") "}", 4, "data_offsets has more than two elements");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[0,4.0]") "}", 4, "data_offsets[1] = 4.0 is not an integer");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[-4,0]") "}", 4, "data_offsets[0] = -4 is negative");
    BAD("{\"w\":" ENTRY("F32", "[1]", "null") "}", 4, "data_offsets is not an array");
    BAD("{\"a\\u0000b\":" ENTRY("F32", "[1]", "[0,4]") "}", 4, "tensor name \"a\\x00b\" contains a NUL character");
}

TEST(st_bad_layout)
{
    BAD("{\"w\":" ENTRY("F32", "[1]", "[100,104]") "}", 4,
        "tensor \"w\": data_offsets [100, 104] are out of bounds of the 4-byte data buffer");
    BAD("{\"a\":" ENTRY("F32", "[2]", "[0,8]") ",\"b\":" ENTRY("F32", "[1]", "[4,8]") "}", 8,
        "tensors \"a\" [0, 8) and \"b\" [4, 8) overlap");
    BAD("{\"a\":" ENTRY("F32", "[2]", "[0,8]") ",\"b\":" ENTRY("F32", "[0]", "[4,4]") "}", 8, "overlap");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[4,8]") "}", 8,
        "hole in the data buffer: bytes [0, 4) before tensor \"w\" belong to no tensor");
    BAD("{\"a\":" ENTRY("F32", "[1]", "[0,4]") ",\"b\":" ENTRY("F32", "[1]", "[8,12]") "}", 12, "bytes [4, 8)");
    BAD("{\"w\":" ENTRY("F32", "[1]", "[0,4]") "}", 8,
        "data buffer is longer than declared: 8 bytes follow the header but the tensors end at 4 (4 trailing bytes)");
    BAD("{}", 1, "data buffer is longer than declared");
    BAD("{\"w\":" ENTRY("F32", "[2]", "[0,8]") "}", 4,
        "file is truncated: the tensors need 8 bytes of data but only 4 follow the header");
    BAD("{\"a\":" ENTRY("F32", "[1]", "[0,4]") ",\"a\":" ENTRY("F32", "[1]", "[4,8]") "}", 8,
        "duplicate tensor name \"a\"");
    BAD("{\"b\":" ENTRY("F32", "[1]", "[0,4]") ",\"a\":" ENTRY("F32", "[1]", "[4,8]") ",\"b\":"
        ENTRY("F32", "[0]", "[8,8]") "}", 8, "duplicate tensor name \"b\"");
}

TEST(st_bad_metadata)
{
    BAD("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ value for key \"a\" is not a string");
    BAD("{\"__metadata__\":{\"a\":\"x\",\"b\":null}}", 0, "__metadata__ value for key \"b\" is not a string");
    BAD("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, "is not a string");
    BAD("{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is not an object");
    BAD("{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object");
    BAD("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", 0, "__metadata__ has the key \"a\" twice");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key \"__metadata__\"");
    BAD("{\"__metadata__\":{\"a\":\"x\\u0000\"}}", 0, "contains a NUL character");
    BAD("{\"__metadata__\":{\"\\u0000\":\"x\"}}", 0, "contains a NUL character");
}

TEST(st_every_prefix_fails_cleanly)
{
    size_t len;
    uint8_t *full = slurp(nbt_fixture("st_reference.safetensors"), &len);
    CHECK(full && len > 100);
    char path[512];
    tpath(path, sizeof path, "st_prefix.safetensors");
    int bad = -1;
    for (size_t n = 0; n <= len && bad < 0; n++) {
        uint8_t *p = malloc(n ? n : 1); /* exact size: the sanitizers see any over-read */
        memcpy(p, full, n);
        nb_safetensors *f = (nb_safetensors *)1;
        nb_clear_error();
        nb_status s = nb_safetensors_parse(p, n, &f);
        if (n == len ? s != NB_OK : (s != NB_ERR_FORMAT || f != NULL || !*nb_last_error())) bad = (int)n;
        if (s == NB_OK) nb_safetensors_free(f);
        /* And through a file. */
        if (bad < 0 && put_file(path, p, n) == 0) {
            f = (nb_safetensors *)1;
            s = nb_safetensors_load(path, &f);
            if (n == len ? s != NB_OK : (s != NB_ERR_FORMAT || f != NULL || !strstr(nb_last_error(), path)))
                bad = (int)n;
            if (s == NB_OK) nb_safetensors_free(f);
        }
        free(p);
    }
    free(full);
    CHECK_MSG(bad < 0, "prefix of %d bytes: %s", bad, nb_last_error());
}

TEST(st_load_errors)
{
    char path[512];
    nb_safetensors *f = (nb_safetensors *)1;
    tpath(path, sizeof path, "st_does_not_exist.safetensors");
    CHECK_ERR(nb_safetensors_load(path, &f), NB_ERR_NOTFOUND, "No such file or directory");
    CHECK(f == NULL);
    CHECK(strstr(nb_last_error(), "st_does_not_exist.safetensors"));
    CHECK_ERR(nb_safetensors_load(nbt_tmpdir(), &f), NB_ERR_IO, "Is a directory");
    CHECK_ERR(nb_safetensors_load(NULL, &f), NB_ERR_ARG, "path is NULL");
    CHECK_ERR(nb_safetensors_load(path, NULL), NB_ERR_ARG, "out is NULL");
    /* Format errors name the file. */
    tpath(path, sizeof path, "st_bad.safetensors");
    CHECK(put_file(path, "abc", 3) == 0);
    CHECK_ERR(nb_safetensors_load(path, &f), NB_ERR_FORMAT, "too short");
    CHECK(strstr(nb_last_error(), "st_bad.safetensors"));
}

/* ---- writer failures ------------------------------------------------------- */

TEST(st_save_bad_args)
{
    char path[512];
    tpath(path, sizeof path, "st_args.safetensors");
    float x[4] = {1, 2, 3, 4};
    int64_t sh[7] = {4, 1, 1, 1, 1, 1, 1};
    nb_st_entry ok = {"x", 1, sh, x};
    CHECK_ERR(nb_safetensors_save(NULL, &ok, 1, NB_ST_F32, NULL, 0), NB_ERR_ARG, "path is NULL");
    CHECK_ERR(nb_safetensors_save(path, NULL, 1, NB_ST_F32, NULL, 0), NB_ERR_ARG, "bad tensor list");
    CHECK_ERR(nb_safetensors_save(path, &ok, -1, NB_ST_F32, NULL, 0), NB_ERR_ARG, "bad tensor list");
    CHECK_ERR(nb_safetensors_save(path, &ok, 1, (nb_st_dtype)7, NULL, 0), NB_ERR_ARG, "unknown dtype 7");
    CHECK_ERR(nb_safetensors_save(path, &ok, 1, NB_ST_F32, NULL, 1), NB_ERR_ARG, "bad metadata list");
    nb_st_entry e[2] = {ok, ok};
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "duplicate tensor name \"x\"");
    e[1].name = "";
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "tensor 1 has no name");
    e[1].name = NULL;
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "tensor 1 has no name");
    e[1].name = "__metadata__";
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "reserved");
    e[1].name = "bad\xff";
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "not valid UTF-8");
    e[1].name = "y";
    e[1].ndim = 7;
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "tensor \"y\": ndim 7 is not in [0, 6]");
    e[1].ndim = 2;
    e[1].shape = (int64_t[]){2, -2};
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "dimension 1 is negative");
    e[1].shape = NULL;
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "shape is NULL");
    e[1].shape = (int64_t[]){1 << 30, 1 << 30, 1 << 30};
    e[1].ndim = 3;
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "too many elements");
    e[1].ndim = 1;
    e[1].shape = sh;
    e[1].data = NULL;
    CHECK_ERR(nb_safetensors_save(path, e, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "tensor \"y\": data is NULL");
    const char *m1[] = {"k", NULL};
    CHECK_ERR(nb_safetensors_save(path, &ok, 1, NB_ST_F32, m1, 1), NB_ERR_ARG, "metadata value 0 is NULL");
    const char *m2[] = {"k", "a", "k", "b"};
    CHECK_ERR(nb_safetensors_save(path, &ok, 1, NB_ST_F32, m2, 2), NB_ERR_ARG, "metadata key \"k\" given twice");
    const char *m3[] = {"k", "\xc3"};
    CHECK_ERR(nb_safetensors_save(path, &ok, 1, NB_ST_F32, m3, 1), NB_ERR_ARG, "not valid UTF-8");
    struct stat sb;
    CHECK(stat(path, &sb) != 0); /* nothing was written */
    CHECK(count_tmp(st_dir()) == 0);
    /* NULL data is fine for an empty tensor; no tensors at all is fine too. */
    e[1].shape = (int64_t[]){3, 0};
    e[1].ndim = 2;
    CHECK_OK(nb_safetensors_save(path, e, 2, NB_ST_BF16, NULL, 0));
    CHECK_OK(nb_safetensors_save(path, NULL, 0, NB_ST_F32, NULL, 0));
    nb_safetensors *f;
    CHECK_OK(nb_safetensors_load(path, &f));
    CHECK(f->n == 0 && f->nmeta == 0);
    nb_safetensors_free(f);
}

TEST(st_save_missing_dir)
{
    char dir[512], path[600];
    tpath(dir, sizeof dir, "st_nodir");
    CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/missing/x.safetensors", dir);
    nb_st_entry e = {"x", 1, (int64_t[]){1}, (float[]){1}};
    CHECK_ERR(nb_safetensors_save(path, &e, 1, NB_ST_F32, NULL, 0), NB_ERR_IO, "No such file or directory");
    CHECK(strstr(nb_last_error(), path));
    CHECK(count_tmp(dir) == 0);
}

TEST(st_save_failure_keeps_old_file)
{
    char dir[512], path[600];
    tpath(dir, sizeof dir, "st_keep");
    CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    nb_st_entry good = {"w", 1, (int64_t[]){3}, (float[]){1, 2, 3}};
    CHECK_OK(nb_safetensors_save(path, &good, 1, NB_ST_F32, NULL, 0));
    size_t len0, len1;
    uint8_t *before = slurp(path, &len0);
    CHECK(before);

    /* Invalid arguments: refused before anything is written. */
    nb_st_entry dup[2] = {good, good};
    CHECK_ERR(nb_safetensors_save(path, dup, 2, NB_ST_F32, NULL, 0), NB_ERR_ARG, "duplicate tensor name");
    uint8_t *after = slurp(path, &len1);
    int same = after && len0 == len1 && !memcmp(before, after, len0);
    free(after);
    CHECK(same);
    CHECK(count_tmp(dir) == 0);

    /* A write that fails half-way (the file size limit stands in for a full
     * disk): NB_ERR_IO with the errno text, no temporary file, old file kept. */
    enum { BIG = 1 << 18 };
    float *big = calloc(BIG, sizeof *big);
    CHECK(big);
    nb_st_entry large = {"w", 1, (int64_t[]){BIG}, big};
    struct rlimit old_lim, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old_lim) == 0);
    lim = old_lim;
    lim.rlim_cur = 64 * 1024;
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    int lim_ok = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    nb_status s = lim_ok ? nb_safetensors_save(path, &large, 1, NB_ST_F32, NULL, 0) : NB_OK;
    setrlimit(RLIMIT_FSIZE, &old_lim);
    signal(SIGXFSZ, old_sig);
    free(big);
    CHECK(lim_ok);
    CHECK_ERR(s, NB_ERR_IO, "File too large");
    after = slurp(path, &len1);
    same = after && len0 == len1 && !memcmp(before, after, len0);
    free(after);
    CHECK(same);
    CHECK(count_tmp(dir) == 0);

    /* A failure after the temporary file was written: renaming it over a
     * directory fails, and the temporary file is removed. */
    char sub[700];
    snprintf(sub, sizeof sub, "%s/adir", dir);
    CHECK(mkdir(sub, 0755) == 0 || errno == EEXIST);
    CHECK_ERR(nb_safetensors_save(sub, &good, 1, NB_ST_F32, NULL, 0), NB_ERR_IO, "Is a directory");
    CHECK(count_tmp(dir) == 0);
    struct stat sb;
    CHECK(stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode));

    /* A good save replaces the file atomically and keeps its mode. */
    CHECK(chmod(path, 0640) == 0);
    nb_st_entry next = {"v", 1, (int64_t[]){2}, (float[]){5, 6}};
    CHECK_OK(nb_safetensors_save(path, &next, 1, NB_ST_F16, NULL, 0));
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0640);
    nb_safetensors *f;
    CHECK_OK(nb_safetensors_load(path, &f));
    int ok = f->n == 1 && !strcmp(f->tensors[0].name, "v") && f->tensors[0].data[1] == 6.0f;
    nb_safetensors_free(f);
    free(before);
    CHECK(ok);
    CHECK(count_tmp(dir) == 0);
}

/* ---- the JSON parser on its own ------------------------------------------- */

TEST(st_json_parser)
{
    char err[160];
    const char *good[] = {"true", " false ", "null", "0", "-0", "12", "-1.5e+3", "1E-2", "\"\"", "\"\\u00e9\\/\"",
                          "[]", "[1, [2, [3]], {\"a\": null}]", "{\"a\":{\"b\":[true,false]}}", "\"\xe2\x9c\x93\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_MSG(nb__json_validate(good[i], strlen(good[i]), err, sizeof err) == 0, "%s: %s", good[i], err);
    const char *bad[] = {"", " ", "[1,]", "[1 2]", "{\"a\" 1}", "{,}", "{\"a\":1,,\"b\":2}", "01", "1.", ".5", "+1",
                         "-", "\"abc", "tru", "nul", "{\"a\":1}}", "\"\x01\"", "NaN", "\"\"x", "1e", "\"\\u12\"",
                         "[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]", "{1:2}", "'a'", "\"\\ud83dx\"",
                         "\"\\", "[\"a\\"}; /* a backslash at the very end (found by fuzz_json) */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(nb__json_validate(bad[i], strlen(bad[i]), err, sizeof err) != 0 && strstr(err, " at byte "),
                  "accepted %s", bad[i]);
    /* 16 levels are allowed, 17 are not. */
    { const char *d16 = "[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]"; CHECK(nb__json_validate(d16, strlen(d16), err, sizeof err) == 0); }

    nb__json j;
    nb__json_num num;
    { const char *arr = "[9007199254740992, 9007199254740993, -5, 1.0, 1E5, -0]"; nb__json_init(&j, arr, strlen(arr)); }
    CHECK(nb__json_array_begin(&j) == 0);
    CHECK(nb__json_array_next(&j) == 1 && nb__json_number(&j, &num) == 0);
    CHECK(num.kind == NB__JSON_INT && num.value == ((int64_t)1 << 53) && !num.negative);
    CHECK(nb__json_array_next(&j) == 1 && nb__json_number(&j, &num) == 0 && num.kind == NB__JSON_BIGINT);
    CHECK(nb__json_array_next(&j) == 1 && nb__json_number(&j, &num) == 0);
    CHECK(num.kind == NB__JSON_INT && num.value == -5 && num.negative);
    CHECK(nb__json_array_next(&j) == 1 && nb__json_number(&j, &num) == 0 && num.kind == NB__JSON_REAL);
    CHECK(nb__json_array_next(&j) == 1 && nb__json_number(&j, &num) == 0 && num.kind == NB__JSON_REAL);
    CHECK(nb__json_array_next(&j) == 1 && nb__json_number(&j, &num) == 0);
    CHECK(num.kind == NB__JSON_INT && num.value == 0 && num.negative && num.raw_len == 2);
    CHECK(nb__json_array_next(&j) == 0 && nb__json_end(&j) == 0);

    nb__json_str s;
    const char *txt = "{\"k\\u0065y\": \"\\ud83d\\ude00\\t\\\"\", \"x\": [1, {\"y\": null}], \"z\": true}";
    nb__json_init(&j, txt, strlen(txt));
    CHECK(nb__json_object_begin(&j) == 0 && nb__json_object_next(&j, &s) == 1);
    CHECK(nb__json_str_eq(&s, "key") && !nb__json_str_eq(&s, "ke") && s.len == 3 && s.raw_len == 8);
    CHECK(nb__json_peek(&j) == NB__JSON_STRING && nb__json_string(&j, &s) == 0 && s.len == 6);
    char buf[16];
    nb__json_decode(&s, buf);
    CHECK(!memcmp(buf, "\xf0\x9f\x98\x80\t\"", 7));
    CHECK(nb__json_object_next(&j, &s) == 1 && nb__json_str_eq(&s, "x"));
    CHECK(nb__json_skip(&j) == 0);
    CHECK(nb__json_object_next(&j, &s) == 1 && nb__json_peek(&j) == NB__JSON_TRUE && nb__json_skip(&j) == 0);
    CHECK(nb__json_object_next(&j, &s) == 0 && nb__json_end(&j) == 0);
    /* Reading the wrong type is an error, not a crash. */
    nb__json_init(&j, "[1]", 3);
    CHECK(nb__json_object_begin(&j) == -1 && strstr(j.err, "expected an object"));
    CHECK(nb__json_array_next(&j) == -1);

    char q[64];
    size_t n = nb__json_quote("a\"\\\n\x01\xc3\xa9", 7, q);
    CHECK(n == 17 && !memcmp(q, "\"a\\\"\\\\\\n\\u0001\xc3\xa9\"", n));
    CHECK(nb__json_utf8_valid("\xf0\x9f\x98\x80", 4) && !nb__json_utf8_valid("\xf0\x9f\x98", 3));
}

/* ---- fuzzing ------------------------------------------------------------- */

TEST(st_fuzz_corpus_and_mutations)
{
    /* The replay build of tests/fuzz/fuzz_safetensors.c (made by `make test`)
     * over the seed corpus and 2000 deterministic mutations of each file. */
    char bin[512], cmd[1200];
    snprintf(bin, sizeof bin, "%s/fuzz/fuzz_safetensors", nbt_build_dir());
    CHECK_MSG(access(bin, X_OK) == 0, "%s is missing: build it with `make test`", bin);
    snprintf(cmd, sizeof cmd, "'%s' --random 2000 tests/fuzz/corpus/safetensors tests/fixtures/st_reference.safetensors"
                              " > '%s/st_fuzz.log' 2>&1", bin, nbt_tmpdir());
    int rc = system(cmd);
    char log[600];
    snprintf(log, sizeof log, "%s/st_fuzz.log", nbt_tmpdir());
    size_t len = 0;
    uint8_t *out = slurp(log, &len);
    char *text = out ? realloc(out, len + 1) : NULL;
    if (text) text[len] = 0;
    int ok = rc == 0 && text && strstr(text, "no crash");
    CHECK_MSG(ok, "%s exited with %d: %s", bin, rc, text ? text : "(no output)");
    free(text);
}
