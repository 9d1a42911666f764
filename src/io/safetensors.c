/* safetensors files (see nabla/io.h).
 *
 * Reading is two stages. First the 8-byte length and the JSON header are
 * checked against the file size and every rule of the format, which allocates
 * at most in proportion to the header (names, metadata, one record per
 * tensor). Only then are the float32 outputs allocated (at most four times
 * the data bytes, for the 1-byte dtypes) and filled. The byte order of the file is
 * little-endian; conversions go through bytes, so the host's order does not
 * matter. */
#include "../core/internal.h"
#include "json.h"
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_FAIL(...) nb__fail(NB_ERR_FORMAT, "safetensors: " __VA_ARGS__)

/* ---- dtypes and conversions -------------------------------------------- */

/* The floating-point dtypes, then the integer ones a PyTorch state_dict
 * also holds (BatchNorm's num_batches_tracked is I64): all read as float32.
 * The 8-bit float formats are not read. */
enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8, ST_BOOL,
       ST_NDTYPES };
static const char *const st_dtype_name[ST_NDTYPES] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16",
                                                      "I8",  "U64", "U32", "U16", "U8",  "BOOL"};
static const int st_dtype_size[ST_NDTYPES] = {4, 2, 2, 8, 8, 4, 2, 1, 8, 4, 2, 1, 1};

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void wr32(unsigned char *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(unsigned char *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

static float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* IEEE half -> float: exact for every value, subnormals, infinities, NaNs. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) { /* zero or subnormal: m * 2^-24 is exact in float */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return f32_from_bits(sign | 0x7f800000u | m << 13);
    return f32_from_bits(sign | (e + 112) << 23 | m << 13);
}

/* float -> half, rounding to nearest even; overflow gives infinity, NaNs stay
 * NaN (quiet). */
static uint16_t f32_to_f16(float f)
{
    uint32_t x = f32_to_bits(f), ax = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);        /* >= 65520: inf */
    if (ax < 0x38800000u) {                                          /* < 2^-14: subnormal */
        if (ax < 0x33000000u) return sign;                           /* <= 2^-25: zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14..24 */
        uint32_t k = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        k += rem > half || (rem == half && (k & 1));
        return (uint16_t)(sign | k);
    }
    uint32_t r = ax - 0x38000000u, h = r >> 13, rem = r & 0x1fff;   /* rebias 127 -> 15 */
    h += rem > 0x1000 || (rem == 0x1000 && (h & 1));
    return (uint16_t)(sign | h);
}

static float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

