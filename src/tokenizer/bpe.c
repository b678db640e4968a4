/* BPE model: string->id hash map, merge table, the merge loop (same
 * priority-queue algorithm as HF tokenizers' Word::merge_all, so results are
 * identical including its tie-breaking: lowest rank first, then leftmost
 * position, stale queue entries detected by the merged id) and the
 * per-encoder cache of piece -> ids. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

/* ---------------- hashing / string map ---------------- */

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    }
    return mix64(h);
}

dsv3_status tok_strmap_init(tok_strmap *m, size_t n_expected, dsv3_error *err) {
    size_t cap = 16;
    while (cap < n_expected * 2) cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    if (!m->slot) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (hash map of %zu entries)", cap);
    m->mask = cap - 1;
    return DSV3_OK;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slot);
    m->slot = NULL;
    m->mask = 0;
}

int32_t tok_strmap_put(tok_strmap *m, const tok_keys *keys, const char *s, size_t n, int32_t value) {
    return tok_strmap_put_h(m, keys, s, n, value, tok_hash_bytes(s, n));
}

int32_t tok_strmap_put_h(tok_strmap *m, const tok_keys *keys, const char *s, size_t n, int32_t value, uint64_t h) {
    uint64_t tag = h >> 32 << 32;
    size_t i = (size_t)h & m->mask;
    for (;;) {
        uint64_t v = m->slot[i];
        if (!v) {
            m->slot[i] = tag | ((uint64_t)(uint32_t)value + 1);
            return -1;
        }
        uint32_t k = (uint32_t)v - 1;
        if ((v >> 32 << 32) == tag && keys->len[k] == n && !memcmp(keys->str[k], s, n)) return (int32_t)k;
        i = (i + 1) & m->mask;
    }
}

int32_t tok_strmap_get_h(const tok_strmap *m, const tok_keys *keys, const char *s, size_t n, uint64_t h) {
    if (!m->slot) return -1;
    uint64_t tag = h >> 32 << 32;
    size_t i = (size_t)h & m->mask;
    for (;;) {
        uint64_t v = m->slot[i];
        if (!v) return -1;
        uint32_t k = (uint32_t)v - 1;
        if ((v >> 32 << 32) == tag && keys->len[k] == n && !memcmp(keys->str[k], s, n)) return (int32_t)k;
        i = (i + 1) & m->mask;
    }
}

int32_t tok_strmap_get(const tok_strmap *m, const tok_keys *keys, const char *s, size_t n) {
    return tok_strmap_get_h(m, keys, s, n, tok_hash_bytes(s, n));
}

/* ---------------- merges ---------------- */

dsv3_status tok_merges_alloc(dsv3_tokenizer *t, size_t n, dsv3_error *err) {
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (%zu merges)", n);
    for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;
    return DSV3_OK;
}

void tok_merges_prefetch(const dsv3_tokenizer *t, int32_t a, int32_t b) {
    uint64_t h = tok_merge_key(a, b) * 0x9E3779B97F4A7C15ull;
    __builtin_prefetch(&t->merges[(size_t)(h >> 40) & t->merge_mask], 1);
}

void tok_merges_add(dsv3_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    uint64_t k = tok_merge_key(a, b);
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 40) & t->merge_mask;
    for (;;) {
        tok_merge_slot *s = &t->merges[i];
        if (s->key == k) { /* duplicate merge: HF builds a HashMap, the last one wins */
            s->rank = rank;
            s->new_id = new_id;
            return;
        }
        if (s->key == UINT64_MAX) {
            s->key = k;
            s->rank = rank;
            s->new_id = new_id;
            return;
        }
        i = (i + 1) & t->merge_mask;
    }
}

/* ---------------- the merge loop ---------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static inline int heap_less(const tok_heap_ent *a, const tok_heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static inline void heap_push(tok_heap_ent *h, size_t *n, tok_heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static inline tok_heap_ent heap_pop(tok_heap_ent *h, size_t *n) {
    tok_heap_ent top = h[0], last = h[--*n];
    size_t i = 0, cnt = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= cnt) break;
        if (c + 1 < cnt && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (cnt) h[i] = last;
    return top;
}

typedef struct {
    dsv3_tok_encoder *enc;
    size_t n;        /* symbols so far */
    int32_t unk_id;  /* pending unknown (fuse_unk), -1 none */
    uint32_t unk_len;
} sym_builder;

