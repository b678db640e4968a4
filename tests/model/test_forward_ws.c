/* The forward workspace (src/model/forward.c, dsv3_ws_reserve): sized by the tokens of a call and the
 * thread count, never by the context, so decode steps after a prefill reuse it. Regression: every
 * decode step whose context exceeded the longest seen so far re-allocated it (after a long prompt a
 * fresh mmap of the prompt-sized workspace per step, ~0.9 ms of a 20 ms step at 4096 tokens). */
#include <stdlib.h>

#include "../test.h"
#include "fixture_util.h"
#include "model/model_internal.h"

TEST(forward_workspace_not_reallocated_by_decode) {
    dsv3_model *m = NULL;
    dsv3_st_file *ref = NULL;
    int r = fixture_open("tiny", "reference.safetensors", &m, &ref);
    if (r > 0) { test_skip("fixtures absent"); return; }
    if (r < 0) return;
    const int64_t V = dsv3_model_config(m)->vocab_size, P = 40, G = 8;
    int32_t ids[40];
    for (int64_t i = 0; i < P; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    float *logits = malloc(sizeof(float) * (size_t)(P * V));
    dsv3_kv_cache *kc = NULL;
    dsv3_error err = {0};
    int ok = logits && dsv3_kv_cache_new(m, P + G, &kc, &err) == DSV3_OK;
    if (ok) {
        dsv3_batch_item it = {kc, ids, P};
        dsv3_forward_out out = {.logits = logits};
        ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
    }
    const float *base = m->ws.base;
    for (int64_t g = 0; ok && g < G; g++) {
        int32_t tok = (int32_t)(g + 5);
        dsv3_batch_item it = {kc, &tok, 1};
        dsv3_forward_out out = {.logits = logits};
        ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
        CHECK_MSG(!ok || m->ws.base == base, "decode step %lld at context %lld re-allocated the workspace", (long long)g,
                  (long long)(P + g + 1));
    }
    if (!ok) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    dsv3_kv_cache_free(kc);
    free(logits);
    dsv3_st_close(ref);
    dsv3_model_free(m);
}
