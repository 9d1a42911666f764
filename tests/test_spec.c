/* The zoo's "sequential" (src/models/spec.c): a Sequential written as text
 * builds the same modules as the C API (names, shapes, initial values,
 * outputs bit for bit), rejects bad text naming the layer and argument, and
 * is rebuilt from its model file; the CLI trains and summarises it. */
#include "test.h"
#include <stdlib.h>

/* The output of m on x (eval mode), copied (malloc'ed), or NULL. */
static float *run(nb_model *m, int ndim, const int64_t *shape, uint64_t seed, int64_t *n)
{
    nb_ctx *ctx = nb_ctx_new(seed);
    nb_tensor *x = nb_tensor_randn(ctx, ndim, shape);
    nb_model_train(m, 0);
    nb_tensor *y = x ? nb_model_forward(m, ctx, x) : NULL;
    float *out = y ? malloc((size_t)nb_tensor_numel(y) * sizeof(float)) : NULL;
    if (out) {
        *n = nb_tensor_numel(y);
        memcpy(out, y->data, (size_t)*n * sizeof(float));
    }
    nb_ctx_free(ctx);
    return out;
}

/* Same parameter and buffer names, shapes and values; same outputs on x. */
static void same_models(nb_model *a, nb_model *b, int ndim, const int64_t *shape, const char *what)
{
    CHECK_MSG(a && b, "%s: %s", what, nb_last_error());
    CHECK_MSG(a->nparams == b->nparams, "%s: %d vs %d parameters", what, a->nparams, b->nparams);
    for (int i = 0; i < a->nparams; i++) {
        const nb_tensor *p = &a->params[i].t, *q = &b->params[i].t;
        CHECK_MSG(!strcmp(a->params[i].name, b->params[i].name), "%s: parameter %d is %s vs %s", what, i,
                  a->params[i].name, b->params[i].name);
        CHECK_MSG(p->ndim == q->ndim && !memcmp(p->shape, q->shape, (size_t)p->ndim * sizeof p->shape[0]) &&
                      !memcmp(p->data, q->data, (size_t)nb_tensor_numel(p) * sizeof(float)),
                  "%s: %s differs in shape or value", what, a->params[i].name);
    }
    int64_t na = 0, nb = 0;
    float *ya = run(a, ndim, shape, 5, &na), *yb = run(b, ndim, shape, 5, &nb);
    CHECK_MSG(ya && yb && na == nb && !memcmp(ya, yb, (size_t)na * sizeof(float)), "%s: outputs differ (%s)", what,
              nb_last_error());
    free(ya);
    free(yb);
}

TEST(sequential_default_is_the_cnn)
{
    nb_rng r1, r2;
    nb_rng_seed(&r1, 9);
    nb_rng_seed(&r2, 9);
    nb_model *cnn = NULL, *seq = NULL;
    CHECK_OK(nb_model_build("cnn", NULL, &r1, &cnn));
    CHECK_OK(nb_model_build("sequential", NULL, &r2, &seq));
    same_models(cnn, seq, NB_SHAPE(3, 1, 28, 28), "cnn");
    nb_model_free(cnn);
    nb_model_free(seq);
}

/* Every layer kind, with positional and named arguments, pairs as N,
 * (A,B) and AxB, against the same Sequential built with the C API. */
