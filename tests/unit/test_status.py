"""`status` and `verify` through the fake hosts, and how their results render (report.py)."""

from __future__ import annotations

import json
import logging

import pytest

from fabfile import deploy as D
from fabfile import facts as F
from fabfile import logs, report
from fabfile import verify as V
from fabfile.redact import register
from fabfile.results import Status
from fabfile.status import Level, fleet_status

from fake_hosts import World


def test_a_deployed_fleet_is_ok_and_status_sends_only_read_only_commands(world):
    result = fleet_status(world.s, world.s.inv.clients)
    assert (result.level, result.reasons) == (Level.OK, [])
    rows = {r.host: r for r in result.report.results.values()}
    assert rows["registry.test"].message.startswith("container ") and rows["registry.test"].status == Status.OK
    assert rows["c1"].facts["trust"] == "match" and rows["c1"].facts["dockerd"] == "up 26.1.5"
    assert all(c.sudo for c in world.fleet.calls if c.host != "registry.test")
    assert [c for c in world.fleet.calls if "base64 -d" in c.command or " run -d " in c.command] == []


def test_drift_on_a_client_is_critical_and_named(world):
    path = next(p for p in world.clients["c2"].files if p.endswith("/ca.crt"))
    world.clients["c2"].files[path] = b"not the anchor\n"
    result = fleet_status(world.s, world.s.inv.clients)
    assert result.level == Level.CRITICAL
    (reason,) = result.reasons   # then what the runtime said (the fake's dockerd accepts anyway)
    assert reason.startswith(f"c2: failed: trust drift: {path} drift; TLS accepted by docker")


def test_a_stale_anchor_of_ours_is_reported(world):
    folder = next(p for p in world.clients["c1"].files if p.endswith("/ca.crt")).rsplit("/", 1)[0]
    world.clients["c1"].files[f"{folder}/registry-tls-rotation.crt"] = b"old\n"
    result = fleet_status(world.s, world.s.inv.clients)
    (reason,) = result.reasons
    assert reason.startswith(f"c1: failed: stale anchor files: {folder}/registry-tls-rotation.crt; TLS accepted")


def test_a_registry_serving_another_certificate_is_critical(world):
    world.s.pki.generate(world.s.now, force=True)     # the local certificate moved on; the registry did not
    result = fleet_status(world.s, world.s.inv.clients)
    assert result.level == Level.CRITICAL
    assert result.reasons[0].startswith("registry.test (registry): failed: serves ") and ", expected " in result.reasons[0]


def test_F21_a_registry_that_is_down_is_critical_with_its_own_reason(world):
    """Issue 18: `status` names why a stopped registry is down in its own words, as the deploy's rollback does."""
    world.registry.container["State"]["Running"] = False
    world.registry.tls.serve(None, None)
    world.registry.output = ("panic: StorageDriver not registered: bogus-driver\n\ngoroutine 1 [running]:\n"
                             "main.main()\n\t/go/src/github.com/docker/distribution/cmd/registry/main.go:24 +0x25")
    result = fleet_status(world.s, world.s.inv.clients)
    row = result.report.results[("registry", "registry.test")]
    assert result.level == Level.CRITICAL and row.status == Status.FAILED
    assert row.message.startswith("container registry is not running; ")
    assert row.message.endswith("; its own output: panic: StorageDriver not registered: bogus-driver")
    assert [c.command for c in world.fleet.sent(r" logs --tail 500 ", "registry.test")] == [
        "docker logs --tail 500 registry 2>&1"]


def test_expiry_within_warn_days_is_a_warning(world):
    result = fleet_status(world.s, world.s.inv.clients, warn_days=400)
    assert result.level == Level.WARNING and result.reasons[0].startswith("certificate expires in ")


def test_no_local_certificate_is_unknown(tmp_path):
    w = World(tmp_path)
    try:
        result = fleet_status(w.s, w.s.inv.clients)
    finally:
        w.tls.close()
    assert result.level == Level.UNKNOWN and w.fleet.calls == []


def test_verify_checks_the_registry_from_here_and_each_client_from_itself(world):
    rep = V.verify_all(world.s, world.s.inv.clients)
    rows = {r.host: r for r in rep.results.values()}
    assert rows["registry.test"].message.endswith("/v2/ 401 anonymous, 200 as registry-tls-health")
    assert rows["c3"].message == "TLS accepted by docker (1 check(s), each runtime asked itself)"
    world.clients["c3"].verify = 'fail Get "https://registry.test/v2/": x509: certificate signed by unknown authority'
    rep = V.verify_all(world.s, world.s.inv.clients)
    c3 = rep.results[("client", "c3")]
    assert c3.status == Status.FAILED and rep.exit_code == 1
    assert c3.message.endswith("x509: certificate signed by unknown authority")   # dockerd's own words


