/* spanprof: the composition root, which nothing includes. Parses flags, opens the store and the
 * deliveries, wires the modules' routes onto one router and the ingest pipeline (pipeline.c:
 * correlate → store → deliver) behind them, and runs the server until SIGTERM/SIGINT. */
#include "admin.h"
#include "client.h"
#include "config.h"
#include "pipeline.h"
#include "symbols.h"
#include "version.h"

#include "../common/log.h"
#include "../common/metrics.h"
#include "../otlp/pyroscope.h"
#include "../symbolizer/fetcher.h"
#include "../otlp/service.h"
#include "../query/query.h"
#include "../server/auth.h"
#include "../server/server.h"

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

/* Trace forwarding (--traces-forward-to): its own durable outbox. */
static int open_forwarding(outbox **out, const app_config *cfg, pipeline *pl, sp_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/outbox/traces", cfg->data_dir);
    /* When SQLite keeps no copy of the spans, the queue is what the client's answer promises. */
    int only_copy = !strstr(cfg->store, "sqlite") || strcmp(cfg->durability, "full") == 0;
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
        .hold_ns = cfg->traces_forward_delay_ms * 1000000,
        .prepare = pipeline_forward_prepare,
        .prepare_ud = pl,
        .fsync = only_copy,
        .http = {.url = grpc ? url : cfg->traces_forward_to,
                 .grpc = grpc,
                 .content_type = grpc ? "application/grpc" : "application/x-protobuf",
                 .tenant_header = "X-Scope-OrgID",
                 .bearer_token_file = cfg->traces_forward_bearer_token_file,
                 .ca_file = cfg->traces_forward_ca_file},
    };
    return outbox_open(out, &o, err);
}

/* --store: sqlite (the default), pyroscope (push only) or both. The pusher's queue is fsync'ed
 * when it is the only copy or durability is full. */
static int open_store(pipeline *pl, const app_config *cfg, const store_symbolizer *sym, sp_err *err)
{
    int local = strstr(cfg->store, "sqlite") != NULL;
    int push = strstr(cfg->store, "pyroscope") != NULL;
    int full = strcmp(cfg->durability, "full") == 0;
    store_options so = {
        .data_dir = cfg->data_dir,
        .durability = full ? STORE_DURABILITY_FULL : STORE_DURABILITY_NORMAL,
        .retention_ns = cfg->retention_ms ? cfg->retention_ms * 1000000 : -1,
        .remote_kind = "pyroscope",
        .symbolizer = sym,
    };
    int rc = store_open(&pl->store, local ? "sqlite" : "none", &so, err);
    pl->store_local = local;
    if (rc || !push)
        return rc;
    pusher_options po = {
        .data_dir = cfg->data_dir,
        .http = {.url = cfg->pyroscope_url,
                 .basic_user = cfg->pyroscope_basic_auth_user,
                 .basic_password_file = cfg->pyroscope_basic_auth_password_file,
                 .bearer_token_file = cfg->pyroscope_bearer_token_file,
                 .ca_file = cfg->pyroscope_ca_file},
        .max_bytes = cfg->outbox_max_bytes,
        .linger_ns = cfg->forward_batch_interval_ms * 1000000,
        .fsync = !local || full,
        .delay_ns = cfg->pyroscope_push_on_arrival ? -1 : cfg->pyroscope_push_delay_ms * 1000000,
        .hold_max_bytes = cfg->pyroscope_hold_max_bytes,
    };
    rc = pusher_open(&pl->pusher, &po, err);
    if (rc) {
        store_close(pl->store);
        pl->store = NULL;
    }
    return rc;
}

static int is_ready(void *ud)
{
    return ((pipeline *)ud)->store != NULL;
}

/* --help and --version answer and exit (their exit status returned); otherwise the logs and the
 * build_info metric are set up and -1 returned. */
