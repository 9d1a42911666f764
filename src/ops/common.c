/* Shape plumbing shared by the ops: broadcasting, axis handling, strided
 * accumulation of gradients. */
#include "../core/internal.h"

int nb__axis(int axis, int ndim)
{
    if (axis < 0) axis += ndim;
    return axis >= 0 && axis < ndim ? axis : -1;
}

nb_status nb__broadcast_shape(const char *opname, const nb_tensor *a, const nb_tensor *b,
                              int *ndim, int64_t *shape)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i, ib = b->ndim - n + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            return nb__fail(NB_ERR_SHAPE, "%s: shapes %s and %s do not broadcast (dimension %d: %lld vs %lld)",
                            opname, nb_shape_str(a, sa, sizeof sa), nb_shape_str(b, sb, sizeof sb), i,
                            (long long)da, (long long)db);
        }
        shape[i] = da == 1 ? db : da;
    }
    *ndim = n;
    return NB_OK;
}

void nb__broadcast_strides(const nb_tensor *t, int ndim, int64_t *stride)
{
    for (int i = 0; i < ndim; i++) {
        int it = t->ndim - ndim + i;
        stride[i] = (it >= 0 && t->shape[it] != 1) ? t->stride[it] : 0;
    }
}

void nb__sum_to(float *dst, int dndim, const int64_t *dshape,
                const float *src, int sndim, const int64_t *sshape)
{
    /* Walk src in order; the matching dst offset uses stride 0 on the
     * dimensions dst broadcast along. */
    int64_t dstride[NB_MAX_DIMS], cstride[NB_MAX_DIMS];
    nb__contig_strides(dndim, dshape, cstride);
    for (int i = 0; i < sndim; i++) {
        int id = dndim - sndim + i;
        dstride[i] = (id >= 0 && dshape[id] != 1) ? cstride[id] : 0;
    }
    int64_t n = nb__numel(sndim, sshape);
    if (n == 0) return;
    int64_t inner = sndim ? sshape[sndim - 1] : 1, istride = sndim ? dstride[sndim - 1] : 0;
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k += inner) {
        int64_t off = 0;
        for (int d = 0; d < sndim - 1; d++) off += idx[d] * dstride[d];
        const float *s = src + k;
        float *o = dst + off;
        if (istride == 1)
            for (int64_t j = 0; j < inner; j++) o[j] += s[j];
        else if (istride == 0) {
            float acc = 0;
            for (int64_t j = 0; j < inner; j++) acc += s[j];
            o[0] += acc;
        } else
            for (int64_t j = 0; j < inner; j++) o[j * istride] += s[j];
        for (int d = sndim - 2; d >= 0; d--) {
            if (++idx[d] < sshape[d]) break;
            idx[d] = 0;
        }
    }
}

void nb__strided_add(float *dst, const int64_t *dst_stride, const float *src,
                     int ndim, const int64_t *shape)
{
    int64_t n = nb__numel(ndim, shape);
    if (n == 0) return;
    int64_t inner = ndim ? shape[ndim - 1] : 1, is = ndim ? dst_stride[ndim - 1] : 0;
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k += inner) {
        int64_t off = 0;
        for (int d = 0; d < ndim - 1; d++) off += idx[d] * dst_stride[d];
        for (int64_t j = 0; j < inner; j++) dst[off + j * is] += src[k + j];
        for (int d = ndim - 2; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

const float *nb__contiguous_data(nb_ctx *ctx, const nb_tensor *t)
{
    if (nb_tensor_is_contiguous(t)) return t->data;
    float *c = nb_arena_alloc(nb_ctx_arena(ctx), (size_t)nb_tensor_numel(t) * sizeof(float));
    if (c) nb_tensor_copy_out(t, c);
    return c;
}
