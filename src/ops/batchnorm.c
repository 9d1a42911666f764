/* Batch normalisation (the notes §10), torch.nn.functional.batch_norm.
 *
 * x is seen as (N, C, S) with S the product of the trailing dimensions, so
 * channel c is N planes of S contiguous floats (NCHW). Per channel:
 *   training:   mean, biased var over the N*S values; running statistics, when
 *               given, move by momentum with the unbiased var (n / (n-1)).
 *   evaluation: mean, var = the running statistics.
 *   y = (x - mean) * invstd * gamma + beta = (x - m) * a + b,
 *   invstd = 1 / sqrt(var + eps), a = gamma * invstd, m = mean rounded to
 *   float, b = beta - (mean - m) * a (the rounding of the mean corrected, so
 *   a shifted input, mean >> std, loses nothing to cancellation).
 * Backward, with xhat = (x - mean) * invstd and sums over the channel:
 *   dbeta  += sum(dy),  dgamma += sum(dy * xhat)
 *   training:   dx += gamma * invstd / n * (n dy - sum(dy) - xhat sum(dy xhat))
 *   evaluation: dx += gamma * invstd * dy  (the statistics are constants)
 * Sums accumulate in double with fixed groupings; threads split the channels
 * (static schedule), so results do not depend on the thread count. An input
 * (N, C) (S = 1) is walked by rows over blocks of channels instead, which
 * keeps the reads contiguous. */
#include "batchnorm.h"
#include "../kernels/simd.h"
#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define BN_PAR_MIN 32768   /* elements before threads pay off */
#define BN_CB      32      /* channels per block for (N, C) inputs */

typedef struct {
    const float *x;        /* x contiguous (N, C, S): x->data or a copy */
    float *mean, *invstd;  /* per channel: the statistics used to normalise */
    double *meand;         /* mean in double (the backward sums centre on it) */
    int64_t N, C, S;
    int training;
    int64_t count;         /* values per channel behind the statistics */
    int synced;            /* over the job (nb__bn_sync): backward syncs too */
} bn_saved;

/* The sums below are NB_CLONES (simd.h); their accumulators are fixed lanes
 * (element i goes to lane i % BN_LANES), so every variant gives the same bits.
 * BN_LANES = 32: four independent vectors of 8 doubles, so the adds overlap
 * (one chain of 8 ran at 2 elements per cycle, the add's latency; 32 lanes
 * made the CNN's training step 2-3% faster). */
#define BN_LANES 32

/* ---- sums over one plane (BN_LANES independent double accumulators) -------- */

/* The lanes added in a fixed tree. */
static double lanes_total(double a[BN_LANES])
{
    for (int h = BN_LANES / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; j++) a[j] += a[j + h];
    return a[0];
}

NB_CLONES static double plane_sum(const float *p, int64_t n)
{
    double a[BN_LANES] = {0};
    int64_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) a[j] += p[i + j];
    for (; i < n; i++) a[i % BN_LANES] += p[i];
    return lanes_total(a);
}

NB_CLONES static double plane_sqdev(const float *p, int64_t n, double mean)
{
    double a[BN_LANES] = {0};
    int64_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) {
            double d = (double)p[i + j] - mean;
            a[j] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)p[i] - mean;
        a[i % BN_LANES] += d * d;
    }
    return lanes_total(a);
}

/* sum(dy) and sum(dy * (x - mean)) over one plane: 8 accumulators each
 * (element i goes to accumulator i % 8, the tail to 0), combined in a fixed
 * order. The SSE2 version (GCC leaves the plain loop scalar) gives the same
 * bits as the plain one. */
