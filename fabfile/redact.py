"""Secrets never reach a console, a log file or an exception message.

Every secret the run handles (sudo password, user passwords, htpasswd hashes,
private-key PEM) is registered here once; ``redact`` masks each of them, and
the logging filter applies it to every record. A ``Secret`` also renders as
``***`` if it is ever formatted by mistake.
"""

from __future__ import annotations

import logging
import threading

MASK = "***"
# Shorter values are not masked: replacing a short word everywhere reveals it by its context
# ("systemctl restart ***" for the password "docker"), and the design never puts a secret in text (review L6).
MIN_MASKED = 8
_lock = threading.Lock()
_secrets: set[str] = set()


class Secret(str):
    """A str whose str()/repr()/format() is masked; use ``.reveal()`` for the value."""

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return MASK

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return MASK


def register(*values: str | bytes | None) -> None:
    """Mask these values (and each line of multi-line ones, e.g. PEM bodies) from now on."""
    with _lock:
        for value in values:
            if not value:
                continue
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str.__str__(value)
            for line in [text, *text.splitlines()]:
                part = line.strip()
                if len(part) >= MIN_MASKED and not part.startswith("-----"):
                    _secrets.add(part)


def redact(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Applied to every handler: the rendered message is redacted before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # filters run before the formatter: render the traceback now, or it is written unmasked
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
