/* DeepSeek-V3 tokenizer against the HF reference fixtures, round trips, the
 * hand-written matchers against PCRE2, streaming decode and the CLI. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "dsv3/tokenizer.h"
#include "../test.h"
#include "tokenizer/tokenizer_internal.h"

static dsv3_tokenizer *g_tok;
static int g_tried;

static const char *tok_dir(void) {
    static char buf[4096];
    const char *fx = test_fixtures_dir();
    if (!fx) return NULL;
    snprintf(buf, sizeof buf, "%s/../data/deepseek-v3-tokenizer", fx);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

/* The real tokenizer, loaded once for this file. */
static dsv3_tokenizer *ds_tok(void) {
    if (!g_tried) {
        g_tried = 1;
        const char *d = tok_dir();
        dsv3_error err = {0};
        if (d && dsv3_tokenizer_load(d, &g_tok, &err)) {
            fprintf(stderr, "    load failed: %s\n", err.msg);
            g_tok = NULL;
        }
    }
    return g_tok;
}

__attribute__((destructor)) static void free_ds_tok(void) {
    dsv3_tokenizer_free(g_tok);
    g_tok = NULL;
}

static uint64_t g_rs = 88172645463325252ull;
static uint64_t rnd(void) {
    g_rs ^= g_rs << 13;
    g_rs ^= g_rs >> 7;
    g_rs ^= g_rs << 17;
    return g_rs;
}

/* Reads a JSONL fixture into an array of objects (NULL-terminated). */
static json_t **read_jsonl(const char *name, size_t *n) {
    const char *fx = test_fixtures_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", fx, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    json_t **v = NULL;
    size_t cnt = 0, cap = 0;
    char *line = NULL;
    size_t lc = 0;
    while (getline(&line, &lc, f) >= 0) {
        json_t *o = json_loads(line, JSON_ALLOW_NUL, NULL);
        if (!o) continue;
        if (cnt + 2 > cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof *v);
        }
        v[cnt++] = o;
        v[cnt] = NULL;
    }
    free(line);
    fclose(f);
    *n = cnt;
    return v;
}

static void free_jsonl(json_t **v, size_t n) {
    for (size_t i = 0; i < n; i++) json_decref(v[i]);
    free(v);
}

static int ids_equal(const dsv3_ids *ids, json_t *arr) {
    if (!json_is_array(arr) || json_array_size(arr) != ids->len) return 0;
    for (size_t i = 0; i < ids->len; i++)
        if (json_integer_value(json_array_get(arr, i)) != ids->data[i]) return 0;
    return 1;
}

static void check_reference(int disable_fast) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer or fixtures not found");
    size_t n;
    json_t **lines = read_jsonl("tokenizer_reference.jsonl", &n);
    if (!lines) SKIP("tokenizer_reference.jsonl not found");
    tok->disable_fast = disable_fast;
    dsv3_ids ids = {0};
    dsv3_error err = {0};
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_object_get(lines[i], "text");
        ids.len = 0;
        if (dsv3_tokenizer_encode(tok, json_string_value(t), json_string_length(t), 0, &ids, &err)) {
            fprintf(stderr, "    line %zu: %s\n", i + 1, err.msg);
            bad++;
            continue;
        }
        if (!ids_equal(&ids, json_object_get(lines[i], "ids"))) {
            if (bad < 3) fprintf(stderr, "    line %zu differs: %.60s\n", i + 1, json_string_value(t));
            bad++;
        }
        char *dec;
        size_t dl;
        if (dsv3_tokenizer_decode(tok, ids.data, ids.len, 0, &dec, &dl, &err) == DSV3_OK) {
            if (dl != json_string_length(t) || memcmp(dec, json_string_value(t), dl)) {
                fprintf(stderr, "    line %zu: decode(encode(text)) != text\n", i + 1);
                bad++;
            }
            free(dec);
        } else {
            bad++;
        }
    }
    tok->disable_fast = 0;
    dsv3_ids_free(&ids);
    free_jsonl(lines, n);
    CHECK_MSG(n >= 80, "only %zu reference lines", n);
    CHECK_MSG(bad == 0, "%zu of %zu reference lines differ", bad, n);
}

