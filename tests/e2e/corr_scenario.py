"""A seeded correlation scenario and, independently of the server, the attachment every sample
must get under the correlation contract (issue 5, /tmp/lead/corr_rules.md as of this writing).

What the scenario holds (every case is built on purpose; random filling only adds volume):
- processes: two hosts running the same pid with the same thread ids (host.name tells them
  apart), two containers running the same pid (container.id), a process whose samples carry
  host.name / k8s.pod.uid that its spans lack (a key on one side only does not matter), samples
  with only a pid (they match the spans of both hosts), samples whose pid is a sample attribute,
  a process whose thread.id is a resource attribute, samples with no pid at all;
- spans with thread.id, nested several levels deep, concurrent across threads and on one thread,
  some shorter than 20 ms, exactly 20 ms, and one nanosecond under it;
- spans without thread.id: single chains (unique), two concurrent chains of different traces and
  concurrent siblings of one trace (ambiguous), chains with equal starts (ties), identical
  intervals, short threadless spans that must not count;
- explicit links (OTLP link_index): to long spans, to short spans with short and long ancestors,
  to a span whose parent is in another process, to a span that is never received, to spans
  whose parent and grandparent arrive later (grandparent first), from samples whose timestamps
  lie outside the linked span or inside other spans of their thread;
- samples with several timestamps (split across spans), with and without per-timestamp values;
- wall-clock profiles (correlated) and memory / off-CPU profiles carrying links and threads
  (memory: stored, never attached; off-CPU: stored, attached as intervals by test_offcpu.py);
- an arrival order in steps: spans before, between and after the profile exports, a retried
  span export.

Every sample has its own leaf frame `sample_<n>`, so a span's flame graph says exactly which
samples it holds and with which value. `expected()` applies the contract's rules to the final
set of received spans; the contract says the result does not depend on the arrival order.
"""

import dataclasses
import json
import os
import random
import time
from typing import Optional

import grpc
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from e2e_helpers import RPC_TIMEOUT, _Dict, post_json, profiles_stub, traces_stub

MS = 1_000_000
SEC = 1_000_000_000
PERIOD = 10 * MS  # CPU sampling period: one observation without `values` is 10 ms of CPU
MIN_SPAN = 20 * MS  # --span-min-duration default
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
ID_KEYS = ("host.id", "host.name", "k8s.pod.uid", "container.id")
CORRELATED_KINDS = ("cpu", "wall")
# sample type (type, unit), period type (type, unit), period — per profile kind
KINDS = {
    "cpu": (("samples", "count"), ("cpu", "nanoseconds"), PERIOD),
    "wall": (("wall", "nanoseconds"), ("wall", "nanoseconds"), PERIOD),
    "memory": (("alloc_space", "bytes"), ("space", "bytes"), 512 * 1024),
    "off_cpu": (("off_cpu", "nanoseconds"), None, 0),
}


@dataclasses.dataclass(eq=False)
class Resource:
    name: str  # for messages only
    attrs: dict  # resource attributes, sent as they are (process.pid and thread.id as ints)

    @property
    def service(self):
        return self.attrs["service.name"]


@dataclasses.dataclass(eq=False)
class Span:
    label: str  # "<case>#<k>", for messages
    trace_id: bytes
    span_id: bytes
    parent_id: bytes  # b"" for a root
    resource: Resource
    tid: Optional[int]  # span attribute thread.id
    start: int
    end: int
    received: bool = True

    @property
    def hex(self):
        return self.span_id.hex()

    @property
    def thread(self):
        """The span attribute, else the resource attribute (the contract honours both)."""
        return self.tid if self.tid is not None else self.resource.attrs.get("thread.id")


@dataclasses.dataclass(eq=False)
class Sample:
    n: int
    case: str
    resource: Resource
    kind: str  # key of KINDS
    timestamps: list
    values: Optional[list] = None  # OTLP values, one per timestamp, or None
    tid: Optional[int] = None  # sample attribute thread.id
    pid_attr: Optional[int] = None  # sample attribute process.pid
    link: Optional[Span] = None  # explicit link (OTLP link_index)

    @property
    def leaf(self):
        return f"sample_{self.n}"

    @property
    def stack(self):
        """Root first."""
        return ("main", f"{self.resource.service}_{self.kind}_work{self.n % 3}", self.leaf)

    def observations(self):
        """[(timestamp, value as stored)]: CPU values are counts of periods; other kinds carry
        their value per timestamp (always given here)."""
        scale = PERIOD if self.kind == "cpu" else 1
        if self.values is None:
            assert self.kind == "cpu"
            return [(t, PERIOD) for t in self.timestamps]
        return [(t, v * scale) for t, v in zip(self.timestamps, self.values)]

    @property
    def total(self):
        return sum(v for _, v in self.observations())


@dataclasses.dataclass
class Step:
    what: str  # "spans" or "profiles"
    items: list
    note: str = ""


