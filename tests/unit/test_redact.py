"""Secrets never reach output: registered values and PEM lines are masked, in text and in logs."""

from __future__ import annotations

import io
import logging
import secrets

import pytest

from fabfile import certs
from fabfile.redact import MASK, RedactingFilter, Secret, redact, register


def token() -> str:
    return "s3cr3t-" + secrets.token_hex(8)


def test_registered_secret_is_masked():
    value = token()
    assert redact(f"sudo -S <<< {value}!") == f"sudo -S <<< {value}!"  # not yet registered
    register(value)
    assert redact(f"sudo -S <<< {value}!") == "sudo -S <<< ***!"
    assert redact(f"{value}{value}") == MASK * 2


def test_bytes_secrets_and_short_or_empty_values():
    value = token()
    register(value.encode(), None, b"", "abc")  # bytes accepted; empty and < 4 chars ignored (would mask everything)
    assert redact(value) == MASK
    assert redact("abc abc") == "abc abc"


def test_each_line_of_a_pem_body_is_masked(key_cache):
    pem = certs.private_key_pem(key_cache("redact-me")).decode()
    register(pem)
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    masked = redact(pem)
    assert masked.splitlines() == ["-----BEGIN PRIVATE KEY-----", *[MASK] * len(body), "-----END PRIVATE KEY-----"]
    for line in body:  # even a single line quoted in an error message
        assert redact(f"error near {line} in file") == "error near *** in file"


def test_longest_secret_wins():
    short = token()
    longer = short + "-and-more"
    register(short, longer)
    assert redact(longer) == MASK


def test_secret_formats_as_mask():
    value = token()
    s = Secret(value)
    assert str(s) == repr(s) == f"{s}" == f"{s}" == f"{s}" == f"{s:>10}" == MASK
    assert repr([s]) == "[***]"
    assert s.reveal() == value and isinstance(s.reveal(), str) and type(s.reveal()) is str
    assert s == value  # still a str for comparisons and hashing


@pytest.fixture
def logger_stream():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    log = logging.getLogger(f"registry_tls.test.{secrets.token_hex(4)}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    yield log, stream
    log.removeHandler(handler)


def test_logging_filter_masks_messages_and_args(logger_stream):
    log, stream = logger_stream
    value = token()
    register(value)
    log.info("run: echo %s | sudo -S true", value)
    log.warning(f"inline {value}")  # noqa: G004  (a secret already inside the message must be masked too)
    out = stream.getvalue()
    assert value not in out
    assert "INFO run: echo *** | sudo -S true" in out and "WARNING inline ***" in out


def test_logging_filter_masks_tracebacks(logger_stream):
    """fleet.guarded logs unexpected errors with log.exception: the traceback must be masked too."""
    log, stream = logger_stream
    value = token()
    register(value)
    try:
        raise RuntimeError(f"command failed: curl -u admin:{value}")
    except RuntimeError:
        log.exception("host1: unexpected error")
    out = stream.getvalue()
    assert "Traceback" in out and "RuntimeError: command failed: curl -u admin:***" in out
    assert value not in out


def test_logging_filter_masks_stack_info(logger_stream):
    log, stream = logger_stream
    register("stack-secret-literal-7f3a")
    log.info("here", stack_info=True)  # stack-secret-literal-7f3a: the source line is part of the stack text
    out = stream.getvalue()
    assert "Stack (most recent call last)" in out and "# ***: the source line" in out
    assert "stack-secret-literal-7f3a" not in out
