/* Recurrent tasks (nabla/seq.h) in short forms: the sequence classifier of
 * the zoo, the adding problem, UTF-8 corpora and the character language
 * model, and the CLI commands adding and textgen. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>

static int write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(text, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* ---- the sequence classifier ------------------------------------------------------ */

TEST(seq_lstm_model_names_and_shapes)
{
    nb_rng rng;
    nb_rng_seed(&rng, 1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("lstm", NULL, &rng, &m));
    CHECK(!strcmp(m->config, "28,28,128,10,lstm"));
    /* torch: SeqClassifier with rnn = nn.LSTM(28, 128, batch_first=True), fc = nn.Linear(128, 10) */
    static const char *const names[] = {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                                        "fc.weight", "fc.bias"};
    static const int64_t rows[] = {512, 512, 512, 512, 10, 10};
    for (int k = 0; k < 6; k++) {
        int i = nb_model_find_param(m, names[k]);
        CHECK_MSG(i >= 0, "no parameter %s", names[k]);
        CHECK(m->params[i].t.shape[0] == rows[k]);
    }
    nb_ctx *ctx = nb_ctx_new(0);
    nb_tensor *x = nb_tensor_rand(ctx, NB_SHAPE(3, 1, 28, 28));
    nb_tensor *y = nb_model_forward(m, ctx, x);
    CHECK(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 10);
    /* the same through nb_seq_forward with the states exposed */
    nb_rnn_state st = {0};
    nb_tensor *y2 = nb_seq_forward(m, ctx, x, &st);
    CHECK(y2 && st.hn && st.cn && st.hn->shape[0] == 1 && st.hn->shape[1] == 3 && st.hn->shape[2] == 128);
    for (int k = 0; k < 30; k++) CHECK_NEAR(y2->data[k], y->data[k], 1e-6, 1e-6);
    nb_ctx_free(ctx);
    nb_model_free(m);
}

TEST(seq_lstm_model_configs)
{
    nb_rng rng;
    nb_rng_seed(&rng, 1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("lstm", "10,2,8,1,gru", &rng, &m));
    CHECK(m->params[nb_model_find_param(m, "rnn.weight_ih_l0")].t.shape[0] == 24);
    nb_model_free(m);
    CHECK_ERR(nb_model_build("lstm", "28,28,128,10,cnn", &rng, &m), NB_ERR_ARG, "unknown cell 'cnn'");
    CHECK_ERR(nb_model_build("lstm", "28,28,10,lstm", &rng, &m), NB_ERR_ARG, "must be like 28,28,128,10,lstm");
    CHECK_ERR(nb_model_build("lstm", "28,0,128,10,lstm", &rng, &m), NB_ERR_ARG, "lstm: config");
    CHECK_ERR(nb_model_build("charlm", "5,4,8,1", &rng, &m), NB_ERR_ARG, "charlm: config");
    CHECK(m == NULL);
}

/* ---- the adding problem --------------------------------------------------------------- */

TEST(seq_adding_batch)
{
    nb_rng rng;
    nb_rng_seed(&rng, 3);
    enum { T = 9, N = 50 };
    float x[N * T * 2], y[N];
    nb_adding_batch(&rng, T, N, x, y);
    for (int b = 0; b < N; b++) {
        int marks = 0, first = -1, second = -1;
        float sum = 0;
        for (int t = 0; t < T; t++) {
            float u = x[(b * T + t) * 2], m = x[(b * T + t) * 2 + 1];
            CHECK(u >= 0 && u < 1 && (m == 0 || m == 1));
            if (m == 1) {
                marks++;
                sum += u;
                if (first < 0) first = t;
                else second = t;
            }
        }
        CHECK(marks == 2 && first < T / 2 && second >= T / 2);
        CHECK_NEAR(y[b], sum, 0, 1e-6);
    }
}

