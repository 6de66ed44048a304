"""OTLP JSON profiles as the OpenTelemetry Collector writes them (`otlphttp` exporter with
`encoding: json`) are stored exactly as the same profiles sent as protobuf.

tests/e2e/gopdatajson is a Go program on the Collector's own pdata (go.opentelemetry.io/collector/
pdata v1.70.0, pdata/pprofile v0.164.0; go.sum pins them): it builds eBPF-shaped profiles — two
processes without service.name, thousands of Samples per Export with several timestamps each,
thread.id per Sample, CPU and off-CPU, unnamed native frames on mappings with GNU build ids, Go,
Python and kernel frames, links from some samples to spans of other threads — and the spans of
those threads, and posts every request twice as the exporter does (ExportRequest.MarshalProto /
MarshalJSON, which is pprofile.JSONMarshaler; gzip; Content-Type application/x-protobuf or
application/json; /v1development/profiles and /v1/traces): protobuf to tenant "pb", JSON to
tenant "js". The exporter's source (exporter/otlphttpexporter/otlp.go) marshals both encodings
from the same pdata, so resource attributes travel as string-table references (keyStrindex,
stringValueStrindex) in JSON as in protobuf.

Checks: both tenants answer identically (ProfileTypes, LabelValues, flame graphs per type and per
service over Connect JSON, /pyroscope/render, per-span folded profiles and Grafana's
SelectMergeSpanProfile for linked spans, the trace view's CPU / off-CPU time per span), and every
figure equals what the Go program computed from what it sent (stack totals per type, each span's
stacks: linked observations belong to the linked span and its parent, the others to the spans of
their thread that cover them, off-CPU intervals split across the thread's spans); /metrics counts
the JSON requests and no refusal.
"""
import json
import os
import random
import shutil
import subprocess
import time
from urllib.parse import quote

import pytest

from conftest import Spanprof, check_clean_exit
from e2e_helpers import http_request, scrape, wait_for_metric
from test_query import CPU, Window, connect_json, flamegraph_stacks

GO = shutil.which("go") or "/usr/local/go/bin/go"
HERE = os.path.dirname(os.path.abspath(__file__))
OFF = "off_cpu:off_cpu:nanoseconds::"
TYPES = (CPU, OFF)
TENANTS = ("pb", "js")  # protobuf, JSON

pytestmark = pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")


class Sent:
    """What the Go program says it sent (its stdout), computed from its own requests."""

    def __init__(self, text):
        self.totals = {t: {} for t in TYPES}  # type -> {stack root first: value}
        self.spans = {}  # span hex -> type -> {stack: value}
        self.linked = {}  # span hex -> parent hex
        self.trace = {}  # linked span hex -> its trace id
        self.services = []
        self.sent = {}  # (signal, encoding) -> (requests, items, samples)
        for line in text.splitlines():
            f = line.split("\t")
            if f[0] == "stack":
                self.totals[f[1]][tuple(f[2].split(";"))] = int(f[3])
            elif f[0] == "span":
                self.spans.setdefault(f[1], {t: {} for t in TYPES})[f[2]][tuple(f[3].split(";"))] = int(f[4])
            elif f[0] == "linked":
                self.linked[f[1]] = f[2]
                self.trace[f[1]] = f[3]
            elif f[0] == "service":
                self.services.append(f[1])
            elif f[0] == "sent":
                self.sent[(f[1], f[2])] = tuple(int(x) for x in f[3:])
            else:
                raise AssertionError(f"unexpected line from gopdatajson: {line!r}")

    def span(self, h, typ):
        return self.spans.get(h, {}).get(typ, {})


