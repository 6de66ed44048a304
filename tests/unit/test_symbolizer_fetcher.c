/* symbolizer/fetcher: debuginfod downloads in a child process (fetcher.h says why).
 *
 * The child is this test program again (/proc/self/exe debuginfod-fetcher ...): with
 * SP_FAKE_FETCHER set it plays a child that answers, ends, hangs, crashes or answers out of
 * protocol, speaking the protocol fetcher.c states; without it, it is the real child
 * (sym_fetcher_main) and asks libdebuginfod. The parent's side is what is tested: the answers it
 * returns, the children it starts, kills and reaps (F1, F2), what the child inherits and which
 * signals it leaves to the server (F3).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "symbolizer/fetcher.h"
#include "symbolizer/symbolizer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ID "5eed0000000000000000000000000000000000f1"

/* ---- the fake child ------------------------------------------------------------------------ */

static void reply(int32_t rc, const char *path)
{
    char buf[4096];
    memcpy(buf, &rc, sizeof rc);
    size_t n = strlen(path);
    memcpy(buf + sizeof rc, path, n);
    send(3, buf, sizeof rc + n, MSG_NOSIGNAL);
}

/* The descriptors this process holds, as "0 1 2 3". */
static void open_fds(char *out, size_t cap)
{
    DIR *d = opendir("/proc/self/fd");
    int own = dirfd(d), fds[64], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.' && atoi(e->d_name) != own)
            fds[n++] = atoi(e->d_name);
    closedir(d);
    for (int i = 1; i < n; i++) /* a few: insertion sort */
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    out[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%d", i ? " " : "", fds[i]);
}

static int fake_child(const char *mode)
{
    char req[256];
    for (;;) {
        ssize_t n = recv(3, req, sizeof req, 0);
        if (n <= 0)
            return 0;
        char path[512];
        snprintf(path, sizeof path, "/cache/%s/debuginfo", req);
        if (strcmp(mode, "ok") == 0) {
            reply(0, path);
        } else if (strcmp(mode, "once") == 0) {
            reply(0, path);
            return 0;
        } else if (strcmp(mode, "fds") == 0) {
            open_fds(path, sizeof path);
            reply(0, path);
        } else if (strcmp(mode, "signals") == 0) {
            sigset_t blocked;
            sigprocmask(SIG_SETMASK, NULL, &blocked);
            int nblocked = 0;
            for (int sig = 1; sig < NSIG; sig++)
                nblocked += sigismember(&blocked, sig) == 1;
            struct sigaction pipe;
            sigaction(SIGPIPE, NULL, &pipe);
            snprintf(path, sizeof path, "blocked %d, SIGPIPE %s", nblocked,
                     pipe.sa_handler == SIG_DFL ? "default" : "not default");
            reply(0, path);
        } else if (strcmp(mode, "hang") == 0) {
            /* until the parent shuts its end (as the real child's progress callback sees it) */
            const char *mark = getenv("SP_FAKE_MARK");
            if (mark)
                close(open(mark, O_CREAT | O_WRONLY, 0600)); /* "downloading" */
            struct pollfd p = {.fd = 3, .events = POLLIN};
            if (poll(&p, 1, 30000) == 1)
                reply(-ECANCELED, "");
            return 0;
        } else if (strcmp(mode, "garbage") == 0) {
            send(3, "x", 1, MSG_NOSIGNAL);
            sleep(30);
            return 0;
        } else if (strcmp(mode, "crash") == 0) {
            raise(SIGUSR1); /* default action: the process ends (ASan catches SIGSEGV itself) */
        }
    }
}

/* ---- helpers ------------------------------------------------------------------------------- */

static int stopping;

static void use_fake(const char *mode)
{
    setenv("SP_FAKE_FETCHER", mode, 1);
    __atomic_store_n(&stopping, 0, __ATOMIC_RELEASE);
}

static void init(sym_fetcher *f)
{
    sym_fetcher_init(f, "/proc/self/exe", 5LL * 1000000000, 1 << 20);
}

/* F2: a child the fetcher ended is gone, not a zombie of ours. */
static void assert_reaped(pid_t pid)
{
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static double seconds_since(int64_t t0)
{
    return (double)(sym_now_ns() - t0) / 1e9;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void answers_with_the_path_the_child_names(void **state)
{
    (void)state;
    use_fake("ok");
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
        assert_string_equal(path, "/cache/" ID "/debuginfo");
        free(path);
    }
    assert_int_equal(f.started, 1); /* one child for every download */
    pid_t pid = f.pid;
    sym_fetcher_stop(&f);
    assert_int_equal(f.pid, 0);
    assert_reaped(pid);
}

static void a_child_that_ended_is_replaced_and_the_download_tried_again(void **state)
{
    (void)state;
    use_fake("once"); /* answers, then exits */
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
    free(path);
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
    free(path);
    assert_int_equal(f.started, 2);
    /* killed from outside (an operator, the OOM killer) */
    use_fake("ok");
    kill(f.pid, SIGKILL);
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
    assert_string_equal(path, "/cache/" ID "/debuginfo");
    free(path);
    assert_int_equal(f.started, 3);
    sym_fetcher_stop(&f);
}

static void a_crash_in_a_new_child_fails_that_download_once(void **state)
{
    (void)state;
    use_fake("crash");
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), -ECHILD);
    assert_null(path);
    assert_int_equal(f.started, 1); /* a new child that dies is not tried again */
    assert_int_equal(f.pid, 0);
    sym_fetcher_stop(&f);
}

