/* dsv3 serve end to end: the server runs in-process on an ephemeral
 * loopback port with ../shared/fixtures/tiny (no tokenizer: prompts are
 * token ids); requests go over plain sockets. Tokenizer-backed tests are in
 * test_server_chat.c. */
#define _GNU_SOURCE /* strcasestr */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test.h"
#include "server_test_util.h"

TEST(server_http_endpoints) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server *s = ts_start_server(ts_tiny_dir(), NULL);
    CHECK(s);
    int port = dsv3_server_port(s);
    resp r;
    CHECK(ts_http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200 && strstr(r.body.p, "ok"));
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/v1/models", NULL, NULL, &r) == 0 && r.status == 200);
    json_t *j = ts_body_json(&r);
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    CHECK(m && !strcmp(json_string_value(json_object_get(m, "id")), "tiny") &&
          json_integer_value(json_object_get(m, "max_model_len")) == 1024);
    json_decref(j);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/", NULL, NULL, &r) == 0 && r.status == 200 && strstr(r.body.p, "/v1/chat/completions"));
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/nope", NULL, NULL, &r) == 0 && r.status == 404);
    j = ts_body_json(&r);
    CHECK(json_is_string(json_object_get(json_object_get(j, "error"), "message")));
    json_decref(j);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/v1/completions", NULL, NULL, &r) == 0 && r.status == 405);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/metrics", NULL, NULL, &r) == 0 && r.status == 200);
    CHECK(strstr(r.body.p, "# TYPE dsv3_queue_length gauge") && strstr(r.body.p, "dsv3_kv_cache_usage_ratio"));
    dsv3_buf_free(&r.body);
    dsv3_server_stop(s);
}

#define N_CONC 8
typedef struct {
    int port, n, max_tokens;
    int32_t ids[48];
    const char *extra;
    char out[4096];
    int status;
} conc_req;

static void *conc_main(void *arg) {
    conc_req *q = arg;
    q->status = ts_complete_ids(q->port, q->extra, q->ids, q->n, q->max_tokens, q->out, sizeof q->out);
    return NULL;
}

