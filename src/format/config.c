/* config.json parsing for DeepseekV3ForCausalLM and the V2 family (spec §1). */
#include "dsv3/config.h"

#include <jansson.h>
#include <math.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    json_t *root;
    const char *name;
    dsv3_error *err;
} cfg_ctx;

/* Integer key: required unless def_ok; value must be a non-negative integer <= max. */
static dsv3_status get_int(cfg_ctx *c, const char *key, int64_t *out, int required, int64_t def, int64_t min,
                           int64_t max) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        if (required) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: missing required key '%s'", c->name, key);
        *out = def;
        return DSV3_OK;
    }
    if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) {
        double d = json_real_value(v);
        if (d < (double)min || d > (double)max)
            return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key '%s' = %g out of range [%lld, %lld]", c->name, key,
                             d, (long long)min, (long long)max);
        *out = (int64_t)d;
        return DSV3_OK;
    }
    if (!json_is_integer(v))
        return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key '%s' must be an integer", c->name, key);
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key '%s' = %lld out of range [%lld, %lld]", c->name, key,
                         (long long)i, (long long)min, (long long)max);
    *out = i;
    return DSV3_OK;
}

static dsv3_status get_num(cfg_ctx *c, json_t *obj, const char *key, double *out, int required, double def) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: missing required key '%s'", c->name, key);
        *out = def;
        return DSV3_OK;
    }
    if (!json_is_number(v)) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key '%s' must be a number", c->name, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key '%s' is not finite", c->name, key);
    return DSV3_OK;
}

static dsv3_status get_bool(cfg_ctx *c, const char *key, int *out, int def) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) { *out = def; return DSV3_OK; }
    if (!json_is_boolean(v)) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key '%s' must be true or false", c->name, key);
    *out = json_is_true(v);
    return DSV3_OK;
}

