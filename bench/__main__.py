"""registry-tls benchmark: `bench/run` (see bench/README.md for what it measures and how).

One run: brings up its own labs, times our `inv clients.trust` against ansible-core and an
asyncssh floor at N = 1, 10, 50 clients (tools alternating within each repetition, the
installed trust cleaned before every first run, every result checked on every host),
times certificate generation and `inv deploy` on a docker lab, profiles where our time goes,
and writes bench/results/{results.md,results.json,fanout.png}. Labs are always torn down.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
OUR_PY = REPO / ".venv" / "bin" / "python"
OUR_INV = REPO / ".venv" / "bin" / "inv"
OUR_CMD = REPO / ".venv" / "bin" / "registry-tls"   # the shipped command (inv adds the checkout's lab tasks)
BENCH_PY = BENCH / ".venv" / "bin" / "python"
ANSIBLE_PLAYBOOK = BENCH / ".venv" / "bin" / "ansible-playbook"
PYINFRA = BENCH / ".venv" / "bin" / "pyinfra"

P10_N = 50                 # ours with the default --parallel 10 is also measured at this N
FLEET_LAB = {"root": WORK / "lab", "prefix": "rtlsb", "subnet": "10.213.9.0/24"}
DOCKER_LAB = {"root": WORK / "lab-docker", "prefix": "rtlsc", "subnet": "10.213.10.0/24"}
KEY_TYPES = ("rsa-2048", "rsa-4096", "ecdsa-p256", "ed25519")
CLEAN_TRUST = "rm -rf /etc/docker/certs.d"
RESET_REGISTRY = ("ids=$(docker ps -aq); [ -z \"$ids\" ] || docker rm -f $ids >/dev/null; "
                  "rm -rf /var/lib/docker-registry && mkdir -p /var/lib/docker-registry")
RESET_CLIENT = ("rm -rf /etc/docker/certs.d; imgs=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '^lab/'); "
                "[ -z \"$imgs\" ] || docker rmi -f $imgs >/dev/null; true")

# tool keys, in the order tables and the plot show them
OURS_FIRST, OURS_NOOP = "ours_first", "ours_noop"
ANSIBLE, FLOOR_JOB, FLOOR_CONNECT1 = "ansible_first", "asyncssh_job", "asyncssh_connect1"
OURS_P10 = "ours_first_parallel10"
PYINFRA_FIRST = "pyinfra_first"
LABELS = {
    OURS_FIRST: "ours: clients.trust, first run",
    OURS_NOOP: "ours: clients.trust, no-op rerun",
    ANSIBLE: "ansible-core playbook, first run (forks=N, pipelining)",
    PYINFRA_FIRST: "pyinfra deploy, first run (--parallel N)",
    FLOOR_JOB: "asyncssh floor: connect + bare job (one command)",
    FLOOR_CONNECT1: "asyncssh floor: connect + one command",
    OURS_P10: "ours: clients.trust, first run, --parallel 10 (default)",
}


SHORT = {OURS_FIRST: "ours first run", OURS_NOOP: "ours no-op", ANSIBLE: "ansible first run",
         PYINFRA_FIRST: "pyinfra first run",
         FLOOR_JOB: "floor bare job", FLOOR_CONNECT1: "floor connect + one command", OURS_P10: "ours --parallel 10"}


class BenchError(RuntimeError):
    """A run failed or left a wrong result: the benchmark stops (labs still come down)."""


def say(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


T0 = time.monotonic()


# --------------------------------------------------------------------------- measuring


def machine_busy() -> float:
    """CPU-seconds all cores spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    tool: str
    n: int
    rep: int
    seconds: float           # wall time of the whole command, process start to exit
    client_cpu: float        # CPU-seconds of the command and its (waited-for) children
    machine_cpu: float       # CPU-seconds the whole machine was busy meanwhile (all lab hosts too)
    extra: dict = field(default_factory=dict)


