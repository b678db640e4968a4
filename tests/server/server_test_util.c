/* Helpers of the server tests (see server_test_util.h). */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "server_test_util.h"

int ts_sock_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    return fd;
}

int ts_send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int ts_send_request(int fd, const char *method, const char *path, const char *hdrs, const char *body, size_t blen) {
    char head[4096];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s", method, path,
                     hdrs ? hdrs : "");
    if (body) n += snprintf(head + n, sizeof head - n, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof head - n, "\r\n");
    if (ts_send_all(fd, head, (size_t)n)) return -1;
    return body ? ts_send_all(fd, body, blen) : 0;
}

/* Reads the whole response (the server closes: Connection: close). */
int ts_read_response(int fd, resp *r) {
    dsv3_buf raw = {0};
    char buf[16384];
    ssize_t k;
    while ((k = recv(fd, buf, sizeof buf, 0)) > 0) dsv3_buf_add(&raw, buf, (size_t)k);
    memset(r, 0, sizeof *r);
    if (!raw.p) return -1;
    char *eoh = strstr(raw.p, "\r\n\r\n");
    if (!eoh || sscanf(raw.p, "HTTP/1.%*d %d", &r->status) != 1) { dsv3_buf_free(&raw); return -1; }
    size_t hl = (size_t)(eoh - raw.p);
    snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head ? hl : sizeof r->head - 1), raw.p);
    const char *p = eoh + 4, *end = raw.p + raw.n;
    if (strcasestr(r->head, "transfer-encoding: chunked")) {
        while (p < end) {
            unsigned long len = strtoul(p, NULL, 16);
            const char *nl = strstr(p, "\r\n");
            if (!nl || len == 0) break;
            p = nl + 2;
            if (p + len > end) len = (unsigned long)(end - p);
            dsv3_buf_add(&r->body, p, len);
            p += len + 2;
        }
    } else {
        dsv3_buf_add(&r->body, p, (size_t)(end - p));
    }
    if (!r->body.p) dsv3_buf_add(&r->body, "", 0);
    dsv3_buf_free(&raw);
    return 0;
}

int ts_http(int port, const char *method, const char *path, const char *hdrs, const char *body, resp *r) {
    memset(r, 0, sizeof *r);
    int fd = ts_sock_connect(port);
    if (fd < 0) return -1;
    int rc = ts_send_request(fd, method, path, hdrs, body, body ? strlen(body) : 0) ? -1 : ts_read_response(fd, r);
    close(fd);
    return rc;
}

json_t *ts_body_json(resp *r) { return json_loadb(r->body.p, r->body.n, JSON_ALLOW_NUL, NULL); }

/* Value of a metric line "name value" in /metrics (-1 if absent). */
double ts_metric(int port, const char *name) {
    resp r;
    if (ts_http(port, "GET", "/metrics", NULL, NULL, &r)) return -1;
    double v = -1;
    size_t nl = strlen(name);
    for (const char *p = r.body.p; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ') { v = atof(p + nl + 1); break; }
    dsv3_buf_free(&r.body);
    return v;
}

/* Polls a metric until it equals want (timeout in seconds). */
int ts_wait_metric(int port, const char *name, double want, double timeout) {
    for (double t = 0; t < timeout; t += 0.02) {
        if (ts_metric(port, name) == want) return 1;
        usleep(20000);
    }
    return 0;
}

/* ------------------------------------------------------------ the server */

int ts_wait_admitted_cancelled(dsv3_server *s, double timeout) {
    for (double t = 0; t < timeout; t += 0.01) {
        int hit = 0;
        pthread_mutex_lock(&s->sched.mu);
        for (srv_job *j = s->sched.admit_head; j; j = j->next) hit |= __atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE);
        pthread_mutex_unlock(&s->sched.mu);
        if (hit) return 1;
        usleep(10000);
    }
    return 0;
}

