/* Settings from three sources through one table (opts[]): flags, SPANPROF_* environment
 * variables and a YAML file. Invariants:
 *   1. Precedence, highest first: flag, environment variable, config file, default. The sources
 *      are applied from the lowest up, each overwriting what the one before set.
 *   2. One name per setting: --name, SPANPROF_NAME (capitals, _ for -), file key name (with - or
 *      _ or ., nested maps joining their keys with -). Nothing else is read, so the table is
 *      the whole list and --help prints all of it.
 *   3. Every refusal is SP_EINVAL naming where the value came from: the flag, the variable, or
 *      the file with line, column and key. Values are echoed, never those of unknown keys (a
 *      misplaced secret stays out of the message); the secrets themselves are only ever named
 *      by file paths here (server/auth.c reads them).
 *   4. The file is bounded (FILE_MAX_BYTES, FILE_MAX_DEPTH) and read with YAML aliases refused,
 *      so a hostile file cannot make start-up slow or large.
 *   5. Values copied from the environment and the file are kept for the life of the process.
 */
#include "config.h"

#include <yaml.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef enum { T_STR, T_SIZE, T_INT, T_DURATION, T_FLAG } opt_type;

enum { NOT_ENV = 1, NOT_FILE = 2 }; /* sources a setting cannot come from */

typedef struct {
    const char *name;
    opt_type type;
    size_t off;
    const char *def; /* shown in --help; the value itself comes from app_config_defaults */
    const char *help;
} opt;

#define OFF(f) offsetof(app_config, f)
static const opt opts[] = {
    {"config", T_STR, OFF(config_file), "",
     "YAML file of settings, keys named as these flags (see above); \"\" = none"},
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
     "requests waiting for a worker, per pool (ingest, query), before answering "
     "RESOURCE_EXHAUSTED / 429"},
    {"workers", T_INT, OFF(srv.workers), "2", "worker threads that decode, convert and store"},
    {"query-workers", T_INT, OFF(srv.query_workers), "2",
     "worker threads of their own for queries (querier API, /render, /pprof, /api/v1), so a "
     "query never waits behind ingest"},
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
     "attached samples stop waiting first, then the oldest unattached ones, spans last; samples "
     "of processes that have sent no span wait in a sixteenth of it"},
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
    {"admin-auth-token-file", T_STR, OFF(srv.admin_auth_token_file), "",
     "file of bearer tokens that admin requests (POST /api/v1/admin/backup) must present; also "
     "$SPANPROF_ADMIN_AUTH_TOKEN; without one, admin requests are refused once any other "
     "credential or --multitenancy-required is set"},
    {"backup-dir", T_STR, OFF(backup_dir), "",
     "directory POST /api/v1/admin/backup?to=<file name> writes online backups into; unset = "
     "backups over HTTP off"},
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
    {"pyroscope-push-delay", T_DURATION, OFF(pyroscope_push_delay_ms), "30s",
     "samples are pushed this long after their 10 s bucket ended, so spans that arrive after "
     "their samples (the normal order) still label them; one profile per series and bucket"},
    {"pyroscope-push-on-arrival", T_FLAG, OFF(pyroscope_push_on_arrival), "",
     "push each batch when it arrives instead: samples carry only the spans known then, and "
     "profiles of one series and timestamp may collapse in Pyroscope's compaction"},
    {"pyroscope-hold-max-bytes", T_SIZE, OFF(pyroscope_hold_max_bytes), "268435456",
     "memory for samples waiting to be pushed; past it the oldest buckets leave early"},
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
    {"traces-forward-delay", T_DURATION, OFF(traces_forward_delay_ms), "15s",
     "forwarded trace exports wait this long, so the spans' profiles and parents have arrived "
     "when pyroscope.profile.id is decided"},
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
    {"log-format", T_STR, OFF(log_format), "logfmt",
     "logfmt (key=value) or json (one object per line), on stderr"},
    {"help", T_FLAG, OFF(help), "", "print this help and exit"},
    {"version", T_FLAG, OFF(version), "", "print the version and build information and exit"},
};
#undef OFF
#define NOPTS (sizeof opts / sizeof opts[0])

