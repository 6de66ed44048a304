/* pprof writing, shared by the query API (downloads) and delivery (the Pyroscope pusher).
 *
 * wire_pprof_encode() writes an sp_profile as a serialized perftools.profiles.Profile
 * (proto/pprof/profile.proto) with a small protobuf writer of its own (no generated structs, no
 * intermediate copy), adding labels for what pprof has no field for: thread and process ids,
 * thread name, and the sample's innermost span (span_id, trace_id). Pure: no I/O, no globals,
 * callable from any thread.
 */
#ifndef WIRE_PPROF_WRITE_H
#define WIRE_PPROF_WRITE_H

#include "../common/buf.h"
#include "../common/err.h"
#include "../common/profile.h"

/* Appends p as a serialized pprof to out (one sample type; ids as in p). Returns 0, or
 * SP_ETOOBIG when out cannot grow (out's own limit); out is then left partly written. */
int wire_pprof_encode(const sp_profile *p, sp_buf *out, sp_err *err);

/* spanprof's one extension of pprof: Location field 100, a string table index naming the frame's
 * type ("native", "kernel", "jvm", ...: OTLP's profile.frame.type, which pprof has no field for).
 * pprof readers skip fields they do not know (go tool pprof does); otlp_pprof_decode() reads it,
 * so an unnamed native frame stays "native 0x<address> <file>" through an export and import. */
#define WIRE_PPROF_LOCATION_FRAME_TYPE 100

enum { WIRE_PPROF_FRAME_TYPES = 1 }; /* flags of wire_pprof_encode_ex() */

/* wire_pprof_encode() with flags: WIRE_PPROF_FRAME_TYPES writes the frame type extension of every
 * location that has one. Same return values. */
int wire_pprof_encode_ex(const sp_profile *p, int flags, sp_buf *out, sp_err *err);

#endif