def run_timed(argv: list[str], *, env: dict | None = None, cwd: Path = REPO,
              timeout: float = 600) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """Run argv; its wall time, its CPU (with its waited-for children) and the machine's busy CPU
    meanwhile. The peak RSS of the command (its largest process) is ``proc.maxrss_mb``."""
    busy = machine_busy()
    start = time.monotonic()
    popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    outputs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k, f: outputs.__setitem__(k, f.read()), args=(k, f))
               for k, f in (("out", popen.stdout), ("err", popen.stderr))]
    for t in readers:
        t.start()
    killer = threading.Timer(timeout, popen.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(popen.pid, 0)    # wait4: this command's own rusage, exactly
    finally:
        killer.cancel()
    wall = time.monotonic() - start
    busy = machine_busy() - busy
    for t in readers:
        t.join()
    popen.returncode = os.waitstatus_to_exitcode(status)
    proc = subprocess.CompletedProcess(argv, popen.returncode, outputs["out"].decode(errors="replace"),
                                       outputs["err"].decode(errors="replace"))
    proc.maxrss_mb = usage.ru_maxrss / 1024   # type: ignore[attr-defined]
    return proc, wall, usage.ru_utime + usage.ru_stime, busy


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# --------------------------------------------------------------------------- the fleet lab


def tls_checks(names: tuple[str, ...], port: int) -> list[dict]:
    """The TLS checks `clients.trust` makes on a client with dockerd stopped (fabfile/runtimes.py): one
    openssl handshake per endpoint the client pulls from (its names at the registry's port), with the
    CAs installed in that name's certs.d folder. Every peer does the same checks."""
    def is_ip(name: str) -> bool:
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    return [{"name": n, "port": port, "flag": "-verify_ip" if is_ip(n) else "-verify_hostname",
             "ca": f"/etc/docker/certs.d/{n}/ca.crt"} for n in dict.fromkeys(names)]


def openssl_argv(check: dict) -> str:
    name = shlex.quote(check["name"])
    endpoint = shlex.quote(f"{check['name']}:{check['port']}")
    return (f"openssl s_client -connect {endpoint} -servername {name} {check['flag']} {name} "
            f"-verify_return_error -CAfile {shlex.quote(check['ca'])}")


class Fleet:
    """The big sshd-only lab plus everything the tools need to run against it."""

    def __init__(self, lab, clients: int):
        self.lab = lab
        self.clients = clients
        self.run_dir = WORK / "run"
        self.inventory = self.run_dir / "inventory.yaml"
        self.names = [f"client{i}" for i in range(1, clients + 1)]

    # -- setup -----------------------------------------------------------------------------
    def prepare(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        write_inventory_copy(self.lab, self.inventory, self.run_dir)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "ANSIBLE_"))}
        env.update(INVOKE_INVENTORY=str(self.inventory), INVOKE_SUDO_PASSWORD=self.lab.sudo_password,
                   COLUMNS="200", TERM="dumb")
        return env

    def load_expectations(self) -> None:
        """What every client must end up with: paths and sha256 from our own desired_files()."""
        from fabfile import clients as C
        from fabfile.session import open_session

        s = open_session(self.inventory)
        material = s.pki.load()
        if material is None:
            raise BenchError("no certificate after registry.deploy")
        self.anchors = s.anchors(material)
        self.registry = s.inv.registry
        self.client_objs = {c.name: c for c in s.inv.clients}
        self.want: dict[str, dict[str, str]] = {}
        self.dirs: dict[str, list[str]] = {}
        self.checks: dict[str, list[dict]] = {}
        for name in self.names:
            c = self.client_objs[name]
            files = C.desired_files(c, self.registry, self.anchors, "debian")
            self.want[name] = {f.path: f.sha256 for f in files}
            self.dirs[name] = C.certs_d_dirs(c.registry_names, self.registry.port)
            self.checks[name] = tls_checks(c.registry_names, self.registry.port)
        self.anchor_pem = self.anchors[0].pem
        self.ca_file = self.run_dir / "ca.crt"
        self.ca_file.write_bytes(self.anchor_pem)

    # -- lab-side helpers (never timed) ----------------------------------------------------
    def on_hosts(self, names: list[str], command: str) -> dict[str, subprocess.CompletedProcess]:
        with ThreadPoolExecutor(max_workers=min(32, len(names))) as pool:
            return dict(zip(names, pool.map(lambda h: self.lab.run(h, command, timeout=60), names)))

    def clean(self, n: int) -> None:
        for host, res in self.on_hosts(self.names[:n], CLEAN_TRUST).items():
            if res.returncode != 0:
                raise BenchError(f"cleaning {host} failed: {res.stderr.strip()}")

    def check(self, n: int, what: str) -> None:
        """Every one of the first n clients has every trust file, right sha256, 0644 root."""
        names = self.names[:n]
        paths = self.want[names[0]]
        quoted = " ".join(shlex.quote(p) for p in paths)
        out = self.on_hosts(names, f"sha256sum {quoted}; stat -c 'MODE %a %U %n' {quoted}")
        bad = []
        for host in names:
            text = out[host].stdout
            seen = {}
            modes = {}
            for line in text.splitlines():
                if line.startswith("MODE "):
                    _, mode, owner, path = line.split(" ", 3)
                    modes[path] = (mode, owner)
                elif "  " in line:
                    digest, path = line.split("  ", 1)
                    seen[path] = digest
            for path, digest in self.want[host].items():
                if seen.get(path) != digest:
                    bad.append(f"{host}:{path} sha256 {seen.get(path, 'missing')[:12]} != {digest[:12]}")
                elif modes.get(path) != ("644", "root"):
                    bad.append(f"{host}:{path} mode/owner {modes.get(path)}")
        if bad:
            raise BenchError(f"after {what} at N={n}: {len(bad)} wrong file(s): " + "; ".join(bad[:5]))

    # -- tools -----------------------------------------------------------------------------
    def ours(self, n: int, parallel: int, expect: str) -> tuple[float, float, float, dict]:
        argv = [str(OUR_CMD), "clients.trust", "--hosts", ",".join(self.names[:n]), "--parallel", str(parallel), "--json"]
        proc, wall, cpu, busy = run_timed(argv, env=self.env())
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise BenchError(f"inv clients.trust (N={n}) exit {proc.returncode}, no JSON: {proc.stderr[-500:]}") from None
        hosts = report["hosts"]
        # a first run checks TLS with the installed trust on each host; a no-op does not (nothing changed)
        wrong = [f"{h}: {r['status']} {r['message']}" for h, r in hosts.items()
                 if r["status"] != expect or (expect == "changed" and r["facts"].get("verify") != "ok")]
        if proc.returncode != 0 or wrong or len(hosts) != n:
            raise BenchError(f"inv clients.trust (N={n}, want {expect}) exit {proc.returncode}: {wrong[:3]} "
                             f"{proc.stderr[-300:]}")
        return wall, cpu, busy, {"maxrss_mb": proc.maxrss_mb,
                                 "hosts": {h: {"seconds": r["seconds"], "phases": r["facts"].get("phase_seconds", {})}
                                           for h, r in hosts.items()}}

    def floor(self, n: int, mode: str) -> tuple[float, float, float, dict]:
        spec = self.run_dir / f"floor-{mode}-{n}.json"
        if not spec.exists():
            spec.write_text(json.dumps(self.floor_spec(n, mode)))
        proc, wall, cpu, busy = run_timed([str(BENCH_PY), str(BENCH / "floor.py"), str(spec)])
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            raise BenchError(f"asyncssh floor {mode} (N={n}) exit {proc.returncode}: {proc.stderr[-500:]}") from None
        bad = []
        for host in self.names[:n]:
            r = out["hosts"].get(host) or {"exit": None, "stdout": "", "stderr": "no result"}
            if r["exit"] != 0:
                bad.append(f"{host}: exit {r['exit']} {r['stderr'][-200:]}")
            elif mode == "job" and "VERIFY ok" not in r["stdout"]:
                bad.append(f"{host}: TLS check failed: {r['stdout'][-200:]}")
            elif mode == "connect1":
                got = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in r["stdout"].splitlines() if "  " in line}
                if got != self.want[host]:
                    bad.append(f"{host}: sha256 output differs")
        if proc.returncode != 0 or bad:
            raise BenchError(f"asyncssh floor {mode} (N={n}): {bad[:3]}")
        return wall, cpu, busy, {"in_process_seconds": out["seconds"], "maxrss_mb": proc.maxrss_mb}

    def floor_spec(self, n: int, mode: str) -> dict:
        hosts = []
        for name in self.names[:n]:
            c = self.client_objs[name]
            paths = list(self.want[name])
            if mode == "job":
                b64 = base64.b64encode(self.anchor_pem).decode()
                q = " ".join(shlex.quote(d) for d in sorted({p.rsplit("/", 1)[0] for p in paths}))
                # the same TLS work as ours: every endpoint the client pulls from, at once
                checks = " ".join(f"( {openssl_argv(x)} </dev/null >/dev/null 2>&1 || echo FAIL ) &"
                                  for x in self.checks[name])
                script = (f"set -e; umask 022; mkdir -p {q}; printf %s {b64} | base64 -d | tee "
                          f"{' '.join(shlex.quote(p) for p in paths[1:])} > {shlex.quote(paths[0])}; "
                          f"r=$( {checks} wait); [ -z \"$r\" ] && echo 'VERIFY ok'")
                command = f"sudo -S -p '' sh -c {shlex.quote(script)}"
                password = self.lab.sudo_password if name == "client2" else None
            else:
                command = "sha256sum " + " ".join(shlex.quote(p) for p in paths)
                password = None
            hosts.append({"name": name, "address": c.ssh.address, "user": c.ssh.user, "key": c.ssh.key,
                          "password": password, "command": command})
        return {"known_hosts": str(self.lab.known_hosts_path), "hosts": hosts}

    # -- ansible ---------------------------------------------------------------------------
    def ansible_setup(self) -> None:
        d = WORK / "ansible"
        shutil.rmtree(d, ignore_errors=True)
        (d / "home").mkdir(parents=True)
        (d / "tmp").mkdir()
        (d / "cp").mkdir()
        self.ansible_dir = d
        (d / "ansible.cfg").write_text("\n".join([
            "[defaults]",
            "host_key_checking = True",
            "gathering = explicit",
            "interpreter_python = /usr/bin/python3",
            "retry_files_enabled = False",
            "timeout = 10",
            "[ssh_connection]",
            "pipelining = True",
            # Ansible's own default ssh_args (ControlMaster/ControlPersist) plus strict host keys
            (f"ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={self.lab.known_hosts_path} "
             "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes"),
        ]) + "\n")
        hosts = {}
        for name in self.names:
            c = self.client_objs[name]
            checks = self.checks[name]
            h = {"ansible_host": c.ssh.address, "restart_command": c.restart_command,
                 "certs_d_dirs": [f"/etc/docker/certs.d/{x}" for x in self.dirs[name]],
                 "tls_checks": checks}
            if name == "client2":
                h["ansible_become_password"] = self.lab.sudo_password
            hosts[name] = h
        inventory = {"all": {"vars": {"ansible_user": self.client_objs[self.names[0]].ssh.user,
                                      "ansible_ssh_private_key_file": self.client_objs[self.names[0]].ssh.key,
                                      "ca_file": str(self.ca_file)},
                             "children": {"clients": {"hosts": hosts}}}}
        self.ansible_inventory = d / "inventory.yml"       # JSON is YAML (ansible's yaml inventory plugin)
        fd = os.open(self.ansible_inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the lab's sudo password
        with os.fdopen(fd, "w") as fh:
            json.dump(inventory, fh, indent=1)

    def ansible(self, n: int, tag: str) -> tuple[float, float, float, dict]:
        cp = self.ansible_dir / "cp" / tag      # a fresh ControlPath dir: every run starts cold
        cp.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "INVOKE_"))}
        env.update(ANSIBLE_CONFIG=str(self.ansible_dir / "ansible.cfg"), ANSIBLE_HOME=str(self.ansible_dir / "home"),
                   ANSIBLE_LOCAL_TEMP=str(self.ansible_dir / "tmp"), ANSIBLE_SSH_CONTROL_PATH_DIR=str(cp),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        argv = [str(ANSIBLE_PLAYBOOK), "-i", str(self.ansible_inventory), "-f", str(n),
                "--limit", ",".join(self.names[:n]), str(BENCH / "playbook.yml")]
        try:
            proc, wall, cpu, busy = run_timed(argv, env=env)
        finally:
            close_control_masters(cp)
        recap = [line for line in proc.stdout.splitlines() if " : ok=" in line]
        failed = [line for line in recap if "failed=0" not in line or "unreachable=0" not in line]
        if proc.returncode != 0 or len(recap) != n or failed:
            raise BenchError(f"ansible-playbook (N={n}) exit {proc.returncode}: {failed[:3]} "
                             f"{(proc.stdout + proc.stderr)[-800:]}")
        changed = sum(1 for line in recap if "changed=0" not in line)
        return wall, cpu, busy, {"changed_hosts": changed, "maxrss_mb": proc.maxrss_mb}

    # -- pyinfra ---------------------------------------------------------------------------
    def pyinfra_setup(self) -> None:
        d = WORK / "pyinfra"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        self.pyinfra_dir = d
        hosts = []
        for name in self.names:
            c = self.client_objs[name]
            data = {"ssh_hostname": c.ssh.address, "ssh_user": c.ssh.user, "ssh_key": c.ssh.key,
                    "ssh_known_hosts_file": str(self.lab.known_hosts_path), "ssh_strict_host_key_checking": "yes",
                    "ssh_allow_agent": False, "ssh_look_for_keys": False,
                    "certs_d_dirs": [f"/etc/docker/certs.d/{x}" for x in self.dirs[name]],
                    "ca_file": str(self.ca_file), "tls_checks": [openssl_argv(x) for x in self.checks[name]]}
            if name == "client2":
                data["_sudo_password"] = self.lab.sudo_password
            hosts.append((name, data))
        self.pyinfra_hosts = hosts

    def pyinfra(self, n: int) -> tuple[float, float, float, dict]:
        inventory = self.pyinfra_dir / f"inventory_{n}.py"        # the first n clients only
        if not inventory.exists():
            fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # the lab's sudo password
            with os.fdopen(fd, "w") as fh:
                fh.write(f"clients = {self.pyinfra_hosts[:n]!r}\n")
        argv = [str(PYINFRA), "-y", "--parallel", str(n), "--no-wait", str(inventory),
                str(BENCH / "pyinfra_deploy.py")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "INVOKE_"))}
        env.update(HOME=str(self.pyinfra_dir), NO_COLOR="1", TERM="dumb")
        proc, wall, cpu, busy = run_timed(argv, env=env, cwd=self.pyinfra_dir)
        text = proc.stdout + proc.stderr
        total = next((line.split() for line in text.splitlines() if line.strip().startswith("Grand total")), [])
        # columns: operation, hosts, success, error, no change (one count per host and operation)
        if proc.returncode != 0 or len(total) < 6 or total[-2] not in ("-", "0") or total[-3] != total[-4]:
            raise BenchError(f"pyinfra (N={n}) exit {proc.returncode}: {text[-800:]}")
        return wall, cpu, busy, {"maxrss_mb": proc.maxrss_mb}