/* The sources a setting cannot come from: a file cannot name another file, and help is asked
 * for on the command line only. */
static int not_from(const opt *o)
{
    if (strcmp(o->name, "help") == 0 || strcmp(o->name, "version") == 0)
        return NOT_ENV | NOT_FILE;
    return strcmp(o->name, "config") == 0 ? NOT_FILE : 0;
}

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
    c->log_format = "logfmt";
    c->durability = "normal";
    c->retention_ms = 168LL * 3600 * 1000;
    c->min_span_ms = 20;
    c->correlation_window_ms = 120000;
    c->correlation_max_bytes = (size_t)512 << 20;
    c->correlate_threadless = "unique";
    c->threadless_settle_ms = 10000;
    c->outbox_max_bytes = (size_t)256 << 20;
    c->forward_batch_interval_ms = 200;
    c->pyroscope_push_delay_ms = 30000;
    c->pyroscope_hold_max_bytes = (size_t)256 << 20;
    c->traces_forward_delay_ms = 15000;
    c->traces_forward_protocol = "http/protobuf";
    c->symbolize_budget_ms = 2000;
    c->symbols_retry_ms = 300000;
    c->debuginfod_timeout_ms = 30000;
    c->debuginfo_max_bytes = (size_t)2 << 30;
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

static const opt *find_opt(const char *name, size_t len)
{
    for (size_t k = 0; k < NOPTS; k++)
        if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0)
            return &opts[k];
    return NULL;
}

/* SPANPROF_ + the name in capitals with _ for - (invariant 2). */
static void env_name(const opt *o, char *out, size_t cap)
{
    int n = snprintf(out, cap, "SPANPROF_%s", o->name);
    for (int i = 9; i < n && (size_t)i < cap; i++)
        out[i] =
            out[i] == '-' ? '_' : (char)(out[i] >= 'a' && out[i] <= 'z' ? out[i] - 32 : out[i]);
}

/* Invariant 5: values copied from the environment and the file, never freed (the configuration
 * points into them for the life of the process; reachable from here, so leak checkers agree). */
struct kept {
    struct kept *next;
    char s[];
};
static struct kept *kept_values;

static const char *keep(const char *s)
{
    size_t n = strlen(s);
    struct kept *k = malloc(sizeof *k + n + 1);
    if (!k)
        return NULL;
    memcpy(k->s, s, n + 1);
    k->next = kept_values;
    kept_values = k;
    return k->s;
}

/* 1, 0, or -1 when s is not a boolean: true/false as YAML writes them, and the usual on/off
 * spellings of environment variables. */
static int parse_bool(const char *s)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Sets o's field from its text. who names the source in a refusal ("flag --workers",
 * "environment SPANPROF_WORKERS", "/etc/spanprof.yaml:3:10: key \"workers\""); copy: the text
 * does not outlive this call. */
static int set_value(app_config *c, const opt *o, const char *val, const char *who, int copy,
                     sp_err *err)
{
    char *field = (char *)c + o->off;
    switch (o->type) {
    case T_STR:
        if (copy && !(val = keep(val)))
            return sp_fail(err, SP_EINVAL, "%s: out of memory", who);
        *(const char **)field = val;
        return 0;
    case T_SIZE:
        if (parse_size(val, (size_t *)field))
            return sp_fail(err, SP_EINVAL, "%s: \"%.100s\" is not a size (e.g. 1048576, 64MiB)",
                           who, val);
        return 0;
    case T_INT: {
        char *end;
        long v = strtol(val, &end, 10);
        if (*end || end == val || v < 1 || v > 100000)
            return sp_fail(err, SP_EINVAL, "%s: \"%.100s\" is not a positive integer", who, val);
        *(int *)field = (int)v;
        return 0;
    }
    case T_DURATION:
        if (parse_duration(val, (int64_t *)field))
            return sp_fail(err, SP_EINVAL,
                           "%s: \"%.100s\" is not a duration (e.g. 500ms, 10s, 168h)", who, val);
        return 0;
    case T_FLAG: {
        int b = parse_bool(val);
        if (b < 0)
            return sp_fail(err, SP_EINVAL, "%s: \"%.100s\" is not true or false", who, val);
        *(int *)field = b;
        return 0;
    }
    }
    return sp_fail(err, SP_EINVAL, "%s: unknown type", who);
}

