/* Token generation over the compressed KV cache, with optional MTP
 * speculative decoding (spec §4.3). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsv3/clock.h"
#include "dsv3/sampling.h"
#include "model/model_internal.h"

typedef struct {
    dsv3_token_cb cb;
    void *ctx;
    int32_t eos;
    int64_t max_new;
    dsv3_gen_stats *st;
    int done;
} emitter;

/* Commits one token; returns 1 when generation must stop. */
static int emit(emitter *e, int32_t tok) {
    e->st->generated++;
    if ((e->cb && e->cb(tok, e->ctx)) || (e->eos >= 0 && tok == e->eos) || e->st->generated >= e->max_new) e->done = 1;
    return e->done;
}

dsv3_status dsv3_generate(dsv3_model *m, dsv3_kv_cache *kc, const int32_t *prompt, int64_t n_prompt, int64_t max_new,
                          dsv3_sampler *smp, int use_mtp, int32_t eos_id, dsv3_token_cb cb, void *ctx,
                          dsv3_gen_stats *stats, dsv3_error *err) {
    const dsv3_config *c = &m->cfg;
    const int64_t V = c->vocab_size, H = c->hidden_size;
    dsv3_gen_stats local;
    dsv3_gen_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    st->prompt_tokens = n_prompt;
    if (n_prompt < 1) return dsv3_fail(err, DSV3_ERR_INVALID, "generate: empty prompt");
    if (max_new < 1) return DSV3_OK;
    if (kc->len != 0 || kc->mtp_len != 0) return dsv3_fail(err, DSV3_ERR_INVALID, "generate: the KV cache must be empty");
    if (n_prompt + max_new + 1 > kc->cap)
        return dsv3_fail(err, DSV3_ERR_INVALID, "generate: %lld prompt + %lld new tokens exceed the KV cache (%lld)",
                         (long long)n_prompt, (long long)max_new, (long long)kc->cap);
    if (use_mtp && !m->has_mtp) return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "generate: this model has no MTP layer");
    float *logits = malloc(sizeof(float) * 2 * V), *p0 = malloc(sizeof(float) * V), *q = malloc(sizeof(float) * V),
          *hid = malloc(sizeof(float) * (n_prompt > 2 ? n_prompt : 2) * H);
    int32_t *next = malloc(sizeof(int32_t) * (n_prompt > 2 ? n_prompt : 2));
    uint8_t *mask = calloc((size_t)n_prompt, 1);
    dsv3_status s = DSV3_OK;
    emitter e = {cb, ctx, eos_id, max_new, st, 0};
    if (!logits || !p0 || !q || !hid || !next || !mask) {
        s = dsv3_fail(err, DSV3_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    /* prefill: logits of the last prompt row only; hidden states for MTP */
    double t0 = dsv3_now_s();
    mask[n_prompt - 1] = 1;
    float *plog = malloc(sizeof(float) * V * n_prompt);
    if (!plog) { s = dsv3_fail(err, DSV3_ERR_NOMEM, "generate: out of memory"); goto done; }
    dsv3_batch_item it = {kc, prompt, n_prompt};
    dsv3_forward_out out = {.logits = plog, .logits_mask = mask, .final_hidden = use_mtp ? hid : NULL};
    s = dsv3_forward(m, &it, 1, &out, err);
    if (!s) memcpy(logits, plog + (n_prompt - 1) * V, sizeof(float) * V);
    free(plog);
    if (s) goto done;
    int32_t t = dsv3_sample(smp, logits, V);
    st->prefill_s = dsv3_now_s() - t0;
    t0 = dsv3_now_s();
    if (emit(&e, t)) goto finish;
    if (!use_mtp) {
        for (;;) {
            dsv3_batch_item step = {kc, &t, 1};
            dsv3_forward_out o1 = {.logits = logits};
            if ((s = dsv3_forward(m, &step, 1, &o1, err))) goto done;
            t = dsv3_sample(smp, logits, V);
            if (emit(&e, t)) goto finish;
        }
    }
    /* MTP over the prompt: rows (h_i, t_{i+1}), the last one with the sampled t (spec §4.3) */
    for (int64_t i = 0; i + 1 < n_prompt; i++) next[i] = prompt[i + 1];
    next[n_prompt - 1] = t;
    if ((s = dsv3_mtp_forward_last(m, kc, hid, next, n_prompt, logits, err))) goto done;
    const int greedy = !(smp->p.temperature > 0);
    for (;;) {
        /* greedy: the draft is the argmax, accepted iff the main model's argmax is the same (what the
         * speculative-sampling rule reduces to with one-hot distributions, without its passes over the vocab) */
        int32_t d;
        if (greedy) d = dsv3_argmax(logits, V);
        else {
            dsv3_sampler_probs(smp, logits, V, q);
            d = dsv3_sample_from(smp, q, V);
        }
        /* verify: main model on [t, d] at positions len, len+1 */
        int32_t pair[2] = {t, d};
        int64_t base = kc->len;
        dsv3_batch_item step = {kc, pair, 2};
        dsv3_forward_out o2 = {.logits = logits, .final_hidden = hid};
        if ((s = dsv3_forward(m, &step, 1, &o2, err))) goto done;
        st->mtp_drafted++;
        /* accepted: d, then the token after it (logits row 1); rejected: the replacement for d */
        int accepted;
        int32_t tn;
        if (greedy) {
            const int32_t t1 = dsv3_argmax(logits, V);
            accepted = t1 == d;
            tn = accepted ? dsv3_argmax(logits + V, V) : t1;
        } else {
            dsv3_sampler_probs(smp, logits, V, p0);
            /* accept with probability min(1, p(d)/q(d)) */
            accepted = dsv3_rand_uniform(&smp->rng) * q[d] < p0[d];
            if (accepted) {
                dsv3_sampler_probs(smp, logits + V, V, p0);
            } else {
                /* resample from max(p − q, 0) */
                for (int64_t v = 0; v < V; v++) p0[v] = p0[v] > q[v] ? p0[v] - q[v] : 0.0f;
            }
            tn = dsv3_sample_from(smp, p0, V);
        }
        if (accepted) {
            st->mtp_accepted++;
            if (emit(&e, d)) goto finish;
            next[0] = d;
            next[1] = tn;
        } else {
            dsv3_kv_cache_truncate(kc, base + 1, -1); /* drop the draft's cache entry */
            next[0] = tn;
        }
        if (emit(&e, tn)) goto finish;
        if ((s = dsv3_mtp_forward_last(m, kc, hid, next, accepted ? 2 : 1, logits, err))) goto done;
        t = tn;
    }
finish:
    st->decode_s = dsv3_now_s() - t0;
done:
    free(logits); free(p0); free(q); free(hid); free(next); free(mask);
    return s;
}
