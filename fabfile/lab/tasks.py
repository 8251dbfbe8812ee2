"""Invoke tasks for the lab (mounted as the `lab` namespace): up, down, status, run."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

from invoke import Collection, Context
from invoke.exceptions import Exit

from ..commandline import task
from . import DEFAULT_SUBNET, HostStatus, Lab, LabError

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".lab"
ROOT_HELP = f"lab folder (default {DEFAULT_ROOT})"


def _lab(root: str | None) -> Lab:
    return Lab(root=Path(root) if root else DEFAULT_ROOT)


def _readable(fn: Callable[P, R]) -> Callable[P, R]:
    """Show LabError as one line and exit 1, without a traceback."""
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except LabError as exc:
            raise Exit(f"lab: {exc}", code=1) from None
    return wrapper


def _table(statuses: Iterable[HostStatus]) -> str:
    rows: list[tuple[str, ...]] = [("HOST", "ROLE", "ADDRESS", "UP", "DOCKER", "HOLDER", "SSHD", "DOCKERD")]
    rows += [(s.name, s.role, s.address, "yes" if s.up else "NO", "yes" if s.docker else "-",
              *(str(p or "-") for p in (s.holder_pid, s.sshd_pid, s.dockerd_pid))) for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


@task(help={"clients": "number of client hosts (default 3)",
            "docker": "run dockerd on the clients (--no-docker: sshd-only clients)",
            "registry_engine": "the registry host's engine: docker (default) or podman (no dockerd there)",
            "podman_clients": "extra clients podman1.. with podman and no dockerd (trust: [podman])",
            "containerd_clients": "extra clients containerd1.. with containerd only (trust: [containerd])",
            "subnet": f"lab IPv4 subnet (default {DEFAULT_SUBNET})", "root": ROOT_HELP})
@_readable
def up(c: Context, clients: int = 3, docker: bool = True, registry_engine: str = "docker",
       podman_clients: int = 0, containerd_clients: int = 0, subnet: str = DEFAULT_SUBNET,
       root: str | None = None) -> None:
    """Start the lab (cleaning any stale one first) and write its inventory."""
    lab = _lab(root)
    started = time.monotonic()
    statuses = lab.up(clients=int(clients), docker=docker, subnet=subnet, registry_engine=registry_engine,
                      podman_clients=int(podman_clients), containerd_clients=int(containerd_clients))
    print(_table(statuses))
    print(f"lab up in {time.monotonic() - started:.1f} s; inventory: {lab.inventory_path}")
    if not all(s.up for s in statuses):
        raise Exit("lab: some hosts are not answering", code=1)


@task(help={"root": ROOT_HELP})
@_readable
def down(c: Context, root: str | None = None) -> None:
    """Stop the lab and remove everything it made."""
    lab = _lab(root)
    started = time.monotonic()
    lab.down()
    print(f"lab down in {time.monotonic() - started:.1f} s")


@task(help={"json": "print a JSON array of hosts", "root": ROOT_HELP})
@_readable
def status(c: Context, json_: bool = False, root: str | None = None) -> None:
    """Show each lab host: role, address, up, PIDs."""
    statuses = _lab(root).status()
    if json_:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
    elif not statuses:
        print("no lab is up")
    else:
        print(_table(statuses))


@task(help={"host": "lab host (registry, client1, ...)", "command": "shell command",
            "root": ROOT_HELP})
@_readable
def run(c: Context, host: str, command: str, root: str | None = None) -> None:
    """Run COMMAND as root inside lab HOST; exit with its exit code."""
    result = _lab(root).run(host, command)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.stdout.flush()
    if result.returncode:
        raise Exit(code=result.returncode)


ns = Collection("lab", up, down, status, run)
