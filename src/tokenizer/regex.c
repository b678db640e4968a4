/* Regexes of tokenizer.json on PCRE2 with Oniguruma (HF tokenizers)
 * semantics.
 *
 * HF compiles Split patterns with Oniguruma (Ruby syntax, UTF-8). PCRE2 with
 * UTF + UCP agrees on the syntax used by tokenizers except for a few
 * escapes whose classes differ; those are rewritten to explicit classes:
 *   \s  Oniguruma: White_Space = \t-\r, U+0085, Zs/Zl/Zp   (PCRE2 lacks U+0085)
 *   \w  Oniguruma: L, M, N, Pc                             (PCRE2: L, N, '_')
 *   \h  Oniguruma: hex digit                               (PCRE2: horizontal space)
 *   \uHHHH                                                 (PCRE2: \x{HHHH})
 *   (?m) Ruby "dot matches newline"                        (PCRE2: (?s))
 * and ^/$ are line anchors as in Ruby (PCRE2_MULTILINE). Negated \S \W
 * inside a bracket class cannot be expanded and keep PCRE2's meaning (they
 * differ only on U+0085 / marks). Nested classes and && are rejected.
 * Invalid UTF-8 in the subject is allowed (PCRE2_MATCH_INVALID_UTF): such
 * bytes never match any item. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/buf.h"
#include "tokenizer/tokenizer_internal.h"

#define ONIG_SPACE "\\t-\\r\\x{85}\\p{Z}"
#define ONIG_WORD "\\p{L}\\p{M}\\p{N}\\p{Pc}"
#define ONIG_HEX "0-9a-fA-F"

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

char *tok_regex_translate(const char *pat, size_t len, size_t *out_len, dsv3_error *err) {
    dsv3_buf b = {0};
    int in_class = 0;     /* inside [...] */
    int class_start = 0;  /* just after '[' or '[^' (a ']' here is literal) */
    dsv3_buf_add(&b, "", 0);
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\') {
            if (i + 1 >= len) {
                free(b.p);
                dsv3_fail(err, DSV3_ERR_FORMAT, "regex '%.*s': trailing backslash", (int)len, pat);
                return NULL;
            }
            char e = pat[++i];
            class_start = 0;
            const char *rep = NULL;
            switch (e) {
            case 's': rep = in_class ? ONIG_SPACE : "[" ONIG_SPACE "]"; break;
            case 'S': rep = in_class ? "\\S" : "[^" ONIG_SPACE "]"; break;
            case 'w': rep = in_class ? ONIG_WORD : "[" ONIG_WORD "]"; break;
            case 'W': rep = in_class ? "\\W" : "[^" ONIG_WORD "]"; break;
            case 'h': rep = in_class ? ONIG_HEX : "[" ONIG_HEX "]"; break;
            case 'H':
                if (in_class) {
                    free(b.p);
                    dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "regex '%.*s': \\H inside a character class is not supported",
                              (int)len, pat);
                    return NULL;
                }
                rep = "[^" ONIG_HEX "]";
                break;
            case 'u':
                if (i + 4 < len + 0 && is_hex(pat[i + 1]) && is_hex(pat[i + 2]) && is_hex(pat[i + 3]) &&
                    is_hex(pat[i + 4])) {
                    char tmp[16];
                    snprintf(tmp, sizeof tmp, "\\x{%.4s}", pat + i + 1);
                    dsv3_buf_adds(&b, tmp);
                    i += 4;
                    continue;
                }
                break;
            default: break;
            }
            if (rep) dsv3_buf_adds(&b, rep);
            else { char two[2] = {'\\', e}; dsv3_buf_add(&b, two, 2); }
            continue;
        }
        if (in_class) {
            if (c == '[') {
                /* POSIX bracket [:alpha:] is fine; nested classes are Oniguruma-only */
                if (i + 1 < len && pat[i + 1] == ':') {
                    const char *endp = NULL;
                    for (size_t j = i + 2; j + 1 < len; j++)
                        if (pat[j] == ':' && pat[j + 1] == ']') { endp = pat + j + 2; break; }
                    if (endp) {
                        dsv3_buf_add(&b, pat + i, (size_t)(endp - (pat + i)));
                        i = (size_t)(endp - pat) - 1;
                        class_start = 0;
                        continue;
                    }
                }
                free(b.p);
                dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "regex '%.*s': nested character classes are not supported",
                          (int)len, pat);
                return NULL;
            }
            if (c == '&' && i + 1 < len && pat[i + 1] == '&') {
                free(b.p);
                dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "regex '%.*s': class intersection && is not supported", (int)len,
                          pat);
                return NULL;
            }
            if (c == ']' && !class_start) in_class = 0;
            class_start = 0;
            dsv3_buf_add(&b, &c, 1);
            continue;
        }
        if (c == '[') {
            in_class = 1;
            class_start = 1;
            dsv3_buf_add(&b, &c, 1);
            if (i + 1 < len && pat[i + 1] == '^') { dsv3_buf_add(&b, "^", 1); i++; }
            continue;
        }
        if (c == '(' && i + 1 < len && pat[i + 1] == '?') {
            /* inline options (?imx-imx) / (?imx-imx:...): Ruby 'm' is PCRE2 's' */
            size_t j = i + 2;
            while (j < len && (pat[j] == 'i' || pat[j] == 'm' || pat[j] == 'x' || pat[j] == '-')) j++;
            if (j > i + 2 && j < len && (pat[j] == ')' || pat[j] == ':')) {
                for (size_t k = i; k < j; k++) {
                    char o = pat[k] == 'm' && k >= i + 2 ? 's' : pat[k];
                    dsv3_buf_add(&b, &o, 1);
                }
                i = j - 1;
                continue;
            }
        }
        dsv3_buf_add(&b, &c, 1);
    }
    if (b.oom) {
        free(b.p);
        dsv3_fail(err, DSV3_ERR_NOMEM, "regex: out of memory");
        return NULL;
    }
    *out_len = b.n;
    return b.p;
}

