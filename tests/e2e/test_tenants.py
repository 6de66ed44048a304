"""Tenants (X-Scope-OrgID): the default tenant, --multitenancy-required, tenant id rules, and a
randomized isolation test that writes profiles and spans to several tenants through real clients
and then asks every query endpoint as every tenant: not one item of another tenant may appear.

Every tenant's data carries a unique marker (in its service names, function names, label names and
values, and its own profile type), and its trace and span ids are random: an answer leaks when any
of another tenant's markers or ids shows up anywhere in its bytes. Positive checks (the tenant's
own flame graphs equal what it sent) make sure the answers are not vacuously clean.

The random seed is printed; SPANPROF_TENANT_SEED=<seed> replays a run.
"""

import gzip
import json
import os
import random
import string
import time
from urllib.parse import quote

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from e2e_helpers import (
    RPC_TIMEOUT,
    _Dict,
    _resource,
    http_request,
    ld,
    profiles_stub,
    raw_unary,
    trace_request,
    traces_stub,
    varint,
)
from test_query import (
    flamegraph_from_proto,
    flamegraph_stacks,
    pb_fields,
    pb_int,
    pb_string,
    pprof_stacks,
)

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
PERIOD = 10_000_000
PID = 4242  # every tenant uses the same process and threads: inference must still not cross
TID = 77
TENANT_CHARS = string.ascii_letters + string.digits + "!-_.*'()"


# ---------------------------------------------------------------------------------------------
# Small clients
# ---------------------------------------------------------------------------------------------


def tenant_headers(tenant):
    return {"X-Scope-OrgID": tenant} if tenant is not None else {}


def tenant_metadata(tenant):
    return [("x-scope-orgid", tenant)] if tenant is not None else None


def connect_json(server, method, body, tenant, expect=200):
    headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1",
               **tenant_headers(tenant)}
    status, _, data = http_request(server.http_port, "POST", f"/querier.v1.QuerierService/{method}",
                                   body=json.dumps(body).encode(), headers=headers)
    assert status == expect, f"{method} as {tenant!r}: {status} {data[:300]!r}"
    return data


def get(server, path, tenant):
    return http_request(server.http_port, "GET", path, headers=tenant_headers(tenant))


def fg_from_json(data):
    return json.loads(data).get("flamegraph", {})


def stacks_of(fg):
    return flamegraph_stacks(fg) if fg.get("levels") else {}


# ---------------------------------------------------------------------------------------------
# One tenant's data, all tagged with its marker
# ---------------------------------------------------------------------------------------------


