/* Text handling for responses: byte buffers, UTF-8-safe JSON strings, the
 * reasoning / content / tool-call splitter and the DeepSeek-V3 tool-call
 * format (rendering tool descriptions, parsing generated calls). */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

/* ------------------------------------------------------------------ buffer */

/* Keeps a NUL after the data so p is always a C string once allocated. */
/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid/incomplete. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

json_t *srv_json_text(const char *s, size_t n) {
    if (srv_utf8_valid(s, n)) return json_stringn(s, n);
    dsv3_buf b = {0};
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(p + i, n - i);
        if (l) { dsv3_buf_add(&b, p + i, l); i += l; }
        else { dsv3_buf_add(&b, "\xEF\xBF\xBD", 3); i++; }
    }
    json_t *j = json_stringn(b.p ? b.p : "", b.n);
    dsv3_buf_free(&b);
    return j;
}

/* ---------------------------------------------------------------- splitter */

#define M_THINK_OPEN "<think>"
#define M_THINK_CLOSE "</think>"
#define M_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define M_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define M_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define M_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define M_SEP "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>"

enum { SP_START, SP_CONTENT, SP_REASONING, SP_TOOLS };

static const char *find(const char *h, size_t n, const char *needle) {
    return memmem(h, n, needle, strlen(needle));
}

size_t srv_partial_suffix(const char *h, size_t n, const char *m, size_t mlen) {
    for (size_t k = mlen ? mlen - 1 : 0; k > 0; k--)
        if (k <= n && !memcmp(h + n - k, m, k)) return k;
    return 0;
}

/* Moves hold[0..k) to dst and drops hold[0..k+skip). */
static int take(dsv3_buf *hold, size_t k, size_t skip, dsv3_buf *dst) {
    if (dst && dsv3_buf_add(dst, hold->p, k)) return -1;
    size_t rest = hold->n - k - skip;
    memmove(hold->p, hold->p + k + skip, rest);
    hold->n = rest;
    hold->p[rest] = 0;
    return 0;
}

int srv_split_feed(srv_splitter *s, const char *text, size_t n, int final, dsv3_buf *content, dsv3_buf *reasoning) {
    if (dsv3_buf_add(&s->hold, text, n)) return -1;
    for (;;) {
        dsv3_buf *h = &s->hold;
        if (s->mode == SP_START) {
            size_t ol = strlen(M_THINK_OPEN);
            if (h->n >= ol && !memcmp(h->p, M_THINK_OPEN, ol)) {
                if (take(h, 0, ol, NULL)) return -1;
                s->mode = SP_REASONING;
                continue;
            }
            if (h->n < ol && !memcmp(h->p, M_THINK_OPEN, h->n) && !final) return 0; /* undecided yet */
            s->mode = SP_CONTENT;
            continue;
        }
        if (s->mode == SP_TOOLS) return h->n ? take(h, h->n, 0, &s->tools) : 0;
        const char *marker = s->mode == SP_REASONING ? M_THINK_CLOSE : M_CALLS_BEGIN;
        dsv3_buf *dst = s->mode == SP_REASONING ? reasoning : content;
        const char *hit = h->n ? find(h->p, h->n, marker) : NULL;
        if (hit) {
            if (take(h, (size_t)(hit - h->p), strlen(marker), dst)) return -1;
            s->mode = s->mode == SP_REASONING ? SP_CONTENT : SP_TOOLS;
            continue;
        }
        size_t keep = final ? 0 : srv_partial_suffix(h->p ? h->p : "", h->n, marker, strlen(marker));
        return h->n > keep ? take(h, h->n - keep, 0, dst) : 0;
    }
}

int srv_split_in_tools(const srv_splitter *s) { return s->mode == SP_TOOLS; }

void srv_split_free(srv_splitter *s) {
    dsv3_buf_free(&s->hold);
    dsv3_buf_free(&s->tools);
}

/* -------------------------------------------------------------- tool calls */