def _local_files(world) -> dict[str, bytes]:
    """Every file of the pki and state folders (the run log and the lock file left out)."""
    roots = (world.s.pki.root, world.s.inv.state_dir)
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file() and "log" not in p.relative_to(root).parts and p.name != "lock"}


@pytest.mark.parametrize("lost", ["health.password", "htpasswd"])
def test_verify_and_a_dry_run_write_nothing_locally_even_without_a_health_password(world, lost):
    """A lost health password (or an htpasswd without its user) is made again only by a real deploy."""
    if lost == "htpasswd":   # the users file replaced by one without the health user
        world.s.state.save_htpasswd(world.s.state.htpasswd().without("registry-tls-health"))
    else:
        (world.s.pki.root / lost).unlink()
    before = _local_files(world)
    rep = V.verify_all(world.s, world.s.inv.clients)
    registry_row = rep.results[("registry", "registry.test")]
    assert registry_row.status == Status.FAILED
    assert "cannot log in as registry-tls-health" in registry_row.message and "registry.deploy" in registry_row.message
    assert _local_files(world) == before
    rep = D.deploy_all(world.s, world.s.inv.clients, dry_run=True)
    assert rep.exit_code == 0 and world.mutating() == []
    assert _local_files(world) == before
    assert D.deploy_all(world.s, world.s.inv.clients).exit_code == 0   # the real deploy makes a new one ...
    assert V.verify_all(world.s, world.s.inv.clients).exit_code == 0    # ... and verify logs in with it
    assert _local_files(world) != before


# --------------------------------------------------------------------------- rendering


def test_summary_and_json_render_every_host(world, capsys):
    rep = D.deploy_all(world.s, world.s.inv.clients, dry_run=True)
    report.summary(rep, "deploy", dry_run=True)
    out = capsys.readouterr().out
    assert "registry.test" in out and "c3" in out
    report.print_json(rep.to_json())
    data = json.loads(capsys.readouterr().out)
    assert data["registry"]["host"] == "registry.test" and set(data["hosts"]) == {"c1", "c2", "c3"}


def test_status_view_and_certificate_details_render_every_fingerprint_whole(world, capsys):
    """`inv status | cat`: the certificate's and the anchor's SHA-256 whole (32 bytes), never cut."""
    result = fleet_status(world.s, world.s.inv.clients)
    report.status_view(result)
    report.cert_details(D.show_certificate(world.s)[0], world.s.now, "certificate")
    out = capsys.readouterr().out
    assert "registry.test" in out and "ok" in out.lower()
    material = world.s.pki.load()
    assert len(material.anchor_fingerprint.split(":")) == 32
    which = "the certificate itself" if world.s.inv.certificate.mode == "self-signed" else "its CA"
    assert f"  clients trust {which}  SHA-256 {material.anchor_fingerprint}\n" in out   # once, never folded
    assert out.count("trusts the anchor (docker)") == 3 and "..." not in out
    assert material.fingerprint in out
    assert result.to_json()["certificate"]["anchor_sha256"] == material.anchor_fingerprint


def test_a_registry_serving_another_certificate_names_both_fingerprints_whole(world, capsys):
    served = world.s.pki.load().fingerprint
    world.s.pki.generate(world.s.now, force=True)
    result = fleet_status(world.s, world.s.inv.clients)
    report.status_view(result)
    out = capsys.readouterr().out
    assert f"serves {served}, expected {world.s.pki.load().fingerprint}" in out


def test_errors_and_notes_go_to_stderr_in_one_line(capsys):
    report.error("inventory.yaml:3: bad")
    report.note("a note")
    err = capsys.readouterr().err
    assert "error: inventory.yaml:3: bad" in err and "a note" in err


def test_live_progress_is_silent_without_a_terminal(capsys):
    with report.LiveProgress("clients", 2) as progress:
        progress.started("c1")
        progress.finished(D.HostResult(host="c1"))
    assert capsys.readouterr().err == ""


def test_the_log_file_masks_secrets(tmp_path):
    register("s3cret-value-123")
    root = logging.getLogger("registry_tls")
    path = logs.setup(tmp_path, verbose=False, command="inv deploy")
    try:
        logging.getLogger("registry_tls.test").info("password is s3cret-value-123")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        root.propagate = True
    text = path.read_text()
    assert "password is ***" in text and "s3cret-value-123" not in text


def test_status_and_verify_look_at_each_client_once_as_root_through_the_one_probe_runner(world, monkeypatch):
    """One probe runner per host kind: both go through facts.gather_client, which asks the runtimes in the
    same round trip (one command per client, with sudo: it reads the installed trust)."""
    runs = []
    real = F.gather_client
    monkeypatch.setattr(F, "gather_client", lambda remote, *a, **kw: runs.append(kw) or real(remote, *a, **kw))
    names = [c.name for c in world.s.inv.clients]
    for survey in (lambda: fleet_status(world.s, world.s.inv.clients).report,
                   lambda: V.verify_all(world.s, world.s.inv.clients)):
        world.fleet.calls.clear()
        report = survey()
        assert [report.get(n).facts["verify"] for n in names] == ["ok"] * len(names)
        for name in names:
            (call,) = [c for c in world.fleet.calls if c.host == name]
            assert call.sudo and "echo \"TIME" in call.command and "printf 'RT %s" in call.command
    assert len(runs) == 2 * len(names) and all(kw["sudo"] is True and kw["runtimes"] for kw in runs)


