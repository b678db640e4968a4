/* Loading tokenizer.json (+ tokenizer_config.json): model, added tokens,
 * normalizer, pre-tokenizer, post-processor, decoder. Every unsupported
 * component is an error naming it; malformed input is an error naming the
 * JSON path at fault. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/tokenizer_internal.h"

#define MAX_ID (1 << 26)
#define MAX_FILE (1ull << 30)

static dsv3_status read_file(const char *path, char **out, size_t *len, int optional, dsv3_error *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional && errno == ENOENT) return DSV3_ERR_NOT_FOUND;
        return dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > MAX_FILE) {
        fclose(f);
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: file too large (%lld bytes)", path, (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: short read", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return DSV3_OK;
}

/* ---------------- helpers ---------------- */

static int is_null(const tj_val *v) { return !v || v->type == TJ_NULL; }

/* Optional boolean member: absent/null -> def. */
static dsv3_status get_bool(const tj_val *obj, const char *key, int def, int *out, const char *ctx, dsv3_error *err) {
    const tj_val *v = tj_get(obj, key);
    if (is_null(v)) { *out = def; return DSV3_OK; }
    if (v->type != TJ_TRUE && v->type != TJ_FALSE)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: %s.%s must be a boolean, got %s", ctx, key,
                         tj_type_name(v));
    *out = v->type == TJ_TRUE;
    return DSV3_OK;
}

/* Optional string member: absent/null -> NULL. */
static dsv3_status get_str(const tj_val *obj, const char *key, const tj_val **out, const char *ctx, dsv3_error *err) {
    const tj_val *v = tj_get(obj, key);
    *out = NULL;
    if (is_null(v)) return DSV3_OK;
    if (v->type != TJ_STR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: %s.%s must be a string, got %s", ctx, key,
                         tj_type_name(v));
    *out = v;
    return DSV3_OK;
}

static const char *type_of(const tj_val *comp) {
    const tj_val *t = tj_get(comp, "type");
    return t && t->type == TJ_STR ? t->u.s : NULL;
}

static char *dup_mem(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---------------- model ---------------- */

static dsv3_status load_model(dsv3_tokenizer *t, const tj_val *model, dsv3_error *err) {
    if (!model || model->type != TJ_OBJ)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: \"model\" is %s, expected an object",
                         model ? tj_type_name(model) : "missing");
    const tj_val *ty = tj_get(model, "type");
    if (ty && ty->type != TJ_STR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.type must be a string");
    if (ty && strcmp(ty->u.s, "BPE"))
        return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: model type '%s' is not supported (only BPE)",
                         ty->u.s);
    const tj_val *vocab = tj_get(model, "vocab"), *merges = tj_get(model, "merges");
    if (!vocab || vocab->type != TJ_OBJ)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.vocab is %s, expected an object",
                         tj_type_name(vocab));
    if (!merges || merges->type != TJ_ARR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.merges is %s, expected an array",
                         tj_type_name(merges));
    const tj_val *dropout = tj_get(model, "dropout");
    if (!is_null(dropout)) {
        if (dropout->type != TJ_NUM)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.dropout must be a number or null");
        if (dropout->u.num != 0.0)
            return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout (%g) is not supported",
                             dropout->u.num);
    }
    dsv3_status st;
    int ignore_merges = 0;
    if ((st = get_bool(model, "fuse_unk", 0, &t->fuse_unk, "model", err))) return st;
    if ((st = get_bool(model, "byte_fallback", 0, &t->byte_fallback, "model", err))) return st;
    if ((st = get_bool(model, "ignore_merges", 0, &ignore_merges, "model", err))) return st;
    t->ignore_merges = ignore_merges;
    const tj_val *unk, *pre, *suf;
    if ((st = get_str(model, "unk_token", &unk, "model", err))) return st;
    if ((st = get_str(model, "continuing_subword_prefix", &pre, "model", err))) return st;
    if ((st = get_str(model, "end_of_word_suffix", &suf, "model", err))) return st;
    if (pre && pre->n) {
        if (!(t->cont_prefix = dup_mem(pre->u.s, pre->n))) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
        t->cont_prefix_len = pre->n;
    }
    if (suf && suf->n) {
        if (!(t->eow_suffix = dup_mem(suf->u.s, suf->n))) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
        t->eow_suffix_len = suf->n;
    }

    /* vocab: ids must be distinct non-negative integers */
    for (uint32_t i = 0; i < vocab->n; i++) {
        const tj_val *v = &vocab->u.items[2 * i + 1];
        int64_t id;
        if (tj_int(v, 0, MAX_ID - 1, &id))
            return dsv3_fail(err, DSV3_ERR_FORMAT,
                             "tokenizer.json: model.vocab[\"%.64s\"] must be an integer id in [0, %d), got %s",
                             vocab->u.items[2 * i].u.s, MAX_ID, tj_type_name(v));
        if (id >= t->n_ids) t->n_ids = (int32_t)id + 1;
    }
    t->model_vocab_count = (int32_t)vocab->n;
    return DSV3_OK;
}

