"""spanprof's own API against the real binary: GET /api/v1/traces/{trace_id} and
GET /api/v1/spans/{span_id}/profile (pprof, folded, json), the page link it hands out, and
Pyroscope's /pyroscope/render with the time forms Grafana's Profiles Drilldown and scripts send.

Input goes in through real clients: OTLP traces and profiles over grpcio with the official
opentelemetry-proto classes (samples linked to spans explicitly, link_index → span, so the numbers
do not depend on time/thread inference; a linked sample also reaches the linked span's ancestors in
its process), and a Go-style pprof with span_id labels through
Pyroscope's /ingest. Every expected number is computed here from that input; the downloaded pprof
is read by Go's own reader (`go tool pprof -raw`).
"""

import gzip
import json
import os
import time
from urllib.parse import quote

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from e2e_helpers import RPC_TIMEOUT, _Dict, _resource, http_request, ld, profiles_stub, traces_stub, varint
from test_golden_pprof import GO, go_pprof_raw, parse_raw
from test_query import flamegraph_stacks, pb_int

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
COUNT = "process_cpu:samples:count:cpu:nanoseconds"
PERIOD = 10_000_000  # 100 Hz
TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
ROOT = bytes.fromhex("00f067aa0ba902b7")
CHILD = bytes.fromhex("a1b2c3d4e5f60718")
GRANDCHILD = bytes.fromhex("1122334455667788")
QUIET = bytes.fromhex("0badc0de0badc0de")  # indexed, nothing attached
PYSPAN = bytes.fromhex("feedfacecafebeef")  # indexed; samples from a pprof with counts
SVC, PY_SVC = "api-e2e", "api-e2e-py"
SPAN_PID, PROFILE_PID = 5151, 6262  # different processes: no inference, links only

# (span id, parent or None, name, service, start offset ms, duration ms, thread id)
SPANS = [
    (ROOT, None, "GET /checkout", SVC, 0, 900, 11),
    (CHILD, ROOT, "price cart", SVC, 100, 500, 11),
    (GRANDCHILD, CHILD, "tax lookup", SVC, 200, 250, 12),
    (QUIET, ROOT, "audit", SVC, 650, 120, 13),
    (PYSPAN, ROOT, "recommend", PY_SVC, 700, 150, 21),
]
# OTLP CPU samples: (stack root first, observations, linked span or None)
SAMPLES = [
    (("main", "http_serve", "checkout"), 3, ROOT),
    (("main", "http_serve", "checkout", "json_encode"), 2, ROOT),
    (("main", "http_serve", "checkout", "price_cart"), 4, CHILD),
    (("main", "http_serve", "checkout", "price_cart", "tax"), 6, GRANDCHILD),
    (("main", "http_serve", "checkout", "price_cart", "tax", "db_query"), 1, GRANDCHILD),
    (("main", "gc"), 7, None),
]
# Go pprof through /ingest: (stack root first, sample count, linked span or None)
PPROF = [
    (("py_main", "recommend", "score"), 5, PYSPAN),
    (("py_main", "recommend"), 2, PYSPAN),
    (("py_main", "idle"), 9, None),
]


PARENT = {sid: parent for sid, parent, *_ in SPANS}


def chain(linked):
    """The spans an explicitly linked sample attaches to: the linked span and its ancestors (every
    span here lasts over 20 ms and all of them share one process, SPAN_PID)."""
    out = []
    while linked:
        out.append(linked)
        linked = PARENT.get(linked)
    return out


def expected(span):
    want = {}
    for stack, nobs, sp in SAMPLES:
        if span in chain(sp):
            want[stack] = want.get(stack, 0) + nobs * PERIOD
    for stack, count, sp in PPROF:
        if span in chain(sp):
            want[stack] = want.get(stack, 0) + count * PERIOD
    return want


def expected_count(span):
    return sum(c for _, c, sp in PPROF if span in chain(sp))


# ---------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------


