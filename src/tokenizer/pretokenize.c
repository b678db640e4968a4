/* Pre-tokenization: the Split / ByteLevel pipeline with HF semantics, and
 * hand-written matchers for the three DeepSeek-V3 Split regexes.
 *
 * HF applies each pre-tokenizer of a Sequence to every piece produced by the
 * previous one, each piece being an independent string (lookarounds and
 * anchors do not see outside it). We do the same depth-first: a piece
 * produced by stage k is split by stage k+1 right away, so memory stays
 * proportional to the input and the output order is unchanged.
 *
 * Match iteration follows the onig crate's find_iter used by HF: search from
 * the end of the previous match; an empty match right where the previous
 * match ended is skipped by advancing one character. Matches and the gaps
 * between them become events (offsets, is_match); the Split behaviour turns
 * events into pieces; empty pieces are dropped. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

int tok_evvec_push(tok_evvec *v, size_t s, size_t e, int m) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 256;
        tok_event *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv) return -1;
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n].s = s;
    v->v[v->n].e = e;
    v->v[v->n].m = m;
    v->n++;
    return 0;
}

/* ---------------- character classes for the fast matchers ---------------- */

/* Class at s[i] (i < n): UC_* in the low bits, -1 for an invalid byte.
 * *len gets the byte length, *cp the code point. */
static inline int char_at(const unsigned char *s, size_t n, size_t i, int *len, int32_t *cp) {
    unsigned c = s[i];
    if (c < 0x80) {
        *len = 1;
        *cp = (int32_t)c;
        return tok_uclass_get((int32_t)c);
    }
    *len = tok_utf8_decode(s + i, n - i, cp);
    if (*cp < 0) return -1;
    return tok_uclass_get(*cp);
}

/* \p{N}{1,3} */
static int fast_digits(const unsigned char *s, size_t n, size_t start, size_t *ms, size_t *me) {
    size_t i = start;
    while (i < n) {
        int l;
        int32_t cp;
        int k = char_at(s, n, i, &l, &cp);
        if (k == UC_N) {
            size_t j = i + (size_t)l;
            for (int c = 1; c < 3 && j < n; c++) {
                if (char_at(s, n, j, &l, &cp) != UC_N) break;
                j += (size_t)l;
            }
            *ms = i;
            *me = j;
            return 1;
        }
        i += (size_t)l;
    }
    return 0;
}

/* [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+ */
static inline int is_cjk(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF);
}

static int fast_cjk(const unsigned char *s, size_t n, size_t start, size_t *ms, size_t *me) {
    size_t i = start;
    while (i < n) {
        if (s[i] < 0xE3) { i++; continue; } /* every code point in the ranges starts with E3..E9 */
        int32_t cp;
        int l = tok_utf8_decode(s + i, n - i, &cp);
        if (is_cjk(cp)) {
            size_t j = i + (size_t)l;
            while (j < n) {
                l = tok_utf8_decode(s + j, n - j, &cp);
                if (!is_cjk(cp)) break;
                j += (size_t)l;
            }
            *ms = i;
            *me = j;
            return 1;
        }
        i += (size_t)l;
    }
    return 0;
}

/* The main DeepSeek pattern, alternative by alternative (leftmost-first):
 *  1 [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
 *  2 [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *  3  ?[\p{P}\p{S}]+[\r\n]*
 *  4 \s*[\r\n]+
 *  5 \s+(?!\S)
 *  6 \s+
 * Returns the match end at position p, or 0 when nothing matches there. */