TEST(server_http_greedy_concurrent_equals_sequential) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.step_tokens = 16; /* long prompts are prefilled in chunks next to decodes */
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    int port = dsv3_server_port(s);
    static conc_req q[N_CONC], seq[N_CONC];
    uint64_t rng = 12345;
    for (int i = 0; i < N_CONC; i++) {
        q[i].port = port;
        q[i].n = 3 + (int)(i * 5 % 40);
        q[i].max_tokens = 10 + i;
        q[i].extra = i == N_CONC - 1 ? ",\"temperature\":0.8,\"top_p\":0.9,\"top_k\":20,\"seed\":7" : NULL;
        for (int k = 0; k < q[i].n; k++) q[i].ids[k] = (int32_t)((dsv3_rand_uniform(&rng) * 510) + 2);
    }
    /* the fixture's greedy reference goes first */
    const int32_t ref_prompt[7] = {415, 52, 117, 466, 246, 99, 63};
    q[0].n = 7;
    memcpy(q[0].ids, ref_prompt, sizeof ref_prompt);
    q[0].max_tokens = 16;
    memcpy(seq, q, sizeof q);
    for (int i = 0; i < N_CONC; i++) {
        conc_main(&seq[i]);
        CHECK_MSG(seq[i].status == 200, "request %d: status %d", i, seq[i].status);
    }
    CHECK(!strcmp(seq[0].out, "141,254,509,156,253,471,251,297,26,52,151,368,103,315,261,290"));
    /* all 8 are admitted before the first step, so they really share steps */
    double steps0 = ts_metric(port, "dsv3_forward_steps_total"), tok0 = ts_metric(port, "dsv3_generation_tokens_total");
    srv_sched_pause(&s->sched, 1);
    pthread_t th[N_CONC];
    for (int i = 0; i < N_CONC; i++) pthread_create(&th[i], NULL, conc_main, &q[i]);
    CHECK(ts_wait_metric(port, "dsv3_running_requests", N_CONC, 10));
    srv_sched_pause(&s->sched, 0);
    for (int i = 0; i < N_CONC; i++) pthread_join(th[i], NULL);
    double steps = ts_metric(port, "dsv3_forward_steps_total") - steps0, toks = ts_metric(port, "dsv3_generation_tokens_total") - tok0;
    CHECK_MSG(steps < toks / 3, "%g steps for %g tokens", steps, toks);
    for (int i = 0; i < N_CONC; i++) {
        CHECK_MSG(q[i].status == 200, "concurrent %d: status %d", i, q[i].status);
        CHECK_MSG(!strcmp(q[i].out, seq[i].out), "request %d: concurrent %s vs sequential %s", i, q[i].out, seq[i].out);
    }
    /* ... and what dsv3 generate prints (half of them, in parallel, to keep the suite fast) */
    FILE *pipes[N_CONC] = {0};
    for (int i = 0; i < N_CONC; i++) {
        if (i % 2 == 0) continue; /* 1, 3, 5 and the sampled 7 */
        char cmd[8192];
        int k = snprintf(cmd, sizeof cmd, "%s generate --model %s -t 1 -n %d --prompt-ids ", ts_dsv3_bin(), ts_tiny_dir(), q[i].max_tokens);
        for (int t = 0; t < q[i].n; t++) k += snprintf(cmd + k, sizeof cmd - k, "%s%d", t ? "," : "", q[i].ids[t]);
        if (i == N_CONC - 1) k += snprintf(cmd + k, sizeof cmd - k, " --temp 0.8 --top-p 0.9 --top-k 20 --seed 7");
        snprintf(cmd + k, sizeof cmd - k, " 2>/dev/null");
        pipes[i] = popen(cmd, "r");
    }
    for (int i = 1; i < N_CONC; i += 2) {
        char out[4096];
        size_t n = pipes[i] ? fread(out, 1, sizeof out - 1, pipes[i]) : 0;
        out[n] = 0;
        if (pipes[i]) pclose(pipes[i]);
        if (n && out[n - 1] == '\n') out[n - 1] = 0;
        CHECK_MSG(!strcmp(out, q[i].out), "request %d: generate %s vs server %s", i, out, q[i].out);
    }
    CHECK(ts_metric(port, "dsv3_generation_tokens_total") > 0);
    dsv3_server_stop(s);
}

/* SSE events of a streamed response: concatenated token_ids, finish reason, usage. */
typedef struct {
    char ids[4096];
    char finish[32];
    int usage_completion, n_events, done, errors;
} sse_summary;

static void parse_sse(const char *body, sse_summary *s) {
    memset(s, 0, sizeof *s);
    size_t k = 0;
    for (const char *p = strstr(body, "data: "); p; p = strstr(p + 6, "data: ")) {
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        s->n_events++;
        if (!strncmp(p + 6, "[DONE]", 6)) { s->done = 1; continue; }
        json_t *j = json_loadb(p + 6, (size_t)(e - p - 6), JSON_ALLOW_NUL, NULL);
        if (!j || json_object_get(j, "error")) s->errors++;
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *ids = json_object_get(ch, "token_ids");
        for (size_t i = 0; i < json_array_size(ids); i++)
            k += (size_t)snprintf(s->ids + k, sizeof s->ids - k, "%s%lld", k ? "," : "", (long long)json_integer_value(json_array_get(ids, i)));
        if (json_is_string(json_object_get(ch, "finish_reason")))
            snprintf(s->finish, sizeof s->finish, "%s", json_string_value(json_object_get(ch, "finish_reason")));
        json_t *u = json_object_get(j, "usage");
        if (u) s->usage_completion = (int)json_integer_value(json_object_get(u, "completion_tokens"));
        json_decref(j);
    }
}

