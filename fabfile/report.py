"""Rendering only: the one way anything reaches the screen.

Every value (from the inventory, a file, a remote host, an exception) goes
through ``literal``: control and invisible characters are escaped (``\\x1b``,
``\\u200b``), nothing is interpreted. Rich draws tables on a terminal with
markup and emoji codes off, so ``[bold]``, ``[/`` and a fingerprint's ``:CD:``
print as they are.

Whether a stream is a terminal is its own ``isatty()``, whatever the
environment says (FORCE_COLOR and the like); colour only there, and not with
NO_COLOR. Not a terminal (a pipe, cron, a log): no colour, no wrapping, no live
progress; one record per line, fields separated by a tab, so ``grep`` and log
readers see whole values. ``--json`` (``print_json``) is the machine interface.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .results import HostResult, Report, Status

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from .certs import CertInfo
    from .status import FleetStatus

STYLE = {
    Status.OK: "green", Status.CHANGED: "yellow", Status.FAILED: "bold red",
    Status.UNREACHABLE: "bold red", Status.SKIPPED: "dim",
}
LEVEL_STYLE = {0: "green", 1: "yellow", 2: "bold red", 3: "magenta"}


def _console(stderr: bool = False) -> Console:
    """A console that is a terminal only when its stream is one: FORCE_COLOR, TTY_COMPATIBLE or TTY_INTERACTIVE
    (common in CI) never turn a pipe into a terminal; colour only on a terminal, and not with NO_COLOR."""
    from rich.console import Console

    terminal = is_terminal(sys.stderr if stderr else sys.stdout)
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True,
                   force_terminal=terminal, force_interactive=terminal,
                   no_color=not terminal or os.environ.get("NO_COLOR", "") != "")


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):   # no isatty, or closed
        return False


def __getattr__(name: str) -> Any:
    """``out`` and ``err``, the two consoles, made on first use: a ``--json`` run never loads rich."""
    if name in ("out", "err"):
        console = globals()[name] = _console(stderr=name == "err")
        return console
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _out() -> Console:
    console = globals().get("out")
    return console if console is not None else __getattr__("out")


def _err() -> Console:
    console = globals().get("err")
    return console if console is not None else __getattr__("err")

# Never sent to a terminal raw: C0/C1 controls and DEL (Cc), every invisible format character (Cf: bidi
# controls, zero-width spaces and joiners, the BOM, ...), line/paragraph separators (Zl, Zp), lone surrogates (Cs)
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_MAYBE_HIDDEN = re.compile("[^\x20-\x7e]")   # printable ASCII never needs a look
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_hidden(char: str) -> bool:
    """A character that does not show as itself (a control, an invisible format character, ...)."""
    return unicodedata.category(char) in HIDDEN_CATEGORIES


def hidden_character(text: str) -> str | None:
    """The first character of ``text`` that does not show as itself, or None."""
    return next((m[0] for m in _MAYBE_HIDDEN.finditer(text) if is_hidden(m[0])), None)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if not is_hidden(char):
        return char
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                                else f"\\U{code:08x}")


def literal(value: object) -> str:
    """``value`` as text that shows exactly what it is: hidden characters escaped, nothing interpreted."""
    return _MAYBE_HIDDEN.sub(_escape, str(value))


def _lines(cell: str | Sequence[str] | Text) -> list[str]:
    if isinstance(cell, str):
        return [literal(cell)]
    if hasattr(cell, "plain"):   # a rich Text
        return [literal(cell.plain)]
    return [literal(part) for part in cell] or ["-"]


# --------------------------------------------------------------------------- the primitives


def line(text: object = "", *, style: str | None = None, console: Console | None = None) -> None:
    """One record: one line, the value literal (styled only on a terminal)."""
    console = console or _out()
    if console.is_terminal:
        from rich.text import Text

        console.print(Text(literal(text), style=style or ""), soft_wrap=True)
    else:
        console.file.write(literal(text) + "\n")
        console.file.flush()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence], *,
          status_column: int | None = None) -> None:
    """A table on a terminal; on a pipe a title line, a header line and one tab-separated line per row.

    A cell is a string or a list of strings (shown one per line on a terminal, joined by '; ' on a pipe).
    """
    rows = [[_lines(cell) for cell in row] for row in rows]
    out = _out()
    if not out.is_terminal:
        line(title)
        out.file.write("\t".join(columns) + "\n")
        for row in rows:
            out.file.write("\t".join("; ".join(cell) for cell in row) + "\n")
        out.file.flush()
        return
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=Text(literal(title)), title_justify="left")
    for col in columns:
        grid.add_column(col, overflow="fold")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cells.append(Text("\n".join(cell), style=STYLE.get(cell[0], "") if i == status_column else ""))
        grid.add_row(*cells)
    out.print(grid)


def fields(title: str, pairs: Sequence[tuple[str, object]], styles: dict[str, str] | None = None) -> None:
    """``key value`` lines, each value whole on its line (never folded): certificates and the like."""
    styles = styles or {}
    out = _out()
    if not out.is_terminal:
        line(title)
        for key, value in pairs:
            out.file.write(f"{key}\t{literal(value)}\n")
        out.file.flush()
        return
    from rich.text import Text

    line(title, style="bold")
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        out.print(Text.assemble("  ", (key.ljust(width), "bold"), "  ", (literal(value), styles.get(key, ""))),
                  soft_wrap=True)


def error(message: object) -> None:
    """The one format for every user-facing failure: one line on stderr."""
    err = _err()
    if err.is_terminal:
        from rich.text import Text

        err.print(Text.assemble(("error:", "bold red"), " ", literal(message)), soft_wrap=True)
    else:
        err.file.write(f"error: {literal(message)}\n")
        err.file.flush()


def note(message: object) -> None:
    line(message, console=_err())


def print_json(data: dict) -> None:
    """The machine interface (schema in README, 'JSON output'): one object, ASCII, controls escaped."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_text(text: str) -> None:
    """Machine-read text (Prometheus exposition, cloud-init, YAML manifests) exactly as given: no markup."""
    sys.stdout.write(text)
    sys.stdout.flush()


