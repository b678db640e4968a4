/* tokenize-corpus: document splitting, EOS packing, FIM structure and
 * determinism, the shard written by the CLI, and errors. Uses a tokenizer
 * trained in the temp dir (and the DeepSeek-V3 one when present). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "dsv3/bpe_train.h"
#include "dsv3/corpus.h"
#include "dsv3/data.h"
#include "dsv3/tokenizer.h"
#include "../test.h"

#define EOS_STR "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

/* Documents of the test corpus (blank-line separated in the file). */
static const char *k_docs[] = {
    "In the beginning God created the heaven and the earth.\nAnd the earth was without form.",
    "Verse 12: 3 + 4 = 7; \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88",
    "Caf\xc3\xa9 \xce\xa9\xce\xbc\xce\xad\xce\xb3\xce\xb1 \xf0\x9f\x98\x80 and the light.",
    "x",
    "And God said, Let there be light: and there was light.\n  indented line\n\tand a tab",
};
#define N_DOCS (sizeof k_docs / sizeof k_docs[0])

/* The corpus file: documents separated by varied blank lines. */
static const char *corpus_file(void) {
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/corpus_in.txt", test_tmp_dir());
        FILE *f = fopen(path, "wb");
        if (!f) return NULL;
        static const char *seps[] = {"\n\n", "\n \n\n", "\r\n\r\n", "\n\t\n"};
        fputs("\n\n", f);
        for (size_t i = 0; i < N_DOCS; i++) fprintf(f, "%s%s", k_docs[i], seps[i % 4]);
        fclose(f);
    }
    return path;
}

/* A small tokenizer trained on the documents (once per run). */
static const char *tok_dir(void) {
    static char dir[512];
    static int state;
    if (!state) {
        snprintf(dir, sizeof dir, "%s/corpus_tok", test_tmp_dir());
        dsv3_bpe_trainer *t;
        dsv3_error err = {0};
        dsv3_status st = dsv3_bpe_trainer_new(&t, &err);
        for (int rep = 0; !st && rep < 20; rep++)
            for (size_t i = 0; !st && i < N_DOCS; i++) st = dsv3_bpe_trainer_feed(t, k_docs[i], strlen(k_docs[i]), &err);
        if (!st) st = dsv3_bpe_trainer_train(t, 320, 2, &err);
        if (!st) st = dsv3_bpe_trainer_write(t, dir, &err);
        dsv3_bpe_trainer_free(t);
        if (st) fprintf(stderr, "    training failed: %s\n", err.msg);
        state = st ? -1 : 1;
    }
    return state > 0 ? dir : NULL;
}

static dsv3_tokenizer *load_tok(void) {
    const char *d = tok_dir();
    dsv3_tokenizer *tok = NULL;
    dsv3_error err = {0};
    if (d && dsv3_tokenizer_load(d, &tok, &err)) fprintf(stderr, "    %s\n", err.msg);
    return tok;
}

static char *decode(const dsv3_tokenizer *tok, const int32_t *ids, size_t n, size_t *len) {
    char *s = NULL;
    dsv3_error err = {0};
    if (dsv3_tokenizer_decode(tok, ids, n, 0, &s, len, &err)) return NULL;
    return s;
}

TEST(corpus_split_modes) {
    const char *t = "\n a\r\nb\n\n  \n\tc\n\nd e\r\n\r\nlast";
    dsv3_doc_span *d;
    size_t n;
    dsv3_error err = {0};
    CHECK(dsv3_corpus_split(t, strlen(t), DSV3_DOCS_BLANK_LINE, &d, &n, &err) == DSV3_OK);
    int ok = n == 4 && d[0].off == 1 && d[0].len == 5 && !memcmp(t + 1, " a\r\nb", 5) && d[1].len == 2 &&
             !memcmp(t + d[1].off, "\tc", 2) && d[2].len == 3 && !memcmp(t + d[2].off, "d e", 3) &&
             d[3].len == 4 && !memcmp(t + d[3].off, "last", 4);
    free(d);
    CHECK(ok);
    CHECK(dsv3_corpus_split(t, strlen(t), DSV3_DOCS_LINE, &d, &n, &err) == DSV3_OK);
    ok = n == 5 && d[0].len == 2 && !memcmp(t + d[0].off, " a", 2) && d[1].len == 1 && d[4].len == 4;
    free(d);
    CHECK(ok);
    CHECK(dsv3_corpus_split(t, strlen(t), DSV3_DOCS_FILE, &d, &n, &err) == DSV3_OK);
    ok = n == 1 && d[0].off == 0 && d[0].len == strlen(t);
    free(d);
    CHECK(ok);
    CHECK(dsv3_corpus_split("", 0, DSV3_DOCS_FILE, &d, &n, &err) == DSV3_OK && n == 0);
    free(d);
    CHECK(dsv3_corpus_split("\n \n", 3, DSV3_DOCS_BLANK_LINE, &d, &n, &err) == DSV3_OK && n == 0);
    free(d);
}

