"""Issue 21: what Grafana shows through a Pyroscope cluster equals what spanprof knows.

spanprof runs with --store sqlite,pyroscope, pushing to gopyro (a Pyroscope stand-in that keeps
of each push what Pyroscope keeps, and answers queries as after compaction: tests/e2e/gopyro), and
forwards every trace export to a real Jaeger v2 (OTLP/HTTP in, in-memory store). The correlation
scenario (corr_scenario.py) is fed over gRPC; once spanprof's queues are empty:

- plumbing (must pass): Jaeger holds every span of the scenario that spanprof received, the spans
  carrying pyroscope.profile.id carry their own id, the stand-in got the profiles and knows the
  correlated profile types;
- span by span, as Grafana's trace-to-profiles link does: for every span carrying
  pyroscope.profile.id in Jaeger, SelectMergeSpanProfile on the stand-in with
  {service_name="<the span's service.name>"} and that id, for each correlated profile type
  (process_cpu:cpu:..., wall), against spanprof's own SelectMergeSpanProfile for the same span;
  and the local roots (no parent in their process) that have a span profile in spanprof but no
  link in Jaeger (inner spans without a link are listed, not counted: Pyroscope keeps one span per
  sample, so with samples labelled by their local root only local roots can be linked);
- per service and profile type: SelectMergeStacktraces over the scenario's range, stand-in
  against spanprof.

- coverage, by the scenario's own contract: the linked spans are local roots, and every local root
  whose observations belong to it alone (no observation shared with another root) is linked.

Each test's report (every differing span: expected vs got totals and leaf values) is written to
<tmp>/exact/<test>.txt, printed with -s, and SPANPROF_EXACT_REPORT=<file> appends it.
SPANPROF_EXACT_GOPYRO_ARGS passes flags to the stand-in (e.g. -compact=false: as Pyroscope answers
before compaction, every pushed profile counting), SPANPROF_EXACT_PUSH_DELAY and
SPANPROF_EXACT_FORWARD_DELAY set --pyroscope-push-delay / --traces-forward-delay (default 5s each: room for a slow feed under ASan)
when the binary has them.
"""
import os
import re
import subprocess
import time

import pytest

import corr_scenario as cs
from backends import GoPyro, Jaeger, have_go
from conftest import Spanprof, check_clean_exit, spanprof_bin
from e2e_helpers import scrape
from test_corr_scenario import Query, leaves, window

pytestmark = pytest.mark.skipif(not have_go(), reason="Go toolchain not installed")

ATTR = "pyroscope.profile.id"
CORRELATED_SAMPLE_TYPES = ("cpu", "wall")
# Flags the pusher work adds (issue 21); passed when the binary knows them.
DELAY_FLAGS = {
    "--pyroscope-push-delay": os.environ.get("SPANPROF_EXACT_PUSH_DELAY", "5s"),
    "--traces-forward-delay": os.environ.get("SPANPROF_EXACT_FORWARD_DELAY", "5s"),
}
SETTLE_TIMEOUT = 60.0


