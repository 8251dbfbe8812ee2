"""Report: rows keyed by (role, host), so a client named like the registry host is its own row;
'skipped' never reads as 'all good'; a failed registry host fails the run whatever the clients did."""

from __future__ import annotations

import io

from rich.console import Console

from fabfile import report as R
from fabfile.errors import ExitCode
from fabfile.results import HostResult, Report, Status

REG = "registry.lab"


def unreachable_registry_and_a_client_of_the_same_name() -> Report:
    report = Report()
    report.add(HostResult(host=REG, role="registry", status=Status.UNREACHABLE, message="connection refused"))
    report.add(HostResult(host="client1", status=Status.SKIPPED, message="not attempted: the registry host failed"))
    report.add(HostResult(host=REG, status=Status.OK, message="trust in place"))
    return report


def test_a_client_named_like_the_registry_host_does_not_replace_its_row():
    report = unreachable_registry_and_a_client_of_the_same_name()
    assert [(r.role, r.host, r.status) for r in report.results.values()] == [
        ("registry", REG, Status.UNREACHABLE), ("client", "client1", Status.SKIPPED), ("client", REG, Status.OK)]
    assert report.registry.status is Status.UNREACHABLE
    assert report.get(REG).message == "trust in place"
    assert report.exit_code == ExitCode.HOSTS_FAILED
    data = report.to_json()
    assert data["ok"] is False
    assert data["registry"]["status"] == "unreachable" and data["registry"]["role"] == "registry"
    assert data["hosts"][REG]["status"] == "ok" and data["hosts"][REG]["role"] == "client"
    assert data["counts"] == {"ok": 1, "changed": 0, "failed": 0, "unreachable": 1, "skipped": 1}


def test_merge_keeps_both_roles_and_a_later_client_result_replaces_the_earlier_one():
    first = unreachable_registry_and_a_client_of_the_same_name()
    later = Report()
    later.add(HostResult(host="client1", status=Status.CHANGED))
    first.merge(later)
    assert first.get("client1").status is Status.CHANGED and first.registry.status is Status.UNREACHABLE
    assert len(first.results) == 3


def test_skipped_is_never_all_good():
    report = Report()
    report.add(HostResult(host=REG, role="registry", status=Status.OK))
    report.add(HostResult(host="client1", status=Status.OK))
    assert report.verdict() == "all good"
    report.add(HostResult(host="client2", status=Status.SKIPPED, message="verify: false for this client"))
    assert report.verdict() == "no failure, but 1 host(s) skipped: not checked"
    assert report.exit_code == ExitCode.OK  # nothing failed; the line says what was not done
    report.add(HostResult(host="client3", status=Status.FAILED))
    assert report.verdict() == "1 host(s) need attention"
    assert Report().verdict() == "no hosts"


def test_summary_line_shows_both_rows_and_no_all_good(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(R, "out", Console(file=buf, width=200, highlight=False, color_system=None))
    R.summary(unreachable_registry_and_a_client_of_the_same_name(), "deploy")
    text = buf.getvalue()
    assert "all good" not in text
    assert text.rstrip().splitlines()[-1] == "1 ok, 1 unreachable, 1 skipped: 1 host(s) need attention"
    rows = [line for line in text.splitlines() if REG in line]
    assert len(rows) == 2 and "registry" in rows[0] and "client" in rows[1]


def test_no_registry_row_means_no_registry_key():
    report = Report()
    report.add(HostResult(host="client1", status=Status.CHANGED))
    assert "registry" not in report.to_json() and report.registry is None
    assert report.clients == [report.get("client1")]


def test_switch_seconds_is_a_typed_field_shown_among_the_facts_only_when_set():
    plain = HostResult(host="r", role="registry", facts={"fingerprint": "f", "plan": {}})
    assert plain.to_json()["facts"] == {"fingerprint": "f", "plan": {}} and "switch_seconds" not in plain.to_json()
    switched = HostResult(host="r", role="registry", facts={"fingerprint": "f", "plan": {}}, switch_seconds=1.25)
    assert list(switched.to_json()["facts"].items()) == [("fingerprint", "f"), ("switch_seconds", 1.25), ("plan", {})]
    assert switched.facts == {"fingerprint": "f", "plan": {}}   # to_json does not change the result
