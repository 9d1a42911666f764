/* A strict JSON pull parser (see json.h). */
#include "json.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static void put_err(char *err, size_t errsize, size_t at, const char *fmt, ...)
{
    if (!err || !errsize) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < errsize) snprintf(err + k, errsize - (size_t)k, " at byte %zu", at);
}

#define FAIL(j, at, ...) (put_err((j)->err, sizeof (j)->err, (at), __VA_ARGS__), -1)

/* "'x'" for a printable ASCII character, else "byte 0xNN". */
static const char *chdesc(unsigned char c, char buf[16])
{
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (n bytes available) or -1. */
static long hex4(const unsigned char *p, size_t n)
{
    if (n < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t put_utf8(char *dst, unsigned long cp)
{
    unsigned char b[4];
    size_t k;
    if (cp < 0x80) { b[0] = (unsigned char)cp; k = 1; }
    else if (cp < 0x800) { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12)); b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F)); k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18)); b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (unsigned char)(0x80 | (cp & 0x3F)); k = 4;
    }
    if (dst) memcpy(dst, b, k);
    return k;
}

/* Length of the valid UTF-8 sequence starting at p[0] >= 0x80 (n bytes
 * available), or 0 if it is not one (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;       /* overlong */
        if (c == 0xED) hi = 0x9F;       /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;       /* overlong */
        if (c == 0xF4) hi = 0x8F;       /* > U+10FFFF */
    } else return 0;
    if (n < need + 1) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i <= need; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return need + 1;
}

/* Walks string content p[0..n) up to the closing quote, checking it and, if
 * dst is set, decoding it there. Returns the index of the closing quote (n
 * when decoding a span that has none), or (size_t)-1 with a message in err
 * (positions offset by base). */
static size_t str_walk(const unsigned char *p, size_t n, char *dst, size_t *outlen, int *has_nul,
                       char *err, size_t errsize, size_t base)
{
    size_t i = 0, o = 0;
    char cb[16];
    *has_nul = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"') break;
        if (c < 0x20) {
            put_err(err, errsize, base + i, "control character %s in a string", chdesc(c, cb));
            return (size_t)-1;
        }
        if (c == '\\') {
            if (i + 1 >= n) { /* a backslash ends the input: unterminated, as the caller reports */
                i = n;
                break;
            }
            unsigned char e = p[i + 1];
            char simple = 0;
            switch (e) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': break;
            default:
                put_err(err, errsize, base + i, "invalid escape \\%s in a string", chdesc(e, cb));
                return (size_t)-1;
            }
            if (simple) {
                if (dst) dst[o] = simple;
                o++;
                i += 2;
                continue;
            }
            long cp = hex4(p + i + 2, n - (i + 2));
            if (cp < 0) {
                put_err(err, errsize, base + i, "\\u must be followed by four hex digits");
                return (size_t)-1;
            }
            size_t at = i;
            i += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = (i + 1 < n && p[i] == '\\' && p[i + 1] == 'u') ? hex4(p + i + 2, n - (i + 2)) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    put_err(err, errsize, base + at, "lone high surrogate \\u%04lx in a string", cp);
                    return (size_t)-1;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                put_err(err, errsize, base + at, "lone low surrogate \\u%04lx in a string", cp);
                return (size_t)-1;
            }
            if (cp == 0) *has_nul = 1;
            o += put_utf8(dst ? dst + o : NULL, (unsigned long)cp);
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(p + i, n - i);
            if (!k) {
                put_err(err, errsize, base + i, "invalid UTF-8 in a string");
                return (size_t)-1;
            }
            if (dst) memcpy(dst + o, p + i, k);
            o += k;
            i += k;
            continue;
        }
        if (dst) dst[o] = (char)c;
        o++;
        i++;
    }
    *outlen = o;
    return i;
}

void nb__json_init(nb__json *j, const char *s, size_t len)
{
    memset(j, 0, sizeof *j);
    j->s = s;
    j->len = s ? len : 0;
}

static void skip_ws(nb__json *j)
{
    while (j->pos < j->len && is_ws((unsigned char)j->s[j->pos])) j->pos++;
}

nb__json_type nb__json_peek(nb__json *j)
{
    char cb[16];
    skip_ws(j);
    if (j->pos >= j->len) {
        put_err(j->err, sizeof j->err, j->pos, "unexpected end of input");
        return NB__JSON_INVALID;
    }
    unsigned char c = (unsigned char)j->s[j->pos];
    switch (c) {
    case '{': return NB__JSON_OBJECT;
    case '[': return NB__JSON_ARRAY;
    case '"': return NB__JSON_STRING;
    case 't': return NB__JSON_TRUE;
    case 'f': return NB__JSON_FALSE;
    case 'n': return NB__JSON_NULL;
    default:
        if (c == '-' || is_digit(c)) return NB__JSON_NUMBER;
        put_err(j->err, sizeof j->err, j->pos, "unexpected %s where a value should start", chdesc(c, cb));
        return NB__JSON_INVALID;
    }
}

