/* Malformed and unsupported tokenizer files (errors, never crashes; run
 * under ASan by `make test`), the JSON parser, the regex translation, and
 * the chat template beyond the fixtures (tool calls, errors). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsv3/tokenizer.h"
#include "../test.h"
#include "tokenizer/tokenizer_internal.h"

char *tok_test_build_json(const char *model_spec, const char *components);

static const char k_model_spec[] = "{\"kind\":\"byte\",\"pair\":false,\"unk\":null,\"fuse\":false,\"fallback\":false,"
                                   "\"prefix\":null,\"suffix\":null,\"merges\":[\"a b\",\"ab c\",\"\xc4\xa0 ab\"]}";
static const char k_components[] =
    "{\"added_tokens\":[{\"id\":300,\"content\":\"<X>\",\"special\":true}],\"normalizer\":{\"type\":\"Sequence\","
    "\"normalizers\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
    "{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
    "false,\"trim_offsets\":true,\"use_regex\":true}]},\"decoder\":{\"type\":\"ByteLevel\"}}";

static char *valid_json(void) { return tok_test_build_json(k_model_spec, k_components); }

/* Loads text; 1 if it loaded (and then survives an encode/decode), 0 on error. */
static int try_load(const char *text, size_t len, dsv3_error *err) {
    dsv3_tokenizer *t = NULL;
    memset(err, 0, sizeof *err);
    dsv3_status st = dsv3_tokenizer_load_mem(text, len, NULL, 0, &t, err);
    if (st) {
        /* an error always comes with a message */
        if (!err->msg[0]) { fprintf(stderr, "    error %d without a message\n", st); return -1; }
        return 0;
    }
    dsv3_ids ids = {0};
    const char *x = "ab<X>c 12345 \xff\xe4\xb8\xad";
    if (dsv3_tokenizer_encode(t, x, strlen(x), DSV3_TOK_ADD_SPECIAL, &ids, NULL) == DSV3_OK) {
        char *d = NULL;
        if (dsv3_tokenizer_decode(t, ids.data, ids.len, 0, &d, NULL, NULL) == DSV3_OK) free(d);
    }
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(t);
    return 1;
}

TEST(tok_malformed_truncated) {
    char *js = valid_json();
    CHECK(js != NULL);
    size_t n = strlen(js);
    dsv3_error err;
    CHECK(try_load(js, n, &err) == 1);
    int loaded = 0;
    for (size_t cut = 0; cut < n; cut++) {
        int r = try_load(js, cut, &err);
        CHECK(r >= 0);
        loaded += r;
    }
    free(js);
    CHECK_MSG(loaded == 0, "%d truncated files loaded", loaded);
}

TEST(tok_malformed_random_mutations) {
    char *js = valid_json();
    CHECK(js != NULL);
    size_t n = strlen(js);
    char *m = malloc(n + 1);
    uint64_t s = 12345;
    dsv3_error err;
    int iters = 5000;
    for (int it = 0; it < iters; it++) {
        memcpy(m, js, n + 1);
        int k = 1 + (int)(s % 4);
        for (int j = 0; j < k; j++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            static const char pool[] = "{}[]\",:0-9e\\u\x80\xff ntf";
            m[(s >> 16) % n] = (s & 1) ? pool[(s >> 8) % (sizeof pool - 1)] : (char)(s >> 24);
        }
        CHECK(try_load(m, n, &err) >= 0);
    }
    free(m);
    free(js);
}

/* Replaces the first occurrence of `from` in the valid JSON by `to` and
 * expects an error of the given code whose message contains `needle`. */
static int expect_error(const char *from, const char *to, dsv3_status code, const char *needle) {
    char *js = valid_json();
    char *p = js ? strstr(js, from) : NULL;
    if (!p) {
        fprintf(stderr, "    test setup: '%s' not found\n", from);
        free(js);
        return 0;
    }
    size_t n = strlen(js), fl = strlen(from), tl = strlen(to);
    char *m = malloc(n - fl + tl + 1);
    memcpy(m, js, (size_t)(p - js));
    memcpy(m + (p - js), to, tl);
    strcpy(m + (p - js) + tl, p + fl);
    dsv3_tokenizer *t = NULL;
    dsv3_error err = {0};
    dsv3_status st = dsv3_tokenizer_load_mem(m, strlen(m), NULL, 0, &t, &err);
    int ok = st == code && strstr(err.msg, needle) != NULL && t == NULL;
    if (!ok) fprintf(stderr, "    '%s' -> '%s': got %d '%s'\n", from, to, st, err.msg);
    dsv3_tokenizer_free(t);
    free(m);
    free(js);
    return ok;
}

