"""The correlation scenario (corr_scenario.py) against the real binary, sample by sample.

The scenario is fed in its arrival order over gRPC (grpcio, official opentelemetry-proto classes;
each answer comes after its commit, so sequential sends are ordered), and again, in every test
that feeds it, as OTLP/HTTP JSON (the same messages through json_format, ids in hex, gzip). Then every span of the
scenario — long, short, never received — is asked for its flame graph with
querier.v1.QuerierService/SelectMergeSpanProfile over Connect JSON, once per correlated profile
type, and the leaves (`sample_<n>`) with their values are compared with what the contract says,
independently computed by corr_scenario.expected(). Failures list every wrong sample with the
rule each observation falls under, and the expected and actual spans with values.

Also: the whole profiles are stored unchanged (nothing double-counted by late attachments),
non-CPU profiles get no attachment, the per-rule counters in /metrics, the flags
--correlate-threadless=off and --span-min-duration, and a restart (SIGTERM, then kill -9) keeps
every attachment.
"""
import http.client
import json
import os
import re
import time

import pytest

import corr_scenario as cs
from e2e_helpers import RPC_TIMEOUT, scrape
from test_query import flamegraph_stacks

# The correlator's counters, as README.md names them: observations (one timestamp of a sample of
# a correlated profile type) by the rule that decided them, unmatched ones when they leave the
# correlation window with nothing, and spans shorter than --span-min-duration.
METRICS = {
    "link": "spanprof_correlator_samples_by_link_total",
    "thread": "spanprof_correlator_samples_by_thread_total",
    "unique": "spanprof_correlator_samples_by_process_span_total",
    "ambiguous": "spanprof_correlator_samples_ambiguous_total",
    "unmatched": "spanprof_correlator_samples_unmatched_total",
    "short_spans": "spanprof_correlator_spans_short_total",
}


class Query:
    """Connect JSON over one keep-alive HTTP/1.1 connection (the scenario asks hundreds of
    questions)."""

    def __init__(self, server, tenant=None):
        self.server = server
        self.tenant = tenant
        self.conn = None

    def call(self, method, body):
        headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
        if self.tenant:
            headers["X-Scope-OrgID"] = self.tenant
        data = json.dumps(body).encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=RPC_TIMEOUT)
            try:
                self.conn.request("POST", f"/querier.v1.QuerierService/{method}", body=data, headers=headers)
                resp = self.conn.getresponse()
                out = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        assert resp.status == 200, f"{method} {body}: {resp.status} {out[:500]!r}"
        return json.loads(out)

    def close(self):
        if self.conn:
            self.conn.close()


