"""Configuration from a YAML file (--config, $SPANPROF_CONFIG), SPANPROF_* variables and flags, as
an operator sees it: the ports the server listens on, the data dir it creates, the retention,
durability and tenancy it reports at start-up and enforces, and start-up refused (exit 2) with a
message naming the file, the line and the key, or the variable.

Precedence, highest first: flag, environment variable, config file, default."""

import os
import signal
import subprocess
import time

import pytest

from conftest import free_port, sanitizer_report, spanprof_bin
from e2e_helpers import http_request

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def clean_env(**extra):
    """The test's environment without any SPANPROF_* variable (the harness's own included), plus
    extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANPROF_")}
    env.update(extra)
    return env


class Server:
    def __init__(self, proc, err_path, http_port, grpc_port):
        self.proc, self.err_path = proc, err_path
        self.http_port, self.grpc_port = http_port, grpc_port

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        assert rc == 0, f"spanprof exited {rc} after SIGTERM:\n{self.stderr()[-4000:]}"
        report = sanitizer_report(self.stderr())
        assert not report, report


@pytest.fixture
def start(tmp_path):
    """start(make) runs spanprof with make(http_port, grpc_port) -> (args, env) and waits for
    GET /ready 200 on http_port; retried with new ports when one was taken meanwhile."""
    servers = []

    def run(make, name="server"):
        for attempt in range(3):
            http_port, grpc_port = free_port(), free_port()
            while grpc_port == http_port:
                grpc_port = free_port()
            args, env = make(http_port, grpc_port)
            err_path = tmp_path / f"{name}.{attempt}.stderr"
            with open(err_path, "wb") as err:
                proc = subprocess.Popen([str(spanprof_bin()), *args], stdout=subprocess.DEVNULL,
                                        stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
            s = Server(proc, err_path, http_port, grpc_port)
            deadline = time.monotonic() + float(os.environ.get("SPANPROF_READY_TIMEOUT", "20"))
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if http_request(http_port, "GET", "/ready", timeout=2)[0] == 200:
                        servers.append(s)
                        return s
                except OSError:
                    pass
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                pytest.fail(f"not ready in time; args {args}\n{s.stderr()[-4000:]}")
            if "in use" in s.stderr().lower() and attempt < 2:
                continue
            pytest.fail(f"spanprof exited {proc.returncode} before it was ready; args {args}\n"
                        f"{s.stderr()[-4000:]}")

    yield run
    for s in servers:
        s.stop()


def run_refused(args, env, cwd):
    r = subprocess.run([str(spanprof_bin()), *args], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    assert r.returncode == 2, f"exit {r.returncode} (expected 2); stderr:\n{r.stderr}"
    return r.stderr


def tenantless_render_status(port):
    return http_request(port, "GET", f"/render?query={CPU}%7B%7D&from=now-1h&until=now")[0]


def test_yaml_file_sets_ports_data_dir_retention_and_tenancy(start, tmp_path):
    data = tmp_path / "from-file" / "data"
    cfg = tmp_path / "spanprof.yaml"

    def make(http_port, grpc_port):
        cfg.write_text(f"""# spanprof settings: keys are the flag names
http-addr: "127.0.0.1:{http_port}"
grpc_addr: 127.0.0.1:{grpc_port}      # underscores work too
data:
  dir: {data}                        # nested maps join their keys with -
retention: 72h
durability: full
multitenancy-required: true
max-recv-msg-size: 8MiB
""")
        return ["--config", str(cfg)], clean_env()

    s = start(make)
    assert http_request(s.grpc_port, "GET", "/ready")[0] == 200, "not listening on the file's grpc-addr"
    assert (data / "spanprof.db").is_file(), f"the file's data dir was not created: {list(tmp_path.rglob('*'))}"
    err = s.stderr()
    assert "retention_h=72" in err and "durability=full" in err, err
    assert "multitenancy_required=1" in err, err
    # the boolean from the file is enforced: a request without X-Scope-OrgID is refused
    assert tenantless_render_status(s.http_port) == 401


def test_environment_variables_set_every_kind_of_setting(start, tmp_path):
    data = tmp_path / "from-env"

    def make(http_port, grpc_port):
        return [], clean_env(SPANPROF_HTTP_ADDR=f"127.0.0.1:{http_port}",
                             SPANPROF_GRPC_ADDR=f"127.0.0.1:{grpc_port}",
                             SPANPROF_DATA_DIR=str(data), SPANPROF_RETENTION="48h",
                             SPANPROF_MULTITENANCY_REQUIRED="true", SPANPROF_WORKERS="3",
                             SPANPROF_MAX_RECV_MSG_SIZE="4MiB")

    s = start(make)
    assert http_request(s.grpc_port, "GET", "/ready")[0] == 200
    assert (data / "spanprof.db").is_file()
    err = s.stderr()
    assert "retention_h=48" in err and "durability=normal" in err, err
    assert tenantless_render_status(s.http_port) == 401


def test_config_file_named_by_SPANPROF_CONFIG(start, tmp_path):
    data = tmp_path / "named-by-env"
    cfg = tmp_path / "conf.yaml"

    def make(http_port, grpc_port):
        cfg.write_text(f"http-addr: 127.0.0.1:{http_port}\ngrpc-addr: 127.0.0.1:{grpc_port}\n"
                       f"data-dir: {data}\nretention: 24h\n")
        return [], clean_env(SPANPROF_CONFIG=str(cfg))

    s = start(make)
    assert (data / "spanprof.db").is_file()
    assert "retention_h=24" in s.stderr()


def test_flags_beat_environment_beat_file_beat_defaults(start, tmp_path):
    """Each setting is given at a different number of levels; the highest one wins."""
    file_data, env_data = tmp_path / "file-data", tmp_path / "env-data"
    cfg = tmp_path / "spanprof.yaml"

    def make(http_port, grpc_port):
        unused = free_port()
        cfg.write_text(f"""http-addr: 127.0.0.1:{http_port}   # only here: the file's
