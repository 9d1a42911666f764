/* Checkpoints: the model, the optimizer (state buffers as tensors), and the
 * small state of the schedule, a generator and a loader as metadata strings,
 * in one atomically written safetensors file (format in nabla/checkpoint.h).
 *
 * Each small state is one metadata value of space-separated key=value
 * tokens, e.g. "steps=120 groups=2"; doubles are written with %a and 64-bit
 * words in hex so that they read back bit for bit. Loading parses and checks
 * every value into local copies first and only then writes into the
 * objects. */
#include "../core/internal.h"
#include "nabla/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#define OPTIM_PREFIX "__optim__."
#define KEY_VERSION "nabla.checkpoint"
#define VERSION "1"

/* ---- key=value strings ------------------------------------------------------ */

typedef struct strbuf {
    char  *s;
    size_t len, cap;
    int    nomem;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) NB__PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->nomem) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->nomem = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap : 64) * 2 + (size_t)n;
        char *s = NB_REALLOC(b->s, cap);
        if (!s) {
            b->nomem = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
}

/* The value of token "key=..." in s, copied into out (at most n bytes with
 * the NUL); 0 if found and it fits, -1 otherwise. */
static int kv_get(const char *s, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = s; p && *p;) {
        const char *end = strchr(p, ' ');
        size_t tl = end ? (size_t)(end - p) : strlen(p);
        if (tl > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = tl - kl - 1;
            if (vl + 1 > n) return -1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = 0;
            return 0;
        }
        p = end ? end + 1 : NULL;
    }
    return -1;
}

static int parse_double(const char *v, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(v, &end);
    return end != v && !*end ? 0 : -1;
}

static int parse_i64(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno) return -1;
    *out = x;
    return 0;
}

static int kv_double(const char *s, const char *key, double *out)
{
    char v[64];
    return kv_get(s, key, v, sizeof v) || parse_double(v, out) ? -1 : 0;
}

static int kv_i64(const char *s, const char *key, int64_t *out)
{
    char v[64];
    return kv_get(s, key, v, sizeof v) || parse_i64(v, out) ? -1 : 0;
}

static int kv_int(const char *s, const char *key, int *out)
{
    int64_t x;
    if (kv_i64(s, key, &x) || x < INT32_MIN || x > INT32_MAX) return -1;
    *out = (int)x;
    return 0;
}

/* A generator: four words in hex and the Box-Muller spare. */
static void rng_format(strbuf *b, const char *prefix, const nb_rng *r)
{
    sb_printf(b, "%ss=%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 " %sspare=%a %shas_spare=%d", prefix,
              r->s[0], r->s[1], r->s[2], r->s[3], prefix, r->spare, prefix, r->has_spare);
}

static int rng_parse(const char *s, const char *prefix, nb_rng *r)
{
    char key[32], v[128];
    snprintf(key, sizeof key, "%ss", prefix);
    if (kv_get(s, key, v, sizeof v)) return -1;
    const char *p = v;
    for (int i = 0; i < 4; i++) {
        char *end;
        errno = 0;
        unsigned long long w = strtoull(p, &end, 16);
        if (end == p || errno || *end != (i < 3 ? ',' : 0)) return -1;
        r->s[i] = w;
        p = end + 1;
    }
    snprintf(key, sizeof key, "%sspare", prefix);
    if (kv_double(s, key, &r->spare)) return -1;
    snprintf(key, sizeof key, "%shas_spare", prefix);
    return kv_int(s, key, &r->has_spare) || (r->has_spare != 0 && r->has_spare != 1) ? -1 : 0;
}

/* A list of doubles "a,b,c" of exactly n values. */
static int parse_doubles(const char *v, double *out, int n)
{
    const char *p = v;
    for (int i = 0; i < n; i++) {
        char *end;
        out[i] = strtod(p, &end);
        if (end == p || *end != (i < n - 1 ? ',' : 0)) return -1;
        p = end + 1;
    }
    return 0;
}

/* ---- the optimizer ------------------------------------------------------------ */

static void group_format(strbuf *b, const nb_optim_opts *g, double lr)
{
    sb_printf(b,
              "kind=%d lr=%a weight_decay=%a momentum=%a dampening=%a nesterov=%d alpha=%a eps=%a centered=%d "
              "lr_decay=%a initial_accumulator_value=%a beta1=%a beta2=%a amsgrad=%d",
              (int)g->kind, lr, g->weight_decay, g->momentum, g->dampening, g->nesterov, g->alpha, g->eps, g->centered,
              g->lr_decay, g->initial_accumulator_value, g->beta1, g->beta2, g->amsgrad);
}

