/* Model summaries and receptive fields: the recurrence of the notes §8, the
 * MLP and VGG11 tables, and the analytic field against back-propagation on
 * several conv nets (strides, dilation, max pooling, a residual block). */
#include "test.h"
#include "nabla/summary.h"
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

/* ---- building conv nets from a spec ------------------------------------------
 * Space-separated layers: "c3" conv 3x3, "m2" max pool 2x2, "a3" avg pool,
 * "r" ReLU; after the kernel size: s<stride> p<padding> d<dilation>, "C"
 * ceil_mode for pools, e.g. "c3s2p1 r m2 c3d2p2". Convs have `width`
 * outputs (the first takes `in` channels) and a bias. */
static nb_status add_spec(nb_model *m, nb_module *seq, nb_rng *rng, const char *spec, int in, int width)
{
    const char *p = spec;
    int ch = in;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        char type = *p++;
        if (type == 'r') {
            nb_status s = nb_sequential_add(seq, nb_nn_relu(m));
            if (s) return s;
            continue;
        }
        int k = (int)strtol(p, (char **)&p, 10), st = 0, pad = 0, dil = 1, ceil = 0;
        while (*p && *p != ' ') {
            char key = *p++;
            if (key == 'C') {
                ceil = 1;
                continue;
            }
            int v = (int)strtol(p, (char **)&p, 10);
            if (key == 's') st = v;
            else if (key == 'p') pad = v;
            else if (key == 'd') dil = v;
        }
        nb_module *mod = NULL;
        if (type == 'c') {
            nb_conv2d_opts o = {{st ? st : 1, st ? st : 1}, {pad, pad}, {dil, dil}, 1};
            mod = nb_nn_conv2d(m, rng, ch, width, k, k, &o, 1);
            ch = width;
        } else {
            nb_pool2d_opts o = {{k, k}, {st, st}, {pad, pad}, {dil, dil}, ceil, 1};
            mod = type == 'm' ? nb_nn_max_pool2d(m, &o) : nb_nn_avg_pool2d(m, &o);
        }
        nb_status s = nb_sequential_add(seq, mod);
        if (s) return s;
    }
    return NB_OK;
}

static nb_model *spec_model(const char *spec, int in, int width)
{
    nb_rng rng;
    nb_rng_seed(&rng, 7);
    nb_model *m = nb_model_new("spec", spec);
    m->root = nb_nn_sequential(m);
    if (!m->root || add_spec(m, m->root, &rng, spec, in, width)) {
        nbt_fail(__FILE__, __LINE__, "cannot build '%s': %s", spec, nb_last_error());
        nb_model_free(m);
        return NULL;
    }
    return m;
}

/* VGG11's features (the notes §16) with convs of width w, w2, w4, w8 (64 in VGG). */
static const char *vgg11_spec =
    "c3p1 r m2s2 | c3p1 r m2s2 | c3p1 r c3p1 r m2s2 | c3p1 r c3p1 r m2s2 | c3p1 r c3p1 r m2s2";

static nb_model *vgg11_features(int in, int w)
{
    static const int widths[8] = {1, 2, 4, 4, 8, 8, 8, 8};  /* 64,128,256,256,512,512,512,512 */
    nb_rng rng;
    nb_rng_seed(&rng, 3);
    nb_model *m = nb_model_new("vgg11_features", "VGG11 features");
    m->root = nb_nn_sequential(m);
    int conv = 0, ch = in;
    nb_status s = m->root ? NB_OK : NB_ERR_NOMEM;
    for (const char *p = vgg11_spec; *p && !s; p++) {
        if (*p == 'c') {
            int out = w * widths[conv++];
            nb_conv2d_opts o = {{1, 1}, {1, 1}, {1, 1}, 1};
            s = nb_sequential_add(m->root, nb_nn_conv2d(m, &rng, ch, out, 3, 3, &o, 1));
            if (!s) s = nb_sequential_add(m->root, nb_nn_relu(m));
            ch = out;
        } else if (*p == 'm') {
            nb_pool2d_opts o = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 1};
            s = nb_sequential_add(m->root, nb_nn_max_pool2d(m, &o));
        }
    }
    if (s) {
        nbt_fail(__FILE__, __LINE__, "cannot build VGG11: %s", nb_last_error());
        nb_model_free(m);
        return NULL;
    }
    return m;
}

