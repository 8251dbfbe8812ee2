"""SSH, and only SSH: the one module that imports Fabric and paramiko.

A ``Remote`` is one lazily opened Fabric ``Connection`` per host and run,
hardened where Fabric's defaults are not what a tool that installs trust
anchors needs:

- host keys are checked against known_hosts (Fabric auto-adds any key);
  unknown keys are refused unless ``accept_new_host_keys``, which records them;
  a changed key is always fatal and shows both fingerprints;
- the inventory's ssh_config file (only that one) is honoured: User, Port,
  HostName, IdentityFile, ProxyJump; every hop (inventory ``gateway`` or
  ProxyJump) gets the same host-key check, and a failing gateway is named as
  the cause instead of its targets;
- bounded waits: TCP connect, banner and the channel through a gateway each
  get connect_timeout; one retry only for transient network errors, never a
  retry after an authentication or host-key failure;
- agent forwarding off; TCP_NODELAY on the socket (halves the handshake);
- a dead peer is noticed: an SSH keepalive after KEEPALIVE_SECONDS of silence and
  TCP_USER_TIMEOUT = DEAD_PEER_SECONDS, so a host that vanishes mid-command
  (link down during a dockerd restart) is reported unreachable within ~15 s
  instead of holding the run until the command timeout;
- one remote command is one step: Ctrl-C/SIGTERM in the main thread lands
  after it, so no script is cut in half;
- ``sudo`` with ``LC_ALL=C``, a random prompt and the password on stdin only,
  or ``sudo -n`` when no password is configured;
- file uploads go through SFTP into a private ``mktemp -d`` folder, then
  ``install`` + ``mv`` as root: never through a command line or stdin.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import secrets as _random
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paramiko
from fabric import Config, Connection

from .errors import (
    AuthError,
    ConnectionLost,
    HostKeyError,
    InputError,
    RemoteError,
    SudoError,
    UnreachableError,
    WrongSudoPassword,
)
from .inventory import SshTarget, parse_gateway
from .redact import redact
from .sh import cmd
from .shield import uninterrupted

log = logging.getLogger("registry_tls.remote")

_known_hosts_lock = threading.Lock()

KEEPALIVE_SECONDS = 3       # SSH keepalive after this long without sending (paramiko)
DEAD_PEER_SECONDS = 12      # data unacknowledged this long: the peer is gone (Linux TCP_USER_TIMEOUT)
IDLE_POLL_SECONDS = 1.0     # how often an idle connection's transport thread wakes (paramiko: 0.1)
SUDO_RETRY = b"Sorry, try again."   # sudo (LC_ALL=C) after a wrong password


@dataclass(frozen=True)
class SshSettings:
    """Run-wide SSH settings (from the inventory's ``ssh`` section and the command line)."""

    known_hosts: Path
    ssh_config: Path | None = None
    connect_timeout: int = 10
    accept_new_host_keys: bool = False
    sudo_password: str | None = field(default=None, repr=False)   # never in a repr (review L6)
    command_timeout: int = 300


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def tail(self, lines: int = 3) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return redact(" | ".join(text[-lines:])) or f"exit code {self.exited}"


class Transport(Protocol):
    """One host: run a script, put files. ``Remote`` is the SSH one; tests use a recording fake.

    Opened only through ``Session.connect``; used as a context manager (closing on exit).
    """

    name: str

    def __enter__(self) -> Transport: ...
    def __exit__(self, *exc: object) -> None: ...
    def open(self) -> object: ...
    def close(self) -> None: ...
    def run(self, command: str, *, sudo: bool = False, timeout: int | None = None, check: bool = True) -> Result: ...
    def put_many(self, files: list[tuple[bytes, str, int]], *, owner: str = "root", group: str = "root") -> None: ...


class _RecordNewKey(paramiko.MissingHostKeyPolicy):
    """--accept-new-host-keys: trust on first use, and write the key to known_hosts.

    Only for a host known_hosts does not list at all: a host listed with
    another key is a changed key (paramiko raises BadHostKeyException before
    asking a policy; another run may have recorded it since we loaded the file).
    """

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with _known_hosts_lock:
            known = paramiko.HostKeys(str(self.path)) if self.path.exists() else paramiko.HostKeys()
            recorded = known.lookup(hostname) or {}
            if recorded and recorded.get(key.get_name()) != key:
                raise paramiko.BadHostKeyException(hostname, key, next(iter(recorded.values())))
            if not recorded:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                with open(self.path, "a", encoding="ascii") as fh:
                    fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
                log.warning("%s: recorded new host key %s %s in %s", hostname, key.get_name(),
                            _fp(key), self.path)
        client.get_host_keys().add(hostname, key.get_name(), key)


class GatewayError(RemoteError):
    """A gateway (inventory ``gateway`` or ssh_config ProxyJump) failed: its targets were not tried."""

    status = "unreachable"

    def __init__(self, host: str, gateway: str, reason: str, transient: bool = False):
        super().__init__(host, f"gateway {gateway} failed: {reason} (target not tried)")
        self.transient = transient


class _QuickAckSocket(socket.socket):
    """A TCP socket that ACKs every segment at once (Linux TCP_QUICKACK; the kernel resets it, so
    it is set again after each recv). sshd leaves Nagle on for non-interactive sessions: when it
    sends two small packets in a row (after auth, before the first channel is served), the second
    waits for our delayed ACK, 40 ms. Quick ACKs remove that stall from every connection."""

    def recv(self, *args: Any) -> bytes:
        data = super().recv(*args)
        with contextlib.suppress(OSError):     # closed meanwhile: the next recv reports it
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


@functools.lru_cache(maxsize=8)
def _parsed_known_hosts(path: str, mtime_ns: int, size: int) -> paramiko.HostKeys:
    """paramiko cannot read marker lines (review L8: it raised an uncaught InvalidHostKey): refuse them in
    one line. A @revoked key would silently have no effect, so its file is refused rather than used."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            marker = next(iter(line.split(None, 1)), "")    # any whitespace: ssh reads "@revoked<TAB>host" too
            if marker in ("@revoked", "@cert-authority"):
                what = ("revoked keys" if marker == "@revoked" else "SSH host certificates")
                raise InputError(f"{path}:{number}: {marker} lines are not supported ({what}); remove the line, "
                                 "or list the hosts' plain keys")
    return paramiko.HostKeys(path)


def _load_host_keys(client: paramiko.SSHClient, path: Path, host: str, port: int | None) -> None:
    """Give ``client`` the known_hosts keys of host:port. The file is parsed once per run (again
    only when it changes), not once per host: parsing builds a key object per line, so per host
    it cost O(fleet size) CPU (4 ms at 51 lines, ~80 ms at 1000)."""
    st = path.stat()
    parsed = _parsed_known_hosts(str(path), st.st_mtime_ns, st.st_size)
    name = host if port in (None, 22) else f"[{host}]:{port}"   # what paramiko looks up
    for keytype, key in (parsed.lookup(name) or {}).items():
        client.get_host_keys().add(name, keytype, key)


class _Spare:
    """A session channel being opened on a background thread (``take`` waits for it)."""

    def __init__(self, transport: paramiko.Transport, timeout: float):
        self._channel: paramiko.Channel | None = None
        self._thread = threading.Thread(target=self._open, args=(transport, timeout), daemon=True)
        self._thread.start()

    def _open(self, transport: paramiko.Transport, timeout: float) -> None:
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):   # the caller opens its own, sees why
            self._channel = transport.open_session(timeout=timeout)

    def take(self, timeout: float) -> paramiko.Channel | None:
        self._thread.join(timeout)
        channel, self._channel = self._channel, None
        return channel if channel is not None and channel.active and not channel.closed else None


class _Connection(Connection):
    """Fabric's Connection, with the next command's session channel opened while this one is: the
    channel-open round trip overlaps the current one instead of preceding the next command (a run's
    second command costs one round trip instead of two: 50 ms saved per host at 50 ms RTT)."""

    _spare: _Spare | None = None   # a class attribute, so Fabric keeps it as an attribute, not config

    def create_session(self) -> paramiko.Channel:
        spare = self._spare
        timeout = float(self.connect_timeout or 10)
        self._spare = _Spare(self.transport, timeout)
        channel = spare.take(timeout) if spare is not None else None
        return channel if channel is not None else self.transport.open_session(timeout=timeout)


def _fp(key: paramiko.PKey) -> str:
    return key.fingerprint if hasattr(key, "fingerprint") else key.get_fingerprint().hex()


def _label(cxn: Connection) -> str:
    host = f"[{cxn.host}]" if ":" in cxn.host else cxn.host
    return f"{cxn.user}@{host}:{cxn.port}"


def ssh_config(path: Path | None) -> paramiko.SSHConfig:
    """The one ssh_config file the inventory names (default ~/.ssh/config); empty when absent.

    Nothing else is read (no /etc/ssh/ssh_config), so a run does what the
    inventory and that file say. paramiko understands Host, Match, HostName,
    User, Port, IdentityFile, ProxyJump, ProxyCommand, ConnectTimeout; not Include.
    """
    if path is None or not path.is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise InputError(f"{path}: cannot read this ssh config: {exc}") from None


def install_line(staged: str, dest: str, mode: int, owner: str, group: str) -> str:
    """One uploaded file into place: install beside ``dest``, rename over it, drop the staged copy.

    ``|| exit 1`` on every line: under ``set -e`` a failure inside an AND list other than the last
    line's would not stop the script (review L1), and a key that did not land must fail the upload.
    """
    parent = dest.rsplit("/", 1)[0] or "/"
    final_tmp = f"{parent}/.{dest.rsplit('/', 1)[1]}.registry-tls.tmp"
    template = "{{ install -m " + f"{mode:04o}" + " -o {} -g {} {} {} && mv -f {} {} && rm -f {}; }} || exit 1"
    return cmd(template, owner, group, staged, final_tmp, final_tmp, dest, staged)


class Remote:
    """One host over SSH. Use as a context manager; the connection opens on first use."""

    def __init__(self, target: SshTarget, settings: SshSettings):
        self.target = target
        self.settings = settings
        self.name = target.name
        self._cxn: Connection | None = None
        self._hops: list[Connection] = []  # gateways opened for this host, nearest first
        self._is_root: bool | None = None

    # ------------------------------------------------------------------ connection

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        cxns = ([self._cxn] if self._cxn is not None else []) + self._hops[::-1]
        self._cxn, self._hops = None, []
        for cxn in cxns:
            with contextlib.suppress(Exception):   # closing must not hide the real outcome
                cxn.close()

    def connection(self) -> Connection:
        """The Fabric Connection (not yet open) with every hop hardened: what ``open`` dials."""
        config = Config(ssh_config=ssh_config(self.settings.ssh_config),
                        overrides={"forward_agent": False, "load_ssh_configs": False,
                                   "timeouts": {"connect": self.settings.connect_timeout}})
        gateway = None
        if self.target.gateway:
            user, host, port = parse_gateway(self.target.gateway)
            gateway = self._connection(SshTarget(name=f"gateway {host}", address=host, user=user or self.target.user,
                                                 port=port, key=self.target.key), config)
        return self._connection(self.target, config, gateway)

    def _connection(self, target: SshTarget, config: Config, gateway: Connection | None = None) -> Connection:
        connect_kwargs: dict = {}
        if target.key:
            connect_kwargs.update(key_filename=[target.key], look_for_keys=False, allow_agent=False)
        cxn = _Connection(target.address, user=target.user, port=target.port, config=config,
                         connect_timeout=self.settings.connect_timeout, connect_kwargs=connect_kwargs,
                         gateway=gateway, forward_agent=False, inline_ssh_env=True)
        self._harden(cxn)
        return cxn

    def _harden(self, cxn: Connection) -> None:
        """Same rules for every hop (target, inventory gateway, each ProxyJump): Fabric auto-adds
        any host key and may forward the agent; we check known_hosts, never forward, bound waits."""
        timeout = self.settings.connect_timeout
        cxn.client.set_missing_host_key_policy(
            _RecordNewKey(self.settings.known_hosts) if self.settings.accept_new_host_keys else paramiko.RejectPolicy()
        )
        if self.settings.known_hosts.exists():
            _load_host_keys(cxn.client, self.settings.known_hosts, cxn.host, cxn.port)
        cxn.forward_agent = False
        # TCP and the banner each get connect_timeout; the whole key exchange gets twice that (with
        # equal bounds paramiko may give up on the handshake first and report 'No existing session')
        cxn.connect_timeout = 2 * timeout
        cxn.connect_kwargs = {**cxn.connect_kwargs, "banner_timeout": timeout, "auth_timeout": timeout}
        if isinstance(cxn.gateway, Connection):
            self._harden(cxn.gateway)

    def open(self) -> Connection:
        """Connect and authenticate, or raise Unreachable/HostKey/Auth/GatewayError naming the host.

        One retry, after 0.5 s, for a transient network error only; never after
        an authentication or host-key failure (lockouts, fail2ban).
        """
        if self._cxn is not None:
            return self._cxn
        for attempt in (1, 2):
            cxn = self.connection()
            via = f" (via gateway {_label(cxn.gateway)})" if isinstance(cxn.gateway, Connection) else ""
            try:
                self._dial(cxn)
            except Exception as exc:  # noqa: BLE001 - mapped to one readable error below
                self._hops.append(cxn)
                self.close()
                if attempt == 1 and _transient(exc):
                    log.debug("%s: transient connect error (%s), retrying once", self.name, exc)
                    time.sleep(0.5)
                    continue
                raise self._connect_error(exc, cxn, via) from None
            self._cxn = cxn
            return cxn
        raise AssertionError("unreachable")  # pragma: no cover

    def _dial(self, cxn: Connection) -> None:
        """TCP (bounded) or a direct-tcpip channel through the opened gateway (bounded), then SSH."""
        gateway = cxn.gateway
        if isinstance(gateway, Connection):
            self._hops.append(gateway)
            try:
                self._dial(gateway)
            except GatewayError:
                raise
            except Exception as exc:  # noqa: BLE001 - attributed to the gateway, not the target
                reason = self._connect_error(exc, gateway, "").reason
                raise GatewayError(self.name, _label(gateway), reason, _transient(exc)) from None
            cxn.gateway = None  # our bounded channel replaces Fabric's open_gateway()
            cxn.connect_kwargs = {**cxn.connect_kwargs, "sock": self._channel(gateway, cxn)}
        elif not gateway:
            cxn.connect_kwargs = {**cxn.connect_kwargs, "sock": self._socket(cxn.host, cxn.port)}
        cxn.open()
        cxn.transport.set_keepalive(KEEPALIVE_SECONDS)
        # paramiko's transport thread wakes every 0.1 s on an idle socket (a timeout raised and
        # caught in Python): measured 0.6 ms CPU per connection per idle second (50 connections,
        # 5 s: 150 ms; at 1 s: 35 ms), which adds up with hundreds of hosts. Data still wakes it
        # at once; only the keepalive check gets coarser (1 s).
        cxn.transport.sock.settimeout(IDLE_POLL_SECONDS)

    def _socket(self, host: str, port: int) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=self.settings.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux: keepalives unacknowledged -> ETIMEDOUT
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_SECONDS * 1000)
        if hasattr(socket, "TCP_QUICKACK"):  # Linux
            sock = _QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            sock.settimeout(self.settings.connect_timeout)
        return sock

    def _channel(self, gateway: Connection, cxn: Connection) -> paramiko.Channel:
        timeout = self.settings.connect_timeout
        try:
            return gateway.transport.open_channel("direct-tcpip", dest_addr=(cxn.host, int(cxn.port)),
                                                  src_addr=("", 0), timeout=timeout)
        except paramiko.ChannelException as exc:
            raise UnreachableError(self.name, f"gateway {_label(gateway)} cannot reach {cxn.host}:{cxn.port}: "
                                              f"{exc.text}") from None
        except paramiko.SSHException:
            raise UnreachableError(self.name, f"connection timed out after {timeout}s: gateway {_label(gateway)} "
                                              f"got no answer from {cxn.host}:{cxn.port}") from None

    def _connect_error(self, exc: Exception, cxn: Connection, via: str) -> RemoteError:
        if isinstance(exc, RemoteError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(self.name, (
                f"host key CHANGED for {exc.hostname}{via}: known_hosts has {_fp(exc.expected_key)}, "
                f"server offers {_fp(exc.key)}; if the change is expected, remove the old line with "
                f"`ssh-keygen -R {exc.hostname} -f {self.settings.known_hosts}`"))
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return HostKeyError(self.name, (
                f"unknown host key for {cxn.host}{via}; not in {self.settings.known_hosts} "
                "(verify it and add it, or pass --accept-new-host-keys to record it)"))
        keys = cxn.connect_kwargs.get("key_filename") or []
        if isinstance(exc, paramiko.PasswordRequiredException):
            return AuthError(self.name, f"private key {' '.join(keys)} is encrypted{via}; "
                                        "load it into ssh-agent (not retried)".replace("  ", " "))
        if isinstance(exc, paramiko.AuthenticationException):
            tried = ", ".join([f"key {k}" for k in keys]
                              + (["ssh-agent and default keys"] if cxn.connect_kwargs.get("look_for_keys", True) else []))
            return AuthError(self.name, f"authentication failed for user {cxn.user}@{cxn.host}{via}, "
                                        f"tried {tried} (not retried)")
        if isinstance(exc, socket.gaierror):
            return UnreachableError(self.name, f"cannot resolve {cxn.host}{via}")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return UnreachableError(self.name, f"connection timed out after {self.settings.connect_timeout}s "
                                               f"to {cxn.host}:{cxn.port}{via}")
        if isinstance(exc, ConnectionRefusedError):
            return UnreachableError(self.name, f"connection refused by {cxn.host}:{cxn.port}{via}")
        if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return UnreachableError(self.name, f"no route to {cxn.host}{via}")
        if isinstance(exc, paramiko.SSHException) and str(exc) == "No existing session":
            return UnreachableError(self.name, f"SSH handshake with {cxn.host}:{cxn.port} timed out{via}")
        return UnreachableError(self.name, f"SSH connection to {cxn.host}:{cxn.port} failed{via}: "
                                           f"{redact(str(exc)) or type(exc).__name__}")

    # ------------------------------------------------------------------ commands

    @property
    def is_root(self) -> bool:
        if self._is_root is None:
            user = self.open().user
            self._is_root = user == "root"
        return self._is_root

    def run(self, command: str, *, sudo: bool = False, timeout: int | None = None, check: bool = True) -> Result:
        """Run a shell command; with ``sudo`` as root. Raises RemoteError when ``check`` and it fails.

        The debug log shows the command exactly as sent (the sudo wrapper
        included, secrets masked); a Ctrl-C lands after the command, not in it.
        """
        cxn = self.open()
        timeout = timeout or self.settings.command_timeout
        command, prompt = self._sudo(command) if sudo and not self.is_root else (command, None)
        with uninterrupted(self.name):
            log.debug("%s: %s", self.name, redact(command))
            try:
                result = self._exec(cxn.create_session(), command, prompt, timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise UnreachableError(self.name, f"connection lost: {redact(str(exc)) or type(exc).__name__}") from None
        if not (cxn.transport and cxn.transport.is_active()):  # the channel closed because SSH died
            raise ConnectionLost(self.name, _lost(cxn.transport))
        if sudo and not self.is_root:
            _raise_for_sudo(self.name, result)
        if check and not result.ok:
            raise RemoteError(self.name, result.tail())
        return result

    def _exec(self, channel: paramiko.Channel, command: str, prompt: str | None, timeout: float) -> Result:
        """One command on ``channel``, read by this thread alone (no reader threads): stdout and stderr as
        they come, the sudo prompt answered once from memory, then the exit status; bounded by ``timeout``."""
        ready = threading.Event()   # set by paramiko when either stream has data or closes
        channel.in_buffer.set_event(ready)
        channel.in_stderr_buffer.set_event(ready)
        out, err = bytearray(), bytearray()
        answered = False
        deadline = time.monotonic() + timeout
        try:
            channel.exec_command(command)
            if prompt is None:
                channel.shutdown_write()   # nothing to send: a command reading stdin ends instead of waiting
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if prompt is not None and not answered and prompt.encode() in err:
                    channel.sendall(((self.settings.sudo_password or "") + "\n").encode())
                    channel.shutdown_write()
                    answered = True
                if answered and SUDO_RETRY in err:   # one attempt: never a second guess
                    raise WrongSudoPassword(self.name, "sudo: wrong password (stopped after one attempt)")
                if channel.recv_ready() or channel.recv_stderr_ready():
                    continue
                if channel.closed or (channel.eof_received and channel.exit_status_ready()):
                    break   # all output (up to EOF) and the exit status; closed without one: -1 below
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RemoteError(self.name, f"command timed out after {timeout}s")
                # output may still come after the exit status (sshd sends it when the process ends); after
                # the end of the output (EOF) only the exit status is to come
                (channel.status_event if channel.eof_received else ready).wait(min(left, 1.0))
            exited = channel.recv_exit_status() if channel.exit_status_ready() else -1
        finally:
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                channel.close()
        return Result(stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"), exited=exited)

    def _sudo(self, command: str) -> tuple[str, str | None]:
        """``sudo -n`` without a password; else a random prompt answered from memory, one attempt: the
        command and the prompt to answer. LC_ALL=C keeps sudo's messages in English, which SUDO_RETRY
        and _raise_for_sudo match."""
        if self.settings.sudo_password is None:
            return cmd("LC_ALL=C sudo -n -- sh -c {}", command), None
        prompt = f"[registry-tls sudo {_random.token_hex(4)}]"
        return cmd("LC_ALL=C sudo -S -p {} -- sh -c {}", prompt, command), prompt

    def put(self, data: bytes, dest: str, *, mode: int, owner: str = "root", group: str = "root") -> None:
        """Install ``data`` at ``dest`` as root, atomically: SFTP into a 0700 temp dir, install, mv.

        The content never appears in a command line, stdin or log; the temp
        folder is removed whether the install succeeds or not.
        """
        self.put_many([(data, dest, mode)], owner=owner, group=group)

    def put_many(self, files: list[tuple[bytes, str, int]], *, owner: str = "root", group: str = "root") -> None:
        cxn = self.open()
        # staging folders a killed run left behind (they may hold a key) go first; a live run's are younger
        tmpdir = self.run("find \"${TMPDIR:-/tmp}\" -maxdepth 1 -name 'registry-tls.*' -user \"$(id -u)\" -mmin +10 "
                          "-exec rm -rf {} + 2>/dev/null; "
                          "umask 077 && mktemp -d \"${TMPDIR:-/tmp}/registry-tls.XXXXXXXX\"").stdout.strip()
        try:
            sftp = cxn.sftp()
            script = ["set -e"]
            for i, (data, dest, mode) in enumerate(files):
                staged = f"{tmpdir}/{i}"
                with sftp.open(staged, "wb") as fh:
                    fh.chmod(0o600)
                    fh.write(data)
                script.append(install_line(staged, dest, mode, owner, group))
            self.run("\n".join(script), sudo=True)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteError(self.name, f"upload failed: {redact(str(exc)) or type(exc).__name__}") from None
        finally:
            with contextlib.suppress(RemoteError):
                self.run(cmd("rm -rf {}", tmpdir), check=False)


def _raise_for_sudo(host: str, result: Result) -> None:
    err = result.stderr
    if result.ok or "sudo:" not in err:
        return
    if "a password is required" in err or "a terminal is required" in err:
        raise SudoError(host, "sudo needs a password and none was given "
                              "(run with --prompt-for-sudo-password or set INVOKE_SUDO_PASSWORD)")
    if "must have a tty" in err or "requiretty" in err:
        raise SudoError(host, "sudo: you must have a tty (sudoers has requiretty; "
                              "add 'Defaults:USER !requiretty' for the deploy user)")
    if "incorrect password" in err or "Sorry, try again" in err:
        raise WrongSudoPassword(host, "sudo: wrong password (stopped after one attempt)")
    if "is not in the sudoers file" in err or "not allowed to execute" in err:
        raise SudoError(host, f"sudo refused: {redact(err.strip().splitlines()[-1])}")


def _lost(transport: paramiko.Transport | None) -> str:
    """Why a connection died under a running command (its outcome on the host is unknown)."""
    exc = transport.get_exception() if transport else None
    if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
        why = f"the host stopped answering (keepalives unacknowledged for {DEAD_PEER_SECONDS}s)"
    elif exc is None or isinstance(exc, EOFError) or not str(exc):   # paramiko reports both as EOF
        why = f"the host closed the connection or stopped answering for {DEAD_PEER_SECONDS}s"
    else:
        why = redact(str(exc))
    return f"connection lost mid-command: {why}"


def _transient(exc: Exception) -> bool:
    if isinstance(exc, GatewayError):
        return exc.transient
    if isinstance(exc, (ConnectionResetError, EOFError)):
        return True
    return isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower()
