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
    dsv3_swiglu(ws->ffn_a, ws->ffn_a, ws->ffn_b, n * I);
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

/* One token's combine over columns [j0, j1): y = shared output (sh, or 0 without shared experts), then
 * y = fmaf(g_k, o_k, y) over its K experts by ascending id (rows[k]: its output row in out), x += y. The
 * per-element sequence of moe_tokens, so every MoE path gives the same bits. */
static inline void combine_token(float *xt, const float *sh, const float *out, const int32_t *rows, const float *gw,
                                 int64_t K, int64_t H, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j++) {
        float y = sh ? sh[j] : 0.0f;
        for (int64_t k = 0; k < K; k++) y = fmaf(gw[k], out[rows[k] * H + j], y);
        xt[j] += y;
    }
}

/* Many tokens, experts in parallel (prefill): where moe_tokens forks the threads for every matmul of
 * every expert (3 x E regions per layer, the gathers and SwiGLU between them on one thread), here each
 * thread runs whole experts (gather, gate, up, SwiGLU, down; most tokens first, dynamic) into one
 * output row per (token, chosen expert), then the combine of moe_tokens per token (shared output, then
 * y = fmaf(g, o, y) over its experts by ascending id) and x += y; in blocks of ws->moe_par_tok tokens
 * (the scratch budget). The matmuls are the same calls on the same rows (a row's result depends neither
 * on the thread, nor on the row split, nor on the other tokens), so the bits are those of moe_tokens.
 * The shared expert runs first, row-parallel over all tokens, into ws->proj. */
static void moe_tokens_parallel(dsv3_model *m, const dsv3_layer *L, float *x, int64_t n) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const dsv3_backend *be = m->be;
    const int64_t H = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok,
                  I = c->moe_intermediate_size, shared = c->n_shared_experts > 0, NB = ws->moe_par_tok;
    if (shared) swiglu(m, &L->shared, ws->hn, n, ws->proj);
    /* [NB*K][H] routed outputs (expert e owns rows [off[e], off[e+1])), per thread [NB][H] + [NB][I] x 2 */
    float *out = ws->moe_par, *thr = out + NB * K * H;
    int32_t *row_tok = (int32_t *)(thr + (int64_t)ws->nthreads * NB * (H + 2 * I)), *tk_row = row_tok + NB * K;
    int32_t *off = tk_row + NB * K, *order = off + E + 1; /* [E+1], [E] */
    for (int64_t b0 = 0; b0 < n; b0 += NB) {
        const int64_t nb = n - b0 < NB ? n - b0 : NB;
        const int32_t *ridx = ws->route_idx + b0 * K;
        memset(off, 0, sizeof(int32_t) * (size_t)(E + 1));
        for (int64_t i = 0; i < nb * K; i++) off[ridx[i] + 1]++;
        for (int64_t e = 0; e < E; e++) off[e + 1] += off[e];
        for (int64_t e = 0; e < E; e++) order[e] = off[e]; /* fill cursors here, the schedule below */
        for (int64_t t = 0; t < nb; t++) /* tokens ascending within an expert, as moe_tokens gathers them */
            for (int64_t k = 0; k < K; k++) {
                const int32_t e = ridx[t * K + k], r = order[e]++;
                row_tok[r] = (int32_t)(b0 + t);
                tk_row[t * K + k] = r;
            }
        int64_t na = 0; /* experts with tokens, most tokens first (ties: lower id first) */
        for (int64_t e = 0; e < E; e++) {
            const int32_t ne = off[e + 1] - off[e];
            if (!ne) continue;
            int64_t j = na++;
            while (j > 0 && off[order[j - 1] + 1] - off[order[j - 1]] < ne) { order[j] = order[j - 1]; j--; }
            order[j] = (int32_t)e;
        }
#pragma omp parallel
        {
            float *in = thr + (int64_t)omp_get_thread_num() * NB * (H + 2 * I), *ga = in + NB * H, *ub = ga + NB * I;
#pragma omp for schedule(dynamic, 1)
            for (int64_t q = 0; q < na; q++) {
                const int64_t e = order[q], r0 = off[e], cnt = off[e + 1] - r0;
                const dsv3_ffn *f = &L->experts[e];
                for (int64_t i = 0; i < cnt; i++) memcpy(in + i * H, ws->hn + row_tok[r0 + i] * H, sizeof(float) * H);
                be->matmul_rows(ga, I, in, cnt, &f->gate, 0, I);
                be->matmul_rows(ub, I, in, cnt, &f->up, 0, I);
                dsv3_swiglu(ga, ga, ub, cnt * I);
                be->matmul_rows(out + r0 * H, H, ga, cnt, &f->down, 0, H);
            }
#pragma omp for schedule(static)
            for (int64_t t = 0; t < nb; t++) {
                combine_token(x + (b0 + t) * H, shared ? ws->proj + (b0 + t) * H : NULL, out, tk_row + t * K,
                              ws->route_w + (b0 + t) * K, K, H, 0, H);
            }
        }
    }
}