def trace_request(t0_ns):
    req = trace_service_pb2.ExportTraceServiceRequest()
    by_service = {}
    for span_id, parent, name, svc, off_ms, dur_ms, tid in SPANS:
        if svc not in by_service:
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(_resource(SPAN_PID, svc))
            by_service[svc] = rs.scope_spans.add()
            by_service[svc].scope.name = "e2e-api"
        sp = by_service[svc].spans.add()
        sp.trace_id = TRACE
        sp.span_id = span_id
        if parent:
            sp.parent_span_id = parent
        sp.name = name
        sp.kind = trace_pb2.Span.SPAN_KIND_SERVER
        sp.start_time_unix_nano = t0_ns + off_ms * 1_000_000
        sp.end_time_unix_nano = t0_ns + (off_ms + dur_ms) * 1_000_000
        kv = sp.attributes.add()
        kv.key = "thread.id"
        kv.value.int_value = tid
    return req


def profile_request(t0_ns):
    dic = _Dict()
    mapping = dic.mapping(f"/usr/bin/{SVC}")
    locs = {}

    def loc(name):
        if name not in locs:
            locs[name] = dic.location(mapping, 0x401000 + 16 * len(locs), dic.function(name, "shop.c"),
                                      10 + len(locs))
        return locs[name]

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    rp.resource.CopyFrom(_resource(PROFILE_PID, SVC))
    prof = rp.scope_profiles.add().profiles.add()
    prof.sample_type.type_strindex = dic.s("samples")
    prof.sample_type.unit_strindex = dic.s("count")
    prof.period_type.type_strindex = dic.s("cpu")
    prof.period_type.unit_strindex = dic.s("nanoseconds")
    prof.period = PERIOD
    prof.time_unix_nano = t0_ns
    prof.duration_nano = 1_000_000_000
    prof.profile_id = b"\x77" * 16
    for stack, nobs, span in SAMPLES:
        s = prof.samples.add()
        s.stack_index = dic.stack([loc(n) for n in reversed(stack)])  # leaf first
        s.attribute_indices.append(dic.attr("thread.id", 999))
        if span:
            s.link_index = dic.link(TRACE, span)
        s.timestamps_unix_nano.extend(t0_ns + 1_000_000 + PERIOD * k for k in range(nobs))
    req.dictionary.CopyFrom(dic.d)
    return req


def go_pprof(t0_ns):
    """A Go CPU pprof: sample types samples/count and cpu/nanoseconds, span_id labels."""
    strings = ["", "samples", "count", "cpu", "nanoseconds", "span_id", "main.go"]

    def s(text):
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    ids, body = {}, b""
    for stack, _, _ in PPROF:
        for name in stack:
            ids.setdefault(name, len(ids) + 1)
    for stack, count, span in PPROF:
        vals = varint(count) + varint(count * PERIOD)
        smp = ld(1, b"".join(varint(ids[n]) for n in reversed(stack))) + ld(2, vals)
        if span:
            smp += ld(3, pb_int(1, s("span_id")) + pb_int(2, s(span.hex())))
        body += ld(2, smp)
    for name, i in ids.items():
        body += ld(4, pb_int(1, i) + ld(4, pb_int(1, i) + pb_int(2, 3)))
        body += ld(5, pb_int(1, i) + pb_int(2, s(name)) + pb_int(3, s(name)) + pb_int(4, s("main.go")))
    head = ld(1, pb_int(1, 1) + pb_int(2, 2)) + ld(1, pb_int(1, 3) + pb_int(2, 4))
    tail = pb_int(9, t0_ns) + pb_int(10, 10_000_000_000) + ld(11, pb_int(1, 3) + pb_int(2, 4))
    tail += pb_int(12, PERIOD)
    return head + body + b"".join(ld(6, t.encode()) for t in strings) + tail


