"""The lab's plan and state file (root/state.json): hosts, addresses, names and PIDs it started."""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import LabError

REGISTRY = "registry"
FIRST_HOST = 10          # registry gets network[10], client N gets network[10 + N]
LAST_HOST = 250


@dataclass
class HostState:
    name: str
    role: str                     # 'registry' | 'client'
    address: str
    netns: str
    veth: str                     # machine-side end of the host's veth pair (peer is eth0 inside)
    docker: bool
    kind: str = "docker"             # docker (dockerd) | sshd (nothing) | podman (no daemon) | containerd
    holder_pid: int | None = None    # tini -s holding the host's mount/UTS namespaces
    holder_start: int | None = None  # its start time (guards against PID reuse)
    sshd_pid: int | None = None      # as started; status() reads the live ones from /run/*.pid
    dockerd_pid: int | None = None

    @property
    def holder(self) -> int:
        """The holder's PID, to enter the host or read its files; LabError if it was never started."""
        if self.holder_pid is None:
            raise LabError(f"lab host {self.name} has no holder process (run lab up)")
        return self.holder_pid


@dataclass
class LabState:
    prefix: str
    subnet: str
    bridge: str
    docker: bool
    hosts: list[HostState] = field(default_factory=list)
    iptables_rule: bool = False
    phase: str = "planned"        # planned -> starting -> up

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def bridge_address(self) -> str:
        return str(ipaddress.ip_network(self.subnet)[1])

    def host(self, name: str) -> HostState:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host named {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        try:
            data = json.loads(path.read_text())
            known = set(HostState.__dataclass_fields__)
            hosts = [HostState(**{k: v for k, v in h.items() if k in known}) for h in data.pop("hosts")]
            return cls(hosts=hosts, **{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            raise LabError(f"unreadable lab state {path} ({exc}); remove it and run down again") from exc


def check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9]{0,5}", prefix):
        raise LabError(f"lab prefix {prefix!r} must be 1-6 lowercase letters/digits starting with a letter")
    return prefix


KINDS = ("docker", "podman")           # what a registry host's engine may be


def plan(prefix: str, subnet: str, clients: int, docker: bool, registry_engine: str = "docker",
         podman_clients: int = 0, containerd_clients: int = 0) -> LabState:
    """Names and addresses for a registry host, `clients` client hosts (dockerd, or sshd only), then
    `podman_clients` podman hosts without dockerd (podman1...) and `containerd_clients` hosts running
    containerd only (containerd1...)."""
    check_prefix(prefix)
    if registry_engine not in KINDS:
        raise LabError(f"registry engine {registry_engine!r}: expected one of {', '.join(KINDS)}")
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise LabError(f"bad lab subnet {subnet!r}: {exc}") from exc
    if net.version != 4:
        raise LabError(f"lab subnet {subnet} must be IPv4")
    if not net.is_private or net.is_loopback:
        raise LabError(f"lab subnet {subnet} must be a private (RFC 1918) range")
    last = min(LAST_HOST, net.num_addresses - 2)
    total = clients + podman_clients + containerd_clients
    if min(clients, podman_clients, containerd_clients) < 0 or FIRST_HOST + total > last:
        raise LabError(f"{total} clients do not fit in {subnet} (at most {max(0, last - FIRST_HOST)})")
    state = LabState(prefix=prefix, subnet=str(net), bridge=f"{prefix}-br0", docker=docker)
    hosts = [(REGISTRY, "registry", f"{prefix}-reg", registry_engine)]
    hosts += [(f"client{i}", "client", f"{prefix}-c{i}", "docker" if docker else "sshd") for i in range(1, clients + 1)]
    hosts += [(f"podman{i}", "client", f"{prefix}-p{i}", "podman") for i in range(1, podman_clients + 1)]
    hosts += [(f"containerd{i}", "client", f"{prefix}-d{i}", "containerd") for i in range(1, containerd_clients + 1)]
    for n, (name, role, veth, kind) in enumerate(hosts):
        state.hosts.append(HostState(name=name, role=role, address=str(net[FIRST_HOST + n]), netns=f"{prefix}-{name}",
                                     veth=veth, docker=kind == "docker", kind=kind))
    return state
