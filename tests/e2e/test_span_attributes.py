"""What GET /api/v1/traces/{id} shows of a span besides its row, for spans sent as OTLP protobuf
over gRPC (grpcio, the official opentelemetry-proto classes): attributes of every AnyValue type
with their JSON types, kind, status, events, links, resource and scope attributes; kept across a
restart (the span index, not memory); and a span past the 64 KiB cap keeps what fits, says how
much was cut, and counts it in spanprof_span_attributes_truncated_total.
"""
import base64
import json
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from e2e_helpers import RPC_TIMEOUT, _resource, http_request, scrape, traces_stub

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
LINKED = (bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("b7ad6b7169203331"))


def rich_span_request(span_id=SPAN, attrs=None):
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.CopyFrom(_resource(3131, "attrs-svc"))
    rs.resource.attributes.add(key="host.name").value.string_value = "box-1"
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "io.example.lib", "2.1"
    ss.scope.attributes.add(key="lib.flag").value.bool_value = True
    sp = ss.spans.add(trace_id=TRACE, span_id=span_id, name="GET /things")
    now = time.time_ns()
    sp.start_time_unix_nano, sp.end_time_unix_nano = now - 50_000_000, now
    sp.kind = trace_pb2.Span.SPAN_KIND_PRODUCER
    sp.status.code, sp.status.message = trace_pb2.Status.STATUS_CODE_ERROR, "queue full"
    for key, fill in (attrs or EVERY_TYPE):
        fill(sp.attributes.add(key=key).value)
    ev = sp.events.add(name="exception", time_unix_nano=now - 10_000_000)
    ev.attributes.add(key="exception.type").value.string_value = "IOError"
    ev.attributes.add(key="exception.escaped").value.bool_value = False
    ln = sp.links.add(trace_id=LINKED[0], span_id=LINKED[1], trace_state="k=v")
    ln.attributes.add(key="link.reason").value.string_value = "batch"
    return req


def _array(v):
    v.array_value.values.add().string_value = "a"
    v.array_value.values.add().int_value = 2
    v.array_value.values.add().double_value = 2.5
    v.array_value.values.add().bool_value = False
    nested = v.array_value.values.add().array_value
    nested.values.add().int_value = -1


def _kvlist(v):
    v.kvlist_value.values.add(key="inner").value.string_value = "x"
    deeper = v.kvlist_value.values.add(key="deeper").value.kvlist_value
    deeper.values.add(key="n").value.int_value = 7


EVERY_TYPE = [
    ("str", lambda v: setattr(v, "string_value", "grüße \"quoted\"\n")),
    ("empty.str", lambda v: setattr(v, "string_value", "")),
    ("int", lambda v: setattr(v, "int_value", 42)),
    ("int.neg", lambda v: setattr(v, "int_value", -(2**53))),
    ("int.big", lambda v: setattr(v, "int_value", 2**53 + 1)),
    ("int.max", lambda v: setattr(v, "int_value", 2**63 - 1)),
    ("double", lambda v: setattr(v, "double_value", 0.1)),
    ("double.whole", lambda v: setattr(v, "double_value", 3.0)),
    ("double.inf", lambda v: setattr(v, "double_value", float("inf"))),
    ("bool.t", lambda v: setattr(v, "bool_value", True)),
    ("bool.f", lambda v: setattr(v, "bool_value", False)),
    ("bytes", lambda v: setattr(v, "bytes_value", b"\x00\x01\xfe\xff")),
    ("array", _array),
    ("empty.array", lambda v: v.array_value.SetInParent()),
    ("kvlist", _kvlist),
    ("unset", lambda v: None),
]

EXPECTED = {
    "str": "grüße \"quoted\"\n",
    "empty.str": "",
    "int": 42,
    "int.neg": -(2**53),
    "int.big": str(2**53 + 1),  # past ±2^53: a decimal string
    "int.max": str(2**63 - 1),
    "double": 0.1,
    "double.whole": 3.0,
    "double.inf": "Infinity",
    "bool.t": True,
    "bool.f": False,
    "bytes": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
    "array": ["a", 2, 2.5, False, [-1]],
    "empty.array": [],
    "kvlist": {"inner": "x", "deeper": {"n": 7}},
    "unset": None,
}


def export(server, req):
    with grpc.insecure_channel(server.grpc_target) as ch:
        resp = traces_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert not resp.HasField("partial_success") or resp.partial_success.rejected_spans == 0, resp


def trace_spans(server, trace=TRACE):
    for _ in range(100):
        status, _, body = http_request(server.http_port, "GET", f"/api/v1/traces/{trace.hex()}")
        if status == 200:
            return {s["span_id"]: s for s in json.loads(body)["spans"]}
        time.sleep(0.05)
    raise AssertionError(f"trace not found: {status} {body[:300]}")


def check_rich(s):
    assert s["attributes"] == EXPECTED
    for key, want in EXPECTED.items():
        assert type(s["attributes"][key]) is type(want), key
    assert s["kind"] == "producer"
    assert s["status"] == {"code": "error", "message": "queue full"}
    assert s["resource"] == {"process.pid": 3131, "service.name": "attrs-svc", "host.name": "box-1"}
    assert s["scope"] == {"name": "io.example.lib", "version": "2.1", "attributes": {"lib.flag": True}}
    [ev] = s["events"]
    assert ev["name"] == "exception"
    assert ev["attributes"] == {"exception.type": "IOError", "exception.escaped": False}
    assert int(ev["time_unix_nano"]) > int(s["start_time_unix_nano"])
    [ln] = s["links"]
    assert ln == {"trace_id": LINKED[0].hex(), "span_id": LINKED[1].hex(), "trace_state": "k=v",
                  "attributes": {"link.reason": "batch"}, "dropped_attributes_count": 0}
    assert s["dropped"] == {"attributes": 0, "events": 0, "links": 0, "resource_attributes": 0}


def test_every_anyvalue_type_round_trips_and_survives_a_restart(spanprof_factory):
    server = spanprof_factory(name="a")
    export(server, rich_span_request())
    check_rich(trace_spans(server)[SPAN.hex()])
    server.stop()
    server = spanprof_factory(name="a")  # same data directory: read back from the span index
    check_rich(trace_spans(server)[SPAN.hex()])
    m = scrape(server.http_port)
    assert m.total("spanprof_span_attributes_damaged_total") == 0


def test_span_past_the_cap_keeps_what_fits_and_counts_the_rest(spanprof):
    # 100 attributes of 1 KiB: about 100 KiB, past the 64 KiB cap.
    big = [(f"big.{i:03d}", lambda v: setattr(v, "string_value", "x" * 1024)) for i in range(100)]
    span = bytes.fromhex("00000000000000aa")
    export(spanprof, rich_span_request(span, attrs=big))
    s = trace_spans(spanprof)[span.hex()]
    kept = s["attributes"]
    assert 40 < len(kept) < 100
    assert "big.000" in kept and "big.099" not in kept  # earlier attributes first
    cut = s["dropped"]["attributes"]
    assert len(kept) + cut == 100
    # What is left after the attributes is too small for another 1 KiB one, but the small event and
    # link still fit; the span's row, kind and status are all there.
    assert s["name"] == "GET /things" and s["kind"] == "producer"
    m = scrape(spanprof.http_port)
    assert m.total("spanprof_span_attributes_truncated_total") == cut
