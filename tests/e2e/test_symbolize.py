"""Native frames get names (issue 16): spanprof symbolizes the eBPF profiler's native frames at
query time from debug files found by GNU build id, in a --symbols-dir or on debuginfod servers.

The inputs are real: a small C and a small C++ program (tests/data/symbolize/) are compiled here
with gcc/g++ -g -O1 and a build id, their debug info is split off with objcopy --only-keep-debug
and the binaries stripped, as distributions ship them. The debug files are served by Debian's own
debuginfod, or laid out as <dir>/.build-id/xx/yyyy.debug. The profiles are shaped like the
OpenTelemetry eBPF profiler's: native Locations with an ELF virtual address (return address - 1
for callers, as the profiler sends them), a Mapping with the build id attribute, no lines; one
interpreted frame and one native frame the sender already named, which must come back untouched.

The oracles are independent of the server (which reads DWARF with elfutils): binutils. The build
id is read from the ELF note here in Python and checked against `readelf -n`; call sites come from
`objdump -d`; the expected function names (C++ demangled, inlined frames innermost first), files
and lines come from `addr2line -f -i -C -e prog.debug ADDR`. Answers are read back the way users
read them: the flame graph JSON, and the pprof download through Go's own reader (`go tool pprof
-raw`).

Failure modes are played by stand-ins: a closed port, and a socket server that reads the request
and never answers (FakeDebuginfod), alone or beside a build id it serves at once. Flags used:
--symbols-dir, --debuginfod-urls, --symbolize-budget, --symbols-retry, --debuginfod-timeout.
"""

import gzip
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

from conftest import REPO, check_clean_exit, free_port
from e2e_helpers import RPC_TIMEOUT, _Dict, http_request, profiles_stub, scrape, wait_for_metric
from test_golden_pprof import GO
from test_query import (CPU, flamegraph_stacks, pb_fields, pb_int, pb_ints, pb_string)

SRC = REPO / "tests" / "data" / "symbolize"
TOOLS = ("debuginfod", "gcc", "g++", "objcopy", "addr2line", "objdump", "readelf")
MISSING = [t for t in TOOLS if not shutil.which(t)]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (binutils, gcc, "
                                                       "elfutils' debuginfod)")

PERIOD = 1_000_000_000 // 20  # the eBPF profiler's 20 Hz
HEADER = "x-spanprof-unresolved-frames"
ELF_LOOKUPS = "spanprof_symbolizer_elf_lookups_total"
FETCHES = "spanprof_symbolizer_fetches_total"
SPAN = bytes.fromhex("5e1f5e1f5e1f5e1f")
TRACE = bytes.fromhex("0123456789abcdef0123456789abcdef")


# ---------------------------------------------------------------------------------------------
# The programs: compile, split, strip, and ask binutils what every chosen address is
# ---------------------------------------------------------------------------------------------


@dataclass
class Program:
    key: str                # "c" / "cc"
    name: str               # the executable's basename
    sent_path: str          # the path the profiler reports for the mapping
    binary: Path            # stripped, as shipped
    debug: Path             # objcopy --only-keep-debug
    build_id: str           # lowercase hex
    text: tuple             # (vaddr, memsz, file offset) of the executable PT_LOAD
    addrs: dict = field(default_factory=dict)   # frame label -> ELF VA sent as Location.address
    oracle: dict = field(default_factory=dict)  # ELF VA -> [(function, file, line)] innermost first

    def unsymbolized(self, addr):
        return f"native 0x{addr:x} {self.name}"


def run(*argv, cwd=None):
    r = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} failed ({r.returncode}):\n{r.stderr}"
    return r.stdout


def elf_build_id(path):
    """The GNU build id from the ELF file's notes (section .note.gnu.build-id or any SHT_NOTE),
    parsed here byte by byte: ELF64 little-endian only (x86-64/arm64 Linux)."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not ELF64 LE"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    for i in range(shnum):
        sh_type, = struct.unpack_from("<I", data, shoff + i * shentsize + 4)
        offset, size = struct.unpack_from("<QQ", data, shoff + i * shentsize + 0x18)
        if sh_type != 7:  # SHT_NOTE
            continue
        pos = offset
        while pos + 12 <= offset + size:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name = data[pos + 12:pos + 12 + namesz]
            desc_at = pos + 12 + (namesz + 3) // 4 * 4
            if ntype == 3 and name.rstrip(b"\0") == b"GNU":  # NT_GNU_BUILD_ID
                return data[desc_at:desc_at + descsz].hex()
            pos = desc_at + (descsz + 3) // 4 * 4
    raise AssertionError(f"{path}: no GNU build id note")


def readelf_build_id(path):
    m = re.search(r"Build ID:\s*([0-9a-f]+)", run("readelf", "-n", path))
    assert m, f"readelf -n {path} shows no build id"
    return m.group(1)


def text_segment(path):
    """(vaddr, memsz, offset) of the executable PT_LOAD, from `readelf -lW`."""
    for line in run("readelf", "-lW", path).splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in "".join(f[7:-1]):
            return int(f[2], 16), int(f[5], 16), int(f[1], 16)
    raise AssertionError(f"{path}: no executable PT_LOAD")


def disassemble(path):
    """{function (demangled): [(address, mnemonic, operands)]} from `objdump -d -C`."""
    funcs, cur = {}, None
    for line in run("objdump", "-d", "-C", "--no-show-raw-insn", path).splitlines():
        m = re.match(r"^([0-9a-f]+) <(.+)>:$", line)
        if m:
            cur = funcs.setdefault(m.group(2), [])
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def func_addr(funcs, name):
    assert funcs.get(name), f"objdump shows no function {name!r}: {sorted(funcs)[:40]}"
    return funcs[name][0][0]


def call_site(funcs, caller, callee):
    """The address the profiler reports for the frame of `caller` while it is in its call to
    `callee`: the return address (the next instruction) minus 1."""
    target = func_addr(funcs, callee)
    insns = funcs[caller]
    for i, (addr, mnem, ops) in enumerate(insns):
        if mnem.startswith("call") and re.match(rf"^(0x)?{target:x}\b", ops):
            assert i + 1 < len(insns), f"call at the end of {caller}"
            return insns[i + 1][0] - 1
    raise AssertionError(f"no call from {caller} to {callee} in objdump -d: {insns}")


def leaf_pc(funcs, name):
    """A leaf frame's address is the PC itself: the function's second instruction."""
    return funcs[name][1][0]


def addr2line(debug, addrs):
    """binutils' answer for each address: [(function, file, line)], innermost inlined frame first."""
    # addr2line prints one (function, file:line) pair per frame, inlined callers after their
    # callee; -a prints each address first, so we know where each address's frames start.
    tagged = run("addr2line", "-a", "-f", "-i", "-C", "-e", debug, *[f"0x{a:x}" for a in addrs])
    res, cur = {}, None
    lines = tagged.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^0x([0-9a-f]+)$", lines[i])
        if m:
            cur = res.setdefault(int(m.group(1), 16), [])
            i += 1
            continue
        func, loc = lines[i], lines[i + 1]
        loc = re.sub(r"\s*\(discriminator \d+\)$", "", loc)
        path, _, num = loc.rpartition(":")
        assert func != "??" and path != "??" and num.isdigit(), \
            f"addr2line could not resolve an address in {debug}:\n{tagged}"
        cur.append((func, path, int(num)))
        i += 2
    assert set(res) == set(addrs), (res, addrs)
    return res


