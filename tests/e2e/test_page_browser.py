"""The page (query/page.html) in a real browser: Debian's chromium, driven by
tests/browser/page_driver.js (playwright-core) against the real binary.

A scenario goes in over OTLP/gRPC: a checkout trace of nested spans on one thread (one of them
15 ms, under --span-min-duration), a span of another service in another process, CPU samples and
off-CPU intervals attached by thread id (no explicit links), an older trace and a trace of another
service. The expected figures of every span (CPU per stack, off-CPU per stack, as the correlation
contract in README.md says) are computed here from the timeline, independently of the server. The
driver only reports what the page showed (texts, the frames window.spanprof says it drew,
tooltips, focus, screenshots); this file judges it.

Then a trace of 500 spans: every span drawn, the short ones marked. How fast it draws (the issue
asks under 200 ms once the answer is in) is printed here and measured by bench/bench_page.py,
not asserted: timings belong to benchmarks (bench/RESULTS.md has the figures).

Skipped, with the reason, only when chromium, node or tests/browser/node_modules (npm ci, done by
scripts/install-deps.sh) is missing. Screenshots go to the test's tmp dir; their paths are printed.
SPANPROF_DOCS_SCREENSHOT=<path> also writes the README's picture of the trace view there.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from conftest import REPO
from e2e_helpers import RPC_TIMEOUT, _Dict, http_request, profiles_stub, traces_stub

MS = 1_000_000
PERIOD = 10 * MS  # CPU period: one observation = 10 ms of CPU
MIN_SPAN = 20 * MS  # --span-min-duration default
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
OFF = "off_cpu:off_cpu:nanoseconds::"
CHROMIUM = os.environ.get("SPANPROF_CHROMIUM", "/usr/bin/chromium")
BROWSER_DIR = REPO / "tests" / "browser"
DRIVER = BROWSER_DIR / "page_driver.js"

TRACE = bytes.fromhex("c0ffee0011223344556677889900aabb")
OLDER = bytes.fromhex("c0ffee00ffffffffffffffff00000001")
OTHER = bytes.fromhex("ba5eba11000000000000000000000002")
BIG = bytes.fromhex("b16b16b16b16b16b16b16b16b16b1600")
SHOP = (7300, 7301, "checkout")  # pid, thread id, service
PAY = (7400, 7401, "payments")

# name -> (start ms, end ms, parent name, process)
SPANS = {
    "GET /cart": (0, 700, None, SHOP),
    "load cart": (0, 300, "GET /cart", SHOP),
    "db query": (50, 250, "load cart", SHOP),
    "price": (300, 380, "GET /cart", SHOP),
    "tax": (400, 500, "GET /cart", SHOP),
    "cache get": (410, 425, "tax", SHOP),  # 15 ms: below the minimum duration
    "render": (500, 600, "GET /cart", SHOP),
    "charge": (610, 690, "GET /cart", PAY),
}
# CPU observations: (ms after t0, process, stack root first)
DECODE = ("main", "handle_cart", "load_cart", "decode_json")
PG = ("main", "handle_cart", "load_cart", "db_query", "pg_exec")
PRICE = ("main", "handle_cart", "price", "compute_price")
TAX = ("main", "handle_cart", "tax", "tax_rate")
TEMPLATE = ("main", "handle_cart", "render", "template")
WRITE = ("main", "handle_cart", "write_response")
IDLE = ("main", "idle_loop")
CHARGE = ("pay_main", "charge", "sign_request")
CPU_OBS = ([(t, SHOP, DECODE) for t in (0, 10, 20, 30, 40, 260, 280)]
           + [(t, SHOP, PG) for t in (60, 200, 230)]
           + [(t, SHOP, PRICE) for t in range(300, 320, 10)]
           + [(t, SHOP, TAX) for t in (400, 412, 430, 450, 470)]  # 412: inside "cache get"
           + [(t, SHOP, TEMPLATE) for t in range(520, 600, 10)]
           + [(t, SHOP, WRITE) for t in (610, 650, 690)]
           + [(800, SHOP, IDLE)]  # after the trace: in no span
           + [(t, PAY, CHARGE) for t in (620, 630, 640)])
# Off-CPU observations: (switch-in time T ms, D ms off CPU, process, stack): the interval [T-D, T],
# never over a CPU observation of the same thread
EPOLL = ("main", "handle_cart", "load_cart", "db_query", "recv", "do_epoll_wait")
SLEEP = ("main", "handle_cart", "price", "time.sleep", "do_nanosleep")
CACHE = ("main", "handle_cart", "tax", "cache_get", "futex_wait")
FUTEX = ("main", "handle_cart", "render", "lock_wait", "futex_wait")
OFF_OBS = [(150, 80, SHOP, EPOLL), (195, 40, SHOP, EPOLL), (370, 50, SHOP, SLEEP),
           (424, 8, SHOP, CACHE), (520, 40, SHOP, FUTEX), (680, 30, PAY, ("pay_main", "charge", "tls_read"))]


def _timeline_is_possible():
    """A thread is on CPU or off it, not both: no CPU observation inside an off-CPU interval."""
    for t, d, p, _ in OFF_OBS:
        assert not [c for c, q, _ in CPU_OBS if q == p and t - d <= c < t], (t, d)


_timeline_is_possible()


def span_id(name):
    return bytes([0x10 + list(SPANS).index(name)]) * 8


def expected(name):
    """{'cpu': {stack: ns}, 'off': {stack: ns}} for a span, by the correlation contract: spans of
    at least 20 ms of the sample's process and thread containing the CPU observation's timestamp
    get it whole; each gets the part of an off-CPU interval inside it."""
    s, e, _, proc = SPANS[name]
    cpu, off = {}, {}
    if (e - s) * MS < MIN_SPAN:
        return {"cpu": cpu, "off": off}
    for t, p, stack in CPU_OBS:
        if p == proc and s <= t < e:
            cpu[stack] = cpu.get(stack, 0) + PERIOD
    for t, d, p, stack in OFF_OBS:
        part = max(0, min(e, t) - max(s, t - d))
        if p == proc and part:
            off[stack] = off.get(stack, 0) + part * MS
    return {"cpu": cpu, "off": off}


def fmt_ns(v):
    """The page's fmtNs()."""
    if v >= 1e9:
        return f"{v / 1e9:.{1 if v >= 1e10 else 2}f} s"
    if v >= 1e6:
        text = f"{v / 1e6:.{0 if v >= 1e8 else 1 if v >= 1e7 else 2}f}"
        return re.sub(r"\.0+$", "", text) + " ms"
    if v >= 1e3:
        return re.sub(r"\.0$", "", f"{v / 1e3:.1f}") + " µs"
    return f"{v} ns"


