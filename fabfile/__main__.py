"""The ``registry-tls`` command (and ``python -m fabfile``): load the tasks, then run one.

A run is short-lived and allocates few cycles, so the cyclic garbage collector stays off while
the ~500 modules load (it would otherwise walk every object they create several times: ~50 ms of
a 300 ms start), and what they made is frozen out of later collections (``gc.freeze``).
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from .cli import program
    finally:
        gc.freeze()
        gc.enable()
    program.run()


if __name__ == "__main__":
    main()
