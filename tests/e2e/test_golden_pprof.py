"""Golden test for OTLP profiles -> pprof conversion (issue: every ingest path ends as pprof).

A known OTLP request, built with the official opentelemetry-proto classes, goes through spanprof's
real decode/validate/convert path (tests/tools/otlp2pprof) and comes out as pprof files. `go tool
pprof -raw` (Go's own reader, not ours) must read them, and the per-stack totals it prints must equal
the totals this test computes straight from the OTLP input.
"""
import collections
import os
import re
import shutil
import subprocess

import pytest

from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as ps
from opentelemetry.proto.common.v1 import common_pb2 as common
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pp
from opentelemetry.proto.resource.v1 import resource_pb2 as res

GO = shutil.which("go") or "/usr/local/go/bin/go"
TOOL = os.environ.get("SPANPROF_OTLP2PPROF") or os.path.join(
    os.path.dirname(os.environ.get("SPANPROF_BIN", "build/spanprof")), "tests", "otlp2pprof")

pytestmark = pytest.mark.skipif(not os.path.exists(GO), reason="Go toolchain not installed")

PERIOD = 50_000_000  # 20 Hz, as the eBPF profiler samples


class Dict:
    """Builds a ProfilesDictionary with the zero entries every table must start with."""

    def __init__(self):
        self.d = pp.ProfilesDictionary()
        self.strings = {}
        self.s("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add()
        self.d.attribute_table.add()
        self.d.stack_table.add()

    def s(self, text):
        if text not in self.strings:
            self.strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self.strings[text]

    def attr(self, key, value):
        kv = self.d.attribute_table.add(key_strindex=self.s(key))
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
        return len(self.d.attribute_table) - 1

    def function(self, name, filename=""):
        self.d.function_table.add(name_strindex=self.s(name), system_name_strindex=self.s(name),
                                   filename_strindex=self.s(filename))
        return len(self.d.function_table) - 1

    def mapping(self, path, build_id):
        m = self.d.mapping_table.add(memory_start=0x400000, memory_limit=0x800000,
                                     filename_strindex=self.s(path))
        m.attribute_indices.append(self.attr("process.executable.build_id.gnu", build_id))
        return len(self.d.mapping_table) - 1

    def location(self, mapping, address, lines=(), frame_type="native"):
        loc = self.d.location_table.add(mapping_index=mapping, address=address)
        for fn, line in lines:
            loc.lines.add(function_index=fn, line=line)
        loc.attribute_indices.append(self.attr("profile.frame.type", frame_type))
        return len(self.d.location_table) - 1

    def stack(self, locs):
        self.d.stack_table.add(location_indices=locs)
        return len(self.d.stack_table) - 1

    def link(self, trace_id, span_id):
        self.d.link_table.add(trace_id=trace_id, span_id=span_id)
        return len(self.d.link_table) - 1


def build_request():
    d = Dict()
    exe = d.mapping("/usr/bin/shop", "b1d0")
    libc = d.mapping("/usr/lib/x86_64-linux-gnu/libc.so.6", "c0ffee")
    f_main = d.function("main", "main.c")
    f_handle = d.function("handle_request", "server.c")
    f_parse = d.function("parse_json", "json.c")
    f_inline = d.function("skip_ws", "json.c")
    f_sys = d.function("do_syscall_64")
    l_main = d.location(exe, 0x401000, [(f_main, 10)])
    l_handle = d.location(exe, 0x402000, [(f_handle, 42)])
    # inlined: skip_ws inside parse_json at one address
    l_parse = d.location(exe, 0x403000, [(f_inline, 7), (f_parse, 99)])
    l_sys = d.location(0, 0xffffffff81000000, [(f_sys, 0)], frame_type="kernel")
    l_memcpy = d.location(libc, 0x9a3f0)  # unsymbolized native frame: no lines at all

    s_parse = d.stack([l_parse, l_handle, l_main])
    s_sys = d.stack([l_sys, l_memcpy, l_handle, l_main])
    s_main = d.stack([l_main])
    link = d.link(bytes(range(16)), bytes(range(8)))
    tid1 = d.attr("thread.id", 101)
    tname = d.attr("thread.name", "worker-1")
    tid2 = d.attr("thread.id", 102)

    req = ps.ExportProfilesServiceRequest(dictionary=d.d)
    rp = req.resource_profiles.add()
    rp.resource.attributes.add(key="service.name", value=common.AnyValue(string_value="shop"))
    rp.resource.attributes.add(key="process.pid", value=common.AnyValue(int_value=4242))
    sp = rp.scope_profiles.add()
    t0 = 1_700_000_000_000_000_000
    # CPU profile as the eBPF profiler sends it: timestamps only, samples/count, period cpu/ns.
    cpu = sp.profiles.add(time_unix_nano=t0, duration_nano=10_000_000_000, period=PERIOD)
    cpu.sample_type.type_strindex = d.s("samples")
    cpu.sample_type.unit_strindex = d.s("count")
    cpu.period_type.type_strindex = d.s("cpu")
    cpu.period_type.unit_strindex = d.s("nanoseconds")
    cpu.samples.add(stack_index=s_parse, attribute_indices=[tid1, tname],
                    timestamps_unix_nano=[t0 + i * PERIOD for i in range(7)])
    cpu.samples.add(stack_index=s_sys, attribute_indices=[tid2], link_index=link,
                    timestamps_unix_nano=[t0 + 1, t0 + 2, t0 + 3])
    cpu.samples.add(stack_index=s_main, attribute_indices=[tid1], timestamps_unix_nano=[t0 + 9])
    # the same stack again as a separate sample (another thread): totals must add up
    cpu.samples.add(stack_index=s_parse, attribute_indices=[tid2],
                    timestamps_unix_nano=[t0 + 5, t0 + 6])
    # Off-CPU: values with timestamps, no period.
    off = sp.profiles.add(time_unix_nano=t0, duration_nano=10_000_000_000)
    off.sample_type.type_strindex = d.s("off_cpu")
    off.sample_type.unit_strindex = d.s("nanoseconds")
    off.samples.add(stack_index=s_sys, values=[1500, 2500], timestamps_unix_nano=[t0, t0 + 1])
    off.samples.add(stack_index=s_parse, values=[700], timestamps_unix_nano=[t0 + 2])
    req.dictionary.CopyFrom(d.d)  # the constructor copied it before the strings above were added
    return req


def expected_totals(req, profile):
    """Per-stack totals computed from the OTLP message alone: stack as function names, root first."""
    d = req.dictionary
    strings = d.string_table
    scale = profile.period if strings[profile.sample_type.type_strindex] == "samples" else 1
    totals = collections.Counter()
    for s in profile.samples:
        names = []
        for li in d.stack_table[s.stack_index].location_indices:
            loc = d.location_table[li]
            if loc.lines:
                names.extend(strings[d.function_table[ln.function_index].name_strindex] for ln in loc.lines)
            else:
                names.append(None)  # unsymbolized: checked separately
        value = sum(s.values) if s.values else len(s.timestamps_unix_nano)
        totals[tuple(reversed(names))] += value * scale
    return totals


def go_pprof_raw(path):
    out = subprocess.run([GO, "tool", "pprof", "-raw", path], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "GOFLAGS": "", "HOME": os.environ.get("HOME", "/tmp")})
    assert out.returncode == 0, out.stderr
    return out.stdout


