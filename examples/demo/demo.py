#!/usr/bin/env python3
"""spanprof demo: a small multi-threaded "service" traced with the official OpenTelemetry SDK and
profiled by a sampling profiler of its own, both sent to spanprof over OTLP/HTTP.

    python examples/demo/demo.py --endpoint http://127.0.0.1:4040 --duration 60

Four worker threads serve fake requests (GET /checkout, /search, /report, /inventory). Each request
is a root span with a child span per step; every span carries the OS thread id (`thread.id`), so
spanprof gives each span exactly the samples its thread took inside it. Some steps burn CPU in
plain Python (compute_prices, score_document, multiply_matrices...), others wait (time.sleep
standing in for a database or an HTTP call).

The profiler (class Sampler) runs in this process: 97 times a second it reads every thread's CPU
clock and Python stack (sys._current_frames), emits one CPU sample per 1/97 s of CPU a thread used
(`samples`/`count`, period `cpu`/`nanoseconds`, as the eBPF profiler sends), and one off-CPU
observation per wait (`off_cpu`/`nanoseconds`, value = the time waited, timestamp = the last tick
that saw the thread waiting there). Every few seconds the collected samples go to spanprof as
one OTLP ExportProfilesServiceRequest (profiles v1development, proto 1.10 layout), each sample with
its timestamps and `thread.id`, each Python frame a Location with a Line and a Function (name,
file, line).

Pass --profiler off to send spans only (e.g. when the OpenTelemetry eBPF profiler profiles this
process: see examples/ebpf-profiler/).
"""
import argparse
import os
import queue
import random
import sys
import threading
import time
import urllib.error
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "thread-id"))
from thread_id import ThreadIdSpanProcessor  # noqa: E402  (span.set_attribute("thread.id", TID))

SERVICE = "spanprof-demo"
tracer = trace.get_tracer("spanprof-demo")


# ------------------------------------------------------------------------------------------------
# The application: CPU work in plain Python (so its frames show in the profile) and waiting.
# ------------------------------------------------------------------------------------------------

def burn(cpu_seconds, unit, *args):
    """Calls unit(*args) until this thread has used cpu_seconds of CPU (time.thread_time)."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        unit(*args)


def price_line_item(i):
    total = 0.0
    for k in range(200):
        total += ((i * 31 + k * 17) % 97) * 1.07
    return round(total, 2)


def price_cart(items):
    total = 0.0
    for i in range(items):
        total += price_line_item(i)
    return total


def compute_prices():
    burn(0.08, price_cart, 20)


def score_document(doc, terms):
    score = 0
    for term in terms:
        score += doc.count(term)
    return score


def scan_catalog(docs, terms):
    hits = 0
    for doc in docs:
        hits += score_document(doc, terms) > 0
    return hits


def search_catalog():
    docs = [f"item-{i}-{'blue' if i % 3 else 'red'}-shirt-cotton" for i in range(300)]
    burn(0.10, scan_catalog, docs, ("blue", "cotton", "shirt"))


def sort_results(rnd):
    results = []
    for _ in range(2000):
        results.append(rnd.random())
    results.sort()
    return results


def rank_results():
    burn(0.03, sort_results, random.Random(1))


def multiply_matrices(a, b):
    n = len(a)
    out = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            acc = 0
            for k in range(n):
                acc += a[i][k] * b[k][j]
            out[i][j] = acc
    return out


def render_report():
    n = 24
    a = [[(i * j) % 7 for j in range(n)] for i in range(n)]
    b = [[(i + j) % 5 for j in range(n)] for i in range(n)]
    burn(0.12, multiply_matrices, a, b)


def query_database(seconds):
    time.sleep(seconds)  # stands in for a database round trip: off-CPU


def call_payment_api():
    time.sleep(0.05)  # an HTTP call: off-CPU


def write_report_file():
    time.sleep(0.04)  # slow storage: off-CPU


def step(name, fn, *args):
    with tracer.start_as_current_span(name):
        return fn(*args)


def handle_checkout():
    step("load_cart", query_database, 0.03)
    step("compute_prices", compute_prices)
    step("charge_card", call_payment_api)


def handle_search():
    step("search_catalog", search_catalog)
    step("rank_results", rank_results)


def handle_report():
    step("load_orders", query_database, 0.02)
    step("render_report", render_report)
    step("write_report", write_report_file)


def handle_inventory():
    step("fetch_inventory", query_database, 0.1)


ENDPOINTS = {
    "GET /checkout": handle_checkout,
    "GET /search": handle_search,
    "GET /report": handle_report,
    "GET /inventory": handle_inventory,
}


class Requests:
    """Remembers the latest request of each endpoint (trace id, root span id) for the summary."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.latest = {}

    def record(self, endpoint, span):
        ctx = span.get_span_context()
        with self.lock:
            self.count += 1
            self.latest[endpoint] = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))


