"""A plan is an ordered tuple of steps: nothing to do, the change list, dry run, apply and rollback read it.

The registry's step tables are in test_plans.py (test_registry_plan), its apply and rollback in test_deploy.py."""

from __future__ import annotations

import pytest

from fabfile import clients as C
from fabfile import steps as S
from fabfile.steps import Kind, Step, Upload

from _support import make_client


def step(kind: Kind, what: str, undo: str | None = None) -> Step:
    return Step(kind, what, undo=undo)


def test_the_change_list_is_each_steps_what_in_order():
    steps = (step(Kind.WRITE_FILE, "write a"), step(Kind.REMOVE_FILE, "remove b"))
    assert S.describe(steps) == ["write a", "remove b"] and S.describe(()) == []
    assert S.find(steps, Kind.REMOVE_FILE) is steps[1] and S.find(steps, Kind.RESTART_DOCKERD) is None


@pytest.mark.parametrize(("undos", "script"), [
    (("a", "b", "c"), "c\nb\na"),          # last applied, first undone
    (("a", None, "c"), "c\na"),            # a step with nothing to undo (a new folder) is skipped
    ((None, None), "true"),                # nothing to undo: a script that does nothing
    ((), "true"),
])
def test_undo_runs_the_applied_steps_undo_last_first(undos, script):
    assert S.undo_script(step(Kind.WRITE_FILE, f"s{i}", undo=u) for i, u in enumerate(undos)) == script


def test_steps_are_frozen_and_file_contents_stay_out_of_reprs():
    s = Step(Kind.WRITE_FILE, "write /k", files=(Upload("/k", b"SECRET-KEY", 0o600),))
    with pytest.raises(AttributeError):
        s.what = "other"   # type: ignore[misc]
    assert "SECRET-KEY" not in repr(s) and s.files[0].sha256 == Upload("/x", b"SECRET-KEY").sha256


def test_client_file_steps_are_batched_into_one_script_in_their_order():
    writes = (C.WantFile("/etc/a/ca.crt", b"A", "docker"), C.WantFile("/etc/b/ca.crt", b"B", "docker"))
    client = make_client(trust=("os",), restart_command="systemctl restart docker")
    todo = C.ClientPlan((*C.file_steps(writes, ("/etc/a/old.crt",), "update-ca-certificates"),
                         C.restart_dockerd(client, "the OS trust store changed", force=False)))
    assert todo.kinds == (Kind.WRITE_FILE, Kind.WRITE_FILE, Kind.REMOVE_FILE, Kind.REFRESH_STORE, Kind.RESTART_DOCKERD)
    assert todo.describe() == ["write /etc/a/ca.crt", "write /etc/b/ca.crt", "remove /etc/a/old.crt",
                               "run update-ca-certificates", "restart dockerd (the OS trust store changed)"]
    script = C.apply_script(todo)
    body = [line for line in script if line in {s.script for s in todo.steps}]
    assert body == [s.script for s in todo.file_steps]            # each file step once, in order
    assert todo.step(Kind.RESTART_DOCKERD).script not in script   # the restart goes through the gate
    assert [f.path for f in todo.writes] == ["/etc/a/ca.crt", "/etc/b/ca.crt"] and todo.removes == ("/etc/a/old.crt",)
    assert "mkdir -p /etc/a /etc/b" in script


def test_the_restart_step_carries_the_inventorys_command_and_force():
    client = make_client(restart_command="service docker restart")
    forced = C.restart_dockerd(client, "restart: always", force=True)
    assert forced.target == "service docker restart" and forced.why == "restart: always"
    assert forced.script == C.restart_script("service docker restart", force=True)
    assert C.restart_dockerd(client, "x", force=False).script == C.restart_script("service docker restart", force=False)


def test_an_unchanged_client_has_no_steps():
    assert C.ClientPlan().empty and C.ClientPlan(warnings=("w",)).empty
    assert not C.ClientPlan(C.file_steps(removes=("/x",))).empty
