/* Label selectors (parsing, matching) and frame names: the backend-neutral parts of the store. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/match.h"
#include "storage-adapter/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sp_arena *arena;

static store_selector parse_ok(const char *text)
{
    store_selector sel;
    sp_err err = {0};
    int rc = store_parse_selector(text, arena, &sel, &err);
    if (rc)
        fail_msg("%s: %s", text, err.msg);
    return sel;
}

static void parses_prometheus_selectors(void **state)
{
    (void)state;
    store_selector s = parse_ok("{service_name=\"api\", env!=\"dev\",k=~\"a.*\" , x!~'y'}");
    assert_null(s.type_id);
    assert_int_equal(s.nmatchers, 4);
    assert_string_equal(s.matchers[0].name, "service_name");
    assert_string_equal(s.matchers[0].value, "api");
    assert_int_equal(s.matchers[0].op, STORE_MATCH_EQ);
    assert_int_equal(s.matchers[1].op, STORE_MATCH_NEQ);
    assert_int_equal(s.matchers[2].op, STORE_MATCH_RE);
    assert_string_equal(s.matchers[2].value, "a.*");
    assert_int_equal(s.matchers[3].op, STORE_MATCH_NRE);
    assert_string_equal(s.matchers[3].value, "y");

    s = parse_ok("{}");
    assert_int_equal(s.nmatchers, 0);
    s = parse_ok("");
    assert_int_equal(s.nmatchers, 0);
    assert_null(s.type_id);
    s = parse_ok("{a=\"1\",}");
    assert_int_equal(s.nmatchers, 1);
}

static void parses_type_id_before_the_brace(void **state)
{
    (void)state;
    store_selector s = parse_ok("process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"x\"}");
    assert_string_equal(s.type_id, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    assert_int_equal(s.nmatchers, 1);
    s = parse_ok("  memory:alloc_space:bytes:space:bytes  ");
    assert_string_equal(s.type_id, "memory:alloc_space:bytes:space:bytes");
    assert_int_equal(s.nmatchers, 0);
}

static void accepts_matchers_without_braces(void **state)
{
    (void)state;
    /* Grafana custom queries are used verbatim: `method="x"` without braces. */
    store_selector s = parse_ok("method=\"GET\", service_name=\"api\"");
    assert_null(s.type_id);
    assert_int_equal(s.nmatchers, 2);
    assert_string_equal(s.matchers[0].name, "method");
    assert_string_equal(s.matchers[1].value, "api");
    /* A '{' inside a quoted value does not open a matcher list. */
    s = parse_ok("http_route=\"/users/{id}\", method='{'");
    assert_null(s.type_id);
    assert_int_equal(s.nmatchers, 2);
    assert_string_equal(s.matchers[0].value, "/users/{id}");
    assert_string_equal(s.matchers[1].value, "{");
}

static void handles_escapes_and_quoted_names(void **state)
{
    (void)state;
    store_selector s = parse_ok("{\"service.name\"=\"a\\\"b\\\\c\", k=`raw\\d`}");
    assert_string_equal(s.matchers[0].name, "service.name");
    assert_string_equal(s.matchers[0].value, "a\"b\\c");
    assert_string_equal(s.matchers[1].value, "raw\\d");
}

/* A selector's strings take room for what they hold, not for the rest of the text each: 2,000
 * matchers in 40 KB parse within a 256 KiB arena (each string took the rest of the text, 40 MB
 * in all, and a 4.5 KB selector of 222 matchers failed in 1 MiB). */
static void many_matchers_parse_in_linear_memory(void **state)
{
    (void)state;
    enum { N = 2000 };
    char *text = malloc(N * 24 + 8), *p = text;
    p += sprintf(p, "{");
    for (int i = 0; i < N; i++)
        p += sprintf(p, "%sl%d=\"v%d\"", i ? ", " : "", i, i);
    sprintf(p, "}");
    sp_arena *a = sp_arena_new(256 * 1024);
    store_selector sel;
    sp_err err = {0};
    if (store_parse_selector(text, a, &sel, &err) != 0)
        fail_msg("%zu bytes: %s", strlen(text), err.msg);
    assert_int_equal(sel.nmatchers, N);
    assert_string_equal(sel.matchers[N - 1].value, "v1999");
    sp_arena_free(a);
    free(text);
}

static void rejects_malformed_selectors(void **state)
{
    (void)state;
    const char *bad[] = {"{a=\"x\"",          "{a=x}",
                         "{a~\"x\"}",         "{=\"x\"}",
                         "{a=\"x\"} junk",    "{a=\"x\" b=\"y\"}",
                         "bad name{a=\"x\"}", "{a=\"unterminated}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        store_selector sel;
        sp_err err = {0};
        int rc = store_parse_selector(bad[i], arena, &sel, &err);
        if (rc != SP_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err.msg, "label selector"));
    }
}

