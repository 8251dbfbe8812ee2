"""One lab host: its private files (/etc, /var, homes, sshd), the holder process that owns its
mount namespace, and how to enter it."""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from . import keys
from .errors import LabError
from .procs import spawn, start_time
from .state import HostState, LabState

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}
DEPLOY = "deploy"
DEPLOY_UID = 2000
SUDO_PASSWORD_HOST = "client2"      # the one host where deploy's sudo asks for a password
CA_DIR = Path("/usr/local/share/ca-certificates")
OVERLAID = ("/etc", "/var")          # overlay targets (lowerdir = the machine's dir)
TMPFS = ("/run", "/tmp")
HOMES = ("/root", "/home")
HOST_MARKER = "rtls-lab-host"        # /etc/rtls-lab-host inside a host holds its name
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


def tool(name: str, package: str) -> str:
    for candidate in (shutil.which(name, path=PATH), shutil.which(name)):
        if candidate:
            return candidate
    raise LabError(f"{name} not found; install the Debian package {package} (apt-get install {package})")


def ca_overlay_target() -> Path:
    """Overlay the CA dir itself, or its nearest existing parent (never create it on the machine)."""
    path = CA_DIR
    while not path.is_dir():
        path = path.parent
    return path


def check_root_location(root: Path) -> None:
    text = str(root)
    if len(text) > 200:
        raise LabError(f"lab root {root} is too long (at most 200 characters)")
    if any(c in text for c in ",:'\"\\ \t\n"):
        raise LabError(f"lab root {root} must not contain spaces, commas, colons or quotes")
    for base in (*OVERLAID, str(ca_overlay_target())):
        if root == Path(base) or Path(base) in root.parents:
            raise LabError(f"lab root {root} must not be under {base} (each host overlays it)")


def host_dir(root: Path, name: str) -> Path:
    return root / "hosts" / name


@dataclass
class Machine:
    """What every host's private /etc starts from, read once per up()."""
    passwd: str
    shadow: str
    group: str
    gshadow: str
    password_hash: str
    operator_pubkey: str
    hosts_file: str

    @classmethod
    def read(cls, state: LabState, password_hash: str, operator_pubkey: str) -> Machine:
        def text(name: str) -> str:
            try:
                return Path("/etc", name).read_text()
            except FileNotFoundError:
                return ""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
        lines += [f"{h.address}\t{h.name}.lab {h.name}" for h in state.hosts]
        return cls(text("passwd"), text("shadow"), text("group"), text("gshadow"),
                   password_hash, operator_pubkey, "\n".join(lines) + "\n")


def _without(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line and line.split(":", 1)[0] != name]


def _deploy_uid(passwd: str) -> int:
    used = {int(f[2]) for f in (line.split(":") for line in passwd.splitlines()) if len(f) > 2}
    uid = DEPLOY_UID
    while uid in used:
        uid += 1
    return uid


def _mirror_dir(path: Path, like: Path, mode: int | None = None) -> None:
    """Create path with the owner and mode of `like` (an overlay upper dir must look like its lower)."""
    path.mkdir(parents=True, exist_ok=True)
    st = os.stat(like)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode) if mode is None else mode)


def _write(path: Path, content: str, mode: int = 0o644, like: Path | None = None,
           owner: tuple[int, int] = (0, 0)) -> None:
    path.write_text(content)
    if like is not None and like.exists():
        st = os.stat(like)
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
    else:
        os.chown(path, *owner)
        os.chmod(path, mode)


