"""Every bad input a clear error: a table of bad inventories, bad flags, corrupt state files and hostile
values, each with its exit code, the words its one-line message must contain, and a check that nothing
was written. Runs the real command line (``registry-tls``'s Invoke Program) in-process; no network: the
inventory's hosts are 127.0.0.1:1, and no case gets as far as a host.
"""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fabfile import commandline
from fabfile.cli import ns, program

from _support import REPO

INVENTORY = """\
registry:
  host: registry.test
  address: 127.0.0.1
  ssh_port: 1
certificate:
  subject: {O: tests, CN: registry.test}
  san: [DNS:registry.test, DNS:localhost]
  key_type: ecdsa-p256
ssh:
  known_hosts: known_hosts
  config: null
  connect_timeout: 1
clients:
  hosts:
    c1: {address: 127.0.0.1, ssh_port: 1}
"""
BCRYPT = "$2b$10$" + "a" * 53


@dataclass
class Case:
    name: str
    argv: list[str]
    code: int
    words: list[str]
    inventory: Callable[[str], str] = lambda text: text
    files: dict[str, bytes | None] = field(default_factory=dict)  # relative path -> content (None: a folder)
    stdin: bytes | None = None
    certificate: bool = False


def _sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new)
    return edit


HTPASSWD = {"pki/htpasswd": f"alice:{BCRYPT}\n".encode()}

