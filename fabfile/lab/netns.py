"""Network plumbing: lab bridge, per-host network namespaces and veths, route safety, iptables rule."""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from typing import Any

from .errors import LabError
from .state import LabState


def _ip(*args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        raise LabError(f"ip {' '.join(args[:3])} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def _json_docs(text: str) -> list[Any]:
    """Decode the concatenated JSON documents that `ip -j -batch` prints."""
    dec, i = json.JSONDecoder(), 0
    docs: list[Any] = []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return docs
        doc, i = dec.raw_decode(text, i)
        docs.append(doc)


def netns_names(prefix: str) -> list[str]:
    out = _ip("-j", "netns", "list", check=False).strip()
    names = [n["name"] for n in json.loads(out)] if out else []
    return [n for n in names if n.startswith(prefix + "-")]


def link_names(prefix: str) -> list[str]:
    out = _ip("-j", "link", "show").strip()
    return [link["ifname"] for link in json.loads(out) if link["ifname"].startswith(prefix + "-")]


def check_subnet_free(subnet: str, bridge: str) -> None:
    """Refuse a subnet that overlaps a route or an address the lab does not own."""
    net = ipaddress.ip_network(subnet)
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst == "default" or route.get("dev") == bridge or route.get("type") in ("broadcast", "local"):
            continue
        try:
            other = ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)
        except ValueError:
            continue
        if other.overlaps(net):
            raise LabError(f"lab subnet {subnet} overlaps route {dst} via {route.get('dev', '?')}; "
                           f"pick another subnet")
    for link in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        if link["ifname"] == bridge:
            continue
        for a in link.get("addr_info", []):
            if ipaddress.ip_address(a["local"]) in net:
                raise LabError(f"lab subnet {subnet} contains address {a['local']} of {link['ifname']}; "
                               f"pick another subnet")


def check_routes(addresses: list[str], bridge: str) -> None:
    """Every lab address must route through the lab bridge, or the lab sends nothing."""
    if not addresses:
        return
    out = _ip("-j", "-batch", "-", input="".join(f"route get {a}\n" for a in addresses), check=False)
    try:
        routes = [doc[0] if doc else {} for doc in _json_docs(out)]
    except ValueError:
        routes = []
    devs = {r.get("dst"): r.get("dev") for r in routes}
    for addr in addresses:
        if devs.get(addr) != bridge:
            raise LabError(f"lab address {addr} routes via {devs.get(addr) or 'nothing'}, not the lab "
                           f"bridge {bridge}; is the lab up? (run lab down, then up)")


def bridge_owner(bridge: str) -> str | None:
    """The lab root that made this bridge (kept in its alias), None if no such bridge/alias."""
    out = _ip("-j", "link", "show", "dev", bridge, check=False).strip()
    try:
        return json.loads(out)[0].get("ifalias") if out else None
    except (ValueError, IndexError):
        return None


def create(state: LabState, owner: str) -> None:
    """Bridge with .1 (alias = owner, the lab root), then per host: netns, veth (machine end on
    the bridge, peer 'eth0' inside)."""
    cmds = [f"link add {state.bridge} type bridge",
            f"link set {state.bridge} alias {owner}",
            f"addr add {state.bridge_address}/{state.prefixlen} dev {state.bridge}",
            f"link set {state.bridge} up"]
    for h in state.hosts:
        cmds += [f"netns add {h.netns}",
                 f"link add {h.veth} type veth peer name eth0 netns {h.netns}",
                 f"link set {h.veth} master {state.bridge} up"]
    _ip("-batch", "-", input="\n".join(cmds) + "\n")


def destroy(prefix: str) -> None:
    """Delete every netns and link named PREFIX-*. Namespaces go first: the kernel then drops
    their veths in one batch, much faster than deleting veths one by one."""
    names = netns_names(prefix)
    if names:
        _ip("-force", "-batch", "-", input="".join(f"netns del {n}\n" for n in names), check=False)
    deadline = time.monotonic() + 10
    while any(not n.endswith("-br0") for n in link_names(prefix)) and time.monotonic() < deadline:
        time.sleep(0.01)
    links = sorted(link_names(prefix), key=lambda n: n.endswith("-br0"))   # bridge last
    if links:
        _ip("-force", "-batch", "-", input="".join(f"link del {n}\n" for n in links), check=False)
    left = link_names(prefix) + netns_names(prefix)
    if left:
        raise LabError(f"could not remove lab network objects: {', '.join(left)}")


def _iptables(*args: str) -> int:
    if not shutil.which("iptables"):
        return 127
    return subprocess.run(["iptables", "-w", *args], capture_output=True, check=False).returncode


def add_forward_rule(bridge: str) -> bool:
    """Accept bridged lab traffic even if the machine's FORWARD policy is DROP (br_netfilter)."""
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    if _iptables("-C", *rule) == 0:
        return True
    return _iptables("-I", *rule) == 0


def remove_forward_rules(bridge: str) -> None:
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    for _ in range(20):
        if _iptables("-C", *rule) != 0 or _iptables("-D", *rule) != 0:
            return
