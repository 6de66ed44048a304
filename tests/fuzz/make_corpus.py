"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/). Run from the repo root
with the e2e virtualenv: .venv/bin/python tests/fuzz/make_corpus.py (needs the zstd CLI).
Seeds are small valid inputs, so the fuzzers start from real OTLP shapes: the eBPF profiler's CPU
profile in the v1.10 and v1.9 layouts, with links and reference-form resource attributes, and
SDK-like spans."""

import gzip
import struct
import subprocess
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from opentelemetry.proto.profiles.v1development import profiles_pb2  # noqa: E402

from e2e_helpers import (  # noqa: E402
    cpu_profile_request,
    encode_request_with_raw_samples,
    ld,
    sample_old_layout,
    tag,
    trace_request,
    varint,
)


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def frame(msg, compressed=False):
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(msg)) + msg


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True).stdout


def profiles():
    req, _ = cpu_profile_request(n_profiles=1, samples_per_profile=3, start_ns=1_700_000_000_000_000_000)
    yield "cpu_v110", req.SerializeToString()

    req, dic = cpu_profile_request(n_profiles=2, samples_per_profile=2, start_ns=1_700_000_000_000_000_000)
    link = dic.link(b"\x11" * 16, b"\x22" * 8)
    for prof in req.resource_profiles[0].scope_profiles[0].profiles:
        prof.samples[0].link_index = link
        prof.samples[1].values.extend([5, 6])
    req.dictionary.CopyFrom(dic.d)
    yield "links_values_v110", req.SerializeToString()

    # v1.9 layout: hand-encoded samples
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=3, start_ns=1_700_000_000_000_000_000)
    link = dic.link(b"\x33" * 16, b"\x44" * 8)
    req.dictionary.CopyFrom(dic.d)
    raw = [[sample_old_layout(s.stack_index, list(s.attribute_indices), link, [7, 8],
                              list(s.timestamps_unix_nano))
            for s in req.resource_profiles[0].scope_profiles[0].profiles[0].samples]]
    yield "cpu_v19", encode_request_with_raw_samples(req, raw)

    # v1.10 reference-form resource attributes (key_strindex 3, string_value_strindex 8)
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=1, start_ns=1_700_000_000_000_000_000)
    kv = req.resource_profiles[0].resource.attributes.add()
    kv.key_strindex = dic.s("service.name")
    kv.value.string_value_strindex = dic.s("svc-from-table")
    req.dictionary.CopyFrom(dic.d)
    yield "resource_strindex", req.SerializeToString()

    # v1.8 Profile numbering (comments 7, profile_id 8, dropped 9, format 10, payload 11, attrs 12)
    req, dic = cpu_profile_request(n_profiles=1, samples_per_profile=1, start_ns=1_700_000_000_000_000_000)
    prof = req.resource_profiles[0].scope_profiles[0].profiles[0]
    s = prof.samples[0]
    old = sample_old_layout(s.stack_index, list(s.attribute_indices), 0, [], list(s.timestamps_unix_nano))
    v18 = (ld(7, b"\x01") + ld(8, b"\xab" * 16) + tag(9, 0) + varint(2) + ld(10, b"pprof")
           + ld(11, b"\xff\xfe") + ld(12, b"\x01"))
    head = profiles_pb2.Profile()
    head.CopyFrom(prof)
    head.ClearField("samples")
    head.ClearField("profile_id")
    body = head.SerializeToString() + v18 + ld(2, old)
    sp = profiles_pb2.ScopeProfiles()
    sp.CopyFrom(req.resource_profiles[0].scope_profiles[0])
    sp.ClearField("profiles")
    rp = profiles_pb2.ResourceProfiles()
    rp.CopyFrom(req.resource_profiles[0])
    rp.ClearField("scope_profiles")
    scope = sp.SerializeToString() + ld(2, body)
    yield "profile_v18", ld(1, rp.SerializeToString() + ld(2, scope)) + ld(2, dic.d.SerializeToString())


def traces():
    req = trace_request([bytes([i]) * 8 for i in range(1, 4)], trace_id=b"\x0a" * 16)
    for sp in req.resource_spans[0].scope_spans[0].spans:
        sp.start_time_unix_nano = 1_700_000_000_000_000_000
        sp.end_time_unix_nano = 1_700_000_000_100_000_000
    req.resource_spans[0].scope_spans[0].spans[1].parent_span_id = b"\x01" * 8
    ev = req.resource_spans[0].scope_spans[0].spans[2].events.add()
    ev.name = "event"
    kv = ev.attributes.add()
    kv.key = "nested"
    kv.value.array_value.values.add().kvlist_value.values.add().key = "k"
    yield "three_spans", req.SerializeToString()
    yield "bad_ids", trace_request([b"\x01\x02"], trace_id=b"\x00" * 16).SerializeToString()


def main():
    msgs = list(profiles())
    for name, data in msgs:
        write("otlp_profiles", name, data)
    for name, data in traces():
        write("otlp_traces", name, data)
    small = msgs[0][1]
    # grpc_frame: [encoding selector, max selector] + body
    write("grpc_frame", "identity", bytes([0, 0x80]) + frame(small))
    write("grpc_frame", "gzip", bytes([2, 0x80]) + frame(gzip.compress(small), True))
    write("grpc_frame", "deflate", bytes([3, 0x80]) + frame(zlib.compress(small), True))
    write("grpc_frame", "zstd", bytes([4, 0x80]) + frame(zstd(small), True))
    write("grpc_frame", "gzip_small_max", bytes([2, 1]) + frame(gzip.compress(b"\x00" * 4000), True))
    write("grpc_frame", "timeout", bytes([0, 0x80]) + b"100m")
    # inflate: [codec selector (0 gzip, 1 deflate, 2 zstd, 3 identity), limit selector] + data
    write("inflate", "gzip", bytes([0, 0]) + gzip.compress(small))
    write("inflate", "gzip_two_members", bytes([0, 0]) + gzip.compress(b"ab") + gzip.compress(b"cd"))
    write("inflate", "zlib", bytes([1, 0]) + zlib.compress(small))
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    write("inflate", "raw_deflate", bytes([1, 0]) + raw.compress(small) + raw.flush())
    write("inflate", "zstd", bytes([2, 0]) + zstd(small))
    write("inflate", "bomb", bytes([0, 1]) + gzip.compress(b"\x00" * 100000))


if __name__ == "__main__":
    main()
