/* batch_norm -> relu -> max_pool2d(kernel 2, stride 2) as one op: the block
 * that ends each stage of small CNNs, run by nn's Sequential in place of its
 * three layers (src/nn/batchnorm.c).
 *
 * Apart, the three ops write the normalised tensor, its relu and the pooled
 * result, and their backward passes zero-fill and re-read a gradient of each
 * size: about twenty passes over an activation-sized tensor per step. Fused,
 * a thread takes a channel at a time: its statistics (two passes over the
 * channel, the second from cache), then per window z = (x - mean) * a + b
 * for the four inputs, their maximum and its relu. Forward reads x once and
 * writes the quarter-size output and one byte per output: the position of
 * the window's winner (0..3, row-major) or NONE when the output is not
 * positive (relu passes no gradient there). Backward per channel sums the
 * output gradient at the winners (the only non-zero entries of the
 * normalised tensor's gradient dz) and writes
 *   dx = k dz - p (x - mean) - q
 * as batch_norm's backward does, in one pass. Inputs outside every window
 * (the last row or column of an odd size) have dz = 0.
 *
 * The output is the three ops' bit for bit: the maximum is taken over z with
 * max_pool2d's rule (a later value wins when greater or NaN), and relu of the
 * maximum equals the maximum of relu except for the sign of a zero, which
 * the non-positive case copies from the window's first relu. The gradients
 * agree to rounding (the sums are grouped differently).
 *
 * With a one-channel convolution in front (the first block of an image
 * model), its weight gradient is taken here too, from dx in cache: see the
 * last section. Measured and not kept: that convolution's output
 * recomputed per channel in a buffer in cache, in forward and again in
 * backward, instead of stored: 3-18% slower on the CNN's first block with 1
 * and 2 threads; that tensor (6.4 MB) stays in this machine's last-level
 * cache, so its trips cost less than the recomputation. */
#include "batchnorm.h"
#include "../kernels/bn_pool.h"
#include "../kernels/simd.h"
#include <math.h>

#define BP_PAR_MIN 32768    /* input elements before threads pay off */

typedef struct {
    const float *x;          /* contiguous input (N, C, H, W) */
    float *mean, *invstd;    /* per channel, as batch_norm */
    double *meand;
    uint8_t *win;            /* per output: winner 0..3 or NB__BP_NONE */
    int64_t N, C, H, W;
    int training;
    int64_t count;           /* values per channel behind the statistics */
    int synced;              /* over the job (nb__bn_sync), as batch_norm */
} bp_saved;

/* ---- portable plane kernels (see src/kernels/bn_pool.h) ---------------------- */

static void fw_plane_c(const float *x, int64_t W, int64_t OH, int64_t OW, float mc, float a, float b, float *out,
                       uint8_t *win)
{
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        for (int64_t o = 0; o < OW; o++) {
            const float z[4] = {(r0[2 * o] - mc) * a + b, (r0[2 * o + 1] - mc) * a + b, (r1[2 * o] - mc) * a + b,
                                (r1[2 * o + 1] - mc) * a + b};
            float m = z[0];
            int k = 0;
            for (int j = 1; j < 4; j++)
                if (z[j] > m || z[j] != z[j]) m = z[j], k = j;
            out[oh * OW + o] = m > 0 || m != m ? m : (z[0] < 0 ? 0.0f : z[0]);
            if (win) win[oh * OW + o] = (uint8_t)(m > 0 ? k : NB__BP_NONE);
        }
    }
}

/* The input under output o's winner (none picks the last). */
static inline float at_winner(const float *r0, const float *r1, int64_t o, int w)
{
    return w == 0 ? r0[2 * o] : w == 1 ? r0[2 * o + 1] : w == 2 ? r1[2 * o] : r1[2 * o + 1];
}

static void sums_plane_c(const float *x, int64_t W, int64_t OH, int64_t OW, const float *g, const uint8_t *win,
                         float mc, double *sdy, double *sdyx)
{
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        for (int64_t o = 0; o < OW; o++) {
            const int w = win[oh * OW + o];
            const float gw = w == NB__BP_NONE ? 0.0f : g[oh * OW + o];
            const int l = nb__bp_lane(oh, o, OW);
            sdy[l] += (double)gw;
            sdyx[l] += (double)(gw * (at_winner(r0, r1, o, w) - mc));
        }
    }
}