TEST(tok_reference_ids) { check_reference(0); }
TEST(tok_reference_ids_pcre2_path) { check_reference(1); }

TEST(tok_chat_template_reference) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer or fixtures not found");
    size_t n;
    json_t **lines = read_jsonl("chat_template_reference.jsonl", &n);
    if (!lines) SKIP("chat_template_reference.jsonl not found");
    CHECK(dsv3_tokenizer_has_chat_template(tok));
    size_t bad = 0;
    dsv3_ids ids = {0};
    for (size_t i = 0; i < n; i++) {
        char *mj = json_dumps(json_object_get(lines[i], "messages"), JSON_COMPACT);
        int agp = json_is_true(json_object_get(lines[i], "add_generation_prompt"));
        char *text = NULL;
        size_t tl;
        dsv3_error err = {0};
        if (dsv3_tokenizer_apply_chat_template_json(tok, mj, strlen(mj), agp, &text, &tl, &err)) {
            fprintf(stderr, "    line %zu: %s\n", i + 1, err.msg);
            bad++;
        } else {
            const char *ref = json_string_value(json_object_get(lines[i], "text"));
            if (!ref || strcmp(ref, text)) {
                fprintf(stderr, "    line %zu: text differs:\n      got %s\n      ref %s\n", i + 1, text, ref);
                bad++;
            }
            ids.len = 0;
            if (dsv3_tokenizer_encode(tok, text, tl, 0, &ids, &err) || !ids_equal(&ids, json_object_get(lines[i], "ids"))) {
                fprintf(stderr, "    line %zu: ids differ\n", i + 1);
                bad++;
            }
        }
        free(text);
        free(mj);
    }
    dsv3_ids_free(&ids);
    free_jsonl(lines, n);
    CHECK(n == 6);
    CHECK_MSG(bad == 0, "%zu chat template lines differ", bad);
}