/* Lookups below are pipelined in batches: hash and prefetch a batch of keys,
 * then resolve them, so the random accesses into the 128k-entry tables
 * overlap instead of stalling one after the other. */
#define BATCH 32

static dsv3_status fill_vocab(dsv3_tokenizer *t, const tj_val *vocab, char **arena_pos, dsv3_error *err) {
    dsv3_status st = tok_strmap_init(&t->vocab, vocab->n, err);
    if (st) return st;
    tok_keys keys = {t->model_str, t->model_len};
    uint64_t hs[BATCH];
    for (uint32_t b0 = 0; b0 < vocab->n; b0 += BATCH) {
        uint32_t nb = vocab->n - b0 < BATCH ? vocab->n - b0 : BATCH;
        for (uint32_t j = 0; j < nb; j++) {
            const tj_val *k = &vocab->u.items[2 * (b0 + j)];
            hs[j] = tok_hash_bytes(k->u.s, k->n);
            tok_strmap_prefetch(&t->vocab, hs[j]);
        }
        for (uint32_t j = 0; j < nb; j++) {
            const tj_val *k = &vocab->u.items[2 * (b0 + j)];
            int32_t id = (int32_t)vocab->u.items[2 * (b0 + j) + 1].u.num;
            if (t->model_str[id])
                return dsv3_fail(err, DSV3_ERR_FORMAT,
                                 "tokenizer.json: model.vocab: id %d is used by \"%.64s\" and \"%.64s\"", (int)id,
                                 t->model_str[id], k->u.s);
            char *s = *arena_pos;
            memcpy(s, k->u.s, k->n);
            s[k->n] = 0;
            *arena_pos += k->n + 1;
            t->model_str[id] = s;
            t->model_len[id] = k->n;
            if (tok_strmap_put_h(&t->vocab, &keys, s, k->n, id, hs[j]) >= 0) /* only with duplicate JSON keys */
                return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.vocab: duplicate token \"%.64s\"", s);
        }
    }
    return DSV3_OK;
}

typedef struct {
    const char *a, *b;
    size_t al, bl;
    uint64_t ha, hb, hc;
    char *c;       /* a + b (minus b's continuing_subword_prefix) */
    size_t cl;
} merge_job;

static dsv3_status parse_merge(dsv3_tokenizer *t, const tj_val *m, uint32_t r, merge_job *j, dsv3_error *err) {
    if (m->type == TJ_STR) {
        /* "a b": exactly one space */
        const char *sp = memchr(m->u.s, ' ', m->n);
        if (!sp || memchr(sp + 1, ' ', m->n - (size_t)(sp - m->u.s) - 1))
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.merges[%u] = \"%.64s\" is not \"a b\"", r,
                             m->u.s);
        j->a = m->u.s;
        j->al = (size_t)(sp - j->a);
        j->b = sp + 1;
        j->bl = m->n - j->al - 1;
    } else if (m->type == TJ_ARR && m->n == 2 && m->u.items[0].type == TJ_STR && m->u.items[1].type == TJ_STR) {
        j->a = m->u.items[0].u.s;
        j->al = m->u.items[0].n;
        j->b = m->u.items[1].u.s;
        j->bl = m->u.items[1].n;
    } else {
        return dsv3_fail(err, DSV3_ERR_FORMAT,
                         "tokenizer.json: model.merges[%u] must be a string \"a b\" or a pair [\"a\", \"b\"], got %s", r,
                         tj_type_name(m));
    }
    const char *b = j->b;
    size_t bl = j->bl;
    if (t->cont_prefix && bl >= t->cont_prefix_len && !memcmp(b, t->cont_prefix, t->cont_prefix_len)) {
        b += t->cont_prefix_len;
        bl -= t->cont_prefix_len;
    }
    j->cl = j->al + bl;
    if (!(j->c = malloc(j->cl ? j->cl : 1))) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    memcpy(j->c, j->a, j->al);
    memcpy(j->c + j->al, b, bl);
    j->ha = tok_hash_bytes(j->a, j->al);
    j->hb = tok_hash_bytes(j->b, j->bl);
    j->hc = tok_hash_bytes(j->c, j->cl);
    return DSV3_OK;
}