static inline void put(float *d, float v, int fresh) { *d = fresh ? v : *d + v; }

static void dx_plane_c(const float *x, int64_t H, int64_t W, int64_t OW, const float *g, const uint8_t *win,
                       float mc, float k, float p, float q, float *dx, int fresh)
{
    for (int64_t h = 0; h < H; h++)
        for (int64_t j = 0; j < W; j++) {
            const int64_t o = j / 2;
            float dz = 0.0f;   /* inputs outside every window (odd H or W) stay 0 */
            if (h < H / 2 * 2 && o < OW) {
                const int64_t oi = h / 2 * OW + o;
                dz = win[oi] == (h % 2) * 2 + j % 2 ? g[oi] : 0.0f;
            }
            put(dx + h * W + j, k * dz - p * (x[h * W + j] - mc) - q, fresh);
        }
}

static const nb__bn_pool_kernels bp_portable = {fw_plane_c, sums_plane_c, dx_plane_c};

static int bp_simd_on = 1;

int nb__bn_pool_use_simd(int on)
{
    int old = bp_simd_on;
    bp_simd_on = on != 0;
    return old;
}

static const nb__bn_pool_kernels *bp_kernels(void)
{
    if (bp_simd_on && nb__bn_pool_avx512.forward && nb__cpu_avx512()) return &nb__bn_pool_avx512;
    return &bp_portable;
}

/* ---- the op ----------------------------------------------------------------- */

static int check_args(nb_ctx *ctx, const nb_tensor *x, const nb_tensor *weight, const nb_tensor *bias,
                      const float *rm, const float *rv, int training, float eps)
{
    const char *name = "batch_norm_relu_max_pool";
    char sx[96], sp[96];
    if (x->ndim != 4 || x->shape[2] < 2 || x->shape[3] < 2) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: input must be (N, C, H, W) with H, W >= 2, got %s", name,
                    nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    const nb_tensor *pw[2] = {weight, bias};
    for (int k = 0; k < 2; k++)
        if (pw[k] && (pw[k]->ndim != 1 || pw[k]->shape[0] != x->shape[1])) {
            nb__op_fail(ctx, NB_ERR_SHAPE, "%s: %s %s does not match the %lld channels of input %s", name,
                        k ? "bias" : "weight", nb_shape_str(pw[k], sp, sizeof sp), (long long)x->shape[1],
                        nb_shape_str(x, sx, sizeof sx));
            return 0;
        }
    if (!(eps >= 0) || isinf(eps)) {
        nb__op_fail(ctx, NB_ERR_ARG, "%s: eps must be finite and >= 0, got %g", name, eps);
        return 0;
    }
    if (!training && (!rm || !rv)) {
        nb__op_fail(ctx, NB_ERR_ARG, "%s: running_mean and running_var must be given in evaluation mode", name);
        return 0;
    }
    if (training && x->shape[0] * x->shape[2] * x->shape[3] == 1 && !nb__bn_get_sync()) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "%s: Expected more than 1 value per channel when training, got input %s",
                    name, nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    return 1;
}

/* The channels of one forward (statistics unless synced, then y and the
 * winners) or backward (sums, affine gradients, dx). */
typedef struct {
    bp_saved *s;
    const nb_tensor *weight, *bias;
    float *running_mean, *running_var, *y;
    float eps, momentum;
    int sync;
    const nb__bn_pool_kernels *K;
    const float *dy;
    float *dx, *dw, *db;
    int fresh;
} bp_job;

