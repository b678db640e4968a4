/* Absorbed MLA (src/model/mla.c) groups several heads of a token per pass over
 * its cache; the group size follows the thread count and the batch size. The
 * logits must not: prefill + decode at contexts longer than a cache tile give
 * bitwise-identical logits with 1..4 threads (the one-thread item schedule vs
 * smaller head groups per thread at a short context and the split few-token
 * schedule at a long one), and logits_packed writes the selected rows' logits
 * consecutively, bitwise equal to the unpacked ones. */
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/init_model.h"
#include "dsv3/ops.h"
#include "fixture_util.h"
#include "model/model_internal.h" /* DSV3_MLA_WIDE_ITEMS */

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

/* Under the sanitizers (unvectorised fmaf calls) only 1 vs 2 threads, else 1..4. */
#if defined(__SANITIZE_ADDRESS__)
#define MAX_NT 2
#else
#define MAX_NT 4
#endif

/* Short prompt (20) and, when long_len > 0, decode after a long one: at >= 256 tokens of context
 * decode runs the split few-token schedule with 2+ threads (small fixture: 4 heads x 144-float rows). */
static void thread_invariance(const char *set, int64_t long_len) {
    dsv3_model *m = NULL;
    dsv3_st_file *ref = NULL;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) { test_skip("fixtures absent"); return; }
    if (r < 0) return;
    const int64_t V = dsv3_model_config(m)->vocab_size, nmax = long_len > 20 ? long_len : 20;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)nmax);
    for (int64_t i = 0; i < nmax; i++) prompt[i] = (int32_t)((i * 7919 + 13) % V);
    float *base = malloc(sizeof(float) * (size_t)((nmax + D) * V)), *got = malloc(sizeof(float) * (size_t)((nmax + D) * V));
    int saved = omp_get_max_threads(), ok = 1;
    /* short context, prefill + decode per thread count: decode with 2+ threads uses smaller head
     * groups (the 1-head latent kernel) */
    omp_set_num_threads(1);
    ok = run(m, prompt, 20, base, V) == 0;
    for (int nt = 2; nt <= MAX_NT && ok; nt++) {
        omp_set_num_threads(nt);
        ok = run(m, prompt, 20, got, V) == 0;
        for (int64_t row = 0; ok && row < 20 + D; row++)
            if (memcmp(base + row * V, got + row * V, sizeof(float) * V) != 0) {
                test_fail_at(__FILE__, __LINE__, "%s: prompt 20: logits of row %lld differ between 1 and %d threads",
                             set, (long long)row, nt);
                ok = 0;
            }
    }
    /* long context: one prefill (1 thread), then D decode steps per thread count from the same cache
     * (truncated back to the prompt each time) */
    if (ok && long_len > 0) {
        dsv3_error err = {0};
        dsv3_kv_cache *kc = NULL;
        omp_set_num_threads(1);
        if (dsv3_kv_cache_new(m, long_len + D + 1, &kc, &err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err.msg);
            ok = 0;
        } else {
            uint8_t *mask = calloc((size_t)long_len, 1);
            mask[long_len - 1] = 1;
            dsv3_batch_item it = {kc, prompt, long_len};
            dsv3_forward_out out = {.logits = base, .logits_mask = mask, .logits_packed = 1};
            ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
            for (int nt = 1; nt <= MAX_NT && ok; nt++) {
                omp_set_num_threads(nt);
                dsv3_kv_cache_truncate(kc, long_len, 0);
                float *dst = nt == 1 ? base + V : got;
                for (int i = 0; i < D && ok; i++) {
                    const float *last = i == 0 ? base : dst + (i - 1) * V;
                    int32_t tok = 0;
                    for (int64_t v = 1; v < V; v++)
                        if (last[v] > last[tok]) tok = (int32_t)v;
                    dsv3_batch_item step = {kc, &tok, 1};
                    dsv3_forward_out o1 = {.logits = dst + i * V};
                    ok = dsv3_forward(m, &step, 1, &o1, &err) == DSV3_OK;
                }
                if (ok && nt > 1 && memcmp(base + V, got, sizeof(float) * D * V) != 0) {
                    test_fail_at(__FILE__, __LINE__, "%s: decode at %lld tokens of context differs between 1 and %d "
                                 "threads", set, (long long)long_len, nt);
                    ok = 0;
                }
            }
            if (!ok && err.msg[0]) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
            free(mask);
        }
        dsv3_kv_cache_free(kc);
    }
    omp_set_num_threads(saved);
    /* packed logits: rows 3, 17 and 19 of a 20-token prefill (the last short run left them in base) */
    if (ok) {
        omp_set_num_threads(1);
        ok = run(m, prompt, 20, base, V) == 0;
        omp_set_num_threads(saved);
    }
    const int64_t np = 20;
    if (ok) {
        dsv3_error err = {0};
        dsv3_kv_cache *kc = NULL;
        uint8_t *mask = calloc((size_t)np, 1);
        mask[3] = mask[17] = mask[np - 1] = 1;
        float *packed = malloc(sizeof(float) * 3 * V);
        if (dsv3_kv_cache_new(m, np, &kc, &err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        } else {
            dsv3_batch_item it = {kc, prompt, np};
            dsv3_forward_out out = {.logits = packed, .logits_mask = mask, .logits_packed = 1};
            if (dsv3_forward(m, &it, 1, &out, &err)) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
            else if (memcmp(packed, base + 3 * V, sizeof(float) * V) || memcmp(packed + V, base + 17 * V, sizeof(float) * V) ||
                     memcmp(packed + 2 * V, base + (np - 1) * V, sizeof(float) * V))
                test_fail_at(__FILE__, __LINE__, "%s: packed logits differ from the full prefill's rows", set);
        }
        dsv3_kv_cache_free(kc);
        free(packed);
        free(mask);
    }
    free(prompt);
    free(base);
    free(got);
    dsv3_st_close(ref);
    dsv3_model_free(m);
}

