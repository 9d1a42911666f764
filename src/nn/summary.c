/* Model summaries and receptive fields (include/nabla/summary.h).
 *
 * Both run one forward pass with every module's vtable swapped for a copy
 * whose forward goes through hook_forward: the summary records each leaf's
 * output there, the empirical receptive field swaps max pooling for an
 * average there. The original vtables are put back before returning. */
#include "../core/internal.h"
#include "nabla/summary.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the receptive-field recurrence --------------------------------------- */
void nb_rf_step(int64_t *rf, int64_t *jump, double *start, int k, int s, int p, int d)
{
    if (s <= 0) s = 1;
    if (d <= 0) d = 1;
    if (k <= 0) k = 1;
    int64_t keff = (int64_t)d * (k - 1) + 1;
    *start += ((double)(keff - 1) / 2.0 - p) * (double)*jump;
    *rf += (keff - 1) * *jump;
    *jump *= s;
}

/* What is known of a tensor's receptive field. */
enum { FIELD_NONE = 0, FIELD_SPATIAL, FIELD_INVALID };
typedef struct field {
    int     state;          /* NONE: not seen; INVALID: seen, not an image field */
    int64_t rf[2], jump[2];
    double  start[2];
} field;

typedef struct {
    const nb_tensor *t;
    field f;
} field_entry;

typedef struct pass pass;

typedef struct hook {
    nb_module_vt vt;                /* first member: mod->vt points here */
    const nb_module_vt *orig;
    pass      *p;
    nb_module *mod;
    char       name[64];
    int        row;                 /* listed: a leaf, or parameters of its own */
    int        called;
    int64_t    own_params, own_buffers;
} hook;

struct pass {
    nb_model *m;
    hook     *hooks;
    int       nhooks, cap;
    int       summary;              /* record rows (else: empirical pass) */
    nb_layer_info *rows;
    int       nrows, rowcap;
    field_entry *map;               /* tensor -> field, linear search */
    int       nmap, mapcap;
    field     last;                 /* field of the latest row's output */
    nb_status err;
};

static nb_tensor *hook_forward(nb_module *mod, nb_ctx *ctx, nb_tensor *x);

static int count_modules(const nb_module *mod)
{
    int n = 1;
    for (int i = 0; i < mod->nchildren; i++) n += count_modules(mod->children[i]);
    return n;
}

static int in_list(const int *list, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (list[i] == v) return 1;
    return 0;
}

/* Swap mod's vtable and its subtree's for hooks named by their dotted path. */
static void install(pass *p, nb_module *mod, const char *name)
{
    if (mod->vt->forward == hook_forward) return;  /* shared module, seen already */
    NB_ASSERT(p->nhooks < p->cap);
    hook *h = &p->hooks[p->nhooks++];
    memset(h, 0, sizeof *h);
    h->orig = mod->vt;
    h->vt = *mod->vt;
    h->vt.forward = hook_forward;
    h->p = p;
    h->mod = mod;
    snprintf(h->name, sizeof h->name, "%s", *name ? name : "(root)");
    /* Parameters of its own: those none of its children hold. */
    for (int k = 0; k < mod->nparams; k++) {
        int idx = mod->params[k], child_has = 0;
        for (int c = 0; c < mod->nchildren && !child_has; c++)
            child_has = in_list(mod->children[c]->params, mod->children[c]->nparams, idx);
        if (child_has) continue;
        const nb_param *pr = &p->m->params[idx];
        int64_t n = nb_tensor_numel(&pr->t);
        if (pr->buffer) h->own_buffers += n;
        else h->own_params += n;
    }
    h->row = mod->nchildren == 0 || h->own_params || h->own_buffers;
    mod->vt = &h->vt;
    for (int c = 0; c < mod->nchildren; c++) {
        char child[256];
        snprintf(child, sizeof child, "%s%s%s", name, *name ? "." : "", mod->child_names[c]);
        install(p, mod->children[c], child);
    }
}