/* One parse: the configuration being filled, and where each setting's value came from. */
typedef struct {
    app_config *c;
    char from[NOPTS][160]; /* " (from SPANPROF_X)", " (from F:3 key \"x\")"; "" = flag, default */
} parse_ctx;

/* The origin of a setting for a message about it (invariant 3). */
static const char *from(const parse_ctx *p, const char *name)
{
    const opt *o = find_opt(name, strlen(name));
    return o ? p->from[o - opts] : "";
}

void app_config_usage(FILE *out)
{
    fprintf(
        out,
        "usage: spanprof [flags]\n       spanprof query <command> [flags]   (the terminal client: "
        "spanprof query --help)\n\n"
        "Receives OTLP traces and profiles and Pyroscope pushes, correlates spans with\n"
        "profile samples, stores them and serves the Pyroscope query API.\n\n"
        "Precedence: each setting below comes from the first of these that sets it:\n"
        "  1. its flag:                   --retention 72h  (or --retention=72h)\n"
        "  2. its environment variable:   SPANPROF_RETENTION=72h  (SPANPROF_, then the name\n"
        "                                 in capitals with _ for -)\n"
        "  3. the YAML file named by --config FILE or $SPANPROF_CONFIG:  retention: 72h\n"
        "     (keys are the flag names, with - or _; nested maps join their keys with -, so\n"
        "     \"tls: {cert: F, key: F}\" sets tls-cert and tls-key)\n"
        "  4. its default, shown below.\n"
        "Sizes take k, M or G suffixes (64MiB); durations ms, s, m, h or d (10s; a bare number\n"
        "is milliseconds); on/off settings take true or false (--multitenancy-required=false).\n"
        "An unknown flag or key, a bad value or an unreadable file stops start-up (exit 2)\n"
        "naming it.\n\nflags:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const opt *o = &opts[i];
        char left[64], var[96];
        snprintf(left, sizeof left, "--%s%s", o->name, o->type == T_FLAG ? "" : " V");
        fprintf(out, "  %-28s %s", left, o->help);
        env_name(o, var, sizeof var);
        if (o->type == T_FLAG && !(not_from(o) & NOT_ENV))
            fprintf(out, " (default false, $%s)", var);
        else if (!(not_from(o) & NOT_ENV))
            fprintf(out, " (default \"%s\", $%s)", o->def, var);
        fputc('\n', out);
    }
}

/* ---- the YAML file ----------------------------------------------------------------------------
 */

enum {
    FILE_MAX_BYTES = 1 << 20, /* a settings file is a few KiB; anything near this is a mistake */
    /* Maps nested in maps; a name of five words can be split over at most four, and a key
     * that continues no setting's name is refused where it stands, so this is a backstop. */
    FILE_MAX_DEPTH = 8,
};

typedef struct {
    parse_ctx *p;
    yaml_parser_t yp;
    const char *path;   /* as given, for messages */
    const char *buf;    /* the file's bytes (a reader error gives only an offset) */
    int line[NOPTS];    /* 1-based line where the file set each setting; 0 = not set */
    char last_key[160]; /* the last key read, to place a syntax error */
    sp_err *err;
} yreader;

