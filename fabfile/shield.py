"""The shield against a half-done step: SIGINT/SIGTERM held while one step runs, then acted on.

Used for each remote step (transport.Remote.run: never a half-run script) and
for local changes of several files that belong together (localfs.atomic_write_all:
a certificate and its key switch together).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def uninterrupted(host: str) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while one step on ``host`` runs, then act on it: never a half-run step.

    Without this, Fabric drops the channel on Ctrl-C and the remote script dies
    wherever it is (e.g. between stopping the old registry container and
    starting the new one). A second signal stops at once. Signals only reach
    the main thread; steps on worker threads need no shield.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)
        sys.stderr.write(f"\ninterrupted: finishing the current step on {host} (again to stop at once)\n")

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            raise KeyboardInterrupt
