/* nabla train — train a model of the zoo on Fashion-MNIST. */
#include "cli.h"
#include "train_dist.h"

#include <errno.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

const cli_cmd cli_train_cmd = {
    "train",
    "train a model on Fashion-MNIST and report test accuracy",
    "[--model mlp|cnn|vgg11|vgg11_bn|lstm|sequential] [--augment crop:P,flip] [--optim NAME] [--epochs N] [--batch B] [--lr LR] [--seed S]\n"
    "                   [--threads T] [--out FILE.safetensors] [--metrics FILE.jsonl] [options]",
    "The optimizer defaults to adam for cnn and lstm and to momentum (SGD, momentum\n"
    "0.9) for the others; --lr defaults to the optimizer's: sgd 0.1, momentum 0.05, rmsprop 1e-3,\n"
    "adagrad 1e-2, adam 1e-3, adamw 1e-3 (torch.optim's formulas and other defaults;\n"
    "--momentum applies to sgd, momentum and rmsprop, --weight-decay to all: L2 in\n"
    "the gradient, decoupled for adamw).\n"
    "--model sequential --config SPEC trains any nn.Sequential written as text, e.g.\n"
    "\"conv2d(1,16,3,padding=1) relu maxpool2d(2) flatten linear(3136,10)\" (see nabla\n"
    "summary --help); its input is (N, 1, 28, 28) and its output the 10 logits.\n"
    "vgg11 and vgg11_bn take Fashion-MNIST zero-padded to 32x32 by default (config\n"
    "in=1,size=28,pad_to=32,classes=10; see nabla summary vgg11 --config ...).\n"
    "--augment crop:P,flip crops each training image at a random shift of up to P\n"
    "pixels (zero-padded, torchvision RandomCrop(padding=P)) and flips half of them\n"
    "left-right; the choices follow --seed and resume exactly.\n"
    "Each epoch prints train loss, test loss, test accuracy and training images per\n"
    "second (evaluation excluded).\n\n"
    "--schedule sets the learning rate of each epoch as torch.optim.lr_scheduler,\n"
    "stepped after every epoch: cosine (the default: from --lr towards 0 over the\n"
    "run), constant, step:STEP_SIZE[:GAMMA], multistep:M1,M2,...[:GAMMA], exp:GAMMA,\n"
    "linear[:START_FACTOR[:ITERS[:END_FACTOR]]], plateau[:FACTOR[:PATIENCE]] (on the\n"
    "test loss), and a linear warm-up in front of any of them but plateau:\n"
    "warmup:EPOCHS[:START_FACTOR]+cosine. Keys may be named: cosine:eta_min=1e-5.\n"
    "Clipping (--clip-grad-value, then --clip-grad-norm) acts before each step.\n\n"
    "--out is written atomically after every epoch (and when --max-steps stops the\n"
    "run), so an interrupted run keeps the last finished epoch. --checkpoint FILE\n"
    "saves everything the run needs to go on (weights, optimizer moments and step\n"
    "count, schedule, dropout generator, data order and position, progress,\n"
    "settings) atomically after each epoch and every --checkpoint-every steps;\n"
    "--resume FILE continues it exactly (the same weights as a run that never\n"
    "stopped, with the same --threads), taking the settings from the file (--epochs\n"
    "may be raised). A NaN or infinite loss or gradient stops the run (exit 1),\n"
    "naming the step, without touching --out or --checkpoint; with --skip-nonfinite\n"
    "the update is skipped and counted instead.\n"
    "Same seed, same --threads and the same machine give bit-identical weights;\n"
    "another thread count or instruction set (see --version) changes the\n"
    "rounding of sums.\n"
    "--metrics gets one JSON object per\n"
    "epoch: epoch, train_loss, test_loss, test_acc, img_per_s, seconds (the epoch's\n"
    "wall time: training, evaluation and saving).\n\n"
    "--distributed trains on every rank of an MPI job, e.g. mpirun -np 4 nabla train\n"
    "--distributed --threads 1: each rank takes its share of every --batch images\n"
    "and the ranks average their gradients, so the steps are those of one process\n"
    "with that batch (up to rounding; BatchNorm uses each rank's share, or with\n"
    "--sync-bn the global batch, as torch.nn.SyncBatchNorm). Rank 0 prints and\n"
    "writes --out, --metrics and --checkpoint; every rank reads the data and\n"
    "--resume. A rank that fails or dies ends the whole job with exit code 1, and so\n"
    "does one that hangs: a rank that waits longer than --dist-timeout seconds for\n"
    "the others in any exchange stops the job (raise it when ranks may lag that\n"
    "long, e.g. slow hosts). --dist-bucket starts the gradient's all-reduce in\n"
    "pieces during the backward (the same result bit for bit on 2 ranks; 0 waits\n"
    "for the whole gradient; bench/bench_dist.sh compares both).\n",
};

