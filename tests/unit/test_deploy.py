"""Orchestration through the fake transport (tests/unit/fake_transport.py): what is sent, in which
order, to which host, and what each host's result says. No SSH, no root, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabfile import deploy as D
from fabfile import verify as V
from fabfile.errors import SudoError, UnreachableError
from fabfile.results import Status
from fabfile.session import Session, open_session
from fake_transport import FakeFleet

MUTATING = r"base64 -d|mv -f|rm -f|ln -sfn|systemctl|docker run|rename|#put_many|\.registry-tls\.lock"


def write_inventory(root: Path, clients: int = 3, *, trust: str = "[docker]") -> Path:
    hosts = "\n".join(f"    c{i}: {{address: 192.0.2.{20 + i}}}" for i in range(1, clients + 1))
    path = root / "inventory.yaml"
    path.write_text(
        "registry: {host: registry.test, address: 127.0.0.1, port: 5443}\n"
        f"certificate: {{san: [DNS:registry.test], key_type: ecdsa-p256, pki_dir: {root / 'pki'}}}\n"
        f"state_dir: {root / 'state'}\n"
        f"ssh: {{known_hosts: {root / 'known_hosts'}}}\n"
        f"clients:\n  defaults: {{trust: {trust}}}\n  hosts:\n{hosts}\n"
    )
    return path


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


def session_for(tmp_path: Path, fleet: FakeFleet, *, sudo_password: str | None = None, clients: int = 3,
                trust: str = "[docker]") -> Session:
    s = open_session(write_inventory(tmp_path, clients, trust=trust), sudo_password=sudo_password)
    s.opener = fleet.opener
    return s


def client_probe(os_id: str = "debian") -> str:
    """A client that has nothing installed yet (TIME omitted: no clock check)."""
    return f"OS {os_id} \nDSTART 1700000000\n"


# --------------------------------------------------------------------------- sessions and the seam


def test_default_progress_works_in_a_fan_out(tmp_path, fleet):
    """Review 8.1: Session's default progress was not a context manager, so any caller other than
    `inv` (which always passes a LiveProgress) crashed in trust_clients/survey."""
    s = session_for(tmp_path, fleet, clients=2)
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.host for r in report.results.values()] == ["c1", "c2"]


def test_remotes_are_opened_through_the_session_only(tmp_path, fleet):
    s = session_for(tmp_path, fleet, clients=2)
    material, _ = D.certificate(s)
    D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert {c.host for c in fleet.calls} == {"c1", "c2"}
    assert all(fleet.hosts[h].connects == 1 for h in ("c1", "c2"))


# --------------------------------------------------------------------------- clients


def test_dry_run_sends_no_mutating_command_and_lists_the_changes(tmp_path, fleet):
    s = session_for(tmp_path, fleet)
    for name in ("c1", "c2", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.status for r in report.results.values()] == [Status.CHANGED] * 3
    assert all(line.startswith("would write /etc/docker/certs.d/") for r in report.results.values()
               for line in r.changes)
    assert fleet.sent(MUTATING) == []
    assert [c.sudo for c in fleet.calls] == [False] * 3   # the probe reads without sudo when it can


def test_sudo_canary_stops_a_wrong_password_after_one_host(tmp_path, fleet):
    s = session_for(tmp_path, fleet, sudo_password="wrong")
    fleet.host("c1").on(r"^true$", SudoError("c1", "sudo: wrong password (stopped after one attempt)"))
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients)
    results = list(report.results.values())
    assert (results[0].host, results[0].status) == ("c1", Status.FAILED)
    assert results[0].message == "sudo: wrong password (stopped after one attempt)"
    assert [(r.status, r.message) for r in results[1:]] == [
        (Status.SKIPPED, "not attempted: the sudo password was rejected on c1")] * 2
    assert fleet.commands() == ["true"]   # one `sudo true`, nothing else, nowhere else


def test_sudo_canary_passes_then_every_host_is_handled(tmp_path, fleet):
    s = session_for(tmp_path, fleet, sudo_password="right")
    for name in ("c1", "c2", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.status for r in report.results.values()] == [Status.CHANGED] * 3
    assert fleet.commands("c1")[0] == "true" and fleet.sent("^true$", "c2") == []


def test_an_unreachable_client_does_not_stop_the_others(tmp_path, fleet):
    s = session_for(tmp_path, fleet)
    fleet.host("c2").on("#connect", UnreachableError("c2", "SSH connection to 192.0.2.22:22 failed: timed out"))
    for name in ("c1", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert {r.host: r.status for r in report.results.values()} == {
        "c1": Status.CHANGED, "c2": Status.UNREACHABLE, "c3": Status.CHANGED}
    assert report.results[("client", "c2")].message == "SSH connection to 192.0.2.22:22 failed: timed out"


# --------------------------------------------------------------------------- verify


def test_verify_client_runs_the_tls_check_on_the_client_with_sudo(tmp_path, fleet):
    s = session_for(tmp_path, fleet, clients=1)
    fleet.host("c1").on("VERIFY", "VERIFY ok openssl\n")
    material, _ = D.certificate(s)
    result = V.verify_client(s.inv.clients[0], s, material)
    assert (result.status, result.message) == (
        Status.OK, "TLS to registry.test:5443 validates with the installed trust (openssl)")
    (call,) = fleet.calls
    assert call.sudo and "/etc/docker/certs.d/registry.test:5443/ca.crt" in call.command
