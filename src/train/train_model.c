/* Training model: FP32 master weights built from any checkpoint, and the
 * whole-model forward + backward with DeepSeek-V3's losses (spec §4.2, §5.3). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "train/train_internal.h"

/* ---- parameters ---- */

static dsv3_param *new_param(dsv3_train_model *tm, int cap, const char *name, int64_t rows, int64_t cols) {
    if (tm->n_params >= cap) return NULL;
    dsv3_param *p = &tm->params[tm->n_params];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 1;
    p->numel = rows * (cols > 0 ? cols : 1);
    p->w = malloc(sizeof(float) * p->numel);
    p->g = calloc((size_t)p->numel, sizeof(float));
    if (!p->name || !p->w || !p->g) {
        free(p->name); free(p->w); free(p->g);
        return NULL;
    }
    tm->n_params++;
    return p;
}

static dsv3_param *param_from_weight(dsv3_train_model *tm, int cap, const char *name, const dsv3_weight *w) {
    dsv3_param *p = new_param(tm, cap, name, w->rows, w->cols);
    if (p)
        for (int64_t r = 0; r < w->rows; r++) dsv3_weight_row_f32(w, r, p->w + r * w->cols);
    return p;
}

static dsv3_param *param_from_vec(dsv3_train_model *tm, int cap, const char *name, const float *v, int64_t n) {
    dsv3_param *p = new_param(tm, cap, name, n, 0);
    if (p) memcpy(p->w, v, sizeof(float) * n);
    return p;
}

#define NEED(x) do { if (!(x)) return -1; } while (0)

static int build_ffn(dsv3_train_model *tm, int cap, const char *prefix, const dsv3_ffn *src, tffn *dst) {
    char name[512];
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    NEED(dst->gate = param_from_weight(tm, cap, name, &src->gate));
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    NEED(dst->up = param_from_weight(tm, cap, name, &src->up));
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    NEED(dst->down = param_from_weight(tm, cap, name, &src->down));
    return 0;
}

static int build_layer(dsv3_train_model *tm, int cap, int64_t idx, const dsv3_layer *src, tlayer *L) {
    const dsv3_config *c = &tm->cfg;
    char p[128], name[512];
    snprintf(p, sizeof p, "model.layers.%lld", (long long)idx);
#define N(fmt) (snprintf(name, sizeof name, "%s." fmt, p), name)
    int64_t H = c->hidden_size;
    NEED(L->attn_norm = param_from_vec(tm, cap, N("input_layernorm.weight"), src->attn_norm, H));
    if (c->q_lora_rank > 0) {
        NEED(L->q_a = param_from_weight(tm, cap, N("self_attn.q_a_proj.weight"), &src->q_a));
        NEED(L->q_a_norm = param_from_vec(tm, cap, N("self_attn.q_a_layernorm.weight"), src->q_a_norm, c->q_lora_rank));
        NEED(L->q_b = param_from_weight(tm, cap, N("self_attn.q_b_proj.weight"), &src->q_b));
    } else {
        NEED(L->q_proj = param_from_weight(tm, cap, N("self_attn.q_proj.weight"), &src->q_proj));
    }
    NEED(L->kv_a = param_from_weight(tm, cap, N("self_attn.kv_a_proj_with_mqa.weight"), &src->kv_a));
    NEED(L->kv_a_norm = param_from_vec(tm, cap, N("self_attn.kv_a_layernorm.weight"), src->kv_a_norm, c->kv_lora_rank));
    NEED(L->kv_b = param_from_weight(tm, cap, N("self_attn.kv_b_proj.weight"), &src->kv_b));
    NEED(L->o = param_from_weight(tm, cap, N("self_attn.o_proj.weight"), &src->o));
    NEED(L->ffn_norm = param_from_vec(tm, cap, N("post_attention_layernorm.weight"), src->ffn_norm, H));
    L->is_moe = src->is_moe;
    if (!src->is_moe) {
        snprintf(name, sizeof name, "%s.mlp", p);
        return build_ffn(tm, cap, name, &src->mlp, &L->mlp);
    }
    int64_t E = c->n_routed_experts;
    dsv3_weight rw = {.dtype = DSV3_F32, .rows = E, .cols = H, .data = src->router};
    NEED(L->router = param_from_weight(tm, cap, N("mlp.gate.weight"), &rw));
    if (src->router_bias) {
        NEED(L->bias = malloc(sizeof(float) * E));
        memcpy(L->bias, src->router_bias, sizeof(float) * E);
    }
    NEED(L->experts = calloc((size_t)E, sizeof(tffn)));
    for (int64_t e = 0; e < E; e++) {
        snprintf(name, sizeof name, "%s.mlp.experts.%lld", p, (long long)e);
        NEED(build_ffn(tm, cap, name, &src->experts[e], &L->experts[e]) == 0);
    }
    L->has_shared = c->n_shared_experts > 0;
    if (L->has_shared) {
        snprintf(name, sizeof name, "%s.mlp.shared_experts", p);
        NEED(build_ffn(tm, cap, name, &src->shared, &L->shared) == 0);
    }
#undef N
    return 0;
}

