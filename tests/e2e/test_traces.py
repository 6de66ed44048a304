"""Traces in through the official OpenTelemetry Python SDK exporters (gRPC and HTTP) and grpcio."""

import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from e2e_helpers import (
    RPC_TIMEOUT,
    TRACES_METHOD,
    post_protobuf,
    raw_unary,
    scrape,
    trace_request,
    traces_stub,
    wait_for_metric,
)


class _Collect(SpanProcessor):
    def __init__(self):
        self.spans = []

    def on_end(self, span):
        self.spans.append(span)


def make_spans(n, service="e2e-sdk"):
    """n real SDK spans (a root with n-1 children), finished and ready to export."""
    collect = _Collect()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "process.pid": 4242}))
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("e2e")
    with tracer.start_as_current_span("root") as root:
        root.set_attribute("thread.id", 1000)
        for i in range(n - 1):
            with tracer.start_as_current_span(f"child-{i}") as child:
                child.set_attribute("thread.id", 1000)
                time.sleep(0.001)
    provider.shutdown()
    assert len(collect.spans) == n
    return collect.spans


def accepted_spans(port, want):
    m = wait_for_metric(port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= want)
    return m.total("spanprof_accepted_items_total", "trace")


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip],
                         ids=["identity", "gzip"])
@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_sdk_grpc_exporter_succeeds_and_spans_are_counted(spanprof, compression, port_name):
    port = getattr(spanprof, port_name)
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, compression=compression, timeout=10)
    try:
        assert exporter.export(make_spans(5)) == SpanExportResult.SUCCESS
        assert exporter.export(make_spans(3)) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert accepted_spans(spanprof.http_port, 8) == 8
    m = scrape(spanprof.http_port)
    assert m.total("spanprof_rejected_items_total", "trace") == 0
    assert m.total("spanprof_requests_total", "trace") == 2, m.series("spanprof_requests_total")
    assert m.total("spanprof_received_bytes_total", "trace") > 0


@pytest.mark.parametrize("compression", [HttpCompression.NoCompression, HttpCompression.Gzip],
                         ids=["identity", "gzip"])
@pytest.mark.parametrize("port_name", ["http_port", "grpc_port"])
def test_sdk_http_exporter_succeeds_and_spans_are_counted(spanprof, compression, port_name):
    port = getattr(spanprof, port_name)
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", compression=compression, timeout=10)
    try:
        assert exporter.export(make_spans(4)) == SpanExportResult.SUCCESS
        assert exporter.export(make_spans(6)) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert accepted_spans(spanprof.http_port, 10) == 10
    m = scrape(spanprof.http_port)
    assert m.total("spanprof_rejected_items_total", "trace") == 0
    assert m.total("spanprof_requests_total", "trace") == 2, m.series("spanprof_requests_total")


def test_bad_span_id_is_a_partial_success_over_grpc(spanprof):
    good = [bytes([i]) * 8 for i in range(1, 4)]
    bad = [b"\x01\x02\x03\x04", b""]  # span_id must be 8 bytes
    req = trace_request(good[:2] + [bad[0]] + good[2:] + [bad[1]])
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = traces_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert resp.HasField("partial_success"), "no partial_success for 2 spans with bad span ids"
    assert resp.partial_success.rejected_spans == 2
    assert resp.partial_success.error_message, "partial_success without an error_message"
    assert accepted_spans(spanprof.http_port, 3) == 3
    assert scrape(spanprof.http_port).total("spanprof_rejected_items_total", "trace") == 2


def test_bad_span_id_is_a_partial_success_over_http(spanprof):
    req = trace_request([b"\x07" * 8, b"\x01\x02\x03"])
    status, headers, body = post_protobuf(spanprof.http_port, "/v1/traces", req.SerializeToString())
    assert status == 200, body
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 1
    assert resp.partial_success.error_message
    assert accepted_spans(spanprof.http_port, 1) == 1


def test_http_traces_answers_protobuf_response(spanprof):
    req = trace_request([b"\x05" * 8])
    for port in spanprof.ports():
        status, headers, body = post_protobuf(port, "/v1/traces", req.SerializeToString())
        assert status == 200, body
        assert headers.get("content-type", "").startswith("application/x-protobuf"), headers
        resp = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
        assert not resp.HasField("partial_success") or resp.partial_success.rejected_spans == 0


def test_http_traces_gzip_body(spanprof):
    req = trace_request([bytes([i]) * 8 for i in range(1, 6)])
    status, _, body = post_protobuf(spanprof.http_port, "/v1/traces", req.SerializeToString(), gzip_body=True)
    assert status == 200, body
    assert accepted_spans(spanprof.http_port, 5) == 5


def test_grpc_trace_export_with_raw_stub_and_empty_request(spanprof):
    """An empty ExportTraceServiceRequest is valid OTLP: OK, nothing rejected."""
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = raw_unary(ch, TRACES_METHOD, trace_service_pb2.ExportTraceServiceResponse)(b"", timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_spans == 0


@pytest.mark.parametrize("trace_id", [b"\x01" * 15, b"\x01" * 17, b""], ids=["15_bytes", "17_bytes", "empty"])
def test_bad_trace_id_is_rejected(spanprof, trace_id):
    good = trace_request([b"\x02" * 8])
    bad = trace_request([b"\x03" * 8], trace_id=trace_id)
    good.resource_spans[0].scope_spans[0].spans.extend(bad.resource_spans[0].scope_spans[0].spans)
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = traces_stub(ch).Export(good, timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_spans == 1, resp
    assert resp.partial_success.error_message
    assert accepted_spans(spanprof.http_port, 1) == 1
