/* Winograd F(2x2, 3x3) convolution on nb_gemm; see winograd.h.
 *
 * With B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *      G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *      A^T = [1 1 1 0; 0 1 -1 -1]
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks").
 *
 * Layouts, per chunk of nt tiles (tt = tile index in the chunk):
 *   V[xi][c][tt]  transformed inputs, a C x chunk matrix per xi
 *   U[xi][c][o]   the transformed weights, C x O per xi (U[xi]^T, read in
 *                 place by the GEMM as a transposed A: no packing per chunk)
 *   M[xi][o][tt]  their products U[xi]^T V[xi], O x chunk per xi
 *   dU[xi][c][o]  the weight gradient's, C x O per xi: V dM^T puts the
 *                 64 output channels of the CNN's conv2 on the micro-tile's
 *                 14-row side (5 tiles, 91% full) rather than its 32 input
 *                 channels (3 tiles, 76%), and packs the smaller of the two
 *                 (bench: 64x32x160 NT 133 -> 167 GFLOP/s, 1 thread)
 * The transforms run along a row of tiles at a time, on plain arrays the
 * compiler vectorises: a tile row's four input rows are split into their
 * even and odd columns (tile tx covers padded columns 2tx .. 2tx+3, i.e.
 * even[tx], odd[tx], even[tx+1], odd[tx+1]), transformed down the rows,
 * then across (winograd_avx512.c does the same across 16 tiles at once).
 * The loops are compiled for AVX-512, AVX2 and baseline
 * x86-64, chosen at load time; -std=c11 keeps multiply-adds unfused, so
 * every variant gives the same bits. */
#include "winograd.h"
#include "simd.h"
#include "nabla.h"
#include <string.h>

/* V and M of a chunk, in floats: 256K (1 MiB) keeps both in L2 (2 MiB);
 * measured on the CNN's 32->64 14x14 layer: 128 to 256 tiles run the GEMMs
 * at the same speed, 512 slower. */
#define WG_CHUNK_FLOATS (256 * 1024)

int nb__wg_init(nb__wg_geom *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int ph, int pw)
{
    memset(g, 0, sizeof *g);
    g->N = N, g->C = C, g->H = H, g->W = W, g->O = O, g->ph = ph, g->pw = pw;
    g->OH = H + 2 * (int64_t)ph - 2;
    g->OW = W + 2 * (int64_t)pw - 2;
    if (N < 1 || C < 1 || O < 1 || g->OH < 1 || g->OW < 1) return 0;
    g->th = (g->OH + 1) / 2;
    g->tw = (g->OW + 1) / 2;
    g->tiles = N * g->th * g->tw;
    int64_t ch = WG_CHUNK_FLOATS / (NB__WG_XI * (C + O)) / 32 * 32; /* whole GEMM micro-tiles */
    ch = ch < 32 ? 32 : ch > NB__WG_CHUNK_MAX ? NB__WG_CHUNK_MAX : ch;
    g->chunk = ch < g->tiles ? ch : g->tiles;
    g->nchunks = (g->tiles + g->chunk - 1) / g->chunk;
    return 1;
}

/* The distance between two xi matrices of V (C rows of ch) or M (O rows):
 * one cache line more than the matrix, so that the 16 streams of a
 * transform, one per xi, do not fall into the same L1 sets (matrices of a
 * multiple of 4 KiB did: the transforms ran 2x slower). */
static int64_t xi_stride(int64_t rows, int64_t ch) { return rows * ch + 16; }

int64_t nb__wg_u_floats(int64_t O, int64_t C) { return NB__WG_XI * xi_stride(O, C); }

/* V, M, then 8 rows of tw + 1 floats (the input transform) or 4 of 2 tw
 * (the output transform). */
int64_t nb__wg_ws_floats(const nb__wg_geom *g)
{
    return NB__WG_XI * (xi_stride(g->C, g->chunk) + xi_stride(g->O, g->chunk)) + 8 * (g->tw + 1);
}

/* ---- weights ---------------------------------------------------------------- */

/* u (4x4, row-major, stride us) = G k G^T of a 3x3 kernel k (row-major). */
static void weight_tile(const float k[9], float *u, int64_t us)
{
    float t[4][3]; /* G k */
    for (int j = 0; j < 3; j++) {
        t[0][j] = k[j];
        t[1][j] = (k[j] + k[3 + j] + k[6 + j]) * 0.5f;
        t[2][j] = (k[j] - k[3 + j] + k[6 + j]) * 0.5f;
        t[3][j] = k[6 + j];
    }
    for (int i = 0; i < 4; i++) {
        u[(4 * i + 0) * us] = t[i][0];
        u[(4 * i + 1) * us] = (t[i][0] + t[i][1] + t[i][2]) * 0.5f;
        u[(4 * i + 2) * us] = (t[i][0] - t[i][1] + t[i][2]) * 0.5f;
        u[(4 * i + 3) * us] = t[i][2];
    }
}

