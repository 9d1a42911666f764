/* Activations and losses against PyTorch: tests/fixtures/golden.txt, written
 * by scripts/gen_fixtures.py (its header documents the format). Every case's
 * forward values and gradients must match; then the error paths, strided
 * inputs, autograd bookkeeping and thread-count determinism.
 *
 * Tolerance: |got - want| <= 1e-5 * |want| + 1e-6. The relative part is ~80
 * float32 ulps, room for a different (but equally exact) order of float
 * operations than torch's. The absolute 1e-6 is for values near 0 that come
 * out of cancellations of O(1) terms, e.g. softmax's y * (g - sum(g*y)) or
 * sigmoid(-100) (torch rounds it to 0, nabla keeps 3.7e-44): their error is a
 * few ulps of the O(1) terms (1 ulp of 1.0 is 1.2e-7), not of the result. All
 * inputs and gradients r in the fixture are O(1)..O(10), so 1e-6 is ~8 ulps
 * of the terms; anything that is actually wrong is off by far more. */
#include "test.h"
#include <stdlib.h>

#define G_RTOL 1e-5
#define G_ATOL 1e-6

/* ---- the fixture ----------------------------------------------------------- */

typedef struct {
    char kind;              /* 't' tensor, 'i' ints, 'f' float */
    char key[32];
    int ndim;
    int64_t shape[NB_MAX_DIMS];
    int64_t n;
    double *v;
} fx_item;

typedef struct {
    char name[64];
    fx_item *items;
    int nitems;
} fx_case;

static fx_case *fx_cases;
static int fx_ncases;
static char fx_error[256];

static int fx_parse_line(char *line, fx_case **cur)
{
    char *save, *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok || tok[0] == '#') return 1;
    if (!strcmp(tok, "case")) {
        char *name = strtok_r(NULL, " \t\r\n", &save);
        if (*cur || !name || strlen(name) >= sizeof fx_cases[0].name) return 0;
        fx_case *c = realloc(fx_cases, (size_t)(fx_ncases + 1) * sizeof *c);
        if (!c) return 0;
        fx_cases = c;
        *cur = &fx_cases[fx_ncases++];
        memset(*cur, 0, sizeof **cur);
        strcpy((*cur)->name, name);
        return 1;
    }
    if (!strcmp(tok, "end")) {
        if (!*cur) return 0;
        *cur = NULL;
        return 1;
    }
    if (!*cur) return 0;
    fx_case *c = *cur;
    fx_item it;
    memset(&it, 0, sizeof it);
    char *key = strtok_r(NULL, " \t\r\n", &save), *end;
    if (!key || strlen(key) >= sizeof it.key) return 0;
    strcpy(it.key, key);
    if (!strcmp(tok, "tensor")) {
        char *s = strtok_r(NULL, " \t\r\n", &save);
        if (!s) return 0;
        it.kind = 't';
        it.ndim = (int)strtol(s, &end, 10);
        if (*end || it.ndim < 0 || it.ndim > NB_MAX_DIMS) return 0;
        it.n = 1;
        for (int d = 0; d < it.ndim; d++) {
            s = strtok_r(NULL, " \t\r\n", &save);
            if (!s) return 0;
            it.shape[d] = strtoll(s, &end, 10);
            if (*end || it.shape[d] < 0) return 0;
            it.n *= it.shape[d];
        }
    } else if (!strcmp(tok, "int") || !strcmp(tok, "float")) {
        it.kind = tok[0];
        it.n = 1;
        if (it.kind == 'i') {
            char *s = strtok_r(NULL, " \t\r\n", &save);
            if (!s) return 0;
            it.n = strtoll(s, &end, 10);
            if (*end || it.n < 0) return 0;
        }
    } else {
        return 0;
    }
    it.v = malloc((size_t)(it.n ? it.n : 1) * sizeof(double));
    if (!it.v) return 0;
    for (int64_t k = 0; k < it.n; k++) {
        char *s = strtok_r(NULL, " \t\r\n", &save);
        if (!s) return free(it.v), 0;
        it.v[k] = strtod(s, &end);
        if (*end) return free(it.v), 0;
    }
    if (strtok_r(NULL, " \t\r\n", &save)) return free(it.v), 0;  /* extra values */
    fx_item *items = realloc(c->items, (size_t)(c->nitems + 1) * sizeof *items);
    if (!items) return free(it.v), 0;
    c->items = items;
    c->items[c->nitems++] = it;
    return 1;
}

/* Loads the fixture once (kept for the process: every TEST reads it). */
static int fx_load(void)
{
    static int loaded;
    if (loaded) return loaded > 0;
    loaded = -1;
    const char *path = nbt_fixture("golden.txt");
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(fx_error, sizeof fx_error, "cannot open %s (run scripts/gen_fixtures.py)", path);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    fx_case *cur = NULL;
    int ok = 1;
    while (ok && getline(&line, &cap, f) >= 0) {
        lineno++;
        if (!fx_parse_line(line, &cur)) {
            snprintf(fx_error, sizeof fx_error, "%s:%ld: malformed record", path, lineno);
            ok = 0;
        }
    }
    if (ok && cur) {
        snprintf(fx_error, sizeof fx_error, "%s: case %s has no end", path, cur->name);
        ok = 0;
    }
    free(line);
    fclose(f);
    if (ok) loaded = 1;
    return ok;
}

