"""Span ↔ profile correlation without client help, end to end.

Spans come from the official OpenTelemetry Python SDK (TracerProvider + OTLPSpanExporter over gRPC),
with the process in the resource (process.pid) and the thread in a span attribute (thread.id), the
way SDKs that record threads send them. CPU profiles come from a grpcio client built on the official
opentelemetry-proto classes, shaped like the eBPF profiler's: samples with timestamps, process.pid
on the resource, thread.id on the sample, and no links. What the user sees is the span's flame graph
from SelectMergeSpanProfile (what Tempo's "Profiles for this span" calls): it must hold exactly the
observations that ran on that thread inside the span, for spans of at least 20 ms, whichever of
spans and profiles arrived first.
"""
import os
import threading
import time

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from e2e_helpers import RPC_TIMEOUT, _Dict, _resource, profiles_stub
from test_query import CPU, Window, connect_json, flamegraph_stacks

import grpc

MS = 1_000_000
PERIOD = 10 * MS
SVC = "corr-e2e"


def export_spans(server, spans, pid, tid):
    """spans: [(name, start_ns, end_ns, parent name or None)] → {name: 16-hex span id}."""
    provider = TracerProvider(resource=Resource.create({"service.name": SVC, "process.pid": pid}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.grpc_target,
                                                                     insecure=True)))
    tracer = provider.get_tracer("corr-e2e")
    made, ids = {}, {}
    for name, start, end, parent in spans:
        ctx = trace_api.set_span_in_context(made[parent]) if parent else None
        s = tracer.start_span(name, context=ctx, start_time=start,
                              attributes={"thread.id": tid, "thread.name": "worker"})
        made[name] = s
        ids[name] = format(s.get_span_context().span_id, "016x")
    for name, _start, end, _parent in reversed(spans):
        made[name].end(end_time=end)
    provider.force_flush()
    provider.shutdown()
    return ids


def export_profile(server, samples, pid, tid):
    """samples: [(stack root first, [timestamps])] → one eBPF-like CPU profile, no links."""
    d = _Dict()
    mapping = d.mapping("/usr/bin/corr-e2e")
    locs = {}
    tid_attr = d.attr("thread.id", tid)
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    rp.resource.CopyFrom(_resource(pid, SVC))
    prof = rp.scope_profiles.add().profiles.add()
    first = min(t for _, ts in samples for t in ts)
    prof.time_unix_nano = first
    prof.duration_nano = 10_000 * MS
    prof.period = PERIOD
    prof.sample_type.type_strindex = d.s("samples")
    prof.sample_type.unit_strindex = d.s("count")
    prof.period_type.type_strindex = d.s("cpu")
    prof.period_type.unit_strindex = d.s("nanoseconds")
    for stack, ts in samples:
        ids = []
        for name in reversed(stack):  # leaf first
            if name not in locs:
                locs[name] = d.location(mapping, 0x400000 + 16 * len(locs),
                                        d.function(name, "corr.c"), 1)
            ids.append(locs[name])
        s = prof.samples.add()
        s.stack_index = d.stack(ids)
        s.attribute_indices.append(tid_attr)
        s.timestamps_unix_nano.extend(ts)
    req.dictionary.CopyFrom(d.d)
    with grpc.insecure_channel(server.grpc_target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT, compression=grpc.Compression.Gzip)
    assert not resp.HasField("partial_success") or resp.partial_success.rejected_profiles == 0


def span_graph(server, window, span_id):
    body = window.json(profileTypeID=CPU, labelSelector=f'{{service_name="{SVC}"}}',
                       spanSelector=[span_id])
    return flamegraph_stacks(connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {}))


# Timeline (ms after t0) on one thread:  checkout [0, 300) ⊃ db [100, 160) ⊃ tiny [120, 125)
SPANS = [("checkout", 0, 300, None), ("db", 100, 160, "checkout"), ("tiny", 120, 125, "db")]
SAMPLES = [  # (stack, offsets in ms)
    (("main", "checkout", "db_query"), [110, 121, 150]),  # inside db (and tiny, which is < 20 ms)
    (("main", "checkout", "render"), [20, 250]),           # inside checkout only
    (("main", "idle"), [400, 500]),                        # outside every span
]


def expected(names):
    """{stack: value} of the observations inside all spans named (nested inside each other)."""
    bounds = {n: (s, e) for n, s, e, _ in SPANS}
    out = {}
    for stack, offsets in SAMPLES:
        for off in offsets:
            if all(bounds[n][0] <= off < bounds[n][1] for n in names):
                out[stack] = out.get(stack, 0) + PERIOD
    return out


def run_scenario(server, pid, tid, spans_first):
    t0 = time.time_ns() - 30_000 * MS
    spans = [(n, t0 + s * MS, t0 + e * MS, p) for n, s, e, p in SPANS]
    samples = [(stack, [t0 + o * MS for o in offs]) for stack, offs in SAMPLES]
    if spans_first:
        ids = export_spans(server, spans, pid, tid)
        export_profile(server, samples, pid, tid)
    else:
        export_profile(server, samples, pid, tid)
        ids = export_spans(server, spans, pid, tid)
    w = Window(t0)
    assert span_graph(server, w, ids["checkout"]) == expected(["checkout"])
    assert span_graph(server, w, ids["db"]) == expected(["db"])
    assert span_graph(server, w, ids["tiny"]) == {}  # 5 ms: below --min-span-duration
    # the whole profile is still there, correlated or not
    whole = flamegraph_stacks(connect_json(server, "SelectMergeStacktraces", w.json(
        profileTypeID=CPU, labelSelector=f'{{service_name="{SVC}"}}'))["flamegraph"])
    assert whole == {s: len(o) * PERIOD for s, o in SAMPLES}


def test_spans_then_profiles_attach_by_time_process_and_thread(spanprof):
    run_scenario(spanprof, os.getpid(), threading.get_native_id(), spans_first=True)


def test_profiles_then_spans_attach_when_the_span_arrives(spanprof):
    run_scenario(spanprof, os.getpid(), threading.get_native_id(), spans_first=False)


def test_other_threads_and_processes_do_not_match(spanprof):
    t0 = time.time_ns() - 30_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    ids = export_spans(spanprof, [("checkout", t0, t0 + 300 * MS, None)], pid, tid)
    export_profile(spanprof, [(("main", "elsewhere"), [t0 + 50 * MS])], pid, tid + 1)
    export_profile(spanprof, [(("main", "other_proc"), [t0 + 60 * MS])], pid + 1, tid)
    assert span_graph(spanprof, Window(t0), ids["checkout"]) == {}


def test_span_id_matcher_selects_a_correlated_span(spanprof):
    """Grafana's traces-to-profiles custom query {span_id="${__span.spanId}"} reaches spans that
    carry no pyroscope.profile.id: spanprof correlated them itself."""
    t0 = time.time_ns() - 30_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    ids = export_spans(spanprof, [("checkout", t0, t0 + 300 * MS, None)], pid, tid)
    export_profile(spanprof, [(("main", "inside"), [t0 + 50 * MS, t0 + 60 * MS]),
                              (("main", "outside"), [t0 + 400 * MS])], pid, tid)
    body = Window(t0).json(profileTypeID=CPU,
                           labelSelector=f'{{service_name="{SVC}", span_id="{ids["checkout"]}"}}')
    fg = connect_json(spanprof, "SelectMergeStacktraces", body)["flamegraph"]
    assert flamegraph_stacks(fg) == {("main", "inside"): 2 * PERIOD}