TEST(mla_thread_group_invariance_tiny) { thread_invariance("tiny", 0); }
TEST(mla_thread_group_invariance_small) { thread_invariance("small", 261); }

/* The tiny fixture's config with 2 layers, kv_lora_rank kvl (200 = 128 + 72: kernel blocks and tails) and,
 * when > 0, `heads` heads; when >= 0, `shared_experts` shared experts; written to tmp/<name> as F32
 * and loaded. NULL (test failed or skipped) when it cannot be made. */
static dsv3_model *config_model(const char *name, int heads, int shared_experts, int kvl) {
    const char *fx = test_fixtures_dir();
    if (!fx) { test_skip("fixtures absent"); return NULL; }
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/tiny/config.json", fx);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg) { test_fail_at(__FILE__, __LINE__, "cannot read %s", path); return NULL; }
    if (heads > 0) {
        json_object_set_new(cfg, "num_attention_heads", json_integer(heads));
        json_object_set_new(cfg, "num_key_value_heads", json_integer(heads));
    }
    if (shared_experts >= 0) json_object_set_new(cfg, "n_shared_experts", json_integer(shared_experts));
    json_object_set_new(cfg, "kv_lora_rank", json_integer(kvl));
    json_object_set_new(cfg, "num_hidden_layers", json_integer(2));
    snprintf(path, sizeof path, "%s/%s.json", test_tmp_dir(), name);
    snprintf(dir, sizeof dir, "%s/%s", test_tmp_dir(), name);
    int rc = json_dump_file(cfg, path, 0);
    json_decref(cfg);
    if (rc) { test_fail_at(__FILE__, __LINE__, "cannot write %s", path); return NULL; }
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    o.dtype = DSV3_INIT_F32;
    o.std = 0.05f;
    o.overwrite = 1;
    dsv3_model *m = NULL;
    if (dsv3_init_model(path, dir, &o, NULL, NULL) != DSV3_OK || dsv3_model_load(dir, &m, NULL) != DSV3_OK)
        test_fail_at(__FILE__, __LINE__, "cannot make the model in %s", dir);
    return m;
}

static dsv3_model *mla16_model(void) { return config_model("mla16", 16, -1, 200); }

/* The vectorised attention kernels (16-head groups with heads as lanes, 64-column latent blocks, the
 * heads-as-lanes chunk softmax) against the portable ones: a 16-head model (none of the fixtures has
 * more than 4 heads) gives bitwise-identical logits on every ISA path whose kernels are meant to agree
 * bitwise; 150 tokens span three softmax chunks. */
