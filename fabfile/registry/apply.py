"""Bring the registry host to its desired state: look, plan, lock, apply, health gate, rollback."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import takewhile

from .. import facts as F
from .. import verify
from ..errors import RemoteError
from ..inventory import Registry, SshTarget
from ..pki import Material
from ..results import HostResult, Status
from ..sh import Exit, cmd
from ..steps import Kind, Step, find
from ..transport import Result, Transport
from .failure import Failure, Rollback, message, restart_warning
from .failure import facts as failure_facts
from .lock import machine_id, remote_lock
from .plan import Plan, plan
from .reason import mask, reason
from .scripts import (
    cleanup_script,
    failed_name,
    keep_failed_script,
    parse_kept,
    prepare_script,
    rollback_script,
)
from .spec import CERT_NAME, HTPASSWD_NAME, LOG_LINES, Desired, desired

log = logging.getLogger("registry_tls.registry")


@dataclass
class DeployJob:
    registry: Registry
    material: Material
    htpasswd: bytes = field(repr=False)
    credentials: tuple[str, str] = field(repr=False)   # the health user's password: never in a repr (L6)
    connect: Callable[[SshTarget], Transport]   # Session.connect
    dry_run: bool = False
    break_lock: bool = False
    provisional: bool = False   # a dry run's certificate made in memory: its fingerprint is not the real one
    run_id: str = field(default_factory=lambda: run_owner())  # noqa: PLW0108  (run_owner is defined below)


def run_owner() -> str:
    """The lock owner: '<host> pid <pid> run <random> <machine-id or ->' (review L4: host names repeat)."""
    return f"{socket.gethostname()} pid {os.getpid()} run {secrets.token_hex(4)} {machine_id() or '-'}"


def gather(remote: Transport, want: Desired) -> F.RegistryFacts:
    reg = want.registry
    return F.gather_registry(remote, reg.engine, reg.data_dir, reg.container, reg.image, want.paths,
                             cert=f"{reg.data_dir}/certs/{CERT_NAME}", htpasswd=want.htpasswd_path)


def read_htpasswd(remote: Transport, reg: Registry) -> str | None:
    """The registry host's current htpasswd (to adopt its users on first contact), or None."""
    path = f"{reg.data_dir}/auth/{HTPASSWD_NAME}"
    run = remote.run(cmd("[ -f {} ] && cat {}", path, path), sudo=True, check=False)
    return run.stdout if run.ok else None


def deploy(job: DeployJob) -> HostResult:
    """Bring the registry host to the desired state; verify; roll back on failure.

    The plan is made again under the remote lock: another run may have
    changed the host between the first look and the lock.
    """
    reg = job.registry
    want = desired(reg, job.material, job.htpasswd)
    result = HostResult(host=reg.host, role="registry")
    with job.connect(reg.ssh) as remote:
        first = todo = _look(remote, want, result, None)
        if job.dry_run or todo.empty:
            return _unchanged(job, want, todo, result)
        with remote_lock(remote, reg.data_dir, job, result):
            todo = _look(remote, want, result, first)
            if todo.empty:
                return _unchanged(job, want, todo, result)
            _apply(remote, job, want, todo, result)
    return result


def _look(remote: Transport, want: Desired, result: HostResult, before: Plan | None) -> Plan:
    """Facts -> plan; the plan's warnings replace those of the look ``before`` it (not the lock's)."""
    facts = gather(remote, want)
    todo = plan(want, facts, now=time.time())
    result.facts = {"container": facts.container.id[:12] if facts.container else None}
    stale = before.warnings if before else ()
    result.warnings = [w for w in result.warnings if w not in stale] + list(todo.warnings)
    return todo


def _unchanged(job: DeployJob, want: Desired, todo: Plan, result: HostResult) -> HostResult:
    """A dry run, or nothing to do (then the health check proves it)."""
    if job.provisional and todo.identity.certificate:
        todo = replace(todo, identity=replace(todo.identity, certificate=replace(todo.identity.certificate, new=None)))
    result.changes = [f"would {c}" if job.dry_run else c for c in todo.describe()]
    if not todo.empty:
        result.facts["plan"] = todo.identity.to_json()
    result.status = Status.CHANGED if not todo.empty else Status.OK
    result.message = ("would change (dry run)" if not todo.empty
                      else "certificate, users and container already as desired")
    if todo.empty and not job.dry_run:
        _health_or_fail(job, want, result)
    return result


# The plan's leading steps that put things in place: a restored container, then every file in one
# upload (one round trip). They run before the guard, so a failure there is reported as it is (the
# link, the container and the old files' .previous copies are untouched). From the next step on, a
# failure or an unhealthy registry undoes every applied step, these included.
STAGING = frozenset({Kind.RESTORE_PREVIOUS, Kind.WRITE_CERTS, Kind.WRITE_USERS, Kind.WRITE_ENV})


