/* common/profile: sp_frame_name() writes exactly what snprintf("%s%s0x%" PRIx64 "%s%s") wrote
 * before it was written by hand, truncation included, for every buffer size. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_name_matches_printf_at_every_buffer_size),
        cmocka_unit_test(location_names_follow_one_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
