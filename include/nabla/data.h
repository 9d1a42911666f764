/* nabla/data.h — IDX files, Fashion-MNIST, mini-batch loaders. */
#ifndef NABLA_DATA_H
#define NABLA_DATA_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX (LeCun's MNIST format), raw or gzip-compressed ------------------
 * Magic 0x00 0x00 type ndim, then ndim big-endian uint32 sizes, then the
 * values big-endian. Types: 0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
 * 0x0D float32, 0x0E float64. The reader checks the magic, the type, the
 * dimensions (none zero-overflowing, product bounded) and that the payload
 * length equals the product exactly; errors are NB_ERR_FORMAT with a message
 * naming the problem, a missing file NB_ERR_NOTFOUND. At most 2^31 values; a
 * zero dimension gives an empty array (count 0). */
typedef struct nb_idx {
    int      type;                      /* 0x08 ... 0x0E */
    int      ndim;
    int64_t  dims[NB_MAX_DIMS];
    int64_t  count;                     /* product of dims */
    float   *values;                    /* count values converted to float */
} nb_idx;

nb_status nb_idx_load(const char *path, nb_idx **out);   /* gzip detected by its magic */
nb_status nb_idx_parse(const void *buf, size_t len, nb_idx **out); /* raw (not gzip) bytes */
void      nb_idx_free(nb_idx *x);

/* ---- datasets -------------------------------------------------------------- */
typedef struct nb_dataset {
    int64_t  n;                         /* samples */
    int      c, h, w;                   /* per-sample shape (C,H,W) */
    float   *x;                         /* n*c*h*w values in [0,1] (pixel/255) */
    int32_t *y;                         /* n labels in [0, nclasses) */
    int      nclasses;
} nb_dataset;

/* The directory used when dir is NULL: $NABLA_FASHION_MNIST if set, else
 * /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist). */
const char *nb_fashion_mnist_default_dir(void);
/* Load the train (60,000) or test (10,000) split from dir (NULL: default).
 * Files {train,t10k}-{images-idx3,labels-idx1}-ubyte(.gz). A missing file is
 * NB_ERR_NOTFOUND with a message naming the file and the Debian package. */
nb_status nb_fashion_mnist_load(const char *dir, int train, nb_dataset **out);
/* Build a dataset from an image IDX (n,h,w) and a label IDX (n); copies. */
nb_status nb_dataset_from_idx(const nb_idx *images, const nb_idx *labels, int nclasses,
                              nb_dataset **out);
/* Keep only the first n samples (no copy, no-op if n >= size). */
void      nb_dataset_truncate(nb_dataset *d, int64_t n);
void      nb_dataset_free(nb_dataset *d);
extern const char *const nb_fashion_mnist_classes[10];

/* ---- mini-batches ---------------------------------------------------------
 * A loader walks a dataset in batches; with shuffle, each epoch uses a new
 * permutation drawn from its own xoshiro256** generator seeded at creation,
 * so the order depends only on the seed and the epoch. The last partial
 * batch is returned unless drop_last. The loader keeps a pointer to the
 * dataset, which must outlive it and not be truncated meanwhile. Created ready
 * for its first epoch. */
typedef struct nb_loader nb_loader;

typedef struct nb_batch {
    nb_tensor     *x;                   /* (n, c, h, w) in the ctx arena */
    const int32_t *y;                   /* n labels, valid until the next call */
    int64_t        n;                   /* 0 at the end of the epoch */
} nb_batch;

nb_status nb_loader_new(const nb_dataset *d, int64_t batch, int shuffle, int drop_last,
                        uint64_t seed, nb_loader **out);
void      nb_loader_free(nb_loader *l);
int64_t   nb_loader_num_batches(const nb_loader *l);
/* Start the next epoch (a new permutation when shuffling). */
void      nb_loader_start_epoch(nb_loader *l);
/* The next batch of the current epoch, or b->n == 0 at its end. */
nb_status nb_loader_next(nb_loader *l, nb_ctx *ctx, nb_batch *b);

/* Where a loader stands, for checkpoints: the generator as it was before the
 * current epoch's shuffle (so the order can be drawn again) and the position
 * in that order; n and batch identify the loader it belongs to. */
typedef struct nb_loader_state {
    nb_rng  rng;
    int64_t pos, n, batch;
} nb_loader_state;

void      nb_loader_get_state(const nb_loader *l, nb_loader_state *st);
/* Continue from st: the epoch's order is drawn again and the next batch is
 * the one that followed when st was taken. NB_ERR_ARG (l untouched) when st
 * belongs to a loader with another size or batch, or pos is outside [0, n]. */
nb_status nb_loader_set_state(nb_loader *l, const nb_loader_state *st);

/* ---- augmentation (src/data/augment.c) ------------------------------------
 * Random crop with zero padding (torchvision RandomCrop(size, padding=p):
 * pad by p on every side, then cut the original size at a uniform offset)
 * and horizontal flip with probability 1/2, in place on a batch. Each
 * sample's choices are a hash of a key and its position in the epoch's order,
 * so they are reproducible, independent of the thread count, and a run
 * resumed from a checkpoint (loader state restored) draws the same ones. */
typedef struct nb_augment {
    int crop_padding;                   /* p: shifts in [-p, p] each way; 0 = no crop */
    int hflip;                          /* 1: flip left-right half of the time */
} nb_augment;

/* "crop:4,flip", "flip", "crop:2", "" (nothing); NB_ERR_ARG names a bad entry
 * (padding in [0, 1024]). */
nb_status nb_augment_parse(const char *spec, nb_augment *a);
/* The choices for the sample at `position` under `key`: output pixel (r, c)
 * takes input pixel (r + dy, c' + dx), c' = W-1-c when flip else c, and 0
 * where that lies outside the image. */
void      nb_augment_draw(const nb_augment *a, uint64_t key, int64_t position, int *dy, int *dx, int *flip);
/* Augment x (N,C,H,W), contiguous, in place: sample i as drawn for position
 * first + i. NB_ERR_SHAPE for another layout. */
nb_status nb_augment_apply(const nb_augment *a, uint64_t key, int64_t first, nb_tensor *x);
/* nb_loader_next, then the batch augmented (a may be NULL: none) with a key
 * drawn from the loader's state (its generator before the epoch's shuffle)
 * and the batch's position in the epoch. With shuffle every epoch gets new
 * choices; without it every epoch repeats the same ones. */
nb_status nb_loader_next_augmented(nb_loader *l, const nb_augment *a, nb_ctx *ctx, nb_batch *b);

#ifdef __cplusplus
}
#endif
#endif
