/* Typed DeepSeek-V3 / V2-family config.json (spec §1.1, §1.2). */
#ifndef DSV3_CONFIG_H
#define DSV3_CONFIG_H

#include <stdint.h>

#include "dsv3/status.h"

typedef enum { DSV3_SCORE_SIGMOID, DSV3_SCORE_SOFTMAX } dsv3_score_func;
typedef enum { DSV3_TOPK_NOAUX_TC, DSV3_TOPK_GROUP_LIMITED_GREEDY, DSV3_TOPK_GREEDY } dsv3_topk_method;

typedef struct {
    int64_t vocab_size, hidden_size, intermediate_size, moe_intermediate_size;
    int64_t num_hidden_layers, first_k_dense_replace, moe_layer_freq;
    int64_t num_attention_heads;
    int64_t q_lora_rank;          /* 0 = no q LoRA (config null): q_proj */
    int64_t kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int64_t n_routed_experts, n_shared_experts, num_experts_per_tok;
    int64_t n_group, topk_group;  /* 1/1 when absent */
    int64_t num_nextn_predict_layers;
    int64_t max_position_embeddings;
    int64_t bos_token_id, eos_token_id; /* -1 when absent */
    dsv3_score_func scoring_func;
    dsv3_topk_method topk_method;
    int norm_topk_prob;
    double routed_scaling_factor;
    double rms_norm_eps;
    double rope_theta;
    /* rope_scaling (YaRN); rope_yarn = 0 means plain RoPE */
    int rope_yarn;
    double rope_factor, rope_beta_fast, rope_beta_slow, rope_mscale, rope_mscale_all_dim;
    int64_t rope_original_max_pos;
    /* FP8 quantization_config */
    int fp8;                      /* quant_method fp8 */
    int64_t fp8_block[2];
    int scale_fmt_ue8m0;
    int tie_word_embeddings;
} dsv3_config;

/* Parses path (a config.json). Unknown keys are ignored; a missing or
 * ill-typed required key gives an error naming the key. */
dsv3_status dsv3_config_load(const char *path, dsv3_config *cfg, dsv3_error *err);
/* Same from an in-memory JSON string (name is used in messages). */
dsv3_status dsv3_config_parse(const char *json, size_t len, const char *name, dsv3_config *cfg, dsv3_error *err);

static inline int dsv3_config_is_moe_layer(const dsv3_config *c, int64_t layer) {
    return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace && layer % c->moe_layer_freq == 0;
}
static inline int64_t dsv3_config_qk_head_dim(const dsv3_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }

/* Softmax scale σ = qk_head_dim^-1/2 · mscale² (spec §3.5). */
double dsv3_config_softmax_scale(const dsv3_config *c);
/* cos/sin amplitude: mscale(s, mscale)/mscale(s, mscale_all_dim) when both set (1.0 for V3), else 1. */
double dsv3_config_rope_attn_factor(const dsv3_config *c);
/* YaRN-corrected inverse frequencies f'_j for j in [0, qk_rope_head_dim/2) (spec §3.5, Appendix A). */
void dsv3_config_rope_freqs(const dsv3_config *c, float *freqs);

#endif
