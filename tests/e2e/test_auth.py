"""Authentication on every route class, with real clients: grpcio with metadata, the OpenTelemetry
SDK exporters with headers, curl (HTTP/1.1 and h2c) and http.client for OTLP/HTTP, Pyroscope
ingest, Connect and the HTTP query endpoints; mutual TLS together with tokens.

Every server here runs with --log-level debug and random secrets; when each test ends the server
is stopped and its whole stderr must contain none of them (tokens, passwords, base64 basic
credentials).
"""

import base64
import gzip
import http.client
import json
import os
import secrets
import subprocess
import time
from urllib.parse import quote

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from conftest import spanprof_bin
from e2e_helpers import (
    RPC_TIMEOUT,
    cpu_profile_request,
    curl,
    ld,
    profiles_stub,
    raw_unary,
    scrape,
    tag,
    trace_request,
    traces_stub,
    varint,
)

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
QUERIER = "/querier.v1.QuerierService/"
QUERY_METHODS = ["ProfileTypes", "LabelNames", "LabelValues", "Series", "SelectMergeStacktraces",
                 "SelectMergeSpanProfile", "SelectMergeProfile", "SelectSeries"]


class Creds:
    """Random secrets, one set per class, written to mode-0600 files."""

    def __init__(self, d):
        self.ingest_tokens = [secrets.token_urlsafe(24), secrets.token_hex(20)]  # two: rotation
        self.query_token = secrets.token_urlsafe(32)
        self.ingest_user, self.ingest_pw = "collector", "pw:" + secrets.token_urlsafe(12) + " end"
        self.query_user, self.query_pw = "grafana", secrets.token_urlsafe(16)
        self.files = {
            "ingest-auth-token-file": "# rotated tokens\n" + "\n".join(self.ingest_tokens) + "\n",
            "ingest-basic-auth-file": f"{self.ingest_user}:{self.ingest_pw}\n",
            "query-auth-token-file": self.query_token + "\n",
            "query-basic-auth-file": f"{self.query_user}:{self.query_pw}\r\n",
        }
        self.paths = {}
        for flag, text in self.files.items():
            p = d / flag
            p.write_text(text)
            p.chmod(0o600)
            self.paths[flag] = p

    def args(self, *flags):
        out = ["--log-level", "debug"]
        for f in flags or self.files:
            out += [f"--{f}", str(self.paths[f])]
        return out

    def secrets(self):
        out = self.ingest_tokens + [self.query_token, self.ingest_pw, self.query_pw]
        for user, pw in ((self.ingest_user, self.ingest_pw), (self.query_user, self.query_pw)):
            out.append(basic_value(user, pw).split(" ", 1)[1])
        return out

    # Authorization header values
    def ingest_bearer(self, i=0):
        return f"Bearer {self.ingest_tokens[i]}"

    def ingest_basic(self):
        return basic_value(self.ingest_user, self.ingest_pw)

    def query_bearer(self):
        return f"Bearer {self.query_token}"

    def query_basic(self):
        return basic_value(self.query_user, self.query_pw)


def basic_value(user, pw):
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def assert_no_secret_logged(server, creds):
    server.stop()
    err = server.stderr()
    for s in creds.secrets():
        assert s not in err, "a secret was written to the log"
    assert "authorization:" not in err.lower()


@pytest.fixture
def creds(tmp_path):
    return Creds(tmp_path)


@pytest.fixture
def authed(spanprof_factory, creds):
    server = spanprof_factory(creds.args())
    yield server
    assert_no_secret_logged(server, creds)