static const fx_item *fx_get(const fx_case *c, const char *key, char kind)
{
    for (int i = 0; i < c->nitems; i++)
        if (c->items[i].kind == kind && !strcmp(c->items[i].key, key)) return &c->items[i];
    return NULL;
}

static int fx_int(const fx_case *c, const char *key, int dflt)
{
    const fx_item *it = fx_get(c, key, 'i');
    return it && it->n == 1 ? (int)it->v[0] : dflt;
}

static nb_tensor *fx_tensor(nb_ctx *ctx, const fx_case *c, const char *key, int requires_grad)
{
    const fx_item *it = fx_get(c, key, 't');
    if (!it) return NULL;
    nb_tensor *t = nb_tensor_new(ctx, it->ndim, it->shape);
    if (!t) return NULL;
    for (int64_t k = 0; k < it->n; k++) t->data[k] = (float)it->v[k];
    return nb_requires_grad(t, requires_grad);
}

/* got (n floats, row-major over `shape`) against the fixture's `key`. */
static int fx_match(const fx_case *c, const char *key, const float *got, int ndim, const int64_t *shape)
{
    const fx_item *it = fx_get(c, key, 't');
    if (!it) {
        nbt_fail(__FILE__, __LINE__, "%s: fixture has no tensor %s", c->name, key);
        return 0;
    }
    if (it->ndim != ndim || memcmp(it->shape, shape, (size_t)ndim * sizeof(int64_t))) {
        nbt_fail(__FILE__, __LINE__, "%s: %s has %d dims, fixture %d (or sizes differ)", c->name, key, ndim,
                 it->ndim);
        return 0;
    }
    if (!got) {
        nbt_fail(__FILE__, __LINE__, "%s: %s is missing (NULL)", c->name, key);
        return 0;
    }
    for (int64_t k = 0; k < it->n; k++) {
        double a = got[k], b = it->v[k];
        if (!(fabs(a - b) <= G_ATOL + G_RTOL * fabs(b))) {
            nbt_fail(__FILE__, __LINE__, "%s: %s[%lld] = %.9g, torch %.9g", c->name, key, (long long)k, a, b);
            return 0;
        }
    }
    return 1;
}

static int fx_match_t(const fx_case *c, const char *key, const nb_tensor *t, int grad)
{
    if (!t) {
        nbt_fail(__FILE__, __LINE__, "%s: no tensor for %s (%s)", c->name, key, nb_last_error());
        return 0;
    }
    return fx_match(c, key, grad ? t->grad : t->data, t->ndim, t->shape);
}

/* ---- running a case ---------------------------------------------------------- */

static int fam_is(const char *name, const char *fam)
{
    size_t n = strlen(fam);
    return !strncmp(name, fam, n) && name[n] == '.';
}

/* The op of a case on the tensors of `in` (input first, then target). */
static nb_tensor *run_op(nb_ctx *ctx, const fx_case *c, nb_tensor *x, nb_tensor *t,
                         int32_t *labels, float *weight)
{
    const char *nm = c->name;
    nb_reduction r = (nb_reduction)fx_int(c, "reduction", 0);
    const fx_item *fs = fx_get(c, "slope", 'f'), *fm = fx_get(c, "margin", 'f');
    if (fam_is(nm, "sigmoid")) return nb_sigmoid(ctx, x);
    if (fam_is(nm, "tanh")) return nb_tanh(ctx, x);
    if (fam_is(nm, "relu")) return nb_relu(ctx, x);
    if (fam_is(nm, "leaky_relu")) return nb_leaky_relu(ctx, x, fs ? (float)fs->v[0] : 0.01f);
    if (fam_is(nm, "softmax")) return nb_softmax(ctx, x, fx_int(c, "axis", -1));
    if (fam_is(nm, "log_softmax")) return nb_log_softmax(ctx, x, fx_int(c, "axis", -1));
    if (fam_is(nm, "mse")) return nb_mse_loss(ctx, x, t, r);
    if (fam_is(nm, "l1")) return nb_l1_loss(ctx, x, t, r);
    if (fam_is(nm, "bce")) return nb_bce_loss(ctx, x, t, r);
    if (fam_is(nm, "bcewl")) return nb_bce_with_logits(ctx, x, t, r);
    if (fam_is(nm, "kl")) return nb_kl_div(ctx, x, t, r, fx_int(c, "log_target", 0));
    if (fam_is(nm, "hinge")) return nb_hinge_loss(ctx, x, t, r);
    if (fam_is(nm, "ce")) return nb_cross_entropy(ctx, x, labels, weight, fx_int(c, "ignore_index", -100), r);
    if (fam_is(nm, "mm"))
        return nb_multi_margin_loss(ctx, x, labels, fx_int(c, "p", 1), fm ? (float)fm->v[0] : 1.0f, weight, r);
    nbt_fail(__FILE__, __LINE__, "fixture case %s: unknown family", nm);
    return NULL;
}

