/* HTTP side of the server (libmicrohttpd, one thread per connection):
 * http.c has the daemon, routing and the small endpoints, api.c the
 * generation endpoints (/v1/completions, /v1/chat/completions). */
#ifndef DSV3_SERVER_HTTP_INTERNAL_H
#define DSV3_SERVER_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <time.h>

#include "server/server_internal.h"

struct dsv3_server {
    char *host, *api_key, *model_name;
    int verbose, conn_timeout_s, max_conns;
    dsv3_model *model;
    dsv3_tokenizer *tok;    /* NULL: no tokenizer (ids only) */
    int64_t ctx, vocab;
    int64_t default_max_tokens;
    srv_limits lim;
    srv_sched sched;
    int sched_inited;
    struct MHD_Daemon *d;
    int port;
    time_t created;
    uint64_t id_counter;    /* atomic */
    uint64_t http_codes[600]; /* responses per status (atomic) */
};

/* Per-request connection state (MHD con_cls). */
typedef struct {
    dsv3_buf body;
    int too_big;
    size_t dropped; /* bytes discarded after the body went over the cap */
} srv_conn;

/* Responses (they count the status in the metrics). */
enum MHD_Result srv_send(dsv3_server *S, struct MHD_Connection *c, int status, const char *ctype, char *data, size_t n);
enum MHD_Result srv_send_json(dsv3_server *S, struct MHD_Connection *c, int status, json_t *root);
enum MHD_Result srv_send_error(dsv3_server *S, struct MHD_Connection *c, const srv_error *e, int retry_after);
void srv_count_status(dsv3_server *S, int status);

/* POST /v1/completions (chat = 0) and /v1/chat/completions (chat = 1). */
enum MHD_Result srv_api_generate(dsv3_server *S, struct MHD_Connection *c, const char *body, size_t n, int chat);

/* 1 if the peer of connection c has closed its side. */
int srv_client_gone(struct MHD_Connection *c);

/* The chat web page (GET /). */
extern const char srv_webui_html[];

#endif
