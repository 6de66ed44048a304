"""Exports shaped like the OpenTelemetry eBPF profiler's, and the spans an OTel SDK sends beside them.

The profiler (reporter/otlp) aggregates per report interval: one Sample per (thread, stack) with one
timestamp per observation (`timestamps_unix_nano`, no `values`), `thread.id` and `thread.name` as
sample attributes, `process.pid` and `process.executable.name` on the resource and no
`service.name`. Stacks are native and interpreted frames from a shared dictionary. The SDK side:
spans end and are exported in batches (BatchSpanProcessor, 5 s, 512 per batch by default), with
`service.name` and `process.pid` on the resource and, where the SDK records it, `thread.id`.

Everything here is computed from the shape's own parameters, never from the server: `Shape.expected`
is the oracle the tests compare the stored flame graph against.
"""
import random
from dataclasses import dataclass, field

from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from e2e_helpers import _Dict

MS = 1_000_000


@dataclass
class Shape:
    pid: int
    threads: int
    obs_per_thread: int
    stacks: int
    t0: int                      # first observation (UTC ns)
    period: int = 10 * MS        # 100 Hz
    depth: int = 4               # frames per stack below the root
    span_ms: int = 100           # spans per thread back to back, this long
    threaded_spans: bool = True  # spans carry thread.id
    max_ts_per_sample: int = 0   # 0: one Sample per (thread, stack); else split into runs of 1..N
    pad_bytes: int = 0           # extra dictionary bytes (long frame names), to reach a size
    seed: int = 1
    exe: str = "ebpf-shaped"     # process.executable.name: the series is unknown_service:<exe>
    span_prefix: int = 0         # top byte of the span ids: processes of one test apart
    expected: dict = field(default_factory=dict)  # {stack root first: observations}

    def stack_names(self, k):
        pad = "x" * (self.pad_bytes // max(1, self.stacks * self.depth)) if self.pad_bytes else ""
        return ("ebpf_main",) + tuple(f"fn_{k}_{d}{pad}" for d in range(self.depth))

    def profile_request(self, d=None, req=None):
        """The Export and, in self.expected, how many observations each stack must show. With d
        and req, the process is added to req as one more ResourceProfiles over the dictionary
        builder d (the profiler's layout since 2026-03: one resource per process, one dictionary
        per Export), and the caller sets req.dictionary once every process is in."""
        rng = random.Random(self.seed)
        shared = d is not None
        d = d if shared else _Dict()
        mapping = d.mapping("/usr/bin/ebpf-shaped")
        locs, stack_idx = {}, []
        for k in range(self.stacks):
            ids = []
            for name in reversed(self.stack_names(k)):  # leaf first
                if name not in locs:
                    locs[name] = d.location(mapping, 0x400000 + 16 * len(locs),
                                            d.function(name, "ebpf.c"), 1)
                ids.append(locs[name])
            stack_idx.append(d.stack(ids))
        req = req if req is not None else profiles_service_pb2.ExportProfilesServiceRequest()
        rp = req.resource_profiles.add()
        for key, val in (("process.pid", self.pid), ("process.executable.name", self.exe)):
            kv = rp.resource.attributes.add(key=key)
            if isinstance(val, int):
                kv.value.int_value = val
            else:
                kv.value.string_value = val
        prof = rp.scope_profiles.add().profiles.add()
        prof.time_unix_nano = self.t0
        prof.duration_nano = self.obs_per_thread * self.period
        prof.period = self.period
        prof.sample_type.type_strindex = d.s("samples")
        prof.sample_type.unit_strindex = d.s("count")
        prof.period_type.type_strindex = d.s("cpu")
        prof.period_type.unit_strindex = d.s("nanoseconds")
        self.expected = {}
        for t in range(self.threads):
            tid = self.pid + 1 + t
            attrs = [d.attr("thread.id", tid), d.attr("thread.name", f"worker-{t % 7}")]
            by_stack = {}
            for j in range(self.obs_per_thread):
                k = rng.randrange(self.stacks)
                # within the tick, as a sampler's jitter would put it
                by_stack.setdefault(k, []).append(self.t0 + j * self.period + rng.randrange(self.period // 2))
            for k, ts in by_stack.items():
                names = self.stack_names(k)
                self.expected[names] = self.expected.get(names, 0) + len(ts)
                runs = [ts]
                if self.max_ts_per_sample:
                    runs, i = [], 0
                    while i < len(ts):
                        n = rng.randint(1, self.max_ts_per_sample)
                        runs.append(ts[i:i + n])
                        i += n
                for run in runs:
                    s = prof.samples.add()
                    s.stack_index = stack_idx[k]
                    s.attribute_indices.extend(attrs)
                    s.timestamps_unix_nano.extend(run)
        if not shared:
            req.dictionary.CopyFrom(d.d)
        return req

    def observations(self):
        return self.threads * self.obs_per_thread

    def span_requests(self, per_request=512, service="ebpf-shaped-svc"):
        """The spans covering every thread's observations, in Exports of `per_request` spans, in
        the order they end (SDKs export a span when it ends)."""
        spans = []
        length = self.span_ms * MS
        end_all = self.t0 + self.obs_per_thread * self.period
        for t in range(self.threads):
            start, n = self.t0 - length // 3, 0
            while start < end_all:
                trace_id = bytes([1 + t % 250]) + (self.seed * 7919 + t).to_bytes(7, "big") + \
                    n.to_bytes(8, "big")
                span_id = ((self.span_prefix << 24) | (1 + t)).to_bytes(4, "big") + \
                    (n + 1).to_bytes(4, "big")
                spans.append((start + length, trace_id, span_id, start, t))
                start += length
                n += 1
        spans.sort()
        out = []
        for i in range(0, len(spans), per_request):
            req = trace_service_pb2.ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            for key, val in (("service.name", service), ("process.pid", self.pid)):
                kv = rs.resource.attributes.add(key=key)
                if isinstance(val, int):
                    kv.value.int_value = val
                else:
                    kv.value.string_value = val
            ss = rs.scope_spans.add()
            ss.scope.name = "ebpf-shapes"
            for end, trace_id, span_id, start, t in spans[i:i + per_request]:
                sp = ss.spans.add(trace_id=trace_id, span_id=span_id, name=f"request-{t % 5}",
                                  kind=trace_pb2.Span.SPAN_KIND_SERVER,
                                  start_time_unix_nano=start, end_time_unix_nano=end)
                if self.threaded_spans:
                    kv = sp.attributes.add(key="thread.id")
                    kv.value.int_value = self.pid + 1 + t
            out.append(req)
        return out
