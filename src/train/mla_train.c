/* MLA for training, expanded ("naive") form (spec §3.4-§3.6): forward saves
 * activations, backward right below it. Per head:
 *   k_C = W_UK c, v = W_UV c (from kv_b_proj), q = [q_C ; RoPE(q_R)], k = [k_C ; RoPE(k_R)],
 *   a = σ q·k (causal), P = softmax(a), o = P v, out = o_proj [o_0 .. o_{H-1}]. */
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

struct mla_cache {
    float *x_in, *hn, *qa_pre, *qa, *q, *kv_pre, *ckv_pre, *c, *kr, *kvb, *P, *o;
};

void mla_cache_release(mla_cache *c) {
    if (!c) return;
    float **ptrs[] = {&c->x_in, &c->hn, &c->qa_pre, &c->qa, &c->q, &c->kv_pre, &c->ckv_pre, &c->c, &c->kr, &c->kvb, &c->P, &c->o};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) free(*ptrs[i]);
    free(c);
}

mla_cache *mla_train_forward(const dsv3_train_model *tm, const tlayer *L, tseq sq, float *x) {
    const dsv3_config *cf = &tm->cfg;
    const int64_t n = sq.B * sq.S, S = sq.S, H = cf->hidden_size, nh = cf->num_attention_heads,
                  nope = cf->qk_nope_head_dim, rd = cf->qk_rope_head_dim, qk = nope + rd, vd = cf->v_head_dim,
                  kvl = cf->kv_lora_rank, qlr = cf->q_lora_rank, kvs = nope + vd;
    const float eps = (float)cf->rms_norm_eps, sigma = tm->sigma;
    mla_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->x_in = malloc(sizeof(float) * n * H);
    c->hn = malloc(sizeof(float) * n * H);
    c->qa_pre = malloc(sizeof(float) * n * (qlr > 0 ? qlr : 1));
    c->qa = malloc(sizeof(float) * n * (qlr > 0 ? qlr : 1));
    c->q = malloc(sizeof(float) * n * nh * qk);
    c->kv_pre = malloc(sizeof(float) * n * (kvl + rd));
    c->ckv_pre = malloc(sizeof(float) * n * kvl);
    c->c = malloc(sizeof(float) * n * kvl);
    c->kr = malloc(sizeof(float) * n * rd);
    c->kvb = malloc(sizeof(float) * n * nh * kvs);
    c->P = calloc((size_t)(sq.B * nh * S * S), sizeof(float));
    c->o = malloc(sizeof(float) * n * nh * vd);
    if (!c->x_in || !c->hn || !c->qa_pre || !c->qa || !c->q || !c->kv_pre || !c->ckv_pre || !c->c || !c->kr ||
        !c->kvb || !c->P || !c->o) {
        mla_cache_release(c);
        return NULL;
    }
    memcpy(c->x_in, x, sizeof(float) * n * H);
    t_rms(c->hn, x, n, L->attn_norm, eps);
    if (qlr > 0) {
        t_mm(c->qa_pre, c->hn, n, L->q_a);
        t_rms(c->qa, c->qa_pre, n, L->q_a_norm, eps);
        t_mm(c->q, c->qa, n, L->q_b);
    } else {
        t_mm(c->q, c->hn, n, L->q_proj);
    }
    t_mm(c->kv_pre, c->hn, n, L->kv_a);
    for (int64_t t = 0; t < n; t++) {
        memcpy(c->ckv_pre + t * kvl, c->kv_pre + t * (kvl + rd), sizeof(float) * kvl);
        memcpy(c->kr + t * rd, c->kv_pre + t * (kvl + rd) + kvl, sizeof(float) * rd);
        t_rope(c->kr + t * rd, rd, t % S, tm->rope_freqs, tm->rope_amp, 0);
        for (int64_t h = 0; h < nh; h++) t_rope(c->q + t * nh * qk + h * qk + nope, rd, t % S, tm->rope_freqs, tm->rope_amp, 0);
    }
    t_rms(c->c, c->ckv_pre, n, L->kv_a_norm, eps);
    t_mm(c->kvb, c->c, n, L->kv_b);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * S * nh * qk > DSV3_OMP_MIN_WORK)
    for (int64_t b = 0; b < sq.B; b++)
        for (int64_t h = 0; h < nh; h++) {
            for (int64_t i = 0; i < S; i++) {
                int64_t ti = b * S + i;
                const float *qi = c->q + ti * nh * qk + h * qk;
                float *p = c->P + ((b * nh + h) * S + i) * S;
                for (int64_t j = 0; j <= i; j++) {
                    int64_t tj = b * S + j;
                    p[j] = sigma * (dsv3_dot_f32(qi, c->kvb + tj * nh * kvs + h * kvs, nope) +
                                    dsv3_dot_f32(qi + nope, c->kr + tj * rd, rd));
                }
                dsv3_softmax_inplace(p, i + 1);
                float *o = c->o + ti * nh * vd + h * vd;
                memset(o, 0, sizeof(float) * vd);
                for (int64_t j = 0; j <= i; j++) {
                    const float *v = c->kvb + (b * S + j) * nh * kvs + h * kvs + nope;
                    for (int64_t d = 0; d < vd; d++) o[d] += p[j] * v[d];
                }
            }
        }
    float *out = malloc(sizeof(float) * n * H);
    if (!out) {
        mla_cache_release(c);
        return NULL;
    }
    t_mm(out, c->o, n, L->o);
    for (int64_t i = 0; i < n * H; i++) x[i] += out[i];
    free(out);
    return c;
}