static uint16_t f32_to_bf16(float f)
{
    uint32_t x = f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* double -> float without undefined behaviour for out-of-range values. */
static float f64_to_f32(double d)
{
    if (d > FLT_MAX) return d >= 0x1.ffffffp127 ? INFINITY : FLT_MAX; /* half an ulp above rounds up */
    if (d < -FLT_MAX) return d <= -0x1.ffffffp127 ? -INFINITY : -FLT_MAX;
    return (float)d;
}

/* Two's complement bits as a signed value (exact-width types are two's
 * complement, so the copy is well defined where a cast would not be). */
static int64_t st_i64(uint64_t u)
{
    int64_t v;
    memcpy(&v, &u, 8);
    return v;
}

/* count elements of dtype `code` at src (little-endian) into dst. src may be
 * dst itself for F32 (each element is read before it is written). Integers
 * round to the nearest float (exact up to 2^24); BOOL is 0 or 1. */
static void st_convert(const unsigned char *src, int code, size_t count, float *dst)
{
    double d;
    uint64_t u;
    for (size_t i = 0; i < count; i++) {
        switch (code) {
        case ST_F32: dst[i] = f32_from_bits(rd32(src + 4 * i)); break;
        case ST_F16: dst[i] = f16_to_f32(rd16(src + 2 * i)); break;
        case ST_BF16: dst[i] = bf16_to_f32(rd16(src + 2 * i)); break;
        case ST_F64:
            u = rd64(src + 8 * i);
            memcpy(&d, &u, 8);
            dst[i] = f64_to_f32(d);
            break;
        case ST_I64: dst[i] = (float)st_i64(rd64(src + 8 * i)); break;
        case ST_I32: dst[i] = (float)st_i64(rd32(src + 4 * i) | (src[4 * i + 3] & 0x80 ? ~0ull << 32 : 0)); break;
        case ST_I16: dst[i] = (float)((int32_t)rd16(src + 2 * i) - (src[2 * i + 1] & 0x80 ? 65536 : 0)); break;
        case ST_I8: dst[i] = (float)((int)src[i] - (src[i] & 0x80 ? 256 : 0)); break;
        case ST_U64: dst[i] = (float)rd64(src + 8 * i); break;
        case ST_U32: dst[i] = (float)rd32(src + 4 * i); break;
        case ST_U16: dst[i] = (float)rd16(src + 2 * i); break;
        case ST_U8: dst[i] = (float)src[i]; break;
        default: dst[i] = src[i] != 0; /* BOOL */
        }
    }
}

/* ---- messages ------------------------------------------------------------ */

/* s[0..n) quoted and printable, cut to fit a message: "name", "a\x0ab",
 * "long...". Valid UTF-8 is kept, other bytes are escaped. */
static const char *quote(const char *s, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c >= 0x80 ? nb__json_utf8_len(s + i, n - i) : 1;
        size_t need = c >= 0x80 ? (k ? k : 4) : (c == '"' || c == '\\') ? 2 : (c < 0x20 || c == 0x7f) ? 4 : 1;
        if (o + need + 5 > size) { /* keep room for "...", the quote and the NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') { buf[o++] = '\\'; buf[o++] = (char)c; }
        else if (c >= 0x80 && k) { memcpy(buf + o, s + i, k); o += k; i += k; continue; }
        else if (c >= 0x20 && c != 0x7f && c < 0x80) buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        i++;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}
#define Q(s, buf) quote((s), strlen(s), (buf), sizeof(buf))

/* A JSON key or string for a message (decoded when short enough). */
static const char *quote_key(const nb__json_str *k, char *buf, size_t size)
{
    char tmp[128];
    if (k->len < sizeof tmp) {
        nb__json_decode(k, tmp);
        return quote(tmp, k->len, buf, size);
    }
    return quote(k->raw, k->raw_len, buf, size);
}

static const char *errno_str(int e, char *buf, size_t n)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(e, buf, n);
#else
    if (strerror_r(e, buf, n)) snprintf(buf, n, "error %d", e);
    return buf;
#endif
}

/* ---- the result ------------------------------------------------------------ */

/* What parse/load hand out: the public struct and one block holding every
 * name, metadata key and value (so a header of many tiny strings costs one
 * allocation, not one each). */
typedef struct st_file {
    nb_safetensors pub; /* first: nb_safetensors_free casts back */
    char *strings;
    size_t cap_tensors, cap_meta; /* what the first walk counted */
} st_file;

void nb_safetensors_free(nb_safetensors *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) NB_FREE(f->tensors[i].data);
    NB_FREE(f->tensors);
    NB_FREE(f->meta_keys);
    NB_FREE(f->meta_values);
    NB_FREE(((st_file *)f)->strings);
    NB_FREE(f);
}

const nb_st_tensor *nb_safetensors_find(const nb_safetensors *f, const char *name)
{
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *nb_safetensors_meta(const nb_safetensors *f, const char *key)
{
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- header validation ------------------------------------------------------ */

/* Where a tensor's bytes are; parallel to nb_safetensors.tensors. */
typedef struct st_range {
    uint64_t begin, end;
    int code, idx;
} st_range;

static nb_status st_nomem(void) { return nb__fail(NB_ERR_NOMEM, "safetensors: out of memory"); }

/* The parser's own errors cannot happen on a validated header; kept for safety. */
static nb_status st_json_fail(const nb__json *j) { return ST_FAIL("header is not valid JSON: %s", j->err); }

static void *st_zalloc(size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n) return NULL;
    size_t bytes = n * size;
    void *p = NB_MALLOC(bytes ? bytes : 1);
    if (p) memset(p, 0, bytes);
    return p;
}

/* The 8-byte prefix: the header length, checked against the limit and the
 * file size. p holds min(file_len, 8) bytes. */
static nb_status st_check_prefix(const unsigned char *p, uint64_t file_len, uint64_t *hlen)
{
    if (file_len == 0) return ST_FAIL("empty file (0 bytes)");
    if (file_len < 8)
        return ST_FAIL("file of %" PRIu64 " bytes is too short to hold the 8-byte header length", file_len);
    uint64_t n = rd64(p);
    if (n > NB_SAFETENSORS_MAX_HEADER)
        return ST_FAIL("header length %" PRIu64 " exceeds the limit of %u bytes", n, NB_SAFETENSORS_MAX_HEADER);
    if (n > file_len - 8)
        return ST_FAIL("header length %" PRIu64 " exceeds the file size %" PRIu64, n, file_len);
    *hlen = n;
    return NB_OK;
}

/* A non-negative integer: element i of field `what` of tensor tq. */
static nb_status st_uint(nb__json *j, const char *tq, const char *what, int i, uint64_t *v)
{
    nb__json_num num;
    if (nb__json_peek(j) != NB__JSON_NUMBER) return ST_FAIL("tensor %s: %s[%d] is not a number", tq, what, i);
    if (nb__json_number(j, &num)) return st_json_fail(j);
    int w = num.raw_len > 40 ? 40 : (int)num.raw_len;
    const char *more = num.raw_len > 40 ? "..." : "";
    if (num.kind == NB__JSON_REAL)
        return ST_FAIL("tensor %s: %s[%d] = %.*s%s is not an integer", tq, what, i, w, num.raw, more);
    if (num.negative) return ST_FAIL("tensor %s: %s[%d] = %.*s%s is negative", tq, what, i, w, num.raw, more);
    if (num.kind == NB__JSON_BIGINT)
        return ST_FAIL("tensor %s: %s[%d] = %.*s%s is larger than 2^53", tq, what, i, w, num.raw, more);
    *v = (uint64_t)num.value;
    return NB_OK;
}

/* The entry of tensor `name`: {"dtype": ..., "shape": [...], "data_offsets":
 * [b, e]}, into t (all but the name and data) and r. */
static nb_status st_entry(nb__json *j, const nb__json_str *name, nb_st_tensor *t, st_range *r)
{
    char tq[96], kq[96], dq[48];
    nb__json_str key, s;
    nb_status st;
    int rc, have_dtype = 0, have_shape = 0, have_offsets = 0;
    uint64_t off[2] = {0, 0};
    quote_key(name, tq, sizeof tq);
    if (name->has_nul) return ST_FAIL("tensor name %s contains a NUL character", tq);
    if (nb__json_peek(j) != NB__JSON_OBJECT) return ST_FAIL("tensor %s: its entry is not an object", tq);
    if (nb__json_object_begin(j)) return st_json_fail(j);
    while ((rc = nb__json_object_next(j, &key)) == 1) {
        if (nb__json_str_eq(&key, "dtype")) {
            if (have_dtype++) return ST_FAIL("tensor %s: duplicate key \"dtype\"", tq);
            if (nb__json_peek(j) != NB__JSON_STRING) return ST_FAIL("tensor %s: dtype is not a string", tq);
            if (nb__json_string(j, &s)) return st_json_fail(j);
            r->code = -1;
            for (int c = 0; c < ST_NDTYPES; c++)
                if (nb__json_str_eq(&s, st_dtype_name[c])) r->code = c;
            if (r->code < 0)
                return ST_FAIL("unsupported dtype %s for tensor %s (nabla reads F32, F16, BF16, F64, "
                               "the integer types I8-I64 and U8-U64, and BOOL)",
                               quote_key(&s, dq, sizeof dq), tq);
            snprintf(t->dtype, sizeof t->dtype, "%s", st_dtype_name[r->code]);
        } else if (nb__json_str_eq(&key, "shape")) {
            if (have_shape++) return ST_FAIL("tensor %s: duplicate key \"shape\"", tq);
            if (nb__json_peek(j) != NB__JSON_ARRAY) return ST_FAIL("tensor %s: shape is not an array", tq);
            if (nb__json_array_begin(j)) return st_json_fail(j);
            int nd = 0;
            while ((rc = nb__json_array_next(j)) == 1) {
                uint64_t v;
                if (nd == NB_MAX_DIMS)
                    return ST_FAIL("tensor %s: shape has more than %d dimensions", tq, NB_MAX_DIMS);
                if ((st = st_uint(j, tq, "shape", nd, &v))) return st;
                t->shape[nd++] = (int64_t)v;
            }
            if (rc < 0) return st_json_fail(j);
            t->ndim = nd;
        } else if (nb__json_str_eq(&key, "data_offsets")) {
            if (have_offsets++) return ST_FAIL("tensor %s: duplicate key \"data_offsets\"", tq);
            if (nb__json_peek(j) != NB__JSON_ARRAY)
                return ST_FAIL("tensor %s: data_offsets is not an array [begin, end]", tq);
            if (nb__json_array_begin(j)) return st_json_fail(j);
            int k = 0;
            while ((rc = nb__json_array_next(j)) == 1) {
                if (k == 2) return ST_FAIL("tensor %s: data_offsets has more than two elements", tq);
                if ((st = st_uint(j, tq, "data_offsets", k, &off[k]))) return st;
                k++;
            }
            if (rc < 0) return st_json_fail(j);
            if (k != 2) return ST_FAIL("tensor %s: data_offsets has %d element%s, not two [begin, end]", tq, k,
                                       k == 1 ? "" : "s");
        } else {
            return ST_FAIL("tensor %s: unexpected key %s (an entry has dtype, shape and data_offsets only)", tq,
                           quote_key(&key, kq, sizeof kq));
        }
    }
    if (rc < 0) return st_json_fail(j);
    if (!have_dtype) return ST_FAIL("tensor %s: missing \"dtype\"", tq);
    if (!have_shape) return ST_FAIL("tensor %s: missing \"shape\"", tq);
    if (!have_offsets) return ST_FAIL("tensor %s: missing \"data_offsets\"", tq);

    /* The element count and byte size, checked for overflow in the order the
     * dimensions come (as the reference implementation does). */
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim = (uint64_t)t->shape[d];
        if (dim && numel > (uint64_t)INT64_MAX / dim)
            return ST_FAIL("tensor %s: the shape's element count overflows (dimension %d is %" PRIu64 ")", tq, d,
                           dim);
        numel *= dim;
    }
    uint64_t esize = (uint64_t)st_dtype_size[r->code];
    if (numel > UINT64_MAX / esize)
        return ST_FAIL("tensor %s: the shape's byte size overflows", tq);
    uint64_t nbytes = numel * esize;
    t->numel = (int64_t)numel;
    if (off[0] > off[1])
        return ST_FAIL("tensor %s: data_offsets begin %" PRIu64 " is after end %" PRIu64, tq, off[0], off[1]);
    if (off[1] - off[0] != nbytes)
        return ST_FAIL("tensor %s: shape of %" PRIu64 " %s elements needs %" PRIu64
                       " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64,
                       tq, numel, t->dtype, nbytes, off[0], off[1], off[1] - off[0]);
    r->begin = off[0];
    r->end = off[1];
    return NB_OK;
}

/* Sizes of what one walk found: entries, and bytes for all strings. */
typedef struct st_count {
    size_t tensors, meta, string_bytes;
} st_count;

/* Decode s into the string block at *cur. */
static char *st_take(char **cur, const nb__json_str *s)
{
    char *p = *cur;
    nb__json_decode(s, p);
    *cur += s->len + 1;
    return p;
}

/* "__metadata__": {"key": "value", ...}; stored when f is set. */
static nb_status st_meta(nb__json *j, st_file *f, st_count *c, char **cur)
{
    char kq[96];
    nb__json_str key, val;
    int rc;
    if (nb__json_peek(j) != NB__JSON_OBJECT) return ST_FAIL("__metadata__ is not an object");
    if (nb__json_object_begin(j)) return st_json_fail(j);
    while ((rc = nb__json_object_next(j, &key)) == 1) {
        quote_key(&key, kq, sizeof kq);
        if (key.has_nul) return ST_FAIL("__metadata__ key %s contains a NUL character", kq);
        if (nb__json_peek(j) != NB__JSON_STRING)
            return ST_FAIL("__metadata__ value for key %s is not a string", kq);
        if (nb__json_string(j, &val)) return st_json_fail(j);
        if (val.has_nul) return ST_FAIL("__metadata__ value for key %s contains a NUL character", kq);
        if (f) {
            if ((size_t)f->pub.nmeta >= f->cap_meta) return ST_FAIL("header changed between walks"); /* cannot happen */
            f->pub.meta_keys[f->pub.nmeta] = st_take(cur, &key);
            f->pub.meta_values[f->pub.nmeta] = st_take(cur, &val);
            f->pub.nmeta++;
        }
        c->meta++;
        c->string_bytes += key.len + val.len + 2;
    }
    return rc < 0 ? st_json_fail(j) : NB_OK;
}

/* One walk over the (valid JSON) header object, checking every entry. With
 * f NULL it only counts; with f allocated from a first walk's counts it
 * stores names, shapes, dtypes, ranges and metadata as well. */
static nb_status st_walk(const char *h, size_t hlen, st_file *f, st_range *r, st_count *c)
{
    nb__json j;
    nb__json_str key;
    nb_status st;
    int rc, seen_meta = 0;
    char *cur = f ? f->strings : NULL;
    memset(c, 0, sizeof *c);
    nb__json_init(&j, h, hlen);
    if (nb__json_object_begin(&j)) return st_json_fail(&j);
    while ((rc = nb__json_object_next(&j, &key)) == 1) {
        if (nb__json_str_eq(&key, "__metadata__")) {
            if (seen_meta++) return ST_FAIL("duplicate key \"__metadata__\" in the header");
            if ((st = st_meta(&j, f, c, &cur))) return st;
            continue;
        }
        if (f && c->tensors >= f->cap_tensors) return ST_FAIL("header changed between walks"); /* cannot happen */
        nb_st_tensor tmp_t;
        st_range tmp_r;
        memset(&tmp_t, 0, sizeof tmp_t);
        memset(&tmp_r, 0, sizeof tmp_r);
        nb_st_tensor *t = f ? &f->pub.tensors[c->tensors] : &tmp_t;
        st_range *rr = f ? &r[c->tensors] : &tmp_r;
        if ((st = st_entry(&j, &key, t, rr))) return st;
        if (f) {
            t->name = st_take(&cur, &key);
            rr->idx = (int)c->tensors;
            f->pub.n++;
        }
        c->tensors++;
        c->string_bytes += key.len + 1;
    }
    if (rc < 0) return st_json_fail(&j);
    if (c->tensors > INT_MAX / 2 || c->meta > INT_MAX / 2) return ST_FAIL("too many entries in the header");
    return NB_OK;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string that occurs twice in names[0..n) (sorted order), or NULL;
 * *oom is set if the scratch array could not be allocated. */
static const char *st_duplicate(const char *const *names, size_t n, int *oom)
{
    *oom = 0;
    if (n < 2) return NULL;
    const char **s = NB_MALLOC(n * sizeof *s);
    if (!s) { *oom = 1; return NULL; }
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    NB_FREE(s);
    return dup;
}

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The byte ranges, sorted, must tile [0, data_len) exactly. */
static nb_status st_tiling(const nb_safetensors *f, const st_range *r, uint64_t data_len)
{
    char aq[96], bq[96];
    uint64_t expect = 0;
    for (int i = 0; i < f->n; i++) {
        const char *name = f->tensors[r[i].idx].name;
        if (r[i].begin < expect)
            return ST_FAIL("tensors %s [%" PRIu64 ", %" PRIu64 ") and %s [%" PRIu64 ", %" PRIu64 ") overlap",
                           Q(f->tensors[r[i - 1].idx].name, aq), r[i - 1].begin, r[i - 1].end, Q(name, bq),
                           r[i].begin, r[i].end);
        if (r[i].begin > expect) {
            if (r[i].begin > data_len)
                return ST_FAIL("tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                               "] are out of bounds of the %" PRIu64 "-byte data buffer",
                               Q(name, aq), r[i].begin, r[i].end, data_len);
            return ST_FAIL("hole in the data buffer: bytes [%" PRIu64 ", %" PRIu64 ") before tensor %s belong to no tensor",
                           expect, r[i].begin, Q(name, aq));
        }
        expect = r[i].end;
    }
    if (expect > data_len)
        return ST_FAIL("file is truncated: the tensors need %" PRIu64 " bytes of data but only %" PRIu64
                       " follow the header", expect, data_len);
    if (expect < data_len)
        return ST_FAIL("data buffer is longer than declared: %" PRIu64 " bytes follow the header but the tensors end at %"
                       PRIu64 " (%" PRIu64 " trailing bytes)", data_len, expect, data_len - expect);
    return NB_OK;
}

/* Validate the header h[0..hlen) for a data buffer of data_len bytes. On
 * success *out has names, dtypes, shapes and metadata (no data yet), in
 * offset order, and *rout the matching byte ranges. Everything allocated
 * here is bounded by a small multiple of hlen: the first walk checks every
 * entry before anything is allocated, so each counted tensor stands for at
 * least ~50 header bytes. */
static nb_status st_header(const char *h, size_t hlen, uint64_t data_len, nb_safetensors **out, st_range **rout)
{
    char jerr[160], cb[16];
    nb_status st;
    st_count c;
    *out = NULL;
    *rout = NULL;
    if (hlen == 0) return ST_FAIL("the header is empty (length 0)");
    if (h[0] != '{') {
        unsigned char ch = (unsigned char)h[0];
        if (ch >= 0x20 && ch < 0x7f) snprintf(cb, sizeof cb, "'%c'", ch);
        else snprintf(cb, sizeof cb, "byte 0x%02x", ch);
        return ST_FAIL("header does not start with '{' (it starts with %s)", cb);
    }
    if (nb__json_validate(h, hlen, jerr, sizeof jerr)) return ST_FAIL("header is not valid JSON: %s", jerr);
    if ((st = st_walk(h, hlen, NULL, NULL, &c))) return st;

    st_file *sf = st_zalloc(1, sizeof *sf);
    st_range *r = NULL;
    if (!sf) return st_nomem();
    nb_safetensors *f = &sf->pub;
    size_t nt = c.tensors, nm = c.meta;
    sf->cap_tensors = nt;
    sf->cap_meta = nm;
    if (!(sf->strings = NB_MALLOC(c.string_bytes ? c.string_bytes : 1)) ||
        (nt && (!(f->tensors = st_zalloc(nt, sizeof *f->tensors)) || !(r = st_zalloc(nt, sizeof *r)))) ||
        (nm && (!(f->meta_keys = st_zalloc(nm, sizeof(char *))) || !(f->meta_values = st_zalloc(nm, sizeof(char *)))))) {
        st = st_nomem();
        goto fail;
    }
    if ((st = st_walk(h, hlen, sf, r, &c))) goto fail;

    int oom;
    const char *dup;
    char dq[96];
    dup = st_duplicate((const char *const *)f->meta_keys, (size_t)f->nmeta, &oom);
    if (oom) { st = st_nomem(); goto fail; }
    if (dup) { st = ST_FAIL("__metadata__ has the key %s twice", Q(dup, dq)); goto fail; }
    if (f->n > 1) {
        const char **names = NB_MALLOC((size_t)f->n * sizeof *names);
        if (!names) { st = st_nomem(); goto fail; }
        for (int i = 0; i < f->n; i++) names[i] = f->tensors[i].name;
        dup = st_duplicate(names, (size_t)f->n, &oom);
        if (oom) st = st_nomem();
        else if (dup) st = ST_FAIL("duplicate tensor name %s", Q(dup, dq));
        NB_FREE(names);
        if (st) goto fail;
    }

    if (f->n) qsort(r, (size_t)f->n, sizeof *r, cmp_range);
    if ((st = st_tiling(f, r, data_len))) goto fail;

    /* Put the tensors in offset order. */
    if (f->n) {
        nb_st_tensor *sorted = NB_MALLOC((size_t)f->n * sizeof *sorted);
        if (!sorted) { st = st_nomem(); goto fail; }
        for (int i = 0; i < f->n; i++) {
            sorted[i] = f->tensors[r[i].idx];
            r[i].idx = i;
        }
        NB_FREE(f->tensors);
        f->tensors = sorted;
    }
    *out = f;
    *rout = r;
    return NB_OK;
fail:
    nb_safetensors_free(f);
    NB_FREE(r);
    return st;
}

/* The float32 outputs, allocated once everything is validated. */
static nb_status st_alloc_data(nb_safetensors *f)
{
    char tq[96];
    for (int i = 0; i < f->n; i++) {
        nb_st_tensor *t = &f->tensors[i];
        if (t->numel == 0) continue; /* data stays NULL */
        if ((uint64_t)t->numel > SIZE_MAX / sizeof(float) ||
            !(t->data = NB_MALLOC((size_t)t->numel * sizeof(float))))
            return nb__fail(NB_ERR_NOMEM, "safetensors: out of memory for tensor %s (%" PRId64 " floats)",
                            Q(t->name, tq), t->numel);
    }
    return NB_OK;
}

nb_status nb_safetensors_parse(const void *buf, size_t len, nb_safetensors **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "nb_safetensors_parse: out is NULL");
    *out = NULL;
    if (!buf && len) return nb__fail(NB_ERR_ARG, "nb_safetensors_parse: buf is NULL");
    const unsigned char *p = buf;
    uint64_t hlen = 0;
    nb_status st = st_check_prefix(p, len, &hlen);
    if (st) return st;
    nb_safetensors *f;
    st_range *r;
    const unsigned char *data = p + 8 + hlen;
    if ((st = st_header((const char *)p + 8, (size_t)hlen, len - 8 - hlen, &f, &r))) return st;
    if ((st = st_alloc_data(f))) {
        nb_safetensors_free(f);
        NB_FREE(r);
        return st;
    }
    for (int i = 0; i < f->n; i++)
        st_convert(data + r[i].begin, r[i].code, (size_t)f->tensors[i].numel, f->tensors[i].data);
    NB_FREE(r);
    *out = f;
    return NB_OK;
}

