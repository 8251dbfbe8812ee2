"""What every step returns: one ``HostResult`` per host, gathered in a ``Report``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from .errors import ExitCode


class Status(StrEnum):
    OK = "ok"                    # already as desired, nothing done
    CHANGED = "changed"          # brought to the desired state
    FAILED = "failed"            # reached, but a step failed (the message says which)
    UNREACHABLE = "unreachable"  # no SSH session (network, host key, authentication)
    SKIPPED = "skipped"          # not attempted (filtered out, or an earlier step failed)


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
    switch_seconds: float | None = None   # registry: its container re-created, until healthy (what users waited)

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAILED, Status.UNREACHABLE)

    def to_json(self) -> dict:
        """Every field; ``switch_seconds`` is shown among the facts (before the plan), where --json has it."""
        data = asdict(self)
        data["status"] = self.status.value
        data["seconds"] = round(self.seconds, 3)
        switch = data.pop("switch_seconds")
        if switch is not None:
            facts = data["facts"]
            plan = {"plan": facts.pop("plan")} if "plan" in facts else {}
            data["facts"] = {**facts, "switch_seconds": switch, **plan}
        return data


@dataclass
class Report:
    """Results of one run, keyed by (role, host) in the order hosts were given.

    The key holds the role so that a client named like the registry host (the
    registry host is often a Docker client too) is its own row: neither result
    can replace the other.
    """

    results: dict[tuple[str, str], HostResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, result: HostResult) -> HostResult:
        self.results[(result.role, result.host)] = result
        return result

    def merge(self, other: Report) -> Report:
        self.results.update(other.results)
        self.notes.extend(other.notes)
        return self

    def get(self, host: str, role: str = "client") -> HostResult | None:
        return self.results.get((role, host))

    @property
    def registry(self) -> HostResult | None:
        return next((r for (role, _), r in self.results.items() if role == "registry"), None)

    @property
    def clients(self) -> list[HostResult]:
        return [r for (role, _), r in self.results.items() if role != "registry"]

    @property
    def failed(self) -> list[HostResult]:
        return [r for r in self.results.values() if r.failed]

    @property
    def skipped(self) -> list[HostResult]:
        return [r for r in self.results.values() if r.status is Status.SKIPPED]

    @property
    def changed(self) -> list[HostResult]:
        return [r for r in self.results.values() if r.status is Status.CHANGED]

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for r in self.results.values():
            counts[r.status.value] += 1
        return counts

    def verdict(self) -> str:
        """The summary line's words: 'all good' only when every host was handled and none failed."""
        if self.failed:
            return f"{len(self.failed)} host(s) need attention"
        if self.skipped:
            return f"no failure, but {len(self.skipped)} host(s) skipped: not checked"
        return "all good" if self.results else "no hosts"

    @property
    def exit_code(self) -> ExitCode:
        """1 when any host failed (the registry host is a row of its own: its failure always counts)."""
        return ExitCode.HOSTS_FAILED if self.failed else ExitCode.OK

    def to_json(self) -> dict:
        """``registry``: the registry host's result (absent when not part of the run);
        ``hosts``: the clients by name."""
        registry = self.registry
        return {
            "ok": self.exit_code == ExitCode.OK,
            "counts": self.counts(),
            **({"registry": registry.to_json()} if registry is not None else {}),
            "hosts": {r.host: r.to_json() for r in self.clients},
            "notes": self.notes,
        }