static int run_case(const fx_case *c)
{
    nb_ctx *ctx = nb_ctx_new(1);
    int ok = 0;
    int32_t labels[512];
    float weight[64];
    const fx_item *li = fx_get(c, "target", 'i'), *wi = fx_get(c, "weight", 't');
    if (li) {
        if (li->n > 512) goto done;
        for (int64_t k = 0; k < li->n; k++) labels[k] = (int32_t)li->v[k];
    }
    if (wi) {
        if (wi->n > 64) goto done;
        for (int64_t k = 0; k < wi->n; k++) weight[k] = (float)wi->v[k];
    }
    int act = fx_get(c, "x", 't') != NULL;
    nb_tensor *x = fx_tensor(ctx, c, act ? "x" : "input", 1);
    nb_tensor *t = fx_tensor(ctx, c, "target", fx_get(c, "dtarget", 't') != NULL);
    nb_tensor *rr = fx_tensor(ctx, c, "r", 0);
    if (!x) {
        nbt_fail(__FILE__, __LINE__, "%s: no input", c->name);
        goto done;
    }
    nb_tensor *out = run_op(ctx, c, x, t, li ? labels : NULL, wi ? weight : NULL);
    if (!fx_match_t(c, act ? "y" : "out", out, 0)) goto done;
    nb_tensor *loss = rr ? nb_sum(ctx, nb_mul(ctx, out, rr), NULL, 0, 0) : out;
    nb_status s = nb_backward(ctx, loss);
    if (s) {
        nbt_fail(__FILE__, __LINE__, "%s: backward: %s", c->name, nb_last_error());
        goto done;
    }
    if (!fx_match_t(c, act ? "dx" : "dinput", x, 1)) goto done;
    if (fx_get(c, "dtarget", 't') && !fx_match_t(c, "dtarget", t, 1)) goto done;
    ok = 1;
done:
    nb_ctx_free(ctx);
    return ok;
}

/* Runs every case of a family; fails when there is none. */
static int run_family(const char *fam)
{
    if (!fx_load()) {
        nbt_fail(__FILE__, __LINE__, "%s", fx_error);
        return 0;
    }
    int n = 0, ok = 1;
    for (int i = 0; i < fx_ncases; i++)
        if (fam_is(fx_cases[i].name, fam)) {
            n++;
            ok &= run_case(&fx_cases[i]);
        }
    if (!n) nbt_fail(__FILE__, __LINE__, "no fixture case of family %s", fam);
    return ok && n;
}

TEST(golden_sigmoid) { CHECK(run_family("sigmoid")); }
TEST(golden_tanh) { CHECK(run_family("tanh")); }
TEST(golden_relu) { CHECK(run_family("relu")); }
TEST(golden_leaky_relu) { CHECK(run_family("leaky_relu")); }
TEST(golden_softmax) { CHECK(run_family("softmax")); }
TEST(golden_log_softmax) { CHECK(run_family("log_softmax")); }
TEST(golden_mse_loss) { CHECK(run_family("mse")); }
TEST(golden_l1_loss) { CHECK(run_family("l1")); }
TEST(golden_cross_entropy) { CHECK(run_family("ce")); }
TEST(golden_bce_loss) { CHECK(run_family("bce")); }
TEST(golden_bce_with_logits) { CHECK(run_family("bcewl")); }
TEST(golden_kl_div) { CHECK(run_family("kl")); }
TEST(golden_hinge_loss) { CHECK(run_family("hinge")); }
TEST(golden_multi_margin_loss) { CHECK(run_family("mm")); }

/* A case dropped from the generator must fail here, not pass unnoticed; and
 * every case in the file must belong to a family that the tests run. */
