"""Clients for tests/e2e/test_abuse.py: a well-behaved prober that measures the server's latency
while an attack runs, the server's memory from /proc, and raw HTTP/2 and HTTP/1.1 attackers.

HTTP/2 frames are written by hand (e2e_helpers.h2_frame / hpack_literal): the attacks need frames
no well-behaved library would send (RST_STREAM right after HEADERS, CONTINUATION without end,
WINDOW_UPDATE by the hundred thousand), and nothing here needs to decode the server's HPACK.
"""

import http.client
import socket
import ssl
import threading
import time

import grpc

from e2e_helpers import (
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FRAME_GOAWAY,
    FRAME_HEADERS,
    FRAME_RST_STREAM,
    FRAME_SETTINGS,
    H2_PREFACE,
    RPC_TIMEOUT,
    cpu_profile_request,
    h2_frame,
    hpack_literal,
    profiles_stub,
)

FRAME_CONTINUATION = 0x9
# RFC 9113 section 7 error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB


def memory(pid):
    """(VmRSS, VmHWM) of a process in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) * 1024
    return out["VmRSS"], out["VmHWM"]


class Prober:
    """A well-behaved client running beside an attack: GET /ready on a fresh HTTP/1.1 connection
    (TLS when a context is given) and, without TLS, an OTLP Export on one gRPC channel, in turns,
    every `interval` seconds. Records each call's latency and any failure, and the server's peak
    RSS, so a test can say the server kept serving throughout."""

    def __init__(self, server, interval=0.05, context=None, timeout=10.0):
        self.server = server
        self.interval = interval
        self.context = context
        self.timeout = timeout
        self.latencies = []
        self.failures = []
        self.peak_rss = memory(server.proc.pid)[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ready(self):
        port = self.server.http_port
        if self.context is not None:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=self.timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            conn.request("GET", "/ready")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise AssertionError(f"GET /ready answered {resp.status}")
        finally:
            conn.close()

    def _run(self):
        channel = None if self.context is not None else grpc.insecure_channel(self.server.grpc_target)
        req = cpu_profile_request(service="prober")[0]
        i = 0
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                what = "grpc export" if channel is not None and i % 2 else "GET /ready"
                try:
                    if what == "grpc export":
                        resp = profiles_stub(channel).Export(req, timeout=self.timeout)
                        if resp.partial_success.rejected_profiles:
                            raise AssertionError(f"export rejected: {resp.partial_success}")
                    else:
                        self._ready()
                    self.latencies.append(time.monotonic() - t0)
                except Exception as e:  # noqa: BLE001 - every failure is a finding
                    self.failures.append(f"{what} after {time.monotonic() - t0:.2f}s: {e!r}"[:300])
                try:
                    self.peak_rss = max(self.peak_rss, memory(self.server.proc.pid)[0])
                except FileNotFoundError:
                    self.failures.append("the server process is gone")
                    return
                i += 1
                self._stop.wait(self.interval)
        finally:
            if channel is not None:
                channel.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def worst(self):
        return max(self.latencies) if self.latencies else float("inf")

    def p99(self):
        if not self.latencies:
            return float("inf")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(len(s) * 0.99))]

    def summary(self):
        return (f"{len(self.latencies)} probes, p99 {self.p99() * 1000:.0f} ms, worst {self.worst() * 1000:.0f} ms, "
                f"{len(self.failures)} failures {self.failures[:3]}, peak RSS {self.peak_rss >> 20} MiB")


# ---------------------------------------------------------------------------------------------
# HTTP/2 attacker
# ---------------------------------------------------------------------------------------------


def get_headers(port, path="/ready"):
    return hpack_literal([(":method", "GET"), (":scheme", "http"), (":path", path),
                          (":authority", f"127.0.0.1:{port}")])


class H2Attacker:
    """One plaintext HTTP/2 connection that writes without waiting and reads in the background,
    remembering the frames that matter to the verdict: GOAWAY (with its error code), RST_STREAM
    per error code, HEADERS answers, and whether the server closed the connection."""

    def __init__(self, port, read=True, settings=b""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.goaway = None  # error code
        self.resets = {}    # error code -> count
        self.answers = 0    # HEADERS frames from the server
        self.settings = []  # the server's SETTINGS (id, value) pairs
        self.closed = threading.Event()
        self.reset = False
        self.send_failed = False
        self.sent_bytes = 0
        self.sock.sendall(H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, settings))
        self._reader = threading.Thread(target=self._read, daemon=True) if read else None
        if self._reader:
            self._reader.start()

    def _read(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    n = int.from_bytes(buf[:3], "big")
                    ftype, flags = buf[3], buf[4]
                    payload, buf = buf[9:9 + n], buf[9 + n:]
                    if ftype == FRAME_GOAWAY:
                        self.goaway = int.from_bytes(payload[4:8], "big")
                    elif ftype == FRAME_RST_STREAM:
                        code = int.from_bytes(payload[:4], "big")
                        self.resets[code] = self.resets.get(code, 0) + 1
                    elif ftype == FRAME_HEADERS:
                        self.answers += 1
                    elif ftype == FRAME_SETTINGS and not flags & FLAG_ACK:
                        self.settings = [(int.from_bytes(payload[i:i + 2], "big"),
                                          int.from_bytes(payload[i + 2:i + 6], "big"))
                                         for i in range(0, len(payload) - 5, 6)]
                        self.send(h2_frame(FRAME_SETTINGS, FLAG_ACK, 0, b""))
        except ConnectionResetError:
            # The server closed with our flood still unread in its socket: the kernel answered
            # with a reset, which can overtake (and discard) a GOAWAY that was already on its way.
            self.reset = True
        except OSError:
            pass
        finally:
            self.closed.set()

    def send(self, data):
        """False once the server has closed the connection (the reader notices it too)."""
        try:
            self.sock.sendall(data)
            self.sent_bytes += len(data)
            return True
        except OSError:
            self.send_failed = True
            return False

    def wait_closed(self, timeout):
        if self._reader is None:
            # Not reading: the server's close shows as a reset or EOF on a read now.
            self.sock.settimeout(timeout)
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    if not self.sock.recv(1 << 20):
                        break
            except socket.timeout:
                return False
            except OSError:
                pass
            self.closed.set()
            return True
        # After a failed send the reader still has the GOAWAY (if any) to read before EOF.
        self._reader.join(timeout)
        return self.closed.is_set()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def header_block_frames(stream_id, block, frame_size=16384, end_stream=True):
    """A header block as HEADERS + CONTINUATION frames of at most frame_size bytes each."""
    chunks = [block[i:i + frame_size] for i in range(0, len(block), frame_size)] or [b""]
    out = b""
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = (FLAG_END_HEADERS if last else 0)
        if i == 0:
            out += h2_frame(FRAME_HEADERS, flags | (FLAG_END_STREAM if end_stream else 0), stream_id, c)
        else:
            out += h2_frame(FRAME_CONTINUATION, flags, stream_id, c)
    return out


# ---------------------------------------------------------------------------------------------
# Slow clients
# ---------------------------------------------------------------------------------------------


class Trickler:
    """Many connections that each send a request head one byte at a time (slowloris), or (tls)
    start a TLS handshake with part of a ClientHello and stall. Records when the server closed
    each one."""

    HEAD = (b"POST /v1development/profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 40) for i in range(200)) + b"\r\n")
    # The first bytes of a TLS 1.2+ ClientHello record: handshake, version, a length that
    # promises more than ever comes.
    HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]) + b"\x00" * 16

    # The HTTP/2 preface and a SETTINGS frame with a few entries, trickled the same way.
    H2 = H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, bytes(range(36)))

    def __init__(self, port, count, tls=False, byte_interval=0.25, payload=None):
        self.port = port
        self.tls = tls
        self.payload = payload or (self.HELLO if tls else self.HEAD)
        self.byte_interval = byte_interval
        self.socks = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.socks.append(s)
        self.opened = time.monotonic()
        self.closed_at = {}  # index -> seconds after opening
        self.sent = [0] * count

    def step(self):
        """Sends the next byte on every open connection and notes the ones the server closed."""
        payload = self.payload
        for i, s in enumerate(self.socks):
            if i in self.closed_at:
                continue
            try:
                data = s.recv(4096)
                if not data:
                    raise ConnectionResetError
            except BlockingIOError:
                pass
            except OSError:
                self.closed_at[i] = time.monotonic() - self.opened
                continue
            if self.sent[i] < len(payload):
                try:
                    s.send(payload[self.sent[i]:self.sent[i] + 1])
                    self.sent[i] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_at[i] = time.monotonic() - self.opened

    def run(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and len(self.closed_at) < len(self.socks):
            self.step()
            time.sleep(self.byte_interval)

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def tls_client_context(server):
    ctx = ssl.create_default_context(cafile=str(server.tls["ca"]))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


__all__ = [
    "CANCEL", "COMPRESSION_ERROR", "ENHANCE_YOUR_CALM", "FLOW_CONTROL_ERROR", "FRAME_CONTINUATION",
    "H2Attacker", "INTERNAL_ERROR", "NO_ERROR", "PROTOCOL_ERROR", "Prober", "REFUSED_STREAM", "RPC_TIMEOUT",
    "Trickler", "get_headers", "header_block_frames", "memory", "tls_client_context",
]
