"""The trust anchor's blast radius (security review H1): name constraints, forged leaves, pkilint.

Every anchor the tool makes (the CA of the default mode, the self-signed certificate)
permits exactly the registry's names. A certificate its key signs for any other name
is refused by OpenSSL (``verify -x509_strict``) and by cryptography's webpki verifier,
while the chain the registry serves passes both. pkilint's RFC 5280 linters
(``lint_pkix_cert``, ``lint_pkix_signer_signee_cert_chain``) find nothing to warn about
in any certificate kind. The CA/B Forum linter is the wrong yardstick here: it checks
public-CA policy (CRL and OCSP pointers, policy OIDs, audited hierarchies) that a private
registry CA deliberately omits (CERT-PROFILE.md: "nothing to fetch privately").
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import verification

from fabfile import certs, inventory
from fabfile.errors import CertificateError, InputError, InventoryError
from fabfile.pki import PASSPHRASE_ENV, Pki
from fabfile.program import command

from _support import NOW, make_cert_cfg, make_spec, run

SANS = ("DNS:registry.test", "DNS:mirror.registry.test", "IP:192.0.2.10", "IP:2001:db8::10")
OTHER_NAMES = ("sso.corp.example", "github.com")
OTHER_IPS = ("192.0.2.11", "8.8.8.8", "2001:db8::11")


@pytest.fixture(scope="module")
def names_spec():
    return make_spec(SANS)


@pytest.fixture(scope="module")
def anchors(key_cache, names_spec):
    """mode -> (anchor cert, anchor key, served chain): what `cert.generate` makes in each mode."""
    ca_key, leaf_key, ss_key = key_cache("nc-ca"), key_cache("nc-leaf"), key_cache("nc-ss")
    root = certs.build_ca(certs.build_name((("CN", "registry.test CA"),)), ca_key, NOW, 1825, names_spec.sans)
    leaf = certs.build_leaf(names_spec, leaf_key, root, ca_key, NOW)
    ss = certs.build_self_signed(names_spec, ss_key, NOW)
    return {"ca": (root, ca_key, (leaf, root)), "self-signed": (ss, ss_key, (ss,))}


def forge(anchor, anchor_key, key_cache, name: str) -> x509.Certificate:
    """What a thief of the anchor key would sign: a perfectly formed leaf for another name."""
    spec = make_spec((f"IP:{name}" if certs._looks_like_ip(name) else f"DNS:{name}",), subject=(("CN", "forged"),))
    return certs.build_leaf(spec, key_cache("forged"), anchor, anchor_key, NOW)


def openssl_verify(openssl, tmp_path: Path, anchor, chain, name: str) -> subprocess.CompletedProcess:
    ca, leaf, untrusted = tmp_path / "anchor.pem", tmp_path / "leaf.pem", tmp_path / "untrusted.pem"
    ca.write_bytes(certs.cert_pem(anchor))
    leaf.write_bytes(certs.cert_pem(chain[0]))
    untrusted.write_bytes(b"".join(certs.cert_pem(c) for c in chain[1:]) or certs.cert_pem(anchor))
    check = ["-verify_ip", name] if certs._looks_like_ip(name) else ["-verify_hostname", name]
    return run([openssl, "verify", "-x509_strict", "-purpose", "sslserver", *check,
                "-CAfile", str(ca), "-untrusted", str(untrusted), str(leaf)])


def webpki_verify(anchor, chain, name: str):
    subject = (x509.IPAddress(ipaddress.ip_address(name)) if certs._looks_like_ip(name) else x509.DNSName(name))
    verifier = (verification.PolicyBuilder().store(verification.Store([anchor])).time(NOW)
                .build_server_verifier(subject))
    return verifier.verify(chain[0], list(chain[1:]))


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("mode", ["ca", "self-signed"])
def test_every_anchor_has_critical_name_constraints_of_exactly_the_registry_names(anchors, mode):
    anchor = anchors[mode][0]
    ext = anchor.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    assert ext.value.excluded_subtrees is None
    assert list(ext.value.permitted_subtrees) == [
        x509.DNSName("registry.test"), x509.DNSName("mirror.registry.test"),
        x509.IPAddress(ipaddress.ip_network("192.0.2.10/32")), x509.IPAddress(ipaddress.ip_network("2001:db8::10/128")),
    ]
    assert certs.constraint_texts(anchor) == ("DNS:registry.test", "DNS:mirror.registry.test",
                                              "IP:192.0.2.10/32", "IP:2001:db8::10/128")


def test_a_name_type_the_registry_does_not_use_is_closed_not_left_open():
    """RFC 5280: a type with no permitted subtree is unconstrained; an IP-only registry must not permit any DNS."""
    ip_only = certs.name_constraints((x509.IPAddress(ipaddress.ip_address("192.0.2.10")),))
    assert [certs.san_text(n) if isinstance(n, x509.DNSName) else str(n.value) for n in ip_only.permitted_subtrees] \
        == ["DNS:registry-tls.invalid", "192.0.2.10/32"]
    dns_only = certs.name_constraints((x509.DNSName("registry.test"),))
    assert [str(n.value) for n in dns_only.permitted_subtrees] == ["registry.test", "0.0.0.0/32", "::/128"]


def test_a_wildcard_san_becomes_its_parent_subtree():
    nc = certs.name_constraints((x509.DNSName("*.apps.test"), x509.DNSName("apps.test")))
    assert [str(n.value) for n in nc.permitted_subtrees] == ["apps.test", "0.0.0.0/32", "::/128"]


@pytest.mark.parametrize("mode", ["ca", "self-signed"])
@pytest.mark.parametrize("name", OTHER_NAMES + OTHER_IPS)
def test_a_forged_leaf_for_another_name_fails_openssl_strict(anchors, key_cache, openssl, tmp_path, mode, name):
    anchor, key, _ = anchors[mode]
    forged = forge(anchor, key, key_cache, name)
    out = openssl_verify(openssl, tmp_path, anchor, (forged,), name)
    assert out.returncode != 0
    assert "permitted subtree violation" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("mode", ["ca", "self-signed"])
@pytest.mark.parametrize("name", OTHER_NAMES + OTHER_IPS)
def test_a_forged_leaf_for_another_name_fails_the_cryptography_verifier(anchors, key_cache, mode, name):
    anchor, key, _ = anchors[mode]
    with pytest.raises(verification.VerificationError, match=r"(?i)name constraint|no permitted|excluded|not permitted"):
        webpki_verify(anchor, (forge(anchor, key, key_cache, name),), name)


def unconstrained_ca(key, cn: str = "old CA") -> x509.Certificate:
    """A root like the ones made before name constraints (and like the review's reproduction)."""
    name = certs.build_name((("CN", cn),))
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(minutes=5))
               .not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True))
    return builder.sign(key, certs._hash_for(key))