TEST(golden_fixture_is_complete)
{
    static const char *const expected[] = {
        "sigmoid.basic", "sigmoid.extreme", "tanh.basic", "tanh.extreme", "relu.basic",
        "relu.scalar_zero", "leaky_relu.default", "leaky_relu.slope02",
        "softmax.last_2d", "softmax.axis0_3d", "softmax.axis1_3d", "softmax.axis_neg1_3d",
        "softmax.axis2_4d", "softmax.axis0_wide", "softmax.big", "softmax.big_rows",
        "log_softmax.last_2d", "log_softmax.axis0_3d", "log_softmax.axis1_3d",
        "log_softmax.axis_neg1_3d", "log_softmax.axis2_4d", "log_softmax.axis0_wide",
        "log_softmax.big", "log_softmax.big_rows",
        "mse.mean", "mse.sum", "mse.none", "mse.broadcast", "mse.broadcast_none",
        "l1.mean", "l1.sum", "l1.none", "l1.broadcast",
        "bce.mean", "bce.sum", "bce.none", "bce.edges",
        "bcewl.mean", "bcewl.sum", "bcewl.none", "bcewl.extreme",
        "kl.mean", "kl.sum", "kl.none", "kl.batchmean", "kl.log_target_mean", "kl.log_target_sum",
        "kl.log_target_none", "kl.log_target_batchmean", "kl.batchmean_3d",
        "hinge.mean", "hinge.sum", "hinge.none",
        "ce.mean", "ce.sum", "ce.none", "ce.weight_mean", "ce.weight_sum", "ce.weight_none",
        "ce.ignore_mean", "ce.ignore_weight_mean", "ce.ignore_index1_weight_sum", "ce.spatial_mean",
        "ce.spatial_weight_ignore_none", "ce.spatial_weight_ignore_mean", "ce.spatial_wide_sum",
        "ce.large_logits", "ce.unbatched",
        "mm.p1_mean", "mm.p2_sum", "mm.p1_none", "mm.p1_weight_none", "mm.p2_weight_mean",
        "mm.p1_margin05_sum", "mm.p2_margin2_weight_sum", "mm.unbatched",
    };
    static const char *const families[] = {"sigmoid", "tanh", "relu", "leaky_relu", "softmax",
                                           "log_softmax", "mse", "l1", "bce", "bcewl", "kl",
                                           "hinge", "ce", "mm"};
    CHECK_MSG(fx_load(), "%s", fx_error);
    for (size_t e = 0; e < sizeof expected / sizeof *expected; e++) {
        int found = 0;
        for (int i = 0; i < fx_ncases && !found; i++) found = !strcmp(fx_cases[i].name, expected[e]);
        CHECK_MSG(found, "golden.txt lacks case %s", expected[e]);
    }
    for (int i = 0; i < fx_ncases; i++) {
        int known = 0;
        for (size_t f = 0; f < sizeof families / sizeof *families; f++) known |= fam_is(fx_cases[i].name, families[f]);
        CHECK_MSG(known, "golden.txt case %s has no family in the tests", fx_cases[i].name);
    }
}

/* ---- exact values the header promises -------------------------------------- */

TEST(golden_log_softmax_is_max_subtracted)
{
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *x = nb_tensor_from(ctx, NB_SHAPE(2), (float[]){1000, 1});
    nb_tensor *y = nb_log_softmax(ctx, x, 0), *s = nb_softmax(ctx, x, -1);
    CHECK(y && s);
    CHECK(y->data[0] == 0.0f && y->data[1] == -999.0f);
    CHECK(s->data[0] == 1.0f && s->data[1] == 0.0f);
    /* cross_entropy of the same logits: -log p = 0 and 999 */
    nb_tensor *l = nb_cross_entropy(ctx, nb_tensor_from(ctx, NB_SHAPE(2, 2), (float[]){1000, 1, 1000, 1}),
                                    (int32_t[]){0, 1}, NULL, -100, NB_REDUCTION_NONE);
    CHECK(l && l->data[0] == 0.0f && l->data[1] == 999.0f);
    /* bce_with_logits stays finite at +-100 */
    nb_tensor *b = nb_bce_with_logits(ctx, nb_tensor_from(ctx, NB_SHAPE(2), (float[]){100, -100}),
                                      nb_tensor_from(ctx, NB_SHAPE(2), (float[]){0, 1}), NB_REDUCTION_NONE);
    CHECK(b && b->data[0] == 100.0f && b->data[1] == 100.0f);
    nb_ctx_free(ctx);
}

/* ---- errors ------------------------------------------------------------------- */

