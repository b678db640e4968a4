/* dsv3_generate: greedy output with MTP speculative decoding is token-identical
 * to plain decoding; sampling with MTP is deterministic for a seed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/sampling.h"
#include "fixture_util.h"

typedef struct {
    int32_t toks[256];
    int n;
} collect;

static int collect_cb(int32_t t, void *ctx) {
    collect *c = ctx;
    if (c->n < 256) c->toks[c->n++] = t;
    return 0;
}

static int run_k(dsv3_model *m, int use_mtp, float temp, int64_t top_k, uint64_t seed, int64_t n_new, collect *out,
                 dsv3_gen_stats *gs) {
    const int32_t prompt[7] = {415, 52, 117, 466, 246, 99, 63};
    dsv3_kv_cache *kc = NULL;
    dsv3_error err = {0};
    dsv3_sampler smp;
    dsv3_sampler_params sp = {temp, top_k ? 1.0f : 0.95f, top_k, seed};
    memset(out, 0, sizeof *out);
    if (dsv3_kv_cache_new(m, 7 + n_new + 1, &kc, &err) || dsv3_sampler_init(&smp, &sp, dsv3_model_config(m)->vocab_size, &err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        dsv3_kv_cache_free(kc);
        return -1;
    }
    dsv3_status st = dsv3_generate(m, kc, prompt, 7, n_new, &smp, use_mtp, -1, collect_cb, out, gs, &err);
    if (st) test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    dsv3_sampler_free(&smp);
    dsv3_kv_cache_free(kc);
    return st ? -1 : 0;
}

static int run(dsv3_model *m, int use_mtp, float temp, uint64_t seed, int64_t n_new, collect *out, dsv3_gen_stats *gs) {
    return run_k(m, use_mtp, temp, 0, seed, n_new, out, gs);
}

static void mtp_equivalence(const char *set) {
    dsv3_model *m;
    dsv3_st_file *ref;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    collect a, b;
    dsv3_gen_stats ga, gb;
    if (run(m, 0, 0.0f, 0, 48, &a, &ga) == 0 && run(m, 1, 0.0f, 0, 48, &b, &gb) == 0) {
        CHECK(a.n == 48 && b.n == 48);
        CHECK_MSG(!memcmp(a.toks, b.toks, sizeof(int32_t) * 48), "%s: greedy output differs with --mtp", set);
        CHECK(gb.mtp_drafted > 0 && ga.mtp_drafted == 0);
        /* chained drafts: 2..4 per step (and more than the maximum, clamped), the same greedy output */
        for (int d = 2; d <= DSV3_MTP_MAX_DRAFTS + 1 && !test_failed_now(); d++)
            if (run(m, d, 0.0f, 0, 48, &b, &gb) == 0) {
                CHECK_MSG(b.n == 48 && !memcmp(a.toks, b.toks, sizeof(int32_t) * 48),
                          "%s: greedy output differs with %d drafts per step", set, d);
                CHECK(gb.mtp_drafted >= gb.mtp_accepted && gb.mtp_drafted > 0);
            }
        /* a draft vocabulary of the first 100 ids: the same greedy output, fewer accepted drafts */
        dsv3_model_set_mtp_draft_vocab(m, 100);
        if (run(m, 1, 0.0f, 0, 48, &b, &gb) == 0) {
            CHECK_MSG(b.n == 48 && !memcmp(a.toks, b.toks, sizeof(int32_t) * 48), "%s: greedy output differs with a draft vocabulary", set);
            CHECK(gb.mtp_drafted > 0);
        }
        dsv3_model_set_mtp_draft_vocab(m, 0);
        /* sampling with MTP: same seed, same tokens */
        for (int d = 1; d <= 3; d += 2)
            if (run(m, d, 0.9f, 11, 32, &a, &ga) == 0 && run(m, d, 0.9f, 11, 32, &b, &gb) == 0)
                CHECK(a.n == 32 && !memcmp(a.toks, b.toks, sizeof(int32_t) * 32));
    }
    dsv3_model_free(m);
    dsv3_st_close(ref);
}

TEST(generate_mtp_greedy_identical_tiny) { mtp_equivalence("tiny"); }
TEST(generate_mtp_greedy_identical_small) { mtp_equivalence("small"); }

/* dsv3_mtp_forward_last runs only the cache rows of all but the last row: its logits and the cache
 * it leaves (seen through a later call) are bitwise those of the full dsv3_mtp_forward. */
