"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/). Run from the repo root
with the e2e virtualenv: .venv/bin/python tests/fuzz/make_corpus.py [target ...] (needs the zstd
CLI; no target = all of them; gzip seeds differ on every run by their timestamp).
Seeds are small valid inputs, so the fuzzers start from real shapes: the eBPF profiler's CPU
profile in the v1.10 and v1.9 layouts, with links and reference-form resource attributes,
SDK-like spans, Grafana's label selectors and Connect JSON queries, request heads, and HTTP/1.1
and HTTP/2 byte streams as curl, Grafana and gRPC clients send them."""

import base64
import json
import gzip
import struct
import subprocess
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from opentelemetry.proto.profiles.v1development import profiles_pb2  # noqa: E402

from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402

from e2e_helpers import (  # noqa: E402
    cpu_profile_request,
    encode_request_with_raw_samples,
    ld,
    otlp_json as otlp_json_body,
    sample_old_layout,
    tag,
    trace_request,
    varint,
)


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def frame(msg, compressed=False):
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(msg)) + msg


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True).stdout


def profiles():
    req, _ = cpu_profile_request(n_profiles=1, samples_per_profile=3, start_ns=1_700_000_000_000_000_000)
    yield "cpu_v110", req.SerializeToString()

    req, dic = cpu_profile_request(n_profiles=2, samples_per_profile=2, start_ns=1_700_000_000_000_000_000)
    link = dic.link(b"\x11" * 16, b"\x22" * 8)
    for prof in req.resource_profiles[0].scope_profiles[0].profiles:
        prof.samples[0].link_index = link
        prof.samples[1].values.extend([5, 6])
    req.dictionary.CopyFrom(dic.d)
    yield "links_values_v110", req.SerializeToString()

    # v1.9 layout: hand-encoded samples
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=3, start_ns=1_700_000_000_000_000_000)
    link = dic.link(b"\x33" * 16, b"\x44" * 8)
    req.dictionary.CopyFrom(dic.d)
    raw = [[sample_old_layout(s.stack_index, list(s.attribute_indices), link, [7, 8],
                              list(s.timestamps_unix_nano))
            for s in req.resource_profiles[0].scope_profiles[0].profiles[0].samples]]
    yield "cpu_v19", encode_request_with_raw_samples(req, raw)

    # v1.10 reference-form resource attributes (key_strindex 3, string_value_strindex 8)
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=1, start_ns=1_700_000_000_000_000_000)
    kv = req.resource_profiles[0].resource.attributes.add()
    kv.key_strindex = dic.s("service.name")
    kv.value.string_value_strindex = dic.s("svc-from-table")
    req.dictionary.CopyFrom(dic.d)
    yield "resource_strindex", req.SerializeToString()

    # the eBPF profiler's layout since 2026-03: one ResourceProfiles per process over one
    # dictionary (decoded one resource at a time when large: otlp_decode_profiles)
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=2, start_ns=1_700_000_000_000_000_000)
    for pid in (2, 3):
        rp = req.resource_profiles.add()
        rp.CopyFrom(req.resource_profiles[0])
        kv = rp.resource.attributes.add()
        kv.key = "process.pid"
        kv.value.int_value = pid
    req.dictionary.CopyFrom(dic.d)
    yield "per_process_resources", req.SerializeToString()

    # v1.8 Profile numbering (comments 7, profile_id 8, dropped 9, format 10, payload 11, attrs 12)
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=1, start_ns=1_700_000_000_000_000_000)
    prof = req.resource_profiles[0].scope_profiles[0].profiles[0]
    s = prof.samples[0]
    old = sample_old_layout(s.stack_index, list(s.attribute_indices), 0, [], list(s.timestamps_unix_nano))
    v18 = (ld(7, b"\x01") + ld(8, b"\xab" * 16) + tag(9, 0) + varint(2) + ld(10, b"pprof")
           + ld(11, b"\xff\xfe") + ld(12, b"\x01"))
    head = profiles_pb2.Profile()
    head.CopyFrom(prof)
    head.ClearField("samples")
    head.ClearField("profile_id")
    body = head.SerializeToString() + v18 + ld(2, old)
    sp = profiles_pb2.ScopeProfiles()
    sp.CopyFrom(req.resource_profiles[0].scope_profiles[0])
    sp.ClearField("profiles")
    rp = profiles_pb2.ResourceProfiles()
    rp.CopyFrom(req.resource_profiles[0])
    rp.ClearField("scope_profiles")
    scope = sp.SerializeToString() + ld(2, body)
    yield "profile_v18", ld(1, rp.SerializeToString() + ld(2, scope)) + ld(2, dic.d.SerializeToString())


def traces():
    req = trace_request([bytes([i]) * 8 for i in range(1, 4)], trace_id=b"\x0a" * 16)
    for sp in req.resource_spans[0].scope_spans[0].spans:
        sp.start_time_unix_nano = 1_700_000_000_000_000_000
        sp.end_time_unix_nano = 1_700_000_000_100_000_000
    req.resource_spans[0].scope_spans[0].spans[1].parent_span_id = b"\x01" * 8
    ev = req.resource_spans[0].scope_spans[0].spans[2].events.add()
    ev.name = "event"
    kv = ev.attributes.add()
    kv.key = "nested"
    kv.value.array_value.values.add().kvlist_value.values.add().key = "k"
    yield "three_spans", req.SerializeToString()
    yield "bad_ids", trace_request([b"\x01\x02"], trace_id=b"\x00" * 16).SerializeToString()


def selectors():
    yield "grafana", b'{service_name="x", span_id!="", k=~"a.*"}'
    yield "empty", b"{}"
    yield "type_id", (b'process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="checkout",'
                      b'__profile_type__=~"process_cpu.*"}')
    yield "no_braces", b'service_name="frontend", span_id="0123456789abcdef"'
    yield "quoting", b'{"service.name"=\'api\', env!~`dev|test`, pod=~"web-[0-9]+\\.x\\n",}'
    yield "bare_type", b"memory:alloc_space:bytes:space:bytes"


def connect_json():
    # [message type (low 4 bits) | delivery (bits 4-5)] + body; see fuzz_connect_json.c.
    yield "merge_stacktraces", b"\x00" + (
        b'{"profileTypeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","labelSelector":"{}",'
        b'"start":"1","end":2,"maxNodes":"16"}')
    yield "merge_stacktraces_connect", b"\x10" + (
        b'{"profile_typeID":"memory:alloc_space:bytes:space:bytes","label_selector":'
        b'"{service_name=\\"api\\"}","start":1700000000000,"end":"1700000360000",'
        b'"format":"PROFILE_FORMAT_TREE","stackTraceSelector":{"callSite":[{"name":"main"}],'
        b'"goPgo":{"keepLocations":2,"aggregateCallees":true}},"spanSelector":["00f067aa0ba902b7"]}')
    yield "select_series", b"\x01" + (
        b'{"profileTypeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","labelSelector":'
        b'"{service_name=\\"x\\"}","start":"1700000000000","end":"1700000360000",'
        b'"groupBy":["service_name"],"step":15.5,"aggregation":"TIME_SERIES_AGGREGATION_TYPE_AVERAGE",'
        b'"limit":"10","exemplarType":2}')
    yield "label_values_grpc", b"\x22" + (
        b'{"name":"service_name","matchers":["{}","{k=~\\"v.*\\"}"],"start":"1","end":"2"}')
    yield "label_names_gzip", b"\x33" + b'{"matchers":[],"start":null,"end":"-1","unknown":{"x":[1]}}'
    yield "series", b"\x04" + b'{"matchers":["{service_name=\\"a\\"}"],"labelNames":["pod"]}'
    yield "diff", b"\x19" + (b'{"left":{"profileTypeID":"a:b:c:d:e","start":"1","end":"2"},'
                             b'"right":{"profileTypeID":"a:b:c:d:e","maxNodes":1e3}}')
    yield "series_response", b"\x0c" + (
        b'{"series":[{"labels":[{"name":"a","value":"b\\u00e9"}],"points":[{"value":1.5,'
        b'"timestamp":"1700000000000"},{"value":"NaN","timestamp":"2"},{"value":"-Infinity"}]}]}')
    yield "stacktraces_response", b"\x0d" + (
        b'{"flamegraph":{"names":["total","main"],"levels":[{"values":["0","10","0","0"]},'
        b'{"values":[0,10,10,1]}],"total":"10","maxSelf":"10"},"tree":"AAEC/w==","dot":"x",'
        b'"async":{"status":"ASYNC_QUERY_STATUS_FAILURE"}}')
    yield "pprof_profile", b"\x0f" + (
        b'{"sampleType":[{"type":"1","unit":"2"}],"sample":[{"locationId":["1"],"value":["5"],'
        b'"label":[{"key":"3","num":"-7"}]}],"location":[{"id":"1","line":[{"functionId":"1",'
        b'"line":"12"}]}],"function":[{"id":"1","name":"3"}],"stringTable":["","cpu",'
        b'"nanoseconds","main"],"periodType":{"type":"1","unit":"2"},"period":"10000000"}')


def request_heads():
    # Line 1 the target, "?key" a query lookup, anything else a header; see fuzz_request_head.c.
    yield "render", (b"/pyroscope/render?query=process_cpu%3Acpu%3Ananoseconds%7Bservice_name%3D"
                     b"%22x%22%7D&from=now-1h&until=now&max-nodes=1024\n?query\n?from\n"
                     b"Host: localhost:4040\nX-Scope-OrgID: tenant-a\nAccept: */*")
    yield "grpc", (b"/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export\n"
                   b"content-type: application/grpc\ngrpc-timeout: 99999999H\n"
                   b"grpc-encoding: gzip\nte: trailers")
    yield "ingest", (b"/ingest?name=my.app.cpu%7Bhost%3Dh1%2Cenv%3Dprod%7D&from=1700000000&until="
                     b"1700000010&format=folded&sampleRate=100&spyName=gospy+x\n?name\n?spyName\n"
                     b"Content-Type: multipart/form-data; boundary=XyZ\ngrpc-timeout: 100m")
    yield "escapes", b"/a%2Fb%zz%4%%41?%3D=%26&=&a&a=1&a=2\n?=\n?a\n?&\nx-scope-orgid:\nX-Scope-OrgID: t"


def h2_frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    # Literal header field without indexing, new name, no Huffman (RFC 7541 section 6.2.2).
    def s(b):
        assert len(b) < 127
        return bytes([len(b)]) + b
    return b"\x00" + s(name) + s(value)


def http_streams():
    # The raw bytes a client writes on the connection; see fuzz_http_conn.c.
    yield "h1_get", b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"
    yield "h1_pipelined", (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                           b"GET /q?x=%41%42+c HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"HEAD /ready HTTP/1.1\r\n\r\n"
                           b"GET /nope%0d%0aX:%20y HTTP/1.0\r\ncontent-type: application/grpc\r\n\r\n")
    yield "h1_chunked", (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Expect: 100-continue\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n"
                         b"Trailer: x\r\n\r\n")
    yield "h1_too_big", b"POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"z" * 64
    yield "h1_grpc", (b"POST /svc.Echo/Call HTTP/1.1\r\nContent-Type: application/grpc\r\n"
                      b"grpc-timeout: 1S\r\nContent-Length: 8\r\n\r\n\x00\x00\x00\x00\x03abc")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings = h2_frame(4, 0, 0, b"")
    ack = h2_frame(4, 1, 0, b"")
    get = h2_frame(1, 5, 1, hpack_literal(b":method", b"GET") + hpack_literal(b":scheme", b"http")
                   + hpack_literal(b":path", b"/q?x=1") + hpack_literal(b":authority", b"x"))
    yield "h2_get", preface + settings + ack + get
    grpc = h2_frame(1, 4, 3, hpack_literal(b":method", b"POST") + hpack_literal(b":scheme", b"http")
                    + hpack_literal(b":path", b"/svc.Echo/Call")
                    + hpack_literal(b"content-type", b"application/grpc")
                    + hpack_literal(b"grpc-timeout", b"5S") + hpack_literal(b"te", b"trailers"))
    data = h2_frame(0, 1, 3, b"\x00\x00\x00\x00\x02hi")
    unknown = h2_frame(1, 5, 5, hpack_literal(b":method", b"POST") + hpack_literal(b":scheme", b"http")
                       + hpack_literal(b":path", b"/unknown%0a%ff")
                       + hpack_literal(b"content-type", b"application/grpc"))
    yield "h2_grpc", preface + settings + grpc + data + unknown + h2_frame(6, 0, 0, b"\x00" * 8)
    big = h2_frame(1, 4, 1, hpack_literal(b":method", b"POST") + hpack_literal(b":scheme", b"http")
                   + hpack_literal(b":path", b"/echo"))
    yield "h2_too_big", (preface + settings + big + h2_frame(0, 0, 1, b"y" * 5000)
                         + h2_frame(3, 0, 1, b"\x00\x00\x00\x08") + h2_frame(7, 0, 0, b"\x00" * 8))


def go_profiles():
    """Go's own runtime/pprof output (tests/e2e/gopprof), when the Go toolchain is there."""
    import os
    import tempfile
    go = os.environ.get("GO", "/usr/local/go/bin/go")
    if not Path(go).exists():
        return {}
    out = Path(tempfile.mkdtemp(prefix="spanprof-corpus-"))
    subprocess.run([go, "run", "main.go", str(out)], cwd=HERE.parent / "e2e" / "gopprof", check=True,
                   stdout=subprocess.DEVNULL)
    return {name: gzip.decompress((out / f"{name}.pb.gz").read_bytes()) for name in ("cpu", "heap")}


