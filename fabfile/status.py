"""``inv status``: a truthful, read-only picture of the fleet, with monitoring exit codes.

0 OK; 1 WARNING (certificate expires within warn-days, a restart is pending, a
runtime is absent or down, a host was not checked, any other warning);
2 CRITICAL (expired, a failed host: drift, missing trust, stale anchors of
ours, a runtime refusing the TLS, files we did not write that break docker,
unreachable, registry down or serving another certificate); 3 UNKNOWN (no
local certificate to compare with).

``registry_status``: the served certificate from this machine
(``verify.probe``), the host through the registry probe
(``registry.gather``), and the container's own last words when it is down.
``client_status``: one round trip per client, as root, through
``facts.gather_client``: the trust files and their contents, the certs.d
folders, dockerd, and every runtime asked (``runtimes.script``); the pure
``TrustState.compare`` and ``clients.plan`` then say what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from cryptography import x509

from . import clients as C
from . import facts as F
from . import registry, verify
from . import runtimes as RT
from .certs import describe, fingerprint
from .inventory import Client
from .pki import Material
from .results import HostResult, Report, Status
from .session import Session
from .steps import Kind
from .verify import survey


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class FleetStatus:
    level: Level
    certificate: dict
    report: Report
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"status": str(self.level), "exit_code": int(self.level), "reasons": self.reasons,
                "certificate": self.certificate, **self.report.to_json()}


# --------------------------------------------------------------------------- clients


RANK = {"match": 0, "missing": 1, "drift": 2}


@dataclass(frozen=True)
class TrustState:
    """How a client's installed trust compares with what it should be. Pure."""

    overall: str                    # match | missing | drift (the worst file)
    targets: dict[str, str]         # target -> worst state of its files
    files: dict[str, str]           # path -> match | missing | drift
    fingerprints: dict[str, str]    # path -> SHA-256 fingerprint of the installed certificate

    @classmethod
    def compare(cls, want: tuple[C.WantFile, ...], found: F.ClientFacts) -> TrustState:
        files: dict[str, str] = {}
        targets: dict[str, str] = {}
        fps: dict[str, str] = {}
        for f in want:
            have = found.files.get(f.path)
            state = "missing" if have is None else "match" if have.sha256 == f.sha256 else "drift"
            files[f.path] = state
            if RANK[state] >= RANK[targets.get(f.target, "match")]:
                targets[f.target] = state
            if f.path in found.contents and f.path.endswith(".crt"):
                fps[f.path] = _fp(found.contents[f.path])
        overall = max(targets.values(), key=RANK.__getitem__, default="match")
        return cls(overall, targets, files, fps)


def _fp(pem: bytes) -> str:
    try:
        return fingerprint(x509.load_pem_x509_certificate(pem))
    except ValueError:
        return "not a certificate"


def client_status(client: Client, s: Session, material: Material, former_hosts: tuple[str, ...] = ()) -> HostResult:
    """``former_hosts``: the registry's earlier names (``state.former_registry_hosts``, read once per run)."""
    reg = s.inv.registry
    anchors = s.anchors(material)
    paths = C.probe_paths(client, reg, anchors)
    folders = C.trust_folders(client, reg)
    targets = C.check_targets(client, reg, anchors)
    with s.connect(client.ssh) as remote:   # one round trip, as root: files, folders, every runtime asked
        found = F.gather_client(remote, paths, C.extra_globs(client, reg, former_hosts),
                                buildkit_toml=C.BUILDKIT_TOML if "buildkit" in client.trust else None,
                                contents=True, docker=True, folders=folders, runtimes=targets, sudo=True)
    checks = RT.judge(found.runtimes, targets, found.listing)
    foreign, foreign_warnings = RT.foreign_files(found.listing, folders)
    want = C.desired_files(client, reg, anchors, found.os_family)
    trust = TrustState.compare(want, found)
    stale = [p for p in found.extra if p not in {f.path for f in want}]
    status, message = _files_verdict(trust, stale)
    result = HostResult(host=client.name, status=status, message=message, facts={
        "trust": trust.overall, "targets": trust.targets, "files": trust.files,
        "fingerprints": trust.fingerprints, "stale": stale, "dockerd": found.dockerd,
        "os": found.os_family or found.os_id,
    })
    todo = C.plan(client, reg, anchors, found)
    result.warnings = list(todo.warnings)   # no clock warning: plan() was given no `now`
    if todo.step(Kind.RESTART_DOCKERD) and trust.overall == "match":
        result.warnings.append("dockerd has not loaded the OS trust store yet (restart pending)")
    if checks:   # what the runtimes say comes after what the files say
        files_message = result.message
        result.message = f"{files_message}; {C.apply_checks(result, checks)}"
    result.warnings += foreign_warnings
    if foreign:   # breaks docker: CRITICAL; the runtime's words (it was asked), then the cause
        result.message = C.explain(result, foreign)
        result.status = Status.FAILED
    asked_docker = any(c.target == "docker" for c in checks)   # then its warning says it, in one line
    if found.dockerd and not found.dockerd.startswith("up") and "docker" in client.trust and not asked_docker:
        result.warnings.append(f"dockerd {found.dockerd}")
    return result


