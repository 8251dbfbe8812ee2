"""`inv registry.deploy` and `inv users.*` on the real registry host (issue: registry host)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.e2e.conftest import ENGINES, fleet_on, user_on
from tests.e2e.seed import seed_run, upload_seed_files
from tests.e2e.test_deploy import pull, push

pytestmark = pytest.mark.lab

def registry_files(fleet) -> str:
    return fleet.on("registry", "cd /var/lib/docker-registry && find . -printf '%p %m %u\\n' | sort").stdout


@pytest.mark.parametrize("lab_kind", ENGINES)
def test_F22_F26_bare_host_then_rerun_changes_nothing_container_id_stays(request, lab_kind):
    fleet = fleet_on(request, lab_kind)
    engine = fleet.engine
    user_on(fleet)
    result = fleet.inv("registry.deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-create container registry: no container yet" in result.stdout
    files = registry_files(fleet)
    assert "./certs 777 root" in files  # the symlink switched atomically
    key_line = next(line for line in files.splitlines() if line.endswith("registry_auth.key 600 root"))
    assert key_line.startswith("./.certs-")
    assert "./auth/registry.password 600 root" in files
    inspect = json.loads(fleet.on("registry", f"{engine} inspect registry").stdout)[0]
    env = dict(e.split("=", 1) for e in inspect["Config"]["Env"])
    assert env["REGISTRY_AUTH"] == "htpasswd" and env["REGISTRY_AUTH_HTPASSWD_REALM"] == "Registry Realm"
    assert env["REGISTRY_HTTP_TLS_KEY"] == "/data/certs/registry_auth.key"
    assert inspect["HostConfig"]["RestartPolicy"]["Name"] == "always"
    mounts = {m["Destination"]: (m["Type"], m["Source"]) for m in inspect["Mounts"]}
    assert mounts["/var/lib/registry"] == ("bind", "/var/lib/docker-registry/storage")  # no anonymous volume
    assert all(kind == "bind" for kind, _ in mounts.values())
    logs = fleet.on("registry", f"{engine} logs registry 2>&1").stdout
    assert "provisioning with default user" not in logs  # F22: htpasswd existed before the start
    assert "BEGIN" not in json.dumps(inspect)  # no key material in the container config
    container = fleet.container_id()

    again = fleet.inv("registry.deploy")
    assert again.returncode == 0 and "already as desired" in again.stdout
    assert fleet.container_id() == container
    assert registry_files(fleet) == files

    # M3: registry.env reaches the container through a 0600 env file, never the remote command line or a plan
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    fleet.edit(lambda d: d["registry"].__setitem__("env", {"REGISTRY_HTTP_SECRET": secret}))
    changed = fleet.inv("registry.deploy")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "env REGISTRY_HTTP_SECRET" in changed.stdout and secret not in changed.stdout + changed.stderr
    assert "./registry.env 600 root" in registry_files(fleet)
    inspect = json.loads(fleet.on("registry", f"{engine} inspect registry").stdout)[0]
    assert f"REGISTRY_HTTP_SECRET={secret}" in inspect["Config"]["Env"]   # the container gets it
    run_log = (fleet.tmp / "state" / "log" / "registry-tls.log").read_text()
    runs = [line for line in run_log.splitlines() if " run -d " in line]
    assert "--env-file /var/lib/docker-registry/registry.env" in runs[-1] and not any("***" in r for r in runs)
    assert secret not in run_log
    fleet.edit(lambda d: d["registry"].pop("env"))
    assert fleet.inv("registry.deploy").returncode == 0
    assert "registry.env" not in registry_files(fleet)   # emptied: no secret left on the host


@pytest.mark.parametrize("lab_kind", ENGINES)
def test_rotated_certificate_keeps_pushed_images(request, lab_kind):
    fleet = fleet_on(request, lab_kind)
    user = user_on(fleet)
    pusher, puller = fleet.docker_clients(2)   # the host-kinds lab: client1 both (the tag removed, then pulled)
    assert fleet.inv("deploy").returncode == 0
    assert push(fleet, pusher, *user).returncode == 0
    before = fleet.container_id()
    assert fleet.inv("cert.generate", "--force").returncode == 0
    result = fleet.inv("deploy")
    assert result.returncode == 0, result.stdout
    assert fleet.container_id() != before
    pulled = pull(fleet, puller, *user)
    assert pulled.returncode == 0, pulled.stderr


def test_seed_registry_with_anonymous_volume_is_taken_over_without_losing_images_or_users(fleet):
    """The seed's stop/rm/run orphans the anonymous volume; our first deploy carries images over,
    and keeps the users the seed created by hand (no local htpasswd yet)."""
    from fabfile import certs

    cert = upload_seed_files(fleet)
    assert fleet.on("registry", seed_run("docker")).returncode == 0
    for host in ("client1",):
        fleet.lab.run(host, "mkdir -p /etc/docker/certs.d/registry.lab && cat > /etc/docker/certs.d/registry.lab/ca.crt",
                      input=certs.cert_pem(cert))
    assert fleet.login("client1", "seed", "seed-password").returncode == 0
    assert fleet.on("client1", "docker tag lab/hello:1 registry.lab/seed/img:1 && docker push registry.lab/seed/img:1"
                    ).returncode == 0
    volume = fleet.on("registry", "docker inspect -f '{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}}{{end}}{{end}}'"
                                  " registry").stdout.strip()
    assert volume, "the seed's container stores images in an anonymous volume"

    dry = fleet.inv("registry.deploy", "--dry-run")
    assert "copy images from volume" in dry.stdout and "container was not created by registry-tls" in dry.stdout
    result = fleet.inv("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept 1 user(s) from the registry host's htpasswd" in result.stdout
    # the seed's folder (its key with the seed's modes) is gone once the new registry serves (review L12)
    folders = fleet.on("registry", "cd /var/lib/docker-registry && ls -1d .certs-*").stdout.split()
    assert folders == [fleet.on("registry", "readlink /var/lib/docker-registry/certs").stdout.strip()]
    pulled = pull(fleet, "client2", "seed", "seed-password", ref="registry.lab/seed/img:1")
    assert pulled.returncode == 0, pulled.stderr
    assert fleet.on("registry", f"docker volume inspect {volume}").returncode == 0  # never deleted


# (inventory env, the registry's own line about it): a panic, a level=fatal message, a configuration error
CANNOT_START = [
    ({"REGISTRY_STORAGE": "bogus-driver"}, "panic: StorageDriver not registered: bogus-driver"),
    ({"REGISTRY_HTTP_NET": "bogus"}, "fatal: unknown address type bogus"),  # TLS keys: refused (L9)
    ({"REGISTRY_LOG_LEVEL": "loud"}, ("configuration error: error parsing /etc/docker/registry/config.yml: "
                                     "invalid loglevel loud Must be one of [error, warn, info, debug]")),
]


def served_fingerprint(fleet, host: str = "client1") -> str:
    """What the registry serves, read by openssl on a client (not by the tool)."""
    out = fleet.on(host, "openssl s_client -connect registry.lab:443 </dev/null 2>/dev/null "
                         "| openssl x509 -noout -fingerprint -sha256").stdout.strip()
    return out.split("=")[-1]


def update_sets_restart(fleet) -> bool:
    """Whether the registry host's engine can change a container's restart policy (podman: from 5.1 on)."""
    return fleet.on("registry", f"{fleet.engine} update --help 2>&1 | grep -q -e --restart").returncode == 0


@pytest.mark.parametrize("lab_kind", ENGINES)
def test_F21_container_that_cannot_start_is_kept_and_rolled_back_with_the_registrys_own_reason(request, lab_kind):
    """F21, three ways in a row, on each engine (the session lab's Docker, the host-kinds lab's podman): the
    message carries the registry's own line, the previous registry serves again (checked by openssl), the failed
    container is kept stopped (only the latest), images stay pullable, status is OK afterwards. The first failure
    also switches certificates: the rollback expects the old one.

    Exit 1, not the brief's 2 (docs/FAULTS.md F21): the input was valid and a host was changed and restored."""
    fleet = fleet_on(request, lab_kind)
    engine = fleet.engine
    user = user_on(fleet)
    assert fleet.inv("deploy").returncode == 0
    assert push(fleet, "client1", *user).returncode == 0
    before, served_before = fleet.container_id(), served_fingerprint(fleet)
    shutil.copytree(fleet.tmp / "pki", fleet.tmp / "pki-deployed")
    assert fleet.inv("cert.generate", "--force").returncode == 0
    kept, outs = [], []
    for i, (env, own) in enumerate(CANNOT_START):
        fleet.edit(lambda d, env=env: d["registry"].__setitem__("env", env))
        code, out = fleet.json("registry.deploy")
        reg = out["registry"]
        name = reg["facts"]["failure"]["kept"]
        assert (code, reg["status"]) == (1, "failed")
        assert reg["message"].startswith(f"new registry container did not start: {own} (kept, stopped, as {name}: "
                                         f"`{engine} logs {name}`); rolled back; the previous registry serves again "
                                         "(after "), reg["message"]
        assert reg["facts"]["rollback"]["restored"] is True and reg["facts"]["rollback"]["seconds"] < 30
        assert fleet.container_id() == before and served_fingerprint(fleet) == served_before
        kept.append(name)
        outs.append(reg)
        if i == 0:  # back to the deployed certificate: the next failures change the container only
            shutil.rmtree(fleet.tmp / "pki")
            shutil.copytree(fleet.tmp / "pki-deployed", fleet.tmp / "pki")
    assert len(set(kept)) == 3
    # the env file went back with the previous container (it had none)
    assert fleet.on("registry", "test ! -e /var/lib/docker-registry/registry.env").returncode == 0
    names = fleet.on("registry", f"{engine} ps -a --format '{{{{.Names}}}}'").stdout.split()
    assert sorted(names) == sorted(["registry", kept[-1]])  # only the latest failed one is kept
    inspect = json.loads(fleet.on("registry", f"{engine} inspect {kept[-1]}").stdout)[0]
    policy = inspect["HostConfig"]["RestartPolicy"]["Name"]
    warned = [w for w in outs[-1]["warnings"] if " keeps restart policy " in w]
    if update_sets_restart(fleet):   # docker; podman 5.1 and later
        assert (inspect["State"]["Status"], policy, warned) == ("exited", "no", [])
    else:                            # podman before 5.1: the policy stays, and the run says so
        assert (inspect["State"]["Status"], policy) == ("exited", "always")
        (warning,) = warned
        assert warning.startswith(f"{kept[-1]} keeps restart policy 'always' (podman update: (exit "), warning
        assert warning.endswith(f"): a restart of podman or of the host may start it; `podman rm {kept[-1]}` once read")
    assert "invalid loglevel loud" in fleet.on("registry", f"{engine} logs {kept[-1]} 2>&1").stdout
    run_log = (fleet.tmp / "state" / "log" / "registry-tls.log").read_text()
    assert run_log.count("output of the registry container that failed") == 3
    assert "registry/handlers/app.go" in run_log  # the whole output, stack included, is in the run log
    fleet.edit(lambda d: d["registry"].pop("env"))
    pulled = pull(fleet, fleet.docker_clients(2)[1], *user)
    assert pulled.returncode == 0, pulled.stderr
    code, status = fleet.json("status")
    assert code == 0, status["reasons"]


