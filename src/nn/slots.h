/* Two 32-bit settings in one of a module's int64 slots (nb_module.i): how
 * the conv modules keep (h, w) pairs and (in, groups). */
#ifndef NB_NN_SLOTS_H
#define NB_NN_SLOTS_H
#include "../core/internal.h"
#include <stdint.h>
#include <stdio.h>

static inline int64_t pack2(int hi, int lo) { return (int64_t)(((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo); }
static inline int hi32(int64_t v) { return (int)(int32_t)((uint64_t)v >> 32); }
static inline int lo32(int64_t v) { return (int)(int32_t)(uint32_t)v; }

/* Conv2d and ConvTranspose2d keep these in the same slots: i[0] in |
 * groups, i[1] out, i[4] kernel, i[5] stride, i[6] padding, i[7] dilation
 * (each h | w). */
static inline void conv_slots(const nb_module *m, int stride[2], int padding[2], int dilation[2], int *groups)
{
    stride[0] = hi32(m->i[5]), stride[1] = lo32(m->i[5]);
    padding[0] = hi32(m->i[6]), padding[1] = lo32(m->i[6]);
    dilation[0] = hi32(m->i[7]), dilation[1] = lo32(m->i[7]);
    *groups = lo32(m->i[0]);
}

/* Their kernel, stride, padding and dilation for nb_model_summary. */
static inline void conv_slots_geometry(const nb_module *m, nb_layer_geometry *g)
{
    int groups;
    g->kernel[0] = hi32(m->i[4]);
    g->kernel[1] = lo32(m->i[4]);
    conv_slots(m, g->stride, g->padding, g->dilation, &groups);
}

/* The start of both extra_reprs (torch's): "in, out, kernel_size=(kh, kw),
 * stride=(sh, sw)", then padding and dilation when not the defaults. The
 * length snprintf wants (at least size when it was cut). */
static inline size_t conv_repr(const nb_module *m, char *buf, size_t size)
{
    int s[2], p[2], d[2], groups;
    conv_slots(m, s, p, d, &groups);
    size_t n = (size_t)snprintf(buf, size, "%d, %d, kernel_size=(%d, %d), stride=(%d, %d)", hi32(m->i[0]),
                                (int)m->i[1], hi32(m->i[4]), lo32(m->i[4]), s[0], s[1]);
    if ((p[0] || p[1]) && n < size) n += (size_t)snprintf(buf + n, size - n, ", padding=(%d, %d)", p[0], p[1]);
    if ((d[0] != 1 || d[1] != 1) && n < size)
        n += (size_t)snprintf(buf + n, size - n, ", dilation=(%d, %d)", d[0], d[1]);
    return n;
}

#endif
