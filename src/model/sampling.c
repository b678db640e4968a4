/* Sampling: greedy / temperature + top-k + top-p with a seeded xorshift64*. */
#include "dsv3/sampling.h"

#include <math.h>
#include <stdlib.h>

int32_t dsv3_argmax(const float *logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

double dsv3_rand_uniform(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

dsv3_status dsv3_sampler_init(dsv3_sampler *s, const dsv3_sampler_params *p, int64_t vocab, dsv3_error *err) {
    s->p = *p;
    if (!(s->p.top_p > 0.0f) || s->p.top_p > 1.0f) return dsv3_fail(err, DSV3_ERR_INVALID, "top-p must be in (0, 1]");
    if (s->p.top_k < 0) return dsv3_fail(err, DSV3_ERR_INVALID, "top-k must be >= 0");
    if (!isfinite(s->p.temperature) || s->p.temperature < 0) return dsv3_fail(err, DSV3_ERR_INVALID, "temperature must be >= 0");
    s->rng = p->seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!s->rng) s->rng = 1;
    s->cap = vocab;
    s->prob = malloc(sizeof(float) * vocab);
    s->idx = malloc(sizeof(int32_t) * vocab);
    if (!s->prob || !s->idx) {
        dsv3_sampler_free(s);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for the sampler");
    }
    return DSV3_OK;
}

void dsv3_sampler_free(dsv3_sampler *s) {
    free(s->prob);
    free(s->idx);
    s->prob = NULL;
    s->idx = NULL;
}

static const float *g_sort_keys; /* qsort has no context argument; sampling is single-threaded */
static int by_logit_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = g_sort_keys[i], y = g_sort_keys[j];
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Candidate set of temperature sampling: s->idx[0..n) sorted by logit
 * (descending, ties by id), cut by top-k then top-p, with unnormalised
 * weights s->prob[0..n) = exp((l - max)/T); returns n, *sum = Σ weights. */
static int64_t candidates(dsv3_sampler *s, const float *logits, int64_t vocab, double *sum_out) {
    int64_t n = vocab;
    for (int64_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
    g_sort_keys = logits;
    qsort(s->idx, (size_t)n, sizeof(int32_t), by_logit_desc);
    if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
    float mx = logits[s->idx[0]], inv_t = 1.0f / s->p.temperature;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) * inv_t);
        sum += s->prob[i];
    }
    /* nucleus: smallest prefix with cumulative probability >= top_p */
    if (s->p.top_p < 1.0f) {
        double cum = 0;
        for (int64_t i = 0; i < n; i++) {
            cum += s->prob[i] / sum;
            if (cum >= s->p.top_p) { n = i + 1; break; }
        }
        sum = 0;
        for (int64_t i = 0; i < n; i++) sum += s->prob[i];
    }
    *sum_out = sum;
    return n;
}

int32_t dsv3_sample(dsv3_sampler *s, const float *logits, int64_t vocab) {
    if (s->p.temperature <= 0.0f || vocab > s->cap) return dsv3_argmax(logits, vocab);
    double sum;
    int64_t n = candidates(s, logits, vocab, &sum);
    double u = dsv3_rand_uniform(&s->rng) * sum, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc) return s->idx[i];
    }
    return s->idx[n - 1];
}

void dsv3_sampler_probs(dsv3_sampler *s, const float *logits, int64_t vocab, float *probs) {
    for (int64_t i = 0; i < vocab; i++) probs[i] = 0.0f;
    if (s->p.temperature <= 0.0f || vocab > s->cap) {
        probs[dsv3_argmax(logits, vocab)] = 1.0f;
        return;
    }
    double sum;
    int64_t n = candidates(s, logits, vocab, &sum);
    for (int64_t i = 0; i < n; i++) probs[s->idx[i]] = (float)(s->prob[i] / sum);
}

int32_t dsv3_sample_from(dsv3_sampler *s, const float *probs, int64_t vocab) {
    if (s->p.temperature <= 0.0f) return dsv3_argmax(probs, vocab);
    double sum = 0;
    for (int64_t i = 0; i < vocab; i++) sum += probs[i];
    double u = dsv3_rand_uniform(&s->rng) * sum, acc = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < vocab; i++) {
        if (probs[i] <= 0) continue;
        acc += probs[i];
        last = i;
        if (u < acc) return (int32_t)i;
    }
    return (int32_t)last;
}
