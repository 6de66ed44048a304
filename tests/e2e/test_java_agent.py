"""The real Pyroscope Java agent (io.pyroscope:agent 2.9.2 from Maven Central, fetched by
scripts/install-deps.sh) on OpenJDK 17, profiling tests/data/jfr/Hot.java, whose `burner` thread
spends its time in Hot.fib. Both of the agent's formats, with its default settings apart from a
2 s upload interval: JFR (multipart /ingest, the default) and OTLP (PYROSCOPE_FORMAT=otlp, which
writes each sample's one value unpacked). The flame graph must have Hot.fib on top."""
import os
import shutil
import subprocess
import time

import pytest

from test_query import CPU, Window, connect_json, flamegraph_stacks

HERE = os.path.dirname(os.path.abspath(__file__))
JAR = os.environ.get("SPANPROF_PYROSCOPE_AGENT", os.path.expanduser(
    "~/.m2/repository/io/pyroscope/agent/2.9.2/agent-2.9.2.jar"))
JAVA, JAVAC = shutil.which("java"), shutil.which("javac")

pytestmark = pytest.mark.skipif(not (JAVA and JAVAC and os.path.exists(JAR)),
                                reason="java or the Pyroscope agent jar is missing "
                                       "(scripts/install-deps.sh fetches it)")


@pytest.fixture(scope="module")
def hot_classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("hot")
    subprocess.run([JAVAC, "-d", str(out), os.path.join(HERE, "..", "data", "jfr", "Hot.java")],
                   check=True, timeout=120)
    return str(out)


def run_agent(server, classes, env):
    r = subprocess.run([JAVA, f"-javaagent:{JAR}", "-cp", classes, "Hot", "5"],
                       env={**os.environ, "PYROSCOPE_SERVER_ADDRESS": f"http://{server.http_target}",
                            "PYROSCOPE_UPLOAD_INTERVAL": "2s", **env},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def leaves(server, t0, service):
    body = Window(t0).json(profileTypeID=CPU, labelSelector=f'{{service_name="{service}"}}')
    out = {}
    fg = connect_json(server, "SelectMergeStacktraces", body)["flamegraph"]
    for stack, v in flamegraph_stacks(fg).items():
        out[stack[-1]] = out.get(stack[-1], 0) + v
    return out


@pytest.mark.parametrize("fmt,service", [("jfr", "java-agent-e2e"), ("otlp", "unknown_service")])
def test_the_java_agent_in_both_formats(spanprof, hot_classes, fmt, service):
    t0 = time.time_ns()
    run_agent(spanprof, hot_classes, {"PYROSCOPE_APPLICATION_NAME": "java-agent-e2e",
                                      "PYROSCOPE_FORMAT": fmt})
    got = {}
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = leaves(spanprof, t0, service)
        time.sleep(0.2)
    assert got, f"nothing stored from the agent's {fmt} uploads"
    top = max(got, key=got.get)
    assert top.endswith("Hot.fib"), (top, sorted(got.items(), key=lambda kv: -kv[1])[:5])
    assert "request refused" not in spanprof.stderr()


M2 = os.path.expanduser("~/.m2/repository")
OTEL_AGENT = os.path.join(M2, "io/opentelemetry/javaagent/opentelemetry-javaagent/2.10.0/"
                              "opentelemetry-javaagent-2.10.0.jar")
PYROSCOPE_OTEL = os.path.join(M2, "io/pyroscope/otel/1.0.2/otel-1.0.2.jar")
OTEL_API = [os.path.join(M2, f"io/opentelemetry/{a}/1.44.1/{a}-1.44.1.jar")
            for a in ("opentelemetry-api", "opentelemetry-context")]


@pytest.mark.skipif(not all(os.path.exists(p) for p in [OTEL_AGENT, PYROSCOPE_OTEL, *OTEL_API]),
                    reason="the OpenTelemetry Java agent or io.pyroscope:otel is missing "
                           "(scripts/install-deps.sh fetches them)")
def test_a_spans_profile_from_the_opentelemetry_agent_with_pyroscope_otel(spanprof, tmp_path):
    """The OpenTelemetry Java agent exports the spans (OTLP/HTTP to spanprof), its io.pyroscope:otel
    extension starts the profiler and labels its samples with the span: each 300 ms span's own
    flame graph is Traced.fib, found with Grafana's query shape."""
    cp = os.pathsep.join(OTEL_API)
    subprocess.run([JAVAC, "-cp", cp, "-d", str(tmp_path),
                    os.path.join(HERE, "..", "data", "java", "Traced.java")], check=True, timeout=120)
    t0 = time.time_ns()
    base = f"http://{spanprof.http_target}"
    r = subprocess.run([JAVA, f"-javaagent:{OTEL_AGENT}", f"-Dotel.javaagent.extensions={PYROSCOPE_OTEL}",
                        "-cp", cp + os.pathsep + str(tmp_path), "Traced", "6"],
                       env={**os.environ, "OTEL_SERVICE_NAME": "java-otel",
                            "OTEL_EXPORTER_OTLP_ENDPOINT": base,
                            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                            "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
                            "OTEL_BSP_SCHEDULE_DELAY": "500",
                            "OTEL_PYROSCOPE_START_PROFILING": "true",
                            "PYROSCOPE_APPLICATION_NAME": "java-otel",
                            "PYROSCOPE_SERVER_ADDRESS": base, "PYROSCOPE_UPLOAD_INTERVAL": "2s"},
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    spans = [l.split()[1] for l in r.stdout.splitlines() if l.startswith("span ")]
    assert len(spans) >= 10
    w = Window(t0)
    found = 0
    for span in spans[2:-2]:  # whole uploads on both sides
        body = w.json(profileTypeID=CPU, labelSelector='{service_name="java-otel"}',
                      spanSelector=[span])
        got = {}
        fg = connect_json(spanprof, "SelectMergeSpanProfile", body).get("flamegraph", {})
        for stack, v in flamegraph_stacks(fg).items():
            got[stack[-1]] = got.get(stack[-1], 0) + v
        if got:
            found += 1
            assert max(got, key=got.get).endswith("Traced.fib"), (span, got)
            # itimer counts process CPU (JIT, GC) on the running thread: allow a margin
            assert sum(got.values()) <= 2 * 300 * 10**6, (span, got)
    assert found >= len(spans[2:-2]) // 2, f"{found} of {len(spans) - 4} spans have a profile"
