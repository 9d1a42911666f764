/* nabla textgen — a character-level language model on UTF-8 text: train it
 * on a corpus (bits per character on held-out text), sample from it. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const cli_cmd cli_textgen_cmd = {
    "textgen",
    "character-level LSTM language model on UTF-8 text: train, sample",
    "train --corpus FILE [options] | sample --weights W [options]",
    "Tokens are Unicode code points, so each Chinese character is one token.\n"
    "Corpora from Debian: fortunes-zh installs /usr/share/games/fortunes/tang300\n"
    "(300 Tang poems), song100 and chinese; fortunes installs English ones beside\n"
    "them. fortune files are detected by their '%' separator lines, which become\n"
    "blank lines, and their colour escapes are removed.\n"
    "Run 'nabla textgen train --help' or 'nabla textgen sample --help' for the options.\n\n"
    "example:\n"
    "  nabla textgen train --corpus /usr/share/games/fortunes/tang300 --epochs 20 --out tang.safetensors\n"
    "  nabla textgen sample --weights tang.safetensors --prime 春 --temperature 0.8 --length 60\n",
};

static const cli_cmd train_cmd = {
    "textgen train",
    "train a character-level language model and report validation bits per character",
    "--corpus FILE [--epochs N] [--hidden H] [--layers L] [--embed E] [--seq S]\n"
    "                     [--batch B] [--lr LR] [--seed S] [--threads T] [--out W.safetensors]",
    "The model is the zoo's \"charlm\" (Embedding, LSTM, Linear; nabla/seq.h) with\n"
    "config V,E,H,L,CELL, V the corpus's vocabulary. The last --valid part of the\n"
    "text is held out. An epoch is as many batches of --batch random windows of\n"
    "--seq characters as cover the training part once; Adam with gradient-norm\n"
    "clipping. Each epoch prints the training and validation bits per character\n"
    "(-log2 p of the next character; validation in consecutive windows from a zero\n"
    "state) and saves --out (weights and vocabulary) atomically. A short sample\n"
    "closes the run.\n",
};

static const cli_cmd sample_cmd = {
    "textgen sample",
    "write text sampled from a model trained by nabla textgen train",
    "--weights W.safetensors [--prime TEXT] [--temperature T] [--length N] [--seed S]",
    "Feeds --prime (every character must be in the model's vocabulary), then draws\n"
    "--length characters one by one from softmax(logits / T): low temperatures\n"
    "pick likely characters, high ones vary more. Prints the prime and the sample.\n",
};

typedef struct {
    const char *corpus, *out, *cell, *fortune, *prime;
    int epochs, hidden, layers, embed, seq, batch, threads, sample_length;
    float lr, clip, valid, temperature;
    uint64_t seed;
} train_args;

/* Text -> ids of the vocabulary; CLI_FAIL naming a character it lacks. */
static int encode(const char *text, const uint32_t *vocab, int nvocab, int32_t **ids, int *n)
{
    uint32_t *cps = NULL;
    int64_t count = 0;
    if (nb_utf8_decode(text, strlen(text), &cps, &count) != NB_OK) return cli_fail("--prime: %s", nb_last_error());
    if (count < 1 || count > 1 << 20) {
        free(cps);
        return cli_fail("--prime must hold 1 to 2^20 characters");
    }
    nb_corpus c = {.vocab = (uint32_t *)vocab, .nvocab = nvocab};
    *ids = malloc(sizeof **ids * (size_t)count);
    for (int64_t k = 0; k < count && *ids; k++) {
        (*ids)[k] = nb_corpus_id(&c, cps[k]);
        if ((*ids)[k] < 0) {
            char ch[5] = {0};
            unsigned cp = cps[k];
            nb_utf8_encode(cp, ch);
            free(cps);
            free(*ids);
            *ids = NULL;
            return cli_fail("--prime: '%s' (U+%04X) is not in the model's vocabulary", ch, cp);
        }
    }
    free(cps);
    if (!*ids) return cli_fail("out of memory");
    *n = (int)count;
    return 0;
}

