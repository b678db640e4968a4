/* Feed-forward blocks: dense SwiGLU MLP and DeepSeekMoE (spec §3.8, §3.9). */
#include <math.h>
#include <omp.h>
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

/* Routed + shared experts of n tokens into ws->proj: y = shared(u) + Σ_e ascending g_e·FFN_e(u), a fixed
 * per-token order (each combine step y = fmaf(g, o, y)); every expert runs one GEMM over its tokens. */
static void moe_tokens(dsv3_model *m, const dsv3_layer *L, int64_t n) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const int64_t H = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
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
            for (int64_t j = 0; j < H; j++) y[j] = fmaf(g, o[j], y[j]);
        }
    }
}

#define MOE_ROWS 128 /* rows per work unit of the one-token path (the amx kernel sets up per call: 32 was ~5% slower) */

/* One token (decode): the whole MoE block in one parallel region instead of one per matmul: the gate
 * and up rows of every chosen expert and the shared one as one row-split work list, SwiGLU, the down
 * rows likewise, then the combine, and x += y. A matmul row's result does not depend on how rows are
 * split (ops.h), and the combine is moe_tokens' fmaf sequence per element, so the bits are the same. */
static void moe_one_token(dsv3_model *m, const dsv3_layer *L, float *x) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const dsv3_backend *be = m->be;
    const int64_t H = c->hidden_size, K = c->num_experts_per_tok, shared = c->n_shared_experts > 0,
                  I = dsv3_moe_width(c);
    const int64_t A = K + shared; /* active experts: the shared one first, then the routed ones by id */
    const dsv3_ffn *f[A];
    float g[A];
    for (int64_t a = 0; a < A; a++) {
        const int64_t k = a - shared;
        f[a] = k < 0 ? &L->shared : &L->experts[ws->route_idx[k]];
        g[a] = k < 0 ? 1.0f : ws->route_w[k];
    }
    float *ga = ws->moe_a, *ub = ga + A * I, *out = ub + A * I; /* [A][I], [A][I], [A][H] */
    int64_t up_units = 0, down_units = (H + MOE_ROWS - 1) / MOE_ROWS;
    for (int64_t a = 0; a < A; a++) {
        const int64_t u = (f[a]->gate.rows + MOE_ROWS - 1) / MOE_ROWS;
        up_units = u > up_units ? u : up_units;
    }
    const int par = omp_get_max_threads() > 1 && !omp_in_parallel();
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (int64_t it = 0; it < A * 2 * up_units; it++) { /* (expert, gate|up, row block) */
            const int64_t a = it / (2 * up_units), which = (it / up_units) % 2, r0 = (it % up_units) * MOE_ROWS;
            const dsv3_weight *W = which ? &f[a]->up : &f[a]->gate;
            if (r0 < W->rows) {
                const int64_t r1 = r0 + MOE_ROWS < W->rows ? r0 + MOE_ROWS : W->rows;
                be->matmul_rows((which ? ub : ga) + a * I + r0, W->rows, ws->hn, 1, W, r0, r1);
            }
        }
#pragma omp for schedule(static)
        for (int64_t a = 0; a < A; a++)
            for (int64_t i = 0; i < f[a]->gate.rows; i++) ga[a * I + i] = dsv3_silu(ga[a * I + i]) * ub[a * I + i];
#pragma omp for schedule(static)
        for (int64_t it = 0; it < A * down_units; it++) {
            const int64_t a = it / down_units, r0 = (it % down_units) * MOE_ROWS, r1 = r0 + MOE_ROWS < H ? r0 + MOE_ROWS : H;
            be->matmul_rows(out + a * H + r0, H, ga + a * I, 1, &f[a]->down, r0, r1);
        }
#pragma omp for schedule(static)
        for (int64_t j0 = 0; j0 < H; j0 += MOE_ROWS) {
            const int64_t j1 = j0 + MOE_ROWS < H ? j0 + MOE_ROWS : H;
            for (int64_t j = j0; j < j1; j++) {
                float y = shared ? out[j] : 0.0f;
                for (int64_t a = shared; a < A; a++) y = fmaf(g[a], out[a * H + j], y);
                x[j] += y;
            }
        }
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
#pragma omp parallel for schedule(static) if (n * E * H >= DSV3_OMP_MIN_WORK)
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
    if (n == 1) {
        moe_one_token(m, L, x);
    } else {
        moe_tokens(m, L, n);
        for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
    }
    if (route_idx) memcpy(route_idx, ws->route_idx, sizeof(int32_t) * n * K);
    if (route_w) memcpy(route_w, ws->route_w, sizeof(float) * n * K);
}
