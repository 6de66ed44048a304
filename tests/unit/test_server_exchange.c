/* server/exchange: grpc-timeout → deadline, request targets, header and body limits, Connect
 * error bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/exchange.h"

static void parses_grpc_timeout_units(void **state)
{
    assert_int_equal(srv_grpc_timeout_ns("100m"), 100000000);
    assert_int_equal(srv_grpc_timeout_ns("1H"), 3600000000000LL);
    assert_int_equal(srv_grpc_timeout_ns("2M"), 120000000000LL);
    assert_int_equal(srv_grpc_timeout_ns("5S"), 5000000000LL);
    assert_int_equal(srv_grpc_timeout_ns("7u"), 7000);
    assert_int_equal(srv_grpc_timeout_ns("12345678n"), 12345678);
    assert_int_equal(srv_grpc_timeout_ns("0S"), 0);
}

static void grpc_timeout_saturates_instead_of_overflowing(void **state)
{
    assert_true(srv_grpc_timeout_ns("99999999H") == INT64_MAX);
}

static void rejects_malformed_grpc_timeout(void **state)
{
    const char *bad[] = {"", "m", "S1", "123456789S", "10x", "1.5S", "-1S", " 1S", "1 S", "10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(srv_grpc_timeout_ns(bad[i]), -1);
}

static void grpc_timeout_header_sets_the_deadline(void **state)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP2, 1024);
    int64_t before = srv_now_ns();
    assert_int_equal(srv_exchange_add_header(ex, "grpc-timeout", 12, "250m", 4), 0);
    assert_true(ex->req.deadline_ns >= before + 250000000LL);
    assert_true(ex->req.deadline_ns <= srv_now_ns() + 250000000LL);
    srv_exchange_free(ex);
}

static void splits_and_decodes_the_target(void **state)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP1, 1024);
    const char *t = "/ingest%2Fx?name=app%7Benv%3Dprod%7D&format=pprof";
    assert_int_equal(srv_exchange_set_target(ex, t, strlen(t)), 0);
    assert_string_equal(ex->req.path, "/ingest/x");
    char v[64];
    assert_int_equal(srv_query_get(&ex->req, "name", v, sizeof v), 13);
    assert_string_equal(v, "app{env=prod}");
    assert_int_equal(srv_query_get(&ex->req, "missing", v, sizeof v), -1);
    srv_exchange_free(ex);
}

static void header_budget_is_enforced(void **state)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP1, 1024);
    char big[SRV_MAX_HEADER_BYTES];
    memset(big, 'a', sizeof big);
    assert_int_equal(srv_exchange_add_header(ex, "x-big", 5, big, sizeof big), SP_ETOOBIG);
    srv_exchange_free(ex);
    ex = srv_exchange_new(SRV_HTTP1, 1024);
    int rc = 0;
    for (int i = 0; i <= SRV_MAX_HEADERS && !rc; i++)
        rc = srv_exchange_add_header(ex, "x", 1, "y", 1);
    assert_int_equal(rc, SP_ETOOBIG);
    srv_exchange_free(ex);
}

static void body_past_the_limit_is_flagged_not_buffered(void **state)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP2, 10);
    assert_int_equal(srv_exchange_body(ex, "0123456789", 10), 0);
    assert_int_equal(srv_exchange_body(ex, "x", 1), SP_ETOOBIG);
    assert_true(ex->req.body_too_big);
    assert_int_equal(ex->req.body.len, 10);
    srv_exchange_free(ex);
    assert_int_equal(srv_inflight_bytes(), 0); /* freeing returns the budget */
}

static void connect_error_body_stays_utf8(void **state)
{
    /* The message quotes a percent-decoded path: invalid UTF-8 becomes U+FFFD, valid stays. */
    srv_exchange *ex = srv_exchange_new(SRV_HTTP1, 1024);
    sp_err err;
    sp_fail(&err, SP_ENOTFOUND,
            "no such path: /a\x92"
            "b\xc3\xa9\xe2\x82\"");
    srv_response_connect_error(&ex->resp, &err);
    assert_int_equal(ex->resp.status, 404);
    const char want[] = "{\"code\":\"not_found\",\"message\":\"no such path: "
                        "/a\\ufffdb\xc3\xa9\\ufffd\\ufffd\\\"\"}";
    assert_int_equal(ex->resp.body.len, sizeof want - 1);
    assert_memory_equal(ex->resp.body.data, want, sizeof want - 1);
    srv_exchange_free(ex);
}

static void grpc_message_cannot_break_a_header_line(void **state)
{
    /* HTTP/1.1 answers write grpc-message as a header line: CR LF from a decoded path stay
     * percent-encoded, as gRPC over HTTP/2 encodes it. */
    char out[64];
    size_t n = srv_grpc_message_encode("no such path: /a\r\nX: 1%\xc3\xa9", out, sizeof out);
    assert_string_equal(out, "no such path: /a%0D%0AX: 1%25%C3%A9");
    assert_int_equal(n, strlen(out));
    n = srv_grpc_message_encode("\n\n\n", out, 8); /* never a partial escape */
    assert_string_equal(out, "%0A%0A");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_grpc_timeout_units),
        cmocka_unit_test(grpc_timeout_saturates_instead_of_overflowing),
        cmocka_unit_test(rejects_malformed_grpc_timeout),
        cmocka_unit_test(grpc_timeout_header_sets_the_deadline),
        cmocka_unit_test(splits_and_decodes_the_target),
        cmocka_unit_test(header_budget_is_enforced),
        cmocka_unit_test(body_past_the_limit_is_flagged_not_buffered),
        cmocka_unit_test(connect_error_body_stays_utf8),
        cmocka_unit_test(grpc_message_cannot_break_a_header_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
