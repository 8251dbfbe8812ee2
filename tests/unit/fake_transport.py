"""A recording stand-in for ``transport.Remote``, for orchestration tests without SSH or root.

``FakeFleet`` is what a test hands to ``Session(opener=fleet.opener)``: every
``session.connect(target)`` returns a ``FakeTransport`` for that host. A host
answers scripts by rules: the first rule whose regex is found in the script
gives the result (recorded probe outputs from tests/unit/cases can be the
stdout). Every command and upload is recorded in order, per host and
fleet-wide, so a test can assert what was sent, in which order, and what was not.

Like ``Remote``: ``check=True`` turns a non-zero exit into ``RemoteError``; a
rule may raise (``SudoError``, ``UnreachableError``...) to play a failing host.
An unmatched script is answered with exit 0 and no output, and is recorded
like any other (``strict=True`` makes it an error instead).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fabfile.errors import RemoteError
from fabfile.inventory import SshTarget
from fabfile.transport import Result, SshSettings

CASES = Path(__file__).parent / "cases"

Answer = Result | Callable[[str], Result] | BaseException


@dataclass(frozen=True)
class Call:
    host: str
    command: str
    sudo: bool = False
    uploads: tuple[tuple[str, int], ...] = ()   # put_many: (dest, mode); contents are in FakeHost.files

    @property
    def is_upload(self) -> bool:
        return bool(self.uploads)


@dataclass
class FakeHost:
    name: str
    rules: list[tuple[re.Pattern[str], Answer, int | None]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)   # what put_many installed
    modes: dict[str, int] = field(default_factory=dict)
    strict: bool = False
    connects: int = 0

    def on(self, pattern: str, answer: Answer | str = "", *, exited: int = 0, times: int | None = None,
           first: bool = False) -> FakeHost:
        """Answer scripts matching ``pattern`` (a regex, searched) with ``answer``; ``times``: only that often;
        ``first``: before the rules already there."""
        if isinstance(answer, str):
            answer = Result(stdout=answer, stderr="", exited=exited)
        self.rules.insert(0 if first else len(self.rules), (re.compile(pattern), answer, times))
        return self

    def answer(self, command: str) -> Result:
        for i, (pattern, answer, times) in enumerate(self.rules):
            if not pattern.search(command):
                continue
            if times is not None:
                if times <= 0:
                    continue
                self.rules[i] = (pattern, answer, times - 1)
            if isinstance(answer, BaseException):
                raise answer
            return answer(command) if callable(answer) else answer
        if self.strict:
            raise AssertionError(f"{self.name}: no recorded answer for:\n{command}")
        return Result(stdout="", stderr="", exited=0)


class FakeFleet:
    """The hosts of one test, and the ordered record of everything sent to them."""

    def __init__(self) -> None:
        self.hosts: dict[str, FakeHost] = {}
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def host(self, name: str) -> FakeHost:
        if name not in self.hosts:
            self.hosts[name] = FakeHost(name)
        return self.hosts[name]

    def opener(self, target: SshTarget, settings: SshSettings) -> FakeTransport:
        return FakeTransport(self, self.host(target.name))

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def commands(self, host: str | None = None) -> list[str]:
        return [c.command for c in self.calls if host is None or c.host == host]

    def sent(self, pattern: str, host: str | None = None) -> list[Call]:
        """The calls whose command matches ``pattern`` (regex, searched)."""
        rx = re.compile(pattern)
        return [c for c in self.calls if (host is None or c.host == host) and rx.search(c.command)]


class FakeTransport:
    """One host, as ``transport.Remote`` is to the code under test (structurally a ``Transport``)."""

    def __init__(self, fleet: FakeFleet, host: FakeHost):
        self.fleet, self.host, self.name = fleet, host, host.name
        self.opened = False

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> FakeTransport:
        if not self.opened:
            self.host.connects += 1
            self.opened = True
            self.host.answer("#connect")  # a rule on '#connect' can make the host unreachable
        return self

    def close(self) -> None:
        self.opened = False

    def run(self, command: str, *, sudo: bool = False, timeout: int | None = None, check: bool = True) -> Result:
        self.open()
        self.fleet.record(Call(self.name, command, sudo))
        result = self.host.answer(command)
        if check and not result.ok:
            raise RemoteError(self.name, result.tail())
        return result

    def put_many(self, files: list[tuple[bytes, str, int]], *, owner: str = "root", group: str = "root") -> None:
        self.open()
        self.fleet.record(Call(self.name, "#put_many", True, tuple((dest, mode) for _, dest, mode in files)))
        self.host.answer("#put_many " + " ".join(dest for _, dest, _ in files))
        for data, dest, mode in files:
            self.host.files[dest], self.host.modes[dest] = data, mode


def recorded_output(name: str) -> str:
    """The stdout of a recorded probe (tests/unit/cases/facts/<name>.json), ``@TAG file`` lines expanded."""
    case = json.loads((CASES / "facts" / f"{name}.json").read_text())
    out = []
    for line in case["output"]:
        if line.startswith("@"):
            tag, file = line[1:].split(" ", 1)
            data = json.loads((CASES / "inspect" / file).read_text())
            out.append(f"{tag} {json.dumps(data, separators=(',', ':'))}")
        else:
            out.append(line)
    return "\n".join(out)
