/* Scalar reference kernels: the exact operation order of cpu_kernels.h written
 * out in plain C with explicit fmaf(), so the result does not depend on the
 * compiler's contraction or vectorisation choices. Every SIMD path must match
 * these bit for bit. */
#include <math.h>
#include <stdlib.h>

#include "cpu_kernels.h"

#define LANES DSV3_LANES

/* Pairwise fixed tree over the 32 lanes: w = 16, 8, 4, 2, 1. */
static inline float reduce_lanes(float *acc) {
    for (int w = LANES / 2; w; w >>= 1)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static float dot_f32_scalar(const float *a, const float *b, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] = fmaf(a[i + k], b[i + k], acc[k]);
    for (int k = 0; i + k < n; k++) acc[k] = fmaf(a[i + k], b[i + k], acc[k]);
    return reduce_lanes(acc);
}

/* Dot of row r of W with x, decoding one 32-element chunk at a time. */
static float dot_weight_row(const dsv3_weight *W, int64_t r, const float *x) {
    float acc[LANES] = {0}, w[LANES];
    int64_t n = W->cols, i = 0;
    for (; i + LANES <= n; i += LANES) {
        dsv3_cpu_decode_span(W, r, i, LANES, w);
        for (int k = 0; k < LANES; k++) acc[k] = fmaf(w[k], x[i + k], acc[k]);
    }
    if (i < n) {
        dsv3_cpu_decode_span(W, r, i, n - i, w);
        for (int k = 0; i + k < n; k++) acc[k] = fmaf(w[k], x[i + k], acc[k]);
    }
    return reduce_lanes(acc);
}

static int matmul_block_scalar(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase,
                               int64_t o0, int64_t o1) {
    const int64_t cols = W->cols;
    /* Several tokens: decode each row once (same values), else decode per chunk. */
    float *buf = T > 1 ? malloc(sizeof(float) * (size_t)(cols > 0 ? cols : 1)) : NULL;
    for (int64_t o = o0; o < o1; o++) {
        if (buf) {
            dsv3_cpu_decode_span(W, o, 0, cols, buf);
            for (int64_t t = 0; t < T; t++) out[t * ld + (o - obase)] = dot_f32_scalar(buf, x + t * cols, cols);
        } else {
            for (int64_t t = 0; t < T; t++) out[t * ld + (o - obase)] = dot_weight_row(W, o, x + t * cols);
        }
    }
    free(buf);
    return 0;
}

static void decode_row_scalar(const dsv3_weight *W, int64_t r, float *dst) { dsv3_cpu_decode_span(W, r, 0, W->cols, dst); }

const dsv3_cpu_kernels dsv3_cpu_kernels_scalar = {"scalar", dot_f32_scalar, matmul_block_scalar, decode_row_scalar};
