/* Byte-level mapping (GPT-2 bytes_to_unicode), the per-id decode table,
 * decode() and the streaming UTF-8-safe decoder. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

/* Printable bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to themselves; the
 * other 68 bytes map, in increasing order, to U+0100.. U+0143. */
#define R(b) ((b) >= 0x21 && (b) <= 0x7E) || ((b) >= 0xA1 && (b) <= 0xAC) || ((b) >= 0xAE)
static uint16_t g_b2c[256];
static int16_t g_c2b[0x144];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    int n = 0;
    for (int i = 0; i < 0x144; i++) g_c2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint16_t c = (R(b)) ? (uint16_t)b : (uint16_t)(256 + n++);
        g_b2c[b] = c;
        g_c2b[c] = (int16_t)b;
    }
}
#undef R

/* The table is also needed as a constant array by bpe.c; build it at load. */
const uint16_t tok_byte_to_cp[256] = {
#define X4(b) X(b), X(b + 1), X(b + 2), X(b + 3)
#define X16(b) X4(b), X4(b + 4), X4(b + 8), X4(b + 12)
/* Computed at compile time: the offset of each non-printable byte among the
 * non-printable bytes before it. */
#define NP(b) (!(((b) >= 0x21 && (b) <= 0x7E) || ((b) >= 0xA1 && (b) <= 0xAC) || ((b) >= 0xAE)))
#define X(b) (uint16_t)(NP(b) ? 256 + ((b) <= 0x20 ? (b) : (b) <= 0xA0 ? 33 + ((b) - 0x7F) : 67) : (b))
    X16(0x00), X16(0x10), X16(0x20), X16(0x30), X16(0x40), X16(0x50), X16(0x60), X16(0x70),
    X16(0x80), X16(0x90), X16(0xA0), X16(0xB0), X16(0xC0), X16(0xD0), X16(0xE0), X16(0xF0),
#undef X
#undef NP
#undef X16
#undef X4
};

int tok_cp_to_byte(int32_t cp) {
    pthread_once(&g_once, build_tables);
    if (cp < 0 || cp >= 0x144) return -1;
    return g_c2b[cp];
}

/* Byte-level decode of one token string: every character maps back to a
 * byte, or (if any does not) the token's own UTF-8 bytes, as HF's ByteLevel
 * decoder does. Writes into out (>= n bytes); returns the length. */
static size_t bl_decode(const char *s, size_t n, char *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        int32_t cp;
        int l = tok_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = cp >= 0 && cp < 0x144 ? g_c2b[cp] : -1; /* tables built by the caller */
        if (b < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)b;
        i += (size_t)l;
    }
    return o;
}

dsv3_status tok_build_decode_table(dsv3_tokenizer *t, dsv3_error *err) {
    pthread_once(&g_once, build_tables);
    /* sanity: the compile-time table equals the generated one */
    for (int b = 0; b < 256; b++)
        if (tok_byte_to_cp[b] != g_b2c[b])
            return dsv3_fail(err, DSV3_ERR_INVALID, "tokenizer: internal byte-level table mismatch at byte %d", b);
    size_t total = 0;
    for (int32_t i = 0; i < t->n_ids; i++)
        if (t->id_str[i]) total += t->id_str_len[i] + 1;
    char *arena = malloc(total ? total : 1);
    t->id_bytes = calloc((size_t)t->n_ids, sizeof *t->id_bytes);
    t->id_bytes_len = calloc((size_t)t->n_ids, sizeof *t->id_bytes_len);
    if (!arena || !t->id_bytes || !t->id_bytes_len) {
        free(arena);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (decode table)");
    }
    t->bytes_arena = arena;
    size_t off = 0;
    for (int32_t i = 0; i < t->n_ids; i++) {
        if (!t->id_str[i]) continue;
        size_t l;
        if (t->dec_bytelevel) l = bl_decode(t->id_str[i], t->id_str_len[i], arena + off);
        else { memcpy(arena + off, t->id_str[i], t->id_str_len[i]); l = t->id_str_len[i]; }
        arena[off + l] = 0;
        t->id_bytes[i] = arena + off;
        t->id_bytes_len[i] = (uint32_t)l;
        off += l + 1;
    }
    return DSV3_OK;
}

const char *dsv3_tokenizer_token_bytes(const dsv3_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_ids || !tok->id_bytes[id]) return NULL;
    if (len) *len = tok->id_bytes_len[id];
    return tok->id_bytes[id];
}

