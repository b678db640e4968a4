/* Bad checkpoints: the loader must name the tensor/file and never crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../test.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"

typedef enum { MUT_NONE, MUT_DROP, MUT_SHAPE, MUT_DTYPE } mutation;

/* Copies <fixtures>/<set> into a temp dir, applying one mutation to tensor victim. */
static int make_variant(const char *set, const char *victim, mutation mut, char *out_dir, size_t out_len) {
    static int counter;
    char src[4096], path[4200];
    snprintf(src, sizeof src, "%s/%s", test_fixtures_dir(), set);
    snprintf(out_dir, out_len, "%s/model-%s-%d", test_tmp_dir(), set, counter++);
    mkdir(out_dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    dsv3_st_file *f;
    dsv3_error err = {0};
    if (dsv3_st_open(path, &f, &err)) return -1;
    dsv3_st_writer *w = dsv3_st_writer_new();
    for (size_t i = 0; i < dsv3_st_count(f); i++) {
        const dsv3_tensor_view *t = dsv3_st_tensor(f, i);
        int hit = victim && !strcmp(t->name, victim);
        if (hit && mut == MUT_DROP) continue;
        if (hit && mut == MUT_SHAPE && t->ndim == 2) {
            int64_t shape[2] = {t->shape[1], t->shape[0]};
            dsv3_st_writer_add(w, t->name, t->dtype, 2, shape, t->data, &err);
        } else if (hit && mut == MUT_SHAPE) {
            int64_t shape[2] = {1, t->shape[0]};
            dsv3_st_writer_add(w, t->name, t->dtype, 2, shape, t->data, &err);
        } else if (hit && mut == MUT_DTYPE) {
            int64_t shape[DSV3_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            shape[t->ndim - 1] *= (int64_t)dsv3_dtype_size(t->dtype) / 2; /* same bytes as I16 */
            dsv3_st_writer_add(w, t->name, DSV3_I16, t->ndim, shape, t->data, &err);
        } else {
            dsv3_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    int rc = dsv3_st_writer_save(w, path, &err) == DSV3_OK ? 0 : -1;
    dsv3_st_writer_free(w);
    dsv3_st_close(f);
    /* config copy */
    char cfg_src[4200], cfg_dst[4200];
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", src);
    snprintf(cfg_dst, sizeof cfg_dst, "%s/config.json", out_dir);
    FILE *a = fopen(cfg_src, "rb"), *b = fopen(cfg_dst, "wb");
    char buf[8192];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
    return rc;
}

static void expect_load_error(const char *set, const char *victim, mutation mut, const char *needle) {
    char dir[4096];
    CHECK(make_variant(set, victim, mut, dir, sizeof dir) == 0);
    dsv3_model *m = NULL;
    dsv3_error err = {0};
    dsv3_status st = dsv3_model_load(dir, &m, &err);
    CHECK_MSG(st != DSV3_OK && m == NULL, "loading with %s mutated should fail", victim ? victim : "nothing");
    CHECK_MSG(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
}

TEST(model_load_rejects_bad_tensors) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char dir[4096];
    CHECK(make_variant("tiny", NULL, MUT_NONE, dir, sizeof dir) == 0);
    dsv3_model *m = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_model_load(dir, &m, &err) == DSV3_OK, "%s", err.msg);
    dsv3_model_free(m);
    expect_load_error("tiny", "model.layers.1.mlp.experts.3.up_proj.weight", MUT_DROP, "model.layers.1.mlp.experts.3.up_proj.weight");
    expect_load_error("tiny", "model.layers.0.self_attn.kv_b_proj.weight", MUT_SHAPE, "kv_b_proj");
    expect_load_error("tiny", "model.norm.weight", MUT_SHAPE, "model.norm.weight");
    expect_load_error("tiny", "lm_head.weight", MUT_DTYPE, "lm_head.weight");
    expect_load_error("tiny", "model.layers.2.mlp.gate.e_score_correction_bias", MUT_DROP, "e_score_correction_bias");
    expect_load_error("small", "model.layers.1.self_attn.o_proj.weight_scale_inv", MUT_DROP, "o_proj.weight_scale_inv");
    expect_load_error("small", "model.layers.0.self_attn.o_proj.weight_scale_inv", MUT_SHAPE, "o_proj.weight_scale_inv");
    expect_load_error("small", "model.layers.0.self_attn.q_a_proj.weight", MUT_DTYPE, "q_a_proj.weight");
}

TEST(model_load_missing_files) {
    dsv3_model *m = NULL;
    dsv3_error err = {0};
    CHECK(dsv3_model_load("tests/data/does-not-exist", &m, &err) != DSV3_OK && m == NULL);
    CHECK(strstr(err.msg, "does-not-exist") != NULL);
    /* config only, no weights */
    CHECK(dsv3_model_load("tests/data/deepseek-v3", &m, &err) != DSV3_OK && m == NULL);
    CHECK(strstr(err.msg, "model.safetensors") != NULL);
}

TEST(model_forward_rejects_bad_ids) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tiny", test_fixtures_dir());
    dsv3_model *m = NULL;
    dsv3_kv_cache *kc = NULL;
    dsv3_error err = {0};
    CHECK(dsv3_model_load(dir, &m, &err) == DSV3_OK);
    CHECK(dsv3_kv_cache_new(m, 4, &kc, &err) == DSV3_OK);
    int32_t bad[2] = {3, 512};
    dsv3_batch_item it = {kc, bad, 2};
    CHECK(dsv3_forward(m, &it, 1, NULL, &err) == DSV3_ERR_INVALID && strstr(err.msg, "512"));
    int32_t ok5[5] = {1, 2, 3, 4, 5};
    dsv3_batch_item big = {kc, ok5, 5};
    CHECK(dsv3_forward(m, &big, 1, NULL, &err) == DSV3_ERR_INVALID && strstr(err.msg, "capacity"));
    CHECK(dsv3_kv_cache_len(kc) == 0);
    dsv3_kv_cache_free(kc);
    dsv3_model_free(m);
}
