"""The Pyroscope backend (--store=pyroscope / sqlite,pyroscope) against a real Push server.

tests/e2e/gopush is Pyroscope's own generated Connect handler (github.com/grafana/pyroscope/api,
pushv1connect) with a recorder behind it; each raw profile it receives is decoded with
github.com/google/pprof/profile. What it records is what a Pyroscope cluster would have ingested:
the series labels, the samples with their values and pprof labels (span_id / trace_id on the
samples spanprof attached to a span: the innermost one), the tenant and the credentials.

Delivery is at least once: a batch is deleted from the on-disk queue only after Push answered OK,
so a crash between the answer and the delete sends it again. Every profile carries a random UUID
as RawSample.ID, so such a copy is recognisable; these tests check that nothing acknowledged is
lost, and (since nothing crashes here) that nothing arrives twice.
"""
import base64
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import free_port
from e2e_helpers import http_request, scrape, wait_for_metric
from test_correlation import PERIOD, SAMPLES, SPANS, SVC, MS, export_profile, export_spans

# Samples leave the hold as soon as their 10 s bucket ended (tests/e2e/test_pyroscope_exact.py
# runs the hold with a delay and late spans).
PUSH_NOW = ["--pyroscope-push-delay", "0s"]

GO = shutil.which("go") or "/usr/local/go/bin/go"
HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")