typedef struct {
    const char *model, *config, *out, *metrics, *data, *schedule, *optim, *checkpoint, *resume, *augment;
    nb_augment aug;                   /* parsed --augment */
    int epochs, threads, quiet, skip_nonfinite;
    int64_t batch, limit_train, checkpoint_every, max_steps;
    float lr, momentum, weight_decay; /* NaN: the optimizer's default */
    float clip_norm, clip_value;      /* 0: off */
    nb_schedule_opts sched;
    uint64_t seed;
    int distributed;
    train_dist_opts dist_opts; /* --dist-timeout, --sync-bn, --dist-bucket */
    nb_dist *dist; /* the MPI job of --distributed (train_dist.c), else NULL */
} train_opts;

/* Where a run stands: what a checkpoint adds to the objects' own state. */
typedef struct {
    int     epoch;          /* the epoch in progress, from 1 */
    int64_t step;           /* optimizer steps (and skipped ones) so far */
    int64_t skipped;        /* updates skipped for a non-finite loss or gradient */
    double  loss_sum;       /* this epoch so far: sum of loss * batch size */
    int64_t seen;           /* images this epoch so far */
} progress;

/* VGG11 on Fashion-MNIST: 28x28 grey images zero-padded to 32x32 (five
 * halvings leave 1x1), 10 classes. */
#define VGG_FASHION_CONFIG "in=1,size=28,pad_to=32,classes=10"

typedef struct {
    const train_opts *a;
    nb_ctx *ctx;
    nb_model *m;
    nb_optimizer *o;
    nb_schedule *sched;
    nb_loader *l;
    progress p;
} trainer;

/* ---- checkpoints ------------------------------------------------------------
 * The library's checkpoint (model, optimizer, schedule, dropout generator,
 * loader) plus this command's settings and progress as metadata, so that
 * --resume needs nothing else. */

static int save_checkpoint(const trainer *t)
{
    const train_opts *a = t->a;
    char epoch[24], step[24], skipped[24], loss_sum[40], seen[24], batch[24], seed[24], limit[24], epochs[24],
        clip_norm[40], clip_value[40];
    snprintf(epoch, sizeof epoch, "%d", t->p.epoch);
    snprintf(step, sizeof step, "%lld", (long long)t->p.step);
    snprintf(skipped, sizeof skipped, "%lld", (long long)t->p.skipped);
    snprintf(loss_sum, sizeof loss_sum, "%a", t->p.loss_sum);
    snprintf(seen, sizeof seen, "%lld", (long long)t->p.seen);
    snprintf(batch, sizeof batch, "%lld", (long long)a->batch);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->seed);
    snprintf(limit, sizeof limit, "%lld", (long long)a->limit_train);
    snprintf(epochs, sizeof epochs, "%d", a->epochs);
    snprintf(clip_norm, sizeof clip_norm, "%a", (double)a->clip_norm);
    snprintf(clip_value, sizeof clip_value, "%a", (double)a->clip_value);
    const char *meta[] = {"train.epoch", epoch,         "train.step",    step,       "train.skipped", skipped,
                          "train.loss_sum", loss_sum,   "train.seen",    seen,       "train.optim",   a->optim,
                          "train.batch", batch,         "train.seed",    seed,       "train.limit_train", limit,
                          "train.epochs", epochs,       "train.clip_norm", clip_norm, "train.clip_value", clip_value,
                          "train.skip_nonfinite", a->skip_nonfinite ? "1" : "0",
                          "train.augment", a->augment ? a->augment : ""};
    nb_checkpoint c = {t->m, t->o, t->sched, nb_ctx_rng(t->ctx), t->l};
    if (nb_checkpoint_save(a->checkpoint, &c, meta, (int)(sizeof meta / sizeof meta[0]) / 2) != NB_OK)
        return cli_lib_error();
    return 0;
}

