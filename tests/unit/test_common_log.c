/* The JSON form of log lines (common/log.c): what `--log-format json` prints for the logfmt
 * fields every caller writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "common/log.h"

static void json_of(const char *line, const char *want)
{
    char out[512];
    sp_log_logfmt_to_json(line, out, sizeof out);
    assert_string_equal(out, want);
}

static void converts_bare_and_quoted_values(void **state)
{
    (void)state;
    json_of("ts=2026-01-01T00:00:00.000Z level=info msg=\"store open\" schema=4",
            "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"level\":\"info\",\"msg\":\"store open\","
            "\"schema\":\"4\"}");
}

static void keeps_quotes_inside_a_message_in_the_value(void **state)
{
    (void)state;
    /* callers interpolate error text that may hold quotes of its own */
    json_of("msg=\"refused\" error=\"key \"x\" is bad\" n=1",
            "{\"msg\":\"refused\",\"error\":\"key \\\"x\\\" is bad\",\"n\":\"1\"}");
}

static void escapes_control_characters_and_backslashes(void **state)
{
    (void)state;
    json_of("msg=\"a\tb\\c\"", "{\"msg\":\"a\\u0009b\\\\c\"}");
}

static void a_word_without_value_is_true(void **state)
{
    (void)state;
    json_of("msg=x flag", "{\"msg\":\"x\",\"flag\":true}");
}

static void a_field_that_does_not_fit_is_left_out_and_the_object_stays_whole(void **state)
{
    (void)state;
    char out[24];
    size_t n = sp_log_logfmt_to_json("a=1 b=\"a long value that will not fit\"", out, sizeof out);
    assert_string_equal(out, "{\"a\":\"1\"}");
    assert_int_equal(n, strlen(out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(converts_bare_and_quoted_values),
        cmocka_unit_test(keeps_quotes_inside_a_message_in_the_value),
        cmocka_unit_test(escapes_control_characters_and_backslashes),
        cmocka_unit_test(a_word_without_value_is_true),
        cmocka_unit_test(a_field_that_does_not_fit_is_left_out_and_the_object_stays_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
