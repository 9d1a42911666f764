/* compare.h — what `nabla compare` (tools/compare.c: the flags and the
 * training runs) hands to its report (tools/compare_report.c: the CSV files,
 * the charts and REPORT.md). */
#ifndef NABLA_CLI_COMPARE_H
#define NABLA_CLI_COMPARE_H

#include "cli.h"

enum { CMP_MAX_OPTIMS = 16, CMP_MAX_LRS = 32, CMP_MAX_SEEDS = 32 };

/* What the runs were: the command line after defaults and --quick. */
typedef struct cmp_setup {
    const char *model, *out;
    int         nopt;
    const char *optim[CMP_MAX_OPTIMS];        /* CLI names: "sgd", "momentum", ... */
    double      default_lr[CMP_MAX_OPTIMS];   /* cli_optim_lr of each */
    int         nlr[CMP_MAX_OPTIMS];
    double      lr[CMP_MAX_OPTIMS][CMP_MAX_LRS]; /* ascending, the default among them */
    int         default_lr_index[CMP_MAX_OPTIMS];
    int         nseeds;
    uint64_t    seed[CMP_MAX_SEEDS];
    int         epochs, log_every, threads;
    int64_t     batch, steps_per_epoch;
    int64_t     train_images, test_images; /* used (0 before loading: all) */
    double      target_acc;
    int         quick;
} cmp_setup;

/* One point of a training curve: the mean over the logging interval that
 * ends at `step` (counted from 1 over the whole run). */
typedef struct cmp_point {
    int64_t step;
    double  seconds;             /* training time so far (evaluation excluded) */
    double  loss, acc;           /* mean batch loss, accuracy over the interval */
} cmp_point;

typedef struct cmp_epoch {
    int     epoch;
    int64_t step;
    double  seconds;
    double  train_loss, train_acc; /* over the epoch's batches */
    double  test_loss, test_acc;
} cmp_epoch;

/* One training run: an optimizer at one learning rate from one seed. */
typedef struct cmp_run {
    int        optim, lr_index, seed_index; /* indices into cmp_setup */
    cmp_point *curve;
    int        ncurve;
    cmp_epoch *epochs;              /* completed epochs */
    int        nepochs;
    int64_t    steps;               /* steps taken */
    int64_t    steps_to_target;     /* first step whose running accuracy reached
                                       the target; -1: never */
    double     seconds_to_target;   /* training seconds at that step */
    double     seconds;             /* training seconds of the run */
    double     test_loss, test_acc; /* at the end (or where it diverged) */
    int        diverged;            /* 1: a non-finite loss or gradient stopped it */
} cmp_run;

/* Index of run (optimizer o, lr index l, seed index s) in the array of all
 * runs, which holds them in that order (the seed varying fastest). */
int cmp_run_index(const cmp_setup *S, int o, int l, int s);
int cmp_run_count(const cmp_setup *S);

/* Write curves.csv, epochs.csv, sweep.csv, summary.csv, loss.png,
 * loss_time.png, acc_lr.png and REPORT.md into S->out, each atomically.
 * Returns 0, or CLI_FAIL after printing the problem. */
int cmp_write_outputs(const cmp_setup *S, const cmp_run *runs);

#endif