/* The weights into --out (atomically) after `what` number n (an epoch, or
 * the step --max-steps stopped at). The step refuses non-finite gradients,
 * but check anyway: a bad file must never replace a good one. */
static int save_weights(const trainer *t, const char *what, long long n)
{
    if (!cli_all_finite(t->m->data, t->m->numel))
        return cli_fail("training diverged: non-finite weights after %s %lld; %s not written", what, n, t->a->out);
    if (nb_model_save(t->m, t->a->out) != NB_OK) return cli_lib_error();
    return 0;
}

/* The settings of a checkpoint's run into *a (what --resume continues). */
static int resume_settings(train_opts *a, int epochs_given)
{
    nb_safetensors *f = NULL;
    if (nb_checkpoint_open_meta(a->resume, &f) != NB_OK) return cli_lib_error();
    const char *v;
    static char model[64], config[NB_MODEL_CONFIG_MAX], optim[32], schedule[1024], augment[64];
    int bad = 0;
#define META(key) ((v = nb_safetensors_meta(f, key)) ? v : (bad = 1, "0"))
    snprintf(model, sizeof model, "%s", META("model"));
    snprintf(config, sizeof config, "%s", META("config"));
    snprintf(optim, sizeof optim, "%s", META("train.optim"));
    snprintf(schedule, sizeof schedule, "%s", META("nabla.schedule"));
    a->model = model, a->config = config, a->optim = optim, a->schedule = schedule;
    a->batch = strtoll(META("train.batch"), NULL, 10);
    a->seed = strtoull(META("train.seed"), NULL, 10);
    a->limit_train = strtoll(META("train.limit_train"), NULL, 10);
    if (!epochs_given) a->epochs = (int)strtol(META("train.epochs"), NULL, 10);
    a->clip_norm = (float)strtod(META("train.clip_norm"), NULL);
    a->clip_value = (float)strtod(META("train.clip_value"), NULL);
    a->skip_nonfinite = a->skip_nonfinite || !strcmp(META("train.skip_nonfinite"), "1");
    /* checkpoints written before --augment existed have no key: none */
    snprintf(augment, sizeof augment, "%s", (v = nb_safetensors_meta(f, "train.augment")) ? v : "");
    a->augment = augment;
#undef META
    nb_optim_opts probe;
    if (bad || a->batch < 1 || a->epochs < 1 || cli_optim_opts(a->optim, &probe) ||
        nb_augment_parse(a->augment, &a->aug) != NB_OK ||
        nb_schedule_parse(a->schedule, a->epochs, &a->sched) != NB_OK) {
        nb_safetensors_free(f);
        return cli_fail("--resume %s: the checkpoint was not written by nabla train, or is damaged", a->resume);
    }
    nb_safetensors_free(f);
    return 0;
}

