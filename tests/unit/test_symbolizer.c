/* symbolizer/: debug files opened and looked up (debugfile.c), demangling, and the build id
 * registry (symbolizer.c: local .build-id directories, misses remembered until retry_ns, uploads).
 *
 * The fixture compiles two tiny programs into a temp dir with the system compiler (`cc -g -O1`,
 * `c++ -g -O1`, as CI installs build-essential), each with a build id chosen here
 * (-Wl,--build-id=0x...), and splits their debug info with objcopy --only-keep-debug. The expected
 * answers come from outside elfutils: function addresses from binutils' nm, the call instruction
 * inside the inlined code from objdump, and lines from the sources below (the line each call is
 * written on).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "symbolizer/debugfile.h"
#include "symbolizer/symbolizer.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the programs -------------------------------------------------------------------------- */

#define C_ID   "5eed0000000000000000000000000000000000c1"
#define CXX_ID "5eed0000000000000000000000000000000000cc"

/* Line numbers below are the source's: keep them in step with the text. */
static const char c_src[] =
    "/* test_symbolizer's C program: only its code and debug info matter. */\n"           /* 1 */
    "__attribute__((noinline, noipa)) unsigned c_leaf(unsigned x)\n"                      /* 2 */
    "{\n"                                                                                 /* 3 */
    "    x ^= x >> 16;\n"                                                                 /* 4 */
    "    x *= 0x7feb352dU;\n"                                                             /* 5 */
    "    return x ^ (x >> 15);\n"                                                         /* 6 */
    "}\n"                                                                                 /* 7 */
    "\n"                                                                                  /* 8 */
    "static inline __attribute__((always_inline)) unsigned mix(unsigned a, unsigned b)\n" /* 9 */
    "{\n"                                                                                 /* 10 */
    "    unsigned h = c_leaf(a ^ (b << 3));\n"                                            /* 11 */
    "    return h + (b >> 1);\n"                                                          /* 12 */
    "}\n"                                                                                 /* 13 */
    "\n"                                                                                  /* 14 */
    "__attribute__((noinline, noipa)) unsigned c_walk(const unsigned char *p, int n)\n"   /* 15 */
    "{\n"                                                                                 /* 16 */
    "    unsigned acc = 17;\n"                                                            /* 17 */
    "    for (int i = 0; i < n; i++)\n"                                                   /* 18 */
    "        acc = mix(acc, p[i]);\n"                                                     /* 19 */
    "    return acc;\n"                                                                   /* 20 */
    "}\n"                                                                                 /* 21 */
    "\n"                                                                                  /* 22 */
    "__attribute__((noinline, noipa, aligned(256))) int c_aligned(int v)\n"               /* 23 */
    "{\n"                                                                                 /* 24 */
    "    return v + 1;\n"                                                                 /* 25 */
    "}\n"                                                                                 /* 26 */
    "\n"                                                                                  /* 27 */
    "int main(int argc, char **argv)\n"                                                   /* 28 */
    "{\n"                                                                                 /* 29 */
    "    return (int)c_walk((const unsigned char *)argv[0], argc) + c_aligned(argc);\n"   /* 30 */
    "}\n";
enum {
    LEAF_DECL = 2,
    LEAF_END = 7,
    MIX_DECL = 9,
    MIX_CALLS_LEAF = 11,
    WALK_DECL = 15,
    WALK_CALLS_MIX = 19
};

static const char cxx_src[] = "// test_symbolizer's C++ program.\n" /* 1 */
                              "namespace ns {\n"                    /* 2 */
                              "struct Cls {\n"                      /* 3 */
                              "    int k;\n"                        /* 4 */
                              "    __attribute__((noinline, noipa)) int method(int x) const;\n"
                              "};\n"                           /* 6 */
                              "\n"                             /* 7 */
                              "int Cls::method(int x) const\n" /* 8 */
                              "{\n"                            /* 9 */
                              "    return x * k + 1;\n"        /* 10 */
                              "}\n"                            /* 11 */
                              "} // namespace ns\n"            /* 12 */
                              "\n"                             /* 13 */
                              "int main(int argc, char **)\n"  /* 14 */
                              "{\n"                            /* 15 */
                              "    ns::Cls c{argc};\n"         /* 16 */
                              "    return c.method(argc);\n"   /* 17 */
                              "}\n";