TEST(tok_vocab_and_special_ids) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer not found");
    CHECK(dsv3_tokenizer_vocab_size(tok) == 128815);
    CHECK(dsv3_tokenizer_bos_id(tok) == 0);
    CHECK(dsv3_tokenizer_eos_id(tok) == 1);
    CHECK(dsv3_tokenizer_pad_id(tok) == 1);
    const char *bos = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    CHECK(dsv3_tokenizer_token_to_id(tok, bos, strlen(bos)) == 0);
    CHECK(dsv3_tokenizer_is_special(tok, 0));
    CHECK(!dsv3_tokenizer_is_special(tok, 128803)); /* <｜User｜> is a non-special added token */
    CHECK(!dsv3_tokenizer_is_special(tok, 19923));
    size_t l;
    const char *s = dsv3_tokenizer_id_to_token(tok, 128803, &l);
    CHECK(s && l == strlen("<\xef\xbd\x9cUser\xef\xbd\x9c>") && !memcmp(s, "<\xef\xbd\x9cUser\xef\xbd\x9c>", l));
    s = dsv3_tokenizer_id_to_token(tok, 2058, &l); /* "Ġworld" */
    CHECK(s && l == 7 && !memcmp(s, "\xc4\xa0world", 7));
    CHECK(dsv3_tokenizer_token_to_id(tok, "\xc4\xa0world", 7) == 2058);
    s = dsv3_tokenizer_token_bytes(tok, 2058, &l);
    CHECK(s && l == 6 && !memcmp(s, " world", 6));
    CHECK(dsv3_tokenizer_id_to_token(tok, -1, NULL) == NULL);
    CHECK(dsv3_tokenizer_id_to_token(tok, 128815, NULL) == NULL);
    CHECK(dsv3_tokenizer_token_to_id(tok, "no such token", 13) == -1);
    /* flags: BOS from tokenizer_config.json add_bos_token */
    dsv3_ids ids = {0};
    CHECK(dsv3_tokenizer_encode(tok, "Hello world", 11, DSV3_TOK_ADD_SPECIAL, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 3 && ids.data[0] == 0 && ids.data[1] == 19923 && ids.data[2] == 2058);
    /* encode appends */
    CHECK(dsv3_tokenizer_encode(tok, "Hello", 5, 0, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 4 && ids.data[3] == 19923);
    dsv3_ids_free(&ids);
    /* decode: unknown ids are errors; skip_special drops BOS */
    int32_t bad_ids[] = {19923, 999999};
    char *out = NULL;
    size_t ol;
    dsv3_error err = {0};
    CHECK(dsv3_tokenizer_decode(tok, bad_ids, 2, 0, &out, &ol, &err) == DSV3_ERR_INVALID);
    CHECK(strstr(err.msg, "999999") != NULL);
    int32_t with_bos[] = {0, 19923, 128803};
    CHECK(dsv3_tokenizer_decode(tok, with_bos, 3, DSV3_TOK_SKIP_SPECIAL, &out, &ol, NULL) == DSV3_OK);
    CHECK(!strcmp(out, "Hello<\xef\xbd\x9cUser\xef\xbd\x9c>"));
    free(out);
}

/* decode(encode(x)) == x for random byte strings, invalid UTF-8 included. */
TEST(tok_roundtrip_random_bytes) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer not found");
    static const char *frags[] = {"<\xef\xbd\x9cUser\xef\xbd\x9c>", " the", "\r\n", "  ", "123", "\xe4\xb8\xad\xe6\x96\x87",
                                  "\xf0\x9f\x98\x80", "\xc3\xa9", "'s", "\xef\xbd\x9c", "<\xef\xbd\x9c"};
    int count = 10000;
    dsv3_ids ids = {0};
    dsv3_error err = {0};
    unsigned char buf[160];
    int bad = 0;
    for (int it = 0; it < count && bad < 3; it++) {
        size_t n = 0, target = (size_t)(rnd() % 96);
        while (n < target) {
            uint64_t r = rnd();
            switch (r % 5) {
            case 0: buf[n++] = (unsigned char)(r >> 8); break; /* any byte */
            case 1: buf[n++] = (unsigned char)(0x80 + (r >> 8) % 0x80); break; /* stray high byte */
            case 2: buf[n++] = (unsigned char)(0x20 + (r >> 8) % 0x5F); break; /* ASCII */
            case 3: {                                                       /* a random valid code point */
                int32_t cp = (int32_t)((r >> 8) % 0x110000);
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x41;
                n += (size_t)tok_utf8_encode(cp, (char *)buf + n);
                break;
            }
            default: {
                const char *f = frags[(r >> 8) % (sizeof frags / sizeof *frags)];
                size_t fl = strlen(f);
                memcpy(buf + n, f, fl);
                n += fl;
            }
            }
        }
        ids.len = 0;
        if (dsv3_tokenizer_encode(tok, (const char *)buf, n, 0, &ids, &err)) {
            fprintf(stderr, "    encode failed: %s\n", err.msg);
            bad++;
            continue;
        }
        char *dec;
        size_t dl;
        if (dsv3_tokenizer_decode(tok, ids.data, ids.len, 0, &dec, &dl, &err) || dl != n || memcmp(dec, buf, n)) bad++;
        if (dec) free(dec);
    }
    dsv3_ids_free(&ids);
    CHECK_MSG(bad == 0, "%d random byte strings did not round-trip", bad);
}

/* Random strings over characters whose class is the same in our Unicode 16
 * table and in PCRE2's Unicode 14 data (they differ only on newly assigned
 * code points): the hand-written matchers must split exactly like PCRE2. */