/* ---- the recurrence ------------------------------------------------------------ */
typedef struct { int k, s, p, d; } lay;

static void chain(const lay *l, int n, int64_t *rf, int64_t *jump, double *start)
{
    *rf = 1, *jump = 1, *start = 0;
    for (int i = 0; i < n; i++) nb_rf_step(rf, jump, start, l[i].k, l[i].s, l[i].p, l[i].d);
}

TEST(rf_recurrence_of_the_notes)
{
    int64_t r, j;
    double st;
    lay c3[3] = {{3, 1, 1, 1}, {3, 1, 1, 1}, {3, 1, 1, 1}};
    for (int n = 1; n <= 3; n++) {
        chain(c3, n, &r, &j, &st);
        CHECK(r == 1 + 2 * n && j == 1 && st == 0.0);  /* 3, 5, 7 */
    }
    lay s2[2] = {{3, 2, 1, 1}, {3, 1, 1, 1}};
    chain(s2, 2, &r, &j, &st);
    CHECK(r == 7 && j == 2);                              /* 3 + 2*2 */
    lay dil[1] = {{3, 1, 2, 2}};
    chain(dil, 1, &r, &j, &st);
    CHECK(r == 5 && j == 1 && st == 0.0);                 /* k_eff = 2*(3-1)+1 */
    lay pool_conv[2] = {{2, 2, 0, 1}, {3, 1, 0, 1}};
    chain(pool_conv, 2, &r, &j, &st);
    CHECK(r == 6 && j == 2 && st == 2.5);                 /* 2 + (3-1)*2; centre 0.5 + 1*2 */
    /* No padding moves the centre by (k_eff-1)/2 * j_in. */
    lay nopad[2] = {{3, 1, 0, 1}, {5, 2, 0, 1}};
    chain(nopad, 2, &r, &j, &st);
    CHECK(r == 7 && j == 2 && st == 3.0);
    /* Stride or dilation 0 means 1, as in the option structs. */
    lay zeros[1] = {{3, 0, 0, 0}};
    chain(zeros, 1, &r, &j, &st);
    CHECK(r == 3 && j == 1);
}

TEST(rf_vgg11_sees_150_pixels_with_jump_32)
{
    /* conv3-64, M, conv3-128, M, conv3-256 x2, M, conv3-512 x2, M, conv3-512 x2, M */
    static const int64_t want_rf[13] = {3, 4, 8, 10, 18, 26, 30, 46, 62, 70, 102, 134, 150};
    static const int64_t want_j[13] = {1, 2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32};
    lay conv = {3, 1, 1, 1}, pool = {2, 2, 0, 1};
    const char *order = "cmcmccmccmccm";
    int64_t r = 1, j = 1;
    double st = 0;
    for (int i = 0; i < 13; i++) {
        lay l = order[i] == 'c' ? conv : pool;
        nb_rf_step(&r, &j, &st, l.k, l.s, l.p, l.d);
        CHECK_MSG(r == want_rf[i] && j == want_j[i], "layer %d: rf %lld jump %lld, expected %lld %lld", i,
                  (long long)r, (long long)j, (long long)want_rf[i], (long long)want_j[i]);
    }
    CHECK(st == 15.5);  /* 0.5 * (1 + 2 + 4 + 8 + 16) */
}

