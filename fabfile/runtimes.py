"""Ask each runtime itself whether it accepts the registry's TLS: one remote script, a pure judge.

The script runs as root, in the same round trip as what it follows: the
client probe (``facts.gather_client(..., runtimes=)``: ``inv verify`` and
``inv status``), or the trust files' apply script and again after a dockerd
restart (``clients.trust``). Each target is checked in a background subshell
(and the names of all but buildkit, too), so a host takes about one check's
time; values are quoted with ``sh.q`` like all our shell.
It asks, for every trust target of the client and every name it pulls with:

  docker      dockerd, through its Engine API: ``POST /auth`` on the local socket
              with a throwaway user. dockerd reads certs.d exactly as for a pull;
              ``401 Unauthorized`` means TLS was accepted. Nothing is stored.
              dockerd not running: certs.d is read by docker's rules (below) and
              the folder's CAs are checked with openssl; that is a warning
              (``STOPPED_DOCKERD``), never "asked itself".
  containerd  ``ctr images pull --hosts-dir /etc/containerd/certs.d`` of a tag
              that does not exist, with the OS store emptied (SSL_CERT_FILE,
              SSL_CERT_DIR), so only hosts.toml can make it succeed (401). With
              ``--local`` where ``ctr images pull --help`` lists it (containerd
              2.0+ pulls through the daemon's transfer service otherwise, which
              resolves with the daemon's OS store).
  podman      containers/image (``skopeo login``, else ``podman login`` with a
              throwaway root) with a throwaway authfile, removed afterwards.
  os          curl (else openssl) with the system store only: no CA file.
  buildkit    no daemon is asked (buildkitd has no API that tests TLS without a
              build): the CAs buildkitd.toml names are checked with openssl.

Tags it prints:
  RT <target> <name> <exit> <base64 output>    one check's raw outcome
  RTX <target> absent|down <detail>            the runtime is not installed / not running

``parse`` reads them (``Outcome``), ``judge`` turns them into one verdict per
(target, name) in the runtime's own words, ``summary`` into one line for the
host. ``foreign_files`` reads the probe's ``L`` lines: files in a certs.d
folder that registry-tls did not write, and what docker makes of them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .sh import Raw, q, words

CERTS_D = {
    "docker": "/etc/docker/certs.d",
    "podman": "/etc/containers/certs.d",
    "containerd": "/etc/containerd/certs.d",
}
BUILDKIT_CERTS = "/etc/buildkit/certs.d"
PROBE_USER = "registry-tls-probe"  # never a real account: its login must be refused (401)
DOCKER_SOCKET = "/var/run/docker.sock"
CONTAINERD_SOCKETS = ("/run/containerd/containerd.sock", "/run/docker/containerd/containerd.sock")
NO_OS_STORE = Raw("env SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent")  # shell, meant as shell
TIMEOUT = 20
STOPPED_DOCKERD = "dockerd is not running: certs.d checked by docker's rules and openssl only"


@dataclass(frozen=True)
class Target:
    """One trust target to check on one client: the names (certs.d folder names) to try."""

    kind: str                      # docker | containerd | podman | os | buildkit
    names: tuple[str, ...]         # certs.d folder forms (docker, containerd, podman), host:port (os, buildkit)
    ca_files: tuple[str, ...] = () # buildkit: the CAs buildkitd.toml names


@dataclass(frozen=True)
class Check:
    target: str
    name: str
    state: str    # ok | fail | absent | down
    detail: str   # the runtime's own words
    asked: bool = True   # False: the runtime was not asked (a stopped dockerd: its certs.d by docker's rules + openssl)

    @property
    def line(self) -> str:
        return f"{self.target} {self.name}: {self.detail}" if self.name else f"{self.target}: {self.detail}"


# --------------------------------------------------------------------------- script


def _emit(target: str, name: str, command: str, *, quiet_ok: bool = False) -> str:
    """Run ``command`` (shell this module built, its values quoted; output captured), print ``RT target name exit base64``.

    ``quiet_ok``: the verdict reads only the exit code when it is 0 (openssl, curl), so a success
    prints no output and costs no encoding; the exit and encoded output stay in ``$e`` and ``$r``.
    """
    # the output's last 2000 bytes: each line stays one write(2) under PIPE_BUF, so parallel checks never interleave
    encode = "r=$(printf '%s' \"$o\" | tail -c 2000 | base64 -w0)"
    if quiet_ok:
        encode = f"if [ \"$e\" = 0 ]; then r=; else {encode}; fi"
    return f"o=$({command} 2>&1); e=$?; {encode}; {_print(target, name)}"


def _print(target: str, name: str) -> str:
    """The ``RT`` line of a check whose exit and encoded output are in ``$e`` and ``$r``."""
    return f"printf 'RT %s %s %s %s\\n' {q(target)} {q(name)} \"$e\" \"$r\""


def _parallel(lines: list[str]) -> list[str]:
    """Each check in a background subshell, then wait: the names of a target are checked at once."""
    return [f"( {line} ) &" for line in lines] + ["wait"]


def _docker(t: Target) -> list[str]:
    def auth(name: str) -> str:
        body = json.dumps({"username": PROBE_USER, "password": "x", "serveraddress": name})
        return _emit("docker", name, f"curl -sS --max-time {TIMEOUT} --unix-socket {q(DOCKER_SOCKET)} "
                     f"-H 'Content-Type: application/json' -d {q(body)} http://docker/auth")

    def files(endpoint_: str, names: list[str]) -> str:
        """The names that reach one endpoint ('registry.lab' and 'registry.lab:443'): one TLS check for
        the first; the others reuse its verdict when their folder holds the very same CAs (cmp).
        A folder's only ``*.crt`` is the CA file itself; several are joined as docker joins them."""
        def ca_file(i: int, name: str) -> str:
            folder = q(f"{CERTS_D['docker']}/{name}")
            return (f'set -- {folder}/*.crt; if [ "$#" = 1 ] && [ -f "$1" ]; then c{i}=$1; else '
                    f'[ -n "$vt" ] || vt=$(mktemp -d); cat "$@" > "$vt/{i}" 2>/dev/null; c{i}="$vt/{i}"; fi')

        lines = ["vt=", ca_file(0, names[0]),
                 _emit("docker-files", names[0], _openssl_cmd(endpoint_, Raw('"$c0"')), quiet_ok=True)]
        for i, name in enumerate(names[1:], 1):
            lines += [ca_file(i, name), f"if cmp -s \"$c0\" \"$c{i}\"; then "
                      f"{_print('docker-files', name)}; else "
                      + _emit("docker-files", name, _openssl_cmd(endpoint_, Raw(f'"$c{i}"')), quiet_ok=True) + "; fi"]
        return "\n".join([*lines, '[ -z "$vt" ] || rm -rf "$vt"'])

    by_endpoint: dict[str, list[str]] = {}
    for n in t.names:
        by_endpoint.setdefault(endpoint(n), []).append(n)

    return [
        ("if ! command -v dockerd >/dev/null 2>&1 && ! command -v docker >/dev/null 2>&1; then "
         "echo 'RTX docker absent docker is not installed'"),
        (f"elif command -v curl >/dev/null 2>&1 && [ -S {q(DOCKER_SOCKET)} ] && "
         f"curl -s --max-time 5 --unix-socket {q(DOCKER_SOCKET)} -o /dev/null http://docker/_ping; then"),
        *_parallel([auth(n) for n in t.names]),
        "else echo " + q(f"RTX docker down dockerd does not answer on {DOCKER_SOCKET} (or curl is missing)"),
        *_parallel([files(e, names) for e, names in by_endpoint.items()]),
        "fi",
    ]


