/* Text corpus -> packed token stream with EOS separators and FIM (see
 * include/dsv3/corpus.h). Documents are tokenized in parallel in blocks, one
 * encoder per thread; blocks are concatenated in order, so the output is
 * the same for any thread count. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/corpus.h"

#define U_BAR "\357\275\234" /* U+FF5C, the bar of the DeepSeek special tokens */
#define U_SP "\342\226\201"  /* U+2581 */
static const char k_eos[] = "<" U_BAR "end" U_SP "of" U_SP "sentence" U_BAR ">";
static const char k_fim_begin[] = "<" U_BAR "fim" U_SP "begin" U_BAR ">";
static const char k_fim_hole[] = "<" U_BAR "fim" U_SP "hole" U_BAR ">";
static const char k_fim_end[] = "<" U_BAR "fim" U_SP "end" U_BAR ">";

/* ---------------- documents ---------------- */

static int blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

static int push_doc(dsv3_doc_span **v, size_t *n, size_t *cap, size_t off, size_t len) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        dsv3_doc_span *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (dsv3_doc_span){off, len};
    return 0;
}

dsv3_status dsv3_corpus_split(const char *text, size_t len, dsv3_doc_mode mode, dsv3_doc_span **docs, size_t *n,
                              dsv3_error *err) {
    dsv3_doc_span *v = NULL;
    size_t nv = 0, cap = 0;
    int oom = 0;
    *docs = NULL;
    *n = 0;
    if (mode == DSV3_DOCS_FILE) {
        if (len) oom = push_doc(&v, &nv, &cap, 0, len);
    } else {
        /* a line is [ls, ce) without its terminator; nl = position of its '\n' (len if none) */
        size_t doc_start = 0, doc_end = 0;
        int open = 0;
        for (size_t ls = 0; ls < len && !oom;) {
            const char *p = memchr(text + ls, '\n', len - ls);
            size_t nl = p ? (size_t)(p - text) : len, ce = nl;
            if (p && ce > ls && text[ce - 1] == '\r') ce--; /* CRLF */
            int blank = blank_line(text + ls, ce - ls);
            if (mode == DSV3_DOCS_LINE) {
                if (!blank) oom = push_doc(&v, &nv, &cap, ls, ce - ls);
            } else if (blank) {
                if (open) oom = push_doc(&v, &nv, &cap, doc_start, doc_end - doc_start);
                open = 0;
            } else {
                if (!open) doc_start = ls;
                open = 1;
                doc_end = ce;
            }
            ls = nl + 1;
        }
        if (open && !oom) oom = push_doc(&v, &nv, &cap, doc_start, doc_end - doc_start);
    }
    if (oom) {
        free(v);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "corpus: out of memory splitting documents");
    }
    *docs = v;
    *n = nv;
    return DSV3_OK;
}

/* ---------------- FIM ---------------- */

