/* Finite-difference gradient checks, one gc_<name> per op of ops.def.
 *
 * gc_<name>(ctx, variant, c) fills case number `variant` (0, 1, ...) and
 * returns 1, or returns 0 when there are no more cases. A case gives leaves
 * in[0..nin) (arena tensors with requires_grad set on those to check) and a
 * function fn that computes the op's output from them (and from iarg, farg,
 * labels). tests/test_gradcheck.c runs every case: it contracts the output
 * with a fixed random tensor, back-propagates, and compares each input's
 * gradient with central differences in double precision. Cover several
 * shapes, broadcasting, size-1 dimensions and non-contiguous views. */
#ifndef NABLA_GRADCHECK_H
#define NABLA_GRADCHECK_H
#include "nabla.h"

typedef struct gc_case gc_case;
struct gc_case {
    const char *label;                           /* for failure messages */
    int         nin;
    nb_tensor  *in[4];
    nb_tensor *(*fn)(nb_ctx *ctx, gc_case *c);
    int         iarg[8];
    float       farg[4];
    int32_t     labels[64];
    float       eps, rtol, atol;                 /* 0 = the checker's defaults */
};

#define NB_OP(E, name) int gc_##name(nb_ctx *ctx, int variant, gc_case *c);
#include "../src/ops/ops.def"
#undef NB_OP

#endif
