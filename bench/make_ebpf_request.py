"""Writes one gRPC-framed OTLP ExportProfilesServiceRequest shaped like an OpenTelemetry eBPF
profiler export (for bench/bench_ingest.sh): P processes × T threads, 5 s of 20 Hz CPU samples per
thread, per-sample timestamps, native stacks of 20-60 frames drawn from a shared pool, one third of
the frames unsymbolized. Prints the number of observations on stdout.

    python make_ebpf_request.py OUT [processes] [threads]
"""
import random
import struct
import sys
import time

from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as ps
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pp

out = sys.argv[1]
procs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 8
rng = random.Random(7)
d = pp.ProfilesDictionary()
strings = {}


def s(text):
    if text not in strings:
        strings[text] = len(d.string_table)
        d.string_table.append(text)
    return strings[text]


s("")
for table in (d.mapping_table, d.location_table, d.function_table, d.link_table, d.attribute_table,
              d.stack_table):
    table.add()
native = len(d.attribute_table)
d.attribute_table.add(key_strindex=s("profile.frame.type")).value.string_value = "native"
d.mapping_table.add(memory_start=0x400000, memory_limit=0x40000000, filename_strindex=s("/usr/bin/app"))
for i in range(1, 3000):
    d.function_table.add(name_strindex=s(f"app::module{i % 40}::fn{i}"), filename_strindex=s(f"src/m{i % 40}.rs"))
for i in range(1, 6000):
    loc = d.location_table.add(mapping_index=1, address=0x400000 + 64 * i, attribute_indices=[native])
    if i % 3:
        loc.lines.add(function_index=1 + rng.randrange(2999), line=rng.randrange(1, 3000))
for i in range(1, 2000):
    d.stack_table.add(location_indices=[1 + rng.randrange(5999) for _ in range(rng.randint(20, 60))])

req = ps.ExportProfilesServiceRequest()
t0 = time.time_ns() - 10 * 10**9
obs = 0
for p in range(procs):
    rp = req.resource_profiles.add()
    a = rp.resource.attributes.add(key="process.pid")
    a.value.int_value = 10000 + p
    a = rp.resource.attributes.add(key="process.executable.name")
    a.value.string_value = "app"
    prof = rp.scope_profiles.add().profiles.add(time_unix_nano=t0, duration_nano=5 * 10**9, period=50_000_000)
    prof.sample_type.type_strindex = s("samples")
    prof.sample_type.unit_strindex = s("count")
    prof.period_type.type_strindex = s("cpu")
    prof.period_type.unit_strindex = s("nanoseconds")
    for t in range(threads):
        tid = len(d.attribute_table)
        d.attribute_table.add(key_strindex=s("thread.id")).value.int_value = 100000 + p * 100 + t
        for k in range(100):  # 5 s at 20 Hz
            prof.samples.add(stack_index=1 + rng.randrange(1999), attribute_indices=[tid],
                             timestamps_unix_nano=[t0 + k * 50_000_000 + t])
            obs += 1
req.dictionary.CopyFrom(d)
msg = req.SerializeToString()
with open(out, "wb") as f:
    f.write(struct.pack(">BI", 0, len(msg)) + msg)
print(obs)