def build(tmp, key, src, compiler, name):
    """Compiles src (by its absolute path, so DWARF names the file by that path), splits off
    the debug info and strips the binary."""
    full, binary, debug = tmp / f"{name}.full", tmp / name, tmp / f"{name}.debug"
    run(compiler, "-g", "-O1", "-Wl,--build-id", "-o", full, src, cwd=tmp)
    run("objcopy", "--only-keep-debug", full, debug)
    run("objcopy", "--strip-all", f"--add-gnu-debuglink={debug.name}", full, binary, cwd=tmp)
    bid = elf_build_id(binary)
    assert re.fullmatch(r"[0-9a-f]{40}", bid), bid
    # the same id in the stripped binary, its debug file and readelf's view of both
    assert bid == elf_build_id(debug) == readelf_build_id(binary) == readelf_build_id(debug)
    assert "debug_info" not in run("readelf", "-SW", binary), "strip left DWARF in the binary"
    assert ".debug_info" in run("readelf", "-SW", debug)
    p = Program(key=key, name=name, sent_path=f"/opt/symtest/bin/{name}", binary=binary,
                debug=debug, build_id=bid, text=text_segment(binary))
    return p, disassemble(full)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("symbolize-build")
    c, fc = build(tmp, "c", SRC / "symprog.c", "gcc", "symprog")
    c.addrs = {
        "leaf": leaf_pc(fc, "c_leaf_hash"),
        "inl": call_site(fc, "c_checksum", "c_leaf_hash"),  # inside mix_bits, inlined
        "main": call_site(fc, "main", "c_checksum"),
        "sent": leaf_pc(fc, "c_checksum"),  # a native frame the sender already named
    }
    cc, fcc = build(tmp, "cc", SRC / "symprog.cc", "g++", "symprogxx")
    cc.addrs = {
        "leaf": leaf_pc(fcc, "shapes::scale(double, int)"),
        "inl": call_site(fcc, "shapes::Circle::area() const", "shapes::scale(double, int)"),
        "total": call_site(fcc, "shapes::total(shapes::Circle const*, int)",
                           "shapes::Circle::area() const"),
        "main": call_site(fcc, "main", "shapes::total(shapes::Circle const*, int)"),
    }
    for p in (c, cc):
        p.oracle = addr2line(p.debug, sorted(set(p.addrs.values())))
        lo, n, _ = p.text
        assert all(lo <= a < lo + n for a in p.addrs.values()), (p.addrs, p.text)

    # Sanity: the oracle found the functions the sources define, with the inlined one as its own
    # frame. (Every expected answer below is taken from the oracle, never from these names.)
    def names(p, label):
        return [f for f, _, _ in p.oracle[p.addrs[label]]]
    assert names(c, "leaf") == ["c_leaf_hash"]
    assert names(c, "inl") == ["mix_bits", "c_checksum"]
    assert names(c, "main") == ["main"]
    assert names(cc, "leaf") == ["shapes::scale(double, int)"]
    assert names(cc, "inl") == ["shapes::detail::square(double)", "shapes::Circle::area() const"]
    assert names(cc, "total") == ["shapes::total(shapes::Circle const*, int)"]
    assert names(cc, "main") == ["main"]
    for p, src in ((c, "symprog.c"), (cc, "symprog.cc")):
        for frames in p.oracle.values():
            assert all(path == str(SRC / src) and line > 0 for _, path, line in frames), frames
    return {"c": c, "cc": cc}


def symbols_dir(root, progs):
    """The <dir>/.build-id/xx/yyyy.debug layout (as /usr/lib/debug on Debian)."""
    for p in progs:
        d = root / ".build-id" / p.build_id[:2]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p.debug, d / f"{p.build_id[2:]}.debug")
    return root


# ---------------------------------------------------------------------------------------------
# Debuginfod (elfutils' real server) over the binaries and their debug files
# ---------------------------------------------------------------------------------------------


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEBUGINFOD_")}
    return env