def test_F21_san_change_dry_run_shows_both_fingerprints_and_a_registry_that_cannot_come_back_is_reported_down(fleet):
    """The dry run after a SAN change names the served and the new fingerprint; then a failing switch whose
    previous registry cannot restart (its certificate file is gone) is reported down with its own reason,
    after health_timeout, and `status` agrees."""
    fleet.edit(lambda d: d["registry"].__setitem__("health_timeout", 4))
    fleet.edit(lambda d: d["certificate"].__setitem__("mode", "self-signed"))  # ca mode: a new name needs a new CA
    assert fleet.inv("registry.deploy").returncode == 0  # the registry host is the point: no clients
    old = served_fingerprint(fleet)
    fleet.edit(lambda d: d["certificate"]["san"].append("DNS:registry2.lab"))
    assert fleet.inv("cert.generate", "--force").returncode == 0
    new = subprocess.run(["openssl", "x509", "-in", str(fleet.tmp / "pki" / "registry.crt"), "-noout", "-fingerprint",
                          "-sha256"], capture_output=True, text=True, check=True).stdout.strip().split("=")[-1]
    code, plan = fleet.json("registry.deploy", "--dry-run")
    change = f"would change certificate {old} -> {new} (SANs +DNS:registry2.lab)"
    assert code == 0 and change in plan["registry"]["changes"]
    assert plan["registry"]["facts"]["plan"]["certificate"] == {
        "old": old, "new": new, "sans_added": ["DNS:registry2.lab"], "sans_removed": []}
    assert served_fingerprint(fleet) == old  # a dry run
    old_dir = fleet.on("registry", "readlink /var/lib/docker-registry/certs").stdout.strip()
    fleet.on("registry", f"rm /var/lib/docker-registry/{old_dir}/registry_auth.crt")  # still served from memory
    fleet.edit(lambda d: d["registry"].__setitem__("env", {"REGISTRY_STORAGE": "bogus-driver"}))
    code, out = fleet.json("registry.deploy")
    message = out["registry"]["message"]
    assert code == 1 and "did not start: panic: StorageDriver not registered: bogus-driver" in message  # no secret
    assert "rolled back, but the previous registry does not come back (" in message and "serves again" not in message
    assert message.endswith("its own output: fatal: open /data/certs/registry_auth.crt: no such file or directory")
    assert 4 <= out["registry"]["facts"]["rollback"]["seconds"] < 4 + 20   # the wait is registry.health_timeout
    code, status = fleet.json("status")
    assert code == 2
    assert "its own output: fatal: open /data/certs/registry_auth.crt: no such file or directory" in \
        status["registry"]["message"]


