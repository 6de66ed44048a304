"""The Pyroscope stand-in (tests/e2e/gopyro) checked against hand-made pushes, before any test
trusts it: its Go tests (main_test.go) push pprof built by hand through Pyroscope's generated
Connect client and query it back: same-series same-timestamp profiles collapsed (first kept;
-keep last; -compact=false sums; ms resolution), span ids (16 hex digits any case, bad ones
skipped, profile_id read as span_id, zero and negative samples dropped), series split by sample
labels (span_id and trace_id never; the series' own labels win), the inclusive [start, end] range
in ns, time_nanos 0 = arrival, one series per sample type, tenants, the flame graph layout and the
label selector parser. Then the built program over HTTP (Connect JSON, as the e2e tests use it).
"""
import base64
import gzip
import http.client
import json
import os
import subprocess

import pytest

from backends import GO, GO_BUILD_TIMEOUT, HERE, have_go

pytestmark = pytest.mark.skipif(not have_go(), reason="Go toolchain not installed")


def test_go_tests_of_the_stand_in():
    r = subprocess.run([GO, "test", "-count=1", "."], cwd=str(HERE / "gopyro"), capture_output=True, text=True,
                       timeout=GO_BUILD_TIMEOUT, env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]


def test_stand_in_over_http(gopyro):
    """A push and a span query through the built binary, Connect JSON both ways."""
    g = gopyro()
    # a pprof by hand: one sample main;work with span_id, one without
    prof = _pprof(ts=1_700_000_000_000_000_000, samples=[(["main", "work"], 30, "00000000000000aa"),
                                                          (["main", "idle"], 7, None)])
    body = {"series": [{"labels": [{"name": "__name__", "value": "process_cpu"},
                                   {"name": "service_name", "value": "svc"}],
                        "samples": [{"rawProfile": base64.b64encode(gzip.compress(prof)).decode(), "ID": "one"}]}]}
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    conn.request("POST", "/push.v1.PusherService/Push", json.dumps(body).encode(),
                 {"Content-Type": "application/json", "X-Scope-OrgID": "t"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    resp.read()
    conn.close()
    q = {"profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "labelSelector": '{service_name="svc"}',
         "start": "1700000000000", "end": "1700000000000", "spanSelector": ["00000000000000aa"]}
    fg = g.call("SelectMergeSpanProfile", q, tenant="t")["flamegraph"]
    assert fg["names"][0] == "total" and int(fg["total"]) == 30
    assert int(g.call("SelectMergeSpanProfile", q)["flamegraph"].get("total", 0)) == 0  # other tenant
    q["spanSelector"] = []
    assert int(g.call("SelectMergeStacktraces", q, tenant="t")["flamegraph"]["total"]) == 37
    [p] = g.profiles()
    assert p["tenant"] == "t" and p["profile_type"] == q["profileTypeID"] and p["id"] == "one"
    assert sorted((s["stack"], s["value"], s.get("span_id")) for s in p["samples"]) == [
        (["idle", "main"], 7, None), (["work", "main"], 30, "00000000000000aa")]
    assert [r["count"] for r in g.raw()] == [1]


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    key = _varint(num << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    return key + _varint(len(payload)) + payload


def _pprof(ts, samples):
    """A minimal pprof (perftools.profiles.Profile) written by hand: cpu/nanoseconds samples,
    one function and location per frame name, an optional span_id label."""
    strings = [""]

    def s(v):
        if v not in strings:
            strings.append(v)
        return strings.index(v)

    out = bytearray()
    out += _field(1, 2, _field(1, 0, s("cpu")) + _field(2, 0, s("nanoseconds")))  # sample_type
    locs = {}
    for stack, _, _ in samples:
        for name in stack:
            locs.setdefault(name, len(locs) + 1)
    for stack, value, span in samples:
        smp = bytearray()
        smp += _field(1, 2, b"".join(_varint(locs[n]) for n in reversed(stack)))  # leaf first
        smp += _field(2, 2, _varint(value))
        if span:
            smp += _field(3, 2, _field(1, 0, s("span_id")) + _field(2, 0, s(span)))
        out += _field(2, 2, bytes(smp))
    for name, i in locs.items():
        out += _field(4, 2, _field(1, 0, i) + _field(4, 2, _field(1, 0, i)))  # location: id, line{function}
        out += _field(5, 2, _field(1, 0, i) + _field(2, 0, s(name)))  # function: id, name
    out += _field(9, 0, ts)
    out += _field(11, 2, _field(1, 0, s("cpu")) + _field(2, 0, s("nanoseconds")))  # period_type
    out += _field(12, 0, 10_000_000)
    for v in strings:
        out += _field(6, 2, v.encode())
    return bytes(out)
