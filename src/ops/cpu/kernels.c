/* CPU kernels shared by every ISA path: the reference weight decode, the
 * double-precision test reference, RMSNorm, softmax. The dot products and
 * matmuls live in matmul_{scalar,avx2,avx512}.c behind dispatch.c. */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dsv3/fp8.h"

double dsv3_dot_ref(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* Decodes elements [c0, c0+n) of row r of W into dst (n <= cols - c0). */
void dsv3_cpu_decode_span(const dsv3_weight *W, int64_t r, int64_t c0, int64_t n, float *dst) {
    const uint8_t *base = (const uint8_t *)W->data;
    switch (W->dtype) {
    case DSV3_F32: memcpy(dst, base + 4 * (r * W->cols + c0), 4 * n); break;
    case DSV3_BF16: {
        const uint8_t *p = base + 2 * (r * W->cols + c0);
        for (int64_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, p + 2 * k, 2);
            dst[k] = dsv3_bf16_to_f32(h);
        }
        break;
    }
    case DSV3_F16: {
        const uint8_t *p = base + 2 * (r * W->cols + c0);
        for (int64_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, p + 2 * k, 2);
            dst[k] = dsv3_f16_to_f32(h);
        }
        break;
    }
    case DSV3_F8_E4M3:
    case DSV3_F8_E5M2: {
        /* W[r][c] = decode(q) * S[r/br][c/bc]  (spec §2.4: scale_inv is multiplied) */
        const float *lut = W->dtype == DSV3_F8_E4M3 ? dsv3_fp8_e4m3_table : dsv3_fp8_e5m2_table;
        const uint8_t *p = base + r * W->cols + c0;
        const float *srow = W->scale + (r / W->block_r) * W->scale_cols;
        for (int64_t k = 0; k < n;) {
            int64_t c = c0 + k, bend = (c / W->block_c + 1) * W->block_c - c0;
            if (bend > n) bend = n;
            float s = srow[c / W->block_c];
            for (; k < bend; k++) dst[k] = lut[p[k]] * s;
        }
        break;
    }
    default: memset(dst, 0, 4 * n); break; /* unreachable: weights are validated at load */
    }
}

/* W is const for the kernels only: the flags are OR-ed into it atomically */
static int fp8_flags_add(const dsv3_weight *W, int flags) {
    return __atomic_or_fetch((int *)&W->fp8_scan, flags, __ATOMIC_ACQ_REL);
}

int dsv3_cpu_fp8_scale_flags(const dsv3_weight *W) {
    const int state = __atomic_load_n(&W->fp8_scan, __ATOMIC_ACQUIRE);
    if (state & DSV3_FP8_SCALES_DONE) return state;
    int fold8 = W->scale != NULL, fold120 = fold8, pow2 = fold8;
    for (int64_t i = 0; W->scale && i < W->scale_rows * W->scale_cols; i++) {
        const float s = W->scale[i];
        fold8 &= !(isfinite(s) && isinf(s * 0x1p8f));
        fold120 &= !(isfinite(s) && isinf(s * 0x1p120f));
        pow2 &= s >= 0x1p-120f && s <= 0x1p7f && dsv3_fp8_scale_is_pow2(s);
    }
    return fp8_flags_add(W, DSV3_FP8_SCALES_DONE | (fold8 ? DSV3_FP8_FOLD8 : 0) | (fold120 ? DSV3_FP8_FOLD120 : 0) |
                                (pow2 ? DSV3_FP8_POW2 : 0));
}

int dsv3_cpu_fp8_scan(const dsv3_weight *W) {
    const int state = dsv3_cpu_fp8_scale_flags(W);
    if (state & DSV3_FP8_CODES_DONE) return state;
    const uint8_t *p = W->data;
    const size_t n = (size_t)W->rows * (size_t)W->cols;
    /* with b = code & 0x7f: E4M3FN NaN iff b == 0x7f, subnormal iff exponent bits (0x78) clear and mantissa
     * (0x07) not; E5M2 NaN/Inf iff b >= 0x7c, subnormal iff bits 0x7c clear and 0x03 not */
    const int e5m2 = W->dtype == DSV3_F8_E5M2;
    const int nan_lo = e5m2 ? 0x7c : 0x7f, exp_mask = e5m2 ? 0x7c : 0x78, man_mask = e5m2 ? 0x03 : 0x07;
    int nan = 0;
    size_t sub = 0;
    for (size_t i0 = 0; i0 < n; i0 += 1 << 16) { /* blocks with int counters: the loop vectorises */
        const size_t i1 = n - i0 < (1u << 16) ? n : i0 + (1u << 16);
        int nb = 0, cnt = 0;
        for (size_t i = i0; i < i1; i++) {
            const int b = p[i] & 0x7f;
            nb |= b >= nan_lo;
            cnt += ((b & exp_mask) == 0) & ((b & man_mask) != 0);
        }
        nan |= nb;
        sub += (size_t)cnt;
    }
    return fp8_flags_add(W, DSV3_FP8_CODES_DONE | (nan ? DSV3_FP8_HAS_NAN : 0) |
                                (sub > n / 4096 ? DSV3_FP8_MANY_SUBNORMAL : 0));
}

void dsv3_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ss = dsv3_dot_f32(x, x, n);
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * inv);
    else
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv;
}

void dsv3_softmax_inplace(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}
