/* dsv3 init-model: random checkpoints of the tiny fixture config in bf16 / fp8 /
 * f32 load and run (main model + MTP), are reproducible for a seed, FP8
 * dequantises to the BF16 values of the same seed, and errors are reported. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "cli/commands.h"
#include "dsv3/init_model.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"

/* <fixtures>/tiny/config.json into buf; 0 if fixtures are absent. */
static int tiny_config(char *buf, size_t n) {
    const char *fx = test_fixtures_dir();
    if (!fx) return 0;
    snprintf(buf, n, "%s/tiny/config.json", fx);
    return access(buf, R_OK) == 0;
}

static const char *names[] = {"bf16", "fp8", "f32"};

/* Initialises the tiny config into <tmp>/<sub>; returns the status. */
static int g_overwrite; /* passed as opts.overwrite */

static dsv3_status init_into(const char *cfg, const char *sub, dsv3_init_dtype dt, uint64_t seed, uint64_t shard,
                             char *dir, size_t n, dsv3_init_result *res, dsv3_error *err) {
    snprintf(dir, n, "%s/%s", test_tmp_dir(), sub);
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    o.dtype = dt;
    o.seed = seed;
    o.shard_size = shard;
    o.overwrite = g_overwrite;
    return dsv3_init_model(cfg, dir, &o, res, err);
}

