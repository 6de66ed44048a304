/* libFuzzer target: debug files as they come from the network (PUT /api/v1/debuginfo/{id}, a
 * debuginfod download) through symbolizer/debugfile.c: elfutils' libdwfl/libdw read the ELF and
 * DWARF, libiberty demangles the names.
 * Input: the whole debug file. It is opened from memory (a private copy, so libelf cannot write
 * into libFuzzer's buffer), then looked up at a handful of addresses: the first 8 bytes and the
 * last 8 bytes read as little-endian integers (also cut to 16 and 20 bits, so a mutated tail steers
 * lookups into a small file's text), and fixed ones where the seeds' functions are. The file's own
 * build id opens it again; any other build id is refused. sym_demangle() runs over a
 * NUL-terminated slice with a buffer of a size taken from the input.
 * Invariants: an open fails only with SP_EINVAL / SP_ENOMEM and a message; a lookup returns 0 or
 * SP_ENOMEM, at most SYM_FRAMES_MAX frames, each with a non-empty function name and a file
 * (never NULL), both at most SYM_NAME_MAX bytes, lines >= 0 (D3); opening (with or without a
 * build id) never writes into the caller's bytes; a demangled name is NUL-terminated within its
 * buffer.
 *
 * Seeds (corpus/debugfile/), from the tiny C and C++ programs below (< 20 KB each):
 *   gcc -g -Os -o c_os tiny.c && objcopy --only-keep-debug c_os c_os.debug      (DWARF 5)
 *   gcc -g -Os -gdwarf-4 ...                                                   (DWARF 4)
 *   gcc -g -O1 -gz=zlib ...                                    (compressed debug sections)
 *   gcc -g -Os -no-pie ...                                           (ET_EXEC at 0x400000)
 *   g++ -g -Os -o cc_os tiny.cc && objcopy --only-keep-debug ...       (C++ linkage names)
 *   gcc -Os -o c tiny.c && strip --strip-debug -o c_symtab c       (symbol table, no DWARF)
 *   head -c 4096 c_os.debug > truncated                          (no section headers left)
 * tiny.c: int leaf(int x) (noinline) { return x * 31 + 7; }, an always_inline mix(a, b) calling
 * leaf(a ^ b), int walk(const char *p, int n) looping mix() over p, main calling walk();
 * tiny.cc: ns::Cls::method(int) const (noinline), a template ns::twice<T>, main calling both.
 */
#include "symbolizer/debugfile.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_check.h"

/* Where the seeds' functions are (c_os.debug: main 0x1040, leaf 0x1139, walk 0x1140 with mix
 * inlined at 0x1155 and the call to leaf at 0x115c; cc_os.debug: Cls::method 0x115a; the
 * non-PIE seed: main 0x401020, leaf 0x401116, walk 0x40111d). */
static const uint64_t fixed[] = {0x1000, 0x1040,   0x1139,   0x1140,   0x1155, 0x115a,    0x115c,
                                 0x1161, 0x401020, 0x401116, 0x401130, 0,      UINT64_MAX};

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void check_frames(const sym_frame *f, size_t n)
{
    CHECK(n <= SYM_FRAMES_MAX);
    CHECK(n == 0 || f);
    for (size_t i = 0; i < n; i++) {
        CHECK(f[i].function && f[i].file);
        size_t fl = strlen(f[i].function);
        CHECK(fl > 0 && fl <= SYM_NAME_MAX);
        CHECK(strlen(f[i].file) <= SYM_NAME_MAX);
        CHECK(f[i].line >= 0 && f[i].start_line >= 0);
    }
}

static void lookups(debugfile *d, const uint8_t *data, size_t size, sp_arena *a)
{
    uint64_t addr[sizeof fixed / sizeof fixed[0] + 6];
    size_t na = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        addr[na++] = fixed[i];
    if (size >= 8) {
        uint64_t head = le64(data), tail = le64(data + size - 8);
        addr[na++] = head;
        addr[na++] = tail;
        addr[na++] = tail & 0xffff;
        addr[na++] = tail & 0xfffff;
        addr[na++] = (tail >> 16) & 0xffff;
        addr[na++] = 0x400000 | (tail & 0xffff);
    }
    for (size_t i = 0; i < na; i++) {
        sym_frame *f = NULL;
        size_t n = 99;
        int rc = debugfile_lookup(d, addr[i], a, &f, &n);
        CHECK(rc == 0 || rc == SP_ENOMEM);
        if (rc == 0)
            check_frames(f, n);
    }
}

/* The file's own build id opens it again; another one is refused (D2). */
static void reopen(const uint8_t *copy, size_t size, const char *id)
{
    debugfile *d = NULL;
    sp_err err = {0};
    if (*id) {
        int rc = debugfile_open_memory(&d, copy, size, id, &err);
        CHECK(rc == 0 || rc == SP_ENOMEM);
        if (!rc)
            CHECK(strcmp(debugfile_build_id(d), id) == 0);
        debugfile_close(d);
    }
    char other[2 * SYM_BUILD_ID_MAX + 1];
    snprintf(other, sizeof other, "%s", *id ? id : "00");
    other[0] = other[0] == '0' ? '1' : '0';
    d = NULL;
    int rc = debugfile_open_memory(&d, copy, size, other, &err);
    CHECK(rc == SP_EINVAL || rc == SP_ENOMEM);
    CHECK(d == NULL && err.msg[0]);
}

static void demangle(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    /* The slice: byte 0 picks its start, byte 1 the buffer size (1..256); at most 512 bytes. */
    size_t start = 2 + (size_t)data[0] * 7 % (size - 1);
    if (start > size)
        start = size;
    size_t len = size - start < 512 ? size - start : 512;
    char *name = malloc(len + 1);
    if (!name)
        return;
    memcpy(name, data + start, len);
    name[len] = 0;
    size_t n = 1 + data[1];
    char *buf = malloc(n);
    if (buf) {
        const char *out = sym_demangle(name, buf, n);
        CHECK(out == name || out == buf);
        if (out == buf)
            CHECK(memchr(buf, 0, n) != NULL);
        free(buf);
    }
    free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    demangle(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    debugfile *d = NULL;
    sp_err err = {0};
    int rc = debugfile_open_memory(&d, copy, size, NULL, &err);
    CHECK(rc == 0 || rc == SP_EINVAL || rc == SP_ENOMEM);
    if (rc) {
        CHECK(d == NULL && err.msg[0]);
    } else {
        char id[2 * SYM_BUILD_ID_MAX + 1];
        const char *bid = debugfile_build_id(d);
        CHECK(bid && strlen(bid) < sizeof id && strlen(bid) % 2 == 0);
        strcpy(id, bid);
        reopen(copy, size, id);
        /* sym_add_file() opens, closes, then writes the same bytes to disk: opening never
         * writes into them. (Lookups may: libelf decompresses SHF_COMPRESSED sections by
         * rewriting their headers in the image, so only the opens are checked.) */
        CHECK(memcmp(copy, data, size) == 0);
        sp_arena *a = sp_arena_new(0);
        if (a) {
            lookups(d, data, size, a);
            sp_arena_free(a);
        }
        debugfile_close(d);
    }
    CHECK(rc == 0 || memcmp(copy, data, size) == 0);
    free(copy);
    return 0;
}
