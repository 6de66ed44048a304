/* Flame graphs from merged stacks, the way Pyroscope builds them (pkg/model: Tree, NewFlameGraph,
 * MarshalTruncate), so Grafana draws spanprof's answers exactly like Pyroscope's.
 *
 * The call tree: stacks (store_stacks, leaf first) are inserted root first; children are kept in
 * byte order of their names; a node's total is its self plus its children's totals.
 *
 * Truncation to max_nodes: when the tree has more nodes than max_nodes, the cut value is the
 * max_nodes-th largest node total; a child whose total is below the cut is not shown on its own
 * but added to a synthetic child "other" (self = total = the sum of what was cut) placed after the
 * kept children. max_nodes <= 0 means no truncation here (the callers map 0 to the default 8192).
 *
 * Flame graph encoding (querier.v1.FlameGraph): names[0] = "total" (the root), other names in the
 * order a depth-first walk meets them (children pushed in name order, popped from the end); one
 * level per depth with 4 numbers per node, left to right: x offset relative to the end of the
 * previous node on the level (the first node's is absolute), total, self, name index. A node's
 * self occupies the left of its bar, its children follow in name order.
 *
 * Called by query/querier.c and query/render.c on worker threads; all memory from the caller's
 * arena. Never touches the store.
 */
#ifndef QUERY_FLAMEGRAPH_H
#define QUERY_FLAMEGRAPH_H

#include "../common/arena.h"
#include "../common/buf.h"
#include "../common/err.h"
#include "../storage-adapter/store.h"

#include <stdint.h>

#define QUERY_MAX_NODES_DEFAULT 8192
#define QUERY_MAX_NODES_MAX     (1 << 20)

typedef struct query_node {
    uint32_t name;        /* index into query_tree.names; the root's is unused */
    uint32_t kids, nkids; /* children: query_tree.kids[kids .. kids+nkids), in name order */
    int64_t self, total;
} query_node;

typedef struct query_tree {
    const char *const *names; /* the stacks' names */
    uint32_t nnames;
    query_node *nodes; /* nodes[0] is the root (total = sum of all stacks) */
    uint32_t nnodes;
    uint32_t *kids;
} query_tree;

/* Builds the call tree of s (stacks with a value <= 0 or no frames are skipped, as Pyroscope
 * does). */
int query_tree_build(const store_stacks *s, sp_arena *a, query_tree *out, sp_err *err);

/* The smallest total a node needs to be kept: 0 when nothing is cut. */
int64_t query_tree_min_value(const query_tree *t, int64_t max_nodes, sp_arena *a);

typedef struct query_flamegraph {
    const char **names;
    uint32_t nnames;
    int64_t **levels; /* levels[d] has nvalues[d] numbers (4 per node) */
    size_t *nvalues;
    uint32_t nlevels;
    int64_t total, max_self;
} query_flamegraph;

int query_flamegraph_build(const query_tree *t, int64_t max_nodes, sp_arena *a,
                           query_flamegraph *out, sp_err *err);

/* Pyroscope's tree bytes (PROFILE_FORMAT_TREE): depth first from a virtual root (empty name,
 * self 0), each node uvarint(len(name)) name uvarint(self) uvarint(number of children), children
 * popped from the end of their name-ordered list; truncated children merge into "other". An
 * empty tree is zero bytes. */
int query_tree_marshal(const query_tree *t, int64_t max_nodes, sp_arena *a, sp_buf *out,
                       sp_err *err);

/* The truncated tree flattened back into merged stacks (one per node with self > 0, plus one per
 * truncated group ending in "other"), for pprof export. */
int query_tree_stacks(const query_tree *t, int64_t max_nodes, sp_arena *a, store_stacks *out,
                      sp_err *err);

#endif
