/* Gradient-check cases (see tests/gradcheck.h) for the recurrent sequence
 * op (every mode, both directions, with and without initial states and
 * biases, one-step cells through their public wrappers, a batch-first
 * strided input) and for embedding (repeated indices, 2-D index shapes).
 *
 * The checker takes at most four inputs, so the four weights of a case are
 * packed as the columns of one leaf W (G*H, I+H+2) = [w_ih | w_hh | b_ih |
 * b_hh] that the case function slices: the op then also sees strided
 * weights. For LSTM the result is [y; cn] so both outputs are checked. */
#include "gradcheck.h"
#include <stdint.h>
#include <string.h>

#define S(...) NB_SHAPE(__VA_ARGS__)

enum { A_MODE, A_REVERSE, A_STATE, A_BIAS, A_I, A_H, A_CELL, A_BATCH_FIRST };

static nb_tensor *leaf(nb_ctx *ctx, float scale, int nd, const int64_t *shape)
{
    nb_tensor *t = nb_tensor_randn(ctx, nd, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] *= scale;
    return nb_requires_grad(t, 1);
}

static nb_tensor *column(nb_ctx *ctx, nb_tensor *w, int64_t col)
{
    nb_tensor *c = nb_slice(ctx, w, 1, col, col + 1, 1);
    return c ? nb_reshape(ctx, c, 1, (int64_t[]){c->shape[0]}) : NULL;
}

static nb_tensor *f_seq(nb_ctx *ctx, gc_case *c)
{
    int mode = c->iarg[A_MODE], lstm = mode == NB_RNN_LSTM, I = c->iarg[A_I], H = c->iarg[A_H];
    int k = 1;
    nb_tensor *x = c->in[0];
    nb_tensor *h0 = c->iarg[A_STATE] ? c->in[k++] : NULL;
    nb_tensor *c0 = c->iarg[A_STATE] && lstm ? c->in[k++] : NULL;
    nb_tensor *w = c->in[k];
    nb_tensor *wih = nb_slice(ctx, w, 1, 0, I, 1), *whh = nb_slice(ctx, w, 1, I, I + H, 1);
    nb_tensor *bih = c->iarg[A_BIAS] ? column(ctx, w, I + H) : NULL;
    nb_tensor *bhh = c->iarg[A_BIAS] ? column(ctx, w, I + H + 1) : NULL;
    if (c->iarg[A_BATCH_FIRST]) x = nb_transpose(ctx, x, 0, 1);
    if (c->iarg[A_CELL]) {
        if (mode == NB_RNN_GRU) return nb_gru_cell(ctx, x, h0, wih, whh, bih, bhh);
        if (!lstm) return nb_rnn_cell(ctx, x, h0, wih, whh, bih, bhh, mode == NB_RNN_RELU);
        nb_tensor *h1, *c1;
        if (nb_lstm_cell(ctx, x, h0, c0, wih, whh, bih, bhh, &h1, &c1)) return NULL;
        return nb_concat(ctx, (nb_tensor *[]){h1, c1}, 2, 0);
    }
    nb_tensor *y, *cn;
    if (nb_rnn_sequence(ctx, mode, c->iarg[A_REVERSE], x, h0, c0, wih, whh, bih, bhh, &y, NULL, lstm ? &cn : NULL))
        return NULL;
    if (!lstm) return y;
    return nb_concat(ctx, (nb_tensor *[]){y, nb_reshape(ctx, cn, 3, (int64_t[]){1, cn->shape[0], cn->shape[1]})},
                     2, 0);
}