dsv3_status dsv3_train_model_load(const char *dir, dsv3_train_model **out, dsv3_error *err) {
    *out = NULL;
    dsv3_model *m = NULL;
    dsv3_status st = dsv3_model_load(dir, &m, err);
    if (st) return st;
    dsv3_train_model *tm = calloc(1, sizeof *tm);
    if (!tm) { dsv3_model_free(m); return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory"); }
    tm->cfg = m->cfg;
    const dsv3_config *c = &tm->cfg;
    int64_t per_layer = 16 + 3 * (c->n_routed_experts + 2);
    int cap = (int)(8 + (c->num_hidden_layers + DSV3_MAX_MTP) * per_layer);
    tm->params = calloc((size_t)cap, sizeof(dsv3_param));
    tm->layers = calloc((size_t)c->num_hidden_layers, sizeof(tlayer));
    tm->biases = calloc((size_t)c->num_hidden_layers, sizeof(float *));
    tm->rope_freqs = malloc(sizeof(float) * (c->qk_rope_head_dim / 2));
    int bad = !tm->params || !tm->layers || !tm->biases || !tm->rope_freqs;
    if (!bad) {
        memcpy(tm->rope_freqs, m->rope_freqs, sizeof(float) * (c->qk_rope_head_dim / 2));
        tm->sigma = m->softmax_scale;
        tm->rope_amp = m->rope_attn_factor;
        bad = !(tm->embed = param_from_weight(tm, cap, "model.embed_tokens.weight", &m->embed)) ||
              !(tm->final_norm = param_from_vec(tm, cap, "model.norm.weight", m->final_norm, c->hidden_size)) ||
              !(tm->lm_head = param_from_weight(tm, cap, "lm_head.weight", &m->lm_head));
    }
    for (int64_t l = 0; !bad && l < c->num_hidden_layers; l++) {
        bad = build_layer(tm, cap, l, &m->layers[l], &tm->layers[l]) != 0;
        if (!bad) tm->biases[l] = tm->layers[l].bias;
    }
    for (int k = 0; !bad && k < m->n_mtp; k++) {
        char name[256];
        int64_t L = c->num_hidden_layers + k, H = c->hidden_size;
        tmtp *mt = &tm->mtp[k];
        const dsv3_mtp_module *src = &m->mtp[k];
        snprintf(name, sizeof name, "model.layers.%lld.enorm.weight", (long long)L);
        bad |= !(mt->enorm = param_from_vec(tm, cap, name, src->enorm, H));
        snprintf(name, sizeof name, "model.layers.%lld.hnorm.weight", (long long)L);
        bad |= !bad && !(mt->hnorm = param_from_vec(tm, cap, name, src->hnorm, H));
        snprintf(name, sizeof name, "model.layers.%lld.eh_proj.weight", (long long)L);
        bad |= !bad && !(mt->eh_proj = param_from_weight(tm, cap, name, &src->eh_proj));
        snprintf(name, sizeof name, "model.layers.%lld.shared_head.norm.weight", (long long)L);
        bad |= !bad && !(mt->head_norm = param_from_vec(tm, cap, name, src->head_norm, H));
        bad |= !bad && build_layer(tm, cap, L, &src->block, &mt->block) != 0;
        if (!bad) tm->n_mtp = k + 1;
    }
    tm->has_mtp = tm->n_mtp > 0;
    dsv3_model_free(m);
    if (!bad) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "rb");
        bad = !f;
        if (f) {
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, 0, SEEK_SET);
            tm->config_json = len >= 0 && len < (64 << 20) ? malloc((size_t)len + 1) : NULL;
            bad = !tm->config_json || fread(tm->config_json, 1, (size_t)len, f) != (size_t)len;
            if (!bad) tm->config_json[len] = 0;
            fclose(f);
        }
    }
    if (bad) {
        dsv3_train_model_free(tm);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory building FP32 master weights", dir);
    }
    *out = tm;
    return DSV3_OK;
}