static nb_status install_hooks(pass *p)
{
    p->cap = count_modules(p->m->root);
    p->hooks = NB_MALLOC(sizeof *p->hooks * (size_t)p->cap);
    if (!p->hooks) return nb__fail(NB_ERR_NOMEM, "summary: out of memory");
    install(p, p->m->root, "");
    return NB_OK;
}

static void remove_hooks(pass *p)
{
    for (int i = 0; i < p->nhooks; i++) p->hooks[i].mod->vt = p->hooks[i].orig;
}

/* ---- fields of tensors ------------------------------------------------------ */
static field *map_find(pass *p, const nb_tensor *t)
{
    for (int i = p->nmap - 1; i >= 0; i--)
        if (p->map[i].t == t) return &p->map[i].f;
    return NULL;
}

static void map_set(pass *p, const nb_tensor *t, field f)
{
    field *old = map_find(p, t);
    if (old) {
        *old = f;
        return;
    }
    if (p->nmap == p->mapcap) {
        int cap = p->mapcap ? 2 * p->mapcap : 64;
        field_entry *e = NB_REALLOC(p->map, sizeof *e * (size_t)cap);
        if (!e) {
            p->err = NB_ERR_NOMEM;
            return;
        }
        p->map = e;
        p->mapcap = cap;
    }
    p->map[p->nmap++] = (field_entry){t, f};
}

static int same_hw(const nb_tensor *a, const nb_tensor *b)
{
    return a->ndim == 4 && b->ndim == 4 && a->shape[2] == b->shape[2] && a->shape[3] == b->shape[3];
}

/* r = r ∪ f: the smallest field holding both (per axis). */
static void field_union(field *r, const field *f)
{
    if (r->state == FIELD_NONE) {
        *r = *f;
        return;
    }
    if (r->state == FIELD_INVALID || f->state == FIELD_INVALID) {
        r->state = FIELD_INVALID;
        return;
    }
    for (int a = 0; a < 2; a++) {
        double lo = fmin(r->start[a] - (double)(r->rf[a] - 1) / 2, f->start[a] - (double)(f->rf[a] - 1) / 2);
        double hi = fmax(r->start[a] + (double)(r->rf[a] - 1) / 2, f->start[a] + (double)(f->rf[a] - 1) / 2);
        r->rf[a] = (int64_t)llround(hi - lo) + 1;
        r->start[a] = (lo + hi) / 2;
        if (f->jump[a] > r->jump[a]) r->jump[a] = f->jump[a];
    }
}

/* The field of t: recorded for module outputs; for the result of ops inside
 * a container's forward (a residual add, a flatten) follow the tape to the
 * recorded tensors it was computed from. FIELD_NONE if nothing leads there. */
static field field_of(pass *p, const nb_tensor *t, int depth)
{
    field *known = map_find(p, t);
    if (known) return *known;
    field r = {0};
    if (!t->node || depth > 256) return r;
    const nb__node *n = t->node;
    for (int k = 0; k < n->nin; k++) {
        field f = field_of(p, n->in[k], depth + 1);
        if (f.state == FIELD_SPATIAL && !same_hw(n->in[k], t)) f.state = FIELD_INVALID;
        if (f.state != FIELD_NONE) field_union(&r, &f);
    }
    map_set(p, t, r);
    return r;
}

/* Output size of one axis under a geometry, floor or ceil (pools' ceil_mode). */
static int geometry_fits(int64_t in, int64_t out, int k, int s, int pad, int d)
{
    if (s <= 0) s = 1;
    if (d <= 0) d = 1;
    if (k <= 0) k = 1;
    int64_t span = in + 2 * (int64_t)pad - (int64_t)d * (k - 1) - 1;
    if (span < 0) return 0;
    int64_t fl = span / s + 1, ce = (span + s - 1) / s + 1;
    if (ce > fl && (ce - 1) * s >= in + pad) ce = fl;  /* torch: last window starts inside */
    return out == fl || out == ce;
}

/* The layer's geometry (0 and no MACs for layers without the callback). */
static int geometry_of(const hook *h, nb_layer_geometry *g)
{
    memset(g, 0, sizeof *g);
    return h->orig->geometry ? h->orig->geometry(h->mod, g) : 0;
}