TEST(server_http_stream_sse) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server *s = ts_start_server(ts_tiny_dir(), NULL);
    CHECK(s);
    int port = dsv3_server_port(s);
    resp r;
    const char *body = "{\"prompt\":[415,52,117,466,246,99,63],\"max_tokens\":16,\"temperature\":0,\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true}}";
    CHECK(ts_http(port, "POST", "/v1/completions", NULL, body, &r) == 0 && r.status == 200);
    CHECK(strcasestr(r.head, "content-type: text/event-stream"));
    sse_summary ss;
    parse_sse(r.body.p, &ss);
    dsv3_buf_free(&r.body);
    CHECK_MSG(!strcmp(ss.ids, "141,254,509,156,253,471,251,297,26,52,151,368,103,315,261,290"), "%s", ss.ids);
    CHECK(ss.done && !ss.errors && !strcmp(ss.finish, "length") && ss.usage_completion == 16);
    dsv3_server_stop(s);
}

/* Raw request bytes -> status of the response (0 if the server just closed). */
static int raw_status(int port, const char *req, size_t n) {
    int fd = ts_sock_connect(port);
    if (fd < 0) return -1;
    resp r;
    int st = ts_send_all(fd, req, n) == 0 && ts_read_response(fd, &r) == 0 ? r.status : 0;
    if (st) dsv3_buf_free(&r.body);
    close(fd);
    return st;
}

