"""Local images (no pulls): registry:2 from Debian's docker-registry binary, and lab/hello:1."""
from __future__ import annotations

import io
import re
import subprocess
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import LabError

REGISTRY_IMAGE = "registry:2"
HELLO_IMAGE = "lab/hello:1"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")

# Upstream distribution's default config (cmd/registry/config-dev.yml as shipped in registry:2),
# not Debian's /etc/docker/registry/config.yml (other root dir, htpasswd auth).
REGISTRY_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

REGISTRY_CHANGES = ['ENTRYPOINT ["registry"]', 'CMD ["serve","/etc/docker/registry/config.yml"]',
                    "VOLUME /var/lib/registry", "EXPOSE 5000", "ENV PATH=/bin"]


def shared_libraries(binary: Path) -> list[Path]:
    """The libc/loader paths `ldd` reports for binary (whatever the architecture)."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"ldd {binary} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def _dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
    tar.addfile(info)


def _file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def build_registry_tar(path: Path) -> Path:
    if not REGISTRY_BINARY.exists():
        raise LabError(f"{REGISTRY_BINARY} not found; apt-get install docker-registry")
    seen: set[str] = set()
    with tarfile.open(path, "w") as tar:
        def mkdirs(name: str, mode: int = 0o755) -> None:
            parts = name.split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    _dir(tar, d, mode if i == len(parts) else 0o755)
        for d, mode in (("bin", 0o755), ("tmp", 0o1777), ("var/lib/registry", 0o755),
                        ("etc/docker/registry", 0o755)):
            mkdirs(d, mode)
        _file(tar, "bin/registry", REGISTRY_BINARY.read_bytes(), 0o755)
        for lib in shared_libraries(REGISTRY_BINARY):
            name = str(lib).lstrip("/")
            mkdirs(name.rsplit("/", 1)[0])
            _file(tar, name, lib.resolve().read_bytes(), 0o755)
        _file(tar, "etc/docker/registry/config.yml", REGISTRY_CONFIG.encode())
    return path


def build_hello_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        _file(tar, "hello.txt", b"hello from the registry-tls lab\n")
    return path


def import_image(enter: list[str], tar: Path, ref: str, changes: Sequence[str] = (), engine: str = "docker") -> None:
    """`docker import` (or `podman import`) the tar, fed on stdin, in the host `enter` leads into."""
    argv = [*enter, engine, "import"]
    for change in changes:
        argv += ["-c", change]
    argv += ["-", ref]
    with open(tar, "rb") as f:
        proc = subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise LabError(f"{engine} import {ref} failed: {proc.stderr.strip()}")