/* rows per work unit of the few-token path: longer weight streams per unit (FP8 decode 78-79% -> 80-81.5% of the
 * same-moment bandwidth with 256 instead of 128; BF16 alike), and the amx kernel sets up per call (32 was ~5% slower) */
#define MOE_ROWS 256

/* A work unit of moe_few_tokens: active expert a, its gate (0), up (1) or down (2) rows [r0, r1), and its
 * multiply-adds (0: an empty row block past a narrower expert's rows). */
typedef struct {
    int64_t a, which, r0, r1, cost;
} few_unit;

/* Gate/up unit `it`: (expert, gate|up, row block of ur rows) */
static inline few_unit few_up_unit(const dsv3_ffn *const *f, const int64_t *cnt, int64_t up_units, int64_t ur, int64_t it) {
    few_unit u = {it / (2 * up_units), (it / up_units) % 2, (it % up_units) * ur, 0, 0};
    const dsv3_weight *W = u.which ? &f[u.a]->up : &f[u.a]->gate;
    u.r1 = u.r0 + ur < W->rows ? u.r0 + ur : W->rows;
    u.cost = u.r0 < W->rows ? (u.r1 - u.r0) * W->cols * cnt[u.a] : 0;
    return u;
}

/* Down unit `it`: (expert, block of dr output rows of H) */
static inline few_unit few_down_unit(const dsv3_ffn *const *f, const int64_t *cnt, int64_t down_units, int64_t dr, int64_t H,
                                     int64_t it) {
    few_unit u = {it / down_units, 2, (it % down_units) * dr, 0, 0};
    u.r1 = u.r0 + dr < H ? u.r0 + dr : H;
    u.cost = (u.r1 - u.r0) * f[u.a]->down.cols * cnt[u.a];
    return u;
}

/* Whether the unit whose cost starts at cum (of total) is thread id's (of nt): the threads take contiguous runs
 * of equal shares of the multiply-adds, not of equal unit counts (units differ: experts of other widths, as a
 * shared expert wider than the routed ones, their token counts, empty blocks; equal counts left one thread 3x
 * the work of the other on such a model). Every unit with work belongs to exactly one thread. */
static inline int few_mine(int64_t cum, int64_t total, int64_t nt, int64_t id) {
    return cum * nt >= total * id && cum * nt < total * (id + 1);
}

/* Few tokens (n <= DSV3_MOE_FEW_MAX: decode, MTP verification, small batches): the whole MoE block in
 * one parallel region instead of one per matmul. The active experts are the shared one (all n tokens)
 * and the union of the routed ones by id, each with its tokens (gathered, ascending); the gate and up
 * rows of all of them form one work list of row blocks, each unit one matmul over the expert's tokens,
 * the threads taking contiguous runs of equal multiply-adds (few_mine); then SwiGLU, the down rows
 * likewise, then per token the combine of moe_tokens (shared output, then y = fmaf(g, o, y) over its
 * experts by ascending id) and x += y. A matmul row's result depends
 * neither on the row split nor on the other tokens (ops.h), so the bits are those of moe_tokens. */
static void moe_few_tokens(dsv3_model *m, const dsv3_layer *L, float *x, int64_t n) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const dsv3_backend *be = m->be;
    const int64_t H = c->hidden_size, K = c->num_experts_per_tok, shared = c->n_shared_experts > 0,
                  I = dsv3_moe_width(c), SMAX = DSV3_MOE_FEW_MAX * (K + 1);
    /* active experts: the shared one first, then the routed ones by ascending id */
    const dsv3_ffn *f[SMAX];
    int64_t cnt[SMAX], slot0[SMAX], goff[SMAX]; /* tokens, first slot, offset in ga/ub of each */
    int64_t A = 0, S = 0, G = 0;
    float *in = ws->moe_a, *out = in + SMAX * H, *ga = out + SMAX * H, *ub = ga + SMAX * I; /* [slot][H], [H], [I], [I] */
    int32_t *slot_tok = (int32_t *)(ub + SMAX * I), *tok_slot = slot_tok + SMAX; /* [slot], [t][1 + K] */
    if (shared) {
        f[A] = &L->shared, cnt[A] = n, slot0[A] = S, goff[A] = G;
        for (int64_t t = 0; t < n; t++, S++) slot_tok[S] = (int32_t)t, tok_slot[t * (K + 1)] = (int32_t)S;
        G += n * L->shared.gate.rows;
        A++;
    }
    for (int32_t prev = -1;;) { /* next larger routed id chosen by any token */
        int32_t e = -1;
        for (int64_t i = 0; i < n * K; i++)
            if (ws->route_idx[i] > prev && (e < 0 || ws->route_idx[i] < e)) e = ws->route_idx[i];
        if (e < 0) break;
        f[A] = &L->experts[e], cnt[A] = 0, slot0[A] = S, goff[A] = G;
        for (int64_t t = 0; t < n; t++)
            for (int64_t k = 0; k < K; k++)
                if (ws->route_idx[t * K + k] == e) slot_tok[S] = (int32_t)t, tok_slot[t * (K + 1) + 1 + k] = (int32_t)S++, cnt[A]++;
        G += cnt[A] * f[A]->gate.rows;
        A++;
        prev = e;
    }
    const float *xin[SMAX]; /* an expert's input rows: all n tokens are ws->hn itself, others gathered */
    for (int64_t a = 0; a < A; a++) {
        xin[a] = cnt[a] == n ? ws->hn : in + slot0[a] * H;
        if (cnt[a] < n)
            for (int64_t s = slot0[a]; s < slot0[a] + cnt[a]; s++) memcpy(in + s * H, ws->hn + slot_tok[s] * H, sizeof(float) * H);
    }
    /* unit rows: MOE_ROWS, halved (down to 32) while a work list would give a thread fewer than 2 units
     * (small models: a few experts of a few hundred rows) */
    const int64_t nthr = omp_get_max_threads();
    int64_t rows_max = 0, ur = MOE_ROWS, dr = MOE_ROWS;
    for (int64_t a = 0; a < A; a++) rows_max = f[a]->gate.rows > rows_max ? f[a]->gate.rows : rows_max;
    while (ur > 32 && A * 2 * ((rows_max + ur - 1) / ur) < 2 * nthr) ur /= 2;
    while (dr > 32 && A * ((H + dr - 1) / dr) < 2 * nthr) dr /= 2;
    const int64_t up_units = (rows_max + ur - 1) / ur, down_units = (H + dr - 1) / dr;
    const int par = nthr > 1 && !omp_in_parallel();
    const int64_t n_up = A * 2 * up_units, n_down = A * down_units;
    int64_t up_total = 0, down_total = 0; /* multiply-adds of each phase, shared out by few_mine */
    for (int64_t it = 0; it < n_up; it++) up_total += few_up_unit(f, cnt, up_units, ur, it).cost;
    for (int64_t it = 0; it < n_down; it++) down_total += few_down_unit(f, cnt, down_units, dr, H, it).cost;