/* Print ids as UTF-8. */
static void put_text(const int32_t *ids, int n, const uint32_t *vocab)
{
    char buf[4];
    for (int k = 0; k < n; k++) fwrite(buf, 1, (size_t)nb_utf8_encode(vocab[ids[k]], buf), stdout);
}

/* Sample `length` characters after prime and print both. */
static int sample_and_print(nb_model *m, nb_ctx *ctx, uint64_t seed, const int32_t *prime, int n_prime, int length,
                            float temperature, const uint32_t *vocab)
{
    int32_t *out = malloc(sizeof *out * (size_t)(length ? length : 1));
    if (!out) return cli_fail("out of memory");
    nb_rng rng;
    nb_rng_seed(&rng, seed);
    int rc = CLI_OK;
    if (nb_charlm_sample(m, ctx, &rng, prime, n_prime, length, temperature, out) != NB_OK) {
        rc = cli_lib_error();
    } else {
        put_text(prime, n_prime, vocab);
        put_text(out, length, vocab);
        putchar('\n');
    }
    free(out);
    return rc;
}

/* One epoch of Adam steps on random windows; the mean training loss in bits. */
static int train_epoch(nb_model *m, nb_ctx *ctx, nb_optimizer *o, nb_rng *rng, const nb_corpus *c,
                       const train_args *a, int32_t *y, double *bits)
{
    int64_t steps = c->ntrain / ((int64_t)a->batch * a->seq);
    if (steps < 1) steps = 1;
    double sum = 0;
    nb_model_train(m, 1);
    for (int64_t s = 0; s < steps; s++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = NULL;
        if (nb_text_batch(ctx, rng, c->ids, c->ntrain, a->batch, a->seq, &x, y) != NB_OK) return cli_lib_error();
        nb_tensor *logits = nb_seq_forward(m, ctx, x, NULL);
        nb_tensor *loss = nb_cross_entropy(ctx, nb_reshape(ctx, logits, 2, (int64_t[]){-1, c->nvocab}), y, NULL, -100,
                                           NB_REDUCTION_MEAN);
        if (!loss) return cli_lib_error();
        float v = nb_tensor_item(loss);
        if (!isfinite(v)) return cli_fail("training diverged: the loss is not finite (try a smaller --lr)");
        nb_model_zero_grad(m);
        if (nb_backward(ctx, loss) != NB_OK || (a->clip > 0 && nb_clip_grad_norm(m, a->clip, 2.0, 0, NULL) != NB_OK) ||
            nb_optim_step(o) != NB_OK)
            return cli_lib_error();
        sum += v;
    }
    nb_ctx_reset(ctx);
    *bits = sum / (double)steps / log(2.0);
    return 0;
}