void mla_train_backward(dsv3_train_model *tm, tlayer *L, tseq sq, mla_cache *c, float *dx) {
    const dsv3_config *cf = &tm->cfg;
    const int64_t n = sq.B * sq.S, S = sq.S, H = cf->hidden_size, nh = cf->num_attention_heads,
                  nope = cf->qk_nope_head_dim, rd = cf->qk_rope_head_dim, qk = nope + rd, vd = cf->v_head_dim,
                  kvl = cf->kv_lora_rank, qlr = cf->q_lora_rank, kvs = nope + vd;
    const float eps = (float)cf->rms_norm_eps, sigma = tm->sigma;
    float *dO = malloc(sizeof(float) * n * nh * vd), *dq = calloc((size_t)(n * nh * qk), sizeof(float)),
          *dkvb = calloc((size_t)(n * nh * kvs), sizeof(float)), *dkr_h = calloc((size_t)(n * nh * rd), sizeof(float)),
          *dc = malloc(sizeof(float) * n * kvl), *dckv = malloc(sizeof(float) * n * kvl),
          *dkv = malloc(sizeof(float) * n * (kvl + rd)), *dhn = malloc(sizeof(float) * n * H),
          *dqa = malloc(sizeof(float) * n * (qlr > 0 ? qlr : 1)), *dqa_pre = malloc(sizeof(float) * n * (qlr > 0 ? qlr : 1)),
          *dp = malloc(sizeof(float) * sq.B * nh * S); /* per (b,h) row of dP */
    t_mm_bwd(dO, 0, dx, c->o, n, L->o);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * S * nh * qk > DSV3_OMP_MIN_WORK)
    for (int64_t b = 0; b < sq.B; b++)
        for (int64_t h = 0; h < nh; h++) {
            float *dpr = dp + (b * nh + h) * S;
            for (int64_t i = 0; i < S; i++) {
                int64_t ti = b * S + i;
                const float *p = c->P + ((b * nh + h) * S + i) * S, *doi = dO + ti * nh * vd + h * vd,
                            *qi = c->q + ti * nh * qk + h * qk;
                float *dqi = dq + ti * nh * qk + h * qk;
                /* dP_ij = dO_i · v_j;  da_ij = P_ij (dP_ij − Σ_j' P_ij' dP_ij') */
                float sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    dpr[j] = dsv3_dot_f32(doi, c->kvb + (b * S + j) * nh * kvs + h * kvs + nope, vd);
                    sum += p[j] * dpr[j];
                }
                for (int64_t j = 0; j <= i; j++) {
                    int64_t tj = b * S + j;
                    float da = sigma * p[j] * (dpr[j] - sum);
                    const float *kc = c->kvb + tj * nh * kvs + h * kvs, *kr = c->kr + tj * rd;
                    float *dkc = dkvb + tj * nh * kvs + h * kvs, *dkr = dkr_h + (tj * nh + h) * rd;
                    for (int64_t d = 0; d < nope; d++) { dqi[d] += da * kc[d]; dkc[d] += da * qi[d]; }
                    for (int64_t d = 0; d < rd; d++) { dqi[nope + d] += da * kr[d]; dkr[d] += da * qi[nope + d]; }
                    float *dv = dkc + nope;
                    for (int64_t d = 0; d < vd; d++) dv[d] += p[j] * doi[d];
                }
            }
        }
    /* k_R is shared by all heads: sum the per-head parts (h ascending), undo RoPE */
    for (int64_t t = 0; t < n; t++) {
        float *dk = dkv + t * (kvl + rd) + kvl;
        memset(dk, 0, sizeof(float) * rd);
        for (int64_t h = 0; h < nh; h++)
            for (int64_t d = 0; d < rd; d++) dk[d] += dkr_h[(t * nh + h) * rd + d];
        t_rope(dk, rd, t % S, tm->rope_freqs, tm->rope_amp, 1);
        for (int64_t h = 0; h < nh; h++) t_rope(dq + t * nh * qk + h * qk + nope, rd, t % S, tm->rope_freqs, tm->rope_amp, 1);
    }
    t_mm_bwd(dc, 0, dkvb, c->c, n, L->kv_b);
    t_rms_bwd(dckv, 0, dc, c->ckv_pre, n, L->kv_a_norm, eps);
    for (int64_t t = 0; t < n; t++) memcpy(dkv + t * (kvl + rd), dckv + t * kvl, sizeof(float) * kvl);
    if (qlr > 0) {
        t_mm_bwd(dqa, 0, dq, c->qa, n, L->q_b);
        t_rms_bwd(dqa_pre, 0, dqa, c->qa_pre, n, L->q_a_norm, eps);
        t_mm_bwd(dhn, 0, dqa_pre, c->hn, n, L->q_a);
    } else {
        t_mm_bwd(dhn, 0, dq, c->hn, n, L->q_proj);
    }
    t_mm_bwd(dhn, 1, dkv, c->hn, n, L->kv_a);
    t_rms_bwd(dx, 1, dhn, c->x_in, n, L->attn_norm, eps);
    free(dO); free(dq); free(dkvb); free(dkr_h); free(dc); free(dckv); free(dkv); free(dhn); free(dqa); free(dqa_pre); free(dp);
    mla_cache_release(c);
}