static inline int is_ascii_punct(unsigned c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}
static inline int is_ascii_alpha(unsigned c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static size_t main_at(const unsigned char *s, size_t n, size_t p) {
    int l0, l1 = 0;
    int32_t cp0, cp1 = -1;
    int k0 = char_at(s, n, p, &l0, &cp0);
    if (k0 < 0) return 0; /* invalid bytes match nothing */
    size_t p1 = p + (size_t)l0;
    int k1 = -2; /* class of the next character; -2 = none (end) */
    if (p1 < n) k1 = char_at(s, n, p1, &l1, &cp1);
    /* 1 */
    if (cp0 < 0x80 && is_ascii_punct((unsigned)cp0) && p1 < n && is_ascii_alpha(s[p1])) {
        size_t q = p1 + 1;
        while (q < n && is_ascii_alpha(s[q])) q++;
        return q;
    }
    /* 2 */
    int c1_0 = cp0 != '\r' && cp0 != '\n' && k0 != UC_L && k0 != UC_P && k0 != UC_S;
    int alt2 = 0;
    size_t q = 0;
    if (c1_0 && (k1 == UC_L || k1 == UC_M)) { alt2 = 1; q = p1 + (size_t)l1; }
    else if (k0 == UC_L || k0 == UC_M) { alt2 = 1; q = p1; }
    if (alt2) {
        int l;
        int32_t cp;
        /* maximal run of letters/marks */
        while (q < n) {
            int k = char_at(s, n, q, &l, &cp);
            if (k != UC_L && k != UC_M) break;
            q += (size_t)l;
        }
        return q;
    }
    /* 3 */
    size_t r = 0;
    if (cp0 == ' ' && (k1 == UC_P || k1 == UC_S)) r = p1 + (size_t)l1;
    else if (k0 == UC_P || k0 == UC_S) r = p1;
    if (r) {
        int l;
        int32_t cp;
        while (r < n) {
            int k = char_at(s, n, r, &l, &cp);
            if (k != UC_P && k != UC_S) break;
            r += (size_t)l;
        }
        while (r < n && (s[r] == '\r' || s[r] == '\n')) r++;
        return r;
    }
    if (k0 != UC_WS) return 0;
    /* 4..6: W = the maximal whitespace run from p */
    size_t w = p, last_crlf = 0, prev = p;
    int has_crlf = 0, count = 0;
    for (;;) {
        int l;
        int32_t cp;
        if (w >= n) break;
        int k = char_at(s, n, w, &l, &cp);
        if (k != UC_WS) break;
        if (cp == '\r' || cp == '\n') { has_crlf = 1; last_crlf = w; }
        prev = w;
        w += (size_t)l;
        count++;
    }
    if (has_crlf) return last_crlf + 1; /* 4: \s* backtracks to the last CR/LF */
    /* 5: (?!\S) holds at the end or before an invalid byte; otherwise give back one char */
    if (w >= n) return w;
    {
        int l;
        int32_t cp;
        if (char_at(s, n, w, &l, &cp) < 0) return w;
    }
    if (count >= 2) return prev;
    return w; /* 6 */
}

static int fast_main(const unsigned char *s, size_t n, size_t start, size_t *ms, size_t *me) {
    size_t i = start;
    while (i < n) {
        size_t e = main_at(s, n, i);
        if (e) {
            *ms = i;
            *me = e;
            return 1;
        }
        int32_t cp;
        i += s[i] < 0x80 ? 1 : (size_t)tok_utf8_decode(s + i, n - i, &cp);
    }
    return 0;
}

/* ---------------- find_iter ---------------- */

dsv3_status tok_find_matches(dsv3_tok_encoder *enc, const tok_regex *re, int use_fast, const char *subj, size_t n,
                             tok_evvec *ev, dsv3_error *err) {
    const unsigned char *s = (const unsigned char *)subj;
    size_t prev = 0;      /* end of the last event */
    size_t last_end = 0;  /* where the next search starts */
    int have_last = 0;
    size_t last_match_end = 0;
    int fast = use_fast ? re->fast : TOK_FAST_NONE;
    while (last_end <= n) {
        size_t ms, me;
        int r;
        switch (fast) {
        case TOK_FAST_DS_DIGITS: r = fast_digits(s, n, last_end, &ms, &me); break;
        case TOK_FAST_DS_CJK: r = fast_cjk(s, n, last_end, &ms, &me); break;
        case TOK_FAST_DS_MAIN: r = fast_main(s, n, last_end, &ms, &me); break;
        default: r = tok_regex_search(re, &enc->m, subj, n, last_end, &ms, &me, err);
        }
        if (r < 0) return err ? err->code : DSV3_ERR_INVALID;
        if (!r) break;
        if (ms == me && have_last && last_match_end == me) {
            /* empty match right after the previous match: step one character */
            if (last_end >= n) break;
            int32_t cp;
            last_end += (size_t)tok_utf8_decode(s + last_end, n - last_end, &cp);
            continue;
        }
        last_end = me;
        have_last = 1;
        last_match_end = me;
        if (prev != ms && tok_evvec_push(ev, prev, ms, 0)) goto oom;
        if (tok_evvec_push(ev, ms, me, 1)) goto oom;
        prev = me;
        if (ms == me && me >= n) break; /* empty match at the end: nothing more to find */
    }
    if (prev != n && tok_evvec_push(ev, prev, n, 0)) goto oom;
    return DSV3_OK;
oom:
    return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
}

/* Applies a Split behaviour to the events in place; the result is the list of
 * pieces (m = 0) in order, possibly including empty ones. */
static void apply_behavior(tok_evvec *ev, int behavior, int invert) {
    size_t n = ev->n, o = 0;
    tok_event *v = ev->v;
    if (invert)
        for (size_t i = 0; i < n; i++) v[i].m = !v[i].m;
    switch (behavior) {
    case TB_ISOLATED: o = n; break;
    case TB_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!v[i].m) v[o++] = v[i];
        break;
    case TB_CONTIGUOUS: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            int m = v[i].m;
            if (m == prev && o) v[o - 1].e = v[i].e;
            else v[o++] = v[i];
            prev = m;
        }
        break;
    }
    case TB_MERGED_PREV: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            int m = v[i].m;
            if (m && !prev && o) v[o - 1].e = v[i].e;
            else v[o++] = v[i];
            prev = m;
        }
        break;
    }
    case TB_MERGED_NEXT: {
        /* a match joins the piece that follows it, built back to front */
        int prev = 0;
        size_t w = n; /* output grows downwards in v[w..n) */
        for (size_t i = n; i-- > 0;) {
            tok_event e = v[i];
            if (e.m && !prev && w < n) v[w].s = e.s;
            else v[--w] = e;
            prev = e.m;
        }
        memmove(v, v + w, (n - w) * sizeof *v);
        o = n - w;
        break;
    }
    }
    ev->n = o;
}

