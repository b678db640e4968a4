/* Server tests with a tokenizer (text prompts, chat template, stop strings)
 * and the dsv3 serve command itself. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../test.h"
#include "server_test_util.h"

TEST(server_http_text_completion_and_stop) {
    const char *dir = ts_chat_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    dsv3_server *s = ts_start_server(dir, NULL);
    CHECK(s);
    int port = dsv3_server_port(s);
    int st;
    json_t *j = ts_post_json(port, "/v1/completions", "{\"prompt\":\"hello\",\"max_tokens\":40,\"temperature\":0,\"ignore_eos\":true}", &st);
    CHECK(st == 200 && j);
    CHECK(ts_usage(j, "prompt_tokens") == 6 && ts_usage(j, "completion_tokens") == 40); /* BOS + 5 bytes */
    char full[4096];
    snprintf(full, sizeof full, "%s", ts_choice_str(j, "text", NULL));
    CHECK(!strcmp(ts_choice_str(j, "finish_reason", NULL), "length"));
    json_decref(j);
    /* streamed text is the same */
    dsv3_buf t = {0};
    char fin[32] = "";
    CHECK(ts_stream_text(port, "/v1/completions", "{\"prompt\":\"hello\",\"max_tokens\":40,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}",
                      &t, fin, sizeof fin) == 0);
    CHECK_MSG(!strcmp(t.p, full) && !strcmp(fin, "length"), "stream '%s' vs '%s'", t.p, full);
    dsv3_buf_free(&t);
    /* a stop string taken from the middle of the output cuts the text there */
    const char *p = full + 1;
    while (*p && !(p[0] >= 'a' && p[0] <= 'z' && p[1] >= 'a' && p[1] <= 'z')) p++;
    if (!*p) { dsv3_server_stop(s); SKIP("no two-letter stop string in the output"); }
    char stop[3] = {p[0], p[1], 0}, body[512];
    size_t cut = (size_t)(strstr(full, stop) - full);
    snprintf(body, sizeof body, "{\"prompt\":\"hello\",\"max_tokens\":40,\"temperature\":0,\"ignore_eos\":true,\"stop\":[\"zzz\",\"%s\"]}", stop);
    j = ts_post_json(port, "/v1/completions", body, &st);
    CHECK(st == 200 && j);
    CHECK_MSG(strlen(ts_choice_str(j, "text", NULL)) == cut && !strncmp(ts_choice_str(j, "text", NULL), full, cut), "stop '%s': '%s' vs '%s'",
              stop, ts_choice_str(j, "text", NULL), full);
    CHECK(!strcmp(ts_choice_str(j, "finish_reason", NULL), "stop") && ts_usage(j, "completion_tokens") < 40);
    json_decref(j);
    snprintf(body, sizeof body, "{\"prompt\":\"hello\",\"max_tokens\":40,\"temperature\":0,\"ignore_eos\":true,\"stream\":true,\"stop\":\"%s\"}", stop);
    CHECK(ts_stream_text(port, "/v1/completions", body, &t, fin, sizeof fin) == 0);
    CHECK(strlen(t.p) == cut && !strncmp(t.p, full, cut) && !strcmp(fin, "stop"));
    dsv3_buf_free(&t);
    dsv3_server_stop(s);
}