static int open_container(nb__json *j, nb__json_type want, const char *what)
{
    nb__json_type t = nb__json_peek(j);
    if (t == NB__JSON_INVALID) return -1;
    if (t != want) return FAIL(j, j->pos, "expected %s", what);
    if (j->depth >= NB__JSON_MAX_DEPTH)
        return FAIL(j, j->pos, "nesting deeper than %d levels", NB__JSON_MAX_DEPTH);
    j->first[j->depth++] = 1;
    j->pos++;
    return 0;
}

int nb__json_object_begin(nb__json *j) { return open_container(j, NB__JSON_OBJECT, "an object"); }
int nb__json_array_begin(nb__json *j) { return open_container(j, NB__JSON_ARRAY, "an array"); }

/* Shared by object_next/array_next: 1 if an item follows, 0 at the close. */
static int next_item(nb__json *j, char close, const char *what)
{
    char cb[16];
    if (j->depth <= 0) return FAIL(j, j->pos, "not inside %s", what);
    skip_ws(j);
    if (j->pos >= j->len) return FAIL(j, j->pos, "unexpected end of input inside %s", what);
    unsigned char c = (unsigned char)j->s[j->pos];
    if (c == (unsigned char)close) {
        j->pos++;
        j->depth--;
        return 0;
    }
    if (!j->first[j->depth - 1]) {
        if (c != ',') return FAIL(j, j->pos, "expected ',' or '%c' in %s, found %s", close, what, chdesc(c, cb));
        j->pos++;
        skip_ws(j);
        if (j->pos < j->len && j->s[j->pos] == close) return FAIL(j, j->pos, "trailing comma in %s", what);
    }
    j->first[j->depth - 1] = 0;
    return 1;
}

int nb__json_object_next(nb__json *j, nb__json_str *key)
{
    char cb[16];
    int r = next_item(j, '}', "an object");
    if (r <= 0) return r;
    skip_ws(j);
    if (j->pos >= j->len) return FAIL(j, j->pos, "unexpected end of input inside an object");
    if (j->s[j->pos] != '"')
        return FAIL(j, j->pos, "expected a string key, found %s", chdesc((unsigned char)j->s[j->pos], cb));
    if (nb__json_string(j, key)) return -1;
    skip_ws(j);
    if (j->pos >= j->len) return FAIL(j, j->pos, "unexpected end of input after an object key");
    if (j->s[j->pos] != ':')
        return FAIL(j, j->pos, "expected ':' after an object key, found %s", chdesc((unsigned char)j->s[j->pos], cb));
    j->pos++;
    return 1;
}

int nb__json_array_next(nb__json *j) { return next_item(j, ']', "an array"); }

int nb__json_string(nb__json *j, nb__json_str *out)
{
    nb__json_type t = nb__json_peek(j);
    if (t == NB__JSON_INVALID) return -1;
    if (t != NB__JSON_STRING) return FAIL(j, j->pos, "expected a string");
    size_t start = j->pos + 1, len = 0;
    int has_nul = 0;
    size_t q = str_walk((const unsigned char *)j->s + start, j->len - start, NULL, &len, &has_nul,
                        j->err, sizeof j->err, start);
    if (q == (size_t)-1) return -1;
    if (start + q >= j->len) return FAIL(j, j->pos, "unterminated string");
    out->raw = j->s + start;
    out->raw_len = q;
    out->len = len;
    out->has_nul = has_nul;
    j->pos = start + q + 1;
    return 0;
}

int nb__json_number(nb__json *j, nb__json_num *out)
{
    nb__json_type t = nb__json_peek(j);
    if (t == NB__JSON_INVALID) return -1;
    if (t != NB__JSON_NUMBER) return FAIL(j, j->pos, "expected a number");
    const char *s = j->s;
    size_t n = j->len, p = j->pos, start = p;
    int neg = 0, big = 0, real = 0;
    int64_t v = 0;
    if (s[p] == '-') { neg = 1; p++; }
    if (p >= n || !is_digit((unsigned char)s[p])) return FAIL(j, p, "expected a digit in a number");
    if (s[p] == '0') {
        p++;
        if (p < n && is_digit((unsigned char)s[p])) return FAIL(j, start, "number with a leading zero");
    } else {
        for (; p < n && is_digit((unsigned char)s[p]); p++) {
            if (big) continue;
            v = v * 10 + (s[p] - '0');
            if (v > NB__JSON_MAX_EXACT) big = 1;
        }
    }
    if (p < n && s[p] == '.') {
        p++;
        if (p >= n || !is_digit((unsigned char)s[p])) return FAIL(j, p, "expected a digit after '.' in a number");
        while (p < n && is_digit((unsigned char)s[p])) p++;
        real = 1;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        if (p >= n || !is_digit((unsigned char)s[p])) return FAIL(j, p, "expected a digit in an exponent");
        while (p < n && is_digit((unsigned char)s[p])) p++;
        real = 1;
    }
    out->raw = s + start;
    out->raw_len = p - start;
    out->negative = neg;
    out->kind = real ? NB__JSON_REAL : big ? NB__JSON_BIGINT : NB__JSON_INT;
    out->value = out->kind == NB__JSON_INT ? (neg ? -v : v) : 0;
    j->pos = p;
    return 0;
}

