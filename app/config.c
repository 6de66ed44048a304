#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_SIZE, T_INT, T_DURATION, T_FLAG } opt_type;

typedef struct {
    const char *name;
    opt_type type;
    size_t off;
    const char *def; /* shown in --help; the value itself comes from app_config_defaults */
    const char *help;
} opt;

#define OFF(f) offsetof(app_config, f)
static const opt opts[] = {
    {"data-dir", T_STR, OFF(data_dir), "./data", "directory of the embedded SQLite store"},
    {"http-addr", T_STR, OFF(srv.http_addr), "0.0.0.0:4040",
     "HTTP API listener (HTTP/1.1, h2c, and h2 with TLS)"},
    {"grpc-addr", T_STR, OFF(srv.grpc_addr), "0.0.0.0:4317", "OTLP/gRPC listener (same protocols)"},
    {"tls-cert", T_STR, OFF(srv.tls_cert), "",
     "PEM certificate: both listeners then speak TLS only"},
    {"tls-key", T_STR, OFF(srv.tls_key), "", "PEM private key for --tls-cert"},
    {"tls-client-ca", T_STR, OFF(srv.tls_client_ca), "",
     "PEM CA bundle: require client certificates signed by it (mutual TLS)"},
    {"max-recv-msg-size", T_SIZE, OFF(srv.max_recv_msg_size), "67108864",
     "largest accepted message or request body, bytes (also the inflated size)"},
    {"max-inflight-bytes", T_SIZE, OFF(srv.max_inflight_bytes), "268435456",
     "memory for request bodies being received, across all connections; past it new body bytes "
     "get RESOURCE_EXHAUSTED / 429"},
    {"queue-size", T_SIZE, OFF(srv.queue_size), "256",
     "requests waiting for a worker before answering RESOURCE_EXHAUSTED / 429"},
    {"workers", T_INT, OFF(srv.workers), "2", "worker threads that decode, convert and store"},
    {"max-concurrent-streams", T_INT, OFF(srv.max_concurrent_streams), "128",
     "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection"},
    {"shutdown-timeout", T_DURATION, OFF(srv.shutdown_timeout_ms), "10s",
     "how long SIGTERM waits for in-flight requests"},
    {"idle-timeout", T_DURATION, OFF(srv.idle_timeout_ms), "300s",
     "close connections idle this long"},
    {"header-timeout", T_DURATION, OFF(srv.header_timeout_ms), "20s",
     "close connections whose TLS handshake plus request head (HTTP/1.1) or preface (HTTP/2) take "
     "longer (slow clients trickling bytes); 0 = no limit"},
    {"durability", T_STR, OFF(durability), "normal",
     "normal: acknowledged writes survive a crash (SQLite WAL synchronous=NORMAL); full: also a "
     "power loss (synchronous=FULL)"},
    {"retention", T_DURATION, OFF(retention_ms), "168h",
     "delete profiles and spans older than this (0 keeps everything)"},
    {"span-min-duration", T_DURATION, OFF(min_span_ms), "20ms",
     "spans shorter than this get no samples by inference (they keep explicitly linked ones); 0 = "
     "every span"},
    {"min-span-duration", T_DURATION, OFF(min_span_ms), "20ms", "same as --span-min-duration"},
    {"correlation-window", T_DURATION, OFF(correlation_window_ms), "2m",
     "how long samples wait for their spans, and spans for their samples"},
    {"correlation-max-bytes", T_SIZE, OFF(correlation_max_bytes), "536870912",
     "memory for spans and samples waiting in the window (1 M spans take about 200 MiB); past it "
     "attached samples stop waiting first, then the oldest unattached ones, spans last"},
    {"threadless-settle", T_DURATION, OFF(threadless_settle_ms), "10s",
     "spans without thread.id: how long after a sample arrives its spans are judged, so the spans "
     "of concurrent requests (exported when they end, in 5 s batches) are all known; 0 = judge "
     "on arrival"},
    {"correlate-threadless", T_STR, OFF(correlate_threadless), "unique",
     "spans without thread.id: unique (attach a sample when exactly one chain of spans of its "
     "process covers it) or off"},
    {"ingest-auth-token-file", T_STR, OFF(srv.ingest_auth_token_file), "",
     "file of bearer tokens (one a line) that ingest requests (OTLP, Pyroscope) must present; "
     "also $SPANPROF_INGEST_AUTH_TOKEN"},
    {"ingest-basic-auth-file", T_STR, OFF(srv.ingest_basic_auth_file), "",
     "file of user:password lines accepted as HTTP basic auth on ingest requests"},
    {"query-auth-token-file", T_STR, OFF(srv.query_auth_token_file), "",
     "file of bearer tokens that query requests (querier API, /render, /pprof, the page) must "
     "present; also $SPANPROF_QUERY_AUTH_TOKEN"},
    {"query-basic-auth-file", T_STR, OFF(srv.query_basic_auth_file), "",
     "file of user:password lines accepted as HTTP basic auth on query requests"},
    {"multitenancy-required", T_FLAG, OFF(srv.multitenancy_required), "",
     "refuse ingest and query requests without X-Scope-OrgID (UNAUTHENTICATED / 401) instead of "
     "using tenant \"anonymous\""},
    {"store", T_STR, OFF(store), "sqlite",
     "where profiles go: sqlite, pyroscope (push only) or sqlite,pyroscope (both; SQLite "
     "answers queries); with --pyroscope-url alone it is sqlite,pyroscope"},
    {"pyroscope-url", T_STR, OFF(pyroscope_url), "",
     "Pyroscope base URL to push to (push.v1.PusherService/Push), e.g. http://pyroscope:4040"},
    {"pyroscope-basic-auth-user", T_STR, OFF(pyroscope_basic_auth_user), "",
     "basic auth user for Pyroscope"},
    {"pyroscope-basic-auth-password-file", T_STR, OFF(pyroscope_basic_auth_password_file), "",
     "file holding the basic auth password (first line)"},
    {"pyroscope-bearer-token-file", T_STR, OFF(pyroscope_bearer_token_file), "",
     "file holding a bearer token for Pyroscope (first line; read for every request)"},
    {"pyroscope-ca-file", T_STR, OFF(pyroscope_ca_file), "",
     "PEM CA bundle to verify Pyroscope's TLS certificate with"},
    {"traces-forward-to", T_STR, OFF(traces_forward_to), "",
     "forward every trace export to this OTLP/HTTP URL (e.g. http://tempo:4318/v1/traces), "
     "adding pyroscope.profile.id to spans that have a span profile"},
    {"traces-forward-protocol", T_STR, OFF(traces_forward_protocol), "http/protobuf",
     "http/protobuf (POST to the URL as given) or grpc (TraceService/Export over HTTP/2 at "
     "http://host:4317, cleartext, or https://host:4317, TLS), as OTEL_EXPORTER_OTLP_PROTOCOL"},
    {"traces-forward-bearer-token-file", T_STR, OFF(traces_forward_bearer_token_file), "",
     "file holding a bearer token for --traces-forward-to"},
    {"traces-forward-ca-file", T_STR, OFF(traces_forward_ca_file), "",
     "PEM CA bundle to verify --traces-forward-to's TLS certificate with"},
    {"outbox-max-bytes", T_SIZE, OFF(outbox_max_bytes), "268435456",
     "on-disk queue per destination (under <data-dir>/outbox); past it the oldest items are "
     "dropped"},
    {"forward-batch-interval", T_DURATION, OFF(forward_batch_interval_ms), "200ms",
     "how long pushes and forwarded traces wait to be batched with others"},
    {"symbols-dir", T_STR, OFF(symbols_dir), "",
     "debug files for native frames, in the .build-id/<xx>/<rest>.debug layout (as "
     "/usr/lib/debug); searched before debuginfod"},
    {"debuginfod-urls", T_STR, OFF(debuginfod_urls), "$DEBUGINFOD_URLS",
     "debuginfod servers (space-separated) that native frames' debug files are downloaded from "
     "by build id; none = no server"},
    {"symbolize-budget", T_DURATION, OFF(symbolize_budget_ms), "2s",
     "the most one query spends naming native frames (waiting for downloads); past it the "
     "frames not named yet show as addresses and the answer's X-Spanprof-Unresolved-Frames "
     "header counts them"},
    {"symbols-retry", T_DURATION, OFF(symbols_retry_ms), "5m",
     "a debug file not found, or a download that failed, is looked for again after this long"},
    {"debuginfod-timeout", T_DURATION, OFF(debuginfod_timeout_ms), "30s",
     "the most one download from debuginfod may take"},
    {"debuginfo-max-bytes", T_SIZE, OFF(debuginfo_max_bytes), "2147483648",
     "largest debug file downloaded, uploaded or opened"},
    {"log-level", T_STR, OFF(log_level), "info", "debug, info, warn or error"},
    {"help", T_FLAG, OFF(help), "", "print this help and exit"},
};
#undef OFF