def load(server, tenant=None):
    t0 = time.time_ns() - 30_000_000_000
    metadata = [("x-scope-orgid", tenant)] if tenant else None
    with grpc.insecure_channel(server.grpc_target) as ch:
        r = traces_stub(ch).Export(trace_request(t0), timeout=RPC_TIMEOUT, metadata=metadata)
        assert not r.partial_success.rejected_spans, r
        r = profiles_stub(ch).Export(profile_request(t0), timeout=RPC_TIMEOUT, metadata=metadata)
        assert not r.partial_success.rejected_profiles, r
    headers = {"Content-Type": "application/octet-stream"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    t = t0 // 1_000_000_000
    status, _, body = http_request(server.http_port, "POST",
                                   f"/ingest?name={PY_SVC}&from={t}&until={t + 10}&format=pprof",
                                   body=gzip.compress(go_pprof(t0)), headers=headers)
    assert status == 200, body
    return t0


@pytest.fixture
def loaded(spanprof):
    return spanprof, load(spanprof)


def get(server, path, tenant=None):
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    return http_request(server.http_port, "GET", path, headers=headers)


def get_json(server, path, expect=200, tenant=None):
    status, h, body = get(server, path, tenant)
    assert status == expect, f"GET {path}: {status} {body[:400]!r}"
    assert h["content-type"].startswith("application/json"), h
    return json.loads(body)


# ---------------------------------------------------------------------------------------------
# GET /api/v1/traces/{trace_id}
# ---------------------------------------------------------------------------------------------


def test_trace_lists_its_spans_with_what_was_attached(loaded):
    server, t0 = loaded
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}")
    assert doc["trace_id"] == TRACE.hex()
    assert doc["profile_type"] == CPU and doc["unit"] == "nanoseconds"
    assert doc["span_count"] == len(SPANS) == len(doc["spans"])
    got = {s["span_id"]: s for s in doc["spans"]}
    starts = [int(s["start_time_unix_nano"]) for s in doc["spans"]]
    assert starts == sorted(starts)
    for span_id, parent, name, svc, off_ms, dur_ms, tid in SPANS:
        s = got[span_id.hex()]
        want = expected(span_id)
        assert s["parent_span_id"] == (parent.hex() if parent else None)
        assert (s["name"], s["service"], s["thread_id"], s["pid"]) == (name, svc, tid, SPAN_PID)
        assert int(s["start_time_unix_nano"]) == t0 + off_ms * 1_000_000
        assert s["duration_ns"] == dur_ms * 1_000_000
        assert s["cpu_time_ns"] == s["value"] == sum(want.values()), name
        assert s["stacks"] == len(want), name
        # Counts exist only where the sender sent them (the Go pprof's samples/count type);
        # a span with nothing attached has 0 samples.
        want_samples = expected_count(span_id) if span_id == PYSPAN else 0 if not want else None
        assert s["samples"] == want_samples, name
        assert s["flame_graph_url"] == f"/ui/span/{span_id.hex()}"
        assert s["profile_url"] == f"/api/v1/spans/{span_id.hex()}/profile?format=pprof"


def test_trace_figures_for_another_profile_type(loaded):
    server, _ = loaded
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}?profile_type={quote(COUNT)}")
    assert doc["profile_type"] == COUNT and doc["unit"] == "count"
    got = {s["span_id"]: s for s in doc["spans"]}
    assert got[PYSPAN.hex()]["value"] == got[PYSPAN.hex()]["samples"] == expected_count(PYSPAN)
    assert "cpu_time_ns" not in got[PYSPAN.hex()]
    # the root is PYSPAN's parent in the same process: the linked counts reach it too
    assert got[ROOT.hex()]["value"] == expected_count(ROOT) == expected_count(PYSPAN)
    assert got[CHILD.hex()]["value"] == 0
    assert f"profile_type={quote(COUNT, safe='')}" in got[PYSPAN.hex()]["profile_url"]


def test_trace_errors(loaded):
    server, _ = loaded
    for bad, words in (("4bf92f35", "32 hex digits"), ("zz" * 16, "not a hex digit"),
                       ("0" * 32, "all-zero")):
        doc = get_json(server, f"/api/v1/traces/{bad}", expect=400)
        assert doc["code"] == "invalid_argument"
        assert "trace id" in doc["message"] and words in doc["message"], doc
    doc = get_json(server, f"/api/v1/traces/{'ab' * 16}", expect=404)
    assert doc["code"] == "not_found" and "ab" * 16 in doc["message"]
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}/spans", expect=404)
    assert doc["code"] == "not_found"
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}?profile_type=cpu", expect=400)
    assert "profile_type" in doc["message"]
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}?from=yesterday", expect=400)
    assert "from=yesterday" in doc["message"]
    # another tenant does not see it
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}", expect=404, tenant="someone-else")
    assert "someone-else" in doc["message"]