TEST(corpus_fim_cuts) {
    /* cut points are character boundaries, uniform-ish, and the rate is respected */
    const char *doc = "a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80z"; /* 5 characters, 11 bytes */
    int hits = 0, at[12] = {0};
    for (uint64_t i = 0; i < 4000; i++) {
        size_t c0, c1;
        if (!dsv3_corpus_fim_cuts(7, i, 0.25, doc, strlen(doc), &c0, &c1)) continue;
        hits++;
        CHECK(c0 <= c1 && c1 <= strlen(doc));
        at[c0]++;
        at[c1]++;
    }
    CHECK_MSG(hits > 850 && hits < 1150, "%d FIM documents of 4000 at rate 0.25", hits);
    static const int valid[] = {0, 1, 3, 6, 10, 11};
    int sum = 0;
    for (int k = 0; k < 6; k++) {
        CHECK_MSG(at[valid[k]] > 2 * hits / 6 / 2, "boundary %d drawn %d times", valid[k], at[valid[k]]);
        sum += at[valid[k]];
    }
    CHECK(sum == 2 * hits); /* never inside a character */
    size_t c0, c1;
    CHECK(!dsv3_corpus_fim_cuts(7, 1, 0.0, doc, strlen(doc), &c0, &c1));
    CHECK(dsv3_corpus_fim_cuts(7, 1, 1.0, "", 0, &c0, &c1) && c0 == 0 && c1 == 0);
}

/* Tokenizes the corpus file in memory with the given options. */
static dsv3_status tokenize(const dsv3_tokenizer *tok, double fim, uint64_t seed, int threads, dsv3_ids *out,
                            dsv3_corpus_stats *st) {
    const char *paths[] = {corpus_file(), corpus_file()};
    dsv3_corpus_opts o = {DSV3_DOCS_BLANK_LINE, fim, seed, threads};
    dsv3_error err = {0};
    dsv3_status s = dsv3_corpus_tokenize_files(tok, paths, 2, &o, out, st, &err);
    if (s) fprintf(stderr, "    %s\n", err.msg);
    return s;
}

TEST(corpus_eos_packing) {
    dsv3_tokenizer *tok = load_tok();
    CHECK(tok);
    dsv3_ids ids = {0};
    dsv3_corpus_stats st;
    int ok = tokenize(tok, 0, 0, 0, &ids, &st) == DSV3_OK;
    /* decode(all) == each document followed by EOS, twice (two inputs) */
    size_t want_len = 0, bytes = 0;
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < N_DOCS; i++) want_len += strlen(k_docs[i]) + strlen(EOS_STR), bytes += strlen(k_docs[i]);
    char *want = malloc(want_len + 1), *p = want;
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < N_DOCS; i++) p += sprintf(p, "%s%s", k_docs[i], EOS_STR);
    size_t dl = 0;
    char *got = ok ? decode(tok, ids.data, ids.len, &dl) : NULL;
    ok = ok && got && dl == want_len && !memcmp(got, want, dl);
    size_t n_eos = 0;
    for (size_t i = 0; i < ids.len; i++) n_eos += ids.data[i] == 1;
    ok = ok && n_eos == 2 * N_DOCS && ids.len && ids.data[ids.len - 1] == 1 && ids.data[0] != 0;
    ok = ok && st.files == 2 && st.docs == 2 * N_DOCS && st.tokens == ids.len && st.bytes == bytes && !st.fim_docs;
    free(want);
    free(got);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    CHECK(ok);
}

