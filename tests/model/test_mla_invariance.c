/* Absorbed MLA (src/model/mla.c) groups several heads of a token per pass over
 * its cache; the group size follows the thread count and the batch size. The
 * logits must not: prefill + decode at contexts longer than a cache tile give
 * bitwise-identical logits with 1..4 threads (one-thread item schedule vs the split few-token
 * schedule for decode), and logits_packed writes the
 * selected rows' logits consecutively, bitwise equal to the unpacked ones. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "fixture_util.h"

/* prompt tokens: many tiles of 16 rows, not a multiple of 4 or 16, and long enough that the decode
 * steps of the tiny model (4 heads x 40-float cache rows) run multi-threaded, in the few-token schedule */
#define PLONG 461
#define D 4  /* decode steps */

/* Prefill np tokens (all logits) then D greedy steps; logits [(np + D), V]. */
static int run(dsv3_model *m, const int32_t *prompt, int64_t np, float *logits, int64_t V) {
    dsv3_error err = {0};
    dsv3_kv_cache *kc = NULL;
    if (dsv3_kv_cache_new(m, np + D + 1, &kc, &err)) return -1;
    dsv3_batch_item it = {kc, prompt, np};
    dsv3_forward_out out = {.logits = logits};
    int rc = dsv3_forward(m, &it, 1, &out, &err) ? -1 : 0;
    for (int i = 0; i < D && !rc; i++) {
        const float *last = logits + (np - 1 + i) * V;
        int32_t tok = 0;
        for (int64_t v = 1; v < V; v++)
            if (last[v] > last[tok]) tok = (int32_t)v;
        dsv3_batch_item st = {kc, &tok, 1};
        dsv3_forward_out o1 = {.logits = logits + (np + i) * V};
        rc = dsv3_forward(m, &st, 1, &o1, &err) ? -1 : 0;
    }
    if (rc) test_fail_at(__FILE__, __LINE__, "forward: %s", err.msg);
    dsv3_kv_cache_free(kc);
    return rc;
}

static void thread_invariance(const char *set) {
    dsv3_model *m = NULL;
    dsv3_st_file *ref = NULL;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) { test_skip("fixtures absent"); return; }
    if (r < 0) return;
    const int64_t V = dsv3_model_config(m)->vocab_size;
    int32_t prompt[PLONG];
    for (int i = 0; i < PLONG; i++) prompt[i] = (int32_t)((i * 7919 + 13) % V);
    float *base = malloc(sizeof(float) * (PLONG + D) * V), *got = malloc(sizeof(float) * (PLONG + D) * V);
    int saved = omp_get_max_threads(), ok = 1;
    /* a short context too: there decode uses smaller head groups per thread (other latent kernel) */
    const int64_t lens[2] = {20, PLONG};
    for (int li = 0; li < 2 && ok; li++) {
        omp_set_num_threads(1);
        ok = run(m, prompt, lens[li], base, V) == 0;
        for (int nt = 2; nt <= 4 && ok; nt++) {
            omp_set_num_threads(nt);
            ok = run(m, prompt, lens[li], got, V) == 0;
            for (int64_t row = 0; ok && row < lens[li] + D; row++)
                if (memcmp(base + row * V, got + row * V, sizeof(float) * V) != 0) {
                    test_fail_at(__FILE__, __LINE__, "%s: prompt %lld: logits of row %lld differ between 1 and %d threads",
                                 set, (long long)lens[li], (long long)row, nt);
                    ok = 0;
                }
        }
    }
    omp_set_num_threads(saved);
    /* packed logits: rows 3, 17 and P-1 of the prefill */
    if (ok) {
        dsv3_error err = {0};
        dsv3_kv_cache *kc = NULL;
        uint8_t mask[PLONG] = {0};
        mask[3] = mask[17] = mask[PLONG - 1] = 1;
        float *packed = malloc(sizeof(float) * 3 * V);
        if (dsv3_kv_cache_new(m, PLONG, &kc, &err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        } else {
            dsv3_batch_item it = {kc, prompt, PLONG};
            dsv3_forward_out out = {.logits = packed, .logits_mask = mask, .logits_packed = 1};
            if (dsv3_forward(m, &it, 1, &out, &err)) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
            else if (memcmp(packed, base + 3 * V, sizeof(float) * V) || memcmp(packed + V, base + 17 * V, sizeof(float) * V) ||
                     memcmp(packed + 2 * V, base + (PLONG - 1) * V, sizeof(float) * V))
                test_fail_at(__FILE__, __LINE__, "%s: packed logits differ from the full prefill's rows", set);
        }
        dsv3_kv_cache_free(kc);
        free(packed);
    }
    free(base);
    free(got);
    dsv3_st_close(ref);
    dsv3_model_free(m);
}

TEST(mla_thread_group_invariance_tiny) { thread_invariance("tiny"); }
TEST(mla_thread_group_invariance_small) { thread_invariance("small"); }
