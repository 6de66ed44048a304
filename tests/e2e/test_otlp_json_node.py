"""The OpenTelemetry JS SDK's OTLP/HTTP exporter (@opentelemetry/exporter-trace-otlp-http, JSON by
default; tests/node, installed by scripts/install-deps.sh with `npm ci`) against the real binary.

A nested trace with attributes of every type (string, int, double, bool, arrays of each), an event,
a link and OK / ERROR statuses is exported by tests/node/export_spans.js. What the user sees:
GET /api/v1/traces/{id} lists the spans with their parents, service, process and thread; every
attribute, event, link, kind and status arrives intact where spanprof hands the trace on
(--traces-forward-to, whose downstream reads the protobuf spanprof re-encodes from the JSON).
"""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from e2e_helpers import http_request, scrape, wait_for_metric
from test_trace_forward import Downstream

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def node_ready():
    return shutil.which("node") and (NODE_DIR / "node_modules/@opentelemetry/exporter-trace-otlp-http").is_dir()


pytestmark = pytest.mark.skipif(not node_ready(), reason="node or tests/node/node_modules missing "
                                "(scripts/install-deps.sh runs npm ci there when node and npm exist)")


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


@pytest.fixture
def exported(spanprof_factory):
    d = Downstream().start()
    server = spanprof_factory(["--traces-forward-delay", "0s", "--traces-forward-to", d.url, "--forward-batch-interval", "20ms"])
    r = subprocess.run(["node", str(NODE_DIR / "export_spans.js"), f"http://{server.http_target}/v1/traces"],
                       capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
    assert r.returncode == 0, f"exporter failed: {r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    yield server, d, out
    d.stop()


def test_js_sdk_json_export_is_stored_and_listed(exported):
    server, _, out = exported
    # SimpleSpanProcessor: one JSON export per span, each accepted.
    m = wait_for_metric(server.http_port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= 4)
    assert m.total("spanprof_accepted_items_total", "trace") == 4
    assert m.total("spanprof_otlp_http_json_traces_requests_total") == 4
    assert m.total("spanprof_requests_refused_total") == 0
    ids = out["spans"]
    trace = ids["GET /cart"]["trace_id"]
    status, h, body = http_request(server.http_port, "GET", f"/api/v1/traces/{trace}",
                                   headers={"X-Scope-OrgID": "node"})
    assert status == 200, body[:300]
    doc = json.loads(body)
    got = {s["name"]: s for s in doc["spans"]}
    assert set(got) == {"GET /cart", "load-cart", "decode"}
    assert got["GET /cart"]["parent_span_id"] is None
    assert got["load-cart"]["parent_span_id"] == ids["GET /cart"]["span_id"]
    assert got["decode"]["parent_span_id"] == ids["load-cart"]["span_id"]
    for name, s in got.items():
        assert s["span_id"] == ids[name]["span_id"]
        assert s["service"] == "node-checkout"
        assert s["pid"] == out["pid"]
    assert got["GET /cart"]["thread_id"] == 77  # the span's thread.id attribute (an int in JSON)
    # Another tenant does not see it.
    status, _, _ = http_request(server.http_port, "GET", f"/api/v1/traces/{trace}")
    assert status == 404


def test_js_sdk_json_export_keeps_every_attribute_event_link_and_status(exported):
    server, d, out = exported
    reqs = d.wait(1)
    spans = {}
    deadline_reqs = reqs
    for _ in range(200):
        spans = {}
        for _, headers, body, _ in deadline_reqs:
            assert headers.get("X-Scope-OrgID") == "node"
            msg = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            for rs in msg.resource_spans:
                res = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    assert ss.scope.name == "spanprof-e2e" and ss.scope.version == "1.0.0"
                    for s in ss.spans:
                        spans[s.name] = (res, s)
        if len(spans) == 4:
            break
        deadline_reqs = d.wait(len(deadline_reqs) + 1)
    assert set(spans) == {"other-root", "GET /cart", "load-cart", "decode"}
    ids = out["spans"]
    res, root = spans["GET /cart"]
    assert res["service.name"] == "node-checkout" and res["process.pid"] == out["pid"]
    assert root.trace_id.hex() == ids["GET /cart"]["trace_id"]
    assert root.span_id.hex() == ids["GET /cart"]["span_id"]
    assert root.kind == 2  # SERVER
    assert attrs(root.attributes) == out["attrs"]
    _, child = spans["load-cart"]
    assert child.parent_span_id.hex() == ids["GET /cart"]["span_id"] and child.kind == 1
    assert attrs(child.attributes) == {"db.rows": 12, "db.system": "sqlite"}
    assert [(e.name, attrs(e.attributes)) for e in child.events] == [("cache-miss", {"key": "cart:42", "attempt": 2})]
    assert child.events[0].time_unix_nano >= child.start_time_unix_nano
    assert len(child.links) == 1
    link = child.links[0]
    assert (link.trace_id.hex(), link.span_id.hex()) == (ids["other-root"]["trace_id"], ids["other-root"]["span_id"])
    assert attrs(link.attributes) == {"link.kind": "follows"}
    assert child.status.code == 1  # OK
    _, grand = spans["decode"]
    assert grand.parent_span_id.hex() == ids["load-cart"]["span_id"] and grand.kind == 3
    assert (grand.status.code, grand.status.message) == (2, "bad row")
    assert grand.end_time_unix_nano >= grand.start_time_unix_nano > 1_600_000_000 * 10**9
    assert scrape(server.http_port).total("spanprof_requests_refused_total") == 0


def test_trace_answer_shows_every_attribute_kind_status_event_and_link(exported):
    """GET /api/v1/traces/{id} itself (no forwarding) shows what the Node program set: each
    attribute with its JSON type (int a number up to 2^53, double, bool, string, arrays), the
    resource, scope, kind, status, events and links."""
    server, _, out = exported
    wait_for_metric(server.http_port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= 4)
    ids = out["spans"]
    trace = ids["GET /cart"]["trace_id"]
    status, _, body = http_request(server.http_port, "GET", f"/api/v1/traces/{trace}",
                                   headers={"X-Scope-OrgID": "node"})
    assert status == 200, body[:300]
    got = {s["name"]: s for s in json.loads(body)["spans"]}
    root, child, grand = got["GET /cart"], got["load-cart"], got["decode"]
    # Every attribute, value and JSON type as the program set it.
    assert root["attributes"] == out["attrs"]
    for key, want in out["attrs"].items():
        assert type(root["attributes"][key]) is type(want), key
    assert isinstance(root["attributes"]["ratio"], float)
    assert isinstance(root["attributes"]["retry.count"], int)
    assert root["attributes"]["limit.max"] == 2**53  # the largest int kept a JSON number
    assert root["resource"]["service.name"] == "node-checkout"
    assert root["resource"]["process.pid"] == out["pid"]
    assert root["scope"] == {"name": "spanprof-e2e", "version": "1.0.0", "attributes": {}}
    assert (root["kind"], child["kind"], grand["kind"]) == ("server", "internal", "client")
    assert root["status"] == {"code": "unset", "message": ""}
    assert child["status"] == {"code": "ok", "message": ""}
    assert grand["status"] == {"code": "error", "message": "bad row"}
    assert child["attributes"] == {"db.rows": 12, "db.system": "sqlite"}
    assert grand["attributes"] == {}
    [event] = child["events"]
    assert (event["name"], event["attributes"]) == ("cache-miss", {"key": "cart:42", "attempt": 2})
    assert int(event["time_unix_nano"]) >= int(child["start_time_unix_nano"])
    [link] = child["links"]
    assert (link["trace_id"], link["span_id"]) == (ids["other-root"]["trace_id"], ids["other-root"]["span_id"])
    assert link["attributes"] == {"link.kind": "follows"}
    assert root["events"] == [] and root["links"] == []
    assert root["dropped"] == {"attributes": 0, "events": 0, "links": 0, "resource_attributes": 0}
    m = scrape(server.http_port)
    assert m.total("spanprof_span_attributes_truncated_total") == 0
    assert m.total("spanprof_span_attributes_damaged_total") == 0
