"""The shared lab's hosts: status, inventory, and per-host isolation of what the tool writes."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import SUBNET

pytestmark = pytest.mark.lab
NET = SUBNET.rsplit(".", 1)[0]  # the lab's /24 (RTLS_LAB_SUBNET), e.g. 10.213.0

PRIVATE_DIRS = ["/etc/docker", "/etc/ssl/certs", "/etc/containerd", "/etc/sudoers.d",
                "/usr/local/share/ca-certificates", "/var/lib/docker-registry", "/root", "/tmp"]


def test_status_reports_every_host_up(lab):
    statuses = {s.name: s for s in lab.status()}
    assert list(statuses) == ["registry", "client1", "client2", "client3"]
    assert statuses["registry"].role == "registry" and statuses["registry"].address == f"{NET}.10"
    assert [statuses[f"client{i}"].address for i in (1, 2, 3)] == [f"{NET}.11", f"{NET}.12", f"{NET}.13"]
    for s in statuses.values():
        assert s.up and s.docker, s
        assert s.holder_pid and s.sshd_pid and s.dockerd_pid, s
    assert len({s.dockerd_pid for s in statuses.values()}) == 4


@pytest.mark.parametrize("directory", PRIVATE_DIRS)
def test_file_written_on_client1_is_invisible_elsewhere(lab, directory):
    name = f"rtls-isolation-{uuid.uuid4().hex[:8]}"
    path = f"{directory}/{name}"
    lab.run("client1", f"mkdir -p {directory} && echo client1 > {path}", check=True)
    try:
        assert lab.run("client1", f"cat {path}").stdout == "client1\n"
        for other in ("client2", "registry"):
            assert lab.run(other, f"test -e {path}").returncode == 1, f"{path} leaked to {other}"
        assert not Path(path).exists(), f"{path} leaked to the machine"
    finally:
        lab.run("client1", f"rm -f {path}")


def test_registry_lab_resolves_on_every_host_but_not_on_the_machine(lab):
    for host in lab.hosts:
        out = lab.run(host, "getent hosts registry.lab", check=True).stdout.split()
        assert out[0] == f"{NET}.10"
        assert lab.run(host, "hostname", check=True).stdout.strip() == host
    assert "registry.lab" not in Path("/etc/hosts").read_text()


def test_hosts_have_private_users_and_homes(lab):
    assert lab.run("client1", "id -u deploy", check=True).stdout.strip() == "2000"
    assert "deploy:" not in Path("/etc/passwd").read_text()
    home = lab.run("client1", "ls -A /root", check=True).stdout.split()
    assert ".ssh" in home and ".bashrc" not in home and ".pyenv" not in home
    assert lab.run("client1", "ls /home", check=True).stdout.split() == ["deploy"]


def test_lab_address_routes_between_hosts(lab):
    # client1 reaches the registry host's sshd over the lab bridge (bash /dev/tcp, no extra tools)
    result = lab.run("client1", "bash -c 'exec 3<>/dev/tcp/registry.lab/22 && head -c 7 <&3'",
                     timeout=10)
    assert result.stdout == "SSH-2.0"


def test_inventory_matches_the_tool_schema(lab):
    from fabfile import inventory

    inv = inventory.load(lab.inventory_path)  # the tool's own strict loader accepts it
    reg = inv.registry
    assert (reg.host, reg.ssh.address, reg.port, reg.ssh.user) == (
        "registry.lab", lab.address("registry"), 443, "deploy")
    assert reg.ssh.key == str(lab.ssh_key_path) and reg.image == "registry:2"
    assert inv.certificate.spec.san_texts == ("DNS:registry.lab", f"IP:{lab.address('registry')}")
    assert inv.known_hosts == lab.known_hosts_path
    assert {c.name: (c.ssh.address, c.restart_command) for c in inv.clients} == {
        f"client{i}": (lab.address(f"client{i}"), f"{lab.restart_dockerd_path} client{i}") for i in (1, 2, 3)}
    assert all(c.trust == ("docker",) and c.groups == ("lab",) for c in inv.clients)
    for path in (lab.ssh_key_path, lab.known_hosts_path, lab.restart_dockerd_path):
        assert path.is_absolute() and path.exists()
    assert lab.ssh_key_path.stat().st_mode & 0o777 == 0o600
    assert lab.sudo_password_path.stat().st_mode & 0o777 == 0o600
    known = lab.known_hosts_path.read_text()
    for host in lab.hosts:
        assert lab.address(host) + "," in known


def test_lab_images_are_imported(lab):
    assert lab.run("registry", "docker image inspect registry:2 --format '{{json .Config.Entrypoint}}'",
                   check=True).stdout.strip() == '["registry"]'
    for client in ("client1", "client2", "client3"):
        lab.run(client, "docker image inspect lab/hello:1 >/dev/null", check=True)
