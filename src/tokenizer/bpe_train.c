/* Byte-level BPE training (see include/dsv3/bpe_train.h).
 *
 * Words are pre-tokenized with the project's DeepSeek-V3 pre-tokenizer: a
 * tokenizer holding only that pre-tokenizer is loaded from memory, and its
 * Split stages are run depth-first with tok_find_matches (all three are
 * Isolated, non-inverted, so every match and every gap is a piece, as in
 * pretokenize.c). Unique words are interned in a byte-string store.
 *
 * Merge loop (incremental, as in HF's BpeTrainer): every pair keeps its count
 * and the list of words it (may) occur in; merging (a, b) -> c visits only
 * the words on the pair's list and updates the counts of the neighbouring
 * pairs.
 * Candidates live in a max-heap with lazy deletion: counts of existing pairs
 * only ever decrease (new pairs always involve c), so a popped entry whose
 * count is stale is re-pushed with its current count, and an entry whose
 * count is current is the true maximum. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dsv3/buf.h"
#include "dsv3/clock.h"
#include "dsv3/bpe_train.h"
#include "tokenizer/tokenizer_internal.h"

const char *const dsv3_bpe_special_tokens[DSV3_BPE_N_SPECIAL] = {
    "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",
    "<\357\275\234\342\226\201pad\342\226\201\357\275\234>",
    "<\357\275\234fim\342\226\201hole\357\275\234>",
    "<\357\275\234fim\342\226\201begin\357\275\234>",
    "<\357\275\234fim\342\226\201end\357\275\234>",
    "<\357\275\234User\357\275\234>",
    "<\357\275\234Assistant\357\275\234>",
};

/* The "pre_tokenizer" object of the released DeepSeek-V3 tokenizer.json, byte for byte. */
static const char k_pre_tokenizer[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{"
    "1,3}\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"[\344\270\200-\351\276\245\343\201\200-\343\202\237\343\202\240-\343\203\277]+\"},\"behavior\""
    ":\"Isolated\",\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[!\\\"#$%&'()*+,\\"
    "\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p"
    "{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Is"
    "olated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":t"
    "rue,\"use_regex\":false}]}";

/* The "chat_template" of the released DeepSeek-V3 tokenizer_config.json (the
 * text chat_template.c recognises). */
static const char k_chat_template[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{"
    "% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_f"
    "irst_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_"
    "first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_"
    "sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content']"
    " %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in mess"
    "ages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<\357\275\234User\357"
    "\275\234>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['"
    "content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if "
    "not ns.is_first %}{{'<\357\275\234Assistant\357\275\234><\357\275\234tool\342\226\201calls\342"
    "\226\201begin\357\275\234><\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>' + too"
    "l['type'] + '<\357\275\234tool\342\226\201sep\357\275\234>' + tool['function']['name'] + '\n' + "
    "'```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<\357\275\234tool\342\226\201"
    "call\342\226\201end\357\275\234>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<\357\275"
    "\234tool\342\226\201call\342\226\201begin\357\275\234>' + tool['type'] + '<\357\275\234tool\342"
    "\226\201sep\357\275\234>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function'"
    "]['arguments'] + '\n' + '```' + '<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>'}"
    "}{{'<\357\275\234tool\342\226\201calls\342\226\201end\357\275\234><\357\275\234end\342\226\201of"
    "\342\226\201sentence\357\275\234>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] "
    "== 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<\357\275\234tool\342"
    "\226\201outputs\342\226\201end\357\275\234>' + message['content'] + '<\357\275\234end\342\226"
    "\201of\342\226\201sentence\357\275\234>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<\357\275"
    "\234Assistant\357\275\234>' + message['content'] + '<\357\275\234end\342\226\201of\342\226\201se"
    "ntence\357\275\234>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_t"
    "ool = true -%}{%- if ns.is_output_first %}{{'<\357\275\234tool\342\226\201outputs\342\226\201beg"
    "in\357\275\234><\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>' + message['con"
    "tent'] + '<\357\275\234tool\342\226\201output\342\226\201end\357\275\234>'}}{%- set ns.is_output"
    "_first = false %}{%- else %}{{'\n<\357\275\234tool\342\226\201output\342\226\201begin\357\275"
    "\234>' + message['content'] + '<\357\275\234tool\342\226\201output\342\226\201end\357\275\234>'}"
    "}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<\357\275\234tool\342\226\201output"
    "s\342\226\201end\357\275\234>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<"
    "\357\275\234Assistant\357\275\234>'}}{% endif %}";

/* ---------------- interned byte strings (id <-> bytes) ---------------- */

typedef struct {
    char *arena;
    size_t alen, acap;
    uint64_t *off, *hash;
    uint32_t *len;
    size_t n, cap;
    uint32_t *slot; /* id + 1; 0 = empty */
    size_t mask;
} bstore;

static void bs_free(bstore *b) {
    free(b->arena);
    free(b->off);
    free(b->hash);
    free(b->len);
    free(b->slot);
    memset(b, 0, sizeof *b);
}

static int bs_rehash(bstore *b, size_t nslots) {
    uint32_t *s = calloc(nslots, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < b->n; i++) {
        size_t j = (size_t)b->hash[i] & (nslots - 1);
        while (s[j]) j = (j + 1) & (nslots - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(b->slot);
    b->slot = s;
    b->mask = nslots - 1;
    return 0;
}

/* Id of p[0..n), adding it when absent (*added = 1). -1 on out of memory. */
static int64_t bs_intern(bstore *b, const char *p, size_t n, int *added) {
    *added = 0;
    if (n > UINT32_MAX || b->n >= UINT32_MAX - 1) return -1;
    if (!b->slot && bs_rehash(b, 1024)) return -1;
    uint64_t h = tok_hash_bytes(p, n);
    size_t j = (size_t)h & b->mask;
    for (uint32_t v; (v = b->slot[j]); j = (j + 1) & b->mask) {
        uint32_t i = v - 1;
        if (b->hash[i] == h && b->len[i] == n && !memcmp(b->arena + b->off[i], p, n)) return i;
    }
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        uint64_t *o = realloc(b->off, nc * sizeof *o);
        if (o) b->off = o;
        uint64_t *hs = realloc(b->hash, nc * sizeof *hs);
        if (hs) b->hash = hs;
        uint32_t *l = realloc(b->len, nc * sizeof *l);
        if (l) b->len = l;
        if (!o || !hs || !l) return -1;
        b->cap = nc;
    }
    if (b->alen + n > b->acap) {
        size_t nc = b->acap ? b->acap * 2 : 65536;
        while (nc < b->alen + n) nc *= 2;
        char *a = realloc(b->arena, nc);
        if (!a) return -1;
        b->arena = a;
        b->acap = nc;
    }
    memcpy(b->arena + b->alen, p, n);
    size_t id = b->n++;
    b->off[id] = b->alen;
    b->len[id] = (uint32_t)n;
    b->hash[id] = h;
    b->alen += n;
    b->slot[j] = (uint32_t)id + 1;
    *added = 1;
    if (b->n * 2 > b->mask + 1 && bs_rehash(b, (b->mask + 1) * 2)) return -1;
    return (int64_t)id;
}

/* ---------------- pairs and the candidate heap ---------------- */

typedef struct {
    uint64_t key;    /* (left << 32) | right, internal token ids */
    int64_t count;   /* weighted occurrences */
    int32_t *w;      /* words that contain (or once contained) the pair */
    uint32_t nw, cw;
    uint32_t stamp;  /* merge step that last put it on the touched list */
} bpe_pair;

typedef struct {
    int64_t count;
    int32_t pair;
} heap_ent;

struct dsv3_bpe_trainer {
    dsv3_tokenizer *pt;     /* holds the pre-tokenizer */
    dsv3_tok_encoder *enc;  /* match state for tok_find_matches */
    tok_evvec ev[3];
    bstore words;
    uint64_t *wcount;       /* per word: occurrences */
    size_t wcount_cap;
    dsv3_bpe_stats st;
    int trained;

    /* training state */
    bstore toks;            /* internal token id -> bytes (0..255 = single bytes) */
    int32_t *sym;           /* word symbols, at the word's offset in words.arena */
    uint32_t *wslen;        /* current symbol count of each word */
    bpe_pair *pairs;
    size_t npairs, cpairs;
    uint32_t *pslot;        /* pair index + 1 */
    size_t pmask;
    heap_ent *heap;
    size_t nheap, cheap;
    int32_t *touched;       /* pairs whose count grew in this step */
    size_t ntouched, ctouched;
    uint32_t step;
    int32_t (*merges)[2];
    size_t nmerges, cmerges;
};

static uint64_t pair_hash(uint64_t k) { return (k * 0x9E3779B97F4A7C15ull) >> 17; }

static int pairs_rehash(dsv3_bpe_trainer *t, size_t nslots) {
    uint32_t *s = calloc(nslots, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < t->npairs; i++) {
        size_t j = (size_t)pair_hash(t->pairs[i].key) & (nslots - 1);
        while (s[j]) j = (j + 1) & (nslots - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(t->pslot);
    t->pslot = s;
    t->pmask = nslots - 1;
    return 0;
}

/* Index of pair (a, b); created (count 0) when create is set. -1: absent / OOM. */
static int64_t pair_get(dsv3_bpe_trainer *t, int32_t a, int32_t b, int create) {
    uint64_t k = tok_merge_key(a, b);
    size_t j = (size_t)pair_hash(k) & t->pmask;
    for (uint32_t v; (v = t->pslot[j]); j = (j + 1) & t->pmask)
        if (t->pairs[v - 1].key == k) return v - 1;
    if (!create) return -1;
    if (t->npairs == t->cpairs) {
        size_t nc = t->cpairs ? t->cpairs * 2 : 4096;
        bpe_pair *np = realloc(t->pairs, nc * sizeof *np);
        if (!np) return -1;
        t->pairs = np;
        t->cpairs = nc;
    }
    size_t i = t->npairs++;
    t->pairs[i] = (bpe_pair){.key = k};
    t->pslot[j] = (uint32_t)i + 1;
    if (t->npairs * 2 > t->pmask + 1 && pairs_rehash(t, (t->pmask + 1) * 2)) return -1;
    return (int64_t)i;
}

/* count(a, b) += delta. A growing pair records word w and goes on the touched list. */
static int pair_add(dsv3_bpe_trainer *t, int32_t a, int32_t b, int64_t delta, int32_t w) {
    int64_t i = pair_get(t, a, b, delta > 0);
    if (i < 0) return delta > 0 ? -1 : 0; /* a decrement always finds its pair */
    bpe_pair *p = &t->pairs[i];
    p->count += delta;
    if (delta <= 0) return 0;
    if (!p->nw || p->w[p->nw - 1] != w) {
        if (p->nw == p->cw) {
            uint32_t nc = p->cw ? p->cw * 2 : 4;
            int32_t *nw = realloc(p->w, nc * sizeof *nw);
            if (!nw) return -1;
            p->w = nw;
            p->cw = nc;
        }
        p->w[p->nw++] = w;
    }
    if (p->stamp != t->step) {
        if (t->ntouched == t->ctouched) {
            size_t nc = t->ctouched ? t->ctouched * 2 : 1024;
            int32_t *nt = realloc(t->touched, nc * sizeof *nt);
            if (!nt) return -1;
            t->touched = nt;
            t->ctouched = nc;
        }
        t->touched[t->ntouched++] = (int32_t)i;
        p->stamp = t->step;
    }
    return 0;
}

/* memcmp order of two tokens' bytes, a proper prefix first. */
static int tok_cmp(const dsv3_bpe_trainer *t, int32_t x, int32_t y) {
    const bstore *b = &t->toks;
    uint32_t lx = b->len[x], ly = b->len[y];
    int c = memcmp(b->arena + b->off[x], b->arena + b->off[y], lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

/* 1 if heap entry x ranks above y: higher count, then the smaller left token, then the smaller right. */
static int heap_above(const dsv3_bpe_trainer *t, const heap_ent *x, const heap_ent *y) {
    if (x->count != y->count) return x->count > y->count;
    uint64_t kx = t->pairs[x->pair].key, ky = t->pairs[y->pair].key;
    int c = tok_cmp(t, (int32_t)(kx >> 32), (int32_t)(ky >> 32));
    if (!c) c = tok_cmp(t, (int32_t)(uint32_t)kx, (int32_t)(uint32_t)ky);
    return c < 0;
}

static int heap_push(dsv3_bpe_trainer *t, int64_t count, int32_t pair) {
    if (t->nheap == t->cheap) {
        size_t nc = t->cheap ? t->cheap * 2 : 4096;
        heap_ent *nh = realloc(t->heap, nc * sizeof *nh);
        if (!nh) return -1;
        t->heap = nh;
        t->cheap = nc;
    }
    heap_ent e = {count, pair};
    size_t i = t->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_above(t, &e, &t->heap[up])) break;
        t->heap[i] = t->heap[up];
        i = up;
    }
    t->heap[i] = e;
    return 0;
}

static heap_ent heap_pop(dsv3_bpe_trainer *t) {
    heap_ent top = t->heap[0], e = t->heap[--t->nheap];
    size_t i = 0, n = t->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_above(t, &t->heap[c + 1], &t->heap[c])) c++;
        if (!heap_above(t, &t->heap[c], &e)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = e;
    return top;
}

/* Pushes the pairs that grew in this step (with their final counts). */
static int push_touched(dsv3_bpe_trainer *t, int64_t min_freq) {
    for (size_t k = 0; k < t->ntouched; k++) {
        int32_t i = t->touched[k];
        if (t->pairs[i].count >= min_freq && heap_push(t, t->pairs[i].count, i)) return -1;
    }
    t->ntouched = 0;
    return 0;
}

/* ---------------- feeding: pre-tokenization and word counts ---------------- */

dsv3_status dsv3_bpe_trainer_new(dsv3_bpe_trainer **out, dsv3_error *err) {
    *out = NULL;
    /* a tokenizer made only of the DeepSeek-V3 pre-tokenizer (empty model) */
    static const char head[] = "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":";
    static const char tail[] = ",\"post_processor\":null,\"decoder\":null,\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}";
    char json[sizeof head + sizeof k_pre_tokenizer + sizeof tail];
    snprintf(json, sizeof json, "%s%s%s", head, k_pre_tokenizer, tail);
    dsv3_bpe_trainer *t = calloc(1, sizeof *t);
    if (!t) return dsv3_fail(err, DSV3_ERR_NOMEM, "bpe train: out of memory");
    dsv3_status st = dsv3_tokenizer_load_mem(json, strlen(json), NULL, 0, &t->pt, err);
    if (!st) st = dsv3_tok_encoder_new(t->pt, &t->enc, err);
    if (st) {
        dsv3_bpe_trainer_free(t);
        return dsv3_wrap(err, st, "bpe train: pre-tokenizer");
    }
    /* the splitter below assumes exactly this structure */
    const dsv3_tokenizer *p = t->pt;
    int ok = p->n_pre == 4 && p->normalizer == TN_NONE && p->pre[3].type == TP_BYTELEVEL &&
             !p->pre[3].add_prefix_space && !p->pre[3].use_regex;
    for (int k = 0; k < 3; k++)
        ok = ok && p->pre[k].type == TP_SPLIT && p->pre[k].behavior == TB_ISOLATED && !p->pre[k].invert;
    if (!ok) {
        dsv3_bpe_trainer_free(t);
        return dsv3_fail(err, DSV3_ERR_INVALID, "bpe train: unexpected pre-tokenizer structure");
    }
    *out = t;
    return DSV3_OK;
}

void dsv3_bpe_trainer_free(dsv3_bpe_trainer *t) {
    if (!t) return;
    dsv3_tok_encoder_free(t->enc);
    dsv3_tokenizer_free(t->pt);
    for (int k = 0; k < 3; k++) free(t->ev[k].v);
    bs_free(&t->words);
    free(t->wcount);
    bs_free(&t->toks);
    free(t->sym);
    free(t->wslen);
    for (size_t i = 0; i < t->npairs; i++) free(t->pairs[i].w);
    free(t->pairs);
    free(t->pslot);
    free(t->heap);
    free(t->touched);
    free(t->merges);
    free(t);
}

static int add_word(dsv3_bpe_trainer *t, const char *p, size_t n) {
    int added;
    int64_t id = bs_intern(&t->words, p, n, &added);
    if (id < 0) return -1;
    if ((size_t)id >= t->wcount_cap) {
        size_t nc = t->wcount_cap ? t->wcount_cap * 2 : 1024;
        uint64_t *w = realloc(t->wcount, nc * sizeof *w);
        if (!w) return -1;
        t->wcount = w;
        t->wcount_cap = nc;
    }
    if (added) t->wcount[id] = 0;
    t->wcount[id]++;
    t->st.words++;
    return 0;
}

/* Splits p[0..n) with Split stage k and recurses; after the last stage a piece is a word. */
static dsv3_status split_stage(dsv3_bpe_trainer *t, int k, const char *p, size_t n, dsv3_error *err) {
    if (k == 3) return add_word(t, p, n) ? dsv3_fail(err, DSV3_ERR_NOMEM, "bpe train: out of memory") : DSV3_OK;
    tok_evvec *ev = &t->ev[k];
    ev->n = 0;
    dsv3_status st = tok_find_matches(t->enc, &t->pt->pre[k].re, 1, p, n, ev, err);
    /* ev[k] stays valid while deeper stages run (they use ev[k+1..]) */
    for (size_t i = 0; !st && i < ev->n; i++)
        if (ev->v[i].e > ev->v[i].s) st = split_stage(t, k + 1, p + ev->v[i].s, ev->v[i].e - ev->v[i].s, err);
    return st;
}

/* Length of the special token at s (leftmost-longest as the encoder), or 0. */
static size_t special_at(const char *s, size_t n) {
    size_t best = 0;
    for (int i = 0; i < DSV3_BPE_N_SPECIAL; i++) {
        size_t l = strlen(dsv3_bpe_special_tokens[i]);
        if (l <= n && l > best && !memcmp(s, dsv3_bpe_special_tokens[i], l)) best = l;
    }
    return best;
}

dsv3_status dsv3_bpe_trainer_feed(dsv3_bpe_trainer *t, const char *text, size_t len, dsv3_error *err) {
    if (t->trained) return dsv3_fail(err, DSV3_ERR_INVALID, "bpe train: feed after train");
    double t0 = dsv3_now_s();
    dsv3_status st = DSV3_OK;
    size_t seg = 0, pos = 0;
    /* special-token strings in the text are cut out, as encode matches them before pre-tokenization */
    static const char lead[] = "<\357\275\234"; /* every special starts with "<｜" */
    while (!st && pos < len) {
        const char *h = memmem(text + pos, len - pos, lead, sizeof lead - 1);
        if (!h) break;
        size_t at = (size_t)(h - text), l = special_at(h, len - at);
        if (!l) { pos = at + 1; continue; }
        if (at > seg) st = split_stage(t, 0, text + seg, at - seg, err);
        seg = pos = at + l;
    }
    if (!st && len > seg) st = split_stage(t, 0, text + seg, len - seg, err);
    t->st.bytes += len;
    t->st.unique_words = t->words.n;
    t->st.pretokenize_s += dsv3_now_s() - t0;
    return st;
}

dsv3_status dsv3_bpe_trainer_feed_file(dsv3_bpe_trainer *t, const char *path, dsv3_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int ok = 1;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, nc);
            if (!nb) { ok = 0; break; }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int rerr = ferror(f);
    fclose(f);
    dsv3_status st;
    if (!ok) st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory reading the file", path);
    else if (rerr) st = dsv3_fail(err, DSV3_ERR_IO, "%s: read error", path);
    else if ((st = dsv3_bpe_trainer_feed(t, buf, n, err))) dsv3_wrap(err, st, "%s", path);
    free(buf);
    return st;
}

/* ---------------- the merge loop ---------------- */

/* Replaces every (a, b) in word w by c, updating neighbouring pair counts.
 * Scans left to right, non-overlapping; the left neighbour is the already
 * rewritten symbol (possibly c), so runs like "a b a b" come out right. */
static int merge_word(dsv3_bpe_trainer *t, int32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t *s = t->sym + t->words.off[w];
    uint32_t n = t->wslen[w], o = 0;
    int64_t f = (int64_t)t->wcount[w];
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (pair_add(t, a, b, -f, w)) return -1;
            if (o > 0 && (pair_add(t, s[o - 1], a, -f, w) || pair_add(t, s[o - 1], c, f, w))) return -1;
            if (i + 2 < n && (pair_add(t, b, s[i + 2], -f, w) || pair_add(t, c, s[i + 2], f, w))) return -1;
            s[o++] = c;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    t->wslen[w] = o;
    return 0;
}

dsv3_status dsv3_bpe_trainer_train(dsv3_bpe_trainer *t, int32_t vocab_size, int64_t min_frequency, dsv3_error *err) {
    if (t->trained) return dsv3_fail(err, DSV3_ERR_INVALID, "bpe train: already trained");
    if (vocab_size < DSV3_BPE_N_SPECIAL + 256)
        return dsv3_fail(err, DSV3_ERR_INVALID, "bpe train: vocab size %d is below %d (8 special + 256 byte tokens)",
                         (int)vocab_size, DSV3_BPE_N_SPECIAL + 256);
    if (min_frequency < 1) return dsv3_fail(err, DSV3_ERR_INVALID, "bpe train: min frequency must be >= 1");
    t->trained = 1;
    double t0 = dsv3_now_s();
    size_t nw = t->words.n;
    int added;
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        if (bs_intern(&t->toks, &c, 1, &added) != i) goto oom;
    }
    t->sym = malloc((t->words.alen ? t->words.alen : 1) * sizeof *t->sym);
    t->wslen = malloc((nw ? nw : 1) * sizeof *t->wslen);
    if (!t->sym || !t->wslen || pairs_rehash(t, 4096)) goto oom;
    t->step = 1; /* new pairs have stamp 0, so the initial count puts every pair on the touched list */
    for (size_t i = 0; i < t->words.alen; i++) t->sym[i] = (unsigned char)t->words.arena[i];
    /* initial pair counts; step 0 collects every pair on the touched list */
    for (size_t w = 0; w < nw; w++) {
        const int32_t *s = t->sym + t->words.off[w];
        t->wslen[w] = t->words.len[w];
        for (uint32_t i = 0; i + 1 < t->words.len[w]; i++)
            if (pair_add(t, s[i], s[i + 1], (int64_t)t->wcount[w], (int32_t)w)) goto oom;
    }
    if (push_touched(t, min_frequency)) goto oom;
    char *cat = NULL;
    size_t ccap = 0;
    while (t->nheap && DSV3_BPE_N_SPECIAL + (int64_t)t->toks.n < vocab_size) {
        heap_ent top = heap_pop(t);
        bpe_pair *p = &t->pairs[top.pair];
        if (top.count != p->count) { /* stale: requeue with the current count */
            if (p->count >= min_frequency && heap_push(t, p->count, top.pair)) goto oom_cat;
            continue;
        }
        if (top.count < min_frequency) break;
        int32_t a = (int32_t)(p->key >> 32), b = (int32_t)(uint32_t)p->key;
        /* the new token's bytes; a string that already exists keeps its id (HF does the same) */
        size_t la = t->toks.len[a], lb = t->toks.len[b];
        if (la + lb > ccap) {
            ccap = (la + lb) * 2;
            char *nc = realloc(cat, ccap);
            if (!nc) goto oom_cat;
            cat = nc;
        }
        memcpy(cat, t->toks.arena + t->toks.off[a], la);
        memcpy(cat + la, t->toks.arena + t->toks.off[b], lb);
        int64_t c = bs_intern(&t->toks, cat, la + lb, &added);
        if (c < 0) goto oom_cat;
        if (t->nmerges == t->cmerges) {
            size_t ncap = t->cmerges ? t->cmerges * 2 : 1024;
            int32_t(*nm)[2] = realloc(t->merges, ncap * sizeof *nm);
            if (!nm) goto oom_cat;
            t->merges = nm;
            t->cmerges = ncap;
        }
        t->merges[t->nmerges][0] = a;
        t->merges[t->nmerges][1] = b;
        t->nmerges++;
        /* detach the word list: p may move when new pairs are added */
        int32_t *wl = p->w;
        uint32_t nwl = p->nw;
        p->w = NULL;
        p->nw = p->cw = 0;
        t->step++;
        for (uint32_t k = 0; k < nwl; k++)
            if (merge_word(t, wl[k], a, b, (int32_t)c)) { free(wl); goto oom_cat; }
        free(wl);
        t->pairs[top.pair].count = 0; /* every occurrence is gone */
        if (push_touched(t, min_frequency)) goto oom_cat;
    }
    free(cat);
    t->st.merges = (int64_t)t->nmerges;
    t->st.vocab_size = DSV3_BPE_N_SPECIAL + (int32_t)t->toks.n;
    t->st.train_s = dsv3_now_s() - t0;
    return DSV3_OK;
oom_cat:
    free(cat);
oom:
    return dsv3_fail(err, DSV3_ERR_NOMEM, "bpe train: out of memory");
}

void dsv3_bpe_trainer_stats(const dsv3_bpe_trainer *t, dsv3_bpe_stats *st) { *st = t->st; }

/* ---------------- writing tokenizer.json / tokenizer_config.json ---------------- */

/* A JSON string literal of UTF-8 text s[0..n). */
static void ob_json(dsv3_buf *b, const char *s, size_t n) {
    dsv3_buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') { e[0] = '\\'; e[1] = (char)c; dsv3_buf_add(b, e, 2); }
        else if (c == '\n') dsv3_buf_add(b, "\\n", 2);
        else if (c == '\r') dsv3_buf_add(b, "\\r", 2);
        else if (c == '\t') dsv3_buf_add(b, "\\t", 2);
        else if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); dsv3_buf_add(b, e, 6); }
        else dsv3_buf_add(b, s + i, 1);
    }
    dsv3_buf_add(b, "\"", 1);
}

/* The byte-level form of token id's bytes as a JSON string. */
static void ob_token(dsv3_buf *b, const dsv3_bpe_trainer *t, int32_t id) {
    char s[4 * 256], u[4];
    dsv3_buf_add(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)t->toks.arena + t->toks.off[id];
    for (uint32_t i = 0, n = t->toks.len[id]; i < n;) {
        size_t k = 0;
        for (; i < n && k + 4 <= sizeof s; i++) {
            if (p[i] == '"' || p[i] == '\\') { s[k++] = '\\'; s[k++] = (char)p[i]; continue; }
            int l = tok_utf8_encode(tok_byte_to_cp[p[i]], u);
            memcpy(s + k, u, (size_t)l);
            k += (size_t)l;
        }
        dsv3_buf_add(b, s, k);
    }
    dsv3_buf_add(b, "\"", 1);
}

static dsv3_status mkdir_p(const char *dir, dsv3_error *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return dsv3_fail(err, DSV3_ERR_INVALID, "%s: path too long", dir);
    for (char *q = path + 1;; q++) {
        int end = !*q;
        if (*q == '/' || end) {
            *q = 0;
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
            if (end) break;
            *q = '/';
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return dsv3_fail(err, DSV3_ERR_IO, "%s: not a directory", dir);
    return DSV3_OK;
}

/* Writes b to dir/name through a temporary file and rename. */
static dsv3_status write_file(const char *dir, const char *name, const dsv3_buf *b, dsv3_error *err) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (b->oom) return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = fwrite(b->p, 1, b->n, f) == b->n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return DSV3_OK;
}

dsv3_status dsv3_bpe_trainer_write(const dsv3_bpe_trainer *t, const char *dir, dsv3_error *err) {
    if (!t->trained) return dsv3_fail(err, DSV3_ERR_INVALID, "bpe train: write before train");
    dsv3_status st = mkdir_p(dir, err);
    if (st) return st;
    dsv3_buf b = {0};
    char num[64];
    const char *bos = dsv3_bpe_special_tokens[0];
    dsv3_buf_adds(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int i = 0; i < DSV3_BPE_N_SPECIAL; i++) {
        snprintf(num, sizeof num, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", i);
        dsv3_buf_adds(&b, num);
        ob_json(&b, dsv3_bpe_special_tokens[i], strlen(dsv3_bpe_special_tokens[i]));
        dsv3_buf_adds(&b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                   "\"special\": true}");
    }
    dsv3_buf_adds(&b, "\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": ");
    dsv3_buf_adds(&b, k_pre_tokenizer);
    /* BOS via TemplateProcessing (as add_bos_token says), so HF tools that ignore
     * tokenizer_config.json add it too; dsv3 follows the template as well */
    dsv3_buf_adds(&b, ",\n  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": ");
    ob_json(&b, bos, strlen(bos));
    dsv3_buf_adds(&b, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\": "
               "{\"id\": ");
    ob_json(&b, bos, strlen(bos));
    dsv3_buf_adds(&b, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": ");
    ob_json(&b, bos, strlen(bos));
    dsv3_buf_adds(&b, ", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {");
    ob_json(&b, bos, strlen(bos));
    dsv3_buf_adds(&b, ": {\"id\": ");
    ob_json(&b, bos, strlen(bos));
    dsv3_buf_adds(&b, ", \"ids\": [0], \"tokens\": [");
    ob_json(&b, bos, strlen(bos));
    dsv3_buf_adds(&b, "]}}},\n"
               "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
               "\"use_regex\": true},\n"
               "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
               "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
               "    \"vocab\": {");
    /* the specials are model tokens too, so HF gives them ids 0..7 rather than appending them */
    for (int i = 0; i < DSV3_BPE_N_SPECIAL; i++) {
        dsv3_buf_adds(&b, i ? ",\n      " : "\n      ");
        ob_json(&b, dsv3_bpe_special_tokens[i], strlen(dsv3_bpe_special_tokens[i]));
        snprintf(num, sizeof num, ": %d", i);
        dsv3_buf_adds(&b, num);
    }
    for (size_t id = 0; id < t->toks.n; id++) {
        dsv3_buf_adds(&b, ",\n      ");
        ob_token(&b, t, (int32_t)id);
        snprintf(num, sizeof num, ": %d", (int)id + DSV3_BPE_N_SPECIAL);
        dsv3_buf_adds(&b, num);
    }
    dsv3_buf_adds(&b, "\n    },\n    \"merges\": [");
    for (size_t m = 0; m < t->nmerges; m++) {
        dsv3_buf_adds(&b, m ? ",\n      [" : "\n      [");
        ob_token(&b, t, t->merges[m][0]);
        dsv3_buf_adds(&b, ", ");
        ob_token(&b, t, t->merges[m][1]);
        dsv3_buf_adds(&b, "]");
    }
    dsv3_buf_adds(&b, t->nmerges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    st = write_file(dir, "tokenizer.json", &b, err);
    b.n = 0;
    if (!st) {
        dsv3_buf_adds(&b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"bos_token\": ");
        ob_json(&b, dsv3_bpe_special_tokens[0], strlen(dsv3_bpe_special_tokens[0]));
        dsv3_buf_adds(&b, ",\n  \"clean_up_tokenization_spaces\": false,\n  \"eos_token\": ");
        ob_json(&b, dsv3_bpe_special_tokens[1], strlen(dsv3_bpe_special_tokens[1]));
        dsv3_buf_adds(&b, ",\n  \"legacy\": true,\n  \"pad_token\": ");
        ob_json(&b, dsv3_bpe_special_tokens[2], strlen(dsv3_bpe_special_tokens[2]));
        dsv3_buf_adds(&b, ",\n  \"unk_token\": null,\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"chat_template\": ");
        ob_json(&b, k_chat_template, sizeof k_chat_template - 1);
        dsv3_buf_adds(&b, "\n}\n");
        st = write_file(dir, "tokenizer_config.json", &b, err);
    }
    free(b.p);
    return st;
}
