/* JFR (Java Flight Recorder) recordings → sp_profile, named as Pyroscope names them.
 *
 * What it owns: reading a JFR recording (one or more chunks back to back, as the JDK's own
 * recorder and async-profiler write them; the Pyroscope Java agent embeds async-profiler and
 * uploads its output as the `jfr` part of /ingest?format=jfr) and turning its sample events into
 * one sp_profile per sample type, with the type ids grafana/jfr-parser's pprof conversion gives the
 * same recording (so Grafana finds the series):
 *
 *   jdk.ExecutionSample (cpu, itimer)     process_cpu:cpu:nanoseconds:cpu:nanoseconds
 *   jdk.ExecutionSample (event=wall),
 *   profiler.WallClockSample               wall:wall:nanoseconds:wall:nanoseconds
 *   jdk.ObjectAllocationInNewTLAB          memory:alloc_in_new_tlab_objects:count:space:bytes
 *                                          memory:alloc_in_new_tlab_bytes:bytes:space:bytes
 *   jdk.ObjectAllocationOutsideTLAB        memory:alloc_outside_tlab_objects:count:space:bytes
 *                                          memory:alloc_outside_tlab_bytes:bytes:space:bytes
 *   jdk.ObjectAllocationSample (JDK 16+)   memory:alloc_sample_objects:count:space:bytes
 *                                          memory:alloc_sample_bytes:bytes:space:bytes
 *   profiler.LiveObject                    memory:live:count:objects:count
 *   jdk.JavaMonitorEnter                   mutex:contentions:count:mutex:count
 *                                          mutex:delay:nanoseconds:mutex:count
 *   jdk.ThreadPark                         block:contentions:count:block:count
 *                                          block:delay:nanoseconds:block:count
 *   profiler.Malloc (async-profiler 3+)    memory:malloc_objects:count::
 *                                          memory:malloc_bytes:bytes::
 *
 * Frames are named as jfr-parser names them, "<class>.<method>" with the class's JVM name
 * ("com/example/Foo.bar"; native frames "libc.so.6.read" or ".name"), generated class names
 * merged where jfr-parser merges them ("Foo$$Lambda_", "GeneratedMethodAccessor_"; the JDK's own
 * "Foo$$Lambda$88+0x.../123" stays, as there); stacks leaf first; line numbers kept (an unknown,
 * negative one is 0, where jfr-parser shows 4294967295), and the frame kind in
 * sp_location.frame_type ("jvm", "native", "kernel"). JFR records no source file names, so
 * sp_function.filename stays 0. Delays are nanoseconds, converted from the chunk's ticks (where
 * jfr-parser passes ticks through, equal only on the JDK's 1 GHz clock).
 *
 * Samples with the same stack, thread, context id and span are one sp_sample whose timestamps
 * (UTC ns, from the event's start ticks and the chunk header's clock) and values list every event.
 * sp_sample.tid is the Java thread's OS thread id (0 when the recording has none), pid the JVM's
 * (jdk.JVMInformation), has_link/link the async-profiler spanId (and traceIdHi/Lo when recorded).
 * The async-profiler contextId (the key of the agent's `labels` part, a LabelsSnapshot) is kept
 * per sample beside each profile, for the caller to turn into labels or span ids.
 *
 * Callers: the Pyroscope ingest route (format=jfr), tests and tests/fuzz/fuzz_jfr.c. No I/O, no
 * globals: safe to call from any number of threads at once, each with its own arena. All output
 * lives in the caller's arena `a`; pools and indices live in two scratch arenas of the parser's
 * own (freed before it returns), each capped by o->work_budget. Input is never trusted: every
 * length is checked against the bytes left, counts and nesting are capped, and nothing is read
 * outside [data, data + len).
 */
#ifndef OTLP_JFR_H
#define OTLP_JFR_H

#include "../common/err.h"
#include "../common/profile.h"

#include <stddef.h>
#include <stdint.h>

