/* Transposed 2-D convolution (torch.nn.functional.conv_transpose2d), NCHW.
 *
 * conv_transpose2d(x, W) is the gradient of conv2d(., W) with respect to its
 * input: the conv2d whose input is this op's output plane (OH, OW) and whose
 * output is this op's input grid (H, W), with the same stride, padding,
 * dilation, groups and weight (Cin, Cout/groups, kh, kw) = conv2d's
 * (O, C/groups, kh, kw). So with col the column matrix of that conv2d,
 *   col[(co*kh + i)*kw + j][h*W + w] <-> out[co][h*sh - ph + i*dh][w*sw - pw + j*dw],
 * per sample n and group g (Cig = Cin/groups, Cog = Cout/groups,
 * K = Cog*kh*kw, P = H*W):
 *   forward   col (K x P)   = W[g]^T (K x Cig) @ X[n,g] (Cig x P);  Y[n,g] = b + col2im(col)
 *   data      dX[n,g]      += W[g] (Cig x K) @ im2col(dY[n,g])      (the conv2d forward)
 *   weights   dW[g] (Cig x K) += X[n,g] @ im2col(dY[n,g])^T
 *   bias      db[co]       += sum over n and pixels of dY[n,co]
 * all on nb_gemm; the backward gathers im2col(dY) once for both GEMMs.
 * The column buffer is bounded (CT_TILE_FLOATS): a large image is done one
 * tile of input rows at a time; small images (a GAN's 1x1 noise input,
 * 7x7 maps) put several samples side by side in one tile instead, so the
 * GEMMs are wide (P = 1 would make them matrix-vector products).
 *
 * Threads: the forward runs blocks of samples on threads (their outputs
 * are disjoint). The backward cuts the blocks into `parts` ranges, a number
 * fixed by the shape alone; each range owns its slice of dX and sums its
 * weight gradient into its own buffer (range 0 straight into dW), added in
 * order at the end. nb_gemm gives the same bits on any thread count, so the
 * results do not depend on it. */
#include "../core/internal.h"
#include <limits.h>

#define CT_TILE_FLOATS (256 * 1024)  /* column buffer per thread (K x tile) */
#define CT_PAR_FLOPS   2.0e6         /* below this, one thread */
#define CT_PARTS_MAX   8             /* weight-gradient partial sums */
#define CT_PARTS_BYTES (32u << 20)   /* their memory, at most */

typedef struct {
    int64_t N, Cin, H, W, Cout, OH, OW;  /* x (N,Cin,H,W) -> y (N,Cout,OH,OW) */
    int kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int64_t Cig, Cog, K, P;              /* K = Cog*kh*kw, P = H*W */
    int64_t rows, ntiles;                /* input rows per tile, tiles per sample */
    int64_t spb, nblocks;                /* samples per block (> 1 only when rows == H) */
} ct_geom;

typedef struct {
    ct_geom g;
    const float *x, *w;                  /* contiguous input and weight */
} ct_saved;

/* ---- the index map, one tile of input rows [h0, h1) ------------------------ */


/* y (one group's Cog output planes of one sample) += the tile's columns
 * (rows ld floats apart), scattered. */
static void col2im(const ct_geom *g, const float *col, int64_t ld, int64_t h0, int64_t h1, float *y)
{
    const int64_t W = g->W;
    for (int64_t co = 0; co < g->Cog; co++)
        for (int i = 0; i < g->kh; i++) {
            int64_t t0, t1;
            nb__conv_span(h1 - h0, g->OH, g->sh, h0 * g->sh - g->ph + (int64_t)i * g->dh, &t0, &t1);
            for (int j = 0; j < g->kw; j++) {
                const float *src = col + ((co * g->kh + i) * g->kw + j) * ld;
                const int64_t off = (int64_t)j * g->dw - g->pw;
                int64_t lo, hi;
                nb__conv_span(W, g->OW, g->sw, off, &lo, &hi);
                for (int64_t t = t0; t < t1; t++) {
                    const int64_t oy = (h0 + t) * g->sh - g->ph + (int64_t)i * g->dh;
                    float *restrict d = y + (co * g->OH + oy) * g->OW + off;
                    const float *restrict s = src + t * W;
                    for (int64_t w = lo; w < hi; w++) d[w * g->sw] += s[w];
                }
            }
        }
}

