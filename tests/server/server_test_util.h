/* Helpers of the server tests: a plain-socket HTTP client, server start-up
 * with the tiny fixture, and a model directory with a tokenizer that fits it. */
#ifndef DSV3_TEST_SERVER_UTIL_H
#define DSV3_TEST_SERVER_UTIL_H

#include <jansson.h>
#include <stdint.h>

#include "server/http_internal.h"

typedef struct {
    int status;
    char head[8192];
    dsv3_buf body;
} resp;

int ts_sock_connect(int port);
int ts_send_all(int fd, const char *p, size_t n);
/* Sends a request with "Connection: close" (and the body's Content-Length). */
int ts_send_request(int fd, const char *method, const char *path, const char *hdrs, const char *body, size_t blen);
/* Reads the whole response; de-chunks the body. */
int ts_read_response(int fd, resp *r);
int ts_http(int port, const char *method, const char *path, const char *hdrs, const char *body, resp *r);
json_t *ts_body_json(resp *r);
/* A value from /metrics (-1 if absent); polling until it equals want. */
double ts_metric(int port, const char *name);
int ts_wait_metric(int port, const char *name, double want, double timeout);
/* Polls until an admitted job (the scheduler being paused) is marked cancelled. */
int ts_wait_admitted_cancelled(dsv3_server *s, double timeout);
/* In-process server on an ephemeral port (over: options, or NULL). */
dsv3_server *ts_start_server(const char *model_dir, const dsv3_server_opts *over);
const char *ts_tiny_dir(void);
/* Non-streamed completion of ids; out gets the generated ids "a,b,c"; returns the status. */
int ts_complete_ids(int port, const char *extra, const int32_t *ids, int n, int max_tokens, char *out, size_t cap);
/* The dsv3 binary next to the test binary. */
const char *ts_dsv3_bin(void);
/* tiny + a 512-token byte-level tokenizer with the DeepSeek-V3 chat template; NULL if unavailable. */
const char *ts_chat_model_dir(void);
json_t *ts_post_json(int port, const char *path, const char *body, int *status);
/* Streams body and concatenates text / delta.content. */
int ts_stream_text(int port, const char *path, const char *body, dsv3_buf *text, char *finish, size_t fcap);
const char *ts_choice_str(json_t *j, const char *a, const char *b);
json_int_t ts_usage(json_t *j, const char *k);

#endif
