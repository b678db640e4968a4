/* Server request parsing/validation, error bodies, output text handling. */
#include <jansson.h>
#include <string.h>

#include "../test.h"
#include "server/server_internal.h"

static srv_limits lim(void) {
    srv_limits l;
    srv_limits_default(&l);
    l.max_tokens = 1024;
    l.max_prompt_ids = 1024;
    l.vocab_size = 512;
    return l;
}

/* Parses body; returns the status (0 = ok) and fills param. */
static int parse(const char *body, int chat, char *param, size_t pcap) {
    srv_limits l = lim();
    srv_request r;
    srv_error e = {0};
    int rc = srv_request_parse(body, strlen(body), chat, &l, &r, &e);
    if (rc == 0) {
        srv_request_free(&r);
        return 0;
    }
    if (param) snprintf(param, pcap, "%s", e.param);
    return e.status;
}

TEST(server_request_chat_fields) {
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"developer\",\"content\":"
        "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":\"auto\",\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":-1,\"seed\":-3,"
        "\"stop\":[\"x\",\"yz\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},\"unknown_field\":{\"a\":[1]},"
        "\"n\":1,\"presence_penalty\":0,\"logprobs\":false,\"user\":\"u\"}";
    srv_limits l = lim();
    srv_request r;
    srv_error e = {0};
    CHECK_MSG(srv_request_parse(body, strlen(body), 1, &l, &r, &e) == 0, "%s", e.message);
    CHECK(r.chat == 1 && !strcmp(r.model, "m"));
    CHECK(r.n_msgs == 5);
    CHECK(!strcmp(r.msgs[1].role, "system") && !strcmp(r.msgs[1].content, "ab"));
    CHECK(!strcmp(r.msgs[3].role, "assistant") && r.msgs[3].content == NULL && r.msgs[3].n_calls == 1);
    CHECK(!strcmp(r.msgs[3].calls[0].name, "f") && !strcmp(r.msgs[3].calls[0].arguments, "{\"x\":1}"));
    CHECK(!strcmp(r.msgs[4].content, "42"));
    CHECK(r.tools && json_array_size(r.tools) == 1 && r.tool_choice == SRV_TOOL_AUTO);
    CHECK(r.max_tokens == 7 && r.top_k == 0 && r.has_seed && r.seed == (uint64_t)-3);
    CHECK_NEAR(r.temperature, 0.5, 0);
    CHECK_NEAR(r.top_p, 0.9, 0);
    CHECK(r.n_stop == 2 && !strcmp(r.stop[1], "yz") && r.stop_len[1] == 2);
    CHECK(r.stream && r.include_usage);
    srv_request_free(&r);
}

TEST(server_request_prompt_forms) {
    srv_limits l = lim();
    srv_request r;
    srv_error e = {0};
    const char *b1 = "{\"prompt\":\"hello\"}";
    CHECK(srv_request_parse(b1, strlen(b1), 0, &l, &r, &e) == 0 && r.prompt_len == 5 && !strcmp(r.prompt, "hello"));
    CHECK(r.max_tokens == -1 && r.temperature == 1.0 && r.top_p == 1.0 && !r.stream);
    srv_request_free(&r);
    const char *b2 = "{\"prompt\":[\"x\"]}";
    CHECK(srv_request_parse(b2, strlen(b2), 0, &l, &r, &e) == 0 && !strcmp(r.prompt, "x"));
    srv_request_free(&r);
    const char *b3 = "{\"prompt\":[1,2,511],\"max_tokens\":16.0}";
    CHECK(srv_request_parse(b3, strlen(b3), 0, &l, &r, &e) == 0 && r.n_prompt_ids == 3 && r.prompt_ids[2] == 511);
    CHECK(r.max_tokens == 16);
    srv_request_free(&r);
    const char *b4 = "{\"prompt\":[[5,6]],\"stop\":\"ab\",\"ignore_eos\":true,\"return_token_ids\":true}";
    CHECK(srv_request_parse(b4, strlen(b4), 0, &l, &r, &e) == 0 && r.n_prompt_ids == 2 && r.prompt_ids[0] == 5);
    CHECK(r.n_stop == 1 && r.ignore_eos && r.return_token_ids);
    srv_request_free(&r);
    /* null means absent */
    const char *b5 = "{\"prompt\":\"p\",\"max_tokens\":null,\"stop\":null,\"temperature\":null,\"seed\":null}";
    CHECK(srv_request_parse(b5, strlen(b5), 0, &l, &r, &e) == 0 && r.max_tokens == -1 && !r.has_seed);
    srv_request_free(&r);
}

