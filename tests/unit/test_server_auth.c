/* server/auth: route classes, bearer and basic credentials from files and the environment, tenant
 * id rules, --multitenancy-required, and how a refusal is written in each protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/auth.h"
#include "server/exchange.h"

static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/sp-auth-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

typedef struct {
    srv_auth *auth;
    char *files[4];
} fixture;

/* ingest: tokens "tok-one" and "tok-two"; query: basic alice:"s3cret pw" and bob:x:y (a colon in
 * the password). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->files[0] = write_temp("# the collector\ntok-one\n\n  tok-two \r\n");
    f->files[1] = write_temp("alice:s3cret pw\r\nbob:x:y\n");
    srv_options cfg = {0};
    cfg.ingest_auth_token_file = f->files[0];
    cfg.query_basic_auth_file = f->files[1];
    sp_err err = {0};
    assert_int_equal(srv_auth_new(&f->auth, &cfg, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    srv_auth_free(f->auth);
    for (int i = 0; i < 4; i++)
        if (f->files[i]) {
            unlink(f->files[i]);
            free(f->files[i]);
        }
    free(f);
    return 0;
}

static srv_exchange *request(const char *path, ...)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP2, 1 << 20);
    assert_int_equal(srv_exchange_set_target(ex, path, strlen(path)), 0);
    va_list ap;
    va_start(ap, path);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL;) {
        const char *value = va_arg(ap, const char *);
        assert_int_equal(srv_exchange_add_header(ex, name, strlen(name), value, strlen(value)), 0);
    }
    va_end(ap);
    return ex;
}

static int check(const srv_auth *a, srv_exchange *ex, sp_err *err)
{
    memset(err, 0, sizeof *err);
    int rc = srv_auth_check(a, &ex->req, err);
    srv_exchange_free(ex);
    return rc;
}

static void classifies_every_route(void **state)
{
    (void)state;
    assert_int_equal(srv_auth_classify("/ready"), SRV_AUTH_OPEN);
    assert_int_equal(srv_auth_classify("/metrics"), SRV_AUTH_OPEN);
    const char *ingest[] = {
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        "/v1development/profiles",
        "/v1/traces",
        "/ingest",
        "/pyroscope/ingest",
        "/push.v1.PusherService/Push",
    };
    for (size_t i = 0; i < sizeof ingest / sizeof ingest[0]; i++)
        assert_int_equal(srv_auth_classify(ingest[i]), SRV_AUTH_INGEST);
    const char *query[] = {
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        "/render",
        "/pyroscope/render",
        "/pprof",
        "/",
        "/ui",
        "/api/v1/anything",
        "/no/such/path",
        "/ready/",   /* not /ready */
        "/ingestx",  /* not /ingest */
        "/metrics2", /* not /metrics */
        "",
    };
    for (size_t i = 0; i < sizeof query / sizeof query[0]; i++)
        assert_int_equal(srv_auth_classify(query[i]), SRV_AUTH_QUERY);
}

static void accepts_each_configured_token(void **state)
{
    fixture *f = *state;
    sp_err err;
    assert_int_equal(
        check(f->auth, request("/ingest", "authorization", "Bearer tok-one", NULL), &err), 0);
    assert_int_equal(
        check(f->auth, request("/v1/traces", "authorization", "Bearer tok-two", NULL), &err), 0);
    /* The scheme is case-insensitive and surrounding blanks do not matter. */
    assert_int_equal(
        check(f->auth, request("/ingest", "authorization", "  bEaReR   tok-two  ", NULL), &err), 0);
}

static void rejects_wrong_partial_and_missing_tokens(void **state)
{
    fixture *f = *state;
    const char *bad[] = {
        "Bearer tok-on", "Bearer tok-one1",    "Bearer TOK-ONE",         "Bearer ",      "Bearer",
        "tok-one",       "Basic dG9rLW9uZQ==", "Bearer tok-one tok-two", "Token tok-one"};
    sp_err err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(check(f->auth, request("/ingest", "authorization", bad[i], NULL), &err),
                         SP_EAUTH);
        assert_null(strstr(err.msg, "tok-"));
    }
    assert_int_equal(check(f->auth, request("/ingest", NULL), &err), SP_EAUTH);
    assert_non_null(strstr(err.msg, "Authorization"));
    /* Comment lines are not tokens. */
    assert_int_equal(
        check(f->auth, request("/ingest", "authorization", "Bearer # the collector", NULL), &err),
        SP_EAUTH);
}

