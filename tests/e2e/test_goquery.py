"""The query API as Grafana calls it, against a server fed by the correlation scenario.

tests/e2e/goquery is a Go program built from the Go module proxy (go.sum pins it): the generated
querierv1connect client of github.com/grafana/pyroscope/api on connectrpc.com/connect, default
codec (application/proto), over an http.Client that speaks HTTP/1.1 only — Grafana's Pyroscope
data source in a few lines. It runs a plan of calls (every method Grafana, Tempo and the Profiles
app use) and prints the answers; this test checks them against corr_scenario's independently
computed expectations: totals per span (every span of the scenario), per service, per time range,
series points, the pprof answer, and Connect errors for a malformed span id and selector.

The plan and its checks are shared with test_query_json.py, which sends the same calls as
Connect JSON with curl.
"""
import json
import os
import shutil
import subprocess

import pytest

import corr_scenario as cs
from test_query import flamegraph_stacks

GO = shutil.which("go") or "/usr/local/go/bin/go"
HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = 10 * cs.SEC  # the store keeps values per 10 s bucket: ranges select whole buckets
NON_CPU_SAMPLE_TYPES = {"wall", "alloc_space", "off_cpu"}


# ---------------------------------------------------------------------------------------------
# Expectations from the scenario
# ---------------------------------------------------------------------------------------------


def ms(ns):
    return ns // cs.MS


def in_range(t, start_ns, end_ns):
    """The store counts an observation in the range that holds its 10 s bucket's start."""
    b = t // BUCKET * BUCKET
    return start_ns <= b < end_ns


def cpu_leaves(scn, pred=lambda s: True, start_ns=None, end_ns=None):
    """{leaf: value} of the CPU samples with pred(sample), observations within the range."""
    out = {}
    for s in scn.samples:
        if s.kind != "cpu" or not pred(s):
            continue
        v = sum(v for t, v in s.observations() if start_ns is None or in_range(t, start_ns, end_ns))
        if v:
            out[s.leaf] = v
    return out


def leaves(stacks):
    out = {}
    for stack, v in stacks.items():
        out[stack[-1]] = out.get(stack[-1], 0) + v
    return out


def fg_leaves(resp):
    fg = (resp or {}).get("flamegraph") or {}
    return leaves(flamegraph_stacks(fg))


def pprof_json_leaves(p):
    """googlev1.Profile in protobuf JSON → {leaf function name: value of the first sample type}."""
    strings = p.get("stringTable", [])
    funcs = {str(f["id"]): strings[int(f.get("name", 0))] for f in p.get("function", [])}
    locs = {str(loc["id"]): [funcs[str(ln["functionId"])] for ln in loc.get("line", [])]
            for loc in p.get("location", [])}
    out = {}
    for s in p.get("sample", []):
        leaf = locs[str(s["locationId"][0])][0]  # leaf location first, innermost line first
        out[leaf] = out.get(leaf, 0) + int(s["value"][0])
    return out


def series_points(resp):
    """{tuple of sorted (name, value) labels: {timestamp ms: value}} without zero points."""
    out = {}
    for s in resp.get("series", []):
        key = tuple(sorted((l["name"], l["value"]) for l in s.get("labels", [])))
        pts = out.setdefault(key, {})
        for p in s.get("points", []):
            v = p.get("value", 0)
            if v:
                pts[int(p.get("timestamp", 0))] = pts.get(int(p.get("timestamp", 0)), 0) + v
    return out


class Plan:
    """Calls (id, method, request in protobuf JSON) and a check per call. A check gets
    {"response": …} or {"error": {"code", "message"}} and returns a list of problems."""

    def __init__(self):
        self.calls = []
        self.checks = {}

    def add(self, cid, method, request, check):
        assert cid not in self.checks
        self.calls.append({"id": cid, "method": method, "request": request})
        self.checks[cid] = check

    def run_checks(self, results):
        problems = []
        for c in self.calls:
            r = results.get(c["id"])
            if r is None:
                problems.append(f"{c['id']}: no answer")
                continue
            for p in self.checks[c["id"]](r):
                problems.append(f"{c['id']} ({c['method']}): {p}")
        return problems


def ok(get, want, what=""):
    """A check: the call succeeded and get(response) == want."""
    def check(r):
        if "error" in r:
            return [f"failed: {r['error']}"]
        got = get(r.get("response") or {})
        if got != want:
            return [f"{what}expected {_short(want)}\n      got {_short(got)}"]
        return []
    return check


def _short(x, n=700):
    s = repr(x)
    return s if len(s) <= n else s[:n] + "…"


