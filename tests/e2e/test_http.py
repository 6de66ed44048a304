"""OTLP/HTTP and the shared HTTP/1.1 + h2c listeners, seen through curl and http.client."""

import gzip
import http.client

import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from e2e_helpers import (
    cpu_profile_request,
    curl,
    http_request,
    post_protobuf,
    scrape,
    trace_request,
    wait_for_metric,
)

PATHS = ["/v1/traces", "/v1development/profiles"]


@pytest.mark.parametrize("flag,version", [("--http2-prior-knowledge", "2"), ("--http1.1", "1.1")])
@pytest.mark.parametrize("port_name", ["http_port", "grpc_port"])
def test_curl_ready_over_h2c_and_http11(spanprof, flag, version, port_name):
    port = getattr(spanprof, port_name)
    r = curl(flag, "-o", "/dev/null", "-w", "%{http_code} %{http_version}", f"http://127.0.0.1:{port}/ready")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["200", version], r.stdout


@pytest.mark.parametrize("flag", ["--http2-prior-knowledge", "--http1.1"])
def test_curl_posts_traces(spanprof, tmp_path, flag):
    req = trace_request([bytes([i]) * 8 for i in range(1, 4)])
    body = tmp_path / "req.bin"
    body.write_bytes(req.SerializeToString())
    out = tmp_path / "resp.bin"
    r = curl(flag, "-o", str(out), "-w", "%{http_code}", "-H", "Content-Type: application/x-protobuf",
             "--data-binary", f"@{body}", f"http://{spanprof.http_target}/v1/traces")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "200", r.stdout
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(out.read_bytes())
    assert resp.partial_success.rejected_spans == 0
    m = wait_for_metric(spanprof.http_port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= 3)
    assert m.total("spanprof_accepted_items_total", "trace") == 3


