/* Checkpoint -> DeepSeek-style block-FP8 checkpoint (see dsv3/quantize.h).
 *
 * The input is loaded (and so validated) as a model first; then its tensors
 * are planned (quantise / keep FP8 / copy), the output directory is prepared
 * (refusing to replace a checkpoint without overwrite, checking free space),
 * and each input file's tensors are written to one output file of the same
 * name before the next file starts. The FP8 encoding is the one init-model
 * uses (dsv3_fp8_e4m3_quantize_rows). */
#include "dsv3/quantize.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsv3/dtype.h"
#include "dsv3/fp8.h"
#include "dsv3/hashmap.h"
#include "dsv3/safetensors.h"
#include "model/ckpt_out.h"
#include "model/model_internal.h"

void dsv3_quantize_opts_default(dsv3_quantize_opts *o) {
    memset(o, 0, sizeof *o);
    o->block = 128;
}

/* ------------------------------------------------------------ names ---- */

/* Skips "<digits>." at *p; 0 if absent. */
static int skip_index(const char **p) {
    const char *s = *p;
    if (*s < '0' || *s > '9') return 0;
    while (*s >= '0' && *s <= '9') s++;
    if (*s != '.') return 0;
    *p = s + 1;
    return 1;
}

static int is_ffn_proj(const char *s) {
    return !strcmp(s, "gate_proj.weight") || !strcmp(s, "up_proj.weight") || !strcmp(s, "down_proj.weight");
}