/* A refusal about the file: "<path>:<line>:<column>: <what>". */
static int file_fail(yreader *r, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int file_fail(yreader *r, yaml_mark_t m, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sp_fail(r->err, SP_EINVAL, "%.200s:%zu:%zu: %s", r->path, m.line + 1, m.column + 1,
                   what);
}

static int next_event(yreader *r, yaml_event_t *e)
{
    if (yaml_parser_parse(&r->yp, e))
        return 0;
    yaml_mark_t m = r->yp.problem_mark;
    if (r->yp.error == YAML_READER_ERROR) { /* encoding: libyaml knows only the byte offset */
        m = (yaml_mark_t){0};
        for (size_t i = 0; i < r->yp.problem_offset && r->buf[i]; i++) {
            m.column++;
            if (r->buf[i] == '\n') {
                m.line++;
                m.column = 0;
            }
        }
    }
    const char *problem = r->yp.problem ? r->yp.problem : "out of memory";
    const char *ctx = r->yp.context;
    if (r->last_key[0])
        return file_fail(r, m, "not valid YAML: %s%s%s (after key \"%s\")", ctx ? ctx : "",
                         ctx ? ", " : "", problem, r->last_key);
    return file_fail(r, m, "not valid YAML: %s%s%s", ctx ? ctx : "", ctx ? ", " : "", problem);
}

/* A plain ~, null or empty scalar: YAML's null. */
static int is_null(const yaml_event_t *e)
{
    const char *v = (const char *)e->data.scalar.value;
    return e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
            !strcmp(v, "NULL"));
}

static const char *event_kind(yaml_event_type_t t)
{
    return t == YAML_SEQUENCE_START_EVENT  ? "a list"
           : t == YAML_MAPPING_START_EVENT ? "a map"
           : t == YAML_ALIAS_EVENT         ? "an alias"
                                           : "that";
}

/* Some setting's name starts with prefix + "-": a nested map's key may continue it. */
static int is_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t k = 0; k < NOPTS; k++)
        if (!(not_from(&opts[k]) & NOT_FILE) && strncmp(opts[k].name, prefix, n) == 0 &&
            opts[k].name[n] == '-')
            return 1;
    return 0;
}

static int set_from_file(yreader *r, const opt *o, const char *shown, yaml_mark_t km,
                         const yaml_event_t *v)
{
    const char *val = (const char *)v->data.scalar.value;
    if (is_null(v))
        return file_fail(r, km, "key \"%s\" has no value", shown);
    if (strlen(val) != v->data.scalar.length)
        return file_fail(r, v->start_mark, "key \"%s\": the value holds a NUL character", shown);
    /* An alias (min-span-duration) sets the same field as its twin: once for both. */
    for (size_t j = 0; j < NOPTS; j++)
        if (opts[j].off == o->off && r->line[j])
            return file_fail(r, km, "key \"%s\" is set twice (first on line %d)", shown,
                             r->line[j]);
    size_t k = (size_t)(o - opts);
    r->line[k] = (int)km.line + 1;
    char who[400];
    snprintf(who, sizeof who, "%.200s:%zu:%zu: key \"%s\"", r->path, v->start_mark.line + 1,
             v->start_mark.column + 1, shown);
    if (set_value(r->p->c, o, val, who, 1, r->err))
        return SP_EINVAL;
    snprintf(r->p->from[k], sizeof r->p->from[k], " (from %.80s:%d key \"%.40s\")", r->path,
             r->line[k], shown);
    return 0;
}

static int walk_map(yreader *r, const char *name, const char *shown, int depth);

/* The value of key (name: the setting's name so far; shown: the key as written, dotted). */
static int take_value(yreader *r, const char *name, const char *shown, yaml_mark_t km,
                      const yaml_event_t *v, int depth)
{
    const opt *o = find_opt(name, strlen(name));
    if (o && !strcmp(o->name, "config"))
        return file_fail(r, km,
                         "key \"%s\": a config file cannot name another (use --config or "
                         "SPANPROF_CONFIG)",
                         shown);
    if (o && (not_from(o) & NOT_FILE))
        o = NULL;
    if (v->type == YAML_ALIAS_EVENT)
        return file_fail(r, v->start_mark, "key \"%s\": aliases (*name) are not supported", shown);
    if (!o && !(v->type == YAML_MAPPING_START_EVENT && is_prefix(name)))
        return file_fail(r, km, "unknown key \"%s\" (the keys are the flag names: see --help)",
                         shown);
    if (v->type == YAML_SCALAR_EVENT)
        return set_from_file(r, o, shown, km, v);
    if (o)
        return file_fail(r, v->start_mark, "key \"%s\" takes one value, not %s", shown,
                         event_kind(v->type));
    if (depth + 1 >= FILE_MAX_DEPTH)
        return file_fail(r, v->start_mark, "key \"%s\": maps nested deeper than %d levels", shown,
                         FILE_MAX_DEPTH);
    return walk_map(r, name, shown, depth + 1);
}

