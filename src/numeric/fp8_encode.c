/* Fast round-to-nearest-even f32 -> FP8 E4M3FN (spec §2.4).
 *
 * E4M3FN: bias 7, normals 2^-6 .. 448 (0x7E), subnormals m * 2^-9 (m = 1..7),
 * no infinities, 0x7F/0xFF NaN. Magnitudes >= 448 saturate to 0x7E, matching
 * the reference search in dtype.c. */
#include "dsv3/fp8.h"

#include <math.h>
#include <string.h>

uint8_t dsv3_fp8_e4m3_encode(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7f;                 /* NaN (either sign) */
    if (a >= 0x43e00000u) return sign | 0x7e;         /* >= 448, incl. Inf: saturate */
    if (a >= 0x3c800000u) {                           /* >= 2^-6: normal in E4M3 */
        /* Keep 3 of the 23 mantissa bits with RNE on the 20 dropped bits; a carry
         * out of the mantissa correctly bumps the exponent. Rebias 127 -> 7. */
        uint32_t r = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
        return sign | (uint8_t)(r - (120u << 3));
    }
    /* Subnormal (or zero): code = RNE(|f| * 2^9) in 0..8; 8 is 0x08 = 2^-6, the
     * smallest normal, so the carry needs no special case. |f| < 2^-6 means
     * |f| * 2^9 < 8, and adding 2^23 rounds it to an integer with RNE (exact
     * otherwise: the sum stays below 2^24). */
    float x;
    memcpy(&x, &a, 4);
    float t = x * 512.0f + 8388608.0f;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    return sign | (uint8_t)(tb & 0xfu);
}

void dsv3_fp8_e4m3_encode_n(const float *src, float scale, uint8_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = dsv3_fp8_e4m3_encode(src[i] / scale);
}

int dsv3_fp8_scale_is_pow2(float s) {
    int e;
    return s > 0.0f && isfinite(s) && frexpf(s, &e) == 0.5f;
}

void dsv3_fp8_e4m3_quantize_rows(const float *src, int64_t nr, int64_t cols, int64_t block_c, uint8_t *dst,
                                 float *scales, int pow2_scales) {
    for (int64_t c0 = 0, cb = 0; c0 < cols; c0 += block_c, cb++) {
        int64_t nc = cols - c0 < block_c ? cols - c0 : block_c;
        float amax = 0.0f;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t j = 0; j < nc; j++) {
                float v = fabsf(src[r * cols + c0 + j]);
                amax = v > amax ? v : amax;
            }
        float s = (amax > 1e-12f ? amax : 1e-12f) / 448.0f;
        int e;
        if (pow2_scales && frexpf(s, &e) != 0.5f) s = ldexpf(1.0f, e); /* s = m * 2^e, 0.5 < m < 1: up to 2^e */
        scales[cb] = s;
        for (int64_t r = 0; r < nr; r++) dsv3_fp8_e4m3_encode_n(src + r * cols + c0, s, dst + r * cols + c0, (size_t)nc);
    }
}
