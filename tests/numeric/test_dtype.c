/* bf16/f16/fp8 conversions (spec §2.4, §7.6, §7.18). */
#include <string.h>

#include "../test.h"
#include "dsv3/dtype.h"

TEST(dtype_names_sizes) {
    dsv3_dtype d;
    CHECK(dsv3_dtype_parse("F8_E4M3", &d) == 0 && d == DSV3_F8_E4M3 && dsv3_dtype_size(d) == 1);
    CHECK(dsv3_dtype_parse("BF16", &d) == 0 && dsv3_dtype_size(d) == 2);
    CHECK(dsv3_dtype_parse("I64", &d) == 0 && dsv3_dtype_size(d) == 8);
    CHECK(dsv3_dtype_parse("bf16", &d) != 0);
    CHECK(dsv3_dtype_parse("F8_E8M0", &d) != 0);
}

TEST(fp8_e4m3_table) {
    /* spec §2.4: max finite 0x7E = 448, 0x7F/0xFF NaN, no Inf, smallest subnormal 2^-9 */
    CHECK(dsv3_fp8_e4m3_to_f32(0x7E) == 448.0f);
    CHECK(dsv3_fp8_e4m3_to_f32(0xFE) == -448.0f);
    CHECK(isnan(dsv3_fp8_e4m3_to_f32(0x7F)) && isnan(dsv3_fp8_e4m3_to_f32(0xFF)));
    CHECK(dsv3_fp8_e4m3_to_f32(0x01) == ldexpf(1.0f, -9));
    CHECK(dsv3_fp8_e4m3_to_f32(0x08) == ldexpf(1.0f, -6));
    CHECK(dsv3_fp8_e4m3_to_f32(0x38) == 1.0f);
    CHECK(dsv3_fp8_e4m3_to_f32(0x80) == 0.0f && signbit(dsv3_fp8_e4m3_to_f32(0x80)));
    for (int i = 0; i < 256; i++) {
        if ((i & 0x7f) == 0x7f) continue;
        CHECK(isfinite(dsv3_fp8_e4m3_to_f32((uint8_t)i)));
        CHECK(dsv3_f32_to_fp8_e4m3(dsv3_fp8_e4m3_to_f32((uint8_t)i)) == (uint8_t)i); /* exact round trip */
    }
    CHECK(dsv3_f32_to_fp8_e4m3(1000.0f) == 0x7E); /* saturates */
}

TEST(fp8_e5m2_table) {
    CHECK(dsv3_fp8_e5m2_to_f32(0x3C) == 1.0f);
    CHECK(isinf(dsv3_fp8_e5m2_to_f32(0x7C)));
    CHECK(isnan(dsv3_fp8_e5m2_to_f32(0x7D)));
    CHECK(dsv3_fp8_e5m2_to_f32(0x7B) == 57344.0f);
}

TEST(bf16_round_to_nearest_even) {
    CHECK(dsv3_f32_to_bf16(1.0f) == 0x3F80);
    uint32_t u = 0x3F808000u; /* exactly halfway between 0x3F80 and 0x3F81: ties to even */
    float f;
    memcpy(&f, &u, 4);
    CHECK(dsv3_f32_to_bf16(f) == 0x3F80);
    u = 0x3F818000u;
    memcpy(&f, &u, 4);
    CHECK(dsv3_f32_to_bf16(f) == 0x3F82);
    CHECK(dsv3_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(isnan(dsv3_bf16_to_f32(dsv3_f32_to_bf16(NAN))));
}

TEST(f16_conversions) {
    CHECK(dsv3_f16_to_f32(0x3C00) == 1.0f);
    CHECK(dsv3_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(dsv3_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(isinf(dsv3_f16_to_f32(0x7C00)));
    for (int i = 0; i < 0x7C00; i += 7) CHECK(dsv3_f32_to_f16(dsv3_f16_to_f32((uint16_t)i)) == i);
}
