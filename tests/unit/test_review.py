"""Security review findings closed in code, one test each (ids from shared/reviews/security.md).

H1 and M2 are in test_anchor.py / test_rotate (pending anchor); the rest are here as data:
hostile inventory values refused with the key named (M1, M4, L2, L9, L10), user names with a
trailing newline (L5), and an upload script that reports a failed install of any file (L1).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from fabfile import htpasswd, inventory
from fabfile.errors import InputError, InventoryError
from fabfile.transport import install_line

BASE = {
    "registry": "{host: registry.test%s}",
    "certificate": "{san: [DNS:registry.test, IP:192.0.2.10], key_type: ecdsa-p256}",
    "clients": "{hosts: {c1: {address: 192.0.2.21%s}}}",
}


def write(tmp_path: Path, registry: str = "", client: str = "", hosts: str | None = None) -> Path:
    path = tmp_path / "inventory.yaml"
    clients = hosts if hosts is not None else BASE["clients"] % client
    path.write_text(f"registry: {BASE['registry'] % registry}\ncertificate: {BASE['certificate']}\n"
                    f"clients: {clients}\n")
    return path


def test_the_base_inventory_loads(tmp_path):
    inv = inventory.load(write(tmp_path))
    assert inv.registry.container == "registry" and inv.clients[0].registry_names == ("registry.test", "192.0.2.10")


@pytest.mark.parametrize("case, registry, client, key, message", [
    ("M1-registry-name-injection", "", ", registry_names: ['registry.test; id']",
     "registry_names", "label 'test; id' must be"),
    ("M1-registry-name-wildcard", "", ", registry_names: ['*.test']", "registry_names", "wildcards are refused"),
    ("M4-container-option", ", container: --privileged", "", "registry.container", "a container name is"),
    ("M4-image-command", ", image: 'registry:2 $(id)'", "", "registry.image", "not an image reference"),
    ("M4-image-option", ", image: '-v/:/host'", "", "registry.image", "not an image reference"),
    ("M4-realm-quote", ", realm: 'R\" x'", "", "registry.realm", "printable ASCII without"),
    ("M4-env-non-ascii", ", env: {ÄBC: x}", "", "registry.env", "is not a valid environment variable name"),
    ("L9-env-overrides-tls", ", env: {REGISTRY_HTTP_TLS_MINIMUMTLS: tls1.0}", "", "registry.env",
     "'REGISTRY_HTTP_TLS_MINIMUMTLS' is set by registry-tls"),
    ("L9-env-overrides-auth", ", env: {REGISTRY_AUTH_HTPASSWD_PATH: /data/auth/other}", "", "registry.env",
     "is set by registry-tls"),
    ("L9-env-overrides-addr", ", env: {registry_http_addr: '0.0.0.0:80'}", "", "registry.env", "is set by registry-tls"),
    ("M3-env-value-newline", ', env: {REGISTRY_HTTP_SECRET: "a\\nREGISTRY_AUTH=none"}', "", "registry.env",
     "REGISTRY_HTTP_SECRET: control character"),
    ("L2-data-dir-dotdot", ", data_dir: /etc/..", "", "registry.data_dir", "no '.', '..', ':'"),
    ("L2-data-dir-dot", ", data_dir: /.", "", "registry.data_dir", "no '.', '..', ':'"),
    ("L2-data-dir-colon", ", data_dir: '/srv/a:b'", "", "registry.data_dir", "no '.', '..', ':'"),
    ("L2-data-dir-newline", ', data_dir: "/srv/a\\nb"', "", "registry.data_dir", "control character"),
    ("L2-data-dir-system", ", data_dir: /etc", "", "registry.data_dir", "is a system folder"),
    ("L2-data-dir-tmp", ", data_dir: /tmp/", "", "registry.data_dir", "is a system folder"),
    ("L10-ssh-user-option", ", ssh_user: 'root -oProxyCommand=id'", "", "registry.ssh_user", "a user name is"),
    ("L10-client-user", "", ", ssh_user: '-oProxyCommand=id'", "ssh_user", "a user name is"),
    ("L10-gateway-user", ", gateway: 'a b@jump'", "", "registry.gateway", "expected [user@]host"),
    ("L10-gateway-user-dash", ", gateway: '-oX@jump'", "", "registry.gateway", "a user name is"),
    ("L10-zone-id", ", address: 'fe80::1%eth0'", "", "registry.address", "zone indexes"),
])
def test_hostile_inventory_values_are_refused_with_the_key_named(tmp_path, case, registry, client, key, message):
    with pytest.raises(InventoryError) as err:
        inventory.load(write(tmp_path, registry, client))
    text = str(err.value)
    assert key in text and message in text and "\n" not in text, text


def test_L10_a_client_name_used_as_ssh_address_must_be_a_host_name(tmp_path):
    path = write(tmp_path, hosts="{hosts: {'evil host; $(id)': {}}}")
    with pytest.raises(InventoryError, match=r"clients\.hosts\.evil host; \$\(id\): .*a client without address: must "
                                             r"be named by its DNS name or IP"):
        inventory.load(path)
    assert inventory.load(write(tmp_path, hosts="{hosts: {'odd name': {address: 192.0.2.5}}}")).clients[0].name \
        == "odd name"  # with an address, the name is only a label
    assert inventory.load(write(tmp_path, hosts="{groups: {k8s_nodes: {}}, hosts: {c1.example: {groups: [k8s_nodes]}}}"))


def test_L2_data_dir_is_normalised(tmp_path):
    assert inventory.load(write(tmp_path, ", data_dir: /srv//registry/")).registry.data_dir == "/srv/registry"


def test_L9_other_registry_settings_stay_allowed(tmp_path):
    inv = inventory.load(write(tmp_path, ", env: {REGISTRY_STORAGE_DELETE_ENABLED: 'true', REGISTRY_HTTP_SECRET: s}"))
    assert dict(inv.registry.env)["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"


@pytest.mark.parametrize("name", ["alice\n", "-rf", "al ice", "a:b", ""])
def test_L5_user_names_with_a_trailing_newline_or_an_option_are_refused(name):
    with pytest.raises(InputError, match="user name"):
        htpasswd.check_user(name)
    assert htpasswd.check_user("alice.b@corp") == "alice.b@corp"


def test_L1_a_failed_install_of_any_file_fails_the_upload_script(tmp_path):
    """The real install/mv under sh: file 0's folder is missing, file 1 is fine; the script must fail."""
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    staged = [tmp_path / "0", tmp_path / "1"]
    for f in staged:
        f.write_bytes(b"data")
    (tmp_path / "ok").mkdir()
    dests = [str(tmp_path / "missing-dir" / "registry_auth.key"), str(tmp_path / "ok" / "registry_auth.crt")]
    script = "\n".join(["set -e", *(install_line(str(s), d, 0o600, owner, group) for s, d in zip(staged, dests))])
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "missing-dir" in result.stderr
    control = "\n".join(["set -e", *(install_line(str(s), d, 0o600, owner, group)
                                     for s, d in zip(staged, [dests[1], dests[1]]))])
    staged[0].write_bytes(b"data")
    assert subprocess.run(["sh", "-c", control], capture_output=True, check=False).returncode == 0
    assert (tmp_path / "ok" / "registry_auth.crt").stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- local state (M2, L3)


