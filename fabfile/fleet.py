"""Bounded parallel fan-out. One host's failure never stops the others.

``fan_out`` runs ``work(item)`` for every item on at most ``parallel``
threads and always returns one ``HostResult`` per item, in input order:
expected errors become ``failed``/``unreachable`` with their one-line reason,
anything else becomes ``failed`` with the exception (and the traceback goes
to the log file only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from .errors import RegistryTlsError, RemoteError
from .redact import redact
from .results import HostResult, Status

log = logging.getLogger("registry_tls.fleet")
T = TypeVar("T")


class Progress(Protocol):
    """What a fan-out reports to; used as a context manager around the fan-out."""

    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: object) -> None: ...
    def started(self, host: str) -> None: ...
    def finished(self, result: HostResult) -> None: ...


class NoProgress:
    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def started(self, host: str) -> None:
        pass

    def finished(self, result: HostResult) -> None:
        pass


def guarded(host: str, role: str, work: Callable[[], HostResult]) -> HostResult:
    """Run ``work`` and turn any exception into a HostResult for ``host``."""
    start = time.monotonic()
    try:
        result = work()
    except RemoteError as exc:
        status = Status.UNREACHABLE if exc.status == "unreachable" else Status.FAILED
        result = HostResult(host=host, role=role, status=status, message=exc.reason)
    except RegistryTlsError as exc:
        result = HostResult(host=host, role=role, status=Status.FAILED, message=str(exc))
    except Exception as exc:
        log.exception("%s: unexpected error", host)
        result = HostResult(host=host, role=role, status=Status.FAILED,
                            message=f"unexpected error: {type(exc).__name__}: {redact(str(exc))}")
    result.seconds = time.monotonic() - start
    return result


def fan_out(
    items: Sequence[T],
    work: Callable[[T], HostResult],
    *,
    name: Callable[[T], str],
    parallel: int = 10,
    role: str = "client",
    progress: Progress | None = None,
) -> list[HostResult]:
    progress = progress or NoProgress()

    def one(item: T) -> HostResult:
        host = name(item)
        progress.started(host)
        result = guarded(host, role, lambda: work(item))
        progress.finished(result)
        return result

    if not items:
        return []
    workers = max(1, min(parallel, len(items)))
    if workers == 1:
        return [one(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host")
    try:
        return list(pool.map(one, items))
    finally:
        # on Ctrl-C: hosts not yet started stay as they were; started ones finish their steps
        pool.shutdown(wait=True, cancel_futures=True)
