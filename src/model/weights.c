/* Model loading: binds checkpoint tensors to the layer structs, checking
 * presence, dtype and shape against config.json (spec §2.3). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

typedef struct {
    dsv3_model *m;
    const char *dir;
    dsv3_error *err;
    int streamed; /* dsv3_weight.streamed of every matrix */
} loader;

/* Checkpoints above this are taken to be read from memory at every decode step (dsv3_weight.streamed):
 * twice a 32 MB last-level cache slice. The default model (27 MB) stays below: its weights live in cache,
 * where the prefetches only cost (MTP verification steps 2-6% slower). */
#define DSV3_STREAMED_BYTES (64ull << 20)

static void *track(dsv3_model *m, void *p) {
    if (!p) return NULL;
    if (m->n_allocs == m->cap_allocs) {
        size_t nc = m->cap_allocs ? 2 * m->cap_allocs : 256;
        void **na = realloc(m->allocs, nc * sizeof *na);
        if (!na) { free(p); return NULL; }
        m->allocs = na;
        m->cap_allocs = nc;
    }
    m->allocs[m->n_allocs++] = p;
    return p;
}

static const dsv3_tensor_view *find(loader *ld, const char *name, int required) {
    const dsv3_tensor_view *t = dsv3_ckpt_find(ld->m->ckpt, name);
    if (!t && required) dsv3_fail(ld->err, DSV3_ERR_NOT_FOUND, "%s: missing tensor '%s'", ld->dir, name);
    return t;
}

static int is_float_dtype(dsv3_dtype d) {
    return d == DSV3_F32 || d == DSV3_BF16 || d == DSV3_F16 || d == DSV3_F8_E4M3 || d == DSV3_F8_E5M2;
}

