/* The outbox (delivery/outbox.h) with a recording sender in place of HTTP: batching by
 * tenant, retries on SP_EUNAVAIL, drops on other errors, the size bound (oldest first), two-phase
 * puts, items surviving a reopen, a torn item file dropped at open, the HTTP and gRPC verdict
 * tables, Retry-After and RetryInfo parsing, and a destination's asked-for delay as the minimum
 * before the next attempt (capped).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "delivery/outbox.h"

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEC 1000000000LL

typedef struct recorder {
    pthread_mutex_t mu;
    int fail_unavail;   /* answer SP_EUNAVAIL this many times */
    int fail_invalid;   /* then SP_EINVAL this many times */
    int64_t ask_ns;     /* with SP_EUNAVAIL, ask for this delay (0 = none) */
    int64_t call_ns[8]; /* monotonic time of the first calls */
    int calls;
    char bodies[64][256]; /* "tenant|payload" per accepted request */
    int n;
} recorder;

static int deliver(void *ud, const char *tenant, const uint8_t *body, size_t len,
                   int64_t *retry_after_ns, sp_err *err)
{
    recorder *r = ud;
    pthread_mutex_lock(&r->mu);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (r->calls < 8)
        r->call_ns[r->calls] = (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
    r->calls++;
    int rc = 0;
    if (r->fail_unavail > 0) {
        r->fail_unavail--;
        if (r->ask_ns)
            *retry_after_ns = r->ask_ns;
        rc = sp_fail(err, SP_EUNAVAIL, "down");
    } else if (r->fail_invalid > 0) {
        r->fail_invalid--;
        rc = sp_fail(err, SP_EINVAL, "bad");
    } else if (r->n < 64) {
        snprintf(r->bodies[r->n++], 256, "%s|%.*s", tenant, (int)len, (const char *)body);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/test_store_outbox.XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_all(char *d)
{
    nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

static outbox *open_ob_capped(const char *dir, recorder *r, uint64_t max_bytes, int64_t linger,
                              int64_t retry_after_max)
{
    outbox_options o = {.dir = dir,
                        .retry_after_max_ns = retry_after_max,
                        .name = "test_outbox",
                        .max_bytes = max_bytes,
                        .linger_ns = linger,
                        .backoff_min_ns = SEC / 100,
                        .backoff_max_ns = SEC / 20,
                        .fsync = 1,
                        .deliver = deliver,
                        .deliver_ud = r};
    outbox *ob;
    sp_err err = {0};
    assert_int_equal(outbox_open(&ob, &o, &err), 0);
    return ob;
}

static outbox *open_ob(const char *dir, recorder *r, uint64_t max_bytes, int64_t linger)
{
    return open_ob_capped(dir, r, max_bytes, linger, 0);
}

static void put(outbox *ob, const char *tenant, const char *s)
{
    sp_err err = {0};
    assert_int_equal(outbox_put(ob, tenant, s, strlen(s), &err), 0);
}

static void batches_items_of_one_tenant_in_order(void **state)
{
    char *dir = tmpdir();
    recorder r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    outbox *ob = open_ob(dir, &r, 0, SEC / 5); /* linger: the puts below land in one batch */
    put(ob, "a", "1");
    put(ob, "a", "2");
    put(ob, "b", "3");
    put(ob, "a", "4");
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.bodies[0], "a|12");
    assert_string_equal(r.bodies[1], "b|3");
    assert_string_equal(r.bodies[2], "a|4");
    outbox_stats st;
    outbox_stats_get(ob, &st);
    assert_int_equal(st.sent, 4);
    assert_int_equal(st.enqueued, 4);
    assert_int_equal(st.queued, 0);
    outbox_close(ob);
    rmdir_all(dir);
}

static void retries_unavailable_and_drops_rejected(void **state)
{
    char *dir = tmpdir();
    recorder r = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_unavail = 3};
    outbox *ob = open_ob(dir, &r, 0, 0);
    put(ob, "t", "x");
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.bodies[0], "t|x");
    outbox_stats st;
    outbox_stats_get(ob, &st);
    assert_int_equal(st.retried, 3);
    assert_int_equal(st.sent, 1);
    r.fail_invalid = 1;
    put(ob, "t", "y");
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    outbox_stats_get(ob, &st);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.retried, 3);
    assert_int_equal(r.n, 1);
    outbox_close(ob);
    rmdir_all(dir);
}

