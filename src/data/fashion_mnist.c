/* Datasets in memory: built from IDX arrays, and the Fashion-MNIST splits
 * (Zalando's 28x28 grey clothes, 10 classes) from the Debian package
 * dataset-fashion-mnist or any directory holding the four IDX files. */
#include "../core/internal.h"
#include <stdio.h>

#define NB__FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define NB__FMNIST_HINT "install the Debian package dataset-fashion-mnist " \
                        "(apt-get install dataset-fashion-mnist) or set NABLA_FASHION_MNIST"

const char *const nb_fashion_mnist_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

const char *nb_fashion_mnist_default_dir(void)
{
    const char *e = getenv("NABLA_FASHION_MNIST");
    return e && *e ? e : NB__FMNIST_DIR;
}

/* Check the labels and fill y; x is filled by the caller. */
static nb_status labels_to(const nb_idx *labels, int64_t n, int nclasses, int32_t *y)
{
    for (int64_t i = 0; i < n; i++) {
        float v = labels->values[i];
        if (!(v >= 0 && v < (float)nclasses) || v != (float)(int32_t)v)
            return nb__fail(NB_ERR_FORMAT, "dataset: label %g of sample %lld is not a class in [0, %d)",
                            (double)v, (long long)i, nclasses);
        y[i] = (int32_t)v;
    }
    return NB_OK;
}

/* Shapes of an image IDX (n,h,w) or (n,c,h,w) and a label IDX (n). */
static nb_status check_shapes(const nb_idx *images, const nb_idx *labels, int nclasses)
{
    if (!images || !labels) return nb__fail(NB_ERR_ARG, "dataset: images or labels is NULL");
    if (nclasses <= 0) return nb__fail(NB_ERR_ARG, "dataset: nclasses is %d", nclasses);
    if (images->ndim != 3 && images->ndim != 4)
        return nb__fail(NB_ERR_SHAPE, "dataset: images have %d dimensions, expected (n,h,w) or (n,c,h,w)",
                        images->ndim);
    if (labels->ndim != 1)
        return nb__fail(NB_ERR_SHAPE, "dataset: labels have %d dimensions, expected (n)", labels->ndim);
    if (labels->dims[0] != images->dims[0])
        return nb__fail(NB_ERR_SHAPE, "dataset: %lld images but %lld labels",
                        (long long)images->dims[0], (long long)labels->dims[0]);
    for (int i = 1; i < images->ndim; i++)
        if (images->dims[i] <= 0 || images->dims[i] > INT32_MAX)
            return nb__fail(NB_ERR_SHAPE, "dataset: image dimension %d is %lld", i, (long long)images->dims[i]);
    return NB_OK;
}

static nb_dataset *dataset_alloc(const nb_idx *images, int nclasses)
{
    nb_dataset *d = NB_MALLOC(sizeof *d);
    if (!d) return NULL;
    memset(d, 0, sizeof *d);
    d->n = images->dims[0];
    d->c = images->ndim == 4 ? (int)images->dims[1] : 1;
    d->h = (int)images->dims[images->ndim - 2];
    d->w = (int)images->dims[images->ndim - 1];
    d->nclasses = nclasses;
    d->y = NB_MALLOC((size_t)(d->n ? d->n : 1) * sizeof(int32_t));
    if (!d->y) {
        NB_FREE(d);
        return NULL;
    }
    return d;
}

/* Images of type ubyte are divided by 255 (as torchvision's ToTensor); other types are copied as they are. */
nb_status nb_dataset_from_idx(const nb_idx *images, const nb_idx *labels, int nclasses, nb_dataset **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "dataset: out is NULL");
    *out = NULL;
    nb_status st = check_shapes(images, labels, nclasses);
    if (st) return st;
    nb_dataset *d = dataset_alloc(images, nclasses);
    if (!d) return nb__fail(NB_ERR_NOMEM, "dataset: out of memory");
    size_t count = (size_t)images->count;
    d->x = NB_MALLOC((count ? count : 1) * sizeof(float));
    if (!d->x) {
        nb_dataset_free(d);
        return nb__fail(NB_ERR_NOMEM, "dataset: cannot allocate %zu values", count);
    }
    if (images->type == 0x08) {
        for (size_t i = 0; i < count; i++) d->x[i] = images->values[i] / 255.0f;
    } else if (count) {
        memcpy(d->x, images->values, count * sizeof(float));
    }
    st = labels_to(labels, d->n, nclasses, d->y);
    if (st) {
        nb_dataset_free(d);
        return st;
    }
    *out = d;
    return NB_OK;
}

