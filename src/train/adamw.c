/* AdamW (torch semantics) and the auxiliary-loss-free bias update (spec §5.2, §5.3). */
#include <math.h>
#include <stdlib.h>

#include "dsv3/dtype.h"
#include "train/train_internal.h"

dsv3_status dsv3_adamw_step(dsv3_train_model *tm, const dsv3_adamw_params *p, int64_t step, dsv3_error *err) {
    if (step < 1) return dsv3_fail(err, DSV3_ERR_INVALID, "AdamW step must be >= 1");
    /* torch: p *= 1 − lr·wd; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²;
     *        p −= (lr / (1−β1^t)) · m / (sqrt(v)/sqrt(1−β2^t) + eps) */
    const double bc1 = 1.0 - pow(p->beta1, (double)step), bc2 = sqrt(1.0 - pow(p->beta2, (double)step));
    const float step_size = (float)(p->lr / bc1), decay = 1.0f - p->lr * p->weight_decay;
    for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
        dsv3_param *q = dsv3_train_model_param(tm, i);
        if (p->bf16_moments ? !q->m16 : !q->m) {
            if (p->bf16_moments) {
                q->m16 = calloc((size_t)q->numel, sizeof(uint16_t));
                q->v16 = calloc((size_t)q->numel, sizeof(uint16_t));
            } else {
                q->m = calloc((size_t)q->numel, sizeof(float));
                q->v = calloc((size_t)q->numel, sizeof(float));
            }
            if (p->bf16_moments ? (!q->m16 || !q->v16) : (!q->m || !q->v))
                return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for AdamW moments of '%s'", q->name);
        }
        const int bf16 = p->bf16_moments;
#pragma omp parallel for schedule(static) if (q->numel > DSV3_OMP_MIN_WORK / 8)
        for (int64_t j = 0; j < q->numel; j++) {
            float g = q->g[j];
            float m = bf16 ? dsv3_bf16_to_f32(q->m16[j]) : q->m[j];
            float v = bf16 ? dsv3_bf16_to_f32(q->v16[j]) : q->v[j];
            q->w[j] *= decay;
            m = p->beta1 * m + (1.0f - p->beta1) * g;
            v = p->beta2 * v + (1.0f - p->beta2) * g * g;
            float denom = sqrtf(v) / (float)bc2 + p->eps;
            q->w[j] -= step_size * m / denom;
            if (bf16) {
                q->m16[j] = dsv3_f32_to_bf16(m);
                q->v16[j] = dsv3_f32_to_bf16(v);
            } else {
                q->m[j] = m;
                q->v[j] = v;
            }
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

double dsv3_clip_grad_norm(dsv3_train_model *tm, double max_norm) {
    double ss = 0;
    for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
        const dsv3_param *q = dsv3_train_model_param(tm, i);
        double part = 0;
        for (int64_t j = 0; j < q->numel; j++) part += (double)q->g[j] * q->g[j];
        ss += part;
    }
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float k = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
            dsv3_param *q = dsv3_train_model_param(tm, i);
            for (int64_t j = 0; j < q->numel; j++) q->g[j] *= k;
        }
    }
    return norm;
}

float dsv3_lr_at(const dsv3_lr_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->peak_lr * (float)(step + 1) / (float)s->warmup_steps;
    if (s->tail_start > 0 && step >= s->tail_start) return s->tail_lr;
    if (step < s->decay_start) return s->peak_lr;
    if (step < s->decay_start + s->decay_steps) {
        double r = (double)(step - s->decay_start) / (double)s->decay_steps;
        return (float)(s->final_lr + 0.5 * (s->peak_lr - s->final_lr) * (1.0 + cos(M_PI * r)));
    }
    return s->final_lr;
}
