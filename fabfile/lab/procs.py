"""Process plumbing: spawn detached processes, check liveness, find and end lab processes by PID."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection, Mapping
from pathlib import Path


def start_time(pid: int) -> int | None:
    """Kernel start time of PID (field 22 of /proc/PID/stat), None if gone. Guards against PID reuse."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[19])


def _state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()[0]


def alive(pid: int | None, started: int | None = None) -> bool:
    """True if PID runs (zombies count as dead; a reused PID with another start time too)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is our child, so it does not linger as a zombie
        os.waitpid(pid, os.WNOHANG)
    state = _state(pid)
    if state is None or state in ("Z", "X", "x"):
        return False
    return started is None or start_time(pid) == started


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start argv in a new session, stdin /dev/null, stdout+stderr appended to log; return its PID.

    The process is our child (reaped by alive()/wait_gone() in this Python process); it is not
    waited for here.
    """
    fd_log = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd_log, 1),
            (os.POSIX_SPAWN_DUP2, fd_log, 2),
        ]
        return os.posix_spawnp(argv[0], argv, env if env is not None else os.environ,
                              file_actions=actions, setsid=True)
    finally:
        os.close(fd_log)


def ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def snapshot() -> dict[int, tuple[int, int | None, int | None, int]]:
    """pid -> (ppid, net ns inode, mnt ns inode, start time) for every live, non-zombie process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X", "x"):
            continue
        table[pid] = (int(fields[1]), ns_inode(f"/proc/{pid}/ns/net"),
                      ns_inode(f"/proc/{pid}/ns/mnt"), int(fields[19]))
    return table


def in_namespaces(net_inodes: set[int], mnt_inodes: set[int],
                  table: dict[int, tuple[int, int | None, int | None, int]] | None = None) -> dict[int, int]:
    """pid -> start time of processes inside the given net/mnt namespaces, plus their descendants
    (container processes live in namespaces of their own under a lab host's containerd-shim)."""
    # Never the machine's own namespaces (a holder caught before its unshare shares them).
    machine = {ns_inode(f"/proc/{p}/ns/{kind}") for p in ("self", "1") for kind in ("net", "mnt")}
    net_inodes, mnt_inodes = set(net_inodes) - machine, set(mnt_inodes) - machine
    table = snapshot() if table is None else table
    found = {pid for pid, (_, net, mnt, _) in table.items()
             if (net is not None and net in net_inodes) or (mnt is not None and mnt in mnt_inodes)}
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    found.discard(os.getpid())
    return {pid: table[pid][3] for pid in found}


def wait_gone(pids: Mapping[int, int | None], timeout: float) -> dict[int, int | None]:
    """Wait until the processes are gone; return those still alive after timeout."""
    deadline = time.monotonic() + timeout
    left = dict(pids)
    while True:
        left = {p: s for p, s in left.items() if alive(p, s)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def terminate(pids: Mapping[int, int | None], timeout: float = 5.0) -> None:
    """SIGTERM the processes (PID -> start time), wait, SIGKILL what is left, wait again."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid, started in list(pids.items()):
            if alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        pids = wait_gone(pids, wait)
        if not pids:
            return


def wait_reaped(parents: Collection[int], timeout: float) -> None:
    """Wait until the given parents (e.g. tini holders) have reaped their zombie children."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        zombies = False
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    raw = Path(f"/proc/{entry.name}/stat").read_text()
                except OSError:
                    continue
                fields = raw[raw.rindex(")") + 2:].split()
                if fields[0] == "Z" and int(fields[1]) in parents:
                    zombies = True
                    break
        if not zombies:
            return
        time.sleep(0.02)
