"""runtimes: the remote script is valid sh, the judge reads each runtime's own answer (outputs recorded on
the lab: dockerd 20.10 POST /auth, ctr 1.6, skopeo 1.9, curl 7.88, openssl 3.0), and files we did not write
in certs.d are judged by docker's rules (registry ReadCertsDirectory)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess

import pytest

from fabfile import runtimes as RT

FOLDERS = ("registry.lab", "registry.lab:443")
TARGETS = (RT.Target("docker", FOLDERS), RT.Target("containerd", ("registry.lab",)),
           RT.Target("podman", ("registry.lab",)), RT.Target("os", ("registry.lab:443",)),
           RT.Target("buildkit", ("registry.lab:443",), ("/etc/buildkit/certs.d/registry.lab/ca.crt",)))

DOCKER_OK = '{"message":"login attempt to https://registry.lab/v2/ failed with status: 401 Unauthorized"}\n'
DOCKER_X509 = '{"message":"Get \\"https://registry.lab/v2/\\": x509: certificate signed by unknown authority"}\n'
DOCKER_STRAY_KEY = '{"message":"Missing client certificate domain.cert for key domain.key"}\n'
CTR_OK = ('time="2026-12-02T00:38:09Z" level=info msg="trying next host" error="..." host=registry.lab\n'
          'ctr: failed to resolve reference "registry.lab/registry-tls/probe:none": pulling from host registry.lab '
          'failed with status code [manifests none]: 401 Unauthorized\n')
CTR_X509 = ('ctr: failed to resolve reference "registry.lab/registry-tls/probe:none": failed to do request: Head '
            '"https://registry.lab/v2/registry-tls/probe/manifests/none": x509: certificate signed by unknown authority\n')
SKOPEO_OK = 'time="2026-12-02T00:38:21Z" level=fatal msg="logging into \\"registry.lab\\": invalid username/password"\n'
SKOPEO_X509 = ('time="2026-12-02T00:39:33Z" level=fatal msg="authenticating creds for \\"registry.lab\\": pinging '
               'container registry registry.lab: Get \\"https://registry.lab/v2/\\": x509: certificate signed by '
               'unknown authority"\n')
CURL_X509 = "curl: (60) SSL certificate problem: self-signed certificate\nMore details here: https://curl.se/docs/\n"
OPENSSL_FAIL = ("verify error:num=18:self-signed certificate\n"
                "4037448E517F0000:error:0A000086:SSL routines::certificate verify failed\n")


def rt(target: str, name: str, code: int, out: str) -> str:
    return f"RT {target} {name} {code} {base64.b64encode(out.encode()).decode()}"


def test_the_script_is_valid_sh_and_never_puts_a_real_secret_on_a_command_line():
    text = RT.script(TARGETS)
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    assert "--password-stdin" in text and "--hosts-dir /etc/containerd/certs.d" in text
    assert "SSL_CERT_FILE=/dev/null" in text            # containerd: hosts.toml alone must carry the trust
    assert "/var/run/docker.sock" in text and "http://docker/auth" in text
    assert '"password": "x"' in text and RT.PROBE_USER in text   # a throwaway user, nothing stored
    assert 'rm -rf "$pt"' in text                        # podman's throwaway authfile goes


def test_every_runtime_accepting_is_ok_in_its_own_words():
    out = "\n".join([rt("docker", "registry.lab", 0, DOCKER_OK), rt("docker", "registry.lab:443", 0, DOCKER_OK),
                     rt("containerd", "registry.lab", 1, CTR_OK), rt("podman", "registry.lab", 1, SKOPEO_OK),
                     rt("os", "registry.lab:443", 0, ""), rt("buildkit", "registry.lab:443", 0, "")])
    checks = RT.judge(RT.parse(out), TARGETS)
    assert [(c.target, c.name, c.state) for c in checks] == [
        ("docker", "registry.lab", "ok"), ("docker", "registry.lab:443", "ok"), ("containerd", "registry.lab", "ok"),
        ("podman", "registry.lab", "ok"), ("os", "registry.lab:443", "ok"), ("buildkit", "registry.lab:443", "ok")]
    assert "buildkitd not asked" in checks[-1].detail   # said, not hidden
    overall, message, warnings = RT.summary(checks)
    assert overall == "ok" and not warnings
    assert message == "TLS accepted by docker, containerd, podman, os, buildkit (6 check(s), each runtime asked itself)"


def test_refusals_carry_the_runtime_error():
    out = "\n".join([rt("docker", "registry.lab", 0, DOCKER_STRAY_KEY), rt("docker", "registry.lab:443", 0, DOCKER_X509),
                     rt("containerd", "registry.lab", 1, CTR_X509), rt("podman", "registry.lab", 1, SKOPEO_X509),
                     rt("os", "registry.lab:443", 60, CURL_X509), rt("buildkit", "registry.lab:443", 1, OPENSSL_FAIL)])
    checks = RT.judge(RT.parse(out), TARGETS)
    assert [c.state for c in checks] == ["fail"] * 6
    assert [c.detail for c in checks] == [
        "Missing client certificate domain.cert for key domain.key",
        'Get "https://registry.lab/v2/": x509: certificate signed by unknown authority',
        ('failed to resolve reference "registry.lab/registry-tls/probe:none": failed to do request: Head '
         '"https://registry.lab/v2/registry-tls/probe/manifests/none": x509: certificate signed by unknown authority'),
        ('authenticating creds for "registry.lab": pinging container registry registry.lab: Get '
         '"https://registry.lab/v2/": x509: certificate signed by unknown authority'),
        "(60) SSL certificate problem: self-signed certificate",
        "openssl: verify error:num=18:self-signed certificate"]
    overall, message, _ = RT.summary(checks)
    assert overall == "fail"
    assert message.startswith("docker registry.lab: Missing client certificate domain.cert for key domain.key; "
                              "docker registry.lab:443: Get ") and message.endswith("(+4 more)")


def test_an_absent_or_stopped_runtime_is_never_ok():
    out = "\n".join(["RTX containerd absent ctr is not installed", "RTX podman down podman is not running",
                     rt("docker", "registry.lab", 0, DOCKER_OK), rt("docker", "registry.lab:443", 0, DOCKER_OK),
                     rt("os", "registry.lab:443", 0, ""), rt("buildkit", "registry.lab:443", 0, "")])
    checks = RT.judge(RT.parse(out), TARGETS)
    overall, message, warnings = RT.summary(checks)
    assert overall == "unchecked" and message == "TLS accepted by docker, os, buildkit"
    assert warnings == ["containerd: ctr is not installed: not checked, not trusted by anything here",
                        "podman: podman is not running: not checked through it"]


def test_a_check_that_printed_nothing_fails():
    checks = RT.judge(RT.parse(""), (RT.Target("os", ("registry.lab:443",)),))
    assert [(c.state, c.detail) for c in checks] == [("fail", "no answer from the check (timed out or killed)")]


STOPPED = "RTX docker down dockerd does not answer on /var/run/docker.sock (or curl is missing)"


def test_F28_stopped_dockerd_reads_certs_d_by_docker_rules_and_says_so():
    docker = (RT.Target("docker", FOLDERS),)
    out = "\n".join([STOPPED, rt("docker-files", "registry.lab", 0, ""), rt("docker-files", "registry.lab:443", 0, "")])
    listing = ("/etc/docker/certs.d/registry.lab/ca.crt", "/etc/docker/certs.d/registry.lab/domain.key",
               "/etc/docker/certs.d/registry.lab:443/ca.crt")
    checks = RT.judge(RT.parse(out), docker, listing)
    assert [(c.name, c.state, c.asked) for c in checks] == [("registry.lab", "fail", False),
                                                             ("registry.lab:443", "ok", False)]
    assert checks[0].detail == ("by docker's rule: Missing client certificate domain.cert for key domain.key "
                                "(dockerd is not running: certs.d checked by docker's rules and openssl only)")
    assert checks[1].detail == ("dockerd is not running: certs.d checked by docker's rules and openssl only; "
                                "its CAs validate the registry")
    assert RT.summary(checks)[2] == ["dockerd is not running: certs.d checked by docker's rules and openssl only"]


def test_F28_stopped_dockerd_is_a_warning_never_each_runtime_asked_itself():
    """Its certs.d passed docker's rules and openssl, but dockerd was not asked: a warning, one line per host
    (not one per name), and the message says how it was checked."""
    targets = (RT.Target("docker", FOLDERS), RT.Target("os", ("registry.lab:443",)))
    out = "\n".join([STOPPED, rt("docker-files", "registry.lab", 0, ""), rt("docker-files", "registry.lab:443", 0, ""),
                     rt("os", "registry.lab:443", 0, "")])
    overall, message, warnings = RT.summary(RT.judge(RT.parse(out), targets))
    assert "asked itself" not in message
    assert message == ("TLS accepted by docker, os (3 check(s), dockerd is not running: certs.d checked by "
                       "docker's rules and openssl only)")
    assert warnings == ["dockerd is not running: certs.d checked by docker's rules and openssl only"]
    assert overall == "ok"   # every target was checked and none refused: clients.trust still succeeds (exit 0)
    failing = out.replace(rt("docker-files", "registry.lab", 0, ""), rt("docker-files", "registry.lab", 1, OPENSSL_FAIL))
    checks = RT.judge(RT.parse(failing), targets)
    assert RT.summary(checks)[:2] == ("fail", ("docker registry.lab: openssl: verify error:num=18:self-signed "
                                      "certificate (dockerd is not running: certs.d checked by docker's rules and "
                                      "openssl only)"))
    absent = "\n".join(["RTX os absent curl is not installed", *out.splitlines()[:3]])
    assert RT.summary(RT.judge(RT.parse(absent), targets))[:2] == (
        "unchecked", "TLS accepted by docker (dockerd is not running: certs.d checked by docker's rules and openssl only)")


@pytest.mark.parametrize(("files", "error"), [
    (["ca.crt"], None),
    (["ca.crt", "client.cert", "client.key"], None),
    (["ca.crt", "domain.key"], "Missing client certificate domain.cert for key domain.key"),
    (["ca.crt", "client.cert"], ("missing key client.key for client certificate client.cert. "
                                "Note that CA certificates should use the extension .crt")),
    (["a.cert", "b.key"], ("missing key a.key for client certificate a.cert. "
                          "Note that CA certificates should use the extension .crt")),  # name order, first wins
    (["other-ca.crt", "ca.crt", "README"], None),
])
def test_docker_folder_rules(files, error):
    assert RT.docker_folder_error([f"/etc/docker/certs.d/r/{f}" for f in files]) == error


def test_F28_foreign_files_break_or_add_trust_and_ours_are_never_foreign():
    d, c = "/etc/docker/certs.d/registry.lab", "/etc/containerd/certs.d/registry.lab"
    listing = (f"{d}/ca.crt", f"{d}/registry-tls-rotation.crt", f"{d}/domain.key", f"{d}/corp-ca.crt", f"{d}/notes.txt",
               f"{c}/ca.crt", f"{c}/hosts.toml", f"{c}/domain.key")
    errors, warnings = RT.foreign_files(listing, (d, c))
    assert [e.text for e in errors] == [   # our reading of docker's rule, said as such: dockerd was not asked here
        ("docker refuses every pull from registry.lab, by docker's rule: Missing client certificate domain.cert for "
         f"key domain.key ({d}/domain.key: not written by registry-tls, left in place (remove or pair it))")]
    assert warnings == [f"{d}: another CA adds trust for this name: {d}/corp-ca.crt",
                        f"{d}: files registry-tls did not write (docker ignores them): {d}/notes.txt",
                        (f"{c}: files registry-tls did not write (containerd reads only what hosts.toml names): "
                         f"{c}/domain.key")]
    assert RT.foreign_files((f"{d}/ca.crt", f"{d}/registry-tls-rotation.crt"), (d,)) == ([], [])


@pytest.mark.parametrize(("files", "errors", "warnings"), [
    (["x.cert", "x.key"], [], ["client certificate docker presents to this registry: x.cert/x.key"]),
    (["a.cert", "a.key", "b.cert", "b.key"], [],
     ["client certificate docker presents to this registry: a.cert/a.key, b.cert/b.key"]),
    ([".cert", ".key"], [], ["client certificate docker presents to this registry: .cert/.key"]),   # dotfiles count
    (["x.cert", "x.key", "y.key"], ["Missing client certificate y.cert for key y.key"],
     ["client certificate docker presents to this registry: x.cert/x.key"]),
    (["corp-ca.crt"], [], ["another CA adds trust for this name: {d}/corp-ca.crt"]),
    (["domain.key"], ["Missing client certificate domain.cert for key domain.key"], []),
    (["client.cert"], [("missing key client.key for client certificate client.cert. "
                        "Note that CA certificates should use the extension .crt")], []),
], ids=["pair", "two-pairs", "dot-pair", "pair-and-stray-key", "foreign-ca", "stray-key", "orphan-cert"])
def test_F28_foreign_files_table(files, errors, warnings):
    """Every file registry-tls did not write in a docker certs.d folder is reported: what breaks docker is an
    error, a client certificate pair or another CA a warning (nothing is silent)."""
    d = "/etc/docker/certs.d/registry.lab"
    found, said = RT.foreign_files((f"{d}/ca.crt", *(f"{d}/{f}" for f in files)), (d,))
    assert [e.error for e in found] == errors
    assert said == [f"{d}: {w.format(d=d)}" for w in warnings]


@pytest.mark.parametrize(("folder", "endpoint"), [
    ("registry.lab", "registry.lab:443"), ("registry.lab:5000", "registry.lab:5000"),
    ("[::1]", "[::1]:443"), ("[::1]:5000", "[::1]:5000"), ("10.0.0.1", "10.0.0.1:443")])
def test_folder_endpoints(folder, endpoint):
    assert RT.endpoint(folder) == endpoint


def test_docker_answer_that_is_not_json_is_a_failure_with_its_text():
    assert RT.VERDICTS["docker"](7, "curl: (7) Couldn't connect to server") == (
        "fail", "dockerd: curl: (7) Couldn't connect to server")
    assert RT.VERDICTS["docker"](0, json.dumps({"Status": "Login Succeeded"}))[0] == "ok"


def test_stopped_dockerd_one_tls_check_per_endpoint_when_the_folders_hold_the_same_cas(tmp_path, monkeypatch):
    """'registry.lab' and 'registry.lab:443' reach the same endpoint: with the same CAs in both folders
    docker would decide the same, so openssl runs once and both names get its verdict; a folder with
    other CAs is checked on its own. Run for real under sh (dash) with a fake dockerd and openssl."""
    certs = tmp_path / "certs.d"
    for folder, ca in (("registry.lab", "A"), ("registry.lab:443", "A"), ("10.0.0.1", "A"), ("10.0.0.1:443", "A")):
        (certs / folder).mkdir(parents=True)
        (certs / folder / "ca.crt").write_text(ca)
    (certs / "10.0.0.1:443" / "other.crt").write_text("B")   # two CAs: joined, so not the same as 10.0.0.1's
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    for name, body in (("dockerd", "exit 0"),
                       ("openssl", (f'echo "$*" >> {log}; case "$*" in *10.0.0.1*) echo "verify error:num=18:'
                                    'self-signed certificate"; exit 1;; esac; exit 0'))):
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setitem(RT.CERTS_D, "docker", str(certs))
    monkeypatch.setattr(RT, "DOCKER_SOCKET", str(tmp_path / "no.sock"))
    target = RT.Target("docker", ("registry.lab", "registry.lab:443", "10.0.0.1", "10.0.0.1:443"))
    out = subprocess.run(["sh", "-c", RT.script((target,))], capture_output=True, text=True,
                         env={"PATH": f"{bin_}:/usr/bin:/bin", "TMPDIR": str(tmp)}, check=False)
    assert out.returncode == 0, out.stderr
    assert sorted(line.split(" -CAfile")[0] for line in log.read_text().splitlines()) == [
        "s_client -connect 10.0.0.1:443 -servername 10.0.0.1 -verify_ip 10.0.0.1 -verify_return_error",
        "s_client -connect 10.0.0.1:443 -servername 10.0.0.1 -verify_ip 10.0.0.1 -verify_return_error",
        "s_client -connect registry.lab:443 -servername registry.lab -verify_hostname registry.lab -verify_return_error"]
    # a folder's only CA is used in place; two are joined in a temporary file (gone afterwards, below)
    cafiles = sorted(line.split(" -CAfile ")[1].replace(str(tmp_path), "") for line in log.read_text().splitlines())
    assert cafiles[:2] == ["/certs.d/10.0.0.1/ca.crt", "/certs.d/registry.lab/ca.crt"]
    assert cafiles[2].startswith("/tmp/tmp.") and cafiles[2].endswith("/1"), cafiles
    parsed = RT.parse(out.stdout)
    assert sorted((t, n, c) for t, n, c, _ in parsed.raw) == [
        ("docker-files", "10.0.0.1", 1), ("docker-files", "10.0.0.1:443", 1),
        ("docker-files", "registry.lab", 0), ("docker-files", "registry.lab:443", 0)]
    checks = {c.name: (c.state, c.detail) for c in RT.judge(parsed, (target,))}
    assert checks["registry.lab:443"] == checks["registry.lab"] == (
        "ok", "dockerd is not running: certs.d checked by docker's rules and openssl only; its CAs validate the registry")
    assert checks["10.0.0.1:443"] == ("fail", ("openssl: verify error:num=18:self-signed certificate (dockerd is not "
                                      "running: certs.d checked by docker's rules and openssl only)"))
    assert not list(tmp.iterdir())   # the joined CA file went with its folder


CTR_2_HELP = ("OPTIONS:\n   --skip-verify, -k   skip SSL certificate validation\n"
              "   --local             Fetch content from local client rather than using transfer service "
              "(default: false)\n")
CTR_1_6_HELP = ("OPTIONS:\n   --skip-verify, -k   skip SSL certificate validation\n"
                "   --hosts-dir value   Custom hosts configuration directory\n")


def fake_tools(folder, tools: dict[str, str]):
    """Executables named after ``tools`` (name -> sh body) in ``folder``: a PATH entry."""
    folder.mkdir(exist_ok=True)
    for name, body in tools.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize(("help_text", "local"), [(CTR_2_HELP, True), (CTR_1_6_HELP, False)],
                         ids=["containerd-2.0", "containerd-1.6"])
def test_ctr_pulls_with_local_where_it_has_it_so_the_daemon_transfer_service_never_resolves(
        tmp_path, monkeypatch, help_text, local):
    """containerd 2.0+ pulls through the daemon's transfer service (its own resolver, its OS store) unless
    --local: the script asks `ctr images pull --help` once, in the same script, and passes --local when listed.
    Run under sh with a fake ctr and a real unix socket where containerd's would be."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "containerd.sock"))
    log = tmp_path / "ctr.log"
    (tmp_path / "help").write_text(help_text)
    bin_ = fake_tools(tmp_path / "bin", {"ctr": (
        f'case "$*" in *--help*) cat {tmp_path / "help"}; exit 0;; esac\necho "$*" >> {log}\n'
        'echo "ctr: failed to resolve reference: pulling from host failed with status code [manifests none]: '
        '401 Unauthorized"; exit 1')})
    monkeypatch.setattr(RT, "CONTAINERD_SOCKETS", (str(tmp_path / "containerd.sock"),))
    text = RT.script((RT.Target("containerd", ("registry.lab", "registry.lab:5000")),))
    assert text.count("images pull --help") == 1    # one cheap question, in the same script
    try:
        out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=False,
                             env={"PATH": f"{bin_}:/usr/bin:/bin"})
    finally:
        sock.close()
    assert out.returncode == 0, out.stderr
    pulls = sorted(line for line in log.read_text().splitlines() if " images pull " in line)
    flag = "--local " if local else ""
    assert pulls == [f"--address {tmp_path}/containerd.sock -n {RT.PROBE_USER} images pull {flag}--hosts-dir "
                     f"/etc/containerd/certs.d registry.lab{port}/registry-tls/probe:none" for port in ("", ":5000")]
    checks = RT.judge(RT.parse(out.stdout), (RT.Target("containerd", ("registry.lab", "registry.lab:5000")),))
    assert [c.state for c in checks] == ["ok", "ok"]