def test_the_control_a_forged_leaf_passes_under_an_unconstrained_anchor(key_cache, openssl, tmp_path):
    """Proves the two checks above can fail for the right reason: without constraints the forgery verifies."""
    key = key_cache("nc-unconstrained")
    old_ca = unconstrained_ca(key)
    forged = forge(old_ca, key, key_cache, "github.com")
    assert openssl_verify(openssl, tmp_path, old_ca, (forged,), "github.com").returncode == 0
    webpki_verify(old_ca, (forged,), "github.com")


@pytest.mark.parametrize("name", [s.partition(":")[2] for s in SANS])
def test_the_served_ca_chain_passes_openssl_strict_and_the_cryptography_verifier(anchors, openssl, tmp_path, name):
    anchor, _, chain = anchors["ca"]
    out = openssl_verify(openssl, tmp_path, anchor, chain, name)
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout + out.stderr
    assert webpki_verify(anchor, chain, name)[-1] == anchor


def test_the_self_signed_cert_passes_openssl_but_not_webpki_verifiers(anchors, openssl, tmp_path):
    """The trade-off README states for mode: self-signed: Go/OpenSSL accept it; webpki-style clients
    (cryptography, rustls, Firefox/NSS) refuse a CA:TRUE end-entity certificate."""
    anchor, _, chain = anchors["self-signed"]
    out = openssl_verify(openssl, tmp_path, anchor, chain, "registry.test")
    assert out.returncode == 0, out.stdout + out.stderr
    with pytest.raises(verification.VerificationError, match=r"basicConstraints\.cA must not be asserted"):
        webpki_verify(anchor, chain, "registry.test")


