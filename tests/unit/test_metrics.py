"""`status --format prometheus` / `--metrics-file`: the exposition read back by a parser, promtool's own
checks (lint of the metrics, the alert rules of contrib/, and a promtool rule test fed with the series we
write), and the task end to end where it needs no fleet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fabfile.certs import describe, fingerprint
from fabfile.metrics import exposition
from fabfile.results import HostResult, Report, Status
from fabfile.status import FleetStatus, Level

from _support import NOW, REPO, run

RULES = REPO / "contrib/prometheus/registry-tls.rules.yml"
promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool not installed (Debian 'prometheus'; script/setup installs it)")


def fleet(cert, *, served: str | None = None, level=Level.CRITICAL) -> FleetStatus:
    rep = Report()
    rep.add(HostResult("registry.test", role="registry", facts={
        "served_fingerprint": served or fingerprint(cert), "expected_fingerprint": fingerprint(cert)}))
    rep.add(HostResult("client1", message="trusts"))
    rep.add(HostResult("client 2 \"quoted\"", status=Status.UNREACHABLE, message="timed out"))
    return FleetStatus(level, describe(cert).as_dict(NOW), rep, ["client 2: unreachable"])


def samples(text: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def test_expiry_days_left_status_and_check_time(self_signed):
    cert, _ = self_signed
    got = samples(exposition(fleet(cert), registry="registry.test", checked_at=NOW))
    reg = (("registry", "registry.test"),)
    assert got[("registry_tls_certificate_expiry_timestamp_seconds", reg)] == cert.not_valid_after_utc.timestamp()
    left = got[("registry_tls_certificate_remaining_seconds", reg)]
    assert left == (cert.not_valid_after_utc - NOW).total_seconds() and left // 86400 == describe(cert).days_left(NOW)
    assert got[("registry_tls_status", reg)] == 2
    assert got[("registry_tls_last_check_timestamp_seconds", reg)] == NOW.timestamp()


def test_host_status_is_a_state_set_with_literal_host_names(self_signed):
    got = samples(exposition(fleet(self_signed[0]), registry="registry.test", checked_at=NOW))
    states = {dict(labels)["status"]: v for (name, labels), v in got.items()
              if name == "registry_tls_host_status" and dict(labels)["host"] == 'client 2 "quoted"'}
    assert states == {"ok": 0, "changed": 0, "failed": 0, "unreachable": 1, "skipped": 0}
    assert got[("registry_tls_host_status", (("host", "registry.test"), ("registry", "registry.test"),
                                            ("role", "registry"), ("status", "ok")))] == 1


def test_served_fingerprint_is_an_info_metric_saying_whether_it_is_expected(self_signed, ca_chain):
    cert = self_signed[0]
    ok = samples(exposition(fleet(cert), registry="r", checked_at=NOW))
    assert ok[("registry_tls_served_certificate_info",
               (("expected", "true"), ("registry", "r"), ("sha256", fingerprint(cert))))] == 1
    other = fingerprint(ca_chain[2])
    bad = samples(exposition(fleet(cert, served=other), registry="r", checked_at=NOW))
    assert bad[("registry_tls_served_certificate_info", (("expected", "false"), ("registry", "r"), ("sha256", other)))] == 1
    info = next(labels for (name, labels) in ok if name == "registry_tls_certificate_info")
    assert dict(info)["sha256"] == fingerprint(cert)


def test_a_failed_check_still_says_unknown_and_when():
    got = samples(exposition(None, registry="", checked_at=NOW))
    assert got == {("registry_tls_status", (("registry", ""),)): 3,
                   ("registry_tls_last_check_timestamp_seconds", (("registry", ""),)): NOW.timestamp()}


def test_nothing_secret_and_no_pem_in_the_metrics(self_signed):
    text = exposition(fleet(self_signed[0]), registry="r", checked_at=NOW).decode()
    assert "BEGIN" not in text and "PRIVATE" not in text


@promtool
def test_promtool_accepts_the_metrics(self_signed):
    proc = run(["promtool", "check", "metrics"], input=exposition(fleet(self_signed[0]), registry="r",
                                                                   checked_at=NOW).decode())
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc


@promtool
def test_promtool_accepts_the_alert_rules_and_they_fire_on_our_series(self_signed, tmp_path):
    assert run(["promtool", "check", "rules", str(RULES)]).returncode == 0
    # Feed promtool's rule tester with the series exposition() writes: the rules must match our names.
    text = exposition(fleet(self_signed[0]), registry="r", checked_at=NOW).decode()
    series = [line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]
    days = next(s for s in series if s.startswith("registry_tls_certificate_remaining_seconds"))
    unreachable = next(s for s in series if 'status="unreachable"' in s and "client 2" in s)
    test = tmp_path / "test.yml"
    test.write_text(f"""rule_files: [{RULES}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - {{series: '{days.replace("'", "''")}', values: '864000x40'}}
      - {{series: '{unreachable.replace("'", "''")}', values: '1x40'}}
    alert_rule_test:
      - eval_time: 35m
        alertname: RegistryTlsCertificateExpiring
        exp_alerts: [{{exp_labels: {{severity: warning, registry: r}},
                      exp_annotations: {{summary: "registry r: certificate expires in 10d 0h 0m 0s",
                        description: "`registry-tls rotate --if-expiring-within 30` from cron should have renewed it."}}}}]
      - eval_time: 35m
        alertname: RegistryTlsHostNotOk
        exp_alerts: [{{exp_labels: {{severity: critical, registry: r, host: 'client 2 "quoted"', role: client,
                                     status: unreachable}},
                      exp_annotations: {{summary: 'registry r: client client 2 "quoted" is unreachable',
                        description: "Run `registry-tls status` for the reason, then `registry-tls deploy --failed-only`."}}}}]
""")
    proc = run(["promtool", "test", "rules", str(test)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_shows_the_alert_rules_file_verbatim():
    assert RULES.read_text().split("\n", 1)[1] in (REPO / "README.md").read_text()


# --------------------------------------------------------------------------- the task, without a fleet


def status(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "status", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_metrics_file_is_written_when_the_inventory_is_missing(tmp_path):
    out = tmp_path / "textfile" / "registry_tls.prom"
    out.parent.mkdir()
    proc = status("--metrics-file", str(out), cwd=tmp_path)
    assert proc.returncode == 3 and "no such inventory file" in proc.stderr
    assert samples(out.read_bytes())[("registry_tls_status", (("registry", ""),))] == 3
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert [p.name for p in out.parent.iterdir()] == ["registry_tls.prom"]  # no temp file left


def test_format_prometheus_without_a_certificate_is_unknown_with_the_registry_label(tmp_path):
    (tmp_path / "inventory.yaml").write_text("registry: {host: reg.example}\ncertificate: {san: [DNS:reg.example]}\n")
    proc = status("--format", "prometheus", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert samples(proc.stdout.encode())[("registry_tls_status", (("registry", "reg.example"),))] == 3


@pytest.mark.parametrize(("args", "fragment"), [(("--format", "xml"), "--format 'xml'"),
                                                (("--metrics-file", "x.txt"), "*.prom"),
                                                (("--metrics-file", "textfile/r.prom"), "no folder textfile;")])
def test_bad_format_or_metrics_file_is_one_line(tmp_path, args, fragment):
    """A missing folder is refused, not made (a 0700 one would hide the file from node_exporter)."""
    proc = status(*args, cwd=tmp_path)
    assert proc.returncode == 3 and fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
