/* Sampling: greedy / temperature + top-k + top-p with a seeded xorshift64*. */
#include "dsv3/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The reference: the first index whose value no later value exceeds (NaN never wins, except at 0). */
int32_t dsv3_argmax_ref(const float *logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

/* The same index in two vectorisable passes (the scan above carries a load-compare dependency per
 * element: ~5 us over a 8192 vocabulary, 3 per MTP step): the maximum over 16 independent lanes
 * (NaN never replaces a lane), then the first index holding a value equal to it (-0 == +0, as the
 * scan's > treats them), found block by block. */
int32_t dsv3_argmax(const float *logits, int64_t n) {
    if (n <= 1 || logits[0] != logits[0]) return 0; /* a NaN first stays the answer of the scan */
    float lane[16];
    for (int k = 0; k < 16; k++) lane[k] = logits[0];
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) lane[k] = logits[i + k] > lane[k] ? logits[i + k] : lane[k];
    float m = lane[0];
    for (int k = 1; k < 16; k++) m = lane[k] > m ? lane[k] : m;
    for (; i < n; i++) m = logits[i] > m ? logits[i] : m;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        int any = 0;
        for (int k = 0; k < 16; k++) any |= logits[j + k] == m;
        if (any) break;
    }
    for (; j < n; j++)
        if (logits[j] == m) return (int32_t)j;
    return 0; /* not reached: m is one of the values */
}

double dsv3_rand_uniform(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- top-p without top-k: the prefix of the candidate order (logit descending, ties by lower id) that
 * first holds top_p of the mass, found without sorting the vocabulary. A histogram of the weights over
 * 4096 buckets of the logit's order-preserving bits says which buckets hold that mass (with a margin of
 * 1e-9); the ids of those buckets, gathered in id order, are the first m of the candidate order, sorted
 * by a stable radix sort of their keys (ties keep the id order), and the cut is found by the same
 * running sum as before. Same candidates, weights and sums, in the same order, as sorting everything:
 * the growing quickselect + qsort it replaces took 0.16-1.3 ms per token over 8192 ids and 3.8 ms over
 * 129,280 (temperature 0.8, top-p 0.95). */
#define TOPP_BUCKETS 4096
#define TOPP_SHIFT 20 /* 32-bit key >> 20: 4096 buckets */

typedef struct {
    double mass[TOPP_BUCKETS];
    int64_t cnt[TOPP_BUCKETS];
    float *w;           /* [cap] weight of each id */
    uint32_t *kid;      /* [cap] logit_key of each id */
    uint32_t *key, *k2; /* [cap] sort keys (descending logit order as ascending keys) */
    int32_t *id, *i2;   /* [cap] ids */
} topp_work;

static void *topp_alloc(int64_t cap) {
    const size_t n = (size_t)(cap > 0 ? cap : 1);
    topp_work *t = malloc(sizeof(topp_work) + n * (sizeof(float) + 3 * sizeof(uint32_t) + 2 * sizeof(int32_t)));
    if (!t) return NULL;
    t->w = (float *)(t + 1);
    t->kid = (uint32_t *)(t->w + n);
    t->key = t->kid + n;
    t->k2 = t->key + n;
    t->id = (int32_t *)(t->k2 + n);
    t->i2 = t->id + n;
    return t;
}

/* Order-preserving key of a logit: a larger value, a larger key; -0 and +0 alike (as `>` and `==` treat
 * them: f + 0 turns -0 into +0). Branch-free (one call per id). */
static inline uint32_t logit_key(float f) {
    const float g = f + 0.0f;
    uint32_t u;
    memcpy(&u, &g, sizeof u);
    return u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u);
}

/* Stable LSD radix sort of key[0..n) ascending with id alongside (8-bit digits; digits that every key
 * shares are skipped). The result is in key / id (k2 / i2: scratch). */
static void radix_sort(uint32_t *key, int32_t *id, uint32_t *k2, int32_t *i2, int64_t n) {
    for (int shift = 0; shift < 32; shift += 8) {
        int64_t cnt[257] = {0};
        for (int64_t i = 0; i < n; i++) cnt[((key[i] >> shift) & 0xff) + 1]++;
        int trivial = 0;
        for (int d = 1; d <= 256; d++) trivial |= cnt[d] == n;
        if (trivial) continue;
        for (int d = 0; d < 256; d++) cnt[d + 1] += cnt[d];
        for (int64_t i = 0; i < n; i++) {
            const int64_t o = cnt[(key[i] >> shift) & 0xff]++;
            k2[o] = key[i];
            i2[o] = id[i];
        }
        memcpy(key, k2, sizeof(uint32_t) * (size_t)n);
        memcpy(id, i2, sizeof(int32_t) * (size_t)n);
    }
}

