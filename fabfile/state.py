"""The operator's local state besides certificates: users, health credentials, last run, lock.

    <pki_dir>/htpasswd          registry users (bcrypt), the source of truth pushed to the registry
    <pki_dir>/health.password   password of the health-check user the tool logs in with (0600)
    <state_dir>/last-run.json   per-host statuses of the last fleet run (for --failed-only)
    <state_dir>/rotation.json   the rotation in progress, if any (see rotate.py)
    <state_dir>/lock            held (flock) while a run changes anything
    <state_dir>/log/            one log line per remote command, without secrets
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import LockedError
from .htpasswd import HEALTH_USER, Htpasswd
from .inventory import Inventory
from .localfs import atomic_write, read_optional
from .redact import Secret, register
from .results import Report


@dataclass
class Rotation:
    """The record of a rotation in progress (rotate.py runs its phases)."""

    kind: str               # "anchor": clients must learn a new anchor; "server": CA mode, registry only
    phase: str              # generated | trusted | switched
    old_fingerprint: str
    new_fingerprint: str
    new_anchor_pem: str
    old_anchor_pem: str

    @property
    def pending_anchor(self) -> bytes | None:
        """Before the switch, clients must trust the new anchor too; after it, only the current one."""
        if self.kind != "anchor" or self.phase not in ("generated", "trusted"):
            return None
        return self.new_anchor_pem.encode()


class LocalState:
    def __init__(self, inv: Inventory):
        self.inv = inv
        self.pki_dir = inv.certificate.pki_dir
        self.root = inv.state_dir

    # ------------------------------------------------------------------ users

    @property
    def htpasswd_path(self) -> Path:
        return self.pki_dir / "htpasswd"

    @property
    def health_path(self) -> Path:
        return self.pki_dir / "health.password"

    def htpasswd(self) -> Htpasswd:
        data = read_optional(self.htpasswd_path)
        return Htpasswd.parse(data.decode("utf-8")) if data else Htpasswd()

    def save_htpasswd(self, table: Htpasswd) -> None:
        atomic_write(self.htpasswd_path, table.render(), 0o600)

    def health_credentials(self) -> tuple[str, Secret]:
        """The health-check user and its password; created (and added to htpasswd) when missing.

        The registry creates an admin user and logs its password when it starts
        without an htpasswd file; this user makes sure the file is never empty.
        """
        table = self.htpasswd()
        data = read_optional(self.health_path)
        password = Secret(data.decode().strip()) if data else None
        if password is None or not table.verify(HEALTH_USER, password.reveal()):
            password = Secret(secrets.token_urlsafe(32))
            register(password.reveal())
            atomic_write(self.health_path, password.reveal().encode() + b"\n", 0o600)
            self.save_htpasswd(table.with_user(HEALTH_USER, password.reveal(), self.inv.registry.bcrypt_cost))
        register(password.reveal())
        return HEALTH_USER, password

    # ------------------------------------------------------------------ runs

    @property
    def last_run_path(self) -> Path:
        return self.root / "last-run.json"

    def save_run(self, command: str, report: Report) -> None:
        data = {"command": command, **report.to_json()}
        atomic_write(self.last_run_path, json.dumps(data, indent=2).encode(), 0o600)

    def failed_last_time(self) -> list[str]:
        data = read_optional(self.last_run_path)
        if not data:
            return []
        hosts = json.loads(data).get("hosts", {})
        return [h for h, r in hosts.items() if r.get("status") in ("failed", "unreachable")]

    # ------------------------------------------------------------------ rotation

    @property
    def rotation_path(self) -> Path:
        return self.root / "rotation.json"

    def rotation(self) -> Rotation | None:
        data = read_optional(self.rotation_path)
        return Rotation(**json.loads(data)) if data else None

    def save_rotation(self, rotation: Rotation) -> None:
        atomic_write(self.rotation_path, json.dumps(asdict(rotation), indent=2).encode(), 0o600)

    def clear_rotation(self) -> None:
        self.rotation_path.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One changing run per inventory on this machine; released by the kernel if we die."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise LockedError(f"{path}: another registry-tls run holds the lock (pid {holder}); "
                                  "wait for it to finish") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)
