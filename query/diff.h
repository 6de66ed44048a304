/* Diff flame graphs (querier.v1.FlameGraphDiff, Pyroscope's pkg/model NewFlamegraphDiff), so
 * Grafana and the Profiles app draw spanprof's comparisons as they draw Pyroscope's.
 *
 * The two trees are aligned into one: below each node, the children of both sides merged by
 * name (byte order); a function only one side has gets a zero node on the other. Each node of
 * the aligned tree is written as 7 numbers, left to right within its level: x offset, total,
 * self of the left side, the same three of the right side, and the name index. Both offset
 * columns are delta-encoded per level (stored = x - end of the previous node of the level on
 * that side). names[0] = "total"; other names in the order a depth-first walk that visits the
 * last child first meets them. total = left + right; left_ticks, right_ticks = each side's total.
 *
 * Truncation to max_nodes: each side is first truncated like a single flame graph (as Pyroscope
 * asks each side for a truncated tree); then, when the aligned tree has more nodes than
 * max_nodes (its root included), a node is kept when either side's total reaches the
 * max_nodes-th largest of max(left, right) over the aligned tree, and the children cut below a
 * kept node become one "other" child per side.
 *
 * Called by query/querier_diff.c on worker threads; memory from the caller's arena.
 */
#ifndef QUERY_DIFF_H
#define QUERY_DIFF_H

#include "flamegraph.h"

typedef struct query_flamegraph_diff {
    const char **names;
    uint32_t nnames;
    int64_t **levels; /* levels[d] has nvalues[d] numbers (7 per node) */
    size_t *nvalues;
    uint32_t nlevels;
    int64_t total, max_self, left_ticks, right_ticks;
} query_flamegraph_diff;

/* SP_ETOOBIG when the arena's budget runs out. */
int query_flamegraph_diff_build(const store_stacks *left, const store_stacks *right,
                                int64_t max_nodes, sp_arena *a, query_flamegraph_diff *out,
                                sp_err *err);

#endif
