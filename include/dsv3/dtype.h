/* Tensor element types (safetensors dtype strings) and scalar conversions. */
#ifndef DSV3_DTYPE_H
#define DSV3_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    DSV3_F32 = 0,
    DSV3_F16,
    DSV3_BF16,
    DSV3_F64,
    DSV3_F8_E4M3,
    DSV3_F8_E5M2,
    DSV3_I64,
    DSV3_I32,
    DSV3_I16,
    DSV3_I8,
    DSV3_U64,
    DSV3_U32,
    DSV3_U16,
    DSV3_U8,
    DSV3_BOOL,
    DSV3_DTYPE_COUNT
} dsv3_dtype;

/* Bytes per element. */
size_t dsv3_dtype_size(dsv3_dtype dt);
/* safetensors name ("BF16", "F8_E4M3", ...). */
const char *dsv3_dtype_name(dsv3_dtype dt);
/* Parses a safetensors dtype name; returns 0 on success, -1 if unknown. */
int dsv3_dtype_parse(const char *name, dsv3_dtype *out);

/* bf16 = upper 16 bits of an IEEE f32 (spec §7.18). */
static inline float dsv3_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* Round-to-nearest-even; NaN stays a quiet NaN. */
static inline uint16_t dsv3_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float dsv3_f16_to_f32(uint16_t h);
uint16_t dsv3_f32_to_f16(float f);

/* FP8 decode tables (256 entries each; spec §2.4: E4M3FN has no Inf, 0x7F/0xFF are NaN, max 448). */
extern const float *dsv3_fp8_e4m3_table;
extern const float *dsv3_fp8_e5m2_table;
float dsv3_fp8_e4m3_to_f32(uint8_t b);
float dsv3_fp8_e5m2_to_f32(uint8_t b);
/* Round-to-nearest-even, saturating to +-448 (used for quantisation and by tests). */
uint8_t dsv3_f32_to_fp8_e4m3(float f);

/* Converts n elements of dtype dt at src to f32 (float types only; returns -1 otherwise). */
int dsv3_convert_to_f32(dsv3_dtype dt, const void *src, float *dst, size_t n);

#endif
