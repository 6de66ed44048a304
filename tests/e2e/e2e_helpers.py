"""Shared helpers for the end-to-end tests: request builders, wire encoders, metrics parsing.

Everything here talks to the server only through real clients (grpcio, the OTel SDK, http.client,
curl) or raw sockets for the malformed-input tests; nothing imports project code.
"""

import base64
import gzip
import http.client
import json
import re
import socket
import struct
import subprocess
import time

import grpc
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2,
    profiles_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

PROFILES_METHOD = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DEFAULT_MAX_MSG = 64 * 1024 * 1024

# Every client call carries a deadline so that a server that hangs fails the test instead of
# hanging the suite.
RPC_TIMEOUT = 20.0


# ---------------------------------------------------------------------------------------------
# Profiles (opentelemetry.proto.profiles.v1development, proto v1.10/1.11 layout)
# ---------------------------------------------------------------------------------------------


class _Dict:
    """Builds a ProfilesDictionary the way the eBPF profiler does: every table starts with its
    zero value (index 0 = "not set"), strings and attributes are de-duplicated."""

    def __init__(self):
        self.d = profiles_pb2.ProfilesDictionary()
        self.d.string_table.append("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add()
        self.d.attribute_table.add()
        self.d.stack_table.add()
        self._strings = {"": 0}
        self._attrs = {}

    def s(self, text):
        if text not in self._strings:
            self._strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self._strings[text]

    def attr(self, key, value):
        k = (key, type(value).__name__, value)
        if k not in self._attrs:
            kv = self.d.attribute_table.add()
            kv.key_strindex = self.s(key)
            if isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = value
            self._attrs[k] = len(self.d.attribute_table) - 1
        return self._attrs[k]

    def function(self, name, filename):
        f = self.d.function_table.add()
        f.name_strindex = self.s(name)
        f.filename_strindex = self.s(filename)
        return len(self.d.function_table) - 1

    def mapping(self, path):
        m = self.d.mapping_table.add()
        m.memory_start = 0x400000
        m.memory_limit = 0x800000
        m.filename_strindex = self.s(path)
        return len(self.d.mapping_table) - 1

    def location(self, mapping_index, address, function_index, line):
        loc = self.d.location_table.add()
        loc.mapping_index = mapping_index
        loc.address = address
        ln = loc.lines.add()
        ln.function_index = function_index
        ln.line = line
        loc.attribute_indices.append(self.attr("profile.frame.type", "native"))
        return len(self.d.location_table) - 1

    def stack(self, location_indices):
        st = self.d.stack_table.add()
        st.location_indices.extend(location_indices)
        return len(self.d.stack_table) - 1

    def link(self, trace_id, span_id):
        ln = self.d.link_table.add()
        ln.trace_id = trace_id
        ln.span_id = span_id
        return len(self.d.link_table) - 1


def _resource(pid, service):
    res = resource_pb2.Resource()
    for key, val in (("process.pid", pid), ("service.name", service)):
        kv = res.attributes.add()
        kv.key = key
        if isinstance(val, int):
            kv.value.int_value = val
        else:
            kv.value.string_value = val
    return res


def cpu_profile_request(n_profiles=1, samples_per_profile=4, pid=4242, service="e2e-svc",
                        start_ns=None, stack_depth=3, extra_stacks=0):
    """An ExportProfilesServiceRequest shaped like the eBPF profiler's CPU profile.

    sample_type = (samples, count), period_type = (cpu, nanoseconds), period = 1e9/20 Hz; each
    sample carries timestamps only, plus thread.id / thread.name attributes. Returns
    (request, dictionary builder).
    """
    if start_ns is None:
        start_ns = time.time_ns() - 5_000_000_000
    dic = _Dict()
    mapping = dic.mapping("/usr/bin/e2e-app")
    funcs = [dic.function(f"func_{i}", "app.c") for i in range(stack_depth + extra_stacks)]
    locs = [dic.location(mapping, 0x401000 + 16 * i, f, 10 + i) for i, f in enumerate(funcs)]
    stacks = [dic.stack(locs[i:i + stack_depth]) for i in range(1 + extra_stacks)]

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    rp.resource.CopyFrom(_resource(pid, service))
    sp = rp.scope_profiles.add()
    sp.scope.name = "go.opentelemetry.io/ebpf-profiler"
    sp.scope.version = "v0.0.202618"
    sp.schema_url = "https://opentelemetry.io/schemas/1.37.0"
    for p in range(n_profiles):
        prof = sp.profiles.add()
        prof.sample_type.type_strindex = dic.s("samples")
        prof.sample_type.unit_strindex = dic.s("count")
        prof.period_type.type_strindex = dic.s("cpu")
        prof.period_type.unit_strindex = dic.s("nanoseconds")
        prof.period = 1_000_000_000 // 20
        prof.time_unix_nano = start_ns
        prof.duration_nano = 5_000_000_000
        prof.profile_id = bytes([p + 1]) * 16
        for i in range(samples_per_profile):
            s = prof.samples.add()
            s.stack_index = stacks[i % len(stacks)]
            tid = 1000 + (i % 2)
            s.attribute_indices.extend([dic.attr("thread.id", tid),
                                        dic.attr("thread.name", f"worker-{tid}")])
            s.timestamps_unix_nano.extend([start_ns + 50_000_000 * i, start_ns + 50_000_000 * i + 1])
    req.dictionary.CopyFrom(dic.d)
    return req, dic


def profiles_stub(channel):
    return profiles_service_pb2_grpc.ProfilesServiceStub(channel)


def traces_stub(channel):
    return trace_service_pb2_grpc.TraceServiceStub(channel)


def raw_unary(channel, method, response_cls=None):
    """A grpcio unary call that sends the given bytes as the message verbatim."""
    return channel.unary_unary(
        method,
        request_serializer=lambda b: b,
        response_deserializer=(response_cls.FromString if response_cls else (lambda b: b)),
    )


# ---------------------------------------------------------------------------------------------
# Protobuf wire encoding by hand (for the v1.8/v1.9 Sample layout the python classes lack)
# ---------------------------------------------------------------------------------------------


def varint(n):
    if n < 0:
        n += 1 << 64  # int32/int64 negatives are 10-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire_type):
    return varint((field << 3) | wire_type)


def ld(field, payload):
    """A length-delimited field (wire type 2)."""
    return tag(field, 2) + varint(len(payload)) + payload


def packed_varints(field, values):
    return ld(field, b"".join(varint(v) for v in values)) if values else b""


def packed_fixed64(field, values):
    return ld(field, b"".join(struct.pack("<Q", v) for v in values)) if values else b""


def sample_new_layout(stack_index, attribute_indices, link_index, values, timestamps):
    """Sample in the proto v1.10/1.11 numbering: stack 1, attrs 2, link 3, values 4, ts 5."""
    out = b""
    if stack_index:
        out += tag(1, 0) + varint(stack_index)
    out += packed_varints(2, attribute_indices)
    if link_index:
        out += tag(3, 0) + varint(link_index)
    out += packed_varints(4, values)
    out += packed_fixed64(5, timestamps)
    return out


def sample_old_layout(stack_index, attribute_indices, link_index, values, timestamps):
    """Sample in the proto v1.8/1.9 numbering: stack 1, values 2, attrs 3, link 4, ts 5."""
    out = b""
    if stack_index:
        out += tag(1, 0) + varint(stack_index)
    out += packed_varints(2, values)
    out += packed_varints(3, attribute_indices)
    if link_index:
        out += tag(4, 0) + varint(link_index)
    out += packed_fixed64(5, timestamps)
    return out


def encode_request_with_raw_samples(req, raw_samples_per_profile):
    """Serializes an ExportProfilesServiceRequest whose profiles' samples are given as raw Sample
    bytes (one list per profile, in order). The request's own samples are ignored. Nested
    messages are rebuilt bottom-up; protobuf allows a message's fields in any order."""
    it = iter(raw_samples_per_profile)
    rps = b""
    for rp in req.resource_profiles:
        rp_head = profiles_pb2.ResourceProfiles()
        rp_head.CopyFrom(rp)
        del rp_head.scope_profiles[:]
        scopes = b""
        for sp in rp.scope_profiles:
            sp_head = profiles_pb2.ScopeProfiles()
            sp_head.CopyFrom(sp)
            del sp_head.profiles[:]
            profs = b""
            for prof in sp.profiles:
                p_head = profiles_pb2.Profile()
                p_head.CopyFrom(prof)
                del p_head.samples[:]
                body = p_head.SerializeToString() + b"".join(ld(2, s) for s in next(it))
                profs += ld(2, body)
            scopes += ld(2, sp_head.SerializeToString() + profs)
        rps += ld(1, rp_head.SerializeToString() + scopes)
    return rps + ld(2, req.dictionary.SerializeToString())


# ---------------------------------------------------------------------------------------------
# Traces built by hand (for invalid items the SDK cannot produce)
# ---------------------------------------------------------------------------------------------


def trace_request(span_ids, trace_id=b"\x01" * 16, service="e2e-svc", pid=4242):
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.CopyFrom(_resource(pid, service))
    ss = rs.scope_spans.add()
    ss.scope.name = "e2e"
    now = time.time_ns()
    for i, sid in enumerate(span_ids):
        sp = ss.spans.add()
        sp.trace_id = trace_id
        sp.span_id = sid
        sp.name = f"op-{i}"
        sp.kind = trace_pb2.Span.SPAN_KIND_SERVER
        sp.start_time_unix_nano = now - 100_000_000
        sp.end_time_unix_nano = now
        kv = sp.attributes.add()
        kv.key = "thread.id"
        kv.value.int_value = 1000
    return req


# ---------------------------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------------------------


def http_request(port, method, path, body=None, headers=None, timeout=RPC_TIMEOUT, host="127.0.0.1",
                 context=None):
    """One HTTP/1.1 request on a fresh connection (HTTPS when an ssl context is given); returns
    (status, headers dict lower-case, body)."""
    if context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def post_protobuf(port, path, payload, gzip_body=False, content_type="application/x-protobuf",
                  extra_headers=None):
    headers = {"Content-Type": content_type}
    if gzip_body:
        payload = gzip.compress(payload)
        headers["Content-Encoding"] = "gzip"
    headers.update(extra_headers or {})
    return http_request(port, "POST", path, body=payload, headers=headers)


# OTLP JSON ("JSON Protobuf Encoding"): protojson's names and numbers, but trace, span and
# profile ids as hex where json_format writes base64.
OTLP_HEX_IDS = {"traceId", "spanId", "parentSpanId", "profileId"}


def _ids_to_hex(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in OTLP_HEX_IDS and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                _ids_to_hex(v)
    elif isinstance(node, list):
        for v in node:
            _ids_to_hex(v)
    return node


def otlp_json(msg, enums_as_ints=True):
    """An OTLP request message as OTLP/HTTP JSON exporters write it: lowerCamelCase, 64-bit
    integers as strings, bytes base64 except the ids (hex), enums as integers."""
    from google.protobuf import json_format
    d = json_format.MessageToDict(msg, use_integers_for_enums=enums_as_ints)
    return json.dumps(_ids_to_hex(d)).encode()


def post_json(port, path, body, gzip_body=False, extra_headers=None):
    """POSTs OTLP/HTTP JSON (bytes, or a message encoded with otlp_json); (status, headers, body)."""
    if not isinstance(body, (bytes, bytearray)):
        body = otlp_json(body)
    return post_protobuf(port, path, bytes(body), gzip_body=gzip_body,
                         content_type="application/json", extra_headers=extra_headers)


def curl(*args, timeout=30):
    """Runs curl; returns CompletedProcess (stdout/stderr as text)."""
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args],
                          capture_output=True, text=True, timeout=timeout + 10)


