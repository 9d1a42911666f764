/* Text corpora for character-level models: strict UTF-8 decoding, fortune(6)
 * files, a vocabulary of code points, the train/valid split and batches of
 * windows. nabla/seq.h documents the API. */
#include "../core/internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- UTF-8 ---------------------------------------------------------------------- */

/* The code point starting at s[0] (len bytes left), its length in *k; -1 on
 * an invalid or truncated sequence, with the reason in *why. */
static int32_t decode_one(const unsigned char *s, size_t len, int *k, const char **why)
{
    unsigned c = s[0];
    int n;
    uint32_t cp, min;
    if (c < 0x80) {
        *k = 1;
        if (!c) *why = "NUL byte";
        return c ? (int32_t)c : -1;
    }
    if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
    else {
        *why = (c & 0xC0) == 0x80 ? "unexpected continuation byte" : "invalid lead byte";
        return -1;
    }
    if ((size_t)n > len) {
        *why = "truncated sequence";
        return -1;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *why = "truncated sequence";
            return -1;
        }
        cp = cp << 6 | (s[i] & 0x3F);
    }
    *k = n;
    if (cp < min) *why = "overlong encoding";
    else if (cp >= 0xD800 && cp <= 0xDFFF) *why = "UTF-16 surrogate";
    else if (cp > 0x10FFFF) *why = "code point above U+10FFFF";
    else return (int32_t)cp;
    return -1;
}

nb_status nb_utf8_decode(const char *s, size_t len, uint32_t **out, int64_t *n)
{
    if (!out || !n || (!s && len)) return nb__fail(NB_ERR_ARG, "utf8_decode: NULL argument");
    *out = NULL;
    *n = 0;
    uint32_t *cps = NB_MALLOC(sizeof *cps * (len ? len : 1));
    if (!cps) return nb__fail(NB_ERR_NOMEM, "utf8_decode: out of memory");
    const unsigned char *u = (const unsigned char *)s;
    int64_t count = 0;
    for (size_t i = 0; i < len;) {
        int k = 1;
        const char *why = "";
        int32_t cp = decode_one(u + i, len - i, &k, &why);
        if (cp < 0) {
            NB_FREE(cps);
            return nb__fail(NB_ERR_FORMAT, "invalid UTF-8 at byte %zu (0x%02x): %s", i, u[i], why);
        }
        cps[count++] = (uint32_t)cp;
        i += (size_t)k;
    }
    *out = cps;
    *n = count;
    return NB_OK;
}

int nb_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- fortune files -------------------------------------------------------------- */

static int is_separator(const char *line, size_t n)
{
    return (n == 1 && line[0] == '%') || (n == 2 && line[0] == '%' && line[1] == '\r');
}

static int has_separator(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - text) - i : len - i;
        if (is_separator(text + i, n)) return 1;
        i += n + 1;
    }
    return 0;
}

/* Copy text without fortune's "%" lines (each becomes an empty line, so
 * entries stay apart) and without ANSI CSI sequences (ESC [ params final),
 * which fortunes-zh uses to colour titles; returns the new length. */
static size_t strip_fortune(const char *text, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - text) - i : len - i;
        if (is_separator(text + i, n)) {
            i += n + 1;
            dst[o++] = '\n';
            continue;
        }
        size_t end = i + n + (nl != NULL);
        for (; i < end; i++) {
            if (text[i] == 0x1b && i + 1 < end && text[i + 1] == '[') {
                size_t j = i + 2;
                while (j < end && (unsigned char)text[j] >= 0x20 && (unsigned char)text[j] <= 0x3f) j++;
                if (j < end && (unsigned char)text[j] >= 0x40 && (unsigned char)text[j] <= 0x7e) {
                    i = j; /* the loop's i++ skips the final byte */
                    continue;
                }
            }
            dst[o++] = text[i];
        }
    }
    return o;
}

/* ---- corpus ------------------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int nb_corpus_id(const nb_corpus *c, uint32_t cp)
{
    if (!c) return -1;
    int lo = 0, hi = c->nvocab - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->vocab[mid] == cp) return mid;
        if (c->vocab[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

void nb_corpus_free(nb_corpus *c)
{
    if (!c) return;
    NB_FREE(c->vocab);
    NB_FREE(c->ids);
    NB_FREE(c);
}

/* The vocabulary (sorted unique code points) and the ids of cps. */
static nb_status index_text(nb_corpus *c, const uint32_t *cps, int64_t n)
{
    uint32_t *sorted = NB_MALLOC(sizeof *sorted * (size_t)n);
    c->ids = NB_MALLOC(sizeof *c->ids * (size_t)n);
    if (!sorted || !c->ids) {
        NB_FREE(sorted);
        return nb__fail(NB_ERR_NOMEM, "corpus: out of memory");
    }
    memcpy(sorted, cps, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u32);
    int64_t v = 0;
    for (int64_t i = 0; i < n; i++)
        if (!v || sorted[i] != sorted[v - 1]) sorted[v++] = sorted[i];
    c->vocab = NB_REALLOC(sorted, sizeof *sorted * (size_t)v);
    if (!c->vocab) c->vocab = sorted;
    c->nvocab = (int)v;
    for (int64_t i = 0; i < n; i++) c->ids[i] = nb_corpus_id(c, cps[i]);
    c->n = n;
    return NB_OK;
}

