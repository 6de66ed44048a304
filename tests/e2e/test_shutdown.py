"""Graceful shutdown: SIGTERM with idle keep-alive connections and with exports in flight."""

import signal
import socket
import threading
import time

import grpc

from e2e_helpers import H2_PREFACE, FRAME_SETTINGS, cpu_profile_request, h2_frame, profiles_stub


def test_sigterm_with_idle_connections_exits_promptly(spanprof):
    """Idle HTTP/1.1 keep-alive and h2c connections do not hold the process open."""
    idle = []
    for port in spanprof.ports():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        idle.append(s)
        h2 = socket.create_connection(("127.0.0.1", port), timeout=10)
        h2.sendall(H2_PREFACE + h2_frame(FRAME_SETTINGS, 0, 0, b""))
        idle.append(h2)
    ch = grpc.insecure_channel(spanprof.grpc_target)
    profiles_stub(ch).Export(cpu_profile_request()[0], timeout=10)
    try:
        t0 = time.monotonic()
        rc = spanprof.stop(signal.SIGTERM)
        took = time.monotonic() - t0
    finally:
        ch.close()
        for s in idle:
            s.close()
    assert rc == 0, f"exit {rc}\n{spanprof.stderr()[-3000:]}"
    assert took < 10, f"shutdown took {took:.1f} s with idle connections open"


def test_sigterm_with_exports_in_flight(spanprof_factory):
    """Exports already sent when SIGTERM arrives finish OK, or are refused with a retryable
    status (UNAVAILABLE); none is lost silently with another code, and the exit is 0."""
    s = spanprof_factory(["--workers", "1"])
    req, _ = cpu_profile_request(n_profiles=4, samples_per_profile=20000, extra_stacks=200)
    ch = grpc.insecure_channel(s.grpc_target)
    stub = profiles_stub(ch)
    futures = [stub.Export.future(req, timeout=30) for _ in range(6)]
    time.sleep(0.2)
    stopper = threading.Thread(target=s.stop, args=(signal.SIGTERM,))
    stopper.start()
    codes = []
    for f in futures:
        try:
            f.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
    stopper.join(30)
    ch.close()
    assert s.returncode == 0, f"exit {s.returncode}\n{s.stderr()[-3000:]}"
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes.count(grpc.StatusCode.OK) >= 1, f"no export in flight finished: {codes}"
