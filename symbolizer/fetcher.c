/* The download process and its parent's side of the socket pair (fetcher.h says why).
 *
 * Protocol (SOCK_SEQPACKET, one message each way per download):
 *   request: the build id, lowercase hex, NUL-terminated (at most 2 * SYM_BUILD_ID_MAX + 1 bytes)
 *   reply:   int32 rc (0 or a negative errno), then the path of the file when rc is 0
 * The parent closing its end (or shutting down its writing side) tells the child to cancel what
 * it is downloading and to exit.
 *
 * Invariants:
 *   F1. The parent never waits for a reply past the download's time limit plus grace_ns
 *       (FETCHER_CANCEL_MS once stopping): a child that has not answered by then is killed and
 *       reaped, and the next download starts another.
 *   F2. Every child started is reaped: after a reply out of protocol, an end of file or a kill,
 *       and in sym_fetcher_stop(); one that SIGKILL does not end within FETCHER_REAP_MS
 *       (asleep in the kernel) is kept as the stray, reaped at the next end, not waited for.
 *   F3. The child holds no descriptor of the parent's but the standard three and its end of the
 *       pair (posix_spawn closes every other one before the exec), and starts with default
 *       signal dispositions and an empty signal mask; it then ignores the signals a terminal or
 *       a service manager sends the whole group, and holds 0-2 open.
 */
#include "fetcher.h"

#include "../common/log.h"
#include "debugfile.h"
#include "symbolizer.h"

#include <elfutils/debuginfod.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define FETCHER_FD        3    /* the child's end of the pair */
#define FETCHER_GRACE_MS  5000 /* F1: past the download's own limit */
#define FETCHER_CANCEL_MS 1000 /* F1: once stopping */
#define FETCHER_POLL_MS   100  /* how often a waiting parent looks at `stopping` */
#define FETCHER_REAP_MS   2000 /* F2: the most a killed child is waited for */
#define REQUEST_MAX       (2 * SYM_BUILD_ID_MAX + 1)
#define REPLY_MAX         (4 + PATH_MAX)

void sym_fetcher_init(sym_fetcher *f, const char *program, int64_t timeout_ns, uint64_t max_bytes)
{
    *f = (sym_fetcher){.program = program,
                       .timeout_ns = timeout_ns,
                       .max_bytes = max_bytes,
                       .grace_ns = FETCHER_GRACE_MS * 1000000LL,
                       .sock = -1};
}

/* ---- the parent's side --------------------------------------------------------------------------
 */

/* How a child that ended without being killed by us ended, logged (rate-limited). */
static void note_end(int status)
{
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    if (sig == SIGKILL || (!sig && !code))
        return;
    static sp_ratelimit rl;
    uint64_t held = 0;
    if (sp_ratelimit_ok(&rl, 10000, &held))
        sp_warn("symbolizer: the debuginfod download process %s %d (started again for the next "
                "download; %llu such messages held back)",
                sig ? "died of signal" : "exited with status", sig ? sig : code,
                (unsigned long long)held);
}

/* Reaps pid within FETCHER_REAP_MS; 1 when reaped. A child that SIGKILL cannot end that fast
 * sleeps in the kernel (a hung network file system under the cache): it is kept as the stray
 * and reaped later, not waited for (F1). */
static int reap(pid_t pid)
{
    int status = 0;
    for (int i = 0; i <= FETCHER_REAP_MS; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            if (r == pid)
                note_end(status);
            return 1;
        }
        if (r < 0 && errno != EINTR)
            break;
        usleep(1000);
    }
    return 0;
}

/* F2: kills (when `kill_it`) and reaps the child, closes the pair. */
static void end_child(sym_fetcher *f, int kill_it)
{
    if (f->sock >= 0)
        close(f->sock);
    f->sock = -1;
    if (f->stray && waitpid(f->stray, NULL, WNOHANG) != 0)
        f->stray = 0; /* reaped now, or not ours any more */
    if (!f->pid)
        return;
    if (kill_it)
        kill(f->pid, SIGKILL);
    if (!reap(f->pid)) {
        if (f->stray) /* a second one stuck: the first is given up on */
            sp_warn("symbolizer: debuginfod download process %d does not end; not waited for",
                    (int)f->stray);
        f->stray = f->pid;
    }
    f->pid = 0;
}

