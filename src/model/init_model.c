/* Randomly initialised DeepSeek-V3 checkpoints (see dsv3/init_model.h).
 *
 * Two passes: plan() lists every tensor the loader needs (weights.c, spec §2.3)
 * with its dtype and byte size and assigns tensors to shards in order; then
 * each shard is generated into a safetensors writer and saved before the next
 * one starts, so peak memory is about one shard plus one tensor. */
#include "dsv3/init_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/config.h"
#include "dsv3/dtype.h"
#include "dsv3/fp8.h"
#include "dsv3/safetensors.h"
#include "model/ckpt_out.h"

#define FP8_BLOCK 128   /* weight_block_size written to quantization_config */
#define NAME_MAX_LEN 200

/* ---------------------------------------------------------------- RNG ---- */

/* splitmix64 finaliser */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Stream key of one tensor: FNV-1a of its name mixed with the seed. */
static uint64_t stream_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return mix64(h ^ mix64(seed ^ 0x6a09e667f3bcc909ull));
}

/* Standard-normal pair k of a stream: counter-based splitmix64 (so any range of
 * a tensor can be generated independently, in parallel) and Box-Muller on two
 * 24-bit uniforms taken from one 64-bit draw. */
static inline void normal_pair(uint64_t key, uint64_t k, float *z0, float *z1) {
    uint64_t x = mix64(key + (k + 1) * 0x9e3779b97f4a7c15ull);
    float u1 = (float)((x >> 40) + 1) * 0x1p-24f;        /* (0, 1]: log(u1) is finite */
    float u2 = (float)((x >> 16) & 0xffffffu) * 0x1p-24f; /* [0, 1) */
    float r = sqrtf(-2.0f * logf(u1)), t = 6.28318530717958647692f * u2;
    *z0 = r * cosf(t);
    *z1 = r * sinf(t);
}

/* Element i of the stream is z0 of pair i/2 when i is even, z1 when odd. */
static void normal_fill(uint64_t key, uint64_t start, uint64_t n, float std, float *out) {
    uint64_t i = start, end = start + n;
    float z0, z1;
    if (i < end && (i & 1)) {
        normal_pair(key, i >> 1, &z0, &z1);
        *out++ = std * z1;
        i++;
    }
    for (; i + 1 < end; i += 2, out += 2) {
        normal_pair(key, i >> 1, &z0, &z1);
        out[0] = std * z0;
        out[1] = std * z1;
    }
    if (i < end) {
        normal_pair(key, i >> 1, &z0, &z1);
        *out = std * z0;
    }
}

void dsv3_init_normal(uint64_t seed, const char *name, uint64_t start, uint64_t n, float std, float *out) {
    normal_fill(stream_key(seed, name), start, n, std, out);
}

void dsv3_init_opts_default(dsv3_init_opts *o) {
    memset(o, 0, sizeof *o);
    o->dtype = DSV3_INIT_BF16;
    o->std = DSV3_INIT_DEFAULT_STD;
    o->shard_size = DSV3_INIT_DEFAULT_SHARD_SIZE;
}

/* --------------------------------------------------------------- plan ---- */

typedef enum {
    ROLE_PROJ,  /* 2-D projection: FP8 + scale in fp8 mode */
    ROLE_DENSE, /* 2-D, never FP8: embedding, heads, eh_proj, router */
    ROLE_NORM,  /* RMSNorm weight: ones */
    ROLE_BIAS   /* e_score_correction_bias: F32 zeros */
} role;

typedef struct {
    char name[NAME_MAX_LEN];
    char key[NAME_MAX_LEN]; /* RNG stream (copies share the original's) */
    role role;
    dsv3_dtype dt;
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;        /* including the scale tensor of an FP8 weight */
    int shard;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
    const dsv3_config *c;
    dsv3_init_dtype mode;
    int fp8_head;           /* lm_head.weight is a ROLE_PROJ (FP8 in fp8 mode) */
    uint64_t total_bytes;
    int64_t n_params, n_tensors;
    dsv3_status st;
    dsv3_error *err;
} plan;

