/* Sampler: the partial-selection candidate set equals a full sort's (top-k,
 * top-p, ties by id), and samples come from it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/sampling.h"

static const float *g_keys;
static int desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (g_keys[i] != g_keys[j]) return g_keys[i] > g_keys[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Reference: sort everything, cut by top-k, then by top-p; probabilities by id. */
static void reference_probs(const float *l, int64_t V, float temp, int64_t top_k, float top_p, double *out) {
    int32_t *idx = malloc(sizeof(int32_t) * V);
    for (int64_t i = 0; i < V; i++) idx[i] = (int32_t)i;
    g_keys = l;
    qsort(idx, (size_t)V, sizeof(int32_t), desc);
    int64_t n = top_k > 0 && top_k < V ? top_k : V;
    double *w = malloc(sizeof(double) * V), sum = 0;
    for (int64_t i = 0; i < n; i++) sum += w[i] = exp((double)(l[idx[i]] - l[idx[0]]) / temp);
    if (top_p < 1.0f) {
        double cum = 0;
        for (int64_t i = 0; i < n; i++) {
            cum += w[i] / sum;
            if (cum >= top_p) { n = i + 1; break; }
        }
        sum = 0;
        for (int64_t i = 0; i < n; i++) sum += w[i];
    }
    for (int64_t i = 0; i < V; i++) out[i] = 0;
    for (int64_t i = 0; i < n; i++) out[idx[i]] = w[i] / sum;
    free(idx);
    free(w);
}

TEST(sampling_candidates_match_full_sort) {
    const int64_t sizes[] = {1, 2, 7, 300, 5000, 129280};
    const int64_t ks[] = {0, 1, 5, 40, 299, 1000000};
    const float ps[] = {1.0f, 0.9f, 0.5f, 0.999f, 1e-6f};
    uint64_t rng = 7;
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++) {
        int64_t V = sizes[a];
        float *l = malloc(sizeof(float) * V), *probs = malloc(sizeof(float) * V);
        double *ref = malloc(sizeof(double) * V);
        for (int ties = 0; ties < 2; ties++) {
            /* ties: logits take few distinct values, so the id order decides cuts */
            for (int64_t i = 0; i < V; i++) {
                double u = dsv3_rand_uniform(&rng);
                l[i] = ties ? (float)floor(u * 6) : (float)(8 * u * u * u - 2);
            }
            for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
                for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
                    if (V > 10000 && (b % 3 || c % 2)) continue; /* the real vocab size: a few cases (full sorts are slow) */
                    float temp = (b + c) % 2 ? 0.7f : 1.3f;
                    dsv3_sampler s;
                    dsv3_sampler_params sp = {temp, ps[c], ks[b], 11};
                    CHECK(dsv3_sampler_init(&s, &sp, V, NULL) == DSV3_OK);
                    dsv3_sampler_probs(&s, l, V, probs);
                    reference_probs(l, V, temp, ks[b], ps[c], ref);
                    int64_t bad = 0;
                    for (int64_t i = 0; i < V; i++)
                        bad += (probs[i] > 0) != (ref[i] > 0) || fabs(probs[i] - ref[i]) > 1e-6 * (ref[i] + 1e-6);
                    CHECK_MSG(bad == 0, "V %lld ties %d top_k %lld top_p %g: %lld probabilities differ", (long long)V, ties,
                              (long long)ks[b], ps[c], (long long)bad);
                    for (int r = 0; r < 20; r++) {
                        int32_t t = dsv3_sample(&s, l, V);
                        CHECK_MSG(t >= 0 && t < V && ref[t] > 0, "sampled %d outside the candidate set", t);
                    }
                    dsv3_sampler_free(&s);
                    if (test_failed_now()) break;
                }
        }
        free(l);
        free(probs);
        free(ref);
    }
}

/* The top-p path without top-k (a histogram of the weights picks the buckets that hold the mass, only
 * those ids are sorted) gives exactly what sorting everything gives with the sampler's own arithmetic:
 * float weights expf((l - max) / T), their sum in id order, the running sum of w / sum in candidate
 * order, the kept weights summed in that order. Logits spread over many buckets, packed into one, with
 * ties, with -0 and +0, and a top-p that only the whole vocabulary reaches. */
