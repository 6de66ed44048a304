/* Request parameters shared by the querier methods and the HTTP endpoints: profile type ids,
 * label selectors, span ids and times, each checked with an error message that names the
 * parameter and what is wrong with it.
 *
 * Called by query/querier.c and query/render.c; memory from the caller's arena.
 */
#ifndef QUERY_PARAMS_H
#define QUERY_PARAMS_H

#include "../common/arena.h"
#include "../common/err.h"
#include "../storage-adapter/store.h"

#include <stdint.h>

/* A profile type id split into its parts: <name>:<sample_type>:<sample_unit>:<period_type>:
 * <period_unit>, e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds. */
typedef struct query_type {
    const char *id; /* the five parts joined (a sixth part, Pyroscope's ":delta", dropped) */
    const char *name, *sample_type, *sample_unit, *period_type, *period_unit;
} query_type;

/* Splits id. With `strict`, fewer than five parts is SP_EINVAL naming `what` (Pyroscope's
 * "profile-type selection must be of the form ..."); without, missing parts are "". */
int query_type_parse(const char *id, const char *what, int strict, sp_arena *a, query_type *out,
                     sp_err *err);

/* Parses a label selector (empty or NULL = `{}`), errors prefixed with `what`. */
int query_selector_parse(const char *text, const char *what, sp_arena *a, store_selector *out,
                         sp_err *err);

/* Span ids: 16 hex digits each (upper or lower case). SP_EINVAL names the element. */
int query_span_ids_parse(char *const *hex, size_t n, const char *what, sp_arena *a,
                         uint8_t (**out)[8], sp_err *err);

/* Pyroscope request times (ms since epoch) to the store's [start_ns, end_ns): the range is
 * half-open, so adjacent ranges [a, b) and [b, c) never count the same observation (what the end
 * millisecond holds belongs to the next range); 0 or less = unbounded. Saturates instead of
 * overflowing. */
int64_t query_start_ns(int64_t start_ms);
int64_t query_end_ns(int64_t end_ms);

/* Pyroscope's HTTP times (from/until), as its attime package reads them: "now", "now-1h",
 * "now-1h30m", "-15min" (units ms, s/sec, m/min, h/hour, d/day, w/week, mon/month/M = 30 days,
 * y/year = 365 days, plurals too; spaces, '_' and ',' ignored), YYYYMMDD (midnight UTC), or a
 * unix time in seconds, milliseconds, microseconds or nanoseconds (told apart by size).
 * 0, or -1 when text is none of these. */
int query_time_parse(const char *text, int64_t now_ns, int64_t *out_ns);

/* A trace id (nbytes 16) or span id (8) written as 2 * nbytes hex digits, either case, not all
 * zero (W3C Trace Context). SP_EINVAL says what is wrong, naming `what` ("trace id"). */
int query_hex_id(const char *text, size_t nbytes, const char *what, uint8_t *out, sp_err *err);

/* id → lower-case hex, NUL-terminated (out holds 2 * nbytes + 1). */
void query_hex_encode(const uint8_t *id, size_t nbytes, char *out);

int64_t query_now_ns(void);

#endif
