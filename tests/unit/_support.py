"""Helpers shared by the unit tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from fabfile import certs
from fabfile.inventory import Certificate, Client, Registry, SshTarget

HERE = Path(__file__).parent
CASES = HERE / "cases"
REPO = HERE.parents[1]
EXAMPLE_INVENTORY = REPO / "inventory.yaml"

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)

# The names every self-signed/CA test certificate carries: two DNS names, IPv4 and IPv6 loopback.
TEST_SANS = ("DNS:registry.test", "DNS:localhost", "IP:127.0.0.1", "IP:::1")


def make_spec(sans=TEST_SANS, *, days: int = 365, key_type: str = "ecdsa-p256",
              subject=(("O", "registry-tls tests"), ("CN", "registry.test"))) -> certs.CertSpec:
    return certs.CertSpec(subject=tuple(subject), sans=tuple(certs.parse_san(s) for s in sans),
                          days=days, key_type=key_type)


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw, check=False)


def root_owned_env(folder: Path, **unsafe: str) -> dict[str, str]:
    """An environment whose ``stat`` answers the registry lock's path check (``stat -c '%u %a %U %F'``) as a
    registry host would: every path root's and mode 755 (unit tests run as nobody under a world-writable
    /tmp), except the paths given in ``unsafe`` ('path' -> 'uid mode user'); any other question goes to the real
    stat. The fake lives in ``folder``/bin, first on PATH."""
    real = shutil.which("stat")
    table = folder / "stat.table"
    table.write_text("".join(f"{path}\t{answer}\n" for path, answer in unsafe.items()))
    fake = folder / "bin" / "stat"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(f"""#!/bin/sh
if [ "$1" = -c ] && [ "$2" = '%u %a %U %F' ] && [ "$3" = -- ]; then
  kind=$({real} -c %F -- "$4") || exit 1
  answer=$(awk -F '\t' -v p="$4" '$1 == p {{ print $2 }}' {table})
  echo "${{answer:-0 755 root}} $kind"
  exit 0
fi
exec {real} "$@"
""")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


# --------------------------------------------------------------------------- inventory objects


def make_registry(**overrides) -> Registry:
    base = Registry(
        ssh=SshTarget(name="reg.example", address="192.0.2.10", user="root"),
        host="reg.example", port=443, data_dir="/var/lib/docker-registry", container="registry",
        image="registry:2", engine="docker", realm="Registry Realm", restart_policy="always",
        minimum_tls="tls1.2", bcrypt_cost=10, env=(("REGISTRY_STORAGE_DELETE_ENABLED", "true"),),
        health_timeout=30,
    )
    return replace(base, **overrides)


def make_client(name: str = "c1", **overrides) -> Client:
    base = Client(
        ssh=SshTarget(name=name, address="192.0.2.20"), groups=(), trust=("docker",), restart="auto",
        restart_command="systemctl restart docker", registry_names=("reg.example",), verify=True,
    )
    return replace(base, **overrides)


def make_cert_cfg(root: Path, spec: certs.CertSpec | None = None, *, mode: str = "self-signed") -> Certificate:
    return Certificate(spec=spec or make_spec(), mode=mode, pki_dir=root, ca_days=3650, renew_before_days=30)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_line(path: str, content: bytes, mode: int = 0o644, owner: str = "root", mtime: int = 1_700_000_000) -> str:
    """One ``F`` line of a probe, as the remote ``f`` shell function prints it."""
    return f"F {sha256(content)} {mode:o} {owner} {mtime} {path}"


def load_case(name: str):
    path = CASES / name
    return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()