/* Hostile or wrong values: expected status and the field named. */
static const struct {
    int chat;
    const char *body;
    int status;
    const char *param;
} k_bad[] = {
    {0, "{\"prompt\":\"a\",\"temperature\":-1}", 400, "temperature"},
    {0, "{\"prompt\":\"a\",\"temperature\":2.5}", 400, "temperature"},
    {0, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", 400, "temperature"},
    {0, "{\"prompt\":\"a\",\"temperature\":true}", 400, "temperature"},
    {0, "{\"prompt\":\"a\",\"top_p\":0}", 400, "top_p"},
    {0, "{\"prompt\":\"a\",\"top_p\":1.01}", 400, "top_p"},
    {0, "{\"prompt\":\"a\",\"top_k\":-2}", 400, "top_k"},
    {0, "{\"prompt\":\"a\",\"top_k\":1.5}", 400, "top_k"},
    {0, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "max_tokens"},
    {0, "{\"prompt\":\"a\",\"max_tokens\":-5}", 400, "max_tokens"},
    {0, "{\"prompt\":\"a\",\"max_tokens\":1025}", 400, "max_tokens"},
    {0, "{\"prompt\":\"a\",\"max_tokens\":9223372036854775807}", 400, "max_tokens"},
    {0, "{\"prompt\":\"a\",\"max_tokens\":1e300}", 400, "max_tokens"},
    {0, "{\"prompt\":\"a\",\"max_tokens\":99999999999999999999999}", 400, ""},
    {0, "{\"prompt\":\"a\",\"max_tokens\":1e999}", 400, ""},
    {0, "{\"prompt\":\"a\",\"temperature\":NaN}", 400, ""},
    {0, "{\"prompt\":\"a\",\"temperature\":Infinity}", 400, ""},
    {0, "{\"prompt\":\"a\",\"seed\":\"1\"}", 400, "seed"},
    {0, "{\"prompt\":\"a\",\"n\":2}", 400, "n"},
    {0, "{\"prompt\":\"a\",\"n\":0}", 400, "n"},
    {0, "{\"prompt\":\"a\",\"presence_penalty\":3}", 400, "presence_penalty"},
    {0, "{\"prompt\":\"a\",\"frequency_penalty\":-2.5}", 400, "frequency_penalty"},
    {0, "{\"prompt\":\"a\",\"stream\":\"yes\"}", 400, "stream"},
    {0, "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":1}}", 400, "stream_options.include_usage"},
    {0, "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", 400, "stop"},
    {0, "{\"prompt\":\"a\",\"stop\":\"\"}", 400, "stop"},
    {0, "{\"prompt\":\"a\",\"stop\":7}", 400, "stop"},
    {0, "{\"prompt\":\"a\",\"stop\":[\"a\",null]}", 400, "stop"},
    {0, "{\"prompt\":\"a\",\"logprobs\":3}", 400, "logprobs"},
    {0, "{\"prompt\":\"a\",\"echo\":true}", 400, "echo"},
    {0, "{\"prompt\":\"a\",\"model\":5}", 400, "model"},
    {0, "{\"prompt\":5}", 400, "prompt"},
    {0, "{\"prompt\":[]}", 400, "prompt"},
    {0, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
    {0, "{\"prompt\":[1,\"b\"]}", 400, "prompt[1]"},
    {0, "{\"prompt\":[1,512]}", 400, "prompt[1]"},
    {0, "{\"prompt\":[1,-1]}", 400, "prompt[1]"},
    {0, "{\"prompt\":[[1,2],[3]]}", 400, "prompt"},
    {0, "{\"prompt\":[{}]}", 400, "prompt[0]"},
    {0, "{}", 400, "prompt"},
    {0, "[1,2]", 400, ""},
    {0, "\"str\"", 400, ""},
    {0, "", 400, ""},
    {0, "{\"prompt\":\"a\"", 400, ""},
    {0, "{\"prompt\":\"a\\u0000b\"}", 400, ""},
    {0, "{\"prompt\":\"\\ud800\"}", 400, ""},
    {1, "{}", 400, "messages"},
    {1, "{\"messages\":{}}", 400, "messages"},
    {1, "{\"messages\":[]}", 400, "messages"},
    {1, "{\"messages\":[1]}", 400, "messages[0]"},
    {1, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role"},
    {1, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0].role"},
    {1, "{\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "messages[0].content[0]"},
    {1, "{\"messages\":[{\"role\":\"assistant\"}]}", 400, "messages[0].content"},
    {1, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{}}]}]}", 400, "messages[0].tool_calls[0]"},
    {1, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}", 400, "messages[0].tool_calls"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", 400, "tools[0]"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", 400, "tools"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"always\"}", 400, "tool_choice"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", 400, "tool_choice"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}", 400, "max_completion_tokens"},
    {1, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", 400, "logprobs"},
};

