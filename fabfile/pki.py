"""The operator's local key material: load it, decide whether it still fits, generate it.

Layout of ``pki_dir`` (keys 0600, written atomically):

    registry.crt   what the registry serves: the server cert (+ the CA cert in ca mode)
    registry.key   the server's private key
    ca.crt/ca.key  ca mode only: the local CA; its key never leaves this machine and is
                   optionally passphrase-encrypted (asked only when something is signed)

Clients trust the *anchor*: the self-signed cert itself, or ca.crt. Which of the
two the files hold is read from the files (``Material.mode``), so a deployment
made in another mode is recognised and moved with ``inv rotate --ca``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography import x509

from . import certs
from .errors import CertificateError, InputError
from .inventory import Certificate
from .localfs import atomic_write_all, read_optional
from .program import command
from .redact import register

PASSPHRASE_ENV = "REGISTRY_TLS_CA_PASSPHRASE"
MIN_PASSPHRASE = 12
Passphrase = Callable[[Path, bool], bytes]
File = tuple[Path, bytes, int]   # path, content, mode: written together by Pki.write


def ask_passphrase(source: Path, new: bool) -> bytes:
    """The CA key's passphrase: $REGISTRY_TLS_CA_PASSPHRASE, else a prompt (never a flag: argv is public)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            raise InputError(f"{source}: {'a new CA key is to be encrypted' if new else 'the CA key is encrypted'}; "
                             f"set {PASSPHRASE_ENV} or run on a terminal to be asked")
        try:
            value = getpass.getpass(f"{'new ' if new else ''}passphrase for {source}: ")
            if new and getpass.getpass("the same passphrase again: ") != value:
                raise InputError(f"{source}: the two passphrases differ")
        except EOFError:   # Ctrl-D: end the prompt's line, then one line of error
            sys.stderr.write("\n")
            raise InputError(f"{source}: no passphrase given") from None
    if new and len(value) < MIN_PASSPHRASE:
        raise InputError(f"{source}: the passphrase has {len(value)} characters; at least {MIN_PASSPHRASE} are required")
    register(value)
    return value.encode()


@dataclass(frozen=True)
class Material:
    """A server certificate chain, its key, and the anchor clients must trust."""

    chain: tuple[x509.Certificate, ...]
    key: certs.PrivateKey
    anchor: x509.Certificate
    mode: str = "ca"        # what the files are: "ca" (leaf + CA) or "self-signed"

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @cached_property
    def cert_pem(self) -> bytes:
        return b"".join(certs.cert_pem(c) for c in self.chain)

    @cached_property
    def key_pem(self) -> bytes:
        return certs.private_key_pem(self.key)

    @cached_property
    def anchor_pem(self) -> bytes:
        return certs.cert_pem(self.anchor)

    @cached_property
    def fingerprint(self) -> str:
        return certs.fingerprint(self.leaf)

    @cached_property
    def anchor_fingerprint(self) -> str:
        return certs.fingerprint(self.anchor)

    def __repr__(self) -> str:  # never show key material
        return f"Material(leaf={self.fingerprint[:23]}..., anchor={self.anchor_fingerprint[:23]}...)"


@dataclass(frozen=True)
class Outcome:
    material: Material
    changed: bool
    message: str