static void isa_paths_bitwise(dsv3_model *m, const char *what) {
    const int64_t V = dsv3_model_config(m)->vocab_size, np = 150;
    int32_t prompt[150];
    for (int64_t i = 0; i < np; i++) prompt[i] = (int32_t)((i * 7919 + 13) % V);
    float *base = malloc(sizeof(float) * (size_t)((np + D) * V)), *got = malloc(sizeof(float) * (size_t)((np + D) * V));
    const dsv3_cpu_isa saved = dsv3_cpu_isa_get(), paths[] = {DSV3_CPU_ISA_SCALAR, DSV3_CPU_ISA_AVX2, DSV3_CPU_ISA_AVX512};
    int have_base = 0;
    for (size_t k = 0; k < sizeof paths / sizeof *paths; k++) {
        if (!dsv3_cpu_isa_supported(paths[k])) continue;
        dsv3_cpu_isa_set(paths[k]);
        if (run(m, prompt, np, have_base ? got : base, V)) break;
        if (have_base)
            CHECK_MSG(!memcmp(base, got, sizeof(float) * (size_t)((np + D) * V)), "%s: logits on %s differ bitwise from scalar",
                      what, dsv3_cpu_isa_name(paths[k]));
        have_base = 1;
    }
    dsv3_cpu_isa_set(saved);
    free(base);
    free(got);
}

/* isa_paths_bitwise on a config_model of the given heads and kv_lora_rank */
static void isa_paths_config(const char *name, int heads, int kvl, const char *what) {
    dsv3_model *m = config_model(name, heads, -1, kvl);
    if (!m) return;
    isa_paths_bitwise(m, what);
    dsv3_model_free(m);
}

TEST(mla_isa_paths_bitwise_16_heads) { isa_paths_config("mla16", 16, 200, "16 heads"); }

/* kv_lora_rank 203: every kernel's column tail (203 = 8 x 24 + 8 + 3 = 12 x 16 + 11). */
TEST(mla_isa_paths_bitwise_16_heads_odd_latent) { isa_paths_config("mla16-203", 16, 203, "16 heads, kv_lora_rank 203"); }

/* The FP8 fixture (kv_b_proj E4M3 with 128x128 block scales): the decode steps read it as stored on
 * AVX2 (mla_avx2.c), the other paths from its f32 copy. */
TEST(mla_isa_paths_bitwise_fp8_kvb) {
    const char *fx = test_fixtures_dir();
    if (!fx) { test_skip("fixtures absent"); return; }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/small", fx);
    dsv3_model *m = NULL;
    dsv3_error err = {0};
    if (dsv3_model_load(dir, &m, &err)) { test_fail_at(__FILE__, __LINE__, "%s", err.msg); return; }
    isa_paths_bitwise(m, "FP8 small fixture");
    dsv3_model_free(m);
}

/* The same for 4 heads: rows as vector lanes in the scores, the [head][key] chunk softmax. */
TEST(mla_isa_paths_bitwise_4_heads) { isa_paths_config("mla4", 4, 200, "4 heads"); }

/* Groups of at most 4 heads score two cache rows per vector (dsv3_mla_scores_tile4_avx2): its column
 * tail (kv_lora_rank 203: rows of 203 + rope columns, not a multiple of 4) and a group of 3 heads (the
 * fourth lane's query zero). */
TEST(mla_isa_paths_bitwise_4_heads_odd_latent) { isa_paths_config("mla4-203", 4, 203, "4 heads, kv_lora_rank 203"); }

TEST(mla_isa_paths_bitwise_3_heads) { isa_paths_config("mla3-203", 3, 203, "3 heads, kv_lora_rank 203"); }

/* The logits of the last D of np + D tokens computed in one prefill equal those of D decode steps after
 * an np-token prefill, bitwise, with 1..MAX_NT threads for the decode steps. */
static void prefill_equals_decode(dsv3_model *m, int64_t np, const char *what) {
    const int64_t V = dsv3_model_config(m)->vocab_size, T = np + D;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    uint8_t *mask = calloc((size_t)T, 1);
    float *full = malloc(sizeof(float) * (size_t)(D * V)), *step = malloc(sizeof(float) * (size_t)(D * V));
    for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    for (int64_t i = np; i < T; i++) mask[i] = 1;
    const int saved = omp_get_max_threads();
    dsv3_error err = {0};
    dsv3_kv_cache *kc = NULL;
    int ok = dsv3_kv_cache_new(m, T, &kc, &err) == DSV3_OK;
    if (ok) {
        dsv3_batch_item it = {kc, ids, T};
        dsv3_forward_out out = {.logits = full, .logits_mask = mask, .logits_packed = 1};
        ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
    }
    for (int nt = 1; nt <= MAX_NT && ok; nt++) {
        omp_set_num_threads(nt);
        dsv3_kv_cache_truncate(kc, np, 0);
        for (int64_t i = 0; i < D && ok; i++) {
            dsv3_batch_item it = {kc, ids + np + i, 1};
            dsv3_forward_out out = {.logits = step + i * V};
            ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
        }
        if (ok && memcmp(full, step, sizeof(float) * (size_t)(D * V)) != 0)
            test_fail_at(__FILE__, __LINE__, "%s: decode after %lld tokens with %d threads differs bitwise from the prefill",
                         what, (long long)np, nt);
    }
    if (!ok) test_fail_at(__FILE__, __LINE__, "%s: %s", what, err.msg);
    omp_set_num_threads(saved);
    dsv3_kv_cache_free(kc);
    free(ids);
    free(mask);
    free(full);
    free(step);
}

