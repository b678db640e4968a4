/* HTTP daemon: start/stop, body collection with a size cap, API-key check,
 * routing, and the small endpoints (/, /health, /v1/models, /metrics). */
#define _GNU_SOURCE /* POLLRDHUP */
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/http_internal.h"

void dsv3_server_opts_init(dsv3_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_batch = 8;
    o->kv_budget_mb = 1024;
    o->max_queue = 64;
    o->step_tokens = 256;
    o->max_body = 1 << 20;
    o->conn_timeout_s = 60;
    o->max_conns = 256;
}

int dsv3_server_port(const dsv3_server *s) { return s->port; }

void srv_count_status(dsv3_server *S, int status) {
    if (status >= 100 && status < 600) __atomic_add_fetch(&S->http_codes[status], 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- replies */

enum MHD_Result srv_send(dsv3_server *S, struct MHD_Connection *c, int status, const char *ctype, char *data, size_t n) {
    if (!data) return MHD_NO; /* out of memory: close */
    struct MHD_Response *r = MHD_create_response_from_buffer(n, data, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(data); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    srv_count_status(S, status);
    return rc;
}

enum MHD_Result srv_send_json(dsv3_server *S, struct MHD_Connection *c, int status, json_t *root) {
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s) return MHD_NO;
    return srv_send(S, c, status, "application/json", s, strlen(s));
}

enum MHD_Result srv_send_error(dsv3_server *S, struct MHD_Connection *c, const srv_error *e, int retry_after) {
    char *s = srv_error_json(e);
    if (!s) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(s); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (e->status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)e->status, r);
    MHD_destroy_response(r);
    srv_count_status(S, e->status);
    if (S->verbose) fprintf(stderr, "dsv3 serve: %d %s\n", e->status, e->message);
    return rc;
}

int srv_client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return 1;
    char b;
    /* readable: EOF means the client closed; pipelined bytes do not */
    return recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* ------------------------------------------------------ small endpoints */

static enum MHD_Result get_models(dsv3_server *S, struct MHD_Connection *c) {
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:I}", "id", S->model_name, "object", "model", "created",
                          (json_int_t)S->created, "owned_by", "dsv3", "max_model_len", (json_int_t)S->ctx);
    return srv_send_json(S, c, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", m));
}

static enum MHD_Result get_metrics(dsv3_server *S, struct MHD_Connection *c) {
    srv_stats st;
    srv_sched_stats(&S->sched, &st);
    dsv3_buf b = {0};
#define METRIC(name, type, help, fmt, ...)                                                   \
    dsv3_buf_printf(&b, "# HELP dsv3_" name " " help "\n# TYPE dsv3_" name " " type "\ndsv3_" name fmt "\n", __VA_ARGS__)
    METRIC("requests_total", "counter", "Generation requests finished.", "{status=\"ok\"} %llu\ndsv3_requests_total{status=\"error\"} %llu",
           (unsigned long long)st.cnt.requests_ok, (unsigned long long)st.cnt.requests_err);
    METRIC("requests_cancelled_total", "counter", "Requests cancelled (client gone) while queued or running.", " %llu",
           (unsigned long long)st.cnt.cancelled);
    METRIC("requests_rejected_total", "counter", "Requests refused because the wait queue was full (429).", " %llu",
           (unsigned long long)st.cnt.rejected_queue);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens prefilled.", " %llu", (unsigned long long)st.cnt.prompt_tokens);
    METRIC("generation_tokens_total", "counter", "Tokens generated.", " %llu", (unsigned long long)st.cnt.gen_tokens);
    METRIC("generation_tokens_per_second", "gauge", "Tokens generated per second over the last 10 s.", " %.3f", st.tokens_per_s);
    METRIC("forward_steps_total", "counter", "Batched forward steps.", " %llu", (unsigned long long)st.cnt.steps);
    METRIC("forward_busy_seconds_total", "counter", "Time spent in forward steps.", " %.6f", st.cnt.busy_s);
    METRIC("queue_length", "gauge", "Requests waiting for a batch slot or KV space.", " %d", st.n_wait);
    METRIC("running_requests", "gauge", "Requests in the running batch.", " %d", st.n_active);
    METRIC("kv_cache_blocks_used", "gauge", "KV-cache blocks reserved by running requests.", " %lld", (long long)st.blocks_used);
    METRIC("kv_cache_blocks_total", "gauge", "KV-cache blocks in the budget.", " %lld", (long long)st.blocks_total);
    METRIC("kv_cache_block_tokens", "gauge", "Tokens per KV-cache block.", " %lld", (long long)st.block_tokens);
    METRIC("kv_cache_bytes_used", "gauge", "KV-cache bytes reserved.", " %lld",
           (long long)(st.blocks_used * st.block_tokens * st.kv_bytes_per_token));
    METRIC("kv_cache_usage_ratio", "gauge", "Fraction of the KV-cache budget in use.", " %.6f",
           st.blocks_total ? (double)st.blocks_used / (double)st.blocks_total : 0.0);
#undef METRIC
    dsv3_buf_adds(&b, "# HELP dsv3_http_responses_total HTTP responses by status code.\n"
                     "# TYPE dsv3_http_responses_total counter\n");
    for (int code = 100; code < 600; code++) {
        uint64_t n = __atomic_load_n(&S->http_codes[code], __ATOMIC_RELAXED);
        if (n) dsv3_buf_printf(&b, "dsv3_http_responses_total{code=\"%d\"} %llu\n", code, (unsigned long long)n);
    }
    if (!b.p) return MHD_NO;
    return srv_send(S, c, 200, "text/plain; version=0.0.4", b.p, b.n);
}