static int group_parse(const char *s, nb_optim_opts *g)
{
    int kind;
    memset(g, 0, sizeof *g);
    if (kv_int(s, "kind", &kind)) return -1;
    g->kind = (nb_optim_kind)kind;
    return kv_double(s, "lr", &g->lr) || kv_double(s, "weight_decay", &g->weight_decay) ||
                   kv_double(s, "momentum", &g->momentum) || kv_double(s, "dampening", &g->dampening) ||
                   kv_int(s, "nesterov", &g->nesterov) || kv_double(s, "alpha", &g->alpha) ||
                   kv_double(s, "eps", &g->eps) || kv_int(s, "centered", &g->centered) ||
                   kv_double(s, "lr_decay", &g->lr_decay) ||
                   kv_double(s, "initial_accumulator_value", &g->initial_accumulator_value) ||
                   kv_double(s, "beta1", &g->beta1) || kv_double(s, "beta2", &g->beta2) ||
                   kv_int(s, "amsgrad", &g->amsgrad)
               ? -1
               : 0;
}

/* ---- save ------------------------------------------------------------------------ */

enum { META_OPTIM, META_PARAM_GROUPS, META_SCHEDULE, META_SCHEDULE_STATE, META_RNG, META_LOADER, META_COUNT };
static const char *const META_KEYS[META_COUNT] = {"nabla.optim", "nabla.param_groups", "nabla.schedule",
                                                  "nabla.schedule_state", "nabla.rng", "nabla.loader"};

static int reserved_key(const char *k)
{
    return !strcmp(k, "model") || !strcmp(k, "config") || !strcmp(k, "format") || !strncmp(k, "nabla.", 6);
}

