"""The registry host: desired state, the plan that reaches it, and a safe apply with rollback.

Remote layout (``data_dir`` is the seed's ``/var/lib/docker-registry``)::

    certs -> .certs-<fp16>/      symlink (the seed's path, for people), switched atomically
    .certs-<fp16>/registry_auth.crt (0644) registry_auth.key (0600)
    auth/registry.password       htpasswd (0600), replaced by rename: the registry re-reads it
                                 when its mtime changes, so user changes need no restart
    storage/                     image storage, bind-mounted on /var/lib/registry so that
                                 re-running the container never orphans an anonymous volume

The container gets the seed's environment and folder mounts (``:ro`` for
certs and auth; the versioned cert folder itself, so the previous container
kept for rollback still finds its own files), plus a label holding a digest of its whole spec; a
different digest, image or config means re-create, nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import facts as F
from . import verify
from .errors import LockedError, RemoteError
from .inventory import Registry, SshTarget
from .pki import Material
from .redact import redact
from .results import HostResult, Status
from .transport import Transport

CERT_NAME = "registry_auth.crt"
KEY_NAME = "registry_auth.key"
HTPASSWD_NAME = "registry.password"
SPEC_LABEL = "io.registry-tls.spec"
STORAGE_MOUNT = "/var/lib/registry"
LOCK_STALE_SECONDS = 3600

log = logging.getLogger("registry_tls.registry")


# --------------------------------------------------------------------------- desired state (pure)


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    port: int
    env: tuple[tuple[str, str], ...]
    mounts: tuple[tuple[str, str, bool], ...]  # (host path, container path, read-only)
    restart_policy: str
    cert_fingerprint: str

    @property
    def digest(self) -> str:
        body = json.dumps(
            {"image": self.image, "port": self.port, "env": self.env, "mounts": self.mounts,
             "restart": self.restart_policy, "cert": self.cert_fingerprint},
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def run_command(self, engine: str) -> str:
        args = [engine, "run", "-d", "--name", self.name, f"--restart={self.restart_policy}",
                "-p", f"{self.port}:{self.port}"]
        for src, dst, ro in self.mounts:
            args += ["-v", f"{src}:{dst}{':ro' if ro else ''}"]
        for key, value in self.env:
            args += ["-e", f"{key}={value}"]
        args += ["--label", f"{SPEC_LABEL}={self.digest}", self.image]
        return shlex.join(args)

    def differences(self, have: F.ContainerFact) -> list[str]:
        """Readable reasons the running container is not this spec (empty: it is)."""
        diffs = []
        if have.labels.get(SPEC_LABEL) is None:
            diffs.append("container was not created by registry-tls")
        elif have.labels.get(SPEC_LABEL) != self.digest:
            diffs.append("configuration or certificate changed")
        for key, value in self.env:
            if have.env.get(key) != value:
                diffs.append(f"env {key}: {have.env.get(key)!r} -> {value!r}")
        for src, dst, _ in self.mounts:
            kind, source = have.volume_sources.get(dst, ("", ""))
            if dst == STORAGE_MOUNT and kind != "bind":
                diffs.append(f"{dst}: {kind or 'no'} volume -> bind {src}")
        if have.restart_policy != self.restart_policy:
            diffs.append(f"restart policy: {have.restart_policy!r} -> {self.restart_policy!r}")
        if f"{self.port}/tcp->{self.port}" not in have.ports:
            diffs.append(f"port mapping -> {self.port}:{self.port}")
        return list(dict.fromkeys(diffs))


@dataclass(frozen=True)
class Desired:
    registry: Registry
    cert_pem: bytes
    key_pem: bytes
    htpasswd: bytes
    fingerprint: str

    @property
    def cert_dir_name(self) -> str:
        return ".certs-" + self.fingerprint.replace(":", "").lower()[:16]

    @property
    def cert_dir(self) -> str:
        return f"{self.registry.data_dir}/{self.cert_dir_name}"

    @property
    def htpasswd_path(self) -> str:
        return f"{self.registry.data_dir}/auth/{HTPASSWD_NAME}"

    @property
    def paths(self) -> tuple[str, ...]:
        return (f"{self.cert_dir}/{CERT_NAME}", f"{self.cert_dir}/{KEY_NAME}", self.htpasswd_path)

    @property
    def spec(self) -> ContainerSpec:
        reg = self.registry
        env = {
            "REGISTRY_AUTH": "htpasswd",
            "REGISTRY_AUTH_HTPASSWD_REALM": reg.realm,
            "REGISTRY_AUTH_HTPASSWD_PATH": f"/data/auth/{HTPASSWD_NAME}",
            "REGISTRY_HTTP_ADDR": f"0.0.0.0:{reg.port}",
            "REGISTRY_HTTP_TLS_CERTIFICATE": f"/data/certs/{CERT_NAME}",
            "REGISTRY_HTTP_TLS_KEY": f"/data/certs/{KEY_NAME}",
            "REGISTRY_HTTP_TLS_MINIMUMTLS": reg.minimum_tls,
            **dict(reg.env),
        }
        return ContainerSpec(
            name=reg.container, image=reg.image, port=reg.port,
            env=tuple(env.items()),
            mounts=((self.cert_dir, "/data/certs", True),  # the versioned folder: a rollback never sees new files
                    (f"{reg.data_dir}/auth", "/data/auth", True),
                    (f"{reg.data_dir}/storage", STORAGE_MOUNT, False)),
            restart_policy=reg.restart_policy, cert_fingerprint=self.fingerprint,
        )


def desired(registry: Registry, material: Material, htpasswd: bytes) -> Desired:
    return Desired(registry=registry, cert_pem=material.cert_pem, key_pem=material.key_pem,
                   htpasswd=htpasswd, fingerprint=material.fingerprint)


# --------------------------------------------------------------------------- plan (pure)


@dataclass(frozen=True)
class Plan:
    upload_certs: bool = False
    switch_link: bool = False
    legacy_certs_dir: bool = False
    upload_htpasswd: bool = False
    recreate: bool = False
    start: bool = False
    reasons: tuple[str, ...] = ()
    migrate_from: str | None = None
    previous: str = ""          # '' | 'remove' | 'restore': leftovers of an interrupted run
    old_link: str | None = None
    has_container: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.upload_certs or self.switch_link or self.upload_htpasswd
                    or self.recreate or self.start or self.previous)

    def describe(self, want: Desired) -> list[str]:
        """One short line per change; paths are relative to data_dir."""
        name = want.registry.container
        lines = []
        if self.previous == "restore":
            lines.append(f"restore {name}-previous left by an interrupted run")
        if self.upload_certs:
            lines.append(f"write {want.cert_dir_name}/ (certificate and key)")
        if self.switch_link:
            lines.append(f"point certs -> {want.cert_dir_name}")
        if self.upload_htpasswd:
            lines.append(f"write auth/{HTPASSWD_NAME} (the registry reloads it live)")
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
    return Plan(
        upload_certs=not (cert_ok and key_ok), switch_link=not link_ok,
        legacy_certs_dir=facts.certs_link == "DIR", upload_htpasswd=not ht_ok,
        recreate=recreate, start=not recreate and container is not None and not container.running,
        reasons=tuple(reasons), migrate_from=migrate if recreate else None, previous=prev_action,
        old_link=facts.certs_link if facts.certs_link not in (None, "DIR") else None,
        has_container=container is not None, warnings=(clock[1],) if clock else (),
    )


def _matches(have: F.RemoteFile | None, content: bytes, mode: int) -> bool:
    return (have is not None and have.sha256 == hashlib.sha256(content).hexdigest()
            and have.mode == mode and have.owner == "root")


# --------------------------------------------------------------------------- scripts


def lock_script(data_dir: str, owner: str, *, take_over: bool) -> str:
    q = shlex.quote
    lock = f"{data_dir}/.registry-tls.lock"
    return "\n".join([
        f"mkdir -p {q(data_dir)} && chmod go-w {q(data_dir)}",
        f"[ {int(take_over)} = 1 ] && rm -rf {q(lock)}",
        f"if ! mkdir {q(lock)} 2>/dev/null; then echo \"LOCKED $(cat {q(lock)}/owner 2>/dev/null)\"; exit 7; fi",
        f"echo {q(owner)} \"$(date -u +%s)\" > {q(lock)}/owner",
        "echo LOCK",
    ])


def unlock_script(data_dir: str) -> str:
    return f"rm -rf {shlex.quote(data_dir + '/.registry-tls.lock')}"


def prepare_script(want: Desired) -> str:
    d = want.registry.data_dir
    q = shlex.quote
    return "\n".join([
        "set -e", "umask 077",
        f"mkdir -p {q(want.cert_dir)} {q(d + '/auth')} {q(d + '/storage')}",
        f"chmod 0700 {q(want.cert_dir)}",
        # keep the current htpasswd for rollback (same folder: the rename back is atomic)
        f"if [ -f {q(want.htpasswd_path)} ]; then cp -p {q(want.htpasswd_path)} {q(want.htpasswd_path + '.previous')}; fi",
    ])


def switch_link_script(data_dir: str, target: str, *, legacy: bool) -> str:
    """Point ``certs`` at ``target`` with one rename(2); a plain seed folder is kept as .certs-legacy."""
    q = shlex.quote
    certs = f"{data_dir}/certs"
    lines = ["set -e"]
    if legacy:
        lines.append(f"if [ -d {q(certs)} ] && [ ! -L {q(certs)} ]; then "
                     f"rm -rf {q(data_dir + '/.certs-legacy')}; mv {q(certs)} {q(data_dir + '/.certs-legacy')}; fi")
    lines += [f"ln -sfn {q(target)} {q(certs + '.tmp')}", f"mv -T {q(certs + '.tmp')} {q(certs)}"]
    return "\n".join(lines)


def recreate_script(engine: str, spec: ContainerSpec, *, has_old: bool, migrate_from: str | None,
                    data_dir: str) -> str:
    """Stop the old container (kept as <name>-previous), carry images over, run the new one."""
    q = shlex.quote
    prev = f"{spec.name}-previous"
    lines = ["set -e"]
    if has_old:
        lines += [f"{engine} rm -f {q(prev)} >/dev/null 2>&1 || true",
                  f"{engine} rename {q(spec.name)} {q(prev)}",
                  f"{engine} stop -t 10 {q(prev)} >/dev/null"]
    if migrate_from:
        lines.append(f"cp -a {q(migrate_from)}/. {q(data_dir + '/storage')}/")
    lines += [
        f"{spec.run_command(engine)} >/dev/null",
        # wait until running and stable (not crash-looping), at most 20 s
        "i=0; while [ $i -lt 100 ]; do",
        f"  s=$({engine} inspect --format '{{{{.State.Running}}}} {{{{.RestartCount}}}}' {q(spec.name)})",
        '  case "$s" in "true 0") [ $i -ge 5 ] && { echo RUNNING; exit 0; };; "false "*|*" "[1-9]*) break;; esac',
        "  sleep 0.2; i=$((i+1))",
        "done",
        f"echo \"EXITED $({engine} logs --tail 3 {q(spec.name)} 2>&1 | tr '\\n' ' ' | cut -c1-300)\"",
        "exit 8",
    ]
    return "\n".join(lines)


def rollback_script(engine: str, want: Desired, plan_: Plan) -> str:
    """Files first (link, htpasswd), then the previous container back under its name."""
    q = shlex.quote
    reg = want.registry
    prev = f"{reg.container}-previous"
    d = reg.data_dir
    lines = []
    if plan_.switch_link:
        if plan_.legacy_certs_dir:
            lines.append(f"rm -f {q(d + '/certs')} && mv {q(d + '/.certs-legacy')} {q(d + '/certs')}")
        elif plan_.old_link:
            lines.append(switch_link_script(d, plan_.old_link, legacy=False).replace("set -e\n", ""))
    if plan_.upload_htpasswd:
        lines.append(f"if [ -f {q(want.htpasswd_path + '.previous')} ]; then "
                     f"mv -f {q(want.htpasswd_path + '.previous')} {q(want.htpasswd_path)}; fi")
    lines.append(f"{engine} rm -f {q(reg.container)} >/dev/null 2>&1 || true")
    lines.append(f"if {engine} inspect --type container {q(prev)} >/dev/null 2>&1; then "
                 f"{engine} rename {q(prev)} {q(reg.container)} && {engine} start {q(reg.container)} >/dev/null; fi")
    return "\n".join(lines)


def cleanup_script(want: Desired) -> str:
    """After success: drop <name>-previous and all but the current and one previous cert folder."""
    q = shlex.quote
    reg = want.registry
    return "\n".join([
        f"{reg.engine} rm -f {q(reg.container + '-previous')} >/dev/null 2>&1 || true",
        f"rm -f {q(want.htpasswd_path + '.previous')}",
        f"cd {q(reg.data_dir)} && ls -1dt .certs-* 2>/dev/null | grep -v -x -e {q(want.cert_dir_name)} "
        "| grep -v -x .certs-legacy | tail -n +2 | xargs -r rm -rf",
    ])


# --------------------------------------------------------------------------- apply


@dataclass
class DeployJob:
    registry: Registry
    material: Material
    htpasswd: bytes
    credentials: tuple[str, str]
    connect: Callable[[SshTarget], Transport]   # Session.connect
    dry_run: bool = False
    break_lock: bool = False
    run_id: str = field(default_factory=lambda: f"{socket.gethostname()} pid {os.getpid()}")


def gather(remote: Transport, want: Desired) -> F.RegistryFacts:
    reg = want.registry
    script = F.registry_script(reg.engine, reg.data_dir, reg.container, reg.image, want.paths)
    return F.parse_registry(remote.run(script, sudo=True).stdout, want.paths)


def read_htpasswd(remote: Transport, reg: Registry) -> str | None:
    """The registry host's current htpasswd (to adopt its users on first contact), or None."""
    path = shlex.quote(f"{reg.data_dir}/auth/{HTPASSWD_NAME}")
    run = remote.run(f"[ -f {path} ] && cat {path}", sudo=True, check=False)
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
        todo = _look(remote, want, result)
        if job.dry_run or todo.empty:
            return _unchanged(job, want, todo, result)
        with _remote_lock(remote, reg.data_dir, job, result):
            todo = _look(remote, want, result)
            if todo.empty:
                return _unchanged(job, want, todo, result)
            _apply(remote, job, want, todo, result)
    return result


