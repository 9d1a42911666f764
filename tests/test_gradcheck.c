/* The finite-difference gradient check of every op in src/ops/ops.def.
 *
 * For each case that gc_<name> (tests/gc_*.c) provides: run the op in a fresh
 * context, contract its output with a fixed random tensor R (loss =
 * sum(out * R) via nb_mul and nb_sum), back-propagate, and compare each
 * checked input's gradient with central differences of the same contraction
 * computed in double from no-grad forwards. One TEST per op, generated from
 * ops.def, plus a test that no op records anything when its inputs need no
 * gradient or autograd is off. */
#include "test.h"
#include "gradcheck.h"
#include <stdint.h>
#include <stdlib.h>

#define GC_SEED      1234u
#define GC_R_SEED    777u
#define GC_MAX_ELEMS 300   /* elements checked per input (evenly spread beyond) */
#define GC_MAX_SHOWN 4     /* mismatches reported per input */
#define GC_EPS       1e-2f
#define GC_RTOL      1e-2
#define GC_ATOL      1e-3

typedef int (*gc_gen)(nb_ctx *ctx, int variant, gc_case *c);

static const struct { const char *name; gc_gen gen; } gc_table[] = {
#define NB_OP(E, name) {#name, gc_##name},
#include "../src/ops/ops.def"
#undef NB_OP
};

/* sum(out * R) in double from a no-grad forward run in the scratch context. */
static int contract(nb_ctx *scratch, gc_case *c, const float *R, int64_t n, double *f)
{
    nb_ctx_reset(scratch);
    nb_tensor *out = c->fn(scratch, c);
    if (!out || nb_tensor_numel(out) != n) return 0;
    float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!v) return 0;
    nb_tensor_copy_out(out, v);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * R[i];
    free(v);
    *f = s;
    return 1;
}

/* Memory offset of the row-major element e of t (t may be a strided view). */
static int64_t elem_offset(const nb_tensor *t, int64_t e)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (e % t->shape[d]) * t->stride[d];
        e /= t->shape[d];
    }
    return off;
}

/* Runs case `variant` of one op; returns 0 when the op has no such case.
 * Mismatches go to nbt_fail; *bad is set when any were found. */
static int check_case(const char *op, gc_gen gen, int variant, int *bad)
{
    nb_ctx *ctx = nb_ctx_new(GC_SEED + (uint64_t)variant);
    nb_ctx *scratch = nb_ctx_new(GC_SEED);
    if (!ctx || !scratch) {
        nbt_fail(__FILE__, __LINE__, "%s: cannot create contexts", op);
        *bad = 1;
        nb_ctx_free(ctx);
        nb_ctx_free(scratch);
        return 0;
    }
    nb_set_grad_enabled(scratch, 0);
    gc_case c;
    memset(&c, 0, sizeof c);
    int more = gen(ctx, variant, &c);
    float *R = NULL;
    if (!more) goto done;
    const char *label = c.label ? c.label : "?";
    float eps = c.eps > 0 ? c.eps : GC_EPS;
    double rtol = c.rtol > 0 ? c.rtol : GC_RTOL, atol = c.atol > 0 ? c.atol : GC_ATOL;
    int any_grad = 0;
    for (int k = 0; k < c.nin; k++) {
        if (!c.in[k] || !c.fn) {
            nbt_fail(__FILE__, __LINE__, "%s [%s]: case is incomplete: %s", op, label, nb_last_error());
            *bad = 1;
            goto done;
        }
        any_grad |= c.in[k]->requires_grad;
    }
    nb_tensor *out = c.fn(ctx, &c);
    if (!out) {
        nbt_fail(__FILE__, __LINE__, "%s [%s]: forward failed: %s", op, label, nb_last_error());
        *bad = 1;
        goto done;
    }
    if (!any_grad) {
        nbt_fail(__FILE__, __LINE__, "%s [%s]: no input requires grad, nothing to check", op, label);
        *bad = 1;
        goto done;
    }
    int64_t n = nb_tensor_numel(out);
    R = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!R) goto done;
    nb_rng rng;
    nb_rng_seed(&rng, GC_R_SEED);
    for (int64_t i = 0; i < n; i++) R[i] = nb_rng_normal(&rng);
    nb_tensor *Rt = nb_tensor_from(ctx, out->ndim, out->shape, R);
    nb_tensor *loss = nb_sum(ctx, nb_mul(ctx, out, Rt), NULL, 0, 0);
    nb_status st = loss ? nb_backward(ctx, loss) : nb_ctx_status(ctx);
    if (st != NB_OK) {
        nbt_fail(__FILE__, __LINE__, "%s [%s]: backward failed: %s: %s", op, label, nb_status_str(st),
                 nb_last_error());
        *bad = 1;
        goto done;
    }
    for (int k = 0; k < c.nin; k++) {
        nb_tensor *x = c.in[k];
        if (!x->requires_grad) continue;
        int64_t m = nb_tensor_numel(x), count = m < GC_MAX_ELEMS ? m : GC_MAX_ELEMS;
        int shown = 0;
        for (int64_t i = 0; i < count; i++) {
            int64_t e = count == m ? i : i * (m - 1) / (count - 1);
            float *p = x->data + elem_offset(x, e);
            float v = *p, vp = v + eps, vm = v - eps;
            double fp, fm;
            *p = vp;
            int ok = contract(scratch, &c, R, n, &fp);
            *p = vm;
            ok = ok && contract(scratch, &c, R, n, &fm);
            *p = v;
            if (!ok) {
                nbt_fail(__FILE__, __LINE__, "%s [%s]: perturbed forward failed: %s", op, label, nb_last_error());
                *bad = 1;
                goto done;
            }
            double num = (fp - fm) / ((double)vp - (double)vm);
            double ana = x->grad ? x->grad[e] : 0.0;
            double scale = fabs(num) > fabs(ana) ? fabs(num) : fabs(ana);
            if (!(fabs(ana - num) <= atol + rtol * scale)) {
                *bad = 1;
                if (shown++ < GC_MAX_SHOWN)
                    nbt_fail(__FILE__, __LINE__, "%s [%s] input %d element %lld: analytic %.7g vs numeric %.7g",
                             op, label, k, (long long)e, ana, num);
            }
        }
        if (shown > GC_MAX_SHOWN)
            nbt_fail(__FILE__, __LINE__, "%s [%s] input %d: %d mismatches in all", op, label, k, shown);
    }
