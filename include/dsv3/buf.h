/* Growable byte buffer, always NUL-terminated after the first append. A failed
 * allocation sets a sticky oom flag: later appends do nothing and return -1,
 * so callers can append freely and check once at the end. Zero-initialise. */
#ifndef DSV3_BUF_H
#define DSV3_BUF_H

#include <stddef.h>

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} dsv3_buf;

int dsv3_buf_add(dsv3_buf *b, const void *s, size_t n); /* 0 or -1 (out of memory) */
int dsv3_buf_adds(dsv3_buf *b, const char *s);
int dsv3_buf_printf(dsv3_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dsv3_buf_free(dsv3_buf *b);

#endif