class Scenario:
    def __init__(self, t0, resources, spans, samples, steps):
        self.t0 = t0
        self.resources = resources
        self.spans = spans
        self.samples = samples
        self.steps = steps

    def span_by_hex(self, h):
        return next(s for s in self.spans if s.hex == h)


# ---------------------------------------------------------------------------------------------
# The contract, applied independently
# ---------------------------------------------------------------------------------------------


def span_identity(span):
    a = span.resource.attrs
    return a.get("process.pid", 0), {k: a[k] for k in ID_KEYS if k in a}


def sample_identity(sample):
    a = sample.resource.attrs
    pid = sample.pid_attr if sample.pid_attr is not None else a.get("process.pid", 0)
    return pid, {k: a[k] for k in ID_KEYS if k in a}


def same_process(ident_a, ident_b):
    (pa, ka), (pb, kb) = ident_a, ident_b
    if not pa or pa != pb:
        return False
    return all(ka[k] == kb[k] for k in ka.keys() & kb.keys())


def is_chain(spans):
    if len({s.trace_id for s in spans}) != 1:
        return False
    order = sorted(spans, key=lambda s: (s.start, -(s.end - s.start)))
    return all(a.start <= b.start and b.end <= a.end for a, b in zip(order, order[1:]))


class Expected:
    """attached[n] = {span hex: value}; why[n] = [rule per observation]; counts per rule
    (observations of correlated kinds only)."""

    def __init__(self):
        self.attached = {}
        self.why = {}
        self.counts = {"link": 0, "thread": 0, "unique": 0, "ambiguous": 0, "unmatched": 0}
        self.short_spans = 0

    def per_span(self, scn, kind):
        """{span hex: {leaf: value}} for every span of the scenario (empty when nothing)."""
        out = {s.hex: {} for s in scn.spans}
        for smp in scn.samples:
            if smp.kind != kind:
                continue
            for h, v in self.attached[smp.n].items():
                out.setdefault(h, {})
                out[h][smp.leaf] = out[h].get(smp.leaf, 0) + v
        return out


def expected(scn, min_span=MIN_SPAN, threadless="unique", incremental=False):
    """The contract applied to the scenario. Default: with every received span known (the
    contract's "same whichever arrives first"). incremental=True replays the arrival order
    instead: each observation gets, when it arrives and again after every later span export,
    what the rules give it with the spans known then, and keeps what it had ("later spans add,
    never retract"); the rule counted is the one of its first decision. A scenario whose
    threadless spans travel in one export per process gets the same answer both ways."""
    if not incremental:
        known = {s.span_id: s for s in scn.spans if s.received}
        events = [(known, scn.samples)]
    else:
        known, arrived, events = {}, [], []
        for step in scn.steps:
            if step.what == "spans":
                known = dict(known)
                known.update((s.span_id, s) for s in step.items if s.received)
            else:
                arrived = arrived + [s for s in step.items if s not in arrived]
            events.append((known, arrived))
    res = Expected()
    final = events[-1][0] if events else {}
    res.short_spans = sum(1 for s in final.values() if s.end - s.start < min_span)
    obs_spans = {}  # (n, k) → {span hex: Span}
    for smp in scn.samples:
        res.attached[smp.n], res.why[smp.n] = {}, []
    for spans_known, samples in events:
        index = _Index(spans_known, min_span)
        for smp in samples:
            if smp.kind not in CORRELATED_KINDS:
                continue
            ident = sample_identity(smp)
            for k, (t, _v) in enumerate(smp.observations()):
                spans, rule = _attach_one(smp, ident, t, index, threadless)
                if (smp.n, k) not in obs_spans:
                    obs_spans[(smp.n, k)] = {}
                    res.why[smp.n].append(rule)
                    res.counts[rule] += 1
                obs_spans[(smp.n, k)].update((s.hex, s) for s in spans)
    for smp in scn.samples:
        got = res.attached[smp.n]
        for k, (_t, v) in enumerate(smp.observations()):
            for h in obs_spans.get((smp.n, k), {}):
                got[h] = got.get(h, 0) + v
    return res


class _Index:
    """The known spans, eligible ones by pid."""

    def __init__(self, known, min_span):
        self.known = known
        self.min_span = min_span
        self.by_pid = {}
        for s in known.values():
            if s.end - s.start >= min_span:
                self.by_pid.setdefault(span_identity(s)[0], []).append(s)


