"""Orchestration through the fake transport (tests/unit/fake_transport.py): what is sent, in which
order, to which host, and what each host's result says. No SSH, no root, no network."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabfile import deploy as D
from fabfile import verify as V
from fabfile.errors import SudoError, UnreachableError, WrongSudoPassword
from fabfile.pki import Pki
from fabfile.results import Status
from fabfile.session import Session, open_session

from fake_hosts import MUTATING, World, write_inventory
from fake_transport import FakeFleet


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


def session_for(tmp_path: Path, fleet: FakeFleet, *, sudo_password: str | None = None, clients: int = 3,
                trust: str = "[docker]") -> Session:
    s = open_session(write_inventory(tmp_path, clients, trust=trust), sudo_password=sudo_password)
    s.opener = fleet.opener
    return s


def client_probe(os_id: str = "debian") -> str:
    """A client that has nothing installed yet (TIME omitted: no clock check)."""
    return f"OS {os_id} \nDSTART 1700000000\n"


# --------------------------------------------------------------------------- sessions and the seam


def test_default_progress_works_in_a_fan_out(tmp_path, fleet):
    """Review 8.1: Session's default progress was not a context manager, so any caller other than
    `inv` (which always passes a LiveProgress) crashed in trust_clients/survey."""
    s = session_for(tmp_path, fleet, clients=2)
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.host for r in report.results.values()] == ["c1", "c2"]


def test_remotes_are_opened_through_the_session_only(tmp_path, fleet):
    s = session_for(tmp_path, fleet, clients=2)
    material, _ = D.certificate(s)
    D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert {c.host for c in fleet.calls} == {"c1", "c2"}
    assert all(fleet.hosts[h].connects == 1 for h in ("c1", "c2"))


# --------------------------------------------------------------------------- clients


def test_dry_run_sends_no_mutating_command_and_lists_the_changes(tmp_path, fleet):
    s = session_for(tmp_path, fleet)
    for name in ("c1", "c2", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.status for r in report.results.values()] == [Status.CHANGED] * 3
    assert all(line.startswith("would write /etc/docker/certs.d/") for r in report.results.values()
               for line in r.changes)
    assert fleet.sent(MUTATING) == []
    assert [c.sudo for c in fleet.calls] == [False] * 3   # the probe reads without sudo when it can


def test_sudo_canary_stops_a_wrong_password_after_one_host(tmp_path, fleet):
    s = session_for(tmp_path, fleet, sudo_password="wrong")
    fleet.host("c1").on(r"echo \"TIME", WrongSudoPassword("c1", "sudo: wrong password (stopped after one attempt)"))
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients)
    results = list(report.results.values())
    assert (results[0].host, results[0].status) == ("c1", Status.FAILED)
    assert results[0].message == "sudo: wrong password (stopped after one attempt)"
    assert [(r.status, r.message) for r in results[1:]] == [
        (Status.SKIPPED, "not attempted: the sudo password was rejected on c1")] * 2
    # one sudo (c1's read-only probe) and no other sudo anywhere; the others only probed meanwhile
    assert [c.host for c in fleet.calls if c.sudo] == ["c1"] and len(fleet.commands("c1")) == 1
    assert fleet.sent(MUTATING) == []


def test_sudo_canary_passes_then_every_host_is_handled(tmp_path, fleet):
    s = session_for(tmp_path, fleet, sudo_password="right")
    for name in ("c1", "c2", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.status for r in report.results.values()] == [Status.CHANGED] * 3
    # the canary is c1's probe run with sudo; the others probe without (a dry run sends nothing else)
    assert sorted((c.host, c.sudo) for c in fleet.calls) == [("c1", True), ("c2", False), ("c3", False)]


def test_another_sudo_problem_on_the_canary_host_does_not_stop_the_others(tmp_path, fleet):
    s = session_for(tmp_path, fleet, sudo_password="right")
    fleet.host("c1").on(r"echo \"TIME", SudoError("c1", "sudo: you must have a tty (sudoers has requiretty; ...)"))
    for name in ("c2", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert [r.status for r in report.results.values()] == [Status.FAILED, Status.CHANGED, Status.CHANGED]
    assert report.results[("client", "c1")].message.startswith("sudo: you must have a tty")


def test_an_unreachable_client_does_not_stop_the_others(tmp_path, fleet):
    s = session_for(tmp_path, fleet)
    fleet.host("c2").on("#connect", UnreachableError("c2", "SSH connection to 192.0.2.22:22 failed: timed out"))
    for name in ("c1", "c3"):
        fleet.host(name).on(r"echo \"TIME", client_probe())
    material, _ = D.certificate(s)
    report = D.trust_clients(s, material, s.inv.clients, dry_run=True)
    assert {r.host: r.status for r in report.results.values()} == {
        "c1": Status.CHANGED, "c2": Status.UNREACHABLE, "c3": Status.CHANGED}
    assert report.results[("client", "c2")].message == "SSH connection to 192.0.2.22:22 failed: timed out"


# --------------------------------------------------------------------------- verify


def test_verify_client_asks_the_runtime_on_the_client_with_sudo(tmp_path, fleet):
    """One script, as root: the certs.d listing and dockerd asked through its API for the folder name."""

    s = session_for(tmp_path, fleet, clients=1)
    answer = base64.b64encode(b'{"message":"login attempt to https://registry.test:5443/v2/ failed with status: '
                              b'401 Unauthorized"}').decode()
    fleet.host("c1").on("docker/auth", f"RT docker registry.test:5443 0 {answer}\n")
    material, _ = D.certificate(s)
    result = V.verify_client(s.inv.clients[0], s, material)
    assert (result.status, result.message) == (
        Status.OK, "TLS accepted by docker (1 check(s), each runtime asked itself)")
    assert result.facts["checks"] == [{"target": "docker", "name": "registry.test:5443", "state": "ok",
                                       "detail": "dockerd accepts the TLS (login as a throwaway user: 401 Unauthorized)"}]
    (call,) = fleet.calls
    assert call.sudo and "/etc/docker/certs.d/registry.test:5443/*" in call.command
    assert '"serveraddress": "registry.test:5443"' in call.command


def test_verify_client_with_no_answer_fails(tmp_path, fleet):
    s = session_for(tmp_path, fleet, clients=1)
    fleet.host("c1").on("docker/auth", "")
    material, _ = D.certificate(s)
    result = V.verify_client(s.inv.clients[0], s, material)
    assert result.status is Status.FAILED
    assert result.message == ("TLS refused: docker registry.test:5443: no answer from the check "
                              "(timed out or killed)")


# --------------------------------------------------------------------------- the registry host (fake_registry)


@pytest.fixture
def world(tmp_path):
    """Overrides conftest's deployed fleet: here a bare one, before any deploy."""
    w = World(tmp_path)
    yield w
    w.tls.close()