typedef struct kvs {
    const char *const *kv; /* name, value, ..., NULL */
} kvs;

static const char *get(void *ctx, const char *name)
{
    const kvs *k = ctx;
    for (size_t i = 0; k->kv[i]; i += 2)
        if (strcmp(k->kv[i], name) == 0)
            return k->kv[i + 1];
    return NULL;
}

static int matches(const char *sel_text, const char *const *labels)
{
    store_selector sel = parse_ok(sel_text);
    store_match mm;
    sp_err err = {0};
    assert_int_equal(store_match_compile(&mm, sel.matchers, sel.nmatchers, &err), 0);
    kvs k = {labels};
    int r = store_match_eval(&mm, get, &k);
    store_match_free(&mm);
    return r;
}

static void matchers_follow_prometheus_rules(void **state)
{
    (void)state;
    const char *const l[] = {"service_name", "api-gw", "env", "prod", NULL};
    assert_true(matches("{}", l));
    assert_true(matches("{service_name=\"api-gw\"}", l));
    assert_false(matches("{service_name=\"api\"}", l));
    assert_true(matches("{service_name=~\"api.*\"}", l));
    assert_false(matches("{service_name=~\"api\"}", l)); /* anchored */
    assert_true(matches("{service_name!~\"web|db\"}", l));
    assert_true(matches("{region=\"\"}", l)); /* missing = "" */
    assert_false(matches("{region!=\"\"}", l));
    assert_true(matches("{region=~\"|eu\"}", l));
    assert_false(matches("{env=\"prod\", service_name=\"x\"}", l));

    store_matcher bad = {"a", "([", STORE_MATCH_RE};
    store_match mm;
    sp_err err = {0};
    assert_int_equal(store_match_compile(&mm, &bad, 1, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "bad regular expression"));
}

static int compile_rc(const char *const *regexes, size_t n, sp_err *err)
{
    store_matcher m[4];
    for (size_t i = 0; i < n; i++)
        m[i] = (store_matcher){"a", regexes[i], STORE_MATCH_RE};
    store_match mm;
    int rc = store_match_compile(&mm, m, n, err);
    if (!rc)
        store_match_free(&mm);
    return rc;
}

static void rejects_regexes_too_large_to_compile(void **state)
{
    (void)state;
    /* glibc's regcomp() would write the repetitions out: terabytes for 25 characters. */
    const char *const bad[] = {"((x{1000}){1000}){1000}",
                               "x{1000}{1000}",
                               "(a|b){2000}",
                               "[[:alpha:]]{5000}",
                               "y{99999999999999999999}",
                               "z+++++++++++++++++++++++++++",
                               "((((((((((((((z+)+)+)+)+)+)+)+)+)+)+)+)+)+)+"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&bad[i], 1, &err) != SP_EINVAL)
            fail_msg("compiled \"%s\"", bad[i]);
        assert_non_null(strstr(err.msg, "too large"));
    }
    const char *const ok[] = {"x{1000}", "(api|web)-[0-9]{1,3}", "[{]x", "a{,5}b{2,}",
                              "[]{}[:alpha:]]{100}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&ok[i], 1, &err) != 0)
            fail_msg("\"%s\": %s", ok[i], err.msg);
    }
    /* The budget also covers all the regexes of one selector together. */
    const char *const three[] = {"a{3000}", "b{3000}", "c{3000}"};
    sp_err err = {0};
    assert_int_equal(compile_rc(three, 2, &err), 0);
    assert_int_equal(compile_rc(three, 3, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "too large"));
}

static void rejects_back_references(void **state)
{
    (void)state;
    /* glibc would backtrack for minutes over one long label value; RE2 has no \1 either. */
    const char *const bad[] = {"(a*)(a*)(a*)\\2\\3\\4x", "(x)\\1"};
    for (size_t i = 0; i < 2; i++) {
        sp_err err = {0};
        assert_int_equal(compile_rc(&bad[i], 1, &err), SP_EINVAL);
        assert_non_null(strstr(err.msg, "back-references"));
    }
    const char *const ok[] = {"[\\1]x", "a\\.b\\0?"}; /* in brackets a backslash is a member */
    sp_err err = {0};
    assert_int_equal(compile_rc(ok, 2, &err), 0);
}