/* After nb_checkpoint_load: the progress saved beside it. */
static int resume_progress(trainer *t)
{
    nb_safetensors *f = NULL;
    if (nb_checkpoint_open_meta(t->a->resume, &f) != NB_OK) return cli_lib_error();
    const char *e = nb_safetensors_meta(f, "train.epoch"), *st = nb_safetensors_meta(f, "train.step"),
               *sk = nb_safetensors_meta(f, "train.skipped"), *ls = nb_safetensors_meta(f, "train.loss_sum"),
               *sn = nb_safetensors_meta(f, "train.seen");
    int ok = e && st && sk && ls && sn;
    if (ok) {
        t->p.epoch = (int)strtol(e, NULL, 10);
        t->p.step = strtoll(st, NULL, 10);
        t->p.skipped = strtoll(sk, NULL, 10);
        t->p.loss_sum = strtod(ls, NULL);
        t->p.seen = strtoll(sn, NULL, 10);
        ok = t->p.epoch >= 1 && t->p.step >= 0 && t->p.seen >= 0;
    }
    nb_safetensors_free(f);
    return ok ? 0 : cli_fail("--resume %s: the checkpoint's progress is missing or damaged", t->a->resume);
}

/* ---- training ---------------------------------------------------------------- */

enum { EPOCH_DONE = 0, EPOCH_STOPPED = -1 }; /* or CLI_FAIL */

/* The mean loss of batch b and, when it is finite, its gradient in the
 * model's buffer (a train_grad_fn of train_dist.h; arg is the trainer). */
static nb_status loss_and_grad(void *arg, const nb_batch *b, float *v)
{
    trainer *t = arg;
    nb_tensor *loss = nb_cross_entropy(t->ctx, nb_model_forward(t->m, t->ctx, b->x), b->y, NULL, -100,
                                       NB_REDUCTION_MEAN);
    if (!loss) return nb_ctx_status(t->ctx) ? nb_ctx_status(t->ctx) : NB_ERR_STATE;
    *v = nb_tensor_item(loss);
    if (!isfinite(*v)) return NB_ERR_NONFINITE;
    nb_model_zero_grad(t->m);
    return nb_backward(t->ctx, loss);
}

/* Train until the end of the epoch (from wherever the loader stands), or
 * until --max-steps. A non-finite loss or gradient fails the run, naming the
 * step, or with --skip-nonfinite skips that update. */
static int train_epoch(trainer *t, double *train_s)
{
    const train_opts *a = t->a;
    cli_progress bar;
    cli_progress_start(&bar, t->p.epoch, a->epochs, nb_loader_num_batches(t->l), a->quiet);
    int64_t done = t->p.seen ? (t->p.seen + a->batch - 1) / a->batch : 0, seen0 = t->p.seen;
    int rc = EPOCH_DONE;
    nb_model_train(t->m, 1);
    for (;;) {
        if (a->max_steps > 0 && t->p.step >= a->max_steps) {
            rc = EPOCH_STOPPED;
            break;
        }
        nb_ctx_reset(t->ctx);
        nb_batch b;
        if (nb_loader_next_augmented(t->l, &a->aug, t->ctx, &b) != NB_OK) {
            rc = cli_lib_error();
            break;
        }
        if (!b.n) break;
        t->p.step++;
        done++;
        float v = NAN;
        nb_status s = a->dist ? train_dist_grad(a->dist, t->m, t->ctx, &b, loss_and_grad, t, &v)
                              : loss_and_grad(t, &b, &v);
        if (s != NB_OK && s != NB_ERR_NONFINITE) {
            rc = cli_lib_error();
            break;
        }
        if (s == NB_OK) {
            if (a->clip_value > 0) s = nb_clip_grad_value(t->m, a->clip_value);
            if (!s && a->clip_norm > 0) s = nb_clip_grad_norm(t->m, a->clip_norm, 2.0, 0, NULL);
            if (!s) s = nb_optim_step(t->o); /* refuses non-finite gradients, changing nothing */
        }
        if (s == NB_ERR_NONFINITE && a->skip_nonfinite) {
            t->p.skipped++;
        } else if (s == NB_ERR_NONFINITE) {
            cli_progress_end(&bar);
            if (!isfinite(v))
                return cli_fail("training diverged: loss is %s at epoch %d, step %lld (try a smaller --lr, or "
                                "--skip-nonfinite)", isnan(v) ? "NaN" : "infinite", t->p.epoch, (long long)t->p.step);
            return cli_fail("training diverged: non-finite gradient at epoch %d, step %lld (try a smaller --lr, "
                            "--clip-grad-norm, or --skip-nonfinite)", t->p.epoch, (long long)t->p.step);
        } else if (s != NB_OK) {
            rc = cli_fail("epoch %d, step %lld: %s", t->p.epoch, (long long)t->p.step, nb_last_error());
            break;
        } else {
            t->p.loss_sum += (double)v * (double)b.n;
        }
        t->p.seen += b.n;
        if (a->checkpoint && a->checkpoint_every > 0 && t->p.step % a->checkpoint_every == 0 && save_checkpoint(t)) {
            rc = CLI_FAIL;
            break;
        }
        double dt = cli_now() - bar.t0;
        cli_progress_update(&bar, done, t->p.seen ? t->p.loss_sum / (double)t->p.seen : 0,
                            dt > 0 ? (double)(t->p.seen - seen0) / dt : 0);
    }
    *train_s = cli_now() - bar.t0;
    cli_progress_end(&bar);
    nb_ctx_reset(t->ctx);
    return rc;
}

