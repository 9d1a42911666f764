/* Data augmentation for image batches: random crop with zero padding
 * (torchvision RandomCrop(size, padding=p)) and random horizontal flip
 * (RandomHorizontalFlip(0.5)), applied in place.
 *
 * Every choice is a function of a key and the sample's position in the
 * epoch's order, never of a running generator: the key comes from the
 * loader's state (the generator before the epoch's shuffle), so a run
 * resumed from a checkpoint (which restores that state and position) draws
 * the very same crops and flips, and a batch's augmentation does not depend
 * on the thread count or on how many batches came before. */
#include "../core/internal.h"
#include <errno.h>
#include <stdlib.h>

#define AUG_MAX_PADDING 1024

/* splitmix64's finaliser: a counter-based generator. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, n) from 32 random bits (multiply-shift). */
static int below(uint32_t bits, int n) { return (int)(((uint64_t)bits * (uint64_t)n) >> 32); }

nb_status nb_augment_parse(const char *spec, nb_augment *a)
{
    if (!a) return nb__fail(NB_ERR_ARG, "augment: options are NULL");
    *a = (nb_augment){0};
    for (const char *p = spec ? spec : ""; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 4 && !strncmp(p, "flip", 4)) {
            a->hflip = 1;
        } else if (len > 5 && !strncmp(p, "crop:", 5)) {
            char *end;
            errno = 0;
            long v = strtol(p + 5, &end, 10);
            if (end != p + len || errno || v < 0 || v > AUG_MAX_PADDING)
                return nb__fail(NB_ERR_ARG, "augment: \"%.*s\": the crop padding must be an integer in [0, %d]",
                                (int)len, p, AUG_MAX_PADDING);
            a->crop_padding = (int)v;
        } else {
            return nb__fail(NB_ERR_ARG, "augment: unknown entry \"%.*s\" in \"%s\" (known: crop:PADDING, flip)",
                            (int)len, p, spec);
        }
        p += len;
        if (*p == ',') p++;
    }
    return NB_OK;
}

void nb_augment_draw(const nb_augment *a, uint64_t key, int64_t position, int *dy, int *dx, int *flip)
{
    uint64_t h = mix64(key + (uint64_t)(position + 1) * 0x9e3779b97f4a7c15ull);
    int span = 2 * a->crop_padding + 1;
    *dy = a->crop_padding ? below((uint32_t)h, span) - a->crop_padding : 0;
    *dx = a->crop_padding ? below((uint32_t)(h >> 32), span) - a->crop_padding : 0;
    *flip = a->hflip ? (int)(mix64(h) & 1) : 0;
}

/* One (H,W) plane in place: y[r][c] = x[r+dy][c'+dx] (0 outside), c' = W-1-c
 * when flipped, else c. tmp holds H*W floats. */
static void augment_plane(float *x, float *tmp, int64_t H, int64_t W, int dy, int dx, int flip)
{
    memcpy(tmp, x, (size_t)(H * W) * sizeof(float));
    for (int64_t r = 0; r < H; r++) {
        int64_t sr = r + dy;
        float *row = x + r * W;
        if (sr < 0 || sr >= H) {
            memset(row, 0, (size_t)W * sizeof(float));
            continue;
        }
        const float *src = tmp + sr * W;
        for (int64_t c = 0; c < W; c++) {
            int64_t sc = (flip ? W - 1 - c : c) + dx;
            row[c] = sc >= 0 && sc < W ? src[sc] : 0.0f;
        }
    }
}

nb_status nb_augment_apply(const nb_augment *a, uint64_t key, int64_t first, nb_tensor *x)
{
    if (!a || !x) return nb__fail(NB_ERR_ARG, "augment: options or batch is NULL");
    if (x->ndim != 4 || !nb_tensor_is_contiguous(x)) {
        char s[64];
        return nb__fail(NB_ERR_SHAPE, "augment: the batch must be a contiguous (N,C,H,W) tensor, got %s",
                        nb_shape_str(x, s, sizeof s));
    }
    if (a->crop_padding < 0 || a->crop_padding > AUG_MAX_PADDING)
        return nb__fail(NB_ERR_ARG, "augment: crop padding %d outside [0, %d]", a->crop_padding, AUG_MAX_PADDING);
    if (!a->crop_padding && !a->hflip) return NB_OK;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    if (!N || !C || !H || !W) return NB_OK;
    float *tmp = NB_MALLOC((size_t)(H * W) * sizeof(float));
    if (!tmp) return nb__fail(NB_ERR_NOMEM, "augment: out of memory");
    for (int64_t i = 0; i < N; i++) {
        int dy, dx, flip;
        nb_augment_draw(a, key, first + i, &dy, &dx, &flip);
        for (int64_t c = 0; c < C; c++) augment_plane(x->data + (i * C + c) * H * W, tmp, H, W, dy, dx, flip);
    }
    NB_FREE(tmp);
    return NB_OK;
}

/* The key of the loader's current epoch: its generator before the shuffle. */
static uint64_t epoch_key(const nb_loader_state *st)
{
    uint64_t k = 0x6a09e667f3bcc909ull;
    for (int i = 0; i < 4; i++) k = mix64(k ^ st->rng.s[i]);
    return k;
}

nb_status nb_loader_next_augmented(nb_loader *l, const nb_augment *a, nb_ctx *ctx, nb_batch *b)
{
    nb_loader_state st = {0};
    nb_loader_get_state(l, &st);
    nb_status s = nb_loader_next(l, ctx, b);
    if (s || !b->n || !a) return s;
    return nb_augment_apply(a, epoch_key(&st), st.pos, b->x);
}
