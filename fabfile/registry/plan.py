"""What the registry host needs (pure): facts + desired state -> Plan, an ordered tuple of steps.

The steps, in the order they run (each only when needed)::

    restore previous   <name>-previous left by an interrupted run, when <name> is gone
    write certs        certificate and key, into a new versioned folder  } files: one upload,
    write users        auth/registry.password (reloaded live)            } before any change
    write env          registry.env (values not shown)                   } is switched on
    switch link        certs -> the new folder
    copy images        from the seed's volume (done by the re-create, once the old container stopped)
    recreate | start   a new container (the old kept as <name>-previous), or ours started
    remove previous    <name>-previous beside <name>, once <name> answers healthy
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import facts as F
from ..errors import RemoteError
from ..htpasswd import Htpasswd
from ..steps import Kind, Step, describe, find
from . import steps as S
from .identity import Identity, cert_change, user_change, user_digests
from .spec import CERT_NAME, KEY_NAME, STORAGE_MOUNT, Desired


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    identity: Identity = Identity()   # what changes, by identity (fingerprints, user names, setting keys)
    warnings: tuple[str, ...] = ()
    has_container: bool = False       # a container of ours was there: a rollback can bring it back

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(s.kind for s in self.steps)

    def step(self, kind: Kind) -> Step | None:
        return find(self.steps, kind)

    def describe(self) -> list[str]:
        """What changes by identity, then one short line per step; paths are relative to data_dir."""
        return [f"change {line}" for line in self.identity.lines()] + describe(self.steps)


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
    certs_ok = (_matches(have.get(f"{want.cert_dir}/{CERT_NAME}"), want.cert_pem, 0o644)
                and _matches(have.get(f"{want.cert_dir}/{KEY_NAME}"), want.key_pem, 0o600))
    users_ok = _matches(have.get(want.htpasswd_path), want.htpasswd, 0o600)
    env_ok = not reg.env or _matches(have.get(want.env_path), want.env_file, 0o600)
    link_ok = facts.certs_link == want.cert_dir_name
    container = facts.container
    restore = container is None and facts.previous is not None
    if restore:
        container = facts.previous
    reasons = container_reasons(want, facts, container)
    steps = [
        *([S.restore_previous(want)] if restore else []),
        *([] if certs_ok else [S.write_certs(want)]),
        *([] if users_ok else [S.write_users(want)]),
        *([] if env_ok else [S.write_env(want)]),
        *([] if link_ok else [S.switch_link(want, facts.certs_link)]),
    ]
    if reasons:
        volume = _seed_volume(container)
        steps += [*([S.copy_images(volume)] if volume else []),
                  S.recreate(want, reasons, has_old=container is not None, volume=volume)]
    elif container is not None and not container.running:
        steps.append(S.start(want))
    if facts.previous is not None and not restore:
        steps.append(S.remove_previous(want))
    identity = Identity(
        certificate=None if certs_ok and link_ok else cert_change(facts.cert_pem, want.cert_pem),
        users=None if users_ok else user_change(facts.users, _user_digests(want)),
        container=reasons,
    )
    return Plan(steps=tuple(steps), identity=identity, warnings=(clock[1],) if clock else (),
                has_container=container is not None)


def container_reasons(want: Desired, facts: F.RegistryFacts, container: F.ContainerFact | None) -> tuple[str, ...]:
    """Why the container must be re-created (empty: it need not be)."""
    if container is None:
        return ("no container yet",)
    reasons = want.spec.differences(container)
    if facts.image_id and container.image_id != facts.image_id:
        reasons.append(f"image {want.registry.image} was updated")
    return tuple(reasons)


def _user_digests(want: Desired) -> dict[str, str]:
    return user_digests(Htpasswd.parse(want.htpasswd.decode()).entries)


def _seed_volume(container: F.ContainerFact | None) -> str | None:
    """The named volume the seed's container keeps images in (they move to storage/), or None."""
    kind, source = container.volume_sources.get(STORAGE_MOUNT, ("", "")) if container else ("", "")
    return source if kind == "volume" and source else None


def _matches(have: F.RemoteFile | None, content: bytes, mode: int) -> bool:
    return (have is not None and have.sha256 == hashlib.sha256(content).hexdigest()
            and have.mode == mode and have.owner == "root")