#define OP_FAILS(call, st, substr)                                                      \
    do {                                                                                \
        nb_ctx_reset(ctx);                                                              \
        nb_clear_error();                                                               \
        CHECK_MSG((call) == NULL, "%s succeeded", #call);                               \
        CHECK_ERR(nb_ctx_status(ctx), st, substr);                                      \
    } while (0)

TEST(golden_loss_errors)
{
    nb_ctx *ctx = nb_ctx_new(0);
#define T(...) nb_tensor_zeros(ctx, NB_SHAPE(__VA_ARGS__))
#define V(n, ...) nb_tensor_from(ctx, NB_SHAPE(n), (float[]){__VA_ARGS__})
    /* class index out of range, negative, and not the ignore_index */
    OP_FAILS(nb_cross_entropy(ctx, T(3, 4), (int32_t[]){0, 1, 5}, NULL, -100, NB_REDUCTION_MEAN),
             NB_ERR_ARG, "target[2] = 5");
    OP_FAILS(nb_cross_entropy(ctx, T(3, 4), (int32_t[]){0, -1, 2}, NULL, -100, NB_REDUCTION_SUM),
             NB_ERR_ARG, "target[1] = -1");
    OP_FAILS(nb_cross_entropy(ctx, T(2, 3, 2), (int32_t[]){0, 1, 2, 3}, NULL, -100, NB_REDUCTION_NONE),
             NB_ERR_ARG, "target[3] = 3");
    OP_FAILS(nb_cross_entropy(ctx, T(2, 3), NULL, NULL, -100, NB_REDUCTION_MEAN), NB_ERR_ARG, "target is NULL");
    OP_FAILS(nb_cross_entropy(ctx, nb_tensor_scalar(ctx, 1), (int32_t[]){0}, NULL, -100, NB_REDUCTION_MEAN),
             NB_ERR_SHAPE, "shape []");
    OP_FAILS(nb_multi_margin_loss(ctx, T(2, 3), (int32_t[]){0, 3}, 1, 1, NULL, NB_REDUCTION_MEAN),
             NB_ERR_ARG, "target[1] = 3");
    OP_FAILS(nb_multi_margin_loss(ctx, T(2, 3), (int32_t[]){0, 1}, 3, 1, NULL, NB_REDUCTION_MEAN),
             NB_ERR_ARG, "p must be 1 or 2");
    OP_FAILS(nb_multi_margin_loss(ctx, T(2, 3, 4), (int32_t[]){0, 1}, 1, 1, NULL, NB_REDUCTION_MEAN),
             NB_ERR_SHAPE, "[2, 3, 4]");
    /* probabilities outside [0, 1] */
    OP_FAILS(nb_bce_loss(ctx, V(3, 0.5f, 1.5f, 0.2f), V(3, 0, 1, 0), NB_REDUCTION_MEAN),
             NB_ERR_ARG, "between 0 and 1");
    OP_FAILS(nb_bce_loss(ctx, V(3, 0.5f, 0.5f, -0.01f), V(3, 0, 1, 0), NB_REDUCTION_MEAN),
             NB_ERR_ARG, "input[2]");
    /* hinge targets must be -1 or +1 */
    OP_FAILS(nb_hinge_loss(ctx, V(3, 0.5f, 1, 2), V(3, 1, 0, -1), NB_REDUCTION_MEAN),
             NB_ERR_ARG, "target[1] = 0");
    /* shapes that do not broadcast, with both shapes named */
    OP_FAILS(nb_mse_loss(ctx, T(2, 3), T(4), NB_REDUCTION_MEAN), NB_ERR_SHAPE, "[2, 3] and [4]");
    OP_FAILS(nb_l1_loss(ctx, T(2, 3), T(3, 2), NB_REDUCTION_SUM), NB_ERR_SHAPE, "[2, 3] and [3, 2]");
    OP_FAILS(nb_kl_div(ctx, T(2, 3), T(2, 2), NB_REDUCTION_SUM, 0), NB_ERR_SHAPE, "[2, 3] and [2, 2]");
    OP_FAILS(nb_hinge_loss(ctx, T(5), T(4), NB_REDUCTION_SUM), NB_ERR_SHAPE, "hinge_loss");
    /* bce and bce_with_logits need equal shapes, as torch */
    OP_FAILS(nb_bce_loss(ctx, T(2, 3), T(3), NB_REDUCTION_MEAN), NB_ERR_SHAPE, "[2, 3] and target shape [3]");
    OP_FAILS(nb_bce_with_logits(ctx, T(2, 3), T(2, 1), NB_REDUCTION_MEAN), NB_ERR_SHAPE, "[2, 1]");
    /* batchmean is kl_div's alone; unknown reductions */
    OP_FAILS(nb_mse_loss(ctx, T(2), T(2), NB_REDUCTION_BATCHMEAN), NB_ERR_ARG, "batchmean");
    OP_FAILS(nb_l1_loss(ctx, T(2), T(2), NB_REDUCTION_BATCHMEAN), NB_ERR_ARG, "l1_loss: reduction batchmean");
    OP_FAILS(nb_bce_loss(ctx, T(2), T(2), NB_REDUCTION_BATCHMEAN), NB_ERR_ARG, "batchmean");
    OP_FAILS(nb_bce_with_logits(ctx, T(2), T(2), NB_REDUCTION_BATCHMEAN), NB_ERR_ARG, "batchmean");
    OP_FAILS(nb_hinge_loss(ctx, T(2), V(2, 1, 1), NB_REDUCTION_BATCHMEAN), NB_ERR_ARG, "batchmean");
    OP_FAILS(nb_cross_entropy(ctx, T(2, 3), (int32_t[]){0, 1}, NULL, -100, NB_REDUCTION_BATCHMEAN),
             NB_ERR_ARG, "cross_entropy: reduction batchmean");
    OP_FAILS(nb_multi_margin_loss(ctx, T(2, 3), (int32_t[]){0, 1}, 1, 1, NULL, NB_REDUCTION_BATCHMEAN),
             NB_ERR_ARG, "batchmean");
    OP_FAILS(nb_mse_loss(ctx, T(2), T(2), (nb_reduction)7), NB_ERR_ARG, "unknown reduction 7");
    nb_ctx_reset(ctx);
    CHECK(nb_kl_div(ctx, T(2, 3), T(2, 3), NB_REDUCTION_BATCHMEAN, 0) != NULL);
    /* bad axes */
    OP_FAILS(nb_softmax(ctx, T(2, 3), 2), NB_ERR_ARG, "axis 2 is out of range for shape [2, 3]");
    OP_FAILS(nb_log_softmax(ctx, T(2, 3), -3), NB_ERR_ARG, "log_softmax: axis -3");
#undef T
#undef V
    nb_ctx_free(ctx);
}

/* A NULL input passes through without replacing the first error. */
TEST(golden_null_inputs_pass_through)
{
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *a = nb_tensor_zeros(ctx, NB_SHAPE(2, 3));
    CHECK(!nb_softmax(ctx, a, 5));
    const char *first = "softmax: axis 5";
    CHECK(strstr(nb_last_error(), first));
    CHECK(!nb_sigmoid(ctx, NULL) && !nb_tanh(ctx, NULL) && !nb_relu(ctx, NULL));
    CHECK(!nb_leaky_relu(ctx, NULL, 0.1f) && !nb_softmax(ctx, NULL, 0) && !nb_log_softmax(ctx, NULL, 0));
    CHECK(!nb_mse_loss(ctx, NULL, a, NB_REDUCTION_MEAN) && !nb_l1_loss(ctx, a, NULL, NB_REDUCTION_MEAN));
    CHECK(!nb_bce_loss(ctx, NULL, a, NB_REDUCTION_MEAN) && !nb_bce_with_logits(ctx, a, NULL, NB_REDUCTION_MEAN));
    CHECK(!nb_kl_div(ctx, NULL, a, NB_REDUCTION_MEAN, 0) && !nb_hinge_loss(ctx, a, NULL, NB_REDUCTION_MEAN));
    CHECK(!nb_cross_entropy(ctx, NULL, (int32_t[]){0}, NULL, -100, NB_REDUCTION_MEAN));
    CHECK(!nb_multi_margin_loss(ctx, NULL, (int32_t[]){0}, 1, 1, NULL, NB_REDUCTION_MEAN));
    CHECK(strstr(nb_last_error(), first));
    CHECK(nb_ctx_status(ctx) == NB_ERR_ARG);
    nb_ctx_free(ctx);
}

/* NaN is not an op-level error: it propagates into the loss as in torch. */
TEST(golden_nan_propagates)
{
    nb_ctx *ctx = nb_ctx_new(0);
    float nan = NAN;
    nb_tensor *x = nb_tensor_from(ctx, NB_SHAPE(1, 3), (float[]){0.5f, nan, 0.25f});
    nb_tensor *t = nb_tensor_from(ctx, NB_SHAPE(1, 3), (float[]){0, 1, 1});
    nb_tensor *h = nb_tensor_from(ctx, NB_SHAPE(1, 3), (float[]){1, -1, 1});
    nb_tensor *ls[] = {
        nb_mse_loss(ctx, x, t, NB_REDUCTION_MEAN), nb_l1_loss(ctx, x, t, NB_REDUCTION_SUM),
        nb_bce_loss(ctx, x, t, NB_REDUCTION_MEAN), nb_bce_with_logits(ctx, x, t, NB_REDUCTION_MEAN),
        nb_kl_div(ctx, x, t, NB_REDUCTION_BATCHMEAN, 0), nb_hinge_loss(ctx, x, h, NB_REDUCTION_MEAN),
        nb_cross_entropy(ctx, x, (int32_t[]){0}, NULL, -100, NB_REDUCTION_MEAN),
        nb_softmax(ctx, x, 1), nb_relu(ctx, x), nb_sigmoid(ctx, x),
    };
    CHECK(nb_ctx_status(ctx) == NB_OK);
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) CHECK_MSG(ls[i] && isnan(ls[i]->data[i >= 7]), "result %zu", i);
    /* multi_margin_loss, like torch's kernel, only adds terms with margin > 0,
     * and a NaN comparison is false: it skips NaN terms (torch gives 0.25 here too) */
    nb_tensor *mm = nb_multi_margin_loss(ctx, x, (int32_t[]){0}, 1, 1, NULL, NB_REDUCTION_SUM);
    CHECK(mm && mm->data[0] == 0.25f);
    nb_ctx_free(ctx);
}

