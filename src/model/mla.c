/* Multi-head Latent Attention, absorbed form (spec §3.4-§3.7).
 *
 * The cache holds, per token, [c_KV (kv_lora_rank, normalised) ; k_R (rope
 * dim, rotated)]. For each head the query is absorbed into the latent space:
 *   q~ = W_UK^T q_C  (kv_lora_rank),   score_s = σ·([q~ ; q_R] · cache_s),
 *   latent = Σ_s softmax(score)_s c_KV_s,   o = W_UV latent.
 * Prefill and decode use this same path, so a token's result is bitwise the
 * same however it is batched.
 *
 * Speed: one work item is (token, group of heads); it computes q~ for its
 * heads, then streams the token's cache rows in tiles of 16, each tile used
 * by every head of the group (scores), and again for the latent sums, so the
 * cache is read twice per group instead of twice per head (at 4096 tokens of
 * context a layer's cache is 4096 x 576 floats). */
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

/* ---- fixed-order kernels (explicit fmaf: the rounding of every step is fixed by the source, whatever
 * the compiler vectorises, so a head's result does not depend on tiling or grouping) ---- */

#define LANES 16    /* partial sums of a dot product: element j goes to lane j % 16 */
#define ROW_TILE 16 /* cache rows per tile (16 x 576 floats = 36 KB) */