/* T == 0: a cell (x (N,I)). batch_first: x is stored (N,T,I) and transposed. */
static int seq_case(nb_ctx *ctx, gc_case *c, const char *label, int mode, int reverse, int state, int bias,
                    int T, int N, int I, int H, int batch_first)
{
    int G = mode == NB_RNN_LSTM ? 4 : mode == NB_RNN_GRU ? 3 : 1;
    c->label = label;
    c->fn = f_seq;
    c->iarg[A_MODE] = mode;
    c->iarg[A_REVERSE] = reverse;
    c->iarg[A_STATE] = state;
    c->iarg[A_BIAS] = bias;
    c->iarg[A_I] = I;
    c->iarg[A_H] = H;
    c->iarg[A_CELL] = T == 0;
    c->iarg[A_BATCH_FIRST] = batch_first;
    c->nin = 0;
    if (T == 0) c->in[c->nin++] = leaf(ctx, 1.0f, S(N, I));
    else if (batch_first) c->in[c->nin++] = leaf(ctx, 1.0f, S(N, T, I));
    else c->in[c->nin++] = leaf(ctx, 1.0f, S(T, N, I));
    if (state) c->in[c->nin++] = leaf(ctx, 0.8f, S(N, H));
    if (state && mode == NB_RNN_LSTM) c->in[c->nin++] = leaf(ctx, 0.8f, S(N, H));
    c->in[c->nin++] = leaf(ctx, 0.6f, S(G * H, I + H + 2));
    c->eps = 1e-3f;
    return 1;
}

int gc_rnn_sequence(nb_ctx *ctx, int v, gc_case *c)
{
    switch (v) {
    case 0: return seq_case(ctx, c, "lstm T=4 h0 c0", NB_RNN_LSTM, 0, 1, 1, 4, 2, 3, 3, 0);
    case 1: return seq_case(ctx, c, "lstm reverse, zero state", NB_RNN_LSTM, 1, 0, 1, 3, 3, 2, 2, 0);
    case 2: return seq_case(ctx, c, "lstm no bias, batch-first strided x", NB_RNN_LSTM, 0, 1, 0, 3, 2, 3, 2, 1);
    case 3: return seq_case(ctx, c, "gru T=4 h0", NB_RNN_GRU, 0, 1, 1, 4, 2, 3, 3, 0);
    case 4: return seq_case(ctx, c, "gru reverse no bias", NB_RNN_GRU, 1, 1, 0, 3, 2, 2, 3, 0);
    case 5: return seq_case(ctx, c, "rnn tanh T=4 h0", NB_RNN_TANH, 0, 1, 1, 4, 3, 2, 3, 0);
    case 6: return seq_case(ctx, c, "rnn relu reverse", NB_RNN_RELU, 1, 1, 1, 3, 2, 3, 3, 0);
    case 7: return seq_case(ctx, c, "lstm_cell", NB_RNN_LSTM, 0, 1, 1, 0, 3, 3, 4, 0);
    case 8: return seq_case(ctx, c, "gru_cell", NB_RNN_GRU, 0, 1, 1, 0, 3, 2, 3, 0);
    case 9: return seq_case(ctx, c, "rnn_cell tanh", NB_RNN_TANH, 0, 1, 1, 0, 2, 3, 2, 0);
    case 10: return seq_case(ctx, c, "gru_cell zero state", NB_RNN_GRU, 0, 0, 1, 0, 2, 2, 2, 0);
    default: return 0;
    }
}

/* iarg[0..2]: index shape (ndim in iarg[3]); labels: the indices. */
static nb_tensor *f_emb(nb_ctx *ctx, gc_case *c)
{
    int64_t shape[3] = {c->iarg[0], c->iarg[1], c->iarg[2]};
    return nb_embedding(ctx, c->in[0], c->labels, c->iarg[3], shape);
}

int gc_embedding(nb_ctx *ctx, int v, gc_case *c)
{
    static const int32_t idx[12] = {3, 0, 3, 4, 1, 3, 0, 2, 4, 4, 1, 0};
    c->fn = f_emb;
    memcpy(c->labels, idx, sizeof idx);
    c->nin = 1;
    switch (v) {
    case 0:
        c->label = "(12) indices, repeats";
        c->in[0] = leaf(ctx, 1.0f, S(5, 3));
        c->iarg[0] = 12;
        c->iarg[3] = 1;
        return 1;
    case 1:
        c->label = "(3,4) indices into a transposed weight";
        c->in[0] = nb_transpose(ctx, leaf(ctx, 1.0f, S(4, 5)), 0, 1);
        c->iarg[0] = 3;
        c->iarg[1] = 4;
        c->iarg[3] = 2;
        return 1;
    default: return 0;
    }
}