/* ---- summaries -------------------------------------------------------------------- */
TEST(summary_mlp_params_macs_and_text)
{
    nb_rng rng;
    nb_rng_seed(&rng, 1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", NULL, &rng, &m));
    nb_layer_info *rows = NULL;
    int n = 0;
    nb_status s = nb_model_summary(m, NB_SHAPE(1, 28, 28), &rows, &n);
    if (s) nb_model_free(m);
    CHECK_OK(s);
    static const char *kinds[8] = {"Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU", "Linear"};
    static const int64_t params[8] = {0, 200960, 0, 32896, 0, 12900, 0, 1010};
    static const int64_t macs[8] = {0, 200704, 0, 32768, 0, 12800, 0, 1000};
    static const int64_t width[8] = {784, 256, 256, 128, 128, 100, 100, 10};
    int ok = n == 8;
    int64_t tp = 0, tm = 0;
    for (int i = 0; ok && i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        ok = !strcmp(rows[i].name, name) && !strcmp(rows[i].kind, kinds[i]) && rows[i].params == params[i] &&
             rows[i].macs == macs[i] && rows[i].ndim == 2 && rows[i].out_shape[0] == 1 &&
             rows[i].out_shape[1] == width[i] && !rows[i].has_rf && rows[i].buffers == 0;
        if (!ok) nbt_fail(__FILE__, __LINE__, "row %d: %s %s params %lld macs %lld", i, rows[i].name, rows[i].kind,
                          (long long)rows[i].params, (long long)rows[i].macs);
        tp += rows[i].params;
        tm += rows[i].macs;
    }
    CHECK(ok && strstr(rows[1].desc, "in_features=784"));
    CHECK(tp == 247766 && tm == 247272);  /* 784*256 + 256*128 + 128*100 + 100*10 */
    char *text = NULL;
    CHECK_OK(nb_summary_format(rows, n, &text));
    CHECK_MSG(strstr(text, "Total params: 247,766") && strstr(text, "Trainable params: 247,766") &&
                  strstr(text, "MACs per sample: 247,272 (247.27 K)") && strstr(text, "Output shape: [-1, 10]") &&
                  strstr(text, "[-1, 256]") && strstr(text, "200,960"),
              "unexpected table:\n%s", text);
    /* Summaries leave the model as they found it: mode and modules. */
    CHECK(m->training == 1 && !strcmp(m->root->vt->kind, "Sequential") &&
          !strcmp(m->root->children[1]->vt->kind, "Linear"));
    free(text);
    free(rows);
    /* A flat input works as well: the MLP's Flatten keeps (1, 784). */
    s = nb_model_summary(m, NB_SHAPE(784), &rows, &n);
    CHECK_OK(s);
    CHECK(n == 8 && rows[7].out_shape[1] == 10);
    free(rows);
    nb_model_free(m);
}

TEST(summary_errors)
{
    nb_rng rng;
    nb_rng_seed(&rng, 1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", NULL, &rng, &m));
    nb_layer_info *rows = (nb_layer_info *)&rng;
    int n = 5;
    CHECK_ERR(nb_model_summary(NULL, NB_SHAPE(1, 28, 28), &rows, &n), NB_ERR_ARG, "NULL");
    CHECK(rows == NULL && n == 0);
    CHECK_ERR(nb_model_summary(m, 0, (int64_t[]){1}, &rows, &n), NB_ERR_ARG, "dimensions");
    CHECK_ERR(nb_model_summary(m, NB_SHAPE(1, 0, 28), &rows, &n), NB_ERR_ARG, "input dimension 1");
    /* A wrong input size fails in the forward pass with the op's message. */
    CHECK_ERR(nb_model_summary(m, NB_SHAPE(1, 28, 27), &rows, &n), NB_ERR_SHAPE, "linear");
    CHECK(rows == NULL && n == 0 && m->training == 1 && !strcmp(m->root->children[1]->vt->kind, "Linear"));
    /* The field is measured on image outputs only. */
    int64_t rh, rw;
    CHECK_ERR(nb_receptive_field_empirical(m, NB_SHAPE(1, 28, 28), -1, -1, &rh, &rw), NB_ERR_SHAPE, "(N,C,H,W)");
    CHECK_ERR(nb_receptive_field_empirical(m, NB_SHAPE(784), -1, -1, &rh, &rw), NB_ERR_ARG, "3 (C,H,W)");
    char *text = NULL;
    CHECK_ERR(nb_summary_format(NULL, 3, &text), NB_ERR_ARG, "rows");
    CHECK_OK(nb_summary_format(NULL, 0, &text));
    CHECK(strstr(text, "Total params: 0"));
    free(text);
    nb_model *empty = nb_model_new("empty", "");
    CHECK_ERR(nb_model_summary(empty, NB_SHAPE(3), &rows, &n), NB_ERR_STATE, "no modules");
    nb_model_free(empty);
    nb_model_free(m);
}

/* The output field of the last row that has one. */
static const nb_layer_info *last_field(const nb_layer_info *rows, int n)
{
    for (int i = n - 1; i >= 0; i--)
        if (rows[i].has_rf) return &rows[i];
    return NULL;
}

/* The analytic box of output unit (y, x), clipped to an h x w image. */
static void analytic_box(const nb_layer_info *r, int64_t y, int64_t x, int64_t h, int64_t w, int64_t box[4])
{
    double cy = r->start[0] + (double)y * (double)r->jump[0], cx = r->start[1] + (double)x * (double)r->jump[1];
    box[0] = (int64_t)llround(cy - (double)(r->rf[0] - 1) / 2);
    box[2] = (int64_t)llround(cy + (double)(r->rf[0] - 1) / 2);
    box[1] = (int64_t)llround(cx - (double)(r->rf[1] - 1) / 2);
    box[3] = (int64_t)llround(cx + (double)(r->rf[1] - 1) / 2);
    if (box[0] < 0) box[0] = 0;
    if (box[1] < 0) box[1] = 0;
    if (box[2] > h - 1) box[2] = h - 1;
    if (box[3] > w - 1) box[3] = w - 1;
}

/* Summarise m on (c, h, w); the final field must be (rf, jump); then for the
 * centre, the first and the last output unit the box measured by
 * back-propagation must be the analytic box. The model must come back
 * unchanged. Returns 1 when all holds. */
static int field_agrees(nb_model *m, int64_t c, int64_t h, int64_t w, int64_t rf, int64_t jump)
{
    nb_layer_info *rows = NULL;
    int n = 0;
    if (nb_model_summary(m, NB_SHAPE(c, h, w), &rows, &n)) {
        nbt_fail(__FILE__, __LINE__, "%s: summary failed: %s", m->config, nb_last_error());
        return 0;
    }
    const nb_layer_info *r = last_field(rows, n);
    int ok = r && r == &rows[n - 1] && r->rf[0] == rf && r->rf[1] == rf && r->jump[0] == jump && r->jump[1] == jump;
    if (!ok) nbt_fail(__FILE__, __LINE__, "%s: final rf %lld jump %lld, expected %lld %lld", m->config,
                      r ? (long long)r->rf[0] : -1LL, r ? (long long)r->jump[0] : -1LL, (long long)rf, (long long)jump);
    size_t bytes = m->numel * sizeof(float);
    float *before = malloc(bytes ? bytes : 1);
    memcpy(before, m->data, bytes);
    int64_t oh = ok ? r->out_shape[2] : 0, ow = ok ? r->out_shape[3] : 0;
    int64_t units[3][2] = {{oh / 2, ow / 2}, {0, 0}, {oh - 1, ow - 1}};
    for (int u = 0; ok && u < 3; u++) {
        int64_t want[4], got[4];
        analytic_box(r, units[u][0], units[u][1], h, w, want);
        if (nb_receptive_field_box(m, NB_SHAPE(c, h, w), (int)units[u][0], (int)units[u][1], got)) {
            nbt_fail(__FILE__, __LINE__, "%s: empirical field failed: %s", m->config, nb_last_error());
            ok = 0;
        } else if (memcmp(want, got, sizeof want)) {
            nbt_fail(__FILE__, __LINE__,
                     "%s: unit (%lld, %lld): back-propagation reaches rows %lld..%lld cols %lld..%lld, the "
                     "formula says rows %lld..%lld cols %lld..%lld",
                     m->config, (long long)units[u][0], (long long)units[u][1], (long long)got[0],
                     (long long)got[2], (long long)got[1], (long long)got[3], (long long)want[0],
                     (long long)want[2], (long long)want[1], (long long)want[3]);
            ok = 0;
        }
    }
    if (ok && (memcmp(before, m->data, bytes) || m->training != 1)) {
        nbt_fail(__FILE__, __LINE__, "%s: the model changed", m->config);
        ok = 0;
    }
    free(before);
    free(rows);
    return ok;
}

TEST(rf_analytic_matches_backprop_small_nets)
{
    static const struct {
        const char *spec;
        int64_t rf, jump, h;
    } cases[] = {
        {"c3 c3 c3", 7, 1, 17},                 /* 3, 5, 7 */
        {"c3p1 r c3p1 r c3p1 r", 7, 1, 16},     /* padding moves nothing */
        {"c3s2 c3", 7, 2, 21},                  /* 3 + 2*2 */
        {"c3s2p1 r c3s2p1 r c3p1", 15, 4, 32},  /* 3, 7, 15 */
        {"c3d2", 5, 1, 15},                     /* dilation 2: k_eff 5 */
        {"c3d2p2 r c3d2p2 r c3d3p3", 15, 1, 24}, /* 5, 9, 15 */
        {"m2 c3", 6, 2, 18},                    /* max pool 2 stride 2, then 3x3 */
        {"c3p1 r m2 c3p1 r m2", 10, 4, 24},     /* VGG's first two stages */
        {"m3s2p1 c3", 7, 2, 19},                /* overlapping, padded pool */
        {"c5s3 a3s2 c2", 17, 6, 60},            /* 5, 5+2*3 = 11, 11+1*6 = 17 */
        {"c3 m2C c3", 8, 2, 19},                /* ceil_mode: a last half window */
        {"c1s2 c1s2 c3", 9, 4, 20},             /* 1x1 stride 2: gaps, same box */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nb_model *m = spec_model(cases[i].spec, 2, 3);
        CHECK(m);
        int ok = field_agrees(m, 2, cases[i].h, cases[i].h + 3, cases[i].rf, cases[i].jump);
        nb_model_free(m);
        CHECK_MSG(ok, "case '%s'", cases[i].spec);
    }
}

/* y = relu(conv2(relu(conv1(x))) + shortcut(x)): a container that is not a
 * Sequential, with ops of its own between its children. */
static nb_tensor *res_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_module **c = m->children;
    nb_tensor *y = nb_relu(ctx, c[0]->vt->forward(c[0], ctx, x));
    y = c[1]->vt->forward(c[1], ctx, y);
    nb_tensor *s = c[2]->vt->forward(c[2], ctx, x);
    return nb_relu(ctx, nb_add(ctx, y, s));
}

static void res_describe(const nb_module *m, char *buf, size_t size) { (void)m; snprintf(buf, size, "residual"); }
static const nb_module_vt res_vt = {"BasicBlock", res_forward, res_describe, NULL};

TEST(rf_follows_both_branches_of_a_residual_block)
{
    nb_rng rng;
    nb_rng_seed(&rng, 5);
    nb_model *m = nb_model_new("res", "residual block + conv");
    nb_module *block = nb_module_new(m, &res_vt);
    nb_conv2d_opts s2 = {{2, 2}, {1, 1}, {1, 1}, 1}, s1 = {{1, 1}, {1, 1}, {1, 1}, 1}, sc = {{2, 2}, {0, 0}, {1, 1}, 1};
    m->root = nb_nn_sequential(m);
    CHECK(block && m->root);
    CHECK_OK(nb_module_add_child(block, "conv1", nb_nn_conv2d(m, &rng, 2, 4, 3, 3, &s2, 1)));
    CHECK_OK(nb_module_add_child(block, "conv2", nb_nn_conv2d(m, &rng, 4, 4, 3, 3, &s1, 1)));
    CHECK_OK(nb_module_add_child(block, "shortcut", nb_nn_conv2d(m, &rng, 2, 4, 1, 1, &sc, 0)));
    CHECK_OK(nb_sequential_add(m->root, block));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv2d(m, &rng, 4, 4, 3, 3, &s1, 1)));
    nb_layer_info *rows = NULL;
    int n = 0;
    CHECK_OK(nb_model_summary(m, NB_SHAPE(2, 20, 20), &rows, &n));
    static const char *names[4] = {"0.conv1", "0.conv2", "0.shortcut", "1"};
    static const int64_t rf[4] = {3, 7, 1, 11}, params[4] = {2 * 4 * 9 + 4, 4 * 4 * 9 + 4, 8, 4 * 4 * 9 + 4};
    int ok = n == 4;
    for (int i = 0; ok && i < 4; i++) {
        ok = !strcmp(rows[i].name, names[i]) && !strcmp(rows[i].kind, "Conv2d") && rows[i].has_rf &&
             rows[i].rf[0] == rf[i] && rows[i].rf[1] == rf[i] && rows[i].jump[0] == 2 && rows[i].params == params[i] &&
             rows[i].out_shape[2] == 10;
        if (!ok) nbt_fail(__FILE__, __LINE__, "row %d: %s rf %lld jump %lld params %lld", i, rows[i].name,
                          (long long)rows[i].rf[0], (long long)rows[i].jump[0], (long long)rows[i].params);
    }
    /* The last conv sees the union of both branches (7, not the shortcut's 1) grown by 2*2. */
    CHECK(ok && rows[3].macs == 4 * 10 * 10 * 4 * 9);
    free(rows);
    ok = field_agrees(m, 2, 20, 20, 11, 2);
    CHECK(ok && m->root->children[0]->vt == &res_vt);
    nb_model_free(m);
}