dsv3_server *ts_start_server(const char *model_dir, const dsv3_server_opts *over) {
    dsv3_server_opts o;
    if (over) o = *over;
    else dsv3_server_opts_init(&o);
    o.model_dir = model_dir;
    o.port = 0;
    o.threads = 1; /* faster than 2 on small machines for this tiny model */
    dsv3_error err = {0};
    dsv3_server *s = NULL;
    if (dsv3_server_start(&o, &s, &err)) {
        fprintf(stderr, "    server start: %s\n", err.msg);
        return NULL;
    }
    return s;
}

const char *ts_tiny_dir(void) {
    static char p[4096];
    if (!test_fixtures_dir()) return NULL;
    snprintf(p, sizeof p, "%s/tiny", test_fixtures_dir());
    return p;
}

/* Non-streamed completion from ids; writes "a,b,c" ids; returns status. */
int ts_complete_ids(int port, const char *extra, const int32_t *ids, int n, int max_tokens, char *out, size_t cap) {
    dsv3_buf b = {0};
    dsv3_buf_printf(&b, "{\"prompt\":[");
    for (int i = 0; i < n; i++) dsv3_buf_printf(&b, "%s%d", i ? "," : "", ids[i]);
    dsv3_buf_printf(&b, "],\"max_tokens\":%d%s}", max_tokens, extra ? extra : ",\"temperature\":0");
    resp r;
    int rc = ts_http(port, "POST", "/v1/completions", NULL, b.p, &r);
    dsv3_buf_free(&b);
    if (rc) return -1;
    out[0] = 0;
    json_t *j = ts_body_json(&r);
    json_t *tids = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "token_ids");
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(tids) && k + 16 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? "," : "", (long long)json_integer_value(json_array_get(tids, i)));
    if (r.status == 200 && !tids) r.status = -2;
    json_decref(j);
    dsv3_buf_free(&r.body);
    return r.status;
}


const char *ts_dsv3_bin(void) { return test_dsv3_bin(); }


/* GPT-2 byte-level alphabet: byte -> code point. */
static unsigned byte_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (unsigned)b;
    int n = 0;
    for (int k = 0; k < b; k++)
        if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) n++;
    return 256u + (unsigned)n;
}

static void put_cp(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; o[1] = 0; }
    else { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); o[2] = 0; }
}

static const char *k_added[] = {
    "<\xef\xbd\x9cUser\xef\xbd\x9c>", "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
    "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>", "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>", "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "begin\xef\xbd\x9c>", "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "begin\xef\xbd\x9c>", "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>", "<think>", "</think>"};
#define BOS_S "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define EOS_S "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static json_t *added(int id, const char *s, int special) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s, "single_word", 0, "lstrip", 0, "rstrip", 0,
                     "normalized", 0, "special", special);
}

/* A model dir: the tiny fixture's config and weights (symlinked) plus a
 * 512-token byte-level tokenizer (0 BOS, 1 EOS, 2..257 bytes, 258.. chat
 * tokens, the rest two-letter tokens) with the DeepSeek-V3 chat template. */
