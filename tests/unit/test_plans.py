"""Plans as data: (inventory, recorded facts) -> expected writes/removes/restarts for clients,
and upload/link/recreate/start decisions for the registry host. The shell that carries a plan
out is run for real against a temp folder, with fake docker/chown/dockerd on PATH.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fabfile import certs
from fabfile import clients as C
from fabfile import facts as F
from fabfile import registry as R
from fabfile import runtimes as RT
from fabfile.errors import RemoteError
from fabfile.pki import Material
from fabfile.registry import steps as RP
from fabfile.registry.failure import restart_warning
from fabfile.registry.scripts import STOP_TRIES
from fabfile.sh import Exit
from fabfile.steps import Kind

from _support import CASES, NOW, file_line, make_client, make_registry, root_owned_env, run, sha256

CURRENT = C.Anchor("current", b"-----BEGIN CERTIFICATE-----\ncurrent\n-----END CERTIFICATE-----\n")
NEXT = C.Anchor("next", b"-----BEGIN CERTIFICATE-----\nnext\n-----END CERTIFICATE-----\n")
NOW_EPOCH = 1_767_225_600
DSTART = NOW_EPOCH - 3600
OS_LINES = {"debian": "OS debian ", "rhel": "OS centos rhel fedora", "alpine": "OS alpine "}
DEB_STORE = "/usr/local/share/ca-certificates"
RHEL_STORE = "/etc/pki/ca-trust/source/anchors"


# --------------------------------------------------------------------------- client: desired state


@pytest.mark.parametrize(("names", "port", "dirs"), [
    (("reg.example",), 443, ["reg.example", "reg.example:443"]),
    (("reg.example",), 5000, ["reg.example:5000"]),
    (("reg.example", "10.0.0.5"), 443, ["reg.example", "reg.example:443", "10.0.0.5", "10.0.0.5:443"]),
    (("reg.example", "reg.example"), 5000, ["reg.example:5000"]),
    (("::1",), 5000, ["[::1]:5000"]),
])
def test_F05_certs_d_dirs(names, port, dirs):
    assert C.certs_d_dirs(names, port) == dirs


def test_F05_ipv6_registry_on_443_uses_bracketed_folders():
    assert C.certs_d_dirs(("::1",), 443) == ["[::1]", "[::1]:443"]
    files = C.desired_files(make_client(trust=("containerd",), registry_names=("::1",)), make_registry(host="::1"),
                            (CURRENT,), None)
    servers = {f.content.decode().splitlines()[0] for f in files if f.path.endswith("hosts.toml")}
    assert servers == {'server = "https://[::1]"'}


def test_desired_files_per_target():
    reg = make_registry(port=5000)
    client = make_client(trust=("docker", "podman", "containerd", "os", "buildkit"))
    files = {f.path: f for f in C.desired_files(client, reg, (CURRENT,), "debian")}
    assert sorted(files) == sorted([
        "/etc/docker/certs.d/reg.example:5000/ca.crt",
        "/etc/containers/certs.d/reg.example:5000/ca.crt",
        "/etc/containerd/certs.d/reg.example:5000/ca.crt",
        "/etc/containerd/certs.d/reg.example:5000/hosts.toml",
        f"{DEB_STORE}/registry-tls-reg.example.crt",
        "/etc/buildkit/certs.d/reg.example:5000/ca.crt",
    ])
    assert all(f.content == CURRENT.pem for p, f in files.items() if p.endswith(".crt"))
    toml = files["/etc/containerd/certs.d/reg.example:5000/hosts.toml"].content.decode()
    assert toml == ('server = "https://reg.example:5000"\n\n[host."https://reg.example:5000"]\n'
                    '  capabilities = ["pull", "resolve", "push"]\n'
                    '  ca = ["/etc/containerd/certs.d/reg.example:5000/ca.crt"]\n')
    # 'os' with an unknown family contributes nothing (plan() refuses it, see below)
    assert not [f for f in C.desired_files(client, reg, (CURRENT,), None) if f.target == "os"]


def test_containerd_hosts_toml_for_443_names_the_server_without_port():
    files = C.desired_files(make_client(trust=("containerd",)), make_registry(), (CURRENT, NEXT), None)
    toml = {f.path: f.content.decode() for f in files}["/etc/containerd/certs.d/reg.example:443/hosts.toml"]
    assert toml.startswith('server = "https://reg.example"\n')
    assert ('ca = ["/etc/containerd/certs.d/reg.example:443/ca.crt", '
            '"/etc/containerd/certs.d/reg.example:443/registry-tls-next.crt"]') in toml


def test_L12_extra_globs_find_a_former_names_files_exactly(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    names = ["registry-tls-old.lab.crt", "registry-tls-old.lab_rotation.crt", "registry-tls-old.lab.example.crt",
             "registry-tls-other.lab.crt", "registry-tls-new.lab_rotation.crt", "registry-tls-new.lab.crt"]
    for name in names:
        (store / name).write_text("x")
    reg = make_registry(host="new.lab")
    globs = [(prefix.replace(C.OS_STORE["debian"][0], str(store)), suffix)
             for prefix, suffix in C.extra_globs(make_client(trust=("os",)), reg, ("old.lab",))
             if prefix.startswith(C.OS_STORE["debian"][0])]
    out = run(["sh", "-c", F.client_script((), tuple(globs))])
    found = sorted(line.split(" ", 1)[1].rsplit("/", 1)[1] for line in out.stdout.splitlines() if line[:2] == "X ")
    # the current name's anchor is a wanted path (not a glob); its labelled ones and every file of the old name
    assert found == ["registry-tls-new.lab_rotation.crt", "registry-tls-old.lab.crt", "registry-tls-old.lab_rotation.crt"]


def test_probe_paths_cover_every_os_family_and_extra_globs_every_store():
    client = make_client(trust=("docker", "os"))
    paths = C.probe_paths(client, make_registry(), (CURRENT,))
    assert f"{DEB_STORE}/registry-tls-reg.example.crt" in paths and f"{RHEL_STORE}/registry-tls-reg.example.crt" in paths
    assert list(paths) == sorted(paths)
    globs = C.extra_globs(client, make_registry())
    assert globs[:2] == (("/etc/docker/certs.d/reg.example/registry-tls-", ".crt"),
                         ("/etc/docker/certs.d/reg.example:443/registry-tls-", ".crt"))
    assert [(g[0].rsplit("/", 1)[0], g[1]) for g in globs[2:]] == [(DEB_STORE, ".crt"), (RHEL_STORE, ".crt")]
    assert all(g[0].rsplit("/", 1)[1].startswith("registry-tls-reg.example") for g in globs[2:])


# --------------------------------------------------------------------------- client: plans as data


@dataclass
class ClientCase:
    id: str
    client: dict = field(default_factory=dict)          # overrides of make_client()
    port: int = 443
    os: str = "debian"
    anchors: tuple = (CURRENT,)
    installed: str = "none"                             # none | all
    tweak: dict = field(default_factory=dict)           # path -> (content, mode, owner, mtime) overriding 'all'
    extra: tuple = ()
    dstart: int | None = DSTART
    clock: int = NOW_EPOCH
    # expectations
    writes: tuple = ()
    removes: tuple = ()
    refresh: str | None = None
    restart: bool = False
    reason: str = ""
    warnings: tuple = ()                                 # fragments, in order


DEB_ANCHOR = f"{DEB_STORE}/registry-tls-reg.example.crt"
RHEL_ANCHOR = f"{RHEL_STORE}/registry-tls-reg.example.crt"
BOTH_443 = ("/etc/docker/certs.d/reg.example/ca.crt", "/etc/docker/certs.d/reg.example:443/ca.crt")

CLIENT_CASES = [
    ClientCase("F05-443-nothing-installed-writes-both-dir-forms",
               client={"registry_names": ("reg.example", "10.0.0.5")},
               writes=(*BOTH_443, "/etc/docker/certs.d/10.0.0.5/ca.crt", "/etc/docker/certs.d/10.0.0.5:443/ca.crt")),
    ClientCase("F05-5000-nothing-installed", port=5000, client={"registry_names": ("reg.example", "10.0.0.5")},
               writes=("/etc/docker/certs.d/reg.example:5000/ca.crt", "/etc/docker/certs.d/10.0.0.5:5000/ca.crt")),
    ClientCase("F26-everything-installed-empty-plan", installed="all"),
    ClientCase("wrong-mode-rewritten", installed="all",
               tweak={BOTH_443[1]: (CURRENT.pem, 0o600, "root", 1)}, writes=(BOTH_443[1],)),
    ClientCase("wrong-owner-rewritten", installed="all",
               tweak={BOTH_443[0]: (CURRENT.pem, 0o644, "deploy", 1)}, writes=(BOTH_443[0],)),
    ClientCase("stale-content-rewritten", installed="all",
               tweak={BOTH_443[0]: (NEXT.pem, 0o644, "root", 1)}, writes=(BOTH_443[0],)),
    ClientCase("extra-next-anchor-removed", installed="all",
               extra=("/etc/docker/certs.d/reg.example/registry-tls-next.crt",),
               removes=("/etc/docker/certs.d/reg.example/registry-tls-next.crt",)),
    ClientCase("F23-next-anchor-installed-beside-current", anchors=(CURRENT, NEXT),
               writes=("/etc/docker/certs.d/reg.example/ca.crt", "/etc/docker/certs.d/reg.example/registry-tls-next.crt",
                       "/etc/docker/certs.d/reg.example:443/ca.crt",
                       "/etc/docker/certs.d/reg.example:443/registry-tls-next.crt")),
    ClientCase("F23-next-anchor-kept-while-rotating", anchors=(CURRENT, NEXT), installed="all",
               extra=("/etc/docker/certs.d/reg.example/registry-tls-next.crt",)),
    ClientCase("os-debian", client={"trust": ("docker", "os")}, writes=(*BOTH_443, DEB_ANCHOR),
               refresh="update-ca-certificates", restart=True, reason="the OS trust store changed"),
    ClientCase("os-rhel", os="rhel", client={"trust": ("os",)}, writes=(RHEL_ANCHOR,),
               refresh="update-ca-trust extract", restart=True, reason="the OS trust store changed"),
    ClientCase("F25-auto-no-restart-for-certs-d", writes=BOTH_443),
    ClientCase("F25-never-warns-instead-of-restarting", client={"trust": ("os",), "restart": "never"},
               writes=(DEB_ANCHOR,), refresh="update-ca-certificates",
               warnings=("dockerd must restart to load the OS trust store (restart: never; not restarted)",)),
    ClientCase("F25-always-restarts-on-any-change", client={"restart": "always"}, writes=BOTH_443, restart=True,
               reason="restart: always"),
    ClientCase("F26-always-without-change-does-nothing", client={"restart": "always", "trust": ("docker", "os")},
               installed="all"),
    ClientCase("F25-pending-restart-os-anchor-newer-than-dockerd", client={"trust": ("os",)}, installed="all",
               tweak={DEB_ANCHOR: (CURRENT.pem, 0o644, "root", DSTART + 10)}, restart=True,
               reason="OS trust store newer than dockerd"),
    ClientCase("F25-pending-restart-never-warns", client={"trust": ("os",), "restart": "never"}, installed="all",
               tweak={DEB_ANCHOR: (CURRENT.pem, 0o644, "root", DSTART + 10)},
               warnings=("dockerd must restart",)),
    ClientCase("F25-dockerd-not-running-nothing-to-restart", client={"trust": ("os",)}, dstart=None,
               writes=(DEB_ANCHOR,), refresh="update-ca-certificates", warnings=("dockerd is not running",)),
    ClientCase("stale-os-anchor-removed-and-refreshed", client={"trust": ("os",)}, installed="all",
               extra=(f"{DEB_STORE}/registry-tls-reg.example-next.crt",),
               removes=(f"{DEB_STORE}/registry-tls-reg.example-next.crt",), refresh="update-ca-certificates",
               restart=True, reason="the OS trust store changed"),
    ClientCase("unsupported-os-fine-without-os-target", os="alpine", writes=BOTH_443),
    ClientCase("F19-clock-120s-ahead-warns", installed="all", clock=NOW_EPOCH + 120,
               warnings=("clock differs from this machine by +120s; a fresh certificate may be 'not yet valid'",)),
    ClientCase("F19-clock-120s-behind-warns", installed="all", clock=NOW_EPOCH - 120,
               warnings=("clock differs from this machine by -120s",)),
    ClientCase("F19-clock-30s-off-is-fine", installed="all", clock=NOW_EPOCH - 30),
]


def client_output(case: ClientCase, client, reg) -> tuple[str, tuple[str, ...]]:
    """The probe output a host in this state prints (as facts.client_script would)."""
    paths = C.probe_paths(client, reg, case.anchors)
    family = {"debian": "debian", "rhel": "rhel"}.get(case.os)
    lines = [f"TIME {case.clock}", OS_LINES[case.os]]
    installed = {}
    if case.installed == "all":
        installed = {f.path: (f.content, 0o644, "root", DSTART - 100)
                     for f in C.desired_files(client, reg, case.anchors, family)}
    installed.update(case.tweak)
    lines += [file_line(path, *installed[path]) if path in installed else f"M {path}" for path in paths]
    lines += [f"X {x}" for x in case.extra]
    if case.dstart is not None:
        lines.append(f"DSTART {case.dstart}")
    return "\n".join(lines) + "\n", paths


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[c.id for c in CLIENT_CASES])
def test_client_plan(case):
    client, reg = make_client(**case.client), make_registry(port=case.port)
    output, paths = client_output(case, client, reg)
    todo = C.plan(client, reg, case.anchors, F.parse_client(output, paths), now=NOW_EPOCH)
    assert sorted(f.path for f in todo.writes) == sorted(case.writes)
    assert todo.removes == case.removes
    refresh, restart = todo.step(Kind.REFRESH_STORE), todo.step(Kind.RESTART_DOCKERD)
    assert (refresh.target if refresh else None) == case.refresh
    assert (restart is not None) is case.restart
    if case.restart:
        assert restart.why == case.reason
    # the steps in the order they run: writes, removals, the store's refresh (one script), then the restart
    assert todo.kinds == ((Kind.WRITE_FILE,) * len(case.writes) + (Kind.REMOVE_FILE,) * len(case.removes)
                          + (Kind.REFRESH_STORE,) * bool(case.refresh) + (Kind.RESTART_DOCKERD,) * case.restart)
    assert len(todo.warnings) == len(case.warnings), todo.warnings
    for got, fragment in zip(todo.warnings, case.warnings):
        assert fragment in got
    assert todo.empty is not (case.writes or case.removes or case.restart)
    for f in todo.writes:
        assert f.sha256 == sha256(f.content)


def test_F26_client_plan_empty_describes_nothing():
    case = ClientCase("x", client={"trust": ("docker", "os", "containerd")}, installed="all")
    client, reg = make_client(**case.client), make_registry()
    output, paths = client_output(case, client, reg)
    todo = C.plan(client, reg, (CURRENT,), F.parse_client(output, paths), now=NOW_EPOCH)
    assert todo.empty and todo.describe() == [] and todo.warnings == ()


def test_client_plan_unsupported_os_with_os_target_is_a_remote_error():
    case = ClientCase("x", os="alpine", client={"trust": ("docker", "os")})
    client, reg = make_client(name="laptop", **case.client), make_registry()
    output, paths = client_output(case, client, reg)
    with pytest.raises(RemoteError) as err:
        C.plan(client, reg, (CURRENT,), F.parse_client(output, paths))
    assert err.value.host == "laptop" and err.value.status == "failed"
    assert "unsupported OS 'alpine'" in str(err.value) and "drop 'os' from trust" in str(err.value)


def test_F19_client_clock_far_behind_fails_the_host():
    case = ClientCase("x", installed="all", clock=NOW_EPOCH - 7200)
    client, reg = make_client(name="build-1"), make_registry()
    output, paths = client_output(case, client, reg)
    with pytest.raises(RemoteError) as err:
        C.plan(client, reg, (CURRENT,), F.parse_client(output, paths), now=NOW_EPOCH)
    assert err.value.host == "build-1" and "7200" in str(err.value)


def test_os_store_stale_anchor_glob_spares_other_registries():
    client, reg = make_client(trust=("os",)), make_registry()
    other = f"{DEB_STORE}/registry-tls-reg.example.org.crt"  # installed by this tool for registry reg.example.org
    prefix, suffix = next(g for g in C.extra_globs(client, reg) if g[0].startswith(DEB_STORE))
    reported = other.startswith(prefix) and other.endswith(suffix)  # what the probe's `for x in prefix*suffix` does
    output = f"OS debian\n{file_line(DEB_ANCHOR, CURRENT.pem)}\nDSTART {DSTART}\n" + (f"X {other}\n" if reported else "")
    todo = C.plan(client, reg, (CURRENT,), F.parse_client(output, (DEB_ANCHOR,)))
    assert other not in todo.removes
    assert todo.empty


def test_client_plan_describe_lists_each_action():
    case = ClientCase("x", client={"trust": ("os",)}, extra=(f"{DEB_STORE}/registry-tls-reg.example-old.crt",))
    client, reg = make_client(**case.client), make_registry()
    output, paths = client_output(case, client, reg)
    todo = C.plan(client, reg, (CURRENT,), F.parse_client(output, paths))
    assert todo.describe() == [f"write {DEB_ANCHOR}", f"remove {DEB_STORE}/registry-tls-reg.example-old.crt",
                               "run update-ca-certificates", "restart dockerd (the OS trust store changed)"]


def test_buildkit_toml_block_is_ours_only_and_idempotent():
    reg = make_registry(port=5000)
    current = (b"debug = true\n\n# BEGIN registry-tls reg.example:5000\nold block\n# END registry-tls reg.example:5000\n"
               b"[registry.\"other:5000\"]\n  http = true\n")
    new = C.buildkit_toml(current, reg, (CURRENT,))
    assert new == (b'debug = true\n\n[registry."other:5000"]\n  http = true\n\n'
                   b'# BEGIN registry-tls reg.example:5000\n[registry."reg.example:5000"]\n'
                   b'  ca = ["/etc/buildkit/certs.d/reg.example:5000/ca.crt"]\n# END registry-tls reg.example:5000\n')
    assert C.buildkit_toml(new, reg, (CURRENT,)) == new
    assert C.buildkit_toml(None, reg, (CURRENT,)).startswith(b"# BEGIN registry-tls reg.example:5000\n")


def test_F26_buildkit_plan_rewrites_the_toml_only_when_it_differs():
    client, reg = make_client(trust=("buildkit",)), make_registry()
    certs_path = "/etc/buildkit/certs.d/reg.example/ca.crt"
    fresh = C.plan(client, reg, (CURRENT,), F.parse_client(f"OS debian\nM {certs_path}\n", (certs_path,)))
    assert sorted(f.path for f in fresh.writes) == [C.BUILDKIT_TOML, certs_path]
    assert "restart buildkitd" in fresh.warnings[0]
    toml = C.buildkit_toml(None, reg, (CURRENT,))
    done = f"OS debian\n{file_line(certs_path, CURRENT.pem)}\nB {base64.b64encode(toml).decode()}\n"
    assert C.plan(client, reg, (CURRENT,), F.parse_client(done, (certs_path,))).empty


# --------------------------------------------------------------------------- client: the apply script, run


@pytest.fixture
def fakebin(tmp_path) -> Path:
    """A folder of fake commands (docker, dockerd, chown, ...) that log their argv to calls.log."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def fake(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {shlex.quote(str(folder / 'calls.log'))}\n{body}\n")
    path.chmod(0o755)


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def sh(script: str, fakebin: Path, **env) -> subprocess.CompletedProcess:
    return run(["bash", "-c", script], env={**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}", **env})


def test_F24_apply_script_writes_atomically_with_mode_and_removes_stale(tmp_path, fakebin):
    fake(fakebin, "chown", "exit 0")  # the real one needs root
    fake(fakebin, "update-ca-certificates", "exit 0")
    root = tmp_path / "root"
    keep = root / "etc/docker/certs.d/reg.example/ca.crt"
    stale = root / "etc/docker/certs.d/reg.example/registry-tls-next.crt"
    stale.parent.mkdir(parents=True)
    keep.write_bytes(b"old")
    stale.write_bytes(b"stale")
    odd = root / "it's a dir/ca.crt"
    todo = C.ClientPlan(C.file_steps(
        writes=(C.WantFile(str(keep), CURRENT.pem, "docker"), C.WantFile(str(odd), NEXT.pem, "os")),
        removes=(str(stale),), refresh="update-ca-certificates"))
    out = sh("\n".join(C.apply_script(todo)), fakebin)
    assert out.returncode == 0, out.stderr
    assert keep.read_bytes() == CURRENT.pem and odd.read_bytes() == NEXT.pem
    assert stat.S_IMODE(keep.stat().st_mode) == 0o644 and stat.S_IMODE(odd.stat().st_mode) == 0o644
    assert not stale.exists()
    assert sorted(p.name for p in keep.parent.iterdir()) == ["ca.crt"]  # no .registry-tls.XXXXXX temp file left
    # as root with umask 022 the shell creates the temp files 0644 root:root: no chmod/chown processes
    assert [c.split()[0:2] for c in calls(fakebin)] == [["update-ca-certificates"]]


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_text_is_written_by_printf_and_anything_else_through_base64_byte_for_byte(tmp_path, fakebin, shell):
    """PEM and TOML go as one quoted word to the shell's printf (no base64 process); bytes that are not
    printable ASCII (a NUL, a control character, UTF-8, no final newline) go through base64."""
    contents = {"pem.crt": CURRENT.pem, "quotes.toml": b"server = 'it''s' \"x\" $HOME `id` \\n\n",
                "nul.bin": b"a\x00b", "ctl.bin": b"\x1b[31m", "utf8.txt": "é".encode(), "bare": b"no newline"}
    writes = tuple(C.WantFile(str(tmp_path / name), data, "docker") for name, data in contents.items())
    steps = C.file_steps(writes=writes, removes=(), refresh=None)
    assert [s.script.split(" ", 1)[0] for s in steps] == ["w", "w", "wb", "wb", "wb", "w"]
    out = run([shell, "-c", "\n".join(C.apply_script(C.ClientPlan(steps)))],
              env={**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stderr
    assert {name: (tmp_path / name).read_bytes() for name in contents} == contents
    assert calls(fakebin) == []


def test_apply_then_tls_check_in_one_script_reads_the_files_just_written(tmp_path, fakebin):
    """trust() sends apply_script + runtimes.script as one script: shell options set for the writes
    (noclobber: the buildkit check writes its CA bundle with '>') must not keep the TLS check from
    reading what was written."""
    fake(fakebin, "openssl", 'for a; do [ "$p" = -CAfile ] && cat "$a" >> ' + shlex.quote(str(tmp_path / "seen")) + '; p=$a; done')
    ca = tmp_path / "etc/buildkit/certs.d/reg.example:443/ca.crt"
    todo = C.ClientPlan(C.file_steps(writes=(C.WantFile(str(ca), CURRENT.pem, "buildkit"),)))
    targets = (RT.Target("buildkit", ("reg.example:443",), (str(ca),)),)
    out = sh("\n".join(C.apply_script(todo)) + "\n" + RT.script(targets), fakebin)
    checks = RT.judge(RT.parse(out.stdout), targets)
    assert out.returncode == 0 and [c.state for c in checks] == ["ok"], out.stdout + out.stderr
    assert (tmp_path / "seen").read_bytes() == CURRENT.pem


def test_apply_script_fails_when_the_store_refresh_fails(tmp_path, fakebin):
    fake(fakebin, "chown", "exit 0")
    fake(fakebin, "update-ca-trust", "exit 1")
    todo = C.ClientPlan(C.file_steps(writes=(C.WantFile(str(tmp_path / "a.crt"), b"x", "os"),),
                                     refresh="update-ca-trust extract"))
    out = sh("\n".join(C.apply_script(todo)), fakebin)
    assert out.returncode == 1 and "update-ca-trust extract failed" in out.stderr


@pytest.mark.parametrize(("info", "validate", "force", "code", "last"), [
    ("false 2", "0", False, 3, "RUNNING 2"),                  # containers would stop: refused
    ("false 2", "0", True, 0, "UP"),                          # --force
    ("true 5", "0", False, 0, "UP"),                          # live-restore on
    ("false 0", "0", False, 0, "UP"),                         # nothing running
    ("false 0", "1", False, 4, "INVALID unknown key in daemon.json"),  # dockerd --validate first (F25)
])
def test_F25_restart_script_gates(fakebin, info, validate, force, code, last):
    fake(fakebin, "docker", f'[ "$1" = info ] && [ -n "$3" ] && echo "{info}"; exit 0')
    fake(fakebin, "dockerd", 'case "$1" in --help) echo "  --validate  Validate daemon configuration";; '
                             f'--validate) echo "unknown key in daemon.json" >&2; exit {validate};; esac')
    fake(fakebin, "systemctl", "exit 0")
    out = sh(C.restart_script("systemctl restart docker", force=force), fakebin)
    assert (out.returncode, out.stdout.strip().splitlines()[-1]) == (code, last)
    restarted = any(c.startswith("systemctl restart docker") for c in calls(fakebin))
    assert restarted is (code == 0)
    assert code == 0 or C.RESTART_ERRORS[code]


def test_F25_restart_script_reports_a_failed_restart(fakebin):
    fake(fakebin, "docker", "exit 0")
    fake(fakebin, "dockerd", "exit 0")
    fake(fakebin, "systemctl", "exit 1")
    out = sh(C.restart_script("systemctl restart docker", force=False), fakebin)
    assert (out.returncode, out.stdout.strip()) == (5, "RESTARTFAILED")


# --------------------------------------------------------------------------- registry: desired state


@pytest.fixture(scope="module")
def material(self_signed) -> Material:
    cert, key = self_signed
    return Material(chain=(cert,), key=key, anchor=cert)


@pytest.fixture(scope="module")
def other_material(key_cache, spec) -> Material:
    key = key_cache("other-server")
    cert = certs.build_self_signed(spec, key, NOW)
    return Material(chain=(cert,), key=key, anchor=cert)


HTPASSWD = b"registry-tls-health:$2b$10$" + b"h" * 53 + b"\n"


def want(material, **registry_overrides) -> R.Desired:
    return R.desired(make_registry(**registry_overrides), material, HTPASSWD)


def test_run_command_carries_the_seed_environment_and_directory_mounts(material):
    d = want(material)
    argv = shlex.split(d.spec.run_command("docker"))
    assert argv[:7] == ["docker", "run", "-d", "--name", "registry", "--restart=always", "-p"] and argv[7] == "443:443"
    env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-e")
    assert "REGISTRY_STORAGE_DELETE_ENABLED" not in env   # registry.env: from the env file, never argv (M3)
    assert argv[argv.index("--env-file") + 1] == "/var/lib/docker-registry/registry.env" == d.env_path
    env.update(line.split("=", 1) for line in d.env_file.decode().splitlines())
    assert env == {
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/data/auth/registry.password",
        "REGISTRY_HTTP_ADDR": "0.0.0.0:443",
        "REGISTRY_HTTP_TLS_CERTIFICATE": "/data/certs/registry_auth.crt",
        "REGISTRY_HTTP_TLS_KEY": "/data/certs/registry_auth.key",
        "REGISTRY_HTTP_TLS_MINIMUMTLS": "tls1.2",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
    }
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
    assert mounts == [f"{d.cert_dir}:/data/certs:ro", "/var/lib/docker-registry/auth:/data/auth:ro",
                      "/var/lib/docker-registry/storage:/var/lib/registry"]
    assert argv[-3:] == ["--label", f"{R.SPEC_LABEL}={d.spec.digest}", "registry:2"]


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_M3_env_values_are_in_a_0600_file_never_in_the_run_command_or_the_plan(material):
    d = want(material, env=(("REGISTRY_STORAGE_S3_SECRETKEY", SECRET), ("REGISTRY_HTTP_SECRET", "s3cr3t=x y")))
    run = d.spec.run_command("docker")
    assert SECRET not in run and "s3cr3t" not in run and "--env-file /var/lib/docker-registry/registry.env" in run
    assert d.env_file == f"REGISTRY_STORAGE_S3_SECRETKEY={SECRET}\nREGISTRY_HTTP_SECRET=s3cr3t=x y\n".encode()
    p = registry_plan(d, files="none", container=None)
    assert Kind.WRITE_ENV in p.kinds and Kind.RECREATE in p.kinds
    assert Kind.WRITE_ENV not in registry_plan(d).kinds and registry_plan(d).empty
    text = "\n".join(p.describe())
    assert "write registry.env (registry.env, values not shown)" in text
    assert SECRET not in text and "s3cr3t" not in text


def test_M3_a_changed_env_value_is_noticed_by_key_and_the_file_is_rewritten(material):
    old = want(material, env=(("REGISTRY_HTTP_SECRET", "old-value"),))
    new = want(material, env=(("REGISTRY_HTTP_SECRET", "new-value"),))
    inspect = {"Config": {"Labels": {R.SPEC_LABEL: old.spec.digest},
                          "Env": [f"{k}={v}" for k, v in old.spec.env]}}
    container = F.ContainerFact.from_inspect(inspect)
    diffs = new.spec.differences(container)
    assert "env REGISTRY_HTTP_SECRET" in diffs and not any("value" in x for x in diffs)
    assert old.spec.digest != new.spec.digest and old.env_file != new.env_file


def test_M3_rollback_restores_the_previous_env_file_and_cleanup_leaves_no_copy(material, tmp_path):
    d = want(material, env=(("REGISTRY_HTTP_SECRET", "v"),))
    prep = R.prepare_script(d)
    assert "cp -p --remove-destination" in prep and f"{d.env_path}.previous" in prep
    roll = R.rollback_script([RP.write_env(d)])
    assert f"mv -f {d.env_path}.previous {d.env_path}" in roll and f"else rm -f {d.env_path}; fi" in roll
    assert f"rm -f {d.htpasswd_path}.previous {d.env_path}.previous" in R.cleanup_script(d)
    assert f"rm -f {d.env_path}" in R.cleanup_script(want(material, env=()))


def test_F27_only_directories_are_mounted(material):
    """A single-file bind mount pins the inode: atomic replacement on the host would be invisible."""
    spec = want(material).spec
    destinations = {dst for _, dst, _ in spec.mounts}
    env = dict(spec.env)
    for var in ("REGISTRY_HTTP_TLS_CERTIFICATE", "REGISTRY_HTTP_TLS_KEY", "REGISTRY_AUTH_HTPASSWD_PATH"):
        assert env[var].rsplit("/", 1)[0] in destinations  # the file sits inside a mounted folder
    for src, dst, _ in spec.mounts:
        assert src.rsplit("/", 1)[-1].split("-")[0] in (".certs", "auth", "storage") and dst not in env.values()
        assert not src.endswith((".crt", ".key", ".password"))


def test_run_command_contains_no_secret(material):
    command = want(material).spec.run_command("docker")
    assert "PRIVATE" not in command and HTPASSWD.decode().strip() not in command
    for line in material.key_pem.decode().splitlines()[1:-1]:
        assert line not in command


def test_run_command_for_another_port_and_engine(material):
    argv = shlex.split(want(material, port=5000, engine="podman").spec.run_command("podman"))
    assert argv[0] == "podman" and "5000:5000" in argv and "REGISTRY_HTTP_ADDR=0.0.0.0:5000" in argv


def test_spec_digest_is_stable_and_tracks_what_matters(material, other_material):
    base = want(material).spec
    assert base.digest == want(material).spec.digest and len(base.digest) == 16
    for changed in (want(other_material).spec, want(material, port=5000).spec,
                    want(material, env=(("X", "1"),)).spec, want(material, image="registry:3").spec,
                    want(material, restart_policy="unless-stopped").spec, want(material, data_dir="/srv/r").spec):
        assert changed.digest != base.digest


def test_desired_layout(material):
    d = want(material)
    fp16 = material.fingerprint.replace(":", "").lower()[:16]
    assert d.cert_dir == f"/var/lib/docker-registry/.certs-{fp16}"
    assert d.paths == (f"{d.cert_dir}/registry_auth.crt", f"{d.cert_dir}/registry_auth.key",
                       "/var/lib/docker-registry/auth/registry.password", "/var/lib/docker-registry/registry.env")


# --------------------------------------------------------------------------- registry: plans as data


def inspect_of(spec: R.ContainerSpec, **changes) -> dict:
    """`docker inspect` of a container created by spec.run_command (what the engine would print)."""
    data = {
        "Id": "c0ffee" * 10 + "abcd", "Name": f"/{spec.name}", "Image": "sha256:" + "1" * 64,
        "State": {"Status": "running", "Running": True}, "RestartCount": 0,
        "Config": {"Env": [f"{k}={v}" for k, v in spec.env] + ["PATH=/usr/bin"],
                   "Labels": {R.SPEC_LABEL: spec.digest}},
        "Mounts": [{"Type": "bind", "Source": src, "Destination": dst, "RW": not ro} for src, dst, ro in spec.mounts],
        "HostConfig": {"PortBindings": {f"{spec.port}/tcp": [{"HostIp": "", "HostPort": str(spec.port)}]},
                       "RestartPolicy": {"Name": spec.restart_policy, "MaximumRetryCount": 0}},
    }
    for key, value in changes.items():
        node, *path = key.split(".")
        target = data
        for part in [node, *path][:-1]:
            target = target[part]
        target[[node, *path][-1]] = value
    return data


def registry_output(d: R.Desired, *, files="all", link="current", container="match", previous=None,
                    image="sha256:" + "1" * 64, engine="up", key_mode=0o600, htpasswd=HTPASSWD) -> str:
    lines = [f"TIME {NOW_EPOCH}"]
    contents = {d.paths[0]: (d.cert_pem, 0o644), d.paths[1]: (d.key_pem, key_mode), d.paths[2]: (htpasswd, 0o600),
                d.paths[3]: (d.env_file, 0o600)}
    present = {"all": d.paths, "none": (), "htpasswd-only": d.paths[2:3]}[files]
    lines += [file_line(path, contents[path][0], contents[path][1]) if path in present else f"M {path}"
              for path in d.paths]
    lines.append("LINK " + {"current": d.cert_dir_name, None: "NONE"}.get(link, link))
    lines.append(f"ENGINE {engine}")
    if container is not None:
        data = inspect_of(d.spec) if container == "match" else container
        lines.append("INSPECT " + json.dumps(data))
    if previous is not None:
        lines.append("PREVIOUS " + json.dumps(previous))
    if image:
        lines.append(f"IMAGE {image}")
    return "\n".join(lines)


def registry_plan(d: R.Desired, **kw) -> R.Plan:
    return R.plan(d, F.parse_registry(registry_output(d, **kw), d.paths))


def test_registry_plan_bare_host(material):
    todo = registry_plan(want(material), files="none", link=None, container=None, image=None)
    assert todo.kinds == (Kind.WRITE_CERTS, Kind.WRITE_USERS, Kind.WRITE_ENV, Kind.SWITCH_LINK, Kind.RECREATE)
    assert todo.identity.container == ("no container yet",) and todo.step(Kind.RECREATE).why == "no container yet"
    assert (todo.has_container, todo.step(Kind.SWITCH_LINK).undo) == (False, None)   # no old link to go back to


def test_F26_registry_plan_empty_when_everything_matches(material):
    d = want(material)
    todo = registry_plan(d)
    assert todo.empty and todo.describe() == [] and not todo.identity.container
    assert todo == R.Plan(has_container=True)


def test_registry_plan_seed_container_is_recreated_and_its_images_migrated(material):
    d = want(material)
    seed = json.loads((CASES / "inspect" / "docker_seed.json").read_text())
    todo = registry_plan(d, files="none", link="DIR", container=seed,
                         image="sha256:b8604a3fe8543c9e6afc29550de05b36cd162a97aa9b2833864ea8a5be11f3e2")
    volume = seed["Mounts"][1]["Source"]
    recreate = todo.step(Kind.RECREATE)
    assert recreate and todo.step(Kind.COPY_IMAGES).target == volume and f"cp -a {volume}/. " in recreate.script
    reasons = todo.identity.container
    assert reasons[0] == "container was not created by registry-tls"
    assert "env REGISTRY_HTTP_TLS_MINIMUMTLS" in reasons  # named, its value never shown
    assert f"/var/lib/registry: volume volume -> bind {d.registry.data_dir}/storage" in reasons
    assert todo.kinds[:4] == (Kind.WRITE_CERTS, Kind.WRITE_USERS, Kind.WRITE_ENV, Kind.SWITCH_LINK)
    assert todo.has_container
    assert ".certs-legacy" in todo.step(Kind.SWITCH_LINK).script   # the seed's plain folder is kept
    lines = todo.describe()
    assert f"copy images from volume {volume} to storage/" in lines
    assert lines[-1].startswith("re-create container registry: container was not created by registry-tls")


def test_registry_plan_new_certificate_recreates(material, other_material):
    old, new = want(other_material), want(material)
    container = inspect_of(old.spec)  # running with the previous certificate
    todo = R.plan(new, F.parse_registry(
        registry_output(new, files="htpasswd-only", link=old.cert_dir_name, container=container), new.paths))
    assert todo.kinds == (Kind.WRITE_CERTS, Kind.WRITE_ENV, Kind.SWITCH_LINK, Kind.RECREATE)
    assert todo.identity.container == ("certificate",)
    assert f"ln -sfn {old.cert_dir_name} " in todo.step(Kind.SWITCH_LINK).undo   # a rollback points back


K = Kind
REGISTRY_CASES = [
    # (id, registry_output kwargs given the desired spec, expected: the plan's step kinds in order, and maybe
    # has_container and reasons (identity.container))
    ("stopped-container-is-started", lambda s: {"container": inspect_of(s, **{"State.Running": False})},
     {"kinds": (K.START,)}),
    ("crash-looping-container-of-ours-is-started-not-recreated",
     lambda s: {"container": inspect_of(s, **{"State.Running": False, "RestartCount": 7})},
     {"kinds": (K.START,)}),
    ("image-updated", lambda s: {"image": "sha256:" + "2" * 64},
     {"kinds": (K.RECREATE,), "reasons": ("image registry:2 was updated",)}),
    ("restart-policy-changed", lambda s: {"container": inspect_of(s, **{"HostConfig.RestartPolicy": {"Name": "no"}})},
     {"kinds": (K.RECREATE,), "reasons": ("restart policy: 'no' -> 'always'",)}),
    ("port-mapping-changed", lambda s: {"container": inspect_of(s, **{"HostConfig.PortBindings": {
        "443/tcp": [{"HostIp": "", "HostPort": "8443"}]}})},
     {"kinds": (K.RECREATE,), "reasons": ("port mapping -> 443:443",)}),
    ("env-changed-by-hand", lambda s: {"container": inspect_of(s, **{"Config.Env": ["REGISTRY_AUTH=none"]})},
     {"kinds": (K.RECREATE,)}),
    ("F27-htpasswd-only-no-restart", lambda s: {"htpasswd": b"alice:$2b$10$" + b"a" * 53 + b"\n"},
     {"kinds": (K.WRITE_USERS,)}),
    ("F08-key-with-wrong-mode-reuploaded", lambda s: {"key_mode": 0o644},
     {"kinds": (K.WRITE_CERTS,)}),
    ("previous-without-main-is-restored", lambda s: {"container": None,
                                                     "previous": inspect_of(s, **{"State.Running": False})},
     {"kinds": (K.RESTORE_PREVIOUS, K.START), "has_container": True}),
    ("previous-beside-main-is-removed", lambda s: {"previous": inspect_of(s, **{"State.Running": False})},
     {"kinds": (K.REMOVE_PREVIOUS,)}),
    ("first-deploy", lambda s: {"files": "none", "link": None, "container": None},
     {"kinds": (K.WRITE_CERTS, K.WRITE_USERS, K.WRITE_ENV, K.SWITCH_LINK, K.RECREATE), "has_container": False,
      "reasons": ("no container yet",)}),
    ("files-and-link-lost-container-already-as-desired", lambda s: {
        "files": "htpasswd-only", "link": None, "htpasswd": b"old:$2b$10$" + b"b" * 53 + b"\n"},
     {"kinds": (K.WRITE_CERTS, K.WRITE_USERS, K.WRITE_ENV, K.SWITCH_LINK), "has_container": True, "reasons": ()}),
    ("restored-previous-of-another-spec-is-re-created",
     lambda s: {"container": None, "previous": inspect_of(s, **{"HostConfig.RestartPolicy": {"Name": "no"}})},
     {"kinds": (K.RESTORE_PREVIOUS, K.RECREATE), "reasons": ("restart policy: 'no' -> 'always'",)}),
]


@pytest.mark.parametrize(("make_kw", "expected"), [c[1:] for c in REGISTRY_CASES], ids=[c[0] for c in REGISTRY_CASES])
def test_registry_plan(material, make_kw, expected):
    d = want(material)
    todo = registry_plan(d, **make_kw(d.spec))
    got = {"kinds": todo.kinds, "has_container": todo.has_container, "reasons": todo.identity.container}
    assert {k: got[k] for k in expected} == expected
    assert not todo.empty and todo.describe()[-len(todo.steps):] == [s.what for s in todo.steps]


def test_registry_plan_restore_describes_first(material):
    d = want(material)
    todo = registry_plan(d, container=None, previous=inspect_of(d.spec, **{"State.Running": False}))
    assert todo.describe() == ["restore registry-previous left by an interrupted run",
                                "start container registry (it was stopped)"]


@pytest.mark.parametrize(("engine", "fragment"), [
    ("missing docker: not found", "docker: not found on the registry host; install it first"),
    ("down Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
     "docker daemon is not running (Cannot connect to the Docker daemon"),
])
def test_F16_registry_engine_missing_or_down(material, engine, fragment):
    d = want(material)
    with pytest.raises(RemoteError) as err:
        registry_plan(d, engine=engine, container=None)
    assert fragment in str(err.value) and err.value.host == "reg.example"


# --------------------------------------------------------------------------- registry: scripts, run


def test_registry_scripts_are_valid_shell(material):
    d = want(material, data_dir="/srv/it's here")
    files = [RP.write_certs(d), RP.write_users(d), RP.write_env(d)]
    full = [*files, RP.switch_link(d, "DIR"), RP.recreate(d, ("certificate",), has_old=True, volume=None)]
    relinked = [*files, RP.switch_link(d, ".certs-0011"), full[-1]]
    for script in (R.lock_script(d.registry.data_dir, "op host pid 1", take_over=True),
                   R.unlock_script(d.registry.data_dir), R.prepare_script(d),
                   R.switch_link_script(d.registry.data_dir, d.cert_dir_name, legacy=True),
                   R.recreate_script("docker", d.spec, has_old=True, migrate_from="/var/lib/docker/volumes/x/_data",
                                     data_dir=d.registry.data_dir),
                   R.rollback_script(full), R.rollback_script(relinked), R.rollback_script([]),
                   R.keep_failed_script("podman", "reg'istry", "reg'istry-failed-20261202T003605Z"),
                   R.cleanup_script(d)):
        out = run(["bash", "-n", "-c", script])
        assert out.returncode == 0, (out.stderr, script)


def test_F24_switch_link_moves_the_seed_folder_aside_and_swaps_atomically(tmp_path):
    data = tmp_path / "data"
    (data / "certs").mkdir(parents=True)
    (data / "certs" / "registry_auth.crt").write_text("seed")
    (data / ".certs-aaaa").mkdir()
    (data / ".certs-bbbb").mkdir()
    out = run(["bash", "-c", R.switch_link_script(str(data), ".certs-aaaa", legacy=True)])
    assert out.returncode == 0, out.stderr
    assert os.readlink(data / "certs") == ".certs-aaaa"
    assert (data / ".certs-legacy" / "registry_auth.crt").read_text() == "seed"
    out = run(["bash", "-c", R.switch_link_script(str(data), ".certs-bbbb", legacy=False)])
    assert out.returncode == 0 and os.readlink(data / "certs") == ".certs-bbbb"
    assert not (data / "certs.tmp").exists() and not (data / ".certs-bbbb" / ".certs-aaaa").exists()


def test_L4_the_lock_appears_with_its_owner_at_once_with_machine_id_and_age(tmp_path):
    data, env = tmp_path / "data", root_owned_env(tmp_path)
    script = R.lock_script(str(data), "alice pid 1 run ab12", take_over=False)
    assert R.apply.run_owner().split()[5] == (R.machine_id() or "-") and R.apply.run_owner() != R.apply.run_owner()
    assert "mkdir -p" in script and f"mkdir {data}/.registry-tls.lock" not in script   # no bare mkdir of the lock
    assert run(["bash", "-c", script], env=env).returncode == 0
    owner = (data / ".registry-tls.lock/owner").read_text().split()
    assert owner[:5] == ["alice", "pid", "1", "run", "ab12"] and owner[5].isdigit()
    assert [p.name for p in data.iterdir()] == [".registry-tls.lock"]   # no temporary folder left
    os.utime(data / ".registry-tls.lock", (0, 1000))   # an old lock folder
    (data / ".registry-tls.lock/owner").write_text("")  # whose owner cannot be read
    held = run(["bash", "-c", R.lock_script(str(data), "bob pid 2 run cd34", take_over=False)], env=env)
    age = int(held.stdout.split()[1])
    assert held.returncode == 7 and age > 3600 and held.stdout.split()[2:] == []
    assert [p.name for p in data.iterdir()] == [".registry-tls.lock"]


def test_F24_remote_lock_is_exclusive_and_can_be_taken_over(tmp_path):
    data, env = str(tmp_path / "data"), root_owned_env(tmp_path)
    first = run(["bash", "-c", R.lock_script(data, "alice pid 1", take_over=False)], env=env)
    assert (first.returncode, first.stdout.strip()) == (0, "LOCK")
    second = run(["bash", "-c", R.lock_script(data, "bob pid 2", take_over=False)], env=env)
    assert second.returncode == 7 and second.stdout.split()[0] == "LOCKED" and second.stdout.split()[1].isdigit()
    assert second.stdout.split()[2:5] == ["alice", "pid", "1"]
    third = run(["bash", "-c", R.lock_script(data, "bob pid 2", take_over=True)], env=env)
    assert third.returncode == 0
    assert (tmp_path / "data/.registry-tls.lock/owner").read_text().startswith("bob pid 2 ")
    assert run(["bash", "-c", R.unlock_script(data)]).returncode == 0
    assert not (tmp_path / "data/.registry-tls.lock").exists()


def lock_in(data: Path, env: dict) -> subprocess.CompletedProcess:
    return run(["sh", "-c", R.lock_script(str(data), "alice pid 1 run ab12", take_over=False)], env=env)


@pytest.mark.parametrize(("case", "unsafe", "offender", "why"), [
    ("parent others may write", {"srv": "0 1777 root"}, "srv", "is writable by group/other (owner root, mode 1777)"),
    ("parent group may write", {"srv": "0 775 root"}, "srv", "is writable by group/other (owner root, mode 775)"),
    ("parent of another user", {"srv": "1000 755 alice"}, "srv", "is owned by alice (uid 1000, mode 755, directory)"),
    ("data_dir of another user", {"srv/reg": "1000 700 alice"}, "srv/reg",
     "is owned by alice (uid 1000, mode 700, directory)"),
    ("the topmost is named", {"srv": "0 777 root", "srv/reg": "1000 700 alice"}, "srv",
     "is writable by group/other (owner root, mode 777)"),
    ("a link of another user", {"lnk": "1000 777 alice"}, "lnk", "is owned by alice (uid 1000, mode 777, symbolic link)"),
    ("a root link into a folder others may write", {"open": "0 1777 root"}, "open",
     "is writable by group/other (owner root, mode 1777)"),
])
def test_L2_lock_script_refuses_a_data_dir_root_may_not_trust_and_writes_nothing(tmp_path, case, unsafe, offender,
                                                                                 why):
    (tmp_path / "srv" / "reg").mkdir(parents=True)
    (tmp_path / "open").mkdir()
    (tmp_path / "lnk").symlink_to(tmp_path / "srv")
    data = tmp_path / ("lnk/reg" if "link" in case else "srv/reg/data")
    if "into" in case:
        (tmp_path / "srv" / "reg").rmdir()
        (tmp_path / "srv" / "reg").symlink_to(tmp_path / "open")
        data = tmp_path / "srv" / "reg" / "data"
    env = root_owned_env(tmp_path, **{str(tmp_path / k): v for k, v in unsafe.items()})
    out = lock_in(data, env)
    assert (out.returncode, out.stdout) == (Exit.UNSAFE_PATH, f"UNSAFE {tmp_path / offender} {why}\n"), out.stderr
    assert not data.exists() or not any(data.iterdir())   # no mkdir, no lock
    assert not any((tmp_path / "open").iterdir())


def test_L2_lock_script_takes_the_lock_under_trusted_folders_even_through_a_root_link(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "lnk").symlink_to(tmp_path / "srv")
    out = lock_in(tmp_path / "lnk" / "reg", root_owned_env(tmp_path))
    assert (out.returncode, out.stdout) == (0, "LOCK\n"), out.stderr
    assert (tmp_path / "srv" / "reg" / ".registry-tls.lock" / "owner").exists()


def test_L2_the_path_check_reads_the_real_stat():
    """No fake: / and /usr are root's 0755 on any Linux, /tmp is root's 1777 (sticky, others may write)."""
    check = R.scripts.TRUSTED_PATH_SH + "\ntrusted_path \"$1\""
    for shell in ("sh", "bash"):
        ok = run([shell, "-c", check, "-", "/usr/registry-tls-missing/reg"])
        assert (ok.returncode, ok.stdout) == (0, ""), ok.stderr
        tmp = run([shell, "-c", check, "-", "/tmp/registry-tls-missing/reg"])
        assert tmp.returncode == 1
        assert tmp.stdout.startswith("UNSAFE /tmp is writable by group/other (owner root, mode ")


@pytest.mark.parametrize(("state", "code", "last"), [
    ("false 0", 8, "EXITED"),  # exited at once
    ("true 3", 8, "EXITED"),   # crash loop under --restart=always; its output is read when it is kept aside
])
def test_F21_recreate_script_detects_a_container_that_does_not_stay_up(tmp_path, fakebin, material, state, code, last):
    fake(fakebin, "docker", f'case "$1" in inspect) echo "{state}";; '
                            'logs) echo "tls: private key does not match public key";; esac; exit 0')
    d = want(material, data_dir=str(tmp_path / "data"))
    out = sh(R.recreate_script("docker", d.spec, has_old=True, migrate_from=None, data_dir=d.registry.data_dir),
             fakebin)
    assert (out.returncode, out.stdout.strip().splitlines()[-1].strip()) == (code, last)
    verbs = [c.split()[1] for c in calls(fakebin)]
    assert verbs[:4] == ["rm", "rename", "stop", "run"]  # the old one is kept as <name>-previous, stopped


def test_recreate_script_migrates_the_anonymous_volume(tmp_path, fakebin, material):
    fake(fakebin, "docker", 'case "$1" in inspect) echo "true 0";; esac; exit 0')
    fake(fakebin, "sleep", "exit 0")  # the stability loop still needs 5 consecutive 'true 0' answers
    volume = tmp_path / "volumes/0d3f/_data"
    (volume / "docker/registry/v2/repositories/app").mkdir(parents=True)
    (volume / "docker/registry/v2/repositories/app/layer").write_text("blob")
    d = want(material, data_dir=str(tmp_path / "data"))
    (tmp_path / "data/storage").mkdir(parents=True)
    out = sh(R.recreate_script("docker", d.spec, has_old=False, migrate_from=str(volume),
                               data_dir=d.registry.data_dir), fakebin)
    assert (out.returncode, out.stdout.strip()) == (0, "RUNNING"), out.stderr
    assert (tmp_path / "data/storage/docker/registry/v2/repositories/app/layer").read_text() == "blob"
    docker_calls = [c.split()[1] for c in calls(fakebin) if c.startswith("docker ")]
    assert docker_calls[0] == "run" and docker_calls.count("inspect") == 6  # no old container: nothing renamed


def test_L12_cleanup_keeps_only_the_current_cert_folder_no_previous_key_no_seed_folder(tmp_path, fakebin, material):
    fake(fakebin, "docker", "exit 0")
    d = want(material, data_dir=str(tmp_path / "data"))
    data = tmp_path / "data"
    (data / "auth").mkdir(parents=True)
    for i, name in enumerate([".certs-oldest", ".certs-older", ".certs-previous", ".certs-legacy", d.cert_dir_name]):
        (data / name).mkdir()
        os.utime(data / name, (1_700_000_000 + i, 1_700_000_000 + i))
    out = sh(R.cleanup_script(d), fakebin)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in data.iterdir()) == sorted([d.cert_dir_name, "auth"])
    assert calls(fakebin) == ["docker rm -f registry-previous"]


def test_F21_keep_failed_keeps_only_the_latest_stopped_and_never_restarted_then_prints_its_output(fakebin):
    fake(fakebin, "docker", 'case "$1" in ps) printf "registry\\nregistry-previous\\nregistry-failed-20260101T000000Z'
                            '\\nregistry-failed-x\\nother-failed-1\\n";; '
                            'inspect) case "$*" in *RestartPolicy*) echo no;; *) echo "exited 2";; esac;; '
                            'logs) echo "panic: StorageDriver not registered: bogus-driver"; echo "goroutine 1";; '
                            'esac; exit 0')
    out = sh(R.keep_failed_script("docker", "registry", "registry-failed-20261202T003605Z"), fakebin)
    assert out.returncode == 0, out.stderr
    assert R.parse_kept(out.stdout) == R.Kept("registry-failed-20261202T003605Z", "exited 2", "no", "",
                                              "panic: StorageDriver not registered: bogus-driver\ngoroutine 1")
    verbs = [c for c in calls(fakebin) if not c.startswith(("docker inspect", "docker ps"))]
    # the policy again once stopped: a container caught between restarts refuses the first update (seen in CI)
    assert verbs == ["docker update --restart=no registry", "docker stop -t 5 registry",
                     "docker update --restart=no registry",
                     "docker rm -f registry-failed-20260101T000000Z", "docker rm -f registry-failed-x",
                     "docker rename registry registry-failed-20261202T003605Z",
                     "docker logs --tail 500 registry-failed-20261202T003605Z"]


def test_F21_keep_failed_reports_an_engine_that_will_not_drop_the_restart_policy(fakebin):
    """podman before 5.1 has no `update --restart`: the refusal and the policy the container keeps are reported
    (a warning of the run), not hidden behind `|| true`."""
    fake(fakebin, "podman", 'case "$1" in update) echo "Error: unknown flag: --restart" >&2; '
                            'echo "See \'podman update --help\'" >&2; exit 125;; '
                            'inspect) case "$*" in *RestartPolicy*) echo always;; *) echo "exited 1";; esac;; '
                            'logs) echo "panic: StorageDriver not registered: bogus-driver";; esac; exit 0')
    fake(fakebin, "sleep", "exit 0")
    out = sh(R.keep_failed_script("podman", "registry", "registry-failed-20261202T003605Z"), fakebin)
    kept = R.parse_kept(out.stdout)
    assert (kept.name, kept.state, kept.policy) == ("registry-failed-20261202T003605Z", "exited 1", "always")
    assert kept.refused == "(exit 125) Error: unknown flag: --restart"
    assert kept.output == "panic: StorageDriver not registered: bogus-driver"
    assert restart_warning("podman", kept.name, kept.policy, kept.refused) == (
        "registry-failed-20261202T003605Z keeps restart policy 'always' (podman update: (exit 125) Error: unknown "
        "flag: --restart): a restart of podman or of the host may start it; "
        "`podman rm registry-failed-20261202T003605Z` once read")
    assert restart_warning("docker", "registry-failed-1", "no", "") is None


def restarting_podman(fakebin: Path, holds_after: int) -> None:
    """A podman 4.3 whose kept container has restart policy 'always' (no `update --restart`) and crash-loops:
    it runs again after each `stop` until stop number ``holds_after`` (0: never holds)."""
    stops = fakebin / "stops"
    fake(fakebin, "sleep", "exit 0")
    fake(fakebin, "podman", f"""n=$(cat {stops} 2>/dev/null || echo 0)
case "$1" in
  update) echo "Error: unknown flag: --restart" >&2; exit 125;;
  stop) echo $((n+1)) > {stops};;
  inspect) case "$*" in
    *RestartPolicy*) echo always;;
    *State.Running*) if [ {holds_after} = 0 ] || [ $n -lt {holds_after} ]; then
        r=$(cat {stops}.runs 2>/dev/null || echo 0); echo $((r+1)) > {stops}.runs; echo "true $r"
      else echo "false 9"; fi;;
    *) echo "exited 2";;
  esac;;
  logs) echo "panic: StorageDriver not registered: bogus-driver";;
esac
exit 0""")


def test_F21_keep_failed_stops_a_container_podman_restarts_after_a_stop_until_it_stays_stopped(fakebin):
    """podman before 4.6 restarts a crash-looping --restart=always container after a `stop` that fell between two
    of its runs (containers/podman#18259; on the lab's podman 4.3 one stop in four held): the kept container
    restarted, took port 443, and the previous registry could not start again (3 lab runs in 6). Where the policy
    stays, the script stops it until it is not running and makes no new restart for a second."""
    restarting_podman(fakebin, holds_after=3)
    out = sh(R.keep_failed_script("podman", "registry", "registry-failed-20261202T003605Z"), fakebin)
    assert out.returncode == 0, out.stderr
    kept = R.parse_kept(out.stdout)
    assert (kept.name, kept.state, kept.policy) == ("registry-failed-20261202T003605Z", "exited 2", "always")
    verbs = [c for c in calls(fakebin) if c.startswith(("podman stop", "podman rename"))]
    assert verbs == ["podman stop -t 5 registry"] * 3 + ["podman rename registry registry-failed-20261202T003605Z"]


def test_F21_keep_failed_stops_a_restarting_container_a_bounded_number_of_times(fakebin):
    restarting_podman(fakebin, holds_after=0)
    out = sh(R.keep_failed_script("podman", "registry", "registry-failed-20261202T003605Z"), fakebin)
    assert out.returncode == 0 and R.parse_kept(out.stdout).name == "registry-failed-20261202T003605Z", out.stderr
    assert calls(fakebin).count("podman stop -t 5 registry") == 1 + STOP_TRIES


def test_F21_keep_failed_stops_once_where_the_engine_drops_the_restart_policy(fakebin):
    fake(fakebin, "docker", 'case "$1" in inspect) case "$*" in *RestartPolicy*) echo no;; *) echo "true 5";; esac;; '
                            'esac; exit 0')
    out = sh(R.keep_failed_script("docker", "registry", "registry-failed-1"), fakebin)
    assert out.returncode == 0, out.stderr
    assert calls(fakebin).count("docker stop -t 5 registry") == 1   # no policy left to restart it


def test_keep_failed_does_nothing_when_the_engine_made_no_container(fakebin):
    fake(fakebin, "docker", 'case "$1" in inspect) exit 1;; esac; exit 0')
    out = sh(R.keep_failed_script("docker", "registry", "registry-failed-1"), fakebin)
    assert (out.returncode, out.stdout, R.parse_kept(out.stdout)) == (0, "", R.Kept())
    assert calls(fakebin) == ["docker inspect --type container registry"]


def test_failed_name_is_a_valid_container_name_in_utc():
    assert R.failed_name("registry", 1796171765) == "registry-failed-20261202T003605Z"


def test_rollback_undoes_the_applied_steps_last_first_and_the_container_after_its_files(material):
    d = want(material)
    applied = [RP.write_certs(d), RP.write_users(d), RP.write_env(d), RP.switch_link(d, ".certs-0011"),
               RP.recreate(d, ("certificate",), has_old=True, volume=None)]
    lines = R.rollback_script(applied).splitlines()
    order = [next(i for i, line in enumerate(lines) if marker in line) for marker in (
        "ln -sfn .certs-0011 ", f"mv -f {d.env_path}.previous", f"mv -f {d.htpasswd_path}.previous",
        "docker rm -f registry ", "docker rename registry-previous registry")]
    assert order == sorted(order)   # link, env, users (reverse), then the previous container (it mounts them)
    assert R.rollback_script(applied[:3]) == f"{applied[2].undo}\n{applied[1].undo}"   # certs: a new folder
    assert R.rollback_script([RP.write_certs(d)]) == "true"


def test_each_registry_step_says_what_why_and_how_to_undo(material):
    d = want(material)
    seed_link = RP.switch_link(d, "DIR")
    assert seed_link.undo == (f"rm -f {d.registry.data_dir}/certs && mv {d.registry.data_dir}/.certs-legacy "
                              f"{d.registry.data_dir}/certs") and ".certs-legacy" in seed_link.why
    assert RP.switch_link(d, None).undo is None   # no link before: nothing to point back to
    assert RP.copy_images("/v/_data").script is None and "re-create" in RP.copy_images("/v/_data").why
    assert [s.check for s in (RP.write_certs(d), RP.write_users(d), RP.write_env(d), RP.start(d),
                              RP.remove_previous(d))] == [False, True, False, True, True]
    assert [(f.path, f.mode) for f in RP.write_certs(d).files] == [(f"{d.cert_dir}/registry_auth.key", 0o600),
                                                                  (f"{d.cert_dir}/registry_auth.crt", 0o644)]


def test_rollback_of_a_change_that_did_not_recreate_leaves_the_container_alone(material):
    d = want(material)
    users_only = R.rollback_script([RP.write_users(d)])
    assert "docker rm" not in users_only and "docker rename" not in users_only
    assert "registry.password.previous" in users_only
    assert "docker rm -f registry " in R.rollback_script([RP.recreate(d, ("image",), has_old=True, volume=None)])
