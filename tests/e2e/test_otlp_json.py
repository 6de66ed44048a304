"""OTLP/HTTP JSON (Content-Type application/json) on POST /v1/traces and /v1development/profiles,
against the real binary over loopback.

Property: random requests (seeded) sent once as protobuf and once as OTLP JSON (the official
opentelemetry-proto classes through google.protobuf.json_format, ids turned into hex as OTLP JSON
requires) to two tenants of one server are stored alike: the same trace listings, the same
flame graphs and span profiles, and, forwarded downstream (--traces-forward-to), the same spans
field for field. Then what a client sees when JSON is wrong: 400 with a JSON google.rpc.Status
naming the field's JSON path, 415 / 401 / 413 as for protobuf, and the refusals in /metrics.
"""
import gzip
import json
import math
import random

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from e2e_helpers import (
    cpu_profile_request,
    http_request,
    otlp_json,
    post_json,
    post_protobuf,
    scrape,
    wait_for_metric,
)
from test_query import Window, merge_json, span_json
from test_trace_forward import Downstream

TRACES, PROFILES = "/v1/traces", "/v1development/profiles"


# ---- random requests ------------------------------------------------------------------------------


def rand_value(rnd, depth=0):
    v = common_pb2.AnyValue()
    kind = rnd.choice(["s", "i", "d", "b", "bytes", "arr", "kv"] if depth < 2 else ["s", "i", "d", "b"])
    if kind == "s":
        v.string_value = rnd.choice(["", "plain", "quote\" back\\slash", "tab\tnl\n", "ünï©ødé ✓", "\x01ctl"])
    elif kind == "i":
        v.int_value = rnd.choice([0, -1, 7, 2**53 + 1, -(2**63), 2**63 - 1])
    elif kind == "d":
        v.double_value = rnd.choice([0.5, -2.25, 1e308, 5e-324, 3.141592653589793, math.inf, -math.inf])
    elif kind == "b":
        v.bool_value = rnd.random() < 0.5
    elif kind == "bytes":
        v.bytes_value = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 9)))
    elif kind == "arr":
        v.array_value.values.extend(rand_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 4)))
    else:
        for i in range(rnd.randrange(0, 3)):
            v.kvlist_value.values.add(key=f"k{i}").value.CopyFrom(rand_value(rnd, depth + 1))
    return v


def rand_attrs(rnd, kvs, n):
    for i in range(n):
        kvs.add(key=f"attr.{i}").value.CopyFrom(rand_value(rnd))


def rand_id(rnd, n):
    return bytes([rnd.randrange(1, 256)]) + bytes(rnd.randrange(256) for _ in range(n - 1))


