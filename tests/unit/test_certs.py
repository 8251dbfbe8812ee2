"""Certificates, trustme-style: SAN parsing as a table, the profile checked field by field,
lint reasons quoting the Go errors, and real TLS handshakes (stdlib ssl and openssl) with
positive and negative cases, for the self-signed and the CA mode.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from fabfile import certs, inventory, pki
from fabfile.errors import CertificateError, InputError

from _support import CASES, EXAMPLE_INVENTORY, NOW, make_spec, run

DAY = dt.timedelta(days=1)


# --------------------------------------------------------------------------- SAN parsing


def dns(v):
    return x509.DNSName(v)


def ip(v):
    return x509.IPAddress(ipaddress.ip_address(v))


SAN_OK = [
    # (input, expected GeneralName)
    ("DNS:registry.example", dns("registry.example")),
    ("registry.example", dns("registry.example")),
    ("localhost", dns("localhost")),
    ("DNS:REGISTRY.Example.COM", dns("registry.example.com")),
    ("dns:Registry.example", dns("registry.example")),
    ("  registry.example  ", dns("registry.example")),
    ("xn--rgistry-bya.example", dns("xn--rgistry-bya.example")),
    ("a" * 63 + ".example", dns("a" * 63 + ".example")),
    ("IP:10.0.0.1", ip("10.0.0.1")),
    ("ip:10.0.0.1", ip("10.0.0.1")),
    ("192.168.56.200", ip("192.168.56.200")),
    ("::1", ip("::1")),
    ("IP:2001:db8::1", ip("2001:db8::1")),
    ("2001:DB8:0:0::1", ip("2001:db8::1")),
]


@pytest.mark.parametrize(("entry", "expected"), SAN_OK, ids=[c[0].strip() for c in SAN_OK])
def test_parse_san_accepts(entry, expected):
    assert certs.parse_san(entry) == expected


def test_F04_wildcard_accepted_only_with_allow_wildcard():
    assert certs.parse_san("*.Example.com", allow_wildcard=True) == dns("*.example.com")
    with pytest.raises(CertificateError, match=r"wildcards are refused unless allow_wildcard"):
        certs.parse_san("*.example.com")


SAN_BAD = [
    # (docs/FAULTS.md row, input, fragment the message must contain)
    ("F03", "10.0.0.256", "'10.0.0.256'"),
    ("F03", "IP:10.0.0.256", "'10.0.0.256' is not a valid IPv4 or IPv6 address"),
    ("F03", "fe80::1%eth0", "'fe80::1%eth0': zone indexes"),
    ("F03", "IP:fe80::1%eth0", "'fe80::1%eth0'"),
    ("F03", "10.0.0.0/24", "'10.0.0.0/24': a network is not an address"),
    ("F03", "IP:10.0.0.0/24", "'10.0.0.0/24'"),
    ("F03", "DNS:10.0.0.1", "an IP address must be an IP: entry"),
    ("F03", "DNS:::1", "an IP address must be an IP: entry"),
    ("F03", "IP:registry.example", "'registry.example' is not a valid IPv4 or IPv6 address"),
    ("F04", "reg_1", "label 'reg_1' must be 1-63 letters"),
    ("F04", "a" * 64 + ".example", "must be 1-63 letters"),
    ("F04", ".".join(["a" * 63] * 4), "longer than 253 characters"),
    ("F04", "-reg.example", "not starting or ending with '-'"),
    ("F04", "reg-.example", "not starting or ending with '-'"),
    ("F04", "a..example", "label '' must be 1-63"),
    ("F04", "régistry.example", "'xn--rgistry-bya.example'"),
    ("F04", "DNS:régistry", "IDNA A-label 'xn--rgistry-bya'"),
    ("F04", "*.example.com", "wildcards are refused"),
    ("F04", "foo.*.example.com", "label '*'"),
    ("F04", "registry.example.", "remove the trailing dot"),
    ("F04", "DNS:", "DNS name is empty"),
]


@pytest.mark.parametrize(("row", "entry", "fragment"), SAN_BAD, ids=[f"{r}-{e[:30]}" for r, e, _ in SAN_BAD])
def test_F03_F04_parse_san_rejects(row, entry, fragment):
    with pytest.raises(CertificateError) as err:
        certs.parse_san(entry)
    assert fragment in str(err.value)
    assert isinstance(err.value, InputError) and err.value.exit_code == 2


def test_F03_ip_san_rejects_out_of_range_octet():
    with pytest.raises(CertificateError, match=r"'10\.0\.0\.256'"):
        certs.parse_san("10.0.0.256")


def test_F03_an_ip_never_becomes_a_dns_name():
    """Bare IPs (v4 and v6) go into iPAddress, never dNSName: Go does not match an IP against a dNSName."""
    for entry in ("10.0.0.1", "::1", "IP:10.0.0.1", "fd00::5"):
        assert isinstance(certs.parse_san(entry), x509.IPAddress)


def test_F04_wildcard_needs_two_labels_after_star():
    with pytest.raises(CertificateError, match="at least two labels"):
        certs.parse_san("*.com", allow_wildcard=True)


def test_F04_san_text_round_trip():
    for entry in ("DNS:registry.example", "IP:10.0.0.1", "IP:::1"):
        assert certs.san_text(certs.parse_san(entry)) == entry


# --------------------------------------------------------------------------- F07 validity


@pytest.mark.parametrize("days", [0, -1, -365])
def test_F07_cert_spec_rejects_non_positive_validity(days):
    with pytest.raises(CertificateError, match=f"validity of {days} days: must be at least 1"):
        make_spec(days=days)


def test_F07_validity_above_825_days_refused_unless_forced():
    with pytest.raises(CertificateError) as err:
        certs.validity_warnings(826)
    assert "825" in str(err.value) and "--force" in str(err.value)
    forced = certs.validity_warnings(826, force=True)
    assert len(forced) == 1 and "398" in forced[0]


@pytest.mark.parametrize(("days", "warns"), [(1, False), (365, False), (398, False), (399, True), (825, True)])
def test_F07_validity_above_398_days_warns(days, warns):
    found = certs.validity_warnings(days)
    assert bool(found) is warns
    if warns:
        assert f"validity of {days} days is above 398" in found[0]


def test_cert_spec_needs_a_san_and_a_known_key_type():
    with pytest.raises(CertificateError, match="at least one subjectAltName"):
        certs.CertSpec(subject=(("CN", "x"),), sans=())
    with pytest.raises(CertificateError, match="key type 'dsa-1024'"):
        make_spec(key_type="dsa-1024")


# --------------------------------------------------------------------------- profile helpers


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def key_usage_flags(ku: x509.KeyUsage) -> set[str]:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign")
    flags = {n for n in names if getattr(ku, n)}
    if ku.key_agreement:
        flags |= {n for n in ("encipher_only", "decipher_only") if getattr(ku, n)}
    return flags


def assert_common_v3(cert: x509.Certificate, key) -> None:
    assert cert.version is x509.Version.v3
    assert 0 < cert.serial_number < 2**159 and cert.serial_number.bit_length() > 64
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def assert_server_identity(cert: x509.Certificate, spec: certs.CertSpec) -> None:
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical and list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical  # the subject is not empty, so the SAN need not be critical
    assert list(san.value) == list(spec.sans)
    assert cert.subject == spec.name and len(cert.subject) > 0


# --------------------------------------------------------------------------- self-signed profile (3A)


def test_self_signed_profile(self_signed, spec):
    cert, key = self_signed
    assert_common_v3(cert, key)
    assert_server_identity(cert, spec)
    assert cert.issuer == cert.subject
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and key_usage_flags(ku.value) == {"digital_signature", "key_cert_sign"}
    aki = ext(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == ext(cert, x509.SubjectKeyIdentifier).value.digest
    cert.verify_directly_issued_by(cert)  # really self-signed


def test_F19_self_signed_not_before_is_backdated_five_minutes(self_signed, spec):
    cert, _ = self_signed
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=spec.days)


def test_serial_is_random_and_new_on_every_issuance(key_cache, spec):
    key = key_cache("server")
    serials = {certs.build_self_signed(spec, key, NOW).serial_number for _ in range(3)}
    assert len(serials) == 3 and all(s > 0 for s in serials)


def test_self_signed_rsa_adds_key_encipherment(rsa_2048):
    spec = make_spec(key_type="rsa-2048")
    cert = certs.build_self_signed(spec, rsa_2048, NOW)
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and key_usage_flags(ku.value) == {"digital_signature", "key_encipherment", "key_cert_sign"}
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    assert certs.lint(cert, NOW, key=rsa_2048) == []


def test_self_signed_ed25519_is_signed_without_a_hash(key_cache):
    key = key_cache("ed", "ed25519")
    cert = certs.build_self_signed(make_spec(key_type="ed25519"), key, NOW)
    assert cert.signature_hash_algorithm is None
    info = certs.describe(cert)
    assert info.signature == "ed25519" and info.key_type == "ed25519"


# --------------------------------------------------------------------------- CA mode (3B)


def test_ca_root_profile(ca_chain):
    root, ca_key, _, _ = ca_chain
    assert_common_v3(root, ca_key)
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ext(root, x509.KeyUsage)
    assert ku.critical and key_usage_flags(ku.value) == {"key_cert_sign", "crl_sign"}
    with pytest.raises(x509.ExtensionNotFound):
        ext(root, x509.ExtendedKeyUsage)
    with pytest.raises(x509.ExtensionNotFound):
        ext(root, x509.SubjectAlternativeName)
    root.verify_directly_issued_by(root)


def test_ca_leaf_profile(ca_chain, spec):
    root, _, leaf, leaf_key = ca_chain
    assert_common_v3(leaf, leaf_key)
    assert_server_identity(leaf, spec)
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    ku = ext(leaf, x509.KeyUsage)
    assert ku.critical and key_usage_flags(ku.value) == {"digital_signature"}
    aki = ext(leaf, x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == ext(root, x509.SubjectKeyIdentifier).value.digest
    assert aki.value.key_identifier != ext(leaf, x509.SubjectKeyIdentifier).value.digest
    assert leaf.issuer == root.subject != leaf.subject
    leaf.verify_directly_issued_by(root)
    assert certs.lint(leaf, NOW, key=leaf_key) == []


def test_ca_leaf_passes_cryptography_webpki_verifier(ca_chain):
    """cryptography's verifier (RFC 5280 + CA/B profile) accepts the chain for each SAN."""
    verification = pytest.importorskip("cryptography.x509.verification")
    root, _, leaf, _ = ca_chain
    store = verification.Store([root])
    for name in (x509.DNSName("registry.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier = verification.PolicyBuilder().store(store).time(NOW).build_server_verifier(name)
        chain = verifier.verify(leaf, [])
        assert chain[-1] == root
    verifier = verification.PolicyBuilder().store(store).time(NOW).build_server_verifier(x509.DNSName("other.test"))
    with pytest.raises(verification.VerificationError):
        verifier.verify(leaf, [])


def test_ca_leaf_never_outlives_its_ca(key_cache, spec):
    ca_key = key_cache("short-ca")
    root = certs.build_ca(certs.build_name((("CN", "short CA"),)), ca_key, NOW, 30, spec.sans)
    leaf = certs.build_leaf(spec, key_cache("leaf"), root, ca_key, NOW)
    assert spec.days == 365
    assert leaf.not_valid_after_utc == root.not_valid_after_utc == NOW + 30 * DAY


def test_ca_subject_differs_from_server_subject():
    spec = make_spec(subject=(("O", "x"), ("CN", "c" * 64)))
    name = pki.ca_subject(spec)
    cn = name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "c" * 60 + " CA" and name != spec.name


# --------------------------------------------------------------------------- F09 lint


def byo(key, *, signer=None, sans=(x509.DNSName("registry.test"),), not_before=None, not_after=None,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH,), algorithm=hashes.SHA256(), cn="registry.test"):
    """A 'bring your own' server certificate with exactly the given defects."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - DAY).not_valid_after(not_after or NOW + 30 * DAY))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(signer or key, algorithm)


def der_replace(cert: x509.Certificate, old: bytes, new: bytes, count: int) -> x509.Certificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(old) == count and len(old) == len(new)
    return x509.load_der_x509_certificate(der.replace(old, new))


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_F09_lint_accepts_a_clean_certificate(key_cache):
    key = key_cache("byo")
    assert certs.lint(byo(key), NOW, key=key, names=("registry.test",)) == []


def test_F09_lint_expired(key_cache):
    cert = byo(key_cache("byo"), not_before=NOW - 60 * DAY, not_after=NOW - DAY)
    reason = only(certs.lint(cert, NOW))
    assert reason.startswith(f"expired on {(NOW - DAY):%Y-%m-%d}")
    assert "x509: certificate has expired or is not yet valid" in reason


def test_F09_lint_not_yet_valid(key_cache):
    cert = byo(key_cache("byo"), not_before=NOW + DAY, not_after=NOW + 30 * DAY)
    reason = only(certs.lint(cert, NOW))
    assert reason.startswith("not valid before") and "x509: certificate has expired or is not yet valid" in reason


def test_F09_lint_cn_only_without_san(key_cache):
    reason = only(certs.lint(byo(key_cache("byo"), sans=()), NOW))
    assert "x509: certificate relies on legacy Common Name field, use SANs instead" in reason


def test_F09_lint_eku_without_server_auth(key_cache):
    reason = only(certs.lint(byo(key_cache("byo"), eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)), NOW))
    assert "x509: certificate specifies an incompatible key usage" in reason


def test_F09_lint_no_eku_at_all_is_refused_for_apple(key_cache):
    reason = only(certs.lint(byo(key_cache("byo"), eku=None), NOW))
    assert "serverAuth" in reason and "Apple" in reason


def test_F09_lint_sha1_signature(rsa_2048):
    try:
        cert = byo(rsa_2048, algorithm=hashes.SHA1())
    except UnsupportedAlgorithm:
        # cryptography >= 45 refuses to sign with SHA-1: relabel a SHA-256 certificate's signature
        # algorithm (same-length OIDs 1.2.840.113549.1.1.11 -> .5, in TBS and outer). The signature
        # no longer verifies, which is irrelevant here: lint reads the algorithm, as Go does first.
        sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
        sha1_rsa = bytes.fromhex("06092a864886f70d010105")
        cert = der_replace(byo(rsa_2048), sha256_rsa, sha1_rsa, count=2)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    reason = only(certs.lint(cert, NOW))
    assert "SHA1" in reason and "x509: cannot verify signature: insecure algorithm" in reason


def test_F09_lint_rsa_1024(key_cache):
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    reason = only(certs.lint(byo(key), NOW, key=key))
    assert "RSA key of 1024 bits" in reason and "2048" in reason
    assert "EE certificate key too weak" in reason  # what OpenSSL clients (curl) print at security level 2


def test_F08_F09_lint_key_mismatch(key_cache):
    reason = only(certs.lint(byo(key_cache("byo")), NOW, key=key_cache("other")))
    assert "private key does not match" in reason
    assert "tls: private key does not match public key" in reason


def test_F03_F09_lint_ip_in_a_dns_san(key_cache):
    cert = byo(key_cache("byo"), sans=(x509.DNSName("registry.test"), x509.DNSName("10.0.0.1")))
    reason = only(certs.lint(cert, NOW))
    assert "x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs" in reason


def test_F09_lint_names_not_covered(key_cache):
    reason = only(certs.lint(byo(key_cache("byo")), NOW, names=("registry.test", "other.test")))
    assert "x509: certificate is valid for registry.test, not other.test" in reason


def test_F07_F09_lint_lifetime_above_825_days(key_cache):
    cert = byo(key_cache("byo"), not_before=NOW - DAY, not_after=NOW + 900 * DAY)
    assert "Apple clients refuse more than 825" in only(certs.lint(cert, NOW))


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_F09_lint_negative_serial(key_cache):
    cert = byo(key_cache("byo"))
    serial = cert.serial_number
    body = serial.to_bytes((serial.bit_length() + 8) // 8, "big")  # DER INTEGER content, leading 0x00 if needed
    tlv = bytes([0x02, len(body)]) + body
    negative = bytes([0x02, len(body), 0x80]) + body[1:]  # 0x80 first: negative and still minimal DER
    try:
        bad = der_replace(cert, tlv, negative, count=1)
    except ValueError as exc:
        pytest.skip(f"cryptography no longer loads negative serials: {exc}")
    assert bad.serial_number < 0
    assert "x509: negative serial number" in only(certs.lint(bad, NOW))


def test_F09_lint_the_seed_certificate():
    """The seed's own cert (recorded from its `openssl s_client`): expired, no EKU."""
    cert = certs.load_certs((CASES / "seed_registry_auth.crt").read_bytes(), "seed")[0]
    info = certs.describe(cert)
    assert info.sans == ("DNS:localhost", "DNS:cents8s-server", "DNS:centos8s-server.singleton.net",
                         "IP:192.168.56.200")
    assert (info.key_type, info.is_ca, info.self_signed, info.signature) == ("rsa-4096", True, True, "sha256")
    problems = certs.lint(cert, NOW)
    assert len(problems) == 2
    assert problems[0].startswith("expired on 2023-10-16")
    assert "no extendedKeyUsage serverAuth" in problems[1]


def test_load_certs_and_key_errors_name_the_file(tmp_path):
    with pytest.raises(CertificateError, match=r"bad\.crt: not a readable PEM certificate"):
        certs.load_certs(b"garbage", "bad.crt")
    with pytest.raises(CertificateError, match=r"bad\.key: not a readable PEM private key"):
        certs.load_key(b"garbage", "bad.key")


def test_load_key_refuses_an_encrypted_key(key_cache):
    pem = key_cache("byo").private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret-pass"))
    with pytest.raises(CertificateError, match=r"enc\.key: the private key is encrypted"):
        certs.load_key(pem, "enc.key")


# --------------------------------------------------------------------------- covers / spec_differences

COVERS = [
    # (sans, name, covered)
    (("DNS:registry.test",), "registry.test", True),
    (("DNS:registry.test",), "REGISTRY.test", True),
    (("DNS:Registry.Test",), "registry.test", True),  # a BYO cert may carry upper case; Go compares lower-cased
    (("DNS:registry.test",), "other.test", False),
    (("DNS:*.example.com",), "reg.example.com", True),
    (("DNS:*.example.com",), "example.com", False),
    (("DNS:*.example.com",), "a.reg.example.com", False),
    (("DNS:*.example.com",), "reg.example.org", False),
    (("IP:10.0.0.1",), "10.0.0.1", True),
    (("IP:10.0.0.1",), "10.0.0.2", False),
    (("DNS:10.0.0.1",), "10.0.0.1", False),  # Go never matches an IP against a dNSName
    (("IP:::1",), "0:0::1", True),
    (("IP:2001:db8::1",), "2001:DB8::1", True),
    (("DNS:registry.test", "IP:10.0.0.1"), "10.0.0.256", False),
    ((), "registry.test", False),
]


@pytest.mark.parametrize(("sans", "name", "covered"), COVERS, ids=[f"{s}-{n}" for s, n, _ in COVERS])
def test_covers(sans, name, covered):
    assert certs.covers(sans, name) is covered


def test_spec_differences(self_signed, spec):
    cert, _ = self_signed
    assert certs.spec_differences(cert, spec) == []
    changed = make_spec(sans=("DNS:registry.test", "DNS:new.test", "IP:127.0.0.1"), key_type="rsa-2048",
                        subject=(("CN", "renamed"),))
    diffs = certs.spec_differences(cert, changed)
    assert diffs[0] == "SANs differ: add DNS:new.test; drop DNS:localhost, IP:::1"
    assert diffs[1].startswith("subject differs: O=registry-tls tests, CN=registry.test -> CN=renamed")
    assert diffs[2] == "key type differs: ecdsa-p256 -> rsa-2048"
    assert len(diffs) == 3


def test_describe(self_signed):
    cert, _ = self_signed
    info = certs.describe(cert)
    assert info.sans == ("DNS:registry.test", "DNS:localhost", "IP:127.0.0.1", "IP:::1")
    assert info.sha256 == cert.fingerprint(hashes.SHA256()).hex(":").upper() == certs.fingerprint_pem(
        certs.cert_pem(cert))
    assert info.self_signed and info.is_ca and info.key_type == "ecdsa-p256" and info.signature == "sha256"
    assert info.days_left(NOW) == 365 and info.as_dict(NOW)["serial"] == f"{cert.serial_number:x}"


def test_same_public_key(key_cache, self_signed):
    cert, key = self_signed
    assert certs.same_public_key(cert, key)
    assert not certs.same_public_key(cert, key_cache("other"))


# --------------------------------------------------------------------------- end-to-end TLS


@pytest.fixture(scope="module", params=["self-signed", "ca"])
def served(request, self_signed, ca_chain, tmp_path_factory):
    """(mode, server certfile, keyfile, anchor PEM) for each mode, as the registry would serve them."""
    if request.param == "self-signed":
        cert, key = self_signed
        chain, anchor = [cert], cert
    else:
        root, _, leaf, key = ca_chain
        chain, anchor = [leaf, root], root  # the registry serves leaf + root; clients trust the root only
    folder = tmp_path_factory.mktemp(request.param)
    certfile, keyfile = folder / "registry.crt", folder / "registry.key"
    certfile.write_bytes(b"".join(certs.cert_pem(c) for c in chain))
    keyfile.write_bytes(certs.private_key_pem(key))
    return request.param, certfile, keyfile, certs.cert_pem(anchor)


def client_context(anchor_pem: bytes, *, strict: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=anchor_pem.decode("ascii"))
    if strict:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python >= 3.13 does by default
    return ctx


def tls_pair(certfile, keyfile, client_ctx: ssl.SSLContext, server_hostname: str) -> bytes:
    """A real TLS handshake over a socketpair; returns what the server sent after it."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certfile, keyfile)
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)

    def serve():
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls:
                tls.sendall(b"registry/2.0")
        except (ssl.SSLError, OSError):
            pass  # the client side raises the interesting error

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=server_hostname) as tls:
            return tls.recv(64)
    finally:
        b.close()
        thread.join(10)
        a.close()


def handshake(served, server_hostname: str, anchor_pem: bytes | None = None) -> bytes:
    _, certfile, keyfile, anchor = served
    return tls_pair(certfile, keyfile, client_context(anchor_pem or anchor), server_hostname)


@pytest.mark.parametrize("name", ["registry.test", "localhost", "127.0.0.1", "::1"])
def test_stdlib_end_to_end_handshake_for_every_san(served, name):
    assert handshake(served, name) == b"registry/2.0"


def test_stdlib_end_to_end_wrong_hostname_fails(served):
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(served, "wrong.test")
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(served, "127.0.0.2")


def test_stdlib_end_to_end_wrong_anchor_fails(served, key_cache):
    other = certs.build_self_signed(make_spec(), key_cache("impostor"), NOW)  # same names, other key
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(served, "registry.test", anchor_pem=certs.cert_pem(other))


def test_F03_ip_in_a_dns_san_fails_a_real_handshake(key_cache, tmp_path):
    """Why F03 matters: an IP written as a dNSName does not validate for that IP (nor in Go)."""
    key = key_cache("byo")
    cert = byo(key, sans=(x509.DNSName("127.0.0.1"), x509.DNSName("registry.test")))
    certfile, keyfile = tmp_path / "c.pem", tmp_path / "k.pem"
    certfile.write_bytes(certs.cert_pem(cert))
    keyfile.write_bytes(certs.private_key_pem(key))
    ctx = client_context(certs.cert_pem(cert), strict=False)  # the BYO cert lacks SKI/BC: not the point here
    assert tls_pair(certfile, keyfile, ctx, "registry.test") == b"registry/2.0"
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        tls_pair(certfile, keyfile, ctx, "127.0.0.1")


# --------------------------------------------------------------------------- openssl


def test_openssl_verify_x509_strict(served, openssl, tmp_path):
    mode, certfile, _, anchor = served
    anchor_file, leaf_file = tmp_path / "anchor.pem", tmp_path / "leaf.pem"
    anchor_file.write_bytes(anchor)
    leaf_file.write_bytes(certs.cert_pem(x509.load_pem_x509_certificates(certfile.read_bytes())[0]))
    base = [openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(anchor_file)]
    for name in (["-verify_hostname", "registry.test"], ["-verify_ip", "127.0.0.1"]):
        out = run(base + name + [str(leaf_file)])
        assert out.returncode == 0 and out.stdout.strip() == f"{leaf_file}: OK", (mode, out.stdout, out.stderr)
    wrong = run([*base, "-verify_hostname", "wrong.test", str(leaf_file)])
    assert wrong.returncode != 0 and "hostname mismatch" in (wrong.stdout + wrong.stderr).lower()


@pytest.fixture(scope="module")
def example_material(tmp_path_factory):
    """The example inventory's certificate (the seed's profile: rsa-4096, 356 days), in a tmp pki_dir."""
    inv = inventory.load(EXAMPLE_INVENTORY)
    root = tmp_path_factory.mktemp("pki")
    material = pki.Pki(inv.certificate, root=root).generate(NOW)
    return inv, root, material


def test_openssl_text_of_the_example_inventory_certificate(example_material, openssl):
    inv, root, material = example_material
    out = run([openssl, "x509", "-in", str(root / "registry.crt"), "-noout", "-text"])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "DNS:cents8s-server, DNS:centos8s-server.singleton.net, IP Address:192.168.56.200" in text
    assert "Public-Key: (4096 bit)" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert re.search(r"Subject: C ?= ?FR, ST ?= ?Alpes Maritimes, L ?= ?Nice, O ?= ?SINGLETON, OU ?= ?R&D, "
                     r"CN ?= ?docker-registry", text)
    # the default (mode: ca): a CA:FALSE 90-day leaf, and a root limited to the registry's names
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:FALSE", text)
    assert re.search(r"X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\n", text)
    assert re.search(r"X509v3 Extended Key Usage:\s+TLS Web Server Authentication\n", text)
    assert material.leaf.not_valid_after_utc - material.leaf.not_valid_before_utc == dt.timedelta(days=90, minutes=5)
    assert certs.lint(material.leaf, NOW, key=material.key, names=inv.clients[0].registry_names) == []
    root_text = run([openssl, "x509", "-in", str(root / "ca.crt"), "-noout", "-text"]).stdout
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0", root_text)
    assert re.search(r"X509v3 Name Constraints: critical\s+Permitted:\s+DNS:cents8s-server\s+"
                     r"DNS:centos8s-server.singleton.net\s+IP:192.168.56.200/255.255.255.255\n", root_text)
    assert "localhost" not in root_text     # review H1: the example's CA does not permit localhost


def test_openssl_accepts_the_example_key_pair(example_material, openssl):
    _, root, _ = example_material
    pub_from_key = run([openssl, "pkey", "-in", str(root / "registry.key"), "-pubout"])
    pub_from_cert = run([openssl, "x509", "-in", str(root / "registry.crt"), "-noout", "-pubkey"])
    assert pub_from_key.returncode == 0 and pub_from_key.stdout == pub_from_cert.stdout