# ---------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------


def _attrs(msg, pairs):
    for key, val in pairs:
        kv = msg.attributes.add(key=key)
        if isinstance(val, int):
            kv.value.int_value = val
        else:
            kv.value.string_value = val


def trace_request(t0, traces):
    """traces: [(trace id, [(span id, parent id or b"", name, start ns, end ns, (pid, tid, svc))])]"""
    req = trace_service_pb2.ExportTraceServiceRequest()
    scopes = {}
    for trace_id, spans in traces:
        for sid, parent, name, start, end, (pid, tid, svc) in spans:
            if (pid, svc) not in scopes:
                rs = req.resource_spans.add()
                _attrs(rs.resource, (("service.name", svc), ("process.pid", pid)))
                scopes[(pid, svc)] = rs.scope_spans.add()
            sp = scopes[(pid, svc)].spans.add(trace_id=trace_id, span_id=sid, parent_span_id=parent, name=name,
                                              start_time_unix_nano=start, end_time_unix_nano=end)
            _attrs(sp, (("thread.id", tid),))
    return req


def profile_request(t0, cpu_obs, off_obs):
    """CPU and off-CPU profiles per process, eBPF-shaped: thread.id per sample, no links."""
    d = _Dict()
    locs = {}

    def stack(names):
        ids = []
        for n in reversed(names):  # leaf first
            if n not in locs:
                locs[n] = d.location(mapping, 0x401000 + 16 * len(locs), d.function(n, "shop.c"), 1)
            ids.append(locs[n])
        return d.stack(ids)

    mapping = d.mapping("/usr/bin/shop")
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    for proc in sorted({p for _, p, _ in cpu_obs} | {p for *_, p, _ in off_obs}):
        pid, tid, svc = proc
        rp = req.resource_profiles.add()
        _attrs(rp.resource, (("process.pid", pid), ("service.name", svc)))
        sp = rp.scope_profiles.add()
        cpu = sp.profiles.add(period=PERIOD, time_unix_nano=t0, duration_nano=1_000 * MS)
        cpu.sample_type.type_strindex, cpu.sample_type.unit_strindex = d.s("samples"), d.s("count")
        cpu.period_type.type_strindex, cpu.period_type.unit_strindex = d.s("cpu"), d.s("nanoseconds")
        by_stack = {}
        for t, p, st in cpu_obs:
            if p == proc:
                by_stack.setdefault(st, []).append(t0 + t * MS)
        for st, stamps in by_stack.items():
            s = cpu.samples.add(stack_index=stack(st))
            s.attribute_indices.append(d.attr("thread.id", tid))
            s.timestamps_unix_nano.extend(stamps)
        off = sp.profiles.add(time_unix_nano=t0)  # no period type, as the eBPF profiler writes it
        off.sample_type.type_strindex, off.sample_type.unit_strindex = d.s("off_cpu"), d.s("nanoseconds")
        for t, dur, p, st in off_obs:
            if p == proc:
                s = off.samples.add(stack_index=stack(st))
                s.attribute_indices.append(d.attr("thread.id", tid))
                s.timestamps_unix_nano.append(t0 + t * MS)
                s.values.append(dur * MS)
    req.dictionary.CopyFrom(d.d)
    return req


