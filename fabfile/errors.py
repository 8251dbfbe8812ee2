"""Error types. Every expected failure is one of these, printed as one line.

Exit codes follow docs/FAULTS.md: 0 all ok, 1 some hosts failed or were
unreachable, 2 invalid input or configuration (nothing was touched).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    HOSTS_FAILED = 1
    INVALID_INPUT = 2


class RegistryTlsError(Exception):
    """Base class: an expected failure with a one-line, user-facing message."""

    exit_code: ExitCode = ExitCode.HOSTS_FAILED


class InputError(RegistryTlsError, ValueError):
    """Bad input (inventory, flags, certificate files): nothing was touched."""

    exit_code = ExitCode.INVALID_INPUT


class InventoryError(InputError):
    """inventory.yaml is malformed or invalid; the message names file, key path, line."""


class CertificateError(InputError):
    """A certificate or key is unusable; the message says which file and why."""


class RemoteError(RegistryTlsError):
    """A step failed on a remote host. ``host`` names it; the message says what failed."""

    status = "failed"

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message


class UnreachableError(RemoteError):
    """TCP/SSH connection could not be established (DNS, refused, timeout)."""

    status = "unreachable"


class ConnectionLost(UnreachableError):
    """The connection died under a running command: its outcome on the host is unknown."""


class HostKeyError(RemoteError):
    """The host key is unknown or has changed; never retried, never auto-accepted."""

    status = "unreachable"


class AuthError(RemoteError):
    """SSH authentication failed; never retried (lockouts, fail2ban)."""

    status = "unreachable"


class SudoError(RemoteError):
    """sudo refused: wrong password, password required, or a tty required."""


class WrongSudoPassword(SudoError):
    """sudo rejected the password (one attempt only): the same password would fail on every host."""


class RestartRefused(RemoteError):
    """dockerd was not restarted because containers would stop (live-restore off, not forced).

    A refusal, not a failed restart: later hosts still restart (see clients.RestartGate).
    """


class LockedError(RegistryTlsError):
    """Another run holds the lock for this registry."""
