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
from pathlib import Path
from typing import Any

import invoke
from invoke import Exit
from invoke.exceptions import ParseError
from invoke.parser import Argument
from invoke.program import Program

from . import logs, report
from .errors import ExitCode, InputError, RegistryTlsError
from .program import command, set_program

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

# what an integer flag accepts: ASCII digits, maybe a minus (range checks name it: ``integer``)
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,9}")

assert not CORE_SHORT_FLAGS & set(SHORT_FLAGS.values())
assert len(set(SHORT_FLAGS.values())) == len(SHORT_FLAGS)


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
            if cast and self.kind is int and isinstance(value, str) and not WHOLE_NUMBER.fullmatch(value):
                raise ValueError(value)   # int() would also take ' 3', '+3', '1_0' and non-ASCII digits
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


def no_empty_values(values: dict[str, Any]) -> None:
    """``--group=``, ``-i ''``: an empty value is an error, never the flag's default (every text flag defaults to
    None or a word, so an empty one came from the command line)."""
    for name, value in values.items():
        if isinstance(value, str) and not value.strip():
            raise InputError(f"--{name.rstrip('_').replace('_', '-')} {value!r}: expected a value")


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
            no_empty_values(kwargs)
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
    """Invoke's own parse and configuration errors exit 2 (3 for status), in one line.

    Invoke prints parse errors (unknown task or flag, missing or bad value) and
    exits 1, which docs/FAULTS.md reserves for host failures, and a broken
    configuration file (``~/.invoke.yaml``, ``-f FILE``) is a traceback. This
    wraps ``Program.parse_tasks`` and ``parse_cleanup`` (``--help TASK``),
    ``create_config`` and ``update_config`` once; fabfile/cli.py calls it on
    import, which happens before task flags are parsed (``inv`` loads tasks.py
    first; ``registry-tls`` is that module), so it applies to both, except
    that ``inv`` reads the system and user files before tasks.py is loaded.
    """
    wrappers = {"parse_tasks": _one_line_parse_errors, "parse_cleanup": _one_line_parse_errors,
                "create_config": _held_config_errors, "update_config": _one_line_config_errors}
    for method, wrap in wrappers.items():
        original = getattr(Program, method)
        if not getattr(original, "registry_tls", False):
            setattr(Program, method, wrap(original))


# --------------------------------------------------------------------------- Invoke's configuration


class Config(invoke.Config):
    """Invoke's configuration, each file checked as it loads: one that is not valid YAML/JSON/Python, not a
    mapping, or has a value where Invoke expects a section (or the reverse), is an InputError naming it."""

    @staticmethod
    def global_defaults() -> dict[str, Any]:
        return {**invoke.Config.global_defaults(), "inventory": None}

    def _load_yaml(self, path: Any) -> Any:
        return self._checked(path, super()._load_yaml)

    def _load_yml(self, path: Any) -> Any:
        return self._checked(path, super()._load_yml)

    def _load_json(self, path: Any) -> Any:
        return self._checked(path, super()._load_json)

    def _load_py(self, path: Any) -> Any:
        return self._checked(path, super()._load_py)

    def _checked(self, path: Any, load: Callable[[Any], Any]) -> Any:
        try:
            data = load(path)
        except FileNotFoundError:   # Invoke tries each suffix: a missing one is skipped
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the parser raised: one line naming the file
            raise InputError(f"{path}: not a usable Invoke config file: {config_problem(exc)}") from None
        problem = config_shape(data, self._defaults)
        if problem:
            raise InputError(f"{path}: not a usable Invoke config file: {problem}")
        return data