static const char *get_str(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

#define TRY(x) do { dsv3_status s_ = (x); if (s_ != DSV3_OK) return s_; } while (0)

static dsv3_status parse_root(cfg_ctx *c, dsv3_config *cfg) {
    const int64_t BIG = (int64_t)1 << 40, DIM = (int64_t)1 << 24;
    memset(cfg, 0, sizeof *cfg);
    if (!json_is_object(c->root)) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: top level must be a JSON object", c->name);

    const char *mt = get_str(c->root, "model_type");
    TRY(get_int(c, "vocab_size", &cfg->vocab_size, 1, 0, 1, (int64_t)1 << 31));
    TRY(get_int(c, "hidden_size", &cfg->hidden_size, 1, 0, 1, DIM));
    TRY(get_int(c, "intermediate_size", &cfg->intermediate_size, 1, 0, 1, DIM));
    TRY(get_int(c, "num_hidden_layers", &cfg->num_hidden_layers, 1, 0, 1, 4096));
    TRY(get_int(c, "num_attention_heads", &cfg->num_attention_heads, 1, 0, 1, 65536));
    TRY(get_int(c, "q_lora_rank", &cfg->q_lora_rank, 0, 0, 0, DIM));
    TRY(get_int(c, "kv_lora_rank", &cfg->kv_lora_rank, 1, 0, 1, DIM));
    TRY(get_int(c, "qk_nope_head_dim", &cfg->qk_nope_head_dim, 1, 0, 0, DIM));
    TRY(get_int(c, "qk_rope_head_dim", &cfg->qk_rope_head_dim, 1, 0, 2, DIM));
    if (cfg->qk_rope_head_dim % 2)
        return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key 'qk_rope_head_dim' must be even", c->name);
    TRY(get_int(c, "v_head_dim", &cfg->v_head_dim, 1, 0, 1, DIM));
    /* expert counts up to 2^16 (DeepSeek-V3: 256): the router's per-token scratch (2 floats per expert) is on
     * the stack of the threads that route (moe.c, ffn_train.c) */
    TRY(get_int(c, "n_routed_experts", &cfg->n_routed_experts, 0, 0, 0, 1 << 16));
    int moe = cfg->n_routed_experts > 0;
    TRY(get_int(c, "moe_intermediate_size", &cfg->moe_intermediate_size, moe, 0, 1, DIM));
    TRY(get_int(c, "n_shared_experts", &cfg->n_shared_experts, 0, 0, 0, 1 << 10));
    TRY(get_int(c, "num_experts_per_tok", &cfg->num_experts_per_tok, moe, 0, 1, 1 << 16));
    TRY(get_int(c, "first_k_dense_replace", &cfg->first_k_dense_replace, 0, 0, 0, 4096));
    TRY(get_int(c, "moe_layer_freq", &cfg->moe_layer_freq, 0, 1, 1, 4096));
    TRY(get_int(c, "n_group", &cfg->n_group, 0, 1, 1, 1 << 16));
    TRY(get_int(c, "topk_group", &cfg->topk_group, 0, 1, 1, 1 << 16));
    TRY(get_int(c, "num_nextn_predict_layers", &cfg->num_nextn_predict_layers, 0, 0, 0, 64));
    TRY(get_int(c, "max_position_embeddings", &cfg->max_position_embeddings, 0, 4096, 1, BIG));
    TRY(get_int(c, "bos_token_id", &cfg->bos_token_id, 0, -1, -1, (int64_t)1 << 31));
    TRY(get_int(c, "eos_token_id", &cfg->eos_token_id, 0, -1, -1, (int64_t)1 << 31));
    TRY(get_bool(c, "norm_topk_prob", &cfg->norm_topk_prob, 0));
    TRY(get_bool(c, "tie_word_embeddings", &cfg->tie_word_embeddings, 0));
    TRY(get_num(c, c->root, "routed_scaling_factor", &cfg->routed_scaling_factor, 0, 1.0));
    TRY(get_num(c, c->root, "rms_norm_eps", &cfg->rms_norm_eps, 0, 1e-6));
    TRY(get_num(c, c->root, "rope_theta", &cfg->rope_theta, 0, 10000.0));
    if (cfg->rope_theta <= 1.0) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key 'rope_theta' must be > 1", c->name);

    /* scoring_func / topk_method: V3 defaults sigmoid + noaux_tc; V2 uses softmax. */
    const char *sf = get_str(c->root, "scoring_func");
    int is_v2 = mt && !strcmp(mt, "deepseek_v2");
    if (json_object_get(c->root, "scoring_func") && !sf)
        return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key 'scoring_func' must be a string", c->name);
    if (!sf) sf = is_v2 ? "softmax" : "sigmoid";
    if (!strcmp(sf, "sigmoid")) cfg->scoring_func = DSV3_SCORE_SIGMOID;
    else if (!strcmp(sf, "softmax")) cfg->scoring_func = DSV3_SCORE_SOFTMAX;
    else return dsv3_fail(c->err, DSV3_ERR_UNSUPPORTED, "%s: unsupported scoring_func '%s'", c->name, sf);
    const char *tm = get_str(c->root, "topk_method");
    if (json_object_get(c->root, "topk_method") && !tm)
        return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: key 'topk_method' must be a string", c->name);
    if (!tm) tm = is_v2 ? "greedy" : "noaux_tc";
    if (!strcmp(tm, "noaux_tc")) cfg->topk_method = DSV3_TOPK_NOAUX_TC;
    else if (!strcmp(tm, "group_limited_greedy")) cfg->topk_method = DSV3_TOPK_GROUP_LIMITED_GREEDY;
    else if (!strcmp(tm, "greedy")) cfg->topk_method = DSV3_TOPK_GREEDY;
    else return dsv3_fail(c->err, DSV3_ERR_UNSUPPORTED, "%s: unsupported topk_method '%s'", c->name, tm);

    if (moe) {
        if (cfg->num_experts_per_tok > cfg->n_routed_experts)
            return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: num_experts_per_tok (%lld) > n_routed_experts (%lld)",
                             c->name, (long long)cfg->num_experts_per_tok, (long long)cfg->n_routed_experts);
        if (cfg->n_routed_experts % cfg->n_group)
            return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: n_routed_experts (%lld) not divisible by n_group (%lld)",
                             c->name, (long long)cfg->n_routed_experts, (long long)cfg->n_group);
        if (cfg->topk_group > cfg->n_group)
            return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: topk_group > n_group", c->name);
        int64_t per_group = cfg->n_routed_experts / cfg->n_group;
        if (cfg->topk_method == DSV3_TOPK_NOAUX_TC && per_group < 2 && cfg->n_group > 1)
            return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: noaux_tc needs >= 2 experts per group", c->name);
        if (cfg->topk_group * per_group < cfg->num_experts_per_tok)
            return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: topk_group*experts_per_group < num_experts_per_tok", c->name);
    }

    /* rope_scaling: null / absent = plain RoPE; {"type" or "rope_type": "yarn", ...} */
    json_t *rs = json_object_get(c->root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: 'rope_scaling' must be an object or null", c->name);
        const char *ty = get_str(rs, "type");
        if (!ty) ty = get_str(rs, "rope_type");
        if (!ty) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: 'rope_scaling' lacks 'type'", c->name);
        if (!strcmp(ty, "yarn")) {
            cfg->rope_yarn = 1;
            TRY(get_num(c, rs, "factor", &cfg->rope_factor, 1, 0));
            TRY(get_num(c, rs, "beta_fast", &cfg->rope_beta_fast, 0, 32));
            TRY(get_num(c, rs, "beta_slow", &cfg->rope_beta_slow, 0, 1));
            TRY(get_num(c, rs, "mscale", &cfg->rope_mscale, 0, 1));
            TRY(get_num(c, rs, "mscale_all_dim", &cfg->rope_mscale_all_dim, 0, 0));
            double omp;
            TRY(get_num(c, rs, "original_max_position_embeddings", &omp, 1, 0));
            if (omp < 1 || omp > 1e12) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: bad original_max_position_embeddings", c->name);
            cfg->rope_original_max_pos = (int64_t)omp;
            if (cfg->rope_factor <= 0) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: rope_scaling.factor must be > 0", c->name);
        } else if (strcmp(ty, "default") != 0) {
            return dsv3_fail(c->err, DSV3_ERR_UNSUPPORTED, "%s: unsupported rope_scaling type '%s'", c->name, ty);
        }
    }

    json_t *qc = json_object_get(c->root, "quantization_config");
    if (qc && !json_is_null(qc)) {
        if (!json_is_object(qc)) return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: 'quantization_config' must be an object", c->name);
        const char *qm = get_str(qc, "quant_method");
        if (!qm || strcmp(qm, "fp8") != 0)
            return dsv3_fail(c->err, DSV3_ERR_UNSUPPORTED, "%s: unsupported quantization_config.quant_method '%s'",
                             c->name, qm ? qm : "(missing)");
        const char *fmt = get_str(qc, "fmt");
        if (fmt && strcmp(fmt, "e4m3") != 0)
            return dsv3_fail(c->err, DSV3_ERR_UNSUPPORTED, "%s: unsupported quantization_config.fmt '%s'", c->name, fmt);
        cfg->fp8 = 1;
        cfg->fp8_block[0] = cfg->fp8_block[1] = 128;
        json_t *bs = json_object_get(qc, "weight_block_size");
        if (bs) {
            if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(json_array_get(bs, 0)) ||
                !json_is_integer(json_array_get(bs, 1)) || json_integer_value(json_array_get(bs, 0)) <= 0 ||
                json_integer_value(json_array_get(bs, 1)) <= 0 || json_integer_value(json_array_get(bs, 0)) > DIM ||
                json_integer_value(json_array_get(bs, 1)) > DIM)
                return dsv3_fail(c->err, DSV3_ERR_FORMAT, "%s: quantization_config.weight_block_size must be [int, int]", c->name);
            cfg->fp8_block[0] = json_integer_value(json_array_get(bs, 0));
            cfg->fp8_block[1] = json_integer_value(json_array_get(bs, 1));
        }
        const char *sfmt = get_str(qc, "scale_fmt");
        cfg->scale_fmt_ue8m0 = sfmt && !strcmp(sfmt, "ue8m0");
    }
    return DSV3_OK;
}