CASES = [
    # ------------------------------------------------------------------ inventories
    Case("anchor and alias", ["users.list"], 2, ["inventory.yaml:14:", "anchor &d", "not allowed"],
         _sub("clients:\n", "clients:\n  defaults: &d {ssh_user: u}\n  groups: {g: *d}\n")),
    Case("merge key", ["users.list"], 2, ["inventory.yaml:", "merge keys (<<)"],
         _sub("clients:\n", "clients:\n  groups: {g: {<<: {ssh_user: u}}}\n")),
    Case("boolean key", ["users.list"], 2, ["clients.groups.g: key 'true' is not text", "quote it"],
         _sub("clients:\n", "clients:\n  groups: {g: {true: u}}\n")),
    Case("null key", ["users.list"], 2, ["clients.groups.g: key '~' is not text"],
         _sub("clients:\n", "clients:\n  groups: {g: {~: u}}\n")),
    Case("number key", ["users.list"], 2, ["clients.groups: key '1.5' is not text"],
         _sub("clients:\n", "clients:\n  groups: {1.5: {ssh_user: u}}\n")),
    Case("tag", ["users.list"], 2, ["certificate.key_type", "tag !!str"],
         _sub("key_type: ecdsa-p256", "key_type: !!str ecdsa-p256")),
    Case("custom tag", ["users.list"], 2, ["tag !env"], _sub("key_type: ecdsa-p256", "key_type: !env X")),
    Case("directive", ["users.list"], 2, ["inventory.yaml:1:1: directive %YAML", "directives"],
         lambda t: "%YAML 1.2\n---\n" + t),
    Case("unknown directive", ["users.list"], 2, ["inventory.yaml:2:1: directive %FOO", "not allowed"],
         lambda t: "# a comment\n%FOO bar\n---\n" + t),
    Case("unknown directive after a BOM", ["users.list"], 2, ["inventory.yaml:1:1: directive %FOO"],
         lambda t: "\ufeff%FOO\n---\n" + t),
    Case("two documents", ["users.list"], 2, ["more than one YAML document"], lambda t: t + "---\n{}\n"),
    Case("escape in a value", ["users.list"], 2, ["certificate.subject.CN", "control character \\x1b"],
         _sub("CN: registry.test}", 'CN: "a\\e[2Jb"}')),
    Case("bidi override in a value", ["users.list"], 2, ["control character \\u202e"],
         _sub("CN: registry.test}", 'CN: "a\\u202Eb"}')),
    Case("zero-width space in a value", ["users.list"], 2, ["inventory.yaml:6:", "certificate.subject.CN",
                                                            "control character \\u200b"],
         _sub("CN: registry.test}", "CN: registry\u200b.test}")),
    Case("right-to-left mark in a value", ["users.list"], 2, ["inventory.yaml:6:", "control character \\u200f"],
         _sub("CN: registry.test}", "CN: Ni\u200fce}")),
    Case("BOM inside a value", ["users.list"], 2, ["control character \\ufeff"],
         _sub("{O: tests,", "{O: te\ufeffsts,")),
    Case("bidi isolate in a key", ["users.list"], 2, ["inventory.yaml:15:", "clients.hosts", "control character \\u2067"],
         _sub("    c1: {", "    c\u20671: {")),
    Case("newline in a key", ["users.list"], 2, ["clients.hosts", "control character \\n"],
         _sub("    c1: {", '    "c\\n1": {')),
    Case("very long value", ["users.list"], 2, ["registry.container", "longer than 4096"],
         _sub("  ssh_port: 1\n", "  ssh_port: 1\n  container: " + "x" * 5000 + "\n")),
    Case("nesting", ["users.list"], 2, ["nested more than 12"], lambda t: t + "env: " + "[" * 20 + "]" * 20 + "\n"),
    Case("huge file", ["users.list"], 2, ["larger than 1024 KiB"], lambda t: t + "#" * (1 << 20) + "\n"),
    Case("status: bad inventory is UNKNOWN", ["status"], 3, ["anchor &d"],
         _sub("clients:\n", "clients:\n  defaults: &d {ssh_user: u}\n")),
    # ------------------------------------------------------------------ flags
    Case("parallel 0", ["deploy", "--parallel", "0"], 2, ["--parallel 0", "from 1"]),
    Case("parallel not a number", ["deploy", "-P", "abc"], 2, ["--parallel 'abc'", "whole number"]),
    Case("batch negative", ["clients.trust", "--batch=-1"], 2, ["--batch -1"]),
    Case("untrust: parallel 0", ["clients.untrust", "--parallel", "0"], 2, ["--parallel 0", "from 1"]),
    Case("untrust: batch negative", ["clients.untrust", "-b", "-3"], 2, ["--batch -3", "from 1"]),
    Case("parallel huge", ["verify", "--parallel", "100000"], 2, ["--parallel 100000"]),
    Case("if-expiring-within text", ["rotate", "--if-expiring-within", "soon"], 2, ["--if-expiring-within 'soon'"]),
    Case("until unknown", ["rotate", "--until", "later"], 2, ["--until 'later'"]),
    Case("if-due with if-expiring-within", ["rotate", "--if-due", "--if-expiring-within", "5"], 2,
         ["--if-due and --if-expiring-within: give one of them"]),
    Case("parallel with a plus", ["deploy", "--parallel", "+3"], 2, ["--parallel '+3'", "whole number"]),
    Case("parallel with spaces", ["deploy", "--parallel", " 3"], 2, ["--parallel ' 3'", "whole number"]),
    Case("parallel with an underscore", ["clients.trust", "-P", "1_0"], 2, ["--parallel '1_0'"]),
    Case("batch in fullwidth digits", ["deploy", "--batch", "\uff13"], 2, ["--batch '\uff13'"]),
    Case("batch in Arabic-Indic digits", ["rotate", "-b", "\u0663"], 2, ["--batch '\u0663'"]),
    Case("if-expiring-within with a newline", ["rotate", "--if-expiring-within", "5\n"], 2,
         ["--if-expiring-within '5\\n'"]),
    Case("status: warn-days with a plus is UNKNOWN", ["status", "--warn-days", "+3"], 3, ["--warn-days '+3'"]),
    Case("empty inventory path", ["users.list", "-i", ""], 2, ["--inventory '': expected a value"]),
    Case("empty group", ["export.cloud-init", "--group="], 2, ["--group '': expected a value"]),
    Case("empty hosts", ["deploy", "--hosts="], 2, ["--hosts '': expected a value"]),
    Case("hosts of commas only", ["deploy", "-H", ",,"], 2, ["--hosts ',,': no names given"]),
    Case("status: empty groups is UNKNOWN", ["status", "-g", " "], 3, ["--groups ' ': expected a value"]),
    Case("unknown flag", ["deploy", "--bogus"], 2, ["--bogus", "registry-tls --help deploy"]),
    Case("unknown task", ["deplyo"], 2, ["deplyo", "--list"]),
    Case("help for an unknown task", ["--help", "deplyo"], 2, ["deplyo"]),
    Case("flag without its value", ["deploy", "--hosts"], 2, ["flag --hosts needed value"]),
    Case("unknown client", ["deploy", "-H", "nope"], 2, ["--hosts nope", "no such client"]),
    Case("status: bad warn-days is UNKNOWN", ["status", "--warn-days", "x"], 3, ["--warn-days 'x'"]),
    Case("status: parallel 0 is UNKNOWN", ["status", "--parallel", "0"], 3, ["--parallel 0"]),
    Case("status: unknown flag is UNKNOWN", ["status", "--bogus"], 3, ["--bogus"]),
    # ------------------------------------------------------------------ Invoke's configuration (HOME is the workdir)
    Case("user config not YAML", ["cert.show"], 2, [".invoke.yaml: not a usable Invoke config file", "line 2:1"],
         files={".invoke.yaml": b"a: [\n"}),
    Case("user config a list", ["cert.show"], 2, [".invoke.yaml: not a usable", "expected a mapping of settings"],
         files={".invoke.yaml": b"- a\n"}),
    Case("user config: a value for a section", ["cert.show"], 2, [".invoke.yaml: not a usable", "run: expected a section"],
         files={".invoke.yaml": b"run: 5\n"}),
    Case("user config: inventory not text", ["cert.show"], 2, [".invoke.yaml: not a usable", "inventory: expected text, not 5"],
         files={".invoke.yaml": b"inventory: 5\n"}),
    Case("user config: sudo password not text", ["users.list"], 2, ["sudo.password: expected text"],
         files={".invoke.yaml": b"sudo: {password: [1]}\n"}),
    Case("-f file not YAML", ["-f", "bad.yaml", "cert.show"], 2, ["bad.yaml: not a usable Invoke config file"],
         files={"bad.yaml": b"a: [\n"}),
    Case("-f file not JSON", ["-f", "bad.json", "cert.show"], 2, ["bad.json", "line 1:2"], files={"bad.json": b"{"}),
    Case("-f file missing", ["-f", "nope.yaml", "cert.show"], 2, ["nope.yaml: no such file", "-f"]),
    Case("status: user config not YAML is UNKNOWN", ["status"], 3, [".invoke.yaml", "line 2:1"],
         files={".invoke.yaml": b"a: [\n"}),
    Case("status: -f file not YAML is UNKNOWN", ["-f", "bad.yaml", "status"], 3, ["bad.yaml"],
         files={"bad.yaml": b"x: \"\n"}),
    # ------------------------------------------------------------------ local state
    Case("state_dir is a file", ["users.list"], 2, ["state", "not a folder"],
         _sub("ssh:\n", "state_dir: state\nssh:\n"), files={"state": b"x"}),
    Case("pki_dir is a file", ["cert.generate"], 2, ["pki", "not a folder"], files={"pki": b"x"}),
    Case("last run not JSON", ["deploy", "--failed-only"], 2, ["last-run.json", "not valid JSON", "delete it"],
         files={".registry-tls/last-run.json": b"{bad"}),
    Case("last run foreign", ["deploy", "--failed-only"], 2, ["last-run.json", "expected layout"],
         files={".registry-tls/last-run.json": b"[1, 2]"}),
    Case("rotation state corrupt", ["cert.show"], 2, ["rotation.json", "not a registry-tls rotation state"],
         files={".registry-tls/rotation.json": b"phase: generated"}),
    Case("rotation state foreign", ["cert.show"], 2, ["rotation.json", "expected fields"],
         files={".registry-tls/rotation.json": b'{"kind": "x"}'}),
    Case("status: rotation state corrupt is UNKNOWN", ["status"], 3, ["rotation.json"],
         files={".registry-tls/rotation.json": b"\x00\x01"}),
    Case("registry names corrupt", ["deploy"], 2, [".registry-tls/registry-hosts", "'../etc' is not a host name"],
         files={".registry-tls/registry-hosts": b"registry.test\n../etc\n"}),
    Case("status: registry names corrupt is UNKNOWN, before any host", ["status"], 3,
         [".registry-tls/registry-hosts", "'../etc'"], certificate=True,
         files={".registry-tls/registry-hosts": b"../etc\n"}),
    Case("htpasswd not UTF-8", ["users.list"], 2, ["pki/htpasswd", "not UTF-8"], files={"pki/htpasswd": b"\xff:\xfe\n"}),
    Case("htpasswd foreign", ["users.list"], 2, ["pki/htpasswd:1", "'user:hash'", "delete it"],
         files={"pki/htpasswd": b"-----BEGIN CERTIFICATE-----\nMIIB\n"}),
    Case("htpasswd user twice", ["users.list"], 2, ["pki/htpasswd:2", "'alice' appears twice"],
         files={"pki/htpasswd": f"alice:{BCRYPT}\nalice:{BCRYPT}\n".encode()}),
    Case("htpasswd with CR", ["users.list"], 2, ["pki/htpasswd:1"], files={"pki/htpasswd": f"alice:{BCRYPT}\r\n".encode()}),
    Case("health password corrupt", ["registry.deploy"], 2, ["health.password", "delete it"], certificate=True,
         files={**HTPASSWD, "pki/health.password": b"two\nlines\n"}),
    # ------------------------------------------------------------------ users
    Case("password of two lines", ["users.add", "bob", "--no-deploy"], 2, ["more than one line"],
         files=HTPASSWD, stdin=b"secret-one\nsecret-two\n"),
    Case("password with CR", ["users.add", "bob", "--no-deploy"], 2, ["carriage return"],
         files=HTPASSWD, stdin=b"secret-one\r\n"),
    Case("password far over bcrypt's 72 bytes", ["users.add", "bob", "--no-deploy"], 2,
         ["longer than 290 bytes", "give 72 bytes or fewer"], files=HTPASSWD, stdin=b"x" * 5000 + b"\n"),
    Case("password of 73 bytes", ["users.add", "bob", "--no-deploy"], 2, ["password is 73 bytes"],
         files=HTPASSWD, stdin=b"x" * 73 + b"\n"),
    Case("password empty", ["users.add", "bob", "--no-deploy"], 2, ["password is empty"], files=HTPASSWD, stdin=b"\n"),
    Case("push without a certificate", ["users.add", "bob"], 2, ["no certificate yet", "--no-deploy"],
         files=HTPASSWD, stdin=b"secret-one\n"),
    Case("remove: push without a certificate", ["users.remove", "alice"], 2, ["no certificate yet"], files=HTPASSWD),
    Case("the health user is reserved", ["users.add", "registry-tls-health", "--no-deploy"], 2,
         ["'registry-tls-health' is reserved"], files=HTPASSWD, stdin=b"secret-one\n"),
    Case("the health user cannot be removed", ["users.remove", "registry-tls-health", "--no-deploy"], 2,
         ["'registry-tls-health' is reserved"],
         files={"pki/htpasswd": f"alice:{BCRYPT}\nregistry-tls-health:{BCRYPT}\n".encode()}),
    Case("user name with markup", ["users.add", "[bold]x", "--no-deploy"], 2, ["'[bold]x'"], files=HTPASSWD,
         stdin=b"secret-one\n"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))   # ~/.invoke.yaml: the case's, not the user's
    for name in ("INVOKE_INVENTORY", "INVOKE_RUNTIME_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    yield tmp_path
    signal.signal(signal.SIGTERM, handler)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None: folder); the audit log and the lock file (with their folder) are left out."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))
            if "log" not in p.relative_to(root).parts
            and str(p.relative_to(root)) not in (".registry-tls", ".registry-tls/lock")}


