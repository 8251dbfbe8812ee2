"""The default trust anchor on real hosts (security review H1): a constrained private CA.

Docker pulls through the CA chain; sslyze, an independent scanner, validates what the
registry serves against the anchor the clients got; a self-signed anchor headed for the
OS trust store is refused before any host is touched. The migration from a self-signed
deployment (`inv rotate --ca`) is in test_rotate.py, with the 200 ms pull loop.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_deploy import pull, push

pytestmark = pytest.mark.lab
# sslyze caps cryptography, so it has its own venv (script/setup), not the project's
SSLYZE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-sslyze" / "bin" / "python"


def sslyze(fleet, anchor: str) -> dict:
    if not SSLYZE_PYTHON.exists():
        pytest.fail(f"{SSLYZE_PYTHON} is missing: run ./script/setup (it installs tests/e2e/requirements-sslyze.txt)")
    out = fleet.tmp / "sslyze.json"
    target = f"registry.lab:443{{{fleet.lab.address('registry')}}}"
    proc = subprocess.run([str(SSLYZE_PYTHON), "-m", "sslyze", "--quiet", "--certinfo", "--certinfo_ca_file", anchor,
                           "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--json_out", str(out), target],
                          capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    [server] = json.loads(out.read_text())["server_scan_results"]
    assert server["scan_status"] == "COMPLETED", server
    return server["scan_result"]


def test_default_ca_chain_docker_pulls_and_sslyze_validates_it_with_the_anchor(fleet, user):
    code, report = fleet.json("deploy")
    assert code == 0, report
    ca_pem = (fleet.tmp / "pki" / "ca.crt").read_text()
    for host in ("client1", "client2", "client3"):  # clients trust the CA only, never the server certificate
        assert fleet.on(host, "cat /etc/docker/certs.d/registry.lab/ca.crt").stdout == ca_pem
    assert push(fleet, "client1", *user).returncode == 0
    pulled = pull(fleet, "client2", *user)
    assert pulled.returncode == 0, pulled.stderr

    result = sslyze(fleet, str(fleet.tmp / "pki" / "ca.crt"))
    [deployment] = result["certificate_info"]["result"]["certificate_deployments"]
    custom = [r for r in deployment["path_validation_results"] if r["trust_store"]["name"] == "Supplied CA file"]
    assert len(custom) == 1 and custom[0]["was_validation_successful"], custom
    assert [c["subject"]["rfc4514_string"] for c in custom[0]["verified_certificate_chain"]] == [
        "CN=registry.lab,O=registry-tls lab", "CN=registry.lab CA,O=registry-tls lab"]
    # sslyze 6 validates with cryptography's webpki verifier for the scanned name (registry.lab): chain and name
    assert deployment["received_chain_has_valid_order"] is True
    accepted = {v: result[f"{v}_cipher_suites"]["result"]["accepted_cipher_suites"]
                for v in ("ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3")}
    assert not accepted["ssl_3_0"] and not accepted["tls_1_0"] and not accepted["tls_1_1"]  # minimum_tls: tls1.2
    assert accepted["tls_1_2"] and accepted["tls_1_3"]


def test_self_signed_with_trust_os_is_refused_before_any_host_is_touched(fleet, user):
    def self_signed_os(d):
        d["certificate"]["mode"] = "self-signed"
        d["clients"]["defaults"]["trust"] = ["docker", "os"]

    fleet.edit(self_signed_os)
    result = fleet.inv("deploy")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "certificate.mode: self-signed with trust: os on client1" in line and "Traceback" not in result.stderr
    assert not (fleet.tmp / "pki" / "registry.crt").exists()
    assert fleet.on("registry", "docker ps -aq").stdout.strip() == ""
    assert fleet.on("client1", "ls /etc/docker/certs.d /usr/local/share/ca-certificates/registry-tls-* 2>&1"
                    ).returncode != 0
    # (accepting the risk with certificate.accept_self_signed_os_trust: true is a unit test: test_anchor.py)
