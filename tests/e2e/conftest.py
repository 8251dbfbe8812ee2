"""End-to-end fixtures: the real `inv` command against the session lab, from a clean slate.

``fleet`` wipes what earlier tests left on the lab hosts (containers, registry data,
installed trust, pulled images), writes a private copy of the lab inventory whose
pki/state folders live in the test's tmp dir, and runs `inv` as a user would.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO, reset_hosts

pytestmark = pytest.mark.lab

@dataclass
class Fleet:
    lab: object
    inventory: Path
    tmp: Path

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        env.update(INVOKE_INVENTORY=str(self.inventory), INVOKE_SUDO_PASSWORD=self.lab.sudo_password,
                   COLUMNS="200", TERM="dumb")
        return env

    def inv(self, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 300):
        """Run `inv ARGS` in the repo; returns CompletedProcess (text)."""
        # the venv's own `inv` script, as an operator types it (hints name the program: `inv rotate --ca`)
        return subprocess.run([str(Path(sys.executable).with_name("inv")), *args], cwd=REPO, input=input,
                              capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=timeout, check=False)

    def json(self, *args: str, **kwargs) -> tuple[int, dict]:
        proc = self.inv(*args, "--json", **kwargs)
        assert proc.stdout.strip(), f"no JSON from inv {' '.join(args)}: {proc.stderr}"
        return proc.returncode, json.loads(proc.stdout)

    def on(self, host: str, command: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        return self.lab.run(host, command, timeout=timeout, input=input)

    def edit(self, change) -> None:
        """Apply ``change(dict)`` to the inventory copy."""
        yaml = YAML()
        data = yaml.load(self.inventory.read_text())
        change(data)
        with open(self.inventory, "w") as fh:
            yaml.dump(data, fh)

    # -- what users check --------------------------------------------------------------------
    def login(self, host: str, user: str, password: str, ref: str = "registry.lab") -> subprocess.CompletedProcess:
        # the password on stdin, never in an argv: the lab hosts share the machine's PID namespace, and F13
        # samples every argv while it runs (another suite's login on the same machine would be seen)
        return self.on(host, f"docker login -u {user} --password-stdin {ref}", input=password)

    @property
    def engine(self) -> str:
        return "podman" if self.lab._state().host("registry").kind == "podman" else "docker"

    def container_id(self) -> str:
        return self.on("registry", f"{self.engine} inspect -f '{{{{.Id}}}}' registry").stdout.strip()

    def dockerd_pid(self, host: str) -> str:
        return self.on(host, "cat /run/docker.pid").stdout.strip()

    @property
    def clients(self) -> tuple[str, ...]:
        """The lab's clients (session lab: client1..3; host-kinds lab: client1, podman1, containerd1)."""
        return tuple(h.name for h in self.lab._state().hosts if h.role == "client")

    def docker_clients(self, n: int) -> list[str]:
        """``n`` Docker clients to push, pull or log in from: distinct ones while the lab has them, then the
        first again (the host-kinds lab has one, client1)."""
        hosts = [h.name for h in self.lab._state().hosts if h.role == "client" and h.kind == "docker"]
        return [hosts[i % len(hosts)] for i in range(n)]


def private_fleet(lab, tmp_path) -> Fleet:
    reset_hosts(lab)
    yaml = YAML()
    data = yaml.load(lab.inventory_path.read_text())
    data["certificate"]["pki_dir"] = str(tmp_path / "pki")
    data["state_dir"] = str(tmp_path / "state")
    inventory = tmp_path / "inventory.yaml"
    with open(inventory, "w") as fh:
        yaml.dump(data, fh)
    return Fleet(lab=lab, inventory=inventory, tmp=tmp_path)


@pytest.fixture
def fleet(lab, tmp_path) -> Fleet:
    return private_fleet(lab, tmp_path)


@pytest.fixture
def kinds(kinds_lab, tmp_path) -> Fleet:
    """The host-kinds lab (podman registry, client1 docker, podman1, containerd1), wiped, private inventory."""
    return private_fleet(kinds_lab, tmp_path)


# The registry engines a test runs on: the session lab's (docker) and the host-kinds lab's (podman).
ENGINES = ("docker", "podman")


def fleet_on(request, lab_kind: str) -> Fleet:
    """The wiped lab whose registry host runs ``lab_kind``: the session lab (docker) or the host-kinds lab
    (podman); for tests parametrized over ``lab_kind`` in ENGINES."""
    fleet = request.getfixturevalue("fleet" if lab_kind == "docker" else "kinds")
    assert fleet.engine == lab_kind
    return fleet


def user_on(fleet: Fleet) -> tuple[str, str]:
    """A registry user added the way users add one (password on stdin), pushed by the next deploy."""
    password = f"correct horse battery {secrets.token_hex(4)}"   # this run's own: F13 looks for it machine-wide
    proc = fleet.inv("users.add", "alice", "--no-deploy", input=password + "\n")
    assert proc.returncode == 0, proc.stderr
    return "alice", password


@pytest.fixture
def user(fleet) -> tuple[str, str]:
    return user_on(fleet)
