/* Token sampling: greedy, temperature, top-k, top-p (nucleus), seeded RNG. */
#ifndef DSV3_SAMPLING_H
#define DSV3_SAMPLING_H

#include <stdint.h>

#include "dsv3/status.h"

typedef struct {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 = off */
    int64_t top_k;     /* 0 = off */
    uint64_t seed;
} dsv3_sampler_params;

typedef struct dsv3_sampler {
    dsv3_sampler_params p;
    uint64_t rng;
    int64_t cap;
    float *prob;
    int32_t *idx;
    void *topp; /* top-p without top-k: per-id weights, bucket masses, sort buffers (sampling.c) */
} dsv3_sampler;

dsv3_status dsv3_sampler_init(dsv3_sampler *s, const dsv3_sampler_params *p, int64_t vocab, dsv3_error *err);
void dsv3_sampler_free(dsv3_sampler *s);
/* Picks the next token from logits[vocab]. */
int32_t dsv3_sample(dsv3_sampler *s, const float *logits, int64_t vocab);
/* The distribution dsv3_sample draws from, written to probs[vocab] (zeros
 * outside the top-k / top-p set; one-hot argmax when temperature is 0). */
void dsv3_sampler_probs(dsv3_sampler *s, const float *logits, int64_t vocab, float *probs);
/* Draws an index from probs[vocab] (need not be normalised) with the sampler's RNG;
 * the argmax when temperature is 0. */
int32_t dsv3_sample_from(dsv3_sampler *s, const float *probs, int64_t vocab);
/* Index of the largest logit (ties: lowest index). */
int32_t dsv3_argmax(const float *logits, int64_t n);
/* The plain scan dsv3_argmax must agree with (tests). */
int32_t dsv3_argmax_ref(const float *logits, int64_t n);
/* Uniform double in [0, 1) from a xorshift64* state. */
double dsv3_rand_uniform(uint64_t *state);

#endif