/* ---- strided inputs, autograd bookkeeping, determinism ------------------------ */

/* A leaf (rows, cols) whose storage is the transpose: stride (1, rows). */
static nb_tensor *transposed_leaf(nb_ctx *ctx, int64_t rows, int64_t cols, const float *rowmajor)
{
    nb_tensor *t = nb_tensor_new(ctx, NB_SHAPE(cols, rows));
    if (!t) return NULL;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) t->data[j * rows + i] = rowmajor[i * cols + j];
    t->shape[0] = rows, t->shape[1] = cols;
    t->stride[0] = 1, t->stride[1] = rows;
    return nb_requires_grad(t, 1);
}

typedef nb_tensor *(*unary_fn)(nb_ctx *ctx, nb_tensor *x, nb_tensor *t);
static nb_tensor *u_sigmoid(nb_ctx *c, nb_tensor *x, nb_tensor *t) { (void)t; return nb_sigmoid(c, x); }
static nb_tensor *u_leaky(nb_ctx *c, nb_tensor *x, nb_tensor *t) { (void)t; return nb_leaky_relu(c, x, -0.3f); }
static nb_tensor *u_sm0(nb_ctx *c, nb_tensor *x, nb_tensor *t) { (void)t; return nb_softmax(c, x, 0); }
static nb_tensor *u_lsm1(nb_ctx *c, nb_tensor *x, nb_tensor *t) { (void)t; return nb_log_softmax(c, x, 1); }
static nb_tensor *u_mse(nb_ctx *c, nb_tensor *x, nb_tensor *t) { return nb_mse_loss(c, x, t, NB_REDUCTION_NONE); }
static nb_tensor *u_l1(nb_ctx *c, nb_tensor *x, nb_tensor *t) { return nb_l1_loss(c, t, x, NB_REDUCTION_SUM); }
static nb_tensor *u_kl(nb_ctx *c, nb_tensor *x, nb_tensor *t) { return nb_kl_div(c, x, nb_detach(c, t), NB_REDUCTION_BATCHMEAN, 1); }
static nb_tensor *u_ce(nb_ctx *c, nb_tensor *x, nb_tensor *t)
{ (void)t; return nb_cross_entropy(c, x, (int32_t[]){2, 0, 4}, (float[]){1, 2, 3, 4, 5}, 0, NB_REDUCTION_MEAN); }
static nb_tensor *u_mm(nb_ctx *c, nb_tensor *x, nb_tensor *t)
{ (void)t; return nb_multi_margin_loss(c, x, (int32_t[]){2, 0, 4}, 2, 1.5f, NULL, NB_REDUCTION_NONE); }