def close_control_masters(cp: Path) -> None:
    """Ask each ssh ControlMaster ansible left in cp to exit (the masters we started)."""
    for sock in cp.iterdir() if cp.exists() else ():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab-host"], capture_output=True, timeout=10, check=False)
    shutil.rmtree(cp, ignore_errors=True)


def write_inventory_copy(lab, dest: Path, run_dir: Path) -> None:
    """The lab inventory with pki/state folders of our own (like tests/e2e/conftest.py)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(lab.inventory_path.read_text())
    data["certificate"]["pki_dir"] = str(run_dir / "pki")
    data["state_dir"] = str(run_dir / "state")
    with open(dest, "w") as fh:
        yaml.dump(data, fh)


# --------------------------------------------------------------------------- phases


def first_runs(fleet: Fleet, n: int, rep: int, tools: list[str], samples: list[Sample], suffix: str = "") -> None:
    """One repetition at N=n: the first-run tools take turns (the order rotates with rep), the
    installed trust is removed before each; ours is followed by its no-op rerun, the floor's
    connect + one command comes last (files in place). Every run is checked on every host."""
    order = tools[rep % len(tools):] + tools[:rep % len(tools)]

    def record(tool: str, result: tuple[float, float, float, dict]) -> None:
        samples.append(Sample(tool + suffix, n, rep, *result))

    for tool in order:
        fleet.clean(n)
        if tool == OURS_FIRST:
            record(OURS_FIRST, fleet.ours(n, n, expect="changed"))
            fleet.check(n, f"ours first run{suffix}")
            record(OURS_NOOP, fleet.ours(n, n, expect="ok"))
            fleet.check(n, f"ours no-op rerun{suffix}")
        elif tool == ANSIBLE:
            result = fleet.ansible(n, f"n{n}-r{rep}{suffix.replace('@', '-')}")
            fleet.check(n, f"ansible-playbook{suffix}")
            if result[3]["changed_hosts"] != n:
                raise BenchError(f"ansible changed {result[3]['changed_hosts']} of {n} hosts on a first run")
            record(ANSIBLE, result)
        elif tool == PYINFRA_FIRST:
            record(PYINFRA_FIRST, fleet.pyinfra(n))
            fleet.check(n, f"pyinfra{suffix}")
        else:
            record(FLOOR_JOB, fleet.floor(n, "job"))
            fleet.check(n, f"asyncssh bare job{suffix}")
    record(FLOOR_CONNECT1, fleet.floor(n, "connect1"))
    line = ", ".join(f"{x.tool.split('@')[0]} {x.seconds:.2f}s" for x in samples
                     if x.n == n and x.rep == rep and x.tool.endswith(suffix) and ("@" in x.tool) == bool(suffix))
    say(f"N={n}{suffix} rep {rep + 1}: {line}")


def fanout(fleet: Fleet, ns: list[int], reps: int, peer_reps: dict[int, int], peer_max_n: int, p10_reps: int,
           samples: list[Sample]) -> None:
    for n in ns:
        fleet.clean(fleet.clients)
        for rep in range(reps):
            peers = [ANSIBLE, PYINFRA_FIRST] if n <= peer_max_n and rep < peer_reps.get(n, reps) else []
            first_runs(fleet, n, rep, [OURS_FIRST, *peers, FLOOR_JOB], samples)
            if n == P10_N and rep < p10_reps:
                fleet.clean(n)
                samples.append(Sample(OURS_P10, n, rep, *fleet.ours(n, 10, expect="changed")))
                fleet.check(n, "ours first run --parallel 10")


REDIRECT = "iptables -w -t nat {op} PREROUTING -i eth0 -p tcp --dport 22 -j REDIRECT --to-ports 2222"


def latency(fleet: Fleet, n: int, rtts: list[int], reps: int, peer_reps: int, samples: list[Sample],
            trips_n: int = 1) -> dict:
    """Every tool at N=n, and at N=trips_n, through bench/relay.py (a fixed delay each way in each client's
    namespace) at each RTT; rows TOOL@rttMS. Round trips per host are read at N=trips_n: at N=50 this 2-core
    machine is CPU-bound, and waiting on the network overlaps waiting for the CPU (t(RTT) can come out below
    t(0)). The relay and the REDIRECT rules are removed afterwards."""
    names = fleet.names[:n]
    state = fleet.lab._state()
    netns = [state.host(h).netns for h in names]
    added = fleet.on_hosts(names, REDIRECT.format(op="-A"))
    try:
        bad = [h for h, r in added.items() if r.returncode != 0]
        if bad:
            raise BenchError(f"iptables REDIRECT in {bad[:3]}: {added[bad[0]].stderr.strip()}")
        for rtt in rtts:
            relay = subprocess.Popen([sys.executable, str(BENCH / "relay.py"), str(rtt), *netns],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                if relay.stdout.readline().strip() != "READY":
                    raise BenchError(f"relay at {rtt} ms did not start: {relay.stderr.read()[-500:]}")
                for size in sorted({trips_n, n}):
                    for rep in range(reps):
                        peers = [ANSIBLE, PYINFRA_FIRST] if rep < peer_reps else []
                        first_runs(fleet, size, rep, [OURS_FIRST, *peers, FLOOR_JOB], samples, suffix=f"@rtt{rtt}")
            finally:
                relay.terminate()
                relay.wait(timeout=10)
    finally:
        fleet.on_hosts(names, REDIRECT.format(op="-D"))
    return {"n": n, "trips_n": trips_n, "rtts": rtts, "reps": reps, "peer_reps": peer_reps}


def cert_generation(reps: int) -> dict:
    from cryptography import x509

    from fabfile import certs

    spec_sans = (certs.parse_san("DNS:registry.lab"), certs.parse_san("IP:10.213.9.10"))
    out = {}
    for kt in KEY_TYPES:
        spec = certs.CertSpec(subject=(("CN", "registry.lab"),), sans=spec_sans, key_type=kt)
        keygen, total = [], []
        for _ in range(reps):
            now = dt.datetime.now(dt.UTC)
            a = time.perf_counter()
            key = certs.generate_key(kt)
            b = time.perf_counter()
            cert = certs.build_self_signed(spec, key, now)
            c = time.perf_counter()
            if certs.key_type_of(cert.public_key()) != kt or not isinstance(cert, x509.Certificate):
                raise BenchError(f"certificate of {kt} came out as {certs.key_type_of(cert.public_key())}")
            keygen.append(b - a)
            total.append(c - a)
        out[kt] = {"total": summary(total), "keygen": summary(keygen)}
        say(f"cert {kt}: median {out[kt]['total']['median'] * 1000:.1f} ms")
    return out


def docker_deploy(reps: int) -> dict:
    """`inv deploy` on a 3-client docker lab: first run from bare, then the no-op rerun."""
    from fabfile.lab import Lab

    lab = Lab(DOCKER_LAB["root"], DOCKER_LAB["prefix"])
    LABS.append(lab)
    started = time.monotonic()
    lab.up(clients=3, docker=True, subnet=DOCKER_LAB["subnet"])
    up_seconds = time.monotonic() - started
    say(f"docker lab up ({len(lab.hosts)} hosts) in {up_seconds:.1f}s")
    run_dir = WORK / "run-docker"
    first, noop = [], []
    try:
        for rep in range(reps):
            shutil.rmtree(run_dir, ignore_errors=True)       # bare: no local certificate, users, state
            run_dir.mkdir(parents=True)
            inventory = run_dir / "inventory.yaml"
            write_inventory_copy(lab, inventory, run_dir)
            with ThreadPoolExecutor(len(lab.hosts)) as pool:
                resets = list(pool.map(lambda h: lab.run(h, RESET_REGISTRY if h == "registry" else RESET_CLIENT,
                                                         timeout=120), lab.hosts))
            if any(r.returncode for r in resets):
                raise BenchError(f"docker lab reset failed: {[r.stderr for r in resets if r.returncode]}")
            env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
            env.update(INVOKE_INVENTORY=str(inventory), INVOKE_SUDO_PASSWORD=lab.sudo_password, TERM="dumb")
            for label, bucket, want in (("first", first, "changed"), ("no-op", noop, "ok")):
                proc, wall, cpu, busy = run_timed([str(OUR_CMD), "deploy", "--json"], env=env)
                try:
                    report = json.loads(proc.stdout)
                except ValueError:
                    raise BenchError(f"inv deploy ({label}) exit {proc.returncode}: {proc.stderr[-500:]}") from None
                statuses = {h: r["status"] for h, r in report["hosts"].items()}
                statuses["registry"] = report.get("registry", {}).get("status")  # its own row since issue 13
                if proc.returncode != 0 or set(statuses.values()) != {want}:
                    raise BenchError(f"inv deploy ({label}) exit {proc.returncode}: {statuses} {proc.stderr[-300:]}")
                bucket.append({"seconds": wall, "client_cpu": cpu, "machine_cpu": busy,
                               "hosts": {h: r["seconds"] for h, r in report["hosts"].items()}})
            # the anchor clients trust: the CA (ca mode, the default) or the self-signed certificate
            anchor = run_dir / "pki" / "ca.crt"
            pem = (anchor if anchor.exists() else run_dir / "pki" / "registry.crt").read_bytes()
            digest = hashlib.sha256(pem).hexdigest()
            for h in lab.hosts:
                if h == "registry":
                    continue
                got = lab.run(h, "sha256sum /etc/docker/certs.d/registry.lab/ca.crt").stdout.split()[:1]
                if got != [digest]:
                    raise BenchError(f"inv deploy: {h} has no/wrong ca.crt ({got})")
            say(f"inv deploy rep {rep + 1}/{reps}: first {first[-1]['seconds']:.2f}s, no-op {noop[-1]['seconds']:.2f}s")
        dead = dead_peer(lab, run_dir / "inventory.yaml", env)
        say(f"dead peer: client1 reported unreachable after {dead['seconds']:.1f}s (run {dead['wall']:.1f}s)")
    finally:
        down(lab)
    return {"lab_up_seconds": up_seconds, "clients": 3,
            "first": {"runs": first, **summary([r["seconds"] for r in first])},
            "noop": {"runs": noop, **summary([r["seconds"] for r in noop])}, "dead_peer": dead}


def dead_peer(lab, inventory: Path, env: dict) -> dict:
    """client1 vanishes mid-command (its restart command takes its link down, so its answer never
    comes back): how long `inv clients.trust` takes to report it unreachable while the others finish."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(inventory.read_text())
    data["clients"]["hosts"]["client1"].update(restart="always", restart_command="ip link set eth0 down")
    with open(inventory, "w") as fh:
        yaml.dump(data, fh)
    clients = [h for h in lab.hosts if h != "registry"]
    for h in clients:      # trust removed, so every client writes; client1 then restarts and vanishes
        lab.run(h, CLEAN_TRUST, timeout=60)
    try:
        proc, wall, _, _ = run_timed([str(OUR_CMD), "clients.trust", "--json"], env=env)
    finally:
        lab.run("client1", "ip link set eth0 up", timeout=60)
    try:
        hosts = json.loads(proc.stdout)["hosts"]
    except ValueError:
        raise BenchError(f"dead peer run: exit {proc.returncode}, no JSON: {proc.stderr[-500:]}") from None
    lost = hosts["client1"]
    others = {h: r["status"] for h, r in hosts.items() if h != "client1"}
    if proc.returncode != 1 or lost["status"] != "unreachable" or set(others.values()) != {"changed"}:
        raise BenchError(f"dead peer run: exit {proc.returncode}, client1 {lost['status']} {lost['message']!r}, "
                         f"others {others}")
    return {"seconds": lost["seconds"], "wall": wall, "message": lost["message"], "others": others}


