"""``clients.untrust``: remove from a client what ``clients.trust`` installed there, and nothing else.

Ours are: files named ``registry-tls-*`` in the folders we write to (extra anchors, OS store
anchors), and at our other paths (``ca.crt``, ``hosts.toml``) a file whose content is exactly
what ``clients.trust`` writes; our marked block in buildkitd.toml; a certs.d folder we emptied.
Any other file at our paths is someone else's: left in place, with a warning. Every target is
looked at, not only the ones the inventory lists today. The OS store is refreshed and dockerd
restarted by the same rule as ``clients.trust``. A second run finds nothing and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import clients as C
from . import facts as F
from .errors import ConnectionLost
from .inventory import Client, Registry
from .results import HostResult, Status
from .sh import q
from .steps import Kind
from .transport import Result

TARGETS = ("docker", "containerd", "podman", "os", "buildkit")


@dataclass(frozen=True)
class UntrustPlan:
    steps: C.ClientPlan                 # writes (buildkitd.toml without our block), removes, refresh, restart
    folders: tuple[str, ...] = ()       # certs.d folders to remove once empty
    kept: tuple[str, ...] = ()          # files at our paths that are not ours

    def describe(self) -> list[str]:
        return self.steps.describe() + [f"remove folder {d} if empty" for d in self.folders]


def every_target(client: Client) -> Client:
    return replace(client, trust=TARGETS)


def _ours_by_name(path: str) -> bool:
    return path.rsplit("/", 1)[1].startswith("registry-tls-")


def plan(client: Client, registry: Registry, anchors: tuple[C.Anchor, ...], facts: F.ClientFacts, *,
         force: bool = False) -> UntrustPlan:
    """Pure: what to remove, given what the probe found (``force``: as for clients.plan)."""
    wide = every_target(client)
    ours = {f.path: f.sha256 for family in (None, *C.OS_STORE) for f in C.desired_files(wide, registry, anchors, family)}
    removes: list[str] = []
    kept: list[str] = []
    for path, found in sorted(facts.files.items()):
        if found is None or path not in ours:
            continue
        (removes if _ours_by_name(path) or found.sha256 == ours[path] else kept).append(path)
    removes += [p for p in facts.extra if p not in removes]
    writes: tuple[C.WantFile, ...] = ()
    if facts.buildkit_toml is not None:
        stripped = C.without_block(facts.buildkit_toml, registry)
        if stripped != facts.buildkit_toml:
            if stripped:
                writes = (C.WantFile(C.BUILDKIT_TOML, stripped, "buildkit"),)
            else:
                removes.append(C.BUILDKIT_TOML)
    store_dirs = {d + "/": cmd for d, cmd in C.OS_STORE.values()}
    os_changed = any(p.startswith(d) for p in removes for d in store_dirs)
    warnings = [f"{p} is not what registry-tls installs (someone else's): left in place" for p in kept]
    refresh = None
    if os_changed:
        family = facts.os_family
        refresh = C.OS_STORE[family][1] if family in C.OS_STORE else None
        if refresh is None:
            warnings.append(f"OS trust store: unsupported OS {facts.os_id!r}; refresh it by hand")
    restart, reason = C.restart_rule(client, changed=bool(removes or writes), os_changed=os_changed, pending=False,
                                     dockerd_running=facts.dockerd_started is not None, warnings=warnings)
    roots = tuple(f"{d}/" for d in (*C.CERTS_D.values(), C.BUILDKIT_CERTS))
    folders = tuple(dict.fromkeys(p.rsplit("/", 1)[0] for p in removes if p.startswith(roots)))
    steps = C.file_steps(writes, removes, refresh)
    if restart:
        steps += (C.restart_dockerd(client, reason, force=force),)
    return UntrustPlan(steps=C.ClientPlan(steps, tuple(warnings)), folders=folders, kept=tuple(kept))


def script(todo: UntrustPlan) -> str:
    """clients.trust's apply script, then each emptied folder removed (rmdir keeps a folder with other files)."""
    return "\n".join(C.apply_script(todo.steps) + [f"rmdir {q(d)} 2>/dev/null || :" for d in todo.folders])


def untrust(client: Client, job: C.TrustJob) -> HostResult:
    """Remove our trust from one client; returns its HostResult (errors propagate to fleet.guarded).

    sudo follows clients.trust's canary (C.SudoCanary): a refused password is tried on one host only.
    """
    state = ["nothing changed"]
    try:
        return _untrust(client, job, state)
    except C.CanaryRejected as exc:
        return HostResult(host=client.name, status=Status.SKIPPED, message=str(exc))
    except ConnectionLost as exc:  # (could not connect at all: nothing was done, nothing to add)
        raise ConnectionLost(client.name, f"{exc.reason}; state: {state[0]}") from None
    finally:
        if client.name == job.canary.host:
            job.canary.release()


def _untrust(client: Client, job: C.TrustJob, state: list[str]) -> HostResult:
    registry, anchors, wide = job.registry, job.anchors, every_target(client)
    paths = C.probe_paths(wide, registry, anchors)
    with job.connect(client.ssh) as remote:
        def as_root(command: str, *, check: bool = True, timeout: int | None = None) -> Result:
            job.canary.wait(client.name)
            return remote.run(command, sudo=True, check=check, timeout=timeout)

        canary = client.name == job.canary.host  # as in clients.trust: its probe, with sudo, is the check

        def look() -> F.ClientFacts:
            return F.gather_client(remote, paths, C.extra_globs(wide, registry, job.former_hosts),
                                   buildkit_toml=C.BUILDKIT_TOML,
                                   sudo=True if canary else None, before_sudo=lambda: job.canary.wait(client.name))

        found = job.canary.check(client.name, look) if canary else look()
        todo = plan(client, registry, anchors, found, force=job.force)
        result = HostResult(host=client.name, warnings=list(todo.steps.warnings),
                            facts={"os": found.os_family or found.os_id, "kept": list(todo.kept)})
        changed = bool(todo.steps.writes or todo.steps.removes)
        restart = todo.steps.step(Kind.RESTART_DOCKERD)
        if job.dry_run:
            result.changes = [f"would {line}" for line in todo.describe()]
            result.status = Status.CHANGED if changed or restart else Status.OK
            result.message = "would remove (dry run)" if changed else "nothing of registry-tls installed"
            return result
        if changed:
            state[0] = "removal sent, outcome unknown (each file is either in place or gone)"
            as_root(script(todo))
            state[0] = f"{len(todo.steps.removes)} file(s) removed"
        if restart:
            state[0] += "; dockerd restart started, outcome unknown"
            C.restart(as_root, client.name, restart, job.gate)
            result.restarted = True
    result.changes = todo.describe() if changed or restart else []
    result.status = Status.CHANGED if changed or restart else Status.OK
    result.message = (f"removed {len(todo.steps.removes)} file(s)" + (" and our buildkitd.toml block" if
                      todo.steps.writes else "")) if changed else "nothing of registry-tls installed"
    return result
