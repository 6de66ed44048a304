"""Refusals are visible: a request refused whole or in part is logged (rate-limited, with the
endpoint, tenant, client address and reason) and counted by reason in /metrics, so an operator
whose sender "works" but stores nothing can see why."""
import grpc
import pytest

from e2e_helpers import RPC_TIMEOUT, PROFILES_METHOD, cpu_profile_request, http_request, raw_unary, scrape


def refused(server, reason):
    m = scrape(server.http_port)
    return sum(v for lab, v in m.series("spanprof_requests_refused_total") if lab.get("reason") == reason)


def test_a_garbage_export_is_logged_and_counted(spanprof):
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        call = raw_unary(ch, PROFILES_METHOD)
        with pytest.raises(grpc.RpcError) as e:
            call(b"\x0a\xff\xff\xff\x0f", timeout=RPC_TIMEOUT, metadata=[("x-scope-orgid", "team-a")])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(spanprof, "invalid_argument") == 1
    log = spanprof.stderr()
    line = [l for l in log.splitlines() if "request refused" in l][-1]
    for part in ("endpoint=otlp_grpc_profiles", 'tenant="team-a"', "client=127.0.0.1:",
                 'reason="invalid argument"'):
        assert part in line, line


def test_a_partly_rejected_export_is_counted_as_partial(spanprof):
    req, d = cpu_profile_request(n_profiles=2)
    # the second profile points at a stack that does not exist: rejected, the first stored
    req.resource_profiles[0].scope_profiles[0].profiles[1].samples[0].stack_index = 9999
    with grpc.insecure_channel(spanprof.grpc_target) as ch:
        from e2e_helpers import profiles_stub
        resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
    assert resp.partial_success.rejected_profiles == 1
    assert refused(spanprof, "partial") == 1
    assert "request refused in part" in spanprof.stderr()


def test_a_wrong_media_type_names_what_is_accepted(spanprof):
    status, _h, body = http_request(spanprof.http_port, "POST", "/v1development/profiles",
                                    body=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    assert b"application/x-protobuf" in body
    assert refused(spanprof, "media_type") == 1
