#include "bench_util.h"

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_mono_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

int64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double bench_thread_cpu_s(void)
{
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

double bench_proc_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

uint64_t bench_xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

uint64_t bench_xorshift64star(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

double bench_unit(uint64_t *s)
{
    return (double)(bench_xorshift64star(s) >> 11) / 9007199254740992.0;
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bench_print_latency(const char *what, double *ms, int n)
{
    qsort(ms, (size_t)n, sizeof *ms, bench_cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += ms[i];
    printf("%s (%d): mean %.3f ms, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", what, n, sum / n,
           ms[n / 2], ms[(int)((n - 1) * 0.99)], ms[n - 1]);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void bench_rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int64_t bench_file_size(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

void bench_dbstat_report(const char *dir, const char *unit, uint64_t per, double min, int decimals)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC",
                           -1, &st, NULL) == SQLITE_OK) {
        printf("bytes per %s by table/index:", unit);
        while (sqlite3_step(st) == SQLITE_ROW) {
            double b = (double)sqlite3_column_int64(st, 1) / (double)per;
            if (b >= min)
                printf(" %s=%.*f", (const char *)sqlite3_column_text(st, 0), decimals, b);
        }
        printf("\n");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

Opentelemetry__Proto__Common__V1__AnyValue *bench_any_int(bench_alloc_fn alloc, int64_t v)
{
    Opentelemetry__Proto__Common__V1__AnyValue *a = alloc(sizeof *a);
    opentelemetry__proto__common__v1__any_value__init(a);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    a->int_value = v;
    return a;
}

Opentelemetry__Proto__Common__V1__AnyValue *bench_any_str(bench_alloc_fn alloc, const char *s)
{
    Opentelemetry__Proto__Common__V1__AnyValue *a = alloc(sizeof *a);
    opentelemetry__proto__common__v1__any_value__init(a);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    size_t n = strlen(s) + 1;
    a->string_value = memcpy(alloc(n), s, n);
    return a;
}
