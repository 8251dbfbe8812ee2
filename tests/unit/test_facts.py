"""Probe parsers on recorded output (cases/facts/*.json, pyinfra-style: output in, fact out),
plus the probe scripts themselves: valid shell, and run for real against a temp folder.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import time

import pytest

from fabfile import facts as F
from fabfile import runtimes as RT

from _support import CASES, run, sha256
from fake_transport import FakeFleet, FakeTransport

FACT_CASES = sorted((CASES / "facts").glob("*.json"))


def plain(value):
    """Facts -> JSON-like data; modes as '0644' strings, bytes as text, tuples as lists."""
    if isinstance(value, F.RemoteFile):
        return {"sha256": value.sha256, "mode": f"{value.mode:04o}", "owner": value.owner, "mtime": value.mtime}
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


def recorded_output(lines: list[str]) -> str:
    """Expand ``@INSPECT file`` / ``@PREVIOUS file`` into the one-line JSON the engine prints."""
    out = []
    for line in lines:
        if line.startswith("@"):
            tag, name = line[1:].split(" ", 1)
            data = json.loads((CASES / "inspect" / name).read_text())
            out.append(f"{tag} {json.dumps(data, separators=(',', ':'))}")
        else:
            out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("case_file", FACT_CASES, ids=[p.stem for p in FACT_CASES])
def test_recorded_probe_output(case_file):
    case = json.loads(case_file.read_text())
    output = recorded_output(case["output"])
    parser = F.parse_client if case_file.name.startswith("client_") else F.parse_registry
    fact = parser(output, tuple(case["paths"]))
    got = plain(fact)
    if isinstance(fact, F.ClientFacts):
        got["os_family"] = fact.os_family
    expected = case["fact"]
    assert {k: got[k] for k in expected} == expected, case["description"]


def test_seed_container_has_an_anonymous_volume_at_var_lib_registry():
    """The seed ran `docker run -v /var/lib/docker-registry:/data ... registry:2.7`: images live in an
    anonymous volume that a naive re-run would orphan."""
    case = json.loads((CASES / "facts" / "registry_seed.json").read_text())
    fact = F.parse_registry(recorded_output(case["output"]))
    kind, source = fact.container.volume_sources["/var/lib/registry"]
    assert kind == "volume" and source.startswith("/var/lib/docker/volumes/") and source.endswith("/_data")
    assert fact.container.labels == {}


def test_podman_array_and_docker_object_parse_the_same_way():
    data = json.loads((CASES / "inspect" / "podman_registry.json").read_text())
    as_array = F.parse_registry("INSPECT " + json.dumps(data)).container
    as_object = F.parse_registry("INSPECT " + json.dumps(data[0])).container
    assert as_array == as_object and as_array.name == "registry"


def test_inspect_with_null_sections():
    """`docker inspect` prints null for empty Labels/Env/Mounts/PortBindings: no crash, empty values."""
    data = {"Id": "abc", "Name": "/registry", "State": {"Running": True}, "Config": {"Labels": None, "Env": None},
            "HostConfig": {"PortBindings": {"5000/tcp": None}, "RestartPolicy": None}, "Mounts": None}
    c = F.ContainerFact.from_inspect(data)
    assert (c.labels, c.env, c.ports, c.volume_sources, c.restart_policy) == ({}, {}, (), {}, "")
    assert c.running and c.restart_count == 0


def test_env_values_may_contain_equals_signs():
    c = F.ContainerFact.from_inspect({"Config": {"Env": ["A=b=c", "REALM=Registry Realm"]}})
    assert c.env == {"A": "b=c", "REALM": "Registry Realm"}


@pytest.mark.parametrize(("os_id", "like", "family"), [
    ("debian", (), "debian"), ("ubuntu", ("debian",), "debian"), ("linuxmint", ("ubuntu", "debian"), "debian"),
    ("centos", ("rhel", "fedora"), "rhel"), ("rocky", ("rhel", "centos", "fedora"), "rhel"),
    ("fedora", (), "rhel"), ("almalinux", ("rhel",), "rhel"), ("ol", ("fedora",), "rhel"),
    ("alpine", (), None), ("unknown", (), None), ("arch", (), None),
])
def test_os_family(os_id, like, family):
    assert F.ClientFacts(os_id=os_id, os_like=like).os_family == family


# --------------------------------------------------------------------------- the probe scripts themselves


@pytest.fixture(scope="module")
def bash() -> str:
    path = shutil.which("bash")
    if not path:
        pytest.skip("bash is not installed")
    return path


def assert_shell_syntax(bash: str, script: str) -> None:
    out = run([bash, "-n", "-c", script])
    assert out.returncode == 0, out.stderr


def test_probe_scripts_are_valid_shell(bash):
    for script in (
        F.client_script(("/etc/docker/certs.d/reg.example/ca.crt", "/odd dir/it's.crt"),
                        (("/etc/docker/certs.d/reg.example/registry-tls-", ".crt"),),
                        buildkit_toml="/etc/buildkit/buildkitd.toml", contents=True, docker=True,
                        folders=("/etc/docker/certs.d/reg.example", "/odd dir/it's")),
        F.client_script(()),
        F.registry_script("docker", "/var/lib/docker-registry", "registry", "registry:2",
                          ("/var/lib/docker-registry/auth/registry.password",)),
        F.registry_script("podman", "/srv/it's here", "reg'istry", "registry:2", ()),
    ):
        assert_shell_syntax(bash, script)


def test_client_probe_runs_for_real_on_local_files(bash, tmp_path):
    """Run the real probe script (no sudo) against files in a temp folder and parse what it prints."""
    certs_d = tmp_path / "certs.d" / "reg.example:5000"
    certs_d.mkdir(parents=True)
    ca = certs_d / "ca.crt"
    ca.write_bytes(b"anchor\n")
    os.chmod(ca, 0o644)
    stale = certs_d / "registry-tls-next.crt"
    stale.write_bytes(b"next\n")
    odd = tmp_path / "odd dir" / "it's.crt"
    odd.parent.mkdir()
    odd.write_bytes(b"odd")
    os.chmod(odd, 0o600)
    missing = str(tmp_path / "missing.crt")
    paths = (str(ca), str(odd), missing)
    script = F.client_script(paths, ((str(certs_d) + "/registry-tls-", ".crt"),), contents=True)
    out = run([bash, "-c", script])
    assert out.returncode == 0, out.stderr
    fact = F.parse_client(out.stdout, paths)
    assert fact.files[str(ca)].sha256 == sha256(b"anchor\n") and fact.files[str(ca)].mode == 0o644
    assert fact.files[str(ca)].mtime == int(ca.stat().st_mtime)
    assert fact.files[str(odd)].sha256 == sha256(b"odd") and fact.files[str(odd)].mode == 0o600
    assert fact.files[missing] is None
    assert fact.extra == (str(stale),)
    assert fact.contents[str(ca)] == b"anchor\n"
    assert fact.clock is not None and fact.os_id != ""


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_F28_the_certs_d_listing_shows_dotfiles_docker_reads_with_shell_builtins_only(shell, tmp_path):
    """docker reads every file of a certs.d folder, a '.key' too (it breaks every pull): the listing must show
    it, where a bare '*' would not; '.' and '..' are not listed; no process is started for it."""
    folder = tmp_path / "certs.d" / "reg.example"
    folder.mkdir(parents=True)
    empty = tmp_path / "certs.d" / "it's empty"
    empty.mkdir()
    for name in ("ca.crt", ".key", ".hidden.crt"):
        (folder / name).write_text("x")
    bin_ = tmp_path / "bin"   # nothing else on PATH: a listing that needed a command would fail to list
    bin_.mkdir()
    script = F.client_script((), folders=(str(folder), str(empty), str(tmp_path / "missing")))
    listing = [line for line in script.splitlines() if '"L $x"' in line]
    out = run([shutil.which(shell) or shell, "-c", "\n".join([*listing, "true"])], env={"PATH": str(bin_)})
    assert out.returncode == 0, out.stderr
    assert sorted(F.parse_client(out.stdout).listing) == sorted(
        f"{folder}/{name}" for name in (".hidden.crt", ".key", "ca.crt"))


def test_registry_probe_runs_for_real_without_an_engine(bash, tmp_path):
    data = tmp_path / "data dir"
    (data / ".certs-0123456789abcdef").mkdir(parents=True)
    (data / "certs").symlink_to(".certs-0123456789abcdef")
    ht = data / "auth" / "registry.password"
    ht.parent.mkdir()
    ht.write_text("u:$2y$10$x\n")
    os.chmod(ht, 0o600)
    script = F.registry_script("no-such-engine-xyz", str(data), "registry", "registry:2", (str(ht),))
    out = run([bash, "-c", script])
    assert out.returncode == 0, out.stderr
    fact = F.parse_registry(out.stdout, (str(ht),))
    assert fact.certs_link == ".certs-0123456789abcdef"
    assert fact.files[str(ht)].mode == 0o600
    assert (fact.engine, fact.engine_detail) == ("missing", "no-such-engine-xyz: not found")
    (data / "certs").unlink()
    (data / "certs").mkdir()
    assert F.parse_registry(run([bash, "-c", script]).stdout).certs_link == "DIR"


def test_buildkit_and_contents_lines_decode_base64():
    toml = b'[registry."reg.example"]\n  ca = ["/etc/buildkit/certs.d/reg.example/ca.crt"]\n'
    out = f"B {base64.b64encode(toml).decode()}\nC {base64.b64encode(b'pem').decode()} /a b/ca.crt\n"
    fact = F.parse_client(out)
    assert fact.buildkit_toml == toml and fact.contents == {"/a b/ca.crt": b"pem"}


def test_unreadable_trust_file_is_reported_so_the_probe_is_repeated_with_sudo():
    """The probe runs as the login user; a file it cannot read is 'U', never mistaken for missing."""
    from fabfile import facts as F

    paths = ("/etc/docker/certs.d/r/ca.crt", "/etc/docker/certs.d/r:443/ca.crt")
    found = F.parse_client(f"TIME 1\nU {paths[0]}\nM {paths[1]}\n", paths)
    assert found.unreadable == (paths[0],) and found.files[paths[1]] is None
    assert '[ -r "$x" ]' in F.client_script(paths)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_probe_reads_the_clock_without_a_process_and_it_is_the_realtime_clock(shell, tmp_path):
    """btime (/proc/stat) + /proc/uptime, by shell builtins: the same second as time.time() (within the 2 s
    both truncations allow), and no `date` process unless /proc cannot tell."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "date").write_text(f"#!/bin/sh\necho date >> {tmp_path / 'calls'}\nexec /bin/date \"$@\"\n")
    (bin_ / "date").chmod(0o755)
    before = time.time()
    out = run([shell, "-c", "\n".join(F.CLOCK)], env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})
    after = time.time()
    clock = F.parse_client(out.stdout).clock
    assert clock is not None and int(before) - 2 <= clock <= after + 1, (out.stdout, before)
    assert not (tmp_path / "calls").exists()