TEST(rf_and_summary_of_resnet_basic_blocks)
{
    nb_rng rng;
    nb_rng_seed(&rng, 9);
    nb_model *m = nb_model_new("resnet", "conv + BasicBlock(4, 8, 2) + BasicBlock(8, 8, 1)");
    nb_conv2d_opts p1 = {{1, 1}, {1, 1}, {1, 1}, 1};
    m->root = nb_nn_sequential(m);
    CHECK(m->root);
    CHECK_OK(nb_sequential_add(m->root, nb_nn_conv2d(m, &rng, 3, 4, 3, 3, &p1, 1)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_basic_block(m, &rng, 4, 8, 2)));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_basic_block(m, &rng, 8, 8, 1)));
    /* Running statistics the empirical pass must neutralise (and restore). */
    for (int i = 0; i < m->nparams; i++)
        if (strstr(m->params[i].name, "running_mean"))
            for (int64_t k = 0; k < nb_tensor_numel(&m->params[i].t); k++) m->params[i].t.data[k] = 5.0f;
    nb_layer_info *rows = NULL;
    int n = 0;
    CHECK_OK(nb_model_summary(m, NB_SHAPE(3, 24, 24), &rows, &n));
    /* conv 3; block 1: conv1 3+2 = 5 (j 2), conv2 5+2*2 = 9, downsample 1x1 s2
     * sees 3, the sum 9; block 2: 13, 17, the identity shortcut 9: 17. */
    static const struct { const char *name, *kind; int64_t rf, jump, params, buffers; } want[] = {
        {"0", "Conv2d", 3, 1, 112, 0},
        {"1.conv1", "Conv2d", 5, 2, 288, 0},
        {"1.bn1", "BatchNorm2d", 5, 2, 16, 17},
        {"1.relu", "ReLU", 5, 2, 0, 0},
        {"1.conv2", "Conv2d", 9, 2, 576, 0},
        {"1.bn2", "BatchNorm2d", 9, 2, 16, 17},
        {"1.downsample.0", "Conv2d", 3, 2, 32, 0},
        {"1.downsample.1", "BatchNorm2d", 3, 2, 16, 17},
        {"1.relu", "ReLU", 9, 2, 0, 0},
        {"2.conv1", "Conv2d", 13, 2, 576, 0},
        {"2.bn1", "BatchNorm2d", 13, 2, 16, 17},
        {"2.relu", "ReLU", 13, 2, 0, 0},
        {"2.conv2", "Conv2d", 17, 2, 576, 0},
        {"2.bn2", "BatchNorm2d", 17, 2, 16, 17},
        {"2.relu", "ReLU", 17, 2, 0, 0},
    };
    int nw = (int)(sizeof want / sizeof want[0]), ok = n == nw;
    CHECK_MSG(ok, "%d rows, expected %d", n, nw);
    for (int i = 0; ok && i < n; i++) {
        ok = !strcmp(rows[i].name, want[i].name) && !strcmp(rows[i].kind, want[i].kind) && rows[i].has_rf &&
             rows[i].rf[0] == want[i].rf && rows[i].jump[1] == want[i].jump && rows[i].params == want[i].params &&
             rows[i].buffers == want[i].buffers;
        if (!ok) nbt_fail(__FILE__, __LINE__, "row %d: %s %s rf %lld jump %lld params %lld buffers %lld", i,
                          rows[i].name, rows[i].kind, (long long)rows[i].rf[0], (long long)rows[i].jump[1],
                          (long long)rows[i].params, (long long)rows[i].buffers);
    }
    char *text = NULL;
    CHECK_OK(nb_summary_format(rows, n, &text));
    CHECK_MSG(strstr(text, "Total params: 2,240") && strstr(text, "Buffers (not trained): 85"), "%s", text);
    free(text);
    free(rows);
    ok = field_agrees(m, 3, 24, 24, 17, 2);
    CHECK(ok && m->params[nb_model_find_param(m, "1.bn1.running_mean")].t.data[0] == 5.0f);
    nb_model_free(m);
}