TEST(tok_malformed_wrong_types_and_unsupported) {
    int ok = 1;
    ok &= expect_error("\"model\":", "\"modelx\":", DSV3_ERR_FORMAT, "model");
    ok &= expect_error("\"type\":\"BPE\"", "\"type\":\"WordPiece\"", DSV3_ERR_UNSUPPORTED, "WordPiece");
    ok &= expect_error("\"type\":\"BPE\"", "\"type\":7", DSV3_ERR_FORMAT, "model.type");
    ok &= expect_error("\"vocab\":{", "\"vocab\":[],\"x\":{", DSV3_ERR_FORMAT, "model.vocab");
    ok &= expect_error("\"a\":97", "\"a\":\"97\"", DSV3_ERR_FORMAT, "model.vocab[\"a\"]");
    ok &= expect_error("\"a\":97", "\"a\":-1", DSV3_ERR_FORMAT, "model.vocab[\"a\"]");
    ok &= expect_error("\"a\":97", "\"a\":1.5", DSV3_ERR_FORMAT, "model.vocab[\"a\"]");
    ok &= expect_error("\"a\":97", "\"a\":99999999999", DSV3_ERR_FORMAT, "model.vocab[\"a\"]");
    ok &= expect_error("\"a\":97", "\"a\":98", DSV3_ERR_FORMAT, "id 98");
    ok &= expect_error("\"merges\":[", "\"merges\":{},\"y\":[", DSV3_ERR_FORMAT, "model.merges");
    ok &= expect_error("\"a b\"", "\"a b c\"", DSV3_ERR_FORMAT, "merges[0]");
    ok &= expect_error("\"a b\"", "\"a zz\"", DSV3_ERR_FORMAT, "\"zz\" is not in the vocab");
    ok &= expect_error("\"a b\"", "7", DSV3_ERR_FORMAT, "merges[0]");
    ok &= expect_error("\"a b\"", "[\"a\"]", DSV3_ERR_FORMAT, "merges[0]");
    ok &= expect_error("\"a b\"", "\"b a\"", DSV3_ERR_FORMAT, "merged token \"ba\"");
    ok &= expect_error("\"dropout\":null", "\"dropout\":0.1", DSV3_ERR_UNSUPPORTED, "dropout");
    ok &= expect_error("\"fuse_unk\":false", "\"fuse_unk\":1", DSV3_ERR_FORMAT, "fuse_unk");
    ok &= expect_error("\"unk_token\":null", "\"unk_token\":\"<unk>\"", DSV3_ERR_FORMAT, "unk_token");
    ok &= expect_error("\"added_tokens\":[", "\"added_tokens\":{},\"z\":[", DSV3_ERR_FORMAT, "added_tokens");
    ok &= expect_error("\"content\":\"<X>\"", "\"content\":5", DSV3_ERR_FORMAT, "added_tokens[0].content");
    ok &= expect_error("\"id\":300", "\"id\":\"300\"", DSV3_ERR_FORMAT, "added_tokens[0].id");
    ok &= expect_error("\"special\":true", "\"special\":\"yes\"", DSV3_ERR_FORMAT, "special");
    ok &= expect_error("\"normalizers\":[]", "\"normalizers\":[{\"type\":\"Lowercase\"}]", DSV3_ERR_UNSUPPORTED, "Lowercase");
    ok &= expect_error("\"normalizers\":[]", "\"normalizers\":7", DSV3_ERR_FORMAT, "normalizers");
    ok &= expect_error("{\"type\":\"Split\"", "{\"type\":\"Whitespace\",\"x\":{\"a\":\"Split\"}", DSV3_ERR_UNSUPPORTED,
                       "Whitespace");
    ok &= expect_error("\"Isolated\"", "\"Bogus\"", DSV3_ERR_UNSUPPORTED, "Bogus");
    ok &= expect_error("{\"Regex\":\"\\\\p{N}{1,3}\"}", "{\"Regex\":\"(\"}", DSV3_ERR_FORMAT, "regex '('");
    ok &= expect_error("{\"Regex\":\"\\\\p{N}{1,3}\"}", "{\"Regex\":\"[a-z&&[^c]]\"}", DSV3_ERR_UNSUPPORTED, "not supported");
    ok &= expect_error("{\"Regex\":\"\\\\p{N}{1,3}\"}", "{\"Regex\":\"[a[b]]\"}", DSV3_ERR_UNSUPPORTED, "nested");
    ok &= expect_error("{\"Regex\":\"\\\\p{N}{1,3}\"}", "{\"Other\":\"x\"}", DSV3_ERR_UNSUPPORTED, "Other");
    ok &= expect_error("{\"Regex\":\"\\\\p{N}{1,3}\"}", "\"x\"", DSV3_ERR_FORMAT, "Split.pattern");
    ok &= expect_error("\"decoder\":{\"type\":\"ByteLevel\"}", "\"decoder\":{\"type\":\"WordPiece\"}", DSV3_ERR_UNSUPPORTED,
                       "WordPiece");
    ok &= expect_error("\"post_processor\":null", "\"post_processor\":{\"type\":\"BertProcessing\"}", DSV3_ERR_UNSUPPORTED,
                       "BertProcessing");
    ok &= expect_error("\"truncation\":null", "\"truncation\":{\"max_length\":5}", DSV3_ERR_UNSUPPORTED, "truncation");
    ok &= expect_error("\"padding\":null", "\"padding\":{}", DSV3_ERR_UNSUPPORTED, "padding");
    /* ByteLevel must be the last pre-tokenizer */
    ok &= expect_error("{\"type\":\"Split\",", "{\"type\":\"ByteLevel\"},{\"type\":\"Split\",", DSV3_ERR_UNSUPPORTED,
                       "ByteLevel");
    /* JSON-level errors */
    ok &= expect_error("\"version\"", "\"version", DSV3_ERR_FORMAT, "invalid JSON");
    ok &= expect_error("\"version\"", "\"vers\\ud800ion\"", DSV3_ERR_FORMAT, "surrogate");
    ok &= expect_error("\"version\"", "\"vers\xff\"", DSV3_ERR_FORMAT, "UTF-8");
    ok &= expect_error("\"version\"", "\"ver\x01\"", DSV3_ERR_FORMAT, "control character");
    CHECK(ok);
}