/* Append " (file 'path')" to the message of a failure that has one. */
static nb_status st_in_file(nb_status s, const char *path)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", nb_last_error());
    return nb__fail(s, "%s (file '%s')", msg, path);
}

/* Read exactly n bytes; NB_ERR_IO on a read error, NB_ERR_FORMAT if the file
 * ends early (it changed since we measured it). */
static nb_status st_read(FILE *fp, void *dst, size_t n, const char *path)
{
    char eb[128];
    if (n == 0 || fread(dst, 1, n, fp) == n) return NB_OK;
    if (ferror(fp)) return nb__fail(NB_ERR_IO, "safetensors: cannot read '%s': %s", path, errno_str(errno, eb, sizeof eb));
    return nb__fail(NB_ERR_FORMAT, "safetensors: '%s' got shorter while it was being read", path);
}

/* nb_safetensors_load, or with with_data 0 nb_safetensors_load_header. */
static nb_status st_load(const char *path, nb_safetensors **out, int with_data, const char *fn)
{
    char eb[128];
    if (!out) return nb__fail(NB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!path) return nb__fail(NB_ERR_ARG, "%s: path is NULL", fn);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        return nb__fail(e == ENOENT ? NB_ERR_NOTFOUND : NB_ERR_IO, "safetensors: cannot open '%s': %s", path,
                        errno_str(e, eb, sizeof eb));
    }
    nb_safetensors *f = NULL;
    st_range *r = NULL;
    char *hdr = NULL;
    unsigned char *scratch = NULL;
    nb_status st;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        st = nb__fail(NB_ERR_IO, "safetensors: cannot stat '%s': %s", path, errno_str(errno, eb, sizeof eb));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = nb__fail(NB_ERR_IO, "safetensors: cannot read '%s': %s", path,
                      S_ISDIR(sb.st_mode) ? errno_str(EISDIR, eb, sizeof eb) : "not a regular file");
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size, hlen = 0;
    unsigned char pre[8];
    if ((st = st_read(fp, pre, size < 8 ? (size_t)size : 8, path))) goto done;
    if ((st = st_check_prefix(pre, size, &hlen))) { st = st_in_file(st, path); goto done; }
    if (!(hdr = NB_MALLOC(hlen ? (size_t)hlen : 1))) { st = st_nomem(); goto done; }
    if ((st = st_read(fp, hdr, (size_t)hlen, path))) goto done;
    if ((st = st_header(hdr, (size_t)hlen, size - 8 - hlen, &f, &r))) { st = st_in_file(st, path); goto done; }
    if (with_data && (st = st_alloc_data(f))) goto done;

    /* The ranges tile the data buffer in order, so one sequential pass reads
     * every tensor. */
    enum { CHUNK = 1 << 16 };
    for (int i = 0; i < f->n && with_data; i++) {
        nb_st_tensor *t = &f->tensors[i];
        size_t nbytes = (size_t)(r[i].end - r[i].begin), esize = (size_t)st_dtype_size[r[i].code];
        if (r[i].code == ST_F32) { /* straight into the output, fixed up in place */
            if ((st = st_read(fp, t->data, nbytes, path))) goto done;
            if (!host_is_le()) st_convert((const unsigned char *)t->data, ST_F32, (size_t)t->numel, t->data);
            continue;
        }
        if (!scratch && !(scratch = NB_MALLOC(CHUNK))) { st = st_nomem(); goto done; }
        for (size_t got = 0; got < nbytes;) {
            size_t k = nbytes - got < CHUNK ? nbytes - got : CHUNK; /* CHUNK is a multiple of esize */
            if ((st = st_read(fp, scratch, k, path))) goto done;
            st_convert(scratch, r[i].code, k / esize, t->data + got / esize);
            got += k;
        }
    }
    *out = f;
    f = NULL;
    st = NB_OK;