def local_state(tmp_path: Path):
    from fabfile.state import LocalState

    inv = inventory.load(write(tmp_path))
    return inv, LocalState(inv)


def test_L3_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    inv, state = local_state(tmp_path)
    inv.state_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    (inv.state_dir / "lock").symlink_to(victim)
    with pytest.raises(InputError, match="cannot open the lock file"), state.lock():
        pass
    assert victim.read_text() == "precious data"


def test_L3_a_symlinked_log_is_refused(tmp_path):
    from fabfile import logs

    (tmp_path / "state" / "log").mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    (tmp_path / "state" / "log" / "registry-tls.log").symlink_to(victim)
    with pytest.raises(InputError, match="cannot open the log file"):
        logs.setup(tmp_path / "state")
    assert victim.read_text() == "precious data"


def test_M2_L3_a_state_or_pki_dir_others_can_write_is_refused(tmp_path):
    inv, state = local_state(tmp_path)
    inv.state_dir.mkdir(mode=0o700)
    inv.state_dir.chmod(0o770)
    with pytest.raises(InputError, match=r"\.registry-tls: writable by group or others \(mode 0770\); chmod 700 it"), \
            state.lock():
        pass
    inv.state_dir.chmod(0o700)
    inv.certificate.pki_dir.mkdir(mode=0o700)
    inv.certificate.pki_dir.chmod(0o777)
    with pytest.raises(InputError, match=r"pki: writable by group or others"), state.lock():
        pass
    inv.certificate.pki_dir.chmod(0o700)
    with state.lock():
        pass