static size_t random_text(unsigned char *buf, size_t cap) {
    static const int32_t picks[] = {' ', ' ', '\t', '\n', '\r', 0x0B, 0x85, 0xA0, 0x3000, 0x2028, 'a', 'Z', 'q', '1', '9',
                                    '.', '\'', '"', '-', '_', '$', '<', '|', 0x301, 0x300, 0x20DD, 0xE9, 0x4E2D, 0x9FA5,
                                    0x9FA6, 0x3042, 0x30A2, 0x30FB, 0x30FC, 0x309B, 0x3099, 0x200B, 0x200D, 0x1F600,
                                    0x1F3FD, 0x661, 0xB2, 0xBD, 0x2163, 0x5D0, 0x627, 0x915, 0x94D, 0xE01, 0xAC00, 0xFF21,
                                    0xFF11, 0x201C, 0x2014, 0x2026, 0x20AC, 0xE000, 0};
    size_t n = 0, target = (size_t)(rnd() % 48);
    while (n + 4 < cap && n < target) {
        uint64_t r = rnd();
        if (r % 13 == 0) {
            buf[n++] = (unsigned char)(0x80 + (r >> 8) % 0x80); /* invalid byte */
            continue;
        }
        int32_t cp;
        if (r % 7 == 0) {
            do {
                cp = (int32_t)((r >> 8) % 0x30000);
                r = rnd();
            } while ((cp >= 0xD800 && cp <= 0xDFFF) || tok_uclass_get(cp) != tok_uclass_pcre2(cp));
        } else {
            cp = picks[(r >> 8) % (sizeof picks / sizeof *picks)];
        }
        n += (size_t)tok_utf8_encode(cp, (char *)buf + n);
    }
    return n;
}

TEST(tok_fast_matchers_equal_pcre2) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer not found");
    int nfast = 0;
    for (int i = 0; i < tok->n_pre; i++) nfast += tok->pre[i].re.fast != TOK_FAST_NONE;
    CHECK_MSG(nfast == 3, "expected the 3 DeepSeek Split regexes to have fast matchers, got %d", nfast);
    dsv3_tok_encoder *enc;
    CHECK(dsv3_tok_encoder_new(tok, &enc, NULL) == DSV3_OK);
    tok_evvec a = {0}, b = {0};
    unsigned char buf[256];
    int iters = 20000, bad = 0;
    for (int it = 0; it < iters && bad < 3; it++) {
        size_t n = random_text(buf, sizeof buf);
        for (int k = 0; k < tok->n_pre; k++) {
            const tok_regex *re = &tok->pre[k].re;
            if (!re->fast) continue;
            a.n = b.n = 0;
            CHECK(tok_find_matches(enc, re, 1, (const char *)buf, n, &a, NULL) == DSV3_OK);
            CHECK(tok_find_matches(enc, re, 0, (const char *)buf, n, &b, NULL) == DSV3_OK);
            int same = a.n == b.n;
            for (size_t i = 0; same && i < a.n; i++)
                same = a.v[i].s == b.v[i].s && a.v[i].e == b.v[i].e && a.v[i].m == b.v[i].m;
            if (!same) {
                fprintf(stderr, "    regex %d differs on:", k);
                for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", buf[i]);
                fprintf(stderr, "\n");
                bad++;
            }
        }
    }
    free(a.v);
    free(b.v);
    dsv3_tok_encoder_free(enc);
    CHECK_MSG(bad == 0, "%d strings split differently", bad);
}

TEST(tok_stream_decode) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer not found");
    const char *texts[] = {"Hello \xe4\xb8\xad\xe6\x96\x87 world \xf0\x9f\x98\x80\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5!",
                           "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88",
                           "caf\xc3\xa9 na\xc3\xafve \xd0\xa0\xd1\x83\xd1\x81 \xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2",
                           "bad \xff\xfe bytes \xe4\xb8 cut"};
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        const char *x = texts[t];
        size_t xl = strlen(x);
        int valid = tok_utf8_valid((const unsigned char *)x, xl);
        dsv3_ids ids = {0};
        CHECK(dsv3_tokenizer_encode(tok, x, xl, 0, &ids, NULL) == DSV3_OK);
        dsv3_tok_stream s;
        dsv3_tok_stream_init(&s, tok, 0);
        char out[512];
        size_t ol = 0;
        for (size_t i = 0; i < ids.len; i++) {
            const char *piece;
            size_t pl;
            CHECK(dsv3_tok_stream_push(&s, ids.data[i], &piece, &pl, NULL) == DSV3_OK);
            if (valid) CHECK(tok_utf8_valid((const unsigned char *)piece, pl)); /* never a split character */
            CHECK(ol + pl < sizeof out);
            memcpy(out + ol, piece, pl);
            ol += pl;
        }
        const char *rest;
        size_t rl;
        dsv3_tok_stream_flush(&s, &rest, &rl);
        memcpy(out + ol, rest, rl);
        ol += rl;
        CHECK(ol == xl && !memcmp(out, x, xl));
        const char *p;
        size_t pl;
        CHECK(dsv3_tok_stream_push(&s, -5, &p, &pl, NULL) == DSV3_ERR_INVALID);
        dsv3_tok_stream_free(&s);
        dsv3_ids_free(&ids);
    }
    /* a 4-byte character split over byte tokens comes out whole */
    int32_t bytes_ids[4];
    const unsigned char emoji[] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 4; i++) bytes_ids[i] = tok->byte_id[emoji[i]];
    dsv3_tok_stream s;
    dsv3_tok_stream_init(&s, tok, 0);
    const char *p;
    size_t pl;
    for (int i = 0; i < 3; i++) {
        CHECK(dsv3_tok_stream_push(&s, bytes_ids[i], &p, &pl, NULL) == DSV3_OK);
        CHECK(pl == 0);
    }
    CHECK(dsv3_tok_stream_push(&s, bytes_ids[3], &p, &pl, NULL) == DSV3_OK);
    CHECK(pl == 4 && !memcmp(p, emoji, 4));
    dsv3_tok_stream_free(&s);
}

