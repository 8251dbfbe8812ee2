"""The operator's PKI folder: atomic 0600/0644 writes, no silent overwrite, pair checks (F08),
reuse vs renew (F26/F07), and a CA that survives leaf regeneration.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from fabfile import certs, inventory, localfs
from fabfile.errors import CertificateError, InputError
from fabfile.pki import Pki

from _support import NOW, make_cert_cfg, make_spec

DAY = dt.timedelta(days=1)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def pki_dir(tmp_path) -> Path:
    return tmp_path / "pki"


def make_pki(root: Path, *, mode: str = "self-signed", **spec_kw) -> Pki:
    return Pki(make_cert_cfg(root, make_spec(**spec_kw), mode=mode))


# --------------------------------------------------------------------------- generate / write


def test_F24_generate_writes_key_0600_cert_0644_and_no_temp_files(pki_dir):
    p = make_pki(pki_dir)
    material = p.generate(NOW)
    assert sorted(p.name for p in pki_dir.iterdir()) == ["registry.crt", "registry.key"]
    assert mode_of(p.key_path) == 0o600 and mode_of(p.cert_path) == 0o644
    assert mode_of(pki_dir) == 0o700
    assert p.cert_path.read_bytes() == material.cert_pem == material.anchor_pem
    assert certs.same_public_key(material.leaf, certs.load_key(p.key_path.read_bytes(), "k"))
    loaded = p.load()
    assert loaded.fingerprint == material.fingerprint and loaded.anchor_fingerprint == material.fingerprint


def test_F24_temp_file_has_the_final_mode_before_the_rename(tmp_path, monkeypatch):
    """The key is never world-readable, not even for a moment, whatever the umask."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(dst).name, mode_of(Path(src))))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    old = os.umask(0)
    try:
        localfs.atomic_write(tmp_path / "registry.key", b"secret", 0o600)
        os.umask(0o077)
        localfs.atomic_write(tmp_path / "registry.crt", b"public", 0o644)  # chmod after open: not narrowed by umask
    finally:
        os.umask(old)
    assert seen[0][1:] == ("registry.key", 0o600) and seen[0][0].startswith(".registry.key.")
    assert seen[1][1:] == ("registry.crt", 0o644)
    assert mode_of(tmp_path / "registry.crt") == 0o644


def test_F24_a_crash_during_the_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "registry.key"
    localfs.atomic_write(target, b"old", 0o600)

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(InputError, match=r"registry\.key: cannot write: No space left"):  # one line, exit 2
        localfs.atomic_write(target, b"new", 0o600)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["registry.key"]  # no temp file left behind


def test_generate_refuses_to_overwrite_without_force(pki_dir):
    p = make_pki(pki_dir)
    first = p.generate(NOW)
    with pytest.raises(InputError, match=r"registry\.crt: exists; pass --force"):
        p.generate(NOW)
    assert p.load().fingerprint == first.fingerprint  # untouched
    second = p.generate(NOW, force=True)
    assert second.fingerprint != first.fingerprint == first.fingerprint
    assert p.load().fingerprint == second.fingerprint


def test_generate_refuses_when_only_the_key_is_left(pki_dir):
    p = make_pki(pki_dir)
    p.generate(NOW)
    p.cert_path.unlink()
    with pytest.raises(InputError, match="pass --force"):
        p.generate(NOW)


def test_F07_generate_refuses_more_than_825_days_unless_forced(pki_dir):
    p = make_pki(pki_dir, days=900)
    with pytest.raises(CertificateError, match="825"):
        p.generate(NOW)
    assert not p.exists()
    material = p.generate(NOW, force=True)
    assert material.leaf.not_valid_after_utc == NOW + 900 * DAY
    # the forced lifetime is what the inventory asks: later deploys reuse it (no --renew loop)
    again = p.ensure(NOW + DAY)
    assert not again.changed and again.material.fingerprint == material.fingerprint


def test_material_repr_never_shows_key_material(pki_dir):
    material = make_pki(pki_dir).generate(NOW)
    text = repr(material)
    assert "PRIVATE" not in text and material.key_pem.decode().splitlines()[1] not in text
    assert material.fingerprint[:23] in text


# --------------------------------------------------------------------------- load / F08


def test_load_returns_none_for_an_empty_folder(pki_dir):
    assert make_pki(pki_dir).load() is None


@pytest.mark.parametrize(("remove", "missing", "present"), [
    ("registry.key", "registry.key", "registry.crt"),
    ("registry.crt", "registry.crt", "registry.key"),
])
def test_F08_load_detects_half_a_pair(pki_dir, remove, missing, present):
    p = make_pki(pki_dir)
    p.generate(NOW)
    (pki_dir / remove).unlink()
    with pytest.raises(CertificateError) as err:
        p.load()
    assert str(err.value).startswith(f"{pki_dir / missing}: missing while {present} exists")


def test_F08_load_detects_a_key_that_does_not_match(pki_dir, tmp_path):
    p = make_pki(pki_dir)
    p.generate(NOW)
    other = make_pki(tmp_path / "other")
    other.generate(NOW)
    p.key_path.write_bytes(other.key_path.read_bytes())  # a BYO/corrupted pair
    with pytest.raises(CertificateError) as err:
        p.load()
    assert "does not match registry.crt" in str(err.value)
    assert "private key does not match public key" in str(err.value)


@pytest.mark.parametrize(("name", "data", "fragment"), [
    ("registry.crt", b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
     "registry.crt: not a readable PEM certificate"),
    ("registry.key", b"not a key", "registry.key: not a readable PEM private key"),
])
def test_F08_load_reports_a_corrupted_file(pki_dir, name, data, fragment):
    p = make_pki(pki_dir)
    p.generate(NOW)
    (pki_dir / name).write_bytes(data)
    with pytest.raises(CertificateError, match=fragment):
        p.load()


