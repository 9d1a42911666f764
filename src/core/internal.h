/* Private to libnabla: error helpers, the tape node, op plumbing. */
#ifndef NABLA_INTERNAL_H
#define NABLA_INTERNAL_H

#include "nabla.h"
#include <stdarg.h>
#include <string.h>

#ifndef NB_MALLOC
#include <stdlib.h>
#define NB_MALLOC(n) malloc(n)
#define NB_REALLOC(p, n) realloc(p, n)
#define NB_FREE(p) free(p)
#endif

/* Internal invariant (a bug in nabla, never a user error). Compiled out
 * unless NB_DEBUG; never used for input validation. */
#ifdef NB_DEBUG
#include <assert.h>
#define NB_ASSERT(c) assert(c)
#else
#define NB_ASSERT(c) ((void)0)
#endif

#if defined(__GNUC__)
#define NB__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NB__PRINTF(a, b)
#endif

/* Record a failure: sets the thread's message and returns s. */
nb_status nb__fail(nb_status s, const char *fmt, ...) NB__PRINTF(2, 3);
/* For ops: records the failure in ctx (first one wins) and returns NULL. */
nb_tensor *nb__op_fail(nb_ctx *ctx, nb_status s, const char *fmt, ...) NB__PRINTF(3, 4);
/* Makes ctx remember an error already recorded with nb__fail. */
void nb__ctx_set_status(nb_ctx *ctx, nb_status s);

/* The parallel loops (nb__par_for, nb__par_parts) of the ops, layers and
 * optimizers run on the library's one thread pool. */
#include "pool.h"

/* ---- ops ------------------------------------------------------------------ */
enum {
#define NB_OP(E, name) NB__OP_##E,
#include "../ops/ops.def"
#undef NB_OP
    NB__OP_COUNT
};
extern const char *const nb__op_names[NB__OP_COUNT];

#define NB__SMALL_IN 3
struct nb__node {
    int        op;          /* NB__OP_* */
    nb_tensor *out;
    int        nin;
    nb_tensor **in;         /* nin inputs; points at in_small or arena */
    nb_tensor *in_small[NB__SMALL_IN];
    float      f[4];        /* op attributes (slope, exponent, ...) */
    int64_t    i[2 * NB_MAX_DIMS + 4];
    void      *saved;       /* op data in the arena (labels, argmax, ...) */
    nb__node  *prev;        /* the tape runs backwards through prev */
    unsigned   fresh;       /* bit k: in[k]->grad is new and uninitialised */
};

/* Backward of one node: add d out / d in_k (contracted with out->grad) into
 * in[k]->grad for every input with requires_grad. The grad is allocated
 * before the call: zero-initialised or accumulating, except for the inputs
 * with bit k of n->fresh set (only for ops listed in autograd.c's
 * writes_fresh), whose gradient the op must write (=) instead: this saves
 * zero-filling and re-reading a buffer as large as the activation. */
typedef nb_status (*nb__backward_fn)(nb_ctx *ctx, nb__node *n);
#define NB_OP(E, name) nb_status nb__bw_##name(nb_ctx *ctx, nb__node *n);
#include "../ops/ops.def"
#undef NB_OP

/* Put `out` on the tape as the result of op over in[0..nin) when autograd is
 * on and some input requires a gradient; returns the node (to fill attributes)
 * or NULL when nothing is recorded. Copies the `in` array. On an allocation
 * failure it returns NULL and sets ctx status. */
nb__node *nb__record(nb_ctx *ctx, int op, nb_tensor *out, nb_tensor *const *in, int nin);

/* A watcher of nb_backward on the calling thread (data parallelism,
 * src/dist/dist.c, starts each gradient bucket's all-reduce as soon as the
 * backward has finished with it): begin sees the tape (newest node first,
 * through prev) before the walk; after(k) runs once the walk is done with
 * its k-th node (from 0; nodes the loss does not depend on count too). A
 * failure stops the backward with its status. Thread-local; NULL (the
 * default) costs one test per node. Returns the previous hook. */
typedef struct nb__backward_hook {
    nb_status (*begin)(void *user, const nb__node *tape);
    nb_status (*after)(void *user, int64_t k);
    void *user;
} nb__backward_hook;
const nb__backward_hook *nb__set_backward_hook(const nb__backward_hook *h);

/* Return NULL from the calling op when any of the first n inputs is NULL. */
int nb__any_null(nb_tensor *const *in, int n);

/* A tensor struct in the arena viewing `data` with the given shape (contiguous
 * strides). Data is not allocated. */
nb_tensor *nb__view_struct(nb_ctx *ctx, float *data, int ndim, const int64_t *shape);
void nb__contig_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t nb__numel(int ndim, const int64_t *shape);

/* Broadcast shapes a and b (right-aligned); NB_ERR_SHAPE with a message
 * naming `opname` if they do not fit. */
nb_status nb__broadcast_shape(const char *opname, const nb_tensor *a, const nb_tensor *b,
                              int *ndim, int64_t *shape);
/* Strides of t seen as a tensor of shape (ndim, shape) it broadcasts to:
 * size-1 and missing dimensions get stride 0. */
void nb__broadcast_strides(const nb_tensor *t, int ndim, int64_t *stride);
/* dst (shape dshape, contiguous) += src (shape sshape, contiguous) summed over
 * the dimensions that dst broadcast along. */
/* t's values, contiguous: t->data itself or a copy in ctx's arena (NULL
 * when out of memory). */
const float *nb__contiguous_data(nb_ctx *ctx, const nb_tensor *t);
/* The indices k in [0, n) whose k*s + off lies in [0, size): [*lo, *hi)
 * (the output columns of a convolution that read inside the input, the
 * input columns of a transposed one that write inside the output). */
static inline void nb__conv_span(int64_t n, int64_t size, int s, int64_t off, int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = size - 1 - off >= 0 ? (size - 1 - off) / s + 1 : 0;
    if (h > n) h = n;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}
void nb__sum_to(float *dst, int dndim, const int64_t *dshape,
                const float *src, int sndim, const int64_t *sshape);
/* dst (strided view: shape, dst_stride) += src (contiguous, same shape). */
void nb__strided_add(float *dst, const int64_t *dst_stride, const float *src,
                     int ndim, const int64_t *shape);
/* Gradient buffer of an input: allocates zeros in the arena if absent. */
float *nb__grad(nb_ctx *ctx, nb_tensor *t);
/* Whether a backward must write (1) or add to (0) in[k]'s gradient. */
static inline int nb__fresh(const nb__node *n, int k) { return (int)(n->fresh >> k) & 1; }
/* Normalise an axis against ndim (negative counts from the end); -1 if bad. */
int nb__axis(int axis, int ndim);

/* ---- nn ------------------------------------------------------------------- */
/* Add a parameter to the model and to mod's subtree; index or -1. */
int nb__module_add_param(nb_module *mod, const char *name, int ndim, const int64_t *shape);
/* The same for a buffer (nb_model_add_buffer). */
int nb__module_add_buffer(nb_module *mod, const char *name, int ndim, const int64_t *shape);

#endif