static void add_row(pass *p, hook *h, nb_tensor *x, nb_tensor *y)
{
    if (p->nrows == p->rowcap) {
        int cap = p->rowcap ? 2 * p->rowcap : 32;
        nb_layer_info *r = NB_REALLOC(p->rows, sizeof *r * (size_t)cap);
        if (!r) {
            p->err = NB_ERR_NOMEM;
            return;
        }
        p->rows = r;
        p->rowcap = cap;
    }
    nb_layer_info *row = &p->rows[p->nrows++];
    memset(row, 0, sizeof *row);
    snprintf(row->name, sizeof row->name, "%s", h->name);
    snprintf(row->kind, sizeof row->kind, "%s", h->orig->kind);
    if (h->orig->describe) h->orig->describe(h->mod, row->desc, sizeof row->desc);
    if (!h->called) {
        row->params = h->own_params;
        row->buffers = h->own_buffers;
    }
    h->called = 1;
    if (!y) {
        row->ndim = -1;
        return;
    }
    row->ndim = y->ndim;
    for (int i = 0; i < y->ndim; i++) row->out_shape[i] = y->shape[i];

    nb_layer_geometry g;
    int spatial = geometry_of(h, &g);
    row->macs = nb_tensor_numel(y) * g.macs_per_output + nb_tensor_numel(x) * g.macs_per_input;  /* batch 1 */

    field in = field_of(p, x, 0);
    if (in.state == FIELD_NONE) in = p->last;
    field out = in;
    if (in.state != FIELD_SPATIAL || x->ndim != 4 || y->ndim != 4) {
        out.state = FIELD_INVALID;
    } else if (spatial && g.transposed) {
        out.state = FIELD_INVALID;  /* upsampling: no integer jump to carry on */
    } else if (spatial) {
        for (int a = 0; a < 2 && out.state == FIELD_SPATIAL; a++) {
            if (!geometry_fits(x->shape[2 + a], y->shape[2 + a], g.kernel[a], g.stride[a], g.padding[a],
                               g.dilation[a]))
                out.state = FIELD_INVALID;  /* e.g. a transposed conv: the recurrence does not apply */
            else
                nb_rf_step(&out.rf[a], &out.jump[a], &out.start[a], g.kernel[a], g.stride[a], g.padding[a],
                           g.dilation[a]);
        }
    } else if (!same_hw(x, y)) {
        out.state = FIELD_INVALID;  /* changes the size without saying how */
    }
    map_set(p, y, out);
    p->last = out;
    if (out.state == FIELD_SPATIAL) {
        row->has_rf = 1;
        for (int a = 0; a < 2; a++) {
            row->rf[a] = out.rf[a];
            row->jump[a] = out.jump[a];
            row->start[a] = out.start[a];
        }
    }
}

/* ---- the empirical pass: max pooling as an average over its windows ------- */
static nb_tensor *max_pool_as_average(hook *h, nb_ctx *ctx, nb_tensor *x)
{
    nb_layer_geometry g;
    if (!h->orig->geometry || !h->orig->geometry(h->mod, &g))
        return nb__op_fail(ctx, NB_ERR_STATE, "receptive field: %s (%s) has no geometry", h->name, h->orig->kind);
    if (!x || x->ndim != 4)
        return x ? nb__op_fail(ctx, NB_ERR_SHAPE, "receptive field: %s expects (N,C,H,W)", h->name) : NULL;
    /* The true pool's output size (ceil_mode included), off the tape. */
    int old = nb_set_grad_enabled(ctx, 0);
    nb_tensor *ref = h->orig->forward(h->mod, ctx, x);
    nb_set_grad_enabled(ctx, old);
    if (!ref) return NULL;
    int64_t oh = ref->shape[2], ow = ref->shape[3], c = x->shape[1];
    int k[2], s[2];
    for (int a = 0; a < 2; a++) {
        k[a] = g.kernel[a] > 0 ? g.kernel[a] : 1;
        s[a] = g.stride[a] > 0 ? g.stride[a] : 1;
        if (g.dilation[a] > 1)
            return nb__op_fail(ctx, NB_ERR_ARG, "receptive field: %s: dilated max pooling is not supported", h->name);
    }
    /* ceil_mode windows may run past the input: zeros there add nothing. */
    for (int a = 0; a < 2; a++) {
        int64_t o = a ? ow : oh;
        int64_t need = (o - 1) * s[a] + k[a] - 2 * (int64_t)g.padding[a];
        int64_t extra = need - x->shape[2 + a];
        if (extra > 0) {
            int64_t zs[4] = {x->shape[0], c, x->shape[2], x->shape[3]};
            zs[2 + a] = extra;
            nb_tensor *parts[2] = {x, nb_tensor_zeros(ctx, 4, zs)};
            x = nb_concat(ctx, parts, 2, 2 + a);
        }
    }
    nb_pool2d_opts o = {{k[0], k[1]}, {s[0], s[1]}, {g.padding[0], g.padding[1]}, {1, 1}, 0, 1};
    nb_tensor *y = nb_avg_pool2d(ctx, x, &o);
    if (y && (y->shape[2] > oh || y->shape[3] > ow)) y = nb_slice(ctx, nb_slice(ctx, y, 2, 0, oh, 1), 3, 0, ow, 1);
    return y;
}

