/* Internal structures of the tokenizer (only for the files in src/tokenizer). */
#ifndef DSV3_TOKENIZER_INTERNAL_H
#define DSV3_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dsv3/tokenizer.h"

/* ======================= JSON (tok_json.c) =======================
 * A small, strict, fast JSON parser into an arena DOM (jansson needs ~300 ms
 * for the 4 MB DeepSeek tokenizer.json; this takes ~15 ms). Strings are
 * unescaped in place in a private copy of the text and NUL-terminated. */
enum { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

typedef struct tj_val {
    uint32_t type;
    uint32_t n; /* TJ_STR: byte length; TJ_ARR: items; TJ_OBJ: members */
    union {
        const char *s;          /* TJ_STR */
        double num;             /* TJ_NUM */
        struct tj_val *items;   /* TJ_ARR: n values; TJ_OBJ: 2n (key, value) */
    } u;
} tj_val;

typedef struct tj_chunk tj_chunk;
typedef struct {
    tj_val root;
    char *text;        /* private copy, strings point into it */
    tj_chunk *chunks;  /* arena of item arrays */
} tj_doc;

/* what: name used in error messages (e.g. the file path). */
dsv3_status tj_parse(const char *text, size_t len, tj_doc *doc, const char *what, dsv3_error *err);
void tj_free(tj_doc *doc);
/* Object member by key (first match), NULL if absent or obj is not an object. */
const tj_val *tj_get(const tj_val *obj, const char *key);
const char *tj_type_name(const tj_val *v);
/* Integer value of a number in [lo, hi]; returns 0 on success. */
int tj_int(const tj_val *v, int64_t lo, int64_t hi, int64_t *out);

/* ======================= Unicode (unicode.c) ======================= */
/* General classes used by the regexes. UC_WS is Oniguruma's \s
 * (\t-\r, U+0085, Z*); the others are the Unicode general category letters. */
enum { UC_OTHER = 0, UC_L, UC_M, UC_N, UC_P, UC_S, UC_WS };

/* Decodes one UTF-8 sequence at s[0..n) (n >= 1). Returns its length and sets
 * *cp, or returns 1 and sets *cp = -1 for an invalid/truncated sequence. */
static inline int tok_utf8_decode(const unsigned char *s, size_t n, int32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = (int32_t)c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n >= 2 && (s[1] & 0xC0) == 0x80) { *cp = (int32_t)(((c & 0x1F) << 6) | (s[1] & 0x3F)); return 2; }
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (n >= 3 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
            int32_t v = (int32_t)(((c & 0x0F) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3F));
            if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) { *cp = v; return 3; }
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (n >= 4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80) {
            int32_t v = (int32_t)(((c & 0x07) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3F));
            if (v >= 0x10000 && v <= 0x10FFFF) { *cp = v; return 4; }
        }
    }
    *cp = -1;
    return 1;
}

/* Writes cp as UTF-8 into out (>= 4 bytes); returns the length. */
int tok_utf8_encode(int32_t cp, char *out);
/* 1 if s[0..n) is valid UTF-8. */
int tok_utf8_valid(const unsigned char *s, size_t n);

/* Class of every code point, as HF tokenizers' Oniguruma sees it (Unicode
 * 16.0; unicode_data.c). Two-level table built once by tok_uclass_init(). */
extern const uint32_t tok_uc_runs[];
extern const size_t tok_uc_nruns;
extern const unsigned char *tok_uc_pages[0x1100];
void tok_uclass_init(void); /* idempotent, thread-safe */
static inline int tok_uclass_get(int32_t cp) { return tok_uc_pages[cp >> 8][cp & 0xFF]; }
/* The class PCRE2 (Unicode 14 in PCRE2 10.42) gives cp; for tests. */
int tok_uclass_pcre2(int32_t cp);

/* NFC normalization (nfc.c). Appends NFC(s[0..n)) to *out (realloc'd, *cap);
 * invalid UTF-8 bytes are copied unchanged. Returns the new length or -1 (OOM). */
