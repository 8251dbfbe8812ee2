"""clients.untrust through the fake hosts (fleet level): what a deployed client loses, what it keeps, a rerun."""

from __future__ import annotations

import re

import pytest

from fabfile import deploy as D
from fabfile.errors import InputError
from fabfile.results import Status
from fabfile.session import open_session
from fabfile.untrust import untrust

from fake_hosts import MUTATING, World, write_inventory


def run(world: World, **kw):
    return D.trust_clients(world.s, world.s.pki.load(), world.s.inv.clients, step=untrust, **kw)


def test_untrust_removes_what_trust_installed_then_a_rerun_changes_nothing(world):
    installed = {name: set(c.files) for name, c in world.clients.items()}
    report = run(world)
    assert [(r.status, r.message) for r in report.results.values()] == [
        (Status.CHANGED, f"removed {len(installed[n])} file(s)") for n in ("c1", "c2", "c3")]
    assert all(not c.files for c in world.clients.values())
    again = run(world)
    assert [(r.status, r.message) for r in again.results.values()] == [
        (Status.OK, "nothing of registry-tls installed")] * 3


def test_someone_elses_file_at_our_path_stays_with_a_warning(world):
    ca = next(p for p in world.clients["c2"].files if p.endswith("/ca.crt"))
    world.clients["c2"].files[ca] = b"-----BEGIN CERTIFICATE-----\nnot ours\n"
    report = run(world)
    c2 = report.results[("client", "c2")]
    assert ca in world.clients["c2"].files and c2.facts["kept"] == [ca] and c2.warnings


def test_untrust_dry_run_sends_no_mutating_command(world):
    report = run(world, dry_run=True)
    assert {r.status for r in report.results.values()} == {Status.CHANGED}
    assert [c for c in world.fleet.calls if re.search(MUTATING, c.command)] == []


OS_STORE = "/usr/local/share/ca-certificates"


@pytest.mark.parametrize("step", ["trust", "untrust"])
def test_L12_anchors_of_a_former_registry_name_are_removed_never_another_registrys(tmp_path, step):
    """After a rename of registry.host, the OS-store files of the names in <state_dir>/registry-hosts are ours;
    registry-tls-*.crt of other names (another inventory's registry) are not."""
    w = World(tmp_path, trust="[docker, os]", mode="ca")
    try:
        assert D.deploy_all(w.s, w.s.inv.clients).exit_code == 0
        assert w.s.state.registry_hosts_path.read_text() == "registry.test\n"
        assert w.s.state.former_registry_hosts() == ()
        w.s.state.registry_hosts_path.write_text("old.lab\nregistry.test\n")   # trust was given as old.lab once
        files = w.clients["c1"].files
        former = {f"{OS_STORE}/registry-tls-old.lab.crt", f"{OS_STORE}/registry-tls-old.lab_rotation.crt"}
        others = {f"{OS_STORE}/registry-tls-other.lab.crt", f"{OS_STORE}/registry-tls-old.lab.example.crt"}
        for path in former | others:
            files[path] = b"-----BEGIN CERTIFICATE-----\n"
        report = D.trust_clients(w.s, w.s.pki.load(), w.s.inv.clients, **({"step": untrust} if step == "untrust" else {}))
        c1 = report.results[("client", "c1")]
        assert c1.status == Status.CHANGED and "update-ca-certificates" in "\n".join(c1.changes)
        assert not former & set(files) and others <= set(files)
        assert w.s.state.former_registry_hosts() == ("old.lab",)
    finally:
        w.tls.close()


def test_L12_a_registry_hosts_line_that_is_not_a_host_name_is_refused(tmp_path):
    s = open_session(write_inventory(tmp_path))
    s.state.root.mkdir()
    s.state.registry_hosts_path.write_text("old.lab\n../../etc/x\n")
    with pytest.raises(InputError, match=r"registry-hosts: '\.\./\.\./etc/x' is not a host name; fix or delete"):
        s.state.former_registry_hosts()
