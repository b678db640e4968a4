/* dsv3 tokenizer-train --input FILE [--input FILE ...] --vocab-size N --out DIR
 *                      [--special-tokens default] [--min-frequency 2] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/bpe_train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 tokenizer-train --input FILE [--input FILE ...] --vocab-size N --out DIR [options]\n\n"
               "Trains a byte-level BPE tokenizer with the DeepSeek-V3 pre-tokenizer and writes\n"
               "DIR/tokenizer.json + DIR/tokenizer_config.json (HuggingFace format; loadable by dsv3\n"
               "and HF tokenizers with identical encodings). Ids 0..7 are the special tokens\n"
               "(BOS, EOS, pad, fim hole/begin/end, User, Assistant), 8..263 the 256 bytes, then\n"
               "merged tokens up to N ids in total. Ties between equally frequent pairs go to the\n"
               "pair with the smallest token bytes. Same input -> identical files.\n\n"
               "  --input FILE        training text (repeatable; each file is pre-tokenized whole)\n"
               "  --vocab-size N      total vocabulary size, >= 264\n"
               "  --out DIR           output directory (created if missing)\n"
               "  --special-tokens S  special-token set; only 'default' (the DeepSeek-V3 names)\n"
               "  --min-frequency K   stop when the best pair occurs fewer than K times (default 2)\n"
               "  -q                  no summary output\n");
}

int cmd_tokenizer_train(int argc, char **argv) {
    const char *vocab_s = NULL, *out = NULL, *special = "default", *minf_s = "2";
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int n_inputs = 0, bad = 0, quiet = 0;
    if (!inputs) { fprintf(stderr, "dsv3 tokenizer-train: out of memory\n"); return 1; }
    for (int i = 1; i < argc && !bad; i++) {
        const char *in = NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); free(inputs); return 0; }
        if (!strcmp(argv[i], "-q")) { quiet = 1; continue; }
        if (cli_opt(argc, argv, &i, "--input", &in, &bad)) {
            if (in) inputs[n_inputs++] = in;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--vocab-size", &vocab_s, &bad) || cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--special-tokens", &special, &bad) ||
            cli_opt(argc, argv, &i, "--min-frequency", &minf_s, &bad))
            continue;
        fprintf(stderr, "dsv3 tokenizer-train: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    int64_t vocab = 0, minf = 0;
    if (!bad && (!n_inputs || !vocab_s || !out)) {
        fprintf(stderr, "dsv3 tokenizer-train: --input, --vocab-size and --out are required\n");
        bad = 1;
    }
    if (!bad && cli_parse_i64(vocab_s, DSV3_BPE_N_SPECIAL + 256, INT32_MAX / 2, &vocab)) {
        fprintf(stderr, "dsv3 tokenizer-train: --vocab-size: expected an integer >= %d\n", DSV3_BPE_N_SPECIAL + 256);
        bad = 1;
    }
    if (!bad && cli_parse_i64(minf_s, 1, INT64_MAX, &minf)) {
        fprintf(stderr, "dsv3 tokenizer-train: --min-frequency: expected an integer >= 1\n");
        bad = 1;
    }
    if (!bad && strcmp(special, "default") != 0) {
        fprintf(stderr, "dsv3 tokenizer-train: --special-tokens: only 'default' is supported\n");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        free(inputs);
        return 2;
    }
    dsv3_error err = {0};
    dsv3_bpe_trainer *t = NULL;
    dsv3_status st = dsv3_bpe_trainer_new(&t, &err);
    for (int i = 0; !st && i < n_inputs; i++) st = dsv3_bpe_trainer_feed_file(t, inputs[i], &err);
    if (!st) st = dsv3_bpe_trainer_train(t, (int32_t)vocab, minf, &err);
    if (!st) st = dsv3_bpe_trainer_write(t, out, &err);
    if (!st && !quiet) {
        dsv3_bpe_stats s;
        dsv3_bpe_trainer_stats(t, &s);
        printf("tokenizer-train: %d file(s), %llu bytes, %llu words (%llu unique)\n"
               "  pre-tokenize %.3f s, merges %.3f s\n"
               "  %lld merges, vocabulary %d%s -> %s/tokenizer.json, %s/tokenizer_config.json\n",
               n_inputs, (unsigned long long)s.bytes, (unsigned long long)s.words,
               (unsigned long long)s.unique_words, s.pretokenize_s, s.train_s, (long long)s.merges,
               (int)s.vocab_size, s.vocab_size < vocab ? " (stopped early: no pair reaches --min-frequency)" : "",
               out, out);
    }
    dsv3_bpe_trainer_free(t);
    free(inputs);
    return st ? cli_error("tokenizer-train", &err) : 0;
}
