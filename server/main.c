/* spanprof: the composition root. Parses flags, opens the store, wires the modules' routes onto
 * one router and the ingest pipeline (convert → correlate → store) behind them, and runs the
 * server until SIGTERM/SIGINT. */
#include "../common/log.h"
#include "../correlator/correlator.h"
#include "../otlp/pyroscope.h"
#include "../otlp/service.h"
#include "../query/query.h"
#include "../storage-adapter/outbox.h"
#include "../storage-adapter/store.h"
#include "admin.h"
#include "auth.h"
#include "config.h"
#include "metrics.h"
#include "server.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int set_log_level(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            sp_log_set_level(i);
            return 0;
        }
    return -1;
}

typedef struct pipeline {
    corr *corr;
    store *store;
} pipeline;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The correlator's figures, read when /metrics is rendered (reading also expires the window, so
 * `unmatched` counts observations that waited in vain up to now). */
static void correlator_metrics(void *ud)
{
    pipeline *p = ud;
    corr_stats st;
    corr_get_stats(p->corr, now_ns(), &st);
    static const struct {
        const char *name;
        size_t off;
    } m[] = {
        {"correlator_spans_indexed", offsetof(corr_stats, spans_indexed)},
        {"correlator_spans_known", offsetof(corr_stats, spans_known)},
        {"correlator_spans_short_total", offsetof(corr_stats, spans_short)},
        {"correlator_samples_waiting", offsetof(corr_stats, obs_waiting)},
        {"correlator_samples_waiting_unattached", offsetof(corr_stats, obs_unattached)},
        {"correlator_bytes", offsetof(corr_stats, bytes)},
        {"correlator_samples_by_link_total", offsetof(corr_stats, by_link)},
        {"correlator_samples_by_thread_total", offsetof(corr_stats, by_thread)},
        {"correlator_samples_by_process_span_total", offsetof(corr_stats, by_process_span)},
        {"correlator_samples_ambiguous_total", offsetof(corr_stats, ambiguous)},
        {"correlator_samples_unmatched_total", offsetof(corr_stats, unmatched)},
        {"correlator_late_attachments_total", offsetof(corr_stats, late)},
        {"correlator_evicted_total", offsetof(corr_stats, evicted)},
        {"correlator_released_total", offsetof(corr_stats, released)},
        {"correlator_spans_evicted_total", offsetof(corr_stats, spans_evicted)},
        {"correlator_samples_not_kept_total", offsetof(corr_stats, not_kept)},
        {"correlator_attach_failed_total", offsetof(corr_stats, attach_failed)},
        {"correlator_spans_not_indexed_total", offsetof(corr_stats, spans_not_indexed)},
        {"correlator_process_identities_over_total", offsetof(corr_stats, idents_over)},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        srv_metrics_gauge_set(m[i].name,
                              (int64_t) * (const uint64_t *)((const char *)&st + m[i].off));
}

/* The next stage of every ingest path: attach spans, then store; the answer waits for the
 * commit, so an acknowledged export is durable. */
static int ingest(void *ud, const srv_request *req, sp_batch *b, sp_err *err)
{
    pipeline *p = ud;
    sp_err cerr = {0};
    if (corr_attach(p->corr, b, now_ns(), NULL, &cerr)) {
        /* not fatal: the batch holds every observation, some unattached (counted) */
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("msg=\"%s\" tenant=\"%s\" held_back=%llu", cerr.msg,
                    b->tenant ? b->tenant : "anonymous", (unsigned long long)held);
    }
    int rc = store_write(p->store, b, err);
    store_stats ss;
    store_stats_get(p->store, &ss);
    srv_metrics_gauge_set("store_batches_committed_total", (int64_t)ss.batches_committed);
    srv_metrics_gauge_set("store_batches_failed_total", (int64_t)ss.batches_failed);
    srv_metrics_gauge_set("store_transactions_total", (int64_t)ss.transactions);
    srv_metrics_gauge_set("store_samples_written_total", (int64_t)ss.samples_written);
    srv_metrics_gauge_set("store_spans_written_total", (int64_t)ss.spans_written);
    srv_metrics_gauge_set("store_writer_pending", (int64_t)ss.pending);
    srv_metrics_gauge_set("store_last_commit_microseconds", (int64_t)ss.last_commit_us);
    srv_metrics_gauge_set("store_retention_rows_deleted_total", (int64_t)ss.rows_deleted);
    return rc;
}

/* Trace forwarding (--traces-forward-to): otlp/forward.c marks the spans the correlator calls
 * profilable and queues the export in its own outbox. */
typedef struct forwarding {
    corr *corr;
    outbox *ob;
} forwarding;

static int forward_profilable(void *ud, const char *tenant, const sp_span *sp)
{
    return corr_span_profilable(((forwarding *)ud)->corr, tenant, sp);
}

static int forward_enqueue(void *ud, const char *tenant, const uint8_t *msg, size_t len,
                           sp_err *err)
{
    return outbox_put(((forwarding *)ud)->ob, tenant, msg, len, err);
}

static int open_forwarding(forwarding *f, const srv_config *cfg, sp_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/outbox/traces", cfg->data_dir);
    /* When SQLite keeps no copy of the spans, the queue is what the client's answer promises. */
    int only_copy = strcmp(cfg->store, "pyroscope") == 0 || strcmp(cfg->durability, "full") == 0;
    /* gRPC: the URL names the server (and perhaps a proxy's prefix); the method path follows. */
    int grpc = strcmp(cfg->traces_forward_protocol, "grpc") == 0;
    char url[4096];
    size_t ul = strlen(cfg->traces_forward_to);
    while (ul && cfg->traces_forward_to[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof url, "%.*s%s", (int)ul, cfg->traces_forward_to,
             grpc ? "/opentelemetry.proto.collector.trace.v1.TraceService/Export" : "");
    outbox_options o = {
        .dir = dir,
        .name = "traces_forward",
        .max_bytes = cfg->outbox_max_bytes,
        .linger_ns = cfg->forward_batch_interval_ms * 1000000,
        .fsync = only_copy,
        .http = {.url = grpc ? url : cfg->traces_forward_to,
                 .grpc = grpc,
                 .content_type = grpc ? "application/grpc" : "application/x-protobuf",
                 .tenant_header = "X-Scope-OrgID",
                 .bearer_token_file = cfg->traces_forward_bearer_token_file,
                 .ca_file = cfg->traces_forward_ca_file},
    };
    return outbox_open(&f->ob, &o, err);
}

static int is_ready(void *ud)
{
    return ((pipeline *)ud)->store != NULL;
}

int main(int argc, char **argv)
{
    srv_config cfg;
    sp_err err = {0};
    srv_config_defaults(&cfg);
    if (srv_config_parse(&cfg, argc, argv, &err) != 0) {
        fprintf(stderr, "spanprof: %s\n", err.msg);
        return 2;
    }
    if (cfg.help) {
        srv_config_usage(stdout);
        return 0;
    }
    if (set_log_level(cfg.log_level) != 0) {
        fprintf(stderr, "spanprof: --log-level must be debug, info, warn or error\n");
        return 2;
    }

    srv_auth *auth = NULL;
    if (srv_auth_new(&auth, &cfg, &err) != 0) {
        fprintf(stderr, "spanprof: %s\n", err.msg);
        return 2;
    }

    pipeline pl = {0};
    store_options so = {
        .data_dir = cfg.data_dir,
        .durability =
            strcmp(cfg.durability, "full") == 0 ? STORE_DURABILITY_FULL : STORE_DURABILITY_NORMAL,
        .retention_ns = cfg.retention_ms ? cfg.retention_ms * 1000000 : -1,
    };
    outbox_http pyroscope = {
        .url = cfg.pyroscope_url,
        .basic_user = cfg.pyroscope_basic_auth_user,
        .basic_password_file = cfg.pyroscope_basic_auth_password_file,
        .bearer_token_file = cfg.pyroscope_bearer_token_file,
        .ca_file = cfg.pyroscope_ca_file,
    };
    so.pyroscope = &pyroscope;
    so.outbox_max_bytes = cfg.outbox_max_bytes;
    so.outbox_linger_ns = cfg.forward_batch_interval_ms * 1000000;
    if (store_open(&pl.store, cfg.store, &so, &err) != 0) {
        sp_error("msg=\"cannot open the store\" err=\"%s\"", err.msg);
        srv_auth_free(auth);
        return 1;
    }
    corr_options co = {
        .min_span_ns = cfg.min_span_ms * 1000000,
        .window_ns = cfg.correlation_window_ms * 1000000,
        .max_bytes = cfg.correlation_max_bytes,
        .threadless = strcmp(cfg.correlate_threadless, "off") == 0 ? CORR_THREADLESS_OFF
                                                                   : CORR_THREADLESS_UNIQUE,
    };
    pl.corr = corr_new(&co);
    srv_metrics_on_render(correlator_metrics, &pl);

    srv_router *router = srv_router_new();
    otlp_config ocfg = {.max_recv_msg_size = cfg.max_recv_msg_size,
                        .sink = {.write = ingest, .ud = &pl}};
    otlp_pyroscope_config pcfg = {.max_recv_msg_size = cfg.max_recv_msg_size,
                                  .sink = {.write = ingest, .ud = &pl}};
    query_config qcfg = {.max_recv_msg_size = cfg.max_recv_msg_size};
    int rc = 1;
    srv_server *server = NULL;
    forwarding fwd = {.corr = pl.corr};
    otlp_forward fwd_cfg = {
        .profilable = forward_profilable, .enqueue = forward_enqueue, .ud = &fwd};
    if (cfg.traces_forward_to) {
        if (open_forwarding(&fwd, &cfg, &err) != 0) {
            sp_error("msg=\"cannot set up trace forwarding\" err=\"%s\"", err.msg);
            goto out;
        }
        ocfg.traces_forward = &fwd_cfg;
        sp_info("msg=\"forwarding traces\" to=\"%s\" protocol=%s", cfg.traces_forward_to,
                cfg.traces_forward_protocol);
    }
    if (!router || !pl.corr || srv_admin_register(router, is_ready, &pl) != 0 ||
        otlp_register(router, &ocfg) != 0 || otlp_pyroscope_register(router, &pcfg) != 0 ||
        query_register(router, pl.store, &qcfg) != 0) {
        sp_error("msg=\"cannot register routes\"");
        goto out;
    }
    srv_router_set_auth(router, auth);
    char auth_desc[128];
    srv_auth_describe(auth, auth_desc, sizeof auth_desc);
    sp_info("msg=\"authentication\" %s", auth_desc);
    if (srv_server_new(&server, &cfg, router, &err) != 0) {
        sp_error("msg=\"%s\"", err.msg);
        goto out;
    }
    sp_info("msg=\"store open\" data_dir=\"%s\" durability=%s", cfg.data_dir, cfg.durability);
    rc = srv_server_run(server) ? 1 : 0;
out:
    /* The server returns after in-flight requests finished: their batches are committed. */
    srv_server_free(server);
    srv_router_free(router);
    outbox_close(fwd.ob);
    store_close(pl.store);
    corr_free(pl.corr);
    srv_auth_free(auth);
    sp_info("msg=\"stopped\"");
    return rc;
}