static void mtp_last_row_only(const char *set) {
    dsv3_model *m;
    dsv3_st_file *ref;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    const int64_t H = dsv3_model_config(m)->hidden_size, V = dsv3_model_config(m)->vocab_size;
    const int32_t prompt[8] = {415, 52, 117, 466, 246, 99, 63, 7};
    dsv3_kv_cache *kc[2] = {NULL, NULL};
    dsv3_error err = {0};
    float *hid = malloc(sizeof(float) * 7 * H), *full = malloc(sizeof(float) * 5 * V), *last = malloc(sizeof(float) * V);
    CHECK(hid && full && last);
    for (int k = 0; k < 2 && hid && full && last; k++) {
        dsv3_batch_item it = {NULL, prompt, 7};
        dsv3_forward_out out = {.final_hidden = hid};
        CHECK_MSG(dsv3_kv_cache_new(m, 16, &kc[k], &err) == DSV3_OK, "%s", err.msg);
        it.cache = kc[k];
        CHECK_MSG(kc[k] && dsv3_forward(m, &it, 1, &out, &err) == DSV3_OK, "%s", err.msg);
    }
    if (!test_failed_now()) {
        /* rows (h_i, t_{i+1}): 5 rows, then 2 more */
        CHECK(dsv3_mtp_forward(m, kc[0], hid, prompt + 1, 5, full, &err) == DSV3_OK);
        CHECK(dsv3_mtp_forward_last(m, kc[1], hid, prompt + 1, 5, last, &err) == DSV3_OK);
        CHECK_MSG(!memcmp(full + 4 * V, last, sizeof(float) * V), "%s: last-row MTP logits differ", set);
        CHECK(dsv3_kv_cache_mtp_len(kc[0]) == 5 && dsv3_kv_cache_mtp_len(kc[1]) == 5);
        CHECK(dsv3_mtp_forward(m, kc[0], hid + 5 * H, prompt + 6, 2, full, &err) == DSV3_OK);
        CHECK(dsv3_mtp_forward_last(m, kc[1], hid + 5 * H, prompt + 6, 2, last, &err) == DSV3_OK);
        CHECK_MSG(!memcmp(full + V, last, sizeof(float) * V), "%s: MTP logits after last-row calls differ", set);
    }
    free(hid); free(full); free(last);
    dsv3_kv_cache_free(kc[0]);
    dsv3_kv_cache_free(kc[1]);
    dsv3_model_free(m);
    dsv3_st_close(ref);
}

TEST(generate_mtp_last_row_only_tiny) { mtp_last_row_only("tiny"); }
TEST(generate_mtp_last_row_only_small) { mtp_last_row_only("small"); }

/* Speculative sampling keeps the output distribution: the joint distribution of generated tokens 2 and 3
 * (token 1 comes from the prefill either way; 4 tokens, so both are drafts of one 2-draft step) over many
 * seeds, plain vs MTP with chained drafts, top-k 3 (at most 9 continuations); total variation distance
 * within sampling noise.
 * (Accepting drafts without the min(1, p/q) rule, or a wrong residual, moves it far past the bound:
 * the fixture's MTP head is random, so its drafts follow another distribution.) */
static void mtp_sampling_distribution(const char *set) {
    dsv3_model *m;
    dsv3_st_file *ref;
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    enum { N = 1500, NK = 64 };
    int32_t key[2][NK][2];
    int cntk[2][NK], nk[2] = {0, 0}, other[2] = {0, 0};
    memset(cntk, 0, sizeof cntk);
    for (int mode = 0; mode < 2 && !test_failed_now(); mode++)
        for (int sd = 0; sd < N && !test_failed_now(); sd++) {
            collect o;
            dsv3_gen_stats gs;
            if (run_k(m, mode ? 3 : 0, 1.0f, 3, 1000 + (uint64_t)sd, 4, &o, &gs)) break;
            int j = 0;
            while (j < nk[mode] && (key[mode][j][0] != o.toks[1] || key[mode][j][1] != o.toks[2])) j++;
            if (j == nk[mode] && nk[mode] < NK) key[mode][nk[mode]][0] = o.toks[1], key[mode][nk[mode]][1] = o.toks[2], nk[mode]++;
            if (j < nk[mode]) cntk[mode][j]++;
            else other[mode]++;
        }
    if (!test_failed_now()) {
        /* TV over the union of the keys (the overflow bucket counted as one more key) */
        double tv = fabs((double)other[0] - other[1]) / N;
        for (int j = 0; j < nk[0]; j++) {
            int c1 = 0;
            for (int i = 0; i < nk[1]; i++)
                if (key[1][i][0] == key[0][j][0] && key[1][i][1] == key[0][j][1]) c1 = cntk[1][i];
            tv += fabs((double)cntk[0][j] - c1) / N;
        }
        for (int i = 0; i < nk[1]; i++) {
            int seen = 0;
            for (int j = 0; j < nk[0]; j++) seen |= key[1][i][0] == key[0][j][0] && key[1][i][1] == key[0][j][1];
            if (!seen) tv += (double)cntk[1][i] / N;
        }
        tv /= 2;
        fprintf(stderr, "    %s: %d / %d continuations, total variation %.3f\n", set, nk[0], nk[1], tv);
        CHECK_MSG(tv < 0.12, "%s: MTP sampling distribution differs (total variation %.3f)", set, tv);
    }
    dsv3_model_free(m);
    dsv3_st_close(ref);
}

TEST(generate_mtp_sampling_distribution_tiny) { mtp_sampling_distribution("tiny"); }