enum { METHOD_DECL = 8, METHOD_END = 11 };

/* ---- the fixture: built once for the whole group ------------------------------------------- */

typedef struct world {
    char dir[64];
    char c_debug[128], c_exe[128], c_gz[128], cxx_debug[128];
    uint64_t leaf, walk, walk_size, aligned, method; /* nm */
    uint64_t call_leaf; /* objdump: the call to c_leaf inside mix() inlined into c_walk */
} world;

static world W;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "test_symbolizer: `%s` failed (%d)\n", cmd, rc);
    return rc;
}

/* nm -S: the address (and size) of a defined symbol; 0 when absent. */
static uint64_t nm_addr(const char *file, const char *sym, uint64_t *size)
{
    char cmd[512], line[512];
    snprintf(cmd, sizeof cmd, "nm -S --defined-only %s", file);
    FILE *p = popen(cmd, "r");
    uint64_t addr = 0;
    while (p && fgets(line, sizeof line, p)) {
        unsigned long long a = 0, s = 0;
        char type, name[256];
        if (sscanf(line, "%llx %llx %c %255s", &a, &s, &type, name) == 4 &&
            strcmp(name, sym) == 0) {
            addr = a;
            if (size)
                *size = s;
        }
    }
    if (p)
        pclose(p);
    return addr;
}

/* objdump -d: the address of the first `call <c_leaf>` inside c_walk. */
static uint64_t call_in(const char *file, const char *fn, const char *callee)
{
    char cmd[512], line[512], head[128], target[128];
    snprintf(cmd, sizeof cmd, "objdump -d --no-show-raw-insn %s", file);
    snprintf(head, sizeof head, "<%s>:", fn);
    snprintf(target, sizeof target, "<%s>", callee);
    FILE *p = popen(cmd, "r");
    int inside = 0;
    uint64_t at = 0;
    while (p && fgets(line, sizeof line, p)) {
        if (strstr(line, ">:"))
            inside = strstr(line, head) != NULL;
        else if (inside && !at && strstr(line, "call") && strstr(line, target))
            at = strtoull(line, NULL, 16);
    }
    if (p)
        pclose(p);
    return at;
}

