"""One way to build shell: every interpolated value is quoted; exit codes shared with their readers.

    cmd("rm -f {}", path)             -> "rm -f '/a b/c'"
    cmd("{} rename {} {}", engine, old, new)

Each ``{}`` takes one argument, always quoted (``shlex.quote``), so a line
reads as the command it runs and "everything is quoted" can be checked by
reading. Shell braces in a template are written ``{{ }}``. Shell that is
*meant* to be shell (an inventory's ``restart_command``) is passed as a
``Raw`` value, which says so where it is used.

``Exit`` names the exit codes the generated scripts use to tell Python what
happened; the scripts and their parsers both read them from here.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from enum import IntEnum


class Raw(str):
    """Shell text inserted as is (an operator-supplied command, or a fragment this code built)."""


def q(value: object) -> str:
    """One shell word; ``Raw`` values pass unchanged."""
    return value if isinstance(value, Raw) else shlex.quote(str(value))


def cmd(template: str, *args: object) -> str:
    """``template`` with each ``{}`` replaced by one quoted argument."""
    return template.format(*(q(a) for a in args))


def words(values: Iterable[object]) -> str:
    """Several quoted words, space-separated."""
    return " ".join(q(v) for v in values)


def join(argv: Iterable[object]) -> str:
    """An argv list as one command line."""
    return shlex.join(str(a) for a in argv)


class Exit(IntEnum):
    """Exit codes of the generated scripts (0: done; 1: a step failed under ``set -e``)."""

    OK = 0
    RESTART_REFUSED = 3     # restart_script: containers running and live-restore off (not forced)
    RESTART_INVALID = 4     # restart_script: dockerd --validate rejected the configuration
    RESTART_FAILED = 5      # restart_script: the restart command failed
    RESTART_TIMEOUT = 6     # restart_script: dockerd did not answer after the restart
    LOCKED = 7              # lock_script: another run holds the registry lock
    CONTAINER_EXITED = 8    # recreate_script: the new container did not stay up
    UNSAFE_PATH = 9         # lock_script: data_dir or a parent is not root's, or group/other may write it