TEST(tok_malformed_misc) {
    dsv3_tokenizer *t = NULL;
    dsv3_error err = {0};
    CHECK(dsv3_tokenizer_load_mem("", 0, NULL, 0, &t, &err) == DSV3_ERR_FORMAT);
    CHECK(dsv3_tokenizer_load_mem("[]", 2, NULL, 0, &t, &err) == DSV3_ERR_FORMAT && strstr(err.msg, "top level"));
    CHECK(dsv3_tokenizer_load_mem("{}", 2, NULL, 0, &t, &err) == DSV3_ERR_FORMAT && strstr(err.msg, "model"));
    CHECK(dsv3_tokenizer_load_mem("{} x", 4, NULL, 0, &t, &err) == DSV3_ERR_FORMAT && strstr(err.msg, "trailing"));
    /* very deep nesting is an error, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    CHECK(dsv3_tokenizer_load_mem(deep, 2 * depth, NULL, 0, &t, &err) == DSV3_ERR_FORMAT && strstr(err.msg, "deep"));
    free(deep);
    CHECK(t == NULL);
    /* missing directory / file */
    CHECK(dsv3_tokenizer_load("/nonexistent/tokenizer/dir", &t, &err) == DSV3_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "/nonexistent/tokenizer/dir") != NULL);
    /* a broken tokenizer_config.json is an error too */
    char *js = valid_json();
    CHECK(dsv3_tokenizer_load_mem(js, strlen(js), "{\"bos_token\":", 13, &t, &err) == DSV3_ERR_FORMAT);
    CHECK(strstr(err.msg, "tokenizer_config.json") != NULL);
    /* an unknown chat template loads, but rendering is an error */
    const char *cfg = "{\"chat_template\":\"{% for m in messages %}{{ m.content }}{% endfor %}\"}";
    CHECK(dsv3_tokenizer_load_mem(js, strlen(js), cfg, strlen(cfg), &t, &err) == DSV3_OK);
    char *out = NULL;
    dsv3_chat_message msg = {"user", "hi", NULL, 0};
    CHECK(dsv3_tokenizer_apply_chat_template(t, &msg, 1, 1, &out, NULL, &err) == DSV3_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "chat_template") != NULL && out == NULL);
    dsv3_tokenizer_free(t);
    free(js);
}