static void free_tlayer(const dsv3_config *c, tlayer *L) {
    free(L->bias);
    free(L->experts);
}

void dsv3_train_model_free(dsv3_train_model *tm) {
    if (!tm) return;
    for (int i = 0; i < tm->n_params; i++) {
        dsv3_param *p = &tm->params[i];
        free(p->name); free(p->w); free(p->g); free(p->m); free(p->v); free(p->m16); free(p->v16);
    }
    if (tm->layers)
        for (int64_t l = 0; l < tm->cfg.num_hidden_layers; l++) free_tlayer(&tm->cfg, &tm->layers[l]);
    for (int k = 0; k < DSV3_MAX_MTP; k++) free_tlayer(&tm->cfg, &tm->mtp[k].block);
    free(tm->params); free(tm->layers); free(tm->biases); free(tm->rope_freqs); free(tm->config_json);
    for (int i = 0; i < 4; i++) free(tm->big[i]);
    free(tm);
}

const dsv3_config *dsv3_train_model_config(const dsv3_train_model *tm) { return &tm->cfg; }
int dsv3_train_model_has_mtp(const dsv3_train_model *tm) { return tm->has_mtp; }
int dsv3_train_model_n_params(const dsv3_train_model *tm) { return tm->n_params; }
dsv3_param *dsv3_train_model_param(dsv3_train_model *tm, int i) { return i >= 0 && i < tm->n_params ? &tm->params[i] : NULL; }
dsv3_param *dsv3_train_model_find(dsv3_train_model *tm, const char *name) {
    for (int i = 0; i < tm->n_params; i++)
        if (!strcmp(tm->params[i].name, name)) return &tm->params[i];
    return NULL;
}
float *dsv3_train_model_bias(dsv3_train_model *tm, int64_t layer) {
    return layer >= 0 && layer < tm->cfg.num_hidden_layers ? tm->biases[layer] : NULL;
}

void dsv3_train_zero_grad(dsv3_train_model *tm) {
    for (int i = 0; i < tm->n_params; i++) memset(tm->params[i].g, 0, sizeof(float) * tm->params[i].numel);
}

/* ---- losses ---- */

/* Cross-entropy of rows logits[r] vs targets[r] (rows with target < 0 skipped);
 * writes dlogits = weight/n_valid · (softmax − onehot); returns mean loss. */
static double cross_entropy(const float *logits, const int32_t *targets, int64_t rows, int64_t V, float weight,
                            float *dlogits) {
    int64_t valid = 0;
    for (int64_t r = 0; r < rows; r++) valid += targets[r] >= 0;
    double loss = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *l = logits + r * V;
        float *d = dlogits + r * V;
        if (targets[r] < 0 || !valid) {
            memset(d, 0, sizeof(float) * V);
            continue;
        }
        float mx = l[0];
        for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        double sum = 0;
        for (int64_t v = 0; v < V; v++) {
            d[v] = expf(l[v] - mx);
            sum += d[v];
        }
        loss += mx + log(sum) - l[targets[r]];
        float k = weight / (float)valid, inv = (float)(1.0 / sum) * k;
        for (int64_t v = 0; v < V; v++) d[v] *= inv;
        d[targets[r]] -= k;
    }
    return valid ? loss / (double)valid : 0.0;
}