static int literal(nb__json *j, const char *word)
{
    size_t k = strlen(word);
    if (j->len - j->pos < k || memcmp(j->s + j->pos, word, k) != 0)
        return FAIL(j, j->pos, "invalid literal (expected %s)", word);
    j->pos += k;
    return 0;
}

int nb__json_skip(nb__json *j)
{
    nb__json_str str;
    nb__json_num num;
    int r;
    switch (nb__json_peek(j)) {
    case NB__JSON_OBJECT:
        if (nb__json_object_begin(j)) return -1;
        while ((r = nb__json_object_next(j, &str)) == 1)
            if (nb__json_skip(j)) return -1;
        return r;
    case NB__JSON_ARRAY:
        if (nb__json_array_begin(j)) return -1;
        while ((r = nb__json_array_next(j)) == 1)
            if (nb__json_skip(j)) return -1;
        return r;
    case NB__JSON_STRING: return nb__json_string(j, &str);
    case NB__JSON_NUMBER: return nb__json_number(j, &num);
    case NB__JSON_TRUE: return literal(j, "true");
    case NB__JSON_FALSE: return literal(j, "false");
    case NB__JSON_NULL: return literal(j, "null");
    case NB__JSON_INVALID: break;
    }
    return -1;
}

int nb__json_end(nb__json *j)
{
    char cb[16];
    skip_ws(j);
    if (j->pos < j->len)
        return FAIL(j, j->pos, "trailing %s after the JSON value", chdesc((unsigned char)j->s[j->pos], cb));
    return 0;
}

int nb__json_validate(const char *s, size_t len, char *err, size_t errsize)
{
    nb__json j;
    nb__json_init(&j, s, len);
    int r = nb__json_skip(&j);
    if (!r) r = nb__json_end(&j);
    if (err && errsize) snprintf(err, errsize, "%s", r ? j.err : "");
    return r ? -1 : 0;
}

void nb__json_decode(const nb__json_str *s, char *dst)
{
    size_t len = 0;
    int has_nul;
    /* The span was checked when it was read, so this cannot fail. */
    str_walk((const unsigned char *)s->raw, s->raw_len, dst, &len, &has_nul, NULL, 0, 0);
    dst[len] = 0;
}

int nb__json_str_eq(const nb__json_str *s, const char *lit)
{
    size_t k = strlen(lit);
    if (s->len != k) return 0;
    if (s->raw_len == k) return memcmp(s->raw, lit, k) == 0; /* no escapes */
    char buf[64];
    if (k >= sizeof buf) return 0; /* documented: lit is short */
    nb__json_decode(s, buf);
    return memcmp(buf, lit, k) == 0;
}

int nb__json_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) { i++; continue; }
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

size_t nb__json_quote(const char *s, size_t n, char *dst)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    char tmp[6];
    if (dst) dst[o] = '"';
    o++;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t k = 2;
        tmp[0] = '\\';
        switch (c) {
        case '"': tmp[1] = '"'; break;
        case '\\': tmp[1] = '\\'; break;
        case '\b': tmp[1] = 'b'; break;
        case '\f': tmp[1] = 'f'; break;
        case '\n': tmp[1] = 'n'; break;
        case '\r': tmp[1] = 'r'; break;
        case '\t': tmp[1] = 't'; break;
        default:
            if (c < 0x20) {
                memcpy(tmp, "\\u00", 4);
                tmp[4] = hex[c >> 4];
                tmp[5] = hex[c & 15];
                k = 6;
            } else {
                tmp[0] = (char)c;
                k = 1;
            }
        }
        if (dst) memcpy(dst + o, tmp, k);
        o += k;
    }
    if (dst) dst[o] = '"';
    return o + 1;
}

size_t nb__json_utf8_len(const char *s, size_t n)
{
    if (!n || (unsigned char)s[0] < 0x80) return 0;
    return utf8_seq((const unsigned char *)s, n);
}
