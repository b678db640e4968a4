/* Chat templates rendered natively. tokenizer_config.json carries a Jinja
 * template; we recognise known templates by their exact text and render
 * them in C. Currently: the DeepSeek-V3 template (spec §5.1), reproduced
 * with all of its quirks:
 *   - every system message, wherever it is, is concatenated (joined by
 *     "\n\n") right after BOS;
 *   - the "first tool call" flag is never reset: only the very first tool
 *     call of the conversation opens "<｜Assistant｜><｜tool▁calls▁begin｜>",
 *     and every later call closes with "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>";
 *   - tool outputs: the first ever opens "<｜tool▁outputs▁begin｜>", later ones
 *     are joined by "\n"; an assistant message after tool output closes the
 *     block instead of emitting "<｜Assistant｜>";
 *   - the generation prompt is not added right after tool output.
 * Jinja errors (a missing content, a non-string concatenated) are errors
 * here too. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/buf.h"
#include "tokenizer/tokenizer_internal.h"

static const char k_deepseek_v3_template[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% end"
    "if %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_pro"
    "mpt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'syste"
    "m' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content"
    "'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt"
    " + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.sy"
    "stem_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.i"
    "s_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] =="
    " 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool i"
    "n message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜to"
    "ol▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```j"
    "son' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set "
    "ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁s"
    "ep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments']"
    " + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endi"
    "f %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] "
    "is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁o"
    "f▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['conte"
    "nt'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{"
    "%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁ou"
    "tput▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = f"
    "alse %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'"
    "}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% en"
    "dif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}";

static int trimmed_eq(const char *s, size_t n, const char *ref) {
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    return n == strlen(ref) && !memcmp(s, ref, n);
}

int tok_chat_recognize(const char *tmpl, size_t len) {
    if (trimmed_eq(tmpl, len, k_deepseek_v3_template)) return TOK_CHAT_DEEPSEEK_V3;
    return TOK_CHAT_UNKNOWN;
}

int dsv3_tokenizer_has_chat_template(const dsv3_tokenizer *tok) {
    return tok && tok->chat_kind == TOK_CHAT_DEEPSEEK_V3;
}

#define U_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define U_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define U_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define U_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define U_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define U_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define U_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define U_SEP "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>"
#define U_OUTPUTS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define U_OUTPUTS_END "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "end\xef\xbd\x9c>"
#define U_OUTPUT_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define U_OUTPUT_END "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "end\xef\xbd\x9c>"

static int role_is(const dsv3_chat_message *m, const char *r) { return m->role && !strcmp(m->role, r); }

static void add_tool_call(dsv3_buf *b, const dsv3_tool_call *tc) {
    dsv3_buf_adds(b, tc->type);
    dsv3_buf_adds(b, U_SEP);
    dsv3_buf_adds(b, tc->name);
    dsv3_buf_adds(b, "\n```json\n");
    dsv3_buf_adds(b, tc->arguments);
    dsv3_buf_adds(b, "\n```" U_CALL_END);
}

static dsv3_status render_deepseek_v3(const dsv3_tokenizer *tok, const dsv3_chat_message *msgs, size_t n, int agp,
                                      dsv3_buf *b, dsv3_error *err) {
    /* validate what the template concatenates (Jinja raises on None/undefined) */
    for (size_t i = 0; i < n; i++) {
        const dsv3_chat_message *m = &msgs[i];
        if (role_is(m, "system") || role_is(m, "user") || role_is(m, "tool")) {
            if (!m->content)
                return dsv3_fail(err, DSV3_ERR_INVALID, "chat template: message %zu (%s) has no content", i, m->role);
        } else if (role_is(m, "assistant") && !m->content) {
            for (size_t j = 0; j < m->n_tool_calls; j++) {
                const dsv3_tool_call *tc = &m->tool_calls[j];
                if (!tc->type || !tc->name || !tc->arguments)
                    return dsv3_fail(err, DSV3_ERR_INVALID,
                                     "chat template: message %zu tool call %zu needs type, function.name and "
                                     "function.arguments strings",
                                     i, j);
            }
        }
    }
    int is_first = 0, is_tool = 0, is_output_first = 1, is_first_sp = 1;
    if (tok->bos_str) dsv3_buf_adds(b, tok->bos_str);
    for (size_t i = 0; i < n; i++) {
        if (!role_is(&msgs[i], "system")) continue;
        if (!is_first_sp) dsv3_buf_adds(b, "\n\n");
        dsv3_buf_adds(b, msgs[i].content);
        is_first_sp = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const dsv3_chat_message *m = &msgs[i];
        if (role_is(m, "user")) {
            is_tool = 0;
            dsv3_buf_adds(b, U_USER);
            dsv3_buf_adds(b, m->content);
        }
        if (role_is(m, "assistant") && !m->content) {
            is_tool = 0;
            for (size_t j = 0; j < m->n_tool_calls; j++) {
                if (!is_first) {
                    dsv3_buf_adds(b, U_ASSISTANT U_CALLS_BEGIN U_CALL_BEGIN);
                    add_tool_call(b, &m->tool_calls[j]);
                    is_first = 1;
                } else {
                    dsv3_buf_adds(b, "\n" U_CALL_BEGIN);
                    add_tool_call(b, &m->tool_calls[j]);
                    dsv3_buf_adds(b, U_CALLS_END U_EOS);
                }
            }
        }
        if (role_is(m, "assistant") && m->content) {
            if (is_tool) {
                dsv3_buf_adds(b, U_OUTPUTS_END);
                dsv3_buf_adds(b, m->content);
                dsv3_buf_adds(b, U_EOS);
                is_tool = 0;
            } else {
                dsv3_buf_adds(b, U_ASSISTANT);
                dsv3_buf_adds(b, m->content);
                dsv3_buf_adds(b, U_EOS);
            }
        }
        if (role_is(m, "tool")) {
            is_tool = 1;
            dsv3_buf_adds(b, is_output_first ? U_OUTPUTS_BEGIN U_OUTPUT_BEGIN : "\n" U_OUTPUT_BEGIN);
            dsv3_buf_adds(b, m->content);
            dsv3_buf_adds(b, U_OUTPUT_END);
            is_output_first = 0;
        }
    }
    if (is_tool) dsv3_buf_adds(b, U_OUTPUTS_END);
    if (agp && !is_tool) dsv3_buf_adds(b, U_ASSISTANT);
    return DSV3_OK;
}