dsv3_status dsv3_tokenizer_decode(const dsv3_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, char **out,
                                  size_t *out_len, dsv3_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    size_t total = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || !tok->id_bytes[id])
            return dsv3_fail(err, DSV3_ERR_INVALID, "decode: unknown token id %d (at position %zu)", (int)id, i);
        if ((flags & DSV3_TOK_SKIP_SPECIAL) && (tok->id_flags[id] & TOKF_SPECIAL)) continue;
        total += tok->id_bytes_len[id];
        kept++;
    }
    /* without a decoder HF joins the token strings with spaces */
    if (!tok->dec_bytelevel && kept) total += kept - 1;
    char *buf = malloc(total + 1);
    if (!buf) return dsv3_fail(err, DSV3_ERR_NOMEM, "decode: out of memory (%zu bytes)", total);
    size_t o = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if ((flags & DSV3_TOK_SKIP_SPECIAL) && (tok->id_flags[id] & TOKF_SPECIAL)) continue;
        if (!tok->dec_bytelevel && k++) buf[o++] = ' ';
        memcpy(buf + o, tok->id_bytes[id], tok->id_bytes_len[id]);
        o += tok->id_bytes_len[id];
    }
    buf[o] = 0;
    *out = buf;
    if (out_len) *out_len = o;
    return DSV3_OK;
}

/* ---------------- streaming decoder ---------------- */

void dsv3_tok_stream_init(dsv3_tok_stream *s, const dsv3_tokenizer *tok, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->flags = flags;
}

void dsv3_tok_stream_free(dsv3_tok_stream *s) {
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

/* Length of the trailing bytes of b[0..n) that form an incomplete but so far
 * valid UTF-8 sequence (0..3). */
static size_t incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = b[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
        if (need <= k) return 0; /* ASCII, invalid lead, or complete */
        /* the second byte's range depends on the lead (no overlong/surrogate/too large) */
        if (k >= 2) {
            unsigned c1 = b[n - k + 1];
            unsigned lo = 0x80, hi = 0xBF;
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
            if (c1 < lo || c1 > hi) return 0;
        }
        return k;
    }
    return 0;
}

dsv3_status dsv3_tok_stream_push(dsv3_tok_stream *s, int32_t id, const char **text, size_t *len, dsv3_error *err) {
    *text = "";
    *len = 0;
    const dsv3_tokenizer *tok = s->tok;
    if (id < 0 || id >= tok->n_ids || !tok->id_bytes[id])
        return dsv3_fail(err, DSV3_ERR_INVALID, "decode: unknown token id %d", (int)id);
    if ((s->flags & DSV3_TOK_SKIP_SPECIAL) && (tok->id_flags[id] & TOKF_SPECIAL)) return DSV3_OK;
    size_t tl = tok->id_bytes_len[id];
    size_t need = (size_t)s->npend + tl + 2;
    if (need > s->cap) {
        size_t nc = s->cap ? s->cap : 64;
        while (nc < need) nc *= 2;
        char *nb = realloc(s->buf, nc);
        if (!nb) return dsv3_fail(err, DSV3_ERR_NOMEM, "decode: out of memory");
        s->buf = nb;
        s->cap = nc;
    }
    size_t n = 0;
    if (!tok->dec_bytelevel && s->started) s->buf[n++] = ' ';
    s->started = 1;
    memcpy(s->buf + n, s->pend, (size_t)s->npend);
    n += (size_t)s->npend;
    memcpy(s->buf + n, tok->id_bytes[id], tl);
    n += tl;
    size_t hold = incomplete_tail((const unsigned char *)s->buf, n);
    memcpy(s->pend, s->buf + n - hold, hold);
    s->npend = (int)hold;
    s->buf[n - hold] = 0;
    *text = s->buf;
    *len = n - hold;
    return DSV3_OK;
}

void dsv3_tok_stream_flush(dsv3_tok_stream *s, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    if (!s->npend) return;
    if (s->cap < 8) {
        char *nb = realloc(s->buf, 8);
        if (!nb) return;
        s->buf = nb;
        s->cap = 8;
    }
    memcpy(s->buf, s->pend, (size_t)s->npend);
    s->buf[s->npend] = 0;
    *text = s->buf;
    *len = (size_t)s->npend;
    s->npend = 0;
}
