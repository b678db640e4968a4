/* Internal model layout shared by the files of src/model. */
#ifndef DSV3_MODEL_INTERNAL_H
#define DSV3_MODEL_INTERNAL_H

#include "dsv3/model.h"
#include "dsv3/ops.h"
#include "dsv3/safetensors.h"

typedef struct {
    dsv3_weight gate, up, down; /* SwiGLU: down( silu(gate x) * (up x) ) (spec §3.8) */
} dsv3_ffn;

typedef struct {
    float *attn_norm, *ffn_norm;         /* input_layernorm, post_attention_layernorm [hidden] */
    dsv3_weight q_a, q_b, q_proj;        /* q LoRA (q_a, q_b) or plain q_proj */
    float *q_a_norm;                     /* [q_lora_rank] */
    dsv3_weight kv_a, kv_b, o;
    float *kv_b_f32;                     /* kv_b_proj dequantised once at load (small models), or NULL */
    float *kv_a_norm;                    /* [kv_lora_rank] */
    int is_moe;
    dsv3_ffn mlp;                        /* dense layers */
    float *router;                       /* [E, hidden] f32 (router runs in fp32, spec §3.9) */
    float *router_bias;                  /* [E] e_score_correction_bias, or NULL */
    dsv3_ffn *experts;                   /* [E] */
    dsv3_ffn shared;                     /* when n_shared_experts > 0 */
} dsv3_layer;

#define DSV3_MAX_MTP 4 /* MTP depths supported (the released models have 1) */

typedef struct {
    float *enorm, *hnorm, *head_norm;
    dsv3_weight eh_proj;                 /* [hidden, 2*hidden]: embedding half first (spec §4.1) */
    dsv3_layer block;
} dsv3_mtp_module;

/* Growable scratch for one forward call (no allocation per token). */
typedef struct {
    int64_t n_tok;                       /* capacity it was sized for */
    int nthreads;
    float *base;
    float *x, *hn, *qa, *q, *kv, *attn, *proj, *ffn_a, *ffn_b, *router_logits;
    float *kvb;                          /* per thread: one head's kv_b_proj rows [nope+v][kv_lora] (mla.c) */
    float *head_scratch;                 /* per thread: dsv3_mla_scratch_per_thread(cfg) floats */
    float *mla_keys;                     /* per thread: DSV3_MLA_CHUNK cache rows widened from BF16 */
    float *mla_wide;                     /* a prefill's BF16 cache rows of one layer widened (mla.c; own malloc) */
    int64_t mla_wide_cap;                /* its floats (grows only, up to DSV3_MLA_WIDE_MAX_BYTES) */
    float *moe_in, *moe_out;
    float *moe_a;                        /* dsv3_moe_token_scratch(cfg) floats */
    float *moe_par;                      /* moe_par_tok x dsv3_moe_par_per_token + 2 (E + 1) floats */
    int64_t moe_par_tok;                 /* token block of the expert-parallel MoE path (0: not used) */
    float *mla_tok;                      /* [2][DSV3_MLA_TOKEN_BLOCK][heads][kv_lora_rank + 2] */
    int32_t *route_idx;                  /* [n_tok, K] */
    float *route_w;                      /* [n_tok, K] */
    int32_t *tok_list;                   /* [n_tok*K] */
    float *tok_w;
    int32_t *pos;                        /* [n_tok] position of each row */
    int32_t *item_of;                    /* [n_tok] batch item of each row */
} dsv3_workspace;

struct dsv3_kv_cache {
    int64_t cap, len, mtp_len, row, n_main, n_mtp;
    dsv3_dtype dtype;                    /* DSV3_F32 or DSV3_BF16 (dsv3_model_set_kv_dtype) */
    void *data;                          /* [(n_main + n_mtp), cap, row] of dtype */
};

struct dsv3_model {
    dsv3_config cfg;
    dsv3_checkpoint *ckpt;
    const dsv3_backend *be;
    dsv3_weight embed, lm_head;
    float *final_norm;
    dsv3_layer *layers;
    int has_mtp;                         /* n_mtp > 0 */
    int64_t mtp_draft_vocab;             /* dsv3_mtp_forward_last logits: ids [0, this); 0 = all */
    int64_t moe_block_max;               /* cap of ws.moe_par_tok (dsv3_model_set_moe_block); 0 = none */
    dsv3_dtype kv_dtype;                 /* storage of the caches made from now on (dsv3_model_set_kv_dtype) */
    int n_mtp;                           /* MTP modules (depths) loaded; inference drafts with mtp[0] */
    dsv3_mtp_module mtp[DSV3_MAX_MTP];
    float *rope_freqs;                   /* [rope_dim/2] YaRN-corrected */
    float softmax_scale, rope_attn_factor;
    int64_t n_moe_layers;
    dsv3_workspace ws;
    void **allocs;                       /* everything malloc'd at load, freed together */
    size_t n_allocs, cap_allocs;
};

/* Element offset of the row of (layer, pos): f32 data for DSV3_F32, uint16 BF16 data for DSV3_BF16. */
static inline int64_t kv_cache_off(const dsv3_kv_cache *c, int64_t layer, int64_t pos) {
    return (layer * c->cap + pos) * c->row;
}

