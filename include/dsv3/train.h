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
    float *m, *v;      /* AdamW moments, FP32 (allocated on first optimizer step) */
    uint16_t *m16, *v16; /* AdamW moments, BF16 (when dsv3_adamw_params.bf16_moments) */
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
    int bf16_moments;   /* store m, v in BF16 (spec §5.5); math stays FP32 */
} dsv3_adamw_params;

/* One AdamW step (torch semantics: decoupled decay p *= 1 - lr·wd, bias
 * correction with step count `step` >= 1) on every param. */
dsv3_status dsv3_adamw_step(dsv3_train_model *tm, const dsv3_adamw_params *p, int64_t step, dsv3_error *err);
/* Global L2 norm of all gradients (fixed summation order); if max_norm > 0 and
 * the norm exceeds it, scales every gradient by max_norm / norm. Returns the norm before clipping. */
double dsv3_clip_grad_norm(dsv3_train_model *tm, double max_norm);

/* LR schedule of the report (spec §5.2): linear warm-up 0 -> peak over
 * warmup_steps; constant until decay_start; cosine decay to final_lr over
 * decay_steps; then final_lr (and tail_lr from tail_start when tail_start > 0). */
typedef struct {
    float peak_lr, final_lr, tail_lr;
    int64_t warmup_steps, decay_start, decay_steps, tail_start;
} dsv3_lr_schedule;
float dsv3_lr_at(const dsv3_lr_schedule *s, int64_t step); /* step counts from 0 */

/* Auxiliary-loss-free balancing (spec §5.3, C.5): b_i += γ·sign(mean(load) − load_i). */
void dsv3_bias_update(float *bias, const float *load, int64_t n_experts, float gamma);

/* ---- checkpoints (HF layout + trainer state) ---- */
typedef struct {
    int64_t step;          /* optimizer steps completed */
    uint64_t data_cursor;  /* training samples consumed */
    uint64_t seed;
    int bf16_moments;
    double loss_ema;       /* running loss average for spike detection (0 = none yet) */
} dsv3_train_state;

/* Writes OUT/step-<step>/ {config.json, model.safetensors (FP32 master weights,
 * routing biases, MTP embedding/head copies), trainer_state.safetensors (AdamW
 * moments, step, cursor, seed), tokenizer files copied from tokenizer_dir if
 * not NULL}; built in a temporary directory, fsync'd, renamed into place, then
 * OUT/latest is replaced atomically. A kill at any moment leaves the previous
 * checkpoint and 'latest' valid. Keeps the newest `keep` checkpoints (0 = all). */
dsv3_status dsv3_train_save(dsv3_train_model *tm, const dsv3_train_state *st, const char *out_dir,
                            const char *tokenizer_dir, int keep, dsv3_error *err);
/* Writes an inference checkpoint: OUT/config.json, OUT/model.safetensors (BF16
 * when bf16, else F32; routing biases F32; MTP embedding/head copies) and the
 * tokenizer files of tokenizer_dir (if not NULL). */
dsv3_status dsv3_train_export(dsv3_train_model *tm, const char *out_dir, int bf16, const char *tokenizer_dir,
                              dsv3_error *err);
/* Loads the checkpoint OUT/latest points to: model, moments and state. */
dsv3_status dsv3_train_resume(const char *out_dir, dsv3_train_model **tm, dsv3_train_state *st, dsv3_error *err);
/* Loads trainer_state.safetensors of a checkpoint dir into tm/st. */
dsv3_status dsv3_train_load_state(dsv3_train_model *tm, const char *ckpt_dir, dsv3_train_state *st, dsv3_error *err);

/* ---- the training loop (dsv3 train) ---- */
typedef struct {
    const char *model_dir;      /* initial checkpoint (ignored with resume) */
    const char *data_path;      /* token shard (include/dsv3/data.h) */
    const char *out_dir;        /* checkpoints + log */
    const char *tokenizer_dir;  /* copied into checkpoints; NULL = model_dir if it has one */
    const char *log_path;       /* JSONL log; NULL = OUT/train_log.jsonl */
    int resume;
    int64_t steps, batch, seq_len, grad_accum;
    dsv3_lr_schedule lr;
    dsv3_adamw_params adam;     /* lr field ignored (schedule) */
    float clip_norm;
    dsv3_loss_params loss;
    float bias_gamma;
    uint64_t seed;
    double val_frac;
    int64_t eval_every, eval_windows, save_every, keep;
    float spike_factor;         /* loss > factor·EMA is a spike (0 = off) */
    int skip_spikes;            /* do not apply the update of a spike batch */
    int quiet;                  /* no progress bar */
} dsv3_train_options;

void dsv3_train_options_default(dsv3_train_options *o);
dsv3_status dsv3_train_run(const dsv3_train_options *o, dsv3_error *err);
/* Mean main-model CE loss over validation windows (forward only). */
dsv3_status dsv3_train_eval_loss(dsv3_train_model *tm, const int32_t *ids, int64_t B, int64_t T, double *loss,
                                 dsv3_error *err);

#endif
