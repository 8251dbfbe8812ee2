"""Certificates, built and checked with ``cryptography``. Pure: no files, no network.

Profiles (see docs/CERT-PROFILE.md):

- self-signed: one certificate that is both the registry's server certificate
  and the clients' trust anchor, like the seed's ``openssl req -x509``
  (CA:TRUE critical, pathlen 0, SKI + AKI) plus what Go, OpenSSL strict,
  Python 3.13 and Apple need: keyUsage, EKU serverAuth, random serial,
  notBefore backdated five minutes.
- ca (the default): a local root (keyCertSign, cRLSign) that signs a
  short-lived leaf (CA:FALSE, serverAuth, AKI = root SKI). Clients trust only
  the root.

Every anchor (the self-signed certificate, the root) carries critical Name
Constraints that permit only the registry's own names (``name_constraints``):
a certificate its key signs for any other name fails in Go, OpenSSL and
cryptography, so a stolen anchor key cannot impersonate other sites.

``now`` is always injected so tests and rotation planning are deterministic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CertificateError

KEY_TYPES = ("rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384", "ed25519")
BACKDATE = dt.timedelta(minutes=5)
APPLE_MAX_DAYS = 825
CAB_MAX_DAYS = 398

SUBJECT_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}
SUBJECT_ORDER = tuple(SUBJECT_OIDS)

_HOSTLIKE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


# --------------------------------------------------------------------------- names


def parse_san(entry: str, *, allow_wildcard: bool = False) -> x509.GeneralName:
    """Turn ``DNS:name``, ``IP:addr`` or a bare name/IP into a GeneralName.

    IPs only ever become iPAddress entries: Go never matches an IP against a
    dNSName. Names are lower-cased A-labels; anything else is refused with the
    offending value in the message.
    """
    text = entry.strip()
    kind, sep, value = text.partition(":")
    if sep and kind.upper() in ("DNS", "IP"):
        kind = kind.upper()
    else:
        kind, value = ("IP" if _looks_like_ip(text) else "DNS"), text
    if kind == "IP":
        return x509.IPAddress(parse_ip(value))
    if _looks_like_ip(value):
        raise CertificateError(f"SAN {entry!r}: an IP address must be an IP: entry, not DNS:")
    return x509.DNSName(parse_dns_name(value, allow_wildcard=allow_wildcard))


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "/" in value:
        raise CertificateError(f"IP {value!r}: a network is not an address; give one IP")
    if "%" in value:
        raise CertificateError(f"IP {value!r}: zone indexes (%iface) cannot go in a certificate")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise CertificateError(f"IP {value!r} is not a valid IPv4 or IPv6 address") from None


def parse_dns_name(value: str, *, allow_wildcard: bool = False) -> str:
    """Validate a hostname for a dNSName SAN; returns it lower-cased."""
    name = value.lower()
    if not name:
        raise CertificateError("DNS name is empty")
    if name.endswith("."):
        raise CertificateError(f"DNS name {value!r}: remove the trailing dot")
    if not name.isascii():
        hint = _a_label(name)
        raise CertificateError(
            f"DNS name {value!r} is not ASCII; use its IDNA A-label" + (f" {hint!r}" if hint else "")
        )
    if len(name) > 253:
        raise CertificateError(f"DNS name {value[:40]!r}...: longer than 253 characters")
    labels = name.split(".")
    if labels[0] == "*":
        if not allow_wildcard:
            raise CertificateError(f"DNS name {value!r}: wildcards are refused unless allow_wildcard is set")
        labels = labels[1:]
        if len(labels) < 2:
            raise CertificateError(f"DNS name {value!r}: a wildcard needs at least two labels after '*.'")
    for label in labels:
        if not _LABEL.match(label):
            raise CertificateError(
                f"DNS name {value!r}: label {label!r} must be 1-63 letters, digits or '-', "
                "not starting or ending with '-'"
            )
    return name


def _looks_like_ip(value: str) -> bool:
    core = value.split("%", 1)[0].split("/", 1)[0]
    if ":" in core:
        return True
    return bool(re.fullmatch(r"[0-9.]+", core)) and core.count(".") == 3


def _a_label(name: str) -> str | None:
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def san_text(name: x509.GeneralName) -> str:
    """The openssl-style text of a SAN entry: ``DNS:x`` or ``IP:1.2.3.4``."""
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    return f"DNS:{name.value}"


# --------------------------------------------------------------------------- name constraints

# RFC 5280 4.2.1.10: a name type with no permitted subtree is unconstrained. When the
# registry has no DNS name (or no IP), one subtree no name can satisfy closes that type:
# the reserved TLD .invalid (RFC 6761) and the unspecified addresses 0.0.0.0/32 and ::/128.
CLOSED_DNS = "registry-tls.invalid"
CLOSED_IPS = ("0.0.0.0/32", "::/128")


def name_constraints(sans: tuple[x509.GeneralName, ...]) -> x509.NameConstraints:
    """Permitted subtrees: exactly the registry's DNS names and IPs (each IP as /32 or /128).

    A DNS subtree also permits names below it (RFC 5280: "adding zero or more
    labels to the left"), the closest a constraint gets to "this name only";
    a wildcard SAN ``*.a.b`` becomes the subtree ``a.b``.
    """
    dns = list(dict.fromkeys(s.value.removeprefix("*.") for s in sans if isinstance(s, x509.DNSName)))
    ips = list(dict.fromkeys(ipaddress.ip_network(s.value) for s in sans if isinstance(s, x509.IPAddress)))
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or [CLOSED_DNS]]
    permitted += [x509.IPAddress(n) for n in ips or [ipaddress.ip_network(c) for c in CLOSED_IPS]]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def constraint_texts(cert: x509.Certificate) -> tuple[str, ...] | None:
    """``DNS:x``/``IP:net`` of a certificate's permitted subtrees; None when it has no constraints."""
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    return tuple(f"IP:{n.value}" if isinstance(n, x509.IPAddress) else f"DNS:{n.value}"
                 for n in nc.permitted_subtrees or ())


def constraints_fit(cert: x509.Certificate, sans: tuple[x509.GeneralName, ...]) -> bool:
    """Whether an anchor's name constraints are exactly the ones these SANs would give."""
    have = constraint_texts(cert)
    want = tuple(f"IP:{n.value}" if isinstance(n, x509.IPAddress) else f"DNS:{n.value}"
                 for n in name_constraints(sans).permitted_subtrees or ())
    return have is not None and sorted(have) == sorted(want)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class CertSpec:
    """What the server certificate must contain."""

    subject: tuple[tuple[str, str], ...]
    sans: tuple[x509.GeneralName, ...]
    days: int = 90
    key_type: str = "rsa-4096"

    def __post_init__(self) -> None:
        if not self.sans:
            raise CertificateError("a certificate needs at least one subjectAltName")
        if self.key_type not in KEY_TYPES:
            raise CertificateError(f"key type {self.key_type!r} is not one of {', '.join(KEY_TYPES)}")
        if self.days < 1:
            raise CertificateError(f"validity of {self.days} days: must be at least 1")

    @property
    def name(self) -> x509.Name:
        subject = self.subject
        if not any(isinstance(s, x509.DNSName) for s in self.sans):
            # With no DNS SAN, OpenSSL checks a host-like CN against the CA's DNS name constraints,
            # which for an IP-only registry permit no DNS name: the IPs live in the SAN only.
            subject = tuple((k, v) for k, v in subject if not (k == "CN" and _HOSTLIKE.fullmatch(v)))
        return build_name(subject or (("O", "registry-tls"),))

    @property
    def san_texts(self) -> tuple[str, ...]:
        return tuple(san_text(s) for s in self.sans)


def build_name(subject: tuple[tuple[str, str], ...]) -> x509.Name:
    order = {k: i for i, k in enumerate(SUBJECT_ORDER)}
    attrs = sorted(subject, key=lambda kv: order[kv[0]])
    return x509.Name([x509.NameAttribute(SUBJECT_OIDS[k], v) for k, v in attrs])


def validity_warnings(days: int, *, force: bool = False) -> list[str]:
    """Hard limit 825 days (Apple), soft limit 398 (CA/B). Raises past the hard one."""
    if days > APPLE_MAX_DAYS and not force:
        raise CertificateError(
            f"validity of {days} days: Apple clients refuse TLS certificates valid more than "
            f"{APPLE_MAX_DAYS} days; lower certificate.days or pass --force"
        )
    if days > CAB_MAX_DAYS:
        return [f"validity of {days} days is above {CAB_MAX_DAYS}: some clients warn; 365 or less is advised"]
    return []


# --------------------------------------------------------------------------- keys


def generate_key(key_type: str) -> PrivateKey:
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise CertificateError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")


def key_type_of(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """The inventory name of a key's type, for a private or public key."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, rsa.RSAPublicKey):
        return f"rsa-{pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}.get(pub.curve.name, f"ecdsa-{pub.curve.name}")
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "ed25519"
    return type(pub).__name__


def _hash_for(key: PrivateKeyTypes) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _key_usage(key: PrivateKeyTypes, *, ca: bool, server: bool) -> x509.KeyUsage:
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    return x509.KeyUsage(
        digital_signature=server,
        content_commitment=False,
        key_encipherment=server and rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca and not server,
        encipher_only=False,
        decipher_only=False,
    )


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM; encrypted (the best scheme cryptography offers) when a passphrase is given."""
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def key_is_encrypted(data: bytes) -> bool:
    return b"ENCRYPTED" in data.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in data


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- builders


def _builder(subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes, now: dt.datetime,
             not_after: dt.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def build_self_signed(spec: CertSpec, key: PrivateKey, now: dt.datetime) -> x509.Certificate:
    """Server certificate that is its own trust anchor (the seed's design, profile 3A)."""
    pub = key.public_key()
    builder = (
        _builder(spec.name, spec.name, pub, now, now + dt.timedelta(days=spec.days))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key, ca=True, server=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(spec.sans)), critical=False)
        .add_extension(name_constraints(spec.sans), critical=True)
    )
    return builder.sign(key, _hash_for(key))


def build_ca(subject: x509.Name, key: PrivateKey, now: dt.datetime, days: int,
             sans: tuple[x509.GeneralName, ...]) -> x509.Certificate:
    """A private root that only signs (profile 3B), for the registry's names only. Its key never
    leaves the operator."""
    pub = key.public_key()
    builder = (
        _builder(subject, subject, pub, now, now + dt.timedelta(days=days))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key, ca=True, server=False), critical=True)
        .add_extension(name_constraints(sans), critical=True)
    )
    return builder.sign(key, _hash_for(key))


