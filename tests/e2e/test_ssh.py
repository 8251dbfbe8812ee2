"""The SSH layer against real sshd (issue: an SSH layer users can trust).

Host keys (F11), ssh_config, gateways (F15), authentication failures (F12), agent forwarding.
The client TLS check is switched off (``verify: false``) where the registry is not the point,
so each run is one SSH session per host and nothing else.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

CLIENTS = ("client1", "client2", "client3")


def statuses(report: dict) -> dict[str, str]:
    return {h: r["status"] for h, r in report["hosts"].items()}


def message(report: dict, host: str) -> str:
    return report["hosts"][host]["message"]


def keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def fingerprint(line: str) -> str:
    """SHA256:... of a known_hosts line or a public key line, as `ssh-keygen -l` prints it."""
    out = subprocess.run(["ssh-keygen", "-lf", "-"], input=line, capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def sshd_log(fleet, host: str) -> list[str]:
    return (fleet.lab.host_dir(host) / "sshd.log").read_text().splitlines()


@pytest.fixture
def trust_only(fleet):
    """A certificate to install, no TLS check on the clients (the registry is not deployed)."""
    fleet.edit(lambda d: d["clients"]["defaults"].__setitem__("verify", False))
    assert fleet.inv("cert.generate").returncode == 0
    return fleet


@pytest.fixture
def known_hosts(fleet) -> Path:
    """A private copy of the lab's known_hosts that the test may edit; the inventory uses it."""
    path = fleet.tmp / "known_hosts"
    shutil.copy(fleet.lab.known_hosts_path, path)
    fleet.edit(lambda d: d["ssh"].__setitem__("known_hosts", str(path)))
    return path


def drop_host(path: Path, address: str) -> str:
    """Remove the known_hosts line of ``address``; return it."""
    lines = path.read_text().splitlines()
    (line,) = [x for x in lines if x.split()[0].split(",")[0] == address]
    path.write_text("\n".join(x for x in lines if x != line) + "\n")
    return line


def test_F11_unknown_host_key_refused_then_accepted_once_then_a_changed_key_is_fatal(trust_only, known_hosts):
    fleet = trust_only
    ip3 = fleet.lab.address("client3")
    real_line = drop_host(known_hosts, ip3)

    code, report = fleet.json("clients.trust")
    assert code == 1
    assert statuses(report) == {"client1": "changed", "client2": "changed", "client3": "unreachable"}
    assert message(report, "client3") == (f"unknown host key for {ip3}; not in {known_hosts} (verify it and add it, "
                                          "or pass --accept-new-host-keys to record it)")
    assert ip3 not in known_hosts.read_text()  # nothing recorded without the flag

    accepted = fleet.inv("clients.trust", "--hosts", "client3", "--accept-new-host-keys")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert f"{ip3}: recorded new host key ssh-ed25519 {fingerprint(real_line)}" in accepted.stderr
    recorded = [x for x in known_hosts.read_text().splitlines() if x.startswith(f"{ip3} ")]
    assert len(recorded) == 1 and fingerprint(recorded[0]) == fingerprint(real_line)

    code, again = fleet.json("clients.trust", "--hosts", "client3")  # no flag needed any more
    assert code == 0 and statuses(again) == {"client3": "ok"}

    # someone else's key for the address (a re-installed host, or a man in the middle)
    impostor = (keygen(fleet.tmp / "impostor").with_suffix(".pub")).read_text().split()
    known_hosts.write_text(known_hosts.read_text().replace(recorded[0], f"{ip3} {impostor[0]} {impostor[1]}"))
    before = known_hosts.read_text()
    code, changed = fleet.json("clients.trust", "--hosts", "client3", "--accept-new-host-keys")
    assert code == 1 and statuses(changed) == {"client3": "unreachable"}
    text = message(changed, "client3")
    assert text.startswith(f"host key CHANGED for {ip3}: known_hosts has {fingerprint(' '.join(impostor))}, "
                           f"server offers {fingerprint(real_line)}")
    assert f"ssh-keygen -R {ip3} -f {known_hosts}" in text
    assert known_hosts.read_text() == before  # the flag never overwrites a known key