static void exact_top_p(const float *l, int64_t V, float temp, float top_p, float *out) {
    int32_t *idx = malloc(sizeof(int32_t) * V);
    float *w = malloc(sizeof(float) * V);
    for (int64_t i = 0; i < V; i++) idx[i] = (int32_t)i;
    g_keys = l;
    qsort(idx, (size_t)V, sizeof(int32_t), desc);
    const float mx = l[idx[0]], inv_t = 1.0f / temp;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += expf((l[i] - mx) * inv_t);
    for (int64_t i = 0; i < V; i++) w[i] = expf((l[idx[i]] - mx) * inv_t);
    int64_t n = V;
    double cum = 0;
    for (int64_t i = 0; i < V; i++) {
        cum += w[i] / sum;
        if (cum >= top_p) { n = i + 1; break; }
    }
    double kept = 0;
    for (int64_t i = 0; i < n; i++) kept += w[i];
    for (int64_t i = 0; i < V; i++) out[i] = 0.0f;
    for (int64_t i = 0; i < n; i++) out[idx[i]] = (float)(w[i] / kept);
    free(idx);
    free(w);
}

TEST(sampling_top_p_exact) {
    const int64_t sizes[] = {3, 1000, 8192, 129280};
    const float ps[] = {0.95f, 0.5f, 0.999999f, 0.2f};
    uint64_t rng = 99;
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++) {
        const int64_t V = sizes[a];
        float *l = malloc(sizeof(float) * V), *probs = malloc(sizeof(float) * V), *ref = malloc(sizeof(float) * V);
        for (int kind = 0; kind < 4; kind++) {
            for (int64_t i = 0; i < V; i++) {
                const double u = dsv3_rand_uniform(&rng);
                l[i] = kind == 0   ? (float)(20 * u - 10)                    /* many buckets */
                       : kind == 1 ? (float)(5.0 + 0.01 * u)                 /* one bucket */
                       : kind == 2 ? (float)floor(u * 4) * 0.5f              /* ties */
                                   : (i % 3 == 0 ? -0.0f : i % 3 == 1 ? 0.0f : (float)(u - 2)); /* -0 / +0 */
            }
            for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
                if (V > 10000 && c % 2) continue; /* full sorts of the real vocabulary are slow */
                dsv3_sampler s;
                dsv3_sampler_params sp = {kind % 2 ? 0.8f : 1.3f, ps[c], 0, 5};
                CHECK(dsv3_sampler_init(&s, &sp, V, NULL) == DSV3_OK);
                dsv3_sampler_probs(&s, l, V, probs);
                exact_top_p(l, V, sp.temperature, ps[c], ref);
                CHECK_MSG(memcmp(probs, ref, sizeof(float) * (size_t)V) == 0, "V %lld kind %d top_p %g: not the full sort's bits",
                          (long long)V, kind, ps[c]);
                dsv3_sampler_free(&s);
                if (test_failed_now()) break;
            }
        }
        free(l);
        free(probs);
        free(ref);
    }
}

/* A top-p set after dsv3_sampler_init (the top-p buffers are made when first needed): the same result. */
TEST(sampling_top_p_set_after_init) {
    const int64_t V = 3000;
    float *l = malloc(sizeof(float) * V), *probs = malloc(sizeof(float) * V), *ref = malloc(sizeof(float) * V);
    uint64_t rng = 3;
    for (int64_t i = 0; i < V; i++) l[i] = (float)(10 * dsv3_rand_uniform(&rng));
    dsv3_sampler s;
    dsv3_sampler_params sp = {0.9f, 1.0f, 0, 1};
    CHECK(dsv3_sampler_init(&s, &sp, V, NULL) == DSV3_OK);
    s.p.top_p = 0.8f;
    dsv3_sampler_probs(&s, l, V, probs);
    exact_top_p(l, V, 0.9f, 0.8f, ref);
    CHECK(memcmp(probs, ref, sizeof(float) * (size_t)V) == 0);
    dsv3_sampler_free(&s);
    free(l);
    free(probs);
    free(ref);
}

