"""Orchestration: certificate -> registry host -> clients. It sequences; the steps live elsewhere.

Each function takes a ``Session`` (inventory, SSH settings, local state) and
returns a ``Report``; tasks.py renders it and turns it into an exit code.
Verification is in verify.py, the rotation phases in rotate.py.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

from . import clients as C
from . import fleet, registry
from .certs import CertInfo, describe
from .errors import InputError
from .htpasswd import Htpasswd
from .inventory import Client, env_secrets, pin_warning
from .pki import Material
from .program import command
from .redact import register
from .results import HostResult, Report, Status
from .session import Session

# --------------------------------------------------------------------------- certificate


def certificate(s: Session, *, renew: bool = False, dry_run: bool = False) -> tuple[Material, str]:
    """Reuse the local certificate when it fits the inventory, else create it (or say why not)."""
    if dry_run:
        material = s.pki.load()
        if material is None:  # plan with a certificate made in memory only
            return s.pki.build(s.now), f"would generate {s.pki.cert_path} ({s.inv.certificate.spec.key_type})"
        change = s.pki.anchor_change(material)
        if change:
            raise InputError(change)
        problems = s.pki.problems(material, s.now)
        if problems:  # plan with the certificate a renewal would make (in memory only): SANs, users of the anchor
            return s.pki.build(s.now), f"would renew: {problems[0]}"
        return material, "certificate is valid and matches"
    outcome = s.pki.ensure(s.now, renew=renew)
    return outcome.material, outcome.message + "".join(f" (warning: {w})" for w in s.pki.warnings)


# --------------------------------------------------------------------------- registry


def registry_job(s: Session, material: Material, *, dry_run: bool = False,
                 break_lock: bool = False) -> registry.DeployJob:
    """A dry run writes nothing locally either: a missing health user is made in memory only, for the plan."""
    if dry_run and not s.state.htpasswd_path.exists():   # a real run would first adopt the host's users
        credentials, users = ("", ""), b""
    else:
        with s.state.held(commit=False) if dry_run else nullcontext():
            user, password = s.state.health_credentials()
            credentials, users = (user, password.reveal()), s.state.htpasswd().render()
    register(material.key_pem)  # masked wherever it could ever be quoted (it only travels by SFTP)
    # env values of secret keys (review M3) are masked everywhere; the others stay readable in the registry's own
    # error line (`StorageDriver not registered: bogus-driver`). No plan shows any env value.
    register(*env_secrets(s.inv.registry.env))
    on_disk = s.pki.load() if dry_run else material
    return registry.DeployJob(
        registry=s.inv.registry, material=material, htpasswd=users,
        credentials=credentials, connect=s.connect, dry_run=dry_run, break_lock=break_lock,
        provisional=on_disk is None or on_disk.fingerprint != material.fingerprint,
    )


def adopt_remote_users(s: Session) -> str | None:
    """First contact with an existing registry: keep its users (the seed made them by hand).

    Only when there is no local htpasswd yet; afterwards the local file is the
    source of truth and is pushed as is.
    """
    if s.state.htpasswd_path.exists():
        return None
    with s.connect(s.inv.registry.ssh) as remote:
        text = registry.read_htpasswd(remote, s.inv.registry)
    table = Htpasswd.parse(text or "")
    if not table.users:
        return None
    s.state.save_htpasswd(table)
    ignored = table.not_bcrypt()
    return (f"kept {len(table.users)} user(s) from the registry host's htpasswd"
            + (f"; not bcrypt, ignored by the registry: {', '.join(ignored)}" if ignored else ""))


def deploy_registry(s: Session, material: Material, *, dry_run: bool = False, break_lock: bool = False) -> Report:
    report = Report()
    host = s.inv.registry.host
    if not dry_run:
        adopted: list[str] = []

        def adopt() -> HostResult:
            adopted.extend(note for note in [adopt_remote_users(s)] if note)
            return HostResult(host=host, role="registry")

        first_contact = fleet.guarded(host, "registry", adopt)
        if first_contact.failed:
            report.add(first_contact)
            return report
        report.notes += adopted
    job = registry_job(s, material, dry_run=dry_run, break_lock=break_lock)
    result = fleet.guarded(host, "registry", lambda: registry.deploy(job))
    result.warnings += [w for w in [pin_warning("registry.image", s.inv.registry.image)] if w]
    report.add(result)
    return report


# --------------------------------------------------------------------------- clients


def trust_clients(
    s: Session,
    material: Material,
    targets: tuple[Client, ...],
    *,
    dry_run: bool = False,
    force: bool = False,
    parallel: int = 10,
    batch: int = 1,
    step: Callable[[Client, C.TrustJob], HostResult] = C.trust,
) -> Report:
    """Fan out ``step`` (clients.trust, or untrust) over clients. With a sudo password and several hosts,
    the first host's probe runs with sudo as a canary (clients.SudoCanary): a wrong password fails once,
    not on every host."""
    canary = C.SudoCanary(targets[0].name if s.settings.sudo_password and len(targets) > 1 else None)
    if not dry_run:   # before any anchor of this name lands: a later rename finds it (review L12)
        s.state.remember_registry_host()
    job = C.TrustJob(registry=s.inv.registry, anchors=s.anchors(material), connect=s.connect,
                     dry_run=dry_run, force=force, gate=C.RestartGate(batch), canary=canary,
                     former_hosts=s.state.former_registry_hosts())
    report = Report()
    if not targets:
        return report
    with s.progress("clients", len(targets)) as progress:
        for result in fleet.fan_out(targets, lambda c: step(c, job), name=lambda c: c.name,
                                    parallel=parallel, progress=progress):
            report.add(result)
    return report


def select_clients(s: Session, *, hosts: str | None = None, groups: str | None = None,
                   failed_only: bool = False) -> tuple[Client, ...]:
    chosen = s.inv.select(hosts, groups)
    if failed_only:
        failed = set(s.state.failed_last_time())
        chosen = tuple(c for c in chosen if c.name in failed)
    return chosen


# --------------------------------------------------------------------------- the whole job


def deploy_all(
    s: Session,
    targets: tuple[Client, ...],
    *,
    renew: bool = False,
    dry_run: bool = False,
    force: bool = False,
    parallel: int = 10,
    batch: int = 1,
    break_lock: bool = False,
) -> Report:
    material, cert_message = certificate(s, renew=renew, dry_run=dry_run)
    report = Report(notes=[f"certificate: {cert_message}"])
    reg = deploy_registry(s, material, dry_run=dry_run, break_lock=break_lock)
    report.merge(reg)
    if any(r.failed for r in reg.results.values()):
        for c in targets:
            report.add(HostResult(host=c.name, status=Status.SKIPPED,
                                  message="not attempted: the registry host failed"))
        return report
    report.merge(trust_clients(s, material, targets, dry_run=dry_run, force=force,
                               parallel=parallel, batch=batch))
    return report


def show_certificate(s: Session) -> list[CertInfo]:
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate yet; run {command('cert.generate')}")
    return [describe(c) for c in material.chain]