def request(port, method, path, body=None, headers=None, auth=None):
    """One HTTP/1.1 request; returns (status, [(header, value)...], body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=RPC_TIMEOUT)
    try:
        h = dict(headers or {})
        if auth:
            h["Authorization"] = auth
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, [(k.lower(), v) for k, v in resp.getheaders()], resp.read()
    finally:
        conn.close()


def challenges(headers):
    return sorted(v for k, v in headers if k == "www-authenticate")


BOTH_CHALLENGES = sorted(['Bearer realm="spanprof"', 'Basic realm="spanprof", charset="UTF-8"'])


def grpc_md(auth):
    return [("authorization", auth)] if auth else None


# ---------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_grpc_ingest_needs_ingest_credentials(authed, creds, port_name):
    target = f"127.0.0.1:{getattr(authed, port_name)}"
    req, _ = cpu_profile_request()
    refused = [None, "Bearer wrong", creds.query_bearer(), creds.query_basic(),
               "Bearer " + creds.ingest_tokens[0][:-1], creds.ingest_bearer() + "x",
               basic_value(creds.ingest_user, creds.query_pw), "Token " + creds.ingest_tokens[0]]
    with grpc.insecure_channel(target) as ch:
        for auth in refused:
            with pytest.raises(grpc.RpcError) as e:
                profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT, metadata=grpc_md(auth))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, auth
            assert "ingest" in e.value.details()
            with pytest.raises(grpc.RpcError) as e:
                traces_stub(ch).Export(trace_request([b"\x05" * 8]), timeout=RPC_TIMEOUT,
                                       metadata=grpc_md(auth))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for auth in (creds.ingest_bearer(0), creds.ingest_bearer(1), creds.ingest_basic(),
                     "bearer " + creds.ingest_tokens[1]):
            resp = profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT, metadata=grpc_md(auth),
                                            compression=grpc.Compression.Gzip)
            assert not resp.partial_success.rejected_profiles
            traces_stub(ch).Export(trace_request([b"\x06" * 8]), timeout=RPC_TIMEOUT,
                                   metadata=grpc_md(auth))
    m = scrape(authed.http_port)
    assert m.total("spanprof_accepted_items_total", "trace") == 4


class _Collect(SpanProcessor):
    def __init__(self):
        self.spans = []

    def on_end(self, span):
        self.spans.append(span)


def sdk_spans():
    collect = _Collect()
    provider = TracerProvider(resource=Resource.create({"service.name": "auth-e2e"}))
    provider.add_span_processor(collect)
    with provider.get_tracer("e2e").start_as_current_span("root"):
        pass
    provider.shutdown()
    return collect.spans


def test_otel_sdk_exporters_send_credentials_as_headers(authed, creds):
    endpoints = (
        lambda h: GrpcSpanExporter(endpoint=authed.grpc_target, insecure=True, headers=h, timeout=10),
        lambda h: HttpSpanExporter(endpoint=f"http://{authed.http_target}/v1/traces", headers=h,
                                   timeout=10),
    )
    for make in endpoints:
        for headers, want in (({}, SpanExportResult.FAILURE),
                              ({"authorization": creds.query_bearer()}, SpanExportResult.FAILURE),
                              ({"authorization": creds.ingest_bearer(1)}, SpanExportResult.SUCCESS),
                              ({"authorization": creds.ingest_basic()}, SpanExportResult.SUCCESS)):
            exporter = make(headers)
            try:
                t = time.monotonic()
                assert exporter.export(sdk_spans()) == want, headers
                assert time.monotonic() - t < 8, "a refusal must not be retried"
            finally:
                exporter.shutdown()
    m = scrape(authed.http_port)
    assert m.total("spanprof_accepted_items_total", "trace") == 4


def test_otlp_http_refusal_is_a_401_with_a_status_message(authed, creds):
    body = trace_request([b"\x07" * 8]).SerializeToString()
    ct = {"Content-Type": "application/x-protobuf"}
    for path in ("/v1/traces", "/v1development/profiles"):
        status, headers, data = request(authed.http_port, "POST", path, body, ct)
        assert status == 401
        assert challenges(headers) == BOTH_CHALLENGES
        assert dict(headers)["content-type"] == "application/x-protobuf"
        st = status_pb2.Status.FromString(data)
        assert st.code == 16 and "Authorization" in st.message
    status, _, _ = request(authed.http_port, "POST", "/v1/traces", body, ct, creds.ingest_bearer())
    assert status == 200


def folded_ingest(port, auth, extra=()):
    return curl("-o", "/dev/null", "-w", "%{http_code}", *extra, "-X", "POST",
                "--data-binary", "main;work 7\nmain;idle 3\n",
                *(["-H", f"Authorization: {auth}"] if auth else []),
                f"http://127.0.0.1:{port}/ingest?name=auth-app&format=folded")


def test_pyroscope_ingest_and_push(authed, creds):
    port = authed.http_port
    assert folded_ingest(port, None).stdout == "401"
    assert folded_ingest(port, creds.query_basic()).stdout == "401"
    assert folded_ingest(port, creds.ingest_bearer()).stdout == "200"
    # curl's own basic auth (-u), as the Pyroscope SDKs' BasicAuthUser/Password send it
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-u", f"{creds.ingest_user}:{creds.ingest_pw}",
             "-X", "POST", "--data-binary", "main;x 1\n",
             f"http://127.0.0.1:{port}/pyroscope/ingest?name=auth-app&format=folded")
    assert r.stdout == "200", r.stderr
    r = curl("-i", "-X", "POST", "--data-binary", "main;x 1\n",
             f"http://127.0.0.1:{port}/ingest?name=auth-app&format=folded")
    assert 'www-authenticate: bearer realm="spanprof"' in r.stdout.lower()
    # Push over Connect (JSON) and gRPC
    status, headers, data = request(port, "POST", "/push.v1.PusherService/Push", b"{}",
                                    {"Content-Type": "application/json"})
    assert status == 401 and json.loads(data)["code"] == "unauthenticated"
    assert challenges(headers) == BOTH_CHALLENGES
    status, _, data = request(port, "POST", "/push.v1.PusherService/Push", b"{}",
                              {"Content-Type": "application/json"}, creds.ingest_basic())
    assert status == 200, data
    with grpc.insecure_channel(authed.grpc_target) as ch:
        push = raw_unary(ch, "/push.v1.PusherService/Push")
        with pytest.raises(grpc.RpcError) as e:
            push(b"", timeout=RPC_TIMEOUT, metadata=grpc_md(creds.query_bearer()))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        push(b"", timeout=RPC_TIMEOUT, metadata=grpc_md(creds.ingest_bearer()))


def test_a_refused_body_is_never_buffered(authed, creds):
    big = os.urandom(8 << 20)
    status, _, data = request(authed.http_port, "POST", "/ingest?name=x&format=pprof", big)
    assert status == 401
    req, _ = cpu_profile_request(n_profiles=1, samples_per_profile=40000)
    with grpc.insecure_channel(authed.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    m = scrape(authed.http_port)
    assert m.total("spanprof_received_bytes_total", "pyroscope_ingest") == 0
    assert m.total("spanprof_received_bytes_total", "otlp_grpc_profiles") == 0
    assert m.total("spanprof_requests_total", "pyroscope_ingest", code="401") == 1
    # the connection stays usable: the refused body was read and dropped, not left in the stream
    conn = http.client.HTTPConnection("127.0.0.1", authed.http_port, timeout=RPC_TIMEOUT)
    try:
        for _ in range(2):
            conn.request("POST", "/ingest?name=x&format=folded", body=b"main;x 1\n" * 50000)
            resp = conn.getresponse()
            assert resp.status == 401 and resp.read()
        conn.request("POST", "/ingest?name=x&format=folded", body=b"main;x 1\n",
                     headers={"Authorization": creds.ingest_bearer()})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Query
# ---------------------------------------------------------------------------------------------


def test_every_querier_method_needs_query_credentials(authed, creds):
    now = int(time.time() * 1000)
    win = {"start": now - 3600_000, "end": now}
    sel = {**win, "profileTypeID": CPU, "labelSelector": "{}"}
    bodies = {
        "ProfileTypes": win,
        "LabelNames": {**win, "matchers": ["{}"]},
        "LabelValues": {**win, "name": "service_name"},
        "Series": {**win, "matchers": ["{}"]},
        "SelectMergeStacktraces": sel,
        "SelectMergeSpanProfile": {**sel, "spanSelector": ["00" * 8]},
        "SelectMergeProfile": sel,
        "SelectSeries": {**sel, "step": 10},
    }
    ct = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
    for method in QUERY_METHODS:
        body = json.dumps(bodies[method]).encode()
        for auth in (None, creds.ingest_bearer(), creds.ingest_basic(), "Bearer " + creds.query_pw,
                     basic_value(creds.query_user, creds.query_token)):
            status, headers, data = request(authed.http_port, "POST", QUERIER + method, body, ct, auth)
            assert status == 401, (method, auth)
            err = json.loads(data)
            assert err["code"] == "unauthenticated" and "query" in err["message"]
            assert challenges(headers) == BOTH_CHALLENGES
        for auth in (creds.query_bearer(), creds.query_basic()):
            status, _, data = request(authed.http_port, "POST", QUERIER + method, body, ct, auth)
            assert status == 200, (method, data)
    req = ld(1, CPU.encode()) + ld(2, b"{}") + tag(3, 0) + varint(now - 3600_000) + tag(4, 0) + \
        varint(now)
    for port in authed.ports():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = raw_unary(ch, QUERIER + "SelectMergeStacktraces")
            for auth in (None, creds.ingest_bearer()):
                with pytest.raises(grpc.RpcError) as e:
                    call(req, timeout=RPC_TIMEOUT, metadata=grpc_md(auth))
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            call(req, timeout=RPC_TIMEOUT, metadata=grpc_md(creds.query_bearer()))
            call(req, timeout=RPC_TIMEOUT, metadata=grpc_md(creds.query_basic()))


def test_http_query_routes_and_the_page(authed, creds):
    q = quote(CPU + "{}")
    paths = [f"/render?query={q}&from=now-1h&until=now", f"/pyroscope/render?query={q}",
             f"/pprof?query={q}&from=now-1h&until=now", "/", "/ui",
             "/api/v1/traces/" + "ab" * 16, f"/api/v1/spans/{'cd' * 8}/profile"]
    for path in paths:
        status, headers, _ = request(authed.http_port, "GET", path)
        assert status == 401, path
        assert challenges(headers) == BOTH_CHALLENGES
        assert request(authed.http_port, "GET", path, auth=creds.ingest_bearer())[0] == 401
        for auth in (creds.query_bearer(), creds.query_basic()):
            status, _, body = request(authed.http_port, "GET", path, auth=auth)
            assert status in (200, 404), (path, status, body[:200])
            if status == 404:
                assert path.startswith("/api/v1/")
    # h2c, as Grafana's HTTP/2 client would speak it; curl's --user is basic auth
    base = f"http://127.0.0.1:{authed.http_port}/render?query={q}"
    r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", base)
    assert r.stdout == "401 2", r.stderr
    r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
             "--user", f"{creds.query_user}:{creds.query_pw}", base)
    assert r.stdout == "200", r.stderr
    # a path nobody registered is a query path: refused before it can be told apart
    assert request(authed.http_port, "GET", "/no/such/thing")[0] == 401
    assert request(authed.http_port, "GET", "/no/such/thing", auth=creds.query_bearer())[0] == 404


def test_ready_and_metrics_stay_open(authed):
    for path in ("/ready", "/metrics"):
        status, headers, _ = request(authed.http_port, "GET", path)
        assert status == 200 and not challenges(headers)


def test_refused_h2_request_is_answered_before_its_body(authed):
    """A refused HTTP/2 request is answered at HEADERS time (401, then RST_STREAM NO_ERROR), so a
    client that has not sent its body yet need not upload it (RFC 9113 section 8.1)."""
    from abuse_clients import NO_ERROR, H2Attacker
    from e2e_helpers import FRAME_HEADERS, FLAG_END_HEADERS, h2_frame, hpack_literal

    h2 = H2Attacker(authed.http_port)
    try:
        block = hpack_literal([(":method", "POST"), (":scheme", "http"),
                               (":path", "/v1development/profiles"),
                               (":authority", f"127.0.0.1:{authed.http_port}"),
                               ("content-type", "application/x-protobuf"),
                               ("content-length", "1000000")])
        h2.send(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, block))  # no END_STREAM, no body
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (h2.answers and h2.resets.get(NO_ERROR)):
            time.sleep(0.02)
        assert h2.answers == 1, "no answer before the body"
        assert h2.resets.get(NO_ERROR) == 1, h2.resets
    finally:
        h2.close()


def test_classes_are_configured_separately(spanprof_factory, creds):
    server = spanprof_factory(creds.args("ingest-auth-token-file"))
    try:
        assert folded_ingest(server.http_port, None).stdout == "401"
        assert folded_ingest(server.http_port, creds.ingest_bearer()).stdout == "200"
        status, _, body = request(server.http_port, "GET", f"/render?query={quote(CPU + '{}')}")
        assert status == 200, body
        assert json.loads(body)["flamebearer"]["numTicks"] > 0
    finally:
        assert_no_secret_logged(server, creds)


# ---------------------------------------------------------------------------------------------
# Mutual TLS composes with tokens
# ---------------------------------------------------------------------------------------------


def test_mutual_tls_and_tokens_both_apply(spanprof_factory, creds, certs):
    tls = {"cert": certs["server_cert"], "key": certs["server_key"], "ca": certs["ca"],
           "client_ca": certs["ca"]}
    server = spanprof_factory(creds.args("ingest-auth-token-file", "query-basic-auth-file"), tls=tls,
                              client_cert=(certs["client_cert"], certs["client_key"]))
    try:
        ca = certs["ca"].read_bytes()
        good = grpc.ssl_channel_credentials(root_certificates=ca,
                                            private_key=certs["client_key"].read_bytes(),
                                            certificate_chain=certs["client_cert"].read_bytes())
        req, _ = cpu_profile_request()
        with grpc.secure_channel(server.grpc_target, good) as ch:
            with pytest.raises(grpc.RpcError) as e:
                profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            profiles_stub(ch).Export(req, timeout=RPC_TIMEOUT, metadata=grpc_md(creds.ingest_bearer()))
        # a token without a client certificate does not get past the handshake
        with grpc.secure_channel(server.grpc_target,
                                 grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
            with pytest.raises(grpc.RpcError) as e:
                profiles_stub(ch).Export(req, timeout=5, metadata=grpc_md(creds.ingest_bearer()))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        url = f"https://127.0.0.1:{server.http_port}/render?query={quote(CPU + '{}')}"
        tls_args = ["--cacert", str(certs["ca"]), "--cert", str(certs["client_cert"]),
                    "--key", str(certs["client_key"])]
        r = curl("-o", "/dev/null", "-w", "%{http_code}", *tls_args, url)
        assert r.stdout == "401"
        r = curl("-o", "/dev/null", "-w", "%{http_code}", *tls_args,
                 "-u", f"{creds.query_user}:{creds.query_pw}", url)
        assert r.stdout == "200", r.stderr
        r = curl("-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(certs["ca"]),
                 "-u", f"{creds.query_user}:{creds.query_pw}", url)
        assert r.returncode != 0 and r.stdout in ("", "000")
    finally:
        assert_no_secret_logged(server, creds)


# ---------------------------------------------------------------------------------------------
# Configuration: environment, start-up errors, secrets off the command line
# ---------------------------------------------------------------------------------------------


def test_tokens_from_the_environment_stay_off_the_command_line(spanprof_factory, monkeypatch):
    token = secrets.token_urlsafe(24)
    monkeypatch.setenv("SPANPROF_QUERY_AUTH_TOKEN", token)
    server = spanprof_factory(["--log-level", "debug"])
    monkeypatch.delenv("SPANPROF_QUERY_AUTH_TOKEN")
    cmdline = open(f"/proc/{server.proc.pid}/cmdline", "rb").read()
    assert token.encode() not in cmdline
    path = f"/render?query={quote(CPU + '{}')}"
    assert request(server.http_port, "GET", path)[0] == 401
    assert request(server.http_port, "GET", path, auth=f"Bearer {token}")[0] == 200
    assert folded_ingest(server.http_port, None).stdout == "200"  # ingest stays open
    server.stop()
    assert token not in server.stderr()
    assert "query=bearer" in server.stderr()


@pytest.mark.parametrize("flag,content,expect", [
    ("--ingest-auth-token-file", None, "cannot read credential file"),
    ("--query-auth-token-file", "tok-SECRET1 with-space\n", "line 1"),
    ("--ingest-basic-auth-file", "# nothing\n\n", "no user:password line"),
    ("--query-basic-auth-file", "ok:fine\nSECRET2-no-colon\n", "line 2"),
])
def test_bad_credential_files_stop_the_start_naming_the_line_not_the_secret(tmp_path, flag, content,
                                                                            expect):
    path = tmp_path / "creds"
    if content is not None:
        path.write_text(content)
        path.chmod(0o600)
    r = subprocess.run([str(spanprof_bin()), "--data-dir", str(tmp_path / "data"),
                        "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", flag, str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and str(path) in r.stderr
    assert "SECRET" not in r.stderr


def test_a_credential_file_others_can_read_is_warned_about(spanprof_factory, creds):
    creds.paths["query-auth-token-file"].chmod(0o644)
    server = spanprof_factory(creds.args("query-auth-token-file"))
    server.stop()
    err = server.stderr()
    assert "readable by other users" in err and "query-auth-token-file" in err
    assert creds.query_token not in err
