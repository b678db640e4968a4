/* Request bodies of /v1/completions and /v1/chat/completions: limits checked
 * on the raw text first (UTF-8, nesting depth, string length), then parsed
 * with jansson and validated field by field. Every error names the field. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

/* ------------------------------------------------------------------ errors */

const char *srv_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: case 503: return "server_error";
    default: return "invalid_request_error";
    }
}

int srv_fail(srv_error *e, int status, const char *param, const char *code, const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", srv_error_type(status));
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

char *srv_error_json(const srv_error *e) {
    json_t *inner = json_object();
    json_object_set_new(inner, "message", srv_json_text(e->message, strlen(e->message)));
    json_object_set_new(inner, "type", json_string(e->type[0] ? e->type : srv_error_type(e->status)));
    json_object_set_new(inner, "param", e->param[0] ? srv_json_text(e->param, strlen(e->param)) : json_null());
    json_object_set_new(inner, "code", e->code[0] ? json_string(e->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", inner);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* ------------------------------------------------------------------ limits */

void srv_limits_default(srv_limits *l) {
    l->max_body = 1 << 20;
    l->max_depth = 64;
    l->max_string = 1 << 20;
    l->max_messages = 4096;
    l->max_tools = 128;
    l->max_stop_len = 256;
    l->max_tokens = 1 << 20;
    l->max_prompt_ids = 1 << 20;
    l->vocab_size = INT32_MAX;
}

int srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        int len;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* overlong forms, surrogates, > U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int srv_prescan_json(const char *b, size_t len, const srv_limits *lim, srv_error *e) {
    if (!srv_utf8_valid(b, len)) return srv_fail(e, 400, NULL, "invalid_utf8", "request body is not valid UTF-8");
    int depth = 0;
    size_t i = 0;
    while (i < len) {
        char c = b[i];
        if (c == '"') {
            size_t start = ++i;
            while (i < len && b[i] != '"') i += b[i] == '\\' ? 2 : 1;
            /* raw length bounds the decoded length */
            if (i - start > lim->max_string)
                return srv_fail(e, 400, NULL, "string_too_long", "a JSON string in the request is longer than %zu bytes",
                                lim->max_string);
            i++;
            continue;
        }
        if (c == '[' || c == '{') {
            if (++depth > lim->max_depth)
                return srv_fail(e, 400, NULL, "too_deep", "JSON nesting deeper than %d levels", lim->max_depth);
        } else if (c == ']' || c == '}') {
            depth--;
        }
        i++;
    }
    return 0;
}

/* ------------------------------------------------------------ field access */

/* Present and not null. */
static json_t *opt(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int f_bool(json_t *root, const char *key, int *out, srv_error *e) {
    json_t *v = opt(root, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return srv_fail(e, 400, key, "invalid_type", "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

/* Integer field in [lo, hi]; an integral real (e.g. 16.0) is accepted. */
static int get_int(json_t *v, const char *name, int64_t lo, int64_t hi, int64_t *out, srv_error *e) {
    int64_t x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
            return srv_fail(e, 400, name, "invalid_type", "'%s' must be an integer", name);
        x = (int64_t)d;
    } else {
        return srv_fail(e, 400, name, "invalid_type", "'%s' must be an integer", name);
    }
    if (x < lo || x > hi)
        return srv_fail(e, 400, name, "out_of_range", "'%s' must be between %lld and %lld, got %lld", name,
                        (long long)lo, (long long)hi, (long long)x);
    *out = x;
    return 0;
}

static int f_int(json_t *root, const char *key, int64_t lo, int64_t hi, int64_t *out, srv_error *e) {
    json_t *v = opt(root, key);
    return v ? get_int(v, key, lo, hi, out, e) : 0;
}

/* Number in [lo, hi] (lo excluded when lo_open). */
static int f_num(json_t *root, const char *key, double lo, double hi, int lo_open, double *out, srv_error *e) {
    json_t *v = opt(root, key);
    if (!v) return 0;
    if (!json_is_number(v)) return srv_fail(e, 400, key, "invalid_type", "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo))
        return srv_fail(e, 400, key, "out_of_range", "'%s' must be in %s%g, %g], got %g", key, lo_open ? "(" : "[", lo,
                        hi, x);
    *out = x;
    return 0;
}

static char *dup_str(json_t *v, size_t *len) {
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, json_string_value(v), n);
    s[n] = 0;
    if (len) *len = n;
    return s;
}

static int oom(srv_error *e) { return srv_fail(e, 500, NULL, NULL, "out of memory"); }

/* ------------------------------------------------------------------ prompt */

static int parse_ids(json_t *arr, const char *name, const srv_limits *lim, srv_request *r, srv_error *e) {
    size_t n = json_array_size(arr);
    if (n == 0) return srv_fail(e, 400, name, "invalid_value", "'%s' must not be empty", name);
    if ((int64_t)n > lim->max_prompt_ids)
        return srv_fail(e, 400, name, "context_length_exceeded",
                        "the prompt has %zu tokens; the context limit is %lld tokens", n, (long long)lim->max_prompt_ids);
    r->prompt_ids = malloc(sizeof(int32_t) * n);
    if (!r->prompt_ids) return oom(e);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        char pname[64];
        snprintf(pname, sizeof pname, "%s[%zu]", name, i);
        int64_t id;
        if (!json_is_integer(v)) return srv_fail(e, 400, pname, "invalid_type", "'%s' must be a token id (integer)", pname);
        id = json_integer_value(v);
        if (id < 0 || id >= lim->vocab_size)
            return srv_fail(e, 400, pname, "out_of_range", "'%s': token id %lld is outside the vocabulary [0, %lld)", pname,
                            (long long)id, (long long)lim->vocab_size);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = (int64_t)n;
    return 0;
}

/* prompt: "text" | ["text"] | [ids] | [[ids]] (one prompt per request). */
static int parse_prompt(json_t *root, const srv_limits *lim, srv_request *r, srv_error *e) {
    json_t *p = opt(root, "prompt");
    if (!p) return srv_fail(e, 400, "prompt", "missing_field", "'prompt' is required");
    if (json_is_string(p)) {
        r->prompt = dup_str(p, &r->prompt_len);
        return r->prompt ? 0 : oom(e);
    }
    if (!json_is_array(p))
        return srv_fail(e, 400, "prompt", "invalid_type", "'prompt' must be a string, an array of strings or token ids");
    size_t n = json_array_size(p);
    if (n == 0) return srv_fail(e, 400, "prompt", "invalid_value", "'prompt' must not be empty");
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return parse_ids(p, "prompt", lim, r, e);
    if (n > 1) return srv_fail(e, 400, "prompt", "unsupported", "only one prompt per request is supported");
    if (json_is_string(first)) {
        r->prompt = dup_str(first, &r->prompt_len);
        return r->prompt ? 0 : oom(e);
    }
    if (json_is_array(first)) return parse_ids(first, "prompt[0]", lim, r, e);
    return srv_fail(e, 400, "prompt[0]", "invalid_type", "'prompt[0]' must be a string, a token id or an array of ids");
}

/* ---------------------------------------------------------------- messages */

/* content: string | null | [{"type":"text","text":...}, ...] */
static int parse_content(json_t *c, const char *name, const srv_limits *lim, char **out, srv_error *e) {
    *out = NULL;
    if (!c || json_is_null(c)) return 0;
    if (json_is_string(c)) return (*out = dup_str(c, NULL)) ? 0 : oom(e);
    if (!json_is_array(c)) return srv_fail(e, 400, name, "invalid_type", "'%s' must be a string, null or an array of parts", name);
    size_t n = json_array_size(c);
    if (n > lim->max_tools) return srv_fail(e, 400, name, "too_many", "'%s' has more than %zu parts", name, lim->max_tools);
    dsv3_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *part = json_array_get(c, i), *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        char pname[128];
        snprintf(pname, sizeof pname, "%s[%zu]", name, i);
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            dsv3_buf_free(&b);
            return srv_fail(e, 400, pname, "unsupported", "'%s': only {\"type\": \"text\", \"text\": ...} parts are supported", pname);
        }
        if (dsv3_buf_add(&b, json_string_value(text), json_string_length(text))) { dsv3_buf_free(&b); return oom(e); }
    }
    if (dsv3_buf_add(&b, "", 0) || !b.p) { dsv3_buf_free(&b); return oom(e); }
    b.p[b.n] = 0;
    *out = b.p;
    return 0;
}

static int parse_tool_calls(json_t *tc, const char *name, const srv_limits *lim, srv_message *m, srv_error *e) {
    if (!json_is_array(tc)) return srv_fail(e, 400, name, "invalid_type", "'%s' must be an array", name);
    size_t n = json_array_size(tc);
    if (n > lim->max_tools) return srv_fail(e, 400, name, "too_many", "'%s' has more than %zu entries", name, lim->max_tools);
    if (n == 0) return 0;
    m->calls = calloc(n, sizeof *m->calls);
    if (!m->calls) return oom(e);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(tc, i);
        char pname[160];
        snprintf(pname, sizeof pname, "%s[%zu]", name, i);
        json_t *fn = json_object_get(c, "function"), *type = json_object_get(c, "type"), *id = json_object_get(c, "id");
        if (!json_is_object(c) || !json_is_object(fn))
            return srv_fail(e, 400, pname, "invalid_type", "'%s' must be an object with a 'function' object", pname);
        if (type && !json_is_null(type) && (!json_is_string(type) || strcmp(json_string_value(type), "function")))
            return srv_fail(e, 400, pname, "invalid_value", "'%s.type' must be \"function\"", pname);
        json_t *fname = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_string(fname) || json_string_length(fname) == 0)
            return srv_fail(e, 400, pname, "invalid_type", "'%s.function.name' must be a non-empty string", pname);
        srv_tool_call *call = &m->calls[m->n_calls++];
        if (!(call->name = dup_str(fname, NULL))) return oom(e);
        if (json_is_string(args)) call->arguments = dup_str(args, NULL);
        else if (json_is_object(args)) call->arguments = json_dumps(args, JSON_COMPACT);
        else if (!args || json_is_null(args)) call->arguments = strdup("{}");
        else return srv_fail(e, 400, pname, "invalid_type", "'%s.function.arguments' must be a JSON string", pname);
        if (!call->arguments) return oom(e);
        if (json_is_string(id) && !(call->id = dup_str(id, NULL))) return oom(e);
    }
    return 0;
}

static int parse_messages(json_t *root, const srv_limits *lim, srv_request *r, srv_error *e) {
    json_t *msgs = opt(root, "messages");
    if (!msgs) return srv_fail(e, 400, "messages", "missing_field", "'messages' is required");
    if (!json_is_array(msgs)) return srv_fail(e, 400, "messages", "invalid_type", "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n == 0) return srv_fail(e, 400, "messages", "invalid_value", "'messages' must not be empty");
    if (n > lim->max_messages)
        return srv_fail(e, 400, "messages", "too_many", "'messages' has %zu entries; at most %zu are allowed", n,
                        lim->max_messages);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return oom(e);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char name[64];
        snprintf(name, sizeof name, "messages[%zu]", i);
        if (!json_is_object(m)) return srv_fail(e, 400, name, "invalid_type", "'%s' must be an object", name);
        srv_message *sm = &r->msgs[r->n_msgs++];
        json_t *role = json_object_get(m, "role");
        char pname[96];
        snprintf(pname, sizeof pname, "%s.role", name);
        if (!json_is_string(role)) return srv_fail(e, 400, pname, "invalid_type", "'%s' must be a string", pname);
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
            return srv_fail(e, 400, pname, "invalid_value",
                            "'%s' must be one of system, developer, user, assistant, tool", pname);
        if (!(sm->role = strdup(rs))) return oom(e);
        snprintf(pname, sizeof pname, "%s.content", name);
        if (parse_content(json_object_get(m, "content"), pname, lim, &sm->content, e)) return -1;
        json_t *tc = opt(m, "tool_calls");
        if (tc && !strcmp(sm->role, "assistant")) {
            snprintf(pname, sizeof pname, "%s.tool_calls", name);
            if (parse_tool_calls(tc, pname, lim, sm, e)) return -1;
        }
        snprintf(pname, sizeof pname, "%s.content", name);
        if (!sm->content && strcmp(sm->role, "assistant"))
            return srv_fail(e, 400, pname, "missing_field", "'%s' is required for role %s", pname, sm->role);
        if (!sm->content && !sm->n_calls)
            return srv_fail(e, 400, pname, "missing_field", "'%s' needs 'content' or 'tool_calls'", name);
    }
    return 0;
}

static int parse_tools(json_t *root, const srv_limits *lim, srv_request *r, srv_error *e) {
    json_t *tools = opt(root, "tools");
    if (tools) {
        if (!json_is_array(tools)) return srv_fail(e, 400, "tools", "invalid_type", "'tools' must be an array");
        size_t n = json_array_size(tools);
        if (n > lim->max_tools) return srv_fail(e, 400, "tools", "too_many", "'tools' has more than %zu entries", lim->max_tools);
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(tools, i), *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
            char name[48];
            snprintf(name, sizeof name, "tools[%zu]", i);
            if (!json_is_object(t) || !json_is_string(type) || strcmp(json_string_value(type), "function") ||
                !json_is_object(fn))
                return srv_fail(e, 400, name, "invalid_value", "'%s' must be {\"type\": \"function\", \"function\": {...}}", name);
            json_t *fname = json_object_get(fn, "name"), *desc = json_object_get(fn, "description"),
                   *params = json_object_get(fn, "parameters");
            if (!json_is_string(fname) || json_string_length(fname) == 0)
                return srv_fail(e, 400, name, "invalid_type", "'%s.function.name' must be a non-empty string", name);
            if (desc && !json_is_null(desc) && !json_is_string(desc))
                return srv_fail(e, 400, name, "invalid_type", "'%s.function.description' must be a string", name);
            if (params && !json_is_null(params) && !json_is_object(params))
                return srv_fail(e, 400, name, "invalid_type", "'%s.function.parameters' must be an object", name);
        }
        if (n) r->tools = json_incref(tools);
    }
    json_t *tc = opt(root, "tool_choice");
    if (!tc) return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "auto")) r->tool_choice = SRV_TOOL_AUTO;
        else if (!strcmp(s, "none")) r->tool_choice = SRV_TOOL_NONE;
        else if (!strcmp(s, "required")) r->tool_choice = SRV_TOOL_REQUIRED;
        else return srv_fail(e, 400, "tool_choice", "invalid_value", "'tool_choice' must be none, auto, required or an object");
    } else {
        json_t *fn = json_object_get(tc, "function"), *name = json_object_get(fn, "name");
        if (!json_is_object(tc) || !json_is_string(name))
            return srv_fail(e, 400, "tool_choice", "invalid_type",
                            "'tool_choice' must be a string or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        r->tool_choice = SRV_TOOL_NAMED;
        if (!(r->tool_choice_name = dup_str(name, NULL))) return oom(e);
    }
    if (r->tool_choice != SRV_TOOL_NONE && r->tool_choice != SRV_TOOL_AUTO && !r->tools)
        return srv_fail(e, 400, "tool_choice", "invalid_value", "'tool_choice' needs 'tools'");
    return 0;
}

