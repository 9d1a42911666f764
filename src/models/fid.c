/* The Fréchet distance between two feature sets (FID, Heusel et al.) and the
 * classifier that provides the features. */
#include "../core/internal.h"
#include <math.h>

/* Eigen-decomposition of the symmetric n x n matrix a (row-major, destroyed)
 * by cyclic Jacobi rotations: evals (n) and evecs (n x n, column k is the
 * vector of evals[k]). Converges quadratically; the sweep limit only guards
 * against a NaN that slipped through. */
static void jacobi_eigen(double *a, int n, double *evals, double *evecs)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) evecs[(size_t)i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < n; i++) {
            diag += a[(size_t)i * n + i] * a[(size_t)i * n + i];
            for (int j = i + 1; j < n; j++) off += a[(size_t)i * n + j] * a[(size_t)i * n + j];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[(size_t)p * n + q];
                if (apq == 0) continue;
                double app = a[(size_t)p * n + p], aqq = a[(size_t)q * n + q];
                /* The rotation angle that zeroes a[p][q] (Golub & Van Loan
                 * 8.4.2), in the form that keeps t = tan(theta) <= 1. */
                double tau = (aqq - app) / (2 * apq);
                double t = (tau >= 0 ? 1 : -1) / (fabs(tau) + sqrt(1 + tau * tau));
                double c = 1 / sqrt(1 + t * t), s = t * c;
                for (int k = 0; k < n; k++) {   /* a = a J (columns p, q) */
                    double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = c * akp - s * akq;
                    a[(size_t)k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {   /* a = J^T a (rows p, q) */
                    double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = c * apk - s * aqk;
                    a[(size_t)q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {   /* v = v J */
                    double vkp = evecs[(size_t)k * n + p], vkq = evecs[(size_t)k * n + q];
                    evecs[(size_t)k * n + p] = c * vkp - s * vkq;
                    evecs[(size_t)k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) evals[i] = a[(size_t)i * n + i];
}

/* Mean (dim) and covariance (dim x dim, divided by n - 1) of x (n x dim). */
static void mean_cov(const float *x, int64_t n, int dim, double *mu, double *cov)
{
    for (int j = 0; j < dim; j++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += x[i * dim + j];
        mu[j] = s / (double)n;
    }
    memset(cov, 0, sizeof *cov * (size_t)dim * dim);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            double dj = x[i * dim + j] - mu[j];
            for (int k = j; k < dim; k++) cov[(size_t)j * dim + k] += dj * (x[i * dim + k] - mu[k]);
        }
    for (int j = 0; j < dim; j++)
        for (int k = j; k < dim; k++) {
            cov[(size_t)j * dim + k] /= (double)(n - 1);
            cov[(size_t)k * dim + j] = cov[(size_t)j * dim + k];
        }
}

/* c = a b for n x n matrices. */
static void matmul_sq(const double *a, const double *b, double *c, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += a[(size_t)i * n + k] * b[(size_t)k * n + j];
            c[(size_t)i * n + j] = s;
        }
}

nb_status nb_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int dim, double *out)
{
    if (!a || !b || !out || dim < 1 || dim > 4096)
        return nb__fail(NB_ERR_ARG, "frechet_distance: NULL argument or dim %d outside [1, 4096]", dim);
    if (na < 2 || nb < 2)
        return nb__fail(NB_ERR_ARG, "frechet_distance: need at least 2 samples per set (got %lld and %lld)",
                        (long long)na, (long long)nb);
    for (int64_t i = 0; i < na * dim; i++)
        if (!isfinite(a[i])) return nb__fail(NB_ERR_NONFINITE, "frechet_distance: feature %lld of the first set is not finite", (long long)i);
    for (int64_t i = 0; i < nb * dim; i++)
        if (!isfinite(b[i])) return nb__fail(NB_ERR_NONFINITE, "frechet_distance: feature %lld of the second set is not finite", (long long)i);
    size_t d2 = (size_t)dim * dim;
    double *mem = NB_MALLOC(sizeof(double) * (5 * d2 + 3 * (size_t)dim));
    if (!mem) return nb__fail(NB_ERR_NOMEM, "frechet_distance: out of memory");
    double *sa = mem, *sb = sa + d2, *v = sb + d2, *root = v + d2, *tmp = root + d2;
    double *mua = tmp + d2, *mub = mua + dim, *ev = mub + dim;
    mean_cov(a, na, dim, mua, sa);
    mean_cov(b, nb, dim, mub, sb);
    double dist = 0, tr = 0;
    for (int j = 0; j < dim; j++) {
        dist += (mua[j] - mub[j]) * (mua[j] - mub[j]);
        tr += sa[(size_t)j * dim + j] + sb[(size_t)j * dim + j];
    }
    /* sqrt(S_a) = V diag(sqrt(l)) V^T; S_a is consumed by the decomposition. */
    jacobi_eigen(sa, dim, ev, v);
    for (int i = 0; i < dim; i++)
        for (int j = 0; j < dim; j++) {
            double s = 0;
            for (int k = 0; k < dim; k++) s += v[(size_t)i * dim + k] * sqrt(fmax(ev[k], 0)) * v[(size_t)j * dim + k];
            root[(size_t)i * dim + j] = s;
        }
    /* tr sqrt(S_a S_b) = tr sqrt(sqrt(S_a) S_b sqrt(S_a)): the same
     * eigenvalues, but of a symmetric positive semi-definite matrix. */
    matmul_sq(root, sb, tmp, dim);
    matmul_sq(tmp, root, sb, dim);
    for (int i = 0; i < dim; i++)
        for (int j = i + 1; j < dim; j++) {   /* symmetric up to rounding: make it exact */
            double m = 0.5 * (sb[(size_t)i * dim + j] + sb[(size_t)j * dim + i]);
            sb[(size_t)i * dim + j] = sb[(size_t)j * dim + i] = m;
        }
    jacobi_eigen(sb, dim, ev, v);
    double trroot = 0;
    for (int i = 0; i < dim; i++) trroot += sqrt(fmax(ev[i], 0));
    NB_FREE(mem);
    *out = fmax(dist + tr - 2 * trroot, 0);   /* equal sets may round to -1e-12 */
    return NB_OK;
}

/* ---- the classifier ----------------------------------------------------------- */

#define NB__CLASSIFY_BATCH 500

nb_status nb_classifier_run(nb_model *m, nb_ctx *ctx, const float *images, int64_t n, const int shape[3],
                            float *features, int *nfeat, float *probs, int nclasses)
{
    if (!m || !ctx || !images || !shape || n < 0 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1)
        return nb__fail(NB_ERR_ARG, "classifier_run: NULL argument or bad size");
    nb_module *root = m->root;
    if (!root || strcmp(root->vt->kind, "Sequential") || root->nchildren < 2)
        return nb__fail(NB_ERR_ARG, "classifier_run: model '%s' is not a Sequential of two or more layers", m->name);
    int64_t per = (int64_t)shape[0] * shape[1] * shape[2];
    int was_training = m->training, grad = nb_set_grad_enabled(ctx, 0);
    nb_model_train(m, 0);
    nb_status s = NB_OK;
    for (int64_t i0 = 0; i0 < n && !s; i0 += NB__CLASSIFY_BATCH) {
        int64_t bn = n - i0 < NB__CLASSIFY_BATCH ? n - i0 : NB__CLASSIFY_BATCH;
        nb_ctx_reset(ctx);
        nb_tensor *x = nb_tensor_from(ctx, NB_SHAPE(bn, shape[0], shape[1], shape[2]), images + i0 * per);
        for (int k = 0; k + 1 < root->nchildren && x; k++) x = root->children[k]->vt->forward(root->children[k], ctx, x);
        nb_tensor *logits = x ? root->children[root->nchildren - 1]->vt->forward(root->children[root->nchildren - 1], ctx, x) : NULL;
        nb_tensor *p = nb_softmax(ctx, logits, -1);
        if (!p) {
            s = nb_ctx_status(ctx) ? nb_ctx_status(ctx) : NB_ERR_STATE;
            break;
        }
        int64_t f = nb_tensor_numel(x) / bn;
        if (nfeat) *nfeat = (int)f;
        if (p->ndim != 2 || p->shape[1] != nclasses) {
            s = nb__fail(NB_ERR_SHAPE, "classifier_run: model '%s' gives %lld outputs per image, expected %d classes",
                         m->name, (long long)(nb_tensor_numel(p) / bn), nclasses);
            break;
        }
        if (features) nb_tensor_copy_out(x, features + i0 * f);
        if (probs) nb_tensor_copy_out(p, probs + i0 * nclasses);
    }
    nb_ctx_reset(ctx);
    nb_model_train(m, was_training);
    nb_set_grad_enabled(ctx, grad);
    return s;
}
