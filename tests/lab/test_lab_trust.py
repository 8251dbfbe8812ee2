"""Docker trust across lab hosts: a TLS registry on the registry host is refused until a client
has its certificate in /etc/docker/certs.d/<name>/ca.crt."""
from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import reset_hosts

pytestmark = pytest.mark.lab

CONTAINER = "rtls-test-tls-registry"
CERT_DIR = "/root/rtls-test-certs"


def self_signed(address: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.lab")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("registry.lab"), x509.IPAddress(ipaddress.ip_address(address))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def wait_for_registry(address: str, cert_pem: bytes, timeout: float = 30) -> None:
    context = ssl.create_default_context(cadata=cert_pem.decode())
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPSConnection(address, 443, context=context, timeout=2)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"TLS registry on {address}:443 did not answer")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tls_registry(lab):
    reset_hosts(lab)  # other tests may have left a registry on port 443 or trust installed
    address = lab.address("registry")
    cert, key = self_signed(address)
    lab.run("registry", f"mkdir -p {CERT_DIR} && cat > {CERT_DIR}/domain.crt", input=cert, check=True)
    lab.run("registry", f"umask 077 && cat > {CERT_DIR}/domain.key", input=key, check=True)
    lab.run("registry", f"docker rm -f -v {CONTAINER} >/dev/null 2>&1; docker run -d --name {CONTAINER} "
            f"-p 443:443 -v {CERT_DIR}:/certs -e REGISTRY_HTTP_ADDR=0.0.0.0:443 "
            "-e REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt -e REGISTRY_HTTP_TLS_KEY=/certs/domain.key "
            "registry:2", check=True)
    try:
        wait_for_registry(address, cert)
        yield address, cert
    finally:
        lab.run("registry", f"docker rm -f -v {CONTAINER}; rm -rf {CERT_DIR}")
        for client in ("client1", "client2", "client3"):
            lab.run(client, f"rm -rf /etc/docker/certs.d/{address} /etc/docker/certs.d/registry.lab; "
                            "docker images --format '{{.Repository}}:{{.Tag}}' | grep /hello: "
                            "| xargs -r docker rmi >/dev/null")


def install_ca(lab, host: str, name: str, cert: bytes) -> None:
    lab.run(host, f"mkdir -p /etc/docker/certs.d/{name} && cat > /etc/docker/certs.d/{name}/ca.crt",
            input=cert, check=True)


@pytest.mark.parametrize("name_form", ["address", "registry.lab"])
def test_push_needs_the_registry_ca(lab, tls_registry, name_form):
    address, cert = tls_registry
    name = address if name_form == "address" else "registry.lab"
    tag = "1" if name_form == "address" else "2"
    ref = f"{name}/hello:{tag}"
    refused = lab.run("client1", f"docker tag lab/hello:1 {ref} && docker push {ref}", timeout=60)
    assert refused.returncode != 0
    assert "x509" in refused.stderr or "unknown authority" in refused.stderr, refused.stderr
    install_ca(lab, "client1", name, cert)
    pushed = lab.run("client1", f"docker push {ref}", timeout=60)
    assert pushed.returncode == 0, pushed.stderr
    # another client: refused without the CA, pulls with it
    assert lab.run("client3", f"docker pull {ref}", timeout=60).returncode != 0
    install_ca(lab, "client2", name, cert)
    pulled = lab.run("client2", f"docker pull {ref}", timeout=60)
    assert pulled.returncode == 0, pulled.stderr
    assert lab.run("client3", f"test -e /etc/docker/certs.d/{name}").returncode != 0