TEST(sequential_spec_builds_what_the_api_builds)
{
    static const char *spec =
        "Conv2d(2, 6, (3,5), stride=(2,1), padding=1x2, bias=False); BatchNorm2d(6, momentum=0.2) ReLU, "
        "MaxPool2d(3, 1, 1, ceil_mode=true) conv_transpose2d(6,4,3,stride=2,padding=1,output_padding=1) "
        "InstanceNorm2d(4, affine=True) LeakyReLU(0.2) AvgPool2d(2, count_include_pad=false) ZeroPad2d((1,0,2,1)) "
        "BasicBlock(4, 8, 2) AdaptiveAvgPool2d((3,2)) Tanh Flatten Dropout(p=0.25) Linear(48, 20) BatchNorm1d(20) "
        "Sigmoid Linear(20, 10, false) LogSoftmax(1) Softmax(dim=-1)";
    nb_rng r1, r2;
    nb_rng_seed(&r1, 4);
    nb_rng_seed(&r2, 4);
    nb_model *a = NULL;
    CHECK_OK(nb_model_build("sequential", spec, &r1, &a));
    CHECK(!strcmp(a->config, spec));

    nb_model *b = nb_model_new("api", "");
    nb_module *s = b->root = nb_nn_sequential(b);
    nb_conv2d_opts co = {{2, 1}, {1, 2}, {1, 1}, 1};
    nb_pool2d_opts mp = {{3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, 1};
    nb_conv_transpose2d_opts ct = {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 1};
    nb_pool2d_opts ap = {{2, 2}, {0, 0}, {0, 0}, {1, 1}, 0, 0};
    nb_module *mods[] = {
        nb_nn_conv2d(b, &r2, 2, 6, 3, 5, &co, 0),
        nb_nn_batch_norm2d(b, 6, 1e-5f, 0.2f, 1),
        nb_nn_relu(b),
        nb_nn_max_pool2d(b, &mp),
        nb_nn_conv_transpose2d(b, &r2, 6, 4, 3, 3, &ct, 1),
        nb_nn_instance_norm2d(b, 4, 1e-5f, 1),
        nb_nn_leaky_relu(b, 0.2f),
        nb_nn_avg_pool2d(b, &ap),
        nb_nn_zero_pad2d(b, 1, 0, 2, 1),
        nb_nn_basic_block(b, &r2, 4, 8, 2),
        nb_nn_adaptive_avg_pool2d(b, 3, 2),
        nb_nn_tanh(b),
        nb_nn_flatten(b, 1),
        nb_nn_dropout(b, 0.25f),
        nb_nn_linear(b, &r2, 48, 20, 1),
        nb_nn_batch_norm1d(b, 20, 1e-5f, 0.1f, 1),
        nb_nn_sigmoid(b),
        nb_nn_linear(b, &r2, 20, 10, 0),
        nb_nn_log_softmax(b, 1),
        nb_nn_softmax(b, -1),
    };
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) CHECK_OK(nb_sequential_add(s, mods[i]));
    same_models(a, b, NB_SHAPE(2, 2, 12, 9), "every layer");
    /* the settings that the parameters do not show */
    char pa[4096], pb[4096];
    nb_module_print(a->root, pa, sizeof pa);
    nb_module_print(b->root, pb, sizeof pb);
    CHECK_MSG(!strcmp(pa, pb), "printed:\n%s\nvs\n%s", pa, pb);
    nb_model_free(a);
    nb_model_free(b);
}

