/* Command-line helpers shared by the bench programs (header-only). */
#ifndef DSV3_BENCH_ARGS_H
#define DSV3_BENCH_ARGS_H

#include <stdlib.h>

/* A whole decimal integer in [lo, hi] into *out; -1 (out untouched) otherwise. */
static inline int bench_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

#endif