def test_an_ip_only_registry_chain_passes_openssl_with_an_ip_common_name(key_cache, openssl, tmp_path):
    """OpenSSL also checks a host-like CN against DNS constraints; the closed DNS subtree must not trip it."""
    spec = make_spec(("IP:192.0.2.10",), subject=(("CN", "192.0.2.10"),))
    ca_key = key_cache("nc-ip-ca")
    root = certs.build_ca(certs.build_name((("CN", "192.0.2.10 CA"),)), ca_key, NOW, 30, spec.sans)
    leaf = certs.build_leaf(spec, key_cache("nc-ip-leaf"), root, ca_key, NOW)
    assert leaf.subject == certs.build_name((("O", "registry-tls"),))  # the IP is in the SAN only
    out = openssl_verify(openssl, tmp_path, root, (leaf, root), "192.0.2.10")
    assert out.returncode == 0, out.stdout + out.stderr
    webpki_verify(root, (leaf, root), "192.0.2.10")


# --------------------------------------------------------------------------- pkilint


def pkilint(tool: str, *files: Path) -> subprocess.CompletedProcess:
    path = shutil.which(tool) or str(Path(__import__("sys").executable).parent / tool)
    return run([path, "lint", "-s", "WARNING", *map(str, files)])


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-3072", "ed25519"])
def test_pkilint_rfc5280_finds_nothing_in_any_certificate_kind(tmp_path, key_type):
    spec = make_spec(SANS, key_type=key_type)
    ca = Pki(make_cert_cfg(tmp_path / "ca", spec, mode="ca")).generate(NOW)
    Pki(make_cert_cfg(tmp_path / "ss", spec, mode="self-signed")).generate(NOW)
    (tmp_path / "leaf.pem").write_bytes(certs.cert_pem(ca.leaf))
    kinds = {"ca root": tmp_path / "ca" / "ca.crt", "ca leaf": tmp_path / "leaf.pem",
             "self-signed": tmp_path / "ss" / "registry.crt"}
    for kind, path in kinds.items():
        out = pkilint("lint_pkix_cert", path)
        assert out.returncode == 0 and out.stdout.strip() == "", (kind, out.stdout, out.stderr)
    chain = pkilint("lint_pkix_signer_signee_cert_chain", kinds["ca root"], kinds["ca leaf"])
    assert chain.returncode == 0 and chain.stdout.strip() == "", (chain.stdout, chain.stderr)


def test_pkilint_can_fail(tmp_path, key_cache):
    """The control: a single-label SAN is an RFC 5280 syntax ERROR for pkilint, so the test above can fail."""
    spec = make_spec(("DNS:localhost",))
    (tmp_path / "c.pem").write_bytes(certs.cert_pem(certs.build_self_signed(spec, key_cache("lint"), NOW)))
    out = pkilint("lint_pkix_cert", tmp_path / "c.pem")
    assert out.returncode != 0 and "invalid_domain_name_syntax (ERROR)" in out.stdout


# --------------------------------------------------------------------------- inventory and pki


