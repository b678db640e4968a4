/* Multi-head Latent Attention, absorbed form (spec §3.4-§3.7).
 *
 * The cache holds, per token, [c_KV (kv_lora_rank, normalised) ; k_R (rope
 * dim, rotated)]. For each head the query is absorbed into the latent space:
 *   q~ = W_UK^T q_C  (kv_lora_rank),   score_s = σ·([q~ ; q_R] · cache_s),
 *   latent = Σ_s softmax(score)_s c_KV_s,   o = W_UV latent.
 * Prefill and decode use this same path, so a token's result is bitwise the
 * same however it is batched. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/model_internal.h"

/* Interleaved-pair RoPE (spec §3.5): pair j = (x[2j], x[2j+1]) rotated by pos·f'_j. */
static void rope_apply(float *dst, const float *src, int64_t dim, int64_t pos, const float *freqs, float amp) {
    for (int64_t j = 0; j < dim / 2; j++) {
        float ang = (float)pos * freqs[j];
        float c = cosf(ang) * amp, s = sinf(ang) * amp;
        float x0 = src[2 * j], x1 = src[2 * j + 1];
        dst[2 * j] = x0 * c - x1 * s;
        dst[2 * j + 1] = x0 * s + x1 * c;
    }
}

void dsv3_mla_forward(dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, dsv3_kv_cache **caches, float *x,
                      int64_t n) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const dsv3_backend *be = m->be;
    const int64_t H = c->hidden_size, nh = c->num_attention_heads, nope = c->qk_nope_head_dim,
                  rd = c->qk_rope_head_dim, qk = nope + rd, vd = c->v_head_dim, kvl = c->kv_lora_rank,
                  row = kvl + rd, kvb_stride = nope + vd;
    const float eps = (float)c->rms_norm_eps;

    for (int64_t t = 0; t < n; t++) dsv3_rmsnorm(ws->hn + t * H, x + t * H, L->attn_norm, H, eps);

    /* queries: q_b(q_a_norm(q_a h)) or q_proj h  -> [n, nh*qk] */
    if (c->q_lora_rank > 0) {
        be->matmul(ws->qa, ws->hn, n, &L->q_a);
        for (int64_t t = 0; t < n; t++)
            dsv3_rmsnorm(ws->qa + t * c->q_lora_rank, ws->qa + t * c->q_lora_rank, L->q_a_norm, c->q_lora_rank, eps);
        be->matmul(ws->q, ws->qa, n, &L->q_b);
    } else {
        be->matmul(ws->q, ws->hn, n, &L->q_proj);
    }
    /* keys/values: [ĉ ; k̂_R] = kv_a h; cache row = [kv_a_norm(ĉ) ; RoPE(k̂_R)] (spec §7.10) */
    be->matmul(ws->kv, ws->hn, n, &L->kv_a);
    for (int64_t t = 0; t < n; t++) {
        float *dst = kv_cache_row(caches[ws->item_of[t]], cache_layer, ws->pos[t]);
        const float *src = ws->kv + t * row;
        dsv3_rmsnorm(dst, src, L->kv_a_norm, kvl, eps);
        rope_apply(dst + kvl, src + kvl, rd, ws->pos[t], m->rope_freqs, m->rope_attn_factor);
        for (int64_t h = 0; h < nh; h++) {
            float *qr = ws->q + t * nh * qk + h * qk + nope;
            rope_apply(qr, qr, rd, ws->pos[t], m->rope_freqs, m->rope_attn_factor);
        }
    }
    /* kv_b_proj in f32 (cached at load for small models, else dequantised per call): rows [h*(nope+v), +nope) = W_UK_h, next vd rows = W_UV_h */
    const float *kvb = L->kv_b_f32;
    if (!kvb) {
#pragma omp parallel for schedule(static) if (nh * kvb_stride * kvl > DSV3_OMP_MIN_WORK)
        for (int64_t r = 0; r < nh * kvb_stride; r++) dsv3_weight_row_f32(&L->kv_b, r, ws->kvb + r * kvl);
        kvb = ws->kvb;
    }

    const float sigma = m->softmax_scale;
    const int64_t scratch = row + ws->ctx + kvl;
#pragma omp parallel for schedule(dynamic, 1) if (n * nh * ws->ctx * row > DSV3_OMP_MIN_WORK)
    for (int64_t th = 0; th < n * nh; th++) {
        int64_t t = th / nh, h = th % nh;
        float *qt = ws->head_scratch + omp_get_thread_num() * scratch, *sc = qt + row, *lat = sc + ws->ctx;
        const float *qc = ws->q + t * nh * qk + h * qk;
        const float *wuk = kvb + h * kvb_stride * kvl;
        /* q~[j] = Σ_d W_UK[d][j] q_C[d], d ascending */
        memset(qt, 0, sizeof(float) * kvl);
        for (int64_t d = 0; d < nope; d++) {
            const float *w = wuk + d * kvl;
            float qd = qc[d];
            for (int64_t j = 0; j < kvl; j++) qt[j] += w[j] * qd;
        }
        memcpy(qt + kvl, qc + nope, sizeof(float) * rd);
        /* causal: keys at positions 0..pos (spec §3.6, mask p_s <= p_t) */
        const dsv3_kv_cache *kc = caches[ws->item_of[t]];
        int64_t nk = ws->pos[t] + 1;
        const float *keys = kc->data + cache_layer * kc->cap * row;
        for (int64_t s = 0; s < nk; s++) sc[s] = dsv3_dot_f32(qt, keys + s * row, row) * sigma;
        dsv3_softmax_inplace(sc, nk);
        memset(lat, 0, sizeof(float) * kvl);
        for (int64_t s = 0; s < nk; s++) {
            const float *cs = keys + s * row;
            float p = sc[s];
            for (int64_t j = 0; j < kvl; j++) lat[j] += p * cs[j];
        }
        float *o = ws->attn + t * nh * vd + h * vd;
        const float *wuv = wuk + nope * kvl;
        for (int64_t j = 0; j < vd; j++) o[j] = dsv3_dot_f32(wuv + j * kvl, lat, kvl);
    }
    be->matmul(ws->proj, ws->attn, n, &L->o);
    for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
}
