/* query/flamegraph: Pyroscope's flame graph levels encoding, max_nodes truncation into "other",
 * totals, the tree bytes format and the truncated stacks used for pprof export.
 *
 * The expected levels are worked out by hand from Pyroscope's rules (reference/QUERY-API.md §4,
 * and the cases of Pyroscope's pkg/model/flamegraph_test.go). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* tests/CMakeLists.txt links the module libraries up to storage-adapter only, so the unit under
 * test is compiled in here. */
#include "query/flamegraph.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sp_arena *arena;

/* ---- building stacks from "a;b;c" text (root first, as people write them) -------------------- */

typedef struct fixture {
    const char *names[64];
    uint32_t nnames;
    store_stack stacks[64];
    uint32_t frames[64][16];
    store_stacks s;
} fixture;

static uint32_t name_of(fixture *f, const char *n, size_t len)
{
    for (uint32_t i = 0; i < f->nnames; i++)
        if (strlen(f->names[i]) == len && memcmp(f->names[i], n, len) == 0)
            return i;
    f->names[f->nnames] = sp_arena_strndup(arena, n, len);
    return f->nnames++;
}

/* Adds a stack written root first ("main;foo;bar"); the store gives them leaf first. */
static void add(fixture *f, const char *text, int64_t value)
{
    size_t i = f->s.nstacks;
    uint32_t tmp[16], n = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, ';');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        tmp[n++] = name_of(f, p, len);
        p += len + (e ? 1 : 0);
    }
    for (uint32_t k = 0; k < n; k++)
        f->frames[i][k] = tmp[n - 1 - k];
    f->stacks[i] = (store_stack){f->frames[i], n, value, NULL};
    f->s.nstacks++;
    f->s.total += value;
    f->s.stacks = f->stacks;
    f->s.names = f->names;
    f->s.nnames = f->nnames;
}

static query_flamegraph build(fixture *f, int64_t max_nodes)
{
    query_tree t;
    query_flamegraph fg = {0}; /* fail_msg() does not return, but clang cannot know */
    sp_err err = {0};
    if (query_tree_build(&f->s, arena, &t, &err) ||
        query_flamegraph_build(&t, max_nodes, arena, &fg, &err))
        fail_msg("%s", err.msg);
    return fg;
}

static void assert_names(const query_flamegraph *fg, const char *const *want, uint32_t n)
{
    assert_int_equal(fg->nnames, n);
    for (uint32_t i = 0; i < n; i++)
        assert_string_equal(fg->names[i], want[i]);
}