@pytest.fixture(scope="module")
def debuginfod(programs, tmp_path_factory):
    root = tmp_path_factory.mktemp("debuginfod")
    served = root / "srv"
    served.mkdir()
    for p in programs.values():
        shutil.copyfile(p.binary, served / p.name)
        shutil.copyfile(p.debug, served / f"{p.name}.debug")
    port = free_port()
    log = open(root / "debuginfod.log", "wb")
    # no DEBUGINFOD_URLS in its environment: it must not federate a miss to the internet
    proc = subprocess.Popen(["debuginfod", "-F", "-p", str(port), "-d", str(root / "db.sqlite"),
                             "-t", "0", "-g", "0", "-c", "2", str(served)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=clean_env(), cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        pending = {p.build_id: p for p in programs.values()}
        while pending:
            if proc.poll() is not None:
                pytest.fail(f"debuginfod exited with {proc.returncode}:\n"
                            f"{(root / 'debuginfod.log').read_text(errors='replace')[-4000:]}")
            for bid, p in list(pending.items()):
                try:
                    status, _, body = http_request(port, "GET", f"/buildid/{bid}/debuginfo", timeout=5)
                except OSError:
                    status = None
                if status == 200:
                    assert body == p.debug.read_bytes(), "debuginfod served another file"
                    del pending[bid]
            if pending and time.monotonic() > deadline:
                pytest.fail(f"debuginfod on {url} did not serve /buildid/<id>/debuginfo for "
                            f"{sorted(pending)} within 30 s:\n"
                            f"{(root / 'debuginfod.log').read_text(errors='replace')[-4000:]}")
            time.sleep(0.1)
        yield {"url": url, "port": port, "log": root / "debuginfod.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class FakeDebuginfod:
    """A debuginfod stand-in on raw sockets: answers GET /buildid/<id>/debuginfo with the debug
    files it is given, and for every other build id reads the request and never answers (a
    server that hangs). Records the build ids asked, in order."""

    def __init__(self, serve=None):
        self.serve = dict(serve or {})  # build id -> file bytes
        self.asked = []
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        buf = b""
        try:
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                m = re.match(r"^GET /buildid/([0-9a-f]+)/(\w+) ", line)
                bid, kind = (m.group(1), m.group(2)) if m else (None, None)
                with self.lock:
                    self.asked.append(bid or line)
                if bid in self.serve and kind == "debuginfo":
                    body = self.serve[bid]
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                elif bid in self.serve:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    self.stopping.wait()  # hang: never answer
                    return
        except OSError:
            return

    def asked_for(self, build_id):
        with self.lock:
            return self.asked.count(build_id)

    def close(self):
        self.stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """spanprof inherits the test's environment: no debuginfod server from the user's
    DEBUGINFOD_URLS, and a client cache of its own per test (libdebuginfod caches downloads under
    $DEBUGINFOD_CACHE_PATH, by default under $XDG_CACHE_HOME or $HOME, which would leak files
    from one test into the next; XDG_CACHE_HOME itself stays, Go keeps its build cache there)."""
    for k in list(os.environ):
        if k.startswith("DEBUGINFOD_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("DEBUGINFOD_CACHE_PATH", str(tmp_path / "debuginfod-client-cache"))


# ---------------------------------------------------------------------------------------------
# The profile, shaped like the eBPF profiler's, and what each query must answer
# ---------------------------------------------------------------------------------------------

PY = "py"        # an interpreted frame the sender named (no mapping)
SENT = "sent"    # a native frame the sender named (mapping with a build id we can resolve)
SENT_LINE = ("sender_named_frame", "/src/sender/named.c", 77)
PY_LINE = ("handle_request", "/srv/app/handlers.py", 42)

# (program, frames leaf first, observations, thread id, linked to SPAN)
SAMPLES = [
    ("c", ["leaf", "inl", PY, "main"], 3, 7101, False),
    ("c", ["leaf", "inl", "main"], 5, 7102, False),
    ("c", ["main"], 2, 7101, False),
    ("c", [SENT, "main"], 4, 7103, False),
    ("cc", ["leaf", "inl", "total", "main"], 6, 7201, True),
    ("cc", ["inl", "total", "main"], 1, 7202, False),
    ("cc", ["total", "main"], 7, 7201, False),
]
PIDS = {"c": 7100, "cc": 7200}


def ebpf_request(progs, t0):
    """One Export as the eBPF profiler sends it: a resource per process (process.pid and the
    executable, no service.name), a shared dictionary, CPU samples/count with period cpu/ns,
    thread.id/thread.name per sample, one timestamp per observation."""
    d = _Dict()
    maps, locs = {}, {}
    for key, p in progs.items():
        m = d.d.mapping_table.add()
        lo, n, off = p.text
        m.memory_start, m.memory_limit, m.file_offset = lo, lo + n, off
        m.filename_strindex = d.s(p.sent_path)
        m.attribute_indices.append(d.attr("process.executable.build_id.gnu", p.build_id))
        maps[key] = len(d.d.mapping_table) - 1

    def loc(key, label):
        if (key, label) in locs:
            return locs[key, label]
        loc = d.d.location_table.add()
        if label == PY:
            fn = d.function(PY_LINE[0], PY_LINE[1])
            loc.lines.add(function_index=fn, line=PY_LINE[2])
            loc.attribute_indices.append(d.attr("profile.frame.type", "cpython"))
        else:
            loc.mapping_index = maps[key]
            loc.address = progs[key].addrs[label]
            if label == SENT:
                fn = d.function(SENT_LINE[0], SENT_LINE[1])
                loc.lines.add(function_index=fn, line=SENT_LINE[2])
            loc.attribute_indices.append(d.attr("profile.frame.type", "native"))
        locs[key, label] = len(d.d.location_table) - 1
        return locs[key, label]

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    for key, p in progs.items():
        rp = req.resource_profiles.add()
        for k, v in (("process.pid", PIDS[key]), ("process.executable.name", p.name),
                     ("process.executable.path", p.sent_path)):
            kv = rp.resource.attributes.add(key=k)
            if isinstance(v, int):
                kv.value.int_value = v
            else:
                kv.value.string_value = v
        sp = rp.scope_profiles.add()
        sp.scope.name = "go.opentelemetry.io/ebpf-profiler"
        sp.scope.version = "v0.0.202618"
        prof = sp.profiles.add()
        prof.sample_type.type_strindex = d.s("samples")
        prof.sample_type.unit_strindex = d.s("count")
        prof.period_type.type_strindex = d.s("cpu")
        prof.period_type.unit_strindex = d.s("nanoseconds")
        prof.period = PERIOD
        prof.time_unix_nano = t0
        prof.duration_nano = 5_000_000_000
        prof.profile_id = os.urandom(16)
        for j, (pk, frames, nobs, tid, linked) in enumerate(SAMPLES):
            if pk != key:
                continue
            s = prof.samples.add()
            s.stack_index = d.stack([loc(key, f) for f in frames])
            s.attribute_indices.extend([d.attr("thread.id", tid), d.attr("thread.name", f"w{tid}")])
            if linked:
                s.link_index = d.link(TRACE, SPAN)
            s.timestamps_unix_nano.extend(t0 + 7_000_000 * j + PERIOD * k for k in range(nobs))
    req.dictionary.CopyFrom(d.d)
    return req


def export(server, progs, t0):
    with grpc.insecure_channel(server.grpc_target) as ch:
        r = profiles_stub(ch).Export(ebpf_request(progs, t0), timeout=RPC_TIMEOUT)
    assert not r.partial_success.rejected_profiles, r


def frame_lines(progs, key, label, resolved):
    """What a frame must show, innermost first: [(function, file, line)] (file/line None when the
    frame is unsymbolized)."""
    if label == PY:
        return [PY_LINE]
    if label == SENT:
        return [SENT_LINE]
    p = progs[key]
    addr = p.addrs[label]
    if key in resolved:
        return p.oracle[addr]
    return [(p.unsymbolized(addr), None, None)]


def expected_stacks(progs, resolved, only_linked=False):
    """{frame names root first: value in ns}, from SAMPLES and the oracle."""
    want = {}
    for key, frames, nobs, _, linked in SAMPLES:
        if (only_linked and not linked) or key not in progs:
            continue
        names = [fn for f in frames for fn, _, _ in frame_lines(progs, key, f, resolved)]
        stack = tuple(reversed(names))
        want[stack] = want.get(stack, 0) + nobs * PERIOD
    return want


def unresolved_count(progs, resolved, only_linked=False):
    """Distinct native locations of the answer no debug file has named."""
    seen = set()
    for key, frames, _, _, linked in SAMPLES:
        if only_linked and not linked:
            continue
        if key not in resolved:
            seen.update((key, f) for f in frames if f not in (PY, SENT))
    return len(seen)


# ---------------------------------------------------------------------------------------------
# Queries, as users make them
# ---------------------------------------------------------------------------------------------


class Window:
    def __init__(self, t0):
        self.start = t0 // 1_000_000 - 60_000
        self.end = time.time_ns() // 1_000_000 + 60_000


def timed_get(server, path, timeout=RPC_TIMEOUT):
    t = time.monotonic()
    status, h, body = http_request(server.http_port, "GET", path, timeout=timeout)
    return status, h, body, time.monotonic() - t


def unresolved_header(h, what):
    assert HEADER in h, f"{what}: no {HEADER} header in {sorted(h)}"
    assert re.fullmatch(r"\d+", h[HEADER]), f"{what}: {HEADER}: {h[HEADER]!r}"
    return int(h[HEADER])


def render(server, w, path="/pyroscope/render"):
    """The flame graph as Grafana's Profiles Drilldown asks for it: (stacks, header, seconds)."""
    q = quote(f"{CPU}{{}}")
    url = f"{path}?query={q}&from={w.start}&until={w.end}&format=json&max-nodes=1024"
    status, h, body, secs = timed_get(server, url)
    assert status == 200, f"GET {url}: {status} {body[:400]!r}"
    fb = json.loads(body)["flamebearer"]
    stacks = flamegraph_stacks({"names": fb["names"], "levels": [{"values": l} for l in fb["levels"]]})
    assert fb["numTicks"] == sum(stacks.values())
    return stacks, unresolved_header(h, f"GET {url}"), secs


def connect(server, method, body, proto=False):
    ctype = "application/proto" if proto else "application/json"
    status, h, data = http_request(server.http_port, "POST", f"/querier.v1.QuerierService/{method}",
                                   body=body if proto else json.dumps(body).encode(),
                                   headers={"Content-Type": ctype, "Connect-Protocol-Version": "1"})
    assert status == 200, f"{method}: {status} {data[:400]!r}"
    if h.get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return (data if proto else json.loads(data)), unresolved_header(h, method)


def merge_stacktraces(server, w):
    doc, n = connect(server, "SelectMergeStacktraces",
                     {"profileTypeID": CPU, "labelSelector": "{}", "start": str(w.start),
                      "end": str(w.end), "maxNodes": 1024})
    return flamegraph_stacks(doc["flamegraph"]), n


def span_profile(server, w):
    doc, n = connect(server, "SelectMergeSpanProfile",
                     {"profileTypeID": CPU, "labelSelector": "{}", "spanSelector": [SPAN.hex()],
                      "start": str(w.start), "end": str(w.end), "maxNodes": 1024})
    return flamegraph_stacks(doc.get("flamegraph", {})), n


def span_folded(server):
    url = f"/api/v1/spans/{SPAN.hex()}/profile?format=folded&from=now-1h&until=now%2B1h"
    status, h, body, _ = timed_get(server, url)
    assert status == 200, f"GET {url}: {status} {body[:400]!r}"
    out = {}
    for line in body.decode().splitlines():
        stack, value = line.rsplit(" ", 1)
        out[tuple(stack.split(";"))] = int(value)
    return out, unresolved_header(h, f"GET {url}")


def pprof_download(server, w):
    url = f"/pprof?query={quote(CPU + '{}')}&from={w.start}&until={w.end}"
    status, h, body, _ = timed_get(server, url)
    assert status == 200, f"GET {url}: {status} {body[:400]!r}"
    return gzip.decompress(body), unresolved_header(h, f"GET {url}")


def merge_profile(server, w):
    """SelectMergeProfile over Connect proto, as Grafana's "download pprof" calls it."""
    return connect(server, "SelectMergeProfile",
                   pb_string(1, CPU) + pb_string(2, "{}") + pb_int(3, w.start) + pb_int(4, w.end),
                   proto=True)


@dataclass
class Pprof:
    stacks: dict      # {function names root first: value}
    locations: dict   # {(mapping file, address): [(function, file, line)] innermost first}
    mappings: dict    # {mapping file: (build id, flags text)}


def read_pprof_go(data, tmp_path, name):
    """Go's own reader: `go tool pprof -raw`, parsed (samples, locations with their lines,
    mappings with their [FN][FL][LN][IN] flags)."""
    path = tmp_path / f"{name}.pb"
    path.write_bytes(data)
    # -symbolize=none: print the names as spanprof wrote them (by default pprof "simplifies" an
    # already demangled C++ name whose system_name equals it, cutting the parameter list)
    r = subprocess.run([GO, "tool", "pprof", "-symbolize=none", "-raw", str(path)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "GOFLAGS": "", "HOME": os.environ.get("HOME", "/tmp")})
    assert r.returncode == 0, r.stderr
    text = r.stdout
    section, samples, locs, maps, cur = None, [], {}, {}, None
    for line in text.splitlines():
        if line.startswith("Samples:"):
            section = "samples"
            continue
        if line.startswith("Locations"):
            section = "locations"
            continue
        if line.startswith("Mappings"):
            section = "mappings"
            continue
        if section == "samples":
            m = re.match(r"^\s*(-?\d+):\s*((?:\d+\s*)*)$", line)
            if m:
                samples.append((int(m.group(1)), [int(x) for x in m.group(2).split()]))
        elif section == "locations":
            m = re.match(r"^\s*(\d+):\s+0x([0-9a-f]+)(?:\s+M=(\d+))?\s+(.*)$", line)
            if m:
                cur = int(m.group(1))
                locs[cur] = {"addr": int(m.group(2), 16), "map": int(m.group(3) or 0), "lines": []}
                rest = m.group(4)
            elif cur is not None and line.startswith(" "):
                rest = line.strip()
            else:
                continue
            # "<function> <file>:<line>:<column> s=<start line>[(<system name>)]"; file "" and
            # line 0 when unknown
            lm = re.match(r"^(.*?)\s+(\S*?):(\d+)(?::\d+)?\s+s=\d+(?:\(.*\))?$", rest)
            if lm:
                locs[cur]["lines"].append((lm.group(1), lm.group(2), int(lm.group(3))))
        elif section == "mappings":
            m = re.match(r"^\s*(\d+):\s+0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+\s+(\S+)\s*(\S*)\s*(.*)$", line)
            if m:
                maps[int(m.group(1))] = (m.group(2), m.group(3), m.group(4))
    return samples, locs, maps, text


def read_pprof_py(data):
    """The same view decoded here from the protobuf (used only where Go is not installed)."""
    f = pb_fields(data)
    strings = [b.decode() for b in f.get(6, [])]
    funcs = {}
    for raw in f.get(5, []):
        fn = pb_fields(raw)
        funcs[fn[1][0]] = (strings[fn.get(2, [0])[0]], strings[fn.get(4, [0])[0]])
    maps = {}
    for raw in f.get(3, []):
        mp = pb_fields(raw)
        flags = "".join(t for fld, t in ((7, "[FN]"), (8, "[FL]"), (9, "[LN]"), (10, "[IN]"))
                        if mp.get(fld, [0])[0])
        maps[mp[1][0]] = (strings[mp.get(5, [0])[0]], strings[mp.get(6, [0])[0]], flags)
    locs = {}
    for raw in f.get(4, []):
        lc = pb_fields(raw)
        lines = []
        for ln in lc.get(4, []):
            lf = pb_fields(ln)
            name, path = funcs[lf.get(1, [0])[0]]
            lines.append((name, path, pb_ints(lf.get(2, [0]))[0]))
        locs[lc[1][0]] = {"addr": lc.get(3, [0])[0], "map": lc.get(2, [0])[0], "lines": lines}
    samples = []
    for raw in f.get(2, []):
        sm = pb_fields(raw)
        samples.append((pb_ints(sm.get(2, []))[0], pb_ints(sm.get(1, []))))
    return samples, locs, maps, repr({"maps": maps, "locs": locs})


def read_pprof(data, tmp_path, name):
    if os.path.exists(GO):
        samples, locs, maps, text = read_pprof_go(data, tmp_path, name)
    else:
        samples, locs, maps, text = read_pprof_py(data)
    stacks = {}
    for value, ids in samples:
        names = [fn for i in ids for fn, _, _ in locs[i]["lines"]]
        stacks[tuple(reversed(names))] = stacks.get(tuple(reversed(names)), 0) + value
    locations = {}
    for lc in locs.values():
        mfile = maps[lc["map"]][0] if lc["map"] in maps else ""
        locations[(mfile, lc["addr"])] = lc["lines"]
    mappings = {f: (bid, flags) for f, bid, flags in maps.values()}
    return Pprof(stacks, locations, mappings), text


def expected_locations(progs, resolved):
    """{(mapping file, address): lines} for every location sent (the interpreted frame has no
    mapping and address 0)."""
    want = {("", 0): [PY_LINE]}
    for key, p in progs.items():
        for label, addr in p.addrs.items():
            lines = frame_lines(progs, key, label, resolved)
            if lines[0][1] is None:  # unsymbolized: pprof has the name, no file, line 0
                lines = [(lines[0][0], "", 0)]
            want[(p.sent_path, addr)] = lines
    return want


def assert_pprof(data, progs, resolved, tmp_path, name):
    pp, text = read_pprof(data, tmp_path, name)
    assert pp.stacks == expected_stacks(progs, resolved), f"{name}: stacks differ\n{text}"
    assert pp.locations == expected_locations(progs, resolved), f"{name}: locations differ\n{text}"
    for key, p in progs.items():
        assert p.sent_path in pp.mappings, f"{name}: no mapping {p.sent_path}\n{text}"
        bid, flags = pp.mappings[p.sent_path]
        assert bid == p.build_id, f"{name}: mapping {p.sent_path} build id {bid!r}\n{text}"
        if key in resolved:
            # pprof tools trust these: with them set they do not try to symbolize again
            for flag in ("[FN]", "[FL]", "[LN]"):
                assert flag in flags, f"{name}: mapping {p.sent_path} lacks {flag}: {flags!r}\n{text}"
    return pp


def metric(server, name, **labels):
    return scrape(server.http_port).total(name, **labels)


def assert_every_answer(server, progs, resolved, w, tmp_path, tag):
    """Every stack answer shows the expected names, values and unresolved-frame count."""
    want = expected_stacks(progs, resolved)
    n_all = unresolved_count(progs, resolved)
    n_span = unresolved_count(progs, resolved, only_linked=True)
    want_span = expected_stacks(progs, resolved, only_linked=True)

    for path in ("/pyroscope/render", "/render"):
        stacks, n, _ = render(server, w, path)
        assert stacks == want, f"{tag}: GET {path}: flame graph differs from the oracle"
        assert n == n_all, f"{tag}: GET {path}: {HEADER}: {n}, want {n_all}"

    stacks, n = merge_stacktraces(server, w)
    assert stacks == want, f"{tag}: SelectMergeStacktraces differs from the oracle"
    assert n == n_all, f"{tag}: SelectMergeStacktraces: {HEADER}: {n}, want {n_all}"

    stacks, n = span_profile(server, w)
    assert stacks == want_span, f"{tag}: SelectMergeSpanProfile differs from the oracle"
    assert n == n_span, f"{tag}: SelectMergeSpanProfile: {HEADER}: {n}, want {n_span}"

    stacks, n = span_folded(server)
    assert stacks == want_span, f"{tag}: /api/v1/spans/.../profile?format=folded differs"
    assert n == n_span, f"{tag}: /api/v1/spans/.../profile: {HEADER}: {n}, want {n_span}"

    data, n = pprof_download(server, w)
    assert n == n_all, f"{tag}: GET /pprof: {HEADER}: {n}, want {n_all}"
    assert_pprof(data, progs, resolved, tmp_path, f"{tag}-download")

    data, n = merge_profile(server, w)
    assert n == n_all, f"{tag}: SelectMergeProfile: {HEADER}: {n}, want {n_all}"
    assert_pprof(data, progs, resolved, tmp_path, f"{tag}-merge")


def start(spanprof_factory, *args, name=None):
    """A server; tests that are not about the query's symbolize budget give it 20 s. Their first
    answer must be named whole, and the wait ends as soon as the downloads do: the default 2 s
    once ran out on a loaded CI machine before both debug files were read (the answer then named
    some frames of a binary and not others, as the budget says it should)."""
    args = list(args)
    if "--symbolize-budget" not in args:
        args += ["--symbolize-budget", "20s"]
    return spanprof_factory(args, name=name)


# ---------------------------------------------------------------------------------------------
# 1 and 2: names from debuginfod, and from a local symbols dir
# ---------------------------------------------------------------------------------------------


def test_debuginfod_names_every_native_frame(programs, debuginfod, spanprof_factory, tmp_path):
    server = start(spanprof_factory, "--debuginfod-urls", debuginfod["url"])
    t0 = time.time_ns() - 30_000_000_000
    export(server, programs, t0)
    w = Window(t0)
    assert_every_answer(server, programs, {"c", "cc"}, w, tmp_path, "debuginfod")
    m = scrape(server.http_port)
    assert m.total(FETCHES, result="found") == 2, m.series(FETCHES)
    assert m.total(FETCHES, result="failed") == m.total(FETCHES, result="timeout") == 0
    # every address the server had to name was read from a debug file (the sender's own frame not)
    assert m.total(ELF_LOOKUPS) >= unresolved_count(programs, set()), m.series(ELF_LOOKUPS)
    log = debuginfod["log"].read_text(errors="replace")
    for p in programs.values():
        assert re.search(rf"GET /buildid/{p.build_id}/debuginfo 200", log), \
            f"debuginfod never served {p.name}'s debug file to spanprof:\n{log[-3000:]}"



def test_build_id_no_source_has_keeps_its_address_name(debuginfod, spanprof_factory):
    """A library whose debug file nobody serves: debuginfod answers 404, counted as not_found,
    and the frame keeps the name it has today."""
    server = start(spanprof_factory, "--debuginfod-urls", debuginfod["url"])
    t0 = time.time_ns() - 30_000_000_000
    build_id, addr = "00" * 19 + "17", 0x1234
    d = _Dict()
    mp = d.d.mapping_table.add(memory_start=0x1000, memory_limit=0x2000, file_offset=0x1000,
                               filename_strindex=d.s("/usr/lib/mystery.so"))
    mp.attribute_indices.append(d.attr("process.executable.build_id.gnu", build_id))
    loc = d.d.location_table.add(mapping_index=1, address=addr)
    loc.attribute_indices.append(d.attr("profile.frame.type", "native"))
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    rp = req.resource_profiles.add()
    rp.resource.attributes.add(key="process.pid").value.int_value = 7300
    rp.resource.attributes.add(key="process.executable.name").value.string_value = "mystery"
    prof = rp.scope_profiles.add().profiles.add(period=PERIOD, time_unix_nano=t0,
                                                duration_nano=5_000_000_000)
    prof.sample_type.type_strindex = d.s("samples")
    prof.sample_type.unit_strindex = d.s("count")
    prof.period_type.type_strindex = d.s("cpu")
    prof.period_type.unit_strindex = d.s("nanoseconds")
    s = prof.samples.add(stack_index=d.stack([1]), timestamps_unix_nano=[t0 + 1, t0 + 2])
    s.attribute_indices.append(d.attr("thread.id", 7301))
    req.dictionary.CopyFrom(d.d)
    with grpc.insecure_channel(server.grpc_target) as ch:
        r = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert not r.partial_success.rejected_profiles, r
    stacks, n, _ = render(server, Window(t0))
    assert stacks == {(f"native 0x{addr:x} mystery.so",): 2 * PERIOD}
    assert n == 1
    m = wait_for_metric(server.http_port, lambda m: m.total(FETCHES, result="not_found") >= 1, 5)
    assert m.total(FETCHES, result="not_found") == 1, m.series(FETCHES)
    assert m.total(FETCHES, result="found") == m.total(FETCHES, result="failed") == 0
    assert re.search(rf"GET /buildid/{build_id}/debuginfo 404",
                     debuginfod["log"].read_text(errors="replace")), "spanprof never asked debuginfod"


def test_symbols_dir_names_every_native_frame(programs, spanprof_factory, tmp_path):
    syms = symbols_dir(tmp_path / "symbols", programs.values())
    server = start(spanprof_factory, "--symbols-dir", str(syms), "--debuginfod-urls", "none")
    t0 = time.time_ns() - 30_000_000_000
    export(server, programs, t0)
    assert_every_answer(server, programs, {"c", "cc"}, Window(t0), tmp_path, "symbols-dir")
    m = scrape(server.http_port)
    assert m.total(FETCHES) == 0, f"--debuginfod-urls none, yet: {m.series(FETCHES)}"
    assert m.total(ELF_LOOKUPS) > 0


# ---------------------------------------------------------------------------------------------
# 3: an unreachable or hanging debuginfod costs a query at most the budget
# ---------------------------------------------------------------------------------------------


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connections are refused
    return port


@pytest.mark.parametrize("kind", ["closed-port", "hanging", "hanging-short-timeout"])
def test_unreachable_debuginfod_answers_within_the_budget(programs, spanprof_factory, kind):
    hole = FakeDebuginfod() if kind.startswith("hanging") else None
    try:
        url = hole.url if hole else f"http://127.0.0.1:{closed_port()}"
        args = ["--debuginfod-urls", url, "--symbolize-budget", "500ms"]
        if kind == "hanging-short-timeout":
            args += ["--debuginfod-timeout", "1500ms"]
        server = start(spanprof_factory, *args)
        t0 = time.time_ns() - 30_000_000_000
        export(server, programs, t0)
        w = Window(t0)
        want = expected_stacks(programs, resolved=set())
        n_all = unresolved_count(programs, set())
        for attempt in (1, 2):  # the first query starts a download, the second finds it pending
            stacks, n, secs = render(server, w)
            assert secs < 3.0, f"{kind}: query {attempt} took {secs:.2f} s with a 500 ms budget"
            assert stacks == want, f"{kind}: query {attempt}: frames must stay unsymbolized"
            assert n == n_all, f"{kind}: query {attempt}: {HEADER}: {n}, want {n_all}"
        if hole:
            assert hole.asked, "spanprof never asked the hanging debuginfod"
        assert server.ready_status() == 200 and server.alive()
        if kind == "closed-port":
            m = wait_for_metric(server.http_port, lambda m: m.total(FETCHES, result="failed") >= 1, 5)
            assert m.total(FETCHES, result="failed") >= 1, m.series(FETCHES)
            assert m.total(FETCHES, result="found") == m.total(FETCHES, result="not_found") == 0, \
                m.series(FETCHES)
        if kind == "hanging-short-timeout":
            # every download asked so far gives up after --debuginfod-timeout
            def settled(m):
                with hole.lock:
                    return m.total(FETCHES) >= len(set(hole.asked)) > 0
            m = wait_for_metric(server.http_port, settled, 8)
            asked = set(hole.asked)
            assert settled(m), f"downloads still running 8 s after a 1.5 s timeout: {m.series(FETCHES)}"
            # a download that failed is not tried again before --symbols-retry (default 5 min)
            before = {bid: hole.asked_for(bid) for bid in asked}
            stacks, n, secs = render(server, w)
            assert secs < 3.0 and stacks == want and n == n_all, (secs, n)
            time.sleep(0.3)
            assert {bid: hole.asked_for(bid) for bid in asked} == before, \
                f"a timed-out download was retried within --symbols-retry: {hole.asked}"
            assert m.total(FETCHES, result="timeout") == len(asked), \
                f"downloads that hung past --debuginfod-timeout are not counted as timeouts: " \
                f"{m.series(FETCHES)}"
        # SIGTERM with a download still hanging (default 30 s timeout): the server must exit 0
        # within the suite's stop timeout, before the hanging peer goes away
        check_clean_exit(server)
    finally:
        if hole:
            hole.close()


@pytest.mark.parametrize("slow", ["c", "cc"])
def test_one_hanging_download_does_not_keep_other_libraries_unnamed(programs, spanprof_factory, slow):
    """debuginfod hangs on one build id and serves the other at once: while the first download
    hangs, the other program's frames get their names (the download of one file does not wait
    behind another's, and a query whose budget went on the hanging one still asks for the rest)."""
    fast = "cc" if slow == "c" else "c"
    hole = FakeDebuginfod(serve={programs[fast].build_id: programs[fast].debug.read_bytes()})
    try:
        server = start(spanprof_factory, "--debuginfod-urls", hole.url, "--symbolize-budget", "500ms")
        t0 = time.time_ns() - 30_000_000_000
        export(server, programs, t0)
        w = Window(t0)
        for attempt in (1, 2, 3):
            stacks, n, secs = render(server, w)
            assert secs < 3.0, f"query {attempt} took {secs:.2f} s with a 500 ms budget"
            if stacks == expected_stacks(programs, {fast}):
                break
            time.sleep(0.5)
        assert stacks == expected_stacks(programs, {fast}), \
            f"after {attempt} queries the {fast} program's frames are still unnamed although " \
            f"debuginfod serves its file at once; debuginfod was asked for {hole.asked}"
        assert n == unresolved_count(programs, {fast})
        check_clean_exit(server)
    finally:
        hole.close()


# ---------------------------------------------------------------------------------------------
# 3b: downloads run in child processes, never in the server
# ---------------------------------------------------------------------------------------------

STARTED = "spanprof_symbolizer_fetch_processes_started_total"


def download_processes(server):
    """The server's children started as `spanprof debuginfod-fetcher ...`: {pid: argv}."""
    kids = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server.proc.pid and len(argv) > 1 and argv[1] == b"debuginfod-fetcher":
            kids[int(d.name)] = argv
    return kids


def test_downloads_run_in_child_processes_the_server_outlives(programs, debuginfod, spanprof_factory):
    """libdebuginfod 0.188 closes a file descriptor twice on every download (README, symbols):
    in the server that would close another thread's socket or database file. Downloads run in
    child processes; one killed mid-life is replaced and the names still come."""
    server = start(spanprof_factory, "--debuginfod-urls", debuginfod["url"], name="kids")
    assert download_processes(server) == {}, "a download process before any download"
    t0 = time.time_ns() - 30_000_000_000
    w = Window(t0)
    c = {"c": programs["c"]}
    export(server, c, t0)
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(c, {"c"}) and n == 0
    kids = download_processes(server)
    assert len(kids) == 1, f"one download, one process: {kids}"
    assert metric(server, STARTED) == 1
    for pid in kids:
        os.kill(pid, 9)  # as the OOM killer would

    export(server, {"cc": programs["cc"]}, t0 + 1_000_000_000)
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, {"c", "cc"}) and n == 0
    assert server.alive(), "the server died with its download process"
    assert metric(server, FETCHES, result="found") == 2
    assert metric(server, STARTED) == 2  # the killed one replaced, or the second thread's first
    check_clean_exit(server)


# ---------------------------------------------------------------------------------------------
# 4: results are cached in the store, across restarts
# ---------------------------------------------------------------------------------------------


def test_names_are_cached_in_the_store_across_restarts(programs, debuginfod, spanprof_factory, tmp_path):
    server = start(spanprof_factory, "--debuginfod-urls", debuginfod["url"], name="cached")
    t0 = time.time_ns() - 30_000_000_000
    export(server, programs, t0)
    w = Window(t0)
    want = expected_stacks(programs, {"c", "cc"})
    stacks, n, _ = render(server, w)
    assert stacks == want and n == 0
    lookups = metric(server, ELF_LOOKUPS)
    fetches = metric(server, FETCHES)
    assert lookups > 0
    stacks, n, _ = render(server, w)
    assert stacks == want and n == 0
    assert metric(server, ELF_LOOKUPS) == lookups, "an identical query read the debug files again"
    assert metric(server, FETCHES) == fetches, "an identical query downloaded again"
    # the other answers over the same addresses find the names in the cache too
    merge_stacktraces(server, w)
    pprof_download(server, w)
    assert metric(server, ELF_LOOKUPS) == lookups, "pprof / SelectMergeStacktraces re-read debug files"

    check_clean_exit(server)
    # same data dir, no source of symbols at all: no debuginfod, no symbols dir, and the
    # downloaded debug files gone too (README: kept in <data-dir>/debuginfod-cache)
    shutil.rmtree(server.data_dir / "debuginfod-cache", ignore_errors=True)
    again = start(spanprof_factory, "--debuginfod-urls", "none", name="cached")
    assert again.data_dir == server.data_dir
    stacks, n, _ = render(again, w)
    assert stacks == want, "after a restart without symbol sources the names are gone"
    assert n == 0
    data, n = pprof_download(again, w)
    assert n == 0
    assert_pprof(data, programs, {"c", "cc"}, tmp_path, "after-restart")
    assert metric(again, ELF_LOOKUPS) == 0 and metric(again, FETCHES) == 0


# ---------------------------------------------------------------------------------------------
# 5: a debug file that arrives after the profile is picked up after --symbols-retry
# ---------------------------------------------------------------------------------------------


def test_debug_file_arriving_later_is_used_after_the_retry_delay(programs, spanprof_factory, tmp_path):
    syms = tmp_path / "symbols"
    syms.mkdir()
    server = start(spanprof_factory, "--symbols-dir", str(syms), "--debuginfod-urls", "none",
                   "--symbols-retry", "200ms")
    t0 = time.time_ns() - 30_000_000_000
    export(server, programs, t0)
    w = Window(t0)
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, set())
    assert n == unresolved_count(programs, set())

    symbols_dir(syms, [programs["c"]])  # the C program's debug package gets installed
    time.sleep(0.6)
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, {"c"}), "C frames not named after the retry delay"
    assert n == unresolved_count(programs, {"c"}) > 0

    symbols_dir(syms, [programs["cc"]])
    time.sleep(0.6)
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, {"c", "cc"})
    assert n == 0


