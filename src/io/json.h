/* Private to libnabla: a small strict JSON (RFC 8259) pull parser, enough for
 * safetensors headers. It allocates nothing: strings and numbers are returned
 * as spans of the input, so memory never depends on what a file claims.
 *
 * Strict means: one value and only whitespace after it; no trailing commas;
 * no control characters, invalid escapes, lone surrogates or invalid UTF-8 in
 * strings; numbers exactly as the grammar says (no leading zeros, "+", ".5",
 * "1.", NaN); nesting at most NB__JSON_MAX_DEPTH deep. Duplicate keys are
 * the caller's business (it knows which ones matter).
 *
 * Use: nb__json_validate() the whole text once, then walk it with a cursor:
 *     nb__json j; nb__json_init(&j, s, len);
 *     nb__json_object_begin(&j);
 *     while ((r = nb__json_object_next(&j, &key)) == 1) { ...read or skip the value... }
 * Every call returns -1 on error with a message in j.err ("... at byte N",
 * N counted from the start of the text). */
#ifndef NABLA_IO_JSON_H
#define NABLA_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#define NB__JSON_MAX_DEPTH 16
#define NB__JSON_MAX_EXACT ((int64_t)1 << 53) /* larger integers are not exact in a double */

typedef enum nb__json_type {
    NB__JSON_INVALID = 0, /* end of input or a character no value starts with */
    NB__JSON_OBJECT,
    NB__JSON_ARRAY,
    NB__JSON_STRING,
    NB__JSON_NUMBER,
    NB__JSON_TRUE,
    NB__JSON_FALSE,
    NB__JSON_NULL
} nb__json_type;

typedef struct nb__json {
    const char *s;
    size_t len, pos;
    int depth;
    unsigned char first[NB__JSON_MAX_DEPTH]; /* nothing read yet in the open container */
    char err[160];
} nb__json;

/* A string as it appears between its quotes. */
typedef struct nb__json_str {
    const char *raw;   /* escapes not decoded */
    size_t raw_len;
    size_t len;        /* bytes once decoded to UTF-8 (<= raw_len) */
    int has_nul;       /* decodes to something containing U+0000 */
} nb__json_str;

typedef enum nb__json_num_kind {
    NB__JSON_INT,      /* integer syntax, |value| <= 2^53: `value` is exact */
    NB__JSON_BIGINT,   /* integer syntax, larger than 2^53 */
    NB__JSON_REAL      /* has a fraction or an exponent */
} nb__json_num_kind;

typedef struct nb__json_num {
    const char *raw;
    size_t raw_len;
    nb__json_num_kind kind;
    int negative;      /* a leading '-' (also for "-0") */
    int64_t value;     /* when kind == NB__JSON_INT */
} nb__json_num;

void nb__json_init(nb__json *j, const char *s, size_t len);
/* 0 if s[0..len) is exactly one JSON value with optional whitespace around
 * it; else -1 and a message in err (always NUL-terminated). */
int nb__json_validate(const char *s, size_t len, char *err, size_t errsize);

/* Skips whitespace; the type of the value that starts there (INVALID, with a
 * message in j->err, at the end of input or on an unexpected character). */
nb__json_type nb__json_peek(nb__json *j);

/* Enter the object/array that starts at the cursor (0, or -1 if not one). */
int nb__json_object_begin(nb__json *j);
int nb__json_array_begin(nb__json *j);
/* Advance to the next member: 1 with its key read and the cursor on its
 * value (which the caller must read or skip before the next call), 0 after
 * the closing brace, -1 on error. */
int nb__json_object_next(nb__json *j, nb__json_str *key);
/* Likewise for arrays: 1 with the cursor on the element, 0 after ']'. */
int nb__json_array_next(nb__json *j);

int nb__json_string(nb__json *j, nb__json_str *out);
int nb__json_number(nb__json *j, nb__json_num *out);
/* Read and discard any value (validating it). */
int nb__json_skip(nb__json *j);
/* 0 if only whitespace remains. */
int nb__json_end(nb__json *j);

/* Decode a string read by this parser: writes s->len bytes and a NUL into
 * dst, which must hold s->len + 1 bytes. */
void nb__json_decode(const nb__json_str *s, char *dst);
/* Whether the decoded string equals the NUL-terminated lit (< 64 bytes). */
int nb__json_str_eq(const nb__json_str *s, const char *lit);


/* Length (2..4) of the valid UTF-8 sequence of a non-ASCII character at
 * s[0] (n bytes available), or 0 if there is none. */
size_t nb__json_utf8_len(const char *s, size_t n);
/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF),
 * which is what a JSON text must be. */
int nb__json_utf8_valid(const char *s, size_t n);
/* Write s[0..n) as a quoted JSON string ('"', '\\' and control characters
 * escaped; other bytes as they are) into dst, which may be NULL to measure.
 * Returns the number of bytes (no NUL is written). */
size_t nb__json_quote(const char *s, size_t n, char *dst);

#endif