static void assert_level(const query_flamegraph *fg, uint32_t d, const int64_t *want, size_t n)
{
    assert_true(d < fg->nlevels);
    if (fg->nvalues[d] != n) {
        fprintf(stderr, "level %u:", d);
        for (size_t i = 0; i < fg->nvalues[d]; i++)
            fprintf(stderr, " %lld", (long long)fg->levels[d][i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(fg->nvalues[d], n);
    for (size_t i = 0; i < n; i++)
        if (fg->levels[d][i] != want[i])
            fail_msg("level %u value %zu: %lld, want %lld", d, i, (long long)fg->levels[d][i],
                     (long long)want[i]);
}

#define LEVEL(fg, d, ...)                                                                          \
    do {                                                                                           \
        static const int64_t want_[] = {__VA_ARGS__};                                              \
        assert_level(fg, d, want_, sizeof want_ / sizeof want_[0]);                                \
    } while (0)

/* ---- encoding -------------------------------------------------------------------------------- */

static void encodes_levels_like_pyroscope(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "main;foo;bar", 30);
    add(&f, "main;foo", 10);
    add(&f, "main;baz", 20);
    query_flamegraph fg = build(&f, 0);
    static const char *names[] = {"total", "main", "foo", "bar", "baz"};
    assert_names(&fg, names, 5);
    assert_int_equal(fg.nlevels, 4);
    LEVEL(&fg, 0, 0, 60, 0, 0);
    LEVEL(&fg, 1, 0, 60, 0, 1);
    LEVEL(&fg, 2, 0, 20, 20, 4, 0, 40, 10, 2);
    LEVEL(&fg, 3, 30, 30, 30, 3);
    assert_int_equal(fg.total, 60);
    assert_int_equal(fg.max_self, 30);
}

/* Pyroscope's Test_ExportToFlamebearer tree: stacks e;b;a 1, c;a 2, d;c;a 1 (leaf first). */
static void matches_pyroscope_flamebearer_test(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "a;b;e", 1);
    add(&f, "a;c", 2);
    add(&f, "a;c;d", 1);
    query_flamegraph fg = build(&f, -1);
    static const char *names[] = {"total", "a", "c", "d", "b", "e"};
    assert_names(&fg, names, 6);
    LEVEL(&fg, 0, 0, 4, 0, 0);
    LEVEL(&fg, 1, 0, 4, 0, 1);
    LEVEL(&fg, 2, 0, 1, 0, 4, 0, 3, 2, 2);
    LEVEL(&fg, 3, 0, 1, 1, 5, 2, 1, 1, 3);
    assert_int_equal(fg.total, 4);
    assert_int_equal(fg.max_self, 2);
}

static void empty_stacks_give_a_lone_total_node(void **state)
{
    (void)state;
    fixture f = {0};
    query_flamegraph fg = build(&f, 0);
    static const char *names[] = {"total"};
    assert_names(&fg, names, 1);
    assert_int_equal(fg.nlevels, 1);
    LEVEL(&fg, 0, 0, 0, 0, 0);
    assert_int_equal(fg.total, 0);
    assert_int_equal(fg.max_self, 0);
}

static void skips_non_positive_values_and_empty_stacks(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "main;a", 5);
    add(&f, "main;b", 0);
    add(&f, "main;c", -3);
    add(&f, "", 7);
    query_flamegraph fg = build(&f, 0);
    static const char *names[] = {"total", "main", "a"};
    assert_names(&fg, names, 3);
    assert_int_equal(fg.total, 5);
    LEVEL(&fg, 2, 0, 5, 5, 2);
}

static void children_are_in_byte_order_of_their_names(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "r;b", 1);
    add(&f, "r;B", 2);
    add(&f, "r;a", 4);
    add(&f, "r;_x", 8);
    query_flamegraph fg = build(&f, 0);
    /* order B _x a b: pushed in that order, popped from the end, so names come b a _x B */
    static const char *names[] = {"total", "r", "b", "a", "_x", "B"};
    assert_names(&fg, names, 6);
    LEVEL(&fg, 2, 0, 2, 2, 5, 0, 8, 8, 4, 0, 4, 4, 3, 0, 1, 1, 2);
}

/* ---- truncation ------------------------------------------------------------------------------ */

/* Pyroscope's "non-empty flamegraph result truncation" case: 7 nodes, max_nodes 4 → the cut is
 * the 4th largest total (2); a child named "other" always folds into the synthetic "other". */
static void truncates_below_the_max_nodes_th_total_into_other(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "foo;bar", 1);
    add(&f, "foo;bar;baz", 1);
    add(&f, "foo;qux", 2);
    add(&f, "fred;zoo", 1);
    add(&f, "fred;other", 1);
    query_flamegraph fg = build(&f, 4);
    static const char *names[] = {"total", "fred", "other", "foo", "qux", "bar"};
    assert_names(&fg, names, 6);
    assert_int_equal(fg.nlevels, 4);
    LEVEL(&fg, 0, 0, 6, 0, 0);
    LEVEL(&fg, 1, 0, 4, 0, 3, 0, 2, 0, 1);
    LEVEL(&fg, 2, 0, 2, 1, 5, 0, 2, 2, 4, 0, 2, 2, 2);
    LEVEL(&fg, 3, 1, 1, 1, 2);
    assert_int_equal(fg.total, 6);
    assert_int_equal(fg.max_self, 2);
}

