"""A million live spans through the real server: traces first, then eBPF-shaped profiles.

T threads of one process each run S back-to-back spans of L ms (default 1,000 × 1,000 × 100 ms:
1 M spans over 100 s), sampled at 100 Hz (10 M observations). Spans are sent first in SDK-sized
Exports of 512 (several client threads), then the profiles in Exports of 5 s of every thread, as
the eBPF profiler reports; everything within the 2-minute correlation window. Then it reads what a
user would: the store's span index (spans with samples), the merged flame graph total, and the
correlator's counters. Prints numbers; asserts nothing.

    .venv/bin/python bench/bench_scale.py [threads] [spans_per_thread] [span_ms] [extra flags...]
"""
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import json
import urllib.request
import socket
from concurrent.futures import ThreadPoolExecutor

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MS = 1_000_000
HZ = 100
PERIOD = 1_000_000_000 // HZ


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def fixed64(field, v):
    return varint(field << 3 | 1) + v.to_bytes(8, "little")


def kv_int(key, v):
    return ld(1, key.encode()) + ld(2, varint(3 << 3 | 0) + varint(v))


def kv_str(key, v):
    return ld(1, key.encode()) + ld(2, ld(1, v.encode()))


def span_id(t, n):
    return (t + 1).to_bytes(4, "big") + (n + 1).to_bytes(4, "big")


def trace_export(pid, spans):
    """OTLP ExportTraceServiceRequest bytes (hand-encoded: a million protobuf objects in Python
    would measure the client)."""
    res = ld(1, ld(1, kv_str("service.name", "scale")) + ld(1, kv_int("process.pid", pid)))
    body = bytearray()
    for t, n, start, end in spans:
        sp = (ld(1, (t % 251 + 1).to_bytes(1, "big") + t.to_bytes(7, "big") + n.to_bytes(8, "big"))
              + ld(2, span_id(t, n)) + ld(5, b"request") + varint(6 << 3) + varint(2)
              + fixed64(7, start) + fixed64(8, end) + ld(9, kv_int("thread.id", pid + 1 + t)))
        body += ld(2, sp)
    scope = ld(2, ld(1, ld(1, b"scale")) + bytes(body))
    return ld(1, res + scope)