def _attach_one(smp, ident, t, index, threadless):
    received, min_span = index.known, index.min_span
    if smp.link is not None:
        out = [smp.link]
        cur = received.get(smp.link.span_id)
        while cur is not None and cur.parent_id:
            anc = received.get(cur.parent_id)
            if anc is None or not same_process(ident, span_identity(anc)):
                break
            if anc.end - anc.start >= min_span:
                out.append(anc)
            cur = anc
        return out, "link"
    eligible = index.by_pid.get(ident[0], [])
    if smp.tid is not None:
        hit = [s for s in eligible if s.thread == smp.tid and s.start <= t < s.end
               and same_process(ident, span_identity(s))]
        if hit:
            return hit, "thread"
    if threadless != "unique":
        return [], "unmatched"
    cover = [s for s in eligible if s.thread is None and s.start <= t < s.end
             and same_process(ident, span_identity(s))]
    if not cover:
        return [], "unmatched"
    if is_chain(cover):
        return cover, "unique"
    return [], "ambiguous"


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class _Gen:
    def __init__(self, seed, t0):
        self.rng = random.Random(seed)
        self.t0 = t0
        self.spans, self.samples = [], []
        self.used_ids = set()
        self.phase = {}  # span → step name it travels in

    def new_trace(self):
        return self.rng.getrandbits(128).to_bytes(16, "big")

    def new_span(self, label, trace, parent, res, tid, start, end, phase):
        while True:
            sid = self.rng.getrandbits(64).to_bytes(8, "big")
            if sid not in self.used_ids and sid != bytes(8):
                break
        self.used_ids.add(sid)
        s = Span(f"{label}#{len(self.spans)}", trace, sid, parent.span_id if parent else b"", res,
                 tid, self.t0 + start, self.t0 + end)
        self.spans.append(s)
        self.phase[s] = phase
        return s

    def sample(self, case, res, kind, offsets_or_ts, absolute=False, **kw):
        ts = list(offsets_or_ts) if absolute else [self.t0 + o for o in offsets_or_ts]
        if kind == "cpu" and "values" not in kw and self.rng.random() < 0.5:
            kw["values"] = [self.rng.randint(1, 4) for _ in ts]
        if kind != "cpu" and "values" not in kw:
            kw["values"] = [self.rng.randint(1, 9) * (PERIOD if kind != "memory" else 4096) for _ in ts]
        s = Sample(len(self.samples), case, res, kind, ts, **kw)
        self.samples.append(s)
        return s

    def phases(self):
        return self.rng.choice(["E", "M", "L1", "L2"])

    # -- threaded processes: request trees on each thread ----------------------------------

    def threaded_trees(self, res, tids, t_from, t_to, case, phase_of=None):
        """Sequential requests per thread, each a tree of nested spans (some short)."""
        made = []
        r = self.rng
        for tid in tids:
            t = t_from + r.randint(0, 40) * MS
            while t < t_to - 400 * MS:
                dur = r.randint(150, 600) * MS
                trace = self.new_trace()
                ph = phase_of() if phase_of else self.phases()
                root = self.new_span(case + "-root", trace, None, res, tid, t, t + dur, ph)
                made.append(root)
                made += self._children(res, tid, trace, root, 1, case, phase_of)
                t += dur + r.randint(300, 1500) * MS
        return made

    def _children(self, res, tid, trace, parent, depth, case, phase_of):
        r = self.rng
        made = []
        pstart, pend = parent.start - self.t0, parent.end - self.t0
        c = pstart + r.randint(5, 60) * MS
        while c < pend - 30 * MS:
            dur = r.choice([5 * MS, 12 * MS, MIN_SPAN, MIN_SPAN - 1, r.randint(30, 200) * MS,
                            r.randint(30, 200) * MS])
            end = min(c + dur, pend - r.randint(0, 2) * MS)
            ph = phase_of() if phase_of else (self.phase[parent] if r.random() < 0.6 else self.phases())
            child = self.new_span(f"{case}-d{depth}", trace, parent, res, tid, c, end, ph)
            made.append(child)
            if depth < 3 and end - c > 60 * MS:
                made += self._children(res, tid, trace, child, depth + 1, case, phase_of)
            c = end + r.randint(0, 80) * MS
        return made

    def thread_samples(self, case, res, spans, tids, n, t_from, t_to, kind="cpu", no_tid_share=0.1,
                       other_tid_share=0.1, **kw):
        """n samples with 1–4 timestamps, mostly inside the given spans, a few anywhere."""
        r = self.rng
        out = []
        for _ in range(n):
            k = r.choice([1, 1, 2, 3, 4])
            ts = []
            for _ in range(k):
                if spans and r.random() < 0.75:
                    s = r.choice(spans)
                    ts.append(r.randint(s.start, s.end - 1))
                else:
                    ts.append(self.t0 + r.randint(t_from, t_to))
            x = r.random()
            tid = None if x < no_tid_share else (
                r.choice([9901, 9902]) if x < no_tid_share + other_tid_share else r.choice(tids))
            if spans and tid is not None and tid in tids and r.random() < 0.8:
                # keep a sample on one thread's timeline: take its timestamps from that thread
                own = [s for s in spans if s.thread == tid]
                if own:
                    ts = [r.randint(s.start, s.end - 1) if r.random() < 0.8 else
                          self.t0 + r.randint(t_from, t_to) for s in (r.choice(own) for _ in ts)]
            out.append(self.sample(case, res, kind, ts, absolute=True, tid=tid, **kw))
        return out


DEFAULT_SEED = 20260905