static void full_queue_drops_the_oldest(void **state)
{
    char *dir = tmpdir();
    recorder r = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_unavail = 1000000};
    /* Each item is 16 + 1 (tenant) + 10 + 4 = 31 bytes: three fit in 100. */
    outbox *ob = open_ob(dir, &r, 100, 0);
    const char *items[] = {"item-00000", "item-00001", "item-00002", "item-00003", "item-00004"};
    for (int i = 0; i < 5; i++)
        put(ob, "t", items[i]);
    outbox_stats st;
    outbox_stats_get(ob, &st);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.dropped, 2);
    assert_true(st.queued_bytes <= 100);
    sp_err err = {0};
    char big[200] = {0};
    assert_int_equal(outbox_put(ob, "t", big, sizeof big, &err), SP_ETOOBIG);
    pthread_mutex_lock(&r.mu);
    r.fail_unavail = 0;
    pthread_mutex_unlock(&r.mu);
    /* The sender may be in a backoff of at most 50 ms. */
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    char all[256] = "";
    for (int i = 0; i < r.n; i++)
        strcat(all, strchr(r.bodies[i], '|') + 1);
    assert_string_equal(all, "item-00002item-00003item-00004");
    outbox_close(ob);
    rmdir_all(dir);
}

static void items_survive_a_reopen_and_torn_files_are_dropped(void **state)
{
    char *dir = tmpdir();
    recorder r = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_unavail = 1000000};
    outbox *ob = open_ob(dir, &r, 0, 0);
    put(ob, "t1", "first");
    put(ob, "t2", "second");
    outbox_ticket t;
    sp_err err = {0};
    assert_int_equal(outbox_stage(ob, "t1", "staged", 6, &t, &err), 0);
    outbox_abort(ob, &t); /* aborted: never sent */
    assert_int_equal(outbox_stage(ob, "t1", "third", 5, &t, &err), 0);
    assert_int_equal(outbox_commit(ob, &t, &err), 0);
    outbox_close(ob);
    /* A torn item (as a crash without fsync can leave) and a leftover temporary file. */
    char p[512];
    snprintf(p, sizeof p, "%s/00000000000000ff.item", dir);
    FILE *f = fopen(p, "w");
    fputs("SPOB\x03", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/00000000000000fe.tmp", dir);
    f = fopen(p, "w");
    fputs("partial", f);
    fclose(f);
    recorder r2 = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ob = open_ob(dir, &r2, 0, 0);
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    assert_int_equal(r2.n, 3);
    assert_string_equal(r2.bodies[0], "t1|first");
    assert_string_equal(r2.bodies[1], "t2|second");
    assert_string_equal(r2.bodies[2], "t1|third");
    outbox_stats st;
    outbox_stats_get(ob, &st);
    assert_int_equal(st.dropped, 1);
    outbox_close(ob);
    /* Nothing is left behind. */
    DIR *d = opendir(dir);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)))
        files += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 0);
    rmdir_all(dir);
}

static void http_verdicts(void **state)
{
    assert_int_equal(outbox_http_verdict(200, "", 0), 0);
    assert_int_equal(outbox_http_verdict(204, NULL, 0), 0);
    static const long retry[] = {408, 429, 502, 503, 504};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(outbox_http_verdict(retry[i], "", 0), SP_EUNAVAIL);
    assert_int_equal(outbox_http_verdict(400, "{\"code\":\"invalid_argument\"}", 27), SP_EINVAL);
    assert_int_equal(outbox_http_verdict(401, "", 0), SP_EINVAL);
    assert_int_equal(outbox_http_verdict(500, "", 0), SP_EINVAL);
    const char *b = "{\"code\":\"unavailable\",\"message\":\"ingester\"}";
    assert_int_equal(outbox_http_verdict(500, b, strlen(b)), SP_EUNAVAIL);
}

/* The backoff here is 10..50 ms; a destination asking for 400 ms gets at least that, and one
 * asking for an hour gets the cap (300 ms here), not an hour. */
static void asked_delay_is_the_minimum_and_capped(void **state)
{
    char *dir = tmpdir();
    recorder r = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_unavail = 2, .ask_ns = 4 * SEC / 10};
    outbox *ob = open_ob_capped(dir, &r, 0, 0, 0);
    put(ob, "t", "x");
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    assert_int_equal(r.calls, 3);
    assert_true(r.call_ns[1] - r.call_ns[0] >= 4 * SEC / 10);
    assert_true(r.call_ns[2] - r.call_ns[1] >= 4 * SEC / 10);
    outbox_close(ob);
    rmdir_all(dir);

    dir = tmpdir();
    recorder r2 = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_unavail = 1, .ask_ns = 3600 * SEC};
    ob = open_ob_capped(dir, &r2, 0, 0, 3 * SEC / 10);
    put(ob, "t", "y");
    assert_int_equal(outbox_drain(ob, 10 * SEC), 0);
    assert_int_equal(r2.calls, 2);
    int64_t gap = r2.call_ns[1] - r2.call_ns[0];
    assert_true(gap >= 3 * SEC / 10);
    assert_true(gap < 3 * SEC); /* the cap, with scheduling slack on a busy machine */
    outbox_close(ob);
    rmdir_all(dir);
}

