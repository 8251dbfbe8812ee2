"""A plan is an ordered tuple of steps: what changes, why, the shell that does it, the shell that undoes it.

The registry host and the clients alike (``registry.plan``, ``clients.plan``)::

    nothing to do     not plan.steps
    the change list   each step's ``what``, in order (a dry run prints it as "would ...")
    apply             the steps in order; their files go up in one batch, their scripts as the runner batches them
    rollback          the applied steps' ``undo``, in reverse order (``undo_script``)

Steps are built by the planners from facts and never changed afterwards (frozen); the runners
(``registry.apply``, ``clients.trust``) read nothing else. As in pyinfra, "changed" means "the plan
yielded a step", and a step that is not needed is never made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    """What a step does; each planner uses its own kinds, in this order."""

    # the registry host (registry.plan)
    RESTORE_PREVIOUS = "restore previous"   # <name>-previous left alone by an interrupted run goes back
    WRITE_CERTS = "write certs"             # certificate and key into a new versioned folder
    WRITE_USERS = "write users"             # auth/registry.password: the registry reloads it by itself
    WRITE_ENV = "write env"                 # registry.env: read when the container is created
    SWITCH_LINK = "switch link"             # certs -> the new folder, one rename(2)
    COPY_IMAGES = "copy images"             # from the seed's volume to storage/: done inside RECREATE
    RECREATE = "recreate"                   # the old container kept as <name>-previous, a new one run
    START = "start"                         # our container, stopped
    REMOVE_PREVIOUS = "remove previous"     # <name>-previous of an interrupted run: dropped once healthy
    # a client (clients.plan)
    WRITE_FILE = "write file"
    REMOVE_FILE = "remove file"
    REFRESH_STORE = "refresh store"         # the OS trust store's own command
    RESTART_DOCKERD = "restart dockerd"     # through the restart gate


@dataclass(frozen=True)
class Upload:
    """A file a step writes: its content, where, with which mode (owner root)."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Step:
    """One change. ``script`` None: the step has only files, or a later step carries it out (``why`` says)."""

    kind: Kind
    what: str                           # the change-list line
    target: str = ""                    # what it acts on: a path, a folder, a volume, a command
    why: str = ""
    script: str | None = None           # shell, run as root
    files: tuple[Upload, ...] = ()      # written before the step's script
    undo: str | None = None             # shell, run as root, that puts the previous state back
    check: bool = False                 # the registry must answer healthy afterwards


def describe(steps: Iterable[Step]) -> list[str]:
    return [s.what for s in steps]


def undo_script(steps: Iterable[Step]) -> str:
    """The ``undo`` of ``steps`` (those applied), last applied first; ``true`` when none has one."""
    return "\n".join(s.undo for s in reversed(tuple(steps)) if s.undo) or "true"


def find(steps: Iterable[Step], kind: Kind) -> Step | None:
    return next((s for s in steps if s.kind is kind), None)
