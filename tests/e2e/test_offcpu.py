"""Off-CPU time per span (issue 14, part 3), eBPF-shaped.

The eBPF profiler's off-CPU observation has the timestamp of the switch back in (finish_task_switch)
and the nanoseconds the thread was off CPU as its value (support/ebpf/off_cpu.ebpf.c,
reporter/internal/pdata/generate.go): it is the interval [T - D, T]. Each span of the thread gets
the part of the interval inside it, so a span's off-CPU total never exceeds its duration. The
profiles carry no service.name (the process learns "checkout" from its spans), process.pid on the
resource, thread.id per sample, per-sample timestamps, CPU and off-CPU in one Export. Expected
figures are computed below from the timeline, independently of the server.
"""
import json
import time

import grpc

from e2e_helpers import RPC_TIMEOUT, _Dict, http_request, profiles_stub, traces_stub
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from test_query import (CPU, Window, connect_json, connect_proto, flamegraph_from_proto,
                        flamegraph_stacks, pb_fields, pb_int, pb_string)

MS = 1_000_000
PERIOD = 10 * MS
OFF = "off_cpu:off_cpu:nanoseconds::"
PID, TID = 9700, 9701
TRACE = bytes.fromhex("0fc0" * 8)
SLEEP = ("main", "handler", "time.sleep", "do_nanosleep")
WORK = ("main", "handler", "hot_fib")

# span name -> [start, end) in ms after t0; all on thread TID, one trace, r1..r4 children of root
SPANS = {"root": (0, 700), "r1": (0, 300), "r2": (300, 380), "r3": (400, 500), "r4": (500, 600)}
# off-CPU observations (T, D) in ms: r1 sleeps 80 ms; r2 only sleeps (an 80 ms time.sleep); one
# inside r3; one across r3 and r4
OFFCPU = [(180, 80), (380, 80), (460, 60), (520, 40)]
# CPU observations: r1 runs before and after its sleep, r3 and r4 a little
CPU_MS = [t for t in range(0, 100, 10)] + [t for t in range(180, 300, 10)] + [410, 430, 550]


def expected(t0):
    """{span: (cpu ns, off-CPU ns)} from the timeline."""
    out = {}
    for name, (s, e) in SPANS.items():
        cpu = sum(PERIOD for t in CPU_MS if s <= t < e)
        off = 0
        for t, d in OFFCPU:
            lo, hi = max(s, t - d), min(e, t)
            off += max(0, hi - lo) * MS
        out[name] = (cpu, off)
    return out


def span_id(name):
    return bytes([0x70 + list(SPANS).index(name)]) * 8


def send_spans(server, t0):
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, val in (("service.name", "checkout"), ("process.pid", PID)):
        kv = rs.resource.attributes.add(key=key)
        if isinstance(val, int):
            kv.value.int_value = val
        else:
            kv.value.string_value = val
    ss = rs.scope_spans.add()
    for name, (s, e) in SPANS.items():
        sp = ss.spans.add(trace_id=TRACE, span_id=span_id(name), name=name,
                          parent_span_id=b"" if name == "root" else span_id("root"),
                          start_time_unix_nano=t0 + s * MS, end_time_unix_nano=t0 + e * MS)
        kv = sp.attributes.add(key="thread.id")
        kv.value.int_value = TID
    with grpc.insecure_channel(server.grpc_target) as ch:
        traces_stub(ch).Export(req, timeout=RPC_TIMEOUT)