static void plane_dsums(const float *dy, const float *x, int64_t n, double mean, double *sdy, double *sdyx)
{
    double a[8] = {0}, b[8] = {0};
    int64_t i = 0;
#if defined(__SSE2__)
    __m128d a01 = _mm_setzero_pd(), a23 = a01, a45 = a01, a67 = a01, b01 = a01, b23 = a01, b45 = a01, b67 = a01;
    const __m128d m = _mm_set1_pd(mean);
    for (; i + 8 <= n; i += 8) {
        __m128 g = _mm_loadu_ps(dy + i), h = _mm_loadu_ps(dy + i + 4);
        __m128 u = _mm_loadu_ps(x + i), v = _mm_loadu_ps(x + i + 4);
        __m128d g0 = _mm_cvtps_pd(g), g1 = _mm_cvtps_pd(_mm_movehl_ps(g, g));
        __m128d g2 = _mm_cvtps_pd(h), g3 = _mm_cvtps_pd(_mm_movehl_ps(h, h));
        __m128d x0 = _mm_sub_pd(_mm_cvtps_pd(u), m), x1 = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(u, u)), m);
        __m128d x2 = _mm_sub_pd(_mm_cvtps_pd(v), m), x3 = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(v, v)), m);
        a01 = _mm_add_pd(a01, g0);
        a23 = _mm_add_pd(a23, g1);
        a45 = _mm_add_pd(a45, g2);
        a67 = _mm_add_pd(a67, g3);
        b01 = _mm_add_pd(b01, _mm_mul_pd(g0, x0));
        b23 = _mm_add_pd(b23, _mm_mul_pd(g1, x1));
        b45 = _mm_add_pd(b45, _mm_mul_pd(g2, x2));
        b67 = _mm_add_pd(b67, _mm_mul_pd(g3, x3));
    }
    _mm_storeu_pd(a, a01);
    _mm_storeu_pd(a + 2, a23);
    _mm_storeu_pd(a + 4, a45);
    _mm_storeu_pd(a + 6, a67);
    _mm_storeu_pd(b, b01);
    _mm_storeu_pd(b + 2, b23);
    _mm_storeu_pd(b + 4, b45);
    _mm_storeu_pd(b + 6, b67);
#else
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            a[j] += dy[i + j];
            b[j] += (double)dy[i + j] * ((double)x[i + j] - mean);
        }
#endif
    for (; i < n; i++) {
        a[0] += dy[i];
        b[0] += (double)dy[i] * ((double)x[i] - mean);
    }
    *sdy += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *sdyx += ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

static inline float at1(const nb_tensor *t, int64_t c) { return t->data[c * t->stride[0]]; }

void nb__bn_coefficients(const nb_tensor *weight, const nb_tensor *bias, int64_t c, float mean, double meand,
                         float invstd, float *a, float *b)
{
    *a = invstd * (weight ? at1(weight, c) : 1.0f);
    *b = (bias ? at1(bias, c) : 0.0f) - (float)(meand - mean) * *a;
}

/* Per-channel statistics from the batch (biased variance) and the running
 * update; mean/invstd receive the values used to normalise. */
static void finish_stats(double sum, double sqdev, int64_t n, float eps, float momentum, float *rm, float *rv,
                         int64_t c, float *mean, double *meand, float *invstd)
{
    double m = sum / (double)n, var = sqdev / (double)n;
    mean[c] = (float)m;
    meand[c] = m;
    invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
    double mo = momentum;
    if (rm) rm[c] = (float)((1.0 - mo) * rm[c] + mo * m);
    if (rv) rv[c] = (float)((1.0 - mo) * rv[c] + mo * (sqdev / (double)(n - 1)));
}

void nb__bn_channel_stats(const float *x, int64_t stride, int64_t N, int64_t S, int64_t c, int training, float eps,
                          float momentum, float *rm, float *rv, float *mean, double *meand, float *invstd)
{
    if (!training) {
        mean[c] = rm[c];
        meand[c] = rm[c];
        invstd[c] = 1.0f / sqrtf(rv[c] + eps);
        return;
    }
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < N; i++) {
        if (i + 1 < N) nb__prefetch(x + (i + 1) * stride, (size_t)S * sizeof(float));
        sum += plane_sum(x + i * stride, S);
    }
    double m = sum / (double)(N * S);
    for (int64_t i = 0; i < N; i++) sq += plane_sqdev(x + i * stride, S, m);
    finish_stats(sum, sq, N * S, eps, momentum, rm, rv, c, mean, meand, invstd);
}

/* ---- synchronised statistics (nb__bn_sync) ----------------------------------- */

static _Thread_local const nb__bn_sync *bn_sync;

const nb__bn_sync *nb__bn_set_sync(const nb__bn_sync *h)
{
    const nb__bn_sync *old = bn_sync;
    bn_sync = h;
    return old;
}

const nb__bn_sync *nb__bn_get_sync(void) { return bn_sync; }

/* Two passes as nb__bn_channel_stats, each local sum added over the job:
 * the mean first, then the squared deviations from it (no cancellation).
 * One thread: a process of a job usually has one (the job is the
 * parallelism), and the sums meet the job between the passes anyway. */
