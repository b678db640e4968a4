/* Status codes and error messages shared by every dsv3 module.
 *
 * Library functions return a dsv3_status and, on failure, fill a dsv3_error
 * (when the caller passes one) with a message naming the file, tensor, key or
 * argument at fault. Library code never exits or aborts on bad input. */
#ifndef DSV3_STATUS_H
#define DSV3_STATUS_H

#include <stddef.h>

typedef enum {
    DSV3_OK = 0,
    DSV3_ERR_IO,          /* file missing, unreadable, short read/write */
    DSV3_ERR_FORMAT,      /* malformed file contents (bad header, bad JSON, ...) */
    DSV3_ERR_INVALID,     /* invalid argument or configuration value */
    DSV3_ERR_NOMEM,       /* allocation failed or a size overflowed */
    DSV3_ERR_UNSUPPORTED, /* valid but not implemented (dtype, component, ...) */
    DSV3_ERR_NOT_FOUND    /* a named tensor/key/file is absent */
} dsv3_status;

typedef struct {
    dsv3_status code;
    char msg[1024];
} dsv3_error;

/* Records an error (if err != NULL) and returns code. printf-style message. */
dsv3_status dsv3_fail(dsv3_error *err, dsv3_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (for adding context on the way up). */
dsv3_status dsv3_wrap(dsv3_error *err, dsv3_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *dsv3_status_name(dsv3_status code);

/* Overflow-checked size arithmetic: return 0 on success, -1 on overflow. */
static inline int dsv3_mul_u64(unsigned long long a, unsigned long long b, unsigned long long *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int dsv3_add_u64(unsigned long long a, unsigned long long b, unsigned long long *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif
