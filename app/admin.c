#include "admin.h"
#include "../common/metrics.h"

#include <stdlib.h>

typedef struct {
    int (*ready)(void *ud);
    void *ud;
} readiness;

static readiness ready_state;

static void handle_ready(srv_request *req, srv_response *resp, void *ud)
{
    readiness *r = ud;
    if (r->ready && !r->ready(r->ud)) {
        srv_response_header(resp, "retry-after", "1");
        srv_response_send(resp, 503, "text/plain; charset=utf-8", "not ready\n", 10);
        return;
    }
    srv_response_send(resp, 200, "text/plain; charset=utf-8", "ready\n", 6);
}

static void handle_metrics(srv_request *req, srv_response *resp, void *ud)
{
    sp_buf out;
    sp_buf_init(&out, 0);
    if (sp_metrics_render(&out) != 0) {
        sp_err err;
        sp_fail(&err, SP_ENOMEM, "cannot render metrics");
        srv_response_error(resp, req, &err);
    } else {
        srv_response_send(resp, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    }
    sp_buf_free(&out);
}

/* Liveness: the event loop answers, whatever the store does (a restart would not help a store
 * that is still opening or a disk that is full; /ready says those). */
static void handle_healthz(srv_request *req, srv_response *resp, void *ud)
{
    srv_response_send(resp, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

typedef struct {
    const char *text;
    size_t len;
} config_text;

static config_text config_state;

static void handle_config(srv_request *req, srv_response *resp, void *ud)
{
    config_text *c = ud;
    srv_response_send(resp, 200, "text/yaml; charset=utf-8", c->text, c->len);
}

int srv_admin_register_config(srv_router *r, const char *yaml, size_t len)
{
    config_state.text = yaml;
    config_state.len = len;
    return srv_router_add(r, "GET", "/config", SRV_INLINE, "config", handle_config, &config_state);
}

int srv_admin_register(srv_router *r, int (*ready)(void *ud), void *ud)
{
    ready_state.ready = ready;
    ready_state.ud = ud;
    int rc = srv_router_add(r, "GET", "/ready", SRV_INLINE, "ready", handle_ready, &ready_state);
    if (!rc)
        rc = srv_router_add(r, "GET", "/metrics", SRV_INLINE, "metrics", handle_metrics, NULL);
    if (!rc)
        rc = srv_router_add(r, "GET", "/healthz", SRV_INLINE, "healthz", handle_healthz, NULL);
    return rc;
}
