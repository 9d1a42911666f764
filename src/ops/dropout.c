/* Dropout (torch F.dropout): in training each element is zeroed with
 * probability p and the rest are scaled by 1/(1-p); in evaluation, or with
 * p == 0, x itself is returned (no copy, nothing recorded). p == 1 gives x * 0
 * (zeros, NaN stays NaN as in torch).
 *
 * The mask depends only on the context's generator, never on the thread
 * count: each call draws one 64-bit key from nb_ctx_rng(ctx), and element
 * pair (2k, 2k+1) takes the low and high 32 bits of splitmix64's output for
 * counter k under that key (splitmix64 is a counter-based generator, so any
 * thread can produce any block of the stream). Element i is kept when its 32
 * bits are >= round(p * 2^32). The mask is saved as bytes for backward:
 * dx += dy * mask / (1-p). */
#include "../core/internal.h"
#include "../kernels/simd.h"
#include <math.h>

#define DROP_PAR_MIN 65536   /* elements before threads pay off */
#define DROP_BLOCK   4096    /* elements per block of the stream (even) */

typedef struct {
    uint8_t *mask;
    float scale;
} drop_saved;

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Elements [i0, i0 + n) (i0 even, n <= DROP_BLOCK): y = x * (kept ? scale : 0)
 * and the mask when mask is not NULL. */
NB_CLONES static void drop_block(const float *restrict x, float *restrict y, uint8_t *restrict mask, int64_t i0,
                                int64_t n, uint64_t key, uint32_t thr, float scale)
{
    uint32_t r[DROP_BLOCK];
    uint64_t c0 = key + (uint64_t)(i0 / 2) * 0x9e3779b97f4a7c15ull;
    for (int64_t k = 0; k < (n + 1) / 2; k++) {
        uint64_t w = mix64(c0 + (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ull);
        r[2 * k] = (uint32_t)w;
        r[2 * k + 1] = (uint32_t)(w >> 32);
    }
    if (mask) {
        for (int64_t i = 0; i < n; i++) {
            int keep = r[i] >= thr;
            mask[i] = (uint8_t)keep;
            y[i] = x[i] * (keep ? scale : 0.0f);
        }
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * (r[i] >= thr ? scale : 0.0f);
    }
}

/* The blocks of one call, forward (x into y and mask) or backward (gy into
 * gx). */
typedef struct {
    const float *x, *gy;
    float *y, *gx;
    uint8_t *mask;
    int64_t n;
    uint64_t key;
    uint32_t thr;
    float scale;
    int fresh;
} drop_job;

static void drop_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const drop_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        int64_t i0 = b * DROP_BLOCK, len = j->n - i0 < DROP_BLOCK ? j->n - i0 : DROP_BLOCK;
        drop_block(j->x + i0, j->y + i0, j->mask ? j->mask + i0 : NULL, i0, len, j->key, j->thr, j->scale);
    }
}

nb_tensor *nb_dropout(nb_ctx *ctx, nb_tensor *x, float p, int training)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "dropout: context is NULL");
    if (!(p >= 0.0f && p <= 1.0f))
        return nb__op_fail(ctx, NB_ERR_ARG, "dropout: probability p must be between 0 and 1, got %g", (double)p);
    if (!training || p == 0.0f) return x;
    nb_tensor *y = nb_tensor_new(ctx, x->ndim, x->shape);
    if (!y) return NULL;
    int64_t n = nb_tensor_numel(x);
    const float *src = x->data;
    if (!nb_tensor_is_contiguous(x)) {
        nb_tensor_copy_out(x, y->data);   /* then transform in place */
        src = y->data;
    }
    int want = nb_grad_enabled(ctx) && x->requires_grad;
    uint8_t *mask = want ? nb_arena_alloc(nb_ctx_arena(ctx), (size_t)n) : NULL;
    drop_saved *s = want ? nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s) : NULL;
    if (want && (!mask || !s)) return nb__op_fail(ctx, NB_ERR_NOMEM, "dropout: out of memory");
    uint64_t key = nb_rng_u64(nb_ctx_rng(ctx));
    float scale = 0.0f;
    if (p == 1.0f) {
        for (int64_t i = 0; i < n; i++) y->data[i] = src[i] * 0.0f;
        if (mask) memset(mask, 0, (size_t)n);
    } else {
        /* torch: noise.bernoulli_(1 - p).div_(1 - p), 1 - p in double */
        scale = 1.0f / (float)(1.0 - (double)p);
        double t = ldexp((double)p, 32) + 0.5;
        uint32_t thr = t >= 4294967295.0 ? UINT32_MAX : (uint32_t)t;
        int64_t nb = (n + DROP_BLOCK - 1) / DROP_BLOCK;
        drop_job j = {.x = src, .y = y->data, .mask = mask, .n = n, .key = key, .thr = thr, .scale = scale};
        nb__par_for(nb, nb__par_parts(nb, n >= DROP_PAR_MIN), drop_blocks, &j);
    }
    nb__node *node = nb__record(ctx, NB__OP_DROPOUT, y, &x, 1);
    if (want && !node) return nb__op_fail(ctx, NB_ERR_NOMEM, "dropout: out of memory recording the op");
    if (node) {
        s->mask = mask;
        s->scale = scale;
        node->saved = s;
    }
    return y;
}

/* gx += gy * mask * scale, or = when fresh */
NB_CLONES static void drop_bw_block(float *restrict gx, const float *restrict gy, const uint8_t *restrict mask,
                                   int64_t n, float scale, int fresh)
{
    if (fresh)
        for (int64_t i = 0; i < n; i++) gx[i] = gy[i] * (mask[i] ? scale : 0.0f);
    else
        for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (mask[i] ? scale : 0.0f);
}

static void drop_bw_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const drop_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        int64_t i0 = b * DROP_BLOCK, m = j->n - i0 < DROP_BLOCK ? j->n - i0 : DROP_BLOCK;
        drop_bw_block(j->gx + i0, j->gy + i0, j->mask + i0, m, j->scale, j->fresh);
    }
}

nb_status nb__bw_dropout(nb_ctx *ctx, nb__node *n)
{
    (void)ctx;
    nb_tensor *x = n->in[0];
    if (!x->requires_grad) return NB_OK;
    const drop_saved *s = n->saved;
    int64_t len = nb_tensor_numel(x), nb = (len + DROP_BLOCK - 1) / DROP_BLOCK;
    drop_job j = {.gy = n->out->grad, .gx = x->grad, .mask = s->mask, .n = len, .scale = s->scale,
                  .fresh = nb__fresh(n, 0)};
    nb__par_for(nb, nb__par_parts(nb, len >= DROP_PAR_MIN), drop_bw_blocks, &j);
    return NB_OK;
}