/* Samplers used from several threads at once (the server samples a step's rows in parallel) draw
 * exactly what they draw one after another: no state shared between samplers (the top-k sort's key
 * pointer is per thread). */
TEST(sampling_parallel_samplers_independent) {
    enum { NS = 8, DRAWS = 40 };
    const int64_t V = 5000;
    float *l = malloc(sizeof(float) * V * NS);
    uint64_t rng = 5;
    for (int64_t i = 0; i < V * NS; i++) l[i] = (float)(6 * dsv3_rand_uniform(&rng));
    int32_t seq[NS][DRAWS], par[NS][DRAWS];
    for (int pass = 0; pass < 2; pass++) {
        int ok = 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(4) if (pass == 1) reduction(& : ok)
        for (int k = 0; k < NS; k++) {
            dsv3_sampler s;
            dsv3_sampler_params sp = {0.9f, k % 2 ? 0.9f : 1.0f, k % 4 < 2 ? 40 : 0, (uint64_t)k};
            ok &= dsv3_sampler_init(&s, &sp, V, NULL) == DSV3_OK;
            for (int d = 0; d < DRAWS; d++) (pass ? par : seq)[k][d] = dsv3_sample(&s, l + (k + d) % NS * V, V);
            dsv3_sampler_free(&s);
        }
        CHECK(ok);
    }
    CHECK(memcmp(seq, par, sizeof seq) == 0);
    free(l);
}

/* With neither top-k nor top-p every token can come out, at its probability. */
TEST(sampling_full_vocab_frequencies) {
    const int64_t V = 4;
    float l[4] = {0.0f, 1.0f, -1.0f, 0.5f};
    dsv3_sampler s;
    dsv3_sampler_params sp = {1.0f, 1.0f, 0, 5};
    CHECK(dsv3_sampler_init(&s, &sp, V, NULL) == DSV3_OK);
    double ref[4], cnt[4] = {0};
    reference_probs(l, V, 1.0f, 0, 1.0f, ref);
    const int N = 200000;
    for (int i = 0; i < N; i++) cnt[dsv3_sample(&s, l, V)]++;
    for (int i = 0; i < 4; i++) CHECK_NEAR(cnt[i] / N, ref[i], 0.005);
    dsv3_sampler_free(&s);
}

/* dsv3_argmax (two vectorisable passes) against the plain scan: lengths around the 16-lane blocks,
 * ties (the lowest index wins), -0 / +0, infinities, NaNs (skipped, except a NaN at index 0). */
TEST(sampling_argmax_matches_scan) {
    uint64_t rng = 12345;
    static float v[129280];
    const int64_t lens[] = {1, 2, 15, 16, 17, 31, 33, 100, 8192, 129280};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        for (int pattern = 0; pattern < 7; pattern++) {
            for (int64_t i = 0; i < n; i++) {
                double u = dsv3_rand_uniform(&rng);
                v[i] = pattern == 1 ? (float)(int)(u * 4) /* many ties */ : (float)(u * 20 - 10);
            }
            if (pattern == 2) for (int64_t i = 0; i < n; i++) v[i] = i % 2 ? 0.0f : -0.0f;
            if (pattern == 3) for (int64_t i = 0; i < n; i++) v[i] = -INFINITY;
            if (pattern == 4) v[n / 2] = INFINITY, v[n - 1] = INFINITY;
            if (pattern == 5) for (int64_t i = 0; i < n; i += 3) v[i] = NAN; /* index 0 too */
            if (pattern == 6) for (int64_t i = 1; i < n; i += 3) v[i] = NAN;
            int32_t a = dsv3_argmax(v, n), b = dsv3_argmax_ref(v, n);
            CHECK_MSG(a == b, "n %lld pattern %d: argmax %d, scan %d", (long long)n, pattern, a, b);
        }
    }
}
