"""registry-tls test lab: a registry host and N Docker client hosts on this machine, each in its
own network + mount namespace with sshd (and dockerd). `Lab` is the facade; see lab/tasks.py."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from . import hosts as hostmod
from . import images, inventory, keys, netns, procs
from .errors import LabError
from .state import HostState, LabState, check_prefix, plan

__all__ = ["HostStatus", "Lab", "LabError"]

DEFAULT_SUBNET = "10.213.0.0/24"
CLEAN_IN_DOCKER = 'ids=$(docker ps -aq); [ -z "$ids" ] || docker rm -f $ids >/dev/null'
CLEAN_IN_PODMAN = "podman rm -f -a -t 1 >/dev/null 2>&1; true"   # its containers live in their own namespaces


@dataclass
class HostStatus:
    name: str
    role: str                 # 'registry' | 'client'
    address: str
    up: bool                  # holder + sshd answering (+ dockerd answering on docker hosts)
    docker: bool              # the host runs a dockerd
    holder_pid: int | None
    sshd_pid: int | None
    dockerd_pid: int | None

    def as_dict(self) -> dict:
        return asdict(self)


class Lab:
    """A lab rooted at `root` (everything it makes lives there). `prefix` names its network
    objects (PREFIX-br0, netns PREFIX-HOST); two labs at once need distinct prefixes and subnets."""

    def __init__(self, root: Path | str = Path(".lab"), prefix: str = "rtls"):
        self.root = Path(root).resolve()
        self.prefix = check_prefix(prefix)

    # -- paths -------------------------------------------------------------------------------
    state_path = property(lambda self: self.root / "state.json")
    inventory_path = property(lambda self: self.root / "inventory.yaml")
    ssh_key_path = property(lambda self: self.root / "ssh" / "id_ed25519")
    known_hosts_path = property(lambda self: self.root / "ssh" / "known_hosts")
    sudo_password_path = property(lambda self: self.root / "sudo_password")
    restart_dockerd_path = property(lambda self: self.root / "bin" / "restart-dockerd")

    def host_dir(self, name: str) -> Path:
        return hostmod.host_dir(self.root, name)

    @property
    def sudo_password(self) -> str:
        return self.sudo_password_path.read_text()

    def state(self) -> LabState | None:
        return LabState.load(self.state_path)

    def _state(self) -> LabState:
        state = self.state()
        if state is None:
            raise LabError(f"no lab at {self.root} (run lab up first)")
        return state

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self._state().hosts]

    def address(self, name: str) -> str:
        return self._state().host(name).address

    def ssh_argv(self, host: str, user: str = hostmod.DEPLOY) -> list[str]:
        """OpenSSH client argv logging into a lab host with the operator key and strict host keys."""
        return ["ssh", "-i", str(self.ssh_key_path), "-o", f"UserKnownHostsFile={self.known_hosts_path}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-F", "/dev/null", f"{user}@{self.address(host)}"]

    # -- up ----------------------------------------------------------------------------------
    def preflight(self, kinds: tuple[str, ...] = ()) -> str:
        """Raise LabError unless this machine can run the lab (root, packages, root location, and
        podman / containerd when those host kinds are asked for); return the path of tini."""
        _need_root()
        for name, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux"),
                              ("mount", "mount")):
            hostmod.tool(name, package)
        if not Path("/usr/sbin/sshd").exists():
            raise LabError("/usr/sbin/sshd not found; apt-get install openssh-server")
        hostmod.tool("dockerd", "docker.io")        # the registry host always runs dockerd
        hostmod.tool("docker", "docker.io")
        hostmod.tool("ldd", "libc-bin")
        if "podman" in kinds:
            hostmod.tool("podman", "podman")
            hostmod.tool("skopeo", "skopeo")
        if "containerd" in kinds:
            hostmod.tool("containerd", "containerd")
            hostmod.tool("ctr", "containerd")
        if not images.REGISTRY_BINARY.exists():
            raise LabError(f"{images.REGISTRY_BINARY} not found; apt-get install docker-registry")
        hostmod.check_root_location(self.root)
        return hostmod.tool("tini", "tini")

    def _stale(self) -> bool:
        return (self.state_path.exists() or (self.root / "hosts").exists()
                or bool(netns.netns_names(self.prefix)) or bool(netns.link_names(self.prefix)))

    def up(self, clients: int = 3, docker: bool = True, subnet: str = DEFAULT_SUBNET,
           timeout: float = 90.0, registry_engine: str = "docker", podman_clients: int = 0,
           containerd_clients: int = 0) -> list[HostStatus]:
        """Clean any stale lab, start the registry host and `clients` clients, wait until all answer
        (sshd; dockerd + imported images unless docker=False, which makes sshd-only clients).
        ``registry_engine='podman'``: the registry host runs podman (no dockerd), its image in podman's
        storage; ``podman_clients`` / ``containerd_clients``: clients with podman and no dockerd, or
        with containerd only."""
        state = plan(self.prefix, subnet, clients, docker, registry_engine, podman_clients, containerd_clients)
        tini = self.preflight(tuple({h.kind for h in state.hosts}))
        netns.check_subnet_free(state.subnet, state.bridge)   # before touching a running lab
        if self._stale():
            self._down(sweep_foreign=True)      # even a lab of another root with our prefix
            netns.check_subnet_free(state.subnet, state.bridge)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".gitignore").write_text("*\n")
        state.phase = "starting"
        state.save(self.state_path)
        try:
            self._start(state, tini, timeout)
        except BaseException:
            with contextlib.suppress(Exception):   # keep the original error
                self._down(sweep_foreign=True)
            raise
        return self.status(probe=False)       # _start() already saw every daemon answer

    def _start(self, state: LabState, tini: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        hostmod.write_restart_script(self.root)
        ssh_dir = self.root / "ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        operator_pub = keys.write_ed25519(self.ssh_key_path, "registry-tls-lab-operator")
        password = keys.new_password()
        fd = os.open(self.sudo_password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        images_dir = self.root / "images"
        images_dir.mkdir(exist_ok=True)
        registry_tar = images.build_registry_tar(images_dir / "registry.tar")
        hello_tar = images.build_hello_tar(images_dir / "hello.tar")

        netns.create(state, owner=str(self.root))
        state.iptables_rule = netns.add_forward_rule(state.bridge)
        state.save(self.state_path)
        netns.check_routes([h.address for h in state.hosts], state.bridge)

        machine = hostmod.Machine.read(state, keys.password_hash(password), operator_pub)

        def launch(h: HostState) -> str:
            public_key = hostmod.prepare(self.root, state, h, machine)
            h.holder_pid, h.holder_start = hostmod.start_holder(self.root, state, h, tini)
            return public_key

        try:       # files are metadata-bound: prepare and spawn hosts in parallel
            with ThreadPoolExecutor(max_workers=8) as pool:
                host_keys = dict(zip([h.name for h in state.hosts], pool.map(launch, state.hosts)))
        finally:
            state.save(self.state_path)
        inventory.write_known_hosts(state, host_keys, self.known_hosts_path)

        abort = threading.Event()

        def docker_ready(h: HostState) -> None:
            while not hostmod.docker_ping(h.holder, timeout=1.0):
                if abort.is_set():
                    return
                self._check_alive(h, deadline, "dockerd", "dockerd.log")
                pid = hostmod.read_pidfile(h.holder, "/run/docker.pid")
                if pid and not procs.alive(pid):
                    raise LabError(f"dockerd on lab host {h.name} exited: "
                                   f"{self._tail(h.name, 'dockerd.log')}")
                time.sleep(0.05)
            enter = hostmod.enter_argv(h.holder, [])
            if h.role == "registry":
                images.import_image(enter, registry_tar, images.REGISTRY_IMAGE, images.REGISTRY_CHANGES)
            else:
                images.import_image(enter, hello_tar, images.HELLO_IMAGE)

        def other_ready(h: HostState) -> None:
            """podman: the registry image in its storage (registry host); containerd: its socket answers."""
            enter = hostmod.enter_argv(h.holder, [])
            if h.kind == "podman" and h.role == "registry":
                images.import_image(enter, registry_tar, images.REGISTRY_IMAGE, images.REGISTRY_CHANGES,
                                    engine="podman")
            while h.kind == "containerd" and subprocess.run(
                    [*enter, "ctr", "--address", hostmod.CONTAINERD_SOCKET, "version"], env=hostmod.ENV,
                    capture_output=True, timeout=10, check=False).returncode != 0:
                if abort.is_set():
                    return
                self._check_alive(h, deadline, "containerd", "containerd.log")
                time.sleep(0.1)

        docker_hosts = [h for h in state.hosts if h.docker]
        others = [h for h in state.hosts if h.kind in ("podman", "containerd")]
        with ThreadPoolExecutor(max_workers=min(8, len(docker_hosts) + len(others))) as pool:
            futures = [pool.submit(docker_ready, h) for h in docker_hosts]
            futures += [pool.submit(other_ready, h) for h in others]
            try:
                pending = list(state.hosts)
                while pending:
                    for h in list(pending):
                        # sshd writes its pid file only after binding its listening socket
                        pid = hostmod.read_pidfile(h.holder, "/run/sshd.pid")
                        if pid and procs.alive(pid):
                            pending.remove(h)
                        else:
                            self._check_alive(h, deadline, "sshd", "sshd.log")
                    if pending:
                        time.sleep(0.02)
                for fut in futures:
                    fut.result()
            except BaseException:
                abort.set()
                raise
        for h in state.hosts:
            h.sshd_pid = hostmod.read_pidfile(h.holder, "/run/sshd.pid")
            h.dockerd_pid = hostmod.read_pidfile(h.holder, "/run/docker.pid") if h.docker else None
        inventory.write(state, self.root, self.inventory_path)
        state.phase = "up"
        state.save(self.state_path)

    def _check_alive(self, h: HostState, deadline: float, what: str, log: str) -> None:
        if not procs.alive(h.holder_pid, h.holder_start):
            raise LabError(f"lab host {h.name} failed to start: {self._tail(h.name, 'holder.log')}")
        if time.monotonic() > deadline:
            raise LabError(f"{what} on lab host {h.name} did not answer in time: {self._tail(h.name, log)}")

    def _tail(self, name: str, log: str) -> str:
        try:
            lines = (self.host_dir(name) / log).read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else f"(no output in {self.host_dir(name) / log})"

    # -- status / run ------------------------------------------------------------------------
    def status(self, probe: bool = True) -> list[HostStatus]:
        """Each host's state; probe=True also connects to its sshd and pings its dockerd."""
        _need_root()
        state = self.state()
        if state is None:
            return []
        live = {h.name: procs.alive(h.holder_pid, h.holder_start) for h in state.hosts}
        netns.check_routes([h.address for h in state.hosts if live[h.name]], state.bridge)
        out = []
        for h in state.hosts:
            sshd = dockerd = None
            ok = live[h.name]
            if ok:
                sshd = hostmod.read_pidfile(h.holder, "/run/sshd.pid")
                ok = procs.alive(sshd) and (not probe or hostmod.port_open(h.address, 22, 0.5))
                if h.docker:
                    dockerd = hostmod.read_pidfile(h.holder, "/run/docker.pid")
                    ok = ok and procs.alive(dockerd) and (not probe or hostmod.docker_ping(h.holder))
            out.append(HostStatus(h.name, h.role, h.address, bool(ok), h.docker,
                                  h.holder_pid if live[h.name] else None,
                                  sshd if procs.alive(sshd) else None,
                                  dockerd if procs.alive(dockerd) else None))
        return out

    def run(self, host: str, command: str, check: bool = False, input: str | bytes | None = None,
            timeout: float | None = None, text: bool = True) -> subprocess.CompletedProcess:
        """Run `command` with /bin/sh as root inside lab host `host` (its net, mount, UTS ns)."""
        _need_root()
        state = self._state()
        h = state.host(host)
        if not procs.alive(h.holder_pid, h.holder_start):
            raise LabError(f"lab host {host} is not running (run lab up)")
        netns.check_routes([h.address], state.bridge)
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(hostmod.enter_argv(h.holder, ["/bin/sh", "-c", command]),
                              input=data, stdin=None if data is not None else subprocess.DEVNULL,
                              capture_output=True, env=hostmod.ENV, timeout=timeout, check=False)
        result: subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]
        if text:
            result = subprocess.CompletedProcess(command, proc.returncode, proc.stdout.decode(errors="replace"),
                                                 proc.stderr.decode(errors="replace"))
        else:
            result = subprocess.CompletedProcess(command, proc.returncode, proc.stdout, proc.stderr)
        if check:
            result.check_returncode()
        return result

    # -- down --------------------------------------------------------------------------------
    def down(self) -> None:
        """Stop and remove everything the lab made (containers, daemons, holders, namespaces,
        links, iptables rule, files). Safe to run twice and on a half-made lab. Network objects
        with the lab's prefix are left alone when a lab of another root owns them now."""
        self._down(sweep_foreign=False)

    def _down(self, sweep_foreign: bool) -> None:
        _need_root()
        state = self.state()
        prefix = state.prefix if state else self.prefix
        bridge = state.bridge if state else f"{prefix}-br0"
        owner = netns.bridge_owner(bridge)
        ours = sweep_foreign or owner in (None, str(self.root))
        holders = {h.holder: h.holder_start for h in (state.hosts if state else [])
                   if procs.alive(h.holder_pid, h.holder_start)}
        names = set(netns.netns_names(prefix)) | {h.netns for h in (state.hosts if state else [])}
        if not ours:        # the netns names now belong to that other lab: only our own PIDs
            names = set()

        def lab_processes() -> dict[int, int | None]:
            nets = _inodes(f"/run/netns/{n}" for n in names)
            mnts = _inodes(f"/proc/{p}/ns/mnt" for p in holders if procs.alive(p))
            found: dict[int, int | None] = dict(procs.in_namespaces(nets, mnts))
            found.update({p: s for p, s in holders.items() if procs.alive(p, s)})
            return found

        found = lab_processes()
        if ours:   # holders of a lab whose state is lost: tini processes in the lab's netns
            holders.update({p: s for p, s in found.items() if _comm(p) == "tini"})
        for h in (state.hosts if state else []):
            if h.kind == "podman" and h.holder_pid in holders:
                subprocess.run(hostmod.enter_argv(h.holder, ["/bin/sh", "-c", CLEAN_IN_PODMAN]),
                               env=hostmod.ENV, capture_output=True, timeout=60, check=False)
        dockerds = {p: s for p, s in found.items() if _comm(p) == "dockerd"}
        if dockerds:
            def clean(pid: int) -> None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    subprocess.run(hostmod.enter_argv(pid, ["/bin/sh", "-c", CLEAN_IN_DOCKER]),
                                   env=hostmod.ENV, capture_output=True, timeout=60, check=False)
            with ThreadPoolExecutor(max_workers=min(8, len(dockerds))) as pool:
                list(pool.map(clean, dockerds))
            procs.terminate(dockerds, timeout=20)
        # Daemons first, while each holder (tini -s) lives to reap them; killing a holder's own
        # `sleep` child would make it exit early and leave zombies to the machine's init.
        found = lab_processes()
        procs.terminate({p: s for p, s in found.items()
                         if p not in holders and not (_ppid(p) in holders and _comm(p) == "sleep")},
                        timeout=5)
        procs.wait_reaped(holders, timeout=2)
        procs.terminate(lab_processes(), timeout=5)
        left = lab_processes()
        if left:
            raise LabError(f"lab processes survived SIGKILL: {sorted(left)}")
        if ours:
            netns.destroy(prefix)
            netns.remove_forward_rules(bridge)
        self._unmount_leftovers()
        self._remove_files()

    def _unmount_leftovers(self) -> None:
        """The lab mounts only inside host mount namespaces; undo anything under root seen here."""
        for target in sorted(_mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        if _mounts_under(self.root):
            raise LabError(f"mounts under {self.root} remain; unmount them by hand")

    def _remove_files(self) -> None:
        if not self.root.exists():
            return
        for name in ("hosts", "bin", "images", "ssh"):
            shutil.rmtree(self.root / name, ignore_errors=True)
            if (self.root / name).exists():
                shutil.rmtree(self.root / name)          # raise with the real error this time
        for name in ("inventory.yaml", "sudo_password", "state.json.tmp", "state.json"):
            (self.root / name).unlink(missing_ok=True)
        rest = [p.name for p in self.root.iterdir()]
        if rest == [".gitignore"]:
            (self.root / ".gitignore").unlink()
        if not any(self.root.iterdir()):
            self.root.rmdir()


def _need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces); run it as root")


def _inodes(paths: Iterable[str]) -> set[int]:
    """The inodes of the namespace files that still exist."""
    return {inode for path in paths if (inode := procs.ns_inode(path)) is not None}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _ppid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[1])


def _mounts_under(root: Path) -> list[str]:
    found = []
    prefix = str(root)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return found