dsv3_status dsv3_config_parse(const char *json, size_t len, const char *name, dsv3_config *cfg, dsv3_error *err) {
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, jerr.line, jerr.column,
                         jerr.text);
    cfg_ctx c = {root, name, err};
    dsv3_status st = parse_root(&c, cfg);
    json_decref(root);
    return st;
}

dsv3_status dsv3_config_load(const char *path, dsv3_config *cfg, dsv3_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (64u << 20)) { fclose(f); free(buf); return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: file too large for a config", path); }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) { fclose(f); free(buf); return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", path); }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return dsv3_fail(err, DSV3_ERR_IO, "%s: read error", path); }
    dsv3_status st = dsv3_config_parse(buf, len, path, cfg, err);
    free(buf);
    return st;
}

/* yarn_get_mscale (spec §3.5): 1 if s <= 1 else 0.1·m·ln s + 1. */
static double yarn_mscale(double s, double m) { return s <= 1.0 ? 1.0 : 0.1 * m * log(s) + 1.0; }

double dsv3_config_softmax_scale(const dsv3_config *c) {
    double sigma = 1.0 / sqrt((double)dsv3_config_qk_head_dim(c));
    if (c->rope_yarn && c->rope_mscale_all_dim != 0.0) {
        double m = yarn_mscale(c->rope_factor, c->rope_mscale_all_dim);
        sigma *= m * m;
    }
    return sigma;
}