static dsv3_status load_merges(dsv3_tokenizer *t, const tj_val *merges, dsv3_error *err) {
    dsv3_status st = tok_merges_alloc(t, merges->n, err);
    if (st) return st;
    tok_keys keys = {t->model_str, t->model_len};
    merge_job jobs[BATCH];
    char scratch[BATCH][64]; /* most merged tokens fit: avoids a malloc per merge */
    for (uint32_t r0 = 0; r0 < merges->n; r0 += BATCH) {
        uint32_t nb = merges->n - r0 < BATCH ? merges->n - r0 : BATCH;
        uint32_t nj = 0;
        for (; nj < nb; nj++) {
            merge_job *j = &jobs[nj];
            if ((st = parse_merge(t, &merges->u.items[r0 + nj], r0 + nj, j, err))) break;
            if (j->cl <= sizeof scratch[nj]) { /* move into the scratch buffer */
                memcpy(scratch[nj], j->c, j->cl);
                free(j->c);
                j->c = NULL;
            }
            tok_strmap_prefetch(&t->vocab, j->ha);
            tok_strmap_prefetch(&t->vocab, j->hb);
            tok_strmap_prefetch(&t->vocab, j->hc);
        }
        int32_t ids[BATCH][3];
        for (uint32_t k = 0; k < nj && !st; k++) {
            merge_job *j = &jobs[k];
            uint32_t r = r0 + k;
            const char *c = j->c ? j->c : scratch[k];
            int32_t ia = tok_strmap_get_h(&t->vocab, &keys, j->a, j->al, j->ha);
            int32_t ib = tok_strmap_get_h(&t->vocab, &keys, j->b, j->bl, j->hb);
            int32_t ic = tok_strmap_get_h(&t->vocab, &keys, c, j->cl, j->hc);
            if (ia < 0 || ib < 0)
                st = dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.merges[%u]: token \"%.*s\" is not in the vocab",
                               r, (int)(ia < 0 ? j->al : j->bl), ia < 0 ? j->a : j->b);
            else if (ic < 0)
                st = dsv3_fail(err, DSV3_ERR_FORMAT,
                               "tokenizer.json: model.merges[%u]: merged token \"%.*s\" is not in the vocab", r,
                               (int)j->cl, c);
            ids[k][0] = ia;
            ids[k][1] = ib;
            ids[k][2] = ic;
            if (!st) tok_merges_prefetch(t, ia, ib);
        }
        for (uint32_t k = 0; k < nj && !st; k++) tok_merges_add(t, ids[k][0], ids[k][1], (int32_t)(r0 + k), ids[k][2]);
        for (uint32_t k = 0; k < nj; k++) free(jobs[k].c);
        if (st) return st;
    }
    t->n_merges = (int32_t)merges->n;
    return DSV3_OK;
}

/* ---------------- added tokens ---------------- */

static dsv3_status parse_added(const tj_val *arr, uint32_t i, tok_added *a, int64_t *file_id, dsv3_error *err) {
    const tj_val *o = &arr->u.items[i];
    if (o->type != TJ_OBJ)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: added_tokens[%u] must be an object, got %s", i,
                         tj_type_name(o));
    const tj_val *c = tj_get(o, "content");
    if (!c || c->type != TJ_STR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: added_tokens[%u].content must be a string, got %s", i,
                         tj_type_name(c));
    const tj_val *idv = tj_get(o, "id");
    if (tj_int(idv, 0, MAX_ID - 1, file_id))
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: added_tokens[%u].id must be an integer in [0, %d), got %s",
                         i, MAX_ID, tj_type_name(idv));
    int sw = 0, ls = 0, rs = 0, norm = 0, sp = 0;
    char ctx[64];
    snprintf(ctx, sizeof ctx, "added_tokens[%u]", i);
    dsv3_status st;
    if ((st = get_bool(o, "single_word", 0, &sw, ctx, err)) || (st = get_bool(o, "lstrip", 0, &ls, ctx, err)) ||
        (st = get_bool(o, "rstrip", 0, &rs, ctx, err)) || (st = get_bool(o, "special", 0, &sp, ctx, err)) ||
        (st = get_bool(o, "normalized", !sp, &norm, ctx, err)))
        return st;
    a->content = c->u.s;
    a->len = c->n;
    a->single_word = (unsigned char)sw;
    a->lstrip = (unsigned char)ls;
    a->rstrip = (unsigned char)rs;
    a->normalized = (unsigned char)norm;
    a->special = (unsigned char)sp;
    return DSV3_OK;
}

/* Registers the added tokens the way HF AddedVocabulary::add_tokens does:
 * a token whose content is already known keeps that id (added first, then
 * the model vocab); otherwise it gets the next id after the model vocab. */