static int sym_add(sym_builder *b, int32_t id, uint32_t len) {
    dsv3_tok_encoder *enc = b->enc;
    if (grow((void **)&enc->sym, &enc->sym_cap, b->n + 1, sizeof *enc->sym)) return -1;
    tok_sym *s = &enc->sym[b->n];
    s->id = id;
    s->len = len;
    s->prev = (int32_t)b->n - 1;
    s->next = -1;
    if (b->n) enc->sym[b->n - 1].next = (int32_t)b->n;
    b->n++;
    return 0;
}

/* Initial symbols, as HF BPE::merge_word: one per character (per byte for
 * byte-level input), with prefix/suffix, byte fallback and unk handling. */
static dsv3_status init_symbols(dsv3_tok_encoder *enc, const char *s, size_t n, size_t *nsym, dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    sym_builder b = {.enc = enc, .unk_id = -1};
    if (t->byte_level && !t->cont_prefix && !t->eow_suffix) {
        /* fast path: every byte is one vocab symbol */
        if (grow((void **)&enc->sym, &enc->sym_cap, n, sizeof *enc->sym))
            return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
        size_t i = 0;
        for (; i < n; i++) {
            int32_t id = t->byte_id[(unsigned char)s[i]];
            if (id < 0) break;
            tok_sym *y = &enc->sym[i];
            y->id = id;
            y->len = 1;
            y->prev = (int32_t)i - 1;
            y->next = i + 1 < n ? (int32_t)i + 1 : -1;
        }
        if (i == n) { *nsym = n; return DSV3_OK; }
    }
    tok_keys vk = {t->model_str, t->model_len};
    char key[64];
    size_t pos = 0;
    while (pos < n) {
        char unit[4];
        size_t ulen, adv;
        if (t->byte_level) {
            ulen = (size_t)tok_utf8_encode(tok_byte_to_cp[(unsigned char)s[pos]], unit);
            adv = 1;
        } else {
            int32_t cp;
            adv = (size_t)tok_utf8_decode((const unsigned char *)s + pos, n - pos, &cp);
            ulen = adv;
            memcpy(unit, s + pos, adv);
        }
        int first = pos == 0, last = pos + adv == n;
        size_t kl = 0;
        char *k = key;
        size_t need = ulen + (first ? 0 : t->cont_prefix_len) + (last ? t->eow_suffix_len : 0);
        char *heapkey = NULL;
        if (need > sizeof key) {
            heapkey = malloc(need);
            if (!heapkey) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
            k = heapkey;
        }
        if (!first && t->cont_prefix) { memcpy(k, t->cont_prefix, t->cont_prefix_len); kl += t->cont_prefix_len; }
        memcpy(k + kl, unit, ulen);
        kl += ulen;
        if (last && t->eow_suffix) { memcpy(k + kl, t->eow_suffix, t->eow_suffix_len); kl += t->eow_suffix_len; }
        int32_t id = tok_strmap_get(&t->vocab, &vk, k, kl);
        int fail = 0;
        if (id >= 0) {
            if (b.unk_id >= 0) { fail |= sym_add(&b, b.unk_id, b.unk_len); b.unk_id = -1; }
            fail |= sym_add(&b, id, (uint32_t)adv);
        } else {
            int done = 0;
            if (t->byte_fallback) {
                int all = 1;
                for (size_t j = 0; j < kl; j++) all &= t->fallback_id[(unsigned char)k[j]] >= 0;
                if (all) {
                    for (size_t j = 0; j < kl; j++) fail |= sym_add(&b, t->fallback_id[(unsigned char)k[j]], 1);
                    done = 1;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (b.unk_id >= 0 && t->fuse_unk) {
                    b.unk_len += (uint32_t)adv;
                } else {
                    if (b.unk_id >= 0) fail |= sym_add(&b, b.unk_id, b.unk_len);
                    b.unk_id = t->unk_id;
                    b.unk_len = (uint32_t)adv;
                }
            }
            /* no unk token: the character is dropped, as HF does */
        }
        free(heapkey);
        if (fail) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
        pos += adv;
    }
    if (b.unk_id >= 0 && sym_add(&b, b.unk_id, b.unk_len)) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
    *nsym = b.n;
    return DSV3_OK;
}

static dsv3_status bpe_word(dsv3_tok_encoder *enc, const char *s, size_t n, dsv3_ids *out, dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    size_t nsym = 0;
    dsv3_status st = init_symbols(enc, s, n, &nsym, err);
    if (st || !nsym) return st;
    tok_sym *sym = enc->sym;
    if (grow((void **)&enc->heap, &enc->heap_cap, 3 * nsym, sizeof *enc->heap))
        return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
    tok_heap_ent *heap = enc->heap;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < nsym; i++) {
        const tok_merge_slot *m = tok_merge_find(t, sym[i].id, sym[i + 1].id);
        if (m) heap_push(heap, &hn, (tok_heap_ent){m->rank, (int32_t)i, m->new_id});
    }
    while (hn) {
        tok_heap_ent top = heap_pop(heap, &hn);
        tok_sym *a = &sym[top.pos];
        if (a->len == 0 || a->next < 0) continue;
        tok_sym *b = &sym[a->next];
        const tok_merge_slot *m = tok_merge_find(t, a->id, b->id);
        if (!m || m->new_id != top.new_id) continue; /* stale entry */
        a->id = top.new_id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) sym[a->next].prev = top.pos;
        if (a->prev >= 0) {
            const tok_merge_slot *pm = tok_merge_find(t, sym[a->prev].id, a->id);
            if (pm) heap_push(heap, &hn, (tok_heap_ent){pm->rank, a->prev, pm->new_id});
        }
        if (a->next >= 0) {
            const tok_merge_slot *nm = tok_merge_find(t, a->id, sym[a->next].id);
            if (nm) heap_push(heap, &hn, (tok_heap_ent){nm->rank, top.pos, nm->new_id});
        }
    }
    /* symbol 0 is never merged away (merges remove the right symbol) */
    size_t cnt = 0;
    for (int32_t i = 0; i >= 0; i = sym[i].next) cnt++;
    if (grow((void **)&out->data, &out->cap, out->len + cnt, sizeof *out->data))
        return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
    for (int32_t i = 0; i >= 0; i = sym[i].next) out->data[out->len++] = sym[i].id;
    return DSV3_OK;
}