/* A key as a setting's name continued: _ and . are -, letters, digits and - kept; 0, or -1 for
 * anything else (then it cannot be a setting's name). shown gets it as written, made printable. */
static int key_name(const char *key, size_t len, const char *pname, const char *pshown, char *name,
                    char *shown, size_t cap)
{
    snprintf(shown, cap, "%s%s%.*s", pshown, *pshown ? "." : "", (int)(len > 60 ? 60 : len), key);
    for (char *s = shown; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || (unsigned char)*s >= 0x7f)
            *s = '?';
    int n = snprintf(name, cap, "%s%s", pname, *pname ? "-" : "");
    if (len == 0 || len > 60 || strlen(key) != len || (size_t)n + len >= cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = key[i];
        if (ch == '_' || ch == '.')
            ch = '-';
        else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return -1;
        name[n++] = ch;
    }
    name[n] = 0;
    return 0;
}

/* The keys of one map up to its end (depth 0 = the top level); a nested map's keys continue its
 * key's name ("tls: {cert: F}" is tls-cert). */
static int walk_map(yreader *r, const char *name, const char *shown, int depth)
{
    for (;;) {
        yaml_event_t k, v;
        if (next_event(r, &k))
            return SP_EINVAL;
        if (k.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&k);
            return 0;
        }
        if (k.type != YAML_SCALAR_EVENT) {
            int rc = file_fail(r, k.start_mark, "a key must be a setting's name, not %s",
                               event_kind(k.type));
            yaml_event_delete(&k);
            return rc;
        }
        char kname[160], kshown[160];
        int bad = key_name((const char *)k.data.scalar.value, k.data.scalar.length, name, shown,
                           kname, kshown, sizeof kname);
        yaml_mark_t km = k.start_mark;
        yaml_event_delete(&k);
        if (bad)
            return file_fail(r, km, "unknown key \"%s\" (the keys are the flag names: see --help)",
                             kshown);
        snprintf(r->last_key, sizeof r->last_key, "%s", kshown);
        if (next_event(r, &v))
            return SP_EINVAL;
        int rc = take_value(r, kname, kshown, km, &v, depth);
        yaml_event_delete(&v);
        if (rc)
            return rc;
    }
}

/* The document: one map of settings, or nothing at all (an empty file, only comments). */
static int walk_document(yreader *r)
{
    int docs = 0, rc = 0;
    for (int done = 0; !done && !rc;) {
        yaml_event_t e;
        if (next_event(r, &e))
            return SP_EINVAL;
        switch (e.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = file_fail(r, e.start_mark, "a second document (---): keep one");
            break;
        case YAML_MAPPING_START_EVENT:
            rc = walk_map(r, "", "", 0);
            break;
        case YAML_SCALAR_EVENT:
            if (is_null(&e))
                break;
            /* fall through */
        case YAML_SEQUENCE_START_EVENT:
        case YAML_ALIAS_EVENT:
            rc = file_fail(r, e.start_mark, "the file must be a map of settings (key: value)");
            break;
        default:
            break;
        }
        yaml_event_delete(&e);
    }
    return rc;
}