int dsv3_quantize_is_fp8_weight(const char *name) {
    static const char pre[] = "model.layers.";
    if (!name || strncmp(name, pre, sizeof pre - 1) != 0) return 0;
    const char *s = name + sizeof pre - 1;
    if (!skip_index(&s)) return 0;
    if (!strncmp(s, "self_attn.", 10)) {
        s += 10;
        return !strcmp(s, "q_a_proj.weight") || !strcmp(s, "q_b_proj.weight") || !strcmp(s, "q_proj.weight") ||
               !strcmp(s, "kv_a_proj_with_mqa.weight") || !strcmp(s, "kv_b_proj.weight") ||
               !strcmp(s, "o_proj.weight");
    }
    if (strncmp(s, "mlp.", 4) != 0) return 0;
    s += 4;
    if (!strncmp(s, "shared_experts.", 15)) return is_ffn_proj(s + 15);
    if (!strncmp(s, "experts.", 8)) {
        s += 8;
        return skip_index(&s) && is_ffn_proj(s);
    }
    return is_ffn_proj(s); /* dense MLP */
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* ------------------------------------------------------------- plan ---- */

typedef enum { KIND_COPY, KIND_QUANT, KIND_KEEP_FP8 } kind;

typedef struct {
    const dsv3_tensor_view *t;
    const dsv3_tensor_view *scale; /* KIND_KEEP_FP8: its _scale_inv */
    kind kind;
    int shard;
    uint64_t out_bytes;            /* incl. the scale tensor */
} entry;

typedef struct {
    entry *e;
    size_t n;
    char **shard_names;            /* output file name of each shard (borrowed from the tensor views' paths) */
    int n_shards;
    uint64_t total;
} plan;

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static uint64_t scale_bytes(int64_t rows, int64_t cols, int64_t b) {
    return (uint64_t)((rows + b - 1) / b) * (uint64_t)((cols + b - 1) / b) * 4u;
}

/* 1 when every F32 value of the scale tensor is a positive power of two (what "scale_fmt": "ue8m0" promises). */
static int pow2_scales(const dsv3_tensor_view *sc) {
    for (uint64_t i = 0; i < sc->numel; i++) {
        float v;
        memcpy(&v, (const uint8_t *)sc->data + 4 * i, 4); /* tensor data need not be 4-byte aligned */
        if (!dsv3_fp8_scale_is_pow2(v)) return 0;
    }
    return 1;
}

static dsv3_status build_plan(const dsv3_model *m, const char *in_dir, int64_t B, const dsv3_quantize_opts *o, plan *p,
                              dsv3_error *err) {
    const dsv3_checkpoint *ck = m->ckpt;
    const dsv3_config *c = &m->cfg;
    size_t n = dsv3_ckpt_count(ck);
    memset(p, 0, sizeof *p);
    p->e = calloc(n ? n : 1, sizeof *p->e);
    p->shard_names = calloc(n ? n : 1, sizeof *p->shard_names);
    dsv3_hashmap *files = dsv3_hashmap_new(0); /* file path -> shard + 1 */
    dsv3_status st = DSV3_OK;
    if (!p->e || !p->shard_names || !files) {
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    const int64_t in_br = c->fp8_block[0] > 0 ? c->fp8_block[0] : 128, in_bc = c->fp8_block[1] > 0 ? c->fp8_block[1] : 128;
    char sname[600];
    for (size_t i = 0; i < n && !st; i++) {
        const dsv3_tensor_view *t = dsv3_ckpt_tensor(ck, i);
        size_t len = strlen(t->name);
        if (len > 500) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: tensor name '%.100s...' is too long (%zu bytes)", t->file, t->name,
                           len);
            break;
        }
        if (ends_with(t->name, "_scale_inv")) {
            memcpy(sname, t->name, len - 10);
            sname[len - 10] = 0;
            if (dsv3_ckpt_find(ck, sname)) continue; /* written with (or regenerated for) its weight */
        }
        entry *e = &p->e[p->n];
        e->t = t;
        e->kind = KIND_COPY;
        e->out_bytes = t->nbytes;
        if (t->dtype == DSV3_F8_E4M3 || t->dtype == DSV3_F8_E5M2) {
            snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
            e->scale = dsv3_ckpt_find(ck, sname);
            if (t->ndim != 2 || !e->scale)
                st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: FP8 tensor '%s' %s", t->file, t->name,
                               t->ndim != 2 ? "is not 2-D" : "has no _scale_inv tensor");
            else if (in_br != B || in_bc != B)
                st = dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                               "%s: '%s' is already FP8 with %lldx%lld blocks; re-quantising to %lldx%lld blocks is not "
                               "supported (use --block %lld, or start from a BF16 checkpoint)",
                               in_dir, t->name, (long long)in_br, (long long)in_bc, (long long)B, (long long)B,
                               (long long)in_br);
            else if (e->scale->dtype != DSV3_F32 || e->scale->ndim != 2 ||
                     e->scale->shape[0] != (t->shape[0] + B - 1) / B || e->scale->shape[1] != (t->shape[1] + B - 1) / B)
                st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: '%s' must be F32 [%lld,%lld]", e->scale->file, sname,
                               (long long)((t->shape[0] + B - 1) / B), (long long)((t->shape[1] + B - 1) / B));
            if (!st && o->ue8m0_scales && !pow2_scales(e->scale))
                st = dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                               "%s: '%s' is already FP8 and its scales are not all powers of two; --scale-fmt ue8m0 "
                               "cannot keep it as it is (start from a BF16 checkpoint, or leave --scale-fmt float)",
                               in_dir, t->name);
            if (st) break;
            e->kind = KIND_KEEP_FP8;
            e->out_bytes = t->nbytes + e->scale->nbytes;
        } else if ((dsv3_quantize_is_fp8_weight(t->name) || (o->fp8_lm_head && !strcmp(t->name, "lm_head.weight"))) &&
                   t->ndim == 2 && t->numel > 0) {
            if (t->dtype != DSV3_F32 && t->dtype != DSV3_BF16 && t->dtype != DSV3_F16) {
                st = dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (want BF16, F16 or F32)",
                               t->file, t->name, dsv3_dtype_name(t->dtype));
                break;
            }
            e->kind = KIND_QUANT;
            e->out_bytes = t->numel + scale_bytes(t->shape[0], t->shape[1], B);
        }
        void *slot = NULL;
        if (dsv3_hashmap_findn(files, t->file, strlen(t->file), &slot)) {
            e->shard = (int)(uintptr_t)slot - 1;
        } else {
            e->shard = p->n_shards;
            p->shard_names[p->n_shards++] = (char *)base_name(t->file);
            if (!ends_with(base_name(t->file), ".safetensors")) /* never overwrite config.json & co. */
                st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: shard file name does not end in .safetensors", t->file);
            if (dsv3_hashmap_put(files, t->file, (void *)(uintptr_t)p->n_shards, NULL) < 0)
                st = dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: out of memory");
        }
        unsigned long long tot;
        if (dsv3_add_u64(p->total, e->out_bytes, &tot)) st = dsv3_fail(err, DSV3_ERR_INVALID, "quantize: checkpoint too large");
        p->total = tot;
        p->n++;
    }
done:
    dsv3_hashmap_free(files);
    return st;
}

/* --------------------------------------------------------- tensors ---- */