/* Appends a tensor; rows x cols (cols == 0: a vector of rows). key NULL = own name. */
static void add(plan *p, role r, int64_t rows, int64_t cols, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add(plan *p, role r, int64_t rows, int64_t cols, const char *key, const char *fmt, ...) {
    if (p->st) return;
    if (p->n == p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 256;
        entry *ne = realloc(p->e, nc * sizeof *ne);
        if (!ne) { p->st = dsv3_fail(p->err, DSV3_ERR_NOMEM, "init-model: out of memory planning tensors"); return; }
        p->e = ne;
        p->cap = nc;
    }
    entry *e = &p->e[p->n];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    if (len < 0 || len >= (int)sizeof e->name - 16) { /* room for "_scale_inv" */
        p->st = dsv3_fail(p->err, DSV3_ERR_INVALID, "init-model: tensor name too long");
        return;
    }
    snprintf(e->key, sizeof e->key, "%s", key ? key : e->name);
    e->role = r;
    e->ndim = cols ? 2 : 1;
    e->shape[0] = rows;
    e->shape[1] = cols;
    if (r == ROLE_BIAS) e->dt = DSV3_F32;
    else if (p->mode == DSV3_INIT_F32) e->dt = DSV3_F32;
    else if (r == ROLE_PROJ && p->mode == DSV3_INIT_FP8) e->dt = DSV3_F8_E4M3;
    else e->dt = DSV3_BF16;
    unsigned long long numel = (unsigned long long)rows, bytes, sbytes = 0, total, params;
    int bad = cols && dsv3_mul_u64(numel, (unsigned long long)cols, &numel);
    bad = bad || dsv3_mul_u64(numel, dsv3_dtype_size(e->dt), &bytes);
    if (e->dt == DSV3_F8_E4M3) {
        sbytes = (unsigned long long)((rows + FP8_BLOCK - 1) / FP8_BLOCK) * ((cols + FP8_BLOCK - 1) / FP8_BLOCK) * 4;
        p->n_tensors++;
    }
    bad = bad || dsv3_add_u64(bytes, sbytes, &bytes) || dsv3_add_u64(p->total_bytes, bytes, &total) ||
          dsv3_add_u64((unsigned long long)p->n_params, numel, &params) || bytes > (unsigned long long)SIZE_MAX / 2;
    if (bad) {
        p->st = dsv3_fail(p->err, DSV3_ERR_INVALID, "init-model: tensor '%s' (or the model) is too large", e->name);
        return;
    }
    e->nbytes = bytes;
    p->total_bytes = total;
    p->n_params = (int64_t)params;
    p->n_tensors++;
    p->n++;
}

static void add_ffn(plan *p, const char *prefix, int64_t inter) {
    int64_t H = p->c->hidden_size;
    add(p, ROLE_PROJ, inter, H, NULL, "%s.gate_proj.weight", prefix);
    add(p, ROLE_PROJ, inter, H, NULL, "%s.up_proj.weight", prefix);
    add(p, ROLE_PROJ, H, inter, NULL, "%s.down_proj.weight", prefix);
}

/* Decoder block model.layers.<idx>.* (same names/shapes as bind_layer in weights.c). */
static void add_layer(plan *p, int64_t idx) {
    const dsv3_config *c = p->c;
    int64_t H = c->hidden_size, nh = c->num_attention_heads, qk = dsv3_config_qk_head_dim(c);
    char pre[64], sub[128];
    snprintf(pre, sizeof pre, "model.layers.%lld", (long long)idx);
    add(p, ROLE_NORM, H, 0, NULL, "%s.input_layernorm.weight", pre);
    if (c->q_lora_rank > 0) {
        add(p, ROLE_PROJ, c->q_lora_rank, H, NULL, "%s.self_attn.q_a_proj.weight", pre);
        add(p, ROLE_NORM, c->q_lora_rank, 0, NULL, "%s.self_attn.q_a_layernorm.weight", pre);
        add(p, ROLE_PROJ, nh * qk, c->q_lora_rank, NULL, "%s.self_attn.q_b_proj.weight", pre);
    } else {
        add(p, ROLE_PROJ, nh * qk, H, NULL, "%s.self_attn.q_proj.weight", pre);
    }
    add(p, ROLE_PROJ, c->kv_lora_rank + c->qk_rope_head_dim, H, NULL, "%s.self_attn.kv_a_proj_with_mqa.weight", pre);
    add(p, ROLE_NORM, c->kv_lora_rank, 0, NULL, "%s.self_attn.kv_a_layernorm.weight", pre);
    add(p, ROLE_PROJ, nh * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank, NULL,
        "%s.self_attn.kv_b_proj.weight", pre);
    add(p, ROLE_PROJ, H, nh * c->v_head_dim, NULL, "%s.self_attn.o_proj.weight", pre);
    add(p, ROLE_NORM, H, 0, NULL, "%s.post_attention_layernorm.weight", pre);
    if (!dsv3_config_is_moe_layer(c, idx)) {
        snprintf(sub, sizeof sub, "%s.mlp", pre);
        add_ffn(p, sub, c->intermediate_size);
        return;
    }
    int64_t E = c->n_routed_experts;
    add(p, ROLE_DENSE, E, H, NULL, "%s.mlp.gate.weight", pre);
    if (c->topk_method == DSV3_TOPK_NOAUX_TC) add(p, ROLE_BIAS, E, 0, NULL, "%s.mlp.gate.e_score_correction_bias", pre);
    for (int64_t e = 0; e < E && !p->st; e++) {
        snprintf(sub, sizeof sub, "%s.mlp.experts.%lld", pre, (long long)e);
        add_ffn(p, sub, c->moe_intermediate_size);
    }
    if (c->n_shared_experts > 0) {
        snprintf(sub, sizeof sub, "%s.mlp.shared_experts", pre);
        add_ffn(p, sub, c->n_shared_experts * c->moe_intermediate_size);
    }
}

static void build_plan(plan *p) {
    const dsv3_config *c = p->c;
    int64_t H = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    const char *head_key = c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    add(p, ROLE_DENSE, V, H, NULL, "model.embed_tokens.weight");
    for (int64_t l = 0; l < L && !p->st; l++) add_layer(p, l);
    add(p, ROLE_NORM, H, 0, NULL, "model.norm.weight");
    if (!c->tie_word_embeddings) add(p, p->fp8_head ? ROLE_PROJ : ROLE_DENSE, V, H, NULL, "lm_head.weight");
    /* MTP modules at layer indices L.. (spec §2.3): block + embedding/head copies. */
    for (int64_t k = 0; k < c->num_nextn_predict_layers && !p->st; k++) {
        long long idx = (long long)(L + k);
        add(p, ROLE_DENSE, V, H, "model.embed_tokens.weight", "model.layers.%lld.embed_tokens.weight", idx);
        add(p, ROLE_NORM, H, 0, NULL, "model.layers.%lld.enorm.weight", idx);
        add(p, ROLE_NORM, H, 0, NULL, "model.layers.%lld.hnorm.weight", idx);
        add(p, ROLE_DENSE, H, 2 * H, NULL, "model.layers.%lld.eh_proj.weight", idx);
        add_layer(p, L + k);
        add(p, ROLE_NORM, H, 0, NULL, "model.layers.%lld.shared_head.norm.weight", idx);
        add(p, ROLE_DENSE, V, H, head_key, "model.layers.%lld.shared_head.head.weight", idx);
    }
}

/* Greedy in order: a new shard starts when the next tensor would overflow the
 * current one (an FP8 weight and its scale always stay together). */
static int assign_shards(plan *p, uint64_t shard_size) {
    int shard = 0;
    uint64_t cur = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (shard_size && cur > 0 && cur + p->e[i].nbytes > shard_size) {
            shard++;
            cur = 0;
        }
        p->e[i].shard = shard;
        cur += p->e[i].nbytes;
    }
    return shard + 1;
}

