"""The ``registry-tls`` command (and ``python -m fabfile``): load the tasks, then run one.

A run is short-lived and allocates few cycles, so the cyclic garbage collector stays off while
the ~500 modules load (it would otherwise walk every object they create several times: ~50 ms of
a 300 ms start), and what they made is frozen out of later collections (``gc.freeze``).

When the reader of stdout goes away (``registry-tls --list | head -1``), the command stops quietly
with 141 (128 + SIGPIPE, what a shell shows for a command SIGPIPE ended), not a BrokenPipeError
traceback. SIGPIPE itself stays ignored, as Python sets it: with its default action a peer that
closes an SSH connection would kill the whole run instead of failing one host.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    gc.disable()
    try:
        from .cli import program
        from .commandline import READER_GONE, quiet_stdout
    finally:
        gc.freeze()
        gc.enable()
    try:
        try:
            program.run()
        finally:
            sys.stdout.flush()  # here, not at exit, where a broken pipe is only "Exception ignored ..."
    except BrokenPipeError:  # Invoke's own output (--list, --help, completion); a task's: commandline.cli
        quiet_stdout()
        sys.exit(READER_GONE)


if __name__ == "__main__":
    main()