@pytest.mark.parametrize("which", ["pki_dir", "state_dir"])
def test_M2_L3_a_state_or_pki_dir_another_user_owns_is_refused(tmp_path, which):
    """A folder of keys or trust decisions owned by another uid is refused even with mode 0700 (its owner could
    change it). As root: the folder is chowned to nobody. Unprivileged (script/test runs tests/unit as nobody):
    pki_dir is a link to /, which root owns (checked before anything is created); state_dir must also be
    writable to get that far, and no such folder of another user can be made without root."""
    inv, state = local_state(tmp_path)
    folder = inv.certificate.pki_dir if which == "pki_dir" else inv.state_dir
    if os.geteuid() == 0:
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
        owner = 65534
    elif which == "pki_dir":
        folder.symlink_to("/")
        owner = os.stat("/").st_uid
    else:
        pytest.skip("unprivileged: a state_dir of another user that this user may write needs chown (root)")
    with pytest.raises(InputError) as err, state.lock():
        pass
    assert str(err.value) == (f"{folder}: owned by uid {owner}, not by this user ({os.geteuid()}); "
                              "it holds keys and trust decisions")
    assert not (inv.state_dir / "lock").exists()


def test_M2_the_pending_anchor_comes_from_pki_next_never_from_rotation_json(tmp_path):
    """The review's reproduction: rotation.json names an unrelated CA; clients must never get it."""
    from fabfile import certs
    from fabfile.pki import Pki
    from fabfile.session import open_session
    from fabfile.state import Rotation

    s = open_session(write(tmp_path))
    current = s.pki.generate(s.now)
    nxt = Pki(s.inv.certificate, root=s.pki.root / "next").generate(s.now, new_ca=True)
    stranger = certs.cert_pem(certs.build_self_signed(s.inv.certificate.spec, certs.generate_key("ecdsa-p256"), s.now))
    record = Rotation(kind="anchor", phase="trusted", old_fingerprint=current.fingerprint,
                      new_fingerprint=nxt.fingerprint, new_anchor_pem=stranger.decode(),
                      old_anchor_pem=current.anchor_pem.decode())
    s.state.save_rotation(record)
    assert [a.pem for a in s.anchors(current)] == [current.anchor_pem, nxt.anchor_pem]  # not the stranger
    record.new_fingerprint = "AA:" * 31 + "AA"
    s.state.save_rotation(record)
    with pytest.raises(InputError, match=r"next/registry.crt: does not hold the certificate rotation.json records"):
        s.anchors(current)


