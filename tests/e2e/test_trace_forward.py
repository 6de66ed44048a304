"""Trace forwarding with enrichment (--traces-forward-to), seen from the downstream endpoint.

A recording OTLP/HTTP endpoint stands in for Tempo or a Collector. Every trace export spanprof
accepts must arrive there as received, except that spans able to have a span profile (at least
--min-span-duration long, from a process that sends CPU profiles) carry one more attribute,
pyroscope.profile.id = their own span id. Both bodies are decoded with the official
opentelemetry-proto classes; with the added attribute removed they must serialize to the same
bytes, and an export with nothing to mark must arrive byte for byte.
"""
import gzip
import http.server
import os
import ssl
import threading
import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from conftest import free_port
from e2e_helpers import RPC_TIMEOUT, post_protobuf, scrape, traces_stub, wait_for_metric
from test_correlation import MS, export_profile

ATTR = "pyroscope.profile.id"


class Downstream:
    """An OTLP/HTTP traces endpoint that records every request (headers and raw body)."""

    def __init__(self, port=None, fail=0, tls=None, retry_after=None):
        self.port = port or free_port()
        self.tls = tls  # (cert, key): serve HTTPS
        self.retry_after = retry_after  # sent with the 503s
        self.requests = []
        self.fail = fail  # answer the first N requests 503
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    if outer.fail > 0:
                        outer.fail -= 1
                        outer.requests.append((self.path, dict(self.headers), None,
                                               time.monotonic()))
                        self.send_response(503)
                        if outer.retry_after is not None:
                            self.send_header("Retry-After", outer.retry_after)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    outer.requests.append((self.path, dict(self.headers), body, time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1/traces"

    def accepted(self):
        with self.lock:
            return [r for r in self.requests if r[2] is not None]

    def wait(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                done = [r for r in self.requests if r[2] is not None]
                if len(done) >= n:
                    return done
            assert time.monotonic() < deadline, f"{len(self.requests)} of {n} forwards arrived"
            time.sleep(0.05)


@pytest.fixture
def downstream():
    made = []

    def make(**kw):
        d = Downstream(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.thread.is_alive():
            d.stop()


def kv(key, value):
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def trace_export(t0, spans, pid, tid, service="fwd-svc"):
    """spans: [(span id hex, duration ms, extra attributes)] on one process."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", service), kv("process.pid", pid)])
    rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    ss = rs.scope_spans.add()
    ss.scope.name = "fwd-test"
    ss.scope.version = "1.0"
    for sid, dur, extra in spans:
        s = ss.spans.add()
        s.trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
        s.span_id = bytes.fromhex(sid)
        s.name = f"op-{sid[-2:]}"
        s.kind = 2
        s.start_time_unix_nano = t0
        s.end_time_unix_nano = t0 + dur * MS
        s.attributes.extend([kv("thread.id", tid), kv("http.route", "/checkout/{id}")] + extra)
        s.events.add(time_unix_nano=t0 + 1, name="ev").attributes.append(kv("k", "v"))
        s.status.code = 1
    return req


def strip_added(req, marked):
    """Removes the attribute spanprof added (it is always the last one) from the marked spans."""
    out = trace_service_pb2.ExportTraceServiceRequest()
    out.CopyFrom(req)
    for rs in out.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                if s.span_id.hex() in marked:
                    assert s.attributes[-1].key == ATTR
                    assert s.attributes[-1].value.string_value == s.span_id.hex()
                    del s.attributes[-1]
    return out


def marked_spans(req):
    return {s.span_id.hex(): [a.value.string_value for a in s.attributes if a.key == ATTR]
            for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}


def profiled_process(server, t0, pid, tid):
    """A CPU profile from (pid, tid): from now on that process's long spans can have profiles."""
    export_profile(server, [(("main", "work"), [t0 + 10 * MS])], pid, tid)


def test_forwarded_spans_equal_received_except_the_added_attribute(spanprof_factory, downstream):
    d = downstream().start()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", d.url, "--forward-batch-interval", "20ms"])
    t0 = time.time_ns() - 10_000 * MS
    pid, other_pid, tid = os.getpid(), os.getpid() + 100000, threading.get_native_id()
    profiled_process(server, t0, pid, tid)
    req = trace_export(t0, [
        ("1111111111111111", 300, []),                        # long, profiled process: marked
        ("2222222222222222", 5, []),                          # shorter than 20 ms: not marked
        ("3333333333333333", 250, [kv(ATTR, "keep-mine")]),   # already carries it: left alone
        ("4444444444444444", 40, [kv("note", "x" * 300)]),   # marked (length varints grow)
    ], pid, tid)
    other = trace_export(t0, [("5555555555555555", 300, [])], other_pid, tid, service="unprofiled")
    req.resource_spans.extend(other.resource_spans)           # process without profiles
    sent = req.SerializeToString()
    status, _, _ = post_protobuf(server.http_port, "/v1/traces", sent)
    assert status == 200
    (path, headers, body, _), = d.wait(1)
    assert path == "/v1/traces"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Scope-OrgID"] == "anonymous"
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    assert marked_spans(got) == {"1111111111111111": ["1111111111111111"],
                                 "2222222222222222": [],
                                 "3333333333333333": ["keep-mine"],
                                 "4444444444444444": ["4444444444444444"],
                                 "5555555555555555": []}
    assert strip_added(got, {"1111111111111111", "4444444444444444"}).SerializeToString() == sent
    # Everything else is untouched on the wire: the forwarded bytes are the received bytes plus
    # exactly the two attribute entries (and the longer length prefixes around them).
    entry = len(common_pb2.KeyValue(key=ATTR, value=common_pb2.AnyValue(
        string_value="1111111111111111")).SerializeToString()) + 2
    assert len(body) - len(sent) >= 2 * entry
    m = wait_for_metric(server.http_port, lambda m: m.total("spanprof_traces_forward_sent_total") == 1)
    assert m.total("spanprof_traces_forward_spans_marked_total") == 2


def test_a_trace_that_came_before_its_process_profiles_is_marked_after_the_delay(
        spanprof_factory, downstream):
    """SDKs export spans as they end; the process's first profile may come seconds later. The
    export waits --traces-forward-delay and its spans are judged when it leaves."""
    d = downstream().start()
    server = spanprof_factory(["--traces-forward-delay", "2s", "--traces-forward-to", d.url,
                               "--forward-batch-interval", "20ms"])
    t0 = time.time_ns() - 10_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    req = trace_export(t0, [("1212121212121212", 300, []), ("3434343434343434", 5, [])], pid, tid)
    status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
    assert status == 200
    profiled_process(server, t0, pid, tid)  # after the trace, within the delay
    assert d.accepted() == []  # still waiting
    (_, _, body, _), = d.wait(1, timeout=15)
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    assert marked_spans(got) == {"1212121212121212": ["1212121212121212"], "3434343434343434": []}


def nested_export(t0, pid, tid):
    """A local root R (400 ms) with a child C (300 ms) and a grandchild G (100 ms), one thread,
    plus a span X whose parent is in another service (never received here)."""
    req = trace_export(t0, [("a1a1a1a1a1a1a1a1", 400, []), ("c1c1c1c1c1c1c1c1", 300, []),
                            ("e1e1e1e1e1e1e1e1", 100, []), ("f1f1f1f1f1f1f1f1", 200, [])], pid, tid)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].parent_span_id = bytes.fromhex("a1a1a1a1a1a1a1a1")
    spans[2].parent_span_id = bytes.fromhex("c1c1c1c1c1c1c1c1")
    spans[3].parent_span_id = bytes.fromhex("9999999999999999")
    return req


@pytest.mark.parametrize("pyroscope", [False, True])
def test_with_a_pyroscope_backend_only_local_roots_are_marked(spanprof_factory, downstream,
                                                              pyroscope):
    """Pushed samples name their outermost span, so through Pyroscope only a local root's
    profile is whole: with --pyroscope-url only local roots are marked (a span whose parent is
    in another process counts as one); without it spanprof answers every span itself."""
    d = downstream().start()
    args = ["--traces-forward-delay", "0s", "--traces-forward-to", d.url,
            "--forward-batch-interval", "20ms"]
    if pyroscope:  # nothing listens: pushes just wait in the queue
        args += ["--pyroscope-url", f"http://127.0.0.1:{free_port()}"]
    server = spanprof_factory(args)
    t0 = time.time_ns() - 10_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    profiled_process(server, t0, pid, tid)
    status, _, _ = post_protobuf(server.http_port, "/v1/traces",
                                 nested_export(t0, pid, tid).SerializeToString())
    assert status == 200
    (_, _, body, _), = d.wait(1)
    marked = {k for k, v in marked_spans(
        trace_service_pb2.ExportTraceServiceRequest.FromString(body)).items() if v}
    if pyroscope:
        assert marked == {"a1a1a1a1a1a1a1a1", "f1f1f1f1f1f1f1f1"}
    else:
        assert marked == {"a1a1a1a1a1a1a1a1", "c1c1c1c1c1c1c1c1", "e1e1e1e1e1e1e1e1",
                          "f1f1f1f1f1f1f1f1"}


def test_grpc_gzip_export_is_forwarded_unchanged_when_nothing_qualifies(spanprof_factory, downstream):
    d = downstream().start()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", d.url, "--forward-batch-interval", "20ms"])
    t0 = time.time_ns() - 10_000 * MS
    req = trace_export(t0, [("6666666666666666", 300, []), ("7777777777777777", 1, [])],
                       os.getpid() + 200000, 1)  # this process never sent a profile
    with grpc.insecure_channel(server.grpc_target) as ch:
        traces_stub(ch).Export(req, timeout=RPC_TIMEOUT, compression=grpc.Compression.Gzip)
    (_, _, body, _), = d.wait(1)
    assert body == req.SerializeToString()


def test_spans_are_not_held_back_longer_than_the_batch_interval(spanprof_factory, downstream):
    d = downstream().start()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", d.url, "--forward-batch-interval", "300ms"])
    t0 = time.time_ns() - 10_000 * MS
    req = trace_export(t0, [("8888888888888888", 30, [])], os.getpid(), 1)
    answered = None
    for _ in range(3):
        status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
        assert status == 200
        answered = answered or time.monotonic()
    reqs = d.wait(1)
    # The first forward leaves within the batch interval (plus scheduling slack on a busy box),
    # and the three exports travel together or in order.
    assert reqs[0][3] - answered < 0.3 + 2.0
    total = sum(len(trace_service_pb2.ExportTraceServiceRequest.FromString(b).resource_spans)
                for _, _, b, _ in d.wait(1, timeout=5))
    deadline = time.monotonic() + 10
    while total < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        total = sum(len(trace_service_pb2.ExportTraceServiceRequest.FromString(b).resource_spans)
                    for _, _, b, _ in d.accepted())
    assert total == 3


def test_downstream_outage_loses_nothing_acknowledged(spanprof_factory, downstream):
    port = free_port()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", f"http://127.0.0.1:{port}/v1/traces",
                               "--forward-batch-interval", "10ms"])
    t0 = time.time_ns() - 10_000 * MS
    sent = []
    for i in range(4):
        req = trace_export(t0, [(f"{i + 1:016x}", 2, [])], os.getpid() + 300000, 1,
                           service=f"outage{i}")
        status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
        assert status == 200
        sent.append(req.SerializeToString())
    wait_for_metric(server.http_port,
                    lambda m: m.total("spanprof_traces_forward_retried_total") >= 2, timeout=20)
    assert scrape(server.http_port).total("spanprof_traces_forward_queued") == 4
    d = downstream(port=port, fail=1).start()  # back, with one more 503 on the way
    reqs = d.wait(1, timeout=30)
    deadline = time.monotonic() + 30
    while b"".join(b for _, _, b, _ in d.accepted()) != b"".join(sent):
        assert time.monotonic() < deadline, "not everything arrived"
        time.sleep(0.05)
    # Batches are concatenations of whole exports (protobuf's merge), in order, each once.
    assert b"".join(b for _, _, b, _ in d.accepted()) == b"".join(sent)
    m = wait_for_metric(server.http_port, lambda m: m.total("spanprof_traces_forward_sent_total") == 4)
    assert m.total("spanprof_traces_forward_dropped_total") == 0
    assert reqs


# ---------------------------------------------------------------------------------------------
# OTLP/gRPC downstream (--traces-forward-protocol grpc), TLS with a custom CA, server-asked delays
# ---------------------------------------------------------------------------------------------

TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name


class GrpcDownstream:
    """A grpcio server for the OTLP TraceService named by the official opentelemetry-proto
    descriptor. Export takes the raw request bytes (no deserializer) so the test can compare them,
    checks they decode as an ExportTraceServiceRequest, and records (time, metadata, bytes, code).
    answers: (grpc.StatusCode, RetryInfo delay in seconds or None) for the first calls; OK after."""

    def __init__(self, port=None, answers=(), tls=None):
        self.port = port or free_port()
        self.answers = list(answers)
        self.calls = []
        self.lock = threading.Lock()
        handler = grpc.unary_unary_rpc_method_handler(
            self._export, request_deserializer=None,
            response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}),))
        addr = f"127.0.0.1:{self.port}"
        if tls:
            creds = grpc.ssl_server_credentials([(tls[1].read_bytes(), tls[0].read_bytes())])
            assert self.server.add_secure_port(addr, creds) == self.port
        else:
            assert self.server.add_insecure_port(addr) == self.port
        self.tls = tls

    def _export(self, raw, context):
        trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
        md = dict(context.invocation_metadata())
        with self.lock:
            code, delay = self.answers.pop(0) if self.answers else (grpc.StatusCode.OK, None)
            self.calls.append((time.monotonic(), md, raw, code))
        if code != grpc.StatusCode.OK:
            if delay is not None:
                st = status_pb2.Status(code=code.value[0], message="slow down")
                st.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
                    seconds=int(delay), nanos=int(round((delay % 1) * 1e9)))))
                context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
            context.abort(code, f"downstream answers {code.name}")
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop(grace=None).wait(10)

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def accepted(self):
        with self.lock:
            return [c for c in self.calls if c[3] == grpc.StatusCode.OK]

    def wait_accepted(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < n:
            assert time.monotonic() < deadline, f"{len(self.accepted())} of {n} exports arrived"
            time.sleep(0.05)
        return self.accepted()


@pytest.fixture
def grpc_downstream():
    made = []

    def make(**kw):
        d = GrpcDownstream(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def grpc_forwarding(d, *extra):
    return ["--traces-forward-protocol", "grpc", "--traces-forward-delay", "0s", "--traces-forward-to", d.url,
            "--forward-batch-interval", "20ms", *extra]


def test_grpc_forwarded_spans_equal_received_except_the_added_attribute(spanprof_factory,
                                                                       grpc_downstream, tmp_path):
    d = grpc_downstream().start()
    token = tmp_path / "token"
    token.write_text("fwd-token\n")
    server = spanprof_factory(grpc_forwarding(d, "--traces-forward-bearer-token-file", str(token)))
    t0 = time.time_ns() - 10_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    profiled_process(server, t0, pid, tid)
    req = trace_export(t0, [
        ("1111111111111111", 300, []),                        # marked
        ("2222222222222222", 5, []),                          # too short
        ("3333333333333333", 250, [kv(ATTR, "keep-mine")]),   # already carries it
        ("4444444444444444", 40, [kv("note", "x" * 300)]),   # marked
    ], pid, tid)
    sent = req.SerializeToString()
    with grpc.insecure_channel(server.grpc_target) as ch:
        traces_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    (_, md, body, _), = d.wait_accepted(1)
    assert md["x-scope-orgid"] == "anonymous"
    assert md["authorization"] == "Bearer fwd-token"
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    assert marked_spans(got) == {"1111111111111111": ["1111111111111111"],
                                 "2222222222222222": [],
                                 "3333333333333333": ["keep-mine"],
                                 "4444444444444444": ["4444444444444444"]}
    assert strip_added(got, {"1111111111111111", "4444444444444444"}).SerializeToString() == sent
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_traces_forward_sent_total") == 1)
    assert m.total("spanprof_traces_forward_spans_marked_total") == 2
    # An export with nothing to mark travels byte for byte.
    plain = trace_export(t0, [("6666666666666666", 300, [])], pid + 200000, 1)
    status, _, _ = post_protobuf(server.http_port, "/v1/traces", plain.SerializeToString())
    assert status == 200
    assert d.wait_accepted(2)[1][2] == plain.SerializeToString()


def test_grpc_outage_and_unavailable_lose_nothing(spanprof_factory, grpc_downstream):
    port = free_port()
    server = spanprof_factory(["--traces-forward-protocol", "grpc", "--traces-forward-to",
                               f"http://127.0.0.1:{port}", "--forward-batch-interval", "10ms"])
    t0 = time.time_ns() - 10_000 * MS
    sent = []
    for i in range(4):
        req = trace_export(t0, [(f"{i + 1:016x}", 2, [])], os.getpid() + 300000, 1,
                           service=f"grpc-outage{i}")
        status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
        assert status == 200
        sent.append(req.SerializeToString())
    wait_for_metric(server.http_port,
                    lambda m: m.total("spanprof_traces_forward_retried_total") >= 2, timeout=20)
    assert scrape(server.http_port).total("spanprof_traces_forward_queued") == 4
    # Back, but answering UNAVAILABLE twice more (and DEADLINE_EXCEEDED once): all retried.
    d = grpc_downstream(port=port, answers=[(grpc.StatusCode.UNAVAILABLE, None),
                                            (grpc.StatusCode.DEADLINE_EXCEEDED, None),
                                            (grpc.StatusCode.UNAVAILABLE, None)]).start()
    deadline = time.monotonic() + 40
    while b"".join(c[2] for c in d.accepted()) != b"".join(sent):
        assert time.monotonic() < deadline, "not everything arrived"
        time.sleep(0.05)
    assert [c[3] for c in d.calls[:3]] == [grpc.StatusCode.UNAVAILABLE,
                                           grpc.StatusCode.DEADLINE_EXCEEDED,
                                           grpc.StatusCode.UNAVAILABLE]
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_traces_forward_sent_total") == 4)
    assert m.total("spanprof_traces_forward_dropped_total") == 0
    assert m.total("spanprof_traces_forward_queued") == 0


def test_grpc_resource_exhausted_is_retried_only_with_retry_info_after_its_delay(
        spanprof_factory, grpc_downstream):
    d = grpc_downstream(answers=[(grpc.StatusCode.RESOURCE_EXHAUSTED, None),
                                 (grpc.StatusCode.INVALID_ARGUMENT, None),
                                 (grpc.StatusCode.RESOURCE_EXHAUSTED, 1.5)]).start()
    server = spanprof_factory(grpc_forwarding(d))
    t0 = time.time_ns() - 10_000 * MS

    def export(i):
        req = trace_export(t0, [(f"{0xe0 + i:016x}", 2, [])], os.getpid() + 400000, 1,
                           service=f"throttled{i}")
        status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
        assert status == 200
        return req.SerializeToString()

    # RESOURCE_EXHAUSTED without RetryInfo and INVALID_ARGUMENT: dropped, never retried.
    export(0)
    wait_for_metric(server.http_port,
                    lambda m: m.total("spanprof_traces_forward_dropped_total") == 1)
    export(1)
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_traces_forward_dropped_total") == 2)
    assert m.total("spanprof_traces_forward_retried_total") == 0
    # With RetryInfo (1.5 s): retried, and not before the delay the server asked for, although
    # the exponential backoff alone would have come back within 200 ms.
    body = export(2)
    (_, _, got, _), = d.wait_accepted(1, timeout=20)
    assert got == body
    first, second = d.calls[2][0], d.calls[3][0]
    assert second - first >= 1.5 - 0.05
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_traces_forward_sent_total") == 1)
    assert m.total("spanprof_traces_forward_retried_total") == 1
    assert m.total("spanprof_traces_forward_dropped_total") == 2


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_downstream_with_custom_ca(spanprof_factory, grpc_downstream, downstream, certs,
                                       protocol):
    """https:// with --traces-forward-ca-file: delivered when the CA signed the downstream's
    certificate; with another CA nothing is sent (the handshake fails; retried, not dropped)."""
    tls = (certs["server_cert"], certs["server_key"])
    d = (grpc_downstream(tls=tls) if protocol == "grpc" else downstream(tls=tls)).start()
    url = d.url
    t0 = time.time_ns() - 10_000 * MS
    req = trace_export(t0, [("abababababababab", 2, [])], os.getpid() + 500000, 1)
    args = ["--traces-forward-protocol", protocol, "--traces-forward-delay", "0s", "--traces-forward-to", url,
            "--forward-batch-interval", "10ms"]
    rogue = spanprof_factory(args + ["--traces-forward-ca-file",
                                     str(certs["dir"] / "rogue-ca.crt")], name="rogue")
    status, _, _ = post_protobuf(rogue.http_port, "/v1/traces", req.SerializeToString())
    assert status == 200
    m = wait_for_metric(rogue.http_port,
                        lambda m: m.total("spanprof_traces_forward_retried_total") >= 1)
    assert m.total("spanprof_traces_forward_sent_total") == 0
    assert m.total("spanprof_traces_forward_queued") == 1
    server = spanprof_factory(args + ["--traces-forward-ca-file", str(certs["ca"])])
    status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
    assert status == 200
    if protocol == "grpc":
        (_, _, body, _), = d.wait_accepted(1)
    else:
        (path, _, body, _), = d.wait(1)
        assert path == "/v1/traces"
    assert body == req.SerializeToString()
    wait_for_metric(server.http_port, lambda m: m.total("spanprof_traces_forward_sent_total") == 1)
    assert scrape(rogue.http_port).total("spanprof_traces_forward_sent_total") == 0


def test_http_retry_after_is_the_minimum_delay(spanprof_factory, downstream):
    d = downstream(fail=1, retry_after="2").start()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", d.url, "--forward-batch-interval", "10ms"])
    t0 = time.time_ns() - 10_000 * MS
    req = trace_export(t0, [("cdcdcdcdcdcdcdcd", 2, [])], os.getpid() + 600000, 1)
    status, _, _ = post_protobuf(server.http_port, "/v1/traces", req.SerializeToString())
    assert status == 200
    (_, _, body, accepted_at), = d.wait(1, timeout=20)
    assert body == req.SerializeToString()
    refused_at = d.requests[0][3]
    assert d.requests[0][2] is None
    # The default backoff would have retried within 200 ms; Retry-After: 2 holds it 2 s.
    assert accepted_at - refused_at >= 2.0 - 0.05
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_traces_forward_sent_total") == 1)
    assert m.total("spanprof_traces_forward_retried_total") == 1
