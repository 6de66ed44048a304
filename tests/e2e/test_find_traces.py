"""Finding traces (GET /api/v1/services, GET /api/v1/traces?service=): the way into a trace for
the page and the terminal client, against the real binary.

The scenario is test_api_v1's (a five-span trace over two services in one process, CPU samples
linked explicitly, a Go pprof with span_id labels), plus later traces of spans only. Expected
values are computed here from that input: a trace's CPU is what was attached to its outermost
span in the process, which every linked sample reaches (a sample is attached to its span and the
span's ancestors in its process), so each sample counts once.
"""

import json
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from e2e_helpers import RPC_TIMEOUT, _resource, http_request, traces_stub
from test_api_v1 import (PERIOD, PPROF, PY_SVC, ROOT, SAMPLES, SPAN_PID, SPANS, SVC, TRACE,
                         chain, load)


def get(server, path, tenant=None):
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    status, h, body = http_request(server.http_port, "GET", path, headers=headers)
    return status, h, body


def get_json(server, path, expect=200, tenant=None):
    status, h, body = get(server, path, tenant)
    assert status == expect, f"GET {path}: {status} {body[:400]!r}"
    assert h["content-type"].startswith("application/json"), h
    return json.loads(body)


def later_traces(server, t0, n):
    """n one-span traces of SVC, 1 s apart after t0 + 2 s: (trace id hex, start ns) newest last."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.CopyFrom(_resource(SPAN_PID, SVC))
    ss = rs.scope_spans.add()
    out = []
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id = bytes([0xA0 + i]) * 16
        sp.span_id = bytes([0xB0 + i]) * 8
        sp.name = f"GET /later/{i}"
        sp.start_time_unix_nano = t0 + (2 + i) * 1_000_000_000
        sp.end_time_unix_nano = sp.start_time_unix_nano + 30_000_000
        out.append((sp.trace_id.hex(), sp.start_time_unix_nano))
    with grpc.insecure_channel(server.grpc_target) as ch:
        r = traces_stub(ch).Export(req, timeout=RPC_TIMEOUT)
        assert not r.partial_success.rejected_spans, r
    return out


def test_services_and_a_services_traces_with_their_cpu(spanprof):
    server = spanprof
    t0 = load(server)
    assert get_json(server, "/api/v1/services") == {"services": sorted([SVC, PY_SVC])}
    # a range without spans: none
    assert get_json(server, "/api/v1/services?from=now-10d&until=now-9d") == {"services": []}

    later = later_traces(server, t0, 3)
    doc = get_json(server, f"/api/v1/traces?service={SVC}")
    assert doc["service"] == SVC and doc["truncated"] is False
    ids = [t["trace_id"] for t in doc["traces"]]
    assert ids == [h for h, _ in reversed(later)] + [TRACE.hex()], "newest first"

    full = doc["traces"][-1]
    cpu = sum(nobs * PERIOD for _, nobs, sp in SAMPLES if ROOT in chain(sp))
    cpu += sum(count * PERIOD for _, count, sp in PPROF if ROOT in chain(sp))
    starts = [t0 + off * 1_000_000 for *_, off, _, _ in SPANS]
    ends = [t0 + (off + dur) * 1_000_000 for *_, off, dur, _ in SPANS]
    assert full == {
        "trace_id": TRACE.hex(), "root_span_id": ROOT.hex(), "root_name": "GET /checkout",
        "root_service": SVC, "start_ns": min(starts), "duration_ns": max(ends) - min(starts),
        "span_count": len(SPANS), "cpu_time_ns": cpu, "off_cpu_time_ns": 0,
    }
    one = doc["traces"][0]
    assert one["span_count"] == 1 and one["duration_ns"] == 30_000_000 and one["cpu_time_ns"] == 0
    assert one["root_name"] == "GET /later/2" and one["start_ns"] == later[-1][1]

    # the Python service's span sits in the same trace
    py = get_json(server, f"/api/v1/traces?service={PY_SVC}")
    assert [t["trace_id"] for t in py["traces"]] == [TRACE.hex()]
    assert py["traces"][0]["root_span_id"] == ROOT.hex()

    # limit: the newest, and truncated says there were more
    lim = get_json(server, f"/api/v1/traces?service={SVC}&limit=2")
    assert [t["trace_id"] for t in lim["traces"]] == ids[:2] and lim["truncated"] is True
    # a range that holds only the first trace
    t = t0 // 1_000_000_000
    ranged = get_json(server, f"/api/v1/traces?service={SVC}&from={t - 1}&until={t + 2}")
    assert [x["trace_id"] for x in ranged["traces"]] == [TRACE.hex()]


def test_unknown_service_tenants_and_bad_requests(spanprof):
    server = spanprof
    load(server, tenant="team-a")
    assert get_json(server, f"/api/v1/traces?service={SVC}") == {
        "service": SVC, "traces": [], "truncated": False}
    assert get_json(server, "/api/v1/services") == {"services": []}
    assert get_json(server, "/api/v1/services", tenant="team-a")["services"] == sorted([SVC, PY_SVC])
    a = get_json(server, f"/api/v1/traces?service={SVC}", tenant="team-a")
    assert [t["trace_id"] for t in a["traces"]] == [TRACE.hex()]
    assert get_json(server, "/api/v1/traces?service=nobody", tenant="team-a")["traces"] == []
    for path, word in [("/api/v1/traces", b"service"),
                       (f"/api/v1/traces?service={SVC}&limit=0", b"limit"),
                       (f"/api/v1/traces?service={SVC}&limit=abc", b"limit"),
                       (f"/api/v1/traces?service={SVC}&from=yesterday", b"from"),
                       (f"/api/v1/traces?service={SVC}&from=now-1h&until=now-2h", b"until")]:
        status, _, body = get(server, path, tenant="team-a")
        assert status == 400 and word in body, (path, status, body)


def test_trace_answer_tells_the_minimum_span_duration(spanprof_factory):
    """The page marks spans shorter than the correlator's minimum: the trace answer says it."""
    for args, want in (([], 20_000_000), (["--span-min-duration", "35ms"], 35_000_000)):
        server = spanprof_factory(args)
        load(server)
        doc = get_json(server, f"/api/v1/traces/{TRACE.hex()}")
        assert doc["span_min_duration_ns"] == want, (args, doc.get("span_min_duration_ns"))