static void bp_forward_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bp_job *j = ctx;
    bp_saved *s = j->s;
    const int64_t N = s->N, C = s->C, W = s->W, OH = s->H / 2, OW = W / 2, S = s->H * W, OS = OH * OW;
    const float *xd = s->x;
    for (int64_t c = lo; c < hi; c++) {
        if (!j->sync)
            nb__bn_channel_stats(xd + c * S, C * S, N, S, c, s->training, j->eps, j->momentum, j->running_mean,
                                 j->running_var, s->mean, s->meand, s->invstd);
        float a, b;
        const float mc = s->mean[c];
        nb__bn_coefficients(j->weight, j->bias, c, mc, s->meand[c], s->invstd[c], &a, &b);
        for (int64_t i = 0; i < N; i++) {
            const float *xp = xd + (i * C + c) * S;
            float *yp = j->y + (i * C + c) * OS;
            j->K->forward(xp, W, OH, OW, mc, a, b, yp, s->win ? s->win + (i * C + c) * OS : NULL);
        }
    }
}

/* The forward of both ops: the output, and in *sp what backward needs
 * (the winners only when `want`). NULL on failure (recorded in ctx). */
static nb_tensor *bp_forward(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias, float *running_mean,
                             float *running_var, int training, float momentum, float eps, int want, bp_saved **sp)
{
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t OH = H / 2, OW = W / 2, S = H * W, OS = OH * OW;
    nb_tensor *out = nb_tensor_new(ctx, 4, (int64_t[]){N, C, OH, OW});
    nb_arena *ar = nb_ctx_arena(ctx);
    bp_saved *s = nb_arena_alloc(ar, sizeof *s);
    float *stats = nb_arena_alloc(ar, (size_t)(2 * C) * sizeof(float));
    double *meand = nb_arena_alloc(ar, (size_t)C * sizeof(double));
    uint8_t *win = want ? nb_arena_alloc(ar, (size_t)(N * C * OS)) : NULL;
    if (!out || !s || !stats || !meand || (want && !win))
        return nb__op_fail(ctx, NB_ERR_NOMEM, "batch_norm_relu_max_pool: out of memory");
    const float *xd = x->data;
    if (!nb_tensor_is_contiguous(x)) {
        float *c = nb_arena_alloc(ar, (size_t)nb_tensor_numel(x) * sizeof(float));
        if (!c) return nb__op_fail(ctx, NB_ERR_NOMEM, "batch_norm_relu_max_pool: out of memory");
        nb_tensor_copy_out(x, c);
        xd = c;
    }
    const nb__bn_sync *sync = training ? nb__bn_get_sync() : NULL;
    *s = (bp_saved){xd, stats, stats + C, meand, win, N, C, H, W, training != 0, N * S, sync != NULL};
    float *y = out->data;
    const nb__bn_pool_kernels *K = bp_kernels();
    if (sync) {
        nb_status st = nb__bn_sync_stats(sync, ar, xd, N, C, S, eps, momentum, running_mean, running_var, s->mean,
                                         meand, s->invstd, &s->count);
        if (st) {
            nb__ctx_set_status(ctx, st);
            return NULL;
        }
    }
    if (N == 0 && !sync) /* an empty batch: nothing to normalise, statistics untouched (as batch_norm) */
        for (int64_t c = 0; c < C; c++) s->mean[c] = 0, meand[c] = 0, s->invstd[c] = 0;
    else {
        bp_job j = {.s = s, .weight = weight, .bias = bias, .running_mean = running_mean, .running_var = running_var,
                    .y = y, .eps = eps, .momentum = momentum, .sync = sync != NULL, .K = K};
        nb__par_for_shared(C, C, nb__par_parts(C, N * C * S >= BP_PAR_MIN), bp_forward_channels, &j);
    }
    *sp = s;
    return out;
}

static int any_requires_grad(nb_tensor *const *t, int n)
{
    int r = 0;
    for (int k = 0; k < n; k++) r |= t[k] && t[k]->requires_grad;
    return r;
}

nb_tensor *nb__batch_norm_relu_max_pool(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias,
                                        float *running_mean, float *running_var, int training, float momentum,
                                        float eps)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "batch_norm_relu_max_pool: context is NULL");
    if (!check_args(ctx, x, weight, bias, running_mean, running_var, training, eps)) return NULL;
    nb_tensor *in[3] = {x, NULL, NULL};
    int nin = 1;
    if (weight) in[nin++] = weight;
    if (bias) in[nin++] = bias;
    const int want = nb_grad_enabled(ctx) && any_requires_grad(in, nin);
    bp_saved *s = NULL;
    nb_tensor *out = bp_forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, want, &s);
    if (!out) return NULL;
    nb__node *node = nb__record(ctx, NB__OP_BATCH_NORM_RELU_MAX_POOL, out, in, nin);
    if (want && !node)
        return nb__op_fail(ctx, NB_ERR_NOMEM, "batch_norm_relu_max_pool: out of memory recording the op");
    if (node) {
        node->saved = s;
        node->i[0] = weight != NULL;
        node->i[1] = bias != NULL;
    }
    return out;
}

