"""`inv clients.trust` on real Docker clients (issue: clients)."""
from __future__ import annotations

import pytest

from tests.e2e.test_deploy import pull, push

pytestmark = pytest.mark.lab

CLIENTS = ("client1", "client2", "client3")
# A container that keeps running: the host's own sleep(1) with its libraries, imported as an image.
SLEEP_IMAGE = """
set -e
d=$(mktemp -d); mkdir -p $d/bin
cp /bin/sleep $d/bin/
for lib in $(ldd /bin/sleep | grep -o '/[^ ]*'); do mkdir -p $d$(dirname $lib); cp $lib $d$lib; done
tar -C $d -c . | docker import -c 'CMD ["/bin/sleep","3600"]' - lab/sleep:1 >/dev/null
rm -rf $d
docker run -d --name busy lab/sleep:1 >/dev/null
"""


def block_ssh(fleet, host):
    assert fleet.on(host, "iptables -I INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset").returncode == 0


def unblock_ssh(fleet, host):
    fleet.on(host, "iptables -D INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset")


def test_untrusted_clients_fail_with_x509_then_trust_makes_every_pull_work(fleet, user):
    assert fleet.inv("registry.deploy").returncode == 0
    for host in CLIENTS:
        login = fleet.login(host, *user)
        assert login.returncode != 0 and "x509" in login.stderr, login.stderr
    code, report = fleet.json("clients.trust")
    assert code == 0, report
    assert all(report["hosts"][h]["status"] == "changed" for h in CLIENTS)
    assert all(report["hosts"][h]["facts"]["verify"] == "ok" for h in CLIENTS)  # TLS check on each client
    files = fleet.on("client1", "find /etc/docker/certs.d -type f -printf '%p %m %u\\n' | sort").stdout.split("\n")
    assert "/etc/docker/certs.d/registry.lab/ca.crt 644 root" in files
    assert f"/etc/docker/certs.d/{fleet.lab.address('registry')}:443/ca.crt 644 root" in files
    assert push(fleet, "client1", *user).returncode == 0
    for host in ("client2", "client3"):
        assert pull(fleet, host, *user).returncode == 0
    # the IP form and the explicit :443 form work too (their own certs.d folders)
    for ref in (fleet.lab.address("registry"), "registry.lab:443"):
        assert fleet.login("client3", *user, ref=ref).returncode == 0, ref

    pids = {h: fleet.dockerd_pid(h) for h in CLIENTS}
    code, again = fleet.json("clients.trust")
    assert code == 0 and {r["status"] for r in again["hosts"].values()} == {"ok"}
    assert {h: fleet.dockerd_pid(h) for h in CLIENTS} == pids


def test_F10_unreachable_client_is_reported_others_finish_and_failed_only_completes(fleet, user):
    assert fleet.inv("registry.deploy").returncode == 0
    block_ssh(fleet, "client3")
    try:
        code, report = fleet.json("clients.trust")
    finally:
        unblock_ssh(fleet, "client3")
    assert code == 1
    assert report["hosts"]["client3"]["status"] == "unreachable"
    assert "connection refused" in report["hosts"]["client3"]["message"]
    assert report["hosts"]["client1"]["status"] == report["hosts"]["client2"]["status"] == "changed"

    code, retry = fleet.json("clients.trust", "--failed-only")
    assert code == 0
    assert list(retry["hosts"]) == ["client3"] and retry["hosts"]["client3"]["status"] == "changed"
    assert fleet.login("client3", *user).returncode == 0