nb_status nb__bn_sync_stats(const nb__bn_sync *h, nb_arena *ar, const float *x, int64_t N, int64_t C, int64_t S,
                            float eps, float momentum, float *rm, float *rv, float *mean, double *meand,
                            float *invstd, int64_t *count)
{
    double *v = nb_arena_alloc(ar, (size_t)(2 * C + 1) * sizeof(double)), *sq = v + C + 1;
    if (!v) return nb__fail(NB_ERR_NOMEM, "batch_norm: out of memory");
    for (int64_t c = 0; c < C; c++) {
        double sum = 0;
        for (int64_t i = 0; i < N; i++) sum += plane_sum(x + (i * C + c) * S, S);
        v[c] = sum;
    }
    v[C] = (double)(N * S);
    nb_status st = h->sum(h->user, v, C + 1, NB__BN_SUMS);
    if (st) return st;
    *count = (int64_t)v[C];
    if (*count <= 1)
        return nb__fail(NB_ERR_SHAPE, "batch_norm: Expected more than 1 value per channel when training, got %lld "
                        "over all processes", (long long)*count);
    for (int64_t c = 0; c < C; c++) {
        double m = v[c] / (double)*count, q = 0;
        for (int64_t i = 0; i < N; i++) q += plane_sqdev(x + (i * C + c) * S, S, m);
        sq[c] = q;
    }
    if ((st = h->sum(h->user, sq, C, NB__BN_SQUARES))) return st;
    for (int64_t c = 0; c < C; c++) finish_stats(v[c], sq[c], *count, eps, momentum, rm, rv, c, mean, meand, invstd);
    return NB_OK;
}

/* The channels of one batch_norm forward: statistics (unless synced, when
 * they are already there) and y, in blocks of BN_CB channels for (N, C)
 * inputs or one channel at a time. */
typedef struct {
    const float *xd;
    float *y, *running_mean, *running_var, *mean, *invstd;
    double *meand;
    const nb_tensor *weight, *bias;
    int64_t N, C, S, n;
    float eps, momentum;
    int training, sync;
} bn_fw_job;

/* (N, C): rows are contiguous; each thread owns blocks of channels. */
static void bn_forward_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bn_fw_job *j = ctx;
    const float *xd = j->xd;
    const int64_t N = j->N, C = j->C;
    for (int64_t blk = lo; blk < hi; blk++) {
        const int64_t c0 = blk * BN_CB, cn = c0 + BN_CB < C ? BN_CB : C - c0;
        double acc[BN_CB] = {0}, sq[BN_CB] = {0}, m[BN_CB];
        float a[BN_CB], b[BN_CB];
        if (j->training) {
            for (int64_t r = 0; r < N; r++)
                for (int64_t k = 0; k < cn; k++) acc[k] += xd[r * C + c0 + k];
            for (int64_t k = 0; k < cn; k++) m[k] = acc[k] / (double)j->n;
            for (int64_t r = 0; r < N; r++)
                for (int64_t k = 0; k < cn; k++) {
                    double d = (double)xd[r * C + c0 + k] - m[k];
                    sq[k] += d * d;
                }
            for (int64_t k = 0; k < cn; k++)
                finish_stats(acc[k], sq[k], j->n, j->eps, j->momentum, j->running_mean, j->running_var, c0 + k,
                             j->mean, j->meand, j->invstd);
        } else {
            for (int64_t k = 0; k < cn; k++) {
                j->mean[c0 + k] = j->running_mean[c0 + k];
                j->meand[c0 + k] = j->running_mean[c0 + k];
                j->invstd[c0 + k] = 1.0f / sqrtf(j->running_var[c0 + k] + j->eps);
            }
        }
        for (int64_t k = 0; k < cn; k++)
            nb__bn_coefficients(j->weight, j->bias, c0 + k, j->mean[c0 + k], j->meand[c0 + k], j->invstd[c0 + k],
                                &a[k], &b[k]);
        for (int64_t r = 0; r < N; r++)
            for (int64_t k = 0; k < cn; k++)
                j->y[r * C + c0 + k] = (xd[r * C + c0 + k] - j->mean[c0 + k]) * a[k] + b[k];
    }
}