class LiveProgress:
    """A progress bar with the hosts in flight; silent when stderr is not a terminal."""

    def __init__(self, title: str, total: int, enabled: bool = True):
        self.enabled = enabled and total > 0 and _err().is_terminal
        self._lock = threading.Lock()
        self._running: list[str] = []
        self._progress: Any = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}", markup=False, style="bold"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[hosts]}", markup=False), TimeElapsedColumn(), console=_err(),
                transient=True,
            )
            self._task = self._progress.add_task(literal(title), total=total, hosts="")

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def _hosts(self) -> str:
        shown = ", ".join(literal(h) for h in self._running[:4])
        return shown + (f" +{len(self._running) - 4}" if len(self._running) > 4 else "")

    def started(self, host: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._running.append(host)
            self._progress.update(self._task, hosts=self._hosts())

    def finished(self, result: HostResult) -> None:
        if not self.enabled:
            return
        with self._lock:
            if result.host in self._running:
                self._running.remove(result.host)
            self._progress.update(self._task, advance=1, hosts=self._hosts())


# --------------------------------------------------------------------------- views


def compact(changes: list[str]) -> list[str]:
    """'write /etc/docker/certs.d/a/ca.crt' x4 -> 'write 4 files under /etc/docker/certs.d'."""
    groups: dict[tuple[str, str], list[str]] = {}
    lines: list[str | tuple[str, str]] = []
    for change in changes:
        verb, _, path = change.rpartition(" ")
        if verb.endswith(("write", "remove")) and path.count("/") >= 4:
            key = (verb, "/".join(path.split("/")[:4]))
            if key not in groups:
                groups[key] = []
                lines.append(key)
            groups[key].append(path)
        else:
            lines.append(change)
    out_lines = []
    for item in lines:
        if isinstance(item, tuple):
            paths = groups[item]
            out_lines.append(f"{item[0]} {paths[0]}" if len(paths) == 1
                             else f"{item[0]} {len(paths)} files under {item[1]}")
        else:
            out_lines.append(item)
    return out_lines


def _message(r: HostResult) -> list[str]:
    return [r.message, *(f"warning: {w}" for w in r.warnings)] if r.message or r.warnings else ["-"]


def summary(report: Report, title: str, *, dry_run: bool = False) -> None:
    table(title, ("host", "role", "status", "changes", "message"),
          ([r.host, r.role, str(r.status), compact(r.changes) or ["-"], _message(r)]
           for r in report.results.values()), status_column=2)
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    verdict = "dry run, nothing changed" if dry_run else report.verdict()
    line(f"{counts or 'no hosts'}: {verdict}")
    for note_ in report.notes:
        line(note_)


def cert_details(info: CertInfo, now: dt.datetime, title: str) -> None:
    left = info.days_left(now)
    fields(title, [
        ("subject", info.subject), ("issuer", info.issuer + (" (self-signed)" if info.self_signed else "")),
        ("SANs", ", ".join(info.sans) or "none"),
        ("valid", f"{info.not_before:%Y-%m-%d %H:%M} -> {info.not_after:%Y-%m-%d %H:%M} UTC"),
        ("days left", left), ("SHA-256", info.sha256), ("key", info.key_type), ("signature", info.signature),
        ("CA", "yes" if info.is_ca else "no"), ("serial", f"{info.serial:x}"),
    ], styles={"days left": "red" if left < 0 else "yellow" if left < 30 else "green"})


def status_view(result: FleetStatus) -> None:
    """``inv status``: certificate line, host table, verdict with reasons."""
    cert = result.certificate
    if cert:
        line(f"certificate {cert['subject']}  SANs {', '.join(cert['sans'])}")
        line(f"  not after {cert['not_after']}  ({cert['days_left']} days left)  SHA-256 {cert['sha256']}")
        line(f"  clients trust {cert['anchor']}  SHA-256 {cert['anchor_sha256']}")

    def what(r: HostResult) -> str:
        return str(r.facts.get("trust") or ("running" if (r.facts.get("container") or {}).get("running") else "-"))

    table("fleet", ("host", "role", "status", "trust / container", "message"),
          ([r.host, r.role, str(r.status), what(r), _message(r)] for r in result.report.results.values()),
          status_column=2)
    line(f"status: {str(result.level).upper()}", style=LEVEL_STYLE[int(result.level)])
    for reason in result.reasons:
        line(f"  - {reason}")
