/* Mini-batch loader: walks a dataset in (shuffled) order, copying each batch
 * into a new arena tensor. The permutation of epoch k comes from the loader's
 * own generator after k shuffles, so it depends only on the seed and k. The
 * dataset must outlive the loader and keep its size while the loader lives. */
#include "../core/internal.h"

struct nb_loader {
    const nb_dataset *d;
    int64_t  n;            /* samples, fixed at creation */
    int64_t  batch;
    int64_t  sample;       /* floats per sample: c*h*w */
    int      shuffle, drop_last;
    nb_rng   rng;
    nb_rng   rng_epoch;    /* rng before the current epoch's shuffle */
    uint32_t *perm;        /* order of the current epoch (NULL without shuffle) */
    int64_t  pos;          /* next position in the order */
    int32_t  *y;           /* labels of the last batch */
};

nb_status nb_loader_new(const nb_dataset *d, int64_t batch, int shuffle, int drop_last,
                        uint64_t seed, nb_loader **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "loader: out is NULL");
    *out = NULL;
    if (!d) return nb__fail(NB_ERR_ARG, "loader: dataset is NULL");
    if (batch <= 0) return nb__fail(NB_ERR_ARG, "loader: batch size %lld (must be at least 1)", (long long)batch);
    if (d->n < 0 || d->n > (int64_t)UINT32_MAX)
        return nb__fail(NB_ERR_ARG, "loader: dataset has %lld samples (0..%u supported)", (long long)d->n, UINT32_MAX);
    if (d->c <= 0 || d->h <= 0 || d->w <= 0)
        return nb__fail(NB_ERR_SHAPE, "loader: dataset sample shape (%d,%d,%d) has a dimension below 1", d->c, d->h, d->w);
    if (d->n > 0 && (!d->x || !d->y)) return nb__fail(NB_ERR_ARG, "loader: dataset has no data");

    nb_loader *l = NB_MALLOC(sizeof *l);
    if (!l) return nb__fail(NB_ERR_NOMEM, "loader: out of memory");
    memset(l, 0, sizeof *l);
    l->d = d;
    l->n = d->n;
    l->batch = batch;
    l->sample = (int64_t)d->c * d->h * d->w;
    l->shuffle = shuffle != 0;
    l->drop_last = drop_last != 0;
    nb_rng_seed(&l->rng, seed);
    int64_t ycap = batch < l->n ? batch : (l->n ? l->n : 1);   /* labels of one batch */
    l->y = NB_MALLOC((size_t)ycap * sizeof(int32_t));
    if (l->shuffle) l->perm = NB_MALLOC((size_t)(l->n ? l->n : 1) * sizeof(uint32_t));
    if (!l->y || (l->shuffle && !l->perm)) {
        nb_loader_free(l);
        return nb__fail(NB_ERR_NOMEM, "loader: cannot allocate the order of %lld samples", (long long)d->n);
    }
    nb_loader_start_epoch(l);   /* ready for the first epoch */
    *out = l;
    return NB_OK;
}

void nb_loader_free(nb_loader *l)
{
    if (!l) return;
    NB_FREE(l->perm);
    NB_FREE(l->y);
    NB_FREE(l);
}

int64_t nb_loader_num_batches(const nb_loader *l)
{
    if (!l) return 0;
    return l->drop_last ? l->n / l->batch : (l->n + l->batch - 1) / l->batch;
}

void nb_loader_start_epoch(nb_loader *l)
{
    if (!l) return;
    l->pos = 0;
    l->rng_epoch = l->rng;
    if (l->shuffle) {
        /* From the identity each time, so epoch k is the k-th draw only. */
        for (int64_t i = 0; i < l->n; i++) l->perm[i] = (uint32_t)i;
        nb_rng_shuffle_u32(&l->rng, l->perm, (size_t)l->n);
    }
}

nb_status nb_loader_next(nb_loader *l, nb_ctx *ctx, nb_batch *b)
{
    if (!b) return nb__fail(NB_ERR_ARG, "loader: batch is NULL");
    b->x = NULL;
    b->y = NULL;
    b->n = 0;
    if (!l || !ctx) return nb__fail(NB_ERR_ARG, "loader: loader or context is NULL");
    int64_t left = l->n - l->pos;
    int64_t n = left < l->batch ? left : l->batch;
    if (n <= 0 || (l->drop_last && n < l->batch)) return NB_OK;   /* end of the epoch */

    const nb_dataset *d = l->d;
    nb_tensor *x = nb_tensor_new(ctx, 4, (int64_t[]){n, d->c, d->h, d->w});
    if (!x) {
        nb_status st = nb_ctx_status(ctx);
        return st ? st : nb__fail(NB_ERR_NOMEM, "loader: cannot allocate a batch");
    }
    size_t bytes = (size_t)l->sample * sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = l->shuffle ? (int64_t)l->perm[l->pos + i] : l->pos + i;
        memcpy(x->data + i * l->sample, d->x + k * l->sample, bytes);
        l->y[i] = d->y[k];
    }
    l->pos += n;
    b->x = x;
    b->y = l->y;
    b->n = n;
    return NB_OK;
}

void nb_loader_get_state(const nb_loader *l, nb_loader_state *st)
{
    if (!l || !st) return;
    *st = (nb_loader_state){.rng = l->rng_epoch, .pos = l->pos, .n = l->n, .batch = l->batch};
}

nb_status nb_loader_set_state(nb_loader *l, const nb_loader_state *st)
{
    if (!l || !st) return nb__fail(NB_ERR_ARG, "loader: NULL argument");
    if (st->n != l->n || st->batch != l->batch)
        return nb__fail(NB_ERR_ARG, "loader: the state is of a loader of %lld samples in batches of %lld, this one has %lld in %lld",
                        (long long)st->n, (long long)st->batch, (long long)l->n, (long long)l->batch);
    if (st->pos < 0 || st->pos > l->n)
        return nb__fail(NB_ERR_ARG, "loader: position %lld is outside [0, %lld]", (long long)st->pos, (long long)l->n);
    l->rng = st->rng;
    nb_loader_start_epoch(l);
    l->pos = st->pos;
    return NB_OK;
}
