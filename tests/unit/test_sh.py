"""fabfile/sh.py: every interpolated value is one shell word; exit codes are shared with the scripts."""

from __future__ import annotations

import subprocess

import pytest

from fabfile import clients as C
from fabfile import registry as R
from fabfile.sh import Exit, Raw, cmd, join, q, words

NASTY = ["plain", "with space", "it's", '"dq"', "$(touch /tmp/x)", "a;b", "*", "", "-n", "back\\slash", "new\nline"]


@pytest.mark.parametrize("value", NASTY)
def test_cmd_passes_each_value_as_exactly_one_word(value):
    out = subprocess.run(["sh", "-c", cmd("printf '%s\\0' {} {}", value, value)], capture_output=True, check=True)
    assert out.stdout.split(b"\0")[:-1] == [value.encode(), value.encode()]


def test_words_and_join_quote_every_item():
    out = subprocess.run(["sh", "-c", "printf '%s\\0' " + words(NASTY)], capture_output=True, check=True)
    assert out.stdout.split(b"\0")[:-1] == [v.encode() for v in NASTY]
    assert join(["docker", "run", "a b"]) == "docker run 'a b'"


def test_raw_is_shell_by_design_and_says_so():
    assert q(Raw("systemctl restart docker")) == "systemctl restart docker"
    assert q("systemctl restart docker") == "'systemctl restart docker'"


def test_braces_in_a_template_are_shell_braces():
    assert cmd("{} || {{ echo no; }}", "a b") == "'a b' || { echo no; }"


def test_scripts_exit_with_the_codes_their_readers_know():
    lock = R.lock_script("/d", "me 1 2", take_over=False)
    assert f"exit {Exit.LOCKED:d};" in lock and Exit.LOCKED == 7
    restart = C.restart_script("systemctl restart docker", force=False)
    for code in (Exit.RESTART_REFUSED, Exit.RESTART_INVALID, Exit.RESTART_FAILED, Exit.RESTART_TIMEOUT):
        assert f"exit {code:d}" in restart and code in C.RESTART_ERRORS