/* ---------------------------------------------------------------- routing */

/* Constant-time check of "Authorization: Bearer <key>". */
static int auth_ok(dsv3_server *S, struct MHD_Connection *c) {
    if (!S->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t a = strlen(h), k = strlen(S->api_key);
    unsigned diff = (unsigned)(a ^ k);
    for (size_t i = 0; i < k; i++) diff |= (unsigned char)S->api_key[i] ^ (unsigned char)(i < a ? h[i] : 0);
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    dsv3_server *S = cls;
    srv_conn *cx = *con_cls;
    (void)version;
    srv_error e;
    int post = !strcmp(method, "POST");
    int is_api = !strncmp(url, "/v1/", 4);
    if (!cx) {
        /* first call: headers only */
        if (!(cx = calloc(1, sizeof *cx))) return MHD_NO;
        *con_cls = cx;
        if (is_api && !auth_ok(S, c)) {
            srv_fail(&e, 401, NULL, "invalid_api_key", "missing or invalid API key (Authorization: Bearer <key>)");
            return srv_send_error(S, c, &e, 0);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (post && cl && strtoull(cl, NULL, 10) > S->lim.max_body) {
            srv_fail(&e, 413, NULL, "request_too_large", "request body is larger than %zu bytes", S->lim.max_body);
            return srv_send_error(S, c, &e, 0);
        }
        if (post) return MHD_YES; /* the body follows */
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cx->too_big || cx->body.n + n > S->lim.max_body) {
            /* chunked upload over the cap: MHD cannot answer before the body
             * ends, so drop the rest (413 at the end), or close on a flood */
            cx->too_big = 1;
            dsv3_buf_free(&cx->body);
            cx->dropped += n;
            if (cx->dropped > 4 * S->lim.max_body) return MHD_NO;
            return MHD_YES;
        }
        return dsv3_buf_add(&cx->body, upload_data, n) ? MHD_NO : MHD_YES;
    }
    if (cx->too_big) {
        srv_fail(&e, 413, NULL, "request_too_large", "request body is larger than %zu bytes", S->lim.max_body);
        return srv_send_error(S, c, &e, 0);
    }
    const char *body = cx->body.p ? cx->body.p : "";
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post) {
            srv_fail(&e, 405, NULL, "method_not_allowed", "%s needs POST", url);
            return srv_send_error(S, c, &e, 0);
        }
        return srv_api_generate(S, c, body, cx->body.n, !strcmp(url, "/v1/chat/completions"));
    }
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/models") || !strcmp(url, "/metrics") || !strcmp(url, "/")) {
        if (!get) {
            srv_fail(&e, 405, NULL, "method_not_allowed", "%s needs GET", url);
            return srv_send_error(S, c, &e, 0);
        }
        if (!strcmp(url, "/health")) {
            char *s = strdup("{\"status\":\"ok\"}");
            return srv_send(S, c, 200, "application/json", s, s ? strlen(s) : 0);
        }
        if (!strcmp(url, "/metrics")) return get_metrics(S, c);
        if (!strcmp(url, "/v1/models")) return get_models(S, c);
        return srv_send(S, c, 200, "text/html; charset=utf-8", strdup(srv_webui_html), strlen(srv_webui_html));
    }
    srv_fail(&e, 404, NULL, "not_found", "no such endpoint: %s %s", method, url);
    return srv_send_error(S, c, &e, 0);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    srv_conn *cx = *con_cls;
    if (!cx) return;
    dsv3_buf_free(&cx->body);
    free(cx);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    dsv3_server *S = cls;
    if (!S->verbose) return;
    fprintf(stderr, "dsv3 serve (http): ");
    vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------- lifecycle */

static const char *base_name(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    const char *s = p + n;
    while (s > p && s[-1] != '/') s--;
    return s;
}

