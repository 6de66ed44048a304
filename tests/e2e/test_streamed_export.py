"""A large Export of many processes, handed to the store in parts (otlp/service.c streams it).

The eBPF profiler (since 2026-03) sends one ResourceProfiles per process over one dictionary. An
Export with at least 8,192 Samples over several resources is converted, correlated and written
part by part, in one transaction, acknowledged after its commit (storage-adapter/sqlite_write.c
S1-S5). What the user sees must not tell: every process's flame graph holds what was sent, spans
get what ran inside them, and a failed commit stores nothing, so the client's retry stores it
once. The oracle is each Shape's own `expected` (tests/e2e/ebpf_shapes.py).
"""
import time

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

from e2e_helpers import RPC_TIMEOUT, _Dict, profiles_stub, scrape
from ebpf_shapes import MS, Shape
from test_failed_commit import heal, inject
from test_nothing_lost import drops, send_spans, span_observations, stored
from test_query import CPU, Window, connect_json, flamegraph_stacks


def processes(n, pid0):
    t0 = time.time_ns() - 60_000 * MS
    return [Shape(pid=pid0 + 100 * i, threads=8, obs_per_thread=300, stacks=200,
                  max_ts_per_sample=2, t0=t0, seed=i + 1, exe=f"proc{pid0 + i}",
                  span_prefix=i + 1) for i in range(n)]


def export_of(shapes):
    d = _Dict()
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    for s in shapes:
        s.profile_request(d, req)
    req.dictionary.CopyFrom(d.d)
    samples = sum(len(p.samples) for rp in req.resource_profiles
                  for sp in rp.scope_profiles for p in sp.profiles)
    assert samples >= 8192, samples  # large enough to be streamed
    return req


def send(server, req, expect_ok=True):
    opts = [("grpc.max_send_message_length", 100 << 20)]
    with grpc.insecure_channel(server.grpc_target, options=opts) as ch:
        stub = profiles_stub(ch)
        if expect_ok:
            resp = stub.Export(req, timeout=RPC_TIMEOUT)
            assert not resp.HasField("partial_success") or \
                resp.partial_success.rejected_profiles == 0, resp.partial_success.error_message
            return
        with pytest.raises(grpc.RpcError) as e:
            stub.Export(req, timeout=RPC_TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value


def span_total(server, shape, n):
    span_id = ((shape.span_prefix << 24) | 1).to_bytes(4, "big") + (n + 1).to_bytes(4, "big")
    body = Window(shape.t0).json(profileTypeID=CPU, labelSelector="{}",
                                 spanSelector=[span_id.hex()])
    fg = connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {})
    return sum(flamegraph_stacks(fg).values()) // shape.period


@pytest.mark.parametrize("spans", ["first", "last"])
def test_a_many_process_export_is_stored_whole_and_attached(spanprof, spans):
    shapes = processes(8, 11000 if spans == "first" else 12000)
    req = export_of(shapes)
    if spans == "first":
        for s in shapes:
            send_spans(spanprof, s)
    streamed = scrape(spanprof.http_port).total("spanprof_otlp_profiles_streamed_requests_total")
    send(spanprof, req)
    assert scrape(spanprof.http_port).total(
        "spanprof_otlp_profiles_streamed_requests_total") == streamed + 1  # it took this path
    if spans == "last":
        for s in shapes:
            send_spans(spanprof, s)
    for s in shapes:
        got = stored(spanprof, s)
        assert sum(got.values()) == s.observations(), s.exe
        assert got == s.expected, s.exe
    # thread 0's spans early and late, in the first, a middle and the last process
    for s in (shapes[0], shapes[3], shapes[-1]):
        for n in (0, 5, 29):
            want = span_observations(s, n)
            assert want > 0
            assert span_total(spanprof, s, n) == want, (s.exe, n)
    assert all(v == 0 for v in drops(spanprof).values()), drops(spanprof)