def _apply(remote: Transport, job: DeployJob, want: Desired, todo: Plan, result: HostResult) -> None:
    remote.run(prepare_script(want), sudo=True)
    staged = tuple(takewhile(lambda s: s.kind in STAGING, todo.steps))
    for step in staged:
        if step.script:
            remote.run(step.script, sudo=True)
    if files := [(f.content, f.path, f.mode) for s in staged for f in s.files]:
        remote.put_many(files)
    applied, switch_started = list(staged), None
    try:
        for step in todo.steps[len(staged):]:
            applied.append(step)
            if step.kind is Kind.RECREATE:
                switch_started = time.monotonic()
            _run(remote, want, step)
        if any(s.check for s in todo.steps):
            _health_or_fail(job, want, result)
        if switch_started is not None:   # re-create to healthy: what users of the registry waited
            result.switch_seconds = round(time.monotonic() - switch_started, 2)
    except KeyboardInterrupt:
        # a switch not yet proven healthy goes back to the old state, then we stop
        remote.run(rollback_script(applied), sudo=True, check=False)
        raise
    except RemoteError as exc:
        _roll_back(remote, job, want, todo, tuple(applied), result, exc)
        return
    remote.run(cleanup_script(want), sudo=True, check=False)
    result.status = Status.CHANGED
    result.changes = todo.describe()
    result.facts["plan"] = todo.identity.to_json()
    result.message = "re-created the registry container" if switch_started is not None else "updated"


def _run(remote: Transport, want: Desired, step: Step) -> None:
    """One step's script; the re-create's is given time, and its failure read from its output."""
    if step.script is None:
        return
    if step.kind is not Kind.RECREATE:
        remote.run(step.script, sudo=True)
        return
    run = remote.run(step.script, sudo=True, check=False, timeout=180)
    if run.exited != 0:
        raise _NotUp(want.registry.host, run)


class _NotUp(RemoteError):
    """The re-create script failed: the container did not stay up, or the engine could not run it."""

    def __init__(self, host: str, run: Result):
        self.exited = run.exited == Exit.CONTAINER_EXITED   # else the engine refused to run it
        self.output = f"{run.stdout}\n{run.stderr}"
        super().__init__(host, "new registry container did not start")


class _Unhealthy(RemoteError):
    """The registry did not pass the health check (``problem``: the first check that failed)."""

    def __init__(self, host: str, problem: str):
        self.problem = problem
        super().__init__(host, f"health check failed: {problem}")


def _roll_back(remote: Transport, job: DeployJob, want: Desired, todo: Plan, applied: tuple[Step, ...],
               result: HostResult, exc: RemoteError) -> None:
    """Keep the container that failed, undo the ``applied`` steps, and check the result like a deploy."""
    reg = want.registry
    started = time.monotonic()
    why: str | None
    if isinstance(exc, _NotUp):
        what, why = ("did not start", None) if exc.exited else ("could not be run", reason(mask(exc.output)))
        if not exc.exited:   # the engine's own words: the container it refused has no logs to read later
            log.info("%s: output of %s, which could not run the registry container:\n%s", reg.host, reg.engine,
                     mask(exc.output).strip())
    else:
        what, why = "is not healthy", exc.problem if isinstance(exc, _Unhealthy) else exc.reason
    kept = None
    recreated = find(applied, Kind.RECREATE) is not None
    if recreated:
        run = remote.run(keep_failed_script(reg.engine, reg.container, failed_name(reg.container, time.time())),
                         sudo=True, check=False)
        found = parse_kept(run.stdout)
        kept, output = found.name, mask(found.output)
        log.info("%s: output of the registry container that failed (%s, %s):\n%s",
                 reg.host, kept or reg.container, found.state or "gone", output)
        if why is None:
            why = reason(output) or f"{found.state or 'exited'}, and printed nothing that says why"
        result.warnings += [w for w in [restart_warning(reg.engine, kept, found.policy, found.refused)] if w]
    failure = Failure(what=what, reason=why or exc.reason, kept=kept)
    remote.run(rollback_script(applied), sudo=True, check=False)
    rollback = _check_rollback(remote, job, want, todo, recreated, started)
    result.status = Status.FAILED
    result.message = message(failure, rollback, reg.engine)
    result.facts.update(failure_facts(failure, rollback), plan=todo.identity.to_json())


def _check_rollback(remote: Transport, job: DeployJob, want: Desired, todo: Plan, recreated: bool,
                    started: float) -> Rollback:
    """The restored registry gets the same bounded wait and checks as a new one: the fingerprint it
    served before, /v2/ 401 anonymous and 200 for the health user (when the rollback kept its password)."""
    reg = want.registry
    if recreated and not todo.has_container:
        return Rollback(restored=False, seconds=time.monotonic() - started, had_previous=False)
    cert = todo.identity.certificate
    expected = cert.old if cert else want.fingerprint
    users = todo.identity.users
    user_changed = users is not None and job.credentials[0] in users.added + users.password
    _, problems = verify.wait_healthy(
        reg.ssh.address, reg.port, reg.host, None, expected_fingerprint=expected,
        credentials=None if user_changed or not job.credentials[0] else job.credentials,
        timeout=reg.health_timeout,
    )
    seconds = time.monotonic() - started
    if not problems:
        return Rollback(restored=True, seconds=seconds)
    return Rollback(restored=False, seconds=seconds, problem=problems[0], reason=container_reason(remote, reg))


def container_reason(remote: Transport, reg: Registry) -> str | None:
    """The error line of the registry container's own output (its last LOG_LINES lines), or None."""
    run = remote.run(cmd("{} logs --tail {} {} 2>&1", reg.engine, LOG_LINES, reg.container), sudo=True,
                     check=False)
    return reason(mask(run.stdout)) if run.ok else None


def _health_or_fail(job: DeployJob, want: Desired, result: HostResult) -> None:
    reg = want.registry
    probe, problems = verify.wait_healthy(
        reg.ssh.address, reg.port, reg.host, job.material.anchor_pem,
        expected_fingerprint=want.fingerprint, credentials=job.credentials, timeout=reg.health_timeout,
    )
    if problems:
        raise _Unhealthy(reg.host, problems[0])
    result.facts.update(fingerprint=probe.fingerprint, tls=probe.tls_version)