/* F3. Returns 0 or a negative errno. */
static int start_child(sym_fetcher *f)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    char timeout[32], max[32];
    snprintf(timeout, sizeof timeout, "%lld", (long long)f->timeout_ns);
    snprintf(max, sizeof max, "%llu", (unsigned long long)f->max_bytes);
    char *argv[] = {(char *)f->program, SYM_FETCHER_COMMAND, timeout, max, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    /* dup2 onto the same number clears close-on-exec too (glibc 2.29 and later). */
    posix_spawn_file_actions_adddup2(&fa, sv[1], FETCHER_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, FETCHER_FD + 1);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, f->program, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("symbolizer: cannot start the debuginfod download process %s: %s (%llu such "
                    "messages held back)",
                    f->program, strerror(rc), (unsigned long long)held);
        return -rc;
    }
    f->pid = pid;
    f->sock = sv[0];
    f->started++;
    return 0;
}

/* One reply, or -ECHILD (the child is ended: F2). */
static int read_reply(sym_fetcher *f, char **path)
{
    char buf[REPLY_MAX + 1];
    ssize_t n;
    while ((n = recv(f->sock, buf, sizeof buf, MSG_TRUNC)) < 0 && errno == EINTR)
        ;
    int32_t rc;
    if (n < (ssize_t)sizeof rc || n > REPLY_MAX) {
        end_child(f, 1); /* an end of file (it died) or out of protocol */
        return -ECHILD;
    }
    memcpy(&rc, buf, sizeof rc);
    buf[n] = 0;
    const char *p = buf + sizeof rc;
    /* an errno is below 4096; -ECHILD is ours to say (the child ended) */
    if (rc > 0 || rc < -4095 || rc == -ECHILD || (rc == 0 && !*p)) {
        end_child(f, 1);
        return -ECHILD;
    }
    if (rc == 0 && !(*path = strdup(p)))
        return -ENOMEM;
    return rc;
}

/* F1. */
static int await_reply(sym_fetcher *f, const int *stopping, char **path)
{
    int64_t give_up = sym_now_ns() + f->timeout_ns + f->grace_ns;
    int told = 0;
    for (;;) {
        struct pollfd p = {.fd = f->sock, .events = POLLIN};
        int n = poll(&p, 1, FETCHER_POLL_MS);
        if (n > 0)
            return read_reply(f, path);
        if (n < 0 && errno != EINTR) {
            end_child(f, 1);
            return -ECHILD;
        }
        int64_t now = sym_now_ns();
        if (!told && __atomic_load_n(stopping, __ATOMIC_ACQUIRE)) {
            shutdown(f->sock, SHUT_WR); /* the child's progress callback cancels */
            told = 1;
            if (give_up > now + FETCHER_CANCEL_MS * 1000000LL)
                give_up = now + FETCHER_CANCEL_MS * 1000000LL;
        }
        if (now > give_up) {
            end_child(f, 1);
            return told ? -ECANCELED : -ETIME;
        }
    }
}

int sym_fetch(sym_fetcher *f, const char *build_id, const int *stopping, char **path)
{
    *path = NULL;
    size_t len = strlen(build_id) + 1;
    if (len > REQUEST_MAX)
        return -EINVAL;
    /* A child that ended since its last answer (killed, or crashed in libdebuginfod) shows as a
     * failed send or an end of file: the download gets one more try in a new child. A new
     * child that ends is the download's failure (-ECHILD), not tried again. */
    for (int attempt = 0;; attempt++) {
        if (__atomic_load_n(stopping, __ATOMIC_ACQUIRE))
            return -ECANCELED;
        int fresh = !f->pid;
        if (fresh && start_child(f) != 0)
            return -ECHILD;
        int rc = -ECHILD;
        if (send(f->sock, build_id, len, MSG_NOSIGNAL) == (ssize_t)len)
            rc = await_reply(f, stopping, path);
        else
            end_child(f, 1);
        if (rc != -ECHILD || fresh || attempt > 0)
            return rc;
    }
}

