/* Training checkpoints: HF-layout model + trainer state, written atomically
 * (temporary directory, fsync, rename; then 'latest' replaced by rename). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsv3/dtype.h"
#include "model/ckpt_out.h"
#include "train/train_internal.h"

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static dsv3_status write_text(const char *path, const char *text, size_t len, dsv3_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    return ok ? DSV3_OK : dsv3_fail(err, DSV3_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}

/* Tokenizer files are optional: copies src when it exists. */
static dsv3_status copy_optional(const char *src, const char *dst, dsv3_error *err) {
    return access(src, F_OK) == 0 ? dsv3_copy_file(src, dst, err) : DSV3_OK;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static dsv3_status add_bias(dsv3_st_writer *w, int64_t layer, const float *bias, int64_t E, dsv3_error *err) {
    char name[256];
    int64_t shape[1] = {E};
    snprintf(name, sizeof name, "model.layers.%lld.mlp.gate.e_score_correction_bias", (long long)layer);
    return dsv3_st_writer_add(w, name, DSV3_F32, 1, shape, bias, err);
}

/* Adds an f32 tensor as dt (F32 or BF16, round to nearest even). */
static dsv3_status add_as(dsv3_st_writer *w, const char *name, dsv3_dtype dt, int ndim, const int64_t *shape,
                          const float *data, int64_t numel, dsv3_error *err) {
    if (dt == DSV3_F32) return dsv3_st_writer_add(w, name, DSV3_F32, ndim, shape, data, err);
    uint16_t *h = malloc(sizeof(uint16_t) * (numel > 0 ? numel : 1));
    if (!h) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory converting '%s'", name);
    for (int64_t i = 0; i < numel; i++) h[i] = dsv3_f32_to_bf16(data[i]);
    dsv3_status st = dsv3_st_writer_add(w, name, DSV3_BF16, ndim, shape, h, err);
    free(h);
    return st;
}

/* model.safetensors: params in dt (routing biases always F32, spec §2.3). */
static dsv3_status write_model(dsv3_train_model *tm, const char *path, dsv3_dtype dt, dsv3_error *err) {
    const dsv3_config *c = &tm->cfg;
    dsv3_st_writer *w = dsv3_st_writer_new();
    if (!w) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    dsv3_status st = dsv3_st_writer_metadata(w, "format", "pt", err);
    for (int i = 0; !st && i < tm->n_params; i++) {
        const dsv3_param *p = &tm->params[i];
        st = add_as(w, p->name, dt, p->ndim, p->shape, p->w, p->numel, err);
    }
    for (int64_t l = 0; !st && l < c->num_hidden_layers; l++)
        if (tm->layers[l].bias) st = add_bias(w, l, tm->layers[l].bias, c->n_routed_experts, err);
    for (int k = 0; !st && k < tm->n_mtp; k++) {
        /* each MTP layer carries copies of the shared embedding and head (spec §2.3) */
        char name[256];
        int64_t L = c->num_hidden_layers + k;
        if (tm->mtp[k].block.bias) st = add_bias(w, L, tm->mtp[k].block.bias, c->n_routed_experts, err);
        snprintf(name, sizeof name, "model.layers.%lld.embed_tokens.weight", (long long)L);
        if (!st) st = add_as(w, name, dt, 2, tm->embed->shape, tm->embed->w, tm->embed->numel, err);
        snprintf(name, sizeof name, "model.layers.%lld.shared_head.head.weight", (long long)L);
        if (!st) st = add_as(w, name, dt, 2, tm->lm_head->shape, tm->lm_head->w, tm->lm_head->numel, err);
    }
    if (!st) st = dsv3_st_writer_save(w, path, err);
    dsv3_st_writer_free(w);
    return st;
}

static dsv3_status write_state(dsv3_train_model *tm, const dsv3_train_state *ts, const char *path, dsv3_error *err) {
    dsv3_st_writer *w = dsv3_st_writer_new();
    if (!w) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    char buf[64], name[700];
    dsv3_status st = DSV3_OK;
    snprintf(buf, sizeof buf, "%" PRId64, ts->step);
    st = dsv3_st_writer_metadata(w, "step", buf, err);
    snprintf(buf, sizeof buf, "%" PRIu64, ts->data_cursor);
    if (!st) st = dsv3_st_writer_metadata(w, "data_cursor", buf, err);
    snprintf(buf, sizeof buf, "%" PRIu64, ts->seed);
    if (!st) st = dsv3_st_writer_metadata(w, "seed", buf, err);
    if (!st) st = dsv3_st_writer_metadata(w, "moments", ts->bf16_moments ? "bf16" : "f32", err);
    snprintf(buf, sizeof buf, "%a", ts->loss_ema);
    if (!st) st = dsv3_st_writer_metadata(w, "loss_ema", buf, err);
    for (int i = 0; !st && i < tm->n_params; i++) {
        const dsv3_param *p = &tm->params[i];
        const void *m = ts->bf16_moments ? (const void *)p->m16 : (const void *)p->m;
        const void *v = ts->bf16_moments ? (const void *)p->v16 : (const void *)p->v;
        if (!m || !v) continue; /* no optimizer step yet */
        dsv3_dtype dt = ts->bf16_moments ? DSV3_BF16 : DSV3_F32;
        snprintf(name, sizeof name, "adam.m.%s", p->name);
        st = dsv3_st_writer_add(w, name, dt, p->ndim, p->shape, m, err);
        snprintf(name, sizeof name, "adam.v.%s", p->name);
        if (!st) st = dsv3_st_writer_add(w, name, dt, p->ndim, p->shape, v, err);
    }
    if (!st) st = dsv3_st_writer_save(w, path, err);
    dsv3_st_writer_free(w);
    return st;
}

static int is_step_dir(const char *name) { return !strncmp(name, "step-", 5) && strlen(name) == 13; }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Removes the oldest step-* directories beyond `keep`, never `current`. */
static void prune(const char *out_dir, int keep, const char *current) {
    if (keep <= 0) return;
    DIR *d = opendir(out_dir);
    if (!d) return;
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096)
        if (is_step_dir(e->d_name)) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        if (names[i] && i < n - keep && strcmp(names[i], current) != 0) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", out_dir, names[i]);
            remove_tree(path);
        }
        free(names[i]);
    }
}