static int group_setup(void **state)
{
    (void)state;
    if (system("command -v cc >/dev/null && command -v c++ >/dev/null && "
               "command -v objcopy >/dev/null && command -v nm >/dev/null && "
               "command -v objdump >/dev/null") != 0) {
        fprintf(stderr, "test_symbolizer: needs cc, c++ and binutils (build-essential)\n");
        return -1;
    }
    snprintf(W.dir, sizeof W.dir, "/tmp/test_symbolizer_XXXXXX");
    if (!mkdtemp(W.dir))
        return -1;
    char c_path[128], cxx_path[128];
    snprintf(c_path, sizeof c_path, "%s/prog.c", W.dir);
    snprintf(cxx_path, sizeof cxx_path, "%s/prog.cc", W.dir);
    snprintf(W.c_exe, sizeof W.c_exe, "%s/prog", W.dir);
    snprintf(W.c_debug, sizeof W.c_debug, "%s/prog.debug", W.dir);
    snprintf(W.c_gz, sizeof W.c_gz, "%s/prog_gz.debug", W.dir);
    snprintf(W.cxx_debug, sizeof W.cxx_debug, "%s/progcc.debug", W.dir);
    if (write_file(c_path, c_src, strlen(c_src)) || write_file(cxx_path, cxx_src, strlen(cxx_src)))
        return -1;
    if (run("cc -g -O1 -Wl,--build-id=0x" C_ID " -o %s %s", W.c_exe, c_path) ||
        run("objcopy --only-keep-debug %s %s", W.c_exe, W.c_debug) ||
        run("objcopy --compress-debug-sections=zlib %s %s", W.c_debug, W.c_gz) ||
        run("c++ -g -O1 -Wl,--build-id=0x" CXX_ID " -o %s/progcc %s", W.dir, cxx_path) ||
        run("objcopy --only-keep-debug %s/progcc %s", W.dir, W.cxx_debug))
        return -1;
    uint64_t unused = 0;
    W.leaf = nm_addr(W.c_debug, "c_leaf", &unused);
    W.walk = nm_addr(W.c_debug, "c_walk", &W.walk_size);
    W.aligned = nm_addr(W.c_debug, "c_aligned", &unused);
    W.method = nm_addr(W.cxx_debug, "_ZNK2ns3Cls6methodEi", &unused);
    W.call_leaf = call_in(W.c_exe, "c_walk", "c_leaf");
    if (!W.leaf || !W.walk || !W.walk_size || !W.aligned || !W.method || !W.call_leaf) {
        fprintf(stderr, "test_symbolizer: nm/objdump did not find the functions\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (W.dir[0])
        rm_rf(W.dir);
    return 0;
}

static const char *base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void lookup_one(debugfile *d, uint64_t addr, sp_arena *a, sym_frame **f, size_t *n)
{
    assert_int_equal(debugfile_lookup(d, addr, a, f, n), 0);
}

/* ---- debugfile.c -------------------------------------------------------------------------- */

static void c_function_is_named_with_its_file_and_lines(void **state)
{
    (void)state;
    debugfile *d = NULL;
    sp_err err = {0};
    assert_int_equal(debugfile_open(&d, W.c_debug, C_ID, 0, &err), 0);
    assert_string_equal(debugfile_build_id(d), C_ID);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    lookup_one(d, W.leaf, a, &f, &n);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].function, "c_leaf");
    assert_string_equal(base(f[0].file), "prog.c");
    assert_int_equal(f[0].start_line, LEAF_DECL);
    assert_true(f[0].line >= LEAF_DECL && f[0].line <= LEAF_END);
    /* The last byte of c_leaf is still c_leaf. */
    uint64_t size = 0;
    nm_addr(W.c_debug, "c_leaf", &size);
    lookup_one(d, W.leaf + size - 1, a, &f, &n);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].function, "c_leaf");
    sp_arena_free(a);
    debugfile_close(d);
}

static void inlined_function_comes_first_and_its_caller_gets_the_call_line(void **state)
{
    (void)state;
    debugfile *d = NULL;
    sp_err err = {0};
    assert_int_equal(debugfile_open(&d, W.c_debug, NULL, 0, &err), 0);
    sp_arena *a = sp_arena_new(0);
    /* The call instruction itself, and the return address minus 1 as the eBPF profiler sends
     * non-leaf frames (a call on x86-64 is 5 bytes: e8 rel32). */
    const uint64_t addrs[] = {W.call_leaf, W.call_leaf + 4};
    for (size_t i = 0; i < 2; i++) {
        sym_frame *f = NULL;
        size_t n = 0;
        lookup_one(d, addrs[i], a, &f, &n);
        assert_int_equal(n, 2);
        assert_string_equal(f[0].function, "mix");
        assert_int_equal(f[0].line, MIX_CALLS_LEAF);
        assert_int_equal(f[0].start_line, MIX_DECL);
        assert_string_equal(base(f[0].file), "prog.c");
        assert_string_equal(f[1].function, "c_walk");
        assert_int_equal(f[1].line, WALK_CALLS_MIX);
        assert_int_equal(f[1].start_line, WALK_DECL);
        assert_string_equal(base(f[1].file), "prog.c");
    }
    sp_arena_free(a);
    debugfile_close(d);
}

