"""Plans by identity: certificate fingerprints and SANs, users by name, container settings by key;
and the remote side of it (CERT/USER lines) run for real on a temp folder."""

from __future__ import annotations

import base64
import json
import os
import shutil

import pytest

from fabfile import certs
from fabfile import facts as F
from fabfile import registry as R
from fabfile.htpasswd import Htpasswd
from fabfile.pki import Material
from fabfile.registry.identity import CertChange, Identity, UserChange, cert_change, user_change, user_digests

from _support import NOW, make_registry, make_spec, run

HASH = "$2b$10$" + "h" * 53
HTPASSWD = f"registry-tls-health:{HASH}\nalice:{HASH.replace('h', 'a')}\n".encode()


def material_for(key_cache, sans, name="id") -> Material:
    key = key_cache(name)
    cert = certs.build_self_signed(make_spec(sans), key, NOW)
    return Material(chain=(cert,), key=key, anchor=cert)


@pytest.fixture(scope="module")
def old(key_cache):
    return material_for(key_cache, ("DNS:registry.test", "IP:127.0.0.1"), "old")


@pytest.fixture(scope="module")
def new(key_cache):
    return material_for(key_cache, ("DNS:registry.test", "DNS:registry.example", "IP:::1"), "new")


def test_cert_change_names_both_fingerprints_and_the_san_differences(old, new):
    change = cert_change(old.cert_pem, new.cert_pem)
    assert change == CertChange(old=old.fingerprint, new=new.fingerprint,
                                sans_added=("DNS:registry.example", "IP:::1"), sans_removed=("IP:127.0.0.1",))
    assert change.describe() == (f"certificate {old.fingerprint} -> {new.fingerprint} "
                                 "(SANs +DNS:registry.example +IP:::1 -IP:127.0.0.1)")


def test_cert_change_same_none_unreadable(old, new):
    assert cert_change(old.cert_pem, old.cert_pem) is None
    assert cert_change(None, new.cert_pem) == CertChange(None, new.fingerprint, certs.cert_sans(new.leaf), ())
    assert cert_change(b"garbage", new.cert_pem).describe().startswith("certificate none -> ")


def test_user_change_by_name_and_by_password_without_any_hash():
    before = user_digests((("alice", "h1"), ("bob", "h2"), ("carol", "h3")))
    after = user_digests((("alice", "h1"), ("bob", "h2-new"), ("dave", "h4")))
    change = user_change(before, after)
    assert change == UserChange(added=("dave",), removed=("carol",), password=("bob",))
    assert change.describe() == "users: add dave; remove carol; new password for bob"
    assert user_change(before, before) is None
    assert user_change(None, after) == UserChange(added=("alice", "bob", "dave"))
    assert "h2-new" not in json.dumps(Identity(users=change).to_json())


def desired(material, htpasswd=HTPASSWD, **kw) -> R.Desired:
    return R.desired(make_registry(**kw), material, htpasswd)


def output_for(d: R.Desired, *, cert_pem: bytes | None, htpasswd: bytes | None, container: R.ContainerSpec | None,
               link: str = "NONE") -> str:
    """What registry_script prints for a host holding cert_pem/htpasswd and a container made from spec."""
    lines = ["TIME 1767225600", *(f"M {p}" for p in d.paths), f"LINK {link}", "ENGINE up"]
    if cert_pem:
        lines.append("CERT " + base64.b64encode(cert_pem).decode())
    if htpasswd is not None:
        lines.append("USERS")
        lines += [f"USER {u} {digest}" for u, digest in user_digests(Htpasswd.parse(htpasswd.decode()).entries).items()]
    if container is not None:
        inspect = {"Id": "c" * 64, "Name": "/registry", "Image": "sha256:1", "State": {"Running": True},
                   "Config": {"Env": [f"{k}={v}" for k, v in container.env], "Labels": {R.SPEC_LABEL: container.digest}},
                   "Mounts": [{"Type": "bind", "Source": s, "Destination": t} for s, t, _ in container.mounts],
                   "HostConfig": {"PortBindings": {f"{container.port}/tcp": [{"HostPort": str(container.port)}]},
                                  "RestartPolicy": {"Name": container.restart_policy}}}
        lines.append("INSPECT " + json.dumps(inspect))
    return "\n".join(lines)


