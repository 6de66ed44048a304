/* libFuzzer target: the command line (app/config.c). The input split on NUL bytes is argv[1..]
 * (at most 64 arguments). Invariants: app_config_parse() returns 0 or SP_EINVAL; a refusal says
 * which argument is wrong: a flag app_config_usage() lists ("--name"), or, for an unknown flag or
 * a stray argument, the argument itself; an accepted command line gives a configuration the rest
 * of the program can rely on (the store, protocol, durability and threadless values are among the
 * allowed ones, TLS cert and key go together, sizes and windows are in range).
 */
#include "app/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

static char *flags[128];
static size_t nflags;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    /* The flag names, as --help lists them ("  --name ..."). */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f);
    app_config_usage(f);
    CHECK(fclose(f) == 0);
    for (char *l = text; l && *l && nflags < 128;) {
        char *nl = strchr(l, '\n');
        char *s = l;
        while (*s == ' ')
            s++;
        if (strncmp(s, "--", 2) == 0) {
            size_t k = strcspn(s + 2, " =\n\t");
            flags[nflags++] = strndup(s + 2, k);
        }
        l = nl ? nl + 1 : NULL;
    }
    free(text);
    CHECK(nflags >= 20);
    return 0;
}

/* "--name" appears in msg and is followed by something that cannot continue a flag name. */
static int names_flag(const char *msg)
{
    for (size_t i = 0; i < nflags; i++) {
        size_t k = strlen(flags[i]);
        for (const char *m = strstr(msg, "--"); m; m = strstr(m + 1, "--"))
            if (strncmp(m + 2, flags[i], k) == 0) {
                char c = m[2 + k];
                if (!(c >= 'a' && c <= 'z') && c != '-')
                    return 1;
            }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[66];
    int argc = 0;
    argv[argc++] = "spanprof";
    for (size_t at = 0; at <= size && argc < 65;) {
        argv[argc++] = buf + at;
        at += strlen(buf + at) + 1;
    }
    if (size == 0)
        argc = 1;
    argv[argc] = NULL;

    app_config c;
    app_config_defaults(&c);
    sp_err err = {0};
    int rc = app_config_parse(&c, argc, argv, &err);
    if (rc) {
        CHECK(rc == SP_EINVAL && err.code == SP_EINVAL && err.msg[0]);
        int named = names_flag(err.msg);
        if (!named) {
            /* an unknown flag or a stray argument is named as written (up to '=' for a flag) */
            for (int i = 1; i < argc && !named; i++) {
                int flag = strncmp(argv[i], "--", 2) == 0;
                size_t k = flag ? strcspn(argv[i], "=") : strlen(argv[i]);
                /* (a long one may be cut short by the message's size) */
                char want[128];
                if (k > 100)
                    snprintf(want, sizeof want, "%.100s", argv[i]);
                else
                    snprintf(want, sizeof want, flag ? "%.*s" : "\"%.*s\"", (int)k, argv[i]);
                named = strstr(err.msg, want) != NULL;
            }
        }
        CHECK(named);
    } else {
        CHECK(c.store &&
              (!strcmp(c.store, "sqlite") || !strcmp(c.store, "pyroscope") ||
               !strcmp(c.store, "sqlite,pyroscope") || !strcmp(c.store, "pyroscope,sqlite")));
        CHECK(!strstr(c.store, "pyroscope") == !c.pyroscope_url);
        CHECK(!strcmp(c.traces_forward_protocol, "http/protobuf") ||
              !strcmp(c.traces_forward_protocol, "grpc"));
        CHECK(!!c.srv.tls_cert == !!c.srv.tls_key);
        CHECK(!c.srv.tls_client_ca || c.srv.tls_cert);
        CHECK(!strcmp(c.durability, "normal") || !strcmp(c.durability, "full"));
        CHECK(!strcmp(c.correlate_threadless, "unique") || !strcmp(c.correlate_threadless, "off"));
        CHECK(c.correlation_window_ms > 0 && c.srv.max_recv_msg_size >= 1024);
        CHECK(c.srv.workers >= 1 && c.srv.max_concurrent_streams >= 1);
        CHECK(c.srv.shutdown_timeout_ms >= 0 && c.srv.idle_timeout_ms >= 0 &&
              c.srv.header_timeout_ms >= 0 && c.retention_ms >= 0 && c.min_span_ms >= 0 &&
              c.forward_batch_interval_ms >= 0);
    }
    free(buf);
    return 0;
}