/* The file's bytes, at most FILE_MAX_BYTES, NUL-terminated (malloc'ed). */
static int read_file(const char *path, const char *how, char **out, size_t *len, sp_err *err)
{
    FILE *f = fopen(path, "rb");
    int e = f ? 0 : errno;
    struct stat st;
    if (f && fstat(fileno(f), &st) != 0)
        e = errno;
    else if (f && S_ISDIR(st.st_mode))
        e = EISDIR;
    if (e) {
        if (f)
            fclose(f);
        return sp_fail(err, SP_EINVAL, "cannot read the config file %.200s (%s): %s", path, how,
                       strerror(e));
    }
    char *buf = malloc((size_t)FILE_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, (size_t)FILE_MAX_BYTES + 1, f) : 0;
    e = !buf ? ENOMEM : ferror(f) ? errno : 0;
    fclose(f);
    if (e || n > FILE_MAX_BYTES) {
        free(buf);
        if (e)
            return sp_fail(err, SP_EINVAL, "cannot read the config file %.200s (%s): %s", path, how,
                           strerror(e));
        return sp_fail(err, SP_EINVAL, "the config file %.200s (%s) is larger than %d KiB", path,
                       how, FILE_MAX_BYTES >> 10);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* Lowest precedence but the defaults: the YAML file (how: "--config" or "SPANPROF_CONFIG"). */
static int load_file(parse_ctx *p, const char *path, const char *how, sp_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    if (read_file(path, how, &buf, &len, err))
        return SP_EINVAL;
    yreader r = {.p = p, .path = path, .buf = buf, .err = err};
    if (!yaml_parser_initialize(&r.yp)) {
        free(buf);
        return sp_fail(err, SP_EINVAL, "the config file %.200s: out of memory", path);
    }
    yaml_parser_set_input_string(&r.yp, (const unsigned char *)buf, len);
    int rc = walk_document(&r);
    yaml_parser_delete(&r.yp);
    free(buf);
    return rc;
}

/* ---- the environment, the command line, the checks ------------------------------------------- */

static int load_env(parse_ctx *p, sp_err *err)
{
    for (size_t k = 0; k < NOPTS; k++) {
        const opt *o = &opts[k];
        char var[96], who[128];
        if (not_from(o) & NOT_ENV)
            continue;
        env_name(o, var, sizeof var);
        const char *v = getenv(var);
        if (!v)
            continue;
        snprintf(who, sizeof who, "environment %s", var);
        if (set_value(p->c, o, v, who, 1, err))
            return SP_EINVAL;
        snprintf(p->from[k], sizeof p->from[k], " (from %s)", var);
    }
    return 0;
}

/* argv[*i] as a flag: its table entry and its value (the next argument unless written
 * --name=value; "true" for an on/off flag written bare). Advances *i past what it read. */
static int next_flag(int argc, char **argv, int *i, const opt **out, const char **val, sp_err *err)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0)
        return sp_fail(err, SP_EINVAL, "unexpected argument \"%s\" (flags start with --)", a);
    a += 2;
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    const opt *o = find_opt(a, nlen);
    if (!o)
        return sp_fail(err, SP_EINVAL, "unknown flag --%.*s (see --help)", (int)nlen, a);
    if (eq)
        *val = eq + 1;
    else if (o->type == T_FLAG)
        *val = "true";
    else if (*i + 1 < argc)
        *val = argv[++*i];
    else
        return sp_fail(err, SP_EINVAL, "flag --%s needs a value", o->name);
    ++*i;
    *out = o;
    return 0;
}

/* Empty strings mean "not set" for the optional settings (so a flag or a variable can unset
 * what the file set). */