dsv3_status dsv3_train_save(dsv3_train_model *tm, const dsv3_train_state *ts, const char *out_dir,
                            const char *tokenizer_dir, int keep, dsv3_error *err) {
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", out_dir, strerror(errno));
    char name[64], tmp[4200], final[4200], path[4400];
    snprintf(name, sizeof name, "step-%08lld", (long long)ts->step);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%d", out_dir, name, (int)getpid());
    snprintf(final, sizeof final, "%s/%s", out_dir, name);
    remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    dsv3_status st;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    st = write_text(path, tm->config_json, strlen(tm->config_json), err);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (!st) st = write_model(tm, path, DSV3_F32, err);
    snprintf(path, sizeof path, "%s/trainer_state.safetensors", tmp);
    if (!st) st = write_state(tm, ts, path, err);
    const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; !st && tokenizer_dir && i < 2; i++) {
        char src[4200];
        snprintf(src, sizeof src, "%s/%s", tokenizer_dir, tok_files[i]);
        snprintf(path, sizeof path, "%s/%s", tmp, tok_files[i]);
        st = copy_optional(src, path, err);
    }
    if (!st && fsync_path(tmp) != 0) st = dsv3_fail(err, DSV3_ERR_IO, "%s: fsync failed", tmp);
    if (st) {
        remove_tree(tmp);
        return st;
    }
    /* replace an older checkpoint of the same step (e.g. after a resume) */
    struct stat sb;
    if (stat(final, &sb) == 0) {
        char old[4300];
        snprintf(old, sizeof old, "%s/.old-%s-%d", out_dir, name, (int)getpid());
        if (rename(final, old) == 0) remove_tree(old);
    }
    if (rename(tmp, final) != 0) {
        remove_tree(tmp);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: rename failed: %s", final, strerror(errno));
    }
    fsync_path(out_dir);
    char line[80], latest_tmp[4200], latest[4200];
    int len = snprintf(line, sizeof line, "%s\n", name);
    snprintf(latest_tmp, sizeof latest_tmp, "%s/latest.tmp.%d", out_dir, (int)getpid());
    snprintf(latest, sizeof latest, "%s/latest", out_dir);
    st = write_text(latest_tmp, line, (size_t)len, err);
    if (!st && rename(latest_tmp, latest) != 0) st = dsv3_fail(err, DSV3_ERR_IO, "%s: rename failed: %s", latest, strerror(errno));
    if (st) unlink(latest_tmp);
    fsync_path(out_dir);
    if (!st) prune(out_dir, keep, name);
    return st;
}

static int meta_u64(const dsv3_st_file *f, const char *key, uint64_t *out) {
    const char *v = dsv3_st_metadata(f, key);
    if (!v || !*v) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 0;
}

