/* Two 32-bit settings in one of a module's int64 slots (nb_module.i): how
 * the conv modules keep (h, w) pairs and (in, groups). */
#ifndef NB_NN_SLOTS_H
#define NB_NN_SLOTS_H
#include <stdint.h>

static inline int64_t pack2(int hi, int lo) { return (int64_t)(((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo); }
static inline int hi32(int64_t v) { return (int)(int32_t)((uint64_t)v >> 32); }
static inline int lo32(int64_t v) { return (int)(int32_t)(uint32_t)v; }

#endif