static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\n' || **s == '\t' || **s == '\r')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\n' || (*e)[-1] == '\t' || (*e)[-1] == '\r')) (*e)--;
}

/* One call: "<type><｜tool▁sep｜><name>\n```json\n<args>\n```" (between call
 * begin and end markers). Lenient about the code fence. */
static json_t *parse_one_call(const char *s, const char *e, uint64_t id) {
    const char *sep = find(s, (size_t)(e - s), M_SEP);
    if (!sep) return NULL;
    const char *p = sep + strlen(M_SEP);
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    const char *name_s = p, *name_e = nl ? nl : e;
    trim(&name_s, &name_e);
    if (name_s == name_e) return NULL;
    const char *a = nl ? nl + 1 : e, *ae = e;
    const char *fence = find(a, (size_t)(ae - a), "```");
    if (fence) {
        a = fence + 3;
        while (a < ae && *a != '\n') a++; /* skip the "json" language tag */
        const char *close = NULL;
        for (const char *q = find(a, (size_t)(ae - a), "```"); q; q = find(q + 3, (size_t)(ae - q - 3), "```")) close = q;
        if (close) ae = close;
    }
    trim(&a, &ae);
    json_t *fn = json_object();
    json_object_set_new(fn, "name", srv_json_text(name_s, (size_t)(name_e - name_s)));
    json_object_set_new(fn, "arguments", srv_json_text(a, (size_t)(ae - a)));
    json_t *call = json_object();
    char idbuf[40];
    snprintf(idbuf, sizeof idbuf, "call_%016llx", (unsigned long long)id);
    json_object_set_new(call, "id", json_string(idbuf));
    json_object_set_new(call, "type", json_string("function"));
    json_object_set_new(call, "function", fn);
    return call;
}

json_t *srv_parse_tool_calls(const char *s, size_t n, uint64_t id_seed) {
    json_t *arr = json_array();
    const char *p = s, *end = s + n;
    const char *calls_end = find(s, n, M_CALLS_END);
    if (calls_end) end = calls_end;
    for (;;) {
        const char *b = find(p, (size_t)(end - p), M_CALL_BEGIN);
        if (!b) break;
        b += strlen(M_CALL_BEGIN);
        const char *e = find(b, (size_t)(end - b), M_CALL_END);
        const char *stop = e ? e : end;
        json_t *call = parse_one_call(b, stop, id_seed * 0x9E3779B97F4A7C15ull + json_array_size(arr) + 1);
        if (call) json_array_append_new(arr, call);
        if (!e) break;
        p = e + strlen(M_CALL_END);
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

char *srv_render_tools(const json_t *tools, int tool_choice, const char *forced_name) {
    dsv3_buf b = {0};
    dsv3_buf_adds(&b, "## Tools\n\nYou can call the functions listed below. To call functions, answer with exactly this "
                     "format and nothing after it:\n" M_CALLS_BEGIN M_CALL_BEGIN "function" M_SEP "FUNCTION_NAME\n```json\n"
                     "ARGUMENTS_AS_A_JSON_OBJECT\n```" M_CALL_END M_CALLS_END "\nFor several calls, write one " M_CALL_BEGIN
                     "..." M_CALL_END " block per call, separated by newlines, before " M_CALLS_END ".\n");
    if (tool_choice == SRV_TOOL_REQUIRED) dsv3_buf_adds(&b, "You must call at least one function.\n");
    if (tool_choice == SRV_TOOL_NAMED && forced_name) dsv3_buf_printf(&b, "You must call the function %s.\n", forced_name);
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        json_t *desc = json_object_get(fn, "description"), *params = json_object_get(fn, "parameters");
        dsv3_buf_printf(&b, "\n### %s\n", json_string_value(json_object_get(fn, "name")));
        if (json_is_string(desc)) dsv3_buf_printf(&b, "%s\n", json_string_value(desc));
        if (json_is_object(params)) {
            char *ps = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
            if (ps) dsv3_buf_printf(&b, "Parameters (JSON Schema): %s\n", ps);
            free(ps);
        }
    }
    return b.p;
}