TEST(server_http_hostile_inputs) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.ctx = 64;
    o.max_body = 4096;
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    int port = dsv3_server_port(s);
    static const struct {
        const char *path, *body;
        int status;
        const char *needle; /* in the error message or param */
    } cases[] = {
        {"/v1/completions", "{\"prompt\":[1,2],\"temperature\":-0.5}", 400, "temperature"},
        {"/v1/completions", "{\"prompt\":[1,2],\"max_tokens\":-1}", 400, "max_tokens"},
        {"/v1/completions", "{\"prompt\":[1,2],\"top_p\":\"x\"}", 400, "top_p"},
        {"/v1/completions", "{\"prompt\":[1,2],\"max_tokens\":100000000000}", 400, "max_tokens"},
        {"/v1/completions", "{\"prompt\":[1,2],\"max_tokens\":63}", 400, "context limit is 64"},
        {"/v1/completions", "{\"prompt\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,"
                            "31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64]}",
         400, "limit is 64"},
        {"/v1/completions", "{\"prompt\":[1,2],\"stop\":\"x\"}", 400, "stop"},
        {"/v1/completions", "{\"prompt\":\"text\"}", 400, "tokenizer"},
        {"/v1/completions", "{\"prompt\":[1,600]}", 400, "prompt[1]"},
        {"/v1/completions", "{\"prompt\":[1,2]", 400, "invalid JSON"},
        {"/v1/completions", "{\"prompt\":[1,2],\"x\":\"\xc3\x28\"}", 400, "UTF-8"},
        {"/v1/completions", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
         400, "nesting"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "chat template"},
        {"/v1/chat/completions", "{\"messages\":\"hi\"}", 400, "messages"},
        {"/v1/completions", "{\"prompt\":[1,2],\"max_tokens\":2,\"unknown\":[1,{\"a\":null}]}", 200, "token_ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        resp r;
        CHECK_MSG(ts_http(port, "POST", cases[i].path, NULL, cases[i].body, &r) == 0, "case %zu: no response", i);
        CHECK_MSG(r.status == cases[i].status && strstr(r.body.p, cases[i].needle), "case %zu: %d %s", i, r.status, r.body.p);
        if (r.status >= 400) {
            json_t *j = ts_body_json(&r), *e = json_object_get(j, "error");
            CHECK_MSG(e && json_is_string(json_object_get(e, "message")) && json_is_string(json_object_get(e, "type")) &&
                          json_object_get(e, "param") && json_object_get(e, "code"),
                      "case %zu: error shape %s", i, r.body.p);
            json_decref(j);
        }
        dsv3_buf_free(&r.body);
    }
    /* oversized bodies: declared, and chunked */
    char req[1024];
    int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000000\r\n\r\n{");
    CHECK(raw_status(port, req, (size_t)n) == 413);
    dsv3_buf big = {0};
    dsv3_buf_adds(&big, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 8; i++) {
        dsv3_buf_adds(&big, "400\r\n");
        for (int k = 0; k < 1024; k++) dsv3_buf_add(&big, "a", 1);
        dsv3_buf_adds(&big, "\r\n");
    }
    dsv3_buf_adds(&big, "0\r\n\r\n");
    CHECK(raw_status(port, big.p, big.n) == 413);
    dsv3_buf_free(&big);
    /* not HTTP at all, a huge header, a truncated request: no crash */
    CHECK(raw_status(port, "\x01\x02garbage\r\n\r\n", 13) >= 0);
    dsv3_buf hdr = {0};
    dsv3_buf_adds(&hdr, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 100000; i++) dsv3_buf_add(&hdr, "b", 1);
    dsv3_buf_adds(&hdr, "\r\n\r\n");
    int st = raw_status(port, hdr.p, hdr.n);
    CHECK_MSG(st == 0 || st == 431 || st == 413 || st == 400, "huge header: %d", st);
    dsv3_buf_free(&hdr);
    int fd = ts_sock_connect(port);
    const char *trunc = "POST /v1/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"pro";
    ts_send_all(fd, trunc, strlen(trunc));
    close(fd);
    /* still serving */
    resp r;
    CHECK(ts_http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200);
    dsv3_buf_free(&r.body);
    char ids[256];
    CHECK(ts_complete_ids(port, NULL, (int32_t[]){1, 2, 3}, 3, 3, ids, sizeof ids) == 200);
    CHECK(ts_metric(port, "dsv3_kv_cache_blocks_used") == 0);
    dsv3_server_stop(s);
}

TEST(server_http_api_key) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.api_key = "sekret";
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    int port = dsv3_server_port(s);
    resp r;
    CHECK(ts_http(port, "GET", "/v1/models", NULL, NULL, &r) == 0 && r.status == 401 && strcasestr(r.head, "www-authenticate"));
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/v1/models", "Authorization: Bearer wrong\r\n", NULL, &r) == 0 && r.status == 401);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/v1/models", "Authorization: Bearer sekre\r\n", NULL, &r) == 0 && r.status == 401);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "POST", "/v1/completions", NULL, "{\"prompt\":[1],\"max_tokens\":1}", &r) == 0 && r.status == 401);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/v1/models", "Authorization: Bearer sekret\r\n", NULL, &r) == 0 && r.status == 200);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "POST", "/v1/completions", "Authorization: Bearer sekret\r\n", "{\"prompt\":[1],\"max_tokens\":1}", &r) == 0 &&
          r.status == 200);
    dsv3_buf_free(&r.body);
    CHECK(ts_http(port, "GET", "/health", NULL, NULL, &r) == 0 && r.status == 200);
    dsv3_buf_free(&r.body);
    dsv3_server_stop(s);
}

