/* Winograd F(2x2, 3x3) convolution: 3x3 kernel, stride 1, dilation 1, one
 * group, any padding. Each 2x2 block of outputs (a tile) of one channel
 * comes from a 4x4 patch d of each input channel:
 *   Y = A^T [ sum_c (G g G^T) .* (B^T d B) ] A
 * so the 36 multiply-adds per tile and channel pair of the direct form
 * become 16, carried by 16 GEMMs (one per element xi of the 4x4 transformed
 * tile): M[xi] (O x tiles) = U[xi] (O x C) @ V[xi] (C x tiles). The
 * transforms only add, subtract and halve (no rounding in G's halving), so
 * the results stay within a few ulps of the direct sum.
 *
 * Tiles are numbered over the batch (n, tile row, tile column) and cut into
 * chunks of g->chunk tiles whose V and M fit in L2. A chunk's outputs are
 * disjoint from every other chunk's and each output element is computed by
 * the same operations whichever chunk or thread holds it, so chunks may run
 * on any threads with the same bits.
 *
 * The data gradient of such a convolution is one too: dX = conv(dY, W')
 * with W'[c][o] = W[o][c] rotated by 180 degrees and padding 2 - p, which
 * nb__wg_weights(flip = 1) prepares. */
#ifndef NABLA_KERNELS_WINOGRAD_H
#define NABLA_KERNELS_WINOGRAD_H
#include <stdint.h>

#define NB__WG_XI 16 /* elements of a transformed tile */

#define NB__WG_CHUNK_MAX 1024 /* the most tiles in a chunk */

typedef struct nb__wg_geom {
    int64_t N, C, H, W;    /* input (N, C, H, W) */
    int64_t O, OH, OW;     /* output channels and size (H + 2ph - 2, W + 2pw - 2) */
    int ph, pw;
    int64_t th, tw, tiles; /* tile rows and columns per sample; tiles in the batch */
    int64_t chunk;         /* tiles per chunk */
    int64_t nchunks;
} nb__wg_geom;

/* Fills g for input (N, C, H, W), O output channels and padding (ph, pw);
 * 0 when the output would be empty. */
int nb__wg_init(nb__wg_geom *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int ph, int pw);

/* Floats of workspace one thread needs for nb__wg_chunk. */
int64_t nb__wg_ws_floats(const nb__wg_geom *g);

/* Floats of U or dU: 16 matrices of C x O (with a gap between them). */
int64_t nb__wg_u_floats(int64_t O, int64_t C);

/* U (16 x C x O, each matrix the transpose of the product's) from w (O, C,
 * 3, 3) when !flip; with flip, the weights of the data gradient: U (16 x O
 * x C) from the rotated, transposed w. Only the rows [j0, j1) of each
 * matrix (input channels, or output channels with flip): ranges can go to
 * threads. */
void nb__wg_weights(const float *w, int64_t O, int64_t C, int flip, int64_t j0, int64_t j1, float *U);

/* The transforms of tiles [t0, t1) (t0 at column 0 of V and M, whose rows
 * are ch floats apart and xi matrices vs and ms), vectorised across tiles: winograd_avx512.c fills
 * nb__wg_avx512 when built for AVX-512 (else NULL entries). */
typedef struct nb__wg_kernels {
    /* V[xi][c][t - t0] = (B^T d B)[xi] of tile t's 4x4 input patch of channel c */
    void (*input)(const nb__wg_geom *g, const float *x, int64_t t0, int64_t t1, float *V, int64_t ch, int64_t vs);
    /* y's 2x2 block of tile t, channel o: (A^T M A) + bias[o], or += when add */
    void (*output)(const nb__wg_geom *g, const float *M, int64_t ch, int64_t ms, int64_t t0, int64_t t1,
                   const float *bias, int add, float *y);
    /* dM[xi][o][t - t0] = (A dy A^T)[xi] of tile t's 2x2 block of dy (channel o) */
    void (*grad)(const nb__wg_geom *g, const float *dy, int64_t t0, int64_t t1, float *dM, int64_t ch, int64_t ms);
} nb__wg_kernels;
extern const nb__wg_kernels nb__wg_avx512;

/* Runs the body over the tile rows (n, ty, tx0 .. tx0 + m) of tiles [t0, t1): tile
 * t0 + tt is at column tt of V and M. */
#define NB__WG_FOR_ROWS(g, t0, t1, ...)                                                   \
    for (int64_t t_ = (t0); t_ < (t1);) {                                               \
        const int64_t T_ = (g)->th * (g)->tw, n = t_ / T_, r_ = t_ % T_;               \
        const int64_t ty = r_ / (g)->tw, tx0 = r_ % (g)->tw;                           \
        const int64_t m = (g)->tw - tx0 < (t1) - t_ ? (g)->tw - tx0 : (t1) - t_;       \
        const int64_t tt = t_ - (t0);                                                  \
        __VA_ARGS__;                                                                   \
        t_ += m;                                                                       \
    }

/* Test hook: 0 keeps the portable transforms; returns the previous setting. */
int nb__wg_use_simd(int on);

/* Chunk k of the convolution of x (N, C, H, W) into y (N, O, OH, OW):
 * y = bias[o] + conv (bias may be NULL: 0) or, when add, y += conv.
 * U as from nb__wg_weights; ws: nb__wg_ws_floats(g) floats of this thread.
 * Calls nb_gemm (which threads itself outside a task of the pool). */
void nb__wg_chunk(const nb__wg_geom *g, const float *U, const float *x, const float *bias, int add, float *y,
                  int64_t k, float *ws);

/* The weight gradient, in the transformed space: dU[xi] (O x C) of the
 * tiles of chunk k, dU = sum over tiles of (A dY A^T)[xi] (B^T d B)[xi]
 * (the adjoint of the forward's product), written when first, else added
 * in. x (N, C, H, W) and dy (N, O, OH, OW) as the forward's x and y.
 * db (O floats, may be NULL) the same way gets the bias gradient, the sum
 * of dy over the chunk's tiles: (A dY A^T)[5] is a tile's sum (row 1 of A
 * is [1 1]), so it comes from the transformed dY already in cache rather
 * than from another pass over dy (nb__sum16 over the tiles, per channel). */
#define NB__WG_XI_SUM 5
void nb__wg_chunk_grad(const nb__wg_geom *g, const float *x, const float *dy, int first, float *dU, float *db,
                       int64_t k, float *ws);

/* dw (O, C, 3, 3) += G^T dU G, the adjoint of nb__wg_weights (flip 0),
 * where dU is the sum of `parts` dU (nb__wg_u_floats apart), added in
 * order; the kernels q = o*C + c in [q0, q1) (each independent of the
 * others, so that threads may share the range). */
void nb__wg_weight_grad(const float *dU, int64_t parts, int64_t O, int64_t C, int64_t q0, int64_t q1, float *dw);

#endif
