/* Vectorisable float math for the ops: plain arithmetic and bit operations
 * that GCC vectorises (glibc's expf/tanhf stop it). Choices use sel() (bit
 * masks) rather than ?:, because GCC will not if-convert a ?: that guards
 * floating-point arithmetic without -fno-trapping-math. Checked over every
 * float of the domain against double precision: exp_nonpos within 1 ulp. */
#ifndef NABLA_FASTMATH_H
#define NABLA_FASTMATH_H
#include <stdint.h>
#include <string.h>

/* c ? a : b without a branch. */
static inline float sel(int c, float a, float b)
{
    uint32_t ua, ub, m = 0u - (uint32_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

/* e^x for x <= 0 (the only exponent softmax, sigmoid and tanh need): Cephes'
 * expf reduction and polynomial; 0 below -87.34 (where e^x leaves the normal
 * floats); NaN gives NaN. */
static inline float exp_nonpos(float x)
{
    const float lo = -87.33654f, magic = 12582912.0f;  /* 1.5 * 2^23 */
    float xc = sel(x < lo, lo, x);
    float k = xc * 1.44269504088896341f + magic;       /* round(x / ln 2) + magic */
    float n = k - magic;
    float r = xc - n * 0.693359375f;                   /* ln 2 in two parts */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t kb, sb;                                   /* 2^n from the low bits of k */
    memcpy(&kb, &k, sizeof kb);
    sb = (kb - 0x4B400000u + 127u) << 23;
    float s;
    memcpy(&s, &sb, sizeof s);
    return sel(x < lo, 0.0f, p * s);
}

#endif
