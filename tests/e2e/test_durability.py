"""kill -9 at any moment loses nothing that was acknowledged, and never leaves half a request.

A client exports CPU profiles over gRPC in a loop, each request under its own service name with a
known total, while the test SIGKILLs the real binary at a random moment; the next round starts a new
server on the same data directory. At the end every acknowledged request must be stored in full,
and every request that is stored at all (acknowledged or not) must be stored in full.
"""
import random
import threading
import time

import grpc

from e2e_helpers import RPC_TIMEOUT, cpu_profile_request, profiles_stub
from test_query import CPU, Window, connect_json

ROUNDS = 5


def request_total(req):
    total = 0
    for rp in req.resource_profiles:
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                for s in p.samples:
                    n = sum(s.values) if s.values else len(s.timestamps_unix_nano)
                    total += n * p.period
    return total


def kill_hard(server):
    server.proc.kill()
    server.proc.wait()
    server.stopped = True  # killed on purpose: the fixture must not expect a clean exit
    server.returncode = 0


def test_kill_9_loses_nothing_acknowledged(spanprof_factory):
    rng = random.Random(1234)
    t0 = time.time_ns() - 60_000_000_000
    acked, sent = {}, {}
    for rnd in range(ROUNDS):
        server = spanprof_factory(name="crash")
        stop = threading.Event()

        def client():
            i = 0
            with grpc.insecure_channel(server.grpc_target) as ch:
                stub = profiles_stub(ch)
                while not stop.is_set():
                    svc = f"kill-{rnd}-{i}"
                    req, _ = cpu_profile_request(samples_per_profile=rng.randint(1, 40), service=svc,
                                                 start_ns=t0, extra_stacks=3)
                    sent[svc] = request_total(req)
                    try:
                        resp = stub.Export(req, timeout=RPC_TIMEOUT)
                    except grpc.RpcError:
                        return  # the server died under this request: it was never acknowledged
                    assert not resp.HasField("partial_success")
                    acked[svc] = sent[svc]
                    i += 1

        t = threading.Thread(target=client)
        t.start()
        time.sleep(rng.uniform(0.2, 1.0))
        kill_hard(server)
        stop.set()
        t.join(timeout=30)
        assert not t.is_alive()
    assert len(acked) > ROUNDS, "the client hardly got anything acknowledged; the test proves nothing"

    final = spanprof_factory(name="crash")
    res = connect_json(final, "SelectSeries", Window(t0).json(
        profileTypeID=CPU, labelSelector='{service_name=~"kill-.*"}', step=3600,
        groupBy=["service_name"]))
    stored = {}
    for s in res.get("series", []):
        svc = {l["name"]: l["value"] for l in s["labels"]}["service_name"]
        stored[svc] = sum(int(p["value"]) for p in s["points"])
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"acknowledged but lost after kill -9: {missing[:10]}"
    for svc, total in stored.items():
        assert svc in sent, f"stored a request nobody sent: {svc}"
        assert total == sent[svc], f"{svc}: stored {total} of {sent[svc]} (half a request)"