static void rejects_repetitions_of_what_can_match_nothing(void **state)
{
    (void)state;
    /* glibc's regcomp() takes exponential time in the number of such loops. */
    const char *const bad[] = {"(t*)*", "((t)?)*", "((t)*)+",  "(t*|x)*", "a**",
                               "(a|)*", "(^$)+",   "(x?){2,}", "(\\b)*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&bad[i], 1, &err) != SP_EINVAL)
            fail_msg("compiled \"%s\"", bad[i]);
        assert_non_null(strstr(err.msg, "empty string"));
    }
    const char *const ok[] = {"(at*)*", "((ab)*c)*", "((t)*)?", "t*?",     ".*",
                              "(a|b)+", "a{2,}",     "(a+)+",   "(x?){3}", "[*]*"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&ok[i], 1, &err) != 0)
            fail_msg("\"%s\": %s", ok[i], err.msg);
    }
}

/* Counts of what can match "" cost regcomp() memory in the square of the copies, and more when
 * a group has several empty ways (fuzz_selector: (xxxc||||:=|){100} took 2.6 GB, (x|||||){100}
 * 4 GB and 11 s). The rewrites the message suggests, and the usual label regexes, compile. */
static void rejects_counts_of_what_can_match_nothing_twice(void **state)
{
    (void)state;
    const char *const bad[] = {"(xxxc||||:=|){100}", "(x|||||){100}",  "(a?|b?){2}",
                               "(a|||b){10}",        "((a|){8}|){3}",  "(a|){1000}",
                               "((a|){30}){30}",     "(x(a|){100}){3}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&bad[i], 1, &err) != SP_EINVAL)
            fail_msg("compiled \"%s\"", bad[i]);
        assert_non_null(strstr(err.msg, "can match the empty string more than once"));
    }
    const char *const ok[] = {"(a|b){0,10}", "a{0,1000}",  "(a|){100}",      "(a?){256}",
                              "(a|b)?",      "(a?|b?)",    "(GET|POST) /.*", "[0-9]{1,3}",
                              "(a||b)",      "((a|)(b|))", "(x|||||)?"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&ok[i], 1, &err) != 0)
            fail_msg("\"%s\": %s", ok[i], err.msg);
    }
}

static void rejects_parentheses_that_would_escape_the_anchors(void **state)
{
    (void)state;
    /* Compiled as ^(...)$: "nope)|(.*" matched every value, "a){1000}|(b" repeated the anchors. */
    const char *const bad[] = {"nope)|(.*", "a){1000}|(b", "a)", ")("};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_err err = {0};
        if (compile_rc(&bad[i], 1, &err) != SP_EINVAL)
            fail_msg("compiled \"%s\"", bad[i]);
        assert_non_null(strstr(err.msg, "unbalanced parentheses"));
    }
    const char *const ok[] = {"\\)x\\(", "[)(]+", "(a(b)c)"};
    sp_err err = {0};
    assert_int_equal(compile_rc(ok, 3, &err), 0);
}

static void frame_names_are_never_empty(void **state)
{
    (void)state;
    char buf[128];
    assert_string_equal(store_frame_name(buf, sizeof buf, "main", "native", 1, "x"), "main");
    assert_string_equal(store_frame_name(buf, sizeof buf, NULL, "native", 0x7f3a21,
                                         "/lib/x86_64-linux-gnu/libc.so.6"),
                        "native 0x7f3a21 libc.so.6");
    assert_string_equal(store_frame_name(buf, sizeof buf, "", "", 0x4010a0, NULL), "0x4010a0");
    assert_string_equal(store_frame_name(buf, sizeof buf, "", "kernel", 0xffff, ""),
                        "kernel 0xffff");
    assert_string_equal(store_frame_name(buf, sizeof buf, NULL, NULL, 0, NULL), "unknown");
    assert_string_equal(store_frame_name(buf, sizeof buf, NULL, NULL, 0, "app"), "0x0 app");
}

int main(void)
{
    arena = sp_arena_new(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_prometheus_selectors),
        cmocka_unit_test(parses_type_id_before_the_brace),
        cmocka_unit_test(accepts_matchers_without_braces),
        cmocka_unit_test(handles_escapes_and_quoted_names),
        cmocka_unit_test(rejects_malformed_selectors),
        cmocka_unit_test(matchers_follow_prometheus_rules),
        cmocka_unit_test(rejects_regexes_too_large_to_compile),
        cmocka_unit_test(rejects_back_references),
        cmocka_unit_test(rejects_repetitions_of_what_can_match_nothing),
        cmocka_unit_test(rejects_counts_of_what_can_match_nothing_twice),
        cmocka_unit_test(many_matchers_parse_in_linear_memory),
        cmocka_unit_test(rejects_parentheses_that_would_escape_the_anchors),
        cmocka_unit_test(frame_names_are_never_empty),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sp_arena_free(arena);
    return rc;
}