/* The same op on a transposed (strided) leaf and on a contiguous one gives
 * the same values and gradients. */
TEST(golden_strided_inputs)
{
    unary_fn fns[] = {u_sigmoid, u_leaky, u_sm0, u_lsm1, u_mse, u_l1, u_kl, u_ce, u_mm};
    float v[15], w[15];
    for (int i = 0; i < 15; i++) v[i] = (float)((i * 7) % 11) * 0.37f - 1.9f, w[i] = (float)((i * 5) % 13) * 0.21f - 1.1f;
    for (size_t f = 0; f < sizeof fns / sizeof *fns; f++) {
        nb_ctx *ctx = nb_ctx_new(0);
        nb_tensor *xs = transposed_leaf(ctx, 3, 5, v), *ts = transposed_leaf(ctx, 3, 5, w);
        nb_tensor *xc = nb_requires_grad(nb_tensor_from(ctx, NB_SHAPE(3, 5), v), 1);
        nb_tensor *tc = nb_requires_grad(nb_tensor_from(ctx, NB_SHAPE(3, 5), w), 1);
        CHECK(!nb_tensor_is_contiguous(xs));
        nb_tensor *ys = fns[f](ctx, xs, ts), *yc = fns[f](ctx, xc, tc);
        CHECK_MSG(ys && yc, "fn %zu: %s", f, nb_last_error());
        int64_t n = nb_tensor_numel(yc);
        CHECK(nb_tensor_numel(ys) == n && nb_tensor_is_contiguous(ys));
        for (int64_t i = 0; i < n; i++) CHECK_MSG(ys->data[i] == yc->data[i], "fn %zu value %lld", f, (long long)i);
        nb_tensor *r = nb_tensor_from(ctx, ys->ndim, ys->shape, v);  /* n <= 15 */
        CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, ys, r), NULL, 0, 0)));
        CHECK_OK(nb_backward(ctx, nb_sum(ctx, nb_mul(ctx, yc, r), NULL, 0, 0)));
        for (int i = 0; i < 15; i++) {
            CHECK_MSG(xs->grad && xs->grad[i] == xc->grad[i], "fn %zu dx %d", f, i);
            CHECK_MSG(!tc->grad == !ts->grad, "fn %zu: target grad in one run only", f);
            if (tc->grad) CHECK_MSG(ts->grad[i] == tc->grad[i], "fn %zu dt %d", f, i);
        }
        nb_ctx_free(ctx);
    }
}

/* Nothing is recorded under no_grad or when no input needs a gradient; the
 * losses whose target is a constant leave it without a gradient. */
TEST(golden_autograd_bookkeeping)
{
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *x = nb_requires_grad(nb_tensor_rand(ctx, NB_SHAPE(2, 3)), 1);
    nb_tensor *t = nb_requires_grad(nb_tensor_rand(ctx, NB_SHAPE(2, 3)), 1);
    nb_tensor *c = nb_tensor_rand(ctx, NB_SHAPE(2, 3));
    CHECK(nb_sigmoid(ctx, x)->requires_grad && nb_softmax(ctx, x, 0)->requires_grad);
    CHECK(!nb_sigmoid(ctx, c)->requires_grad && !nb_bce_loss(ctx, c, t, NB_REDUCTION_MEAN)->requires_grad);
    CHECK(nb_mse_loss(ctx, c, t, NB_REDUCTION_MEAN)->requires_grad);  /* target gets a gradient */
    int old = nb_set_grad_enabled(ctx, 0);
    nb_tensor *y = nb_cross_entropy(ctx, x, (int32_t[]){0, 2}, NULL, -100, NB_REDUCTION_MEAN);
    CHECK(y && !y->requires_grad && !y->node);
    nb_set_grad_enabled(ctx, old);
    nb_tensor *l = nb_bce_loss(ctx, x, t, NB_REDUCTION_SUM);
    CHECK_OK(nb_backward(ctx, l));
    CHECK(x->grad && !t->grad);
    /* all targets ignored: the mean is 0/0 = NaN, as torch, and no gradient */
    nb_tensor *z = nb_cross_entropy(ctx, x, (int32_t[]){-100, -100}, NULL, -100, NB_REDUCTION_MEAN);
    CHECK(z && isnan(z->data[0]));
    nb_ctx_free(ctx);
}