/* The real file, truncated at a few places and with a broken model. */
TEST(tok_malformed_real_file) {
    const char *fx = test_fixtures_dir();
    if (!fx) SKIP("fixtures not found");
    char path[4096];
    snprintf(path, sizeof path, "%s/../data/deepseek-v3-tokenizer/tokenizer.json", fx);
    FILE *f = fopen(path, "rb");
    if (!f) SKIP("DeepSeek-V3 tokenizer.json not found");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 64);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    double cuts[] = {0.0001, 0.3, 0.77, 0.99999};
    dsv3_error err;
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        dsv3_tokenizer *t = NULL;
        CHECK(dsv3_tokenizer_load_mem(buf, (size_t)(n * cuts[i]), NULL, 0, &t, &err) == DSV3_ERR_FORMAT);
        CHECK(t == NULL);
    }
    /* model.type -> a number */
    char *p = strstr(buf, "\"type\": \"BPE\"");
    if (!p) p = strstr(buf, "\"type\":\"BPE\"");
    CHECK(p != NULL);
    char *q = strstr(p, "BPE");
    memcpy(q - 1, "12345", 5); /* "BPE" -> 12345 (same length with quotes) */
    dsv3_tokenizer *t = NULL;
    CHECK(dsv3_tokenizer_load_mem(buf, (size_t)n, NULL, 0, &t, &err) == DSV3_ERR_FORMAT);
    CHECK(strstr(err.msg, "model.type") != NULL);
    free(buf);
}

TEST(tok_json_parser) {
    tj_doc d;
    const char *s = "{\"a\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\\/\", \"b\": [1, -2.5e1, true, false, null, {}], \"c\": \"\"}";
    CHECK(tj_parse(s, strlen(s), &d, "t", NULL) == DSV3_OK);
    const tj_val *a = tj_get(&d.root, "a"), *b = tj_get(&d.root, "b"), *c = tj_get(&d.root, "c");
    CHECK(a && a->type == TJ_STR && a->n == 10 && !memcmp(a->u.s, "x\xc3\xa9\xf0\x9f\x98\x80\n\"/", 10));
    CHECK(b && b->type == TJ_ARR && b->n == 6);
    int64_t iv;
    CHECK(tj_int(&b->u.items[0], 0, 10, &iv) == 0 && iv == 1);
    CHECK(b->u.items[1].type == TJ_NUM && b->u.items[1].u.num == -25.0);
    CHECK(tj_int(&b->u.items[1], -100, 100, &iv) == 0 && iv == -25);
    CHECK(b->u.items[2].type == TJ_TRUE && b->u.items[4].type == TJ_NULL && b->u.items[5].type == TJ_OBJ);
    CHECK(c && c->type == TJ_STR && c->n == 0);
    CHECK(tj_get(&d.root, "zz") == NULL && tj_get(a, "x") == NULL);
    tj_free(&d);
    const char *bad[] = {"{\"a\":1,}", "[1 2]", "01", "1.", "-", "\"\\x\"", "\"\\u12\"", "\"\\udc00\"", "{\"a\"}",
                         "[", "nul", "{\"a\":1", "\"abc", "[1e]", "[.5]", "{1:2}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dsv3_error err = {0};
        CHECK_MSG(tj_parse(bad[i], strlen(bad[i]), &d, "t", &err) == DSV3_ERR_FORMAT, "accepted %s", bad[i]);
        CHECK(strstr(err.msg, "invalid JSON") != NULL);
    }
}

