/* nabla — the command line: dispatch to the subcommands, global --help and
 * --version. Exit codes: 0 ok, 1 failure, 2 usage. */
#include "cli.h"
#include "nabla.h"
#include "summary.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const cli_cmd *cmd;
    int (*run)(int argc, char **argv);
    const char *alias;
} command;

static const command commands[] = {
    {&cli_train_cmd, cmd_train, NULL},
    {&cli_eval_cmd, cmd_eval, NULL},
    {&cli_predict_cmd, cmd_predict, "show"},
    {&cli_summary_cmd, cmd_summary, NULL},
    {&cli_rf_cmd, cmd_rf, NULL},
    {&cli_compare_cmd, cmd_compare, NULL},
    {&cli_inspect_cmd, cmd_inspect, NULL},
    {&cli_run_cmd, cmd_run, NULL},
    {&cli_adding_cmd, cmd_adding, NULL},
    {&cli_textgen_cmd, cmd_textgen, NULL},
    {&cli_gan_cmd, cmd_gan, NULL},
    {&cli_lab_cmd, cmd_lab, NULL},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fputs("usage: nabla <command> [options]\n"
          "       nabla <command> --help\n\n"
          "nabla " NB_VERSION " — a deep-learning library in C, and its command line.\n\n"
          "commands:\n",
          f);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].cmd->name, commands[i].cmd->summary);
    fputs("\noptions:\n"
          "  -h, --help     show this help\n"
          "  --version      print the version\n\n"
          "Fashion-MNIST is read from $NABLA_FASHION_MNIST or /usr/share/datasets/fashion-mnist\n"
          "(Debian package dataset-fashion-mnist); set NO_PROGRESS=1 to hide the progress bar.\n"
          "Exit status: 0 ok, 1 failure, 2 usage error.\n\n"
          "example:\n"
          "  nabla train --epochs 15 --out mlp.safetensors --metrics mlp.jsonl\n"
          "  nabla eval --weights mlp.safetensors\n"
          "  nabla predict --weights mlp.safetensors --count 6 --out predictions.png\n",
          f);
}

/* A usage error that lists the commands. */
static int unknown_command(const char *name)
{
    char names[256];
    size_t n = 0;
    names[0] = 0;
    for (int i = 0; i < NCOMMANDS && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", commands[i].cmd->name);
    return cli_usage_error(NULL, "unknown command '%s' (commands: %s)", name, names);
}

static const command *find(const char *name)
{
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i].cmd->name) || (commands[i].alias && !strcmp(name, commands[i].alias)))
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *a = argv[1];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(a, "--version") || !strcmp(a, "version")) {
        printf("nabla %s (gemm: %s)\n", NB_VERSION, nb_gemm_isa());
        return CLI_OK;
    }
    if (!strcmp(a, "help")) {
        if (argc < 3) {
            usage(stdout);
            return CLI_OK;
        }
        const command *c = find(argv[2]);
        if (!c) return unknown_command(argv[2]);
        char *help_argv[] = {argv[2], (char *)"--help", NULL};
        return c->run(2, help_argv);
    }
    if (a[0] == '-') return cli_usage_error(NULL, "unknown option '%s'", a);
    const command *c = find(a);
    if (!c) return unknown_command(a);
    return c->run(argc - 1, argv + 1);
}