def random_traces(rnd, t0):
    """A request of 1-2 resources, each with nested spans, events, links and statuses; returns
    (request, trace ids)."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    traces = set()
    for r in range(rnd.randrange(1, 3)):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        rs.resource.attributes.add(key="process.pid").value.int_value = 100 + r
        rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "rand", "1.0"
        rand_attrs(rnd, ss.scope.attributes, rnd.randrange(0, 2))
        trace = rand_id(rnd, 16)
        traces.add(trace.hex())
        parents = [b""]
        for i in range(rnd.randrange(2, 8)):
            s = ss.spans.add()
            s.trace_id, s.span_id = trace, rand_id(rnd, 8)
            s.parent_span_id = rnd.choice(parents)
            parents.append(s.span_id)
            s.name = f"op-{r}-{i}"
            s.kind = rnd.randrange(0, 6)
            s.start_time_unix_nano = t0 + rnd.randrange(0, 10**9)
            s.end_time_unix_nano = s.start_time_unix_nano + rnd.randrange(0, 10**9)
            s.trace_state = rnd.choice(["", "vendor=x"])
            s.flags = rnd.choice([0, 0x100, 0x301])
            s.dropped_attributes_count = rnd.randrange(0, 2)
            rand_attrs(rnd, s.attributes, rnd.randrange(0, 6))
            if rnd.random() < 0.5:
                s.attributes.add(key="thread.id").value.int_value = rnd.randrange(1, 5)
            for e in range(rnd.randrange(0, 3)):
                ev = s.events.add(time_unix_nano=s.start_time_unix_nano + e, name=f"ev{e}")
                rand_attrs(rnd, ev.attributes, rnd.randrange(0, 3))
            for _ in range(rnd.randrange(0, 2)):
                ln = s.links.add(trace_id=rand_id(rnd, 16), span_id=rand_id(rnd, 8), trace_state="a=b", flags=1)
                rand_attrs(rnd, ln.attributes, 1)
            s.status.code = rnd.randrange(0, 3)
            if s.status.code == 2:
                s.status.message = "failed ✗"
    return req, traces


def spans_of(bodies):
    """Every forwarded span with its resource and scope, as comparable bytes, in arrival order."""
    out = []
    for body in bodies:
        msg = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append((rs.resource.SerializeToString(deterministic=True),
                                ss.scope.SerializeToString(deterministic=True), s.SerializeToString(deterministic=True)))
    return out


@pytest.fixture
def fwd_server(spanprof_factory):
    d = Downstream().start()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", d.url, "--forward-batch-interval", "20ms"])
    yield server, d
    d.stop()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_traces_as_json_are_stored_and_forwarded_like_protobuf(fwd_server, seed):
    server, d = fwd_server
    rnd = random.Random(seed)
    t0 = 1_700_000_000_000_000_000
    sent, traces = 0, set()
    for i in range(4):
        req, tr = random_traces(rnd, t0)
        traces |= tr
        status, h, body = post_protobuf(server.http_port, TRACES, req.SerializeToString(),
                                        extra_headers={"X-Scope-OrgID": "pb"})
        assert status == 200, body
        status, h, body = post_json(server.http_port, TRACES, req, gzip_body=bool(i % 2),
                                    extra_headers={"X-Scope-OrgID": "js"})
        assert status == 200 and h["content-type"] == "application/json", body
        assert json.loads(body) == {}
        sent += 2
    for t in traces:
        docs = []
        for tenant in ("pb", "js"):
            status, _, body = http_request(server.http_port, "GET", f"/api/v1/traces/{t}",
                                           headers={"X-Scope-OrgID": tenant})
            assert status == 200, body[:300]
            doc = json.loads(body)
            for span in doc["spans"]:  # the page link names the tenant: the one expected difference
                assert span["flame_graph_url"].endswith(f"?tenant={tenant}")
                span["flame_graph_url"] = span["flame_graph_url"].split("?")[0]
            docs.append(doc)
        assert docs[0] == docs[1], json.dumps(docs, indent=1)[:3000]
    by_tenant = {}
    for _, headers, body, _ in wait_forwarded(d, server, sent):
        by_tenant.setdefault(headers.get("X-Scope-OrgID"), []).append(body)
    assert spans_of(by_tenant["pb"]) == spans_of(by_tenant["js"])
    assert len(spans_of(by_tenant["js"])) > 0


def wait_forwarded(d, server, n_requests):
    """Forwarded requests once the server has sent everything it accepted."""
    m = wait_for_metric(server.http_port, lambda m: m.total("spanprof_traces_forward_queued") == 0
                        and m.total("spanprof_traces_forward_sent_total") >= 1)
    return d.wait(int(m.total("spanprof_traces_forward_sent_total")))


def test_enum_names_proto_field_names_and_int64_numbers_are_read(spanprof):
    t = "5b8efff798038103d269b633813fc60c"
    doc = {"resource_spans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "names"}}]},
        "scope_spans": [{"spans": [{
            "trace_id": t.upper(), "span_id": "EEE19B7EC3C1B174", "parent_span_id": "",
            "name": "by-proto-names", "kind": "SPAN_KIND_SERVER",
            "start_time_unix_nano": 1_700_000_000_000_000_000,
            "endTimeUnixNano": "1700000000500000000",
            "status": {"code": "STATUS_CODE_ERROR"}, "unknownField": {"x": [1, 2]}}]}]}]}
    status, h, body = post_json(spanprof.http_port, TRACES, json.dumps(doc).encode())
    assert status == 200, body
    status, _, body = http_request(spanprof.http_port, "GET", f"/api/v1/traces/{t}")
    assert status == 200, body
    span = json.loads(body)["spans"][0]
    assert (span["span_id"], span["name"], span["service"]) == ("eee19b7ec3c1b174", "by-proto-names", "names")
    assert (span["start_time_unix_nano"], span["duration_ns"]) == ("1700000000000000000", 500_000_000)


# ---- profiles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_random_profiles_as_json_give_the_same_flame_graphs(spanprof, seed):
    rnd = random.Random(seed)
    start = 1_700_000_000_000_000_000 + seed * 10**12
    span_ids = [rand_id(rnd, 8) for _ in range(3)]
    trace = rand_id(rnd, 16)
    for i in range(3):
        req, dic = cpu_profile_request(n_profiles=rnd.randrange(1, 3), samples_per_profile=rnd.randrange(1, 40),
                                       start_ns=start + i * 10**9, stack_depth=rnd.randrange(1, 6),
                                       extra_stacks=rnd.randrange(0, 5), pid=4000 + i)
        links = [dic.link(trace, s) for s in span_ids]
        for prof in req.resource_profiles[0].scope_profiles[0].profiles:
            for s in prof.samples:
                if rnd.random() < 0.6:
                    s.link_index = rnd.choice(links)
                if rnd.random() < 0.3:
                    s.values.extend([rnd.randrange(1, 5)] * len(s.timestamps_unix_nano))
        req.dictionary.CopyFrom(dic.d)
        for tenant, send in (("pb", lambda: post_protobuf(spanprof.http_port, PROFILES, req.SerializeToString(),
                                                           extra_headers={"X-Scope-OrgID": "pb"})),
                             ("js", lambda: post_json(spanprof.http_port, PROFILES, req, gzip_body=True,
                                                      extra_headers={"X-Scope-OrgID": "js"}))):
            status, h, body = send()
            assert status == 200, (tenant, body[:300])
    w = Window(start)
    for sel in ("{}", '{service_name="e2e-svc"}'):
        pb, js = merge_json(spanprof, w, sel, tenant="pb"), merge_json(spanprof, w, sel, tenant="js")
        assert pb == js and int(pb["total"]) > 0
    for s in span_ids:
        pb = span_json(spanprof, w, [s.hex()], tenant="pb")
        js = span_json(spanprof, w, [s.hex()], tenant="js")
        assert pb == js


def test_profile_json_with_base64_profile_id_and_enum_names(spanprof):
    req, _ = cpu_profile_request(n_profiles=1, samples_per_profile=3)
    doc = json.loads(otlp_json(req, enums_as_ints=False))
    prof = doc["resourceProfiles"][0]["scopeProfiles"][0]["profiles"][0]
    prof["profileId"] = "AQEBAQEBAQEBAQEBAQEBAQ=="  # protojson's base64 form is read too
    status, h, body = post_json(spanprof.http_port, PROFILES, json.dumps(doc).encode())
    assert status == 200 and json.loads(body) == {}, body
    m = wait_for_metric(spanprof.http_port, lambda m: m.total("spanprof_accepted_items_total", "profile") >= 1)
    assert m.total("spanprof_otlp_http_json_profiles_requests_total") == 1


# ---- what a client sees when something is wrong -------------------------------------------------------


def span_doc(trace="0102030405060708090a0b0c0d0e0f10", span="1112131415161718", pad=True, **extra):
    """One span; with pad, at resourceSpans[0].scopeSpans[1].spans[3] after empty (invalid) ones."""
    s = {"traceId": trace, "spanId": span, "name": "s", "startTimeUnixNano": "1700000000000000000",
         "endTimeUnixNano": "1700000001000000000", **extra}
    if not pad:
        return {"resourceSpans": [{"scopeSpans": [{"spans": [s]}]}]}
    return {"resourceSpans": [{"scopeSpans": [{}, {"spans": [{}, {}, {}, s]}]}]}


@pytest.mark.parametrize("body,status,message", [
    (span_doc(trace="0102030405060708090a0b0c0d0e0f1"), 400,
     "resourceSpans[0].scopeSpans[1].spans[3].traceId: 31 hex digits, want 32"),
    (span_doc(span="AQIDBAUGBwg="), 400,
     "resourceSpans[0].scopeSpans[1].spans[3].spanId: character 2 is not a hex digit (ids are hex in OTLP JSON)"),
    (span_doc(kind="SPAN_KIND_NOPE"), 400,
     "resourceSpans[0].scopeSpans[1].spans[3].kind: SPAN_KIND_NOPE is not a value of "
     "opentelemetry.proto.trace.v1.Span.SpanKind"),
    (span_doc(startTimeUnixNano="soon"), 400,
     "resourceSpans[0].scopeSpans[1].spans[3].startTimeUnixNano: expected an unsigned 64-bit integer "
     "(number or decimal string), got a string"),
    (span_doc(attributes=[{"key": "a", "value": {"bytesValue": "***"}}]), 400,
     "resourceSpans[0].scopeSpans[1].spans[3].attributes[0].value.bytesValue: expected base64, got a string"),
    ({"resourceSpans": {}}, 400, "resourceSpans: expected an array, got an object"),
    (b'{"resourceSpans": [', 400, "body is not JSON: ']' expected near end of file (line 1, column 19)"),
    (b'[1]', 400, "body is not a JSON object (opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest)"),
])
def test_bad_json_is_400_with_a_json_status_naming_the_field(spanprof, body, status, message):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, h, out = post_json(spanprof.http_port, TRACES, data)
    assert got == status, out
    assert h["content-type"] == "application/json"
    assert json.loads(out) == {"code": 3, "message": message}


def test_bad_span_is_a_partial_success_in_json(spanprof):
    doc = span_doc(pad=False, endTimeUnixNano="1600000000000000000")
    status, h, out = post_json(spanprof.http_port, TRACES, json.dumps(doc).encode())
    assert status == 200 and h["content-type"] == "application/json"
    ps = json.loads(out)["partialSuccess"]
    assert ps["rejectedSpans"] == "1" and ps["errorMessage"].startswith("resource_spans[0].scope_spans[0].spans[0]: "), ps


def test_deep_nesting_and_garbage_are_refused_and_counted(spanprof):
    deep = '{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[' + \
        '{"key":"k","value":{"kvlistValue":{"values":[' * 60 + ']}}}' * 60 + ']}]}]}]}'
    status, h, out = post_json(spanprof.http_port, TRACES, deep.encode())
    assert status == 400 and "levels deep" in json.loads(out)["message"], out[:300]
    status, h, out = post_json(spanprof.http_port, PROFILES, b"\x00\xff not json", gzip_body=True)
    assert status == 400 and json.loads(out)["message"].startswith("body is not JSON"), out
    status, h, out = post_json(spanprof.http_port, TRACES, b"{}", extra_headers={"Content-Encoding": "br"})
    assert status == 415 and h["content-type"] == "application/json" and json.loads(out)["code"] == 3, out
    m = scrape(spanprof.http_port)
    refused = {(lab["endpoint"], lab["reason"]): v for n, lab, v in m.samples
               if n == "spanprof_requests_refused_total" and v}
    assert refused == {("otlp_http_traces", "invalid_argument"): 1, ("otlp_http_profiles", "invalid_argument"): 1,
                       ("otlp_http_traces", "media_type"): 1}, refused
    assert m.total("spanprof_otlp_http_json_traces_requests_total") == 1  # 415 came first


def test_json_over_the_size_limit_is_413(spanprof_factory):
    server = spanprof_factory(["--max-recv-msg-size", "4096"])
    req, _ = cpu_profile_request(n_profiles=1, samples_per_profile=200)
    # A body over the limit is refused by the server before the OTLP handler reads it (text, as
    # for protobuf bodies); one that only inflates past it gets the JSON Status.
    status, h, out = post_json(server.http_port, PROFILES, req)
    assert status == 413, out[:300]
    gz = gzip.compress(otlp_json(req))
    status, h, out = post_protobuf(server.http_port, PROFILES, gz, content_type="application/json",
                                   extra_headers={"Content-Encoding": "gzip"})
    assert status == 413 and h["content-type"] == "application/json", out[:300]
    assert json.loads(out)["code"] == 8, out[:300]  # RESOURCE_EXHAUSTED


def test_missing_token_is_401_with_a_json_status(spanprof_factory, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cret\n")
    server = spanprof_factory(["--ingest-auth-token-file", str(tok)])
    req = json.dumps(span_doc(pad=False)).encode()
    status, h, out = post_json(server.http_port, TRACES, req)
    assert status == 401 and h["content-type"] == "application/json", out
    assert json.loads(out)["code"] == 16
    status, h, out = post_json(server.http_port, TRACES, req, extra_headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and json.loads(out) == {}, out