done:
    free(R);
    nb_ctx_free(scratch);
    nb_ctx_free(ctx);
    return more;
}

static void gradcheck_op(const char *op, gc_gen gen)
{
    int bad = 0, v = 0;
    while (check_case(op, gen, v, &bad)) v++;
    if (v == 0) nbt_fail(__FILE__, __LINE__, "%s: gc_%s provides no case", op, op);
}

/* One test per op, gradcheck_<name>, registered under this file's name (a
 * TEST() expanded inside ops.def would carry ops.def's __FILE__). */
static const char gc_file[] = __FILE__;
#define NB_OP(E, name)                                                          \
    static void gradcheck_##name(void) { gradcheck_op(#name, gc_##name); }      \
    __attribute__((constructor)) static void nbt_reg_gradcheck_##name(void)     \
    { nbt_register("gradcheck_" #name, gc_file, gradcheck_##name); }
#include "../src/ops/ops.def"
#undef NB_OP

/* 1 if out came from an input unchanged (contiguous of a contiguous tensor). */
static int is_input(const gc_case *c, const nb_tensor *out)
{
    for (int k = 0; k < c->nin; k++)
        if (c->in[k] == out) return 1;
    return 0;
}

TEST(gradcheck_nothing_recorded_without_grad)
{
    for (size_t i = 0; i < sizeof gc_table / sizeof gc_table[0]; i++) {
        const char *op = gc_table[i].name;
        for (int v = 0;; v++) {
            nb_ctx *ctx = nb_ctx_new(GC_SEED);
            gc_case c;
            memset(&c, 0, sizeof c);
            if (!gc_table[i].gen(ctx, v, &c)) {
                nb_ctx_free(ctx);
                break;
            }
            const char *label = c.label ? c.label : "?";
            /* autograd off: no node even though inputs require grad */
            nb_set_grad_enabled(ctx, 0);
            nb_tensor *out = c.fn(ctx, &c);
            int ok_off = out && !out->node && (!out->requires_grad || is_input(&c, out));
            nb_set_grad_enabled(ctx, 1);
            /* autograd on, no input requires grad: no node either */
            for (int k = 0; k < c.nin; k++) c.in[k]->requires_grad = 0;
            nb_tensor *out2 = c.fn(ctx, &c);
            int ok_nograd = out2 && !out2->node && !out2->requires_grad;
            nb_ctx_free(ctx);
            CHECK_MSG(ok_off, "%s [%s]: recorded (or failed) with autograd off", op, label);
            CHECK_MSG(ok_nograd, "%s [%s]: recorded (or failed) with no input requiring grad", op, label);
        }
    }
}