@pytest.fixture(scope="module")
def gopdatajson(tmp_path_factory):
    out = tmp_path_factory.mktemp("gopdatajson") / "gopdatajson"
    r = subprocess.run([GO, "build", "-o", str(out), "."], cwd=os.path.join(HERE, "gopdatajson"),
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.fixture(scope="module")
def fed(tmp_path_factory, gopdatajson):
    # no debuginfod: the unnamed native frames show as "native 0x<address> <file>" at once
    server = Spanprof(tmp_path_factory.mktemp("pdata-json"), ["--debuginfod-urls", "none"])
    server.start()
    try:
        t0 = (time.time_ns() - 60 * 10**9) // 10**6 * 10**6
        r = subprocess.run([gopdatajson, "-url", f"http://{server.http_target}", "-pb-tenant", "pb",
                            "-json-tenant", "js", "-t0", str(t0), "-seed", "22"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"gopdatajson failed:\n{r.stderr}\n--- server ---\n{server.stderr()[-4000:]}"
        assert "rejected=" not in r.stderr, r.stderr
        sent = Sent(r.stdout)
    except BaseException:
        server.stop()
        raise
    yield server, sent, Window(t0)
    check_clean_exit(server)


def both(fn):
    """fn(tenant) for both tenants; asserts the answers are equal and returns one."""
    pb, js = fn("pb"), fn("js")
    assert pb == js, f"protobuf tenant:\n{str(pb)[:1500]}\nJSON tenant:\n{str(js)[:1500]}"
    return pb


def get(server, path, tenant):
    status, h, body = http_request(server.http_port, "GET", path, headers={"X-Scope-OrgID": tenant})
    assert status == 200, (path, tenant, status, body[:300])
    return body


def parse_folded(text):
    out = {}
    for line in text.splitlines():
        stack, value = line.rsplit(" ", 1)
        out[tuple(stack.split(";"))] = out.get(tuple(stack.split(";")), 0) + int(value)
    return out


def test_the_exporters_requests_are_accepted_and_counted(fed):
    server, sent, _ = fed
    (tr_req, spans, _), (pr_req, profiles, samples) = sent.sent[("traces", "json")], sent.sent[("profiles", "json")]
    assert sent.sent[("traces", "proto")] == sent.sent[("traces", "json")]
    assert sent.sent[("profiles", "proto")] == sent.sent[("profiles", "json")]
    assert samples >= 2 * 2000 and pr_req == 2  # thousands of Samples per Export
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_accepted_items_total", "profile") >= 2 * profiles
                        and m.total("spanprof_accepted_items_total", "trace") >= 2 * spans)
    assert m.total("spanprof_otlp_http_json_profiles_requests_total") == pr_req
    assert m.total("spanprof_otlp_http_json_traces_requests_total") == tr_req
    assert m.total("spanprof_accepted_items_total", "profile") == 2 * profiles
    assert m.total("spanprof_accepted_items_total", "trace") == 2 * spans
    assert m.total("spanprof_rejected_items_total") == 0
    refused = {(lab.get("endpoint"), lab.get("reason")): v for n, lab, v in m.samples
               if n == "spanprof_requests_refused_total" and v}
    assert refused == {}


def test_profile_types_and_services_match(fed):
    server, sent, w = fed
    types = both(lambda t: connect_json(server, "ProfileTypes", w.json(), t))
    assert sorted(p["ID"] for p in types["profileTypes"]) == sorted(TYPES)
    # no service.name on the profiles: each process learned its service from its spans
    for typ in TYPES:
        names = both(lambda t: connect_json(server, "LabelValues", w.json(
            name="service_name", matchers=[f'{{__profile_type__="{typ}"}}']), t))
        assert names["names"] == sorted(sent.services)
    pids = both(lambda t: connect_json(server, "LabelValues", w.json(name="process_pid"), t))
    assert pids.get("names") == ["4100", "4200"]


def test_flame_graphs_match_per_type_and_service(fed):
    server, sent, w = fed
    for typ in TYPES:
        fg = both(lambda t: connect_json(server, "SelectMergeStacktraces",
                                         w.json(profileTypeID=typ, labelSelector="{}"), t)["flamegraph"])
        assert flamegraph_stacks(fg) == sent.totals[typ], typ
        assert int(fg["total"]) == sum(sent.totals[typ].values())
        # the unnamed native frames: named by address and file, as sent
        if typ == CPU:
            assert any(n.startswith("native 0x") and n.endswith(" libc.so.6") for n in fg["names"])
        for svc in sent.services:
            sel = f'{{service_name="{svc}"}}'
            fg = both(lambda t: connect_json(server, "SelectMergeStacktraces",
                                             w.json(profileTypeID=typ, labelSelector=sel), t)["flamegraph"])
            got = flamegraph_stacks(fg)
            assert got and set(got) < set(sent.totals[typ])
            assert got == {s: v for s, v in sent.totals[typ].items() if s in got}


def test_render_matches(fed):
    server, sent, _ = fed
    for typ in TYPES:
        q = quote(f"{typ}{{}}")
        doc = both(lambda t: json.loads(get(server, f"/pyroscope/render?query={q}&from=now-1h&until=now"
                                                    f"&format=json", t)))
        fb = doc["flamebearer"]
        assert fb["numTicks"] == sum(sent.totals[typ].values())
        assert flamegraph_stacks({"names": fb["names"], "levels": [{"values": l} for l in fb["levels"]]}) \
            == sent.totals[typ]


def checked_spans(sent):
    """Every linked span and its parent, and a seeded choice of spans correlated by thread."""
    linked = set(sent.linked) | set(sent.linked.values())
    others = sorted(h for h in sent.spans if h not in linked)
    return sorted(linked) + random.Random(22).sample(others, 24)


def test_span_profiles_match(fed):
    server, sent, _ = fed
    spans = checked_spans(sent)
    assert len(sent.linked) >= 10
    for h in spans:
        for typ in TYPES:
            body = both(lambda t: get(server, f"/api/v1/spans/{h}/profile?format=folded"
                                              f"&profile_type={quote(typ)}", t))
            assert parse_folded(body.decode()) == sent.span(h, typ), (h, typ)
    assert any(sent.span(h, OFF) for h in spans) and all(sent.span(h, CPU) for h in sent.linked)


def test_grafana_span_queries_on_linked_spans_match(fed):
    server, sent, w = fed
    for h in sorted(sent.linked):
        fg = both(lambda t: connect_json(server, "SelectMergeSpanProfile", w.json(
            profileTypeID=CPU, labelSelector="{}", spanSelector=[h]), t).get("flamegraph", {}))
        assert flamegraph_stacks(fg) == sent.span(h, CPU), h


def test_trace_view_matches(fed):
    """The trace of each linked span: the same spans with the same CPU and off-CPU time."""
    server, sent, _ = fed

    def trace(tenant, trace_id):
        doc = json.loads(get(server, f"/api/v1/traces/{trace_id}", tenant))
        for span in doc["spans"]:  # the page link names the tenant: the one expected difference
            assert span["flame_graph_url"].endswith(f"?tenant={tenant}")
            span["flame_graph_url"] = span["flame_graph_url"].split("?")[0]
        return doc

    for h, trace_id in sorted(sent.trace.items()):
        doc = both(lambda t: trace(t, trace_id))
        assert {h, sent.linked[h]} <= {s["span_id"] for s in doc["spans"]}
        for s in doc["spans"]:
            cpu, off = sent.span(s["span_id"], CPU), sent.span(s["span_id"], OFF)
            assert (s["cpu_time_ns"], s["off_cpu_time_ns"]) == (sum(cpu.values()), sum(off.values())), s