TEST(corpus_fim_structure) {
    dsv3_tokenizer *tok = load_tok();
    CHECK(tok);
    dsv3_ids a = {0}, b = {0}, c = {0}, d = {0};
    dsv3_corpus_stats st;
    int ok = tokenize(tok, 1.0, 5, 1, &a, &st) == DSV3_OK && st.fim_docs == 2 * N_DOCS;
    ok = ok && tokenize(tok, 1.0, 5, 4, &b, &st) == DSV3_OK && tokenize(tok, 1.0, 6, 0, &c, &st) == DSV3_OK;
    ok = ok && tokenize(tok, 0.5, 5, 0, &d, &st) == DSV3_OK && st.fim_docs > 0 && st.fim_docs < 2 * N_DOCS;
    /* deterministic (also across thread counts); another seed gives another output */
    ok = ok && a.len == b.len && !memcmp(a.data, b.data, a.len * sizeof *a.data);
    ok = ok && (a.len != c.len || memcmp(a.data, c.data, a.len * sizeof *a.data));
    /* every document: [4] prefix [3] suffix [5] middle [1], and prefix+middle+suffix == the document */
    size_t pos = 0, doc = 0;
    while (ok && pos < a.len) {
        size_t e = pos;
        while (e < a.len && a.data[e] != 1) e++;
        size_t h = pos, f = pos;
        while (h < e && a.data[h] != 3) h++;
        while (f < e && a.data[f] != 5) f++;
        ok = e < a.len && a.data[pos] == 4 && h < f && f < e;
        size_t l1 = 0, l2 = 0, l3 = 0;
        char *pre = ok ? decode(tok, a.data + pos + 1, h - pos - 1, &l1) : NULL;
        char *suf = ok ? decode(tok, a.data + h + 1, f - h - 1, &l2) : NULL;
        char *mid = ok ? decode(tok, a.data + f + 1, e - f - 1, &l3) : NULL;
        const char *want = k_docs[doc % N_DOCS];
        ok = ok && pre && suf && mid && l1 + l2 + l3 == strlen(want) && !memcmp(want, pre, l1) &&
             !memcmp(want + l1, mid, l3) && !memcmp(want + l1 + l3, suf, l2);
        free(pre);
        free(suf);
        free(mid);
        pos = e + 1;
        doc++;
    }
    ok = ok && doc == 2 * N_DOCS;
    dsv3_ids_free(&a);
    dsv3_ids_free(&b);
    dsv3_ids_free(&c);
    dsv3_ids_free(&d);
    dsv3_tokenizer_free(tok);
    CHECK(ok);
}

TEST(corpus_cli_shard) {
    const char *dir = tok_dir(), *in = corpus_file();
    CHECK(dir && in);
    char out[512];
    snprintf(out, sizeof out, "%s/corpus.tokens", test_tmp_dir());
    char *argv[] = {"tokenize-corpus", "--tokenizer", (char *)dir, "--input", (char *)in, "--out", out,
                    "--doc-separator", "blank-line", "--fim-rate", "0.5", "--seed", "3", NULL};
    CHECK(test_run_cli(cmd_tokenize_corpus, 13, argv, NULL) == 0);
    dsv3_tokenizer *tok = load_tok();
    CHECK(tok);
    dsv3_ids ref = {0};
    const char *paths[] = {in};
    dsv3_corpus_opts o = {DSV3_DOCS_BLANK_LINE, 0.5f, 3, 0};
    dsv3_corpus_stats st;
    dsv3_error err = {0};
    dsv3_token_shard *sh = NULL;
    int ok = dsv3_corpus_tokenize_files(tok, paths, 1, &o, &ref, &st, &err) == DSV3_OK &&
             dsv3_shard_open(out, &sh, &err) == DSV3_OK;
    ok = ok && dsv3_shard_vocab(sh) == (uint64_t)dsv3_tokenizer_vocab_size(tok) && dsv3_shard_len(sh) == ref.len;
    for (uint64_t i = 0; ok && i < ref.len; i++) ok = dsv3_shard_token(sh, i) == ref.data[i];
    dsv3_shard_close(sh);
    dsv3_ids_free(&ref);
    dsv3_tokenizer_free(tok);
    CHECK_MSG(ok, "%s", err.msg);
    /* line mode: one EOS per non-blank line */
    char *argv2[] = {"tokenize-corpus", "--tokenizer", (char *)dir, "--input", (char *)in, "--out", out,
                     "--doc-separator", "line", NULL};
    CHECK(test_run_cli(cmd_tokenize_corpus, 9, argv2, NULL) == 0);
    CHECK(dsv3_shard_open(out, &sh, &err) == DSV3_OK);
    uint64_t n_eos = 0;
    for (uint64_t i = 0; i < dsv3_shard_len(sh); i++) n_eos += dsv3_shard_token(sh, i) == 1;
    dsv3_shard_close(sh);
    CHECK(n_eos == N_DOCS + 3); /* two documents have 2 lines, one has 3 */
    /* errors: missing input (exit 1), bad option values (exit 2) */
    char *missing[] = {"tokenize-corpus", "--tokenizer", (char *)dir, "--input", "/nonexistent.txt", "--out", out, NULL};
    CHECK(test_run_cli(cmd_tokenize_corpus, 7, missing, NULL) == 1);
    char *badfim[] = {"tokenize-corpus", "--tokenizer", (char *)dir, "--input", (char *)in, "--out", out,
                      "--fim-rate", "1.5", NULL};
    CHECK(test_run_cli(cmd_tokenize_corpus, 9, badfim, NULL) == 2);
}

