/* Listeners, accepted connections, protocol sniffing and graceful shutdown. */
#include "conn.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "server.h"
#include "sched.h"
#include "workers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN  24
#define CLOSE_LINGER_MS 5000
#define ACCEPT_PAUSE_MS 100

struct srv_server {
    srv_ctx ctx;
    struct evconnlistener *listeners[2];
    int ports[2];
    SSL_CTX *ssl_ctx;
    srv_workers *workers, *query_workers;
    srv_conn *conns;
    int nconns;
    struct event *sig_term, *sig_int, *shutdown_timer, *drain_timer;
    int64_t shutdown_deadline_ns;
};

static srv_server *server_of(srv_ctx *ctx)
{
    return (srv_server *)ctx; /* ctx is the first member */
}

struct evbuffer *srv_conn_input(srv_conn *c)
{
    return bufferevent_get_input(c->bev);
}

struct evbuffer *srv_conn_output(srv_conn *c)
{
    return bufferevent_get_output(c->bev);
}

static void conn_free(srv_conn *c)
{
    srv_server *s = server_of(c->ctx);
    if (c->head_timer)
        event_free(c->head_timer);
    if (c->ops && c->ops->free)
        c->ops->free(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    sp_metrics_gauge_set("open_connections", s->nconns);
    if (c->bev) {
        if (c->tls) {
            SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
            if (ssl)
                SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
        }
        bufferevent_free(c->bev);
    }
    free(c);
}

static void deferred_free(evutil_socket_t fd, short what, void *arg)
{
    conn_free(arg);
}

/* Never frees c on the spot: the protocol layers call this deep inside their own callbacks (and
 * nghttp2's) and may still look at c->closed or their state afterwards. The free runs from the
 * loop once the current callback has returned. */
void srv_conn_close(srv_conn *c, int abort_now)
{
    if (c->closed)
        return;
    if (!abort_now && evbuffer_get_length(srv_conn_output(c)) > 0) {
        c->close_after_write = 1; /* on_write frees it once the answer is out */
        bufferevent_disable(c->bev, EV_READ);
        /* A peer that stopped reading (a flood of PINGs whose ACKs it never takes) would hold the
         * connection and its output until the idle timeout: it gets CLOSE_LINGER_MS without
         * progress to take the last answer or GOAWAY, then on_event frees the connection. */
        int64_t ms = c->ctx->cfg->idle_timeout_ms < CLOSE_LINGER_MS ? c->ctx->cfg->idle_timeout_ms
                                                                    : CLOSE_LINGER_MS;
        struct timeval linger = {ms / 1000, (ms % 1000) * 1000};
        bufferevent_set_timeouts(c->bev, NULL, &linger);
        return;
    }
    c->closed = 1;
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    struct timeval now = {0, 0};
    if (event_base_once(c->ctx->base, -1, EV_TIMEOUT, deferred_free, c, &now) != 0)
        conn_free(c); /* cannot defer (out of memory): the caller returns straight away */
}

static void on_head_timeout(evutil_socket_t fd, short what, void *arg)
{
    srv_conn *c = arg;
    sp_debug("msg=\"request head timed out\" peer=%s timeout_ms=%lld", c->peer,
             (long long)c->ctx->cfg->header_timeout_ms);
    sp_metrics_gauge_add("header_timeouts_total", 1);
    srv_conn_close(c, 1);
}

void srv_conn_head_deadline(srv_conn *c, int armed)
{
    int64_t ms = c->ctx->cfg->header_timeout_ms;
    if (ms <= 0 || c->closed)
        return;
    if (!armed) {
        if (c->head_timer)
            evtimer_del(c->head_timer);
        return;
    }
    if (!c->head_timer && !(c->head_timer = evtimer_new(c->ctx->base, on_head_timeout, c)))
        return; /* out of memory: the idle timeout still applies */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->head_timer, &tv);
}

static int sniff(srv_conn *c)
{
    if (c->tls && strcmp(srv_tls_alpn(c->bev), "h2") == 0)
        return srv_http2_start(c);
    struct evbuffer *in = srv_conn_input(c);
    size_t n = evbuffer_get_length(in);
    size_t cmp = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
    unsigned char head[H2_PREFACE_LEN];
    evbuffer_copyout(in, head, cmp);
    if (memcmp(head, h2_preface, cmp) != 0)
        return srv_http1_start(c);
    if (n < H2_PREFACE_LEN)
        return 0; /* could still be HTTP/2: wait for the rest of the preface */
    return srv_http2_start(c);
}