def steps(world: World) -> list[str]:
    """The registry host's commands, by what they do."""
    names = [("#put_many", "upload"), ("echo LOCK", "lock"), ("echo 'LINK NONE'", "probe"), ("umask 077", "prepare"),
             (" run -d ", "recreate"), ("update --restart=no", "keep failed"), (" logs --tail ", "logs"),
             ("inspect --type container", "rollback"), ("ln -sfn", "switch"),
             ("ls -1dt", "cleanup"), ("registry-tls.lock", "unlock"), ("&& cat ", "read users")]
    return [next((n for pattern, n in names if pattern in c), c) for c in world.fleet.commands("registry.test")]


def test_registry_first_deploy_runs_the_plan_in_order_then_a_rerun_changes_nothing(world):
    material, _ = D.certificate(world.s)
    first = D.deploy_registry(world.s, material)
    (result,) = first.results.values()
    assert (result.status, result.message) == (Status.CHANGED, "re-created the registry container")
    assert steps(world) == ["read users", "probe", "lock", "probe", "prepare", "upload", "switch", "recreate",
                            "cleanup", "unlock"]
    assert result.facts["fingerprint"] == material.fingerprint
    assert result.switch_seconds is not None and result.switch_seconds >= 0
    shown = first.to_json()["registry"]   # --json: among the facts, before the plan, as before it was typed
    assert list(shown["facts"]) == ["container", "fingerprint", "tls", "switch_seconds", "plan"]
    assert "switch_seconds" not in shown
    assert shown["facts"]["switch_seconds"] == result.switch_seconds
    key = next(c for c in world.fleet.calls if c.is_upload).uploads[0]
    assert key[0].endswith("/registry_auth.key") and key[1] == 0o600
    world.fleet.calls.clear()
    (again,) = D.deploy_registry(world.s, material).results.values()
    assert (again.status, again.message) == (Status.OK, "certificate, users and container already as desired")
    assert steps(world) == ["probe"] and world.mutating() == []