# ---------------------------------------------------------------------------------------------
# GET /api/v1/spans/{span_id}/profile
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")
@pytest.mark.parametrize("span", [ROOT, GRANDCHILD, PYSPAN], ids=["root", "grandchild", "pprof"])
def test_span_pprof_opens_in_go_tool_pprof(loaded, tmp_path, span):
    server, t0 = loaded
    doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}")
    url = next(s["profile_url"] for s in doc["spans"] if s["span_id"] == span.hex())
    status, h, body = get(server, url)
    assert status == 200, body
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == f'attachment; filename="span-{span.hex()}.pb.gz"'
    path = tmp_path / "span.pb.gz"
    path.write_bytes(body)
    raw = go_pprof_raw(str(path))
    samples, locations = parse_raw(raw)
    got = {}
    for value, locs in samples:
        stack = tuple(reversed([name for loc in locs for name in locations[loc]]))
        got[stack] = got.get(stack, 0) + value
    assert got == expected(span)
    assert "PeriodType: cpu nanoseconds" in raw
    # the period the senders gave (OTLP Profile.period, the Go pprof's field 12)
    assert f"Period: {PERIOD}\n" in raw
    # the profile's time is the span's start
    start = next(int(s["start_time_unix_nano"]) for s in doc["spans"] if s["span_id"] == span.hex())
    assert gzip.decompress(body).find(pb_int(9, start)) >= 0


def parse_folded(text):
    out = {}
    for line in text.splitlines():
        stack, value = line.rsplit(" ", 1)
        out[tuple(stack.split(";"))] = int(value)
    return out


def test_span_folded_and_json(loaded):
    server, _ = loaded
    for span in (ROOT, CHILD, GRANDCHILD, PYSPAN):
        status, h, body = get(server, f"/api/v1/spans/{span.hex()}/profile?format=folded")
        assert status == 200 and h["content-type"].startswith("text/plain")
        text = body.decode()
        assert text.endswith("\n") and text.splitlines() == sorted(text.splitlines())
        assert parse_folded(text) == expected(span)

        doc = get_json(server, f"/api/v1/spans/{span.hex().upper()}/profile?format=json")  # either case
        fb = doc["flamebearer"]
        assert fb["numTicks"] == sum(expected(span).values())
        assert fb["maxSelf"] == max(expected(span).values())
        assert flamegraph_stacks({"names": fb["names"],
                                  "levels": [{"values": l} for l in fb["levels"]]}) == expected(span)
        assert doc["metadata"]["name"] == "cpu" and doc["metadata"]["units"] == "samples"
        assert doc["timeline"] is None
    # maxNodes folds the rest into "other", as /render does
    doc = get_json(server, f"/api/v1/spans/{GRANDCHILD.hex()}/profile?format=json&maxNodes=2")
    assert "other" in doc["flamebearer"]["names"]
    assert doc["flamebearer"]["numTicks"] == sum(expected(GRANDCHILD).values())
    # the sample counts of the pprof, as their own type
    status, _, body = get(server, f"/api/v1/spans/{PYSPAN.hex()}/profile?format=folded"
                                  f"&profile_type={quote(COUNT)}")
    assert status == 200
    assert parse_folded(body.decode()) == {s: c for s, c, sp in PPROF if sp == PYSPAN}


def test_span_time_range_and_empty_spans(loaded):
    server, t0 = loaded
    t = t0 // 1_000_000_000
    # from/until in seconds, milliseconds, and relative: all cover the samples
    for rng in (f"from={t - 60}&until={t + 60}", f"from={(t - 60) * 1000}&until={(t + 60) * 1000}",
                "from=now-1h&until=now", "from=now-1h30m"):
        status, _, body = get(server, f"/api/v1/spans/{ROOT.hex()}/profile?format=folded&{rng}")
        assert status == 200 and parse_folded(body.decode()) == expected(ROOT), rng
    # a range hours away finds nothing; the span is indexed, so the answer is an empty profile
    status, _, body = get(server, f"/api/v1/spans/{ROOT.hex()}/profile?format=folded"
                                  f"&from=now-30d&until=now-29d")
    assert status == 200 and body == b""
    status, _, body = get(server, f"/api/v1/spans/{QUIET.hex()}/profile?format=folded")
    assert status == 200 and body == b""
    doc = get_json(server, f"/api/v1/spans/{QUIET.hex()}/profile?format=json")
    assert doc["flamebearer"]["numTicks"] == 0


