/* Residual connections (the notes §14: with ReLU and batch normalisation,
 * the cure for vanishing gradients): y = x + body(x), and torchvision's ResNet
 * BasicBlock with the same parameter names, so its weights move both ways. */
#include "../core/internal.h"
#include <stdio.h>

static nb_tensor *run(nb_module *m, int k, nb_ctx *ctx, nb_tensor *x)
{
    return x ? m->children[k]->vt->forward(m->children[k], ctx, x) : NULL;
}

static void no_desc(const nb_module *m, char *b, size_t s)
{
    (void)m;
    if (s) b[0] = 0;
}

/* ---- Residual: y = x + body(x) ---------------------------------------------- */

static nb_tensor *residual_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_tensor *y = run(m, 0, ctx, x);
    if (!y) return NULL;
    int same = y->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = y->shape[d] == x->shape[d];
    if (!same) {
        char sx[96], sy[96];
        return nb__op_fail(ctx, NB_ERR_SHAPE, "Residual: the body maps %s to %s; x + body(x) needs the same shape",
                           nb_shape_str(x, sx, sizeof sx), nb_shape_str(y, sy, sizeof sy));
    }
    return nb_add(ctx, x, y);
}

static const nb_module_vt residual_vt = {"Residual", residual_forward, no_desc, NULL};

nb_module *nb_nn_residual(nb_model *m, nb_module *body)
{
    if (!body) return NULL;   /* its constructor failed and kept the message */
    nb_module *mod = nb_module_new(m, &residual_vt);
    if (!mod || nb_module_add_child(mod, "body", body)) return NULL;
    return mod;
}

/* ---- torchvision BasicBlock ----------------------------------------------------
 * children: 0 conv1, 1 bn1, 2 relu, 3 conv2, 4 bn2, [5 downsample]; i[0] in,
 * i[1] out, i[2] stride. The ReLU child is applied twice, as torchvision's. */

static nb_tensor *block_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    nb_tensor *out = run(m, 4, ctx, run(m, 3, ctx, run(m, 2, ctx, run(m, 1, ctx, run(m, 0, ctx, x)))));
    nb_tensor *shortcut = m->nchildren > 5 ? run(m, 5, ctx, x) : x;
    if (!out || !shortcut) return NULL;
    return run(m, 2, ctx, nb_add(ctx, out, shortcut));
}

static const nb_module_vt block_vt = {"BasicBlock", block_forward, no_desc, NULL};

nb_module *nb_nn_basic_block(nb_model *m, nb_rng *rng, int in, int out, int stride)
{
    if (!m || !rng) {
        nb__fail(NB_ERR_ARG, "BasicBlock: model or generator is NULL");
        return NULL;
    }
    if (in <= 0 || out <= 0 || stride <= 0) {
        nb__fail(NB_ERR_ARG, "BasicBlock: in_channels=%d, out_channels=%d and stride=%d must be positive", in, out,
                 stride);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &block_vt);
    if (!mod) return NULL;
    mod->i[0] = in;
    mod->i[1] = out;
    mod->i[2] = stride;
    nb_conv2d_opts c1 = {{stride, stride}, {1, 1}, {1, 1}, 1}, c2 = {{1, 1}, {1, 1}, {1, 1}, 1};
    if (nb_module_add_child(mod, "conv1", nb_nn_conv2d(m, rng, in, out, 3, 3, &c1, 0)) ||
        nb_module_add_child(mod, "bn1", nb_nn_batch_norm2d(m, out, 1e-5f, 0.1f, 1)) ||
        nb_module_add_child(mod, "relu", nb_nn_relu(m)) ||
        nb_module_add_child(mod, "conv2", nb_nn_conv2d(m, rng, out, out, 3, 3, &c2, 0)) ||
        nb_module_add_child(mod, "bn2", nb_nn_batch_norm2d(m, out, 1e-5f, 0.1f, 1)))
        return NULL;
    if (stride != 1 || in != out) {
        nb_conv2d_opts c3 = {{stride, stride}, {0, 0}, {1, 1}, 1};
        nb_module *ds = nb_nn_sequential(m);
        if (!ds || nb_sequential_add(ds, nb_nn_conv2d(m, rng, in, out, 1, 1, &c3, 0)) ||
            nb_sequential_add(ds, nb_nn_batch_norm2d(m, out, 1e-5f, 0.1f, 1)) ||
            nb_module_add_child(mod, "downsample", ds))
            return NULL;
    }
    return mod;
}