/* Channel c's sum dy and sum dy (x - meand) over the winners, and the
 * affine gradients from them. */
static void bw_sums(const bp_saved *s, int64_t c, const float *dy, float *dw, float *db,
                    const nb__bn_pool_kernels *K, double *sum_dy, double *sum_dyx)
{
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OH = H / 2, OW = W / 2, S = H * W, OS = OH * OW;
    const float mc = s->mean[c];
    double sdy[NB__BP_LANES] = {0}, sdyx[NB__BP_LANES] = {0};
    for (int64_t i = 0; i < N; i++) {
        if (i + 1 < N) {
            nb__prefetch(s->x + ((i + 1) * C + c) * S, (size_t)S * sizeof(float));
            nb__prefetch(dy + ((i + 1) * C + c) * OS, (size_t)OS * sizeof(float));
            nb__prefetch(s->win + ((i + 1) * C + c) * OS, (size_t)OS);
        }
        K->sums(s->x + (i * C + c) * S, W, OH, OW, dy + (i * C + c) * OS, s->win + (i * C + c) * OS, mc, sdy, sdyx);
    }
    for (int h = NB__BP_LANES / 2; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) {
            sdy[l] += sdy[l + h];
            sdyx[l] += sdyx[l + h];
        }
    /* centred on the mean in double, as batch_norm: sum g (x - meand) */
    const double is = s->invstd[c], sg = sdy[0], sgx = sdyx[0] + ((double)mc - s->meand[c]) * sg;
    if (dw) dw[c] += (float)(sgx * is);
    if (db) db[c] += (float)sg;
    *sum_dy = sg, *sum_dyx = sgx;
}

/* Channel c's dx = k dz - p (x - mean) - q: the coefficients from the sums
 * over s->count values. */
static void dx_coefficients(const bp_saved *s, const nb_tensor *w, int64_t c, double sg, double sgx, float *k,
                            float *p, float *q)
{
    const double is = s->invstd[c], n = (double)s->count;
    *k = (float)(is * (w ? w->data[c * w->stride[0]] : 1.0f));
    *p = s->training ? (float)(*k * is * is * sgx / n) : 0.0f;
    *q = s->training ? (float)(*k * sg / n) : 0.0f;
}

/* Channel c's dx from the sums. */
static void bw_dx(const bp_saved *s, const nb_tensor *w, int64_t c, const float *dy, float *dx, int fresh,
                  const nb__bn_pool_kernels *K, double sg, double sgx)
{
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OW = W / 2, S = H * W, OS = (H / 2) * OW;
    const float mc = s->mean[c];
    float k, p, q;
    dx_coefficients(s, w, c, sg, sgx, &k, &p, &q);
    for (int64_t i = 0; i < N; i++)
        K->dx(s->x + (i * C + c) * S, H, W, OW, dy + (i * C + c) * OS, s->win + (i * C + c) * OS, mc, k, p, q,
              dx + (i * C + c) * S, fresh);
}

/* Channel c: the sums, the affine gradients, then dx. */
static void bw_channel(const bp_saved *s, const nb_tensor *w, int64_t c, const float *dy, float *dx, float *dw,
                       float *db, int fresh, const nb__bn_pool_kernels *K)
{
    double sg, sgx;
    bw_sums(s, c, dy, dw, db, K, &sg, &sgx);
    if (dx) bw_dx(s, w, c, dy, dx, fresh, K, sg, sgx);
}

/* Synchronised (bp_saved.synced): every channel's sums, added over the job,
 * then dx (one thread, as nb__bn_sync_stats). */
