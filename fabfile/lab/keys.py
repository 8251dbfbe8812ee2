"""SSH keys (operator key, host keys), known_hosts, and the deploy user's sudo password hash."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import LabError


def write_ed25519(path: Path, comment: str) -> str:
    """Write an OpenSSH ed25519 private key (0600) and PATH.pub; return the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    os.chmod(path, 0o600)
    Path(f"{path}.pub").write_text(f"{public} {comment}\n")
    return public


def new_password() -> str:
    return secrets.token_urlsafe(15)


def password_hash(password: str) -> str:
    """SHA-512 crypt hash for /etc/shadow."""
    if shutil.which("openssl"):
        proc = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.startswith("$6$"):
            return proc.stdout.strip()
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError as exc:
        raise LabError("need openssl to hash the lab sudo password (apt-get install openssl)") from exc
