"""Certificate rotation without a window of distrust, safe to run from cron, resumable.

Self-signed mode, and CA renewal (``--ca``), go through phases recorded in
``<state_dir>/rotation.json``; each phase is idempotent, so a run killed at
any point is finished by the next ``inv rotate``:

    generated  new key and certificate made locally in <pki_dir>/next/
    trusted    every client trusts old AND new (a second file beside ca.crt)
    switched   the registry serves the new certificate (old kept in <pki_dir>/previous/)
    (done)     clients trust only the new one; rotation.json is removed

The switch happens only when every client took the new trust (or --force):
a reachable client is never cut off silently. In CA mode a server-certificate
rotation touches only the registry: clients trust the CA, which does not change.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .certs import describe, validity_warnings
from .errors import InputError
from .localfs import atomic_write, read_optional
from .pki import Material, Pki
from .results import HostResult, Report, Status

PHASES = ("generated", "trusted", "switched")


@dataclass
class Rotation:
    kind: str               # "anchor": clients must learn a new anchor; "server": CA mode, registry only
    phase: str
    old_fingerprint: str
    new_fingerprint: str
    new_anchor_pem: str
    old_anchor_pem: str


def _path(session) -> Path:
    return session.inv.state_dir / "rotation.json"


def load(session) -> Rotation | None:
    data = read_optional(_path(session))
    return Rotation(**json.loads(data)) if data else None


def save(session, rotation: Rotation) -> None:
    atomic_write(_path(session), json.dumps(asdict(rotation), indent=2).encode(), 0o600)


def pending_anchor(session) -> bytes | None:
    """Before the switch, clients must trust the new anchor too; after it, only the current one."""
    rotation = load(session)
    if rotation is None or rotation.kind != "anchor" or rotation.phase not in ("generated", "trusted"):
        return None
    return rotation.new_anchor_pem.encode()


def _next(session) -> Pki:
    return Pki(session.inv.certificate, root=session.pki.root / "next")


def _previous(session) -> Pki:
    return Pki(session.inv.certificate, root=session.pki.root / "previous")


def _copy_material(src: Pki, dst: Pki) -> None:
    """Copy key, cert and (ca mode) CA files from one pki folder to another, atomically per file."""
    for name, mode in (("registry.key", 0o600), ("ca.key", 0o600), ("registry.crt", 0o644), ("ca.crt", 0o644)):
        data = read_optional(src.root / name)
        if data is not None:
            atomic_write(dst.root / name, data, mode)


# --------------------------------------------------------------------------- steps


def days_left(session) -> int:
    material = session.pki.load()
    if material is None:
        raise InputError(f"{session.pki.cert_path}: no certificate to rotate; run `inv deploy` first")
    return describe(material.leaf).days_left(session.now)


def start(session, *, renew_ca: bool = False) -> Rotation:
    """Phase 1: make the new material in next/ and record the rotation."""
    current = session.pki.load()
    if current is None:
        raise InputError(f"{session.pki.cert_path}: no certificate to rotate; run `inv deploy` first")
    kind = "server" if session.inv.certificate.mode == "ca" and not renew_ca else "anchor"
    nxt = _next(session)
    if session.inv.certificate.mode == "ca" and kind == "server":
        _copy_material(session.pki, nxt)  # same CA: the new leaf is signed by it
    validity_warnings(session.inv.certificate.spec.days)  # force below only replaces next/, not the 825-day rule
    new = nxt.generate(session.now, force=True, new_ca=renew_ca)
    rotation = Rotation(kind=kind, phase="generated", old_fingerprint=current.fingerprint,
                        new_fingerprint=new.fingerprint, new_anchor_pem=new.anchor_pem.decode(),
                        old_anchor_pem=current.anchor_pem.decode())
    save(session, rotation)
    return rotation


def promote(session, rotation: Rotation) -> Material:
    """Make next/ the current material, keeping the old one in previous/ (idempotent)."""
    current = session.pki.load()
    if current is not None and current.fingerprint == rotation.old_fingerprint:
        _copy_material(session.pki, _previous(session))
    _copy_material(_next(session), session.pki)
    material = session.pki.load()
    assert material is not None and material.fingerprint == rotation.new_fingerprint
    return material


def demote(session) -> None:
    """Undo ``promote`` after a failed switch: previous/ becomes current again."""
    _copy_material(_previous(session), session.pki)


def finish(session) -> None:
    _path(session).unlink(missing_ok=True)
    shutil.rmtree(_next(session).root, ignore_errors=True)


def abort(session, rotation: Rotation) -> Rotation | None:
    """Back to the old certificate everywhere.

    Before the switch: forget the new material (clients then drop its trust).
    After it: rotating back is a rotation like any other, to previous/.
    """
    if rotation.phase in ("generated", "trusted"):
        shutil.rmtree(_next(session).root, ignore_errors=True)
        _path(session).unlink(missing_ok=True)
        return None
    previous = _previous(session).load()
    if previous is None or previous.fingerprint != rotation.old_fingerprint:
        raise InputError(f"{_previous(session).root}: the previous certificate is gone; cannot roll back")
    _copy_material(_previous(session), _next(session))
    back = Rotation(kind=rotation.kind, phase="generated", old_fingerprint=rotation.new_fingerprint,
                    new_fingerprint=rotation.old_fingerprint, new_anchor_pem=rotation.old_anchor_pem,
                    old_anchor_pem=rotation.new_anchor_pem)
    save(session, back)
    return back


def unreached(report: Report) -> list[HostResult]:
    return [r for r in report.results.values() if r.status in (Status.FAILED, Status.UNREACHABLE, Status.SKIPPED)]