def test_M3_registry_env_values_of_secret_keys_are_masked_in_every_log_line_the_others_stay_readable(tmp_path):
    from fabfile import deploy as D
    from fabfile.redact import redact
    from fabfile.session import open_session

    s = open_session(write(tmp_path, ", env: {REGISTRY_HTTP_SECRET: s3cr3t-http-secret-value, "
                                     "REGISTRY_STORAGE: m3-bogus-driver}"))
    line = "docker run -e REGISTRY_HTTP_SECRET=s3cr3t-http-secret-value -e REGISTRY_STORAGE=m3-bogus-driver registry:2"
    assert redact(line) == line  # not yet known
    D.registry_job(s, s.pki.build(s.now), dry_run=True)
    assert redact(line) == "docker run -e REGISTRY_HTTP_SECRET=*** -e REGISTRY_STORAGE=m3-bogus-driver registry:2"


@pytest.mark.parametrize(("key", "value", "masked"), [
    ("REGISTRY_HTTP_SECRET", "http-secret-1", ["http-secret-1"]),
    ("REGISTRY_STORAGE_S3_SECRETKEY", "wJalrXUtnFEMI/K7MDENG", ["wJalrXUtnFEMI/K7MDENG"]),
    ("REGISTRY_STORAGE_S3_ACCESSKEY", "AKIAIOSFODNN7EXAMPLE", ["AKIAIOSFODNN7EXAMPLE"]),
    ("REGISTRY_STORAGE_S3_SESSIONTOKEN", "session-token-1", ["session-token-1"]),
    ("REGISTRY_PROXY_PASSWORD", "proxy-password", ["proxy-password"]),
    ("REGISTRY_REDIS_PASSWORD", "redis-password", ["redis-password"]),
    ("REGISTRY_STORAGE_AZURE_ACCOUNTKEY", "azure-account-key", ["azure-account-key"]),
    ("REGISTRY_STORAGE_GCS_KEYFILE", "/etc/gcs/key.json", ["/etc/gcs/key.json"]),
    ("REGISTRY_STORAGE_SWIFT_TRUSTID", "swift-trust-id", ["swift-trust-id"]),
    ("REGISTRY_STORAGE_OSS_ACCESSKEYSECRET", "oss-secret-1", ["oss-secret-1"]),
    ("REGISTRY_REPORTING_BUGSNAG_APIKEY", "bugsnag-api-key", ["bugsnag-api-key"]),
    ("registry_proxy_passwd", "lower-case-key", ["lower-case-key"]),   # any case
    ("REGISTRY_NOTIFICATIONS_HEADER_AUTHORIZATION", "Bearer abcdefgh", ["Bearer abcdefgh"]),
    ("REGISTRY_PROXY_REMOTEURL", "https://bob:pa55-word-xyz@hub.example", ["pa55-word-xyz"]),  # a URL's password
    ("REGISTRY_REDIS_ADDR", "redis://:redis-url-pass@redis:6379", ["redis-url-pass"]),
    ("REGISTRY_STORAGE", "bogus-driver", []),
    ("REGISTRY_STORAGE_S3_BUCKET", "images-bucket", []),
    ("REGISTRY_STORAGE_S3_REGIONENDPOINT", "https://s3.example:9000", []),
    ("REGISTRY_LOG_LEVEL", "loud", []),
    ("REGISTRY_HTTP_NET", "bogus", []),
    ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io", []),
])
def test_M3_env_values_masked_are_those_of_keys_naming_a_secret_and_passwords_in_urls(key, value, masked):
    from fabfile.inventory import env_secrets
    assert env_secrets([(key, value)]) == masked



def test_L6_a_short_secret_is_not_masked_by_substring_a_long_one_is():
    from fabfile import redact
    redact.register("docker", "Hunter2-long-secret")
    line = redact.redact("sudo -n -- sh -c 'systemctl restart docker'; password Hunter2-long-secret")
    assert line == "sudo -n -- sh -c 'systemctl restart docker'; password ***"