def endpoint(folder: str) -> str:
    """A certs.d folder name as host:port ('registry.lab' is port 443)."""
    return folder if ":" in folder.rsplit("]", 1)[-1] else f"{folder}:443"


def _containerd(t: Target) -> list[str]:
    pulls = [_emit("containerd", n, f"{NO_OS_STORE} timeout {TIMEOUT} ctr --address \"$cs\" -n {q(PROBE_USER)} "
                   f"images pull $lo --hosts-dir {q(CERTS_D['containerd'])} {q(_ref(n))}") for n in t.names]
    return [
        f"cs=; for x in {words(CONTAINERD_SOCKETS)}; do [ -S \"$x\" ] && {{ cs=$x; break; }}; done",
        "if ! command -v ctr >/dev/null 2>&1; then echo 'RTX containerd absent ctr is not installed'",
        "elif [ -z \"$cs\" ]; then echo 'RTX containerd down containerd is not running (no socket)'",
        "else",
        # containerd 2.0+: without --local the daemon's transfer service resolves, with its own OS store
        'case "$(ctr images pull --help 2>&1)" in *"--local "*) lo=--local;; *) lo=;; esac',
        *_parallel(pulls),
        f"ctr --address \"$cs\" namespaces rm {q(PROBE_USER)} >/dev/null 2>&1; fi",
    ]


