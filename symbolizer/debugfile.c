/* Debug files through elfutils: libdwfl lays the file out at its own virtual addresses (an
 * offline session: no process, no search for other files), the line table gives the innermost
 * file and line, DWARF scopes give the inlined chain, the symbol table is the fallback for files
 * without DWARF.
 *
 * Invariants:
 *   D1. The session never looks anywhere but the file it was given: the find_debuginfo callback
 *       answers "none", so neither /usr/lib/debug nor $DEBUGINFOD_URLS is consulted behind the
 *       symbolizer's back (fetching is symbolizer.c's, bounded there).
 *   D2. A file is only used under the build id it was asked for (compared with its GNU build id
 *       note), so a wrong file in a symbols directory never names frames.
 *   D3. Every string returned lives in the caller's arena and is NUL-terminated, at most
 *       SYM_NAME_MAX bytes; never NULL.
 */
#include "debugfile.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <libiberty/demangle.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct debugfile {
    Dwfl *dwfl;
    Dwfl_Module *mod;
    Dwarf_Addr bias; /* where libdwfl placed the file: ELF address + bias = session address */
    char build_id[2 * SYM_BUILD_ID_MAX + 1];
    char *image; /* debugfile_open_memory(): the private copy libelf reads (and writes) */
    struct fn_index *index; /* built on the first lookup */
};

/* D1: no separate debug file is ever searched for. */
static int no_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                        const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
                        char **debuginfo_file_name)
{
    (void)mod, (void)userdata, (void)modname, (void)base, (void)file_name, (void)debuglink_file;
    (void)debuglink_crc;
    *debuginfo_file_name = NULL;
    return -1;
}

static const Dwfl_Callbacks offline_callbacks = {
    .find_elf = NULL,
    .find_debuginfo = no_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = NULL,
};

static pthread_once_t elf_once = PTHREAD_ONCE_INIT;
static void elf_init(void)
{
    elf_version(EV_CURRENT);
}

static void hex_of(const unsigned char *bits, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bits[i] >> 4];
        out[2 * i + 1] = digits[bits[i] & 15];
    }
    out[2 * n] = 0;
}

/* Finishes an open: the module reported, its build id read and checked (D2). */
static int finish_open(debugfile *d, const char *what, const char *build_id, sp_err *err)
{
    if (!d->mod || dwfl_report_end(d->dwfl, NULL, NULL) != 0) {
        int rc = sp_fail(err, SP_EINVAL, "%s is not a usable ELF file: %s", what, dwfl_errmsg(-1));
        debugfile_close(d);
        return rc;
    }
    /* An offline session places shared objects (ET_DYN, linked at 0) at a base of its own. */
    if (!dwfl_module_getelf(d->mod, &d->bias)) {
        int rc = sp_fail(err, SP_EINVAL, "%s is not a usable ELF file: %s", what, dwfl_errmsg(-1));
        debugfile_close(d);
        return rc;
    }
    const unsigned char *bits = NULL;
    GElf_Addr vaddr = 0;
    int n = dwfl_module_build_id(d->mod, &bits, &vaddr);
    if (n > 0 && n <= SYM_BUILD_ID_MAX)
        hex_of(bits, (size_t)n, d->build_id);
    if (build_id && strcmp(build_id, d->build_id) != 0) {
        int rc = sp_fail(err, SP_EINVAL, "%s has build id \"%s\", not the \"%s\" asked for", what,
                         d->build_id, build_id);
        debugfile_close(d);
        return rc;
    }
    return 0;
}

static debugfile *begin(sp_err *err)
{
    pthread_once(&elf_once, elf_init);
    debugfile *d = calloc(1, sizeof *d);
    if (!d || !(d->dwfl = dwfl_begin(&offline_callbacks))) {
        free(d);
        sp_fail(err, SP_ENOMEM, "out of memory opening a debug file");
        return NULL;
    }
    dwfl_report_begin(d->dwfl);
    return d;
}

int debugfile_open(debugfile **out, const char *path, const char *build_id, uint64_t max_bytes,
                   sp_err *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return sp_fail(err, SP_ENOTFOUND, "no debug file at %s", path);
    if (max_bytes && (uint64_t)st.st_size > max_bytes)
        return sp_fail(err, SP_ETOOBIG, "debug file %s is %lld bytes, over the limit of %llu", path,
                       (long long)st.st_size, (unsigned long long)max_bytes);
    debugfile *d = begin(err);
    if (!d)
        return SP_ENOMEM;
    d->mod = dwfl_report_offline(d->dwfl, "debugfile", path, -1);
    int rc = finish_open(d, path, build_id, err);
    if (!rc)
        *out = d;
    return rc;
}