def write_inventory(tmp_path: Path, certificate: str, trust: str = "[docker]") -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text("registry: {host: registry.test}\n"
                    f"certificate: {{san: [DNS:registry.test], key_type: ecdsa-p256{certificate}}}\n"
                    f"clients: {{hosts: {{c1: {{trust: {trust}}}, c2: {{trust: [docker]}}}}}}\n")
    return path


def test_the_default_is_a_90_day_leaf_from_a_ca_renewed_at_two_thirds(tmp_path):
    cert = inventory.load(write_inventory(tmp_path, "")).certificate
    assert (cert.mode, cert.spec.days, cert.renew_before_days, cert.ca_days) == ("ca", 90, 30, 1825)
    ss = inventory.load(write_inventory(tmp_path, ", mode: self-signed")).certificate
    assert (ss.mode, ss.spec.days, ss.renew_before_days) == ("self-signed", 365, 122)


def test_self_signed_with_trust_os_is_refused_in_one_line(tmp_path):
    path = write_inventory(tmp_path, ", mode: self-signed", trust="[docker, os]")
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:2:")
    assert "certificate.mode: self-signed with trust: os on c1" in message
    assert "accept_self_signed_os_trust: true" in message
    assert err.value.exit_code == 2


def test_self_signed_with_trust_os_in_a_client_group_no_host_uses_is_refused_too(tmp_path):
    """export.cloud-init hands a group's settings to machines the inventory does not list: a group with
    trust: os is refused under self-signed even when no listed host is in it; accepting the risk allows it."""
    path = tmp_path / "inventory.yaml"
    text = ("registry: {{host: registry.test}}\n"
            "certificate: {{san: [DNS:registry.test], key_type: ecdsa-p256, mode: self-signed{accept}}}\n"
            "clients:\n  groups: {{builders: {{trust: [docker, os]}}}}\n  hosts: {{c1: {{trust: [docker]}}}}\n")
    path.write_text(text.format(accept=""))
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:2:") and err.value.exit_code == 2
    assert "certificate.mode: self-signed with trust: os on builders" in message
    path.write_text(text.format(accept=", accept_self_signed_os_trust: true"))
    assert inventory.load(path).groups["builders"].trust == ("docker", "os")


def test_self_signed_with_trust_os_is_allowed_when_the_inventory_accepts_the_risk(tmp_path):
    path = write_inventory(tmp_path, ", mode: self-signed, accept_self_signed_os_trust: true", trust="[docker, os]")
    assert inventory.load(path).clients[0].trust == ("docker", "os")
    assert inventory.load(write_inventory(tmp_path, "", trust="[os]")).certificate.mode == "ca"


def test_files_of_another_mode_are_refused_with_the_migration_command(tmp_path):
    spec = make_spec(("DNS:registry.test",))
    Pki(make_cert_cfg(tmp_path, spec, mode="self-signed")).generate(NOW)
    p = Pki(make_cert_cfg(tmp_path, spec, mode="ca"))
    material = p.load()
    assert material.mode == "self-signed" and material.anchor == material.leaf
    with pytest.raises(InputError, match=r"the files are self-signed while certificate.mode is ca; run "
                                         + re.escape(command("rotate --ca"))):
        p.ensure(NOW, renew=True)


def test_a_registry_name_change_in_ca_mode_is_a_ca_rotation(tmp_path):
    Pki(make_cert_cfg(tmp_path, make_spec(("DNS:registry.test",)), mode="ca")).generate(NOW)
    renamed = Pki(make_cert_cfg(tmp_path, make_spec(("DNS:registry.test", "DNS:new.test")), mode="ca"))
    with pytest.raises(InputError, match=r"permit only DNS:registry.test, IP:0.0.0.0/32, IP:::/128, not the names.*"
                                         r"a registry name change is a CA rotation.*" + re.escape(command("rotate --ca"))):
        renamed.ensure(NOW, renew=True)
    with pytest.raises(CertificateError, match=r"needs a new CA: " + re.escape(command("rotate --ca"))):
        renamed.generate(NOW, force=True)  # signing a leaf the CA's constraints would refuse


