"""One deploy on the lab, then: the DaemonSet's script against a real containerd (ctr --hosts-dir),
`status --format prometheus` of the real fleet checked by promtool, and `clients.untrust` until docker
fails with x509 again."""
from __future__ import annotations

import base64
import shlex
import shutil
import subprocess

import pytest
from ruamel.yaml import YAML

from tests.e2e.test_deploy import REF, push

pytestmark = pytest.mark.lab

CTR = "ctr --address /var/run/docker/containerd/containerd.sock -n registry-tls-test"
POD = "/tmp/registry-tls-pod"   # stands in for the pod: /config (the ConfigMap) and /host/dN (the hostPaths)


def kubernetes_pod(fleet, host: str) -> tuple[str, dict[str, str]]:
    """Lay out on ``host`` what the kubelet would give the DaemonSet's container; returns (script, env)."""
    proc = fleet.inv("export.kubernetes")
    assert proc.returncode == 0, proc.stderr
    config_map, daemon_set = YAML(typ="safe").load_all(proc.stdout)
    pod = daemon_set["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    lines = [f"set -e; mkdir -p {POD}/config"]
    for key, text in config_map["data"].items():
        lines.append(f"echo {base64.b64encode(text.encode()).decode()} | base64 -d > {POD}/config/{key}")
    for volume in pod["volumes"]:
        if "hostPath" in volume:  # type DirectoryOrCreate, mounted at /host/dN
            source, target = volume["hostPath"]["path"], POD + mounts[volume["name"]]
            lines.append(f"mkdir -p {shlex.quote(source)} {target} && mount --bind {shlex.quote(source)} {target}")
    assert fleet.on(host, "\n".join(lines)).returncode == 0
    env.update(SRC=f"{POD}/config", DST=f"{POD}/host", ONCE="1")
    return container["command"][2], env


def run_pod(fleet, host: str, script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return fleet.on(host, f"env {exports} sh -c {shlex.quote(script)}")


def ctr_pull(fleet, host: str, user: tuple[str, str]) -> subprocess.CompletedProcess:
    return fleet.on(host, f"{CTR} images rm {REF} >/dev/null 2>&1; "
                          f"{CTR} images pull --hosts-dir /etc/containerd/certs.d --user {user[0]}:{shlex.quote(user[1])} "
                          f"{REF} 2>&1")


def test_containerd_daemonset_script_prometheus_status_then_untrust_brings_x509_back(fleet, user, tmp_path):
    fleet.edit(lambda d: (d.__setitem__("kubernetes", {"image": "busybox:1.36.1"}),
                          d["certificate"].__setitem__("mode", "ca"),  # trust: os wants a CA (not the server key)
                          d["clients"]["hosts"]["client1"].__setitem__("trust", ["docker", "os"])))
    assert fleet.inv("registry.deploy").returncode == 0
    code, trusted = fleet.json("clients.trust", "--hosts", "client1")
    assert code == 0 and trusted["hosts"]["client1"]["restarted"], trusted
    assert push(fleet, "client1", *user).returncode == 0

    # ---- the DaemonSet's script on client2, whose containerd has never seen the registry
    before = ctr_pull(fleet, "client2", user)
    assert before.returncode != 0 and "x509: certificate signed by unknown authority" in before.stdout, before.stdout
    script, env = kubernetes_pod(fleet, "client2")
    try:
        first = run_pod(fleet, "client2", script, env)
        assert first.returncode == 0 and "wrote /tmp/registry-tls-pod/host/d0/ca.crt" in first.stdout, first
        after = ctr_pull(fleet, "client2", user)
        assert after.returncode == 0 and "x509" not in after.stdout, after.stdout[-2000:]
        assert fleet.on("client2", f"{CTR} images ls -q").stdout.split() == [REF]
        # kept in place: a deleted anchor comes back at the next pass; a foreign file stays; no-op otherwise
        fleet.on("client2", "rm /etc/containerd/certs.d/registry.lab/ca.crt; "
                            "echo mine > /etc/containerd/certs.d/registry.lab/other.crt")
        again = run_pod(fleet, "client2", script, env)
        assert again.stdout.strip() == "registry-tls: wrote /tmp/registry-tls-pod/host/d0/ca.crt", again.stdout
        assert fleet.on("client2", "cat /etc/containerd/certs.d/registry.lab/other.crt").stdout == "mine\n"
        assert run_pod(fleet, "client2", script, env).stdout == ""
    finally:
        fleet.on("client2", f"for d in {POD}/host/*; do umount $d; done; rm -rf {POD}; {CTR} images rm {REF}")

    # ---- status of the real fleet as Prometheus metrics (client2/3 have no docker trust: critical)
    metrics = tmp_path / "textfile" / "registry_tls.prom"
    metrics.parent.mkdir()
    proc = fleet.inv("status", "--format", "prometheus", "--metrics-file", str(metrics))
    assert proc.returncode == 2 and proc.stdout.encode() == metrics.read_bytes(), proc.stderr
    assert 'registry_tls_host_status{host="client1",registry="registry.lab",role="client",status="ok"} 1.0' in proc.stdout
    assert 'registry_tls_host_status{host="client2",registry="registry.lab",role="client",status="failed"} 1.0' in proc.stdout
    assert 'registry_tls_served_certificate_info{expected="true"' in proc.stdout
    assert shutil.which("promtool"), "promtool not installed (Debian 'prometheus'; script/setup installs it)"
    lint = subprocess.run(["promtool", "check", "metrics"], input=proc.stdout, capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and not lint.stderr, lint.stderr

    # ---- untrust client1: every file of ours goes, a foreign one stays, the OS store refreshed, dockerd
    # restarted (it had loaded the anchor), and docker fails with x509 again; a second run changes nothing
    corp = "/etc/docker/certs.d/registry.lab/corp-root.crt"  # another CA someone installed beside ours
    assert fleet.on("client1", f"openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 "
                               f"-subj /CN=corp-root -keyout /dev/null -out {corp}").returncode == 0
    assert fleet.login("client1", *user).returncode == 0
    listing = "find /etc/docker/certs.d /usr/local/share/ca-certificates -type f | sort"
    others = [p for p in fleet.on("client1", listing).stdout.split()  # the machine's own CAs
              if p.startswith("/usr/local/") and "/registry-tls-" not in p]
    anchor_line = (fleet.tmp / "pki" / "ca.crt").read_text().splitlines()[1]  # the anchor: the lab's CA
    in_bundle = f"grep -c -F {anchor_line} /etc/ssl/certs/ca-certificates.crt"
    assert fleet.on("client1", in_bundle).stdout.strip() == "1"
    code, removed = fleet.json("clients.untrust", "--hosts", "client1")
    host = removed["hosts"]["client1"]
    assert code == 0 and host["status"] == "changed" and host["restarted"], removed
    assert "run update-ca-certificates" in host["changes"]
    left = fleet.on("client1", listing).stdout
    assert left.split() == sorted([corp, *others]), left
    assert fleet.on("client1", in_bundle).stdout.strip() == "0"  # update-ca-certificates dropped it
    login = fleet.login("client1", *user)
    assert login.returncode != 0 and "x509" in login.stderr, login.stderr
    pid = fleet.dockerd_pid("client1")
    code, again = fleet.json("clients.untrust", "--hosts", "client1")
    assert code == 0 and again["hosts"]["client1"]["status"] == "ok" and not again["hosts"]["client1"]["restarted"]
    assert fleet.dockerd_pid("client1") == pid