/* The tile's columns (rows ld floats apart) gathered from dy (one group's
 * Cog planes of one sample); 0 where the map falls outside the plane. */
static void im2col(const ct_geom *g, const float *dy, int64_t ld, int64_t h0, int64_t h1, float *col)
{
    const int64_t W = g->W, pt = (h1 - h0) * W;
    for (int64_t co = 0; co < g->Cog; co++)
        for (int i = 0; i < g->kh; i++) {
            int64_t t0, t1;
            nb__conv_span(h1 - h0, g->OH, g->sh, h0 * g->sh - g->ph + (int64_t)i * g->dh, &t0, &t1);
            for (int j = 0; j < g->kw; j++) {
                float *dst = col + ((co * g->kh + i) * g->kw + j) * ld;
                const int64_t off = (int64_t)j * g->dw - g->pw;
                int64_t lo, hi;
                nb__conv_span(W, g->OW, g->sw, off, &lo, &hi);
                memset(dst, 0, (size_t)pt * sizeof(float));
                for (int64_t t = t0; t < t1; t++) {
                    const int64_t oy = (h0 + t) * g->sh - g->ph + (int64_t)i * g->dh;
                    const float *restrict s = dy + (co * g->OH + oy) * g->OW + off;
                    float *restrict d = dst + t * W;
                    for (int64_t w = lo; w < hi; w++) d[w] = s[w * g->sw];
                }
            }
        }
}

static void tile_rows(const ct_geom *g, int64_t t, int64_t *h0, int64_t *h1)
{
    *h0 = t * g->rows;
    *h1 = *h0 + g->rows < g->H ? *h0 + g->rows : g->H;
}

/* Samples [*n0, *n1) of block b. */
static void block_samples(const ct_geom *g, int64_t b, int64_t *n0, int64_t *n1)
{
    *n0 = b * g->spb;
    *n1 = *n0 + g->spb < g->N ? *n0 + g->spb : g->N;
}

/* Floats of one thread's workspace: the columns, then the input and its
 * gradient side by side (blocks of several samples only). */
static int64_t work_floats(const ct_geom *g)
{
    const int64_t cols = g->spb * g->rows * g->W;
    return g->K * cols + (g->spb > 1 ? 2 * g->Cig * cols : 0);
}

/* xb (Cig x nb*P) = group gi's channels of samples [n0, n0 + nb), side by side. */
static void pack_samples(const ct_geom *g, const float *x, int64_t gi, int64_t n0, int64_t nb, float *xb)
{
    for (int64_t c = 0; c < g->Cig; c++)
        for (int64_t j = 0; j < nb; j++)
            memcpy(xb + (c * nb + j) * g->P, x + ((n0 + j) * g->Cin + gi * g->Cig + c) * g->P,
                   (size_t)g->P * sizeof(float));
}

/* The threads a loop may use here: 1 inside a task of the pool. */
static int max_threads(void)
{
    return nb__par_parts(NB__POOL_MAX_THREADS, 1);
}

static double flops(const ct_geom *g) { return 2.0 * (double)g->N * (double)g->Cin * (double)g->K * (double)g->P; }

/* ---- geometry and checks ------------------------------------------------------ */

static int64_t out_size(int64_t in, int stride, int pad, int dil, int k, int opad)
{
    return (in - 1) * stride - 2 * (int64_t)pad + (int64_t)dil * (k - 1) + opad + 1;
}

/* Fills g from the shapes and options, or records the failure (messages as
 * torch's where torch has one). */