TEST(sequential_spec_errors_name_the_layer_and_argument)
{
    static const struct { const char *spec, *msg; } bad[] = {
        {"   ", "no layers"},
        {"conv2d(1,8)", "layer 0 (conv2d): missing kernel_size"},
        {"relu conv2d(1,8,3,strides=2)", "layer 1 (conv2d): no argument named 'strides'"},
        {"conv2d(1,8,3,padding=(1,2,3))", "padding: wrong number of values"},
        {"linear(4,2,bias=2)", "bias: not a bool"},
        {"linear(4.5,2)", "in_features: not an integer"},
        {"linear(4,2", "expected ',' or ')'"},
        {"linear(4,x)", "out_features: expected a number"},
        {"linear(in_features=4, 2)", "a positional argument after a named one"},
        {"linear(4, 2, in_features=3)", "in_features given twice"},
        {"linear(4,2,1,1)", "too many arguments"},
        {"relu frob(3)", "layer 1 (frob): unknown layer"},
        {"relu ) relu", "layer 1 (?): expected a layer name"},
        {"conv2d(1,8,3,groups=3)", "layer 0 (conv2d): Conv2d: in_channels=1 and out_channels=8 must be divisible"},
        {"dropout(1.5)", "Dropout: probability"},
        {"linear(0,2)", "in_features=0"},
        {"maxpool2d(2, stride=(1e30,1))", "stride: not an integer in range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nb_rng r;
        nb_rng_seed(&r, 1);
        nb_model *m = (nb_model *)1;
        nb_status st = nb_model_build("sequential", bad[i].spec, &r, &m);
        CHECK_MSG(st == NB_ERR_ARG && m == NULL && strstr(nb_last_error(), bad[i].msg),
                  "\"%s\": status %d, message \"%s\", expected \"%s\"", bad[i].spec, st, nb_last_error(), bad[i].msg);
    }
    /* longer than a model keeps (it would be cut, and its file rebuild another model) */
    char *longer = malloc(NB_MODEL_CONFIG_MAX + 8);
    CHECK(longer);
    for (int i = 0; i + 5 <= NB_MODEL_CONFIG_MAX + 4; i += 5) memcpy(longer + i, "relu ", 5);
    longer[NB_MODEL_CONFIG_MAX + 4] = 0;
    nb_rng r;
    nb_rng_seed(&r, 1);
    nb_model *m = NULL;
    nb_status st = nb_model_build("sequential", longer, &r, &m);
    free(longer);
    CHECK_MSG(st == NB_ERR_ARG && !m && strstr(nb_last_error(), "at most 4095"), "%s", nb_last_error());
}

TEST(sequential_is_rebuilt_from_its_file)
{
    nb_rng r;
    nb_rng_seed(&r, 2);
    nb_model *m = NULL, *back = NULL;
    CHECK_OK(nb_model_build("sequential", "conv2d(1,4,3,padding=1) batchnorm2d(4) relu flatten linear(3136,10)", &r,
                            &m));
    const char *path = nbt_tmp_path("seq.safetensors");
    CHECK_OK(nb_model_save(m, path));
    CHECK_OK(nb_model_load_file(path, &back));
    CHECK(!strcmp(back->name, "sequential") && !strcmp(back->config, m->config));
    same_models(m, back, NB_SHAPE(2, 1, 28, 28), "reloaded");
    nb_model_free(m);
    nb_model_free(back);
}

TEST(cli_trains_and_summarises_a_sequential)
{
    const char *out = nbt_tmp_path("cli_seq.safetensors");
    int rc = nbt_nabla("train --model sequential --config \"conv2d(1,8,3,padding=1) relu maxpool2d(2) flatten "
                       "linear(1568,10)\" --epochs 1 --limit-train 2000 --threads 1 --out %s",
                       out);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, nbt_err);
    const char *acc = strstr(nbt_out, "test_acc ");
    CHECK_MSG(acc && atof(acc + 9) > 0.5, "well above chance (0.1):\n%s", nbt_out);
    rc = nbt_nabla("summary --weights %s", out);
    CHECK_MSG(rc == 0 && strstr(nbt_out, "sequential (conv2d(1,8,3,padding=1)") &&
                  strstr(nbt_out, "Total params: 15,770") && strstr(nbt_out, "Output shape: [-1, 10]"),
              "exit %d:\n%s", rc, nbt_out);
    rc = nbt_nabla("summary sequential --config \"conv2d(1,8,3) relu maxpool2d(2,stride=2)\"");
    CHECK_MSG(rc == 0 && strstr(nbt_out, "[-1, 8, 13, 13]") && strstr(nbt_out, "RF"), "exit %d:\n%s", rc, nbt_out);
    rc = nbt_nabla("summary sequential --config \"conv2d(1,8)\"");
    CHECK_MSG(rc == 1 && strstr(nbt_err, "missing kernel_size"), "exit %d: %s", rc, nbt_err);
    rc = nbt_nabla("train --model sequential --config \"linear(784,10)\" --epochs 1 --limit-train 100");
    CHECK_MSG(rc == 1 && strstr(nbt_err, "nabla: "), "a model that does not take images: exit %d: %s", rc, nbt_err);
}