static void retry_after_values(void **state)
{
    const int64_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */
    assert_int_equal(outbox_retry_after_ns("120", now), 120 * SEC);
    assert_int_equal(outbox_retry_after_ns(" 0 \r\n", now), 0);
    assert_int_equal(outbox_retry_after_ns("99999999999999999999", now), 86400 * SEC);
    /* IMF-fixdate, and the obsolete RFC 850 and asctime forms. */
    assert_int_equal(outbox_retry_after_ns("Tue, 14 Nov 2023 22:13:50 GMT", now), 30 * SEC);
    assert_int_equal(outbox_retry_after_ns("Tuesday, 14-Nov-23 22:14:20 GMT", now), 60 * SEC);
    assert_int_equal(outbox_retry_after_ns("Tue Nov 14 22:13:25 2023", now), 5 * SEC);
    assert_int_equal(outbox_retry_after_ns("Tue, 14 Nov 2023 22:00:00 GMT", now), 0); /* past */
    /* Any date computed from the clock, as a server would send it. */
    time_t later = time(NULL) + 45;
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime(&later));
    int64_t d = outbox_retry_after_ns(date, (int64_t)time(NULL));
    assert_true(d >= 44 * SEC && d <= 45 * SEC);
    assert_int_equal(outbox_retry_after_ns("", now), -1);
    assert_int_equal(outbox_retry_after_ns("soon", now), -1);
    assert_int_equal(outbox_retry_after_ns("-5", now), -1);
    assert_int_equal(outbox_retry_after_ns(NULL, now), -1);
}

static void grpc_retry_info_and_verdicts(void **state)
{
    /* Made with the official google.rpc classes (googleapis-common-protos): Status{code 8,
     * details [DebugInfo, RetryInfo{retry_delay 2.05 s}]}, base64 without padding. */
    const char *with_delay =
        "CAgSCXNsb3cgZG93bhovCih0eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5ycGMuRGVidWdJbmZvEgMSAXgaNQoo"
        "dHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLlJldHJ5SW5mbxIJCgcIAhCA4esX";
    assert_int_equal(outbox_grpc_retry_info_ns(with_delay, strlen(with_delay)), 2 * SEC + 50000000);
    /* Status{code 8, details [DebugInfo]}: no RetryInfo. */
    const char *none = "CAgSB25vIGluZm8aLwoodHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLkRlYnVnSW5mbxI"
                       "DEgF4";
    assert_int_equal(outbox_grpc_retry_info_ns(none, strlen(none)), -1);
    /* Status{code 14, details [RetryInfo{}]}: RetryInfo without a delay, padded. */
    const char *empty = "CA4aKgoodHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLlJldHJ5SW5mbw==";
    assert_int_equal(outbox_grpc_retry_info_ns(empty, strlen(empty)), 0);
    assert_int_equal(outbox_grpc_retry_info_ns("!!!!", 4), -1);
    assert_int_equal(outbox_grpc_retry_info_ns("", 0), -1);
    /* Truncated in the middle of the Any: not a crash, not a delay. */
    assert_int_equal(outbox_grpc_retry_info_ns(with_delay, 60), -1);

    assert_int_equal(outbox_grpc_verdict(0, 0), 0);
    static const int retry[] = {1, 4, 10, 11, 14, 15};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(outbox_grpc_verdict(retry[i], 0), SP_EUNAVAIL);
    assert_int_equal(outbox_grpc_verdict(8, 0), SP_EINVAL);
    assert_int_equal(outbox_grpc_verdict(8, 1), SP_EUNAVAIL);
    static const int drop[] = {2, 3, 5, 6, 7, 9, 12, 13, 16};
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(outbox_grpc_verdict(drop[i], 0), SP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_items_of_one_tenant_in_order),
        cmocka_unit_test(retries_unavailable_and_drops_rejected),
        cmocka_unit_test(full_queue_drops_the_oldest),
        cmocka_unit_test(items_survive_a_reopen_and_torn_files_are_dropped),
        cmocka_unit_test(http_verdicts),
        cmocka_unit_test(asked_delay_is_the_minimum_and_capped),
        cmocka_unit_test(retry_after_values),
        cmocka_unit_test(grpc_retry_info_and_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
