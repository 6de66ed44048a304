"""Pyroscope ingest paths end to end: what Pyroscope SDKs and Grafana Alloy send.

Profiles are written by Go's own runtime/pprof (tests/e2e/gopprof, run with the Go toolchain), sent
to /ingest (raw gzip pprof, the Go SDK's multipart form with sample_type_config) and to
push.v1.PusherService/Push (Connect proto and JSON), and read back through the query API. The
expected per-stack totals come from `go tool pprof -raw` on the very files that were sent, so the
reference is Go's reader, not ours.
"""
import base64
import collections
import json
import os
import shutil
import subprocess
import time

import pytest

from e2e_helpers import http_request, ld, varint, tag
from test_query import Window, connect_json, flamegraph_stacks

GO = shutil.which("go") or "/usr/local/go/bin/go"
HERE = os.path.dirname(os.path.abspath(__file__))
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
ALLOC = "memory:alloc_space:bytes:space:bytes"

pytestmark = pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")


@pytest.fixture(scope="module")
def go_profiles(tmp_path_factory):
    out = tmp_path_factory.mktemp("gopprof")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "off",
           "GOCACHE": os.environ.get("GOCACHE", str(out / "gocache"))}
    r = subprocess.run([GO, "run", os.path.join(HERE, "gopprof", "main.go"), str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    return {"cpu": (out / "cpu.pb.gz").read_bytes(), "heap": (out / "heap.pb.gz").read_bytes(),
            "dir": out}


def raw_totals(path, value_index):
    """Per-stack totals (function names root first) of one sample type, from go tool pprof -raw."""
    r = subprocess.run([GO, "tool", "pprof", "-raw", str(path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    samples, locations, section, cur = [], {}, None, None
    import re
    for line in r.stdout.splitlines():
        if line.startswith("Samples:"):
            section = "s"
            continue
        if line.startswith("Locations"):
            section = "l"
            continue
        if line.startswith("Mappings"):
            section = "m"
            continue
        if section == "s":
            m = re.match(r"^\s*((?:-?\d+\s+)+?)(-?\d+):\s*((?:\d+\s*)*)$", line)
            if m:
                values = [int(x) for x in (m.group(1) + m.group(2)).split()]
                samples.append((values, [int(x) for x in m.group(3).split()]))
        elif section == "l":
            m = re.match(r"^\s*(\d+):\s+0x[0-9a-f]+(?:\s+M=\d+)?\s+(.*?)\s+(\S*):(\d+)(?::\d+)?\s+s=\d+$", line)
            if m:
                cur = int(m.group(1))
                locations[cur] = [m.group(2)]
                continue
            m = re.match(r"^\s+(\S.*?)\s+(\S*):(\d+)(?::\d+)?\s+s=\d+$", line)
            if m and cur is not None:
                locations[cur].append(m.group(1))
    totals = collections.Counter()
    for values, locs in samples:
        names = [n for loc in locs for n in locations[loc]]
        if values[value_index]:
            totals[tuple(reversed(names))] += values[value_index]
    return totals


def query_stacks(server, type_id, service, window):
    body = window.json(profileTypeID=type_id, labelSelector=f'{{service_name="{service}"}}')
    return flamegraph_stacks(connect_json(server, "SelectMergeStacktraces", body)["flamegraph"])


def profile_types(server, window):
    r = connect_json(server, "ProfileTypes", window.json())
    return {t["ID"] if "ID" in t else t["id"] for t in r.get("profileTypes", [])}


def test_ingest_go_cpu_pprof_round_trips(spanprof, go_profiles):
    t0 = time.time_ns()
    status, _, body = http_request(spanprof.http_port, "POST",
                                   "/ingest?name=goapp.cpu{env=e2e}&format=pprof&spyName=gospy",
                                   body=go_profiles["cpu"],
                                   headers={"Content-Type": "application/octet-stream"})
    assert status == 200, body
    want = raw_totals(go_profiles["dir"] / "cpu.pb.gz", 1)  # cpu/nanoseconds column
    assert want, "the Go CPU profile has no samples"
    w = Window(t0)
    assert CPU in profile_types(spanprof, w)
    assert query_stacks(spanprof, CPU, "goapp.cpu", w) == dict(want)
    values = connect_json(spanprof, "LabelValues", w.json(name="env"))
    assert values.get("names") == ["e2e"]


def test_ingest_go_sdk_multipart_heap_round_trips(spanprof, go_profiles):
    t0 = time.time_ns()
    boundary = "spanprof-e2e-boundary"
    config = {"alloc_space": {"units": "bytes", "aggregation": "sum", "display-name": "alloc_space_bytes"},
              "inuse_space": {"units": "bytes", "aggregation": "average"}}
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + go_profiles["heap"] + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"sample_type_config\"; "
        f"filename=\"sample_type_config.json\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        f"{json.dumps(config)}\r\n--{boundary}--\r\n").encode()
    status, _, resp = http_request(spanprof.http_port, "POST",
                                   f"/ingest?name=goheap&from={t0 // 10**9}&until={t0 // 10**9 + 10}",
                                   body=body,
                                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, resp
    w = Window(t0)
    types = profile_types(spanprof, w)
    assert {ALLOC, "memory:inuse_space:bytes:space:bytes", "memory:alloc_objects:count:space:bytes"} <= types
    want = raw_totals(go_profiles["dir"] / "heap.pb.gz", 1)  # alloc_space column
    assert query_stacks(spanprof, ALLOC, "goheap", w) == dict(want)


def push_request(labels, raw_profiles):
    """push.v1.PushRequest{series: [RawProfileSeries{labels, samples: [RawSample{raw_profile}]}]}"""
    series = b"".join(ld(1, ld(1, k.encode()) + ld(2, v.encode())) for k, v in labels)
    series += b"".join(ld(2, ld(1, raw)) for raw in raw_profiles)
    return ld(1, series)


def test_push_connect_proto_and_json(spanprof, go_profiles):
    t0 = time.time_ns()
    want = dict(raw_totals(go_profiles["dir"] / "cpu.pb.gz", 1))
    req = push_request([("service_name", "pushed-proto"), ("__name__", "process_cpu")], [go_profiles["cpu"]])
    status, h, body = http_request(spanprof.http_port, "POST", "/push.v1.PusherService/Push", body=req,
                                   headers={"Content-Type": "application/proto",
                                            "Connect-Protocol-Version": "1"})
    assert status == 200, body
    assert h.get("content-type") == "application/proto"
    js = {"series": [{"labels": [{"name": "service_name", "value": "pushed-json"}],
                      "samples": [{"rawProfile": base64.b64encode(go_profiles["cpu"]).decode(), "ID": "x"}]}]}
    status, h, body = http_request(spanprof.http_port, "POST", "/push.v1.PusherService/Push",
                                   body=json.dumps(js).encode(),
                                   headers={"Content-Type": "application/json"})
    assert status == 200, body
    assert json.loads(body) == {}
    w = Window(t0)
    assert query_stacks(spanprof, CPU, "pushed-proto", w) == want
    assert query_stacks(spanprof, CPU, "pushed-json", w) == want


def test_push_errors_are_connect_errors(spanprof):
    status, h, body = http_request(spanprof.http_port, "POST", "/push.v1.PusherService/Push",
                                   body=b"\xff\xff garbage",
                                   headers={"Content-Type": "application/proto"})
    assert status == 400
    err = json.loads(body)
    assert err["code"] == "invalid_argument" and "PushRequest" in err["message"]
    bad = push_request([("service_name", "x")], [b"not a pprof"])
    status, _, body = http_request(spanprof.http_port, "POST", "/push.v1.PusherService/Push", body=bad,
                                   headers={"Content-Type": "application/proto"})
    assert status == 400 and "series[0].samples[0]" in json.loads(body)["message"]


def test_span_id_labels_become_links_and_bad_ones_are_named(spanprof):
    """A pprof from otel-profiling-go carries span_id labels; a malformed one is a clear error."""
    from test_query import pprof_bytes
    t0 = time.time_ns()
    status, _, body = http_request(spanprof.http_port, "POST", "/ingest?name=query-pyapp&format=pprof",
                                   body=pprof_bytes(t0), headers={"Content-Type": "application/octet-stream"})
    assert status == 200, body
    w = Window(t0)
    fg = connect_json(spanprof, "SelectMergeSpanProfile",
                      w.json(profileTypeID=CPU, labelSelector="{}", spanSelector=["c0ffee00c0ffee01"]))
    assert flamegraph_stacks(fg.get("flamegraph", {})) == {("py_main", "py_handler", "py_work"): 30_000_000}


def test_folded_collapsed_stacks(spanprof):
    t0 = time.time_ns()
    text = b"main;work;hash 7\nmain;work 3\nmain;gc 2\n"
    status, _, body = http_request(
        spanprof.http_port, "POST",
        f"/ingest?name=folded-app.cpu{{region=eu}}&format=folded&sampleRate=100&from={t0 // 10**9}",
        body=text, headers={"Content-Type": "text/plain"})
    assert status == 200, body
    got = query_stacks(spanprof, CPU, "folded-app", Window(t0))
    assert got == {("main", "work", "hash"): 70_000_000, ("main", "work"): 30_000_000,
                   ("main", "gc"): 20_000_000}
    status, _, body = http_request(spanprof.http_port, "POST", "/ingest?name=x&format=folded",
                                   body=b"main;work seven\n", headers={"Content-Type": "text/plain"})
    assert status == 400 and b"line 1" in body


def test_ingest_without_name_is_rejected(spanprof):
    status, _, body = http_request(spanprof.http_port, "POST", "/ingest?format=pprof", body=b"x")
    assert status == 400 and b"name" in body


def test_pyroscope_ingest_alias_and_time_units(spanprof):
    """/pyroscope/ingest is /ingest; from/until in µs (as some SDKs send) land at the right time."""
    t0 = time.time_ns() - 3_600 * 10**9  # an hour ago
    text = b"main;old_work 4\n"
    status, _, body = http_request(
        spanprof.http_port, "POST",
        f"/pyroscope/ingest?name=timed-app.cpu&format=folded&from={t0 // 1000}&until={t0 // 1000 + 10**7}",
        body=text, headers={"Content-Type": "text/plain"})
    assert status == 200, body
    w = Window(t0)
    w.end = (t0 // 10**6) + 120_000  # only the hour-old window: found there, so the time was read right
    assert query_stacks(spanprof, CPU, "timed-app", w) == {("main", "old_work"): 40_000_000}


def test_push_without_service_name_is_refused(spanprof, go_profiles):
    req = push_request([("__name__", "process_cpu")], [go_profiles["cpu"]])
    status, _, body = http_request(spanprof.http_port, "POST", "/push.v1.PusherService/Push", body=req,
                                   headers={"Content-Type": "application/proto"})
    assert status == 400 and "service_name" in json.loads(body)["message"]


def raw_frames(path):
    """{(function, file, line)} of every frame of the Locations section of go tool pprof -raw."""
    import re
    r = subprocess.run([GO, "tool", "pprof", "-raw", str(path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    out, section = set(), None
    for line in r.stdout.splitlines():
        if line.startswith("Locations"):
            section = "l"
            continue
        if line.startswith("Mappings"):
            break
        if section == "l":
            m = re.match(r"^\s*(?:\d+:\s+0x[0-9a-f]+(?:\s+M=\d+)?\s+)?(\S.*?)\s+(\S*):(\d+)(?::\d+)?\s+s=\d+$",
                         line)
            if m:
                out.add((m.group(1), m.group(2), int(m.group(3))))
    return out


def test_pprof_download_keeps_file_line_and_address(spanprof, go_profiles, tmp_path):
    """The Go SDK sends file and line; the download gives them back, as go tool pprof reads them:
    -raw lists the same (function, file, line) frames as the file that was sent, and -list finds
    the source of the hot function."""
    t0 = time.time_ns()
    status, _, body = http_request(spanprof.http_port, "POST",
                                   "/ingest?name=golines&format=pprof", body=go_profiles["cpu"],
                                   headers={"Content-Type": "application/octet-stream"})
    assert status == 200, body
    from urllib.parse import quote
    w = Window(t0)
    q = quote(CPU + '{service_name="golines"}')
    status, _, data = http_request(spanprof.http_port, "GET",
                                   f"/pprof?query={q}&from={w.start}&until={w.end}")
    assert status == 200, data[:300]
    got = tmp_path / "download.pb.gz"
    got.write_bytes(data)
    sent = raw_frames(go_profiles["dir"] / "cpu.pb.gz")
    assert sent and all(line > 0 for _, _, line in sent if _.startswith("main."))
    assert raw_frames(got) == sent
    r = subprocess.run([GO, "tool", "pprof", "-list", "main.hashLoop", str(got)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "ROUTINE" in r.stdout and "main.go" in r.stdout, r.stdout[:500]
