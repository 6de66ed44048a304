"""Abuse and faults against the real binary on loopback, each bounded in time.

Every attack runs beside a well-behaved client (abuse_clients.Prober: GET /ready on a fresh
connection and an OTLP gRPC Export, in turns). For each attack the test asserts that
  - the prober got every answer, none slower than LATENCY_BOUND (a loaded 2-core machine, maybe
    under ASan: generous, but a server that stalls behind an attacker takes far longer or times out);
  - the attacker is cut off where the protocol says so (GOAWAY with its error code, RST_STREAM
    REFUSED_STREAM, or the connection closed);
  - the server's RSS (VmRSS from /proc/<pid>/status, sampled by the prober and at the end) grew by
    less than RSS_BOUND over what it used before the attack.

Also here: compression bombs (gzip, zstd), a body just under and just over --max-recv-msg-size
(plain and gzip), every truncation point of a real OTLP request, backpressure that loses nothing
acknowledged and recovers on its own, and kill -9 during trace ingest (test_durability.py does
profiles).
"""

import concurrent.futures as cf
import gzip
import os
import socket
import sqlite3
import subprocess
import threading
import time

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from abuse_clients import (
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_CONTINUATION,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Attacker,
    Prober,
    Trickler,
    get_headers,
    header_block_frames,
    memory,
    tls_client_context,
)
from e2e_helpers import (
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FRAME_HEADERS,
    FRAME_PING,
    FRAME_RST_STREAM,
    FRAME_SETTINGS,
    FRAME_WINDOW_UPDATE,
    PROFILES_METHOD,
    RPC_TIMEOUT,
    TRACES_METHOD,
    cpu_profile_request,
    curl,
    grpc_frame,
    grpc_request_headers,
    h2_frame,
    http_request,
    profiles_stub,
    raw_unary,
    scrape,
    trace_request,
)
from test_durability import kill_hard, request_total
from test_query import CPU, Window, connect_json

pytestmark = pytest.mark.slow

LATENCY_BOUND = 3.0      # seconds: the slowest probe answer accepted while an attack runs
RSS_BOUND = 64 << 20     # bytes of RSS growth accepted during one attack (plain build: < 10 MiB);
                         # doubled under ASan, whose quarantine keeps freed memory (floods: ~58 MiB)
HEADER_TIMEOUT = "2s"    # --header-timeout for the slow-client tests (default 20s)


def sanitized(server):
    """True for a binary built with -DSPANPROF_SANITIZE=ON (gcc links libasan)."""
    with open(f"/proc/{server.proc.pid}/maps") as f:
        return "libasan" in f.read()


def assert_served(probe, server, base_rss, what):
    rss, hwm = memory(server.proc.pid)
    print(f"\n{what}: {probe.summary()}; RSS before {base_rss >> 20} MiB, now {rss >> 20} MiB, HWM {hwm >> 20} MiB")
    assert probe.latencies, f"{what}: the prober got no answer at all ({probe.summary()})"
    assert not probe.failures, f"{what}: the well-behaved client failed: {probe.summary()}"
    assert probe.worst() < LATENCY_BOUND, f"{what}: the well-behaved client waited too long: {probe.summary()}"
    peak = max(probe.peak_rss, memory(server.proc.pid)[0])
    bound = RSS_BOUND * (2 if sanitized(server) else 1)
    assert peak - base_rss < bound, (f"{what}: RSS grew by {(peak - base_rss) >> 20} MiB "
                                     f"(bound {bound >> 20} MiB): {probe.summary()}")
    assert server.alive()


# ---- HTTP/2 ------------------------------------------------------------------------------------