void nb_dataset_truncate(nb_dataset *d, int64_t n)
{
    if (!d) return;
    if (n < 0) n = 0;
    if (n < d->n) d->n = n;
}

void nb_dataset_free(nb_dataset *d)
{
    if (!d) return;
    NB_FREE(d->x);
    NB_FREE(d->y);
    NB_FREE(d);
}

/* Load dir/name, else dir/name.gz; NB_ERR_NOTFOUND names both and the package. */
static nb_status load_file(const char *dir, const char *name, nb_idx **out)
{
    char path[1024], gz[1030];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return nb__fail(NB_ERR_ARG, "fashion-mnist: directory name too long");
    snprintf(gz, sizeof gz, "%s.gz", path);
    nb_status st = nb_idx_load(path, out);
    if (st != NB_ERR_NOTFOUND) return st;
    st = nb_idx_load(gz, out);
    if (st != NB_ERR_NOTFOUND) return st;
    return nb__fail(NB_ERR_NOTFOUND, "fashion-mnist: %s not found (nor %s): " NB__FMNIST_HINT, gz, path);
}

nb_status nb_fashion_mnist_load(const char *dir, int train, nb_dataset **out)
{
    if (!out) return nb__fail(NB_ERR_ARG, "fashion-mnist: out is NULL");
    *out = NULL;
    if (!dir) dir = nb_fashion_mnist_default_dir();
    const char *pre = train ? "train" : "t10k";
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", pre);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", pre);

    nb_idx *images = NULL, *labels = NULL;
    nb_status st = load_file(dir, lname, &labels);
    if (!st) st = load_file(dir, iname, &images);
    if (st) goto done;
    if (images->type != 0x08 || images->ndim != 3 || images->dims[1] != 28 || images->dims[2] != 28) {
        char shape[96];
        int k = snprintf(shape, sizeof shape, "(");
        for (int i = 0; i < images->ndim && k < (int)sizeof shape; i++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, i ? ",%lld" : "%lld", (long long)images->dims[i]);
        if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, ")");
        st = nb__fail(NB_ERR_FORMAT, "fashion-mnist: %s/%s holds %s values of type 0x%02x, expected (n,28,28) ubyte",
                      dir, iname, shape, images->type);
        goto done;
    }
    if (labels->type != 0x08 || labels->ndim != 1) {
        st = nb__fail(NB_ERR_FORMAT, "fashion-mnist: %s/%s is not a vector of ubyte labels", dir, lname);
        goto done;
    }
    if (labels->dims[0] != images->dims[0]) {
        st = nb__fail(NB_ERR_FORMAT, "fashion-mnist: %s has %lld images but %lld labels", dir,
                      (long long)images->dims[0], (long long)labels->dims[0]);
        goto done;
    }
    /* Like nb_dataset_from_idx, but scales the image values in place and
     * keeps them, which spares a copy of 188 MB for the train split. */
    nb_dataset *d = dataset_alloc(images, 10);
    if (!d) {
        st = nb__fail(NB_ERR_NOMEM, "fashion-mnist: out of memory");
        goto done;
    }
    st = labels_to(labels, d->n, 10, d->y);
    if (st) {
        nb_dataset_free(d);
        goto done;
    }
    for (int64_t i = 0; i < images->count; i++) images->values[i] /= 255.0f;
    d->x = images->values;
    images->values = NULL;
    *out = d;
done:
    nb_idx_free(images);
    nb_idx_free(labels);
    return st;
}
