/* symbolizer/fetcher: debuginfod downloads in a process of their own.
 *
 * Why a process: libdebuginfod 0.188 (Debian 12's; upstream's debuginfod_config_cache() still
 * reads the same way) closes one file descriptor twice on every download: it fclose()s the FILE
 * it made with fdopen() from a settings file's descriptor, then close()s that number again. In a
 * program with other threads the second close() lands on whatever another thread opened in
 * between: a client's socket, or a SQLite database or WAL file, which SQLite would then write
 * through a number that names something else. So libdebuginfod never runs in the server: each
 * download thread has a child, this program again started as `<program> debuginfod-fetcher`
 * (main() hands those arguments to sym_fetcher_main()), which asks libdebuginfod and answers
 * with the path of the file in libdebuginfod's cache. The child is single-threaded (libcurl's
 * resolver thread aside: a descriptor closed under it fails that child's download, nothing
 * else), so the double close there closes nothing but its own freed number.
 *
 * Owns: the child process (started on the first download, started again after it dies or is
 * killed for overrunning) and the socket pair to it.
 *
 * Threading: a sym_fetcher belongs to one download thread; sym_fetch() blocks that thread for
 * at most the download's time limit plus grace_ns (twice when a reused child ended: the
 * download is tried once more in a new one).
 *
 * Errors: sym_fetch() returns 0 with *path set, or a negative errno as libdebuginfod's are:
 * -ENOENT (no server has it), -ETIME (over the time limit), -EFBIG (over the size limit),
 * -ECANCELED (the symbolizer is closing), -ECHILD (the child could not be started, died, or
 * answered out of protocol; it is started again for the next download), or what libdebuginfod
 * returned. None is fatal to the program.
 */
#ifndef SYM_FETCHER_H
#define SYM_FETCHER_H

#include <stdint.h>
#include <sys/types.h>

/* The word main() dispatches on: `<program> debuginfod-fetcher <timeout_ns> <max_bytes>`. */
#define SYM_FETCHER_COMMAND "debuginfod-fetcher"

typedef struct sym_fetcher {
    const char *program; /* run for the child; not owned */
    int64_t timeout_ns;  /* one download */
    uint64_t max_bytes;  /* largest download */
    int64_t grace_ns;    /* F1: waited past timeout_ns for an answer; FETCHER_GRACE_MS */
    pid_t pid;           /* 0 = no child */
    pid_t stray;         /* a killed child not reaped yet (F2), or 0 */
    int sock;            /* our end of the pair, -1 = none */
    uint64_t started;    /* children started */
} sym_fetcher;

void sym_fetcher_init(sym_fetcher *f, const char *program, int64_t timeout_ns, uint64_t max_bytes);

/* Downloads the debug file of `build_id` (lowercase hex) through the child. `stopping` is polled
 * while waiting: once it is nonzero the child is told to cancel. *path is malloc'd. */
int sym_fetch(sym_fetcher *f, const char *build_id, const int *stopping, char **path);

/* Ends the child (it cancels a running download) and reaps it; the fetcher can start again. */
void sym_fetcher_stop(sym_fetcher *f);

/* The child's main: argv as main() got it (argv[1] is SYM_FETCHER_COMMAND). Returns the exit
 * status: 0 when the parent closed its end, 2 on bad arguments. */
int sym_fetcher_main(int argc, char **argv);

#endif
