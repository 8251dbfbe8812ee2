"""Truthful checks (issue 13) against the lab's real runtimes: for every trust target the runtime itself
fails before trust (x509) and works after, and `inv verify` agrees both ways; files we did not write in
certs.d break (or do not break) docker exactly as docker says; a client named like the registry host.

One deploy per test; the targets are spread over the three clients so that each runtime is judged
only by its own trust (podman also reads /etc/docker/certs.d, so client2 trusts podman alone).
"""
from __future__ import annotations

import shlex

import pytest

from tests.e2e.test_deploy import push

pytestmark = pytest.mark.lab

REF = "registry.lab/e2e/hello:1"
TARGETS = {"client1": ["docker", "containerd", "buildkit"], "client2": ["podman"], "client3": ["os"]}
NO_OS_STORE = "env SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent"


def by_runtime(fleet, user: str, password: str) -> dict[str, str]:
    """Each runtime pulling (or reading the manifest of) the pushed image itself: '' when it worked,
    else its error output."""
    creds = shlex.quote(f"{user}:{password}")
    ctr_addr = "$(ls /run/containerd/containerd.sock /run/docker/containerd/containerd.sock 2>/dev/null | head -1)"
    runs = {
        "docker": ("client1", (f"printf %s '{password}' | docker login -u {user} --password-stdin registry.lab "
                              f">/dev/null && docker rmi -f {REF} >/dev/null 2>&1; docker pull {REF}")),
        "containerd": ("client1", (f"{NO_OS_STORE} ctr --address {ctr_addr} -n e2e images pull "
                                  f"--hosts-dir /etc/containerd/certs.d --user {creds} {REF}")),
        "podman": ("client2", f"skopeo inspect --creds {creds} docker://{REF}"),
        "os": ("client3", f"curl -sSf -o /dev/null -u {creds} https://registry.lab/v2/e2e/hello/tags/list"),
    }
    out = {}
    for target, (host, command) in runs.items():
        r = fleet.on(host, command)
        out[target] = "" if r.returncode == 0 else (r.stdout + r.stderr)
    return out


