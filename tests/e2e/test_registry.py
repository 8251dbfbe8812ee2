"""`inv registry.deploy` and `inv users.*` on the real registry host (issue: registry host)."""
from __future__ import annotations

import json

import pytest

from tests.e2e.test_deploy import pull, push

pytestmark = pytest.mark.lab

SEED_RUN = """
set -e
mkdir -p /var/lib/docker-registry/certs /var/lib/docker-registry/auth
cp /tmp/seed.crt /var/lib/docker-registry/certs/registry_auth.crt
cp /tmp/seed.key /var/lib/docker-registry/certs/registry_auth.key
cp /tmp/seed.htpasswd /var/lib/docker-registry/auth/registry.password
docker run -d -p 443:443 --name registry --restart=always -v /var/lib/docker-registry:/data \
  -e REGISTRY_AUTH=htpasswd -e "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm" \
  -e REGISTRY_AUTH_HTPASSWD_PATH=/data/auth/registry.password -e REGISTRY_HTTP_ADDR=0.0.0.0:443 \
  -e REGISTRY_HTTP_TLS_CERTIFICATE=/data/certs/registry_auth.crt \
  -e REGISTRY_HTTP_TLS_KEY=/data/certs/registry_auth.key registry:2 >/dev/null
"""


def registry_files(fleet) -> str:
    return fleet.on("registry", "cd /var/lib/docker-registry && find . -printf '%p %m %u\\n' | sort").stdout


