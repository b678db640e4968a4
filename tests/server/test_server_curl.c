/* curl against the server: the command-line client users try first. Responses
 * are checked against the OpenAI schema fields the API promises. Skipped when
 * curl is not installed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../test.h"
#include "server_test_util.h"

/* Runs curl with args (a shell fragment), returns its stdout in out (NUL-terminated), exit code in *rc. */
static void run_curl(int port, const char *path, const char *args, dsv3_buf *out, int *rc) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 60 %s http://127.0.0.1:%d%s", args, port, path);
    out->n = 0;
    FILE *p = popen(cmd, "r");
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) dsv3_buf_add(out, buf, n);
    dsv3_buf_add(out, "", 0);
    int st = p ? pclose(p) : -1;
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int is_str(json_t *o, const char *k) { return json_is_string(json_object_get(o, k)); }

/* Fields every (non-streamed) completion object has. */
static void check_completion_object(json_t *j, const char *object) {
    CHECK_MSG(j && !strcmp(json_string_value(json_object_get(j, "object")), object), "object is not %s", object);
    CHECK(is_str(j, "id") && json_string_length(json_object_get(j, "id")) > 0 && is_str(j, "model"));
    CHECK(json_is_integer(json_object_get(j, "created")) && json_integer_value(json_object_get(j, "created")) > 1600000000);
    json_t *ch = json_object_get(j, "choices"), *c0 = json_array_get(ch, 0);
    CHECK(json_array_size(ch) == 1 && json_integer_value(json_object_get(c0, "index")) == 0);
    const char *fin = json_string_value(json_object_get(c0, "finish_reason"));
    CHECK(fin && (!strcmp(fin, "stop") || !strcmp(fin, "length")));
    json_t *u = json_object_get(j, "usage");
    json_int_t pt = json_integer_value(json_object_get(u, "prompt_tokens")), ct = json_integer_value(json_object_get(u, "completion_tokens"));
    CHECK(pt > 0 && ct > 0 && json_integer_value(json_object_get(u, "total_tokens")) == pt + ct);
}