def seconds(d):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", d)
    assert m, d
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def known_flags():
    r = subprocess.run([str(spanprof_bin()), "--help"], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


class Setup:
    pass


def settle(server, pyro, min_wait, timeout=SETTLE_TIMEOUT):
    """Until spanprof's hold and queues are empty and nothing has changed for a second (and
    min_wait has passed: forwarded exports wait their delay before they are queued to send)."""
    t0 = time.monotonic()
    last, since = None, t0
    while True:
        m = scrape(server.http_port)
        queued = (m.total("spanprof_pyroscope_queued") + m.total("spanprof_traces_forward_queued")
                  + m.total("spanprof_pyroscope_hold_groups"))
        raw = pyro.raw()
        state = (queued, m.total("spanprof_pyroscope_sent_total"), m.total("spanprof_traces_forward_sent_total"),
                 sum(r["count"] for r in raw))
        now = time.monotonic()
        if state != last:
            last, since = state, now
        if queued == 0 and now - t0 >= min_wait and now - since >= 1.0:
            return now - t0
        assert now - t0 < timeout, f"spanprof's queues did not settle in {timeout:.0f} s: {state}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def exact(gopyro_bin, jaeger_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("exact")
    s = Setup()
    s.dir = d
    s.pyro = GoPyro(gopyro_bin, d / "gopyro", os.environ.get("SPANPROF_EXACT_GOPYRO_ARGS", "").split())
    s.jaeger = Jaeger(jaeger_bin, d / "jaeger")
    s.server = s.q = None
    try:
        s.pyro.start()
        s.jaeger.start()
        help_text = known_flags()
        delays = {f: v for f, v in DELAY_FLAGS.items() if f in help_text}
        s.args = ["--store", "sqlite,pyroscope", "--pyroscope-url", s.pyro.url,
                  "--traces-forward-to", s.jaeger.otlp_http_url, "--forward-batch-interval", "50ms",
                  "--threadless-settle=0s", *[f"{f}={v}" for f, v in delays.items()]]
        s.server = Spanprof(d / "spanprof", s.args)
        s.server.start()
        s.scn = cs.build()
        t = time.monotonic()
        cs.feed(s.server.grpc_target, s.scn)
        s.feed_secs = time.monotonic() - t
        s.settle_secs = settle(s.server, s.pyro, max([seconds(v) for v in delays.values()], default=0) + 0.5)
        s.q = Query(s.server)
        s.window = window(s.scn)
        types = s.q.call("ProfileTypes", s.window).get("profileTypes", [])
        s.types = sorted(t["ID"] for t in types)
        s.correlated = sorted(t["ID"] for t in types if t["sampleType"] in CORRELATED_SAMPLE_TYPES)
        # Jaeger's copy of every trace of the scenario: {span hex: [copies]}
        s.jspans = {}
        for trace_id in sorted({sp.trace_id for sp in s.scn.spans}):
            for sp in s.jaeger.spans(trace_id.hex()):
                s.jspans.setdefault(sp["span_id"], []).append(sp)
        yield s
    finally:
        if s.q is not None:
            s.q.close()  # an idle keep-alive connection would hold up spanprof's shutdown
        if s.server is not None and s.server.proc is not None:
            check_clean_exit(s.server)
        s.jaeger.stop()
        s.pyro.stop()


def report(s, name, lines):
    text = "\n".join(lines) + "\n"
    (s.dir / f"{name}.txt").write_text(text)
    out = os.environ.get("SPANPROF_EXACT_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(f"=== {name} ===\n{text}")
    print(f"=== {name} ===\n{text}")
    return text


# ---------------------------------------------------------------------------------------------
# Plumbing
# ---------------------------------------------------------------------------------------------


def test_plumbing(exact):
    s = exact
    # Jaeger holds every span spanprof received, each from its service
    missing = [sp.label for sp in s.scn.spans if sp.received and sp.hex not in s.jspans]
    assert not missing, f"{len(missing)} spans never reached Jaeger: {missing[:20]}"
    ghosts = [sp.label for sp in s.scn.spans if not sp.received and sp.hex in s.jspans]
    assert not ghosts, f"spans nobody sent are in Jaeger: {ghosts}"
    wrong_service = [sp.label for sp in s.scn.spans if sp.received
                     and any(c["service"] != sp.resource.service for c in s.jspans[sp.hex])]
    assert not wrong_service, wrong_service
    # the link attribute, when present, is the span's own id
    marked = {h for h, copies in s.jspans.items() if any(ATTR in c["attributes"] for c in copies)}
    assert marked, "no span in Jaeger carries pyroscope.profile.id"
    bad = [(h, c["attributes"][ATTR]) for h in marked for c in s.jspans[h]
           if ATTR in c["attributes"] and c["attributes"][ATTR] != h]
    assert not bad, f"pyroscope.profile.id is not the span's own id: {bad[:10]}"
    # the stand-in got profiles of every service that sent CPU samples, and knows spanprof's types
    raw = s.pyro.raw()
    assert raw, "the Pyroscope stand-in received nothing"
    services = {r["labels"].get("service_name") for r in raw}
    want = {smp.resource.service for smp in s.scn.samples if smp.kind == "cpu"}
    assert want <= services, f"services without a push: {want - services}"
    pyro_types = {t["ID"] for t in s.pyro.call("ProfileTypes", s.window).get("profileTypes", [])}
    assert cs.CPU in s.correlated, s.types
    assert set(s.correlated) <= pyro_types, f"spanprof has {s.types}, the stand-in {sorted(pyro_types)}"
    collisions = [r for r in raw if r["count"] > 1]
    report(s, "plumbing", [
        f"spanprof {' '.join(s.args)}",
        f"feed {s.feed_secs:.1f} s, settle {s.settle_secs:.1f} s",
        f"jaeger: {len(s.jspans)} spans, {len(marked)} with {ATTR}, "
        f"{sum(len(c) for c in s.jspans.values()) - len(s.jspans)} extra copies (retried exports)",
        f"stand-in: {len(raw)} (series, timestamp) pairs from {sum(r['count'] for r in raw)} pushed profiles; "
        f"{len(collisions)} collide (more than one profile of a series at one timestamp: compaction keeps one)",
        *[f"  {r['profile_type']} {r['labels']} t={r['time_nanos']}: {r['count']} profiles, total {r['total']}"
          for r in collisions[:30]],
    ])


# ---------------------------------------------------------------------------------------------
# Equality
# ---------------------------------------------------------------------------------------------


def _span_query(window_, type_id, service, h):
    return dict(window_, profileTypeID=type_id, labelSelector=f'{{service_name="{service}"}}', spanSelector=[h])


def _leaf_diff(want, got, limit=12):
    keys = sorted(set(want) | set(got), key=lambda k: (int(k.rsplit("_", 1)[-1]) if k[-1:].isdigit() else 0, k))
    diff = [f"{k}: want {want.get(k, 0)} got {got.get(k, 0)}" for k in keys if want.get(k, 0) != got.get(k, 0)]
    return diff[:limit] + ([f"... {len(diff) - limit} more"] if len(diff) > limit else [])


class Causes:
    """Where a leaf that spanprof counts for a span went in the stand-in, from its stored
    profiles (GET /debug/profiles: after compaction) and all it was pushed (-compact=false view
    is not needed: /debug/raw counts the collisions)."""

    def __init__(self, s, type_id):
        self.spans_of = {}  # (service, leaf) -> {span hex or None}
        for p in s.pyro.profiles():
            if p["profile_type"] != type_id:
                continue
            svc = p["labels"].get("service_name")
            for smp in p["samples"]:
                self.spans_of.setdefault((svc, smp["stack"][0]), set()).add(smp.get("span_id"))
        self.children = {}
        for sp in s.scn.spans:
            if sp.parent_id:
                self.children.setdefault(sp.parent_id.hex(), []).append(sp.hex)

    def descendants(self, h):
        out, todo = set(), list(self.children.get(h, []))
        while todo:
            c = todo.pop()
            if c not in out:
                out.add(c)
                todo += self.children.get(c, [])
        return out

    def of(self, service, h, leaf):
        """Why the stand-in lacks (part of) leaf for span h."""
        spans = self.spans_of.get((service, leaf))
        if spans is None:
            return "gone (its profile lost a same-series same-timestamp collision)"
        if h in spans:
            return "partly gone (collision or value split)"
        if spans & self.descendants(h):
            return "labelled with a descendant span (innermost span only)"
        if spans == {None}:
            return "pushed without a span (attached after its push?)"
        return "labelled with another span"


def compare_spans(s):
    """The (span, type) pairs whose Grafana view differs from spanprof's: [(span hex, line)] of
    linked spans that differ and of local roots that have a span profile but no link; the same of
    inner spans with a profile but no link (reported, not counted: Pyroscope keeps one span per
    sample, so a pusher labelling samples with their local root links local roots only);
    {cause: leaves}; the number of equal pairs."""
    by_hex = {sp.hex: sp for sp in s.scn.spans}
    causes = {t: Causes(s, t) for t in s.correlated}
    diffs, unlinked, tally, same = [], [], {}, 0
    for h in sorted(s.jspans):
        copies = s.jspans[h]
        linked = any(c["attributes"].get(ATTR) == h for c in copies)
        service = copies[0]["service"]
        label = by_hex[h].label if h in by_hex else "?"
        for t in s.correlated:
            want = leaves(s.q.call("SelectMergeSpanProfile", _span_query(s.window, t, service, h)).get("flamegraph"))
            if not linked:
                if want:
                    root = h in by_hex and is_local_root(by_hex[h], by_hex)
                    c = ("local root not linked in Jaeger (info)" if root
                         else "inner span not linked in Jaeger (info)")
                    tally[c] = tally.get(c, 0) + len(want)
                    line = (f"{label} ({h}, {service}) {t}: spanprof has {sum(want.values())} in {len(want)} "
                            f"leaves, but Jaeger's {'local root' if root else 'inner'} span has no {ATTR}: "
                            "Grafana shows no link")
                    unlinked.append((h, line))
                continue
            got = leaves(s.pyro.call("SelectMergeSpanProfile", _span_query(s.window, t, service, h)).get("flamegraph"))
            if want == got:
                same += 1
                continue
            why = {}
            for leaf in sorted(set(want) | set(got)):
                if got.get(leaf, 0) < want.get(leaf, 0):
                    c = causes[t].of(service, h, leaf)
                elif got.get(leaf, 0) > want.get(leaf, 0):
                    c = "more in the stand-in"
                else:
                    continue
                why[c] = why.get(c, 0) + 1
                tally[c] = tally.get(c, 0) + 1
            diffs.append((h, f"{label} ({h}, {service}) {t}: want total {sum(want.values())} "
                             f"({len(want)} leaves), got {sum(got.values())} ({len(got)} leaves) ["
                             + ", ".join(f"{n} {c}" for c, n in sorted(why.items())) + "]; "
                             + "; ".join(_leaf_diff(want, got))))
        if linked and len({c["attributes"].get(ATTR) for c in copies}) > 1:
            diffs.append((h, f"{label} ({h}): Jaeger holds {len(copies)} copies that disagree on {ATTR}"))
    return diffs, unlinked, tally, same


def is_local_root(span, by_hex):
    """No parent, a parent never received, or a parent in another process (resource)."""
    parent = by_hex.get(span.parent_id.hex()) if span.parent_id else None
    return parent is None or not parent.received or parent.resource is not span.resource


def test_span_profiles_equal(exact):
    """Every span Jaeger shows with pyroscope.profile.id: Grafana's trace-to-profiles query on
    the stand-in answers exactly what spanprof answers, for every correlated profile type."""
    s = exact
    diffs, unlinked, tally, same = compare_spans(s)
    text = report(s, "span-profiles", [f"{same} (span, type) pairs equal, {len(diffs)} differ, {len(unlinked)} "
                                       "spans with a profile have no link (info); leaves by cause:"]
                  + [f"  {n} {c}" for c, n in sorted(tally.items(), key=lambda x: -x[1])]
                  + [line for _, line in diffs] + ["--- spans without a link (info) ---"]
                  + [line for _, line in unlinked])
    assert same, "no linked span was compared"
    assert not diffs, text[:20000]


def answerable_local_roots(s):
    """From the scenario's own contract (corr_scenario, not spanprof): the local roots that
    Pyroscope can answer whole, and those it cannot. A pushed sample names one span; an
    observation the contract gives to spans under two local roots reaches Pyroscope under one of
    them, so the other cannot be answered whole (which one keeps it is spanprof's choice: both
    are left out of the clean set). Local roots with no observation have nothing to link."""
    by_hex = {sp.hex: sp for sp in s.scn.spans}

    def root_of(sp):
        seen = set()
        while not is_local_root(sp, by_hex) and sp.hex not in seen:
            seen.add(sp.hex)
            sp = by_hex[sp.parent_id.hex()]
        return sp.hex

    with_obs, shared = set(), set()
    for kind in CORRELATED_SAMPLE_TYPES:
        for _smp, _t, _v, spans in cs.observation_spans(s.scn, kind=kind):
            roots = {root_of(sp) for sp in spans.values()}
            with_obs |= roots
            if len(roots) > 1:
                shared |= roots
    received = {sp.hex for sp in s.scn.spans if sp.received}
    return (with_obs - shared) & received, shared


def test_marked_spans_are_the_local_roots_pyroscope_can_answer(exact):
    """Coverage, judged by the scenario's contract: nothing but local roots is linked, and the
    local roots whose observations belong to them alone are linked, but for at most one in ten.
    The hold keeps values per stack and 10 s bucket, not per observation: when a late span's
    claim cannot be told apart from another chain's portion of the same stack, the span is left
    unlinked (spanprof_pyroscope_spans_incomplete_total) rather than linked to a profile
    Pyroscope would answer partly — fewer links, never a wrong one (test_span_profiles_equal)."""
    s = exact
    by_hex = {sp.hex: sp for sp in s.scn.spans}
    marked = {h for h, copies in s.jspans.items() if any(c["attributes"].get(ATTR) == h for c in copies)}
    clean, shared = answerable_local_roots(s)
    inner = sorted(by_hex[h].label for h in marked if not is_local_root(by_hex[h], by_hex))
    missing = sorted(by_hex[h].label for h in clean - marked)
    report(s, "coverage", [f"{len(marked)} spans linked; {len(clean)} local roots answerable whole by "
                           f"the contract, {len(shared)} sharing observations with another root "
                           f"({len(marked & shared)} of those linked: they kept the samples)",
                           f"inner spans linked: {inner}", f"answerable local roots not linked: {missing}"])
    assert not inner, f"inner spans linked (Pyroscope cannot answer them whole): {inner}"
    assert len(missing) * 10 <= len(clean), (
        f"{len(missing)} of {len(clean)} local roots Pyroscope can answer whole are not linked: {missing}")


def compare_services(s):
    lines, bad = [], 0
    services = sorted({r.service for r in s.scn.resources})
    for t in s.types:
        for svc in services:
            body = dict(s.window, profileTypeID=t, labelSelector=f'{{service_name="{svc}"}}')
            want = leaves(s.q.call("SelectMergeStacktraces", body).get("flamegraph"))
            got = leaves(s.pyro.call("SelectMergeStacktraces", body).get("flamegraph"))
            if want == got:
                continue
            bad += 1
            lines.append(f"{svc} {t}: want total {sum(want.values())} ({len(want)} leaves), got "
                         f"{sum(got.values())} ({len(got)} leaves); " + "; ".join(_leaf_diff(want, got)))
    return bad, lines


def test_service_totals_equal(exact):
    """Per service and profile type over the scenario's range, after compaction: nothing pushed
    was collapsed away or counted twice."""
    s = exact
    bad, lines = compare_services(s)
    text = report(s, "service-totals", [f"{bad} (service, type) pairs differ over {s.window}"] + lines)
    assert not bad, text[:20000]