def build(seed=None, t0=None):
    """Builds the scenario. seed: SPANPROF_SCENARIO_SEED or a fixed default (every case is
    present whatever the seed; the seed only moves the random filling). t0 (ns) defaults to 90 s
    ago, on a 10 s boundary (the store's bucket), so time-range expectations are exact."""
    if seed is None:
        seed = int(os.environ.get("SPANPROF_SCENARIO_SEED", DEFAULT_SEED))
    if t0 is None:
        t0 = (time.time_ns() - 90 * SEC) // (10 * SEC) * (10 * SEC)
    g = _Gen(seed, t0)
    r = g.rng

    # -- resources ----------------------------------------------------------------------------
    A1 = Resource("A1 host-a pid 101", {"service.name": "svc-alpha", "process.pid": 101, "host.name": "host-a"})
    A2 = Resource("A2 host-b pid 101", {"service.name": "svc-alpha", "process.pid": 101, "host.name": "host-b"})
    A_pidonly = Resource("A pid 101 no host", {"service.name": "svc-alpha", "process.pid": 101})
    A1_attrpid = Resource("A1 host-a, pid on samples", {"service.name": "svc-alpha", "host.name": "host-a"})
    B1 = Resource("B1 ctr-1 pid 202", {"service.name": "svc-beta", "process.pid": 202, "container.id": "ctr-1"})
    B2 = Resource("B2 ctr-2 pid 202", {"service.name": "svc-beta", "process.pid": 202, "container.id": "ctr-2"})
    C_spans = Resource("C spans pid 303", {"service.name": "svc-gamma", "process.pid": 303})
    C_samples = Resource("C samples pid 303 + host/pod", {"service.name": "svc-gamma", "process.pid": 303,
                                                          "host.name": "host-c", "k8s.pod.uid": "pod-c"})
    D = Resource("D pid 404 resource thread", {"service.name": "svc-delta", "process.pid": 404, "thread.id": 4040})
    D_samples = Resource("D samples pid 404", {"service.name": "svc-delta", "process.pid": 404})
    NOPID = Resource("no pid", {"service.name": "svc-nopid"})
    resources = [A1, A2, A_pidonly, A1_attrpid, B1, B2, C_spans, C_samples, D, D_samples, NOPID]

    # -- threaded processes -------------------------------------------------------------------
    a_tids = [1011, 1012, 1013]
    a1 = g.threaded_trees(A1, a_tids, 0, 9_000 * MS, "A1")
    a2 = g.threaded_trees(A2, a_tids[:2], 0, 9_000 * MS, "A2")
    # one thread of A1 runs two requests concurrently (async): both get the samples
    tr = g.new_trace()
    conc1 = g.new_span("A1-async-1", tr, None, A1, 1013, 10_000 * MS, 10_400 * MS, "E")
    conc2 = g.new_span("A1-async-2", g.new_trace(), None, A1, 1013, 10_200 * MS, 10_600 * MS, "M")
    a1 += [conc1, conc2]
    # boundaries: exactly 20 ms (eligible) and 1 ns under it (not), on their own thread
    b_root = g.new_span("A1-bound-root", tr, conc1, A1, 1014, 11_000 * MS, 11_300 * MS, "M")
    b_20 = g.new_span("A1-bound-20ms", tr, b_root, A1, 1014, 11_100 * MS, 11_120 * MS, "M")
    b_19 = g.new_span("A1-bound-19.999999ms", tr, b_root, A1, 1014, 11_200 * MS, 11_220 * MS - 1, "L1")
    a1 += [b_root, b_20, b_19]
    c_tids = [3031, 3032]
    cs = g.threaded_trees(C_spans, c_tids, 0, 6_000 * MS, "C")
    d = g.threaded_trees(D, [None], 0, 5_000 * MS, "D")

    for res, spans, tids in ((A1, a1, a_tids + [1014]), (A2, a2, a_tids[:2])):
        g.thread_samples("thread", res, spans, tids, 60, 0, 12_000 * MS)
    g.thread_samples("pid-only matches both hosts", A_pidonly, a1 + a2, a_tids, 12, 0, 9_000 * MS)
    # pid as a sample attribute (resource has host.name only)
    for _ in range(10):
        s = r.choice([x for x in a1 if x.tid == 1011])
        g.sample("pid attribute", A1_attrpid, "cpu", [r.randint(s.start, s.end - 1)], absolute=True,
                 tid=1011, pid_attr=101)
    g.thread_samples("one-sided keys", C_samples, cs, c_tids, 25, 0, 6_000 * MS)
    g.thread_samples("resource thread", D_samples, d, [4040], 15, 0, 5_000 * MS, other_tid_share=0.3)
    g.thread_samples("no pid", NOPID, a1, a_tids, 6, 0, 9_000 * MS, no_tid_share=0.0, other_tid_share=0.0)
    # boundary timestamps: a span's start is inside it, its end is not
    for s in (b_20, b_19, b_root, conc1, conc2):
        g.sample("boundary", A1, "cpu", [s.start, s.end - 1, s.end], absolute=True, tid=s.tid, values=[1, 2, 3])
    g.sample("async overlap", A1, "cpu", [10_300 * MS, 10_100 * MS, 10_500 * MS], tid=1013)
    # wall-clock profiles are correlated like CPU ones
    g.thread_samples("wall", A1, a1, a_tids, 12, 0, 9_000 * MS, kind="wall")

    # -- threadless processes (all of a process's spans travel in one export) -------------------
    def tl(label, trace, parent, res, start_ms, end_ms, phase):
        return g.new_span(label, trace, parent, res, None, start_ms * MS, end_ms * MS, phase)

    X, Y, Z, W, V = (g.new_trace() for _ in range(5))
    bx = tl("B1-X-root", X, None, B1, 1000, 3000, "L1")
    bx1 = tl("B1-X-child", X, bx, B1, 1200, 1800, "L1")
    bx2 = tl("B1-X-short", X, bx1, B1, 1300, 1310, "L1")  # short: never counts
    by = tl("B1-Y-root", Y, None, B1, 2500, 4500, "L1")  # concurrent with X on [2500, 3000)
    by1 = tl("B1-Y-child", Y, by, B1, 2600, 2700, "L1")
    bz = tl("B1-Z-root", Z, None, B1, 5000, 7000, "L1")
    bza = tl("B1-Z-a", Z, bz, B1, 5200, 6000, "L1")  # concurrent siblings of one trace
    bzb = tl("B1-Z-b", Z, bz, B1, 5500, 6500, "L1")
    bw = tl("B1-W-root", W, None, B1, 8000, 9000, "L1")
    bw1 = tl("B1-W-samestart", W, bw, B1, 8000, 8500, "L1")  # tie on start: longer first
    bw2 = tl("B1-W-twin-a", W, bw1, B1, 8100, 8300, "L1")
    bw3 = tl("B1-W-twin-b", W, bw1, B1, 8100, 8300, "L1")  # identical interval: still a chain
    bv = tl("B1-V-root", V, None, B1, 9500, 10500, "L1")
    bv1 = tl("B1-V-short", g.new_trace(), None, B1, 9700, 9710, "L1")  # other trace but short
    b1 = [bx, bx1, bx2, by, by1, bz, bza, bzb, bw, bw1, bw2, bw3, bv, bv1]
    U = g.new_trace()
    bu = tl("B2-U-root", U, None, B2, 2000, 6000, "E")
    bu1 = tl("B2-U-child", U, bu, B2, 2400, 5800, "E")
    b2 = [bu, bu1]
    for res, spans in ((B1, b1), (B2, b2)):
        # eBPF samples carry a thread; SDK spans did not record one
        g.thread_samples("threadless", res, spans, [2021, 2022], 45, 0, 11_000 * MS,
                         no_tid_share=0.4, other_tid_share=0.6)
    for off in (1310, 1305, 2550, 2650, 5100, 5300, 5700, 6200, 8000, 8200, 8400, 9705):
        g.sample("threadless fixed", B1, "cpu", [off * MS], tid=2021)
    g.sample("threadless fixed", B2, "cpu", [2000 * MS, 2400 * MS, 5800 * MS, 6000 * MS])

    # -- explicit links -----------------------------------------------------------------------
    deep = [s for s in a1 if s.parent_id and s.end - s.start >= MIN_SPAN]
    short = [s for s in a1 if s.parent_id and s.end - s.start < MIN_SPAN]
    for s in r.sample(deep, 6):
        # timestamps inside the span, outside it, inside other spans of its thread: link only
        g.sample("link long", A1, "cpu", [s.start + 1, s.end + 300 * MS, r.randint(0, 9_000) * MS + t0],
                 absolute=True, tid=s.tid, link=s)
    for s in r.sample(short, 5):
        g.sample("link short", A1, "cpu", [s.start], absolute=True, tid=s.tid, link=s)
    # short child of a short child of an eligible span
    q_root = g.new_span("A1-chain-root", g.new_trace(), None, A1, 1011, 12_000 * MS, 12_500 * MS, "E")
    q_mid = g.new_span("A1-chain-short-mid", q_root.trace_id, q_root, A1, 1011, 12_100 * MS, 12_110 * MS, "E")
    q_leaf = g.new_span("A1-chain-short-leaf", q_root.trace_id, q_mid, A1, 1011, 12_101 * MS, 12_105 * MS, "M")
    a1 += [q_root, q_mid, q_leaf]
    g.sample("link short chain", A1, "cpu", [12_102 * MS], tid=1011, link=q_leaf)
    # parent in another process (A1 calls C): the walk stops there
    x_client = g.new_span("A1-client", g.new_trace(), None, A1, 1012, 13_000 * MS, 13_600 * MS, "E")
    x_server = g.new_span("C-server", x_client.trace_id, x_client, C_spans, 3031, 13_100 * MS, 13_500 * MS, "E")
    x_inner = g.new_span("C-server-inner", x_client.trace_id, x_server, C_spans, 3031, 13_150 * MS,
                         13_300 * MS, "M")
    g.sample("link cross-process parent", C_samples, "cpu", [13_200 * MS, 13_250 * MS], tid=3031, link=x_inner)
    g.sample("link cross-process parent", C_samples, "cpu", [13_120 * MS], tid=3031, link=x_server)
    # parent and grandparent arrive later (grandparent first), on host-b
    lr = g.new_span("A2-late-grandparent", g.new_trace(), None, A2, 1011, 14_000 * MS, 15_000 * MS, "L1")
    lq = g.new_span("A2-late-parent", lr.trace_id, lr, A2, 1011, 14_100 * MS, 14_900 * MS, "L2")
    lq2 = g.new_span("A2-late-parent-short", lr.trace_id, lq, A2, 1011, 14_200 * MS, 14_210 * MS, "E")
    ls = g.new_span("A2-early-linked", lr.trace_id, lq2, A2, 1011, 14_201 * MS, 14_209 * MS, "E")
    a2 += [lr, lq, lq2, ls]
    for _ in range(3):
        g.sample("link ancestors later", A2, "cpu", [r.randint(14_000, 15_000) * MS], tid=1011, link=ls)
    # a span that never arrives
    ghost = Span("never-received#ghost", g.new_trace(), r.getrandbits(64).to_bytes(8, "big"), b"", A1, 1011,
                 t0 + 16_000 * MS, t0 + 16_500 * MS, received=False)
    g.spans.append(ghost)
    g.sample("link never received", A1, "cpu", [16_100 * MS], tid=1011, link=ghost)
    g.sample("link never received", A1, "cpu", [r.randint(0, 9_000) * MS], tid=1012, link=ghost)
    # links win in an ambiguous threadless window
    g.sample("link in ambiguity", B1, "cpu", [2600 * MS, 2800 * MS], tid=2021, link=bx1)
    # wall-clock with a link
    g.sample("wall link", A1, "wall", [r.randint(0, 9_000) * MS], tid=1011, link=r.choice(deep))
    # memory with links and threads inside spans: stored, never attached; off-CPU: stored in full
    # (attached as intervals: test_offcpu.py has the oracle for that)
    for kind in ("memory", "off_cpu"):
        for _ in range(6):
            s = r.choice(a1)
            g.sample(f"{kind} never attached" if kind == "memory" else "off_cpu stored", A1, kind,
                     [r.randint(s.start, s.end - 1)], absolute=True,
                     tid=s.thread, link=s if r.random() < 0.6 else None)

    # -- arrival order --------------------------------------------------------------------------
    # E spans; profile export 1; M spans; profile export 2; L1 spans; profile export 3; L2 spans;
    # the M span export again (a retry).
    exports = {1: [], 2: [], 3: []}
    for s in g.samples:
        if s.kind in ("memory", "off_cpu"):
            exports[2].append(s)
        else:
            exports[r.choice([1, 1, 2, 2, 3])].append(s)
    by_phase = {p: [s for s in g.spans if s.received and g.phase.get(s) == p] for p in ("E", "M", "L1", "L2")}
    steps = [Step("spans", by_phase["E"], "spans E"),
             Step("profiles", exports[1], "profiles 1"),
             Step("spans", by_phase["M"], "spans M"),
             Step("profiles", exports[2], "profiles 2"),
             Step("spans", by_phase["L1"], "spans L1"),
             Step("profiles", exports[3], "profiles 3"),
             Step("spans", by_phase["L2"], "spans L2"),
             Step("spans", by_phase["M"], "spans M again (retry)")]
    scn = Scenario(t0, resources, g.spans, g.samples, steps)
    scn.seed = seed
    return scn


