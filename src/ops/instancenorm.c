/* Instance normalisation, torch.nn.functional.instance_norm without running
 * statistics (use_input_stats=True), as CycleGAN's generators use it.
 *
 * x is seen as (N, C, S), S the product of the spatial dimensions; every
 * plane (n, c) of S floats is normalised on its own:
 *   mean, var = biased statistics of the plane, invstd = 1/sqrt(var + eps)
 *   xhat = (x - mean) * invstd,  y = gamma[c] * xhat + beta[c]
 * Backward, with sums over the plane and g = gamma[c] (1 without weight):
 *   dx     += g * invstd / S * (S dy - sum(dy) - xhat sum(dy xhat))
 *   dgamma += sum over n of sum(dy xhat),  dbeta += sum over n of sum(dy)
 * Plane sums accumulate in double; threads split the planes and the affine
 * gradients add the per-plane sums in sample order, so results do not depend
 * on the thread count. */
#include "../core/internal.h"
#include <math.h>

#define IN_PAR_MIN 32768   /* elements before threads pay off */

typedef struct {
    const float *x;        /* contiguous (N, C, S) */
    double *mean;          /* per plane */
    float *invstd;         /* per plane */
    int64_t N, C, S;
} in_saved;

/* The mean and 1/sqrt(biased var + eps) of one plane, two passes in double. */
static void plane_stats(const float *p, int64_t S, float eps, double *mean, float *invstd)
{
    double s = 0.0, q = 0.0;
    for (int64_t k = 0; k < S; k++) s += p[k];
    const double m = s / (double)S;
    for (int64_t k = 0; k < S; k++) q += ((double)p[k] - m) * ((double)p[k] - m);
    *mean = m;
    *invstd = (float)(1.0 / sqrt(q / (double)S + (double)eps));
}


/* The affine parameter's value for channel c (1 or 0 without one). */
static float affine_at(const nb_tensor *t, int64_t c, float none)
{
    return t ? t->data[c * t->stride[0]] : none;
}

static int check_affine(nb_ctx *ctx, const nb_tensor *t, const char *what, const nb_tensor *x)
{
    char st[96], sx[96];
    if (t && (t->ndim != 1 || t->shape[0] != x->shape[1])) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "instance_norm: %s %s must be 1-D with %lld entries (input %s)", what,
                    nb_shape_str(t, st, sizeof st), (long long)x->shape[1], nb_shape_str(x, sx, sizeof sx));
        return 0;
    }
    return 1;
}

/* The planes of one call: forward (y from x) or backward (dx and the
 * per-plane sums sdy, sdyx from dy). */
typedef struct {
    const in_saved *s;
    const nb_tensor *weight, *bias;
    float eps;
    float *y;
    const float *dy;
    float *dx;
    double *sdy, *sdyx;
} in_job;

static void in_planes(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const in_job *j = ctx;
    const in_saved *s = j->s;  /* its mean and invstd arrays are written */
    const int64_t C = s->C, S = s->S;
    const float *xd = s->x;
    float *y = j->y;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t c = q % C;
        plane_stats(xd + q * S, S, j->eps, &s->mean[q], &s->invstd[q]);
        const double m = s->mean[q];
        const float k = affine_at(j->weight, c, 1.0f) * s->invstd[q], b = affine_at(j->bias, c, 0.0f);
        for (int64_t e = 0; e < S; e++) y[q * S + e] = (float)((double)xd[q * S + e] - m) * k + b;
    }
}

static void in_planes_bw(void *ctx, int64_t lo, int64_t hi, int part)
{
    (void)part;
    const in_job *j = ctx;
    const in_saved *s = j->s;
    const int64_t C = s->C, S = s->S;
    for (int64_t q = lo; q < hi; q++) {
        const float *xp = s->x + q * S, *g = j->dy + q * S;
        const double m = s->mean[q], is = s->invstd[q];
        double a = 0.0, ax = 0.0;
        for (int64_t e = 0; e < S; e++) {
            a += g[e];
            ax += g[e] * (((double)xp[e] - m) * is);
        }
        j->sdy[q] = a;
        j->sdyx[q] = ax;
        if (j->dx) {
            /* dx = k * (dy - mean(dy) - xhat * mean(dy xhat)) */
            const double k = affine_at(j->weight, q % C, 1.0f) * is, ma = a / (double)S, max = ax / (double)S;
            float *d = j->dx + q * S;
            for (int64_t e = 0; e < S; e++)
                d[e] += (float)(k * (g[e] - ma - ((double)xp[e] - m) * is * max));
        }
    }
}