static dsv3_status load_added(dsv3_tokenizer *t, const tj_val *arr, char **arena_pos, dsv3_error *err) {
    if (is_null(arr)) return DSV3_OK;
    if (arr->type != TJ_ARR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: added_tokens must be an array, got %s",
                         tj_type_name(arr));
    t->added = calloc(arr->n ? arr->n : 1, sizeof *t->added);
    t->added_str = calloc(arr->n ? arr->n : 1, sizeof *t->added_str);
    t->added_len = calloc(arr->n ? arr->n : 1, sizeof *t->added_len);
    if (!t->added || !t->added_str || !t->added_len) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    dsv3_status st = tok_strmap_init(&t->added_map, arr->n, err);
    if (st) return st;
    tok_keys akeys = {t->added_str, t->added_len};
    tok_keys vkeys = {t->model_str, t->model_len};
    int32_t max_added = -1;
    for (uint32_t i = 0; i < arr->n; i++) {
        tok_added a;
        int64_t file_id;
        if ((st = parse_added(arr, i, &a, &file_id, err))) return st;
        if (!a.len) continue;
        int32_t idx = tok_strmap_get(&t->added_map, &akeys, a.content, a.len);
        if (idx >= 0) {
            tok_added *o = &t->added[idx];
            /* same content again: new flags replace the old ones, the id stays */
            o->single_word = a.single_word;
            o->lstrip = a.lstrip;
            o->rstrip = a.rstrip;
            o->normalized = a.normalized;
            o->special |= a.special;
            continue;
        }
        int32_t id = tok_strmap_get(&t->vocab, &vkeys, a.content, a.len);
        if (id < 0) {
            int32_t vs = t->model_vocab_count;
            id = max_added < 0 ? vs : (max_added >= vs || vs == 0) ? max_added + 1 : vs;
        }
        if (id >= MAX_ID) return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: too many added tokens");
        (void)file_id; /* HF ignores the file's ids in favour of the rule above (they agree in practice) */
        char *s = *arena_pos;
        memcpy(s, a.content, a.len);
        s[a.len] = 0;
        *arena_pos += a.len + 1;
        a.content = s;
        a.id = id;
        idx = t->n_added++;
        t->added[idx] = a;
        t->added_str[idx] = s;
        t->added_len[idx] = a.len;
        tok_strmap_put(&t->added_map, &akeys, s, a.len, idx);
        if (id > max_added) max_added = id;
    }
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->n_ids) t->n_ids = t->added[i].id + 1;
    return DSV3_OK;
}

static dsv3_status build_tries(dsv3_tokenizer *t, dsv3_error *err) {
    tok_trie_init(&t->trie_raw);
    tok_trie_init(&t->trie_norm);
    dsv3_status st;
    for (int32_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        /* two stages even without a normalizer: HF matches the non-normalized
         * tokens first, then the normalized ones in what is left */
        tok_trie *tr = a->normalized ? &t->trie_norm : &t->trie_raw;
        if ((st = tok_trie_add(tr, a->content, a->len, i, err))) return st;
    }
    return DSV3_OK;
}

/* ---------------- normalizer ---------------- */

static dsv3_status load_normalizer(dsv3_tokenizer *t, const tj_val *n, int depth, dsv3_error *err) {
    if (is_null(n)) return DSV3_OK;
    if (n->type != TJ_OBJ || depth > 8)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: normalizer must be an object or null");
    const char *ty = type_of(n);
    if (!ty) return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: normalizer without a \"type\"");
    if (!strcmp(ty, "Sequence")) {
        const tj_val *arr = tj_get(n, "normalizers");
        if (!arr || arr->type != TJ_ARR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: normalizer Sequence needs a \"normalizers\" array");
        for (uint32_t i = 0; i < arr->n; i++) {
            dsv3_status st = load_normalizer(t, &arr->u.items[i], depth + 1, err);
            if (st) return st;
        }
        return DSV3_OK;
    }
    if (!strcmp(ty, "NFC")) {
        t->normalizer = TN_NFC; /* NFC is idempotent: several in a row are one */
        return DSV3_OK;
    }
    return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: normalizer '%s' is not supported (supported: Sequence, NFC)",
                     ty);
}

/* ---------------- pre-tokenizer ---------------- */

static const char k_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static dsv3_status add_pre(dsv3_tokenizer *t, tok_pre **out, dsv3_error *err) {
    if (t->n_pre >= TOK_MAX_PRE)
        return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: more than %d pre-tokenizers", TOK_MAX_PRE);
    *out = &t->pre[t->n_pre++];
    memset(*out, 0, sizeof **out);
    return DSV3_OK;
}

