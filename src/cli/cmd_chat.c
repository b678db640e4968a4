/* dsv3 chat --model DIR: interactive terminal chat with the model's chat
 * template. History is kept; each turn re-renders the conversation and only
 * prefills the tokens past the longest prefix already in the KV cache.
 * Ctrl-C stops the current answer (not the program); /reset, /exit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/model.h"
#include "dsv3/sampling.h"
#include "dsv3/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 chat --model DIR [options]\n\n"
               "Interactive chat in the terminal (streamed answers). Commands: /reset (new conversation),\n"
               "/exit (or Ctrl-D). Ctrl-C interrupts the current answer.\n\n"
               "  --system TEXT   system prompt\n"
               "  --tokenizer DIR tokenizer directory (default: the model directory)\n"
               "  -n N            most tokens per answer (default 1024)\n"
               "  --ctx N         context size in tokens (default: min(max_position_embeddings, 8192));\n"
               "                  the oldest turns are dropped when a conversation outgrows it\n"
               "  --temp T        temperature (default 0.7; 0 = greedy)\n"
               "  --top-p P       nucleus threshold in (0,1] (default 0.95)\n"
               "  --top-k K       0 = off (default 0)\n"
               "  --seed S        RNG seed (default 0)\n"
               "  --kv-dtype T    KV cache storage: f32 (default) or bf16: half the memory per token of\n"
               "                  context, each cached value rounded to BF16 (as DeepSeek's reference keeps it)\n"
               "  -t N            threads (default: all cores)\n");
}

static volatile sig_atomic_t g_interrupt;
static void on_sigint(int sig) { (void)sig; g_interrupt = 1; }

typedef struct {
    dsv3_chat_message *m;
    char **owned;
    size_t n, cap;
} history;

static int hist_push(history *h, const char *role, char *content) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? 2 * h->cap : 16;
        dsv3_chat_message *nm = realloc(h->m, nc * sizeof *nm);
        if (!nm) return -1;
        h->m = nm;
        char **no = realloc(h->owned, nc * sizeof *no);
        if (!no) return -1;
        h->owned = no;
        h->cap = nc;
    }
    h->m[h->n] = (dsv3_chat_message){role, content, NULL, 0};
    h->owned[h->n++] = content;
    return 0;
}

static size_t hist_turns(const history *h) {
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) k += strcmp(h->m[i].role, "system") != 0;
    return k;
}

static void hist_pop(history *h) {
    if (h->n) free(h->owned[--h->n]);
}

/* Drops the oldest non-system message. */
static int hist_drop_oldest(history *h) {
    for (size_t i = 0; i < h->n; i++) {
        if (!strcmp(h->m[i].role, "system")) continue;
        free(h->owned[i]);
        memmove(h->m + i, h->m + i + 1, (h->n - i - 1) * sizeof *h->m);
        memmove(h->owned + i, h->owned + i + 1, (h->n - i - 1) * sizeof *h->owned);
        h->n--;
        return 0;
    }
    return -1;
}

static void hist_clear(history *h, int keep_system) {
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (keep_system && !strcmp(h->m[i].role, "system")) { h->m[k] = h->m[i]; h->owned[k++] = h->owned[i]; }
        else free(h->owned[i]);
    }
    h->n = k;
}

typedef struct {
    dsv3_model *m;
    dsv3_tokenizer *tok;
    dsv3_kv_cache *kc;
    int64_t ctx, vocab, eos, max_new;
    int32_t *cached; /* ids in the KV cache */
    int64_t n_cached;
    float *logits;   /* [chunk, vocab], only the last row is written */
    dsv3_sampler smp;
} chat_state;

#define PREFILL_CHUNK 256

/* Renders the history into ids; drops old turns until prompt + answer fit. */
static int render(chat_state *cs, history *h, dsv3_ids *ids, dsv3_error *err) {
    for (;;) {
        char *text = NULL;
        size_t len = 0;
        ids->len = 0;
        if (dsv3_tokenizer_apply_chat_template(cs->tok, h->m, h->n, 1, &text, &len, err)) return -1;
        dsv3_status st = dsv3_tokenizer_encode(cs->tok, text, len, 0, ids, err);
        free(text);
        if (st) return -1;
        if ((int64_t)ids->len + cs->max_new <= cs->ctx) return 0;
        /* older turns go; the newest user message stays */
        if (hist_turns(h) <= 1 || hist_drop_oldest(h)) {
            dsv3_fail(err, DSV3_ERR_INVALID, "the message is too long for the context (%zu tokens, limit %lld)", ids->len,
                      (long long)(cs->ctx - cs->max_new));
            return -1;
        }
    }
}