class TenantData:
    def __init__(self, rng, tenant, index, t0_ns):
        self.tenant = tenant  # None = no header (the default tenant)
        self.tag = f"tn{index}x{rng.getrandbits(40):010x}"  # never hex-only: not inside an id
        self.svc = f"svc-{self.tag}"
        self.py_svc = f"py-{self.tag}"
        self.label = f"k_{self.tag}"
        self.value = f"v_{self.tag}"
        self.own_type = f"wall_{self.tag}:work_{self.tag}:count:wall_{self.tag}:nanoseconds"
        self.trace_id = rng.randbytes(16)
        self.spans = [rng.randbytes(8) for _ in range(2)]
        self.t0 = t0_ns
        # Two sequential spans of 2 s each on the shared (pid, tid).
        self.windows = [(t0_ns + 2_000_000_000 * k, t0_ns + 2_000_000_000 * (k + 1)) for k in range(2)]
        fn = [f"{self.tag}_f{i}" for i in range(6)]
        # (stack root first, observation times, explicit span index or None)
        self.cpu = []
        for k in range(rng.randint(3, 6)):
            stack = tuple(rng.sample(fn, rng.randint(1, 4)))
            span = rng.choice([None, 0, 1])
            w = self.windows[span if span is not None else rng.randint(0, 1)]
            n = rng.randint(1, 5)
            times = sorted(rng.randrange(w[0] + 100_000_000, w[1] - 100_000_000) for _ in range(n))
            self.cpu.append((stack, times, span))
        # samples of the tenant's own type: (stack, value)
        self.work = [(tuple(rng.sample(fn, rng.randint(1, 3))), rng.randint(1, 1000))
                     for _ in range(rng.randint(1, 3))]
        # /ingest pprof: (stack, ns, span index or None)
        self.pprof = [(tuple(f"{self.tag}_py{j}" for j in range(rng.randint(1, 3))),
                       rng.randint(1, 50) * PERIOD, rng.choice([None, 0, 1]))
                      for _ in range(rng.randint(1, 3))]

    def markers(self):
        return [self.tag] + [self.trace_id.hex()] + [s.hex() for s in self.spans]

    # -- expectations ---------------------------------------------------------------------

    def cpu_stacks(self):
        want = {}
        for stack, times, _ in self.cpu:
            want[stack] = want.get(stack, 0) + len(times) * PERIOD
        for stack, ns, _ in self.pprof:
            want[stack] = want.get(stack, 0) + ns
        return want

    def span_stacks(self, k):
        """What span k holds: its explicitly linked samples, plus the unlinked observations
        inside its window on its thread (inferred), plus the pprof samples labelled with it."""
        lo, hi = self.windows[k]
        want = {}
        for stack, times, span in self.cpu:
            n = len(times) if span == k else sum(lo <= t < hi for t in times) if span is None else 0
            if n:
                want[stack] = want.get(stack, 0) + n * PERIOD
        for stack, ns, span in self.pprof:
            if span == k:
                want[stack] = want.get(stack, 0) + ns
        return want

    def work_stacks(self):
        want = {}
        for stack, v in self.work:
            want[stack] = want.get(stack, 0) + v
        return want

    # -- writing through real clients --------------------------------------------------------

    def traces(self):
        req = trace_request([], trace_id=self.trace_id, service=self.svc, pid=PID)
        ss = req.resource_spans[0].scope_spans[0]
        for k, sid in enumerate(self.spans):
            sp = ss.spans.add()
            sp.trace_id = self.trace_id
            sp.span_id = sid
            sp.name = f"op-{self.tag}-{k}"
            sp.kind = trace_pb2.Span.SPAN_KIND_SERVER
            sp.start_time_unix_nano, sp.end_time_unix_nano = self.windows[k]
            kv = sp.attributes.add()
            kv.key = "thread.id"
            kv.value.int_value = TID
        return req

    def profiles(self):
        dic = _Dict()
        mapping = dic.mapping(f"/usr/bin/{self.svc}")
        locs = {}

        def loc(name):
            if name not in locs:
                locs[name] = dic.location(mapping, 0x1000 + 16 * len(locs),
                                          dic.function(name, f"{self.tag}.c"), 1 + len(locs))
            return locs[name]

        req = profiles_service_pb2.ExportProfilesServiceRequest()
        rp = req.resource_profiles.add()
        rp.resource.CopyFrom(_resource(PID, self.svc))
        kv = rp.resource.attributes.add()
        kv.key = self.label
        kv.value.string_value = self.value
        sp = rp.scope_profiles.add()
        sp.scope.name = "e2e-tenants"
        cpu = sp.profiles.add()
        cpu.sample_type.type_strindex = dic.s("samples")
        cpu.sample_type.unit_strindex = dic.s("count")
        cpu.period_type.type_strindex = dic.s("cpu")
        cpu.period_type.unit_strindex = dic.s("nanoseconds")
        cpu.period = PERIOD
        cpu.time_unix_nano = self.t0
        cpu.duration_nano = 4_000_000_000
        for stack, times, span in self.cpu:
            s = cpu.samples.add()
            s.stack_index = dic.stack([loc(n) for n in reversed(stack)])
            s.attribute_indices.append(dic.attr("thread.id", TID))
            if span is not None:
                s.link_index = dic.link(self.trace_id, self.spans[span])
            s.timestamps_unix_nano.extend(times)
        work = sp.profiles.add()
        work.sample_type.type_strindex = dic.s(f"work_{self.tag}")
        work.sample_type.unit_strindex = dic.s("count")
        work.period_type.type_strindex = dic.s(f"wall_{self.tag}")
        work.period_type.unit_strindex = dic.s("nanoseconds")
        work.period = 1
        work.time_unix_nano = self.t0
        work.duration_nano = 4_000_000_000
        for stack, v in self.work:
            s = work.samples.add()
            s.stack_index = dic.stack([loc(n) for n in reversed(stack)])
            s.values.append(v)
            s.timestamps_unix_nano.append(self.t0 + 1_000_000_000)
        req.dictionary.CopyFrom(dic.d)
        return req

    def pprof_body(self):
        strings = ["", "cpu", "nanoseconds", "span_id"]

        def s(text):
            if text not in strings:
                strings.append(text)
            return strings.index(text)

        ids, body = {}, b""
        for stack, _, _ in self.pprof:
            for name in stack:
                ids.setdefault(name, len(ids) + 1)
        for stack, value, span in self.pprof:
            smp = ld(1, b"".join(varint(ids[n]) for n in reversed(stack))) + ld(2, varint(value))
            if span is not None:
                smp += ld(3, pb_int(1, s("span_id")) + pb_int(2, s(self.spans[span].hex())))
            body += ld(2, smp)
        for name, i in ids.items():
            body += ld(4, pb_int(1, i) + ld(4, pb_int(1, i) + pb_int(2, 1)))
            body += ld(5, pb_int(1, i) + pb_int(2, s(name)) + pb_int(3, s(name)))
        head = ld(1, pb_int(1, 1) + pb_int(2, 2))
        tail = pb_int(9, self.t0) + pb_int(10, 4_000_000_000) + ld(11, pb_int(1, 1) + pb_int(2, 2))
        tail += pb_int(12, PERIOD)
        return head + body + b"".join(ld(6, t.encode()) for t in strings) + tail

    def write(self, server):
        md = tenant_metadata(self.tenant)
        with grpc.insecure_channel(server.grpc_target) as ch:
            resp = traces_stub(ch).Export(self.traces(), timeout=RPC_TIMEOUT, metadata=md)
            assert not resp.partial_success.rejected_spans, resp
            resp = profiles_stub(ch).Export(self.profiles(), timeout=RPC_TIMEOUT, metadata=md)
            assert not resp.partial_success.rejected_profiles, resp
        t = self.t0 // 1_000_000_000
        status, _, body = http_request(
            server.http_port, "POST",
            f"/ingest?name={quote(self.py_svc)}%7B{self.label}%3D{self.value}%7D&from={t}"
            f"&until={t + 4}&format=pprof",
            body=gzip.compress(self.pprof_body()),
            headers={"Content-Type": "application/octet-stream", **tenant_headers(self.tenant)})
        assert status == 200, body


