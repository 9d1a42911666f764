/* nabla/io.h — safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors): 8-byte little-endian
 * header length N, N bytes of JSON {"name": {"dtype","shape","data_offsets"},
 * "__metadata__": {str: str}}, then the byte buffer. The reader validates the
 * header strictly and never trusts a size it has not checked against the file;
 * each violation has its own message (nb_last_error) and status
 * NB_ERR_FORMAT. Tensors are converted to float32 on load: F32, F16, BF16,
 * F64, and the integer dtypes of PyTorch state_dicts (I8..I64, U8..U64,
 * BOOL; BatchNorm's num_batches_tracked is I64), which are exact up to 2^24;
 * the 8-bit float formats are refused. Memory stays proportional to the file:
 * the header's records, plus 4 bytes per element of data. Writing is atomic: a temporary file in the same directory, fsync,
 * rename, so a good file is never left half-written (a new file gets mode
 * 0644, a replaced one keeps its mode; a symlink at path is replaced). */
#ifndef NABLA_IO_H
#define NABLA_IO_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NB_SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u) /* as the reference */

typedef struct nb_st_tensor {
    char    *name;
    char     dtype[8];                 /* as in the file: "F32", "F16", "I64", ... */
    int      ndim;
    int64_t  shape[NB_MAX_DIMS];
    int64_t  numel;
    float   *data;                     /* numel floats, converted; NULL if numel == 0
                                          or read by nb_safetensors_load_header */
} nb_st_tensor;

/* Made only by nb_safetensors_parse/load (it carries private fields). */
typedef struct nb_safetensors {
    int           n;
    nb_st_tensor *tensors;             /* in file order of data offsets; NULL if n == 0 */
    int           nmeta;
    char        **meta_keys, **meta_values;
} nb_safetensors;

/* Read and validate a whole file; *out owned by the caller (nb_safetensors_free). */
nb_status nb_safetensors_load(const char *path, nb_safetensors **out);
/* Names, dtypes, shapes and metadata only (every data NULL), after the same
 * validation of the header against the file's size: a cheap look at what a
 * file holds before deciding how to load it. */
nb_status nb_safetensors_load_header(const char *path, nb_safetensors **out);
/* The same as nb_safetensors_load from memory (what the fuzz target drives). */
nb_status nb_safetensors_parse(const void *buf, size_t len, nb_safetensors **out);
void      nb_safetensors_free(nb_safetensors *f);
const nb_st_tensor *nb_safetensors_find(const nb_safetensors *f, const char *name);
const char *nb_safetensors_meta(const nb_safetensors *f, const char *key); /* NULL if absent */

typedef enum nb_st_dtype { NB_ST_F32 = 0, NB_ST_F16, NB_ST_BF16 } nb_st_dtype;

typedef struct nb_st_entry {
    const char    *name;
    int            ndim;
    const int64_t *shape;
    const float   *data;               /* numel floats, contiguous */
} nb_st_entry;

/* Write n tensors (names unique, valid UTF-8, not "__metadata__") in dtype, with metadata pairs
 * meta_kv[2*i] = key, meta_kv[2*i+1] = value (nmeta pairs, may be 0). The file
 * appears complete or not at all, so several groups of tensors (weights,
 * optimizer moments, ...) saved in one call under prefixed names, with
 * scalars such as step counts or generator state as metadata strings, make
 * one atomic checkpoint. */
nb_status nb_safetensors_save(const char *path, const nb_st_entry *e, int n, nb_st_dtype dtype,
                              const char *const *meta_kv, int nmeta);

#ifdef __cplusplus
}
#endif
#endif
