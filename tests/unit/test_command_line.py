"""The real ``registry-tls`` command in a child process, as a user sees it on stderr, a pipe or a terminal.

No host outside this machine is ever asked: the inventory's hosts are 127.0.0.1, on ports the tests bind
themselves (a listener that closes at once, or sends a hostile SSH banner), or local-only tasks.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _support import REPO

INVENTORY = """\
registry:
  host: registry.test
  address: 127.0.0.1
  ssh_port: {port}
certificate:
  subject: {{O: tests, CN: registry.test}}
  san: [DNS:registry.test, DNS:localhost]
  key_type: ecdsa-p256
ssh:
  known_hosts: known_hosts
  config: null
  connect_timeout: 2
clients:
  hosts:
    c1: {{address: 127.0.0.1, ssh_port: {port}}}
"""
# what a terminal would act on: ESC, BEL, and the C1 CSI
RAW_CONTROLS = ("\x1b", "\x07", "\x9b")
SGR = re.compile(r"\x1b\[[0-9;]*m")


def environment(**extra: str) -> dict[str, str]:
    """This environment without what would change the output (colour forcing, Invoke config)."""
    drop = ("INVOKE_", "FORCE_COLOR", "TTY_", "NO_COLOR", "COLUMNS", "LINES", "CLICOLOR")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def registry_tls(*args: str, cwd: Path, env: dict[str, str] | None = None,
                 stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fabfile", *args], cwd=cwd, capture_output=True, input=stdin,
                          timeout=60, env=env or environment(PYTHONPATH=str(REPO)), check=False)


@pytest.fixture
def listener() -> Iterator[Callable[[bytes], int]]:
    """``listener(banner)``: a port on 127.0.0.1 whose every connection gets ``banner`` (maybe empty), then is
    closed."""
    servers: list[socket.socket] = []

    def serve(server: socket.socket, banner: bytes) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:   # closed: the test is over
                return
            with conn:
                if banner:
                    conn.sendall(banner)

    def start(banner: bytes) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        servers.append(server)
        threading.Thread(target=serve, args=(server, banner), daemon=True).start()
        return server.getsockname()[1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("banner", [b"", b"SSH-1.5\x1b[31mRED\x07\xc2\x9b2J-x\r\n"], ids=["closes-at-once", "hostile-banner"])
def test_paramiko_errors_go_to_the_log_only_never_a_traceback_or_raw_remote_bytes(tmp_path, listener, banner):
    (tmp_path / "inventory.yaml").write_text(INVENTORY.format(port=listener(banner)))
    assert registry_tls("cert.generate", cwd=tmp_path).returncode == 0
    proc = registry_tls("status", cwd=tmp_path)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 2, err   # CRITICAL: both hosts unreachable
    assert err == "", err             # paramiko's records (tracebacks, the peer's banner) never reach the terminal
    assert not any(raw in out for raw in RAW_CONTROLS), out
    assert out.count("unreachable") >= 2
    if banner:   # the table names what the peer sent, escaped
        assert "1.5\\x1b[31mRED\\x07" in out, out
    log = (tmp_path / ".registry-tls/log/registry-tls.log").read_text()
    assert "paramiko.transport" in log and "Traceback" in log   # they are in the run log, escaped
    assert not any(raw in log for raw in RAW_CONTROLS)


# --------------------------------------------------------------------------- Invoke's configuration, through inv


@pytest.mark.parametrize(("config", "task", "code", "words"), [
    ("inventory: 5\n", "cert.show", 2, "error: Invoke configuration inventory: expected text, not 5"),
    ("sudo: {password: 5}\n", "cert.show", 2, "error: Invoke configuration sudo.password: expected text, not 5"),
    ("a: [\n", "cert.show", 2, "cfg.yaml: not a usable Invoke config file: line 2:1:"),
    ("a: [\n", "status", 3, "cfg.yaml: not a usable Invoke config file: line 2:1:"),
], ids=["inventory-not-text", "sudo-password-not-text", "not-yaml", "status-not-yaml"])
def test_inv_with_a_bad_runtime_config_is_one_line(tmp_path, config, task, code, words):
    """`inv -f FILE` loads FILE with Invoke's own Config, after tasks.py: still one line, exit 2 (status 3)."""
    (tmp_path / "inventory.yaml").write_text(INVENTORY.format(port=1))
    (tmp_path / "cfg.yaml").write_text(config)
    proc = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "-f", str(tmp_path / "cfg.yaml"), task],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=environment(HOME=str(tmp_path)),
                          check=False)
    assert proc.returncode == code, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and words in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- a pipe and a terminal, for real

HOSTILE_SUBJECT = "[bold]x[/] a [/ b :CD: :smile:"
FORCING = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "CLICOLOR_FORCE": "1"}


