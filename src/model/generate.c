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
    const int64_t D = use_mtp < 0 ? 0 : use_mtp > DSV3_MTP_MAX_DRAFTS ? DSV3_MTP_MAX_DRAFTS : use_mtp;
    const int64_t nh = n_prompt > D + 1 ? n_prompt : D + 1; /* rows of hid / next */
    float *logits = malloc(sizeof(float) * (size_t)((D + 1) * V)), *p0 = malloc(sizeof(float) * V),
          *q = malloc(sizeof(float) * (size_t)((D ? D : 1) * V)), *hid = malloc(sizeof(float) * (size_t)(nh * H)),
          *dlog = malloc(sizeof(float) * V), *g = malloc(sizeof(float) * H);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)nh);
    uint8_t *mask = calloc((size_t)n_prompt, 1);
    dsv3_status s = DSV3_OK;
    emitter e = {cb, ctx, eos_id, max_new, st, 0};
    if (!logits || !p0 || !q || !hid || !dlog || !g || !next || !mask) {
        s = dsv3_fail(err, DSV3_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    /* prefill: logits of the last prompt row only; hidden states for MTP */
    double t0 = dsv3_now_s();
    mask[n_prompt - 1] = 1;
    float *plog = malloc(sizeof(float) * V * n_prompt);
    if (!plog) { s = dsv3_fail(err, DSV3_ERR_NOMEM, "generate: out of memory"); goto done; }
    dsv3_batch_item it = {kc, prompt, n_prompt};
    dsv3_forward_out out = {.logits = plog, .logits_mask = mask, .final_hidden = D ? hid : NULL};
    s = dsv3_forward(m, &it, 1, &out, err);
    if (!s) memcpy(logits, plog + (n_prompt - 1) * V, sizeof(float) * V);
    free(plog);
    if (s) goto done;
    int32_t t = dsv3_sample(smp, logits, V);
    st->prefill_s = dsv3_now_s() - t0;
    t0 = dsv3_now_s();
    if (emit(&e, t)) goto finish;
    if (!D) {
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
    if ((s = dsv3_mtp_draft(m, kc, hid, next, n_prompt, dlog, g, err))) goto done;
    const int greedy = !(smp->p.temperature > 0);
    for (;;) {
        /* drafts d_1..d_k after t: d_1 from the MTP logits of the committed rows, each next one from a
         * chained MTP row (its hidden: the previous row's MTP head input); at most what the cache and
         * max_new leave room for. greedy: the argmax (what the speculative-sampling rule reduces to
         * with one-hot distributions, without its passes over the vocabulary) */
        int64_t k = D, room = kc->cap - kc->len - 1, left = max_new - st->generated - 1;
        k = k < room ? k : room;
        k = k < left ? k : left;
        if (k < 0) k = 0;
        int32_t seq[DSV3_MTP_MAX_DRAFTS + 1];
        seq[0] = t;
        const int64_t ml0 = kc->mtp_len;
        for (int64_t j = 0; j < k; j++) {
            if (greedy) {
                seq[j + 1] = dsv3_argmax(dlog, V);
            } else {
                dsv3_sampler_probs(smp, dlog, V, q + j * V);
                seq[j + 1] = dsv3_sample_from(smp, q + j * V, V);
            }
            if (j + 1 < k && (s = dsv3_mtp_draft(m, kc, g, &seq[j + 1], 1, dlog, g, err))) goto done;
        }
        dsv3_kv_cache_truncate(kc, kc->len, ml0); /* the chained rows: redone from the main model's hiddens */
        /* verify: main model on [t, d_1..d_k] at positions len..len+k; row j predicts the token after seq[j] */
        const int64_t base = kc->len;
        dsv3_batch_item step = {kc, seq, k + 1};
        dsv3_forward_out ov = {.logits = logits, .final_hidden = hid};
        if ((s = dsv3_forward(m, &step, 1, &ov, err))) goto done;
        st->mtp_drafted += k;
        /* accept d_1.. until the first rejection; tn: the replacement of the rejected one, or the bonus */
        int64_t acc = 0;
        int32_t tn = -1;
        for (; acc < k; acc++) {
            const float *lr = logits + acc * V;
            const int32_t d = seq[acc + 1];
            if (greedy) {
                const int32_t a = dsv3_argmax(lr, V);
                if (a != d) { tn = a; break; }
            } else {
                const float *qa = q + acc * V;
                dsv3_sampler_probs(smp, lr, V, p0);
                if (dsv3_rand_uniform(&smp->rng) * qa[d] < p0[d]) continue; /* accept with min(1, p(d)/q(d)) */
                for (int64_t v = 0; v < V; v++) p0[v] = p0[v] > qa[v] ? p0[v] - qa[v] : 0.0f; /* resample max(p-q, 0) */
                tn = dsv3_sample_from(smp, p0, V);
                break;
            }
        }
        if (acc == k) {
            if (greedy) tn = dsv3_argmax(logits + k * V, V);
            else {
                dsv3_sampler_probs(smp, logits + k * V, V, p0);
                tn = dsv3_sample_from(smp, p0, V);
            }
        }
        st->mtp_accepted += acc;
        if (acc < k) dsv3_kv_cache_truncate(kc, base + 1 + acc, -1); /* drop the rejected drafts' entries */
        for (int64_t j = 1; j <= acc; j++)
            if (emit(&e, seq[j])) goto finish;
        if (emit(&e, tn)) goto finish;
        /* MTP rows of the committed positions: (h of seq[j], the token after it) */
        for (int64_t j = 0; j < acc; j++) next[j] = seq[j + 1];
        next[acc] = tn;
        if ((s = dsv3_mtp_draft(m, kc, hid, next, acc + 1, dlog, g, err))) goto done;
        t = tn;
    }
finish:
    st->decode_s = dsv3_now_s() - t0;
done:
    free(logits); free(p0); free(q); free(hid); free(dlog); free(g); free(next); free(mask);
    return s;
}
