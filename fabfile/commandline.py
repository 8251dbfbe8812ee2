"""The command line's contract, shared by every task (fabfile/cli.py, tasks.py, the lab): flags, exit codes, errors.

- Short flags have one meaning across all tasks (``SHORT_FLAGS``) and never
  reuse a letter of Invoke's own core flags (``-h`` stays help).
- Exit codes: 0 ok, 1 some hosts failed, 2 invalid input (a bad inventory,
  file or flag value, and Invoke's own parse errors), 130 interrupted, 141 stdout's
  reader went away (``| head -1``: quietly, as SIGPIPE would end a shell tool).
  ``inv status`` uses monitoring codes everywhere: 3 UNKNOWN for its own bad
  input, a parse error, an interrupt or a crash.
- Every expected failure is one line on stderr; an unexpected one too, its
  traceback going only to the log file. Never a traceback on the terminal.
"""

from __future__ import annotations

import functools
import os
import re
import select
import signal
import sys
from collections.abc import Callable
from typing import Any

import invoke
from invoke import Exit
from invoke.exceptions import ParseError
from invoke.parser import Argument
from invoke.program import Program

from . import logs, report
from .errors import ExitCode, InputError, RegistryTlsError

INTERRUPTED = 130
UNKNOWN = 3  # monitoring: the check itself could not run
READER_GONE = 128 + signal.SIGPIPE  # stdout's reader went away (`| head -1`): what a shell shows for SIGPIPE

# one letter, one meaning, in every task (the rest are long flags only: --force, --abort, --renew ...)
SHORT_FLAGS = {
    "inventory": "i", "verbose": "v", "json": "j", "dry_run": "n",
    "hosts": "H", "groups": "g", "parallel": "P", "batch": "b",
}
# Invoke's core flags (inv --help): a task flag must not look like one of them
CORE_SHORT_FLAGS = frozenset("cdDefFhlprRTVw")
# flags whose value is a whole number (kind int even when the default is None)
INTEGER_FLAGS = frozenset({"parallel", "batch", "warn_days", "if_expiring_within", "clients"})

# The program the user runs, as hints name it (`registry-tls deploy`, `inv deploy` in a checkout): set once per
# run when Invoke parses the tasks (_one_line_parse_errors), before any task, message or --help is made.
_running = {"program": "registry-tls"}

assert not CORE_SHORT_FLAGS & set(SHORT_FLAGS.values())
assert len(set(SHORT_FLAGS.values())) == len(SHORT_FLAGS)


def command(args: str) -> str:
    """A command to suggest in a message or a flag's help, quoted and named as this program was run:
    "`registry-tls rotate --ca`" when installed (or ``python -m fabfile``), "`inv rotate --ca`" in a checkout."""
    return f"`{_running['program']} {args}`"


def _program_name(program: Program) -> str:
    """``registry-tls``, ``inv`` or ``invoke`` as typed; else the program's first name (``python -m fabfile``)."""
    names = program.binary_names
    return program.called_as if program.called_as in names else names[0]


class FlagValueError(ParseError):
    """A flag value Invoke could not convert (``--parallel x``)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Argument(Argument):
    """An Argument whose bad value is a parse error naming the flag, not a ValueError traceback."""

    exit_code: int = ExitCode.INVALID_INPUT

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            raise FlagValueError(f"--{self.names[0]} {value!r}: expected a whole number", self.exit_code) from None


class Task(invoke.Task):
    """An Invoke task with the shared short flags (no automatic ones) and typed integer flags."""

    def __init__(self, body: Callable, *args: Any, monitoring: bool = False, **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(body, *args, **kwargs)
        self.parse_exit_code = UNKNOWN if monitoring else int(ExitCode.INVALID_INPUT)

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name.rstrip("_"))
        if short and short not in taken_names:
            opts["names"].append(short)
        if name in INTEGER_FLAGS:
            opts["kind"] = int
        return opts

    def get_arguments(self, *args: Any, **kwargs: Any) -> list[Argument]:
        texts = dict(self.help)  # Invoke pops each help text as it makes the flag: keep them for the next parse
        try:
            arguments = super().get_arguments(*args, **kwargs)
        finally:
            self.help = texts
        for argument in arguments:
            argument.__class__ = _Argument
            argument.exit_code = self.parse_exit_code  # type: ignore[attr-defined]
            if callable(argument.help):  # a text naming a command: made now that the program is known
                argument.help = argument.help()
        return arguments


def task(*args: Any, **kwargs: Any) -> Any:
    """``invoke.task`` with this module's ``Task`` (``monitoring=True``: status exit codes)."""
    return invoke.task(*args, klass=Task, **kwargs)