@pytest.fixture
def hostile_inventory(tmp_path) -> Path:
    """An inventory whose subject is full of markup and emoji codes (accepted: they are printable), with a
    certificate made from it; its hosts are 127.0.0.1:1 (refused at once)."""
    text = INVENTORY.format(port=1).replace("{O: tests,", f"{{O: '{HOSTILE_SUBJECT}',")
    (tmp_path / "inventory.yaml").write_text(text)
    proc = registry_tls("cert.generate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


def test_an_accepted_value_with_markup_and_emoji_codes_is_read_back_literally_on_a_pipe(hostile_inventory, openssl):
    proc = registry_tls("cert.show", cwd=hostile_inventory)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert f"subject\tO={HOSTILE_SUBJECT}, CN=registry.test\n" in out, out
    assert "\U0001f4bf" not in out and "\x1b" not in out   # no emoji, no colour
    fingerprint = subprocess.run([openssl, "x509", "-in", "pki/registry.crt", "-noout", "-fingerprint", "-sha256"],
                                 cwd=hostile_inventory, capture_output=True, text=True, check=True).stdout
    assert f"SHA-256\t{fingerprint.strip().split('=', 1)[1]}\n" in out   # whole, as openssl says it
    subject = subprocess.run([openssl, "x509", "-in", "pki/registry.crt", "-noout", "-subject", "-nameopt", "utf8"],
                             cwd=hostile_inventory, capture_output=True, text=True, check=True).stdout
    assert HOSTILE_SUBJECT in subject   # the certificate holds the value itself


def test_a_pipe_stays_a_pipe_whatever_the_environment_forces(hostile_inventory):
    """FORCE_COLOR / TTY_COMPATIBLE (CI): still one record per line, tab-separated, no box, no colour."""
    env = environment(PYTHONPATH=str(REPO), COLUMNS="40", **FORCING)
    for args in (("cert.show",), ("registry.deploy", "--dry-run")):
        proc = registry_tls(*args, cwd=hostile_inventory, env=env)
        out = proc.stdout.decode()
        assert "\x1b" not in out + proc.stderr.decode(), out
        assert not any(box in out for box in "┏━│┃└"), out
        assert "\t" in out and all(len(line) > 40 for line in out.splitlines() if line.startswith("SHA-256"))
    assert "host\trole\tstatus\tchanges\tmessage\n" in out


def on_a_pty(*args: str, cwd: Path, env: dict[str, str], replies: tuple[tuple[bytes, bytes], ...] = (),
             stdin: bool = False) -> tuple[int, str]:
    """Run the command with stdout and stderr (and with ``stdin``, stdin) on a pseudo-terminal of 120 columns
    that is its controlling terminal (/dev/tty: getpass's prompts); each ``(prompt, keys)`` of ``replies``
    types ``keys`` once ``prompt`` has been shown. Its exit code and everything it showed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "fabfile", *args], cwd=cwd, env=env,
                            stdin=slave if stdin else subprocess.DEVNULL, stdout=slave, stderr=slave,
                            start_new_session=True, close_fds=True,
                            preexec_fn=lambda: fcntl.ioctl(1, termios.TIOCSCTTY, 0))  # noqa: PLW1509 - one ioctl
    os.close(slave)
    shown, answered, pending = b"", 0, list(replies)   # answered: where the next prompt is looked for
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        while pending and pending[0][0] in shown[answered:]:
            answered = shown.index(pending[0][0], answered) + len(pending[0][0])
            os.write(master, pending.pop(0)[1])
    os.close(master)
    return proc.wait(timeout=60), shown.decode()


def test_on_a_terminal_tables_are_boxed_and_coloured_and_values_still_literal(hostile_inventory):
    env = environment(PYTHONPATH=str(REPO), TERM="xterm-256color")
    code, text = on_a_pty("cert.show", cwd=hostile_inventory, env=env)
    assert code == 0, text
    assert colours(text)                                # colour: a terminal
    plain = SGR.sub("", text)
    assert "\t" not in plain and f"O={HOSTILE_SUBJECT}" in plain
    code, text = on_a_pty("registry.deploy", "--dry-run", cwd=hostile_inventory, env=env)
    assert any(box in text for box in "┏━│┃"), text   # a table drawn for a terminal
    code, text = on_a_pty("cert.show", cwd=hostile_inventory, env={**env, "NO_COLOR": "1"})
    assert code == 0 and "\x1b[1m" in text and not colours(text), text   # a terminal (bold), but NO_COLOR


def colours(text: str) -> set[str]:
    """The foreground colours (SGR 30-38, 90-97) the text sets."""
    params = {p for m in SGR.finditer(text) for p in m[0][2:-1].split(";")}
    return {p for p in params if p.isdigit() and (30 <= int(p) <= 38 or 90 <= int(p) <= 97)}


# --------------------------------------------------------------------------- prompts and endless input


def test_ctrl_d_at_the_password_prompt_is_one_line_exit_2(hostile_inventory):
    env = environment(PYTHONPATH=str(REPO), TERM="xterm-256color", NO_COLOR="1")
    code, shown = on_a_pty("users.add", "bob", "--no-deploy", cwd=hostile_inventory, env=env, stdin=True,
                           replies=((b"password for bob: ", b"\x04"),))
    lines = [line for line in SGR.sub("", shown.replace("\r", "")).splitlines() if line.strip()]
    assert code == 2, shown
    assert lines == ["password for bob: ", "error: no password given for bob"], lines
    assert not (hostile_inventory / "pki/htpasswd").exists()


def test_an_endless_inventory_is_read_only_up_to_its_limit(tmp_path):
    """`-i /dev/zero` never ends: at most the limit + 1 bytes are read, then one line (under a 1 GiB address
    space limit, so a regression fails here instead of exhausting the machine)."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([sys.executable, "-m", "fabfile", "users.list", "-i", "/dev/zero"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=environment(PYTHONPATH=str(REPO)),
                          preexec_fn=limited, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: /dev/zero: larger than 1024 KiB; is this an inventory file?\n"