def profile(fleet: Fleet, hosts: int = 10) -> dict:
    """Where one host's time goes, with nothing else running, on `hosts` clients one after the
    other (in-process): the transport's own round trips (connect, a command, sudo), then the
    product's per-host step itself (clients.trust, first run and no-op, with its phase_seconds);
    the remote scripts' own cost (run inside the host, no SSH); the process start of the command."""
    import resource

    from fabfile import clients as C
    from fabfile import facts as F
    from fabfile import runtimes as RT
    from fabfile.lab import hosts as H
    from fabfile.session import open_session

    s = open_session(fleet.inventory, sudo_password=fleet.lab.sudo_password)
    job = C.TrustJob(registry=fleet.registry, anchors=fleet.anchors, connect=s.connect)   # one host: no canary
    names = [n for n in fleet.names if n != "client2"][:hosts]     # NOPASSWD hosts
    fleet.clean(fleet.clients)
    rows: dict[str, list[float]] = {}

    def lap(name: str, fn):
        a = time.perf_counter()
        out = fn()
        rows.setdefault(name, []).append(time.perf_counter() - a)
        return out

    for name in names:
        c = fleet.client_objs[name]
        with s.connect(c.ssh) as remote:
            lap("transport: connect (TCP, SSH handshake, auth)", remote.open)
            lap("transport: first command after auth ('true')", lambda: remote.run("true"))
            lap("transport: next command ('true')", lambda: remote.run("true"))
            lap("transport: sudo ('true' as root)", lambda: remote.run("true", sudo=True))
        for run, want in (("first run", "changed"), ("no-op", "ok")):
            result = lap(f"clients.trust, {run}: whole host", lambda: C.trust(c, job))
            if result.status.value != want:
                raise BenchError(f"profile: clients.trust on {name} ({run}): {result.status} {result.message}")
            for phase, seconds in result.facts.get("phase_seconds", {}).items():
                rows.setdefault(f"clients.trust, {run}: {phase}", []).append(seconds)
    c = fleet.client_objs[names[0]]
    scripts = {"probe (no-op)": F.client_script(C.probe_paths(c, fleet.registry, fleet.anchors),
                                                C.extra_globs(c, fleet.registry)),
               "TLS checks (dockerd stopped)": RT.script(C.check_targets(c, fleet.registry, fleet.anchors))}
    ssh_rows = {k: summary(v) for k, v in rows.items()}

    # the same scripts inside a host, no SSH: their CPU cost on the client
    holder = fleet.lab._state().host(names[0]).holder_pid
    remote_cpu = {}
    for label, script in {"sudo true (as deploy)": "su -s /bin/sh deploy -c 'sudo -n true'", **scripts}.items():
        reps = 10
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        for _ in range(reps):
            subprocess.run(H.enter_argv(holder, ["/bin/sh", "-c", script]), capture_output=True, env=H.ENV, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        remote_cpu[label] = {"wall": (time.perf_counter() - start) / reps,
                             "cpu": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / reps}

    # process start: interpreter + imports, and `inv --list` (imports + Invoke's own parsing)
    starts = {}
    for label, argv in {"python -c pass": [str(OUR_PY), "-c", "pass"],
                        "import tasks (all our imports)": [str(OUR_PY), "-c", "import tasks"],
                        "import fabfile.cli (the command's imports)": [str(OUR_PY), "-c", "import fabfile.cli"],
                        "registry-tls --list": [str(OUR_CMD), "--list"],
                        "inv --list (adds the checkout's lab tasks)": [str(OUR_INV), "--list"],
                        "asyncssh floor: python + import asyncssh": [str(BENCH_PY), "-c", "import asyncssh"]}.items():
        walls = []
        for _ in range(5):
            _, wall, _, _ = run_timed(argv)
            walls.append(wall)
        starts[label] = summary(walls)
    fleet.clean(fleet.clients)
    return {"hosts": names, "ssh_round_trips": ssh_rows, "remote_cpu": remote_cpu, "process_start": starts}


def evidence(fleet: Fleet, hosts: int = 10) -> dict:
    """Measurements behind the patches proposed in the results (raw paramiko, no Fabric)."""
    import socket

    import paramiko

    known = str(fleet.lab.known_hosts_path)

    class QuickAck(socket.socket):
        def recv(self, *args):
            data = super().recv(*args)
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            return data

    def connect_and_run(address: str, user: str, key: str, quickack: bool) -> tuple[float, float, float]:
        client = paramiko.SSHClient()
        client.load_host_keys(known)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        start = time.perf_counter()
        sock = socket.create_connection((address, 22), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if quickack:
            sock = QuickAck(sock.family, sock.type, sock.proto, fileno=sock.detach())
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        client.connect(address, username=user, key_filename=[key], look_for_keys=False, allow_agent=False, sock=sock)
        authed = time.perf_counter()
        chan = client.get_transport().open_session()
        opened = time.perf_counter()
        chan.exec_command("true")
        chan.recv_exit_status()
        done = time.perf_counter()
        client.close()
        return authed - start, opened - authed, done - start

    out = {}
    names = fleet.names[2:2 + hosts]
    for quickack in (False, True):
        rows = [connect_and_run(fleet.client_objs[n].ssh.address, fleet.client_objs[n].ssh.user,
                                fleet.client_objs[n].ssh.key, quickack) for n in names]
        out["quickack" if quickack else "nodelay_only"] = {
            "connect_auth": summary([r[0] for r in rows]), "first_channel_open": summary([r[1] for r in rows]),
            "connect_to_first_command_done": summary([r[2] for r in rows])}
    loads = []
    for _ in range(20):
        a = time.process_time()
        paramiko.SSHClient().load_host_keys(known)
        loads.append(time.process_time() - a)
    out["load_known_hosts_cpu"] = {"lines": len(fleet.lab.known_hosts_path.read_text().splitlines()), **summary(loads)}
    return out


# --------------------------------------------------------------------------- report


def aggregate(samples: list[Sample]) -> dict:
    table: dict = {}
    for s in samples:
        table.setdefault(s.tool, {}).setdefault(s.n, []).append(s)
    out = {}
    for tool, by_n in table.items():
        out[tool] = {}
        for n, ss in sorted(by_n.items()):
            out[tool][n] = {"seconds": summary([s.seconds for s in ss]),
                            "client_cpu": summary([s.client_cpu for s in ss]),
                            "machine_cpu": summary([s.machine_cpu for s in ss]),
                            "maxrss_mb": summary([s.extra.get("maxrss_mb", 0.0) for s in ss]),
                            "runs": [round(s.seconds, 4) for s in ss]}
    return out


def phase_profile(samples: list[Sample]) -> dict:
    """Per-host phase seconds of our runs, from `--json` facts.phase_seconds (median over hosts and runs)."""
    out = {}
    for tool in (OURS_FIRST, OURS_NOOP, OURS_P10):
        for n in sorted({s.n for s in samples if s.tool == tool}):
            ss = [s for s in samples if s.tool == tool and s.n == n]
            hosts = [h for s in ss for h in s.extra["hosts"].values()]
            phases = {}
            for name in ("connect", "probe", "apply"):
                vals = [h["phases"][name] for h in hosts if name in h["phases"]]
                if vals:
                    phases[name] = statistics.median(vals)
            seconds = [h["seconds"] for h in hosts]
            slowest = statistics.median([max(h["seconds"] for h in s.extra["hosts"].values()) for s in ss])
            wall = statistics.median([s.seconds for s in ss])
            out.setdefault(tool, {})[n] = {"host_seconds_median": statistics.median(seconds),
                                           "slowest_host_median": slowest, "wall_median": wall,
                                           "outside_hosts": wall - slowest, **{f"{k}_median": v for k, v in phases.items()}}
    return out


def ratio(agg: dict, a: str, b: str, n: int) -> float | None:
    try:
        return agg[a][n]["seconds"]["median"] / agg[b][n]["seconds"]["median"]
    except KeyError:
        return None


def fmt(x: float | None, unit: str = "s", digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def cell(c: dict | None) -> str:
    if c is None:
        return "-"
    x = c["seconds"]
    return f"{x['median']:.2f} ({x['min']:.2f}–{x['max']:.2f}) ×{x['n']}"


def write_markdown(data: dict) -> str:
    agg, ns = data["fanout"], data["config"]["ns"]
    r, env = data["ratios"], data["env"]
    n, big = (GOAL_N if GOAL_N in ns else max(ns)), max(ns)
    lines = [
        "# registry-tls benchmark",
        "",
        (f"Generated by `bench/run` on {env['date']} ({env['cpus']} CPUs, {env['cpu_model']}, "
         f"kernel {env['kernel']}; Python {env['python']}, paramiko {env['paramiko']}, "
         f"fabric {env['fabric']}, ansible-core {env['ansible_core']}, pyinfra {env.get('pyinfra', '?')}, "
         f"asyncssh {env['asyncssh']}, {env['openssh']}). Total run {data['total_seconds']:.0f} s. "
         f"Code measured: {env.get('measured_tree', '?')}; load average before the run: {env.get('loadavg', '?')}."),
        "",
        ("All hosts are network namespaces on this one machine (sshd-only clients; the registry runs docker): "
         "every tool's SSH client, every client's sshd/sudo/openssl and the registry share the same "
         f"{env['cpus']} cores, so from N=50 on every tool is CPU-bound (see the CPU columns)."),
        ("Times are wall seconds of the whole command (process start to exit), median of the runs and min–max; "
         "tools alternate within each repetition; the installed trust is removed on the N hosts before every first run; "
         "every run is checked afterwards on every host (each certs.d file present, right sha256, 0644 root)."),
        "",
        "## Goals (issue 17), this run",
        "",
        "| comparison | value | goal | met |",
        "|---|---|---|---|",
    ]
    for label, value, goal, met in r["table"]:
        lines.append(f"| {label} | {value} | {goal} | {'-' if met is None else 'yes' if met else 'NO'} |")
    lines += [
        "",
        "## Fan-out: wall time vs number of clients (`--parallel N`, ansible forks = N, pyinfra --parallel N)",
        "",
        "| tool | " + " | ".join(f"N={m}" for m in ns) + f" | client CPU at N={n} | machine CPU at N={n} "
        f"| client CPU at N={big} | peak RSS at N={big} |",
        "|---|" + "---|" * (len(ns) + 4),
    ]
    for tool, label in LABELS.items():
        if tool not in agg:
            continue
        mid, top = agg[tool].get(n), agg[tool].get(big)
        lines.append(f"| {label} | " + " | ".join(cell(agg[tool].get(m)) for m in ns) + " | "
                     + (f"{mid['client_cpu']['median']:.2f} cpu-s | {mid['machine_cpu']['median']:.2f} cpu-s | " if mid else "- | - | ")
                     + (f"{top['client_cpu']['median']:.2f} cpu-s | {top['maxrss_mb']['median']:.0f} MB |" if top else "- | - |"))
    per_host = {t: agg[t][n]["machine_cpu"]["median"] / n for t in LABELS if t in agg and n in agg[t] and t != OURS_P10}
    if per_host:
        lines += ["", f"Machine CPU per host at N={n} (all processes of the run, on every lab host, ÷ N): "
                  + ", ".join(f"{SHORT[t]} {v * 1000:.0f} ms" for t, v in per_host.items()) + "."]
    mem = agg.get(OURS_FIRST, {}).get(big)
    if mem:
        lines += ["", (f"Peak memory of our process (`registry-tls clients.trust`, max RSS from wait4) at N={big}: "
                       f"{mem['maxrss_mb']['median']:.0f} MB first run, "
                       f"{agg[OURS_NOOP][big]['maxrss_mb']['median']:.0f} MB no-op "
                       f"(asyncssh floor: {agg.get(FLOOR_JOB, {}).get(big, {}).get('maxrss_mb', {}).get('median', 0):.0f} MB).")]
    g = r["growth"]
    pairs = [f"{lo}→{hi}" for lo, hi in itertools.pairwise(ns)]
    lines += [
        "",
        "### Growth with N",
        "",
        ("With `--parallel N` every host runs at once (ceil(N/parallel) = 1): a tool whose time followed ceil(N/parallel) "
         "would stay flat; on one 2-core machine time follows total CPU instead. t(N)/t(1) per tool, and the cost "
         "per added host (seconds) between successive N:"),
        "",
        "| tool | " + " | ".join(f"t({m})/t(1)" for m in ns) + " | " + " | ".join(f"s/host {p}" for p in pairs) + " |",
        "|---|" + "---|" * (len(ns) + len(pairs)),
    ]
    for tool, row in g.items():
        lines.append(f"| {LABELS[tool]} | " + " | ".join(fmt(row["ratios"].get(str(m)), "x") for m in ns) + " | "
                     + " | ".join(fmt(row["per_host"].get(f"{lo}-{hi}"), "", 3) for lo, hi in itertools.pairwise(ns)) + " |")
    if r.get("parallel10"):
        p = r["parallel10"]
        lines += ["", (f"Ours at N={p['n']} with the default `--parallel 10` (ceil(N/parallel) = {p['waves']}): "
                       f"{p['seconds']:.2f} s vs {p['seconds_parallel_n']:.2f} s with `--parallel {p['n']}` "
                       f"({p['ratio']:.2f}x).")]
    lat = data.get("latency")
    if lat:
        rtts, ln, tn = lat["rtts"], lat["n"], lat.get("trips_n", lat["n"])
        trips = r["round_trips"]
        lines += [
            "",
            f"## Latency: N={ln} and N={tn} through a relay with a fixed delay each way (`bench/relay.py`)",
            "",
            ("No netem in this kernel, so a user-space relay in each client's namespace (iptables REDIRECT of port 22) "
             "forwards SSH with RTT/2 each way, after one RTT for the TCP handshake; no bandwidth limit; every tool "
             f"goes through it, RTT 0 included. Round trips per host = (t(RTT) − t(0)) / RTT, read at N={tn}, where "
             "the run is not CPU-bound: with many hosts on this 2-core machine the wait for the network overlaps "
             "the wait for the CPU, and the difference is noise (it can come out negative)."),
            "",
            "| tool | N | " + " | ".join(f"RTT {x} ms" for x in rtts) + " | " + " | ".join(
                f"round trips/host @{x} ms" for x in rtts if x) + " |",
            "|---|---|" + "---|" * (len(rtts) + len([x for x in rtts if x])),
        ]
        for size in sorted({tn, ln}):
            for tool, label in LABELS.items():
                if agg.get(f"{tool}@rtt{rtts[0]}", {}).get(size) is None:
                    continue
                counted = " | ".join(fmt(trips.get(tool, {}).get(str(x)), "", 1) if size == tn else "-"
                                     for x in rtts if x)
                lines.append(f"| {label} | {size} | " + " | ".join(cell(agg.get(f"{tool}@rtt{x}", {}).get(size))
                                                               for x in rtts) + f" | {counted} |")
    dp = (data.get("docker_deploy") or {}).get("dead_peer")
    if dp:
        lines += ["", "## Dead peer", "",
                  (f"On the docker lab, client1's restart command takes its link down mid-command (its answer never comes "
                   f"back). `inv clients.trust` reported it `unreachable` after {dp['seconds']:.1f} s "
                   f"(whole run {dp['wall']:.1f} s; the others: {', '.join(f'{h} {st}' for h, st in dp['others'].items())}). "
                   f"Message: \"{dp['message']}\".")]
    lines.append("")

    # where the time goes
    pp, prof = data["phases"], data["profile"]
    lines += ["## Where our time goes per host", "",
              ("Per-host round trips from `--json` (`facts.phase_seconds`, new), median over hosts and runs; "
               "'outside hosts' = wall − slowest host (process start, imports, inventory, the sudo canary host "
               "before the fan-out, report):"), "",
              "| run | N | connect | probe | apply | host total | slowest host | wall | outside hosts |",
              "|---|---|---|---|---|---|---|---|---|"]
    for tool, by_n in pp.items():
        for n, row in by_n.items():
            waves = tool == OURS_P10     # hosts run in ceil(N/10) waves: wall − slowest host is not overhead
            lines.append(f"| {LABELS[tool].replace('ours: clients.trust, ', '')} | {n} | {fmt(row.get('connect_median'))} | "
                         f"{fmt(row.get('probe_median'))} | {fmt(row.get('apply_median'))} | {fmt(row['host_seconds_median'])} | "
                         f"{fmt(row['slowest_host_median'])} | {fmt(row['wall_median'])} | "
                         f"{'n/a (waves)' if waves else fmt(row['outside_hosts'])} |")
    lines += ["", f"One host at a time, nothing else running ({len(prof['hosts'])} hosts, median, ms; our transport (Fabric/paramiko), then the product's per-host step `clients.trust` itself with its phases):", "",
              "| round trip | median | min–max |", "|---|---|---|"]
    for k, v in prof["ssh_round_trips"].items():
        lines.append(f"| {k} | {v['median'] * 1000:.1f} | {v['min'] * 1000:.1f}–{v['max'] * 1000:.1f} |")
    lines += ["", "The same scripts run inside a client without SSH (their own cost on the client, per run):", "",
              "| script | wall ms | CPU ms |", "|---|---|---|"]
    for k, v in prof["remote_cpu"].items():
        lines.append(f"| {k} | {v['wall'] * 1000:.1f} | {v['cpu'] * 1000:.1f} |")
    lines += ["", "Process start (median of 5, s):", "", "| command | median | min–max |", "|---|---|---|"]
    for k, v in prof["process_start"].items():
        lines.append(f"| `{k}` | {v['median']:.3f} | {v['min']:.3f}–{v['max']:.3f} |")
    ev = data["evidence"]
    lines += ["", "Raw paramiko, one host at a time (evidence for the proposed patches, ms):", "",
              "| socket | connect+auth | first channel open | connect → first command done |", "|---|---|---|---|"]
    for k in ("nodelay_only", "quickack"):
        v = ev[k]
        lines.append(f"| {'TCP_NODELAY (today)' if k == 'nodelay_only' else 'TCP_NODELAY + TCP_QUICKACK after each recv'} | "
                     f"{v['connect_auth']['median'] * 1000:.1f} | {v['first_channel_open']['median'] * 1000:.1f} | "
                     f"{v['connect_to_first_command_done']['median'] * 1000:.1f} |")
    kh = ev["load_known_hosts_cpu"]
    lines += ["", (f"`SSHClient.load_host_keys` of the lab known_hosts ({kh['lines']} lines), done once per host today: "
                   f"{kh['median'] * 1000:.2f} ms CPU each.")]

    # certs and docker deploy
    lines += ["", "## Certificate generation (`generate_key` + `build_self_signed`, in-process)", "",
              "| key type | total median | min–max | of which key generation | runs |", "|---|---|---|---|---|"]
    for kt, v in data["certs"].items():
        t = v["total"]
        ms = lambda x: f"{x * 1000:.1f}" if x >= 0.001 else f"{x * 1000:.3f}"  # noqa: E731
        lines.append(f"| {kt} | {ms(t['median'])} ms | {ms(t['min'])}–{ms(t['max'])} ms | "
                     f"{ms(v['keygen']['median'])} ms | {t['n']} |")
    d = data["docker_deploy"]
    if d:
        lines += ["", f"## `inv deploy` on a {d['clients']}-client docker lab (registry + clients run dockerd)", "",
                  "| run | median | min–max | runs |", "|---|---|---|---|",
                  (f"| first run from bare (new certificate, registry container, {d['clients']} clients) | "
                   f"{d['first']['median']:.2f} s | {d['first']['min']:.2f}–{d['first']['max']:.2f} s | {d['first']['n']} |"),
                  f"| no-op rerun | {d['noop']['median']:.2f} s | {d['noop']['min']:.2f}–{d['noop']['max']:.2f} s | {d['noop']['n']} |",
                  "", f"(docker lab up: {d['lab_up_seconds']:.1f} s, not included)"]
    lines += ["", "## How to read / reproduce", "",
              ("`bench/run` (as root, after `./script/setup`); `bench/run --help` for options. Raw numbers: `results.json`; "
               "plot: `fanout.png`. Method and tool set-ups: `bench/README.md`."), ""]
    return "\n".join(lines)


GOAL_N = 50     # the goals are stated at N=50


def median_of(agg: dict, tool: str, n: int) -> float | None:
    cell = agg.get(tool, {}).get(n)
    return cell["seconds"]["median"] if cell else None


def per_added_host(agg: dict, tool: str, lo: int, hi: int) -> float | None:
    a, b = median_of(agg, tool, lo), median_of(agg, tool, hi)
    return None if a is None or b is None or hi <= lo else (b - a) / (hi - lo)


def round_trips(agg: dict, n: int, rtts: list[int]) -> dict:
    """(t(RTT) − t(0)) / RTT per tool: how many round trips each host's work waits for."""
    out: dict = {}
    for tool in LABELS:
        base = median_of(agg, f"{tool}@rtt0", n)
        for rtt in rtts:
            t = median_of(agg, f"{tool}@rtt{rtt}", n)
            if rtt and base is not None and t is not None:
                out.setdefault(tool, {})[str(rtt)] = (t - base) / (rtt / 1000)
    return out


README_BEGIN, README_END = "<!-- bench:begin", "<!-- bench:end -->"


def readme_block(data: dict) -> str:
    """The README's speed table: wall seconds per tool and N, over latency, and the goals."""
    agg, ns, env, r = data["fanout"], data["config"]["ns"], data["env"], data["ratios"]
    lat = data.get("latency") or {}
    rtts = [x for x in lat.get("rtts", []) if x]
    ln = lat.get("n")
    tn = lat.get("trips_n", ln)
    med = lambda tool, n: fmt(median_of(agg, tool, n), "")   # noqa: E731
    lines = [(f"Latest run: {env['date']}, {env['measured_tree']}, {env['cpus']} cores with every lab host on "
              f"the same machine (load average before the run {env.get('loadavg', '?')}); median wall seconds "
              "of the whole command, process start to exit:"), "",
             "| tool | " + " | ".join(f"N={n}" for n in ns)
             + "".join(f" | N={ln}, RTT {x} ms" for x in rtts) + (f" | round trips/host @{max(rtts)} ms (N={tn})" if rtts else "") + " |",
             "|---|" + "---|" * (len(ns) + len(rtts) + (1 if rtts else 0))]
    for tool, label in LABELS.items():
        if tool not in agg or tool == OURS_P10:
            continue
        lines.append(f"| {label} | " + " | ".join(med(tool, n) for n in ns)
                     + "".join(f" | {med(f'{tool}@rtt{x}', ln)}" for x in rtts)
                     + (f" | {fmt(r['round_trips'].get(tool, {}).get(str(max(rtts))), '', 1)}" if rtts else "") + " |")
    lines += ["", "| goal (issue 17) | this run | goal | met |", "|---|---|---|---|"]
    for label, value, goal, met in r["table"]:
        lines.append(f"| {label} | {value} | {goal} | {'-' if met is None else 'yes' if met else 'NO'} |")
    return "\n".join(lines)


def write_readme(data: dict) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return
    head, rest = text.split(README_BEGIN, 1)
    marker, tail = rest.split(README_END, 1)
    marker = README_BEGIN + marker.split("\n", 1)[0] + "\n"
    readme.write_text(head + marker + readme_block(data) + "\n" + README_END + tail)


def compute_ratios(agg: dict, ns: list[int], rtts: list[int], latency_n: int | None, trips_n: int | None,
                   dead_peer: float | None) -> dict:
    """The issue's goals, each computed from this run's medians: [label, value, goal, met]."""
    n, big = (GOAL_N if GOAL_N in ns else max(ns)), max(ns)
    table: list = []

    def row(label: str, value: float | None, goal: str, met: bool | None, unit: str = "x", digits: int = 2) -> None:
        table.append([label, fmt(value, unit, digits), goal, None if value is None else bool(met)])

    x = ratio(agg, OURS_FIRST, FLOOR_JOB, n)
    row(f"ours first run / asyncssh floor bare job, N={n}", x, "≤ 1.3", x is not None and x <= 1.3)
    x = ratio(agg, OURS_NOOP, FLOOR_CONNECT1, n)
    row(f"ours no-op rerun / floor connect + one command, N={n}", x, "≤ 1.2", x is not None and x <= 1.2)
    for peer in (ANSIBLE, PYINFRA_FIRST):
        x = ratio(agg, OURS_FIRST, peer, n)
        row(f"ours first run / {SHORT[peer]}, N={n}", x, "< 1 (faster)", x is not None and x < 1)
    scale = {}
    if big > n:
        for ours, floor in ((OURS_FIRST, FLOOR_JOB), (OURS_NOOP, FLOOR_CONNECT1)):
            a, b = per_added_host(agg, ours, n, big), per_added_host(agg, floor, n, big)
            scale[ours], scale[floor] = a, b
            x = a / b if a is not None and b else None
            row(f"{SHORT[ours]} / {SHORT[floor]}: seconds per added host, N={n}→{big}", x, "≤ 1.3",
                x is not None and x <= 1.3)
    trips = round_trips(agg, trips_n, rtts) if trips_n else {}
    top_rtt = max(rtts) if rtts else 0
    if top_rtt and latency_n:
        x = ratio(agg, f"{OURS_FIRST}@rtt{top_rtt}", f"{FLOOR_JOB}@rtt{top_rtt}", latency_n)
        row(f"ours first run / floor bare job at {top_rtt} ms RTT, N={latency_n}", x, "≤ 1.2",
            x is not None and x <= 1.2)
        ours = trips.get(OURS_FIRST, {}).get(str(top_rtt))
        peers = {t: trips[t][str(top_rtt)] for t in (ANSIBLE, PYINFRA_FIRST) if str(top_rtt) in trips.get(t, {})}
        floor = trips.get(FLOOR_JOB, {}).get(str(top_rtt))
        if peers:
            fewest = min(peers, key=peers.get)
            row(f"round trips per host (N={trips_n}), first run at {top_rtt} ms: ours vs the fewest of the peers "
                f"({SHORT[fewest]} {peers[fewest]:.1f}; the floor's one command: {fmt(floor, '', 1)})", ours,
                "fewer than every peer", ours is not None and 0 < ours < peers[fewest], unit="", digits=1)
    row("dead peer: a client vanishing mid-command reported unreachable after", dead_peer, "≤ 20 s",
        dead_peer is not None and dead_peer <= 20, unit=" s", digits=1)
    growth = {tool: {"ratios": {str(m): median_of(agg, tool, m) / median_of(agg, tool, min(ns))
                                for m in ns if median_of(agg, tool, m) is not None},
                     "per_host": {f"{lo}-{hi}": per_added_host(agg, tool, lo, hi) for lo, hi in itertools.pairwise(ns)}}
              for tool in (OURS_FIRST, OURS_NOOP, ANSIBLE, PYINFRA_FIRST, FLOOR_JOB, FLOOR_CONNECT1)
              if median_of(agg, tool, min(ns)) is not None}
    p10 = None
    if median_of(agg, OURS_P10, P10_N) is not None and median_of(agg, OURS_FIRST, P10_N):
        s10, sN = median_of(agg, OURS_P10, P10_N), median_of(agg, OURS_FIRST, P10_N)
        p10 = {"n": P10_N, "waves": math.ceil(P10_N / 10), "seconds": s10, "seconds_parallel_n": sN, "ratio": s10 / sN}
    return {"table": table, "growth": growth, "parallel10": p10, "scale_per_host": scale, "round_trips": trips}


def environment() -> dict:
    def version(pkg: str, py: Path) -> str:
        proc = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"],
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip() or "?"

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "fabfile", "tasks.py"],
                           capture_output=True, text=True, check=False)
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
            "cpu_model": model, "kernel": platform.release(), "python": platform.python_version(),
            "paramiko": version("paramiko", OUR_PY), "fabric": version("fabric", OUR_PY),
            "ansible_core": version("ansible-core", BENCH_PY), "asyncssh": version("asyncssh", BENCH_PY),
            "pyinfra": version("pyinfra", BENCH_PY), "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip()),
            "openssh": (ssh.stderr or ssh.stdout).strip().split(",")[0],
            "measured_tree": f"commit {commit.stdout.strip()[:10] or '?'}"
                             + (" + uncommitted changes in fabfile/tasks.py" if dirty.stdout.strip() else "")}


