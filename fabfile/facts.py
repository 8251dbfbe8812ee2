"""Read-only probes of remote state: a shell script, a pure parser, and one runner per host kind.

Each probe is ONE remote command (one round trip) that prints tagged lines;
the parser turns them into a frozen dataclass. Parsers never touch the
network, so tests feed them recorded output. ``gather_client`` and
``gather_registry`` are the only places that run a probe: the client probe
for deploy, rotate, untrust, status and verify (the latter two append the
runtimes' TLS checks, ``runtimes.script``, to the same command), the
registry probe for the registry's deploy and status.

Client tags (``client_script``, ``parse_client``):
  TIME <epoch>                        the host's clock (/proc, else date)
  OS <ID> [ID_LIKE...]                from /etc/os-release (read as text, never sourced)
  F <sha256> <mode> <owner> <mtime> <path>   a regular file that exists
  M <path>                            a file that does not exist
  U <path>                            a file that exists but the login user cannot read
  X <path>                            an extra anchor file of ours (registry-tls-*.crt)
  DSTART <epoch>                      when dockerd started (for pending restarts)
  B <base64>                          buildkitd.toml content
  C <base64> <path>                   a trust file's content (status only)
  DOCKERD up <version>|down|missing   whether dockerd answers (status only)
  L <path>                            a file in a certs.d folder of a registry name (runtimes.foreign_files)
  RT ... / RTX ...                    what each runtime said, when asked (runtimes.py; ``ClientFacts.runtimes``)

Registry host tags (``registry_script``, ``parse_registry``; TIME, F, M as above):
  LINK <target>|DIR|NONE              what <data_dir>/certs is
  INSPECT <json>                      the registry container, as the engine shows it
  PREVIOUS <json>                     a '<name>-previous' container left by an interrupted run
  IMAGE <id>                          the image the inventory names, as present on the host
  ENGINE up|down|missing <detail>
  CERT <base64>                       the certificate <data_dir>/certs serves now (public; for the plan's identity)
  USERS                               the htpasswd exists; then one line per user:
  USER <name> <sha256(hash)[:16]>     a user and a digest of its hash (never the hash itself)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import runtimes as RT
from .sh import q, words

if TYPE_CHECKING:
    from .transport import Transport

DEBIAN_LIKE = ("debian", "ubuntu")
RHEL_LIKE = ("rhel", "centos", "fedora", "rocky", "almalinux", "ol")


@dataclass(frozen=True)
class RemoteFile:
    path: str
    sha256: str
    mode: int
    owner: str
    mtime: int


# --------------------------------------------------------------------------- shared pieces

CLOCK_WARN_SECONDS = 60
CLOCK_FAIL_SECONDS = 300  # certs.BACKDATE: further behind, a fresh certificate is 'not yet valid' there


def clock_problem(clock: int | None, now: float | None) -> tuple[bool, str] | None:
    """A host's clock (its ``TIME`` line) against this machine's: None within 60 s, else (fatal, message).

    Fatal only when the host is more than 300 s behind: a certificate made
    now is backdated by that much, so there it would be 'not yet valid'. A
    clock ahead only shortens the certificate's life there: a warning.
    """
    if clock is None or now is None:
        return None
    skew = int(clock - now)
    if -skew > CLOCK_FAIL_SECONDS:
        return True, (f"clock is {-skew}s behind this machine, more than the {CLOCK_FAIL_SECONDS}s a certificate "
                      "is backdated: it would be 'not yet valid' there; fix the clock (NTP) and run again")
    if abs(skew) > CLOCK_WARN_SECONDS:
        return False, f"clock differs from this machine by {skew:+d}s; a fresh certificate may be 'not yet valid' there"
    return None


def _file_lines(paths: tuple[str, ...]) -> list[str]:
    """F/M/U lines for every path with two processes in all (stat, sha256sum), not five per file.

    ``U`` marks a file that exists but this user cannot read: the caller probes again with sudo.
    The files that exist and are readable are collected in "$@"; one ``stat`` and one
    ``sha256sum`` then print one line each per file, in that order, and the loop walks both
    outputs in step (``${s%%"<newline>"*}`` is the first line, ``${s#*"<newline>"}`` the rest).
    """
    if not paths:
        return []
    nl = "\n"
    return [
        "set --",
        (f"for x in {words(paths)}; do "
         'if [ ! -f "$x" ]; then echo "M $x"; elif [ -r "$x" ]; then set -- "$@" "$x"; else echo "U $x"; fi; done'),
        ('if [ $# -gt 0 ]; then s=$(stat -c \'%a %U %Y\' -- "$@"); h=$(sha256sum -- "$@"); for x; do '
         f'a=${{s%%"{nl}"*}}; s=${{s#*"{nl}"}}; b=${{h%%"{nl}"*}}; h=${{h#*"{nl}"}}; b=${{b#\\\\}}; '
         'echo "F ${b%% *} $a $x"; done; fi'),
    ]


def _parse_common(tag: str, rest: str, line: str, files: dict[str, RemoteFile | None], values: dict) -> bool:
    """The lines both probes print (TIME, F, M); False for a line of another tag."""
    if tag == "TIME" and rest.strip().isdigit():
        values["clock"] = int(rest)
    elif tag == "F":
        f = _parse_file(line)
        files[f.path] = f
    elif tag == "M":
        files[rest] = None
    else:
        return False
    return True


def _parse_file(line: str) -> RemoteFile:
    _, sha, mode, owner, mtime, path = line.split(" ", 5)
    return RemoteFile(path=path, sha256=sha, mode=int(mode, 8), owner=owner, mtime=int(mtime))


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class ClientFacts:
    clock: int | None = None
    os_id: str = "unknown"
    os_like: tuple[str, ...] = ()
    files: dict[str, RemoteFile | None] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    dockerd_started: int | None = None
    buildkit_toml: bytes | None = None
    contents: dict[str, bytes] = field(default_factory=dict)
    dockerd: str | None = None  # "up <version>" | "down" | "missing", when asked
    unreadable: tuple[str, ...] = ()  # files this user could not read: probe again with sudo
    listing: tuple[str, ...] = ()     # every file in the certs.d folders of the registry's names
    runtimes: RT.Outcome = field(default_factory=RT.Outcome)  # what each runtime said (RT/RTX), when asked

    @property
    def os_family(self) -> str | None:
        ids = (self.os_id, *self.os_like)
        if any(i in DEBIAN_LIKE for i in ids):
            return "debian"
        if any(i in RHEL_LIKE for i in ids):
            return "rhel"
        return None


# The host's clock without a process: boot time (/proc/stat btime, in the realtime clock) plus
# /proc/uptime is the realtime clock to within 2 s (both truncated); ``date`` where /proc lacks them.
# The probe runs on every host of every run, so each process it spares counts (bench/README.md).
CLOCK = (
    "b=; while read -r k v; do if [ \"$k\" = btime ]; then b=$v; break; fi; done 2>/dev/null </proc/stat",
    ('if [ -n "$b" ] && read -r u _ 2>/dev/null </proc/uptime; then echo "TIME $((b + ${u%.*}))"; '
     'else echo "TIME $(date -u +%s)"; fi'),
)


# ID and ID_LIKE read as text, never sourced (review I2: ``. /etc/os-release`` ran the file as root in
# status, verify and the canary): key=value lines, one pair of surrounding quotes stripped, nothing expanded.
# A last line without a newline still counts (read sets k and reports end of file). Builtins only.
OS_RELEASE = (
    "i=; l=; if [ -r /etc/os-release ]; then while IFS== read -r k v || [ -n \"$k\" ]; do",
    """  case $v in \\"*\\") v=${v#\\"}; v=${v%\\"} ;; \\'*\\') v=${v#\\'}; v=${v%\\'} ;; esac""",
    '  case $k in ID) i=$v ;; ID_LIKE) l=$v ;; esac',
    "done </etc/os-release; fi",
    "printf 'OS %s %s\\n' \"${i:-unknown}\" \"$l\"",
)


def client_script(
    paths: tuple[str, ...],
    extra_globs: tuple[tuple[str, str], ...] = (),
    *,
    buildkit_toml: str | None = None,
    contents: bool = False,
    docker: bool = False,
    folders: tuple[str, ...] = (),
) -> str:
    lines = [
        *CLOCK,
        *OS_RELEASE,
        *_file_lines(paths),
    ]
    for prefix, suffix in extra_globs:  # (literal prefix, literal suffix) around one '*'; no suffix: one exact path
        pattern = f"{q(prefix)}*{q(suffix)}" if suffix else q(prefix)
        lines.append(f'for x in {pattern}; do [ -f "$x" ] && echo "X $x"; done')
    # docker.pid has no final newline: read sets p and still reports end of file
    lines.append('p=; read -r p 2>/dev/null </var/run/docker.pid; [ -n "$p" ] && '
                 'echo "DSTART $(stat -c %Y /proc/$p 2>/dev/null)"')
    if contents:  # status: the installed anchors themselves, to report their fingerprints
        lines += [f"[ -f {q(p)} ] && echo \"C $(base64 -w0 < {q(p)})\" {q(p)}" for p in paths]
    if docker:
        lines.append("if ! command -v docker >/dev/null 2>&1; then echo 'DOCKERD missing'; "
                     "elif v=$(docker version --format '{{.Server.Version}}' 2>/dev/null); then echo \"DOCKERD up $v\"; "
                     "else echo 'DOCKERD down'; fi")
    if buildkit_toml:
        toml = q(buildkit_toml)
        lines.append(f"if [ -f {toml} ] && [ ! -r {toml} ]; then echo U {toml}; "
                     f"elif [ -f {toml} ]; then echo \"B $(base64 -w0 < {toml})\"; fi")
    if folders:  # shell builtins only: what else sits beside our files (runtimes.foreign_files); docker reads
        # dotfiles too (a '.key' breaks it), which '*' skips: '.[!.]*' lists them ('.' and '..' are not files)
        lines.append(f"for x in {' '.join(f'{q(f)}/* {q(f)}/.[!.]*' for f in folders)}; do "
                     '[ -e "$x" ] && echo "L $x"; done')
    lines.append("true")
    return "\n".join(lines)


def parse_client(stdout: str, paths: tuple[str, ...] = ()) -> ClientFacts:
    files: dict[str, RemoteFile | None] = dict.fromkeys(paths)
    values: dict = {"extra": [], "contents": {}, "unreadable": [], "listing": []}
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if _parse_common(tag, rest, line, files, values):
            continue
        if tag == "OS":
            parts = rest.split()
            values["os_id"] = parts[0] if parts else "unknown"
            values["os_like"] = tuple(parts[1:])
        elif tag == "X":
            values["extra"].append(rest)
        elif tag == "U":
            values["unreadable"].append(rest)
        elif tag == "DSTART" and rest.strip().isdigit():
            values["dockerd_started"] = int(rest)
        elif tag == "B":
            values["buildkit_toml"] = base64.b64decode(rest.strip() or b"")
        elif tag == "C":
            data, _, path = rest.partition(" ")
            values["contents"][path] = base64.b64decode(data)
        elif tag == "DOCKERD":
            values["dockerd"] = rest.strip()
        elif tag == "L":
            values["listing"].append(rest)
    values["extra"] = tuple(values["extra"])
    values["listing"] = tuple(values["listing"])
    values["unreadable"] = tuple(values["unreadable"])
    return ClientFacts(files=files, runtimes=RT.parse(stdout), **values)


def gather_client(
    remote: Transport,
    paths: tuple[str, ...],
    extra_globs: tuple[tuple[str, str], ...] = (),
    *,
    buildkit_toml: str | None = None,
    contents: bool = False,
    docker: bool = False,
    sudo: bool | None = None,
    before_sudo: Callable[[], None] | None = None,
    folders: tuple[str, ...] = (),
    runtimes: tuple[RT.Target, ...] = (),
) -> ClientFacts:
    """Run the client probe and parse it: the one way to look at a client.

    ``sudo`` None: without sudo (it only reads), and again with sudo when a file was unreadable,
    after ``before_sudo`` (the sudo canary's verdict).
    ``runtimes``: every runtime of these targets is also asked (``runtimes.script``, as root: pass
    ``sudo=True``) in the same round trip; its answers are ``ClientFacts.runtimes``.
    """
    script = client_script(paths, extra_globs, buildkit_toml=buildkit_toml, contents=contents, docker=docker,
                           folders=folders)
    if runtimes:
        script += "\n" + RT.script(runtimes)

    found = parse_client(remote.run(script, sudo=bool(sudo)).stdout, paths)
    if sudo is None and found.unreadable:
        if before_sudo is not None:
            before_sudo()
        found = parse_client(remote.run(script, sudo=True).stdout, paths)
    return found


# --------------------------------------------------------------------------- registry host


@dataclass(frozen=True)
class ContainerFact:
    """The parts of ``docker inspect`` the plan compares."""

    id: str
    name: str
    image_id: str
    running: bool
    restart_count: int
    labels: dict[str, str]
    volume_sources: dict[str, tuple[str, str]]  # destination -> (type, source)
    env: dict[str, str]
    ports: tuple[str, ...]                      # "443/tcp->443", sorted
    restart_policy: str

    @classmethod
    def from_inspect(cls, data: dict) -> ContainerFact:
        state = data.get("State") or {}
        mounts = {
            m.get("Destination", ""): (m.get("Type", ""), m.get("Source", ""))
            for m in data.get("Mounts") or []
        }
        return cls(
            id=data.get("Id", ""),
            name=(data.get("Name") or "").lstrip("/"),
            image_id=data.get("Image", ""),
            running=bool(state.get("Running")),
            restart_count=int(data.get("RestartCount") or 0),
            labels=dict((data.get("Config") or {}).get("Labels") or {}),
            volume_sources=mounts,
            env=dict(e.partition("=")[::2] for e in (data.get("Config") or {}).get("Env") or []),
            ports=tuple(sorted(
                f"{port}->{b.get('HostPort', '')}"
                for port, binds in ((data.get("HostConfig") or {}).get("PortBindings") or {}).items()
                for b in (binds or [])
            )),
            restart_policy=((data.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name", ""),
        )


@dataclass(frozen=True)
class RegistryFacts:
    clock: int | None = None
    files: dict[str, RemoteFile | None] = field(default_factory=dict)
    certs_link: str | None = None  # symlink target, "DIR" for a plain folder, None when absent
    container: ContainerFact | None = None
    previous: ContainerFact | None = None
    image_id: str | None = None
    engine: str = "up"
    engine_detail: str = ""
    cert_pem: bytes | None = None          # what <data_dir>/certs holds now
    users: dict[str, str] | None = None    # name -> digest of its hash; None: no htpasswd yet


def registry_script(engine: str, data_dir: str, container: str, image: str, paths: tuple[str, ...],
                    *, cert: str | None = None, htpasswd: str | None = None) -> str:
    """``cert``/``htpasswd``: the current certificate and htpasswd, shown by identity (CERT, USER lines)."""
    certs = f"{data_dir}/certs"
    e = q(engine)
    identity = []
    if cert:
        identity.append(f"[ -f {q(cert)} ] && echo \"CERT $(base64 -w0 < {q(cert)})\"")
    if htpasswd:
        identity.append(
            f"if [ -f {q(htpasswd)} ]; then echo USERS; while IFS= read -r l || [ -n \"$l\" ]; do "
            'case "$l" in *:*) case "$l" in "#"*) continue;; esac;; *) continue;; esac; '
            'n=${l%%:*}; h=${l#*:}; echo "USER $n $(printf %s "$h" | sha256sum | cut -c1-16)"; '
            f"done < {q(htpasswd)}; fi")
    return "\n".join([
        'echo "TIME $(date -u +%s)"',
        *_file_lines(paths),
        (f"if [ -L {q(certs)} ]; then echo \"LINK $(readlink {q(certs)})\"; "
         f"elif [ -d {q(certs)} ]; then echo 'LINK DIR'; else echo 'LINK NONE'; fi"),
        *identity,
        f"if ! command -v {e} >/dev/null 2>&1; then echo {q(f'ENGINE missing {engine}: not found')}; exit 0; fi",
        # `ps` works for docker and for podman (which has no server version); it fails when the daemon is down
        (f"if ! eo=$({e} ps -q 2>&1 >/dev/null); then "
         "echo \"ENGINE down $(printf '%s' \"$eo\" | tail -n1)\"; exit 0; fi"),
        "echo 'ENGINE up'",
        # one line each: podman (4.x) prints the inspect array indented whatever the --format
        (f"i=$({e} inspect --type container --format '{{{{json .}}}}' {q(container)} 2>/dev/null) "
         "&& echo \"INSPECT $(printf '%s' \"$i\" | tr -d '\\n')\""),
        (f"i=$({e} inspect --type container --format '{{{{json .}}}}' {q(container + '-previous')} 2>/dev/null) "
         "&& echo \"PREVIOUS $(printf '%s' \"$i\" | tr -d '\\n')\""),
        f"i=$({e} image inspect --format '{{{{.Id}}}}' {q(image)} 2>/dev/null) && echo \"IMAGE $i\"",
        "true",
    ])


def parse_registry(stdout: str, paths: tuple[str, ...] = ()) -> RegistryFacts:
    files: dict[str, RemoteFile | None] = dict.fromkeys(paths)
    values: dict = {}
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if _parse_common(tag, rest, line, files, values):
            continue
        if tag == "LINK":
            values["certs_link"] = None if rest == "NONE" else rest
        elif tag in ("INSPECT", "PREVIOUS"):
            data = json.loads(rest)
            data = data[0] if isinstance(data, list) else data  # podman prints an array
            values["container" if tag == "INSPECT" else "previous"] = ContainerFact.from_inspect(data)
        elif tag == "IMAGE":
            values["image_id"] = rest.strip()
        elif tag == "ENGINE":
            state, _, detail = rest.partition(" ")
            values["engine"], values["engine_detail"] = state, detail
        elif tag == "CERT":
            values["cert_pem"] = base64.b64decode(rest.strip() or b"")
        elif tag == "USERS":
            values["users"] = {}
        elif tag == "USER" and "users" in values:
            name, _, digest = rest.rpartition(" ")
            values["users"][name.strip()] = digest
    return RegistryFacts(files=files, **values)


def gather_registry(remote: Transport, engine: str, data_dir: str, container: str, image: str,
                    paths: tuple[str, ...], *, cert: str | None = None, htpasswd: str | None = None) -> RegistryFacts:
    """Run the registry probe (as root) and parse it: the one way to look at the registry host."""
    script = registry_script(engine, data_dir, container, image, paths, cert=cert, htpasswd=htpasswd)
    return parse_registry(remote.run(script, sudo=True).stdout, paths)
