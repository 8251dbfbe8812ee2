"""Why a registry container did not come up, in the registry's own words. Pure.

``reason`` picks, from a container's output (``docker logs``) and the engine's
own output (``docker run``), the one line that states the error, by rank:

1. a Go ``panic:`` line (``panic: StorageDriver not registered: bogus-driver``);
2. a ``level=fatal`` message, logfmt or JSON (``open /data/certs/x.crt: no such file or directory``);
3. a configuration parse error (``configuration error: error parsing ...``);
4. the engine's own error (``Error response from daemon: ...``, podman's ``Error: ...``);
5. the last ``level=error`` message;
6. else the last line that is not a Go stack frame or usage text.

A healthy registry logs ``level=error`` for requests it refuses, so errors
rank below fatal ones. ``podman logs`` (4.3, k8s-file) can drop the newline
between the configuration error and the usage text printed after it
(``... debug]Usage:``): the usage text is put back on its own line first. ``mask`` hides what the registry itself prints that
must not reach a log file (the password of a user it provisions when no
htpasswd exists), on top of every registered secret.
"""

from __future__ import annotations

import json
import re

from ..redact import MASK, redact

LIMIT = 300  # characters of the reason in a one-line message

_LEVEL = re.compile(r'(?:^|\s)level=(?P<level>\w+)\b')
_MSG = re.compile(r'(?:^|\s)msg=(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>\S+))')
_ENGINE = re.compile(r'\b(Error response from daemon: .*|Error: .*)')
_PASSWORD = re.compile(r'(\bpassword=)(?:"(?:[^"\\]|\\.)*"|\S+)|("password"\s*:\s*)"(?:[^"\\]|\\.)*"')
_GLUED_USAGE = re.compile(r"(?<=\S)(?=Usage:)")
_NOISE = re.compile(r"^(\s|goroutine \d+ |Usage:|Flags:|Run '\w+ \w+ --help'|Unable to find image )")


def reason(output: str) -> str | None:
    """The line of ``output`` that says what is wrong (see the module doc), or None if it is empty."""
    ranked: dict[int, str] = {}

    def keep(rank: int, text: str, *, first: bool = False) -> None:
        if not (first and rank in ranked):
            ranked[rank] = text

    fallback = None
    for raw in _GLUED_USAGE.sub("\n", output).splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("panic: "):
            keep(1, line, first=True)
            continue
        level, msg = _level_msg(line)
        if level == "fatal" and msg:
            keep(2, f"fatal: {msg}")
        elif level == "error" and msg:
            keep(5, f"error: {msg}")
        elif line.startswith("configuration error:"):
            keep(3, line, first=True)
        elif engine := _ENGINE.search(line):
            keep(4, engine.group(1))
        if not _NOISE.match(raw) and level is None:
            fallback = line
    if fallback is not None:
        keep(6, fallback)
    if not ranked:
        return None
    return _short(ranked[min(ranked)])


def _level_msg(line: str) -> tuple[str | None, str | None]:
    """(level, msg) of a logrus line, text or JSON formatter; (None, None) for anything else."""
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            return None, None
        if isinstance(data, dict) and "level" in data:
            return str(data["level"]), str(data.get("msg", "")) or None
        return None, None
    level = _LEVEL.search(line)
    if level is None:
        return None, None
    msg = _MSG.search(line)
    if msg is None:
        return level["level"], None
    if msg["quoted"] is None:
        return level["level"], msg["bare"]
    try:
        return level["level"], json.loads(f'"{msg["quoted"]}"')  # Go's %q escapes are JSON's here
    except ValueError:
        return level["level"], msg["quoted"]


def _short(text: str) -> str:
    return text if len(text) <= LIMIT else text[: LIMIT - 3] + "..."


def mask(output: str) -> str:
    """``output`` with every registered secret and the registry's own ``password=`` values masked."""
    return _PASSWORD.sub(lambda m: (m.group(1) or m.group(2)) + (MASK if m.group(1) else f'"{MASK}"'),
                         redact(output))