def test_a_ca_without_constraints_from_an_older_version_is_served_with_a_warning(tmp_path, key_cache):
    spec = make_spec(("DNS:registry.test",))
    ca_key, leaf_key = key_cache("old-ca"), key_cache("old-leaf")
    old = unconstrained_ca(ca_key)
    leaf = certs.build_leaf(make_spec(("DNS:registry.test",), days=20), leaf_key, old, ca_key, NOW)
    for name, data in (("ca.crt", certs.cert_pem(old)), ("ca.key", certs.private_key_pem(ca_key)),
                       ("registry.crt", certs.cert_pem(leaf) + certs.cert_pem(old)),
                       ("registry.key", certs.private_key_pem(leaf_key))):
        (tmp_path / name).write_bytes(data)
    p = Pki(make_cert_cfg(tmp_path, spec, mode="ca"))
    outcome = p.ensure(NOW)
    assert not outcome.changed
    assert p.warnings == [(f"{tmp_path / 'ca.crt'} has no name constraints: its key can sign for any name; "
                          f"{command('rotate --ca')} replaces it with a CA limited to the registry's names")]


# --------------------------------------------------------------------------- CA key passphrase


class Asked:
    def __init__(self, value: bytes):
        self.value, self.calls = value, []

    def __call__(self, source: Path, new: bool) -> bytes:
        self.calls.append((source.name, new))
        return self.value


def test_the_ca_key_is_encrypted_and_the_passphrase_asked_only_to_sign(tmp_path):
    spec = make_spec(("DNS:registry.test",))
    cfg = make_cert_cfg(tmp_path, spec, mode="ca")
    object.__setattr__(cfg, "encrypt_ca_key", True)
    asked = Asked(b"correct horse battery staple")
    p = Pki(cfg, passphrase=asked)
    first = p.generate(NOW)
    assert asked.calls == [("ca.key", True)]
    pem = p.ca_key_path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(CertificateError, match="encrypted"):
        certs.load_key(pem, "ca.key")
    assert p.load().fingerprint == first.fingerprint and len(asked.calls) == 1  # reading signs nothing
    assert p.ensure(NOW).changed is False and len(asked.calls) == 1             # nor does a deploy that fits
    p.generate(NOW, force=True)                                                 # a new leaf is signed
    assert asked.calls[1:] == [("ca.key", False)]
    with pytest.raises(CertificateError, match=r"ca\.key: wrong passphrase"):
        Pki(cfg, passphrase=Asked(b"wrong wrong wrong")).generate(NOW, force=True)


def test_the_passphrase_comes_from_the_environment_never_a_flag(tmp_path, monkeypatch):
    from fabfile import pki as P

    monkeypatch.setenv(PASSPHRASE_ENV, "from-the-environment")
    assert P.ask_passphrase(tmp_path / "ca.key", True) == b"from-the-environment"
    monkeypatch.setenv(PASSPHRASE_ENV, "short")
    with pytest.raises(InputError, match="at least 12"):
        P.ask_passphrase(tmp_path / "ca.key", True)
    monkeypatch.delenv(PASSPHRASE_ENV)
    monkeypatch.setattr("sys.stdin", io.StringIO())   # not a terminal
    with pytest.raises(InputError, match=f"the CA key is encrypted; set {PASSPHRASE_ENV} or run on a terminal"):
        P.ask_passphrase(tmp_path / "ca.key", False)
    from fabfile.redact import redact
    assert redact("x from-the-environment y") == "x *** y"


def test_ctrl_d_at_the_passphrase_prompt_is_an_input_error(tmp_path, monkeypatch):
    from fabfile import pki as P

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def ctrl_d(prompt: str) -> str:
        raise EOFError

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr(P.getpass, "getpass", ctrl_d)
    with pytest.raises(InputError, match=r"ca\.key: no passphrase given"):
        P.ask_passphrase(tmp_path / "ca.key", True)