# --------------------------------------------------------------------------- F28: a runtime that refuses, files we did not write


def docker_folder(world, host: str) -> str:
    return next(p for p in world.clients[host].files if p.endswith("/ca.crt")).rsplit("/", 1)[0]


STOPPED = "dockerd is not running: certs.d checked by docker's rules and openssl only"


def test_F28_a_stopped_dockerd_is_a_one_line_warning_in_status_and_verify_never_asked_itself(world):
    world.clients["c2"].dockerd = "down"
    result = fleet_status(world.s, world.s.inv.clients)
    c2 = result.report.get("c2")
    assert (result.level, int(result.level)) == (Level.WARNING, 1) and result.reasons == [f"c2: {STOPPED}"]
    assert c2.status == Status.OK and c2.warnings == [STOPPED]   # one line: no 'dockerd down' beside it
    assert "asked itself" not in c2.message and c2.message.endswith(f"(1 check(s), {STOPPED})")
    rep = V.verify_all(world.s, world.s.inv.clients)
    c2 = rep.get("c2")
    assert "asked itself" not in c2.message and c2.warnings == [STOPPED]
    assert c2.facts["checks"][0]["detail"].startswith(STOPPED)
    assert rep.get("c1").message.endswith("each runtime asked itself)")   # the others were asked
    world.clients["c2"].verify = "fail verify error:num=18:self-signed certificate"
    result = fleet_status(world.s, world.s.inv.clients)
    assert result.level == Level.CRITICAL and result.reasons == [
        f"c2: failed: {result.report.get('c2').message}"]
    assert result.report.get("c2").message.endswith(f"verify error:num=18:self-signed certificate ({STOPPED})")


def test_F28_a_stopped_dockerd_does_not_fail_clients_trust_it_warns(world):
    """clients.trust's exit code is as before (0: the files are in place and pass docker's rules and openssl),
    with the warning; bench clients run no dockerd."""
    world.clients["c2"].dockerd = "down"
    world.clients["c2"].files.clear()   # trust to install again: the runtimes are asked after the change
    material = world.s.pki.load()
    rep = D.trust_clients(world.s, material, world.s.inv.clients)
    c2 = rep.get("c2")
    assert rep.exit_code == 0 and c2.status == Status.CHANGED and c2.warnings == [STOPPED]
    assert "asked itself" not in c2.message and c2.facts["verify"] == "ok"


def test_F28_a_foreign_ca_alone_in_certs_d_is_a_warning(world):
    folder = docker_folder(world, "c1")
    world.clients["c1"].files[f"{folder}/corp-ca.crt"] = b"another CA\n"
    result = fleet_status(world.s, world.s.inv.clients)
    assert (result.level, int(result.level)) == (Level.WARNING, 1)
    assert result.reasons == [f"c1: {folder}: another CA adds trust for this name: {folder}/corp-ca.crt"]
    assert result.report.get("c1").status == Status.OK


def test_F28_a_stray_domain_key_in_certs_d_is_critical(world):
    folder = docker_folder(world, "c3")
    world.clients["c3"].files[f"{folder}/.key"] = b"a dotfile: docker reads it too\n"
    world.clients["c3"].verify = "fail Missing client certificate .cert for key .key"   # what dockerd says then
    result = fleet_status(world.s, world.s.inv.clients)
    assert (result.level, int(result.level)) == (Level.CRITICAL, 2)
    (reason,) = result.reasons
    assert reason.startswith("c3: failed: ") and "TLS refused: docker registry.test:" in reason
    assert reason.endswith(f"Missing client certificate .cert for key .key ({folder}/.key: not written by "
                           "registry-tls, left in place (remove or pair it))")
    del world.clients["c3"].files[f"{folder}/.key"]
    world.clients["c3"].files[f"{folder}/domain.key"] = b"the server's key, copied by a guide\n"
    world.clients["c3"].verify = "ok"   # even if the runtime's answer were missed, the listing alone is critical
    result = fleet_status(world.s, world.s.inv.clients)
    assert (result.level, int(result.level)) == (Level.CRITICAL, 2)
    assert result.reasons == [
        (f"c3: failed: docker refuses every pull from {folder.rsplit('/', 1)[-1]}, by docker's rule: Missing client "
        f"certificate domain.cert for key domain.key ({folder}/domain.key: not written by registry-tls, left in "
        "place (remove or pair it))")]
