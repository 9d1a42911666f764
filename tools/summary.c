/* nabla summary — a model's layers, output shapes, parameters, MACs and
 * receptive fields; nabla rf — the receptive-field recurrence by hand. */
#include "summary.h"
#include "nabla/summary.h"

#include <stdlib.h>
#include <string.h>

const cli_cmd cli_summary_cmd = {
    "summary",
    "print a model's layers, output shapes, parameters, MACs and receptive fields",
    "MODEL [--config C] [--input DIMS] | --weights FILE.safetensors [--input DIMS]",
    "MODEL is a name from the model zoo (mlp, cnn, vgg11, vgg11_bn, lstm, charlm,\n"
    "sequential), built with its default configuration unless --config is given;\n"
    "--weights summarises a saved model (rebuilt from the file's metadata).\n"
    "sequential is any nn.Sequential written as text: torch.nn class names (any\n"
    "case) separated by spaces, each with torch's arguments, order, names and\n"
    "defaults; a pair is N, (A,B) or AxB. Layers: Conv2d, ConvTranspose2d, Linear,\n"
    "BatchNorm1d, BatchNorm2d, InstanceNorm2d, ReLU, LeakyReLU, Sigmoid, Tanh,\n"
    "Softmax(dim), LogSoftmax(dim), Flatten, MaxPool2d, AvgPool2d,\n"
    "AdaptiveAvgPool2d, Dropout, ZeroPad2d((l,r,t,b)), BasicBlock(in,out,stride).\n"
    "One forward pass on zeros with a batch of 1 gives each layer's output shape\n"
    "([-1, ...]: the batch). MACs are multiply-accumulates per sample. RF is the\n"
    "receptive field in input pixels and Jump the distance between neighbouring\n"
    "output units in input pixels:\n"
    "r_out = r_in + (k_eff - 1) * j_in, j_out = j_in * s, k_eff = d*(k-1) + 1.\n"
    "--input is the shape of one sample without the batch: C,H,W for images\n"
    "(default 1,28,28, Fashion-MNIST; an mlp whose first size is not 784 gets a\n"
    "vector of that size).\n\n"
    "example:\n"
    "  nabla summary mlp\n"
    "  nabla summary mlp --config 784,512,10\n"
    "  nabla summary sequential --config \"conv2d(1,8,5) relu maxpool2d(2, stride=2)\"\n"
    "  nabla summary sequential --config \"conv2d(3,64,7,stride=2,padding=3) maxpool2d(3,2,1) basicblock(64,64)\" --input 3,224,224\n"
    "  nabla summary --weights mlp.safetensors\n",
};

const cli_cmd cli_rf_cmd = {
    "rf",
    "receptive field and jump of a chain of layers given as K[:S[:D]]",
    "K[:S[:D]] ...",
    "Each argument is one layer: kernel K, stride S (default 1), dilation D\n"
    "(default 1). Prints per layer r_out = r_in + (k_eff - 1) * j_in and\n"
    "j_out = j_in * S with k_eff = D*(K-1) + 1, from r = j = 1 at the input.\n\n"
    "example:\n"
    "  nabla rf 3 3 2:2          two 3x3 convs then a 2x2 pool of stride 2\n"
    "  nabla rf 3:1:2            a 3x3 conv of dilation 2 (r = 5)\n",
};

/* "3,224,224" -> dims; returns the count, or 0 when it does not parse. */
static int parse_dims(const char *s, int64_t *dims, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0 || v > (1 << 24) || n == max) return 0;
        dims[n++] = v;
        s = end;
        if (*s == ',' || *s == 'x') s++;
        else if (*s) return 0;
    }
    return n;
}

/* Input of one sample when --input is absent. */
static int default_input(const nb_model *m, int64_t *dims)
{
    if (!strcmp(m->name, "mlp")) {
        long first = strtol(m->config, NULL, 10);
        if (first > 0 && first != 784) {
            dims[0] = first;
            return 1;
        }
    }
    long v[3];
    if (!strcmp(m->name, "cnn") && sscanf(m->config, "%ld,%ld,%ld", &v[0], &v[1], &v[2]) == 3) {
        dims[0] = v[0], dims[1] = v[1], dims[2] = v[2];
        return 3;
    }
    nb_vgg_opts vo = {0};
    if (!strncmp(m->name, "vgg11", 5) && nb_vgg_parse_config(m->config, &vo) == NB_OK) {   /* vgg11, vgg11_bn */
        dims[0] = vo.in_channels, dims[1] = dims[2] = vo.size;
        return 3;
    }
    dims[0] = 1, dims[1] = 28, dims[2] = 28;
    return 3;
}

