/* nabla run — one forward pass of a saved model over the tensor `input` of a
 * safetensors file, written as the tensor `output` of another: the way to
 * check nabla's numbers against another framework's. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

const cli_cmd cli_run_cmd = {
    "run",
    "run a model's forward pass on a tensor file and write the outputs",
    "--weights W.safetensors --input X.safetensors --output Y.safetensors [--model NAME] [options]",
    "Reads the tensor \"input\" of X (first dimension: the batch; e.g. [N, 1, 28, 28]\n"
    "for the zoo's models), runs the model in eval mode (no dropout, BatchNorm with\n"
    "its running statistics, no autograd) in batches, and writes the tensor\n"
    "\"output\" (e.g. the [N, 10] logits) to Y, with the model's name and\n"
    "configuration as metadata. The weights' metadata names the model; a file\n"
    "without it (a PyTorch state_dict saved as safetensors) needs --model, and\n"
    "--config when its configuration is not the model's default.\n\n"
    "example:\n"
    "  nabla run --weights mlp.safetensors --input x.safetensors --output y.safetensors\n"
    "  nabla run --model cnn --weights torch_cnn.safetensors --input x.safetensors --output y.safetensors\n",
};

/* The model of `weights`: its name from --model or the metadata (they must
 * agree), its configuration from --config, the metadata or the default. */
static int load_model(const char *weights, const char *model, const char *config, nb_model **out)
{
    nb_safetensors *h = NULL;
    if (nb_safetensors_load_header(weights, &h) != NB_OK) return cli_lib_error();
    const char *meta_model = nb_safetensors_meta(h, "model"), *meta_config = nb_safetensors_meta(h, "config");
    int rc = CLI_FAIL;
    nb_rng rng;
    nb_rng_seed(&rng, 0);
    if (model && meta_model && strcmp(model, meta_model)) {
        cli_fail("%s holds a '%s' model, not '%s'", weights, meta_model, model);
    } else if (!model && !meta_model) {
        cli_fail("%s: the metadata names no model; give --model NAME", weights);
    } else {
        if (!model) model = meta_model;
        if (!config && meta_model) config = meta_config;
        if (nb_model_build(model, config, &rng, out) != NB_OK || nb_model_load(*out, weights) != NB_OK) {
            cli_lib_error();
            nb_model_free(*out);
            *out = NULL;
        } else {
            rc = CLI_OK;
        }
    }
    nb_safetensors_free(h);
    return rc;
}

/* y = m(x) over the batches of x (its first dimension), into *y (malloc'd
 * here) with the output's shape in yndim/yshape. */
