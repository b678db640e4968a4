/* End-to-end tool-call round trip: a model whose greedy output IS a
 * DeepSeek-V3 tool call must come back from the API as tool_calls.
 *
 * The model is built for the test: one dense layer of the tiny fixture's shape
 * with o_proj and down_proj zeroed, so the final hidden state depends only on
 * the current token (h = rmsnorm(embed[a])), and an lm_head whose row for b is
 * a multiple of embed[a] exactly when b follows a in a chosen chain — a bigram
 * machine. The chain, started by <｜Assistant｜>, spells
 *   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time
 *   \n```json\n{"tz": "UTC"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><EOS>
 * in tokens that each occur once (the multi-byte pieces are added tokens of the
 * test tokenizer). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../test.h"
#include "dsv3/init_model.h"
#include "dsv3/safetensors.h"
#include "dsv3/tokenizer.h"
#include "server_test_util.h"

#define TOOL_ARGS "{\"tz\": \"UTC\"}"

static const char *k_pieces[] = {"function", "get_time", "\n```json\n", TOOL_ARGS, "\n```"};
#define N_PIECES (sizeof k_pieces / sizeof *k_pieces)

/* The chat tokenizer plus k_pieces as (non-special) added tokens at ids 500.. */
static int write_tokenizer(const char *src_dir, const char *dir) {
    char path[8192];
    snprintf(path, sizeof path, "%s/tokenizer.json", src_dir);
    json_t *tok = json_load_file(path, 0, NULL);
    json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab"), *added = json_object_get(tok, "added_tokens");
    if (!json_is_object(vocab) || !json_is_array(added)) { json_decref(tok); return -1; }
    for (size_t i = 0; i < N_PIECES; i++) {
        json_int_t id = 500 + (json_int_t)i;
        const char *key;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(vocab, tmp, key, v) if (json_integer_value(v) == id) json_object_del(vocab, key);
        json_object_set_new(vocab, k_pieces[i], json_integer(id));
        json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", k_pieces[i],
                                               "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 0));
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int bad = json_dump_file(tok, path, 0);
    json_decref(tok);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", src_dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    bad |= !cfg || json_dump_file(cfg, path, 0);
    json_decref(cfg);
    return bad ? -1 : 0;
}

static int32_t single_id(dsv3_tokenizer *tok, const char *s) {
    dsv3_ids ids = {0};
    int32_t id = -1;
    if (dsv3_tokenizer_encode(tok, s, strlen(s), 0, &ids, NULL) == DSV3_OK && ids.len == 1) id = ids.data[0];
    dsv3_ids_free(&ids);
    return id;
}

/* Writes dir/{config.json,model.safetensors}: the bigram model for chain[0..n). */
static int write_bigram_model(const char *dir, const int32_t *chain, int n) {
    char path[8192], init_dir[4096];
    const char *fx = test_fixtures_dir();
    snprintf(path, sizeof path, "%s/tiny/config.json", fx);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg) return -1;
    json_object_set_new(cfg, "num_hidden_layers", json_integer(1));
    json_object_set_new(cfg, "first_k_dense_replace", json_integer(1));
    json_object_set_new(cfg, "num_nextn_predict_layers", json_integer(0));
    snprintf(path, sizeof path, "%s/config.json", dir);
    int bad = json_dump_file(cfg, path, JSON_INDENT(2));
    int64_t V = json_integer_value(json_object_get(cfg, "vocab_size")), H = json_integer_value(json_object_get(cfg, "hidden_size"));
    json_decref(cfg);
    if (bad) return -1;
    snprintf(init_dir, sizeof init_dir, "%s/tool_model_init", test_tmp_dir());
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    o.dtype = DSV3_INIT_F32;
    o.seed = 5;
    o.overwrite = 1;
    if (dsv3_init_model(path, init_dir, &o, NULL, NULL) != DSV3_OK) return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", init_dir);
    dsv3_st_file *f = NULL;
    if (dsv3_st_open(path, &f, NULL) != DSV3_OK) return -1;
    const dsv3_tensor_view *emb = dsv3_st_find(f, "model.embed_tokens.weight");
    if (!emb || emb->dtype != DSV3_F32 || emb->numel != (uint64_t)(V * H)) { dsv3_st_close(f); return -1; }
    float *e = malloc(sizeof(float) * V * H);
    memcpy(e, emb->data, sizeof(float) * V * H);
    dsv3_st_writer *w = dsv3_st_writer_new();
    for (size_t i = 0; i < dsv3_st_count(f) && !bad; i++) {
        const dsv3_tensor_view *t = dsv3_st_tensor(f, i);
        float *d = malloc(t->nbytes ? t->nbytes : 1);
        memcpy(d, t->data, t->nbytes);
        if (strstr(t->name, "o_proj.weight") || strstr(t->name, "down_proj.weight")) memset(d, 0, t->nbytes);
        if (!strcmp(t->name, "lm_head.weight")) {
            /* row chain[k+1] = 8·embed[chain[k]]/|embed[chain[k]]|: its logit for a = chain[k]
             * is 8·sqrt(H) (the final norm scales h to length sqrt(H)); other rows give ≤ that·cos */
            memset(d, 0, t->nbytes);
            for (int k = 0; k + 1 < n; k++) {
                const float *ea = e + (int64_t)chain[k] * H;
                double nn = 0;
                for (int64_t j = 0; j < H; j++) nn += (double)ea[j] * ea[j];
                for (int64_t j = 0; j < H; j++) d[(int64_t)chain[k + 1] * H + j] = (float)(8.0 * ea[j] / sqrt(nn));
            }
        }
        bad = dsv3_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, d, NULL) != DSV3_OK;
        free(d);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!bad) bad = dsv3_st_writer_save(w, path, NULL) != DSV3_OK;
    dsv3_st_writer_free(w);
    dsv3_st_close(f);
    free(e);
    return bad ? -1 : 0;
}

