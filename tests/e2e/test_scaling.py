"""Several spanprof instances side by side (examples/scaling/README.md).

Correlation happens in each instance's memory: a process's spans and its CPU samples must reach
the same instance, so the key a load balancer keeps together is the process (in practice the node
it runs on, since the eBPF profiler and the SDK export from there). Two instances on loopback:
routed by process, every span gets its samples; when one process's spans go to one instance and
its samples to the other, the samples stay unattached (stored, counted, but no span profile) and
the span has an empty profile.
"""
import os
import threading
import time

from e2e_helpers import wait_for_metric
from test_correlation import MS, PERIOD, SVC, export_profile, export_spans
from test_query import CPU, Window, connect_json, flamegraph_stacks

SPAN = [("checkout", 0, 300, None)]
INSIDE = [(("main", "checkout", "pay"), [50, 120, 250])]


def span_profile(server, t0, span_id):
    body = Window(t0).json(profileTypeID=CPU, labelSelector=f'{{service_name="{SVC}"}}',
                           spanSelector=[span_id])
    return flamegraph_stacks(connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {}))


def whole_profile(server, t0):
    body = Window(t0).json(profileTypeID=CPU, labelSelector=f'{{service_name="{SVC}"}}')
    return flamegraph_stacks(connect_json(server, "SelectMergeStacktraces", body).get("flamegraph", {}))


def send(server_spans, server_profiles, pid, tid, t0):
    ids = export_spans(server_spans, [(n, t0 + s * MS, t0 + e * MS, p) for n, s, e, p in SPAN],
                       pid, tid)
    export_profile(server_profiles, [(st, [t0 + o * MS for o in offs]) for st, offs in INSIDE],
                   pid, tid)
    return ids["checkout"]


def test_two_instances_keyed_by_process_correlate_each_their_own(spanprof_factory):
    a, b = spanprof_factory(name="a"), spanprof_factory(name="b")
    t0 = time.time_ns() - 30_000 * MS
    tid = threading.get_native_id()
    pid_a, pid_b = os.getpid(), os.getpid() + 1  # two processes, each routed to its instance
    span_a = send(a, a, pid_a, tid, t0)
    span_b = send(b, b, pid_b, tid, t0)
    want = {("main", "checkout", "pay"): 3 * PERIOD}
    assert span_profile(a, t0, span_a) == want
    assert span_profile(b, t0, span_b) == want
    assert span_profile(a, t0, span_b) == {}  # each instance knows only its own processes
    assert span_profile(b, t0, span_a) == {}


def test_spans_and_samples_of_one_process_split_across_instances_stay_unattached(spanprof_factory):
    # A small window so the unattached samples are counted within the test.
    a = spanprof_factory(["--correlation-window", "2s"], name="a")
    b = spanprof_factory(["--correlation-window", "2s"], name="b")
    t0 = time.time_ns() - 30_000 * MS
    span = send(a, b, os.getpid(), threading.get_native_id(), t0)  # spans → a, samples → b
    # The samples are stored (b's flame graph has them) but no span claims them anywhere.
    assert whole_profile(b, t0) == {("main", "checkout", "pay"): 3 * PERIOD}
    assert span_profile(a, t0, span) == {}
    assert span_profile(b, t0, span) == {}
    m = wait_for_metric(b.http_port,
                        lambda m: m.total("spanprof_correlator_samples_unmatched_total") >= 1,
                        timeout=15)
    assert m.total("spanprof_correlator_samples_by_thread_total") == 0
