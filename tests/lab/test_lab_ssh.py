"""SSH into lab hosts with host-key verification, sudo rules, and restart-dockerd over SSH."""
from __future__ import annotations

import paramiko
import pytest

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("host", ["registry", "client1", "client2", "client3"])
def test_deploy_logs_in_with_verified_host_key(lab, ssh, ssh_run, host):
    client = ssh(host)
    assert ssh_run(client, "id -un") == (0, "deploy\n", "")
    assert ssh_run(client, "hostname")[1] == f"{host}\n"


def test_root_logs_in_with_the_operator_key(lab, ssh, ssh_run):
    assert ssh_run(ssh("client3", user="root"), "id -un")[1] == "root\n"


def test_unknown_host_key_is_rejected(lab, ssh, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh("client1", known_hosts=empty)


def test_wrong_host_key_is_rejected(lab, ssh, tmp_path):
    # client2's key listed under client1's address: a man in the middle must be refused
    lines = lab.known_hosts_path.read_text().splitlines()
    key_of = {line.split(",", 1)[0]: line.split(" ", 1)[1] for line in lines}
    swapped = tmp_path / "known_hosts"
    swapped.write_text(f"{lab.address('client1')} {key_of[lab.address('client2')]}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh("client1", known_hosts=swapped)


def test_sudo_without_password_on_client1(lab, ssh, ssh_run):
    code, out, _ = ssh_run(ssh("client1"), "sudo -n id -un")
    assert (code, out) == (0, "root\n")


def test_sudo_asks_for_a_password_on_client2(lab, ssh, ssh_run):
    client = ssh("client2")
    code, _, err = ssh_run(client, "sudo -n true")
    assert code != 0 and "password is required" in err
    code, out, _ = ssh_run(client, "sudo -S -p '' id -un", stdin=lab.sudo_password + "\n")
    assert (code, out) == (0, "root\n")
    code, _, _ = ssh_run(client, "sudo -S -p '' -k id -un", stdin="wrong-password\n")
    assert code != 0


def _dockerd_pid(lab, host: str) -> int:
    return int(lab.run(host, "cat /run/docker.pid", check=True).stdout)


def test_restart_dockerd_over_ssh(lab, ssh, ssh_run):
    before = _dockerd_pid(lab, "client1")
    code, _out, err = ssh_run(ssh("client1"), f"sudo -n {lab.restart_dockerd_path} client1", timeout=60)
    assert code == 0, err
    after = _dockerd_pid(lab, "client1")
    assert after != before
    assert lab.run("client1", "docker info --format '{{.ServerVersion}}'", check=True).stdout.strip()
    assert {s.name: s for s in lab.status()}["client1"].dockerd_pid == after
    # the images survive the restart (same data root)
    lab.run("client1", "docker image inspect lab/hello:1 >/dev/null", check=True)


def test_restart_dockerd_brings_back_restart_always_containers(lab, ssh, ssh_run):
    name = "rtls-test-keep"
    lab.run("registry", f"docker rm -f {name} >/dev/null 2>&1; "
                        f"docker run -d --restart=always --name {name} registry:2", check=True)
    try:
        code, _, err = ssh_run(ssh("registry"), f"sudo -n {lab.restart_dockerd_path} registry",
                               timeout=60)
        assert code == 0, err
        state = ""
        for _ in range(50):
            state = lab.run("registry", f"docker inspect -f '{{{{.State.Running}}}}' {name}").stdout
            if state.strip() == "true":
                break
            lab.run("registry", "sleep 0.2")
        assert state.strip() == "true"
    finally:
        lab.run("registry", f"docker rm -f -v {name}")


def test_restart_dockerd_refuses_another_hosts_name(lab, ssh, ssh_run):
    before = _dockerd_pid(lab, "client3")
    code, _, err = ssh_run(ssh("client3"), f"sudo -n {lab.restart_dockerd_path} client1")
    assert code != 0 and "not lab host client1" in err
    assert _dockerd_pid(lab, "client3") == before