# --------------------------------------------------------------------------- main

LABS: list = []


def down(lab) -> None:
    if lab in LABS:
        LABS.remove(lab)
    started = time.monotonic()
    lab.down()
    say(f"lab {lab.prefix} down in {time.monotonic() - started:.1f}s")


def render(out: Path) -> int:
    """results.md + fanout.png again from results.json (e.g. after a change to the presentation)."""
    data = json.loads((out / "results.json").read_text())
    for key in ("fanout", "phases"):     # JSON made the N keys strings
        data[key] = {tool: {int(n): v for n, v in by_n.items()} for tool, by_n in data[key].items()}
    (out / "results.md").write_text(write_markdown(data))
    if out.resolve() == RESULTS.resolve():
        write_readme(data)
    return plot(out)


def plot(out: Path) -> int:
    proc = subprocess.run([str(BENCH_PY), str(BENCH / "plot.py"), str(out / "results.json"), str(out / "fanout.png")],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"bench: plot failed: {proc.stderr[-500:]}", file=sys.stderr)
        return 1
    return 0


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per tool and N (default 5)")
    ap.add_argument("--ansible-reps", "--peer-reps", type=int, default=3,
                    help="repetitions of the ansible-core and pyinfra runs at N>1, the slow cells "
                         "(default 3; N=1 gets --reps)")
    ap.add_argument("--ns", default="1,10,50,200", help="client counts (default 1,10,50,200)")
    ap.add_argument("--peer-max-n", type=int, default=50,
                    help="largest N for ansible-core and pyinfra (default 50: they are slow)")
    ap.add_argument("--rtts", default="0,20,50",
                    help="RTTs in ms for the latency runs through bench/relay.py (default 0,20,50; '' to skip)")
    ap.add_argument("--latency-n", type=int, default=50, help="clients in the latency runs (default 50)")
    ap.add_argument("--trips-n", type=int, default=1,
                    help="clients in the latency runs that count round trips per host (default 1: not CPU-bound)")
    ap.add_argument("--latency-reps", type=int, default=3, help="repetitions per RTT (default 3)")
    ap.add_argument("--latency-peer-reps", type=int, default=1,
                    help="ansible-core/pyinfra repetitions per RTT (default 1)")
    ap.add_argument("--cert-reps", type=int, default=7, help="repetitions per key type (default 7)")
    ap.add_argument("--deploy-reps", type=int, default=3, help="inv deploy repetitions on the docker lab (default 3)")
    ap.add_argument("--no-docker-lab", action="store_true", help="skip the inv deploy part")
    ap.add_argument("--out", default=str(RESULTS), help="results folder (default bench/results)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite results.md and fanout.png from the results.json in --out (no labs)")
    args = ap.parse_args(argv)
    if args.render:
        return render(Path(args.out))
    ns = sorted({int(x) for x in args.ns.split(",")})
    if os.geteuid() != 0:
        print("bench: the lab needs root", file=sys.stderr)
        return 2
    for tool in (OUR_CMD, OUR_INV, BENCH_PY, ANSIBLE_PLAYBOOK, PYINFRA):
        if not tool.exists():
            print(f"bench: {tool} missing; run ./script/setup, then bench/run (it makes bench/.venv)", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, on_signal)
    sys.path.insert(0, str(REPO))
    # our code's bytecode cached, as after `pip install` (the tools in bench/.venv are): a shell with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise have every run of ours compile fabfile/ from source
    subprocess.run([str(OUR_PY), "-m", "compileall", "-q", "fabfile", "tasks.py"], cwd=REPO, check=True)
    from fabfile.lab import Lab

    out = Path(args.out)
    samples: list[Sample] = []
    ansible_reps = {n: (args.reps if n == 1 else min(args.reps, args.ansible_reps)) for n in ns}
    rtts = [int(x) for x in args.rtts.split(",") if x.strip()]
    data: dict = {"config": {"ns": ns, "reps": args.reps, "ansible_reps": ansible_reps, "peer_reps": ansible_reps,
                             "peer_max_n": args.peer_max_n, "rtts": rtts, "latency_n": args.latency_n,
                             "cert_reps": args.cert_reps, "deploy_reps": args.deploy_reps,
                             "fleet_lab": {k: str(v) for k, v in FLEET_LAB.items()},
                             "docker_lab": {k: str(v) for k, v in DOCKER_LAB.items()}}}
    try:
        data["env"] = environment()
        say("certificate generation")
        data["certs"] = cert_generation(args.cert_reps)

        lab = Lab(FLEET_LAB["root"], FLEET_LAB["prefix"])
        LABS.append(lab)
        started = time.monotonic()
        lab.up(clients=max(ns), docker=False, subnet=FLEET_LAB["subnet"])
        data["fleet_lab_up_seconds"] = time.monotonic() - started
        say(f"fleet lab up: registry + {max(ns)} sshd-only clients in {data['fleet_lab_up_seconds']:.1f}s")
        fleet = Fleet(lab, max(ns))
        fleet.prepare()
        proc, wall, _, _ = run_timed([str(OUR_CMD), "registry.deploy", "--json"], env=fleet.env())
        if proc.returncode != 0:
            raise BenchError(f"inv registry.deploy failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
        data["registry_deploy_seconds"] = wall
        say(f"registry deployed in {wall:.2f}s")
        fleet.load_expectations()
        fleet.ansible_setup()
        fleet.pyinfra_setup()

        fanout(fleet, ns, args.reps, ansible_reps, args.peer_max_n, p10_reps=3, samples=samples)
        if rtts:
            say(f"latency: every tool at N={args.latency_n} through the relay at RTT {rtts} ms")
            data["latency"] = latency(fleet, min(args.latency_n, max(ns)), rtts, args.latency_reps,
                                      args.latency_peer_reps, samples, trips_n=args.trips_n)
        say("profile")
        data["profile"] = profile(fleet)
        data["evidence"] = evidence(fleet)
        down(lab)

        data["docker_deploy"] = None if args.no_docker_lab else docker_deploy(args.deploy_reps)
        data["dead_peer_seconds"] = data["docker_deploy"]["dead_peer"]["seconds"] if data["docker_deploy"] else None
    except KeyboardInterrupt:
        print("bench: interrupted; tearing the labs down", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for lab in LABS:
            try:
                down(lab)
            except Exception as exc:  # noqa: BLE001
                print(f"bench: lab {lab.prefix} teardown failed: {exc}; run "
                      f"`inv lab.down --root {lab.root}` (with prefix {lab.prefix})", file=sys.stderr)

    WORK.mkdir(parents=True, exist_ok=True)   # raw samples first: a reporting bug must not lose a run
    (WORK / "samples.json").write_text(json.dumps([asdict(x) for x in samples], default=str))
    agg = aggregate(samples)
    data["fanout"] = agg
    data["phases"] = phase_profile(samples)
    lat = data.get("latency") or {}
    data["ratios"] = compute_ratios(agg, ns, rtts, lat.get("n"), lat.get("trips_n", lat.get("n")),
                                    data.get("dead_peer_seconds"))
    data["samples"] = [asdict(s) for s in samples]
    data["total_seconds"] = time.monotonic() - T0
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "results.md").write_text(write_markdown(data))
    if out.resolve() == RESULTS.resolve():
        write_readme(data)
    if plot(out) != 0:
        return 1
    say(f"wrote {out}/results.md, results.json, fanout.png")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
