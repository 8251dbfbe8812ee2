"""Fixtures for the lab tests (the shared session `lab` fixture is in tests/conftest.py)."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fabfile.lab import Lab  # noqa: E402
from tests.conftest import lab_unavailable  # noqa: E402


@pytest.fixture
def ssh(lab):
    """ssh(host, user='deploy') -> connected paramiko SSHClient that verifies host keys."""
    import paramiko

    clients = []

    def connect(host: str, user: str = "deploy", known_hosts: Path | None = None):
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts or lab.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        clients.append(client)
        client.connect(lab.address(host), username=user, key_filename=str(lab.ssh_key_path),
                       look_for_keys=False, allow_agent=False, timeout=5, banner_timeout=5,
                       auth_timeout=5)
        return client

    yield connect
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()


def _ssh_run(client, command: str, stdin: str | None = None, timeout: float = 60) -> tuple[int, str, str]:
    chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
    if stdin is not None:
        chan_in.write(stdin)
        chan_in.channel.shutdown_write()
    out = chan_out.read().decode()
    err = chan_err.read().decode()
    return chan_out.channel.recv_exit_status(), out, err


@pytest.fixture
def ssh_run():
    """ssh_run(client, command, stdin=None, timeout=60) -> (exit code, stdout, stderr)."""
    return _ssh_run


@pytest.fixture
def make_lab():
    """make_lab(folder, prefix) -> a Lab under the repo (skips when the lab cannot run here)."""
    def make(folder: str, prefix: str) -> Lab:
        lab = Lab(root=REPO / folder, prefix=prefix)
        reason = lab_unavailable(lab)
        if reason:
            pytest.skip(reason)
        return lab
    return make