/* ---------------- cache ---------------- */

#define CACHE_MIN_SLOTS (1u << 12)
#define CACHE_MAX_SLOTS (1u << 18)
#define CACHE_MAX_KEY 256

dsv3_status tok_cache_init(dsv3_tok_encoder *enc, dsv3_error *err) {
    enc->cache = calloc(CACHE_MIN_SLOTS, sizeof *enc->cache);
    if (!enc->cache) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (cache)");
    enc->cache_mask = CACHE_MIN_SLOTS - 1;
    enc->cache_used = 0;
    return DSV3_OK;
}

void tok_cache_free(dsv3_tok_encoder *enc) {
    free(enc->cache);
    free(enc->ckeys);
    free(enc->cvals);
    enc->cache = NULL;
    enc->ckeys = NULL;
    enc->cvals = NULL;
}

static void cache_reset(dsv3_tok_encoder *enc) {
    memset(enc->cache, 0, (enc->cache_mask + 1) * sizeof *enc->cache);
    enc->cache_used = 0;
    enc->ckeys_len = 0;
    enc->cvals_len = 0;
}

/* Grows the table (rehash) or resets it when it reached its maximum size. */
static void cache_make_room(dsv3_tok_encoder *enc) {
    size_t slots = enc->cache_mask + 1;
    if ((enc->cache_used + 1) * 2 <= slots) return;
    if (slots >= CACHE_MAX_SLOTS) { cache_reset(enc); return; }
    size_t ns = slots * 2;
    tok_cache_slot *nt = calloc(ns, sizeof *nt);
    if (!nt) { cache_reset(enc); return; }
    for (size_t i = 0; i < slots; i++) {
        tok_cache_slot *c = &enc->cache[i];
        if (!c->key_len) continue;
        size_t j = (size_t)c->hash & (ns - 1);
        while (nt[j].key_len) j = (j + 1) & (ns - 1);
        nt[j] = *c;
    }
    free(enc->cache);
    enc->cache = nt;
    enc->cache_mask = ns - 1;
}