/* The test model directory (built once), or NULL when fixtures are absent. */
static const char *tool_model_dir(void) {
    static char dir[4096];
    static int state;
    if (state) return state > 0 ? dir : NULL;
    state = -1;
    const char *chat = ts_chat_model_dir();
    if (!chat) return NULL;
    snprintf(dir, sizeof dir, "%s/tool_model", test_tmp_dir());
    mkdir(dir, 0755);
    if (write_tokenizer(chat, dir)) return NULL;
    dsv3_tokenizer *tok = NULL;
    if (dsv3_tokenizer_load(dir, &tok, NULL) != DSV3_OK) return NULL;
    const char *marks[] = {"<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
                           "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>",
                           "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>",
                           "function",
                           "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>",
                           "get_time",
                           "\n```json\n",
                           TOOL_ARGS,
                           "\n```",
                           "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>",
                           "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"};
    enum { N = sizeof marks / sizeof *marks };
    int32_t chain[N + 1];
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= (chain[i] = single_id(tok, marks[i])) >= 0;
    chain[N] = 1; /* EOS */
    dsv3_tokenizer_free(tok);
    if (!ok || write_bigram_model(dir, chain, N + 1)) return NULL;
    state = 1;
    return dir;
}

static const char *k_tools = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"description\":\"The time now.\","
                             "\"parameters\":{\"type\":\"object\",\"properties\":{\"tz\":{\"type\":\"string\"}}}}}]";