def spans_first(scn):
    """The same data, every span export before every profile, no retry: every observation's rule
    is decided when it arrives, so the per-rule metrics are exact."""
    spans = [st for st in scn.steps if st.what == "spans" and "retry" not in st.note]
    profiles = [st for st in scn.steps if st.what == "profiles"]
    return Scenario(scn.t0, scn.resources, scn.spans, scn.samples, spans + profiles)


# ---------------------------------------------------------------------------------------------
# Requests (official opentelemetry-proto classes) and sending
# ---------------------------------------------------------------------------------------------


def _set_attr(kvs, key, value):
    kv = kvs.add()
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def _resource_pb(res):
    pb = resource_pb2.Resource()
    for k, v in res.attrs.items():
        _set_attr(pb.attributes, k, v)
    return pb


def trace_request(spans):
    req = trace_service_pb2.ExportTraceServiceRequest()
    by_res = {}
    for s in spans:
        by_res.setdefault(id(s.resource), (s.resource, []))[1].append(s)
    for res, group in by_res.values():
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(_resource_pb(res))
        ss = rs.scope_spans.add()
        ss.scope.name = "corr-scenario"
        for s in group:
            sp = ss.spans.add()
            sp.trace_id = s.trace_id
            sp.span_id = s.span_id
            if s.parent_id:
                sp.parent_span_id = s.parent_id
            sp.name = s.label
            sp.kind = trace_pb2.Span.SPAN_KIND_INTERNAL
            sp.start_time_unix_nano = s.start
            sp.end_time_unix_nano = s.end
            if s.tid is not None:
                _set_attr(sp.attributes, "thread.id", s.tid)
    return req