void nb__wg_weights(const float *w, int64_t O, int64_t C, int flip, int64_t j0, int64_t j1, float *U)
{
    const int64_t us = xi_stride(O, C);
    /* the product's output channels (rows) by its input channels (cols),
     * each of the 16 stored transposed, cols x rows: the GEMM then reads it
     * in place as op(A) = A^T instead of packing it for every chunk; j
     * runs over the cols (flip ? O : C) */
    const int64_t rows = flip ? C : O;
    for (int64_t j = j0; j < j1; j++)
        for (int64_t i = 0; i < rows; i++) {
            const float *k = w + (flip ? j * C + i : i * C + j) * 9;
            float r[9];
            for (int t = 0; t < 9; t++) r[t] = flip ? k[8 - t] : k[t];
            weight_tile(r, U + j * rows + i, us);
        }
}

/* ---- input transform ---------------------------------------------------------- */

/* Row ih of plane x (H x W), padded columns c0 + 2k and c0 + 2k + 1 for
 * k in [0, n): split into e[k] and od[k] (0 outside the plane). */
NB_CLONES static void split_row(const float *x, int64_t H, int64_t W, int64_t ih, int64_t c0, int64_t n, float *e,
                             float *od)
{
    if (ih < 0 || ih >= H) {
        memset(e, 0, (size_t)n * sizeof(float));
        memset(od, 0, (size_t)n * sizeof(float));
        return;
    }
    const float *r = x + ih * W;
    /* interior: both columns inside the row */
    int64_t lo = c0 >= 0 ? 0 : (-c0 + 1) / 2, hi = W - c0 > 0 ? (W - c0) / 2 : 0;
    if (hi > n) hi = n;
    if (lo > hi) lo = hi;
    for (int64_t k = 0; k < lo; k++) {
        const int64_t c = c0 + 2 * k;
        e[k] = c >= 0 && c < W ? r[c] : 0.0f;
        od[k] = c + 1 >= 0 && c + 1 < W ? r[c + 1] : 0.0f;
    }
    const float *rc = r + c0;
    for (int64_t k = lo; k < hi; k++) {
        e[k] = rc[2 * k];
        od[k] = rc[2 * k + 1];
    }
    for (int64_t k = hi; k < n; k++) {
        const int64_t c = c0 + 2 * k;
        e[k] = c >= 0 && c < W ? r[c] : 0.0f;
        od[k] = c + 1 >= 0 && c + 1 < W ? r[c + 1] : 0.0f;
    }
}

/* V[xi * vs + tx] for the m tiles of one row from the split rows e[i], od[i]
 * (m + 1 entries each) of the tile row's 4 input rows: B^T d B. */
NB_CLONES static void in_tiles(float *const e[4], float *const od[4], int64_t m, float *V, int64_t vs)
{
    /* down the rows, in place: rows become B^T d */
    for (int64_t k = 0; k <= m; k++) {
        const float e0 = e[0][k], e1 = e[1][k], e2 = e[2][k], e3 = e[3][k];
        const float o0 = od[0][k], o1 = od[1][k], o2 = od[2][k], o3 = od[3][k];
        e[0][k] = e0 - e2, e[1][k] = e1 + e2, e[2][k] = e2 - e1, e[3][k] = e1 - e3;
        od[0][k] = o0 - o2, od[1][k] = o1 + o2, od[2][k] = o2 - o1, od[3][k] = o1 - o3;
    }
    /* across: columns e[tx], od[tx], e[tx+1], od[tx+1] */
    for (int r = 0; r < 4; r++) {
        const float *a = e[r], *b = od[r];
        float *v0 = V + (4 * r) * vs, *v1 = v0 + vs, *v2 = v1 + vs, *v3 = v2 + vs;
        for (int64_t t = 0; t < m; t++) {
            v0[t] = a[t] - a[t + 1];
            v1[t] = b[t] + a[t + 1];
            v2[t] = a[t + 1] - b[t];
            v3[t] = b[t] - b[t + 1];
        }
    }
}

/* ---- output transform ---------------------------------------------------------- */

/* The m tiles of one row of output channel o from M (xi stride ms): A^T M A
 * into rows y0 and y1 (2m entries each). */
