/* nabla train — train a model of the zoo on Fashion-MNIST. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <string.h>

const cli_cmd cli_train_cmd = {
    "train",
    "train a model on Fashion-MNIST and report test accuracy",
    "[--model mlp|cnn] [--optim NAME] [--epochs N] [--batch B] [--lr LR] [--seed S]\n"
    "                   [--threads T] [--out FILE.safetensors] [--metrics FILE.jsonl] [options]",
    "The optimizer defaults to momentum (SGD, momentum 0.9) for mlp and adam for\n"
    "cnn; --lr defaults to the optimizer's: sgd 0.1, momentum 0.05, rmsprop 1e-3,\n"
    "adagrad 1e-2, adam 1e-3, adamw 1e-3 (torch.optim's formulas and other defaults;\n"
    "--momentum applies to sgd, momentum and rmsprop, --weight-decay to all: L2 in\n"
    "the gradient, decoupled for adamw).\n"
    "Each epoch prints train loss, test loss, test accuracy and training images per\n"
    "second (evaluation excluded).\n\n"
    "--schedule sets the learning rate of each epoch as torch.optim.lr_scheduler,\n"
    "stepped after every epoch: cosine (the default: from --lr towards 0 over the\n"
    "run), constant, step:STEP_SIZE[:GAMMA], multistep:M1,M2,...[:GAMMA], exp:GAMMA,\n"
    "linear[:START_FACTOR[:ITERS[:END_FACTOR]]], plateau[:FACTOR[:PATIENCE]] (on the\n"
    "test loss), and a linear warm-up in front of any of them but plateau:\n"
    "warmup:EPOCHS[:START_FACTOR]+cosine. Keys may be named: cosine:eta_min=1e-5.\n"
    "Clipping (--clip-grad-value, then --clip-grad-norm) acts before each step.\n\n"
    "--out is written atomically after every epoch, so\n"
    "an interrupted run keeps the last finished epoch; a NaN or infinite loss stops\n"
    "the run (exit 1) without touching --out. --metrics gets one JSON object per\n"
    "epoch: epoch, train_loss, test_loss, test_acc, img_per_s, seconds (the epoch's\n"
    "wall time: training, evaluation and saving).\n",
};

typedef struct {
    const char *model, *config, *out, *metrics, *data, *schedule, *optim;
    int epochs, threads, quiet;
    int64_t batch, limit_train;
    float lr, momentum, weight_decay; /* NaN: the optimizer's default */
    float clip_norm, clip_value;      /* 0: off */
    nb_schedule_opts sched;
    uint64_t seed;
} train_opts;

/* One epoch of training; the mean training loss goes to *mean_loss. On a
 * non-finite loss prints the error and returns CLI_FAIL. */
static int train_epoch(const train_opts *a, nb_model *m, nb_optimizer *o, nb_ctx *ctx, nb_loader *l, int epoch,
                       double *mean_loss, int64_t *images)
{
    cli_progress bar;
    cli_progress_start(&bar, epoch, a->epochs, nb_loader_num_batches(l), a->quiet);
    double loss_sum = 0;
    int64_t seen = 0, step = 0;
    nb_model_train(m, 1);
    for (;;) {
        nb_ctx_reset(ctx);
        nb_batch b;
        if (nb_loader_next(l, ctx, &b) != NB_OK) {
            cli_progress_end(&bar);
            return cli_lib_error();
        }
        if (!b.n) break;
        step++;
        nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, b.x), b.y, NULL, -100, NB_REDUCTION_MEAN);
        if (!loss) {
            cli_progress_end(&bar);
            return cli_lib_error();
        }
        float v = nb_tensor_item(loss);
        if (!isfinite(v)) {
            cli_progress_end(&bar);
            return cli_fail("training diverged: loss is %s at epoch %d, step %lld (try a smaller --lr)",
                            isnan(v) ? "NaN" : "infinite", epoch, (long long)step);
        }
        nb_model_zero_grad(m);
        if (nb_backward(ctx, loss) != NB_OK) {
            cli_progress_end(&bar);
            return cli_lib_error();
        }
        if ((a->clip_value > 0 && nb_clip_grad_value(m, a->clip_value) != NB_OK) ||
            (a->clip_norm > 0 && nb_clip_grad_norm(m, a->clip_norm, 2.0, 0, NULL) != NB_OK) ||
            nb_optim_step(o) != NB_OK) {
            cli_progress_end(&bar);
            return cli_fail("epoch %d, step %lld: %s", epoch, (long long)step, nb_last_error());
        }
        loss_sum += (double)v * (double)b.n;
        seen += b.n;
        double dt = cli_now() - bar.t0;
        cli_progress_update(&bar, step, loss_sum / (double)seen, dt > 0 ? (double)seen / dt : 0);
    }
    cli_progress_end(&bar);
    nb_ctx_reset(ctx);
    *mean_loss = seen ? loss_sum / (double)seen : 0;
    *images = seen;
    return 0;
}


