"""gRPC status codes a client sees for bad requests, limits and unknown methods."""

import gzip
import re

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from e2e_helpers import (
    DEFAULT_MAX_MSG,
    PROFILES_METHOD,
    RPC_TIMEOUT,
    TRACES_METHOD,
    cpu_profile_request,
    curl,
    established_client_ports,
    grpc_frame,
    profiles_stub,
    raw_unary,
    scrape,
    trace_request,
    traces_stub,
)

# Bytes that no protobuf parser can accept: field 1, length-delimited, length 100, 3 bytes follow.
GARBAGE = b"\x0a\x64abc"


def call_raw(target, method, payload, compression=None, options=(), timeout=RPC_TIMEOUT):
    with grpc.insecure_channel(target, options=list(options)) as ch:
        return raw_unary(ch, method)(payload, timeout=timeout, compression=compression)


def code_of(fn):
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    return ei.value.code(), ei.value.details() or ""


def small_export_ok(channel):
    req, _ = cpu_profile_request()
    resp = profiles_stub(channel).Export(req, timeout=RPC_TIMEOUT)
    assert not resp.partial_success.rejected_profiles


@pytest.mark.parametrize("method", [PROFILES_METHOD, TRACES_METHOD])
@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["identity", "gzip"])
def test_undecodable_request_is_invalid_argument(spanprof, method, compression):
    code, details = code_of(lambda: call_raw(spanprof.grpc_target, method, GARBAGE, compression))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details, "INVALID_ARGUMENT without a grpc-message"
    # The server is still fine on a new channel.
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        small_export_ok(ch)


@pytest.mark.parametrize("method", [
    "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Nope",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "/opentelemetry.proto.collector.profiles.v1experimental.ProfilesService/Export",
    "/no.Such/Method",
])
def test_unknown_service_or_method_is_unimplemented(spanprof, method):
    code, details = code_of(lambda: call_raw(spanprof.grpc_target, method, b""))
    assert code == grpc.StatusCode.UNIMPLEMENTED, (code, details)


@pytest.fixture
def small_limit_server(spanprof_factory):
    return spanprof_factory(["--max-recv-msg-size", "1048576"])


def _trace_request_of_size(size):
    """A valid ExportTraceServiceRequest serialized to exactly `size` bytes."""
    req = trace_request([b"\x01" * 8])
    span = req.resource_spans[0].scope_spans[0].spans[0]
    kv = span.attributes.add()
    kv.key = "pad"
    pad = size - req.ByteSize()
    while True:
        kv.value.string_value = "x" * pad
        got = req.ByteSize()
        if got == size:
            return req.SerializeToString()
        pad += size - got


def test_message_at_the_limit_is_accepted_one_byte_more_is_resource_exhausted(small_limit_server):
    s = small_limit_server
    opts = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(s.grpc_target, options=opts) as ch:
        at_limit = _trace_request_of_size(1048576)
        resp = raw_unary(ch, TRACES_METHOD, trace_service_pb2.ExportTraceServiceResponse)(at_limit, timeout=RPC_TIMEOUT)
        assert resp.partial_success.rejected_spans == 0
        conns = established_client_ports(s.grpc_port)
        assert len(conns) == 1, conns
        over = _trace_request_of_size(1048577)
        code, details = code_of(lambda: raw_unary(ch, TRACES_METHOD)(over, timeout=RPC_TIMEOUT))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert "1048576" in details, f"grpc-message does not name the limit: {details!r}"
        # Same channel, same TCP connection: a small request still works.
        small_export_ok(ch)
        assert established_client_ports(s.grpc_port) == conns, "the server dropped the connection"


def _names_default_limit(details):
    return "67108864" in details or re.search(r"64\s*MiB", details)


@pytest.mark.slow
@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["identity", "gzip"])
def test_message_over_default_64mib_is_resource_exhausted_and_channel_survives(spanprof, compression):
    """Identity: a 64 MiB + 1 message. Gzip: a small compressed message that inflates past 64 MiB."""
    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    big = b"\x00" * (DEFAULT_MAX_MSG + 1)
    with grpc.insecure_channel(spanprof.grpc_target, options=opts) as ch:
        small_export_ok(ch)
        conns = established_client_ports(spanprof.grpc_port)
        code, details = code_of(lambda: raw_unary(ch, PROFILES_METHOD)(big, timeout=60, compression=compression))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert _names_default_limit(details), f"grpc-message does not name the limit: {details!r}"
        small_export_ok(ch)
        small_export_ok(ch)
        assert established_client_ports(spanprof.grpc_port) == conns, "the server dropped the connection"
    assert spanprof.alive()


