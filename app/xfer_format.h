/* The export directory's text files (spanprof admin export / import, app/admin_xfer.c): the
 * manifest, a tenant's series list and its span list. Pure: text in, structs out (and back), no
 * I/O. Parsed with jansson, every field checked; errors name the field and, for the manifest, the
 * line, column and byte of a JSON syntax error. The callers prefix the file name and line.
 *
 * Layout of an export directory DIR (format version 1):
 *   DIR/manifest.json                      xfer_manifest; written last: no manifest, no export
 *   DIR/tenants/<tenant>/series.jsonl       one xfer_series per line:
 * {"id","type","period","labels"} DIR/tenants/<tenant>/spans.jsonl        one span per line
 * (xfer_span_write) DIR/tenants/<tenant>/profiles/<series id>/<bucket start, unix s>.pb.gz gzipped
 * pprof of the series' values in that 10 s bucket (no sample labels)
 *   DIR/tenants/<tenant>/span-profiles/<series id>/<hour start, unix s>.pb.gz
 *        gzipped pprof of what the exported spans got attached in that hour, one sample per
 *        (span, stack) labelled span_id and trace_id
 * pprof locations carry the frame type in spanprof's Location extension (wire/pprof_write.h).
 */
#ifndef APP_XFER_FORMAT_H
#define APP_XFER_FORMAT_H

#include "../common/arena.h"
#include "../common/buf.h"
#include "../common/err.h"
#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

#define XFER_FORMAT      "spanprof-export"
#define XFER_VERSION     1
#define XFER_MAX_TENANTS 100000
#define XFER_MAX_EXTRAS  (64 * 1024) /* a span line's extras blob (OTLP_SPAN_EXTRAS_CAP) */

typedef struct xfer_tenant {
    const char *name;
    uint64_t series, profiles, spans, span_profiles; /* what the export wrote for it */
} xfer_tenant;

typedef struct xfer_manifest {
    int version;
    const char *id;               /* 32 hex digits, unique per export */
    const char *spanprof_version; /* of the exporting binary */
    const char *created;          /* RFC 3339, UTC */
    int64_t from_ns, until_ns;    /* the range: buckets and spans starting in [from, until) */
    int64_t bucket_ns;            /* 10 s: the store's bucket width */
    xfer_tenant *tenants;
    size_t ntenants;
} xfer_manifest;

typedef struct xfer_series {
    int64_t id; /* the directory name under profiles/ and span-profiles/ */
    const char *type_id;
    int64_t period;
    sp_kv *labels; /* sorted by name, unique, __name__ included */
    uint32_t nlabels;
} xfer_series;

/* Whether name may be a tenant directory: Cortex's tenant id rules (1..150 bytes of letters,
 * digits and ! - _ . * ' ( ), not "." or ".."), so it is one path segment. */
int xfer_tenant_name_ok(const char *name);

/* Appends the manifest as JSON (one object, indented) to out. SP_ENOMEM / SP_ETOOBIG from out. */
int xfer_manifest_write(const xfer_manifest *m, sp_buf *out);
/* Parses a manifest; strings and arrays in the arena. SP_EINVAL names what is wrong: JSON syntax
 * (line, column, byte), a missing or mistyped field, an unknown format or a newer version, a bad
 * id or tenant name, an empty range; SP_ENOMEM when the arena runs out. */
int xfer_manifest_parse(const char *text, size_t len, sp_arena *a, xfer_manifest *out, sp_err *err);

/* One line (with its '\n') of series.jsonl / spans.jsonl appended to out. A span line carries
 * "extras" (its extras blob in hex) when the span has one; lines without it import as before. */
int xfer_series_write(const xfer_series *s, sp_buf *out);
int xfer_span_write(const sp_span *sp, sp_buf *out);
/* One line (without its '\n'). SP_EINVAL names the field ("labels: not sorted", "span_id: 15 hex
 * digits, want 16"); SP_ENOMEM when the arena runs out. */
int xfer_series_parse(const char *line, size_t len, sp_arena *a, xfer_series *out, sp_err *err);
int xfer_span_parse(const char *line, size_t len, sp_arena *a, sp_span *out, sp_err *err);

#endif
