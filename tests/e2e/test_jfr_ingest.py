"""JFR from Java: /ingest?format=jfr, raw and as the Pyroscope Java agent's multipart form (`jfr`
and `labels` parts), with the recordings of tests/data/jfr (made with OpenJDK 17 and the
async-profiler inside io.pyroscope:agent 2.9.2; README there). What the user sees: the flame
graph under Pyroscope's type ids with the hot method on top, and a span's profile from the
agent's span labels."""
import gzip
import os
import time

from e2e_helpers import http_request
from test_query import CPU, Window, connect_json, flamegraph_stacks

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "jfr")


def recording(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field, v):
    return varint(field << 3) + varint(v)


def labels_snapshot(context, pairs):
    """LabelsSnapshot{contexts: {context: Context{labels: {k: v}}}, strings: {...}} (string ids)."""
    strings, labels = {}, b""
    for k, v in pairs:
        for s in (k, v):
            strings.setdefault(s, len(strings) + 1)
        labels += ld(1, vi(1, strings[k]) + vi(2, strings[v]))
    body = ld(1, vi(1, context) + ld(2, labels))
    for s, i in strings.items():
        body += ld(2, vi(1, i) + ld(2, s.encode()))
    return body


def leaves(fg):
    out = {}
    for stack, v in flamegraph_stacks(fg).items():
        out[stack[-1]] = out.get(stack[-1], 0) + v
    return out


def cpu_graph(server, t0, service, span=None):
    w = Window(t0)
    body = w.json(profileTypeID=CPU, labelSelector=f'{{service_name="{service}"}}')
    if span:
        body["spanSelector"] = [span]
        return connect_json(server, "SelectMergeSpanProfile", body).get("flamegraph", {})
    return connect_json(server, "SelectMergeStacktraces", body)["flamegraph"]


def test_a_raw_jfr_body_is_a_cpu_flame_graph(spanprof):
    t0 = time.time_ns()
    # JFR timestamps are the recording's: query from long before it
    status, _, body = http_request(spanprof.http_port, "POST",
                                   "/ingest?name=java-raw&format=jfr&sampleRate=100",
                                   body=recording("profile.jfr"),
                                   headers={"Content-Type": "application/octet-stream"})
    assert status == 200, body
    fg = cpu_graph(spanprof, t0 - 400 * 86400 * 10**9, "java-raw")
    got = leaves(fg)
    assert got, "no CPU samples"
    assert max(got, key=got.get) == "Hot.fib"
    assert got["Hot.fib"] * 2 > sum(got.values())
    types = {t.get("ID", t.get("id")) for t in connect_json(
        spanprof, "ProfileTypes", Window(t0 - 400 * 86400 * 10**9).json()).get("profileTypes", [])}
    assert "block:delay:nanoseconds:block:count" in types or "mutex:delay:nanoseconds:mutex:count" in types


def test_the_java_agents_multipart_form_with_span_labels(spanprof):
    t0 = time.time_ns()
    boundary = "agent-boundary"
    labels = labels_snapshot(7, [("span_id", "aabbccddeeff0011"), ("span_name", "GET /fib"),
                                 ("vehicle", "car")])
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jfr\"; filename=\"jfr\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + gzip.compress(recording("ap-cpu.jfr")) + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"labels\"; filename=\"labels\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n").encode() + labels + f"\r\n--{boundary}--\r\n".encode()
    status, _, body = http_request(spanprof.http_port, "POST",
                                   "/ingest?name=java-agent{env=e2e}&format=jfr&sampleRate=100&spyName=javaspy",
                                   body=form,
                                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, body
    long_ago = t0 - 400 * 86400 * 10**9
    whole = leaves(cpu_graph(spanprof, long_ago, "java-agent"))
    assert max(whole, key=whole.get) == "Hot.fib"
    # the burner thread ran in context 7: its samples are the span's
    span = leaves(cpu_graph(spanprof, long_ago, "java-agent", span="aabbccddeeff0011"))
    assert span and max(span, key=span.get) == "Hot.fib"
    assert span["Hot.fib"] == whole["Hot.fib"]
    # the context's other labels are series labels, as in Pyroscope (Pyroscope.LabelsWrapper)
    w = Window(long_ago)
    assert "car" in connect_json(spanprof, "LabelValues", w.json(name="vehicle")).get("names", [])
    body = w.json(profileTypeID=CPU, labelSelector='{service_name="java-agent", vehicle="car"}')
    car = leaves(connect_json(spanprof, "SelectMergeStacktraces", body)["flamegraph"])
    assert car == span  # exactly the burner thread's context
    assert "GET /fib" in connect_json(spanprof, "LabelValues", w.json(name="span_name")).get("names", [])


def test_an_unknown_format_is_415_naming_the_accepted_ones(spanprof):
    status, _, body = http_request(spanprof.http_port, "POST", "/ingest?name=x&format=speedscope",
                                   body=b"{}", headers={"Content-Type": "application/json"})
    assert status == 415
    assert b"jfr" in body and b"pprof" in body
