"""`inv deploy`, `inv status`, `inv verify` against the real lab (issue: one command for the whole job)."""
from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.lab

REF = "registry.lab/e2e/hello:1"


def push(fleet, host, user, password, ref=REF):
    assert fleet.login(host, user, password).returncode == 0
    return fleet.on(host, f"docker tag lab/hello:1 {ref} && docker push {ref}")


def pull(fleet, host, user, password, ref=REF):
    fleet.login(host, user, password)
    return fleet.on(host, f"docker rmi -f {ref} >/dev/null 2>&1; docker pull {ref}")


def test_F26_deploy_from_bare_lab_every_client_pulls_and_rerun_changes_nothing(fleet, user):
    code, first = fleet.json("deploy")
    assert code == 0, first
    assert first["registry"]["status"] == "changed"
    assert {h: r["status"] for h, r in first["hosts"].items()} == dict.fromkeys(("client1", "client2", "client3"),
                                                                               "changed")
    assert any("generated" in n for n in first["notes"])
    assert push(fleet, "client1", *user).returncode == 0
    for host in ("client2", "client3"):
        result = pull(fleet, host, *user)
        assert result.returncode == 0, result.stderr
    container, pids = fleet.container_id(), {h: fleet.dockerd_pid(h) for h in ("client1", "client2", "client3")}

    code, second = fleet.json("deploy")
    assert code == 0
    rows = [second["registry"], *second["hosts"].values()]
    assert {r["status"] for r in rows} == {"ok"}, second
    assert all(not r["changes"] and not r["restarted"] for r in rows)
    assert fleet.container_id() == container  # the registry container was not re-created
    assert {h: fleet.dockerd_pid(h) for h in pids} == pids  # no dockerd restart


def test_F26_dry_run_predicts_the_real_run_and_touches_nothing(fleet, user):
    assert fleet.inv("cert.generate").returncode == 0
    code, plan = fleet.json("deploy", "--dry-run")
    assert code == 0
    assert plan["registry"]["status"] == "changed"
    assert {h: r["status"] for h, r in plan["hosts"].items()} == dict.fromkeys(("client1", "client2", "client3"),
                                                                              "changed")
    assert fleet.on("registry", "docker ps -aq").stdout.strip() == ""
    assert fleet.on("client1", "ls /etc/docker/certs.d 2>&1").returncode != 0
    code, real = fleet.json("deploy")
    predicted = {h: [c.removeprefix("would ") for c in r["changes"]] for h, r in plan["hosts"].items()}
    assert {h: r["changes"] for h, r in real["hosts"].items()} == predicted
    assert real["registry"]["changes"] == [c.removeprefix("would ") for c in plan["registry"]["changes"]]


def test_status_matches_reality_and_reports_drift_that_deploy_repairs(fleet, user):
    assert fleet.inv("deploy").returncode == 0
    code, status = fleet.json("status")
    assert code == 0 and status["status"] == "ok", status
    reg = status["registry"]
    served = fleet.on("client1", "openssl s_client -connect registry.lab:443 </dev/null 2>/dev/null "
                                 "| openssl x509 -noout -fingerprint -sha256").stdout.strip().split("=")[-1]
    assert reg["facts"]["served_fingerprint"] == served == status["certificate"]["sha256"]
    assert reg["facts"]["container"]["id"] == fleet.container_id()[:12]
    assert status["hosts"]["client1"]["facts"]["trust"] == "match"
    assert status["certificate"]["days_left"] in (364, 365)
    # `inv status | cat` (stdout is a pipe here): the fingerprints openssl computes, whole and literal
    anchor = fleet.on("client1", "openssl x509 -noout -fingerprint -sha256 "
                                 "-in /etc/docker/certs.d/registry.lab/ca.crt").stdout.strip().split("=")[-1]
    piped = fleet.inv("status")
    assert piped.returncode == 0 and len(served.split(":")) == len(anchor.split(":")) == 32
    assert served in piped.stdout and f"  clients trust its CA  SHA-256 {anchor}\n" in piped.stdout, piped.stdout
    assert piped.stdout.count("trusts the anchor (docker)") == 3 and status["certificate"]["anchor_sha256"] == anchor
    assert "..." not in piped.stdout and "\x1b" not in piped.stdout and "\033" not in piped.stdout

    # a hand edit: someone replaced the trust file on client2 with another certificate
    other = fleet.on("client1", "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                                "-keyout /dev/null -subj /CN=other -days 1 2>/dev/null").stdout
    fleet.lab.run("client2", "cat > /etc/docker/certs.d/registry.lab/ca.crt", input=other)
    code, drift = fleet.json("status")
    assert code == 2 and drift["status"] == "critical"
    c2 = drift["hosts"]["client2"]
    assert c2["status"] == "failed" and c2["facts"]["trust"] == "drift"
    assert c2["facts"]["files"]["/etc/docker/certs.d/registry.lab/ca.crt"] == "drift"
    assert "client2" in " ".join(drift["reasons"])
    human = fleet.inv("status")
    assert human.returncode == 2 and "CRITICAL" in human.stdout and "drift" in human.stdout

    code, repair = fleet.json("deploy")
    assert code == 0 and repair["hosts"]["client2"]["status"] == "changed"
    assert repair["hosts"]["client2"]["changes"] == ["write /etc/docker/certs.d/registry.lab/ca.crt"]
    assert fleet.inv("status").returncode == 0


def test_status_warns_within_warn_days(fleet, user):
    assert fleet.inv("deploy").returncode == 0
    code, status = fleet.json("status", "--warn-days", "400")
    assert code == 1 and status["status"] == "warning"
    assert "expires in" in status["reasons"][0]


def test_verify_passes_then_fails_clearly_when_the_registry_is_stopped(fleet, user):
    assert fleet.inv("deploy").returncode == 0
    code, ok = fleet.json("verify")
    assert code == 0, ok
    reg = ok["registry"]["facts"]
    assert reg["v2_anonymous"] == 401 and reg["v2_authenticated"] == 200 and reg["tls"] in ("TLSv1.2", "TLSv1.3")
    assert all(ok["hosts"][c]["status"] == "ok" for c in ("client1", "client2", "client3"))

    fleet.on("registry", "docker stop registry")
    result = fleet.inv("verify")
    assert result.returncode == 1
    assert "cannot connect to" in result.stdout and "Connection refused" in result.stdout
    code, status = fleet.json("status")
    assert code == 2 and "not running" in status["registry"]["message"]


def test_cert_generate_and_show_match_what_openssl_reads(fleet):
    result = fleet.inv("cert.generate")
    assert result.returncode == 0, result.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(fleet.tmp / "pki" / "registry.crt")],
                          capture_output=True, text=True, check=True).stdout
    ip = fleet.lab.address("registry")
    assert "DNS:registry.lab" in text and f"IP Address:{ip}" in text
    again = fleet.inv("cert.generate")
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    _code, shown = fleet.json("cert.show")
    assert shown["certificates"][0]["sans"] == ["DNS:registry.lab", f"IP:{ip}"]
    assert (fleet.tmp / "pki" / "registry.key").stat().st_mode & 0o777 == 0o600