TEST(tok_encoder_threads_share_tokenizer) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer not found");
    /* two encoders on one tokenizer give the same ids as the default one */
    const char *x = "Mixed: DeepSeek-V3\xe6\x98\xaf\xe4\xb8\x80\xe4\xb8\xaa 671B MoE.";
    dsv3_tok_encoder *e1, *e2;
    CHECK(dsv3_tok_encoder_new(tok, &e1, NULL) == DSV3_OK);
    CHECK(dsv3_tok_encoder_new(tok, &e2, NULL) == DSV3_OK);
    dsv3_ids a = {0}, b = {0}, c = {0};
    for (int r = 0; r < 3; r++) { /* second round hits the caches */
        a.len = b.len = c.len = 0;
        CHECK(dsv3_tok_encoder_encode(e1, x, strlen(x), 0, &a, NULL) == DSV3_OK);
        CHECK(dsv3_tok_encoder_encode(e2, x, strlen(x), 0, &b, NULL) == DSV3_OK);
        CHECK(dsv3_tokenizer_encode(tok, x, strlen(x), 0, &c, NULL) == DSV3_OK);
        CHECK(a.len == b.len && a.len == c.len && a.len > 5);
        CHECK(!memcmp(a.data, b.data, a.len * 4) && !memcmp(a.data, c.data, a.len * 4));
    }
    dsv3_ids_free(&a);
    dsv3_ids_free(&b);
    dsv3_ids_free(&c);
    dsv3_tok_encoder_free(e1);
    dsv3_tok_encoder_free(e2);
}

typedef struct {
    dsv3_tokenizer *tok;
    int own_encoder;
    int ok;
} thread_arg;

static void *encode_thread(void *p) {
    thread_arg *a = p;
    const char *x = "Hello, \xe4\xb8\xad\xe6\x96\x87 12345 <\xef\xbd\x9cUser\xef\xbd\x9c> world!!\n";
    dsv3_ids ref = {0}, ids = {0};
    dsv3_tok_encoder *enc = NULL;
    a->ok = dsv3_tokenizer_encode(a->tok, x, strlen(x), 0, &ref, NULL) == DSV3_OK;
    if (a->own_encoder) a->ok &= dsv3_tok_encoder_new(a->tok, &enc, NULL) == DSV3_OK;
    for (int i = 0; i < 300 && a->ok; i++) {
        ids.len = 0;
        dsv3_status st = enc ? dsv3_tok_encoder_encode(enc, x, strlen(x), 0, &ids, NULL)
                             : dsv3_tokenizer_encode(a->tok, x, strlen(x), 0, &ids, NULL);
        a->ok &= st == DSV3_OK && ids.len == ref.len && !memcmp(ids.data, ref.data, ids.len * sizeof(int32_t));
    }
    dsv3_tok_encoder_free(enc);
    dsv3_ids_free(&ref);
    dsv3_ids_free(&ids);
    return NULL;
}

