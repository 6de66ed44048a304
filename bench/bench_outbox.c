/* bench_outbox: the on-disk outbox (delivery/outbox.h) that carries Pyroscope pushes and
 * forwarded traces.
 *
 * For each item size: outbox_put() rate with the sender held back (pure write path), without and
 * with fsync (the difference is the fsync cost per item, file and directory), where a two-phase
 * put spends its time (stage = write, commit = rename + directory fsync), then the delivery rate
 * once the sender is let go, to an in-memory sink (read, batch, unlink) and, after a reopen, over
 * HTTP/1.1 with libcurl to a loopback sink thread (directory scan + the real sender).
 *
 *   bench_outbox [-n items] [-d dir]     (default 20000 items; fsync runs use n/10; dir = /tmp)
 */
#include "../delivery/outbox.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define SEC 1000000000LL

/* ---- the in-memory sink: holds the sender back until released ---- */

typedef struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, refuse; /* refuse: answer "retry later" once open (keeps the queue for a reopen) */
    uint64_t bytes, batches;
} sink;

static int sink_deliver(void *ud, const char *tenant, const uint8_t *body, size_t len,
                        int64_t *retry_after_ns, sp_err *err)
{
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    while (!s->open)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->refuse) {
        pthread_mutex_unlock(&s->mu);
        return sp_fail(err, SP_EUNAVAIL, "held for the reopen");
    }
    s->bytes += len;
    s->batches++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void sink_release(sink *s, int refuse)
{
    pthread_mutex_lock(&s->mu);
    s->refuse = refuse;
    s->open = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- the HTTP sink: HTTP/1.1 keep-alive, answers 200 to every POST ---- */

typedef struct http_sink {
    int fd, port;
    uint64_t bytes, requests;
} http_sink;

static void *http_sink_run(void *arg)
{
    http_sink *h = arg;
    char *buf = malloc(1 << 20);
    for (;;) {
        int c = accept(h->fd, NULL, NULL);
        if (c < 0)
            break;
        size_t have = 0;
        for (;;) {
            char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
            if (!end) {
                ssize_t r = read(c, buf + have, (1 << 20) - have);
                if (r <= 0)
                    break;
                have += (size_t)r;
                continue;
            }
            size_t head = (size_t)(end - buf) + 4;
            const char *cl = memmem(buf, head, "Content-Length:", 15);
            if (!cl)
                cl = memmem(buf, head, "content-length:", 15);
            uint64_t body = cl ? strtoull(cl + 15, NULL, 10) : 0, got = have - head;
            while (got < body) { /* the body is only counted */
                ssize_t r = read(c, buf, 1 << 20);
                if (r <= 0)
                    goto done;
                got += (uint64_t)r;
            }
            /* Whatever came after the body (none: one request at a time) is dropped. */
            have = 0;
            h->bytes += body;
            h->requests++;
            static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            if (write(c, ok, sizeof ok - 1) < 0)
                break;
        }
    done:
        close(c);
    }
    free(buf);
    return NULL;
}

static int http_sink_start(http_sink *h, pthread_t *t)
{
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(h->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(h->fd, 8) != 0 ||
        getsockname(h->fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    h->port = ntohs(a.sin_port);
    return pthread_create(t, NULL, http_sink_run, h);
}

/* ---- runs ---- */

static void die(const char *what, const sp_err *err)
{
    fprintf(stderr, "bench_outbox: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static outbox *open_with(const char *dir, int fsync, sink *s, const char *url)
{
    outbox_options o = {
        .dir = dir, .name = "bench", .max_bytes = (uint64_t)8 << 30, .fsync = fsync};
    if (s) {
        o.deliver = sink_deliver;
        o.deliver_ud = s;
    } else {
        o.http.url = url;
        o.http.content_type = "application/x-protobuf";
    }
    outbox *ob;
    sp_err err = {0};
    if (outbox_open(&ob, &o, &err) != 0)
        die("open", &err);
    return ob;
}

static void report(const char *what, size_t size, int n, int64_t ns, const char *extra)
{
    double s = (double)ns / SEC;
    printf("%-22s size=%-6zu items=%-6d items/s=%-9.0f MB/s=%-8.1f us/item=%-8.1f %s\n", what, size,
           n, n / s, (double)n * size / s / 1e6, (double)ns / 1000 / n, extra);
}

static void run_size(const char *base, size_t size, int n)
{
    char dir[4096];
    uint8_t *item = malloc(size);
    for (size_t i = 0; i < size; i++)
        item[i] = (uint8_t)(i * 131 + 7);
    sp_err err = {0};
    double us_plain = 0;
    for (int fs = 0; fs <= 1; fs++) {
        int cnt = fs ? (n / 10 > 0 ? n / 10 : 1) : n;
        snprintf(dir, sizeof dir, "%s/bench_outbox.%d.%zu.%d", base, (int)getpid(), size, fs);
        sink s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        outbox *ob = open_with(dir, fs, &s, NULL);
        int64_t t0 = bench_mono_ns();
        for (int i = 0; i < cnt; i++)
            if (outbox_put(ob, "bench", item, size, &err) != 0)
                die("put", &err);
        int64_t put_ns = bench_mono_ns() - t0;
        double us = (double)put_ns / 1000 / cnt;
        char extra[128] = "";
        if (!fs)
            us_plain = us;
        else
            snprintf(extra, sizeof extra, "fsync_cost_us/item=%.1f", us - us_plain);
        report(fs ? "put (fsync)" : "put", size, cnt, put_ns, extra);
        if (fs) { /* where a durable put spends its time */
            int k = cnt < 200 ? cnt : 200;
            int64_t st = 0, cm = 0;
            for (int i = 0; i < k; i++) {
                outbox_ticket tk;
                int64_t a = bench_mono_ns();
                if (outbox_stage(ob, "bench", item, size, &tk, &err) != 0)
                    die("stage", &err);
                int64_t b = bench_mono_ns();
                if (outbox_commit(ob, &tk, &err) != 0)
                    die("commit", &err);
                st += b - a;
                cm += bench_mono_ns() - b;
            }
            printf("%-22s size=%-6zu items=%-6d stage_us=%.1f commit_us=%.1f\n",
                   "  two-phase (fsync)", size, k, (double)st / 1000 / k, (double)cm / 1000 / k);
            cnt += k;
        }
        t0 = bench_mono_ns();
        sink_release(&s, 0);
        if (outbox_drain(ob, 600 * SEC) != 0)
            die("drain", NULL);
        int64_t dr_ns = bench_mono_ns() - t0;
        snprintf(extra, sizeof extra, "batches=%" PRIu64, s.batches);
        report(fs ? "deliver memory (fsync)" : "deliver memory", size, cnt, dr_ns, extra);
        outbox_close(ob);
        bench_rm_tree(dir);
    }
    /* Over HTTP: fill with the sender held, close (the files stay), reopen with the libcurl
     * sender against the loopback sink and time until the queue is empty. */
    snprintf(dir, sizeof dir, "%s/bench_outbox.%d.%zu.http", base, (int)getpid(), size);
    sink s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    outbox *ob = open_with(dir, 0, &s, NULL);
    for (int i = 0; i < n; i++)
        if (outbox_put(ob, "bench", item, size, &err) != 0)
            die("put", &err);
    sink_release(&s, 1); /* the held batch goes back to the queue; close keeps every file */
    outbox_close(ob);
    outbox_stats left;
    http_sink h = {0};
    pthread_t ht;
    if (http_sink_start(&h, &ht) != 0)
        die("http sink", NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", h.port);
    int64_t t0 = bench_mono_ns();
    ob = open_with(dir, 0, NULL, url);
    outbox_stats_get(ob, &left);
    if (outbox_drain(ob, 600 * SEC) != 0)
        die("http drain", NULL);
    int64_t ns = bench_mono_ns() - t0;
    outbox_stats st;
    outbox_stats_get(ob, &st);
    char extra[128];
    snprintf(extra, sizeof extra, "requests=%" PRIu64 " (reopen+scan included)", h.requests);
    report("deliver http/1.1", size, (int)left.queued, ns, extra);
    outbox_close(ob);
    shutdown(h.fd, SHUT_RDWR);
    close(h.fd);
    pthread_join(ht, NULL);
    bench_rm_tree(dir);
    free(item);
}

int main(int argc, char **argv)
{
    int n = 20000;
    const char *dir = "/tmp";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-n") == 0)
            n = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-d") == 0)
            dir = argv[i + 1];
    }
    struct statfs sf;
    const char *fs = statfs(dir, &sf) == 0 && sf.f_type == 0x01021994 ? "tmpfs" : "disk";
    printf("bench_outbox: %d items per run (fsync runs: %d) under %s (%s)\n", n, n / 10, dir, fs);
    static const size_t sizes[] = {1024, 16384, 262144};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        /* Large items: fewer, so each run writes about the same bytes at most. */
        int cnt = sizes[i] > 16384 ? n / 16 : n;
        run_size(dir, sizes[i], cnt > 10 ? cnt : 10);
    }
    return 0;
}