static nb_tensor *hook_forward(nb_module *mod, nb_ctx *ctx, nb_tensor *x)
{
    hook *h = (hook *)mod->vt;
    pass *p = h->p;
    if (!p->summary) {
        if (!strcmp(h->orig->kind, "MaxPool2d")) return max_pool_as_average(h, ctx, x);
        return h->orig->forward(mod, ctx, x);
    }
    nb_tensor *y = h->orig->forward(mod, ctx, x);
    if (y && x && h->row) add_row(p, h, x, y);
    return y;
}

/* ---- nb_model_summary ------------------------------------------------------- */
static nb_status check_input(const char *fn, const nb_model *m, int ndim, const int64_t *shape, int want_ndim)
{
    if (!m || !shape) return nb__fail(NB_ERR_ARG, "%s: model or input shape is NULL", fn);
    if (!m->root) return nb__fail(NB_ERR_STATE, "%s: model '%s' has no modules", fn, m->name);
    if (want_ndim ? ndim != want_ndim : (ndim < 1 || ndim >= NB_MAX_DIMS))
        return nb__fail(NB_ERR_ARG, "%s: the input shape has %d dimensions, expected %s", fn, ndim,
                        want_ndim ? "3 (C,H,W)" : "1 to 5 (without the batch)");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || shape[i] > (1 << 24))
            return nb__fail(NB_ERR_ARG, "%s: input dimension %d is %lld", fn, i, (long long)shape[i]);
        n *= shape[i];
        if (n > ((int64_t)1 << 31)) return nb__fail(NB_ERR_ARG, "%s: the input is too large", fn);
    }
    return NB_OK;
}

nb_status nb_model_summary(nb_model *m, int ndim, const int64_t *input_shape, nb_layer_info **layers,
                           int *nlayers)
{
    if (!layers || !nlayers) return nb__fail(NB_ERR_ARG, "summary: layers or nlayers is NULL");
    *layers = NULL;
    *nlayers = 0;
    nb_status s = check_input("summary", m, ndim, input_shape, 0);
    if (s) return s;
    pass p = {0};
    p.m = m;
    p.summary = 1;
    nb_ctx *ctx = nb_ctx_new(0);
    if (!ctx) return NB_ERR_NOMEM;
    if ((s = install_hooks(&p))) {
        nb_ctx_free(ctx);
        return s;
    }
    int training = m->training;
    nb_model_train(m, 0);

    int64_t shape[NB_MAX_DIMS] = {1};
    for (int i = 0; i < ndim; i++) shape[i + 1] = input_shape[i];
    /* requires_grad: the tape then links every result to its inputs, which is
     * how field_of sees through a container's own ops. No backward runs. */
    nb_tensor *x = nb_requires_grad(nb_tensor_zeros(ctx, ndim + 1, shape), 1);
    if (x) {
        field f = {ndim + 1 == 4 ? FIELD_SPATIAL : FIELD_INVALID, {1, 1}, {1, 1}, {0, 0}};
        map_set(&p, x, f);
        p.last = f;
    }
    nb_tensor *y = x ? nb_model_forward(m, ctx, x) : NULL;
    remove_hooks(&p);
    nb_model_train(m, training);

    if (!y)
        s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : nb__fail(NB_ERR_STATE, "summary: the forward pass gave no output");
    else if (p.err) s = nb__fail(p.err, "summary: out of memory");
    /* Modules with parameters that never ran still count. */
    for (int i = 0; i < p.nhooks && !s; i++) {
        hook *h = &p.hooks[i];
        if (h->row && !h->called && (h->own_params || h->own_buffers)) {
            add_row(&p, h, NULL, NULL);
            if (p.err) s = nb__fail(p.err, "summary: out of memory");
        }
    }
    nb_ctx_free(ctx);
    NB_FREE(p.hooks);
    NB_FREE(p.map);
    if (s) {
        NB_FREE(p.rows);
        return s;
    }
    *layers = p.rows;
    *nlayers = p.nrows;
    return NB_OK;
}

