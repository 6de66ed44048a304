/* spanprof: the composition root. Parses flags, opens the data directory, wires the modules'
 * routes onto one router and runs the server until SIGTERM/SIGINT. */
#include "../common/log.h"
#include "../otlp/service.h"
#include "admin.h"
#include "config.h"
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int open_data_dir(const char *dir, sp_err *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sp_fail(err, SP_EUNAVAIL, "cannot create data directory %s: %s", dir,
                       strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return sp_fail(err, SP_EUNAVAIL, "data directory %s is not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return sp_fail(err, SP_EUNAVAIL, "data directory %s is not writable: %s", dir,
                       strerror(errno));
    return 0;
}

static int store_ready;

static int is_ready(void *ud)
{
    return store_ready;
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
    if (open_data_dir(cfg.data_dir, &err) != 0) {
        sp_error("msg=\"%s\"", err.msg);
        return 1;
    }

    srv_router *router = srv_router_new();
    otlp_config ocfg = {.max_recv_msg_size = cfg.max_recv_msg_size};
    if (!router || srv_admin_register(router, is_ready, NULL) != 0 ||
        otlp_register(router, &ocfg) != 0) {
        sp_error("msg=\"cannot register routes\"");
        return 1;
    }
    srv_server *server;
    if (srv_server_new(&server, &cfg, router, &err) != 0) {
        sp_error("msg=\"%s\"", err.msg);
        srv_router_free(router);
        return 1;
    }
    store_ready = 1;
    int rc = srv_server_run(server);
    srv_server_free(server);
    srv_router_free(router);
    sp_info("msg=\"stopped\"");
    return rc ? 1 : 0;
}
