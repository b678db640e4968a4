/* CPU kernels: fixed-order dot products, weight-row decoding, matmul over
 * checkpoint-typed weights, RMSNorm, softmax. */
#include <math.h>
#include <string.h>

#include "dsv3/ops.h"

#define LANES 32 /* partial sums per dot product; fixed so results never depend on batch or threads */

/* Reduces the LANES partial sums pairwise (fixed tree). */
static inline float reduce_lanes(float *acc) {
    for (int w = LANES / 2; w; w >>= 1)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

float dsv3_dot_f32(const float *a, const float *b, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += a[i + k] * b[i + k];
    for (int k = 0; i + k < n; k++) acc[k] += a[i + k] * b[i + k];
    return reduce_lanes(acc);
}

double dsv3_dot_ref(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* Decodes elements [c0, c0+n) of row r of W into dst (n <= cols - c0). */
static inline void decode_span(const dsv3_weight *W, int64_t r, int64_t c0, int64_t n, float *dst) {
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

void dsv3_weight_row_f32(const dsv3_weight *W, int64_t r, float *dst) { decode_span(W, r, 0, W->cols, dst); }

/* Dot of row r of W with x, decoding on the fly in chunks of LANES.
 * Bitwise equal to dsv3_dot_f32(decoded_row, x) (same lanes, same order). */
static float dot_weight_row(const dsv3_weight *W, int64_t r, const float *x) {
    float acc[LANES] = {0}, w[LANES];
    int64_t n = W->cols, i = 0;
    if ((W->dtype == DSV3_F8_E4M3 || W->dtype == DSV3_F8_E5M2) && W->block_c % LANES == 0) {
        /* FP8 fast path: a LANES chunk never straddles a scale block, so one
         * scale per chunk; same products (lut·s) and order as decode_span. */
        const float *lut = W->dtype == DSV3_F8_E4M3 ? dsv3_fp8_e4m3_table : dsv3_fp8_e5m2_table;
        const uint8_t *p = (const uint8_t *)W->data + r * W->cols;
        const float *srow = W->scale + (r / W->block_r) * W->scale_cols;
        const int64_t chunks_per_block = W->block_c / LANES;
        for (int64_t c = 0; i + LANES <= n; i += LANES, c++) {
            float sc = srow[c / chunks_per_block];
            for (int k = 0; k < LANES; k++) w[k] = lut[p[i + k]] * sc;
            for (int k = 0; k < LANES; k++) acc[k] += w[k] * x[i + k];
        }
        if (i < n) {
            decode_span(W, r, i, n - i, w);
            for (int k = 0; i + k < n; k++) acc[k] += w[k] * x[i + k];
        }
        return reduce_lanes(acc);
    }
    for (; i + LANES <= n; i += LANES) {
        decode_span(W, r, i, LANES, w);
        for (int k = 0; k < LANES; k++) acc[k] += w[k] * x[i + k];
    }
    if (i < n) {
        decode_span(W, r, i, n - i, w);
        for (int k = 0; i + k < n; k++) acc[k] += w[k] * x[i + k];
    }
    return reduce_lanes(acc);
}

#define ROW_BUF_MAX 32768 /* decode a row once into a stack buffer when it fits */

static void cpu_matmul_rows(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0,
                            int64_t r1) {
    int64_t cols = W->cols;
    int use_buf = T > 1 && cols <= ROW_BUF_MAX && W->dtype != DSV3_F32;
#pragma omp parallel if ((r1 - r0) * cols * T > DSV3_OMP_MIN_WORK)
    {
        float buf[use_buf ? cols : 1];
#pragma omp for schedule(static)
        for (int64_t o = r0; o < r1; o++) {
            if (use_buf) {
                decode_span(W, o, 0, cols, buf);
                for (int64_t t = 0; t < T; t++) out[t * ld + (o - r0)] = dsv3_dot_f32(buf, x + t * cols, cols);
            } else if (W->dtype == DSV3_F32) {
                const float *wr = (const float *)W->data + o * cols;
                if (((uintptr_t)wr & 3) == 0) {
                    for (int64_t t = 0; t < T; t++) out[t * ld + (o - r0)] = dsv3_dot_f32(wr, x + t * cols, cols);
                } else {
                    for (int64_t t = 0; t < T; t++) out[t * ld + (o - r0)] = dot_weight_row(W, o, x + t * cols);
                }
            } else {
                for (int64_t t = 0; t < T; t++) out[t * ld + (o - r0)] = dot_weight_row(W, o, x + t * cols);
            }
        }
    }
}

static void cpu_matmul(float *out, const float *x, int64_t T, const dsv3_weight *W) {
    cpu_matmul_rows(out, W->rows, x, T, W, 0, W->rows);
}

static const dsv3_backend g_cpu = {"cpu", cpu_matmul, cpu_matmul_rows};
const dsv3_backend *dsv3_backend_cpu(void) { return &g_cpu; }

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