/* Every channel's sums (v[c] sum dy, v[C + c] sum dy (x - mean)) added over
 * the job, as the synchronised forward's statistics (one thread, as
 * nb__bn_sync_stats); the affine gradients stay this process's own. */
static nb_status synced_sums(const bp_saved *s, const float *dy, float *dw, float *db, const nb__bn_pool_kernels *K,
                             double *v, const char *name)
{
    const nb__bn_sync *h = nb__bn_get_sync();
    if (!h) return nb__fail(NB_ERR_STATE, "%s: synchronised in forward but not in backward", name);
    for (int64_t c = 0; c < s->C; c++) bw_sums(s, c, dy, dw, db, K, &v[c], &v[s->C + c]);
    return h->sum(h->user, v, 2 * s->C, NB__BN_GRADS);
}

static nb_status bw_synced(nb_ctx *ctx, const bp_saved *s, const nb_tensor *w, const float *dy, float *dx, float *dw,
                           float *db, int fresh, const nb__bn_pool_kernels *K)
{
    const int64_t C = s->C;
    double *v = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(2 * C) * sizeof(double));
    if (!v) return nb__fail(NB_ERR_NOMEM, "batch_norm_relu_max_pool: out of memory");
    nb_status st = synced_sums(s, dy, dw, db, K, v, "batch_norm_relu_max_pool");
    if (st || !dx) return st;
    for (int64_t c = 0; c < C; c++) bw_dx(s, w, c, dy, dx, fresh, K, v[c], v[C + c]);
    return NB_OK;
}

static void bp_backward_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bp_job *j = ctx;
    for (int64_t c = lo; c < hi; c++) bw_channel(j->s, j->weight, c, j->dy, j->dx, j->dw, j->db, j->fresh, j->K);
}

nb_status nb__bw_batch_norm_relu_max_pool(nb_ctx *ctx, nb__node *nd)
{
    const bp_saved *s = nd->saved;
    nb_tensor *x = nd->in[0];
    nb_tensor *w = nd->i[0] ? nd->in[1] : NULL;
    nb_tensor *b = nd->i[1] ? nd->in[1 + (int)nd->i[0]] : NULL;
    float *dx = x->requires_grad ? x->grad : NULL;
    float *dw = w && w->requires_grad ? w->grad : NULL;
    float *db = b && b->requires_grad ? b->grad : NULL;
    const int fresh = nb__fresh(nd, 0);
    if (dw && nb__fresh(nd, 1)) memset(dw, 0, (size_t)s->C * sizeof(float));
    if (db && nb__fresh(nd, 1 + (int)nd->i[0])) memset(db, 0, (size_t)s->C * sizeof(float));
    const int64_t C = s->C, numel = s->N * C * s->H * s->W;
    const nb__bn_pool_kernels *K = bp_kernels();
    if (s->synced) return bw_synced(ctx, s, w, nd->out->grad, dx, dw, db, fresh, K);
    if (numel == 0) return NB_OK;
    bp_job j = {.s = nd->saved, .weight = w, .K = K, .dy = nd->out->grad, .dx = dx, .dw = dw, .db = db, .fresh = fresh};
    nb__par_for_shared(C, C, nb__par_parts(C, numel >= BP_PAR_MIN), bp_backward_channels, &j);
    return NB_OK;
}

/* ---- with the one-channel convolution in front ------------------------------- *
 * The first block of an image model, conv2d(x) -> batch_norm -> relu ->
 * max_pool2d(2), x a batch of one-channel images that needs no gradient.
 * Forward is the convolution's (its direct kernels, src/kernels/conv_direct.h)
 * then this op's. Backward never forms the gradient of the convolution's
 * output (the largest tensor of a small CNN; 6.4 MB for the notes' CNN at
 * batch 64): per pair of channels and per image, the two planes of dx go to
 * a buffer in L1 and from there straight into the convolution's weight and
 * bias sums, instead of being written to memory and read back by the
 * convolution's backward. Measured on bench_cnn, interleaved with the
 * unfused build: +1.0% on average over 6 pairs on a quiet machine (8,800
 * img/s), +3.6% over 4 pairs while another tenant loaded memory (8,000
 * img/s); with both passes simply dropped (no weight gradient at all) the
 * busy machine ran 8-16% faster, the bound of what this can save. */

