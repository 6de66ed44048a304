/* The symbolizer in the program: opened from the flags, handed to the store as its
 * store_symbolizer (names native frames at read time), its counters in /metrics, and the upload
 * route for debug files.
 *
 * Threading: app_symbols_open() runs before any other thread starts (it sets libdebuginfod's
 * environment); the rest may run on any thread. Errors: app_symbols_open() returns the
 * symbolizer's (SP_EINVAL naming the flag's directory, SP_ENOMEM).
 */
#ifndef APP_SYMBOLS_H
#define APP_SYMBOLS_H

#include "../server/router.h"
#include "../storage-adapter/store.h"
#include "../symbolizer/symbolizer.h"
#include "config.h"

typedef struct app_symbols {
    symbolizer *sym;
    store_symbolizer seam; /* for store_options.symbolizer */
} app_symbols;

/* Sources: --symbols-dir, <data-dir>/debuginfo (uploads), --debuginfod-urls or
 * $DEBUGINFOD_URLS (downloads cached under <data-dir>/debuginfod-cache). */
int app_symbols_open(app_symbols *s, const app_config *cfg, sp_err *err);
void app_symbols_close(app_symbols *s);

/* The counters as gauges (called from the metrics render hook). */
void app_symbols_metrics(app_symbols *s);

/* PUT /api/v1/debuginfo/{build_id}: the body is an ELF debug file with that GNU build id
 * (ingest credentials, server/auth.c). 200 when kept; 400 when it is not one; 413 past
 * --debuginfo-max-bytes. */
int app_symbols_register(srv_router *r, app_symbols *s);

#endif