/* Quantises the 2-D float weight t into q (+ scale), block rows spread over the threads. */
static dsv3_status quantize_tensor(const dsv3_tensor_view *t, int64_t B, int pow2, uint8_t *q, float *scale,
                                   dsv3_error *err) {
    const int64_t R = t->shape[0], C = t->shape[1], nb = (R + B - 1) / B, scols = (C + B - 1) / B;
    const size_t es = dsv3_dtype_size(t->dtype);
    int nthr = omp_get_max_threads();
    if (nthr > nb) nthr = (int)nb;
    if (nthr < 1) nthr = 1;
    unsigned long long per = 0, all = 0;
    if (dsv3_mul_u64((unsigned long long)(B < R ? B : R), (unsigned long long)C, &per) ||
        dsv3_mul_u64(per, (unsigned long long)nthr * sizeof(float), &all) || all > (unsigned long long)SIZE_MAX / 2)
        return dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: tensor '%s' too large", t->name);
    float *scratch = malloc((size_t)all);
    if (!scratch) return dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: out of memory for tensor '%s'", t->name);
    int64_t bad_at = -1; /* first element index that is not finite */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr)
    for (int64_t b = 0; b < nb; b++) {
        float *f = scratch + (size_t)omp_get_thread_num() * (size_t)per;
        int64_t r0 = b * B, nr = R - r0 < B ? R - r0 : B;
        size_t off = (size_t)r0 * (size_t)C, cnt = (size_t)nr * (size_t)C;
        dsv3_convert_to_f32(t->dtype, (const uint8_t *)t->data + off * es, f, cnt);
        for (size_t i = 0; i < cnt; i++)
            if (!isfinite(f[i])) {
#pragma omp critical(dsv3_quantize_bad)
                if (bad_at < 0 || (int64_t)(off + i) < bad_at) bad_at = (int64_t)(off + i);
                break;
            }
        dsv3_fp8_e4m3_quantize_rows(f, nr, C, B, q + off, scale + b * scols, pow2);
    }
    free(scratch);
    if (bad_at >= 0)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: tensor '%s' has a non-finite value at [%lld,%lld]; cannot quantise",
                         t->file, t->name, (long long)(bad_at / C), (long long)(bad_at % C));
    return DSV3_OK;
}

static dsv3_status write_entry(dsv3_st_writer *w, const entry *e, int64_t B, int pow2, dsv3_error *err) {
    const dsv3_tensor_view *t = e->t;
    char sname[600];
    snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
    if (e->kind == KIND_COPY) return dsv3_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
    if (e->kind == KIND_KEEP_FP8) {
        dsv3_status st = dsv3_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
        if (!st) st = dsv3_st_writer_add(w, sname, DSV3_F32, 2, e->scale->shape, e->scale->data, err);
        return st;
    }
    int64_t sshape[2] = {(t->shape[0] + B - 1) / B, (t->shape[1] + B - 1) / B};
    uint8_t *q = malloc((size_t)t->numel);
    float *scale = malloc((size_t)(sshape[0] * sshape[1]) * sizeof(float));
    dsv3_status st = DSV3_OK;
    if (!q || !scale) st = dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: out of memory for tensor '%s'", t->name);
    if (!st) st = quantize_tensor(t, B, pow2, q, scale, err);
    if (!st) st = dsv3_st_writer_add(w, t->name, DSV3_F8_E4M3, 2, t->shape, q, err);
    if (!st) st = dsv3_st_writer_add(w, sname, DSV3_F32, 2, sshape, scale, err);
    free(q);
    free(scale);
    return st;
}

/* ----------------------------------------------------------- config ---- */

static dsv3_status make_config(const char *in_dir, int64_t B, int pow2, char **text, dsv3_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    *text = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column,
                         je.text);
    dsv3_status st = DSV3_OK;
    if (!json_is_object(root)) st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: top level must be a JSON object", path);
    else if (dsv3_json_set_fp8_quant_config(root, (int)B, pow2) != 0 || !(*text = json_dumps(root, JSON_INDENT(2))))
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory editing the config", path);
    json_decref(root);
    dsv3_config cfg;
    if (!st) st = dsv3_config_parse(*text, strlen(*text), path, &cfg, err);
    if (!st && (!cfg.fp8 || cfg.fp8_block[0] != B || cfg.fp8_block[1] != B))
        st = dsv3_fail(err, DSV3_ERR_INVALID, "%s: the edited config does not read back as FP8 %lldx%lld", path,
                       (long long)B, (long long)B);
    if (st) {
        free(*text);
        *text = NULL;
    }
    return st;
}

