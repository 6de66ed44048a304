"""The query API end to end: profiles go in through real clients (grpcio with the official
opentelemetry-proto classes, with sample links to spans; Pyroscope /ingest with a pprof), and come
back out the way Grafana's Pyroscope data source and Tempo's traces-to-profiles link ask for them:
querier.v1.QuerierService over Connect (JSON and application/proto) and gRPC, plus /pprof, /render
and the page.

Every expected answer is computed here from the input (stacks root first → value), independently
of the server: a flame graph is decoded back into stacks and compared with what was sent. There is
no Python package for Pyroscope's API, so application/proto requests are encoded and answers
decoded with the tiny protobuf codec below.
"""

import gzip
import json
import time

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

from e2e_helpers import (
    RPC_TIMEOUT,
    _Dict,
    _resource,
    http_request,
    ld,
    profiles_stub,
    raw_unary,
    tag,
    varint,
)

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
PERIOD = 10_000_000  # 100 Hz: one observation is 10 ms of CPU
TRACE_ID = bytes(range(1, 17))
SPAN_A = bytes.fromhex("a1a2a3a4a5a6a7a8")
SPAN_B = bytes.fromhex("b1b2b3b4b5b6b7b8")
SPAN_P = bytes.fromhex("c0ffee00c0ffee01")  # linked from the pprof sent to /ingest
SVC = "query-e2e"
PY_SVC = "query-pyapp"

# (stack root first, observations, span or None, thread id)
OTLP_SAMPLES = [
    (("main", "serve", "handle_a", "parse"), 3, SPAN_A, 7),
    (("main", "serve", "handle_a"), 2, SPAN_A, 7),
    (("main", "serve", "handle_b", "render"), 4, SPAN_B, 8),
    (("main", "serve", "handle_a", "parse"), 1, SPAN_B, 8),
    (("main", "gc"), 5, None, 9),
    (("main", "serve", "handle_b", "render", "escape"), 2, None, 9),
    (("main", "idle"), 6, None, 10),
]
# (stack root first, value in ns, span or None)
PPROF_SAMPLES = [
    (("py_main", "py_handler", "py_work"), 30_000_000, SPAN_P),
    (("py_main", "py_handler"), 10_000_000, None),
    (("py_main", "py_io"), 20_000_000, None),
]


# ---------------------------------------------------------------------------------------------
# Expected answers, from the input
# ---------------------------------------------------------------------------------------------


def expected_stacks(samples=OTLP_SAMPLES, span=None, spans=None):
    want = {}
    for stack, nobs, sp, _tid in samples:
        if spans is not None and sp not in spans:
            continue
        if span is not None and sp != span:
            continue
        want[stack] = want.get(stack, 0) + nobs * PERIOD
    return want


def expected_pprof_stacks(span=None):
    want = {}
    for stack, value, sp in PPROF_SAMPLES:
        if span is None or sp == span:
            want[stack] = want.get(stack, 0) + value
    return want


# ---------------------------------------------------------------------------------------------
# A tiny protobuf codec (wire format only) for the Pyroscope messages
# ---------------------------------------------------------------------------------------------


def pb_string(field, s):
    return ld(field, s.encode())


def pb_int(field, v):
    return tag(field, 0) + varint(v) if v else b""