dsv3_status dsv3_tokenizer_apply_chat_template(const dsv3_tokenizer *tok, const dsv3_chat_message *msgs, size_t n,
                                               int add_generation_prompt, char **out, size_t *out_len,
                                               dsv3_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (tok->chat_kind == TOK_CHAT_NONE)
        return dsv3_fail(err, DSV3_ERR_NOT_FOUND, "chat template: tokenizer_config.json has no chat_template");
    if (tok->chat_kind != TOK_CHAT_DEEPSEEK_V3)
        return dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                         "chat template: the chat_template in tokenizer_config.json is not one this library renders "
                         "(known: DeepSeek-V3)");
    dsv3_buf b = {0};
    dsv3_buf_adds(&b, "");
    dsv3_status st = render_deepseek_v3(tok, msgs, n, add_generation_prompt, &b, err);
    if (!st && b.oom) st = dsv3_fail(err, DSV3_ERR_NOMEM, "chat template: out of memory");
    if (st) {
        free(b.p);
        return st;
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
    return DSV3_OK;
}

/* ---------------- JSON messages ---------------- */

static const char *opt_str(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

dsv3_status dsv3_tokenizer_apply_chat_template_json(const dsv3_tokenizer *tok, const char *messages_json, size_t len,
                                                    int add_generation_prompt, char **out, size_t *out_len,
                                                    dsv3_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    json_error_t je;
    json_t *arr = json_loadb(messages_json, len, 0, &je);
    if (!arr) return dsv3_fail(err, DSV3_ERR_FORMAT, "chat messages: invalid JSON: %s", je.text);
    dsv3_status st = DSV3_OK;
    dsv3_chat_message *msgs = NULL;
    dsv3_tool_call *calls = NULL;
    size_t n = 0, ncalls = 0;
    if (!json_is_array(arr)) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "chat messages: expected a JSON array of messages");
        goto done;
    }
    n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *tc = json_object_get(json_array_get(arr, i), "tool_calls");
        if (json_is_array(tc)) ncalls += json_array_size(tc);
    }
    msgs = calloc(n ? n : 1, sizeof *msgs);
    calls = calloc(ncalls ? ncalls : 1, sizeof *calls);
    if (!msgs || !calls) {
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "chat messages: out of memory");
        goto done;
    }
    size_t ci = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        if (!json_is_object(m)) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT, "chat messages: message %zu is not an object", i);
            goto done;
        }
        dsv3_chat_message *cm = &msgs[i];
        cm->role = opt_str(m, "role");
        int known = cm->role && (!strcmp(cm->role, "system") || !strcmp(cm->role, "user") ||
                                 !strcmp(cm->role, "assistant") || !strcmp(cm->role, "tool"));
        if (!known) continue; /* the template ignores other roles */
        json_t *c = json_object_get(m, "content");
        if (!c) {
            st = dsv3_fail(err, DSV3_ERR_INVALID, "chat messages: message %zu (%s) has no \"content\"", i, cm->role);
            goto done;
        }
        if (json_is_null(c) && !strcmp(cm->role, "assistant")) {
            cm->content = NULL;
            json_t *tcs = json_object_get(m, "tool_calls");
            if (!tcs || json_is_null(tcs)) continue;
            if (!json_is_array(tcs)) {
                st = dsv3_fail(err, DSV3_ERR_INVALID, "chat messages: message %zu: \"tool_calls\" must be an array", i);
                goto done;
            }
            cm->tool_calls = calls + ci;
            cm->n_tool_calls = json_array_size(tcs);
            for (size_t j = 0; j < cm->n_tool_calls; j++) {
                json_t *tc = json_array_get(tcs, j), *fn = json_object_get(tc, "function");
                dsv3_tool_call *k = &calls[ci++];
                k->type = opt_str(tc, "type");
                k->name = opt_str(fn, "name");
                k->arguments = opt_str(fn, "arguments");
                if (!k->type || !k->name || !k->arguments) {
                    st = dsv3_fail(err, DSV3_ERR_INVALID,
                                   "chat messages: message %zu tool call %zu needs string \"type\", "
                                   "\"function\".\"name\" and \"function\".\"arguments\"",
                                   i, j);
                    goto done;
                }
            }
            continue;
        }
        if (!json_is_string(c)) {
            st = dsv3_fail(err, DSV3_ERR_INVALID, "chat messages: message %zu (%s): \"content\" must be a string", i,
                           cm->role);
            goto done;
        }
        cm->content = json_string_value(c);
    }
    st = dsv3_tokenizer_apply_chat_template(tok, msgs, n, add_generation_prompt, out, out_len, err);
done:
    free(msgs);
    free(calls);
    json_decref(arr);
    return st;
}