# ---------------------------------------------------------------------------------------------
# Uploads: PUT /api/v1/debuginfo/{build_id} for build pipelines without debuginfod
# ---------------------------------------------------------------------------------------------


def test_uploaded_debug_files_name_frames(programs, spanprof_factory, tmp_path):
    """A build pipeline uploads its debug files (ingest credentials); they name the frames at
    once, are kept under the data dir (so a restart without any other source still has them),
    and what is not a debug file of that build id is refused with a message."""
    args = ["--debuginfod-urls", "none"]
    server = start(spanprof_factory, *args)
    t0 = time.time_ns() - 30_000_000_000
    export(server, programs, t0)
    w = Window(t0)
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, set()) and n == unresolved_count(programs, set())

    c, cc = programs["c"], programs["cc"]
    auth = {}
    # the C++ debug file under the C build id: refused, naming both ids
    status, _, body = http_request(server.http_port, "PUT", f"/api/v1/debuginfo/{c.build_id}",
                                   body=cc.debug.read_bytes(), headers=auth)
    assert status == 400 and cc.build_id.encode() in body and c.build_id.encode() in body, body
    # not an ELF file, and not a build id
    status, _, body = http_request(server.http_port, "PUT", f"/api/v1/debuginfo/{c.build_id}",
                                   body=b"\x7fELF" + b"\0" * 12, headers=auth)
    assert status == 400, body
    status, _, body = http_request(server.http_port, "PUT", "/api/v1/debuginfo/not-hex",
                                   body=c.debug.read_bytes(), headers=auth)
    assert status == 400 and b"build id" in body, body
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, set()), "a refused upload named frames"

    # the right file: the C frames get their names on the next query (past the retry delay:
    # an upload makes its build id looked for again at once)
    status, _, body = http_request(server.http_port, "PUT", f"/api/v1/debuginfo/{c.build_id}",
                                   body=c.debug.read_bytes(), headers=auth)
    assert status == 200, body
    stacks, n, _ = render(server, w)
    assert stacks == expected_stacks(programs, {"c"}) and n == unresolved_count(programs, {"c"})
    kept = server.data_dir / "debuginfo" / ".build-id" / c.build_id[:2] / f"{c.build_id[2:]}.debug"
    assert kept.read_bytes() == c.debug.read_bytes(), "the upload was not kept as sent"

    # the C++ one uploaded too, then a restart with no source but the data dir
    status, _, body = http_request(server.http_port, "PUT", f"/api/v1/debuginfo/{cc.build_id}",
                                   body=cc.debug.read_bytes(), headers=auth)
    assert status == 200, body
    server.stop()
    check_clean_exit(server)
    (server.data_dir / "spanprof.db").unlink()  # no cached names: only the uploads remain
    for extra in ("spanprof.db-wal", "spanprof.db-shm"):
        (server.data_dir / extra).unlink(missing_ok=True)
    again = start(spanprof_factory, *args, "--data-dir", str(server.data_dir), name="again")
    export(again, programs, t0)
    stacks, n, _ = render(again, w)
    assert stacks == expected_stacks(programs, {"c", "cc"}) and n == 0


def test_uploads_need_ingest_credentials(programs, spanprof_factory, tmp_path):
    token = "upload-token-1"
    tokens = tmp_path / "ingest-tokens"
    tokens.write_text(token + "\n")
    tokens.chmod(0o600)
    server = start(spanprof_factory, "--debuginfod-urls", "none", "--ingest-auth-token-file",
                   str(tokens))
    c = programs["c"]
    path = f"/api/v1/debuginfo/{c.build_id}"
    status, h, body = http_request(server.http_port, "PUT", path, body=c.debug.read_bytes())
    assert status == 401 and "www-authenticate" in h, body
    status, _, body = http_request(server.http_port, "PUT", path, body=c.debug.read_bytes(),
                                   headers={"Authorization": "Bearer wrong"})
    assert status == 401, body
    status, _, body = http_request(server.http_port, "PUT", path, body=c.debug.read_bytes(),
                                   headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