def _ref(name: str) -> str:
    return f"{name}/registry-tls/probe:none"


def _podman(t: Target) -> list[str]:
    def login(i: int, name: str) -> str:
        return _emit("podman", name, f"printf 'x\\n' | timeout {TIMEOUT} $pl --authfile \"$pt/auth{i}.json\" "
                     f"-u {q(PROBE_USER)} --password-stdin {q(name)}")

    return [
        "pt=$(mktemp -d)",
        "if command -v skopeo >/dev/null 2>&1; then pl='skopeo login'",
        ("elif command -v podman >/dev/null 2>&1; then "
         "pl=\"podman --root $pt/root --runroot $pt/run --storage-driver vfs login\""),
        "else pl=; echo 'RTX podman absent neither podman nor skopeo is installed'; fi",
        "if [ -n \"$pl\" ]; then",
        *_parallel([login(i, n) for i, n in enumerate(t.names)]),
        "fi; rm -rf \"$pt\"",
    ]


def _openssl_cmd(endpoint: str, cafile: Raw | None) -> str:
    """``cafile``: a shell word naming the CA file (a variable the script set), or None: the system store."""
    host, _, _port = endpoint.rpartition(":")
    host = host.strip("[]")
    check = f"-verify_ip {q(host)}" if _is_ip(host) else f"-verify_hostname {q(host)}"
    if cafile:  # only that file: OpenSSL reads its default locations from these variables
        return (f"{NO_OS_STORE} timeout {TIMEOUT} openssl s_client -connect {q(endpoint)} "
                f"-servername {q(host)} {check} -verify_return_error -CAfile {q(cafile)} </dev/null")
    return (f"timeout {TIMEOUT} openssl s_client -connect {q(endpoint)} -servername {q(host)} "
            f"{check} -verify_return_error </dev/null")


def _os(t: Target) -> list[str]:
    def one(endpoint: str) -> str:
        return ("if command -v curl >/dev/null 2>&1; then "
                + _emit("os", endpoint, f"curl -sS -o /dev/null --max-time {TIMEOUT} "
                        f"{q(f'https://{endpoint}/v2/')}", quiet_ok=True)
                + "; else " + _emit("os-openssl", endpoint, _openssl_cmd(endpoint, None), quiet_ok=True) + "; fi")

    return _parallel([one(e) for e in t.names])


def _buildkit(t: Target) -> list[str]:
    return ["bt=$(mktemp)", f"cat {words(t.ca_files)} > \"$bt\" 2>/dev/null",
            *[_emit("buildkit", e, _openssl_cmd(e, Raw('"$bt"')), quiet_ok=True) for e in t.names], "rm -f \"$bt\""]


