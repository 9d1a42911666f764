/* Fuzz target for the strict JSON parser under the safetensors reader
 * (src/io/json.c). Any bytes: nb__json_validate answers with a message on
 * failure; a walk of the same bytes with the cursor API (what the reader
 * does) agrees with it, never reads outside the input, and on valid input
 * meets the invariants below. A violated invariant traps, which libFuzzer
 * and tests/fuzz/replay.c both report as a crash. */
#include "../../src/io/json.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

/* A string just read: its raw span sits between two quotes of the input, it
 * decodes to valid UTF-8 of the announced length, and quoting the decoded
 * bytes gives JSON that reads back to the same bytes. */
static void check_string(const nb__json *j, const nb__json_str *s)
{
    REQUIRE(s->raw > j->s && s->raw + s->raw_len < j->s + j->len);
    REQUIRE(s->raw[-1] == '"' && s->raw[s->raw_len] == '"');
    REQUIRE(s->len <= s->raw_len);
    char *dec = malloc(s->len + 1);
    REQUIRE(dec);
    nb__json_decode(s, dec);
    REQUIRE(dec[s->len] == 0 && nb__json_utf8_valid(dec, s->len));
    REQUIRE(!s->has_nul == !memchr(dec, 0, s->len));
    size_t qlen = nb__json_quote(dec, s->len, NULL);
    char *q = malloc(qlen);
    REQUIRE(q && nb__json_quote(dec, s->len, q) == qlen);
    nb__json k;
    nb__json_str back;
    nb__json_init(&k, q, qlen);
    REQUIRE(nb__json_string(&k, &back) == 0 && nb__json_end(&k) == 0 && back.len == s->len);
    char *dec2 = malloc(back.len + 1);
    REQUIRE(dec2);
    nb__json_decode(&back, dec2);
    REQUIRE(memcmp(dec, dec2, s->len) == 0);
    if (s->len < 63) REQUIRE(nb__json_str_eq(s, dec) || s->has_nul);
    free(dec2);
    free(q);
    free(dec);
}

/* A number just read: its span is the longest run of number characters and
 * an exact integer has the value its digits say. */
static void check_number(const nb__json *j, const nb__json_num *n)
{
    REQUIRE(n->raw >= j->s && n->raw + n->raw_len <= j->s + j->len && n->raw_len > 0);
    REQUIRE(n->negative == (n->raw[0] == '-'));
    if (n->kind == NB__JSON_INT) {
        char buf[32];
        REQUIRE(n->raw_len < sizeof buf);
        memcpy(buf, n->raw, n->raw_len);
        buf[n->raw_len] = 0;
        REQUIRE(strtoll(buf, NULL, 10) == n->value);
        REQUIRE(n->value <= NB__JSON_MAX_EXACT && n->value >= -NB__JSON_MAX_EXACT);
    }
}

/* Read one value with the cursor API: 0, or -1 where the parser says the
 * input is not JSON. */
static int walk(nb__json *j)
{
    nb__json_str s;
    nb__json_num n;
    int r;
    switch (nb__json_peek(j)) {
    case NB__JSON_OBJECT:
        if (nb__json_object_begin(j)) return -1;
        while ((r = nb__json_object_next(j, &s)) == 1) {
            check_string(j, &s);
            if (walk(j)) return -1;
        }
        return r;
    case NB__JSON_ARRAY:
        if (nb__json_array_begin(j)) return -1;
        while ((r = nb__json_array_next(j)) == 1)
            if (walk(j)) return -1;
        return r;
    case NB__JSON_STRING:
        if (nb__json_string(j, &s)) return -1;
        check_string(j, &s);
        return 0;
    case NB__JSON_NUMBER:
        if (nb__json_number(j, &n)) return -1;
        check_number(j, &n);
        return 0;
    case NB__JSON_INVALID: return -1;
    default: return nb__json_skip(j); /* true, false, null */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so a read past the end is seen by ASan. */
    char *s = malloc(size ? size : 1);
    REQUIRE(s);
    if (size) memcpy(s, data, size);
    char err[160];
    memset(err, 'x', sizeof err);
    int valid = nb__json_validate(s, size, err, sizeof err) == 0;
    REQUIRE(memchr(err, 0, sizeof err) && (valid ? err[0] == 0 : err[0] != 0));
    nb__json j;
    nb__json_init(&j, s, size);
    int walked = walk(&j) == 0 && nb__json_end(&j) == 0;
    REQUIRE(walked == valid);
    REQUIRE(j.pos <= size && memchr(j.err, 0, sizeof j.err));
    free(s);
    return 0;
}
