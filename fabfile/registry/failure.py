"""A registry change that failed, and what the rollback brought back. Pure.

``Failure`` says what went wrong with the new container, in the registry's
own words (``reason.reason``), and where the failed container was kept;
``Rollback`` says whether the previous registry serves again, checked like
a deploy (bounded wait, served fingerprint, ``/v2/``). ``message`` is the
one line the operator reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Failure:
    what: str                 # 'did not start' | 'is not healthy' | 'could not be run'
    reason: str               # the registry's (or the engine's) own line, or the failed check
    kept: str | None = None   # '<container>-failed-<time>', stopped; None when no container was made

    def describe(self, engine: str = "docker") -> str:
        kept = f" (kept, stopped, as {self.kept}: `{engine} logs {self.kept}`)" if self.kept else ""
        return f"new registry container {self.what}: {self.reason}{kept}"


@dataclass(frozen=True)
class Rollback:
    restored: bool               # the previous registry answers as before
    seconds: float               # from the start of the rollback until it answered (or gave up)
    had_previous: bool = True    # False: there was no registry container before this run
    problem: str | None = None   # why it does not answer (the last check)
    reason: str | None = None    # its own output's error line, when it does not come back

    def describe(self) -> str:
        if not self.had_previous:
            return "rolled back; there was no registry container before this run, so none serves now"
        if self.restored:
            return f"rolled back; the previous registry serves again (after {self.seconds:.1f} s)"
        own = f"; its own output: {self.reason}" if self.reason else ""
        return f"rolled back, but the previous registry does not come back ({self.seconds:.0f} s): {self.problem}{own}"


def restart_warning(engine: str, kept: str | None, policy: str, refused: str) -> str | None:
    """When the kept container still has a restart policy (the engine refused ``update --restart=no``: podman
    before 5.1 has no such option), a restart of the engine or of the host could start it again."""
    if kept is None or policy in ("", "no"):
        return None
    said = f" ({engine} update: {refused})" if refused else ""
    return (f"{kept} keeps restart policy {policy!r}{said}: a restart of {engine} or of the host may start it; "
            f"`{engine} rm {kept}` once read")


def message(failure: Failure, rollback: Rollback, engine: str = "docker") -> str:
    return f"{failure.describe(engine)}; {rollback.describe()}"


def facts(failure: Failure, rollback: Rollback) -> dict:
    """For --json: the same, as data."""
    return {"failure": asdict(failure), "rollback": {**asdict(rollback), "seconds": round(rollback.seconds, 2)}}
