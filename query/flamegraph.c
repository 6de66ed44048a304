/* Call tree, truncation and Pyroscope's flame graph and tree encodings (see flamegraph.h). */
#include "flamegraph.h"

#include <stdlib.h>
#include <string.h>

#define OTHER_NODE UINT32_MAX
static const char other_name[] = "other";

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG,
                   "flame graph too large for the query budget; narrow the query or lower "
                   "max_nodes");
}

/* ---- the call tree --------------------------------------------------------------------------- */

static uint64_t slot_hash(uint32_t parent, uint32_t name)
{
    uint64_t k = (uint64_t)parent << 32 | name;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static int kid_cmp(const void *a, const void *b, void *ud)
{
    const query_tree *t = ud;
    return strcmp(t->names[t->nodes[*(const uint32_t *)a].name],
                  t->names[t->nodes[*(const uint32_t *)b].name]);
}

int query_tree_build(const store_stacks *s, sp_arena *a, query_tree *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    out->names = (const char *const *)s->names;
    out->nnames = s->nnames;
    uint64_t bound = 1;
    for (size_t i = 0; i < s->nstacks; i++) {
        if (s->stacks[i].value > 0)
            bound += s->stacks[i].nframes;
        if (bound >= UINT32_MAX / 4)
            return nomem(err);
    }
    uint64_t cap = 16;
    while (cap < 2 * bound)
        cap *= 2;
    query_node *nodes = sp_arena_calloc(a, bound, sizeof *nodes);
    uint32_t *parent = sp_arena_calloc(a, bound, sizeof *parent);
    uint32_t *slots = sp_arena_calloc(a, cap, sizeof *slots); /* node index, 0 = empty */
    if (!nodes || !parent || !slots)
        return nomem(err);
    uint32_t n = 1;
    for (size_t i = 0; i < s->nstacks; i++) {
        const store_stack *st = &s->stacks[i];
        if (st->value <= 0 || st->nframes == 0)
            continue;
        uint32_t cur = 0;
        nodes[0].total += st->value;
        for (uint32_t k = st->nframes; k-- > 0;) {
            uint32_t name = st->frames[k];
            if (name >= s->nnames)
                return sp_fail(err, SP_EINTERNAL, "stack %zu: frame name %u out of range (%u)", i,
                               name, s->nnames);
            uint64_t h = slot_hash(cur, name) & (cap - 1);
            while (slots[h] && !(parent[slots[h]] == cur && nodes[slots[h]].name == name))
                h = (h + 1) & (cap - 1);
            if (!slots[h]) {
                slots[h] = n;
                parent[n] = cur;
                nodes[n].name = name;
                n++;
            }
            cur = slots[h];
            nodes[cur].total += st->value;
        }
        nodes[cur].self += st->value;
    }
    /* Children lists: counted, laid out by parent, then put in name order. */
    uint32_t *kids = sp_arena_calloc(a, n, sizeof *kids);
    if (!kids)
        return nomem(err);
    for (uint32_t i = 1; i < n; i++)
        nodes[parent[i]].nkids++;
    uint32_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        nodes[i].kids = off;
        off += nodes[i].nkids;
        nodes[i].nkids = 0;
    }
    for (uint32_t i = 1; i < n; i++) {
        query_node *p = &nodes[parent[i]];
        kids[p->kids + p->nkids++] = i;
    }
    out->nodes = nodes;
    out->nnodes = n;
    out->kids = kids;
    for (uint32_t i = 0; i < n; i++)
        if (nodes[i].nkids > 1)
            qsort_r(kids + nodes[i].kids, nodes[i].nkids, sizeof *kids, kid_cmp, out);
    return 0;
}

static int desc_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x > y ? -1 : x < y;
}

int64_t query_tree_min_value(const query_tree *t, int64_t max_nodes, sp_arena *a)
{
    uint32_t size = t->nnodes ? t->nnodes - 1 : 0; /* the root is not a node of the graph */
    if (max_nodes < 1 || size <= (uint64_t)max_nodes)
        return 0;
    int64_t *totals = sp_arena_alloc(a, size * sizeof *totals);
    if (!totals) /* cannot rank: cut nothing rather than fail */
        return 0;
    for (uint32_t i = 0; i < size; i++)
        totals[i] = t->nodes[i + 1].total;
    qsort(totals, size, sizeof *totals, desc_cmp);
    return totals[max_nodes - 1];
}

static int is_other(const query_tree *t, uint32_t node)
{
    return strcmp(t->names[t->nodes[node].name], other_name) == 0;
}

/* ---- flame graph ----------------------------------------------------------------------------- */

typedef struct fg_item {
    uint32_t node; /* OTHER_NODE for a synthetic "other" */
    uint32_t level;
    int64_t x, value; /* value: the synthetic node's self and total */
} fg_item;

typedef struct fg_entry {
    uint32_t level, name;
    int64_t x, total, self;
} fg_entry;