def test_a_large_dictionary_unpacked_aside_is_stored_whole(spanprof):
    """A dictionary of 128 KiB or more, with no other Export in hand, is unpacked on a helper
    thread beside the layout pass (otlp/decode.c L4-L6): what is stored is still exactly what
    was sent, named as sent."""
    t0 = time.time_ns() - 60_000 * MS
    shapes = [Shape(pid=13000 + 100 * i, threads=8, obs_per_thread=300, stacks=200,
                    max_ts_per_sample=2, t0=t0, seed=50 + i, exe=f"wide{i}",
                    span_prefix=40 + i, pad_bytes=80_000) for i in range(5)]
    req = export_of(shapes)
    assert req.dictionary.ByteSize() >= 160 << 10, req.dictionary.ByteSize()  # past 128 KiB
    aside = scrape(spanprof.http_port).total(
        "spanprof_otlp_profiles_dictionaries_unpacked_aside_total")
    send(spanprof, req)
    assert scrape(spanprof.http_port).total(
        "spanprof_otlp_profiles_dictionaries_unpacked_aside_total") == aside + 1
    for s in shapes:
        got = stored(spanprof, s)
        assert sum(got.values()) == s.observations(), s.exe
        assert got == s.expected, s.exe  # frame names are the padded ones the dictionary sent
    assert all(v == 0 for v in drops(spanprof).values()), drops(spanprof)


def test_a_streamed_export_whose_commit_fails_is_stored_once_after_the_retry(spanprof):
    shapes = processes(6, 13000)
    req = export_of(shapes)
    for s in shapes:
        send_spans(spanprof, s)
    inject(spanprof, "sample_chunk")
    send(spanprof, req, expect_ok=False)
    for s in shapes:
        assert stored(spanprof, s) == {}, s.exe
    heal(spanprof, "sample_chunk")
    send(spanprof, req)  # the client's retry
    for s in shapes:
        assert stored(spanprof, s) == s.expected, s.exe
    for n in (0, 14):
        assert span_total(spanprof, shapes[2], n) == span_observations(shapes[2], n)


def test_an_export_whose_last_resource_does_not_decode_is_refused_whole(spanprof):
    """Decoded one resource at a time (otlp/decode.c L1-L3), a large Export's first parts reach
    the writer before its last resource is unpacked. When that one does not decode, the whole
    Export is refused as protobuf-c refuses it whole: INVALID_ARGUMENT naming the resource, and
    nothing of the parts already written is stored."""
    shapes = processes(6, 14000)
    req = export_of(shapes)
    # resource{scope_profiles{profiles{samples{stack_index as a LEN field}}}}: the bytes walk,
    # protobuf-c refuses the Sample
    bad = bytes([0x0a, 0x09, 0x12, 0x07, 0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, 0x00])
    body = req.SerializeToString() + bad
    streamed = scrape(spanprof.http_port).total("spanprof_otlp_profiles_streamed_requests_total")
    opts = [("grpc.max_send_message_length", 100 << 20)]
    with grpc.insecure_channel(spanprof.grpc_target, options=opts) as ch:
        export = ch.unary_unary(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            export(body, timeout=RPC_TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert f"resource_profiles[{len(shapes)}]" in e.value.details(), e.value.details()
    assert "does not decode as protobuf" in e.value.details(), e.value.details()
    # its first parts were handed to the store before the bad resource was reached
    assert scrape(spanprof.http_port).total(
        "spanprof_otlp_profiles_streamed_requests_total") == streamed + 1
    for s in shapes:
        assert stored(spanprof, s) == {}, s.exe
    send(spanprof, req)  # the sender's fixed Export
    for s in shapes:
        assert stored(spanprof, s) == s.expected, s.exe


def test_with_a_pyroscope_pusher_a_large_export_is_decoded_per_resource_and_stored_whole(
        spanprof_factory):
    """With a Pyroscope cluster configured the pusher takes whole requests, so the sink declines
    the stream: the Export, decoded lazily, is unpacked whole and stored as one batch, exactly."""
    server = spanprof_factory(["--store", "sqlite,pyroscope", "--pyroscope-url",
                               "http://127.0.0.1:9"])  # nobody listens: pushes wait queued
    shapes = processes(6, 15000)
    req = export_of(shapes)
    for s in shapes:
        send_spans(server, s)
    streamed = scrape(server.http_port).total("spanprof_otlp_profiles_streamed_requests_total")
    send(server, req)
    assert scrape(server.http_port).total(
        "spanprof_otlp_profiles_streamed_requests_total") == streamed  # not streamed
    for s in shapes:
        assert stored(server, s) == s.expected, s.exe
    for n in (0, 14):
        assert span_total(server, shapes[4], n) == span_observations(shapes[4], n)
