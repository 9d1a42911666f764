/* IDX files (LeCun's MNIST format), raw or gzip-compressed.
 *
 * One parser reads from a byte source: a memory buffer, a plain file or a
 * zlib inflate stream. It never trusts the header: the number of values is
 * capped (NB__IDX_MAX_VALUES) before anything is allocated, and when the
 * source's size is known (buffer, regular file) the payload length is checked
 * before allocating; for gzip the value buffer grows only as data actually
 * arrives, and inflate is never asked for more than the declared size plus
 * one byte, so a gzip bomb costs at most its declared size.
 *
 * A dimension of 0 is allowed: the array is empty (count 0, no payload bytes,
 * `values` a valid allocation holding nothing). Other dimensions of an empty
 * array are still read but do not count towards the size cap. */
#include "../core/internal.h"
#include <errno.h>
#include <math.h>
#include <float.h>
#include <stdio.h>
#include <sys/stat.h>
#include <zlib.h>

#define NB__IDX_MAX_VALUES ((uint64_t)1 << 31)
#define NB__IDX_CHUNK      65536u     /* a multiple of every type size */

/* ---- byte sources ---------------------------------------------------------- */

typedef struct src {
    const char *path;             /* NULL for a memory buffer (messages) */
    const unsigned char *mem;     /* memory source */
    size_t mem_len, mem_pos;
    FILE *f;                      /* file source (raw or gzip) */
    unsigned char *in;            /* NB__IDX_CHUNK bytes read from f */
    size_t in_len, in_pos;        /* raw mode: buffered bytes in[in_pos, in_len) */
    int eof;                      /* f has no more bytes */
    int gz;                       /* inflating */
    z_stream zs;
    int zs_init, zs_end;          /* inflateInit2 done; a member ended */
    int64_t size;                 /* bytes the source delivers, -1 if unknown */
} src;

#define FAILP(s, st, ...) fail_at((s)->path, st, __VA_ARGS__)

static nb_status fail_at(const char *path, nb_status st, const char *fmt, ...) NB__PRINTF(3, 4);
static nb_status fail_at(const char *path, nb_status st, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path) return nb__fail(st, "idx: %s: %s", path, msg);
    return nb__fail(st, "idx: %s", msg);
}

/* Refill s->in from the file; NB_ERR_IO on a read error. */
static nb_status refill(src *s)
{
    s->in_pos = 0;
    s->in_len = 0;
    if (s->eof) return NB_OK;
    s->in_len = fread(s->in, 1, NB__IDX_CHUNK, s->f);
    if (s->in_len < NB__IDX_CHUNK) {
        if (ferror(s->f)) return FAILP(s, NB_ERR_IO, "read failed: %s", strerror(errno));
        s->eof = 1;
    }
    return NB_OK;
}

static nb_status gz_read(src *s, unsigned char *dst, size_t n, size_t *got)
{
    z_stream *z = &s->zs;
    z->next_out = dst;
    z->avail_out = (uInt)n;
    while (z->avail_out > 0) {
        if (z->avail_in == 0 && !s->eof) {
            nb_status st = refill(s);
            if (st) return st;
            z->next_in = s->in;
            z->avail_in = (uInt)s->in_len;
        }
        if (s->zs_end) {
            if (z->avail_in == 0) break;             /* clean end of the last member */
            if (inflateReset(z) != Z_OK)             /* another gzip member follows */
                return FAILP(s, NB_ERR_FORMAT, "corrupt gzip data: cannot reset the stream");
            s->zs_end = 0;
        }
        uInt before_out = z->avail_out, before_in = z->avail_in;
        int ret = inflate(z, Z_NO_FLUSH);
        if (ret == Z_STREAM_END) {
            s->zs_end = 1;
            continue;
        }
        if (ret == Z_MEM_ERROR) return FAILP(s, NB_ERR_NOMEM, "out of memory while inflating");
        if (ret == Z_BUF_ERROR || (ret == Z_OK && z->avail_out == before_out && z->avail_in == before_in)) {
            if (z->avail_in == 0 && s->eof)
                return FAILP(s, NB_ERR_FORMAT, "corrupt gzip data: unexpected end of the compressed stream");
            if (ret == Z_BUF_ERROR)
                return FAILP(s, NB_ERR_FORMAT, "corrupt gzip data: inflate made no progress");
            continue;
        }
        if (ret != Z_OK)
            return FAILP(s, NB_ERR_FORMAT, "corrupt gzip data: %s", z->msg ? z->msg : zError(ret));
    }
    *got = n - z->avail_out;
    return NB_OK;
}