/* ---------------------------------------------------------- generation ---- */

/* Fills a 2-D normal weight e (rows x cols) into data (and scale for FP8), in
 * blocks of 128 rows spread over the threads. scratch: nthr * 128 * cols floats. */
static void gen_matrix(const entry *e, const dsv3_init_opts *o, void *data, float *scale, float *scratch, int nthr) {
    const int64_t R = e->shape[0], C = e->shape[1], nb = (R + FP8_BLOCK - 1) / FP8_BLOCK;
    const int64_t scols = (C + FP8_BLOCK - 1) / FP8_BLOCK;
    const uint64_t key = stream_key(o->seed, e->key);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr)
    for (int64_t b = 0; b < nb; b++) {
        float *f = scratch + (size_t)omp_get_thread_num() * FP8_BLOCK * (size_t)C;
        int64_t r0 = b * FP8_BLOCK, nr = R - r0 < FP8_BLOCK ? R - r0 : FP8_BLOCK;
        size_t off = (size_t)(r0 * C), n = (size_t)(nr * C);
        normal_fill(key, off, n, o->std, f);
        if (e->dt == DSV3_F32) {
            memcpy((float *)data + off, f, n * sizeof(float));
        } else if (e->dt == DSV3_BF16) {
            uint16_t *o = (uint16_t *)data + off;
            for (size_t i = 0; i < n; i++) o[i] = dsv3_f32_to_bf16(f[i]);
        } else { /* FP8: scale = amax / 448 per 128x128 block (spec §2.4; ue8m0: up to a power of two), q = fp8(w / scale) */
            dsv3_fp8_e4m3_quantize_rows(f, nr, C, FP8_BLOCK, (uint8_t *)data + off, scale + b * scols, o->ue8m0_scales);
        }
    }
}