done:
    fclose(fp);
    nb_safetensors_free(f);
    NB_FREE(r);
    NB_FREE(hdr);
    NB_FREE(scratch);
    return st;
}

nb_status nb_safetensors_load(const char *path, nb_safetensors **out)
{
    return st_load(path, out, 1, "nb_safetensors_load");
}

nb_status nb_safetensors_load_header(const char *path, nb_safetensors **out)
{
    return st_load(path, out, 0, "nb_safetensors_load_header");
}

/* ---- writer -------------------------------------------------------------- */

typedef struct st_buf {
    char *p;
    size_t len, cap;
    int oom;
} st_buf;

static char *st_buf_room(st_buf *b, size_t n)
{
    if (b->oom) return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *p = NB_REALLOC(b->p, cap);
        if (!p) { b->oom = 1; return NULL; }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

static void st_put(st_buf *b, const char *s)
{
    size_t n = strlen(s);
    char *d = st_buf_room(b, n);
    if (d) { memcpy(d, s, n); b->len += n; }
}

static void st_put_str(st_buf *b, const char *s)
{
    size_t n = strlen(s), q = nb__json_quote(s, n, NULL);
    char *d = st_buf_room(b, q);
    if (d) { nb__json_quote(s, n, d); b->len += q; }
}

static void st_put_u64(st_buf *b, uint64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    st_put(b, tmp);
}

#define SAVE_ARG(...) nb__fail(NB_ERR_ARG, "nb_safetensors_save: " __VA_ARGS__)

/* Everything about the arguments, before any file is touched; *bytes gets
 * each tensor's byte size. */
static nb_status st_save_check(const nb_st_entry *e, int n, nb_st_dtype dtype, const char *const *meta_kv,
                               int nmeta, uint64_t *bytes)
{
    char tq[96];
    if (n < 0 || (n > 0 && !e)) return SAVE_ARG("bad tensor list (n = %d, entries %s)", n, e ? "set" : "NULL");
    if ((int)dtype < 0 || (int)dtype > NB_ST_BF16) return SAVE_ARG("unknown dtype %d", (int)dtype);
    if (nmeta < 0 || (nmeta > 0 && !meta_kv)) return SAVE_ARG("bad metadata list (nmeta = %d)", nmeta);
    int esize = dtype == NB_ST_F32 ? 4 : 2;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const nb_st_entry *t = &e[i];
        if (!t->name || !*t->name) return SAVE_ARG("tensor %d has no name", i);
        Q(t->name, tq);
        if (!strcmp(t->name, "__metadata__")) return SAVE_ARG("\"__metadata__\" is reserved, not a tensor name");
        if (!nb__json_utf8_valid(t->name, strlen(t->name))) return SAVE_ARG("tensor name %s is not valid UTF-8", tq);
        if (t->ndim < 0 || t->ndim > NB_MAX_DIMS)
            return SAVE_ARG("tensor %s: ndim %d is not in [0, %d]", tq, t->ndim, NB_MAX_DIMS);
        if (t->ndim > 0 && !t->shape) return SAVE_ARG("tensor %s: shape is NULL", tq);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) return SAVE_ARG("tensor %s: dimension %d is negative (%" PRId64 ")", tq, d, t->shape[d]);
            uint64_t dim = (uint64_t)t->shape[d];
            if (dim && numel > ((uint64_t)1 << 53) / dim) return SAVE_ARG("tensor %s: too many elements", tq);
            numel *= dim;
        }
        if (numel && !t->data) return SAVE_ARG("tensor %s: data is NULL", tq);
        bytes[i] = numel * (uint64_t)esize;
        total += bytes[i];
        if (total > ((uint64_t)1 << 53)) return SAVE_ARG("the tensors need more than 2^53 bytes");
    }
    for (int i = 0; i < 2 * nmeta; i++) {
        const char *s = meta_kv[i];
        if (!s) return SAVE_ARG("metadata %s %d is NULL", i % 2 ? "value" : "key", i / 2);
        if (!nb__json_utf8_valid(s, strlen(s)))
            return SAVE_ARG("metadata %s %s is not valid UTF-8", i % 2 ? "value" : "key", Q(s, tq));
    }
    int oom;
    const char **names = NB_MALLOC(((size_t)n + (size_t)nmeta + 1) * sizeof *names);
    if (!names) return st_nomem();
    for (int i = 0; i < n; i++) names[i] = e[i].name;
    const char *dup = st_duplicate(names, (size_t)n, &oom);
    if (!dup && !oom) {
        for (int i = 0; i < nmeta; i++) names[i] = meta_kv[2 * i];
        dup = st_duplicate(names, (size_t)nmeta, &oom);
        if (dup) {
            NB_FREE(names);
            return SAVE_ARG("metadata key %s given twice", Q(dup, tq));
        }
    }
    NB_FREE(names);
    if (oom) return st_nomem();
    if (dup) return SAVE_ARG("duplicate tensor name %s", Q(dup, tq));
    return NB_OK;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes. */
