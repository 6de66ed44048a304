"""Profiles in over gRPC (grpcio + the official opentelemetry-proto stubs) and OTLP/HTTP."""

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

from e2e_helpers import (
    PROFILES_METHOD,
    RPC_TIMEOUT,
    cpu_profile_request,
    encode_request_with_raw_samples,
    post_protobuf,
    profiles_stub,
    raw_unary,
    sample_new_layout,
    sample_old_layout,
    scrape,
    wait_for_metric,
)

Resp = profiles_service_pb2.ExportProfilesServiceResponse


def accepted_profiles(port, want):
    m = wait_for_metric(port, lambda m: m.total("spanprof_accepted_items_total", "profile") >= want)
    return m.total("spanprof_accepted_items_total", "profile")


def assert_full_success(resp):
    assert not resp.HasField("partial_success") or (
        resp.partial_success.rejected_profiles == 0 and not resp.partial_success.error_message
    ), f"unexpected partial_success: {resp.partial_success}"


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.NoCompression],
                         ids=["gzip", "identity"])
@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_cpu_profile_export_ok(spanprof, compression, port_name):
    req, _ = cpu_profile_request(n_profiles=2, samples_per_profile=6)
    target = f"127.0.0.1:{getattr(spanprof, port_name)}"
    with grpc.insecure_channel(target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT, compression=compression)
    assert_full_success(resp)
    assert accepted_profiles(spanprof.http_port, 2) == 2
    m = scrape(spanprof.http_port)
    assert m.total("spanprof_rejected_items_total", "profile") == 0
    assert m.total("spanprof_requests_total", "profile") == 1, m.series("spanprof_requests_total")
    assert m.total("spanprof_received_bytes_total", "profile") > 0


def test_many_exports_on_one_channel(spanprof):
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        stub = profiles_stub(ch)
        for i in range(20):
            req, _ = cpu_profile_request(samples_per_profile=3 + i, pid=1000 + i)
            assert_full_success(stub.Export(req, timeout=RPC_TIMEOUT, compression=grpc.Compression.Gzip))
    assert accepted_profiles(spanprof.http_port, 20) == 20


def test_concurrent_streams_on_one_channel(spanprof):
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        stub = profiles_stub(ch)
        futures = [stub.Export.future(cpu_profile_request(samples_per_profile=10)[0], timeout=RPC_TIMEOUT)
                   for _ in range(16)]
        for f in futures:
            assert_full_success(f.result())
    assert accepted_profiles(spanprof.http_port, 16) == 16
    m = scrape(spanprof.http_port)
    assert m.inflight() == 0, m.series("spanprof_inflight_requests")


def test_stack_index_out_of_range_is_a_partial_success(spanprof):
    req, dic = cpu_profile_request(n_profiles=3, samples_per_profile=4)
    n_stacks = len(dic.d.stack_table)
    req.resource_profiles[0].scope_profiles[0].profiles[1].samples[2].stack_index = n_stacks + 900
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT, compression=grpc.Compression.Gzip)
    assert resp.partial_success.rejected_profiles == 1, resp
    assert resp.partial_success.error_message, "partial_success without an error_message"
    assert accepted_profiles(spanprof.http_port, 2) == 2
    assert scrape(spanprof.http_port).total("spanprof_rejected_items_total", "profile") == 1


@pytest.mark.parametrize("breakage", ["negative_stack_index", "attribute_index_out_of_range",
                                      "link_index_out_of_range", "location_index_out_of_range",
                                      "string_index_out_of_range"])
def test_bad_dictionary_references_are_rejected_not_crashing(spanprof, breakage):
    """Every index is bounds-checked: a bad one rejects its profile (partial success)."""
    req, dic = cpu_profile_request(n_profiles=2, samples_per_profile=3)
    bad = req.resource_profiles[0].scope_profiles[0].profiles[0]
    if breakage == "negative_stack_index":
        bad.samples[0].stack_index = -5
    elif breakage == "attribute_index_out_of_range":
        bad.samples[1].attribute_indices.append(len(dic.d.attribute_table) + 10)
    elif breakage == "link_index_out_of_range":
        bad.samples[2].link_index = len(dic.d.link_table) + 3
    elif breakage == "location_index_out_of_range":
        st = req.dictionary.stack_table[bad.samples[0].stack_index]
        st.location_indices.append(len(req.dictionary.location_table) + 7)
        # All profiles share the stack: give the other profile its own intact stack.
        good_stack = req.dictionary.stack_table.add()
        good_stack.location_indices.extend([1, 2])
        for s in req.resource_profiles[0].scope_profiles[0].profiles[1].samples:
            s.stack_index = len(req.dictionary.stack_table) - 1
    elif breakage == "string_index_out_of_range":
        bad.sample_type.type_strindex = len(dic.d.string_table) + 50
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_profiles == 1, resp
    assert resp.partial_success.error_message
    assert accepted_profiles(spanprof.http_port, 1) == 1


