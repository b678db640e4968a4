/* The fast E4M3 encoder (fp8.h) against the exhaustive reference search in
 * dtype.h: every code, every rounding boundary and its neighbours, subnormals,
 * saturation, signed zero/NaN/Inf, a strided sweep and random bit patterns. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "../test.h"
#include "dsv3/dtype.h"
#include "dsv3/fp8.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Compares on f and -f; returns 0 on mismatch (after reporting). */
static int same(float f) {
    for (int s = 0; s < 2; s++, f = -f) {
        uint8_t a = dsv3_fp8_e4m3_encode(f), b = dsv3_f32_to_fp8_e4m3(f);
        if (a != b) {
            test_fail_at(__FILE__, __LINE__, "encode(%.9g) = 0x%02x, reference 0x%02x", (double)f, a, b);
            return 0;
        }
    }
    return 1;
}

TEST(init_fp8_encode_special_values) {
    CHECK(dsv3_fp8_e4m3_encode(0.0f) == 0x00);
    CHECK(dsv3_fp8_e4m3_encode(-0.0f) == 0x80);
    CHECK(dsv3_fp8_e4m3_encode(448.0f) == 0x7e);
    CHECK(dsv3_fp8_e4m3_encode(-448.0f) == 0xfe);
    CHECK(dsv3_fp8_e4m3_encode(1e30f) == 0x7e);
    CHECK(dsv3_fp8_e4m3_encode(INFINITY) == 0x7e);
    CHECK(dsv3_fp8_e4m3_encode(-INFINITY) == 0xfe);
    CHECK(dsv3_fp8_e4m3_encode(NAN) == 0x7f);
    CHECK(dsv3_fp8_e4m3_encode(-NAN) == 0x7f);
    CHECK(dsv3_fp8_e4m3_encode(1.0f) == 0x38);
    CHECK(dsv3_fp8_e4m3_encode(0.001953125f) == 0x01);  /* 2^-9, smallest subnormal */
    CHECK(dsv3_fp8_e4m3_encode(0.0009765625f) == 0x00); /* 2^-10: tie between 0 and 2^-9 -> even (0) */
    CHECK(dsv3_fp8_e4m3_encode(0.0029296875f) == 0x02); /* 1.5 * 2^-9: tie -> even (2) */
    const float specials[] = {0.0f, INFINITY, NAN, FLT_MIN, FLT_MAX, FLT_TRUE_MIN, 1e-40f, 1e-30f, 447.99997f,
                              448.0f, 448.00003f, 463.99997f, 464.0f, 464.00003f, 480.0f, 1e-3f, 1.0f / 3.0f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) CHECK(same(specials[i]));
}

/* Each code value, each midpoint between neighbours, and the f32 values a few ulps around them. */
TEST(init_fp8_encode_boundaries) {
    float vals[128];
    for (int c = 0; c <= 0x7e; c++) vals[c] = dsv3_fp8_e4m3_to_f32((uint8_t)c);
    vals[127] = 480.0f; /* virtual next value above 448: midpoint 464 */
    for (int c = 0; c < 127; c++) {
        float pts[2] = {vals[c], (vals[c] + vals[c + 1]) / 2}; /* midpoints are exact in f32 */
        for (int k = 0; k < 2; k++) {
            float up = pts[k], dn = pts[k];
            CHECK(same(pts[k]));
            for (int j = 0; j < 4; j++) {
                up = nextafterf(up, INFINITY);
                dn = nextafterf(dn, -INFINITY);
                CHECK(same(up));
                CHECK(same(dn));
            }
        }
    }
}

/* Every f32 subnormal class and a strided sweep over all magnitudes that map to finite codes. */
TEST(init_fp8_encode_sweep) {
    for (uint32_t u = 0; u < 0x00800000u; u += 4099) CHECK(same(from_bits(u)));
    for (uint32_t u = 0x00800000u; u < 0x44000000u; u += 1021) {
        if (u < 0x39000000u) u += 65536 * 61; /* far below 2^-13 everything is 0: sample sparsely */
        CHECK(same(from_bits(u)));
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 100000; i++) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        uint32_t u = (uint32_t)((s * 0x2545f4914f6cdd1dull) >> 32);
        CHECK(same(from_bits(u)));
        /* random values in the interesting range [2^-11, 512) */
        CHECK(same(ldexpf((float)(u >> 8) / 16777216.0f, (int)(u & 31) - 11)));
    }
}

TEST(init_fp8_encode_n) {
    float src[5] = {1.0f, -2.0f, 0.5f, 448.0f, 1e-6f};
    uint8_t dst[5];
    dsv3_fp8_e4m3_encode_n(src, 2.0f, dst, 5);
    for (int i = 0; i < 5; i++) CHECK(dst[i] == dsv3_f32_to_fp8_e4m3(src[i] / 2.0f));
}