def test_span_errors(loaded):
    server, _ = loaded
    for bad, words in (("00f067aa", "16 hex digits"), ("00f067aa0ba902bg", "not a hex digit"),
                       ("0" * 16, "all-zero")):
        doc = get_json(server, f"/api/v1/spans/{bad}/profile", expect=400)
        assert doc["code"] == "invalid_argument" and "span id" in doc["message"]
        assert words in doc["message"], doc
    doc = get_json(server, f"/api/v1/spans/{'12' * 8}/profile", expect=404)
    assert doc["code"] == "not_found" and "12" * 8 in doc["message"]
    doc = get_json(server, f"/api/v1/spans/{ROOT.hex()}/profile?format=svg", expect=400)
    assert "format=svg" in doc["message"]
    doc = get_json(server, f"/api/v1/spans/{ROOT.hex()}", expect=404)
    assert "/api/v1/spans/{span_id}/profile" in doc["message"]
    doc = get_json(server, f"/api/v1/spans/{ROOT.hex()}/profile?until=now-2h&from=now-1h", expect=400)
    assert "until" in doc["message"]
    doc = get_json(server, f"/api/v1/spans/{ROOT.hex()}/profile?from=now%2B1h", expect=400)
    assert "until must be after from" in doc["message"]
    # tenants: the samples of one are not found by another
    get_json(server, f"/api/v1/spans/{ROOT.hex()}/profile?format=json", expect=404, tenant="other")


def test_tenant_sees_its_own_trace(spanprof):
    load(spanprof, tenant="team-x")
    get_json(spanprof, f"/api/v1/traces/{TRACE.hex()}", expect=404)
    doc = get_json(spanprof, f"/api/v1/traces/{TRACE.hex()}", tenant="team-x")
    got = {s["span_id"]: s for s in doc["spans"]}
    assert got[ROOT.hex()]["value"] == sum(expected(ROOT).values())
    assert got[ROOT.hex()]["flame_graph_url"] == f"/ui/span/{ROOT.hex()}?tenant=team-x"


# ---------------------------------------------------------------------------------------------
# The page behind flame_graph_url
# ---------------------------------------------------------------------------------------------


def test_flame_graph_link_opens_the_page_on_the_span(loaded):
    server, _ = loaded
    status, h, _ = get(server, f"/ui/span/{CHILD.hex()}?tenant=t1")
    assert status == 302
    assert h["location"] == f"../../ui?span_id={CHILD.hex()}&tenant=t1"
    status, h, body = get(server, f"/ui?span_id={CHILD.hex()}&tenant=t1")
    assert status == 200 and h["content-type"].startswith("text/html")
    assert b"api/v1/spans/" in body and b"SelectMergeSpanProfile" in body
    status, _, body = get(server, "/ui/span/nope")
    assert status == 400 and b"span id" in body


# ---------------------------------------------------------------------------------------------
# /pyroscope/render (Profiles Drilldown: from/until in ms, max-nodes, aggregation=sum) and /render
# ---------------------------------------------------------------------------------------------


def test_render_on_both_paths_with_every_time_form(loaded):
    server, t0 = loaded
    q = quote(f'{CPU}{{service_name="{SVC}"}}')
    all_svc = {}
    for stack, nobs, _ in SAMPLES:
        all_svc[stack] = all_svc.get(stack, 0) + nobs * PERIOD
    t = t0 // 1_000_000_000
    day = time.strftime("%Y%m%d", time.gmtime(t - 86400))
    forms = [f"from={t - 120}&until={t + 120}",  # seconds
             f"from={(t - 120) * 1000}&until={(t + 120) * 1000}&aggregation=sum&max-nodes=1024",
             f"from={(t - 120) * 10**9}&until={(t + 120) * 10**9}",  # nanoseconds
             "from=now-1h&until=now", "from=now-2h30m&until=now%2B1m", f"from={day}&until=now"]
    answers = []
    for path in ("/pyroscope/render", "/render"):
        for rng in forms:
            doc = get_json(server, f"{path}?query={q}&{rng}&format=json")
            fb = doc["flamebearer"]
            assert fb["numTicks"] == sum(all_svc.values()), (path, rng)
            assert flamegraph_stacks({"names": fb["names"],
                                      "levels": [{"values": l} for l in fb["levels"]]}) == all_svc
            assert sum(doc["timeline"]["samples"]) == sum(all_svc.values()), (path, rng)
            answers.append(fb)
    assert all(a == answers[0] for a in answers)
    doc = get_json(server, f"/pyroscope/render?query={q}&from=soon&until=now", expect=400)
    assert "from=soon" in doc["message"]


