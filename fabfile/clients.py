"""Docker clients: which trust files they need, what differs, and the one script that fixes it.

Per host and run: one SSH connection; one probe (files, OS, dockerd start
time, what else sits in the certs.d folders); when something differs, one
apply script (atomic writes, stale-anchor removal, OS store refresh, then each
runtime asked whether it accepts the registry's TLS: ``runtimes``); when the
OS trust store changed, one restart, gated so that at most ``batch`` hosts
restart at once and restarts stop after the first failure, then the runtimes
asked again.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from . import facts as F
from . import runtimes as RT
from .errors import ConnectionLost, RemoteError, RestartRefused, WrongSudoPassword
from .inventory import Client, Registry, SshTarget
from .results import HostResult, Status
from .sh import Exit, Raw, q, words
from .steps import Kind, Step, Upload, describe, find
from .transport import Result, Transport

T = TypeVar("T")

CERTS_D = {
    "docker": "/etc/docker/certs.d",
    "podman": "/etc/containers/certs.d",
    "containerd": "/etc/containerd/certs.d",
}
OS_STORE = {
    "debian": ("/usr/local/share/ca-certificates", "update-ca-certificates"),
    "rhel": ("/etc/pki/ca-trust/source/anchors", "update-ca-trust extract"),
}
BUILDKIT_TOML = "/etc/buildkit/buildkitd.toml"
BUILDKIT_CERTS = "/etc/buildkit/certs.d"
BLOCK_BEGIN = "# BEGIN registry-tls {host}"
BLOCK_END = "# END registry-tls {host}"


@dataclass(frozen=True)
class Anchor:
    """A certificate clients must trust. ``label`` 'current' is ca.crt; others sit beside it."""

    label: str
    pem: bytes

    def certs_d_name(self) -> str:
        return "ca.crt" if self.label == "current" else f"registry-tls-{self.label}.crt"

    def os_store_name(self, registry_host: str) -> str:
        suffix = "" if self.label == "current" else f"_{self.label}"  # '_' never occurs in a host name
        return f"registry-tls-{registry_host}{suffix}.crt"


@dataclass(frozen=True)
class WantFile:
    path: str
    content: bytes
    target: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


# --------------------------------------------------------------------------- desired state (pure)


def certs_d_dirs(names: tuple[str, ...], port: int) -> list[str]:
    """Folder names under certs.d for every form users pull with.

    Docker looks up ``certs.d/<host>`` for port 443 references and
    ``certs.d/<host>:<port>`` otherwise; a user may also write ``host:443``,
    so for 443 both forms are written. A wrong folder name only ever shows up
    as 'unknown authority', hence the care.
    """
    dirs: list[str] = []
    for name in names:
        host = f"[{name}]" if ":" in name else name
        forms = [host, f"{host}:443"] if port == 443 else [f"{host}:{port}"]
        dirs += [f for f in forms if f not in dirs]
    return dirs


def desired_files(
    client: Client, registry: Registry, anchors: tuple[Anchor, ...], os_family: str | None
) -> tuple[WantFile, ...]:
    files: list[WantFile] = []
    for target in client.trust:
        if target in CERTS_D:
            for folder in certs_d_dirs(client.registry_names, registry.port):
                base = f"{CERTS_D[target]}/{folder}"
                files += [WantFile(f"{base}/{a.certs_d_name()}", a.pem, target) for a in anchors]
                if target == "containerd":
                    files.append(WantFile(f"{base}/hosts.toml", _hosts_toml(folder, base, anchors), target))
        elif target == "os" and os_family in OS_STORE:
            store = OS_STORE[os_family][0]
            files += [WantFile(f"{store}/{a.os_store_name(registry.host)}", a.pem, "os") for a in anchors]
        elif target == "buildkit":
            base = f"{BUILDKIT_CERTS}/{registry.endpoint}"
            files += [WantFile(f"{base}/{a.certs_d_name()}", a.pem, "buildkit") for a in anchors]
    return tuple(files)


def _hosts_toml(folder: str, base: str, anchors: tuple[Anchor, ...]) -> bytes:
    server = folder.removesuffix(":443")
    cas = ", ".join(f'"{base}/{a.certs_d_name()}"' for a in anchors)
    return (f'server = "https://{server}"\n\n[host."https://{folder}"]\n'
            f'  capabilities = ["pull", "resolve", "push"]\n  ca = [{cas}]\n').encode()


def buildkit_toml(current: bytes | None, registry: Registry, anchors: tuple[Anchor, ...]) -> bytes:
    """buildkitd.toml with our marked block for this registry replaced (BuildKit ignores certs.d)."""
    begin, end = BLOCK_BEGIN.format(host=registry.endpoint), BLOCK_END.format(host=registry.endpoint)
    kept = without_block(current, registry).decode().splitlines()
    base = f"{BUILDKIT_CERTS}/{registry.endpoint}"
    cas = ", ".join(f'"{base}/{a.certs_d_name()}"' for a in anchors)
    block = [begin, f'[registry."{registry.endpoint}"]', f"  ca = [{cas}]", end]
    return ("\n".join(kept + ([""] if kept else []) + block) + "\n").encode()


def without_block(current: bytes | None, registry: Registry) -> bytes:
    """buildkitd.toml without our marked block for this registry (trailing blank lines dropped)."""
    begin, end = BLOCK_BEGIN.format(host=registry.endpoint), BLOCK_END.format(host=registry.endpoint)
    kept, skipping = [], False
    for line in (current or b"").decode().splitlines():
        if line.strip() == begin:
            skipping = True
        elif line.strip() == end:
            skipping = False
        elif not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return ("\n".join(kept) + "\n").encode() if kept else b""


def probe_paths(client: Client, registry: Registry, anchors: tuple[Anchor, ...]) -> tuple[str, ...]:
    """Every path the plan may need to compare, whatever the host's OS turns out to be."""
    paths = {f.path for family in (None, *OS_STORE) for f in desired_files(client, registry, anchors, family)}
    return tuple(sorted(paths))


