"""GET /metrics: Prometheus text format with per-endpoint counters that match what clients did."""

import grpc

from e2e_helpers import (
    RPC_TIMEOUT,
    _resource,
    cpu_profile_request,
    http_request,
    post_protobuf,
    profiles_stub,
    scrape,
    trace_request,
    traces_stub,
    wait_for_metric,
)

METRICS = {
    "spanprof_requests_total": "counter",
    "spanprof_received_bytes_total": "counter",
    "spanprof_rejected_items_total": "counter",
    "spanprof_accepted_items_total": "counter",
    "spanprof_inflight_requests": "gauge",
}


def test_metrics_is_prometheus_text_with_help_and_type(spanprof):
    # Touch both OTLP signals once so that per-endpoint series exist.
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        profiles_stub(ch).Export(cpu_profile_request()[0], timeout=RPC_TIMEOUT)
        traces_stub(ch).Export(trace_request([b"\x01" * 8]), timeout=RPC_TIMEOUT)
    status, headers, body = http_request(spanprof.http_port, "GET", "/metrics")
    assert status == 200
    ctype = headers.get("content-type", "")
    assert ctype.startswith("text/plain"), ctype
    text = body.decode("utf-8")
    m = scrape(spanprof.http_port)  # raises on a malformed sample line
    for name, kind in METRICS.items():
        assert f"# TYPE {name} {kind}" in text, f"missing '# TYPE {name} {kind}'"
        assert f"# HELP {name} " in text, f"missing HELP for {name}"
        assert m.series(name), f"no series for {name}"
        for labels, _ in m.series(name):
            assert "endpoint" in labels, f"{name} series without an endpoint label: {labels}"
    for labels, _ in m.series("spanprof_requests_total"):
        assert "code" in labels, f"spanprof_requests_total without a code label: {labels}"
    assert m.series("spanprof_requests_total", "trace") and m.series("spanprof_requests_total", "profile")


def test_counters_match_mixed_traffic(spanprof):
    """gRPC and HTTP, good and partly bad batches, for both signals: the counters add up."""
    good_profiles, _ = cpu_profile_request(n_profiles=3)
    bad_profiles, _ = cpu_profile_request(n_profiles=2)
    bad_profiles.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 4242
    good_spans = trace_request([bytes([i]) * 8 for i in range(1, 5)])
    bad_spans = trace_request([b"\x01" * 8, b"\x02" * 4, b"\x03" * 9])
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        p, t = profiles_stub(ch), traces_stub(ch)
        assert p.Export(good_profiles, timeout=RPC_TIMEOUT).partial_success.rejected_profiles == 0
        assert p.Export(bad_profiles, timeout=RPC_TIMEOUT).partial_success.rejected_profiles == 1
        assert t.Export(good_spans, timeout=RPC_TIMEOUT).partial_success.rejected_spans == 0
        assert t.Export(bad_spans, timeout=RPC_TIMEOUT).partial_success.rejected_spans == 2
    assert post_protobuf(spanprof.http_port, "/v1development/profiles", good_profiles.SerializeToString())[0] == 200
    assert post_protobuf(spanprof.grpc_port, "/v1/traces", bad_spans.SerializeToString())[0] == 200

    want = {"profile": (3 + 1 + 3, 1), "trace": (4 + 1 + 1, 2 + 2)}
    m = wait_for_metric(spanprof.http_port, lambda m: all(
        m.total("spanprof_accepted_items_total", sig) >= acc for sig, (acc, _) in want.items()))
    for sig, (acc, rej) in want.items():
        assert m.total("spanprof_accepted_items_total", sig) == acc, (sig, m.series("spanprof_accepted_items_total"))
        assert m.total("spanprof_rejected_items_total", sig) == rej, (sig, m.series("spanprof_rejected_items_total"))
        assert m.total("spanprof_requests_total", sig) == 3, (sig, m.series("spanprof_requests_total"))
        assert m.total("spanprof_inflight_requests", sig) == 0
    sizes = {"profile": 2 * good_profiles.ByteSize() + bad_profiles.ByteSize(),
             "trace": good_spans.ByteSize() + 2 * bad_spans.ByteSize()}
    for sig, size in sizes.items():
        # Bytes as received (gRPC framing adds 5 bytes a message); never less than the payloads.
        got = m.total("spanprof_received_bytes_total", sig)
        assert size <= got <= size + 3 * 1024, (sig, got, size)


def test_counters_only_grow_and_count_gzip_exports(spanprof):
    """Whatever the server counts, a gzip export adds a positive amount and the scrape stays consistent
    across two scrapes (counters never go down)."""
    before = scrape(spanprof.http_port)
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        profiles_stub(ch).Export(cpu_profile_request(samples_per_profile=100)[0], timeout=RPC_TIMEOUT,
                                 compression=grpc.Compression.Gzip)
    after = wait_for_metric(spanprof.http_port,
                            lambda m: m.total("spanprof_accepted_items_total", "profile") >= 1)
    assert after.total("spanprof_received_bytes_total", "profile") > before.total("spanprof_received_bytes_total", "profile")
    for name in ("spanprof_requests_total", "spanprof_received_bytes_total", "spanprof_accepted_items_total"):
        assert after.total(name) >= before.total(name)


def test_counters_are_exported_from_start(spanprof):
    """A fresh server exports its event counters at 0 (a dashboard's rate() needs the series
    before the first event; issue 21): nothing has been sent to it yet."""
    m = scrape(spanprof.http_port)
    for name in ("spanprof_accepted_connections_total", "spanprof_accept_errors_total",
                 "spanprof_header_timeouts_total",
                 "spanprof_otlp_profiles_v1_9_layout_requests_total",
                 "spanprof_otlp_http_json_traces_requests_total",
                 "spanprof_otlp_http_json_profiles_requests_total",
                 "spanprof_span_attributes_truncated_total",
                 "spanprof_span_attributes_damaged_total"):
        series = m.series(name)
        assert series, f"{name} is not exported by a fresh server"
    assert m.total("spanprof_otlp_http_json_traces_requests_total") == 0
    assert m.total("spanprof_span_attributes_damaged_total") == 0


def test_a_large_export_counts_its_worker_s_waits(spanprof):
    """An Export large enough to be converted, correlated and stored in parts (two resources,
    10,000 samples) counts where its worker waited after converting the last part: for the stage
    thread's correlation and for the store's commit, exported from start at 0."""
    names = ("spanprof_ingest_stage_drain_microseconds_total",
             "spanprof_ingest_commit_wait_microseconds_total")
    before = scrape(spanprof.http_port)
    for name in names:
        assert before.series(name), f"{name} is not exported by a fresh server"
        assert before.total(name) == 0
    req, _ = cpu_profile_request(samples_per_profile=5000, pid=4301)
    second = req.resource_profiles.add()
    second.CopyFrom(req.resource_profiles[0])
    second.resource.CopyFrom(_resource(4302, "e2e-svc"))
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    after = wait_for_metric(spanprof.http_port,
                            lambda m: m.total("spanprof_accepted_items_total", "profile") >= 2)
    assert after.total("spanprof_ingest_commit_wait_microseconds_total") > 0