/* (N, C, S): each thread owns channels. */
static void bn_forward_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bn_fw_job *j = ctx;
    const int64_t N = j->N, C = j->C, S = j->S;
    for (int64_t c = lo; c < hi; c++) {
        if (!j->sync)
            nb__bn_channel_stats(j->xd + c * S, C * S, N, S, c, j->training, j->eps, j->momentum, j->running_mean,
                                 j->running_var, j->mean, j->meand, j->invstd);
        float a, b;
        const float mc = j->mean[c];
        nb__bn_coefficients(j->weight, j->bias, c, mc, j->meand[c], j->invstd[c], &a, &b);
        for (int64_t i = 0; i < N; i++) {
            const float *xp = j->xd + (i * C + c) * S;
            float *yp = j->y + (i * C + c) * S;
            for (int64_t k = 0; k < S; k++) yp[k] = (xp[k] - mc) * a + b;
        }
    }
}

nb_tensor *nb_batch_norm(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias, float *running_mean,
                         float *running_var, int training, float momentum, float eps)
{
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "batch_norm: context is NULL");
    char sx[96], sp[96];
    if (x->ndim < 2)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "batch_norm: input must be (N, C) or (N, C, *), got %s",
                           nb_shape_str(x, sx, sizeof sx));
    const int64_t N = x->shape[0], C = x->shape[1], S = nb__numel(x->ndim - 2, x->shape + 2), n = N * S;
    nb_tensor *pw[2] = {weight, bias};
    for (int k = 0; k < 2; k++)
        if (pw[k] && (pw[k]->ndim != 1 || pw[k]->shape[0] != C))
            return nb__op_fail(ctx, NB_ERR_SHAPE, "batch_norm: %s %s does not match the %lld channels of input %s",
                               k ? "bias" : "weight", nb_shape_str(pw[k], sp, sizeof sp), (long long)C,
                               nb_shape_str(x, sx, sizeof sx));
    if (!(eps >= 0) || isinf(eps))
        return nb__op_fail(ctx, NB_ERR_ARG, "batch_norm: eps must be finite and >= 0, got %g", eps);
    if (!training && (!running_mean || !running_var))
        return nb__op_fail(ctx, NB_ERR_ARG,
                           "batch_norm: running_mean and running_var must be given in evaluation mode");
    const nb__bn_sync *sync = training ? bn_sync : NULL;
    if (training && n == 1 && !sync) /* synchronised: the job's count is checked */
        return nb__op_fail(ctx, NB_ERR_SHAPE,
                           "batch_norm: Expected more than 1 value per channel when training, got input %s",
                           nb_shape_str(x, sx, sizeof sx));
    nb_tensor *out = nb_tensor_new(ctx, x->ndim, x->shape);
    bn_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
    float *stats = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(2 * C + 1) * sizeof(float));
    double *meand = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(C + 1) * sizeof(double));
    if (!out || !s || !stats || !meand) return nb__op_fail(ctx, NB_ERR_NOMEM, "batch_norm: out of memory");
    const float *xd = x->data;
    if (!nb_tensor_is_contiguous(x)) {
        float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(x) * sizeof(float));
        if (!c) return nb__op_fail(ctx, NB_ERR_NOMEM, "batch_norm: out of memory");
        nb_tensor_copy_out(x, c);
        xd = c;
    }
    *s = (bn_saved){xd, stats, stats + C, meand, N, C, S, training != 0, n, sync != NULL};
    float *mean = s->mean, *invstd = s->invstd, *y = out->data;
    const int par = n * C >= BN_PAR_MIN && C > 1;
    if (sync) {
        nb_status st = nb__bn_sync_stats(sync, nb_ctx_arena(ctx), xd, N, C, S, eps, momentum, running_mean,
                                         running_var, mean, meand, invstd, &s->count);
        if (st) {
            nb__ctx_set_status(ctx, st);
            return NULL;
        }
    }
    bn_fw_job j = {.xd = xd, .y = y, .running_mean = running_mean, .running_var = running_var, .mean = mean,
                   .invstd = invstd, .meand = meand, .weight = weight, .bias = bias, .N = N, .C = C, .S = S, .n = n,
                   .eps = eps, .momentum = momentum, .training = training, .sync = sync != NULL};
    if (n == 0 && !sync) {   /* empty batch: nothing to normalise, statistics untouched */
        for (int64_t c = 0; c < C; c++) mean[c] = 0, meand[c] = 0, invstd[c] = 0;
    } else if (S == 1 && C > 1 && !sync) {
        const int64_t nblk = (C + BN_CB - 1) / BN_CB;
        nb__par_for(nblk, nb__par_parts(nblk, par), bn_forward_blocks, &j);
    } else {
        nb__par_for(C, nb__par_parts(C, par), bn_forward_channels, &j);
    }
    nb_tensor *in[3] = {x, NULL, NULL};
    int nin = 1;
    if (weight) in[nin++] = weight;
    if (bias) in[nin++] = bias;
    int want = nb_grad_enabled(ctx) && (x->requires_grad || (weight && weight->requires_grad) ||
                                        (bias && bias->requires_grad));
    nb__node *node = nb__record(ctx, NB__OP_BATCH_NORM, out, in, nin);
    if (want && !node) return nb__op_fail(ctx, NB_ERR_NOMEM, "batch_norm: out of memory recording the op");
    if (node) {
        node->saved = s;
        node->i[0] = weight != NULL;
        node->i[1] = bias != NULL;
    }
    return out;
}