int query_flamegraph_build(const query_tree *t, int64_t max_nodes, sp_arena *a,
                           query_flamegraph *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    if (!t->nnodes)
        return sp_fail(err, SP_EINTERNAL, "flame graph of a tree that was not built");
    int64_t minv = query_tree_min_value(t, max_nodes, a);
    uint32_t n = t->nnodes;
    size_t cap = 2 * (size_t)n + 1;
    fg_item *stack = sp_arena_alloc(a, cap * sizeof *stack);
    fg_entry *ent = sp_arena_alloc(a, cap * sizeof *ent);
    int32_t *name_out = sp_arena_alloc(a, (t->nnames + 1) * sizeof *name_out);
    out->names = sp_arena_alloc(a, (t->nnames + 2) * sizeof *out->names);
    if (!stack || !ent || !name_out || !out->names)
        return nomem(err);
    /* Names are unique strings: a frame called "total" shares the root's index, one called
     * "other" the synthetic node's. */
    int32_t root_out = 0, other_out = -1, *other_slot = &other_out;
    for (uint32_t i = 0; i < t->nnames; i++) {
        name_out[i] = strcmp(t->names[i], "total") == 0 ? 0 : -1;
        if (strcmp(t->names[i], other_name) == 0)
            other_slot = &name_out[i];
    }
    out->names[0] = "total";
    out->nnames = 1;
    size_t sp = 0, ne = 0;
    uint32_t nlevels = 0;
    stack[sp++] = (fg_item){0, 0, 0, 0};
    while (sp) {
        fg_item it = stack[--sp];
        int64_t self, total;
        int32_t *slot;
        const char *name;
        if (it.node == OTHER_NODE) {
            self = total = it.value;
            slot = other_slot;
            name = other_name;
        } else {
            const query_node *nd = &t->nodes[it.node];
            self = nd->self;
            total = nd->total;
            slot = it.node ? &name_out[nd->name] : &root_out;
            name = it.node ? t->names[nd->name] : "total";
        }
        if (*slot < 0) {
            *slot = (int32_t)out->nnames;
            out->names[out->nnames++] = name;
        }
        if (self > out->max_self)
            out->max_self = self;
        ent[ne++] = (fg_entry){it.level, (uint32_t)*slot, it.x, total, self};
        if (it.level + 1 > nlevels)
            nlevels = it.level + 1;
        if (it.node == OTHER_NODE)
            continue;
        const query_node *nd = &t->nodes[it.node];
        int64_t x = it.x + nd->self, other = 0;
        for (uint32_t k = 0; k < nd->nkids; k++) {
            uint32_t kid = t->kids[nd->kids + k];
            if (t->nodes[kid].total >= minv && !is_other(t, kid)) {
                stack[sp++] = (fg_item){kid, it.level + 1, x, 0};
                x += t->nodes[kid].total;
            } else {
                other += t->nodes[kid].total;
            }
        }
        if (other)
            stack[sp++] = (fg_item){OTHER_NODE, it.level + 1, x, other};
    }
    out->total = t->nodes[0].total;

    /* Levels: a depth-first walk meets each level right to left; lay them out left to right. */
    out->nlevels = nlevels;
    out->levels = sp_arena_calloc(a, nlevels, sizeof *out->levels);
    out->nvalues = sp_arena_calloc(a, nlevels, sizeof *out->nvalues);
    if (!out->levels || !out->nvalues)
        return nomem(err);
    for (size_t i = 0; i < ne; i++)
        out->nvalues[ent[i].level] += 4;
    for (uint32_t d = 0; d < nlevels; d++) {
        out->levels[d] = sp_arena_alloc(a, out->nvalues[d] * sizeof **out->levels);
        if (!out->levels[d])
            return nomem(err);
        out->nvalues[d] = 0;
    }
    for (size_t i = ne; i-- > 0;) {
        const fg_entry *e = &ent[i];
        int64_t *v = out->levels[e->level] + out->nvalues[e->level];
        v[0] = e->x;
        v[1] = e->total;
        v[2] = e->self;
        v[3] = e->name;
        out->nvalues[e->level] += 4;
    }
    /* Offsets relative to the end of the previous node on the level. */
    for (uint32_t d = 0; d < nlevels; d++) {
        int64_t end = 0, *v = out->levels[d];
        for (size_t i = 0; i < out->nvalues[d]; i += 4) {
            int64_t x = v[i];
            v[i] = x - end;
            end = x + v[i + 1];
        }
    }
    return 0;
}

/* ---- truncated children (tree bytes and pprof) ----------------------------------------------- */

/* The children a truncated node keeps, in name order, with the cut total merged into "other":
 * into an existing child "other" (extra) or a synthetic one (OTHER_NODE). Returns the count. */
typedef struct kept {
    uint32_t node;
    int64_t extra; /* added to the node's self (for OTHER_NODE: its whole value) */
} kept;