def test_rapid_reset_is_cut_off_with_goaway(spanprof):
    """CVE-2023-44487: HEADERS (a complete gRPC Export) then RST_STREAM, as fast as the socket takes
    them. Each stream reaches a worker queue before it is cancelled; past nghttp2's reset budget
    (1000, then 33/s) the connection gets GOAWAY and is closed."""
    s = spanprof
    base = memory(s.proc.pid)[0]
    hdr = grpc_request_headers(s.grpc_port, PROFILES_METHOD)
    pairs = 20000
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port)
        t0 = time.monotonic()
        sid = 1
        for _ in range(pairs // 100):
            batch = b""
            for _ in range(100):
                batch += h2_frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, sid, hdr)
                batch += h2_frame(FRAME_RST_STREAM, 0, sid, (8).to_bytes(4, "big"))  # CANCEL
                sid += 2
            if not a.send(batch):
                break
        closed = a.wait_closed(10)
        elapsed = time.monotonic() - t0
        a.close()
        time.sleep(0.5)
    sent = (sid - 1) // 2
    print(f"\nrapid reset: GOAWAY {a.goaway} after {sent} pairs written in {elapsed:.2f}s")
    assert closed, f"{sent} HEADERS+RST_STREAM pairs in {elapsed:.1f}s and the connection is still open"
    assert a.goaway is not None or a.reset, "closed without GOAWAY"
    assert a.goaway != 0, f"GOAWAY NO_ERROR is not a verdict on a flood (code {a.goaway})"
    assert sent < pairs, f"the attacker got all {pairs} pairs written before the server cut it off"
    assert_served(probe, s, base, "rapid reset")


def test_more_streams_than_allowed_are_refused(spanprof_factory):
    """SETTINGS_MAX_CONCURRENT_STREAMS 8, and a client that opens 8 + 40 streams it never finishes:
    the excess is refused (RST_STREAM REFUSED_STREAM before the client acknowledged the setting,
    GOAWAY PROTOCOL_ERROR after), the first 8 are unaffected."""
    s = spanprof_factory(["--max-concurrent-streams", "8"])
    base = memory(s.proc.pid)[0]
    hdr = grpc_request_headers(s.grpc_port, PROFILES_METHOD)
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port)
        deadline = time.monotonic() + 5
        while not a.settings and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (3, 8) in a.settings, f"server SETTINGS {a.settings} do not say MAX_CONCURRENT_STREAMS 8"
        frames = b"".join(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, 1 + 2 * i, hdr) for i in range(48))
        a.send(frames)
        deadline = time.monotonic() + 5
        while (a.resets.get(REFUSED_STREAM, 0) < 40 and a.goaway is None and time.monotonic() < deadline):
            time.sleep(0.05)
        time.sleep(0.3)
        a.close()
    refused = a.resets.get(REFUSED_STREAM, 0)
    assert refused >= 40 or a.goaway == PROTOCOL_ERROR, (
        f"48 streams against a limit of 8: {refused} REFUSED_STREAM, GOAWAY {a.goaway}, resets {a.resets}")
    assert_served(probe, s, base, "too many streams")


def test_window_update_flood_then_overflow_is_flow_control_error(spanprof):
    """200,000 WINDOW_UPDATE frames of 1 byte each cost the server nothing it keeps; one that takes
    the connection window past 2^31-1 is a FLOW_CONTROL_ERROR (RFC 9113 section 6.9.1)."""
    s = spanprof
    base = memory(s.proc.pid)[0]
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port)
        one = h2_frame(FRAME_WINDOW_UPDATE, 0, 0, (1).to_bytes(4, "big"))
        for _ in range(200):
            assert a.send(one * 1000), "the server closed the connection during a legal flood"
        assert a.goaway is None, f"GOAWAY {a.goaway} for legal window updates"
        a.send(h2_frame(FRAME_WINDOW_UPDATE, 0, 0, (0x7FFFFFFF).to_bytes(4, "big")))
        closed = a.wait_closed(10)
        a.close()
    assert a.goaway == FLOW_CONTROL_ERROR, f"window overflow answered GOAWAY {a.goaway}"
    assert closed
    assert_served(probe, s, base, "window update flood")


def test_continuation_flood_is_cut_off(spanprof):
    """A header block that never ends: HEADERS then CONTINUATION after CONTINUATION (CVE-2024-27316
    and friends). nghttp2 allows 8; the connection is closed long before the 200 frames
    (3 MiB) the attacker has."""
    s = spanprof
    base = memory(s.proc.pid)[0]
    field = b"\x00" + bytes([0x7F, 0x8F, 0x7F]) + b"x" * 16270  # literal, name of 16270 bytes...
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port)
        a.send(h2_frame(FRAME_HEADERS, 0, 1, get_headers(s.grpc_port)))
        frames = 0
        for _ in range(200):
            if not a.send(h2_frame(FRAME_CONTINUATION, 0, 1, field[:16384])):
                break
            frames += 1
            if a.closed.is_set():
                break
            time.sleep(0.002)
        closed = a.wait_closed(10)
        a.close()
    assert closed and frames < 200, f"{frames} CONTINUATION frames accepted without end"
    assert_served(probe, s, base, "CONTINUATION flood")