long tok_nfc(const char *s, size_t n, char **out, size_t *cap);
/* 1 when s is certainly already NFC (quick check), so tok_nfc can be skipped. */
int tok_nfc_quick_yes(const unsigned char *s, size_t n);

/* ======================= regex (regex.c) ======================= */
enum { TOK_FAST_NONE = 0, TOK_FAST_DS_DIGITS, TOK_FAST_DS_CJK, TOK_FAST_DS_MAIN };

typedef struct {
    pcre2_code *code;
    int jit;       /* JIT-compiled */
    int fast;      /* TOK_FAST_*: a hand-written matcher with identical results */
    char *source;  /* Oniguruma pattern as written (for messages) */
} tok_regex;

/* Compiles an Oniguruma-syntax regex (what HF tokenizers uses). */
dsv3_status tok_regex_compile(tok_regex *re, const char *pattern, size_t len, dsv3_error *err);
/* Compiles a literal string pattern. */
dsv3_status tok_regex_compile_literal(tok_regex *re, const char *s, size_t len, dsv3_error *err);
void tok_regex_free(tok_regex *re);
/* Translates Oniguruma escapes to PCRE2 (exposed for tests). Returns a
 * malloc'd string or NULL with err set. */
char *tok_regex_translate(const char *pat, size_t len, size_t *out_len, dsv3_error *err);

/* Per-encoder match state. */
typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
} tok_matcher;

dsv3_status tok_matcher_init(tok_matcher *m, dsv3_error *err);
void tok_matcher_free(tok_matcher *m);

/* One search: the leftmost match in subj[0..n) at or after start (PCRE2 only).
 * Returns 1 (match, [*ms, *me) set), 0 (none), or -1 (error, err set). */
int tok_regex_search(const tok_regex *re, tok_matcher *m, const char *subj, size_t n, size_t start,
                     size_t *ms, size_t *me, dsv3_error *err);

/* ======================= tokenizer ======================= */
#define TOK_MAX_PRE 16

enum { TB_ISOLATED, TB_REMOVED, TB_MERGED_PREV, TB_MERGED_NEXT, TB_CONTIGUOUS };
enum { TP_SPLIT, TP_BYTELEVEL };

typedef struct {
    int type;
    tok_regex re;        /* TP_SPLIT pattern; TP_BYTELEVEL with use_regex: the GPT-2 regex */
    int has_re;
    int behavior, invert;
    int add_prefix_space, use_regex; /* TP_BYTELEVEL */
} tok_pre;