def window(scn):
    return {"start": str(scn.t0 // cs.MS - 60_000), "end": str(scn.t0 // cs.MS + 3_600_000)}


# Every feed runs twice: gRPC (gzip) and OTLP/HTTP JSON (gzip), the JS and browser SDKs' default.
ENCODINGS = ["grpc", "json"]


@pytest.fixture(params=ENCODINGS)
def encoding(request):
    return request.param


def feed(server, scn, encoding, **kw):
    cs.feed(server.http_target if encoding == "json" else server.grpc_target, scn, encoding=encoding, **kw)


def type_ids(q, scn):
    """kind → profile type id, from ProfileTypes (the ids of non-CPU kinds are the converter's)."""
    types = q.call("ProfileTypes", window(scn)).get("profileTypes", [])
    by_sample_type = {t["sampleType"]: t["ID"] for t in types}
    want = {"cpu": "cpu", "wall": "wall", "memory": "alloc_space", "off_cpu": "off_cpu"}
    missing = {k: v for k, v in want.items() if v not in by_sample_type}
    assert not missing, f"profile types missing after ingest: {missing}; have {types}"
    ids = {k: by_sample_type[v] for k, v in want.items()}
    assert ids["cpu"] == cs.CPU
    return ids


def leaves(fg):
    out = {}
    for stack, v in flamegraph_stacks(fg or {}).items():
        out[stack[-1]] = out.get(stack[-1], 0) + v
    return out


def span_leaves(q, scn, type_id, hexes):
    body = dict(window(scn), profileTypeID=type_id, labelSelector="{}", spanSelector=list(hexes))
    return leaves(q.call("SelectMergeSpanProfile", body).get("flamegraph"))


def actual_attachments(q, scn, ids, kinds=cs.CORRELATED_KINDS):
    """{sample n: {span hex: value}} for the correlated kinds, read span by span; plus the leaves
    that are not scenario samples (there must be none)."""
    got = {s.n: {} for s in scn.samples}
    strays = []
    leaf_re = re.compile(r"sample_(\d+)$")
    for kind in kinds:
        for span in scn.spans:
            for leaf, v in span_leaves(q, scn, ids[kind], [span.hex]).items():
                m = leaf_re.match(leaf)
                if not m or int(m.group(1)) >= len(scn.samples):
                    strays.append((span.label, kind, leaf, v))
                    continue
                n = int(m.group(1))
                if scn.samples[n].kind != kind:
                    strays.append((span.label, kind, leaf, v))
                    continue
                got[n][span.hex] = got[n].get(span.hex, 0) + v
    return got, strays


def mismatch_report(scn, exp, got, strays, limit=int(os.environ.get("SPANPROF_SCENARIO_REPORT", "40")),
                    per_case=3):
    """One paragraph per wrong sample: where it ran, each observation's rule, and the spans it
    should and does have."""
    label = {s.hex: s.label for s in scn.spans}
    lines = []
    bad = [s for s in scn.samples if exp.attached[s.n] != got.get(s.n, {})]
    by_case = {}
    for s in bad:
        by_case[s.case] = by_case.get(s.case, 0) + 1
    shown = []  # a few of every case first, then the rest up to the limit
    for case in by_case:
        shown += [s for s in bad if s.case == case][:per_case]
    shown += [s for s in bad if s not in shown]
    for s in shown[:limit]:
        offs = [(t - scn.t0) / cs.MS for t in s.timestamps]
        want = {label[h]: v for h, v in sorted(exp.attached[s.n].items())}
        have = {label.get(h, h): v for h, v in sorted(got.get(s.n, {}).items())}
        extra = f" link={s.link.label}" if s.link else ""
        lines.append(f"sample_{s.n} [{s.case}] {s.kind} on {s.resource.name} tid={s.tid} pid_attr={s.pid_attr}"
                     f"{extra} at ms {offs} rules {exp.why[s.n]}\n    expected {want}\n    actual   {have}")
    if strays:
        lines.append(f"leaves that are no scenario sample of that type: {strays[:10]}")
    head = (f"{len(bad)} of {len(scn.samples)} samples attached wrongly (seed {getattr(scn, 'seed', '-')}), "
            f"by case {by_case}")
    return head + "\n" + "\n".join(lines)


def check_attachments(q, scn, exp, ids):
    got, strays = actual_attachments(q, scn, ids)
    want = {s.n: exp.attached[s.n] for s in scn.samples}
    if got != want or strays:
        pytest.fail(mismatch_report(scn, exp, got, strays), pytrace=False)
    # Memory profiles: stored, never attached (one question with every span per type)
    for kind in ("memory",):
        hexes = [s.hex for s in scn.spans]
        for i in range(0, len(hexes), 64):
            assert span_leaves(q, scn, ids[kind], hexes[i:i + 64]) == {}, f"{kind} samples got attached"


def check_totals(q, scn, ids):
    """The profiles themselves: every sample once with its whole value, whatever got attached."""
    for kind, type_id in ids.items():
        want = {s.leaf: s.total for s in scn.samples if s.kind == kind}
        body = dict(window(scn), profileTypeID=type_id, labelSelector="{}")
        got = leaves(q.call("SelectMergeStacktraces", body).get("flamegraph"))
        assert got == want, f"{kind}: the stored profile differs from what was sent " \
                            f"(missing {set(want) - set(got)}, wrong " \
                            f"{ {k: (want[k], got[k]) for k in want.keys() & got.keys() if want[k] != got[k]} })"


def metric_values(server, require=True):
    m = scrape(server.http_port)
    missing = [n for n in METRICS.values() if not m.series(n)]
    if missing and require:
        have = sorted({n for n, _, _ in m.samples if n.startswith("spanprof_correlator_")})
        pytest.fail(f"/metrics lacks {missing}; the correlator exports {have}", pytrace=False)
    return {k: m.total(n) for k, n in METRICS.items()}


@pytest.fixture(scope="module")
def scenario():
    scn = cs.build()
    return scn, cs.expected(scn)


def test_scenario_expectations_cover_every_case(scenario):
    """Guards the generator: every rule has observations, and the cases the contract singles out
    are present (a scenario that proves nothing must fail here, not pass below)."""
    scn, exp = scenario
    assert all(v >= 10 for v in exp.counts.values()), exp.counts
    cases = {s.case for s in scn.samples}
    for case in ("link short chain", "link ancestors later", "link cross-process parent",
                 "link never received", "pid-only matches both hosts", "one-sided keys", "threadless fixed",
                 "memory never attached", "off_cpu stored", "wall", "boundary"):
        assert case in cases
    split = [s for s in scn.samples if len({frozenset(x) for x in _obs_spans(scn, s)}) > 1]
    assert len(split) >= 20, "few samples are split across span sets"
    assert sum(1 for s in scn.spans if s.end - s.start < cs.MIN_SPAN) >= 50
    attached_short = {h for a in exp.attached.values() for h in a
                      if scn.span_by_hex(h).end - scn.span_by_hex(h).start < cs.MIN_SPAN}
    assert len(attached_short) >= 5, "no short span is linked"
    # a clean expectation: replaying the arrival order ("later spans add, never retract") gives
    # the same attachments as knowing every span from the start
    assert cs.expected(scn, incremental=True).attached == exp.attached


def _obs_spans(scn, smp):
    """Per observation, the spans it alone would get (to tell split samples)."""
    one = []
    values = smp.values or [None] * len(smp.timestamps)
    for t, v in zip(smp.timestamps, values):
        single = cs.Sample(0, smp.case, smp.resource, smp.kind, [t], None if v is None else [v], smp.tid,
                           smp.pid_attr, smp.link)
        part = cs.Scenario(scn.t0, scn.resources, scn.spans, [single], [])
        one.append(set(cs.expected(part).attached[0]))
    return one


def test_every_sample_attaches_as_the_contract_says_and_survives_restarts(spanprof_factory, scenario, encoding):
    scn, exp = scenario
    server = spanprof_factory(["--threadless-settle=0s"], name="corr")
    feed(server, scn, encoding)
    q = Query(server)
    ids = type_ids(q, scn)
    check_totals(q, scn, ids)
    check_attachments(q, scn, exp, ids)
    # Counters that do not depend on the arrival order
    m = metric_values(server)
    assert m["link"] == exp.counts["link"], m
    q.close()

    # SIGTERM, same data dir: the same attachments
    assert server.stop() == 0
    again = spanprof_factory(["--threadless-settle=0s"], name="corr")
    q = Query(again)
    check_totals(q, scn, ids)
    check_attachments(q, scn, exp, ids)
    q.close()

    # kill -9 right after the last acknowledged export of a second tenant's feed: acknowledged
    # attachments survive
    feed(again, scn, encoding, tenant="second", pause=0)
    again.proc.kill()
    again.proc.wait()
    again.stopped, again.returncode = True, 0
    third = spanprof_factory(["--threadless-settle=0s"], name="corr")
    for tenant in (None, "second"):
        q = Query(third, tenant)
        check_totals(q, scn, ids)
        check_attachments(q, scn, exp, ids)
        q.close()


def test_metrics_count_each_rule_per_observation(spanprof_factory, scenario, encoding):
    """Spans first, then profiles: every observation's rule is known when it arrives. Unmatched
    observations are counted when they leave the correlation window (5 s here)."""
    scn, exp = scenario
    first = cs.spans_first(scn)
    window_s = 5
    server = spanprof_factory(extra_args=[f"--correlation-window={window_s}s", "--threadless-settle=0s"],
                              name="metrics")
    before = metric_values(server, require=False)
    assert all(v == 0 for v in before.values()), before
    feed(server, first, encoding, pause=0)
    fed = time.monotonic()
    got = metric_values(server)
    want = dict(exp.counts, short_spans=exp.short_spans)
    decided = {k: v for k, v in want.items() if k != "unmatched"}
    assert {k: got[k] for k in decided} == decided, f"/metrics {got}\nexpected {want}"
    q = Query(server)
    check_attachments(q, first, exp, type_ids(q, first))
    q.close()
    # Past the window, another export (one span of an unrelated process) gives the server a
    # chance to expire what waited; the counter may also move on its own.
    time.sleep(max(0.0, window_s + 0.5 - (time.monotonic() - fed)))
    other = cs.Resource("unrelated", {"service.name": "svc-unrelated", "process.pid": 999_999})
    tick = cs.Span("tick", b"\x09" * 16, b"\x09" * 8, b"", other, 1, scn.t0, scn.t0 + cs.SEC)
    deadline = time.monotonic() + 10
    while True:
        target = server.http_target if encoding == "json" else server.grpc_target
        cs.send_step(target, first, cs.Step("spans", [tick], "tick"), encoding=encoding)
        got = metric_values(server)
        if got["unmatched"] >= want["unmatched"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == want, f"/metrics {got}\nexpected {want}"


@pytest.mark.parametrize("flags,min_span,threadless", [
    (["--correlate-threadless=off"], cs.MIN_SPAN, "off"),
    (["--span-min-duration=50ms"], 50 * cs.MS, "unique"),
], ids=["threadless-off", "min-50ms"])
def test_flags_change_the_rules(spanprof_factory, scenario, flags, min_span, threadless, encoding):
    scn, _ = scenario
    exp = cs.expected(scn, min_span=min_span, threadless=threadless)
    server = spanprof_factory(extra_args=flags + ["--threadless-settle=0s"], name="flags")
    feed(server, scn, encoding, pause=0)
    q = Query(server)
    check_attachments(q, scn, exp, type_ids(q, scn))
    q.close()


# ---------------------------------------------------------------------------------------------
# Late spans that would change an inference already made: "later spans add, never retract" —
# the earlier attachment stays, the new span gets the observation only where the rules, with
# every span now known, give it to it.
# ---------------------------------------------------------------------------------------------


def _late_change_scenario(t0):
    P = cs.Resource("pid 505", {"service.name": "svc-late", "process.pid": 505})
    tr = [bytes([i]) * 16 for i in (1, 2, 3)]
    ms = cs.MS
    a = cs.Span("threadless-A", tr[0], b"\xaa" * 8, b"", P, None, t0 + 1000 * ms, t0 + 2000 * ms)
    b = cs.Span("threadless-B (other trace, later)", tr[1], b"\xbb" * 8, b"", P, None, t0 + 1500 * ms,
                t0 + 2500 * ms)
    c = cs.Span("threadless-C", tr[2], b"\xcc" * 8, b"", P, None, t0 + 3000 * ms, t0 + 4000 * ms)
    d = cs.Span("threaded-D on 77 (later)", tr[2], b"\xdd" * 8, c.span_id, P, 77, t0 + 3200 * ms,
                t0 + 3600 * ms)
    e = cs.Span("threadless-E (later, alone)", tr[0], b"\xee" * 8, b"", P, None, t0 + 5000 * ms,
                t0 + 6000 * ms)
    s0 = cs.Sample(0, "unique, then a second chain", P, "cpu",
                   [t0 + 1600 * ms, t0 + 1200 * ms, t0 + 2200 * ms], tid=77)
    s1 = cs.Sample(1, "threadless, then a thread span", P, "cpu", [t0 + 3300 * ms, t0 + 3700 * ms], tid=77)
    s2 = cs.Sample(2, "nothing, then one chain", P, "cpu", [t0 + 5500 * ms])
    steps = [cs.Step("spans", [a, c], "first spans"), cs.Step("profiles", [s0, s1, s2], "profiles"),
             cs.Step("spans", [b, d, e], "later spans")]
    return cs.Scenario(t0, [P], [a, b, c, d, e], [s0, s1, s2], steps)


def test_late_spans_add_and_never_retract(spanprof_factory, encoding):
    """sample_0: at 1600 and 1200 ms only A covers it when it arrives (A gets both); B of
    another trace arrives later and makes 1600 ms ambiguous among the spans now known, so B gets
    nothing there, but 2200 ms (unmatched on arrival) is B's alone now. sample_1: 3300 ms went to
    threadless C; D on its thread arrives later and gets it too (3700 ms stays C's). sample_2:
    no span on arrival, E alone later. Rule 3 on arrival (--threadless-settle=0): the settle time
    has its own test (test_threadless_settle.py)."""
    spanprof = spanprof_factory(["--threadless-settle=0s"])
    scn = _late_change_scenario((time.time_ns() - 90 * cs.SEC) // (10 * cs.SEC) * (10 * cs.SEC))
    exp = cs.expected(scn, incremental=True)
    P = cs.PERIOD
    assert exp.attached == {0: {"aa" * 8: 2 * P, "bb" * 8: P}, 1: {"cc" * 8: 2 * P, "dd" * 8: P},
                            2: {"ee" * 8: P}}, exp.attached
    feed(spanprof, scn, encoding)
    q = Query(spanprof)
    got, strays = actual_attachments(q, scn, {"cpu": cs.CPU}, kinds=("cpu",))
    q.close()
    if got != exp.attached or strays:
        pytest.fail(mismatch_report(scn, exp, got, strays), pytrace=False)


@pytest.mark.parametrize("spans_first", [True, False], ids=["spans-first", "profiles-first"])
def test_retried_exports(spanprof, spans_first, encoding):
    """A retried span export attaches nothing twice; a retried profile export counts again, as
    in Pyroscope (profiles are not deduplicated), and its copy is attached like the original —
    also when the span arrives after both copies."""
    t0 = (time.time_ns() - 90 * cs.SEC) // (10 * cs.SEC) * (10 * cs.SEC)
    P = cs.Resource("pid 606", {"service.name": "svc-retry", "process.pid": 606})
    root = cs.Span("root", b"\x06" * 16, b"\x61" * 8, b"", P, 5, t0, t0 + 500 * cs.MS)
    child = cs.Span("child", b"\x06" * 16, b"\x62" * 8, root.span_id, P, 5, t0 + 100 * cs.MS, t0 + 200 * cs.MS)
    s0 = cs.Sample(0, "retried", P, "cpu", [t0 + 150 * cs.MS, t0 + 300 * cs.MS, t0 + 900 * cs.MS], tid=5)
    s1 = cs.Sample(1, "linked, retried", P, "cpu", [t0 + 50 * cs.MS], tid=5, link=child)
    spans = [cs.Step("spans", [root, child], "spans"), cs.Step("spans", [root, child], "spans again")]
    profiles = [cs.Step("profiles", [s0, s1], "profiles"), cs.Step("profiles", [s0, s1], "profiles again")]
    scn = cs.Scenario(t0, [P], [root, child], [s0, s1], spans + profiles if spans_first else profiles + spans)
    feed(spanprof, scn, encoding)
    q = Query(spanprof)
    Pd = cs.PERIOD
    want = {0: {root.hex: 2 * 2 * Pd, child.hex: 2 * Pd}, 1: {child.hex: 2 * Pd, root.hex: 2 * Pd}}
    got, strays = actual_attachments(q, scn, {"cpu": cs.CPU}, kinds=("cpu",))
    body = dict(window(scn), profileTypeID=cs.CPU, labelSelector='{service_name="svc-retry"}')
    totals = leaves(q.call("SelectMergeStacktraces", body).get("flamegraph"))
    q.close()
    assert totals == {"sample_0": 2 * 3 * Pd, "sample_1": 2 * Pd}
    assert got == want and not strays, (got, strays)