TEST(rf_and_summary_under_weight_norm)
{
    /* weight_norm swaps the layer's vtable too: both wrappers must stack. */
    nb_rng rng;
    nb_rng_seed(&rng, 4);
    nb_model *m = nb_model_new("wn", "weight-normalised convs and linear");
    nb_conv2d_opts s1 = {{1, 1}, {0, 0}, {1, 1}, 1}, s2 = {{2, 2}, {0, 0}, {1, 1}, 1};
    m->root = nb_nn_sequential(m);
    nb_module *c1 = nb_nn_conv2d(m, &rng, 2, 3, 3, 3, &s1, 1);
    CHECK(m->root && c1);
    CHECK_OK(nb_nn_weight_norm(c1, 0));  /* before adding it */
    CHECK_OK(nb_sequential_add(m->root, c1));
    CHECK_OK(nb_sequential_add(m->root, nb_nn_relu(m)));
    nb_module *c2 = nb_nn_conv2d(m, &rng, 3, 3, 3, 3, &s2, 1);
    CHECK_OK(nb_sequential_add(m->root, c2));
    CHECK_OK(nb_nn_weight_norm(c2, 0));  /* after */
    nb_layer_info *rows = NULL;
    int n = 0;
    CHECK_OK(nb_model_summary(m, NB_SHAPE(2, 15, 15), &rows, &n));
    /* weight_v (3,2,3,3) + weight_g (3,1,1,1) + bias 3 */
    CHECK(n == 3 && rows[0].params == 54 + 3 + 3 && rows[0].macs == 3 * 13 * 13 * 18 && rows[2].rf[0] == 5 &&
          rows[2].jump[0] == 2 && rows[2].out_shape[2] == 6);
    free(rows);
    int ok = field_agrees(m, 2, 15, 15, 5, 2);
    nb_model_free(m);
    CHECK(ok);
}

