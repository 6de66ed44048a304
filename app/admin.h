/* The server's own endpoints: GET /ready (readiness: 200 once the store is open, 503 before),
 * GET /healthz (liveness: 200 while the event loop answers), GET /metrics (Prometheus text) and
 * GET /config (the effective configuration as YAML). All are INLINE routes: they never wait for
 * the ingest queue. /ready, /healthz and /metrics are open (server/auth.c); /config is a query
 * path. */
#ifndef SRV_ADMIN_H
#define SRV_ADMIN_H

#include "../server/router.h"

/* ready() returns non-zero when the process can take writes; NULL means always ready. */
int srv_admin_register(srv_router *r, int (*ready)(void *ud), void *ud);
/* GET /config answers yaml (len bytes), which must outlive the server. Returns the router's
 * error. */
int srv_admin_register_config(srv_router *r, const char *yaml, size_t len);

/* POST /api/v1/admin/backup?to=<file name> (the admin auth class): an online copy of
 * <data_dir>/spanprof.db to <backup_dir>/<file name> with store_backup() while ingest goes on;
 * answers {"file","bytes","pages","duration_ms"}. Only a plain file name is accepted, never a
 * path (400); an existing file is never overwritten (400); without backup_dir every request is
 * 404 naming --backup-dir. Counted in spanprof_admin_backups_total,
 * spanprof_admin_backup_failures_total, spanprof_admin_backup_last_duration_ms and _last_bytes. */
int srv_admin_register_backup(srv_router *r, const char *data_dir, const char *backup_dir);

/* spanprof admin <command> (argv[0] is "admin"): check, vacuum, backup of a data directory
 * (admin_cli.c). Returns the exit status: 0 done, 1 damage found or failed, 2 usage error. */
int admin_main(int argc, char **argv);

/* spanprof admin export (admin_xfer.c): [from_ns, until_ns) of data_dir, every tenant or only
 * `tenant`, into the new or empty directory out (layout in xfer_format.h). Returns 0, SP_EINVAL
 * (out not empty, bad range), SP_ENOTFOUND (no database, no such tenant), SP_EUNAVAIL (cannot
 * read the store or write out), SP_ENOMEM; err says which file. */
int admin_export(const char *data_dir, const char *out, const char *tenant, int64_t from_ns,
                 int64_t until_ns, sp_err *err);
/* spanprof admin import: the export in dir into data_dir (created when missing). Checks every
 * file before storing anything; takes the data directory's lock (SP_EUNAVAIL while a server runs
 * there); SP_EINVAL for a damaged export (err names the file, line or byte) or one imported into
 * data_dir before (never stored twice); SP_ENOTFOUND without a manifest. */
int admin_import(const char *data_dir, const char *dir, sp_err *err);

#endif
