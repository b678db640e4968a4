/* Feed-forward blocks: dense SwiGLU MLP and DeepSeekMoE (spec §3.8, §3.9). */
#include <math.h>
#include <string.h>

#include "model/model_internal.h"

/* out[n, H] = down( silu(gate in) ⊙ (up in) ), in: [n, H]. */
static void swiglu(dsv3_model *m, const dsv3_ffn *f, const float *in, int64_t n, float *out) {
    dsv3_workspace *ws = &m->ws;
    int64_t I = f->gate.rows;
    m->be->matmul(ws->ffn_a, in, n, &f->gate);
    m->be->matmul(ws->ffn_b, in, n, &f->up);
    for (int64_t i = 0; i < n * I; i++) ws->ffn_a[i] = dsv3_silu(ws->ffn_a[i]) * ws->ffn_b[i];
    m->be->matmul(out, ws->ffn_a, n, &f->down);
}

/* Picks the k largest of v[0..n) (ties: lowest index) into idx, in descending order. */
static void topk_desc(const float *v, int64_t n, int64_t k, int32_t *idx) {
    for (int64_t j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            int taken = 0;
            for (int64_t q = 0; q < j; q++) taken |= idx[q] == i;
            if (taken) continue;
            if (best < 0 || v[i] > v[best]) best = i;
        }
        idx[j] = (int32_t)best;
    }
}

void dsv3_route_token(const dsv3_config *c, const float *logits, const float *bias, int32_t *idx, float *w,
                      float *scratch) {
    const int64_t E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group, per = E / G;
    float *s = scratch, *sel = scratch + E, *gscore = scratch + 2 * E;
    /* affinities: sigmoid (V3, eq. 15) or softmax over all experts (V2) */
    if (c->scoring_func == DSV3_SCORE_SIGMOID) {
        for (int64_t e = 0; e < E; e++) s[e] = dsv3_sigmoid(logits[e]);
    } else {
        memcpy(s, logits, sizeof(float) * E);
        dsv3_softmax_inplace(s, E);
    }
    /* selection scores: s + b (bias only for selection, eq. 16) */
    for (int64_t e = 0; e < E; e++) sel[e] = s[e] + (bias ? bias[e] : 0.0f);
    if (c->topk_method != DSV3_TOPK_GREEDY && G > 1) {
        for (int64_t g = 0; g < G; g++) {
            const float *v = sel + g * per;
            if (c->topk_method == DSV3_TOPK_NOAUX_TC) { /* sum of the two largest (spec §3.9 step 4) */
                float a = -INFINITY, b = -INFINITY;
                for (int64_t i = 0; i < per; i++) {
                    if (v[i] > a) { b = a; a = v[i]; }
                    else if (v[i] > b) b = v[i];
                }
                gscore[g] = a + b;
            } else { /* group_limited_greedy: max affinity of the group */
                float a = -INFINITY;
                for (int64_t i = 0; i < per; i++) a = v[i] > a ? v[i] : a;
                gscore[g] = a;
            }
        }
        int32_t keep[G];
        topk_desc(gscore, G, c->topk_group, keep);
        for (int64_t g = 0; g < G; g++) {
            int kept = 0;
            for (int64_t q = 0; q < c->topk_group; q++) kept |= keep[q] == g;
            if (!kept)
                for (int64_t i = 0; i < per; i++) sel[g * per + i] = -INFINITY; /* −∞, not 0 (spec §7.7) */
        }
    }
    topk_desc(sel, E, K, idx);
    /* sort chosen ids ascending (fixed accumulation order, fixture layout) */
    for (int64_t i = 1; i < K; i++)
        for (int64_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
            int32_t tmp = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = tmp;
        }
    /* gates from unbiased affinities, renormalised (+1e-20 as HF), × routed_scaling_factor */
    float sum = 0;
    for (int64_t i = 0; i < K; i++) sum += s[idx[i]];
    for (int64_t i = 0; i < K; i++) {
        float g = s[idx[i]];
        if (c->norm_topk_prob) g /= (sum + 1e-20f);
        w[i] = g * (float)c->routed_scaling_factor;
    }
}

void dsv3_ffn_forward(dsv3_model *m, const dsv3_layer *L, float *x, int64_t n, int32_t *route_idx, float *route_w) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const int64_t H = c->hidden_size;
    for (int64_t t = 0; t < n; t++) dsv3_rmsnorm(ws->hn + t * H, x + t * H, L->ffn_norm, H, (float)c->rms_norm_eps);
    if (!L->is_moe) {
        swiglu(m, &L->mlp, ws->hn, n, ws->proj);
        for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
        return;
    }
    const int64_t E = c->n_routed_experts, K = c->num_experts_per_tok;
    /* router logits in fp32 (spec §3.9 step 1) */
#pragma omp parallel for schedule(static) if (n * E * H > DSV3_OMP_MIN_WORK)
    for (int64_t te = 0; te < n * E; te++) {
        int64_t t = te / E, e = te % E;
        ws->router_logits[te] = dsv3_dot_f32(L->router + e * H, ws->hn + t * H, H);
    }
#pragma omp parallel for schedule(static) if (n * E > DSV3_OMP_MIN_WORK / 64)
    for (int64_t t = 0; t < n; t++) {
        float scratch[2 * E + c->n_group];
        dsv3_route_token(c, ws->router_logits + t * E, L->router_bias, ws->route_idx + t * K, ws->route_w + t * K,
                         scratch);
    }
    /* y = shared(u) + Σ_e ascending g_e·FFN_e(u): a fixed per-token order */
    if (c->n_shared_experts > 0) swiglu(m, &L->shared, ws->hn, n, ws->proj);
    else memset(ws->proj, 0, sizeof(float) * n * H);
    for (int64_t e = 0; e < E; e++) {
        int64_t cnt = 0;
        for (int64_t t = 0; t < n; t++)
            for (int64_t k = 0; k < K; k++)
                if (ws->route_idx[t * K + k] == e) {
                    ws->tok_list[cnt] = (int32_t)t;
                    ws->tok_w[cnt] = ws->route_w[t * K + k];
                    memcpy(ws->moe_in + cnt * H, ws->hn + t * H, sizeof(float) * H);
                    cnt++;
                }
        if (!cnt) continue;
        swiglu(m, &L->experts[e], ws->moe_in, cnt, ws->moe_out);
        for (int64_t i = 0; i < cnt; i++) {
            float *y = ws->proj + ws->tok_list[i] * H, g = ws->tok_w[i];
            const float *o = ws->moe_out + i * H;
            for (int64_t j = 0; j < H; j++) y[j] += g * o[j];
        }
    }
    for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
    if (route_idx) memcpy(route_idx, ws->route_idx, sizeof(int32_t) * n * K);
    if (route_w) memcpy(route_w, ws->route_w, sizeof(float) * n * K);
}