@pytest.mark.parametrize("lab_kind", ENGINES)
def test_F08_mismatched_key_is_refused_before_any_upload(request, lab_kind):
    """F08: the local public-key comparison fails -> exit 2, the registry host is not touched."""
    fleet = fleet_on(request, lab_kind)
    user_on(fleet)
    assert fleet.inv("deploy").returncode == 0
    before, files = fleet.container_id(), registry_files(fleet)
    from fabfile import certs

    (fleet.tmp / "pki" / "registry.key").write_bytes(certs.private_key_pem(certs.generate_key("ecdsa-p256")))
    result = fleet.inv("registry.deploy")
    assert result.returncode == 2
    assert "does not match" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert fleet.container_id() == before and registry_files(fleet) == files


@pytest.mark.parametrize("lab_kind", ENGINES)
def test_F27_users_add_update_remove_without_restarting_the_registry(request, lab_kind):
    """F27: /auth is a mounted directory; htpasswd is replaced by rename and the registry reloads it on its
    mtime: a login with the new password works with the same container (no restart, no recreate)."""
    fleet = fleet_on(request, lab_kind)
    user = user_on(fleet)
    c1, c2, c3 = fleet.docker_clients(3)   # the host-kinds lab: client1 each time (docker login always asks)
    assert fleet.inv("deploy").returncode == 0
    container = fleet.container_id()
    assert fleet.login(c1, *user).returncode == 0

    dup = fleet.inv("users.add", "alice", input="x\n")
    assert dup.returncode == 2 and "--update" in dup.stderr
    assert fleet.inv("users.add", "alice", "--update", input="new-password\n").returncode == 0
    assert fleet.login(c1, "alice", user[1]).returncode != 0
    assert fleet.login(c1, "alice", "new-password").returncode == 0

    assert fleet.inv("users.add", "bob", input="bob-password\n").returncode == 0
    assert fleet.login(c2, "bob", "bob-password").returncode == 0
    listed = fleet.json("users.list")[1]
    assert {"alice", "bob"} <= set(listed["users"]) and listed["not_bcrypt"] == []
    assert fleet.inv("users.remove", "bob").returncode == 0
    assert fleet.login(c3, "bob", "bob-password").returncode != 0
    assert fleet.container_id() == container  # F27: htpasswd replaced by rename, reloaded, no restart
    log = (fleet.tmp / "state" / "log" / "registry-tls.log").read_text()
    assert "new-password" not in log and "bob-password" not in log


