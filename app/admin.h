/* The server's own endpoints: GET /ready (200 once the store is open, 503 before) and GET /metrics
 * (Prometheus text). Both are INLINE routes: they never wait for the ingest queue. */
#ifndef SRV_ADMIN_H
#define SRV_ADMIN_H

#include "../server/router.h"

/* ready() returns non-zero when the process can take writes; NULL means always ready. */
int srv_admin_register(srv_router *r, int (*ready)(void *ud), void *ud);

#endif