/* The length of the shortest prefix of w[0..n) (weights in candidate order) whose running sum of
 * w[i] / sum reaches top_p; 0 if rounding keeps it below. */
static int64_t prefix_cut(const float *w, int64_t n, double sum, float top_p) {
    double cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += w[i] / sum;
        if (cum >= top_p) return i + 1;
    }
    return 0;
}

/* s->prob[0..n) holds the weights of ids 0..n-1 (sum: their sum in id order). Leaves in s->idx /
 * s->prob the cut prefix of the candidate order (or all n ids sorted, if rounding never reaches top_p)
 * and returns its length. */
static int64_t top_p_prefix(dsv3_sampler *s, const float *logits, int64_t n, double sum) {
    topp_work *t = s->topp;
    memcpy(t->w, s->prob, sizeof(float) * (size_t)n);
    memset(t->mass, 0, sizeof t->mass);
    memset(t->cnt, 0, sizeof t->cnt);
    for (int64_t i = 0; i < n; i++) t->kid[i] = logit_key(logits[i]);
    for (int64_t i = 0; i < n; i++) {
        const uint32_t b = t->kid[i] >> TOPP_SHIFT;
        t->mass[b] += t->w[i];
        t->cnt[b]++;
    }
    /* the highest buckets that hold top_p of the mass, with a margin for the other summation order */
    int64_t B = TOPP_BUCKETS;
    double acc = 0;
    while (B > 0) {
        acc += t->mass[--B];
        if (acc / sum >= (double)s->p.top_p + 1e-9) break;
    }
    for (;;) {
        int64_t m = 0;
        const uint32_t kmin = (uint32_t)B << TOPP_SHIFT;
        for (int64_t i = 0; i < n; i++)
            if (t->kid[i] >= kmin) t->key[m] = ~t->kid[i], t->id[m++] = (int32_t)i;
        radix_sort(t->key, t->id, t->k2, t->i2, m);
        for (int64_t i = 0; i < m; i++) {
            s->idx[i] = t->id[i];
            s->prob[i] = t->w[t->id[i]];
        }
        const int64_t cut = prefix_cut(s->prob, m, sum, s->p.top_p);
        if (cut || B == 0) return cut ? cut : m; /* no cut: m == n, all ids sorted */
        while (B > 0 && !t->cnt[--B]) {} /* one more non-empty bucket */
    }
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
    s->topp = NULL; /* the top-p buffers: made when first needed (candidates) */
    if (!s->prob || !s->idx) {
        dsv3_sampler_free(s);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for the sampler");
    }
    return DSV3_OK;
}

void dsv3_sampler_free(dsv3_sampler *s) {
    free(s->prob);
    free(s->idx);
    free(s->topp);
    s->prob = NULL;
    s->idx = NULL;
    s->topp = NULL;
}

static _Thread_local const float *g_sort_keys; /* qsort has no context argument; samplers run in parallel (server) */

/* The candidate order: logit descending, ties by lower id (a total order). */
static inline int before(const float *l, int32_t i, int32_t j) { return l[i] > l[j] || (l[i] == l[j] && i < j); }
static int by_logit_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    return before(g_sort_keys, i, j) ? -1 : before(g_sort_keys, j, i) ? 1 : 0;
}

/* Partial selection (quickselect): reorders idx[0..n) so that idx[0..k) are the
 * k first ids in the candidate order (unsorted among themselves). O(n) on average;
 * median-of-three pivots. */
