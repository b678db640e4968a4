/* Strict JSON (RFC 8259) parser into an arena DOM, used for tokenizer.json.
 * Strings are unescaped in place in a private copy of the input (unescaped
 * text is never longer than its escaped form), so parsing the 4 MB DeepSeek
 * file is one pass with almost no allocation. Invalid UTF-8, lone
 * surrogates, control characters in strings, trailing garbage and nesting
 * deeper than TJ_MAX_DEPTH are errors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

#define TJ_MAX_DEPTH 256

struct tj_chunk {
    struct tj_chunk *next;
    size_t used, cap;
    tj_val items[];
};

typedef struct {
    char *p, *end, *start;
    tj_doc *doc;
    tj_val *stack;      /* values of the containers being parsed */
    size_t sn, scap;
    const char *what;
    dsv3_error *err;
} tj_parser;

static dsv3_status tj_error(tj_parser *ps, const char *msg) {
    /* line/column of the error position */
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') { line++; col = 1; } else col++;
    }
    return dsv3_fail(ps->err, DSV3_ERR_FORMAT, "%s: invalid JSON at line %zu column %zu: %s", ps->what, line, col,
                     msg);
}

static tj_val *tj_alloc_items(tj_parser *ps, size_t n) {
    tj_chunk *c = ps->doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = malloc(sizeof *c + cap * sizeof(tj_val));
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = ps->doc->chunks;
        ps->doc->chunks = c;
    }
    tj_val *r = c->items + c->used;
    c->used += n;
    return r;
}

static int tj_push(tj_parser *ps, const tj_val *v) {
    if (ps->sn == ps->scap) {
        size_t nc = ps->scap ? ps->scap * 2 : 1024;
        tj_val *ns = realloc(ps->stack, nc * sizeof *ns);
        if (!ns) return -1;
        ps->stack = ns;
        ps->scap = nc;
    }
    ps->stack[ps->sn++] = *v;
    return 0;
}

static inline void tj_ws(tj_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')) ps->p++;
}

static int tj_hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Parses a string starting at the opening quote; unescapes in place. */
static dsv3_status tj_string(tj_parser *ps, tj_val *out) {
    char *r = ++ps->p, *w = r, *begin = r;
    for (;;) {
        /* fast scan over plain bytes; nothing to copy until the first escape */
        if (w == r) {
            while (r < ps->end && *r != '"' && *r != '\\' && (unsigned char)*r >= 0x20 && (unsigned char)*r < 0x80) r++;
            w = r;
        } else {
            while (r < ps->end && *r != '"' && *r != '\\' && (unsigned char)*r >= 0x20 && (unsigned char)*r < 0x80)
                *w++ = *r++;
        }
        if (r >= ps->end) { ps->p = r; return tj_error(ps, "unterminated string"); }
        unsigned char c = (unsigned char)*r;
        if (c == '"') break;
        if (c < 0x20) { ps->p = r; return tj_error(ps, "control character in string"); }
        if (c >= 0x80) {
            int32_t cp;
            int l = tok_utf8_decode((const unsigned char *)r, (size_t)(ps->end - r), &cp);
            if (cp < 0) { ps->p = r; return tj_error(ps, "invalid UTF-8 in string"); }
            if (w != r)
                for (int i = 0; i < l; i++) w[i] = r[i];
            w += l;
            r += l;
            continue;
        }
        /* escape */
        if (ps->end - r < 2) { ps->p = r; return tj_error(ps, "unterminated escape"); }
        char e = r[1];
        r += 2;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned u;
            if (ps->end - r < 4 || tj_hex4(r, &u)) { ps->p = r; return tj_error(ps, "bad \\u escape"); }
            r += 4;
            int32_t cp = (int32_t)u;
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo;
                if (ps->end - r < 6 || r[0] != '\\' || r[1] != 'u' || tj_hex4(r + 2, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF) {
                    ps->p = r;
                    return tj_error(ps, "lone surrogate in \\u escape");
                }
                r += 6;
                cp = 0x10000 + (int32_t)(((u - 0xD800) << 10) | (lo - 0xDC00));
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                ps->p = r;
                return tj_error(ps, "lone surrogate in \\u escape");
            }
            /* encoded length <= escape length (6 or 12 bytes), so w stays behind r */
            w += tok_utf8_encode(cp, w);
            break;
        }
        default: ps->p = r - 1; return tj_error(ps, "invalid escape");
        }
    }
    size_t n = (size_t)(w - begin);
    if (n > UINT32_MAX) return tj_error(ps, "string too long");
    *w = 0; /* w <= r, and *r is the closing quote, already consumed */
    ps->p = r + 1;
    out->type = TJ_STR;
    out->n = (uint32_t)n;
    out->u.s = begin;
    return DSV3_OK;
}

static dsv3_status tj_number(tj_parser *ps, tj_val *out) {
    char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end) { ps->p = q; return tj_error(ps, "bad number"); }
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') while (q < ps->end && *q >= '0' && *q <= '9') q++;
    else { ps->p = q; return tj_error(ps, "bad number"); }
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; return tj_error(ps, "bad number"); }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; return tj_error(ps, "bad number"); }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    /* integers (the common case: ids) without strtod */
    double v = 0;
    int is_int = 1;
    for (char *d = s; d < q; d++)
        if (*d == '.' || *d == 'e' || *d == 'E') is_int = 0;
    if (is_int && q - s < 16) {
        const char *d = s;
        int neg = *d == '-';
        if (neg) d++;
        long long iv = 0;
        for (; d < q; d++) iv = iv * 10 + (*d - '0');
        v = (double)(neg ? -iv : iv);
    } else {
        char buf[64];
        size_t l = (size_t)(q - s);
        if (l >= sizeof buf) l = sizeof buf - 1; /* enough digits for a double */
        memcpy(buf, s, l);
        buf[l] = 0;
        v = strtod(buf, NULL);
    }
    out->type = TJ_NUM;
    out->n = 0;
    out->u.num = v;
    ps->p = q;
    return DSV3_OK;
}

