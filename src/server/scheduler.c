/* Continuous-batching scheduler. One thread owns the model; per step it
 * gathers every running request into a single dsv3_forward call (one decode
 * token each, plus prefill chunks of new requests within the step's token
 * budget), samples each request with its own sampler, and streams text out
 * through the job's buffer. KV caches come from a fixed budget accounted in
 * blocks of block_tokens; a request reserves ceil((prompt + max_tokens) /
 * block) blocks when admitted and returns them when it leaves.
 *
 * Job life cycle: submitted -> waiting (FIFO, bounded by max_queue) ->
 * admitted (blocks reserved) -> running (prefill chunks, then decode) ->
 * finished (stop / length / error / cancelled; KV freed at once). */
#define _GNU_SOURCE /* memmem */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/server_internal.h"

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* -------------------------------------------------------------------- jobs */

srv_job *srv_job_new(void) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->t_submit = srv_now();
    return j;
}

void srv_job_ref(srv_job *j) { __atomic_add_fetch(&j->refs, 1, __ATOMIC_ACQ_REL); }

void srv_job_unref(srv_job *j) {
    if (!j || __atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    dsv3_buf_free(&j->text);
    dsv3_buf_free(&j->hold);
    free(j->ids);
    dsv3_kv_cache_free(j->kv);
    if (j->have_smp) dsv3_sampler_free(&j->smp);
    if (j->have_ts) dsv3_tok_stream_free(&j->ts);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void srv_job_cancel(srv_job *j) { __atomic_store_n(&j->cancelled, 1, __ATOMIC_RELEASE); }

static int job_cancelled(srv_job *j) { return __atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE); }

/* Publishes text / an id / the end to the HTTP side. */
static void job_publish(srv_job *j, const char *text, size_t n, const int32_t *id, int finish, const char *error) {
    pthread_mutex_lock(&j->mu);
    int bad = 0;
    if (n) bad |= dsv3_buf_add(&j->text, text, n);
    if (id) {
        if (j->n_ids == j->cap_ids) {
            int64_t nc = j->cap_ids ? 2 * j->cap_ids : 64;
            int32_t *np = realloc(j->ids, sizeof(int32_t) * nc);
            if (np) { j->ids = np; j->cap_ids = nc; }
        }
        if (j->n_ids < j->cap_ids) j->ids[j->n_ids++] = *id;
        else bad = 1;
    }
    if (bad && !finish) { finish = SRV_FINISH_ERROR; error = "out of memory"; }
    if (finish && !j->finish) {
        j->finish = finish;
        if (error) {
            size_t l = strnlen(error, sizeof j->error - 1);
            memcpy(j->error, error, l);
            j->error[l] = 0;
        }
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Runs new text through the stop strings: publishes what is certainly not
 * part of a stop string, holds back a possible stop-string prefix. Returns 1
 * when a stop string matched (text up to it is published). */
static int job_text(srv_job *j, const char *piece, size_t n, int final) {
    dsv3_buf *h = &j->hold;
    if (dsv3_buf_add(h, piece, n)) { job_publish(j, NULL, 0, NULL, SRV_FINISH_ERROR, "out of memory"); return 1; }
    size_t best = (size_t)-1, keep = 0;
    for (int i = 0; i < j->n_stop; i++) {
        const char *hit = h->n ? memmem(h->p, h->n, j->stop[i], j->stop_len[i]) : NULL;
        if (hit && (size_t)(hit - h->p) < best) best = (size_t)(hit - h->p);
        size_t k = h->n ? srv_partial_suffix(h->p, h->n, j->stop[i], j->stop_len[i]) : 0;
        if (k > keep) keep = k;
    }
    if (best != (size_t)-1) {
        job_publish(j, h->p, best, NULL, 0, NULL);
        h->n = 0;
        return 1;
    }
    if (final) keep = 0;
    if (h->n > keep) {
        job_publish(j, h->p, h->n - keep, NULL, 0, NULL);
        memmove(h->p, h->p + h->n - keep, keep);
        h->n = keep;
    }
    return 0;
}

/* Flushes the detokenizer and the held-back text (end of generation). */
static int job_flush(srv_job *j) {
    const char *piece = "";
    size_t plen = 0;
    if (j->have_ts) dsv3_tok_stream_flush(&j->ts, &piece, &plen);
    return job_text(j, piece, plen, 1);
}

/* Handles one sampled token; returns the SRV_FINISH_* code once the job is
 * done (published by end_job after the KV is released), else 0. */
static int job_token(srv_sched *s, srv_job *j, int32_t t) {
    j->n_gen++;
    job_publish(j, NULL, 0, &t, 0, NULL);
    if (!j->ignore_eos && t == s->eos_id) {
        job_flush(j);
        return SRV_FINISH_STOP;
    }
    /* ids the tokenizer does not know (padding rows of a larger model vocab) add no text */
    if (j->have_ts && dsv3_tokenizer_token_bytes(s->tok, t, NULL)) {
        const char *piece;
        size_t plen;
        dsv3_error err = {0};
        if (dsv3_tok_stream_push(&j->ts, t, &piece, &plen, &err)) {
            job_publish(j, NULL, 0, NULL, SRV_FINISH_ERROR, err.msg);
            return SRV_FINISH_ERROR;
        }
        if (job_text(j, piece, plen, 0)) return SRV_FINISH_STOP;
    }
    if (j->n_gen >= j->max_tokens) return job_flush(j) ? SRV_FINISH_STOP : SRV_FINISH_LENGTH;
    return 0;
}

/* -------------------------------------------------------------- admission */

static int64_t blocks_for(const srv_sched *s, int64_t tokens) { return (tokens + s->block_tokens - 1) / s->block_tokens; }

int64_t srv_sched_max_request_tokens(const srv_sched *s) { return s->blocks_total * s->block_tokens; }

/* Moves waiting jobs to the admitted list while the batch and the KV
 * budget allow (strict FIFO, so large requests are not starved). Caller
 * holds s->mu. Cancelled waiting jobs are dropped here. */
static void admit_locked(srv_sched *s) {
    while (s->wait_head) {
        srv_job *j = s->wait_head;
        if (job_cancelled(j)) {
            s->wait_head = j->next;
            s->n_wait--;
            s->cnt.cancelled++;
            job_publish(j, NULL, 0, NULL, SRV_FINISH_CANCELLED, NULL);
            srv_job_unref(j);
            continue;
        }
        int64_t need = blocks_for(s, j->kv_tokens);
        if (s->n_active >= s->max_batch || s->blocks_used + need > s->blocks_total) break;
        s->wait_head = j->next;
        s->n_wait--;
        j->next = NULL;
        j->kv_blocks = need;
        s->blocks_used += need;
        s->n_active++;
        if (s->admit_tail) s->admit_tail->next = j;
        else s->admit_head = j;
        s->admit_tail = j;
    }
    if (!s->wait_head) s->wait_tail = NULL;
}

/* Removes cancelled jobs from anywhere in the wait queue (their clients are
 * gone; they should not hold queue places). Caller holds s->mu. */
static void drop_cancelled_waiting_locked(srv_sched *s) {
    srv_job **pp = &s->wait_head, *prev = NULL;
    while (*pp) {
        srv_job *j = *pp;
        if (!job_cancelled(j)) { prev = j; pp = &j->next; continue; }
        *pp = j->next;
        s->n_wait--;
        s->cnt.cancelled++;
        job_publish(j, NULL, 0, NULL, SRV_FINISH_CANCELLED, NULL);
        srv_job_unref(j);
    }
    s->wait_tail = prev;
}

int srv_sched_submit(srv_sched *s, srv_job *j, srv_error *e, int *retry_after) {
    int64_t need = blocks_for(s, j->kv_tokens);
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return srv_fail(e, 503, NULL, "shutting_down", "the server is shutting down");
    }
    if (need > s->blocks_total) {
        pthread_mutex_unlock(&s->mu);
        return srv_fail(e, 400, "max_tokens", "kv_budget_exceeded",
                        "prompt + max_tokens = %lld tokens exceed the KV-cache budget of %lld tokens per request",
                        (long long)j->kv_tokens, (long long)srv_sched_max_request_tokens(s));
    }
    int fits_now = !s->wait_head && s->n_active < s->max_batch && s->blocks_used + need <= s->blocks_total;
    if (!fits_now && s->n_wait >= s->max_queue) {
        s->cnt.rejected_queue++;
        /* expected wait: the queue drains max_batch jobs per average job time */
        double est = s->avg_job_s * (1.0 + (double)s->n_wait / (s->max_batch > 0 ? s->max_batch : 1));
        *retry_after = est < 1 ? 1 : est > 60 ? 60 : (int)(est + 0.999);
        pthread_mutex_unlock(&s->mu);
        return srv_fail(e, 429, NULL, "queue_full", "the server is busy: %d requests are waiting; retry later", s->max_queue);
    }
    srv_job_ref(j);
    j->next = NULL;
    if (s->wait_tail) s->wait_tail->next = j;
    else s->wait_head = j;
    s->wait_tail = j;
    s->n_wait++;
    admit_locked(s);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Removes a running job: frees its KV at once, returns its blocks, admits
 * waiting jobs, drops the scheduler's reference. */
static void end_job(srv_sched *s, int idx, int finish, const char *error) {
    srv_job *j = s->run[idx];
    dsv3_kv_cache_free(j->kv);
    j->kv = NULL;
    double dt = srv_now() - j->t_submit;
    pthread_mutex_lock(&s->mu);
    s->blocks_used -= j->kv_blocks;
    s->n_active--;
    if (finish == SRV_FINISH_CANCELLED || job_cancelled(j)) s->cnt.cancelled++;
    s->avg_job_s = s->avg_job_s > 0 ? 0.8 * s->avg_job_s + 0.2 * dt : dt;
    admit_locked(s);
    pthread_mutex_unlock(&s->mu);
    /* published last, so a client that sees the end also sees the KV freed */
    if (finish) job_publish(j, NULL, 0, NULL, finish, error);
    /* keep admission order (prefill goes oldest first) */
    memmove(s->run + idx, s->run + idx + 1, sizeof *s->run * (size_t)(s->n_run - idx - 1));
    s->n_run--;
    srv_job_unref(j);
}

/* KV cache, sampler and detokenizer of a newly admitted job. */
static int start_job(srv_sched *s, srv_job *j) {
    dsv3_error err = {0};
    if (dsv3_kv_cache_new(s->m, j->kv_tokens, &j->kv, &err) || dsv3_sampler_init(&j->smp, &j->sp, s->vocab, &err)) {
        job_publish(j, NULL, 0, NULL, SRV_FINISH_ERROR, err.msg);
        return -1;
    }
    j->have_smp = 1;
    if (s->tok) {
        dsv3_tok_stream_init(&j->ts, s->tok, DSV3_TOK_SKIP_SPECIAL);
        j->have_ts = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------- step */

static void count_rate(srv_sched *s, int64_t tokens) {
    int64_t sec = (int64_t)srv_now();
    int k = (int)(sec % 16);
    if (s->rate_sec[k] != sec) { s->rate_sec[k] = sec; s->rate_tok[k] = 0; }
    s->rate_tok[k] += tokens;
}

/* One batched forward over all running jobs. */
static void step(srv_sched *s) {
    int n_items = 0;
    int64_t rows = 0, budget = s->step_tokens;
    /* decode tokens first: every job past its prompt advances by one */
    for (int i = 0; i < s->n_run; i++) {
        srv_job *j = s->run[i];
        if (j->n_fed < j->n_prompt) continue;
        s->items[n_items] = (dsv3_batch_item){j->kv, &j->last, 1};
        s->item_job[n_items] = j;
        s->item_rows[n_items] = 1;
        s->mask[rows++] = 1;
        n_items++;
        budget--;
    }
    if (budget < 1) budget = 1; /* prefill always makes progress */
    for (int i = 0; i < s->n_run && budget > 0; i++) {
        srv_job *j = s->run[i];
        if (j->n_fed >= j->n_prompt) continue;
        int64_t chunk = j->n_prompt - j->n_fed;
        if (chunk > budget) chunk = budget;
        s->items[n_items] = (dsv3_batch_item){j->kv, j->prompt + j->n_fed, chunk};
        s->item_job[n_items] = j;
        s->item_rows[n_items] = chunk;
        memset(s->mask + rows, 0, (size_t)chunk);
        s->mask[rows + chunk - 1] = j->n_fed + chunk == j->n_prompt; /* logits only for the prompt's last row */
        rows += chunk;
        n_items++;
        budget -= chunk;
    }
    double t0 = srv_now();
    dsv3_error err = {0};
    dsv3_forward_out out = {.logits = s->logits, .logits_mask = s->mask};
    if (dsv3_forward(s->m, s->items, n_items, &out, &err)) {
        char msg[sizeof err.msg + 32];
        snprintf(msg, sizeof msg, "forward failed: %s", err.msg);
        for (int i = 0; i < n_items; i++)
            for (int k = 0; k < s->n_run; k++)
                if (s->run[k] == s->item_job[i]) { end_job(s, k, SRV_FINISH_ERROR, msg); break; }
        return;
    }
    /* The items that sample (a decode row, or the last chunk of a prompt): first the row each samples
     * from, then their tokens in parallel. Each job samples with its own sampler and RNG, so the tokens
     * do not depend on the thread count (one row after another left the other threads waiting: ~0.06 ms
     * per row over 8192 ids, 1 ms over 129,280). item_tok: that row, then the token; -1: none. */
    int64_t row = 0;
    for (int i = 0; i < n_items; i++) {
        const srv_job *j = s->item_job[i];
        row += s->item_rows[i];
        s->item_tok[i] = j->n_fed + s->item_rows[i] >= j->n_prompt ? (int32_t)(row - 1) : -1;
    }
#pragma omp parallel for schedule(dynamic, 1) if (n_items > 1)
    for (int i = 0; i < n_items; i++)
        if (s->item_tok[i] >= 0)
            s->item_tok[i] = dsv3_sample(&s->item_job[i]->smp, s->logits + (int64_t)s->item_tok[i] * s->vocab, s->vocab);
    int64_t sampled = 0, prefilled = 0;
    for (int i = 0; i < n_items; i++) {
        srv_job *j = s->item_job[i];
        if (j->n_fed < j->n_prompt) {
            j->n_fed += s->item_rows[i];
            prefilled += s->item_rows[i];
        }
        const int32_t t = s->item_tok[i];
        if (t < 0) continue;
        sampled++;
        if (j->n_gen == 0) j->t_first = srv_now();
        j->last = t;
        int fin = job_token(s, j, t);
        if (fin || job_cancelled(j))
            for (int k = 0; k < s->n_run; k++)
                if (s->run[k] == j) { end_job(s, k, fin ? fin : SRV_FINISH_CANCELLED, NULL); break; }
    }
    pthread_mutex_lock(&s->mu);
    s->cnt.steps++;
    s->cnt.prompt_tokens += (uint64_t)prefilled;
    s->cnt.gen_tokens += (uint64_t)sampled;
    s->cnt.busy_s += srv_now() - t0;
    count_rate(s, sampled);
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg) {
    srv_sched *s = arg;
    if (s->threads > 0) omp_set_num_threads(s->threads);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && (s->paused || (s->n_run == 0 && !s->admit_head))) pthread_cond_wait(&s->cv, &s->mu);
        int64_t delay = s->step_delay_us;
        if (s->stop) { pthread_mutex_unlock(&s->mu); break; }
        drop_cancelled_waiting_locked(s);
        admit_locked(s);
        srv_job *adm = s->admit_head;
        s->admit_head = s->admit_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        while (adm) {
            srv_job *j = adm;
            adm = j->next;
            j->next = NULL;
            s->run[s->n_run++] = j; /* n_active <= max_batch bounds n_run */
            if (start_job(s, j)) end_job(s, s->n_run - 1, SRV_FINISH_ERROR, NULL);
        }
        for (int i = s->n_run - 1; i >= 0; i--)
            if (job_cancelled(s->run[i])) end_job(s, i, SRV_FINISH_CANCELLED, NULL);
        if (s->n_run) step(s);
        if (delay > 0 && s->n_run) usleep((useconds_t)delay);
    }
    /* shutting down: everything still here ends with an error */
    while (s->n_run) end_job(s, s->n_run - 1, SRV_FINISH_ERROR, "the server is shutting down");
    pthread_mutex_lock(&s->mu);
    srv_job *lists[2] = {s->admit_head, s->wait_head};
    s->admit_head = s->admit_tail = s->wait_head = s->wait_tail = NULL;
    s->n_wait = 0;
    s->n_active = 0;
    s->blocks_used = 0;
    pthread_mutex_unlock(&s->mu);
    for (int l = 0; l < 2; l++)
        while (lists[l]) {
            srv_job *j = lists[l];
            lists[l] = j->next;
            job_publish(j, NULL, 0, NULL, SRV_FINISH_ERROR, "the server is shutting down");
            srv_job_unref(j);
        }
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

int srv_sched_init(srv_sched *s, dsv3_model *m, const dsv3_tokenizer *tok, int max_batch, int max_queue,
                   int64_t kv_budget_bytes, int64_t step_tokens, dsv3_error *err) {
    memset(s, 0, sizeof *s);
    const dsv3_config *c = dsv3_model_config(m);
    s->m = m;
    s->tok = tok;
    s->vocab = c->vocab_size;
    s->eos_id = c->eos_token_id >= 0 ? c->eos_token_id : tok ? dsv3_tokenizer_eos_id(tok) : -1;
    s->max_batch = max_batch;
    s->max_queue = max_queue;
    s->step_tokens = step_tokens;
    s->block_tokens = 16;
    int64_t block_bytes = s->block_tokens * dsv3_kv_cache_bytes_per_token(m);
    s->blocks_total = kv_budget_bytes / block_bytes;
    if (max_batch < 1 || max_batch > 4096 || max_queue < 0 || step_tokens < 1 || step_tokens > (1 << 20))
        return dsv3_fail(err, DSV3_ERR_INVALID, "scheduler: bad limits (max_batch %d, max_queue %d, step_tokens %lld)",
                         max_batch, max_queue, (long long)step_tokens);
    if (s->blocks_total < 1)
        return dsv3_fail(err, DSV3_ERR_INVALID, "the KV budget (%lld bytes) is smaller than one block of %lld tokens (%lld bytes)",
                         (long long)kv_budget_bytes, (long long)s->block_tokens, (long long)block_bytes);
    /* rows of one step: the decode tokens plus the prefill budget. Only the
     * masked rows of the logits buffer are written, so most of it is never
     * touched (and never committed by the OS). */
    s->logits_rows = (size_t)(step_tokens + max_batch + 1);
    s->logits = malloc(sizeof(float) * s->logits_rows * (size_t)s->vocab);
    s->mask = calloc(s->logits_rows, 1);
    s->run = calloc((size_t)max_batch, sizeof *s->run);
    s->items = calloc((size_t)max_batch, sizeof *s->items);
    s->item_rows = calloc((size_t)max_batch, sizeof *s->item_rows);
    s->item_job = calloc((size_t)max_batch, sizeof *s->item_job);
    s->item_tok = calloc((size_t)max_batch, sizeof *s->item_tok);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->logits || !s->mask || !s->run || !s->items || !s->item_rows || !s->item_job || !s->item_tok) {
        srv_sched_destroy(s);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for the scheduler");
    }
    return 0;
}

int srv_sched_start(srv_sched *s, dsv3_error *err) {
    if (pthread_create(&s->th, NULL, sched_main, s)) return dsv3_fail(err, DSV3_ERR_IO, "cannot start the scheduler thread");
    s->started = 1;
    return 0;
}

void srv_sched_shutdown(srv_sched *s) {
    if (!s->started) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    s->started = 0;
}

void srv_sched_destroy(srv_sched *s) {
    srv_sched_shutdown(s);
    free(s->logits);
    free(s->mask);
    free(s->run);
    free(s->items);
    free(s->item_rows);
    free(s->item_job);
    free(s->item_tok);
    memset(s->rate_sec, 0, sizeof s->rate_sec);
    s->logits = NULL;
    s->mask = NULL;
    s->run = NULL;
    s->items = NULL;
    s->item_rows = NULL;
    s->item_job = NULL;
    s->item_tok = NULL;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

void srv_sched_pause(srv_sched *s, int on) {
    pthread_mutex_lock(&s->mu);
    s->paused = on;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void srv_sched_stats(srv_sched *s, srv_stats *o) {
    pthread_mutex_lock(&s->mu);
    o->cnt = s->cnt;
    o->n_wait = s->n_wait;
    o->n_active = s->n_active;
    o->blocks_used = s->blocks_used;
    o->blocks_total = s->blocks_total;
    o->block_tokens = s->block_tokens;
    o->kv_bytes_per_token = dsv3_kv_cache_bytes_per_token(s->m);
    int64_t now = (int64_t)srv_now(), tok = 0;
    for (int k = 0; k < 16; k++)
        if (s->rate_sec[k] > now - 10 && s->rate_sec[k] <= now) tok += s->rate_tok[k];
    o->tokens_per_s = tok / 10.0;
    pthread_mutex_unlock(&s->mu);
}

void srv_sched_count_request(srv_sched *s, int ok) {
    pthread_mutex_lock(&s->mu);
    if (ok) s->cnt.requests_ok++;
    else s->cnt.requests_err++;
    pthread_mutex_unlock(&s->mu);
}
