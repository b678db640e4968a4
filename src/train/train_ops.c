/* f32 building blocks of the training path: matmul forward/backward,
 * RMSNorm forward/backward, RoPE and its inverse. Every output element is
 * reduced in a fixed order, so results do not depend on thread count. */
#include <math.h>
#include <string.h>

#include "train/train_internal.h"

void t_mm(float *out, const float *x, int64_t n, const dsv3_param *W) {
    dsv3_weight w = {.dtype = DSV3_F32, .rows = W->shape[0], .cols = W->shape[1], .data = W->w};
    dsv3_backend_cpu()->matmul(out, x, n, &w);
}

void t_mm_bwd(float *dx, int accumulate, const float *dy, const float *x, int64_t n, dsv3_param *W) {
    const int64_t rows = W->shape[0], cols = W->shape[1];
    if (dx) {
        /* dx[t][i] = Σ_o dy[t][o] W[o][i], o ascending */
#pragma omp parallel for schedule(static) if (n * rows * cols > DSV3_OMP_MIN_WORK)
        for (int64_t t = 0; t < n; t++) {
            float *d = dx + t * cols;
            if (!accumulate) memset(d, 0, sizeof(float) * cols);
            const float *g = dy + t * rows;
            for (int64_t o = 0; o < rows; o++) {
                float a = g[o];
                if (a == 0.0f) continue;
                const float *wr = W->w + o * cols;
                for (int64_t i = 0; i < cols; i++) d[i] += a * wr[i];
            }
        }
    }
    /* dW[o][i] += Σ_t dy[t][o] x[t][i], t ascending */
#pragma omp parallel for schedule(static) if (n * rows * cols > DSV3_OMP_MIN_WORK)
    for (int64_t o = 0; o < rows; o++) {
        float *gw = W->g + o * cols;
        for (int64_t t = 0; t < n; t++) {
            float a = dy[t * rows + o];
            if (a == 0.0f) continue;
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
