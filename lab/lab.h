/* lab.h — the lab: each claim of the study notes as a measured experiment.
 *
 * A claim is one entry of the registry (lab/lab.c): the notes' words, an
 * English statement and a run function. The run function trains and
 * measures, writes its part of REPORT.md (settings, a table of the numbers,
 * plots) into its section, its CSV files and PNGs into the output directory,
 * and sets a verdict computed from the numbers by a rule it states. lab.c
 * runs the chosen claims in order and assembles REPORT.md around them.
 * Every random draw comes from lab.seed, so a run is reproducible for a
 * given seed and thread count. */
#ifndef NABLA_LAB_H
#define NABLA_LAB_H

#include "../tools/cli.h"
#include "nabla/plot.h"

#include <stdio.h>

typedef enum lab_verdict {
    LAB_PENDING = 0,   /* the run function did not set one (a bug: reported as failed) */
    LAB_CONFIRMED,
    LAB_REFUTED,
    LAB_DEPENDS,       /* holds under a condition the verdict text names */
    LAB_UNAVAILABLE,   /* the library lacks what the experiment needs */
    LAB_FAILED         /* the experiment could not run (a library error) */
} lab_verdict;

const char *lab_verdict_name(lab_verdict v);

/* The settings of one `nabla lab` run and what the claims share. */
typedef struct lab {
    const char *out;          /* output directory (exists) */
    const char *data_dir;     /* Fashion-MNIST directory */
    int         quick;        /* reduced experiments (tests, first look) */
    int         threads;
    uint64_t    seed;
    nb_dataset *train, *test; /* loaded on first use by lab_data */
} lab;

typedef struct lab_claim lab_claim;

/* What one claim writes while it runs. */
typedef struct lab_section {
    lab             *L;
    const lab_claim *claim;
    FILE            *md;          /* the claim's part of REPORT.md (a memory stream) */
    lab_verdict      verdict;
    char             why[2048];   /* the rule and how the numbers met it */
    int              nplots;
} lab_section;

struct lab_claim {
    int         number;           /* the order, 1..12 */
    const char *id;               /* short name for the command line */
    const char *title;
    const char *where;            /* the notes' sections: "§3B, §14" */
    const char *notes;            /* the notes' words, quoted exactly, one "§N 「...」" per line */
    const char *english;          /* the claim in English */
    /* NULL when always available; else 0 when the library lacks a piece
     * (why_unavailable says which). */
    int (*available)(void);
    const char *why_unavailable;
    /* 0, or -1 after a failure (nb_last_error or a printed message). */
    int (*run)(lab_section *s);
};

/* The registry, in the order. */
extern const lab_claim *const lab_claims[];
extern const int lab_nclaims;
/* A claim by number ("4") or id ("vanishing"); NULL if none. */
const lab_claim *lab_find(const char *name);
int lab_is_available(const lab_claim *c);

/* Run claims[0..n) and write L->out/REPORT.md and verdicts.csv. Prints a
 * line per claim unless quiet. Returns CLI_OK, or CLI_FAIL when a claim
 * failed or a file could not be written (the report is still written when
 * it can be). */
int lab_run(lab *L, const lab_claim *const *claims, int n, const char *cmdline, int quiet);

/* ---- helpers for the claims ------------------------------------------------ */

/* Set the verdict and its text (printf format). */
void lab_verdict_set(lab_section *s, lab_verdict v, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Fashion-MNIST, loaded once per run. 0 or -1 (message printed). */
int lab_data(lab *L, const nb_dataset **train, const nb_dataset **test);
/* The first n samples of d as a view (no copy; never free it). */
nb_dataset lab_subset(const nb_dataset *d, int64_t n);

/* Save p as L->out/"claimNN_<name>.png" and add it to the report with its
 * caption. Frees p. 0 or -1 (message printed). */
int lab_plot_save(lab_section *s, nb_plot *p, const char *name, const char *caption);
/* A new chart of the report's size with a title and axis labels (NULL on
 * error, message printed). */
nb_plot *lab_plot_new(const char *title, const char *xlabel, const char *ylabel);

/* CSV files: rows are written to a temporary file renamed at close, so a
 * file is complete or absent. The report gets a link to it. */
typedef struct lab_csv {
    FILE      *f;
    cli_atomic file;
    char       name[128];
} lab_csv;
int  lab_csv_open(lab_section *s, lab_csv *c, const char *name, const char *header);
/* One row from doubles (nan/inf spelled one way) after an optional text key
 * (NULL for none). */
void lab_csv_row(lab_csv *c, const char *key, const double *v, int n);
int  lab_csv_close(lab_section *s, lab_csv *c);

/* ---- training -------------------------------------------------------------- */

typedef struct lab_fit_opts {
    nb_optim_opts optim;
    int64_t  batch;
    int64_t  steps;             /* total steps; the loader reshuffles each epoch */
    double   clip_norm;         /* > 0: clip the gradient norm before each step */
    uint64_t seed;              /* batch order and dropout */
    int      log_every;         /* curve points: mean loss over each K steps (>= 1) */
    /* Called after backward, before the clipping and the step, when set;
     * nonzero stops the run as a failure. */
    int (*on_grad)(void *user, nb_model *m, int64_t step, double loss);
    void *user;
} lab_fit_opts;

typedef struct lab_fit_result {
    int64_t steps;              /* steps taken */
    int     diverged;           /* a non-finite loss or gradient stopped the run */
    double *curve;              /* mean training loss per interval (malloc'd) */
    int     ncurve;
    double  last_loss;          /* the last interval's mean (NAN if diverged) */
    double  seconds;
} lab_fit_result;

/* Train m on train (cross-entropy) as o says. A divergence is a result, not
 * a failure. 0, or -1 on a library error (message printed). */
int  lab_fit(nb_model *m, const nb_dataset *train, const lab_fit_opts *o, lab_fit_result *r);
void lab_fit_result_free(lab_fit_result *r);
/* Cross-entropy and accuracy of m over d (eval mode, no autograd). */
int  lab_eval(nb_model *m, const nb_dataset *d, double *loss, double *acc);

/* The L2 norms of the gradients of the 2-D weights ("N.weight" of Linear
 * layers, in the order they were created); returns how many (at most max). */
int  lab_weight_grad_norms(const nb_model *m, double *norms, int max);

/* Flatten, then Linear layers of sizes[0] -> ... -> sizes[n-1]; between
 * them ReLU when relu, then Dropout(dropout) when dropout > 0. NULL on
 * error (nb_last_error). */
nb_model *lab_mlp(const int *sizes, int n, int relu, float dropout, nb_rng *rng);
/* An optimizer's settings: torch defaults with this lr. */
nb_optim_opts lab_optim(nb_optim_kind kind, double lr);

/* The claims (one file per claim or group of claims). */
extern const lab_claim lab_claim_nonlinearity, lab_claim_activations, lab_claim_optimizers,
    lab_claim_vanishing, lab_claim_exploding, lab_claim_weight_decay, lab_claim_lstm, lab_claim_cnn,
    lab_claim_loop, lab_claim_receptive_field, lab_claim_capacity, lab_claim_batchnorm;

#endif