/* Feeds ids past the cached prefix and leaves the next-token logits in cs->logits. */
static int prefill(chat_state *cs, const int32_t *ids, int64_t n, dsv3_error *err) {
    int64_t common = 0;
    while (common < cs->n_cached && common < n && cs->cached[common] == ids[common]) common++;
    if (common == n) common--; /* at least one token gives the logits */
    dsv3_kv_cache_truncate(cs->kc, common, 0);
    cs->n_cached = common;
    uint8_t mask[PREFILL_CHUNK];
    for (int64_t p = common; p < n; p += PREFILL_CHUNK) {
        int64_t k = n - p < PREFILL_CHUNK ? n - p : PREFILL_CHUNK;
        memset(mask, 0, sizeof mask);
        mask[k - 1] = 1;
        dsv3_batch_item it = {cs->kc, ids + p, k};
        dsv3_forward_out out = {.logits = cs->logits, .logits_mask = mask};
        if (dsv3_forward(cs->m, &it, 1, &out, err)) return -1;
        memcpy(cs->cached + p, ids + p, sizeof(int32_t) * k);
        cs->n_cached = p + k;
        if (p + k == n && k > 1) memmove(cs->logits, cs->logits + (k - 1) * cs->vocab, sizeof(float) * cs->vocab);
    }
    return 0;
}

/* One answer: streams it to stdout; returns the answer text (malloc'd). */
static char *answer(chat_state *cs, const int32_t *ids, int64_t n, dsv3_error *err) {
    if (prefill(cs, ids, n, err)) return NULL;
    dsv3_tok_stream ts;
    dsv3_tok_stream_init(&ts, cs->tok, DSV3_TOK_SKIP_SPECIAL);
    char *text = NULL;
    size_t tl = 0;
    FILE *mem = open_memstream(&text, &tl);
    int failed = !mem;
    for (int64_t i = 0; !failed && i < cs->max_new && !g_interrupt; i++) {
        int32_t t = dsv3_sample(&cs->smp, cs->logits, cs->vocab);
        if (t == cs->eos) break;
        const char *piece = "";
        size_t plen = 0;
        if (dsv3_tokenizer_token_bytes(cs->tok, t, NULL) && dsv3_tok_stream_push(&ts, t, &piece, &plen, err)) { failed = 1; break; }
        fwrite(piece, 1, plen, stdout);
        fwrite(piece, 1, plen, mem);
        fflush(stdout);
        if (cs->n_cached + 1 > cs->ctx) break;
        dsv3_batch_item it = {cs->kc, &t, 1};
        dsv3_forward_out out = {.logits = cs->logits};
        if (dsv3_forward(cs->m, &it, 1, &out, err)) { failed = 1; break; }
        cs->cached[cs->n_cached++] = t;
    }
    const char *piece;
    size_t plen;
    dsv3_tok_stream_flush(&ts, &piece, &plen);
    fwrite(piece, 1, plen, stdout);
    if (mem) { fwrite(piece, 1, plen, mem); fclose(mem); }
    dsv3_tok_stream_free(&ts);
    if (g_interrupt) printf(" [interrupted]");
    printf("\n");
    fflush(stdout);
    if (failed) { free(text); return NULL; }
    return text;
}

