"""`inv rotate`: no window of distrust, resumable, cron-safe (issue: certificate rotation).

While a rotation runs, a loop on client2 pulls an image every 200 ms; afterwards the failed
pulls are counted. Only the registry's container restart may fail a pull; the test prints
the measured window so the notes can quote it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.e2e.test_deploy import REF, pull, push

pytestmark = pytest.mark.lab

PULL_LOOP = f"""
rm -f /run/pulls.log
nohup sh -c 'while [ ! -e /run/pulls.stop ]; do
  if out=$(docker pull {REF} 2>&1); then r=ok; else r="fail $(printf %s "$out" | tail -n 1 | tr -s " \t" _)"; fi
  echo "$(date +%s.%N) $r" >> /run/pulls.log; sleep 0.2
done' >/dev/null 2>&1 &
"""


class PullLoop:
    def __init__(self, fleet, host="client2"):
        self.fleet, self.host = fleet, host

    def __enter__(self):
        self.fleet.on(self.host, "rm -f /run/pulls.stop")
        assert self.fleet.on(self.host, PULL_LOOP).returncode == 0
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        time.sleep(1.0)
        self.fleet.on(self.host, "touch /run/pulls.stop; sleep 1")

    def results(self) -> list[tuple[float, str]]:
        """(time, 'ok' | 'fail') per pull; a failure's last docker line is kept in ``self.errors``."""
        lines = self.fleet.on(self.host, "cat /run/pulls.log").stdout.split("\n")
        rows = [line.split(maxsplit=2) for line in lines if line.strip()]
        self.errors = [row[2] if len(row) > 2 else "" for row in rows if row[1] == "fail"]
        return [(float(row[0]), row[1]) for row in rows]


DISTRUST = ("x509", "certificate", "tls: ")


def no_distrust(errors: list[str]) -> bool:
    """A failed pull during the switch is the container restart (connection refused/reset, EOF), never the
    client refusing the certificate: that would be a window of distrust."""
    return not any(word in e for e in errors for word in DISTRUST)


def rotate_with_pulls(fleet, user, *args) -> tuple[dict, list[tuple[float, str]]]:
    with PullLoop(fleet) as loop:
        code, report = fleet.json("rotate", *args)
    results = loop.results()
    assert code == 0, report
    assert no_distrust(loop.errors), loop.errors
    report["pull_errors"] = sorted(set(loop.errors))  # printed by the tests, for the notes
    return report, results


def failure_window(results) -> tuple[int, float]:
    fails = [t for t, r in results if r == "fail"]
    return len(fails), (max(fails) - min(fails) + 0.2 if fails else 0.0)


@pytest.fixture
def deployed(fleet, user):
    """A self-signed deployment (the seed's design): a rotation must teach every client a new anchor."""
    fleet.edit(lambda d: d["certificate"].__setitem__("mode", "self-signed"))
    assert fleet.inv("deploy").returncode == 0
    assert push(fleet, "client1", *user).returncode == 0
    assert fleet.login("client2", *user).returncode == 0
    return fleet


def test_not_expiring_does_nothing_in_one_line(deployed):
    result = deployed.inv("rotate", "--if-expiring-within", "30")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == ["certificate valid 364 more days (more than 30): nothing to do"]


def test_self_signed_rotation_keeps_every_pull_working_and_the_images(deployed, user, capsys):
    fleet = deployed
    old = fleet.json("status")[1]["certificate"]["sha256"]
    report, results = rotate_with_pulls(fleet, user, "--if-expiring-within", "400")
    assert report["notes"][-1] == "rotation complete"
    assert report["registry"]["status"] == "changed"
    status = fleet.json("status")[1]
    assert status["status"] == "ok" and status["certificate"]["sha256"] != old
    assert status["registry"]["facts"]["served_fingerprint"] == status["certificate"]["sha256"]
    assert fleet.on("client1", "ls /etc/docker/certs.d/registry.lab").stdout.split() == ["ca.crt"]
    assert pull(fleet, "client3", *user).returncode == 0  # pushed before, pulled after
    fails, window = failure_window(results)
    with capsys.disabled():
        print(f"\n[rotate self-signed] {len(results)} pulls, {fails} failed, window {window:.2f}s, "
              f"switch {report['registry']['facts'].get('switch_seconds')}s, "
              f"failures: {report['pull_errors']}")
    assert len(results) >= 10
    assert window <= 5.0, results  # only the container restart may fail pulls


def test_ca_mode_rotation_touches_only_the_registry(fleet, user, capsys):
    assert "mode:" not in fleet.inventory.read_text()  # ca is the default
    assert fleet.inv("deploy").returncode == 0
    assert push(fleet, "client1", *user).returncode == 0
    assert fleet.login("client2", *user).returncode == 0
    anchors = {h: fleet.on(h, "sha256sum /etc/docker/certs.d/registry.lab/ca.crt").stdout for h in ("client1", "client3")}
    pids = {h: fleet.dockerd_pid(h) for h in ("client1", "client2", "client3")}
    report, results = rotate_with_pulls(fleet, user, "--if-expiring-within", "400")
    assert report["registry"]["status"] == "changed" and report["hosts"] == {}  # no client touched
    assert {h: fleet.on(h, "sha256sum /etc/docker/certs.d/registry.lab/ca.crt").stdout for h in anchors} == anchors
    assert {h: fleet.dockerd_pid(h) for h in pids} == pids
    assert fleet.json("status")[0] == 0
    fails, window = failure_window(results)
    with capsys.disabled():
        print(f"\n[rotate ca] {len(results)} pulls, {fails} failed, window {window:.2f}s, "
              f"switch {report['registry']['facts'].get('switch_seconds')}s, "
              f"failures: {report['pull_errors']}")
    assert window <= 5.0, results


