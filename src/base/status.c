#include "dsv3/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

dsv3_status dsv3_fail(dsv3_error *err, dsv3_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

dsv3_status dsv3_wrap(dsv3_error *err, dsv3_status code, const char *fmt, ...) {
    if (err) {
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* append ": <old message>" after the prefix, truncating if needed */
        if (n >= 0 && (size_t)n < sizeof err->msg - 2) {
            size_t room = sizeof err->msg - (size_t)n;
            err->msg[n] = ':';
            err->msg[n + 1] = ' ';
            size_t len = strnlen(old, sizeof old - 1);
            if (len > room - 3) len = room - 3;
            memcpy(err->msg + n + 2, old, len);
            err->msg[n + 2 + len] = 0;
        }
        err->code = code;
    }
    return code;
}

const char *dsv3_status_name(dsv3_status code) {
    switch (code) {
    case DSV3_OK: return "ok";
    case DSV3_ERR_IO: return "I/O error";
    case DSV3_ERR_FORMAT: return "format error";
    case DSV3_ERR_INVALID: return "invalid argument";
    case DSV3_ERR_NOMEM: return "out of memory";
    case DSV3_ERR_UNSUPPORTED: return "unsupported";
    case DSV3_ERR_NOT_FOUND: return "not found";
    }
    return "unknown error";
}