/* Generates entry e and adds it (and its scale) to the writer. */
static dsv3_status write_entry(dsv3_st_writer *w, const entry *e, const dsv3_init_opts *o, dsv3_error *err) {
    size_t numel = (size_t)e->shape[0] * (size_t)(e->ndim == 2 ? e->shape[1] : 1);
    void *data = malloc(numel * dsv3_dtype_size(e->dt) + 1);
    float *scale = NULL, *scratch = NULL;
    int64_t sshape[2] = {0, 0};
    dsv3_status st = DSV3_OK;
    if (!data) return dsv3_fail(err, DSV3_ERR_NOMEM, "init-model: out of memory for tensor '%s'", e->name);
    if (e->role == ROLE_NORM || e->role == ROLE_BIAS) {
        float v = e->role == ROLE_NORM ? 1.0f : 0.0f;
        for (size_t i = 0; i < numel; i++) {
            if (e->dt == DSV3_F32) ((float *)data)[i] = v;
            else ((uint16_t *)data)[i] = dsv3_f32_to_bf16(v);
        }
    } else {
        int64_t nb = (e->shape[0] + FP8_BLOCK - 1) / FP8_BLOCK;
        int nthr = omp_get_max_threads();
        if (nthr > nb) nthr = (int)nb;
        if (nthr < 1) nthr = 1;
        scratch = malloc((size_t)nthr * FP8_BLOCK * (size_t)e->shape[1] * sizeof(float) + 1);
        if (e->dt == DSV3_F8_E4M3) {
            sshape[0] = nb;
            sshape[1] = (e->shape[1] + FP8_BLOCK - 1) / FP8_BLOCK;
            scale = malloc((size_t)(sshape[0] * sshape[1]) * sizeof(float));
        }
        if (!scratch || (e->dt == DSV3_F8_E4M3 && !scale))
            st = dsv3_fail(err, DSV3_ERR_NOMEM, "init-model: out of memory for tensor '%s'", e->name);
        else gen_matrix(e, o, data, scale, scratch, nthr);
    }
    if (!st) st = dsv3_st_writer_add(w, e->name, e->dt, e->ndim, e->shape, data, err);
    if (!st && scale) {
        char sname[NAME_MAX_LEN + 16];
        snprintf(sname, sizeof sname, "%s_scale_inv", e->name);
        st = dsv3_st_writer_add(w, sname, DSV3_F32, 2, sshape, scale, err);
    }
    free(data);
    free(scale);
    free(scratch);
    return st;
}

/* ---------------------------------------------------------- files/dirs ---- */

static void shard_file(char *buf, size_t n, int i, int n_shards) {
    if (n_shards == 1) snprintf(buf, n, "model.safetensors");
    else snprintf(buf, n, "model-%05d-of-%05d.safetensors", i + 1, n_shards);
}

/* Loads config_path, sets/removes quantization_config for the mode, validates
 * the result with the config parser; returns the JSON text (caller frees). */
static dsv3_status prepare_config(const char *path, dsv3_init_dtype mode, int ue8m0, dsv3_config *cfg, char **text,
                                  dsv3_error *err) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column,
                         je.text);
    dsv3_status st = DSV3_OK;
    if (!json_is_object(root)) st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: top level must be a JSON object", path);
    int bad = 0;
    if (!st && mode == DSV3_INIT_FP8)
        bad = dsv3_json_set_fp8_quant_config(root, FP8_BLOCK, ue8m0) != 0;
    else if (!st) json_object_del(root, "quantization_config"); /* fails harmlessly when absent */
    if (!st && !bad)
        bad = json_object_set_new(root, "torch_dtype", json_string(mode == DSV3_INIT_F32 ? "float32" : "bfloat16")) != 0;
    if (!st && bad) st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory editing the config", path);
    if (!st && !(*text = json_dumps(root, JSON_INDENT(2))))
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", path);
    json_decref(root);
    if (!st) st = dsv3_config_parse(*text, strlen(*text), path, cfg, err);
    if (st) {
        free(*text);
        *text = NULL;
    }
    return st;
}

static dsv3_status write_index(const char *dir, const plan *p, int n_shards, dsv3_error *err) {
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    int bad = !root || !meta || !wm;
    char file[64], sname[NAME_MAX_LEN + 16];
    bad = bad || json_object_set_new(meta, "total_size", json_integer((json_int_t)p->total_bytes));
    for (size_t i = 0; i < p->n && !bad; i++) {
        const entry *e = &p->e[i];
        shard_file(file, sizeof file, e->shard, n_shards);
        bad = json_object_set_new(wm, e->name, json_string(file)) != 0;
        if (!bad && e->dt == DSV3_F8_E4M3) {
            snprintf(sname, sizeof sname, "%s_scale_inv", e->name);
            bad = json_object_set_new(wm, sname, json_string(file)) != 0;
        }
    }
    if (!bad) {
        bad = json_object_set(root, "metadata", meta) || json_object_set(root, "weight_map", wm);
    }
    char *text = bad ? NULL : json_dumps(root, JSON_INDENT(2));
    json_decref(meta);
    json_decref(wm);
    json_decref(root);
    if (!text) return dsv3_fail(err, DSV3_ERR_NOMEM, "init-model: out of memory building the index");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    dsv3_status st = dsv3_write_text_file(path, text, err);
    free(text);
    return st;
}

/* --------------------------------------------------------------- main ---- */

dsv3_status dsv3_init_model(const char *config_path, const char *out_dir, const dsv3_init_opts *o,
                            dsv3_init_result *res, dsv3_error *err) {
    if (!config_path || !out_dir || !o) return dsv3_fail(err, DSV3_ERR_INVALID, "init-model: NULL argument");
    if (!(o->std > 0.0f) || !isfinite(o->std))
        return dsv3_fail(err, DSV3_ERR_INVALID, "init-model: std must be a positive number (got %g)", (double)o->std);
    if (o->dtype != DSV3_INIT_BF16 && o->dtype != DSV3_INIT_FP8 && o->dtype != DSV3_INIT_F32)
        return dsv3_fail(err, DSV3_ERR_INVALID, "init-model: unknown dtype %d", (int)o->dtype);
    if (strlen(out_dir) > 3000) return dsv3_fail(err, DSV3_ERR_INVALID, "init-model: output path too long");
    dsv3_config cfg;
    char *cfg_text = NULL;
    dsv3_status st = prepare_config(config_path, o->dtype, o->ue8m0_scales, &cfg, &cfg_text, err);
    if (st) return st;
    plan p = {.c = &cfg, .mode = o->dtype, .fp8_head = o->fp8_lm_head, .err = err};
    build_plan(&p);
    st = p.st;
    int n_shards = st ? 0 : assign_shards(&p, o->shard_size);
    if (!st && n_shards > 99999)
        st = dsv3_fail(err, DSV3_ERR_INVALID, "init-model: %d shards (more than 99999); use a larger shard size",
                       n_shards);
    /* mkdir -p, refuse an existing checkpoint unless overwrite, check free space, remove the old files */
    if (!st) st = dsv3_out_dir_prepare(out_dir, o->overwrite, (double)p.total_bytes, err);
    char path[4200], file[64];
    if (!st) {
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        st = dsv3_write_text_file(path, cfg_text, err);
    }
    size_t i = 0;
    for (int s = 0; s < n_shards && !st; s++) {
        dsv3_st_writer *w = dsv3_st_writer_new();
        if (!w) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "init-model: out of memory"); break; }
        st = dsv3_st_writer_metadata(w, "format", "pt", err);
        for (; !st && i < p.n && p.e[i].shard == s; i++) st = write_entry(w, &p.e[i], o, err);
        shard_file(file, sizeof file, s, n_shards);
        snprintf(path, sizeof path, "%s/%s", out_dir, file);
        if (!st) st = dsv3_st_writer_save(w, path, err);
        dsv3_st_writer_free(w);
        if (!st && o->progress) o->progress(o->progress_ctx, s, n_shards, path);
    }
    if (!st && n_shards > 1) st = write_index(out_dir, &p, n_shards, err);
    if (!st && res) {
        res->n_tensors = p.n_tensors;
        res->n_params = p.n_params;
        res->n_shards = n_shards;
        res->total_bytes = p.total_bytes;
    }
    free(p.e);
    free(cfg_text);
    return st;
}
