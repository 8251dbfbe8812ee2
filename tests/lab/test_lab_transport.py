"""Our transport (fabfile/transport.py ``Remote``) against the lab's real sshd: the command path that
sends ``exec`` without waiting for its reply, sudo with and without a password, and the timeout."""
from __future__ import annotations

import time

import pytest

from fabfile.errors import RemoteError, WrongSudoPassword
from fabfile.inventory import SshTarget
from fabfile.transport import Remote, SshSettings

pytestmark = pytest.mark.lab


def remote(lab, host: str, password: str | None = None) -> Remote:
    target = SshTarget(name=host, address=lab.address(host), user="deploy", key=str(lab.ssh_key_path))
    return Remote(target, SshSettings(known_hosts=lab.known_hosts_path, sudo_password=password, connect_timeout=5))


def test_output_exit_codes_and_sudo_through_the_pipelined_exec(lab):
    with remote(lab, "client1") as r:
        results = [r.run("printf 'out\\n'; printf 'err\\n' >&2; exit 3", check=False) for _ in range(5)]
        assert {(x.stdout, x.stderr, x.exited) for x in results} == {("out\n", "err\n", 3)}
        big = r.run("head -c 300000 /dev/zero | tr '\\0' x")     # more than one SSH window
        assert (len(big.stdout), set(big.stdout)) == (300000, {"x"})
        assert r.run("id -un", sudo=True).stdout == "root\n"
        assert r.run("cat", timeout=5).stdout == ""    # stdin is closed: a command reading it ends


def test_sudo_password_is_answered_once_and_a_wrong_one_stops(lab):
    with remote(lab, "client2", lab.sudo_password) as r:
        assert r.run("sudo -k; true").ok
        assert r.run("id -un", sudo=True).stdout == "root\n"
        assert r.run("cat; id -un", sudo=True, timeout=5).stdout == "root\n"   # the password is sudo's alone
    with remote(lab, "client2", "not-the-password") as r:
        r.run("sudo -k; true")
        with pytest.raises(WrongSudoPassword):
            r.run("id -un", sudo=True)


def test_a_command_that_runs_too_long_is_a_timeout_not_an_exit_code(lab):
    with remote(lab, "client3") as r:
        started = time.monotonic()
        with pytest.raises(RemoteError, match=r"^client3: command timed out after 2s$"):
            r.run("sleep 30", timeout=2)
        assert time.monotonic() - started < 10
        assert r.run("echo still usable").stdout == "still usable\n"   # the connection outlives the channel
