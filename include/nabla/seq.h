/* nabla/seq.h — recurrent models and their tasks: the sequence classifier
 * of the zoo ("lstm"), the adding problem (vanishing gradients, the notes
 * §4 and §14), and character-level language models on UTF-8 text
 * ("charlm"). The layers themselves are in nabla/rnn.h. */
#ifndef NABLA_SEQ_H
#define NABLA_SEQ_H

#include "core.h"
#include "nn.h"
#include "rnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- models ----------------------------------------------------------------
 * Zoo "lstm", config "T,I,H,C,cell" (default "28,28,128,10,lstm"; cell rnn,
 * relu, lstm or gru): the torch module
 *     class SeqClassifier(nn.Module):      # rnn = nn.LSTM(I, H, batch_first=True)
 *         def forward(self, x):            # fc  = nn.Linear(H, C)
 *             y, _ = self.rnn(x.reshape(-1, T, I))
 *             return self.fc(y[:, -1])
 * so any input of T*I values per sample ((N,1,28,28) images are 28 rows of 28
 * pixels) gives (N,C) logits; parameters rnn.weight_ih_l0 ... fc.bias.
 *
 * Zoo "charlm", config "V,E,H,L,cell" (e.g. "2585,64,256,2,lstm"): the torch
 * module with embed = nn.Embedding(V, E), rnn = nn.LSTM(E, H, L,
 * batch_first=True), fc = nn.Linear(H, V) and forward
 *     y, _ = self.rnn(self.embed(x)); return self.fc(y)
 * from token ids (N,T) (floats holding whole numbers) to logits (N,T,V). */

/* The models' forward pass with the recurrent layer's states exposed (state
 * as nb_rnn_forward; NULL = the module's forward). "lstm": x (N, T*I values),
 * returns (N,C); "charlm": x (N,T), returns (N,T,V). NULL on error (as an op;
 * NB_ERR_ARG for a model of another kind). */
nb_tensor *nb_seq_forward(nb_model *m, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state);
/* "rnn", "relu", "lstm", "gru" -> the mode; -1 if unknown. */
int        nb_rnn_mode_from_name(const char *name);
const char *nb_rnn_mode_name(nb_rnn_mode mode);

/* ---- the adding problem ------------------------------------------------------
 * Hochreiter & Schmidhuber's task: a sequence of T steps with 2 inputs,
 * a value U[0,1) and a marker that is 1 at two steps (one in the first half,
 * one in the second) and 0 elsewhere; the target is the sum of the two
 * marked values. Always predicting 1 has MSE Var(u1+u2) = 1/6 = 0.167, so a
 * model below it has learned to carry a value across the sequence. */
#define NB_ADDING_BASELINE_MSE (1.0 / 6.0)

/* n samples: x (n,T,2) and y (n) filled from rng (the caller's arrays). */
void nb_adding_batch(nb_rng *rng, int T, int n, float *x, float *y);

typedef struct nb_adding_opts {
    nb_rnn_mode mode;       /* NB_RNN_TANH (rnn), NB_RNN_LSTM, NB_RNN_GRU, ... */
    int      T;             /* sequence length, >= 2 */
    int      steps;         /* Adam steps (0 = measure at initialisation only) */
    int      hidden;        /* hidden size */
    int      batch;         /* samples per step */
    double   lr;            /* Adam's learning rate */
    double   clip;          /* gradient 2-norm clipping (nb_clip_grad_norm), 0 = off */
    int      probe_batches; /* batches averaged for the gradient norms and the test MSE */
    uint64_t seed;          /* weights, training data, probe and test data */
    /* LSTM only: added to the forget gate's bias_ih after torch's init (0 =
     * torch's; 1 is Jozefowicz et al.'s advice, so that f = sigmoid(1) keeps
     * the cell state, and its gradient, from the first step) */
    double   forget_bias;
    /* called every `log_every` steps (0 = never) with the mean training MSE
     * of those steps; may be NULL */
    int      log_every;
    void   (*log)(void *arg, int step, double mse);
    void    *log_arg;
} nb_adding_opts;

/* Defaults: lstm, T 100, steps 3000, hidden 64, batch 64, lr 3e-3 (an LSTM
 * leaves the 0.167 plateau after about 1,700 steps at T = 100), clip 1,
 * probe_batches 4, seed 1. */
nb_adding_opts nb_adding_defaults(void);

typedef struct nb_adding_result {
    int     T;
    double  mse_init, mse_final;  /* test MSE (probe_batches fresh batches) */
    double *grad_init;            /* T values: mean over probe batches of ||dL/dh_t|| */
    double *grad_final;           /* the same after training; owned, see free */
    double  seconds;              /* wall time of the training steps */
} nb_adding_result;

