"""The terminal client, `spanprof query ...`, run as a subprocess against the real server.

One server per module holds four scenarios, each with figures known here from the input:
  - test_offcpu's timeline (service checkout): CPU and off-CPU time per span, eBPF-shaped;
  - test_api_v1's trace (api-e2e, api-e2e-py): explicitly linked CPU samples with nested stacks
    and a Go pprof through /ingest;
  - a span whose samples recurse (rec-svc), for self/total counted once per stack;
  - three more checkout traces without samples (one whose root is another service's, one with a
    span whose parent never arrived), for the list's order, limit and range.
The client's text output is parsed and checked against those figures, its --output json against
the same and against the server's own answers; the pprof it saves is read by `go tool pprof -raw`.
Exit codes are checked for not found, usage errors (before any request: a fake server counts
them), refused credentials (a server with --query-auth-token-file and --query-basic-auth-file),
an unreachable or silent server, a failing server, and TLS with --ca-file.
"""

import gzip
import http.server
import json
import os
import socket
import subprocess
import threading
import time

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

import test_api_v1 as api
import test_offcpu as offcpu
from conftest import Spanprof, check_clean_exit, free_port, spanprof_bin
from e2e_helpers import RPC_TIMEOUT, _Dict, _resource, http_request, profiles_stub, traces_stub
from test_golden_pprof import GO, go_pprof_raw, parse_raw
from test_tls import tls_args

MS = 1_000_000
SEC = 1_000_000_000
PERIOD = 10 * MS
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
OFF = "off_cpu:off_cpu:nanoseconds::"

# A span whose samples recurse: (stack root first, observations)
REC_TRACE = bytes.fromhex("5ec0" * 8)
REC_SPAN = bytes.fromhex("5ec05ec05ec05ec0")
REC_STACKS = [
    (("main", "walk", "walk", "walk", "leaf"), 3),
    (("main", "walk", "leaf"), 2),
    (("main", "walk"), 1),
    (("main", "other", "walk"), 4),
]
REC_SPAN_PID, REC_PROFILE_PID = 7373, 7474  # different processes: links only

# More checkout traces, no samples: (trace id, seconds before the load, spans) with spans as
# (span id, parent or None, name, service, start ms, end ms)
E1, E2, E3 = (bytes.fromhex(h * 16) for h in ("e1", "e2", "e3"))
LOST_PARENT = bytes.fromhex("dead" * 4)
EXTRA = [
    (E1, 50, [(b"\xe1" * 7 + b"\x01", None, "GET /a", "checkout", 0, 100),
              (b"\xe1" * 7 + b"\x02", b"\xe1" * 7 + b"\x01", "q", "checkout", 10, 60)]),
    (E2, 40, [(b"\xe2" * 7 + b"\x01", None, "GET /cart", "checkout", 0, 300),
              (b"\xe2" * 7 + b"\x02", b"\xe2" * 7 + b"\x01", "db", "checkout", 50, 150),
              (b"\xe2" * 7 + b"\x03", LOST_PARENT, "late", "checkout", 200, 280)]),
    (E3, 20, [(b"\xe3" * 7 + b"\x01", None, "GET /b", "frontend", 0, 200),
              (b"\xe3" * 7 + b"\x02", b"\xe3" * 7 + b"\x01", "render", "checkout", 20, 120)]),
]
EXTRA_PID = {"checkout": 9800, "frontend": 9801}


# ---------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------


def rec_requests(t0):
    tr = trace_service_pb2.ExportTraceServiceRequest()
    rs = tr.resource_spans.add()
    rs.resource.CopyFrom(_resource(REC_SPAN_PID, "rec-svc"))
    sp = rs.scope_spans.add().spans.add(trace_id=REC_TRACE, span_id=REC_SPAN, name="recurse",
                                        start_time_unix_nano=t0, end_time_unix_nano=t0 + 500 * MS)
    sp.attributes.add(key="thread.id").value.int_value = 5
    d = _Dict()
    mapping = d.mapping("/usr/bin/rec")
    locs = {}
    pr = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = pr.resource_profiles.add()
    rp.resource.CopyFrom(_resource(REC_PROFILE_PID, "rec-svc"))
    prof = rp.scope_profiles.add().profiles.add(period=PERIOD, time_unix_nano=t0,
                                                duration_nano=SEC)
    prof.sample_type.type_strindex, prof.sample_type.unit_strindex = d.s("samples"), d.s("count")
    prof.period_type.type_strindex, prof.period_type.unit_strindex = d.s("cpu"), d.s("nanoseconds")
    for stack, nobs in REC_STACKS:
        ids = []
        for name in reversed(stack):  # leaf first
            if name not in locs:
                locs[name] = d.location(mapping, 0x401000 + 16 * len(locs), d.function(name, "rec.c"), 1)
            ids.append(locs[name])
        s = prof.samples.add(stack_index=d.stack(ids), link_index=d.link(REC_TRACE, REC_SPAN))
        s.attribute_indices.append(d.attr("thread.id", 6))
        s.timestamps_unix_nano.extend(t0 + MS + PERIOD * k for k in range(nobs))
    pr.dictionary.CopyFrom(d.d)
    return tr, pr