# ---------------------------------------------------------------------------------------------
# SelectSeries with TIME_SERIES_AGGREGATION_TYPE_AVERAGE
# ---------------------------------------------------------------------------------------------


def bucket_request(base_ns, points):
    """OTLP CPU samples per host: points = [(host, offset s, observations)]."""
    dic = _Dict()
    fn = dic.location(dic.mapping("/usr/bin/avg"), 0x401000, dic.function("work", "avg.c"), 1)
    stack = dic.stack([fn])
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    for host in sorted({h for h, _, _ in points}):
        rp = req.resource_profiles.add()
        rp.resource.CopyFrom(_resource(7777, "avg-svc"))
        kv = rp.resource.attributes.add()
        kv.key = "host.name"
        kv.value.string_value = host
        prof = rp.scope_profiles.add().profiles.add()
        prof.sample_type.type_strindex = dic.s("samples")
        prof.sample_type.unit_strindex = dic.s("count")
        prof.period_type.type_strindex = dic.s("cpu")
        prof.period_type.unit_strindex = dic.s("nanoseconds")
        prof.period = PERIOD
        prof.time_unix_nano = base_ns
        prof.duration_nano = 60_000_000_000
        for h, off_s, nobs in points:
            if h == host:
                s = prof.samples.add(stack_index=stack)
                s.timestamps_unix_nano.extend(base_ns + off_s * 1_000_000_000 + k for k in range(nobs))
    req.dictionary.CopyFrom(dic.d)
    return req


def test_select_series_average(spanprof):
    # base: a minute boundary two minutes ago; the step is that minute
    base_s = (time.time_ns() // 1_000_000_000 - 120) // 60 * 60
    points = [("h1", 1, 3), ("h1", 11, 5), ("h2", 2, 1)]  # 10 s buckets: h1 b0, h1 b1, h2 b0
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        r = profiles_stub(ch).Export(bucket_request(base_s * 10**9, points), timeout=RPC_TIMEOUT)
        assert not r.partial_success.rejected_profiles, r

    def series(aggregation, group_by=()):
        body = {"profileTypeID": CPU, "labelSelector": '{service_name="avg-svc"}',
                "start": str(base_s * 1000), "end": str(base_s * 1000 + 59_999), "step": 60,
                "groupBy": list(group_by)}
        if aggregation:
            body["aggregation"] = aggregation
        status, _, data = http_request(spanprof.http_port, "POST",
                                       "/querier.v1.QuerierService/SelectSeries",
                                       body=json.dumps(body).encode(),
                                       headers={"Content-Type": "application/json"})
        assert status == 200, data
        out = {}
        for s in json.loads(data).get("series", []):
            key = tuple(l["value"] for l in s.get("labels", []))
            out[key] = [(int(p["timestamp"]), p["value"]) for p in s["points"]]
        return out

    at = base_s * 1000
    assert series(None) == {(): [(at, 9 * PERIOD)]}
    assert series("TIME_SERIES_AGGREGATION_TYPE_SUM") == {(): [(at, 9 * PERIOD)]}
    # the mean of the (series, bucket) totals in the step: (3 + 5 + 1) / 3
    assert series("TIME_SERIES_AGGREGATION_TYPE_AVERAGE") == {(): [(at, 3 * PERIOD)]}
    assert series("TIME_SERIES_AGGREGATION_TYPE_AVERAGE", ["host_name"]) == {
        ("h1",): [(at, 4 * PERIOD)], ("h2",): [(at, 1 * PERIOD)]}
    assert series("TIME_SERIES_AGGREGATION_TYPE_AVERAGE", ["service_name"]) == {
        ("avg-svc",): [(at, 3 * PERIOD)]}
