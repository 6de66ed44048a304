"""Memory stays bounded when clients send many large, unfinished requests at once.

DESIGN.md: "bounded queues ... never an unbounded buffer". Every single request may be as large
as --max-recv-msg-size (64 MiB), so the bound must hold across requests: one connection with 100
HTTP/2 streams, or 40 HTTP/1.1 connections, each announcing a 60 MiB message and sending as fast as
the server lets them, must not make the server buffer a gigabyte. A bounded server stops granting
HTTP/2 flow-control credit or stops reading sockets (the client stalls), or refuses the excess
requests (RST_STREAM / RESOURCE_EXHAUSTED / 429 / 503); either way its RSS stays well below what
was offered.
"""

import socket
import struct
import time

import pytest

from e2e_helpers import (
    FLAG_ACK,
    FLAG_END_HEADERS,
    FRAME_DATA,
    FRAME_GOAWAY,
    FRAME_HEADERS,
    FRAME_RST_STREAM,
    FRAME_SETTINGS,
    FRAME_WINDOW_UPDATE,
    H2_PREFACE,
    PROFILES_METHOD,
    grpc_frame,
    grpc_request_headers,
    h2_frame,
    http_request,
)

pytestmark = pytest.mark.slow

OFFER = 1 << 30          # bytes the client tries to push in total
RSS_BUDGET = 512 << 20   # server RSS growth we accept (generous: includes allocator slack)
WALL = 20.0              # seconds the client keeps trying
STALL = 2.0              # seconds without progress = the server is pushing back


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def flood_h2(port, pid, nstreams=100):
    """Pushes DATA on `nstreams` unfinished gRPC streams as fast as HTTP/2 flow control allows.
    Returns (bytes sent, peak server RSS growth, how it ended)."""
    base = rss_bytes(pid)
    peak = 0
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, b""))
    hdr = grpc_request_headers(port, PROFILES_METHOD)
    init_win, conn_win = 65535, 65535
    win = {}
    for i in range(nstreams):
        sid = 1 + 2 * i
        s.sendall(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, sid, hdr))
        win[sid] = None  # None = still at the initial window, first DATA not sent yet
    chunk = b"\x00" * 16384
    buf = b""
    sent = 0
    t0 = last_progress = time.monotonic()
    how = "offer exhausted"
    s.setblocking(False)
    try:
        while sent < OFFER:
            now = time.monotonic()
            if now - t0 > WALL:
                how = "wall time"
                break
            if now - last_progress > STALL:
                how = "server stopped granting credit"
                break
            try:
                data = s.recv(1 << 20)
                if not data:
                    how = "server closed the connection"
                    break
                buf += data
            except BlockingIOError:
                pass
            except ConnectionResetError:
                how = "server reset the connection"
                break
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n = int.from_bytes(buf[:3], "big")
                ftype, flags = buf[3], buf[4]
                sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9:9 + n], buf[9 + n:]
                if ftype == FRAME_SETTINGS and not flags & FLAG_ACK:
                    for i in range(0, len(payload), 6):
                        key, val = struct.unpack(">HI", payload[i:i + 6])
                        if key == 0x4:  # SETTINGS_INITIAL_WINDOW_SIZE applies to open streams too
                            for k in win:
                                if win[k] is not None:
                                    win[k] += val - init_win
                            init_win = val
                    s.setblocking(True)
                    s.sendall(h2_frame(FRAME_SETTINGS, FLAG_ACK, 0, b""))
                    s.setblocking(False)
                elif ftype == FRAME_WINDOW_UPDATE:
                    inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                    if sid == 0:
                        conn_win += inc
                    elif sid in win:
                        win[sid] = (init_win if win[sid] is None else win[sid]) + inc
                elif ftype == FRAME_RST_STREAM or (ftype == FRAME_HEADERS and flags & 0x1):
                    win.pop(sid, None)  # refused or answered: a bounded server may do this
                elif ftype == FRAME_GOAWAY:
                    how = "GOAWAY"
            if not win:
                how = "every stream refused or answered"
                break
            progressed = False
            for sid in list(win):
                w = init_win if win[sid] is None else win[sid]
                if w < len(chunk) or conn_win < len(chunk):
                    continue
                payload = chunk
                if win[sid] is None:  # gRPC prefix: a 60 MiB message follows
                    payload = grpc_frame(b"", length=60 << 20) + chunk[5:]
                s.setblocking(True)
                try:
                    s.sendall(h2_frame(FRAME_DATA, 0, sid, payload))
                except OSError:
                    how = "server closed the connection"
                    sent = OFFER
                    break
                finally:
                    s.setblocking(False)
                win[sid] = w - len(chunk)
                conn_win -= len(chunk)
                sent += len(chunk)
                progressed = True
            if progressed:
                last_progress = time.monotonic()
                peak = max(peak, rss_bytes(pid) - base)
            else:
                time.sleep(0.002)
        time.sleep(0.3)
        peak = max(peak, rss_bytes(pid) - base)
    finally:
        s.close()
    return sent, peak, how


def test_many_unfinished_h2_streams_do_not_exhaust_memory(spanprof):
    sent, peak, how = flood_h2(spanprof.grpc_port, spanprof.proc.pid)
    assert peak < RSS_BUDGET, (f"server RSS grew by {peak >> 20} MiB while one connection pushed {sent >> 20} MiB "
                               f"into 100 unfinished streams (ended: {how})")
    assert http_request(spanprof.http_port, "GET", "/ready")[0] == 200


def test_many_unfinished_http11_bodies_do_not_exhaust_memory(spanprof):
    pid = spanprof.proc.pid
    base = rss_bytes(pid)
    conns = []
    chunk = b"\x00" * (1 << 20)
    sent, peak, how = 0, 0, "offer exhausted"
    try:
        for _ in range(40):
            c = socket.create_connection(("127.0.0.1", spanprof.http_port), timeout=10)
            c.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: %d\r\n\r\n" % (60 << 20))
            c.settimeout(0.5)  # a bounded server stops reading: sends then block
            conns.append(c)
        t0 = time.monotonic()
        while sent < OFFER and time.monotonic() - t0 < WALL and conns:
            for c in list(conns):
                try:
                    c.sendall(chunk)
                    sent += len(chunk)
                except socket.timeout:
                    how = "server stopped reading"
                    conns.remove(c)
                except OSError:
                    how = "server closed a connection"
                    conns.remove(c)
            peak = max(peak, rss_bytes(pid) - base)
        time.sleep(0.3)
        peak = max(peak, rss_bytes(pid) - base)
    finally:
        for c in conns:
            c.close()
    assert peak < RSS_BUDGET, (f"server RSS grew by {peak >> 20} MiB while 40 connections pushed {sent >> 20} MiB "
                               f"of unfinished bodies (ended: {how})")
    assert http_request(spanprof.http_port, "GET", "/ready")[0] == 200
