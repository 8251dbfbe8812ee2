"""clients.untrust as data: what is ours (by name, or by exact content), what stays, the OS store refresh
and restart rule of clients.trust, the buildkitd.toml block, folders; the script run on a folder."""

from __future__ import annotations

import base64
import os
import subprocess

from fabfile import clients as C
from fabfile import facts as F
from fabfile import untrust as U
from fabfile.steps import Kind

from _support import file_line, make_client, make_registry


def refresh(todo: U.UntrustPlan) -> str | None:
    step = todo.steps.step(Kind.REFRESH_STORE)
    return step.target if step else None


def restart(todo: U.UntrustPlan) -> str | None:
    """Why dockerd restarts, or None."""
    step = todo.steps.step(Kind.RESTART_DOCKERD)
    return step.why if step else None


CURRENT = C.Anchor("current", b"-----BEGIN CERTIFICATE-----\ncurrent\n-----END CERTIFICATE-----\n")
ROTATION = C.Anchor("rotation", b"-----BEGIN CERTIFICATE-----\nnext\n-----END CERTIFICATE-----\n")
DEB_ANCHOR = "/usr/local/share/ca-certificates/registry-tls-reg.example.crt"
DOCKER = "/etc/docker/certs.d/reg.example"
DSTART = 1_700_000_500


def probe(client, reg, anchors, installed: dict[str, bytes], *, extra=(), buildkit: bytes | None = None,
          dockerd=True) -> F.ClientFacts:
    """What facts.client_script reports on a Debian host holding ``installed`` (as untrust probes it)."""
    paths = C.probe_paths(U.every_target(client), reg, anchors)
    lines = ["OS debian"] + [file_line(p, installed[p]) if p in installed else f"M {p}" for p in paths]
    lines += [f"X {x}" for x in extra]
    if buildkit is not None:
        lines.append(f"B {base64.b64encode(buildkit).decode()}")
    if dockerd:
        lines.append(f"DSTART {DSTART}")
    return F.parse_client("\n".join(lines) + "\n", paths)


def trusted(client, reg, anchors) -> dict[str, bytes]:
    return {f.path: f.content for f in C.desired_files(client, reg, anchors, "debian")}


def test_removes_every_file_trust_wrote_on_every_target_and_refreshes_and_restarts():
    client, reg = make_client(trust=("docker", "containerd", "os")), make_registry()
    installed = trusted(client, reg, (CURRENT, ROTATION))
    todo = U.plan(client, reg, (CURRENT, ROTATION), probe(client, reg, (CURRENT, ROTATION), installed))
    assert sorted(todo.steps.removes) == sorted(installed)
    assert todo.kept == () and todo.steps.writes == ()
    assert refresh(todo) == "update-ca-certificates"
    assert restart(todo) == "the OS trust store changed"
    assert set(todo.folders) == {DOCKER, f"{DOCKER}:443", "/etc/containerd/certs.d/reg.example",
                                 "/etc/containerd/certs.d/reg.example:443"}


def test_a_target_no_longer_in_the_inventory_is_cleaned_too():
    reg = make_registry()
    installed = trusted(make_client(trust=("podman",)), reg, (CURRENT,))
    todo = U.plan(make_client(trust=("docker",)), reg, (CURRENT,), probe(make_client(), reg, (CURRENT,), installed))
    assert sorted(todo.steps.removes) == sorted(installed) and all("/containers/" in p for p in installed)


def test_someone_elses_ca_crt_stays_with_a_warning_and_docker_only_needs_no_restart():
    client, reg = make_client(trust=("docker",)), make_registry()
    installed = {f"{DOCKER}/ca.crt": b"a CA someone else put here\n",
                 f"{DOCKER}:443/ca.crt": CURRENT.pem,
                 f"{DOCKER}:443/registry-tls-rotation.crt": b"an older next anchor of ours\n"}
    todo = U.plan(client, reg, (CURRENT, ROTATION), probe(client, reg, (CURRENT, ROTATION), installed))
    assert todo.kept == (f"{DOCKER}/ca.crt",)
    assert sorted(todo.steps.removes) == [f"{DOCKER}:443/ca.crt", f"{DOCKER}:443/registry-tls-rotation.crt"]
    assert "someone else's" in todo.steps.warnings[0]
    assert refresh(todo) is None and not restart(todo)  # certs.d is read on every pull