/* Build the model, optimizer, schedule and loader from the settings (and
 * restore them from --resume). */
static int setup(trainer *t, const nb_dataset *train)
{
    const train_opts *a = t->a;
    if (!(t->ctx = nb_ctx_new(a->seed))) return cli_lib_error();
    nb_status s = nb_model_build(a->model, a->config, nb_ctx_rng(t->ctx), &t->m);
    if (s == NB_ERR_ARG && a->config) /* a --config the model does not accept */
        return cli_usage_error("train", "--config %s: %s", a->config, nb_last_error());
    if (s != NB_OK) return cli_lib_error();
    nb_optim_opts oo;
    cli_optim_opts(a->optim, &oo); /* the name was checked */
    if (!isnan(a->lr)) oo.lr = a->lr;
    if (!isnan(a->momentum)) oo.momentum = a->momentum;
    if (!isnan(a->weight_decay)) oo.weight_decay = a->weight_decay;
    if (!(t->o = nb_optim_new(t->m, &oo)) || !(t->sched = nb_schedule_new(t->o, &a->sched)) ||
        nb_loader_new(train, a->batch, 1, 0, a->seed, &t->l) != NB_OK)
        return cli_lib_error();
    t->p = (progress){.epoch = 1};
    if (a->resume) {
        nb_checkpoint c = {t->m, t->o, t->sched, nb_ctx_rng(t->ctx), t->l};
        if (nb_checkpoint_load(a->resume, &c) != NB_OK) return cli_lib_error();
        if (resume_progress(t)) return CLI_FAIL;
    }
    if (a->dist && train_dist_setup(a->dist, t->m, nb_ctx_rng(t->ctx))) return CLI_FAIL;
    return 0;
}

static void print_header(const trainer *t, const nb_dataset *train, const nb_dataset *test)
{
    const train_opts *a = t->a;
    int64_t nparam = 0;
    for (int i = 0; i < t->m->nparams; i++) nparam += nb_tensor_numel(&t->m->params[i].t);
    nb_optim_opts g;
    nb_optim_get_group(t->o, 0, &g);
    printf("training %s (%s; %lld parameters) on %lld images, testing on %lld\n", t->m->name, t->m->config,
           (long long)nparam, (long long)train->n, (long long)test->n);
    printf("batch %lld, %s (%s) lr %g (%s)", (long long)a->batch, a->optim, t->o->name, t->sched->base_lrs[0],
           a->schedule);
    if (g.kind == NB_OPTIM_SGD || g.kind == NB_OPTIM_RMSPROP) printf(" momentum %g", g.momentum);
    if (a->augment && *a->augment) printf(" augment %s,", a->augment);
    printf(" weight decay %g, seed %llu, %d threads, gemm %s\n", g.weight_decay, (unsigned long long)a->seed,
           nb_get_threads(), nb_gemm_isa());
    if (a->resume)
        printf("resuming from %s at epoch %d, step %lld\n", a->resume, t->p.epoch, (long long)t->p.step);
    if (a->dist) train_dist_print_header(a->dist, t->m, a->batch);
    fflush(stdout);
}