def test_F25_os_trust_store_restart_refused_while_containers_run_then_forced(fleet, user):
    """'os' target: dockerd must restart to load it; with a running container and live-restore off,
    the tool refuses without --force, installs the files, and says so."""
    fleet.edit(lambda d: d["clients"]["hosts"]["client1"].__setitem__("trust", ["docker", "os"]))
    assert fleet.inv("registry.deploy").returncode == 0
    assert fleet.on("client1", SLEEP_IMAGE).returncode == 0
    pid = fleet.dockerd_pid("client1")

    code, report = fleet.json("clients.trust", "--hosts", "client1")
    assert code == 1
    c1 = report["hosts"]["client1"]
    assert c1["status"] == "failed" and "live-restore is off" in c1["message"] and "--force" in c1["message"]
    assert fleet.dockerd_pid("client1") == pid
    assert "registry-tls-registry.lab.crt" in fleet.on("client1", "ls /usr/local/share/ca-certificates/").stdout.split()
    assert fleet.on("client1", "grep -c BEGIN /etc/ssl/certs/registry-tls-registry.lab.pem").returncode == 0

    code, forced = fleet.json("clients.trust", "--hosts", "client1", "--force")
    assert code == 0, forced
    assert forced["hosts"]["client1"]["restarted"] is True
    assert fleet.dockerd_pid("client1") != pid
    code, after = fleet.json("clients.trust", "--hosts", "client1")
    assert code == 0 and after["hosts"]["client1"]["status"] == "ok" and not after["hosts"]["client1"]["restarted"]


def test_F13_wrong_sudo_password_stops_at_the_first_host_and_changes_nothing(fleet, user):
    """F13: client2 asks for a password; with a wrong one, the canary fails and nobody else is tried."""
    assert fleet.inv("registry.deploy").returncode == 0
    code, report = fleet.json("clients.trust", "--hosts", "client2,client3",
                              env={"INVOKE_SUDO_PASSWORD": "wrong-password"})
    assert code == 1
    assert report["hosts"]["client2"]["message"].startswith("sudo: wrong password")
    assert report["hosts"]["client3"]["status"] == "skipped"
    for host in ("client2", "client3"):
        assert fleet.on(host, "test -e /etc/docker/certs.d").returncode != 0
    proc = fleet.inv("clients.trust", "--hosts", "client2", env={"INVOKE_SUDO_PASSWORD": "wrong-password"})
    assert "wrong-password" not in proc.stdout + proc.stderr


def test_F14_sudo_without_password_is_a_clear_error(fleet, user):
    """F14: sudo needs a password and none is configured."""
    assert fleet.inv("registry.deploy").returncode == 0
    code, report = fleet.json("clients.trust", "--hosts", "client2", env={"INVOKE_SUDO_PASSWORD": ""})
    assert code == 1
    assert "sudo needs a password and none was given" in report["hosts"]["client2"]["message"]


def test_dry_run_lists_changes_without_writing(fleet, user):
    assert fleet.inv("registry.deploy").returncode == 0
    code, plan = fleet.json("clients.trust", "--dry-run")
    assert code == 0
    assert all(r["changes"] and r["changes"][0].startswith("would write /etc/docker/certs.d/")
               for r in plan["hosts"].values())
    assert all(fleet.on(h, "test -e /etc/docker/certs.d").returncode != 0 for h in CLIENTS)


def test_filters_by_host_and_group(fleet, user):
    assert fleet.inv("registry.deploy").returncode == 0
    _code, report = fleet.json("clients.trust", "--hosts", "client1")
    assert list(report["hosts"]) == ["client1"]
    _code, report = fleet.json("clients.trust", "--groups", "lab")
    assert set(report["hosts"]) == set(CLIENTS)
    typo = fleet.inv("clients.trust", "--hosts", "clinet1")
    assert typo.returncode == 2 and "did you mean 'client1'" in typo.stderr


def test_probe_falls_back_to_sudo_for_a_file_the_login_user_cannot_read(fleet, user):
    """The read-only probe runs without sudo; a root-only trust file is re-read with sudo, not rewritten."""
    assert fleet.inv("deploy").returncode == 0
    path = "/etc/docker/certs.d/registry.lab/ca.crt"
    fleet.on("client1", f"chmod 0600 {path}")
    code, report = fleet.json("clients.trust", "--hosts", "client1")
    assert code == 0
    assert report["hosts"]["client1"]["changes"] == [f"write {path}"]  # wrong mode: fixed, not mistaken
    assert fleet.on("client1", f"stat -c %a {path}").stdout.strip() == "644"
    code, again = fleet.json("clients.trust", "--hosts", "client1")
    assert again["hosts"]["client1"]["status"] == "ok"