typedef struct {
    int32_t id;
    const char *content; /* points into tok->strings */
    uint32_t len;
    unsigned char special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* Byte trie over added-token contents. */
typedef struct {
    int32_t *child;  /* [node*?]: first child */
    int32_t *sib;    /* next sibling */
    unsigned char *byte;
    int32_t *term;   /* index into tok->added, -1 if no token ends here */
    int32_t n, cap;
    int32_t root_next[256]; /* child of the root for each byte, -1 */
    int n_first;            /* number of distinct first bytes */
    unsigned char first;    /* the first byte when n_first == 1 (memchr scan) */
} tok_trie;

/* string -> int32 open-addressing hash map; keys live elsewhere. A slot is
 * (hash tag << 32) | (value + 1), 0 = empty: the tag avoids touching the key
 * string of non-matching entries. */
typedef struct {
    uint64_t *slot;
    size_t mask;
} tok_strmap;

typedef struct {
    uint64_t key;   /* (left << 32) | right, UINT64_MAX = empty */
    int32_t rank, new_id;
} tok_merge_slot;

typedef enum { TN_NONE = 0, TN_NFC } tok_norm;

struct dsv3_tokenizer {
    /* ids: token strings (for id_to_token) and decoded bytes */
    int32_t n_ids;             /* vocab size (max id + 1) */
    const char **id_str;       /* NULL for unused ids */
    uint32_t *id_str_len;
    const char **id_bytes;     /* decoded bytes */
    uint32_t *id_bytes_len;
    unsigned char *id_flags;   /* TOKF_* */
    char *bytes_arena;         /* behind id_bytes */
    char *strings;             /* arena behind id_str / id_bytes / added contents */
    size_t strings_len;

    /* model (BPE) */
    const char **model_str;    /* per id: model vocab string, NULL if not in the model vocab */
    uint32_t *model_len;
    tok_strmap vocab;          /* model token string -> id (keys: model_str) */
    tok_merge_slot *merges;
    size_t merge_mask;
    int32_t n_merges;
    int32_t byte_id[256];      /* id of the 1-char token of each byte (byte-level), -1 */
    int32_t fallback_id[256];  /* <0xXX> ids (byte_fallback), -1 */
    int32_t unk_id;            /* -1 = none */
    int fuse_unk, byte_fallback;
    char *cont_prefix, *eow_suffix; /* continuing_subword_prefix / end_of_word_suffix */
    size_t cont_prefix_len, eow_suffix_len;
    int byte_level;            /* pre-tokenizer ends with ByteLevel: BPE starts from bytes */
    int ignore_merges;         /* a piece that is a vocab token is emitted as is */
    int disable_fast;          /* tests: use PCRE2 even where a hand-written matcher exists */
    int32_t model_vocab_count; /* number of model vocab entries (HF get_vocab_size) */

    /* added tokens */
    tok_added *added;
    int32_t n_added;
    const char **added_str;    /* keys of added_map */
    uint32_t *added_len;
    tok_strmap added_map;      /* content -> index into added */
    tok_trie trie_raw;         /* normalized == false: matched in the raw text */
    tok_trie trie_norm;        /* normalized == true: matched after normalization */

    tok_norm normalizer;
    tok_pre pre[TOK_MAX_PRE];
    int n_pre;

    /* decoder */
    int dec_bytelevel;         /* 1: concatenate bytes; 0: no decoder (join with spaces) */

    /* special tokens (tokenizer_config.json / post-processor) */
    int32_t bos_id, eos_id, pad_id;
    int32_t post_prefix[8], post_suffix[8]; /* ids added by DSV3_TOK_ADD_SPECIAL */
    int n_post_prefix, n_post_suffix;
    int post_template;         /* TemplateProcessing present: it decides BOS/EOS */
    int cfg_add_bos, cfg_add_eos; /* tokenizer_config.json add_bos_token / add_eos_token */

    /* chat template */
    int chat_kind;             /* TOK_CHAT_* */
    char *bos_str, *eos_str;   /* strings the template inserts */

    /* default encoder for dsv3_tokenizer_encode */
    pthread_mutex_t enc_lock;
    dsv3_tok_encoder *enc;
};

enum { TOKF_USED = 1, TOKF_MODEL = 2, TOKF_ADDED = 4, TOKF_SPECIAL = 8 };
enum { TOK_CHAT_NONE = 0, TOK_CHAT_DEEPSEEK_V3, TOK_CHAT_UNKNOWN };

/* ---- strmap (bpe.c) ---- */
uint64_t tok_hash_bytes(const void *p, size_t n);
dsv3_status tok_strmap_init(tok_strmap *m, size_t n_expected, dsv3_error *err);
void tok_strmap_free(tok_strmap *m);
/* keys: callback data giving the key string of a stored value. */
typedef struct {
    const char *const *str;
    const uint32_t *len;
} tok_keys;
/* Inserts value (>= 0) under key; returns the existing value if the key is
 * already present (and does not insert), else -1. */
int32_t tok_strmap_put(tok_strmap *m, const tok_keys *keys, const char *s, size_t n, int32_t value);
int32_t tok_strmap_get(const tok_strmap *m, const tok_keys *keys, const char *s, size_t n);
/* Same with a precomputed h = tok_hash_bytes(s, n). */
int32_t tok_strmap_put_h(tok_strmap *m, const tok_keys *keys, const char *s, size_t n, int32_t value, uint64_t h);
int32_t tok_strmap_get_h(const tok_strmap *m, const tok_keys *keys, const char *s, size_t n, uint64_t h);
static inline void tok_strmap_prefetch(const tok_strmap *m, uint64_t h) {
    __builtin_prefetch(&m->slot[(size_t)h & m->mask]);
}

/* ---- BPE (bpe.c) ---- */
static inline uint64_t tok_merge_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline const tok_merge_slot *tok_merge_find(const dsv3_tokenizer *t, int32_t a, int32_t b) {
    uint64_t k = tok_merge_key(a, b);
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 40) & t->merge_mask;
    for (;;) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->key == k) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}
