/* The KV cache's storage (src/model/kv_cache.c, dsv3_model_set_kv_dtype): a BF16 cache holds the f32
 * cache's values rounded to nearest even, costs half the bytes per token, and the model on it stays
 * within BF16 rounding of the HF reference logits. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "fixture_util.h"
#include "model/model_internal.h"

/* Prefill of the fixture's first 20 input ids into a cache of dtype dt; logits [20][V]. */
static dsv3_kv_cache *prefill(dsv3_model *m, const int32_t *ids, dsv3_dtype dt, float *logits) {
    dsv3_error err = {0};
    dsv3_kv_cache *kc = NULL;
    if (dsv3_model_set_kv_dtype(m, dt, &err) || dsv3_kv_cache_new(m, 20, &kc, &err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        return NULL;
    }
    dsv3_batch_item it = {kc, ids, 20};
    dsv3_forward_out out = {.logits = logits};
    if (dsv3_forward(m, &it, 1, &out, &err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        dsv3_kv_cache_free(kc);
        return NULL;
    }
    return kc;
}

/* Layer 0's cache rows depend on the embeddings only: the BF16 cache's are the F32 cache's rounded, bit
 * for bit. The later layers see the rounded keys, so their logits differ, but only by BF16 rounding. */
static void bf16_cache_matches(const char *set) {
    dsv3_model *m = NULL;
    dsv3_st_file *ref = NULL;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) { test_skip("fixtures absent"); return; }
    if (r < 0) return;
    const dsv3_config *c = dsv3_model_config(m);
    const int64_t V = c->vocab_size, T = 40, row = c->kv_lora_rank + c->qk_rope_head_dim;
    int32_t *ids = fixture_i32(ref, "input_ids", 2 * T);
    float *ref_logits = fixture_f32(ref, "logits", 2 * T * V);
    float *lf = malloc(sizeof(float) * (size_t)(20 * V)), *lb = malloc(sizeof(float) * (size_t)(20 * V));
    float *want = malloc(sizeof(float) * (size_t)(20 * V));
    dsv3_kv_cache *kf = ids ? prefill(m, ids, DSV3_F32, lf) : NULL, *kb = kf ? prefill(m, ids, DSV3_BF16, lb) : NULL;
    if (kf && kb) {
        const float *f = (const float *)kf->data + kv_cache_off(kf, 0, 0);
        const uint16_t *b = (const uint16_t *)kb->data + kv_cache_off(kb, 0, 0);
        int64_t bad = 0;
        for (int64_t i = 0; i < 20 * row; i++) bad += b[i] != dsv3_f32_to_bf16(f[i]);
        CHECK_MSG(bad == 0, "%s: %lld of layer 0's BF16 cache values are not the F32 ones rounded", set, (long long)bad);
        CHECK_MSG(memcmp(lf, lb, sizeof(float) * (size_t)(20 * V)) != 0, "%s: BF16 cache logits equal the F32 ones", set);
        /* the reference's logits of the first sequence's first 20 tokens (causal: the prefix's own) */
        memcpy(want, ref_logits, sizeof(float) * (size_t)(20 * V));
        const double ef = rel_max_err(lf, want, 20 * V), eb = rel_max_err(lb, want, 20 * V);
        fprintf(stderr, "    %s logits rel err: F32 cache %.3g, BF16 cache %.3g\n", set, ef, eb);
        CHECK_MSG(ef <= 1e-4, "%s: F32 cache rel err %.3g", set, ef);
        CHECK_MSG(eb <= 1e-2, "%s: BF16 cache rel err %.3g (BF16 keeps 8 significant bits: ~4e-3 per value)", set, eb);
    }
    dsv3_kv_cache_free(kf);
    dsv3_kv_cache_free(kb);
    free(ids);
    free(ref_logits);
    free(lf);
    free(lb);
    free(want);
    dsv3_st_close(ref);
    dsv3_model_free(m);
}

TEST(kv_cache_bf16_tiny) { bf16_cache_matches("tiny"); }
TEST(kv_cache_bf16_small) { bf16_cache_matches("small"); }

TEST(kv_cache_dtype_choice) {
    dsv3_model *m = NULL;
    dsv3_st_file *ref = NULL;
    int r = fixture_open("tiny", "reference.safetensors", &m, &ref);
    if (r > 0) { test_skip("fixtures absent"); return; }
    if (r < 0) return;
    dsv3_error err = {0};
    CHECK(dsv3_model_kv_dtype(m) == DSV3_F32);
    const int64_t f32_bytes = dsv3_kv_cache_bytes_per_token(m);
    CHECK(dsv3_model_set_kv_dtype(m, DSV3_BF16, &err) == DSV3_OK);
    CHECK(dsv3_kv_cache_bytes_per_token(m) * 2 == f32_bytes);
    CHECK(dsv3_model_set_kv_dtype(m, DSV3_F16, &err) == DSV3_ERR_INVALID);
    CHECK_MSG(strstr(err.msg, "F16") != NULL, "error '%s' names the dtype", err.msg);
    CHECK(dsv3_model_kv_dtype(m) == DSV3_BF16); /* a refused choice changes nothing */
    dsv3_dtype dt;
    CHECK(dsv3_kv_dtype_parse("bf16", &dt) == 0 && dt == DSV3_BF16);
    CHECK(dsv3_kv_dtype_parse("F32", &dt) == 0 && dt == DSV3_F32);
    CHECK(dsv3_kv_dtype_parse("fp8", &dt) == -1);
    CHECK(dsv3_kv_dtype_parse("", &dt) == -1);
    CHECK(dsv3_kv_dtype_parse(NULL, &dt) == -1);
    dsv3_st_close(ref);
    dsv3_model_free(m);
}
