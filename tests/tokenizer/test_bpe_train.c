/* Byte-level BPE trainer: round trips through the project's loader, special
 * tokens, compression, the merge order on a hand-checked example,
 * determinism, the DeepSeek-V3 pre-tokenizer/chat template and the CLI. */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "dsv3/bpe_train.h"
#include "dsv3/tokenizer.h"
#include "../test.h"

/* A few KB of mixed text: English, digits, CJK/kana, accents, emoji, code, odd whitespace. */
static char *sample_text(size_t *len) {
    static const char *parts[] = {
        "In the beginning God created the heaven and the earth. ",
        "And the earth was without form, and void; and darkness was upon the face of the deep.\n",
        "The year 2024 had 366 days; 3.14159 and 1,000,000 are numbers. ",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88"
        "\xe3\x81\xa8\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6\xe3\x80\x82",
        "Caf\xc3\xa9 na\xc3\xafve \xce\xa9\xce\xbc\xce\xad\xce\xb3\xce\xb1 \xd1\x80\xd1\x83\xd1\x81\xd1\x81\xd0\xba"
        "\xd0\xb8\xd0\xb9 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d. ",
        "int main(void) { return x->y[3] + 42; }\n\n",
        "  \t tabs\tand   spaces  \r\n",
        "He said, \"Let there be light\": and there was light!\n",
    };
    size_t np = sizeof parts / sizeof parts[0], cap = 16384, n = 0;
    char *s = malloc(cap);
    uint64_t r = 12345;
    for (int i = 0; i < 90; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        const char *p = parts[(r >> 33) % np];
        size_t l = strlen(p);
        if (n + l + 1 > cap) break;
        memcpy(s + n, p, l);
        n += l;
    }
    s[n] = 0;
    *len = n;
    return s;
}

static dsv3_status train_into(const char *dir, const char *text, size_t len, int32_t vocab, int64_t minf,
                              dsv3_bpe_stats *st, dsv3_error *err) {
    dsv3_bpe_trainer *t;
    dsv3_status s = dsv3_bpe_trainer_new(&t, err);
    if (s) return s;
    if (!(s = dsv3_bpe_trainer_feed(t, text, len, err)) && !(s = dsv3_bpe_trainer_train(t, vocab, minf, err)))
        s = dsv3_bpe_trainer_write(t, dir, err);
    if (st) dsv3_bpe_trainer_stats(t, st);
    dsv3_bpe_trainer_free(t);
    return s;
}

/* The tokenizer trained on sample_text with vocab 400, written once per run. */
static const char *trained_dir(void) {
    static char dir[512];
    static int state; /* 0 untried, 1 ok, -1 failed */
    if (!state) {
        snprintf(dir, sizeof dir, "%s/bpetrain_400", test_tmp_dir());
        size_t n;
        char *s = sample_text(&n);
        dsv3_error err = {0};
        state = train_into(dir, s, n, 400, 2, NULL, &err) ? -1 : 1;
        if (state < 0) fprintf(stderr, "    training failed: %s\n", err.msg);
        free(s);
    }
    return state > 0 ? dir : NULL;
}