NB_CLONES static void out_tiles(const float *Mo, int64_t ms, int64_t m, float *y0, float *y1)
{
    for (int64_t t = 0; t < m; t++) {
        float s0[4], s1[4];
        for (int j = 0; j < 4; j++) {
            const float m0 = Mo[j * ms + t], m1 = Mo[(4 + j) * ms + t];
            const float m2 = Mo[(8 + j) * ms + t], m3 = Mo[(12 + j) * ms + t];
            s0[j] = m0 + m1 + m2;
            s1[j] = m1 - m2 - m3;
        }
        y0[2 * t] = s0[0] + s0[1] + s0[2];
        y0[2 * t + 1] = s0[1] - s0[2] - s0[3];
        y1[2 * t] = s1[0] + s1[1] + s1[2];
        y1[2 * t + 1] = s1[1] - s1[2] - s1[3];
    }
}

/* dst[0..n) = src + b, or += src when add. */
NB_CLONES static void put_row(float *dst, const float *src, int64_t n, float b, int add)
{
    if (add)
        for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    else
        for (int64_t i = 0; i < n; i++) dst[i] = src[i] + b;
}

/* ---- a chunk -------------------------------------------------------------------- */

static int simd_on = 1;

int nb__wg_use_simd(int on)
{
    int old = simd_on;
    simd_on = on != 0;
    return old;
}

/* The AVX-512 transforms when the CPU has them. */
static const nb__wg_kernels *simd_kernels(void)
{
    if (simd_on && nb__wg_avx512.input && nb__cpu_avx512()) return &nb__wg_avx512;
    return NULL;
}

/* V of tiles [t0, t1) of x. */
static void input(const nb__wg_kernels *K, const nb__wg_geom *g, const float *x, int64_t t0, int64_t t1, float *V,
                  int64_t ch, int64_t vs, float *rows)
{
    const int64_t C = g->C, HW = g->H * g->W, rl = g->tw + 1;
    if (K) K->input(g, x, t0, t1, V, ch, vs);
    else NB__WG_FOR_ROWS(g, t0, t1, {
        float *e[4], *od[4];
        for (int i = 0; i < 4; i++) e[i] = rows + 2 * i * rl, od[i] = e[i] + rl;
        for (int64_t c = 0; c < C; c++) {
            const float *plane = x + (n * C + c) * HW;
            for (int i = 0; i < 4; i++)
                split_row(plane, g->H, g->W, 2 * ty - g->ph + i, 2 * tx0 - g->pw, m + 1, e[i], od[i]);
            in_tiles(e, od, m, V + c * ch + tt, vs);
        }
    });
}

void nb__wg_chunk(const nb__wg_geom *g, const float *U, const float *x, const float *bias, int add, float *y,
                  int64_t k, float *ws)
{
    const nb__wg_kernels *K = simd_kernels();
    const int64_t ch = g->chunk, t0 = k * ch, t1 = t0 + ch < g->tiles ? t0 + ch : g->tiles, nt = t1 - t0;
    const int64_t C = g->C, O = g->O, OHW = g->OH * g->OW;
    const int64_t vs = xi_stride(C, ch), ms = xi_stride(O, ch);
    float *V = ws, *M = V + NB__WG_XI * vs, *rows = M + NB__WG_XI * ms;

    input(K, g, x, t0, t1, V, ch, vs, rows);
    for (int xi = 0; xi < NB__WG_XI; xi++)
        nb_gemm(1, 0, (int)O, (int)nt, (int)C, 1.0f, U + xi * xi_stride(O, C), (int)O, V + xi * vs, (int)ch, 0.0f,
                M + xi * ms, (int)ch);

    if (K) K->output(g, M, ch, ms, t0, t1, bias, add, y);
    else NB__WG_FOR_ROWS(g, t0, t1, {
        float *y0 = rows, *y1 = rows + 2 * m;
        const int64_t ow0 = 2 * tx0, nw = (2 * (tx0 + m) < g->OW ? 2 * (tx0 + m) : g->OW) - ow0;
        const int two = 2 * ty + 1 < g->OH;
        for (int64_t o = 0; o < O; o++) {
            out_tiles(M + o * ch + tt, ms, m, y0, y1);
            float *yp = y + (n * O + o) * OHW + 2 * ty * g->OW + ow0;
            const float b = bias ? bias[o] : 0.0f;
            put_row(yp, y0, nw, b, add);
            if (two) put_row(yp + g->OW, y1, nw, b, add);
        }
    });
}