static uint64_t mix(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform integer in [0, n) from a 64-bit random value (multiply-shift). */
static uint64_t below(uint64_t r, uint64_t n) { return (uint64_t)(((unsigned __int128)r * n) >> 64); }

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

/* Byte offset of the k-th character boundary (0 and len are boundaries; so is
 * every byte that is not a UTF-8 continuation byte). */
static size_t boundary(const char *s, size_t len, uint64_t k) {
    for (size_t i = 0; i < len; i++)
        if (i == 0 || !is_cont((unsigned char)s[i])) {
            if (k == 0) return i;
            k--;
        }
    return len;
}

int dsv3_corpus_fim_cuts(uint64_t seed, uint64_t doc_index, double fim_rate, const char *doc, size_t len,
                         size_t *cut0, size_t *cut1) {
    if (!(fim_rate > 0)) return 0;
    uint64_t st = mix(seed ^ mix(doc_index ^ 0xF13F13F13ull));
    double u = (double)(mix(st) >> 11) * 0x1.0p-53;
    if (u >= fim_rate) return 0;
    uint64_t nb = 1; /* boundaries: len, plus position 0 and every character start */
    for (size_t i = 0; i < len; i++) nb += i == 0 || !is_cont((unsigned char)doc[i]);
    uint64_t k0 = below(mix(st + 1), nb), k1 = below(mix(st + 2), nb);
    if (k0 > k1) { uint64_t x = k0; k0 = k1; k1 = x; }
    *cut0 = boundary(doc, len, k0);
    *cut1 = boundary(doc, len, k1);
    return 1;
}

/* ---------------- tokenization ---------------- */

dsv3_status dsv3_corpus_special_ids(const dsv3_tokenizer *tok, double fim_rate, dsv3_corpus_ids *ids,
                                    dsv3_error *err) {
    ids->eos = dsv3_tokenizer_eos_id(tok);
    if (ids->eos < 0) ids->eos = dsv3_tokenizer_token_to_id(tok, k_eos, strlen(k_eos));
    if (ids->eos < 0)
        return dsv3_fail(err, DSV3_ERR_INVALID,
                         "tokenizer has no EOS token (eos_token in tokenizer_config.json or %s), needed as the "
                         "document separator", k_eos);
    ids->fim_begin = dsv3_tokenizer_token_to_id(tok, k_fim_begin, strlen(k_fim_begin));
    ids->fim_hole = dsv3_tokenizer_token_to_id(tok, k_fim_hole, strlen(k_fim_hole));
    ids->fim_end = dsv3_tokenizer_token_to_id(tok, k_fim_end, strlen(k_fim_end));
    if (fim_rate > 0) {
        const char *miss = ids->fim_begin < 0 ? k_fim_begin : ids->fim_hole < 0 ? k_fim_hole
                         : ids->fim_end < 0   ? k_fim_end : NULL;
        if (miss) return dsv3_fail(err, DSV3_ERR_INVALID, "tokenizer has no %s token, needed for FIM (fim rate > 0)", miss);
    }
    return DSV3_OK;
}

/* Appends the tokens of one document (FIM-transformed or not) and EOS. */
static dsv3_status doc_tokens(dsv3_tok_encoder *enc, const dsv3_corpus_ids *ids, const dsv3_corpus_opts *o,
                              uint64_t index, const char *d, size_t n, dsv3_ids *out, int *fim, dsv3_error *err) {
    size_t c0, c1;
    dsv3_status st;
    *fim = dsv3_corpus_fim_cuts(o->seed, index, o->fim_rate, d, n, &c0, &c1);
    if (*fim) {
        /* PSM: begin prefix hole suffix end middle */
        if ((st = dsv3_ids_push(out, ids->fim_begin, err)) || (st = dsv3_tok_encoder_encode(enc, d, c0, 0, out, err)) ||
            (st = dsv3_ids_push(out, ids->fim_hole, err)) ||
            (st = dsv3_tok_encoder_encode(enc, d + c1, n - c1, 0, out, err)) ||
            (st = dsv3_ids_push(out, ids->fim_end, err)) ||
            (st = dsv3_tok_encoder_encode(enc, d + c0, c1 - c0, 0, out, err)))
            return st;
    } else if ((st = dsv3_tok_encoder_encode(enc, d, n, 0, out, err))) {
        return st;
    }
    return dsv3_ids_push(out, ids->eos, err);
}

#define DOCS_PER_BLOCK 16

dsv3_status dsv3_corpus_tokenize_text(const dsv3_tokenizer *tok, const char *text, size_t len,
                                      const dsv3_corpus_opts *o, dsv3_ids *out, dsv3_corpus_stats *stats,
                                      dsv3_error *err) {
    if (!(o->fim_rate >= 0 && o->fim_rate <= 1)) return dsv3_fail(err, DSV3_ERR_INVALID, "fim rate must be in [0, 1]");
    dsv3_corpus_ids ids;
    dsv3_status st = dsv3_corpus_special_ids(tok, o->fim_rate, &ids, err);
    if (st) return st;
    dsv3_doc_span *docs;
    size_t nd;
    if ((st = dsv3_corpus_split(text, len, o->mode, &docs, &nd, err))) return st;
    size_t nblk = (nd + DOCS_PER_BLOCK - 1) / DOCS_PER_BLOCK;
    dsv3_ids *bo = calloc(nblk ? nblk : 1, sizeof *bo);
    uint64_t *bfim = calloc(nblk ? nblk : 1, sizeof *bfim);
    if (!bo || !bfim) {
        free(docs);
        free(bo);
        free(bfim);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "corpus: out of memory");
    }
    uint64_t first = stats->docs;
    dsv3_status st_all = DSV3_OK;
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    if ((size_t)nt > nblk) nt = nblk ? (int)nblk : 1;
#pragma omp parallel num_threads(nt)
    {
        dsv3_error e = {0};
        dsv3_tok_encoder *enc = NULL;
        dsv3_status s = dsv3_tok_encoder_new(tok, &enc, &e);
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < nblk; b++) {
            size_t d1 = (b + 1) * DOCS_PER_BLOCK < nd ? (b + 1) * DOCS_PER_BLOCK : nd;
            for (size_t d = b * DOCS_PER_BLOCK; !s && d < d1; d++) {
                int fim;
                s = doc_tokens(enc, &ids, o, first + d, text + docs[d].off, docs[d].len, &bo[b], &fim, &e);
                bfim[b] += (uint64_t)fim;
            }
        }
        if (s) {
#pragma omp critical(dsv3_corpus_err)
            if (!st_all) {
                st_all = s;
                if (err) *err = e;
            }
        }
        dsv3_tok_encoder_free(enc);
    }
    size_t total = out->len;
    for (size_t b = 0; b < nblk; b++) total += bo[b].len;
    if (!st_all && total > out->cap) {
        int32_t *nd2 = realloc(out->data, total * sizeof *nd2);
        if (!nd2) st_all = dsv3_fail(err, DSV3_ERR_NOMEM, "corpus: out of memory for %zu tokens", total);
        else {
            out->data = nd2;
            out->cap = total;
        }
    }
    uint64_t old = out->len;
    for (size_t b = 0; b < nblk; b++) {
        if (!st_all) {
            memcpy(out->data + out->len, bo[b].data, bo[b].len * sizeof *bo[b].data);
            out->len += bo[b].len;
            stats->fim_docs += bfim[b];
        }
        dsv3_ids_free(&bo[b]);
    }
    if (!st_all) {
        stats->docs += nd;
        stats->tokens += out->len - old;
        for (size_t d = 0; d < nd; d++) stats->bytes += docs[d].len;
    }
    free(bo);
    free(bfim);
    free(docs);
    return st_all;
}