def test_hpack_amplification_is_bounded(spanprof):
    """HPACK lets 1 byte stand for a whole header from the dynamic table: one 16 KiB HEADERS frame
    can name a 4 KiB header 16,000 times (64 MiB of header list). Each such stream is refused
    (431 or RST_STREAM), quickly, and the server stays responsive; 50 of them in a row."""
    s = spanprof
    base = memory(s.proc.pid)[0]
    value = b"v" * 4000
    insert = b"\x40" + bytes([4]) + b"x-ab" + bytes([0x7F]) + _hpack_len(len(value) - 127) + value
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port)
        for i in range(50):
            block = get_headers(s.grpc_port) + (insert if i == 0 else b"") + b"\xbe" * 12000
            if not a.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1 + 2 * i, block)):
                break
        deadline = time.monotonic() + 10
        while a.answers + sum(a.resets.values()) < 50 and not a.closed.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        a.close()
    assert a.answers + sum(a.resets.values()) >= 50 or a.goaway is not None, (
        f"50 amplified header blocks: {a.answers} answers, resets {a.resets}, GOAWAY {a.goaway}")
    assert_served(probe, s, base, "HPACK amplification")


def _hpack_len(rest):
    """The continuation bytes of an HPACK integer whose 7-bit prefix is full (RFC 7541 5.1)."""
    out = bytearray()
    while rest >= 128:
        out.append((rest & 0x7F) | 0x80)
        rest >>= 7
    out.append(rest)
    return bytes(out)


def test_slow_consumer_h2_is_bounded_and_cut_off(spanprof_factory):
    """A client that asks for answers it never reads, with a zero flow-control window: at most
    SETTINGS_MAX_CONCURRENT_STREAMS answers wait, the rest is refused, and once it goes quiet the
    idle timeout closes it."""
    s = spanprof_factory(["--idle-timeout", "3s"])
    base = memory(s.proc.pid)[0]
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port, read=False, settings=(4).to_bytes(2, "big") + (0).to_bytes(4, "big"))
        hdr = get_headers(s.grpc_port, "/metrics")
        for i in range(2000):
            if not a.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1 + 2 * i, hdr)):
                break
        t0 = time.monotonic()
        closed = a.wait_closed(10)
        a.close()
    assert closed, "a silent client that reads nothing was never closed"
    assert time.monotonic() - t0 < 8, "closed, but later than --idle-timeout allows"
    assert_served(probe, s, base, "slow HTTP/2 consumer")


def test_slow_consumer_http11_pipelining_is_bounded(spanprof_factory):
    """20,000 pipelined GET /metrics and not one answer read: the server stops reading requests
    once about a megabyte of answers waits (instead of buffering all of them), and the write side
    times out."""
    s = spanprof_factory(["--idle-timeout", "3s"])
    metrics_size = len(http_request(s.http_port, "GET", "/metrics")[2])
    base = memory(s.proc.pid)[0]
    with Prober(s) as probe:
        sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.setblocking(False)
        sent = 0
        end = time.monotonic() + 5
        data = req * 20000
        while sent < len(data) and time.monotonic() < end:
            try:
                sent += sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        peak = 0
        for _ in range(10):
            peak = max(peak, memory(s.proc.pid)[0])
            time.sleep(0.1)
        # Not reading for longer than --idle-timeout: the server's write times out and it closes;
        # reading now drains what the kernel holds and ends in EOF or a reset.
        time.sleep(4)
        sock.setblocking(True)
        sock.settimeout(5)
        closed = False
        try:
            while sock.recv(1 << 20):
                pass
            closed = True
        except socket.timeout:
            pass
        except OSError:
            closed = True
        sock.close()
    offered = 20000 * metrics_size
    # Plain build: about 1 MiB of growth; before the server stopped reading, 78 MiB. ASan's
    # quarantine (32 MiB in CI) holds freed answers too.
    assert peak - base < min(48 << 20, offered // 3), (
        f"answers to unread pipelined requests: RSS grew {(peak - base) >> 20} MiB "
        f"(the answers total {offered >> 20} MiB)")
    assert closed
    assert_served(probe, s, base, "slow HTTP/1.1 consumer")


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_flood_not_read_is_cut_off(spanprof, kind):
    """PING or SETTINGS frames by the hundred thousand from a client that does not read the ACKs:
    once the socket is full and 1000 ACKs wait, the connection is closed (after at most 5 s for
    the GOAWAY to be read)."""
    s = spanprof
    base = memory(s.proc.pid)[0]
    frame = (h2_frame(FRAME_PING, 0, 0, b"12345678") if kind == "ping"
             else h2_frame(FRAME_SETTINGS, 0, 0, (4).to_bytes(2, "big") + (65535).to_bytes(4, "big")))
    with Prober(s) as probe:
        a = H2Attacker(s.grpc_port, read=False)
        total = 0
        t0 = time.monotonic()
        for _ in range(400):
            if not a.send(frame * 5000):
                break
            total += 5000
        closed = a.wait_closed(10)
        elapsed = time.monotonic() - t0
        a.close()
    print(f"\n{kind} flood: cut off after {total} frames sent, closed={closed} after {elapsed:.1f}s")
    assert closed and total < 2_000_000, f"{total} {kind} frames whose ACKs nobody reads: never closed"
    # nghttp2 detects the flood within a second; the GOAWAY then waits at most 5 s for a reader
    # (it waited for the 300 s idle timeout before).
    assert elapsed < 9, f"{kind} flood: the connection was held {elapsed:.1f}s after the flood"
    assert_served(probe, s, base, f"{kind} flood")


