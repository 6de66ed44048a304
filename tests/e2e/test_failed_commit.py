"""A commit that fails, then the client's retry (invariant I4 of correlator/correlator.c).

The store's failure is injected the way a full disk or a database cap would show: a trigger,
added through a second connection to the server's own SQLite file, aborts the insert the
transaction needs. The export is answered with an error, the trigger is removed, and the client
sends the same export again, as OTLP exporters do. What the span's flame graph then shows must be
every observation once: the retried span export claims the earlier samples again (it is not
"already seen"), and a retried profile export does not leave its samples waiting twice.
"""
import sqlite3
import time

import grpc
import pytest

from e2e_helpers import RPC_TIMEOUT, profiles_stub, traces_stub
from ebpf_shapes import MS, Shape
from test_query import CPU, Window, connect_json, flamegraph_stacks


def inject(server, table):
    db = sqlite3.connect(str(server.workdir / "data" / "spanprof.db"), timeout=30)
    db.executescript(f"CREATE TABLE IF NOT EXISTS inject(x);"
                     f"CREATE TRIGGER inject_{table} BEFORE INSERT ON {table} "
                     f"BEGIN SELECT RAISE(ABORT, 'injected failure'); END;")
    db.close()


def heal(server, table):
    db = sqlite3.connect(str(server.workdir / "data" / "spanprof.db"), timeout=30)
    db.executescript(f"DROP TRIGGER inject_{table};")
    db.close()


def export(server, kind, req, expect_ok=True):
    with grpc.insecure_channel(server.grpc_target) as ch:
        stub = profiles_stub(ch) if kind == "profiles" else traces_stub(ch)
        if expect_ok:
            stub.Export(req, timeout=RPC_TIMEOUT)
            return
        with pytest.raises(grpc.RpcError) as e:
            stub.Export(req, timeout=RPC_TIMEOUT)
        assert e.value.code() != grpc.StatusCode.OK


def first_span_total(server, shape):
    span_id = (1).to_bytes(4, "big") + (1).to_bytes(4, "big")  # thread 0's first span
    body = Window(shape.t0).json(profileTypeID=CPU, labelSelector="{}", spanSelector=[span_id.hex()])
    fg = connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {})
    return sum(flamegraph_stacks(fg).values()) // shape.period


def shape_one_thread():
    # one thread, 20 observations at 100 Hz; spans of 100 ms from t0 - 33 ms
    return Shape(pid=9100, threads=1, obs_per_thread=20, stacks=2, t0=time.time_ns() - 60_000 * MS)


def observations_in_first_span(shape):
    from test_nothing_lost import span_observations
    return span_observations(shape, 0)


def test_span_export_retried_after_a_failed_commit_claims_the_samples_again(spanprof):
    shape = shape_one_thread()
    export(spanprof, "profiles", shape.profile_request())  # samples wait for their spans
    spans = shape.span_requests()
    inject(spanprof, "span")
    export(spanprof, "traces", spans[0], expect_ok=False)
    heal(spanprof, "span")
    export(spanprof, "traces", spans[0])  # the client's retry
    want = observations_in_first_span(shape)
    assert want > 0
    assert first_span_total(spanprof, shape) == want


def test_profile_export_retried_after_a_failed_commit_attaches_once(spanprof):
    shape = shape_one_thread()
    req = shape.profile_request()
    inject(spanprof, "sample_chunk")
    export(spanprof, "profiles", req, expect_ok=False)
    heal(spanprof, "sample_chunk")
    export(spanprof, "profiles", req)  # the client's retry
    export(spanprof, "traces", shape.span_requests()[0])  # the spans come after
    assert first_span_total(spanprof, shape) == observations_in_first_span(shape)
