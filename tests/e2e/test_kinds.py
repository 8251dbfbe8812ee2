"""The seed's registry host is CentOS 8, where the engine is podman (issue 13): `engine: podman` for real on
the host-kinds lab (registry with podman and no dockerd; client1 Docker; podman1 podman without dockerd;
containerd1 containerd only). One lab, one sequence: deploy, idempotent rerun, each runtime pulls, a new
certificate keeps the images, a container that fails is rolled back, rotation, takeover of a registry made
by hand with podman."""
from __future__ import annotations

import secrets
import shlex

import pytest

from tests.e2e.seed import seed_run, upload_seed_files

pytestmark = pytest.mark.lab

REF = "registry.lab/kinds/hello:1"
CLIENTS = ("client1", "podman1", "containerd1")
NO_OS_STORE = "env SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent"


def pulls(fleet, user: str, password: str) -> dict[str, str]:
    """Each client's own runtime fetching the image: '' when it worked, else its error."""
    creds = shlex.quote(f"{user}:{password}")
    runs = {
        "client1": f"printf %s {shlex.quote(password)} | docker login -u {user} --password-stdin registry.lab "
                   f">/dev/null && docker rmi -f {REF} >/dev/null 2>&1; docker pull -q {REF}",
        "podman1": f"skopeo inspect --creds {creds} docker://{REF}",
        "containerd1": f"{NO_OS_STORE} ctr -n e2e images rm {REF} >/dev/null 2>&1; {NO_OS_STORE} ctr -n e2e "
                       f"images pull --hosts-dir /etc/containerd/certs.d --user {creds} {REF}",
    }
    out = {}
    for host, command in runs.items():
        r = fleet.on(host, command)
        out[host] = "" if r.returncode == 0 else (r.stdout + r.stderr)[-400:]
    return out


@pytest.fixture
def alice(kinds) -> tuple[str, str]:
    password = f"correct horse battery {secrets.token_hex(4)}"   # this run's own: F13 looks for it machine-wide
    assert kinds.inv("users.add", "alice", "--no-deploy", input=password + "\n").returncode == 0
    return "alice", password


def test_podman_engine_deploy_rerun_pulls_new_certificate_rollback_rotation(kinds, alice):
    fleet = kinds
    code, first = fleet.json("deploy")
    assert code == 0, first
    assert first["registry"]["status"] == "changed"
    assert {h: (r["status"], r["facts"]["verify"]) for h, r in first["hosts"].items()} == dict.fromkeys(
        CLIENTS, ("changed", "ok"))
    assert {h: {c["target"] for c in r["facts"]["checks"]} for h, r in first["hosts"].items()} == {
        "client1": {"docker"}, "podman1": {"podman"}, "containerd1": {"containerd"}}  # each asked its runtime
    assert fleet.on("registry", "command -v dockerd >/dev/null && test -S /var/run/docker.sock").returncode != 0
    container = fleet.container_id()
    assert container

    code, again = fleet.json("deploy")
    assert code == 0 and {r["status"] for r in (again["registry"], *again["hosts"].values())} == {"ok"}, again
    assert fleet.container_id() == container

    assert fleet.login("client1", *alice).returncode == 0
    assert fleet.on("client1", f"docker tag lab/hello:1 {REF} && docker push -q {REF}").returncode == 0
    assert pulls(fleet, *alice) == dict.fromkeys(CLIENTS, "")

    assert fleet.inv("cert.generate", "--force").returncode == 0      # a new certificate: new container
    code, renewed = fleet.json("deploy")
    assert code == 0, renewed
    assert fleet.container_id() != container
    assert pulls(fleet, *alice) == dict.fromkeys(CLIENTS, "")          # the pushed image is still there

    container = fleet.container_id()
    fleet.edit(lambda d: d["registry"].__setitem__("env", {"REGISTRY_STORAGE": "bogus-driver"}))
    assert fleet.inv("cert.generate", "--force").returncode == 0
    failed = fleet.inv("registry.deploy")
    assert failed.returncode == 1 and "rolled back" in failed.stdout, failed.stdout
    assert fleet.container_id() == container
    names = fleet.on("registry", "podman ps -a --format '{{.Names}}'").stdout.split()
    assert "registry" in names and "registry-previous" not in names   # (the failed one is kept, named -failed-)

    fleet.edit(lambda d: d["registry"].pop("env"))
    deployed = fleet.inv("deploy")                # the certificate made above
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    code, rotated = fleet.json("rotate")         # then a rotation: trust old+new, switch, drop the old
    assert code == 0 and rotated["notes"][-1] == "rotation complete", rotated
    code, status = fleet.json("status")
    assert code == 0 and status["status"] == "ok", status["reasons"]
    assert status["registry"]["facts"]["served_fingerprint"] == status["certificate"]["sha256"]
    assert pulls(fleet, *alice) == dict.fromkeys(CLIENTS, "")


def test_podman_registry_made_by_hand_is_taken_over_with_its_images_and_users(kinds):
    """The seed's procedure with podman, as on its CentOS 8 host: images in an anonymous volume, users
    made by hand; the first deploy keeps both."""
    from fabfile import certs

    fleet = kinds
    cert = upload_seed_files(fleet)
    assert fleet.on("registry", seed_run("podman")).returncode == 0
    fleet.lab.run("client1", "mkdir -p /etc/docker/certs.d/registry.lab && "
                             "cat > /etc/docker/certs.d/registry.lab/ca.crt", input=certs.cert_pem(cert))
    assert fleet.login("client1", "seed", "seed-password").returncode == 0
    assert fleet.on("client1", f"docker tag lab/hello:1 {REF} && docker push -q {REF}").returncode == 0

    result = fleet.inv("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept 1 user(s) from the registry host's htpasswd" in result.stdout
    assert pulls(fleet, "seed", "seed-password") == dict.fromkeys(CLIENTS, "")