static int run(const train_opts *a)
{
    int rc = CLI_FAIL;
    nb_dataset *train = NULL, *test = NULL;
    trainer t = {.a = a};
    FILE *metrics = NULL;

    if (a->out && !cli_dir_writable(a->out)) return cli_fail("--out %s: the directory does not exist or is not writable", a->out);
    if (a->checkpoint && !cli_dir_writable(a->checkpoint))
        return cli_fail("--checkpoint %s: the directory does not exist or is not writable", a->checkpoint);
    nb_set_threads(a->threads);
    if (cli_load_fashion_mnist(a->data, 1, &train) || cli_load_fashion_mnist(a->data, 0, &test)) goto done;
    if (a->limit_train > 0) nb_dataset_truncate(train, a->limit_train);
    if ((rc = setup(&t, train)) != 0) goto done;
    rc = CLI_FAIL;
    /* a resumed run appends to its metrics */
    if (a->metrics && !(metrics = fopen(a->metrics, a->resume ? "a" : "w"))) {
        cli_fail("--metrics %s: %s", a->metrics, strerror(errno));
        goto done;
    }
    if (!a->quiet) print_header(&t, train, test);

    double t_start = cli_now(), test_loss = 0, test_acc = 0;
    for (; t.p.epoch <= a->epochs; t.p.epoch++) {
        int epoch = t.p.epoch;
        double t0 = cli_now(), train_s = 0, lr = nb_optim_get_lr(t.o, 0);
        int r = train_epoch(&t, &train_s);
        if (r == EPOCH_STOPPED) {
            if (a->checkpoint && save_checkpoint(&t)) goto done;
            if (a->out && save_weights(&t, "step", t.p.step)) goto done;
            if (!a->quiet)
                printf("stopped after step %lld (--max-steps)%s%s%s%s\n", (long long)t.p.step,
                       a->out ? "; weights in " : "", a->out ? a->out : "",
                       a->checkpoint ? "; continue with --resume " : "", a->checkpoint ? a->checkpoint : "");
            rc = CLI_OK;
            goto done;
        }
        if (r) goto done;
        double train_loss = t.p.seen ? t.p.loss_sum / (double)t.p.seen : 0;
        int64_t images = t.p.seen;
        if ((a->dist ? train_dist_evaluate(a->dist, t.m, t.ctx, test, &test_loss, &test_acc)
                     : cli_evaluate(t.m, t.ctx, test, &test_loss, &test_acc)) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        if (a->out && save_weights(&t, "epoch", epoch)) goto done;
        /* the next epoch's lr (a plateau watches the test loss) and order */
        if (nb_schedule_step_metric(t.sched, test_loss) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        nb_loader_start_epoch(t.l);
        t.p.loss_sum = 0, t.p.seen = 0;
        if (a->checkpoint) {
            t.p.epoch++; /* the checkpoint starts the next epoch */
            int bad = save_checkpoint(&t);
            t.p.epoch--;
            if (bad) goto done;
        }
        double secs = cli_now() - t0, ips = train_s > 0 ? (double)images / train_s : 0;
        if (!a->quiet) {
            printf("epoch %d/%d  lr %.3g  train_loss %.4f  test_loss %.4f  test_acc %.4f  img/s %.0f  (%.1f s)",
                   epoch, a->epochs, lr, train_loss, test_loss, test_acc, ips, secs);
            if (t.p.skipped) printf("  skipped %lld", (long long)t.p.skipped);
            putchar('\n');
            fflush(stdout);
        }
        if (metrics) {
            fprintf(metrics,
                    "{\"epoch\": %d, \"train_loss\": %.6f, \"test_loss\": %.6f, \"test_acc\": %.4f, "
                    "\"img_per_s\": %.1f, \"seconds\": %.3f}\n",
                    epoch, train_loss, test_loss, test_acc, ips, secs);
            if (fflush(metrics) != 0) {
                cli_fail("--metrics %s: %s", a->metrics, strerror(errno));
                goto done;
            }
        }
    }
    if (!a->quiet) {
        printf("test_acc %.4f after %d epochs (%.1f s)", test_acc, a->epochs, cli_now() - t_start);
        if (a->out) printf("; weights in %s", a->out);
        putchar('\n');
        if (a->dist) train_dist_print_traffic(a->dist);
    }
    rc = CLI_OK;
done:
    if (metrics && fclose(metrics) != 0 && rc == CLI_OK) rc = cli_fail("--metrics %s: %s", a->metrics, strerror(errno));
    nb_loader_free(t.l);
    nb_schedule_free(t.sched);
    nb_optim_free(t.o);
    nb_model_free(t.m);
    nb_ctx_free(t.ctx);
    nb_dataset_free(train);
    nb_dataset_free(test);
    return rc;
}

/* --distributed: every rank of the MPI job runs the training; rank 0 alone
 * prints and writes files. The ranks leave the job together. */
static int run_ranks(train_opts *a)
{
    if (!a->distributed) return run(a);
    int rc = train_dist_start(&a->dist, &a->dist_opts);
    if (rc) return rc;
    if (nb_dist_rank(a->dist) != 0) a->quiet = 1, a->out = a->metrics = a->checkpoint = NULL;
    return train_dist_finish(a->dist, run(a));
}

/* Was option --name on the command line? */
int cmd_train(int argc, char **argv)
{
    train_opts a = {
        .model = "mlp", .epochs = 10, .batch = 64, .lr = NAN, .momentum = NAN, .weight_decay = NAN,
        .schedule = "cosine", .dist_opts = {.timeout_s = 300, .bucket_kib = 64},
    };
    cli_opt opts[] = {
        {"model", CLI_STR, &a.model, 0, 0, "NAME", "model of the zoo: mlp, cnn, vgg11, vgg11_bn, lstm or sequential", 0},
        {"config", CLI_STR, &a.config, 0, 0, "CFG", "model configuration (mlp: layer sizes, default 784,256,128,100,10; vgg11: key=value pairs, see include/nabla/nn.h)", 0},
        {"augment", CLI_STR, &a.augment, 0, 0, "SPEC", "augment the training images: crop:PADDING, flip or both (crop:4,flip)", 0},
        {"epochs", CLI_INT, &a.epochs, 1, 100000, "N", "passes over the training set", 0},
        {"batch", CLI_I64, &a.batch, 1, 60000, "B", "mini-batch size", 0},
        {"optim", CLI_STR, &a.optim, 0, 0, "NAME", "optimizer: " CLI_OPTIM_NAMES " (default: adam for cnn and lstm, else momentum)", 0},
        {"lr", CLI_FLOAT, &a.lr, 0, 1e30, "LR", "learning rate (default: the optimizer's)", 0},
        {"schedule", CLI_STR, &a.schedule, 0, 0, "SPEC", "learning rate per epoch (see below)", 0},
        {"momentum", CLI_FLOAT, &a.momentum, 0, 1, "M", "momentum of sgd, momentum (default 0.9) and rmsprop", 0},
        {"weight-decay", CLI_FLOAT, &a.weight_decay, 0, 1e6, "WD", "weight decay (default the optimizer's: 0, adamw 0.01)", 0},
        {"clip-grad-norm", CLI_FLOAT, &a.clip_norm, 0, 1e30, "N", "clip the gradients' global 2-norm to N, 0 = off", 0},
        {"clip-grad-value", CLI_FLOAT, &a.clip_value, 0, 1e30, "V", "clamp each gradient to [-V, V], 0 = off", 0},
        {"skip-nonfinite", CLI_FLAG, &a.skip_nonfinite, 0, 0, NULL, "skip updates with a non-finite loss or gradient (counted) instead of stopping", 0},
        {"seed", CLI_U64, &a.seed, 0, 0, "S", "seed of the initialisation, the shuffle and dropout", 0},
        {"threads", CLI_INT, &a.threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
        {"out", CLI_STR, &a.out, 0, 0, "FILE", "save the weights (safetensors) after each epoch and at --max-steps", 0},
        {"metrics", CLI_STR, &a.metrics, 0, 0, "FILE", "write one JSON line per epoch", 0},
        {"checkpoint", CLI_STR, &a.checkpoint, 0, 0, "FILE", "save a checkpoint after each epoch (and see --checkpoint-every)", 0},
        {"checkpoint-every", CLI_I64, &a.checkpoint_every, 0, 1e12, "N", "also save it every N steps, 0 = only after epochs", 0},
        {"resume", CLI_STR, &a.resume, 0, 0, "FILE", "continue the run saved in a checkpoint", 0},
        {"max-steps", CLI_I64, &a.max_steps, 0, 1e12, "N", "stop after N steps in all (saving the checkpoint and --out), 0 = no limit", 0},
        {"limit-train", CLI_I64, &a.limit_train, 0, 1e12, "N", "use only the first N training images, 0 = all", 0},
        {"data", CLI_STR, &a.data, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"quiet", CLI_FLAG, &a.quiet, 0, 0, NULL, "print nothing but errors", 0},
        {"distributed", CLI_FLAG, &a.distributed, 0, 0, NULL, "train on every rank of an mpirun job (see below)", 0},
        {"dist-timeout", CLI_FLOAT, &a.dist_opts.timeout_s, 0.001, 1e9, "SEC", "--distributed: stop the job when a rank waits longer for the others", 0},
        {"sync-bn", CLI_FLAG, &a.dist_opts.sync_bn, 0, 0, NULL, "--distributed: BatchNorm statistics over the global batch", 0},
        {"dist-bucket", CLI_FLOAT, &a.dist_opts.bucket_kib, 0, 4194304, "KIB", "--distributed: all-reduce the gradient in buckets of KIB during the backward, 0 = after it", 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]);
    a.data = nb_fashion_mnist_default_dir();
    int r = cli_parse(&cli_train_cmd, opts, n, argc, argv);
    if (r >= 0) return r;
    if (a.checkpoint_every && !a.checkpoint)
        return cli_usage_error("train", "--checkpoint-every needs --checkpoint FILE");
    if (a.resume) {
        static const char *const fixed[] = {"model", "config", "batch", "optim", "lr", "schedule", "momentum",
                                            "weight-decay", "clip-grad-norm", "clip-grad-value", "seed", "limit-train",
                                            "augment"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (cli_given(opts, n, fixed[i]))
                return cli_usage_error("train", "--%s cannot be combined with --resume: the checkpoint holds the run's settings",
                                       fixed[i]);
        return resume_settings(&a, cli_given(opts, n, "epochs")) ? CLI_FAIL : run_ranks(&a);
    }
    if (!strcmp(a.model, "charlm"))
        return cli_usage_error("train", "the character model charlm trains on text: use nabla textgen train");
    if (!nb_model_default_config(a.model))
        return cli_usage_error("train", "unknown model '%s' (known: mlp, cnn, vgg11, vgg11_bn, lstm)", a.model);
    if (nb_augment_parse(a.augment, &a.aug) != NB_OK)
        return cli_usage_error("train", "option --augment: %s", nb_last_error());
    if (!a.config && !strncmp(a.model, "vgg11", 5)) a.config = VGG_FASHION_CONFIG;
    if (nb_schedule_parse(a.schedule, a.epochs, &a.sched) != NB_OK)
        return cli_usage_error("train", "option --schedule: %s", nb_last_error());
    if (!a.optim) a.optim = !strcmp(a.model, "cnn") || !strcmp(a.model, "lstm") ? "adam" : "momentum";
    nb_optim_opts probe;
    if (cli_optim_opts(a.optim, &probe))
        return cli_usage_error("train", "option --optim: unknown optimizer '%s' (known: %s)", a.optim, CLI_OPTIM_NAMES);
    return run_ranks(&a);
}
