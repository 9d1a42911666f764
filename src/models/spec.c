/* The zoo's "sequential": an nn.Sequential written as text, for the models
 * the zoo does not name, so that the CLI can train, save, reload and
 * summarise any of them:
 *   conv2d(1,32,3,padding=1) batchnorm2d(32) relu maxpool2d(2) flatten linear(6272,10)
 * Layers are torch.nn class names (any case) separated by spaces, commas or
 * semicolons; arguments follow torch's order and names, positional first,
 * then name=value, with torch's defaults. A pair (kernel_size, stride, ...)
 * is one number for both sides, (a,b) or AxB; a bool is true/false or 1/0.
 * The config string is the model's description in its file, so a saved
 * model is rebuilt from it (nb_model_load_file). nabla/nn.h lists the
 * layers. */
#include "../core/internal.h"
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define SP_MAX_PARAMS 9
#define SP_INT_MAX (1 << 24)

typedef enum { SP_INT, SP_PAIR, SP_QUAD, SP_FLOAT, SP_BOOL } sp_kind;

typedef struct {
    const char *name;
    sp_kind kind;
    double def; /* every side of a pair or quad */
} sp_param;

typedef enum {
    L_CONV, L_CONVT, L_LINEAR, L_BN1, L_BN2, L_IN2, L_RELU, L_LEAKY, L_SIGMOID, L_TANH, L_SOFTMAX, L_LOGSOFTMAX,
    L_FLATTEN, L_MAXPOOL, L_AVGPOOL, L_ADAPTIVE, L_DROPOUT, L_ZEROPAD, L_BLOCK,
} sp_id;

typedef struct {
    const char *name; /* lower case, as matched */
    sp_id id;
    int required;     /* leading parameters without a default */
    sp_param p[SP_MAX_PARAMS];
} sp_layer;

static const sp_layer layers[] = {
    {"conv2d", L_CONV, 3, {{"in_channels", SP_INT, 0}, {"out_channels", SP_INT, 0}, {"kernel_size", SP_PAIR, 0},
                           {"stride", SP_PAIR, 1}, {"padding", SP_PAIR, 0}, {"dilation", SP_PAIR, 1},
                           {"groups", SP_INT, 1}, {"bias", SP_BOOL, 1}}},
    {"convtranspose2d", L_CONVT, 3, {{"in_channels", SP_INT, 0}, {"out_channels", SP_INT, 0},
                                     {"kernel_size", SP_PAIR, 0}, {"stride", SP_PAIR, 1}, {"padding", SP_PAIR, 0},
                                     {"output_padding", SP_PAIR, 0}, {"groups", SP_INT, 1}, {"bias", SP_BOOL, 1},
                                     {"dilation", SP_PAIR, 1}}},
    {"linear", L_LINEAR, 2, {{"in_features", SP_INT, 0}, {"out_features", SP_INT, 0}, {"bias", SP_BOOL, 1}}},
    {"batchnorm1d", L_BN1, 1, {{"num_features", SP_INT, 0}, {"eps", SP_FLOAT, 1e-5}, {"momentum", SP_FLOAT, 0.1},
                               {"affine", SP_BOOL, 1}}},
    {"batchnorm2d", L_BN2, 1, {{"num_features", SP_INT, 0}, {"eps", SP_FLOAT, 1e-5}, {"momentum", SP_FLOAT, 0.1},
                               {"affine", SP_BOOL, 1}}},
    {"instancenorm2d", L_IN2, 1, {{"num_features", SP_INT, 0}, {"eps", SP_FLOAT, 1e-5}, {"affine", SP_BOOL, 0}}},
    {"relu", L_RELU, 0, {{0}}},
    {"leakyrelu", L_LEAKY, 0, {{"negative_slope", SP_FLOAT, 0.01}}},
    {"sigmoid", L_SIGMOID, 0, {{0}}},
    {"tanh", L_TANH, 0, {{0}}},
    {"softmax", L_SOFTMAX, 1, {{"dim", SP_INT, 0}}},
    {"logsoftmax", L_LOGSOFTMAX, 1, {{"dim", SP_INT, 0}}},
    {"flatten", L_FLATTEN, 0, {{"start_dim", SP_INT, 1}}},
    {"maxpool2d", L_MAXPOOL, 1, {{"kernel_size", SP_PAIR, 0}, {"stride", SP_PAIR, 0}, {"padding", SP_PAIR, 0},
                                 {"dilation", SP_PAIR, 1}, {"ceil_mode", SP_BOOL, 0}}},
    {"avgpool2d", L_AVGPOOL, 1, {{"kernel_size", SP_PAIR, 0}, {"stride", SP_PAIR, 0}, {"padding", SP_PAIR, 0},
                                 {"ceil_mode", SP_BOOL, 0}, {"count_include_pad", SP_BOOL, 1}}},
    {"adaptiveavgpool2d", L_ADAPTIVE, 1, {{"output_size", SP_PAIR, 0}}},
    {"dropout", L_DROPOUT, 0, {{"p", SP_FLOAT, 0.5}}},
    {"zeropad2d", L_ZEROPAD, 1, {{"padding", SP_QUAD, 0}}},
    {"basicblock", L_BLOCK, 2, {{"in_channels", SP_INT, 0}, {"out_channels", SP_INT, 0}, {"stride", SP_INT, 1}}},
};
#define NLAYERS ((int)(sizeof layers / sizeof layers[0]))

