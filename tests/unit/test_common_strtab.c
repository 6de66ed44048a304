/* common/strtab: a string table being built. The oracle is the table's contract seen from
 * outside: equal strings get one index, the prefilled sender's table keeps its indices, and
 * reserving room first (sp_strtab_reserve, what the OTLP converter does before naming thousands
 * of unsymbolized frames) answers exactly what interning without it answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/strtab.h"

enum { PREFILL = 300, NAMES = 5000 };

static char *prefill[PREFILL];
static char prefill_buf[PREFILL][32];

/* The i-th made-up name; every 7th repeats an earlier one, every 50th is a prefilled string. */
static void name_of(int i, char *out, size_t n)
{
    if (i % 50 == 49)
        snprintf(out, n, "%s", prefill[1 + i % (PREFILL - 1)]);
    else
        snprintf(out, n, "native 0x%x app", i % 7 == 6 ? (i / 7) * 64 : i * 64);
}

static void build(sp_arena *a, sp_strtab *t, int reserve_first, uint32_t *idx)
{
    assert_int_equal(sp_strtab_init(t, a, prefill, PREFILL), 0);
    if (reserve_first)
        assert_int_equal(sp_strtab_reserve(t, NAMES, 0), 0);
    for (int i = 0; i < NAMES; i++) {
        char b[64];
        name_of(i, b, sizeof b);
        idx[i] = sp_strtab_intern(t, b, strlen(b));
        assert_true(idx[i] > 0);
        assert_string_equal(t->s[idx[i]], b);
    }
}

static void reserving_first_interns_the_same_indices(void **state)
{
    (void)state;
    for (int i = 1; i < PREFILL; i++) {
        snprintf(prefill_buf[i], sizeof prefill_buf[i], "pkg.Func%d", i);
        prefill[i] = prefill_buf[i];
    }
    static uint32_t plain[NAMES], reserved[NAMES];
    sp_arena *a = sp_arena_new(0), *b = sp_arena_new(0);
    sp_strtab t1, t2;
    build(a, &t1, 0, plain);
    build(b, &t2, 1, reserved);
    assert_memory_equal(plain, reserved, sizeof plain);
    assert_int_equal(t1.n, t2.n);
    /* equal strings share an index; prefilled ones keep theirs */
    for (int i = 0; i < NAMES; i++) {
        char x[64];
        name_of(i, x, sizeof x);
        if (i % 50 == 49)
            assert_int_equal(reserved[i], 1 + i % (PREFILL - 1));
        for (int k = i + 1; k < NAMES && k < i + 60; k++) {
            char y[64];
            name_of(k, y, sizeof y);
            assert_int_equal(strcmp(x, y) == 0, reserved[i] == reserved[k]);
        }
    }
    /* room reserved after the index exists, and beyond any budget: refused, table intact */
    assert_int_equal(sp_strtab_reserve(&t2, 10, 10), 0);
    assert_int_equal(sp_strtab_reserve(&t2, UINT32_MAX - 1, 0), SP_ETOOBIG);
    assert_int_equal(sp_strtab_reserve(&t2, 0, UINT32_MAX - 1), SP_ETOOBIG);
    assert_int_equal(sp_strtab_intern(&t2, "pkg.Func7", 9), 7);
    uint32_t fresh = sp_strtab_intern(&t2, "brand new", 9);
    assert_int_equal(fresh, t1.n);
    assert_int_equal(sp_strtab_intern(&t2, "brand new", 9), fresh);
    sp_arena_free(a);
    sp_arena_free(b);
}

static void a_budget_too_small_for_the_room_leaves_the_table_working(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(64 * 1024);
    sp_strtab t;
    assert_int_equal(sp_strtab_init(&t, a, NULL, 0), 0);
    assert_int_equal(sp_strtab_reserve(&t, 1u << 20, 0), SP_ETOOBIG); /* 12 MiB of room */
    uint32_t i = sp_strtab_intern(&t, "main", 4);
    assert_int_equal(i, 1);
    assert_int_equal(sp_strtab_intern(&t, "main", 4), 1);
    sp_arena_free(a);
}

/* Added names (sp_strtab_add and sp_strtab_add_room, the OTLP converter's made-up frame names,
 * copied or written in place): each a new index holding its bytes, duplicates included, and
 * interning around them answers as without them, however many were added (the index is neither
 * rebuilt for them nor fooled by them). */
static void added_names_take_new_indices_and_leave_interning_as_it_was(void **state)
{
    (void)state;
    for (int i = 1; i < PREFILL; i++) {
        snprintf(prefill_buf[i], sizeof prefill_buf[i], "pkg.Func%d", i);
        prefill[i] = prefill_buf[i];
    }
    sp_arena *a = sp_arena_new(0), *b = sp_arena_new(0);
    sp_strtab with, without;
    assert_int_equal(sp_strtab_init(&with, a, prefill, PREFILL), 0);
    assert_int_equal(sp_strtab_init(&without, b, prefill, PREFILL), 0);
    assert_int_equal(sp_strtab_reserve(&with, 8, NAMES / 2), 0);
    assert_int_equal(sp_strtab_add(&with, "", 0), 0);
    char *none;
    assert_int_equal(sp_strtab_add_room(&with, 0, &none), 0);
    assert_null(none);
    uint32_t first = sp_strtab_add(&with, "pkg.Func7", 9); /* a prefilled string's bytes */
    assert_int_equal(first, PREFILL);
    assert_string_equal(with.s[first], "pkg.Func7");
    uint32_t next = PREFILL + 1;
    for (int i = 0; i < NAMES; i++) {
        char n[64];
        name_of(i, n, sizeof n);
        uint32_t k;
        if (i % 2) { /* written in place (sp_strtab_add_room) */
            char *room;
            k = sp_strtab_add_room(&with, strlen(n), &room);
            assert_non_null(room);
            memcpy(room, n, strlen(n));
        } else {
            k = sp_strtab_add(&with, n, strlen(n));
        }
        assert_int_equal(k, next++); /* never an earlier index */
        assert_int_equal(with.len[k], strlen(n));
        assert_string_equal(with.s[k], n);
        if (i % 500 == 0) { /* interning between the adds: indices of its own table */
            char x[32];
            snprintf(x, sizeof x, "interned %d", i);
            uint32_t got = sp_strtab_intern(&with, x, strlen(x));
            assert_int_equal(got, next++);
            assert_string_equal(with.s[got], x);
            assert_int_equal(sp_strtab_intern(&with, x, strlen(x)), got);
            assert_int_equal(sp_strtab_intern(&without, x, strlen(x)), PREFILL + (uint32_t)i / 500);
        }
    }
    assert_int_equal(with.n, PREFILL + 1 + NAMES + NAMES / 500);
    assert_int_equal(sp_strtab_intern(&with, "pkg.Func7", 9), 7); /* the prefilled one */
    for (int i = 1; i < PREFILL; i++)
        assert_int_equal(sp_strtab_intern(&with, prefill[i], strlen(prefill[i])), (uint32_t)i);
    /* the index holds the prefilled and the interned strings, not the adds */
    assert_int_equal(with.nindexed, PREFILL - 1 + NAMES / 500);
    assert_true(with.nslots <= without.nslots * 2);
    sp_arena_free(a);
    sp_arena_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reserving_first_interns_the_same_indices),
        cmocka_unit_test(a_budget_too_small_for_the_room_leaves_the_table_working),
        cmocka_unit_test(added_names_take_new_indices_and_leave_interning_as_it_was),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