static dsv3_status tj_value(tj_parser *ps, tj_val *out, int depth);

static dsv3_status tj_container(tj_parser *ps, tj_val *out, int depth, int is_obj) {
    if (depth >= TJ_MAX_DEPTH) return tj_error(ps, "nesting too deep");
    char close = is_obj ? '}' : ']';
    size_t base = ps->sn;
    ps->p++;
    tj_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            tj_val v;
            dsv3_status st;
            if (is_obj) {
                tj_ws(ps);
                if (ps->p >= ps->end || *ps->p != '"') return tj_error(ps, "expected a string key");
                if ((st = tj_string(ps, &v))) return st;
                if (tj_push(ps, &v)) return dsv3_fail(ps->err, DSV3_ERR_NOMEM, "%s: out of memory", ps->what);
                tj_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return tj_error(ps, "expected ':'");
                ps->p++;
            }
            if ((st = tj_value(ps, &v, depth + 1))) return st;
            if (tj_push(ps, &v)) return dsv3_fail(ps->err, DSV3_ERR_NOMEM, "%s: out of memory", ps->what);
            tj_ws(ps);
            if (ps->p >= ps->end) return tj_error(ps, is_obj ? "unterminated object" : "unterminated array");
            if (*ps->p == ',') { ps->p++; continue; }
            if (*ps->p == close) { ps->p++; break; }
            return tj_error(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    size_t cnt = ps->sn - base;
    size_t n = is_obj ? cnt / 2 : cnt;
    if (n > UINT32_MAX) return tj_error(ps, "container too large");
    out->type = is_obj ? TJ_OBJ : TJ_ARR;
    out->n = (uint32_t)n;
    out->u.items = NULL;
    if (cnt) {
        tj_val *items = tj_alloc_items(ps, cnt);
        if (!items) return dsv3_fail(ps->err, DSV3_ERR_NOMEM, "%s: out of memory", ps->what);
        memcpy(items, ps->stack + base, cnt * sizeof *items);
        out->u.items = items;
    }
    ps->sn = base;
    return DSV3_OK;
}

static int tj_lit(tj_parser *ps, const char *lit) {
    size_t l = strlen(lit);
    if ((size_t)(ps->end - ps->p) < l || memcmp(ps->p, lit, l)) return -1;
    ps->p += l;
    return 0;
}

static dsv3_status tj_value(tj_parser *ps, tj_val *out, int depth) {
    tj_ws(ps);
    if (ps->p >= ps->end) return tj_error(ps, "unexpected end of input");
    switch (*ps->p) {
    case '{': return tj_container(ps, out, depth, 1);
    case '[': return tj_container(ps, out, depth, 0);
    case '"': return tj_string(ps, out);
    case 't':
        if (tj_lit(ps, "true")) return tj_error(ps, "invalid literal");
        out->type = TJ_TRUE;
        return DSV3_OK;
    case 'f':
        if (tj_lit(ps, "false")) return tj_error(ps, "invalid literal");
        out->type = TJ_FALSE;
        return DSV3_OK;
    case 'n':
        if (tj_lit(ps, "null")) return tj_error(ps, "invalid literal");
        out->type = TJ_NULL;
        return DSV3_OK;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return tj_number(ps, out);
        return tj_error(ps, "unexpected character");
    }
}

void tj_free(tj_doc *doc) {
    if (!doc) return;
    tj_chunk *c = doc->chunks;
    while (c) {
        tj_chunk *n = c->next;
        free(c);
        c = n;
    }
    free(doc->text);
    memset(doc, 0, sizeof *doc);
}

dsv3_status tj_parse(const char *text, size_t len, tj_doc *doc, const char *what, dsv3_error *err) {
    memset(doc, 0, sizeof *doc);
    doc->text = malloc(len + 1);
    if (!doc->text) return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, len);
    memcpy(doc->text, text, len);
    doc->text[len] = 0;
    tj_parser ps = {.p = doc->text, .end = doc->text + len, .start = doc->text, .doc = doc, .what = what, .err = err};
    /* optional UTF-8 byte order mark */
    if (len >= 3 && !memcmp(ps.p, "\xEF\xBB\xBF", 3)) ps.p += 3;
    dsv3_status st = tj_value(&ps, &doc->root, 0);
    if (!st) {
        tj_ws(&ps);
        if (ps.p != ps.end) st = tj_error(&ps, "trailing characters after the JSON value");
    }
    free(ps.stack);
    if (st) tj_free(doc);
    return st;
}

const tj_val *tj_get(const tj_val *obj, const char *key) {
    if (!obj || obj->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < obj->n; i++) {
        const tj_val *k = &obj->u.items[2 * i];
        if (k->n == kl && !memcmp(k->u.s, key, kl)) return &obj->u.items[2 * i + 1];
    }
    return NULL;
}

const char *tj_type_name(const tj_val *v) {
    if (!v) return "missing";
    switch (v->type) {
    case TJ_NULL: return "null";
    case TJ_FALSE:
    case TJ_TRUE: return "boolean";
    case TJ_NUM: return "number";
    case TJ_STR: return "string";
    case TJ_ARR: return "array";
    case TJ_OBJ: return "object";
    }
    return "?";
}

int tj_int(const tj_val *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!v || v->type != TJ_NUM) return -1;
    double d = v->u.num;
    if (!(d >= (double)lo && d <= (double)hi)) return -1;
    int64_t i = (int64_t)d;
    if ((double)i != d) return -1;
    *out = i;
    return 0;
}