@pytest.mark.parametrize("mode, knob, reason", [
    ("self-signed", "serve_stale", ("new registry container is not healthy: TLS verification failed: self-signed "
                                   "certificate")),
    ("ca", "serve_stale", "new registry container is not healthy: serves certificate "),  # same CA: the fingerprint
    ("ca", "crash", ("new registry container did not start: fatal: open /data/certs/missing.crt: no such file or "
                    "directory")),
])
def test_F21_registry_failure_after_the_switch_rolls_back_to_the_serving_container(world, mode, knob, reason):
    """The failed container is kept aside, the previous one put back and checked like a deploy: it must serve
    the OLD certificate (real TLS) before the message may say so."""
    cfg = replace(world.s.inv.certificate, mode=mode)
    world.s.inv, world.s.pki = replace(world.s.inv, certificate=cfg), Pki(cfg)
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    new = world.s.pki.generate(world.s.now, force=True)
    setattr(world.registry, knob, True)
    world.fleet.calls.clear()
    (result,) = D.deploy_registry(world.s, new).results.values()
    kept = world.registry.failed["Name"].lstrip("/")
    assert result.status == Status.FAILED
    assert result.message.startswith(reason), result.message
    assert (f" (kept, stopped, as {kept}: `docker logs {kept}`); rolled back; the previous registry serves again "
            "(after ") in result.message
    assert kept.startswith("registry-failed-") and world.registry.container["Name"] == "/registry"
    assert steps(world)[-3:] == ["keep failed", "rollback", "unlock"]
    assert world.registry.link.endswith(old.fingerprint.replace(":", "").lower()[:16])
    assert result.facts["failure"]["kept"] == kept and result.facts["rollback"]["restored"] is True
    assert result.facts["plan"]["certificate"]["old"] == old.fingerprint


def test_F21_a_previous_registry_that_does_not_come_back_is_reported_down_with_its_own_reason(world):
    world.s.inv = replace(world.s.inv, registry=replace(world.s.inv.registry, health_timeout=2))
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    new = world.s.pki.generate(world.s.now, force=True)
    world.registry.crash = world.registry.previous_broken = True
    world.registry.output = "panic: StorageDriver not registered: bogus-driver\n\ngoroutine 1 [running]:\n\tmain.go:22"
    (result,) = D.deploy_registry(world.s, new).results.values()
    assert result.status == Status.FAILED
    assert "did not start: panic: StorageDriver not registered: bogus-driver (kept" in result.message
    assert "; rolled back, but the previous registry does not come back (" in result.message
    assert result.message.endswith("its own output: panic: StorageDriver not registered: bogus-driver")
    assert "serves again" not in result.message and result.facts["rollback"]["restored"] is False
    # the same bounded wait as a deploy: registry.health_timeout (2 s here), plus at most one last probe
    assert 2 <= result.facts["rollback"]["seconds"] < 2 + 2


def test_a_first_deploy_that_fails_says_there_was_nothing_to_roll_back_to(world):
    world.registry.crash = True
    material, _ = D.certificate(world.s)
    (result,) = D.deploy_registry(world.s, material).results.values()
    assert result.message.endswith("rolled back; there was no registry container before this run, so none serves now")
    assert "did not start: fatal: open /data/certs/missing.crt" in result.message