@pytest.mark.slow
def test_gzip_bomb_over_http_is_rejected(spanprof):
    """A gzip body of ~100 KB that inflates to 80 MiB: refused, not inflated into memory."""
    from e2e_helpers import http_request
    bomb = gzip.compress(b"\x00" * (80 * 1024 * 1024), compresslevel=9)
    status, _, body = http_request(spanprof.http_port, "POST", "/v1development/profiles", body=bomb,
                                   headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert status in (400, 413), f"gzip bomb answered {status}: {body[:200]!r}"
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        small_export_ok(ch)


def test_grpc_timeout_header_is_accepted(spanprof):
    """grpcio sends grpc-timeout for a deadline; a generous one must not fail the call."""
    req, _ = cpu_profile_request()
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        for t in (2, 30, 3600):
            resp = profiles_stub(ch).Export(req, timeout=t)
            assert not resp.partial_success.rejected_profiles


def _curl_grpc(port, path, body_path, extra=()):
    """POSTs a raw gRPC body with curl over h2c; returns (http status, {header: value} incl. trailers)."""
    r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "-H", "content-type: application/grpc",
             "-H", "te: trailers", *extra, "--data-binary", f"@{body_path}", f"http://127.0.0.1:{port}{path}")
    assert r.returncode == 0, f"curl failed ({r.returncode}): {r.stderr}"
    status, headers = None, {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("HTTP/"):
            status = int(line.split()[1])
        elif ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


@pytest.mark.parametrize("case", ["prefix_claims_more", "short_prefix", "compressed_flag_without_encoding",
                                  "compressed_flag_with_bad_gzip", "two_messages_in_unary"])
def test_malformed_grpc_framing_gets_an_error_status(spanprof, tmp_path, case):
    req, _ = cpu_profile_request()
    msg = req.SerializeToString()
    extra = ()
    if case == "prefix_claims_more":
        body = grpc_frame(msg, length=len(msg) + 100)
    elif case == "short_prefix":
        body = b"\x00\x00\x00"
    elif case == "compressed_flag_without_encoding":
        body = grpc_frame(gzip.compress(msg), compressed=True)
    elif case == "compressed_flag_with_bad_gzip":
        body = grpc_frame(b"\x1f\x8b\x08\x00garbage-not-deflate" * 3, compressed=True)
        extra = ("-H", "grpc-encoding: gzip")
    else:
        body = grpc_frame(msg) + grpc_frame(msg)
    p = tmp_path / "body.bin"
    p.write_bytes(body)
    status, headers = _curl_grpc(spanprof.grpc_port, PROFILES_METHOD, p, extra)
    assert status == 200, f"gRPC errors travel in grpc-status with HTTP 200, got {status}"
    assert "grpc-status" in headers, f"no grpc-status in headers or trailers: {headers}"
    assert headers["grpc-status"] != "0", f"{case} was answered OK"
    assert int(headers["grpc-status"]) in (3, 12, 13), headers  # INVALID_ARGUMENT, UNIMPLEMENTED, INTERNAL
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        small_export_ok(ch)


def test_well_framed_request_via_curl_is_ok(spanprof, tmp_path):
    """Control for the malformed-framing test: the same path with a correct frame answers grpc-status 0."""
    req, _ = cpu_profile_request()
    p = tmp_path / "body.bin"
    p.write_bytes(grpc_frame(req.SerializeToString()))
    status, headers = _curl_grpc(spanprof.grpc_port, PROFILES_METHOD, p)
    assert status == 200
    assert headers.get("grpc-status") == "0", headers
    assert headers.get("content-type", "").startswith("application/grpc"), headers


def test_grpc_unsupported_encoding_is_unimplemented(spanprof, tmp_path):
    """gRPC spec: a grpc-encoding the server does not support → UNIMPLEMENTED (with grpc-accept-encoding)."""
    req, _ = cpu_profile_request()
    p = tmp_path / "body.bin"
    p.write_bytes(grpc_frame(b"\x28\xb5\x2f\xfd" + req.SerializeToString(), compressed=True))
    status, headers = _curl_grpc(spanprof.grpc_port, PROFILES_METHOD, p, ("-H", "grpc-encoding: snappy"))
    assert headers.get("grpc-status") == "12", headers


def test_resource_exhausted_count_in_metrics(small_limit_server):
    opts = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(small_limit_server.grpc_target, options=opts) as ch:
        for _ in range(3):
            code, _ = code_of(lambda: raw_unary(ch, PROFILES_METHOD)(b"\x00" * 2_000_000, timeout=RPC_TIMEOUT))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    m = scrape(small_limit_server.http_port)
    series = m.series("spanprof_requests_total", "profile")
    exhausted = sum(v for lab, v in series if lab.get("code", "").lower() in ("8", "resource_exhausted"))
    assert exhausted == 3, f"expected 3 requests with code RESOURCE_EXHAUSTED (8): {series}"


def test_grpc_plus_proto_content_type_is_accepted(spanprof, tmp_path):
    """gRPC allows "application/grpc+proto" (PROTOCOL-HTTP2.md, Content-Type)."""
    req, _ = cpu_profile_request()
    p = tmp_path / "body.bin"
    p.write_bytes(grpc_frame(req.SerializeToString()))
    r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "-H", "content-type: application/grpc+proto",
             "-H", "te: trailers", "--data-binary", f"@{p}", f"http://127.0.0.1:{spanprof.grpc_port}{PROFILES_METHOD}")
    assert r.returncode == 0, r.stderr
    assert "grpc-status: 0" in r.stdout.lower(), r.stdout