def parse_raw(text):
    """Parses `go tool pprof -raw`: sample rows `value: loc ids`, then `Locations` rows."""
    section, samples, locations, current = None, [], {}, None
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
            m = re.match(r"^\s*(\d+):\s+0x([0-9a-f]+)(?:\s+M=(\d+))?\s+(.*?)\s+(\S*):(\d+)(?::\d+)?\s+s=\d+$",
                         line)
            if m:
                current = int(m.group(1))
                locations[current] = [m.group(4)]
                continue
            m = re.match(r"^\s+(\S.*?)\s+(\S*):(\d+)(?::\d+)?\s+s=\d+$", line)
            if m and current is not None:
                locations[current].append(m.group(1))
    return samples, locations


def run_tool(tmp_path, req):
    if not os.path.exists(TOOL):
        pytest.skip(f"otlp2pprof not built at {TOOL}")
    src = tmp_path / "req.bin"
    src.write_bytes(req.SerializeToString())
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([TOOL, str(src), str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    index = [line.split("\t") for line in (out / "index.tsv").read_text().splitlines()]
    return out, index


def test_otlp_profiles_convert_to_pprof_that_go_reads_with_equal_stack_totals(tmp_path):
    req = build_request()
    out, index = run_tool(tmp_path, req)
    assert [row[1] for row in index] == [
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "off_cpu:off_cpu:nanoseconds::",
    ]
    assert all(row[2] == "shop" for row in index)
    profiles = req.resource_profiles[0].scope_profiles[0].profiles
    for (fname, _type, _svc, _n), profile in zip(index, profiles):
        raw = go_pprof_raw(str(out / fname))
        samples, locations = parse_raw(raw)
        got = collections.Counter()
        for value, locs in samples:
            names = []
            for loc in locs:
                names.extend(locations[loc])
            got[tuple(reversed(names))] += value
        want = expected_totals(req, profile)
        # Unsymbolized frames: spanprof names them after address and mapping file, never "".
        resolved = collections.Counter()
        for stack, v in want.items():
            resolved[tuple("native 0x9a3f0 libc.so.6" if n is None else n for n in stack)] += v
        assert got == resolved
        assert sum(got.values()) == sum(want.values())
    # CPU values are scaled from counts to nanoseconds by the period.
    assert "PeriodType: cpu nanoseconds" in go_pprof_raw(str(out / "0.pb"))


def test_sample_links_threads_and_pids_become_pprof_labels(tmp_path):
    req = build_request()
    out, _ = run_tool(tmp_path, req)
    raw = go_pprof_raw(str(out / "0.pb"))
    assert 'span_id:[0001020304050607]' in raw
    assert 'trace_id:[000102030405060708090a0b0c0d0e0f]' in raw
    assert 'thread_name:[worker-1]' in raw
    assert re.search(r"thread_id:\[101\]", raw) and re.search(r"process_pid:\[4242\]", raw)


def test_old_v19_sample_layout_converts_to_the_same_totals(tmp_path):
    """A v1.8/v1.9 sender (values 2, attribute_indices 3, link_index 4) must give the same pprof."""
    from e2e_helpers import encode_request_with_raw_samples, sample_old_layout

    req = build_request()
    raw_per_profile = []
    for prof in req.resource_profiles[0].scope_profiles[0].profiles:
        raw_per_profile.append([
            sample_old_layout(s.stack_index, list(s.attribute_indices), s.link_index, list(s.values),
                              list(s.timestamps_unix_nano))
            for s in prof.samples
        ])
    body = encode_request_with_raw_samples(req, raw_per_profile)
    src = tmp_path / "old.bin"
    src.write_bytes(body)
    out = tmp_path / "old"
    out.mkdir()
    r = subprocess.run([TOOL, str(src), str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (tmp_path / "new").mkdir()
    new_out, _ = run_tool(tmp_path / "new", req)
    for name in ("0.pb", "1.pb"):
        a = parse_raw(go_pprof_raw(str(out / name)))[0]
        b = parse_raw(go_pprof_raw(str(new_out / name)))[0]
        assert sorted(a) == sorted(b)