nb_status nb_checkpoint_save(const char *path, const nb_checkpoint *c, const char *const *meta_kv, int nmeta)
{
    if (!path || !c || !c->model || !c->optim) return nb__fail(NB_ERR_ARG, "checkpoint: NULL path, model or optimizer");
    if (c->optim->model != c->model) return nb__fail(NB_ERR_ARG, "checkpoint: the optimizer is not the model's");
    if (c->schedule && c->schedule->optim != c->optim)
        return nb__fail(NB_ERR_ARG, "checkpoint: the schedule is not the optimizer's");
    if (nmeta < 0 || (nmeta && !meta_kv)) return nb__fail(NB_ERR_ARG, "checkpoint: bad metadata arguments");
    for (int i = 0; i < nmeta; i++)
        if (!meta_kv[2 * i] || !meta_kv[2 * i + 1] || reserved_key(meta_kv[2 * i]))
            return nb__fail(NB_ERR_ARG, "checkpoint: metadata key '%s' is reserved or NULL",
                            meta_kv[2 * i] ? meta_kv[2 * i] : "(null)");

    const nb_model *m = c->model;
    const nb_optimizer *o = c->optim;
    int nstate = nb_optim_state_count(o), ngroups = nb_optim_group_count(o);
    int ntensors = m->nparams + nstate;
    strbuf meta[META_COUNT] = {{0}};
    char **names = NB_MALLOC(sizeof *names * (size_t)(nstate ? nstate : 1));
    nb_st_entry *e = NB_MALLOC(sizeof *e * (size_t)(ntensors ? ntensors : 1));
    const char **kv = NB_MALLOC(sizeof *kv * 2 * (size_t)(3 + META_COUNT + 1 + nmeta + ngroups));
    char (*group_key)[32] = NB_MALLOC(sizeof *group_key * (size_t)(ngroups ? ngroups : 1));
    strbuf *groups = NB_MALLOC(sizeof *groups * (size_t)(ngroups ? ngroups : 1));
    nb_status st = NB_ERR_NOMEM;
    int nnames = 0, nkv = 0;
    if (!names || !e || !kv || !group_key || !groups) goto done;
    memset(groups, 0, sizeof *groups * (size_t)(ngroups ? ngroups : 1));

    for (int i = 0; i < m->nparams; i++)
        e[i] = (nb_st_entry){m->params[i].name, m->params[i].t.ndim, m->params[i].t.shape, m->params[i].t.data};
    int64_t numel_shape[1] = {(int64_t)m->numel};
    for (int i = 0; i < nstate; i++) {
        const char *name;
        float *buf;
        nb_optim_state_get(o, i, &name, &buf, NULL);
        names[i] = NB_MALLOC(strlen(OPTIM_PREFIX) + strlen(name) + 1);
        if (!names[i]) goto done;
        nnames++;
        strcpy(names[i], OPTIM_PREFIX);
        strcat(names[i], name);
        e[m->nparams + i] = (nb_st_entry){names[i], 1, numel_shape, buf};
    }

    sb_printf(&meta[META_OPTIM], "kind=%d steps=%" PRId64 " groups=%d nparams=%d", (int)o->kind, o->steps, ngroups,
              m->nparams);
    for (int i = 0; i < m->nparams; i++)
        sb_printf(&meta[META_PARAM_GROUPS], "%s%d", i ? "," : "", nb_optim_param_group(o, i));
    if (!m->nparams) sb_printf(&meta[META_PARAM_GROUPS], "%s", "");
    for (int g = 0; g < ngroups; g++) {
        nb_optim_opts go;
        nb_optim_get_group(o, g, &go);
        group_format(&groups[g], &go, nb_optim_get_lr(o, g));
    }
    if (c->schedule) {
        const nb_schedule *s = c->schedule;
        char spec[1024];
        int n = nb_schedule_format(&s->opts, spec, sizeof spec);
        if (n < 0 || n >= (int)sizeof spec) {
            st = nb__fail(NB_ERR_ARG, "checkpoint: cannot describe the schedule");
            goto done;
        }
        sb_printf(&meta[META_SCHEDULE], "%s", spec);
        sb_printf(&meta[META_SCHEDULE_STATE], "last_epoch=%" PRId64 " best=%a num_bad_epochs=%" PRId64
                  " cooldown_counter=%" PRId64 " ngroups=%d base_lrs=", s->last_epoch, s->best, s->num_bad_epochs,
                  s->cooldown_counter, s->ngroups);
        for (int g = 0; g < s->ngroups; g++) sb_printf(&meta[META_SCHEDULE_STATE], "%s%a", g ? "," : "", s->base_lrs[g]);
        sb_printf(&meta[META_SCHEDULE_STATE], " lrs=");
        for (int g = 0; g < s->ngroups; g++) sb_printf(&meta[META_SCHEDULE_STATE], "%s%a", g ? "," : "", s->lrs[g]);
    }
    if (c->rng) rng_format(&meta[META_RNG], "", c->rng);
    if (c->loader) {
        nb_loader_state ls;
        nb_loader_get_state(c->loader, &ls);
        sb_printf(&meta[META_LOADER], "n=%" PRId64 " batch=%" PRId64 " pos=%" PRId64 " ", ls.n, ls.batch, ls.pos);
        rng_format(&meta[META_LOADER], "rng_", &ls.rng);
    }
    for (int i = 0; i < META_COUNT; i++)
        if (meta[i].nomem) goto done;
    for (int g = 0; g < ngroups; g++)
        if (groups[g].nomem) goto done;

    kv[nkv++] = "model", kv[nkv++] = m->name, kv[nkv++] = "config", kv[nkv++] = m->config;
    kv[nkv++] = "format", kv[nkv++] = "nabla " NB_VERSION;
    kv[nkv++] = KEY_VERSION, kv[nkv++] = VERSION;
    for (int i = 0; i < META_COUNT; i++)
        if (meta[i].s) kv[nkv++] = META_KEYS[i], kv[nkv++] = meta[i].s;
    for (int g = 0; g < ngroups; g++) {
        snprintf(group_key[g], sizeof group_key[g], "nabla.optim.group%d", g);
        kv[nkv++] = group_key[g], kv[nkv++] = groups[g].s;
    }
    for (int i = 0; i < nmeta; i++) kv[nkv++] = meta_kv[2 * i], kv[nkv++] = meta_kv[2 * i + 1];
    st = nb_safetensors_save(path, e, ntensors, NB_ST_F32, kv, nkv / 2);
done:
    if (st == NB_ERR_NOMEM && !*nb_last_error()) nb__fail(NB_ERR_NOMEM, "checkpoint: out of memory");
    for (int i = 0; i < nnames; i++) NB_FREE(names[i]);
    for (int i = 0; i < META_COUNT; i++) NB_FREE(meta[i].s);
    if (groups)
        for (int g = 0; g < ngroups; g++) NB_FREE(groups[g].s);
    NB_FREE(names);
    NB_FREE(e);
    NB_FREE(kv);
    NB_FREE(group_key);
    NB_FREE(groups);
    return st;
}