static void a_child_past_its_time_limit_is_killed_and_reaped(void **state)
{
    (void)state;
    use_fake("hang");
    sym_fetcher f;
    init(&f);
    f.timeout_ns = 1000000;
    f.grace_ns = 200000000;
    char *path = NULL;
    int64_t t0 = sym_now_ns();
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), -ETIME);
    assert_true(seconds_since(t0) < 3);
    assert_int_equal(f.pid, 0);
    assert_int_equal(f.sock, -1);
    use_fake("ok"); /* the next download starts another, with the usual limits */
    f.timeout_ns = 5LL * 1000000000;
    f.grace_ns = 5LL * 1000000000;
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
    free(path);
    assert_int_equal(f.started, 2);
    sym_fetcher_stop(&f);
}

static void an_answer_out_of_protocol_ends_the_child(void **state)
{
    (void)state;
    use_fake("garbage");
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    int64_t t0 = sym_now_ns();
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), -ECHILD);
    assert_true(seconds_since(t0) < 3); /* killed, not waited for */
    assert_int_equal(f.pid, 0);
    assert_null(path);
    sym_fetcher_stop(&f);
}

/* Sets `stopping` once the fake child is downloading (its mark file exists). */
static void *stop_soon(void *arg)
{
    const char *mark = arg;
    for (int i = 0; i < 30000 && access(mark, F_OK) != 0; i++)
        usleep(1000);
    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void stopping_cancels_a_running_download(void **state)
{
    (void)state;
    use_fake("hang");
    char mark[] = "/tmp/sp_fetcher_mark_XXXXXX";
    close(mkstemp(mark));
    unlink(mark);
    setenv("SP_FAKE_MARK", mark, 1);
    sym_fetcher f;
    init(&f);
    f.timeout_ns = 60LL * 1000000000;
    pthread_t t;
    pthread_create(&t, NULL, stop_soon, mark);
    char *path = NULL;
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), -ECANCELED);
    pthread_join(t, NULL);
    assert_int_equal(access(mark, F_OK), 0); /* cancelled while downloading, not before */
    unlink(mark);
    unsetenv("SP_FAKE_MARK");
    pid_t pid = f.pid;
    sym_fetcher_stop(&f);
    if (pid)
        assert_reaped(pid);
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), -ECANCELED); /* nothing started */
    assert_int_equal(f.started, 1);
}

/* F3: whatever the spawning thread blocked or ignored (the server ignores SIGPIPE), the child
 * starts with an empty mask and default dispositions. */
static void the_child_starts_with_default_signals(void **state)
{
    (void)state;
    use_fake("signals");
    sigset_t usr2, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, &old);
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_string_equal(path, "blocked 0, SIGPIPE default");
    free(path);
    sym_fetcher_stop(&f);
}

static void the_child_holds_none_of_the_parents_descriptors(void **state)
{
    (void)state;
    use_fake("fds");
    /* not close-on-exec, as a careless thread's; past the number the child's end takes */
    int fd = open("/proc/self/exe", O_RDONLY), leaky = fcntl(fd, F_DUPFD, 10);
    close(fd);
    assert_true(leaky >= 10);
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    assert_int_equal(sym_fetch(&f, ID, &stopping, &path), 0);
    assert_string_equal(path, "0 1 2 3");
    free(path);
    sym_fetcher_stop(&f);
    close(leaky);
}

/* The real child, with libdebuginfod: a server that refuses connections is a failed download
 * (not a child that ended), a malformed build id is refused by the child. The cache's settings
 * files are written first, as sym_open() does: that is the path on which libdebuginfod closes a
 * descriptor twice. */
static void the_real_child_answers_from_libdebuginfod(void **state)
{
    (void)state;
    unsetenv("SP_FAKE_FETCHER");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s); /* nobody listens on that port now */
    char url[64], cache[] = "/tmp/sp_fetcher_XXXXXX", cmd[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    assert_non_null(mkdtemp(cache));
    snprintf(cmd, sizeof cmd, "echo 86400 > %s/cache_clean_interval_s", cache);
    assert_int_equal(system(cmd), 0);
    setenv("DEBUGINFOD_URLS", url, 1);
    setenv("DEBUGINFOD_CACHE_PATH", cache, 1);
    sym_fetcher f;
    init(&f);
    char *path = NULL;
    int rc = sym_fetch(&f, ID, &stopping, &path);
    assert_true(rc < 0);
    assert_int_not_equal(rc, -ECHILD);
    assert_null(path);
    /* a ^C or a service manager's SIGTERM to the group is the server's: the child stays */
    pid_t pid = f.pid;
    kill(pid, SIGTERM);
    kill(pid, SIGINT);
    usleep(100000);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
    assert_int_equal(sym_fetch(&f, "5EED", &stopping, &path), -EINVAL);
    assert_int_equal(f.started, 1); /* the same child answered both */
    sym_fetcher_stop(&f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], SYM_FETCHER_COMMAND) == 0) {
        const char *mode = getenv("SP_FAKE_FETCHER");
        return mode ? fake_child(mode) : sym_fetcher_main(argc, argv);
    }
    signal(SIGPIPE, SIG_IGN); /* as the server */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answers_with_the_path_the_child_names),
        cmocka_unit_test(a_child_that_ended_is_replaced_and_the_download_tried_again),
        cmocka_unit_test(a_crash_in_a_new_child_fails_that_download_once),
        cmocka_unit_test(a_child_past_its_time_limit_is_killed_and_reaped),
        cmocka_unit_test(an_answer_out_of_protocol_ends_the_child),
        cmocka_unit_test(stopping_cancels_a_running_download),
        cmocka_unit_test(the_child_holds_none_of_the_parents_descriptors),
        cmocka_unit_test(the_child_starts_with_default_signals),
        cmocka_unit_test(the_real_child_answers_from_libdebuginfod),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
