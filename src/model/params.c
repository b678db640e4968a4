/* Parameter accounting from the config alone (spec §1.3, §2.3). */
#include "dsv3/model.h"

/* Attention block of one layer: q path, kv path, norms inside attention, o_proj. */
static int64_t attn_params(const dsv3_config *c) {
    int64_t H = c->hidden_size, nh = c->num_attention_heads, qk = dsv3_config_qk_head_dim(c);
    int64_t q = c->q_lora_rank > 0 ? c->q_lora_rank * H + c->q_lora_rank + nh * qk * c->q_lora_rank : nh * qk * H;
    int64_t kv = (c->kv_lora_rank + c->qk_rope_head_dim) * H + c->kv_lora_rank +
                 nh * (c->qk_nope_head_dim + c->v_head_dim) * c->kv_lora_rank;
    return q + kv + H * nh * c->v_head_dim;
}

static int64_t expert_params(const dsv3_config *c) { return 3 * c->hidden_size * c->moe_intermediate_size; }

/* One decoder layer; *active gets the per-token activated part. */
static int64_t layer_params(const dsv3_config *c, int64_t l, int64_t *active) {
    int64_t H = c->hidden_size, base = attn_params(c) + 2 * H;
    if (!dsv3_config_is_moe_layer(c, l)) {
        int64_t p = base + 3 * H * c->intermediate_size;
        *active = p;
        return p;
    }
    int64_t router = c->n_routed_experts * H + (c->topk_method == DSV3_TOPK_NOAUX_TC ? c->n_routed_experts : 0);
    int64_t shared = c->n_shared_experts * expert_params(c);
    *active = base + router + shared + c->num_experts_per_tok * expert_params(c);
    return base + router + shared + c->n_routed_experts * expert_params(c);
}

void dsv3_count_params(const dsv3_config *c, dsv3_param_counts *out) {
    int64_t H = c->hidden_size, V = c->vocab_size, act;
    out->embedding = V * H;
    out->head = c->tie_word_embeddings ? 0 : V * H;
    out->attn_per_layer = attn_params(c);
    out->total_main = out->embedding + out->head + H;
    out->activated = out->embedding + out->head + H;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        out->total_main += layer_params(c, l, &act);
        out->activated += act;
    }
    out->mtp_unique = 0;
    for (int64_t k = 0; k < c->num_nextn_predict_layers; k++) {
        /* enorm, hnorm, eh_proj [H, 2H], shared_head.norm, and the decoder block */
        out->mtp_unique += 3 * H + 2 * H * H + layer_params(c, c->num_hidden_layers + k, &act);
    }
    /* the checkpoint stores an embedding and a head copy per MTP module */
    out->mtp = out->mtp_unique + c->num_nextn_predict_layers * 2 * V * H;
}