double dsv3_config_rope_attn_factor(const dsv3_config *c) {
    if (!c->rope_yarn || c->rope_mscale == 0.0 || c->rope_mscale_all_dim == 0.0) return 1.0;
    return yarn_mscale(c->rope_factor, c->rope_mscale) / yarn_mscale(c->rope_factor, c->rope_mscale_all_dim);
}

void dsv3_config_rope_freqs(const dsv3_config *c, float *freqs) {
    int64_t D = c->qk_rope_head_dim, half = D / 2;
    /* f_j = θ^(-2j/D), computed in fp32 as the references do */
    for (int64_t j = 0; j < half; j++) {
        float exponent = (float)(2 * j) / (float)D;
        freqs[j] = 1.0f / powf((float)c->rope_theta, exponent);
    }
    if (!c->rope_yarn) return;
    /* corr(r) = D·ln(L0/(2πr)) / (2 ln θ); low = floor(corr(β_fast)), high = ceil(corr(β_slow)) */
    double L0 = (double)c->rope_original_max_pos, th = c->rope_theta;
    double lo = floor(D * log(L0 / (c->rope_beta_fast * 2 * M_PI)) / (2 * log(th)));
    double hi = ceil(D * log(L0 / (c->rope_beta_slow * 2 * M_PI)) / (2 * log(th)));
    if (lo < 0) lo = 0;
    if (hi > D - 1) hi = (double)(D - 1);
    if (lo == hi) hi += 0.001;
    float s = (float)c->rope_factor;
    for (int64_t j = 0; j < half; j++) {
        float r = (float)(((double)j - lo) / (hi - lo));
        if (r < 0) r = 0;
        if (r > 1) r = 1;
        /* f' = f·(1−r) + (f/s)·r  (smooth = 1 − r) */
        float f = freqs[j];
        freqs[j] = f / s * r + f * (1.0f - r);
    }
}