TEST(server_http_queue_full_429) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.max_batch = 1;
    o.max_queue = 1;
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    int port = dsv3_server_port(s);
    srv_sched_pause(&s->sched, 1);
    const char *body = "{\"prompt\":[5,6,7],\"max_tokens\":4,\"temperature\":0}";
    int fa = ts_sock_connect(port), fb = ts_sock_connect(port);
    CHECK(fa >= 0 && fb >= 0);
    CHECK(ts_send_request(fa, "POST", "/v1/completions", NULL, body, strlen(body)) == 0);
    CHECK(ts_wait_metric(port, "dsv3_running_requests", 1, 5));
    CHECK(ts_send_request(fb, "POST", "/v1/completions", NULL, body, strlen(body)) == 0);
    CHECK(ts_wait_metric(port, "dsv3_queue_length", 1, 5));
    resp r;
    CHECK(ts_http(port, "POST", "/v1/completions", NULL, body, &r) == 0 && r.status == 429);
    CHECK(strcasestr(r.head, "retry-after: "));
    CHECK(strstr(r.body.p, "rate_limit_error") && strstr(r.body.p, "queue_full"));
    dsv3_buf_free(&r.body);
    CHECK(ts_metric(port, "dsv3_requests_rejected_total") == 1);
    srv_sched_pause(&s->sched, 0);
    resp ra, rb;
    CHECK(ts_read_response(fa, &ra) == 0 && ts_read_response(fb, &rb) == 0);
    CHECK(ra.status == 200 && rb.status == 200);
    json_t *ja = ts_body_json(&ra), *jb = ts_body_json(&rb);
    json_t *ta = json_object_get(json_array_get(json_object_get(ja, "choices"), 0), "token_ids");
    json_t *tb = json_object_get(json_array_get(json_object_get(jb, "choices"), 0), "token_ids");
    CHECK(ta && json_equal(ta, tb));
    json_decref(ja);
    json_decref(jb);
    dsv3_buf_free(&ra.body);
    dsv3_buf_free(&rb.body);
    close(fa);
    close(fb);
    dsv3_server_stop(s);
}

TEST(server_http_kv_budget_waits) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.kv_budget_mb = 1; /* 1 MiB / 640 bytes per token: 102 blocks of 16 tokens */
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    int port = dsv3_server_port(s);
    CHECK(ts_metric(port, "dsv3_kv_cache_blocks_total") == 102);
    s->sched.step_delay_us = 5000;
    srv_sched_pause(&s->sched, 1);
    /* 1000 tokens = 63 blocks each: the second must wait although the batch has room */
    const char *body = "{\"prompt\":[5,6,7],\"max_tokens\":997,\"temperature\":0,\"ignore_eos\":true}";
    int fa = ts_sock_connect(port), fb = ts_sock_connect(port);
    CHECK(ts_send_request(fa, "POST", "/v1/completions", NULL, body, strlen(body)) == 0);
    CHECK(ts_wait_metric(port, "dsv3_running_requests", 1, 5));
    CHECK(ts_metric(port, "dsv3_kv_cache_blocks_used") == 63);
    CHECK(ts_send_request(fb, "POST", "/v1/completions", NULL, body, strlen(body)) == 0);
    CHECK(ts_wait_metric(port, "dsv3_queue_length", 1, 5));
    CHECK(ts_metric(port, "dsv3_running_requests") == 1);
    /* the first client leaves: its KV returns and the second starts */
    close(fa);
    CHECK(ts_wait_admitted_cancelled(s, 5)); /* the connection thread notices within 100 ms */
    srv_sched_pause(&s->sched, 0);
    CHECK(ts_wait_metric(port, "dsv3_queue_length", 0, 5));
    CHECK(ts_wait_metric(port, "dsv3_requests_cancelled_total", 1, 5));
    CHECK(ts_metric(port, "dsv3_running_requests") == 1 && ts_metric(port, "dsv3_kv_cache_blocks_used") == 63);
    close(fb);
    CHECK(ts_wait_metric(port, "dsv3_kv_cache_blocks_used", 0, 5));
    CHECK(ts_metric(port, "dsv3_running_requests") == 0);
    dsv3_server_stop(s);
}

/* The scheduler alone: a request larger than the whole KV budget is refused
 * (400), one that fits runs; shutdown ends queued jobs with an error. */