static dsv3_status load_pre(dsv3_tokenizer *t, const tj_val *p, int depth, dsv3_error *err) {
    if (is_null(p)) return DSV3_OK;
    if (p->type != TJ_OBJ || depth > 8)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: pre_tokenizer must be an object or null");
    const char *ty = type_of(p);
    if (!ty) return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a \"type\"");
    dsv3_status st;
    tok_pre *pre = NULL;
    if (!strcmp(ty, "Sequence")) {
        const tj_val *arr = tj_get(p, "pretokenizers");
        if (!arr || arr->type != TJ_ARR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: pre_tokenizer Sequence needs a \"pretokenizers\" array");
        for (uint32_t i = 0; i < arr->n; i++)
            if ((st = load_pre(t, &arr->u.items[i], depth + 1, err))) return st;
        return DSV3_OK;
    }
    if (!strcmp(ty, "Split")) {
        const tj_val *pat = tj_get(p, "pattern"), *beh = tj_get(p, "behavior");
        if (!pat || pat->type != TJ_OBJ || pat->n != 1 || pat->u.items[1].type != TJ_STR)
            return dsv3_fail(err, DSV3_ERR_FORMAT,
                             "tokenizer.json: Split.pattern must be {\"Regex\": \"...\"} or {\"String\": \"...\"}");
        const tj_val *key = &pat->u.items[0], *val = &pat->u.items[1];
        if (!beh || beh->type != TJ_STR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: Split.behavior must be a string");
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};
        int b = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(beh->u.s, names[i])) b = i;
        if (b < 0)
            return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: Split behavior '%s' is not supported", beh->u.s);
        if ((st = add_pre(t, &pre, err))) return st;
        pre->type = TP_SPLIT;
        pre->behavior = b;
        if ((st = get_bool(p, "invert", 0, &pre->invert, "Split", err))) return st;
        if (!strcmp(key->u.s, "Regex")) st = tok_regex_compile(&pre->re, val->u.s, val->n, err);
        else if (!strcmp(key->u.s, "String")) st = tok_regex_compile_literal(&pre->re, val->u.s, val->n, err);
        else
            return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: Split pattern kind '%s' is not supported",
                             key->u.s);
        if (st) return dsv3_wrap(err, st, "tokenizer.json: Split");
        pre->has_re = 1;
        return DSV3_OK;
    }
    if (!strcmp(ty, "ByteLevel")) {
        if ((st = add_pre(t, &pre, err))) return st;
        pre->type = TP_BYTELEVEL;
        if ((st = get_bool(p, "add_prefix_space", 1, &pre->add_prefix_space, "ByteLevel", err)) ||
            (st = get_bool(p, "use_regex", 1, &pre->use_regex, "ByteLevel", err)))
            return st;
        if (pre->use_regex) {
            if ((st = tok_regex_compile(&pre->re, k_gpt2_regex, sizeof k_gpt2_regex - 1, err))) return st;
            pre->has_re = 1;
        }
        return DSV3_OK;
    }
    if (!strcmp(ty, "Digits")) {
        int indiv = 0;
        if ((st = get_bool(p, "individual_digits", 0, &indiv, "Digits", err))) return st;
        if ((st = add_pre(t, &pre, err))) return st;
        /* HF: split on char::is_numeric (one match per char), Isolated or Contiguous */
        pre->type = TP_SPLIT;
        pre->behavior = indiv ? TB_ISOLATED : TB_CONTIGUOUS;
        if ((st = tok_regex_compile(&pre->re, "\\p{N}", 5, err))) return st;
        pre->has_re = 1;
        return DSV3_OK;
    }
    return dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                     "tokenizer.json: pre_tokenizer '%s' is not supported (supported: Sequence, Split, ByteLevel, Digits)",
                     ty);
}

/* ---------------- post-processor / decoder ---------------- */