static int train(const train_args *a)
{
    nb_corpus_opts co = {a->valid, !strcmp(a->fortune, "yes") ? 1 : !strcmp(a->fortune, "no") ? 0 : -1};
    nb_corpus *c = NULL;
    if (nb_corpus_load(a->corpus, &co, &c) != NB_OK) return cli_lib_error();
    if (c->ntrain < (int64_t)a->seq + 1 || c->n - c->ntrain < 2) {
        nb_corpus_free(c);
        return cli_fail("%s: %lld characters are too few for windows of %d (lower --seq)", a->corpus, (long long)c->n,
                        a->seq);
    }
    nb_set_threads(a->threads);
    char config[128];
    snprintf(config, sizeof config, "%d,%d,%d,%d,%s", c->nvocab, a->embed, a->hidden, a->layers, a->cell);
    nb_ctx *ctx = nb_ctx_new(a->seed);
    nb_model *m = NULL;
    nb_optimizer *o = NULL;
    int32_t *y = malloc(sizeof *y * (size_t)a->batch * (size_t)a->seq);
    int rc = CLI_FAIL;
    nb_optim_opts adam = nb_optim_defaults(NB_OPTIM_ADAM);
    adam.lr = a->lr;
    if (!ctx || !y || nb_model_build("charlm", config, nb_ctx_rng(ctx), &m) != NB_OK || !(o = nb_optim_new(m, &adam))) {
        cli_lib_error();
        goto done;
    }
    int64_t nparam = 0;
    for (int i = 0; i < m->nparams; i++) nparam += nb_tensor_numel(&m->params[i].t);
    printf("corpus %s: %lld characters, vocabulary %d, training on %lld, validating on %lld\n", a->corpus,
           (long long)c->n, c->nvocab, (long long)c->ntrain, (long long)(c->n - c->ntrain));
    printf("charlm %s (%lld parameters), seq %d, batch %d, Adam lr %g, clip %g, seed %llu, %d threads\n", config,
           (long long)nparam, a->seq, a->batch, (double)a->lr, (double)a->clip, (unsigned long long)a->seed,
           nb_get_threads());
    fflush(stdout);
    nb_rng data;
    nb_rng_seed(&data, a->seed + 1);
    double t0 = cli_now(), bpc = 0;
    for (int e = 1; e <= a->epochs; e++) {
        double te = cli_now(), train_bits = 0;
        if (train_epoch(m, ctx, o, &data, c, a, y, &train_bits)) goto done;
        if (nb_charlm_bits_per_char(m, ctx, c->ids + c->ntrain, c->n - c->ntrain, a->seq, a->batch, &bpc) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        if (a->out && nb_charlm_save(m, c->vocab, c->nvocab, a->out) != NB_OK) {
            cli_lib_error();
            goto done;
        }
        printf("epoch %d/%d  train_bpc %.3f  valid_bpc %.3f  (%.1f s)\n", e, a->epochs, train_bits, bpc,
               cli_now() - te);
        fflush(stdout);
    }
    printf("valid_bpc %.3f after %d epochs (%.1f s)%s%s\n", bpc, a->epochs, cli_now() - t0,
           a->out ? "; weights in " : "", a->out ? a->out : "");
    int32_t *prime = NULL;
    int n_prime = 1;
    if (a->prime) {
        if (encode(a->prime, c->vocab, c->nvocab, &prime, &n_prime)) goto done;
    } else if ((prime = malloc(sizeof *prime))) {
        prime[0] = c->ids[c->ntrain];
    }
    printf("sample: ");
    rc = prime ? sample_and_print(m, ctx, a->seed, prime, n_prime, a->sample_length, a->temperature, c->vocab)
               : cli_fail("out of memory");
    free(prime);
done:
    free(y);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_corpus_free(c);
    return rc;
}

static int cmd_train_text(int argc, char **argv)
{
    train_args a = {.fortune = "auto", .cell = "lstm", .epochs = 10, .hidden = 256, .layers = 2, .embed = 64,
                    .seq = 64, .batch = 32, .lr = 2e-3f, .clip = 5, .valid = 0.1f, .temperature = 0.8f,
                    .sample_length = 100};
    cli_opt opts[] = {
        {"corpus", CLI_STR, &a.corpus, 0, 0, "FILE", "UTF-8 text (e.g. /usr/share/games/fortunes/tang300)", 0},
        {"epochs", CLI_INT, &a.epochs, 1, 100000, "N", "passes over the training text", 0},
        {"hidden", CLI_INT, &a.hidden, 1, 1 << 14, "H", "LSTM hidden size", 0},
        {"layers", CLI_INT, &a.layers, 1, 16, "L", "LSTM layers", 0},
        {"embed", CLI_INT, &a.embed, 1, 1 << 14, "E", "embedding size", 0},
        {"cell", CLI_STR, &a.cell, 0, 0, "CELL", "rnn, relu, lstm or gru", 0},
        {"seq", CLI_INT, &a.seq, 1, 1 << 16, "S", "characters per training window (backpropagation through time)", 0},
        {"batch", CLI_INT, &a.batch, 1, 1 << 16, "B", "windows per step", 0},
        {"lr", CLI_FLOAT, &a.lr, 1e-12, 10, "LR", "Adam's learning rate", 0},
        {"clip", CLI_FLOAT, &a.clip, 0, 1e30, "N", "clip the gradients' 2-norm to N, 0 = off", 0},
        {"valid", CLI_FLOAT, &a.valid, 0.001, 0.5, "F", "fraction of the text held out for validation", 0},
        {"fortune", CLI_STR, &a.fortune, 0, 0, "auto|yes|no", "strip fortune(6) separators and colours", 0},
        {"seed", CLI_U64, &a.seed, 0, 0, "S", "seed of the weights, the windows and the sample", 0},
        {"threads", CLI_INT, &a.threads, 0, 4096, "T", "kernel threads, 0 = all cores", 0},
        {"out", CLI_STR, &a.out, 0, 0, "FILE", "save weights and vocabulary after each epoch", 0},
        {"prime", CLI_STR, &a.prime, 0, 0, "TEXT", "start of the closing sample (default: the first held-out character)", 0},
        {"length", CLI_INT, &a.sample_length, 0, 1 << 20, "N", "characters in the closing sample", 0},
        {"temperature", CLI_FLOAT, &a.temperature, 1e-6, 1e6, "T", "sampling temperature", 0},
    };
    int r = cli_parse(&train_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    if (!a.corpus) return cli_usage_error("textgen train", "--corpus FILE is required");
    if (nb_rnn_mode_from_name(a.cell) < 0) return cli_usage_error("textgen train", "option --cell: unknown cell '%s'", a.cell);
    if (strcmp(a.fortune, "auto") && strcmp(a.fortune, "yes") && strcmp(a.fortune, "no"))
        return cli_usage_error("textgen train", "option --fortune: '%s' is not auto, yes or no", a.fortune);
    if (a.out && !cli_dir_writable(a.out)) return cli_fail("--out %s: the directory does not exist or is not writable", a.out);
    return train(&a);
}

static int cmd_sample(int argc, char **argv)
{
    const char *weights = NULL, *prime_text = "春";
    int length = 200;
    float temperature = 0.8f;
    uint64_t seed = 0;
    cli_opt opts[] = {
        {"weights", CLI_STR, &weights, 0, 0, "FILE", "a model saved by nabla textgen train", 0},
        {"prime", CLI_STR, &prime_text, 0, 0, "TEXT", "the text to continue (UTF-8)", 0},
        {"temperature", CLI_FLOAT, &temperature, 1e-6, 1e6, "T", "sampling temperature", 0},
        {"length", CLI_INT, &length, 0, 1 << 20, "N", "characters to draw", 0},
        {"seed", CLI_U64, &seed, 0, 0, "S", "seed of the draws", 0},
    };
    int r = cli_parse(&sample_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r >= 0) return r;
    if (!weights) return cli_usage_error("textgen sample", "--weights FILE is required");
    nb_model *m = NULL;
    uint32_t *vocab = NULL;
    int nvocab = 0, n_prime = 0;
    if (nb_charlm_load(weights, &m, &vocab, &nvocab) != NB_OK) return cli_lib_error();
    int32_t *prime = NULL;
    nb_ctx *ctx = nb_ctx_new(seed);
    int rc = !ctx ? cli_lib_error() : encode(prime_text, vocab, nvocab, &prime, &n_prime);
    if (!rc) rc = sample_and_print(m, ctx, seed, prime, n_prime, length, temperature, vocab);
    free(prime);
    nb_ctx_free(ctx);
    free(vocab);
    nb_model_free(m);
    return rc;
}

int cmd_textgen(int argc, char **argv)
{
    if (argc < 2) {
        cli_print_help(stderr, &cli_textgen_cmd, NULL, 0);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        cli_print_help(stdout, &cli_textgen_cmd, NULL, 0);
        return CLI_OK;
    }
    if (!strcmp(sub, "train")) return cmd_train_text(argc - 1, argv + 1);
    if (!strcmp(sub, "sample")) return cmd_sample(argc - 1, argv + 1);
    return cli_usage_error("textgen", "unknown subcommand '%s' (train or sample)", sub);
}
