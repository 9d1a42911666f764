/* Zero padding of the last two dimensions (torch F.pad(x, (left, right, top,
 * bottom)) with value 0, nn.ZeroPad2d) and its module.
 *
 * How a 28x28 Fashion-MNIST image enters a network built for 32x32 (VGG's
 * five halvings): padding is a copy with a zero frame, and its gradient is
 * the centre of the output's gradient. Input (..., H, W) with at least two
 * dimensions; each of the leading planes is padded on its own. */
#include "../core/internal.h"
#include <stdio.h>

#define PAD_PAR_MIN 65536   /* output elements before threads pay off */

/* One plane: y (OH,OW) = zeros with x (H,W) at (top, left). */
static void pad_plane(float *restrict y, const float *restrict x, int64_t H, int64_t W, int64_t OW,
                      int64_t OH, int top, int left)
{
    memset(y, 0, (size_t)(top * OW) * sizeof(float));
    for (int64_t r = 0; r < H; r++) {
        float *row = y + (top + r) * OW;
        memset(row, 0, (size_t)left * sizeof(float));
        memcpy(row + left, x + r * W, (size_t)W * sizeof(float));
        memset(row + left + W, 0, (size_t)(OW - left - W) * sizeof(float));
    }
    memset(y + (top + H) * OW, 0, (size_t)((OH - top - H) * OW) * sizeof(float));
}

/* Planes of x (H,W) and y (OH,OW), the frame at (top, left): x into y
 * forward, gy into gx backward. */
typedef struct {
    const float *x, *gy;
    float *y, *gx;
    int64_t H, W, OH, OW, top, left;
} pad_job;

static void pad_planes(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const pad_job *j = ctx;
    for (int64_t p = lo; p < hi; p++)
        pad_plane(j->y + p * j->OH * j->OW, j->x + p * j->H * j->W, j->H, j->W, j->OW, j->OH, (int)j->top,
                  (int)j->left);
}

static void pad_planes_bw(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const pad_job *j = ctx;
    const int64_t H = j->H, W = j->W, OW = j->OW;
    for (int64_t p = lo; p < hi; p++)
        for (int64_t r = 0; r < H; r++) {
            float *dst = j->gx + (p * H + r) * W;
            const float *src = j->gy + p * j->OH * OW + (j->top + r) * OW + j->left;
            for (int64_t c = 0; c < W; c++) dst[c] += src[c];
        }
}

nb_tensor *nb_pad2d(nb_ctx *ctx, nb_tensor *x, const int pad[4])
{
    if (!x) return NULL;
    if (!ctx || !pad) return nb__op_fail(ctx, NB_ERR_ARG, "pad2d: context or padding is NULL");
    if (x->ndim < 2) return nb__op_fail(ctx, NB_ERR_SHAPE, "pad2d: input has %d dimensions (needs (..., H, W))", x->ndim);
    for (int k = 0; k < 4; k++)
        if (pad[k] < 0 || pad[k] > (1 << 20))
            return nb__op_fail(ctx, NB_ERR_ARG, "pad2d: padding (%d, %d, %d, %d) must be in [0, 2^20]", pad[0],
                               pad[1], pad[2], pad[3]);
    x = nb_contiguous(ctx, x);
    if (!x) return NULL;
    int nd = x->ndim;
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    int64_t H = x->shape[nd - 2], W = x->shape[nd - 1];
    shape[nd - 2] = H + pad[2] + pad[3];
    shape[nd - 1] = W + pad[0] + pad[1];
    nb_tensor *y = nb_tensor_new(ctx, nd, shape);
    if (!y) return NULL;
    int64_t OH = shape[nd - 2], OW = shape[nd - 1];
    if (!nb_tensor_numel(x)) {   /* an empty plane pads to zeros only */
        memset(y->data, 0, (size_t)nb_tensor_numel(y) * sizeof(float));
    } else {
        int64_t planes = nb_tensor_numel(x) / (H * W);
        pad_job j = {.x = x->data, .y = y->data, .H = H, .W = W, .OH = OH, .OW = OW, .top = pad[2], .left = pad[0]};
        nb__par_for(planes, nb__par_parts(planes, nb_tensor_numel(y) >= PAD_PAR_MIN), pad_planes, &j);
    }
    nb__node *n = nb__record(ctx, NB__OP_PAD2D, y, &x, 1);
    if (n) {
        n->i[0] = pad[0];
        n->i[2] = pad[2];
    }
    return y;
}

/* gx (H,W) += the centre of gy (OH,OW) at (top, left), plane by plane. */
nb_status nb__bw_pad2d(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0];
    if (!x->requires_grad) return NB_OK;
    int nd = x->ndim;
    int64_t H = x->shape[nd - 2], W = x->shape[nd - 1];
    int64_t OH = n->out->shape[nd - 2], OW = n->out->shape[nd - 1];
    if (!nb_tensor_numel(x)) return NB_OK;
    int64_t planes = nb_tensor_numel(x) / (H * W);
    pad_job j = {.gy = n->out->grad, .gx = x->grad, .H = H, .W = W, .OH = OH, .OW = OW, .top = n->i[2],
                 .left = n->i[0]};
    nb__par_for(planes, nb__par_parts(planes, nb_tensor_numel(n->out) >= PAD_PAR_MIN), pad_planes_bw, &j);
    return NB_OK;
}

/* ---- torch.nn.ZeroPad2d -------------------------------------------------------
 * i[0..3] = left, right, top, bottom. */
static nb_tensor *zero_pad_forward(nb_module *m, nb_ctx *ctx, nb_tensor *x)
{
    const int pad[4] = {(int)m->i[0], (int)m->i[1], (int)m->i[2], (int)m->i[3]};
    return nb_pad2d(ctx, x, pad);
}

static void zero_pad_describe(const nb_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "(%lld, %lld, %lld, %lld)", (long long)m->i[0], (long long)m->i[1], (long long)m->i[2],
             (long long)m->i[3]);
}

/* A symmetric padding is a 1x1 window with that padding, for the receptive
 * field; an asymmetric one has no such geometry (the field ends there). */
static int zero_pad_geometry(const nb_module *m, nb_layer_geometry *g)
{
    if (m->i[0] != m->i[1] || m->i[2] != m->i[3]) return 0;
    g->kernel[0] = g->kernel[1] = 1;
    g->stride[0] = g->stride[1] = 1;
    g->dilation[0] = g->dilation[1] = 1;
    g->padding[0] = (int)m->i[2];
    g->padding[1] = (int)m->i[0];
    return 1;
}

static const nb_module_vt zero_pad_vt = {"ZeroPad2d", zero_pad_forward, zero_pad_describe, zero_pad_geometry};

nb_module *nb_nn_zero_pad2d(nb_model *m, int left, int right, int top, int bottom)
{
    if (left < 0 || right < 0 || top < 0 || bottom < 0) {
        nb__fail(NB_ERR_ARG, "ZeroPad2d: padding (%d, %d, %d, %d) must not be negative", left, right, top, bottom);
        return NULL;
    }
    nb_module *mod = nb_module_new(m, &zero_pad_vt);
    if (!mod) return NULL;
    mod->i[0] = left, mod->i[1] = right, mod->i[2] = top, mod->i[3] = bottom;
    return mod;
}