TEST(seq_adding_lstm_learns_rnn_gradient_vanishes)
{
    nb_adding_opts o = nb_adding_defaults();
    o.T = 10, o.hidden = 16, o.batch = 32, o.steps = 300, o.lr = 0.01;
    nb_adding_result r;
    CHECK_OK(nb_adding_run(&o, &r));
    /* predicting 1 cannot go below 1/6; a model that learned the sum can */
    CHECK_MSG(r.mse_final < 0.05 && r.mse_init > NB_ADDING_BASELINE_MSE, "lstm: MSE %g -> %g", r.mse_init, r.mse_final);
    for (int t = 0; t < o.T; t++) CHECK(isfinite(r.grad_init[t]) && r.grad_init[t] > 0 && r.grad_final[t] > 0);
    nb_adding_result_free(&r);

    /* an untrained tanh RNN over 40 steps: the gradient at the first step is
     * orders of magnitude below the last one's */
    o.mode = NB_RNN_TANH, o.T = 40, o.steps = 0;
    CHECK_OK(nb_adding_run(&o, &r));
    CHECK_MSG(r.grad_init[0] < 1e-3 * r.grad_init[39], "rnn: %g at t=0, %g at t=39", r.grad_init[0], r.grad_init[39]);
    CHECK(r.mse_final == r.mse_init);
    nb_adding_result_free(&r);

    o.T = 1;
    CHECK_ERR(nb_adding_run(&o, &r), NB_ERR_ARG, "T must be");
}

/* ---- UTF-8 and corpora ---------------------------------------------------------------- */

