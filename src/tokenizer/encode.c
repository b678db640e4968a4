/* Encoding pipeline (HF Tokenizer::encode with add_special_tokens = false):
 *   1. split the raw text on added tokens whose "normalized" is false;
 *   2. normalize each remaining segment, split it on normalized added tokens;
 *   3. pre-tokenize the rest (pretokenize.c) and run BPE on each piece (bpe.c).
 * Added tokens are matched leftmost-longest, with HF's lstrip / rstrip /
 * single_word rules. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

void dsv3_ids_free(dsv3_ids *ids) {
    if (!ids) return;
    free(ids->data);
    ids->data = NULL;
    ids->len = ids->cap = 0;
}

dsv3_status dsv3_ids_push(dsv3_ids *ids, int32_t id, dsv3_error *err) {
    if (ids->len == ids->cap) {
        size_t nc = ids->cap ? ids->cap * 2 : 64;
        int32_t *nd = realloc(ids->data, nc * sizeof *nd);
        if (!nd) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
        ids->data = nd;
        ids->cap = nc;
    }
    ids->data[ids->len++] = id;
    return DSV3_OK;
}

dsv3_status dsv3_tok_encoder_new(const dsv3_tokenizer *tok, dsv3_tok_encoder **out, dsv3_error *err) {
    *out = NULL;
    dsv3_tok_encoder *enc = calloc(1, sizeof *enc);
    if (!enc) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
    enc->tok = tok;
    dsv3_status st = tok_matcher_init(&enc->m, err);
    if (!st) st = tok_cache_init(enc, err);
    if (st) {
        dsv3_tok_encoder_free(enc);
        return st;
    }
    *out = enc;
    return DSV3_OK;
}

void dsv3_tok_encoder_free(dsv3_tok_encoder *enc) {
    if (!enc) return;
    tok_matcher_free(&enc->m);
    for (int i = 0; i < TOK_MAX_PRE + 2; i++) free(enc->ev[i].v);
    for (int i = 0; i < TOK_MAX_PRE; i++) free(enc->pbuf[i]);
    free(enc->norm);
    free(enc->sym);
    free(enc->heap);
    tok_cache_free(enc);
    free(enc);
}

/* ---------------- added-token splitting ---------------- */

static int is_ws_at(const unsigned char *s, size_t n, size_t i, int *len) {
    int32_t cp;
    *len = tok_utf8_decode(s + i, n - i, &cp);
    return cp >= 0 && tok_uclass_get(cp) == UC_WS;
}

static int is_word_cp(int32_t cp) {
    if (cp < 0) return 0;
    if (cp == '_') return 1;
    int k = tok_uclass_get(cp);
    return k == UC_L || k == UC_M || k == UC_N;
}

/* Start of the character that ends at i (i > 0). */
static size_t char_start_before(const unsigned char *s, size_t lo, size_t i) {
    size_t j = i - 1;
    while (j > lo && (s[j] & 0xC0) == 0x80 && i - j < 4) j--;
    int32_t cp;
    /* a valid sequence must end exactly at i; otherwise step a single byte */
    if (j + (size_t)tok_utf8_decode(s + j, i - j, &cp) != i || cp < 0) return i - 1;
    return j;
}

typedef dsv3_status (*gap_fn)(dsv3_tok_encoder *enc, const char *base, size_t s, size_t e, dsv3_ids *out,
                              dsv3_error *err);

