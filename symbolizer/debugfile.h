/* One debug file (an ELF with symbols and, ideally, DWARF) and the address → frames lookups in it.
 *
 * Owns: the file's libdwfl session (elfutils' libdw/libelf do all ELF and DWARF parsing; nothing
 * here reads ELF structures by hand) and demangling (libiberty's demangler: C++ and Rust, legacy
 * and v0). Used by symbolizer.c, the fuzz target and the bench.
 *
 * Addresses are ELF virtual addresses of the file, as the OpenTelemetry eBPF profiler writes
 * native frames (pc minus the load bias, minus 1 for return addresses): the file is laid out at
 * its own p_vaddr, so no mapping arithmetic happens here.
 *
 * Threading: a debugfile is not safe for concurrent use (libdwfl keeps lookup caches inside the
 * session); the caller serialises calls on one file. Different files are independent.
 *
 * Errors: debugfile_open*() return 0, SP_EINVAL (not an ELF file, or its GNU build id is not the
 * one asked for: the message names both), SP_ETOOBIG (larger than max_bytes), SP_ENOTFOUND (no
 * such file), SP_ENOMEM. debugfile_lookup() never fails on the file's content: malformed DWARF
 * gives fewer frames, never an error.
 */
#ifndef SYM_DEBUGFILE_H
#define SYM_DEBUGFILE_H

#include "../common/arena.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* Longest build id accepted, in bytes (GNU build ids are 20; Go's and others longer are not
 * GNU build ids and never looked up). */
#define SYM_BUILD_ID_MAX 64
/* Inlined frames returned for one address at most (deeper chains keep their innermost ones). */
#define SYM_FRAMES_MAX 64
/* Names longer than this are cut (before demangling: a mangled name this long is hostile). */
#define SYM_NAME_MAX 4096

typedef struct sym_frame {
    const char *function; /* demangled; never NULL, never empty */
    const char *file;     /* source file as compiled; "" when unknown */
    int64_t line;         /* 0 when unknown */
    int64_t start_line;   /* the function's first line; 0 when unknown */
} sym_frame;

typedef struct debugfile debugfile;

/* Opens the ELF file at `path`. A non-NULL `build_id` (lowercase hex) must equal the file's GNU
 * build id note. */
int debugfile_open(debugfile **out, const char *path, const char *build_id, uint64_t max_bytes,
                   sp_err *err);
/* The same over bytes in memory (fuzzing, uploads): libelf gets a private copy, so the caller's
 * bytes are never written to and need not outlive the call. */
int debugfile_open_memory(debugfile **out, const void *data, size_t len, const char *build_id,
                          sp_err *err);
void debugfile_close(debugfile *d);

/* The frames at `address`, innermost (inlined callee) first, into the arena: 0 frames when no
 * symbol covers the address. The outermost frame is the function the address is in; each inlined
 * frame's caller gets the call site's file and line. SP_ENOMEM only. */
int debugfile_lookup(debugfile *d, uint64_t address, sp_arena *a, sym_frame **out, size_t *n);

/* The GNU build id as lowercase hex (at most 2 * SYM_BUILD_ID_MAX + 1 bytes with its NUL);
 * "" when the file has none. */
const char *debugfile_build_id(const debugfile *d);

/* Demangles a C++ or Rust symbol into buf (NUL-terminated, cut to n); returns buf, or `name`
 * itself when it is not mangled. */
const char *sym_demangle(const char *name, char *buf, size_t n);

#endif