/* Chunked softmax across schedules: 300 tokens of context are 5 chunks; the prefill folds them inline
 * (item schedule), decode with 2+ threads computes them in parallel and folds afterwards (split
 * schedule). */
TEST(mla_long_context_prefill_equals_decode) {
    dsv3_model *m = mla16_model();
    if (!m) return;
    prefill_equals_decode(m, 300, "16 heads, 300 tokens");
    dsv3_model_free(m);
}

/* The same with every weight marked as read from memory (dsv3_weight.streamed, as in checkpoints over 64 MB):
 * the split schedule then prefetches the weights read after the attention (mla.c pf_plan), which changes no
 * value. */
static void mark_streamed(dsv3_weight *w) { w->streamed = 1; }
TEST(mla_long_context_streamed_weights_same_bits) {
    dsv3_model *m = mla16_model();
    if (!m) return;
    for (int64_t l = 0; l < m->cfg.num_hidden_layers; l++) {
        dsv3_layer *L = &m->layers[l];
        dsv3_weight *w[] = {&L->q_a, &L->q_b, &L->q_proj, &L->kv_a, &L->kv_b, &L->o, &L->mlp.gate, &L->mlp.up,
                            &L->mlp.down, &L->shared.gate, &L->shared.up, &L->shared.down};
        for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) mark_streamed(w[k]);
    }
    prefill_equals_decode(m, 300, "16 heads, 300 tokens, streamed weights");
    dsv3_model_free(m);
}

/* kv_b_proj read however the loader chose (F32/BF16 directly, FP8 cached as f32 or decoded per head:
 * DSV3_KVB_CACHE=all|none force one) gives the same bits: logits of a prefill + decode under the
 * default, "all" and "none". */
static void kvb_cache_equivalence(const char *dir) {
    const char *modes[3] = {NULL, "all", "none"};
    dsv3_model *m[3] = {NULL, NULL, NULL};
    dsv3_error err = {0};
    for (int k = 0; k < 3; k++) {
        if (modes[k]) setenv("DSV3_KVB_CACHE", modes[k], 1);
        dsv3_status st = dsv3_model_load(dir, &m[k], &err);
        unsetenv("DSV3_KVB_CACHE");
        if (st) { test_fail_at(__FILE__, __LINE__, "%s", err.msg); break; }
    }
    if (m[0] && m[1] && m[2]) {
        const int64_t V = dsv3_model_config(m[0])->vocab_size, np = 37, sz = (np + D) * V;
        int32_t prompt[37];
        for (int64_t i = 0; i < np; i++) prompt[i] = (int32_t)((i * 7919 + 13) % V);
        float *a = malloc(sizeof(float) * (size_t)(3 * sz));
        int ok = 1;
        for (int k = 0; k < 3 && ok; k++) ok = run(m[k], prompt, np, a + k * sz, V) == 0;
        for (int k = 1; k < 3 && ok; k++)
            CHECK_MSG(!memcmp(a, a + k * sz, sizeof(float) * (size_t)sz),
                      "%s: logits with DSV3_KVB_CACHE=%s differ bitwise from the default", dir, modes[k]);
        free(a);
    }
    for (int k = 0; k < 3; k++) dsv3_model_free(m[k]);
}

TEST(mla_kvb_read_modes_same_bits) {
    dsv3_model *m = mla16_model(); /* writes tmp/mla16 */
    if (!m) return;
    dsv3_model_free(m);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/mla16", test_tmp_dir());
    kvb_cache_equivalence(dir);
    const char *fx = test_fixtures_dir();
    if (fx) {
        snprintf(dir, sizeof dir, "%s/small", fx); /* FP8 */
        kvb_cache_equivalence(dir);
        snprintf(dir, sizeof dir, "%s/tiny", fx); /* BF16 */
        kvb_cache_equivalence(dir);
    }
}

