"""clients.untrust through the fake hosts (fleet level): what a deployed client loses, what it keeps, a rerun."""

from __future__ import annotations

import re

from fabfile import deploy as D
from fabfile.results import Status
from fabfile.untrust import untrust

from fake_hosts import MUTATING, World


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
