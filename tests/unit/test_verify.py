"""The health gate (F21): what `Probe.problems` reports, and `probe` against a real HTTPS
registry stand-in on 127.0.0.1 (TLS validated against the anchor, /v2/ with and without auth)."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabfile import certs, verify

from _support import NOW, make_spec

USER, PASSWORD = "registry-tls-health", "health-pass-1234"


class FakeRegistry(BaseHTTPRequestHandler):
    header = "registry/2.0"

    def do_GET(self):
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        ok = self.headers.get("Authorization") == f"Basic {token}"
        self.send_response(200 if ok else 401)
        if self.header:
            self.send_header("Docker-Distribution-Api-Version", self.header)
        if not ok:
            self.send_header("WWW-Authenticate", 'Basic realm="Registry Realm"')
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def registry(self_signed, tmp_path_factory):
    """A TLS server on 127.0.0.1 serving the self-signed cert, answering /v2/ like the registry."""
    cert, key = self_signed
    folder = tmp_path_factory.mktemp("fake-registry")
    (folder / "c.pem").write_bytes(certs.cert_pem(cert))
    (folder / "k.pem").write_bytes(certs.private_key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "c.pem", folder / "k.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def test_F21_probe_a_healthy_registry(registry):
    port, cert = registry
    anchor = certs.cert_pem(cert)
    result = verify.probe("127.0.0.1", port, "registry.test", anchor, credentials=(USER, PASSWORD))
    assert result.error is None
    assert result.fingerprint == certs.fingerprint(cert) and result.tls_version in ("TLSv1.2", "TLSv1.3")
    assert (result.unauthenticated, result.api_header, result.authenticated) == (401, "registry/2.0", 200)
    assert result.sans == certs.cert_sans(cert)
    assert result.problems(certs.fingerprint(cert), names=("registry.test", "127.0.0.1")) == []


def test_F21_probe_reports_the_wrong_certificate_and_wrong_credentials(registry):
    port, cert = registry
    result = verify.probe("127.0.0.1", port, "registry.test", certs.cert_pem(cert), credentials=(USER, "nope"))
    problems = result.problems("AA:BB", names=("other.test",))
    assert problems == [f"serves certificate {certs.fingerprint(cert)}, expected AA:BB",
                        "certificate does not cover other.test",
                        "GET /v2/ with credentials answered 401, expected 200"]


def test_F21_probe_validates_against_the_anchor_only(registry, key_cache):
    port, _ = registry
    impostor = certs.build_self_signed(make_spec(), key_cache("impostor"), NOW)
    result = verify.probe("127.0.0.1", port, "registry.test", certs.cert_pem(impostor))
    assert result.error.startswith("TLS verification failed:") and result.fingerprint is None
    assert result.problems() == [result.error]
    wrong_name = verify.probe("127.0.0.1", port, "wrong.test", certs.cert_pem(registry[1]))
    assert wrong_name.error.startswith("TLS verification failed:") and "wrong.test" in wrong_name.error


def test_F10_probe_of_a_closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        result = verify.probe("127.0.0.1", port, "registry.test", None, timeout=2)
    assert result.error.startswith(f"cannot connect to 127.0.0.1:{port}")


@pytest.mark.parametrize(("unauth", "header", "auth", "expected"), [
    (401, "registry/2.0", None, []),
    (200, "registry/2.0", None, ["GET /v2/ without credentials answered 200, expected 401"]),  # auth is off!
    (401, None, None, ["GET /v2/ lacks 'Docker-Distribution-Api-Version: registry/2.0'"]),
    (401, "registry/2.0", 401, ["GET /v2/ with credentials answered 401, expected 200"]),
])
def test_F21_problems_table(unauth, header, auth, expected):
    probe = verify.Probe(address="a", port=443, server_name="r", fingerprint="F", unauthenticated=unauth,
                         api_header=header, authenticated=auth)
    assert probe.problems("F") == expected


def test_tls_context_is_strict_and_pinned_to_the_anchor(self_signed):
    ctx = verify.tls_context(certs.cert_pem(self_signed[0]))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert len(ctx.get_ca_certs()) == 1  # never the system store
    loose = verify.tls_context(None)
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname


def test_wait_healthy_gives_up_after_the_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        probe, problems = verify.wait_healthy("127.0.0.1", port, "r", None, expected_fingerprint="F",
                                              credentials=None, timeout=0.3, interval=0.05)
    assert problems == [probe.error] and "cannot connect" in problems[0]