static nb_status st_save_header(st_buf *b, const nb_st_entry *e, int n, nb_st_dtype dtype,
                                const char *const *meta_kv, int nmeta, const uint64_t *bytes)
{
    static const char *const names[] = {"F32", "F16", "BF16"};
    uint64_t off = 0;
    st_put(b, "{");
    if (nmeta > 0) {
        st_put(b, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) st_put(b, ",");
            st_put_str(b, meta_kv[2 * i]);
            st_put(b, ":");
            st_put_str(b, meta_kv[2 * i + 1]);
        }
        st_put(b, "}");
        if (n) st_put(b, ",");
    }
    for (int i = 0; i < n; i++) {
        if (i) st_put(b, ",");
        st_put_str(b, e[i].name);
        st_put(b, ":{\"dtype\":\"");
        st_put(b, names[dtype]);
        st_put(b, "\",\"shape\":[");
        for (int d = 0; d < e[i].ndim; d++) {
            if (d) st_put(b, ",");
            st_put_u64(b, (uint64_t)e[i].shape[d]);
        }
        st_put(b, "],\"data_offsets\":[");
        st_put_u64(b, off);
        st_put(b, ",");
        off += bytes[i];
        st_put_u64(b, off);
        st_put(b, "]}");
    }
    st_put(b, "}");
    while (!b->oom && b->len % 8) st_put(b, " ");
    if (b->oom) return st_nomem();
    if (b->len > NB_SAFETENSORS_MAX_HEADER)
        return SAVE_ARG("the header would be %zu bytes, over the limit of %u", b->len, NB_SAFETENSORS_MAX_HEADER);
    return NB_OK;
}