nb_tensor *nb_instance_norm(nb_ctx *ctx, nb_tensor *x, nb_tensor *weight, nb_tensor *bias, float eps)
{
    char sx[96];
    if (!x) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "instance_norm: context is NULL");
    if (x->ndim < 3)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "instance_norm: input must be (N, C, *) with spatial dimensions, got %s",
                           nb_shape_str(x, sx, sizeof sx));
    if (!check_affine(ctx, weight, "weight", x) || !check_affine(ctx, bias, "bias", x)) return NULL;
    if (!(eps >= 0) || isinf(eps)) return nb__op_fail(ctx, NB_ERR_ARG, "instance_norm: eps=%g must be finite and >= 0", eps);
    const int64_t N = x->shape[0], C = x->shape[1], S = N * C > 0 ? nb_tensor_numel(x) / (N * C) : 1;
    /* torch: a single value per plane has no variance to normalise by */
    if (S <= 1 && N * C > 0)
        return nb__op_fail(ctx, NB_ERR_SHAPE, "instance_norm: expected more than 1 spatial element, got input %s",
                           nb_shape_str(x, sx, sizeof sx));
    nb_arena *a = nb_ctx_arena(ctx);
    in_saved *s = nb_arena_alloc(a, sizeof *s);
    nb_tensor *out = nb_tensor_new(ctx, x->ndim, x->shape);
    if (!s || !out) return nb__op_fail(ctx, NB_ERR_NOMEM, "instance_norm: out of memory");
    s->x = nb__contiguous_data(ctx, x);
    s->mean = nb_arena_alloc(a, (size_t)(N * C) * sizeof(double) + 1);
    s->invstd = nb_arena_alloc(a, (size_t)(N * C) * sizeof(float) + 1);
    if (!s->x || !s->mean || !s->invstd) return nb__op_fail(ctx, NB_ERR_NOMEM, "instance_norm: out of memory");
    s->N = N;
    s->C = C;
    s->S = S;
    in_job j = {.s = s, .weight = weight, .bias = bias, .eps = eps, .y = out->data};
    nb__par_for(N * C, nb__par_parts(N * C, N * C * S >= IN_PAR_MIN), in_planes, &j);
    nb_tensor *in[3] = {x, NULL, NULL};
    int nin = 1;
    if (weight) in[nin++] = weight;
    if (bias) in[nin++] = bias;
    nb__node *node = nb__record(ctx, NB__OP_INSTANCE_NORM, out, in, nin);
    if (node) {
        node->saved = s;
        node->i[0] = weight != NULL;
        node->i[1] = bias != NULL;
    }
    return out;
}

nb_status nb__bw_instance_norm(nb_ctx *ctx, nb__node *nd)
{
    const in_saved *s = nd->saved;
    nb_tensor *x = nd->in[0];
    nb_tensor *w = nd->i[0] ? nd->in[1] : NULL;
    nb_tensor *b = nd->i[1] ? nd->in[1 + (int)nd->i[0]] : NULL;
    const int64_t N = s->N, C = s->C, S = s->S, planes = N * C;
    float *dx = x->requires_grad ? x->grad : NULL;
    float *dw = w && w->requires_grad ? w->grad : NULL;
    float *db = b && b->requires_grad ? b->grad : NULL;
    /* per-plane sum(dy) and sum(dy * xhat), reduced over samples afterwards */
    double *sdy = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(2 * planes) * sizeof(double) + 1);
    if (!sdy) return nb__fail(NB_ERR_NOMEM, "instance_norm backward: out of memory");
    double *sdyx = sdy + planes;
    in_job j = {.s = s, .weight = w, .dy = nd->out->grad, .dx = dx, .sdy = sdy, .sdyx = sdyx};
    nb__par_for(planes, nb__par_parts(planes, planes * S >= IN_PAR_MIN), in_planes_bw, &j);
    for (int64_t c = 0; c < C; c++) {
        double a = 0.0, ax = 0.0;
        for (int64_t n = 0; n < N; n++) {
            a += sdy[n * C + c];
            ax += sdyx[n * C + c];
        }
        if (db) db[c] += (float)a;
        if (dw) dw[c] += (float)ax;
    }
    return NB_OK;
}