/* Big enough for the parallel paths; results must be bit-identical for any
 * thread count (row-wise kernels and fixed-order block sums). */
TEST(golden_threads_do_not_change_bits)
{
    enum { N = 512, C = 97, H = 3 };
    float res[2][8];
    for (int run = 0; run < 2; run++) {
        nb_set_threads(run ? 4 : 1);
        nb_ctx *ctx = nb_ctx_new(77);
        nb_tensor *x = nb_requires_grad(nb_tensor_randn(ctx, NB_SHAPE(N, C, H)), 1);
        nb_tensor *p = nb_tensor_rand(ctx, NB_SHAPE(N, C, H));
        int32_t *y = malloc(N * H * sizeof *y);
        CHECK(y);
        for (int i = 0; i < N * H; i++) y[i] = i % 7 == 3 ? -100 : (i * 31) % C;
        nb_tensor *ce = nb_cross_entropy(ctx, x, y, NULL, -100, NB_REDUCTION_MEAN);
        nb_tensor *ce2 = nb_cross_entropy(ctx, nb_reshape(ctx, x, NB_SHAPE(N * H, C)), y, NULL, -100, NB_REDUCTION_SUM);
        nb_tensor *sm = nb_softmax(ctx, x, 1), *lsm = nb_log_softmax(ctx, x, -1);
        nb_tensor *ms = nb_mse_loss(ctx, sm, p, NB_REDUCTION_MEAN);
        nb_tensor *bce = nb_bce_loss(ctx, sm, p, NB_REDUCTION_MEAN);
        for (int i = 0; i < N; i++) y[i] = (i * 37) % (C * H);
        nb_tensor *mm = nb_multi_margin_loss(ctx, nb_reshape(ctx, x, NB_SHAPE(N, C * H)), y, 1, 1, NULL,
                                             NB_REDUCTION_SUM);
        free(y);
        nb_tensor *sg = nb_mse_loss(ctx, nb_sigmoid(ctx, lsm), p, NB_REDUCTION_SUM);
        nb_tensor *tot = nb_add(ctx, nb_add(ctx, nb_add(ctx, ce, ce2), nb_add(ctx, ms, bce)), nb_add(ctx, mm, sg));
        CHECK_OK(nb_backward(ctx, tot));
        double gsum = 0;
        for (int64_t i = 0; i < (int64_t)N * C * H; i++) gsum += x->grad[i] * (double)((i % 13) + 1);
        float vals[8] = {ce->data[0], ce2->data[0], ms->data[0], bce->data[0], mm->data[0], tot->data[0],
                         (float)gsum, sm->data[N * C * H - 1]};
        memcpy(res[run], vals, sizeof vals);
        nb_ctx_free(ctx);
    }
    nb_set_threads(2);
    for (int i = 0; i < 8; i++) CHECK_MSG(res[0][i] == res[1][i], "value %d: %.9g vs %.9g", i, res[0][i], res[1][i]);
}

/* Scalars and empty tensors: torch's values (mean of nothing is NaN, sum 0),
 * no crash, and backward still runs. */
TEST(golden_scalar_and_empty_shapes)
{
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *s = nb_requires_grad(nb_tensor_scalar(ctx, 3.0f), 1);
    nb_tensor *sm = nb_softmax(ctx, s, 0), *lsm = nb_log_softmax(ctx, s, -1);
    CHECK(sm && lsm && sm->ndim == 0 && sm->data[0] == 1.0f && lsm->data[0] == 0.0f);
    CHECK(!nb_softmax(ctx, s, 1));
    nb_tensor *e = nb_requires_grad(nb_tensor_zeros(ctx, NB_SHAPE(0, 3)), 1);
    nb_tensor *e2 = nb_tensor_zeros(ctx, NB_SHAPE(0, 3));
    nb_tensor *m = nb_mse_loss(ctx, e, e2, NB_REDUCTION_MEAN), *su = nb_l1_loss(ctx, e, e2, NB_REDUCTION_SUM);
    CHECK(m && isnan(m->data[0]) && su && su->data[0] == 0.0f);
    nb_tensor *n = nb_bce_with_logits(ctx, e, e2, NB_REDUCTION_NONE);
    CHECK(n && n->ndim == 2 && n->shape[0] == 0 && n->shape[1] == 3);
    nb_tensor *ce = nb_cross_entropy(ctx, e, NULL, NULL, -100, NB_REDUCTION_SUM);
    nb_tensor *mm = nb_multi_margin_loss(ctx, e, NULL, 1, 1, NULL, NB_REDUCTION_SUM);
    CHECK(ce && ce->data[0] == 0.0f && mm && mm->data[0] == 0.0f);
    CHECK(nb_softmax(ctx, e, 0) && nb_softmax(ctx, nb_tensor_zeros(ctx, NB_SHAPE(3, 0)), 1));
    CHECK_OK(nb_backward(ctx, nb_add(ctx, nb_add(ctx, su, ce), nb_add(ctx, mm, lsm))));
    CHECK(s->grad && s->grad[0] == 0.0f);
    nb_ctx_free(ctx);
}