def test_stale_os_store_anchor_of_ours_is_removed_by_name():
    client, reg = make_client(trust=("os",), restart="never"), make_registry()
    stale = "/usr/local/share/ca-certificates/registry-tls-reg.example_old.crt"
    todo = U.plan(client, reg, (CURRENT,), probe(client, reg, (CURRENT,), {DEB_ANCHOR: b"any content"}, extra=(stale,)))
    assert sorted(todo.steps.removes) == [DEB_ANCHOR, stale] and todo.folders == ()
    assert refresh(todo) == "update-ca-certificates" and not restart(todo)
    assert "restart: never" in todo.steps.warnings[0]


def test_nothing_installed_is_an_empty_plan_idempotent():
    client, reg = make_client(trust=("docker", "os")), make_registry()
    todo = U.plan(client, reg, (CURRENT,), probe(client, reg, (CURRENT,), {}))
    assert todo.steps.empty and todo.describe() == [] and todo.steps.warnings == ()


def test_buildkit_block_is_cut_out_and_a_file_holding_only_it_is_removed():
    client, reg = make_client(trust=("buildkit",)), make_registry()
    ours = C.buildkit_toml(None, reg, (CURRENT,))
    only = U.plan(client, reg, (CURRENT,), probe(client, reg, (CURRENT,), {}, buildkit=ours))
    assert only.steps.removes == (C.BUILDKIT_TOML,) and only.steps.writes == ()
    mixed = C.buildkit_toml(b"debug = true\n", reg, (CURRENT,))
    todo = U.plan(client, reg, (CURRENT,), probe(client, reg, (CURRENT,), {}, buildkit=mixed))
    assert [(f.path, f.content) for f in todo.steps.writes] == [(C.BUILDKIT_TOML, b"debug = true\n")]
    foreign = U.plan(client, reg, (CURRENT,), probe(client, reg, (CURRENT,), {}, buildkit=b"debug = true\n"))
    assert foreign.steps.empty


def test_dry_run_description_names_each_action():
    client, reg = make_client(trust=("docker", "os")), make_registry()
    todo = U.plan(client, reg, (CURRENT,), probe(client, reg, (CURRENT,), {DEB_ANCHOR: CURRENT.pem,
                                                                            f"{DOCKER}/ca.crt": CURRENT.pem}))
    assert todo.describe() == [f"remove {DOCKER}/ca.crt", f"remove {DEB_ANCHOR}", "run update-ca-certificates",
                               "restart dockerd (the OS trust store changed)", f"remove folder {DOCKER} if empty"]


def test_script_removes_ours_keeps_a_folder_with_other_files(tmp_path):
    emptied, shared = tmp_path / "certs.d/a", tmp_path / "certs.d/b"
    for folder in (emptied, shared):
        folder.mkdir(parents=True)
        (folder / "ca.crt").write_bytes(CURRENT.pem)
    (shared / "client.cert").write_text("mTLS, not ours\n")
    todo = U.UntrustPlan(steps=C.ClientPlan(C.file_steps(removes=(str(emptied / "ca.crt"), str(shared / "ca.crt")))),
                         folders=(str(emptied), str(shared)))
    proc = subprocess.run(["bash", "-c", U.script(todo)], capture_output=True, text=True, env=dict(os.environ), check=False)
    assert proc.returncode == 0, proc.stderr
    assert not emptied.exists() and sorted(p.name for p in shared.iterdir()) == ["client.cert"]


# --------------------------------------------------------------------------- orchestration (fake transport)


def test_untrust_through_the_fake_transport_removes_on_one_host_nothing_on_the_other(tmp_path):
    from fabfile import deploy as D
    from fabfile.results import Status
    from fabfile.session import open_session

    from fake_hosts import MUTATING, write_inventory
    from fake_transport import FakeFleet

    fleet = FakeFleet()
    s = open_session(write_inventory(tmp_path, 2, trust="[docker]"))
    s.opener = fleet.opener
    material, _ = D.certificate(s)
    c1 = s.inv.clients[0]
    installed = {f.path: f.content for f in C.desired_files(c1, s.inv.registry, s.anchors(material), "debian")}
    fleet.host("c1").on(r"echo \"TIME", "OS debian\n" + "".join(file_line(p, b) + "\n" for p, b in installed.items()))
    fleet.host("c2").on(r"echo \"TIME", "OS debian\n")
    report = D.trust_clients(s, material, s.inv.clients, step=U.untrust)
    assert {r.host: r.status for r in report.results.values()} == {"c1": Status.CHANGED, "c2": Status.OK}
    (script,) = [c for c in fleet.calls if c.host == "c1" and c.sudo]
    assert all(f"rm -f {p}" in script.command for p in installed) and "rmdir" in script.command
    assert [c for c in fleet.calls if c.host == "c2" and c.sudo] == [] and fleet.sent(MUTATING, "c2") == []
    assert not any(r.restarted for r in report.results.values())  # certs.d only: no dockerd restart
