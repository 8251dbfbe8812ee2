"""What a registry change changes, by identity. Pure.

A plan says *that* the certificate, the users or the container change; this
says *what*: the certificate's SHA-256 fingerprint old -> new and the SANs
it gains or loses, the users added, removed or given a new password (by
name), and the container settings that differ (by key: an environment value
may be a secret, so values are never shown).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from cryptography import x509

from .. import certs


@dataclass(frozen=True)
class CertChange:
    old: str | None          # fingerprint of the certificate the registry host has now (None: none, unreadable)
    new: str | None          # None: a certificate the run will make (a dry run cannot know its fingerprint)
    sans_added: tuple[str, ...] = ()
    sans_removed: tuple[str, ...] = ()

    def describe(self) -> str:
        line = f"certificate {self.old or 'none'} -> {self.new or 'a new one made by the run'}"
        sans = [f"+{s}" for s in self.sans_added] + [f"-{s}" for s in self.sans_removed]
        return line + (f" (SANs {' '.join(sans)})" if sans else "")


@dataclass(frozen=True)
class UserChange:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    password: tuple[str, ...] = ()   # same name, new hash

    def describe(self) -> str:
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("add", self.added), ("remove", self.removed), ("new password for", self.password)) if names]
        return "users: " + "; ".join(parts)


@dataclass(frozen=True)
class Identity:
    certificate: CertChange | None = None
    users: UserChange | None = None
    container: tuple[str, ...] = ()   # setting keys that differ, e.g. 'env REGISTRY_STORAGE'

    def lines(self) -> list[str]:
        return [c.describe() for c in (self.certificate, self.users) if c is not None]

    def to_json(self) -> dict:
        return {"certificate": _plain(self.certificate), "users": _plain(self.users), "container": list(self.container)}


def _plain(change: CertChange | UserChange | None) -> dict | None:
    """A change as JSON-ready data (lists, not tuples), or None."""
    if change is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(change).items()}


def cert_change(old_pem: bytes | None, new_pem: bytes) -> CertChange | None:
    """Fingerprints and SAN differences between the leaf certificates of two PEM files; None if the same."""
    new = x509.load_pem_x509_certificate(new_pem)
    old = _leaf(old_pem)
    if old is not None and certs.fingerprint(old) == certs.fingerprint(new):
        return None
    before, after = (certs.cert_sans(old) if old is not None else ()), certs.cert_sans(new)
    return CertChange(old=certs.fingerprint(old) if old is not None else None, new=certs.fingerprint(new),
                      sans_added=tuple(s for s in after if s not in before),
                      sans_removed=tuple(s for s in before if s not in after))


def _leaf(pem: bytes | None) -> x509.Certificate | None:
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def user_digests(entries: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """name -> first 16 hex digits of sha256(hash): compares passwords without carrying any hash.

    The remote side computes the same (``facts.registry_script``): sha256 of
    the text after the first ':' of each htpasswd line.
    """
    return {name: hashlib.sha256(hashed.encode()).hexdigest()[:16] for name, hashed in entries}


def user_change(old: dict[str, str] | None, new: dict[str, str]) -> UserChange | None:
    """Names added, removed and re-hashed between two ``user_digests`` (old None: no file yet); None if equal."""
    old = old or {}
    if old == new:
        return None
    return UserChange(added=tuple(n for n in new if n not in old),
                      removed=tuple(n for n in old if n not in new),
                      password=tuple(n for n in new if n in old and old[n] != new[n]))
