#include "admin.h"
#include "../common/metrics.h"
#include "../storage-adapter/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- POST /api/v1/admin/backup?to=<file name> ------------------------------------------------ */

typedef struct backup_config {
    const char *data_dir, *backup_dir;
} backup_config;

static backup_config backup_state;

/* A file name inside the backup directory: letters, digits, '.', '_', '-', not starting with '.'
 * (no path, no hidden file, never "." or ".."), at most 200 bytes. */
static int backup_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > 200 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void handle_backup(srv_request *req, srv_response *resp, void *ud)
{
    backup_config *c = ud;
    sp_err err = {0};
    char name[256], path[4400];
    int n = srv_query_get(req, "to", name, sizeof name);
    if (!c->backup_dir || !*c->backup_dir) {
        sp_fail(&err, SP_ENOTFOUND,
                "backups over HTTP are off: start spanprof with --backup-dir DIR (or use "
                "spanprof admin backup --out FILE beside the server)");
    } else if (n < 0) {
        sp_fail(&err, SP_EINVAL, "to: missing; POST /api/v1/admin/backup?to=<file name>");
    } else if (!backup_name_ok(name, (size_t)n)) {
        sp_fail(&err, SP_EINVAL,
                "to: must be a file name inside --backup-dir (letters, digits, '.', '_', '-', "
                "not starting with '.', at most 200 bytes), never a path");
    }
    if (err.code) {
        srv_response_error(resp, req, &err);
        return;
    }
    snprintf(path, sizeof path, "%s/%s", c->backup_dir, name);
    store_backup_info info = {0};
    int64_t t0 = mono_ms();
    int rc = store_backup(c->data_dir, path, &info, &err);
    int64_t ms = mono_ms() - t0;
    sp_metrics_gauge_add(rc ? "admin_backup_failures_total" : "admin_backups_total", 1);
    if (rc) {
        srv_response_error(resp, req, &err);
        return;
    }
    sp_metrics_gauge_set("admin_backup_last_duration_ms", ms);
    sp_metrics_gauge_set("admin_backup_last_bytes", (int64_t)info.bytes);
    sp_buf out;
    sp_buf_init(&out, 0);
    /* name is a plain file name (checked above): no JSON escaping is needed */
    sp_buf_printf(&out,
                  "{\"file\":\"%s\",\"bytes\":%" PRIu64 ",\"pages\":%" PRIu64
                  ",\"duration_ms\":%" PRId64 "}\n",
                  name, info.bytes, info.pages, ms);
    srv_response_send(resp, 200, "application/json", out.data, out.len);
    sp_buf_free(&out);
}

int srv_admin_register_backup(srv_router *r, const char *data_dir, const char *backup_dir)
{
    backup_state.data_dir = data_dir;
    backup_state.backup_dir = backup_dir;
    sp_metrics_gauge_add("admin_backups_total", 0); /* counters are exported from start */
    sp_metrics_gauge_add("admin_backup_failures_total", 0);
    return srv_router_add(r, "POST", "/api/v1/admin/backup", SRV_WORKER, "admin_backup",
                          handle_backup, &backup_state);
}
