/* The context's fields, shared by the core files. */
#ifndef NABLA_CTX_H
#define NABLA_CTX_H
#include "internal.h"
#include <stdio.h>

struct nb_ctx {
    nb_arena *arena;
    nb__node *tape;       /* newest node; older ones through prev */
    nb_rng    rng;
    int       grad_enabled;
    nb_status status;     /* first op error since reset */
};
#endif