/* Write the file body to fp: length, header, data. 0 or -1 (errno set). */
static int st_save_body(FILE *fp, const st_buf *hdr, const nb_st_entry *e, int n, nb_st_dtype dtype,
                        unsigned char *chunk, size_t chunk_elems)
{
    unsigned char pre[8];
    wr64(pre, (uint64_t)hdr->len);
    if (fwrite(pre, 1, 8, fp) != 8 || fwrite(hdr->p, 1, hdr->len, fp) != hdr->len) return -1;
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)nb__numel(e[i].ndim, e[i].shape);
        const float *x = e[i].data;
        if (dtype == NB_ST_F32 && host_is_le()) {
            if (numel && fwrite(x, sizeof(float), numel, fp) != numel) return -1;
            continue;
        }
        for (size_t done = 0; done < numel;) {
            size_t k = numel - done < chunk_elems ? numel - done : chunk_elems, nb;
            for (size_t q = 0; q < k; q++) {
                float v = x[done + q];
                if (dtype == NB_ST_F32) wr32(chunk + 4 * q, f32_to_bits(v));
                else wr16(chunk + 2 * q, dtype == NB_ST_F16 ? f32_to_f16(v) : f32_to_bf16(v));
            }
            nb = k * (dtype == NB_ST_F32 ? 4 : 2);
            if (fwrite(chunk, 1, nb, fp) != nb) return -1;
            done += k;
        }
    }
    return 0;
}