TEST(server_http_chat) {
    const char *dir = ts_chat_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    dsv3_server *s = ts_start_server(dir, NULL);
    CHECK(s);
    int port = dsv3_server_port(s);
    int st;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":30,\"temperature\":0,\"ignore_eos\":true}";
    json_t *j = ts_post_json(port, "/v1/chat/completions", body, &st);
    CHECK(st == 200 && j);
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion"));
    CHECK(!strcmp(ts_choice_str(j, "message", "role"), "assistant") && ts_choice_str(j, "message", "content"));
    CHECK(ts_usage(j, "prompt_tokens") == 8 && ts_usage(j, "completion_tokens") == 30); /* BOS <User> hello <Assistant> */
    char content[4096];
    snprintf(content, sizeof content, "%s", ts_choice_str(j, "message", "content"));
    json_decref(j);
    dsv3_buf t = {0};
    char fin[32] = "", sbody[512];
    snprintf(sbody, sizeof sbody, "%.*s,\"stream\":true}", (int)strlen(body) - 1, body);
    CHECK(ts_stream_text(port, "/v1/chat/completions", sbody, &t, fin, sizeof fin) == 0);
    CHECK_MSG(!strcmp(t.p, content) && !strcmp(fin, "length"), "stream '%s' vs '%s'", t.p, content);
    dsv3_buf_free(&t);
    /* a tool-call round trip in the history renders exactly as the library's chat template */
    const char *msgs = "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"weather?\"},"
                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
                       "{\"name\":\"w\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sun\"},"
                       "{\"role\":\"user\",\"content\":\"thanks\"}]";
    dsv3_tokenizer *tok = NULL;
    CHECK(dsv3_tokenizer_load(dir, &tok, NULL) == DSV3_OK);
    char *text = NULL;
    size_t tl = 0;
    dsv3_ids ids = {0};
    CHECK(dsv3_tokenizer_apply_chat_template_json(tok, msgs, strlen(msgs), 1, &text, &tl, NULL) == DSV3_OK);
    CHECK(dsv3_tokenizer_encode(tok, text, tl, 0, &ids, NULL) == DSV3_OK);
    free(text);
    dsv3_tokenizer_free(tok);
    dsv3_buf b = {0};
    dsv3_buf_printf(&b, "{\"messages\":%s,\"max_tokens\":4,\"seed\":3}", msgs);
    j = ts_post_json(port, "/v1/chat/completions", b.p, &st);
    CHECK_MSG(st == 200 && ts_usage(j, "prompt_tokens") == (json_int_t)ids.len, "status %d, %lld prompt tokens, want %zu", st,
              (long long)ts_usage(j, "prompt_tokens"), ids.len);
    json_decref(j);
    /* tools add their description to the system prompt, tool_choice none does not: seen in
     * the prompt length a server with a small context reports (no slow prefill under ASan) */
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.ctx = 128;
    dsv3_server *s2 = ts_start_server(dir, &o);
    CHECK(s2);
    b.n = 0;
    dsv3_buf_printf(&b, "{\"messages\":%s,\"max_tokens\":4,\"seed\":3,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"w\","
                       "\"description\":\"Weather now.\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]}", msgs);
    j = ts_post_json(dsv3_server_port(s2), "/v1/chat/completions", b.p, &st);
    const char *em = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    long long n_tools = 0;
    CHECK(st == 400 && em && sscanf(em, "the prompt has %lld tokens", &n_tools) == 1 && strstr(em, "limit is 128 tokens"));
    CHECK_MSG(n_tools > (long long)ids.len + 50, "%lld vs %zu", n_tools, ids.len);
    json_decref(j);
    b.p[--b.n] = 0; /* drop the closing brace */
    dsv3_buf_adds(&b, ",\"tool_choice\":\"none\"}");
    j = ts_post_json(dsv3_server_port(s2), "/v1/chat/completions", b.p, &st);
    CHECK(st == 200 && ts_usage(j, "prompt_tokens") == (json_int_t)ids.len);
    json_decref(j);
    dsv3_server_stop(s2);
    dsv3_buf_free(&b);
    dsv3_ids_free(&ids);
    /* template errors are the client's: 400 */
    j = ts_post_json(port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]}", &st);
    CHECK(st == 400);
    json_decref(j);
    dsv3_server_stop(s);
}

/* The dsv3 serve command: starts on a free port, answers, exits 0 on SIGTERM. */
TEST(server_cli_serve) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s serve --help >/dev/null 2>&1", ts_dsv3_bin());
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    snprintf(cmd, sizeof cmd, "%s serve --port 1 >/dev/null 2>&1", ts_dsv3_bin());
    CHECK(WEXITSTATUS(system(cmd)) == 2);
    snprintf(cmd, sizeof cmd, "%s serve --model x --port 70000 >/dev/null 2>&1", ts_dsv3_bin());
    CHECK(WEXITSTATUS(system(cmd)) == 2);
    if (!ts_tiny_dir()) SKIP("fixtures absent");
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        execl(ts_dsv3_bin(), "dsv3", "serve", "--model", ts_tiny_dir(), "--port", "0", "-t", "1", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[512] = "";
    int port = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "dsv3 serve: listening on http://127.0.0.1:%d/", &port) == 1) break;
    CHECK_MSG(port > 0, "no listening line: %s", line);
    char ids[256];
    CHECK(ts_complete_ids(port, NULL, (int32_t[]){415, 52, 117, 466, 246, 99, 63}, 7, 2, ids, sizeof ids) == 200);
    CHECK(!strcmp(ids, "141,254"));
    kill(pid, SIGTERM);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fclose(f);
}