dsv3_status tok_bpe_piece(dsv3_tok_encoder *enc, const char *s, size_t n, dsv3_ids *out, dsv3_error *err) {
    const dsv3_tokenizer *t = enc->tok;
    if (n == 0) return DSV3_OK;
    if (n == 1 && t->byte_level && !t->cont_prefix && !t->eow_suffix && t->byte_id[(unsigned char)s[0]] >= 0) {
        if (out->len == out->cap && grow((void **)&out->data, &out->cap, out->len + 1, sizeof *out->data))
            return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
        out->data[out->len++] = t->byte_id[(unsigned char)s[0]];
        return DSV3_OK;
    }
    if (t->ignore_merges) {
        /* the whole piece, in vocab form, may be a token */
        char small[256], *key = small;
        size_t kl = 0;
        if (t->byte_level && 2 * n > sizeof small && !(key = malloc(2 * n)))
            return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
        if (t->byte_level)
            for (size_t i = 0; i < n; i++) kl += (size_t)tok_utf8_encode(tok_byte_to_cp[(unsigned char)s[i]], key + kl);
        tok_keys vk = {t->model_str, t->model_len};
        int32_t id = tok_strmap_get(&t->vocab, &vk, t->byte_level ? key : s, t->byte_level ? kl : n);
        if (key != small) free(key);
        if (id >= 0) return dsv3_ids_push(out, id, err);
    }
    if (n > CACHE_MAX_KEY || !enc->cache) return bpe_word(enc, s, n, out, err);
    uint64_t h = tok_hash_bytes(s, n);
    size_t i = (size_t)h & enc->cache_mask;
    for (;;) {
        tok_cache_slot *c = &enc->cache[i];
        if (!c->key_len) break;
        if (c->hash == h && c->key_len == n && !memcmp(enc->ckeys + c->key_off, s, n)) {
            if (grow((void **)&out->data, &out->cap, out->len + c->n_ids, sizeof *out->data))
                return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
            memcpy(out->data + out->len, enc->cvals + c->val_off, c->n_ids * sizeof(int32_t));
            out->len += c->n_ids;
            return DSV3_OK;
        }
        i = (i + 1) & enc->cache_mask;
    }
    size_t before = out->len;
    dsv3_status st = bpe_word(enc, s, n, out, err);
    if (st) return st;
    size_t nid = out->len - before;
    /* insert (best effort: allocation failures just skip caching) */
    if (enc->ckeys_len + n > (64u << 20) || enc->cvals_len + nid > (16u << 20)) cache_reset(enc);
    if (grow((void **)&enc->ckeys, &enc->ckeys_cap, enc->ckeys_len + n, 1) ||
        grow((void **)&enc->cvals, &enc->cvals_cap, enc->cvals_len + nid, sizeof(int32_t)))
        return DSV3_OK;
    cache_make_room(enc);
    i = (size_t)h & enc->cache_mask;
    while (enc->cache[i].key_len) i = (i + 1) & enc->cache_mask;
    tok_cache_slot *c = &enc->cache[i];
    c->hash = h;
    c->key_off = (uint32_t)enc->ckeys_len;
    c->key_len = (uint32_t)n;
    c->val_off = (uint32_t)enc->cvals_len;
    c->n_ids = (uint32_t)nid;
    memcpy(enc->ckeys + enc->ckeys_len, s, n);
    enc->ckeys_len += n;
    memcpy(enc->cvals + enc->cvals_len, out->data + before, nid * sizeof(int32_t));
    enc->cvals_len += nid;
    enc->cache_used++;
    return DSV3_OK;
}