/* ---- load ------------------------------------------------------------------------ */

static nb_status bad(const char *path, const char *what)
{
    return nb__fail(NB_ERR_FORMAT, "%s: checkpoint %s is missing or damaged", path, what);
}

static const char *meta_of(const nb_safetensors *f, int key) { return nb_safetensors_meta(f, META_KEYS[key]); }

nb_status nb_checkpoint_open_meta(const char *path, nb_safetensors **out)
{
    if (!path || !out) return nb__fail(NB_ERR_ARG, "checkpoint: NULL argument");
    *out = NULL;
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_load_header(path, &f);
    if (s) return s;
    const char *v = nb_safetensors_meta(f, KEY_VERSION);
    if (!v || strcmp(v, VERSION)) {
        nb_safetensors_free(f);
        return nb__fail(NB_ERR_FORMAT, "%s: not a nabla checkpoint (no \"%s\": \"%s\" in its metadata)", path,
                        KEY_VERSION, VERSION);
    }
    *out = f;
    return NB_OK;
}

/* Everything read from the file and checked, before it is applied. */
typedef struct loaded {
    int64_t        steps;
    int            ngroups;
    nb_optim_opts *groups;
    int           *param_group;
    double        *sched_base, *sched_lrs;
    int64_t        sched_epoch, sched_bad, sched_cooldown;
    double         sched_best;
    nb_rng         rng;
    nb_loader_state loader;
} loaded;

static nb_status check_optim(const char *path, const nb_safetensors *f, const nb_checkpoint *c, loaded *L)
{
    const nb_model *m = c->model;
    const nb_optimizer *o = c->optim;
    const char *s = meta_of(f, META_OPTIM), *pg = meta_of(f, META_PARAM_GROUPS);
    int kind, nparams;
    if (!s || !pg || kv_int(s, "kind", &kind) || kv_i64(s, "steps", &L->steps) || kv_int(s, "groups", &L->ngroups) ||
        kv_int(s, "nparams", &nparams) || L->steps < 0 || L->ngroups < 1)
        return bad(path, "optimizer");
    if (kind != (int)o->kind)
        return nb__fail(NB_ERR_STATE, "%s: the checkpoint's optimizer is %s, this one %s", path,
                        nb_optim_kind_name((nb_optim_kind)kind) ? nb_optim_kind_name((nb_optim_kind)kind) : "unknown",
                        o->name);
    if (L->ngroups != nb_optim_group_count(o))
        return nb__fail(NB_ERR_STATE, "%s: the checkpoint's optimizer has %d parameter groups, this one %d", path,
                        L->ngroups, nb_optim_group_count(o));
    if (nparams != m->nparams)
        return nb__fail(NB_ERR_STATE, "%s: the checkpoint's model has %d parameters, this one %d", path, nparams,
                        m->nparams);
    L->groups = NB_MALLOC(sizeof *L->groups * (size_t)L->ngroups);
    L->param_group = NB_MALLOC(sizeof *L->param_group * (size_t)(m->nparams ? m->nparams : 1));
    if (!L->groups || !L->param_group) return nb__fail(NB_ERR_NOMEM, "checkpoint: out of memory");
    for (int g = 0; g < L->ngroups; g++) {
        char key[32];
        snprintf(key, sizeof key, "nabla.optim.group%d", g);
        const char *gs = nb_safetensors_meta(f, key);
        if (!gs || group_parse(gs, &L->groups[g]) || L->groups[g].kind != o->kind || nb_optim_validate(&L->groups[g]))
            return bad(path, "optimizer group");
    }
    const char *p = pg;
    for (int i = 0; i < m->nparams; i++) {
        char *end;
        long g = strtol(p, &end, 10);
        if (end == p || *end != (i < m->nparams - 1 ? ',' : 0) || g < 0 || g >= L->ngroups)
            return bad(path, "parameter groups");
        if (m->params[i].buffer && g != nb_optim_param_group(o, i)) return bad(path, "parameter groups");
        L->param_group[i] = (int)g;
        p = end + 1;
    }
    /* every optimizer tensor must be a buffer this kind has, of the model's size */
    for (int i = 0; i < f->n; i++) {
        const nb_st_tensor *t = &f->tensors[i];
        if (strncmp(t->name, OPTIM_PREFIX, strlen(OPTIM_PREFIX))) continue;
        if (t->ndim != 1 || t->shape[0] != (int64_t)m->numel) return bad(path, "optimizer state");
    }
    return NB_OK;
}