BUILDERS = {"docker": _docker, "containerd": _containerd, "podman": _podman, "os": _os, "buildkit": _buildkit}


def script(targets: tuple[Target, ...]) -> str:
    """Shell lines checking every target and every name at the same time (one wall-clock check per host)."""
    lines: list[str] = []
    for t in targets:
        lines += ["(", *BUILDERS[t.kind](t), ") &"]
    lines += ["wait", "true"]
    return "\n".join(lines)


def _is_ip(name: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:.]*", name))


# --------------------------------------------------------------------------- parse + judge (pure)


@dataclass(frozen=True)
class Outcome:
    """What the script printed (nothing, when no runtime was asked)."""

    raw: tuple[tuple[str, str, int, str], ...] = ()                       # (target, name, exit, output)
    missing: dict[str, tuple[str, str]] = field(default_factory=dict)    # target -> (absent|down, detail)


def parse(stdout: str) -> Outcome:
    raw: list[tuple[str, str, int, str]] = []
    missing: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "RT":
            target, name, code, data = ([*rest.split(" ", 3), "", "", "", ""])[:4]
            text = base64.b64decode(data or b"").decode(errors="replace")
            raw.append((target, name, int(code) if code.lstrip("-").isdigit() else -1, text))
        elif tag == "RTX":
            target, state, detail = ([*rest.split(" ", 2), "", "", ""])[:3]
            missing[target] = (state, detail)
    return Outcome(tuple(raw), missing)


def _last_line(text: str, pattern: str | None = None) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if pattern:
        hits = [ln for ln in lines if re.search(pattern, ln)]
        lines = hits or lines
    line = lines[-1] if lines else "no output"
    m = re.search(r'msg="(.*)"$', line)  # logrus lines: keep the message
    return (m.group(1).replace('\\"', '"') if m else line)[:300]


def _docker_verdict(code: int, out: str) -> tuple[str, str]:
    try:
        reply = json.loads(out.strip())
    except ValueError:
        return "fail", f"dockerd: {_last_line(out)}"
    status = reply.get("Status") or ""
    message = reply.get("message") or ""
    if status == "Login Succeeded" or "401 Unauthorized" in message:
        return "ok", "dockerd accepts the TLS (login as a throwaway user: 401 Unauthorized)"
    return "fail", message or status or "no answer"


def _containerd_verdict(code: int, out: str) -> tuple[str, str]:
    line = _last_line(out, r"^ctr: ")
    if re.search(r"\b401 Unauthorized\b|\bnot found\b", line) and "x509" not in line:
        return "ok", "ctr with hosts.toml only (no OS store) accepts the TLS (401 Unauthorized)"
    return "fail", line.removeprefix("ctr: ")


def _podman_verdict(code: int, out: str) -> tuple[str, str]:
    line = _last_line(out)
    if code == 0 or "invalid username/password" in line or "401 Unauthorized" in line:
        return "ok", "containers/image accepts the TLS (login as a throwaway user: invalid username/password)"
    return "fail", line.removeprefix("Error: ")


def _curl_verdict(code: int, out: str) -> tuple[str, str]:
    if code == 0:
        return "ok", "curl with the system store accepts the TLS"
    return "fail", _last_line(out, r"^curl: ").removeprefix("curl: ")


def _openssl_verdict(what: str) -> Callable[[int, str], tuple[str, str]]:
    def verdict(code: int, out: str) -> tuple[str, str]:
        if code == 0:
            return "ok", what
        first = "verify error" if "verify error" in out else r"errno|error:|refused|No route|timed out|unable"
        return "fail", "openssl: " + _last_line(out, first)
    return verdict