TEST(corpus_missing_special_tokens) {
    /* a byte-level tokenizer with an EOS but no FIM tokens, and one without EOS */
    static const char base[] =
        "{\"added_tokens\":[%s],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
        "\"add_prefix_space\":false,\"use_regex\":false},\"decoder\":{\"type\":\"ByteLevel\"},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"<e>\":2},\"merges\":[]}}";
    char json[1024];
    snprintf(json, sizeof json, base, "{\"id\":2,\"content\":\"<e>\",\"special\":true}");
    static const char cfg[] = "{\"eos_token\":\"<e>\"}";
    dsv3_tokenizer *tok = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_tokenizer_load_mem(json, strlen(json), cfg, strlen(cfg), &tok, &err) == DSV3_OK, "%s", err.msg);
    dsv3_ids ids = {0};
    dsv3_corpus_stats st = {0};
    dsv3_corpus_opts o = {DSV3_DOCS_LINE, 0.1, 0, 1};
    dsv3_status s1 = dsv3_corpus_tokenize_text(tok, "ab\nba\n", 6, &o, &ids, &st, &err);
    int msg_ok = strstr(err.msg, "fim") != NULL;
    o.fim_rate = 0;
    dsv3_status s2 = dsv3_corpus_tokenize_text(tok, "ab\nba\n", 6, &o, &ids, &st, &err);
    int pack_ok = ids.len == 6 && ids.data[2] == 2 && ids.data[5] == 2 && st.docs == 2;
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    CHECK(s1 == DSV3_ERR_INVALID && msg_ok && s2 == DSV3_OK && pack_ok);
    CHECK(dsv3_tokenizer_load_mem(json, strlen(json), NULL, 0, &tok, &err) == DSV3_OK);
    s1 = dsv3_corpus_tokenize_text(tok, "ab", 2, &o, &ids, &st, &err);
    dsv3_tokenizer_free(tok);
    dsv3_ids_free(&ids);
    CHECK(s1 == DSV3_ERR_INVALID && strstr(err.msg, "EOS"));
}

/* The released DeepSeek-V3 tokenizer: EOS 1, FIM ids 128800..128802, 4-byte shard. */
TEST(corpus_deepseek_tokenizer) {
    const char *fx = test_fixtures_dir();
    char d[4096];
    snprintf(d, sizeof d, "%s/../data/deepseek-v3-tokenizer", fx ? fx : "../shared/data");
    if (access(d, R_OK) != 0) SKIP("DeepSeek-V3 tokenizer not found");
    dsv3_tokenizer *tok = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_tokenizer_load(d, &tok, &err) == DSV3_OK, "%s", err.msg);
    dsv3_corpus_ids ci;
    int ok = dsv3_corpus_special_ids(tok, 0.1, &ci, &err) == DSV3_OK && ci.eos == 1 && ci.fim_hole == 128800 &&
             ci.fim_begin == 128801 && ci.fim_end == 128802;
    dsv3_ids ids = {0};
    dsv3_corpus_stats st = {0};
    dsv3_corpus_opts o = {DSV3_DOCS_FILE, 1.0, 0, 1};
    ok = ok && dsv3_corpus_tokenize_text(tok, k_docs[0], strlen(k_docs[0]), &o, &ids, &st, &err) == DSV3_OK;
    ok = ok && ids.len > 5 && ids.data[0] == 128801 && ids.data[ids.len - 1] == 1;
    char out[512];
    snprintf(out, sizeof out, "%s/corpus_ds.tokens", test_tmp_dir());
    dsv3_token_shard *sh = NULL;
    ok = ok && dsv3_shard_write(out, ids.data, ids.len, (uint64_t)dsv3_tokenizer_vocab_size(tok), &err) == DSV3_OK &&
         dsv3_shard_open(out, &sh, &err) == DSV3_OK && dsv3_shard_vocab(sh) == 128815 &&
         dsv3_shard_token(sh, 0) == 128801;
    dsv3_shard_close(sh);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    CHECK_MSG(ok, "%s", err.msg);
}