dsv3_status dsv3_server_start(const dsv3_server_opts *o, dsv3_server **out, dsv3_error *err) {
    *out = NULL;
    if (!o->model_dir) return dsv3_fail(err, DSV3_ERR_INVALID, "serve: no model directory");
    if (o->port < 0 || o->port > 65535) return dsv3_fail(err, DSV3_ERR_INVALID, "serve: port %d out of range", o->port);
    if (o->kv_budget_mb < 1 || o->kv_budget_mb > (1LL << 30))
        return dsv3_fail(err, DSV3_ERR_INVALID, "serve: --kv-budget-mb %lld out of range", (long long)o->kv_budget_mb);
    if (o->max_body < 64 || o->conn_timeout_s < 1 || o->max_conns < 1)
        return dsv3_fail(err, DSV3_ERR_INVALID, "serve: bad body cap, timeout or connection limit");
    dsv3_server *S = calloc(1, sizeof *S);
    if (!S) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    S->verbose = o->verbose;
    S->conn_timeout_s = o->conn_timeout_s;
    S->max_conns = o->max_conns;
    S->created = time(NULL);
    S->host = strdup(o->host ? o->host : "127.0.0.1");
    S->api_key = o->api_key ? strdup(o->api_key) : NULL;
    S->model_name = strdup(o->model_name ? o->model_name : base_name(o->model_dir));
    dsv3_status st = DSV3_OK;
    if (!S->host || !S->model_name || (o->api_key && !S->api_key)) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory"); goto fail; }
    if ((st = dsv3_model_load(o->model_dir, &S->model, err))) goto fail;
    if ((st = dsv3_model_set_kv_dtype(S->model, o->kv_dtype, err))) goto fail;
    const dsv3_config *cfg = dsv3_model_config(S->model);
    S->vocab = cfg->vocab_size;
    S->ctx = o->ctx > 0 ? o->ctx : cfg->max_position_embeddings;
    if (S->ctx < 2 || S->ctx > cfg->max_position_embeddings) {
        st = dsv3_fail(err, DSV3_ERR_INVALID, "serve: --ctx %lld must be in [2, %lld] (max_position_embeddings)",
                       (long long)S->ctx, (long long)cfg->max_position_embeddings);
        goto fail;
    }
    /* the tokenizer is optional: without one, only token-id prompts work */
    const char *tdir = o->tokenizer_dir ? o->tokenizer_dir : o->model_dir;
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", tdir);
    if (o->tokenizer_dir || access(tpath, R_OK) == 0)
        if ((st = dsv3_tokenizer_load(tdir, &S->tok, err))) goto fail;
    srv_limits_default(&S->lim);
    S->lim.max_body = o->max_body;
    S->lim.max_string = o->max_body;
    S->lim.max_tokens = S->ctx;
    S->lim.max_prompt_ids = S->ctx;
    S->lim.vocab_size = S->vocab;
    if (srv_sched_init(&S->sched, S->model, S->tok, o->max_batch, o->max_queue, o->kv_budget_mb << 20, o->step_tokens, err)) {
        st = err ? err->code : DSV3_ERR_INVALID;
        goto fail;
    }
    S->sched_inited = 1;
    S->sched.threads = o->threads;
    /* without max_tokens a request would reserve the whole context; a fair share keeps batching */
    S->default_max_tokens = o->default_max_tokens > 0 ? o->default_max_tokens
                                                      : srv_sched_max_request_tokens(&S->sched) / o->max_batch;
    if (S->default_max_tokens < 256) S->default_max_tokens = 256;
    if ((st = srv_sched_start(&S->sched, err))) goto fail;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", o->port);
    int gai = getaddrinfo(S->host, port_s, &hints, &ai);
    if (gai || !ai) {
        st = dsv3_fail(err, DSV3_ERR_INVALID, "serve: cannot resolve host '%s': %s", S->host, gai_strerror(gai));
        goto fail;
    }
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    freeaddrinfo(ai);
    S->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, S, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, S,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, S,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)o->max_conns, MHD_OPTION_END);
    if (!S->d) {
        st = dsv3_fail(err, DSV3_ERR_IO, "serve: cannot listen on %s:%d (address in use or not permitted?)", S->host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(S->d, MHD_DAEMON_INFO_BIND_PORT);
    S->port = di ? di->port : o->port;
    *out = S;
    return DSV3_OK;
fail:
    dsv3_server_stop(S);
    return st ? st : DSV3_ERR_INVALID;
}

void dsv3_server_stop(dsv3_server *S) {
    if (!S) return;
    /* the scheduler first: waiting connections then see their jobs end */
    if (S->sched_inited) srv_sched_shutdown(&S->sched);
    if (S->d) MHD_stop_daemon(S->d);
    if (S->sched_inited) srv_sched_destroy(&S->sched);
    dsv3_tokenizer_free(S->tok);
    dsv3_model_free(S->model);
    free(S->host);
    free(S->api_key);
    free(S->model_name);
    free(S);
}