static nb_status check_schedule(const char *path, const nb_safetensors *f, const nb_checkpoint *c, loaded *L)
{
    const nb_schedule *s = c->schedule;
    const char *spec = meta_of(f, META_SCHEDULE), *ss = meta_of(f, META_SCHEDULE_STATE);
    if (!spec || !ss) return nb__fail(NB_ERR_STATE, "%s: the checkpoint holds no schedule", path);
    char mine[1024];
    int n = nb_schedule_format(&s->opts, mine, sizeof mine);
    if (n < 0 || n >= (int)sizeof mine || strcmp(mine, spec))
        return nb__fail(NB_ERR_STATE, "%s: the checkpoint's schedule is \"%s\", this one \"%s\"", path, spec,
                        n >= 0 ? mine : "?");
    int ng;
    if (kv_i64(ss, "last_epoch", &L->sched_epoch) || kv_double(ss, "best", &L->sched_best) ||
        kv_i64(ss, "num_bad_epochs", &L->sched_bad) || kv_i64(ss, "cooldown_counter", &L->sched_cooldown) ||
        kv_int(ss, "ngroups", &ng) || ng != s->ngroups)
        return bad(path, "schedule state");
    L->sched_base = NB_MALLOC(sizeof(double) * (size_t)ng);
    L->sched_lrs = NB_MALLOC(sizeof(double) * (size_t)ng);
    if (!L->sched_base || !L->sched_lrs) return nb__fail(NB_ERR_NOMEM, "checkpoint: out of memory");
    size_t vcap = (size_t)ng * 32 + 1;
    char *v = NB_MALLOC(vcap);
    if (!v) return nb__fail(NB_ERR_NOMEM, "checkpoint: out of memory");
    int fail = kv_get(ss, "base_lrs", v, vcap) || parse_doubles(v, L->sched_base, ng) ||
               kv_get(ss, "lrs", v, vcap) || parse_doubles(v, L->sched_lrs, ng);
    NB_FREE(v);
    /* what nb_schedule_restore checks, so that applying cannot fail */
    fail = fail || L->sched_epoch < 0 || L->sched_bad < 0 || L->sched_cooldown < 0 || isnan(L->sched_best);
    for (int g = 0; !fail && g < ng; g++)
        fail = !isfinite(L->sched_base[g]) || !isfinite(L->sched_lrs[g]) || L->sched_base[g] < 0 || L->sched_lrs[g] < 0;
    return fail ? bad(path, "schedule state") : NB_OK;
}

static nb_status check_loader(const char *path, const nb_safetensors *f, const nb_checkpoint *c, loaded *L)
{
    const char *s = meta_of(f, META_LOADER);
    if (!s) return nb__fail(NB_ERR_STATE, "%s: the checkpoint holds no loader position", path);
    if (kv_i64(s, "n", &L->loader.n) || kv_i64(s, "batch", &L->loader.batch) || kv_i64(s, "pos", &L->loader.pos) ||
        rng_parse(s, "rng_", &L->loader.rng))
        return bad(path, "loader state");
    nb_loader_state now;
    nb_loader_get_state(c->loader, &now);
    if (now.n != L->loader.n || now.batch != L->loader.batch)
        return nb__fail(NB_ERR_STATE, "%s: the checkpoint's loader has %lld samples in batches of %lld, this one %lld in %lld",
                        path, (long long)L->loader.n, (long long)L->loader.batch, (long long)now.n, (long long)now.batch);
    if (L->loader.pos < 0 || L->loader.pos > L->loader.n) return bad(path, "loader state");
    return NB_OK;
}

/* Model tensors: the model's names and shapes exactly (other tensors may
 * only be optimizer state). */