int cmd_chat(int argc, char **argv) {
    const char *model_dir = NULL, *tok_dir = NULL, *system_prompt = NULL, *n_s = "1024", *ctx_s = NULL, *temp_s = "0.7",
               *top_p_s = "0.95", *top_k_s = "0", *seed_s = "0", *threads = NULL, *kvd = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (cli_opt(argc, argv, &i, "--model", &model_dir, &bad) || cli_opt(argc, argv, &i, "--tokenizer", &tok_dir, &bad) ||
            cli_opt(argc, argv, &i, "--system", &system_prompt, &bad) || cli_opt(argc, argv, &i, "-n", &n_s, &bad) ||
            cli_opt(argc, argv, &i, "--ctx", &ctx_s, &bad) || cli_opt(argc, argv, &i, "--temp", &temp_s, &bad) ||
            cli_opt(argc, argv, &i, "--top-p", &top_p_s, &bad) || cli_opt(argc, argv, &i, "--top-k", &top_k_s, &bad) ||
            cli_opt(argc, argv, &i, "--seed", &seed_s, &bad) || cli_opt(argc, argv, &i, "-t", &threads, &bad) ||
            cli_opt(argc, argv, &i, "--kv-dtype", &kvd, &bad))
            continue;
        fprintf(stderr, "dsv3 chat: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !model_dir) {
        if (!bad) fprintf(stderr, "dsv3 chat: --model is required\n");
        usage(stderr);
        return 2;
    }
    int64_t max_new, ctx = 0, top_k, seed, nthreads = 0;
    float temp, top_p;
    if (cli_parse_i64(n_s, 1, 1 << 24, &max_new) || (ctx_s && cli_parse_i64(ctx_s, 2, INT32_MAX, &ctx)) ||
        cli_parse_f32(temp_s, &temp) || temp < 0 || cli_parse_f32(top_p_s, &top_p) || !(top_p > 0 && top_p <= 1) ||
        cli_parse_i64(top_k_s, 0, INT32_MAX, &top_k) || cli_parse_i64(seed_s, 0, INT64_MAX, &seed) ||
        (threads && cli_parse_i64(threads, 0, 4096, &nthreads))) {
        fprintf(stderr, "dsv3 chat: bad numeric option\n");
        usage(stderr);
        return 2;
    }
    dsv3_dtype kv_dtype;
    if (cli_parse_kv_dtype("chat", kvd, &kv_dtype)) return 2;
    cli_set_threads(nthreads);
    dsv3_error err = {0};
    chat_state cs = {0};
    history h = {0};
    dsv3_ids ids = {0};
    int rc = 1, have_smp = 0;
    if (dsv3_model_load(model_dir, &cs.m, &err) || dsv3_model_set_kv_dtype(cs.m, kv_dtype, &err) ||
        dsv3_tokenizer_load(tok_dir ? tok_dir : model_dir, &cs.tok, &err)) goto done;
    if (!dsv3_tokenizer_has_chat_template(cs.tok)) {
        dsv3_fail(&err, DSV3_ERR_UNSUPPORTED, "the tokenizer has no supported chat template");
        goto done;
    }
    const dsv3_config *c = dsv3_model_config(cs.m);
    cs.vocab = c->vocab_size;
    cs.eos = c->eos_token_id >= 0 ? c->eos_token_id : dsv3_tokenizer_eos_id(cs.tok);
    cs.ctx = ctx ? ctx : c->max_position_embeddings < 8192 ? c->max_position_embeddings : 8192;
    if (cs.ctx > c->max_position_embeddings) cs.ctx = c->max_position_embeddings;
    cs.max_new = max_new < cs.ctx / 2 ? max_new : cs.ctx / 2;
    cs.cached = malloc(sizeof(int32_t) * (size_t)cs.ctx);
    cs.logits = malloc(sizeof(float) * PREFILL_CHUNK * (size_t)cs.vocab);
    if (!cs.cached || !cs.logits) { dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory"); goto done; }
    if (dsv3_kv_cache_new(cs.m, cs.ctx, &cs.kc, &err)) goto done;
    dsv3_sampler_params sp = {temp, top_p, top_k, (uint64_t)seed};
    if (dsv3_sampler_init(&cs.smp, &sp, cs.vocab, &err)) goto done;
    have_smp = 1;
    if (system_prompt) {
        char *s = strdup(system_prompt);
        if (!s || hist_push(&h, "system", s)) { free(s); dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory"); goto done; }
    }
    /* Ctrl-C sets a flag (no SA_RESTART: a pending read returns EINTR) */
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    int tty = isatty(0);
    if (tty) fprintf(stderr, "dsv3 chat: %s (ctx %lld). /reset starts over, /exit or Ctrl-D quits.\n", model_dir, (long long)cs.ctx);
    char *line = NULL;
    size_t lcap = 0;
    for (;;) {
        if (tty) { fputs("> ", stdout); fflush(stdout); }
        g_interrupt = 0;
        errno = 0;
        ssize_t ln = getline(&line, &lcap, stdin);
        if (ln < 0) {
            if (errno == EINTR) { clearerr(stdin); printf("\n"); continue; }
            break; /* EOF */
        }
        while (ln > 0 && (line[ln - 1] == '\n' || line[ln - 1] == '\r')) line[--ln] = 0;
        if (!ln) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            hist_clear(&h, 1);
            printf("(new conversation)\n");
            continue;
        }
        char *msg = strdup(line);
        if (!msg || hist_push(&h, "user", msg)) { free(msg); dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory"); break; }
        if (render(&cs, &h, &ids, &err)) {
            fprintf(stderr, "dsv3 chat: %s\n", err.msg);
            hist_pop(&h); /* the message that did not fit */
            continue;
        }
        char *ans = answer(&cs, ids.data, (int64_t)ids.len, &err);
        if (!ans) { fprintf(stderr, "dsv3 chat: %s\n", err.msg); continue; }
        if (hist_push(&h, "assistant", ans)) { free(ans); break; }
    }
    free(line);
    rc = 0;
done:
    if (rc) cli_error("chat", &err);
    hist_clear(&h, 0);
    free(h.m);
    free(h.owned);
    dsv3_ids_free(&ids);
    if (have_smp) dsv3_sampler_free(&cs.smp);
    free(cs.cached);
    free(cs.logits);
    dsv3_kv_cache_free(cs.kc);
    dsv3_tokenizer_free(cs.tok);
    dsv3_model_free(cs.m);
    return rc;
}
