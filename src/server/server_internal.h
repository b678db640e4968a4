/* Internals of the OpenAI-compatible server: request parsing (request.c),
 * scheduler and jobs (scheduler.c), response text processing (output.c),
 * HTTP layer (http.c). */
#ifndef DSV3_SERVER_INTERNAL_H
#define DSV3_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dsv3/buf.h"
#include "dsv3/model.h"
#include "dsv3/sampling.h"
#include "dsv3/server.h"
#include "dsv3/tokenizer.h"

/* ------------------------------------------------------------------ errors */

/* An HTTP error in the OpenAI shape {"error":{"message","type","param","code"}}. */
typedef struct {
    int status;        /* HTTP status */
    char type[40];     /* "invalid_request_error", ... */
    char param[96];    /* field at fault ("" = null) */
    char code[40];     /* "" = null */
    char message[512];
} srv_error;

/* Fills e and returns -1. param/code may be NULL. */
int srv_fail(srv_error *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Error body as malloc'd JSON text. */
char *srv_error_json(const srv_error *e);
/* OpenAI error type for an HTTP status. */
const char *srv_error_type(int status);

/* ----------------------------------------------------------------- request */

#define SRV_MAX_STOP 4

typedef struct {
    size_t max_body;      /* bytes */
    int max_depth;        /* JSON nesting of arrays/objects */
    size_t max_string;    /* bytes of one JSON string */
    size_t max_messages;  /* chat messages */
    size_t max_tools;     /* tools, tool calls per message, content parts */
    size_t max_stop_len;  /* bytes of one stop string */
    int64_t max_tokens;   /* upper bound for max_tokens (the context) */
    int64_t max_prompt_ids; /* prompt given as ids: at most this many */
    int64_t vocab_size;   /* prompt ids must be < this */
} srv_limits;

void srv_limits_default(srv_limits *l);

typedef struct {
    char *id, *name, *arguments;
} srv_tool_call;

typedef struct {
    char *role;              /* system (also "developer"), user, assistant, tool */
    char *content;           /* NULL = none */
    srv_tool_call *calls;
    size_t n_calls;
} srv_message;

enum { SRV_TOOL_AUTO = 0, SRV_TOOL_NONE, SRV_TOOL_REQUIRED, SRV_TOOL_NAMED };

typedef struct {
    int chat;                /* 1: /v1/chat/completions, 0: /v1/completions */
    char *model;             /* NULL if absent */
    /* completions: text or ids */
    char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids;
    int64_t n_prompt_ids;
    /* chat */
    srv_message *msgs;
    size_t n_msgs;
    json_t *tools;           /* validated "tools" array (owned) or NULL */
    int tool_choice;         /* SRV_TOOL_* */
    char *tool_choice_name;  /* SRV_TOOL_NAMED */
    /* sampling and limits */
    int64_t max_tokens;      /* -1: not given */
    double temperature, top_p;
    int64_t top_k;
    uint64_t seed;
    int has_seed;
    char *stop[SRV_MAX_STOP];
    size_t stop_len[SRV_MAX_STOP];
    int n_stop;
    int stream, include_usage, ignore_eos, return_token_ids;
} srv_request;

/* Checks the raw body before JSON parsing: valid UTF-8, nesting depth and
 * string lengths within the limits. 0 or -1 with e filled (400). */
int srv_prescan_json(const char *body, size_t len, const srv_limits *lim, srv_error *e);
/* Parses and validates a /v1/completions (chat = 0) or /v1/chat/completions
 * body. Unknown fields are ignored; wrong types and out-of-range values give
 * 400 naming the field. 0 on success (free with srv_request_free). */
int srv_request_parse(const char *body, size_t len, int chat, const srv_limits *lim, srv_request *out,
                      srv_error *e);
void srv_request_free(srv_request *r);

/* ------------------------------------------------------------ text output */


/* Longest k < mlen such that h[0..n) ends with m[0..k) (a marker may start there). */
size_t srv_partial_suffix(const char *h, size_t n, const char *m, size_t mlen);

/* A JSON string of s[0..n) with invalid UTF-8 replaced by U+FFFD. */
json_t *srv_json_text(const char *s, size_t n);
/* 1 if s[0..n) is valid UTF-8. */
int srv_utf8_valid(const char *s, size_t n);

/* Splits generated chat text into content, reasoning (<think>...</think> at
 * the start) and the tool-call section (from <｜tool▁calls▁begin｜>), holding
 * back bytes that may be the start of a marker. */
typedef struct {
    int mode;                /* internal */
    int started;
    dsv3_buf hold;            /* bytes not yet classified */
    dsv3_buf tools;           /* raw tool-call section */
} srv_splitter;

/* Feeds text; appends classified bytes to content / reasoning. final = 1
 * flushes whatever is held back. */
int srv_split_feed(srv_splitter *s, const char *text, size_t n, int final, dsv3_buf *content, dsv3_buf *reasoning);
void srv_split_free(srv_splitter *s);
/* 1 once the tool-call marker has been seen. */
int srv_split_in_tools(const srv_splitter *s);
/* Parses a DeepSeek-V3 tool-call section into a JSON array of OpenAI
 * tool_calls ({"id","type","function":{"name","arguments"}}); NULL if none. */
json_t *srv_parse_tool_calls(const char *s, size_t n, uint64_t id_seed);
/* System-prompt text describing tools (DeepSeek-V3 tool-call format). */
char *srv_render_tools(const json_t *tools, int tool_choice, const char *forced_name);

/* ------------------------------------------------------------------- jobs */

enum { SRV_FINISH_NONE = 0, SRV_FINISH_STOP, SRV_FINISH_LENGTH, SRV_FINISH_ERROR, SRV_FINISH_CANCELLED };

/* One generation request, shared by its HTTP connection and the scheduler
 * (reference counted). Inputs are immutable after submission; outputs are
 * guarded by mu and signalled on cv. */
typedef struct srv_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int cancelled;           /* set by the HTTP side (atomic) */
    /* inputs */
    int32_t *prompt;
    int64_t n_prompt;
    int64_t max_tokens;      /* >= 1 */
    int64_t kv_tokens;       /* cache capacity = n_prompt + max_tokens */
    dsv3_sampler_params sp;
    char *stop[SRV_MAX_STOP];
    size_t stop_len[SRV_MAX_STOP];
    int n_stop;
    int ignore_eos;
    double t_submit;
    /* outputs (under mu) */
    dsv3_buf text;            /* generated text not yet taken by the HTTP side */
    int32_t *ids;            /* all generated ids */
    int64_t n_ids, cap_ids;
    int64_t n_taken_ids;     /* ids already taken by the HTTP side */
    int finish;              /* SRV_FINISH_* once done */
    char error[256];
    /* scheduler-private */
    struct srv_job *next;
    dsv3_kv_cache *kv;
    int64_t kv_blocks;
    int64_t n_fed;           /* prompt tokens already in the cache */
    int64_t n_gen;
    int32_t last;            /* last sampled token (next decode input) */
    dsv3_sampler smp;
    int have_smp;
    dsv3_tok_stream ts;
    int have_ts;
    dsv3_buf hold;            /* text held back while it may start a stop string */
    double t_first;
} srv_job;

