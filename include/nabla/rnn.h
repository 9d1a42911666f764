/* nabla/rnn.h — recurrent layers (torch.nn.RNN, LSTM, GRU) and Embedding.
 *
 * Semantics, gate orders, weight layouts, parameter names and initialisation
 * follow torch.nn 1.13, so a PyTorch state_dict loads directly:
 *   weight_ih_l{k}[_reverse]  (G*H, I) for layer 0, (G*H, D*H) above it
 *   weight_hh_l{k}[_reverse]  (G*H, H)
 *   bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse]  (G*H)
 * with G = 1 (RNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: r, z, n), D = 2 when
 * bidirectional, and every parameter U(-1/sqrt(H), 1/sqrt(H)) at creation.
 *   RNN:  h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu
 *   LSTM: i,f,g,o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)
 *         c' = sigmoid(f)*c + sigmoid(i)*tanh(g),  h' = sigmoid(o)*tanh(c')
 *   GRU:  r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise,
 *         n = tanh(x W_in^T + b_in + r*(h W_hn^T + b_hn)),  h' = (1-z)*n + z*h
 * Backpropagation through time is the tape's ordinary backward over the
 * steps; gradient clipping (nabla/schedule.h) applies as to any model. */
#ifndef NABLA_RNN_H
#define NABLA_RNN_H

#include "nn.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nb_rnn_mode {
    NB_RNN_TANH = 0,   /* torch.nn.RNN(nonlinearity="tanh") */
    NB_RNN_RELU,       /* torch.nn.RNN(nonlinearity="relu") */
    NB_RNN_LSTM,
    NB_RNN_GRU
} nb_rnn_mode;

/* A zeroed struct plus mode and sizes gives torch's defaults. */
typedef struct nb_rnn_opts {
    nb_rnn_mode mode;
    int   input_size, hidden_size;
    int   num_layers;      /* 0 means 1 */
    int   no_bias;         /* 1 = torch's bias=False */
    int   batch_first;     /* 1: x and y are (N,T,*) instead of (T,N,*) */
    float dropout;         /* on the outputs of every layer but the last, train mode only */
    int   bidirectional;
} nb_rnn_opts;

/* Create the layer ("RNN", "LSTM" or "GRU" in summaries); its parameters are
 * named as above. NULL with NB_ERR_ARG on bad sizes. */
nb_module *nb_nn_rnn(nb_model *m, nb_rng *rng, const nb_rnn_opts *opts);

/* States in and out of one call. Shapes as torch: h0, c0, hn, cn are
 * (L*D, N, H), never batch-first. */
typedef struct nb_rnn_state {
    nb_tensor  *h0, *c0;   /* in: initial states, NULL = zeros (c0: LSTM only) */
    nb_tensor  *hn, *cn;   /* out: final states (cn: LSTM only, else NULL) */
    /* in: NULL, or an array of T pointers the call fills with the last
     * layer's forward-direction hidden state h_t (N,H) for every step t: tape
     * tensors whose grad after nb_backward is dL/dh_t (through the outputs
     * and the recurrence), for gradient-through-time measurements. */
    nb_tensor **steps;
} nb_rnn_state;

/* y = rnn(x, state): x (T,N,I) or (N,T,I) with batch_first -> y (T,N,D*H) or
 * (N,T,D*H). state may be NULL. The module's vt forward is this with a NULL
 * state (y only). NULL on error (as an op). */
nb_tensor *nb_rnn_forward(nb_module *rnn, nb_ctx *ctx, nb_tensor *x, nb_rnn_state *state);

/* ---- one layer, one direction, as one fused op -----------------------------
 * x (T,N,I) (any strides), h0 and c0 (N,H) or NULL (zeros; c0 LSTM only),
 * w_ih (G*H,I), w_hh (G*H,H), biases (G*H) or NULL. reverse runs t = T-1
 * down to 0 (the backward direction of a bidirectional layer). Outputs, each
 * optional (pass NULL): *y (T,N,H) the hidden state after every step in time
 * order, *hn (N,H) the state after the last step processed, *cn (N,H) the
 * LSTM cell state after it (NULL for the other modes). All are views of the
 * op's one packed output. The input projections of all steps are one GEMM
 * before the recurrence; backward runs BPTT inside the op. NB_OK or the
 * error (also recorded in ctx, as an op). */
nb_status nb_rnn_sequence(nb_ctx *ctx, nb_rnn_mode mode, int reverse, nb_tensor *x, nb_tensor *h0,
                          nb_tensor *c0, nb_tensor *w_ih, nb_tensor *w_hh, nb_tensor *b_ih,
                          nb_tensor *b_hh, nb_tensor **y, nb_tensor **hn, nb_tensor **cn);

/* ---- the cells as ops (each one fused op with its own backward) ---------
 * x (N,I), h and c (N,H) or NULL (zeros); biases may be NULL. Each is
 * nb_rnn_sequence over one step; h' and c' are views of its packed output. */
nb_tensor *nb_rnn_cell(nb_ctx *ctx, nb_tensor *x, nb_tensor *h, nb_tensor *w_ih, nb_tensor *w_hh,
                       nb_tensor *b_ih, nb_tensor *b_hh, int relu);
/* LSTM cell: one GEMM pair for all four gates and the gate math in one pass.
 * Writes h' and c' (N,H) to *h_out and *c_out; NB_OK or the error status. */
nb_status  nb_lstm_cell(nb_ctx *ctx, nb_tensor *x, nb_tensor *h, nb_tensor *c, nb_tensor *w_ih,
                        nb_tensor *w_hh, nb_tensor *b_ih, nb_tensor *b_hh, nb_tensor **h_out,
                        nb_tensor **c_out);
nb_tensor *nb_gru_cell(nb_ctx *ctx, nb_tensor *x, nb_tensor *h, nb_tensor *w_ih, nb_tensor *w_hh,
                       nb_tensor *b_ih, nb_tensor *b_hh);

/* ---- Embedding (torch.nn.Embedding) ---------------------------------------
 * weight (num_embeddings, dim), N(0,1) at creation as torch. The op takes
 * indices (any shape, each in [0, num_embeddings), else NB_ERR_ARG) and
 * returns (*shape, dim); its gradient goes to weight (rows summed over
 * repeats). The module's forward takes the indices as a float tensor holding
 * whole numbers (exact below 2^24). */
nb_tensor *nb_embedding(nb_ctx *ctx, nb_tensor *weight, const int32_t *indices, int ndim,
                        const int64_t *shape);
nb_module *nb_nn_embedding(nb_model *m, nb_rng *rng, int num_embeddings, int dim);

#ifdef __cplusplus
}
#endif
#endif