def run(argv: list[str], stdin: bytes | None, capsys, monkeypatch) -> tuple[int, str, str]:
    fake = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", fake)
    code = 0
    try:
        program.run(["registry-tls", *argv])
    except SystemExit as exit_:
        code = 0 if exit_.code is None else int(exit_.code)
    out, err = capsys.readouterr()
    return code, out, err


def prepare(root: Path, case: Case, certificate: Callable[[], object] = lambda: None) -> None:
    """The case's inventory, then its ``certificate`` (made by the caller), then its files."""
    (root / "inventory.yaml").write_text(case.inventory(INVENTORY), encoding="utf-8")
    if case.certificate:
        certificate()
    for rel, content in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(case, workdir, capsys, monkeypatch):
    prepare(workdir, case, lambda: run(["cert.generate"], None, capsys, monkeypatch)[0] == 0 or pytest.fail())
    before = snapshot(workdir)
    code, out, err = run(case.argv, case.stdin, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == case.code, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    for word in case.words:
        assert word in lines[0], (word, lines[0])
    assert snapshot(workdir) == before


def test_the_table_covers_each_kind_and_both_exit_code_schemes():
    assert {c.code for c in CASES} == {2, 3}
    assert all(c.code == 3 for c in CASES if "status" in c.argv)


def test_a_crash_is_one_line_and_its_traceback_goes_only_to_the_log(workdir, capsys, monkeypatch):
    prepare(workdir, Case("", [], 0, []))

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("fabfile.verify.verify_all", boom)
    for argv, expected in ((["verify"], 1), (["verify", "-v"], 1)):
        code, out, err = run(argv, None, capsys, monkeypatch)
        assert code == expected and "Traceback" not in out + err
        errors = [line for line in err.splitlines() if line.startswith("error:")]  # -v also shows the run's log lines
        assert len(errors) == 1 and "internal error: ZeroDivisionError: a bug (traceback in " in errors[0]
    log = (workdir / ".registry-tls/log/registry-tls.log").read_text()
    assert "Traceback" in log and "ZeroDivisionError: a bug" in log
    monkeypatch.setattr("fabfile.status.fleet_status", boom)
    code, out, err = run(["status"], None, capsys, monkeypatch)
    assert code == 3 and "Traceback" not in err  # monitoring: the check itself failed -> UNKNOWN


def test_an_interrupt_is_130_and_status_3(workdir, capsys, monkeypatch):
    prepare(workdir, Case("", [], 0, []))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fabfile.deploy.show_certificate", interrupted)
    assert run(["cert.show"], None, capsys, monkeypatch)[0] == 130
    monkeypatch.setattr("fabfile.status.fleet_status", interrupted)
    code, _, err = run(["status"], None, capsys, monkeypatch)
    assert code == 3 and err.strip() == "error: interrupted"


# --------------------------------------------------------------------------- flags


def _tasks(collection, prefix=""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from _tasks(sub, f"{prefix}{name}.")


def test_one_meaning_per_short_flag_and_none_shadows_invoke():
    import tasks as checkout

    meaning: dict[str, str] = {}
    for name, task in _tasks(checkout.ns):
        for argument in task.get_arguments():
            long, shorts = argument.names[0], [n for n in argument.names if len(n) == 1]
            for short in shorts:
                assert short not in commandline.CORE_SHORT_FLAGS, (name, short)
                assert meaning.setdefault(short, long) == long, (name, short, long, meaning[short])
    assert meaning == {s: n.replace("_", "-") for n, s in commandline.SHORT_FLAGS.items()}


def test_dash_h_after_a_task_is_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        program.run(["registry-tls", "deploy", "-h"])
    assert exit_.value.code in (None, 0)
    assert "--dry-run" in capsys.readouterr().out


def test_hints_name_the_program_that_runs(workdir, capsys, monkeypatch):
    """Messages and flag help suggest the command as the user runs it: `registry-tls ...` installed (and
    `python -m fabfile`), `inv ...` in a checkout; one helper (program.command) makes them all."""
    prepare(workdir, Case("", [], 0, []))
    code, _out, err = run(["clients.trust"], None, capsys, monkeypatch)
    assert code == 2 and "no certificate yet; run `registry-tls deploy` or `registry-tls cert.generate`" in err, err
    for _ in range(2):  # help texts survive a second parse in the same process
        _code, out, _err = run(["--help", "rotate"], None, capsys, monkeypatch)
        assert "(resume later with `registry-tls rotate`)" in " ".join(out.split()), out
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    inv = Path(sys.executable).with_name("inv")
    for argv, me in (([inv, "-r", REPO], "inv"), ([sys.executable, "-m", "fabfile"], "registry-tls")):
        proc = subprocess.run([*map(str, argv), "clients.trust"], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 2 and f"run `{me} deploy` or `{me} cert.generate`" in proc.stderr, proc.stderr
    proc = subprocess.run([str(inv), "-r", str(REPO), "--help", "rotate"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert "(resume later with `inv rotate`)" in " ".join(proc.stdout.split()), proc.stdout


def test_the_project_config_is_the_invoke_yaml_of_the_folder_it_runs_in(workdir, capsys, monkeypatch):
    """As `inv` reads the invoke.yaml beside tasks.py, `registry-tls` reads ./invoke.yaml (.yml, .json) of the
    folder it runs in; never ./invoke.py (no code from the folder runs); a broken one is one line, exit 2 (3)."""
    (workdir / "site").mkdir()
    (workdir / "site/fleet.yaml").write_text(INVENTORY, encoding="utf-8")
    (workdir / "invoke.py").write_text("open('ran', 'w').close()\n")
    for name, text in (("invoke.yaml", "inventory: site/fleet.yaml\n"), ("invoke.json", '{"inventory": "site/fleet.yaml"}')):
        (workdir / name).write_text(text)
        code, out, err = run(["cert.generate"], None, capsys, monkeypatch)
        assert code == 0 and "site/pki/registry.crt" in out, err
        (workdir / name).unlink()
        for made in (workdir / "site/pki").iterdir():
            made.unlink()
    code, _out, err = run(["cert.generate"], None, capsys, monkeypatch)  # only invoke.py: not read
    assert code == 2 and "inventory.yaml" in err and not (workdir / "ran").exists(), err
    for text, words, task, expected in (("inventory: [\n", "line 2", "users.list", 2),
                                        ("- a list\n", "expected a mapping", "status", 3)):
        (workdir / "invoke.yaml").write_text(text)
        code, _out, err = run([task], None, capsys, monkeypatch)
        assert code == expected and err.count("\n") == 1 and f"{workdir / 'invoke.yaml'}: not a usable" in err, err
        assert words in err and not (workdir / "ran").exists()


@pytest.mark.parametrize("argv", [["--list"], ["--help"], ["--print-completion-script", "bash"], ["--help", "rotate"],
                                  ["cert.show"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(argv, workdir):
    """`registry-tls --list | head -1`: no BrokenPipeError traceback; 141 (128 + SIGPIPE) when the write failed.
    A pipe whose reader is closed before the command writes makes the failure certain; `| head -1` is the
    real use (there the write may also win the race: 0)."""
    prepare(workdir, Case("", [], 0, []))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    assert subprocess.run([sys.executable, "-m", "fabfile", "cert.generate"], cwd=workdir, env=env,
                          capture_output=True, timeout=60, check=False).returncode == 0
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "fabfile", *argv], cwd=workdir, env=env, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (commandline.READER_GONE, ""), proc.stderr
    command = f"{shlex.quote(sys.executable)} -m fabfile {shlex.join(argv)} | head -1; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode in (0, commandline.READER_GONE) and proc.stderr == "" and proc.stdout.count("\n") == 1


def test_a_broken_pipe_that_is_not_stdout_is_an_internal_error(workdir, capsys, monkeypatch):
    """A BrokenPipeError from a socket is a failure to report, not a reader that went away."""
    prepare(workdir, Case("", [], 0, []))

    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("fabfile.verify.verify_all", broken)
    code, _out, err = run(["verify"], None, capsys, monkeypatch)
    assert code == 1 and "internal error: BrokenPipeError" in err
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert not commandline.reader_gone()
        os.close(read)
        assert commandline.reader_gone()


def test_every_integer_flag_is_typed_and_range_checked():
    for name, task in _tasks(ns):
        for argument in task.get_arguments():
            if (argument.attr_name or argument.name) in commandline.INTEGER_FLAGS:
                assert argument.kind is int, (name, argument.name)
    with pytest.raises(Exception, match="from 1 to 10000"):
        commandline.integer(0, "parallel")
    assert commandline.integer(None, "parallel") is None and commandline.integer(5, "parallel") == 5


# --------------------------------------------------------------------------- users: local change only with the push


def test_users_change_the_local_htpasswd_only_with_a_successful_push(workdir, capsys, monkeypatch):
    from fabfile.results import HostResult, Report, Status

    prepare(workdir, Case("", [], 0, [], files=HTPASSWD))
    assert run(["cert.generate"], None, capsys, monkeypatch)[0] == 0
    pushed: list[tuple[str, ...]] = []

    def push(outcome):
        def deploy_registry(s, material, **kwargs):
            s.state.health_credentials()  # as the real push does: may add the health user (in memory)
            pushed.append(s.state.htpasswd().users)
            if outcome == "interrupt":
                raise KeyboardInterrupt
            rep = Report()
            rep.add(HostResult(host="registry.test", role="registry", status=outcome, message="pushed"))
            return rep
        monkeypatch.setattr("fabfile.deploy.deploy_registry", deploy_registry)

    before = snapshot(workdir / "pki")   # htpasswd, and no health.password yet
    assert "health.password" not in before
    for outcome, code in ((Status.FAILED, 1), ("interrupt", 130)):
        push(outcome)
        got, _out, err = run(["users.add", "bob"], b"secret-one\n", capsys, monkeypatch)
        assert got == code, err
        assert pushed[-1] == ("alice", "bob", "registry-tls-health")  # the push carried the new user ...
        assert snapshot(workdir / "pki") == before  # ... the local files did not change (nor a health password)
        got, _out, err = run(["users.remove", "alice"], None, capsys, monkeypatch)
        assert got == code and pushed[-1] == ("registry-tls-health",) and snapshot(workdir / "pki") == before
    push(Status.CHANGED)
    assert run(["users.add", "bob"], b"secret-one\n", capsys, monkeypatch)[0] == 0
    assert (workdir / "pki/health.password").exists()   # written with the users, once the push worked
    assert run(["users.list"], None, capsys, monkeypatch)[1].split() == ["alice", "bob", "registry-tls-health"]
    assert run(["users.remove", "alice"], None, capsys, monkeypatch)[0] == 0
    assert run(["users.list"], None, capsys, monkeypatch)[1].split() == ["bob", "registry-tls-health"]


def test_no_deploy_writes_at_once_and_stdin_may_end_without_newline(workdir, capsys, monkeypatch):
    prepare(workdir, Case("", [], 0, [], files=HTPASSWD))
    code, _out, err = run(["users.add", "bob", "--no-deploy"], b"secret-one", capsys, monkeypatch)
    assert code == 0, err
    assert run(["users.list"], None, capsys, monkeypatch)[1].split() == ["alice", "bob"]


def test_rotate_if_due_waits_for_renew_before_days_then_rotates(workdir, capsys, monkeypatch):
    """`rotate --if-due` (the daily cron line): nothing while more than certificate.renew_before_days are left
    (default: a third of days, 30 of 90), no host asked; a rotation once they are (here a dry run: the
    inventory's hosts are unreachable, so any host contact would fail the run)."""
    import re

    prepare(workdir, Case("", [], 0, []))
    assert run(["cert.generate"], None, capsys, monkeypatch)[0] == 0
    code, out, err = run(["rotate", "--if-due"], None, capsys, monkeypatch)
    assert code == 0, err
    assert re.fullmatch(r"certificate valid (89|90) more days \(more than 30\): nothing to do\n", out), out
    assert not (workdir / ".registry-tls/rotation.json").exists()
    due = _sub("key_type: ecdsa-p256", "key_type: ecdsa-p256\n  renew_before_days: 90")
    (workdir / "inventory.yaml").write_text(due(INVENTORY), encoding="utf-8")
    code, out, err = run(["rotate", "--if-due", "--dry-run"], None, capsys, monkeypatch)
    assert code == 0, err
    assert re.fullmatch(r"would rotate the certificate \((89|90) days left\): new server certificate from the same CA, "
                        r"registry only\n", out), out
    assert not (workdir / ".registry-tls/rotation.json").exists()


# --------------------------------------------------------------------------- an interrupted certificate switch


def _pair(root: Path) -> tuple[bytes, bytes]:
    return (root / "pki/registry.key").read_bytes(), (root / "pki/registry.crt").read_bytes()


def test_an_interrupt_between_the_key_and_the_certificate_switches_both(workdir, capsys, monkeypatch):
    """`cert.generate --force`: SIGINT right after the key's rename is held until the certificate's rename is
    done too (shield.uninterrupted), then the run stops with 130; the pair on disk is the new one, and matches."""
    import os

    from fabfile import localfs
    from fabfile.session import open_session

    prepare(workdir, Case("", [], 0, []))
    assert run(["cert.generate"], None, capsys, monkeypatch)[0] == 0
    old = _pair(workdir)
    real = os.replace

    def replace_then_interrupt(src, dst):
        real(src, dst)
        if str(dst).endswith("registry.key"):
            os.kill(os.getpid(), signal.SIGINT)   # between the key's rename and the certificate's

    monkeypatch.setattr(localfs.os, "replace", replace_then_interrupt)
    code, _out, err = run(["cert.generate", "--force"], None, capsys, monkeypatch)
    monkeypatch.setattr(localfs.os, "replace", real)
    assert code == 130, err
    new = _pair(workdir)
    assert new[0] != old[0] and new[1] != old[1]
    assert open_session(workdir / "inventory.yaml").pki.load() is not None   # the key matches the certificate
    assert sorted(p.name for p in (workdir / "pki").iterdir()) == ["ca.crt", "ca.key", "registry.crt", "registry.key"]


def test_an_interrupt_before_the_switch_leaves_the_old_pair_and_no_temp_file(workdir, capsys, monkeypatch):
    from fabfile import localfs

    prepare(workdir, Case("", [], 0, []))
    assert run(["cert.generate"], None, capsys, monkeypatch)[0] == 0
    old = _pair(workdir)
    real, staged = localfs._stage, []

    def stage_then_interrupt(path, data, mode):
        if staged:
            raise KeyboardInterrupt   # the key is staged, the certificate not yet: nothing renamed
        staged.append(real(path, data, mode))
        return staged[-1]

    monkeypatch.setattr(localfs, "_stage", stage_then_interrupt)
    assert run(["cert.generate", "--force"], None, capsys, monkeypatch)[0] == 130
    assert _pair(workdir) == old
    assert not any(p.exists() for p in staged)
    assert sorted(p.name for p in (workdir / "pki").iterdir()) == ["ca.crt", "ca.key", "registry.crt", "registry.key"]