def profile_export(pid, threads, t_from, t_to, t0):
    """One eBPF-shaped Export: every thread's observations in [t_from, t_to), one Sample per
    (thread, stack), 4 stacks per thread, thread.id per sample, no service.name."""
    from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as ps
    from opentelemetry.proto.profiles.v1development import profiles_pb2 as pp
    d = pp.ProfilesDictionary()
    d.string_table.extend(["", "samples", "count", "cpu", "nanoseconds", "/usr/bin/scale",
                           "thread.id", "process.pid", "process.executable.name"])
    for tbl in (d.mapping_table, d.location_table, d.function_table, d.link_table, d.attribute_table,
                d.stack_table):
        tbl.add()
    d.mapping_table.add(memory_start=0x400000, memory_limit=0x800000, filename_strindex=5)
    names = ["main", "serve", "handle", "encode", "compress", "query"]
    for i, nm in enumerate(names):
        d.string_table.append(nm)
        d.function_table.add(name_strindex=len(d.string_table) - 1)
        loc = d.location_table.add(mapping_index=1, address=0x401000 + 16 * i)
        loc.lines.add(function_index=i + 1)
    for k in range(4):
        d.stack_table.add(location_indices=[3 + k % 4 if k < 3 else 6, 2, 1])
    attr0 = len(d.attribute_table)
    for t in range(threads):
        a = d.attribute_table.add(key_strindex=6)
        a.value.int_value = pid + 1 + t
    req = ps.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    a = rp.resource.attributes.add(key="process.pid")
    a.value.int_value = pid
    a = rp.resource.attributes.add(key="process.executable.name")
    a.value.string_value = "scale"
    prof = rp.scope_profiles.add().profiles.add(time_unix_nano=t_from, duration_nano=t_to - t_from,
                                                period=PERIOD)
    prof.sample_type.type_strindex, prof.sample_type.unit_strindex = 1, 2
    prof.period_type.type_strindex, prof.period_type.unit_strindex = 3, 4
    n = 0
    first = (t_from - t0 + PERIOD - 1) // PERIOD
    last = (t_to - t0 + PERIOD - 1) // PERIOD
    for t in range(threads):
        by_stack = [[] for _ in range(4)]
        for j in range(first, last):
            by_stack[(j * 7 + t) % 4].append(t0 + j * PERIOD + (t * 37 % (PERIOD // 2)))
        for k, ts in enumerate(by_stack):
            if ts:
                s = prof.samples.add(stack_index=k + 1, attribute_indices=[attr0 + t])
                s.timestamps_unix_nano.extend(ts)
                n += len(ts)
    req.dictionary.CopyFrom(d)
    return req.SerializeToString(), n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("spanprof_correlator_") or line.startswith("spanprof_store_"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    per_thread = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    span_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    extra = sys.argv[4:]
    bin_ = os.environ.get("SPANPROF_BIN", os.path.join(REPO, "build", "spanprof"))
    work = tempfile.mkdtemp(prefix="bench-scale-")
    hp, gp = free_port(), free_port()
    srv = subprocess.Popen([bin_, "--data-dir", f"{work}/data", "--http-addr", f"127.0.0.1:{hp}",
                            "--grpc-addr", f"127.0.0.1:{gp}", "--log-level", "warn", *extra])
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{hp}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        pid = 4000
        length = span_ms * MS
        duration = per_thread * length
        t0 = time.time_ns() - duration - 5_000 * MS
        nspans = threads * per_thread
        # spans in the order they end (all threads' n-th span end together), 512 per Export
        order = [(t, n, t0 + n * length, t0 + (n + 1) * length)
                 for n in range(per_thread) for t in range(threads)]
        opts = [("grpc.max_send_message_length", 100 << 20)]
        ch = grpc.insecure_channel(f"127.0.0.1:{gp}", options=opts)
        traces = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
        profiles = ch.unary_unary(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        t_start = time.monotonic()
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda i: traces(trace_export(pid, order[i:i + 512]), timeout=120),
                        range(0, len(order), 512)))
        t_spans = time.monotonic() - t_start
        step = 5_000 * MS
        obs = 0

        def send_profile(lo):
            b, n = profile_export(pid, threads, lo, min(lo + step, t0 + duration), t0)
            profiles(b, timeout=300)
            return n

        with ThreadPoolExecutor(2) as ex:
            obs = sum(ex.map(send_profile, range(t0, t0 + duration, step)))
        t_all = time.monotonic() - t_start
        m = metrics(hp)
        db = sqlite3.connect(f"file:{work}/data/spanprof.db?mode=ro", uri=True)
        with_samples = db.execute("SELECT count(DISTINCT span_id) FROM span_chunk").fetchone()[0]
        db.close()
        q = json.dumps({"profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                        "labelSelector": "{}", "start": t0 // MS - 60_000,
                        "end": time.time_ns() // MS + 60_000}).encode()
        r = urllib.request.Request(f"http://127.0.0.1:{hp}/querier.v1.QuerierService/SelectMergeStacktraces",
                                   data=q, headers={"Content-Type": "application/json"})
        total = int(json.loads(urllib.request.urlopen(r, timeout=120).read())["flamegraph"]["total"])
        with open(f"/proc/{srv.pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        cpu = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{srv.pid}/status") as f:
            hwm = [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0]
        print(f"spans: {nspans} ({threads} threads x {per_thread} x {span_ms} ms) sent in {t_spans:.1f} s")
        print(f"observations: {obs} sent; all sent in {t_all:.1f} s")
        print(f"stored observations (flame graph total / period): {total // PERIOD}")
        print(f"spans with samples in the store: {with_samples} of {nspans} "
              f"({nspans - with_samples} without)")
        for k in ("spans_indexed", "spans_known", "bytes", "samples_by_thread_total",
                  "samples_waiting", "evicted_total", "released_total", "spans_evicted_total",
                  "samples_not_kept_total", "attach_failed_total"):
            v = m.get(f"spanprof_correlator_{k}")
            if v is not None:
                print(f"correlator_{k}: {v:.0f}")
        print(f"server peak RSS: {hwm // 1024} MiB; server CPU (user+sys): {cpu:.1f} s")
    finally:
        srv.terminate()
        srv.wait(timeout=60)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
