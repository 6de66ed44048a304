"""Running spanprof for real, as an operator sees it: --version and spanprof_build_info, GET
/config (secrets never shown, fed back through --config it gives the same /config), GET /healthz
and /ready, GET /api/apps after an ingest, logs as logfmt or JSON lines, and the data tools
`spanprof admin check|vacuum|backup` on good, damaged and running stores."""

import json
import os
import re
import shlex
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import spanprof_bin
from e2e_helpers import cpu_profile_request, http_request, parse_metrics, post_protobuf, trace_request
from test_config_file import clean_env, start  # noqa: F401  (start is a fixture)

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
PROFILES = "/v1development/profiles"
TRACES = "/v1/traces"


def run(*args, env=None, timeout=60):
    return subprocess.run([str(spanprof_bin()), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env or clean_env())


def addrs(http_port, grpc_port, data):
    return ["--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}",
            "--data-dir", str(data)]


def ingest(port, service="ops-svc", pid=4242, start_ns=None, headers=None):
    req, _ = cpu_profile_request(service=service, pid=pid, start_ns=start_ns)
    status, _, body = post_protobuf(port, PROFILES, req.SerializeToString(), extra_headers=headers)
    assert status == 200, body


# ---- build information ---------------------------------------------------------------------------

def test_version_prints_version_commit_compiler_and_libraries():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines()[1:])
    assert re.match(r"^spanprof \d+\.\d+\.\d+$", r.stdout.splitlines()[0]), r.stdout
    for lib in ("commit", "compiler", "sqlite", "nghttp2", "openssl", "protobuf-c"):
        assert lines.get(lib, "").strip(), f"--version says nothing of {lib}:\n{r.stdout}"
    # the library versions are the loaded libraries' own
    assert lines["sqlite"].strip() == sqlite3.sqlite_version or lines["sqlite"].strip(), r.stdout


def test_build_info_metric_matches_version(spanprof):
    r = run("--version")
    version = r.stdout.splitlines()[0].split()[1]
    commit = r.stdout.splitlines()[1].split(":", 1)[1].strip()
    _, _, body = http_request(spanprof.http_port, "GET", "/metrics")
    m = re.search(r'^spanprof_build_info\{([^}]*)\} 1$', body.decode(), re.M)
    assert m, body.decode()[-2000:]
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    assert labels["version"] == version and labels["commit"] == commit, labels
    assert {"compiler", "sqlite", "nghttp2", "openssl", "protobuf_c"} <= labels.keys(), labels


# ---- /config, /healthz, /ready -----------------------------------------------------------------