static void ingest_and_query_credentials_are_separate(void **state)
{
    fixture *f = *state;
    sp_err err;
    /* An ingest token opens no query route, and query credentials no ingest route. */
    assert_int_equal(
        check(f->auth, request("/render", "authorization", "Bearer tok-one", NULL), &err),
        SP_EAUTH);
    /* alice:s3cret pw */
    assert_int_equal(check(f->auth,
                           request("/ingest", "authorization", "Basic YWxpY2U6czNjcmV0IHB3", NULL),
                           &err),
                     SP_EAUTH);
    /* Open routes need nothing. */
    assert_int_equal(check(f->auth, request("/ready", NULL), &err), 0);
    assert_int_equal(check(f->auth, request("/metrics", NULL), &err), 0);
}

static void basic_credentials(void **state)
{
    fixture *f = *state;
    sp_err err;
    const char *good[] = {
        "Basic YWxpY2U6czNjcmV0IHB3", /* alice:s3cret pw (no padding needed) */
        "basic YWxpY2U6czNjcmV0IHB3",
        "Basic Ym9iOng6eQ==", /* bob:x:y */
        "Basic Ym9iOng6eQ",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(check(f->auth, request("/pprof", "authorization", good[i], NULL), &err),
                         0);
    const char *bad[] = {
        "Basic YWxpY2U6czNjcmV0",         /* alice:s3cret */
        "Basic YWxpY2U6czNjcmV0IHB3IA==", /* alice:s3cret pw + space */
        "Basic Ym9iOng=",                 /* bob:x */
        "Basic YWxpY2U=",                 /* alice */
        "Basic !!!!",                     /* not base64 */
        "Basic YWxp Y2U6czNjcmV0IHB3",    /* a space inside */
        "Basic ",
        "Bearer YWxpY2U6czNjcmV0IHB3", /* query accepts no bearer tokens */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(check(f->auth, request("/pprof", "authorization", bad[i], NULL), &err),
                         SP_EAUTH);
        assert_null(strstr(err.msg, "alice"));
        assert_null(strstr(err.msg, "s3cret"));
    }
}

static void long_basic_credentials_are_refused_not_overflowed(void **state)
{
    fixture *f = *state;
    size_t n = 20000;
    char *h = malloc(n + 7);
    memcpy(h, "Basic ", 6);
    memset(h + 6, 'Q', n);
    h[n + 6] = 0;
    sp_err err;
    assert_int_equal(check(f->auth, request("/render", "authorization", h, NULL), &err), SP_EAUTH);
    free(h);
}

static void credential_file_errors_name_the_line_not_the_secret(void **state)
{
    (void)state;
    struct {
        const char *content;
        int basic;
        const char *expect;
    } cases[] = {
        {"good-token\nbad token-secret\n", 0, "line 2"},
        {"# only a comment\n\n", 0, "no token"},
        {"", 1, "no user:password"},
        {"alice-secret\n", 1, "line 1"},
        {":pw-secret\n", 1, "line 1"},
        {"carol-secret:\n", 1, "line 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_temp(cases[i].content);
        srv_options cfg = {0};
        if (cases[i].basic)
            cfg.query_basic_auth_file = path;
        else
            cfg.ingest_auth_token_file = path;
        srv_auth *a = NULL;
        sp_err err = {0};
        assert_int_equal(srv_auth_new(&a, &cfg, &err), SP_EINVAL);
        assert_null(a);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, cases[i].expect));
        assert_null(strstr(err.msg, "secret"));
        unlink(path);
        free(path);
    }
    srv_options cfg = {0};
    cfg.query_auth_token_file = "/nonexistent/tokens";
    srv_auth *a = NULL;
    sp_err err = {0};
    assert_int_equal(srv_auth_new(&a, &cfg, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/tokens"));
}

static void tokens_from_the_environment(void **state)
{
    (void)state;
    setenv("SPANPROF_QUERY_AUTH_TOKEN", " env-query-token\n", 1);
    srv_options cfg = {0};
    srv_auth *a = NULL;
    sp_err err = {0};
    assert_int_equal(srv_auth_new(&a, &cfg, &err), 0);
    unsetenv("SPANPROF_QUERY_AUTH_TOKEN");
    assert_int_equal(
        check(a, request("/render", "authorization", "Bearer env-query-token", NULL), &err), 0);
    assert_int_equal(check(a, request("/render", NULL), &err), SP_EAUTH);
    /* Ingest stays open. */
    assert_int_equal(check(a, request("/ingest", NULL), &err), 0);
    char desc[128];
    srv_auth_describe(a, desc, sizeof desc);
    assert_string_equal(desc, "ingest=none query=bearer admin=refused multitenancy_required=0");
    srv_auth_free(a);
}

/* The admin class: its own token only; without one it fails closed once anything else is
 * protected, and stays open on an otherwise open server. */
static void admin_class_takes_its_own_token_and_fails_closed(void **state)
{
    (void)state;
    assert_int_equal(srv_auth_classify("/api/v1/admin/backup"), SRV_AUTH_ADMIN);
    assert_int_equal(srv_auth_classify("/api/v1/traces/ab"), SRV_AUTH_QUERY);
    sp_err err = {0};
    srv_options open_cfg = {0};
    srv_auth *a = NULL;
    assert_int_equal(srv_auth_new(&a, &open_cfg, &err), 0);
    assert_int_equal(check(a, request("/api/v1/admin/backup", NULL), &err), 0);
    srv_auth_free(a);

    setenv("SPANPROF_QUERY_AUTH_TOKEN", "q-token", 1);
    assert_int_equal(srv_auth_new(&a, &open_cfg, &err), 0);
    assert_int_equal(
        check(a, request("/api/v1/admin/backup", "authorization", "Bearer q-token", NULL), &err),
        SP_EAUTH);
    assert_non_null(strstr(err.msg, "--admin-auth-token-file"));
    srv_auth_free(a);

    setenv("SPANPROF_ADMIN_AUTH_TOKEN", "a-token", 1);
    assert_int_equal(srv_auth_new(&a, &open_cfg, &err), 0);
    unsetenv("SPANPROF_QUERY_AUTH_TOKEN");
    unsetenv("SPANPROF_ADMIN_AUTH_TOKEN");
    assert_int_equal(
        check(a, request("/api/v1/admin/backup", "authorization", "Bearer a-token", NULL), &err),
        0);
    assert_int_equal(
        check(a, request("/api/v1/admin/backup", "authorization", "Bearer q-token", NULL), &err),
        SP_EAUTH);
    /* the admin token is no query token */
    assert_int_equal(check(a, request("/render", "authorization", "Bearer a-token", NULL), &err),
                     SP_EAUTH);
    srv_auth_free(a);
}

static void tenant_ids_follow_the_cortex_rules(void **state)
{
    (void)state;
    sp_err err;
    const char *good[] = {"anonymous", "team-a", "A_b.c", "x!*'()", "...", ".a", "0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(srv_tenant_validate(good[i], &err), 0);
    char max[SRV_TENANT_MAX_LENGTH + 2];
    memset(max, 'a', sizeof max);
    max[SRV_TENANT_MAX_LENGTH] = 0;
    assert_int_equal(srv_tenant_validate(max, &err), 0);
    max[SRV_TENANT_MAX_LENGTH] = 'a';
    max[SRV_TENANT_MAX_LENGTH + 1] = 0;
    assert_int_equal(srv_tenant_validate(max, &err), SP_EAUTH);
    assert_non_null(strstr(err.msg, "too long"));
    const char *bad[] = {".", "..", "a/b", "a|b", "a b", "t\xc3\xa9", "a\\b", "a:b", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(srv_tenant_validate(bad[i], &err), SP_EAUTH);
}

static void tenant_header_rules(void **state)
{
    (void)state;
    sp_err err;
    /* Without auth or the flag: no header is tenant anonymous, a bad one is still refused. */
    assert_int_equal(check(NULL, request("/render", NULL), &err), 0);
    assert_int_equal(check(NULL, request("/render", "x-scope-orgid", "", NULL), &err), 0);
    assert_int_equal(check(NULL, request("/ingest", "x-scope-orgid", "../etc", NULL), &err),
                     SP_EAUTH);
    assert_int_equal(
        check(NULL, request("/ingest", "x-scope-orgid", "a", "X-Scope-OrgID", "b", NULL), &err),
        SP_EAUTH);
    assert_non_null(strstr(err.msg, "more than once"));
    assert_int_equal(
        check(NULL, request("/ingest", "x-scope-orgid", "a", "X-Scope-OrgID", "a", NULL), &err), 0);
    /* /ready and /metrics ignore tenants entirely. */
    assert_int_equal(check(NULL, request("/metrics", "x-scope-orgid", "a/b", NULL), &err), 0);

    srv_options cfg = {0};
    cfg.multitenancy_required = 1;
    srv_auth *a = NULL;
    assert_int_equal(srv_auth_new(&a, &cfg, &err), 0);
    assert_int_equal(check(a, request("/render", NULL), &err), SP_EAUTH);
    assert_non_null(strstr(err.msg, "no org id"));
    assert_int_equal(check(a, request("/v1/traces", "x-scope-orgid", "", NULL), &err), SP_EAUTH);
    assert_int_equal(check(a, request("/v1/traces", "x-scope-orgid", "t1", NULL), &err), 0);
    assert_int_equal(check(a, request("/ready", NULL), &err), 0);
    srv_auth_free(a);
}

static const char *resp_header(const srv_response *r, const char *name, int nth)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0 && nth-- == 0)
            return r->headers[i].value;
    return NULL;
}

static void refusals_speak_each_protocol(void **state)
{
    fixture *f = *state;
    sp_err err;
    sp_fail(&err, SP_EAUTH, "nope");

    srv_exchange *ex =
        request("/querier.v1.QuerierService/LabelNames", "content-type", "application/grpc", NULL);
    srv_auth_refuse(f->auth, &ex->req, &ex->resp, &err);
    assert_int_equal(ex->resp.status, 200);
    assert_true(ex->resp.grpc);
    assert_int_equal(ex->resp.grpc_status, GRPC_UNAUTHENTICATED);
    assert_string_equal(ex->resp.grpc_message, "nope");
    srv_exchange_free(ex);

    ex = request("/querier.v1.QuerierService/LabelNames", "content-type", "application/json", NULL);
    srv_auth_refuse(f->auth, &ex->req, &ex->resp, &err);
    assert_int_equal(ex->resp.status, 401);
    assert_string_equal(resp_header(&ex->resp, "www-authenticate", 0),
                        "Basic realm=\"spanprof\", charset=\"UTF-8\"");
    assert_null(resp_header(&ex->resp, "www-authenticate", 1));
    assert_int_equal(ex->resp.body.len,
                     strlen("{\"code\":\"unauthenticated\",\"message\":\"nope\"}"));
    assert_memory_equal(ex->resp.body.data, "{\"code\":\"unauthenticated\",\"message\":\"nope\"}",
                        ex->resp.body.len);
    srv_exchange_free(ex);

    /* OTLP/HTTP: a protobuf google.rpc.Status{code: 16, message: "nope"}. */
    ex = request("/v1development/profiles", "content-type", "application/x-protobuf", NULL);
    srv_auth_refuse(f->auth, &ex->req, &ex->resp, &err);
    assert_int_equal(ex->resp.status, 401);
    assert_string_equal(resp_header(&ex->resp, "www-authenticate", 0), "Bearer realm=\"spanprof\"");
    assert_string_equal(resp_header(&ex->resp, "content-type", 0), "application/x-protobuf");
    static const uint8_t status[] = {0x08, 16, 0x12, 4, 'n', 'o', 'p', 'e'};
    assert_int_equal(ex->resp.body.len, sizeof status);
    assert_memory_equal(ex->resp.body.data, status, sizeof status);
    srv_exchange_free(ex);

    ex = request("/ingest", NULL);
    srv_auth_refuse(f->auth, &ex->req, &ex->resp, &err);
    assert_int_equal(ex->resp.status, 401);
    assert_string_equal(resp_header(&ex->resp, "content-type", 0), "text/plain; charset=utf-8");
    srv_exchange_free(ex);

    /* Without configured credentials (a tenant refusal) there is no challenge to offer. */
    ex = request("/ingest", NULL);
    srv_auth_refuse(NULL, &ex->req, &ex->resp, &err);
    assert_int_equal(ex->resp.status, 401);
    assert_null(resp_header(&ex->resp, "www-authenticate", 0));
    srv_exchange_free(ex);
}

static void refused_bodies_are_not_buffered(void **state)
{
    (void)state;
    srv_exchange *ex = srv_exchange_new(SRV_HTTP1, 1024);
    ex->auth_refused = 1;
    char chunk[600] = {0};
    size_t before = srv_inflight_bytes();
    assert_int_equal(srv_exchange_body(ex, chunk, sizeof chunk), 0);
    assert_int_equal(ex->req.body.len, 0);
    assert_int_equal(srv_inflight_bytes(), before);
    /* Still bounded by the message limit. */
    assert_int_equal(srv_exchange_body(ex, chunk, sizeof chunk), SP_ETOOBIG);
    assert_true(ex->req.body_too_big);
    srv_exchange_free(ex);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classifies_every_route),
        cmocka_unit_test_setup_teardown(accepts_each_configured_token, setup, teardown),
        cmocka_unit_test_setup_teardown(rejects_wrong_partial_and_missing_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(ingest_and_query_credentials_are_separate, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(long_basic_credentials_are_refused_not_overflowed, setup,
                                        teardown),
        cmocka_unit_test(credential_file_errors_name_the_line_not_the_secret),
        cmocka_unit_test(tokens_from_the_environment),
        cmocka_unit_test(admin_class_takes_its_own_token_and_fails_closed),
        cmocka_unit_test(tenant_ids_follow_the_cortex_rules),
        cmocka_unit_test(tenant_header_rules),
        cmocka_unit_test_setup_teardown(refusals_speak_each_protocol, setup, teardown),
        cmocka_unit_test(refused_bodies_are_not_buffered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
