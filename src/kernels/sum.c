/* nb__sum16 (see simd.h): the row sum of the convolutions' bias gradients. */
#include "simd.h"

NB_CLONES float nb__sum16(const float *v, int64_t n)
{
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += v[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += v[i];
    return nb__sum_lanes16(acc);
}