/* 1 when the URL's authority (between "://" and the path) has a user-info part. */
static int url_has_userinfo(const char *url)
{
    const char *a = url ? strstr(url, "://") : NULL;
    if (!a)
        return 0;
    a += 3;
    size_t n = strcspn(a, "/?#");
    return memchr(a, '@', n) != NULL;
}

void app_config_defaults(app_config *c)
{
    memset(c, 0, sizeof *c);
    srv_options_defaults(&c->srv);
    c->data_dir = "./data";
    c->log_level = "info";
    c->durability = "normal";
    c->retention_ms = 168LL * 3600 * 1000;
    c->min_span_ms = 20;
    c->correlation_window_ms = 120000;
    c->correlation_max_bytes = (size_t)512 << 20;
    c->correlate_threadless = "unique";
    c->threadless_settle_ms = 10000;
    c->outbox_max_bytes = (size_t)256 << 20;
    c->forward_batch_interval_ms = 200;
    c->traces_forward_protocol = "http/protobuf";
    c->symbolize_budget_ms = 2000;
    c->symbols_retry_ms = 300000;
    c->debuginfod_timeout_ms = 30000;
    c->debuginfo_max_bytes = (size_t)2 << 30;
}

void app_config_usage(FILE *out)
{
    fprintf(out, "usage: spanprof [flags]\n\n"
                 "Receives OTLP traces and profiles and Pyroscope pushes, correlates spans with\n"
                 "profile samples, stores them and serves the Pyroscope query API.\n\nflags:\n");
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, opts[i].type == T_FLAG ? "" : " V");
        fprintf(out, "  %-28s %s", left, opts[i].help);
        if (opts[i].type != T_FLAG)
            fprintf(out, " (default \"%s\")", opts[i].def);
        fputc('\n', out);
    }
}