static void cxx_method_is_demangled_with_its_parameters(void **state)
{
    (void)state;
    debugfile *d = NULL;
    sp_err err = {0};
    assert_int_equal(debugfile_open(&d, W.cxx_debug, CXX_ID, 0, &err), 0);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    lookup_one(d, W.method, a, &f, &n);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].function, "ns::Cls::method(int) const");
    assert_string_equal(base(f[0].file), "prog.cc");
    assert_int_equal(f[0].start_line, METHOD_DECL);
    assert_true(f[0].line >= METHOD_DECL && f[0].line <= METHOD_END);
    sp_arena_free(a);
    debugfile_close(d);
}

static void address_outside_any_function_gives_no_frames(void **state)
{
    (void)state;
    debugfile *d = NULL;
    sp_err err = {0};
    assert_int_equal(debugfile_open(&d, W.c_debug, C_ID, 0, &err), 0);
    sp_arena *a = sp_arena_new(0);
    /* The padding before c_aligned (256-byte aligned) after c_walk ends, per nm; then far past
     * the file's last address; then 0. */
    uint64_t end = W.walk + W.walk_size;
    assert_true(W.aligned > end + 16);
    const uint64_t addrs[] = {end + (W.aligned - end) / 2, 0x7fff0000, 0, UINT64_MAX};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        sym_frame *f = (sym_frame *)1;
        size_t n = 99;
        lookup_one(d, addrs[i], a, &f, &n);
        assert_int_equal(n, 0);
        assert_null(f);
    }
    sp_arena_free(a);
    debugfile_close(d);
}

static void wrong_build_id_is_refused_naming_both(void **state)
{
    (void)state;
    debugfile *d = NULL;
    sp_err err = {0};
    assert_int_equal(debugfile_open(&d, W.c_debug, CXX_ID, 0, &err), SP_EINVAL);
    assert_null(d);
    assert_non_null(strstr(err.msg, C_ID));
    assert_non_null(strstr(err.msg, CXX_ID));
    /* The same from memory. */
    size_t len = 0;
    unsigned char *bytes = read_file(W.c_debug, &len);
    assert_non_null(bytes);
    memset(&err, 0, sizeof err);
    assert_int_equal(debugfile_open_memory(&d, bytes, len, CXX_ID, &err), SP_EINVAL);
    assert_null(d);
    assert_int_equal(debugfile_open_memory(&d, bytes, len, C_ID, &err), 0);
    debugfile_close(d);
    free(bytes);
}

static void missing_file_and_limits(void **state)
{
    (void)state;
    debugfile *d = NULL;
    sp_err err = {0};
    char path[192];
    snprintf(path, sizeof path, "%s/no-such.debug", W.dir);
    assert_int_equal(debugfile_open(&d, path, NULL, 0, &err), SP_ENOTFOUND);
    assert_null(d);
    assert_non_null(strstr(err.msg, path));
    /* A directory is not a debug file either; a file over max_bytes is SP_ETOOBIG. */
    assert_int_equal(debugfile_open(&d, W.dir, NULL, 0, &err), SP_ENOTFOUND);
    assert_int_equal(debugfile_open(&d, W.c_debug, NULL, 100, &err), SP_ETOOBIG);
    /* Not an ELF file. */
    char c_path[192];
    snprintf(c_path, sizeof c_path, "%s/prog.c", W.dir);
    assert_int_equal(debugfile_open(&d, c_path, NULL, 0, &err), SP_EINVAL);
    assert_null(d);
}

static void demangles_cxx_and_rust_and_leaves_c_alone(void **state)
{
    (void)state;
    char buf[256];
    const char *c_names[] = {"main", "c_leaf", "_", "_Z", "_R", "Z", "__libc_start_main", ""};
    for (size_t i = 0; i < sizeof c_names / sizeof c_names[0]; i++)
        assert_string_equal(sym_demangle(c_names[i], buf, sizeof buf), c_names[i]);
    assert_string_equal(sym_demangle("_ZNK2ns3Cls6methodEi", buf, sizeof buf),
                        "ns::Cls::method(int) const");
    assert_string_equal(sym_demangle("_ZN4core3fmt5write17h0123456789abcdefE", buf, sizeof buf),
                        "core::fmt::write");
    assert_string_equal(sym_demangle("_RNvCs1234_7mycrate3foo", buf, sizeof buf), "mycrate::foo");
    /* Cut to the buffer, NUL-terminated. */
    char small[8];
    assert_string_equal(sym_demangle("_ZNK2ns3Cls6methodEi", small, sizeof small), "ns::Cls");
    /* Not demangleable: the name itself. */
    assert_string_equal(sym_demangle("_ZZZ", buf, sizeof buf), "_ZZZ");
}

