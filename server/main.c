/* spanprof: the composition root. Parses flags, opens the store, wires the modules' routes onto
 * one router and the ingest pipeline (convert → correlate → store) behind them, and runs the
 * server until SIGTERM/SIGINT. */
#include "../common/log.h"
#include "../correlator/correlator.h"
#include "../otlp/pyroscope.h"
#include "../otlp/service.h"
#include "../query/query.h"
#include "../storage-adapter/store.h"
#include "admin.h"
#include "auth.h"
#include "config.h"
#include "metrics.h"
#include "server.h"

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

/* The next stage of every ingest path: attach spans, then store; the answer waits for the
 * commit, so an acknowledged export is durable. */
static int ingest(void *ud, const srv_request *req, sp_batch *b, sp_err *err)
{
    pipeline *p = ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    corr_attach_spans(p->corr, b, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
    int rc = store_write(p->store, b, err);
    corr_stats st;
    corr_get_stats(p->corr, &st);
    srv_metrics_gauge_set("correlator_spans_indexed", (int64_t)st.spans_indexed);
    srv_metrics_gauge_set("correlator_observations_retained", (int64_t)st.observations_retained);
    srv_metrics_gauge_set("correlator_bytes", (int64_t)st.bytes);
    srv_metrics_gauge_set("correlator_attached_explicit_total", (int64_t)st.attached_explicit);
    srv_metrics_gauge_set("correlator_attached_inferred_total", (int64_t)st.attached_inferred);
    srv_metrics_gauge_set("correlator_attached_late_total", (int64_t)st.attached_late);
    srv_metrics_gauge_set("correlator_evicted_total", (int64_t)st.evicted);
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
    if (store_open(&pl.store, NULL, &so, &err) != 0) {
        sp_error("msg=\"cannot open the store\" err=\"%s\"", err.msg);
        srv_auth_free(auth);
        return 1;
    }
    corr_options co = {.min_span_ns = cfg.min_span_ms * 1000000};
    pl.corr = corr_new(&co);

    srv_router *router = srv_router_new();
    otlp_config ocfg = {.max_recv_msg_size = cfg.max_recv_msg_size,
                        .sink = {.write = ingest, .ud = &pl}};
    otlp_pyroscope_config pcfg = {.max_recv_msg_size = cfg.max_recv_msg_size,
                                  .sink = {.write = ingest, .ud = &pl}};
    query_config qcfg = {.max_recv_msg_size = cfg.max_recv_msg_size};
    int rc = 1;
    srv_server *server = NULL;
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
    store_close(pl.store);
    corr_free(pl.corr);
    srv_auth_free(auth);
    sp_info("msg=\"stopped\"");
    return rc;
}