void sym_fetcher_stop(sym_fetcher *f)
{
    if (f->pid) {
        close(f->sock); /* the child reads an end of file and exits */
        f->sock = -1;
        if (reap(f->pid))
            f->pid = 0;
    }
    end_child(f, 1); /* not gone in FETCHER_REAP_MS: killed */
}

/* ---- the child ----------------------------------------------------------------------------------
 */

typedef struct child_limits {
    int64_t deadline;
    uint64_t max_bytes;
    int cancelled; /* -ETIME, -EFBIG, -ECANCELED */
} child_limits;

/* libdebuginfod calls this while it downloads; nonzero cancels. */
static int child_progress(debuginfod_client *c, long done, long total)
{
    child_limits *l = debuginfod_get_user_data(c);
    if (!l)
        return 0;
    struct pollfd p = {.fd = FETCHER_FD, .events = POLLIN};
    if (poll(&p, 1, 0) != 0) /* the parent shut its end, or died */
        l->cancelled = -ECANCELED;
    else if (sym_now_ns() > l->deadline)
        l->cancelled = -ETIME;
    else if ((done > 0 && (uint64_t)done > l->max_bytes) ||
             (total > 0 && (uint64_t)total > l->max_bytes))
        l->cancelled = -EFBIG;
    return l->cancelled != 0;
}

static int valid_request(const char *req, ssize_t n)
{
    if (n < 3 || req[n - 1] != 0 || (size_t)n - 1 != strlen(req))
        return 0;
    for (const char *c = req; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

/* One download; the reply's rc. A cancelled download may come back as any error
 * (libdebuginfod reports -ENOENT when every server failed): the child's own reason first. */
static int32_t child_download(debuginfod_client *c, const char *id, child_limits *l, char **path)
{
    debuginfod_set_user_data(c, l);
    int fd = debuginfod_find_debuginfo(c, (const unsigned char *)id, 0, path);
    debuginfod_set_user_data(c, NULL);
    if (fd >= 0) {
        close(fd);
        return *path ? 0 : -ENOMEM;
    }
    return l->cancelled ? l->cancelled : fd;
}

int sym_fetcher_main(int argc, char **argv)
{
    char *end1 = NULL, *end2 = NULL;
    long long timeout = argc == 4 ? strtoll(argv[2], &end1, 10) : 0;
    unsigned long long max = argc == 4 ? strtoull(argv[3], &end2, 10) : 0;
    if (argc != 4 || !end1 || *end1 || !end2 || *end2 || timeout <= 0 || !max) {
        fprintf(stderr, "spanprof " SYM_FETCHER_COMMAND ": started by the server for its "
                        "debuginfod downloads, with <timeout_ns> <max_bytes>\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the download thread that started us ended */
    /* Our life is the parent's to end (an end of file, PDEATHSIG, SIGKILL): a terminal's ^C or
     * a service manager's SIGTERM to the whole group is the server's to act on. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Started by a server whose 0-2 were closed, the cache's files would take those numbers and
     * a message to stderr would land in a debug file: they are held by /dev/null instead. */
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
        ;
    if (fd > 2)
        close(fd);
    debuginfod_client *c = debuginfod_begin();
    if (!c)
        return 1;
    debuginfod_set_progressfn(c, child_progress);
    for (;;) {
        char req[REQUEST_MAX + 1];
        ssize_t n = recv(FETCHER_FD, req, sizeof req, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        char *path = NULL;
        child_limits l = {sym_now_ns() + timeout, max, 0};
        int32_t rc =
            n <= REQUEST_MAX && valid_request(req, n) ? child_download(c, req, &l, &path) : -EINVAL;
        char reply[REPLY_MAX];
        size_t len = sizeof rc;
        if (rc == 0 && strlen(path) >= PATH_MAX)
            rc = -ENAMETOOLONG;
        memcpy(reply, &rc, sizeof rc);
        if (rc == 0) {
            memcpy(reply + len, path, strlen(path));
            len += strlen(path);
        }
        free(path);
        if (send(FETCHER_FD, reply, len, MSG_NOSIGNAL) != (ssize_t)len)
            break;
    }
    debuginfod_end(c);
    return 0;
}
