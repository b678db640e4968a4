/* AdamW (torch semantics) and the auxiliary-loss-free bias update (spec §5.2, §5.3). */
#include <math.h>
#include <stdlib.h>

#include "train/train_internal.h"

dsv3_status dsv3_adamw_step(dsv3_train_model *tm, const dsv3_adamw_params *p, int64_t step, dsv3_error *err) {
    if (step < 1) return dsv3_fail(err, DSV3_ERR_INVALID, "AdamW step must be >= 1");
    /* torch: p *= 1 − lr·wd; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²;
     *        p −= (lr / (1−β1^t)) · m / (sqrt(v)/sqrt(1−β2^t) + eps) */
    const double bc1 = 1.0 - pow(p->beta1, (double)step), bc2 = sqrt(1.0 - pow(p->beta2, (double)step));
    const float step_size = (float)(p->lr / bc1), decay = 1.0f - p->lr * p->weight_decay;
    for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
        dsv3_param *q = dsv3_train_model_param(tm, i);
        if (!q->m) {
            q->m = calloc((size_t)q->numel, sizeof(float));
            q->v = calloc((size_t)q->numel, sizeof(float));
            if (!q->m || !q->v) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for AdamW moments of '%s'", q->name);
        }
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < q->numel; j++) {
            float g = q->g[j];
            q->w[j] *= decay;
            q->m[j] = p->beta1 * q->m[j] + (1.0f - p->beta1) * g;
            q->v[j] = p->beta2 * q->v[j] + (1.0f - p->beta2) * g * g;
            float denom = sqrtf(q->v[j]) / (float)bc2 + p->eps;
            q->w[j] -= step_size * q->m[j] / denom;
        }
    }
    return DSV3_OK;
}

void dsv3_bias_update(float *bias, const float *load, int64_t n_experts, float gamma) {
    double mean = 0;
    for (int64_t e = 0; e < n_experts; e++) mean += load[e];
    mean /= (double)n_experts;
    for (int64_t e = 0; e < n_experts; e++) {
        double d = mean - load[e];
        bias[e] += gamma * (float)(d > 0 ? 1 : d < 0 ? -1 : 0);
    }
}
