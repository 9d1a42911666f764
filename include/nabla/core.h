/* nabla/core.h — status codes, errors, context, arena, random numbers, tensors.
 *
 * Ownership in one paragraph: a context (nb_ctx) owns a per-step arena. Every
 * tensor made by an op or by nb_tensor_new() lives in that arena (struct, data
 * and gradient) and dies at nb_ctx_reset(), which runs in O(1). Parameters are
 * the exception: they belong to an nb_model (see nabla/nn.h), which keeps their
 * values and gradients in two flat buffers. Nothing else allocates per tensor.
 */
#ifndef NABLA_CORE_H
#define NABLA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NB_VERSION "0.1.0"

/* ---- status and errors ------------------------------------------------ */

typedef enum nb_status {
    NB_OK = 0,
    NB_ERR_ARG,       /* a bad argument: NULL, out-of-range axis, bad option */
    NB_ERR_SHAPE,     /* shapes that do not fit the operation */
    NB_ERR_NOMEM,     /* an allocation failed */
    NB_ERR_IO,        /* open/read/write/rename failed (errno text in message) */
    NB_ERR_FORMAT,    /* a file that is corrupt, truncated or not what it claims */
    NB_ERR_NOTFOUND,  /* a missing file, dataset or tensor name */
    NB_ERR_NONFINITE, /* NaN or Inf where a finite number is required */
    NB_ERR_STATE,     /* a call out of order (backward twice on no graph, ...) */
    NB_ERR_TIMEOUT    /* another process did not answer in time (nabla/dist.h) */
} nb_status;

/* The message of the most recent failure in this thread; "" if none.
 * Valid until the next failing call in the same thread. */
const char *nb_last_error(void);
/* A short name for a status ("shape error", ...). */
const char *nb_status_str(nb_status s);
/* Forget the last error (nb_last_error() returns "" again). */
void nb_clear_error(void);

/* ---- random numbers ------------------------------------------------------
 * xoshiro256** (Blackman & Vigna), seeded through splitmix64. The same seed
 * gives the same sequence on every machine and run. Normal draws use the
 * Box-Muller transform in double precision. */
typedef struct nb_rng {
    uint64_t s[4];
    double spare;     /* second Box-Muller value */
    int has_spare;
} nb_rng;

void     nb_rng_seed(nb_rng *r, uint64_t seed);
uint64_t nb_rng_u64(nb_rng *r);
uint32_t nb_rng_below(nb_rng *r, uint32_t n);     /* uniform in [0, n), unbiased */
float    nb_rng_uniform(nb_rng *r);               /* uniform in [0, 1), 24 bits */
float    nb_rng_normal(nb_rng *r);                /* N(0, 1) */
void     nb_rng_shuffle_u32(nb_rng *r, uint32_t *a, size_t n); /* Fisher-Yates */

/* ---- arena ---------------------------------------------------------------
 * A bump allocator. Blocks are 64-byte aligned. Reset keeps one block as big
 * as the high-water mark, so a steady training loop mallocs nothing. */
typedef struct nb_arena nb_arena;
nb_arena *nb_arena_new(size_t initial_bytes);
void      nb_arena_free(nb_arena *a);
void     *nb_arena_alloc(nb_arena *a, size_t bytes);  /* NULL + NB_ERR_NOMEM */
void     *nb_arena_calloc(nb_arena *a, size_t bytes);
void      nb_arena_reset(nb_arena *a);
size_t    nb_arena_used(const nb_arena *a);
size_t    nb_arena_high_water(const nb_arena *a);

/* ---- context ------------------------------------------------------------- */
typedef struct nb_ctx nb_ctx;

/* A context with its arena, tape and generator seeded with `seed`. */
nb_ctx   *nb_ctx_new(uint64_t seed);
void      nb_ctx_free(nb_ctx *ctx);
/* Drop every arena tensor and the tape (O(1)); the generator keeps its state. */
void      nb_ctx_reset(nb_ctx *ctx);
nb_rng   *nb_ctx_rng(nb_ctx *ctx);
nb_arena *nb_ctx_arena(nb_ctx *ctx);
/* The first error an op reported since the last reset (NB_OK if none). Ops
 * return NULL on error and pass a NULL input straight through, so a chain of
 * calls can be checked once at its end. */