int debugfile_open_memory(debugfile **out, const void *data, size_t len, const char *build_id,
                          sp_err *err)
{
    *out = NULL;
    debugfile *d = begin(err);
    if (!d)
        return SP_ENOMEM;
    /* libelf treats a memory image as a private mapping and writes into it (an ET_REL file's
     * section addresses when libdwfl lays it out, compressed sections' headers when they are
     * decompressed): it gets a copy, so the caller's bytes (an upload about to be written to
     * disk) stay as they came. */
    d->image = malloc(len ? len : 1);
    if (!d->image) {
        debugfile_close(d);
        return sp_fail(err, SP_ENOMEM, "out of memory opening a debug file of %zu bytes", len);
    }
    memcpy(d->image, data, len);
    /* elfutils 0.188's dwfl_report_offline_memory() dereferences elf_memory()'s answer without
     * checking it for NULL (an ELF header cut between 16 and 63 bytes crashes it): bytes libelf
     * refuses stop here. */
    Elf *probe = elf_memory(d->image, len);
    if (!probe) {
        int rc = sp_fail(err, SP_EINVAL, "the debug file in memory is not an ELF file: %s",
                         elf_errmsg(-1));
        debugfile_close(d);
        return rc;
    }
    elf_end(probe);
    d->mod = dwfl_report_offline_memory(d->dwfl, "debugfile", "memory", d->image, len);
    int rc = finish_open(d, "the debug file in memory", build_id, err);
    if (!rc)
        *out = d;
    return rc;
}

static void index_free(struct fn_index *x);

void debugfile_close(debugfile *d)
{
    if (!d)
        return;
    if (d->dwfl)
        dwfl_end(d->dwfl);
    index_free(d->index);
    free(d->image);
    free(d);
}

const char *debugfile_build_id(const debugfile *d)
{
    return d->build_id;
}

const char *sym_demangle(const char *name, char *buf, size_t n)
{
    if (!name || n == 0)
        return "";
    /* Only what looks mangled goes to the demangler: Itanium C++ and Rust legacy (_Z), Rust v0
     * (_R). Everything else is a C name already. */
    if (!(name[0] == '_' && (name[1] == 'Z' || name[1] == 'R')) || strlen(name) > SYM_NAME_MAX)
        return name;
    char *d = cplus_demangle(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO);
    if (!d)
        return name;
    size_t len = strlen(d);
    if (len >= n)
        len = n - 1;
    memcpy(buf, d, len);
    buf[len] = 0;
    free(d);
    return buf;
}

/* ---- lookups ------------------------------------------------------------------------------------
 */

typedef struct frame_list {
    sym_frame v[SYM_FRAMES_MAX];
    size_t n;
    sp_arena *a;
} frame_list;

/* An arena copy of s cut to SYM_NAME_MAX (D3); NULL only when out of memory. */
static const char *keep(sp_arena *a, const char *s)
{
    if (!s)
        return "";
    size_t len = strnlen(s, SYM_NAME_MAX);
    return sp_arena_strndup(a, s, len);
}

static int push(frame_list *l, const char *function, const char *file, int64_t line,
                int64_t start_line)
{
    if (l->n == SYM_FRAMES_MAX)
        return 0; /* the innermost ones are kept */
    char buf[SYM_NAME_MAX + 1];
    const char *fn = keep(l->a, sym_demangle(function, buf, sizeof buf));
    const char *fl = keep(l->a, file);
    if (!fn || !fl)
        return SP_ENOMEM;
    l->v[l->n++] = (sym_frame){fn, fl, line, start_line};
    return 0;
}

/* A subprogram's or inlined subroutine's name: the linkage (mangled) name when there is one, so
 * C++ names come out qualified; else DW_AT_name; both through abstract origins and
 * specifications. NULL when neither. */
static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute at;
    const char *s = NULL;
    if (dwarf_attr_integrate(die, DW_AT_linkage_name, &at) ||
        dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &at))
        s = dwarf_formstring(&at);
    if (!s && dwarf_attr_integrate(die, DW_AT_name, &at))
        s = dwarf_formstring(&at);
    return s && *s ? s : NULL;
}