static int forward_all(nb_model *m, const nb_st_tensor *x, int64_t batch, float **y, int *yndim,
                       int64_t *yshape)
{
    int64_t n = x->shape[0], row = n ? x->numel / n : 0, yrow = 0;
    nb_ctx *ctx = nb_ctx_new(0);
    if (!ctx) return cli_lib_error();
    nb_model_train(m, 0);
    nb_set_grad_enabled(ctx, 0);
    int rc = CLI_OK;
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    for (int64_t i = 0; i < n && rc == CLI_OK; i += batch) {
        nb_ctx_reset(ctx);
        shape[0] = n - i < batch ? n - i : batch;
        nb_tensor *in = nb_tensor_from(ctx, x->ndim, shape, x->data + i * row);
        nb_tensor *out = nb_model_forward(m, ctx, in);
        if (!out) {
            rc = cli_fail("forward pass on input rows %lld..%lld: %s", (long long)i, (long long)(i + shape[0] - 1),
                          nb_last_error());
            break;
        }
        if (out->ndim < 1 || out->shape[0] != shape[0]) {
            rc = cli_fail("the model's output does not keep the batch dimension");
            break;
        }
        if (!*y) { /* the first batch tells the output's size */
            yrow = nb_tensor_numel(out) / shape[0];
            *yndim = out->ndim;
            memcpy(yshape, out->shape, sizeof out->shape);
            yshape[0] = n;
            if (yrow > 0 && (uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)yrow)
                rc = cli_fail("the output of %lld rows of %lld values is too large", (long long)n, (long long)yrow);
            else if (!(*y = malloc((size_t)(n * yrow) * sizeof(float) + 1)))
                rc = cli_fail("out of memory for the output");
        }
        if (*y) nb_tensor_copy_out(out, *y + i * yrow);
    }
    nb_ctx_free(ctx);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char *weights = NULL, *input = NULL, *output = NULL, *model = NULL, *config = NULL, *dtype = "f32";
    int threads = 0;
    int64_t batch = 256;
    cli_opt opts[] = {
        {"weights", CLI_STR, &weights, 0, 0, "FILE", "the model's weights (required)", 0},
        {"input", CLI_STR, &input, 0, 0, "FILE", "safetensors file with the tensor \"input\" (required)", 0},
        {"output", CLI_STR, &output, 0, 0, "FILE", "where the tensor \"output\" goes (required)", 0},
        {"model", CLI_STR, &model, 0, 0, "NAME", "model name (mlp, cnn); checked against the metadata", 0},
        {"config", CLI_STR, &config, 0, 0, "C", "model configuration when the metadata has none", 0},
        {"batch", CLI_I64, &batch, 1, 1 << 20, "N", "rows per forward pass", 0},
        {"dtype", CLI_STR, &dtype, 0, 0, "T", "output dtype: f32, f16 or bf16", 0},
        {"threads", CLI_INT, &threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
    };
    int r = cli_parse(&cli_run_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    if (!weights || !input || !output)
        return cli_usage_error("run", "--weights, --input and --output are required (missing --%s)",
                               !weights ? "weights" : !input ? "input" : "output");
    nb_st_dtype dt = !strcmp(dtype, "f32") ? NB_ST_F32 : !strcmp(dtype, "f16") ? NB_ST_F16 : NB_ST_BF16;
    if (strcmp(dtype, "f32") && strcmp(dtype, "f16") && strcmp(dtype, "bf16"))
        return cli_usage_error("run", "option --dtype: '%s' is not f32, f16 or bf16", dtype);
    if (!cli_dir_writable(output)) return cli_fail("cannot write %s: its directory is missing or read-only", output);
    nb_set_threads(threads);

    nb_model *m = NULL;
    nb_safetensors *x = NULL;
    float *y = NULL;
    int rc = CLI_FAIL;
    if (load_model(weights, model, config, &m)) goto done;
    if (nb_safetensors_load(input, &x) != NB_OK) {
        cli_lib_error();
        goto done;
    }
    const nb_st_tensor *t = nb_safetensors_find(x, "input");
    if (!t) {
        cli_fail("%s has no tensor \"input\" (it has %d other tensor%s)", input, x->n, x->n == 1 ? "" : "s");
        goto done;
    }
    if (t->ndim < 1 || t->shape[0] == 0) {
        cli_fail("%s: tensor \"input\" needs a first (batch) dimension of at least 1", input);
        goto done;
    }
    double t0 = cli_now();
    int yndim = 0;
    int64_t yshape[NB_MAX_DIMS];
    if ((rc = forward_all(m, t, batch, &y, &yndim, yshape)) != CLI_OK) goto done;
    nb_st_entry e = {"output", yndim, yshape, y};
    const char *meta[] = {"model", m->name, "config", m->config, "format", "nabla " NB_VERSION};
    if (nb_safetensors_save(output, &e, 1, dt, meta, 3) != NB_OK) {
        rc = cli_lib_error();
        goto done;
    }
    char shape[128];
    nb_tensor tmp = {0};
    tmp.ndim = yndim;
    memcpy(tmp.shape, yshape, sizeof tmp.shape);
    printf("output %s written to %s (%s %s, %.3f s)\n", nb_shape_str(&tmp, shape, sizeof shape), output, m->name,
           m->config, cli_now() - t0);
    rc = CLI_OK;
done:
    free(y);
    nb_safetensors_free(x);
    nb_model_free(m);
    return rc;
}