static dsv3_status write_index(const char *dir, const plan *p, dsv3_error *err) {
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    int bad = !root || !meta || !wm;
    char sname[600];
    bad = bad || json_object_set_new(meta, "total_size", json_integer((json_int_t)p->total));
    for (size_t i = 0; i < p->n && !bad; i++) {
        const entry *e = &p->e[i];
        const char *file = p->shard_names[e->shard];
        bad = json_object_set_new(wm, e->t->name, json_string(file)) != 0;
        if (!bad && e->kind != KIND_COPY) {
            snprintf(sname, sizeof sname, "%s_scale_inv", e->t->name);
            bad = json_object_set_new(wm, sname, json_string(file)) != 0;
        }
    }
    bad = bad || json_object_set(root, "metadata", meta) || json_object_set(root, "weight_map", wm);
    char *text = bad ? NULL : json_dumps(root, JSON_INDENT(2));
    json_decref(meta);
    json_decref(wm);
    json_decref(root);
    if (!text) return dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: out of memory building the index");
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    dsv3_status st = dsv3_write_text_file(path, text, err);
    free(text);
    return st;
}

/* ------------------------------------------------------------- main ---- */

static const char *const g_side_files[] = {"tokenizer.json",       "tokenizer_config.json", "special_tokens_map.json",
                                           "generation_config.json", "tokenizer.model",      "chat_template.jinja"};

dsv3_status dsv3_quantize_fp8(const char *in_dir, const char *out_dir, const dsv3_quantize_opts *o,
                              dsv3_quantize_result *res, dsv3_error *err) {
    if (!in_dir || !out_dir || !o) return dsv3_fail(err, DSV3_ERR_INVALID, "quantize: NULL argument");
    if (o->block < 1 || o->block > 65536)
        return dsv3_fail(err, DSV3_ERR_INVALID, "quantize: block size %d out of range [1, 65536]", o->block);
    if (strlen(in_dir) > 3000 || strlen(out_dir) > 3000)
        return dsv3_fail(err, DSV3_ERR_INVALID, "quantize: path too long");
    const int64_t B = o->block;
    struct stat si, so;
    if (stat(in_dir, &si) != 0)
        return dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot access: %s", in_dir,
                         strerror(errno));
    if (stat(out_dir, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return dsv3_fail(err, DSV3_ERR_INVALID, "quantize: output directory %s is the input directory", out_dir);

    dsv3_model *m = NULL;
    dsv3_status st = dsv3_model_load(in_dir, &m, err);
    if (st) return dsv3_wrap(err, st, "quantize: input %s", in_dir);
    plan p;
    char *cfg_text = NULL;
    st = build_plan(m, in_dir, B, o, &p, err);
    if (!st) st = make_config(in_dir, B, o->ue8m0_scales, &cfg_text, err);
    char path[4200], src[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", in_dir);
    int sharded = access(path, F_OK) == 0;
    if (!st && !sharded && p.n_shards > 1) /* cannot happen with dsv3_ckpt_open; keep the output loadable anyway */
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: %d files without an index", in_dir, p.n_shards);
    if (!st) st = dsv3_out_dir_prepare(out_dir, o->overwrite, (double)p.total, err);
    if (!st) {
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        st = dsv3_write_text_file(path, cfg_text, err);
    }
    dsv3_quantize_result r;
    memset(&r, 0, sizeof r);
    for (int s = 0; s < p.n_shards && !st; s++) {
        dsv3_st_writer *w = dsv3_st_writer_new();
        if (!w) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "quantize: out of memory"); break; }
        st = dsv3_st_writer_metadata(w, "format", "pt", err);
        for (size_t i = 0; i < p.n && !st; i++) {
            const entry *e = &p.e[i];
            if (e->shard != s) continue;
            st = write_entry(w, e, B, o->ue8m0_scales, err);
            r.n_quantized += e->kind == KIND_QUANT;
            r.n_fp8_kept += e->kind == KIND_KEEP_FP8;
            r.n_copied += e->kind == KIND_COPY;
            r.in_bytes += e->t->nbytes + (e->scale ? e->scale->nbytes : 0);
        }
        snprintf(path, sizeof path, "%s/%s", out_dir, p.shard_names[s]);
        if (!st) st = dsv3_st_writer_save(w, path, err);
        dsv3_st_writer_free(w);
        if (!st && o->progress) o->progress(o->progress_ctx, s, p.n_shards, path);
    }
    if (!st && sharded) st = write_index(out_dir, &p, err);
    for (size_t i = 0; !st && i < sizeof g_side_files / sizeof g_side_files[0]; i++) {
        snprintf(src, sizeof src, "%s/%s", in_dir, g_side_files[i]);
        if (access(src, F_OK) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", out_dir, g_side_files[i]);
        st = dsv3_copy_file(src, path, err);
        r.n_tokenizer_files++;
    }
    if (!st && res) {
        r.n_shards = p.n_shards;
        r.out_bytes = p.total;
        *res = r;
    }
    free(cfg_text);
    free(p.e);
    free(p.shard_names);
    dsv3_model_free(m);
    return st;
}
