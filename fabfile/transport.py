"""SSH, and only SSH: the one module that imports Fabric and paramiko.

A ``Remote`` is one lazily opened Fabric ``Connection`` per host and run,
hardened where Fabric's defaults are not what a tool that installs trust
anchors needs:

- host keys are checked against known_hosts (Fabric auto-adds any key);
  unknown keys are refused unless ``accept_new_host_keys``, which records them;
  a changed key is always fatal and shows both fingerprints;
- bounded connect timeout, one retry only for transient network errors,
  never a retry after an authentication failure;
- agent forwarding off; TCP_NODELAY on the socket (halves the handshake);
- ``sudo`` with ``LC_ALL=C``, a random prompt and the password on stdin only,
  or ``sudo -n`` when no password is configured;
- file uploads go through SFTP into a private ``mktemp -d`` folder, then
  ``install`` + ``mv`` as root: never through a command line or stdin.
"""

from __future__ import annotations

import errno
import logging
import re
import secrets as _random
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, Failure, ResponseNotAccepted
from invoke.watchers import FailingResponder

from .errors import AuthError, HostKeyError, RemoteError, SudoError, UnreachableError
from .inventory import SshTarget
from .redact import redact

log = logging.getLogger("registry_tls.remote")

_known_hosts_lock = threading.Lock()


@dataclass(frozen=True)
class SshSettings:
    """Run-wide SSH settings (from the inventory's ``ssh`` section and the command line)."""

    known_hosts: Path
    ssh_config: Path | None = None
    connect_timeout: int = 10
    accept_new_host_keys: bool = False
    sudo_password: str | None = None
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


