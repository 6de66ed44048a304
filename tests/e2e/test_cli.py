"""Command line, readiness and shutdown: what an operator sees when starting and stopping spanprof."""

import signal
import subprocess
import time

import pytest

from conftest import check_clean_exit, free_port, spanprof_bin
from e2e_helpers import http_request

FLAGS_WITH_DEFAULTS = {
    "--data-dir": "./data",
    "--http-addr": "0.0.0.0:4040",
    "--grpc-addr": "0.0.0.0:4317",
    "--max-recv-msg-size": "67108864",
}
FLAGS = ["--tls-cert", "--tls-key", "--tls-client-ca", "--queue-size", "--workers", "--log-level",
         *FLAGS_WITH_DEFAULTS]


def run_cli(*args, timeout=20, cwd=None):
    return subprocess.run([str(spanprof_bin()), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def test_help_lists_every_flag_with_its_default_and_exits_0():
    r = run_cli("--help")
    assert r.returncode == 0, f"--help exited {r.returncode}; stderr: {r.stderr}"
    text = r.stdout + r.stderr
    missing = [f for f in FLAGS if f not in text]
    assert not missing, f"--help does not mention {missing}:\n{text}"
    for flag, default in FLAGS_WITH_DEFAULTS.items():
        line = next(ln for ln in text.splitlines() if flag in ln)
        # The default is on the flag's line or the following description lines.
        block = text[text.index(line):text.index(line) + 400]
        assert default in block, f"--help does not show the default {default} for {flag}:\n{text}"


@pytest.mark.parametrize("bad", ["--no-such-flag", "--bogus-flag=1"])
def test_unknown_flag_exits_nonzero_and_names_it(bad):
    r = run_cli(bad)
    assert r.returncode != 0, f"{bad} was accepted (exit 0); stdout: {r.stdout}"
    name = bad.split("=")[0]
    assert name.lstrip("-") in r.stderr, f"stderr does not name the unknown flag {name}:\n{r.stderr}"


def test_flag_missing_its_value_exits_nonzero(tmp_path):
    r = run_cli("--data-dir", str(tmp_path), "--http-addr", timeout=20)
    assert r.returncode != 0, "--http-addr without a value was accepted"
    assert "http-addr" in r.stderr, f"stderr does not name the flag missing a value:\n{r.stderr}"


def test_ready_and_metrics_answer_on_both_ports(spanprof):
    for port in spanprof.ports():
        status, _, _ = http_request(port, "GET", "/ready")
        assert status == 200, f"GET /ready on port {port} answered {status}"
        status, headers, body = http_request(port, "GET", "/metrics")
        assert status == 200, f"GET /metrics on port {port} answered {status}"
        assert headers.get("content-type", "").startswith("text/plain"), headers


def test_sigint_is_a_graceful_shutdown(spanprof):
    rc = spanprof.stop(signal.SIGINT)
    assert rc == 0, f"SIGINT: exit {rc}, expected 0\nstderr:\n{spanprof.stderr()[-4000:]}"


def test_sigterm_after_traffic_exits_0_and_frees_both_ports(spanprof_factory):
    first = spanprof_factory(name="first")
    for port in first.ports():
        assert http_request(port, "GET", "/ready")[0] == 200
    ports = first.ports()
    check_clean_exit(first)
    # The listeners were closed, not leaked: a new server binds the same two ports at once.
    second = spanprof_factory(name="second", ports=ports)
    for port in second.ports():
        assert http_request(port, "GET", "/ready")[0] == 200


def test_creates_missing_data_dir(tmp_path):
    """The default data dir ./data does not exist on a fresh checkout; the server creates it."""
    d = tmp_path / "data-not-yet-made"
    http_port, grpc_port = free_port(), free_port()
    err_path = tmp_path / "err.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([str(spanprof_bin()), "--data-dir", str(d), "--http-addr", f"127.0.0.1:{http_port}",
                                 "--grpc-addr", f"127.0.0.1:{grpc_port}"], stdout=subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = http_request(http_port, "GET", "/ready", timeout=2)[0]
                if status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        assert status == 200, f"not ready with a missing data dir (exit {proc.poll()}):\n{err_path.read_text()}"
        assert d.is_dir()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err_path.read_text()


def test_port_already_in_use_fails_with_a_message(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_cli("--data-dir", str(tmp_path), "--http-addr", f"127.0.0.1:{port}",
                    "--grpc-addr", f"127.0.0.1:{free_port()}", timeout=20)
    assert r.returncode != 0, "started although its HTTP port was taken"
    assert str(port) in r.stderr, f"stderr does not name the busy address:\n{r.stderr}"


@pytest.mark.parametrize("args,flag", [
    (["--log-level", "loud"], "log-level"),
    (["--max-recv-msg-size", "lots"], "max-recv-msg-size"),
    (["--queue-size", "many"], "queue-size"),
    (["--workers", "-3"], "workers"),
    (["--http-addr", "not-an-address"], "not-an-address"),
    (["--correlate-threadless", "maybe"], "correlate-threadless"),
    (["--correlation-window", "soon"], "correlation-window"),
    (["--pyroscope-url", "http://alice:s3cret@pyro:4040"], "pyroscope-url"),
    (["--traces-forward-to", "https://alice:s3cret@tempo:4318"], "traces-forward-to"),
])
def test_invalid_flag_values_exit_nonzero_and_say_which(tmp_path, args, flag):
    base = ["--data-dir", str(tmp_path), "--http-addr", f"127.0.0.1:{free_port()}",
            "--grpc-addr", f"127.0.0.1:{free_port()}"]
    r = run_cli(*base, *args, timeout=20)
    assert r.returncode != 0, f"{args} was accepted"
    assert flag in r.stderr, f"stderr does not name {flag}:\n{r.stderr}"


@pytest.mark.parametrize("level", ["debug", "error"])
def test_log_level_flag_starts(spanprof_factory, level):
    s = spanprof_factory(["--log-level", level, "--workers", "3", "--queue-size", "8"])
    assert http_request(s.http_port, "GET", "/ready")[0] == 200


def test_readme_settings_table_is_the_help():
    """README's table of every setting is what --help says (scripts/settings_table.py makes it):
    a flag added, renamed or given a new default without the README fails here."""
    from conftest import REPO
    helped = run_cli("--help")
    assert helped.returncode == 0
    check = subprocess.run(["python3", str(REPO / "scripts" / "settings_table.py"), "--check",
                            str(REPO / "README.md")], input=helped.stdout, capture_output=True,
                           text=True, timeout=20)
    assert check.returncode == 0, check.stderr
    assert "| `--symbols-dir` | `SPANPROF_SYMBOLS_DIR` |" in (REPO / "README.md").read_text()