static int64_t die_udata(Dwarf_Die *die, int name)
{
    Dwarf_Attribute at;
    Dwarf_Word w = 0;
    if (!dwarf_attr(die, name, &at) || dwarf_formudata(&at, &w) != 0)
        return 0;
    return w > INT32_MAX ? 0 : (int64_t)w;
}

static int64_t decl_line(Dwarf_Die *die)
{
    int line = 0;
    return dwarf_decl_line(die, &line) == 0 && line > 0 ? line : 0;
}

/* The call site's file of an inlined subroutine, from its CU's file table. */
static const char *call_file(Dwarf_Die *cu, Dwarf_Die *inl)
{
    int64_t idx = die_udata(inl, DW_AT_call_file);
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0 || (size_t)idx >= nfiles)
        return "";
    const char *f = dwarf_filesrc(files, (size_t)idx, NULL, NULL);
    return f ? f : "";
}

/* ---- the function index ----------------------------------------------------------------------
 * libdw's own scope lookups (dwarf_getscopes, dwarf_getscopes_die) walk a whole compilation unit
 * per address: 1.5 ms on a unit of 2,500 functions, so 15 s for a flame graph of 10,000 frames.
 * Instead, the address ranges of every concrete function (DW_TAG_subprogram with code) are read
 * once per file into a sorted table; a lookup then searches it and descends only into the one
 * function's DIEs that contain the address (lexical blocks, inlined subroutines). */

typedef struct fn_range {
    uint64_t lo, hi; /* [lo, hi) in DWARF addresses */
    Dwarf_Off off;   /* the subprogram DIE */
} fn_range;

struct fn_index {
    fn_range *v;
    size_t n, cap;
    Dwarf *dw;
    Dwarf_Addr bias; /* session address - DWARF address */
};

static void index_free(struct fn_index *x)
{
    if (x)
        free(x->v);
    free(x);
}

static int add_range(struct fn_index *x, uint64_t lo, uint64_t hi, Dwarf_Off off)
{
    if (hi <= lo)
        return 0;
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 256;
        fn_range *nv = realloc(x->v, nc * sizeof *nv);
        if (!nv)
            return SP_ENOMEM;
        x->v = nv;
        x->cap = nc;
    }
    x->v[x->n++] = (fn_range){lo, hi, off};
    return 0;
}

/* The subprograms under die (namespaces, classes and structures are looked into; functions are
 * not: GNU C nested functions are named by the function around them). depth bounds malformed
 * nesting. */
static int index_children(struct fn_index *x, Dwarf_Die *parent, int depth)
{
    Dwarf_Die child;
    if (depth > 32 || dwarf_child(parent, &child) != 0)
        return 0;
    int rc = 0;
    do {
        int tag = dwarf_tag(&child);
        if (tag == DW_TAG_subprogram) {
            Dwarf_Addr base, lo, hi;
            ptrdiff_t off = 0;
            while (!rc && (off = dwarf_ranges(&child, off, &base, &lo, &hi)) > 0)
                rc = add_range(x, lo, hi, dwarf_dieoffset(&child));
        } else if (tag == DW_TAG_namespace || tag == DW_TAG_class_type ||
                   tag == DW_TAG_structure_type || tag == DW_TAG_union_type ||
                   tag == DW_TAG_module) {
            rc = index_children(x, &child, depth + 1);
        }
    } while (!rc && dwarf_siblingof(&child, &child) == 0);
    return rc;
}

static int range_cmp(const void *a, const void *b)
{
    const fn_range *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return x->hi < y->hi ? -1 : x->hi > y->hi; /* the narrower first */
}

