"""Every printer gives values back literally, on a terminal and on a pipe.

Values full of rich markup (``[bold]``, ``[/]``), emoji codes (``:CD:``, ``:smile:``), control characters and
long fingerprints go through each printer; the output must contain them exactly (control characters as
visible escapes), never folded, and on a pipe one record per line with no colour.
"""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from rich.console import Console

from fabfile import report
from fabfile.certs import CertInfo
from fabfile.results import HostResult, Report, Status
from fabfile.status import FleetStatus, Level

FINGERPRINT = ":".join(["CD", "AB", "EF", "01"] * 8)  # 32 bytes, with :CD: and :AB: inside
HOSTILE = [
    "[bold]bold[/bold]", "a [/] b", "[/", "[red]x", ":CD: :smile: :thumbs_up:", FINGERPRINT,
    "C:\\path\\[x]", "x" * 300,
]
CONTROL = {"\x1b[2J": "\\x1b[2J", "bell\x07": "bell\\x07", "tab\there": "tab\\there", "cr\rx": "cr\\rx",
           "rtl\u202eevil": "rtl\\u202eevil", "nl\nx": "nl\\nx", "c1\x9bx": "c1\\x9bx",
           "zw\u200bsp": "zw\\u200bsp", "rlm\u200fx": "rlm\\u200fx", "bom\ufeffx": "bom\\ufeffx",
           "alm\u061cx": "alm\\u061cx", "tag\U000e0041x": "tag\\U000e0041x", "sep\u2028x": "sep\\u2028x"}
SGR = re.compile(r"\x1b\[[0-9;]*m")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["terminal", "pipe"])
def screen(request, monkeypatch):
    """report.out/err redirected to a terminal (colour, narrow) or to a pipe; returns a reader."""
    out, err = io.StringIO(), io.StringIO()
    terminal = request.param == "terminal"
    for name, buffer in (("out", out), ("err", err)):
        monkeypatch.setattr(report, name, Console(file=buffer, force_terminal=terminal, width=60 if terminal else 80,
                                                  color_system="truecolor" if terminal else None, markup=False,
                                                  emoji=False, highlight=False, soft_wrap=True))

    def read() -> str:
        text = out.getvalue() + err.getvalue()
        if terminal:
            text = SGR.sub("", text)
        assert "\x1b" not in text  # only colour codes, and on a pipe none at all
        return text

    read.terminal = terminal
    return read


def values() -> list[tuple[str, str]]:
    """(input, what must be printed)."""
    return [(v, v) for v in HOSTILE] + list(CONTROL.items())


def _report() -> Report:
    rep = Report()
    for i, (value, _) in enumerate(values()):
        rep.add(HostResult(host=f"h{i}-{value}", status=Status.FAILED, message=f"m:{value}",
                           changes=[f"write {value}"], warnings=[f"w:{value}"]))
    rep.notes.append(f"note {FINGERPRINT}")
    return rep


def _whole(text: str, expected: str, screen) -> None:
    assert expected in text, (expected, text)
    if not screen.terminal:  # one record per line: the value is on a single line
        assert any(expected in line for line in text.splitlines())


def test_line_note_error(screen):
    for value, _ in values():
        report.line(value)
        report.note(value)
        report.error(value)
    text = screen()
    for _, expected in values():
        assert text.count(expected) >= 3, expected
    assert text.count("error: ") == len(values())


def test_summary_table(screen, monkeypatch):
    if screen.terminal:  # a table needs room: fold only happens when the terminal is narrower than a value
        monkeypatch.setattr(report.out, "width", 2000)
    report.summary(_report(), "deploy [bold]")
    text = screen()
    for value, expected in values():
        for form in (f"h{values().index((value, expected))}-{expected}", f"m:{expected}", f"w:{expected}",
                     f"write {expected}"):
            _whole(text, form, screen)
    _whole(text, f"note {FINGERPRINT}", screen)
    if not screen.terminal:
        rows = [line for line in text.splitlines() if re.match(r"h\d+-", line)]
        assert len(rows) == len(values()) and all(line.count("\t") == 4 for line in rows)


def test_cert_details_never_folds(screen):
    info = CertInfo(subject="CN=[bold]x[/] :CD:", issuer="CN=a [/ b", sans=("DNS:[x]", "DNS::smile:"),
                    not_before=NOW, not_after=NOW + dt.timedelta(days=10), serial=0xABCDEF, sha256=FINGERPRINT,
                    key_type="ecdsa-p256", is_ca=False, signature="sha256")
    report.cert_details(info, NOW, "[title] :CD:")
    text = screen()
    for expected in ("CN=[bold]x[/] :CD:", "CN=a [/ b", "DNS:[x], DNS::smile:", FINGERPRINT, "[title] :CD:"):
        _whole(text, expected, screen)
        assert any(expected in line for line in text.splitlines())  # even on a 60-column terminal


def test_status_view(screen, monkeypatch):
    if screen.terminal:
        monkeypatch.setattr(report.out, "width", 2000)
    cert = {"subject": "CN=:CD:[b]", "sans": ["DNS:[/]"], "not_after": "2027", "days_left": 3, "sha256": FINGERPRINT,
            "anchor_sha256": FINGERPRINT, "anchor": "its CA"}
    report.status_view(FleetStatus(Level.CRITICAL, cert, _report(), reasons=[f"r:{v}" for v, _ in values()]))
    text = screen()
    assert any(FINGERPRINT in line for line in text.splitlines())
    for expected in ("CN=:CD:[b]", "DNS:[/]", *(f"r:{e}" for _, e in values()), *(f"m:{e}" for _, e in values())):
        _whole(text, expected, screen)
    assert "status: CRITICAL" in text


def test_progress_is_silent_off_a_terminal(screen):
    with report.LiveProgress("[bold]deploy :CD:", 2) as progress:
        progress.started("[/]")
        progress.finished(HostResult(host="[/]"))
    if not screen.terminal:
        assert screen() == ""


def test_literal_escapes_controls_and_keeps_everything_else():
    for value, expected in values():
        assert report.literal(value) == expected
    assert report.literal("é ü 漢字 ✓") == "é ü 漢字 ✓"


def test_json_escapes_controls(capsys):
    report.print_json({"v": "\x1b[2J:CD:[b]"})
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\u001b[2J:CD:[b]" in out


def test_verbose_log_lines_on_the_terminal_are_literal(tmp_path, capsys):
    import logging

    from fabfile import logs

    logs.setup(tmp_path, verbose=True, command="test")
    logging.getLogger("registry_tls.test").info("remote said: %s", "\x1b[2Jgone\nnext :CD: [b]")
    err = capsys.readouterr().err
    assert "remote said: \\x1b[2Jgone\\nnext :CD: [b]" in err and "\x1b" not in err
