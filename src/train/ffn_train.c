/* Dense SwiGLU MLP and DeepSeekMoE for training (spec §3.8, §3.9, §5.3):
 * forward saves activations, backward right below it. Gradients reach the
 * router through the gate values g = scale·s/Σs (no gradient through the
 * top-k choice) and through the sequence-wise balance loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "train/train_internal.h"

struct ffn_cache {
    float *x_in, *u;
    float *a, *b, *h;           /* dense MLP or shared expert activations [n, I] */
    float *s;                   /* [n, E] affinities */
    int32_t *idx;               /* [n, K] */
    float *w;                   /* [n, K] gates */
    float *ea, *eb, *eh;        /* [n*K, I_moe] per slot (t,k) */
    float *eout;                /* [n*K, H] FFN_e(u_t) per slot */
    float *bal_ds;              /* [n, E] ∂L_bal/∂s, or NULL */
};

void ffn_cache_release(ffn_cache *c) {
    if (!c) return;
    free(c->x_in); free(c->u); free(c->a); free(c->b); free(c->h); free(c->s); free(c->idx); free(c->w);
    free(c->ea); free(c->eb); free(c->eh); free(c->eout); free(c->bal_ds);
    free(c);
}

static void swiglu_fwd(const tffn *f, const float *in, int64_t n, float *a, float *b, float *h, float *out) {
    int64_t I = f->gate->shape[0];
    t_mm(a, in, n, f->gate);
    t_mm(b, in, n, f->up);
    dsv3_swiglu(h, a, b, n * I); /* a kept for the backward */
    t_mm(out, h, n, f->down);
}

/* din (+)= ∂/∂in for out = down(silu(gate in) ⊙ up in); params get their gradients. */
static void swiglu_bwd(tffn *f, const float *in, int64_t n, const float *a, const float *b, const float *h,
                       const float *dout, float *din, int accumulate) {
    int64_t I = f->gate->shape[0];
    float *dh = malloc(sizeof(float) * n * I), *db = malloc(sizeof(float) * n * I);
    t_mm_bwd(dh, 0, dout, h, n, f->down);
    for (int64_t i = 0; i < n * I; i++) {
        float sg = dsv3_sigmoid(a[i]);
        db[i] = dh[i] * a[i] * sg;                             /* ∂/∂b = dh·silu(a) */
        dh[i] = dh[i] * b[i] * sg * (1.0f + a[i] * (1.0f - sg)); /* ∂/∂a = dh·b·silu'(a) */
    }
    t_mm_bwd(din, accumulate, dh, in, n, f->gate);
    t_mm_bwd(din, 1, db, in, n, f->up);
    free(dh);
    free(db);
}

/* Slots (t,k) routed to expert e, in (t,k) order. */
static int64_t expert_slots(const int32_t *idx, int64_t n, int64_t K, int64_t e, int32_t *slots) {
    int64_t cnt = 0;
    for (int64_t i = 0; i < n * K; i++)
        if (idx[i] == e) slots[cnt++] = (int32_t)i;
    return cnt;
}