def test_settings_with_too_many_entries_is_enhance_your_calm(spanprof):
    s = spanprof
    a = H2Attacker(s.grpc_port)
    entries = b"".join((4).to_bytes(2, "big") + (65535 + i).to_bytes(4, "big") for i in range(40))
    a.send(h2_frame(FRAME_SETTINGS, 0, 0, entries))
    closed = a.wait_closed(10)
    a.close()
    assert a.goaway == ENHANCE_YOUR_CALM, f"40 SETTINGS entries in one frame answered GOAWAY {a.goaway}"
    assert closed
    assert http_request(s.http_port, "GET", "/ready")[0] == 200


# ---- slow clients ------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["http1", "h2"])
def test_slowloris_is_cut_off_by_header_timeout(spanprof_factory, proto):
    """200 connections that each send a request head (HTTP/1.1, 9 KB: it would take 40 minutes) or
    the HTTP/2 preface and SETTINGS one byte every 0.25 s. The idle timeout never fires (every byte
    resets it); --header-timeout closes each connection, and the server serves others meanwhile."""
    s = spanprof_factory(["--header-timeout", HEADER_TIMEOUT])
    base = memory(s.proc.pid)[0]
    with Prober(s) as probe:
        t = Trickler(s.http_port, 200, payload=Trickler.H2 if proto == "h2" else Trickler.HEAD)
        try:
            t.run(12)
        finally:
            t.close()
    assert len(t.closed_at) == 200, f"{200 - len(t.closed_at)} of 200 slowloris connections still open after 12 s"
    worst = max(t.closed_at.values())
    assert worst < 8, f"the last slowloris connection was closed {worst:.1f}s after it opened (timeout 2s)"
    assert max(t.sent) < len(t.payload), "a trickled head got through"
    assert_served(probe, s, base, "slowloris")
    assert scrape(s.http_port).total("spanprof_header_timeouts_total") >= 200


@pytest.mark.tls
def test_slowloris_tls_handshake_is_cut_off(spanprof_factory, certs):
    """100 TCP connections that start a TLS handshake (the first bytes of a ClientHello that
    promises more) and stall: --header-timeout closes them; TLS clients are served meanwhile."""
    s = spanprof_factory(["--header-timeout", HEADER_TIMEOUT],
                         tls=dict(cert=certs["server_cert"], key=certs["server_key"], ca=certs["ca"]))
    base = memory(s.proc.pid)[0]
    with Prober(s, context=tls_client_context(s)) as probe:
        t = Trickler(s.http_port, 100, tls=True)
        try:
            t.run(12)
        finally:
            t.close()
    assert len(t.closed_at) == 100, f"{100 - len(t.closed_at)} of 100 stalled handshakes still open after 12 s"
    assert max(t.closed_at.values()) < 8
    assert_served(probe, s, base, "TLS handshake slowloris")


