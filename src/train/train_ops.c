/* f32 building blocks of the training path: matmul forward/backward,
 * RMSNorm forward/backward, RoPE and its inverse. Every output element is
 * reduced in a fixed order, so results do not depend on thread count. */
#include <math.h>
#include <string.h>

#include "train/train_internal.h"

/* Small products keep the simple loops (no packing); large ones use the tiled GEMM. */
#define GEMM_MIN_WORK (1 << 18)

void t_mm(float *out, const float *x, int64_t n, const dsv3_param *W) {
    const int64_t rows = W->shape[0], cols = W->shape[1];
    if (n * rows * cols >= GEMM_MIN_WORK && t_gemm_nt(out, x, W->w, n, rows, cols) == 0) return;
    dsv3_weight w = {.dtype = DSV3_F32, .rows = rows, .cols = cols, .data = W->w};
    dsv3_backend_cpu()->matmul(out, x, n, &w);
}

void t_mm_bwd(float *dx, int accumulate, const float *dy, const float *x, int64_t n, dsv3_param *W) {
    const int64_t rows = W->shape[0], cols = W->shape[1];
    int big = n * rows * cols >= GEMM_MIN_WORK;
    /* dx[n][cols] (+)= dy[n][rows] · W[rows][cols] */
    if (dx && big) {
        t_gemm_nn(dx, dy, W->w, n, cols, rows, accumulate);
    } else if (dx) {
#pragma omp parallel for schedule(static) if (n * rows * cols > DSV3_OMP_MIN_WORK)
        for (int64_t t = 0; t < n; t++) {
            float *d = dx + t * cols;
            if (!accumulate) memset(d, 0, sizeof(float) * cols);
            const float *g = dy + t * rows;
            for (int64_t o = 0; o < rows; o++) {
                float a = g[o];
                const float *wr = W->w + o * cols;
                for (int64_t i = 0; i < cols; i++) d[i] += a * wr[i];
            }
        }
    }
    /* W.g[rows][cols] += dy[n][rows]ᵀ · x[n][cols] */
    if (big && t_gemm_tn_acc(W->g, dy, x, rows, cols, n) == 0) return;
#pragma omp parallel for schedule(static) if (n * rows * cols > DSV3_OMP_MIN_WORK)
    for (int64_t o = 0; o < rows; o++) {
        float *gw = W->g + o * cols;
        for (int64_t t = 0; t < n; t++) {
            float a = dy[t * rows + o];
            const float *xr = x + t * cols;
            for (int64_t i = 0; i < cols; i++) gw[i] += a * xr[i];
        }
    }
}

void t_rms(float *y, const float *x, int64_t n, const dsv3_param *w, float eps) {
    int64_t d = w->numel;
    for (int64_t t = 0; t < n; t++) dsv3_rmsnorm(y + t * d, x + t * d, w->w, d, eps);
}

/* y = w ⊙ x·r, r = (mean(x²)+eps)^-1/2:
 * dw += dy ⊙ x·r;  dx = r·(w⊙dy) − r³/d · x · Σ(w⊙dy⊙x) */
void t_rms_bwd(float *dx, int accumulate, const float *dy, const float *x, int64_t n, dsv3_param *w, float eps) {
    int64_t d = w->numel;
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d, *g = dy + t * d;
        float r = 1.0f / sqrtf(dsv3_dot_f32(xr, xr, d) / (float)d + eps);
        double dot = 0;
        for (int64_t i = 0; i < d; i++) {
            w->g[i] += g[i] * xr[i] * r;
            dot += (double)w->w[i] * g[i] * xr[i];
        }
        float k = (float)dot * r * r * r / (float)d;
        float *o = dx + t * d;
        for (int64_t i = 0; i < d; i++) {
            float v = r * w->w[i] * g[i] - k * xr[i];
            o[i] = accumulate ? o[i] + v : v;
        }
    }
}

void t_rope(float *v, int64_t dim, int64_t pos, const float *freqs, float amp, int inverse) {
    for (int64_t j = 0; j < dim / 2; j++) {
        float ang = (float)pos * freqs[j];
        float c = cosf(ang) * amp, s = sinf(ang) * amp;
        if (inverse) s = -s;
        float x0 = v[2 * j], x1 = v[2 * j + 1];
        v[2 * j] = x0 * c - x1 * s;
        v[2 * j + 1] = x0 * s + x1 * c;
    }
}