/* Runs its first child only: the second never does. */
static nb_tensor *first_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    return m->children[0]->vt->forward(m->children[0], ctx, x);
}
static const nb_module_vt first_vt = {"FirstOnly", first_forward, NULL, NULL};

TEST(summary_lists_modules_that_never_ran)
{
    nb_rng rng;
    nb_rng_seed(&rng, 2);
    nb_model *m = nb_model_new("first", "");
    m->root = nb_module_new(m, &first_vt);
    CHECK(m->root);
    CHECK_OK(nb_module_add_child(m->root, "used", nb_nn_linear(m, &rng, 6, 4, 1)));
    CHECK_OK(nb_module_add_child(m->root, "spare", nb_nn_linear(m, &rng, 4, 2, 0)));
    nb_layer_info *rows = NULL;
    int n = 0;
    CHECK_OK(nb_model_summary(m, NB_SHAPE(6), &rows, &n));
    CHECK(n == 2 && !strcmp(rows[0].name, "used") && rows[0].params == 28 && rows[0].macs == 24 &&
          !strcmp(rows[1].name, "spare") && rows[1].ndim == -1 && rows[1].params == 8 && rows[1].macs == 0);
    char *text = NULL;
    CHECK_OK(nb_summary_format(rows, n, &text));
    CHECK_MSG(strstr(text, "(not run)") && strstr(text, "Total params: 36") && strstr(text, "Output shape: [-1, 4]"),
              "%s", text);
    free(text);
    free(rows);
    nb_model_free(m);
}