def test_slow_but_steady_client_within_header_timeout_is_served(spanprof_factory):
    """Control: the header timeout does not cut off a slow client that makes it in time."""
    s = spanprof_factory(["--header-timeout", HEADER_TIMEOUT])
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as sock:
        head = b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(0, len(head), 4):
            sock.sendall(head[i:i + 4])
            time.sleep(0.1)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "a 3 s request head within the timeout was refused"
        time.sleep(3)  # idle between requests is not a slow head
        sock.sendall(head)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "idle keep-alive connection was cut by the head timeout"


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_descriptor_exhaustion_pauses_accepting_instead_of_spinning(spanprof):
    """More connections than the server has file descriptors (RLIMIT_NOFILE lowered to 64 with
    prlimit): accept() fails with EMFILE while the pending connection stays in the backlog. The
    server pauses accepting (100 ms at a time) instead of retrying at full CPU, and once the
    connections go away it serves new ones again on its own."""
    s = spanprof
    subprocess.run(["prlimit", f"--pid={s.proc.pid}", "--nofile=64:64"], check=True)
    held = []
    try:
        for _ in range(100):
            held.append(socket.create_connection(("127.0.0.1", s.http_port), timeout=5))
        time.sleep(0.5)
        cpu0, t0 = _cpu_seconds(s.proc.pid), time.monotonic()
        time.sleep(2)
        busy = (_cpu_seconds(s.proc.pid) - cpu0) / (time.monotonic() - t0)
        warnings = s.stderr().count("accept failed")
    finally:
        for c in held:
            c.close()
    print(f"\nEMFILE: server CPU {busy * 100:.0f}% while out of descriptors, {warnings} accept warnings")
    assert warnings > 0, "100 connections against 64 descriptors: accept never failed (the test proves nothing)"
    assert busy < 0.2, f"the server spent {busy * 100:.0f}% CPU while it could not accept"
    assert warnings < 200, f"{warnings} accept warnings in about 2.5 s: the log is flooded"
    deadline = time.monotonic() + 10
    while True:
        try:
            assert http_request(s.http_port, "GET", "/ready", timeout=2)[0] == 200
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not accept again after the connections closed"
            time.sleep(0.2)


# ---- bombs, limits, truncation -----------------------------------------------------------------

LIMIT = 1 << 20


@pytest.fixture
def limited(spanprof_factory):
    return spanprof_factory(["--max-recv-msg-size", str(LIMIT)])


def _zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-19"], input=data, stdout=subprocess.PIPE, check=True).stdout


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compression_bomb_over_http_is_refused_without_inflating(limited, codec):
    """A 256 MiB body of zeros compressed to a few hundred KB (gzip) or KB (zstd), to a 1 MiB
    limit: refused naming the limit, and the server's RSS stays far below what it inflates to."""
    s = limited
    zeros = b"\x00" * (256 << 20)
    bomb = gzip.compress(zeros, compresslevel=9) if codec == "gzip" else _zstd(zeros)
    del zeros
    base = memory(s.proc.pid)[0]
    t0 = time.monotonic()
    status, _, body = http_request(s.http_port, "POST", "/v1development/profiles", body=bomb,
                                   headers={"Content-Type": "application/x-protobuf", "Content-Encoding": codec})
    assert time.monotonic() - t0 < 10
    assert status == 413, f"{codec} bomb answered {status}: {body[:200]!r}"
    assert b"1048576" in body, body[:300]
    assert memory(s.proc.pid)[0] - base < 32 << 20
    assert http_request(s.http_port, "GET", "/ready")[0] == 200


def test_zstd_bomb_over_grpc_is_resource_exhausted(limited, tmp_path):
    s = limited
    bomb = _zstd(b"\x00" * (256 << 20))
    p = tmp_path / "bomb.bin"
    p.write_bytes(grpc_frame(bomb, compressed=True))
    base = memory(s.proc.pid)[0]
    r = curl("--http2-prior-knowledge", "-sS", "-o", "/dev/null", "-D", "-", "-H", "content-type: application/grpc",
             "-H", "te: trailers", "-H", "grpc-encoding: zstd", "--data-binary", f"@{p}",
             f"http://127.0.0.1:{s.grpc_port}{PROFILES_METHOD}")
    assert r.returncode == 0, r.stderr
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in r.stdout.splitlines() if ":" in line)}
    assert headers.get("grpc-status") == "8", f"zstd bomb: {r.stdout}"  # RESOURCE_EXHAUSTED
    assert memory(s.proc.pid)[0] - base < 32 << 20


