"""Local file writes on the operator's machine: atomic, with the mode set before any byte lands.

A folder that is a file, a file that is a folder, a permission refused: each is
an ``InputError`` naming the path (exit 2), never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError
from .shield import uninterrupted


def _refused(path: Path, action: str, exc: OSError) -> InputError:
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        return InputError(f"{blocker}: exists and is not a folder (needed for {path}); "
                          "move it away or point the inventory elsewhere")
    return InputError(f"{path}: cannot {action}: {exc.strerror or exc}")


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """``path`` as an existing, writable folder (made with ``mode`` when missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise _refused(path, "create folder", exc) from None
    if not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; move it away or point the inventory elsewhere")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder is not writable by this user")
    return path


def check_private(path: Path) -> Path:
    """Refuse a folder of secrets or trust decisions (pki_dir, state_dir) that another user could change
    (review M2, L3): it must be ours and not group/other-writable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    if st.st_uid != os.geteuid():
        raise InputError(f"{path}: owned by uid {st.st_uid}, not by this user ({os.geteuid()}); "
                         "it holds keys and trust decisions")
    if st.st_mode & 0o022:
        raise InputError(f"{path}: writable by group or others (mode {st.st_mode & 0o777:04o}); chmod 700 it")
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and rename(2).

    The temp file is created with ``mode`` (0600 by default), so a private key
    is never readable by others, not even for a moment; a crash leaves either
    the old file or the new one, never a truncated one.
    """
    atomic_write_all([(path, data, mode)])


def atomic_write_all(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write files that belong together (a certificate and its key) as one change.

    Each goes to a temp file beside it first (mode set before any byte lands,
    fsynced); only then are they renamed into place, with SIGINT/SIGTERM held
    (shield.uninterrupted), so an interrupt leaves the old files or the new
    ones, never a new key beside the old certificate. A failure before the
    renames removes the temp files and changes nothing.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in files:
            staged.append((_stage(path, data, mode), path))
        with uninterrupted("this machine"):
            for tmp, path in staged:
                try:
                    os.replace(tmp, path)
                except OSError as exc:
                    raise _refused(path, "write", exc) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for folder in dict.fromkeys(path.parent for _, path in staged):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _stage(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a temp file beside ``path``, created with ``mode``, fsynced; its path."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise _refused(path, "write", exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed it; never widened
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _refused(path, "write", exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def read_optional(path: Path) -> bytes | None:
    """The file's bytes, None when it does not exist; any other failure names the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refused(path, "read", exc) from None