VERDICTS = {
    "docker": _docker_verdict, "containerd": _containerd_verdict, "podman": _podman_verdict,
    "os": _curl_verdict, "os-openssl": _openssl_verdict("openssl with the system store accepts the TLS"),
    "buildkit": _openssl_verdict("buildkitd not asked (no daemon API to test TLS without a build); "
                                 "the CAs buildkitd.toml names validate the registry (openssl)"),
    "docker-files": _openssl_verdict(f"{STOPPED_DOCKERD}; its CAs validate the registry"),
}


RULE = "by docker's rule"


def docker_folder_error(files: list[str]) -> str | None:
    """What docker makes of a certs.d folder's files (registry's ReadCertsDirectory), or None.

    Files are read in name order: ``*.crt`` are CAs, ``*.cert`` needs its ``.key``
    and ``*.key`` its ``.cert``; the first mismatch fails every pull from that name.
    This is our reading of docker's rule, in docker 20.10's words (moby 23 and later
    say "missing client certificate ..." and "CA certificates must use the extension
    .crt"; containers/image words it its own way): callers say "by docker's rule"
    (``RULE``), never that the runtime said it.
    """
    names = sorted(p.rsplit("/", 1)[-1] for p in files)
    present = set(names)
    for name in names:
        if name.endswith(".cert") and name[:-5] + ".key" not in present:
            return (f"missing key {name[:-5]}.key for client certificate {name}. "
                    "Note that CA certificates should use the extension .crt")
        if name.endswith(".key") and name[:-4] + ".cert" not in present:
            return f"Missing client certificate {name[:-4]}.cert for key {name}"
    return None


def judge(outcome: Outcome, targets: tuple[Target, ...], listing: tuple[str, ...] = ()) -> tuple[Check, ...]:
    """One Check per (target, name); ``listing`` (the probe's L lines) lets a stopped dockerd be judged
    by docker's rules for certs.d."""
    checks: list[Check] = []
    by_folder: dict[str, list[str]] = {}
    for path in listing:
        by_folder.setdefault(path.rsplit("/", 1)[0], []).append(path)
    for t in targets:
        if t.kind in outcome.missing:
            state, detail = outcome.missing[t.kind]
            if t.kind != "docker" or state != "down":
                checks.append(Check(t.kind, "", state, detail))
                continue
        seen = {(target, name): (code, out) for target, name, code, out in outcome.raw}
        for name in t.names:
            keys = [k for k in ((t.kind, name), ("docker-files", name), ("os-openssl", name)) if k in seen]
            if not keys:
                checks.append(Check(t.kind, name, "fail", "no answer from the check (timed out or killed)"))
                continue
            kind = keys[0][0]
            state, detail = VERDICTS[kind](*seen[keys[0]])
            if kind == "docker-files":   # dockerd not asked: said in every verdict, and a warning (summary)
                error = docker_folder_error(by_folder.get(f"{CERTS_D['docker']}/{name}", []))
                if error:
                    state, detail = "fail", f"{RULE}: {error} ({STOPPED_DOCKERD})"
                elif state == "fail":
                    detail = f"{detail} ({STOPPED_DOCKERD})"
            checks.append(Check(t.kind, name, state, detail, asked=kind != "docker-files"))
    return tuple(checks)


def summary(checks: tuple[Check, ...]) -> tuple[str, str, list[str]]:
    """(overall, message, warnings): overall 'fail' if any runtime refused, 'unchecked' if a runtime
    is absent or down (never 'ok' then), else 'ok'. A stopped dockerd whose certs.d passed docker's
    rules and openssl is 'ok' with a warning (``STOPPED_DOCKERD``): its files were checked, dockerd
    was not asked, and the message never says it was."""
    failed = [c for c in checks if c.state == "fail"]
    missing = [c for c in checks if c.state in ("absent", "down")]
    warnings = [f"{c.target}: {c.detail}: not checked, not trusted by anything here" if c.state == "absent"
                else f"{c.target}: {c.detail}: not checked through it" for c in missing]
    asked = all(c.asked for c in checks)
    if not asked:
        warnings.append(STOPPED_DOCKERD)
    if failed:
        shown = "; ".join(c.line for c in failed[:2]) + (f" (+{len(failed) - 2} more)" if len(failed) > 2 else "")
        return "fail", shown, warnings
    targets = list(dict.fromkeys(c.target for c in checks if c.state == "ok"))
    accepted = f"TLS accepted by {', '.join(targets) or 'no runtime'}"
    if missing:
        return "unchecked", accepted if asked else f"{accepted} ({STOPPED_DOCKERD})", warnings
    how = "each runtime asked itself" if asked else STOPPED_DOCKERD
    return "ok", f"{accepted} ({len(checks)} check(s), {how})", warnings


