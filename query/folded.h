/* Merged stacks as "folded" text (Brendan Gregg's collapsed stacks, Pyroscope's `folded` ingest
 * format): one line per distinct stack, frames root first joined by ';', a space, the value.
 * Lines come sorted by their stack text, so the same profile always gives the same bytes. A
 * frame name's line breaks become spaces (one stack per line); a ';' inside a name cannot be told
 * apart from a separator, as in every folded file.
 *
 * Serves GET /api/v1/spans/{id}/profile?format=folded. Memory from the caller's arena.
 */
#ifndef QUERY_FOLDED_H
#define QUERY_FOLDED_H

#include "../common/arena.h"
#include "../common/buf.h"
#include "../common/err.h"
#include "../storage-adapter/store.h"

/* Appends the lines of s (stacks with a value <= 0 or no frames are left out) to out. */
int query_folded_encode(const store_stacks *s, sp_arena *a, sp_buf *out, sp_err *err);

#endif
