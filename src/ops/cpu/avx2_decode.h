/* AVX2 helpers shared by the CPU matmul (matmul_avx2.c) and the MLA kernels (model/mla_avx2.c);
 * include after `#pragma GCC target("avx2,fma,f16c")`. The weight decoders return exactly the
 * reference decode's values (cpu_kernels.h). */
#ifndef DSV3_OPS_CPU_AVX2_DECODE_H
#define DSV3_OPS_CPU_AVX2_DECODE_H

#include <immintrin.h>
#include <stdint.h>

/* Keeps v in a register: gcc would otherwise fold a reused load into every FMA that reads it (one
 * load per FMA: load bound at two 256-bit loads per cycle). */
#define DSV3_AVX2_PIN(v) __asm__("" : "+x"(v))

/* 8 BF16 weights at p as f32 (exact widening). */
static inline __attribute__((always_inline)) __m256 dsv3_avx2_bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* 8 E4M3 codes at p as e4m3 * 2^-120 in f32 lanes, exactly (subnormal codes become f32 subnormals):
 * the sign-extended byte << 20 puts the sign at bit 31 and the 7 exponent/mantissa bits at 26..20.
 * Times (block scale * 2^120), one rounding: the reference's lut[q] * scale, for codes without NaN
 * (0x7f / 0xff) and scales whose 2^120 multiple is finite (DSV3_FP8_FOLD120). */
static inline __attribute__((always_inline)) __m256 dsv3_avx2_e4m3x8_scaled(const uint8_t *p, __m256 scale_2p120) {
    const __m256i v = _mm256_slli_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)), 20);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0x87f00000u))), scale_2p120);
}

#endif
