"""What the registry host needs (pure): facts + desired state -> Plan."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import facts as F
from ..errors import RemoteError
from ..htpasswd import Htpasswd
from .identity import Identity, cert_change, user_change, user_digests
from .spec import CERT_NAME, ENV_NAME, HTPASSWD_NAME, KEY_NAME, STORAGE_MOUNT, Desired


@dataclass(frozen=True)
class Plan:
    upload_certs: bool = False
    switch_link: bool = False
    legacy_certs_dir: bool = False
    upload_htpasswd: bool = False
    upload_env: bool = False
    recreate: bool = False
    start: bool = False
    reasons: tuple[str, ...] = ()
    migrate_from: str | None = None
    previous: str = ""          # '' | 'remove' | 'restore': leftovers of an interrupted run
    old_link: str | None = None
    has_container: bool = False
    warnings: tuple[str, ...] = ()
    identity: Identity = Identity()   # what changes, by identity (fingerprints, user names, setting keys)

    @property
    def empty(self) -> bool:
        return not (self.upload_certs or self.switch_link or self.upload_htpasswd or self.upload_env
                    or self.recreate or self.start or self.previous)

    def describe(self, want: Desired) -> list[str]:
        """One short line per change; paths are relative to data_dir."""
        name = want.registry.container
        lines = [f"change {line}" for line in self.identity.lines()]
        if self.previous == "restore":
            lines.append(f"restore {name}-previous left by an interrupted run")
        if self.upload_certs:
            lines.append(f"write {want.cert_dir_name}/ (certificate and key)")
        if self.switch_link:
            lines.append(f"point certs -> {want.cert_dir_name}")
        if self.upload_htpasswd:
            lines.append(f"write auth/{HTPASSWD_NAME} (the registry reloads it live)")
        if self.upload_env:
            lines.append(f"write {ENV_NAME} (registry.env, values not shown)")
        if self.migrate_from:
            lines.append(f"copy images from volume {self.migrate_from} to storage/")
        if self.recreate:
            lines.append(f"re-create container {name}: {'; '.join(self.reasons)}")
        elif self.start:
            lines.append(f"start container {name} (it was stopped)")
        if self.previous == "remove":
            lines.append(f"remove {name}-previous left by an interrupted run")
        return lines


def plan(want: Desired, facts: F.RegistryFacts, *, now: float | None = None) -> Plan:
    reg = want.registry
    clock = F.clock_problem(facts.clock, now)
    if clock and clock[0]:
        raise RemoteError(reg.host, clock[1])
    if facts.engine == "missing":
        raise RemoteError(reg.host, f"{reg.engine}: not found on the registry host; install it first")
    if facts.engine == "down":
        raise RemoteError(reg.host, f"{reg.engine} daemon is not running ({facts.engine_detail.strip()})")
    have = facts.files
    cert_ok = _matches(have.get(f"{want.cert_dir}/{CERT_NAME}"), want.cert_pem, 0o644)
    key_ok = _matches(have.get(f"{want.cert_dir}/{KEY_NAME}"), want.key_pem, 0o600)
    ht_ok = _matches(have.get(want.htpasswd_path), want.htpasswd, 0o600)
    env_ok = not reg.env or _matches(have.get(want.env_path), want.env_file, 0o600)
    link_ok = facts.certs_link == want.cert_dir_name
    container, previous = facts.container, facts.previous
    prev_action = ""
    if previous is not None:
        prev_action = "remove" if container is not None else "restore"
        if prev_action == "restore":
            container = previous
    spec = want.spec
    reasons: list[str] = []
    if container is None:
        reasons.append("no container yet")
    else:
        reasons += spec.differences(container)
        if facts.image_id and container.image_id != facts.image_id:
            reasons.append(f"image {reg.image} was updated")
    migrate = None
    if container is not None:
        kind, source = container.volume_sources.get(STORAGE_MOUNT, ("", ""))
        if kind == "volume" and source:
            migrate = source
    recreate = bool(reasons)
    upload_htpasswd = not ht_ok
    identity = Identity(
        certificate=cert_change(facts.cert_pem, want.cert_pem) if not (cert_ok and key_ok and link_ok) else None,
        users=user_change(facts.users, user_digests(Htpasswd.parse(want.htpasswd.decode()).entries))
        if upload_htpasswd else None,
        container=tuple(reasons) if recreate else (),
    )
    return Plan(
        upload_certs=not (cert_ok and key_ok), switch_link=not link_ok,
        legacy_certs_dir=facts.certs_link == "DIR", upload_htpasswd=upload_htpasswd, upload_env=not env_ok,
        recreate=recreate, start=not recreate and container is not None and not container.running,
        reasons=tuple(reasons), migrate_from=migrate if recreate else None, previous=prev_action,
        old_link=facts.certs_link if facts.certs_link not in (None, "DIR") else None,
        has_container=container is not None, warnings=(clock[1],) if clock else (), identity=identity,
    )


def _matches(have: F.RemoteFile | None, content: bytes, mode: int) -> bool:
    return (have is not None and have.sha256 == hashlib.sha256(content).hexdigest()
            and have.mode == mode and have.owner == "root")