typedef struct {
    bp_saved *s;                         /* over the convolution's output */
    const float *x;                      /* the images, contiguous (N, 1, H, W) */
    nb__cd_geom cd;                      /* the convolution (O = C) */
    const nb__conv_direct_kernels *K;
} cbp_saved;

nb_tensor *nb__conv_batch_norm_relu_max_pool(nb_ctx *ctx, nb_tensor *x, nb_tensor *cw, nb_tensor *cb,
                                             const nb_conv2d_opts *co, nb_tensor *y1, nb_tensor *weight,
                                             nb_tensor *bias, float *running_mean, float *running_var,
                                             int training, float momentum, float eps)
{
    const char *name = "conv_batch_norm_relu_max_pool";
    if (!x || !cw || !y1) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "%s: context is NULL", name);
    cbp_saved *cs = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *cs);
    if (!cs) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
    cs->K = nb__conv_direct_geometry(x, cw, cb, co, &cs->cd);
    if (!cs->K || x->requires_grad || y1->ndim != 4 || y1->shape[0] != x->shape[0] || y1->shape[1] != cs->cd.O ||
        y1->shape[2] != cs->cd.OH || y1->shape[3] != cs->cd.OW)
        return nb__op_fail(ctx, NB_ERR_ARG,
                           "%s: needs one-channel images without gradient, a convolution the direct kernels "
                           "compute, and its output",
                           name);
    if (!check_args(ctx, y1, weight, bias, running_mean, running_var, training, eps)) return NULL;
    nb_tensor *in[5] = {x, cw, NULL, NULL, NULL};
    int nin = 2;
    if (cb) in[nin++] = cb;
    if (weight) in[nin++] = weight;
    if (bias) in[nin++] = bias;
    const int want = nb_grad_enabled(ctx) && any_requires_grad(in, nin);
    nb_tensor *out = bp_forward(ctx, y1, weight, bias, running_mean, running_var, training, momentum, eps, want,
                                &cs->s);
    if (!out) return NULL;
    cs->x = nb__contiguous_data(ctx, x);
    if (!cs->x) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory", name);
    nb__node *node = nb__record(ctx, NB__OP_CONV_BATCH_NORM_RELU_MAX_POOL, out, in, nin);
    if (want && !node) return nb__op_fail(ctx, NB_ERR_NOMEM, "%s: out of memory recording the op", name);
    if (node) {
        node->saved = cs;
        node->i[0] = cb != NULL;
        node->i[1] = weight != NULL;
        node->i[2] = bias != NULL;
    }
    return out;
}

/* Backward over pairs of channels, the tasks of a shared loop; scratch per
 * thread (nb__pool_slot): two dx planes, the kernels' padded image and the
 * pair's partial sums. */
typedef struct {
    const cbp_saved *cs;
    const nb_tensor *w;
    const float *dy;
    float *dw, *db, *dcw, *dcb;         /* batch norm's and the convolution's gradients, += */
    double *sg, *sgx;                   /* per channel: sum dy, sum dy (x - mean) */
    int have_sums;                      /* sg, sgx already summed (synchronised) */
    const nb__bn_pool_kernels *K;
    float *scratch;
    int64_t sf, pf, af;                 /* floats of scratch per thread; of which pad, acc */
} cbp_job;