static int ct_geometry(nb_ctx *ctx, const nb_tensor *x, const nb_tensor *w, const nb_tensor *b,
                       const nb_conv_transpose2d_opts *opts, ct_geom *g)
{
    static const nb_conv_transpose2d_opts defaults = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
    const nb_conv_transpose2d_opts *o = opts ? opts : &defaults;
    char sx[96], sw[96], sb[96];
    nb_shape_str(x, sx, sizeof sx);
    nb_shape_str(w, sw, sizeof sw);
    if (x->ndim != 4) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: input must be 4-D (N, C, H, W), got %s", sx);
        return 0;
    }
    if (w->ndim != 4) {
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "conv_transpose2d: weight must be 4-D (in_channels, out_channels/groups, kH, kW), got %s", sw);
        return 0;
    }
    for (int d = 0; d < 2; d++)
        if (o->stride[d] < 0 || o->padding[d] < 0 || o->output_padding[d] < 0 || o->dilation[d] < 0 ||
            o->groups < 0) {
            nb__op_fail(ctx, NB_ERR_ARG,
                        "conv_transpose2d: negative option: stride=(%d, %d), padding=(%d, %d), "
                        "output_padding=(%d, %d), dilation=(%d, %d), groups=%d",
                        o->stride[0], o->stride[1], o->padding[0], o->padding[1], o->output_padding[0],
                        o->output_padding[1], o->dilation[0], o->dilation[1], o->groups);
            return 0;
        }
    memset(g, 0, sizeof *g);
    g->sh = o->stride[0] ? o->stride[0] : 1;
    g->sw = o->stride[1] ? o->stride[1] : 1;
    g->ph = o->padding[0];
    g->pw = o->padding[1];
    g->dh = o->dilation[0] ? o->dilation[0] : 1;
    g->dw = o->dilation[1] ? o->dilation[1] : 1;
    g->groups = o->groups ? o->groups : 1;
    const int oph = o->output_padding[0], opw = o->output_padding[1];
    /* torch: output padding must be smaller than either stride or dilation */
    if ((oph >= g->sh && oph >= g->dh) || (opw >= g->sw && opw >= g->dw)) {
        nb__op_fail(ctx, NB_ERR_ARG,
                    "conv_transpose2d: output padding must be smaller than either stride or dilation, but got "
                    "output_padding=(%d, %d), stride=(%d, %d), dilation=(%d, %d)",
                    oph, opw, g->sh, g->sw, g->dh, g->dw);
        return 0;
    }
    g->N = x->shape[0];
    g->Cin = x->shape[1];
    g->H = x->shape[2];
    g->W = x->shape[3];
    if (w->shape[0] < 1 || w->shape[1] < 1 || w->shape[2] < 1 || w->shape[3] < 1) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: weight %s has an empty dimension", sw);
        return 0;
    }
    if (w->shape[2] > INT_MAX || w->shape[3] > INT_MAX) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: kernel of weight %s is too large", sw);
        return 0;
    }
    g->kh = (int)w->shape[2];
    g->kw = (int)w->shape[3];
    if (w->shape[0] != g->Cin) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: weight %s expects input with %lld channels, input %s has %lld",
                    sw, (long long)w->shape[0], sx, (long long)g->Cin);
        return 0;
    }
    if (g->Cin % g->groups) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: input %s has %lld channels, not divisible by groups=%d",
                    sx, (long long)g->Cin, g->groups);
        return 0;
    }
    g->Cout = w->shape[1] * g->groups;
    if (b && (b->ndim != 1 || b->shape[0] != g->Cout)) {
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "conv_transpose2d: bias %s must be 1-D with out_channels = %lld entries (weight %s, groups=%d)",
                    nb_shape_str(b, sb, sizeof sb), (long long)g->Cout, sw, g->groups);
        return 0;
    }
    if (g->H < 1 || g->W < 1) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: input %s has an empty spatial dimension", sx);
        return 0;
    }
    g->OH = out_size(g->H, g->sh, g->ph, g->dh, g->kh, oph);
    g->OW = out_size(g->W, g->sw, g->pw, g->dw, g->kw, opw);
    if (g->OH < 1 || g->OW < 1) {
        nb__op_fail(ctx, NB_ERR_SHAPE,
                    "conv_transpose2d: output size %lldx%lld is too small (must be >= 1): input %s, kernel %dx%d, "
                    "stride=(%d, %d), padding=(%d, %d), output_padding=(%d, %d), dilation=(%d, %d)",
                    (long long)g->OH, (long long)g->OW, sx, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, oph, opw,
                    g->dh, g->dw);
        return 0;
    }
    g->Cig = g->Cin / g->groups;
    g->Cog = w->shape[1];
    g->K = g->Cog * g->kh * g->kw;
    g->P = g->H * g->W;
    if (g->K > INT_MAX || g->P > INT_MAX || g->Cin > INT_MAX || g->OH * g->OW > INT_MAX) {
        nb__op_fail(ctx, NB_ERR_SHAPE, "conv_transpose2d: input %s with weight %s is too large", sx, sw);
        return 0;
    }
    int64_t r = CT_TILE_FLOATS / (g->K * g->W);
    g->rows = r < 1 ? 1 : r > g->H ? g->H : r;
    g->ntiles = (g->H + g->rows - 1) / g->rows;
    int64_t spb = g->ntiles == 1 ? CT_TILE_FLOATS / (g->K * g->P) : 1;
    g->spb = spb < 1 ? 1 : spb > g->N ? (g->N > 0 ? g->N : 1) : spb;
    g->nblocks = (g->N + g->spb - 1) / g->spb;
    return 1;
}


