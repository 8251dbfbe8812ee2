"""What every step returns: one ``HostResult`` per host, gathered in a ``Report``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from .errors import ExitCode


class Status(str, Enum):
    OK = "ok"                    # already as desired, nothing done
    CHANGED = "changed"          # brought to the desired state
    FAILED = "failed"            # reached, but a step failed (the message says which)
    UNREACHABLE = "unreachable"  # no SSH session (network, host key, authentication)
    SKIPPED = "skipped"          # not attempted (filtered out, or an earlier step failed)

    def __str__(self) -> str:
        return self.value


@dataclass
class HostResult:
    host: str
    role: str = "client"
    status: Status = Status.OK
    message: str = ""
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    restarted: bool = False
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAILED, Status.UNREACHABLE)

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class Report:
    """Results of one run, by host name, in the order hosts were given."""

    results: dict[str, HostResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, result: HostResult) -> HostResult:
        self.results[result.host] = result
        return result

    def merge(self, other: "Report") -> "Report":
        self.results.update(other.results)
        self.notes.extend(other.notes)
        return self

    @property
    def failed(self) -> list[HostResult]:
        return [r for r in self.results.values() if r.failed]

    @property
    def changed(self) -> list[HostResult]:
        return [r for r in self.results.values() if r.status is Status.CHANGED]

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for r in self.results.values():
            counts[r.status.value] += 1
        return counts

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.HOSTS_FAILED if self.failed else ExitCode.OK

    def to_json(self) -> dict:
        return {
            "ok": not self.failed,
            "counts": self.counts(),
            "hosts": {name: r.to_json() for name, r in self.results.items()},
            "notes": self.notes,
        }
