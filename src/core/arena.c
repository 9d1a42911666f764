/* Bump allocator in 64-byte aligned blocks. Reset frees all blocks but the
 * first and, if more than one was needed, regrows the first to the high-water
 * mark so the next step fits in one block. */
#include "internal.h"

#define NB__ALIGN 64

typedef struct nb__block {
    struct nb__block *next;
    size_t size, used;
    unsigned char *mem;  /* aligned start of the usable area */
    void *raw;
} nb__block;

struct nb_arena {
    nb__block *head;     /* current block (newest first) */
    size_t total_used;   /* bytes handed out since reset */
    size_t high_water;
};

static nb__block *block_new(size_t size)
{
    nb__block *b = NB_MALLOC(sizeof *b);
    if (!b) return NULL;
    b->raw = NB_MALLOC(size + NB__ALIGN);
    if (!b->raw) {
        NB_FREE(b);
        return NULL;
    }
    b->mem = (unsigned char *)(((uintptr_t)b->raw + NB__ALIGN - 1) & ~(uintptr_t)(NB__ALIGN - 1));
    b->size = size;
    b->used = 0;
    b->next = NULL;
    return b;
}

static void block_free(nb__block *b)
{
    NB_FREE(b->raw);
    NB_FREE(b);
}

nb_arena *nb_arena_new(size_t initial)
{
    nb_arena *a = NB_MALLOC(sizeof *a);
    if (!a) {
        nb__fail(NB_ERR_NOMEM, "arena: out of memory");
        return NULL;
    }
    a->head = block_new(initial ? initial : (1u << 20));
    if (!a->head) {
        NB_FREE(a);
        nb__fail(NB_ERR_NOMEM, "arena: cannot allocate %zu bytes", initial);
        return NULL;
    }
    a->total_used = a->high_water = 0;
    return a;
}

void nb_arena_free(nb_arena *a)
{
    if (!a) return;
    for (nb__block *b = a->head, *n; b; b = n) {
        n = b->next;
        block_free(b);
    }
    NB_FREE(a);
}

void *nb_arena_alloc(nb_arena *a, size_t bytes)
{
    size_t need = (bytes + NB__ALIGN - 1) & ~(size_t)(NB__ALIGN - 1);
    if (need < bytes) {
        nb__fail(NB_ERR_NOMEM, "arena: request of %zu bytes overflows", bytes);
        return NULL;
    }
    nb__block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = b ? b->size * 2 : need;
        if (size < need) size = need;
        nb__block *nb = block_new(size);
        if (!nb) {
            nb__fail(NB_ERR_NOMEM, "arena: cannot allocate %zu bytes", size);
            return NULL;
        }
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->total_used += need;
    if (a->total_used > a->high_water) a->high_water = a->total_used;
    return p;
}

void *nb_arena_calloc(nb_arena *a, size_t bytes)
{
    void *p = nb_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void nb_arena_reset(nb_arena *a)
{
    if (a->head->next) {
        for (nb__block *b = a->head, *n; b; b = n) {
            n = b->next;
            block_free(b);
        }
        a->head = block_new(a->high_water + a->high_water / 4); /* NULL: next alloc retries */
    }
    if (a->head) a->head->used = 0;
    a->total_used = 0;
}

size_t nb_arena_used(const nb_arena *a) { return a->total_used; }
size_t nb_arena_high_water(const nb_arena *a) { return a->high_water; }