DEBIAN_OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                     "ID=debian\nHOME_URL=\"https://www.debian.org/\"\n")
RHEL_OS_RELEASE = ('NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
                   "PLATFORM_ID='platform:el9'\nANSI_COLOR=\"0;32\"")   # no final newline


def _hostile_os_release(mark):
    return (f"$(touch {mark}-subst)\n`touch {mark}-bq`\nID=debian; touch {mark}-semi\n"
            f"ID_LIKE=\"$(touch {mark}-like)\"\nVERSION_ID=1 touch {mark}-env\ntouch {mark}-plain\n")


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize(("text", "want"), [
    (DEBIAN_OS_RELEASE, ("debian", ())),
    (RHEL_OS_RELEASE, ("rocky", ("rhel", "centos", "fedora"))),
    ("", ("unknown", ())),
    (None, ("unknown", ())),          # no os-release at all
], ids=["debian", "rhel-no-final-newline", "empty", "missing"])
def test_I2_os_release_is_read_as_text_never_sourced(shell, tmp_path, text, want):
    """The probe's OS line from a real os-release, under dash and bash: ID and ID_LIKE, quotes stripped."""
    path = tmp_path / "os-release"
    if text is not None:
        path.write_text(text)
    script = "\n".join(F.OS_RELEASE).replace("/etc/os-release", str(path))
    out = run([shell, "-c", script])
    assert out.returncode == 0 and out.stderr == "", out.stderr
    fact = F.parse_client(out.stdout)
    assert (fact.os_id, fact.os_like) == want


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_I2_a_hostile_os_release_runs_nothing(shell, tmp_path):
    """Command substitutions, backticks, `ID=x; cmd` and bare commands in os-release: each would run as root
    under `. /etc/os-release`; read as text, nothing runs and ID is the literal rest of its line."""
    path, mark = tmp_path / "os-release", tmp_path / "ran"
    path.write_text(_hostile_os_release(mark))
    script = F.client_script(()).replace("/etc/os-release", str(path))
    assert "echo \"TIME" in script            # tests/unit/fake_hosts.py recognises the probe by it
    out = run([shell, "-c", script])
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["os-release"]
    os_line = next(line for line in out.stdout.splitlines() if line.startswith("OS "))
    assert os_line == f"OS debian; touch {mark}-semi $(touch {mark}-like)"     # the text, not its effect
    assert F.parse_client(out.stdout).os_id == "debian;"
    # the control: sourcing the same file runs it
    run([shell, "-c", f". {path}"])
    assert (tmp_path / "ran-semi").exists() and (tmp_path / "ran-subst").exists()


