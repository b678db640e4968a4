/* Model forward (spec §3.10) and the MTP module (spec §4.1). */
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

static int64_t max3(int64_t a, int64_t b, int64_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

void dsv3_ws_free(dsv3_workspace *ws) {
    free(ws->base);
    free(ws->mla_wide);
    memset(ws, 0, sizeof *ws);
}

/* Sizes the scratch for n_tok rows; grows only. No size depends on the context (the attention streams the
 * cache in fixed chunks), so decode steps reuse it (it once took the context too and re-allocated at every
 * decode step: after a 4096-token prompt a fresh mmap of the prompt-sized workspace, its munmap and ~350
 * page faults per step, ~0.9 ms of a 20 ms bench-1b step). */
dsv3_status dsv3_ws_reserve(dsv3_model *m, int64_t n_tok, dsv3_error *err) {
    dsv3_workspace *ws = &m->ws;
    int nthreads = omp_get_max_threads();
    if (ws->base && n_tok <= ws->n_tok && nthreads <= ws->nthreads) return DSV3_OK;
    if (n_tok < ws->n_tok) n_tok = ws->n_tok;
    const dsv3_config *c = &m->cfg;
    int64_t H = c->hidden_size, nh = c->num_attention_heads, qk = dsv3_config_qk_head_dim(c), kvl = c->kv_lora_rank,
            row = kvl + c->qk_rope_head_dim, K = c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1;
    int64_t inter = max3(c->intermediate_size, c->n_shared_experts * c->moe_intermediate_size, c->moe_intermediate_size);
    int64_t sizes[] = {
        n_tok * 2 * H,                         /* x (2H: MTP concat input) */
        n_tok * 2 * H,                         /* hn */
        n_tok * (c->q_lora_rank > 0 ? c->q_lora_rank : 1), /* qa */
        n_tok * nh * qk,                       /* q */
        n_tok * row,                           /* kv */
        n_tok * nh * c->v_head_dim,            /* attn */
        n_tok * H,                             /* proj */
        n_tok * inter, n_tok * inter,          /* ffn_a, ffn_b */
        n_tok * (c->n_routed_experts > 0 ? c->n_routed_experts : 1), /* router logits */
        (int64_t)nthreads * (c->qk_nope_head_dim + c->v_head_dim) * kvl, /* kvb: per-thread kv_b head rows */
        (int64_t)nthreads * dsv3_mla_scratch_per_thread(c), /* MLA scratch */
        (int64_t)nthreads * DSV3_MLA_CHUNK * row,  /* mla_keys: a chunk of a BF16 cache, widened */
        n_tok * H, n_tok * H,                  /* moe_in, moe_out */
        dsv3_moe_token_scratch(c),             /* moe_a: one-token MoE (moe.c) */
        2 * DSV3_MLA_TOKEN_BLOCK * nh * (kvl + 2), /* mla_tok */
        n_tok * K, n_tok * K,                  /* route idx / w */
        n_tok * K, n_tok * K,                  /* tok list / w */
        n_tok, n_tok,                          /* pos, item_of */
        0,                                     /* moe_par: set below */
    };
    /* expert-parallel MoE: a token block within the budget (moe.c) */
    int64_t par_block = 0;
    if (c->n_routed_experts > 0 && n_tok > DSV3_MOE_FEW_MAX && nthreads > 1) {
        par_block = DSV3_MOE_PAR_BUDGET / dsv3_moe_par_per_token(c, nthreads);
        if (par_block > n_tok) par_block = n_tok;
        if (par_block < n_tok && par_block < DSV3_MOE_PAR_MIN_BLOCK) par_block = 0;
        if (m->moe_block_max > 0 && par_block > m->moe_block_max) par_block = m->moe_block_max;
    }
    sizes[sizeof sizes / sizeof sizes[0] - 1] =
        par_block ? par_block * dsv3_moe_par_per_token(c, nthreads) + 2 * (c->n_routed_experts + 1) : 0;
    int nsz = (int)(sizeof sizes / sizeof sizes[0]);
    unsigned long long total = 0;
    for (int i = 0; i < nsz; i++)
        if (dsv3_add_u64(total, (unsigned long long)sizes[i] + 16, &total)) total = ~0ull;
    if (total > ((size_t)-1 / 8)) return dsv3_fail(err, DSV3_ERR_NOMEM, "workspace for %lld tokens overflows", (long long)n_tok);
    float *base = malloc(total * sizeof(float));
    if (!base) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for the forward workspace (%llu floats)", total);
    free(ws->base);
    ws->base = base;
    float **ptrs[] = {&ws->x, &ws->hn, &ws->qa, &ws->q, &ws->kv, &ws->attn, &ws->proj, &ws->ffn_a, &ws->ffn_b,
                      &ws->router_logits, &ws->kvb, &ws->head_scratch, &ws->mla_keys, &ws->moe_in, &ws->moe_out, &ws->moe_a, &ws->mla_tok,
                      (float **)&ws->route_idx, &ws->route_w, (float **)&ws->tok_list, &ws->tok_w,
                      (float **)&ws->pos, (float **)&ws->item_of, &ws->moe_par};
    float *p = base;
    for (int i = 0; i < nsz; i++) {
        *ptrs[i] = p;
        p += sizes[i] + 16; /* keep 64-byte spacing between regions */
    }
    ws->n_tok = n_tok;
    ws->moe_par_tok = par_block;
    ws->nthreads = nthreads;
    return DSV3_OK;
}

void dsv3_model_set_moe_block(dsv3_model *m, int64_t n) {
    m->moe_block_max = n > 0 ? n : 0;
    dsv3_ws_free(&m->ws); /* re-sized at the next forward */
}

void dsv3_embed_rows(const dsv3_model *m, const int32_t *tokens, int64_t n, float *x) {
    int64_t H = m->cfg.hidden_size;
    for (int64_t t = 0; t < n; t++) dsv3_weight_row_f32(&m->embed, tokens[t], x + t * H);
}

static dsv3_status check_tokens(const dsv3_model *m, const int32_t *tok, int64_t n, dsv3_error *err) {
    for (int64_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= m->cfg.vocab_size)
            return dsv3_fail(err, DSV3_ERR_INVALID, "token id %d at index %lld is outside the vocabulary [0, %lld)",
                             tok[i], (long long)i, (long long)m->cfg.vocab_size);
    return DSV3_OK;
}

/* final norm + lm_head for rows of hidden x (into hn), honouring out->logits_mask */
static void head_logits(dsv3_model *m, const float *xn, int64_t n, float *logits, const uint8_t *mask, int packed) {
    int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (!mask) {
        m->be->matmul(logits, xn, n, &m->lm_head);
        return;
    }
    for (int64_t t = 0, k = 0; t < n; t++)
        if (mask[t]) m->be->matmul(logits + (packed ? k++ : t) * V, xn + t * H, 1, &m->lm_head);
}

dsv3_status dsv3_forward(dsv3_model *m, const dsv3_batch_item *items, int n_items, dsv3_forward_out *out,
                         dsv3_error *err) {
    const dsv3_config *c = &m->cfg;
    if (n_items <= 0 || n_items > 65536) return dsv3_fail(err, DSV3_ERR_INVALID, "forward: %d batch items", n_items);
    int64_t N = 0;
    for (int i = 0; i < n_items; i++) {
        const dsv3_batch_item *it = &items[i];
        if (!it->cache || it->n <= 0 || !it->tokens)
            return dsv3_fail(err, DSV3_ERR_INVALID, "forward: batch item %d is empty or has no cache", i);
        if (it->cache->len + it->n > it->cache->cap)
            return dsv3_fail(err, DSV3_ERR_INVALID, "forward: batch item %d needs %lld cache slots, capacity is %lld", i,
                             (long long)(it->cache->len + it->n), (long long)it->cache->cap);
        for (int j = 0; j < i; j++)
            if (items[j].cache == it->cache)
                return dsv3_fail(err, DSV3_ERR_INVALID, "forward: batch items %d and %d share a KV cache", j, i);
        dsv3_status st = check_tokens(m, it->tokens, it->n, err);
        if (st) return st;
        N += it->n;
    }
    (void)dsv3_backend_take_failure(); /* only failures of this call count */
    dsv3_status st = dsv3_ws_reserve(m, N, err);
    if (st) return st;
    dsv3_workspace *ws = &m->ws;
    /* the items' caches: on the stack for decode steps and small batches (no allocation per step), on the
     * heap for large batches */
    dsv3_kv_cache *few[16], **caches = n_items <= 16 ? few : malloc(sizeof *caches * (size_t)n_items);
    if (!caches) return dsv3_fail(err, DSV3_ERR_NOMEM, "forward: out of memory");
    int64_t r = 0;
    for (int i = 0; i < n_items; i++) {
        caches[i] = items[i].cache;
        for (int64_t j = 0; j < items[i].n; j++, r++) {
            ws->pos[r] = (int32_t)(items[i].cache->len + j);
            ws->item_of[r] = i;
        }
        dsv3_embed_rows(m, items[i].tokens, items[i].n, ws->x + (r - items[i].n) * c->hidden_size);
    }
    const int64_t H = c->hidden_size, K = c->num_experts_per_tok;
    int64_t moe_i = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const dsv3_layer *L = &m->layers[l];
        dsv3_mla_forward(m, L, l, caches, ws->x, N);
        int32_t *ridx = out && out->router_idx && L->is_moe ? out->router_idx + moe_i * N * K : NULL;
        float *rw = out && out->router_w && L->is_moe ? out->router_w + moe_i * N * K : NULL;
        dsv3_ffn_forward(m, L, ws->x, N, ridx, rw);
        moe_i += L->is_moe;
        if (out && out->layer_outputs) memcpy(out->layer_outputs + l * N * H, ws->x, sizeof(float) * N * H);
    }
    for (int64_t t = 0; t < N; t++) dsv3_rmsnorm(ws->hn + t * H, ws->x + t * H, m->final_norm, H, (float)c->rms_norm_eps);
    if (out && out->final_hidden) memcpy(out->final_hidden, ws->hn, sizeof(float) * N * H);
    if (out && out->logits) head_logits(m, ws->hn, N, out->logits, out->logits_mask, out->logits_packed);
    if (caches != few) free(caches);
    /* a kernel that could not run left NaNs: the caches do not advance */
    if (dsv3_backend_take_failure()) return dsv3_fail(err, DSV3_ERR_NOMEM, "forward: out of memory in a matmul kernel");
    for (int i = 0; i < n_items; i++) items[i].cache->len += items[i].n;
    return DSV3_OK;
}