TEST(server_curl_client) {
    if (system("curl --version >/dev/null 2>&1") != 0) SKIP("curl not installed");
    const char *dir = ts_chat_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    dsv3_server *s = ts_start_server(dir, NULL);
    CHECK(s);
    int port = dsv3_server_port(s), rc;
    dsv3_buf out = {0};
    const char *H = "-H 'Content-Type: application/json'";
    char args[2048];

    run_curl(port, "/health", "", &out, &rc);
    CHECK(rc == 0 && strstr(out.p, "ok"));
    run_curl(port, "/v1/models", "", &out, &rc);
    json_t *j = json_loads(out.p, 0, NULL);
    CHECK(rc == 0 && j && !strcmp(json_string_value(json_object_get(j, "object")), "list"));
    json_t *m0 = json_array_get(json_object_get(j, "data"), 0);
    CHECK(is_str(m0, "id") && !strcmp(json_string_value(json_object_get(m0, "object")), "model"));
    json_decref(j);

    /* chat, non-streamed */
    snprintf(args, sizeof args, "%s -d '{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":12,\"temperature\":0}'", H);
    run_curl(port, "/v1/chat/completions", args, &out, &rc);
    j = json_loads(out.p, 0, NULL);
    CHECK_MSG(rc == 0 && j, "curl rc %d, body '%s'", rc, out.p);
    check_completion_object(j, "chat.completion");
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    CHECK(!strcmp(json_string_value(json_object_get(msg, "role")), "assistant") && is_str(msg, "content"));
    char content[4096];
    snprintf(content, sizeof content, "%s", json_string_value(json_object_get(msg, "content")));
    json_decref(j);

    /* chat, streamed (-N): data: chunks with one id, a role delta first, content deltas equal
     * to the non-streamed text, a finish_reason, then data: [DONE] */
    snprintf(args, sizeof args, "-N %s -d '{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":12,\"temperature\":0,\"stream\":true}'", H);
    run_curl(port, "/v1/chat/completions", args, &out, &rc);
    CHECK(rc == 0);
    dsv3_buf text = {0};
    char id[128] = "", fin[32] = "";
    int chunks = 0, done = 0, saw_role = 0;
    for (const char *p = strstr(out.p, "data: "); p; p = strstr(p + 6, "data: ")) {
        const char *e = strstr(p, "\n\n");
        CHECK(e);
        if (!e) break;
        CHECK(!done); /* nothing after [DONE] */
        if (!strncmp(p + 6, "[DONE]", 6)) { done = 1; continue; }
        json_t *ev = json_loadb(p + 6, (size_t)(e - p - 6), 0, NULL);
        CHECK(ev && !strcmp(json_string_value(json_object_get(ev, "object")), "chat.completion.chunk"));
        CHECK(json_is_integer(json_object_get(ev, "created")) && is_str(ev, "model"));
        const char *eid = json_string_value(json_object_get(ev, "id"));
        CHECK(eid);
        if (!chunks) snprintf(id, sizeof id, "%s", eid ? eid : "");
        CHECK(eid && !strcmp(eid, id));
        json_t *c0 = json_array_get(json_object_get(ev, "choices"), 0), *d = json_object_get(c0, "delta");
        CHECK(json_is_object(d) && json_integer_value(json_object_get(c0, "index")) == 0);
        if (is_str(d, "role")) saw_role |= !strcmp(json_string_value(json_object_get(d, "role")), "assistant");
        if (is_str(d, "content")) dsv3_buf_add(&text, json_string_value(json_object_get(d, "content")), json_string_length(json_object_get(d, "content")));
        if (is_str(c0, "finish_reason")) snprintf(fin, sizeof fin, "%s", json_string_value(json_object_get(c0, "finish_reason")));
        json_decref(ev);
        chunks++;
    }
    dsv3_buf_add(&text, "", 0);
    CHECK(done && saw_role && chunks >= 2 && (!strcmp(fin, "stop") || !strcmp(fin, "length")));
    CHECK_MSG(!strcmp(text.p, content), "streamed '%s' vs '%s'", text.p, content);
    dsv3_buf_free(&text);

    /* text completion, non-streamed and streamed */
    snprintf(args, sizeof args, "%s -d '{\"prompt\":\"hello\",\"max_tokens\":8,\"temperature\":0}'", H);
    run_curl(port, "/v1/completions", args, &out, &rc);
    j = json_loads(out.p, 0, NULL);
    CHECK(rc == 0 && j);
    check_completion_object(j, "text_completion");
    CHECK(is_str(json_array_get(json_object_get(j, "choices"), 0), "text"));
    json_decref(j);
    snprintf(args, sizeof args, "-N %s -d '{\"prompt\":\"hello\",\"max_tokens\":8,\"temperature\":0,\"stream\":true}'", H);
    run_curl(port, "/v1/completions", args, &out, &rc);
    CHECK(rc == 0 && strstr(out.p, "\"text_completion\"") && strstr(out.p, "data: [DONE]\n\n"));

    /* a bad request: HTTP 400 with an OpenAI error body naming the field */
    snprintf(args, sizeof args, "-w '\\n%%{http_code}' %s -d '{\"prompt\":\"hello\",\"max_tokens\":-3}'", H);
    run_curl(port, "/v1/completions", args, &out, &rc);
    char *nl = strrchr(out.p, '\n');
    CHECK(rc == 0 && nl && !strcmp(nl + 1, "400"));
    if (nl) *nl = 0;
    j = json_loads(out.p, 0, NULL);
    json_t *err = json_object_get(j, "error");
    CHECK(is_str(err, "message") && is_str(err, "type") && !strcmp(json_string_value(json_object_get(err, "param")), "max_tokens"));
    json_decref(j);
    dsv3_buf_free(&out);
    dsv3_server_stop(s);
}
