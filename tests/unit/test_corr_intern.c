/* The correlator's intern tables (correlator/window.c): a key keeps its id through the growth
 * of the probe table, moved a few slots per new key (T1-T2), and through a renumbering that
 * comes while a growth is still moving. The oracle is the order keys were added in: key i was
 * the i-th new one, so its id is i (ids are dense and in order of arrival). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "correlator/internal.h"

static uint32_t key_id(itab *t, uint32_t k, int create)
{
    char key[32];
    int n = snprintf(key, sizeof key, "frame-%u", k);
    return cw_itab_get(t, key, (uint32_t)n, create);
}

static void every_key_keeps_its_id_while_the_table_grows(void **state)
{
    (void)state;
    enum { N = 200000 };
    itab t;
    memset(&t, 0, sizeof t);
    uint32_t nslots = 0, growths = 0;
    for (uint32_t k = 0; k < N; k++) {
        assert_int_equal(key_id(&t, k, 1), k);
        if (t.nslots != nslots) {
            if (nslots) /* the growth left the old table to move, a few slots per key */
                assert_non_null(t.old);
            nslots = t.nslots;
            growths++;
            for (uint32_t j = 0; j <= k; j++)
                assert_int_equal(key_id(&t, j, 0), j);
        }
        assert_int_equal(key_id(&t, k / 3, 1), k / 3); /* found again, not added */
        assert_int_equal(key_id(&t, k + N, 0), UINT32_MAX);
    }
    assert_true(growths >= 8);
    assert_null(t.old);
    assert_int_equal(t.n, N);
    cw_itab_free(&t);
}

/* A renumbering (budget.c's rebuild) while a growth is still moving: every other key released,
 * the live ones renumbered in order, all of them found under their new ids. */
static void a_renumbering_in_the_middle_of_a_move_finds_every_live_key(void **state)
{
    (void)state;
    itab t;
    memset(&t, 0, sizeof t);
    uint32_t k = 0;
    while (!t.old || k < 2000)
        assert_int_equal(key_id(&t, k, 1), k), k++;
    assert_non_null(t.old); /* k keys, the last growth still moving */
    uint64_t *live = calloc(k / 64 + 1, sizeof *live);
    assert_non_null(live);
    for (uint32_t i = 0; i < k; i += 2)
        live[i / 64] |= 1ull << (i % 64);
    itab_plan pl;
    assert_int_equal(cw_itab_plan(&t, live, &pl), 0);
    cw_itab_compact(&t, &pl, NULL, NULL);
    cw_itab_plan_free(&pl);
    assert_null(t.old);
    assert_int_equal(t.n, (k + 1) / 2);
    for (uint32_t i = 0; i < k; i++)
        assert_int_equal(key_id(&t, i, 0), i % 2 ? UINT32_MAX : i / 2);
    free(live);
    cw_itab_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_key_keeps_its_id_while_the_table_grows),
        cmocka_unit_test(a_renumbering_in_the_middle_of_a_move_finds_every_live_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
