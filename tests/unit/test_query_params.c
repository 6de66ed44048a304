/* query/params and query/folded: the request parameters spanprof's HTTP query endpoints read
 * (Pyroscope's from/until forms, trace and span ids in paths) and the folded text export.
 *
 * Expected times are worked out by hand (date -u -d ... +%s) and from Pyroscope's attime rules
 * (pkg/og/util/attime: YYYYMMDD, unix s/ms/µs/ns, now-<offset> with unit words by prefix). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "query/folded.h"
#include "query/params.h"

#include <string.h>

#define S   1000000000LL
#define NOW (1795312686LL * S + 123456789LL)

static int64_t parse_ok(const char *text)
{
    int64_t v = -1;
    assert_int_equal(query_time_parse(text, NOW, &v), 0);
    return v;
}

static void unix_times_in_every_unit(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1700000000"), 1700000000LL * S);
    assert_int_equal(parse_ok("1700000000123"), 1700000000123LL * 1000000LL);
    assert_int_equal(parse_ok("1700000000123456"), 1700000000123456LL * 1000LL);
    assert_int_equal(parse_ok("1700000000123456789"), 1700000000123456789LL);
    assert_int_equal(parse_ok(" 1700000000 "), 1700000000LL * S);
    assert_int_equal(parse_ok("0"), 0);
}

static void yyyymmdd_is_midnight_utc(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("20231114"), 1699920000LL * S);
    assert_int_equal(parse_ok("19700101"), 0);
    assert_int_equal(parse_ok("20240229"), 1709164800LL * S);
    /* not a date: read as unix seconds, as attime does */
    assert_int_equal(parse_ok("20231399"), 20231399LL * S);
    assert_int_equal(parse_ok("20230229"), 20230229LL * S);
}

static void relative_times(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("now"), NOW);
    assert_int_equal(parse_ok("now-1h"), NOW - 3600 * S);
    assert_int_equal(parse_ok("now-1h30m"), NOW - 5400 * S);
    assert_int_equal(parse_ok("now+15s"), NOW + 15 * S);
    assert_int_equal(parse_ok("now-500ms"), NOW - 500000000LL);
    assert_int_equal(parse_ok("now-2d"), NOW - 2 * 86400 * S);
    assert_int_equal(parse_ok("now-1w"), NOW - 7 * 86400 * S);
    assert_int_equal(parse_ok("now-1y"), NOW - 365 * 86400 * S);
    assert_int_equal(parse_ok("now-1M"), NOW - 30 * 86400 * S);
    assert_int_equal(parse_ok("now-1mon"), NOW - 30 * 86400 * S);
    assert_int_equal(parse_ok("now-15min"), NOW - 900 * S);
    assert_int_equal(parse_ok("now-2hours"), NOW - 7200 * S);
    assert_int_equal(parse_ok("-1h"), NOW - 3600 * S);
    assert_int_equal(parse_ok("now - 1 h"), NOW - 3600 * S);
}

static void rejects_what_is_not_a_time(void **state)
{
    (void)state;
    static const char *bad[] = {"",
                                "soon",
                                "now-",
                                "now-h",
                                "now-1",
                                "now-1x",
                                "now*2",
                                "-",
                                "12ab",
                                "1.5",
                                "now-1hx",
                                "nowish",
                                "now-99999999999999999999y",
                                "100000000000000000000",
                                "yesterday"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        if (query_time_parse(bad[i], NOW, &v) != -1)
            fail_msg("\"%s\" parsed as %lld", bad[i], (long long)v);
    }
}

static void hex_ids(void **state)
{
    (void)state;
    uint8_t id[16];
    sp_err err = {0};
    assert_int_equal(query_hex_id("4bf92f3577b34da6A3CE929D0E0E4736", 16, "trace id", id, &err), 0);
    assert_int_equal(id[0], 0x4b);
    assert_int_equal(id[15], 0x36);
    char hex[33];
    query_hex_encode(id, 16, hex);
    assert_string_equal(hex, "4bf92f3577b34da6a3ce929d0e0e4736");

    assert_int_equal(query_hex_id("00f067aa", 8, "span id", id, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "span id \"00f067aa\""));
    assert_non_null(strstr(err.msg, "want 16 hex digits, got 8 characters"));
    assert_int_equal(query_hex_id("00f067aa0ba902bg", 8, "span id", id, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "'g' at position 16 is not a hex digit"));
    assert_int_equal(query_hex_id("0000000000000000", 8, "span id", id, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "all-zero"));
    assert_int_equal(query_hex_id("", 8, "span id", id, &err), SP_EINVAL);
    assert_int_equal(query_hex_id("00f067aa0ba902b\n", 8, "span id", id, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "'?' at position 16"));
    /* long input is cut in the message */
    char longid[300];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    assert_int_equal(query_hex_id(longid, 8, "span id", id, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "...\" is malformed"));
}

static void folded_lines_are_root_first_and_sorted(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(0);
    /* names: 0 main, 1 b, 2 a, 3 "x\ny" */
    const char *names[] = {"main", "b", "a", "x\ny"};
    uint32_t s1[] = {1, 0}, s2[] = {2, 0}, s3[] = {3, 2, 0}, s4[] = {0};
    store_stack stacks[] = {
        {s1, 2, 7, NULL}, {s2, 2, 5, NULL}, {s3, 3, 2, NULL}, {s4, 1, 0, NULL}, {NULL, 0, 9, NULL}};
    store_stacks s = {names, 4, stacks, 5, 23, 0, 0};
    sp_buf out;
    sp_buf_init(&out, 0);
    sp_err err = {0};
    assert_int_equal(query_folded_encode(&s, a, &out, &err), 0);
    assert_int_equal(sp_buf_append(&out, "", 1), 0);
    assert_string_equal((const char *)out.data, "main;a 5\nmain;a;x y 2\nmain;b 7\n");
    sp_buf_free(&out);
    sp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unix_times_in_every_unit),
        cmocka_unit_test(yyyymmdd_is_midnight_utc),
        cmocka_unit_test(relative_times),
        cmocka_unit_test(rejects_what_is_not_a_time),
        cmocka_unit_test(hex_ids),
        cmocka_unit_test(folded_lines_are_root_first_and_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
