/* The symbolizer wired into the program (app/symbols.h). */
#include "symbols.h"

#include "../common/log.h"
#include "../common/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* store_symbolizer.lookup: the symbolizer's frames as the store's. */
static int lookup(void *ctx, const char *build_id, uint64_t address, int64_t deadline_ns,
                  sp_arena *a, store_sym_frame **frames, size_t *n)
{
    sym_frame *f = NULL;
    size_t nf = 0;
    int rc = sym_lookup(ctx, build_id, address, deadline_ns, a, &f, &nf);
    *frames = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    if (rc != SYM_FOUND)
        return rc == SYM_NONE ? STORE_SYM_NONE : STORE_SYM_LATER;
    store_sym_frame *out = sp_arena_calloc(a, nf, sizeof *out);
    if (!out)
        return SP_ENOMEM;
    for (size_t i = 0; i < nf; i++)
        out[i] = (store_sym_frame){f[i].function, f[i].file, f[i].line, f[i].start_line};
    *frames = out;
    *n = nf;
    return STORE_SYM_FOUND;
}

static int wait_downloads(void *ctx, int64_t deadline_ns, uint64_t since)
{
    return sym_wait(ctx, deadline_ns, since);
}

static uint64_t arrivals(void *ctx)
{
    return sym_arrivals(ctx);
}

int app_symbols_open(app_symbols *s, const app_config *cfg, sp_err *err)
{
    memset(s, 0, sizeof *s);
    char upload[4096], cache[4096];
    snprintf(upload, sizeof upload, "%s/debuginfo", cfg->data_dir);
    snprintf(cache, sizeof cache, "%s/debuginfod-cache", cfg->data_dir);
    const char *urls = cfg->debuginfod_urls;
    if (urls && strcmp(urls, "none") == 0)
        urls = "";
    sym_options o = {
        .symbols_dir = cfg->symbols_dir,
        .upload_dir = upload,
        .debuginfod_urls = urls,
        .cache_dir = cache,
        .fetch_timeout_ns = cfg->debuginfod_timeout_ms * 1000000,
        .max_file_bytes = cfg->debuginfo_max_bytes,
        .retry_ns = cfg->symbols_retry_ms > 0 ? cfg->symbols_retry_ms * 1000000 : 1,
        .fetcher_program = "/proc/self/exe", /* main() dispatches SYM_FETCHER_COMMAND */
    };
    int rc = sym_open(&s->sym, &o, err);
    if (rc)
        return rc;
    s->seam = (store_symbolizer){
        .lookup = lookup,
        .ctx = s->sym,
        .budget_ns = cfg->symbolize_budget_ms > 0 ? cfg->symbolize_budget_ms * 1000000 : 1,
        .wait = wait_downloads,
        .arrivals = arrivals,
    };
    const char *env = getenv("DEBUGINFOD_URLS");
    sp_info("msg=\"native frames named from debug files\" symbols_dir=\"%s\" uploads=\"%s\" "
            "debuginfod=\"%s\"",
            cfg->symbols_dir ? cfg->symbols_dir : "", upload, env ? env : "");
    return 0;
}

void app_symbols_close(app_symbols *s)
{
    sym_close(s->sym);
    s->sym = NULL;
}

void app_symbols_metrics(app_symbols *s)
{
    if (!s->sym)
        return;
    sym_stats st;
    sym_stats_get(s->sym, &st);
    sp_metrics_gauge_set("symbolizer_elf_lookups_total", (int64_t)st.elf_lookups);
    sp_metrics_gauge_set("symbolizer_fetches_total{result=\"found\"}", (int64_t)st.fetch_found);
    sp_metrics_gauge_set("symbolizer_fetches_total{result=\"not_found\"}",
                         (int64_t)st.fetch_not_found);
    sp_metrics_gauge_set("symbolizer_fetches_total{result=\"failed\"}", (int64_t)st.fetch_failed);
    sp_metrics_gauge_set("symbolizer_fetches_total{result=\"timeout\"}", (int64_t)st.fetch_timeout);
    sp_metrics_gauge_set("symbolizer_fetch_processes_started_total", (int64_t)st.fetchers_started);
    sp_metrics_gauge_set("symbolizer_local_files_found_total", (int64_t)st.local_found);
    sp_metrics_gauge_set("symbolizer_files_open", (int64_t)st.files_open);
    sp_metrics_gauge_set("symbolizer_build_ids", (int64_t)st.build_ids);
}

static void upload(srv_request *req, srv_response *resp, void *ud)
{
    app_symbols *s = ud;
    const char *prefix = "/api/v1/debuginfo/";
    const char *id = req->path + strlen(prefix);
    sp_err err = {0};
    if (req->body_too_big) {
        sp_fail(&err, SP_ETOOBIG, "the debug file is larger than --max-recv-msg-size");
        srv_response_error(resp, req, &err);
        return;
    }
    int rc = sym_add_file(s->sym, id, req->body.data, req->body.len, &err);
    if (rc) {
        srv_response_error(resp, req, &err);
        return;
    }
    sp_info("msg=\"debug file kept\" build_id=\"%s\" bytes=%zu peer=\"%s\"", id, req->body.len,
            req->peer);
    static const char ok[] = "{}";
    srv_response_send(resp, 200, "application/json", ok, sizeof ok - 1);
}

int app_symbols_register(srv_router *r, app_symbols *s)
{
    return srv_router_add(r, "PUT", "/api/v1/debuginfo/*", SRV_WORKER, "debuginfo_upload", upload,
                          s);
}