static void max_nodes_at_or_above_the_tree_size_cuts_nothing(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "main;foo;bar", 30);
    add(&f, "main;foo", 10);
    add(&f, "main;baz", 20);
    query_tree t;
    sp_err err;
    assert_int_equal(query_tree_build(&f.s, arena, &t, &err), 0);
    assert_int_equal(query_tree_min_value(&t, 4, arena), 0);
    assert_int_equal(query_tree_min_value(&t, 0, arena), 0);
    assert_int_equal(query_tree_min_value(&t, -1, arena), 0);
    assert_int_equal(query_tree_min_value(&t, 3, arena), 30);
    assert_int_equal(query_tree_min_value(&t, 1, arena), 60);
    query_flamegraph fg = build(&f, 4);
    assert_int_equal(fg.nnames, 5);
    /* max_nodes 1: only main survives; its children fold into one "other" */
    fg = build(&f, 1);
    static const char *names[] = {"total", "main", "other"};
    assert_names(&fg, names, 3);
    LEVEL(&fg, 2, 0, 60, 60, 2);
    assert_int_equal(fg.total, 60);
    assert_int_equal(fg.max_self, 60);
}

static void folds_root_level_children_too(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "big", 100);
    add(&f, "small1", 1);
    add(&f, "small2", 2);
    query_flamegraph fg = build(&f, 1);
    static const char *names[] = {"total", "other", "big"};
    assert_names(&fg, names, 3);
    LEVEL(&fg, 1, 0, 100, 100, 2, 0, 3, 3, 1);
    assert_int_equal(fg.total, 103);
}

/* ---- invariants over many random trees ------------------------------------------------------- */

typedef struct dnode {
    int64_t x, total, self;
    uint32_t name;
} dnode;

static void check_invariants(const query_flamegraph *fg, int64_t want_total)
{
    assert_int_equal(fg->total, want_total);
    assert_int_equal(fg->levels[0][1], want_total);
    int64_t self_sum = 0, max_self = 0;
    for (uint32_t d = 0; d < fg->nlevels; d++) {
        assert_int_equal(fg->nvalues[d] % 4, 0);
        int64_t end = 0;
        for (size_t i = 0; i < fg->nvalues[d]; i += 4) {
            int64_t x = end + fg->levels[d][i], total = fg->levels[d][i + 1],
                    self = fg->levels[d][i + 2];
            assert_true(fg->levels[d][i] >= 0); /* left to right, no overlap */
            assert_true(self >= 0 && self <= total);
            assert_true(fg->levels[d][i + 3] >= 0 && fg->levels[d][i + 3] < fg->nnames);
            self_sum += self;
            if (self > max_self)
                max_self = self;
            /* children: the nodes of the next level inside [x + self, x + total) */
            int64_t kids = 0;
            if (d + 1 < fg->nlevels) {
                int64_t e2 = 0;
                for (size_t k = 0; k < fg->nvalues[d + 1]; k += 4) {
                    int64_t cx = e2 + fg->levels[d + 1][k], ct = fg->levels[d + 1][k + 1];
                    e2 = cx + ct;
                    if (cx >= x && cx < x + total) {
                        assert_true(cx >= x + self && cx + ct <= x + total);
                        kids += ct;
                    }
                }
            }
            assert_int_equal(total, self + kids);
            end = x + total;
        }
        assert_true(end <= want_total);
    }
    assert_int_equal(self_sum, want_total);
    assert_int_equal(fg->max_self, max_self);
}

static void totals_hold_under_any_truncation(void **state)
{
    (void)state;
    srand(7);
    for (int round = 0; round < 60; round++) {
        fixture f = {0};
        static const char *fn[] = {"a", "b", "c", "d", "e", "f", "g", "other", "total"};
        char text[128];
        int n = 1 + rand() % 40;
        for (int i = 0; i < n; i++) {
            int depth = 1 + rand() % 6;
            size_t o = 0;
            for (int k = 0; k < depth; k++)
                o += (size_t)snprintf(text + o, sizeof text - o, "%s%s", k ? ";" : "",
                                      fn[rand() % (round % 2 ? 9 : 7)]);
            add(&f, text, 1 + rand() % 50);
        }
        for (int64_t max_nodes = -1; max_nodes < 40; max_nodes++) {
            query_flamegraph fg = build(&f, max_nodes);
            check_invariants(&fg, f.s.total);
        }
    }
}

/* ---- tree bytes and flattened stacks --------------------------------------------------------- */

