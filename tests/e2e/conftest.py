"""Fixtures that run the real spanprof binary.

`spanprof` starts a server with default flags on free loopback ports; `spanprof_factory` starts
servers with extra flags (TLS, limits). Every server gets its own data dir under the test's tmp
dir, is waited for through GET /ready, and on teardown gets SIGTERM and must exit 0 within a
timeout with no sanitizer report on stderr: a crash, a hang on shutdown or an ASan/UBSan finding
fails the test that caused it.

Environment: SPANPROF_BIN (default <repo>/build/spanprof), SPANPROF_READY_TIMEOUT (seconds,
default 20), SPANPROF_STOP_TIMEOUT (seconds, default 20).
"""

import os
import signal
import socket
import ssl
import subprocess
import time
import http.client
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
)


def spanprof_bin():
    return Path(os.environ.get("SPANPROF_BIN", REPO / "build" / "spanprof"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            return text[max(0, i - 200):i + 6000]
    return None


class Spanprof:
    """One running spanprof process."""

    def __init__(self, workdir, extra_args=(), tls=None, client_cert=None, ports=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.extra_args = list(extra_args)
        self.tls = tls  # dict(cert=, key=, ca=, client_ca=) or None
        self.client_cert = client_cert  # (cert, key) used by the /ready probe for mTLS
        self.proc = None
        self.stopped = False
        self.returncode = None
        self.http_port = self.grpc_port = None
        self.fixed_ports = ports  # (http, grpc) to reuse given ports instead of fresh ones

    # -- lifecycle ---------------------------------------------------------------------------

    def argv(self):
        args = [str(spanprof_bin()), "--data-dir", str(self.data_dir),
                "--http-addr", f"127.0.0.1:{self.http_port}",
                "--grpc-addr", f"127.0.0.1:{self.grpc_port}"]
        if self.tls:
            args += ["--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"])]
            if self.tls.get("client_ca"):
                args += ["--tls-client-ca", str(self.tls["client_ca"])]
        return args + self.extra_args

    def start(self):
        binary = spanprof_bin()
        if not binary.exists():
            pytest.fail(f"spanprof binary not found at {binary} (build it, or set SPANPROF_BIN)")
        # A port picked by binding to 0 can be taken by someone else before the server binds it:
        # retry with new ports when the server says so.
        for attempt in range(3):
            if self.fixed_ports:
                self.http_port, self.grpc_port = self.fixed_ports
            else:
                self.http_port, self.grpc_port = free_port(), free_port()
                while self.grpc_port == self.http_port:
                    self.grpc_port = free_port()
            self.stdout_path = self.workdir / f"stdout.{attempt}.log"
            self.stderr_path = self.workdir / f"stderr.{attempt}.log"
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             cwd=self.workdir)
            if self._wait_ready():
                return self
            rc = self.proc.poll()
            if rc is not None and "in use" in self.stderr().lower() and attempt < 2 and not self.fixed_ports:
                continue
            if rc is None:
                self.proc.kill()
                self.proc.wait()
                self.stopped = True
                pytest.fail(f"spanprof did not answer GET /ready 200 within {self.ready_timeout()} s\n"
                            f"argv: {self.argv()}\nstderr:\n{self.stderr()[-8000:]}")
            self.stopped = True
            pytest.fail(f"spanprof exited with {rc} before it was ready\nargv: {self.argv()}\n"
                        f"stderr:\n{self.stderr()[-8000:]}")
        raise AssertionError("unreachable")

    @staticmethod
    def ready_timeout():
        return float(os.environ.get("SPANPROF_READY_TIMEOUT", "20"))

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.ready_status() == 200:
                    return True
            except (OSError, http.client.HTTPException, ssl.SSLError):
                pass
            time.sleep(0.05)
        return False

    def ssl_context(self, alpn=("http/1.1",), with_client_cert=True):
        ctx = ssl.create_default_context(cafile=str(self.tls["ca"]))
        ctx.set_alpn_protocols(list(alpn))
        if with_client_cert and self.client_cert:
            ctx.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return ctx

    def ready_status(self, port=None, timeout=2.0):
        port = port or self.http_port
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=self.ssl_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", "/ready")
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        """Signals the server and waits for it; returns its exit code (SIGKILL after a timeout)."""
        if self.stopped:
            return self.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        timeout = float(os.environ.get("SPANPROF_STOP_TIMEOUT", "20"))
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.returncode = "hung"
        return self.returncode

    # -- addresses ---------------------------------------------------------------------------

    @property
    def grpc_target(self):
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_target(self):
        return f"127.0.0.1:{self.http_port}"

    def ports(self):
        return (self.http_port, self.grpc_port)


def check_clean_exit(server, expect_signal_name="SIGTERM"):
    """Raises with the server's stderr when it crashed, hung or reported a sanitizer finding."""
    rc = server.stop()
    err = server.stderr()
    problems = []
    if rc == "hung":
        problems.append(f"spanprof did not exit within the stop timeout after {expect_signal_name} (killed)")
    elif rc != 0:
        how = f"signal {signal.Signals(-rc).name}" if isinstance(rc, int) and rc < 0 else f"code {rc}"
        problems.append(f"spanprof exited with {how} after {expect_signal_name}, expected 0")
    report = sanitizer_report(err)
    if report:
        problems.append(f"sanitizer report on stderr:\n{report}")
    if problems:
        pytest.fail("\n".join(problems) + f"\n--- spanprof stderr (tail) ---\n{err[-8000:]}", pytrace=False)


