"""Logging: a log file of every run (for audit) and, with -v, each remote command on stderr.

Both go through the redacting filter, so no secret reaches either.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .redact import RedactingFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def setup(state_dir: Path, *, verbose: bool = False, command: str = "") -> Path:
    root = logging.getLogger("registry_tls")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    log_dir = state_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = log_dir / "registry-tls.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    file_handler.addFilter(RedactingFilter())
    root.addHandler(file_handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(RedactingFilter())
    root.addHandler(console)
    root.propagate = False
    root.info("run: %s (pid %d)", command, os.getpid())
    return path