/* ---- forward ------------------------------------------------------------------- */

/* Y of block b's samples = bias, then every tile of every group scattered
 * onto it. */
static void forward_block(const ct_geom *g, const float *x, const float *w, const float *b, int64_t bstride,
                          float *y, int64_t blk, float *ws)
{
    const int64_t plane = g->OH * g->OW;
    int64_t n0, n1;
    block_samples(g, blk, &n0, &n1);
    const int64_t nb = n1 - n0;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t co = 0; co < g->Cout; co++) {
            const float v = b ? b[co * bstride] : 0.0f;
            float *yp = y + (n * g->Cout + co) * plane;
            for (int64_t k = 0; k < plane; k++) yp[k] = v;
        }
    for (int64_t gi = 0; gi < g->groups; gi++) {
        const float *wg = w + gi * g->Cig * g->K;
        for (int64_t t = 0; t < g->ntiles; t++) {
            int64_t h0, h1;
            tile_rows(g, t, &h0, &h1);
            const int64_t pt = (h1 - h0) * g->W, ld = nb * pt;
            /* one sample: x's rows are the GEMM's operand as they are */
            const float *xb = x + (n0 * g->Cin + gi * g->Cig) * g->P + h0 * g->W;
            int64_t ldx = g->P;
            if (nb > 1) {
                pack_samples(g, x, gi, n0, nb, ws + g->K * ld);
                xb = ws + g->K * ld;
                ldx = ld;
            }
            nb_gemm(1, 0, (int)g->K, (int)ld, (int)g->Cig, 1.0f, wg, (int)g->K, xb, (int)ldx, 0.0f, ws, (int)ld);
            for (int64_t j = 0; j < nb; j++)
                col2im(g, ws + j * pt, ld, h0, h1, y + ((n0 + j) * g->Cout + gi * g->Cog) * plane);
        }
    }
}

/* Blocks of samples: forward (x, w, bias b with stride bs into y) or
 * backward (`parts` runs of blocks: dx slices and dW sums, part 0 straight
 * into dw, part p > 0 into partial + (p - 1) * wsz). Each thread has its
 * workspace, ws + slot * wf. */
typedef struct {
    const ct_geom *g;
    const float *x, *w, *b, *dy;
    int64_t bs, wf, parts, wsz;
    float *y, *dx, *dw, *partial, *ws;
} ct_job;

static void forward_blocks(void *ctx, int64_t lo, int64_t hi, int slot)
{
    const ct_job *j = ctx;
    for (int64_t blk = lo; blk < hi; blk++) forward_block(j->g, j->x, j->w, j->b, j->bs, j->y, blk, j->ws + slot * j->wf);
}