def test_F22_F26_bare_host_then_rerun_changes_nothing_container_id_stays(fleet, user):
    result = fleet.inv("registry.deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-create container registry: no container yet" in result.stdout
    files = registry_files(fleet)
    assert "./certs 777 root" in files  # the symlink switched atomically
    key_line = next(line for line in files.splitlines() if line.endswith("registry_auth.key 600 root"))
    assert key_line.startswith("./.certs-")
    assert "./auth/registry.password 600 root" in files
    inspect = json.loads(fleet.on("registry", "docker inspect registry").stdout)[0]
    env = dict(e.split("=", 1) for e in inspect["Config"]["Env"])
    assert env["REGISTRY_AUTH"] == "htpasswd" and env["REGISTRY_AUTH_HTPASSWD_REALM"] == "Registry Realm"
    assert env["REGISTRY_HTTP_TLS_KEY"] == "/data/certs/registry_auth.key"
    assert inspect["HostConfig"]["RestartPolicy"]["Name"] == "always"
    mounts = {m["Destination"]: (m["Type"], m["Source"]) for m in inspect["Mounts"]}
    assert mounts["/var/lib/registry"] == ("bind", "/var/lib/docker-registry/storage")  # no anonymous volume
    assert all(kind == "bind" for kind, _ in mounts.values())
    logs = fleet.on("registry", "docker logs registry 2>&1").stdout
    assert "provisioning with default user" not in logs  # F22: htpasswd existed before the start
    assert "BEGIN" not in json.dumps(inspect)  # no key material in the container config
    container = fleet.container_id()

    again = fleet.inv("registry.deploy")
    assert again.returncode == 0 and "already as desired" in again.stdout
    assert fleet.container_id() == container
    assert registry_files(fleet) == files


def test_rotated_certificate_keeps_pushed_images(fleet, user):
    assert fleet.inv("deploy").returncode == 0
    assert push(fleet, "client1", *user).returncode == 0
    before = fleet.container_id()
    assert fleet.inv("cert.generate", "--force").returncode == 0
    result = fleet.inv("deploy")
    assert result.returncode == 0, result.stdout
    assert fleet.container_id() != before
    pulled = pull(fleet, "client2", *user)
    assert pulled.returncode == 0, pulled.stderr


def test_seed_registry_with_anonymous_volume_is_taken_over_without_losing_images_or_users(fleet):
    """The seed's stop/rm/run orphans the anonymous volume; our first deploy carries images over,
    and keeps the users the seed created by hand (no local htpasswd yet)."""
    from fabfile import certs, htpasswd
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    spec = certs.CertSpec(subject=(("CN", "registry.lab"),),
                          sans=(certs.parse_san("registry.lab"), certs.parse_san(fleet.lab.address("registry"))),
                          key_type="ecdsa-p256")
    key = certs.generate_key("ecdsa-p256")
    cert = certs.build_self_signed(spec, key, now)
    table = htpasswd.Htpasswd().with_user("seed", "seed-password", 10)
    for name, data in (("seed.crt", certs.cert_pem(cert)), ("seed.key", certs.private_key_pem(key)),
                       ("seed.htpasswd", table.render())):
        fleet.lab.run("registry", f"cat > /tmp/{name}", input=data)
    assert fleet.on("registry", SEED_RUN).returncode == 0
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
    assert fleet.on("registry", "test -f /var/lib/docker-registry/.certs-legacy/registry_auth.key").returncode == 0
    pulled = pull(fleet, "client2", "seed", "seed-password", ref="registry.lab/seed/img:1")
    assert pulled.returncode == 0, pulled.stderr
    assert fleet.on("registry", f"docker volume inspect {volume}").returncode == 0  # never deleted


def test_F21_container_that_fails_to_start_is_rolled_back(fleet, user):
    """F21: a registry config the new container rejects -> old container, old cert back.

    Exit 1, not the brief's 2 (docs/FAULTS.md F21): the input was valid and a host was changed and restored;
    2 is reserved for invalid input with nothing touched, 1 for 'a host failed' (the summary names it), as
    everywhere else."""
    assert fleet.inv("deploy").returncode == 0
    assert push(fleet, "client1", *user).returncode == 0
    before, served_before = fleet.container_id(), fleet.json("status")[1]["registry"]["facts"]
    fleet.edit(lambda d: d["registry"].__setitem__("env", {"REGISTRY_HTTP_TLS_MINIMUMTLS": "tls9.9"}))
    assert fleet.inv("cert.generate", "--force").returncode == 0
    result = fleet.inv("registry.deploy")
    assert result.returncode == 1
    assert "rolled back" in result.stdout and "Traceback" not in result.stderr
    assert fleet.container_id() == before
    running = fleet.on("registry", "docker inspect -f '{{.State.Running}}' registry").stdout.strip()
    assert running == "true"
    assert fleet.on("registry", "docker ps -a --format '{{.Names}}'").stdout.split() == ["registry"]
    served = fleet.on("client1", "openssl s_client -connect registry.lab:443 </dev/null 2>/dev/null "
                                 "| openssl x509 -noout -fingerprint -sha256").stdout.strip().split("=")[-1]
    assert served == served_before["served_fingerprint"]
    pulled = pull(fleet, "client2", *user)  # client2 still trusts the certificate being served
    assert pulled.returncode == 0, pulled.stderr


def test_F08_mismatched_key_is_refused_before_any_upload(fleet, user):
    """F08: the local public-key comparison fails -> exit 2, the registry host is not touched."""
    assert fleet.inv("deploy").returncode == 0
    before, files = fleet.container_id(), registry_files(fleet)
    from fabfile import certs

    (fleet.tmp / "pki" / "registry.key").write_bytes(certs.private_key_pem(certs.generate_key("ecdsa-p256")))
    result = fleet.inv("registry.deploy")
    assert result.returncode == 2
    assert "does not match" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert fleet.container_id() == before and registry_files(fleet) == files


def test_F27_users_add_update_remove_without_restarting_the_registry(fleet, user):
    """F27: /auth is a mounted directory; htpasswd is replaced by rename and the registry reloads it on its
    mtime: a login with the new password works with the same container (no restart, no recreate)."""
    assert fleet.inv("deploy").returncode == 0
    container = fleet.container_id()
    assert fleet.login("client1", *user).returncode == 0

    dup = fleet.inv("users.add", "alice", input="x\n")
    assert dup.returncode == 2 and "--update" in dup.stderr
    assert fleet.inv("users.add", "alice", "--update", input="new-password\n").returncode == 0
    assert fleet.login("client1", "alice", user[1]).returncode != 0
    assert fleet.login("client1", "alice", "new-password").returncode == 0

    assert fleet.inv("users.add", "bob", input="bob-password\n").returncode == 0
    assert fleet.login("client2", "bob", "bob-password").returncode == 0
    listed = fleet.json("users.list")[1]
    assert {"alice", "bob"} <= set(listed["users"]) and listed["not_bcrypt"] == []
    assert fleet.inv("users.remove", "bob").returncode == 0
    assert fleet.login("client3", "bob", "bob-password").returncode != 0
    assert fleet.container_id() == container  # F27: htpasswd replaced by rename, reloaded, no restart
    log = (fleet.tmp / "state" / "log" / "registry-tls.log").read_text()
    assert "new-password" not in log and "bob-password" not in log