def worker(stop, requests, seed):
    rnd = random.Random(seed)
    names = list(ENDPOINTS)
    while not stop.is_set():
        endpoint = rnd.choice(names)
        with tracer.start_as_current_span(endpoint, kind=trace.SpanKind.SERVER,
                                          attributes={"http.route": endpoint.split()[1]}) as span:
            ENDPOINTS[endpoint]()
        requests.record(endpoint, span)
        stop.wait(rnd.uniform(0.01, 0.05))  # idle between requests: no span, off-CPU


# ------------------------------------------------------------------------------------------------
# The profiler: sys._current_frames() + per-thread CPU clocks, exported as OTLP profiles.
# ------------------------------------------------------------------------------------------------

class Dictionary:
    """One ProfilesDictionary per request; every table starts with its zero entry."""

    def __init__(self):
        self.d = profiles_service_pb2.ExportProfilesServiceRequest().dictionary
        self.d.string_table.append("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.stack_table.add()
        self.d.attribute_table.add()
        self.d.link_table.add()
        self.strings, self.functions, self.locations, self.stacks, self.attrs = {}, {}, {}, {}, {}

    def s(self, text):
        if text not in self.strings:
            self.strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self.strings[text]

    def attr(self, key, value):
        k = (key, value)
        if k not in self.attrs:
            a = self.d.attribute_table.add()
            a.key_strindex = self.s(key)
            if isinstance(value, int):
                a.value.int_value = value
            else:
                a.value.string_value = value
            self.attrs[k] = len(self.d.attribute_table) - 1
        return self.attrs[k]

    def location(self, frame):
        """frame = (function name, file name, first line, current line)."""
        name, filename, first_line, line = frame
        fkey = (name, filename, first_line)
        if fkey not in self.functions:
            f = self.d.function_table.add()
            f.name_strindex = self.s(name)
            f.filename_strindex = self.s(filename)
            f.start_line = first_line
            self.functions[fkey] = len(self.d.function_table) - 1
        if frame not in self.locations:
            loc = self.d.location_table.add()
            ln = loc.lines.add()
            ln.function_index = self.functions[fkey]
            ln.line = line
            loc.attribute_indices.append(self.attr("profile.frame.type", "cpython"))
            self.locations[frame] = len(self.d.location_table) - 1
        return self.locations[frame]

    def stack(self, frames):
        ids = tuple(self.location(f) for f in frames)  # leaf first
        if ids not in self.stacks:
            self.d.stack_table.add().location_indices.extend(ids)
            self.stacks[ids] = len(self.d.stack_table) - 1
        return self.stacks[ids]


def python_stack(frame):
    """Leaf first, as OTLP stacks are."""
    out = []
    while frame is not None:
        code = frame.f_code
        out.append((getattr(code, "co_qualname", code.co_name), code.co_filename,
                    code.co_firstlineno, frame.f_lineno or 0))
        frame = frame.f_back
    return tuple(out)


class ThreadState:
    """What the sampler remembers of one thread between ticks."""

    def __init__(self, thread):
        self.tid, self.name = thread.native_id, thread.name
        self.clock = time.pthread_getcpuclockid(thread.ident)
        self.cpu_ns = time.clock_gettime_ns(self.clock)
        self.credit = 0          # CPU used but not yet sampled (< one period)
        self.seen_at, self.seen_stack = 0, None  # the last tick and the stack it saw
        self.seen_waiting = False  # whether that tick found it waiting
        self.wait_stack = None   # the stack it has been seen waiting in, since a tick
        self.wait_last = 0       # the last tick that saw it waiting there
        self.waited = 0          # ns waited between those ticks


class Sampler(threading.Thread):
    def __init__(self, base_url, hz, export_interval, resource_attrs, off_cpu=True):
        super().__init__(name="sampler", daemon=True)
        self.url = base_url.rstrip("/") + "/v1development/profiles"
        self.hz = hz
        self.period_ns = int(1e9 / hz)
        self.export_interval = export_interval
        self.resource_attrs = resource_attrs
        self.off_cpu = off_cpu
        self.stop_event = threading.Event()
        self.threads = {}     # thread ident -> ThreadState
        self.cpu = {}         # (tid, thread name, stack) -> [timestamps]
        self.offcpu = {}      # (tid, thread name, stack) -> [(timestamp, value)]
        self.window_start = self.last_tick = time.time_ns()
        self.sent_samples = 0
        self.errors = 0
        self.switch_interval = sys.getswitchinterval()
        self.outbox = queue.Queue()  # (cpu, offcpu, window start, end) for the export thread
        self.exporter = threading.Thread(target=self.export_loop, name="sampler-export", daemon=True)

    def tick(self, me):
        now = time.time_ns()
        wall, self.last_tick = now - self.last_tick, now
        frames = sys._current_frames()
        alive = {t.ident: t for t in threading.enumerate()}
        for ident, frame in frames.items():
            t = alive.get(ident)
            if t is None or ident == me or t.native_id is None:
                continue
            try:
                st = self.threads.get(ident)
                if st is None:
                    self.threads[ident] = ThreadState(t)
                    continue
                cpu_now = time.clock_gettime_ns(st.clock)
            except (OSError, OverflowError):  # the thread ended meanwhile
                self.threads.pop(ident, None)
                continue
            used, st.cpu_ns = cpu_now - st.cpu_ns, cpu_now
            stack = python_stack(frame)
            waiting = used < wall // 2
            # CPU: one sample per period of CPU the thread used. Where between the two ticks it
            # was used is unknown; the stamp goes where the thread ran. When it ran at the last
            # tick and waits now, it worked and then went to wait: the last tick, with the stack
            # seen then. Otherwise now, with the stack it runs now (what a timer-driven profiler
            # records) -- also when it waited at the last tick, for then it woke and worked since.
            st.credit += used
            ran_before = st.seen_stack is not None and not st.seen_waiting
            at, at_stack = (st.seen_at, st.seen_stack) if waiting and ran_before else (now, stack)
            while st.credit >= self.period_ns:
                st.credit -= self.period_ns
                self.cpu.setdefault((st.tid, st.name, at_stack), []).append(at)
            st.seen_at, st.seen_stack, st.seen_waiting = now, stack, waiting
            # Off-CPU: a thread that barely ran since the last tick waited. A wait is reported
            # from the first to the last tick that saw it waiting in the same stack (when exactly
            # it began and ended between two ticks is unknown, so that part is left out rather
            # than given to the wrong stack, or the wrong span).
            if waiting and stack == st.wait_stack:
                st.waited += wall - used
                st.wait_last = now
            else:
                self.wait_over(st)
                if waiting:
                    st.wait_stack, st.wait_last = stack, now
        for ident in list(self.threads):
            if ident not in alive:
                self.wait_over(self.threads.pop(ident))

    def wait_over(self, st):
        if self.off_cpu and st.wait_stack is not None and st.waited >= 1_000_000:
            key = (st.tid, st.name, st.wait_stack)
            self.offcpu.setdefault(key, []).append((st.wait_last, st.waited))
        st.wait_stack, st.waited = None, 0

    def build_request(self, cpu, offcpu, start_ns, end_ns):
        d = Dictionary()
        req = profiles_service_pb2.ExportProfilesServiceRequest()
        rp = req.resource_profiles.add()
        for k, v in self.resource_attrs.items():
            kv = rp.resource.attributes.add()
            kv.key = k
            if isinstance(v, int):
                kv.value.int_value = v
            else:
                kv.value.string_value = v
        sp = rp.scope_profiles.add()
        sp.scope.name = "spanprof-demo-sampler"
        n = 0

        def profile(sample_type, unit, period):
            p = sp.profiles.add()
            p.time_unix_nano = start_ns
            p.duration_nano = max(1, end_ns - start_ns)
            p.sample_type.type_strindex = d.s(sample_type)
            p.sample_type.unit_strindex = d.s(unit)
            if period:
                p.period_type.type_strindex = d.s("cpu")
                p.period_type.unit_strindex = d.s("nanoseconds")
                p.period = period
            return p

        first = [ts[0] for ts in cpu.values()] + [o[0][0] for o in offcpu.values()]
        start_ns = min([start_ns] + first)  # no sample before the profile
        if cpu:
            p = profile("samples", "count", self.period_ns)
            for (tid, tname, stack), ts in cpu.items():
                s = p.samples.add()
                s.stack_index = d.stack(stack)
                s.attribute_indices.extend([d.attr("thread.id", tid), d.attr("thread.name", tname)])
                s.timestamps_unix_nano.extend(ts)
                n += len(ts)
        if offcpu:
            p = profile("off_cpu", "nanoseconds", 0)
            for (tid, tname, stack), obs in offcpu.items():
                s = p.samples.add()
                s.stack_index = d.stack(stack)
                s.attribute_indices.extend([d.attr("thread.id", tid), d.attr("thread.name", tname)])
                s.timestamps_unix_nano.extend(t for t, _ in obs)
                s.values.extend(v for _, v in obs)
        req.dictionary.CopyFrom(d.d)
        return req, n

    def export(self):
        """Hands what was collected since the last export to the export thread: building the
        request and the POST take tens of milliseconds, more when the server is busy, and ticks
        must not wait for them (a late tick lumps CPU from several spans into one stamp)."""
        end = time.time_ns()
        if self.cpu or self.offcpu:
            self.outbox.put((self.cpu, self.offcpu, self.window_start, end))
        self.cpu, self.offcpu, self.window_start = {}, {}, end

    def export_loop(self):
        while (batch := self.outbox.get()) is not None:
            self.send(*batch)

    def send(self, cpu, offcpu, start_ns, end_ns):
        req, n = self.build_request(cpu, offcpu, start_ns, end_ns)
        body = req.SerializeToString()
        http_req = urllib.request.Request(self.url, data=body, method="POST",
                                          headers={"Content-Type": "application/x-protobuf"})
        for attempt in range(3):
            try:
                with urllib.request.urlopen(http_req, timeout=10) as resp:
                    resp.read()
                self.sent_samples += n
                return
            except urllib.error.HTTPError as e:
                retry = e.code in (429, 502, 503, 504)
                msg = f"HTTP {e.code} {e.read()[:200]!r}"
            except OSError as e:
                retry, msg = True, str(e)
            if not retry or attempt == 2:
                break
            time.sleep(0.5 * (attempt + 1))
        self.errors += 1
        print(f"profile export to {self.url} failed: {msg}", file=sys.stderr)

    def run(self):
        me = threading.get_ident()
        self.exporter.start()
        # A tick needs the interpreter lock. Busy threads hand it over every switch interval
        # (5 ms by default), each in turn, so ticks came 10-30 ms late and lumped CPU of
        # neighbouring spans into one stamp; at 1 ms they come on time (the cost: more lock
        # hand-overs between busy threads). stop() puts the interval back.
        self.switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self.switch_interval, 0.001))
        interval = 1.0 / self.hz
        next_tick = time.monotonic()
        next_export = next_tick + self.export_interval
        while not self.stop_event.is_set():
            self.tick(me)
            if time.monotonic() >= next_export:
                self.export()
                next_export += self.export_interval
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind (GIL contention): skip, the CPU clocks keep the count
                next_tick = time.monotonic()
                delay = 0
            self.stop_event.wait(delay)

    def stop(self):
        self.stop_event.set()
        self.join()
        sys.setswitchinterval(self.switch_interval)
        for st in self.threads.values():  # waits still going on end at the last tick
            self.wait_over(st)
        self.export()  # what is left
        self.outbox.put(None)
        self.exporter.join()