def config_problem(exc: BaseException) -> str:
    """What a configuration parser said, in one line: YAML and JSON with line:col."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:   # PyYAML
        return f"line {mark.line + 1}:{mark.column + 1}: {getattr(exc, 'problem', None) or exc}"
    if hasattr(exc, "lineno") and hasattr(exc, "colno"):   # json
        return f"line {exc.lineno}:{exc.colno}: {exc.msg}"  # type: ignore[attr-defined]
    if isinstance(exc, SyntaxError):
        return f"line {exc.lineno}: {exc.msg}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def config_shape(data: Any, defaults: dict[str, Any], prefix: str = "") -> str | None:
    """Why ``data`` cannot be merged over ``defaults`` (Invoke's merge refuses a section replaced by a value
    and the reverse), or a value of ours has the wrong type; None when it can."""
    if data is None:
        return None
    if not isinstance(data, dict):
        return f"{prefix.rstrip('.') + ': ' if prefix else ''}expected a mapping of settings, not {data!r:.60}"
    for key, value in data.items():
        name = f"{prefix}{key}"
        if name in ("inventory", "sudo.password") and value is not None and not isinstance(value, str):
            return f"{name}: expected text, not {value!r}"
        if key not in defaults:
            continue
        if isinstance(defaults[key], dict) != isinstance(value, dict):
            return (f"{name}: expected a section of settings, not {value!r}" if isinstance(defaults[key], dict)
                    else f"{name}: expected a value, not a section")
        if isinstance(value, dict):
            problem = config_shape(value, defaults[key], f"{name}.")
            if problem:
                return problem
    return None


def _exit_code_of_tasks(program: Program) -> int:
    """3 when a monitoring task (status) is asked for, else 2."""
    return max((parse_exit_code(program, context.name) for context in getattr(program, "tasks", None) or ()),
               default=int(ExitCode.INVALID_INPUT))


def _held_config_errors(original: Callable[[Program], None]) -> Callable[[Program], None]:
    """A system or user file that cannot be loaded: remembered, and Invoke's defaults used until the task is
    known (``update_config`` then stops with the task's exit code); ``--help`` and ``--list`` still work."""
    @functools.wraps(original)
    def create_config(self: Program) -> None:
        self.registry_tls_config_error = None  # type: ignore[attr-defined]
        try:
            original(self)
        except Exception as exc:  # noqa: BLE001 - any loader failure: one line, later
            self.registry_tls_config_error = (str(exc) if isinstance(exc, RegistryTlsError)  # type: ignore[attr-defined]
                                              else f"Invoke config: {config_problem(exc)}")
            self.config = self.config_class(lazy=True)

    create_config.registry_tls = True  # type: ignore[attr-defined]
    return create_config


def _one_line_config_errors(original: Callable[[Program], None]) -> Callable[[Program], None]:
    @functools.wraps(original)
    def update_config(self: Program, *args: Any, **kwargs: Any) -> None:
        code = _exit_code_of_tasks(self)
        held = getattr(self, "registry_tls_config_error", None)
        if held:
            raise Exit(f"error: {report.literal(held)}", code=code)
        runtime = self.args.config.value or os.environ.get("INVOKE_RUNTIME_CONFIG")
        if runtime and not Path(runtime).is_file():   # Invoke would skip a missing one silently
            why = "is not a file" if Path(runtime).exists() else "no such file"
            raise Exit(f"error: {report.literal(runtime)}: {why} (the Invoke configuration file given by -f / "
                       "INVOKE_RUNTIME_CONFIG)", code=code)
        try:
            original(self, *args, **kwargs)
        except (Exit, ParseError):
            raise
        except RegistryTlsError as exc:
            raise Exit(f"error: {report.literal(exc)}", code=code) from None
        except EOFError:   # --prompt-for-sudo-password, then Ctrl-D
            raise Exit("error: no sudo password given", code=code) from None
        except KeyboardInterrupt:
            raise Exit("error: interrupted", code=UNKNOWN if code == UNKNOWN else INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - Invoke's plain Config (inv): name the file if there is one
            where = f"{runtime}: " if runtime else ""
            raise Exit(f"error: {report.literal(where)}not a usable Invoke config file: "
                       f"{report.literal(config_problem(exc))}", code=code) from None

    update_config.registry_tls = True  # type: ignore[attr-defined]
    return update_config


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
        set_program(_program_name(self))   # what hints call the program (fabfile/program.py)
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
