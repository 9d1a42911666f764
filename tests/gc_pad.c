/* Gradient-check cases (see tests/gradcheck.h) for pad2d: symmetric and
 * asymmetric padding, zero padding on some sides, (H,W), (C,H,W) and
 * (N,C,H,W) inputs, and a non-contiguous (transposed) leaf. */
#include "gradcheck.h"

static nb_tensor *f_pad(nb_ctx *ctx, gc_case *c)
{
    const int pad[4] = {c->iarg[0], c->iarg[1], c->iarg[2], c->iarg[3]};
    return nb_pad2d(ctx, c->in[0], pad);
}

int gc_pad2d(nb_ctx *ctx, int v, gc_case *c)
{
    static const struct {
        const char *label;
        int nd;
        int64_t shape[4];
        int transposed;
        int pad[4];
    } cases[] = {
        {"pad2d (2,3,4,5) by 2", 4, {2, 3, 4, 5}, 0, {2, 2, 2, 2}},
        {"pad2d (3,5,4) asymmetric", 3, {3, 5, 4}, 0, {1, 3, 0, 2}},
        {"pad2d (4,3) left only", 2, {4, 3}, 0, {2, 0, 0, 0}},
        {"pad2d (2,2,3,4) transposed leaf", 4, {2, 2, 3, 4}, 1, {1, 2, 3, 1}},
        {"pad2d (1,1,3,3) no padding", 4, {1, 1, 3, 3}, 0, {0, 0, 0, 0}},
    };
    if (v < 0 || v >= (int)(sizeof cases / sizeof cases[0])) return 0;
    int nd = cases[v].nd;
    int64_t sh[4];
    for (int d = 0; d < nd; d++) sh[d] = cases[v].shape[d];
    if (cases[v].transposed) {
        sh[nd - 2] = cases[v].shape[nd - 1];
        sh[nd - 1] = cases[v].shape[nd - 2];
    }
    nb_tensor *t = nb_tensor_randn(ctx, nd, sh);
    if (t && cases[v].transposed) t = nb_transpose(ctx, t, -1, -2);
    if (!t) return 0;
    c->label = cases[v].label;
    c->nin = 1;
    c->in[0] = nb_requires_grad(t, 1);
    c->fn = f_pad;
    for (int k = 0; k < 4; k++) c->iarg[k] = cases[v].pad[k];
    return 1;
}