def test_F11_unknown_registry_host_key_aborts_the_deploy(fleet, known_hosts):
    drop_host(known_hosts, fleet.lab.address("registry"))
    proc = fleet.inv("deploy", "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["registry"]["status"] == "unreachable"
    assert report["registry"]["message"].startswith("unknown host key for ")
    assert {report["hosts"][c]["status"] for c in CLIENTS} == {"skipped"}
    assert fleet.on("registry", "docker ps -aq").stdout.strip() == ""


def test_F12_wrong_or_encrypted_key_fails_once_and_is_never_retried(trust_only):
    fleet = trust_only
    wrong, locked = keygen(fleet.tmp / "wrong"), keygen(fleet.tmp / "locked", passphrase="s3cret-passphrase")
    fleet.edit(lambda d: (d["clients"]["hosts"]["client2"].__setitem__("ssh_key", str(wrong)),
                          d["clients"]["hosts"]["client3"].__setitem__("ssh_key", str(locked))))
    logs = {h: len(sshd_log(fleet, h)) for h in ("client2", "client3")}
    code, report = fleet.json("clients.trust")
    assert code == 1
    assert statuses(report) == {"client1": "changed", "client2": "unreachable", "client3": "unreachable"}
    assert message(report, "client2") == (f"authentication failed for user deploy@{fleet.lab.address('client2')}, "
                                          f"tried key {wrong} (not retried)")
    assert message(report, "client3") == f"private key {locked} is encrypted; load it into ssh-agent (not retried)"
    for host in ("client2", "client3"):  # sshd saw exactly one connection: no retry loop (fail2ban, lockouts)
        new = sshd_log(fleet, host)[logs[host]:]
        assert len([line for line in new if "[preauth]" in line]) == 1, new
        assert not [line for line in new if "Accepted" in line], new


def test_F11_F15_ssh_config_user_port_hostname_identityfile_and_proxyjump_are_honoured(trust_only):
    """ssh_config (F11 context): client1 and client2 are known only by ssh_config aliases; client2 and the
    ProxyJump hop get their user and key from it. The hop's host key is checked like any other."""
    fleet = trust_only
    lab, key = fleet.lab, str(fleet.lab.ssh_key_path)
    config = fleet.tmp / "ssh_config"
    config.write_text(
        f"Host c1\n  HostName {lab.address('client1')}\n  User deploy\n  Port 22\n  IdentityFile {key}\n"
        f"Host c2\n  HostName {lab.address('client2')}\n  User deploy\n  IdentityFile {key}\n  ProxyJump jump\n"
        f"Host jump\n  HostName {lab.address('registry')}\n  User deploy\n  IdentityFile {key}\n"
        "Host *\n  ForwardAgent yes\n")

    def use_config(d):
        d["ssh"]["config"] = str(config)
        defaults = d["clients"]["defaults"]
        for k in ("ssh_user", "ssh_key"):
            d["clients"]["hosts"]["client3"][k] = defaults.pop(k)
        d["clients"]["hosts"]["client1"]["address"] = "c1"
        d["clients"]["hosts"]["client2"]["address"] = "c2"

    fleet.edit(use_config)
    code, report = fleet.json("clients.trust")
    assert code == 0, report
    assert statuses(report) == dict.fromkeys(CLIENTS, "changed")
    assert f"Accepted publickey for deploy from {lab.address('client1').rsplit('.', 1)[0]}.1 " in \
        "\n".join(sshd_log(fleet, "client1")[-3:])  # direct, from the bridge
    assert f"Accepted publickey for deploy from {lab.address('registry')} " in \
        "\n".join(sshd_log(fleet, "client2")[-3:])  # through the jump host
    assert fleet.on("client2", "test -f /etc/docker/certs.d/registry.lab/ca.crt").returncode == 0


def test_F12_agent_is_never_forwarded_even_when_ssh_config_asks(fleet, tmp_path):
    """With an agent holding the key and `ForwardAgent yes`, the remote session still has no agent socket."""
    from fabfile.inventory import SshTarget
    from fabfile.transport import Remote, SshSettings

    sock = tmp_path / "agent.sock"
    agent = subprocess.run(["ssh-agent", "-a", str(sock), "-s"], capture_output=True, text=True, check=True)
    pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", str(fleet.lab.ssh_key_path)], env=env, check=True, capture_output=True)
        config = tmp_path / "ssh_config"
        config.write_text("Host *\n  ForwardAgent yes\n  User deploy\n")
        old = os.environ.get("SSH_AUTH_SOCK")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            settings = SshSettings(known_hosts=fleet.lab.known_hosts_path, ssh_config=config, connect_timeout=5)
            with Remote(SshTarget(name="client1", address=fleet.lab.address("client1")), settings) as remote:
                out = remote.run("echo ${SSH_AUTH_SOCK:-none}; ls /tmp | grep -c '^ssh-' || true").stdout.split()
        finally:
            os.environ.pop("SSH_AUTH_SOCK") if old is None else os.environ.__setitem__("SSH_AUTH_SOCK", old)
    finally:
        os.kill(pid, 15)
    assert out == ["none", "0"]  # logged in with the agent's key, and no agent forwarded


def test_F15_gateway_reaches_clients_and_a_failing_gateway_is_named_not_its_targets(trust_only, known_hosts):
    fleet = trust_only
    reg = fleet.lab.address("registry")
    fleet.edit(lambda d: (d["clients"]["hosts"]["client1"].__setitem__("gateway", f"deploy@{reg}"),
                          d["clients"]["hosts"]["client2"].__setitem__("gateway", reg),
                          d["ssh"].__setitem__("connect_timeout", 2)))
    code, report = fleet.json("clients.trust")
    assert code == 0 and statuses(report) == dict.fromkeys(CLIENTS, "changed"), report
    assert f"Accepted publickey for deploy from {reg} " in sshd_log(fleet, "client1")[-1]

    # the gateway is down: its targets are unreachable because of it, the direct client is not affected
    fleet.on("registry", "iptables -I INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset")
    try:
        code, down = fleet.json("clients.trust")
    finally:
        fleet.on("registry", "iptables -F INPUT")
    assert code == 1 and statuses(down) == {"client1": "unreachable", "client2": "unreachable", "client3": "ok"}
    for host in ("client1", "client2"):
        assert message(down, host) == (f"gateway deploy@{reg}:22 failed: connection refused by {reg}:22 "
                                       "(target not tried)")

    # the gateway's own host key is checked like any other
    drop_host(known_hosts, reg)
    code, unknown = fleet.json("clients.trust", "--hosts", "client1")
    assert code == 1 and message(unknown, "client1").startswith(
        f"gateway deploy@{reg}:22 failed: unknown host key for {reg}; not in {known_hosts}")
    shutil.copy(fleet.lab.known_hosts_path, known_hosts)

    # the gateway refuses the user: the gateway is blamed, the target never tried
    fleet.edit(lambda d: d["clients"]["hosts"]["client1"].__setitem__("gateway", f"nobody@{reg}"))
    code, auth = fleet.json("clients.trust", "--hosts", "client1")
    assert code == 1 and message(auth, "client1") == (
        f"gateway nobody@{reg}:22 failed: authentication failed for user nobody@{reg}, "
        f"tried key {fleet.lab.ssh_key_path} (not retried) (target not tried)")

    # the gateway answers but the target is a black hole behind it: bounded by connect_timeout
    fleet.edit(lambda d: d["clients"]["hosts"]["client1"].__setitem__("gateway", f"deploy@{reg}"))
    fleet.on("client1", "iptables -I INPUT -p tcp --dport 22 -j DROP")
    try:
        code, hole = fleet.json("clients.trust", "--hosts", "client1")
    finally:
        fleet.on("client1", "iptables -F INPUT")
    c1 = hole["hosts"]["client1"]
    assert code == 1 and c1["message"] == (f"connection timed out after 2s: gateway deploy@{reg}:22 got no answer "
                                           f"from {fleet.lab.address('client1')}:22")
    assert c1["seconds"] < 2 + 2.0, c1["seconds"]