/* One layer's parsed arguments: value v[k][0..3] of parameter k. */
typedef struct {
    double v[SP_MAX_PARAMS][4];
    int given[SP_MAX_PARAMS];
} sp_args;

typedef struct {
    const char *s;     /* where the parser is */
    int index;         /* layer number, from 0, for messages */
    char layer[32];    /* its name as written */
} sp_cur;

static void skip_space(sp_cur *c)
{
    while (isspace((unsigned char)*c->s)) c->s++;
}

static nb_status bad(const sp_cur *c, const char *fmt, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, what);
    return nb__fail(NB_ERR_ARG, "sequential: layer %d (%s): %s", c->index, c->layer[0] ? c->layer : "?", msg);
}

/* A number, or true/false (1/0). */
static int number(sp_cur *c, double *out)
{
    skip_space(c);
    if (!strncmp(c->s, "true", 4) || !strncmp(c->s, "True", 4)) return c->s += 4, *out = 1, 1;
    if (!strncmp(c->s, "false", 5) || !strncmp(c->s, "False", 5)) return c->s += 5, *out = 0, 1;
    if (c->s[0] == '0' && (c->s[1] == 'x' || c->s[1] == 'X')) /* "0x1" is a pair, not hexadecimal */
        return c->s++, *out = 0, 1;
    char *end;
    double v = strtod(c->s, &end);
    if (end == c->s || !isfinite(v)) return 0;
    c->s = end;
    *out = v;
    return 1;
}

/* A value of up to 4 numbers: N, AxB (x-separated), or (A,B,...). */
static int value(sp_cur *c, double v[4], int *n)
{
    skip_space(c);
    *n = 0;
    const int tuple = *c->s == '(';
    const char sep = tuple ? ',' : 'x';
    if (tuple) c->s++;
    for (;;) {
        if (*n == 4 || !number(c, &v[(*n)++])) return 0;
        if (tuple) skip_space(c);
        if (*c->s != sep) break;
        c->s++;
    }
    if (!tuple) return 1;
    if (*c->s != ')') return 0;
    c->s++;
    return 1;
}

/* Checks value v (n numbers) for parameter p and spreads it over v[0..3]. */
static nb_status fit(const sp_cur *c, const sp_param *p, double v[4], int n)
{
    const int want = p->kind == SP_PAIR ? 2 : p->kind == SP_QUAD ? 4 : 1;
    if (n != 1 && n != want) return bad(c, "%s: wrong number of values", p->name);
    for (int k = 0; k < n; k++) {
        if (p->kind == SP_FLOAT) continue;
        if (v[k] != floor(v[k]) || fabs(v[k]) > SP_INT_MAX) return bad(c, "%s: not an integer in range", p->name);
        if (p->kind == SP_BOOL && v[k] != 0 && v[k] != 1) return bad(c, "%s: not a bool (true, false, 1, 0)", p->name);
    }
    for (int k = n; k < 4; k++) v[k] = v[0];
    return NB_OK;
}

/* "(args)" after a layer's name, or nothing. */
static nb_status arguments(sp_cur *c, const sp_layer *L, sp_args *a)
{
    int npar = 0;
    while (npar < SP_MAX_PARAMS && L->p[npar].name) npar++;
    for (int k = 0; k < npar; k++) {
        a->given[k] = 0;
        for (int j = 0; j < 4; j++) a->v[k][j] = L->p[k].def;
    }
    skip_space(c);
    if (*c->s == '(') {
        c->s++;
        int pos = 0, named = 0;
        skip_space(c);
        while (*c->s != ')') {
            int k = pos;
            const char *start = c->s;
            while (isalnum((unsigned char)*c->s) || *c->s == '_') c->s++;
            const char *name_end = c->s;
            skip_space(c);
            if (*c->s == '=' && name_end > start) { /* name=value */
                c->s++;
                for (k = 0; k < npar; k++)
                    if (strlen(L->p[k].name) == (size_t)(name_end - start) &&
                        !strncmp(L->p[k].name, start, (size_t)(name_end - start)))
                        break;
                if (k == npar) {
                    char name[40];
                    snprintf(name, sizeof name, "%.*s", (int)(name_end - start), start);
                    return bad(c, "no argument named '%s'", name);
                }
                named = 1;
            } else {
                c->s = start;
                if (named) return bad(c, "%s", "a positional argument after a named one");
                if (k >= npar) return bad(c, "%s", "too many arguments");
                pos++;
            }
            if (a->given[k]) return bad(c, "%s given twice", L->p[k].name);
            double v[4];
            int n;
            if (!value(c, v, &n)) return bad(c, "%s: expected a number, AxB or (A,B)", L->p[k].name);
            nb_status s = fit(c, &L->p[k], v, n);
            if (s) return s;
            memcpy(a->v[k], v, sizeof v);
            a->given[k] = 1;
            skip_space(c);
            if (*c->s == ',') {
                c->s++;
                skip_space(c);
            } else if (*c->s != ')') {
                return bad(c, "%s", "expected ',' or ')' after an argument");
            }
        }
        c->s++;
    }
    for (int k = 0; k < L->required; k++)
        if (!a->given[k]) return bad(c, "missing %s", L->p[k].name);
    return NB_OK;
}