/* The one-token MoE path (decode: one parallel region, combine from zero when there is no shared
 * expert) against the per-expert path of a prefill, for a model without shared experts. */
TEST(moe_one_token_path_without_shared_experts) {
    dsv3_model *m = config_model("moe-noshared", 0, 0, 200);
    if (!m) return;
    prefill_equals_decode(m, 20, "no shared experts");
    dsv3_model_free(m);
}

/* The few-token MoE split by multiply-adds (moe.c few_mine) on experts of unequal cost: a shared expert 4x
 * the routed width (its row blocks outnumber theirs; the routed ones have empty blocks) decodes with 1..4
 * threads to the prefill's bits. */
TEST(moe_few_tokens_unequal_experts_same_bits) {
    dsv3_model *m = config_model("moe-wide-shared", 0, 4, 200);
    if (!m) return;
    prefill_equals_decode(m, 20, "shared expert 4x the routed width");
    dsv3_model_free(m);
}

/* The MoE of a prefill three ways: one thread (every expert one GEMM over its tokens, moe_tokens), two
 * threads with whole experts per thread over all tokens, and the same in blocks of 7 tokens (the last
 * one partial): bitwise-identical logits, with and without shared experts. */
static void moe_expert_parallel(dsv3_model *m, const char *what) {
    const int64_t V = dsv3_model_config(m)->vocab_size, np = 40;
    int32_t prompt[40];
    for (int64_t i = 0; i < np; i++) prompt[i] = (int32_t)((i * 7919 + 5) % V);
    float *base = malloc(sizeof(float) * (size_t)((np + D) * V)), *got = malloc(sizeof(float) * (size_t)((np + D) * V));
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    int ok = base && got && run(m, prompt, np, base, V) == 0;
    omp_set_num_threads(2);
    for (int k = 0; k < 2 && ok; k++) {
        dsv3_model_set_moe_block(m, k ? 7 : 0);
        ok = run(m, prompt, np, got, V) == 0;
        if (ok && memcmp(base, got, sizeof(float) * (size_t)((np + D) * V)))
            test_fail_at(__FILE__, __LINE__, "%s: expert-parallel MoE (block %d) differs from one thread", what, k ? 7 : 0);
    }
    dsv3_model_set_moe_block(m, 0);
    omp_set_num_threads(saved);
    free(base);
    free(got);
}

TEST(moe_expert_parallel_prefill_same_bits) {
    dsv3_model *m = config_model("moe-par", 0, -1, 200);
    if (!m) return;
    moe_expert_parallel(m, "shared experts");
    dsv3_model_free(m);
    m = config_model("moe-par-noshared", 0, 0, 200);
    if (!m) return;
    moe_expert_parallel(m, "no shared experts");
    dsv3_model_free(m);
}

/* A BF16 KV cache (dsv3_model_set_kv_dtype): every schedule attends over the stored (rounded) values, so
 * prefill and decode (1..MAX_NT threads; 300 tokens: the split schedule with 2+) agree bitwise, and so do
 * the ISA paths. */
TEST(mla_bf16_cache_prefill_equals_decode) {
    dsv3_model *m = mla16_model();
    if (!m) return;
    dsv3_error err = {0};
    CHECK(dsv3_model_set_kv_dtype(m, DSV3_BF16, &err) == DSV3_OK);
    prefill_equals_decode(m, 300, "BF16 cache, 16 heads, 300 tokens");
    isa_paths_bitwise(m, "BF16 cache, 16 heads");
    dsv3_model_free(m);
}

TEST(mla_bf16_cache_isa_paths_bitwise_4_heads_odd_latent) {
    dsv3_model *m = config_model("mla4-203", 4, -1, 203);
    if (!m) return;
    dsv3_error err = {0};
    CHECK(dsv3_model_set_kv_dtype(m, DSV3_BF16, &err) == DSV3_OK);
    isa_paths_bitwise(m, "BF16 cache, 4 heads, kv_lora_rank 203");
    prefill_equals_decode(m, 70, "BF16 cache, 4 heads, 70 tokens");
    dsv3_model_free(m);
}

/* One batch holding an F32-cache sequence and a BF16-cache one: each row's logits equal those of its
 * sequence run alone with its cache. */