def _files_verdict(trust: TrustState, stale: list[str]) -> tuple[Status, str]:
    """What the trust files say: drift or missing trust first, then stale anchors of ours, else what is trusted."""
    if trust.overall != "match":
        bad = [f"{p} {state}" for p, state in trust.files.items() if state != "match"]
        more = f" +{len(bad) - 3} more" if len(bad) > 3 else ""
        return Status.FAILED, f"trust {trust.overall}: " + ", ".join(bad[:3]) + more
    if stale:
        return Status.FAILED, f"stale anchor files: {', '.join(stale)}"
    return Status.OK, f"trusts the anchor ({', '.join(trust.targets)})"   # its fingerprint: the header


# --------------------------------------------------------------------------- registry


def registry_status(s: Session, material: Material) -> HostResult:
    reg = s.inv.registry
    result = HostResult(host=reg.host, role="registry")
    served = verify.probe(reg.ssh.address, reg.port, reg.host, None)
    want = registry.desired(reg, material, s.state.htpasswd().render())
    with s.connect(reg.ssh) as remote:
        found = registry.gather(remote, want)
        down = found.container is not None and (not found.container.running or served.error)
        own = registry.container_reason(remote, reg) if down else None   # why, in the registry's words
    container = found.container
    result.facts = {
        "container": None if container is None else {
            "id": container.id[:12], "running": container.running, "restart_count": container.restart_count},
        "engine": found.engine,
        "served_fingerprint": served.fingerprint, "expected_fingerprint": material.fingerprint,
        "tls": served.tls_version,
    }
    problems = []
    if found.engine != "up":
        problems.append(f"{reg.engine} {found.engine} {found.engine_detail}".strip())
    elif container is None:
        problems.append(f"container {reg.container} does not exist")
    elif not container.running:
        problems.append(f"container {reg.container} is not running")
    if served.error:
        problems.append(served.error)
    elif served.fingerprint != material.fingerprint:
        problems.append(f"serves {served.fingerprint or 'no certificate'}, expected {material.fingerprint}")
    if own:
        problems.append(f"its own output: {own}")
    if problems or container is None:  # no problem means a running container
        result.status, result.message = Status.FAILED, "; ".join(problems)
    else:
        result.message = f"container {container.id[:12]} running, serves the expected certificate ({served.tls_version})"
    return result


# --------------------------------------------------------------------------- fleet


def fleet_status(s: Session, targets: tuple[Client, ...], *, warn_days: int = 30, parallel: int = 10) -> FleetStatus:
    material = s.pki.load()
    if material is None:
        return FleetStatus(Level.UNKNOWN, {}, Report(), [f"{s.pki.cert_path}: no local certificate"])
    former = s.state.former_registry_hosts()   # once, before any host is asked: a corrupt file is UNKNOWN
    info = describe(material.leaf)
    days = info.days_left(s.now)
    report = survey(s, "status", lambda: registry_status(s, material),
                    lambda c: client_status(c, s, material, former), targets, parallel)
    reasons, level = [], Level.OK
    if days < 0:
        level, reasons = Level.CRITICAL, [f"certificate expired {-days} days ago"]
    elif days <= warn_days:
        level, reasons = Level.WARNING, [f"certificate expires in {days} days (warn at {warn_days})"]
    for r in report.results.values():
        who = f"{r.host} (registry)" if r.role == "registry" else r.host
        if r.failed:
            level = Level.CRITICAL
            reasons.append(f"{who}: {r.status}: {r.message}")
        elif r.status is Status.SKIPPED and level < Level.WARNING:   # not checked is not OK
            level = Level.WARNING
            reasons.append(f"{who}: not checked: {r.message}")
        elif r.warnings and level < Level.WARNING:
            level = Level.WARNING
            reasons.append(f"{who}: {r.warnings[0]}")
    anchor = {"anchor_sha256": material.anchor_fingerprint,
              "anchor": "the certificate itself" if material.anchor_fingerprint == material.fingerprint else "its CA"}
    return FleetStatus(level, {**info.as_dict(s.now), "path": str(s.pki.cert_path), **anchor}, report, reasons)