/* Sizes accept a plain byte count or a KiB/MiB/GiB suffix (k, m, g; binary). */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    unsigned long long mul = 1;
    switch (*end) {
    case 0:
        break;
    case 'k':
    case 'K':
        mul = 1ull << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ull << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ull << 30;
        end++;
        break;
    default:
        return -1;
    }
    if (*end == 'i' || *end == 'B' || *end == 'b')
        end += (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
    if (*end || (mul > 1 && v > SIZE_MAX / mul))
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* Go-style durations as Pyroscope users write them: 500ms, 10s, 5m, 168h; a bare number is ms. */
static int parse_duration(const char *s, int64_t *ms)
{
    double total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (errno || end == p || v < 0)
            return -1;
        p = end;
        double unit;
        if (strncmp(p, "ms", 2) == 0) {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = 1000;
            p++;
        } else if (*p == 'm') {
            unit = 60000;
            p++;
        } else if (*p == 'h') {
            unit = 3600000;
            p++;
        } else if (*p == 'd') {
            unit = 86400000;
            p++;
        } else if (*p == 0 && p != s) {
            unit = 1;
        } else {
            return -1;
        }
        total += v * unit;
    }
    /* In range as nanoseconds too (about 292 years); "nan" and "inf" are not durations. */
    if (!(total <= (double)(INT64_MAX / 1000000)))
        return -1;
    *ms = (int64_t)total;
    return 0;
}