TEST(mla_mixed_cache_dtypes_in_one_batch) {
    dsv3_model *m = mla16_model();
    if (!m) return;
    const int64_t V = dsv3_model_config(m)->vocab_size, np = 70;
    int32_t a[70], b[70];
    for (int64_t i = 0; i < np; i++) {
        a[i] = (int32_t)((i * 7919 + 13) % V);
        b[i] = (int32_t)((i * 104729 + 3) % V);
    }
    float *alone = malloc(sizeof(float) * (size_t)(2 * np * V)), *both = malloc(sizeof(float) * (size_t)(2 * np * V));
    dsv3_kv_cache *kc[4] = {NULL, NULL, NULL, NULL};
    dsv3_error err = {0};
    int ok = alone && both;
    for (int k = 0; k < 4 && ok; k++) { /* 0, 2: F32; 1, 3: BF16 */
        ok = dsv3_model_set_kv_dtype(m, k & 1 ? DSV3_BF16 : DSV3_F32, &err) == DSV3_OK &&
             dsv3_kv_cache_new(m, np, &kc[k], &err) == DSV3_OK;
        if (ok) CHECK(dsv3_kv_cache_dtype(kc[k]) == (k & 1 ? DSV3_BF16 : DSV3_F32));
    }
    for (int k = 0; k < 2 && ok; k++) {
        dsv3_batch_item it = {kc[k], k ? b : a, np};
        dsv3_forward_out out = {.logits = alone + k * np * V};
        ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
    }
    if (ok) {
        dsv3_batch_item its[2] = {{kc[2], a, np}, {kc[3], b, np}};
        dsv3_forward_out out = {.logits = both};
        ok = dsv3_forward(m, its, 2, &out, &err) == DSV3_OK;
    }
    if (!ok) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    else CHECK_MSG(!memcmp(alone, both, sizeof(float) * (size_t)(2 * np * V)), "batched logits differ from the sequences alone");
    for (int k = 0; k < 4; k++) dsv3_kv_cache_free(kc[k]);
    free(alone);
    free(both);
    dsv3_model_free(m);
}

/* A prefill batch of more BF16-cache sequences than the item schedule widens at once
 * (DSV3_MLA_WIDE_ITEMS): the later ones read their rows a chunk at a time, with the same bits as each
 * sequence prefilled alone (widened). */
TEST(mla_bf16_cache_more_sequences_than_widened) {
    dsv3_model *m = mla16_model();
    if (!m) return;
    enum { NS = DSV3_MLA_WIDE_ITEMS + 2, NP = 70 };
    const int64_t V = dsv3_model_config(m)->vocab_size;
    static int32_t ids[NS][NP];
    for (int k = 0; k < NS; k++)
        for (int i = 0; i < NP; i++) ids[k][i] = (int32_t)((i * 7919 + k * 104729 + 13) % V);
    float *alone = malloc(sizeof(float) * (size_t)(NS * NP * V)), *both = malloc(sizeof(float) * (size_t)(NS * NP * V));
    dsv3_kv_cache *kc[2 * NS] = {0};
    dsv3_batch_item its[NS];
    dsv3_error err = {0};
    int ok = alone && both && dsv3_model_set_kv_dtype(m, DSV3_BF16, &err) == DSV3_OK;
    for (int k = 0; k < 2 * NS && ok; k++) ok = dsv3_kv_cache_new(m, NP, &kc[k], &err) == DSV3_OK;
    for (int k = 0; k < NS && ok; k++) {
        dsv3_batch_item it = {kc[k], ids[k], NP};
        dsv3_forward_out out = {.logits = alone + (int64_t)k * NP * V};
        ok = dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK;
    }
    if (ok) {
        for (int k = 0; k < NS; k++) its[k] = (dsv3_batch_item){kc[NS + k], ids[k], NP};
        dsv3_forward_out out = {.logits = both};
        ok = dsv3_forward(m, its, NS, &out, &err) == DSV3_OK;
    }
    if (!ok) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    for (int k = 0; ok && k < NS; k++)
        CHECK_MSG(!memcmp(alone + (int64_t)k * NP * V, both + (int64_t)k * NP * V, sizeof(float) * (size_t)(NP * V)),
                  "sequence %d of %d: batched logits differ from alone", k, NS);
    for (int k = 0; k < 2 * NS; k++) dsv3_kv_cache_free(kc[k]);
    free(alone);
    free(both);
    dsv3_model_free(m);
}
