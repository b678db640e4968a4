/* Long-context golden test, greedy generation, cached decode == full recompute,
 * and batch invariance (bitwise). */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/sampling.h"
#include "fixture_util.h"

static void golden_long(const char *set) {
    dsv3_model *m;
    dsv3_st_file *ref;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    const int64_t T = 300, V = dsv3_model_config(m)->vocab_size;
    int32_t *ids = fixture_i32(ref, "long_input_ids", T);
    float *want = fixture_f32(ref, "long_logits", T * V), *got = malloc(sizeof(float) * T * V);
    dsv3_kv_cache *kc = NULL;
    dsv3_error err = {0};
    if (ids && want && dsv3_kv_cache_new(m, T, &kc, &err) == DSV3_OK) {
        dsv3_batch_item it = {kc, ids, T};
        dsv3_forward_out out = {.logits = got};
        if (dsv3_forward(m, &it, 1, &out, &err)) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        else {
            double e = rel_max_err(got, want, T * V);
            fprintf(stderr, "    %s long_logits rel err %.3g\n", set, e);
            if (!(e <= 1e-4)) test_fail_at(__FILE__, __LINE__, "long_logits rel err %.3g", e);
        }
    }
    dsv3_kv_cache_free(kc);
    free(ids); free(want); free(got);
    dsv3_model_free(m);
    dsv3_st_close(ref);
}
TEST(golden_long_tiny) { golden_long("tiny"); }
TEST(golden_long_small) { golden_long("small"); }

/* Greedy continuation with the KV cache vs the reference's full-recompute argmax. */
static void golden_greedy(const char *set) {
    dsv3_model *m;
    dsv3_st_file *ref;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    const int64_t P = 7, G = 16, V = dsv3_model_config(m)->vocab_size;
    int32_t *prompt = fixture_i32(ref, "greedy_prompt", P), *want = fixture_i32(ref, "greedy_tokens", G);
    float *margins = fixture_f32(ref, "greedy_margins", G), *logits = malloc(sizeof(float) * P * V);
    dsv3_kv_cache *kc = NULL;
    dsv3_error err = {0};
    if (prompt && want && margins && dsv3_kv_cache_new(m, P + G, &kc, &err) == DSV3_OK) {
        dsv3_batch_item it = {kc, prompt, P};
        dsv3_forward_out out = {.logits = logits};
        int ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
        const float *last = logits + (P - 1) * V;
        for (int64_t i = 0; ok && i < G; i++) {
            int32_t tok = dsv3_argmax(last, V);
            if (margins[i] > 1e-3f && tok != want[i]) {
                test_fail_at(__FILE__, __LINE__, "%s greedy step %lld: got %d want %d", set, (long long)i, tok, want[i]);
                break;
            }
            tok = want[i]; /* follow the reference continuation */
            dsv3_batch_item step = {kc, &tok, 1};
            dsv3_forward_out o1 = {.logits = logits};
            ok = dsv3_forward(m, &step, 1, &o1, &err) == DSV3_OK;
            last = logits;
        }
        if (!ok) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    }
    dsv3_kv_cache_free(kc);
    free(prompt); free(want); free(margins); free(logits);
    dsv3_model_free(m);
    dsv3_st_close(ref);
}
TEST(golden_greedy_tiny) { golden_greedy("tiny"); }
TEST(golden_greedy_small) { golden_greedy("small"); }

/* Prefill of P tokens then one-by-one decode (and chunked steps) must equal
 * the full-sequence forward bitwise; a token alone must equal the same token
 * inside a multi-sequence batch bitwise. */
static void cache_and_batch_invariance(const char *set) {
    dsv3_model *m;
    dsv3_st_file *ref;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    const int64_t T = 40, P = 9, V = dsv3_model_config(m)->vocab_size;
    int32_t *ids = fixture_i32(ref, "input_ids", 2 * T);
    float *full = malloc(sizeof(float) * T * V), *inc = malloc(sizeof(float) * T * V),
          *batch = malloc(sizeof(float) * (T + 5) * V);
    dsv3_kv_cache *a = NULL, *b = NULL, *c2 = NULL;
    dsv3_error err = {0};
    int ok = ids && dsv3_kv_cache_new(m, T, &a, &err) == DSV3_OK && dsv3_kv_cache_new(m, T, &b, &err) == DSV3_OK &&
             dsv3_kv_cache_new(m, T, &c2, &err) == DSV3_OK;
    if (ok) {
        dsv3_batch_item it = {a, ids, T};
        dsv3_forward_out out = {.logits = full};
        ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
        /* prefill P, then steps of 1, 1, 3, 1, 2, 4, 1, ... */
        int64_t pos = 0, chunk[] = {P, 1, 1, 3, 1, 2, 4, 1};
        for (int k = 0; ok && pos < T; k++) {
            int64_t n = k < 8 ? chunk[k] : 1;
            if (pos + n > T) n = T - pos;
            dsv3_batch_item s = {b, ids + pos, n};
            dsv3_forward_out o = {.logits = inc + pos * V};
            ok = dsv3_forward(m, &s, 1, &o, &err) == DSV3_OK;
            pos += n;
        }
        if (ok && memcmp(full, inc, sizeof(float) * T * V) != 0) {
            double e = rel_max_err(inc, full, T * V);
            test_fail_at(__FILE__, __LINE__, "%s: cached decode differs from full recompute (rel %.3g)", set, e);
        }
        /* batch: sequence 1 (5 tokens) together with all of sequence 0 (fresh caches) */
        dsv3_kv_cache_truncate(a, 0, 0);
        dsv3_batch_item two[2] = {{c2, ids + T, 5}, {a, ids, T}};
        dsv3_forward_out ob = {.logits = batch};
        if (ok) ok = dsv3_forward(m, two, 2, &ob, &err) == DSV3_OK;
        if (ok && memcmp(batch + 5 * V, full, sizeof(float) * T * V) != 0)
            test_fail_at(__FILE__, __LINE__, "%s: logits inside a batch differ from the same sequence alone", set);
        if (!ok) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    }
    dsv3_kv_cache_free(a); dsv3_kv_cache_free(b); dsv3_kv_cache_free(c2);
    free(ids); free(full); free(inc); free(batch);
    dsv3_model_free(m);
    dsv3_st_close(ref);
}
TEST(cache_batch_invariance_tiny) { cache_and_batch_invariance("tiny"); }
TEST(cache_batch_invariance_small) { cache_and_batch_invariance("small"); }
