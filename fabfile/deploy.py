"""Orchestration: certificate -> registry host -> clients -> verification. No SSH or rendering here.

Each function takes a ``Session`` (inventory, SSH settings, local state) and
returns a ``Report``; tasks.py renders it and turns it into an exit code.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import clients as C
from . import facts as F
from . import fleet, inventory, registry, verify
from .certs import describe
from .errors import InputError, RegistryTlsError
from .htpasswd import HEALTH_USER, Htpasswd
from .inventory import Client, Inventory
from .pki import Material, Pki
from .redact import register
from .results import HostResult, Report, Status
from .state import LocalState
from .transport import Remote, SshSettings, ssh_config


@dataclass
class Session:
    inv: Inventory
    settings: SshSettings
    state: LocalState
    pki: Pki
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    progress: Callable[[str, int], fleet.Progress] = lambda title, total: fleet.NoProgress()


def open_session(
    inventory_path: str | Path,
    *,
    sudo_password: str | None = None,
    accept_new_host_keys: bool = False,
    progress: Callable[[str, int], fleet.Progress] | None = None,
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


# --------------------------------------------------------------------------- certificate


def certificate(s: Session, *, renew: bool = False, dry_run: bool = False) -> tuple[Material, str]:
    """Reuse the local certificate when it fits the inventory, else create it (or say why not)."""
    if dry_run:
        material = s.pki.load()
        if material is None:  # plan with a certificate made in memory only
            return s.pki.build(s.now), f"would generate {s.pki.cert_path} ({s.inv.certificate.spec.key_type})"
        problems = s.pki.problems(material, s.now)
        return material, (f"would renew: {problems[0]}" if problems else "certificate is valid and matches")
    outcome = s.pki.ensure(s.now, renew=renew)
    return outcome.material, outcome.message + "".join(f" (warning: {w})" for w in s.pki.warnings)


def anchors(s: Session, material: Material) -> tuple[C.Anchor, ...]:
    """What clients must trust now: the current anchor, plus the next one during a rotation."""
    from .rotate import pending_anchor  # rotation state decides; imported late to avoid a cycle

    extra = pending_anchor(s)
    current = (C.Anchor("current", material.anchor_pem),)
    return current + ((C.Anchor("rotation", extra),) if extra and extra != material.anchor_pem else ())


# --------------------------------------------------------------------------- registry


def registry_job(s: Session, material: Material, *, dry_run: bool = False, break_lock: bool = False):
    """A dry run writes nothing locally either: no health user is created for it."""
    if dry_run and not s.state.htpasswd_path.exists():
        credentials = ("", "")
    else:
        user, password = s.state.health_credentials()
        credentials = (user, password.reveal())
    register(material.key_pem)  # masked wherever it could ever be quoted (it only travels by SFTP)
    return registry.DeployJob(
        registry=s.inv.registry, material=material, htpasswd=s.state.htpasswd().render(),
        credentials=credentials, settings=s.settings, dry_run=dry_run, break_lock=break_lock,
    )


def adopt_remote_users(s: Session) -> str | None:
    """First contact with an existing registry: keep its users (the seed made them by hand).

    Only when there is no local htpasswd yet; afterwards the local file is the
    source of truth and is pushed as is.
    """
    if s.state.htpasswd_path.exists():
        return None
    with Remote(s.inv.registry.ssh, s.settings) as remote:
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
    start = time.monotonic()
    try:
        adopted = None if dry_run else adopt_remote_users(s)
    except RegistryTlsError as exc:
        report.add(HostResult(host=s.inv.registry.host, role="registry", status=Status.UNREACHABLE
                              if getattr(exc, "status", "") == "unreachable" else Status.FAILED,
                              message=getattr(exc, "reason", str(exc)), seconds=time.monotonic() - start))
        return report
    if adopted:
        report.notes.append(adopted)
    job = registry_job(s, material, dry_run=dry_run, break_lock=break_lock)
    report.add(fleet.guarded(s.inv.registry.host, "registry", lambda: registry.deploy(job)))
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
) -> Report:
    """Fan out over clients. With a sudo password and several hosts, one ``sudo true`` on the first
    host goes first (a canary): a wrong password then fails once, not on every host (lockouts)."""
    job = C.TrustJob(registry=s.inv.registry, anchors=anchors(s, material), settings=s.settings,
                     dry_run=dry_run, force=force, gate=C.RestartGate(batch))
    report = Report()
    if not targets:
        return report
    with s.progress("clients", len(targets)) as progress:
        if s.settings.sudo_password and len(targets) > 1:   # one host: nothing to protect
            canary = fleet.guarded(targets[0].name, "client", lambda: C.sudo_check(targets[0], job))
            if canary.message.startswith("sudo: wrong password"):
                report.add(canary)
                for c in targets[1:]:
                    report.add(HostResult(host=c.name, status=Status.SKIPPED,
                                          message=f"not attempted: the sudo password was rejected on {canary.host}"))
                return report
        for result in fleet.fan_out(targets, lambda c: C.trust(c, job), name=lambda c: c.name,
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


# --------------------------------------------------------------------------- verify


def verify_registry(s: Session, material: Material) -> HostResult:
    """From this machine: chain, fingerprint, SAN coverage, days left, TLS version, /v2/ 401 and 200."""
    reg = s.inv.registry
    user, password = s.state.health_credentials()
    probe = verify.probe(reg.ssh.address, reg.port, reg.host, material.anchor_pem,
                         credentials=(user, password.reveal()))
    names = tuple(dict.fromkeys((reg.host, *(n for c in s.inv.clients for n in c.registry_names))))
    problems = probe.problems(material.fingerprint, names)
    result = HostResult(host=reg.host, role="registry")
    result.facts = {"fingerprint": probe.fingerprint, "tls": probe.tls_version,
                    "days_left": (probe.not_after - s.now).days if probe.not_after else None,
                    "v2_anonymous": probe.unauthenticated, "v2_authenticated": probe.authenticated}
    if problems:
        result.status, result.message = Status.FAILED, "; ".join(problems)
    else:
        result.message = (f"{probe.tls_version}, serves the expected certificate "
                          f"({result.facts['days_left']} days left), /v2/ 401 anonymous, 200 as {HEALTH_USER}")
    return result


def verify_client(client: Client, s: Session, material: Material) -> HostResult:
    anchors_ = anchors(s, material)
    probe = C.verify_probe(client, s.inv.registry, anchors_)
    if probe is None:
        return HostResult(host=client.name, status=Status.SKIPPED, message="verify: false for this client")
    with Remote(client.ssh, s.settings) as remote:
        out = remote.run("\n".join(F.verify_script(probe)), sudo=True).stdout
    state, detail = F.parse_client(out).verify or ("fail", "no output")
    status = {"ok": Status.OK, "skip": Status.SKIPPED}.get(state, Status.FAILED)
    return HostResult(host=client.name, status=status,
                      message=f"TLS to {probe.name}:{probe.port} validates with the installed trust ({detail})"
                      if state == "ok" else f"TLS to {probe.name}:{probe.port}: {detail}")


def survey(s: Session, title: str, on_registry: Callable[[], HostResult],
           on_client: Callable[[Client], HostResult], targets: tuple[Client, ...], parallel: int) -> Report:
    """A read-only look at the registry host, then at every client in parallel."""
    report = Report()
    report.add(fleet.guarded(s.inv.registry.host, "registry", on_registry))
    with s.progress(title, len(targets)) as progress:
        for r in fleet.fan_out(targets, on_client, name=lambda c: c.name, parallel=parallel, progress=progress):
            report.add(r)
    return report


def verify_all(s: Session, targets: tuple[Client, ...], parallel: int = 10) -> Report:
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate; run `inv deploy` first")
    return survey(s, "verify", lambda: verify_registry(s, material), lambda c: verify_client(c, s, material),
                  targets, parallel)


def show_certificate(s: Session):
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate yet; run `inv cert.generate`")
    return [describe(c) for c in material.chain]


# --------------------------------------------------------------------------- rotation


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
    from . import rotate as R

    report = Report()
    fan = dict(parallel=parallel, batch=batch, force=force)
    rotation = R.load(s)
    if abort:
        if rotation is None:
            raise InputError(f"{s.inv.state_dir / 'rotation.json'}: no rotation in progress to abort")
        rotation = R.abort(s, rotation)
        if rotation is None:
            report.notes.append("rotation aborted before the switch: clients drop the new certificate")
            return report.merge(trust_clients(s, s.pki.load(), targets, **fan))
        report.notes.append("rotation aborted after the switch: rotating back to the previous certificate")
    if rotation is None:
        left = R.days_left(s)
        if if_expiring_within is not None and left > if_expiring_within:
            report.notes.append(f"certificate valid {left} more days (more than {if_expiring_within}): nothing to do")
            return report
        if dry_run:
            report.notes.append(f"would rotate the certificate ({left} days left): " + (
                "new server certificate from the same CA, registry only" if s.inv.certificate.mode == "ca"
                and not renew_ca else "generate, trust old+new on clients, switch the registry, drop the old"))
            return report
        rotation = R.start(s, renew_ca=renew_ca)
        report.notes.append(f"phase generated: new certificate {rotation.new_fingerprint[:23]}...")
    elif dry_run:
        report.notes.append(f"would resume the rotation from phase {rotation.phase}")
        return report

    if rotation.kind == "anchor" and rotation.phase == "generated":
        phase2 = trust_clients(s, s.pki.load(), targets, **fan)
        report.merge(phase2)
        missing = R.unreached(phase2)
        if missing and not force:
            names = ", ".join(r.host for r in missing)
            report.notes.append(f"not switching: {len(missing)} client(s) do not trust the new certificate yet "
                                f"({names}); fix them and run `inv rotate` again, or pass --force")
            return report
        rotation.phase = "trusted"
        R.save(s, rotation)
        report.notes.append("phase trusted: every client trusts the old and the new certificate")
        if until == "trusted":
            return report

    if rotation.phase in ("generated", "trusted"):
        material = R.promote(s, rotation)
        switch = deploy_registry(s, material)
        report.merge(switch)
        if switch.failed:
            R.demote(s)
            report.notes.append("switch failed: the registry keeps the old certificate; "
                                "fix the cause and run `inv rotate` again")
            return report
        rotation.phase = "switched"
        R.save(s, rotation)
        seconds = next(iter(switch.results.values())).facts.get("switch_seconds")
        report.notes.append("phase switched: the registry serves the new certificate"
                            + (f" (container re-created and healthy in {seconds}s)" if seconds else ""))
        if until == "switched":
            return report

    if rotation.kind == "anchor":
        cleanup = trust_clients(s, s.pki.load(), targets, **fan)
        report.merge(cleanup)
        if R.unreached(cleanup):
            report.notes.append("some clients still trust the old certificate too; run `inv rotate` again")
            return report
    R.finish(s)
    report.notes.append("rotation complete")
    return report