def send_profiles(server, t0):
    d = _Dict()
    mapping = d.mapping("/usr/bin/python3")
    locs = {}

    def stack(names):
        ids = []
        for n in reversed(names):
            if n not in locs:
                locs[n] = d.location(mapping, 0x401000 + 16 * len(locs), d.function(n, "app.py"), 1)
            ids.append(locs[n])
        return d.stack(ids)

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    for key, val in (("process.pid", PID), ("process.executable.name", "python3")):
        kv = rp.resource.attributes.add(key=key)
        if isinstance(val, int):
            kv.value.int_value = val
        else:
            kv.value.string_value = val
    sp = rp.scope_profiles.add()
    cpu = sp.profiles.add(period=PERIOD, time_unix_nano=t0)
    cpu.sample_type.type_strindex, cpu.sample_type.unit_strindex = d.s("samples"), d.s("count")
    cpu.period_type.type_strindex, cpu.period_type.unit_strindex = d.s("cpu"), d.s("nanoseconds")
    s = cpu.samples.add(stack_index=stack(WORK))
    s.attribute_indices.append(d.attr("thread.id", TID))
    s.timestamps_unix_nano.extend(t0 + t * MS for t in CPU_MS)
    off = sp.profiles.add(time_unix_nano=t0)  # no period type, as the profiler writes it
    off.sample_type.type_strindex, off.sample_type.unit_strindex = d.s("off_cpu"), d.s("nanoseconds")
    s = off.samples.add(stack_index=stack(SLEEP))
    s.attribute_indices.append(d.attr("thread.id", TID))
    s.timestamps_unix_nano.extend(t0 + t * MS for t, _ in OFFCPU)
    s.values.extend(dd * MS for _, dd in OFFCPU)
    req.dictionary.CopyFrom(d.d)
    with grpc.insecure_channel(server.grpc_target) as ch:
        profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)


def span_graph(server, t0, name, type_id):
    body = Window(t0).json(profileTypeID=type_id, labelSelector='{service_name="checkout"}',
                           spanSelector=[span_id(name).hex()])
    return flamegraph_stacks(connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {}))


def run(server, spans_first):
    t0 = (time.time_ns() - 60_000 * MS) // MS * MS
    if spans_first:
        send_spans(server, t0)
        send_profiles(server, t0)
    else:
        send_profiles(server, t0)
        send_spans(server, t0)
    want = expected(t0)
    for name, (cpu, off) in want.items():
        got_off = span_graph(server, t0, name, OFF)
        assert sum(got_off.values()) == off, (name, got_off, off)
        assert set(got_off) <= {SLEEP}
        got_cpu = span_graph(server, t0, name, CPU)
        assert sum(got_cpu.values()) == cpu, (name, got_cpu, cpu)
        s, e = SPANS[name]
        assert off <= (e - s) * MS
    # the span that only sleeps: its wait stack, 80 ms
    assert span_graph(server, t0, "r2", OFF) == {SLEEP: 80 * MS}
    # Grafana's data source: Connect proto, the off-CPU type, field 3 = span ids
    w = Window(t0)
    req = pb_string(1, OFF) + pb_string(2, '{service_name="checkout"}') + \
        pb_string(3, span_id("r2").hex()) + pb_int(4, w.start) + pb_int(5, w.end)
    fg = flamegraph_from_proto(pb_fields(connect_proto(server, "SelectMergeSpanProfile", req))[1][0])
    assert flamegraph_stacks(fg) == {SLEEP: 80 * MS}
    # the trace view: CPU, off-CPU and the rest per span
    status, _h, body = http_request(server.http_port, "GET", f"/api/v1/traces/{TRACE.hex()}")
    assert status == 200, body[:300]
    spans = {s["name"]: s for s in json.loads(body)["spans"]}
    for name, (cpu, off) in want.items():
        s, e = SPANS[name]
        got = spans[name]
        assert (got["cpu_time_ns"], got["off_cpu_time_ns"]) == (cpu, off), (name, got)
        assert got["other_time_ns"] == max(0, (e - s) * MS - cpu - off)
    # the profiles keep every nanosecond once
    body = Window(t0).json(profileTypeID=OFF, labelSelector='{process_pid="%d"}' % PID)
    total = sum(flamegraph_stacks(connect_json(server, "SelectMergeStacktraces", body)["flamegraph"]).values())
    assert total == sum(dd for _, dd in OFFCPU) * MS


def test_offcpu_time_per_span_spans_first(spanprof):
    run(spanprof, spans_first=True)


def test_offcpu_time_per_span_profiles_first(spanprof):
    run(spanprof, spans_first=False)