static int answer_or_set_up(const app_config *cfg)
{
    if (cfg->help) {
        app_config_usage(stdout);
        return 0;
    }
    if (cfg->version) {
        app_version_print(stdout);
        return 0;
    }
    sp_log_set_format(strcmp(cfg->log_format, "json") == 0 ? SP_LOG_JSON : SP_LOG_LOGFMT);
    if (set_log_level(cfg->log_level) != 0) {
        fprintf(stderr, "spanprof: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    app_version_metric();
    return -1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "query") == 0) /* the terminal client (client.h) */
        return client_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "admin") == 0) /* the data tools (admin.h) */
        return admin_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], SYM_FETCHER_COMMAND) == 0) /* started by the symbolizer */
        return sym_fetcher_main(argc, argv);
    app_config cfg;
    sp_err err = {0};
    app_config_defaults(&cfg);
    if (app_config_parse(&cfg, argc, argv, &err) != 0) {
        fprintf(stderr, "spanprof: %s\n", err.msg);
        return 2;
    }
    int early = answer_or_set_up(&cfg);
    if (early >= 0)
        return early;

    srv_auth *auth = NULL;
    if (srv_auth_new(&auth, &cfg.srv, &err) != 0) {
        fprintf(stderr, "spanprof: %s\n", err.msg);
        return 2;
    }

    /* Before any thread: the symbolizer sets libdebuginfod's environment. */
    app_symbols syms;
    if (app_symbols_open(&syms, &cfg, &err) != 0) {
        fprintf(stderr, "spanprof: %s\n", err.msg);
        srv_auth_free(auth);
        return 2;
    }
    pipeline pl = {.symbols = &syms};
    if (open_store(&pl, &cfg, &syms.seam, &err) != 0) {
        sp_error("msg=\"cannot open the store\" err=\"%s\"", err.msg);
        app_symbols_close(&syms);
        srv_auth_free(auth);
        return 1;
    }
    corr_options co = {
        /* 0 = every span (the correlator's own 0 means its 20 ms default) */
        .min_span_ns = cfg.min_span_ms ? cfg.min_span_ms * 1000000 : 1,
        .window_ns = cfg.correlation_window_ms * 1000000,
        .max_bytes = cfg.correlation_max_bytes,
        .threadless = strcmp(cfg.correlate_threadless, "off") == 0 ? CORR_THREADLESS_OFF
                                                                   : CORR_THREADLESS_UNIQUE,
        /* 0 = judge on arrival (the correlator's own 0 means its default) */
        .settle_ns = cfg.threadless_settle_ms ? cfg.threadless_settle_ms * 1000000 : -1,
    };
    pl.corr = corr_new(&co);
    if (!pl.corr || pipeline_start(&pl) != 0) {
        sp_error("msg=\"cannot start the correlator\"");
        corr_free(pl.corr);
        pusher_close(pl.pusher);
        store_close(pl.store);
        app_symbols_close(&syms);
        srv_auth_free(auth);
        return 1;
    }
    sp_metrics_on_render(pipeline_metrics, &pl);

    srv_router *router = srv_router_new();
    sp_buf config_yaml; /* GET /config; the configuration never changes after start-up */
    sp_buf_init(&config_yaml, 0);
    otlp_config ocfg = {.max_recv_msg_size = cfg.srv.max_recv_msg_size,
                        .sink = {.write = pipeline_ingest,
                                 .stream_begin = pipeline_stream_begin,
                                 .stream_part = pipeline_stream_part,
                                 .stream_end = pipeline_stream_end,
                                 .ud = &pl}};
    otlp_pyroscope_config pcfg = {.max_recv_msg_size = cfg.srv.max_recv_msg_size,
                                  .sink = {.write = pipeline_ingest, .ud = &pl}};
    query_config qcfg = {.max_recv_msg_size = cfg.srv.max_recv_msg_size,
                         .span_min_duration_ns = co.min_span_ns};
    int rc = 1;
    srv_server *server = NULL;
    if (cfg.traces_forward_to) {
        if (open_forwarding(&pl.forward, &cfg, &pl, &err) != 0) {
            sp_error("msg=\"cannot set up trace forwarding\" err=\"%s\"", err.msg);
            goto out;
        }
        sp_info("msg=\"forwarding traces\" to=\"%s\" protocol=%s", cfg.traces_forward_to,
                cfg.traces_forward_protocol);
        /* exported from start, 0 until a span is marked (opened after pipeline_start) */
        sp_metrics_gauge_add("traces_forward_spans_marked_total", 0);
    }
    if (!router || !pl.corr || srv_admin_register(router, is_ready, &pl) != 0 ||
        app_config_write_yaml(&cfg, &config_yaml) != 0 ||
        srv_admin_register_config(router, (const char *)config_yaml.data, config_yaml.len) != 0 ||
        srv_admin_register_backup(router, cfg.data_dir, cfg.backup_dir) != 0 ||
        otlp_register(router, &ocfg) != 0 || otlp_pyroscope_register(router, &pcfg) != 0 ||
        query_register(router, pl.store, &qcfg) != 0 || app_symbols_register(router, &syms) != 0) {
        sp_error("msg=\"cannot register routes\"");
        goto out;
    }
    srv_router_set_auth(router, auth);
    char auth_desc[128];
    srv_auth_describe(auth, auth_desc, sizeof auth_desc);
    sp_info("msg=\"authentication\" %s", auth_desc);
    if (srv_server_new(&server, &cfg.srv, router, &err) != 0) {
        sp_error("msg=\"%s\"", err.msg);
        goto out;
    }
    sp_info("msg=\"store open\" data_dir=\"%s\" durability=%s", cfg.data_dir, cfg.durability);
    rc = srv_server_run(server) ? 1 : 0;
out:
    /* The server returns after in-flight requests finished: their batches are committed. */
    srv_server_free(server);
    srv_router_free(router);
    pipeline_stop(&pl);
    outbox_close(pl.forward);
    pusher_close(pl.pusher);
    store_close(pl.store);
    app_symbols_close(&syms);
    corr_free(pl.corr);
    srv_auth_free(auth);
    sp_buf_free(&config_yaml);
    sp_info("msg=\"stopped\"");
    return rc;
}