static int roundtrip(const dsv3_tokenizer *tok, const char *s, size_t n) {
    dsv3_ids ids = {0};
    dsv3_error err = {0};
    char *dec = NULL;
    size_t dl = 0;
    int ok = dsv3_tokenizer_encode(tok, s, n, 0, &ids, &err) == DSV3_OK &&
             dsv3_tokenizer_decode(tok, ids.data, ids.len, 0, &dec, &dl, &err) == DSV3_OK && dl == n &&
             !memcmp(dec, s, n);
    free(dec);
    dsv3_ids_free(&ids);
    return ok;
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

TEST(bpetrain_roundtrip) {
    const char *dir = trained_dir();
    CHECK(dir);
    dsv3_tokenizer *tok;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_tokenizer_load(dir, &tok, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_tokenizer_vocab_size(tok) == 400);
    static const char *texts[] = {
        "In the beginning God created the heaven and the earth.",
        "",
        " x  \n\n\t\r\n 12345678 3.14",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe4\xb8\xad\xe6\x96\x87 unseen words: zyzzyva quixotic",
        "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd and \xce\xa9",
        "a<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>b",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        CHECK_MSG(roundtrip(tok, texts[i], strlen(texts[i])), "round trip failed on text %zu", i);
    size_t n;
    char *s = sample_text(&n);
    int ok = roundtrip(tok, s, n);
    free(s);
    CHECK(ok);
    /* random bytes, including invalid UTF-8 and NUL */
    uint64_t r = 99;
    char buf[512];
    for (int k = 0; k < 50; k++) {
        size_t len = (size_t)(k * 10);
        for (size_t i = 0; i < len; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            static const char pool[] = " aeEt\n\xc3\xa9\xe6\x97\xa5" "1.";
            buf[i] = k % 2 ? (char)(r & 0xFF) : pool[r % (sizeof pool - 1)];
        }
        if (!roundtrip(tok, buf, len)) {
            dsv3_tokenizer_free(tok);
            CHECK_MSG(0, "random round trip %d failed", k);
        }
    }
    dsv3_tokenizer_free(tok);
}

TEST(bpetrain_special_tokens) {
    const char *dir = trained_dir();
    CHECK(dir);
    dsv3_tokenizer *tok;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_tokenizer_load(dir, &tok, &err) == DSV3_OK, "%s", err.msg);
    int ok = 1;
    for (int i = 0; i < DSV3_BPE_N_SPECIAL; i++) {
        const char *s = dsv3_bpe_special_tokens[i];
        ok &= dsv3_tokenizer_token_to_id(tok, s, strlen(s)) == i && dsv3_tokenizer_is_special(tok, i);
    }
    ok &= dsv3_tokenizer_bos_id(tok) == 0 && dsv3_tokenizer_eos_id(tok) == 1 && dsv3_tokenizer_pad_id(tok) == 2;
    ok &= !dsv3_tokenizer_is_special(tok, 8) && dsv3_tokenizer_has_chat_template(tok);
    /* specials written in text are matched; BOS comes from add_bos_token */
    char text[256];
    snprintf(text, sizeof text, "hi%s%sthe%s", dsv3_bpe_special_tokens[6], dsv3_bpe_special_tokens[7],
             dsv3_bpe_special_tokens[1]);
    dsv3_ids ids = {0};
    ok &= dsv3_tokenizer_encode(tok, text, strlen(text), DSV3_TOK_ADD_SPECIAL, &ids, &err) == DSV3_OK;
    ok &= ids.len >= 5 && ids.data[0] == 0 && ids.data[ids.len - 1] == 1;
    int n6 = 0, n7 = 0;
    for (size_t i = 0; i < ids.len; i++) n6 += ids.data[i] == 6, n7 += ids.data[i] == 7;
    ok &= n6 == 1 && n7 == 1;
    static const char k_msgs[] = "[{\"role\":\"user\",\"content\":\"hi\"}]";
    char *chat = NULL;
    size_t cl;
    ok &= dsv3_tokenizer_apply_chat_template_json(tok, k_msgs, strlen(k_msgs), 1, &chat, &cl,
                                                  &err) == DSV3_OK;
    char want[256];
    snprintf(want, sizeof want, "%s%shi%s", dsv3_bpe_special_tokens[0], dsv3_bpe_special_tokens[6],
             dsv3_bpe_special_tokens[7]);
    ok &= chat && !strcmp(chat, want);
    free(chat);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    CHECK(ok);
}

TEST(bpetrain_compresses) {
    const char *dir = trained_dir();
    CHECK(dir);
    dsv3_tokenizer *tok;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_tokenizer_load(dir, &tok, &err) == DSV3_OK, "%s", err.msg);
    size_t n;
    char *s = sample_text(&n);
    dsv3_ids ids = {0};
    dsv3_status st = dsv3_tokenizer_encode(tok, s, n, 0, &ids, &err);
    size_t nt = ids.len;
    int max_id = 0;
    for (size_t i = 0; i < ids.len; i++) max_id = ids.data[i] > max_id ? ids.data[i] : max_id;
    free(s);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    CHECK(st == DSV3_OK);
    CHECK_MSG(nt * 2 < n, "%zu tokens for %zu bytes", nt, n); /* about 2.4 bytes per token with 136 merges */
    CHECK(max_id > 300); /* merged tokens are used */
}

