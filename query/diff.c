/* Diff flame graphs (see diff.h). */
#include "diff.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

static const char other_name[] = "other";

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "diff too large for the query budget; lower max_nodes");
}

/* One side's tree, truncated as Pyroscope's tree answer for that side would be. */
static int side_tree(const store_stacks *s, int64_t max_nodes, sp_arena *a, query_tree *t,
                     sp_err *err)
{
    int rc = query_tree_build(s, a, t, err);
    if (rc || max_nodes <= 0 || query_tree_min_value(t, max_nodes, a) == 0)
        return rc;
    store_stacks cut;
    if ((rc = query_tree_stacks(t, max_nodes, a, &cut, err)))
        return rc;
    return query_tree_build(&cut, a, t, err);
}

/* ---- the aligned tree ---- */

typedef struct cnode {
    const char *name;
    int64_t lt, ls, rt, rs; /* total and self, left and right */
    uint32_t kids, nkids;   /* children: consecutive nodes, in name order */
    uint32_t lsrc, rsrc;    /* the node of each side it stands for (NONE: absent there) */
} cnode;

typedef struct aligned {
    cnode *v;
    uint32_t n, cap;
} aligned;

static void set_side(cnode *c, const query_tree *t, uint32_t src, int left)
{
    int64_t tot = src == NONE ? 0 : t->nodes[src].total,
            self = src == NONE ? 0 : t->nodes[src].self;
    if (left) {
        c->lsrc = src;
        c->lt = tot;
        c->ls = self;
    } else {
        c->rsrc = src;
        c->rt = tot;
        c->rs = self;
    }
}

static const char *name_of(const query_tree *t, uint32_t node)
{
    return t->names[t->nodes[node].name];
}

/* Appends node i's children: both sides' children merged by name. */
static void expand(aligned *al, uint32_t i, const query_tree *l, const query_tree *r)
{
    const query_node *ln = al->v[i].lsrc == NONE ? NULL : &l->nodes[al->v[i].lsrc];
    const query_node *rn = al->v[i].rsrc == NONE ? NULL : &r->nodes[al->v[i].rsrc];
    uint32_t nl = ln ? ln->nkids : 0, nr = rn ? rn->nkids : 0, a = 0, b = 0;
    al->v[i].kids = al->n;
    while (a < nl || b < nr) {
        uint32_t lk = a < nl ? l->kids[ln->kids + a] : NONE;
        uint32_t rk = b < nr ? r->kids[rn->kids + b] : NONE;
        int c = lk == NONE ? 1 : rk == NONE ? -1 : strcmp(name_of(l, lk), name_of(r, rk));
        cnode *k = &al->v[al->n++];
        memset(k, 0, sizeof *k);
        k->name = c <= 0 ? name_of(l, lk) : name_of(r, rk);
        set_side(k, l, c <= 0 ? lk : NONE, 1);
        set_side(k, r, c >= 0 ? rk : NONE, 0);
        a += c <= 0;
        b += c >= 0;
    }
    al->v[i].nkids = al->n - al->v[i].kids;
}

static int align(const query_tree *l, const query_tree *r, sp_arena *a, aligned *out)
{
    out->cap = l->nnodes + r->nnodes + 1;
    out->v = sp_arena_alloc(a, out->cap * sizeof *out->v);
    if (!out->v)
        return SP_ETOOBIG;
    memset(&out->v[0], 0, sizeof out->v[0]);
    out->v[0].name = "";
    set_side(&out->v[0], l, l->nnodes ? 0 : NONE, 1);
    set_side(&out->v[0], r, r->nnodes ? 0 : NONE, 0);
    out->n = 1;
    for (uint32_t i = 0; i < out->n; i++) /* breadth first: children are appended */
        expand(out, i, l, r);
    return 0;
}

static int desc_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x > y ? -1 : x < y;
}

/* The max_nodes-th largest max(left, right) total, root included; 0 = keep everything. */
static int64_t min_value(const aligned *al, int64_t max_nodes, sp_arena *a)
{
    if (max_nodes < 1 || al->n <= (uint64_t)max_nodes)
        return 0;
    int64_t *v = sp_arena_alloc(a, al->n * sizeof *v);
    if (!v)
        return 0;
    for (uint32_t i = 0; i < al->n; i++)
        v[i] = al->v[i].lt > al->v[i].rt ? al->v[i].lt : al->v[i].rt;
    qsort(v, al->n, sizeof *v, desc_cmp);
    return v[max_nodes - 1];
}

/* ---- names: index in first-met order ---- */

typedef struct names {
    const char **v;
    uint32_t n;
    uint32_t *slot; /* open addressing: index + 1, 0 = empty */
    uint32_t mask;
} names;

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static uint32_t name_index(names *nm, const char *s)
{
    for (uint32_t h = name_hash(s) & nm->mask;; h = (h + 1) & nm->mask) {
        if (!nm->slot[h]) {
            nm->v[nm->n] = nm->n == 0 ? "total" : s;
            nm->slot[h] = ++nm->n;
            return nm->n - 1;
        }
        uint32_t i = nm->slot[h] - 1;
        if (strcmp(i == 0 ? "" : nm->v[i], s) == 0)
            return i;
    }
}

/* ---- the walk ---- */

