/* libFuzzer target: label selectors as Grafana and Pyroscope clients send them
 * (storage-adapter/selector.c: store_parse_selector) and their evaluation against label sets
 * (store_match_compile / store_match_eval).
 * Input: the selector text. Whatever parses is printed back (with and without braces) and must
 * parse to the same matchers; every matcher is evaluated alone and negated against a few label
 * sets (Prometheus rules: a missing label is "", = and != disagree, =~ and !~ disagree) and the
 * whole selector must be the conjunction of its matchers. */
#include "common/buf.h"
#include "storage-adapter/match.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

/* A label set: names and values, NULL-terminated. */
typedef struct labels {
    const char *const *kv;
} labels;

static const char *get(void *ctx, const char *name)
{
    const labels *l = ctx;
    for (size_t i = 0; l->kv[i]; i += 2)
        if (strcmp(l->kv[i], name) == 0)
            return l->kv[i + 1];
    return NULL;
}

/* A matcher's value written back as a "..." literal the parser reads as the same bytes. */
static void put_quoted(sp_buf *b, const char *s)
{
    sp_buf_append(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            sp_buf_append(b, "\\", 1);
        sp_buf_append(b, s, 1);
    }
    sp_buf_append(b, "\"", 1);
}

static void print(sp_buf *b, const store_selector *sel, int braces)
{
    static const char *ops[] = {"=", "!=", "=~", "!~"};
    if (braces)
        sp_buf_append(b, "{", 1);
    for (size_t i = 0; i < sel->nmatchers; i++) {
        if (i)
            sp_buf_append(b, ", ", 2);
        put_quoted(b, sel->matchers[i].name);
        sp_buf_append(b, ops[sel->matchers[i].op], strlen(ops[sel->matchers[i].op]));
        put_quoted(b, sel->matchers[i].value);
    }
    if (braces)
        sp_buf_append(b, "}", 1);
    sp_buf_append(b, "", 1);
}

static void same_matchers(const store_selector *a, const store_selector *b)
{
    CHECK(a->nmatchers == b->nmatchers);
    for (size_t i = 0; i < a->nmatchers; i++) {
        CHECK(a->matchers[i].op == b->matchers[i].op);
        CHECK(strcmp(a->matchers[i].name, b->matchers[i].name) == 0);
        CHECK(strcmp(a->matchers[i].value, b->matchers[i].value) == 0);
    }
}

static void reparse(const store_selector *sel, int braces)
{
    sp_buf b;
    sp_buf_init(&b, 0);
    print(&b, sel, braces);
    sp_arena *a = sp_arena_new(1u << 20);
    store_selector again;
    sp_err err = {0};
    CHECK(store_parse_selector((const char *)b.data, a, &again, &err) == 0);
    same_matchers(sel, &again);
    CHECK(again.type_id == NULL);
    sp_arena_free(a);
    sp_buf_free(&b);
}

/* Compiles one matcher alone; 0 when it does not compile (a bad or too large regex). */
static int compile_one(store_match *mm, const store_matcher *m)
{
    sp_err err = {0};
    if (store_match_compile(mm, m, 1, &err) == 0)
        return 1;
    CHECK(err.code == SP_EINVAL && err.msg[0]);
    return 0;
}

static void check_semantics(const store_selector *sel, const labels *sets, size_t nsets)
{
    store_match all;
    sp_err err = {0};
    int all_ok = store_match_compile(&all, sel->matchers, sel->nmatchers, &err) == 0;
    if (!all_ok)
        CHECK(err.code == SP_EINVAL && err.msg[0]);
    int conj[8], compiled = 1;
    for (size_t s = 0; s < nsets; s++)
        conj[s] = 1;
    for (size_t i = 0; i < sel->nmatchers; i++) {
        const store_matcher *m = &sel->matchers[i];
        store_matcher neg = *m;
        neg.op = m->op ^ 1; /* = <-> !=, =~ <-> !~ */
        store_match one, other;
        if (!compile_one(&one, m)) {
            compiled = 0;
            continue;
        }
        CHECK(compile_one(&other, &neg));
        for (size_t s = 0; s < nsets; s++) {
            int r = store_match_eval(&one, get, (void *)&sets[s]);
            CHECK(r == 0 || r == 1);
            CHECK(store_match_eval(&other, get, (void *)&sets[s]) == !r);
            if (m->op == STORE_MATCH_EQ || m->op == STORE_MATCH_NEQ) {
                const char *v = get((void *)&sets[s], m->name);
                CHECK(r == ((strcmp(v ? v : "", m->value) == 0) == (m->op == STORE_MATCH_EQ)));
            }
            conj[s] &= r;
        }
        store_match_free(&one);
        store_match_free(&other);
    }
    /* Together they may pass the budget of all the regexes of a selector, alone not. */
    CHECK(all_ok ? compiled : !compiled || strstr(err.msg, "too large"));
    if (!all_ok)
        return;
    for (size_t s = 0; s < nsets; s++)
        CHECK(store_match_eval(&all, get, (void *)&sets[s]) == conj[s]);
    store_match_free(&all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) /* selectors are a line of text; regex compile time grows with length */
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;

    sp_arena *a = sp_arena_new(1u << 20);
    store_selector sel;
    sp_err err = {0};
    int rc = store_parse_selector(text, a, &sel, &err);
    if (rc) {
        CHECK(rc == SP_EINVAL || rc == SP_ETOOBIG);
        CHECK(err.code == rc && err.msg[0] != 0);
        sp_arena_free(a);
        free(text);
        return 0;
    }
    size_t commas = 0;
    for (const char *c = text; *c; c++)
        commas += *c == ',';
    CHECK(sel.nmatchers <= commas + 1);
    for (size_t i = 0; i < sel.nmatchers; i++) {
        const store_matcher *m = &sel.matchers[i];
        CHECK(m->name && m->value);
        CHECK(m->op >= STORE_MATCH_EQ && m->op <= STORE_MATCH_NRE);
    }
    CHECK(!sel.type_id || sel.type_id[0]);

    /* Printed back, the matchers read the same, in braces and (when there are any) without. */
    reparse(&sel, 1);
    if (sel.nmatchers)
        reparse(&sel, 0);

    /* Label sets: Grafana-like series, nothing at all, one made of the matchers' own names and
     * values (so = matchers find what they look for), and one of long values. */
    static const char *const series[] = {"service_name",
                                         "checkout",
                                         "__profile_type__",
                                         "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                                         "span_id",
                                         "",
                                         "k",
                                         "abc",
                                         NULL};
    static const char *const none[] = {NULL};
    size_t n = sel.nmatchers < 8 ? sel.nmatchers : 8;
    const char **own = calloc(2 * n + 1, sizeof *own);
    for (size_t i = 0; i < n; i++) {
        own[2 * i] = sel.matchers[i].name;
        own[2 * i + 1] = sel.matchers[i].value;
    }
    /* And long values: a label value can be a whole span name or command line. */
    static char run[257];
    memset(run, 'a', 256);
    const char **longv = calloc(2 * n + 1, sizeof *longv);
    for (size_t i = 0; i < n; i++) {
        longv[2 * i] = sel.matchers[i].name;
        longv[2 * i + 1] = run;
    }
    labels sets[] = {{series}, {none}, {own}, {longv}};
    check_semantics(&sel, sets, sizeof sets / sizeof sets[0]);

    free(own);
    free(longv);
    sp_arena_free(a);
    free(text);
    return 0;
}
