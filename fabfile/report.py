"""Rendering only: progress while hosts run, a table at the end, JSON for machines, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .certs import CertInfo
from .results import HostResult, Report, Status

if TYPE_CHECKING:
    from .status import FleetStatus

STYLE = {
    Status.OK: "green", Status.CHANGED: "yellow", Status.FAILED: "bold red",
    Status.UNREACHABLE: "bold red", Status.SKIPPED: "dim",
}

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """The one format for every user-facing failure."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_text(text: str) -> None:
    """Machine-read text (Prometheus exposition, cloud-init, YAML manifests) exactly as given: no markup."""
    sys.stdout.write(text)
    sys.stdout.flush()


class LiveProgress:
    """A progress bar with the hosts in flight; silent when stderr is not a terminal."""

    def __init__(self, title: str, total: int, enabled: bool = True):
        self.enabled = enabled and err.is_terminal and total > 0
        self._lock = threading.Lock()
        self._running: list[str] = []
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[hosts]}"), TimeElapsedColumn(), console=err, transient=True,
        )
        self._task = self._progress.add_task(title, total=total, hosts="")

    def __enter__(self) -> "LiveProgress":
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def _hosts(self) -> str:
        shown = ", ".join(self._running[:4])
        return shown + (f" +{len(self._running) - 4}" if len(self._running) > 4 else "")

    def started(self, host: str) -> None:
        with self._lock:
            self._running.append(host)
            self._progress.update(self._task, hosts=self._hosts())

    def finished(self, result: HostResult) -> None:
        with self._lock:
            if result.host in self._running:
                self._running.remove(result.host)
            self._progress.update(self._task, advance=1, hosts=self._hosts())


def compact(changes: list[str]) -> list[str]:
    """'write /etc/docker/certs.d/a/ca.crt' x4 -> 'write 4 files under /etc/docker/certs.d'."""
    groups: dict[tuple[str, str], list[str]] = {}
    lines: list[str | tuple[str, str]] = []
    for line in changes:
        verb, _, path = line.rpartition(" ")
        if verb.endswith(("write", "remove")) and path.count("/") >= 4:
            key = (verb, "/".join(path.split("/")[:4]))
            if key not in groups:
                groups[key] = []
                lines.append(key)
            groups[key].append(path)
        else:
            lines.append(line)
    out_lines = []
    for item in lines:
        if isinstance(item, tuple):
            paths = groups[item]
            out_lines.append(f"{item[0]} {paths[0]}" if len(paths) == 1
                             else f"{item[0]} {len(paths)} files under {item[1]}")
        else:
            out_lines.append(item)
    return out_lines


def summary(report: Report, title: str, *, dry_run: bool = False) -> None:
    table = Table(title=title, title_justify="left", show_lines=False)
    for col in ("host", "role", "status", "changes", "message"):
        table.add_column(col, overflow="fold")
    for r in report.results.values():
        changes = "\n".join(compact(r.changes)) if r.changes else "-"
        message = r.message + "".join(f"\n[yellow]warning:[/] {w}" for w in r.warnings)
        table.add_row(r.host, r.role, f"[{STYLE[r.status]}]{r.status}[/]", changes, message)
    out.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    verdict = "dry run, nothing changed" if dry_run else report.verdict()
    out.print(f"{counts or 'no hosts'}: {verdict}")
    for line in report.notes:
        out.print(line)


def cert_details(info: CertInfo, now: dt.datetime, title: str) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    left = info.days_left(now)
    rows = [
        ("subject", info.subject), ("issuer", info.issuer + (" (self-signed)" if info.self_signed else "")),
        ("SANs", ", ".join(info.sans) or "none"),
        ("valid", f"{info.not_before:%Y-%m-%d %H:%M} -> {info.not_after:%Y-%m-%d %H:%M} UTC"),
        ("days left", f"[{'red' if left < 0 else 'yellow' if left < 30 else 'green'}]{left}[/]"),
        ("SHA-256", info.sha256), ("key", info.key_type), ("signature", info.signature),
        ("CA", "yes" if info.is_ca else "no"), ("serial", f"{info.serial:x}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def status_view(result: FleetStatus) -> None:
    """``inv status``: certificate line, host table, verdict with reasons."""
    cert = result.certificate
    if cert:
        out.print(f"certificate {cert['subject']}  SANs {', '.join(cert['sans'])}")
        out.print(f"  not after {cert['not_after']}  ({cert['days_left']} days left)  SHA-256 {cert['sha256']}")
    table = Table(title="fleet", title_justify="left")
    for col in ("host", "role", "status", "trust / container", "message"):
        table.add_column(col, overflow="fold")
    for r in result.report.results.values():
        what = r.facts.get("trust") or ("running" if (r.facts.get("container") or {}).get("running") else "-")
        message = r.message + "".join(f"\n[yellow]warning:[/] {w}" for w in r.warnings)
        table.add_row(r.host, r.role, f"[{STYLE[r.status]}]{r.status}[/]", str(what), message)
    out.print(table)
    colour = {0: "green", 1: "yellow", 2: "bold red", 3: "magenta"}[int(result.level)]
    out.print(f"status: [{colour}]{str(result.level).upper()}[/]")
    for reason in result.reasons:
        out.print(f"  - {reason}")