/* Backward of a synchronised batch_norm: every channel's local sums, the
 * affine gradients from them, the sums over the job, then dx with the job's
 * count (one thread, as nb__bn_sync_stats). */
static nb_status bw_synced(nb_ctx *ctx, const bn_saved *s, const nb_tensor *w, const float *dy, float *dx,
                           float *dw, float *db, int fresh)
{
    const int64_t N = s->N, C = s->C, S = s->S;
    const float *xd = s->x;
    double *v = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(2 * C) * sizeof(double));
    if (!v) return nb__fail(NB_ERR_NOMEM, "batch_norm: out of memory");
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < N; i++)
            plane_dsums(dy + (i * C + c) * S, xd + (i * C + c) * S, S, s->meand[c], &sdy, &sdyx);
        if (dw) dw[c] += (float)(sdyx * s->invstd[c]);
        if (db) db[c] += (float)sdy;
        v[c] = sdy, v[C + c] = sdyx;
    }
    nb_status st = bn_sync->sum(bn_sync->user, v, 2 * C, NB__BN_GRADS);
    if (st || !dx) return st;
    for (int64_t c = 0; c < C; c++) {
        const double is = s->invstd[c];
        const float mc = s->mean[c], k = (float)(is * (w ? at1(w, c) : 1.0f));
        const float p = (float)(k * is * is * v[C + c] / (double)s->count), q = (float)(k * v[c] / (double)s->count);
        for (int64_t i = 0; i < N; i++) {
            const int64_t o = (i * C + c) * S;
            for (int64_t t = 0; t < S; t++) {
                const float d = k * dy[o + t] - p * (xd[o + t] - mc) - q;
                dx[o + t] = fresh ? d : dx[o + t] + d;
            }
        }
    }
    return NB_OK;
}

/* The channels of one batch_norm backward (not synced): the affine
 * gradients and dx = k * dy - p * (x - mean) - q, in blocks of BN_CB
 * channels for (N, C) inputs or one channel at a time. */
typedef struct {
    const float *xd, *dy, *mean, *invstd;
    const double *meand;
    const nb_tensor *w;
    float *dx, *dw, *db;
    int64_t N, C, S, n;
    int training, fresh;
} bn_bw_job;

/* Channel c's affine gradients from its sums, and the coefficients of
 * dx = k * dy - p * (x - mean) - q. */
static void bw_coefficients(const bn_bw_job *j, int64_t c, double sdy, double sdyx, float *k, float *p, float *q)
{
    const double is = j->invstd[c];
    if (j->dw) j->dw[c] += (float)(sdyx * is);
    if (j->db) j->db[c] += (float)sdy;
    *k = (float)(is * (j->w ? at1(j->w, c) : 1.0f));
    *p = j->training ? (float)(*k * is * is * sdyx / (double)j->n) : 0.0f;
    *q = j->training ? (float)(*k * sdy / (double)j->n) : 0.0f;
}