static void marshals_pyroscope_tree_bytes(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "main;foo;bar", 30);
    add(&f, "main;foo", 10);
    add(&f, "main;baz", 20);
    query_tree t;
    sp_err err;
    sp_buf b;
    sp_buf_init(&b, 0);
    assert_int_equal(query_tree_build(&f.s, arena, &t, &err), 0);
    assert_int_equal(query_tree_marshal(&t, 0, arena, &b, &err), 0);
    /* virtual root, then main (2 children: baz, foo; foo popped first), foo, bar, baz */
    static const uint8_t want[] = {0,  0, 1, 4,   'm', 'a', 'i', 'n', 0, 2,   3,   'f', 'o', 'o',
                                   10, 1, 3, 'b', 'a', 'r', 30,  0,   3, 'b', 'a', 'z', 20,  0};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);

    /* max_nodes 2: cut at 40, so baz (20) and bar (30) become "other" */
    b.len = 0;
    assert_int_equal(query_tree_marshal(&t, 2, arena, &b, &err), 0);
    static const uint8_t cut[] = {0,   0,   1,   4,   'm', 'a', 'i', 'n', 0,   2,   5,
                                  'o', 't', 'h', 'e', 'r', 20,  0,   3,   'f', 'o', 'o',
                                  10,  1,   5,   'o', 't', 'h', 'e', 'r', 30,  0};
    assert_int_equal(b.len, sizeof cut);
    assert_memory_equal(b.data, cut, sizeof cut);

    fixture empty = {0};
    b.len = 0;
    assert_int_equal(query_tree_build(&empty.s, arena, &t, &err), 0);
    assert_int_equal(query_tree_marshal(&t, 0, arena, &b, &err), 0);
    assert_int_equal(b.len, 0);
    sp_buf_free(&b);
}

static int64_t stack_value(const store_stacks *s, const char *root_first)
{
    for (size_t i = 0; i < s->nstacks; i++) {
        char text[256];
        size_t o = 0;
        for (uint32_t k = s->stacks[i].nframes; k-- > 0;)
            o += (size_t)snprintf(text + o, sizeof text - o, "%s%s",
                                  k + 1 == s->stacks[i].nframes ? "" : ";",
                                  s->names[s->stacks[i].frames[k]]);
        if (strcmp(text, root_first) == 0)
            return s->stacks[i].value;
    }
    return -1;
}

static void flattens_the_truncated_tree_into_stacks(void **state)
{
    (void)state;
    fixture f = {0};
    add(&f, "main;foo;bar", 30);
    add(&f, "main;foo", 10);
    add(&f, "main;baz", 20);
    query_tree t;
    store_stacks out;
    sp_err err;
    assert_int_equal(query_tree_build(&f.s, arena, &t, &err), 0);
    assert_int_equal(query_tree_stacks(&t, 0, arena, &out, &err), 0);
    assert_int_equal(out.nstacks, 3);
    assert_int_equal(out.total, 60);
    assert_int_equal(stack_value(&out, "main;foo;bar"), 30);
    assert_int_equal(stack_value(&out, "main;foo"), 10);
    assert_int_equal(stack_value(&out, "main;baz"), 20);

    assert_int_equal(query_tree_stacks(&t, 2, arena, &out, &err), 0);
    assert_int_equal(out.total, 60);
    assert_int_equal(out.nstacks, 3);
    assert_int_equal(stack_value(&out, "main;foo;other"), 30);
    assert_int_equal(stack_value(&out, "main;foo"), 10);
    assert_int_equal(stack_value(&out, "main;other"), 20);
}

static int setup(void **state)
{
    (void)state;
    arena = sp_arena_new(0);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sp_arena_free(arena);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(encodes_levels_like_pyroscope, setup, teardown),
        cmocka_unit_test_setup_teardown(matches_pyroscope_flamebearer_test, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_stacks_give_a_lone_total_node, setup, teardown),
        cmocka_unit_test_setup_teardown(skips_non_positive_values_and_empty_stacks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(children_are_in_byte_order_of_their_names, setup, teardown),
        cmocka_unit_test_setup_teardown(truncates_below_the_max_nodes_th_total_into_other, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(max_nodes_at_or_above_the_tree_size_cuts_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(folds_root_level_children_too, setup, teardown),
        cmocka_unit_test_setup_teardown(totals_hold_under_any_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(marshals_pyroscope_tree_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(flattens_the_truncated_tree_into_stacks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
