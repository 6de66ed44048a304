"""Spans without thread.id, as the OTel Python SDK sends them (issue 14, part 2).

Two threads of one process serve requests at the same time; the SDK sets no thread.id and exports
each span when it ends, in 5 s batches. The eBPF profiler's samples carry thread.id. Decided when
the first batch arrives, thread B's samples landed in thread A's spans (B's concurrent spans were
still running). With the settle time every concurrent span is known when rule 3 decides, and a
chain is given a thread's samples only when no other thread ran during it: no sample may land in
a span of another thread, and a request served while the other thread is idle still gets its
thread's samples. Oracle: the timeline below, computed here.
"""
import time

import grpc

from e2e_helpers import RPC_TIMEOUT, _Dict, profiles_stub, scrape, traces_stub
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from test_query import CPU, Window, connect_json, flamegraph_stacks

MS = 1_000_000
PERIOD = 10 * MS
PID = 9600
TIDS = {"A": PID + 1, "B": PID + 2}


def timeline(t0):
    """Spans (thread, name, start, end) and each thread's samples: A and B busy at once for
    10 s (100 ms requests, B's offset by 50 ms), then A alone in one 400 ms request."""
    spans = []
    for n in range(100):
        spans.append(("A", f"a{n}", t0 + n * 100 * MS, t0 + (n + 1) * 100 * MS))
        spans.append(("B", f"b{n}", t0 + 50 * MS + n * 100 * MS, t0 + 50 * MS + (n + 1) * 100 * MS))
    spans.append(("A", "alone", t0 + 10_500 * MS, t0 + 10_900 * MS))
    samples = {"A": [t0 + 5 * MS + j * PERIOD for j in range(1000)] +
                    [t0 + 10_505 * MS + j * PERIOD for j in range(40)],
               "B": [t0 + 55 * MS + j * PERIOD for j in range(1000)]}
    return spans, samples


def span_id(i):
    return (0x51).to_bytes(4, "big") + (i + 1).to_bytes(4, "big")


def export_spans(server, spans, ids):
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, val in (("service.name", "threadless-app"), ("process.pid", PID)):
        kv = rs.resource.attributes.add(key=key)
        if isinstance(val, int):
            kv.value.int_value = val
        else:
            kv.value.string_value = val
    ss = rs.scope_spans.add()
    for (thread, name, start, end), i in zip(spans, ids):
        # one trace per request; no thread.id, as the Python SDK sends them
        ss.spans.add(trace_id=bytes([1 + i % 200]) + i.to_bytes(15, "big"), span_id=span_id(i),
                     name=name, start_time_unix_nano=start, end_time_unix_nano=end)
    with grpc.insecure_channel(server.grpc_target) as ch:
        traces_stub(ch).Export(req, timeout=RPC_TIMEOUT)


def export_profile(server, samples):
    d = _Dict()
    mapping = d.mapping("/usr/bin/python3")
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    for key, val in (("process.pid", PID), ("process.executable.name", "python3")):
        kv = rp.resource.attributes.add(key=key)
        if isinstance(val, int):
            kv.value.int_value = val
        else:
            kv.value.string_value = val
    prof = rp.scope_profiles.add().profiles.add(period=PERIOD)
    prof.sample_type.type_strindex = d.s("samples")
    prof.sample_type.unit_strindex = d.s("count")
    prof.period_type.type_strindex = d.s("cpu")
    prof.period_type.unit_strindex = d.s("nanoseconds")
    prof.time_unix_nano = min(min(v) for v in samples.values())
    for thread, ts in samples.items():
        leaf = d.location(mapping, 0x401000 + 16 * len(thread), d.function(f"work_{thread}", "app.py"), 1)
        root = d.location(mapping, 0x400000, d.function("main", "app.py"), 1)
        s = prof.samples.add(stack_index=d.stack([leaf, root]))
        s.attribute_indices.append(d.attr("thread.id", TIDS[thread]))
        s.timestamps_unix_nano.extend(ts)
    req.dictionary.CopyFrom(d.d)
    with grpc.insecure_channel(server.grpc_target) as ch:
        profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)


def span_stacks(server, t0, i):
    body = Window(t0).json(profileTypeID=CPU, labelSelector="{}", spanSelector=[span_id(i).hex()])
    return flamegraph_stacks(connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {}))


def test_concurrent_threads_never_trade_samples(spanprof_factory):
    server = spanprof_factory(["--threadless-settle=2s"])
    t0 = time.time_ns() - 60_000 * MS
    spans, samples = timeline(t0)
    ids = list(range(len(spans)))
    # the SDK's batches: every span that ended in the same 5 s, in the order they ended
    order = sorted(ids, key=lambda i: spans[i][3])
    batches = {}
    for i in order:
        batches.setdefault((spans[i][3] - t0) // (5_000 * MS), []).append(i)
    keys = sorted(batches)
    export_spans(server, [spans[i] for i in batches[keys[0]]], batches[keys[0]])
    export_profile(server, samples)  # the profiler reports while requests still run
    for k in keys[1:]:
        export_spans(server, [spans[i] for i in batches[k]], batches[k])
    alone = len(spans) - 1
    deadline = time.monotonic() + 15
    while not span_stacks(server, t0, alone) and time.monotonic() < deadline:
        time.sleep(0.3)  # rule 3 decides after the settle time
    # the request A served alone gets exactly A's samples inside it
    assert span_stacks(server, t0, alone) == {("main", "work_A"): 40 * PERIOD}
    # no span has another thread's functions (with both threads running, nothing is attached)
    for i, (thread, _name, _s, _e) in enumerate(spans[:-1]):
        other = "B" if thread == "A" else "A"
        got = span_stacks(server, t0, i)
        assert ("main", f"work_{other}") not in got, (spans[i], got)
    m = scrape(server.http_port)
    assert m.total("spanprof_correlator_samples_ambiguous_total") == 2000
    assert m.total("spanprof_correlator_samples_by_process_span_total") == 40