ffn_cache *ffn_train_forward(const dsv3_train_model *tm, const tlayer *L, tseq sq, float *x, float bal_alpha,
                             double *bal, float *load) {
    const dsv3_config *cf = &tm->cfg;
    const int64_t n = sq.B * sq.S, H = cf->hidden_size;
    ffn_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->x_in = malloc(sizeof(float) * n * H);
    c->u = malloc(sizeof(float) * n * H);
    float *y = malloc(sizeof(float) * n * H);
    if (!c->x_in || !c->u || !y) goto oom;
    memcpy(c->x_in, x, sizeof(float) * n * H);
    t_rms(c->u, x, n, L->ffn_norm, (float)cf->rms_norm_eps);
    if (!L->is_moe) {
        int64_t I = L->mlp.gate->shape[0];
        c->a = malloc(sizeof(float) * n * I);
        c->b = malloc(sizeof(float) * n * I);
        c->h = malloc(sizeof(float) * n * I);
        if (!c->a || !c->b || !c->h) goto oom;
        swiglu_fwd(&L->mlp, c->u, n, c->a, c->b, c->h, y);
    } else {
        const int64_t E = cf->n_routed_experts, K = cf->num_experts_per_tok, Im = cf->moe_intermediate_size;
        c->s = malloc(sizeof(float) * n * E);
        c->idx = malloc(sizeof(int32_t) * n * K);
        c->w = malloc(sizeof(float) * n * K);
        c->ea = malloc(sizeof(float) * n * K * Im);
        c->eb = malloc(sizeof(float) * n * K * Im);
        c->eh = malloc(sizeof(float) * n * K * Im);
        c->eout = malloc(sizeof(float) * n * K * H);
        float *logits = malloc(sizeof(float) * n * E), *in = malloc(sizeof(float) * n * K * H),
              *ta = malloc(sizeof(float) * n * K * Im), *tb = malloc(sizeof(float) * n * K * Im),
              *th = malloc(sizeof(float) * n * K * Im), *tout = malloc(sizeof(float) * n * K * H);
        int32_t *slots = malloc(sizeof(int32_t) * n * K);
        int ok = c->s && c->idx && c->w && c->ea && c->eb && c->eh && c->eout && logits && in && ta && tb && th && tout && slots;
        if (ok) {
            /* router logits in fp32, then routing exactly as inference (src/model/moe.c) */
            t_mm(logits, c->u, n, L->router);
            for (int64_t t = 0; t < n; t++) {
                float scratch[2 * E + cf->n_group];
                dsv3_route_token(cf, logits + t * E, L->bias, c->idx + t * K, c->w + t * K, scratch);
                memcpy(c->s + t * E, scratch, sizeof(float) * E); /* scratch[0..E) = affinities */
            }
            if (L->has_shared) {
                int64_t I = L->shared.gate->shape[0];
                c->a = malloc(sizeof(float) * n * I);
                c->b = malloc(sizeof(float) * n * I);
                c->h = malloc(sizeof(float) * n * I);
                ok = c->a && c->b && c->h;
                if (ok) swiglu_fwd(&L->shared, c->u, n, c->a, c->b, c->h, y);
            } else {
                memset(y, 0, sizeof(float) * n * H);
            }
            for (int64_t e = 0; ok && e < E; e++) {
                int64_t cnt = expert_slots(c->idx, n, K, e, slots);
                if (load) load[e] += (float)cnt;
                if (!cnt) continue;
                for (int64_t i = 0; i < cnt; i++) memcpy(in + i * H, c->u + (slots[i] / K) * H, sizeof(float) * H);
                swiglu_fwd(&L->experts[e], in, cnt, ta, tb, th, tout);
                for (int64_t i = 0; i < cnt; i++) {
                    int64_t sl = slots[i];
                    memcpy(c->ea + sl * Im, ta + i * Im, sizeof(float) * Im);
                    memcpy(c->eb + sl * Im, tb + i * Im, sizeof(float) * Im);
                    memcpy(c->eh + sl * Im, th + i * Im, sizeof(float) * Im);
                    memcpy(c->eout + sl * H, tout + i * H, sizeof(float) * H);
                }
            }
            /* y_t += Σ_k g_k FFN_k(u_t), k in expert-id order */
            for (int64_t t = 0; ok && t < n; t++)
                for (int64_t k = 0; k < K; k++) {
                    float g = c->w[t * K + k];
                    const float *o = c->eout + (t * K + k) * H;
                    for (int64_t j = 0; j < H; j++) y[t * H + j] += g * o[j];
                }
            /* sequence-wise balance loss (spec §5.3): α·mean_b Σ_i f_i P_i,
             * f_i = E/(K·S)·count_b(i), P_i = mean_t s_ti/Σ_j s_tj */
            if (ok && bal_alpha > 0) {
                c->bal_ds = calloc((size_t)(n * E), sizeof(float));
                float *f = calloc((size_t)E, sizeof(float)), *P = calloc((size_t)E, sizeof(float)),
                      *cc = malloc(sizeof(float) * E);
                ok = c->bal_ds && f && P && cc;
                for (int64_t b = 0; ok && b < sq.B; b++) {
                    memset(f, 0, sizeof(float) * E);
                    memset(P, 0, sizeof(float) * E);
                    for (int64_t t = b * sq.S; t < (b + 1) * sq.S; t++) {
                        for (int64_t k = 0; k < K; k++) f[c->idx[t * K + k]] += 1.0f;
                        const float *st = c->s + t * E;
                        float sum = 0;
                        for (int64_t e = 0; e < E; e++) sum += st[e];
                        for (int64_t e = 0; e < E; e++) P[e] += st[e] / sum;
                    }
                    double lb = 0;
                    for (int64_t e = 0; e < E; e++) {
                        f[e] *= (float)E / (float)(K * sq.S);
                        P[e] /= (float)sq.S;
                        lb += (double)f[e] * P[e];
                        cc[e] = bal_alpha / (float)sq.B * f[e] / (float)sq.S; /* ∂L/∂s'_ti */
                    }
                    *bal += bal_alpha * lb / (double)sq.B;
                    /* through s' = s/Σs: ∂L/∂s_tj = (c_j − Σ_i c_i s'_ti) / Σs */
                    for (int64_t t = b * sq.S; t < (b + 1) * sq.S; t++) {
                        const float *st = c->s + t * E;
                        float sum = 0, dot = 0;
                        for (int64_t e = 0; e < E; e++) sum += st[e];
                        for (int64_t e = 0; e < E; e++) dot += cc[e] * st[e] / sum;
                        for (int64_t e = 0; e < E; e++) c->bal_ds[t * E + e] = (cc[e] - dot) / sum;
                    }
                }
                free(f); free(P); free(cc);
            }
        }
        free(logits); free(in); free(ta); free(tb); free(th); free(tout); free(slots);
        if (!ok) goto oom;
    }
    for (int64_t i = 0; i < n * H; i++) x[i] += y[i];
    free(y);
    return c;
oom:
    free(y);
    ffn_cache_release(c);
    return NULL;
}

