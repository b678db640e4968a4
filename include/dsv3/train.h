/* Training: FP32 master weights, forward + backward of the whole model
 * (main + MTP), DeepSeek-V3 losses, AdamW and the bias update (spec §4.2, §5.2, §5.3). */
#ifndef DSV3_TRAIN_H
#define DSV3_TRAIN_H

#include <stdint.h>

#include "dsv3/config.h"
#include "dsv3/safetensors.h"
#include "dsv3/status.h"

/* One trainable tensor: FP32 weights, gradient and Adam moments. */
typedef struct {
    char *name;        /* HF checkpoint name */
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float *w, *g;      /* weights, gradient accumulator */
    float *m, *v;      /* AdamW moments (allocated on first optimizer step) */
} dsv3_param;

typedef struct dsv3_train_model dsv3_train_model;

/* Loads a checkpoint directory (any stored dtype) into FP32 master weights. */
dsv3_status dsv3_train_model_load(const char *dir, dsv3_train_model **out, dsv3_error *err);
void dsv3_train_model_free(dsv3_train_model *tm);
const dsv3_config *dsv3_train_model_config(const dsv3_train_model *tm);
int dsv3_train_model_has_mtp(const dsv3_train_model *tm);
/* Trainable parameters (the MTP layer's embedding/head copies are not separate:
 * the main embedding and head are shared, spec §4.1). */
int dsv3_train_model_n_params(const dsv3_train_model *tm);
dsv3_param *dsv3_train_model_param(dsv3_train_model *tm, int i);
dsv3_param *dsv3_train_model_find(dsv3_train_model *tm, const char *name);
/* e_score_correction_bias of main-model MoE layer `layer` (NULL if not MoE). */
float *dsv3_train_model_bias(dsv3_train_model *tm, int64_t layer);

typedef struct {
    float mtp_lambda;   /* λ: weight of the MTP loss (spec §4.2) */
    float bal_alpha;    /* α: sequence-wise balance loss weight (spec §5.3) */
} dsv3_loss_params;

typedef struct {
    double loss_main, loss_mtp, loss_bal, loss_total;
    int64_t tokens;
    /* tokens routed to each expert, per main-model MoE layer: [n_moe_layers][n_routed_experts] */
    float *expert_load;
} dsv3_step_stats;

/* Forward + backward on a batch of B sequences of length T (ids [B*T]);
 * ADDS gradients into every param's g (call dsv3_train_zero_grad first).
 * Losses: main CE over positions 0..T-2; MTP CE (depth 1) over 0..T-3 scaled by λ;
 * α·Σ_layers mean_b Σ_i f_i P_i. stats->expert_load must hold n_moe*E floats (or be NULL). */
dsv3_status dsv3_train_forward_backward(dsv3_train_model *tm, const int32_t *ids, int64_t B, int64_t T,
                                        const dsv3_loss_params *lp, dsv3_step_stats *stats, dsv3_error *err);
void dsv3_train_zero_grad(dsv3_train_model *tm);

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} dsv3_adamw_params;

/* One AdamW step (torch semantics: decoupled decay p *= 1 - lr·wd, bias
 * correction with step count `step` >= 1) on every param. */
dsv3_status dsv3_adamw_step(dsv3_train_model *tm, const dsv3_adamw_params *p, int64_t step, dsv3_error *err);
/* Auxiliary-loss-free balancing (spec §5.3, C.5): b_i += γ·sign(mean(load) − load_i). */
void dsv3_bias_update(float *bias, const float *load, int64_t n_experts, float gamma);

#endif