int cmd_summary(int argc, char **argv)
{
    const char *model = NULL, *config = NULL, *input = NULL, *weights = NULL;
    cli_opt opts[] = {
        {"config", CLI_STR, &config, 0, 0, "C", "model configuration (default: the model's own)", 0},
        {"input", CLI_STR, &input, 0, 0, "DIMS", "shape of one sample without the batch, e.g. 3,224,224", 0},
        {"weights", CLI_STR, &weights, 0, 0, "FILE", "summarise a saved model instead of MODEL", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    /* The model name comes first; cli_parse then sees it as argv[0]. */
    if (argc > 1 && argv[1][0] != '-') {
        model = argv[1];
        argc--, argv++;
    }
    int r = cli_parse(&cli_summary_cmd, opts, nopts, argc, argv);
    if (r >= 0) return r;
    if (!model == !weights) return cli_usage_error("summary", "give a MODEL name or --weights FILE (one of them)");
    if (weights && config) return cli_usage_error("summary", "--config comes from the file with --weights");
    int64_t dims[NB_MAX_DIMS];
    int ndim = 0;
    if (input && !(ndim = parse_dims(input, dims, NB_MAX_DIMS - 1)))
        return cli_usage_error("summary", "option --input: '%s' is not positive sizes like 3,224,224", input);

    nb_model *m = NULL;
    if (weights) {
        if (cli_load_weights(weights, NULL, &m)) return CLI_FAIL;
    } else {
        nb_rng rng;
        nb_rng_seed(&rng, 0);
        if (nb_model_build(model, config, &rng, &m) != NB_OK) return cli_lib_error();
    }
    if (!ndim) ndim = default_input(m, dims);

    nb_layer_info *rows = NULL;
    int n = 0;
    char *text = NULL;
    int rc = CLI_FAIL;
    if (nb_model_summary(m, ndim, dims, &rows, &n) != NB_OK || nb_summary_format(rows, n, &text) != NB_OK) {
        cli_lib_error();
    } else {
        printf("%s (%s), input [-1", m->name, m->config);
        for (int i = 0; i < ndim; i++) printf(", %lld", (long long)dims[i]);
        printf("]\n\n%s", text);
        rc = CLI_OK;
    }
    free(text);
    free(rows);
    nb_model_free(m);
    return rc;
}

/* "3", "3:2", "3:1:2" -> k, s, d; 0 when it does not parse. */
static int parse_layer(const char *a, int *k, int *s, int *d)
{
    long v[3] = {0, 1, 1};
    int n = 0;
    const char *p = a;
    while (n < 3) {
        char *end;
        v[n] = strtol(p, &end, 10);
        if (end == p || v[n] <= 0 || v[n] > 1000000) return 0;
        n++;
        p = end;
        if (!*p) break;
        if (*p != ':') return 0;
        p++;
    }
    if (*p) return 0;
    *k = (int)v[0], *s = (int)v[1], *d = (int)v[2];
    return 1;
}

int cmd_rf(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            cli_print_help(stdout, &cli_rf_cmd, NULL, 0);
            return CLI_OK;
        }
    if (argc < 2) return cli_usage_error("rf", "give at least one layer as K[:S[:D]]");
    /* Check every layer before printing any. */
    int64_t rf = 1, jump = 1;
    double start = 0;
    for (int i = 1; i < argc; i++) {
        int k = 1, s = 1, d = 1;
        if (!parse_layer(argv[i], &k, &s, &d))
            return cli_usage_error("rf", "'%s' is not a layer K[:S[:D]] of positive integers", argv[i]);
        if ((double)jump * s > 1e15 || (double)rf + (double)d * (k - 1) * (double)jump > 1e15)
            return cli_fail("layer %d: the field grows past 10^15 pixels", i);
        nb_rf_step(&rf, &jump, &start, k, s, 0, d);
    }
    printf("%-6s %6s %6s %8s %6s %10s %8s\n", "layer", "kernel", "stride", "dilation", "k_eff", "rf", "jump");
    printf("%-6s %6s %6s %8s %6s %10d %8d\n", "input", "", "", "", "", 1, 1);
    rf = 1, jump = 1, start = 0;
    for (int i = 1; i < argc; i++) {
        int k = 1, s = 1, d = 1;
        parse_layer(argv[i], &k, &s, &d);
        nb_rf_step(&rf, &jump, &start, k, s, 0, d);
        printf("%-6d %6d %6d %8d %6lld %10lld %8lld\n", i, k, s, d, (long long)d * (k - 1) + 1, (long long)rf,
               (long long)jump);
    }
    return CLI_OK;
}