/* Merge order on a hand-checked example; min_frequency; the byte tokens. */
TEST(bpetrain_merge_order) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bpetrain_small", test_tmp_dir());
    /* words: "ab" " ab" " ab" " cd" " cd" -> pairs (a,b) 3, (Ġ,a) 2, (Ġ,c) 2, (c,d) 2 */
    const char *text = "ab ab ab cd cd";
    dsv3_error err = {0};
    dsv3_bpe_stats st;
    CHECK_MSG(train_into(dir, text, strlen(text), 1000, 2, &st, &err) == DSV3_OK, "%s", err.msg);
    CHECK(st.words == 5 && st.unique_words == 3 && st.bytes == strlen(text));
    /* then ties at 2 go to the smallest left bytes (" " < "c"), then right bytes ("ab" < "c") */
    static const char *want[][2] = {{"a", "b"}, {"\xc4\xa0", "ab"}, {"\xc4\xa0", "c"}, {"\xc4\xa0" "c", "d"}};
    CHECK_MSG(st.merges == 4 && st.vocab_size == 268, "%lld merges, vocab %d", (long long)st.merges, st.vocab_size);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    CHECK(j);
    json_t *model = json_object_get(j, "model"), *merges = json_object_get(model, "merges");
    json_t *vocab = json_object_get(model, "vocab");
    int ok = json_array_size(merges) == 4 && json_object_size(vocab) == 268;
    for (size_t i = 0; ok && i < 4; i++) {
        json_t *m = json_array_get(merges, i);
        ok = !strcmp(json_string_value(json_array_get(m, 0)), want[i][0]) &&
             !strcmp(json_string_value(json_array_get(m, 1)), want[i][1]);
    }
    /* byte tokens: id 8 + b, in byte-level form */
    ok = ok && json_integer_value(json_object_get(vocab, "\xc4\x80")) == 8 &&     /* byte 0 -> U+0100 */
         json_integer_value(json_object_get(vocab, "!")) == 8 + '!' &&
         json_integer_value(json_object_get(vocab, "\xc4\xa0")) == 8 + ' ' &&    /* space -> U+0120 */
         json_integer_value(json_object_get(vocab, "\xc3\xbf")) == 8 + 255 &&
         json_integer_value(json_object_get(vocab, "\xc4\xa0" "cd")) == 267;
    json_decref(j);
    CHECK(ok);
    /* min_frequency 3: only (a,b) qualifies */
    CHECK(train_into(dir, text, strlen(text), 1000, 3, &st, &err) == DSV3_OK);
    CHECK(st.merges == 1 && st.vocab_size == 265);
    /* overlapping runs: "aaaa" x2 -> (a,a) counted 3 per word; after the merge "aa aa" */
    const char *runs = "aaaa aaaa";
    CHECK(train_into(dir, runs, strlen(runs), 1000, 1, &st, &err) == DSV3_OK);
    dsv3_tokenizer *tok;
    CHECK(dsv3_tokenizer_load(dir, &tok, &err) == DSV3_OK);
    dsv3_ids ids = {0};
    CHECK(dsv3_tokenizer_encode(tok, runs, strlen(runs), 0, &ids, &err) == DSV3_OK);
    size_t nt = ids.len;
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    CHECK_MSG(nt == 2, "%zu tokens", nt); /* "aaaa" and " aaaa" became single tokens */
    /* errors */
    CHECK(train_into(dir, text, strlen(text), 263, 2, NULL, &err) == DSV3_ERR_INVALID);
    CHECK(train_into(dir, text, strlen(text), 300, 0, NULL, &err) == DSV3_ERR_INVALID);
}

TEST(bpetrain_deterministic) {
    size_t n;
    char *s = sample_text(&n);
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/bpetrain_det1", test_tmp_dir());
    snprintf(d2, sizeof d2, "%s/bpetrain_det2", test_tmp_dir());
    dsv3_error err = {0};
    dsv3_status st = train_into(d1, s, n, 400, 2, NULL, &err);
    /* feeding the same pieces in another order gives the same result */
    dsv3_bpe_trainer *t = NULL;
    size_t half = n / 2;
    while (half < n && s[half] != '\n') half++;
    if (!st) st = dsv3_bpe_trainer_new(&t, &err);
    if (!st) st = dsv3_bpe_trainer_feed(t, s + half, n - half, &err);
    if (!st) st = dsv3_bpe_trainer_feed(t, s, half, &err);
    if (!st) st = dsv3_bpe_trainer_train(t, 400, 2, &err);
    if (!st) st = dsv3_bpe_trainer_write(t, d2, &err);
    dsv3_bpe_trainer_free(t);
    free(s);
    CHECK_MSG(st == DSV3_OK, "%s", err.msg);
    const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char p1[600], p2[600];
        snprintf(p1, sizeof p1, "%s/%s", d1, files[i]);
        snprintf(p2, sizeof p2, "%s/%s", d2, files[i]);
        size_t n1 = 0, n2 = 0;
        char *a = read_file(p1, &n1), *b = read_file(p2, &n2);
        int same = a && b && n1 == n2 && !memcmp(a, b, n1);
        free(a);
        free(b);
        CHECK_MSG(same, "%s differs between runs", files[i]);
    }
}

