/* DeepSeek-V3 model: loading, KV cache, forward pass (main model + MTP). */
#ifndef DSV3_MODEL_H
#define DSV3_MODEL_H

#include <stdint.h>

#include "dsv3/config.h"
#include "dsv3/dtype.h"
#include "dsv3/status.h"

typedef struct dsv3_model dsv3_model;
typedef struct dsv3_kv_cache dsv3_kv_cache;

/* Loads config.json and the checkpoint of dir (mmap; weights stay in their
 * stored dtype). Checks every tensor's presence, dtype and shape. */
dsv3_status dsv3_model_load(const char *dir, dsv3_model **out, dsv3_error *err);
void dsv3_model_free(dsv3_model *m);
const dsv3_config *dsv3_model_config(const dsv3_model *m);
/* 1 if the checkpoint has the MTP layer(s) (num_nextn_predict_layers > 0 and tensors present). */
int dsv3_model_has_mtp(const dsv3_model *m);
/* MTP drafts choose among token ids [0, n) only (0 or >= vocab: all ids). Byte-level BPE
 * vocabularies number tokens in merge order, roughly by frequency, so a small prefix holds
 * most drafts while the draft's lm_head shrinks to n rows (spec §4.3; the idea of
 * frequency-ranked draft vocabularies). Verification is unchanged: greedy output stays
 * identical and sampled output keeps its distribution; only the acceptance rate moves. */
void dsv3_model_set_mtp_draft_vocab(dsv3_model *m, int64_t n);
/* The draft vocabulary `dsv3 generate --mtp` uses unless told: vocab / 8 for vocabularies of 8192 ids
 * or more (1024 for the default model, whose greedy drafts it accepts as often as the full head while
 * its draft steps cost less; 16160 for DeepSeek-V3), else 0 (all ids). */
int64_t dsv3_model_mtp_draft_vocab_default(const dsv3_model *m);
/* Tokens per block of the expert-parallel MoE of a prefill (each thread runs whole experts over a
 * block's tokens; the block's scratch is bounded by a budget, see src/model/model_internal.h):
 * at most n (0 = as many as the budget allows). Results do not depend on it (the same bits). */
void dsv3_model_set_moe_block(dsv3_model *m, int64_t n);
/* Number of MoE layers in the main model. */
int64_t dsv3_model_n_moe_layers(const dsv3_model *m);

/* Compressed MLA cache of one sequence (spec §3.7): per token per layer the
 * normalised latent c_KV (kv_lora_rank) and the rotated k_R (qk_rope_head_dim),
 * for the main layers and the MTP layer. */
dsv3_status dsv3_kv_cache_new(const dsv3_model *m, int64_t max_tokens, dsv3_kv_cache **out, dsv3_error *err);
void dsv3_kv_cache_free(dsv3_kv_cache *c);
int64_t dsv3_kv_cache_len(const dsv3_kv_cache *c);     /* tokens in the main cache */
int64_t dsv3_kv_cache_mtp_len(const dsv3_kv_cache *c); /* rows in the MTP cache */
int64_t dsv3_kv_cache_capacity(const dsv3_kv_cache *c);
/* Drops cached tokens at positions >= len (rollback); same for the MTP rows. */
void dsv3_kv_cache_truncate(dsv3_kv_cache *c, int64_t len, int64_t mtp_len);
/* Bytes of cache per token (all main layers + MTP) of the caches dsv3_kv_cache_new makes now. */
int64_t dsv3_kv_cache_bytes_per_token(const dsv3_model *m);
/* Storage of a cache: DSV3_F32 or DSV3_BF16. */
dsv3_dtype dsv3_kv_cache_dtype(const dsv3_kv_cache *c);
/* Storage of the caches made from now on: DSV3_F32 (the default: the values as computed) or DSV3_BF16
 * (half the memory; each cached value rounded to BF16, nearest even, as DeepSeek's reference and vLLM
 * keep it). Either way a token's logits do not depend on the batch: prefill, decode, MTP verification and
 * continuous batches all attend over the cache as stored. Caches of both kinds may share one batch. */
dsv3_status dsv3_model_set_kv_dtype(dsv3_model *m, dsv3_dtype dt, dsv3_error *err);
dsv3_dtype dsv3_model_kv_dtype(const dsv3_model *m);
/* "f32" / "bf16" (or upper case) -> dtype; -1 if neither (or NULL). */
int dsv3_kv_dtype_parse(const char *s, dsv3_dtype *out);

/* One sequence's share of a batched forward call: n new tokens appended to
 * cache at positions len(cache) .. len(cache)+n-1. */
typedef struct {
    dsv3_kv_cache *cache;
    const int32_t *tokens;
    int64_t n;
} dsv3_batch_item;

/* Optional outputs of dsv3_forward; rows are the batch items' tokens in order
 * (N = sum of n). Any pointer may be NULL. */