def profiles_request(samples, t0):
    """One ResourceProfiles per resource, one Profile per kind, one shared dictionary."""
    d = _Dict()
    mapping = d.mapping("/usr/bin/corr-scenario")
    locs = {}

    def loc(name):
        if name not in locs:
            locs[name] = d.location(mapping, 0x400000 + 16 * len(locs), d.function(name, "corr.c"), 1)
        return locs[name]

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    by_res = {}
    for s in samples:
        by_res.setdefault(id(s.resource), (s.resource, {}))[1].setdefault(s.kind, []).append(s)
    for res, kinds in by_res.values():
        rp = req.resource_profiles.add()
        rp.resource.CopyFrom(_resource_pb(res))
        sp = rp.scope_profiles.add()
        sp.scope.name = "corr-scenario"
        for kind, group in kinds.items():
            (st, su), ptype, period = KINDS[kind]
            prof = sp.profiles.add()
            prof.sample_type.type_strindex = d.s(st)
            prof.sample_type.unit_strindex = d.s(su)
            if ptype:
                prof.period_type.type_strindex = d.s(ptype[0])
                prof.period_type.unit_strindex = d.s(ptype[1])
                prof.period = period
            prof.time_unix_nano = t0
            prof.duration_nano = 20 * SEC
            for smp in group:
                s = prof.samples.add()
                s.stack_index = d.stack([loc(n) for n in reversed(smp.stack)])  # leaf first
                if smp.tid is not None:
                    s.attribute_indices.append(d.attr("thread.id", smp.tid))
                if smp.pid_attr is not None:
                    s.attribute_indices.append(d.attr("process.pid", smp.pid_attr))
                if smp.link is not None:
                    s.link_index = d.link(smp.link.trace_id, smp.link.span_id)
                s.timestamps_unix_nano.extend(smp.timestamps)
                if smp.values is not None:
                    s.values.extend(smp.values)
    req.dictionary.CopyFrom(d.d)
    return req