int app_config_parse(app_config *c, int argc, char **argv, sp_err *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return sp_fail(err, SP_EINVAL, "unexpected argument \"%s\" (flags start with --)", a);
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const opt *o = NULL;
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
            if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, a, nlen) == 0)
                o = &opts[k];
        if (!o)
            return sp_fail(err, SP_EINVAL, "unknown flag --%.*s (see --help)", (int)nlen, a);
        char *field = (char *)c + o->off;
        if (o->type == T_FLAG) {
            if (eq)
                return sp_fail(err, SP_EINVAL, "flag --%s takes no value", o->name);
            *(int *)field = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val)
            return sp_fail(err, SP_EINVAL, "flag --%s needs a value", o->name);
        switch (o->type) {
        case T_STR:
            *(const char **)field = val;
            break;
        case T_SIZE:
            if (parse_size(val, (size_t *)field))
                return sp_fail(err, SP_EINVAL, "flag --%s: \"%s\" is not a size", o->name, val);
            break;
        case T_INT: {
            char *end;
            long v = strtol(val, &end, 10);
            if (*end || end == val || v < 1 || v > 100000)
                return sp_fail(err, SP_EINVAL, "flag --%s: \"%s\" is not a positive integer",
                               o->name, val);
            *(int *)field = (int)v;
            break;
        }
        case T_DURATION:
            if (parse_duration(val, (int64_t *)field))
                return sp_fail(err, SP_EINVAL,
                               "flag --%s: \"%s\" is not a duration (e.g. 500ms, 10s, 168h)",
                               o->name, val);
            break;
        case T_FLAG:
            break;
        }
    }
    if (c->srv.tls_cert && !*c->srv.tls_cert)
        c->srv.tls_cert = NULL;
    if (c->srv.tls_key && !*c->srv.tls_key)
        c->srv.tls_key = NULL;
    if (c->srv.tls_client_ca && !*c->srv.tls_client_ca)
        c->srv.tls_client_ca = NULL;
    const char **optional[] = {&c->store,
                               &c->pyroscope_url,
                               &c->pyroscope_basic_auth_user,
                               &c->pyroscope_basic_auth_password_file,
                               &c->pyroscope_bearer_token_file,
                               &c->pyroscope_ca_file,
                               &c->traces_forward_to,
                               &c->traces_forward_bearer_token_file,
                               &c->traces_forward_ca_file};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        if (*optional[i] && !**optional[i])
            *optional[i] = NULL;
    if (!c->store)
        c->store = c->pyroscope_url ? "sqlite,pyroscope" : "sqlite";
    if (strcmp(c->store, "sqlite") != 0 && strcmp(c->store, "pyroscope") != 0 &&
        strcmp(c->store, "sqlite,pyroscope") != 0 && strcmp(c->store, "pyroscope,sqlite") != 0)
        return sp_fail(err, SP_EINVAL,
                       "--store must be sqlite, pyroscope or sqlite,pyroscope, not \"%s\"",
                       c->store);
    if (strstr(c->store, "pyroscope") && !c->pyroscope_url)
        return sp_fail(err, SP_EINVAL, "--store=%s needs --pyroscope-url", c->store);
    if (!strstr(c->store, "pyroscope") && c->pyroscope_url)
        return sp_fail(err, SP_EINVAL,
                       "--pyroscope-url needs --store=pyroscope or sqlite,pyroscope");
    if (c->pyroscope_basic_auth_password_file && !c->pyroscope_basic_auth_user)
        return sp_fail(err, SP_EINVAL,
                       "--pyroscope-basic-auth-password-file needs --pyroscope-basic-auth-user");
    if (strcmp(c->traces_forward_protocol, "http/protobuf") != 0 &&
        strcmp(c->traces_forward_protocol, "grpc") != 0)
        return sp_fail(err, SP_EINVAL,
                       "--traces-forward-protocol must be http/protobuf or grpc, not \"%s\"",
                       c->traces_forward_protocol);
    if (c->traces_forward_to && strncmp(c->traces_forward_to, "http://", 7) != 0 &&
        strncmp(c->traces_forward_to, "https://", 8) != 0)
        return sp_fail(err, SP_EINVAL, "--traces-forward-to must start with http:// or https://");
    if (!!c->srv.tls_cert != !!c->srv.tls_key)
        return sp_fail(err, SP_EINVAL, "--tls-cert and --tls-key go together");
    /* Credentials inside a URL would reach the logs with it: they belong in the secret files. */
    if (url_has_userinfo(c->pyroscope_url))
        return sp_fail(err, SP_EINVAL,
                       "--pyroscope-url must not carry user:password@; use "
                       "--pyroscope-basic-auth-user and --pyroscope-basic-auth-password-file");
    if (url_has_userinfo(c->traces_forward_to))
        return sp_fail(err, SP_EINVAL,
                       "--traces-forward-to must not carry user:password@; use the bearer token "
                       "file flag");
    if (c->srv.tls_client_ca && !c->srv.tls_cert)
        return sp_fail(err, SP_EINVAL, "--tls-client-ca needs --tls-cert and --tls-key");
    if (strcmp(c->durability, "normal") != 0 && strcmp(c->durability, "full") != 0)
        return sp_fail(err, SP_EINVAL, "--durability must be normal or full, not \"%s\"",
                       c->durability);
    if (strcmp(c->correlate_threadless, "unique") != 0 &&
        strcmp(c->correlate_threadless, "off") != 0)
        return sp_fail(err, SP_EINVAL, "--correlate-threadless must be unique or off, not \"%s\"",
                       c->correlate_threadless);
    if (c->correlation_window_ms <= 0)
        return sp_fail(err, SP_EINVAL, "--correlation-window must be more than 0");
    if (c->srv.max_recv_msg_size < 1024)
        return sp_fail(err, SP_EINVAL, "--max-recv-msg-size must be at least 1024 bytes");
    return 0;
}