/* The JSON value of the first "key": in file path (parsing stops after that
 * value, so the 7 MB DeepSeek tokenizer.json is not parsed whole). */
static json_t *first_value(const char *path, const char *key) {
    size_t n;
    char *s = read_file(path, &n);
    if (!s) return NULL;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *p = strstr(s, pat);
    json_t *v = p ? json_loads(p + strlen(pat), JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, NULL) : NULL;
    free(s);
    return v;
}

/* The pre-tokenizer, decoder and chat template are exactly DeepSeek-V3's (when its files are here). */
TEST(bpetrain_matches_deepseek_files) {
    const char *dir = trained_dir();
    CHECK(dir);
    const char *fx = test_fixtures_dir();
    char ds[4096], mine[4200];
    snprintf(ds, sizeof ds, "%s/../data/deepseek-v3-tokenizer", fx ? fx : "../shared/data");
    snprintf(mine, sizeof mine, "%s/tokenizer.json", ds);
    if (access(mine, R_OK) != 0) SKIP("DeepSeek-V3 tokenizer files not found");
    static const char *items[][2] = {{"tokenizer.json", "pre_tokenizer"},
                                     {"tokenizer.json", "decoder"},
                                     {"tokenizer_config.json", "chat_template"}};
    for (int i = 0; i < 3; i++) {
        char p1[4200], p2[700];
        snprintf(p1, sizeof p1, "%s/%s", ds, items[i][0]);
        snprintf(p2, sizeof p2, "%s/%s", dir, items[i][0]);
        json_t *a = first_value(p1, items[i][1]), *b = first_value(p2, items[i][1]);
        int ok = a && b && json_equal(a, b);
        json_decref(a);
        json_decref(b);
        CHECK_MSG(ok, "%s %s differs from DeepSeek-V3's", items[i][0], items[i][1]);
    }
}

TEST(bpetrain_cli) {
    char in[512], dir[512], api[512];
    snprintf(in, sizeof in, "%s/bpetrain_in.txt", test_tmp_dir());
    snprintf(dir, sizeof dir, "%s/bpetrain_cli/sub", test_tmp_dir());
    size_t n;
    char *s = sample_text(&n);
    FILE *f = fopen(in, "wb");
    CHECK(f);
    fwrite(s, 1, n, f);
    fclose(f);
    free(s);
    char *argv[] = {"tokenizer-train", "--input", in, "--vocab-size", "400", "--out", dir,
                    "--special-tokens", "default", "--min-frequency", "2", NULL};
    CHECK(test_run_cli(cmd_tokenizer_train, 11, argv, NULL) == 0);
    /* same as the API on the same text */
    const char *ref = trained_dir();
    CHECK(ref);
    snprintf(api, sizeof api, "%s/tokenizer.json", ref);
    char mine[600];
    snprintf(mine, sizeof mine, "%s/tokenizer.json", dir);
    size_t n1 = 0, n2 = 0;
    char *a = read_file(api, &n1), *b = read_file(mine, &n2);
    int same = a && b && n1 == n2 && !memcmp(a, b, n1);
    free(a);
    free(b);
    CHECK(same);
    char *missing[] = {"tokenizer-train", "--input", "/nonexistent/file.txt", "--vocab-size", "400", "--out", dir, NULL};
    CHECK(test_run_cli(cmd_tokenizer_train, 7, missing, NULL) == 1);
    char *small[] = {"tokenizer-train", "--input", in, "--vocab-size", "100", "--out", dir, NULL};
    CHECK(test_run_cli(cmd_tokenizer_train, 7, small, NULL) == 2);
    char *nospec[] = {"tokenizer-train", "--input", in, "--vocab-size", "400", "--out", dir, "--special-tokens", "x", NULL};
    CHECK(test_run_cli(cmd_tokenizer_train, 9, nospec, NULL) == 2);
}
