"""Certificate rotation without a window of distrust, safe to run from cron, resumable.

Self-signed mode, CA renewal (``--ca``) and a change of mode (``--ca`` too: it is how
a self-signed deployment moves to the default CA mode) go through phases recorded in
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

import shutil
from collections.abc import Callable

from .certs import describe, validity_warnings
from .deploy import deploy_registry, trust_clients
from .errors import CertificateError, InputError
from .inventory import Client
from .localfs import atomic_write_all, read_optional
from .pki import Material, Pki
from .program import command
from .results import HostResult, Report, Status
from .session import Session
from .state import Rotation

PHASES = ("generated", "trusted", "switched")


def load(session: Session) -> Rotation | None:
    return session.state.rotation()


def save(session: Session, rotation: Rotation) -> None:
    session.state.save_rotation(rotation)


def _next(session: Session) -> Pki:
    return Pki(session.inv.certificate, root=session.pki.root / "next", passphrase=session.pki.passphrase)


def _previous(session: Session) -> Pki:
    return Pki(session.inv.certificate, root=session.pki.root / "previous", passphrase=session.pki.passphrase)


def _copy_material(src: Pki, dst: Pki) -> None:
    """Copy key, cert and (ca mode) CA files from one pki folder to another, as one change (an interrupt
    leaves the old set or the new one: localfs.atomic_write_all)."""
    files = [(dst.root / name, data, mode)
             for name, mode in (("registry.key", 0o600), ("ca.key", 0o600), ("registry.crt", 0o644), ("ca.crt", 0o644))
             if (data := read_optional(src.root / name)) is not None]
    atomic_write_all(files)


# --------------------------------------------------------------------------- steps


def days_left(session: Session) -> int:
    material = session.pki.load()
    if material is None:
        raise InputError(f"{session.pki.cert_path}: no certificate to rotate; run {command('deploy')} first")
    return describe(material.leaf).days_left(session.now)


def start(session: Session, *, renew_ca: bool = False) -> Rotation:
    """Phase 1: make the new material in next/ and record the rotation."""
    current = session.pki.load()
    if current is None:
        raise InputError(f"{session.pki.cert_path}: no certificate to rotate; run {command('deploy')} first")
    mode = session.inv.certificate.mode
    kind = "server" if mode == "ca" == current.mode and not renew_ca else "anchor"
    change = session.pki.anchor_change(current)
    if kind == "server" and change:
        raise InputError(change)  # new registry names: only a new CA (--ca) can carry them
    nxt = _next(session)
    shutil.rmtree(nxt.root, ignore_errors=True)  # never sign with a leftover of an older rotation
    if kind == "server":
        _copy_material(session.pki, nxt)  # same CA: the new leaf is signed by it
    validity_warnings(session.inv.certificate.spec.days)  # force below only replaces next/, not the 825-day rule
    new = nxt.generate(session.now, force=True, new_ca=kind == "anchor")
    rotation = Rotation(kind=kind, phase="generated", old_fingerprint=current.fingerprint,
                        new_fingerprint=new.fingerprint, new_anchor_pem=new.anchor_pem.decode(),
                        old_anchor_pem=current.anchor_pem.decode())
    save(session, rotation)
    return rotation


def promote(session: Session, rotation: Rotation) -> Material:
    """Make next/ the current material, keeping the old one in previous/ (idempotent).

    A run killed inside the copy below leaves pki/ half old, half new (its key no longer matches its
    certificate): previous/ was complete before that copy began, so the next run only finishes it."""
    try:
        current = session.pki.load()
    except CertificateError:
        current = None
    if current is not None and current.fingerprint == rotation.old_fingerprint:
        _copy_material(session.pki, _previous(session))
    _copy_material(_next(session), session.pki)
    material = session.pki.load()
    if material is None or material.fingerprint != rotation.new_fingerprint:
        raise InputError(f"{session.pki.cert_path}: is not the certificate the rotation made; run {command('rotate --abort')}")
    return material


def demote(session: Session) -> None:
    """Undo ``promote`` after a failed switch: previous/ becomes current again."""
    _copy_material(_previous(session), session.pki)


def finish(session: Session) -> None:
    """Done: no client trusts the old anchor any more, so its keys go too (review L12)."""
    session.state.clear_rotation()
    shutil.rmtree(_next(session).root, ignore_errors=True)
    shutil.rmtree(_previous(session).root, ignore_errors=True)


def abort_rotation(session: Session, rotation: Rotation) -> Rotation | None:
    """Back to the old certificate everywhere.

    Before the switch: forget the new material (clients then drop its trust).
    After it: rotating back is a rotation like any other, to previous/.
    """
    if rotation.phase in ("generated", "trusted"):
        shutil.rmtree(_next(session).root, ignore_errors=True)
        session.state.clear_rotation()
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


def _current(session: Session) -> Material:
    material = session.pki.load()
    if material is None:
        raise InputError(f"{session.pki.cert_path}: no certificate; run {command('deploy')} first")
    return material


def unreached(report: Report) -> list[HostResult]:
    return [r for r in report.results.values() if r.status in (Status.FAILED, Status.UNREACHABLE, Status.SKIPPED)]


# --------------------------------------------------------------------------- phases


def rotate_all(
    s: Session,
    targets: tuple[Client, ...],
    *,
    if_expiring_within: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    abort: bool = False,
    renew_ca: bool = False,
    until: str | None = None,
    parallel: int = 10,
    batch: int = 1,
) -> Report:
    """Run (or resume) a rotation up to ``until`` ('trusted', 'switched') or to the end."""
    report = Report()

    def trust_all() -> Report:  # the clients trust what the rotation state says (Session.anchors)
        return trust_clients(s, _current(s), targets, parallel=parallel, batch=batch, force=force)

    rotation = _begin(s, report, trust_all, abort=abort, dry_run=dry_run, renew_ca=renew_ca,
                      if_expiring_within=if_expiring_within)
    if rotation is None:
        return report
    if rotation.kind == "anchor" and rotation.phase == "generated" and (
            not _trust_old_and_new(s, rotation, report, trust_all(), force=force) or until == "trusted"):
        return report
    if rotation.phase in ("generated", "trusted") and (not _switch(s, rotation, report) or until == "switched"):
        return report
    if rotation.kind == "anchor":
        cleanup = trust_all()
        report.merge(cleanup)
        if unreached(cleanup):
            report.notes.append(f"some clients still trust the old certificate too; run {command('rotate')} again")
            return report
    finish(s)
    report.notes.append("rotation complete")
    return report


def _begin(s: Session, report: Report, trust_all: Callable[[], Report], *, abort: bool, dry_run: bool,
           renew_ca: bool, if_expiring_within: int | None) -> Rotation | None:
    """The rotation to run: the recorded one, a new one, or the way back (abort); None: nothing to run."""
    rotation = load(s)
    if abort:
        if rotation is None:
            raise InputError(f"{s.state.rotation_path}: no rotation in progress to abort")
        rotation = abort_rotation(s, rotation)
        if rotation is None:
            report.notes.append("rotation aborted before the switch: clients drop the new certificate")
            report.merge(trust_all())
            return None
        report.notes.append("rotation aborted after the switch: rotating back to the previous certificate")
    if rotation is None:
        left = days_left(s)
        if if_expiring_within is not None and left > if_expiring_within:
            report.notes.append(f"certificate valid {left} more days (more than {if_expiring_within}): nothing to do")
            return None
        if dry_run:
            report.notes.append(f"would rotate the certificate ({left} days left): " + (
                "new server certificate from the same CA, registry only" if s.inv.certificate.mode == "ca"
                and not renew_ca else "generate, trust old+new on clients, switch the registry, drop the old"))
            return None
        rotation = start(s, renew_ca=renew_ca)
        report.notes.append(f"phase generated: new certificate {rotation.new_fingerprint}")
    elif dry_run:
        report.notes.append(f"would resume the rotation from phase {rotation.phase}")
        return None
    return rotation


def _trust_old_and_new(s: Session, rotation: Rotation, report: Report, phase2: Report, *, force: bool) -> bool:
    """generated -> trusted, when every client took the new anchor beside the old one (or --force)."""
    report.merge(phase2)
    missing = unreached(phase2)
    if missing and not force:
        names = ", ".join(r.host for r in missing)
        report.notes.append(f"not switching: {len(missing)} client(s) do not trust the new certificate yet "
                            f"({names}); fix them and run {command('rotate')} again, or pass --force")
        return False
    rotation.phase = "trusted"
    save(s, rotation)
    report.notes.append("phase trusted: every client trusts the old and the new certificate")
    return True


def _switch(s: Session, rotation: Rotation, report: Report) -> bool:
    """-> switched: the registry serves the new certificate; on failure the old one is current again."""
    material = promote(s, rotation)
    switch = deploy_registry(s, material)
    report.merge(switch)
    if switch.failed:
        demote(s)
        report.notes.append("switch failed: the registry keeps the old certificate; "
                            f"fix the cause and run {command('rotate')} again")
        return False
    rotation.phase = "switched"
    save(s, rotation)
    seconds = switch.results[("registry", s.inv.registry.host)].switch_seconds
    report.notes.append("phase switched: the registry serves the new certificate"
                        + (f" (container re-created and healthy in {seconds}s)" if seconds else ""))
    return True
