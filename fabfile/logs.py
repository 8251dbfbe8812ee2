"""Logging: a log file of every run (for audit) and, with -v, each remote command on stderr.

Both go through the redacting filter, so no secret reaches either.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .errors import InputError
from .localfs import ensure_dir
from .redact import RedactingFilter
from .report import literal

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"
# paramiko logs its errors (with tracebacks, one line a record, and the peer's raw banner) to its own logger:
# only ever to the log file, never to the terminal; before setup() nowhere (not Python's last-resort stderr)
PARAMIKO = logging.getLogger("paramiko")
PARAMIKO.addHandler(logging.NullHandler())
PARAMIKO.propagate = False


class LiteralFormatter(logging.Formatter):
    """-v on the terminal: each record one line, control characters (e.g. in remote output) escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return literal(super().format(record))


def setup(state_dir: Path, *, verbose: bool = False, command: str = "") -> Path:
    root = logging.getLogger("registry_tls")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    log_dir = ensure_dir(state_dir / "log")
    path = log_dir / "registry-tls.log"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))  # review L3
    except OSError as exc:
        raise InputError(f"{path}: cannot open the log file: {exc.strerror or exc}") from None
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    file_handler.addFilter(RedactingFilter())
    root.addHandler(file_handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(LiteralFormatter("%(message)s"))
    console.addFilter(RedactingFilter())
    root.addHandler(console)
    root.propagate = False
    _paramiko_to(path)
    root.info("run: %s (pid %d)", command, os.getpid())
    return path


def _paramiko_to(path: Path) -> None:
    """paramiko's records (WARNING and up) to the run log only, redacted, remote text escaped."""
    for handler in list(PARAMIKO.handlers):
        if isinstance(handler, logging.FileHandler):
            PARAMIKO.removeHandler(handler)
            handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.WARNING)
    handler.setFormatter(LiteralFormatter(FORMAT))
    handler.addFilter(RedactingFilter())
    PARAMIKO.addHandler(handler)


def crash(exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback to the log file only (never to the terminal); its path, or None without one."""
    root = logging.getLogger("registry_tls")
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, "crash: %s: %s", (type(exc).__name__, exc),
                             (type(exc), exc, exc.__traceback__))
    for handler in files:
        handler.handle(record)
    return Path(files[0].baseFilename) if files else None