def send_step_json(target, scn, step, tenant=None):
    """One step as OTLP/HTTP JSON (gzip) to target = "host:port" of the HTTP listener."""
    if step.what == "spans" and not step.items:
        return
    port = int(target.rsplit(":", 1)[1])
    headers = {"X-Scope-OrgID": tenant} if tenant else None
    if step.what == "spans":
        status, h, body = post_json(port, "/v1/traces", trace_request(step.items), gzip_body=True,
                                    extra_headers=headers)
        key = "rejectedSpans"
    else:
        status, h, body = post_json(port, "/v1development/profiles", profiles_request(step.items, scn.t0),
                                    gzip_body=True, extra_headers=headers)
        key = "rejectedProfiles"
    assert status == 200 and h["content-type"] == "application/json", (step.note, status, body[:300])
    assert not json.loads(body).get("partialSuccess", {}).get(key), (step.note, body[:300])


def send_step(target, scn, step, tenant=None, encoding="grpc"):
    """Sends one step; returns after the server answered, i.e. after its commit. encoding "grpc"
    (gzip, target = the gRPC listener) or "json" (OTLP/HTTP JSON, target = the HTTP listener)."""
    if encoding == "json":
        return send_step_json(target, scn, step, tenant)
    metadata = [("x-scope-orgid", tenant)] if tenant else None
    with grpc.insecure_channel(target) as ch:
        if step.what == "spans":
            if not step.items:
                return
            resp = traces_stub(ch).Export(trace_request(step.items), timeout=RPC_TIMEOUT, metadata=metadata,
                                          compression=grpc.Compression.Gzip)
            assert not resp.partial_success.rejected_spans, (step.note, resp)
        else:
            resp = profiles_stub(ch).Export(profiles_request(step.items, scn.t0), timeout=RPC_TIMEOUT,
                                            metadata=metadata, compression=grpc.Compression.Gzip)
            assert not resp.partial_success.rejected_profiles, (step.note, resp)


def feed(target, scn, tenant=None, pause=0.05, encoding="grpc"):
    for step in scn.steps:
        send_step(target, scn, step, tenant, encoding)
        time.sleep(pause)


def describe(scn, exp):
    """A few lines on what the scenario holds, for reports."""
    kinds = {}
    for s in scn.samples:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    short = sum(1 for s in scn.spans if s.received and s.end - s.start < MIN_SPAN)
    return (f"{len(scn.spans)} spans ({short} short, {sum(not s.received for s in scn.spans)} never received), "
            f"{len(scn.samples)} samples {kinds}, observations by rule {exp.counts}")


if __name__ == "__main__":
    scn = build()
    print(describe(scn, expected(scn)))


# ---------------------------------------------------------------------------------------------
# Helpers for test_querier_parity.py (span sets: traces, span names, heatmaps)
# ---------------------------------------------------------------------------------------------


