"""Hostile and broken input on raw sockets: the server answers or closes, never crashes or hangs,
and keeps serving everyone else. Each test ends with `assert_still_serving`."""

import socket
import threading
import time

import grpc
import pytest

from e2e_helpers import (
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FRAME_DATA,
    FRAME_GOAWAY,
    FRAME_HEADERS,
    FRAME_RST_STREAM,
    FRAME_SETTINGS,
    FRAME_WINDOW_UPDATE,
    H2_PREFACE,
    PROFILES_METHOD,
    RPC_TIMEOUT,
    RawH2,
    cpu_profile_request,
    goaway_code,
    grpc_frame,
    grpc_request_headers,
    h2_frame,
    http_request,
    profiles_stub,
)

PROTOCOL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR = 0x1, 0x6, 0x9


def assert_still_serving(server):
    assert server.alive(), f"spanprof died:\n{server.stderr()[-4000:]}"
    for port in server.ports():
        assert http_request(port, "GET", "/ready", timeout=10)[0] == 200
    req, _ = cpu_profile_request()
    with grpc.insecure_channel(server.grpc_target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_profiles == 0


def recv_all(sock, limit=1 << 20, timeout=10.0):
    """Reads until the peer closes (or resets); returns (data, closed)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except ConnectionResetError:
        return data, True
    except socket.timeout:
        return data, False
    return data, False


def send_ignoring_reset(sock, data):
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


# ---- HTTP/1.1 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("port_name", ["http_port", "grpc_port"])
def test_huge_header_is_refused_and_connection_closed(spanprof, port_name):
    port = getattr(spanprof, port_name)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # Sent from a thread: the server may stop reading (and close) before all of it is sent.
        big = b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        t = threading.Thread(target=send_ignoring_reset, args=(s, big), daemon=True)
        t.start()
        data, closed = recv_all(s)
        t.join(10)
    assert data.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), data[:200]
    assert closed, "the connection stayed open after a refused header"
    assert_still_serving(spanprof)


def test_many_headers_are_refused(spanprof):
    with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
        req = b"GET /ready HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20000)) + b"\r\n"
        t = threading.Thread(target=send_ignoring_reset, args=(s, req), daemon=True)
        t.start()
        data, closed = recv_all(s)
        t.join(10)
    assert data.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), data[:200]
    assert closed
    assert_still_serving(spanprof)


@pytest.mark.parametrize("junk", [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello on plaintext
    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["not_http", "tls_hello", "negative_length", "huge_length", "bad_chunk", "cl_and_te"])
def test_malformed_http11_gets_an_error_or_close(spanprof, junk):
    with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
        send_ignoring_reset(s, junk)
        data, closed = recv_all(s)
    assert closed, f"connection left open after malformed request; got {data[:200]!r}"
    if data:
        status = int(data.split(b" ", 2)[1])
        # 501 is how RFC 9110 §15.6.2 answers a method it does not recognise.
        assert 400 <= status < 500 or status == 501, data[:200]
    assert_still_serving(spanprof)


def test_body_larger_than_limit_is_413(spanprof_factory):
    server = spanprof_factory(["--max-recv-msg-size", "1048576"])
    body = b"\x00" * (8 << 20)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        t = threading.Thread(target=send_ignoring_reset, args=(s, head + body), daemon=True)
        t.start()
        data, _ = recv_all(s, timeout=15)
        t.join(10)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert_still_serving(server)


def test_truncated_body_then_close(spanprof):
    req, _ = cpu_profile_request()
    body = req.SerializeToString()
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) as s:
            s.sendall(b"POST /v1development/profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
    assert_still_serving(spanprof)


def test_slow_client_does_not_block_others(spanprof):
    """A connection that sent half a request line holds nothing: others are served meanwhile."""
    held = [socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10) for _ in range(20)]
    try:
        for s in held:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Le")
        t0 = time.monotonic()
        assert_still_serving(spanprof)
        assert time.monotonic() - t0 < 10
    finally:
        for s in held:
            s.close()


# ---- HTTP/2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["preface_half", "frame_header_half", "frame_payload_half", "headers_block_half"])
@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_truncated_h2_then_close(spanprof, cut, port_name):
    port = getattr(spanprof, port_name)
    hdrs = grpc_request_headers(port, PROFILES_METHOD)
    if cut == "preface_half":
        data = H2_PREFACE[:12]
    elif cut == "frame_header_half":
        data = H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, b"") + b"\x00\x00\x10\x01"
    elif cut == "frame_payload_half":
        data = H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, b"") + h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, hdrs)[:-7]
    else:
        # HEADERS without END_HEADERS and no CONTINUATION ever comes.
        data = H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, b"") + h2_frame(FRAME_HEADERS, 0, 1, hdrs[:20])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            time.sleep(0.05)
    assert_still_serving(spanprof)


def test_truncated_grpc_message_in_h2_stream_ends_the_stream(spanprof):
    """DATA says END_STREAM but the gRPC prefix promised more bytes: the stream must be finished
    (trailers with END_STREAM or RST_STREAM), not left waiting."""
    req, _ = cpu_profile_request()
    msg = req.SerializeToString()
    c = RawH2(spanprof.grpc_port)
    try:
        c.start()
        c.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, grpc_request_headers(spanprof.grpc_port, PROFILES_METHOD)))
        c.send(h2_frame(FRAME_DATA, FLAG_END_STREAM, 1, grpc_frame(msg, length=len(msg) + 1000)))

        def stream_done(f):
            ftype, flags, sid, _ = f
            return sid == 1 and (ftype == FRAME_RST_STREAM or (ftype == FRAME_HEADERS and flags & FLAG_END_STREAM)
                                 or (ftype == FRAME_DATA and flags & FLAG_END_STREAM))
        frames, closed = c.frames_until_closed(stream_done)
        finished = any(stream_done(f) for f in frames)
        aborted = closed and any(f[0] == FRAME_GOAWAY for f in frames)
        assert finished or aborted, f"stream 1 neither finished nor the connection aborted: {frames}"
    finally:
        c.close()
    assert_still_serving(spanprof)


def test_oversized_h2_frame_is_frame_size_error(spanprof):
    c = RawH2(spanprof.grpc_port)
    try:
        c.start()
        # 16 MiB - 1 HEADERS frame: above the default SETTINGS_MAX_FRAME_SIZE (16384), RFC 9113 §4.2.
        c.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, b"\x00" * 100, length=0xFFFFFF))
        frames, closed = c.frames_until_closed()
    finally:
        c.close()
    goaways = [f for f in frames if f[0] == FRAME_GOAWAY]
    assert goaways, f"no GOAWAY after an oversized frame: {frames}"
    assert goaway_code(goaways[-1]) == FRAME_SIZE_ERROR, goaway_code(goaways[-1])
    assert closed
    assert_still_serving(spanprof)


@pytest.mark.parametrize("case", ["data_on_stream_0", "bad_hpack", "even_stream_id", "window_update_zero",
                                  "settings_wrong_length"])
def test_h2_protocol_errors_get_goaway(spanprof, case):
    c = RawH2(spanprof.grpc_port)
    try:
        c.start()
        if case == "data_on_stream_0":
            c.send(h2_frame(FRAME_DATA, 0, 0, b"abc"))
        elif case == "bad_hpack":
            # Indexed header field 0 is invalid (RFC 7541 §6.1) → COMPRESSION_ERROR.
            c.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, b"\x80\xff\xff\xff\xff"))
        elif case == "even_stream_id":
            c.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 2,
                            grpc_request_headers(spanprof.grpc_port, PROFILES_METHOD)))
        elif case == "window_update_zero":
            c.send(h2_frame(FRAME_WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"))
        else:
            c.send(h2_frame(FRAME_SETTINGS, 0, 0, b"\x00\x01\x00"))
        frames, closed = c.frames_until_closed()
    finally:
        c.close()
    goaways = [f for f in frames if f[0] == FRAME_GOAWAY]
    assert goaways, f"no GOAWAY for {case}: {frames}"
    assert goaway_code(goaways[-1]) in (PROTOCOL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR), goaway_code(goaways[-1])
    assert closed
    assert_still_serving(spanprof)


def test_h2_stream_reset_mid_upload(spanprof):
    """The client cancels a stream half way (RST_STREAM CANCEL): the server drops it and goes on."""
    req, _ = cpu_profile_request(samples_per_profile=300)
    msg = grpc_frame(req.SerializeToString())
    c = RawH2(spanprof.grpc_port)
    try:
        c.start()
        for sid in (1, 3, 5):
            c.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, sid, grpc_request_headers(spanprof.grpc_port, PROFILES_METHOD)))
            c.send(h2_frame(FRAME_DATA, 0, sid, msg[: len(msg) // 2]))
            c.send(h2_frame(FRAME_RST_STREAM, 0, sid, b"\x00\x00\x00\x08"))
        time.sleep(0.1)
    finally:
        c.close()
    assert_still_serving(spanprof)


def test_grpc_client_cancel_does_not_leak_inflight(spanprof):
    from e2e_helpers import scrape
    req, _ = cpu_profile_request(samples_per_profile=2000)
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        stub = profiles_stub(ch)
        futs = [stub.Export.future(req, timeout=RPC_TIMEOUT) for _ in range(10)]
        for f in futs:
            f.cancel()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = scrape(spanprof.http_port)
        if m.inflight() == 0:
            break
        time.sleep(0.1)
    assert m.inflight() == 0, m.series("spanprof_inflight_requests")
    assert_still_serving(spanprof)


def test_many_connections_opened_and_dropped(spanprof):
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", spanprof.ports()[i % 2]), timeout=10)
        if i % 3 == 0:
            s.sendall(H2_PREFACE)
        s.close()
    assert_still_serving(spanprof)
