"""Grafana's default "Profiles for this span" query on eBPF data (issue 14, part 1).

The eBPF profiler sends no service.name: its series are service_name="unknown_service:<exe>".
Tempo's link maps the span's service.name to service_name and calls SelectMergeSpanProfile with
{service_name="<the span's service>"} and the span id. A process learns its service from its
spans (same process.pid, compatible host/container identity): span queries naming the span's own
service return the span's samples whenever they were stored, service queries include every
profile of the process stored after its first span arrived, and a sender's own service.name is
never replaced. Oracles: the shape's own arithmetic (ebpf_shapes.py), never the server.
"""
import time

from ebpf_shapes import MS, Shape
from test_failed_commit import export
from test_nothing_lost import span_observations
from test_query import (CPU, Window, connect_json, connect_proto, flamegraph_from_proto,
                        flamegraph_stacks, pb_fields, pb_int, pb_string)

SVC = "checkout"


def shape(pid, exe):
    return Shape(pid=pid, threads=3, obs_per_thread=60, stacks=3, exe=exe,
                 t0=time.time_ns() - 60_000 * MS)


def first_span_id():
    return (1).to_bytes(4, "big") + (1).to_bytes(4, "big")  # thread 0's first span


def grafana_span_query_json(server, s, service):
    body = Window(s.t0).json(profileTypeID=CPU, labelSelector=f'{{service_name="{service}"}}',
                             spanSelector=[first_span_id().hex()])
    fg = connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {})
    return sum(flamegraph_stacks(fg).values()) // s.period


def grafana_span_query_proto(server, s, service):
    """Exactly what Grafana's Pyroscope data source sends: Connect proto, field 3 = span ids."""
    w = Window(s.t0)
    req = pb_string(1, CPU) + pb_string(2, f'{{service_name="{service}"}}') + \
        pb_string(3, first_span_id().hex()) + pb_int(4, w.start) + pb_int(5, w.end)
    resp = pb_fields(connect_proto(server, "SelectMergeSpanProfile", req))
    return sum(flamegraph_stacks(flamegraph_from_proto(resp[1][0])).values()) // s.period


def service_total(server, s, selector):
    body = Window(s.t0).json(profileTypeID=CPU, labelSelector=selector, maxNodes=100000)
    fg = connect_json(server, "SelectMergeStacktraces", body)["flamegraph"]
    return sum(flamegraph_stacks(fg).values()) // s.period


def label_values(server, s, name, selector="{}"):
    body = Window(s.t0).json(name=name, matchers=[selector])
    return set(connect_json(server, "LabelValues", body).get("names", []))


def test_spans_first_then_ebpf_profiles_answer_the_grafana_default_query(spanprof):
    s = shape(9300, "py-app")
    for req in s.span_requests(service=SVC):
        export(spanprof, "traces", req)
    export(spanprof, "profiles", s.profile_request())
    want = span_observations(s, 0)
    assert want > 0
    assert grafana_span_query_json(spanprof, s, SVC) == want
    assert grafana_span_query_proto(spanprof, s, SVC) == want
    # the service query has every sample of the process (all stored after its spans)
    assert service_total(spanprof, s, f'{{service_name="{SVC}"}}') == s.observations()
    assert SVC in label_values(spanprof, s, "service_name")
    # the sender's own labels stay: the executable and the pid
    assert "py-app" in label_values(spanprof, s, "process_executable_name",
                                    f'{{service_name="{SVC}"}}')


def test_profiles_first_span_query_still_finds_the_samples(spanprof):
    """Stored before the process's first span: the samples keep unknown_service:<exe> (documented),
    and the span query naming the span's service still returns them."""
    s = shape(9400, "py-early")
    export(spanprof, "profiles", s.profile_request())
    for req in s.span_requests(service=SVC):
        export(spanprof, "traces", req)
    assert grafana_span_query_json(spanprof, s, SVC) == span_observations(s, 0) > 0
    assert grafana_span_query_proto(spanprof, s, SVC) == span_observations(s, 0)
    assert service_total(spanprof, s, '{service_name="unknown_service:py-early"}') == \
        s.observations()
    # another service's name is still a filter
    assert grafana_span_query_json(spanprof, s, "billing") == 0


def test_a_senders_own_service_name_wins(spanprof):
    s = shape(9500, "py-named")
    for req in s.span_requests(service=SVC):
        export(spanprof, "traces", req)
    req = s.profile_request()
    kv = req.resource_profiles[0].resource.attributes.add(key="service.name")
    kv.value.string_value = "billing"
    export(spanprof, "profiles", req)
    assert service_total(spanprof, s, '{service_name="billing"}') == s.observations()
    assert service_total(spanprof, s, f'{{service_name="{SVC}"}}') == 0