srv_job *srv_job_new(void);
void srv_job_ref(srv_job *j);
void srv_job_unref(srv_job *j);
void srv_job_cancel(srv_job *j);

/* ------------------------------------------------------------- scheduler */

typedef struct {
    uint64_t requests_ok, requests_err, rejected_queue, cancelled;
    uint64_t prompt_tokens, gen_tokens, steps;
    double busy_s;
} srv_counters;

typedef struct srv_sched {
    dsv3_model *m;
    const dsv3_tokenizer *tok;
    int64_t vocab, eos_id;
    int max_batch, max_queue, threads;
    int64_t step_tokens;
    int64_t block_tokens, blocks_total, blocks_used;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int paused;              /* test hook: no steps while set */
    int64_t step_delay_us;   /* test hook: sleep after each step */
    srv_job *wait_head, *wait_tail;
    int n_wait;
    srv_job *admit_head, *admit_tail; /* admitted (KV reserved), not yet picked up */
    int n_active;            /* admitted + running */
    srv_counters cnt;
    /* tokens/s over a sliding window: per-second buckets */
    int64_t rate_sec[16];
    int64_t rate_tok[16];
    double avg_job_s;
    /* scheduler-thread state */
    srv_job **run;
    int n_run;
    int64_t *item_rows;      /* per batch item: rows it fed */
    srv_job **item_job;      /* per batch item: its job */
    int32_t *item_tok;       /* per batch item: the token sampled from its last row (-1: none) */
    float *logits;
    size_t logits_rows;
    dsv3_batch_item *items;
    uint8_t *mask;
} srv_sched;

int srv_sched_init(srv_sched *s, dsv3_model *m, const dsv3_tokenizer *tok, int max_batch, int max_queue,
                   int64_t kv_budget_bytes, int64_t step_tokens, dsv3_error *err);
/* Starts the scheduler thread. */
int srv_sched_start(srv_sched *s, dsv3_error *err);
/* Stops the thread: every job still queued or running ends with an error;
 * later submissions get 503. */
void srv_sched_shutdown(srv_sched *s);
/* Shutdown (if needed) and free everything. */
void srv_sched_destroy(srv_sched *s);
/* Queues a job (takes a reference). Fails with 429 (queue full; *retry_after
 * seconds), 400 (can never fit the KV budget) or 503 (shutting down). */
int srv_sched_submit(srv_sched *s, srv_job *j, srv_error *e, int *retry_after);
/* Test hook: pause (1) / resume (0) the steps. */
void srv_sched_pause(srv_sched *s, int on);
/* Tokens the KV budget can hold for one request. */
int64_t srv_sched_max_request_tokens(const srv_sched *s);

typedef struct {
    srv_counters cnt;
    int n_wait, n_active;
    int64_t blocks_used, blocks_total, block_tokens, kv_bytes_per_token;
    double tokens_per_s;
} srv_stats;
void srv_sched_stats(srv_sched *s, srv_stats *out);
void srv_sched_count_request(srv_sched *s, int ok);

double srv_now(void);

#endif