/* ---- symbolizer.c ------------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    return sym_now_ns();
}

/* <root>/.build-id/xx/rest.debug holding `src`. */
static void place(const char *root, const char *id, const char *src)
{
    assert_int_equal(run("mkdir -p %s/.build-id/%.2s && cp %s %s/.build-id/%.2s/%s.debug", root, id,
                         src, root, id, id + 2),
                     0);
}

static symbolizer *open_sym(const char *symbols_dir, const char *upload_dir, int64_t retry_ns)
{
    sym_options o = {0};
    o.symbols_dir = symbols_dir;
    o.upload_dir = upload_dir;
    o.debuginfod_urls = ""; /* never the network */
    o.retry_ns = retry_ns;
    symbolizer *s = NULL;
    sp_err err = {0};
    int rc = sym_open(&s, &o, &err);
    if (rc)
        fail_msg("sym_open: %s", err.msg);
    return s;
}

static void symbols_dir_in_build_id_layout_is_found(void **state)
{
    (void)state;
    char root[128];
    snprintf(root, sizeof root, "%s/symbols", W.dir);
    place(root, C_ID, W.c_debug);
    symbolizer *s = open_sym(root, NULL, 0);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    /* Any case of hex is the same build id. */
    assert_int_equal(
        sym_lookup(s, "5EED0000000000000000000000000000000000C1", W.call_leaf, 0, a, &f, &n),
        SYM_FOUND);
    assert_int_equal(n, 2);
    assert_string_equal(f[0].function, "mix");
    assert_string_equal(f[1].function, "c_walk");
    assert_int_equal(f[1].line, WALK_CALLS_MIX);
    assert_int_equal(sym_lookup(s, C_ID, W.leaf, 0, a, &f, &n), SYM_FOUND);
    assert_string_equal(f[0].function, "c_leaf");
    /* In the file, but no function there: final. */
    assert_int_equal(sym_lookup(s, C_ID, 0x7fff0000, 0, a, &f, &n), SYM_NONE);
    assert_int_equal(n, 0);
    sym_stats st;
    sym_stats_get(s, &st);
    assert_int_equal(st.local_found, 1);
    assert_int_equal(st.elf_lookups, 3);
    assert_int_equal(st.files_open, 1);
    assert_int_equal(st.build_ids, 1);
    sp_arena_free(a);
    sym_close(s);
    rm_rf(root);
}

static void unknown_build_id_is_later_until_retry_time(void **state)
{
    (void)state;
    char root[128];
    snprintf(root, sizeof root, "%s/late", W.dir);
    assert_int_equal(mkdir(root, 0755), 0);
    const int64_t retry = 400 * 1000000LL;
    symbolizer *s = open_sym(root, NULL, retry);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    int64_t t0 = now_ns();
    assert_int_equal(sym_lookup(s, C_ID, W.leaf, 0, a, &f, &n), SYM_LATER);
    assert_int_equal(n, 0);
    /* The file arrives; the miss is remembered until retry_ns has passed. */
    place(root, C_ID, W.c_debug);
    int rc = sym_lookup(s, C_ID, W.leaf, now_ns() + 50 * 1000000LL, a, &f, &n);
    if (now_ns() - t0 < retry)
        assert_int_equal(rc, SYM_LATER);
    while (now_ns() - t0 < retry + 20 * 1000000LL)
        usleep(10000);
    assert_int_equal(sym_lookup(s, C_ID, W.leaf, 0, a, &f, &n), SYM_FOUND);
    assert_string_equal(f[0].function, "c_leaf");
    sym_stats st;
    sym_stats_get(s, &st);
    assert_int_equal(st.elf_lookups, 1);
    assert_int_equal(st.fetch_found + st.fetch_not_found + st.fetch_failed + st.fetch_timeout, 0);
    sp_arena_free(a);
    sym_close(s);
    rm_rf(root);
}