typedef struct otlp_jfr_options {
    /* Sampling intervals, the value of one CPU / wall sample. 0 = from the recording: the
     * async-profiler "interval" / "wall" settings or the JDK's jdk.ExecutionSample "period",
     * else 10 ms (Pyroscope's default sampleRate=100). Pyroscope's /ingest passes
     * 1e9 / sampleRate for both. wall_interval_ns 0 with cpu_interval_ns set = the same. */
    int64_t cpu_interval_ns, wall_interval_ns;
    /* Profile time range; 0 = the recording's own (first chunk start .. last chunk end). */
    int64_t from_ns, until_ns;
    /* Series labels for every profile (service_name, tags); __name__ is set per profile. */
    const sp_kv *series;
    uint32_t nseries;
    /* Limits; 0 = the default. Past any but max_stack_depth the parse fails with SP_ETOOBIG. */
    uint32_t max_chunks;       /* chunks in one recording (default 1024) */
    uint32_t max_stack_depth;  /* frames kept per stack, leaf first (default 2048); deeper stacks
                                  are cut, not refused, and counted in truncated_stacks */
    uint32_t max_types;        /* classes in one chunk's metadata (default 65536) */
    uint32_t max_pool_entries; /* constant pool entries in one chunk (default 4194304) */
    size_t work_budget;        /* bytes for each scratch arena (default 256 MiB) */
} otlp_jfr_options;

/* One output profile plus what sp_sample has no field for. */
typedef struct otlp_jfr_profile {
    sp_profile *profile;
    /* Parallel to profile->samples; NULL when no sample has one. context_ids: async-profiler
     * contextId (0 = none), the key into the agent's LabelsSnapshot.contexts. span_names:
     * async-profiler spanName, a string id into LabelsSnapshot.strings (0 = none). */
    const uint64_t *context_ids;
    const uint64_t *span_names;
} otlp_jfr_profile;

typedef struct otlp_jfr_result {
    otlp_jfr_profile *profiles; /* in the order of the table above */
    uint32_t nprofiles;
    uint32_t chunks;
    uint64_t events;           /* events read, of every type */
    uint64_t samples;          /* sample events that reached a profile */
    uint64_t dropped_samples;  /* sample events whose stack trace is not in the constant pool */
    uint64_t dropped_frames;   /* frames whose method or class is not in the constant pool */
    uint64_t truncated_stacks; /* stacks cut to max_stack_depth */
    int64_t start_ns, end_ns;  /* what the chunk headers span */
    int64_t pid;               /* jdk.JVMInformation pid; 0 = not recorded */
    const char *event; /* async-profiler's "event" setting ("cpu", "itimer", "wall"), or NULL */
    int64_t cpu_interval_ns, wall_interval_ns; /* the intervals applied */
} otlp_jfr_result;

/* Parses data[0..len) (the recording itself, not compressed) into *out; every pointer in *out
 * points into a. o may be NULL (all defaults). Returns:
 *   0            out->profiles hold one profile per sample type seen (none for a recording
 *                without sample events)
 *   SP_EINVAL    the bytes are not a complete JFR recording; err names the chunk offset and what
 *                is wrong, e.g. "chunk at 0: metadata offset 99999 beyond chunk size 4096"
 *   SP_ETOOBIG   a limit above, a's budget or a scratch budget was exceeded
 *   SP_ENOMEM    a scratch arena could not be created
 * None is fatal for the process: drop the request. On failure *out is zeroed. */
int otlp_jfr_parse(const uint8_t *data, size_t len, const otlp_jfr_options *o, sp_arena *a,
                   otlp_jfr_result *out, sp_err *err);

/* Appends every profile of r to b (b->arena must be the arena r was parsed into).
 * SP_ETOOBIG past the arena budget. */
int otlp_jfr_add_to_batch(const otlp_jfr_result *r, sp_batch *b, sp_err *err);

#endif
