"""Shared fixtures: ONE lab per test session (a registry host + 3 Docker clients), used by the
lab's own tests and by the end-to-end tests. RTLS_LAB_PREFIX / RTLS_LAB_SUBNET let two
checkouts run their suites on one machine at the same time."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fabfile.lab import Lab, LabError  # noqa: E402

PREFIX = os.environ.get("RTLS_LAB_PREFIX", "rtls")
SUBNET = os.environ.get("RTLS_LAB_SUBNET", "10.213.0.0/24")
LAB_ROOT = REPO / f".lab-test-{PREFIX}"


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs root and the network-namespace lab")


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
        lab.up(clients=3, docker=True, subnet=SUBNET)
        yield lab
    finally:
        lab.down()