def _look(remote: Transport, want: Desired, result: HostResult) -> Plan:
    facts = gather(remote, want)
    todo = plan(want, facts, now=time.time())
    result.facts = {"container": facts.container.id[:12] if facts.container else None}
    result.warnings = [w for w in result.warnings if "clock" not in w] + list(todo.warnings)
    return todo


def _unchanged(job: DeployJob, want: Desired, todo: Plan, result: HostResult) -> HostResult:
    """A dry run, or nothing to do (then the health check proves it)."""
    result.changes = [f"would {c}" if job.dry_run else c for c in todo.describe(want)]
    result.status = Status.CHANGED if not todo.empty else Status.OK
    result.message = ("would change (dry run)" if not todo.empty
                      else "certificate, users and container already as desired")
    if todo.empty and not job.dry_run:
        _health_or_fail(job, want, result)
    return result


def _apply(remote: Transport, job: DeployJob, want: Desired, todo: Plan, result: HostResult) -> None:
    reg = want.registry
    engine = reg.engine
    remote.run(prepare_script(want), sudo=True)
    if todo.previous == "restore":
        remote.run(f"{engine} rename {shlex.quote(reg.container + '-previous')} {shlex.quote(reg.container)}",
                   sudo=True)
    uploads = []
    if todo.upload_certs:
        uploads += [(want.key_pem, f"{want.cert_dir}/{KEY_NAME}", 0o600),
                    (want.cert_pem, f"{want.cert_dir}/{CERT_NAME}", 0o644)]
    if todo.upload_htpasswd:
        uploads.append((want.htpasswd, want.htpasswd_path, 0o600))
    if uploads:
        remote.put_many(uploads)
    try:
        if todo.switch_link:
            remote.run(switch_link_script(reg.data_dir, want.cert_dir_name, legacy=todo.legacy_certs_dir),
                       sudo=True)
        if todo.recreate:
            start = time.monotonic()
            run = remote.run(recreate_script(engine, want.spec, has_old=todo.has_container,
                                             migrate_from=todo.migrate_from, data_dir=reg.data_dir),
                             sudo=True, check=False, timeout=180)
            if run.exited != 0:
                raise RemoteError(reg.host, _recreate_error(run))
            _health_or_fail(job, want, result)
            result.facts["switch_seconds"] = round(time.monotonic() - start, 2)
        elif todo.start:
            remote.run(f"{engine} start {shlex.quote(reg.container)} >/dev/null", sudo=True)
            _health_or_fail(job, want, result)
        elif todo.upload_htpasswd or todo.previous == "remove":
            # htpasswd: the registry re-read the file by itself; 'remove': a run interrupted after
            # the re-create left <name>-previous: prove the new container healthy before dropping it
            _health_or_fail(job, want, result)
    except (RemoteError, KeyboardInterrupt) as exc:
        # on Ctrl-C too: a switch not yet proven healthy goes back to the old state, then we stop
        remote.run(rollback_script(engine, want, todo), sudo=True, check=False)
        if isinstance(exc, KeyboardInterrupt):
            raise
        restored = verify.probe(reg.ssh.address, reg.port, reg.host, None)
        state = (f"rolled back; the registry serves {restored.fingerprint} again" if not restored.error
                 else f"rolled back, but the registry does not answer: {restored.error}")
        raise RemoteError(reg.host, f"{exc.reason}; {state}") from None
    remote.run(cleanup_script(want), sudo=True, check=False)
    result.status = Status.CHANGED
    result.changes = todo.describe(want)
    result.message = "re-created the registry container" if todo.recreate else "updated"


