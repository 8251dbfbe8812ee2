"""The operator's local state besides certificates: users, health credentials, last run, lock.

    <pki_dir>/htpasswd          registry users (bcrypt), the source of truth pushed to the registry
    <pki_dir>/health.password   password of the health-check user the tool logs in with (0600)
    <state_dir>/last-run.json   per-host statuses of the last fleet run (for --failed-only)
    <state_dir>/rotation.json   the rotation in progress, if any (see rotate.py)
    <state_dir>/registry-hosts  every registry host name clients were given trust for, one a line
    <state_dir>/lock            held (flock) while a run changes anything
    <state_dir>/log/            one log line per remote command, without secrets
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InputError, LockedError
from .htpasswd import HEALTH_USER, Htpasswd
from .inventory import Inventory
from .localfs import atomic_write, check_private, ensure_dir, read_optional
from .program import command
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


HEALTH_PASSWORD = re.compile(r"[\x21-\x7e]{16,128}")


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")   # registry.host: a DNS name or an IP, never a path


class LocalState:
    """Every file here is validated when read: a corrupt or foreign one is an InputError naming it and the fix."""

    def __init__(self, inv: Inventory):
        self.inv = inv
        self.pki_dir = inv.certificate.pki_dir
        self.root = inv.state_dir
        self._edit: Callable[[Htpasswd], Htpasswd] | None = None  # see htpasswd_edit()
        self._held = False                   # inside held(): users and health password kept in memory
        self._base: Htpasswd | None = None   # the users saved while held
        self._new_health: Secret | None = None  # a health password made while held

    # ------------------------------------------------------------------ users

    @property
    def htpasswd_path(self) -> Path:
        return self.pki_dir / "htpasswd"

    @property
    def health_path(self) -> Path:
        return self.pki_dir / "health.password"

    def htpasswd(self) -> Htpasswd:
        """The local users (with a pending edit applied: see ``htpasswd_edit``)."""
        base = self._base if self._base is not None else self._read_htpasswd()
        return self._edit(base) if self._edit else base

    def _read_htpasswd(self) -> Htpasswd:
        data = read_optional(self.htpasswd_path)
        return Htpasswd.load(data, self.htpasswd_path) if data else Htpasswd()

    def save_htpasswd(self, table: Htpasswd) -> None:
        if self._held:  # kept in memory until held() commits, if it does
            self._base = table
            return
        atomic_write(self.htpasswd_path, table.render(), 0o600)

    @contextmanager
    def held(self, *, commit: bool) -> Iterator[None]:
        """Within the block the users and the health password are changed in memory only; with ``commit``
        they are written when the block succeeds (health password first, then htpasswd), else never
        (a dry run). A failed or interrupted block leaves both files exactly as they were."""
        if self._held:
            raise RuntimeError("LocalState.held() does not nest")
        self._held, self._base, self._new_health = True, None, None
        try:
            yield
            table = self.htpasswd() if self._base is not None or self._edit else None
            health = self._new_health
        finally:
            self._held, self._edit, self._base, self._new_health = False, None, None, None
        if commit and health is not None:
            atomic_write(self.health_path, health.reveal().encode() + b"\n", 0o600)
        if commit and table is not None:
            self.save_htpasswd(table)

    @contextmanager
    def htpasswd_edit(self, edit: Callable[[Htpasswd], Htpasswd]) -> Iterator[None]:
        """Within the block every reader sees the edited users; the files are written only if the block succeeds.

        ``edit`` must be idempotent (a user set to a given hash, a user removed):
        it is applied to whatever the block reads or saves (e.g. users adopted
        from the registry host), so a failed or interrupted push leaves the
        local htpasswd (and health password) exactly as they were.
        """
        with self.held(commit=True):
            self._edit = edit
            yield

    def health_credentials(self) -> tuple[str, Secret]:
        """The health-check user and its password; created (and added to htpasswd) when missing.

        The registry creates an admin user and logs its password when it starts
        without an htpasswd file; this user makes sure the file is never empty.
        Inside ``held()`` a new password stays in memory with the users.
        """
        table = self.htpasswd()
        password = self.known_health_credentials(table)
        if password is None:
            password = Secret(secrets.token_urlsafe(32))
            register(password.reveal())
            if self._held:
                self._new_health = password
            else:
                atomic_write(self.health_path, password.reveal().encode() + b"\n", 0o600)
            self.save_htpasswd(table.with_user(HEALTH_USER, password.reveal(), self.inv.registry.bcrypt_cost))
        return HEALTH_USER, password

    def known_health_credentials(self, table: Htpasswd | None = None) -> Secret | None:
        """The health password when one exists and matches the users' hash of it (read only), else None."""
        if self._new_health is not None:
            return self._new_health
        data = read_optional(self.health_path)
        password = Secret(self._health_password(data)) if data else None
        if password is None:
            return None
        register(password.reveal())
        table = table if table is not None else self.htpasswd()
        return password if table.verify(HEALTH_USER, password.reveal()) else None

    def _health_password(self, data: bytes) -> str:
        text = data.decode("ascii", "replace").removesuffix("\n")
        if not HEALTH_PASSWORD.fullmatch(text):
            raise InputError(f"{self.health_path}: not a registry-tls health password (one line of 16-128 "
                             "printable ASCII characters); delete it: the next deploy makes a new one")
        return text

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
        try:
            hosts = json.loads(data)["hosts"]
            statuses = {h: r["status"] for h, r in hosts.items()}
            if not all(isinstance(h, str) and isinstance(v, str) for h, v in statuses.items()):
                raise TypeError("a host or status is not a string")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            why = "not valid JSON" if isinstance(exc, ValueError) else "not the expected layout"
            raise InputError(f"{self.last_run_path}: not a registry-tls last-run file ({why}); delete it "
                             "(only --failed-only reads it; the next run writes a new one)") from None
        return [h for h, status in statuses.items() if status in ("failed", "unreachable")]

    # ------------------------------------------------------------------ registry names

    @property
    def registry_hosts_path(self) -> Path:
        return self.root / "registry-hosts"

    def _registry_hosts(self) -> list[str]:
        data = read_optional(self.registry_hosts_path)
        names = data.decode(errors="replace").split() if data else []
        bad = [n for n in names if not _HOST_NAME.fullmatch(n)]
        if bad:
            raise InputError(f"{self.registry_hosts_path}: {bad[0]!r} is not a host name; fix or delete the line "
                             "(it lists the names the registry had, whose OS-store anchors clients.trust removes)")
        return list(dict.fromkeys(names))

    def former_registry_hosts(self) -> tuple[str, ...]:
        """The names the registry had before the inventory's: anchors written for them are stale (review L12)."""
        return tuple(n for n in self._registry_hosts() if n != self.inv.registry.host)

    def remember_registry_host(self) -> None:
        names = self._registry_hosts()
        if self.inv.registry.host not in names:
            ensure_dir(self.root)
            atomic_write(self.registry_hosts_path, "".join(f"{n}\n" for n in (*names, self.inv.registry.host)).encode(),
                         0o600)

    # ------------------------------------------------------------------ rotation

    @property
    def rotation_path(self) -> Path:
        return self.root / "rotation.json"

    def rotation(self) -> Rotation | None:
        """The rotation in progress, or None; a corrupt or foreign file is an InputError naming it."""
        data = read_optional(self.rotation_path)
        if not data:
            return None
        try:
            rotation = Rotation(**json.loads(data))
            if not all(isinstance(v, str) for v in asdict(rotation).values()):
                raise TypeError("a value is not a string")
            if rotation.kind not in ("anchor", "server") or rotation.phase not in ("generated", "trusted", "switched"):
                raise TypeError(f"kind {rotation.kind!r} / phase {rotation.phase!r}")
        except (ValueError, TypeError) as exc:
            why = "not valid JSON" if isinstance(exc, ValueError) else "not the expected fields"
            raise InputError(f"{self.rotation_path}: not a registry-tls rotation state ({why}); restore it from a "
                             f"backup, or delete it and run {command('rotate')} again (a new rotation starts from the "
                             "certificate in use)") from None
        return rotation

    def save_rotation(self, rotation: Rotation) -> None:
        atomic_write(self.rotation_path, json.dumps(asdict(rotation), indent=2).encode(), 0o600)

    def clear_rotation(self) -> None:
        self.rotation_path.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One changing run per inventory on this machine; released by the kernel if we die."""
        check_private(self.pki_dir)
        path = check_private(ensure_dir(self.root)) / "lock"
        try:  # never through a symlink: the lock is truncated (review L3)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise InputError(f"{path}: cannot open the lock file: {exc.strerror or exc}") from None
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
