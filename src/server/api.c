/* POST /v1/completions and /v1/chat/completions: request -> prompt ids ->
 * job -> (SSE stream | one JSON response). The HTTP thread of the
 * connection waits on the job's condition variable, checking every 100 ms
 * whether the client is still there; a client that leaves cancels its job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/http_internal.h"

typedef struct {
    dsv3_server *S;
    srv_job *j;
    struct MHD_Connection *c;
    int chat, want_ids, has_tools, include_usage;
    char id[48];
    char *model;
    time_t created;
    int64_t n_prompt;
    uint64_t seed;
    srv_splitter sp;
    dsv3_buf out;          /* SSE bytes not yet handed to MHD */
    size_t off;
    int sent_role, done, ok;
} gen_ctx;

static void gen_free(gen_ctx *g) {
    if (!g) return;
    srv_job_unref(g->j);
    srv_split_free(&g->sp);
    dsv3_buf_free(&g->out);
    free(g->model);
    free(g);
}

/* Waits until the job has new output (or, with need_finish, has finished).
 * -1 if the client disconnected meanwhile. */
static int wait_output(srv_job *j, struct MHD_Connection *c, int need_finish) {
    pthread_mutex_lock(&j->mu);
    while (!j->finish && (need_finish || (!j->text.n && j->n_ids == j->n_taken_ids))) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (j->finish) break;
        pthread_mutex_unlock(&j->mu);
        int gone = srv_client_gone(c);
        pthread_mutex_lock(&j->mu);
        if (gone) { pthread_mutex_unlock(&j->mu); return -1; }
    }
    pthread_mutex_unlock(&j->mu);
    return 0;
}

/* Takes the new text (moved into *text) and ids (as a JSON array if
 * want_ids); returns the finish state. */
static int take_output(gen_ctx *g, dsv3_buf *text, json_t **ids, char *error, size_t error_cap) {
    srv_job *j = g->j;
    pthread_mutex_lock(&j->mu);
    *text = j->text;
    memset(&j->text, 0, sizeof j->text);
    *ids = NULL;
    if (g->want_ids && j->n_ids > j->n_taken_ids) {
        *ids = json_array();
        for (int64_t i = j->n_taken_ids; i < j->n_ids; i++) json_array_append_new(*ids, json_integer(j->ids[i]));
    }
    j->n_taken_ids = j->n_ids;
    int finish = j->finish;
    snprintf(error, error_cap, "%s", j->error);
    pthread_mutex_unlock(&j->mu);
    return finish;
}

static json_t *usage_json(gen_ctx *g) {
    pthread_mutex_lock(&g->j->mu);
    int64_t n = g->j->n_ids;
    pthread_mutex_unlock(&g->j->mu);
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)g->n_prompt, "completion_tokens", (json_int_t)n,
                     "total_tokens", (json_int_t)(g->n_prompt + n));
}

static const char *finish_name(int finish, int tool_calls) {
    if (finish == SRV_FINISH_LENGTH) return "length";
    return tool_calls ? "tool_calls" : "stop";
}

/* The generated tool-call section: parsed calls when the request had tools
 * (NULL if none parse); otherwise it is plain content again. */
static json_t *tool_calls_of(gen_ctx *g, dsv3_buf *content) {
    if (!srv_split_in_tools(&g->sp)) return NULL;
    json_t *calls = g->has_tools ? srv_parse_tool_calls(g->sp.tools.p, g->sp.tools.n, g->seed) : NULL;
    if (!calls) {
        dsv3_buf_adds(content, "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>");
        dsv3_buf_add(content, g->sp.tools.p, g->sp.tools.n);
    }
    return calls;
}

/* ------------------------------------------------------------- streaming */

static void emit(gen_ctx *g, json_t *root) {
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s) dsv3_buf_printf(&g->out, "data: %s\n\n", s);
    free(s);
}

static json_t *chunk(gen_ctx *g) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", g->id, "object", g->chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)g->created, "model", g->model);
}

/* One choice chunk: delta (chat) or text (completions). Steals delta/ids. */
static void emit_choice(gen_ctx *g, json_t *delta, const char *text, size_t n, json_t *ids, const char *finish) {
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    if (g->chat) json_object_set_new(ch, "delta", delta ? delta : json_object());
    else json_object_set_new(ch, "text", srv_json_text(text ? text : "", text ? n : 0));
    json_object_set_new(ch, "logprobs", json_null());
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    if (ids) json_object_set_new(ch, "token_ids", ids);
    json_t *root = chunk(g);
    json_object_set_new(root, "choices", json_pack("[o]", ch));
    emit(g, root);
}

