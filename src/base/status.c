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
        char prefix[512], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
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