def test_L6_reprs_of_settings_and_jobs_hold_no_password_key_or_env_value(tmp_path, self_signed):
    from fabfile.pki import Material
    from fabfile.registry import DeployJob, desired
    from fabfile.transport import SshSettings

    from _support import make_registry
    HTPASSWD = b"registry-tls-health:$2b$10$" + b"h" * 53 + b"\n"

    assert "Hunter2-sudo" not in repr(SshSettings(known_hosts=tmp_path / "kh", sudo_password="Hunter2-sudo"))
    reg = make_registry(env=(("REGISTRY_HTTP_SECRET", "env-secret-value"),))
    cert, pkey = self_signed
    key = Material(chain=(cert,), key=pkey, anchor=cert)
    job = DeployJob(registry=reg, material=key, htpasswd=HTPASSWD, credentials=("health", "health-password"),
                    connect=lambda _: None)  # type: ignore[arg-type,return-value]
    want = desired(reg, key, HTPASSWD)
    for text in (repr(job), repr(want), repr(want.spec)):
        assert "health-password" not in text and "env-secret-value" not in text
        assert "PRIVATE KEY" not in text and HTPASSWD.decode().strip() not in text


@pytest.mark.parametrize("sep", [" ", "\t"], ids=["space", "tab"])
@pytest.mark.parametrize(("marker", "what"), [("@revoked", "revoked keys"),
                                              ("@cert-authority", "SSH host certificates")])
def test_L8_known_hosts_markers_are_refused_in_one_line(tmp_path, marker, what, sep):
    import paramiko

    from fabfile.transport import _load_host_keys
    good = "[127.0.0.1]:22201 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    path = tmp_path / "known_hosts"
    path.write_text(good + "\n" + f"{marker}{sep}*.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsa\n")
    with pytest.raises(InputError) as err:
        _load_host_keys(paramiko.SSHClient(), path, "127.0.0.1", 22201)
    assert str(err.value) == (f"{path}:3: {marker} lines are not supported ({what}); remove the line, "
                              "or list the hosts' plain keys")
    path.write_text(good)   # without the marker line: loaded as before
    client = paramiko.SSHClient()
    _load_host_keys(client, path, "127.0.0.1", 22201)
    assert list(client.get_host_keys().lookup("[127.0.0.1]:22201") or {}) == ["ssh-ed25519"]


def test_M4_L5_the_readme_says_the_inventory_is_code_and_why_registry_passwords_have_no_minimum():
    """M4: restart_command and ssh_config's ProxyCommand are commands, so the README says to review them like
    code. L5: registry passwords have no minimum (the operator's policy) and the README says why; the CA
    passphrase's minimum is the code's."""
    from fabfile import pki

    from _support import REPO
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "The inventory and its ssh_config are code: review them like code." in readme
    assert "`restart_command` runs verbatim, as root" in readme and "`ProxyCommand`" in readme
    assert "Registry user passwords (`users.add`) have no minimum length: how long they must be is the operator's policy" in readme
    assert f"A new passphrase needs at least {pki.MIN_PASSPHRASE} characters" in readme
    with pytest.raises(InputError):
        htpasswd.check_password("")
    assert htpasswd.check_password("a") == "a"     # no minimum: the operator's policy


DIGEST = "@sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(("image", "ok"), [
    ("registry:2", True), ("localhost:5000/team/registry:2.8.3", True), (f"registry:2{DIGEST}", True),
    (f"registry{DIGEST}", True),
    ("Registry:2", False), ("registry:2+x", False), ("-registry:2", False), ("registry:2 --privileged", False),
    ("registry:2;id", False), ("registry@sha256:abc", False),
])
def test_M4_registry_image_and_kubernetes_image_follow_one_reference_rule(tmp_path, image, ok):
    """One definition (inventory.IMAGE_REFERENCE) for both keys: the same images pass and fail in each."""
    k8s = tmp_path / "k8s.yaml"
    k8s.write_text(write(tmp_path).read_text() + f"kubernetes: {{image: '{image}'}}\n")
    path = write(tmp_path, registry=f", image: '{image}'")
    for key, inv in (("registry.image", path), ("kubernetes.image", k8s)):
        if ok:
            inventory.load(inv)
        else:
            with pytest.raises(InventoryError, match=rf"{key}: '.*':? (is )?not an image reference"):
                inventory.load(inv)
