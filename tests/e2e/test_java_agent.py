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