static void select_first_k(int32_t *idx, int64_t n, int64_t k, const float *l) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int32_t a = idx[lo], b = idx[mid], c = idx[hi], piv;
        if (before(l, a, b)) piv = before(l, b, c) ? b : before(l, a, c) ? c : a;
        else piv = before(l, a, c) ? a : before(l, b, c) ? c : b;
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (before(l, idx[i], piv)) i++;
            while (before(l, piv, idx[j])) j--;
            if (i <= j) {
                int32_t t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

/* idx[0..k) = the k first ids of [0, n) in the candidate order (unsorted among themselves), for a
 * small k: one pass keeping them in a heap whose root is the last of them, most blocks of 16 logits
 * rejected by a vectorisable compare with the root's logit (quickselect's branchy passes over a 129K
 * vocabulary cost ~100 us; this ~n/16 compares). Ids in ascending order, so an equal logit never
 * enters (the heap's ids are lower). */
static void top_k_heap(int32_t *idx, int64_t n, int64_t k, const float *l) {
    int32_t *h = idx; /* h[0..k): heap, h[0] the last in candidate order */
    for (int64_t i = 0; i < k; i++) { /* sift up */
        int64_t c = i;
        h[c] = (int32_t)i;
        while (c > 0 && before(l, h[(c - 1) / 2], h[c])) {
            int32_t t = h[c]; h[c] = h[(c - 1) / 2]; h[(c - 1) / 2] = t;
            c = (c - 1) / 2;
        }
    }
    int64_t i = k;
    while (i < n) {
        const float thr = l[h[0]];
        if (i + 16 <= n) { /* skip blocks with no logit above the root's */
            int any = 0;
            for (int j = 0; j < 16; j++) any |= l[i + j] > thr;
            if (!any) { i += 16; continue; }
        }
        const int64_t end = i + 16 <= n ? i + 16 : n;
        for (; i < end; i++) {
            if (!(l[i] > l[h[0]])) continue; /* equal: the root's id is lower */
            h[0] = (int32_t)i; /* replace the root, sift down */
            for (int64_t c = 0;;) {
                int64_t a = 2 * c + 1, b = a + 1, m = c;
                if (a < k && before(l, h[m], h[a])) m = a;
                if (b < k && before(l, h[m], h[b])) m = b;
                if (m == c) break;
                int32_t t = h[c]; h[c] = h[m]; h[m] = t;
                c = m;
            }
        }
    }
}

/* idx[0..m) = the first m of idx[0..n) in candidate order, sorted; the rest after them. */
static void first_m_sorted(dsv3_sampler *s, const float *logits, int64_t n, int64_t m) {
    select_first_k(s->idx, n, m, logits);
    g_sort_keys = logits;
    qsort(s->idx, (size_t)m, sizeof(int32_t), by_logit_desc);
}

/* Candidate set of temperature sampling: s->idx[0..n) with unnormalised weights
 * s->prob[0..n) = exp((l - max)/T); returns n, *sum = Σ weights. Top-k keeps the
 * k first ids of the candidate order (logit descending, ties by id), top-p then
 * the smallest prefix of that order holding top_p of the mass. Only what a cut
 * needs is sorted: top-k sorts k ids; top-p sorts a prefix that grows 4x until
 * it holds top_p of the mass; with neither, idx is the whole vocab in id order. */
static int64_t candidates(dsv3_sampler *s, const float *logits, int64_t vocab, double *sum_out) {
    int64_t n = vocab, sorted = 0;
    const int heap = s->p.top_k > 0 && s->p.top_k < n && s->p.top_k <= 1024; /* writes idx[0..k) itself */
    if (!heap)
        for (int64_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
    const float inv_t = 1.0f / s->p.temperature;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        n = s->p.top_k;
        if (heap) {
            top_k_heap(s->idx, vocab, n, logits);
            g_sort_keys = logits;
            qsort(s->idx, (size_t)n, sizeof(int32_t), by_logit_desc);
        } else {
            first_m_sorted(s, logits, vocab, n);
        }
        sorted = n;
    }
    const float mx = sorted ? logits[s->idx[0]] : logits[dsv3_argmax(logits, vocab)];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) * inv_t);
        sum += s->prob[i];
    }
    if (s->p.top_p < 1.0f) {
        if (!sorted && !s->topp) s->topp = topp_alloc(s->cap);
        if (!sorted && !s->topp) { /* out of memory for them: sort everything (the same result) */
            first_m_sorted(s, logits, n, n);
            for (int64_t i = 0; i < n; i++) s->prob[i] = expf((logits[s->idx[i]] - mx) * inv_t);
            sorted = n;
        }
        if (sorted) {
            const int64_t cut = prefix_cut(s->prob, n, sum, s->p.top_p);
            if (cut) n = cut;
        } else {
            n = top_p_prefix(s, logits, n, sum);
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