/* Read up to n bytes; *got < n only at the end of the data. */
static nb_status src_read(src *s, void *dst, size_t n, size_t *got)
{
    unsigned char *d = dst;
    *got = 0;
    if (s->mem || !s->f) {
        size_t left = s->mem_len - s->mem_pos;
        size_t k = n < left ? n : left;
        if (k) memcpy(d, s->mem + s->mem_pos, k);
        s->mem_pos += k;
        *got = k;
        return NB_OK;
    }
    if (s->gz) return gz_read(s, d, n, got);
    while (*got < n) {
        if (s->in_pos == s->in_len) {
            if (s->eof) break;
            nb_status st = refill(s);
            if (st) return st;
            if (s->in_len == 0) break;
        }
        size_t left = s->in_len - s->in_pos, k = n - *got < left ? n - *got : left;
        memcpy(d + *got, s->in + s->in_pos, k);
        s->in_pos += k;
        *got += k;
    }
    return NB_OK;
}

/* ---- values ------------------------------------------------------------------ */

static int type_size(int type)
{
    switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void convert(int type, const unsigned char *p, size_t n, float *dst)
{
    switch (type) {
    case 0x08:
        for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
        break;
    case 0x09:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
        break;
    case 0x0B:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int16_t)(uint16_t)(p[2 * i] << 8 | p[2 * i + 1]);
        break;
    case 0x0C:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int32_t)be32(p + 4 * i);
        break;
    case 0x0D:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = be32(p + 4 * i);
            float f;
            memcpy(&f, &u, 4);
            dst[i] = f;
        }
        break;
    case 0x0E:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = (uint64_t)be32(p + 8 * i) << 32 | be32(p + 8 * i + 4);
            double v;
            memcpy(&v, &u, 8);
            /* out-of-range double -> float is undefined behaviour in C */
            if (v > FLT_MAX) dst[i] = INFINITY;
            else if (v < -FLT_MAX) dst[i] = -INFINITY;
            else dst[i] = (float)v;
        }
        break;
    }
}

/* ---- the parser ---------------------------------------------------------------- */

static nb_status parse(src *s, nb_idx **out)
{
    unsigned char hdr[4 * NB_MAX_DIMS];
    size_t got;
    nb_status st = src_read(s, hdr, 4, &got);
    if (st) return st;
    if (got < 4)
        return FAILP(s, NB_ERR_FORMAT, "too short for the 4-byte IDX magic number (%zu bytes)", got);
    if (hdr[0] || hdr[1]) {
        if (hdr[0] == 0x1f && hdr[1] == 0x8b && !s->path)
            return FAILP(s, NB_ERR_FORMAT, "bad magic: gzip data (nb_idx_parse takes raw bytes; use nb_idx_load)");
        return FAILP(s, NB_ERR_FORMAT, "bad magic: first two bytes are %02x %02x, expected 00 00", hdr[0], hdr[1]);
    }
    int type = hdr[2], ndim = hdr[3], tsize = type_size(type);
    if (!tsize) return FAILP(s, NB_ERR_FORMAT, "unknown type code 0x%02x", type);
    if (ndim < 1 || ndim > NB_MAX_DIMS)
        return FAILP(s, NB_ERR_FORMAT, "%d dimensions (1..%d supported)", ndim, NB_MAX_DIMS);
    st = src_read(s, hdr, 4 * (size_t)ndim, &got);
    if (st) return st;
    if (got < 4 * (size_t)ndim)
        return FAILP(s, NB_ERR_FORMAT, "truncated header: %d dimensions need %d bytes, found %zu",
                     ndim, 4 * ndim, got);

    nb_idx *x = NB_MALLOC(sizeof *x);
    if (!x) return FAILP(s, NB_ERR_NOMEM, "out of memory");
    memset(x, 0, sizeof *x);
    x->type = type;
    x->ndim = ndim;
    uint64_t count = 1;
    int empty = 0;
    for (int i = 0; i < ndim; i++) {
        x->dims[i] = be32(hdr + 4 * i);
        empty |= x->dims[i] == 0;
    }
    for (int i = 0; i < ndim && !empty; i++) {
        count *= (uint64_t)x->dims[i];   /* count <= 2^31 and a dimension < 2^32: no overflow */
        if (count > NB__IDX_MAX_VALUES) {
            long long d = (long long)x->dims[i];
            NB_FREE(x);
            return FAILP(s, NB_ERR_FORMAT, "the dimensions declare more than %llu values (dimension %d is %lld)",
                         (unsigned long long)NB__IDX_MAX_VALUES, i, d);
        }
    }
    if (empty) count = 0;
    x->count = (int64_t)count;
    uint64_t header = 4 + 4 * (uint64_t)ndim, payload = count * (uint64_t)tsize;

    /* Known source size: both length errors before allocating anything. */
    int sized = s->size >= 0 && (uint64_t)s->size >= header;
    if (sized) {
        uint64_t have = (uint64_t)s->size - header;
        if (have < payload) {
            NB_FREE(x);
            return FAILP(s, NB_ERR_FORMAT, "truncated: expected %llu bytes of data, found %llu",
                         (unsigned long long)payload, (unsigned long long)have);
        }
        if (have > payload) {
            NB_FREE(x);
            return FAILP(s, NB_ERR_FORMAT, "%llu trailing bytes after the %llu bytes of data",
                         (unsigned long long)(have - payload), (unsigned long long)payload);
        }
    }

    /* Values grow with the data (a short gzip never costs its declared size). */
    uint64_t cap = count < NB__IDX_CHUNK ? count : NB__IDX_CHUNK;
    if (sized) cap = count;
    x->values = NB_MALLOC((size_t)(cap ? cap : 1) * sizeof(float));
    unsigned char *buf = NB_MALLOC(NB__IDX_CHUNK);
    if (!x->values || !buf) {
        NB_FREE(buf);
        nb_idx_free(x);
        return FAILP(s, NB_ERR_NOMEM, "cannot allocate %llu values", (unsigned long long)cap);
    }
    uint64_t done = 0;   /* payload bytes read */
    while (done < payload) {
        size_t want = payload - done < NB__IDX_CHUNK ? (size_t)(payload - done) : NB__IDX_CHUNK;
        st = src_read(s, buf, want, &got);
        if (st) goto fail;
        uint64_t v0 = done / (uint64_t)tsize, nv = got / (size_t)tsize;
        if (v0 + nv > cap) {
            uint64_t nc = cap * 2 > count ? count : cap * 2;
            if (nc < v0 + nv) nc = v0 + nv;
            float *nvals = NB_REALLOC(x->values, (size_t)nc * sizeof(float));
            if (!nvals) {
                st = FAILP(s, NB_ERR_NOMEM, "cannot allocate %llu values", (unsigned long long)nc);
                goto fail;
            }
            x->values = nvals;
            cap = nc;
        }
        convert(type, buf, (size_t)nv, x->values + v0);
        done += got;
        if (got < want) {
            st = FAILP(s, NB_ERR_FORMAT, "truncated: expected %llu bytes of data, found %llu",
                       (unsigned long long)payload, (unsigned long long)done);
            goto fail;
        }
    }
    /* One more byte tells a clean end from trailing data (and lets zlib check
     * the gzip CRC and length). */
    st = src_read(s, buf, 1, &got);
    if (st) goto fail;
    if (got) {
        st = FAILP(s, NB_ERR_FORMAT, "trailing bytes after the %llu bytes of data (the %s is longer than its header declares)",
                   (unsigned long long)payload, s->gz ? "decompressed data" : "file");
        goto fail;
    }
    NB_FREE(buf);
    *out = x;
    return NB_OK;
fail:
    NB_FREE(buf);
    nb_idx_free(x);
    return st;
}

