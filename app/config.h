/* Configuration of the one spanprof binary (the program's own room): flags, SPANPROF_*
 * environment variables and a YAML file (--config), read through one table of settings so the
 * three cannot drift apart.
 *
 * Precedence, highest first: flag, environment variable, config file, default. Every setting has
 * one name: the flag is --name, the variable SPANPROF_NAME (capitals, _ for -), the file key name
 * (with - or _; nested maps join their keys with -). --help prints every setting with its default
 * and its variable. The program hands each module its part: the transport gets cfg.srv, the
 * others options structs of their own.
 */
#ifndef APP_CONFIG_H
#define APP_CONFIG_H

#include "../common/buf.h"
#include "../common/err.h"
#include "../server/options.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

typedef struct app_config {
    srv_options srv;         /* the transport's part */
    const char *config_file; /* the YAML file read (--config, $SPANPROF_CONFIG), or NULL */
    const char *data_dir;
    const char *backup_dir; /* POST /api/v1/admin/backup writes here; NULL = off */
    const char *log_level;
    const char *log_format; /* "logfmt" or "json" */
    const char *durability; /* "normal" or "full" */
    int64_t retention_ms;   /* 0 = keep forever */
    int64_t min_span_ms;    /* spans shorter than this get no inferred samples */
    int64_t correlation_window_ms;
    size_t correlation_max_bytes;
    const char *correlate_threadless; /* "unique" or "off" */
    int64_t threadless_settle_ms;     /* rule 3 waits this long for concurrent spans; 0 = none */
    /* Remote write and trace forwarding (delivery/pusher.c, delivery/forward.c). */
    const char *store; /* "sqlite", "pyroscope" or "sqlite,pyroscope" */
    const char *pyroscope_url;
    const char *pyroscope_basic_auth_user, *pyroscope_basic_auth_password_file;
    const char *pyroscope_bearer_token_file, *pyroscope_ca_file;
    int64_t pyroscope_push_delay_ms; /* samples leave the hold this long after their bucket */
    int pyroscope_push_on_arrival;   /* 1: no hold (the spans known at arrival label samples) */
    size_t pyroscope_hold_max_bytes;
    const char *traces_forward_to;
    int64_t traces_forward_delay_ms;     /* forwarded exports wait this long before their spans are
                                          * marked and sent */
    const char *traces_forward_protocol; /* "http/protobuf" or "grpc" */
    const char *traces_forward_bearer_token_file, *traces_forward_ca_file;
    size_t outbox_max_bytes;
    int64_t forward_batch_interval_ms;
    /* Naming native frames (symbolizer/, app/symbols.c). */
    const char *symbols_dir;
    const char *debuginfod_urls; /* NULL = $DEBUGINFOD_URLS; "none" = no server */
    int64_t symbolize_budget_ms, symbols_retry_ms, debuginfod_timeout_ms;
    size_t debuginfo_max_bytes;
    int help, version;
} app_config;

void app_config_defaults(app_config *c);
/* Fills c (after app_config_defaults) from the config file, the environment and argv, in that
 * order, then checks the settings together. Returns 0, or SP_EINVAL (fatal: stop start-up) with
 * err naming the flag ("flag --workers: ..."), the variable ("environment SPANPROF_WORKERS: ...")
 * or the file, line and key ("/etc/spanprof.yaml:3:10: key \"workers\": ..."). With --help, the
 * file and the environment are not read. Values read from the file and the environment are kept
 * for the life of the process; argv must outlive c. Not thread-safe (start-up only). */
int app_config_parse(app_config *c, int argc, char **argv, sp_err *err);
void app_config_usage(FILE *out);
/* The effective settings as a YAML file in the keys --config reads (so the text can be fed back
 * with --config): every setting but config, help and version, one `name: value` line each,
 * sizes in bytes, durations with their unit; a setting that is not set is a comment. Secrets
 * never appear: the configuration holds only the paths of secret files, and the token
 * variables ($SPANPROF_INGEST_AUTH_TOKEN, $SPANPROF_QUERY_AUTH_TOKEN) are said to be set,
 * never shown. Returns 0, or SP_ENOMEM / SP_ETOOBIG from out. */
int app_config_write_yaml(const app_config *c, sp_buf *out);

#endif