static dsv3_status load_template(dsv3_tokenizer *t, const tj_val *p, dsv3_error *err) {
    const tj_val *single = tj_get(p, "single"), *sp = tj_get(p, "special_tokens");
    if (!single || single->type != TJ_ARR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: TemplateProcessing.single must be an array");
    int seen_seq = 0;
    t->n_post_prefix = t->n_post_suffix = 0;
    for (uint32_t i = 0; i < single->n; i++) {
        const tj_val *it = &single->u.items[i];
        if (it->type != TJ_OBJ || it->n != 1)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: TemplateProcessing.single[%u] is malformed", i);
        const tj_val *k = &it->u.items[0], *v = &it->u.items[1];
        if (!strcmp(k->u.s, "Sequence")) {
            if (seen_seq)
                return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: TemplateProcessing with two sequences");
            seen_seq = 1;
            continue;
        }
        if (strcmp(k->u.s, "SpecialToken"))
            return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: TemplateProcessing piece '%s'", k->u.s);
        const tj_val *name = tj_get(v, "id");
        if (!name || name->type != TJ_STR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: TemplateProcessing SpecialToken without an id");
        const tj_val *ent = tj_get(sp, name->u.s), *ids = tj_get(ent, "ids");
        if (!ids || ids->type != TJ_ARR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: TemplateProcessing special token '%s' has no ids",
                             name->u.s);
        for (uint32_t j = 0; j < ids->n; j++) {
            int64_t id;
            if (tj_int(&ids->u.items[j], 0, MAX_ID - 1, &id))
                return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: TemplateProcessing '%s': bad id", name->u.s);
            int32_t *arr = seen_seq ? t->post_suffix : t->post_prefix;
            int *cnt = seen_seq ? &t->n_post_suffix : &t->n_post_prefix;
            if (*cnt >= 8)
                return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: TemplateProcessing adds too many tokens");
            arr[(*cnt)++] = (int32_t)id;
        }
    }
    t->post_template = 1;
    return DSV3_OK;
}

static dsv3_status load_post(dsv3_tokenizer *t, const tj_val *p, int depth, dsv3_error *err) {
    if (is_null(p)) return DSV3_OK;
    const char *ty = type_of(p);
    if (!ty || depth > 8) return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: post_processor without a \"type\"");
    if (!strcmp(ty, "ByteLevel")) return DSV3_OK; /* offsets only */
    if (!strcmp(ty, "TemplateProcessing")) return load_template(t, p, err);
    if (!strcmp(ty, "Sequence")) {
        const tj_val *arr = tj_get(p, "processors");
        if (!arr || arr->type != TJ_ARR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: post_processor Sequence needs a \"processors\" array");
        for (uint32_t i = 0; i < arr->n; i++) {
            dsv3_status st = load_post(t, &arr->u.items[i], depth + 1, err);
            if (st) return st;
        }
        return DSV3_OK;
    }
    return dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                     "tokenizer.json: post_processor '%s' is not supported (supported: ByteLevel, TemplateProcessing)", ty);
}

static dsv3_status load_decoder(dsv3_tokenizer *t, const tj_val *d, dsv3_error *err) {
    t->dec_bytelevel = 0;
    if (is_null(d)) return DSV3_OK;
    const char *ty = type_of(d);
    if (!ty) return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: decoder without a \"type\"");
    if (!strcmp(ty, "ByteLevel")) { t->dec_bytelevel = 1; return DSV3_OK; }
    if (!strcmp(ty, "Sequence")) {
        const tj_val *arr = tj_get(d, "decoders");
        if (!arr || arr->type != TJ_ARR)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: decoder Sequence needs a \"decoders\" array");
        for (uint32_t i = 0; i < arr->n; i++) {
            const char *sub = type_of(&arr->u.items[i]);
            if (!sub || strcmp(sub, "ByteLevel") || t->dec_bytelevel)
                return dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                                 "tokenizer.json: decoder Sequence element '%s' is not supported (only one ByteLevel)",
                                 sub ? sub : "?");
            t->dec_bytelevel = 1;
        }
        return DSV3_OK;
    }
    return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: decoder '%s' is not supported (supported: ByteLevel)", ty);
}

/* ---------------- tokenizer_config.json ---------------- */

static const char *config_token(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) {
        json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) return json_string_value(c);
    }
    return NULL;
}

static dsv3_status load_config(dsv3_tokenizer *t, const char *text, size_t len, dsv3_error *err) {
    json_error_t je;
    json_t *cfg = json_loadb(text, len, 0, &je);
    if (!cfg) return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer_config.json: line %d: %s", je.line, je.text);
    dsv3_status st = DSV3_OK;
    if (!json_is_object(cfg)) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer_config.json: expected an object");
        goto done;
    }
    const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token"),
               *pad = config_token(cfg, "pad_token");
    if (bos) {
        t->bos_id = dsv3_tokenizer_token_to_id(t, bos, strlen(bos));
        if (!(t->bos_str = strdup(bos))) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory"); goto done; }
    }
    if (eos) {
        t->eos_id = dsv3_tokenizer_token_to_id(t, eos, strlen(eos));
        if (!(t->eos_str = strdup(eos))) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory"); goto done; }
    }
    if (pad) t->pad_id = dsv3_tokenizer_token_to_id(t, pad, strlen(pad));
    t->cfg_add_bos = json_is_true(json_object_get(cfg, "add_bos_token"));
    t->cfg_add_eos = json_is_true(json_object_get(cfg, "add_eos_token"));
    json_t *ct = json_object_get(cfg, "chat_template");
    const char *tmpl = NULL;
    if (json_is_string(ct)) tmpl = json_string_value(ct);
    else if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            if (json_is_string(json_object_get(e, "name")) && !strcmp(json_string_value(json_object_get(e, "name")), "default") &&
                json_is_string(json_object_get(e, "template")))
                tmpl = json_string_value(json_object_get(e, "template"));
        }
    }
    if (tmpl) t->chat_kind = tok_chat_recognize(tmpl, strlen(tmpl));
