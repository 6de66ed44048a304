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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_name_matches_printf_at_every_buffer_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