static void drop_empty(app_config *c)
{
    const char **optional[] = {&c->config_file,
                               &c->srv.tls_cert,
                               &c->srv.tls_key,
                               &c->srv.tls_client_ca,
                               &c->store,
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
}

static int one_of(const char *v, const char *a, const char *b)
{
    return strcmp(v, a) == 0 || strcmp(v, b) == 0;
}

/* The settings together (each message names the first setting and, when it did not come from a
 * flag, where it came from). */
static int check(const parse_ctx *p, sp_err *err)
{
    app_config *c = p->c;
    drop_empty(c);
    if (!c->store)
        c->store = c->pyroscope_url ? "sqlite,pyroscope" : "sqlite";
    if (!one_of(c->store, "sqlite", "pyroscope") &&
        !one_of(c->store, "sqlite,pyroscope", "pyroscope,sqlite"))
        return sp_fail(err, SP_EINVAL,
                       "--store must be sqlite, pyroscope or sqlite,pyroscope, not \"%.100s\"%s",
                       c->store, from(p, "store"));
    if (strstr(c->store, "pyroscope") && !c->pyroscope_url)
        return sp_fail(err, SP_EINVAL, "--store=%s needs --pyroscope-url%s", c->store,
                       from(p, "store"));
    if (!strstr(c->store, "pyroscope") && c->pyroscope_url)
        return sp_fail(err, SP_EINVAL,
                       "--pyroscope-url needs --store=pyroscope or sqlite,pyroscope%s",
                       from(p, "pyroscope-url"));
    if (c->pyroscope_basic_auth_password_file && !c->pyroscope_basic_auth_user)
        return sp_fail(err, SP_EINVAL,
                       "--pyroscope-basic-auth-password-file needs --pyroscope-basic-auth-user%s",
                       from(p, "pyroscope-basic-auth-password-file"));
    if (!one_of(c->traces_forward_protocol, "http/protobuf", "grpc"))
        return sp_fail(err, SP_EINVAL,
                       "--traces-forward-protocol must be http/protobuf or grpc, not \"%.100s\"%s",
                       c->traces_forward_protocol, from(p, "traces-forward-protocol"));
    if (c->traces_forward_to && strncmp(c->traces_forward_to, "http://", 7) != 0 &&
        strncmp(c->traces_forward_to, "https://", 8) != 0)
        return sp_fail(err, SP_EINVAL, "--traces-forward-to must start with http:// or https://%s",
                       from(p, "traces-forward-to"));
    if (!!c->srv.tls_cert != !!c->srv.tls_key)
        return sp_fail(err, SP_EINVAL, "--tls-cert and --tls-key go together%s",
                       from(p, c->srv.tls_cert ? "tls-cert" : "tls-key"));
    /* Credentials inside a URL would reach the logs with it: they belong in the secret files. */
    if (url_has_userinfo(c->pyroscope_url))
        return sp_fail(err, SP_EINVAL,
                       "--pyroscope-url must not carry user:password@; use "
                       "--pyroscope-basic-auth-user and --pyroscope-basic-auth-password-file%s",
                       from(p, "pyroscope-url"));
    if (url_has_userinfo(c->traces_forward_to))
        return sp_fail(err, SP_EINVAL,
                       "--traces-forward-to must not carry user:password@; use the bearer token "
                       "file flag%s",
                       from(p, "traces-forward-to"));
    if (c->srv.tls_client_ca && !c->srv.tls_cert)
        return sp_fail(err, SP_EINVAL, "--tls-client-ca needs --tls-cert and --tls-key%s",
                       from(p, "tls-client-ca"));
    if (!one_of(c->durability, "normal", "full"))
        return sp_fail(err, SP_EINVAL, "--durability must be normal or full, not \"%.100s\"%s",
                       c->durability, from(p, "durability"));
    if (!one_of(c->correlate_threadless, "unique", "off"))
        return sp_fail(err, SP_EINVAL,
                       "--correlate-threadless must be unique or off, not \"%.100s\"%s",
                       c->correlate_threadless, from(p, "correlate-threadless"));
    if (!one_of(c->log_level, "debug", "info") && !one_of(c->log_level, "warn", "error"))
        return sp_fail(err, SP_EINVAL,
                       "--log-level must be debug, info, warn or error, not \"%.100s\"%s",
                       c->log_level, from(p, "log-level"));
    if (!one_of(c->log_format, "logfmt", "json"))
        return sp_fail(err, SP_EINVAL, "--log-format must be logfmt or json, not \"%.100s\"%s",
                       c->log_format, from(p, "log-format"));
    if (c->correlation_window_ms <= 0)
        return sp_fail(err, SP_EINVAL, "--correlation-window must be more than 0%s",
                       from(p, "correlation-window"));
    if (c->srv.max_recv_msg_size < 1024)
        return sp_fail(err, SP_EINVAL, "--max-recv-msg-size must be at least 1024 bytes%s",
                       from(p, "max-recv-msg-size"));
    return 0;
}

int app_config_parse(app_config *c, int argc, char **argv, sp_err *err)
{
    parse_ctx *p = calloc(1, sizeof *p);
    if (!p)
        return sp_fail(err, SP_EINVAL, "out of memory reading the configuration");
    p->c = c;
    /* Pass 1: the command line is well formed; it may name the file or ask for help. */
    const char *file = NULL, *how = "--config";
    int help = 0, rc = 0;
    for (int i = 1; i < argc && !rc;) {
        const opt *o;
        const char *val;
        rc = next_flag(argc, argv, &i, &o, &val, err);
        if (!rc && !strcmp(o->name, "config"))
            file = val;
        if (!rc && (!strcmp(o->name, "help") || !strcmp(o->name, "version")))
            help |= parse_bool(val) == 1;
    }
    /* Invariant 1: file, then environment, then flags, each over the one before. --help reads
     * neither: it describes the defaults, and a broken file must not hide it. */
    if (!rc && !help) {
        if (!file && (file = getenv("SPANPROF_CONFIG")))
            how = "SPANPROF_CONFIG";
        if (file && *file)
            rc = load_file(p, file, how, err);
        if (!rc)
            rc = load_env(p, err);
    }
    for (int i = 1; i < argc && !rc;) {
        const opt *o;
        const char *val;
        char who[96];
        rc = next_flag(argc, argv, &i, &o, &val, err);
        if (rc)
            break;
        snprintf(who, sizeof who, "flag --%s", o->name);
        rc = set_value(c, o, val, who, 0, err);
        p->from[o - opts][0] = 0;
    }
    if (!rc)
        rc = check(p, err);
    free(p);
    return rc ? SP_EINVAL : 0;
}

/* ---- the effective configuration as YAML (GET /config) --------------------------------------- */

/* A duration as the parser reads it back: the largest unit that divides it. */
static int put_duration(sp_buf *out, int64_t ms)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms && ms % units[i].ms == 0)
            return sp_buf_printf(out, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
    return sp_buf_printf(out, "%lldms", (long long)ms);
}

