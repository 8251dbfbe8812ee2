"""The sudo canary overlaps with the other hosts' connect and probe, yet no other host's sudo
runs before its verdict, and a refused password stops every other host's sudo (F13)."""

from __future__ import annotations

import threading
import time

import pytest

from fabfile.clients import CanaryRejected, SudoCanary
from fabfile.errors import SudoError, WrongSudoPassword


class FakeRemote:
    def __init__(self, name: str, error: Exception | None = None, delay: float = 0.0):
        self.name, self.error, self.delay, self.commands = name, error, delay, []

    def run(self, command: str, *, sudo: bool = False, **kw):
        time.sleep(self.delay)
        self.commands.append((command, sudo))
        if self.error:
            raise self.error
        return "output"


def waiter(canary: SudoCanary, host: str, out: dict) -> threading.Thread:
    def wait():
        try:
            canary.wait(host)
            out[host] = ("go", time.monotonic())
        except CanaryRejected as exc:
            out[host] = (str(exc), time.monotonic())
    t = threading.Thread(target=wait)
    t.start()
    return t


def test_F13_other_hosts_sudo_waits_for_the_canary_verdict_then_goes():
    canary, out = SudoCanary("c1"), {}
    threads = [waiter(canary, h, out) for h in ("c2", "c3")]
    time.sleep(0.05)
    assert out == {}                                   # nobody's sudo before the canary's
    remote = FakeRemote("c1", delay=0.05)
    assert canary.check("c1", lambda: remote.run("probe", sudo=True)) == "output"
    done = time.monotonic()
    for t in threads:
        t.join(5)
    assert remote.commands == [("probe", True)]
    assert {h: v[0] for h, v in out.items()} == {"c2": "go", "c3": "go"}
    assert all(v[1] >= done - 0.01 for v in out.values())
    canary.wait("c1")                                  # the canary host itself never waits


def test_F13_a_refused_password_skips_every_other_hosts_sudo_naming_the_canary():
    canary, out = SudoCanary("c1"), {}
    threads = [waiter(canary, h, out) for h in ("c2", "c3")]
    with pytest.raises(SudoError):
        wrong = FakeRemote("c1", error=WrongSudoPassword("c1", "sudo: wrong password (stopped after one attempt)"))
        canary.check("c1", lambda: wrong.run("probe", sudo=True))
    for t in threads:
        t.join(5)
    assert {h: v[0] for h, v in out.items()} == dict.fromkeys(("c2", "c3"), "not attempted: the sudo password was rejected on c1")


def test_a_canary_host_that_never_got_to_sudo_releases_the_others():
    canary, out = SudoCanary("c1"), {}
    t = waiter(canary, "c2", out)
    canary.release()                                   # e.g. c1 was unreachable
    t.join(5)
    assert out["c2"][0] == "go"


def test_other_sudo_failures_on_the_canary_do_not_stop_the_others():
    canary, out = SudoCanary("c1"), {}
    with pytest.raises(SudoError):
        other = FakeRemote("c1", error=SudoError("c1", "sudo needs a password and none was given"))
        canary.check("c1", lambda: other.run("probe", sudo=True))
    waiter(canary, "c2", out).join(5)
    assert out["c2"][0] == "go"


def test_without_a_canary_nobody_waits():
    SudoCanary(None).wait("c2")