nb_status nb_corpus_from_text(const char *text, size_t len, const nb_corpus_opts *opts, nb_corpus **out)
{
    if (!out || (!text && len)) return nb__fail(NB_ERR_ARG, "corpus: NULL argument");
    *out = NULL;
    nb_corpus_opts o = opts ? *opts : (nb_corpus_opts){0.1, -1};
    if (!(o.valid_fraction >= 0 && o.valid_fraction <= 0.5))
        return nb__fail(NB_ERR_ARG, "corpus: valid_fraction must be in [0, 0.5] (got %g)", o.valid_fraction);
    char *clean = NULL;
    if (o.fortune > 0 || (o.fortune < 0 && has_separator(text, len))) {
        if (!(clean = NB_MALLOC(len ? len : 1))) return nb__fail(NB_ERR_NOMEM, "corpus: out of memory");
        len = strip_fortune(text, len, clean);
        text = clean;
    }
    uint32_t *cps = NULL;
    int64_t n = 0;
    nb_status s = nb_utf8_decode(text, len, &cps, &n);
    NB_FREE(clean);
    if (s) return s;
    int64_t nvalid = (int64_t)((double)n * o.valid_fraction);
    nb_corpus *c = NULL;
    if (n - nvalid < 2 || (o.valid_fraction > 0 && nvalid < 2))
        s = nb__fail(NB_ERR_FORMAT, "corpus: %lld characters are too few for a training and a validation part of "
                     "at least 2 each", (long long)n);
    else if (!(c = NB_MALLOC(sizeof *c)))
        s = nb__fail(NB_ERR_NOMEM, "corpus: out of memory");
    if (c) {
        memset(c, 0, sizeof *c);
        if (!(s = index_text(c, cps, n))) c->ntrain = n - nvalid;
    }
    NB_FREE(cps);
    if (s) {
        nb_corpus_free(c);
        return s;
    }
    *out = c;
    return NB_OK;
}

nb_status nb_corpus_load(const char *path, const nb_corpus_opts *opts, nb_corpus **out)
{
    if (!path || !out) return nb__fail(NB_ERR_ARG, "corpus: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT)
        return nb__fail(NB_ERR_NOTFOUND, "%s: no such corpus file (Debian packages: fortunes-zh installs "
                        "/usr/share/games/fortunes/tang300, song100 and chinese; fortunes installs English ones; "
                        "apt-get install fortunes-zh fortunes)", path);
    if (!f) return nb__fail(NB_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    nb_status s = NB_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            char *nb = NB_REALLOC(buf, ncap);
            if (!nb) {
                s = nb__fail(NB_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb, cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) s = nb__fail(NB_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (!s) {
        s = nb_corpus_from_text(buf, len, opts, out);
        if (s) {
            char why[256]; /* the message buffer is rewritten by nb__fail */
            snprintf(why, sizeof why, "%s", nb_last_error());
            nb__fail(s, "%s: %s", path, why);
        }
    }
    NB_FREE(buf);
    return s;
}

/* ---- batches ------------------------------------------------------------------------ */

nb_status nb_text_batch(nb_ctx *ctx, nb_rng *rng, const int32_t *ids, int64_t len, int n, int seq, nb_tensor **x,
                        int32_t *y)
{
    if (x) *x = NULL;
    if (!ctx || !rng || !ids || !x || !y || n < 1 || seq < 1)
        return nb__fail(NB_ERR_ARG, "text_batch: needs a context, a generator, ids, x, y, n >= 1, seq >= 1");
    if (len < (int64_t)seq + 1 || len - seq > UINT32_MAX)
        return nb__fail(NB_ERR_ARG, "text_batch: %lld tokens cannot hold a window of %d + 1", (long long)len, seq);
    nb_tensor *t = nb_tensor_new(ctx, 2, (int64_t[]){n, seq});
    if (!t) return nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_NOMEM;
    for (int b = 0; b < n; b++) {
        const int32_t *src = ids + nb_rng_below(rng, (uint32_t)(len - seq));
        for (int k = 0; k < seq; k++) {
            t->data[(int64_t)b * seq + k] = (float)src[k];
            y[(int64_t)b * seq + k] = src[k + 1];
        }
    }
    *x = t;
    return NB_OK;
}