@pytest.fixture(scope="module")
def gopush_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("gopush") / "gopush"
    r = subprocess.run([GO, "build", "-o", str(out), "."], cwd=os.path.join(HERE, "gopush"),
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert r.returncode == 0, r.stderr
    return str(out)


class GoPush:
    """One running gopush; records() are the requests it accepted."""

    def __init__(self, binary, workdir, port=None, args=()):
        self.binary, self.workdir = binary, workdir
        self.out = workdir / "received.jsonl"
        self.port = port or free_port()
        self.args = list(args)
        self.proc = None

    def start(self):
        port_file = self.workdir / f"port.{self.port}"
        if port_file.exists():
            port_file.unlink()
        self.log = open(self.workdir / "gopush.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-addr", f"127.0.0.1:{self.port}", "-out",
                                      str(self.out), "-port-file", str(port_file), *self.args],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert self.proc.poll() is None, (self.workdir / "gopush.log").read_text()
            assert time.monotonic() < deadline, "gopush did not start"
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

    def records(self):
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def profiles(self):
        """[(series labels, profile)] over every request received."""
        return [(s["labels"], p) for r in self.records() for s in r["series"] for p in s["profiles"]]

    def wait_profiles(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.profiles()) < n:
            assert time.monotonic() < deadline, f"{len(self.profiles())} of {n} profiles arrived"
            time.sleep(0.1)
        return self.profiles()


@pytest.fixture
def gopush(gopush_bin, tmp_path):
    started = []

    def make(port=None, args=(), name="gopush"):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        g = GoPush(gopush_bin, d, port, args)
        started.append(g)
        return g

    yield make
    for g in started:
        g.stop()


def ingest_folded(server, name, lines, tenant=None, until=None):
    headers = {"Content-Type": "text/plain"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    q = f"/ingest?name={name}&format=folded" + (f"&until={until}" if until else "")
    status, _, body = http_request(server.http_port, "POST", q, body="\n".join(lines).encode(),
                                   headers=headers)
    assert status == 200, body
    return status


def stacks_by_span(profiles):
    """{(stack leaf first, span_id or None): summed value} over the profiles' samples."""
    out = {}
    for _, p in profiles:
        for s in p["samples"]:
            key = (tuple(s["stack"]), s["labels"].get("span_id"))
            out[key] = out.get(key, 0) + s["values"][0]
    return out


def outermost_labels(ids):
    """{(stack leaf first, span id or None): value}: each observation under the outermost span
    of at least 20 ms containing it (SPANS nest; the longest containing one is the outermost)."""
    want = {}
    for stack, offs in SAMPLES:
        for off in offs:
            inside = [n for n, s, e, _ in SPANS if s <= off < e and e - s >= 20]
            outer = max(inside, key=lambda n: [x[2] - x[1] for x in SPANS if x[0] == n][0],
                        default=None)
            key = (tuple(reversed(stack)), ids[outer] if outer else None)
            want[key] = want.get(key, 0) + PERIOD
    return want


def wait_total(g, total, timeout=30):
    deadline = time.monotonic() + timeout
    while sum(stacks_by_span(g.profiles()).values()) < total:
        assert time.monotonic() < deadline, (sum(stacks_by_span(g.profiles()).values()), total)
        time.sleep(0.1)
    time.sleep(0.5)  # and nothing more comes
    return g.profiles()


TOTAL = sum(len(offs) for _, offs in SAMPLES) * PERIOD


def test_correlated_profiles_reach_pyroscope_with_outermost_span_labels(spanprof_factory, gopush):
    g = gopush().start()
    server = spanprof_factory(PUSH_NOW + ["--store", "sqlite,pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{g.port}", "--forward-batch-interval", "50ms"])
    t0 = time.time_ns() - 30_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    ids = export_spans(server, [(n, t0 + s * MS, t0 + e * MS, p) for n, s, e, p in SPANS], pid, tid)
    export_profile(server, [(stack, [t0 + o * MS for o in offs]) for stack, offs in SAMPLES],
                   pid, tid)
    profiles = wait_total(g, TOTAL)
    # One profile per 10 s bucket the samples fall in, stamped with the bucket's start.
    buckets = {(t0 + o * MS) // 10**10 for _, offs in SAMPLES for o in offs}
    assert sorted(p["time_nanos"] // 10**10 for _, p in profiles) == sorted(buckets)
    assert all(p["time_nanos"] % 10**10 < 10**6 for _, p in profiles)
    labels, prof = profiles[0]
    assert labels["__name__"] == "process_cpu"
    assert labels["service_name"] == SVC
    assert prof["sample_types"] == ["cpu:nanoseconds"]
    assert prof["id"] and len(prof["id"]) == 36
    # Outermost span only (Pyroscope keeps one span per sample; the local root's profile then
    # holds everything inside it): db's and render's samples name checkout, tiny (5 ms) gets
    # none by inference, idle ran outside every span and has no label.
    assert stacks_by_span(profiles) == outermost_labels(ids)
    traces = {s["labels"].get("trace_id") for _, p in profiles for s in p["samples"]
              if "span_id" in s["labels"]}
    assert len(traces) == 1 and len(traces.pop()) == 32
    # Per-thread ids are not Pyroscope labels (they would become series); SQLite still has them.
    assert all("thread_id" not in s["num_labels"] and "process_pid" not in s["num_labels"]
               for _, p in profiles for s in p["samples"])
    m = scrape(server.http_port)
    assert m.total("spanprof_pyroscope_queued") == 0
    assert m.total("spanprof_pyroscope_hold_groups") == 0


def test_spans_after_their_samples_label_them_while_held(spanprof_factory, gopush):
    """Profile first, spans later (SDKs export a span when it ends): the samples wait in the
    hold, the late spans label them, and they are pushed once."""
    g = gopush().start()
    server = spanprof_factory(["--pyroscope-push-delay", "3s", "--store", "sqlite,pyroscope",
                               "--pyroscope-url", f"http://127.0.0.1:{g.port}",
                               "--forward-batch-interval", "50ms"])
    t0 = time.time_ns() - 30_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    export_profile(server, [(stack, [t0 + o * MS for o in offs]) for stack, offs in SAMPLES],
                   pid, tid)
    ids = export_spans(server, [(n, t0 + s * MS, t0 + e * MS, p) for n, s, e, p in SPANS], pid, tid)
    assert g.profiles() == []  # still held
    profiles = wait_total(g, TOTAL)
    assert stacks_by_span(profiles) == outermost_labels(ids)
    m = scrape(server.http_port)
    assert m.total("spanprof_pyroscope_hold_moved_to_outer_span_total") > 0
    assert m.total("spanprof_pyroscope_spans_incomplete_total") == 0


def test_spans_after_their_samples_left_are_not_pushed_twice(spanprof_factory, gopush):
    """Spans that arrive after their samples were pushed: Pyroscope cannot relabel them, so
    nothing is sent again (its totals stay right) and the spans are counted incomplete."""
    g = gopush().start()
    server = spanprof_factory(PUSH_NOW + ["--store", "sqlite,pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{g.port}", "--forward-batch-interval", "50ms"])
    t0 = time.time_ns() - 30_000 * MS
    pid, tid = os.getpid(), threading.get_native_id()
    export_profile(server, [(stack, [t0 + o * MS for o in offs]) for stack, offs in SAMPLES],
                   pid, tid)
    wait_total(g, TOTAL)
    export_spans(server, [(n, t0 + s * MS, t0 + e * MS, p) for n, s, e, p in SPANS], pid, tid)
    wait_for_metric(server.http_port,
                    lambda m: m.total("spanprof_pyroscope_spans_incomplete_total") > 0)
    time.sleep(1.5)
    profiles = g.profiles()
    assert sum(stacks_by_span(profiles).values()) == TOTAL
    assert all(s["labels"].get("span_id") is None for _, p in profiles for s in p["samples"])


def test_tenant_and_bearer_token_reach_pyroscope(spanprof_factory, gopush, tmp_path):
    g = gopush().start()
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    server = spanprof_factory(PUSH_NOW + ["--store", "pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{g.port}/", "--pyroscope-bearer-token-file",
                               str(token), "--forward-batch-interval", "10ms"])
    ingest_folded(server, "app%7Benv%3Dprod%7D", ["main;work 7", "main;idle 3"], tenant="team-a")
    profiles = g.wait_profiles(1)
    rec = g.records()[0]
    assert rec["tenant"] == "team-a"
    assert rec["authorization"] == "Bearer s3cret-token"
    assert rec["content_type"] == "application/proto"
    labels, prof = profiles[0]
    assert labels == {"__name__": "process_cpu", "service_name": "app", "env": "prod"}
    assert stacks_by_span(profiles) == {(("work", "main"), None): 7 * prof["period"],
                                        (("idle", "main"), None): 3 * prof["period"]}
    # Pyroscope alone answers no queries: there is nothing local to read.
    status, _, _ = http_request(server.http_port, "POST",
                                "/querier.v1.QuerierService/ProfileTypes", body=b"{}",
                                headers={"Content-Type": "application/json"})
    assert status != 200


def test_outage_loses_nothing_acknowledged(spanprof_factory, gopush):
    """Pyroscope down: every ingest is still acknowledged (it is on disk), retried with backoff,
    and delivered once Pyroscope is back: all of it, each profile once."""
    port = free_port()
    server = spanprof_factory(PUSH_NOW + ["--store", "pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{port}", "--forward-batch-interval", "10ms"])
    n = 6
    for i in range(n):
        ingest_folded(server, f"outage{i}", [f"main;f{i} {i + 1}"])
    m = wait_for_metric(server.http_port,
                        lambda m: m.total("spanprof_pyroscope_retried_total") >= 2, timeout=20)
    assert m.total("spanprof_pyroscope_queued") == n
    assert m.total("spanprof_pyroscope_sent_total") == 0
    g = gopush(port=port).start()
    profiles = g.wait_profiles(n, timeout=40)
    time.sleep(0.5)
    profiles = g.profiles()
    assert sorted(lbl["service_name"] for lbl, _ in profiles) == sorted(f"outage{i}" for i in range(n))
    assert len({p["id"] for _, p in profiles}) == n
    for lbl, p in profiles:
        i = int(lbl["service_name"][6:])
        assert [(s["stack"], s["values"][0]) for s in p["samples"]] == [([f"f{i}", "main"],
                                                                          (i + 1) * p["period"])]
    m = wait_for_metric(server.http_port, lambda m: m.total("spanprof_pyroscope_sent_total") == n)
    assert m.total("spanprof_pyroscope_queued") == 0
    assert m.total("spanprof_pyroscope_dropped_total") == 0


def test_queue_survives_a_restart(spanprof_factory, gopush, tmp_path):
    """Acknowledged while Pyroscope is down, then spanprof restarts: the queue on disk is sent."""
    port = free_port()
    args = PUSH_NOW + ["--store", "pyroscope", "--pyroscope-url", f"http://127.0.0.1:{port}",
                       "--forward-batch-interval", "10ms"]
    first = spanprof_factory(args, name="first")
    for i in range(3):
        ingest_folded(first, f"restart{i}", [f"main;g{i} 5"])
    wait_for_metric(first.http_port, lambda m: m.total("spanprof_pyroscope_retried_total") >= 1)
    assert first.stop() == 0
    g = gopush(port=port).start()
    second = spanprof_factory(args + ["--data-dir", str(first.data_dir)], name="second")
    profiles = g.wait_profiles(3, timeout=30)
    assert sorted(lbl["service_name"] for lbl, _ in profiles) == ["restart0", "restart1", "restart2"]
    wait_for_metric(second.http_port, lambda m: m.total("spanprof_pyroscope_sent_total") == 3)


@pytest.mark.parametrize("store", ["pyroscope", "sqlite,pyroscope"])
def test_held_samples_survive_kill_9(spanprof_factory, gopush, store):
    """Acknowledged samples still in the hold when the process is killed: the journal has them,
    and the next start queues them (with the labels known at arrival), each once."""
    g = gopush().start()
    args = ["--pyroscope-push-delay", "1h", "--store", store, "--pyroscope-url",
            f"http://127.0.0.1:{g.port}", "--forward-batch-interval", "10ms"]
    first = spanprof_factory(args, name="first")
    for i in range(3):
        ingest_folded(first, f"held{i}", [f"main;h{i} {i + 2}"])
    wait_for_metric(first.http_port, lambda m: m.total("spanprof_pyroscope_hold_groups") >= 1)
    first.proc.kill()
    first.proc.wait(timeout=10)
    first.stopped, first.returncode = True, 0  # killed on purpose: no clean exit expected
    assert g.profiles() == []
    second = spanprof_factory(args + ["--data-dir", str(first.data_dir)], name="second")
    profiles = g.wait_profiles(3, timeout=30)
    time.sleep(0.5)
    profiles = g.profiles()
    got = sorted((lbl["service_name"], s["stack"], s["values"][0] // p["period"])
                 for lbl, p in profiles for s in p["samples"])
    assert got == [(f"held{i}", [f"h{i}", "main"], i + 2) for i in range(3)]
    # stamped inside their bucket, apart from anything a bucket's own push could carry
    assert all(0 < p["time_nanos"] % 10**10 < 10**6 for _, p in profiles)
    m = wait_for_metric(second.http_port,
                        lambda m: m.total("spanprof_pyroscope_hold_recovered_files_total") >= 1)


def test_rejected_batches_are_dropped_not_retried(spanprof_factory, gopush):
    g = gopush(args=["-fail", "1", "-fail-code", "invalid_argument"]).start()
    server = spanprof_factory(PUSH_NOW + ["--store", "sqlite,pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{g.port}", "--forward-batch-interval", "10ms"])
    ingest_folded(server, "bad", ["main;a 1"])
    m = wait_for_metric(server.http_port, lambda m: m.total("spanprof_pyroscope_dropped_total") == 1)
    assert m.total("spanprof_pyroscope_retried_total") == 0
    ingest_folded(server, "good", ["main;b 1"])
    profiles = g.wait_profiles(1)
    assert [lbl["service_name"] for lbl, _ in profiles] == ["good"]


def test_unavailable_is_retried(spanprof_factory, gopush):
    g = gopush(args=["-fail", "2", "-fail-code", "unavailable"]).start()
    server = spanprof_factory(PUSH_NOW + ["--store", "pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{g.port}", "--forward-batch-interval", "10ms"])
    ingest_folded(server, "flaky", ["main;c 1"])
    profiles = g.wait_profiles(1, timeout=20)
    assert [lbl["service_name"] for lbl, _ in profiles] == ["flaky"]
    m = scrape(server.http_port)
    assert m.total("spanprof_pyroscope_retried_total") == 2
    assert m.total("spanprof_pyroscope_dropped_total") == 0


def test_tls_with_custom_ca(spanprof_factory, gopush, certs):
    """https:// with --pyroscope-ca-file: the push arrives when that CA signed gopush's
    certificate; an instance trusting another CA sends nothing (the handshake fails, which is
    retried, not dropped: the profile stays queued)."""
    g = gopush(args=["-tls-cert", str(certs["server_cert"]), "-tls-key",
                     str(certs["server_key"])]).start()
    args = PUSH_NOW + ["--store", "pyroscope", "--pyroscope-url", f"https://127.0.0.1:{g.port}",
            "--forward-batch-interval", "10ms"]
    rogue = spanprof_factory(args + ["--pyroscope-ca-file", str(certs["dir"] / "rogue-ca.crt")],
                             name="rogue")
    ingest_folded(rogue, "untrusted", ["main;u 1"])
    m = wait_for_metric(rogue.http_port, lambda m: m.total("spanprof_pyroscope_retried_total") >= 1)
    assert m.total("spanprof_pyroscope_sent_total") == 0
    assert m.total("spanprof_pyroscope_queued") == 1
    server = spanprof_factory(args + ["--pyroscope-ca-file", str(certs["ca"])])
    ingest_folded(server, "trusted", ["main;t 4"])
    profiles = g.wait_profiles(1)
    assert [lbl["service_name"] for lbl, _ in profiles] == ["trusted"]
    assert stacks_by_span(profiles) == {(("t", "main"), None): 4 * profiles[0][1]["period"]}
    wait_for_metric(server.http_port, lambda m: m.total("spanprof_pyroscope_sent_total") == 1)
    time.sleep(0.3)
    assert len(g.profiles()) == 1
    assert scrape(rogue.http_port).total("spanprof_pyroscope_sent_total") == 0


def test_basic_auth_over_tls(spanprof_factory, gopush, certs, tmp_path):
    """gopush checks the credentials with net/http's basic auth parser: the right password is
    accepted, a wrong one is answered unauthenticated (401), which drops the batch (retrying a
    refused credential cannot succeed) and is counted."""
    g = gopush(args=["-tls-cert", str(certs["server_cert"]), "-tls-key", str(certs["server_key"]),
                     "-basic-auth", "tenant-7:p4ss:word"]).start()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("p4ss:word\n")
    bad.write_text("guess\n")

    def instance(pw, name):
        return spanprof_factory(PUSH_NOW + ["--store", "sqlite,pyroscope", "--pyroscope-url",
                                 f"https://127.0.0.1:{g.port}", "--pyroscope-ca-file",
                                 str(certs["ca"]), "--pyroscope-basic-auth-user", "tenant-7",
                                 "--pyroscope-basic-auth-password-file", str(pw),
                                 "--forward-batch-interval", "10ms"], name=name)

    wrong = instance(bad, "wrong")
    ingest_folded(wrong, "refused", ["main;r 1"])
    m = wait_for_metric(wrong.http_port, lambda m: m.total("spanprof_pyroscope_dropped_total") == 1)
    assert m.total("spanprof_pyroscope_retried_total") == 0
    right = instance(good, "right")
    ingest_folded(right, "welcome", ["main;w 2"])
    profiles = g.wait_profiles(1)
    assert [lbl["service_name"] for lbl, _ in profiles] == ["welcome"]
    rec, = g.records()
    assert rec["authorization"] == "Basic " + base64.b64encode(b"tenant-7:p4ss:word").decode()
    wait_for_metric(right.http_port, lambda m: m.total("spanprof_pyroscope_sent_total") == 1)


def test_push_and_forward_counters_are_exported_from_start(spanprof_factory):
    """With a Pyroscope backend and trace forwarding, a fresh server already exports the hold's
    and the delivery's counters at 0, so a dashboard's rate() has the series before the first
    event (nothing listens at the URLs: nothing is sent)."""
    server = spanprof_factory(["--store", "sqlite,pyroscope", "--pyroscope-url",
                               f"http://127.0.0.1:{free_port()}", "--traces-forward-to",
                               f"http://127.0.0.1:{free_port()}/v1/traces"])
    m = scrape(server.http_port)
    for name in ("spanprof_pyroscope_hold_groups", "spanprof_pyroscope_hold_bytes",
                 "spanprof_pyroscope_hold_observations_total",
                 "spanprof_pyroscope_hold_moved_to_outer_span_total",
                 "spanprof_pyroscope_hold_released_early_total",
                 "spanprof_pyroscope_hold_late_groups_total",
                 "spanprof_pyroscope_spans_incomplete_total",
                 "spanprof_pyroscope_hold_delay_milliseconds_sum",
                 "spanprof_pyroscope_hold_delay_milliseconds_count",
                 "spanprof_pyroscope_hold_recovered_files_total",
                 "spanprof_pyroscope_hold_unheld_batches_total",
                 "spanprof_pyroscope_sent_total", "spanprof_pyroscope_dropped_total",
                 "spanprof_traces_forward_sent_total", "spanprof_traces_forward_spans_marked_total"):
        assert m.series(name), f"{name} is not exported by a fresh server"
        assert m.total(name) == 0, name