def test_plan_after_a_san_change_shows_both_fingerprints_users_and_setting_keys(old, new):
    before = desired(old, htpasswd=HTPASSWD, env=(("REGISTRY_STORAGE_S3_SECRETKEY", "s3cr3t-old"),))
    after = desired(new, htpasswd=HTPASSWD + f"bob:{HASH}\n".encode(),
                    env=(("REGISTRY_STORAGE_S3_SECRETKEY", "s3cr3t-new"),))
    facts = F.parse_registry(output_for(after, cert_pem=old.cert_pem, htpasswd=HTPASSWD, container=before.spec,
                                        link=before.cert_dir_name), after.paths)
    todo = R.plan(after, facts)
    assert todo.identity.certificate.old == old.fingerprint and todo.identity.certificate.new == new.fingerprint
    assert todo.identity.users == UserChange(added=("bob",))
    assert todo.identity.container == ("env REGISTRY_STORAGE_S3_SECRETKEY", "certificate")
    lines = todo.describe()
    assert lines[:2] == [f"change {todo.identity.certificate.describe()}", "change users: add bob"]
    assert lines[-1] == "re-create container registry: env REGISTRY_STORAGE_S3_SECRETKEY; certificate"
    text = json.dumps(todo.identity.to_json()) + "\n".join(lines)
    assert "s3cr3t" not in text and HASH not in text


def test_plan_identity_is_empty_when_nothing_changes(old):
    d = desired(old)
    facts = F.parse_registry(output_for(d, cert_pem=old.cert_pem, htpasswd=HTPASSWD, container=d.spec,
                                        link=d.cert_dir_name), d.paths)
    assert R.plan(d, facts).identity == Identity(certificate=None, users=None, container=())


@pytest.mark.parametrize(("inspect_env", "expected"), [
    ({"REGISTRY_AUTH": "none"}, ["env REGISTRY_AUTH"]),
    ({"REGISTRY_STORAGE": "bogus-driver"}, ["env REGISTRY_STORAGE (removed)"]),
    ({}, ["configuration changed"]),   # same settings, another digest (e.g. a changed data_dir layout)
])
def test_container_differences_name_keys_never_values(old, inspect_env, expected):
    spec = desired(old).spec
    env = {**dict(spec.env), **inspect_env}
    have = F.ContainerFact(id="c", name="registry", image_id="i", running=True, restart_count=0,
                           labels={R.SPEC_LABEL: "0" * 16}, env=env,
                           volume_sources={t: ("bind", s) for s, t, _ in spec.mounts},
                           ports=(f"{spec.port}/tcp->{spec.port}",), restart_policy=spec.restart_policy)
    diffs = spec.differences(have)
    assert diffs == expected and "none" not in " ".join(diffs) and "bogus" not in " ".join(diffs)


def test_registry_script_prints_the_current_certificate_and_users_for_real(tmp_path, old):
    bash = shutil.which("bash")
    data = tmp_path / "data dir"
    (data / ".certs-x").mkdir(parents=True)
    (data / ".certs-x" / "registry_auth.crt").write_bytes(old.cert_pem)
    (data / "certs").symlink_to(".certs-x")
    ht = data / "auth" / "registry.password"
    ht.parent.mkdir()
    ht.write_bytes(HTPASSWD + b"# a comment\n\nno-colon-line\nlast:" + HASH.encode())  # no final newline
    os.chmod(ht, 0o600)
    script = F.registry_script("no-such-engine-xyz", str(data), "registry", "registry:2", (),
                               cert=str(data / "certs" / "registry_auth.crt"), htpasswd=str(ht))
    out = run([bash, "-c", script])
    assert out.returncode == 0, out.stderr
    assert HASH not in out.stdout
    facts = F.parse_registry(out.stdout)
    assert facts.cert_pem == old.cert_pem
    assert facts.users == user_digests(Htpasswd.parse(ht.read_text()).entries)
    assert list(facts.users) == ["registry-tls-health", "alice", "last"]
    ht.unlink()
    assert F.parse_registry(run([bash, "-c", script]).stdout).users is None


def test_a_certificate_the_run_will_make_is_named_not_given_an_invented_fingerprint(old):
    change = CertChange(old=old.fingerprint, new=None, sans_added=("DNS:new.test",))
    assert change.describe() == f"certificate {old.fingerprint} -> a new one made by the run (SANs +DNS:new.test)"
