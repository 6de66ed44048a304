"""TLS and mutual TLS on both listeners: ALPN h2 / http/1.1, grpcio secure channels, curl."""

import socket
import ssl

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from e2e_helpers import RPC_TIMEOUT, cpu_profile_request, curl, profiles_stub, wait_for_metric

pytestmark = pytest.mark.tls


def tls_args(certs, mutual=False):
    t = {"cert": certs["server_cert"], "key": certs["server_key"], "ca": certs["ca"]}
    if mutual:
        t["client_ca"] = certs["ca"]
    return t


@pytest.fixture
def tls_server(spanprof_factory, certs):
    return spanprof_factory(tls=tls_args(certs))


@pytest.fixture
def mtls_server(spanprof_factory, certs):
    return spanprof_factory(tls=tls_args(certs, mutual=True),
                            client_cert=(certs["client_cert"], certs["client_key"]))


def creds(certs, client=True, rogue=False):
    ca = certs["ca"].read_bytes()
    if not client:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    cert, key = ("rogue_cert", "rogue_key") if rogue else ("client_cert", "client_key")
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=certs[key].read_bytes(),
                                        certificate_chain=certs[cert].read_bytes())


def export_profile(target, credentials, timeout=RPC_TIMEOUT):
    req, _ = cpu_profile_request()
    with grpc.secure_channel(target, credentials) as ch:
        return profiles_stub(ch).Export(req, timeout=timeout, compression=grpc.Compression.Gzip)


def alpn_of(port, certs, protocols, client_cert=None):
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    ctx.set_alpn_protocols(protocols)
    if client_cert:
        ctx.load_cert_chain(*[str(p) for p in client_cert])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.selected_alpn_protocol()


@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_grpc_over_tls_on_both_ports(tls_server, certs, port_name):
    resp = export_profile(f"127.0.0.1:{getattr(tls_server, port_name)}", creds(certs, client=False))
    assert resp.partial_success.rejected_profiles == 0
    m = wait_for_metric(tls_server.http_port, lambda m: m.total("spanprof_accepted_items_total", "profile") >= 1,
                        context=tls_server.ssl_context())
    assert m.total("spanprof_accepted_items_total", "profile") == 1


@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_alpn_selects_h2_and_http11(tls_server, certs, port_name):
    port = getattr(tls_server, port_name)
    assert alpn_of(port, certs, ["h2", "http/1.1"]) == "h2"
    assert alpn_of(port, certs, ["http/1.1"]) == "http/1.1"


@pytest.mark.parametrize("flag,version", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_https_ready(tls_server, certs, flag, version):
    for port in tls_server.ports():
        r = curl(flag, "--cacert", str(certs["ca"]), "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                 f"https://127.0.0.1:{port}/ready")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["200", version], r.stdout


def test_plaintext_client_on_tls_port_fails_cleanly(tls_server, certs):
    with socket.create_connection(("127.0.0.1", tls_server.http_port), timeout=10) as s:
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"HTTP/1.1 200"), "plaintext request served on a TLS listener"
    with grpc.insecure_channel(tls_server.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            profiles_stub(ch).Export(cpu_profile_request()[0], timeout=5)
        assert ei.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert tls_server.ready_status() == 200


def test_sdk_http_exporter_over_https(tls_server, certs, monkeypatch):
    from test_traces import make_spans
    # requests lets these variables override the exporter's certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    exp = HttpSpanExporter(endpoint=f"https://127.0.0.1:{tls_server.http_port}/v1/traces",
                           certificate_file=str(certs["ca"]), timeout=10)
    try:
        assert exp.export(make_spans(3)) == SpanExportResult.SUCCESS
    finally:
        exp.shutdown()
    m = wait_for_metric(tls_server.http_port, lambda m: m.total("spanprof_accepted_items_total", "trace") >= 3,
                        context=tls_server.ssl_context())
    assert m.total("spanprof_accepted_items_total", "trace") == 3


@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_mtls_with_client_cert_succeeds(mtls_server, certs, port_name):
    resp = export_profile(f"127.0.0.1:{getattr(mtls_server, port_name)}", creds(certs))
    assert resp.partial_success.rejected_profiles == 0


@pytest.mark.parametrize("port_name", ["grpc_port", "http_port"])
def test_mtls_without_client_cert_fails(mtls_server, certs, port_name):
    with pytest.raises(grpc.RpcError) as ei:
        export_profile(f"127.0.0.1:{getattr(mtls_server, port_name)}", creds(certs, client=False), timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    # HTTP/1.1 too: the handshake (or the first read) fails, nothing is served.
    r = curl("--http1.1", "--cacert", str(certs["ca"]), "-o", "/dev/null", "-w", "%{http_code}",
             f"https://127.0.0.1:{getattr(mtls_server, port_name)}/ready")
    assert r.returncode != 0 or r.stdout != "200", "served /ready without a client certificate"


def test_mtls_with_cert_from_another_ca_fails(mtls_server, certs):
    with pytest.raises(grpc.RpcError) as ei:
        export_profile(mtls_server.grpc_target, creds(certs, rogue=True), timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    assert mtls_server.ready_status() == 200


def test_mtls_curl_with_client_cert(mtls_server, certs):
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        r = curl(flag, "--cacert", str(certs["ca"]), "--cert", str(certs["client_cert"]), "--key",
                 str(certs["client_key"]), "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                 f"https://127.0.0.1:{mtls_server.http_port}/ready")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["200", version]


def test_tls_flags_need_both_cert_and_key(tmp_path, certs):
    import subprocess
    from conftest import free_port, spanprof_bin
    r = subprocess.run([str(spanprof_bin()), "--data-dir", str(tmp_path), "--http-addr", f"127.0.0.1:{free_port()}",
                        "--grpc-addr", f"127.0.0.1:{free_port()}", "--tls-cert", str(certs["server_cert"])],
                       capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, "--tls-cert without --tls-key was accepted"
    assert "tls-key" in r.stderr, r.stderr


def test_unreadable_cert_file_fails_at_start(tmp_path, certs):
    import subprocess
    from conftest import free_port, spanprof_bin
    r = subprocess.run([str(spanprof_bin()), "--data-dir", str(tmp_path), "--http-addr", f"127.0.0.1:{free_port()}",
                        "--grpc-addr", f"127.0.0.1:{free_port()}", "--tls-cert", str(tmp_path / "nope.crt"),
                        "--tls-key", str(certs["server_key"])],
                       capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, "started with a missing certificate file"
    assert "nope.crt" in r.stderr, r.stderr