dsv3_status tok_merges_alloc(dsv3_tokenizer *t, size_t n, dsv3_error *err);
/* Adds merge (a, b) -> new_id with the given rank; a duplicate pair takes the later rank. */
void tok_merges_add(dsv3_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id);
void tok_merges_prefetch(const dsv3_tokenizer *t, int32_t a, int32_t b);

/* ---- added tokens (added_tokens.c) ---- */
dsv3_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t term, dsv3_error *err);
void tok_trie_free(tok_trie *tr);
void tok_trie_init(tok_trie *tr);
/* Leftmost-longest search from pos: returns 1 and [*ms, *me) / *term for the
 * first position >= pos where some token matches (longest one there). */
int tok_trie_find(const tok_trie *tr, const unsigned char *s, size_t n, size_t pos, size_t *ms, size_t *me,
                  int32_t *term);


/* ======================= encoder state ======================= */
typedef struct { int32_t id, prev, next; uint32_t len; } tok_sym; /* len 0 = merged away */
typedef struct { int32_t rank, pos, new_id; } tok_heap_ent;
typedef struct { size_t s, e; int m; } tok_event;                /* a piece, m = regex match */
typedef struct { tok_event *v; size_t n, cap; } tok_evvec;
typedef struct { uint64_t hash; uint32_t key_off, key_len, val_off, n_ids; } tok_cache_slot;

struct dsv3_tok_encoder {
    const dsv3_tokenizer *tok;
    tok_matcher m;
    tok_evvec ev[TOK_MAX_PRE + 2];
    char *pbuf[TOK_MAX_PRE];       /* ByteLevel add_prefix_space copies, per stage */
    size_t pbuf_cap[TOK_MAX_PRE];
    char *norm;                    /* normalized text */
    size_t norm_cap;
    tok_sym *sym;
    size_t sym_cap;
    tok_heap_ent *heap;
    size_t heap_cap;
    /* cache of BPE results: piece bytes -> ids */
    tok_cache_slot *cache;
    size_t cache_mask, cache_used;
    char *ckeys;
    size_t ckeys_len, ckeys_cap;
    int32_t *cvals;
    size_t cvals_len, cvals_cap;
};

/* BPE of one pre-token s[0..n) (raw bytes), appending ids (bpe.c). */
dsv3_status tok_bpe_piece(dsv3_tok_encoder *enc, const char *s, size_t n, dsv3_ids *out, dsv3_error *err);
dsv3_status tok_cache_init(dsv3_tok_encoder *enc, dsv3_error *err);
void tok_cache_free(dsv3_tok_encoder *enc);

/* byte-level mapping (byte_level.c) */
extern const uint16_t tok_byte_to_cp[256];
/* byte of a byte-level code point, or -1 */
int tok_cp_to_byte(int32_t cp);
/* Fills tok->id_bytes for every id (needs id_str and flags). */
dsv3_status tok_build_decode_table(dsv3_tokenizer *t, dsv3_error *err);

/* pre-tokenization + model (pretokenize.c) */
dsv3_status tok_pretokenize(dsv3_tok_encoder *enc, int stage, const char *base, size_t s, size_t e, dsv3_ids *out,
                            dsv3_error *err);
/* Matches of one Split regex with HF/Oniguruma find_iter semantics (empty
 * matches included), as events appended to ev (exposed for tests). */
dsv3_status tok_find_matches(dsv3_tok_encoder *enc, const tok_regex *re, int use_fast, const char *subj, size_t n,
                             tok_evvec *ev, dsv3_error *err);
int tok_evvec_push(tok_evvec *v, size_t s, size_t e, int m);

/* ---- chat template (chat_template.c) ---- */
int tok_chat_recognize(const char *tmpl, size_t len);

#endif
