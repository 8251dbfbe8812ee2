"""export.cloud-init and export.kubernetes: content (the files clients.trust writes, the fingerprint, no
secret), the real validators (`cloud-init schema`, kubernetes-validate --strict) with a broken control
each, the DaemonSet's script run by sh on a folder, and the tasks end to end without a fleet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fabfile import clients as C
from fabfile import export as E
from fabfile.certs import cert_pem, fingerprint
from fabfile.inventory import KubernetesSection

from _support import REPO, make_client, make_registry, run

ALL = ("docker", "containerd", "podman", "os", "buildkit")
cloud_init_cli = pytest.mark.skipif(shutil.which("cloud-init") is None,
                                    reason="cloud-init not installed (Debian 'cloud-init'; script/setup installs it)")
K8S_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
k8s_validate = pytest.mark.skipif(not K8S_VALIDATE.exists(),
                                  reason="kubernetes-validate not installed (pip install -e '.[test]')")


@pytest.fixture
def anchors(self_signed, ca_chain):
    """A rotation in progress: the current anchor and the next one."""
    return (C.Anchor("current", cert_pem(self_signed[0])), C.Anchor("rotation", cert_pem(ca_chain[0])))


def load_all(text: str) -> list:
    return list(YAML(typ="safe").load_all(text))


# --------------------------------------------------------------------------- cloud-init


def test_cloud_init_writes_exactly_the_files_clients_trust_writes(anchors):
    client, reg = make_client(trust=ALL, registry_names=("reg.example", "192.0.2.10")), make_registry()
    text = E.cloud_init(client, reg, anchors, title="t")
    assert text.startswith("#cloud-config\n")
    (config,) = load_all(text)
    written = {f["path"]: f["content"].encode() for f in config["write_files"] if not f.get("append")}
    assert written == {f.path: f.content for f in C.desired_files(client, reg, anchors, None)}
    assert all(f["permissions"] == "0644" and f["owner"] == "root:root" for f in config["write_files"])
    (toml,) = [f for f in config["write_files"] if f.get("append")]
    assert toml["path"] == C.BUILDKIT_TOML and toml["content"].encode() == C.buildkit_toml(None, reg, anchors)
    assert config["ca_certs"] == {"trusted": [a.pem.decode() for a in anchors]}  # the OS store, the native way


def test_cloud_init_of_a_docker_only_group_has_no_os_store(anchors):
    (config,) = load_all(E.cloud_init(make_client(trust=("docker",)), make_registry(), anchors[:1], title="t"))
    assert "ca_certs" not in config
    assert {f["path"] for f in config["write_files"]} == {"/etc/docker/certs.d/reg.example/ca.crt",
                                                           "/etc/docker/certs.d/reg.example:443/ca.crt"}


@cloud_init_cli
def test_cloud_init_schema_accepts_it_and_refuses_a_broken_one(anchors, tmp_path):
    good = tmp_path / "user-data"
    good.write_text(E.cloud_init(make_client(trust=ALL), make_registry(port=5000), anchors, title="t"))
    proc = run(["cloud-init", "schema", "--config-file", str(good)])
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr
    bad = tmp_path / "broken"
    bad.write_text(good.read_text().replace("ca_certs:\n  trusted:\n", "ca_certs:\n  trusted: yes\n  x:\n", 1))
    assert run(["cloud-init", "schema", "--config-file", str(bad)]).returncode != 0


# --------------------------------------------------------------------------- kubernetes


K8S = KubernetesSection(image="busybox:1.36.1", namespace="registry-tls")


def manifest(anchors, client=None, reg=None):
    return E.kubernetes(client or make_client(trust=("docker",)), reg or make_registry(), anchors, K8S, title="t")


def test_configmap_holds_clients_trust_containerd_files_by_folder(anchors):
    client, reg = make_client(registry_names=("reg.example", "192.0.2.10")), make_registry()
    config_map, daemon_set = load_all(manifest(anchors, client, reg))
    pod = daemon_set["spec"]["template"]["spec"]
    folders = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    rebuilt = {f"{folders[key.split('.', 1)[0]]}/{key.split('.', 1)[1]}": text.encode()
               for key, text in config_map["data"].items()}
    want = C.desired_files(replace(client, trust=("containerd",)), reg, anchors, None)
    assert rebuilt == {f.path: f.content for f in want}
    assert set(folders.values()) == {f.path.rsplit("/", 1)[0] for f in want}
    assert all(p.startswith("/etc/containerd/certs.d/") and p.count("/") == 4 for p in folders.values())


def test_daemonset_has_minimal_privileges_and_the_pinned_image(anchors):
    _, daemon_set = load_all(manifest(anchors))
    pod = daemon_set["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "busybox:1.36.1" and daemon_set["metadata"]["namespace"] == "registry-tls"
    assert pod["hostNetwork"] is False and pod["hostPID"] is False and pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"]["readOnly"] is True
    assert [v["hostPath"]["type"] for v in pod["volumes"] if "hostPath" in v] == ["DirectoryOrCreate"] * 2


def test_fingerprints_and_nothing_secret(anchors, self_signed, ca_chain):
    text = manifest(anchors)
    _, daemon_set = load_all(text)
    annotation = daemon_set["spec"]["template"]["metadata"]["annotations"]["registry-tls/anchor-sha256"]
    assert annotation == f"{fingerprint(self_signed[0])},{fingerprint(ca_chain[0])}"
    for out in (text, E.cloud_init(make_client(trust=ALL), make_registry(), anchors, title="t")):
        assert "PRIVATE KEY" not in out and "password" not in out.lower()


@k8s_validate
def test_kubernetes_validate_strict_accepts_it_and_refuses_a_broken_one(anchors, tmp_path):
    good = tmp_path / "trust.yaml"
    good.write_text(manifest(anchors, reg=make_registry(port=5000)))
    proc = run([str(K8S_VALIDATE), "--strict", str(good)])
    assert proc.returncode == 0 and proc.stdout.count("passed") == 2, proc.stdout + proc.stderr
    bad = tmp_path / "broken.yaml"
    bad.write_text(good.read_text().replace("hostNetwork:", "hostNetwrk:"))
    assert run([str(K8S_VALIDATE), "--strict", str(bad)]).returncode != 0


# --------------------------------------------------------------------------- the DaemonSet's script


def sync(src: Path, dst: Path) -> subprocess.CompletedProcess:
    return run(["sh", "-c", E.SYNC_SCRIPT], env={"PATH": os.environ["PATH"], "SRC": str(src), "DST": str(dst),
                                                "ONCE": "1"})


def test_sync_script_writes_what_differs_removes_our_stale_anchor_only(tmp_path):
    src, dst = tmp_path / "config", tmp_path / "host"
    src.mkdir()
    (dst / "d0").mkdir(parents=True)
    (src / "d0.ca.crt").write_text("anchor\n")
    (src / "d0.hosts.toml").write_text("toml\n")
    (dst / "d0/registry-tls-rotation.crt").write_text("old next anchor\n")
    (dst / "d0/someone-else.crt").write_text("foreign\n")
    first = sync(src, dst)
    assert first.returncode == 0, first.stderr
    assert (dst / "d0/ca.crt").read_text() == "anchor\n" and (dst / "d0/hosts.toml").read_text() == "toml\n"
    assert (dst / "d0/ca.crt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (dst / "d0").iterdir()) == ["ca.crt", "hosts.toml", "someone-else.crt"]
    again = sync(src, dst)
    assert again.returncode == 0 and again.stdout == ""  # idempotent: nothing written the second time


def test_sync_script_fails_loudly_when_it_cannot_write(tmp_path):
    src = tmp_path / "config"
    src.mkdir()
    (src / "d0.ca.crt").write_text("anchor\n")
    proc = sync(src, tmp_path / "missing")  # no such host folder
    assert proc.returncode == 1 and "could not write" in proc.stderr


# --------------------------------------------------------------------------- the tasks


def inv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=env, check=False)


INVENTORY = """registry: {host: reg.example}
certificate: {san: [DNS:reg.example], key_type: ecdsa-p256, mode: ca}
clients:
  groups:
    builders: {trust: [docker, os]}
