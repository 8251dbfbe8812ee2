"""One run's context: inventory, SSH settings, local state, certificates, clock, progress, transport.

Every feature (deploy, verify, status, rotate) takes a ``Session``. Remote
hosts are reached only through ``Session.connect``: the SSH ``Remote`` in a
real run, a recording fake in the unit tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import fleet, inventory
from .clients import Anchor
from .errors import InputError
from .inventory import Inventory, SshTarget
from .pki import Material, Pki
from .program import command
from .redact import register
from .state import LocalState
from .transport import Remote, SshSettings, Transport, ssh_config

ProgressFactory = Callable[[str, int], fleet.Progress]
Opener = Callable[[SshTarget, SshSettings], Transport]


def _no_progress(title: str, total: int) -> fleet.Progress:
    return fleet.NoProgress()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Session:
    inv: Inventory
    settings: SshSettings
    state: LocalState
    pki: Pki
    now: dt.datetime = field(default_factory=_utcnow)
    progress: ProgressFactory = _no_progress
    opener: Opener = Remote

    def connect(self, target: SshTarget) -> Transport:
        """The way to a host (not yet connected: the transport opens on first use)."""
        return self.opener(target, self.settings)

    def anchors(self, material: Material) -> tuple[Anchor, ...]:
        """What clients must trust now: the current anchor, plus the next one during a rotation."""
        extra = self.pending_anchor()
        current = (Anchor("current", material.anchor_pem),)
        return current + ((Anchor("rotation", extra),) if extra and extra != material.anchor_pem else ())

    def pending_anchor(self) -> bytes | None:
        """The next anchor while a rotation needs clients to trust it (review M2).

        It comes from ``<pki_dir>/next/``, this machine's key material, never from the
        PEM in rotation.json, and only when next/ holds the very certificate the
        rotation recorded: an edited rotation.json cannot plant an anchor on clients.
        """
        rotation = self.state.rotation()
        if rotation is None or rotation.pending_anchor is None:
            return None
        nxt = Pki(self.inv.certificate, root=self.pki.root / "next", passphrase=self.pki.passphrase)
        material = nxt.load()
        if material is None or material.fingerprint != rotation.new_fingerprint:
            raise InputError(f"{nxt.cert_path}: does not hold the certificate {self.state.rotation_path.name} "
                             f"records ({rotation.new_fingerprint[:23]}...); run {command('rotate --abort')}")
        return material.anchor_pem


def open_session(
    inventory_path: str | Path,
    *,
    sudo_password: str | None = None,
    accept_new_host_keys: bool = False,
    progress: ProgressFactory | None = None,
) -> Session:
    inv = inventory.load(inventory_path)
    ssh_config(inv.ssh_config)  # a broken ssh config is invalid input (exit 2), found before any host
    register(sudo_password)
    settings = SshSettings(
        known_hosts=inv.known_hosts, ssh_config=inv.ssh_config, connect_timeout=inv.connect_timeout,
        accept_new_host_keys=accept_new_host_keys, sudo_password=sudo_password or None,
    )
    session = Session(inv=inv, settings=settings, state=LocalState(inv), pki=Pki(inv.certificate))
    if progress is not None:
        session.progress = progress
    return session