nb_status nb_ctx_status(const nb_ctx *ctx);
/* Autograd on/off (PyTorch's torch.no_grad). Returns the previous setting. */
int       nb_set_grad_enabled(nb_ctx *ctx, int enabled);
int       nb_grad_enabled(const nb_ctx *ctx);
/* Threads for kernels (the library's own pool); <= 0 means every core this
 * process may run on (its CPU affinity). Process-wide. */
void      nb_set_threads(int n);
int       nb_get_threads(void);

/* ---- tensors ------------------------------------------------------------- */
#define NB_MAX_DIMS 6

typedef struct nb__node nb__node;

typedef struct nb_tensor {
    float   *data;                 /* element [0,...,0]; views share storage */
    float   *grad;                 /* contiguous, row-major over `shape`, or NULL
                                      until backward reaches this tensor */
    int64_t  shape[NB_MAX_DIMS];
    int64_t  stride[NB_MAX_DIMS];  /* in elements; 0 is allowed (expanded) */
    int      ndim;                 /* 0 = scalar */
    int      requires_grad;
    nb__node *node;                /* the tape entry that made it; NULL = leaf */
} nb_tensor;

/* New contiguous tensors in the context's arena (NULL on error). */
nb_tensor *nb_tensor_new(nb_ctx *ctx, int ndim, const int64_t *shape);   /* uninitialised */
nb_tensor *nb_tensor_zeros(nb_ctx *ctx, int ndim, const int64_t *shape);
nb_tensor *nb_tensor_full(nb_ctx *ctx, int ndim, const int64_t *shape, float v);
nb_tensor *nb_tensor_from(nb_ctx *ctx, int ndim, const int64_t *shape, const float *src); /* copies */
nb_tensor *nb_tensor_scalar(nb_ctx *ctx, float v);
nb_tensor *nb_tensor_randn(nb_ctx *ctx, int ndim, const int64_t *shape);  /* N(0,1) from ctx rng */
nb_tensor *nb_tensor_rand(nb_ctx *ctx, int ndim, const int64_t *shape);   /* U[0,1) */
/* Shorthand for literal shapes: NB_SHAPE(2, 3) -> 2, (int64_t[]){2, 3}. */
#define NB_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

int64_t nb_tensor_numel(const nb_tensor *t);
int     nb_tensor_is_contiguous(const nb_tensor *t);
/* Copy the (possibly strided) values into dst, row-major; dst has numel floats. */
void    nb_tensor_copy_out(const nb_tensor *t, float *dst);
/* The single value of a one-element tensor. */
float   nb_tensor_item(const nb_tensor *t);
/* "[2, 3]" into buf (always NUL-terminated); returns buf. */
char   *nb_shape_str(const nb_tensor *t, char *buf, size_t size);
/* Mark an arena leaf as needing a gradient; returns t. */
nb_tensor *nb_requires_grad(nb_tensor *t, int on);

/* ---- autograd ------------------------------------------------------------ */
/* Back-propagate from a one-element tensor: every tensor on the tape that the
 * loss depends on gets d loss / d tensor ADDED to its grad (leaf gradients
 * accumulate across calls, as in PyTorch; zeroing is explicit). The tape is
 * kept, so backward may run again until nb_ctx_reset(). A leaf without a
 * grad buffer gets one in this context's arena: it is valid until the next
 * reset (parameters have theirs in the model and are not affected). */
nb_status  nb_backward(nb_ctx *ctx, nb_tensor *loss);
/* A tensor sharing x's data that is not recorded on the tape. */
nb_tensor *nb_detach(nb_ctx *ctx, nb_tensor *x);
/* Set an arena tensor's gradient to zeros (allocates it if absent). */
nb_status  nb_zero_grad(nb_ctx *ctx, nb_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
