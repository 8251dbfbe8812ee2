"""The program the user runs, as messages name it: ``registry-tls`` installed, ``inv`` in a checkout.

commandline sets it once per run, when Invoke parses the tasks (before any task, message or
``--help`` is made); every layer that suggests a command reads it through ``command()``, so
the state, PKI and rotation modules need nothing of the command line itself.
"""

from __future__ import annotations

_running = {"program": "registry-tls"}


def set_program(name: str) -> None:
    _running["program"] = name


def command(args: str) -> str:
    """A command to suggest in a message or a flag's help, quoted and named as this program was run:
    "`registry-tls rotate --ca`" when installed (or ``python -m fabfile``), "`inv rotate --ca`" in a checkout."""
    return f"`{_running['program']} {args}`"