/* The three Split patterns of the DeepSeek-V3 tokenizer, for which
 * pretokenize.c has hand-written matchers. */
static const char k_ds_digits[] = "\\p{N}{1,3}";
static const char k_ds_cjk[] = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";
static const char k_ds_main[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

static int fast_kind(const char *p, size_t n) {
    if (n == sizeof k_ds_digits - 1 && !memcmp(p, k_ds_digits, n)) return TOK_FAST_DS_DIGITS;
    if (n == sizeof k_ds_cjk - 1 && !memcmp(p, k_ds_cjk, n)) return TOK_FAST_DS_CJK;
    if (n == sizeof k_ds_main - 1 && !memcmp(p, k_ds_main, n)) return TOK_FAST_DS_MAIN;
    return TOK_FAST_NONE;
}

static dsv3_status compile_pcre(tok_regex *re, const char *pcre_pat, size_t n, const char *shown, size_t shown_len,
                                dsv3_error *err) {
    int ec;
    PCRE2_SIZE eo;
    re->code = pcre2_compile((PCRE2_SPTR)pcre_pat, n,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE, &ec, &eo, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return dsv3_fail(err, DSV3_ERR_FORMAT, "regex '%.*s': %s (at offset %zu of the translated pattern)",
                         (int)shown_len, shown, (const char *)msg, (size_t)eo);
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    re->source = malloc(shown_len + 1);
    if (!re->source) return dsv3_fail(err, DSV3_ERR_NOMEM, "regex: out of memory");
    memcpy(re->source, shown, shown_len);
    re->source[shown_len] = 0;
    return DSV3_OK;
}

dsv3_status tok_regex_compile(tok_regex *re, const char *pattern, size_t len, dsv3_error *err) {
    memset(re, 0, sizeof *re);
    if (!tok_utf8_valid((const unsigned char *)pattern, len))
        return dsv3_fail(err, DSV3_ERR_FORMAT, "regex: pattern is not valid UTF-8");
    size_t tl;
    char *t = tok_regex_translate(pattern, len, &tl, err);
    if (!t) return err ? err->code : DSV3_ERR_FORMAT;
    dsv3_status st = compile_pcre(re, t, tl, pattern, len, err);
    free(t);
    if (st) { tok_regex_free(re); return st; }
    re->fast = fast_kind(pattern, len);
    return DSV3_OK;
}

dsv3_status tok_regex_compile_literal(tok_regex *re, const char *s, size_t len, dsv3_error *err) {
    memset(re, 0, sizeof *re);
    if (!tok_utf8_valid((const unsigned char *)s, len))
        return dsv3_fail(err, DSV3_ERR_FORMAT, "split pattern: string is not valid UTF-8");
    /* escape every ASCII punctuation/control byte; '\' + non-alphanumeric is a literal in PCRE2 */
    char *t = malloc(2 * len + 1);
    if (!t) return dsv3_fail(err, DSV3_ERR_NOMEM, "regex: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (c < 0x80 && !alnum) t[n++] = '\\';
        t[n++] = (char)c;
    }
    dsv3_status st = compile_pcre(re, t, n, s, len, err);
    free(t);
    if (st) tok_regex_free(re);
    return st;
}

void tok_regex_free(tok_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    free(re->source);
    memset(re, 0, sizeof *re);
}

dsv3_status tok_matcher_init(tok_matcher *m, dsv3_error *err) {
    memset(m, 0, sizeof *m);
    m->md = pcre2_match_data_create(1, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    m->jstack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
    if (!m->md || !m->mctx || !m->jstack) {
        tok_matcher_free(m);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: cannot allocate regex match state");
    }
    pcre2_jit_stack_assign(m->mctx, NULL, m->jstack);
    return DSV3_OK;
}

void tok_matcher_free(tok_matcher *m) {
    if (m->md) pcre2_match_data_free(m->md);
    if (m->mctx) pcre2_match_context_free(m->mctx);
    if (m->jstack) pcre2_jit_stack_free(m->jstack);
    memset(m, 0, sizeof *m);
}

int tok_regex_search(const tok_regex *re, tok_matcher *m, const char *subj, size_t n, size_t start, size_t *ms,
                     size_t *me, dsv3_error *err) {
    int rc;
    if (re->jit) rc = pcre2_jit_match(re->code, (PCRE2_SPTR)subj, n, start, 0, m->md, m->mctx);
    else rc = pcre2_match(re->code, (PCRE2_SPTR)subj, n, start, 0, m->md, m->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        dsv3_fail(err, DSV3_ERR_INVALID, "regex '%s': match failed: %s", re->source, (const char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}