done:
    json_decref(cfg);
    return st;
}

/* ---------------- assembly ---------------- */

void dsv3_tokenizer_free(dsv3_tokenizer *t) {
    if (!t) return;
    if (t->enc) dsv3_tok_encoder_free(t->enc);
    pthread_mutex_destroy(&t->enc_lock);
    free(t->id_str);
    free(t->id_str_len);
    free(t->id_bytes);
    free(t->id_bytes_len);
    free(t->id_flags);
    free(t->bytes_arena);
    free(t->strings);
    free(t->model_str);
    free(t->model_len);
    tok_strmap_free(&t->vocab);
    free(t->merges);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t->added);
    free(t->added_str);
    free(t->added_len);
    tok_strmap_free(&t->added_map);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    for (int i = 0; i < t->n_pre; i++) tok_regex_free(&t->pre[i].re);
    free(t->bos_str);
    free(t->eos_str);
    free(t);
}

static dsv3_status build(dsv3_tokenizer *t, const tj_val *root, dsv3_error *err) {
    dsv3_status st;
    if (root->type != TJ_OBJ)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: top level is %s, expected an object", tj_type_name(root));
    const tj_val *tr = tj_get(root, "truncation"), *pad = tj_get(root, "padding");
    if (!is_null(tr)) return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: truncation is not supported (must be null)");
    if (!is_null(pad)) return dsv3_fail(err, DSV3_ERR_UNSUPPORTED, "tokenizer.json: padding is not supported (must be null)");
    const tj_val *model = tj_get(root, "model");
    if ((st = load_model(t, model, err))) return st;
    const tj_val *vocab = tj_get(model, "vocab"), *merges = tj_get(model, "merges");
    const tj_val *added = tj_get(root, "added_tokens");
    if (!is_null(added) && added->type != TJ_ARR)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: added_tokens must be an array, got %s", tj_type_name(added));

    /* one arena for every string we keep */
    size_t total = 1;
    for (uint32_t i = 0; i < vocab->n; i++) total += vocab->u.items[2 * i].n + 1;
    if (!is_null(added))
        for (uint32_t i = 0; i < added->n; i++) {
            const tj_val *c = tj_get(&added->u.items[i], "content");
            if (c && c->type == TJ_STR) total += c->n + 1;
        }
    t->strings = malloc(total);
    int32_t cap = t->n_ids + (int32_t)(is_null(added) ? 0 : added->n) + 1;
    t->model_str = calloc((size_t)cap, sizeof *t->model_str);
    t->model_len = calloc((size_t)cap, sizeof *t->model_len);
    if (!t->strings || !t->model_str || !t->model_len) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    char *pos = t->strings;
    if ((st = fill_vocab(t, vocab, &pos, err))) return st;
    if ((st = load_merges(t, merges, err))) return st;
    const tj_val *unk;
    if ((st = get_str(model, "unk_token", &unk, "model", err))) return st;
    t->unk_id = -1;
    if (unk) {
        tok_keys vk = {t->model_str, t->model_len};
        t->unk_id = tok_strmap_get(&t->vocab, &vk, unk->u.s, unk->n);
        if (t->unk_id < 0)
            return dsv3_fail(err, DSV3_ERR_FORMAT, "tokenizer.json: model.unk_token \"%.64s\" is not in the vocab", unk->u.s);
    }
    if ((st = load_added(t, added, &pos, err))) return st;
    if (t->n_ids > cap) { /* model_str/len must cover every id */
        const char **ms = realloc(t->model_str, (size_t)t->n_ids * sizeof *ms);
        if (ms) t->model_str = ms;
        uint32_t *ml = realloc(t->model_len, (size_t)t->n_ids * sizeof *ml);
        if (ml) t->model_len = ml;
        if (!ms || !ml) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
        for (int32_t i = cap; i < t->n_ids; i++) { t->model_str[i] = NULL; t->model_len[i] = 0; }
    }
    if ((st = load_normalizer(t, tj_get(root, "normalizer"), 0, err))) return st;
    if ((st = load_pre(t, tj_get(root, "pre_tokenizer"), 0, err))) return st;
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].type == TP_BYTELEVEL && i != t->n_pre - 1)
            return dsv3_fail(err, DSV3_ERR_UNSUPPORTED,
                             "tokenizer.json: a ByteLevel pre-tokenizer followed by other pre-tokenizers is not supported");
    t->byte_level = t->n_pre > 0 && t->pre[t->n_pre - 1].type == TP_BYTELEVEL;
    if ((st = load_post(t, tj_get(root, "post_processor"), 0, err))) return st;
    if ((st = load_decoder(t, tj_get(root, "decoder"), err))) return st;
    if ((st = build_tries(t, err))) return st;

    /* per-id tables */
    t->id_str = calloc((size_t)t->n_ids, sizeof *t->id_str);
    t->id_str_len = calloc((size_t)t->n_ids, sizeof *t->id_str_len);
    t->id_flags = calloc((size_t)t->n_ids, 1);
    if (!t->id_str || !t->id_str_len || !t->id_flags) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < t->n_ids; i++)
        if (t->model_str[i]) {
            t->id_str[i] = t->model_str[i];
            t->id_str_len[i] = t->model_len[i];
            t->id_flags[i] = TOKF_USED | TOKF_MODEL;
        }
    for (int32_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        t->id_str[a->id] = a->content;
        t->id_str_len[a->id] = a->len;
        t->id_flags[a->id] |= TOKF_USED | TOKF_ADDED | (a->special ? TOKF_SPECIAL : 0);
    }
    /* byte-level: id of each byte's 1-char token; byte fallback ids */
    tok_keys vk = {t->model_str, t->model_len};
    for (int b = 0; b < 256; b++) {
        char u[8];
        int l = tok_utf8_encode(tok_byte_to_cp[b], u);
        t->byte_id[b] = tok_strmap_get(&t->vocab, &vk, u, (size_t)l);
        char fb[8];
        snprintf(fb, sizeof fb, "<0x%02X>", b);
        t->fallback_id[b] = tok_strmap_get(&t->vocab, &vk, fb, strlen(fb));
    }
    if ((st = tok_build_decode_table(t, err))) return st;
    return DSV3_OK;
}