/* Train "lstm"-zoo model T,2,hidden,1,cell with MSE and Adam on fresh
 * batches and measure, before and after, the test MSE and for every step t
 * ||dL/dh_t||, the 2-norm over the batch of the gradient of the mean MSE L
 * with respect to the last layer's hidden state h_t (t = 0 .. T-1; the
 * gradient through the recurrence and the output, from nb_rnn_state.steps).
 * The lab's §4 measurement: an RNN's ||dL/dh_t|| falls by orders of
 * magnitude as t goes back from T-1, an LSTM's much less; and only the LSTM
 * ends well below NB_ADDING_BASELINE_MSE for T >= 100. Deterministic for a
 * seed and thread count. NB_ERR_ARG for bad options, NB_ERR_NONFINITE if the
 * training diverges; *r is filled on success (free it with
 * nb_adding_result_free). */
nb_status nb_adding_run(const nb_adding_opts *opts, nb_adding_result *r);
void      nb_adding_result_free(nb_adding_result *r);

/* ---- UTF-8 text --------------------------------------------------------------
 * Strict UTF-8 (RFC 3629): overlong forms, surrogates, code points above
 * U+10FFFF, truncated sequences and NUL are errors (NB_ERR_FORMAT naming the
 * byte offset). *out (malloc'd, the caller frees it) gets the code points. */
nb_status nb_utf8_decode(const char *s, size_t len, uint32_t **out, int64_t *n);
/* Encode one code point (valid, as the decoder returns) into out; returns
 * its length in bytes (1 to 4). */
int       nb_utf8_encode(uint32_t cp, char out[4]);

/* A corpus: text as token ids over a vocabulary of code points (each Chinese
 * character is one token), split into a training part (the first ntrain
 * tokens) and a validation part (the rest). */
typedef struct nb_corpus {
    uint32_t *vocab;       /* nvocab code points, ascending; id = index */
    int       nvocab;
    int32_t  *ids;         /* n token ids */
    int64_t   n, ntrain;
} nb_corpus;

typedef struct nb_corpus_opts {
    double valid_fraction; /* the last part of the text held out, in [0, 0.5] */
    /* fortune(6) files: lines that are only "%" separate entries; they
     * become blank lines, and ANSI colour escapes (fortunes-zh's titles) are
     * removed. 1 = always, 0 = never, -1 = when some line is only "%". */
    int    fortune;
} nb_corpus_opts;

/* Build from UTF-8 text (errors as nb_utf8_decode; NB_ERR_FORMAT for an empty
 * text or one shorter than 2 tokens in each part). */
nb_status nb_corpus_from_text(const char *text, size_t len, const nb_corpus_opts *opts, nb_corpus **out);
/* Read a file: a missing file is NB_ERR_NOTFOUND with a message naming the
 * Debian packages of the corpora (fortunes-zh: tang300, song100, chinese;
 * fortunes: English) under /usr/share/games/fortunes. */
nb_status nb_corpus_load(const char *path, const nb_corpus_opts *opts, nb_corpus **out);
void      nb_corpus_free(nb_corpus *c);
/* The id of a code point, -1 if it is not in the vocabulary. */
int       nb_corpus_id(const nb_corpus *c, uint32_t cp);

/* A training batch: n windows of seq+1 tokens at random offsets of
 * ids[0..len): *x (n,seq) the first seq ids as floats (arena), y (n*seq, the
 * caller's) the next token of each. NB_ERR_ARG if len < seq + 1. */
nb_status nb_text_batch(nb_ctx *ctx, nb_rng *rng, const int32_t *ids, int64_t len, int n, int seq,
                        nb_tensor **x, int32_t *y);

/* Validation bits per character of a "charlm" model over ids[0..len):
 * consecutive windows of seq tokens, each predicting its next tokens from a
 * zero state, batch windows at a time, in eval mode without autograd (both
 * restored). Mean of -log2 p(next token) over every predicted token. */
nb_status nb_charlm_bits_per_char(nb_model *m, nb_ctx *ctx, const int32_t *ids, int64_t len, int seq,
                                  int batch, double *bpc);

/* Sample from a "charlm" model: feed prime (n_prime >= 1 ids), then draw
 * `length` ids one at a time from softmax(logits / temperature) (temperature
 * > 0; small values approach the argmax) with rng, written to out. In eval
 * mode without autograd; ctx is reset. Deterministic for a rng state. */
nb_status nb_charlm_sample(nb_model *m, nb_ctx *ctx, nb_rng *rng, const int32_t *prime, int n_prime,
                           int length, float temperature, int32_t *out);

/* A "charlm" model and its vocabulary in one safetensors file: the weights
 * as nb_model_save, plus the metadata "vocab" (the vocabulary's code points
 * as one UTF-8 string), so nb_model_load_file also reads it. */
nb_status nb_charlm_save(const nb_model *m, const uint32_t *vocab, int nvocab, const char *path);
/* Load both; *vocab malloc'd (the caller frees it). NB_ERR_FORMAT when the
 * file is not a charlm or its vocabulary does not match the model. */
nb_status nb_charlm_load(const char *path, nb_model **m, uint32_t **vocab, int *nvocab);

#ifdef __cplusplus
}
#endif
#endif