def prepare(root: Path, state: LabState, host: HostState, machine: Machine) -> str:
    """Write everything host needs before its holder starts; return its public host key line."""
    d = host_dir(root, host.name)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    os.chmod(d, 0o755)
    # /etc: overlay upper pre-filled with the host's own users, hosts, sudoers and marker.
    etc = d / "etc.upper"
    _mirror_dir(etc, Path("/etc"))
    (d / "etc.work").mkdir()
    uid = _deploy_uid("\n".join(_without(machine.passwd, DEPLOY)))
    passwd = [*_without(machine.passwd, DEPLOY), f"{DEPLOY}:x:{uid}:{uid}:registry-tls lab deploy user:/home/{DEPLOY}:/bin/bash"]
    group = [*_without(machine.group, DEPLOY), f"{DEPLOY}:x:{uid}:"]
    shadow = []
    for line in _without(machine.shadow, DEPLOY):
        f = line.split(":")
        if f[0] == "root" and len(f) > 1 and f[1].startswith("!"):
            f[1] = "*"              # sshd (UsePAM no) refuses even pubkey logins to locked accounts
        shadow.append(":".join(f))
    shadow.append(f"{DEPLOY}:{machine.password_hash}:19000:0:99999:7:::")
    gshadow = [*_without(machine.gshadow, DEPLOY), f"{DEPLOY}:!::"]
    _write(etc / "passwd", "\n".join(passwd) + "\n", like=Path("/etc/passwd"))
    _write(etc / "group", "\n".join(group) + "\n", like=Path("/etc/group"))
    _write(etc / "shadow", "\n".join(shadow) + "\n", 0o640, like=Path("/etc/shadow"))
    if machine.gshadow:
        _write(etc / "gshadow", "\n".join(gshadow) + "\n", 0o640, like=Path("/etc/gshadow"))
    _write(etc / "hosts", machine.hosts_file, like=Path("/etc/hosts"))
    _write(etc / "hostname", host.name + "\n", like=Path("/etc/hostname"))
    _write(etc / HOST_MARKER, host.name + "\n")
    sudoers = etc / "sudoers.d"
    if Path("/etc/sudoers.d").is_dir():
        _mirror_dir(sudoers, Path("/etc/sudoers.d"))
    else:
        sudoers.mkdir(mode=0o750)
    rule = "ALL" if host.name == SUDO_PASSWORD_HOST else "NOPASSWD: ALL"
    _write(sudoers / "rtls-lab", f"# registry-tls lab\nDefaults:{DEPLOY} lecture=never\n"
           f"{DEPLOY} ALL=(ALL) {rule}\n", 0o440)
    # /var: overlay upper; the registry data dir starts empty (opaque dir hides the machine's).
    var = d / "var.upper"
    _mirror_dir(var, Path("/var"))
    (d / "var.work").mkdir()
    _mirror_dir(var / "lib", Path("/var/lib"))
    data = var / "lib" / "docker-registry"
    data.mkdir(mode=0o755)
    os.setxattr(data, "trusted.overlay.opaque", b"y")
    # CA dir (or its nearest existing parent)
    _mirror_dir(d / "ca.upper", ca_overlay_target())
    (d / "ca.work").mkdir()
    # private homes: /root and /home/deploy with the operator key
    home_root = d / "home.root"
    home_root.mkdir(mode=0o700)
    home = d / "home"
    home.mkdir(mode=0o755)
    home_deploy = home / DEPLOY
    for base, owner in ((home_root, (0, 0)), (home_deploy, (uid, uid))):
        (base / ".ssh").mkdir(parents=True, mode=0o700)
        _write(base / ".ssh" / "authorized_keys", machine.operator_pubkey + "\n", 0o600, owner=owner)
        for p in (base, base / ".ssh"):
            os.chown(p, *owner)
    os.chmod(home_deploy, 0o750)
    # sshd
    pub = keys.write_ed25519(d / "ssh_host_ed25519_key", f"root@{host.name}")
    (d / "sshd_config").write_text("\n".join([
        f"# registry-tls lab: sshd of {host.name}",
        f"ListenAddress {host.address}:22",
        f"HostKey {d}/ssh_host_ed25519_key",
        "PidFile /run/sshd.pid",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "StrictModes yes",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "MaxStartups 200:30:400",
        "MaxSessions 64",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp internal-sftp",
    ]) + "\n")
    if host.docker:
        (d / "docker.enabled").write_text("")
    if host.kind == "podman":
        _podman_config(etc)
    return pub


# vfs: the host's /var is an overlay, where podman's overlay driver cannot stack; rlimits: a lab
# host's hard limits are the machine's session ones, below podman's defaults (runc would refuse).
PODMAN_STORAGE = ('[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\n'
                  'graphroot = "/var/lib/containers/storage"\n')
PODMAN_CONTAINERS = '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'


def _podman_config(etc: Path) -> None:
    conf = etc / "containers"
    if Path("/etc/containers").is_dir():
        _mirror_dir(conf, Path("/etc/containers"))
    else:
        conf.mkdir(mode=0o755)
    _write(conf / "storage.conf", PODMAN_STORAGE)
    _write(conf / "containers.conf", PODMAN_CONTAINERS)


def holder_script(root: Path, state: LabState, host: HostState) -> str:
    """Shell run as the holder: address, mounts, sshd (and dockerd), then sleep forever."""
    d = host_dir(root, host.name)
    q = shlex.quote
    ca = ca_overlay_target()
    lines = ["set -e", f"hostname {q(host.name)}",
             "ip link set lo up", f"ip addr add {host.address}/{state.prefixlen} dev eth0",
             "ip link set eth0 up", f"exec 3< {q(str(root))}"]

    def rebind_if_hidden(target: str) -> None:
        # The lab root lives under a dir we just shadowed: put it back (same path) from fd 3.
        if Path(target) in root.parents:
            lines.append(f"mkdir -p {q(str(root))} && mount -c --bind /proc/self/fd/3 {q(str(root))}")

    for target, tag in (("/etc", "etc"), ("/var", "var"), (str(ca), "ca")):
        lines.append(f"mount -t overlay rtls-{tag} -o lowerdir={target},upperdir={d}/{tag}.upper,"
                     f"workdir={d}/{tag}.work {target}")
    for target, src in (("/root", d / "home.root"), ("/home", d / "home")):
        lines.append(f"mount --bind {q(str(src))} {target}")
        rebind_if_hidden(target)
    lines.append("mount -t tmpfs -o mode=0755,size=256m rtls-run /run")
    rebind_if_hidden("/run")
    lines.append("mkdir -m 0755 /run/sshd /run/lock")
    lines.append("mount -t tmpfs -o mode=1777,size=1g rtls-tmp /tmp")
    rebind_if_hidden("/tmp")
    lines.append("exec 3<&-")
    # Start daemons in a subshell so they are adopted by the holder (tini -s reaps them).
    lines.append(f"( /usr/sbin/sshd -D -f {q(str(d / 'sshd_config'))} -E {q(str(d / 'sshd.log'))} "
                 "</dev/null >/dev/null 2>&1 & )")
    if host.docker:
        lines.append(f"{q(str(root / 'bin' / 'restart-dockerd'))} {q(host.name)} --no-wait")
    if host.kind == "containerd":    # containerd alone, on its default socket (no dockerd)
        lines.append(f"( setsid containerd --root {q(str(d / 'containerd'))} --state /run/containerd "
                     f"--address {CONTAINERD_SOCKET} </dev/null >>{q(str(d / 'containerd.log'))} 2>&1 & )")
    lines.append("exec sleep infinity")
    return "\n".join(lines) + "\n"


