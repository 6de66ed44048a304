/* bench_util: the helpers every benchmark under bench/ shares, so the figures they print are
 * taken the same way (the same clocks, random sequences, percentiles and size reports).
 *
 * Contract: clocks return seconds as double (bench_ns: nanoseconds); the generators are pure
 * functions of a caller-held state (never 0), so each bench keeps its own seed and sequence;
 * reports print one line to stdout; nothing here allocates except through the caller's alloc.
 * Benchmark code only: errors end the process or are silently skipped, never returned.
 */
#ifndef SPANPROF_BENCH_UTIL_H
#define SPANPROF_BENCH_UTIL_H

#include "opentelemetry/proto/common/v1/common.pb-c.h"

#include <stddef.h>
#include <stdint.h>

double bench_mono_s(void);       /* CLOCK_MONOTONIC */
int64_t bench_mono_ns(void);     /* CLOCK_MONOTONIC */
double bench_thread_cpu_s(void); /* this thread's CPU time: a busy machine does not skew it */
double bench_proc_cpu_s(void);   /* this process's user + system time (getrusage) */

/* Marsaglia's xorshift64 (13, 7, 17) and Vigna's xorshift64* (12, 25, 27); both advance *s. */
uint64_t bench_xorshift64(uint64_t *s);
uint64_t bench_xorshift64star(uint64_t *s);
/* Uniform in [0, 1) from the top 53 bits of an xorshift64* draw. */
double bench_unit(uint64_t *s);

/* qsort comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);
/* Sorts ms[0..n) and prints "what (n): mean, p50, p99, max" in milliseconds, 3 decimals. */
void bench_print_latency(const char *what, double *ms, int n);

/* Removes dir and everything below it (nftw, not following links). */
void bench_rm_tree(const char *dir);
/* Size of dir/name in bytes, 0 when it does not exist. */
int64_t bench_file_size(const char *dir, const char *name);
/* From dir/spanprof.db's dbstat: "bytes per <unit> by table/index: name=b ..." with each table's
 * or index's pages divided by per, listed while b >= min, with `decimals` digits. Prints nothing
 * when the database cannot be opened. */
void bench_dbstat_report(const char *dir, const char *unit, uint64_t per, double min, int decimals);

/* OTLP AnyValue leaves built with the caller's allocator (malloc or a bump arena); the string
 * is copied with the same allocator. */
typedef void *(*bench_alloc_fn)(size_t n);
Opentelemetry__Proto__Common__V1__AnyValue *bench_any_int(bench_alloc_fn alloc, int64_t v);
Opentelemetry__Proto__Common__V1__AnyValue *bench_any_str(bench_alloc_fn alloc, const char *s);

#endif