/* ---- whole model ---- */

/* Saved state of one MTP depth between its forward and backward. */
typedef struct {
    int64_t S;                  /* rows per sequence (T - k) */
    float *emb, *hin, *cat;     /* inputs: Emb(t_{i+k}), h^{k-1}, [enorm ; hnorm] */
    float *ym, *yn, *dyn;       /* block output, shared_head.norm output and its gradient */
    mla_cache *mc;
    ffn_cache *fc;
} mtp_depth;

/* Buffer slot i of at least n floats, kept across steps (no page faults per step). */
static float *big_buffer(dsv3_train_model *tm, int i, int64_t n) {
    if (tm->big_cap[i] < n) {
        free(tm->big[i]);
        tm->big[i] = malloc(sizeof(float) * n);
        tm->big_cap[i] = tm->big[i] ? n : 0;
    }
    return tm->big[i];
}

dsv3_status dsv3_train_forward_backward(dsv3_train_model *tm, const int32_t *ids, int64_t B, int64_t T,
                                        const dsv3_loss_params *lp, dsv3_step_stats *stats, dsv3_error *err) {
    const dsv3_config *c = &tm->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, Lc = c->num_hidden_layers, E = c->n_routed_experts,
                  n = B * T;
    if (B <= 0 || T < 2) return dsv3_fail(err, DSV3_ERR_INVALID, "training batch needs B >= 1 sequences of T >= 2 tokens");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return dsv3_fail(err, DSV3_ERR_INVALID, "token id %d at index %lld outside the vocabulary", ids[i], (long long)i);
    dsv3_status st = DSV3_OK;
    const float eps = (float)c->rms_norm_eps;
    tseq sq = {B, T};
    mla_cache **mc = calloc((size_t)Lc, sizeof *mc);
    ffn_cache **fc = calloc((size_t)Lc, sizeof *fc);
    float *x = malloc(sizeof(float) * n * H), *xf = malloc(sizeof(float) * n * H), *h = malloc(sizeof(float) * n * H),
          *logits = big_buffer(tm, 0, n * V), *dlog = big_buffer(tm, 1, n * V),
          *dh = calloc((size_t)(n * H), sizeof(float)), *dx = malloc(sizeof(float) * n * H);
    int32_t *tgt = malloc(sizeof(int32_t) * n);
    if (!mc || !fc || !x || !xf || !h || !logits || !dlog || !dh || !dx || !tgt) { st = DSV3_ERR_NOMEM; goto done; }
    double bal = 0;
    int64_t moe_i = 0;
    for (int64_t t = 0; t < n; t++) memcpy(x + t * H, tm->embed->w + (int64_t)ids[t] * H, sizeof(float) * H);
    for (int64_t l = 0; l < Lc; l++) {
        tlayer *L = &tm->layers[l];
        float *load = stats && stats->expert_load && L->is_moe ? stats->expert_load + moe_i * E : NULL;
        if (load) memset(load, 0, sizeof(float) * E);
        if (!(mc[l] = mla_train_forward(tm, L, sq, x)) ||
            !(fc[l] = ffn_train_forward(tm, L, sq, x, L->is_moe ? lp->bal_alpha : 0.0f, &bal, load))) {
            st = DSV3_ERR_NOMEM;
            goto done;
        }
        moe_i += L->is_moe;
    }
    memcpy(xf, x, sizeof(float) * n * H);
    t_rms(h, xf, n, tm->final_norm, eps);
    t_mm(logits, h, n, tm->lm_head);
    /* main loss: position t predicts ids[t+1] */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -1;
    double loss_main = cross_entropy(logits, tgt, n, V, 1.0f, dlog), loss_mtp = 0; /* mean over depths */

    /* MTP (spec §4.1, §4.2): depth k = 1..D takes (h^{k-1}_i, t_{i+k}) for rows i < T-k and
     * predicts t_{i+k+1}; h^0 is the main final-norm output, h^k the depth's shared_head.norm
     * output; loss λ/D Σ_k CE_k. Forward all depths, then backward from the deepest. */
    const int D = tm->n_mtp;
    mtp_depth dep[DSV3_MAX_MTP];
    memset(dep, 0, sizeof dep);
    int mtp_ok = 1;
    for (int d = 0; tm->has_mtp && T >= 3 && lp->mtp_lambda != 0.0f && d < D && T - (d + 1) >= 2; d++) {
        const int64_t k = d + 1, S = T - k, nk = B * S;
        mtp_depth *q = &dep[d];
        const tmtp *mt = &tm->mtp[d];
        q->S = S;
        q->emb = malloc(sizeof(float) * nk * H);
        q->hin = malloc(sizeof(float) * nk * H);
        q->cat = malloc(sizeof(float) * nk * 2 * H);
        q->ym = malloc(sizeof(float) * nk * H);
        q->yn = malloc(sizeof(float) * nk * H);
        q->dyn = malloc(sizeof(float) * nk * H);
        int32_t *t2 = malloc(sizeof(int32_t) * nk);
        float *tmp = malloc(sizeof(float) * nk * H), *ml = big_buffer(tm, 2, nk * V), *dml = big_buffer(tm, 3, nk * V);
        mtp_ok = q->emb && q->hin && q->cat && q->ym && q->yn && q->dyn && t2 && tmp && ml && dml;
        if (mtp_ok) {
            for (int64_t bb = 0; bb < B; bb++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t r = bb * S + i;
                    memcpy(q->emb + r * H, tm->embed->w + (int64_t)ids[bb * T + i + k] * H, sizeof(float) * H);
                    const float *hsrc = d == 0 ? h + (bb * T + i) * H : dep[d - 1].yn + (bb * (S + 1) + i) * H;
                    memcpy(q->hin + r * H, hsrc, sizeof(float) * H);
                    t2[r] = i + k + 1 < T ? ids[bb * T + i + k + 1] : -1;
                }
            /* cat = [enorm(emb) ; hnorm(h)] (embedding half first) */
            t_rms(tmp, q->emb, nk, mt->enorm, eps);
            for (int64_t r = 0; r < nk; r++) memcpy(q->cat + r * 2 * H, tmp + r * H, sizeof(float) * H);
            t_rms(tmp, q->hin, nk, mt->hnorm, eps);
            for (int64_t r = 0; r < nk; r++) memcpy(q->cat + r * 2 * H + H, tmp + r * H, sizeof(float) * H);
            t_mm(q->ym, q->cat, nk, mt->eh_proj);
            tlayer *blk = &tm->mtp[d].block;
            tseq sqk = {B, S};
            mtp_ok = (q->mc = mla_train_forward(tm, blk, sqk, q->ym)) != NULL &&
                     (q->fc = ffn_train_forward(tm, blk, sqk, q->ym, 0.0f, &bal, NULL)) != NULL;
        }
        if (mtp_ok) {
            t_rms(q->yn, q->ym, nk, mt->head_norm, eps);
            t_mm(ml, q->yn, nk, tm->lm_head);
            loss_mtp += cross_entropy(ml, t2, nk, V, lp->mtp_lambda / (float)D, dml) / D;
            t_mm_bwd(q->dyn, 0, dml, q->yn, nk, tm->lm_head); /* head gradient now; dyn completed by depth d+1 */
        }
        free(t2);
        free(tmp);
        if (!mtp_ok) break;
    }
    for (int d = D - 1; mtp_ok && d >= 0; d--) {
        mtp_depth *q = &dep[d];
        if (!q->mc) continue;
        const int64_t k = d + 1, S = q->S, nk = B * S;
        const tmtp *mt = &tm->mtp[d];
        tseq sqk = {B, S};
        float *dpart = malloc(sizeof(float) * nk * H), *dcat = malloc(sizeof(float) * nk * 2 * H),
              *dcol = malloc(sizeof(float) * nk * H);
        if (!dpart || !dcat || !dcol) {
            free(dpart); free(dcat); free(dcol);
            mtp_ok = 0;
            break;
        }
        t_rms_bwd(dpart, 0, q->dyn, q->ym, nk, mt->head_norm, eps); /* ∂/∂(block output) */
        ffn_train_backward(tm, &tm->mtp[d].block, sqk, q->fc, dpart);
        mla_train_backward(tm, &tm->mtp[d].block, sqk, q->mc, dpart);
        q->fc = NULL;
        q->mc = NULL;
        t_mm_bwd(dcat, 0, dpart, q->cat, nk, mt->eh_proj);
        for (int64_t r = 0; r < nk; r++) memcpy(dcol + r * H, dcat + r * 2 * H, sizeof(float) * H);
        t_rms_bwd(dpart, 0, dcol, q->emb, nk, mt->enorm, eps);
        for (int64_t bb = 0; bb < B; bb++) /* embedding rows of t_{i+k} */
            for (int64_t i = 0; i < S; i++) {
                float *g = tm->embed->g + (int64_t)ids[bb * T + i + k] * H;
                const float *dd = dpart + (bb * S + i) * H;
                for (int64_t j = 0; j < H; j++) g[j] += dd[j];
            }
        for (int64_t r = 0; r < nk; r++) memcpy(dcol + r * H, dcat + r * 2 * H + H, sizeof(float) * H);
        t_rms_bwd(dpart, 0, dcol, q->hin, nk, mt->hnorm, eps);
        for (int64_t bb = 0; bb < B; bb++) /* into h^{k-1}: the main output or the previous depth */
            for (int64_t i = 0; i < S; i++) {
                float *dst = d == 0 ? dh + (bb * T + i) * H : dep[d - 1].dyn + (bb * (S + 1) + i) * H;
                const float *dd = dpart + (bb * S + i) * H;
                for (int64_t j = 0; j < H; j++) dst[j] += dd[j];
            }
        free(dpart); free(dcat); free(dcol);
    }
    for (int d = 0; d < DSV3_MAX_MTP; d++) {
        mla_cache_release(dep[d].mc);
        ffn_cache_release(dep[d].fc);
        free(dep[d].emb); free(dep[d].hin); free(dep[d].cat); free(dep[d].ym); free(dep[d].yn); free(dep[d].dyn);
    }
    if (!mtp_ok) {
        st = DSV3_ERR_NOMEM;
        goto done;
    }
    /* main backward */
    t_mm_bwd(dh, 1, dlog, h, n, tm->lm_head);
    t_rms_bwd(dx, 0, dh, xf, n, tm->final_norm, eps);
    for (int64_t l = Lc - 1; l >= 0; l--) {
        ffn_train_backward(tm, &tm->layers[l], sq, fc[l], dx);
        fc[l] = NULL;
        mla_train_backward(tm, &tm->layers[l], sq, mc[l], dx);
        mc[l] = NULL;
    }
    for (int64_t t = 0; t < n; t++) {
        float *g = tm->embed->g + (int64_t)ids[t] * H;
        for (int64_t j = 0; j < H; j++) g[j] += dx[t * H + j];
    }
    if (stats) {
        stats->loss_main = loss_main;
        stats->loss_mtp = loss_mtp;
        stats->loss_bal = bal;
        stats->loss_total = loss_main + lp->mtp_lambda * loss_mtp + bal;
        stats->tokens = n;
    }
done:
    if (st == DSV3_ERR_NOMEM) dsv3_fail(err, st, "out of memory in the training step (B=%lld, T=%lld)", (long long)B, (long long)T);
    for (int64_t l = 0; l < Lc; l++) {
        if (mc) mla_cache_release(mc[l]);
        if (fc) ffn_cache_release(fc[l]);
    }
    free(mc); free(fc);
    free(x); free(xf); free(h); free(dh); free(dx); free(tgt);
    return st;
}
