/* Byte trie over added-token contents with leftmost-longest search (the
 * match semantics HF gets from aho-corasick MatchKind::LeftmostLongest). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

void tok_trie_init(tok_trie *tr) {
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++) tr->root_next[i] = -1;
}

void tok_trie_free(tok_trie *tr) {
    free(tr->child);
    free(tr->sib);
    free(tr->byte);
    free(tr->term);
    tok_trie_init(tr);
}

static int32_t new_node(tok_trie *tr, unsigned char b) {
    if (tr->n == tr->cap) {
        int32_t nc = tr->cap ? tr->cap * 2 : 256;
        int32_t *c = realloc(tr->child, (size_t)nc * sizeof *c);
        if (c) tr->child = c;
        int32_t *s = realloc(tr->sib, (size_t)nc * sizeof *s);
        if (s) tr->sib = s;
        unsigned char *y = realloc(tr->byte, (size_t)nc);
        if (y) tr->byte = y;
        int32_t *t = realloc(tr->term, (size_t)nc * sizeof *t);
        if (t) tr->term = t;
        if (!c || !s || !y || !t) return -1;
        tr->cap = nc;
    }
    int32_t i = tr->n++;
    tr->child[i] = -1;
    tr->sib[i] = -1;
    tr->byte[i] = b;
    tr->term[i] = -1;
    return i;
}

static inline int32_t find_child(const tok_trie *tr, int32_t node, unsigned char b) {
    for (int32_t c = tr->child[node]; c >= 0; c = tr->sib[c])
        if (tr->byte[c] == b) return c;
    return -1;
}

dsv3_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t term, dsv3_error *err) {
    if (!n) return DSV3_OK; /* empty tokens never match */
    const unsigned char *u = (const unsigned char *)s;
    int32_t node = tr->root_next[u[0]];
    if (node < 0) {
        node = new_node(tr, u[0]);
        if (node < 0) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
        tr->root_next[u[0]] = node;
        tr->n_first++;
        tr->first = u[0];
    }
    for (size_t i = 1; i < n; i++) {
        int32_t c = find_child(tr, node, u[i]);
        if (c < 0) {
            c = new_node(tr, u[i]);
            if (c < 0) return dsv3_fail(err, DSV3_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
            tr->sib[c] = tr->child[node];
            tr->child[node] = c;
        }
        node = c;
    }
    if (tr->term[node] < 0) tr->term[node] = term; /* duplicate content: first token wins */
    return DSV3_OK;
}

int tok_trie_find(const tok_trie *tr, const unsigned char *s, size_t n, size_t pos, size_t *ms, size_t *me,
                  int32_t *term) {
    if (!tr->n) return 0;
    for (size_t i = pos; i < n; i++) {
        if (tr->n_first == 1) { /* e.g. DeepSeek: every added token starts with '<' */
            const unsigned char *q = memchr(s + i, tr->first, n - i);
            if (!q) return 0;
            i = (size_t)(q - s);
        }
        int32_t node = tr->root_next[s[i]];
        if (node < 0) continue;
        int32_t best = tr->term[node];
        size_t best_end = i + 1;
        for (size_t j = i + 1; j < n; j++) {
            node = find_child(tr, node, s[j]);
            if (node < 0) break;
            if (tr->term[node] >= 0) {
                best = tr->term[node];
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            *term = best;
            return 1;
        }
    }
    return 0;
}