def test_rotation_stopped_after_a_phase_resumes(deployed, user):
    fleet = deployed
    first = fleet.json("rotate", "--until", "trusted")[1]
    assert first["notes"][-1].startswith("phase trusted")
    state = json.loads((fleet.tmp / "state" / "rotation.json").read_text())
    assert state["phase"] == "trusted"
    listing = fleet.on("client3", "ls /etc/docker/certs.d/registry.lab").stdout.split()
    assert listing == ["ca.crt", "registry-tls-rotation.crt"]  # old and new trusted at once
    status = fleet.json("status")
    assert status[0] == 0  # the fleet is consistent mid-rotation
    code, rest = fleet.json("rotate")
    assert code == 0 and rest["notes"][-1] == "rotation complete"
    assert not (fleet.tmp / "state" / "rotation.json").exists()
    assert pull(fleet, "client3", *user).returncode == 0


def test_F24_killed_rotation_is_finished_by_the_next_run(deployed, user):
    fleet = deployed
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "rotate", "--if-expiring-within", "400"], cwd=REPO,
                            env=fleet.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = fleet.tmp / "state" / "rotation.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["phase"] == "trusted":
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run finished before it could be killed"
    code, report = fleet.json("rotate")
    assert code == 0, report
    assert report["notes"][-1] == "rotation complete"
    status = fleet.json("status")
    assert status[0] == 0, status[1]["reasons"]
    assert pull(fleet, "client3", *user).returncode == 0


def test_F23_unreachable_client_blocks_the_switch_until_it_is_back(deployed, user):
    """F23: a client that could not learn the new certificate keeps the registry on the old one."""
    fleet = deployed
    fleet.on("client3", "iptables -I INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset")
    try:
        code, report = fleet.json("rotate", "--if-expiring-within", "400")
    finally:
        fleet.on("client3", "iptables -D INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset")
    assert code == 1
    assert "not switching" in report["notes"][-1] and "client3" in report["notes"][-1]
    assert "registry" not in report
    assert pull(fleet, "client3", *user).returncode == 0  # still served the old certificate
    code, report = fleet.json("rotate")
    assert code == 0 and report["notes"][-1] == "rotation complete"


def test_abort_before_the_switch_returns_to_the_old_certificate(deployed, user):
    fleet = deployed
    old = fleet.json("status")[1]["certificate"]["sha256"]
    assert fleet.json("rotate", "--until", "trusted")[0] == 0
    code, _report = fleet.json("rotate", "--abort")
    assert code == 0
    assert fleet.on("client1", "ls /etc/docker/certs.d/registry.lab").stdout.split() == ["ca.crt"]
    status = fleet.json("status")[1]
    assert status["status"] == "ok" and status["certificate"]["sha256"] == old


def test_self_signed_deployment_moves_to_ca_mode_with_rotate_ca_and_no_certificate_error(deployed, user, capsys):
    """The README's migration: drop `mode: self-signed`; deploy refuses and names `inv rotate --ca`, which
    teaches every client the new CA next to the old certificate, switches the registry, then drops the old."""
    fleet = deployed
    old_anchor = fleet.on("client1", "cat /etc/docker/certs.d/registry.lab/ca.crt").stdout
    fleet.edit(lambda d: d["certificate"].pop("mode"))
    refused = fleet.inv("deploy")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "the files are self-signed while certificate.mode is ca; run `inv rotate --ca`" in refused.stderr
    report, results = rotate_with_pulls(fleet, user, "--ca")
    assert report["notes"][-1] == "rotation complete", report["notes"]
    ca_pem = (fleet.tmp / "pki" / "ca.crt").read_text()
    for host in ("client1", "client2", "client3"):
        assert fleet.on(host, "ls /etc/docker/certs.d/registry.lab").stdout.split() == ["ca.crt"]
        installed = fleet.on(host, "cat /etc/docker/certs.d/registry.lab/ca.crt").stdout
        assert installed == ca_pem != old_anchor
    served = fleet.on("client1", "openssl s_client -connect registry.lab:443 -servername registry.lab -showcerts "
                                 "-verify_return_error -CAfile /etc/docker/certs.d/registry.lab/ca.crt </dev/null")
    assert served.returncode == 0 and "Verify return code: 0 (ok)" in served.stdout
    assert not (fleet.tmp / "pki" / "previous").exists() and not (fleet.tmp / "pki" / "next").exists()
    assert fleet.json("status")[0] == 0
    assert pull(fleet, "client3", *user).returncode == 0  # pushed before, pulled after
    fails, window = failure_window(results)
    with capsys.disabled():
        print(f"\n[rotate self-signed -> ca] {len(results)} pulls, {fails} failed, window {window:.2f}s, "
              f"switch {report['registry']['facts'].get('switch_seconds')}s, "
              f"failures: {report['pull_errors']}")
    assert len(results) >= 10
    assert window <= 5.0, results  # only the container restart may fail pulls
