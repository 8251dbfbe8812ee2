"""root/inventory.yaml for the registry-tls tool (its strict schema) and root/ssh/known_hosts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from .hosts import DEPLOY
from .state import LabState


def _flow(value: dict[str, Any] | list[Any]) -> CommentedMap | CommentedSeq:
    node = CommentedMap(value) if isinstance(value, dict) else CommentedSeq(value)
    node.fa.set_flow_style()
    return node


def build(state: LabState, root: Path) -> CommentedMap:
    key = str(root / "ssh" / "id_ed25519")
    restart = str(root / "bin" / "restart-dockerd")
    reg = state.host("registry")
    inv = CommentedMap()
    inv["registry"] = CommentedMap([
        ("host", "registry.lab"), ("address", reg.address), ("port", 443),
        ("ssh_user", DEPLOY), ("ssh_key", key), ("data_dir", "/var/lib/docker-registry"),
        ("container", "registry"), ("image", DoubleQuotedScalarString("registry:2"))])
    if reg.kind == "podman":
        inv["registry"]["engine"] = "podman"
    inv["certificate"] = CommentedMap([
        ("subject", _flow({"CN": "registry.lab", "O": "registry-tls lab"})),
        ("san", _flow(["DNS:registry.lab", f"IP:{reg.address}"])),
        ("key_type", "ecdsa-p256"), ("days", 365), ("pki_dir", "pki")])
    inv["ssh"] = CommentedMap([("known_hosts", str(root / "ssh" / "known_hosts")),
                               ("connect_timeout", 5)])
    hosts = CommentedMap()
    for h in state.hosts:
        if h.role == "client":
            hosts[h.name] = _flow({"address": h.address, "groups": _flow(["lab"]),
                                   "restart_command": f"{restart} {h.name}"})
            if h.kind in ("podman", "containerd"):    # the runtime that host has, instead of docker
                hosts[h.name]["trust"] = _flow([h.kind])
    inv["clients"] = CommentedMap([
        ("defaults", CommentedMap([("ssh_user", DEPLOY), ("ssh_key", key),
                                   ("trust", _flow(["docker"])), ("restart", "auto")])),
        ("groups", CommentedMap([("lab", CommentedMap())])),
        ("hosts", hosts)])
    return inv


def write(state: LabState, root: Path, path: Path) -> Path:
    yaml = YAML()
    yaml.width = 200
    with open(path, "w") as f:
        f.write("# registry-tls lab inventory, written by `inv lab.up` (fabfile/lab); do not edit.\n")
        yaml.dump(build(state, root), f)
    return path


def write_known_hosts(state: LabState, host_keys: dict[str, str], path: Path) -> Path:
    lines = [f"{h.address},{h.name}.lab,{h.name} {host_keys[h.name]}" for h in state.hosts]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path