def extra_globs(client: Client, registry: Registry, former: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """Where a stale anchor of ours may sit: ``registry-tls-*.crt`` beside ca.crt, and the OS stores: there
    ``registry-tls-<host>_*.crt`` of the registry's name, and every file of the names it had before (``former``,
    from <state_dir>: after a rename, review L12). Never ``registry-tls-*.crt`` of any name in the OS store:
    another inventory's registry may have its anchor there."""
    globs = []
    for target in client.trust:
        if target in CERTS_D:
            globs += [(f"{CERTS_D[target]}/{d}/registry-tls-", ".crt")
                      for d in certs_d_dirs(client.registry_names, registry.port)]
        elif target == "os":
            globs += [(f"{store}/registry-tls-{host}_", ".crt") for store, _ in OS_STORE.values()
                      for host in (registry.host, *former)]
            globs += [(f"{store}/registry-tls-{host}.crt", "") for store, _ in OS_STORE.values() for host in former]
        elif target == "buildkit":
            globs.append((f"{BUILDKIT_CERTS}/{registry.endpoint}/registry-tls-", ".crt"))
    return tuple(globs)


def check_targets(client: Client, registry: Registry, anchors: tuple[Anchor, ...]) -> tuple[RT.Target, ...]:
    """What ``runtimes.script`` asks on this client: each trust target, every name it pulls with.

    Empty when ``verify: false``.
    """
    if not client.verify:
        return ()
    folders = tuple(certs_d_dirs(client.registry_names, registry.port))
    endpoints = tuple(f"[{n}]:{registry.port}" if ":" in n else f"{n}:{registry.port}" for n in client.registry_names)
    out = []
    for target in client.trust:
        if target in CERTS_D:
            out.append(RT.Target(target, folders))
        elif target == "os":
            out.append(RT.Target("os", endpoints))
        elif target == "buildkit":
            cas = tuple(f.path for f in desired_files(client, registry, anchors, None) if f.target == "buildkit")
            out.append(RT.Target("buildkit", (f"{registry.host}:{registry.port}",), cas))
    return tuple(out)


def trust_folders(client: Client, registry: Registry) -> tuple[str, ...]:
    """The certs.d folders of the registry's names for this client's targets (status reads all they hold)."""
    dirs = certs_d_dirs(client.registry_names, registry.port)
    return tuple(f"{CERTS_D[t]}/{d}" for t in client.trust if t in CERTS_D for d in dirs)


# --------------------------------------------------------------------------- plan (pure)


@dataclass(frozen=True)
class ClientPlan:
    """The client's steps, in order: files written, files removed, the OS store refreshed (all in one
    script), then dockerd restarted (through the restart gate). None has an ``undo``: a client is not
    rolled back (each file is the old or the new one, and a rerun converges)."""

    steps: tuple[Step, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.steps

    def describe(self) -> list[str]:
        return describe(self.steps)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(s.kind for s in self.steps)

    def step(self, kind: Kind) -> Step | None:
        return find(self.steps, kind)

    @property
    def writes(self) -> tuple[Upload, ...]:
        return tuple(f for s in self.steps if s.kind is Kind.WRITE_FILE for f in s.files)

    @property
    def removes(self) -> tuple[str, ...]:
        return tuple(s.target for s in self.steps if s.kind is Kind.REMOVE_FILE)

    @property
    def file_steps(self) -> tuple[Step, ...]:
        """The steps ``apply_script`` carries out (all but the restart)."""
        return tuple(s for s in self.steps if s.kind in FILE_KINDS)


FILE_KINDS = frozenset({Kind.WRITE_FILE, Kind.REMOVE_FILE, Kind.REFRESH_STORE})


def write_file(f: WantFile) -> Step:
    """An exclusive temp file beside ``f.path``, renamed over it (``w``/``wb`` are defined by ``apply_script``).
    Text (PEM, TOML) is written by the shell's own printf; anything else is decoded by base64."""
    text = f.content.decode("ascii", errors="replace")
    if TEXT.fullmatch(text):
        script = f"w {q(f.path)} {q(text)}"
    else:
        script = f"wb {q(f.path)} {q(base64.b64encode(f.content).decode())}"
    return Step(Kind.WRITE_FILE, f"write {f.path}", target=f.path, files=(Upload(f.path, f.content, 0o644),),
                script=script)


TEXT = re.compile(r"[\x20-\x7e\n\t]*")   # printable ASCII lines: safe as one quoted shell word


def remove_file(path: str) -> Step:
    return Step(Kind.REMOVE_FILE, f"remove {path}", target=path, script=f"rm -f {q(path)}")


def refresh_store(command: str) -> Step:
    """The OS store's own command (OS_STORE), shell by design."""
    return Step(Kind.REFRESH_STORE, f"run {command}", target=command,
                script=f"{Raw(command)} >/dev/null 2>&1 || {{ echo {q(command + ' failed')} >&2; exit 1; }}")


def restart_dockerd(client: Client, reason: str, *, force: bool) -> Step:
    return Step(Kind.RESTART_DOCKERD, f"restart dockerd ({reason})", target=client.restart_command, why=reason,
                script=restart_script(client.restart_command, force=force))


def file_steps(writes: Iterable[WantFile] = (), removes: Iterable[str] = (), refresh: str | None = None
               ) -> tuple[Step, ...]:
    return (*map(write_file, writes), *map(remove_file, removes), *([refresh_store(refresh)] if refresh else []))


def plan(
    client: Client,
    registry: Registry,
    anchors: tuple[Anchor, ...],
    facts: F.ClientFacts,
    *,
    now: float | None = None,
    force: bool = False,
) -> ClientPlan:
    """``force``: the restart goes ahead though containers would stop (``--force``)."""
    warnings: list[str] = []
    clock = F.clock_problem(facts.clock, now)
    if clock and clock[0]:
        raise RemoteError(client.name, clock[1])
    family = facts.os_family
    if "os" in client.trust and family is None:
        raise RemoteError(client.name, f"OS trust store: unsupported OS {facts.os_id!r} "
                                       "(supported: Debian/Ubuntu, RHEL/CentOS/Fedora); drop 'os' from trust")
    want = desired_files(client, registry, anchors, family)
    if "buildkit" in client.trust:
        toml = buildkit_toml(facts.buildkit_toml, registry, anchors)
        if toml != (facts.buildkit_toml or b""):
            want += (WantFile(BUILDKIT_TOML, toml, "buildkit"),)
            warnings.append("buildkitd reads buildkitd.toml at start: restart buildkitd to apply")
    wanted_paths = {f.path for f in want}
    writes = tuple(f for f in want if f.path == BUILDKIT_TOML or not _same(facts.files.get(f.path), f))
    removes = tuple(sorted(p for p in facts.extra if p not in wanted_paths))
    store = OS_STORE.get(family) if family else None
    os_dir = store[0] if store else None
    os_changed = os_dir is not None and any(p.startswith(os_dir + "/") for p in (*(f.path for f in writes), *removes))
    pending = _restart_pending(facts, os_dir, registry) if "os" in client.trust else False
    restart, reason = restart_rule(client, changed=bool(writes or removes), os_changed=os_changed, pending=pending,
                                   dockerd_running=facts.dockerd_started is not None, warnings=warnings)
    if clock:
        warnings.append(clock[1])
    steps = file_steps(writes, removes, store[1] if store and os_changed else None)
    if restart:
        steps += (restart_dockerd(client, reason, force=force),)
    return ClientPlan(steps, tuple(warnings))


def restart_rule(client: Client, *, changed: bool, os_changed: bool, pending: bool, dockerd_running: bool,
                 warnings: list[str]) -> tuple[bool, str]:
    """(restart?, why) for the client's ``restart`` setting; what it cannot do goes to ``warnings``.

    dockerd reads the OS trust store once, at start: ``auto`` restarts when that store changed (or
    holds an anchor newer than dockerd), ``always`` on any change, ``never`` only warns.
    """
    needs = os_changed or pending
    restart, reason = False, ""
    if client.restart == "always" and (changed or pending):
        restart, reason = True, "restart: always"
    elif client.restart == "auto" and needs:
        restart, reason = True, "the OS trust store changed" if os_changed else "OS trust store newer than dockerd"
    elif needs and client.restart == "never":
        warnings.append("dockerd must restart to load the OS trust store (restart: never; not restarted)")
    if restart and not dockerd_running:
        warnings.append(f"dockerd is not running, so it was not restarted ({reason}): "
                        "it loads the new trust when it starts")
        return False, ""
    return restart, reason


def _same(have: F.RemoteFile | None, want: WantFile) -> bool:
    return have is not None and have.sha256 == want.sha256 and have.mode == 0o644 and have.owner == "root"


def _restart_pending(facts: F.ClientFacts, os_dir: str | None, registry: Registry) -> bool:
    """An anchor in the OS store is newer than the running dockerd: it has not loaded it."""
    if not os_dir or facts.dockerd_started is None:
        return False
    prefix = f"{os_dir}/registry-tls-{registry.host}"
    return any(f is not None and f.path.startswith(prefix) and f.mtime > facts.dockerd_started
               for f in facts.files.values())


# --------------------------------------------------------------------------- scripts


def apply_script(plan: ClientPlan) -> list[str]:
    """Shell lines that carry out the plan's file steps: each write is an exclusive temp file + rename."""
    # As root with umask 022, a file the shell creates is 0644 root:root already; noclobber (-C)
    # makes the '>' an exclusive create, as mktemp did. One process per text file (mv), two otherwise.
    lines = [
        "set -e", "umask 022", "set -C",
        'w() { t="${1%/*}/.registry-tls.$$.${1##*/}"; printf %s "$2" > "$t"; mv -f "$t" "$1"; }',
        'wb() { t="${1%/*}/.registry-tls.$$.${1##*/}"; printf %s "$2" | base64 -d > "$t"; mv -f "$t" "$1"; }',
    ]
    folders = list(dict.fromkeys(f.path.rsplit("/", 1)[0] for f in plan.writes))
    if folders:
        lines.append("mkdir -p " + words(folders))
    lines += [s.script for s in plan.file_steps if s.script]
    lines.append("set +e +C")
    return lines


def restart_script(restart_command: str, *, force: bool) -> str:
    """Refuse if containers would stop (live-restore off) unless forced; validate; restart; wait.

    ``restart_command`` is the inventory's ``restart_command``: shell, by design (``Raw``).
    """
    return "\n".join([
        "set -u",
        f"if [ {int(force)} != 1 ]; then",
        "  s=$(docker info --format '{{.LiveRestoreEnabled}} {{.ContainersRunning}}' 2>/dev/null) || s=''",
        "  set -- $s",
        ('  if [ "${1:-true}" = false ] && [ "${2:-0}" -gt 0 ]; then echo "RUNNING $2"; '
         f'exit {Exit.RESTART_REFUSED:d}; fi'),
        "fi",
        "if dockerd --help 2>/dev/null | grep -q -- '--validate'; then",
        ("  if ! v=$(dockerd --validate 2>&1); then echo \"INVALID $(printf '%s' \"$v\" | tail -n1)\"; "
         f"exit {Exit.RESTART_INVALID:d}; fi"),
        "fi",
        f"{Raw(restart_command)} >/dev/null 2>&1 || {{ echo 'RESTARTFAILED'; exit {Exit.RESTART_FAILED:d}; }}",
        "i=0; while [ $i -lt 300 ]; do docker info >/dev/null 2>&1 && { echo UP; exit 0; }; sleep 0.2; i=$((i+1)); done",
        f"echo TIMEOUT; exit {Exit.RESTART_TIMEOUT:d}",
    ])


RESTART_ERRORS: dict[int, str] = {
    Exit.RESTART_REFUSED: "dockerd not restarted: {detail} container(s) running and live-restore is off; "
       "they would stop (use --force to restart anyway)",
    Exit.RESTART_INVALID: "dockerd not restarted: its configuration is invalid ({detail})",
    Exit.RESTART_FAILED: "dockerd restart command failed: {command}",
    Exit.RESTART_TIMEOUT: "dockerd did not answer within 60s after the restart",
}


# --------------------------------------------------------------------------- one host


class RestartGate:
    """At most ``batch`` dockerd restarts at once; after one fails, no more start."""

    def __init__(self, batch: int):
        self._slots = threading.BoundedSemaphore(max(1, batch))
        self._lock = threading.Lock()
        self.failed_on: str | None = None

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._slots:
            with self._lock:
                if self.failed_on:
                    raise RemoteError(host, f"dockerd restart skipped: the restart on {self.failed_on} failed")
            try:
                yield
            except RestartRefused:
                raise
            except RemoteError:
                with self._lock:
                    self.failed_on = self.failed_on or host
                raise


class SudoCanary:
    """With a sudo password and several hosts, the first host runs its (read-only) probe with sudo
    as soon as it is connected, and every other host waits for that verdict before its own first
    sudo: a wrong password fails once, not on every host (lockouts). The check is the canary's
    probe itself, and the others' connections and probes overlap with it: no round trip of its own."""

    def __init__(self, host: str | None = None):
        self.host = host
        self.rejected_on: str | None = None
        self._done = threading.Event()
        if host is None:
            self._done.set()

    def check(self, host: str, step: Callable[[], T]) -> T:
        """On the canary host: ``step`` (read-only, with sudo); a wrong password stops every other
        host's sudo."""
        try:
            return step()
        except WrongSudoPassword:
            self.rejected_on = host
            raise
        finally:
            self._done.set()

    def release(self) -> None:
        """The canary host ended before its check (e.g. unreachable): the others go on."""
        self._done.set()

    def wait(self, host: str) -> None:
        """Before ``host``'s first sudo: raise CanaryRejected when the password was refused."""
        if host != self.host:
            self._done.wait()
            if self.rejected_on:
                raise CanaryRejected(f"not attempted: the sudo password was rejected on {self.rejected_on}")


class CanaryRejected(Exception):
    """This host's sudo was not tried: the canary host refused the password (reported as skipped)."""


@dataclass
class TrustJob:
    """Everything one ``clients.trust`` run shares between hosts."""

    registry: Registry
    anchors: tuple[Anchor, ...]
    connect: Callable[[SshTarget], Transport]   # Session.connect
    dry_run: bool = False
    force: bool = False
    gate: RestartGate = field(default_factory=lambda: RestartGate(1))
    canary: SudoCanary = field(default_factory=SudoCanary)
    former_hosts: tuple[str, ...] = ()   # names the registry had before: their OS-store anchors are stale


def restart(as_root: Callable[..., Result], host: str, step: Step, gate: RestartGate) -> None:
    """Run a RESTART_DOCKERD step through the gate (refused with running containers unless --force);
    RestartRefused or RemoteError if dockerd was not restarted."""
    with gate.slot(host):
        run = as_root(step.script, check=False, timeout=120)
        if run.exited != 0:
            detail = run.stdout.split()[-1] if run.stdout.split() else ""
            template = RESTART_ERRORS.get(run.exited, "dockerd restart failed: {detail}")
            error = RestartRefused if run.exited == Exit.RESTART_REFUSED else RemoteError
            raise error(host, template.format(detail=detail or run.tail(), command=step.target))


class Laps:
    """Seconds per round trip (``--json`` shows them as facts.phase_seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._mark = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._mark, 3)
        self._mark = now


def trust(client: Client, job: TrustJob) -> HostResult:
    """Make one client trust the registry; returns its HostResult (errors propagate to fleet.guarded).

    A connection lost mid-step (the host vanished) is reported unreachable with what is known of
    the host's state at that point.
    """
    known = ["nothing changed"]     # the host's state as far as we know, should the connection drop
    try:
        return _trust(client, job, known)
    except CanaryRejected as exc:
        return HostResult(host=client.name, status=Status.SKIPPED, message=str(exc))
    except ConnectionLost as exc:  # (could not connect at all: nothing was done, nothing to add)
        raise ConnectionLost(client.name, f"{exc.reason}; state: {known[0]}") from None
    finally:
        if client.name == job.canary.host:
            job.canary.release()


def _trust(client: Client, job: TrustJob, known: list[str]) -> HostResult:
    registry, anchors, lap = job.registry, job.anchors, Laps()
    targets = check_targets(client, registry, anchors)
    with job.connect(client.ssh) as remote:
        remote.open()
        lap("connect")
        found = _look(remote, client, job)
        lap("probe")
        todo = plan(client, registry, anchors, found, now=time.time(), force=job.force)
        foreign, foreign_warnings = RT.foreign_files(found.listing, trust_folders(client, registry))
        result = HostResult(host=client.name, warnings=list(todo.warnings) + foreign_warnings,
                            facts={"os": found.os_family or found.os_id, "phase_seconds": lap.seconds})
        if job.dry_run:
            result.changes = [f"would {line}" for line in todo.describe()]
            result.status = Status.CHANGED if not todo.empty else Status.OK
            result.message = "would change (dry run)" if not todo.empty else "nothing to change"
            return result

        def as_root(command: str, *, check: bool = True, timeout: int | None = None) -> Result:
            job.canary.wait(client.name)
            return remote.run(command, sudo=True, check=check, timeout=timeout)

        def ask_runtimes(before: str = "") -> tuple[RT.Check, ...]:
            out = as_root(before + (RT.script(targets) if targets else "true")).stdout
            return RT.judge(RT.parse(out), targets, found.listing)

        checks = None
        files = len(todo.writes) + len(todo.removes)
        if todo.file_steps:   # one script: the writes, removals and store refresh, then the runtimes asked
            known[0] = (f"{files} trust file change(s) sent, outcome unknown "
                        "(each file is the old or the new one: writes are atomic)")
            checks = ask_runtimes("\n".join(apply_script(todo)) + "\n")
            lap("apply")
            known[0] = f"{files} trust file(s) changed"
        if step := todo.step(Kind.RESTART_DOCKERD):
            done = known[0] if todo.file_steps else "trust files in place"
            known[0] = f"{done}; dockerd restart started, outcome unknown"
            restart(as_root, client.name, step, job.gate)
            result.restarted = True
            lap("restart")
            known[0] = f"{done}; dockerd restarted; TLS check not done"
            if targets:
                checks = ask_runtimes()
                lap("verify")
    result.changes = todo.describe()
    result.status = Status.CHANGED if not todo.empty else Status.OK
    result.message = f"{files} file(s) changed" if not todo.empty else "trust in place"
    if checks:
        apply_checks(result, checks)
    if foreign:   # not ours to delete: the host fails with docker's reason until someone decides
        result.status, result.message = Status.FAILED, explain(result, foreign)
    return result


def _look(remote: Transport, client: Client, job: TrustJob) -> F.ClientFacts:
    """The probe: read-only, so no sudo unless a file is unreadable; on the sudo canary host it runs
    with sudo, and that is the check. No TLS check either: each runtime is asked when the trust
    changes, and `inv verify` / `inv status` ask on demand. Listing the certs.d folders (shell
    builtins) finds files we did not write, even on a no-op run."""
    registry, canary = job.registry, client.name == job.canary.host

    def look() -> F.ClientFacts:
        return F.gather_client(remote, probe_paths(client, registry, job.anchors),
                               extra_globs(client, registry, job.former_hosts),
                               buildkit_toml=BUILDKIT_TOML if "buildkit" in client.trust else None,
                               folders=trust_folders(client, registry),
                               sudo=True if canary else None, before_sudo=lambda: job.canary.wait(client.name))

    return job.canary.check(client.name, look) if canary else look()


def explain(result: HostResult, foreign: list[RT.Foreign]) -> str:
    """The message for a host where files we did not write break a runtime: what the runtime said
    (when it was asked and refused) plus the cause; else the runtime's rule, in its words."""
    if result.facts.get("verify") == "fail":
        return f"{result.message} ({'; '.join(f.cause for f in foreign)})"
    return "; ".join(f.text for f in foreign)


def apply_checks(result: HostResult, checks: tuple[RT.Check, ...]) -> str:
    """Record what the runtimes said: a refusal fails the host in the runtime's words; an absent or
    stopped runtime is a warning and never reads as trusted. Returns the summary in words."""
    overall, message, warnings = RT.summary(checks)
    result.facts["verify"] = overall
    result.facts["checks"] = [{"target": c.target, "name": c.name, "state": c.state, "detail": c.detail}
                              for c in checks]
    result.warnings += warnings
    if overall == "fail":
        result.status, result.message = Status.FAILED, f"TLS refused: {message}"
    return result.message if overall == "fail" else message