/* libevent 2.1 reads at most 4096 bytes a readiness event (its EVBUFFER_MAX_READ), each time
 * with an ioctl(FIONREAD), a readv, a callback and another turn of the loop with its
 * epoll_wait: a 1.3 MB Export took 320 of them (strace). For a plain socket the callback takes
 * what else is readable right away, up to READ_AHEAD_BYTES in READ_AHEAD_CHUNK reads; a TLS
 * connection's bytes go through OpenSSL's bufferevent only. What it reads is parsed in the same
 * callback, so this only moves bytes out of the socket's buffer sooner: the flow-control windows
 * and the message limits still bound what a peer can send. EOF and errors are left in the
 * socket for the bufferevent's next read to report. */
#define READ_AHEAD_CHUNK ((ev_ssize_t)64 * 1024)
#define READ_AHEAD_BYTES ((size_t)256 * 1024)

static void read_more(evutil_socket_t fd, struct evbuffer *in)
{
    for (size_t got = 0; fd >= 0 && got < READ_AHEAD_BYTES;) {
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(in, READ_AHEAD_CHUNK, v, 2);
        if (nv < 1)
            return;
        struct iovec io[2];
        size_t room = 0;
        for (int i = 0; i < nv; i++) {
            io[i].iov_base = v[i].iov_base;
            io[i].iov_len = v[i].iov_len;
            room += v[i].iov_len;
        }
        ssize_t n = readv(fd, io, nv);
        if (n <= 0)
            return; /* nothing more now (EAGAIN), or EOF / an error: the bufferevent's */
        size_t left = (size_t)n;
        int used = 0;
        for (; used < nv && left; used++) {
            if (v[used].iov_len > left)
                v[used].iov_len = left;
            left -= v[used].iov_len;
        }
        if (evbuffer_commit_space(in, v, used) != 0)
            return;
        got += (size_t)n;
        if ((size_t)n < room)
            return; /* the socket is empty */
    }
}

static void read_ahead(srv_conn *c)
{
    if (c->tls)
        return;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* A socket bufferevent keeps its input's end frozen but while it reads itself (as its own
     * read callback does, libevent's bufferevent_sock.c): the same here. */
    evbuffer_unfreeze(in, 0);
    read_more(fd, in);
    evbuffer_freeze(in, 0);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    srv_conn *c = arg;
    read_ahead(c);
    int rc = c->ops ? c->ops->on_read(c) : sniff(c);
    if (rc < 0)
        srv_conn_close(c, 1);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    srv_conn *c = arg;
    if (c->close_after_write && evbuffer_get_length(srv_conn_output(c)) == 0) {
        c->closed = 1;
        conn_free(c);
        return;
    }
    if (c->ops && c->ops->on_drain && c->ops->on_drain(c) < 0)
        srv_conn_close(c, 1);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    srv_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_ERROR) {
        unsigned long e;
        while (c->tls && (e = bufferevent_get_openssl_error(bev)) != 0) {
            char buf[200];
            ERR_error_string_n(e, buf, sizeof buf);
            sp_debug("msg=\"tls error\" peer=%s err=\"%s\"", c->peer, buf);
        }
    }
    if (what & BEV_EVENT_TIMEOUT)
        sp_debug("msg=\"connection timed out\" peer=%s", c->peer);
    /* EOF, error or timeout: nothing more will arrive; outstanding work is cancelled. */
    c->closed = 1;
    conn_free(c);
}