TEST(tok_threads) {
    dsv3_tokenizer *tok = ds_tok();
    if (!tok) SKIP("DeepSeek-V3 tokenizer not found");
    pthread_t th[6];
    thread_arg args[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (thread_arg){tok, i % 2, 0};
        CHECK(pthread_create(&th[i], NULL, encode_thread, &args[i]) == 0);
    }
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 6; i++) CHECK_MSG(args[i].ok, "thread %d got different ids", i);
}

TEST(tok_cli_tokenize_jsonl) {
    const char *d = tok_dir();
    if (!d) SKIP("DeepSeek-V3 tokenizer not found");
    char ref[4096], out[4096];
    snprintf(ref, sizeof ref, "%s/tokenizer_reference.jsonl", test_fixtures_dir());
    snprintf(out, sizeof out, "%s/tok_cli_ids.txt", test_tmp_dir());
    char *argv[] = {"tokenize", "--tokenizer", (char *)d, "--jsonl", ref, NULL};
    CHECK(test_run_cli(cmd_tokenize, 5, argv, out) == 0);
    size_t n;
    json_t **lines = read_jsonl("tokenizer_reference.jsonl", &n);
    FILE *f = fopen(out, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0, i = 0, bad = 0;
    while (getline(&line, &cap, f) >= 0 && i < n) {
        json_t *got = json_loads(line, 0, NULL);
        if (!json_equal(got, json_object_get(lines[i], "ids"))) bad++;
        json_decref(got);
        i++;
    }
    free(line);
    fclose(f);
    free_jsonl(lines, n);
    CHECK(i == n && bad == 0);
    /* --text */
    char *argv2[] = {"tokenize", "--tokenizer", (char *)d, "--text", "Hello world", NULL};
    CHECK(test_run_cli(cmd_tokenize, 5, argv2, out) == 0);
    f = fopen(out, "r");
    char buf[256] = {0};
    CHECK(f && fgets(buf, sizeof buf, f));
    fclose(f);
    CHECK(!strcmp(buf, "[19923, 2058]\n"));
    /* usage errors */
    char *argv3[] = {"tokenize", "--tokenizer", (char *)d, NULL};
    CHECK(test_run_cli(cmd_tokenize, 3, argv3, out) == 2);
    char *argv4[] = {"tokenize", "--tokenizer", "/nonexistent/dir", "--text", "x", NULL};
    CHECK(test_run_cli(cmd_tokenize, 5, argv4, out) == 1);
}

TEST(tok_cli_detokenize_and_chat) {
    const char *d = tok_dir();
    if (!d) SKIP("DeepSeek-V3 tokenizer not found");
    char out[4096], ref[4096];
    snprintf(out, sizeof out, "%s/tok_cli_out.txt", test_tmp_dir());
    char *argv[] = {"detokenize", "--tokenizer", (char *)d, "--ids", "19923,14,1026,6397", NULL};
    CHECK(test_run_cli(cmd_detokenize, 5, argv, out) == 0);
    FILE *f = fopen(out, "r");
    char buf[256] = {0};
    CHECK(f && fgets(buf, sizeof buf, f));
    fclose(f);
    CHECK(!strcmp(buf, "Hello, my dog\n"));
    char *bad[] = {"detokenize", "--tokenizer", (char *)d, "--ids", "1,x", NULL};
    CHECK(test_run_cli(cmd_detokenize, 5, bad, out) == 2);

    snprintf(ref, sizeof ref, "%s/chat_template_reference.jsonl", test_fixtures_dir());
    char *argv2[] = {"chat-template", "--tokenizer", (char *)d, "--jsonl", ref, NULL};
    CHECK(test_run_cli(cmd_chat_template, 5, argv2, out) == 0);
    size_t n;
    json_t **lines = read_jsonl("chat_template_reference.jsonl", &n);
    f = fopen(out, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0, i = 0, nbad = 0;
    while (getline(&line, &cap, f) >= 0 && i < n) {
        json_t *got = json_loads(line, 0, NULL);
        if (!json_equal(json_object_get(got, "text"), json_object_get(lines[i], "text")) ||
            !json_equal(json_object_get(got, "ids"), json_object_get(lines[i], "ids")))
            nbad++;
        json_decref(got);
        i++;
    }
    free(line);
    fclose(f);
    free_jsonl(lines, n);
    CHECK(i == n && nbad == 0);
}
