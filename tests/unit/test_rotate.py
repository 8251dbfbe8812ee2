"""Rotation phases through the fake hosts: each phase from each recorded state, resume, stop, abort, dry run."""

from __future__ import annotations

import pytest

from fabfile import deploy as D
from fabfile import rotate as R
from fabfile.errors import InputError, UnreachableError
from fabfile.program import command
from fabfile.results import Status

from fake_hosts import World


def installed(world: World, client: str = "c1") -> list[bytes]:
    """The anchors a client has in its certs.d folder for the registry, ca.crt first."""
    files = world.clients[client].files
    return [files[p] for p in sorted(files, key=lambda p: not p.endswith("/ca.crt")) if p.endswith(".crt")]


def served(world: World) -> str | None:
    from fabfile import verify

    return verify.probe("127.0.0.1", world.tls.port, "registry.test", None).fingerprint


def phases(report) -> list[str]:
    return [n.split(":")[0] for n in report.notes]


def test_a_full_rotation_runs_every_phase_in_order_without_a_window_of_distrust(world):
    old = world.s.pki.load()
    report = R.rotate_all(world.s, world.s.inv.clients)
    new = world.s.pki.load()
    assert new.fingerprint != old.fingerprint
    assert phases(report) == ["phase generated", "phase trusted", "phase switched", "rotation complete"]
    assert report.notes[2].startswith("phase switched: the registry serves the new certificate (container re-created")
    assert served(world) == new.fingerprint
    assert installed(world) == [new.anchor_pem]          # the old anchor is gone at the end
    assert world.s.state.rotation() is None and not (world.s.pki.root / "next").exists()
    # the switch came after every client trusted old + new: the apply of phase 2 wrote the new anchor beside ca.crt
    registry_switch = next(i for i, c in enumerate(world.fleet.calls) if " run -d " in c.command)
    trusted_before = {c.host for c in world.fleet.calls[:registry_switch] if "base64 -d" in c.command}
    assert trusted_before == {"c1", "c2", "c3"}


def start_at(world: World, phase: str) -> None:
    rotation = R.start(world.s)
    if phase != "generated":
        report = D.trust_clients(world.s, world.s.pki.load(), world.s.inv.clients)   # phase 2 done
        assert report.exit_code == 0
        rotation.phase = "trusted"
    if phase == "switched":
        material = R.promote(world.s, rotation)
        assert D.deploy_registry(world.s, material).exit_code == 0
        rotation.phase = "switched"
    R.save(world.s, rotation)
    world.fleet.calls.clear()


@pytest.mark.parametrize("phase, expected", [
    ("generated", ["phase trusted", "phase switched", "rotation complete"]),
    ("trusted", ["phase switched", "rotation complete"]),
    ("switched", ["rotation complete"]),
])
def test_a_rotation_resumes_from_the_recorded_phase(world, phase, expected):
    start_at(world, phase)
    new_fp = world.s.state.rotation().new_fingerprint
    report = R.rotate_all(world.s, world.s.inv.clients)
    assert phases(report) == expected
    assert served(world) == new_fp and world.s.state.rotation() is None
    switched = bool(world.fleet.sent(" run -d "))
    assert switched == (phase != "switched")     # a switched registry is not switched again


def test_until_trusted_stops_before_the_switch_and_the_next_run_goes_on(world):
    old = served(world)
    first = R.rotate_all(world.s, world.s.inv.clients, until="trusted")
    assert phases(first) == ["phase generated", "phase trusted"]
    assert served(world) == old and world.s.state.rotation().phase == "trusted"
    assert len(installed(world)) == 2                    # old and new, side by side
    second = R.rotate_all(world.s, world.s.inv.clients)
    assert phases(second) == ["phase switched", "rotation complete"]


def test_an_unreachable_client_blocks_the_switch(world):
    world.fleet.host("c2").on("#connect", UnreachableError("c2", "SSH connection to 192.0.2.22:22 failed"),
                              first=True)
    old = served(world)
    report = R.rotate_all(world.s, world.s.inv.clients)
    assert report.notes[-1].startswith("not switching: 1 client(s) do not trust the new certificate yet (c2)")
    assert served(world) == old and world.s.state.rotation().phase == "generated"
    assert world.fleet.sent(" run -d ") == []


def test_force_switches_even_with_an_unreachable_client(world):
    world.fleet.host("c2").on("#connect", UnreachableError("c2", "SSH connection to 192.0.2.22:22 failed"),
                              first=True)
    report = R.rotate_all(world.s, world.s.inv.clients, force=True)
    assert "phase switched" in phases(report)
    assert report.results[("client", "c2")].status == Status.UNREACHABLE


