/* Fuzz target for the IDX reader: any bytes must give NB_OK with a consistent
 * array or a clean error, never a crash, a leak or an oversized allocation.
 * Raw bytes go through nb_idx_parse; the same bytes written to an in-memory
 * file go through nb_idx_load too, which reaches the gzip path when they
 * start with 1f 8b. */
#include "nabla.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void check(nb_status s, nb_idx *x)
{
    if (s != NB_OK) {
        if (x || !nb_last_error()[0]) abort();   /* failures leave no array and say why */
        return;
    }
    if (x->ndim < 1 || x->ndim > NB_MAX_DIMS || !x->values) abort();
    int64_t count = 1;   /* an empty array may have other huge dimensions */
    for (int i = 0; i < x->ndim; i++) count = x->dims[i] == 0 ? 0 : count;
    for (int i = 0; i < x->ndim && count; i++) {
        if (x->dims[i] < 0 || x->dims[i] > ((int64_t)1 << 31) / count) abort();
        count *= x->dims[i];
    }
    if (count != x->count) abort();
    volatile float sink = 0;
    for (int64_t i = 0; i < x->count; i++) sink += x->values[i];   /* every value was written */
    (void)sink;
    nb_idx_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_idx *x = NULL;
    nb_status s = nb_idx_parse(data, size, &x);
    check(s, x);

    int fd = memfd_create("fuzz_idx", 0);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    if (off == size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        x = NULL;
        s = nb_idx_load(path, &x);
        check(s, x);
    }
    close(fd);
    return 0;
}