def extra_request(base):
    req = trace_service_pb2.ExportTraceServiceRequest()
    for trace_id, ago, spans in EXTRA:
        t0 = base - ago * SEC
        for sid, parent, name, svc, s, e in spans:
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(_resource(EXTRA_PID[svc], svc))
            sp = rs.scope_spans.add().spans.add(trace_id=trace_id, span_id=sid, name=name,
                                                start_time_unix_nano=t0 + s * MS,
                                                end_time_unix_nano=t0 + e * MS)
            if parent:
                sp.parent_span_id = parent
    return req


class Loaded:
    def __init__(self, server):
        self.server = server
        self.url = f"http://127.0.0.1:{server.http_port}"
        self.t_api = api.load(server)
        self.t_off = (time.time_ns() - 60_000 * MS) // MS * MS
        offcpu.send_spans(server, self.t_off)
        offcpu.send_profiles(server, self.t_off)
        self.base = time.time_ns() // MS * MS
        tr, pr = rec_requests(self.base - 10 * SEC)
        with grpc.insecure_channel(server.grpc_target) as ch:
            r = traces_stub(ch).Export(tr, timeout=RPC_TIMEOUT)
            assert not r.partial_success.rejected_spans, r
            r = traces_stub(ch).Export(extra_request(self.base), timeout=RPC_TIMEOUT)
            assert not r.partial_success.rejected_spans, r
            r = profiles_stub(ch).Export(pr, timeout=RPC_TIMEOUT)
            assert not r.partial_success.rejected_profiles, r

    def start_of(self, trace_id):
        return next(self.base - ago * SEC for t, ago, _ in EXTRA if t == trace_id)

    def get_json(self, path):
        status, _, body = http_request(self.server.http_port, "GET", path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    server = Spanprof(tmp_path_factory.mktemp("query-client"))
    server.start()
    try:
        yield Loaded(server)
    finally:
        check_clean_exit(server)


# ---------------------------------------------------------------------------------------------
# Running the client, reading its output
# ---------------------------------------------------------------------------------------------


def query(*args, url=None, env=None, text=True, timeout=60):
    e = {k: v for k, v in os.environ.items() if k not in ("SPANPROF_URL", "SPANPROF_QUERY_TOKEN")}
    e.update(TZ="UTC", no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    e.update(env or {})
    argv = [str(spanprof_bin()), "query", *args] + (["--url", url] if url else [])
    return subprocess.run(argv, capture_output=True, text=text, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


def ok(*args, **kw):
    r = query(*args, **kw)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def fmt_dur(ns):
    """The client's duration format (app/client.c fmt_dur), for expected cells."""
    if ns < 1000:
        return f"{ns}ns" if ns else "0s"
    for unit, div in (("us", 1e3), ("ms", 1e6), ("s", 1e9)):
        v = ns / div
        if unit != "s" and v >= 999.5:
            continue
        if unit == "s" and v >= 59.995:
            break
        t = f"{v:.{0 if v >= 99.95 else 1 if v >= 9.995 else 2}f}"
        return (t.rstrip("0").rstrip(".") if "." in t else t) + unit
    s = (ns + SEC // 2) // SEC
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{(s + 30) // 3600}h{(s + 30) // 60 % 60:02d}m"


def utc(ns):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // SEC))


def rows(text, ncols):
    """A table's header and rows, each cut into ncols cells (the last keeps its spaces)."""
    lines = [l for l in text.splitlines() if l.strip()]
    head = lines[0].split()
    return [l.split(None, ncols - 1) for l in lines[1:]], head


def top_of(stacks):
    """{function: (self, total)} from {stack root first: value}: self at the leaf, total once
    per stack."""
    out = {}
    for stack, v in stacks.items():
        s, t = out.get(stack[-1], (0, 0))
        out[stack[-1]] = (s + v, t)
        for name in set(stack):
            s, t = out.get(name, (0, 0))
            out[name] = (s, t + v)
    return out


def rec_expected():
    return {stack: n * PERIOD for stack, n in REC_STACKS}


# ---------------------------------------------------------------------------------------------
# A fake server: counts requests, answers what a test tells it
# ---------------------------------------------------------------------------------------------


class Fake:
    def __init__(self):
        self.requests = []
        self.answer = (200, "application/json", b'{"services":["x"]}')
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, ctype, body = fake.answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.close()


# ---------------------------------------------------------------------------------------------
# Help and usage errors (exit 2, nothing sent)
# ---------------------------------------------------------------------------------------------


def test_help_lists_commands_flags_and_exit_codes():
    r = ok("--help")
    for word in ("services", "traces --service NAME", "trace TRACE_ID", "top SPAN_ID",
                 "pprof SPAN_ID -o FILE", "folded SPAN_ID", "--url", "$SPANPROF_URL", "--tenant",
                 "--token-file", "$SPANPROF_QUERY_TOKEN", "--basic-auth-file", "--output text|json",
                 "--timeout", "Exit status", "4  authentication refused"):
        assert word in r.stdout, word
    for cmd, word in (("services", "--since"), ("traces", "--limit"), ("trace", "TRACE_ID"),
                      ("top", "--sort self|total"), ("pprof", "-o, --output-file"),
                      ("folded", "flamegraph.pl")):
        r = ok(cmd, "--help")
        assert r.stdout.startswith(f"spanprof query {cmd}:") and word in r.stdout, cmd
        assert ok("help", cmd).stdout == r.stdout
        assert ok(cmd, "-h").stdout == r.stdout
    r = query()
    assert r.returncode == 2 and "Commands:" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["frobnicate"], "unknown command \"frobnicate\""),
    (["services", "--bogus"], "unknown flag --bogus"),
    (["traces"], "needs --service"),
    (["traces", "--service", "checkout", "--limit", "0"], "--limit must be a number from 1 to 1000"),
    (["traces", "--service", "checkout", "--since", "5x"], "--since must be a duration"),
    (["traces", "--service", "checkout", "--since", "1h", "--from", "now-2h"], "not both"),
    (["trace"], "'trace' needs TRACE_ID"),
    (["trace", "4bf92f35"], "a trace id is 32 hex digits; \"4bf92f35\" has 8"),
    (["trace", "zz" * 16], "is not a hex digit"),
    (["trace", "0" * 32], "all-zero"),
    (["trace", "ab" * 16, "extra"], "'trace' takes one argument"),
    (["trace", "ab" * 16, "--limit", "3"], "--limit does not apply to 'trace'"),
    (["top", "00f067aa0ba902"], "a span id is 16 hex digits"),
    (["top", "00f067aa0ba902b7", "--type", "wall"], "--type must be cpu, off-cpu"),
    (["top", "00f067aa0ba902b7", "--sort", "name"], "--sort must be self or total"),
    (["pprof", "00f067aa0ba902b7"], "give -o FILE"),
    (["pprof", "00f067aa0ba902b7", "-o", "x.pb.gz", "--output", "json"], "--output does not apply to 'pprof'"),
    (["services", "--output", "yaml"], "--output must be text or json"),
    (["services", "--timeout", "soon"], "--timeout must be a duration"),
    (["services", "--token-file", "a", "--basic-auth-file", "b"], "not both"),
    (["services", "--token-file", "/nonexistent/token"], "cannot read /nonexistent/token"),
    (["services", "--tenant", ""], "--tenant is empty"),
    (["help", "nope"], "no command \"nope\""),
])
def test_usage_errors_exit_2_before_any_request(fake, args, words):
    r = query(*args, url=fake.url)
    assert r.returncode == 2, (args, r.stderr)
    assert words in r.stderr and r.stderr.startswith("spanprof query: "), r.stderr
    assert "--help" in r.stderr and r.stdout == ""
    assert fake.requests == []


def test_url_is_not_http(fake):
    r = query("services", url="ftp://127.0.0.1/")
    assert r.returncode == 2 and "http:// or https://" in r.stderr


# ---------------------------------------------------------------------------------------------
# services, traces, trace
# ---------------------------------------------------------------------------------------------


ALL_SERVICES = ["api-e2e", "api-e2e-py", "checkout", "frontend", "rec-svc"]


def test_services(loaded):
    r = ok("services", url=loaded.url)
    assert r.stdout.splitlines() == ALL_SERVICES
    doc = json.loads(ok("services", "--output", "json", url=loaded.url).stdout)
    assert doc == {"services": ALL_SERVICES} == loaded.get_json("/api/v1/services")
    # SPANPROF_URL names the server when --url does not
    assert ok("services", env={"SPANPROF_URL": loaded.url + "/"}).stdout.splitlines() == ALL_SERVICES
    # a range with nothing in it: an empty list, not an error
    r = ok("services", "--from", "now-30d", "--until", "now-29d", url=loaded.url)
    assert r.stdout == "" and "no service" in r.stderr
    r = ok("services", "--from", "now-30d", "--until", "now-29d", "--output", "json", url=loaded.url)
    assert json.loads(r.stdout) == {"services": []}


def checkout_traces(loaded):
    """The checkout traces, newest first: (trace id, start, duration, spans, cpu, off-CPU, root)."""
    cpu, off = offcpu.expected(loaded.t_off)["root"]
    out = []
    for trace_id, _, spans in EXTRA:
        t0 = loaded.start_of(trace_id)
        root = spans[0]
        name = root[2] if root[3] == "checkout" else f"{root[2]} ({root[3]})"
        out.append((trace_id.hex(), t0, max(s[5] for s in spans) * MS, len(spans), 0, 0, name,
                    root[0].hex(), root[2]))
    out.append((offcpu.TRACE.hex(), loaded.t_off, 700 * MS, len(offcpu.SPANS), cpu, off, "root",
                offcpu.span_id("root").hex(), "root"))
    return sorted(out, key=lambda t: -t[1])


def test_traces_table(loaded):
    want = checkout_traces(loaded)
    r = ok("traces", "--service", "checkout", url=loaded.url)
    got, head = rows(r.stdout, 8)  # START is two words
    assert head == ["START", "TRACE", "ID", "DURATION", "SPANS", "CPU", "OFF-CPU", "ROOT"]
    assert [tuple(g) for g in got] == [
        (*utc(t0).split(), tid, fmt_dur(dur), str(n), fmt_dur(cpu), fmt_dur(off), name)
        for tid, t0, dur, n, cpu, off, name, _, _ in want]
    # the off-CPU trace: 250ms on CPU, 260ms waiting, computed from its timeline
    assert got[-1][5:7] == ["250ms", "260ms"]
    assert r.stderr == ""


def test_traces_json_limit_and_range(loaded):
    want = checkout_traces(loaded)
    doc = json.loads(ok("traces", "--service", "checkout", "--output", "json", url=loaded.url).stdout)
    assert doc["service"] == "checkout" and doc["truncated"] is False
    assert [(t["trace_id"], t["start_ns"], t["duration_ns"], t["span_count"], t["cpu_time_ns"],
             t["off_cpu_time_ns"], t["root_span_id"], t["root_name"]) for t in doc["traces"]] == [
        (tid, t0, dur, n, cpu, off, root_id, root_name)
        for tid, t0, dur, n, cpu, off, _, root_id, root_name in want]
    # --limit: the newest ones, and a note that there are more
    r = ok("traces", "--service", "checkout", "-n", "2", url=loaded.url)
    got, _ = rows(r.stdout, 8)
    assert [g[2] for g in got] == [w[0] for w in want[:2]]
    assert "more traces in the range" in r.stderr
    doc = json.loads(ok("traces", "--service", "checkout", "--limit=2", "--output=json",
                        url=loaded.url).stdout)
    assert [t["trace_id"] for t in doc["traces"]] == [w[0] for w in want[:2]] and doc["truncated"]
    # --from/--until as the server takes them (unix seconds): only E2 started in that second
    s = loaded.start_of(E2) // SEC
    doc = json.loads(ok("traces", "--service", "checkout", "--from", str(s - 1), "--until",
                        str(s + 1), "--output", "json", url=loaded.url).stdout)
    assert [t["trace_id"] for t in doc["traces"]] == [E2.hex()]
    # --since covers them all; a service with no traces is an empty answer
    doc = json.loads(ok("traces", "--service", "checkout", "--since", "2h", "--output", "json",
                        url=loaded.url).stdout)
    assert len(doc["traces"]) == len(want)
    r = ok("traces", "--service", "nobody", url=loaded.url)
    assert r.stdout == "" and "no trace of service nobody" in r.stderr
    # the server's message for a range it cannot read: a usage error
    r = query("traces", "--service", "checkout", "--from", "yesterday", url=loaded.url)
    assert r.returncode == 2 and "from=yesterday is not a time" in r.stderr


def tree(text):
    """(summary line, [(start, duration, cpu, off, span id, service, depth, name)])."""
    lines = text.splitlines()
    assert lines[1] == ""
    head = lines[2]
    at = head.index("NAME")
    out = []
    for line in lines[3:]:
        cells = line[:at].split()
        name = line[at:]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        out.append((*cells, depth, name.strip()))
    return lines[0], out


def test_trace_tree_with_cpu_and_off_cpu_per_span(loaded):
    want = offcpu.expected(loaded.t_off)
    r = ok("trace", offcpu.TRACE.hex().upper(), url=loaded.url)  # either case
    summary, got = tree(r.stdout)
    assert summary == f"trace {offcpu.TRACE.hex()}: 5 spans, 700ms, started {utc(loaded.t_off)} UTC"
    assert [g[7] for g in got] == ["root", "r1", "r2", "r3", "r4"]
    for start, dur, cpu, off, sid, svc, depth, name in got:
        s, e = offcpu.SPANS[name]
        assert (start, dur) == ("+" + fmt_dur(s * MS), fmt_dur((e - s) * MS)), name
        assert (cpu, off) == tuple(fmt_dur(v) for v in want[name]), name
        assert (sid, svc, depth) == (offcpu.span_id(name).hex(), "checkout", 0 if name == "root" else 1)
    # the off-CPU figures the table shows, by value: r2 only sleeps, 80ms
    assert got[2][2:4] == ("0s", "80ms")


def test_trace_tree_shape(loaded):
    summary, got = tree(ok("trace", api.TRACE.hex(), url=loaded.url).stdout)
    assert summary.startswith(f"trace {api.TRACE.hex()}: 5 spans, 900ms, started ")
    names = {sid: (name, svc) for sid, _, name, svc, *_ in api.SPANS}
    # depth first, siblings by start: root, child, grandchild, then the root's later children
    assert [(g[4], g[6]) for g in got] == [(api.ROOT.hex(), 0), (api.CHILD.hex(), 1),
                                           (api.GRANDCHILD.hex(), 2), (api.QUIET.hex(), 1),
                                           (api.PYSPAN.hex(), 1)]
    for g in got:
        sid = bytes.fromhex(g[4])
        assert (g[7], g[5]) == names[sid]
        assert g[2] == fmt_dur(sum(api.expected(sid).values()))
    # a span whose parent never arrived starts a tree of its own
    _, got = tree(ok("trace", E2.hex(), url=loaded.url).stdout)
    assert [(g[7], g[6]) for g in got] == [("GET /cart", 0), ("db", 1), ("late", 0)]
    assert [g[0] for g in got] == ["+0s", "+50ms", "+200ms"]


def test_trace_json_is_the_servers_answer(loaded):
    for trace_id in (api.TRACE, offcpu.TRACE, E3):
        r = ok("trace", trace_id.hex(), "--output", "json", url=loaded.url)
        assert r.stdout.endswith("\n")
        assert json.loads(r.stdout) == loaded.get_json(f"/api/v1/traces/{trace_id.hex()}")
    doc = json.loads(ok("trace", offcpu.TRACE.hex(), "--output", "json", url=loaded.url).stdout)
    got = {s["name"]: (s["cpu_time_ns"], s["off_cpu_time_ns"]) for s in doc["spans"]}
    assert got == offcpu.expected(loaded.t_off)


# ---------------------------------------------------------------------------------------------
# top, pprof, folded
# ---------------------------------------------------------------------------------------------


def top_rows(text):
    lines = text.splitlines()
    assert lines[1] == ""
    got, head = rows("\n".join(lines[2:]), 5)
    assert head == ["SELF", "SELF%", "TOTAL", "TOTAL%", "FUNCTION"]
    return lines[0], got


def test_top_counts_recursion_once_per_stack(loaded):
    stacks = rec_expected()
    total = sum(stacks.values())
    # by hand: walk is on every stack (total 100ms once, though it recurses), the leaf of two
    want = {"walk": (50 * MS, 100 * MS), "leaf": (50 * MS, 50 * MS), "main": (0, 100 * MS),
            "other": (0, 40 * MS)}
    assert top_of(stacks) == want
    r = ok("top", REC_SPAN.hex(), url=loaded.url)
    summary, got = top_rows(r.stdout)
    assert summary == f"span {REC_SPAN.hex()}, cpu: 100ms in 4 stacks, 4 functions"
    # by self, ties by total
    assert [g[4] for g in got] == ["walk", "leaf", "main", "other"]
    for g in got:
        s, t = want[g[4]]
        assert g[:4] == [fmt_dur(s), f"{100 * s / total:.1f}%", fmt_dur(t), f"{100 * t / total:.1f}%"]
    r = ok("top", REC_SPAN.hex(), "--sort", "total", "-n", "2", url=loaded.url)
    summary, got = top_rows(r.stdout)
    assert summary.endswith(", 4 functions, the top 2 by total")
    assert [g[4] for g in got] == ["walk", "main"]
    doc = json.loads(ok("top", REC_SPAN.hex(), "--output", "json", url=loaded.url).stdout)
    assert doc == {"span_id": REC_SPAN.hex(), "profile_type": CPU, "unit": "nanoseconds",
                   "total": total, "functions_count": 4, "sort": "self",
                   "functions": [{"name": n, "self": want[n][0], "total": want[n][1]}
                                 for n in ("walk", "leaf", "main", "other")]}


def test_top_of_linked_spans_and_off_cpu(loaded):
    for span in (api.ROOT, api.GRANDCHILD, api.PYSPAN):
        want = top_of(api.expected(span))
        doc = json.loads(ok("top", span.hex(), "-n", "0", "--output", "json", url=loaded.url).stdout)
        assert doc["total"] == sum(api.expected(span).values())
        assert {f["name"]: (f["self"], f["total"]) for f in doc["functions"]} == want
        selfs = [f["self"] for f in doc["functions"]]
        assert selfs == sorted(selfs, reverse=True)
    # off-CPU: r2 only sleeps; r3 sleeps 60ms inside it and 20ms of the interval that crosses into r4
    for name in ("r2", "r3"):
        r = ok("top", offcpu.span_id(name).hex(), "--type", "off-cpu", url=loaded.url)
        summary, got = top_rows(r.stdout)
        off = offcpu.expected(loaded.t_off)[name][1]
        assert summary == f"span {offcpu.span_id(name).hex()}, off-cpu: {fmt_dur(off)} in 1 stack, 4 functions"
        assert got[0] == [fmt_dur(off), "100.0%", fmt_dur(off), "100.0%", "do_nanosleep"]
        assert {g[4] for g in got} == set(offcpu.SLEEP)
    doc = json.loads(ok("top", offcpu.span_id("r2").hex(), "--type", OFF, "--output", "json",
                        url=loaded.url).stdout)
    assert doc["profile_type"] == OFF and doc["total"] == 80 * MS
    # a span the server knows with nothing attached: an empty answer, not an error
    r = ok("top", api.QUIET.hex(), url=loaded.url)
    assert r.stdout == "" and f"span {api.QUIET.hex()} has no cpu samples" in r.stderr
    doc = json.loads(ok("top", api.QUIET.hex(), "--output", "json", url=loaded.url).stdout)
    assert doc["total"] == 0 and doc["functions"] == [] and doc["functions_count"] == 0


def test_top_of_a_large_profile(fake):
    # thousands of functions (the client's table grows many times while it reads), recursion
    # through another frame (f, g, f), leaves first seen after a growth
    stacks = {}
    for i in range(3000):
        stack = ("main", f"f{i % 37}", f"g{i}", f"f{i % 37}") if i % 3 else ("main", f"h{i}")
        stacks[stack] = stacks.get(stack, 0) + (i * 7919) % 1000 + 1
    body = "".join(f"{';'.join(s)} {v}\n" for s, v in sorted(stacks.items()))
    fake.answer = (200, "text/plain; charset=utf-8", body.encode())
    want = top_of(stacks)
    doc = json.loads(ok("top", "ab" * 8, "-n", "0", "--output", "json", url=fake.url).stdout)
    assert doc["functions_count"] == len(want) and doc["total"] == sum(stacks.values())
    assert [(f["name"], f["self"], f["total"]) for f in doc["functions"]] == sorted(
        ((n, s, t) for n, (s, t) in want.items()), key=lambda x: (-x[1], -x[2], x[0]))
    doc = json.loads(ok("top", "ab" * 8, "--sort", "total", "--output", "json", url=fake.url).stdout)
    assert [(f["name"], f["self"], f["total"]) for f in doc["functions"]] == sorted(
        ((n, s, t) for n, (s, t) in want.items()), key=lambda x: (-x[2], -x[1], x[0]))[:20]


def parse_folded(text):
    out = {}
    for line in text.splitlines():
        stack, value = line.rsplit(" ", 1)
        out[tuple(stack.split(";"))] = int(value)
    return out


def test_folded(loaded, tmp_path):
    for span in (api.ROOT, api.CHILD, api.PYSPAN):
        r = ok("folded", span.hex(), url=loaded.url)
        assert parse_folded(r.stdout) == api.expected(span)
        status, _, body = http_request(loaded.server.http_port, "GET",
                                       f"/api/v1/spans/{span.hex()}/profile?format=folded")
        assert r.stdout == body.decode()
    assert parse_folded(ok("folded", REC_SPAN.hex(), url=loaded.url).stdout) == rec_expected()
    out = tmp_path / "r2.folded"
    r = ok("folded", offcpu.span_id("r2").hex(), "--type", "off-cpu", "-o", str(out), url=loaded.url)
    assert r.stdout == "" and str(out) in r.stderr
    assert parse_folded(out.read_text()) == {offcpu.SLEEP: 80 * MS}
    r = ok("folded", api.QUIET.hex(), url=loaded.url)
    assert r.stdout == "" and "has no cpu samples" in r.stderr


def pprof_stacks(path):
    samples, locations = parse_raw(go_pprof_raw(str(path)))
    got = {}
    for value, locs in samples:
        stack = tuple(reversed([name for loc in locs for name in locations[loc]]))
        got[stack] = got.get(stack, 0) + value
    return got


@pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")
def test_pprof_opens_in_go_tool_pprof(loaded, tmp_path):
    for span in (api.ROOT, api.GRANDCHILD, api.PYSPAN):
        path = tmp_path / f"{span.hex()}.pb.gz"
        r = ok("pprof", span.hex(), "-o", str(path), url=loaded.url)
        assert r.stdout == "" and f"in {path} (" in r.stderr
        assert pprof_stacks(path) == api.expected(span)
        assert "PeriodType: cpu nanoseconds" in go_pprof_raw(str(path))
    # off-CPU: the sleep stack, 80 ms
    path = tmp_path / "r2.pb.gz"
    ok("pprof", offcpu.span_id("r2").hex(), "--type", "off-cpu", f"-o{path}", url=loaded.url)
    assert pprof_stacks(path) == {offcpu.SLEEP: 80 * MS}
    # -o - writes the same profile to stdout
    r = ok("pprof", offcpu.span_id("r2").hex(), "--type", "off-cpu", "-o", "-", url=loaded.url,
           text=False)
    assert gzip.decompress(r.stdout) == gzip.decompress(path.read_bytes())


@pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")
def test_pprof_keeps_direct_recursion(loaded, tmp_path):
    path = tmp_path / "rec.pb.gz"
    ok("pprof", REC_SPAN.hex(), "--output-file", str(path), url=loaded.url)
    assert pprof_stacks(path) == rec_expected()


# ---------------------------------------------------------------------------------------------
# Not found, tenants
# ---------------------------------------------------------------------------------------------


def test_not_found_exits_1_with_the_servers_message(loaded, tmp_path):
    r = query("trace", "ab" * 16, url=loaded.url)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"spanprof query: trace {'ab' * 16} is not in the span index of tenant "
                        "anonymous (spans are kept for the retention period, and only those sent "
                        "to spanprof)\n")
    for cmd in ("top", "folded"):
        r = query(cmd, "12" * 8, url=loaded.url)
        assert r.returncode == 1 and "span 1212121212121212 has no" in r.stderr, r.stderr
    out = tmp_path / "none.pb.gz"
    r = query("pprof", "12" * 8, "-o", str(out), url=loaded.url)
    assert r.returncode == 1 and not out.exists() and os.listdir(tmp_path) == []
    # another tenant does not see the trace; --tenant goes out as X-Scope-OrgID
    r = query("trace", api.TRACE.hex(), "--tenant", "someone-else", url=loaded.url)
    assert r.returncode == 1 and "tenant someone-else" in r.stderr
    r = ok("services", "--tenant", "someone-else", url=loaded.url)
    assert r.stdout == ""


def test_tenant(spanprof):
    api.load(spanprof, tenant="team-x")
    url = f"http://127.0.0.1:{spanprof.http_port}"
    assert query("trace", api.TRACE.hex(), url=url).returncode == 1
    _, got = tree(ok("trace", api.TRACE.hex(), "--tenant", "team-x", url=url).stdout)
    assert len(got) == len(api.SPANS)
    assert ok("services", "--tenant", "team-x", url=url).stdout.splitlines() == ["api-e2e", "api-e2e-py"]
    r = query("services", "--tenant", "bad/tenant", url=url)
    assert r.returncode == 4, r.stderr


# ---------------------------------------------------------------------------------------------
# Credentials (exit 4), never printed
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def auth_server(spanprof_factory, tmp_path):
    token, user, pw = "q-" + os.urandom(12).hex(), "ops", "pw-" + os.urandom(8).hex()
    files = {}
    for name, text in (("tokens", f"# query tokens\n\n  {token}  \n"), ("basic", f"{user}:{pw}\n"),
                       ("wrong-token", "not-the-token\n"), ("wrong-basic", f"{user}:nope\n")):
        files[name] = tmp_path / name
        files[name].write_text(text)
        files[name].chmod(0o600)
    server = spanprof_factory(["--query-auth-token-file", str(files["tokens"]),
                               "--query-basic-auth-file", str(files["basic"])])
    api.load(server)
    return server, f"http://127.0.0.1:{server.http_port}", files, (token, pw)


def test_credentials(auth_server):
    server, url, files, secrets = auth_server
    outputs = []

    def run(*args, expect, env=None):
        r = query(*args, url=url, env=env)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == expect, (args, r.returncode, r.stderr)
        return r

    r = run("trace", api.TRACE.hex(), expect=4)
    assert "refused the request (HTTP 401)" in r.stderr and "give --token-file" in r.stderr
    r = run("trace", api.TRACE.hex(), "--token-file", str(files["wrong-token"]), expect=4)
    assert "HTTP 401" in r.stderr and "give --token-file" not in r.stderr
    run("trace", api.TRACE.hex(), "--basic-auth-file", str(files["wrong-basic"]), expect=4)
    run("services", expect=4, env={"SPANPROF_QUERY_TOKEN": "wrong"})
    # the token file as the server reads it (a comment, a blank line, blanks around the token)
    r = run("trace", api.TRACE.hex(), "--token-file", str(files["tokens"]), expect=0)
    assert api.ROOT.hex() in r.stdout
    r = run("services", expect=0, env={"SPANPROF_QUERY_TOKEN": secrets[0]})
    assert r.stdout.splitlines() == ["api-e2e", "api-e2e-py"]
    r = run("top", api.ROOT.hex(), "--basic-auth-file", str(files["basic"]), expect=0)
    assert "FUNCTION" in r.stdout
    # a user:password in the URL is used and never shown
    r = query("trace", "ab" * 16, url=url.replace("http://", f"http://ops:{secrets[1]}@"))
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 1
    r = query("services", url=f"http://ops:{secrets[1]}@127.0.0.1:{free_port()}")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 3 and "http://127.0.0.1:" in r.stderr
    for text in outputs:
        for secret in secrets:
            assert secret not in text


# ---------------------------------------------------------------------------------------------
# Unreachable, slow and failing servers (exit 3); what goes on the wire
# ---------------------------------------------------------------------------------------------


def test_unreachable_server_exits_3():
    port = free_port()
    r = query("services", url=f"http://127.0.0.1:{port}")
    assert r.returncode == 3
    assert r.stderr.startswith(f"spanprof query: cannot reach http://127.0.0.1:{port}: ")


def test_silent_server_times_out():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # connections complete in the backlog; nothing ever answers
        t = time.monotonic()
        r = query("trace", "ab" * 16, "--timeout", "500ms", url=f"http://127.0.0.1:{s.getsockname()[1]}")
        assert time.monotonic() - t < 10
    assert r.returncode == 3 and "did not answer within 500 ms (--timeout)" in r.stderr


def test_failing_server_and_what_is_sent(fake):
    fake.answer = (503, "text/plain; charset=utf-8", b"store unavailable: try later\n")
    r = query("services", url=fake.url)
    assert r.returncode == 3
    assert r.stderr == f"spanprof query: {fake.url} answered HTTP 503: store unavailable: try later\n"
    fake.answer = (500, "application/json", b'{"code":"internal","message":"boom"}')
    r = query("trace", "ab" * 16, url=fake.url)
    assert r.returncode == 3 and r.stderr.endswith("answered HTTP 500: boom\n")
    fake.answer = (200, "text/html", b"<html>not spanprof</html>")
    r = query("services", url=fake.url)
    assert r.returncode == 3 and "is not a JSON object" in r.stderr
    fake.answer = (403, "text/plain", b"forbidden\n")
    assert query("services", url=fake.url).returncode == 4
    # a path prefix (a proxy), the range, the tenant, and the token as a bearer
    fake.answer = (200, "application/json", b'{"services":["a","b"]}')
    fake.requests.clear()
    r = query("services", "--since", "15m", "--tenant", "team-a", url=fake.url + "/spanprof/",
              env={"SPANPROF_QUERY_TOKEN": " tok-123\n"})
    assert r.returncode == 0 and r.stdout == "a\nb\n"
    path, headers = fake.requests[0]
    assert path == "/spanprof/api/v1/services?from=now-900s"
    assert headers["x-scope-orgid"] == "team-a" and headers["authorization"] == "Bearer tok-123"
    fake.answer = (200, "application/json", b'{"service":"a b","traces":[],"truncated":false}')
    fake.requests.clear()
    assert query("traces", "--service", "a b&c", "--from", "now-2h", "--until", "now-1h", "-n", "5",
                 url=fake.url).returncode == 0
    assert fake.requests[0][0] == "/api/v1/traces?service=a%20b%26c&limit=5&from=now-2h&until=now-1h"
    assert "authorization" not in fake.requests[0][1] and "x-scope-orgid" not in fake.requests[0][1]
    fake.answer = (200, "text/plain", b"")
    fake.requests.clear()
    assert query("folded", "00F067AA0BA902B7", "--type", OFF, url=fake.url).returncode == 0
    assert fake.requests[0][0] == ("/api/v1/spans/00f067aa0ba902b7/profile?format=folded"
                                   "&profile_type=off_cpu%3Aoff_cpu%3Ananoseconds%3A%3A")


@pytest.mark.tls
def test_tls_with_ca_file(spanprof_factory, certs):
    server = spanprof_factory(tls=tls_args(certs))
    url = f"https://127.0.0.1:{server.http_port}"
    r = query("services", "--ca-file", str(certs["ca"]), url=url)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    r = query("services", url=url)  # the system's CAs do not know the test CA
    assert r.returncode == 3 and "cannot reach" in r.stderr
