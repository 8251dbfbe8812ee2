"""Shared fixtures: ONE lab per test session (a registry host + 3 Docker clients), used by the
lab's own tests and by the end-to-end tests. RTLS_LAB_PREFIX / RTLS_LAB_SUBNET let two
checkouts run their suites on one machine at the same time."""
from __future__ import annotations

import ipaddress
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fabfile.lab import Lab, LabError  # noqa: E402

# A suite started in the background (nohup, `cmd &` in a script) inherits SIGINT ignored, and so would
# every `inv` it starts: the interrupt tests (F24) need Ctrl-C to mean Ctrl-C, here and in the children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PREFIX = os.environ.get("RTLS_LAB_PREFIX", "rtls")
SUBNET = os.environ.get("RTLS_LAB_SUBNET", "10.213.0.0/24")
LAB_ROOT = REPO / f".lab-test-{PREFIX}"
# The session lab takes the lower half of SUBNET, the host-kinds lab (podman registry, podman and
# containerd clients) the upper half, so both fit in the one subnet a checkout is given.
MAIN_SUBNET, KINDS_SUBNET = (str(n) for n in ipaddress.ip_network(SUBNET).subnets(prefixlen_diff=1))


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs root and the network-namespace lab")


# On CI (.ci/run sets RTLS_CI=1) everything the tests need is installed by script/setup, so a test that
# skips for want of the lab or a validator is a broken setup, not a pass: such a skip fails there.
REQUIRED_ON_CI = ("lab unavailable", "not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (os.environ.get("RTLS_CI") and report.skipped and not hasattr(report, "wasxfail")):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(words in reason for words in REQUIRED_ON_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where script/setup installs everything: {reason}"


def lab_unavailable(lab: Lab) -> str | None:
    try:
        lab.preflight()
    except LabError as exc:
        return f"lab unavailable: {exc}"
    return None


@pytest.fixture(scope="session")
def lab():
    lab = Lab(root=LAB_ROOT, prefix=PREFIX)
    reason = lab_unavailable(lab)
    if reason:
        pytest.skip(reason)
    try:
        lab.up(clients=3, docker=True, subnet=MAIN_SUBNET)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def kinds_lab():
    """One more lab, brought up once: a registry host whose engine is podman (no dockerd), a Docker
    client, a client with podman and no dockerd (podman1), a client with containerd only (containerd1)."""
    lab = Lab(root=REPO / f".lab-test-{PREFIX}k", prefix=f"{PREFIX}k"[:6])
    try:
        lab.preflight(("podman", "containerd"))
    except LabError as exc:
        pytest.skip(f"lab unavailable: {exc}")
    try:
        lab.up(clients=1, docker=True, subnet=KINDS_SUBNET, registry_engine="podman", podman_clients=1,
               containerd_clients=1)
        yield lab
    finally:
        lab.down()


RESET_REGISTRY = """
ids=$(docker ps -aq); [ -z "$ids" ] || docker rm -f $ids >/dev/null
docker volume prune -f >/dev/null 2>&1
rm -rf /var/lib/docker-registry && mkdir -p /var/lib/docker-registry
"""
RESET_PODMAN_REGISTRY = """
podman rm -f -a -t 1 >/dev/null 2>&1
podman volume prune -f >/dev/null 2>&1
rm -rf /var/lib/docker-registry && mkdir -p /var/lib/docker-registry
"""
RESET_CLIENT = """
ids=$(docker ps -aq 2>/dev/null); [ -z "$ids" ] || docker rm -f $ids >/dev/null
rm -rf /etc/docker/certs.d /etc/containerd/certs.d /etc/containers/certs.d /etc/buildkit /root/.docker
if ls /usr/local/share/ca-certificates/registry-tls-* >/dev/null 2>&1; then
  rm -f /usr/local/share/ca-certificates/registry-tls-*; update-ca-certificates --fresh >/dev/null 2>&1
fi
imgs=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '^lab/'); [ -z "$imgs" ] || docker rmi -f $imgs >/dev/null
iptables -F INPUT 2>/dev/null || true
"""


def reset_hosts(lab) -> None:
    """Wipe what earlier tests left on the lab hosts: containers, registry data, installed trust,
    pulled images, firewall rules; restart a dockerd a test stopped. Hosts in parallel."""
    kinds = {h.name: h.kind for h in lab._state().hosts}

    def reset(host: str):
        script = RESET_REGISTRY if host == "registry" else RESET_CLIENT
        if kinds[host] == "podman" and host == "registry":
            script = RESET_PODMAN_REGISTRY
        if host != "registry" and kinds[host] == "docker":
            script += f"\ndocker info >/dev/null 2>&1 || {lab.restart_dockerd_path} {host} >/dev/null"
        return host, lab.run(host, script, timeout=120)

    with ThreadPoolExecutor(len(lab.hosts)) as pool:
        for host, result in pool.map(reset, lab.hosts):
            assert result.returncode == 0, f"reset {host}: {result.stderr}"