@pytest.mark.parametrize("path", PATHS)
def test_curl_chunked_upload(spanprof, tmp_path, path):
    if "traces" in path:
        payload, want, sig = trace_request([bytes([i]) * 8 for i in range(1, 8)]).SerializeToString(), 7, "trace"
    else:
        payload, want, sig = cpu_profile_request(n_profiles=2, samples_per_profile=200)[0].SerializeToString(), 2, "profile"
    body = tmp_path / "req.bin"
    body.write_bytes(payload)
    out = tmp_path / "resp.bin"
    r = curl("--http1.1", "-o", str(out), "-w", "%{http_code}", "-H", "Content-Type: application/x-protobuf",
             "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{body}", f"http://{spanprof.http_target}{path}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "200", f"{r.stdout}: {out.read_bytes()[:200]!r}"
    m = wait_for_metric(spanprof.http_port, lambda m: m.total("spanprof_accepted_items_total", sig) >= want)
    assert m.total("spanprof_accepted_items_total", sig) == want


def test_http_client_chunked_gzip_profiles(spanprof):
    payload = gzip.compress(cpu_profile_request(n_profiles=1, samples_per_profile=500)[0].SerializeToString())
    chunks = [payload[i:i + 777] for i in range(0, len(payload), 777)]
    conn = http.client.HTTPConnection("127.0.0.1", spanprof.http_port, timeout=20)
    try:
        conn.request("POST", "/v1development/profiles", body=iter(chunks), encode_chunked=True,
                     headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                              "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body
    r = profiles_service_pb2.ExportProfilesServiceResponse.FromString(body)
    assert r.partial_success.rejected_profiles == 0


def test_keep_alive_serves_many_requests_on_one_connection(spanprof):
    conn = http.client.HTTPConnection("127.0.0.1", spanprof.http_port, timeout=20)
    try:
        conn.connect()
        sock = conn.sock
        req = trace_request([b"\x09" * 8]).SerializeToString()
        for i in range(10):
            if i % 2:
                conn.request("GET", "/ready")
            else:
                conn.request("POST", "/v1/traces", body=req, headers={"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, (i, resp.status)
            assert conn.sock is sock, f"the server closed the keep-alive connection after request {i}"
            assert (resp.getheader("Connection") or "").lower() != "close"
    finally:
        conn.close()
    m = wait_for_metric(spanprof.http_port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= 5)
    assert m.total("spanprof_accepted_items_total", "trace") == 5


def test_connection_close_is_honoured(spanprof):
    import socket
    with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:100]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ctype", ["text/plain", "application/octet-stream", "application/grpc"])
def test_wrong_content_type_is_415(spanprof, path, ctype):
    req = trace_request([b"\x01" * 8]).SerializeToString()
    status, _, body = post_protobuf(spanprof.http_port, path, req, content_type=ctype)
    assert status == 415, f"{ctype} on {path} answered {status}: {body[:200]!r}"


@pytest.mark.parametrize("path", PATHS)
def test_missing_content_type_is_415(spanprof, path):
    status, _, _ = http_request(spanprof.http_port, "POST", path, body=b"\x0a\x00")
    assert status == 415


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("gz", [False, True], ids=["identity", "gzip"])
def test_bad_protobuf_is_400(spanprof, path, gz):
    status, _, body = post_protobuf(spanprof.http_port, path, b"\x0a\x64abc", gzip_body=gz)
    assert status == 400, f"{path} answered {status}: {body[:200]!r}"
    # Still serving on the same port.
    assert http_request(spanprof.http_port, "GET", "/ready")[0] == 200


@pytest.mark.parametrize("path", PATHS)
def test_gzip_header_with_non_gzip_body_is_400(spanprof, path):
    status, _, _ = http_request(spanprof.http_port, "POST", path, body=b"definitely not gzip",
                                headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert status == 400


def test_content_type_with_parameters_is_accepted(spanprof):
    req = trace_request([b"\x01" * 8]).SerializeToString()
    status, _, body = post_protobuf(spanprof.http_port, "/v1/traces", req,
                                    content_type="application/x-protobuf; charset=utf-8")
    assert status == 200, body


def test_unknown_http_path_is_404(spanprof):
    assert http_request(spanprof.http_port, "GET", "/no/such/thing")[0] == 404
    assert http_request(spanprof.http_port, "POST", "/v1/nope", body=b"",
                        headers={"Content-Type": "application/x-protobuf"})[0] == 404


def test_http_requests_and_rejections_in_metrics(spanprof):
    ok = trace_request([b"\x01" * 8]).SerializeToString()
    for _ in range(3):
        assert post_protobuf(spanprof.http_port, "/v1/traces", ok)[0] == 200
    assert post_protobuf(spanprof.http_port, "/v1/traces", b"\x0a\x64abc")[0] == 400
    m = wait_for_metric(spanprof.http_port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= 3)
    series = m.series("spanprof_requests_total", "trace")
    assert sum(v for _, v in series) == 4, series
    by_code = {}
    for lab, v in series:
        by_code[lab.get("code")] = by_code.get(lab.get("code"), 0) + v
    assert by_code.get("200") == 3 or by_code.get("OK") == 3 or by_code.get("0") == 3, series
    assert by_code.get("400") == 1 or by_code.get("INVALID_ARGUMENT") == 1 or by_code.get("3") == 1, series
    assert m.total("spanprof_received_bytes_total", "trace") >= 3 * len(ok)


def test_pipelined_requests_are_answered_in_order(spanprof):
    """RFC 9112 §9.3.2: requests sent back to back on one connection get their responses in order."""
    import socket
    body = trace_request([b"\x01" * 8]).SerializeToString()
    reqs = (b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            + b"GET /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
        s.sendall(reqs)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    statuses = []
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {head[:300]!r}"
        lines = head.split(b"\r\n")
        statuses.append(int(lines[0].split(b" ")[1]))
        length = [int(ln.split(b":", 1)[1]) for ln in lines[1:] if ln.lower().startswith(b"content-length:")]
        assert length, f"response without content-length: {head!r}"
        rest = rest[length[0]:]
    assert statuses == [200, 415, 404, 200], data[:1000]


def test_expect_100_continue(spanprof):
    """curl sends `Expect: 100-continue` for larger uploads: the server answers 100 before the body
    (RFC 9110 §10.1.1), so the client does not stall waiting for it."""
    import socket
    body = cpu_profile_request(n_profiles=2, samples_per_profile=2000)[0].SerializeToString()
    with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
        s.sendall(b"POST /v1development/profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.settimeout(5)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim[:200]
        s.sendall(body)
        s.settimeout(10)
        rest = interim.split(b"\r\n\r\n", 1)[1]
        while b"\r\n\r\n" not in rest:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without a final response (got {rest[:200]!r})"
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 200"), rest[:200]


def test_expect_100_continue_refused_for_wrong_content_type(spanprof):
    """A request that will be refused anyway gets its final status instead of 100 Continue."""
    import socket
    with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
        s.settimeout(5)
        data = s.recv(4096)
    assert data.startswith((b"HTTP/1.1 415", b"HTTP/1.1 100")), data[:200]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["grpc", "http1", "h2c_curl"])
def test_large_valid_export_is_accepted(spanprof, tmp_path, how):
    """~5 MB request: exercises HTTP/2 flow control (WINDOW_UPDATE) and large HTTP/1.1 bodies."""
    import grpc
    from e2e_helpers import RPC_TIMEOUT, profiles_stub
    req, _ = cpu_profile_request(n_profiles=8, samples_per_profile=25000, extra_stacks=1000)
    payload = req.SerializeToString()
    assert len(payload) > 5_000_000
    if how == "grpc":
        with grpc.insecure_channel(spanprof.grpc_target, options=[("grpc.max_send_message_length", -1)]) as ch:
            resp = profiles_stub(ch).Export(req, timeout=60)
        assert resp.partial_success.rejected_profiles == 0
    elif how == "http1":
        status, _, body = post_protobuf(spanprof.http_port, "/v1development/profiles", payload)
        assert status == 200, body[:200]
    else:
        p = tmp_path / "req.bin"
        p.write_bytes(payload)
        r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                 "Content-Type: application/x-protobuf", "--data-binary", f"@{p}",
                 f"http://{spanprof.http_target}/v1development/profiles", timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "200"
    m = wait_for_metric(spanprof.http_port, lambda m: m.total("spanprof_accepted_items_total", "profile") >= 8,
                        timeout=30)
    assert m.total("spanprof_accepted_items_total", "profile") == 8