def export(server, traces_req, profiles_req):
    with grpc.insecure_channel(server.grpc_target) as ch:
        r = traces_stub(ch).Export(traces_req, timeout=RPC_TIMEOUT)
        assert not r.partial_success.rejected_spans, r
        if profiles_req is not None:
            r = profiles_stub(ch).Export(profiles_req, timeout=RPC_TIMEOUT)
            assert not r.partial_success.rejected_profiles, r


def load_scenario(server):
    t0 = (time.time_ns() - 120_000 * MS) // MS * MS
    main = [(span_id(n), span_id(p) if p else b"", n, t0 + s * MS, t0 + e * MS, proc)
            for n, (s, e, p, proc) in SPANS.items()]
    older = [(b"\x21" * 8, b"", "GET /health", t0 - 60_000 * MS, t0 - 59_970 * MS, SHOP)]
    other = [(b"\x31" * 8, b"", "POST /refund", t0 + 2_000 * MS, t0 + 2_050 * MS, PAY)]
    export(server, trace_request(t0, [(TRACE, main), (OLDER, older), (OTHER, other)]),
           profile_request(t0, CPU_OBS, OFF_OBS))
    return t0


def big_tree(n=500):
    """n spans, each parent with up to 3 children laid side by side inside it: depth 6, the
    deepest ones a few ms long (so under the minimum duration)."""
    spans = [(0, 0, 2_000 * MS, None)]  # (index, start ns, duration ns, parent index)
    kids = {}
    for i in range(1, n):
        p = (i - 1) // 3
        k = kids.get(p, 0)
        kids[p] = k + 1
        _, ps, pd, _ = spans[p]
        slot = pd // 3
        spans.append((i, ps + k * slot + slot // 10, slot * 8 // 10, p))
    return spans


def load_big(server):
    t0 = (time.time_ns() - 60_000 * MS) // MS * MS
    proc = (7500, 7501, "bulk")
    sid = lambda i: (0xB000000000000000 + i + 1).to_bytes(8, "big")  # noqa: E731
    spans = [(sid(i), sid(p) if p is not None else b"", f"step {i}" if i else "batch import", t0 + s, t0 + s + d, proc)
             for i, s, d, p in big_tree()]
    cpu = [(t, proc, ("main", "import", f"row_{t % 7}")) for t in range(0, 2_000, 10)]
    off = [(t, 5, proc, ("main", "import", "fsync")) for t in range(50, 2_000, 100)]
    export(server, trace_request(t0, [(BIG, spans)]), profile_request(t0, cpu, off))
    return spans


# ---------------------------------------------------------------------------------------------
# Running the driver
# ---------------------------------------------------------------------------------------------


def browser_or_skip():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"chromium not installed at {CHROMIUM} (Debian package chromium; scripts/install-deps.sh)")
    node = shutil.which("node")
    if not node:
        pytest.skip("node not installed: the browser driver is a Node script (tests/browser)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        pytest.skip("tests/browser/node_modules/playwright-core missing: run scripts/install-deps.sh "
                    "(npm ci in tests/browser)")
    return node


def drive(node, server, tmp_path, **cfg):
    out_dir = tmp_path / "screenshots"
    out_dir.mkdir(exist_ok=True)
    cfg.update(base=f"http://{server.http_target}", out_dir=str(out_dir), chromium=CHROMIUM)
    path = tmp_path / f"driver-{cfg['mode']}.json"
    path.write_text(json.dumps(cfg))
    proc = subprocess.run([node, str(DRIVER), str(path)], capture_output=True, text=True, timeout=100,
                          cwd=BROWSER_DIR)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the driver printed nothing (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    res = json.loads(lines[-1])
    for name, shot in sorted(res.get("screenshots", {}).items()):
        print(f"screenshot {name}: {shot}")
    assert not res.get("error"), f"driver failed after steps {res.get('steps')}:\n{res['error']}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-4000:]
    # every request the page made was allowed by its CSP, and no script failed
    assert res["console_errors"] == [], res["console_errors"]
    return res


def frame_stacks(frames):
    """{stack root first: self} of the drawn graph (what window.spanprof.frames() reports)."""
    levels = frames["nodes"]
    out = {}
    for d in range(1, len(levels)):
        for n in levels[d]:
            if n["self"] <= 0:
                continue
            stack, x = [n["name"]], n["x"]
            for up in range(d - 1, 0, -1):
                parent = [p for p in levels[up] if p["x"] <= x < p["x"] + p["total"]]
                assert len(parent) == 1, (n, d)
                stack.append(parent[0]["name"])
                x = parent[0]["x"]
            key = tuple(reversed(stack))
            out[key] = out.get(key, 0) + n["self"]
    return out


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_page_finds_opens_and_profiles_a_trace(spanprof_factory, tmp_path):
    node = browser_or_skip()
    server = spanprof_factory()
    load_scenario(server)
    status, _h, body = http_request(server.http_port, "GET", f"/api/v1/traces/{TRACE.hex()}")
    assert status == 200, body[:300]
    docs = os.environ.get("SPANPROF_DOCS_SCREENSHOT")
    res = drive(node, server, tmp_path, mode="scenario", service="checkout", trace=TRACE.hex(),
                older_trace=OLDER.hex(), spans=[span_id(n).hex() for n in SPANS], root_span=span_id("GET /cart").hex(),
                hover_frame="load_cart", search="db_", docs_screenshot=docs, docs_span=span_id("GET /cart").hex())

    # -- the trace list: services, the checkout traces newest first, figures of the root
    assert {"checkout", "payments"} <= set(res["services"]), res["services"]
    listed = [r["trace"] for r in res["trace_list"]]
    assert TRACE.hex() in listed and OLDER.hex() in listed and OTHER.hex() not in listed, listed
    assert listed.index(TRACE.hex()) < listed.index(OLDER.hex())  # newest first
    row = next(r for r in res["trace_list"] if r["trace"] == TRACE.hex())["cells"]
    assert row[0] == "GET /cart" and row[1] == TRACE.hex(), row
    assert row[3] == fmt_ns(700 * MS) and row[4] == str(len(SPANS)), row
    # the trace's CPU and off-CPU, each sample once: the sums of its top spans per process
    tops = [n for n, (_, _, p, proc) in SPANS.items() if p is None or SPANS[p][3] != proc]
    assert tops == ["GET /cart", "charge"]
    assert row[5] == fmt_ns(sum(sum(expected(n)["cpu"].values()) for n in tops)), row
    assert row[6] == fmt_ns(sum(sum(expected(n)["off"].values()) for n in tops)), row
    assert res["list_hash"] == "#traces&service=checkout"
    assert res["list_scroll_width"] <= 1280  # readable at 1280 px: nothing sticks out sideways

    # -- keyboard: Tab reached the trace, Enter opened it, the focus went to its first span
    assert res["tabs_to_trace"] < 60
    assert res["trace_hash"] == f"#trace={TRACE.hex()}"
    assert res["focus_after_open"]["span"] == span_id("GET /cart").hex(), res["focus_after_open"]

    # -- the waterfall: every span, parents before children, indented by depth, figures per span
    wf = {r["span"]: r for r in res["waterfall"]}
    assert len(res["waterfall"]) == len(SPANS) and set(wf) == {span_id(n).hex() for n in SPANS}
    order = [r["name"] for r in res["waterfall"]]
    assert order == ["GET /cart", "load cart", "db query", "price", "tax", "cache get", "render", "charge"], order
    depth = {n: 0 if p is None else 1 + (SPANS[p][2] is not None) for n, (_, _, p, _) in SPANS.items()}
    indents = {r["name"]: r["indent"] for r in res["waterfall"]}
    for n in SPANS:
        assert indents[n] == indents["GET /cart"] + 14 * depth[n], (n, indents)
    root_bar = wf[span_id("GET /cart").hex()]["bar"]
    for n, (s, e, _, proc) in SPANS.items():
        r = wf[span_id(n).hex()]
        want = expected(n)
        cpu, off = sum(want["cpu"].values()), sum(want["off"].values())
        assert r["duration"] == fmt_ns((e - s) * MS), (n, r)
        # the bar's offset and length follow the span's start and duration (root: 0..700 ms)
        assert abs(r["bar"]["left"] - root_bar["left"] - root_bar["width"] * s / 700) < 1.5, (n, r["bar"])
        assert abs(r["bar"]["width"] - max(2, root_bar["width"] * (e - s) / 700)) < 1.5, (n, r["bar"])
        if (e - s) * MS < MIN_SPAN:
            assert r["short"] and r["note"] == "below the minimum duration: no inferred samples", r
            assert (r["cpu"], r["off_cpu"]) == ("—", "—"), r
            assert "below the minimum duration: no inferred samples" in r["title"]
            continue
        assert not r["short"] and r["note"] is None, r
        # the tooltip lists the span's kind and attributes (from the trace answer)
        assert "\nkind unspecified\nattributes:\n  thread.id = " in r["title"], r["title"]
        assert (r["cpu"], r["off_cpu"]) == (fmt_ns(cpu), fmt_ns(off)), (n, r, cpu, off)
        # CPU, off-CPU and the rest inside the bar, in proportion to the duration
        seg = r["segs"]
        dur = (e - s) * MS
        assert abs(seg["c"] - r["bar"]["width"] * cpu / dur) < 1.5, (n, seg, r["bar"])
        assert abs(seg["o"] - r["bar"]["width"] * off / dur) < 1.5, (n, seg, r["bar"])
        assert abs(seg["r"] - r["bar"]["width"] * (dur - cpu - off) / dur) < 1.5, (n, seg, r["bar"])
    assert wf[span_id("charge").hex()]["service_tag"] == "payments"
    assert wf[span_id("load cart").hex()]["service_tag"] is None
    assert res["trace_scroll_width"] <= 1280

    # -- each span's flame graph: the frames and totals expected, CPU then off-CPU
    for n in SPANS:
        got = res["spans"][span_id(n).hex()]
        want = expected(n)
        for kind, label in (("cpu", "CPU"), ("off", "Off-CPU")):
            fr = got[kind]
            total = sum(want[kind].values())
            assert fr["frames"]["total"] == total, (n, kind, fr["status"])
            assert frame_stacks(fr["frames"]) == want[kind], (n, kind)
            assert fr["status"].startswith(f"{label}: total {fmt_ns(total)}"), (n, kind, fr["status"])
            assert fr["title"] == n
            assert f"profile_type={'off_cpu' if kind == 'off' else 'process_cpu'}" in fr["pprof"], fr["pprof"]
        if (SPANS[n][1] - SPANS[n][0]) * MS < MIN_SPAN:
            assert "below the minimum duration: no inferred samples" in got["cpu"]["facts"]
    assert res["spans"][span_id("price").hex()]["off"]["hash"].endswith("&type=" + OFF.replace(":", "%3A"))

    # -- tooltip, zoom, search, pprof link on the root's CPU graph
    root = expected("GET /cart")["cpu"]
    load_cart = sum(v for st, v in root.items() if st[:3] == ("main", "handle_cart", "load_cart"))
    total = sum(root.values())
    assert res["tooltip_visible"]
    assert res["tooltip"] == (f"load_cart\ntotal {fmt_ns(load_cart)} ({100 * load_cart / total:.2f}%)\n"
                              f"self {fmt_ns(0)} (0.00%)"), res["tooltip"]
    assert res["zoom"]["zoom"]["total"] == load_cart
    assert abs(res["zoom"]["frame"]["pw"] - res["zoom"]["canvas_width"]) < 1  # the zoomed frame fills the width
    assert res["after_reset"] is None
    db = sum(v for st, v in root.items() if "db_query" in st)
    assert res["search"]["matched"] == {"value": db, "count": 1}, res["search"]
    assert f"search: 1 frame, {fmt_ns(db)}" in res["search"]["status"]
    assert res["pprof"]["status"] == 200 and res["pprof"]["gzip"] and res["pprof"]["bytes"] > 50, res["pprof"]

    # -- keyboard: Escape closes the span, Down + Enter opens the next one, Escape twice = the list
    root_hex = span_id("GET /cart").hex()
    assert res["after_escape_1"]["hash"] == f"#trace={TRACE.hex()}"
    assert res["after_escape_1"]["focus"]["span"] == root_hex
    assert res["after_down"]["span"] == span_id("load cart").hex()
    assert res["after_enter"]["hash"] == f"#trace={TRACE.hex()}&span={span_id('load cart').hex()}"
    assert res["after_enter"]["loaded"] == f"{span_id('load cart').hex()}|{CPU}"
    assert res["after_escape_2"]["hash"] == "#traces&service=checkout"
    assert res["after_escape_2"]["focus"]["trace"] == TRACE.hex()

    # -- a trace opened by id; /ui/span/{id} and #trace=…&span=…&type= deep links
    assert res["by_id"] == {"hash": f"#trace={OLDER.hex()}", "rows": 1}
    assert res["deep_span"]["url"].endswith(f"/ui?span_id={root_hex}#span={root_hex}"), res["deep_span"]["url"]
    assert res["deep_span"]["frames"]["total"] == total
    assert frame_stacks(res["deep_span"]["frames"]) == root
    off_root = expected("GET /cart")["off"]
    assert frame_stacks(res["deep_trace"]["frames"]) == off_root
    assert res["deep_trace"]["rows"] == len(SPANS) and res["deep_trace"]["selected"] == [root_hex]

    # -- the service flame graph over the range: every CPU sample of checkout, in spans or not
    svc = {}
    for _, proc, st in CPU_OBS:
        if proc == SHOP:
            svc[st] = svc.get(st, 0) + PERIOD
    assert res["service_flame"]["type"] == CPU
    assert frame_stacks(res["service_flame"]["frames"]) == svc
    assert res["service_flame"]["status"].startswith(f"total {fmt_ns(sum(svc.values()))}")


def test_trace_view_draws_500_spans(spanprof_factory, tmp_path):
    node = browser_or_skip()
    server = spanprof_factory()
    spans = load_big(server)
    res = drive(node, server, tmp_path, mode="big", trace=BIG.hex(), loads=3, runs=5)
    short = sum(1 for _, _, d, _ in big_tree() if d < MIN_SPAN)
    assert res["rows"] == res["rows_after"] == len(spans) == 500
    assert res["short_rows"] == short > 0
    cold = [c["ms"] for c in res["cold"]]
    warm = [r["render_ms"] for r in res["runs"]]
    frames = [r["to_frame_ms"] for r in res["runs"]]

    def parts(p):
        return "/".join(f"{p[k]:.0f}" for k in ("tree", "html", "dom", "reflow"))

    print(f"500-span trace view, drawn after the answer arrived (performance.now(), layout included), "
          f"chromium {res['browser_version']}:\n"
          f"  cold page loads: {', '.join(f'{x:.1f}' for x in cold)} ms "
          f"(tree/html/dom/reflow: {'; '.join(parts(c['parts']) for c in res['cold'])})\n"
          f"  re-renders: {', '.join(f'{x:.1f}' for x in warm)} ms; to the next frame "
          f"{', '.join(f'{x:.1f}' for x in frames)} ms")


# Two more checkout traces whose root is also "GET /cart" (same process and thread, later): the
# span's peers. Their CPU: (trace id, start ms after t0, span id, stacks one 10 ms observation each)
PEER_TRACES = [
    (bytes.fromhex("c0ffee00000000000000000000000101"), 5_000, b"\x41" * 8, [PG] * 10 + [TEMPLATE] * 2 + [WRITE] * 3),
    (bytes.fromhex("c0ffee00000000000000000000000102"), 8_000, b"\x42" * 8, [PG] * 6 + [DECODE] * 2 + [TEMPLATE] * 2),
]
PEER_MS = 500  # each peer lasts 500 ms, its observations every 10 ms from 20 ms on


def load_peers(server, t0):
    for trace_id, start, sid, stacks in PEER_TRACES:
        base = t0 + start * MS
        span = (sid, b"", "GET /cart", base, base + PEER_MS * MS, SHOP)
        export(server, trace_request(base, [(trace_id, [span])]),
               profile_request(base, [(20 + 10 * k, SHOP, st) for k, st in enumerate(stacks)], []))


def peers_expected():
    """{stack: ns} of every checkout "GET /cart" span: the scenario's root and the peer traces."""
    out = dict(expected("GET /cart")["cpu"])
    for *_, stacks in PEER_TRACES:
        for st in stacks:
            out[st] = out.get(st, 0) + PERIOD
    return out


def decode_diff(fg):
    """Connect FlameGraphDiff → per level [(name, lt, ls, rt, rs, right x)] (query/diff.h)."""
    names, out = fg.get("names") or [], []
    for level in fg.get("levels") or []:
        v = [int(x) for x in level.get("values", [])]
        row, end_l, end_r = [], 0, 0
        for i in range(0, len(v), 7):
            xl, xr = end_l + v[i], end_r + v[i + 3]
            end_l, end_r = xl + v[i + 1], xr + v[i + 4]
            row.append((names[v[i + 6]], v[i + 1], v[i + 2], v[i + 4], v[i + 5], xr))
        out.append(row)
    return out


def connect_json(server, method, body):
    status, _h, data = http_request(server.http_port, "POST", f"/querier.v1.QuerierService/{method}",
                                    body=json.dumps(body).encode(),
                                    headers={"Content-Type": "application/json", "Connect-Protocol-Version": "1"})
    assert status == 200, data[:300]
    return json.loads(data)


def test_span_against_its_peers(spanprof_factory, tmp_path):
    """Issue 18: "Compare with peers" on a span whose name repeats across traces draws Diff's
    answer (the span alone against every span of its service and name) as a diff flame graph."""
    node = browser_or_skip()
    server = spanprof_factory()
    t0 = load_scenario(server)
    load_peers(server, t0)
    root = span_id("GET /cart").hex()
    short = span_id("cache get").hex()
    res = drive(node, server, tmp_path, mode="peers", trace=TRACE.hex(), span=root, short_span=short,
                hover_frame="pg_exec")
    assert res["button"] == {"text": "Compare with peers", "visible": True}
    diff = res["diff"]
    assert diff["shown"] and diff["pressed"] == "true" and diff["hash"] == f"#trace={TRACE.hex()}&span={root}&peers", diff

    # -- the request: the span alone against its service's spans of that name, over the page's
    # range (the last hour by default), which holds the span and its peers
    req = diff["stats"]["request"]
    start, end = int(req["left"]["start"]), int(req["left"]["end"])
    assert req == {"left": {"profileTypeID": CPU, "labelSelector": "{}", "spanSelector": [root], "start": str(start), "end": str(end)},
                   "right": {"profileTypeID": CPU, "labelSelector": '{service_name="checkout", span_name="GET /cart"}',
                             "start": str(start), "end": str(end)}}, req
    assert end - start == 3_600_000 and start <= t0 // MS and end >= t0 // MS + 8_000 + PEER_MS

    # -- the same Diff asked directly, and the scenario's own figures
    fg = connect_json(server, "Diff", req)["flamegraph"]
    lt, rt = int(fg.get("leftTicks", 0)), int(fg.get("rightTicks", 0))
    want_left, want_right = expected("GET /cart")["cpu"], peers_expected()
    assert (lt, rt) == (sum(want_left.values()), sum(want_right.values())) == (280 * MS, 530 * MS), (lt, rt)
    levels = decode_diff(fg)
    assert levels[0][0][:5] == ("total", lt, 0, rt, 0), levels[0]

    # -- what the page shows: both totals, the graph at the peers' widths, every node of the answer
    frames = diff["frames"]
    assert (frames["leftTicks"], frames["rightTicks"], frames["total"]) == (lt, rt, rt)
    assert diff["status"] == (f"CPU: this span {fmt_ns(lt)} · its peers {fmt_ns(rt)} "
                              "(spans named “GET /cart” of checkout in the last hour)"), diff["status"]
    page_nodes = [[(n["name"], n["lt"], n["ls"], n["rt"], n["rs"], n["x"]) for n in row] for row in frames["nodes"]]
    assert page_nodes == [[n for n in row if n[3] > 0] for row in levels], (page_nodes, levels)
    # the heaviest functions are labelled on screen
    drawn = {b["name"]: b for b in frames["drawn"]}
    for name in ("pg_exec", "template", "decode_json", "write_response", "main", "handle_cart"):
        assert drawn[name]["label"] == name, drawn[name]
    assert drawn["total"]["pw"] > 1000  # the root spans the width (1280 px page)

    # -- colours: red where the span's share is larger than its peers', green smaller, grey same
    def share_cls(n):
        a, b = n["lt"] * rt, n["rt"] * lt
        return "more" if a > b else "less" if a < b else "same"
    by_name = {n["name"]: n for row in frames["nodes"] for n in row}
    for b in frames["drawn"]:
        cls = share_cls(by_name[b["name"]])
        assert b["cls"] == cls, b
        hue = {"more": "hsl(0,", "less": "hsl(130,", "same": "hsl(220,"}[cls]
        assert b["fill"].replace(" ", "").startswith(hue), b
    cls = {n: b["cls"] for n, b in drawn.items()}
    assert (cls["decode_json"], cls["template"]) == ("more", "more"), cls  # 25% vs 17%, 29% vs 23%
    assert (cls["pg_exec"], cls["write_response"]) == ("less", "less"), cls  # 11% vs 36%, 10.7% vs 11.3%
    assert (cls["total"], cls["main"], cls["handle_cart"]) == ("same", "same", "same"), cls
    assert diff["legend"][:3] == ["this span: a smaller share than its peers", "the same share", "a larger share"]

    # -- the tooltip: both shares and both absolute values
    pg = by_name["pg_exec"]
    ls_, rs_ = pg["lt"] / lt, pg["rt"] / rt
    assert res["tooltip"]["visible"]
    assert res["tooltip"]["text"] == (
        f"pg_exec\nthis span: total {fmt_ns(pg['lt'])} ({100 * ls_:.2f}% of {fmt_ns(lt)}), self {fmt_ns(pg['ls'])}"
        f"\npeers: total {fmt_ns(pg['rt'])} ({100 * rs_:.2f}% of {fmt_ns(rt)}), self {fmt_ns(pg['rs'])}"
        f"\n{100 * (ls_ - rs_):.2f} percentage points: a smaller share than its peers"), res["tooltip"]["text"]

    # -- Escape goes back to the span's own flame graph
    assert res["after_escape"] == {"hash": f"#trace={TRACE.hex()}&span={root}", "pressed": "false", "diff_hidden": True}

    # -- a span under the minimum duration: nothing to compare, and it says so
    empty = res["empty"]
    fg = connect_json(server, "Diff", empty["stats"]["request"])["flamegraph"]
    assert int(fg.get("leftTicks", 0)) == int(fg.get("rightTicks", 0)) == 0, fg
    assert empty["stats"]["request"]["right"]["labelSelector"] == '{service_name="checkout", span_name="cache get"}'
    assert empty["empty"] == ("No CPU samples for this span or its peers (spans named “cache get” of checkout in the last hour). "
                              "It is below the minimum duration: no inferred samples, and spans that short are nobody's peers."), empty
    assert empty["frames"]["drawn"] == []

    # -- a server error is shown as text
    err = res["server_error"]
    assert err["status"] == "Diff: store busy" and err["status_class"] == "error", err
    assert err["empty"] == "Could not compare this span with its peers.", err
    assert any("503" in e for e in res["expected_errors"]), res["expected_errors"]
