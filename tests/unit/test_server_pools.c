/* server/router + workers: QUERY routes run on a pool of their own, so a query is answered while
 * every ingest worker is busy and the ingest queue is full; a full pool answers RESOURCE_EXHAUSTED
 * naming its queue. No timing: the ingest handler blocks until the test lets it go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "server/exchange.h"
#include "server/router.h"
#include "server/sched.h"
#include "server/workers.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ingest_release, ingest_running, ingest_finished;

/* What the kernel says of the thread that ran a handler: its nice value and its slice. */
typedef struct {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
} kernel_sched_attr;

static int query_nice = -100;
static uint64_t query_slice, ingest_slice;
static int ingest_nice = -100;

static uint64_t my_slice(void)
{
    kernel_sched_attr at = {0};
    return syscall(SYS_sched_getattr, 0, &at, sizeof at, 0) == 0 ? at.sched_runtime : 0;
}

static void ingest_handler(srv_request *req, srv_response *resp, void *ud)
{
    (void)req, (void)ud;
    pthread_mutex_lock(&mu);
    ingest_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    ingest_slice = my_slice();
    ingest_running++;
    pthread_cond_broadcast(&cv);
    while (!ingest_release)
        pthread_cond_wait(&cv, &mu);
    ingest_finished++;
    pthread_mutex_unlock(&mu);
    resp->status = 200;
}

/* Whether this kernel lets a thread choose its slice at all (Linux 6.12 and later, and no
 * seccomp filter refusing sched_setattr): tried on a thread of the test's own. */
static void *try_slice(void *arg)
{
    kernel_sched_attr at = {0};
    if (syscall(SYS_sched_getattr, 0, &at, sizeof at, 0) == 0) {
        at.size = sizeof at;
        at.sched_flags = 0;
        at.sched_runtime = 300000;
        if (syscall(SYS_sched_setattr, 0, &at, 0) == 0)
            *(int *)arg = my_slice() == 300000;
    }
    return NULL;
}

static int kernel_has_slices(void)
{
    int yes = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, try_slice, &yes) == 0)
        pthread_join(t, NULL);
    return yes;
}

static void query_handler(srv_request *req, srv_response *resp, void *ud)
{
    (void)req, (void)ud;
    query_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    query_slice = my_slice();
    resp->status = 200;
}

static int answered;
static void on_done(srv_exchange *ex)
{
    answered++;
    *(int *)ex->owner = ex->resp.status ? ex->resp.status : -1;
    srv_exchange_free(ex);
}

static srv_exchange *post(srv_router *r, const char *path, int *status)
{
    srv_exchange *ex = srv_exchange_new(SRV_HTTP1, 1024);
    snprintf(ex->req.method, sizeof ex->req.method, "POST");
    assert_int_equal(srv_exchange_set_target(ex, path, strlen(path)), 0);
    ex->owner = status;
    ex->on_done = on_done;
    srv_router_match(r, ex);
    srv_router_dispatch(r, ex);
    return ex;
}

static void query_is_answered_while_ingest_is_saturated(void **state)
{
    (void)state;
    /* as the server does (server/conn.c): workers wake the loop with event_active() from their
     * threads; without locking the loop can sleep through it (this test hung 1 run in 10) */
    evthread_use_pthreads();
    struct event_base *base = event_base_new();
    srv_router *r = srv_router_new();
    assert_int_equal(
        srv_router_add(r, "POST", "/ingest", SRV_WORKER, "t_ingest", ingest_handler, NULL), 0);
    assert_int_equal(srv_router_add(r, "POST", "/query", SRV_QUERY, "t_query", query_handler, NULL),
                     0);
    srv_workers *ingest = srv_workers_new(base, "ingest", 1, 1, SRV_POOL_THROUGHPUT);
    srv_workers *query = srv_workers_new(base, "query", 1, 1, SRV_POOL_LATENCY);
    srv_router_set_workers(r, ingest, query);

    int st[4] = {0};
    post(r, "/ingest", &st[0]); /* runs and blocks the only ingest worker */
    pthread_mutex_lock(&mu);
    while (!ingest_running)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    post(r, "/ingest", &st[1]); /* fills the ingest queue */
    post(r, "/ingest", &st[2]); /* refused at once: the queue is full */
    assert_int_equal(st[2], 429);

    post(r, "/query", &st[3]);
    while (!st[3])
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(st[3], 200);
    pthread_mutex_lock(&mu);
    assert_int_equal(ingest_finished, 0); /* the query did not wait for ingest */
    ingest_release = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    while (!st[0] || !st[1])
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(st[0], 200);
    assert_int_equal(st[1], 200);
    assert_int_equal(answered, 4);

    /* server/sched.h: ingest threads yield the CPU (nice), query threads take it at once when
     * they wake (a short slice, where the kernel lets a thread choose one). */
    assert_int_equal(ingest_nice, SRV_INGEST_NICE);
    assert_int_equal(query_nice, 0);
    if (kernel_has_slices()) {
        assert_int_equal(query_slice, SRV_LATENCY_SLICE_NS);
        assert_true(ingest_slice > query_slice);
    }

    srv_workers_free(ingest);
    srv_workers_free(query);
    srv_router_free(r);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(query_is_answered_while_ingest_is_saturated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
