"""The registry host's desired state (pure): the container spec and the files it needs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .. import facts as F
from ..inventory import Registry
from ..pki import Material
from ..sh import join

CERT_NAME = "registry_auth.crt"
KEY_NAME = "registry_auth.key"
HTPASSWD_NAME = "registry.password"
ENV_NAME = "registry.env"   # registry.env of the inventory, 0600 root, beside auth/ (not mounted): --env-file
SPEC_LABEL = "io.registry-tls.spec"
STORAGE_MOUNT = "/var/lib/registry"
LOCK_STALE_SECONDS = 3600
FAILED_INFIX = "-failed-"   # <container>-failed-<UTC time>: the latest container that failed, kept stopped
LOG_LINES = 500             # of a failed container's output, to the run log


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    port: int
    env: tuple[tuple[str, str], ...] = field(repr=False)   # values may be secrets (review L6)
    mounts: tuple[tuple[str, str, bool], ...]  # (host path, container path, read-only)
    restart_policy: str
    cert_fingerprint: str
    env_file: str | None = None       # these keys come from this file (--env-file): their values are never argv
    file_keys: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        body = json.dumps(
            {"image": self.image, "port": self.port, "env": self.env, "mounts": self.mounts,
             "restart": self.restart_policy, "cert": self.cert_fingerprint},
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def run_command(self, engine: str) -> str:
        args = [engine, "run", "-d", "--name", self.name, f"--restart={self.restart_policy}",
                "-p", f"{self.port}:{self.port}"]
        for src, dst, ro in self.mounts:
            args += ["-v", f"{src}:{dst}{':ro' if ro else ''}"]
        for key, value in self.env:
            if key not in self.file_keys:
                args += ["-e", f"{key}={value}"]
        if self.env_file:
            args += ["--env-file", self.env_file]
        args += ["--label", f"{SPEC_LABEL}={self.digest}", self.image]
        return join(args)

    def differences(self, have: F.ContainerFact) -> list[str]:
        """The settings in which the running container is not this spec, by key (empty: it is).

        Environment variables are named, never shown: a value may be a secret.
        """
        diffs = []
        ours = have.labels.get(SPEC_LABEL)
        if ours is None:
            diffs.append("container was not created by registry-tls")
        keys = dict(self.env)
        diffs += [f"env {k}" for k, v in self.env if have.env.get(k) != v]
        diffs += [f"env {k} (removed)" for k in have.env if k.startswith("REGISTRY_") and k not in keys]
        for src, dst, _ in self.mounts:
            kind, source = have.volume_sources.get(dst, ("", ""))
            if dst == STORAGE_MOUNT and kind != "bind":
                diffs.append(f"{dst}: {kind or 'no'} volume -> bind {src}")
            elif dst == "/data/certs" and ours is not None and source != src:
                diffs.append("certificate")
            elif kind and source != src:
                diffs.append(f"mount {dst}: {source} -> {src}")
        if have.restart_policy != self.restart_policy:
            diffs.append(f"restart policy: {have.restart_policy!r} -> {self.restart_policy!r}")
        if f"{self.port}/tcp->{self.port}" not in have.ports:
            diffs.append(f"port mapping -> {self.port}:{self.port}")
        if ours is not None and ours != self.digest and not diffs:
            diffs.append("configuration changed")
        return list(dict.fromkeys(diffs))


@dataclass(frozen=True)
class Desired:
    registry: Registry
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    htpasswd: bytes = field(repr=False)
    fingerprint: str

    @property
    def cert_dir_name(self) -> str:
        return ".certs-" + self.fingerprint.replace(":", "").lower()[:16]

    @property
    def cert_dir(self) -> str:
        return f"{self.registry.data_dir}/{self.cert_dir_name}"

    @property
    def htpasswd_path(self) -> str:
        return f"{self.registry.data_dir}/auth/{HTPASSWD_NAME}"

    @property
    def env_path(self) -> str:
        return f"{self.registry.data_dir}/{ENV_NAME}"

    @property
    def env_file(self) -> bytes:
        """registry.env as an env file (one KEY=VALUE a line; values have no control characters)."""
        return "".join(f"{k}={v}\n" for k, v in self.registry.env).encode()

    @property
    def paths(self) -> tuple[str, ...]:
        return (f"{self.cert_dir}/{CERT_NAME}", f"{self.cert_dir}/{KEY_NAME}", self.htpasswd_path, self.env_path)

    @property
    def spec(self) -> ContainerSpec:
        reg = self.registry
        env = {
            "REGISTRY_AUTH": "htpasswd",
            "REGISTRY_AUTH_HTPASSWD_REALM": reg.realm,
            "REGISTRY_AUTH_HTPASSWD_PATH": f"/data/auth/{HTPASSWD_NAME}",
            "REGISTRY_HTTP_ADDR": f"0.0.0.0:{reg.port}",
            "REGISTRY_HTTP_TLS_CERTIFICATE": f"/data/certs/{CERT_NAME}",
            "REGISTRY_HTTP_TLS_KEY": f"/data/certs/{KEY_NAME}",
            "REGISTRY_HTTP_TLS_MINIMUMTLS": reg.minimum_tls,
            **dict(reg.env),
        }
        return ContainerSpec(
            name=reg.container, image=reg.image, port=reg.port,
            env=tuple(env.items()),
            mounts=((self.cert_dir, "/data/certs", True),  # the versioned folder: a rollback never sees new files
                    (f"{reg.data_dir}/auth", "/data/auth", True),
                    (f"{reg.data_dir}/storage", STORAGE_MOUNT, False)),
            restart_policy=reg.restart_policy, cert_fingerprint=self.fingerprint,
            env_file=self.env_path if reg.env else None, file_keys=tuple(k for k, _ in reg.env),
        )


def desired(registry: Registry, material: Material, htpasswd: bytes) -> Desired:
    return Desired(registry=registry, cert_pem=material.cert_pem, key_pem=material.key_pem,
                   htpasswd=htpasswd, fingerprint=material.fingerprint)