def pprofs():
    """(name, serialized pprof): the e2e tests' payloads."""
    from test_query import pprof_bytes  # a Go-style CPU pprof with span_id labels
    yield "span_labels", pprof_bytes(1_700_000_000_000_000_000)
    for name, data in go_profiles().items():
        yield "go_" + name, data


def multipart_body(boundary, profile, config):
    """The Pyroscope Go SDK's form, as tests/e2e/test_pyroscope_ingest.py sends it."""
    b = boundary.encode()
    body = (b"--" + b + b'\r\nContent-Disposition: form-data; name="profile"; filename="profile.pprof"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + profile)
    if config is not None:
        body += (b"\r\n--" + b + b'\r\nContent-Disposition: form-data; name="sample_type_config"; '
                 b'filename="sample_type_config.json"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 + config)
    return body + b"\r\n--" + b + b"--\r\n"


def pprof_and_multipart():
    config = (b'{"alloc_space": {"units": "bytes", "aggregation": "sum", "display-name": "alloc_space_bytes"}, '
              b'"inuse_space": {"units": "bytes", "aggregation": "average"}}')
    for name, data in pprofs():
        # pprof: [options: bit 0 gzip, bit 1 name hint, bit 2 display names] + body
        write("pprof", name, b"\x00" + data)
        write("pprof", name + "_gzip", b"\x05" + gzip.compress(data))
        # multipart: Content-Type parameters, '\n', body
        if name == "go_heap":
            write("multipart", "go_sdk_heap", b"boundary=spanprof-e2e-boundary\n"
                  + multipart_body("spanprof-e2e-boundary", gzip.compress(data), config))
        elif name == "span_labels":
            write("multipart", "quoted_boundary", b'boundary="a b"; charset=x\n'
                  + multipart_body("a b", data, None))
    write("pprof", "name_hint", b"\x02" + next(pprofs())[1])


def http1_streams():
    # [read size selector: 0 = all at once, else 1..32 bytes per read] + the client's bytes
    yield "get_pipelined", b"\x01" + (b"GET /t?x=%41 HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"GET /t/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n")
    yield "post_length", b"\x07" + (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                    b"Content-Type: application/x-protobuf\r\n\r\nhello")
    yield "chunked_continue", b"\x03" + (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                         b"Expect: 100-continue\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n"
                                         b"Trailer: x\r\n\r\nGET /t HTTP/1.1\r\n\r\n")
    yield "too_big_then_more", b"\x00" + (b"POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
                                          + b"z" * 64 + b"GET /t HTTP/1.1\r\n\r\n")
    yield "http10_close", b"\x02" + b"GET /t?x=1 HTTP/1.0\r\n\r\nGET /t HTTP/1.1\r\n\r\n"
    yield "folded_header", b"\x05" + (b"POST /echo HTTP/1.1\r\nX-A: one\r\n  two\r\n"
                                      b"Content-Length: 2\r\nConnection: close\r\n\r\nokGET /t HTTP/1.1\r\n\r\n")
    ingest = (b"POST /ingest?name=goapp.cpu%7Benv%3De2e%7D&format=pprof HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x0a\x02\x08\x01")
    yield "ingest", b"\x0b" + ingest


def new_targets():
    for name, data in selectors():
        write("selector", name, data)
    for name, data in connect_json():
        write("connect_json", name, data)
    for name, data in request_heads():
        write("request_head", name, data)
    for name, data in http_streams():
        write("http_conn", name, data)
    for name, data in http1_streams():
        write("http1", name, data)
    pprof_and_multipart()


def forward_outbox_params_config():
    """Seeds of fuzz_forward ([span selector] + ExportTraceServiceRequest), fuzz_outbox ([parser]
    + input: item files as outbox.c writes them, Retry-After values, grpc-status-details-bin,
    statuses), fuzz_query_params ([parser] + input) and fuzz_config (argv joined by NUL)."""
    req = trace_request([bytes([i]) * 8 for i in range(1, 5)], trace_id=b"\x0a" * 16)
    for sp in req.resource_spans[0].scope_spans[0].spans:
        sp.start_time_unix_nano = 1_700_000_000_000_000_000
        sp.end_time_unix_nano = 1_700_000_000_100_000_000
    marked = req.resource_spans[0].scope_spans[0].spans[3].attributes.add()
    marked.key = "pyroscope.profile.id"
    marked.value.string_value = "0404040404040404"
    write("forward", "four_spans_all", bytes([0xFF]) + req.SerializeToString())
    write("forward", "four_spans_odd", bytes([0x05]) + req.SerializeToString())
    # unknown fields at every level the splice walks (numbers 50+, each wire type)
    unknown = tag(50, 0) + varint(7) + ld(51, b"keep") + tag(52, 1) + b"\x01" * 8 + tag(53, 5) + b"\x02" * 4
    span = trace_request([b"\x09" * 8]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    scope = ld(2, span + unknown) + unknown
    rs = ld(2, scope) + unknown
    write("forward", "unknown_fields", bytes([0x01]) + ld(1, rs) + unknown)
    write("forward", "empty", bytes([0x01]))

    def item(tenant, payload):
        head = b"SPOB" + struct.pack("<I", len(tenant)) + tenant + struct.pack("<Q", len(payload))
        body = head + payload
        return body + struct.pack("<I", zlib.crc32(body))

    good = item(b"tenant-a", req.SerializeToString())
    write("outbox", "item", b"\x00" + good)
    write("outbox", "item_empty_tenant", b"\x00" + item(b"", b"\x0a\x00"))
    write("outbox", "item_bad_crc", b"\x00" + good[:-1] + bytes([good[-1] ^ 1]))
    write("outbox", "item_torn", b"\x00" + good[: len(good) // 2])
    write("outbox", "retry_after_seconds", b"\x01" + b"120")
    write("outbox", "retry_after_date", b"\x01" + b"Wed, 21 Oct 2015 07:28:00 GMT")
    write("outbox", "retry_after_rfc850", b"\x01" + b"Sunday, 06-Nov-94 08:49:37 GMT")
    write("outbox", "retry_after_asctime", b"\x01" + b"Sun Nov  6 08:49:37 1994")
    dur = tag(1, 0) + varint(3) + tag(2, 0) + varint(500_000_000)
    retry = ld(1, b"type.googleapis.com/google.rpc.RetryInfo") + ld(2, ld(1, dur))
    status = tag(1, 0) + varint(8) + ld(2, b"slow down") + ld(3, retry)
    write("outbox", "retry_info", b"\x02" + base64.b64encode(status))
    write("outbox", "retry_info_unpadded", b"\x02" + base64.b64encode(status).rstrip(b"="))
    write("outbox", "http_503", b"\x03" + struct.pack("<h", 503) + b"\x0e" + b"busy")
    write("outbox", "http_connect", b"\x03" + struct.pack("<h", 400) + b"\x08" + b'{"code":"unavailable"}')

    for name, text in [("now_1h", b"now-1h30m"), ("minus_15min", b"-15min"), ("date", b"20231114"),
                       ("unix_s", b"1700000000"), ("unix_ms", b"1700000000123"),
                       ("unix_ns", b"1700000000123456789"), ("spaced", b"now - 1 hour, 2 min")]:
        write("query_params", "time_" + name, b"\x00" + text)
    write("query_params", "trace_id", b"\x01" + b"0af7651916cd43dd8448eb211c80319c")
    write("query_params", "span_id", b"\x01" + b"B7AD6B7169203331")
    write("query_params", "span_ids", b"\x02" + b"b7ad6b7169203331,00f067aa0ba902b7")
    write("query_params", "type_id", b"\x02" + b"process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta")
    names = b"\xff".join([b"main", b"handler;x", b"work\nline", b"leaf"]) + b"\x00"
    stacks = bytes([3]) + struct.pack("<i", 10) + bytes([3, 1, 0])
    stacks += bytes([2]) + struct.pack("<i", 5) + bytes([2, 0])
    stacks += bytes([1]) + struct.pack("<i", -1) + bytes([0])
    write("query_params", "folded", b"\x03" + names + stacks)

    for name, args in [
        ("defaults", []),
        ("listeners", ["--http-addr=127.0.0.1:4040", "--grpc-addr", "127.0.0.1:4317", "--workers=4"]),
        ("sizes", ["--max-recv-msg-size=16MiB", "--queue-size", "1k", "--correlation-window=90s"]),
        ("pyroscope", ["--store=sqlite,pyroscope", "--pyroscope-url=https://p.example/",
                       "--pyroscope-basic-auth-user=u", "--pyroscope-basic-auth-password-file=/f"]),
        ("forward", ["--traces-forward-to=http://tempo:4317", "--traces-forward-protocol=grpc",
                     "--forward-batch-interval=200ms", "--outbox-max-bytes=64MiB"]),
        ("tls", ["--tls-cert=c.pem", "--tls-key=k.pem", "--tls-client-ca=ca.pem", "--durability=full"]),
        ("bad_duration", ["--retention=7x"]),
        ("stray", ["serve"]),
    ]:
        write("config", name, b"\x00".join(a.encode() for a in args))


def otlp_json():
    for name, data in traces():
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(data)
        write("otlp_json", f"traces_{name}", b"\x00" + otlp_json_body(req))
    for name, data in profiles():
        if "v19" in name or "v18" in name:
            continue  # layouts of the binary encoding only
        req = profiles_service_pb2.ExportProfilesServiceRequest.FromString(data)
        write("otlp_json", f"profiles_{name}", b"\x01" + otlp_json_body(req))
    write("otlp_json", "traces_proto_names", b"\x00" + json.dumps({"resource_spans": [{"scope_spans": [{"spans": [{
        "trace_id": "5B8EFFF798038103D269B633813FC60C", "span_id": "eee19b7ec3c1b174", "parent_span_id": "",
        "kind": "SPAN_KIND_SERVER", "start_time_unix_nano": 1700000000000000000,
        "end_time_unix_nano": "1700000000500000000", "status": {"code": "STATUS_CODE_ERROR"},
        "links": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175"}],
        "attributes": [{"key": "d", "value": {"doubleValue": "Infinity"}},
                       {"key": "b", "value": {"bytesValue": "AAEC"}}]}]}]}]}).encode())
    write("otlp_json", "traces_bad_hex", b"\x00" + b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0a0"}]}]}]}')
    write("otlp_json", "profiles_base64_id", b"\x01" + b'{"resourceProfiles":[{"scopeProfiles":[{"profiles":'
          b'[{"profileId":"AQEBAQEBAQEBAQEBAQEBAQ=="}]}]}],"dictionary":{"stringTable":[""]}}')


def span_extras():
    """Blobs as otlp/span_extras.c writes them: a ResourceSpans of one resource, one scope and one
    span without ids, name or times."""
    from opentelemetry.proto.trace.v1 import trace_pb2

    for name, data in traces():
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(data)
        for rs in req.resource_spans[:1]:
            out = trace_pb2.ResourceSpans()
            out.resource.CopyFrom(rs.resource)
            ss = out.scope_spans.add()
            ss.scope.CopyFrom(rs.scope_spans[0].scope)
            sp = ss.spans.add()
            sp.CopyFrom(rs.scope_spans[0].spans[0])
            for f in ("trace_id", "span_id", "parent_span_id", "name", "start_time_unix_nano",
                      "end_time_unix_nano"):
                sp.ClearField(f)
            write("span_extras", name, out.SerializeToString())
    out = trace_pb2.ResourceSpans()
    out.resource.attributes.add(key="service.name").value.string_value = "api"
    ss = out.scope_spans.add()
    ss.scope.name, ss.scope.version = "lib", "1.0"
    sp = ss.spans.add()
    sp.kind = trace_pb2.Span.SPAN_KIND_CLIENT
    sp.status.code, sp.status.message = trace_pb2.Status.STATUS_CODE_ERROR, "bad"
    a = sp.attributes
    a.add(key="s").value.string_value = "text"
    a.add(key="i").value.int_value = -(2**60)
    a.add(key="d").value.double_value = 0.25
    a.add(key="b").value.bool_value = True
    a.add(key="raw").value.bytes_value = b"\x00\xff"
    arr = a.add(key="arr").value.array_value
    arr.values.add().int_value = 1
    arr.values.add().string_value = "x"
    kvl = a.add(key="map").value.kvlist_value
    kvl.values.add(key="k").value.double_value = 1.5
    a.add(key="unset")
    ev = sp.events.add(name="retry", time_unix_nano=1700000000000000000)
    ev.attributes.add(key="n").value.int_value = 2
    ln = sp.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    ln.attributes.add(key="why").value.string_value = "follows"
    write("span_extras", "every_type", out.SerializeToString())
    write("span_extras", "empty_span", bytes([0x12, 0x02, 0x12, 0x00]))


def otlp_hand_unpack():
    """fuzz_otlp_hand_unpack: byte 0 even + one ResourceProfiles, or odd + one ProfilesDictionary,
    as the eBPF profiler's requests hold them."""
    req, _ = cpu_profile_request(n_profiles=2, samples_per_profile=4, start_ns=1_700_000_000_000_000_000)
    write("otlp_hand_unpack", "dictionary", b"\x01" + req.dictionary.SerializeToString())
    rp = req.resource_profiles[0]
    write("otlp_hand_unpack", "cpu_v110", b"\x00" + rp.SerializeToString())
    prof = rp.scope_profiles[0].profiles[0]
    prof.samples[0].link_index = 3
    prof.samples[1].values.extend([5, -6])
    prof.samples[2].attribute_indices.extend([1, 2, 2**31 - 1])
    write("otlp_hand_unpack", "links_values", b"\x00" + rp.SerializeToString())
    # Encodings protobuf-c takes that the Python encoder never writes: unpacked repeated fields,
    # a repeated scalar, a negative int32 in 10 bytes, Samples between other Profile fields.
    sample = (tag(1, 0) + varint(5) + tag(1, 0) + varint(7) + tag(2, 0) + b"\xff" * 9 + b"\x01"
              + tag(4, 0) + varint(300) + tag(5, 1) + struct.pack("<Q", 1_700_000_000_000_000_000))
    profile = tag(3, 1) + struct.pack("<Q", 1) + ld(2, sample) + tag(6, 0) + varint(100) + ld(2, b"")
    write("otlp_hand_unpack", "unpacked_interleaved", b"\x00" + ld(2, ld(2, profile)))
    location = tag(1, 0) + varint(1) + tag(4, 0) + varint(2) + ld(3, tag(2, 0) + varint(9) + tag(1, 0) + varint(3))
    stack = tag(1, 0) + varint(4) + ld(1, varint(1) + varint(2))
    # Lengths and tags in 5 bytes (protobuf-c takes them) and in 6 (it refuses them): where the
    # decoders cut fields out, they must tell the two apart.
    long5, long6 = b"\x82\x80\x80\x80\x00", b"\x82\x80\x80\x80\x80\x00"
    write("otlp_hand_unpack", "length_5_bytes", b"\x00" + ld(2, ld(2, tag(2, 2) + long5 + tag(1, 0) + varint(5))))
    write("otlp_hand_unpack", "length_6_bytes", b"\x00" + ld(2, ld(2, tag(2, 2) + long6 + tag(1, 0) + varint(5))))
    write("otlp_hand_unpack", "dictionary_tag_6_bytes", b"\x01\xaa\x80\x80\x80\x80\x00\x01A")
    write("otlp_hand_unpack", "dictionary_unpacked_interleaved",
          b"\x01" + ld(5, b"") + ld(2, location) + ld(1, tag(1, 0) + varint(16)) + ld(7, stack) + ld(5, b"main"))


def main():
    only = set(sys.argv[1:])
    forward_outbox_params_config()
    otlp_json()
    span_extras()
    otlp_hand_unpack()
    if only:  # the corpora of the selector, connect_json, request_head, http_conn, http1, pprof and
        # multipart targets
        new_targets()
        return
    new_targets()
    msgs = list(profiles())
    for name, data in msgs:
        write("otlp_profiles", name, data)
    for name, data in traces():
        write("otlp_traces", name, data)
    small = msgs[0][1]
    # grpc_frame: [encoding selector, max selector] + body
    write("grpc_frame", "identity", bytes([0, 0x80]) + frame(small))
    write("grpc_frame", "gzip", bytes([2, 0x80]) + frame(gzip.compress(small), True))
    write("grpc_frame", "deflate", bytes([3, 0x80]) + frame(zlib.compress(small), True))
    write("grpc_frame", "zstd", bytes([4, 0x80]) + frame(zstd(small), True))
    write("grpc_frame", "gzip_small_max", bytes([2, 1]) + frame(gzip.compress(b"\x00" * 4000), True))
    write("grpc_frame", "timeout", bytes([0, 0x80]) + b"100m")
    # inflate: [codec selector (0 gzip, 1 deflate, 2 zstd, 3 identity), limit selector] + data
    write("inflate", "gzip", bytes([0, 0]) + gzip.compress(small))
    write("inflate", "gzip_two_members", bytes([0, 0]) + gzip.compress(b"ab") + gzip.compress(b"cd"))
    write("inflate", "zlib", bytes([1, 0]) + zlib.compress(small))
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    write("inflate", "raw_deflate", bytes([1, 0]) + raw.compress(small) + raw.flush())
    write("inflate", "zstd", bytes([2, 0]) + zstd(small))
    write("inflate", "bomb", bytes([0, 1]) + gzip.compress(b"\x00" * 100000))


if __name__ == "__main__":
    main()