typedef struct {
    float *logits;         /* [N, vocab] */
    float *final_hidden;   /* [N, hidden] (final RMSNorm output: lm_head input, MTP input) */
    float *layer_outputs;  /* [L, N, hidden]: residual stream after each layer */
    int32_t *router_idx;   /* [L_moe, N, K] chosen experts sorted by id */
    float *router_w;       /* [L_moe, N, K] their final gate weights */
    /* If set, logits are only computed for rows with logits_mask[row] != 0
     * (others are left untouched). */
    const uint8_t *logits_mask;
    /* With logits_mask: write the selected rows consecutively (logits row k = the
     * k-th selected row), so logits needs only [number selected, vocab]; e.g. a
     * prefill that wants the last row's logits passes a [1, vocab] buffer. */
    int logits_packed;
} dsv3_forward_out;

/* Runs the main model. Each token's results do not depend on what else is in
 * the batch (batch invariance). */
dsv3_status dsv3_forward(dsv3_model *m, const dsv3_batch_item *items, int n_items, dsv3_forward_out *out,
                         dsv3_error *err);

/* MTP depth-1 (spec §4.1): for row i, inputs hidden[i] (the main model's
 * final-norm output at position p_i) and next_tokens[i] (= t_{i+1}); appends
 * one row per input to the cache's MTP layer at positions mtp_len(cache)...;
 * writes logits [n, vocab] (predicting t_{i+2}). One sequence per call. */
dsv3_status dsv3_mtp_forward(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                             int64_t n, float *logits, dsv3_error *err);

/* ---- generation (src/model/generate.c) ---- */
struct dsv3_sampler;
/* Called for every committed token; return nonzero to stop. */
typedef int (*dsv3_token_cb)(int32_t token, void *ctx);
typedef struct {
    int64_t prompt_tokens, generated, mtp_drafted, mtp_accepted;
    double prefill_s, decode_s;
} dsv3_gen_stats;

#define DSV3_MTP_MAX_DRAFTS 4     /* drafts per speculative step (dsv3_generate's use_mtp) */
#define DSV3_MTP_DEFAULT_DRAFTS 2 /* what `dsv3 generate --mtp` uses (greedy) */
/* ... and when it samples: a sampled chain leaves the drafts sooner (default model, temperature 0.8,
 * top-k 40: 77% of single drafts accepted, 63% of pairs), and one draft per step was the faster choice on
 * every machine measured (bench_mtp --temp: Zen 3 0.88-0.90x vs 0.74-0.79x for two; Zen 5 1.07x vs 0.95x) */
#define DSV3_MTP_DEFAULT_DRAFTS_SAMPLED 1
/* Prefills prompt into cache (which must be empty and hold n_prompt + max_new + 1
 * tokens), then generates up to max_new tokens, stopping after eos_id (>= 0).
 * use_mtp: speculative decoding with the MTP module (spec §4.3) with use_mtp draft
 * tokens per step (at most DSV3_MTP_MAX_DRAFTS; 0 = off): the first from the MTP
 * module as trained, each further one chained through it (dsv3_mtp_draft: the
 * previous draft's MTP head input in place of the main model's hidden state; its
 * MTP cache rows are dropped after drafting), all verified by one (drafts + 1)-token
 * main forward. Draft k is accepted with probability min(1, p_k/q_k) (greedy: iff
 * it is the main model's argmax) until the first rejection, which is resampled from
 * max(p - q, 0) (greedy: the argmax), else a bonus token comes from the last row;
 * rejected drafts' KV entries are rolled back. The output distribution is
 * unchanged and greedy output is token-identical to use_mtp = 0. */
dsv3_status dsv3_generate(dsv3_model *m, dsv3_kv_cache *cache, const int32_t *prompt, int64_t n_prompt,
                          int64_t max_new, struct dsv3_sampler *smp, int use_mtp, int32_t eos_id, dsv3_token_cb cb,
                          void *ctx, dsv3_gen_stats *stats, dsv3_error *err);

/* As dsv3_mtp_forward but computes logits only for the last row (logits: [vocab]), over
 * the draft vocabulary (dsv3_model_set_mtp_draft_vocab; -inf past it). */
dsv3_status dsv3_mtp_forward_last(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                                  int64_t n, float *logits, dsv3_error *err);

/* As dsv3_mtp_forward_last, and writes the last row's MTP head input (the head-norm output,
 * [hidden]; what the main model's final hidden is to its lm_head) to hidden_out when non-NULL
 * (hidden_out may be hidden: it is written after hidden is read). Fed back as the hidden of the
 * next row, it chains drafts beyond the one depth the MTP module was trained for (dsv3_generate). */
dsv3_status dsv3_mtp_draft(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                           int64_t n, float *logits, float *hidden_out, dsv3_error *err);

/* ---- parameter accounting (from the config alone; spec §1.3) ---- */
typedef struct {
    int64_t total_main;     /* embedding + layers + final norm + head */
    int64_t mtp;            /* MTP modules including their embedding/head copies */
    int64_t mtp_unique;     /* MTP without the embedding/head copies */
    int64_t activated;      /* per token in the main model (K routed + shared experts) */
    int64_t attn_per_layer;
    int64_t embedding, head;
} dsv3_param_counts;
void dsv3_count_params(const dsv3_config *c, dsv3_param_counts *out);

#endif
