/* The context: arena, tape head, generator, grad mode, sticky status. */
#include "ctx.h"
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

nb_ctx *nb_ctx_new(uint64_t seed)
{
    nb_ctx *c = NB_MALLOC(sizeof *c);
    if (!c) {
        nb__fail(NB_ERR_NOMEM, "context: out of memory");
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->arena = nb_arena_new(1u << 20);
    if (!c->arena) {
        NB_FREE(c);
        return NULL;
    }
    nb_rng_seed(&c->rng, seed);
    c->grad_enabled = 1;
    return c;
}

void nb_ctx_free(nb_ctx *c)
{
    if (!c) return;
    nb_arena_free(c->arena);
    NB_FREE(c);
}

void nb_ctx_reset(nb_ctx *c)
{
    nb_arena_reset(c->arena);
    c->tape = NULL;
    c->status = NB_OK;
}

nb_rng *nb_ctx_rng(nb_ctx *c) { return &c->rng; }
nb_arena *nb_ctx_arena(nb_ctx *c) { return c->arena; }
nb_status nb_ctx_status(const nb_ctx *c) { return c->status; }

int nb_set_grad_enabled(nb_ctx *c, int enabled)
{
    int old = c->grad_enabled;
    c->grad_enabled = enabled != 0;
    return old;
}

int nb_grad_enabled(const nb_ctx *c) { return c->grad_enabled; }

void nb__ctx_set_status(nb_ctx *c, nb_status s)
{
    if (c && c->status == NB_OK) c->status = s;
}

nb_tensor *nb__op_fail(nb_ctx *c, nb_status s, const char *fmt, ...)
{
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nb__fail(s, "%s", msg);
    nb__ctx_set_status(c, s);
    return NULL;
}

/* 0: not set, use every core this process may run on. */
static atomic_int nb__threads;

static int cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void nb_set_threads(int n)
{
    atomic_store(&nb__threads, n > 0 ? n : 0);
}

int nb_get_threads(void)
{
    const int n = atomic_load(&nb__threads);
    return n > 0 ? n : cores_available();
}