def invalid_argument(*words):
    def check(r):
        if "error" not in r:
            return [f"expected invalid_argument, got an answer {_short(r.get('response'), 200)}"]
        e = r["error"]
        probs = []
        if e.get("code") != "invalid_argument":
            probs.append(f"code {e.get('code')!r}, expected 'invalid_argument' ({e.get('message')!r})")
        msg = e.get("message", "").lower()
        if not any(w in msg for w in words):
            probs.append(f"message {e.get('message')!r} names none of {words}")
        return probs
    return check


def build_plan(scn, exp):
    p = Plan()
    w = {"start": str(ms(scn.t0) - 60_000), "end": str(ms(scn.t0) + 3_600_000)}
    cpu = [s for s in scn.samples if s.kind == "cpu"]
    services = sorted({s.resource.service for s in cpu})

    # -- metadata ----------------------------------------------------------------------------
    def types_check(r):
        if "error" in r:
            return [f"failed: {r['error']}"]
        types = r.get("response", {}).get("profileTypes", [])
        probs = []
        cpu_t = [t for t in types if t.get("ID") == cs.CPU]
        if cpu_t != [{"ID": cs.CPU, "name": "process_cpu", "sampleType": "cpu", "sampleUnit": "nanoseconds",
                      "periodType": "cpu", "periodUnit": "nanoseconds"}]:
            probs.append(f"CPU type: {cpu_t}")
        others = {t.get("sampleType") for t in types if t.get("ID") != cs.CPU}
        if others != NON_CPU_SAMPLE_TYPES:
            probs.append(f"other sample types {others}, expected {NON_CPU_SAMPLE_TYPES}")
        return probs
    p.add("types", "ProfileTypes", dict(w), types_check)
    p.add("types-1970", "ProfileTypes", {"start": "1000", "end": "4000"},
          ok(lambda r: r.get("profileTypes", []), []))

    cpu_matcher = f'{{__profile_type__="{cs.CPU}"}}'

    def names_check(r):
        if "error" in r:
            return [f"failed: {r['error']}"]
        names = r.get("response", {}).get("names", [])
        want = {"__name__", "__profile_type__", "service_name", "host_name", "container_id", "k8s_pod_uid"}
        probs = [] if want <= set(names) else [f"missing label names {want - set(names)} in {names}"]
        if names != sorted(names):
            probs.append(f"not sorted: {names}")
        return probs
    p.add("label-names", "LabelNames", dict(w, matchers=[cpu_matcher]), names_check)
    p.add("services", "LabelValues", dict(w, name="service_name", matchers=[cpu_matcher]),
          ok(lambda r: r.get("names", []), services))
    hosts = sorted({s.resource.attrs["host.name"] for s in cpu if "host.name" in s.resource.attrs})
    p.add("hosts", "LabelValues", dict(w, name="host_name", matchers=[cpu_matcher]),
          ok(lambda r: r.get("names", []), hosts))
    beta_ctrs = sorted({s.resource.attrs["container.id"] for s in cpu if s.resource.service == "svc-beta"})
    p.add("containers-of-beta", "LabelValues",
          dict(w, name="container_id", matchers=['{service_name="svc-beta"}']),
          ok(lambda r: r.get("names", []), beta_ctrs))
    alpha_sets = sorted({tuple(sorted([("__profile_type__", cs.CPU)] + (
        [("host_name", s.resource.attrs["host.name"])] if "host.name" in s.resource.attrs else [])))
        for s in cpu if s.resource.service == "svc-alpha"})
    p.add("series-alpha", "Series",
          dict(w, matchers=[f'{{service_name="svc-alpha", __profile_type__="{cs.CPU}"}}'],
               labelNames=["__profile_type__", "host_name"]),
          ok(lambda r: sorted(tuple(sorted((l["name"], l["value"]) for l in ls.get("labels", [])))
                              for ls in r.get("labelsSet", [])), alpha_sets))

    # -- flame graphs: per service, per time range, per span ----------------------------------
    def merge(sel="{}", **kw):
        return dict(w, profileTypeID=cs.CPU, labelSelector=sel, **kw)

    p.add("merge-all", "SelectMergeStacktraces", merge(), ok(fg_leaves, cpu_leaves(scn)))
    for svc in services:
        p.add(f"merge-{svc}", "SelectMergeStacktraces", merge(f'{{service_name="{svc}"}}'),
              ok(fg_leaves, cpu_leaves(scn, lambda s, svc=svc: s.resource.service == svc)))
    p.add("merge-host-b", "SelectMergeStacktraces", merge('{service_name="svc-alpha", host_name="host-b"}'),
          ok(fg_leaves, cpu_leaves(scn, lambda s: s.resource.attrs.get("host.name") == "host-b")))
    # Range ends stay off bucket boundaries: whether a bucket that starts exactly at `end` is in
    # is the server's choice (Pyroscope's end is inclusive).
    for a, b in ((0, 9.999), (10, 19.999), (0, 5), (5, 15)):
        start, end = scn.t0 + a * cs.SEC, scn.t0 + int(b * cs.SEC)
        p.add(f"merge-{a}s-{round(b)}s", "SelectMergeStacktraces",
              dict(merge(), start=str(ms(start)), end=str(ms(end))),
              ok(fg_leaves, cpu_leaves(scn, start_ns=start, end_ns=end)))

    per_span = exp.per_span(scn, "cpu")
    for span in scn.spans:
        p.add(f"span-{span.hex}", "SelectMergeSpanProfile",
              dict(w, profileTypeID=cs.CPU, labelSelector="{}", spanSelector=[span.hex]),
              ok(fg_leaves, per_span[span.hex], f"span {span.label}: "))
    # span_selector of SelectMergeStacktraces (the newer way Grafana asks)
    picked = _picked_spans(scn, exp)
    for span in picked:
        p.add(f"merge-span-{span.hex}", "SelectMergeStacktraces", merge(spanSelector=[span.hex]),
              ok(fg_leaves, per_span[span.hex], f"span {span.label}: "))
    # labels still apply with a span selector
    a1span = next(s for s in picked if s.resource.service == "svc-alpha")
    p.add("merge-span-other-service", "SelectMergeStacktraces",
          merge('{service_name="svc-beta"}', spanSelector=[a1span.hex]), ok(fg_leaves, {}))
    # two spans that share no sample: their union
    x, y = _disjoint_pair(scn, exp)
    p.add("span-pair", "SelectMergeSpanProfile",
          dict(w, profileTypeID=cs.CPU, labelSelector="{}", spanSelector=[x.hex, y.hex.upper()]),
          ok(fg_leaves, {**per_span[x.hex], **per_span[y.hex]}, f"spans {x.label} + {y.label}: "))

    # -- series ----------------------------------------------------------------------------
    by_bucket = {}
    for s in cpu:
        for t, v in s.observations():
            k = (s.resource.service, ms(t // BUCKET * BUCKET))
            by_bucket[k] = by_bucket.get(k, 0) + v
    want10 = {}
    for (svc, ts), v in by_bucket.items():
        want10.setdefault((("service_name", svc),), {})[ts] = v
    p.add("series-step10", "SelectSeries",
          merge(groupBy=["service_name"], step=10, aggregation="TIME_SERIES_AGGREGATION_TYPE_SUM"),
          ok(series_points, want10))
    # AVERAGE: per step, the mean of the series' totals (svc-beta has one series per container)
    per_series = {}
    for s in cpu:
        if s.resource.service == "svc-beta":
            for t, v in s.observations():
                k = (s.resource.attrs["container.id"], ms(t // BUCKET * BUCKET))
                per_series[k] = per_series.get(k, 0) + v
    avg = {}
    for (_ctr, ts), v in per_series.items():
        avg.setdefault(ts, []).append(v)
    p.add("series-step10-average", "SelectSeries",
          merge('{service_name="svc-beta"}', groupBy=["service_name"], step=10,
                aggregation="TIME_SERIES_AGGREGATION_TYPE_AVERAGE"),
          ok(series_points, {(("service_name", "svc-beta"),): {ts: sum(v) / len(v) for ts, v in avg.items()}}))
    total = sum(cpu_leaves(scn).values())
    p.add("series-step60-total", "SelectSeries", merge(step=60, aggregation="TIME_SERIES_AGGREGATION_TYPE_SUM"),
          ok(lambda r: sum(sum(v.values()) for v in series_points(r).values()), total))

    def grid_check(r):
        if "error" in r:
            return [f"failed: {r['error']}"]
        start = int(w["start"])
        bad = [ts for pts in series_points(r["response"]).values() for ts in pts if (ts - start) % 60_000]
        return [f"points off the 60 s grid from start: {bad}"] if bad else []
    p.add("series-step60-grid", "SelectSeries", merge(step=60), grid_check)
    svc_totals = sorted(((sum(cpu_leaves(scn, lambda s, v=v: s.resource.service == v).values()), v)
                         for v in services), reverse=True)
    p.add("series-limit2", "SelectSeries", merge(groupBy=["service_name"], step=3600, limit=2),
          ok(lambda r: sorted(dict(k)["service_name"] for k in series_points(r)),
             sorted(v for _, v in svc_totals[:2])))

    # -- pprof answer ------------------------------------------------------------------------
    p.add("pprof-beta", "SelectMergeProfile", merge('{service_name="svc-beta"}'),
          ok(pprof_json_leaves, cpu_leaves(scn, lambda s: s.resource.service == "svc-beta")))
    start, end = scn.t0 + 10 * cs.SEC, scn.t0 + 20 * cs.SEC - cs.MS
    p.add("pprof-10s-20s", "SelectMergeProfile", dict(merge(), start=str(ms(start)), end=str(ms(end))),
          ok(pprof_json_leaves, cpu_leaves(scn, start_ns=start, end_ns=end)))

    # -- errors ----------------------------------------------------------------------------
    p.add("err-span-id", "SelectMergeSpanProfile",
          dict(w, profileTypeID=cs.CPU, labelSelector="{}", spanSelector=["not-a-span-id"]),
          invalid_argument("span"))
    p.add("err-span-id-short", "SelectMergeStacktraces", merge(spanSelector=["abc123"]),
          invalid_argument("span"))
    p.add("err-selector", "SelectMergeStacktraces", merge('{service_name=~"("}'),
          invalid_argument("selector"))
    p.add("err-selector-unclosed", "SelectSeries", merge('{service_name="svc-alpha"', step=10),
          invalid_argument("selector"))
    p.add("err-span-selector", "SelectMergeSpanProfile",
          dict(w, profileTypeID=cs.CPU, labelSelector="{service_name=}", spanSelector=[a1span.hex]),
          invalid_argument("selector"))
    return p


def _picked_spans(scn, exp):
    """A handful of spans of every sort: nested parent and child, short linked, threadless,
    never received, linked with late ancestors."""
    want = ("A1-chain-root", "A1-chain-short-leaf", "never-received", "B1-X-root", "B1-X-child",
            "B2-U-root", "A2-late-grandparent", "A2-early-linked", "C-server")
    out = []
    for prefix in want:
        out.append(next(s for s in scn.spans if s.label.startswith(prefix + "#")))
    out.append(max((s for s in scn.spans if s.label.startswith("A1-root")),
                   key=lambda s: len(exp.per_span(scn, "cpu")[s.hex])))
    return out


def _disjoint_pair(scn, exp):
    per = exp.per_span(scn, "cpu")
    full = [s for s in scn.spans if per[s.hex]]
    for x in full:
        for y in full:
            if x.resource is not y.resource and not set(per[x.hex]) & set(per[y.hex]):
                return x, y
    raise AssertionError("no two spans with disjoint samples")


# ---------------------------------------------------------------------------------------------
# The Go client
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def goquery(tmp_path_factory):
    if not os.path.exists(GO):
        pytest.skip("Go toolchain not installed")
    out = tmp_path_factory.mktemp("goquery") / "goquery"
    r = subprocess.run([GO, "build", "-o", str(out), "."], cwd=os.path.join(HERE, "goquery"),
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert r.returncode == 0, r.stderr
    return str(out)


def run_goquery(binary, server, calls):
    stdin = "".join(json.dumps(c) + "\n" for c in calls)
    r = subprocess.run([binary, "-url", f"http://{server.http_target}"], input=stdin, capture_output=True,
                       text=True, timeout=90)
    assert r.returncode == 0, f"goquery exited {r.returncode}: {r.stderr[-3000:]}"
    return {res["id"]: res for res in map(json.loads, r.stdout.splitlines())}


def test_grafana_connect_client_gets_the_scenario_numbers(corr_scenario_server, goquery):
    server, scn, exp = corr_scenario_server
    plan = build_plan(scn, exp)
    results = run_goquery(goquery, server, plan.calls)
    # every call went as Grafana sends it: Connect unary, binary protobuf, HTTP/1.1; answers
    # are protobuf, errors JSON (the Connect protocol's unary error body)
    for want_error, want_type in ((False, "application/proto"), (True, "application/json")):
        wires = {(r["wire"]["proto"], r["wire"]["requestContentType"], r["wire"]["responseContentType"],
                  r["wire"]["protocolVersion"]) for r in results.values() if ("error" in r) == want_error}
        assert wires == {("HTTP/1.1", "application/proto", want_type, "1")}, wires
    problems = plan.run_checks(results)
    if problems:
        pytest.fail(f"{len(problems)} of {len(plan.calls)} calls answered wrongly:\n" +
                    "\n".join(problems[:60]), pytrace=False)
