/* Fuzz target for the safetensors reader. Built two ways: with libFuzzer
 * (`make fuzz`, clang) and with tests/fuzz/replay.c as main() (`make test`),
 * which replays the corpus and deterministic mutations of it.
 * Whatever the input, nb_safetensors_parse must return (no crash, no leak
 * under ASan); on success the result must be self-consistent, on failure
 * there must be a message. A violated invariant traps, which both drivers
 * report as a crash. */
#include "nabla.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_safetensors *f = (nb_safetensors *)1;
    nb_status s = nb_safetensors_parse(data, size, &f);
    if (s != NB_OK) {
        if (f != NULL || !nb_last_error()[0]) __builtin_trap();
        return 0;
    }
    if (!f || f->n < 0 || f->nmeta < 0) __builtin_trap();
    volatile float sink = 0;
    for (int i = 0; i < f->n; i++) {
        const nb_st_tensor *t = &f->tensors[i];
        int64_t numel = 1;
        if (!t->name || t->ndim < 0 || t->ndim > NB_MAX_DIMS) __builtin_trap();
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        if (numel != t->numel || (numel > 0 && !t->data)) __builtin_trap();
        /* Converted data fits in the file: at most 2 floats per input byte. */
        if ((uint64_t)numel > size * 2) __builtin_trap();
        for (int64_t k = 0; k < numel; k++) sink += t->data[k]; /* touch every float */
        if (nb_safetensors_find(f, t->name) == NULL) __builtin_trap();
    }
    for (int i = 0; i < f->nmeta; i++)
        if (!f->meta_keys[i] || !f->meta_values[i] || !nb_safetensors_meta(f, f->meta_keys[i])) __builtin_trap();
    (void)sink;
    nb_safetensors_free(f);
    return 0;
}