TEST(seq_utf8_decode_encode)
{
    uint32_t *cp = NULL;
    int64_t n = 0;
    const char *s = "a\xc3\xa9\xe6\x98\xa5\xf0\x9f\x98\x80"; /* a é 春 😀 */
    CHECK_OK(nb_utf8_decode(s, strlen(s), &cp, &n));
    CHECK(n == 4 && cp[0] == 'a' && cp[1] == 0xE9 && cp[2] == 0x6625 && cp[3] == 0x1F600);
    char buf[16];
    size_t len = 0;
    for (int k = 0; k < 4; k++) len += (size_t)nb_utf8_encode(cp[k], buf + len);
    CHECK(len == strlen(s) && !memcmp(buf, s, len));
    free(cp);
    static const struct { const char *bytes, *why; } bad[] = {
        {"ab\xff", "byte 2 (0xff): invalid lead byte"},
        {"\x80", "unexpected continuation byte"},
        {"\xc0\xaf", "overlong"},
        {"\xed\xa0\x80", "surrogate"},
        {"\xf4\x90\x80\x80", "above U+10FFFF"},
        {"\xe6\x98", "truncated"},
        {"\xe6\x98" "a", "truncated"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        CHECK_ERR(nb_utf8_decode(bad[k].bytes, strlen(bad[k].bytes), &cp, &n), NB_ERR_FORMAT, bad[k].why);
    CHECK_ERR(nb_utf8_decode("a\0b", 3, &cp, &n), NB_ERR_FORMAT, "NUL");
    CHECK(cp == NULL);
}

TEST(seq_corpus_fortune_and_split)
{
    /* fortunes-zh's layout: coloured title lines, '%' between entries */
    const char *text = "\x1b[32m《春晓》\x1b[m\n春眠不觉晓\n%\n\x1b[33m作者\x1b[m\n处处闻啼鸟\n%\n";
    nb_corpus_opts o = {0.25, -1};
    nb_corpus *c = NULL;
    CHECK_OK(nb_corpus_from_text(text, strlen(text), &o, &c));
    CHECK(nb_corpus_id(c, '%') < 0 && nb_corpus_id(c, 0x1b) < 0 && nb_corpus_id(c, '[') < 0);
    CHECK(nb_corpus_id(c, 0x6625) >= 0 && nb_corpus_id(c, '\n') >= 0); /* 春 */
    /* 《春晓》\n春眠不觉晓\n\n作者\n处处闻啼鸟\n\n */
    CHECK(c->n == 22 && c->ntrain == 22 - 5);
    for (int k = 1; k < c->nvocab; k++) CHECK(c->vocab[k - 1] < c->vocab[k]);
    for (int64_t k = 0; k < c->n; k++) CHECK(c->ids[k] >= 0 && c->ids[k] < c->nvocab);
    nb_corpus_free(c);
    /* without separators nothing is stripped; fortune 0 keeps them */
    o.fortune = 0;
    CHECK_OK(nb_corpus_from_text(text, strlen(text), &o, &c));
    CHECK(nb_corpus_id(c, '%') >= 0 && nb_corpus_id(c, 0x1b) >= 0);
    nb_corpus_free(c);
    CHECK_ERR(nb_corpus_from_text("ab\xfe", 3, &o, &c), NB_ERR_FORMAT, "invalid UTF-8 at byte 2");
    CHECK_ERR(nb_corpus_from_text("", 0, &o, &c), NB_ERR_FORMAT, "too few");
    CHECK(c == NULL);
}

TEST(seq_corpus_files)
{
    nb_corpus *c = NULL;
    CHECK_ERR(nb_corpus_load("/nonexistent/tang300", NULL, &c), NB_ERR_NOTFOUND, "fortunes-zh");
    const char *bad = nbt_tmp_path("bad.txt");
    CHECK(write_text(bad, "abc\xc3(def", 8));
    CHECK_ERR(nb_corpus_load(bad, NULL, &c), NB_ERR_FORMAT, "bad.txt: invalid UTF-8 at byte 3");
    CHECK(c == NULL);
}

/* ---- the character language model --------------------------------------------------- */

/* A poem line repeated: an LSTM learns to continue it exactly. */
static const char *const POEM = "春眠不觉晓，处处闻啼鸟。";

static nb_corpus *poem_corpus(void)
{
    char text[2048] = "";
    for (int k = 0; k < 40; k++) strcat(text, POEM);
    nb_corpus_opts o = {0.1, 0};
    nb_corpus *c = NULL;
    return nb_corpus_from_text(text, strlen(text), &o, &c) == NB_OK ? c : NULL;
}

/* Train a small charlm on c for `steps` Adam steps; NULL on failure. */
static nb_model *train_charlm(const nb_corpus *c, int steps, nb_ctx *ctx)
{
    char config[64];
    snprintf(config, sizeof config, "%d,8,32,1,lstm", c->nvocab);
    nb_model *m = NULL;
    if (nb_model_build("charlm", config, nb_ctx_rng(ctx), &m) != NB_OK) return NULL;
    nb_optim_opts oo = nb_optim_defaults(NB_OPTIM_ADAM);
    oo.lr = 0.02;
    nb_optimizer *o = nb_optim_new(m, &oo);
    nb_rng rng;
    nb_rng_seed(&rng, 5);
    int32_t y[8 * 12];
    int ok = o != NULL;
    for (int s = 0; s < steps && ok; s++) {
        nb_ctx_reset(ctx);
        nb_tensor *x = NULL;
        ok = nb_text_batch(ctx, &rng, c->ids, c->ntrain, 8, 12, &x, y) == NB_OK;
        nb_tensor *logits = ok ? nb_seq_forward(m, ctx, x, NULL) : NULL;
        nb_tensor *loss = nb_cross_entropy(ctx, nb_reshape(ctx, logits, NB_SHAPE(-1, c->nvocab)), y, NULL, -100,
                                           NB_REDUCTION_MEAN);
        nb_model_zero_grad(m);
        ok = loss && nb_backward(ctx, loss) == NB_OK && nb_optim_step(o) == NB_OK;
    }
    nb_optim_free(o);
    nb_ctx_reset(ctx);
    if (!ok) nb_model_free(m);
    return ok ? m : NULL;
}

TEST(seq_charlm_trains_and_samples)
{
    nb_corpus *c = poem_corpus();
    CHECK(c && c->nvocab == 11);
    nb_ctx *ctx = nb_ctx_new(1);
    double before = 0, after = 0;
    char config[64];
    snprintf(config, sizeof config, "%d,8,32,1,lstm", c->nvocab);
    nb_model *m0 = NULL;
    CHECK_OK(nb_model_build("charlm", config, nb_ctx_rng(ctx), &m0));
    CHECK_OK(nb_charlm_bits_per_char(m0, ctx, c->ids + c->ntrain, c->n - c->ntrain, 12, 4, &before));
    nb_model_free(m0);
    nb_model *m = train_charlm(c, 150, ctx);
    CHECK_MSG(m, "training failed: %s", nb_last_error());
    CHECK_OK(nb_charlm_bits_per_char(m, ctx, c->ids + c->ntrain, c->n - c->ntrain, 12, 4, &after));
    /* log2(11) = 3.5 bits for a uniform guess; the line is predictable but
     * for its first character after a zero state */
    CHECK_MSG(before > 3 && after < 0.8, "bits per character %g -> %g", before, after);

    int32_t prime = nb_corpus_id(c, 0x6625), out[11], again[11]; /* 春 */
    nb_rng rng;
    nb_rng_seed(&rng, 9);
    CHECK_OK(nb_charlm_sample(m, ctx, &rng, &prime, 1, 11, 0.05f, out));
    uint32_t *want = NULL;
    int64_t n = 0;
    CHECK_OK(nb_utf8_decode(POEM, strlen(POEM), &want, &n));
    for (int k = 0; k < 11; k++) CHECK_MSG(c->vocab[out[k]] == want[k + 1], "sample %d: U+%04X", k, (unsigned)c->vocab[out[k]]);
    free(want);
    /* the same generator state gives the same text, also after a save and load */
    const char *path = nbt_tmp_path("charlm.safetensors");
    CHECK_OK(nb_charlm_save(m, c->vocab, c->nvocab, path));
    nb_model *m2 = NULL;
    uint32_t *vocab = NULL;
    int nvocab = 0;
    CHECK_OK(nb_charlm_load(path, &m2, &vocab, &nvocab));
    CHECK(nvocab == c->nvocab && !memcmp(vocab, c->vocab, sizeof *vocab * (size_t)nvocab));
    nb_rng_seed(&rng, 9);
    CHECK_OK(nb_charlm_sample(m2, ctx, &rng, &prime, 1, 11, 0.05f, again));
    CHECK(!memcmp(out, again, sizeof out));
    /* at temperature 1 two seeds usually differ, one seed never does */
    nb_rng_seed(&rng, 4);
    CHECK_OK(nb_charlm_sample(m, ctx, &rng, &prime, 1, 11, 1.0f, out));
    nb_rng_seed(&rng, 4);
    CHECK_OK(nb_charlm_sample(m2, ctx, &rng, &prime, 1, 11, 1.0f, again));
    CHECK(!memcmp(out, again, sizeof out));
    CHECK_ERR(nb_charlm_sample(m, ctx, &rng, &prime, 1, 3, 0.0f, out), NB_ERR_ARG, "temperature");
    prime = 99;
    CHECK_ERR(nb_charlm_sample(m, ctx, &rng, &prime, 1, 3, 1.0f, out), NB_ERR_ARG, "outside the vocabulary");
    free(vocab);
    nb_model_free(m2);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_corpus_free(c);
}

TEST(seq_charlm_load_refuses_other_files)
{
    nb_rng rng;
    nb_rng_seed(&rng, 1);
    nb_model *m = NULL, *got = NULL;
    CHECK_OK(nb_model_build("mlp", "4,3", &rng, &m));
    const char *path = nbt_tmp_path("mlp.safetensors");
    CHECK_OK(nb_model_save(m, path));
    nb_model_free(m);
    uint32_t *vocab = NULL;
    int n = 0;
    CHECK_ERR(nb_charlm_load(path, &got, &vocab, &n), NB_ERR_FORMAT, "not a charlm file");
    CHECK(got == NULL && vocab == NULL);
}

/* ---- the command line ------------------------------------------------------------------ */

TEST(seq_cli_help)
{
    CHECK(nbt_nabla("adding --help") == 0 && strstr(nbt_out, "--cell") && strstr(nbt_out, "0.167"));
    CHECK(nbt_nabla("textgen --help") == 0 && strstr(nbt_out, "train") && strstr(nbt_out, "tang300"));
    CHECK(nbt_nabla("textgen train --help") == 0 && strstr(nbt_out, "--corpus") && strstr(nbt_out, "bits per character"));
    CHECK(nbt_nabla("textgen sample --help") == 0 && strstr(nbt_out, "--temperature") && strstr(nbt_out, "--prime"));
    CHECK(nbt_nabla("--help") == 0 && strstr(nbt_out, "adding") && strstr(nbt_out, "textgen"));
    CHECK(nbt_nabla("adding --cell cnn") == 2 && strstr(nbt_err, "--cell"));
    CHECK(nbt_nabla("textgen") == 2);
    CHECK(nbt_nabla("textgen fly") == 2 && strstr(nbt_err, "unknown subcommand"));
    CHECK(nbt_nabla("textgen train") == 2 && strstr(nbt_err, "--corpus"));
    CHECK(nbt_nabla("textgen sample") == 2 && strstr(nbt_err, "--weights"));
}

TEST(seq_cli_adding)
{
    const char *dir = nbt_tmpdir();
    CHECK(nbt_nabla("adding --cell rnn,lstm --T 6 --steps 20 --hidden 8 --batch 8 --threads 1 --out '%s'", dir) == 0);
    CHECK(strstr(nbt_out, "rnn  T=6: test MSE") && strstr(nbt_out, "lstm T=6: test MSE"));
    char path[600];
    snprintf(path, sizeof path, "%s/adding_T6.csv", dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    char line[256];
    int lines = 0, header = fgets(line, sizeof line, f) && !strcmp(line, "t,rnn_init,rnn_final,lstm_init,lstm_final\n");
    while (fgets(line, sizeof line, f)) lines++;
    fclose(f);
    CHECK(header && lines == 6);
    snprintf(path, sizeof path, "%s/adding_T6.png", dir);
    f = fopen(path, "rb");
    CHECK(f);
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    CHECK(got == 8 && !memcmp(magic, "\x89PNG\r\n\x1a\n", 8));
    CHECK(nbt_nabla("adding --T 6 --steps 1 --out /nonexistent/dir") == 1 && strstr(nbt_err, "/nonexistent/dir"));
}

TEST(seq_cli_textgen)
{
    const char *corpus = nbt_tmp_path("poem.txt"), *weights = nbt_tmp_path("poem.safetensors");
    char text[2048] = "";
    for (int k = 0; k < 30; k++) strcat(text, POEM);
    CHECK(write_text(corpus, text, strlen(text)));
    CHECK(nbt_nabla("textgen train --corpus '%s' --epochs 2 --hidden 16 --layers 1 --embed 8 --seq 8 --batch 8 "
                "--threads 1 --length 5 --out '%s'", corpus, weights) == 0);
    CHECK(strstr(nbt_out, "vocabulary 11") && strstr(nbt_out, "valid_bpc") && strstr(nbt_out, "sample: "));
    CHECK(nbt_nabla("textgen sample --weights '%s' --prime 处处 --length 4 --seed 2", weights) == 0);
    char first[64];
    size_t len = strlen(nbt_out);
    CHECK(len < sizeof first);
    memcpy(first, nbt_out, len + 1);
    CHECK(!strncmp(first, "处处", strlen("处处")) && strlen(first) == 6 * 3 + 1);
    CHECK(nbt_nabla("textgen sample --weights '%s' --prime 处处 --length 4 --seed 2", weights) == 0);
    CHECK(!strcmp(first, nbt_out));
    CHECK(nbt_nabla("textgen sample --weights '%s' --prime 夏", weights) == 1 && strstr(nbt_err, "not in the model's vocabulary"));
    CHECK(nbt_nabla("textgen train --corpus /nonexistent/tang300") == 1 && strstr(nbt_err, "fortunes-zh"));
    CHECK(write_text(corpus, "ok\xff", 3));
    CHECK(nbt_nabla("textgen train --corpus '%s'", corpus) == 1 && strstr(nbt_err, "invalid UTF-8"));
}

TEST(seq_cli_train_lstm)
{
    CHECK(nbt_nabla("train --model lstm --config 28,28,16,10,gru --optim adam --limit-train 256 --epochs 1 --threads 2")
          == 0);
    CHECK(strstr(nbt_out, "training lstm (28,28,16,10,gru") && strstr(nbt_out, "test_acc"));
}