static void bn_backward_blocks(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bn_bw_job *j = ctx;
    const float *xd = j->xd, *dy = j->dy;
    const int64_t N = j->N, C = j->C;
    for (int64_t blk = lo; blk < hi; blk++) {
        const int64_t c0 = blk * BN_CB, cn = c0 + BN_CB < C ? BN_CB : C - c0;
        double sdy[BN_CB] = {0}, sdyx[BN_CB] = {0};
        float k[BN_CB], p[BN_CB], q[BN_CB];
        for (int64_t r = 0; r < N; r++)
            for (int64_t t = 0; t < cn; t++) {
                const float g = dy[r * C + c0 + t];
                sdy[t] += g;
                sdyx[t] += (double)g * ((double)xd[r * C + c0 + t] - j->meand[c0 + t]);
            }
        for (int64_t t = 0; t < cn; t++) bw_coefficients(j, c0 + t, sdy[t], sdyx[t], &k[t], &p[t], &q[t]);
        if (j->dx)
            for (int64_t r = 0; r < N; r++)
                for (int64_t t = 0; t < cn; t++) {
                    const int64_t o = r * C + c0 + t;
                    const float v = k[t] * dy[o] - p[t] * (xd[o] - j->mean[c0 + t]) - q[t];
                    j->dx[o] = j->fresh ? v : j->dx[o] + v;
                }
    }
}

static void bn_backward_channels(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const bn_bw_job *j = ctx;
    const int64_t N = j->N, C = j->C, S = j->S;
    for (int64_t c = lo; c < hi; c++) {
        double sdy = 0, sdyx = 0;
        const float mc = j->mean[c];
        for (int64_t i = 0; i < N; i++)
            plane_dsums(j->dy + (i * C + c) * S, j->xd + (i * C + c) * S, S, j->meand[c], &sdy, &sdyx);
        float k, p, q;
        bw_coefficients(j, c, sdy, sdyx, &k, &p, &q);
        if (!j->dx) continue;
        for (int64_t i = 0; i < N; i++) {
            const int64_t o = (i * C + c) * S;
            const float *g = j->dy + o, *xp = j->xd + o;
            float *d = j->dx + o;
            if (j->fresh)
                for (int64_t t = 0; t < S; t++) d[t] = k * g[t] - p * (xp[t] - mc) - q;
            else
                for (int64_t t = 0; t < S; t++) d[t] += k * g[t] - p * (xp[t] - mc) - q;
        }
    }
}

nb_status nb__bw_batch_norm(nb_ctx *ctx, nb__node *nd)
{
    const bn_saved *s = nd->saved;
    nb_tensor *x = nd->in[0];
    nb_tensor *w = nd->i[0] ? nd->in[1] : NULL;
    nb_tensor *b = nd->i[1] ? nd->in[1 + (int)nd->i[0]] : NULL;
    const int64_t N = s->N, C = s->C, S = s->S, n = N * S;
    const float *xd = s->x, *dy = nd->out->grad, *mean = s->mean, *invstd = s->invstd;
    const double *meand = s->meand;
    float *dx = x->requires_grad ? x->grad : NULL;
    float *dw = w && w->requires_grad ? w->grad : NULL;
    float *db = b && b->requires_grad ? b->grad : NULL;
    const int fresh = nb__fresh(nd, 0);
    /* the affine gradients are small: zero fresh ones and add as usual */
    if (dw && nb__fresh(nd, 1)) memset(dw, 0, (size_t)C * sizeof(float));
    if (db && nb__fresh(nd, 1 + (int)nd->i[0])) memset(db, 0, (size_t)C * sizeof(float));
    if (s->synced) {
        if (!bn_sync) return nb__fail(NB_ERR_STATE, "batch_norm: synchronised in forward but not in backward");
        return bw_synced(ctx, s, w, nd->out->grad, dx, dw, db, fresh);
    }
    if (n == 0) return NB_OK;
    const int training = s->training, par = n * C >= BN_PAR_MIN && C > 1;
    /* dx = k * dy - p * (x - mean) - q, per channel (training: p, q from the sums) */
    bn_bw_job j = {.xd = xd, .dy = dy, .mean = mean, .invstd = invstd, .meand = meand, .w = w, .dx = dx, .dw = dw,
                   .db = db, .N = N, .C = C, .S = S, .n = n, .training = training, .fresh = fresh};
    if (S == 1 && C > 1) {
        const int64_t nblk = (C + BN_CB - 1) / BN_CB;
        nb__par_for(nblk, nb__par_parts(nblk, par), bn_backward_blocks, &j);
        return NB_OK;
    }
    nb__par_for(C, nb__par_parts(C, par), bn_backward_channels, &j);
    return NB_OK;
}