static void malformed_build_ids_are_none(void **state)
{
    (void)state;
    symbolizer *s = open_sym(NULL, NULL, 0);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    const char *bad[] = {"not-hex", "5eed00zz", "abc", "", "0x5eed", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sym_lookup(s, bad[i], W.leaf, 0, a, &f, &n), SYM_NONE);
    char long_id[2 * SYM_BUILD_ID_MAX + 3];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    assert_int_equal(sym_lookup(s, long_id, W.leaf, 0, a, &f, &n), SYM_NONE);
    sym_stats st;
    sym_stats_get(s, &st);
    assert_int_equal(st.build_ids, 0); /* never remembered */
    sp_arena_free(a);
    sym_close(s);
}

static void added_file_is_kept_and_found(void **state)
{
    (void)state;
    char up[128];
    snprintf(up, sizeof up, "%s/uploads", W.dir);
    symbolizer *s = open_sym(NULL, up, 0);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    size_t len = 0;
    unsigned char *bytes = read_file(W.cxx_debug, &len);
    assert_non_null(bytes);
    sp_err err = {0};
    uint64_t since = sym_arrivals(s);
    assert_int_equal(sym_wait(s, sym_now_ns() + 1000000000, since), 0); /* nothing came */
    assert_int_equal(sym_add_file(s, CXX_ID, bytes, len, &err), 0);
    /* It arrived before this wait began: it counts for a caller that noted `since` earlier. */
    assert_int_equal(sym_arrivals(s), since + 1);
    assert_int_equal(sym_wait(s, sym_now_ns() + 1000000000, since), 1);
    assert_int_equal(sym_wait(s, sym_now_ns() + 1000000000, since + 1), 0);
    assert_int_equal(sym_lookup(s, CXX_ID, W.method, 0, a, &f, &n), SYM_FOUND);
    assert_string_equal(f[0].function, "ns::Cls::method(int) const");
    /* Kept in the .build-id layout, byte for byte. */
    char kept[256];
    snprintf(kept, sizeof kept, "%s/.build-id/%.2s/%s.debug", up, CXX_ID, &CXX_ID[2]);
    size_t klen = 0;
    unsigned char *k = read_file(kept, &klen);
    assert_non_null(k);
    assert_int_equal(klen, len);
    assert_memory_equal(k, bytes, len);
    free(k);
    free(bytes);
    sp_arena_free(a);
    sym_close(s);
    rm_rf(up);
}

static void added_file_with_wrong_build_id_is_refused(void **state)
{
    (void)state;
    char up[128];
    snprintf(up, sizeof up, "%s/uploads_wrong", W.dir);
    symbolizer *s = open_sym(NULL, up, 0);
    size_t len = 0;
    unsigned char *bytes = read_file(W.c_debug, &len);
    assert_non_null(bytes);
    sp_err err = {0};
    assert_int_equal(sym_add_file(s, CXX_ID, bytes, len, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, C_ID));
    /* Not hex, not an ELF file: refused too; nothing kept. */
    assert_int_equal(sym_add_file(s, "zz", bytes, len, &err), SP_EINVAL);
    assert_int_equal(sym_add_file(s, C_ID, "hello", 5, &err), SP_EINVAL);
    char kept[256];
    snprintf(kept, sizeof kept, "%s/.build-id/%.2s/%s.debug", up, CXX_ID, &CXX_ID[2]);
    assert_int_not_equal(access(kept, F_OK), 0);
    snprintf(kept, sizeof kept, "%s/.build-id/%.2s/%s.debug", up, C_ID, &C_ID[2]);
    assert_int_not_equal(access(kept, F_OK), 0);
    /* Without an upload directory there is nowhere to keep it. */
    symbolizer *none = open_sym(NULL, NULL, 0);
    assert_int_equal(sym_add_file(none, C_ID, bytes, len, &err), SP_EUNAVAIL);
    sym_close(none);
    free(bytes);
    sym_close(s);
    rm_rf(up);
}

