"""Real backends for the end-to-end tests of issue 21: what Grafana would show through a Pyroscope
cluster and a trace store, next to what spanprof knows.

- GoPyro: tests/e2e/gopyro, a Pyroscope stand-in built on Pyroscope's own generated Connect
  handlers (github.com/grafana/pyroscope/api, Apache-2.0) that keeps of each push what a Pyroscope
  cluster keeps (series split by sample labels, one span id per sample, profiles of one series and
  timestamp collapsed as compaction does; its main.go says where each rule is in Pyroscope's
  source). It answers the querier's Connect API, plus GET /debug/profiles and /debug/raw.
- Jaeger: Jaeger v2 (cmd/jaeger, Go module github.com/jaegertracing/jaeger v1.75.0, built from
  tests/e2e/gojaeger's tool directive) with its in-memory store: OTLP/HTTP and gRPC in, the
  query API out (/api/v3/traces/<id>: OTLP JSON).

Both are built once per test session (conftest.py: gopyro_bin, jaeger_bin) with the machine's
Go module and build caches; scripts/prepare-go.sh (run by scripts/test.sh before the suite)
downloads every module and warms the build cache, so a fresh machine pays the cold Jaeger build
(minutes) there rather than inside the suite's time limit.
"""
import http.client
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import free_port

GO = shutil.which("go") or "/usr/local/go/bin/go"
HERE = Path(__file__).resolve().parent
GO_BUILD_TIMEOUT = float(os.environ.get("SPANPROF_GO_BUILD_TIMEOUT", "1800"))


def have_go():
    return os.path.exists(GO)


def go_build(module_dir, out, package="."):
    """`go build -o out package` inside module_dir; returns (out, seconds)."""
    t = time.monotonic()
    r = subprocess.run([GO, "build", "-o", str(out), package], cwd=str(module_dir), capture_output=True,
                       text=True, timeout=GO_BUILD_TIMEOUT, env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert r.returncode == 0, f"go build {package} in {module_dir} failed:\n{r.stderr[-6000:]}"
    return str(out), time.monotonic() - t


def _http(port, method, path, body=None, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class _Proc:
    """A child process with its log in workdir; stop() is SIGTERM then SIGKILL."""

    name = "proc"
    stop_timeout = 10.0

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self.log_path = self.workdir / f"{self.name}.log"

    def _spawn(self, argv):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir)

    def log_text(self, tail=6000):
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


class GoPyro(_Proc):
    """One running gopyro. args: extra flags (-compact=false, -keep last, -dedup-resolution ms)."""

    name = "gopyro"

    def __init__(self, binary, workdir, args=()):
        super().__init__(workdir)
        self.binary, self.args = binary, list(args)
        self.port = None

    def start(self, timeout=10):
        port_file = self.workdir / "port"
        if port_file.exists():
            port_file.unlink()
        self._spawn([self.binary, "-addr", "127.0.0.1:0", "-port-file", str(port_file), *self.args])
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            assert self.proc.poll() is None, f"gopyro exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"gopyro did not start:\n{self.log_text()}"
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def call(self, method, body, tenant=None):
        """querier.v1.QuerierService/<method> over Connect JSON; the decoded answer."""
        headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        status, out = _http(self.port, "POST", f"/querier.v1.QuerierService/{method}",
                            json.dumps(body).encode(), headers)
        assert status == 200, f"gopyro {method} {body}: {status} {out[:500]!r}"
        return json.loads(out)

    def profiles(self):
        """Every stored profile as queries see it (after compaction unless -compact=false)."""
        status, out = _http(self.port, "GET", "/debug/profiles")
        assert status == 200, out[:300]
        return json.loads(out)

    def raw(self):
        """Per tenant, series and timestamp: how many profiles were pushed (before compaction)."""
        status, out = _http(self.port, "GET", "/debug/raw")
        assert status == 200, out[:300]
        return json.loads(out)


JAEGER_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:{query_http}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
      http:
        endpoint: 127.0.0.1:{otlp_http}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
"""


def _anyvalue(v):
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        return int(v["intValue"])
    return v


class Jaeger(_Proc):
    """One running Jaeger v2: OTLP in (otlp_http_url, otlp_grpc_target), memory store, query API."""

    name = "jaeger"
    # After serving queries it takes 10 s to stop on SIGTERM; its store is in memory anyway.
    stop_timeout = 1.0

    def __init__(self, binary, workdir):
        super().__init__(workdir)
        self.binary = binary
        self.ports = {}

    def start(self, timeout=30):
        for attempt in range(3):
            ports = set()
            while len(ports) < 4:
                ports.add(free_port())
            self.ports = dict(zip(("query_http", "query_grpc", "otlp_grpc", "otlp_http"), sorted(ports)))
            cfg = self.workdir / "config.yaml"
            cfg.write_text(JAEGER_CONFIG.format(**self.ports))
            self._spawn([self.binary, "--config", str(cfg)])
            if self._wait_ready(timeout):
                return self
            rc = self.proc.poll()
            self.stop()
            if rc is None or "address already in use" not in self.log_text() or attempt == 2:
                raise AssertionError(f"jaeger did not get ready (exit {rc}):\n{self.log_text()}")
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                q, _ = _http(self.ports["query_http"], "GET", "/api/services", timeout=2)
                o, _ = _http(self.ports["otlp_http"], "POST", "/v1/traces", b"{}",
                             {"Content-Type": "application/json"}, timeout=2)
                if q == 200 and o == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    @property
    def otlp_http_url(self):
        return f"http://127.0.0.1:{self.ports['otlp_http']}/v1/traces"

    @property
    def otlp_grpc_target(self):
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    def services(self):
        status, out = _http(self.ports["query_http"], "GET", "/api/services")
        assert status == 200, out[:300]
        return json.loads(out).get("data") or []

    def trace(self, trace_id_hex, raw=True):
        """The trace as OTLP JSON resourceSpans (raw: as stored, no adjusters, so copies of a
        span sent twice both show), or [] when Jaeger has none."""
        path = f"/api/v3/traces/{trace_id_hex}" + ("?raw_traces=true" if raw else "")
        status, out = _http(self.ports["query_http"], "GET", path)
        if status == 404:
            return []
        assert status == 200, f"jaeger {path}: {status} {out[:300]!r}"
        return json.loads(out).get("result", {}).get("resourceSpans", [])

    def spans(self, trace_id_hex, raw=True):
        """[{trace_id, span_id, parent_id, name, service, resource, attributes}] of the trace,
        ids in lowercase hex, attribute values decoded."""
        out = []
        for rs in self.trace(trace_id_hex, raw):
            res = {a["key"]: _anyvalue(a.get("value", {})) for a in rs.get("resource", {}).get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    out.append({
                        "trace_id": sp.get("traceId", "").lower(),
                        "span_id": sp.get("spanId", "").lower(),
                        "parent_id": sp.get("parentSpanId", "").lower(),
                        "name": sp.get("name", ""),
                        "service": res.get("service.name"),
                        "resource": res,
                        "attributes": {a["key"]: _anyvalue(a.get("value", {})) for a in sp.get("attributes", [])},
                    })
        return out