/* ---- the weight gradient ---------------------------------------------------------- */

/* dM[xi * ms + t] = (A dy A^T)[xi] for the m tiles of one row of dy, whose
 * rows y0 and y1 (y1 NULL past the last row) hold n valid columns from the
 * tiles' first; A = (A^T)^T. */
NB_CLONES static void grad_tiles(const float *y0, const float *y1, int64_t n, int64_t m, float *dM, int64_t ms)
{
    for (int64_t t = 0; t < m; t++) {
        const float d00 = 2 * t < n ? y0[2 * t] : 0.0f, d01 = 2 * t + 1 < n ? y0[2 * t + 1] : 0.0f;
        const float d10 = y1 && 2 * t < n ? y1[2 * t] : 0.0f, d11 = y1 && 2 * t + 1 < n ? y1[2 * t + 1] : 0.0f;
        const float r[4][2] = {{d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
        for (int i = 0; i < 4; i++) {
            dM[(4 * i + 0) * ms + t] = r[i][0];
            dM[(4 * i + 1) * ms + t] = r[i][0] + r[i][1];
            dM[(4 * i + 2) * ms + t] = r[i][0] - r[i][1];
            dM[(4 * i + 3) * ms + t] = -r[i][1];
        }
    }
}

void nb__wg_chunk_grad(const nb__wg_geom *g, const float *x, const float *dy, int first, float *dU, float *db,
                       int64_t k, float *ws)
{
    const nb__wg_kernels *K = simd_kernels();
    const int64_t ch = g->chunk, t0 = k * ch, t1 = t0 + ch < g->tiles ? t0 + ch : g->tiles, nt = t1 - t0;
    const int64_t C = g->C, O = g->O, OW = g->OW, OHW = g->OH * OW;
    const int64_t vs = xi_stride(C, ch), ms = xi_stride(O, ch);
    float *V = ws, *dM = V + NB__WG_XI * vs, *rows = dM + NB__WG_XI * ms;

    input(K, g, x, t0, t1, V, ch, vs, rows);
    if (K) K->grad(g, dy, t0, t1, dM, ch, ms);
    else for (int64_t o = 0; o < O; o++) NB__WG_FOR_ROWS(g, t0, t1, {
        const float *y0 = dy + (n * O + o) * OHW + 2 * ty * OW + 2 * tx0;
        grad_tiles(y0, 2 * ty + 1 < g->OH ? y0 + OW : NULL, OW - 2 * tx0, m, dM + o * ch + tt, ms);
    });
    for (int xi = 0; xi < NB__WG_XI; xi++)
        nb_gemm(0, 1, (int)C, (int)O, (int)nt, 1.0f, V + xi * vs, (int)ch, dM + xi * ms, (int)ch, first ? 0.0f : 1.0f,
                dU + xi * xi_stride(O, C), (int)O);
    if (db)
        for (int64_t o = 0; o < O; o++) {
            const float s = nb__sum16(dM + NB__WG_XI_SUM * ms + o * ch, nt);
            db[o] = first ? s : db[o] + s;
        }
}

void nb__wg_weight_grad(const float *dU, int64_t parts, int64_t O, int64_t C, int64_t q0, int64_t q1, float *dw)
{
    const int64_t us = xi_stride(O, C), ps = nb__wg_u_floats(O, C);
    for (int64_t q = q0; q < q1; q++) {
        float u[4][4], t[3][4];
        const int64_t qt = q % C * O + q / C;   /* dU[xi] holds dU^T: C x O */
        for (int xi = 0; xi < NB__WG_XI; xi++) {
            float a = dU[xi * us + qt];
            for (int64_t p = 1; p < parts; p++) a += dU[p * ps + xi * us + qt];
            u[xi / 4][xi % 4] = a;
        }
        for (int j = 0; j < 4; j++) { /* G^T u */
            t[0][j] = u[0][j] + 0.5f * u[1][j] + 0.5f * u[2][j];
            t[1][j] = 0.5f * u[1][j] - 0.5f * u[2][j];
            t[2][j] = 0.5f * u[1][j] + 0.5f * u[2][j] + u[3][j];
        }
        float *d = dw + q * 9;
        for (int a = 0; a < 3; a++) { /* (G^T u) G */
            d[3 * a + 0] += t[a][0] + 0.5f * t[a][1] + 0.5f * t[a][2];
            d[3 * a + 1] += 0.5f * t[a][1] - 0.5f * t[a][2];
            d[3 * a + 2] += 0.5f * t[a][1] + 0.5f * t[a][2] + t[a][3];
        }
    }
}