def pb_fields(data):
    """Decodes one message level into {field: [raw values]} (ints for varints, bytes for
    length-delimited fields)."""
    out, i = {}, 0
    while i < len(data):
        key, i = _uvarint(data, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _uvarint(data, i)
        elif wt == 2:
            n, i = _uvarint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 1:
            v, i = int.from_bytes(data[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(data[i:i + 4], "little"), i + 4
        else:
            raise AssertionError(f"wire type {wt}")
        out.setdefault(field, []).append(v)
    return out


def _uvarint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7


def pb_ints(values):
    """Repeated int64: packed (bytes) or not (ints), as a flat list of signed ints."""
    out = []
    for v in values:
        if isinstance(v, bytes):
            i = 0
            while i < len(v):
                x, i = _uvarint(v, i)
                out.append(x)
        else:
            out.append(v)
    return [x - (1 << 64) if x >= 1 << 63 else x for x in out]


def flamegraph_from_proto(data):
    f = pb_fields(data)
    return {
        "names": [b.decode() for b in f.get(1, [])],
        "levels": [{"values": pb_ints(pb_fields(l).get(1, []))} for l in f.get(2, [])],
        "total": pb_ints(f.get(3, [0]))[0],
        "maxSelf": pb_ints(f.get(4, [0]))[0],
    }


def pprof_stacks(data):
    """Stacks (root first) → summed value of a serialized pprof (first sample type)."""
    f = pb_fields(data)
    strings = [s.decode() for s in f.get(6, [])]
    funcs = {}
    for raw in f.get(5, []):
        fn = pb_fields(raw)
        funcs[fn[1][0]] = strings[fn.get(2, [0])[0]]
    locs = {}
    for raw in f.get(4, []):
        loc = pb_fields(raw)
        names = []
        for line in loc.get(4, []):
            names.append(funcs[pb_fields(line).get(1, [0])[0]])
        locs[loc[1][0]] = names
    out = {}
    for raw in f.get(2, []):
        s = pb_fields(raw)
        frames = []
        for lid in pb_ints(s.get(1, [])):
            frames.extend(locs[lid])
        stack = tuple(reversed(frames))
        out[stack] = out.get(stack, 0) + pb_ints(s.get(2, []))[0]
    types = [pb_fields(v) for v in f.get(1, [])]
    sample_type = [(strings[t.get(1, [0])[0]], strings[t.get(2, [0])[0]]) for t in types]
    return out, sample_type


# ---------------------------------------------------------------------------------------------
# Flame graph → stacks (Grafana rebuilds the tree the same way: by containment on the next level)
# ---------------------------------------------------------------------------------------------


def decode_levels(fg):
    levels = []
    for level in fg.get("levels", []):
        v = [int(x) for x in level.get("values", [])]
        assert len(v) % 4 == 0
        nodes, end = [], 0
        for i in range(0, len(v), 4):
            assert v[i] >= 0, f"negative offset in {v}"
            x = end + v[i]
            nodes.append((x, v[i + 1], v[i + 2], fg["names"][v[i + 3]]))
            end = x + v[i + 1]
        levels.append(nodes)
    return levels


def flamegraph_stacks(fg):
    """{stack root first: self} of every node with self > 0 (the root "total" left out)."""
    levels = decode_levels(fg)
    out = {}
    for d in range(1, len(levels)):
        for x, total, self_, name in levels[d]:
            if self_ <= 0:
                continue
            stack, px = [name], x
            for up in range(d - 1, 0, -1):
                parent = [n for n in levels[up] if n[0] <= px < n[0] + n[1]]
                assert len(parent) == 1, f"node {name} at level {d} has no single parent"
                stack.append(parent[0][3])
                px = parent[0][0]
            key = tuple(reversed(stack))
            out[key] = out.get(key, 0) + self_
    return out


def assert_flamegraph(fg, want):
    got = flamegraph_stacks(fg)
    assert got == want
    assert int(fg.get("total", 0)) == sum(want.values())
    if want:
        assert fg["names"][0] == "total"
        assert int(fg.get("maxSelf", 0)) == max(want.values())


# ---------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------


def otlp_request(start_ns, samples=OTLP_SAMPLES, service=SVC, pid=4242):
    dic = _Dict()
    mapping = dic.mapping(f"/usr/bin/{service}")
    locs = {}

    def loc(name):
        if name not in locs:
            locs[name] = dic.location(mapping, 0x401000 + 16 * len(locs), dic.function(name, "app.c"),
                                      10 + len(locs))
        return locs[name]

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    rp.resource.CopyFrom(_resource(pid, service))
    sp = rp.scope_profiles.add()
    sp.scope.name = "e2e-query"
    prof = sp.profiles.add()
    prof.sample_type.type_strindex = dic.s("samples")
    prof.sample_type.unit_strindex = dic.s("count")
    prof.period_type.type_strindex = dic.s("cpu")
    prof.period_type.unit_strindex = dic.s("nanoseconds")
    prof.period = PERIOD
    prof.time_unix_nano = start_ns
    prof.duration_nano = 10_000_000_000
    prof.profile_id = b"\x42" * 16
    for stack, nobs, span, tid in samples:
        s = prof.samples.add()
        s.stack_index = dic.stack([loc(n) for n in reversed(stack)])  # leaf first
        s.attribute_indices.append(dic.attr("thread.id", tid))
        if span:
            s.link_index = dic.link(TRACE_ID, span)
        s.timestamps_unix_nano.extend(start_ns + PERIOD * k for k in range(nobs))
    req.dictionary.CopyFrom(dic.d)
    return req


def export_otlp(server, start_ns, tenant=None, **kw):
    metadata = [("x-scope-orgid", tenant)] if tenant else None
    with grpc.insecure_channel(server.grpc_target) as ch:
        resp = profiles_stub(ch).Export(otlp_request(start_ns, **kw), timeout=RPC_TIMEOUT,
                                        metadata=metadata)
    assert not resp.partial_success.rejected_profiles, resp


def pprof_bytes(time_ns):
    """A Go-style CPU pprof (one sample type, cpu/nanoseconds) with a span_id label."""
    strings = ["", "cpu", "nanoseconds", "span_id", "main.go"]

    def s(text):
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    funcs, locs, body = {}, {}, b""
    for stack, _, _ in PPROF_SAMPLES:
        for name in stack:
            if name not in funcs:
                funcs[name] = len(funcs) + 1
                locs[name] = len(locs) + 1
    for stack, value, span in PPROF_SAMPLES:
        smp = ld(1, b"".join(varint(locs[n]) for n in reversed(stack))) + ld(2, varint(value))
        if span:
            smp += ld(3, pb_int(1, s("span_id")) + pb_int(2, s(span.hex())))
        body += ld(2, smp)
    for name, fid in funcs.items():
        body += ld(4, pb_int(1, locs[name]) + ld(4, pb_int(1, fid) + pb_int(2, 7)))
        body += ld(5, pb_int(1, fid) + pb_int(2, s(name)) + pb_int(3, s(name)) + pb_int(4, 4))
    head = ld(1, pb_int(1, 1) + pb_int(2, 2))
    tail = pb_int(9, time_ns) + pb_int(10, 10_000_000_000) + ld(11, pb_int(1, 1) + pb_int(2, 2))
    tail += pb_int(12, PERIOD)
    return head + body + b"".join(ld(6, t.encode()) for t in strings) + tail


def ingest_pprof(server, time_ns, tenant=None):
    headers = {"Content-Type": "application/octet-stream"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    t = time_ns // 1_000_000_000
    status, _, body = http_request(
        server.http_port, "POST",
        f"/ingest?name={PY_SVC}%7Benv%3De2e%7D&from={t}&until={t + 10}&format=pprof&spyName=gospy",
        body=gzip.compress(pprof_bytes(time_ns)), headers=headers)
    assert status == 200, body


# ---------------------------------------------------------------------------------------------
# Query clients
# ---------------------------------------------------------------------------------------------


def connect_json(server, method, body, tenant=None, expect=200):
    headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    status, h, data = http_request(server.http_port, "POST", f"/querier.v1.QuerierService/{method}",
                                   body=json.dumps(body).encode(), headers=headers)
    assert status == expect, f"{method}: {status} {data[:500]!r}"
    assert h.get("content-type", "").startswith("application/json")
    return json.loads(data)


def connect_proto(server, method, payload, tenant=None, gzip_ok=False):
    """Grafana's client: Connect unary, binary protobuf, Connect-Protocol-Version: 1."""
    headers = {"Content-Type": "application/proto", "Connect-Protocol-Version": "1"}
    if gzip_ok:
        headers["Accept-Encoding"] = "gzip"
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    status, h, data = http_request(server.http_port, "POST", f"/querier.v1.QuerierService/{method}",
                                   body=payload, headers=headers)
    assert status == 200, f"{method}: {status} {data[:500]!r}"
    assert h.get("content-type") == "application/proto"
    if h.get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return data


def grpc_call(server, method, payload, tenant=None, port=None):
    target = f"127.0.0.1:{port}" if port else server.grpc_target
    metadata = [("x-scope-orgid", tenant)] if tenant else None
    with grpc.insecure_channel(target) as ch:
        return raw_unary(ch, f"/querier.v1.QuerierService/{method}")(payload, timeout=RPC_TIMEOUT,
                                                                     metadata=metadata)


class Window:
    """The query range around what was ingested, in ms (Pyroscope's unit)."""

    def __init__(self, start_ns):
        self.start = start_ns // 1_000_000 - 60_000
        self.end = time.time_ns() // 1_000_000 + 60_000

    def json(self, **kw):
        return {"start": str(self.start), "end": self.end, **kw}


def merge_json(server, window, selector="{}", tenant=None, **kw):
    body = window.json(profileTypeID=CPU, labelSelector=selector, **kw)
    return connect_json(server, "SelectMergeStacktraces", body, tenant)["flamegraph"]


def span_json(server, window, spans, selector="{}", tenant=None):
    body = window.json(profileTypeID=CPU, labelSelector=selector, spanSelector=spans)
    return connect_json(server, "SelectMergeSpanProfile", body, tenant).get("flamegraph", {})


@pytest.fixture
def loaded(spanprof):
    start_ns = time.time_ns() - 20_000_000_000
    export_otlp(spanprof, start_ns)
    ingest_pprof(spanprof, start_ns)
    return spanprof, Window(start_ns)


# ---------------------------------------------------------------------------------------------
# Metadata: types, labels, series
# ---------------------------------------------------------------------------------------------


def test_profile_types_and_labels(loaded):
    server, w = loaded
    types = connect_json(server, "ProfileTypes", w.json())["profileTypes"]
    cpu = [t for t in types if t["ID"] == CPU]
    assert cpu == [{"ID": CPU, "name": "process_cpu", "sampleType": "cpu",
                    "sampleUnit": "nanoseconds", "periodType": "cpu", "periodUnit": "nanoseconds"}]
    # Grafana's health check: a 3-second window in 1970 is a success with no types.
    assert connect_json(server, "ProfileTypes", {"start": 1000, "end": 4000}) == {}

    names = connect_json(server, "LabelNames",
                         w.json(matchers=[f'{{__profile_type__="{CPU}"}}']))["names"]
    assert {"service_name", "__name__", "__profile_type__"} <= set(names)
    assert names == sorted(names)

    values = connect_json(server, "LabelValues",
                          w.json(name="service_name", matchers=[f'{{__profile_type__="{CPU}"}}']))
    assert values["names"] == sorted([SVC, PY_SVC])
    one = connect_json(server, "LabelValues",
                       w.json(name="service_name", matchers=[f'{{service_name="{SVC}"}}']))
    assert one["names"] == [SVC]
    # several matchers: the union
    both = connect_json(server, "LabelValues", w.json(
        name="service_name", matchers=[f'{{service_name="{SVC}"}}', f'{{service_name="{PY_SVC}"}}']))
    assert both["names"] == sorted([SVC, PY_SVC])
    env = connect_json(server, "LabelValues", w.json(name="env"))
    assert env["names"] == ["e2e"]

    series = connect_json(server, "Series", w.json(matchers=[f'{{service_name=~"query-.*"}}'],
                                                   labelNames=["service_name", "__profile_type__"]))
    sets = sorted(tuple((l["name"], l["value"]) for l in s["labels"]) for s in series["labelsSet"])
    assert sets == sorted([(("__profile_type__", CPU), ("service_name", SVC)),
                           (("__profile_type__", CPU), ("service_name", PY_SVC))])


# ---------------------------------------------------------------------------------------------
# Flame graphs
# ---------------------------------------------------------------------------------------------


def test_flamegraph_json_equals_what_was_sent(loaded):
    server, w = loaded
    assert_flamegraph(merge_json(server, w, f'{{service_name="{SVC}"}}'), expected_stacks())
    assert_flamegraph(merge_json(server, w, f'{{service_name="{PY_SVC}", env="e2e"}}'),
                      expected_pprof_stacks())
    every = dict(expected_stacks())
    every.update(expected_pprof_stacks())
    assert_flamegraph(merge_json(server, w), every)
    # Grafana's custom queries come without braces; regexes are anchored
    assert_flamegraph(merge_json(server, w, f'service_name="{SVC}"'), expected_stacks())
    assert_flamegraph(merge_json(server, w, 'service_name=~"query-e"'), {})


def test_flamegraph_levels_follow_pyroscope_encoding(loaded):
    server, w = loaded
    fg = merge_json(server, w, f'{{service_name="{SVC}"}}')
    # root "total", then main; children in name order left to right: gc, idle, serve
    assert fg["names"][:2] == ["total", "main"]
    levels = decode_levels(fg)
    total = sum(expected_stacks().values())
    assert levels[0] == [(0, total, 0, "total")]
    assert levels[1] == [(0, total, 0, "main")]
    assert [n[3] for n in levels[2]] == ["gc", "idle", "serve"]
    assert [n[0] for n in levels[2]] == [0, 5 * PERIOD, 11 * PERIOD]
    # every int64 is a JSON string (protobuf JSON mapping)
    assert all(isinstance(v, str) for l in fg["levels"] for v in l["values"])
    assert isinstance(fg["total"], str)


def test_flamegraph_over_connect_proto_and_grpc(loaded):
    server, w = loaded
    sel = f'{{service_name="{SVC}"}}'
    req = (pb_string(1, CPU) + pb_string(2, sel) + pb_int(3, w.start) + pb_int(4, w.end))
    via_json = merge_json(server, w, sel)
    for gz in (False, True):
        resp = pb_fields(connect_proto(server, "SelectMergeStacktraces", req, gzip_ok=gz))
        fg = flamegraph_from_proto(resp[1][0])
        assert_flamegraph(fg, expected_stacks())
        assert fg["names"] == via_json["names"]
        assert [l["values"] for l in fg["levels"]] == \
            [[int(v) for v in l["values"]] for l in via_json["levels"]]
    for port in (server.grpc_port, server.http_port):  # gRPC is served on both listeners
        resp = pb_fields(grpc_call(server, "SelectMergeStacktraces", req, port=port))
        assert_flamegraph(flamegraph_from_proto(resp[1][0]), expected_stacks())
    # ProfileTypes in proto: field 1 = repeated ProfileType{1 ID, 2 name, ...}
    types = pb_fields(connect_proto(server, "ProfileTypes", pb_int(1, w.start) + pb_int(2, w.end)))
    ids = [pb_fields(t)[1][0].decode() for t in types[1]]
    assert CPU in ids


def test_max_nodes_folds_small_nodes_into_other(loaded):
    server, w = loaded
    sel = f'{{service_name="{SVC}"}}'
    full = merge_json(server, w, sel)
    cut = merge_json(server, w, sel, maxNodes=3)
    assert int(cut["total"]) == int(full["total"])
    assert "other" in cut["names"]
    got = flamegraph_stacks(cut)
    assert sum(got.values()) == sum(expected_stacks().values())
    # kept: the nodes whose total reaches the 3rd largest node total (ties included); the rest
    # is folded into "other"
    totals = {}
    for stack, value in expected_stacks().items():
        for d in range(1, len(stack) + 1):
            totals[stack[:d]] = totals.get(stack[:d], 0) + value
    cut_value = sorted(totals.values(), reverse=True)[2]
    kept = {path for path, t in totals.items() if t >= cut_value}
    shown = {stack[:d] for stack in got for d in range(1, len(stack) + 1) if stack[d - 1] != "other"}
    assert shown == kept
    assert len(kept) < len(totals)
    # the proto field max_nodes (5) does the same
    req = pb_string(1, CPU) + pb_string(2, sel) + pb_int(3, w.start) + pb_int(4, w.end) + pb_int(5, 3)
    fg = flamegraph_from_proto(pb_fields(connect_proto(server, "SelectMergeStacktraces", req))[1][0])
    assert fg["names"] == cut["names"]


# ---------------------------------------------------------------------------------------------
# Span profiles (Tempo's "Profiles for this span")
# ---------------------------------------------------------------------------------------------


def test_span_profile_holds_only_the_linked_samples(loaded):
    server, w = loaded
    a, b = SPAN_A.hex(), SPAN_B.hex()
    assert_flamegraph(span_json(server, w, [a]), expected_stacks(span=SPAN_A))
    assert_flamegraph(span_json(server, w, [b], f'{{service_name="{SVC}"}}'),
                      expected_stacks(span=SPAN_B))
    assert_flamegraph(span_json(server, w, [a, b.upper()]), expected_stacks(spans={SPAN_A, SPAN_B}))
    # the pprof's span_id label links too
    assert_flamegraph(span_json(server, w, [SPAN_P.hex()]), expected_pprof_stacks(span=SPAN_P))
    # labels still apply; an unknown span has no samples
    assert_flamegraph(span_json(server, w, [a], f'{{service_name="{PY_SVC}"}}'), {})
    assert_flamegraph(span_json(server, w, ["0123456789abcdef"]), {})
    # the newer way: SelectMergeStacktraces.span_selector (field 11)
    assert_flamegraph(merge_json(server, w, spanSelector=[a]), expected_stacks(span=SPAN_A))
    req = pb_string(1, CPU) + pb_string(2, "{}") + pb_int(3, w.start) + pb_int(4, w.end) + \
        pb_string(11, a)
    fg = flamegraph_from_proto(pb_fields(connect_proto(server, "SelectMergeStacktraces", req))[1][0])
    assert_flamegraph(fg, expected_stacks(span=SPAN_A))
    # exactly what Grafana's Pyroscope data source sends: proto, field 3 = span ids
    req = pb_string(1, CPU) + pb_string(2, f'{{service_name="{SVC}"}}') + pb_string(3, b) + \
        pb_int(4, w.start) + pb_int(5, w.end)
    resp = pb_fields(connect_proto(server, "SelectMergeSpanProfile", req))
    assert_flamegraph(flamegraph_from_proto(resp[1][0]), expected_stacks(span=SPAN_B))
    resp = pb_fields(grpc_call(server, "SelectMergeSpanProfile", req))
    assert_flamegraph(flamegraph_from_proto(resp[1][0]), expected_stacks(span=SPAN_B))


# ---------------------------------------------------------------------------------------------
# Series, pprof, render, page
# ---------------------------------------------------------------------------------------------


def test_select_series_points(loaded):
    server, w = loaded
    res = connect_json(server, "SelectSeries", w.json(profileTypeID=CPU, labelSelector="{}",
                                                      step=10, groupBy=["service_name"]))
    by_service = {}
    for s in res["series"]:
        labels = {l["name"]: l["value"] for l in s["labels"]}
        assert list(labels) == ["service_name"]
        pts = s["points"]
        assert [int(p["timestamp"]) for p in pts] == sorted(int(p["timestamp"]) for p in pts)
        for p in pts:
            ts = int(p["timestamp"])
            assert w.start <= ts <= w.end and (ts - w.start) % 10_000 == 0
        by_service[labels["service_name"]] = sum(p["value"] for p in pts)
    assert by_service == {SVC: sum(expected_stacks().values()),
                          PY_SVC: sum(expected_pprof_stacks().values())}
    # without group_by: one unlabelled series with everything
    res = connect_json(server, "SelectSeries", w.json(profileTypeID=CPU, labelSelector="{}",
                                                      step=3600))
    assert len(res["series"]) == 1 and "labels" not in res["series"][0]
    assert sum(p["value"] for p in res["series"][0]["points"]) == \
        sum(expected_stacks().values()) + sum(expected_pprof_stacks().values())
    # limit keeps the largest series
    res = connect_json(server, "SelectSeries", w.json(profileTypeID=CPU, labelSelector="{}",
                                                      step=10, groupBy=["service_name"], limit=1))
    assert [s["labels"][0]["value"] for s in res["series"]] == [SVC]


def test_select_merge_profile_and_pprof_download(loaded):
    server, w = loaded
    sel = f'{{service_name="{SVC}"}}'
    res = connect_json(server, "SelectMergeProfile", w.json(profileTypeID=CPU, labelSelector=sel))
    strings = res["stringTable"]
    assert (strings[int(res["sampleType"][0]["type"])],
            strings[int(res["sampleType"][0]["unit"])]) == ("cpu", "nanoseconds")
    raw = connect_proto(server, "SelectMergeProfile",
                        pb_string(1, CPU) + pb_string(2, sel) + pb_int(3, w.start) + pb_int(4, w.end))
    stacks, sample_type = pprof_stacks(raw)
    assert stacks == expected_stacks()
    assert sample_type == [("cpu", "nanoseconds")]
    assert pb_fields(raw).get(12) == [PERIOD]  # the senders' period survives the store

    q = f"{CPU}{{service_name=\"{SVC}\"}}"
    from urllib.parse import quote
    status, h, body = http_request(server.http_port, "GET",
                                   f"/pprof?query={quote(q)}&from={w.start}&until={w.end}")
    assert status == 200, body
    assert h["content-disposition"].startswith("attachment")
    stacks, _ = pprof_stacks(gzip.decompress(body))
    assert stacks == expected_stacks()
    assert pb_fields(gzip.decompress(body)).get(12) == [PERIOD]
    status, _, body = http_request(server.http_port, "GET",
                                   f"/pprof?query={quote(CPU + '{}')}&from=now-1h&until=now"
                                   f"&span_id={SPAN_A.hex()}")
    assert status == 200, body
    assert pprof_stacks(gzip.decompress(body))[0] == expected_stacks(span=SPAN_A)
    status, _, body = http_request(server.http_port, "GET", "/pprof?query=%7B%7D")
    assert status == 400 and b"profile type" in body


def test_render_and_page(loaded):
    server, w = loaded
    from urllib.parse import quote
    q = quote(f"{CPU}{{service_name=\"{SVC}\"}}")
    status, h, body = http_request(server.http_port, "GET",
                                   f"/pyroscope/render?query={q}&from=now-1h&until=now&format=json")
    assert status == 200, body
    doc = json.loads(body)
    fb = doc["flamebearer"]
    assert fb["numTicks"] == sum(expected_stacks().values())
    assert flamegraph_stacks({"names": fb["names"],
                              "levels": [{"values": l} for l in fb["levels"]]}) == expected_stacks()
    assert doc["metadata"]["name"] == "cpu"
    assert sum(doc["timeline"]["samples"]) == sum(expected_stacks().values())

    for path in ("/", "/ui"):
        status, h, body = http_request(server.http_port, "GET", path)
        assert status == 200 and h["content-type"].startswith("text/html")
        page = body.decode()
        assert "SelectMergeStacktraces" in page and "SelectMergeSpanProfile" in page
        for external in ("src=\"http", "href=\"http", "//cdn", "@import"):
            assert external not in page


# ---------------------------------------------------------------------------------------------
# Errors, tenants, restart
# ---------------------------------------------------------------------------------------------


def test_errors_name_the_problem(loaded):
    server, w = loaded
    res = connect_json(server, "SelectMergeStacktraces",
                       w.json(profileTypeID=CPU, labelSelector='{service_name=~"("}'), expect=400)
    assert res["code"] == "invalid_argument" and "label_selector" in res["message"]
    res = connect_json(server, "SelectMergeStacktraces",
                       w.json(profileTypeID=CPU, labelSelector='{service_name="x"'), expect=400)
    assert res["code"] == "invalid_argument"
    res = connect_json(server, "SelectMergeStacktraces", w.json(profileTypeID="cpu"), expect=400)
    assert res["code"] == "invalid_argument" and "profile_typeID" in res["message"]
    res = connect_json(server, "SelectMergeSpanProfile",
                       w.json(profileTypeID=CPU, spanSelector=["${__span.tags}"]), expect=400)
    assert res["code"] == "invalid_argument" and "span" in res["message"]
    res = connect_json(server, "LabelValues", w.json(matchers=["{a=}"], name="x"), expect=400)
    assert res["code"] == "invalid_argument" and "matchers[0]" in res["message"]
    res = connect_json(server, "SelectMergeStacktraces", {"start": "soon"}, expect=400)
    assert res["code"] == "invalid_argument" and "start" in res["message"]
    res = connect_json(server, "Diff", {}, expect=400)
    assert res["code"] == "invalid_argument" and res["message"].startswith("left: profile_typeID")
    res = connect_json(server, "NoSuchMethod", {}, expect=501)
    assert res["code"] == "unimplemented"
    with pytest.raises(grpc.RpcError) as e:
        grpc_call(server, "NoSuchMethod", b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as e:
        grpc_call(server, "SelectMergeStacktraces", pb_string(1, CPU) + pb_string(2, "{a=~\"[\"}"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status, h, body = http_request(server.http_port, "POST", "/querier.v1.QuerierService/ProfileTypes",
                                   body=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415 and json.loads(body)["code"] == "invalid_argument"
    status, _, body = http_request(server.http_port, "POST", "/querier.v1.QuerierService/ProfileTypes",
                                   body=b"\xff\xff", headers={"Content-Type": "application/proto"})
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"


def test_tenants_never_see_each_other(spanprof):
    start_ns = time.time_ns() - 20_000_000_000
    export_otlp(spanprof, start_ns, tenant="team-a")
    ingest_pprof(spanprof, start_ns, tenant="team-b")
    w = Window(start_ns)
    assert_flamegraph(merge_json(spanprof, w, tenant="team-a"), expected_stacks())
    assert_flamegraph(merge_json(spanprof, w, tenant="team-b"), expected_pprof_stacks())
    assert_flamegraph(merge_json(spanprof, w), {})  # anonymous
    assert_flamegraph(merge_json(spanprof, w, tenant="team-c"), {})
    assert_flamegraph(span_json(spanprof, w, [SPAN_A.hex()], tenant="team-b"), {})
    assert_flamegraph(span_json(spanprof, w, [SPAN_A.hex()], tenant="team-a"),
                      expected_stacks(span=SPAN_A))
    for tenant, want in (("team-a", [SVC]), ("team-b", [PY_SVC]), (None, [])):
        res = connect_json(spanprof, "LabelValues", w.json(name="service_name"), tenant)
        assert res.get("names", []) == want
    assert connect_json(spanprof, "ProfileTypes", w.json()) == {}
    # gRPC carries the tenant in metadata
    req = pb_string(1, CPU) + pb_string(2, "{}") + pb_int(3, w.start) + pb_int(4, w.end)
    fg = flamegraph_from_proto(pb_fields(grpc_call(spanprof, "SelectMergeStacktraces", req,
                                                   tenant="team-a"))[1][0])
    assert_flamegraph(fg, expected_stacks())


def answers(server, w):
    return (
        merge_json(server, w),
        span_json(server, w, [SPAN_A.hex()]),
        connect_json(server, "LabelValues", w.json(name="service_name")),
        connect_json(server, "SelectSeries", w.json(profileTypeID=CPU, labelSelector="{}", step=10,
                                                    groupBy=["service_name"])),
        connect_json(server, "ProfileTypes", w.json()),
    )


def test_same_answers_after_restart(spanprof_factory):
    first = spanprof_factory(name="node")
    start_ns = time.time_ns() - 20_000_000_000
    export_otlp(first, start_ns)
    ingest_pprof(first, start_ns)
    w = Window(start_ns)
    before = answers(first, w)
    every = dict(expected_stacks())
    every.update(expected_pprof_stacks())
    assert_flamegraph(before[0], every)
    assert first.stop() == 0  # SIGTERM
    second = spanprof_factory(name="node")  # same --data-dir
    assert second.data_dir == first.data_dir
    assert answers(second, w) == before