/* Best effort: make the rename itself durable. */
static void st_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (!slash) dir = NULL;
    else if (slash == path) dir = NULL;
    else if ((dir = NB_MALLOC((size_t)(slash - path) + 1))) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = 0;
    }
    int fd = open(dir ? dir : (slash ? "/" : "."), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    NB_FREE(dir);
}

nb_status nb_safetensors_save(const char *path, const nb_st_entry *e, int n, nb_st_dtype dtype,
                              const char *const *meta_kv, int nmeta)
{
    char eb[128];
    if (!path || !*path) return SAVE_ARG("path is NULL or empty");
    uint64_t *bytes = NB_MALLOC(((size_t)(n > 0 ? n : 0) + 1) * sizeof *bytes);
    if (!bytes) return st_nomem();
    st_buf hdr = {0};
    char *tmp = NULL;
    unsigned char *chunk = NULL;
    FILE *fp = NULL;
    int fd = -1;
    enum { CHUNK_ELEMS = 1 << 14 };
    nb_status st = st_save_check(e, n, dtype, meta_kv, nmeta, bytes);
    if (st) goto done;
    if ((st = st_save_header(&hdr, e, n, dtype, meta_kv, nmeta, bytes))) goto done;
    size_t plen = strlen(path);
    if (!(tmp = NB_MALLOC(plen + 16)) || !(chunk = NB_MALLOC(CHUNK_ELEMS * 4))) { st = st_nomem(); goto done; }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0) {
        st = nb__fail(NB_ERR_IO, "safetensors: cannot create a temporary file for '%s': %s", path,
                      errno_str(errno, eb, sizeof eb));
        NB_FREE(tmp);
        tmp = NULL; /* nothing to remove */
        goto done;
    }
    /* mkstemp makes the file 0600; give it the mode of the file it replaces,
     * or the usual 0644. */
    struct stat sb;
    (void)fchmod(fd, stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? (sb.st_mode & 07777) : 0644);
    if (!(fp = fdopen(fd, "wb"))) goto io_error;
    fd = -1;
    if (st_save_body(fp, &hdr, e, n, dtype, chunk, CHUNK_ELEMS) || fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        goto io_error;
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) goto io_error;
    if (rename(tmp, path) != 0) {
        st = nb__fail(NB_ERR_IO, "safetensors: cannot rename the temporary file to '%s': %s", path,
                      errno_str(errno, eb, sizeof eb));
        goto done;
    }
    NB_FREE(tmp);
    tmp = NULL;
    st_sync_dir(path);
    st = NB_OK;
    goto done;
io_error:
    st = nb__fail(NB_ERR_IO, "safetensors: cannot write '%s': %s", path, errno_str(errno, eb, sizeof eb));
done:
    if (fp) fclose(fp);
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    NB_FREE(tmp);
    NB_FREE(chunk);
    NB_FREE(hdr.p);
    NB_FREE(bytes);
    return st;
}