/* ------------------------------------------------------------ the request */

static int parse_stop(json_t *root, const srv_limits *lim, srv_request *r, srv_error *e) {
    json_t *s = opt(root, "stop");
    if (!s) return 0;
    json_t *one[1] = {s};
    json_t **list = one;
    size_t n = 1;
    if (json_is_array(s)) {
        n = json_array_size(s);
        if (n > SRV_MAX_STOP) return srv_fail(e, 400, "stop", "too_many", "'stop' has more than %d strings", SRV_MAX_STOP);
        list = NULL;
    } else if (!json_is_string(s)) {
        return srv_fail(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = list ? list[i] : json_array_get(s, i);
        if (!json_is_string(v)) return srv_fail(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
        size_t len = json_string_length(v);
        if (len == 0) return srv_fail(e, 400, "stop", "invalid_value", "'stop' strings must not be empty");
        if (len > lim->max_stop_len)
            return srv_fail(e, 400, "stop", "string_too_long", "'stop' strings must be at most %zu bytes", lim->max_stop_len);
        if (!(r->stop[r->n_stop] = dup_str(v, &r->stop_len[r->n_stop]))) return oom(e);
        r->n_stop++;
    }
    return 0;
}

/* Fields we recognise but do not implement: refuse rather than ignore when set. */
static int unsupported(json_t *root, int chat, srv_error *e) {
    json_t *v;
    int64_t x = 0;
    if (f_int(root, "n", 1, 1, &x, e)) return srv_fail(e, 400, "n", "unsupported", "'n' must be 1 (one choice per request)");
    if (f_int(root, "best_of", 1, 1, &x, e)) return srv_fail(e, 400, "best_of", "unsupported", "'best_of' must be 1");
    if ((v = opt(root, "logprobs"))) {
        if (chat ? !json_is_boolean(v) : !json_is_integer(v))
            return srv_fail(e, 400, "logprobs", "invalid_type", "'logprobs' must be %s", chat ? "a boolean" : "an integer");
        if (json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0))
            return srv_fail(e, 400, "logprobs", "unsupported", "'logprobs' is not supported");
    }
    if (f_int(root, "top_logprobs", 0, 20, &x, e)) return -1;
    if ((v = opt(root, "echo")) && (!json_is_boolean(v) || json_is_true(v)))
        return srv_fail(e, 400, "echo", json_is_boolean(v) ? "unsupported" : "invalid_type", "'echo' is not supported");
    if ((v = opt(root, "suffix")) && (!json_is_string(v) || json_string_length(v)))
        return srv_fail(e, 400, "suffix", "unsupported", "'suffix' is not supported");
    if ((v = opt(root, "logit_bias")) && (!json_is_object(v) || json_object_size(v)))
        return srv_fail(e, 400, "logit_bias", json_is_object(v) ? "unsupported" : "invalid_type",
                        "'logit_bias' is not supported");
    double d;
    if (f_num(root, "presence_penalty", -2, 2, 0, &d, e) || f_num(root, "frequency_penalty", -2, 2, 0, &d, e)) return -1;
    return 0;
}

int srv_request_parse(const char *body, size_t len, int chat, const srv_limits *lim, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    r->temperature = 1.0;
    r->top_p = 1.0;
    if (len > lim->max_body)
        return srv_fail(e, 413, NULL, "request_too_large", "request body is larger than %zu bytes", lim->max_body);
    if (srv_prescan_json(body, len, lim, e)) return -1;
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root)
        return srv_fail(e, 400, NULL, "invalid_json", "invalid JSON in request body: %s (line %d, column %d)", je.text,
                        je.line, je.column);
    int rc = -1;
    if (!json_is_object(root)) { srv_fail(e, 400, NULL, "invalid_json", "the request body must be a JSON object"); goto done; }
    json_t *v;
    if ((v = opt(root, "model"))) {
        if (!json_is_string(v)) { srv_fail(e, 400, "model", "invalid_type", "'model' must be a string"); goto done; }
        if (!(r->model = dup_str(v, NULL))) { oom(e); goto done; }
    }
    if ((v = opt(root, "user")) && !json_is_string(v)) { srv_fail(e, 400, "user", "invalid_type", "'user' must be a string"); goto done; }
    if (chat ? parse_messages(root, lim, r, e) || parse_tools(root, lim, r, e) : parse_prompt(root, lim, r, e)) goto done;
    int64_t mt = -1;
    if (f_int(root, "max_tokens", 1, lim->max_tokens, &mt, e)) goto done;
    if (chat && f_int(root, "max_completion_tokens", 1, lim->max_tokens, &mt, e)) goto done;
    r->max_tokens = mt;
    if (f_num(root, "temperature", 0, 2, 0, &r->temperature, e) || f_num(root, "top_p", 0, 1, 1, &r->top_p, e)) goto done;
    if (f_int(root, "top_k", -1, INT32_MAX, &r->top_k, e)) goto done;
    if (r->top_k < 0) r->top_k = 0; /* -1 = off (vLLM) */
    int64_t seed;
    if ((v = opt(root, "seed"))) {
        if (get_int(v, "seed", INT64_MIN, INT64_MAX, &seed, e)) goto done;
        r->seed = (uint64_t)seed;
        r->has_seed = 1;
    }
    if (parse_stop(root, lim, r, e) || unsupported(root, chat, e)) goto done;
    if (f_bool(root, "stream", &r->stream, e) || f_bool(root, "ignore_eos", &r->ignore_eos, e) ||
        f_bool(root, "return_token_ids", &r->return_token_ids, e))
        goto done;
    if ((v = opt(root, "stream_options"))) {
        if (!json_is_object(v)) { srv_fail(e, 400, "stream_options", "invalid_type", "'stream_options' must be an object"); goto done; }
        json_t *iu = opt(v, "include_usage");
        if (iu && !json_is_boolean(iu)) {
            srv_fail(e, 400, "stream_options.include_usage", "invalid_type", "'stream_options.include_usage' must be a boolean");
            goto done;
        }
        r->include_usage = iu && json_is_true(iu);
    }
    rc = 0;
done:
    json_decref(root);
    if (rc) srv_request_free(r);
    return rc;
}

void srv_request_free(srv_request *r) {
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (size_t i = 0; i < r->n_msgs; i++) {
        srv_message *m = &r->msgs[i];
        free(m->role);
        free(m->content);
        for (size_t k = 0; k < m->n_calls; k++) {
            free(m->calls[k].id);
            free(m->calls[k].name);
            free(m->calls[k].arguments);
        }
        free(m->calls);
    }
    free(r->msgs);
    json_decref(r->tools);
    free(r->tool_choice_name);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
    r->max_tokens = -1;
}