/* Binds a 2-D weight [rows, cols]; FP8 weights need "<name>_scale_inv". */
static dsv3_status bind_matrix(loader *ld, const char *name, int64_t rows, int64_t cols, dsv3_weight *w) {
    const dsv3_tensor_view *t = find(ld, name, 1);
    if (!t) return DSV3_ERR_NOT_FOUND;
    if (!is_float_dtype(t->dtype))
        return dsv3_fail(ld->err, DSV3_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype %s", t->file, name,
                         dsv3_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return dsv3_fail(ld->err, DSV3_ERR_FORMAT, "%s: tensor '%s' has shape %s[%lld,%lld] but the config needs [%lld,%lld]",
                         t->file, name, t->ndim == 2 ? "" : "(rank != 2) ", (long long)(t->ndim > 0 ? t->shape[0] : 0),
                         (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)rows, (long long)cols);
    memset(w, 0, sizeof *w);
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->streamed = ld->streamed;
    if (t->dtype == DSV3_F8_E4M3 || t->dtype == DSV3_F8_E5M2) {
        char sname[512];
        snprintf(sname, sizeof sname, "%s_scale_inv", name);
        const dsv3_tensor_view *s = find(ld, sname, 1);
        if (!s) return DSV3_ERR_NOT_FOUND;
        const dsv3_config *c = &ld->m->cfg;
        int64_t br = c->fp8_block[0] > 0 ? c->fp8_block[0] : 128, bc = c->fp8_block[1] > 0 ? c->fp8_block[1] : 128;
        int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
        if (s->dtype != DSV3_F32 || s->ndim != 2 || s->shape[0] != sr || s->shape[1] != sc)
            return dsv3_fail(ld->err, DSV3_ERR_FORMAT, "%s: tensor '%s' must be F32 [%lld,%lld] (blocks of %lldx%lld for [%lld,%lld])",
                             s->file, sname, (long long)sr, (long long)sc, (long long)br, (long long)bc,
                             (long long)rows, (long long)cols);
        float *copy = track(ld->m, malloc((size_t)(sr * sc) * sizeof(float)));
        if (!copy) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory copying '%s'", sname);
        memcpy(copy, s->data, (size_t)(sr * sc) * sizeof(float));
        w->scale = copy;
        w->block_r = br;
        w->block_c = bc;
        w->scale_rows = sr;
        w->scale_cols = sc;
    }
    return DSV3_OK;
}

/* Binds a 1-D vector [n] as an f32 copy (norm weights, router bias). */
static dsv3_status bind_vector(loader *ld, const char *name, int64_t n, float **out) {
    const dsv3_tensor_view *t = find(ld, name, 1);
    if (!t) return DSV3_ERR_NOT_FOUND;
    if (t->ndim != 1 || t->shape[0] != n)
        return dsv3_fail(ld->err, DSV3_ERR_FORMAT, "%s: tensor '%s' must have shape [%lld]", t->file, name, (long long)n);
    if (t->dtype != DSV3_F32 && t->dtype != DSV3_BF16 && t->dtype != DSV3_F16)
        return dsv3_fail(ld->err, DSV3_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype %s", t->file, name,
                         dsv3_dtype_name(t->dtype));
    float *v = track(ld->m, malloc((size_t)n * sizeof(float)));
    if (!v) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory for '%s'", name);
    dsv3_convert_to_f32(t->dtype, t->data, v, (size_t)n);
    *out = v;
    return DSV3_OK;
}

/* Binds a 2-D tensor as an f32 copy (router weights). */
static dsv3_status bind_matrix_f32(loader *ld, const char *name, int64_t rows, int64_t cols, float **out) {
    dsv3_weight w;
    dsv3_status st = bind_matrix(ld, name, rows, cols, &w);
    if (st) return st;
    float *v = track(ld->m, malloc((size_t)(rows * cols) * sizeof(float)));
    if (!v) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory for '%s'", name);
    for (int64_t r = 0; r < rows; r++) dsv3_weight_row_f32(&w, r, v + r * cols);
    *out = v;
    return DSV3_OK;
}

#define TRY(x) do { dsv3_status s_ = (x); if (s_ != DSV3_OK) return s_; } while (0)

static dsv3_status bind_ffn(loader *ld, const char *prefix, int64_t inter, dsv3_ffn *f) {
    const dsv3_config *c = &ld->m->cfg;
    char name[512];
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    TRY(bind_matrix(ld, name, inter, c->hidden_size, &f->gate));
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    TRY(bind_matrix(ld, name, inter, c->hidden_size, &f->up));
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    TRY(bind_matrix(ld, name, c->hidden_size, inter, &f->down));
    return DSV3_OK;
}

/* One decoder block "model.layers.<idx>.*"; moe selects the FFN form. */
static dsv3_status bind_layer(loader *ld, int64_t idx, int moe, dsv3_layer *L) {
    const dsv3_config *c = &ld->m->cfg;
    char p[256], name[512];
    int64_t H = c->hidden_size, nh = c->num_attention_heads, qk = dsv3_config_qk_head_dim(c);
    snprintf(p, sizeof p, "model.layers.%lld", (long long)idx);
#define NAME(fmt) (snprintf(name, sizeof name, "%s." fmt, p), name)
    TRY(bind_vector(ld, NAME("input_layernorm.weight"), H, &L->attn_norm));
    TRY(bind_vector(ld, NAME("post_attention_layernorm.weight"), H, &L->ffn_norm));
    if (c->q_lora_rank > 0) {
        TRY(bind_matrix(ld, NAME("self_attn.q_a_proj.weight"), c->q_lora_rank, H, &L->q_a));
        TRY(bind_vector(ld, NAME("self_attn.q_a_layernorm.weight"), c->q_lora_rank, &L->q_a_norm));
        TRY(bind_matrix(ld, NAME("self_attn.q_b_proj.weight"), nh * qk, c->q_lora_rank, &L->q_b));
    } else {
        TRY(bind_matrix(ld, NAME("self_attn.q_proj.weight"), nh * qk, H, &L->q_proj));
    }
    TRY(bind_matrix(ld, NAME("self_attn.kv_a_proj_with_mqa.weight"), c->kv_lora_rank + c->qk_rope_head_dim, H, &L->kv_a));
    TRY(bind_vector(ld, NAME("self_attn.kv_a_layernorm.weight"), c->kv_lora_rank, &L->kv_a_norm));
    TRY(bind_matrix(ld, NAME("self_attn.kv_b_proj.weight"), nh * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
                    &L->kv_b));
    TRY(bind_matrix(ld, NAME("self_attn.o_proj.weight"), H, nh * c->v_head_dim, &L->o));
    L->is_moe = moe;
    if (!moe) {
        snprintf(name, sizeof name, "%s.mlp", p);
        return bind_ffn(ld, name, c->intermediate_size, &L->mlp);
    }
    int64_t E = c->n_routed_experts;
    TRY(bind_matrix_f32(ld, NAME("mlp.gate.weight"), E, H, &L->router));
    if (c->topk_method == DSV3_TOPK_NOAUX_TC) TRY(bind_vector(ld, NAME("mlp.gate.e_score_correction_bias"), E, &L->router_bias));
    L->experts = track(ld->m, calloc((size_t)E, sizeof(dsv3_ffn)));
    if (!L->experts) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory for experts");
    for (int64_t e = 0; e < E; e++) {
        snprintf(name, sizeof name, "%s.mlp.experts.%lld", p, (long long)e);
        TRY(bind_ffn(ld, name, c->moe_intermediate_size, &L->experts[e]));
    }
    if (c->n_shared_experts > 0) {
        snprintf(name, sizeof name, "%s.mlp.shared_experts", p);
        TRY(bind_ffn(ld, name, c->n_shared_experts * c->moe_intermediate_size, &L->shared));
    }
#undef NAME
    return DSV3_OK;
}

static dsv3_status load_all(loader *ld) {
    dsv3_model *m = ld->m;
    const dsv3_config *c = &m->cfg;
    int64_t H = c->hidden_size, V = c->vocab_size;
    TRY(bind_matrix(ld, "model.embed_tokens.weight", V, H, &m->embed));
    if (m->embed.dtype == DSV3_F8_E4M3 || m->embed.dtype == DSV3_F8_E5M2)
        return dsv3_fail(ld->err, DSV3_ERR_UNSUPPORTED, "%s: FP8 embedding is not supported", ld->dir);
    TRY(bind_vector(ld, "model.norm.weight", H, &m->final_norm));
    if (c->tie_word_embeddings && !dsv3_ckpt_find(m->ckpt, "lm_head.weight")) m->lm_head = m->embed;
    else TRY(bind_matrix(ld, "lm_head.weight", V, H, &m->lm_head));
    m->layers = track(m, calloc((size_t)c->num_hidden_layers, sizeof(dsv3_layer)));
    if (!m->layers) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory");
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        int moe = dsv3_config_is_moe_layer(c, l);
        m->n_moe_layers += moe;
        TRY(bind_layer(ld, l, moe, &m->layers[l]));
    }
    /* MTP modules at layer indices num_hidden_layers + k (spec §2.3); optional,
     * but when the first is present all num_nextn_predict_layers must be. */
    if (c->num_nextn_predict_layers > DSV3_MAX_MTP)
        return dsv3_fail(ld->err, DSV3_ERR_UNSUPPORTED, "%s: num_nextn_predict_layers %lld > %d supported", ld->dir,
                         (long long)c->num_nextn_predict_layers, DSV3_MAX_MTP);
    for (int64_t k = 0; k < c->num_nextn_predict_layers; k++) {
        char name[256];
        int64_t idx = c->num_hidden_layers + k;
        snprintf(name, sizeof name, "model.layers.%lld.eh_proj.weight", (long long)idx);
        if (k == 0 && !dsv3_ckpt_find(m->ckpt, name)) break; /* checkpoint without MTP weights */
        dsv3_mtp_module *mt = &m->mtp[k];
        TRY(bind_matrix(ld, name, H, 2 * H, &mt->eh_proj));
        snprintf(name, sizeof name, "model.layers.%lld.enorm.weight", (long long)idx);
        TRY(bind_vector(ld, name, H, &mt->enorm));
        snprintf(name, sizeof name, "model.layers.%lld.hnorm.weight", (long long)idx);
        TRY(bind_vector(ld, name, H, &mt->hnorm));
        snprintf(name, sizeof name, "model.layers.%lld.shared_head.norm.weight", (long long)idx);
        TRY(bind_vector(ld, name, H, &mt->head_norm));
        TRY(bind_layer(ld, idx, dsv3_config_is_moe_layer(c, idx), &mt->block));
        m->n_mtp = (int)k + 1;
    }
    m->has_mtp = m->n_mtp > 0;
    /* Absorbed MLA reads W_UK / W_UV every call (spec §3.7): BF16 and F32 kv_b_proj directly from the
     * checkpoint; other dtypes (FP8) are dequantised once here when all layers' fit in 256 MB as f32,
     * else per head where they are used (mla.c). The values, hence the bits, are the same either way.
     * DSV3_KVB_CACHE=none|all overrides that (tests compare the three). */
    int64_t kvb_n = c->num_attention_heads * (c->qk_nope_head_dim + c->v_head_dim) * c->kv_lora_rank;
    const char *kvb_env = getenv("DSV3_KVB_CACHE");
    const int cache_none = kvb_env && !strcmp(kvb_env, "none"), cache_all = kvb_env && !strcmp(kvb_env, "all");
    if (!cache_none && (cache_all || (c->num_hidden_layers + m->n_mtp) * kvb_n * (int64_t)sizeof(float) <= ((int64_t)256 << 20))) {
        for (int64_t l = 0; l < c->num_hidden_layers + m->n_mtp; l++) {
            dsv3_layer *L = l < c->num_hidden_layers ? &m->layers[l] : &m->mtp[l - c->num_hidden_layers].block;
            if (!cache_all && (L->kv_b.dtype == DSV3_BF16 || L->kv_b.dtype == DSV3_F32)) continue;
            L->kv_b_f32 = track(m, malloc(sizeof(float) * kvb_n));
            if (!L->kv_b_f32) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory");
            for (int64_t r = 0; r < L->kv_b.rows; r++) dsv3_weight_row_f32(&L->kv_b, r, L->kv_b_f32 + r * c->kv_lora_rank);
        }
    }
    int64_t half = c->qk_rope_head_dim / 2;
    m->rope_freqs = track(m, malloc((size_t)half * sizeof(float)));
    if (!m->rope_freqs) return dsv3_fail(ld->err, DSV3_ERR_NOMEM, "out of memory");
    dsv3_config_rope_freqs(c, m->rope_freqs);
    m->softmax_scale = (float)dsv3_config_softmax_scale(c);
    m->rope_attn_factor = (float)dsv3_config_rope_attn_factor(c);
    return DSV3_OK;
}