static dsv3_status mtp_forward(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                               int64_t n, float *logits, int last_only, float *hidden_out, dsv3_error *err) {
    const dsv3_config *c = &m->cfg;
    if (!m->has_mtp) return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "model has no MTP layer");
    if (n <= 0) return dsv3_fail(err, DSV3_ERR_INVALID, "mtp: no rows");
    if (cache->mtp_len + n > cache->cap)
        return dsv3_fail(err, DSV3_ERR_INVALID, "mtp: needs %lld cache slots, capacity is %lld",
                         (long long)(cache->mtp_len + n), (long long)cache->cap);
    dsv3_status st = check_tokens(m, next_tokens, n, err);
    if (st) return st;
    st = dsv3_ws_reserve(m, n, err);
    if (st) return st;
    dsv3_workspace *ws = &m->ws;
    const int64_t H = c->hidden_size;
    const float eps = (float)c->rms_norm_eps;
    const dsv3_mtp_module *mt = &m->mtp[0];
    /* z_i = eh_proj [enorm(Emb(t_{i+1})) ; hnorm(h_i)]  (embedding half first, spec §4.1) */
    dsv3_embed_rows(m, next_tokens, n, ws->x);
    for (int64_t t = n - 1; t >= 0; t--) { /* build [n, 2H] rows in hn */
        dsv3_rmsnorm(ws->hn + t * 2 * H, ws->x + t * H, mt->enorm, H, eps);
        dsv3_rmsnorm(ws->hn + t * 2 * H + H, hidden + t * H, mt->hnorm, H, eps);
    }
    m->be->matmul(ws->x, ws->hn, n, &mt->eh_proj);
    for (int64_t t = 0; t < n; t++) {
        ws->pos[t] = (int32_t)(cache->mtp_len + t); /* RoPE position of h_i (spec §4.1) */
        ws->item_of[t] = 0;
    }
    dsv3_kv_cache *caches[1] = {cache};
    int64_t r0 = 0; /* first row that runs the whole block */
    if (last_only && n > 1) {
        /* the MTP block is one layer: of the earlier rows only the cache rows are needed (their outputs
         * feed nothing), so those skip the queries, attention, o_proj and FFN; the last row runs alone
         * (batch invariance: the same bits as in the full n-row pass) */
        dsv3_mla_append_kv(m, &mt->block, c->num_hidden_layers, caches, ws->x, n - 1);
        r0 = n - 1;
        ws->pos[0] = ws->pos[r0];
    }
    float *xr = ws->x + r0 * H;
    const int64_t nr = n - r0;
    dsv3_mla_forward(m, &mt->block, c->num_hidden_layers, caches, xr, nr);
    dsv3_ffn_forward(m, &mt->block, xr, nr, NULL, NULL);
    for (int64_t t = 0; t < nr; t++) dsv3_rmsnorm(ws->hn + t * H, xr + t * H, mt->head_norm, H, eps);
    if (hidden_out) memcpy(hidden_out, ws->hn + (nr - 1) * H, sizeof(float) * H); /* after every read of hidden */
    if (logits && last_only) {
        /* the draft's head: rows [0, Vd) of lm_head; ids past the draft vocabulary get -inf */
        const int64_t V = c->vocab_size, Vd = m->mtp_draft_vocab ? m->mtp_draft_vocab : V;
        m->be->matmul_rows(logits, Vd, ws->hn + (nr - 1) * H, 1, &m->lm_head, 0, Vd);
        for (int64_t v = Vd; v < V; v++) logits[v] = -INFINITY;
    } else if (logits) {
        head_logits(m, ws->hn, n, logits, NULL, 0);
    }
    if (dsv3_backend_take_failure()) return dsv3_fail(err, DSV3_ERR_NOMEM, "mtp: out of memory in a matmul kernel");
    cache->mtp_len += n;
    return DSV3_OK;
}

dsv3_status dsv3_mtp_forward(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                             int64_t n, float *logits, dsv3_error *err) {
    return mtp_forward(m, cache, hidden, next_tokens, n, logits, 0, NULL, err);
}

dsv3_status dsv3_mtp_forward_last(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                                  int64_t n, float *logits, dsv3_error *err) {
    return mtp_forward(m, cache, hidden, next_tokens, n, logits, 1, NULL, err);
}

dsv3_status dsv3_mtp_draft(dsv3_model *m, dsv3_kv_cache *cache, const float *hidden, const int32_t *next_tokens,
                           int64_t n, float *logits, float *hidden_out, dsv3_error *err) {
    return mtp_forward(m, cache, hidden, next_tokens, n, logits, 1, hidden_out, err);
}