static int file_exists(const char *dir, const char *name) {
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Loads dir, runs a 5-token prefill, one decode step and the MTP head; checks finiteness. */
static void load_and_run(const char *dir) {
    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_kv_cache *kc = NULL;
    if (dsv3_model_load(dir, &m, &err)) { test_fail_at(__FILE__, __LINE__, "load %s: %s", dir, err.msg); return; }
    const dsv3_config *c = dsv3_model_config(m);
    const int64_t T = 5, V = c->vocab_size, H = c->hidden_size;
    int32_t toks[6] = {0, 5, 17, 300, 42, 7};
    float *logits = malloc(sizeof(float) * (T + 1) * V), *hid = malloc(sizeof(float) * T * H);
    if (!dsv3_model_has_mtp(m)) test_fail_at(__FILE__, __LINE__, "%s: MTP layer not loaded", dir);
    else if (dsv3_kv_cache_new(m, T + 2, &kc, &err)) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    else {
        dsv3_batch_item it = {kc, toks, T}, step = {kc, toks + T, 1};
        dsv3_forward_out out = {.logits = logits, .final_hidden = hid}, o1 = {.logits = logits + T * V};
        if (dsv3_forward(m, &it, 1, &out, &err) || dsv3_forward(m, &step, 1, &o1, &err))
            test_fail_at(__FILE__, __LINE__, "forward %s: %s", dir, err.msg);
        else if (!all_finite(logits, (T + 1) * V))
            test_fail_at(__FILE__, __LINE__, "%s: non-finite logits", dir);
        else if (dsv3_mtp_forward(m, kc, hid, toks + 1, T - 1, logits, &err))
            test_fail_at(__FILE__, __LINE__, "mtp %s: %s", dir, err.msg);
        else if (!all_finite(logits, (T - 1) * V))
            test_fail_at(__FILE__, __LINE__, "%s: non-finite MTP logits", dir);
    }
    free(logits);
    free(hid);
    dsv3_kv_cache_free(kc);
    dsv3_model_free(m);
}

TEST(init_tiny_sharded_load_forward) {
    char cfg[4096], dir[4096];
    if (!tiny_config(cfg, sizeof cfg)) SKIP("fixtures absent");
    for (int d = 0; d < 3; d++) {
        char sub[64];
        snprintf(sub, sizeof sub, "init-%s", names[d]);
        dsv3_error err = {0};
        dsv3_init_result r;
        if (init_into(cfg, sub, (dsv3_init_dtype)d, 7, 60000, dir, sizeof dir, &r, &err)) {
            test_fail_at(__FILE__, __LINE__, "init %s: %s", names[d], err.msg);
            return;
        }
        CHECK_MSG(r.n_shards > 2, "%s: expected several shards, got %d", names[d], r.n_shards);
        CHECK(file_exists(dir, "model.safetensors.index.json") && file_exists(dir, "config.json"));
        CHECK(!file_exists(dir, "model.safetensors"));
        /* quantization_config only for fp8 */
        dsv3_config c;
        char p[4200];
        snprintf(p, sizeof p, "%s/config.json", dir);
        CHECK(dsv3_config_load(p, &c, &err) == DSV3_OK);
        CHECK(c.fp8 == (d == DSV3_INIT_FP8));
        CHECK(c.num_nextn_predict_layers == 1 && c.vocab_size == 512);
        load_and_run(dir);
        if (test_failed_now()) return;
    }
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

TEST(init_same_seed_identical_files) {
    char cfg[4096], d1[4096], d2[4096], d3[4096];
    if (!tiny_config(cfg, sizeof cfg)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_init_result r;
    CHECK(init_into(cfg, "seed-a", DSV3_INIT_FP8, 3, 100000, d1, sizeof d1, &r, &err) == DSV3_OK);
    CHECK(init_into(cfg, "seed-b", DSV3_INIT_FP8, 3, 100000, d2, sizeof d2, &r, &err) == DSV3_OK);
    CHECK(init_into(cfg, "seed-c", DSV3_INIT_FP8, 4, 100000, d3, sizeof d3, &r, &err) == DSV3_OK);
    CHECK(r.n_shards > 1);
    char a[4200], b[4200], c[4200];
    const char *files[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00007.safetensors",
                           "model-00007-of-00007.safetensors"};
    CHECK_MSG(r.n_shards == 7, "shard count changed (%d); update the file list", r.n_shards);
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", d1, files[i]);
        snprintf(b, sizeof b, "%s/%s", d2, files[i]);
        CHECK_MSG(same_file(a, b), "%s differs between two runs with the same seed", files[i]);
    }
    for (int s = 1; s <= 7; s++) {
        snprintf(a, sizeof a, "%s/model-%05d-of-00007.safetensors", d1, s);
        snprintf(b, sizeof b, "%s/model-%05d-of-00007.safetensors", d2, s);
        snprintf(c, sizeof c, "%s/model-%05d-of-00007.safetensors", d3, s);
        CHECK(same_file(a, b));
        if (s == 1) CHECK_MSG(!same_file(a, c), "a different seed gave the same first shard");
    }
}

/* bf16 / fp8 / f32 checkpoints of one seed hold the same underlying values:
 * f32 -> bf16 rounds exactly to the bf16 file; FP8 * scale is within FP8
 * precision (2^-4 relative, half a subnormal step 2^-10 * scale absolute). */
TEST(init_dtypes_share_values) {
    char cfg[4096], db[4096], dq[4096], df[4096];
    if (!tiny_config(cfg, sizeof cfg)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_init_result r;
    CHECK(init_into(cfg, "v-bf16", DSV3_INIT_BF16, 11, 0, db, sizeof db, &r, &err) == DSV3_OK);
    CHECK(r.n_shards == 1 && file_exists(db, "model.safetensors"));
    CHECK(init_into(cfg, "v-fp8", DSV3_INIT_FP8, 11, 0, dq, sizeof dq, &r, &err) == DSV3_OK);
    CHECK(init_into(cfg, "v-f32", DSV3_INIT_F32, 11, 0, df, sizeof df, &r, &err) == DSV3_OK);
    dsv3_checkpoint *cb = NULL, *cq = NULL, *cf = NULL;
    CHECK(dsv3_ckpt_open(db, &cb, &err) == DSV3_OK);
    if (dsv3_ckpt_open(dq, &cq, &err) || dsv3_ckpt_open(df, &cf, &err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        goto out;
    }
    int64_t n_fp8 = 0, n_checked = 0;
    double sum = 0, sum2 = 0;
    int64_t cnt = 0;
    for (size_t i = 0; i < dsv3_ckpt_count(cb) && !test_failed_now(); i++) {
        const dsv3_tensor_view *b = dsv3_ckpt_tensor(cb, i), *q = dsv3_ckpt_find(cq, b->name),
                               *f = dsv3_ckpt_find(cf, b->name);
        if (!q || !f || q->numel != b->numel || f->numel != b->numel || f->dtype != DSV3_F32) {
            test_fail_at(__FILE__, __LINE__, "tensor %s differs in presence/shape between dtypes", b->name);
            break;
        }
        float *vb = malloc(sizeof(float) * b->numel), *vf = malloc(sizeof(float) * b->numel);
        dsv3_convert_to_f32(b->dtype, b->data, vb, b->numel);
        dsv3_convert_to_f32(DSV3_F32, f->data, vf, f->numel);
        for (uint64_t k = 0; k < b->numel && b->dtype == DSV3_BF16; k++) {
            uint16_t h;
            memcpy(&h, (const char *)b->data + 2 * k, 2);
            if (h != dsv3_f32_to_bf16(vf[k])) {
                test_fail_at(__FILE__, __LINE__, "%s[%llu]: bf16 %g is not bf16(f32 %g)", b->name,
                             (unsigned long long)k, (double)vb[k], (double)vf[k]);
                break;
            }
        }
        if (strstr(b->name, "embed_tokens") && !strstr(b->name, "layers")) {
            for (uint64_t k = 0; k < b->numel; k++, cnt++) sum += vf[k], sum2 += (double)vf[k] * vf[k];
        }
        if (q->dtype == DSV3_F8_E4M3) {
            char sname[512];
            snprintf(sname, sizeof sname, "%s_scale_inv", b->name);
            const dsv3_tensor_view *s = dsv3_ckpt_find(cq, sname);
            if (!s || s->dtype != DSV3_F32 || s->ndim != 2) {
                test_fail_at(__FILE__, __LINE__, "missing/bad %s", sname);
            } else {
                int64_t cols = q->shape[1];
                for (uint64_t k = 0; k < q->numel; k++) {
                    int64_t row = (int64_t)k / cols, col = (int64_t)k % cols;
                    float sc;
                    memcpy(&sc, (const char *)s->data + 4 * (size_t)((row / 128) * s->shape[1] + col / 128), 4);
                    float deq = dsv3_fp8_e4m3_to_f32(((const uint8_t *)q->data)[k]) * sc;
                    double tol = 0.0625 * fabs(vf[k]) + sc * 0x1p-10 * 1.001;
                    if (!(fabs(deq - vf[k]) <= tol)) {
                        test_fail_at(__FILE__, __LINE__, "%s[%llu]: fp8 %g vs %g (scale %g)", b->name,
                                     (unsigned long long)k, (double)deq, (double)vf[k], (double)sc);
                        break;
                    }
                }
                n_fp8++;
            }
        } else if (q->dtype != b->dtype || memcmp(q->data, b->data, b->nbytes) != 0) {
            test_fail_at(__FILE__, __LINE__, "non-FP8 tensor %s differs between bf16 and fp8 checkpoints", b->name);
        }
        n_checked++;
        free(vb);
        free(vf);
    }
    CHECK(n_checked == 207 && n_fp8 == 176);
    /* N(0, 0.006^2): embedding 512x64 = 32768 values */
    double mean = sum / cnt, sd = sqrt(sum2 / cnt - mean * mean);
    CHECK_NEAR(mean, 0.0, 2e-4);
    CHECK_NEAR(sd, 0.006, 2e-4);
    /* MTP embedding copy equals the shared embedding */
    const dsv3_tensor_view *e0 = dsv3_ckpt_find(cb, "model.embed_tokens.weight"),
                           *e1 = dsv3_ckpt_find(cb, "model.layers.3.embed_tokens.weight"),
                           *h0 = dsv3_ckpt_find(cb, "lm_head.weight"),
                           *h1 = dsv3_ckpt_find(cb, "model.layers.3.shared_head.head.weight");
    CHECK(e0 && e1 && h0 && h1);
    CHECK(memcmp(e0->data, e1->data, e0->nbytes) == 0 && memcmp(h0->data, h1->data, h0->nbytes) == 0);
    CHECK(memcmp(e0->data, h0->data, e0->nbytes) != 0);
out:
    dsv3_ckpt_close(cb);
    dsv3_ckpt_close(cq);
    dsv3_ckpt_close(cf);
}

TEST(init_normal_stream) {
    float a[13], b[10];
    dsv3_init_normal(5, "x", 0, 13, 1.0f, a);
    dsv3_init_normal(5, "x", 3, 10, 1.0f, b);
    CHECK(memcmp(a + 3, b, sizeof b) == 0); /* any sub-range is the same stream */
    dsv3_init_normal(5, "y", 3, 10, 1.0f, b);
    CHECK(memcmp(a + 3, b, sizeof b) != 0);
    enum { N = 200000 };
    float *z = malloc(sizeof(float) * N);
    dsv3_init_normal(1, "stats", 0, N, 2.0f, z);
    double s = 0, s2 = 0, s4 = 0;
    int finite = 1;
    for (int i = 0; i < N; i++) {
        finite &= isfinite(z[i]) != 0;
        double v = z[i] / 2.0;
        s += v, s2 += v * v, s4 += v * v * v * v;
    }
    free(z);
    CHECK(finite);
    CHECK_NEAR(s / N, 0.0, 0.01);
    CHECK_NEAR(s2 / N, 1.0, 0.015);
    CHECK_NEAR(s4 / N, 3.0, 0.1); /* kurtosis of a normal */
}

/* Re-initialising a directory replaces the old layout (no stale index/shards). */
TEST(init_rewrite_replaces_layout) {
    char cfg[4096], dir[4096];
    if (!tiny_config(cfg, sizeof cfg)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_init_result r;
    CHECK(init_into(cfg, "rewrite", DSV3_INIT_BF16, 1, 50000, dir, sizeof dir, &r, &err) == DSV3_OK);
    CHECK(r.n_shards > 1 && file_exists(dir, "model.safetensors.index.json"));
    char keep[8192];
    snprintf(keep, sizeof keep, "%s/model-notes.safetensors.txt", dir); /* not a checkpoint file: kept */
    FILE *f = fopen(keep, "w");
    CHECK(f != NULL);
    fclose(f);
    /* an existing checkpoint is never replaced without overwrite */
    CHECK(init_into(cfg, "rewrite", DSV3_INIT_BF16, 1, 0, dir, sizeof dir, &r, &err) == DSV3_ERR_INVALID);
    CHECK(strstr(err.msg, "already holds a checkpoint") != NULL);
    CHECK(file_exists(dir, "model.safetensors.index.json"));
    g_overwrite = 1;
    dsv3_status st = init_into(cfg, "rewrite", DSV3_INIT_BF16, 1, 0, dir, sizeof dir, &r, &err);
    g_overwrite = 0;
    CHECK(st == DSV3_OK);
    CHECK(access(keep, F_OK) == 0);
    CHECK(r.n_shards == 1 && file_exists(dir, "model.safetensors"));
    CHECK(!file_exists(dir, "model.safetensors.index.json") && !file_exists(dir, "model-00001-of-00002.safetensors"));
    dsv3_model *m = NULL;
    CHECK_MSG(dsv3_model_load(dir, &m, &err) == DSV3_OK, "%s", err.msg);
    dsv3_model_free(m);
}

TEST(init_errors) {
    char dir[4096], cfg[4200], bad[4200];
    dsv3_error err = {0};
    dsv3_init_result r;
    snprintf(dir, sizeof dir, "%s/init-err", test_tmp_dir());
    mkdir(dir, 0755);
    /* missing config */
    snprintf(cfg, sizeof cfg, "%s/nope.json", dir);
    CHECK(init_into(cfg, "init-err/out", DSV3_INIT_BF16, 0, 0, bad, sizeof bad, &r, &err) == DSV3_ERR_IO);
    CHECK(strstr(err.msg, "nope.json") != NULL);
    /* invalid JSON, then a config lacking a required key */
    snprintf(cfg, sizeof cfg, "%s/bad.json", dir);
    FILE *f = fopen(cfg, "w");
    CHECK(f != NULL);
    fputs("{\"vocab_size\": 16,", f);
    fclose(f);
    CHECK(init_into(cfg, "init-err/out", DSV3_INIT_BF16, 0, 0, bad, sizeof bad, &r, &err) == DSV3_ERR_FORMAT);
    f = fopen(cfg, "w");
    fputs("{\"vocab_size\": 16, \"hidden_size\": 8}", f);
    fclose(f);
    CHECK(init_into(cfg, "init-err/out", DSV3_INIT_BF16, 0, 0, bad, sizeof bad, &r, &err) == DSV3_ERR_FORMAT);
    CHECK(strstr(err.msg, "intermediate_size") != NULL);
    /* output path is a file */
    char tiny[4096];
    if (tiny_config(tiny, sizeof tiny)) {
        CHECK(init_into(tiny, "init-err/bad.json/sub", DSV3_INIT_BF16, 0, 0, bad, sizeof bad, &r, &err) == DSV3_ERR_IO);
        CHECK(strstr(err.msg, "not a directory") != NULL);
        /* CLI: operational errors exit 1, usage errors 2 */
        char *a1[] = {"init-model", "--config", tiny, "--out", bad, "-q", NULL};
        CHECK(cmd_init_model(6, a1) == 1);
    }
    /* a directory without write bits is refused even for root */
    char ro[4200];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    mkdir(ro, 0555);
    chmod(ro, 0555);
    if (tiny_config(tiny, sizeof tiny)) {
        char *a5[] = {"init-model", "--config", tiny, "--out", ro, "-q", "--force", NULL};
        CHECK(cmd_init_model(7, a5) == 1);
        CHECK(!file_exists(ro, "config.json"));
    }
    chmod(ro, 0755);
    char *a2[] = {"init-model", "--config", cfg, "--out", dir, "--dtype", "fp16", NULL};
    CHECK(cmd_init_model(7, a2) == 2);
    char *a3[] = {"init-model", "--config", cfg, "--out", dir, "--shard-size", "12Q", NULL};
    CHECK(cmd_init_model(7, a3) == 2);
    char *a4[] = {"init-model", "--config", cfg, NULL};
    CHECK(cmd_init_model(3, a4) == 2);
    char *a6[] = {"init-model", "--config", cfg, "--out", dir, "--scale-fmt", "ue8m0", NULL}; /* needs --dtype fp8 */
    CHECK(cmd_init_model(7, a6) == 2);
    char *a7[] = {"init-model", "--config", cfg, "--out", dir, "--dtype", "fp8", "--scale-fmt", "pow2", NULL};
    CHECK(cmd_init_model(9, a7) == 2);
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    o.std = -1.0f;
    CHECK(dsv3_init_model(cfg, dir, &o, &r, &err) == DSV3_ERR_INVALID);
}

/* fp8_lm_head: lm_head.weight is F8_E4M3 + F32 scales ([ceil(V/128), ceil(H/128)]), the MTP head copy
 * stays BF16, the model loads and runs; without fp8 mode the option is refused by the CLI. */
TEST(init_fp8_lm_head) {
    char cfg[4096], dir[4096], p[8200];
    if (!tiny_config(cfg, sizeof cfg)) SKIP("fixtures absent");
    snprintf(dir, sizeof dir, "%s/init-fp8-head", test_tmp_dir());
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    o.dtype = DSV3_INIT_FP8;
    o.fp8_lm_head = 1;
    o.shard_size = 0;
    o.overwrite = 1;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_init_model(cfg, dir, &o, NULL, &err) == DSV3_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    dsv3_st_file *f = NULL;
    CHECK_MSG(dsv3_st_open(p, &f, &err) == DSV3_OK, "%s", err.msg);
    const dsv3_tensor_view *h = dsv3_st_find(f, "lm_head.weight"), *s = dsv3_st_find(f, "lm_head.weight_scale_inv");
    const dsv3_tensor_view *mh = dsv3_st_find(f, "model.layers.3.shared_head.head.weight");
    CHECK(h && h->dtype == DSV3_F8_E4M3 && s && s->dtype == DSV3_F32 && s->ndim == 2 &&
          s->shape[0] == (h->shape[0] + 127) / 128 && s->shape[1] == (h->shape[1] + 127) / 128);
    CHECK(mh && mh->dtype == DSV3_BF16);
    dsv3_st_close(f);
    load_and_run(dir);
    char *argv[] = {"init-model", "--config", cfg, "--out", dir, "--dtype", "bf16", "--fp8-lm-head", "--force", "-q"};
    CHECK(cmd_init_model(10, argv) == 2);
}
