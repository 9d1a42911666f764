/* cli.h — what the `nabla` subcommands share: typed option parsing with range
 * checks, exit codes, error reporting, timing and the progress bar.
 *
 * Exit codes: CLI_OK (0) success, CLI_FAIL (1) a failure at run time (a
 * library error, a missing file), CLI_USAGE (2) a bad command line. */
#ifndef NABLA_CLI_H
#define NABLA_CLI_H

#include "nabla.h"
#include <stdint.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef enum cli_type {
    CLI_INT,    /* int, range [min, max] */
    CLI_I64,    /* int64_t, range [min, max] */
    CLI_U64,    /* uint64_t (seeds), any value that fits */
    CLI_FLOAT,  /* float, finite, range [min, max]; a NaN default is not printed */
    CLI_STR,    /* const char * pointing into argv */
    CLI_FLAG    /* int set to 1; takes no value */
} cli_type;

typedef struct cli_opt {
    const char *name;     /* "epochs" for --epochs */
    cli_type    type;
    void       *dst;      /* where the value goes; keeps its default if absent */
    double      min, max; /* inclusive range for CLI_INT, CLI_I64, CLI_FLOAT */
    const char *metavar;  /* "N", "FILE", ... (NULL for flags) */
    const char *help;     /* one line; the default is printed after it */
    int         seen;     /* set to 1 by cli_parse when given */
} cli_opt;

typedef struct cli_cmd {
    const char *name;     /* "train" */
    const char *summary;  /* one line for `nabla --help` */
    const char *usage;    /* text after "usage: nabla <name> " */
    const char *details;  /* paragraphs after the option list, or NULL */
} cli_cmd;

/* Parse argv[1..argc) (argv[0] is the subcommand) into opts[0..n).
 * Accepts --name VALUE and --name=VALUE; -h/--help prints the command's help
 * on stdout. Returns -1 to go on, CLI_OK after --help, or CLI_USAGE after
 * printing the problem and a hint to --help on stderr. */
int  cli_parse(const cli_cmd *cmd, cli_opt *opts, int n, int argc, char **argv);
/* Whether the option `name` (without the dashes) was on the command line. */
int  cli_given(const cli_opt *opts, int n, const char *name);
void cli_print_help(FILE *f, const cli_cmd *cmd, const cli_opt *opts, int n);
/* A usage error of command `cmd` (NULL for the top level): prints
 * "nabla: <message>" and the hint; returns CLI_USAGE. */
int  cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A run-time failure: prints "nabla: <message>"; returns CLI_FAIL. */
int  cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A library failure: prints "nabla: <nb_last_error()>"; returns CLI_FAIL. */
int  cli_lib_error(void);

/* Seconds on a monotonic clock. */
double cli_now(void);
/* 1 when every one of the n floats is finite. */
int    cli_all_finite(const float *x, size_t n);
/* 1 when the directory that would hold `path` exists and is writable. */
int    cli_dir_writable(const char *path);

/* A text file written whole or not at all: cli_atomic_open makes a
 * temporary file beside `path` (mode 0644) and returns its stream (NULL
 * after printing the error); cli_atomic_close flushes it to disk and
 * renames it over `path`, or removes it and prints the error (returns
 * CLI_FAIL then, CLI_OK otherwise). */
typedef struct cli_atomic {
    FILE *f;
    char  path[4096], tmp[4128];
    int   fd;
} cli_atomic;
FILE  *cli_atomic_open(cli_atomic *a, const char *path);
int    cli_atomic_close(cli_atomic *a);

/* The progress bar of one epoch. On a terminal (stderr is a TTY and the
 * NO_PROGRESS variable is unset) a line redrawn in place at most ~10 times a
 * second: "epoch 3/10 [=====>    ]  420/938  loss 0.4123  41234 img/s";
 * elsewhere it draws nothing, so logs hold only the per-epoch lines. */
typedef struct cli_progress {
    int     active;       /* drawing on a terminal */
    int     epoch, epochs;
    int64_t total;        /* batches in the epoch */
    double  t0, last;     /* start and last redraw */
    int     width;        /* characters last drawn, to clear the line */
} cli_progress;

void cli_progress_start(cli_progress *p, int epoch, int epochs, int64_t total, int quiet);
/* done batches so far, the running mean loss and images per second. */
void cli_progress_update(cli_progress *p, int64_t done, double loss, double img_per_s);
/* Erase the bar so the next line starts clean. */
void cli_progress_end(cli_progress *p);

/* Mean cross-entropy and accuracy of m over d, in batches of 1000 with
 * autograd off and m in eval mode (both restored after). ctx is reset. */
nb_status cli_evaluate(nb_model *m, nb_ctx *ctx, const nb_dataset *d, double *loss, double *acc);
/* Load a Fashion-MNIST split, printing the library's message on failure;
 * returns 0 or CLI_FAIL. */
int cli_load_fashion_mnist(const char *dir, int train, nb_dataset **out);

/* Load a model file (rebuilt from its metadata); when want_model is not
 * NULL the file must hold that model. Prints the problem; 0 or CLI_FAIL. */
int cli_load_weights(const char *path, const char *want_model, nb_model **out);

/* The optimizers of the command line: sgd, momentum (SGD with momentum
 * 0.9), rmsprop, adagrad, adam, adamw. Fills *out with torch's defaults for
 * the kind and the command line's default learning rate (cli_optim_lr).
 * Returns 0, or -1 for an unknown name. */
#define CLI_OPTIM_NAMES "sgd, momentum, rmsprop, adagrad, adam, adamw"
int    cli_optim_opts(const char *name, nb_optim_opts *out);
/* The default learning rate of each: sgd 0.1, momentum 0.05, rmsprop 1e-3,
 * adagrad 1e-2, adam 1e-3, adamw 1e-3 (torch's where torch has one). */
double cli_optim_lr(const char *name);

/* The subcommands: argv[0] is the subcommand's name; each returns an exit code. */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
extern const cli_cmd cli_train_cmd, cli_eval_cmd, cli_predict_cmd;
int cmd_compare(int argc, char **argv); /* tools/compare.c */
extern const cli_cmd cli_compare_cmd;
int cmd_inspect(int argc, char **argv); /* tools/inspect.c */
int cmd_run(int argc, char **argv);     /* tools/run.c */
extern const cli_cmd cli_inspect_cmd, cli_run_cmd;
int cmd_adding(int argc, char **argv);  /* tools/adding.c */
int cmd_textgen(int argc, char **argv); /* tools/textgen.c */
extern const cli_cmd cli_adding_cmd, cli_textgen_cmd;
int cmd_gan(int argc, char **argv);     /* tools/gan.c */
extern const cli_cmd cli_gan_cmd;
int cmd_lab(int argc, char **argv);     /* tools/lab.c, lab/ */
extern const cli_cmd cli_lab_cmd;

#endif