nb_tensor *nb_conv_transpose2d(nb_ctx *ctx, nb_tensor *x, nb_tensor *w, nb_tensor *b,
                               const nb_conv_transpose2d_opts *opts)
{
    nb_tensor *in[3] = {x, w, b};
    if (nb__any_null(in, 2)) return NULL;
    if (!ctx) return nb__op_fail(ctx, NB_ERR_ARG, "conv_transpose2d: context is NULL");
    ct_saved *s = nb_arena_alloc(nb_ctx_arena(ctx), sizeof *s);
    if (!s) return nb__op_fail(ctx, NB_ERR_NOMEM, "conv_transpose2d: out of memory");
    if (!ct_geometry(ctx, x, w, b, opts, &s->g)) return NULL;
    const ct_geom *g = &s->g;
    nb_tensor *out = nb_tensor_new(ctx, 4, (int64_t[]){g->N, g->Cout, g->OH, g->OW});
    if (!out) return NULL;
    s->x = nb__contiguous_data(ctx, x);
    s->w = nb__contiguous_data(ctx, w);
    int nth = g->nblocks > 1 && flops(g) >= CT_PAR_FLOPS ? max_threads() : 1;
    if (nth > g->nblocks) nth = (int)g->nblocks;
    const int64_t wf = work_floats(g);
    float *ws = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(wf * nth) * sizeof(float));
    if (!s->x || !s->w || !ws) return nb__op_fail(ctx, NB_ERR_NOMEM, "conv_transpose2d: out of memory");
    ct_job j = {.g = g, .x = s->x, .w = s->w, .b = b ? b->data : NULL, .bs = b ? b->stride[0] : 0, .wf = wf,
                .y = out->data, .ws = ws};
    nb__par_for(g->nblocks, nth, forward_blocks, &j);
    nb__node *node = nb__record(ctx, NB__OP_CONV_TRANSPOSE2D, out, in, b ? 3 : 2);
    if (node) node->saved = s;
    return out;
}

/* ---- backward ------------------------------------------------------------------ */

/* Blocks [b0, b1): dX slices (dx may be NULL) and dW sums into dw (may be NULL). */
static void backward_range(const ct_geom *g, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, int64_t b0, int64_t b1, float *ws)
{
    const int64_t plane = g->OH * g->OW;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t n0, n1;
        block_samples(g, blk, &n0, &n1);
        const int64_t nb = n1 - n0;
        for (int64_t gi = 0; gi < g->groups; gi++) {
            const float *wg = w + gi * g->Cig * g->K;
            for (int64_t t = 0; t < g->ntiles; t++) {
                int64_t h0, h1;
                tile_rows(g, t, &h0, &h1);
                const int64_t pt = (h1 - h0) * g->W, ld = nb * pt;
                for (int64_t j = 0; j < nb; j++)
                    im2col(g, dy + ((n0 + j) * g->Cout + gi * g->Cog) * plane, ld, h0, h1, ws + j * pt);
                const int64_t xo = (n0 * g->Cin + gi * g->Cig) * g->P + h0 * g->W;
                if (nb == 1) {   /* x's and dX's rows are the GEMMs' operands as they are */
                    if (dx)
                        nb_gemm(0, 0, (int)g->Cig, (int)ld, (int)g->K, 1.0f, wg, (int)g->K, ws, (int)ld, 1.0f,
                                dx + xo, (int)g->P);
                    if (dw)
                        nb_gemm(0, 1, (int)g->Cig, (int)g->K, (int)ld, 1.0f, x + xo, (int)g->P, ws, (int)ld, 1.0f,
                                dw + gi * g->Cig * g->K, (int)g->K);
                    continue;
                }
                float *xb = ws + g->K * ld, *dxb = xb + g->Cig * ld;
                if (dx) {
                    nb_gemm(0, 0, (int)g->Cig, (int)ld, (int)g->K, 1.0f, wg, (int)g->K, ws, (int)ld, 0.0f, dxb,
                            (int)ld);
                    for (int64_t c = 0; c < g->Cig; c++)
                        for (int64_t j = 0; j < nb; j++) {
                            float *d = dx + ((n0 + j) * g->Cin + gi * g->Cig + c) * g->P;
                            const float *v = dxb + (c * nb + j) * g->P;
                            for (int64_t e = 0; e < g->P; e++) d[e] += v[e];
                        }
                }
                if (dw) {
                    pack_samples(g, x, gi, n0, nb, xb);
                    nb_gemm(0, 1, (int)g->Cig, (int)g->K, (int)ld, 1.0f, xb, (int)ld, ws, (int)ld, 1.0f,
                            dw + gi * g->Cig * g->K, (int)g->K);
                }
            }
        }
    }
}