static void cbp_pair(const cbp_job *j, int64_t c0, float *planes, float *pad, float *acc)
{
    const cbp_saved *cs = j->cs;
    const bp_saved *s = cs->s;
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, OW = W / 2, S = H * W, OS = (H / 2) * OW;
    const int64_t c1 = c0 + 2 < C ? c0 + 2 : C, HW = cs->cd.H * cs->cd.W;
    const int T = cs->cd.kh * cs->cd.kw;
    float k[2], p[2], q[2];
    for (int64_t c = c0; c < c1; c++) {
        if (!j->have_sums) bw_sums(s, c, j->dy, j->dw, j->db, j->K, &j->sg[c], &j->sgx[c]);
        dx_coefficients(s, j->w, c, j->sg[c], j->sgx[c], &k[c - c0], &p[c - c0], &q[c - c0]);
    }
    nb__cd_geom g = cs->cd;
    g.O = c1 - c0;
    memset(acc, 0, (size_t)j->af * sizeof(float));
    if (j->dcw || j->dcb)
        for (int64_t i = 0; i < N; i++) {
            for (int64_t c = c0; c < c1; c++) {
                const int64_t q0 = (i * C + c) * OS;
                j->K->dx(s->x + (i * C + c) * S, H, W, OW, j->dy + q0, s->win + q0, s->mean[c], k[c - c0],
                         p[c - c0], q[c - c0], planes + (c - c0) * S, 1);
            }
            cs->K->weight_acc(&g, cs->x + i * HW, planes, acc, pad);
        }
    for (int64_t c = c0; c < c1; c++)
        for (int t = 0; t <= T; t++) {
            float lane[NB__CD_LANES];
            memcpy(lane, acc + ((c - c0) * (T + 1) + t) * NB__CD_LANES, sizeof lane);
            const float sum = nb__sum_lanes16(lane);
            if (t < T && j->dcw) j->dcw[c * T + t] += sum;
            if (t == T && j->dcb) j->dcb[c] += sum;
        }
}

static void cbp_pairs(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const cbp_job *j = ctx;
    float *sc = j->scratch + nb__pool_slot() * j->sf;
    for (int64_t pr = lo; pr < hi; pr++) cbp_pair(j, 2 * pr, sc + j->pf + j->af, sc, sc + j->pf);
}

nb_status nb__bw_conv_batch_norm_relu_max_pool(nb_ctx *ctx, nb__node *nd)
{
    const cbp_saved *cs = nd->saved;
    const bp_saved *s = cs->s;
    int at = 1;
    nb_tensor *cw = nd->in[at++];
    nb_tensor *cb = nd->i[0] ? nd->in[at++] : NULL;
    nb_tensor *w = nd->i[1] ? nd->in[at++] : NULL;
    nb_tensor *b = nd->i[2] ? nd->in[at++] : NULL;
    const int64_t C = s->C, S = s->H * s->W, pairs = (C + 1) / 2;
    if (s->N == 0) return NB_OK;
    nb_arena *ar = nb_ctx_arena(ctx);
    cbp_job j = {.cs = cs, .w = w, .dy = nd->out->grad, .K = bp_kernels()};
    j.dw = w && w->requires_grad ? w->grad : NULL;
    j.db = b && b->requires_grad ? b->grad : NULL;
    j.dcw = cw->requires_grad ? cw->grad : NULL;
    j.dcb = cb && cb->requires_grad ? cb->grad : NULL;
    j.pf = nb__cd_pad_floats(&cs->cd);
    j.af = 2 * (cs->cd.kh * cs->cd.kw + 1) * NB__CD_LANES;
    /* the planes get two more of slack: weight_acc prefetches the two planes
     * after its pair (the next pair's, in the convolution's own layout),
     * which must not be another thread's scratch that it is writing */
    j.sf = (j.pf + j.af + 4 * S + 15) / 16 * 16;
    const int nth = nb__par_parts(pairs, s->N * C * S >= BP_PAR_MIN);
    j.sg = nb_arena_alloc(ar, (size_t)(2 * C) * sizeof(double));
    j.scratch = nb_arena_alloc(ar, (size_t)(j.sf * nth) * sizeof(float));
    if (!j.sg || !j.scratch) return nb__fail(NB_ERR_NOMEM, "conv_batch_norm_relu_max_pool: out of memory");
    j.sgx = j.sg + C;
    for (int t = 0; t < nth; t++) memset(j.scratch + t * j.sf, 0, (size_t)j.pf * sizeof(float)); /* pad borders */
    if (s->synced) { /* every channel's sums over the job first */
        nb_status st = synced_sums(s, j.dy, j.dw, j.db, j.K, j.sg, "conv_batch_norm_relu_max_pool");
        if (st) return st;
        j.have_sums = 1;
    }
    nb__par_for_shared(pairs, pairs, nth, cbp_pairs, &j);
    return NB_OK;
}