static uint32_t keep_kids(const query_tree *t, const query_node *nd, int64_t minv, kept *out)
{
    uint32_t n = 0;
    int64_t other = 0;
    int32_t existing = -1;
    for (uint32_t k = 0; k < nd->nkids; k++) {
        uint32_t kid = t->kids[nd->kids + k];
        if (t->nodes[kid].total >= minv || is_other(t, kid)) {
            if (is_other(t, kid))
                existing = (int32_t)n;
            out[n++] = (kept){kid, 0};
        } else {
            other += t->nodes[kid].total;
        }
    }
    if (!other)
        return n;
    if (existing >= 0) {
        out[existing].extra = other;
        return n;
    }
    uint32_t pos = 0;
    while (pos < n && strcmp(t->names[t->nodes[out[pos].node].name], other_name) < 0)
        pos++;
    memmove(out + pos + 1, out + pos, (n - pos) * sizeof *out);
    out[pos] = (kept){OTHER_NODE, other};
    return n + 1;
}

int query_tree_marshal(const query_tree *t, int64_t max_nodes, sp_arena *a, sp_buf *out,
                       sp_err *err)
{
    if (t->nnodes <= 1)
        return 0;
    int64_t minv = query_tree_min_value(t, max_nodes, a);
    size_t cap = 2 * (size_t)t->nnodes + 2;
    kept *stack = sp_arena_alloc(a, cap * sizeof *stack);
    kept *tmp = sp_arena_alloc(a, (t->nnodes + 1) * sizeof *tmp);
    if (!stack || !tmp)
        return nomem(err);
    size_t sp = 0;
    int rc = 0;
    stack[sp++] = (kept){0, 0};
    while (sp && !rc) {
        kept it = stack[--sp];
        if (it.node == OTHER_NODE) {
            rc = sp_buf_put_varint(out, sizeof other_name - 1) |
                 sp_buf_append(out, other_name, sizeof other_name - 1) |
                 sp_buf_put_varint(out, (uint64_t)it.extra) | sp_buf_put_varint(out, 0);
            continue;
        }
        const query_node *nd = &t->nodes[it.node];
        const char *name = it.node ? t->names[nd->name] : "";
        size_t len = strlen(name);
        rc = sp_buf_put_varint(out, len) | (len ? sp_buf_append(out, name, len) : 0) |
             sp_buf_put_varint(out, (uint64_t)(nd->self + it.extra));
        uint32_t n = keep_kids(t, nd, minv, tmp);
        rc |= sp_buf_put_varint(out, n);
        for (uint32_t k = 0; k < n; k++)
            stack[sp++] = tmp[k];
    }
    return rc ? sp_fail(err, rc, "tree too large to encode") : 0;
}

typedef struct walk_item {
    kept k;
    uint32_t depth;
} walk_item;

int query_tree_stacks(const query_tree *t, int64_t max_nodes, sp_arena *a, store_stacks *out,
                      sp_err *err)
{
    memset(out, 0, sizeof *out);
    uint32_t other = t->nnames;
    for (uint32_t i = 0; i < t->nnames; i++)
        if (strcmp(t->names[i], other_name) == 0)
            other = i;
    out->names = sp_arena_alloc(a, (t->nnames + 1) * sizeof *out->names);
    if (!out->names)
        return nomem(err);
    if (t->nnames)
        memcpy(out->names, t->names, t->nnames * sizeof *out->names);
    out->nnames = t->nnames;
    if (other == t->nnames)
        out->names[out->nnames++] = other_name;
    if (t->nnodes <= 1)
        return 0;
    int64_t minv = query_tree_min_value(t, max_nodes, a);
    size_t cap = 2 * (size_t)t->nnodes + 2;
    walk_item *stack = sp_arena_alloc(a, cap * sizeof *stack);
    kept *tmp = sp_arena_alloc(a, (t->nnodes + 1) * sizeof *tmp);
    uint32_t *path = sp_arena_alloc(a, (t->nnodes + 1) * sizeof *path);
    out->stacks = sp_arena_alloc(a, cap * sizeof *out->stacks);
    if (!stack || !tmp || !path || !out->stacks)
        return nomem(err);
    size_t sp = 0;
    stack[sp++] = (walk_item){{0, 0}, 0};
    while (sp) {
        walk_item it = stack[--sp];
        int64_t self = it.k.extra;
        const query_node *nd = it.k.node == OTHER_NODE ? NULL : &t->nodes[it.k.node];
        if (it.depth)
            path[it.depth] = nd ? nd->name : other;
        if (nd)
            self += nd->self;
        if (self > 0 && it.depth) {
            uint32_t *frames = sp_arena_alloc(a, it.depth * sizeof *frames);
            if (!frames)
                return nomem(err);
            for (uint32_t d = 0; d < it.depth; d++)
                frames[d] = path[it.depth - d]; /* leaf first */
            out->stacks[out->nstacks++] = (store_stack){frames, it.depth, self, NULL};
            out->total += self;
        }
        if (!nd)
            continue;
        uint32_t n = keep_kids(t, nd, minv, tmp);
        for (uint32_t k = n; k-- > 0;)
            stack[sp++] = (walk_item){tmp[k], it.depth + 1};
    }
    return 0;
}