grpc-addr: 127.0.0.1:{unused}        # here and as a flag: the flag's
data-dir: {file_data}                # here and in the environment: the environment's
retention: 72h                       # here, in the environment and as a flag: the flag's
durability: full                     # only here
multitenancy-required: true          # here, turned off by a flag
""")
        env = clean_env(SPANPROF_DATA_DIR=str(env_data), SPANPROF_RETENTION="48h")
        return ["--config", str(cfg), "--grpc-addr", f"127.0.0.1:{grpc_port}", "--retention=12h",
                "--multitenancy-required=false"], env

    s = start(make)
    assert http_request(s.grpc_port, "GET", "/ready")[0] == 200, "not listening on the flag's grpc-addr"
    assert (env_data / "spanprof.db").is_file(), "the environment's data dir was not used"
    assert not file_data.exists(), "the file's data dir was created although the environment overrides it"
    err = s.stderr()
    assert "retention_h=12" in err, f"the flag's retention did not win:\n{err}"
    assert "durability=full" in err, err
    assert "multitenancy_required=0" in err, err
    assert tenantless_render_status(s.http_port) == 200


@pytest.mark.parametrize("yaml,where,key", [
    ("workers: 2\n# a typo follows\nwrkers: 3\n", ":3:1:", "unknown key \"wrkers\""),
    ("retention: soon\n", ":1:12:", "key \"retention\": \"soon\" is not a duration"),
    ("max-recv-msg-size: lots\n", ":1:20:", "key \"max-recv-msg-size\""),
    ("http-addr:\n  host: 127.0.0.1\n", ":2:3:", "key \"http-addr\" takes one value, not a map"),
    ("data-dir: a\ndata_dir: b\n", ":2:1:", "key \"data_dir\" is set twice (first on line 1)"),
    ("workers: 2\nretention: 1h: 2h\n", ":2:14:", "after key \"retention\""),
    ("multitenancy-required: perhaps\n", ":1:24:", "key \"multitenancy-required\""),
    ("durability: sometimes\n", ":1", "--durability must be normal or full"),
])
def test_bad_file_stops_start_up_naming_file_line_and_key(tmp_path, yaml, where, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml)
    err = run_refused(["--config", str(cfg), "--data-dir", str(tmp_path / "d"),
                       "--http-addr", f"127.0.0.1:{free_port()}", "--grpc-addr", f"127.0.0.1:{free_port()}"],
                      clean_env(), tmp_path)
    assert f"{cfg}{where}" in err, f"stderr does not name {cfg}{where}:\n{err}"
    assert key in err, f"stderr does not say {key!r}:\n{err}"
    assert not (tmp_path / "d").exists(), "the data dir was created although start-up was refused"


def test_missing_oversized_and_directory_files_stop_start_up(tmp_path):
    missing = tmp_path / "nope.yaml"
    err = run_refused(["--config", str(missing)], clean_env(), tmp_path)
    assert str(missing) in err and "No such file" in err, err
    err = run_refused([], clean_env(SPANPROF_CONFIG=str(missing)), tmp_path)
    assert str(missing) in err and "SPANPROF_CONFIG" in err, err
    big = tmp_path / "big.yaml"
    big.write_text("#" * (1 << 20) + "\nworkers: 2\n")
    err = run_refused(["--config", str(big)], clean_env(), tmp_path)
    assert str(big) in err and "larger than" in err, err
    err = run_refused(["--config", str(tmp_path)], clean_env(), tmp_path)
    assert str(tmp_path) in err and "directory" in err, err


@pytest.mark.parametrize("var,value,says", [
    ("SPANPROF_WORKERS", "many", "not a positive integer"),
    ("SPANPROF_RETENTION", "soon", "not a duration"),
    ("SPANPROF_MULTITENANCY_REQUIRED", "perhaps", "not true or false"),
    ("SPANPROF_STORE", "bogus", "--store must be"),
])
def test_bad_environment_value_stops_start_up_naming_the_variable(tmp_path, var, value, says):
    err = run_refused(["--data-dir", str(tmp_path / "d")], clean_env(**{var: value}), tmp_path)
    assert var in err and says in err, err


def test_secret_put_under_an_unknown_key_is_not_echoed(tmp_path):
    cfg = tmp_path / "spanprof.yaml"
    cfg.write_text("query-auth-token: hunter2-very-secret\n")
    err = run_refused(["--config", str(cfg)], clean_env(), tmp_path)
    assert "unknown key \"query-auth-token\"" in err and f"{cfg}:1:1:" in err, err
    assert "hunter2" not in err, err


def test_help_documents_precedence_and_every_variable(tmp_path):
    # a broken file named in the environment does not hide --help
    r = subprocess.run([str(spanprof_bin()), "--help"], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL, env=clean_env(SPANPROF_CONFIG=str(tmp_path / "nope.yaml")))
    assert r.returncode == 0, r.stderr
    assert "Precedence" in r.stdout and "SPANPROF_CONFIG" in r.stdout, r.stdout
    lines = [ln for ln in r.stdout.splitlines()
             if ln.startswith("  --") and not ln.startswith(("  --help", "  --version"))]
    assert len(lines) >= 45, r.stdout
    for ln in lines:
        name = ln.split()[0][2:]
        var = "SPANPROF_" + name.upper().replace("-", "_")
        assert f"${var})" in ln and "(default " in ln, f"--help line lacks its default or ${var}: {ln}"
