"""fan_out: every host ends with a status, one failure never stops the others, order is kept,
concurrency is bounded, and unexpected errors become 'failed' without leaking secrets."""

from __future__ import annotations

import io
import logging
import random
import threading
import time

import pytest

from fabfile import fleet
from fabfile.errors import AuthError, ExitCode, HostKeyError, InputError, RemoteError, UnreachableError
from fabfile.redact import RedactingFilter, register
from fabfile.results import HostResult, Report, Status

HOSTS = [f"h{i}" for i in range(8)]


def ok(host: str) -> HostResult:
    return HostResult(host=host, status=Status.CHANGED if host.endswith("1") else Status.OK, message="done")


def test_F10_one_host_failing_does_not_stop_the_others():
    def work(host):
        if host == "h2":
            raise UnreachableError(host, "connect to 192.0.2.2:22 timed out after 10s")
        if host == "h5":
            raise RemoteError(host, "docker: not found")
        return ok(host)

    results = fleet.fan_out(HOSTS, work, name=str, parallel=4)
    assert [r.host for r in results] == HOSTS
    by = {r.host: r for r in results}
    assert (by["h2"].status, by["h2"].message) == (Status.UNREACHABLE, "connect to 192.0.2.2:22 timed out after 10s")
    assert (by["h5"].status, by["h5"].message) == (Status.FAILED, "docker: not found")
    assert all(by[h].status in (Status.OK, Status.CHANGED) for h in HOSTS if h not in ("h2", "h5"))
    report = Report()
    for r in results:
        report.add(r)
    assert [r.host for r in report.failed] == ["h2", "h5"]
    assert report.exit_code == ExitCode.HOSTS_FAILED == 1
    assert report.counts() == {"ok": 5, "changed": 1, "failed": 1, "unreachable": 1, "skipped": 0}
    assert report.to_json()["hosts"]["h2"]["status"] == "unreachable" and report.to_json()["ok"] is False


@pytest.mark.parametrize(("exc", "status", "message"), [
    (HostKeyError("h", "host key changed: SHA256:abc != SHA256:def"), Status.UNREACHABLE,
     "host key changed: SHA256:abc != SHA256:def"),
    (AuthError("h", "authentication failed (tried: publickey)"), Status.UNREACHABLE,
     "authentication failed (tried: publickey)"),
    (InputError("inventory.yaml: bad"), Status.FAILED, "inventory.yaml: bad"),
    (ZeroDivisionError("division by zero"), Status.FAILED, "unexpected error: ZeroDivisionError: division by zero"),
    (KeyError("Id"), Status.FAILED, "unexpected error: KeyError: 'Id'"),
])
def test_exceptions_become_statuses(exc, status, message):
    def work(host):
        raise exc

    [result] = fleet.fan_out(["h"], work, name=str, role="registry")
    assert (result.host, result.role, result.status, result.message) == ("h", "registry", status, message)
    assert result.failed and result.seconds >= 0


def test_order_is_kept_whatever_finishes_first():
    rng = random.Random(7)
    delays = {h: rng.uniform(0, 0.02) for h in HOSTS}

    def work(host):
        time.sleep(delays[host])
        return ok(host)

    assert [r.host for r in fleet.fan_out(HOSTS, work, name=str, parallel=8)] == HOSTS


@pytest.mark.parametrize("parallel", [1, 3])
def test_concurrency_is_bounded(parallel):
    lock = threading.Lock()
    active, peak = 0, 0
    first_wave = threading.Barrier(parallel, timeout=5)

    def work(host):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            if int(host[1:]) < parallel:
                first_wave.wait()  # the first `parallel` hosts must really run at the same time
            time.sleep(0.01)
        finally:
            with lock:
                active -= 1
        return ok(host)

    results = fleet.fan_out(HOSTS, work, name=str, parallel=parallel)
    assert len(results) == len(HOSTS) and peak == parallel


def test_progress_sees_every_host():
    seen = []

    class Recorder:
        def started(self, host):
            seen.append(("start", host))

        def finished(self, result):
            seen.append(("end", result.host, result.status.value))

    fleet.fan_out(["a", "b"], lambda h: (_ for _ in ()).throw(RemoteError(h, "x")) if h == "b" else ok(h),
                  name=str, parallel=1, progress=Recorder())
    assert seen == [("start", "a"), ("end", "a", "ok"), ("start", "b"), ("end", "b", "failed")]


def test_no_items_no_threads():
    assert fleet.fan_out([], ok, name=str) == []


def test_unexpected_error_text_and_traceback_are_redacted():
    secret = "tok-" + "9f8e7d6c5b4a"
    register(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    fleet.log.addHandler(handler)
    try:
        [result] = fleet.fan_out(["h"], lambda h: (_ for _ in ()).throw(RuntimeError(f"curl -u admin:{secret}")),
                                 name=str)
    finally:
        fleet.log.removeHandler(handler)
    assert result.message == "unexpected error: RuntimeError: curl -u admin:***"
    assert "Traceback" in stream.getvalue() and secret not in stream.getvalue()


def test_report_all_good_exits_zero():
    report = Report()
    report.add(ok("h0"))
    report.add(HostResult(host="h9", status=Status.SKIPPED, message="filtered out"))
    assert report.exit_code == ExitCode.OK and report.failed == [] and report.changed == []


def test_no_progress_is_a_context_manager_like_live_progress():
    """Session's default progress is used as ``with s.progress(...) as p`` (review §8.1: it crashed)."""
    with fleet.NoProgress() as progress:
        progress.started("c1")
        progress.finished(HostResult(host="c1"))