void ffn_train_backward(dsv3_train_model *tm, tlayer *L, tseq sq, ffn_cache *c, float *dx) {
    const dsv3_config *cf = &tm->cfg;
    const int64_t n = sq.B * sq.S, H = cf->hidden_size;
    const float eps = (float)cf->rms_norm_eps;
    float *du = calloc((size_t)(n * H), sizeof(float));
    if (!L->is_moe) {
        swiglu_bwd(&L->mlp, c->u, n, c->a, c->b, c->h, dx, du, 0);
    } else {
        const int64_t E = cf->n_routed_experts, K = cf->num_experts_per_tok, Im = cf->moe_intermediate_size;
        if (L->has_shared) swiglu_bwd(&L->shared, c->u, n, c->a, c->b, c->h, dx, du, 1);
        float *in = malloc(sizeof(float) * n * K * H), *ta = malloc(sizeof(float) * n * K * Im),
              *tb = malloc(sizeof(float) * n * K * Im), *th = malloc(sizeof(float) * n * K * Im),
              *dy = malloc(sizeof(float) * n * K * H), *din = malloc(sizeof(float) * n * K * H),
              *dw = malloc(sizeof(float) * n * K), *ds = calloc((size_t)(n * E), sizeof(float));
        int32_t *slots = malloc(sizeof(int32_t) * n * K);
        for (int64_t e = 0; e < E; e++) {
            int64_t cnt = expert_slots(c->idx, n, K, e, slots);
            if (!cnt) continue;
            for (int64_t i = 0; i < cnt; i++) {
                int64_t sl = slots[i], t = sl / K;
                memcpy(in + i * H, c->u + t * H, sizeof(float) * H);
                memcpy(ta + i * Im, c->ea + sl * Im, sizeof(float) * Im);
                memcpy(tb + i * Im, c->eb + sl * Im, sizeof(float) * Im);
                memcpy(th + i * Im, c->eh + sl * Im, sizeof(float) * Im);
                for (int64_t j = 0; j < H; j++) dy[i * H + j] = c->w[sl] * dx[t * H + j];
            }
            swiglu_bwd(&L->experts[e], in, cnt, ta, tb, th, dy, din, 0);
            for (int64_t i = 0; i < cnt; i++) {
                float *d = du + (slots[i] / K) * H;
                for (int64_t j = 0; j < H; j++) d[j] += din[i * H + j];
            }
        }
        /* gates: g_k = scale·s_k/(Σ_sel s + 1e-20) (or scale·s_k) */
        const float scale = (float)cf->routed_scaling_factor;
        for (int64_t t = 0; t < n; t++) {
            const float *st = c->s + t * E;
            const int32_t *id = c->idx + t * K;
            for (int64_t k = 0; k < K; k++) dw[t * K + k] = dsv3_dot_f32(dx + t * H, c->eout + (t * K + k) * H, H);
            float *dst = ds + t * E;
            if (cf->norm_topk_prob) {
                float S = 1e-20f, cross = 0;
                for (int64_t k = 0; k < K; k++) S += st[id[k]];
                for (int64_t k = 0; k < K; k++) cross += dw[t * K + k] * st[id[k]];
                for (int64_t k = 0; k < K; k++) dst[id[k]] += scale * (dw[t * K + k] / S - cross / (S * S));
            } else {
                for (int64_t k = 0; k < K; k++) dst[id[k]] += scale * dw[t * K + k];
            }
            if (c->bal_ds)
                for (int64_t e = 0; e < E; e++) dst[e] += c->bal_ds[t * E + e];
            /* through the affinity function into the router logits */
            if (cf->scoring_func == DSV3_SCORE_SIGMOID) {
                for (int64_t e = 0; e < E; e++) dst[e] *= st[e] * (1.0f - st[e]);
            } else {
                float dot = 0;
                for (int64_t e = 0; e < E; e++) dot += st[e] * dst[e];
                for (int64_t e = 0; e < E; e++) dst[e] = st[e] * (dst[e] - dot);
            }
        }
        t_mm_bwd(du, 1, ds, c->u, n, L->router);
        free(in); free(ta); free(tb); free(th); free(dy); free(din); free(dw); free(ds); free(slots);
    }
    t_rms_bwd(dx, 1, du, c->x_in, n, L->ffn_norm, eps);
    free(du);
    ffn_cache_release(c);
}