# ---------------------------------------------------------------------------------------------
# Prometheus text parsing
# ---------------------------------------------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Returns a list of (name, {label: value}, float value). Raises on malformed sample lines,
    because Prometheus would refuse such a scrape too."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise AssertionError(f"malformed metrics line: {line!r}")
        labels = dict(_LABEL_RE.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples = parse_metrics(text)

    def series(self, name, endpoint_contains=None, **labels):
        res = []
        for n, lab, v in self.samples:
            if n != name:
                continue
            if endpoint_contains is not None and endpoint_contains not in lab.get("endpoint", "").lower():
                continue
            if any(lab.get(k) != str(want) for k, want in labels.items()):
                continue
            res.append((lab, v))
        return res

    def total(self, name, endpoint_contains=None, **labels):
        """Sum over every series of `name` whose endpoint label contains `endpoint_contains`
        (case-insensitive) and whose other labels equal `labels`. The endpoint label's exact
        values are the server's choice; every OTLP endpoint is expected to name its signal
        ("trace" / "profile")."""
        return sum(v for _, v in self.series(name, endpoint_contains, **labels))

    def inflight(self):
        """In-flight requests, leaving out the scrape itself (GET /metrics is in flight while it
        renders)."""
        return sum(v for lab, v in self.series("spanprof_inflight_requests")
                   if "metrics" not in lab.get("endpoint", ""))


def scrape(port, context=None):
    status, headers, body = http_request(port, "GET", "/metrics", context=context)
    assert status == 200, f"/metrics answered {status}: {body[:300]!r}"
    return Metrics(body.decode("utf-8"))


def wait_for_metric(port, predicate, timeout=10.0, context=None):
    """Accepted counters may be updated by the worker right after the answer is sent: poll."""
    deadline = time.monotonic() + timeout
    m = scrape(port, context)
    while not predicate(m) and time.monotonic() < deadline:
        time.sleep(0.05)
        m = scrape(port, context)
    return m


# ---------------------------------------------------------------------------------------------
# Raw HTTP/2 (RFC 9113) frames for the malformed-input tests
# ---------------------------------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_DATA, FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS = 0x0, 0x1, 0x3, 0x4
FRAME_PING, FRAME_GOAWAY, FRAME_WINDOW_UPDATE = 0x6, 0x7, 0x8
FLAG_END_STREAM, FLAG_END_HEADERS, FLAG_ACK = 0x1, 0x4, 0x1


def h2_frame(ftype, flags, stream_id, payload, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


def _hpack_int(value, prefix_bits, first_byte_flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(headers):
    """HPACK (RFC 7541 §6.2.2) literal header fields without indexing, new names, no Huffman."""
    out = b""
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value
    return out


def grpc_request_headers(port, path, encoding=None):
    hs = [(":method", "POST"), (":scheme", "http"), (":path", path),
          (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"), ("te", "trailers")]
    if encoding:
        hs.append(("grpc-encoding", encoding))
    return hpack_literal(hs)


def grpc_frame(message, compressed=False, length=None):
    n = len(message) if length is None else length
    return bytes([1 if compressed else 0]) + struct.pack(">I", n) + message


class RawH2:
    """A plaintext HTTP/2 connection on a raw socket; reads frames without decoding HPACK."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def start(self):
        self.send(H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, b""))

    def read_frame(self):
        """Next frame as (type, flags, stream, payload); None on orderly close or reset.
        Raises socket.timeout when the server sends nothing."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload = self.buf[9:9 + n]
        self.buf = self.buf[9 + n:]
        if ftype == FRAME_SETTINGS and not flags & FLAG_ACK:
            try:
                self.send(h2_frame(FRAME_SETTINGS, FLAG_ACK, 0, b""))
            except OSError:
                pass
        return ftype, flags, sid, payload

    def frames_until_closed(self, stop=None):
        """Reads frames until the server closes, or until stop(frame) is true."""
        frames = []
        while True:
            f = self.read_frame()
            if f is None:
                return frames, True
            frames.append(f)
            if stop and stop(f):
                return frames, False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def goaway_code(frame):
    return int.from_bytes(frame[3][4:8], "big")


def established_client_ports(server_port):
    """Local ports of the ESTABLISHED loopback TCP connections to `server_port` (from /proc/net/tcp
    and tcp6: grpcio uses v4-mapped IPv6 sockets), to tell whether a client kept its connection or
    opened a new one. The server's own accepted sockets have `server_port` as local port, not remote."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, state = parts[1], parts[2], parts[3]
                    if state == "01" and int(remote.split(":")[1], 16) == server_port:
                        ports.add(int(local.split(":")[1], 16))
        except FileNotFoundError:
            pass
    return ports