/* ---- public API ---------------------------------------------------------------- */

nb_status nb_idx_parse(const void *buf, size_t len, nb_idx **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "idx: out is NULL");
    *out = NULL;
    if (!buf && len) return nb__fail(NB_ERR_ARG, "idx: buffer is NULL");
    src s;
    memset(&s, 0, sizeof s);
    static const unsigned char empty[1];
    s.mem = buf ? buf : empty;
    s.mem_len = len;
    s.size = len > (size_t)INT64_MAX ? INT64_MAX : (int64_t)len;
    return parse(&s, out);
}

nb_status nb_idx_load(const char *path, nb_idx **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "idx: out is NULL");
    *out = NULL;
    if (!path) return nb__fail(NB_ERR_ARG, "idx: path is NULL");
    src s;
    memset(&s, 0, sizeof s);
    s.path = path;
    s.size = -1;
    s.f = fopen(path, "rb");
    if (!s.f) {
        if (errno == ENOENT || errno == ENOTDIR)
            return nb__fail(NB_ERR_NOTFOUND, "idx: %s: no such file", path);
        return nb__fail(NB_ERR_IO, "idx: cannot open %s: %s", path, strerror(errno));
    }
    nb_status st = NB_OK;
    s.in = NB_MALLOC(NB__IDX_CHUNK);
    if (!s.in) {
        st = nb__fail(NB_ERR_NOMEM, "idx: %s: out of memory", path);
        goto done;
    }
    st = refill(&s);
    if (st) goto done;
    if (s.in_len >= 2 && s.in[0] == 0x1f && s.in[1] == 0x8b) {
        s.gz = 1;
        s.zs.next_in = s.in;
        s.zs.avail_in = (uInt)s.in_len;
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK) {
            st = nb__fail(NB_ERR_NOMEM, "idx: %s: cannot initialise zlib", path);
            goto done;
        }
        s.zs_init = 1;
    } else {
        struct stat sb;
        if (fstat(fileno(s.f), &sb) == 0 && S_ISREG(sb.st_mode)) s.size = (int64_t)sb.st_size;
    }
    st = parse(&s, out);
done:
    if (s.zs_init) inflateEnd(&s.zs);
    NB_FREE(s.in);
    fclose(s.f);
    return st;
}

void nb_idx_free(nb_idx *x)
{
    if (!x) return;
    NB_FREE(x->values);
    NB_FREE(x);
}