static dsv3_tokenizer *tok_new(void) {
    dsv3_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->enc_lock, NULL);
    tok_uclass_init();
    t->bos_id = t->eos_id = t->pad_id = t->unk_id = -1;
    return t;
}

dsv3_status dsv3_tokenizer_load_mem(const char *json, size_t len, const char *config_json, size_t config_len,
                                    dsv3_tokenizer **out, dsv3_error *err) {
    *out = NULL;
    dsv3_tokenizer *t = tok_new();
    if (!t) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory");
    tj_doc doc;
    dsv3_status st = tj_parse(json, len, &doc, "tokenizer.json", err);
    if (!st) {
        st = build(t, &doc.root, err);
        tj_free(&doc);
    }
    if (!st && config_json) st = load_config(t, config_json, config_len, err);
    if (!st) st = dsv3_tok_encoder_new(t, &t->enc, err);
    if (st) {
        dsv3_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DSV3_OK;
}

dsv3_status dsv3_tokenizer_load(const char *dir, dsv3_tokenizer **out, dsv3_error *err) {
    *out = NULL;
    char path[4096];
    char *json = NULL, *cfg = NULL;
    size_t len = 0, clen = 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    dsv3_status st = read_file(path, &json, &len, 0, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    st = read_file(path, &cfg, &clen, 1, err);
    if (st == DSV3_ERR_NOT_FOUND) st = DSV3_OK;
    if (!st) st = dsv3_tokenizer_load_mem(json, len, cfg, clen, out, err);
    if (st) dsv3_wrap(err, st, "%s", dir);
    free(json);
    free(cfg);
    return st;
}

/* ---------------- vocabulary queries ---------------- */

int32_t dsv3_tokenizer_vocab_size(const dsv3_tokenizer *t) { return t ? t->n_ids : 0; }
int32_t dsv3_tokenizer_bos_id(const dsv3_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t dsv3_tokenizer_eos_id(const dsv3_tokenizer *t) { return t ? t->eos_id : -1; }
int32_t dsv3_tokenizer_pad_id(const dsv3_tokenizer *t) { return t ? t->pad_id : -1; }

const char *dsv3_tokenizer_id_to_token(const dsv3_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_ids || !t->id_str[id]) return NULL;
    if (len) *len = t->id_str_len[id];
    return t->id_str[id];
}

int32_t dsv3_tokenizer_token_to_id(const dsv3_tokenizer *t, const char *s, size_t len) {
    if (!t) return -1;
    tok_keys ak = {t->added_str, t->added_len};
    int32_t a = t->n_added ? tok_strmap_get(&t->added_map, &ak, s, len) : -1;
    if (a >= 0) return t->added[a].id;
    tok_keys vk = {t->model_str, t->model_len};
    return tok_strmap_get(&t->vocab, &vk, s, len);
}

int dsv3_tokenizer_is_special(const dsv3_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && (t->id_flags[id] & TOKF_SPECIAL) != 0;
}