@pytest.mark.parametrize("lab_kind", ENGINES)
def test_L2_a_data_dir_under_a_folder_others_can_write_is_refused_and_nothing_is_written(request, lab_kind):
    """The lock script checks data_dir's path with the registry host's own stat before its first write."""
    fleet = fleet_on(request, lab_kind)
    engine = fleet.engine
    open_dir = "/var/lib/rtls-open"
    fleet.on("registry", f"rm -rf {open_dir} && mkdir -m 0757 {open_dir}")
    fleet.edit(lambda data: data["registry"].__setitem__("data_dir", f"{open_dir}/registry"))
    try:
        code, out = fleet.json("registry.deploy")
        reg = out["registry"]
        assert (code, reg["host"], reg["status"]) == (1, "registry.lab", "failed")
        assert reg["message"] == (f"refusing to write in {open_dir}/registry: {open_dir} is writable by group/other "
                                   "(owner root, mode 757); data_dir and each of its parents must be owned by root "
                                   "and not writable by group or other")
        assert fleet.on("registry", f"ls -A {open_dir}").stdout == ""          # no mkdir, no lock
        assert fleet.on("registry", f"{engine} ps -aq").stdout.strip() == ""    # no container
        fleet.on("registry", f"chmod o-w {open_dir}")
        assert fleet.inv("registry.deploy").returncode == 0                  # the same path, now root's only
        assert "auth" in fleet.on("registry", f"ls -A {open_dir}/registry").stdout.split()
    finally:
        fleet.on("registry", f"{engine} rm -f registry >/dev/null 2>&1; rm -rf {open_dir}")
