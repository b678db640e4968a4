#include "dsv3/hashmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *key; /* NULL = empty slot */
    size_t len;
    uint64_t hash;
    void *value;
} slot;

struct dsv3_hashmap {
    slot *slots;
    size_t cap; /* power of two */
    size_t count;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    /* Final avalanche (splitmix64) so the low bits used for the index mix well. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

dsv3_hashmap *dsv3_hashmap_new(size_t expected) {
    dsv3_hashmap *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    size_t cap = 16;
    while (cap / 2 < expected) {
        if (cap > SIZE_MAX / 4 / sizeof(slot)) { free(m); return NULL; }
        cap *= 2;
    }
    m->slots = calloc(cap, sizeof(slot));
    if (!m->slots) { free(m); return NULL; }
    m->cap = cap;
    return m;
}

void dsv3_hashmap_free(dsv3_hashmap *m) {
    if (!m) return;
    free(m->slots);
    free(m);
}

size_t dsv3_hashmap_count(const dsv3_hashmap *m) { return m ? m->count : 0; }

/* Index of the slot holding key, or of the empty slot where it would go. */
static size_t probe(const slot *slots, size_t cap, const char *key, size_t len, uint64_t h) {
    size_t mask = cap - 1, i = (size_t)h & mask;
    for (;;) {
        const slot *s = &slots[i];
        if (!s->key) return i;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return i;
        i = (i + 1) & mask;
    }
}

static int grow(dsv3_hashmap *m) {
    if (m->cap > SIZE_MAX / 4 / sizeof(slot)) return -1;
    size_t ncap = m->cap * 2;
    slot *ns = calloc(ncap, sizeof(slot));
    if (!ns) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        const slot *s = &m->slots[i];
        if (s->key) ns[probe(ns, ncap, s->key, s->len, s->hash)] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int dsv3_hashmap_putn(dsv3_hashmap *m, const char *key, size_t len, void *value, void **old) {
    if (!m || !key) return -1;
    uint64_t h = hash_bytes(key, len);
    size_t i = probe(m->slots, m->cap, key, len, h);
    if (m->slots[i].key) {
        if (old) *old = m->slots[i].value;
        return 1;
    }
    if ((m->count + 1) * 2 > m->cap) { /* keep load factor <= 1/2 */
        if (grow(m) != 0) return -1;
        i = probe(m->slots, m->cap, key, len, h);
    }
    m->slots[i] = (slot){key, len, h, value};
    m->count++;
    return 0;
}

int dsv3_hashmap_put(dsv3_hashmap *m, const char *key, void *value, void **old) {
    return key ? dsv3_hashmap_putn(m, key, strlen(key), value, old) : -1;
}

int dsv3_hashmap_findn(const dsv3_hashmap *m, const char *key, size_t len, void **value) {
    if (!m || !key) return 0;
    size_t i = probe(m->slots, m->cap, key, len, hash_bytes(key, len));
    if (!m->slots[i].key) return 0;
    if (value) *value = m->slots[i].value;
    return 1;
}

void *dsv3_hashmap_get(const dsv3_hashmap *m, const char *key) {
    void *v = NULL;
    if (key) dsv3_hashmap_findn(m, key, strlen(key), &v);
    return v;
}