def test_the_run_log_gets_the_failed_containers_whole_output_with_secrets_masked(world, caplog):
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    world.registry.crash = True
    world.registry.output = ('level=warning msg="htpasswd is missing, provisioning with default user" '
                             'password=iElxXLKaZCCbGLMvK3wJhUdeqVzk06MsqnYynFVkjmA user=docker\n'
                             'level=fatal msg="listen tcp: address nonsense: missing port in address"')
    with caplog.at_level("INFO", logger="registry_tls.registry"):
        (result,) = D.deploy_registry(world.s, world.s.pki.generate(world.s.now, force=True)).results.values()
    assert "did not start: fatal: listen tcp: address nonsense: missing port in address" in result.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "provisioning with default user" in logged and "password=*** user=docker" in logged
    assert "iElxXLKa" not in logged + result.message


SECRET_ENV = (("REGISTRY_HTTP_SECRET", "http-secret-c0ffee"), ("REGISTRY_PROXY_PASSWORD", "proxy-pa55word"),
              ("REGISTRY_STORAGE_S3_ACCESSKEY", "AKIAIOSFODNN7EXAMPLE"),
              ("REGISTRY_STORAGE_S3_SECRETKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))


@pytest.mark.parametrize(("output", "reason"), [
    (("level=info msg=\"s3: access key AKIAIOSFODNN7EXAMPLE, secret key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n"
      "level=info msg=\"proxy: proxy-pa55word, http secret http-secret-c0ffee\"\n"
      "panic: StorageDriver not registered: bogus-driver\n\ngoroutine 1 [running]:\n\tmain.go:22"),
     "panic: StorageDriver not registered: bogus-driver"),   # the registry's own line names the wrong value
    ('level=fatal msg="s3: InvalidAccessKeyId: AKIAIOSFODNN7EXAMPLE (secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY)"',
     "fatal: s3: InvalidAccessKeyId: *** (secret ***)"),      # a secret in that line is masked
], ids=["harmless-value-shown", "secret-in-the-reason-masked"])
def test_env_values_of_secret_keys_are_masked_in_the_log_message_and_json_the_others_are_shown(world, caplog, output,
                                                                                                reason):
    """Review M3 against issue 18: only the values of keys naming a secret are masked, so the registry's own
    line can say which value is wrong (REGISTRY_STORAGE: bogus-driver)."""
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    env = (("REGISTRY_STORAGE", "bogus-driver"), *SECRET_ENV)
    world.s.inv = replace(world.s.inv, registry=replace(world.s.inv.registry, env=env))
    world.registry.crash, world.registry.output = True, output
    with caplog.at_level("INFO", logger="registry_tls.registry"):
        report = D.deploy_registry(world.s, old)
    (result,) = report.results.values()
    assert result.message.startswith(f"new registry container did not start: {reason} (kept"), result.message
    assert result.facts["failure"]["reason"] == reason
    logged = "\n".join(r.getMessage() for r in caplog.records)
    shown = report.to_json()
    assert "output of the registry container that failed" in logged and reason in json.dumps(shown)
    for _, secret in SECRET_ENV:
        for where, text in (("log", logged), ("message", result.message), ("--json", json.dumps(shown))):
            assert secret not in text, f"{secret} in the {where}"


def test_F21_the_engines_output_goes_to_the_run_log_masked_when_it_cannot_run_the_container(world, caplog):
    """The engine refused the container (no container, no `docker logs` later): its own output goes to the run log."""
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    world.s.inv = replace(world.s.inv, registry=replace(world.s.inv.registry, env=SECRET_ENV))
    world.registry.refuse = ("docker: Error response from daemon: failed to create task for container: "
                             "REGISTRY_PROXY_PASSWORD=proxy-pa55word rejected.\nRun 'docker run --help' for more "
                             "information")
    with caplog.at_level("INFO", logger="registry_tls.registry"):
        (result,) = D.deploy_registry(world.s, old).results.values()
    assert result.message.startswith("new registry container could not be run: Error response from daemon: failed "
                                     "to create task for container: REGISTRY_PROXY_PASSWORD=*** rejected.; rolled "
                                     "back; the previous registry serves again (after "), result.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ("registry.test: output of docker, which could not run the registry container:\ndocker: Error response "
            "from daemon: failed to create task for container: REGISTRY_PROXY_PASSWORD=*** rejected.\nRun 'docker "
            "run --help' for more information") in logged
    assert "proxy-pa55word" not in logged + result.message


def test_registry_locked_by_a_live_run_elsewhere_fails_without_touching_it(world):
    material, _ = D.certificate(world.s)
    world.registry.locked_by = f"other-host pid 4242 run ab12 m-other {int(time.time())}"
    (result,) = D.deploy_registry(world.s, material).results.values()
    assert result.status == Status.FAILED
    assert result.message.startswith("registry locked by another run (other-host pid 4242 run ab12, ")
    assert steps(world) == ["read users", "probe", "lock"]


def test_L2_a_data_dir_root_may_not_trust_fails_in_one_line_and_nothing_is_written(world):
    material, _ = D.certificate(world.s)
    world.registry.unsafe = "/srv is writable by group/other (owner root, mode 777)"
    (result,) = D.deploy_registry(world.s, material).results.values()
    assert result.status == Status.FAILED and "\n" not in result.message
    assert result.message == ("refusing to write in /var/lib/docker-registry: /srv is writable by group/other "
                              "(owner root, mode 777); data_dir and each of its parents must be owned by root "
                              "and not writable by group or other")
    assert steps(world) == ["read users", "probe", "lock"]   # the lock script stopped before its mkdir


@pytest.mark.parametrize("dry_run", [False, True])
def test_L11_a_registry_image_not_pinned_by_digest_is_a_warning_not_an_error(tmp_path, dry_run):
    w = World(tmp_path, image="registry:2")
    try:
        material, _ = D.certificate(w.s, dry_run=dry_run)
        (result,) = D.deploy_registry(w.s, material, dry_run=dry_run).results.values()
    finally:
        w.tls.close()
    assert result.status == Status.CHANGED
    assert result.warnings == [("registry.image 'registry:2' is a mutable tag, not pinned by digest: whoever can move "
                                "the tag chooses the code that runs with the registry's key or trust; pin it as "
                                "registry:2@sha256:<digest> (README: Pinning images)")]


def test_L11_a_registry_image_pinned_by_digest_gets_no_warning(world):
    assert world.s.inv.registry.image.startswith("registry:2@sha256:")
    (result,) = D.deploy_registry(world.s, D.certificate(world.s)[0]).results.values()
    assert result.status == Status.CHANGED and result.warnings == []


def test_a_failed_registry_skips_every_client(world):
    world.registry.crash = True
    report = D.deploy_all(world.s, world.s.inv.clients)
    statuses = [(r.host, r.status, r.message) for r in report.results.values() if r.role == "client"]
    assert statuses == [(f"c{i}", Status.SKIPPED, "not attempted: the registry host failed") for i in (1, 2, 3)]
    assert [c for c in world.fleet.calls if c.host != "registry.test"] == []


def test_deploy_dry_run_sends_no_mutating_command_anywhere(world):
    report = D.deploy_all(world.s, world.s.inv.clients, dry_run=True)
    assert {r.status for r in report.results.values()} == {Status.CHANGED}
    assert world.mutating() == []
    assert not (world.s.pki.root / "registry.key").exists()   # the certificate was made in memory only
    registry = next(r for r in report.results.values() if r.role == "registry")
    assert "would re-create container registry: no container yet" in registry.changes


def test_deploy_all_then_every_client_trusts_the_registry(world):
    report = D.deploy_all(world.s, world.s.inv.clients)
    assert report.exit_code == 0
    for name in ("c1", "c2", "c3"):
        (apply,) = world.fleet.sent("base64 -d", name)
        assert apply.sudo and "/etc/docker/certs.d/registry.test:" in apply.command


def test_interrupt_during_the_recreate_rolls_back_then_stops(world):
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    new = world.s.pki.generate(world.s.now, force=True)
    world.registry.host.on(r"\brun -d\b", KeyboardInterrupt(), first=True)
    world.fleet.calls.clear()
    with pytest.raises(KeyboardInterrupt):
        D.deploy_registry(world.s, new)
    assert steps(world)[-3:] == ["recreate", "rollback", "unlock"]


def test_a_failed_link_switch_undoes_only_what_was_applied_and_the_old_container_serves_on(world):
    """The re-create was planned but not applied: the rollback neither keeps aside nor removes the
    container that is serving, it points the link back and checks that the old certificate is served."""
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    serving = world.registry.container
    new = world.s.pki.generate(world.s.now, force=True)
    world.registry.host.on(r"^set -e\nln -sfn", "mv: cannot move", exited=1, times=1, first=True)
    world.fleet.calls.clear()
    (result,) = D.deploy_registry(world.s, new).results.values()
    assert result.status == Status.FAILED and result.facts["rollback"]["restored"] is True
    assert steps(world)[-5:] == ["prepare", "upload", "switch", "switch", "unlock"]   # the second: its undo
    (undo,) = world.fleet.sent(r"^ln -sfn", "registry.test")
    assert " rm -f " not in undo.command and "rename" not in undo.command
    assert world.registry.container is serving and world.registry.failed is None
    assert world.registry.link.endswith(old.fingerprint.replace(":", "").lower()[:16])


def test_an_interrupted_runs_previous_container_is_restored_first_then_the_plan_runs_in_order(world):
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    world.registry.previous, world.registry.container = world.registry.container, None   # killed after the rename
    new = world.s.pki.generate(world.s.now, force=True)
    world.fleet.calls.clear()
    (result,) = D.deploy_registry(world.s, new).results.values()
    assert result.status == Status.CHANGED
    folder = f".certs-{new.fingerprint.replace(':', '').lower()[:16]}"
    assert result.changes[-4:] == ["restore registry-previous left by an interrupted run",
                                   f"write {folder}/ (certificate and key)", f"point certs -> {folder}",
                                   "re-create container registry: certificate"]
    done = steps(world)
    assert done[done.index("prepare"):] == ["prepare", "docker rename registry-previous registry", "upload", "switch",
                                "recreate", "cleanup", "unlock"]


# --------------------------------------------------------------------------- the restart gate


def restart_world(tmp_path: Path, exits: dict[str, int]) -> World:
    w = World(tmp_path, trust="[docker, os]", mode="ca")  # self-signed + os is refused (review H1)
    for name, code in exits.items():
        w.fleet.host(name).on(r"dockerd --validate", {3: "RUNNING 2\n", 5: "RESTARTFAILED\n"}.get(code, "UP\n"),
                              exited=code, first=True)
    return w


def test_a_failed_restart_stops_later_restarts(tmp_path):
    w = restart_world(tmp_path, {"c1": 5, "c2": 0, "c3": 0})
    material, _ = D.certificate(w.s)
    try:
        report = D.trust_clients(w.s, material, w.s.inv.clients, parallel=1)
    finally:
        w.tls.close()
    got = [(r.host, r.status, r.message) for r in report.results.values()]
    assert got == [("c1", Status.FAILED, "dockerd restart command failed: systemctl restart docker"),
                   ("c2", Status.FAILED, "dockerd restart skipped: the restart on c1 failed"),
                   ("c3", Status.FAILED, "dockerd restart skipped: the restart on c1 failed")]
    assert [h for h in ("c1", "c2", "c3") if w.fleet.sent("dockerd --validate", h)] == ["c1"]


def test_a_refused_restart_does_not_stop_the_others(tmp_path):
    w = restart_world(tmp_path, {"c1": 3, "c2": 0, "c3": 0})
    material, _ = D.certificate(w.s)
    try:
        report = D.trust_clients(w.s, material, w.s.inv.clients, parallel=1)
    finally:
        w.tls.close()
    got = [(r.host, r.status) for r in report.results.values()]
    assert got == [("c1", Status.FAILED), ("c2", Status.CHANGED), ("c3", Status.CHANGED)]
    assert report.results[("client", "c1")].message.startswith("dockerd not restarted: 2 container(s) running")
    assert [r.restarted for r in report.results.values()] == [False, True, True]


def test_a_clock_warning_is_given_once_though_the_host_is_looked_at_twice(world):
    world.registry.clock = int(time.time()) + 120
    material, _ = D.certificate(world.s)
    (result,) = D.deploy_registry(world.s, material).results.values()
    assert result.status == Status.CHANGED and steps(world).count("probe") == 2
    (warning,) = result.warnings
    assert warning.startswith("clock differs from this machine by +1") and warning.endswith("'not yet valid' there")


def test_a_stale_lock_is_taken_over_with_a_warning_kept_beside_the_plan_warnings(world):
    world.registry.locked_by = f"other-host pid 4242 run ab12 m-other {int(time.time()) - 7200}"
    material, _ = D.certificate(world.s)
    (result,) = D.deploy_registry(world.s, material).results.values()
    assert result.status == Status.CHANGED
    assert len(result.warnings) == 1 and result.warnings[0].startswith("took over a stale registry lock (other-host")
    assert steps(world).count("lock") == 2


def test_first_contact_keeps_the_users_of_the_registry_host(world):
    from fabfile.htpasswd import hash_password

    line = "alice:" + hash_password("alice-password-1", 10)
    world.registry.host.on(r"\] && cat ", line + "\n", first=True)
    material, _ = D.certificate(world.s)
    report = D.deploy_registry(world.s, material)
    assert report.notes == ["kept 1 user(s) from the registry host's htpasswd"]
    assert "alice" in world.s.state.htpasswd().users
    uploaded = world.registry.host.files["/var/lib/docker-registry/auth/registry.password"].decode()
    assert "alice:" in uploaded


def test_an_unreachable_registry_host_is_reported_before_any_plan(world):
    world.registry.host.on("#connect", UnreachableError("registry.test", "SSH connection to 127.0.0.1:22 failed"),
                           first=True)
    material, _ = D.certificate(world.s)
    (result,) = D.deploy_registry(world.s, material).results.values()
    assert (result.status, result.message) == (Status.UNREACHABLE, "SSH connection to 127.0.0.1:22 failed")
    assert world.fleet.calls == []


def test_a_canary_host_that_is_unreachable_does_not_stop_the_others(tmp_path):
    w = World(tmp_path, sudo_password="right")
    w.fleet.host("c1").on("#connect", UnreachableError("c1", "SSH connection to 192.0.2.21:22 failed"), first=True)
    material, _ = D.certificate(w.s)
    try:
        report = D.trust_clients(w.s, material, w.s.inv.clients)
    finally:
        w.tls.close()
    assert [r.status for r in report.results.values()] == [Status.UNREACHABLE, Status.CHANGED, Status.CHANGED]


def test_a_client_lost_mid_command_is_unreachable_with_what_is_known_of_it(world):
    from fabfile.errors import ConnectionLost

    world.fleet.host("c2").on(r"base64 -d", ConnectionLost("c2", "connection lost mid-command: the host stopped"),
                              first=True)
    material, _ = D.certificate(world.s)
    report = D.trust_clients(world.s, material, world.s.inv.clients)
    c2 = report.results[("client", "c2")]
    assert c2.status == Status.UNREACHABLE
    assert c2.message.startswith("connection lost mid-command: the host stopped; state: ")
    assert [r.status for r in report.results.values()] == [Status.CHANGED, Status.UNREACHABLE, Status.CHANGED]


def test_a_dry_run_names_the_certificate_by_both_fingerprints_and_users_by_name(world):
    old, _ = D.certificate(world.s)
    D.deploy_registry(world.s, old)
    new = world.s.pki.generate(world.s.now, force=True)
    world.s.state.save_htpasswd(world.s.state.htpasswd().with_user("bob", "a long password", 10))
    world.fleet.calls.clear()
    (result,) = D.deploy_registry(world.s, new, dry_run=True).results.values()
    assert result.changes[:2] == [f"would change certificate {old.fingerprint} -> {new.fingerprint}",
                                  "would change users: add bob"]
    assert result.facts["plan"]["users"] == {"added": ["bob"], "removed": [], "password": []}
    assert world.mutating() == []
