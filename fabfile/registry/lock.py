"""``<data_dir>/.registry-tls.lock`` on the registry host: one changing run per registry, whoever runs it."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from ..errors import LockedError, RemoteError
from ..results import HostResult
from ..sh import Exit
from ..transport import Result, Transport
from .scripts import lock_script, unlock_script
from .spec import LOCK_STALE_SECONDS

if TYPE_CHECKING:
    from .apply import DeployJob

log = logging.getLogger("registry_tls.registry")


class remote_lock:
    """``<data_dir>/.registry-tls.lock``: one changing run per registry, whoever runs it."""

    def __init__(self, remote: Transport, data_dir: str, job: DeployJob, result: HostResult):
        self.remote, self.data_dir, self.job, self.result = remote, data_dir, job, result

    def _take(self, take_over: bool) -> Result:
        return self.remote.run(lock_script(self.data_dir, self.job.run_id, take_over=take_over),
                               sudo=True, check=False)

    def __enter__(self) -> remote_lock:
        run = self._take(self.job.break_lock)
        if run.exited == Exit.LOCKED:
            owner = run.stdout.strip().removeprefix("LOCKED").strip()
            why = _stale(owner)
            if why is None:
                raise LockedError(f"registry locked by another run ({_owner_text(owner)}) "
                                  f"in {self.data_dir}/.registry-tls.lock; if that run is gone, pass --break-lock")
            warning = f"took over a stale registry lock ({_owner_text(owner)}): {why}"
            log.warning("%s: %s", self.remote.name, warning)
            self.result.warnings.append(warning)
            run = self._take(True)
        if not run.ok:
            raise RemoteError(self.remote.name, f"cannot take the lock: {run.tail()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.remote.run(unlock_script(self.data_dir), sudo=True, check=False)


def _owner_text(owner: str) -> str:
    """'host pid 12 1700000000' -> 'host pid 12, 42s ago'."""
    head, _, since = owner.rpartition(" ")
    if not since.isdigit():
        return owner or "owner unknown"
    return f"{head}, {max(0, int(time.time()) - int(since))}s ago"


def _stale(owner: str) -> str | None:
    """Why a lock is stale (its run is dead on this machine, or it is older than an hour), else None."""
    parts = owner.split()
    try:
        host, pid, since = parts[0], int(parts[2]), int(parts[-1])
    except (IndexError, ValueError):
        return "its owner file is unreadable"
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} on this machine is gone"
        except PermissionError:
            pass
        return None
    if time.time() - since > LOCK_STALE_SECONDS:
        return f"older than {LOCK_STALE_SECONDS // 60} minutes"
    return None