def random_tenant_id(rng, taken):
    while True:
        n = rng.choice([1, 2, rng.randint(3, 24), 150])
        tid = "".join(rng.choice(TENANT_CHARS) for _ in range(n))
        if tid not in taken and tid not in (".", "..", "anonymous"):
            taken.add(tid)
            return tid


# ---------------------------------------------------------------------------------------------
# The randomized isolation test
# ---------------------------------------------------------------------------------------------


def test_no_item_crosses_tenants_on_any_endpoint(spanprof):
    seed = int(os.environ.get("SPANPROF_TENANT_SEED", random.randrange(1 << 32)))
    print(f"tenant isolation seed: {seed} (SPANPROF_TENANT_SEED={seed} replays it)")
    rng = random.Random(seed)
    taken = set()
    t0 = time.time_ns() - 30_000_000_000
    writers = [TenantData(rng, random_tenant_id(rng, taken), i, t0) for i in range(3)]
    writers.append(TenantData(rng, None, 3, t0))  # no header: the default tenant
    empty = random_tenant_id(rng, taken)  # a tenant that never wrote anything
    server = spanprof
    order = list(writers)
    rng.shuffle(order)
    for w in order:
        w.write(server)
    print("tenants:", [w.tenant for w in writers], "empty:", empty)

    start_ms, end_ms = t0 // 1_000_000 - 60_000, time.time_ns() // 1_000_000 + 60_000
    win = {"start": str(start_ms), "end": end_ms}
    all_types = [CPU] + [w.own_type for w in writers]
    all_spans = [s for w in writers for s in w.spans]
    label_names = ["service_name", "__profile_type__"] + [w.label for w in writers]
    api_v1 = api_v1_present(server)
    readers = [(w.tenant, w) for w in writers] + [(empty, None)]
    requests = 0

    for tenant, mine in readers:
        foreign = [m for w in writers if w is not mine for m in w.markers()]

        def clean(data, what, echo=()):
            """echo: strings the reader itself sent (a type id it asked for) that an answer may
            quote back; anything else of another tenant is a leak."""
            text = data if isinstance(data, bytes) else data.encode()
            for e in sorted(echo, key=len, reverse=True):
                text = text.replace(e.encode(), b"")
            for m in foreign:
                assert m.encode() not in text, \
                    f"seed {seed}: {what} as tenant {tenant!r} shows {m!r} of another tenant"

        def cj(method, body):
            nonlocal requests
            requests += 1
            data = connect_json(server, method, body, tenant)
            clean(data, method, echo_of(body))
            return json.loads(data)

        # metadata
        types = {t["ID"] for t in cj("ProfileTypes", win).get("profileTypes", [])}
        assert types == ({CPU, mine.own_type} if mine else set()), f"seed {seed}"
        names = set(cj("LabelNames", win).get("names", []))
        if mine:
            assert {"service_name", mine.label} <= names
        for name in label_names:
            values = set(cj("LabelValues", {**win, "name": name}).get("names", []))
            if mine and name == "service_name":
                assert values == {mine.svc, mine.py_svc}, f"seed {seed}"
            if mine and name == mine.label:
                assert values == {mine.value}
        for t in all_types + [None]:
            matchers = [f'{{__profile_type__="{t}"}}'] if t else ["{}"]
            cj("Series", {**win, "matchers": matchers, "labelNames": label_names})

        # flame graphs, merged profiles, time series: every type, as the tenant
        for t in all_types:
            fg = cj("SelectMergeStacktraces", {**win, "profileTypeID": t, "labelSelector": "{}"})
            got = stacks_of(fg.get("flamegraph", {}))
            want = {}
            if mine and t == CPU:
                want = mine.cpu_stacks()
            elif mine and t == mine.own_type:
                want = mine.work_stacks()
            assert got == want, f"seed {seed}: SelectMergeStacktraces {t} as {tenant!r}"
            cj("SelectMergeProfile", {**win, "profileTypeID": t, "labelSelector": "{}"})
            series = cj("SelectSeries", {**win, "profileTypeID": t, "labelSelector": "{}",
                                         "step": 10, "groupBy": ["service_name"]})
            total = sum(p["value"] for s in series.get("series", []) for p in s.get("points", []))
            assert total == sum(want.values()), f"seed {seed}: SelectSeries {t} as {tenant!r}"

            q = quote(f"{t}{{}}")
            requests += 2
            status, _, body = get(server, f"/render?query={q}&from={start_ms}&until={end_ms}", tenant)
            assert status == 200, body
            clean(body, "/render", echo_of({"profileTypeID": t}))
            assert json.loads(body)["flamebearer"]["numTicks"] == sum(want.values())
            status, _, body = get(server, f"/pprof?query={q}&from={start_ms}&until={end_ms}", tenant)
            assert status == 200, body
            raw = gzip.decompress(body)
            clean(raw, "/pprof", echo_of({"profileTypeID": t}))
            assert pprof_stacks(raw)[0] == want, f"seed {seed}: /pprof {t} as {tenant!r}"

        # span profiles: every span of every tenant, through three doors
        for sid in all_spans:
            own = mine is not None and sid in mine.spans
            want = mine.span_stacks(mine.spans.index(sid)) if own else {}
            fg = cj("SelectMergeSpanProfile", {**win, "profileTypeID": CPU, "labelSelector": "{}",
                                               "spanSelector": [sid.hex()]}).get("flamegraph", {})
            assert stacks_of(fg) == want, f"seed {seed}: span {sid.hex()} as {tenant!r}"
            fg = cj("SelectMergeStacktraces", {**win, "profileTypeID": CPU, "labelSelector": "{}",
                                               "spanSelector": [sid.hex()]}).get("flamegraph", {})
            assert stacks_of(fg) == want
            requests += 1
            status, _, body = get(server, f"/pprof?query={quote(CPU + '{}')}&from={start_ms}"
                                          f"&until={end_ms}&span_id={sid.hex()}", tenant)
            assert status == 200, body
            clean(gzip.decompress(body), "/pprof?span_id", [sid.hex()])
        cj("SelectMergeSpanProfile", {**win, "profileTypeID": CPU, "labelSelector": "{}",
                                      "spanSelector": [s.hex() for s in all_spans]})

        # gRPC carries the tenant in metadata
        req = pb_string(1, CPU) + pb_string(2, "{}") + pb_int(3, start_ms) + pb_int(4, end_ms)
        with grpc.insecure_channel(server.grpc_target) as ch:
            raw = raw_unary(ch, "/querier.v1.QuerierService/SelectMergeStacktraces")(
                req, timeout=RPC_TIMEOUT, metadata=tenant_metadata(tenant))
        requests += 1
        clean(raw, "gRPC SelectMergeStacktraces")
        fields = pb_fields(raw)
        got = stacks_of(flamegraph_from_proto(fields[1][0])) if 1 in fields else {}
        assert got == (mine.cpu_stacks() if mine else {})

        # spanprof's own API, when this build has it
        if api_v1:
            for w in writers:
                own = w is mine
                requests += 1
                status, _, body = get(server, f"/api/v1/traces/{w.trace_id.hex()}", tenant)
                clean(body, "/api/v1/traces", [w.trace_id.hex()])
                assert status == (200 if own else 404), f"seed {seed}: trace of {w.tenant!r}"
                if own:
                    assert all(s.hex() in body.decode() for s in w.spans)
                for k, sid in enumerate(w.spans):
                    requests += 1
                    status, _, body = get(server, f"/api/v1/spans/{sid.hex()}/profile?format=folded",
                                          tenant)
                    clean(body, "/api/v1/spans/.../profile", [sid.hex()])
                    if own:
                        assert status == 200, body
                        want = w.span_stacks(k)
                        got = {}
                        for line in body.decode().splitlines():
                            stack, v = line.rsplit(" ", 1)
                            got[tuple(stack.split(";"))] = got.get(tuple(stack.split(";")), 0) + int(v)
                        assert got == want, f"seed {seed}: folded span {sid.hex()}"
                    else:
                        assert status == 404 or not body.strip(), (status, body[:200])
    print(f"{requests} query requests, none leaked")