static dsv3_status model_piece(dsv3_tok_encoder *enc, const char *p, size_t n, dsv3_ids *out, dsv3_error *err) {
    return tok_bpe_piece(enc, p, n, out, err);
}

dsv3_status tok_pretokenize(dsv3_tok_encoder *enc, int stage, const char *base, size_t s, size_t e, dsv3_ids *out,
                            dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    if (s >= e) return DSV3_OK;
    if (stage >= t->n_pre) return model_piece(enc, base + s, e - s, out, err);
    const tok_pre *pre = &t->pre[stage];
    const char *p = base + s;
    size_t n = e - s;
    dsv3_status st;
    if (pre->type == TP_BYTELEVEL) {
        if (pre->add_prefix_space && p[0] != ' ') {
            if (n + 1 > enc->pbuf_cap[stage]) {
                size_t nc = enc->pbuf_cap[stage] ? enc->pbuf_cap[stage] : 256;
                while (nc < n + 1) nc *= 2;
                char *nb = realloc(enc->pbuf[stage], nc);
                if (!nb) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
                enc->pbuf[stage] = nb;
                enc->pbuf_cap[stage] = nc;
            }
            enc->pbuf[stage][0] = ' ';
            memcpy(enc->pbuf[stage] + 1, p, n);
            p = enc->pbuf[stage];
            n++;
        }
        if (!pre->use_regex) return tok_pretokenize(enc, stage + 1, p, 0, n, out, err);
    }
    tok_evvec *ev = &enc->ev[stage];
    ev->n = 0;
    if ((st = tok_find_matches(enc, &pre->re, !t->disable_fast, p, n, ev, err))) return st;
    apply_behavior(ev, pre->type == TP_BYTELEVEL ? TB_ISOLATED : pre->behavior, pre->type == TP_SPLIT && pre->invert);
    /* ev is stable while deeper stages run (they use ev[stage+1..]) */
    for (size_t i = 0; i < ev->n; i++) {
        tok_event pc = ev->v[i];
        if (pc.s >= pc.e) continue;
        if ((st = tok_pretokenize(enc, stage + 1, p, pc.s, pc.e, out, err))) return st;
    }
    return DSV3_OK;
}