# ------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default="http://127.0.0.1:4040",
                    help="spanprof's HTTP address (OTLP/HTTP: /v1/traces, /v1development/profiles)")
    ap.add_argument("--duration", type=float, default=60, help="seconds to run")
    ap.add_argument("--threads", type=int, default=4, help="worker threads")
    ap.add_argument("--hz", type=int, default=97,
                    help="sampling frequency: one CPU sample per 1/hz s of CPU a thread uses")
    ap.add_argument("--export-interval", type=float, default=3, help="seconds between profile exports")
    ap.add_argument("--profiler", choices=("on", "off"), default="on",
                    help="off: spans only (let the eBPF profiler sample this process)")
    ap.add_argument("--service-name", default=SERVICE)
    args = ap.parse_args(argv)
    base = args.endpoint.rstrip("/")

    resource_attrs = {"service.name": args.service_name, "process.pid": os.getpid(),
                      "process.executable.name": os.path.basename(sys.executable)}
    provider = TracerProvider(resource=Resource.create(resource_attrs))
    provider.add_span_processor(ThreadIdSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=base + "/v1/traces"),
                                                   schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)

    print(f"spanprof demo: pid {os.getpid()}, {args.threads} threads, {args.duration:g} s, "
          f"sending to {base}; page: {base}/", flush=True)
    sampler = None
    if args.profiler == "on":
        sampler = Sampler(base, args.hz, args.export_interval, resource_attrs)
        sampler.start()

    stop = threading.Event()
    requests = Requests()
    workers = [threading.Thread(target=worker, args=(stop, requests, i), name=f"worker-{i + 1}")
               for i in range(args.threads)]
    for w in workers:
        w.start()
    try:
        stop.wait(args.duration)
    except KeyboardInterrupt:
        pass
    stop.set()
    for w in workers:
        w.join()
    if sampler:
        sampler.stop()
    provider.force_flush()
    provider.shutdown()

    sent = f", {sampler.sent_samples} CPU samples" if sampler else ""
    print(f"done: {requests.count} requests{sent}", flush=True)
    print(f"open {base}/ : traces of service {args.service_name}, their spans' CPU and flame graphs")
    print("a trace of each endpoint (its waterfall, with the root span's flame graph):")
    for endpoint in ENDPOINTS:
        if endpoint in requests.latest:
            trace_id, span_id = requests.latest[endpoint]
            print(f"  {endpoint:15s} trace {trace_id}  {base}/#trace={trace_id}&span={span_id}")
    sys.stdout.flush()
    return 1 if sampler and sampler.errors else 0


if __name__ == "__main__":
    sys.exit(main())