/* forward pieces */
dsv3_status dsv3_ws_reserve(dsv3_model *m, int64_t n_tok, dsv3_error *err);
void dsv3_ws_free(dsv3_workspace *ws);
void dsv3_embed_rows(const dsv3_model *m, const int32_t *tokens, int64_t n, float *x);
/* MLA processes up to this many heads of a token per pass over its cache. */
#define DSV3_MLA_MAX_GROUP 16
/* MLA softmax chunk: keys per chunk, cut at absolute positions (part of the numerics, see mla.c). */
#define DSV3_MLA_CHUNK 64
/* Chunks per parallel window of the few-token MLA schedule (speed only). */
#define DSV3_MLA_SPLIT_WINDOW 64
/* Most bytes of a forward call's BF16 cache rows the item schedule widens to f32 once per layer (each
 * row is then read by many tokens) instead of one chunk at a time per token (speed only). */
#define DSV3_MLA_WIDE_MAX_BYTES ((int64_t)64 << 20)
/* Sequences of a call widened that way at most (more: per chunk). */
#define DSV3_MLA_WIDE_ITEMS 8
/* Tokens per block of the MLA item schedule (absorbed queries and outputs of a block are batched). */
#define DSV3_MLA_TOKEN_BLOCK 32
/* Scratch of the expert-parallel MoE path (moe.c), per token of a block of tokens: the routed outputs,
 * one row per chosen expert (K x hidden), and per thread the gathered inputs (hidden) and gate/up
 * outputs (moe_intermediate x 2) of an expert's tokens, + 2 ints per (token, expert) of bookkeeping;
 * + 2 ints per expert. The block is as many tokens as DSV3_MOE_PAR_BUDGET floats hold (at least
 * DSV3_MOE_PAR_MIN_BLOCK or all of them; otherwise the per-expert path runs). */
#define DSV3_MOE_PAR_BUDGET ((int64_t)16 << 20) /* floats: 64 MiB */
#define DSV3_MOE_PAR_MIN_BLOCK 256
static inline int64_t dsv3_moe_par_per_token(const dsv3_config *c, int64_t nthreads) {
    const int64_t K = c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1;
    return K * (c->hidden_size + 2) + nthreads * (c->hidden_size + 2 * c->moe_intermediate_size);
}
/* Per-thread MLA scratch (independent of the context length): q~ [G][kvl+rope], chunk scores [G][chunk],
 * and [G][kvl+2] chunk results / folded states: 2 for the item schedule, window + 1 for the split one. */
static inline int64_t dsv3_mla_scratch_per_thread(const dsv3_config *c) {
    return DSV3_MLA_MAX_GROUP *
           (c->kv_lora_rank + c->qk_rope_head_dim + DSV3_MLA_CHUNK + (DSV3_MLA_SPLIT_WINDOW + 2) * (c->kv_lora_rank + 2));
}
/* Widest expert FFN: a routed expert (moe_intermediate_size) or the shared experts together. */
static inline int64_t dsv3_moe_width(const dsv3_config *c) {
    const int64_t I = c->moe_intermediate_size, Is = c->n_shared_experts * c->moe_intermediate_size;
    return Is > I ? Is : I;
}
/* Tokens up to which a forward's MoE runs the few-token path (moe.c: decode, MTP verification,
 * small continuous batches), beyond which every expert runs one GEMM over its tokens. */
#define DSV3_MOE_FEW_MAX 4
#define DSV3_MOE_FEW_MAX_K 64 /* and up to this many routed experts per token (its bookkeeping is on the stack) */
/* Scratch of the few-token MoE path: per (active expert, token) slot, up to DSV3_MOE_FEW_MAX tokens
 * x (K routed + the shared one), the gathered input and the down output (hidden each) and the gate
 * and up outputs (dsv3_moe_width each), + 2 ints of bookkeeping per slot. */
static inline int64_t dsv3_moe_token_scratch(const dsv3_config *c) {
    int64_t K = c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1;
    return DSV3_MOE_FEW_MAX * (K + 1) * (2 * dsv3_moe_width(c) + 2 * c->hidden_size + 2);
}
/* Attention sub-block: x[n, hidden] += MLA(attn_norm(x)); rows belong to
 * items (per-row cache item + position in m->ws.item_of / m->ws.pos). */
void dsv3_mla_forward(dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, dsv3_kv_cache **caches, float *x,
                      int64_t n);
/* Only the cache rows of dsv3_mla_forward (same bits): for rows whose attention output is not needed
 * (the MTP layer's earlier rows when only the last row's logits are wanted). x is not changed. */
void dsv3_mla_append_kv(dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, dsv3_kv_cache **caches,
                        const float *x, int64_t n);
/* FFN sub-block: x += FFN(ffn_norm(x)); for MoE fills route idx/w ([n,K]) when non-NULL. */
void dsv3_ffn_forward(dsv3_model *m, const dsv3_layer *L, float *x, int64_t n, int32_t *route_idx, float *route_w);
/* Routes one token: scores from logits[E] -> idx[K] (sorted by id), w[K]. */
void dsv3_route_token(const dsv3_config *c, const float *logits, const float *bias, int32_t *idx, float *w,
                      float *scratch /* [2E + n_group] */);

#endif
