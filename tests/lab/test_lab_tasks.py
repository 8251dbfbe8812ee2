"""The thin invoke tasks (inv lab.status / lab.run) against the shared lab."""
from __future__ import annotations

import json

import pytest
from invoke import Context
from invoke.exceptions import Exit

from fabfile.lab import tasks
from tests.conftest import SUBNET

pytestmark = pytest.mark.lab
NET = SUBNET.rsplit(".", 1)[0]  # the lab's /24 (RTLS_LAB_SUBNET), e.g. 10.213.0


def test_status_json(lab, capsys):
    tasks.status(Context(), json_=True, root=str(lab.root))
    hosts = json.loads(capsys.readouterr().out)
    assert [(h["name"], h["role"], h["address"], h["up"]) for h in hosts] == [
        ("registry", "registry", f"{NET}.10", True), ("client1", "client", f"{NET}.11", True),
        ("client2", "client", f"{NET}.12", True), ("client3", "client", f"{NET}.13", True)]


def test_run_prints_output_and_exits_with_the_command_code(lab, capsys):
    with pytest.raises(Exit) as exc:
        tasks.run(Context(), "client2", "hostname; echo oops >&2; exit 3", root=str(lab.root))
    assert exc.value.code == 3
    out, err = capsys.readouterr()
    assert out == "client2\n" and err == "oops\n"
    tasks.run(Context(), "registry", "true", root=str(lab.root))   # exit 0: no Exit raised


def test_lab_errors_are_one_readable_line(lab):
    with pytest.raises(Exit) as exc:
        tasks.run(Context(), "client9", "true", root=str(lab.root))
    assert exc.value.code == 1
    assert str(exc.value.message).startswith("lab: no lab host named 'client9'")
    assert "\n" not in exc.value.message