def test_hand_encoder_matches_protobuf_for_the_current_layout():
    """Guards the old-layout test below: the hand encoder agrees with the protobuf library."""
    s = profiles_pb2.Sample(stack_index=3, attribute_indices=[1, 2], link_index=1, values=[7, 9],
                            timestamps_unix_nano=[10**18, 10**18 + 5])
    assert sample_new_layout(3, [1, 2], 1, [7, 9], [10**18, 10**18 + 5]) == s.SerializeToString()


def _old_layout_request(with_link, with_values=True):
    req, dic = cpu_profile_request(n_profiles=2, samples_per_profile=3)
    link = dic.link(b"\x11" * 16, b"\x22" * 8) if with_link else 0
    req.dictionary.CopyFrom(dic.d)
    raw = []
    for prof in req.resource_profiles[0].scope_profiles[0].profiles:
        samples = []
        for s in prof.samples:
            # Values large enough that a decoder reading them as v1.10 attribute_indices would
            # find them out of range (and reject), and timestamps of equal length. Without
            # values: the eBPF profiler's v1.9 CPU sample (timestamps + attributes only).
            values = [50_000_000, 50_000_000] if with_values else []
            samples.append(sample_old_layout(s.stack_index, list(s.attribute_indices), link,
                                             values, list(s.timestamps_unix_nano)))
        raw.append(samples)
    return encode_request_with_raw_samples(req, raw)


@pytest.mark.parametrize("with_link,with_values", [(True, True), (False, True), (False, False), (True, False)],
                         ids=["link_values", "values", "timestamps_only", "link_timestamps_only"])
def test_old_v1_9_sample_layout_is_accepted(spanprof, with_link, with_values):
    payload = _old_layout_request(with_link, with_values)
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = raw_unary(ch, PROFILES_METHOD, Resp)(payload, timeout=RPC_TIMEOUT, compression=grpc.Compression.Gzip)
    assert_full_success(resp)
    assert accepted_profiles(spanprof.http_port, 2) == 2
    assert scrape(spanprof.http_port).total("spanprof_rejected_items_total", "profile") == 0


def test_old_layout_over_http(spanprof):
    status, _, body = post_protobuf(spanprof.http_port, "/v1development/profiles", _old_layout_request(True))
    assert status == 200, body
    assert_full_success(Resp.FromString(body))
    assert accepted_profiles(spanprof.http_port, 2) == 2


@pytest.mark.parametrize("gz", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("port_name", ["http_port", "grpc_port"])
def test_http_profiles_ok(spanprof, gz, port_name):
    req, _ = cpu_profile_request(n_profiles=3)
    status, headers, body = post_protobuf(getattr(spanprof, port_name), "/v1development/profiles",
                                          req.SerializeToString(), gzip_body=gz)
    assert status == 200, body
    assert headers.get("content-type", "").startswith("application/x-protobuf"), headers
    assert_full_success(Resp.FromString(body))
    assert accepted_profiles(spanprof.http_port, 3) == 3


def test_several_bad_samples_reject_their_profile_once(spanprof):
    req, _ = cpu_profile_request(n_profiles=3, samples_per_profile=5)
    bad = req.resource_profiles[0].scope_profiles[0].profiles[2]
    for i in (0, 2, 4):
        bad.samples[i].stack_index = 777 + i
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_profiles == 1, resp
    assert accepted_profiles(spanprof.http_port, 2) == 2


def test_http_profiles_partial_success(spanprof):
    req, dic = cpu_profile_request(n_profiles=2)
    req.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 10_000
    status, _, body = post_protobuf(spanprof.http_port, "/v1development/profiles", req.SerializeToString())
    assert status == 200, body
    resp = Resp.FromString(body)
    assert resp.partial_success.rejected_profiles == 1
    assert resp.partial_success.error_message


def test_partial_success_message_names_the_problem(spanprof):
    """The error message is one a user can act on: it names the out-of-range index."""
    req, _ = cpu_profile_request(n_profiles=1)
    req.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 987
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_profiles == 1
    assert "987" in resp.partial_success.error_message, resp.partial_success.error_message
