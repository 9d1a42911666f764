/* Tensor structs and storage in the context's arena. */
#include "ctx.h"

int64_t nb__numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void nb__contig_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i];
    }
}

int64_t nb_tensor_numel(const nb_tensor *t) { return nb__numel(t->ndim, t->shape); }

int nb_tensor_is_contiguous(const nb_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* Shape checks shared by the constructors: at most NB_MAX_DIMS dimensions,
 * none negative, and a byte size that fits in size_t. */
static nb_status check_shape(int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > NB_MAX_DIMS)
        return nb__fail(NB_ERR_SHAPE, "tensor: %d dimensions (0..%d supported)", ndim, NB_MAX_DIMS);
    if (ndim > 0 && !shape) return nb__fail(NB_ERR_ARG, "tensor: shape is NULL");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return nb__fail(NB_ERR_SHAPE, "tensor: dimension %d is negative (%lld)", i, (long long)shape[i]);
        if (shape[i] && n > (INT64_MAX / 8) / shape[i]) return nb__fail(NB_ERR_SHAPE, "tensor: shape too large");
        n *= shape[i];
    }
    return NB_OK;
}

nb_tensor *nb__view_struct(nb_ctx *ctx, float *data, int ndim, const int64_t *shape)
{
    nb_tensor *t = nb_arena_alloc(ctx->arena, sizeof *t);
    if (!t) {
        nb__ctx_set_status(ctx, NB_ERR_NOMEM);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->data = data;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    nb__contig_strides(ndim, t->shape, t->stride);
    return t;
}

nb_tensor *nb_tensor_new(nb_ctx *ctx, int ndim, const int64_t *shape)
{
    if (!ctx) {
        nb__fail(NB_ERR_ARG, "tensor: context is NULL");
        return NULL;
    }
    nb_status s = check_shape(ndim, shape);
    if (s) {
        nb__ctx_set_status(ctx, s);
        return NULL;
    }
    float *d = nb_arena_alloc(ctx->arena, (size_t)nb__numel(ndim, shape) * sizeof(float));
    if (!d) {
        nb__ctx_set_status(ctx, NB_ERR_NOMEM);
        return NULL;
    }
    return nb__view_struct(ctx, d, ndim, shape);
}

nb_tensor *nb_tensor_full(nb_ctx *ctx, int ndim, const int64_t *shape, float v)
{
    nb_tensor *t = nb_tensor_new(ctx, ndim, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = v;
    return t;
}

nb_tensor *nb_tensor_zeros(nb_ctx *ctx, int ndim, const int64_t *shape)
{
    return nb_tensor_full(ctx, ndim, shape, 0.0f);
}

nb_tensor *nb_tensor_from(nb_ctx *ctx, int ndim, const int64_t *shape, const float *src)
{
    nb_tensor *t = nb_tensor_new(ctx, ndim, shape);
    if (!t) return NULL;
    if (!src) return nb__op_fail(ctx, NB_ERR_ARG, "tensor_from: source is NULL");
    memcpy(t->data, src, (size_t)nb_tensor_numel(t) * sizeof(float));
    return t;
}

nb_tensor *nb_tensor_scalar(nb_ctx *ctx, float v) { return nb_tensor_full(ctx, 0, NULL, v); }

nb_tensor *nb_tensor_randn(nb_ctx *ctx, int ndim, const int64_t *shape)
{
    nb_tensor *t = nb_tensor_new(ctx, ndim, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = nb_rng_normal(&ctx->rng);
    return t;
}

nb_tensor *nb_tensor_rand(nb_ctx *ctx, int ndim, const int64_t *shape)
{
    nb_tensor *t = nb_tensor_new(ctx, ndim, shape);
    if (!t) return NULL;
    int64_t n = nb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = nb_rng_uniform(&ctx->rng);
    return t;
}

void nb_tensor_copy_out(const nb_tensor *t, float *dst)
{
    int64_t n = nb_tensor_numel(t);
    if (nb_tensor_is_contiguous(t)) {
        memcpy(dst, t->data, (size_t)n * sizeof(float));
        return;
    }
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        dst[k] = t->data[off];
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

float nb_tensor_item(const nb_tensor *t) { return t->data[0]; }

char *nb_shape_str(const nb_tensor *t, char *buf, size_t size)
{
    size_t n = 0;
    if (size == 0) return buf;
    buf[0] = 0;
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < t->ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

nb_tensor *nb_requires_grad(nb_tensor *t, int on)
{
    if (t) t->requires_grad = on != 0;
    return t;
}
