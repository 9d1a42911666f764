/* The tape: recording nodes and running backward over them in reverse. */
#include "ctx.h"

const char *const nb__op_names[NB__OP_COUNT] = {
#define NB_OP(E, name) #name,
#include "../ops/ops.def"
#undef NB_OP
};

static const nb__backward_fn nb__backward[NB__OP_COUNT] = {
#define NB_OP(E, name) nb__bw_##name,
#include "../ops/ops.def"
#undef NB_OP
};

int nb__any_null(nb_tensor *const *in, int n)
{
    for (int i = 0; i < n; i++)
        if (!in[i]) return 1;
    return 0;
}

nb__node *nb__record(nb_ctx *ctx, int op, nb_tensor *out, nb_tensor *const *in, int nin)
{
    out->requires_grad = 0;
    out->node = NULL;
    if (!ctx->grad_enabled) return NULL;
    int need = 0;
    for (int i = 0; i < nin; i++) need |= in[i]->requires_grad;
    if (!need) return NULL;
    nb__node *n = nb_arena_calloc(ctx->arena, sizeof *n);
    nb_tensor **ins = nin <= NB__SMALL_IN ? NULL : nb_arena_alloc(ctx->arena, sizeof(nb_tensor *) * (size_t)nin);
    if (!n || (nin > NB__SMALL_IN && !ins)) {
        nb__ctx_set_status(ctx, NB_ERR_NOMEM);
        return NULL;
    }
    n->in = ins ? ins : n->in_small;
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    n->nin = nin;
    n->op = op;
    n->out = out;
    n->prev = ctx->tape;
    ctx->tape = n;
    out->node = n;
    out->requires_grad = 1;
    return n;
}

/* Ops whose backward writes a fresh input gradient (nb__node.fresh) rather
 * than adding to zeros: those that run on activation-sized tensors. */
static const unsigned char writes_fresh[NB__OP_COUNT] = {
    [NB__OP_RESHAPE] = 1, [NB__OP_CONTIGUOUS] = 1, [NB__OP_LINEAR] = 1, [NB__OP_RELU] = 1, [NB__OP_DROPOUT] = 1,
    [NB__OP_CONV2D] = 1, [NB__OP_BATCH_NORM] = 1, [NB__OP_BATCH_NORM_RELU_MAX_POOL] = 1,
};

/* Gradient buffers of node n's inputs before its backward: a new buffer is
 * left uninitialised (its bit set in n->fresh) when the op writes it, unless
 * the same tensor is another input of n too (the op's partial writes would
 * then overwrite each other); otherwise it is zeroed. */
static int input_grads(nb_ctx *ctx, nb__node *n)
{
    n->fresh = 0;
    for (int i = 0; i < n->nin; i++) {
        nb_tensor *t = n->in[i];
        if (!t->requires_grad || t->grad) continue;
        int shared = 0;
        for (int k = 0; k < n->nin; k++) shared |= k != i && n->in[k] == t;
        if (!writes_fresh[n->op] || shared || i >= (int)(8 * sizeof n->fresh)) {
            if (!nb__grad(ctx, t)) return 0;
            continue;
        }
        t->grad = nb_arena_alloc(ctx->arena, (size_t)nb_tensor_numel(t) * sizeof(float));
        if (!t->grad) {
            nb__ctx_set_status(ctx, NB_ERR_NOMEM);
            return 0;
        }
        n->fresh |= 1u << i;
    }
    return 1;
}

static _Thread_local const nb__backward_hook *backward_hook;

const nb__backward_hook *nb__set_backward_hook(const nb__backward_hook *h)
{
    const nb__backward_hook *old = backward_hook;
    backward_hook = h;
    return old;
}

float *nb__grad(nb_ctx *ctx, nb_tensor *t)
{
    if (!t->grad) {
        t->grad = nb_arena_calloc(ctx->arena, (size_t)nb_tensor_numel(t) * sizeof(float));
        if (!t->grad) nb__ctx_set_status(ctx, NB_ERR_NOMEM);
    }
    return t->grad;
}

nb_status nb_backward(nb_ctx *ctx, nb_tensor *loss)
{
    if (!ctx || !loss) return nb__fail(NB_ERR_ARG, "backward: %s is NULL", ctx ? "loss" : "context");
    if (nb_tensor_numel(loss) != 1) {
        char b[64];
        return nb__fail(NB_ERR_SHAPE, "backward: loss must have one element, got shape %s",
                        nb_shape_str(loss, b, sizeof b));
    }
    if (!loss->requires_grad)
        return nb__fail(NB_ERR_STATE, "backward: the loss does not require grad "
                                      "(no input needed a gradient, or autograd was off)");
    /* Results of ops start from zero each time; leaves keep accumulating. */
    for (nb__node *n = ctx->tape; n; n = n->prev) n->out->grad = NULL;
    float *g = nb__grad(ctx, loss);
    if (!g) return nb__fail(NB_ERR_NOMEM, "backward: out of memory");
    g[0] += 1.0f;
    const nb__backward_hook *h = backward_hook;
    nb_status s = h ? h->begin(h->user, ctx->tape) : NB_OK;
    int64_t k = 0;
    for (nb__node *n = ctx->tape; n && !s; n = n->prev, k++) {
        if (n->out->grad) {   /* else the loss does not depend on it */
            if (!input_grads(ctx, n)) return nb__fail(NB_ERR_NOMEM, "backward: out of memory");
            s = nb__backward[n->op](ctx, n);
        }
        if (h && !s) s = h->after(h->user, k);
    }
    return s;
}

nb_tensor *nb_detach(nb_ctx *ctx, nb_tensor *x)
{
    if (!x) return NULL;
    nb_tensor *t = nb_arena_alloc(ctx->arena, sizeof *t);
    if (!t) return nb__op_fail(ctx, NB_ERR_NOMEM, "detach: out of memory");
    *t = *x;
    t->grad = NULL;
    t->node = NULL;
    t->requires_grad = 0;
    return t;
}

nb_status nb_zero_grad(nb_ctx *ctx, nb_tensor *t)
{
    if (!t) return nb__fail(NB_ERR_ARG, "zero_grad: tensor is NULL");
    if (t->grad) {
        memset(t->grad, 0, (size_t)nb_tensor_numel(t) * sizeof(float));
        return NB_OK;
    }
    return nb__grad(ctx, t) ? NB_OK : nb__fail(NB_ERR_NOMEM, "zero_grad: out of memory");
}