# --------------------------------------------------------------------------- ensure (deploy)


def test_F26_ensure_generates_once_then_reuses(pki_dir):
    p = make_pki(pki_dir)
    first = p.ensure(NOW)
    assert first.changed and first.message.startswith(f"generated {p.cert_path}")
    before = (p.cert_path.stat().st_mtime_ns, p.key_path.stat().st_mtime_ns)
    again = p.ensure(NOW + DAY)
    assert not again.changed
    assert again.material.fingerprint == first.material.fingerprint
    assert (p.cert_path.stat().st_mtime_ns, p.key_path.stat().st_mtime_ns) == before  # not rewritten
    assert again.message.endswith("is valid and matches the inventory (364 days left)")


def test_ensure_refuses_a_san_change_without_renew(pki_dir):
    first = make_pki(pki_dir).ensure(NOW).material
    changed = make_pki(pki_dir, sans=("DNS:registry.test", "DNS:new.test", "IP:127.0.0.1"))
    with pytest.raises(InputError) as err:
        changed.ensure(NOW)
    assert "SANs differ: add DNS:new.test; drop DNS:localhost, IP:::1" in str(err.value)
    assert "--renew" in str(err.value)
    assert changed.load().fingerprint == first.fingerprint  # nothing written
    renewed = changed.ensure(NOW, renew=True)
    assert renewed.changed and renewed.message.startswith(f"renewed {changed.cert_path}: SANs differ")
    assert certs.cert_sans(renewed.material.leaf) == ("DNS:registry.test", "DNS:new.test", "IP:127.0.0.1")
    assert changed.ensure(NOW).changed is False


def test_ensure_refuses_an_expired_certificate_without_renew(pki_dir):
    p = make_pki(pki_dir, days=30)
    p.generate(NOW - 60 * DAY)
    with pytest.raises(InputError, match=r"expired on .*--renew"):
        p.ensure(NOW)
    assert p.ensure(NOW, renew=True).material.leaf.not_valid_after_utc == NOW + 30 * DAY


def test_F07_renew_does_not_bypass_the_825_day_limit(pki_dir):
    """--renew replaces the certificate; it is not the --force that allows a lifetime Apple refuses."""
    first = make_pki(pki_dir).generate(NOW)
    longer = make_pki(pki_dir, days=900, sans=("DNS:registry.test",))
    with pytest.raises(CertificateError) as err:
        longer.ensure(NOW, renew=True)
    assert "valid more than 825 days; lower certificate.days or pass --force" in str(err.value)
    assert longer.load().fingerprint == first.fingerprint


def test_F08_ensure_refuses_a_mismatched_pair_even_with_renew(pki_dir, tmp_path):
    p = make_pki(pki_dir)
    p.generate(NOW)
    other = make_pki(tmp_path / "other")
    other.generate(NOW)
    p.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(CertificateError, match="private key does not match"):
        p.ensure(NOW, renew=True)


# --------------------------------------------------------------------------- CA mode


def test_ca_mode_layout_and_anchor(pki_dir):
    p = make_pki(pki_dir, mode="ca")
    material = p.generate(NOW)
    assert sorted(p.name for p in pki_dir.iterdir()) == ["ca.crt", "ca.key", "registry.crt", "registry.key"]
    assert mode_of(p.ca_key_path) == 0o600 and mode_of(p.ca_cert_path) == 0o644
    chain = x509.load_pem_x509_certificates(p.cert_path.read_bytes())
    assert [c.subject for c in chain] == [material.leaf.subject, material.anchor.subject]  # leaf + CA served
    assert p.ca_cert_path.read_bytes() == material.anchor_pem
    assert material.anchor_fingerprint != material.fingerprint
    material.leaf.verify_directly_issued_by(material.anchor)
    loaded = p.load()
    assert loaded.anchor_fingerprint == material.anchor_fingerprint
    assert p.problems(loaded, NOW) == []


def test_ca_mode_keeps_the_ca_across_a_leaf_regeneration(pki_dir):
    p = make_pki(pki_dir, mode="ca")
    first = p.generate(NOW)
    ca_bytes = p.ca_cert_path.read_bytes(), p.ca_key_path.read_bytes()
    second = p.generate(NOW, force=True)
    assert (p.ca_cert_path.read_bytes(), p.ca_key_path.read_bytes()) == ca_bytes
    assert second.fingerprint != first.fingerprint
    assert second.anchor_fingerprint == first.anchor_fingerprint  # clients need no change
    renewed = make_pki(pki_dir, mode="ca", key_type="ecdsa-p384").ensure(NOW, renew=True)
    assert renewed.changed and renewed.material.anchor_fingerprint == first.anchor_fingerprint
    third = p.generate(NOW, force=True, new_ca=True)
    assert third.anchor_fingerprint != first.anchor_fingerprint


def test_ca_mode_without_ca_crt_is_an_error(pki_dir):
    p = make_pki(pki_dir, mode="ca")
    p.generate(NOW)
    p.ca_cert_path.unlink()
    with pytest.raises(CertificateError, match=r"ca\.crt: missing \(registry\.crt is signed by a CA\)"):
        p.load()


def test_a_long_registry_host_generates(tmp_path):
    host = "a" * 40 + "." + "b" * 30 + ".example"
    path = tmp_path / "inventory.yaml"
    path.write_text(f"registry: {{host: {host}}}\ncertificate: {{san: [{host}], key_type: ecdsa-p256}}\n")
    inv = inventory.load(path)
    material = Pki(inv.certificate).generate(NOW)
    assert (tmp_path / "pki" / "registry.crt").exists()
    assert certs.lint(material.leaf, NOW, key=material.key, names=(host,)) == []