@pytest.fixture
def spanprof_factory(tmp_path, request):
    servers = []

    def make(extra_args=(), tls=None, client_cert=None, name=None, ports=None):
        s = Spanprof(tmp_path / (name or f"server{len(servers)}"), extra_args, tls, client_cert, ports)
        servers.append(s)
        request.node.stash.setdefault(_SERVERS_KEY, []).append(s)
        return s.start()

    yield make
    failures = []
    for s in servers:
        try:
            check_clean_exit(s)
        except pytest.fail.Exception as e:  # keep stopping the other servers first
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def spanprof(spanprof_factory):
    return spanprof_factory()


_SERVERS_KEY = pytest.StashKey[list]()

# A hung server (or a client loop waiting on one) must fail its test, not stall the suite: every
# test body gets a wall-clock limit enforced with SIGALRM (pytest-timeout's signal method, in brief).
TEST_TIMEOUT = float(os.environ.get("SPANPROF_TEST_TIMEOUT", "120"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        pytest.fail(f"test still running after {TEST_TIMEOUT:.0f} s (SPANPROF_TEST_TIMEOUT)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches each server's stderr to a failing test's report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, s in enumerate(item.stash.get(_SERVERS_KEY, [])):
            rep.sections.append((f"spanprof[{i}] stderr", s.stderr()[-6000:]))


# ---------------------------------------------------------------------------------------------
# Certificates (openssl CLI): a CA, a server cert for 127.0.0.1/localhost, a client cert, and a
# client cert from an unrelated CA.
# ---------------------------------------------------------------------------------------------


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def _make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _make_leaf(d, name, ca, ext):
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    _make_ca(d, "ca")
    _make_ca(d, "rogue-ca")
    _make_leaf(d, "server", "ca",
               "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _make_leaf(d, "client", "ca",
               "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    _make_leaf(d, "rogue-client", "rogue-ca",
               "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    return {
        "dir": d,
        "ca": d / "ca.crt",
        "server_cert": d / "server.crt", "server_key": d / "server.key",
        "client_cert": d / "client.crt", "client_key": d / "client.key",
        "rogue_cert": d / "rogue-client.crt", "rogue_key": d / "rogue-client.key",
    }


# ---------------------------------------------------------------------------------------------
# A server fed with the correlation scenario (tests/e2e/corr_scenario.py), shared by a module's
# query tests: (server, scenario, expected attachments).
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corr_scenario_server(tmp_path_factory):
    import corr_scenario

    scn = corr_scenario.build()
    # The scenario's oracle judges spans without thread.id on arrival (--threadless-settle=0);
    # the settle time has tests of its own (test_threadless_settle.py).
    server = Spanprof(tmp_path_factory.mktemp("corr-scenario"), ["--threadless-settle=0s"])
    server.start()
    try:
        corr_scenario.feed(server.grpc_target, scn)
    except BaseException:
        server.stop()
        raise
    yield server, scn, corr_scenario.expected(scn)
    check_clean_exit(server)


# ---------------------------------------------------------------------------------------------
# Real backends (tests/e2e/backends.py): the Pyroscope stand-in (gopyro) and Jaeger v2, each
# built once per session; gopyro / jaeger start fresh instances (stopped at teardown).
# ---------------------------------------------------------------------------------------------


def _need_go():
    import backends

    if not backends.have_go():
        pytest.skip("Go toolchain not installed")
    return backends


@pytest.fixture(scope="session")
def gopyro_bin(tmp_path_factory):
    backends = _need_go()
    out, _ = backends.go_build(backends.HERE / "gopyro", tmp_path_factory.mktemp("gopyro-bin") / "gopyro")
    return out


@pytest.fixture(scope="session")
def jaeger_bin(tmp_path_factory):
    """Jaeger v2 (cmd/jaeger of github.com/jaegertracing/jaeger v1.75.0, tests/e2e/gojaeger)."""
    backends = _need_go()
    out, secs = backends.go_build(backends.HERE / "gojaeger", tmp_path_factory.mktemp("jaeger-bin") / "jaeger",
                                  "github.com/jaegertracing/jaeger/cmd/jaeger")
    print(f"jaeger built in {secs:.1f} s")
    return out


@pytest.fixture
def gopyro(gopyro_bin, tmp_path):
    """gopyro(args=(), name="gopyro") starts a Pyroscope stand-in; stopped at teardown."""
    import backends

    started = []

    def make(args=(), name="gopyro"):
        g = backends.GoPyro(gopyro_bin, tmp_path / name, args)
        started.append(g)
        return g.start()

    yield make
    for g in started:
        g.stop()


@pytest.fixture
def jaeger(jaeger_bin, tmp_path):
    """A running Jaeger v2 with an in-memory store (backends.Jaeger); stopped at teardown."""
    import backends

    j = backends.Jaeger(jaeger_bin, tmp_path / "jaeger")
    try:
        yield j.start()
    finally:
        j.stop()