TEST(server_request_rejects_bad_fields) {
    for (size_t i = 0; i < sizeof k_bad / sizeof *k_bad; i++) {
        char param[128] = {0};
        int st = parse(k_bad[i].body, k_bad[i].chat, param, sizeof param);
        CHECK_MSG(st == k_bad[i].status, "case %zu (%s): status %d, want %d", i, k_bad[i].body, st, k_bad[i].status);
        CHECK_MSG(!strcmp(param, k_bad[i].param), "case %zu (%s): param '%s', want '%s'", i, k_bad[i].body, param,
                  k_bad[i].param);
    }
}

TEST(server_request_limits) {
    srv_limits l = lim();
    srv_request r;
    srv_error e = {0};
    /* nesting depth */
    char deep[400];
    int k = 0;
    k += sprintf(deep + k, "{\"prompt\":\"a\",\"x\":");
    for (int i = 0; i < 70; i++) deep[k++] = '[';
    for (int i = 0; i < 70; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = 0;
    CHECK(srv_request_parse(deep, strlen(deep), 0, &l, &r, &e) == -1 && e.status == 400 && !strcmp(e.code, "too_deep"));
    l.max_depth = 100;
    CHECK(srv_request_parse(deep, strlen(deep), 0, &l, &r, &e) == 0);
    srv_request_free(&r);
    /* string length (escapes do not hide a long string) */
    l = lim();
    l.max_string = 8;
    const char *s1 = "{\"prompt\":\"12345678\"}", *s2 = "{\"prompt\":\"123456789\"}", *s3 = "{\"prompt\":\"\\\"\\\"\\\"\\\"\\\"\"}";
    CHECK(srv_request_parse(s1, strlen(s1), 0, &l, &r, &e) == 0);
    srv_request_free(&r);
    CHECK(srv_request_parse(s2, strlen(s2), 0, &l, &r, &e) == -1 && !strcmp(e.code, "string_too_long"));
    CHECK(srv_request_parse(s3, strlen(s3), 0, &l, &r, &e) == -1 && !strcmp(e.code, "string_too_long"));
    /* body size */
    l = lim();
    l.max_body = 16;
    CHECK(srv_request_parse(s2, strlen(s2), 0, &l, &r, &e) == -1 && e.status == 413);
    /* message count and stop length */
    l = lim();
    l.max_messages = 1;
    const char *m2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}";
    CHECK(srv_request_parse(m2, strlen(m2), 1, &l, &r, &e) == -1 && !strcmp(e.param, "messages"));
    l = lim();
    l.max_stop_len = 2;
    const char *st = "{\"prompt\":\"a\",\"stop\":\"abc\"}";
    CHECK(srv_request_parse(st, strlen(st), 0, &l, &r, &e) == -1 && !strcmp(e.param, "stop"));
    /* prompt ids over the context */
    l = lim();
    l.max_prompt_ids = 2;
    const char *p3 = "{\"prompt\":[1,2,3]}";
    CHECK(srv_request_parse(p3, strlen(p3), 0, &l, &r, &e) == -1 && !strcmp(e.code, "context_length_exceeded"));
    CHECK(strstr(e.message, "limit is 2 tokens") != NULL);
}

