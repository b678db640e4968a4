/* dsv3 generate --model DIR --prompt-ids 1,2,3 -n N [--temp T --top-p P --top-k K --seed S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/model.h"
#include "dsv3/sampling.h"
#include "dsv3/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [-n N] [options]\n\n"
               "Prefills the prompt into the compressed KV cache, then decodes token by token.\n"
               "With --prompt the text is tokenized with the model's tokenizer (DIR/tokenizer.json or\n"
               "--tokenizer) and the generated text is streamed to stdout; with --prompt-ids the\n"
               "generated ids are printed on one line, comma-separated.\n\n"
               "  --prompt TEXT   text prompt (BOS is added as the tokenizer config says)\n"
               "  --chat          wrap --prompt as a user turn of the chat template (+ generation prompt)\n"
               "  --tokenizer DIR tokenizer directory (default: the model directory)\n"
               "  --print-ids     print ids even with a text prompt\n"
               "  -n N            tokens to generate (default 16)\n"
               "  --temp T        temperature; 0 = greedy (default 0)\n"
               "  --top-p P       nucleus sampling threshold in (0,1] (default 1)\n"
               "  --top-k K       keep the K most likely tokens; 0 = off (default 0)\n"
               "  --seed S        RNG seed (default 0)\n"
               "  --ignore-eos    keep generating after the end-of-sequence token\n"
               "  --mtp           speculative decoding with the model's MTP module (same greedy output);\n"
               "                  it pays where an (N+1)-token step costs little more than a 1-token one\n"
               "                  (weights read from memory: large models); a model that fits in cache is\n"
               "                  compute bound (the default model: ~1.05x greedy, ~0.9x sampled)\n"
               "  --mtp-drafts N  draft tokens per step, 1..4: the MTP module's, then ones chained through\n"
               "                  it; all verified by one (N+1)-token step (implies --mtp). Default 2, or 1\n"
               "                  when sampling (a sampled chain leaves the drafts sooner)\n"
               "  --mtp-draft-vocab N  drafts choose among token ids [0, N) only: a cheaper draft head\n"
               "                  (BPE ids are roughly frequency-ranked); 0 = all ids; default: vocab / 8\n"
               "                  for vocabularies of 8192+ ids (1024 for the default model), else all\n"
               "  --kv-dtype T    KV cache storage: f32 (default) or bf16: half the memory per token of\n"
               "                  context, each cached value rounded to BF16 (as DeepSeek's reference keeps it)\n"
               "  --stats         print one JSON line of speed/MTP statistics to stderr\n"
               "  -t N            threads (default: all cores)\n");
}

typedef struct {
    dsv3_tok_stream *stream; /* NULL: print ids */
    int32_t tok_vocab;       /* ids >= this (model vocab padding) print nothing */
    int64_t count;
    int failed;
} printer;

