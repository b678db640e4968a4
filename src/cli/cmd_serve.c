/* dsv3 serve --model DIR [--host H] [--port P] [--api-key K] ...: the
 * OpenAI-compatible HTTP server (src/server). Runs until SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/server.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 serve --model DIR [options]\n\n"
               "OpenAI-compatible API server with continuous batching. Endpoints: GET / (chat page),\n"
               "/health, /v1/models, /metrics (Prometheus); POST /v1/completions, /v1/chat/completions\n"
               "(\"stream\": true for server-sent events).\n\n"
               "  --host H           bind address (default 127.0.0.1: loopback only)\n"
               "  --port P           TCP port (default 8080; 0 = any free port)\n"
               "  --api-key KEY      require \"Authorization: Bearer KEY\" on /v1/ (or $DSV3_API_KEY)\n"
               "  --max-batch N      requests decoded together (default 8)\n"
               "  --kv-budget-mb M   KV-cache pool in MiB (default 1024); full -> new requests wait\n"
               "  --kv-dtype T       KV cache storage: f32 (default) or bf16: twice the tokens in the same\n"
               "                     budget, each cached value rounded to BF16 (as DeepSeek's reference keeps it)\n"
               "  --max-queue Q      waiting requests at most; more -> 429 (default 64)\n"
               "  --ctx N            context limit in tokens (default: max_position_embeddings)\n"
               "  --step-tokens N    tokens per batched forward step (prefill chunk; default 256)\n"
               "  --default-max-tokens N  max_tokens of requests that give none (default: KV budget /\n"
               "                     max-batch, at least 256); KV is reserved for prompt + max_tokens\n"
               "  --max-body BYTES   request body cap (default 1048576) -> 413\n"
               "  --timeout S        idle connection timeout in seconds (default 60)\n"
               "  --max-conns N      concurrent connections (default 256)\n"
               "  --tokenizer DIR    tokenizer directory (default: the model directory)\n"
               "  --model-name NAME  model id reported by the API (default: the directory name)\n"
               "  --verbose          log errors to stderr\n"
               "  -t N               compute threads (default: all cores)\n");
}

int cmd_serve(int argc, char **argv) {
    dsv3_server_opts o;
    dsv3_server_opts_init(&o);
    o.api_key = getenv("DSV3_API_KEY");
    const char *port = NULL, *batch = NULL, *kv = NULL, *queue = NULL, *ctx = NULL, *step = NULL, *body = NULL,
               *timeout = NULL, *conns = NULL, *threads = NULL, *defmax = NULL, *kvd = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--verbose")) { o.verbose = 1; continue; }
        if (cli_opt(argc, argv, &i, "--model", &o.model_dir, &bad) || cli_opt(argc, argv, &i, "--host", &o.host, &bad) ||
            cli_opt(argc, argv, &i, "--port", &port, &bad) || cli_opt(argc, argv, &i, "--api-key", &o.api_key, &bad) ||
            cli_opt(argc, argv, &i, "--max-batch", &batch, &bad) || cli_opt(argc, argv, &i, "--kv-budget-mb", &kv, &bad) ||
            cli_opt(argc, argv, &i, "--max-queue", &queue, &bad) || cli_opt(argc, argv, &i, "--ctx", &ctx, &bad) ||
            cli_opt(argc, argv, &i, "--step-tokens", &step, &bad) || cli_opt(argc, argv, &i, "--max-body", &body, &bad) ||
            cli_opt(argc, argv, &i, "--timeout", &timeout, &bad) || cli_opt(argc, argv, &i, "--max-conns", &conns, &bad) ||
            cli_opt(argc, argv, &i, "--tokenizer", &o.tokenizer_dir, &bad) ||
            cli_opt(argc, argv, &i, "--default-max-tokens", &defmax, &bad) ||
            cli_opt(argc, argv, &i, "--model-name", &o.model_name, &bad) || cli_opt(argc, argv, &i, "-t", &threads, &bad) ||
            cli_opt(argc, argv, &i, "--kv-dtype", &kvd, &bad))
            continue;
        fprintf(stderr, "dsv3 serve: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !o.model_dir) {
        if (!bad) fprintf(stderr, "dsv3 serve: --model is required\n");
        usage(stderr);
        return 2;
    }
    int64_t v;
#define NUM(s, flag, lo, hi, dst)                                                         \
    if (s) {                                                                              \
        if (cli_parse_i64(s, lo, hi, &v)) {                                               \
            fprintf(stderr, "dsv3 serve: bad %s '%s' (want %lld..%lld)\n", flag, s, (long long)(lo), (long long)(hi)); \
            return 2;                                                                     \
        }                                                                                 \
        dst = v;                                                                          \
    }
    NUM(port, "--port", 0, 65535, o.port);
    NUM(batch, "--max-batch", 1, 4096, o.max_batch);
    NUM(kv, "--kv-budget-mb", 1, 1 << 30, o.kv_budget_mb);
    NUM(queue, "--max-queue", 0, 1 << 20, o.max_queue);
    NUM(ctx, "--ctx", 2, INT32_MAX, o.ctx);
    NUM(step, "--step-tokens", 1, 1 << 20, o.step_tokens);
    NUM(body, "--max-body", 64, 1 << 30, o.max_body);
    NUM(timeout, "--timeout", 1, 86400, o.conn_timeout_s);
    NUM(conns, "--max-conns", 1, 65536, o.max_conns);
    NUM(threads, "-t", 0, 4096, o.threads);
    NUM(defmax, "--default-max-tokens", 1, INT32_MAX, o.default_max_tokens);
#undef NUM
    if (cli_parse_kv_dtype("serve", kvd, &o.kv_dtype)) return 2;
    if (o.api_key && !o.api_key[0]) o.api_key = NULL;
    /* SIGINT/SIGTERM are taken by sigwait below: block them before any thread starts */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    dsv3_error err = {0};
    dsv3_server *s = NULL;
    if (dsv3_server_start(&o, &s, &err)) return cli_error("serve", &err);
    fprintf(stderr, "dsv3 serve: listening on http://%s:%d/ (model %s)\n", o.host, dsv3_server_port(s), o.model_dir);
    fflush(stderr);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "dsv3 serve: signal %d, shutting down\n", sig);
    dsv3_server_stop(s);
    return 0;
}
