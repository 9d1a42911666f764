/* Embedding lookup (torch F.embedding): out[..., :] = weight[index, :].
 * Backward scatters the rows of the output gradient back into weight's
 * gradient, summing rows whose index repeats. The indices are copied into
 * the arena, so the caller's array may change after the call. */
#include "../core/internal.h"
#include <limits.h>

typedef struct {
    int32_t *idx;
    int64_t count;
} emb_saved;

nb_tensor *nb_embedding(nb_ctx *ctx, nb_tensor *weight, const int32_t *indices, int ndim, const int64_t *shape)
{
    if (!weight) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "embedding: context is NULL");
    char b[96];
    if (weight->ndim != 2)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "embedding: weight must be (num_embeddings, dim), got %s",
                           nb_shape_str(weight, b, sizeof b));
    if (ndim < 0 || ndim > NB_MAX_DIMS - 1 || (ndim > 0 && !shape))
        return nb__op_fail(ctx, NB_ERR_ARG, "embedding: indices need a shape of 0..%d dimensions (got %d)",
                           NB_MAX_DIMS - 1, ndim);
    int64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && count > INT64_MAX / 4 / shape[d]))
            return nb__op_fail(ctx, NB_ERR_SHAPE, "embedding: bad index shape (dimension %d is %lld)", d,
                               (long long)shape[d]);
        count *= shape[d];
    }
    if (count && !indices) return nb__op_fail(ctx, NB_ERR_ARG, "embedding: indices are NULL");
    int64_t rows = weight->shape[0], dim = weight->shape[1];
    for (int64_t k = 0; k < count; k++)
        if (indices[k] < 0 || indices[k] >= rows)
            return nb__op_fail(ctx, NB_ERR_ARG, "embedding: index %lld is %d, outside [0, %lld)", (long long)k,
                               (int)indices[k], (long long)rows);
    int64_t oshape[NB_MAX_DIMS];
    for (int d = 0; d < ndim; d++) oshape[d] = shape[d];
    oshape[ndim] = dim;
    nb_tensor *out = nb_tensor_new(ctx, ndim + 1, oshape);
    if (!out) return NULL;
    int64_t s0 = weight->stride[0], s1 = weight->stride[1];
    for (int64_t k = 0; k < count; k++) {
        const float *src = weight->data + indices[k] * s0;
        float *dst = out->data + k * dim;
        if (s1 == 1) memcpy(dst, src, (size_t)dim * sizeof(float));
        else for (int64_t j = 0; j < dim; j++) dst[j] = src[j * s1];
    }
    int want = nb_grad_enabled(ctx) && weight->requires_grad;
    nb__node *n = nb__record(ctx, NB__OP_EMBEDDING, out, &weight, 1);
    if (n) {
        emb_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
        int32_t *idx = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(count ? count : 1) * sizeof *idx);
        if (!s || !idx) return nb__op_fail(ctx, NB_ERR_NOMEM, "embedding: out of memory");
        if (count) memcpy(idx, indices, (size_t)count * sizeof *idx);
        s->idx = idx;
        s->count = count;
        n->saved = s;
    } else if (want) {
        return nb__op_fail(ctx, NB_ERR_NOMEM, "embedding: out of memory recording the op");
    }
    return out;
}

nb_status nb__bw_embedding(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    const emb_saved *s = n->saved;
    nb_tensor *w = n->in[0];
    int64_t dim = w->shape[1];
    const float *g = n->out->grad;
    for (int64_t k = 0; k < s->count; k++) {
        float *dst = w->grad + (int64_t)s->idx[k] * dim;
        const float *src = g + k * dim;
        for (int64_t j = 0; j < dim; j++) dst[j] += src[j];
    }
    return NB_OK;
}