/* ---- nb_summary_format ------------------------------------------------------- */
typedef struct {
    char  *s;
    size_t n, cap;
    int    err;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) NB__PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->err) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->err = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = 2 * b->cap + (size_t)k + 1;
        char *s = NB_REALLOC(b->s, cap);
        if (!s) {
            b->err = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static void sb_repeat(sbuf *b, char c, int n)
{
    for (int i = 0; i < n; i++) sb_printf(b, "%c", c);
}

/* 247766 -> "247,766" */
static char *commas(int64_t v, char *buf, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)(v < 0 ? -v : v));
    size_t o = 0;
    if (v < 0 && o + 1 < size) buf[o++] = '-';
    for (int i = 0; i < n && o + 1 < size; i++) {
        if (i && (n - i) % 3 == 0 && o + 1 < size) buf[o++] = ',';
        if (o + 1 < size) buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

/* 7612850176 -> "7.61 G" */
static char *si(int64_t v, char *buf, size_t size)
{
    static const char *unit[] = {"K", "M", "G", "T", "P"};
    if (v < 1000) {
        snprintf(buf, size, "%lld", (long long)v);
        return buf;
    }
    double x = (double)v;
    int u = -1;
    while (x >= 1000 && u < 4) {
        x /= 1000;
        u++;
    }
    snprintf(buf, size, "%.2f %s", x, unit[u]);
    return buf;
}

static char *shape_text(const nb_layer_info *r, char *buf, size_t size)
{
    if (r->ndim < 0) {
        snprintf(buf, size, "(not run)");
        return buf;
    }
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < r->ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", i ? (long long)r->out_shape[i] : -1LL);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

/* "150" when both axes agree, else "150x120"; "-" without a field. */
static char *pair_text(int has, const int64_t *v, char *buf, size_t size)
{
    if (!has) snprintf(buf, size, "-");
    else if (v[0] == v[1]) snprintf(buf, size, "%lld", (long long)v[0]);
    else snprintf(buf, size, "%lldx%lld", (long long)v[0], (long long)v[1]);
    return buf;
}

static int imax(int a, int b) { return a > b ? a : b; }

nb_status nb_summary_format(const nb_layer_info *layers, int n, char **text)
{
    if (!text) return nb__fail(NB_ERR_ARG, "summary_format: text is NULL");
    *text = NULL;
    if (n < 0 || (n > 0 && !layers))
        return nb__fail(NB_ERR_ARG, "summary_format: %d rows and layers %s", n, layers ? "given" : "NULL");
    char t[160];
    int wn = 5, wk = 4, ws = 12, wp = 7, wm = 4, wr = 2, wj = 4;
    int64_t params = 0, buffers = 0, macs = 0;
    const nb_layer_info *last = NULL;
    for (int i = 0; i < n; i++) {
        const nb_layer_info *r = &layers[i];
        wn = imax(wn, (int)strlen(r->name));
        wk = imax(wk, (int)strlen(r->kind));
        ws = imax(ws, (int)strlen(shape_text(r, t, sizeof t)));
        wp = imax(wp, (int)strlen(commas(r->params, t, sizeof t)));
        wm = imax(wm, (int)strlen(commas(r->macs, t, sizeof t)));
        wr = imax(wr, (int)strlen(pair_text(r->has_rf, r->rf, t, sizeof t)));
        wj = imax(wj, (int)strlen(pair_text(r->has_rf, r->jump, t, sizeof t)));
        params += r->params;
        buffers += r->buffers;
        macs += r->macs;
        if (r->ndim >= 0) last = r;
    }
    int width = wn + wk + ws + wp + wm + wr + wj + 12;
    sbuf b = {0};
    sb_printf(&b, "%-*s  %-*s  %-*s  %*s  %*s  %*s  %*s\n", wn, "Layer", wk, "Type", ws, "Output shape", wp, "Param #",
              wm, "MACs", wr, "RF", wj, "Jump");
    sb_repeat(&b, '=', width);
    sb_printf(&b, "\n");
    for (int i = 0; i < n; i++) {
        const nb_layer_info *r = &layers[i];
        char sh[160], pa[32], ma[32], rf[48], ju[48];
        sb_printf(&b, "%-*s  %-*s  %-*s  %*s  %*s  %*s  %*s\n", wn, r->name, wk, r->kind, ws,
                  shape_text(r, sh, sizeof sh), wp, commas(r->params, pa, sizeof pa), wm,
                  commas(r->macs, ma, sizeof ma), wr, pair_text(r->has_rf, r->rf, rf, sizeof rf), wj,
                  pair_text(r->has_rf, r->jump, ju, sizeof ju));
    }
    sb_repeat(&b, '=', width);
    char a[32], c[32], d[32];
    /* As torch counts model.parameters(): buffers apart. Every parameter of
     * a nabla model is trained. */
    sb_printf(&b, "\nTotal params: %s\n", commas(params, a, sizeof a));
    sb_printf(&b, "Trainable params: %s\n", commas(params, a, sizeof a));
    sb_printf(&b, "Buffers (not trained): %s\n", commas(buffers, a, sizeof a));
    sb_printf(&b, "MACs per sample: %s (%s)\n", commas(macs, c, sizeof c), si(macs, d, sizeof d));
    if (last) sb_printf(&b, "Output shape: %s\n", shape_text(last, t, sizeof t));
    sb_printf(&b, "Params and buffers: %.2f MB (float32)\n", (double)(params + buffers) * 4.0 / (1024.0 * 1024.0));
    if (b.err) {
        NB_FREE(b.s);
        return nb__fail(NB_ERR_NOMEM, "summary_format: out of memory");
    }
    *text = b.s;
    return NB_OK;
}

/* ---- the empirical receptive field ----------------------------------------- */
/* Positive values everywhere (see summary.h): weights 1/fan_in keep the
 * activations' scale from layer to layer, vectors (biases, norm scales) 1. */
static void set_positive(nb_model *m)
{
    for (int i = 0; i < m->nparams; i++) {
        nb_param *pr = &m->params[i];
        int64_t n = nb_tensor_numel(&pr->t);
        float v;
        if (pr->buffer) {
            size_t len = strlen(pr->name);
            v = len >= 11 && !strcmp(pr->name + len - 11, "running_var") ? 1.0f : 0.0f;
        } else if (pr->t.ndim >= 2) {
            v = 1.0f / (float)(n / pr->t.shape[0]);
        } else {
            v = 1.0f;
        }
        for (int64_t k = 0; k < n; k++) pr->t.data[k] = v;  /* parameters are contiguous */
    }
}

nb_status nb_receptive_field_box(nb_model *m, int ndim, const int64_t *input_shape, int out_y, int out_x,
                                 int64_t box[4])
{
    if (!box) return nb__fail(NB_ERR_ARG, "receptive field: box is NULL");
    nb_status s = check_input("receptive field", m, ndim, input_shape, 3);
    if (s) return s;
    float *saved = NB_MALLOC(sizeof(float) * (m->numel ? m->numel : 1));
    int *req = NB_MALLOC(sizeof(int) * (size_t)(m->nparams ? m->nparams : 1));
    nb_ctx *ctx = nb_ctx_new(1);
    pass p = {0};
    p.m = m;
    if (!saved || !req || !ctx) {
        s = nb__fail(NB_ERR_NOMEM, "receptive field: out of memory");
        goto done;
    }
    if ((s = install_hooks(&p))) goto done;
    memcpy(saved, m->data, sizeof(float) * m->numel);
    /* Only the input needs a gradient: the model's own gradients stay as they are. */
    for (int i = 0; i < m->nparams; i++) {
        req[i] = m->params[i].t.requires_grad;
        m->params[i].t.requires_grad = 0;
    }
    set_positive(m);
    int training = m->training;
    nb_model_train(m, 0);

    int64_t shape[4] = {1, input_shape[0], input_shape[1], input_shape[2]};
    nb_tensor *x = nb_tensor_rand(ctx, 4, shape);
    if (x) {
        for (int64_t i = 0, n = nb_tensor_numel(x); i < n; i++) x->data[i] += 0.5f;
        nb_requires_grad(x, 1);
    }
    nb_tensor *y = nb_model_forward(m, ctx, x);
    if (!y) {
        s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : nb__fail(NB_ERR_STATE, "receptive field: no output");
    } else if (y->ndim != 4) {
        char b[64];
        s = nb__fail(NB_ERR_SHAPE, "receptive field: the model's output %s is not (N,C,H,W)",
                     nb_shape_str(y, b, sizeof b));
    } else {
        int64_t oy = out_y < 0 ? y->shape[2] / 2 : out_y, ox = out_x < 0 ? y->shape[3] / 2 : out_x;
        if (oy >= y->shape[2] || ox >= y->shape[3]) {
            s = nb__fail(NB_ERR_ARG, "receptive field: unit (%lld, %lld) is outside the %lldx%lld output",
                         (long long)oy, (long long)ox, (long long)y->shape[2], (long long)y->shape[3]);
        } else {
            nb_tensor *u = nb_slice(ctx, nb_slice(ctx, y, 0, 0, 1, 1), 1, 0, 1, 1);
            u = nb_slice(ctx, nb_slice(ctx, u, 2, oy, oy + 1, 1), 3, ox, ox + 1, 1);
            u = nb_sum(ctx, u, NULL, 0, 0);
            s = u ? nb_backward(ctx, u) : nb_ctx_status(ctx);
        }
    }
    if (!s) {
        int64_t c = shape[1], h = shape[2], w = shape[3];
        box[0] = h, box[1] = w, box[2] = -1, box[3] = -1;
        for (int64_t ci = 0; ci < c && x->grad; ci++)
            for (int64_t i = 0; i < h; i++)
                for (int64_t j = 0; j < w; j++)
                    if (x->grad[(ci * h + i) * w + j] != 0.0f) {
                        if (i < box[0]) box[0] = i;
                        if (j < box[1]) box[1] = j;
                        if (i > box[2]) box[2] = i;
                        if (j > box[3]) box[3] = j;
                    }
        if (box[2] < 0) box[0] = box[1] = 0;  /* nothing reaches the unit: empty box */
    }
    remove_hooks(&p);
    memcpy(m->data, saved, sizeof(float) * m->numel);
    for (int i = 0; i < m->nparams; i++) m->params[i].t.requires_grad = req[i];
    nb_model_train(m, training);
done:
    NB_FREE(saved);
    NB_FREE(req);
    NB_FREE(p.hooks);
    nb_ctx_free(ctx);
    return s;
}

nb_status nb_receptive_field_empirical(nb_model *m, int ndim, const int64_t *input_shape, int out_y, int out_x,
                                       int64_t *rf_h, int64_t *rf_w)
{
    if (!rf_h || !rf_w) return nb__fail(NB_ERR_ARG, "receptive field: rf_h or rf_w is NULL");
    int64_t box[4];
    nb_status s = nb_receptive_field_box(m, ndim, input_shape, out_y, out_x, box);
    if (s) return s;
    *rf_h = box[2] - box[0] + 1;
    *rf_w = box[3] - box[1] + 1;
    return NB_OK;
}
