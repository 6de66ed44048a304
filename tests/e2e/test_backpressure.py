"""A full ingest queue answers at once with the OTLP retry signal instead of buffering without bound."""

import concurrent.futures as cf
from email.utils import parsedate

import grpc
import pytest

from e2e_helpers import (
    RPC_TIMEOUT,
    cpu_profile_request,
    post_protobuf,
    profiles_stub,
    scrape,
)

pytestmark = pytest.mark.slow

BURST = 48


@pytest.fixture
def tiny_queue_server(spanprof_factory):
    return spanprof_factory(["--queue-size", "1", "--workers", "1"])


class _Heavy:
    """Holds the big request without letting pytest print it in a failure report."""

    def __init__(self, req):
        self.req = req

    def __repr__(self):
        return f"<request of {self.req.ByteSize()} bytes>"


@pytest.fixture(scope="module")
def heavy():
    # Large enough that one worker needs a noticeable time to decode and store it.
    return _Heavy(cpu_profile_request(n_profiles=4, samples_per_profile=20000, extra_stacks=500)[0])


def test_grpc_queue_full_is_resource_exhausted(tiny_queue_server, heavy):
    s = tiny_queue_server
    with grpc.insecure_channel(s.grpc_target) as ch:
        stub = profiles_stub(ch)
        futures = [stub.Export.future(heavy.req, timeout=60) for _ in range(BURST)]
        codes = []
        for f in futures:
            try:
                f.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    exhausted = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    ok = codes.count(grpc.StatusCode.OK)
    assert exhausted > 0, f"{BURST} concurrent exports into a 1-slot queue: none was RESOURCE_EXHAUSTED ({codes})"
    assert ok > 0, f"none succeeded: {codes}"
    assert ok + exhausted == BURST, f"unexpected codes: {set(codes)}"
    # Once the burst is over, exports succeed again.
    with grpc.insecure_channel(s.grpc_target) as ch:
        resp = profiles_stub(ch).Export(cpu_profile_request()[0], timeout=RPC_TIMEOUT)
        assert resp.partial_success.rejected_profiles == 0
    assert scrape(s.http_port).inflight() == 0


def test_http_queue_full_is_429_with_retry_after(tiny_queue_server, heavy):
    s = tiny_queue_server
    payload = heavy.req.SerializeToString()

    def post(_):
        return post_protobuf(s.http_port, "/v1development/profiles", payload)

    with cf.ThreadPoolExecutor(max_workers=BURST) as pool:
        results = list(pool.map(post, range(BURST)))
    statuses = [st for st, _, _ in results]
    throttled = [(st, h) for st, h, _ in results if st == 429]
    assert throttled, f"{BURST} concurrent POSTs into a 1-slot queue: no 429 ({statuses})"
    assert all(st in (200, 429) for st in statuses), statuses
    for _, headers in throttled:
        ra = headers.get("retry-after")
        assert ra is not None, f"429 without Retry-After: {headers}"
        # RFC 9110 §10.2.3: delay-seconds or an HTTP-date.
        assert (ra.strip().isdigit() and int(ra) >= 1) or parsedate(ra), f"bad Retry-After: {ra!r}"
    assert post_protobuf(s.http_port, "/v1development/profiles",
                         cpu_profile_request()[0].SerializeToString())[0] == 200