class _RecordNewKey(paramiko.MissingHostKeyPolicy):
    """--accept-new-host-keys: trust on first use, and write the key to known_hosts."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        with _known_hosts_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("%s: recorded new host key %s %s in %s", hostname, key.get_name(),
                    _fp(key), self.path)


def _fp(key: paramiko.PKey) -> str:
    return key.fingerprint if hasattr(key, "fingerprint") else key.get_fingerprint().hex()


class Remote:
    """One host over SSH. Use as a context manager; the connection opens on first use."""

    def __init__(self, target: SshTarget, settings: SshSettings):
        self.target = target
        self.settings = settings
        self.name = target.name
        self._cxn: Connection | None = None
        self._is_root: bool | None = None

    # ------------------------------------------------------------------ connection

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._cxn is not None:
            try:
                self._cxn.close()
            finally:
                gateway = self._cxn.gateway
                if isinstance(gateway, Connection):
                    gateway.close()
                self._cxn = None

    def _config(self) -> Config:
        overrides = {"load_ssh_configs": self.settings.ssh_config is not None, "forward_agent": False}
        config = Config(overrides=overrides, runtime_ssh_path=None)
        if self.settings.ssh_config is not None and self.settings.ssh_config.exists():
            config.set_runtime_ssh_path(str(self.settings.ssh_config))
            config.load_ssh_config()
        return config

    def _connection(self, target: SshTarget, config: Config, gateway=None) -> Connection:
        connect_kwargs: dict = {"banner_timeout": self.settings.connect_timeout,
                                "auth_timeout": self.settings.connect_timeout}
        if target.key:
            connect_kwargs.update(key_filename=[target.key], look_for_keys=False, allow_agent=False)
        cxn = Connection(
            target.address, user=target.user, port=target.port, config=config,
            connect_timeout=self.settings.connect_timeout, connect_kwargs=connect_kwargs,
            gateway=gateway, forward_agent=False, inline_ssh_env=True,
        )
        client = cxn.client  # Fabric installs AutoAddPolicy here; replace it
        client.set_missing_host_key_policy(
            _RecordNewKey(self.settings.known_hosts) if self.settings.accept_new_host_keys else paramiko.RejectPolicy()
        )
        if self.settings.known_hosts.exists():
            client.load_host_keys(str(self.settings.known_hosts))
        if isinstance(cxn.gateway, Connection):  # a ProxyJump from ssh_config: harden it too
            self._harden(cxn.gateway)
        return cxn

    def _harden(self, cxn: Connection) -> None:
        cxn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if self.settings.known_hosts.exists():
            cxn.client.load_host_keys(str(self.settings.known_hosts))
        cxn.forward_agent = False

    def open(self) -> Connection:
        """Connect and authenticate, or raise Unreachable/HostKey/AuthError naming the host."""
        if self._cxn is not None:
            return self._cxn
        config = self._config()
        gateway = None
        if self.target.gateway:
            gw_target = _parse_gateway(self.target.gateway, self.target)
            gateway = self._connection(gw_target, config)
        cxn = self._connection(self.target, config, gateway)
        for attempt in (1, 2):
            try:
                if not cxn.gateway:
                    cxn.connect_kwargs["sock"] = self._socket(cxn.host, cxn.port)
                cxn.open()
                break
            except Exception as exc:  # noqa: BLE001 - mapped to one readable error below
                cxn.connect_kwargs.pop("sock", None)
                error = self._connect_error(exc, gateway)
                if attempt == 1 and _transient(exc):
                    log.debug("%s: transient connect error (%s), retrying once", self.name, exc)
                    time.sleep(0.5)
                    continue
                cxn.close()
                raise error from None
        self._cxn = cxn
        return cxn

    def _socket(self, host: str, port: int) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=self.settings.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _connect_error(self, exc: Exception, gateway) -> RemoteError:
        via = f" (via gateway {self.target.gateway})" if gateway else ""
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(self.name, (
                f"host key CHANGED for {exc.hostname}{via}: known_hosts has {_fp(exc.expected_key)}, "
                f"server offers {_fp(exc.key)}; if the change is expected, remove the old line with "
                f"`ssh-keygen -R {exc.hostname} -f {self.settings.known_hosts}`"))
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return HostKeyError(self.name, (
                f"unknown host key{via}; not in {self.settings.known_hosts} "
                "(verify it and add it, or pass --accept-new-host-keys to record it)"))
        if isinstance(exc, paramiko.PasswordRequiredException):
            return AuthError(self.name, f"private key {self.target.key or ''} is encrypted; "
                             "load it into ssh-agent (no retry)".replace("  ", " "))
        if isinstance(exc, paramiko.AuthenticationException):
            tried = f"key {self.target.key}" if self.target.key else "ssh-agent and default keys"
            return AuthError(self.name, f"authentication failed for user {self.target.user or '(default)'}"
                             f"{via}, tried {tried} (not retried)")
        if isinstance(exc, socket.gaierror):
            return UnreachableError(self.name, f"cannot resolve {self.target.address}{via}")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return UnreachableError(self.name, f"connection timed out after {self.settings.connect_timeout}s{via}")
        if isinstance(exc, ConnectionRefusedError):
            return UnreachableError(self.name, f"connection refused by {self.target.address}:{self.target.port or 22}{via}")
        if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return UnreachableError(self.name, f"no route to {self.target.address}{via}")
        if isinstance(exc, RemoteError):
            return exc
        return UnreachableError(self.name, f"SSH connection failed{via}: {redact(str(exc)) or type(exc).__name__}")

    # ------------------------------------------------------------------ commands

    @property
    def is_root(self) -> bool:
        if self._is_root is None:
            user = self.open().user
            self._is_root = user == "root"
        return self._is_root

    def run(self, command: str, *, sudo: bool = False, timeout: int | None = None, check: bool = True) -> Result:
        """Run a shell command; with ``sudo`` as root. Raises RemoteError when ``check`` and it fails."""
        cxn = self.open()
        timeout = timeout or self.settings.command_timeout
        log.debug("%s: %s%s", self.name, "sudo " if sudo else "", redact(command))
        watchers = []
        if sudo and not self.is_root:
            if self.settings.sudo_password is None:
                command = f"LC_ALL=C sudo -n -- sh -c {shlex.quote(command)}"
            else:
                prompt = f"[registry-tls sudo {_random.token_hex(4)}]"
                command = f"LC_ALL=C sudo -S -p {shlex.quote(prompt)} -- sh -c {shlex.quote(command)}"
                watchers.append(FailingResponder(pattern=re.escape(prompt),
                                                 response=self.settings.sudo_password + "\n",
                                                 sentinel="Sorry, try again."))
        try:
            raw = cxn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout,
                          watchers=watchers, pty=False)
        except CommandTimedOut:
            raise RemoteError(self.name, f"command timed out after {timeout}s") from None
        except Failure as exc:
            if isinstance(exc.reason, ResponseNotAccepted):
                raise SudoError(self.name, "sudo: wrong password (stopped after one attempt)") from None
            raise RemoteError(self.name, f"command failed: {redact(str(exc.reason))}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise UnreachableError(self.name, f"connection lost: {redact(str(exc)) or type(exc).__name__}") from None
        result = Result(stdout=raw.stdout, stderr=raw.stderr, exited=raw.exited)
        if sudo and not self.is_root:
            _raise_for_sudo(self.name, result)
        if check and not result.ok:
            raise RemoteError(self.name, result.tail())
        return result

    def put(self, data: bytes, dest: str, *, mode: int, owner: str = "root", group: str = "root") -> None:
        """Install ``data`` at ``dest`` as root, atomically: SFTP into a 0700 temp dir, install, mv.

        The content never appears in a command line, stdin or log; the temp
        folder is removed whether the install succeeds or not.
        """
        self.put_many([(data, dest, mode)], owner=owner, group=group)

    def put_many(self, files: list[tuple[bytes, str, int]], *, owner: str = "root", group: str = "root") -> None:
        cxn = self.open()
        tmpdir = self.run("umask 077 && mktemp -d \"${TMPDIR:-/tmp}/registry-tls.XXXXXXXX\"").stdout.strip()
        try:
            sftp = cxn.sftp()
            script = ["set -e"]
            for i, (data, dest, mode) in enumerate(files):
                staged = f"{tmpdir}/{i}"
                with sftp.open(staged, "wb") as fh:
                    fh.chmod(0o600)
                    fh.write(data)
                parent = dest.rsplit("/", 1)[0] or "/"
                final_tmp = f"{parent}/.{dest.rsplit('/', 1)[1]}.registry-tls.tmp"
                script.append(
                    f"install -m {mode:04o} -o {owner} -g {group} {shlex.quote(staged)} {shlex.quote(final_tmp)}"
                    f" && mv -f {shlex.quote(final_tmp)} {shlex.quote(dest)}"
                )
            self.run("\n".join(script), sudo=True)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteError(self.name, f"upload failed: {redact(str(exc)) or type(exc).__name__}") from None
        finally:
            try:
                self.run(f"rm -rf {shlex.quote(tmpdir)}", check=False)
            except RemoteError:
                pass


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
        raise SudoError(host, "sudo: wrong password (stopped after one attempt)")
    if "is not in the sudoers file" in err or "not allowed to execute" in err:
        raise SudoError(host, f"sudo refused: {redact(err.strip().splitlines()[-1])}")


def _transient(exc: Exception) -> bool:
    if isinstance(exc, (ConnectionResetError, EOFError)):
        return True
    return isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower()


def _parse_gateway(text: str, target: SshTarget) -> SshTarget:
    """``[user@]host[:port]`` -> SshTarget; the user defaults to the target's."""
    user, _, rest = text.rpartition("@")
    host, _, port = rest.partition(":")
    return SshTarget(name=f"gateway {host}", address=host, user=user or target.user,
                     port=int(port) if port else None, key=target.key)