/* db[co] += sum over samples and pixels of dY[n,co], samples in order. */
static void bias_grad(const ct_geom *g, const float *dy, float *db)
{
    const int64_t plane = g->OH * g->OW;
    for (int64_t co = 0; co < g->Cout; co++) {
        double acc = 0.0;
        for (int64_t n = 0; n < g->N; n++) {
            const float *p = dy + (n * g->Cout + co) * plane;
            for (int64_t k = 0; k < plane; k++) acc += p[k];
        }
        db[co] += (float)acc;
    }
}

static void backward_parts(void *ctx, int64_t lo, int64_t hi, int slot)
{
    const ct_job *j = ctx;
    const int64_t nblocks = j->g->nblocks;
    for (int64_t p = lo; p < hi; p++) {
        float *tdw = j->dw ? (p ? j->partial + (p - 1) * j->wsz : j->dw) : NULL;
        backward_range(j->g, j->x, j->w, j->dy, j->dx, tdw, nblocks * p / j->parts, nblocks * (p + 1) / j->parts,
                       j->ws + slot * j->wf);
    }
}

nb_status nb__bw_conv_transpose2d(nb_ctx *ctx, nb__node *node)
{
    const ct_saved *s = node->saved;
    const ct_geom *g = &s->g;
    nb_tensor *x = node->in[0], *w = node->in[1], *b = node->nin > 2 ? node->in[2] : NULL;
    const float *dy = node->out->grad;
    float *dx = x->requires_grad ? x->grad : NULL;
    float *dw = w->requires_grad ? w->grad : NULL;
    if (b && b->requires_grad) bias_grad(g, dy, b->grad);
    if (!dx && !dw) return NB_OK;

    const int64_t wsz = g->Cin * g->K;    /* one partial weight gradient */
    int64_t parts = g->nblocks < CT_PARTS_MAX ? g->nblocks : CT_PARTS_MAX;
    while (parts > 1 && dw && (uint64_t)(parts - 1) * (uint64_t)wsz * sizeof(float) > CT_PARTS_BYTES) parts--;
    int nth = parts > 1 && flops(g) >= CT_PAR_FLOPS ? max_threads() : 1;
    if (nth > parts) nth = (int)parts;
    const int64_t wf = work_floats(g);
    float *ws = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)(wf * nth) * sizeof(float));
    float *part = dw && parts > 1
                      ? nb_arena_calloc(nb_ctx_arena(ctx), (size_t)((parts - 1) * wsz) * sizeof(float))
                      : NULL;
    if (!ws || (dw && parts > 1 && !part))
        return nb__fail(NB_ERR_NOMEM, "conv_transpose2d backward: out of memory");
    ct_job j = {.g = g, .x = s->x, .w = s->w, .dy = dy, .wf = wf, .parts = parts, .wsz = wsz, .dx = dx, .dw = dw,
                .partial = part, .ws = ws};
    nb__par_for(parts, nth, backward_parts, &j);
    if (part)
        for (int64_t e = 0; e < wsz; e++) {
            float a = dw[e];
            for (int64_t p = 1; p < parts; p++) a += part[(p - 1) * wsz + e];
            dw[e] = a;
        }
    return NB_OK;
}
