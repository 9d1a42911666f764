/* Private to libnabla: software prefetch for the ops whose loops jump
 * between short runs of memory (a channel's N planes, C*H*W apart; the
 * next sample of a batch), which the hardware prefetchers do not pick up
 * in time: the loop asks for the next run while it works on this one. */
#ifndef NABLA_OPS_PREFETCH_H
#define NABLA_OPS_PREFETCH_H
#include <stddef.h>

/* Ask for the cache lines of [p, p + bytes). */
static inline void nb__prefetch(const void *p, size_t bytes)
{
    for (size_t k = 0; k < bytes; k += 64) __builtin_prefetch((const char *)p + k);
}

#endif