def _recreate_error(run) -> str:
    out = run.stdout.strip().splitlines()
    last = out[-1] if out else ""
    if last.startswith("EXITED"):
        return f"new registry container did not stay up: {redact(last[7:]).strip() or 'no log output'}"
    return f"re-creating the container failed: {run.tail()}"


def _health_or_fail(job: DeployJob, want: Desired, result: HostResult) -> None:
    reg = want.registry
    probe, problems = verify.wait_healthy(
        reg.ssh.address, reg.port, reg.host, job.material.anchor_pem,
        expected_fingerprint=want.fingerprint, credentials=job.credentials, timeout=reg.health_timeout,
    )
    if problems:
        raise RemoteError(reg.host, f"health check failed: {problems[0]}")
    result.facts.update(fingerprint=probe.fingerprint, tls=probe.tls_version)


class _remote_lock:
    """``<data_dir>/.registry-tls.lock``: one changing run per registry, whoever runs it."""

    def __init__(self, remote: Transport, data_dir: str, job: DeployJob, result: HostResult):
        self.remote, self.data_dir, self.job, self.result = remote, data_dir, job, result

    def _take(self, take_over: bool):
        return self.remote.run(lock_script(self.data_dir, self.job.run_id, take_over=take_over),
                               sudo=True, check=False)

    def __enter__(self):
        run = self._take(self.job.break_lock)
        if run.exited == 7:
            owner = run.stdout.strip().removeprefix("LOCKED").strip()
            why = _stale(owner)
            if why is None:
                raise LockedError(f"registry locked by another run ({_owner_text(owner)}) "
                                  f"in {self.data_dir}/.registry-tls.lock; if that run is gone, pass --break-lock")
            warning = f"took over a stale registry lock ({_owner_text(owner)}): {why}"
            log.warning("%s: %s", self.remote.name, warning)
            self.result.warnings.append(warning)
            run = self._take(True)
        if not run.ok:
            raise RemoteError(self.remote.name, f"cannot take the lock: {run.tail()}")
        return self

    def __exit__(self, *exc):
        self.remote.run(unlock_script(self.data_dir), sudo=True, check=False)


def _owner_text(owner: str) -> str:
    """'host pid 12 1700000000' -> 'host pid 12, 42s ago'."""
    head, _, since = owner.rpartition(" ")
    if not since.isdigit():
        return owner or "owner unknown"
    return f"{head}, {max(0, int(time.time()) - int(since))}s ago"


def _stale(owner: str) -> str | None:
    """Why a lock is stale (its run is dead on this machine, or it is older than an hour), else None."""
    parts = owner.split()
    try:
        host, pid, since = parts[0], int(parts[2]), int(parts[-1])
    except (IndexError, ValueError):
        return "its owner file is unreadable"
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} on this machine is gone"
        except PermissionError:
            pass
        return None
    if time.time() - since > LOCK_STALE_SECONDS:
        return f"older than {LOCK_STALE_SECONDS // 60} minutes"
    return None