#pragma omp parallel if (par)
    {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        for (int64_t it = 0, cum = 0; it < n_up; it++) {
            const few_unit u = few_up_unit(f, cnt, up_units, ur, it);
            if (u.cost && few_mine(cum, up_total, nt, id)) {
                const dsv3_weight *W = u.which ? &f[u.a]->up : &f[u.a]->gate;
                be->matmul_rows((u.which ? ub : ga) + goff[u.a] + u.r0, W->rows, xin[u.a], cnt[u.a], W, u.r0, u.r1);
            }
            cum += u.cost;
        }
#pragma omp barrier
        { /* the SwiGLU, a slice per thread (elementwise: any split gives the same values) */
            const int64_t i0 = G * id / nt, i1 = G * (id + 1) / nt;
            dsv3_swiglu(ga + i0, ga + i0, ub + i0, i1 - i0);
        }
#pragma omp barrier
        for (int64_t it = 0, cum = 0; it < n_down; it++) {
            const few_unit u = few_down_unit(f, cnt, down_units, dr, H, it); /* input: the expert's [cnt][width] block */
            if (u.cost && few_mine(cum, down_total, nt, id))
                be->matmul_rows(out + slot0[u.a] * H + u.r0, H, ga + goff[u.a], cnt[u.a], &f[u.a]->down, u.r0, u.r1);
            cum += u.cost;
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t tj = 0; tj < n * down_units; tj++) {
            const int64_t t = tj / down_units, j0 = (tj % down_units) * dr, j1 = j0 + dr < H ? j0 + dr : H;
            const int32_t *ts = tok_slot + t * (K + 1);
            combine_token(x + t * H, shared ? out + ts[0] * H : NULL, out, ts + 1, ws->route_w + t * K, K, H, j0, j1);
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
    /* router logits in fp32 (spec §3.9 step 1): the backend's matmul of the f32 router, the same sums as
     * dsv3_dot_f32 per (token, expert) (one dot-product contract, cpu_kernels.h), in its tiled kernels */
    const dsv3_weight router = {.dtype = DSV3_F32, .rows = E, .cols = H, .data = L->router};
    m->be->matmul(ws->router_logits, ws->hn, n, &router);
#pragma omp parallel for schedule(static) if (n * E > DSV3_OMP_MIN_WORK / 64)
    for (int64_t t = 0; t < n; t++) {
        float scratch[2 * E + c->n_group];
        dsv3_route_token(c, ws->router_logits + t * E, L->router_bias, ws->route_idx + t * K, ws->route_w + t * K,
                         scratch);
    }
    if (n <= DSV3_MOE_FEW_MAX && K <= DSV3_MOE_FEW_MAX_K) {
        moe_few_tokens(m, L, x, n);
    } else if (ws->moe_par_tok > 0 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
        moe_tokens_parallel(m, L, x, n);
    } else {
        moe_tokens(m, L, n);
        for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
    }
    if (route_idx) memcpy(route_idx, ws->route_idx, sizeof(int32_t) * n * K);
    if (route_w) memcpy(route_w, ws->route_w, sizeof(float) * n * K);
}
