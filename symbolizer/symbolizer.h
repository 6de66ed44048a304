/* symbolizer/: native frames get names. (build id, ELF virtual address) → frames (function,
 * file, line, inlined callers), from debug files found by GNU build id.
 *
 * Sources, in order: the local directories (--symbols-dir, then the upload directory) in the
 * `.build-id/<xx>/<rest>.debug` layout (the executable itself, `<rest>` without `.debug`, is
 * tried too), then debuginfod servers (elfutils' libdebuginfod; $DEBUGINFOD_URLS or
 * sym_options.debuginfod_urls), downloaded on background threads, each through a process of
 * its own (fetcher.h says why: libdebuginfod is not safe to call in a threaded program).
 *
 * Owns: the build id registry (what is known about each build id: found, missing until a retry
 * time, downloading), the open debug files (at most open_files, least recently used closed
 * first), the download threads with their child processes and libdebuginfod's cache directory. Used
 * by the program, which hands sym_lookup() to the store's read path (storage-adapter/store.h,
 * store_symbolizer).
 *
 * Threading: every function but sym_open()/sym_close() may be called from any thread at once.
 * sym_open() sets libdebuginfod's environment variables: call it before other threads start.
 * Lookups on one debug file are serialised (libdwfl sessions are not thread-safe); different
 * files are looked up in parallel.
 *
 * Bounds (a slow or hostile debuginfod never stalls a caller past its deadline): downloads run
 * on `fetchers` threads, each limited to fetch_timeout_ns and max_file_bytes (libdebuginfod's
 * progress callback cancels past either); a caller waits for a download only until its own
 * deadline, then gets SYM_LATER while the download goes on. A missing file, a failed or cancelled
 * download is remembered for retry_ns, so the next query does not wait for it again.
 *
 * Errors: sym_open() returns SP_EINVAL (a directory that cannot be used, named; URLs without a
 * fetcher_program) or SP_ENOMEM;
 * sym_lookup() returns SYM_FOUND, SYM_NONE, SYM_LATER, or SP_ENOMEM; sym_add_file() returns
 * SP_EINVAL (not an ELF, wrong or malformed build id), SP_ETOOBIG, SP_EUNAVAIL (no upload
 * directory, or writing failed).
 */
#ifndef SYM_SYMBOLIZER_H
#define SYM_SYMBOLIZER_H

#include "../common/arena.h"
#include "../common/err.h"
#include "debugfile.h"

#include <stddef.h>
#include <stdint.h>

typedef struct symbolizer symbolizer;

/* Zero-initialised = every default. */
typedef struct sym_options {
    const char *symbols_dir;     /* local debug files; NULL = none */
    const char *upload_dir;      /* sym_add_file() writes here (also searched); NULL = none */
    const char *debuginfod_urls; /* space-separated; NULL = $DEBUGINFOD_URLS; "" = none */
    const char *cache_dir;       /* libdebuginfod's downloads; NULL = its default */
    int64_t fetch_timeout_ns;    /* one download; 0 = 30 s */
    uint64_t max_file_bytes;     /* largest debug file opened or downloaded; 0 = 2 GiB */
    uint32_t fetchers;           /* concurrent downloads; 0 = 2 */
    int64_t retry_ns;            /* a miss is asked again after this; 0 = 5 min */
    uint32_t open_files;         /* debug files kept open; 0 = 64 */
    /* The program run for downloads, as `<program> debuginfod-fetcher ...` (its main() hands
     * such arguments to sym_fetcher_main(), fetcher.h); "/proc/self/exe" for the server. Needed
     * when there are debuginfod URLs. */
    const char *fetcher_program;
} sym_options;

enum {
    SYM_FOUND = 0, /* frames given */
    SYM_NONE = 1,  /* the debug file is there and names nothing at the address: final */
    SYM_LATER = 2, /* no debug file (yet), or its download is still running: ask again later */
};

typedef struct sym_stats {
    uint64_t elf_lookups; /* addresses looked up in a debug file */
    uint64_t fetch_found, fetch_not_found, fetch_failed, fetch_timeout;
    uint64_t fetchers_started; /* download processes started (one per thread, and restarts) */
    uint64_t files_open;       /* debug files open now */
    uint64_t build_ids;        /* build ids known */
    uint64_t local_found;      /* debug files found in a local directory */
} sym_stats;

int sym_open(symbolizer **out, const sym_options *o, sp_err *err);
/* Stops the download threads (a running download is cancelled) and frees. NULL is a no-op. */
void sym_close(symbolizer *s);

/* The frames of `address` in the file of `build_id` (hex, any case), innermost first, in the
 * arena. Waits for a download of that build id at most until deadline_ns (CLOCK_MONOTONIC; 0 =
 * do not wait). A build id that is not hex, or longer than SYM_BUILD_ID_MAX bytes, is SYM_NONE. */
int sym_lookup(symbolizer *s, const char *build_id, uint64_t address, int64_t deadline_ns,
               sp_arena *a, sym_frame **frames, size_t *n);

/* How many debug files have arrived since sym_open() (downloads found, uploads kept): a caller
 * notes it before its first lookup and hands it to sym_wait(). */
uint64_t sym_arrivals(symbolizer *s);

/* Waits until no download is queued or running, or until deadline_ns (CLOCK_MONOTONIC);
 * returns 1 when a debug file arrived after `since` (a sym_arrivals() the caller noted before
 * its lookups: a download that ended before this call counts too), so that lookups which
 * answered SYM_LATER may now find it; 0 otherwise. */
int sym_wait(symbolizer *s, int64_t deadline_ns, uint64_t since);

/* Keeps an uploaded debug file under its build id (PUT /api/v1/debuginfo/{build_id}): checked
 * to be an ELF file with that GNU build id, then renamed into the upload directory atomically. */
int sym_add_file(symbolizer *s, const char *build_id, const void *data, size_t len, sp_err *err);

void sym_stats_get(symbolizer *s, sym_stats *out);

/* CLOCK_MONOTONIC now, in nanoseconds (for deadlines). */
int64_t sym_now_ns(void);

#endif