TEST(rf_vgg11_analytic_matches_backprop)
{
    /* VGG11's features at 4/64 of the width: the same geometry, small convs. */
    nb_model *m = vgg11_features(3, 4);
    CHECK(m);
    int ok = field_agrees(m, 3, 224, 224, 150, 32);
    nb_model_free(m);
    CHECK(ok);
}

TEST(summary_vgg11_features)
{
    nb_model *m = vgg11_features(3, 64);
    CHECK(m);
    nb_layer_info *rows = NULL;
    int n = 0;
    nb_status s = nb_model_summary(m, NB_SHAPE(3, 224, 224), &rows, &n);
    if (s) nb_model_free(m);
    CHECK_OK(s);
    /* 8 convs, each with its ReLU, and 5 pools */
    static const int64_t conv_macs[8] = {86704128, 924844032, 924844032, 1849688064,
                                         924844032, 1849688064, 462422016, 462422016};
    static const int64_t conv_params[8] = {1792, 73856, 295168, 590080, 1180160, 2359808, 2359808, 2359808};
    int ok = n == 21, conv = 0;
    int64_t params = 0, macs = 0;
    for (int i = 0; ok && i < n; i++) {
        params += rows[i].params;
        if (!strcmp(rows[i].kind, "Conv2d")) {
            ok = rows[i].macs == conv_macs[conv] && rows[i].params == conv_params[conv];
            if (!ok) nbt_fail(__FILE__, __LINE__, "%s: MACs %lld params %lld", rows[i].name,
                              (long long)rows[i].macs, (long long)rows[i].params);
            macs += rows[i].macs;
            conv++;
        }
    }
    CHECK(ok && conv == 8 && params == 9220480 && macs == 7485456384LL);
    const nb_layer_info *last = &rows[n - 1];
    CHECK(!strcmp(last->name, "20") && !strcmp(last->kind, "MaxPool2d") && last->has_rf && last->rf[0] == 150 &&
          last->rf[1] == 150 && last->jump[0] == 32 && last->start[0] == 15.5 && last->ndim == 4 &&
          last->out_shape[1] == 512 && last->out_shape[2] == 7 && last->out_shape[3] == 7);
    CHECK(!strcmp(rows[18].name, "18") && rows[18].rf[0] == 134 && rows[18].jump[0] == 16 && rows[17].rf[0] == 102);
    char *text = NULL;
    CHECK_OK(nb_summary_format(rows, n, &text));
    CHECK_MSG(strstr(text, "Total params: 9,220,480") && strstr(text, "[-1, 512, 7, 7]") && strstr(text, " 150 ") &&
                  strstr(text, "(7.49 G)"),
              "unexpected table:\n%s", text);
    free(text);
    free(rows);
    nb_model_free(m);
}