static int print_token(int32_t tok, void *ctx) {
    printer *p = ctx;
    if (p->stream && tok >= p->tok_vocab) {
        /* padding id of the model's vocabulary: no text */
    } else if (p->stream) {
        const char *piece;
        size_t plen;
        if (dsv3_tok_stream_push(p->stream, tok, &piece, &plen, NULL)) {
            p->failed = 1;
            return 1;
        }
        fwrite(piece, 1, plen, stdout);
    } else {
        printf("%s%d", p->count ? "," : "", tok);
    }
    p->count++;
    fflush(stdout);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *text = NULL, *tok_dir = NULL, *n_s = "16", *temp_s = "0", *top_p_s = "1", *top_k_s = "0",
               *seed_s = "0", *threads = NULL, *draft_vocab_s = NULL, *drafts_s = NULL, *kvd = NULL;
    int bad = 0, ignore_eos = 0, stats = 0, chat = 0, print_ids = 0, use_mtp = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--ignore-eos")) { ignore_eos = 1; continue; }
        if (!strcmp(argv[i], "--stats")) { stats = 1; continue; }
        if (!strcmp(argv[i], "--chat")) { chat = 1; continue; }
        if (!strcmp(argv[i], "--mtp")) { use_mtp = 1; continue; }
        if (!strcmp(argv[i], "--print-ids")) { print_ids = 1; continue; }
        if (cli_opt(argc, argv, &i, "--prompt", &text, &bad) || cli_opt(argc, argv, &i, "--tokenizer", &tok_dir, &bad))
            continue;
        if (cli_opt(argc, argv, &i, "--model", &model_dir, &bad) || cli_opt(argc, argv, &i, "--prompt-ids", &prompt, &bad) ||
            cli_opt(argc, argv, &i, "-n", &n_s, &bad) || cli_opt(argc, argv, &i, "--temp", &temp_s, &bad) ||
            cli_opt(argc, argv, &i, "--top-p", &top_p_s, &bad) || cli_opt(argc, argv, &i, "--top-k", &top_k_s, &bad) ||
            cli_opt(argc, argv, &i, "--seed", &seed_s, &bad) || cli_opt(argc, argv, &i, "-t", &threads, &bad) ||
            cli_opt(argc, argv, &i, "--mtp-draft-vocab", &draft_vocab_s, &bad) ||
            cli_opt(argc, argv, &i, "--mtp-drafts", &drafts_s, &bad) || cli_opt(argc, argv, &i, "--kv-dtype", &kvd, &bad))
            continue;
        fprintf(stderr, "dsv3 generate: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !model_dir || (!prompt == !text) || (chat && !text)) {
        if (!bad) fprintf(stderr, "dsv3 generate: --model and one of --prompt / --prompt-ids are required (--chat needs --prompt)\n");
        usage(stderr);
        return 2;
    }
    int64_t n_gen, top_k, seed, nthreads = 0, draft_vocab = 0;
    float temp, top_p;
    if (cli_parse_i64(n_s, 0, 1 << 24, &n_gen)) { fprintf(stderr, "dsv3 generate: bad -n '%s'\n", n_s); return 2; }
    if (cli_parse_f32(temp_s, &temp) || temp < 0) { fprintf(stderr, "dsv3 generate: bad --temp '%s'\n", temp_s); return 2; }
    if (cli_parse_f32(top_p_s, &top_p) || !(top_p > 0 && top_p <= 1)) { fprintf(stderr, "dsv3 generate: bad --top-p '%s' (want (0,1])\n", top_p_s); return 2; }
    if (cli_parse_i64(top_k_s, 0, INT32_MAX, &top_k)) { fprintf(stderr, "dsv3 generate: bad --top-k '%s'\n", top_k_s); return 2; }
    if (cli_parse_i64(seed_s, 0, INT64_MAX, &seed)) { fprintf(stderr, "dsv3 generate: bad --seed '%s'\n", seed_s); return 2; }
    if (draft_vocab_s && cli_parse_i64(draft_vocab_s, 0, INT32_MAX, &draft_vocab)) { fprintf(stderr, "dsv3 generate: bad --mtp-draft-vocab '%s'\n", draft_vocab_s); return 2; }
    if (threads && cli_parse_i64(threads, 0, 4096, &nthreads)) { fprintf(stderr, "dsv3 generate: bad -t '%s'\n", threads); return 2; }
    int64_t drafts = temp > 0 ? DSV3_MTP_DEFAULT_DRAFTS_SAMPLED : DSV3_MTP_DEFAULT_DRAFTS;
    if (drafts_s && cli_parse_i64(drafts_s, 1, DSV3_MTP_MAX_DRAFTS, &drafts)) {
        fprintf(stderr, "dsv3 generate: bad --mtp-drafts '%s' (want 1..%d)\n", drafts_s, DSV3_MTP_MAX_DRAFTS);
        return 2;
    }
    if (drafts_s) use_mtp = 1; /* --mtp-drafts implies --mtp */
    dsv3_dtype kv_dtype;
    if (cli_parse_kv_dtype("generate", kvd, &kv_dtype)) return 2;
    if (use_mtp) use_mtp = (int)drafts;
    cli_set_threads(nthreads);

    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_kv_cache *kc = NULL;
    int32_t *ids = NULL;
    dsv3_sampler smp = {0};
    dsv3_tokenizer *tok = NULL;
    dsv3_tok_stream stream = {0};
    int have_stream = 0;
    int rc = 1;
    int64_t n_prompt = 0;
    if (dsv3_model_load(model_dir, &m, &err) || dsv3_model_set_kv_dtype(m, kv_dtype, &err)) goto fail;
    const dsv3_config *c = dsv3_model_config(m);
    dsv3_model_set_mtp_draft_vocab(m, draft_vocab_s ? draft_vocab : dsv3_model_mtp_draft_vocab_default(m));
    if (text) {
        if (dsv3_tokenizer_load(tok_dir ? tok_dir : model_dir, &tok, &err)) goto fail;
        dsv3_ids tids = {0};
        char *rendered = NULL;
        size_t rlen = 0;
        dsv3_status ts;
        if (chat) {
            dsv3_chat_message msg = {.role = "user", .content = text};
            ts = dsv3_tokenizer_apply_chat_template(tok, &msg, 1, 1, &rendered, &rlen, &err);
            if (!ts) ts = dsv3_tokenizer_encode(tok, rendered, rlen, 0, &tids, &err);
        } else {
            ts = dsv3_tokenizer_encode(tok, text, strlen(text), DSV3_TOK_ADD_SPECIAL, &tids, &err);
        }
        free(rendered);
        if (!ts && tids.len == 0) ts = dsv3_fail(&err, DSV3_ERR_INVALID, "the prompt encodes to no tokens");
        for (size_t k = 0; !ts && k < tids.len; k++)
            if (tids.data[k] >= c->vocab_size)
                ts = dsv3_fail(&err, DSV3_ERR_INVALID, "tokenizer id %d is outside the model's vocabulary (%lld)",
                               tids.data[k], (long long)c->vocab_size);
        ids = tids.data;
        n_prompt = (int64_t)tids.len;
        if (ts) goto fail;
        dsv3_tok_stream_init(&stream, tok, DSV3_TOK_SKIP_SPECIAL);
        have_stream = !print_ids;
    } else if (cli_parse_ids(prompt, &ids, &n_prompt, c->vocab_size - 1)) {
        dsv3_fail(&err, DSV3_ERR_INVALID, "--prompt-ids must be comma-separated ids in [0, %lld)", (long long)c->vocab_size);
        goto fail;
    }
    if (dsv3_kv_cache_new(m, n_prompt + n_gen + 1, &kc, &err)) goto fail;
    dsv3_sampler_params sp = {temp, top_p, top_k, (uint64_t)seed};
    if (dsv3_sampler_init(&smp, &sp, c->vocab_size, &err)) goto fail;

    printer pr = {have_stream ? &stream : NULL, tok ? dsv3_tokenizer_vocab_size(tok) : 0, 0, 0};
    dsv3_gen_stats gs;
    dsv3_status st = dsv3_generate(m, kc, ids, n_prompt, n_gen, &smp, use_mtp, ignore_eos ? -1 : (int32_t)c->eos_token_id,
                                   print_token, &pr, &gs, &err);
    if (have_stream) {
        const char *piece;
        size_t plen;
        dsv3_tok_stream_flush(&stream, &piece, &plen);
        fwrite(piece, 1, plen, stdout);
    }
    printf("\n");
    fflush(stdout);
    if (!st && pr.failed) st = dsv3_fail(&err, DSV3_ERR_INVALID, "cannot decode a generated token");
    if (st) goto fail;
    if (stats) {
        /* decode speed counts the tokens after the first (which comes from the prefill) */
        double dec = gs.generated > 1 && gs.decode_s > 0 ? (gs.generated - 1) / gs.decode_s : 0.0;
        fprintf(stderr, "{\"prompt_tokens\":%lld,\"generated_tokens\":%lld,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,"
                        "\"mtp_drafted\":%lld,\"mtp_accepted\":%lld}\n",
                (long long)gs.prompt_tokens, (long long)gs.generated, gs.prefill_s > 0 ? gs.prompt_tokens / gs.prefill_s : 0.0,
                dec, (long long)gs.mtp_drafted, (long long)gs.mtp_accepted);
    }
    rc = 0;
fail:
    if (rc) cli_error("generate", &err);
    dsv3_sampler_free(&smp);
    dsv3_tok_stream_free(&stream);
    dsv3_tokenizer_free(tok);
    free(ids);
    dsv3_kv_cache_free(kc);
    dsv3_model_free(m);
    return rc;
}
