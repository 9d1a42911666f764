/* nabla eval — test accuracy and loss of a saved model on Fashion-MNIST. */
#include "cli.h"

#include <string.h>

const cli_cmd cli_eval_cmd = {
    "eval",
    "print the test accuracy and loss of saved weights on Fashion-MNIST",
    "--weights FILE.safetensors [--model NAME] [--data DIR] [--threads T]",
    "The file's metadata names the model and its configuration, so --model is only\n"
    "a check: it must match the file. Prints \"test_acc 0.8850  test_loss 0.3212\".\n",
};

/* Load weights (the model rebuilt from the file's metadata) and check that
 * it is the expected model when one is named. Shared with predict. */
int cli_load_weights(const char *path, const char *want_model, nb_model **out)
{
    if (nb_model_load_file(path, out) != NB_OK) return cli_lib_error();
    if (want_model && strcmp(want_model, (*out)->name)) {
        cli_fail("%s holds a '%s' model, not '%s'", path, (*out)->name, want_model);
        nb_model_free(*out);
        *out = NULL;
        return CLI_FAIL;
    }
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    const char *weights = NULL, *model = NULL, *data = nb_fashion_mnist_default_dir();
    int threads = 0;
    cli_opt opts[] = {
        {"weights", CLI_STR, &weights, 0, 0, "FILE", "weights saved by nabla train (required)", 0},
        {"model", CLI_STR, &model, 0, 0, "NAME", "expected model name (checked against the file)", 0},
        {"data", CLI_STR, &data, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"threads", CLI_INT, &threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
    };
    int r = cli_parse(&cli_eval_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    if (!weights) return cli_usage_error("eval", "--weights FILE is required");
    nb_set_threads(threads);

    nb_model *m = NULL;
    nb_dataset *test = NULL;
    nb_ctx *ctx = NULL;
    int rc = CLI_FAIL;
    if (cli_load_weights(weights, model, &m) || cli_load_fashion_mnist(data, 0, &test)) goto done;
    if (!(ctx = nb_ctx_new(0))) {
        cli_lib_error();
        goto done;
    }
    double loss = 0, acc = 0;
    if (cli_evaluate(m, ctx, test, &loss, &acc) != NB_OK) {
        cli_lib_error();
        goto done;
    }
    printf("test_acc %.4f  test_loss %.4f  (%s %s, %lld test images)\n", acc, loss, m->name, m->config,
           (long long)test->n);
    rc = CLI_OK;
done:
    nb_ctx_free(ctx);
    nb_dataset_free(test);
    nb_model_free(m);
    return rc;
}