/* Combines the 16 lanes pairwise: (0+8, 1+9, ...), then (0+4, ...), (0+2, ...), 0+1. */
static inline float reduce16(const float *a) {
    float b[8], c[4];
    for (int k = 0; k < 8; k++) b[k] = a[k] + a[k + 8];
    for (int k = 0; k < 4; k++) c[k] = b[k] + b[k + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* One dot product q . r of length len in the lane order above (same as dot_rows). */
static inline float dot1(const float *restrict q, const float *restrict r, int64_t len) {
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= len; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] = fmaf(q[j + k], r[j + k], acc[k]);
    for (int k = 0; j + k < len; k++) acc[k] = fmaf(q[j + k], r[j + k], acc[k]);
    return reduce16(acc);
}

/* out[i] = scale * (q . rows[i]) for i < nrows (rows at stride ld), 4 rows at a time so the q chunk is
 * loaded once for 4 independent accumulator chains. Each dot equals dot1(q, rows[i], len). */
static void dot_rows(const float *restrict q, const float *restrict rows, int64_t ld, int64_t nrows, int64_t len,
                     float scale, float *restrict out) {
    int64_t i = 0;
    for (; i + 4 <= nrows; i += 4) {
        const float *r0 = rows + i * ld, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
        float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
        int64_t j = 0;
        for (; j + LANES <= len; j += LANES)
            for (int k = 0; k < LANES; k++) {
                float x = q[j + k];
                a0[k] = fmaf(x, r0[j + k], a0[k]);
                a1[k] = fmaf(x, r1[j + k], a1[k]);
                a2[k] = fmaf(x, r2[j + k], a2[k]);
                a3[k] = fmaf(x, r3[j + k], a3[k]);
            }
        for (int k = 0; j + k < len; k++) {
            float x = q[j + k];
            a0[k] = fmaf(x, r0[j + k], a0[k]);
            a1[k] = fmaf(x, r1[j + k], a1[k]);
            a2[k] = fmaf(x, r2[j + k], a2[k]);
            a3[k] = fmaf(x, r3[j + k], a3[k]);
        }
        out[i] = reduce16(a0) * scale;
        out[i + 1] = reduce16(a1) * scale;
        out[i + 2] = reduce16(a2) * scale;
        out[i + 3] = reduce16(a3) * scale;
    }
    for (; i < nrows; i++) out[i] = dot1(q, rows + i * ld, len) * scale;
}

/* q~[j] = sum_d W_UK[d][j] q_C[d], d ascending (wuk: [nope][kvl]). */
static void absorb_query(float *restrict qt, const float *restrict qc, const float *restrict wuk, int64_t nope,
                         int64_t kvl) {
    memset(qt, 0, sizeof(float) * (size_t)kvl);
    for (int64_t d = 0; d < nope; d++) {
        const float *w = wuk + d * kvl;
        const float qd = qc[d];
        for (int64_t j = 0; j < kvl; j++) qt[j] = fmaf(w[j], qd, qt[j]);
    }
}

/* lat[j] = fma(p[s], rows[s][j], lat[j]) for s = 0..ns-1 in order, j < len; 64 columns at a time are kept
 * in registers across the ns rows. */
static void accumulate_rows(float *restrict lat, const float *restrict p, const float *restrict rows, int64_t ld,
                            int64_t ns, int64_t len) {
    int64_t j = 0;
    for (; j + 64 <= len; j += 64) {
        float acc[64];
        for (int k = 0; k < 64; k++) acc[k] = lat[j + k];
        for (int64_t s = 0; s < ns; s++) {
            const float ps = p[s], *r = rows + s * ld + j;
            for (int k = 0; k < 64; k++) acc[k] = fmaf(ps, r[k], acc[k]);
        }
        for (int k = 0; k < 64; k++) lat[j + k] = acc[k];
    }
    for (int64_t s = 0; s < ns; s++) {
        const float ps = p[s], *r = rows + s * ld;
        for (int64_t k = j; k < len; k++) lat[k] = fmaf(ps, r[k], lat[k]);
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
    /* Work items (token, group of G consecutive heads): each item reads its token's cache rows once per
     * pass for all G heads. G only changes which heads share a pass, never a head's arithmetic, so the
     * results do not depend on it; it is chosen so that there are enough items for the threads. */
    const int nthr = omp_get_max_threads();
    int64_t G = nh < DSV3_MLA_MAX_GROUP ? nh : DSV3_MLA_MAX_GROUP;
    if (n < nthr) {
        int64_t per_tok = (nthr + n - 1) / n; /* items wanted per token */
        int64_t g = (nh + per_tok - 1) / per_tok;
        if (g < G) G = g < 1 ? 1 : g;
    }
    const int64_t ngroups = (nh + G - 1) / G, scratch = dsv3_mla_scratch_per_thread(c, ws->ctx);
#pragma omp parallel for schedule(dynamic, 1) if (n * nh * ws->ctx * row > DSV3_OMP_MIN_WORK)
    for (int64_t it = 0; it < n * ngroups; it++) {
        const int64_t t = it / ngroups, h0 = (it % ngroups) * G, gh = nh - h0 < G ? nh - h0 : G;
        float *qt = ws->head_scratch + omp_get_thread_num() * scratch; /* [gh][row] */
        float *lat = qt + DSV3_MLA_MAX_GROUP * row;                     /* [gh][kvl] */
        float *sc = lat + DSV3_MLA_MAX_GROUP * kvl;                     /* [gh][ctx] */
        const dsv3_kv_cache *kc = caches[ws->item_of[t]];
        const int64_t nk = ws->pos[t] + 1; /* causal: keys at positions 0..pos (spec §3.6, mask p_s <= p_t) */
        const float *keys = kc->data + cache_layer * kc->cap * row;
        for (int64_t g = 0; g < gh; g++) {
            const int64_t h = h0 + g;
            const float *qc = ws->q + t * nh * qk + h * qk;
            absorb_query(qt + g * row, qc, kvb + h * kvb_stride * kvl, nope, kvl);
            memcpy(qt + g * row + kvl, qc + nope, sizeof(float) * rd);
        }
        /* scores: tiles of cache rows, each tile used by all gh heads while it is in L1 */
        for (int64_t s0 = 0; s0 < nk; s0 += ROW_TILE) {
            const int64_t ns = nk - s0 < ROW_TILE ? nk - s0 : ROW_TILE;
            for (int64_t g = 0; g < gh; g++)
                dot_rows(qt + g * row, keys + s0 * row, row, ns, row, sigma, sc + g * ws->ctx + s0);
        }
        for (int64_t g = 0; g < gh; g++) dsv3_softmax_inplace(sc + g * ws->ctx, nk);
        /* latent_g = sum_s p_g[s] c_s, s ascending per element */
        memset(lat, 0, sizeof(float) * (size_t)(gh * kvl));
        for (int64_t s0 = 0; s0 < nk; s0 += ROW_TILE) {
            const int64_t ns = nk - s0 < ROW_TILE ? nk - s0 : ROW_TILE;
            for (int64_t g = 0; g < gh; g++)
                accumulate_rows(lat + g * kvl, sc + g * ws->ctx + s0, keys + s0 * row, row, ns, kvl);
        }
        /* o_h = W_UV_h latent_h */
        for (int64_t g = 0; g < gh; g++) {
            const int64_t h = h0 + g;
            const float *wuv = kvb + h * kvb_stride * kvl + nope * kvl;
            dot_rows(lat + g * kvl, wuv, kvl, vd, kvl, 1.0f, ws->attn + t * nh * vd + h * vd);
        }
    }
    be->matmul(ws->proj, ws->attn, n, &L->o);
    for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
}