class Pki:
    """Certificate files in one folder, for one inventory's certificate section."""

    def __init__(self, cfg: Certificate, root: Path | None = None, passphrase: Passphrase = ask_passphrase):
        self.cfg = cfg
        self.root = root or cfg.pki_dir
        self.passphrase = passphrase
        self.warnings: list[str] = []  # from the last build: e.g. validity above 398 days

    @property
    def cert_path(self) -> Path:
        return self.root / "registry.crt"

    @property
    def key_path(self) -> Path:
        return self.root / "registry.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "ca.key"

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        return self.cert_path.exists() or self.key_path.exists()

    def load(self) -> Material | None:
        """The material on disk, or None when there is none. Half a pair is an error."""
        cert_data, key_data = read_optional(self.cert_path), read_optional(self.key_path)
        if cert_data is None and key_data is None:
            return None
        if cert_data is None or key_data is None:
            present, missing = (self.cert_path, self.key_path) if key_data is None else (self.key_path, self.cert_path)
            raise CertificateError(f"{missing}: missing while {present.name} exists; "
                                   f"restore it or run {command('cert.generate --force')}")
        chain = tuple(certs.load_certs(cert_data, str(self.cert_path)))
        key = certs.load_key(key_data, str(self.key_path))
        if not certs.same_public_key(chain[0], key):
            raise CertificateError(f"{self.key_path}: does not match {self.cert_path.name} "
                                   "(the registry would crash with: tls: private key does not match public key)")
        if len(chain) == 1 and chain[0].issuer == chain[0].subject:
            return Material(chain=chain, key=key, anchor=chain[0], mode="self-signed")
        ca_data = read_optional(self.ca_cert_path)
        if ca_data is None:
            raise CertificateError(f"{self.ca_cert_path}: missing ({self.cert_path.name} is signed by a CA)")
        return Material(chain=chain, key=key, anchor=certs.load_certs(ca_data, str(self.ca_cert_path))[0])

    def problems(self, material: Material, now: dt.datetime) -> list[str]:
        """Why this material cannot be served as the inventory asks (empty: fine)."""
        # a lifetime the inventory asks for (forced at generation) is not a reason to renew
        found = certs.lint(material.leaf, now, key=material.key,
                           max_days=max(certs.APPLE_MAX_DAYS, self.cfg.spec.days))
        found += certs.spec_differences(material.leaf, self.cfg.spec)
        return found

    def anchor_change(self, material: Material) -> str | None:
        """Why clients must learn a new anchor before this inventory can be served, or None.

        A new mode, or new registry names in ca mode (the CA's name constraints permit
        only the names it was made for), needs the overlap phases of ``inv rotate --ca``;
        replacing the files in place would cut every client off until it is re-trusted.
        """
        if material.mode != self.cfg.mode:
            return (f"{self.cert_path}: the files are {material.mode} while certificate.mode is {self.cfg.mode}; "
                    f"run {command('rotate --ca')} to move every client to the new anchor without a window of distrust")
        if material.mode == "ca" and certs.constraint_texts(material.anchor) is not None \
                and not certs.constraints_fit(material.anchor, self.cfg.spec.sans):
            return (f"{self.ca_cert_path}: the CA's name constraints permit only "
                    f"{', '.join(certs.constraint_texts(material.anchor) or ())}, not the names in certificate.san "
                    f"(a registry name change is a CA rotation); run {command('rotate --ca')}")
        return None

    def anchor_warnings(self, material: Material) -> list[str]:
        if material.mode == "ca" and certs.constraint_texts(material.anchor) is None:
            return [(f"{self.ca_cert_path} has no name constraints: its key can sign for any name; "
                    f"{command('rotate --ca')} replaces it with a CA limited to the registry's names")]
        return []

    # ------------------------------------------------------------------ writing

    def generate(self, now: dt.datetime, *, force: bool = False, new_ca: bool = False) -> Material:
        """Make and write new material. Refuses to overwrite without ``force``."""
        if self.exists() and not force:
            raise InputError(f"{self.cert_path}: exists; pass --force to replace it "
                             f"(clients that trust the old one need {command('deploy')} or {command('rotate')})")
        material, ca_files = self._build(now, force=force, new_ca=new_ca, write_ca=True)
        self.write(material, ca_files)
        return material

    def build(self, now: dt.datetime, *, force: bool = False, new_ca: bool = False) -> Material:
        """New material in memory (a dry run plans with it; ``generate`` writes it)."""
        return self._build(now, force=force, new_ca=new_ca, write_ca=False)[0]

    def _build(self, now: dt.datetime, *, force: bool, new_ca: bool, write_ca: bool) -> tuple[Material, list[File]]:
        """New material, and the files of a new CA to write with it (``write_ca``: asks its passphrase)."""
        self.warnings = certs.validity_warnings(self.cfg.spec.days, force=force)
        spec = self.cfg.spec
        key = certs.generate_key(spec.key_type)
        ca_files: list[File] = []
        if self.cfg.mode == "self-signed":
            leaf = certs.build_self_signed(spec, key, now)
            material = Material(chain=(leaf,), key=key, anchor=leaf, mode="self-signed")
        else:
            ca_cert, ca_key, ca_files = self._ca(now, new=new_ca, write=write_ca)
            leaf = certs.build_leaf(spec, key, ca_cert, ca_key, now)
            material = Material(chain=(leaf, ca_cert), key=key, anchor=ca_cert)
        problems = certs.lint(leaf, now, key=key, max_days=None if force else certs.APPLE_MAX_DAYS)
        if problems:  # cannot happen for our own builder; a guard against regressions
            raise CertificateError(f"generated certificate is unusable: {problems[0]}")
        return material, ca_files

    def write(self, material: Material, ca_files: Sequence[File] = ()) -> None:
        """The key, the certificate (and a new CA's files) switch together: each is written to a temp file
        first, then all are renamed with SIGINT/SIGTERM held, so an interrupt leaves the old set or the new
        one, never a new key beside the old certificate (a crash in between is a mismatch ``load`` names)."""
        atomic_write_all([*ca_files, (self.key_path, material.key_pem, 0o600),
                          (self.cert_path, material.cert_pem, 0o644)])

    def _ca(self, now: dt.datetime, *, new: bool,
            write: bool) -> tuple[x509.Certificate, certs.PrivateKey, list[File]]:
        """The CA to sign with: the one on disk, else a new one (with its files to write, when ``write``)."""
        cert_data, key_data = read_optional(self.ca_cert_path), read_optional(self.ca_key_path)
        if cert_data and key_data and not new:
            ca_cert = certs.load_certs(cert_data, str(self.ca_cert_path))[0]
            if certs.constraint_texts(ca_cert) is not None and not certs.constraints_fit(ca_cert, self.cfg.spec.sans):
                raise CertificateError(f"{self.ca_cert_path}: its name constraints do not permit the names in "
                                       f"certificate.san; a registry name change needs a new CA: {command('rotate --ca')}")
            passphrase = self.passphrase(self.ca_key_path, False) if certs.key_is_encrypted(key_data) else None
            return ca_cert, certs.load_key(key_data, str(self.ca_key_path), passphrase), []
        ca_key = certs.generate_key(self.cfg.spec.key_type)
        ca_cert = certs.build_ca(ca_subject(self.cfg.spec), ca_key, now, self.cfg.ca_days, self.cfg.spec.sans)
        if not write:
            return ca_cert, ca_key, []
        passphrase = self.passphrase(self.ca_key_path, True) if self.cfg.encrypt_ca_key else None
        return ca_cert, ca_key, [(self.ca_key_path, certs.private_key_pem(ca_key, passphrase), 0o600),
                                 (self.ca_cert_path, certs.cert_pem(ca_cert), 0o644)]

    # ------------------------------------------------------------------ deciding

    def ensure(self, now: dt.datetime, *, renew: bool = False) -> Outcome:
        """Material for a deploy: reuse what fits the inventory, create what is missing.

        An existing certificate that no longer fits (SANs, subject, expired) is
        replaced only with ``renew``; otherwise the user is told why and how.
        """
        material = self.load()
        if material is None:
            material = self.generate(now)
            return Outcome(material, True, f"generated {self.cert_path} ({self.cfg.spec.key_type})")
        change = self.anchor_change(material)
        if change:
            raise InputError(change)
        self.warnings = self.anchor_warnings(material)
        problems = self.problems(material, now)
        if problems and not renew:
            raise InputError(f"{self.cert_path}: {problems[0]}; run with --renew to issue a new "
                             f"certificate, or {command('rotate')} to switch clients without a window of distrust")
        if problems:
            certs.validity_warnings(self.cfg.spec.days)  # --renew replaces files; it does not allow >825 days
            material = self.generate(now, force=True)
            return Outcome(material, True, f"renewed {self.cert_path}: {problems[0]}")
        days = certs.describe(material.leaf).days_left(now)
        return Outcome(material, False, f"{self.cert_path} is valid and matches the inventory ({days} days left)")


def ca_subject(spec: certs.CertSpec) -> x509.Name:
    """The CA's subject: the server's, with ' CA' appended to the CN so issuer != subject."""
    fields = dict(spec.subject)
    fields["CN"] = (fields.get("CN") or "registry-tls")[:60] + " CA"
    return certs.build_name(tuple(fields.items()))