def test_pyroscope_ingest_gzip_bomb_is_refused(limited):
    s = limited
    bomb = gzip.compress(b"\x00" * (64 << 20), compresslevel=9)
    status, _, body = http_request(s.http_port, "POST", "/ingest?name=bomb&format=pprof", body=bomb,
                                   headers={"Content-Type": "application/octet-stream"})
    assert status in (400, 413), f"gzip pprof bomb answered {status}: {body[:200]!r}"
    assert http_request(s.http_port, "GET", "/ready")[0] == 200


def _trace_body_of_size(size):
    req = trace_request([b"\x01" * 8])
    kv = req.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key = "pad"
    pad = size - req.ByteSize()
    while True:
        kv.value.string_value = "x" * pad
        got = req.ByteSize()
        if got == size:
            return req.SerializeToString()
        pad += size - got


@pytest.mark.parametrize("gz", [False, True], ids=["identity", "gzip"])
def test_http_body_just_under_and_just_over_the_limit(limited, gz):
    """OTLP/HTTP: a body of exactly --max-recv-msg-size is accepted, one byte more is 413 naming the
    limit; with gzip the limit applies to the inflated size."""
    s = limited
    for size, want in ((LIMIT - 1, 200), (LIMIT, 200), (LIMIT + 1, 413)):
        body = _trace_body_of_size(size)
        headers = {"Content-Type": "application/x-protobuf"}
        if gz:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        status, _, resp = http_request(s.http_port, "POST", "/v1/traces", body=body, headers=headers)
        assert status == want, f"{size} bytes{' (gzip)' if gz else ''}: {status} {resp[:200]!r}"
        if want == 413:
            assert b"1048576" in resp, resp[:300]


