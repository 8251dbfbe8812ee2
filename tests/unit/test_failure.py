"""The one line an operator reads when a registry change failed."""

from __future__ import annotations

from fabfile.registry.failure import Failure, Rollback, facts, message

PANIC = "panic: StorageDriver not registered: bogus-driver"
KEPT = "registry-failed-20261202T003605Z"


def test_failed_start_rolled_back_and_serving_again():
    line = message(Failure("did not start", PANIC, KEPT), Rollback(restored=True, seconds=0.64))
    assert line == (f"new registry container did not start: {PANIC} (kept, stopped, as {KEPT}: `docker logs {KEPT}`); "
                    "rolled back; the previous registry serves again (after 0.6 s)")


def test_previous_registry_that_does_not_come_back_is_reported_down_with_its_own_reason():
    line = message(Failure("did not start", PANIC, KEPT),
                   Rollback(restored=False, seconds=30.2, problem="cannot connect to 10.0.0.1:443: Connection refused",
                            reason="fatal: open /data/certs/registry_auth.crt: no such file or directory"), "podman")
    assert f"`podman logs {KEPT}`" in line
    assert line.endswith("rolled back, but the previous registry does not come back (30 s): cannot connect to "
                         "10.0.0.1:443: Connection refused; its own output: fatal: open "
                         "/data/certs/registry_auth.crt: no such file or directory")
    assert "serves again" not in line


def test_no_container_kept_and_no_previous_registry():
    line = message(Failure("could not be run", "Error response from daemon: port is already allocated"),
                   Rollback(restored=False, seconds=0.1, had_previous=False))
    assert line == ("new registry container could not be run: Error response from daemon: port is already allocated; "
                    "rolled back; there was no registry container before this run, so none serves now")


def test_facts_for_json():
    data = facts(Failure("is not healthy", "serves certificate A, expected B", KEPT), Rollback(True, 1.23456))
    assert data["failure"] == {"what": "is not healthy", "reason": "serves certificate A, expected B", "kept": KEPT}
    assert data["rollback"]["restored"] is True and data["rollback"]["seconds"] == 1.23