static dsv3_status read_all(const char *path, char **buf, size_t *n, dsv3_error *err) {
    FILE *f = fopen(path, "rb");
    *buf = NULL;
    *n = 0;
    if (!f) return dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 0;
    for (;;) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(*buf, nc);
            if (!nb) {
                fclose(f);
                return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory reading the file", path);
            }
            *buf = nb;
            cap = nc;
        }
        size_t r = fread(*buf + *n, 1, cap - *n, f);
        *n += r;
        if (!r) break;
    }
    int bad = ferror(f);
    fclose(f);
    return bad ? dsv3_fail(err, DSV3_ERR_IO, "%s: read error", path) : DSV3_OK;
}

dsv3_status dsv3_corpus_tokenize_files(const dsv3_tokenizer *tok, const char *const *paths, size_t n_paths,
                                       const dsv3_corpus_opts *o, dsv3_ids *out, dsv3_corpus_stats *stats,
                                       dsv3_error *err) {
    memset(stats, 0, sizeof *stats);
    dsv3_corpus_ids ids;
    dsv3_status st = dsv3_corpus_special_ids(tok, o->fim_rate, &ids, err); /* fail before reading anything */
    for (size_t i = 0; !st && i < n_paths; i++) {
        char *buf;
        size_t n;
        st = read_all(paths[i], &buf, &n, err);
        if (!st && (st = dsv3_corpus_tokenize_text(tok, buf, n, o, out, stats, err))) dsv3_wrap(err, st, "%s", paths[i]);
        free(buf);
        if (!st) stats->files++;
    }
    return st;
}