TEST(server_request_invalid_utf8) {
    const char *bad[] = {
        "{\"prompt\":\"\xff\"}",             /* invalid byte */
        "{\"prompt\":\"\xc0\xaf\"}",         /* overlong */
        "{\"prompt\":\"\xed\xa0\x80\"}",     /* encoded surrogate */
        "{\"prompt\":\"\xf4\x90\x80\x80\"}", /* > U+10FFFF */
        "{\"prompt\":\"\xe2\x82\"}",         /* truncated */
        "{\"prompt\":\"a\",\"x\xfe\":1}",    /* in an unknown key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        srv_limits l = lim();
        srv_request r;
        srv_error e = {0};
        CHECK_MSG(srv_request_parse(bad[i], strlen(bad[i]), 0, &l, &r, &e) == -1 && e.status == 400 &&
                      !strcmp(e.code, "invalid_utf8"),
                  "case %zu", i);
    }
    CHECK(parse("{\"prompt\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"}", 0, NULL, 0) == 0);
}

TEST(server_error_body_shape) {
    srv_error e;
    CHECK(srv_fail(&e, 429, NULL, "queue_full", "busy %d", 3) == -1);
    char *s = srv_error_json(&e);
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    CHECK(j);
    json_t *err = json_object_get(j, "error");
    CHECK(json_is_object(err));
    CHECK(!strcmp(json_string_value(json_object_get(err, "message")), "busy 3"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "type")), "rate_limit_error"));
    CHECK(json_is_null(json_object_get(err, "param")));
    CHECK(!strcmp(json_string_value(json_object_get(err, "code")), "queue_full"));
    json_decref(j);
    srv_fail(&e, 400, "temperature", NULL, "bad \xff byte");
    s = srv_error_json(&e);
    j = json_loads(s, 0, NULL);
    free(s);
    CHECK(j && !strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "param")), "temperature"));
    CHECK(json_is_null(json_object_get(json_object_get(j, "error"), "code")));
    json_decref(j);
}

TEST(server_text_utf8_sanitized) {
    json_t *j = srv_json_text("a\xff" "b\xe2\x82", 5);
    CHECK(j && !strcmp(json_string_value(j), "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"));
    json_decref(j);
    j = srv_json_text("\xe2\x82\xac", 3);
    CHECK(j && !strcmp(json_string_value(j), "\xe2\x82\xac"));
    json_decref(j);
}

#define CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define SEP "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>"

/* Feeding byte by byte gives the same split as feeding everything at once. */
static int split_both(const char *text, const char *want_content, const char *want_reasoning, const char *want_tools) {
    for (int mode = 0; mode < 2; mode++) {
        srv_splitter sp = {0};
        dsv3_buf c = {0}, r = {0};
        size_t n = strlen(text);
        if (mode == 0) srv_split_feed(&sp, text, n, 1, &c, &r);
        else {
            for (size_t i = 0; i < n; i++) srv_split_feed(&sp, text + i, 1, 0, &c, &r);
            srv_split_feed(&sp, "", 0, 1, &c, &r);
        }
        int ok = !strcmp(c.p ? c.p : "", want_content) && !strcmp(r.p ? r.p : "", want_reasoning) &&
                 !strcmp(sp.tools.p ? sp.tools.p : "", want_tools);
        if (!ok) fprintf(stderr, "    mode %d: content '%s' reasoning '%s' tools '%s'\n", mode, c.p, r.p, sp.tools.p);
        dsv3_buf_free(&c);
        dsv3_buf_free(&r);
        srv_split_free(&sp);
        if (!ok) return 0;
    }
    return 1;
}

TEST(server_output_splitter) {
    CHECK(split_both("plain <thin text", "plain <thin text", "", ""));
    CHECK(split_both("<think>why</think>answer", "answer", "why", ""));
    CHECK(split_both("<thi", "<thi", "", ""));
    CHECK(split_both("<think>unfinished", "", "unfinished", ""));
    CHECK(split_both("x<think>y</think>", "x<think>y</think>", "", ""));
    CHECK(split_both("ok" CALLS_BEGIN CALL_BEGIN "function" SEP "f\n```json\n{}\n```" CALL_END CALLS_END, "ok",
                     "", CALL_BEGIN "function" SEP "f\n```json\n{}\n```" CALL_END CALLS_END));
    CHECK(split_both("ends with <\xef\xbd\x9ctool", "ends with <\xef\xbd\x9ctool", "", ""));
}

TEST(server_output_tool_calls) {
    const char *s = CALL_BEGIN "function" SEP "get_weather\n```json\n{\"city\": \"Paris\"}\n```" CALL_END "\n" CALL_BEGIN
        "function" SEP "now\n```json\n{}\n```" CALL_END CALLS_END "<｜end▁of▁sentence｜>";
    json_t *calls = srv_parse_tool_calls(s, strlen(s), 7);
    CHECK(calls && json_array_size(calls) == 2);
    json_t *f0 = json_object_get(json_array_get(calls, 0), "function");
    CHECK(!strcmp(json_string_value(json_object_get(f0, "name")), "get_weather"));
    CHECK(!strcmp(json_string_value(json_object_get(f0, "arguments")), "{\"city\": \"Paris\"}"));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(calls, 1), "type")), "function"));
    const char *id0 = json_string_value(json_object_get(json_array_get(calls, 0), "id"));
    const char *id1 = json_string_value(json_object_get(json_array_get(calls, 1), "id"));
    CHECK(id0 && id1 && !strncmp(id0, "call_", 5) && strcmp(id0, id1));
    json_decref(calls);
    /* no fence, truncated output, garbage */
    const char *s2 = CALL_BEGIN "function" SEP "f\n{\"a\":1}" CALL_END;
    calls = srv_parse_tool_calls(s2, strlen(s2), 1);
    CHECK(calls && !strcmp(json_string_value(json_object_get(json_object_get(json_array_get(calls, 0), "function"), "arguments")),
                           "{\"a\":1}"));
    json_decref(calls);
    const char *s3 = CALL_BEGIN "function" SEP "g\n```json\n{\"a\":";
    calls = srv_parse_tool_calls(s3, strlen(s3), 1);
    CHECK(calls && json_array_size(calls) == 1);
    json_decref(calls);
    CHECK(srv_parse_tool_calls("garbage", 7, 1) == NULL);
    CHECK(srv_parse_tool_calls(CALL_BEGIN SEP "\n", strlen(CALL_BEGIN SEP "\n"), 1) == NULL);
    /* the tool description names every function */
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather.\","
                               "\"parameters\":{\"type\":\"object\"}}}]", 0, NULL);
    char *txt = srv_render_tools(tools, SRV_TOOL_REQUIRED, NULL);
    CHECK(txt && strstr(txt, "### get_weather") && strstr(txt, "Weather.") && strstr(txt, "{\"type\":\"object\"}"));
    CHECK(strstr(txt, CALLS_BEGIN) && strstr(txt, "must call"));
    free(txt);
    json_decref(tools);
}
