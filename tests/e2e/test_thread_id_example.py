"""examples/thread-id/thread_id.py with the official OTel Python SDK: the span carries the OS
thread id, and the eBPF-shaped samples of that thread attach to it at once (rule 2), while a
concurrent thread's samples do not."""
import os
import sys
import threading
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from test_correlation import MS, PERIOD, export_profile
from test_query import CPU, Window, connect_json, flamegraph_stacks

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "thread-id"))
from thread_id import ThreadIdSpanProcessor  # noqa: E402


def test_the_python_processor_gives_spans_their_threads_samples(spanprof):
    provider = TracerProvider(resource=Resource.create({"service.name": "corr-e2e",
                                                        "process.pid": os.getpid()}))
    provider.add_span_processor(ThreadIdSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=spanprof.grpc_target, insecure=True)))
    t0 = time.time_ns() - 30_000 * MS
    span = provider.get_tracer("example").start_span("work", start_time=t0)
    span.end(end_time=t0 + 300 * MS)
    provider.force_flush()
    provider.shutdown()
    tid = threading.get_native_id()
    assert span.attributes["thread.id"] == tid
    export_profile(spanprof, [(("main", "mine"), [t0 + 50 * MS, t0 + 60 * MS])], os.getpid(), tid)
    export_profile(spanprof, [(("main", "other"), [t0 + 70 * MS])], os.getpid(), tid + 1)
    body = Window(t0).json(profileTypeID=CPU, labelSelector='{service_name="corr-e2e"}',
                           spanSelector=[format(span.get_span_context().span_id, "016x")])
    fg = connect_json(spanprof, "SelectMergeSpanProfile", body).get("flamegraph", {})
    assert flamegraph_stacks(fg) == {("main", "mine"): 2 * PERIOD}