dsv3_status dsv3_train_load_state(dsv3_train_model *tm, const char *ckpt_dir, dsv3_train_state *ts, dsv3_error *err) {
    char path[4200], name[700];
    snprintf(path, sizeof path, "%s/trainer_state.safetensors", ckpt_dir);
    dsv3_st_file *f;
    dsv3_status st = dsv3_st_open(path, &f, err);
    if (st) return st;
    uint64_t step, cursor, seed;
    const char *mom = dsv3_st_metadata(f, "moments");
    if (meta_u64(f, "step", &step) || meta_u64(f, "data_cursor", &cursor) || meta_u64(f, "seed", &seed) || !mom ||
        (strcmp(mom, "bf16") && strcmp(mom, "f32"))) {
        dsv3_st_close(f);
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: missing or bad step/data_cursor/seed/moments metadata", path);
    }
    ts->step = (int64_t)step;
    ts->data_cursor = cursor;
    ts->seed = seed;
    ts->bf16_moments = !strcmp(mom, "bf16");
    const char *ema = dsv3_st_metadata(f, "loss_ema");
    ts->loss_ema = ema ? strtod(ema, NULL) : 0.0;
    dsv3_dtype dt = ts->bf16_moments ? DSV3_BF16 : DSV3_F32;
    size_t esz = dsv3_dtype_size(dt);
    /* moments are absent only when no optimizer step was taken: all or none */
    char first[700];
    snprintf(first, sizeof first, "adam.m.%s", tm->n_params ? tm->params[0].name : "");
    int none = dsv3_st_find(f, first) == NULL;
    for (int i = 0; !st && !none && i < tm->n_params; i++) {
        dsv3_param *p = &tm->params[i];
        snprintf(name, sizeof name, "adam.m.%s", p->name);
        const dsv3_tensor_view *m = dsv3_st_find(f, name);
        snprintf(name, sizeof name, "adam.v.%s", p->name);
        const dsv3_tensor_view *v = dsv3_st_find(f, name);
        if (!m || !v || m->dtype != dt || v->dtype != dt || (int64_t)m->numel != p->numel || (int64_t)v->numel != p->numel) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: AdamW moments of '%s' missing or of the wrong type/size", path, p->name);
            break;
        }
        void **dm = ts->bf16_moments ? (void **)&p->m16 : (void **)&p->m;
        void **dv = ts->bf16_moments ? (void **)&p->v16 : (void **)&p->v;
        if (!*dm) *dm = malloc(esz * p->numel);
        if (!*dv) *dv = malloc(esz * p->numel);
        if (!*dm || !*dv) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory"); break; }
        memcpy(*dm, m->data, esz * p->numel);
        memcpy(*dv, v->data, esz * p->numel);
    }
    dsv3_st_close(f);
    return st;
}

dsv3_status dsv3_train_resume(const char *out_dir, dsv3_train_model **out, dsv3_train_state *ts, dsv3_error *err) {
    *out = NULL;
    char path[4200], line[128] = {0};
    snprintf(path, sizeof path, "%s/latest", out_dir);
    FILE *f = fopen(path, "rb");
    if (!f) return dsv3_fail(err, DSV3_ERR_NOT_FOUND, "%s: no checkpoint to resume from (%s)", out_dir, strerror(errno));
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (!is_step_dir(line)) return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: does not name a step-* checkpoint", path);
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, line);
    dsv3_train_model *tm;
    dsv3_status st = dsv3_train_model_load(dir, &tm, err);
    if (st) return st;
    st = dsv3_train_load_state(tm, dir, ts, err);
    if (st) {
        dsv3_train_model_free(tm);
        return st;
    }
    *out = tm;
    return DSV3_OK;
}

dsv3_status dsv3_train_export(dsv3_train_model *tm, const char *out_dir, int bf16, const char *tokenizer_dir,
                              dsv3_error *err) {
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", out_dir, strerror(errno));
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    dsv3_status st = write_text(path, tm->config_json, strlen(tm->config_json), err);
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir); /* the writer replaces it atomically */
    if (!st) st = write_model(tm, path, bf16 ? DSV3_BF16 : DSV3_F32, err);
    const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; !st && tokenizer_dir && i < 2; i++) {
        char src[4200];
        snprintf(src, sizeof src, "%s/%s", tokenizer_dir, tok_files[i]);
        snprintf(path, sizeof path, "%s/%s", out_dir, tok_files[i]);
        if (strcmp(src, path) != 0) st = copy_optional(src, path, err);
    }
    return st;
}
