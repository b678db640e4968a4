/* Command-line helpers shared by the bench programs (header-only). */
#ifndef DSV3_BENCH_ARGS_H
#define DSV3_BENCH_ARGS_H

#include <stdlib.h>
#include <string.h>

/* A whole decimal integer in [lo, hi] into *out; -1 (out untouched) otherwise. */
static inline int bench_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* A whole finite decimal number in [lo, hi] into *out; -1 (out untouched) otherwise. */
static inline int bench_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* "1,2,3": up to max integers in [lo, hi], in order, into out[0..*n); -1 on a bad or empty list. */
static inline int bench_parse_list(const char *s, long lo, long hi, int max, long *out, int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*n == max || bench_parse_long(tok, lo, hi, &out[*n])) return -1;
        (*n)++;
    }
    return *n > 0 ? 0 : -1;
}

#endif