static nb_module *make(nb_model *m, nb_rng *rng, const sp_layer *L, const sp_args *a)
{
    const double(*v)[4] = a->v;
#define I(k) ((int)v[k][0])
#define P(k) {(int)v[k][0], (int)v[k][1]}
    switch (L->id) {
    case L_CONV: {
        nb_conv2d_opts o = {P(3), P(4), P(5), I(6)};
        return nb_nn_conv2d(m, rng, I(0), I(1), (int)v[2][0], (int)v[2][1], &o, I(7));
    }
    case L_CONVT: {
        nb_conv_transpose2d_opts o = {P(3), P(4), P(5), P(8), I(6)};
        return nb_nn_conv_transpose2d(m, rng, I(0), I(1), (int)v[2][0], (int)v[2][1], &o, I(7));
    }
    case L_LINEAR: return nb_nn_linear(m, rng, I(0), I(1), I(2));
    case L_BN1: return nb_nn_batch_norm1d(m, I(0), (float)v[1][0], (float)v[2][0], I(3));
    case L_BN2: return nb_nn_batch_norm2d(m, I(0), (float)v[1][0], (float)v[2][0], I(3));
    case L_IN2: return nb_nn_instance_norm2d(m, I(0), (float)v[1][0], I(2));
    case L_RELU: return nb_nn_relu(m);
    case L_LEAKY: return nb_nn_leaky_relu(m, (float)v[0][0]);
    case L_SIGMOID: return nb_nn_sigmoid(m);
    case L_TANH: return nb_nn_tanh(m);
    case L_SOFTMAX: return nb_nn_softmax(m, I(0));
    case L_LOGSOFTMAX: return nb_nn_log_softmax(m, I(0));
    case L_FLATTEN: return nb_nn_flatten(m, I(0));
    case L_MAXPOOL: {
        nb_pool2d_opts o = {P(0), P(1), P(2), P(3), I(4), 1};
        return nb_nn_max_pool2d(m, &o);
    }
    case L_AVGPOOL: {
        nb_pool2d_opts o = {P(0), P(1), P(2), {1, 1}, I(3), I(4)};
        return nb_nn_avg_pool2d(m, &o);
    }
    case L_ADAPTIVE: return nb_nn_adaptive_avg_pool2d(m, (int)v[0][0], (int)v[0][1]);
    case L_DROPOUT: return nb_nn_dropout(m, (float)v[0][0]);
    case L_ZEROPAD: return nb_nn_zero_pad2d(m, (int)v[0][0], (int)v[0][1], (int)v[0][2], (int)v[0][3]);
    case L_BLOCK: return nb_nn_basic_block(m, rng, I(0), I(1), I(2));
    }
#undef I
#undef P
    return NULL;
}

nb_status nb__build_sequential(nb_model *m, const char *config, nb_rng *rng)
{
    nb_module *seq = nb_nn_sequential(m);
    if (!seq) return NB_ERR_NOMEM;
    m->root = seq;
    sp_cur c = {config, 0, ""};
    for (skip_space(&c); *c.s; c.index++) {
        const char *start = c.s;
        while (isalnum((unsigned char)*c.s) || *c.s == '_') c.s++;
        snprintf(c.layer, sizeof c.layer, "%.*s", (int)(c.s - start), start);
        char key[32];
        size_t n = 0;
        for (const char *p = c.layer; *p && n + 1 < sizeof key; p++)
            if (*p != '_') key[n++] = (char)tolower((unsigned char)*p);
        key[n] = 0;
        const sp_layer *L = NULL;
        for (int i = 0; i < NLAYERS && !L; i++)
            if (!strcmp(layers[i].name, key)) L = &layers[i];
        if (!L) {
            if (!c.layer[0]) return bad(&c, "%s", "expected a layer name");
            return bad(&c, "%s",
                       "unknown layer (Conv2d, ConvTranspose2d, Linear, BatchNorm1d, BatchNorm2d, InstanceNorm2d, "
                       "ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Flatten, MaxPool2d, AvgPool2d, "
                       "AdaptiveAvgPool2d, Dropout, ZeroPad2d, BasicBlock)");
        }
        sp_args a;
        nb_status s = arguments(&c, L, &a);
        if (s) return s;
        nb_module *mod = make(m, rng, L, &a);
        if (!mod) {
            char why[256];
            snprintf(why, sizeof why, "%s", nb_last_error());
            return bad(&c, "%s", why);
        }
        if ((s = nb_sequential_add(seq, mod))) return s;
        skip_space(&c);
        if (*c.s == ',' || *c.s == ';') c.s++;
        skip_space(&c);
    }
    if (c.index == 0) return nb__fail(NB_ERR_ARG, "sequential: config \"%s\" has no layers", config);
    return NB_OK;
}
