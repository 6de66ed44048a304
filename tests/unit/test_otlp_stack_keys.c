/* The OTLP converter's stack fingerprints (sp_profile.stack_keys): the same frames give the same
 * fingerprint whatever the request's table order, and a change in anything the store keys a
 * stack by (function name, line, address, mapping file, frame order) gives another. A wrong
 * "same" would file one stack's samples under another, so the differences are the point. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/arena.h"
#include "otlp/convert.h"
#include "otlp/validate.h"

#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary dict_t;
typedef Opentelemetry__Proto__Profiles__V1development__Function fn_t;
typedef Opentelemetry__Proto__Profiles__V1development__Location loc_t;
typedef Opentelemetry__Proto__Profiles__V1development__Line line_t;
typedef Opentelemetry__Proto__Profiles__V1development__Mapping map_t;
typedef Opentelemetry__Proto__Profiles__V1development__Stack stack_t_;
typedef Opentelemetry__Proto__Profiles__V1development__Sample sample_t;
typedef Opentelemetry__Proto__Profiles__V1development__Profile profile_t;
typedef Opentelemetry__Proto__Profiles__V1development__ScopeProfiles scope_t;
typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles res_t;
typedef Opentelemetry__Proto__Profiles__V1development__ValueType vt_t;

/* One frame of the stack under test. */
typedef struct frame {
    const char *fn, *map;
    uint64_t address;
    int64_t line;
} frame;

enum { MAXF = 4 };

/* A request whose dictionary holds the frames' strings, functions, mappings and locations in
 * an order set by `rot` (every table rotated by rot places; index 0 stays the empty entry), and
 * one profile with one sample of the stack f[0..n) (leaf first). Everything in arena a. */
static otlp_profiles_req *request(sp_arena *a, const frame *f, size_t n, size_t rot)
{
#define NEW(T, init)                                                                               \
    ({                                                                                             \
        T *p_ = sp_arena_alloc(a, sizeof(T));                                                      \
        T v_ = init;                                                                               \
        *p_ = v_;                                                                                  \
        p_;                                                                                        \
    })
    dict_t *d =
        NEW(dict_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT);
    /* strings: "", "cpu", "nanoseconds", then per frame its function and mapping file */
    size_t ns = 3 + 2 * n;
    char **s = sp_arena_calloc(a, ns, sizeof *s);
    s[0] = "";
    s[1] = "cpu";
    s[2] = "nanoseconds";
    for (size_t i = 0; i < n; i++) {
        size_t at = 1 + (i + rot) % n; /* slot of frame i in the rotated tables */
        s[2 + at] = (char *)f[i].fn;
        s[2 + n + at] = (char *)f[i].map;
    }
    d->string_table = s;
    d->n_string_table = ns;
    fn_t **fns = sp_arena_calloc(a, n + 1, sizeof *fns);
    map_t **maps = sp_arena_calloc(a, n + 1, sizeof *maps);
    loc_t **locs = sp_arena_calloc(a, n + 1, sizeof *locs);
    fns[0] = NEW(fn_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__FUNCTION__INIT);
    maps[0] = NEW(map_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__MAPPING__INIT);
    locs[0] = NEW(loc_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT);
    stack_t_ *st = NEW(stack_t_, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT);
    st->location_indices = sp_arena_calloc(a, n, sizeof *st->location_indices);
    st->n_location_indices = n;
    for (size_t i = 0; i < n; i++) {
        size_t at = 1 + (i + rot) % n;
        fn_t *fn = NEW(fn_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__FUNCTION__INIT);
        fn->name_strindex = (int32_t)(2 + at);
        fns[at] = fn;
        map_t *m = NEW(map_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__MAPPING__INIT);
        m->filename_strindex = (int32_t)(2 + n + at);
        maps[at] = m;
        loc_t *l = NEW(loc_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT);
        l->mapping_index = (int32_t)at;
        l->address = f[i].address;
        line_t *ln = NEW(line_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LINE__INIT);
        ln->function_index = (int32_t)at;
        ln->line = f[i].line;
        l->lines = sp_arena_calloc(a, 1, sizeof *l->lines);
        l->lines[0] = ln;
        l->n_lines = 1;
        locs[at] = l;
        st->location_indices[i] = (int32_t)at;
    }
    d->function_table = fns;
    d->n_function_table = n + 1;
    d->mapping_table = maps;
    d->n_mapping_table = n + 1;
    d->location_table = locs;
    d->n_location_table = n + 1;
    stack_t_ **stacks = sp_arena_calloc(a, 2, sizeof *stacks);
    stacks[0] = NEW(stack_t_, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT);
    stacks[1] = st;
    d->stack_table = stacks;
    d->n_stack_table = 2;

    sample_t *smp = NEW(sample_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SAMPLE__INIT);
    smp->stack_index = 1;
    smp->values = sp_arena_calloc(a, 1, sizeof *smp->values);
    smp->values[0] = 10000000;
    smp->n_values = 1;
    profile_t *p = NEW(profile_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILE__INIT);
    vt_t *vt = NEW(vt_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__VALUE_TYPE__INIT);
    vt->type_strindex = 1;
    vt->unit_strindex = 2;
    p->sample_type = vt;
    p->samples = sp_arena_calloc(a, 1, sizeof *p->samples);
    p->samples[0] = smp;
    p->n_samples = 1;
    p->time_unix_nano = 1700000000000000000ull;
    scope_t *sc = NEW(scope_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SCOPE_PROFILES__INIT);
    sc->profiles = sp_arena_calloc(a, 1, sizeof *sc->profiles);
    sc->profiles[0] = p;
    sc->n_profiles = 1;
    res_t *r = NEW(res_t, OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__RESOURCE_PROFILES__INIT);
    r->scope_profiles = sp_arena_calloc(a, 1, sizeof *r->scope_profiles);
    r->scope_profiles[0] = sc;
    r->n_scope_profiles = 1;
    otlp_profiles_req *req = NEW(
        otlp_profiles_req,
        OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_REQUEST__INIT);
    req->resource_profiles = sp_arena_calloc(a, 1, sizeof *req->resource_profiles);
    req->resource_profiles[0] = r;
    req->n_resource_profiles = 1;
    req->dictionary = d;
    return req;
#undef NEW
}