TEST(server_sched_kv_budget_refuses_oversized) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_model *m = NULL;
    CHECK(dsv3_model_load(ts_tiny_dir(), &m, NULL) == DSV3_OK);
    srv_sched s;
    dsv3_error err = {0};
    CHECK_MSG(srv_sched_init(&s, m, NULL, 2, 4, 4 * 16 * 640, 32, &err) == 0, "%s", err.msg); /* 4 blocks = 64 tokens */
    CHECK(srv_sched_max_request_tokens(&s) == 64);
    CHECK(srv_sched_start(&s, &err) == 0);
    srv_job *big = srv_job_new(), *ok = srv_job_new();
    big->kv_tokens = 65;
    srv_error e;
    int retry = 0;
    CHECK(srv_sched_submit(&s, big, &e, &retry) == -1 && e.status == 400 && strstr(e.message, "64 tokens"));
    ok->prompt = malloc(sizeof(int32_t) * 3);
    ok->prompt[0] = 5, ok->prompt[1] = 6, ok->prompt[2] = 7;
    ok->n_prompt = 3;
    ok->max_tokens = 4;
    ok->kv_tokens = 7;
    ok->sp = (dsv3_sampler_params){0, 1, 0, 0};
    CHECK(srv_sched_submit(&s, ok, &e, &retry) == 0);
    pthread_mutex_lock(&ok->mu);
    while (!ok->finish) pthread_cond_wait(&ok->cv, &ok->mu);
    pthread_mutex_unlock(&ok->mu);
    CHECK(ok->finish == SRV_FINISH_LENGTH && ok->n_ids == 4);
    srv_sched_shutdown(&s);
    srv_job *late = srv_job_new();
    late->kv_tokens = 8;
    CHECK(srv_sched_submit(&s, late, &e, &retry) == -1 && e.status == 503);
    srv_job_unref(late);
    srv_job_unref(big);
    srv_job_unref(ok);
    srv_sched_destroy(&s);
    dsv3_model_free(m);
}

TEST(server_http_disconnect_cancels) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server *s = ts_start_server(ts_tiny_dir(), NULL);
    CHECK(s);
    int port = dsv3_server_port(s);
    s->sched.step_delay_us = 5000;
    /* mid-stream: read the first event, then hang up */
    const char *body = "{\"prompt\":[5,6,7],\"max_tokens\":900,\"ignore_eos\":true,\"stream\":true}";
    int fd = ts_sock_connect(port);
    CHECK(ts_send_request(fd, "POST", "/v1/completions", NULL, body, strlen(body)) == 0);
    char buf[4096];
    dsv3_buf got = {0};
    while (!got.p || !strstr(got.p, "data: ")) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        CHECK(k > 0);
        dsv3_buf_add(&got, buf, (size_t)k);
    }
    dsv3_buf_free(&got);
    CHECK(ts_metric(port, "dsv3_kv_cache_blocks_used") > 0);
    close(fd);
    CHECK(ts_wait_metric(port, "dsv3_requests_cancelled_total", 1, 5));
    CHECK(ts_wait_metric(port, "dsv3_kv_cache_blocks_used", 0, 5));
    CHECK(ts_metric(port, "dsv3_running_requests") == 0);
    CHECK(ts_metric(port, "dsv3_generation_tokens_total") < 900);
    /* a non-streamed request whose client leaves while it is queued/running */
    srv_sched_pause(&s->sched, 1);
    fd = ts_sock_connect(port);
    const char *b2 = "{\"prompt\":[5,6,7],\"max_tokens\":50}";
    CHECK(ts_send_request(fd, "POST", "/v1/completions", NULL, b2, strlen(b2)) == 0);
    CHECK(ts_wait_metric(port, "dsv3_running_requests", 1, 5));
    close(fd);
    CHECK(ts_wait_admitted_cancelled(s, 5)); /* the connection thread notices within 100 ms */
    srv_sched_pause(&s->sched, 0);
    CHECK(ts_wait_metric(port, "dsv3_requests_cancelled_total", 2, 5));
    CHECK(ts_wait_metric(port, "dsv3_kv_cache_blocks_used", 0, 5));
    /* the server is fine afterwards */
    s->sched.step_delay_us = 0;
    char ids[256];
    CHECK(ts_complete_ids(port, NULL, (int32_t[]){415, 52, 117, 466, 246, 99, 63}, 7, 3, ids, sizeof ids) == 200);
    CHECK(!strcmp(ids, "141,254,509"));
    dsv3_server_stop(s);
}