static void adopt(srv_server *s, srv_conn *c);

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
                      void *arg)
{
    srv_server *s = arg;
    if (s->ctx.draining) {
        evutil_closesocket(fd);
        return;
    }
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->ctx = &s->ctx;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    if (s->ssl_ctx) {
        SSL *ssl = SSL_new(s->ssl_ctx);
        c->tls = 1;
        c->bev = ssl ? bufferevent_openssl_socket_new(
                           s->ctx.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (!c->bev)
            SSL_free(ssl);
        else
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(s->ctx.base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    adopt(s, c);
}

static void adopt(srv_server *s, srv_conn *c)
{
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    sp_metrics_gauge_set("open_connections", s->nconns);
    sp_metrics_gauge_add("accepted_connections_total", 1);
    struct timeval idle = {s->ctx.cfg->idle_timeout_ms / 1000,
                           (s->ctx.cfg->idle_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    srv_conn_head_deadline(c, 1);
}

int srv_server_adopt(srv_server *s, struct bufferevent *bev, const char *peer)
{
    srv_conn *c = calloc(1, sizeof *c);
    if (!c)
        return SP_ENOMEM;
    c->ctx = &s->ctx;
    c->bev = bev;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    adopt(s, c);
    return 0;
}

struct event_base *srv_server_base(srv_server *s)
{
    return s->ctx.base;
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    srv_server *s = arg;
    if (s->ctx.draining)
        return;
    for (int i = 0; i < 2; i++)
        if (s->listeners[i])
            evconnlistener_enable(s->listeners[i]);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    srv_server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep serving the connections we have. The pending connection stays in
     * the backlog, so the listener would be readable again at once: a loop at full CPU writing
     * this line, while the clients that hold the descriptors are served slower. Pause accepting
     * for ACCEPT_PAUSE_MS instead (connections that close meanwhile free descriptors). */
    sp_warn("msg=\"accept failed; pausing accepts\" err=\"%s\" pause_ms=%d open_connections=%d",
            evutil_socket_error_to_string(e), ACCEPT_PAUSE_MS, s->nconns);
    sp_metrics_gauge_add("accept_errors_total", 1);
    for (int i = 0; i < 2; i++)
        if (s->listeners[i])
            evconnlistener_disable(s->listeners[i]);
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    if (event_base_once(s->ctx.base, -1, EV_TIMEOUT, resume_accepting, s, &pause) != 0)
        resume_accepting(-1, 0, s);
}

static int bind_listener(srv_server *s, int which, const char *addr, sp_err *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return sp_fail(err, SP_EINVAL, "address \"%s\" is not HOST:PORT", addr);
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof host)
        return sp_fail(err, SP_EINVAL, "address \"%s\" is too long", addr);
    memcpy(host, addr, hlen);
    host[hlen] = 0;
    if (host[0] == '[' && hlen > 1 && host[hlen - 1] == ']') { /* [::1]:4040 */
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = 0;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (gai != 0)
        return sp_fail(err, SP_EINVAL, "address \"%s\": %s", addr, gai_strerror(gai));
    s->listeners[which] = evconnlistener_new_bind(s->ctx.base, on_accept, s,
                                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                                                  res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!s->listeners[which])
        return sp_fail(err, SP_EUNAVAIL, "cannot listen on %s: %s", addr, strerror(errno));
    evconnlistener_set_error_cb(s->listeners[which], on_accept_error);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evconnlistener_get_fd(s->listeners[which]), (struct sockaddr *)&ss, &sl);
    s->ports[which] = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int srv_server_new(srv_server **out, const srv_options *cfg, srv_router *router, sp_err *err)
{
    sp_metrics_gauge_add("accepted_connections_total", 0); /* exported from start */
    sp_metrics_gauge_add("accept_errors_total", 0);
    sp_metrics_gauge_add("header_timeouts_total", 0);
    static int threads_ready;
    if (!threads_ready) {
        evthread_use_pthreads(); /* workers wake the loop with event_active() */
        threads_ready = 1;
    }
    srv_server *s = calloc(1, sizeof *s);
    if (!s)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    s->ctx.cfg = cfg;
    s->ctx.router = router;
    s->ctx.base = event_base_new();
    if (!s->ctx.base) {
        free(s);
        return sp_fail(err, SP_EINTERNAL, "cannot create the event loop");
    }
    srv_inflight_budget_set(cfg->max_inflight_bytes);
    int rc = 0;
    if (cfg->tls_cert)
        rc = srv_tls_ctx_new(&s->ssl_ctx, cfg, err);
    if (!rc)
        rc = bind_listener(s, 0, cfg->http_addr, err);
    if (!rc && strcmp(cfg->http_addr, cfg->grpc_addr) != 0)
        rc = bind_listener(s, 1, cfg->grpc_addr, err);
    else if (!rc)
        s->ports[1] = s->ports[0];
    if (!rc) {
        /* Ingest runs at a lower priority than everything else in the process: a span query
         * needs a few ms of CPU and must not wait behind Exports for it (bench/RESULTS.md,
         * issue 19). With autogroup or a cgroup of its own this only reorders the process's
         * own share; ingest loses no throughput to queries that are not there. */
        s->workers = srv_workers_new(s->ctx.base, "ingest", cfg->workers, cfg->queue_size,
                                     SRV_POOL_THROUGHPUT);
        if (!s->workers)
            rc = sp_fail(err, SP_EINTERNAL, "cannot start %d worker threads", cfg->workers);
    }
    if (!rc) {
        s->query_workers = srv_workers_new(s->ctx.base, "query", cfg->query_workers,
                                           cfg->queue_size, SRV_POOL_LATENCY);
        if (!s->query_workers)
            rc = sp_fail(err, SP_EINTERNAL, "cannot start %d query worker threads",
                         cfg->query_workers);
    }
    if (rc) {
        srv_server_free(s);
        return rc;
    }
    srv_router_set_workers(router, s->workers, s->query_workers);
    *out = s;
    return 0;
}

int srv_server_port(const srv_server *s, int which)
{
    return s->ports[which ? 1 : 0];
}

static void maybe_finish(srv_server *s)
{
    int busy = srv_workers_outstanding(s->workers) + srv_workers_outstanding(s->query_workers) > 0;
    for (srv_conn *c = s->conns; c && !busy; c = c->next)
        if (c->ops && !c->ops->idle(c))
            busy = 1;
    if (!busy || srv_now_ns() >= s->shutdown_deadline_ns) {
        if (busy)
            sp_warn("msg=\"shutdown timeout: abandoning in-flight requests\"");
        event_base_loopexit(s->ctx.base, NULL);
    }
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    maybe_finish(arg);
}

static void begin_shutdown(srv_server *s)
{
    if (s->ctx.draining)
        return;
    s->ctx.draining = 1;
    sp_info("msg=\"shutting down\" inflight=%zu",
            srv_workers_outstanding(s->workers) + srv_workers_outstanding(s->query_workers));
    for (int i = 0; i < 2; i++)
        if (s->listeners[i])
            evconnlistener_disable(s->listeners[i]);
    for (srv_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->ops)
            srv_conn_close(c, 1);
        else
            c->ops->on_shutdown(c);
    }
    s->shutdown_deadline_ns = srv_now_ns() + s->ctx.cfg->shutdown_timeout_ms * 1000000;
    struct timeval tick = {0, 50000};
    s->drain_timer = event_new(s->ctx.base, -1, EV_PERSIST, on_drain_tick, s);
    event_add(s->drain_timer, &tick);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    begin_shutdown(arg);
}

int srv_server_run(srv_server *s)
{
    s->sig_term = evsignal_new(s->ctx.base, SIGTERM, on_signal, s);
    s->sig_int = evsignal_new(s->ctx.base, SIGINT, on_signal, s);
    event_add(s->sig_term, NULL);
    event_add(s->sig_int, NULL);
    signal(SIGPIPE, SIG_IGN);
    sp_info("msg=\"listening\" http_port=%d grpc_port=%d tls=%s", s->ports[0], s->ports[1],
            s->ssl_ctx ? (s->ctx.cfg->tls_client_ca ? "mutual" : "on") : "off");
    srv_sched_latency_slice("loop"); /* every answer and every hand-off passes through it */
    int rc = event_base_dispatch(s->ctx.base);
    return rc < 0 ? SP_EINTERNAL : 0;
}

void srv_server_stop(srv_server *s)
{
    if (s->sig_term)
        event_active(s->sig_term, EV_SIGNAL, 1);
}

void srv_server_free(srv_server *s)
{
    if (!s)
        return;
    while (s->conns) {
        srv_conn *c = s->conns;
        c->closed = 1;
        conn_free(c);
    }
    /* Joins the threads; exchanges they finish now are freed, the peers are gone. */
    srv_workers_free(s->workers);
    srv_workers_free(s->query_workers);
    for (int i = 0; i < 2; i++)
        if (s->listeners[i])
            evconnlistener_free(s->listeners[i]);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->drain_timer)
        event_free(s->drain_timer);
    if (s->ssl_ctx)
        SSL_CTX_free(s->ssl_ctx);
    if (s->ctx.base)
        event_base_free(s->ctx.base);
    free(s);
}
