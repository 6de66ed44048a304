/* Errors as values.
 *
 * Every function that can fail returns an int: 0 on success or a negative SP_E* code, and fills a
 * caller-owned sp_err with a message a user can act on. The edge (server/request.c, srv_status_*) maps the code
 * to a gRPC status, an HTTP status and a Connect code in one table; nothing else does that mapping.
 */
#ifndef SP_ERR_H
#define SP_ERR_H

#include <stddef.h>

enum {
    SP_OK = 0,
    SP_EINVAL = -1,     /* the input is malformed or violates the protocol */
    SP_ETOOBIG = -2,    /* the input exceeds a configured size limit */
    SP_EFULL = -3,      /* a bounded queue or budget is full: retry later */
    SP_EUNAVAIL = -4,   /* a dependency (the store, disk) is not usable right now */
    SP_ENOTFOUND = -5,  /* no such route, series or span */
    SP_EUNIMPL = -6,    /* unknown service, method or feature */
    SP_EDEADLINE = -7,  /* the caller's deadline passed */
    SP_EMEDIA = -8,     /* unsupported content type or encoding */
    SP_EAUTH = -9,      /* missing or wrong credentials */
    SP_ENOMEM = -10,    /* allocation failed */
    SP_EINTERNAL = -11, /* a bug or an unexpected system error */
};

typedef struct sp_err {
    int code;
    char msg[512];
} sp_err;

/* Sets err (if not NULL) and returns code, so callers can write `return sp_fail(err, ...)`. */
int sp_fail(sp_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with more context: "profile 3: " + old message. */
void sp_err_prefix(sp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *sp_code_name(int code);

#endif