const char *ts_chat_model_dir(void) {
    static char dir[4096];
    static int state; /* 0 untried, 1 ok, -1 unavailable */
    if (state) return state > 0 ? dir : NULL;
    state = -1;
    const char *fx = test_fixtures_dir();
    if (!fx) return NULL;
    char path[8192], real[4096];
    snprintf(path, sizeof path, "%s/../data/deepseek-v3-tokenizer/tokenizer_config.json", fx);
    json_t *ref = json_load_file(path, 0, NULL);
    json_t *tmpl = json_object_get(ref, "chat_template");
    if (!json_is_string(tmpl)) { json_decref(ref); return NULL; }
    snprintf(dir, sizeof dir, "%s/srv_model", test_tmp_dir());
    mkdir(dir, 0755);
    const char *links[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/tiny/%s", fx, links[i]);
        if (!realpath(path, real)) { json_decref(ref); return NULL; }
        snprintf(path, sizeof path, "%s/%s", dir, links[i]);
        unlink(path);
        if (symlink(real, path)) { json_decref(ref); return NULL; }
    }
    json_t *vocab = json_object(), *add = json_array();
    json_object_set_new(vocab, BOS_S, json_integer(0));
    json_object_set_new(vocab, EOS_S, json_integer(1));
    json_array_append_new(add, added(0, BOS_S, 1));
    json_array_append_new(add, added(1, EOS_S, 1));
    char s[8];
    for (int b = 0; b < 256; b++) {
        put_cp(s, byte_cp(b));
        json_object_set_new(vocab, s, json_integer(2 + b));
    }
    int id = 258;
    /* added tokens are in the vocab too (else they would be renumbered after it) */
    for (size_t i = 0; i < sizeof k_added / sizeof *k_added; i++, id++) {
        json_array_append_new(add, added(id, k_added[i], 0));
        json_object_set_new(vocab, k_added[i], json_integer(id));
    }
    for (int a = 0; id < 512; a++, id++) {
        char two[3] = {(char)('a' + a / 26 % 26), (char)('a' + a % 26), 0};
        json_object_set_new(vocab, two, json_integer(id));
    }
    json_t *tok = json_pack("{s:s, s:n, s:n, s:o, s:n, s:{s:s, s:b, s:b, s:b}, s:n, s:{s:s, s:b, s:b, s:b},"
                            " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:[]}}",
                            "version", "1.0", "truncation", "padding", "added_tokens", add, "normalizer", "pre_tokenizer",
                            "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "post_processor",
                            "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model",
                            "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                            "byte_fallback", 0, "vocab", vocab, "merges");
    json_t *cfg = json_pack("{s:b, s:b, s:s, s:s, s:O}", "add_bos_token", 1, "add_eos_token", 0, "bos_token", BOS_S, "eos_token",
                            EOS_S, "chat_template", tmpl);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int bad = json_dump_file(tok, path, 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    bad |= json_dump_file(cfg, path, 0);
    json_decref(tok);
    json_decref(cfg);
    json_decref(ref);
    if (bad) return NULL;
    state = 1;
    return dir;
}

/* POSTs body to path; returns the parsed JSON (status in *status). */
json_t *ts_post_json(int port, const char *path, const char *body, int *status) {
    resp r;
    *status = -1;
    if (ts_http(port, "POST", path, NULL, body, &r)) return NULL;
    *status = r.status;
    json_t *j = ts_body_json(&r);
    dsv3_buf_free(&r.body);
    return j;
}

/* Streams body; concatenates the text / delta.content / delta.reasoning_content. */
int ts_stream_text(int port, const char *path, const char *body, dsv3_buf *text, char *finish, size_t fcap) {
    resp r;
    if (ts_http(port, "POST", path, NULL, body, &r) || r.status != 200) return -1;
    int done = 0;
    for (const char *p = strstr(r.body.p, "data: "); p; p = strstr(p + 6, "data: ")) {
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        if (!strncmp(p + 6, "[DONE]", 6)) { done = 1; continue; }
        json_t *j = json_loadb(p + 6, (size_t)(e - p - 6), JSON_ALLOW_NUL, NULL);
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *t = json_object_get(ch, "text");
        if (!t) t = json_object_get(json_object_get(ch, "delta"), "content");
        if (json_is_string(t)) dsv3_buf_add(text, json_string_value(t), json_string_length(t));
        if (json_is_string(json_object_get(ch, "finish_reason")))
            snprintf(finish, fcap, "%s", json_string_value(json_object_get(ch, "finish_reason")));
        json_decref(j);
    }
    dsv3_buf_add(text, "", 0);
    dsv3_buf_free(&r.body);
    return done ? 0 : -1;
}

const char *ts_choice_str(json_t *j, const char *a, const char *b) {
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *v = b ? json_object_get(json_object_get(ch, a), b) : json_object_get(ch, a);
    return json_string_value(v);
}

json_int_t ts_usage(json_t *j, const char *k) { return json_integer_value(json_object_get(json_object_get(j, "usage"), k)); }