def integer(value: int | None, flag: str, *, minimum: int = 1, maximum: int = 10_000) -> int | None:
    """A whole-number flag in range, else an InputError naming it (no silent clamping)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InputError(f"--{flag.replace('_', '-')} {value!r}: expected a whole number from {minimum} to {maximum}")
    return value


def reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (a BrokenPipeError from an SSH socket is not)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def quiet_stdout() -> None:
    """Send what is still buffered for stdout nowhere, so exiting prints no BrokenPipeError."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cli(fn: Callable | None = None, *, monitoring: bool = False) -> Any:
    """Turn every failure into one line on stderr and the documented exit code; no traceback.

    ``monitoring``: every failure of the task itself is 3 UNKNOWN (``inv status``).
    """
    if fn is None:
        return functools.partial(cli, monitoring=monitoring)

    @functools.wraps(fn)
    def wrapper(c: Any, *args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C (FAULTS F24)
        try:
            return fn(c, *args, **kwargs)
        except Exit:
            raise
        except RegistryTlsError as exc:
            report.error(str(exc))
            code = int(exc.exit_code)
        except KeyboardInterrupt:
            report.error("interrupted" if monitoring else
                         "interrupted; every host is either as it was or in the new state; run again to finish")
            code = INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in the log file
            if isinstance(exc, BrokenPipeError) and reader_gone():  # `| head -1`, not a socket: no error
                quiet_stdout()
                raise Exit(code=READER_GONE) from None
            log = logs.crash(exc)
            report.error(f"internal error: {type(exc).__name__}: {exc} "
                         + (f"(traceback in {log})" if log else "(no log file yet)"))
            code = int(ExitCode.HOSTS_FAILED)
        raise Exit(code=UNKNOWN if monitoring else code)

    return wrapper


def _tidy(message: str) -> str:
    """Invoke's ``Flag <Argument: hosts (H)> needed value...`` -> ``flag --hosts needed value...``."""
    return re.sub(r"[Ff]lag <\w*Argument: ([\w-]+)[^>]*>", lambda m: f"flag --{m[1].replace('_', '-')}", message)


def exit_2_on_parse_errors() -> None:
    """Invoke's own parse errors (unknown task or flag, missing or bad value) exit 2 (3 for status), in one line.

    Invoke prints them and exits 1, which docs/FAULTS.md reserves for host
    failures. This wraps ``Program.parse_tasks`` and ``parse_cleanup`` (``--help
    TASK``) once; fabfile/cli.py calls it on import, which happens before task
    flags are parsed (``inv`` loads tasks.py first; ``registry-tls`` is that
    module), so it applies to both.
    """
    for method in ("parse_tasks", "parse_cleanup"):
        original = getattr(Program, method)
        if not getattr(original, "registry_tls", False):
            setattr(Program, method, _one_line_parse_errors(original))


def parse_exit_code(program: Program, name: str | None) -> int:
    """The exit code of a bad command line for task ``name``: 2, or 3 for ``status`` (monitoring)."""
    try:
        task_ = program.collection[name] if name and program.collection is not None else None
    except (KeyError, ValueError):
        task_ = None
    return getattr(task_, "parse_exit_code", int(ExitCode.INVALID_INPUT))


def _one_line_parse_errors(original: Callable[[Program], None]) -> Callable[[Program], None]:
    @functools.wraps(original)
    def parse(self: Program) -> None:
        _running["program"] = _program_name(self)
        try:
            original(self)
        except ParseError as exc:
            name = getattr(exc.context, "name", None)
            code = getattr(exc, "exit_code", None)
            if code is None:
                code = parse_exit_code(self, name)
            hint = (f" (see {command(f'--help {name}')})" if name else "" if isinstance(exc, FlagValueError)
                    else f" (see {command('--list')})")
            raise Exit(f"error: {report.literal(_tidy(str(exc)))}{hint}", code=code) from None

    parse.registry_tls = True  # type: ignore[attr-defined]
    return parse