/* Greedy reference for one turn: full prefill of the rendered history. */
static char *reference_answer(dsv3_model *m, dsv3_tokenizer *tok, const dsv3_chat_message *msgs, size_t n, int max_new) {
    char *text = NULL, *out = NULL;
    size_t tl = 0, ol = 0;
    dsv3_ids ids = {0};
    if (dsv3_tokenizer_apply_chat_template(tok, msgs, n, 1, &text, &tl, NULL) ||
        dsv3_tokenizer_encode(tok, text, tl, 0, &ids, NULL)) { free(text); return NULL; }
    free(text);
    const dsv3_config *c = dsv3_model_config(m);
    dsv3_kv_cache *kc = NULL;
    float *logits = malloc(sizeof(float) * c->vocab_size * ids.len);
    uint8_t *mask = calloc(ids.len, 1);
    FILE *mem = open_memstream(&out, &ol);
    dsv3_tok_stream ts;
    dsv3_tok_stream_init(&ts, tok, DSV3_TOK_SKIP_SPECIAL);
    mask[ids.len - 1] = 1;
    dsv3_batch_item it = {NULL, ids.data, (int64_t)ids.len};
    dsv3_forward_out fo = {.logits = logits, .logits_mask = mask};
    if (dsv3_kv_cache_new(m, (int64_t)ids.len + max_new + 1, &kc, NULL) == DSV3_OK && (it.cache = kc) &&
        dsv3_forward(m, &it, 1, &fo, NULL) == DSV3_OK) {
        const float *last = logits + (ids.len - 1) * c->vocab_size;
        for (int i = 0; i < max_new; i++) {
            int32_t t = dsv3_argmax(last, c->vocab_size);
            if (t == c->eos_token_id) break;
            const char *piece;
            size_t pl;
            if (dsv3_tok_stream_push(&ts, t, &piece, &pl, NULL) == DSV3_OK) fwrite(piece, 1, pl, mem);
            dsv3_batch_item one = {kc, &t, 1};
            dsv3_forward_out o1 = {.logits = logits};
            if (dsv3_forward(m, &one, 1, &o1, NULL)) break;
            last = logits;
        }
    }
    const char *piece;
    size_t pl;
    dsv3_tok_stream_flush(&ts, &piece, &pl);
    fwrite(piece, 1, pl, mem);
    fclose(mem);
    dsv3_tok_stream_free(&ts);
    dsv3_kv_cache_free(kc);
    free(logits);
    free(mask);
    dsv3_ids_free(&ids);
    return out;
}

/* dsv3 chat: two turns (the second reuses the cached prefix) equal a full
 * greedy recompute of each rendered conversation; /reset forgets. */
TEST(server_cli_chat) {
    const char *dir = ts_chat_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    char cmd[8192], out[8192];
    snprintf(cmd, sizeof cmd, "printf 'hello\\nsecond turn\\n/reset\\nhello\\n/exit\\nignored\\n' | %s chat --model %s -n 12 --temp 0 -t 1 2>/dev/null",
             ts_dsv3_bin(), dir);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    CHECK(WEXITSTATUS(pclose(p)) == 0);
    dsv3_model *m = NULL;
    dsv3_tokenizer *tok = NULL;
    CHECK(dsv3_model_load(dir, &m, NULL) == DSV3_OK && dsv3_tokenizer_load(dir, &tok, NULL) == DSV3_OK);
    dsv3_chat_message msgs[3] = {{"user", "hello", NULL, 0}, {"assistant", NULL, NULL, 0}, {"user", "second turn", NULL, 0}};
    char *a1 = reference_answer(m, tok, msgs, 1, 12);
    msgs[1].content = a1;
    char *a2 = a1 ? reference_answer(m, tok, msgs, 3, 12) : NULL;
    CHECK(a1 && a2);
    char want[8192];
    snprintf(want, sizeof want, "%s\n%s\n(new conversation)\n%s\n", a1, a2, a1);
    CHECK_MSG(n == strlen(want) && !memcmp(out, want, n), "got '%s'\nwant '%s'", out, want);
    free(a1);
    free(a2);
    dsv3_tokenizer_free(tok);
    dsv3_model_free(m);
    snprintf(cmd, sizeof cmd, "%s chat --model %s/nonexistent </dev/null >/dev/null 2>&1", ts_dsv3_bin(), dir);
    CHECK(WEXITSTATUS(system(cmd)) == 1);
    snprintf(cmd, sizeof cmd, "%s chat --model %s --temp -1 </dev/null >/dev/null 2>&1", ts_dsv3_bin(), dir);
    CHECK(WEXITSTATUS(system(cmd)) == 2);
}
