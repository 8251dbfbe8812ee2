"""``<data_dir>/.registry-tls.lock`` on the registry host: one changing run per registry, whoever runs it."""

from __future__ import annotations

import logging
import os
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
        if run.exited == Exit.UNSAFE_PATH:
            raise RemoteError(self.remote.name, unsafe_message(self.data_dir, run.stdout))
        if run.exited == Exit.LOCKED:
            age, _, owner = run.stdout.strip().removeprefix("LOCKED").strip().partition(" ")
            why = _stale(owner.strip(), int(age) if age.isdigit() else 0)
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


def unsafe_message(data_dir: str, stdout: str) -> str:
    """lock_script's ``UNSAFE <path> <why>`` as the one line the run fails with (review L2)."""
    why = next((line.removeprefix("UNSAFE ") for line in stdout.splitlines() if line.startswith("UNSAFE ")),
               "a folder of its path is not root's only")
    return (f"refusing to write in {data_dir}: {why}; data_dir and each of its parents must be owned by root "
            "and not writable by group or other")


def _owner_text(owner: str) -> str:
    """'host pid 12 run ab12 <machine-id> 1700000000' -> 'host pid 12 run ab12, 42s ago'."""
    parts = owner.split()
    if len(parts) < 3 or not parts[-1].isdigit():
        return owner.strip() or "owner unknown"
    return f"{' '.join(parts[:-2])}, {max(0, int(time.time()) - int(parts[-1]))}s ago"


def machine_id() -> str | None:
    """This machine's /etc/machine-id (None when unknown): host names repeat across CI runners and containers."""
    try:
        with open("/etc/machine-id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _stale(owner: str, age: int) -> str | None:
    """Why a lock is stale (its run is dead on this very machine, or it is older than an hour), else None.

    ``owner``: '<host> pid <pid> run <random> <machine-id> <epoch>'; ``age``: of the lock folder, in seconds.
    An owner that cannot be read is held until the lock folder itself is old (review L4)."""
    parts = owner.split()
    try:
        pid, machine, since = int(parts[2]), parts[-2], int(parts[-1])
    except (IndexError, ValueError):
        if age > LOCK_STALE_SECONDS:
            return f"its owner file is unreadable and it is older than {LOCK_STALE_SECONDS // 60} minutes"
        return None
    here = machine_id()
    if here is not None and machine == here:
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
