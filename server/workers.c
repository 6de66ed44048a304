#include "workers.h"
#include "sched.h"
#include "../common/log.h"
#include "../common/metrics.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct job {
    srv_exchange *ex;
    srv_job_fn run;
} job;

struct srv_workers {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job *ring;
    size_t cap, head, count; /* pending jobs: ring[head .. head+count) */
    size_t outstanding;      /* submitted and not yet completed on the loop */
    int stopping;
    pthread_t *threads;
    int nthreads;
    srv_exchange *done; /* completed, waiting for the loop (LIFO; order does not matter) */
    struct event *done_ev;
    const char *name;
    srv_pool_class cls;
    char gauge[48]; /* <name>_queue_pending */
};

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    srv_workers *w = arg;
    pthread_mutex_lock(&w->lock);
    srv_exchange *list = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        srv_exchange *ex = list;
        list = ex->next;
        ex->next = NULL;
        pthread_mutex_lock(&w->lock);
        w->outstanding--;
        pthread_mutex_unlock(&w->lock);
        if (atomic_load(&ex->cancelled))
            srv_exchange_free(ex);
        else
            ex->on_done(ex);
    }
}

/* glibc gives a thread its malloc heap ("arena") at the thread's first malloc, and a heap whose
 * threads have all exited goes to the next thread that asks, with every block still allocated
 * in it. A query thread that first allocated at its first query took such a heap from an exited
 * per-stream stage thread, holding the correlator's arrays, which the ingest threads then grew
 * with realloc under that heap's lock: the query waited 1 ms at a time, 60-110 times, up to
 * 110 ms (bench/RESULTS.md, "Span queries: where the slowest waited"). Allocating once at the
 * thread's start, while the process is young, gives each pool thread a heap of its own. */
static void bind_malloc_arena(void)
{
    void *volatile p = malloc(64);
    free(p);
}

static void *thread_main(void *arg)
{
    srv_workers *w = arg;
    /* Linux applies a nice value per thread (setpriority on the thread id). Raising it needs no
     * privilege; failing leaves the thread as it was, which only loses the preference. */
    if (w->cls == SRV_POOL_THROUGHPUT &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SRV_INGEST_NICE) != 0)
        sp_debug("msg=\"cannot lower worker priority\" pool=%s", w->name);
    if (w->cls == SRV_POOL_LATENCY)
        srv_sched_latency_slice(w->name);
    bind_malloc_arena();
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->count == 0 && w->stopping) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        job j = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->count--;
        sp_metrics_gauge_set(w->gauge, (int64_t)w->count);
        pthread_mutex_unlock(&w->lock);

        if (!atomic_load(&j.ex->cancelled))
            j.run(j.ex);

        pthread_mutex_lock(&w->lock);
        j.ex->next = w->done;
        w->done = j.ex;
        pthread_mutex_unlock(&w->lock);
        event_active(w->done_ev, EV_READ, 0);
    }
}

srv_workers *srv_workers_new(struct event_base *base, const char *name, int nthreads,
                             size_t max_pending, srv_pool_class cls)
{
    srv_workers *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->name = name;
    w->cls = cls;
    snprintf(w->gauge, sizeof w->gauge, "%s_queue_pending", name);
    sp_metrics_gauge_set(w->gauge, 0); /* exported from start */
    if (nthreads < 1)
        nthreads = 1;
    if (max_pending < 1)
        max_pending = 1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->cap = max_pending;
    w->ring = calloc(max_pending, sizeof *w->ring);
    w->threads = calloc((size_t)nthreads, sizeof *w->threads);
    w->done_ev = event_new(base, -1, 0, on_done, w);
    if (!w->ring || !w->threads || !w->done_ev)
        goto fail;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&w->threads[i], NULL, thread_main, w) != 0)
            goto fail;
        char tname[16];
        snprintf(tname, sizeof tname, "%.9s-%d", name, i % 100);
        pthread_setname_np(w->threads[i], tname);
        w->nthreads++;
    }
    return w;
fail:
    sp_error("msg=\"cannot start worker threads\" pool=%s", name);
    srv_workers_free(w);
    return NULL;
}

void srv_workers_free(srv_workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    /* Whatever completed after the loop stopped has nobody left to answer. */
    while (w->done) {
        srv_exchange *ex = w->done;
        w->done = ex->next;
        srv_exchange_free(ex);
    }
    if (w->done_ev)
        event_free(w->done_ev);
    free(w->ring);
    free(w->threads);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

int srv_workers_submit(srv_workers *w, srv_exchange *ex, srv_job_fn run)
{
    pthread_mutex_lock(&w->lock);
    if (w->count == w->cap || w->stopping) {
        pthread_mutex_unlock(&w->lock);
        return SP_EFULL;
    }
    w->ring[(w->head + w->count) % w->cap] = (job){ex, run};
    w->count++;
    w->outstanding++;
    sp_metrics_gauge_set(w->gauge, (int64_t)w->count);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

size_t srv_workers_pending(srv_workers *w)
{
    pthread_mutex_lock(&w->lock);
    size_t n = w->count;
    pthread_mutex_unlock(&w->lock);
    return n;
}

size_t srv_workers_outstanding(srv_workers *w)
{
    pthread_mutex_lock(&w->lock);
    size_t n = w->outstanding;
    pthread_mutex_unlock(&w->lock);
    return n;
}

const char *srv_workers_name(const srv_workers *w)
{
    return w->name;
}