/* ---- the command line --------------------------------------------------------------- */
static char out_text[1 << 16];

static int run_nabla(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_nabla(const char *fmt, ...)
{
    char args[1024], cmd[2048], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/summary.out", nbt_tmpdir());
    snprintf(cmd, sizeof cmd, "%s/nabla %s >'%s' 2>&1 </dev/null", nbt_build_dir(), args, path);
    int st = system(cmd);
    out_text[0] = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t k = fread(out_text, 1, sizeof out_text - 1, f);
        out_text[k] = 0;
        fclose(f);
    }
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_summary_and_rf)
{
    int rc = run_nabla("summary mlp");
    CHECK_MSG(rc == 0 && strstr(out_text, "Total params: 247,766") && strstr(out_text, "input [-1, 1, 28, 28]"),
              "nabla summary mlp: exit %d\n%s", rc, out_text);
    rc = run_nabla("summary mlp --config 100,50,10");
    CHECK_MSG(rc == 0 && strstr(out_text, "input [-1, 100]") && strstr(out_text, "Total params: 5,560"),
              "exit %d\n%s", rc, out_text);
    CHECK(run_nabla("summary mlp --input 1,28,27") == 1 && strstr(out_text, "nabla: "));
    CHECK(run_nabla("summary nosuchmodel") == 1 && strstr(out_text, "unknown model"));
    CHECK(run_nabla("summary") == 2 && run_nabla("summary mlp --input 1,x") == 2);
    CHECK(run_nabla("summary --help") == 0 && strstr(out_text, "usage: nabla summary"));
    rc = run_nabla("rf 3 3 2:2 3:1:2");
    /* r: 3, 5, 6 (j 2), 6 + 4*2 = 14 */
    CHECK_MSG(rc == 0 && strstr(out_text, "     6        2\n") && strstr(out_text, "    14        2\n"),
              "exit %d\n%s", rc, out_text);
    CHECK(run_nabla("rf 3:0") == 2 && run_nabla("rf") == 2 && run_nabla("rf 3:1:1:1") == 2);
}