def observation_spans(scn, kind="cpu", min_span=MIN_SPAN, threadless="unique"):
    """[(sample, timestamp, value, {span hex: Span})] per observation of `kind`: the spans the
    contract attaches that one observation to, with every received span known (as expected()
    without incremental). Lets a test count a sample once per set of spans (a trace, a name)."""
    known = {s.span_id: s for s in scn.spans if s.received}
    index = _Index(known, min_span)
    out = []
    for smp in scn.samples:
        if smp.kind != kind:
            continue
        ident = sample_identity(smp)
        for t, v in smp.observations():
            spans, _rule = _attach_one(smp, ident, t, index, threadless)
            out.append((smp, t, v, {s.hex: s for s in spans}))
    return out


def with_named_spans(scn, seed=None):
    """The scenario plus two threaded processes whose spans share names, as SDK spans do:
    svc-names (pid 606) serves requests "GET /checkout" holding "db.query" spans nested in
    "db.query" spans (same name inside same name), short "db.query" spans (never count), async
    "db.query" children on an I/O thread that start after their parent ended, and a thread pool
    whose samples carry explicit links to the request's spans; svc-names2 (pid 607)
    has "db.query" spans too (another service, same name). Their spans travel before every other
    export, their profiles after. Sample numbers continue the scenario's (leaves stay unique)."""
    g = _Gen((scn.seed if seed is None else seed) + 1, scn.t0)
    g.spans, g.samples = list(scn.spans), list(scn.samples)
    g.used_ids = {s.span_id for s in scn.spans}
    n_spans, n_samples = len(g.spans), len(g.samples)
    r = g.rng
    N = Resource("N pid 606", {"service.name": "svc-names", "process.pid": 606, "host.name": "host-n"})
    N2 = Resource("N2 pid 607", {"service.name": "svc-names2", "process.pid": 607, "host.name": "host-n"})

    def named(name, trace, parent, res, tid, start_ms, end_ms):
        s = g.new_span(name, trace, parent, res, tid, start_ms * MS, end_ms * MS, "N")
        s.label = name
        return s

    spans_n, pool_targets, io_spans = [], [], []
    for tid in (6061, 6062):
        t = r.randint(0, 50)
        while t < 8_000:
            dur = r.randint(400, 700)
            tr = g.new_trace()
            root = named("GET /checkout", tr, None, N, tid, t, t + dur)
            q1 = named("db.query", tr, root, N, tid, t + 30, t + 30 + r.randint(150, 250))
            q2 = named("db.query", tr, q1, N, tid, q1.start // MS - scn.t0 // MS + 20,
                       q1.start // MS - scn.t0 // MS + 20 + r.randint(40, 100))  # nested, same name
            q3 = named("db.query", tr, root, N, tid, t + 300, t + 300 + r.choice([5, 12, 19]))  # short
            q4 = named("render", tr, root, N, tid, t + 330, t + 330 + r.randint(25, 60))
            # an async db.query on the I/O thread 6093, child of q1 but after q1 ended: q1 does
            # not hold its samples (they ran on another thread, outside q1)
            q5 = named("db.query", tr, q1, N, 6093, t + 290, t + 290 + r.randint(30, 80))
            spans_n += [root, q1, q2, q3, q4, q5]
            io_spans.append(q5)
            pool_targets += [root, q1, q2, q3]
            t += dur + r.randint(200, 600)
    spans_n2 = []
    for tid in (6071,):
        t = r.randint(0, 50)
        while t < 8_000:
            dur = r.randint(300, 500)
            tr = g.new_trace()
            root = named("consume", tr, None, N2, tid, t, t + dur)
            q = named("db.query", tr, root, N2, tid, t + 50, t + 50 + r.randint(60, 200))
            spans_n2 += [root, q]
            t += dur + r.randint(300, 900)
    before = len(g.samples)
    g.thread_samples("named", N, spans_n, [6061, 6062], 90, 0, 8_500 * MS)
    g.thread_samples("named", N2, spans_n2, [6071], 30, 0, 8_500 * MS)
    g.thread_samples("named io thread", N, io_spans, [6093], 30, 0, 8_500 * MS, no_tid_share=0.0,
                     other_tid_share=0.0)
    # a thread pool (threads 6091/6092 have no spans): its samples link to the request's spans
    for _ in range(25):
        s = r.choice(pool_targets)
        g.sample("named pool link", N, "cpu", [s.start + r.randint(0, max(0, s.end - s.start - 1)),
                                              s.end + 50 * MS], absolute=True,
                 tid=r.choice([6091, 6092]), link=s)
    new_samples = g.samples[before:]
    assert len(g.spans) - n_spans == len(spans_n) + len(spans_n2)
    assert len(g.samples) - n_samples == len(new_samples)
    steps = ([Step("spans", spans_n + spans_n2, "spans N")] + list(scn.steps) +
             [Step("profiles", new_samples, "profiles N")])
    out = Scenario(scn.t0, scn.resources + [N, N2], g.spans, g.samples, steps)
    out.seed = scn.seed
    return out
