"""The OpenTelemetry Collector's own Go client, as the eBPF profiler uses it.

tests/e2e/goexporter builds profiles with go.opentelemetry.io/collector/pdata/pprofile and exports
them with pprofileotlp's gRPC client (gzip), exactly the path of the eBPF profiler's reporter; the
modules come from the Go module proxy (go.sum pins them). The answer must be a full success and
the flame graph and span profile must hold what the client says it sent.
"""
import os
import shutil
import subprocess
import time

import pytest

from test_query import CPU, Window, connect_json, flamegraph_stacks

GO = shutil.which("go") or "/usr/local/go/bin/go"
HERE = os.path.dirname(os.path.abspath(__file__))
PERIOD = 50_000_000

pytestmark = pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")


@pytest.fixture(scope="module")
def goexporter(tmp_path_factory):
    out = tmp_path_factory.mktemp("goexporter") / "goexporter"
    r = subprocess.run([GO, "build", "-o", str(out), "."], cwd=os.path.join(HERE, "goexporter"),
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert r.returncode == 0, r.stderr
    return str(out)


def test_collector_pdata_grpc_client_exports_profiles(spanprof, goexporter):
    t0 = time.time_ns() - 20 * 10**9
    span, trace = "0a0b0c0d0e0f1011", "00112233445566778899aabbccddeeff"
    r = subprocess.run([goexporter, "-addr", spanprof.grpc_target, "-service", "go-ebpf-like",
                        "-span", span, "-trace", trace, "-t0", str(t0)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "rejected=0" in r.stderr
    sent = [line.split("\t") for line in r.stdout.splitlines()]
    want = {tuple(frames.split(";")): int(obs) * PERIOD for frames, obs, _ in sent}
    linked = {tuple(frames.split(";")): int(obs) * PERIOD for frames, obs, l in sent if l == "1"}
    w = Window(t0)
    sel = '{service_name="go-ebpf-like"}'
    fg = connect_json(spanprof, "SelectMergeStacktraces", w.json(profileTypeID=CPU, labelSelector=sel))
    assert flamegraph_stacks(fg["flamegraph"]) == want
    fg = connect_json(spanprof, "SelectMergeSpanProfile",
                      w.json(profileTypeID=CPU, labelSelector=sel, spanSelector=[span]))
    assert flamegraph_stacks(fg["flamegraph"]) == linked
