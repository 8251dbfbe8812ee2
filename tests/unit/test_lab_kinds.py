"""The lab's host kinds (issue 13): a podman registry host, podman and containerd-only clients, and the
inventory the tool gets for them. Pure: no namespaces."""
from __future__ import annotations

from pathlib import Path

import pytest

from fabfile.lab import inventory
from fabfile.lab.errors import LabError
from fabfile.lab.hosts import holder_script
from fabfile.lab.state import plan


def test_plan_names_kinds_and_addresses():
    state = plan("t", "10.99.0.0/25", 1, True, "podman", podman_clients=1, containerd_clients=1)
    assert [(h.name, h.kind, h.docker, h.address, h.veth) for h in state.hosts] == [
        ("registry", "podman", False, "10.99.0.10", "t-reg"), ("client1", "docker", True, "10.99.0.11", "t-c1"),
        ("podman1", "podman", False, "10.99.0.12", "t-p1"), ("containerd1", "containerd", False, "10.99.0.13", "t-d1")]
    assert [h.kind for h in plan("t", "10.99.0.0/25", 2, False).hosts] == ["docker", "sshd", "sshd"]
    with pytest.raises(LabError, match="registry engine 'cri-o': expected one of docker, podman"):
        plan("t", "10.99.0.0/25", 1, True, "cri-o")


def test_inventory_gives_each_kind_its_engine_or_runtime():
    state = plan("t", "10.99.0.0/25", 1, True, "podman", podman_clients=1, containerd_clients=1)
    inv = inventory.build(state, Path("/lab"))
    assert inv["registry"]["engine"] == "podman"
    hosts = inv["clients"]["hosts"]
    assert "trust" not in hosts["client1"] and inv["clients"]["defaults"]["trust"] == ["docker"]
    assert hosts["podman1"]["trust"] == ["podman"] and hosts["containerd1"]["trust"] == ["containerd"]
    assert "engine" not in inventory.build(plan("t", "10.99.0.0/25", 1, True), Path("/lab"))["registry"]


def test_only_containerd_hosts_start_containerd_and_only_docker_hosts_dockerd():
    state = plan("t", "10.99.0.0/25", 1, True, "podman", podman_clients=1, containerd_clients=1)
    scripts = {h.name: holder_script(Path("/lab"), state, h) for h in state.hosts}
    assert {n for n, s in scripts.items() if "restart-dockerd" in s} == {"client1"}
    assert {n for n, s in scripts.items() if "setsid containerd " in s} == {"containerd1"}
