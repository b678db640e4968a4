#include "dsv3/dtype.h"

#include <math.h>

static const struct { const char *name; size_t size; } g_dtypes[DSV3_DTYPE_COUNT] = {
    [DSV3_F32] = {"F32", 4},       [DSV3_F16] = {"F16", 2},     [DSV3_BF16] = {"BF16", 2},
    [DSV3_F64] = {"F64", 8},       [DSV3_F8_E4M3] = {"F8_E4M3", 1}, [DSV3_F8_E5M2] = {"F8_E5M2", 1},
    [DSV3_I64] = {"I64", 8},       [DSV3_I32] = {"I32", 4},     [DSV3_I16] = {"I16", 2},
    [DSV3_I8] = {"I8", 1},         [DSV3_U64] = {"U64", 8},     [DSV3_U32] = {"U32", 4},
    [DSV3_U16] = {"U16", 2},       [DSV3_U8] = {"U8", 1},       [DSV3_BOOL] = {"BOOL", 1},
};

size_t dsv3_dtype_size(dsv3_dtype dt) { return (unsigned)dt < DSV3_DTYPE_COUNT ? g_dtypes[dt].size : 0; }
const char *dsv3_dtype_name(dsv3_dtype dt) { return (unsigned)dt < DSV3_DTYPE_COUNT ? g_dtypes[dt].name : "?"; }

int dsv3_dtype_parse(const char *name, dsv3_dtype *out) {
    for (int i = 0; i < DSV3_DTYPE_COUNT; i++)
        if (strcmp(name, g_dtypes[i].name) == 0) { *out = (dsv3_dtype)i; return 0; }
    return -1;
}

float dsv3_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    uint32_t u;
    if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dsv3_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00;
    if (a < 6.103515625e-05f) { /* subnormal: units of 2^-24, RNE via nearbyint */
        return sign | (uint16_t)nearbyintf(a * 16777216.0f);
    }
    uint32_t e = ((u >> 23) & 255) - 112, m = u & 0x7fffff;
    uint32_t r = (e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

static float g_e4m3[256], g_e5m2[256];
const float *dsv3_fp8_e4m3_table = g_e4m3;
const float *dsv3_fp8_e5m2_table = g_e5m2;

/* E4M3FN (spec §2.4): bias 7; E==0 subnormal m/8*2^-6; 0x7F/0xFF NaN; no Inf. */
static float decode_e4m3(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) v = ldexpf((float)m / 8.0f, -6);
    else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

/* E5M2 (IEEE-like): bias 15, exponent 31 is Inf/NaN. */
static float decode_e5m2(uint8_t b) {
    int s = b >> 7, e = (b >> 2) & 31, m = b & 3;
    float v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexpf((float)m / 4.0f, -14);
    else v = ldexpf(1.0f + (float)m / 4.0f, e - 15);
    return s ? -v : v;
}

__attribute__((constructor)) static void init_fp8_tables(void) {
    for (int i = 0; i < 256; i++) {
        g_e4m3[i] = decode_e4m3((uint8_t)i);
        g_e5m2[i] = decode_e5m2((uint8_t)i);
    }
}

float dsv3_fp8_e4m3_to_f32(uint8_t b) { return g_e4m3[b]; }
float dsv3_fp8_e5m2_to_f32(uint8_t b) { return g_e5m2[b]; }

uint8_t dsv3_f32_to_fp8_e4m3(float f) {
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    /* Exhaustive nearest search over the 127 finite magnitudes; ties to even code. */
    int best = 0;
    float bestd = INFINITY;
    for (int c = 0; c <= 0x7e; c++) {
        float d = fabsf(g_e4m3[c] - a);
        if (d < bestd || (d == bestd && (c & 1) == 0)) { bestd = d; best = c; }
    }
    return sign | (uint8_t)best;
}

int dsv3_convert_to_f32(dsv3_dtype dt, const void *src, float *dst, size_t n) {
    const uint8_t *p = (const uint8_t *)src;
    switch (dt) {
    case DSV3_F32: memcpy(dst, src, n * 4); return 0;
    case DSV3_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; }
        return 0;
    case DSV3_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = dsv3_bf16_to_f32(h); }
        return 0;
    case DSV3_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = dsv3_f16_to_f32(h); }
        return 0;
    case DSV3_F8_E4M3: for (size_t i = 0; i < n; i++) dst[i] = g_e4m3[p[i]]; return 0;
    case DSV3_F8_E5M2: for (size_t i = 0; i < n; i++) dst[i] = g_e5m2[p[i]]; return 0;
    default: return -1;
    }
}