/* A YAML double-quoted scalar (backslash escapes for quotes, backslashes and control bytes). */
static int put_quoted(sp_buf *out, const char *s)
{
    int rc = sp_buf_append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++)
        rc = *p == '"' || *p == '\\'   ? sp_buf_printf(out, "\\%c", *p)
             : *p < 0x20 || *p == 0x7f ? sp_buf_printf(out, "\\x%02x", *p)
                                       : sp_buf_append(out, p, 1);
    return rc ? rc : sp_buf_append(out, "\"", 1);
}

static int put_setting(const app_config *c, const opt *o, sp_buf *out)
{
    const char *field = (const char *)c + o->off;
    if (o->type == T_STR && !*(const char *const *)field)
        return sp_buf_printf(out, "# %s: not set\n", o->name);
    int rc = sp_buf_printf(out, "%s: ", o->name);
    switch (o->type) {
    case T_STR:
        rc |= put_quoted(out, *(const char *const *)field);
        break;
    case T_SIZE:
        rc |= sp_buf_printf(out, "%zu", *(const size_t *)field);
        break;
    case T_INT:
        rc |= sp_buf_printf(out, "%d", *(const int *)field);
        break;
    case T_DURATION:
        rc |= put_duration(out, *(const int64_t *)field);
        break;
    case T_FLAG:
        rc |= sp_buf_printf(out, "%s", *(const int *)field ? "true" : "false");
        break;
    }
    return rc | sp_buf_append(out, "\n", 1);
}

int app_config_write_yaml(const app_config *c, sp_buf *out)
{
    int rc = sp_buf_printf(out, "# spanprof's effective configuration; spanprof --config FILE "
                                "reads it back.\n");
    for (size_t k = 0; k < NOPTS && !rc; k++) {
        const opt *o = &opts[k];
        /* Not settings of a file; min-span-duration is the alias of span-min-duration. */
        if ((not_from(o) & NOT_FILE) || !strcmp(o->name, "min-span-duration"))
            continue;
        rc = put_setting(c, o, out);
    }
    /* Invariant 3: the token variables are secrets themselves; only their presence is told. */
    static const char *const secrets[] = {"SPANPROF_INGEST_AUTH_TOKEN", "SPANPROF_QUERY_AUTH_TOKEN",
                                          "SPANPROF_ADMIN_AUTH_TOKEN"};
    for (size_t i = 0; i < 3 && !rc; i++)
        if (getenv(secrets[i]))
            rc = sp_buf_printf(out, "# $%s is set (a token: not shown)\n", secrets[i]);
    return rc ? SP_ENOMEM : 0;
}