TEST(server_tool_call_round_trip) {
    const char *dir = tool_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    dsv3_server *s = ts_start_server(dir, NULL);
    CHECK(s);
    int port = dsv3_server_port(s), st;
    char body[2048];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"What time is it?\"}],%s,\"max_tokens\":40,\"temperature\":0}",
             k_tools);
    json_t *j = ts_post_json(port, "/v1/chat/completions", body, &st);
    CHECK(st == 200 && j);
    CHECK_MSG(!strcmp(ts_choice_str(j, "finish_reason", NULL), "tool_calls"), "finish_reason %s", ts_choice_str(j, "finish_reason", NULL));
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    json_t *calls = json_object_get(msg, "tool_calls"), *c0 = json_array_get(calls, 0);
    CHECK(json_array_size(calls) == 1);
    CHECK(!strcmp(json_string_value(json_object_get(c0, "type")), "function"));
    const char *id = json_string_value(json_object_get(c0, "id"));
    CHECK(id && strlen(id) > 0);
    json_t *fn = json_object_get(c0, "function");
    CHECK(!strcmp(json_string_value(json_object_get(fn, "name")), "get_time"));
    CHECK_MSG(!strcmp(json_string_value(json_object_get(fn, "arguments")), TOOL_ARGS), "arguments '%s'",
              json_string_value(json_object_get(fn, "arguments")));
    json_t *content = json_object_get(msg, "content");
    CHECK_MSG(json_is_null(content) || (json_is_string(content) && json_string_length(content) == 0), "content beside the call");
    CHECK(ts_usage(j, "completion_tokens") == 11); /* the chain, with EOS */
    json_decref(j);

    /* streamed: the call arrives as delta.tool_calls, finish_reason tool_calls, no text */
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"What time is it?\"}],%s,\"max_tokens\":40,\"temperature\":0,"
             "\"stream\":true}", k_tools);
    resp r;
    CHECK(ts_http(port, "POST", "/v1/chat/completions", NULL, body, &r) == 0 && r.status == 200);
    int n_calls = 0, done = 0;
    char finish[32] = "";
    dsv3_buf args = {0}, text = {0};
    for (const char *p = strstr(r.body.p, "data: "); p; p = strstr(p + 6, "data: ")) {
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        if (!strncmp(p + 6, "[DONE]", 6)) { done = 1; continue; }
        json_t *ev = json_loadb(p + 6, (size_t)(e - p - 6), 0, NULL);
        json_t *ch = json_array_get(json_object_get(ev, "choices"), 0), *delta = json_object_get(ch, "delta");
        CHECK(!strcmp(json_string_value(json_object_get(ev, "object")), "chat.completion.chunk"));
        json_t *tc = json_object_get(delta, "tool_calls"), *ct = json_object_get(delta, "content");
        if (json_is_string(ct)) dsv3_buf_add(&text, json_string_value(ct), json_string_length(ct));
        for (size_t i = 0; i < json_array_size(tc); i++) {
            json_t *c = json_array_get(tc, i), *f = json_object_get(c, "function");
            if (json_object_get(c, "id")) {
                n_calls++;
                CHECK(!strcmp(json_string_value(json_object_get(f, "name")), "get_time"));
            }
            json_t *a = json_object_get(f, "arguments");
            if (json_is_string(a)) dsv3_buf_add(&args, json_string_value(a), json_string_length(a));
        }
        if (json_is_string(json_object_get(ch, "finish_reason")))
            snprintf(finish, sizeof finish, "%s", json_string_value(json_object_get(ch, "finish_reason")));
        json_decref(ev);
    }
    dsv3_buf_add(&args, "", 0);
    dsv3_buf_add(&text, "", 0);
    CHECK(done && n_calls == 1 && !strcmp(finish, "tool_calls"));
    CHECK_MSG(!strcmp(args.p, TOOL_ARGS), "streamed arguments '%s'", args.p);
    CHECK_MSG(text.n <= 1, "streamed text '%s' beside the call", text.p);
    dsv3_buf_free(&args);
    dsv3_buf_free(&text);
    dsv3_buf_free(&r.body);

    /* without tools in the request the same output is plain text (markers stripped as special tokens or kept) */
    j = ts_post_json(port, "/v1/chat/completions",
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"What time is it?\"}],\"max_tokens\":40,\"temperature\":0}", &st);
    CHECK(st == 200 && j);
    CHECK(!json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"), "tool_calls"));
    CHECK(!strcmp(ts_choice_str(j, "finish_reason", NULL), "stop"));
    json_decref(j);
    dsv3_server_stop(s);
}