/* The fingerprint the converter gives the sample's stack. */
static sp_key128 key_of(const frame *f, size_t n, size_t rot)
{
    sp_arena *a = sp_arena_new(0);
    otlp_profiles_req *req = request(a, f, n, rot);
    otlp_verdict v;
    sp_err err = {0};
    if (otlp_validate_profiles(req, a, &v, &err))
        fail_msg("validate: %s", err.msg);
    assert_int_equal(v.bad, 0);
    sp_batch b = {0};
    b.arena = a;
    if (otlp_profiles_convert(req, &v, 0, &b, &err))
        fail_msg("convert: %s", err.msg);
    assert_int_equal(b.nprofiles, 1);
    const sp_profile *p = b.profiles[0];
    assert_int_equal(p->nsamples, 1);
    const sp_sample *s = &p->samples[0];
    assert_non_null(p->stack_keys);
    assert_true(s->stack_key > 0 && s->stack_key < p->nstack_keys);
    sp_key128 k = p->stack_keys[s->stack_key];
    assert_true(k.h1 || k.h2);
    sp_arena_free(a);
    return k;
}

static int same(sp_key128 x, sp_key128 y)
{
    return x.h1 == y.h1 && x.h2 == y.h2;
}

static void equal_frames_give_equal_keys_whatever_the_table_order(void **state)
{
    (void)state;
    const frame f[] = {{"leaf", "/lib/a.so", 0x10, 3},
                       {"mid", "/lib/a.so", 0x20, 7},
                       {"main", "/bin/app", 0x30, 1}};
    sp_key128 k0 = key_of(f, 3, 0);
    assert_true(same(k0, key_of(f, 3, 1)));
    assert_true(same(k0, key_of(f, 3, 2)));
}

static void any_keyed_difference_gives_another_key(void **state)
{
    (void)state;
    const frame base[] = {{"leaf", "/lib/a.so", 0x10, 3},
                          {"mid", "/lib/a.so", 0x20, 7},
                          {"main", "/bin/app", 0x30, 1}};
    sp_key128 k0 = key_of(base, 3, 0);
    frame f[3];
    for (int change = 0; change < 6; change++) {
        memcpy(f, base, sizeof f);
        size_t n = 3;
        switch (change) {
        case 0:
            f[1].fn = "mid2";
            break;
        case 1:
            f[1].line = 8;
            break;
        case 2:
            f[0].address = 0x11;
            break;
        case 3:
            f[2].map = "/bin/app2";
            break;
        case 4: /* frames swapped */
            f[0] = base[1];
            f[1] = base[0];
            break;
        default: /* a frame fewer */
            n = 2;
            break;
        }
        if (same(k0, key_of(f, n, (size_t)change % 3)))
            fail_msg("change %d kept the key", change);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(equal_frames_give_equal_keys_whatever_the_table_order),
        cmocka_unit_test(any_keyed_difference_gives_another_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
