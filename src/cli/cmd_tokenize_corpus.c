/* dsv3 tokenize-corpus --tokenizer DIR --input FILE [--input FILE ...] --out OUT.tokens
 *                      [--doc-separator blank-line|line|file] [--fim-rate 0.1] [--seed S] [-t N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsv3/clock.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/corpus.h"
#include "dsv3/data.h"
#include "dsv3/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 tokenize-corpus --tokenizer DIR --input FILE [--input FILE ...] --out OUT.tokens [options]\n\n"
               "Splits the inputs into documents, tokenizes each (no BOS) and appends EOS after it\n"
               "(document packing), optionally as Fill-in-the-Middle in PSM form:\n"
               "  <|fim_begin|> prefix <|fim_hole|> suffix <|fim_end|> middle <EOS>\n"
               "with the two cut points uniform over the document's characters. Writes one token\n"
               "shard (the format dsv3 train reads). Same inputs and seed -> identical output.\n\n"
               "  --doc-separator M  blank-line (default): paragraphs separated by blank lines;\n"
               "                     line: every non-blank line; file: every file, verbatim\n"
               "  --fim-rate R       probability that a document gets FIM, in [0, 1] (default 0)\n"
               "  --seed S           RNG seed for FIM (default 0)\n"
               "  -q                 no summary output\n"
               "  -t N               threads (default: all cores)\n");
}

int cmd_tokenize_corpus(int argc, char **argv) {
    const char *tok_dir = NULL, *out = NULL, *sep = "blank-line", *fim_s = "0", *seed_s = "0", *threads = NULL;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int n_inputs = 0, bad = 0, quiet = 0;
    if (!inputs) { fprintf(stderr, "dsv3 tokenize-corpus: out of memory\n"); return 1; }
    for (int i = 1; i < argc && !bad; i++) {
        const char *in = NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); free(inputs); return 0; }
        if (!strcmp(argv[i], "-q")) { quiet = 1; continue; }
        if (cli_opt(argc, argv, &i, "--input", &in, &bad)) {
            if (in) inputs[n_inputs++] = in;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--tokenizer", &tok_dir, &bad) || cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--doc-separator", &sep, &bad) ||
            cli_opt(argc, argv, &i, "--fim-rate", &fim_s, &bad) || cli_opt(argc, argv, &i, "--seed", &seed_s, &bad) ||
            cli_opt(argc, argv, &i, "-t", &threads, &bad))
            continue;
        fprintf(stderr, "dsv3 tokenize-corpus: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    dsv3_corpus_opts o = {0};
    float fim = 0;
    int64_t seed = 0, nt = 0;
    if (!bad && (!tok_dir || !n_inputs || !out)) {
        fprintf(stderr, "dsv3 tokenize-corpus: --tokenizer, --input and --out are required\n");
        bad = 1;
    }
    if (!bad) {
        if (!strcmp(sep, "blank-line")) o.mode = DSV3_DOCS_BLANK_LINE;
        else if (!strcmp(sep, "line")) o.mode = DSV3_DOCS_LINE;
        else if (!strcmp(sep, "file")) o.mode = DSV3_DOCS_FILE;
        else {
            fprintf(stderr, "dsv3 tokenize-corpus: --doc-separator: expected blank-line, line or file\n");
            bad = 1;
        }
    }
    if (!bad && (cli_parse_f32(fim_s, &fim) || fim < 0 || fim > 1)) {
        fprintf(stderr, "dsv3 tokenize-corpus: --fim-rate: expected a number in [0, 1]\n");
        bad = 1;
    }
    if (!bad && cli_parse_i64(seed_s, 0, INT64_MAX, &seed)) {
        fprintf(stderr, "dsv3 tokenize-corpus: --seed: expected a non-negative integer\n");
        bad = 1;
    }
    if (!bad && threads && cli_parse_i64(threads, 0, 4096, &nt)) {
        fprintf(stderr, "dsv3 tokenize-corpus: -t: expected a thread count\n");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        free(inputs);
        return 2;
    }
    o.fim_rate = fim;
    o.seed = (uint64_t)seed;
    o.threads = (int)nt;
    double t0 = dsv3_now_s();
    dsv3_error err = {0};
    dsv3_tokenizer *tok = NULL;
    dsv3_ids ids = {0};
    dsv3_corpus_stats s;
    dsv3_status st = dsv3_tokenizer_load(tok_dir, &tok, &err);
    if (!st) st = dsv3_corpus_tokenize_files(tok, inputs, (size_t)n_inputs, &o, &ids, &s, &err);
    double t1 = dsv3_now_s();
    if (!st) st = dsv3_shard_write(out, ids.data, ids.len, (uint64_t)dsv3_tokenizer_vocab_size(tok), &err);
    if (!st && !quiet)
        printf("tokenize-corpus: %llu file(s), %llu documents, %llu bytes -> %llu tokens (%.4f tokens/byte, "
               "incl. EOS/FIM), %llu FIM documents (%.1f%%)\n"
               "  tokenize %.3f s, write %.3f s -> %s (vocab %d)\n",
               (unsigned long long)s.files, (unsigned long long)s.docs, (unsigned long long)s.bytes,
               (unsigned long long)s.tokens, s.bytes ? (double)s.tokens / (double)s.bytes : 0.0,
               (unsigned long long)s.fim_docs, s.docs ? 100.0 * (double)s.fim_docs / (double)s.docs : 0.0, t1 - t0,
               dsv3_now_s() - t1, out, (int)dsv3_tokenizer_vocab_size(tok));
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    free(inputs);
    return st ? cli_error("tokenize-corpus", &err) : 0;
}
