/* train_dist.h — the --distributed side of `nabla train` (tools/train_dist.c):
 * every rank of an mpirun job trains the same model on its share of each
 * global batch and the ranks average their gradients (nabla/dist.h). The
 * command (tools/train.c) calls these at a few points; everything that talks
 * to the other ranks is here. */
#ifndef NABLA_TRAIN_DIST_H
#define NABLA_TRAIN_DIST_H

#include "cli.h"

/* The --distributed settings of nabla train. */
typedef struct train_dist_opts {
    float timeout_s;      /* --dist-timeout: the limit of every collective */
    int   sync_bn;        /* --sync-bn: BatchNorm over the global batch */
    float bucket_kib;     /* --dist-bucket: overlapped all-reduce buckets, 0 = one after the backward */
} train_dist_opts;

/* Join the job (MPI_Init) with these settings. Prints the problem; 0 or
 * CLI_FAIL. */
int  train_dist_start(nb_dist **d, const train_dist_opts *o);
/* Leave the job with this rank's exit code; returns the job's (the worst
 * of all ranks'). A rank whose peers do not arrive within a bounded time
 * (they wait for it elsewhere, or died) aborts the whole job instead. */
int  train_dist_finish(nb_dist *d, int rc);
/* After the model is built (or resumed): every rank takes rank 0's weights.
 * 0 or CLI_FAIL. */
int  train_dist_setup(nb_dist *d, nb_model *m, nb_rng *rng);

/* The loss and gradient of one batch on one process: *loss its mean loss;
 * NB_ERR_NONFINITE (with *loss set) when the loss is not finite, and then no
 * gradient is needed. */
typedef nb_status (*train_grad_fn)(void *arg, const nb_batch *b, float *loss);

/* One step's gradient over the ranks: this rank takes its share of the
 * global batch b (the same batch on every rank), runs fn on it and the ranks
 * average their gradients, weighted by their shares, into m->grad, so every
 * rank ends with the gradient of the mean loss over b. *loss is that mean
 * loss. NB_ERR_NONFINITE on every rank when any rank's loss is not finite
 * (no gradient then); another rank's failure is NB_ERR_STATE on all; a rank
 * that does not answer is NB_ERR_TIMEOUT (the job must then be aborted,
 * which train_dist_finish does).
 * With more than one rank, each step's random draws (dropout) come from a
 * generator seeded from ctx's and the rank, and ctx's advances by one draw
 * on every rank: the ranks' masks differ, ctx's generator stays the same on
 * all, and rank 0's checkpoint resumes every rank exactly. */
nb_status train_dist_grad(nb_dist *d, nb_model *m, nb_ctx *ctx, const nb_batch *b, train_grad_fn fn, void *arg,
                          float *loss);
/* cli_evaluate over the ranks: each evaluates its share of data and the
 * sums are added. First checks that the ranks' weights are still equal, and
 * gives every rank rank 0's BatchNorm running statistics (as PyTorch's
 * DistributedDataParallel does at every step). */
nb_status train_dist_evaluate(nb_dist *d, nb_model *m, nb_ctx *ctx, const nb_dataset *data, double *loss,
                              double *acc);
/* Rank 0's lines: the job's shape, and at the end the traffic. */
void train_dist_print_header(const nb_dist *d, const nb_model *m, int64_t batch);
void train_dist_print_traffic(const nb_dist *d);

#endif