BASE_TOOLS = ("mktemp", "rm", "cat", "cmp", "base64", "tail", "timeout", "env")   # what the script needs besides
SKOPEO_401 = 'echo "time=\\"x\\" level=fatal msg=\\"logging into \\\\\\"$(eval echo \\$$#)\\\\\\": invalid username/password\\""; exit 1'


@pytest.mark.parametrize(("case", "tools", "kinds", "want"), [
    ("no docker, no curl", {"ctr": "exit 9", "openssl": "exit 0"}, ("docker", "os"),
     ("unchecked", ["docker: docker is not installed: not checked, not trusted by anything here"],
      {"docker": "absent", "os": "ok"})),
    ("no ctr", {"docker": "exit 9", "curl": "exit 9"}, ("containerd",),
     ("unchecked", ["containerd: ctr is not installed: not checked, not trusted by anything here"],
      {"containerd": "absent"})),
    ("no skopeo, no podman", {"docker": "exit 9", "ctr": "exit 9"}, ("podman",),
     ("unchecked", ["podman: neither podman nor skopeo is installed: not checked, not trusted by anything here"],
      {"podman": "absent"})),
    ("docker, no curl", {"docker": "exit 9", "openssl": "exit 0"}, ("docker",),
     ("ok", ["dockerd is not running: certs.d checked by docker's rules and openssl only"], {"docker": "ok"})),
    ("podman, no skopeo", {"podman": f'echo "$*" >> "$LOG"; {SKOPEO_401}'}, ("podman",),
     ("ok", [], {"podman": "ok"})),
], ids=["no-docker-no-curl", "no-ctr", "no-skopeo-no-podman", "docker-no-curl", "podman-no-skopeo"])
def test_F16_F28_a_runtime_missing_from_path_is_absent_and_never_ok(tmp_path, monkeypatch, case, tools, kinds, want):
    """The real script under sh with a PATH that lacks a runtime's tools (the lab hosts share /usr, so they
    have them all): the RTX line is printed, the verdict is 'unchecked' with a warning, never 'ok'; a stopped
    dockerd (docker without curl to ask it) is a warning; podman without skopeo logs in with a throwaway root."""
    base = tmp_path / "base"
    base.mkdir()
    for tool in BASE_TOOLS:
        (base / tool).symlink_to(shutil.which(tool))
    bin_ = fake_tools(tmp_path / "bin", tools)
    monkeypatch.setitem(RT.CERTS_D, "docker", str(tmp_path / "certs.d"))
    monkeypatch.setattr(RT, "DOCKER_SOCKET", str(tmp_path / "no.sock"))
    targets = tuple(RT.Target(k, ("registry.lab:443",) if k == "os" else ("registry.lab",)) for k in kinds)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"PATH": f"{bin_}:{base}", "TMPDIR": str(tmp), "LOG": str(tmp_path / "log")}
    out = subprocess.run([shutil.which("sh") or "/bin/sh", "-c", RT.script(targets)], capture_output=True,
                         text=True, check=False, env=env)
    assert out.returncode == 0 and not out.stderr, out.stderr
    absent = {k for k, state in want[2].items() if state == "absent"}
    assert {line.split()[1] for line in out.stdout.splitlines() if line.startswith("RTX")} == absent | (
        {"docker"} if case == "docker, no curl" else set())
    checks = RT.judge(RT.parse(out.stdout), targets)
    overall, message, warnings = RT.summary(checks)
    assert (overall, warnings, {c.target: c.state for c in checks}) == want, (case, message)
    assert "asked itself" not in message or not warnings
    if case == "podman, no skopeo":   # the fallback: podman itself, a throwaway root and authfile, all removed
        (call,) = (tmp_path / "log").read_text().splitlines()
        assert call.startswith(f"--root {tmp}/tmp.") and "--storage-driver vfs login --authfile" in call
        assert call.endswith(f"-u {RT.PROBE_USER} --password-stdin registry.lab")
    assert not list(tmp.iterdir())   # every throwaway file and folder is gone