def checks(report: dict, host: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for c in report["hosts"][host]["facts"].get("checks", []):
        found.setdefault(c["target"], set()).add(c["state"])
    return found


def said(report: dict, host: str, target: str, name: str = "registry.lab") -> tuple[str, str]:
    """(state, detail) of one runtime check in --json: what that runtime itself answered."""
    (found,) = [(c["state"], c["detail"]) for c in report["hosts"][host]["facts"]["checks"]
                if (c["target"], c["name"]) == (target, name)]
    return found


def asked_dockerd(state_detail: tuple[str, str], words: str) -> None:
    """dockerd itself refused with ``words`` (POST /auth): not our reading of docker's rule for a stopped dockerd."""
    state, detail = state_detail
    assert state == "fail" and detail.startswith(words), detail
    assert "by docker's rule" not in detail and "dockerd is not running" not in detail, detail


def test_F28_each_runtime_fails_before_trust_works_after_and_verify_agrees(fleet, user):
    fleet.edit(lambda d: [d["clients"]["hosts"][h].__setitem__("trust", t) for h, t in TARGETS.items()])
    assert fleet.inv("registry.deploy").returncode == 0
    assert fleet.inv("clients.trust", "--hosts", "client1").returncode == 0   # to push the image to pull
    assert push(fleet, "client1", *user).returncode == 0
    fleet.on("client1", "rm -rf /etc/docker/certs.d /etc/containerd/certs.d /etc/buildkit")   # back to untrusted

    before = by_runtime(fleet, *user)
    for t, err in before.items():
        assert "x509" in err or "SSL certificate problem" in err, (t, err)
    code, unverified = fleet.json("verify")
    assert code == 1
    for host, targets in TARGETS.items():
        row = unverified["hosts"][host]
        assert row["status"] == "failed" and row["facts"]["verify"] == "fail", row
        assert set(checks(unverified, host)) == set(targets) and all(
            s == {"fail"} for s in checks(unverified, host).values()), row
    assert "x509: certificate signed by unknown authority" in unverified["hosts"]["client1"]["message"]  # dockerd's words
    assert "SSL certificate problem" in unverified["hosts"]["client3"]["message"]                       # curl's words
    state, ctr = said(unverified, "client1", "containerd")          # ctr's own words, as the real pull above says
    assert state == "fail" and ctr.startswith('failed to resolve reference "registry.lab/') and "x509: " in ctr, ctr
    assert "x509: " in before["containerd"] and "failed to resolve reference" in before["containerd"]
    state, skopeo = said(unverified, "client2", "podman")           # skopeo's own words
    assert state == "fail" and "pinging container registry registry.lab" in skopeo and "x509: " in skopeo, skopeo

    code, trusted = fleet.json("clients.trust")
    assert code == 0, trusted
    assert all(trusted["hosts"][h]["facts"]["verify"] == "ok" for h in TARGETS), trusted  # checked after the change
    after = by_runtime(fleet, *user)
    assert after == dict.fromkeys(after, ""), after
    code, verified = fleet.json("verify")
    assert code == 0, verified
    for host, targets in TARGETS.items():
        assert checks(verified, host) == {t: {"ok"} for t in targets}, verified["hosts"][host]
    assert any("buildkitd not asked" in c["detail"] for c in verified["hosts"]["client1"]["facts"]["checks"])
    code, status = fleet.json("status")
    assert code == 0 and status["status"] == "ok", status["reasons"]


def test_F28_stray_key_orphan_cert_and_foreign_ca_as_docker_really_treats_them(fleet, user):
    assert fleet.inv("deploy").returncode == 0
    folder = "/etc/docker/certs.d/registry.lab"
    fleet.on("client1", f"cp {folder}/ca.crt {folder}/domain.key")           # a guide said: copy the key there
    fleet.on("client2", f"cp {folder}/ca.crt {folder}/client.cert")          # a .cert without its key
    fleet.on("client3", f"cp {folder}/ca.crt {folder}/corp-ca.crt")          # another CA: only adds trust

    real = {h: fleet.login(h, *user) for h in ("client1", "client2", "client3")}
    assert "Missing client certificate domain.cert for key domain.key" in real["client1"].stderr
    assert "missing key client.key for client certificate client.cert" in real["client2"].stderr
    assert real["client3"].returncode == 0

    code, status = fleet.json("status")
    assert code == 2 and status["status"] == "critical"
    c1, c2, c3 = (status["hosts"][h] for h in ("client1", "client2", "client3"))
    assert c1["status"] == "failed" and "Missing client certificate domain.cert for key domain.key" in c1["message"]
    assert f"{folder}/domain.key: not written by registry-tls" in c1["message"]
    assert c2["status"] == "failed" and "missing key client.key for client certificate client.cert" in c2["message"]
    assert c3["status"] == "ok" and c3["warnings"] == [(f"{folder}: another CA adds trust for this name: "
                                                       f"{folder}/corp-ca.crt")]
    code, verify = fleet.json("verify")
    assert code == 1 and verify["hosts"]["client1"]["status"] == "failed"
    assert "Missing client certificate" in verify["hosts"]["client1"]["message"]
    for report in (status, verify):   # dockerd was asked, and these are its words (not our reading of its rule)
        asked_dockerd(said(report, "client1", "docker"), "Missing client certificate domain.cert for key domain.key")
        asked_dockerd(said(report, "client2", "docker"), "missing key client.key for client certificate client.cert")
        assert said(report, "client3", "docker")[0] == "ok"
        assert said(report, "client1", "docker", "registry.lab:443")[0] == "ok"   # only that name's folder

    code, deploy = fleet.json("deploy")     # a no-op for our files: still not "trust in place"
    assert code == 1
    assert deploy["hosts"]["client1"]["message"].startswith(   # dockerd not asked on a no-op: its rule, said so
        "docker refuses every pull from registry.lab, by docker's rule: Missing client certificate domain.cert "
        "for key domain.key")
    assert deploy["hosts"]["client3"]["status"] == "ok"
    for host, name in (("client1", "domain.key"), ("client2", "client.cert"), ("client3", "corp-ca.crt")):
        assert fleet.on(host, f"test -f {folder}/{name}").returncode == 0   # not ours: never deleted


def test_a_client_named_like_the_registry_host_keeps_its_own_row(fleet, user):
    """The registry host is a Docker client too; when it is unreachable the run fails, whatever the clients did."""
    fleet.edit(lambda d: d["clients"]["hosts"].__setitem__("registry.lab", {"address": fleet.lab.address("registry")}))
    block = "iptables -I INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset"
    try:
        code, report = fleet.json("deploy")
        fleet.on("registry", block)
        proc = fleet.inv("deploy")
        code_down, down = fleet.json("deploy")
    finally:
        fleet.on("registry", f"{block.replace('-I', '-D')}; rm -rf /etc/docker/certs.d")
    assert code == 0, report
    assert (report["registry"]["role"], report["registry"]["status"]) == ("registry", "changed")
    assert (report["hosts"]["registry.lab"]["role"], report["hosts"]["registry.lab"]["status"]) == ("client", "changed")
    assert proc.returncode == code_down == 1
    assert down["registry"]["status"] == "unreachable" and down["hosts"]["registry.lab"]["status"] == "skipped"
    assert "all good" not in proc.stdout and "1 unreachable" in proc.stdout