def start_holder(root: Path, state: LabState, host: HostState, tini: str) -> tuple[int, int | None]:
    """Start the host's holder: enters its netns, unshares mount+UTS, runs holder_script."""
    d = host_dir(root, host.name)
    script = d / "holder.sh"
    script.write_text(holder_script(root, state, host))
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", "unshare", "--mount", "--uts",
            "--propagation", "private", tini, "-s", "--", "/bin/sh", str(script)]
    pid = spawn(argv, d / "holder.log", env=ENV)
    return pid, start_time(pid)


def enter_argv(holder_pid: int, argv: list[str]) -> list[str]:
    """argv that runs inside the host of this holder (its mount, net and UTS namespaces)."""
    return ["nsenter", "-t", str(holder_pid), "-m", "-n", "-u", "--wd=/root", "--", *argv]


def in_host(holder_pid: int, path: str) -> Path:
    """A path inside the host, reachable from the machine through the holder's root."""
    return Path(f"/proc/{holder_pid}/root") / path.lstrip("/")


def read_pidfile(holder_pid: int, path: str) -> int | None:
    try:
        return int(in_host(holder_pid, path).read_text().strip())
    except (OSError, ValueError):
        return None


def docker_ping(holder_pid: int, timeout: float = 2.0) -> bool:
    """True when the host's dockerd answers GET /_ping on its (private) /run/docker.sock."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(in_host(holder_pid, "/run/docker.sock")))
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = sock.recv(64)
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply
    except OSError:
        return False
    finally:
        sock.close()


def port_open(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


RESTART_DOCKERD = r"""#!/bin/sh
# restart-dockerd HOST [--no-wait]: (re)start the dockerd of registry-tls lab host HOST.
# Run it as root inside that host, e.g. over SSH: sudo @ROOT@/bin/restart-dockerd HOST
set -eu
LAB_ROOT=@ROOT@
PATH=@PATH@
export PATH
die() { echo "restart-dockerd: $*" >&2; exit 1; }
host=${1:-}
[ -n "$host" ] || die "usage: restart-dockerd HOST [--no-wait]"
[ "$(id -u)" = 0 ] || die "must run as root (use sudo)"
[ "$(cat /etc/@MARKER@ 2>/dev/null || true)" = "$host" ] || die "this is not lab host $host"
dir=$LAB_ROOT/hosts/$host
if [ ! -e "$dir/docker.enabled" ]; then
    echo "restart-dockerd: $host runs no dockerd (lab started without docker); nothing to do"
    exit 0
fi
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*[ZX]' "/proc/$1/status" 2>/dev/null; }
if [ -s /run/docker.pid ]; then
    pid=$(cat /run/docker.pid)
    if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$(( $(date +%s) + 20 ))
        while alive "$pid"; do
            if [ "$(date +%s)" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; sleep 1; break; fi
            sleep 0.1
        done
    fi
    rm -f /run/docker.pid
fi
setsid env -i PATH="$PATH" HOME=/root LANG=C.UTF-8 \
    dockerd --data-root "$dir/docker" --pidfile /run/docker.pid \
    </dev/null >>"$dir/dockerd.log" 2>&1 &
[ "${2:-}" = --no-wait ] && exit 0
deadline=$(( $(date +%s) + 30 ))
until docker info >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "dockerd on $host did not answer within 30 s (see $dir/dockerd.log)"
    sleep 0.2
done
echo "restart-dockerd: dockerd on $host restarted (pid $(cat /run/docker.pid))"
"""


def write_restart_script(root: Path) -> Path:
    path = root / "bin" / "restart-dockerd"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RESTART_DOCKERD.replace("@ROOT@", shlex.quote(str(root)))
                    .replace("@PATH@", PATH).replace("@MARKER@", HOST_MARKER))
    os.chmod(path, 0o755)
    return path