def build_leaf(
    spec: CertSpec, key: PrivateKey, ca_cert: x509.Certificate, ca_key: PrivateKey, now: dt.datetime
) -> x509.Certificate:
    """Server certificate signed by the local CA; AKI = the CA's SKI (Python 3.13 strict)."""
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + dt.timedelta(days=spec.days), ca_cert.not_valid_after_utc)
    builder = (
        _builder(spec.name, ca_cert.subject, key.public_key(), now, not_after)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key, ca=False, server=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(spec.sans)), critical=False)
    )
    return builder.sign(ca_key, _hash_for(ca_key))



# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CertInfo:
    """What ``cert.show`` and ``status`` print about one certificate."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int
    sha256: str
    key_type: str
    is_ca: bool
    signature: str

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

    def as_dict(self, now: dt.datetime) -> dict:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(now),
            "serial": f"{self.serial:x}",
            "sha256": self.sha256,
            "key_type": self.key_type,
            "ca": self.is_ca,
        }


def load_certs(data: bytes, source: str) -> list[x509.Certificate]:
    """All PEM certificates in ``data`` (leaf first); ``source`` names the file in errors."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(f"{source}: not a readable PEM certificate ({exc})") from None
    return certs


def load_key(data: bytes, source: str, passphrase: bytes | None = None) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise CertificateError(f"{source}: the private key is encrypted; give an unencrypted key") from None
        raise CertificateError(f"{source}: the private key is not encrypted; no passphrase is needed") from None
    except ValueError:
        if passphrase is not None and key_is_encrypted(data):
            raise CertificateError(f"{source}: wrong passphrase") from None
        raise CertificateError(f"{source}: not a readable PEM private key") from None
    if not isinstance(key, PrivateKey):
        raise CertificateError(f"{source}: unsupported key type {type(key).__name__}")
    return key


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def fingerprint_pem(pem: bytes) -> str:
    return fingerprint(x509.load_pem_x509_certificate(pem))


