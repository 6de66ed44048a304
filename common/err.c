#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sp_fail(sp_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sp_err_prefix(sp_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char head[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t hl = strlen(head);
    if (hl >= sizeof err->msg)
        hl = sizeof err->msg - 1;
    memcpy(err->msg, head, hl);
    size_t ol = strnlen(old, sizeof old - 1);
    if (ol > sizeof err->msg - 1 - hl)
        ol = sizeof err->msg - 1 - hl;
    memcpy(err->msg + hl, old, ol);
    err->msg[hl + ol] = 0;
}

const char *sp_code_name(int code)
{
    switch (code) {
    case SP_OK:
        return "ok";
    case SP_EINVAL:
        return "invalid argument";
    case SP_ETOOBIG:
        return "too big";
    case SP_EFULL:
        return "resource exhausted";
    case SP_EUNAVAIL:
        return "unavailable";
    case SP_ENOTFOUND:
        return "not found";
    case SP_EUNIMPL:
        return "unimplemented";
    case SP_EDEADLINE:
        return "deadline exceeded";
    case SP_EMEDIA:
        return "unsupported media type";
    case SP_EAUTH:
        return "unauthenticated";
    case SP_ENOMEM:
        return "out of memory";
    default:
        return "internal error";
    }
}