static int run(const train_opts *a)
{
    int rc = CLI_FAIL;
    nb_dataset *train = NULL, *test = NULL;
    nb_ctx *ctx = NULL;
    nb_model *m = NULL;
    nb_optimizer *o = NULL;
    nb_schedule *sched = NULL;
    nb_loader *l = NULL;
    FILE *metrics = NULL;

    if (a->out && !cli_dir_writable(a->out)) return cli_fail("--out %s: the directory does not exist or is not writable", a->out);
    nb_set_threads(a->threads);
    ctx = nb_ctx_new(a->seed);
    if (!ctx) {
        cli_lib_error();
        goto done;
    }
    nb_status s = nb_model_build(a->model, a->config, nb_ctx_rng(ctx), &m);
    if (s == NB_ERR_ARG && a->config) { /* a --config the model does not accept */
        rc = cli_usage_error("train", "--config %s: %s", a->config, nb_last_error());
        goto done;
    }
    if (s != NB_OK) {
        cli_lib_error();
        goto done;
    }
    if (cli_load_fashion_mnist(a->data, 1, &train) || cli_load_fashion_mnist(a->data, 0, &test)) goto done;
    if (a->limit_train > 0) nb_dataset_truncate(train, a->limit_train);
    nb_optim_opts oo;
    cli_optim_opts(a->optim, &oo); /* the name was checked in cmd_train */
    if (!isnan(a->lr)) oo.lr = a->lr;
    if (!isnan(a->momentum)) oo.momentum = a->momentum;
    if (!isnan(a->weight_decay)) oo.weight_decay = a->weight_decay;
    o = nb_optim_new(m, &oo);
    if (o) sched = nb_schedule_new(o, &a->sched);
    if (!o || !sched || nb_loader_new(train, a->batch, 1, 0, a->seed, &l) != NB_OK) {
        cli_lib_error();
        goto done;
    }
    if (a->metrics && !(metrics = fopen(a->metrics, "w"))) {
        cli_fail("--metrics %s: %s", a->metrics, strerror(errno));
        goto done;
    }
    if (!a->quiet) {
        int64_t nparam = 0;
        for (int i = 0; i < m->nparams; i++) nparam += nb_tensor_numel(&m->params[i].t);
        printf("training %s (%s; %lld parameters) on %lld images, testing on %lld\n", m->name, m->config, (long long)nparam,
               (long long)train->n, (long long)test->n);
        printf("batch %lld, %s (%s) lr %g (%s)", (long long)a->batch, a->optim, o->name, oo.lr, a->schedule);
        if (oo.kind == NB_OPTIM_SGD || oo.kind == NB_OPTIM_RMSPROP) printf(" momentum %g", oo.momentum);
        printf(" weight decay %g, seed %llu, %d threads, gemm %s\n", oo.weight_decay, (unsigned long long)a->seed,
               nb_get_threads(), nb_gemm_isa());
        fflush(stdout);
    }

    double t_start = cli_now(), test_loss = 0, test_acc = 0;
    for (int epoch = 1; epoch <= a->epochs; epoch++) {
        if (epoch > 1) nb_loader_start_epoch(l);
        double t0 = cli_now(), train_loss = 0;
        int64_t images = 0;
        double lr = nb_optim_get_lr(o, 0);
        if (train_epoch(a, m, o, ctx, l, epoch, &train_loss, &images)) goto done;
        double train_s = cli_now() - t0;
        if (cli_evaluate(m, ctx, test, &test_loss, &test_acc) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        if (a->out) {
            /* The step refuses non-finite gradients, but check anyway: a bad
             * file must never replace a good one. */
            if (!cli_all_finite(m->data, m->numel)) {
                cli_fail("training diverged: non-finite weights after epoch %d; %s not written", epoch, a->out);
                goto done;
            }
            if (nb_model_save(m, a->out) != NB_OK) {
                cli_lib_error();
                goto done;
            }
        }
        double secs = cli_now() - t0, ips = train_s > 0 ? (double)images / train_s : 0;
        if (!a->quiet) {
            printf("epoch %d/%d  lr %.3g  train_loss %.4f  test_loss %.4f  test_acc %.4f  img/s %.0f  (%.1f s)\n",
                   epoch, a->epochs, lr, train_loss, test_loss, test_acc, ips, secs);
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
        /* the next epoch's lr; a plateau watches the test loss */
        if (nb_schedule_step_metric(sched, test_loss) != NB_OK) {
            cli_lib_error();
            goto done;
        }
    }
    if (!a->quiet) {
        printf("test_acc %.4f after %d epochs (%.1f s)", test_acc, a->epochs, cli_now() - t_start);
        if (a->out) printf("; weights in %s", a->out);
        putchar('\n');
    }
    rc = CLI_OK;
done:
    if (metrics && fclose(metrics) != 0 && rc == CLI_OK) rc = cli_fail("--metrics %s: %s", a->metrics, strerror(errno));
    nb_loader_free(l);
    nb_schedule_free(sched);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_dataset_free(train);
    nb_dataset_free(test);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_opts a = {
        .model = "mlp", .epochs = 10, .batch = 64, .lr = NAN, .momentum = NAN, .weight_decay = NAN,
        .schedule = "cosine",
    };
    cli_opt opts[] = {
        {"model", CLI_STR, &a.model, 0, 0, "NAME", "model of the zoo", 0},
        {"config", CLI_STR, &a.config, 0, 0, "CFG", "model configuration (mlp: layer sizes, default 784,256,128,100,10)", 0},
        {"epochs", CLI_INT, &a.epochs, 1, 100000, "N", "passes over the training set", 0},
        {"batch", CLI_I64, &a.batch, 1, 60000, "B", "mini-batch size", 0},
        {"optim", CLI_STR, &a.optim, 0, 0, "NAME", "optimizer: " CLI_OPTIM_NAMES " (default: momentum for mlp, adam for cnn)", 0},
        {"lr", CLI_FLOAT, &a.lr, 0, 1e30, "LR", "learning rate (default: the optimizer's)", 0},
        {"schedule", CLI_STR, &a.schedule, 0, 0, "SPEC", "learning rate per epoch (see below)", 0},
        {"momentum", CLI_FLOAT, &a.momentum, 0, 1, "M", "momentum of sgd, momentum (default 0.9) and rmsprop", 0},
        {"weight-decay", CLI_FLOAT, &a.weight_decay, 0, 1e6, "WD", "weight decay (default the optimizer's: 0, adamw 0.01)", 0},
        {"clip-grad-norm", CLI_FLOAT, &a.clip_norm, 0, 1e30, "N", "clip the gradients' global 2-norm to N, 0 = off", 0},
        {"clip-grad-value", CLI_FLOAT, &a.clip_value, 0, 1e30, "V", "clamp each gradient to [-V, V], 0 = off", 0},
        {"seed", CLI_U64, &a.seed, 0, 0, "S", "seed of the initialisation and the shuffle", 0},
        {"threads", CLI_INT, &a.threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
        {"out", CLI_STR, &a.out, 0, 0, "FILE", "save the weights (safetensors) after each epoch", 0},
        {"metrics", CLI_STR, &a.metrics, 0, 0, "FILE", "write one JSON line per epoch", 0},
        {"limit-train", CLI_I64, &a.limit_train, 0, 1e12, "N", "use only the first N training images, 0 = all", 0},
        {"data", CLI_STR, &a.data, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"quiet", CLI_FLAG, &a.quiet, 0, 0, NULL, "print nothing but errors", 0},
    };
    a.data = nb_fashion_mnist_default_dir();
    int r = cli_parse(&cli_train_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    if (!nb_model_default_config(a.model))
        return cli_usage_error("train", "unknown model '%s' (known: mlp, cnn)", a.model);
    if (nb_schedule_parse(a.schedule, a.epochs, &a.sched) != NB_OK)
        return cli_usage_error("train", "option --schedule: %s", nb_last_error());
    if (!a.optim) a.optim = strcmp(a.model, "cnn") ? "momentum" : "adam";
    nb_optim_opts probe;
    if (cli_optim_opts(a.optim, &probe))
        return cli_usage_error("train", "option --optim: unknown optimizer '%s' (known: %s)", a.optim, CLI_OPTIM_NAMES);
    return run(&a);
}