TEST(tok_regex_translation) {
    struct { const char *in, *out; } c[] = {
        {"\\s+", "[\\t-\\r\\x{85}\\p{Z}]+"},
        {"\\S", "[^\\t-\\r\\x{85}\\p{Z}]"},
        {"[^\\s\\p{L}]", "[^\\t-\\r\\x{85}\\p{Z}\\p{L}]"},
        {"\\w", "[\\p{L}\\p{M}\\p{N}\\p{Pc}]"},
        {"\\h+", "[0-9a-fA-F]+"},
        {"\\u00e9", "\\x{00e9}"},
        {"(?m:.)", "(?s:.)"},
        {"[]a]", "[]a]"},
        {"[[:alpha:]]", "[[:alpha:]]"},
        {"\\p{N}{1,3}", "\\p{N}{1,3}"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        size_t l;
        char *t = tok_regex_translate(c[i].in, strlen(c[i].in), &l, NULL);
        CHECK_MSG(t && !strcmp(t, c[i].out), "%s -> %s", c[i].in, t ? t : "(error)");
        free(t);
    }
    size_t l;
    dsv3_error err = {0};
    CHECK(tok_regex_translate("[a[b]]", 6, &l, &err) == NULL && err.code == DSV3_ERR_UNSUPPORTED);
    CHECK(tok_regex_translate("ab\\", 3, &l, &err) == NULL && err.code == DSV3_ERR_FORMAT);
    /* semantics: Oniguruma's \s includes U+0085, PCRE2's does not */
    tok_regex re;
    CHECK(tok_regex_compile(&re, "\\s", 2, NULL) == DSV3_OK);
    tok_matcher m;
    CHECK(tok_matcher_init(&m, NULL) == DSV3_OK);
    size_t ms, me;
    CHECK(tok_regex_search(&re, &m, "a\xc2\x85", 3, 0, &ms, &me, NULL) == 1 && ms == 1 && me == 3);
    /* invalid UTF-8 in the subject never matches and is no error */
    CHECK(tok_regex_search(&re, &m, "\xff\xfe", 2, 0, &ms, &me, NULL) == 0);
    tok_matcher_free(&m);
    tok_regex_free(&re);
}

typedef struct {
    const char *messages;
    int agp;
    const char *text;
} chat_case;

/* Rendered by Jinja2 (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
 * as transformers does) with DeepSeek-V3's tokenizer_config.json template. */
static const chat_case k_chat[] = {
    {"[{\"role\": \"system\", \"content\": \"S1\"}, {\"role\": \"user\", \"content\": \"Weather\077\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}, {\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"arguments\": \"{}\"}}]}, {\"role\": \"tool\", \"content\": \"22C\"}, {\"role\": \"tool\", \"content\": \"noon\"}, {\"role\": \"assistant\", \"content\": \"It is 22C at noon.\"}, {\"role\": \"system\", \"content\": \"S2\"}, {\"role\": \"user\", \"content\": \"Thanks\"}]",
     1,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>S1\012\012S2<\357\275\234User\357\275\234>Weather\077<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>get_weather\012```json\012{\"city\": \"Paris\"}\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>\012<\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>get_time\012```json\012{}\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234><\357\275\234tool\342\226\201calls\342\226\201end\357\275\234><\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201begin\357\275\234><\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>22C<\357\275\234tool\342\226\201output\342\226\201end\357\275\234>\012<\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>noon<\357\275\234tool\342\226\201output\342\226\201end\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201end\357\275\234>It is 22C at noon.<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234User\357\275\234>Thanks<\357\275\234Assistant\357\275\234>"},
    {"[{\"role\": \"system\", \"content\": \"S1\"}, {\"role\": \"user\", \"content\": \"Weather\077\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}, {\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"arguments\": \"{}\"}}]}, {\"role\": \"tool\", \"content\": \"22C\"}, {\"role\": \"tool\", \"content\": \"noon\"}, {\"role\": \"assistant\", \"content\": \"It is 22C at noon.\"}, {\"role\": \"system\", \"content\": \"S2\"}, {\"role\": \"user\", \"content\": \"Thanks\"}]",
     0,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>S1\012\012S2<\357\275\234User\357\275\234>Weather\077<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>get_weather\012```json\012{\"city\": \"Paris\"}\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>\012<\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>get_time\012```json\012{}\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234><\357\275\234tool\342\226\201calls\342\226\201end\357\275\234><\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201begin\357\275\234><\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>22C<\357\275\234tool\342\226\201output\342\226\201end\357\275\234>\012<\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>noon<\357\275\234tool\342\226\201output\342\226\201end\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201end\357\275\234>It is 22C at noon.<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234User\357\275\234>Thanks"},
    {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"x\\\":1}\"}}]}, {\"role\": \"tool\", \"content\": \"r\"}]",
     1,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234><\357\275\234User\357\275\234>a<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>f\012```json\012{\"x\":1}\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201begin\357\275\234><\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>r<\357\275\234tool\342\226\201output\342\226\201end\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201end\357\275\234>"},
    {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"x\\\":1}\"}}]}, {\"role\": \"tool\", \"content\": \"r\"}]",
     0,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234><\357\275\234User\357\275\234>a<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>f\012```json\012{\"x\":1}\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201begin\357\275\234><\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>r<\357\275\234tool\342\226\201output\342\226\201end\357\275\234><\357\275\234tool\342\226\201outputs\342\226\201end\357\275\234>"},
    {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"1\"}}]}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"g\", \"arguments\": \"2\"}}]}, {\"role\": \"developer\", \"content\": \"ignored\"}, {\"role\": \"assistant\", \"content\": \"\"}]",
     1,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234><\357\275\234User\357\275\234>a<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>f\012```json\0121\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>\012<\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>g\012```json\0122\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234><\357\275\234tool\342\226\201calls\342\226\201end\357\275\234><\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234Assistant\357\275\234><\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234Assistant\357\275\234>"},
    {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"1\"}}]}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"g\", \"arguments\": \"2\"}}]}, {\"role\": \"developer\", \"content\": \"ignored\"}, {\"role\": \"assistant\", \"content\": \"\"}]",
     0,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234><\357\275\234User\357\275\234>a<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>f\012```json\0121\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>\012<\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>function<\357\275\234tool\342\226\201sep\357\275\234>g\012```json\0122\012```<\357\275\234tool\342\226\201call\342\226\201end\357\275\234><\357\275\234tool\342\226\201calls\342\226\201end\357\275\234><\357\275\234end\342\226\201of\342\226\201sentence\357\275\234><\357\275\234Assistant\357\275\234><\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>"},
    {"[]",
     1,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234><\357\275\234Assistant\357\275\234>"},
    {"[]",
     0,
     "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>"},
};

static dsv3_tokenizer *load_ds(void) {
    const char *fx = test_fixtures_dir();
    if (!fx) return NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/../data/deepseek-v3-tokenizer", fx);
    dsv3_tokenizer *t = NULL;
    if (access(dir, R_OK) || dsv3_tokenizer_load(dir, &t, NULL)) return NULL;
    return t;
}

TEST(tok_chat_template_tool_calls) {
    dsv3_tokenizer *t = load_ds();
    if (!t) SKIP("DeepSeek-V3 tokenizer not found");
    for (size_t i = 0; i < sizeof k_chat / sizeof *k_chat; i++) {
        char *out = NULL;
        size_t ol;
        dsv3_error err = {0};
        dsv3_status st = dsv3_tokenizer_apply_chat_template_json(t, k_chat[i].messages, strlen(k_chat[i].messages),
                                                                 k_chat[i].agp, &out, &ol, &err);
        CHECK_MSG(st == DSV3_OK, "case %zu: %s", i, err.msg);
        CHECK_MSG(ol == strlen(k_chat[i].text) && !strcmp(out, k_chat[i].text), "case %zu:\n got %s\n ref %s", i, out,
                  k_chat[i].text);
        free(out);
    }
    /* the struct API gives the same as JSON */
    dsv3_tool_call tc = {"function", "f", "{\"x\":1}"};
    dsv3_chat_message msgs[] = {{"user", "a", NULL, 0}, {"assistant", NULL, &tc, 1}, {"tool", "r", NULL, 0}};
    char *out;
    CHECK(dsv3_tokenizer_apply_chat_template(t, msgs, 3, 1, &out, NULL, NULL) == DSV3_OK);
    CHECK(!strcmp(out, k_chat[2].text));
    free(out);
    /* what Jinja rejects is an error here too */
    const char *bad[] = {"[{\"role\":\"user\"}]", "[{\"role\":\"user\",\"content\":null}]", "[{\"role\":\"assistant\"}]",
                         "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\",\"function\":"
                         "{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}]",
                         "[{\"role\":\"tool\",\"content\":5}]", "[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]",
                         "{\"role\":\"user\"}", "[1]", "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dsv3_error err = {0};
        out = NULL;
        CHECK_MSG(dsv3_tokenizer_apply_chat_template_json(t, bad[i], strlen(bad[i]), 1, &out, NULL, &err) != DSV3_OK,
                  "accepted %s", bad[i]);
        CHECK(out == NULL && err.msg[0]);
    }
    dsv3_chat_message nocontent = {"system", NULL, NULL, 0};
    CHECK(dsv3_tokenizer_apply_chat_template(t, &nocontent, 1, 1, &out, NULL, NULL) == DSV3_ERR_INVALID);
    dsv3_tokenizer_free(t);
}