def echo_of(body):
    """The strings of a query a correct answer may quote: the parts of the profile type id asked
    for (a merged pprof names its sample type) and the span ids selected."""
    out = list(body.get("spanSelector", []))
    t = body.get("profileTypeID")
    if t:
        out += [p for p in t.split(":") if p] + [t]
    return out


def api_v1_present(server):
    status, h, body = get(server, "/api/v1/traces/" + "0" * 32, None)
    return not (status == 404 and h.get("content-type", "").startswith("text/plain"))


# ---------------------------------------------------------------------------------------------
# Default tenant, --multitenancy-required, id rules
# ---------------------------------------------------------------------------------------------


def test_requests_without_a_tenant_share_the_default_tenant_anonymous(spanprof):
    rng = random.Random(1)
    t0 = time.time_ns() - 30_000_000_000
    data = TenantData(rng, None, 0, t0)
    data.write(spanprof)
    win = {"start": str(t0 // 1_000_000 - 60_000), "end": time.time_ns() // 1_000_000 + 60_000}
    for tenant in (None, "anonymous"):
        fg = json.loads(connect_json(spanprof, "SelectMergeStacktraces",
                                     {**win, "profileTypeID": CPU, "labelSelector": "{}"}, tenant))
        assert stacks_of(fg["flamegraph"]) == data.cpu_stacks()
    fg = json.loads(connect_json(spanprof, "SelectMergeStacktraces",
                                 {**win, "profileTypeID": CPU, "labelSelector": "{}"}, "other"))
    assert stacks_of(fg.get("flamegraph", {})) == {}


def test_multitenancy_required_refuses_requests_without_a_tenant(spanprof_factory):
    server = spanprof_factory(["--multitenancy-required"])
    rng = random.Random(2)
    t0 = time.time_ns() - 30_000_000_000
    data = TenantData(rng, None, 0, t0)
    # gRPC ingest and query: UNAUTHENTICATED, as Pyroscope answers with multitenancy enabled
    with grpc.insecure_channel(server.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            profiles_stub(ch).Export(data.profiles(), timeout=RPC_TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "X-Scope-OrgID" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            traces_stub(ch).Export(data.traces(), timeout=RPC_TIMEOUT,
                                   metadata=[("x-scope-orgid", "")])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            raw_unary(ch, "/querier.v1.QuerierService/ProfileTypes")(b"", timeout=RPC_TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # HTTP: OTLP/HTTP, Pyroscope ingest, Connect, render
    status, _, body = http_request(server.http_port, "POST", "/v1/traces",
                                   body=data.traces().SerializeToString(),
                                   headers={"Content-Type": "application/x-protobuf"})
    assert status == 401
    status, _, body = http_request(server.http_port, "POST", "/ingest?name=x&format=pprof",
                                   body=gzip.compress(data.pprof_body()))
    assert status == 401 and b"no org id" in body
    body = json.loads(connect_json(server, "ProfileTypes", {}, None, expect=401))
    assert body["code"] == "unauthenticated" and "X-Scope-OrgID" in body["message"]
    status, _, _ = get(server, f"/render?query={quote(CPU + '{}')}", None)
    assert status == 401
    # probes and scrapes need no tenant
    assert get(server, "/ready", None)[0] == 200
    assert get(server, "/metrics", None)[0] == 200
    # with a tenant everything works
    data.tenant = "team-x"
    data.write(server)
    win = {"start": str(t0 // 1_000_000 - 60_000), "end": time.time_ns() // 1_000_000 + 60_000}
    fg = json.loads(connect_json(server, "SelectMergeStacktraces",
                                 {**win, "profileTypeID": CPU, "labelSelector": "{}"}, "team-x"))
    assert stacks_of(fg["flamegraph"]) == data.cpu_stacks()


@pytest.mark.parametrize("required", [False, True], ids=["default", "multitenancy-required"])
def test_tenant_ids_follow_pyroscope_rules(spanprof_factory, required):
    server = spanprof_factory(["--multitenancy-required"] if required else [])
    good = ["a", "A-b_c.d", "x!*'()", "...", "t" * 150]
    bad = {".": "\".\"", "..": "\".\"", "a/b": "0x2f", "a|b": "0x7c", "a b": "0x20",
           "t\u00e9".encode().decode("latin-1"): "0xc3", "t" * 151: "too long"}
    for tenant in good:
        body = json.loads(connect_json(server, "ProfileTypes", {}, tenant))
        assert body == {}
    for tenant, why in bad.items():
        body = json.loads(connect_json(server, "ProfileTypes", {}, tenant, expect=401))
        assert body["code"] == "unauthenticated" and why in body["message"], (tenant, body)
        status, _, text = http_request(server.http_port, "POST", "/ingest?name=x&format=pprof",
                                       body=b"\x00", headers={"X-Scope-OrgID": tenant})
        assert status == 401 and b"X-Scope-OrgID" in text
    with grpc.insecure_channel(server.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            traces_stub(ch).Export(trace_request([b"\x01" * 8]), timeout=RPC_TIMEOUT,
                                   metadata=[("x-scope-orgid", "../../etc")])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "0x2f" in e.value.details()
    # two different tenants in one request are refused, the same one twice is fine
    import http.client
    for values, want in ((("a", "b"), 401), (("a", "a"), 200)):
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=RPC_TIMEOUT)
        conn.putrequest("POST", "/querier.v1.QuerierService/ProfileTypes")
        conn.putheader("Content-Type", "application/json")
        for v in values:
            conn.putheader("X-Scope-OrgID", v)
        conn.putheader("Content-Length", "2")
        conn.endheaders(b"{}")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == want, values
