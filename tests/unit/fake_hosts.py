"""Hosts played by the fake transport: what their scripts leave behind (and, for the registry, real TLS).

``RegistryHost`` answers the registry scripts on a ``FakeHost`` the way a
host would end up after running them: files (from uploads), the ``certs``
link, the container (parsed from the ``docker run`` line: spec label, env,
mounts, ports, restart policy) and ``<name>-previous``, the lock. It serves,
on 127.0.0.1, the certificate of the running container's cert folder through
``TlsRegistry`` (real TLS, so the health gate and the rollback check in
registry/apply.py run as they do against a real registry).

Knobs for failure tables: ``crash`` (the new container exits: recreate exit 8;
``output`` is what it printed), ``serve_stale`` (the new container runs but
serves the old certificate: the health check fails), ``previous_broken`` (the
container put back by a rollback does not serve either: it prints ``output``),
``refuse`` (the engine cannot run the new container: what it prints on stderr, exit 125; no container is made),
``locked_by`` (another run's lock owner line), ``unsafe`` (what the lock script's path check says of
data_dir: ``<path> <why>``, then nothing is written). ``failed`` is the container a
failure kept aside (``<name>-failed-<time>``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fabfile.session import open_session
from fabfile.transport import Result

from fake_transport import FakeFleet, FakeHost

# commands that change a host (a dry run sends none of them)
MUTATING = r"base64 -d|mv -f|rm -f|ln -sfn|systemctl|docker run|rename|#put_many|\.registry-tls\.lock"


def probed_paths(script: str) -> list[str]:
    """The paths a probe script asks about (facts._file_lines: ``for x in PATHS; do if ...``)."""
    m = re.search(r"^for x in (.*?); do if", script, re.MULTILINE)
    return shlex.split(m[1]) if m else []


class _V2(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.headers.get("Authorization", "").startswith("Basic ")
        self.send_response(200 if ok else 401)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # failed handshakes are what some tests are about


class TlsRegistry:
    """``/v2/`` over TLS on 127.0.0.1 with a certificate that can change, or no answer at all."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fake-registry-")
        self._current: ssl.SSLContext | None = None
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.sni_callback = self._pick
        self._server = _Server(("127.0.0.1", 0), _V2)
        self._server.socket = base.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _pick(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        if self._current is None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        sock.context = self._current
        return None

    def serve(self, cert_pem: bytes | None, key_pem: bytes | None) -> None:
        if not cert_pem or not key_pem:
            self._current = None
            return
        stem = hashlib.sha256(cert_pem).hexdigest()[:12]
        cert, key = Path(self._dir.name) / f"{stem}.crt", Path(self._dir.name) / f"{stem}.key"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self._current = ctx

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()


def _inspect(argv: list[str], cid: str, image_id: str, files: dict[str, bytes]) -> dict:
    """What ``docker inspect`` says about a container started with ``argv`` (a ``docker run`` line; an
    ``--env-file`` is read from the host's ``files``)."""
    env, mounts, labels, ports = [], [], {}, {}
    name = restart = image = ""
    i = 3  # docker run -d
    while i < len(argv):
        arg = argv[i]
        if arg == "--name":
            name, i = argv[i + 1], i + 2
        elif arg.startswith("--restart="):
            restart, i = arg.split("=", 1)[1], i + 1
        elif arg == "-p":
            host, cport = argv[i + 1].split(":")
            ports[f"{cport}/tcp"] = [{"HostIp": "", "HostPort": host}]
            i += 2
        elif arg == "-v":
            src, dst, *ro = argv[i + 1].split(":")
            mounts.append({"Type": "bind", "Source": src, "Destination": dst, "RW": not ro})
            i += 2
        elif arg == "-e":
            env.append(argv[i + 1])
            i += 2
        elif arg == "--env-file":
            env += files[argv[i + 1]].decode().splitlines()
            i += 2
        elif arg == "--label":
            key, value = argv[i + 1].split("=", 1)
            labels[key] = value
            i += 2
        else:
            image, i = arg, i + 1
    return {"Id": cid, "Name": f"/{name}", "Image": image_id, "RestartCount": 0,
            "State": {"Running": True}, "Mounts": mounts,
            "Config": {"Labels": labels, "Env": env, "Image": image},
            "HostConfig": {"PortBindings": ports, "RestartPolicy": {"Name": restart}}}


@dataclass
class RegistryHost:
    host: FakeHost
    tls: TlsRegistry
    data_dir: str = "/var/lib/docker-registry"
    image_id: str = "sha256:" + "ab" * 32
    link: str | None = None
    container: dict | None = None
    previous: dict | None = None
    locked_by: str | None = None
    unsafe: str | None = None
    crash: bool = False
    serve_stale: bool = False
    previous_broken: bool = False
    refuse: str | None = None
    output: str = 'time="2026-12-02T00:35:54Z" level=fatal msg="open /data/certs/missing.crt: no such file or directory"'
    failed: dict | None = None
    clock: int | None = None            # the host's clock; None: this machine's
    log: list[str] = field(default_factory=list)
    _ids: int = 0

    def __post_init__(self) -> None:
        h = self.host
        h.on(r"update --restart=no", self._keep_failed)
        h.on(r"^\S+ logs --tail", self._logs)
        h.on(r"echo 'LINK NONE'", self._probe)
        h.on(r"echo LOCK$", self._lock)
        h.on(r"^rm -rf .*\.registry-tls\.lock'?$", self._unlock)
        h.on(r"\brun -d\b", self._recreate)
        h.on(r"inspect --type container .* rename", self._rollback)
        h.on(r"ls -1dt \.certs-", self._cleanup)
        h.on(r"^ln -sfn|\nln -sfn", self._switch)
        h.on(r"\] && cat ", Result("", "", 1))   # no htpasswd on the host yet
        h.on(r"^\S+ start ", self._start)
        h.on(r"^\S+ rename ", self._rename)

    # ------------------------------------------------------------------ what the host reports

    def _probe(self, script: str) -> Result:
        lines = [f"TIME {int(self.clock if self.clock is not None else time.time())}"]
        for path in probed_paths(script):
            data = self.host.files.get(path)
            if data is None:
                lines.append(f"M {path}")
            else:
                mode = self.host.modes.get(path, 0o644)
                lines.append(f"F {hashlib.sha256(data).hexdigest()} {mode:o} root 1700000000 {path}")
        lines.append(f"LINK {self.link}" if self.link else "LINK NONE")
        served = self.host.files.get(f"{self.data_dir}/{self.link}/registry_auth.crt") if self.link else None
        if served and "CERT" in script:
            lines.append("CERT " + base64.b64encode(served).decode())
        htpasswd = self.host.files.get(f"{self.data_dir}/auth/registry.password")
        if htpasswd is not None and "USERS" in script:
            lines.append("USERS")
            for line in htpasswd.decode().splitlines():
                name, _, hashed = line.partition(":")
                lines.append(f"USER {name} {hashlib.sha256(hashed.encode()).hexdigest()[:16]}")
        lines.append("ENGINE up")
        if self.container:
            lines.append("INSPECT " + json.dumps(self.container))
        if self.previous:
            lines.append("PREVIOUS " + json.dumps(self.previous))
        lines.append(f"IMAGE {self.image_id}")
        return Result("\n".join(lines) + "\n", "", 0)

    # ------------------------------------------------------------------ what the scripts do

    def _lock(self, script: str) -> Result:
        take_over = "[ 1 = 1 ]" in script
        if self.unsafe:
            return Result(f"UNSAFE {self.unsafe}\n", "", 9)
        if self.locked_by and not take_over:
            return Result(f"LOCKED 5 {self.locked_by}\n", "", 7)
        self.locked_by = "us"
        self.log.append("lock")
        return Result("LOCK\n", "", 0)

    def _unlock(self, script: str) -> Result:
        self.locked_by = None
        self.log.append("unlock")
        return Result("", "", 0)

    def _switch(self, script: str) -> Result:
        target = shlex.split(re.search(r"ln -sfn (\S+)", script)[1])[0]   # type: ignore[index]
        self.link = target
        self.log.append(f"link {target}")
        return Result("", "", 0)

    def _recreate(self, script: str) -> Result:
        run = next(line for line in script.splitlines() if " run -d " in line)
        argv = shlex.split(run.removesuffix(" >/dev/null"))
        if self.container:
            self.previous = self.container
        if self.refuse is not None:
            self.container = None
            self.log.append("refused")
            return Result("", self.refuse + "\n", 125)
        self._ids += 1
        self.container = _inspect(argv, f"{self._ids:064x}", self.image_id, self.host.files)
        self.log.append("recreate")
        if self.crash:
            self.container["State"]["Running"] = False
            return Result("EXITED\n", "", 8)
        if not self.serve_stale:
            self._serve(self.container)
        return Result("RUNNING\n", "", 0)

    def _rollback(self, script: str) -> Result:
        self.log.append("rollback")
        m = re.search(r"ln -sfn (\S+)", script)
        if m:
            self.link = shlex.split(m[1])[0]
        self.container, self.previous = self.previous, None
        self._serve(None if self.previous_broken else self.container)
        return Result("", "", 0)

    def _keep_failed(self, script: str) -> Result:
        if self.container is None:
            return Result("", "", 0)
        kept = re.search(r"rename \S+ (\S+) &&", script)[1]   # type: ignore[index]
        self.failed = {**self.container, "Name": f"/{kept}", "State": {"Running": False}}
        self.container = None
        self.tls.serve(None, None)
        self.log.append(f"kept {kept}")
        return Result(f"KEPT {kept}\nSTATE exited 1\nPOLICY no\nOUTPUT\n{self.output}\n", "", 0)

    def _logs(self, script: str) -> Result:
        return Result(self.output + "\n", "", 0)

    def _cleanup(self, script: str) -> Result:
        self.previous = None
        self.log.append("cleanup")
        return Result("", "", 0)

    def _start(self, script: str) -> Result:
        if self.container:
            self.container["State"]["Running"] = True
            self._serve(self.container)
        return Result("", "", 0)

    def _rename(self, script: str) -> Result:   # restore <name>-previous left by an interrupted run
        self.container, self.previous = self.previous, None
        return Result("", "", 0)

    def _serve(self, container: dict | None) -> None:
        if container is None:
            self.tls.serve(None, None)
            return
        certs = next(m["Source"] for m in container["Mounts"] if m["Destination"] == "/data/certs")
        self.tls.serve(self.host.files.get(f"{certs}/registry_auth.crt"),
                       self.host.files.get(f"{certs}/registry_auth.key"))


@dataclass
class ClientHost:
    """A Docker client as the client scripts leave it: the files written and removed, dockerd up (or not).

    ``files`` is also what the certs.d listing shows (shell glob rules: ``*`` skips dotfiles); with
    ``dockerd`` "down" the runtime script says so (RTX) and answers docker's certs.d check (openssl)."""

    host: FakeHost
    os_id: str = "debian"
    verify: str = "ok"                   # what every runtime says: "ok", or "fail <the runtime's words>"
    files: dict[str, bytes] = field(default_factory=dict)
    restarts: int = 0
    dockerd: str = "up"                  # up | down

    def __post_init__(self) -> None:
        self.host.on(r"echo \"TIME", self._probe).on(r"base64 -d", self._apply)
        self.host.on(r"dockerd --validate", self._restart).on(r"RT %s", self._verify)

    def _probe(self, script: str) -> Result:
        lines = [f"TIME {int(time.time())}", f"OS {self.os_id} "]
        for path in probed_paths(script):
            data = self.files.get(path)
            lines.append(f"M {path}" if data is None else f"F {hashlib.sha256(data).hexdigest()} 644 root 1700000000 {path}")
        for quoted_prefix, quoted_suffix in re.findall(r"^for x in (\S+)\*(\S+); do \[ -f", script, re.MULTILINE):
            prefix, suffix = shlex.split(quoted_prefix)[0], shlex.split(quoted_suffix)[0]
            lines += [f"X {p}" for p in sorted(self.files) if p.startswith(prefix) and p.endswith(suffix)]
        for exact in re.findall(r"^for x in ([^\s*]+); do \[ -f", script, re.MULTILINE):   # one exact path
            lines += [f"X {p}" for p in [shlex.split(exact)[0]] if p in self.files]
        if self.dockerd == "up":
            lines.append(f"DSTART {int(time.time()) + 3600}")   # dockerd started after every file
        lines += [f"L {p}" for p in self._listing(script)]
        if "base64 -w0 <" in script:
            for quoted in re.findall(r"^\[ -f (\S+) \] && echo \"C", script, re.MULTILINE):
                path = shlex.split(quoted)[0]
                if path in self.files:
                    lines.append(f"C {base64.b64encode(self.files[path]).decode()} {path}")
        if "DOCKERD" in script:
            lines.append("DOCKERD up 26.1.5" if self.dockerd == "up" else "DOCKERD down")
        return Result("\n".join(lines) + "\n" + self._verify(script).stdout, "", 0)   # status: one round trip

    def _listing(self, script: str) -> list[str]:
        """The certs.d listing (``for x in 'folder'/* 'folder'/.[!.]*; do [ -e "$x" ] && echo "L $x"``)."""
        found = []
        for words_ in re.findall(r'^for x in (.*); do \[ -e "\$x" \] && echo "L \$x"; done$', script, re.MULTILINE):
            for pattern in shlex.split(words_):
                folder, _, glob = pattern.rpartition("/")
                found += [p for p in sorted(self.files) if p.rpartition("/")[0] == folder and (
                    not p.rpartition("/")[2].startswith(".") if glob == "*" else fnmatch(p.rpartition("/")[2], glob))]
        return found

    def _apply(self, script: str) -> Result:
        for m in re.finditer(r"^(wb?) (\S+) ", script, re.MULTILINE):   # w PATH 'text' | wb PATH base64
            lexer = shlex.shlex(script[m.end():], posix=True)
            lexer.whitespace_split = True
            data = next(iter(lexer)).encode()
            self.files[shlex.split(m[2])[0]] = base64.b64decode(data) if m[1] == "wb" else data
        for path in re.findall(r"^rm -f (\S+)$", script, re.MULTILINE):
            self.files.pop(shlex.split(path)[0], None)
        return self._verify(script)

    def _restart(self, script: str) -> Result:
        self.restarts += 1
        return Result("UP\n", "", 0)

    def _verify(self, script: str) -> Result:
        """The runtime check's RT lines (runtimes.py): each runtime's own answer, accepting or refusing."""
        ok, _, why = self.verify.partition(" ")
        ok = ok == "ok"
        answers = {   # target -> (exit, output) as the real tools print them
            "docker": (0, '{"message":"login attempt failed with status: 401 Unauthorized"}' if ok
                       else json.dumps({"message": why})),
            "containerd": (1, "ctr: pulling from host failed with status code [manifests none]: 401 Unauthorized"
                           if ok else f"ctr: {why}"),
            "podman": (1, "Error: logging into: invalid username/password" if ok else f"Error: {why}"),
            "os": (0, "") if ok else (60, f"curl: (60) {why}"),
        }
        lines = []
        if self.dockerd != "up" and "docker/_ping" in script:
            lines.append("RTX docker down dockerd does not answer on /var/run/docker.sock (or curl is missing)")
        for target, name in re.findall(r"printf 'RT %s %s %s %s\\n' (\S+) (\S+)", script):
            if (target == "docker" and self.dockerd != "up") or (target == "docker-files" and self.dockerd == "up"):
                continue   # the script's other branch
            code, out = answers.get(target, (0, "") if ok else (1, why))
            lines.append(f"RT {target} {shlex.split(name)[0]} {code} {base64.b64encode(out.encode()).decode()}")
        return Result("".join(f"{line}\n" for line in lines), "", 0)


# --------------------------------------------------------------------------- a whole fleet


PINNED = "registry:2@sha256:" + "cd" * 32   # the fake registry's image, pinned (review L11: a tag is warned about)


def write_inventory(root: Path, clients: int = 3, *, trust: str = "[docker]", port: int = 5443,
                    mode: str = "self-signed", image: str = PINNED) -> Path:
    hosts = "\n".join(f"    c{i}: {{address: 192.0.2.{20 + i}}}" for i in range(1, clients + 1))
    path = root / "inventory.yaml"
    path.write_text(
        f"registry: {{host: registry.test, address: 127.0.0.1, port: {port}, health_timeout: 1, image: '{image}'}}\n"
        f"certificate: {{san: [DNS:registry.test], key_type: ecdsa-p256, mode: {mode}, pki_dir: {root / 'pki'}}}\n"
        f"state_dir: {root / 'state'}\n"
        f"ssh: {{known_hosts: {root / 'known_hosts'}}}\n"
        f"clients:\n  defaults: {{trust: {trust}}}\n  hosts:\n{hosts}\n"
    )
    return path


class World:
    """A session whose registry host is a RegistryHost (real TLS on 127.0.0.1) and whose clients are fakes."""

    def __init__(self, tmp_path: Path, clients: int = 3, trust: str = "[docker]", sudo_password: str | None = None,
                 mode: str = "self-signed", image: str = PINNED):
        self.fleet = FakeFleet()
        self.tls = TlsRegistry()
        path = write_inventory(tmp_path, clients, trust=trust, port=self.tls.port, mode=mode, image=image)
        self.s = open_session(path, sudo_password=sudo_password)
        self.s.opener = self.fleet.opener
        self.registry = RegistryHost(self.fleet.host("registry.test"), self.tls)
        self.clients = {c.name: ClientHost(self.fleet.host(c.name)) for c in self.s.inv.clients}

    def mutating(self, host: str | None = None) -> list[str]:
        return [c.command for c in self.fleet.sent(MUTATING, host)]