# --------------------------------------------------------------------------- files we did not write (pure)

OURS = re.compile(r"^(ca\.crt|registry-tls-[^/]+\.crt|hosts\.toml)$")


@dataclass(frozen=True)
class Foreign:
    """A certs.d folder where files registry-tls did not write make the runtime refuse every pull."""

    runtime: str
    folder: str
    error: str                 # docker's rule (docker_folder_error), in docker 20.10's words
    files: tuple[str, ...]     # the files it stumbles on

    @property
    def cause(self) -> str:
        return f"{', '.join(self.files)}: not written by registry-tls, left in place (remove or pair it)"

    @property
    def text(self) -> str:
        """What the runtime will do, when it was not asked (or did not refuse): docker's rule, marked as such."""
        return (f"{self.runtime} refuses every pull from {self.folder.rsplit('/', 1)[-1]}, {RULE}: {self.error} "
                f"({self.cause})")


def foreign_files(listing: tuple[str, ...], folders: tuple[str, ...]) -> tuple[list[Foreign], list[str]]:
    """(errors, warnings) for files registry-tls did not write in the certs.d folders of the registry's names.

    docker and podman read every file there (``*.crt`` CAs, ``*.cert``/``*.key``
    client pairs): an unpaired key or certificate breaks every pull from that
    name (an error, by docker's rule); another CA only adds trust, and a
    ``x.cert``/``x.key`` pair is a client certificate the runtime presents to the
    registry (warnings: a pair whose halves do not match breaks it too, and only
    the runtime can tell). containerd reads what hosts.toml names, so other files
    there are a warning. Nothing is deleted: these files are not ours.
    """
    errors: list[Foreign] = []
    warnings: list[str] = []
    for folder in folders:
        inside = [p for p in listing if p.rsplit("/", 1)[0] == folder]
        extra = sorted(p for p in inside if not OURS.match(p.rsplit("/", 1)[-1]))
        if not extra:
            continue
        runtime = next((t for t, base in CERTS_D.items() if folder.startswith(base + "/")), "docker")
        if runtime == "containerd":
            warnings.append(f"{folder}: files registry-tls did not write (containerd reads only what hosts.toml "
                            f"names): {', '.join(extra)}")
            continue
        error = docker_folder_error(inside)
        if error:
            errors.append(Foreign(runtime, folder, error, tuple(p for p in extra if p.endswith((".cert", ".key")))))
        cas = [p for p in extra if p.endswith(".crt")]
        if cas:
            warnings.append(f"{folder}: another CA adds trust for this name: {', '.join(cas)}")
        names = {p.rsplit("/", 1)[-1] for p in inside}
        pairs = [n[:-5] for n in sorted(names) if n.endswith(".cert") and f"{n[:-5]}.key" in names]
        if pairs:
            warnings.append(f"{folder}: client certificate {runtime} presents to this registry: "
                            + ", ".join(f"{stem}.cert/{stem}.key" for stem in pairs))
        other = [p for p in extra if not p.endswith((".crt", ".cert", ".key"))]
        if other:
            warnings.append(f"{folder}: files registry-tls did not write ({runtime} ignores them): {', '.join(other)}")
    return errors, warnings