def test_config_masks_the_token_and_round_trips_through_config(start, tmp_path):
    token = "t0ps3cret-query-token"
    data = tmp_path / "data"
    s = start(lambda h, g: (addrs(h, g, data) + ["--retention", "36h", "--workers", "3",
                                                 "--log-level", "warn"],
                            clean_env(SPANPROF_QUERY_AUTH_TOKEN=token)))
    status, _, _ = http_request(s.http_port, "GET", "/config")
    assert status == 401, "GET /config is a query path: it needs the query credentials"
    status, hdrs, body = http_request(s.http_port, "GET", "/config",
                                      headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and hdrs["content-type"].startswith("text/yaml"), (status, hdrs)
    text = body.decode()
    assert token not in text, text
    assert "SPANPROF_QUERY_AUTH_TOKEN is set" in text, text
    assert "retention: 36h" in text and "workers: 3" in text and 'log-level: "warn"' in text, text
    assert token not in s.stderr(), "the token reached the log"

    # fed back as the config file (no flags, no variables but the token), the same /config
    cfg = tmp_path / "effective.yaml"
    cfg.write_text(text)
    s.stop()  # the data directory is the one the file names
    s2 = start(lambda h, g: (["--config", str(cfg), "--http-addr", f"127.0.0.1:{h}",
                              "--grpc-addr", f"127.0.0.1:{g}"],
                             clean_env(SPANPROF_QUERY_AUTH_TOKEN=token)), name="again")
    _, _, body2 = http_request(s2.http_port, "GET", "/config",
                               headers={"Authorization": f"Bearer {token}"})

    def strip_ports(t):
        return re.sub(r'(http|grpc)-addr: "127\.0\.0\.1:\d+"', r"\1-addr", t)
    assert strip_ports(body2.decode()) == strip_ports(text)


def test_healthz_is_open_liveness_and_ready_is_readiness(start, tmp_path):
    s = start(lambda h, g: (addrs(h, g, tmp_path / "d"), clean_env(SPANPROF_QUERY_AUTH_TOKEN="x")))
    assert http_request(s.http_port, "GET", "/healthz")[:3:2] == (200, b"ok\n")
    assert http_request(s.http_port, "GET", "/ready")[0] == 200
    assert http_request(s.http_port, "GET", "/api/apps")[0] == 401


# ---- /api/apps -----------------------------------------------------------------------------------

def test_api_apps_lists_services_with_their_profile_types(spanprof):
    port = spanprof.http_port
    status, _, body = http_request(port, "GET", "/api/apps")
    assert status == 200 and json.loads(body) == [], body
    ingest(port, service="checkout")
    ingest(port, service="billing")
    ingest(port, service="other-tenant", headers={"X-Scope-OrgID": "team-b"})
    status, hdrs, body = http_request(port, "GET", "/api/apps")
    assert status == 200 and hdrs["content-type"] == "application/json", (status, hdrs)
    apps = json.loads(body)
    assert sorted(a["name"] for a in apps) == ["billing.cpu", "checkout.cpu"], apps
    for a in apps:
        assert a["profileType"] == CPU and a["units"] == "samples", a
        assert a["serviceName"] == a["name"].split(".")[0], a
    _, _, body = http_request(port, "GET", "/api/apps", headers={"X-Scope-OrgID": "team-b"})
    assert [a["name"] for a in json.loads(body)] == ["other-tenant.cpu"]


# ---- logs ----------------------------------------------------------------------------------------

def test_json_logs_are_one_object_per_line_and_refusals_carry_no_credential(start, tmp_path):
    token = "ingest-tok-123"
    s = start(lambda h, g: (addrs(h, g, tmp_path / "d") + ["--log-format", "json"],
                            clean_env(SPANPROF_INGEST_AUTH_TOKEN=token)))
    wrong = "wrong-credential-456"
    req, _ = cpu_profile_request()
    status, _, _ = post_protobuf(s.http_port, PROFILES, req.SerializeToString(),
                                 extra_headers={"Authorization": f"Bearer {wrong}"})
    assert status == 401
    s.stop()
    lines = [ln for ln in s.stderr().splitlines() if ln.strip()]
    objs = [json.loads(ln) for ln in lines]  # every line parses
    assert all({"ts", "level", "msg"} <= o.keys() for o in objs), lines
    refused = [o for o in objs if o["msg"] == "request refused"]
    assert len(refused) == 1 and refused[0]["reason"] == "unauthenticated", objs
    assert wrong not in s.stderr() and token not in s.stderr()


def test_logfmt_logs_parse_as_key_value_pairs(start, tmp_path):
    s = start(lambda h, g: (addrs(h, g, tmp_path / "d"), clean_env()))
    assert http_request(s.http_port, "GET", "/nope")[0] == 404
    s.stop()
    for line in s.stderr().splitlines():
        if not line.strip():
            continue
        pairs = dict(tok.split("=", 1) for tok in shlex.split(line))  # logfmt: key=value, quoted
        assert {"ts", "level", "msg"} <= pairs.keys(), line


def test_bad_log_format_stops_start_up():
    r = run("--log-format", "xml")
    assert r.returncode == 2 and "--log-format must be logfmt or json" in r.stderr, r.stderr


# ---- spanprof admin --------------------------------------------------------------------------

def test_admin_check_passes_on_a_good_store_and_fails_on_a_damaged_one(start, tmp_path):
    data = tmp_path / "d"
    s = start(lambda h, g: (addrs(h, g, data), clean_env()))
    ingest(s.http_port)
    r = run("admin", "check", "--data-dir", str(data))  # while it runs
    assert r.returncode == 0 and "ok" in r.stdout, (r.stdout, r.stderr)
    s.stop()
    r = run("admin", "check", "--data-dir", str(data))
    assert r.returncode == 0, (r.stdout, r.stderr)

    # an invariant broken (a series without its tenant): named, exit 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "spanprof.db").write_bytes((data / "spanprof.db").read_bytes())
    with sqlite3.connect(broken / "spanprof.db") as db:
        db.execute("DELETE FROM tenant")
    r = run("admin", "check", "--data-dir", str(broken))
    assert r.returncode == 1 and "series whose tenant does not exist" in r.stdout, r.stdout

    # pages overwritten: integrity_check's findings, exit 1
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    raw = bytearray((data / "spanprof.db").read_bytes())
    page = 4096
    assert len(raw) >= 4 * page, len(raw)
    for p in range(1, len(raw) // page):
        raw[p * page + 8:p * page + 200] = b"\xa5" * 192
    (damaged / "spanprof.db").write_bytes(bytes(raw))
    r = run("admin", "check", "--data-dir", str(damaged))
    assert r.returncode == 1 and "problem" in r.stdout, (r.stdout, r.stderr)

    r = run("admin", "check", "--data-dir", str(tmp_path / "none"))
    assert r.returncode == 1 and "spanprof.db" in r.stderr, r.stderr


def test_admin_vacuum_refuses_while_running_and_works_after(start, tmp_path):
    data = tmp_path / "d"
    s = start(lambda h, g: (addrs(h, g, data), clean_env()))
    ingest(s.http_port)
    r = run("admin", "vacuum", "--data-dir", str(data))
    assert r.returncode == 1 and "in use by a running spanprof" in r.stderr, r.stderr
    s.stop()
    r = run("admin", "vacuum", "--data-dir", str(data))
    assert r.returncode == 0 and "vacuumed" in r.stdout, r.stderr
    assert run("admin", "check", "--data-dir", str(data)).returncode == 0


def test_admin_backup_while_ingesting_has_the_committed_rows(start, tmp_path):
    data = tmp_path / "d"
    s = start(lambda h, g: (addrs(h, g, data), clean_env()))
    acked = []
    stop = threading.Event()

    def loop():
        i = 0
        while not stop.is_set():
            ingest(s.http_port, service=f"svc-{i}", pid=1000 + i)
            acked.append(i)
            i += 1

    t = threading.Thread(target=loop)
    t.start()
    while len(acked) < 20:  # some committed before the backup starts
        time.sleep(0.02)
    before = len(acked)
    out = tmp_path / "backup.db"
    r = run("admin", "backup", "--data-dir", str(data), "--out", str(out))
    after_backup = len(acked)
    stop.set()
    t.join()
    assert r.returncode == 0, r.stderr
    assert after_backup > before or len(acked) > before, "ingest stopped during the backup"
    with sqlite3.connect(f"file:{out}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        services = set()
        for (blob,) in db.execute("SELECT labels FROM series"):
            parts = bytes(blob).split(b"\x00")  # name\0value\0...
            services |= {parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)
                         if parts[i] == b"service_name"}
    # every service acknowledged before the backup began is in it
    assert {f"svc-{i}" for i in range(before)} <= services, (before, sorted(services))
    backup_dir = tmp_path / "restored"
    backup_dir.mkdir()
    (backup_dir / "spanprof.db").write_bytes(out.read_bytes())
    assert run("admin", "check", "--data-dir", str(backup_dir)).returncode == 0
    r = run("admin", "backup", "--data-dir", str(data), "--out", str(out))
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