static nb_status check_model(const char *path, const nb_safetensors *f, const nb_model *m)
{
    const char *name = nb_safetensors_meta(f, "model");
    if (!name || strcmp(name, m->name))
        return nb__fail(NB_ERR_STATE, "%s: the checkpoint's model is '%s', this one '%s'", path, name ? name : "?", m->name);
    for (int i = 0; i < m->nparams; i++) {
        const nb_param *p = &m->params[i];
        const nb_st_tensor *t = nb_safetensors_find(f, p->name);
        int same = t && t->ndim == p->t.ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == p->t.shape[d];
        if (!same)
            return nb__fail(NB_ERR_STATE, "%s: tensor '%s' is missing or has another shape than the model's", path,
                            p->name);
    }
    for (int i = 0; i < f->n; i++)
        if (strncmp(f->tensors[i].name, OPTIM_PREFIX, strlen(OPTIM_PREFIX)) && nb_model_find_param(m, f->tensors[i].name) < 0)
            return nb__fail(NB_ERR_STATE, "%s: tensor '%s' is not a parameter of model '%s'", path, f->tensors[i].name,
                            m->name);
    return NB_OK;
}

nb_status nb_checkpoint_load(const char *path, const nb_checkpoint *c)
{
    if (!path || !c || !c->model || !c->optim) return nb__fail(NB_ERR_ARG, "checkpoint: NULL path, model or optimizer");
    if (c->optim->model != c->model) return nb__fail(NB_ERR_ARG, "checkpoint: the optimizer is not the model's");
    nb_safetensors *f = NULL;
    nb_status s = nb_safetensors_load(path, &f);
    if (s) return s;
    loaded L;
    memset(&L, 0, sizeof L);
    const char *v = nb_safetensors_meta(f, KEY_VERSION);
    if (!v || strcmp(v, VERSION)) {
        s = nb__fail(NB_ERR_FORMAT, "%s: not a nabla checkpoint (no \"%s\": \"%s\" in its metadata)", path, KEY_VERSION,
                     VERSION);
        goto done;
    }
    if ((s = check_model(path, f, c->model)) || (s = check_optim(path, f, c, &L)) ||
        (c->schedule && (s = check_schedule(path, f, c, &L))) || (c->loader && (s = check_loader(path, f, c, &L))))
        goto done;
    if (c->rng && (!meta_of(f, META_RNG) || rng_parse(meta_of(f, META_RNG), "", &L.rng))) {
        s = meta_of(f, META_RNG) ? bad(path, "generator state")
                                 : nb__fail(NB_ERR_STATE, "%s: the checkpoint holds no generator", path);
        goto done;
    }

    /* Apply: nothing below fails but for memory when a group gains a buffer. */
    nb_model *m = c->model;
    nb_optimizer *o = c->optim;
    for (int g = 0; g < L.ngroups; g++)
        if ((s = nb_optim_set_group_opts(o, g, &L.groups[g]))) goto done;
    for (int i = 0; i < m->nparams; i++)
        if (!m->params[i].buffer && nb_optim_param_group(o, i) != L.param_group[i])
            nb_optim_set_group(o, i, L.param_group[i]);
    for (int i = 0; i < m->nparams; i++) {
        const nb_st_tensor *t = nb_safetensors_find(f, m->params[i].name);
        if (t->numel) memcpy(m->params[i].t.data, t->data, (size_t)t->numel * sizeof(float));
    }
    for (int i = 0; i < nb_optim_state_count(o); i++) {
        const char *name;
        float *buf;
        size_t len;
        nb_optim_state_get(o, i, &name, &buf, &len);
        char tname[64];
        snprintf(tname, sizeof tname, OPTIM_PREFIX "%s", name);
        const nb_st_tensor *t = nb_safetensors_find(f, tname);
        if (t && t->numel) memcpy(buf, t->data, len * sizeof(float));
        else memset(buf, 0, len * sizeof(float)); /* a buffer no saved group used */
    }
    o->steps = L.steps;
    if (c->schedule) {
        nb_schedule *sc = c->schedule;
        sc->last_epoch = L.sched_epoch, sc->best = L.sched_best;
        sc->num_bad_epochs = L.sched_bad, sc->cooldown_counter = L.sched_cooldown;
        memcpy(sc->base_lrs, L.sched_base, sizeof(double) * (size_t)sc->ngroups);
        memcpy(sc->lrs, L.sched_lrs, sizeof(double) * (size_t)sc->ngroups);
        if ((s = nb_schedule_restore(sc))) goto done;
    }
    if (c->rng) *c->rng = L.rng;
    if (c->loader) s = nb_loader_set_state(c->loader, &L.loader);
done:
    NB_FREE(L.groups);
    NB_FREE(L.param_group);
    NB_FREE(L.sched_base);
    NB_FREE(L.sched_lrs);
    nb_safetensors_free(f);
    return s;
}