def test_gather_client_asks_the_runtimes_in_the_same_round_trip():
    """``runtimes``: runtimes.script is appended to the probe (one command) and its RT/RTX lines parsed."""
    fleet = FakeFleet()
    ok = base64.b64encode(b'{"message":"login attempt failed with status: 401 Unauthorized"}').decode()
    fleet.host("c1").on(r"printf 'RT %s", f"TIME 1\nOS debian\nL /etc/docker/certs.d/reg/ca.crt\nRT docker reg 0 {ok}\n"
                        "RTX podman absent neither podman nor skopeo is installed\n")
    targets = (RT.Target("docker", ("reg",)), RT.Target("podman", ("reg",)))
    remote = FakeTransport(fleet, fleet.host("c1"))
    found = F.gather_client(remote, (), folders=("/etc/docker/certs.d/reg",), runtimes=targets, sudo=True)
    (call,) = fleet.calls
    assert call.sudo and call.command.endswith(RT.script(targets)) and "L $x" in call.command
    assert found.listing == ("/etc/docker/certs.d/reg/ca.crt",)
    assert [(c.target, c.state) for c in RT.judge(found.runtimes, targets, found.listing)] == [
        ("docker", "ok"), ("podman", "absent")]
    assert F.parse_client("TIME 1\n").runtimes == RT.Outcome()   # nothing asked: nothing answered


def test_gather_client_probes_again_with_sudo_only_when_a_file_was_unreadable():
    path = "/etc/docker/certs.d/reg/ca.crt"
    fleet, asked = FakeFleet(), []
    host = fleet.host("c1").on("TIME", f"TIME 1\nU {path}\n", times=1)
    host.on("TIME", f"TIME 1\nF {'a' * 64} 644 root 1 {path}\n")
    found = F.gather_client(FakeTransport(fleet, host), (path,), before_sudo=lambda: asked.append(True))
    assert [c.sudo for c in fleet.calls] == [False, True] and asked == [True]
    assert found.unreadable == () and found.files[path].sha256 == "a" * 64
    fleet.calls.clear()
    F.gather_client(FakeTransport(fleet, host), (path,))
    assert [c.sudo for c in fleet.calls] == [False]   # readable: one look, no sudo
