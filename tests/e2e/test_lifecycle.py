"""Moving and keeping data for real: `spanprof admin export` of a time range while the server
ingests, `spanprof admin import` into a fresh data dir, and a server on it answering the range's
flame graph, traces and span profiles exactly as the original did (and nothing outside the
range); `go tool pprof -raw` reads an exported file; damaged exports are refused naming the file
and offset; a second import of the same export is refused. POST /api/v1/admin/backup: an online
copy inside --backup-dir while ingest goes on, admin credentials required, paths outside refused."""

import gzip
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest

import corr_scenario as cs
from conftest import free_port, spanprof_bin
from e2e_helpers import http_request
from test_config_file import Server, clean_env, start  # noqa: F401  (start is a fixture)
from test_ops import addrs, ingest, run

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
OFFCPU = "off_cpu:off_cpu:nanoseconds::"
SEC = 10**9
GO = shutil.which("go") or "/usr/local/go/bin/go"


def get_json(port, path):
    status, _, body = http_request(port, "GET", path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def render(port, service, typ, frm, until):
    q = urllib.parse.quote(f'{typ}{{service_name="{service}"}}')
    return get_json(port, f"/pyroscope/render?query={q}&from={frm}&until={until}&format=json")


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """The correlation scenario in a server, a range of it exported while that server runs and
    imported into a fresh data dir: (original, imported, scenario, cut_s, until_s, export dir)."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    servers = []

    def server(data, extra=()):
        for _ in range(3):
            h, g = free_port(), free_port()
            args = [str(spanprof_bin()), *addrs(h, g, data),
                    "--threadless-settle", "0", *extra]
            err = open(tmp / f"{data.name}.stderr", "wb")
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err,
                                    stdin=subprocess.DEVNULL, env=clean_env())
            s = Server(proc, tmp / f"{data.name}.stderr", h, g)
            for _ in range(400):
                try:
                    if http_request(h, "GET", "/ready", timeout=2)[0] == 200:
                        servers.append(s)
                        return s
                except OSError:
                    pass
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            proc.kill()
            proc.wait()
        pytest.fail(f"server on {data} did not start: {s.stderr()[-2000:]}")

    scn = cs.build()
    src = tmp / "src"
    orig = server(src)
    cs.feed(f"127.0.0.1:{orig.grpc_port}", scn, pause=0)
    cut_s = scn.t0 // SEC + 5  # inside the scenario (its spans start in its first 20 s)
    until_s = (time.time_ns() // SEC // 10 + 360) * 10
    out = tmp / "export"
    r = run("admin", "export", "--data-dir", str(src), "--from", str(cut_s), "--until",
            str(until_s), "--out", str(out))  # while the server runs
    assert r.returncode == 0, r.stderr
    dst = tmp / "dst"
    r = run("admin", "import", str(out), "--data-dir", str(dst))
    assert r.returncode == 0 and "imported export" in r.stdout, (r.stdout, r.stderr)
    imported = server(dst)
    yield orig, imported, scn, cut_s, until_s, out, dst
    for s in servers:
        s.stop()


def test_imported_range_has_the_same_flame_graphs(moved):
    orig, imp, scn, cut_s, until_s, _, _ = moved
    services = sorted({s.resource.attrs.get("service.name") for s in scn.spans} - {None})
    compared = 0
    first = cut_s // 10 * 10 + 10  # the first bucket the export holds (buckets starting >= cut)
    for svc in services:
        for typ in (CPU, OFFCPU):
            a = render(orig.http_port, svc, typ, first, until_s)
            b = render(imp.http_port, svc, typ, first, until_s)
            assert a["flamebearer"] == b["flamebearer"], (svc, typ)
            compared += a["flamebearer"]["numTicks"] > 0
            # before the range: the original has data there, the import none
            before = render(imp.http_port, svc, typ, scn.t0 // SEC - 60, first - 1)
            assert before["flamebearer"]["numTicks"] == 0, (svc, typ)
    assert compared >= 1, "the range holds flame graphs to compare"
    assert render(orig.http_port, services[0], CPU, scn.t0 // SEC, cut_s - 1)["flamebearer"][
        "numTicks"] > 0, "the cut leaves data out of the export"


def test_imported_traces_and_span_profiles_are_the_same(moved):
    orig, imp, scn, cut_s, _, _, _ = moved
    traces = {}
    for s in scn.spans:
        if s.received:
            traces.setdefault(s.trace_id.hex(), []).append(s)
    inside = [t for t, spans in traces.items() if all(s.start >= cut_s * SEC for s in spans)]
    outside = [t for t, spans in traces.items() if all(s.start < cut_s * SEC for s in spans)]
    assert inside and outside, (len(inside), len(outside))
    with_values = 0
    for t in inside:
        a = get_json(orig.http_port, f"/api/v1/traces/{t}")
        b = get_json(imp.http_port, f"/api/v1/traces/{t}")
        assert a == b, t
        for span in a["spans"]:
            sid = span["span_id"]
            pa = http_request(orig.http_port, "GET", f"/api/v1/spans/{sid}/profile?format=folded")
            pb = http_request(imp.http_port, "GET", f"/api/v1/spans/{sid}/profile?format=folded")
            assert (pa[0], pa[2]) == (pb[0], pb[2]), sid
            with_values += bool(pa[2].strip())
    assert with_values >= 3, "spans with attached stacks were compared"
    for t in outside[:5]:
        status, _, _ = http_request(imp.http_port, "GET", f"/api/v1/traces/{t}")
        assert status == 404, t


def test_go_tool_pprof_reads_an_exported_file(moved):
    out = moved[5]
    files = sorted(out.glob("tenants/*/profiles/*/*.pb.gz"))
    span_files = sorted(out.glob("tenants/*/span-profiles/*/*.pb.gz"))
    assert files and span_files
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "spanprof-export" and manifest["version"] == 1, manifest
    assert sum(t["profiles"] for t in manifest["tenants"]) == len(files)
    for f in (files[0], span_files[0]):
        r = subprocess.run([GO, "tool", "pprof", "-raw", str(f)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "GOFLAGS": "",
                                             "HOME": os.environ.get("HOME", "/tmp")})
        assert r.returncode == 0 and "Samples:" in r.stdout, r.stderr
    r = subprocess.run([GO, "tool", "pprof", "-raw", str(span_files[0])], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "GOFLAGS": ""})
    assert "span_id:[" in r.stdout, r.stdout[:2000]


def test_a_second_import_of_the_same_export_is_refused(moved):
    _, _, _, _, _, out, _ = moved
    fresh = out.parent / "second"
    r = run("admin", "import", str(out), "--data-dir", str(fresh))
    assert r.returncode == 0, r.stderr
    r = run("admin", "import", str(out), "--data-dir", str(fresh))
    assert r.returncode == 1 and "imported into" in r.stderr and "twice" in r.stderr, r.stderr
    # importing while a server runs there is refused: the data dir's lock
    r = run("admin", "import", str(out), "--data-dir", str(moved[6]))
    assert r.returncode == 1 and "stop the server first" in r.stderr, r.stderr


def copy_export(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_damaged_exports_are_refused_naming_the_file_and_offset(moved, tmp_path):
    out = moved[5]
    # a manifest cut short: JSON error with line, column and byte
    bad = copy_export(out, tmp_path / "m")
    text = (bad / "manifest.json").read_text()
    (bad / "manifest.json").write_text(text[: len(text) // 2])
    r = run("admin", "import", str(bad), "--data-dir", str(tmp_path / "d1"))
    assert r.returncode == 1 and "manifest.json" in r.stderr and "byte" in r.stderr, r.stderr
    assert not (tmp_path / "d1").exists(), "nothing is created for a damaged export"

    # a pprof file whose gzip stream is cut short
    bad = copy_export(out, tmp_path / "p")
    f = sorted(bad.glob("tenants/*/profiles/*/*.pb.gz"))[0]
    f.write_bytes(f.read_bytes()[:-12])
    r = run("admin", "import", str(bad), "--data-dir", str(tmp_path / "d2"))
    assert r.returncode == 1 and f.name in r.stderr and "byte" in r.stderr, r.stderr

    # gzip fine, pprof inside broken (a length running past the end)
    bad = copy_export(out, tmp_path / "q")
    f = sorted(bad.glob("tenants/*/span-profiles/*/*.pb.gz"))[0]
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw + b"\x12\x40\x01"))
    r = run("admin", "import", str(bad), "--data-dir", str(tmp_path / "d3"))
    assert r.returncode == 1 and f.name in r.stderr and "offset" in r.stderr, r.stderr

    # a span line with a short id: file, line and byte offset
    bad = copy_export(out, tmp_path / "s")
    spans = sorted(bad.glob("tenants/*/spans.jsonl"))[0]
    lines = spans.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"span_id":"', '"span_id":"0', 1)
    spans.write_text("".join(lines))
    r = run("admin", "import", str(bad), "--data-dir", str(tmp_path / "d4"))
    assert r.returncode == 1 and "spans.jsonl: line 2 (byte " in r.stderr and "span_id" in r.stderr, r.stderr

    # a file missing: the manifest's counts say so
    bad = copy_export(out, tmp_path / "c")
    sorted(bad.glob("tenants/*/profiles/*/*.pb.gz"))[-1].unlink()
    r = run("admin", "import", str(bad), "--data-dir", str(tmp_path / "d5"))
    assert r.returncode == 1 and "the manifest says" in r.stderr, r.stderr

    r = run("admin", "import", str(tmp_path / "nothing"), "--data-dir", str(tmp_path / "d6"))
    assert r.returncode == 1 and "manifest.json" in r.stderr, r.stderr
    r = run("admin", "export", "--from", "now-1h", "--until", "now", "--out", str(out),
            "--data-dir", str(moved[6]))
    assert r.returncode == 1 and "not empty" in r.stderr, r.stderr


# ---- POST /api/v1/admin/backup ----------------------------------------------------------------

def backup(port, to, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return http_request(port, "POST", f"/api/v1/admin/backup?to={urllib.parse.quote(to)}", body=b"",
                        headers=headers)


def test_http_backup_during_ingest_needs_admin_credentials_and_stays_in_its_dir(start, tmp_path):
    data, bdir = tmp_path / "d", tmp_path / "backups"
    bdir.mkdir()
    admin_tok, query_tok = tmp_path / "admin.tok", tmp_path / "query.tok"
    admin_tok.write_text("adm1n-t0ken\n")
    query_tok.write_text("qu3ry-t0ken\n")
    for f in (admin_tok, query_tok):
        f.chmod(0o600)
    s = start(lambda h, g: (addrs(h, g, data) + ["--backup-dir", str(bdir), "--admin-auth-token-file",
                                                 str(admin_tok), "--query-auth-token-file",
                                                 str(query_tok)], clean_env()))
    acked, stop = [], threading.Event()

    def loop():
        i = 0
        while not stop.is_set():
            ingest(s.http_port, service=f"svc-{i}", pid=2000 + i)
            acked.append(i)
            i += 1

    t = threading.Thread(target=loop)
    t.start()
    try:
        while len(acked) < 15:
            time.sleep(0.02)
        # refused: no credential, the query token, a path outside the backup dir
        assert backup(s.http_port, "x.db")[0] == 401
        status, _, body = backup(s.http_port, "x.db", "qu3ry-t0ken")
        assert status == 401 and b"admin" in body, body
        for bad in ("../escape.db", "/tmp/escape.db", "sub/x.db", ".hidden", ""):
            status, _, body = backup(s.http_port, bad, "adm1n-t0ken")
            assert status == 400 and b"--backup-dir" in body, (bad, status, body)
        assert not (tmp_path / "escape.db").exists()
        before = len(acked)
        status, hdrs, body = backup(s.http_port, "b1.db", "adm1n-t0ken")
        during = len(acked)
    finally:
        stop.set()
        t.join()
    assert status == 200 and hdrs["content-type"].startswith("application/json"), (status, body)
    ans = json.loads(body)
    out = bdir / "b1.db"
    assert ans["file"] == "b1.db" and ans["bytes"] == out.stat().st_size and ans["pages"] > 0, ans
    assert during >= before
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(out, restored / "spanprof.db")
    r = run("admin", "check", "--data-dir", str(restored))
    assert r.returncode == 0, (r.stdout, r.stderr)
    import sqlite3
    with sqlite3.connect(f"file:{out}?mode=ro", uri=True) as db:
        services = set()
        for (blob,) in db.execute("SELECT labels FROM series"):
            parts = bytes(blob).split(b"\x00")
            services |= {parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)
                         if parts[i] == b"service_name"}
    assert {f"svc-{i}" for i in range(before)} <= services, (before, sorted(services))
    # never overwritten; counted
    status, _, body = backup(s.http_port, "b1.db", "adm1n-t0ken")
    assert status == 400 and b"exists" in body, body
    _, _, metrics = http_request(s.http_port, "GET", "/metrics")
    assert b"spanprof_admin_backups_total 1" in metrics, metrics[-3000:]
    assert b"spanprof_admin_backup_last_duration_ms" in metrics


def test_admin_requests_fail_closed_without_an_admin_credential(start, tmp_path):
    bdir = tmp_path / "b"
    bdir.mkdir()
    tok = tmp_path / "query.tok"
    tok.write_text("qu3ry-t0ken\n")
    tok.chmod(0o600)
    s = start(lambda h, g: (addrs(h, g, tmp_path / "d") + ["--backup-dir", str(bdir),
                                                           "--query-auth-token-file", str(tok)],
                            clean_env()))
    status, _, body = backup(s.http_port, "x.db", "qu3ry-t0ken")
    assert status == 401 and b"--admin-auth-token-file" in body, body
    assert not list(bdir.iterdir())
    # a server without any credential leaves it open, like every other path; without
    # --backup-dir it says how to turn it on
    s2 = start(lambda h, g: (addrs(h, g, tmp_path / "d2"), clean_env()), name="open")
    status, _, body = backup(s2.http_port, "x.db")
    assert status == 404 and b"--backup-dir" in body, body
