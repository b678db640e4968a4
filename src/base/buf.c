#include "dsv3/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dsv3_buf_add(dsv3_buf *b, const void *s, size_t n) {
    if (b->oom) return -1;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1) {
            if (nc > ((size_t)-1) / 4) { b->oom = 1; return -1; }
            nc *= 2;
        }
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return -1; }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int dsv3_buf_adds(dsv3_buf *b, const char *s) { return dsv3_buf_add(b, s, strlen(s)); }

int dsv3_buf_printf(dsv3_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return dsv3_buf_add(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) { b->oom = 1; return -1; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = dsv3_buf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

void dsv3_buf_free(dsv3_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = 0;
}