typedef struct item {
    uint32_t node; /* NONE: a synthetic "other" with the values below */
    uint32_t level;
    int64_t xl, xr, ol, or_;
} item;

typedef struct entry {
    uint32_t level;
    int64_t v[7];
} entry;

static entry *visit(const aligned *al, int64_t minv, sp_arena *a, names *nm, size_t *nentries,
                    int64_t *max_self)
{
    size_t cap = 2 * (size_t)al->n + 2;
    item *st = sp_arena_alloc(a, cap * sizeof *st);
    entry *out = sp_arena_alloc(a, cap * sizeof *out);
    if (!st || !out)
        return NULL;
    size_t sp = 0, n = 0;
    st[sp++] = (item){0, 0, 0, 0, 0, 0};
    while (sp) {
        item it = st[--sp];
        const cnode *c = it.node == NONE ? NULL : &al->v[it.node];
        int64_t lt = c ? c->lt : it.ol, ls = c ? c->ls : it.ol;
        int64_t rt = c ? c->rt : it.or_, rs = c ? c->rs : it.or_;
        const char *name = c ? c->name : other_name;
        if (!(lt >= minv || rt >= minv || strcmp(name, other_name) == 0))
            continue;
        entry *e = &out[n++];
        e->level = it.level;
        int64_t v[7] = {it.xl, lt, ls, it.xr, rt, rs, name_index(nm, name)};
        memcpy(e->v, v, sizeof v);
        *max_self = ls > *max_self ? ls : *max_self;
        *max_self = rs > *max_self ? rs : *max_self;
        if (!c)
            continue;
        int64_t xl = it.xl + ls, xr = it.xr + rs, cut_l = 0, cut_r = 0;
        for (uint32_t k = 0; k < c->nkids; k++) {
            const cnode *kid = &al->v[c->kids + k];
            if (kid->lt >= minv || kid->rt >= minv) {
                st[sp++] = (item){c->kids + k, it.level + 1, xl, xr, 0, 0};
                xl += kid->lt;
                xr += kid->rt;
            } else {
                cut_l += kid->lt;
                cut_r += kid->rt;
            }
        }
        if (cut_l || cut_r)
            st[sp++] = (item){NONE, it.level + 1, xl, xr, cut_l, cut_r};
    }
    *nentries = n;
    return out;
}

/* Levels left to right (the walk met each level right to left), offsets delta-encoded. */
static int lay_out(const entry *e, size_t n, sp_arena *a, query_flamegraph_diff *out)
{
    uint32_t nlevels = 0;
    for (size_t i = 0; i < n; i++)
        nlevels = e[i].level + 1 > nlevels ? e[i].level + 1 : nlevels;
    out->nlevels = nlevels;
    out->nvalues = sp_arena_calloc(a, nlevels + 1, sizeof *out->nvalues);
    out->levels = sp_arena_calloc(a, nlevels + 1, sizeof *out->levels);
    if (!out->nvalues || !out->levels)
        return SP_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        out->nvalues[e[i].level] += 7;
    for (uint32_t d = 0; d < nlevels; d++)
        if (!(out->levels[d] = sp_arena_alloc(a, (out->nvalues[d] + 1) * sizeof(int64_t))))
            return SP_ETOOBIG;
    size_t *fill = sp_arena_calloc(a, nlevels + 1, sizeof *fill);
    if (!fill)
        return SP_ETOOBIG;
    for (size_t i = n; i-- > 0;) {
        int64_t *dst = out->levels[e[i].level] + fill[e[i].level];
        memcpy(dst, e[i].v, sizeof e[i].v);
        fill[e[i].level] += 7;
    }
    for (uint32_t d = 0; d < nlevels; d++)
        for (int col = 0; col <= 3; col += 3) {
            int64_t prev = 0;
            for (size_t i = (size_t)col; i < out->nvalues[d]; i += 7) {
                out->levels[d][i] -= prev;
                prev += out->levels[d][i] + out->levels[d][i + 1];
            }
        }
    return 0;
}

int query_flamegraph_diff_build(const store_stacks *left, const store_stacks *right,
                                int64_t max_nodes, sp_arena *a, query_flamegraph_diff *out,
                                sp_err *err)
{
    memset(out, 0, sizeof *out);
    query_tree l, r;
    int rc = side_tree(left, max_nodes, a, &l, err);
    if (!rc)
        rc = side_tree(right, max_nodes, a, &r, err);
    if (rc)
        return rc;
    aligned al;
    if (align(&l, &r, a, &al))
        return nomem(err);
    int64_t minv = min_value(&al, max_nodes, a);
    names nm = {0};
    uint32_t slots = 16;
    while (slots < 2 * al.n + 4)
        slots *= 2;
    nm.mask = slots - 1;
    nm.slot = sp_arena_calloc(a, slots, sizeof *nm.slot);
    nm.v = sp_arena_alloc(a, (2 * (size_t)al.n + 2) * sizeof *nm.v);
    if (!nm.slot || !nm.v)
        return nomem(err);
    size_t n;
    entry *e = visit(&al, minv, a, &nm, &n, &out->max_self);
    if (!e || lay_out(e, n, a, out))
        return nomem(err);
    out->names = nm.v;
    out->nnames = nm.n;
    out->left_ticks = al.v[0].lt;
    out->right_ticks = al.v[0].rt;
    out->total = out->left_ticks + out->right_ticks;
    return 0;
}