def test_a_failed_switch_keeps_the_old_certificate_everywhere(world):
    old = world.s.pki.load()
    world.registry.crash = True
    report = R.rotate_all(world.s, world.s.inv.clients)
    assert report.notes[-1] == ("switch failed: the registry keeps the old certificate; "
                                f"fix the cause and run {command('rotate')} again")
    assert world.s.pki.load().fingerprint == old.fingerprint and served(world) == old.fingerprint
    assert world.s.state.rotation().phase == "trusted"


def test_abort_before_the_switch_drops_the_new_anchor_on_clients(world):
    old = world.s.pki.load()
    R.rotate_all(world.s, world.s.inv.clients, until="trusted")
    report = R.rotate_all(world.s, world.s.inv.clients, abort=True)
    assert report.notes == ["rotation aborted before the switch: clients drop the new certificate"]
    assert installed(world) == [old.anchor_pem] and world.s.state.rotation() is None


def test_abort_after_the_switch_rotates_back(world):
    old = world.s.pki.load()
    R.rotate_all(world.s, world.s.inv.clients, until="switched")
    report = R.rotate_all(world.s, world.s.inv.clients, abort=True)
    assert report.notes[0] == "rotation aborted after the switch: rotating back to the previous certificate"
    assert phases(report)[-1] == "rotation complete"
    assert served(world) == old.fingerprint and installed(world) == [old.anchor_pem]


def test_L12_the_old_key_stays_in_pki_previous_only_while_abort_may_need_it(world):
    old = world.s.pki.load()
    R.rotate_all(world.s, world.s.inv.clients, until="switched")
    previous, nxt = world.s.pki.root / "previous", world.s.pki.root / "next"
    assert (previous / "registry.key").read_bytes() == old.key_pem   # switched: --abort rotates back to it
    R.rotate_all(world.s, world.s.inv.clients)
    assert not previous.exists() and not nxt.exists() and world.s.state.rotation() is None


def test_abort_without_a_rotation_is_invalid_input(world):
    with pytest.raises(InputError, match="no rotation in progress to abort"):
        R.rotate_all(world.s, world.s.inv.clients, abort=True)


@pytest.mark.parametrize("resume", [False, True])
def test_dry_run_says_what_it_would_do_and_sends_nothing(world, resume):
    if resume:
        start_at(world, "generated")
    report = R.rotate_all(world.s, world.s.inv.clients, dry_run=True)
    assert report.notes == (["would resume the rotation from phase generated"] if resume else [
        (f"would rotate the certificate ({R.days_left(world.s)} days left): "
         "generate, trust old+new on clients, switch the registry, drop the old")])
    assert world.fleet.calls == [] and (world.s.state.rotation() is not None) == resume


def test_not_expiring_is_nothing_to_do(world):
    report = R.rotate_all(world.s, world.s.inv.clients, if_expiring_within=30)
    assert report.notes == [f"certificate valid {R.days_left(world.s)} more days (more than 30): nothing to do"]
    assert world.fleet.calls == [] and world.s.state.rotation() is None


def test_ca_mode_rotation_touches_only_the_registry(tmp_path):
    w = World(tmp_path, mode="ca")
    try:
        assert D.deploy_all(w.s, w.s.inv.clients).exit_code == 0
        ca = w.s.pki.load().anchor_pem
        w.fleet.calls.clear()
        report = R.rotate_all(w.s, w.s.inv.clients)
        assert phases(report) == ["phase generated", "phase switched", "rotation complete"]
        assert {c.host for c in w.fleet.calls} == {"registry.test"}
        assert w.s.pki.load().anchor_pem == ca and served(w) == w.s.pki.load().fingerprint
    finally:
        w.tls.close()


def test_F24_a_run_killed_inside_promote_is_finished_by_the_next_run(world):
    """SIGKILL between the key and the certificate copy of the switch: pki/ holds the new key beside the
    old certificate. The next run must not stop at 'key does not match' but finish the rotation."""
    start_at(world, "trusted")
    new_fp = world.s.state.rotation().new_fingerprint
    nxt = world.s.pki.root / "next"
    (world.s.pki.root / "previous").mkdir(exist_ok=True)
    for name in ("registry.key", "registry.crt", "ca.key", "ca.crt"):   # promote's first copy: old -> previous/
        if (world.s.pki.root / name).exists():
            (world.s.pki.root / "previous" / name).write_bytes((world.s.pki.root / name).read_bytes())
    (world.s.pki.root / "registry.key").write_bytes((nxt / "registry.key").read_bytes())  # killed here
    with pytest.raises(InputError, match="does not match"):
        world.s.pki.load()
    report = R.rotate_all(world.s, world.s.inv.clients)
    assert phases(report) == ["phase switched", "rotation complete"]
    assert served(world) == new_fp and world.s.pki.load().fingerprint == new_fp