def test_every_truncation_point_of_a_real_request_gets_an_answer(spanprof):
    """A real OTLP profiles request cut after every byte, three ways: as a complete but short
    OTLP/HTTP body, as a short gRPC message, and as an HTTP/1.1 body that stops mid-transfer
    (Content-Length promises more, then the client closes). The first two get an answer each (400
    / INVALID_ARGUMENT naming the problem, or 200 when the cut falls between fields): no hang, no
    crash. The third leaves nothing behind (in-flight bytes back to 0)."""
    s = spanprof
    body = cpu_profile_request(samples_per_profile=3)[0].SerializeToString()
    statuses = {}
    conn = None
    import http.client
    for cut in range(len(body)):
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        conn.request("POST", "/v1development/profiles", body=body[:cut],
                     headers={"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        data = resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        assert resp.status in (200, 400), f"cut at {cut}/{len(body)}: {resp.status} {data[:200]!r}"
        if resp.status == 400:
            assert len(data) > 10, f"cut at {cut}: 400 without a message"
        if resp.getheader("connection", "").lower() == "close":
            conn.close()
            conn = None
    assert statuses.get(400, 0) > len(body) // 2, f"most cuts should be refused: {statuses}"

    codes = {}
    with grpc.insecure_channel(s.grpc_target) as ch:
        call = raw_unary(ch, PROFILES_METHOD)
        for cut in range(len(body)):
            try:
                call(body[:cut], timeout=RPC_TIMEOUT)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
                assert e.details(), f"cut at {cut}: {code} without a message"
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), f"cut at {cut}: {code}"
            codes[code] = codes.get(code, 0) + 1
    assert codes.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > len(body) // 2, codes

    head = (b"POST /v1development/profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    for cut in range(len(body)):
        with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as sock:
            sock.sendall(head + body[:cut])
    deadline = time.monotonic() + 10
    while scrape(s.http_port).inflight() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scrape(s.http_port).inflight() == 0
    assert http_request(s.http_port, "GET", "/ready")[0] == 200


# ---- backpressure and crashes ------------------------------------------------------------------


def test_overload_loses_nothing_acknowledged_and_recovers(spanprof_factory):
    """64 concurrent exports into one worker with a one-slot queue: some are RESOURCE_EXHAUSTED
    (with the OTLP retry signal), every acknowledged one is stored in full, no refused one is stored
    at all, and as soon as the burst is over single exports succeed again without a restart."""
    s = spanprof_factory(["--queue-size", "1", "--workers", "1"])
    t0 = time.time_ns() - 60_000_000_000
    reqs = {}
    for i in range(64):
        svc = f"overload-{i}"
        reqs[svc] = cpu_profile_request(samples_per_profile=2000, service=svc, start_ns=t0, extra_stacks=50)[0]
    results = {}
    with grpc.insecure_channel(s.grpc_target) as ch:
        stub = profiles_stub(ch)
        futures = {svc: stub.Export.future(r, timeout=60) for svc, r in reqs.items()}
        for svc, f in futures.items():
            try:
                f.result()
                results[svc] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                results[svc] = e.code()
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    md = dict(e.trailing_metadata() or ())
                    assert "retry" in (e.details() or "").lower() or "grpc-status-details-bin" in md, (
                        f"RESOURCE_EXHAUSTED without retry information: {e.details()!r} {md}")
    acked = [svc for svc, c in results.items() if c == grpc.StatusCode.OK]
    refused = [svc for svc, c in results.items() if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert acked and refused, f"not an overload: {sorted(set(results.values()), key=str)}"
    assert len(acked) + len(refused) == len(reqs), set(results.values())

    # Recovers on its own: the next exports succeed within a few seconds.
    deadline = time.monotonic() + 10
    with grpc.insecure_channel(s.grpc_target) as ch:
        for _ in range(5):
            while True:
                try:
                    profiles_stub(ch).Export(cpu_profile_request(service="after")[0], timeout=RPC_TIMEOUT)
                    break
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline, e
                    time.sleep(0.1)
    assert scrape(s.http_port).inflight() == 0

    res = connect_json(s, "SelectSeries", Window(t0).json(
        profileTypeID=CPU, labelSelector='{service_name=~"overload-.*"}', step=3600, groupBy=["service_name"]))
    stored = {}
    for ser in res.get("series", []):
        svc = {lb["name"]: lb["value"] for lb in ser["labels"]}["service_name"]
        stored[svc] = sum(int(p["value"]) for p in ser["points"])
    lost = [svc for svc in acked if stored.get(svc) != request_total(reqs[svc])]
    assert not lost, f"acknowledged but not stored in full: {[(v, stored.get(v)) for v in lost[:5]]}"
    ghosts = [svc for svc in refused if svc in stored]
    assert not ghosts, f"refused with RESOURCE_EXHAUSTED but stored (a retry would double them): {ghosts[:5]}"


def _stored_spans(data_dir):
    db = sqlite3.connect(f"file:{data_dir / 'spanprof.db'}?mode=ro", uri=True)
    try:
        return {bytes(t): n for t, n in db.execute("SELECT trace_id, count(*) FROM span GROUP BY trace_id")}
    finally:
        db.close()


def test_kill_9_during_trace_ingest_loses_no_acknowledged_span(spanprof_factory):
    """test_durability.py for spans: a client exports traces (a unique trace id, 1-20 spans each)
    while the binary is SIGKILLed at a random moment, three times; every acknowledged trace has all
    its spans in the SQLite file afterwards, and no trace is stored in part."""
    import random
    rng = random.Random(99)
    acked, sent = {}, {}
    server = None
    for rnd in range(3):
        server = spanprof_factory(name="spancrash")
        stop = threading.Event()

        def client():
            i = 0
            with grpc.insecure_channel(server.grpc_target) as ch:
                call = raw_unary(ch, TRACES_METHOD, trace_service_pb2.ExportTraceServiceResponse)
                while not stop.is_set():
                    trace_id = rng.randbytes(16)
                    n = rng.randint(1, 20)
                    req = trace_request([rng.randbytes(8) for _ in range(n)], trace_id=trace_id,
                                        service=f"crash-{rnd}")
                    sent[trace_id] = n
                    try:
                        resp = call(req.SerializeToString(), timeout=RPC_TIMEOUT)
                    except grpc.RpcError:
                        return
                    assert resp.partial_success.rejected_spans == 0
                    acked[trace_id] = n
                    i += 1

        t = threading.Thread(target=client)
        t.start()
        time.sleep(rng.uniform(0.3, 1.0))
        kill_hard(server)
        stop.set()
        t.join(timeout=30)
        assert not t.is_alive()
    assert len(acked) > 3, "hardly anything was acknowledged; the test proves nothing"
    final = spanprof_factory(name="spancrash")  # opens (and recovers) the same data directory
    final.stop()
    stored = _stored_spans(final.data_dir)
    missing = [(t.hex(), n, stored.get(t, 0)) for t, n in acked.items() if stored.get(t, 0) != n]
    assert not missing, f"acknowledged traces not stored in full after kill -9: {missing[:5]}"
    partial = [(t.hex(), stored[t], sent.get(t)) for t in stored if stored[t] != sent.get(t)]
    assert not partial, f"traces stored in part: {partial[:5]}"