static dsv3_status split_added(dsv3_tok_encoder *enc, const tok_trie *tr, const char *base, size_t lo, size_t hi,
                               gap_fn gap, dsv3_ids *out, dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    const unsigned char *s = (const unsigned char *)base;
    size_t pos = lo, start = lo, ms, me;
    int32_t term;
    dsv3_status st;
    while (tok_trie_find(tr, s, hi, pos, &ms, &me, &term)) {
        const tok_added *a = &t->added[term];
        if (a->single_word) {
            int32_t cp = -1;
            int ok = 1;
            if (ms > lo) {
                size_t b = char_start_before(s, lo, ms);
                tok_utf8_decode(s + b, ms - b, &cp);
                if (is_word_cp(cp)) ok = 0;
            }
            if (me < hi) {
                tok_utf8_decode(s + me, hi - me, &cp);
                if (is_word_cp(cp)) ok = 0;
            }
            if (!ok) { pos = me; continue; }
        }
        size_t ts = ms, te = me;
        if (a->lstrip) {
            while (ts > start) {
                size_t b = char_start_before(s, lo, ts);
                int l;
                if (!is_ws_at(s, hi, b, &l) || b + (size_t)l != ts) break;
                ts = b;
            }
        }
        if (a->rstrip) {
            int l;
            while (te < hi && is_ws_at(s, hi, te, &l)) te += (size_t)l;
        }
        if (start < ts && (st = gap(enc, base, start, ts, out, err))) return st;
        if ((st = dsv3_ids_push(out, a->id, err))) return st;
        start = pos = te;
    }
    if (start < hi && (st = gap(enc, base, start, hi, out, err))) return st;
    return DSV3_OK;
}

static dsv3_status pretok_gap(dsv3_tok_encoder *enc, const char *base, size_t s, size_t e, dsv3_ids *out,
                              dsv3_error *err) {
    return tok_pretokenize(enc, 0, base, s, e, out, err);
}

/* A segment of raw text between non-normalized added tokens. */
static dsv3_status raw_gap(dsv3_tok_encoder *enc, const char *base, size_t s, size_t e, dsv3_ids *out,
                           dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    const char *text = base + s;
    size_t n = e - s;
    if (t->normalizer == TN_NFC && !tok_nfc_quick_yes((const unsigned char *)text, n)) {
        long l = tok_nfc(text, n, &enc->norm, &enc->norm_cap);
        if (l < 0) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (normalization)");
        text = enc->norm;
        n = (size_t)l;
    }
    if (t->trie_norm.n) return split_added(enc, &t->trie_norm, text, 0, n, pretok_gap, out, err);
    return tok_pretokenize(enc, 0, text, 0, n, out, err);
}

dsv3_status dsv3_tok_encoder_encode(dsv3_tok_encoder *enc, const char *text, size_t len, unsigned flags, dsv3_ids *out,
                                    dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    dsv3_status st;
    size_t start_len = out->len;
    if (flags & DSV3_TOK_ADD_SPECIAL) {
        if (t->post_template) {
            for (int i = 0; i < t->n_post_prefix; i++)
                if ((st = dsv3_ids_push(out, t->post_prefix[i], err))) goto fail;
        } else if (t->cfg_add_bos && t->bos_id >= 0 && (st = dsv3_ids_push(out, t->bos_id, err))) {
            goto fail;
        }
    }
    if (len) {
        if (t->trie_raw.n) st = split_added(enc, &t->trie_raw, text, 0, len, raw_gap, out, err);
        else st = raw_gap(enc, text, 0, len, out, err);
        if (st) goto fail;
    }
    if (flags & DSV3_TOK_ADD_SPECIAL) {
        if (t->post_template) {
            for (int i = 0; i < t->n_post_suffix; i++)
                if ((st = dsv3_ids_push(out, t->post_suffix[i], err))) goto fail;
        } else if (t->cfg_add_eos && t->eos_id >= 0 && (st = dsv3_ids_push(out, t->eos_id, err))) {
            goto fail;
        }
    }
    return DSV3_OK;
fail:
    out->len = start_len;
    return st;
}

dsv3_status dsv3_tokenizer_encode(const dsv3_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                  dsv3_ids *out, dsv3_error *err) {
    dsv3_tokenizer *t = (dsv3_tokenizer *)tok; /* only the lock and the default encoder are touched */
    if (t->enc && pthread_mutex_trylock(&t->enc_lock) == 0) {
        dsv3_status st = dsv3_tok_encoder_encode(t->enc, text, len, flags, out, err);
        pthread_mutex_unlock(&t->enc_lock);
        return st;
    }
    dsv3_tok_encoder *enc;
    dsv3_status st = dsv3_tok_encoder_new(tok, &enc, err);
    if (st) return st;
    st = dsv3_tok_encoder_encode(enc, text, len, flags, out, err);
    dsv3_tok_encoder_free(enc);
    return st;
}