"""


def test_export_tasks_print_from_the_local_certificate(tmp_path):
    (tmp_path / "inventory.yaml").write_text(INVENTORY + "kubernetes: {image: 'busybox:1.36.1'}\n")
    assert inv("cert.generate", cwd=tmp_path).returncode == 0
    ci = inv("export.cloud-init", "--group", "builders", cwd=tmp_path)
    assert ci.returncode == 0 and ci.stdout.startswith("#cloud-config\n") and "ca_certs" in ci.stdout, ci.stderr
    k8s = inv("export.kubernetes", cwd=tmp_path)
    assert k8s.returncode == 0 and [d["kind"] for d in load_all(k8s.stdout)] == ["ConfigMap", "DaemonSet"]
    # review L11: a version tag is accepted with one warning line on stderr (the manifest on stdout is unchanged)
    assert k8s.stderr.strip() == ("warning: kubernetes.image 'busybox:1.36.1' is a mutable tag, not pinned by digest: "
                                  "whoever can move the tag chooses the code that runs with the registry's key or "
                                  "trust; pin it as busybox:1.36.1@sha256:<digest> (README: Pinning images)")


def test_L11_a_kubernetes_image_pinned_by_digest_prints_no_warning(tmp_path):
    image = "busybox@sha256:" + "ab" * 32
    (tmp_path / "inventory.yaml").write_text(INVENTORY + f"kubernetes: {{image: '{image}'}}\n")
    assert inv("cert.generate", cwd=tmp_path).returncode == 0
    k8s = inv("export.kubernetes", cwd=tmp_path)
    assert k8s.returncode == 0 and k8s.stderr == "" and f"image: {image}" in k8s.stdout


@pytest.mark.parametrize(("extra", "args", "fragment"), [
    ("", ("export.kubernetes",), "kubernetes.image: not set"),
    ("kubernetes: {image: 'busybox:latest'}\n", ("export.kubernetes",), "not 'latest'"),
    ("", ("export.cloud-init", "--group", "builder"), "did you mean 'builders'"),
])
def test_export_input_errors_are_one_line_exit_2(tmp_path, extra, args, fragment):
    (tmp_path / "inventory.yaml").write_text(INVENTORY + extra)  # no certificate needed to refuse these
    proc = inv(*args, cwd=tmp_path)
    assert proc.returncode == 2 and fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""


def test_export_without_a_certificate_is_exit_2(tmp_path):
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    proc = inv("export.cloud-init", cwd=tmp_path)
    assert proc.returncode == 2 and "no certificate yet" in proc.stderr


@pytest.mark.parametrize(("image", "ok"), [
    ("busybox:1.36.1", True), ("registry.lab:5000/tools/busybox:1.36", True), ("busybox@sha256:" + "a" * 64, True),
    ("busybox", False), ("busybox:latest", False), ("registry.lab:5000/busybox", False), ("Busy Box:1", False)])
def test_kubernetes_image_must_be_pinned(image, ok):
    from pydantic import ValidationError

    if ok:
        assert KubernetesSection(image=image).image == image
    else:
        with pytest.raises(ValidationError):
            KubernetesSection(image=image)