def subject_text(name: x509.Name) -> str:
    """openssl's one-line form, most significant first: ``C = FR, ..., CN = x``."""
    short = {v: k for k, v in SUBJECT_OIDS.items()}
    parts = [f"{short.get(a.oid, a.oid.dotted_string)}={a.value!s}" for a in name]
    return ", ".join(parts)


def cert_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san_text(n) for n in ext if isinstance(n, (x509.DNSName, x509.IPAddress)))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def describe(cert: x509.Certificate) -> CertInfo:
    algo = cert.signature_hash_algorithm
    return CertInfo(
        subject=subject_text(cert.subject),
        issuer=subject_text(cert.issuer),
        sans=cert_sans(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
        sha256=fingerprint(cert),
        key_type=key_type_of(cert.public_key()),
        is_ca=_is_ca(cert),
        signature=algo.name if algo else "ed25519",
    )


# --------------------------------------------------------------------------- checks


def same_public_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def lint(
    cert: x509.Certificate,
    now: dt.datetime,
    *,
    key: PrivateKey | None = None,
    names: tuple[str, ...] = (),
    max_days: int | None = APPLE_MAX_DAYS,
) -> list[str]:
    """Reasons a client or the registry would refuse this server certificate.

    Each reason quotes the error the Go client (dockerd) or the registry would
    print, so the user recognises it. An empty list means usable. ``max_days``
    None accepts any lifetime (the operator forced a longer one).
    """
    problems: list[str] = []
    if cert.serial_number <= 0:
        problems.append("serial number is not positive (Go 1.23+: x509: negative serial number)")
    if now < cert.not_valid_before_utc:
        problems.append(
            f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(Go: x509: certificate has expired or is not yet valid)"
        )
    if now > cert.not_valid_after_utc:
        problems.append(
            f"expired on {cert.not_valid_after_utc:%Y-%m-%d} (Go: x509: certificate has expired or is not yet valid)"
        )
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    if max_days is not None and lifetime > max_days + 1:
        problems.append(f"valid {lifetime} days: Apple clients refuse more than {APPLE_MAX_DAYS}")
    algo = cert.signature_hash_algorithm
    if algo is not None and algo.name in ("sha1", "md5"):
        problems.append(f"signed with {algo.name.upper()} (Go: x509: cannot verify signature: insecure algorithm)")
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey) and pub.key_size < 2048:
        problems.append(f"RSA key of {pub.key_size} bits: at least 2048 are required (Apple; OpenSSL at "
                        "security level 2: EE certificate key too weak)")
    sans = cert_sans(cert)
    if not sans:
        problems.append("names only in the CN, no subjectAltName "
                        "(Go: x509: certificate relies on legacy Common Name field, use SANs instead)")
    for san in sans:
        kind, _, value = san.partition(":")
        if kind == "DNS" and _looks_like_ip(value):
            problems.append(f"IP {value} is a DNS: SAN; it must be IP: "
                            f"(Go: x509: cannot validate certificate for {value} because it doesn't contain any IP SANs)")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            problems.append("extendedKeyUsage lacks serverAuth (Go: x509: certificate specifies an incompatible key usage)")
    except x509.ExtensionNotFound:
        problems.append("no extendedKeyUsage serverAuth (Apple clients refuse it)")
    valid_for = ", ".join(s.partition(":")[2] for s in sans) or "no names"
    problems += [f"does not cover {name} (Go: x509: certificate is valid for {valid_for}, not {name})"
                 for name in names if not covers(sans, name)]
    if key is not None and not same_public_key(cert, key):
        problems.append("private key does not match the certificate "
                        "(registry: tls: private key does not match public key)")
    return problems


