/* Small open-addressing hash map: string key -> void * value.
 *
 * Keys are BORROWED: the map stores the caller's pointer and length, so each
 * key must stay alive and unchanged while it is in the map. Keys are byte
 * strings (may contain NUL when inserted with an explicit length). Linear
 * probing, FNV-1a hash, table kept at most half full; no deletion. */
#ifndef DSV3_HASHMAP_H
#define DSV3_HASHMAP_H

#include <stddef.h>

typedef struct dsv3_hashmap dsv3_hashmap;

/* expected: number of keys to size the table for (0 is fine). NULL on OOM. */
dsv3_hashmap *dsv3_hashmap_new(size_t expected);
void dsv3_hashmap_free(dsv3_hashmap *m);
size_t dsv3_hashmap_count(const dsv3_hashmap *m);

/* Inserts key -> value. Returns 0 if inserted, 1 if the key was already
 * present (the map is left unchanged; *old, if non-NULL, gets the existing
 * value), -1 on out of memory. */
int dsv3_hashmap_putn(dsv3_hashmap *m, const char *key, size_t len, void *value, void **old);
int dsv3_hashmap_put(dsv3_hashmap *m, const char *key, void *value, void **old);

/* Returns 1 and sets *value (if non-NULL) when key is present, else 0. */
int dsv3_hashmap_findn(const dsv3_hashmap *m, const char *key, size_t len, void **value);
/* Value for a NUL-terminated key, or NULL if absent. */
void *dsv3_hashmap_get(const dsv3_hashmap *m, const char *key);

#endif