/* Builds d's index on first use; a file without DWARF gets an empty one. */
static int index_build(debugfile *d)
{
    struct fn_index *x = calloc(1, sizeof *x);
    if (!x)
        return SP_ENOMEM;
    d->index = x;
    x->dw = dwfl_module_getdwarf(d->mod, &x->bias);
    if (!x->dw)
        return 0;
    Dwarf_Off off = 0, next;
    size_t hsize;
    int rc = 0;
    while (!rc && dwarf_nextcu(x->dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
        Dwarf_Die cu;
        if (dwarf_offdie(x->dw, off + hsize, &cu))
            rc = index_children(x, &cu, 0);
        off = next;
    }
    if (x->n)
        qsort(x->v, x->n, sizeof *x->v, range_cmp);
    return rc;
}

/* The innermost indexed function containing addr (DWARF address), or NULL. */
static const fn_range *index_find(const struct fn_index *x, uint64_t addr)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) { /* first range with lo > addr */
        size_t mid = lo + (hi - lo) / 2;
        if (x->v[mid].lo <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Ranges do not nest in practice; look back a little in case some overlap. */
    for (size_t i = lo, k = 0; i > 0 && k < 8; i--, k++)
        if (x->v[i - 1].hi > addr)
            return &x->v[i - 1];
    return NULL;
}

/* The DIE chain at addr inside the function: chain[0] = the subprogram, then each inlined
 * subroutine containing addr, outermost first. Returns the chain's length. */
static size_t inline_chain(Dwarf_Die *fn, uint64_t addr, Dwarf_Die *chain, size_t max)
{
    size_t n = 0;
    chain[n++] = *fn;
    Dwarf_Die scope = *fn, child;
    for (int depth = 0; depth < 256 && n < max; depth++) {
        if (dwarf_child(&scope, &child) != 0)
            break;
        int found = 0;
        do {
            int tag = dwarf_tag(&child);
            if ((tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block) &&
                dwarf_haspc(&child, addr) > 0) {
                if (tag == DW_TAG_inlined_subroutine)
                    chain[n++] = child;
                scope = child;
                found = 1;
            }
        } while (!found && dwarf_siblingof(&child, &child) == 0);
        if (!found)
            break;
    }
    return n;
}

/* The inlined chain from DWARF, innermost first. */
/* The symbol table's name of the function at (session) address; NULL for none, or a data
 * symbol (data never names code). */
static const char *func_symbol(debugfile *d, uint64_t address)
{
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *name = dwfl_module_addrinfo(d->mod, address, &off, &sym, NULL, NULL, NULL);
    int type = name ? GELF_ST_TYPE(sym.st_info) : STT_NOTYPE;
    return name && *name && (type == STT_FUNC || type == STT_GNU_IFUNC) ? name : NULL;
}

static int dwarf_frames(frame_list *l, debugfile *d, uint64_t address, const char *file,
                        int64_t line)
{
    if (!d->index && index_build(d))
        return SP_ENOMEM;
    struct fn_index *x = d->index;
    if (!x->dw || !x->n || address < x->bias)
        return 0;
    uint64_t addr = address - x->bias;
    const fn_range *r = index_find(x, addr);
    Dwarf_Die fn, cu;
    if (!r || !dwarf_offdie(x->dw, r->off, &fn) || !dwarf_diecu(&fn, &cu, NULL, NULL))
        return 0;
    Dwarf_Die chain[SYM_FRAMES_MAX];
    size_t n = inline_chain(&fn, addr, chain, SYM_FRAMES_MAX);
    int rc = 0;
    for (size_t i = n; i-- > 0 && !rc;) {
        Dwarf_Die *s = &chain[i];
        const char *name = die_name(s);
        if (!name && i == 0)
            name = func_symbol(d, address);
        if (!name)
            name = "??";
        rc = push(l, name, file, line, decl_line(s));
        if (i > 0) { /* the caller continues at the call site */
            file = call_file(&cu, s);
            line = die_udata(s, DW_AT_call_line);
        }
    }
    return rc;
}

int debugfile_lookup(debugfile *d, uint64_t address, sp_arena *a, sym_frame **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    Dwarf_Addr low = 0, high = 0;
    if (address > UINT64_MAX - d->bias)
        return 0;
    address += d->bias;
    if (!dwfl_module_info(d->mod, NULL, &low, &high, NULL, NULL, NULL, NULL) || address < low ||
        address >= high)
        return 0;
    frame_list *l = malloc(sizeof *l);
    if (!l)
        return SP_ENOMEM;
    l->n = 0;
    l->a = a;
    const char *file = "";
    int lineno = 0;
    Dwfl_Line *ln = dwfl_module_getsrc(d->mod, address);
    if (ln) {
        const char *f = dwfl_lineinfo(ln, NULL, &lineno, NULL, NULL, NULL);
        file = f ? f : "";
        if (lineno < 0)
            lineno = 0;
    }
    int rc = dwarf_frames(l, d, address, file, lineno);
    const char *symname = !rc && l->n == 0 ? func_symbol(d, address) : NULL;
    if (symname)
        rc = push(l, symname, file, lineno, 0); /* no DWARF here: the symbol table's name */
    if (!rc && l->n) {
        *out = sp_arena_memdup(a, l->v, l->n * sizeof l->v[0]);
        if (!*out)
            rc = SP_ENOMEM;
        else
            *n = l->n;
    }
    free(l);
    return rc;
}