def covers(sans: tuple[str, ...], name: str) -> bool:
    """Whether a SAN list (``DNS:x``/``IP:y`` texts) matches ``name`` as Go would."""
    if _looks_like_ip(name):
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return any(s.startswith("IP:") and ipaddress.ip_address(s[3:]) == ip for s in sans)
    name = name.lower()
    for san in sans:
        if not san.startswith("DNS:"):
            continue
        pattern = san[4:].lower()  # a BYO cert may carry upper case; Go compares lower-cased
        if pattern == name:
            return True
        if pattern.startswith("*.") and name.count(".") == pattern.count(".") and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def coverage(sans: tuple[str, ...]) -> Callable[[str], bool]:
    """``covers`` for many names against one SAN list: O(1) per name instead of O(len(sans))."""
    ips = set()
    for s in sans:
        if s.startswith("IP:"):
            with contextlib.suppress(ValueError):
                ips.add(ipaddress.ip_address(s[3:]))
    dns = {s[4:].lower() for s in sans if s.startswith("DNS:")}

    def covered(name: str) -> bool:
        if _looks_like_ip(name):
            try:
                return ipaddress.ip_address(name) in ips
            except ValueError:
                return False
        name = name.lower()
        return name in dns or ("." in name and "*." + name.split(".", 1)[1] in dns)

    return covered


def spec_differences(cert: x509.Certificate, spec: CertSpec) -> list[str]:
    """What the inventory asks for that this certificate does not have (renewal reasons)."""
    diffs: list[str] = []
    have, want = set(cert_sans(cert)), set(spec.san_texts)
    if have != want:
        added, removed = sorted(want - have), sorted(have - want)
        parts = ([f"add {', '.join(added)}"] if added else []) + ([f"drop {', '.join(removed)}"] if removed else [])
        diffs.append("SANs differ: " + "; ".join(parts))
    if cert.subject != spec.name:
        diffs.append(f"subject differs: {subject_text(cert.subject)} -> {subject_text(spec.name)}")
    if key_type_of(cert.public_key()) != spec.key_type:
        diffs.append(f"key type differs: {key_type_of(cert.public_key())} -> {spec.key_type}")
    return diffs