static void stream_produce(gen_ctx *g) {
    dsv3_buf text = {0}, content = {0}, reasoning = {0};
    json_t *ids;
    char error[256];
    int finish = take_output(g, &text, &ids, error, sizeof error);
    if (g->chat) {
        if (!g->sent_role) {
            emit_choice(g, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, 0, NULL, NULL);
            g->sent_role = 1;
        }
        srv_split_feed(&g->sp, text.p ? text.p : "", text.n, finish != 0, &content, &reasoning);
        if (reasoning.n) emit_choice(g, json_pack("{s:o}", "reasoning_content", srv_json_text(reasoning.p, reasoning.n)), NULL, 0, NULL, NULL);
        json_t *calls = finish == SRV_FINISH_STOP || finish == SRV_FINISH_LENGTH ? tool_calls_of(g, &content) : NULL;
        if (content.n || ids) {
            emit_choice(g, json_pack("{s:o}", "content", srv_json_text(content.p ? content.p : "", content.n)), NULL, 0, ids, NULL);
            ids = NULL;
        }
        if (calls) {
            for (size_t i = 0; i < json_array_size(calls); i++)
                json_object_set_new(json_array_get(calls, i), "index", json_integer((json_int_t)i));
            emit_choice(g, json_pack("{s:o}", "tool_calls", calls), NULL, 0, NULL, NULL);
        }
        if (finish == SRV_FINISH_STOP || finish == SRV_FINISH_LENGTH) emit_choice(g, NULL, NULL, 0, NULL, finish_name(finish, calls != NULL));
    } else {
        if (text.n || ids) emit_choice(g, NULL, text.p, text.n, ids, NULL);
        ids = NULL;
        if (finish == SRV_FINISH_STOP || finish == SRV_FINISH_LENGTH) emit_choice(g, NULL, "", 0, NULL, finish_name(finish, 0));
    }
    json_decref(ids);
    if (finish) {
        if (finish == SRV_FINISH_STOP || finish == SRV_FINISH_LENGTH) {
            g->ok = 1;
            if (g->include_usage) {
                json_t *root = chunk(g);
                json_object_set_new(root, "choices", json_array());
                json_object_set_new(root, "usage", usage_json(g));
                emit(g, root);
            }
        } else {
            srv_error e;
            srv_fail(&e, 500, NULL, "generation_failed", "%s", error[0] ? error : "generation was cancelled");
            char *s = srv_error_json(&e);
            if (s) dsv3_buf_printf(&g->out, "data: %s\n\n", s);
            free(s);
        }
        dsv3_buf_adds(&g->out, "data: [DONE]\n\n");
        g->done = 1;
    }
    dsv3_buf_free(&text);
    dsv3_buf_free(&content);
    dsv3_buf_free(&reasoning);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    gen_ctx *g = cls;
    (void)pos;
    for (;;) {
        if (g->off < g->out.n) {
            size_t n = g->out.n - g->off < max ? g->out.n - g->off : max;
            memcpy(buf, g->out.p + g->off, n);
            g->off += n;
            return (ssize_t)n;
        }
        if (g->done) return MHD_CONTENT_READER_END_OF_STREAM;
        g->out.n = g->off = 0;
        if (wait_output(g->j, g->c, 0)) {
            srv_job_cancel(g->j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        stream_produce(g);
    }
}

/* Called when MHD is done with the response (finished, or the client left). */
static void stream_free(void *cls) {
    gen_ctx *g = cls;
    if (!g->done) srv_job_cancel(g->j);
    srv_sched_count_request(&g->S->sched, g->ok);
    gen_free(g);
}

/* --------------------------------------------------------------- complete */

static enum MHD_Result respond_full(gen_ctx *g) {
    dsv3_buf text = {0}, content = {0}, reasoning = {0};
    json_t *ids;
    char error[256];
    int finish = take_output(g, &text, &ids, error, sizeof error);
    srv_sched_count_request(&g->S->sched, finish == SRV_FINISH_STOP || finish == SRV_FINISH_LENGTH);
    if (finish != SRV_FINISH_STOP && finish != SRV_FINISH_LENGTH) {
        json_decref(ids);
        dsv3_buf_free(&text);
        srv_error e;
        srv_fail(&e, 500, NULL, "generation_failed", "%s", error[0] ? error : "generation was cancelled");
        return srv_send_error(g->S, g->c, &e, 0);
    }
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    json_t *calls = NULL;
    if (g->chat) {
        srv_split_feed(&g->sp, text.p ? text.p : "", text.n, 1, &content, &reasoning);
        calls = tool_calls_of(g, &content);
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", calls && !content.n ? json_null() : srv_json_text(content.p ? content.p : "", content.n));
        if (reasoning.n) json_object_set_new(msg, "reasoning_content", srv_json_text(reasoning.p, reasoning.n));
        if (calls) json_object_set_new(msg, "tool_calls", calls);
        json_object_set_new(ch, "message", msg);
    } else {
        json_object_set_new(ch, "text", srv_json_text(text.p ? text.p : "", text.n));
    }
    json_object_set_new(ch, "logprobs", json_null());
    json_object_set_new(ch, "finish_reason", json_string(finish_name(finish, calls != NULL)));
    if (ids) json_object_set_new(ch, "token_ids", ids);
    json_t *root = json_pack("{s:s, s:s, s:I, s:s}", "id", g->id, "object", g->chat ? "chat.completion" : "text_completion",
                             "created", (json_int_t)g->created, "model", g->model);
    json_object_set_new(root, "choices", json_pack("[o]", ch));
    json_object_set_new(root, "usage", usage_json(g));
    dsv3_buf_free(&text);
    dsv3_buf_free(&content);
    dsv3_buf_free(&reasoning);
    return srv_send_json(g->S, g->c, 200, root);
}

/* ---------------------------------------------------------------- prompts */

static int chat_prompt(dsv3_server *S, srv_request *rq, dsv3_ids *ids, srv_error *e) {
    if (!S->tok || !dsv3_tokenizer_has_chat_template(S->tok))
        return srv_fail(e, 400, "messages", "no_chat_template",
                        "this model has no tokenizer with a supported chat template; use /v1/completions");
    size_t n_calls = 0;
    for (size_t i = 0; i < rq->n_msgs; i++) n_calls += rq->msgs[i].n_calls;
    dsv3_chat_message *m = calloc(rq->n_msgs + 1, sizeof *m);
    dsv3_tool_call *tc = calloc(n_calls + 1, sizeof *tc);
    char *tools_text = NULL, *text = NULL;
    size_t len = 0, k = 0, t = 0;
    int rc = -1;
    if (!m || !tc) { srv_fail(e, 500, NULL, NULL, "out of memory"); goto done; }
    for (size_t i = 0; i < rq->n_msgs; i++) {
        const srv_message *sm = &rq->msgs[i];
        dsv3_chat_message *cm = &m[k++];
        cm->role = sm->role;
        cm->content = sm->content;
        if (sm->n_calls) {
            /* the template renders calls only for an assistant turn without content */
            cm->content = NULL;
            cm->tool_calls = tc + t;
            cm->n_tool_calls = sm->n_calls;
            for (size_t c = 0; c < sm->n_calls; c++, t++)
                tc[t] = (dsv3_tool_call){"function", sm->calls[c].name, sm->calls[c].arguments};
        }
    }
    if (rq->tools && rq->tool_choice != SRV_TOOL_NONE) {
        /* every system message is joined into the system prompt by the template */
        tools_text = srv_render_tools(rq->tools, rq->tool_choice, rq->tool_choice_name);
        if (!tools_text) { srv_fail(e, 500, NULL, NULL, "out of memory"); goto done; }
        m[k++] = (dsv3_chat_message){"system", tools_text, NULL, 0};
    }
    dsv3_error err = {0};
    if (dsv3_tokenizer_apply_chat_template(S->tok, m, k, 1, &text, &len, &err)) {
        srv_fail(e, 400, "messages", "invalid_value", "%s", err.msg);
        goto done;
    }
    if (dsv3_tokenizer_encode(S->tok, text, len, 0, ids, &err)) { srv_fail(e, 500, NULL, NULL, "%s", err.msg); goto done; }
    rc = 0;
done:
    free(m);
    free(tc);
    free(tools_text);
    free(text);
    return rc;
}

static int build_prompt(dsv3_server *S, srv_request *rq, dsv3_ids *ids, srv_error *e) {
    const char *param = rq->chat ? "messages" : "prompt";
    if (rq->chat) {
        if (chat_prompt(S, rq, ids, e)) return -1;
    } else if (rq->prompt) {
        if (!S->tok)
            return srv_fail(e, 400, "prompt", "no_tokenizer", "this server has no tokenizer: give 'prompt' as token ids");
        dsv3_error err = {0};
        if (dsv3_tokenizer_encode(S->tok, rq->prompt, rq->prompt_len, DSV3_TOK_ADD_SPECIAL, ids, &err))
            return srv_fail(e, 400, "prompt", "invalid_value", "%s", err.msg);
    } else {
        for (int64_t i = 0; i < rq->n_prompt_ids; i++)
            if (dsv3_ids_push(ids, rq->prompt_ids[i], NULL)) return srv_fail(e, 500, NULL, NULL, "out of memory");
    }
    if (ids->len == 0) return srv_fail(e, 400, param, "invalid_value", "the prompt is empty");
    for (size_t i = 0; i < ids->len; i++)
        if (ids->data[i] < 0 || ids->data[i] >= S->vocab)
            return srv_fail(e, 400, param, "invalid_value", "the tokenizer produced id %d, outside the model's vocabulary (%lld)",
                            ids->data[i], (long long)S->vocab);
    if ((int64_t)ids->len >= S->ctx)
        return srv_fail(e, 400, param, "context_length_exceeded",
                        "the prompt has %zu tokens; the context limit is %lld tokens (including at least one generated token)",
                        ids->len, (long long)S->ctx);
    return 0;
}

/* ------------------------------------------------------------------ entry */

enum MHD_Result srv_api_generate(dsv3_server *S, struct MHD_Connection *c, const char *body, size_t n, int chat) {
    srv_request rq;
    srv_error e;
    dsv3_ids ids = {0};
    srv_job *j = NULL;
    gen_ctx *g = NULL;
    int retry = 0;
    if (srv_request_parse(body, n, chat, &S->lim, &rq, &e)) return srv_send_error(S, c, &e, 0);
    if (build_prompt(S, &rq, &ids, &e)) goto fail;
    if (rq.n_stop && !S->tok) {
        srv_fail(&e, 400, "stop", "no_tokenizer", "stop strings need a tokenizer; this server has none");
        goto fail;
    }
    int64_t np = (int64_t)ids.len, kv_max = srv_sched_max_request_tokens(&S->sched);
    int64_t limit = S->ctx < kv_max ? S->ctx : kv_max;
    if (rq.max_tokens > 0 && np + rq.max_tokens > S->ctx) {
        srv_fail(&e, 400, chat ? "max_completion_tokens" : "max_tokens", "context_length_exceeded",
                 "the context limit is %lld tokens, but the prompt has %lld and max_tokens asks for %lld more",
                 (long long)S->ctx, (long long)np, (long long)rq.max_tokens);
        goto fail;
    }
    int64_t max_tokens = rq.max_tokens > 0 ? rq.max_tokens : limit - np;
    if (rq.max_tokens <= 0 && max_tokens > S->default_max_tokens) max_tokens = S->default_max_tokens;
    if (max_tokens < 1) {
        srv_fail(&e, 400, chat ? "messages" : "prompt", "context_length_exceeded",
                 "the prompt has %lld tokens; the KV-cache budget allows %lld tokens per request", (long long)np,
                 (long long)kv_max);
        goto fail;
    }
    if (!(j = srv_job_new()) || !(g = calloc(1, sizeof *g))) { srv_fail(&e, 500, NULL, NULL, "out of memory"); goto fail; }
    uint64_t serial = __atomic_add_fetch(&S->id_counter, 1, __ATOMIC_RELAXED);
    uint64_t salt = (uint64_t)(srv_now() * 1e9) ^ ((uint64_t)S->created << 20);
    j->prompt = ids.data;
    ids.data = NULL;
    j->n_prompt = np;
    j->max_tokens = max_tokens;
    j->kv_tokens = np + max_tokens;
    j->sp = (dsv3_sampler_params){(float)rq.temperature, (float)rq.top_p, rq.top_k,
                                  rq.has_seed ? rq.seed : salt * 0x9E3779B97F4A7C15ull + serial};
    for (int i = 0; i < rq.n_stop; i++) {
        j->stop[i] = rq.stop[i];
        j->stop_len[i] = rq.stop_len[i];
        rq.stop[i] = NULL;
    }
    j->n_stop = rq.n_stop;
    j->ignore_eos = rq.ignore_eos;
    g->S = S;
    g->c = c;
    g->chat = chat;
    g->want_ids = rq.return_token_ids || !S->tok;
    g->has_tools = rq.tools != NULL && rq.tool_choice != SRV_TOOL_NONE;
    g->include_usage = rq.include_usage;
    g->created = time(NULL);
    g->n_prompt = np;
    g->seed = salt + serial;
    snprintf(g->id, sizeof g->id, "%s-%08llx%016llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)serial,
             (unsigned long long)(salt * 0x2545F4914F6CDD1Dull));
    g->model = strdup(rq.model ? rq.model : S->model_name);
    if (!g->model) { srv_fail(&e, 500, NULL, NULL, "out of memory"); goto fail; }
    if (srv_sched_submit(&S->sched, j, &e, &retry)) goto fail;
    g->j = j;
    j = NULL;
    int stream = rq.stream;
    srv_request_free(&rq);
    if (stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, g, stream_free);
        if (!r) { stream_free(g); return MHD_NO; }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r); /* stream_free runs when MHD is done with it */
        srv_count_status(S, 200);
        return rc;
    }
    if (wait_output(g->j, c, 1)) {
        srv_job_cancel(g->j);
        srv_sched_count_request(&S->sched, 0);
        gen_free(g);
        return MHD_NO; /* the client is gone: close */
    }
    enum MHD_Result rc = respond_full(g);
    gen_free(g);
    return rc;
fail:
    srv_request_free(&rq);
    dsv3_ids_free(&ids);
    srv_job_unref(j);
    gen_free(g);
    return srv_send_error(S, c, &e, retry);
}
