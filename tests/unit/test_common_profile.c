/* common/profile: sp_frame_name() (and sp_frame_name_parts()) write exactly what
 * snprintf("%s%s0x%" PRIx64 "%s%s") wrote before it was written by hand, truncation included, for
 * every buffer size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <inttypes.h>

#include "common/profile.h"

/* The printf version, as it was. */
static void reference(char *buf, size_t n, const char *type, uint64_t addr, const char *file)
{
    const char *base = NULL;
    if (file && *file) {
        const char *slash = strrchr(file, '/');
        base = slash && slash[1] ? slash + 1 : file;
    }
    int has_type = type && *type;
    if (!has_type && !addr && !base) {
        snprintf(buf, n, "unknown");
        return;
    }
    snprintf(buf, n, "%s%s0x%" PRIx64 "%s%s", has_type ? type : "", has_type ? " " : "", addr,
             base ? " " : "", base ? base : "");
}

static void frame_name_matches_printf_at_every_buffer_size(void **state)
{
    (void)state;
    const char *types[] = {NULL, "", "native", "kernel", "a-much-longer-frame-type"};
    const uint64_t addrs[] = {0, 1, 0xf, 0x10, 0x9a3f0, 0xdeadbeefcafeULL, UINT64_MAX};
    const char *files[] = {
        NULL, "", "/", "libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "dir/", "/usr/bin/app"};
    int cases = 0;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (size_t a = 0; a < sizeof addrs / sizeof *addrs; a++)
            for (size_t f = 0; f < sizeof files / sizeof *files; f++)
                for (size_t n = 1; n <= 64; n++) {
                    char want[64], got[64];
                    memset(got, 'Z', sizeof got);
                    reference(want, n, types[t], addrs[a], files[f]);
                    const char *r = sp_frame_name(got, n, types[t], addrs[a], files[f]);
                    assert_ptr_equal(r, got);
                    assert_string_equal(got, want);
                    /* the converter's way: the parts measured once, the length returned */
                    const char *base = sp_frame_basename(files[f]);
                    memset(got, 'Z', sizeof got);
                    size_t len = sp_frame_name_parts(got, n, types[t] ? types[t] : "",
                                                     types[t] ? strlen(types[t]) : 0, addrs[a],
                                                     base, base ? strlen(base) : 0);
                    assert_string_equal(got, want);
                    assert_int_equal(len, strlen(want));
                    char whole[256];
                    reference(whole, sizeof whole, types[t], addrs[a], files[f]);
                    assert_int_equal(sp_frame_name_len(types[t] ? strlen(types[t]) : 0, addrs[a],
                                                       base ? strlen(base) : 0),
                                     strlen(whole));
                    cases++;
                }
    assert_int_equal(cases, 5 * 7 * 7 * 64);
    assert_string_equal(sp_frame_name(NULL, 0, "native", 1, NULL), "unknown");
}

/* A location's names: every line's function name (innermost first, nameless lines skipped), the
 * made-up name only when no line has one, at most max, nothing for location 0 or out of range. */
static void location_names_follow_one_rule(void **state)
{
    (void)state;
    static const char *const strs[] = {"", "inner", "outer", "native", "/lib/libc.so.6"};
    sp_function fn[3] = {{0}};
    fn[1].name = 1;
    fn[2].name = 2;
    sp_line two[3] = {{.function_id = 1}, {.function_id = 0}, {.function_id = 2}};
    sp_line none[1] = {{.function_id = 0}};
    sp_mapping map[2] = {{0}};
    map[1].filename = 4;
    sp_location loc[4] = {{0}};
    loc[1].lines = two;
    loc[1].nlines = 3;
    loc[2].lines = none;
    loc[2].nlines = 1;
    loc[2].mapping_id = 1;
    loc[2].frame_type = 3;
    loc[2].address = 0x9a3f0;
    loc[3].mapping_id = 7; /* out of range: no mapping file */
    sp_profile p = {0};
    p.strings = (const char **)strs;
    p.nstrings = 5;
    p.functions = fn;
    p.nfunctions = 3;
    p.mappings = map;
    p.nmappings = 2;
    p.locations = loc;
    p.nlocations = 4;
    const char *name[4];
    uint32_t len[4];
    char buf[SP_FRAME_NAME_MAX];
    assert_int_equal(sp_location_names(&p, 1, name, len, 4, buf), 2);
    assert_string_equal(name[0], "inner");
    assert_string_equal(name[1], "outer");
    assert_int_equal(len[1], 5);
    assert_int_equal(sp_location_names(&p, 1, name, NULL, 1, buf), 1);
    assert_string_equal(name[0], "inner");
    assert_int_equal(sp_location_names(&p, 2, name, len, 4, buf), 1);
    assert_string_equal(name[0], "native 0x9a3f0 libc.so.6");
    assert_ptr_equal(name[0], buf);
    assert_int_equal(len[0], strlen("native 0x9a3f0 libc.so.6"));
    assert_int_equal(sp_location_names(&p, 3, name, len, 4, buf), 1);
    assert_string_equal(name[0], "unknown");
    assert_int_equal(sp_location_names(&p, 0, name, len, 4, buf), 0);
    assert_int_equal(sp_location_names(&p, 4, name, len, 4, buf), 0);
    assert_int_equal(sp_location_names(&p, 2, name, len, 0, buf), 0);
}

/* Two requests' tables, laid out differently (other indices, other string order), describe
 * the same two locations: a symbolized one with an inlined line and a bare native one. */
typedef struct two_tables {
    sp_function fn[4];
    sp_mapping map[3];
    sp_line lines[3];
    sp_location loc[4];
    sp_profile p;
} two_tables;

static void fill(two_tables *t, int layout)
{
    static const char *const s0[] = {"",       "inner",          "outer",    "a.c",
                                     "native", "/lib/libc.so.6", "0123abcd", "python"};
    static const char *const s1[] = {"",       "python", "0123abcd", "/lib/libc.so.6",
                                     "native", "a.c",    "outer",    "inner"};
    const uint32_t *ix = layout ? (const uint32_t[]){0, 7, 6, 5, 4, 3, 2, 1}
                                : (const uint32_t[]){0, 1, 2, 3, 4, 5, 6, 7};
    memset(t, 0, sizeof *t);
    uint32_t fi = layout ? 2 : 1, fo = layout ? 1 : 2, li = layout ? 3 : 1, ln = layout ? 1 : 3;
    uint32_t mi = layout ? 2 : 1;
    t->fn[fi] =
        (sp_function){.name = ix[1], .system_name = ix[1], .filename = ix[3], .start_line = 4};
    t->fn[fo] = (sp_function){.name = ix[2], .system_name = ix[2], .filename = ix[3]};
    t->fn[3] = (sp_function){.name = ix[4], .made_up = 1}; /* any name: not read */
    t->map[mi] = (sp_mapping){.filename = ix[5], .build_id = ix[6]};
    t->lines[0] = (sp_line){.function_id = fi, .line = 12, .column = 3};
    t->lines[1] = (sp_line){.function_id = fo, .line = 40};
    t->lines[2] = (sp_line){.function_id = 3};
    t->loc[li] = (sp_location){
        .mapping_id = mi, .address = 0x10, .lines = t->lines, .nlines = 2, .frame_type = ix[7]};
    t->loc[ln] = (sp_location){.mapping_id = mi,
                               .bare = 1,
                               .address = 0x9a3f0,
                               .lines = &t->lines[2],
                               .nlines = 1,
                               .frame_type = ix[4]};
    t->p = (sp_profile){.strings = (const char **)(layout ? s1 : s0),
                        .nstrings = 8,
                        .functions = t->fn,
                        .nfunctions = 4,
                        .mappings = t->map,
                        .nmappings = 3,
                        .locations = t->loc,
                        .nlocations = 4};
}

static int same(sp_print x, sp_print y)
{
    return x.a == y.a && x.b == y.b;
}

/* Equal content gives equal prints whatever the tables' layout; any stored part of a location
 * changed gives another print; the column (never stored) changes nothing. */
static void location_prints_follow_content_not_layout(void **state)
{
    (void)state;
    sp_arena *a = sp_arena_new(0);
    static two_tables x, y;
    sp_print *px, *py;
    fill(&x, 0);
    fill(&y, 1);
    assert_int_equal(sp_location_prints(&x.p, a, &px), 0);
    assert_int_equal(sp_location_prints(&y.p, a, &py), 0);
    assert_true(same(px[1], py[3])); /* the symbolized location */
    assert_true(same(px[3], py[1])); /* the bare one */
    assert_false(same(px[1], px[3]));
    assert_int_equal(px[0].a | px[0].b, 0); /* location 0 is none */
    /* Each stored part, changed in y's copy of the symbolized location, moves its print. */
    for (int change = 0; change < 9; change++) {
        fill(&y, 1);
        switch (change) {
        case 0:
            y.loc[3].address++;
            break;
        case 1:
            y.lines[0].line++;
            break;
        case 2:
            y.fn[2].start_line++;
            break;
        case 3:
            y.fn[2].filename = 2;
            break; /* "0123abcd" */
        case 4:
            y.fn[2].system_name = 6;
            break; /* "outer" */
        case 5:
            y.map[2].build_id = 3;
            break; /* "/lib/libc.so.6" */
        case 6:
            y.loc[3].frame_type = 4;
            break; /* "native" */
        case 7:
            y.loc[3].nlines = 1;
            break; /* the inlined line dropped */
        case 8:
            y.lines[0].function_id = 1;
            break; /* outer, not inner */
        }
        assert_int_equal(sp_location_prints(&y.p, a, &py), 0);
        assert_false(same(px[1], py[3]));
    }
    fill(&y, 1);
    y.lines[0].column = 99;
    y.fn[3].name = 2; /* the made-up function's name: its location says it */
    assert_int_equal(sp_location_prints(&y.p, a, &py), 0);
    assert_true(same(px[1], py[3]));
    assert_true(same(px[3], py[1]));
    y.loc[1].bare = 0;
    assert_int_equal(sp_location_prints(&y.p, a, &py), 0);
    assert_false(same(px[3], py[1]));
    sp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_name_matches_printf_at_every_buffer_size),
        cmocka_unit_test(location_names_follow_one_rule),
        cmocka_unit_test(location_prints_follow_content_not_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