/* A debug file with compressed sections (objcopy --compress-debug-sections, as distributions
 * ship them) is kept as sent and still names frames once read back from disk. */
static void added_file_with_compressed_sections_is_kept_as_sent(void **state)
{
    (void)state;
    char up[128];
    snprintf(up, sizeof up, "%s/uploads_gz", W.dir);
    symbolizer *s = open_sym(NULL, up, 0);
    size_t len = 0;
    unsigned char *bytes = read_file(W.c_gz, &len);
    assert_non_null(bytes);
    unsigned char *sent = malloc(len);
    assert_non_null(sent);
    memcpy(sent, bytes, len);
    sp_err err = {0};
    assert_int_equal(sym_add_file(s, C_ID, bytes, len, &err), 0);
    assert_memory_equal(bytes, sent, len); /* the caller's bytes untouched */
    char kept[256];
    snprintf(kept, sizeof kept, "%s/.build-id/%.2s/%s.debug", up, C_ID, &C_ID[2]);
    size_t klen = 0;
    unsigned char *k = read_file(kept, &klen);
    assert_non_null(k);
    assert_int_equal(klen, len);
    assert_memory_equal(k, sent, len);
    sp_arena *a = sp_arena_new(0);
    sym_frame *f = NULL;
    size_t n = 0;
    assert_int_equal(sym_lookup(s, C_ID, W.call_leaf, 0, a, &f, &n), SYM_FOUND);
    assert_int_equal(n, 2);
    assert_string_equal(f[0].function, "mix");
    assert_int_equal(f[1].line, WALK_CALLS_MIX);
    sp_arena_free(a);
    free(k);
    free(sent);
    free(bytes);
    sym_close(s);
    rm_rf(up);
}

/* Uploads are anyone's bytes: an ELF header cut short is refused, never a crash. */
static void added_file_cut_inside_its_elf_header_is_refused(void **state)
{
    (void)state;
    char up[128];
    snprintf(up, sizeof up, "%s/uploads_cut", W.dir);
    symbolizer *s = open_sym(NULL, up, 0);
    size_t len = 0;
    unsigned char *bytes = read_file(W.c_debug, &len);
    assert_non_null(bytes);
    sp_err err = {0};
    const size_t cuts[] = {0, 4, 16, 41, 63};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        assert_int_equal(sym_add_file(s, C_ID, bytes, cuts[i], &err), SP_EINVAL);
    debugfile *d = NULL;
    assert_int_equal(debugfile_open_memory(&d, bytes, 41, NULL, &err), SP_EINVAL);
    assert_null(d);
    free(bytes);
    sym_close(s);
    rm_rf(up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(c_function_is_named_with_its_file_and_lines),
        cmocka_unit_test(inlined_function_comes_first_and_its_caller_gets_the_call_line),
        cmocka_unit_test(cxx_method_is_demangled_with_its_parameters),
        cmocka_unit_test(address_outside_any_function_gives_no_frames),
        cmocka_unit_test(wrong_build_id_is_refused_naming_both),
        cmocka_unit_test(missing_file_and_limits),
        cmocka_unit_test(demangles_cxx_and_rust_and_leaves_c_alone),
        cmocka_unit_test(symbols_dir_in_build_id_layout_is_found),
        cmocka_unit_test(unknown_build_id_is_later_until_retry_time),
        cmocka_unit_test(malformed_build_ids_are_none),
        cmocka_unit_test(added_file_is_kept_and_found),
        cmocka_unit_test(added_file_with_wrong_build_id_is_refused),
        cmocka_unit_test(added_file_with_compressed_sections_is_kept_as_sent),
        cmocka_unit_test(added_file_cut_inside_its_elf_header_is_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
