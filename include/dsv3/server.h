/* OpenAI-compatible HTTP server (dsv3 serve).
 *
 * One scheduler thread owns the model and runs continuous batching: every
 * running request advances in one batched dsv3_forward per step; new
 * requests are prefilled (in chunks) and join between steps; finished or
 * cancelled ones leave at once and free their KV cache. HTTP is served by
 * libmicrohttpd (one thread per connection), JSON by jansson.
 *
 * Endpoints: GET / (chat page), GET /health, GET /v1/models, GET /metrics,
 * POST /v1/completions, POST /v1/chat/completions (stream via SSE). */
#ifndef DSV3_SERVER_H
#define DSV3_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "dsv3/dtype.h"
#include "dsv3/status.h"

typedef struct dsv3_server dsv3_server;

typedef struct {
    const char *model_dir;
    const char *tokenizer_dir; /* NULL: the model directory; a missing tokenizer is allowed (ids only) */
    const char *host;          /* bind address (default 127.0.0.1) */
    int port;                  /* 0: an ephemeral port (see dsv3_server_port) */
    const char *api_key;       /* non-NULL: require "Authorization: Bearer <key>" on /v1/ */
    const char *model_name;    /* id reported by /v1/models (default: base name of model_dir) */
    int max_batch;             /* running requests at most (default 8) */
    int64_t kv_budget_mb;      /* KV-cache pool (default 1024) */
    int max_queue;             /* waiting requests at most; more -> 429 (default 64) */
    int64_t ctx;               /* context limit in tokens (0: max_position_embeddings) */
    int64_t step_tokens;       /* token budget of one forward step (prefill chunking; default 256) */
    int64_t default_max_tokens; /* max_tokens when a request has none (0: the KV budget / max_batch, at
                                  least 256); each request reserves KV for prompt + max_tokens */
    size_t max_body;           /* request body cap in bytes (default 1 MiB) -> 413 */
    int conn_timeout_s;        /* idle connection timeout (default 60) */
    int max_conns;             /* concurrent connections (default 256) */
    int threads;               /* compute threads (0: all cores) */
    dsv3_dtype kv_dtype;       /* KV cache storage (dsv3_model_set_kv_dtype): DSV3_F32 (default) or DSV3_BF16 */
    int verbose;               /* log requests to stderr */
} dsv3_server_opts;

void dsv3_server_opts_init(dsv3_server_opts *o);

/* Loads the model (and tokenizer if present), starts the scheduler and the
 * HTTP daemon. Returns once the port is listening. */
dsv3_status dsv3_server_start(const dsv3_server_opts *o, dsv3_server **out, dsv3_error *err);
/* The port actually bound. */
int dsv3_server_port(const dsv3_server *s);
/* Stops accepting, cancels everything, joins all threads, frees. */
void dsv3_server_stop(dsv3_server *s);

#endif