dsv3_status dsv3_model_load(const char *dir, dsv3_model **out, dsv3_error *err) {
    *out = NULL;
    dsv3_model *m = calloc(1, sizeof *m);
    if (!m) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    dsv3_status st = dsv3_config_load(path, &m->cfg, err);
    if (!st) st = dsv3_ckpt_open(dir, &m->ckpt, err);
    m->be = dsv3_backend_cpu();
    if (!st) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < dsv3_ckpt_count(m->ckpt); i++) bytes += dsv3_ckpt_tensor(m->ckpt, i)->nbytes;
        loader ld = {m, dir, err, bytes > DSV3_STREAMED_BYTES};
        st = load_all(&ld);
    }
    if (st) {
        dsv3_model_free(m);
        return st;
    }
    *out = m;
    return DSV3_OK;
}

void dsv3_model_free(dsv3_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_allocs; i++) free(m->allocs[i]);
    free(m->allocs);
    dsv3_ws_free(&m->ws);
    if (m->ckpt) dsv3_ckpt_close(m->ckpt);
    free(m);
}

const dsv3_config *dsv3_model_config(const dsv3_model *m) { return &m->cfg; }
int dsv3_model_has_mtp(const dsv3_model *m) { return m->has_mtp; }
void dsv3_model_set_mtp_draft_vocab(dsv3_model *m, int64_t n) {
    m->mtp_draft_vocab = n > 0 && n < m->cfg.vocab_size ? n : 0;
}
int64_t dsv3_model_mtp_draft_vocab_default(const dsv3_model *m) {
    return m->cfg.vocab_size >= 8192 ? m->cfg.vocab_size / 8 : 0;
}
int64_t dsv3_model_n_moe_layers(const dsv3_model *m) { return m->n_moe_layers; }