/* A client that does not read its stream blocks nobody; an idle connection
 * is closed after the timeout. */
TEST(server_http_slow_and_idle_clients) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.conn_timeout_s = 1;
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    int port = dsv3_server_port(s);
    const char *body = "{\"prompt\":[5,6,7],\"max_tokens\":150,\"ignore_eos\":true,\"stream\":true,\"temperature\":0}";
    int slow = ts_sock_connect(port), idle = ts_sock_connect(port);
    CHECK(slow >= 0 && idle >= 0);
    CHECK(ts_send_request(slow, "POST", "/v1/completions", NULL, body, strlen(body)) == 0);
    /* the slow client reads nothing; others are served meanwhile */
    char ids[256];
    for (int i = 0; i < 3; i++) CHECK(ts_complete_ids(port, NULL, (int32_t[]){1, 2, 3}, 3, 4, ids, sizeof ids) == 200);
    CHECK(ts_wait_metric(port, "dsv3_running_requests", 0, 10)); /* its generation finished, buffered */
    resp r;
    CHECK(ts_read_response(slow, &r) == 0 && r.status == 200);
    static sse_summary ss;
    parse_sse(r.body.p, &ss);
    int n_ids = 1;
    for (const char *p = ss.ids; *p; p++) n_ids += *p == ',';
    CHECK_MSG(n_ids == 150 && ss.done && !strcmp(ss.finish, "length"), "%d ids", n_ids);
    dsv3_buf_free(&r.body);
    close(slow);
    /* the idle connection (nothing sent) was closed by the server */
    char b;
    double t0 = srv_now();
    CHECK(recv(idle, &b, 1, 0) == 0);
    CHECK(srv_now() - t0 < 5);
    close(idle);
    dsv3_server_stop(s);
}

/* --kv-dtype bf16: the same KV budget holds twice the tokens (320 instead of 640 bytes per token of the
 * tiny model: 204 blocks of 16 in 1 MiB), and requests decoded together give what each gives alone. */
TEST(server_http_bf16_kv_cache) {
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.kv_budget_mb = 1;
    o.kv_dtype = DSV3_BF16;
    dsv3_server *s = ts_start_server(ts_tiny_dir(), &o);
    CHECK(s);
    if (!s) return;
    int port = dsv3_server_port(s);
    CHECK(ts_metric(port, "dsv3_kv_cache_blocks_total") == 204);
    enum { NQ = 3 };
    static conc_req q[NQ], seq[NQ];
    for (int i = 0; i < NQ; i++) {
        q[i].port = port;
        q[i].n = 5 + 9 * i;
        q[i].max_tokens = 12;
        q[i].extra = NULL;
        for (int k = 0; k < q[i].n; k++) q[i].ids[k] = (int32_t)(2 + (k * 37 + i * 101) % 500);
    }
    memcpy(seq, q, sizeof q);
    for (int i = 0; i < NQ; i++) {
        conc_main(&seq[i]);
        CHECK_MSG(seq[i].status == 200, "request %d: status %d", i, seq[i].status);
    }
    srv_sched_pause(&s->sched, 1);
    pthread_t th[NQ];
    for (int i = 0; i < NQ; i++) pthread_create(&th[i], NULL, conc_main, &q[i]);
    CHECK(ts_wait_metric(port, "dsv3_running_requests", NQ, 10));
    srv_sched_pause(&s->sched, 0);
    for (int i = 0; i < NQ; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NQ; i++)
        CHECK_MSG(q[i].status == 200 && !strcmp(q[i].out, seq[i].out), "request %d: together %s vs alone %s", i, q[i].out,
                  seq[i].out);
    dsv3_server_stop(s);
}
