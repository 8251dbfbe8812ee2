"""docs/FAULTS.md rows that are local: the SSH layer's decisions (host keys, ssh_config, gateways,
timeouts, no retry after an auth failure, sudo), clock checks, interrupts, locks, restart gating,
and the command line's exit codes. Real sshd behaviour is proven in tests/e2e/test_ssh.py and
tests/e2e/test_faults.py; here nothing needs root or a network beyond loopback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from fabfile import clients as C
from fabfile import facts as F
from fabfile import fleet, inventory
from fabfile import registry as R
from fabfile import transport as T
from fabfile.errors import ExitCode, InventoryError, LockedError, RemoteError, RestartRefused
from fabfile.inventory import SshTarget
from fabfile.pki import Material
from fabfile.registry import lock as RL
from fabfile.results import HostResult
from fabfile.steps import Kind

from _support import NOW, REPO, make_client, make_registry

EPOCH = 1_767_225_600


def settings(tmp_path: Path, **kw) -> T.SshSettings:
    return T.SshSettings(known_hosts=kw.pop("known_hosts", tmp_path / "known_hosts"), connect_timeout=1, **kw)


def remote(tmp_path: Path, target: SshTarget | None = None, **kw) -> T.Remote:
    return T.Remote(target or SshTarget(name="c1", address="192.0.2.20", user="deploy"), settings(tmp_path, **kw))


# --------------------------------------------------------------------------- F10 unreachable


def test_F10_tcp_timeout_is_unreachable_after_connect_timeout_and_not_retried(tmp_path, monkeypatch):
    tries = []

    def black_hole(address, timeout=None):
        tries.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", black_hole)
    with pytest.raises(RemoteError) as err:
        remote(tmp_path).open()
    assert err.value.status == "unreachable" and err.value.host == "c1"
    assert err.value.reason == "connection timed out after 1s to 192.0.2.20:22"
    assert tries == [(("192.0.2.20", 22), 1)]  # bounded by connect_timeout, one attempt (a black hole stays one)


@pytest.mark.parametrize(("exc", "message"), [
    (socket.gaierror(-2, "Name or service not known"), "cannot resolve 192.0.2.20"),
    (ConnectionRefusedError(111, "refused"), "connection refused by 192.0.2.20:22"),
    (OSError(113, "No route to host"), "no route to 192.0.2.20"),
])
def test_F10_network_errors_map_to_one_line(tmp_path, monkeypatch, exc, message):
    def fail(*a, **kw):
        raise exc

    monkeypatch.setattr(socket, "create_connection", fail)
    with pytest.raises(RemoteError) as err:
        remote(tmp_path).open()
    assert (err.value.status, err.value.reason) == ("unreachable", message)


def test_F10_server_that_never_speaks_ssh_is_bounded(tmp_path):
    """Accepts TCP, never sends a banner: banner_timeout = connect_timeout, one retry (transient)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        target = SshTarget(name="mute", address="127.0.0.1", port=server.getsockname()[1], user="deploy")
        start = time.monotonic()
        with pytest.raises(RemoteError) as err:
            remote(tmp_path, target).open()
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        server.close()
    assert err.value.status == "unreachable" and "banner" in err.value.reason
    assert len(held) == 2  # the one retry for a transient error
    assert elapsed < 2 * 1 + 0.5 + 1.5, elapsed


# --------------------------------------------------------------------------- F11 host keys


def test_F11_every_hop_rejects_unknown_keys_and_loads_known_hosts(tmp_path):
    key, jump = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    (tmp_path / "known_hosts").write_text(f"192.0.2.20 {key.get_name()} {key.get_base64()}\n"
                                          f"[192.0.2.1]:2222 {jump.get_name()} {jump.get_base64()}\n")
    target = SshTarget(name="c1", address="192.0.2.20", user="deploy", gateway="jump@192.0.2.1:2222")
    cxn = remote(tmp_path, target).connection()
    for hop, name, want in ((cxn, "192.0.2.20", key), (cxn.gateway, "[192.0.2.1]:2222", jump)):
        assert isinstance(hop.client._policy, paramiko.RejectPolicy)  # Fabric installed AutoAddPolicy
        assert hop.client.get_host_keys().lookup(name)[want.get_name()] == want  # its own known_hosts key
    assert (cxn.gateway.host, cxn.gateway.user, cxn.gateway.port) == ("192.0.2.1", "jump", 2222)
    accept = remote(tmp_path, target, accept_new_host_keys=True).connection()
    assert all(isinstance(h.client._policy, T._RecordNewKey) for h in (accept, accept.gateway))


def test_F11_accept_new_records_a_new_host_once_and_never_a_changed_key(tmp_path):
    path = tmp_path / "ssh" / "known_hosts"
    policy = T._RecordNewKey(path)
    client = paramiko.SSHClient()
    key, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    policy.missing_host_key(client, "[10.0.0.5]:2222", key)
    policy.missing_host_key(client, "[10.0.0.5]:2222", key)  # a second thread, same host: no duplicate line
    assert path.read_text() == f"[10.0.0.5]:2222 {key.get_name()} {key.get_base64()}\n"
    with pytest.raises(paramiko.BadHostKeyException):  # recorded meanwhile with another key: changed, not new
        T._RecordNewKey(path).missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", other)
    assert path.read_text().count("\n") == 1


def test_F11_changed_key_message_shows_both_fingerprints(tmp_path):
    old, new = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    r = remote(tmp_path)
    cxn = r.connection()
    err = r._connect_error(paramiko.BadHostKeyException("192.0.2.20", new, old), cxn, "")
    assert err.status == "unreachable" and err.host == "c1"
    assert old.fingerprint in err.reason and new.fingerprint in err.reason and "CHANGED" in err.reason
    assert f"ssh-keygen -R 192.0.2.20 -f {tmp_path / 'known_hosts'}" in err.reason


def test_F11_unknown_key_message_names_known_hosts_and_the_flag(tmp_path):
    r = remote(tmp_path)
    err = r._connect_error(paramiko.SSHException("Server '192.0.2.20' not found in known_hosts"), r.connection(), "")
    assert err.reason == (f"unknown host key for 192.0.2.20; not in {tmp_path / 'known_hosts'} "
                          "(verify it and add it, or pass --accept-new-host-keys to record it)")


# --------------------------------------------------------------------------- F12 authentication


@pytest.mark.parametrize(("exc", "attempts"), [
    (paramiko.AuthenticationException("Authentication failed."), 1),
    (paramiko.PasswordRequiredException("private key file is encrypted"), 1),
    (paramiko.BadHostKeyException("h", paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()), 1),
    (ConnectionResetError(104, "reset"), 2),
    (EOFError(), 2),
])
def test_F12_auth_and_host_key_failures_are_never_retried(tmp_path, monkeypatch, exc, attempts):
    calls = []

    def dial(self, cxn):
        calls.append(cxn)
        raise exc

    monkeypatch.setattr(T.Remote, "_dial", dial)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with pytest.raises(RemoteError):
        remote(tmp_path, SshTarget(name="c1", address="192.0.2.20", user="deploy", key="/k/id")).open()
    assert len(calls) == attempts


def test_F12_auth_failure_names_user_and_methods_tried(tmp_path):
    r = remote(tmp_path, SshTarget(name="c1", address="192.0.2.20", user="deploy", key="/k/id"))
    err = r._connect_error(paramiko.AuthenticationException("x"), r.connection(), "")
    assert err.reason == "authentication failed for user deploy@192.0.2.20, tried key /k/id (not retried)"
    r = remote(tmp_path)
    err = r._connect_error(paramiko.AuthenticationException("x"), r.connection(), "")
    assert err.reason.endswith("tried ssh-agent and default keys (not retried)")


def test_F12_agent_forwarding_stays_off_whatever_ssh_config_says(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ForwardAgent yes\n  ProxyJump bastion\nHost bastion\n  ProxyJump none\n")
    cxn = remote(tmp_path, ssh_config=config).connection()
    assert cxn.forward_agent is False
    assert isinstance(cxn.gateway, T.Connection) and cxn.gateway.forward_agent is False


# --------------------------------------------------------------------------- ssh_config (F11/F15 context)


def test_F11_ssh_config_user_port_hostname_identityfile_and_proxyjump_are_honoured(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host web1\n  HostName 10.1.0.11\n  User alice\n  Port 2201\n  IdentityFile /keys/web\n  ProxyJump gw\n"
        "Host gw\n  HostName 10.1.0.1\n  User jumper\n  Port 2022\n  IdentityFile /keys/gw\n")
    cxn = remote(tmp_path, SshTarget(name="web1", address="web1"), ssh_config=config).connection()
    assert (cxn.host, cxn.user, cxn.port) == ("10.1.0.11", "alice", 2201)
    assert cxn.connect_kwargs["key_filename"] == ["/keys/web"]
    gw = cxn.gateway
    assert (gw.host, gw.user, gw.port, gw.connect_kwargs["key_filename"]) == ("10.1.0.1", "jumper", 2022, ["/keys/gw"])
    assert gw.connect_timeout == cxn.connect_timeout == 2  # key exchange: twice connect_timeout
    # the inventory wins over ssh_config; its key is tried first
    explicit = SshTarget(name="web1", address="web1", user="bob", port=22, key="/keys/inv")
    cxn = remote(tmp_path, explicit, ssh_config=config).connection()
    assert (cxn.user, cxn.port, cxn.connect_kwargs["key_filename"]) == ("bob", 22, ["/keys/inv", "/keys/web"])


def test_F11_missing_ssh_config_reads_nothing_else(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User from-home\n")
    monkeypatch.setenv("HOME", str(home))
    cxn = remote(tmp_path, SshTarget(name="c1", address="c1"), ssh_config=tmp_path / "absent").connection()
    assert cxn.user != "from-home"


def test_F11_unreadable_ssh_config_is_invalid_input(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host a\n  ProxyCommand\n")
    with pytest.raises(Exception) as err:
        T.ssh_config(config)
    assert str(config) in str(err.value) and getattr(err.value, "exit_code", None) == ExitCode.INVALID_INPUT


# --------------------------------------------------------------------------- F15 gateways


def test_F15_gateway_failure_is_attributed_to_the_gateway(tmp_path, monkeypatch):
    dialed = []

    def refuse(self, host, port):
        dialed.append((host, port))
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(T.Remote, "_socket", refuse)
    target = SshTarget(name="c1", address="192.0.2.20", user="deploy", gateway="jump@192.0.2.1")
    with pytest.raises(RemoteError) as err:
        remote(tmp_path, target).open()
    assert dialed == [("192.0.2.1", 22)]  # only the gateway was tried
    assert err.value.host == "c1" and err.value.status == "unreachable"
    assert err.value.reason == ("gateway jump@192.0.2.1:22 failed: connection refused by 192.0.2.1:22 "
                                "(target not tried)")


def test_F15_gateway_auth_failure_names_the_gateway_user(tmp_path, monkeypatch):
    def auth_fails(self, cxn):
        if isinstance(cxn.gateway, T.Connection):
            self._hops.append(cxn.gateway)
            raise T.GatewayError(self.name, T._label(cxn.gateway), self._connect_error(
                paramiko.AuthenticationException("x"), cxn.gateway, "").reason)
        raise AssertionError("the target must not be dialed")

    monkeypatch.setattr(T.Remote, "_dial", auth_fails)
    target = SshTarget(name="c1", address="192.0.2.20", user="deploy", key="/k/id", gateway="nobody@192.0.2.1")
    with pytest.raises(RemoteError) as err:
        remote(tmp_path, target).open()
    assert err.value.reason == ("gateway nobody@192.0.2.1:22 failed: authentication failed for user "
                                "nobody@192.0.2.1, tried key /k/id (not retried) (target not tried)")


@pytest.mark.parametrize("text", ["u@h:0", "u@h:x", "@h", "a b", "u@reg_1"])
def test_F15_malformed_gateway_is_an_inventory_error(tmp_path, text):
    path = tmp_path / "inventory.yaml"
    path.write_text("registry: {host: r.example}\ncertificate: {san: [DNS:r.example]}\n"
                    f"clients:\n  hosts:\n    c1: {{gateway: '{text}'}}\n")
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    assert "clients.hosts.c1.gateway" in str(err.value) and f"{path}:5:" in str(err.value)


def test_F15_gateway_forms():
    assert inventory.parse_gateway("jump") == (None, "jump", None)
    assert inventory.parse_gateway("ops@bastion.example:2222") == ("ops", "bastion.example", 2222)
    assert inventory.parse_gateway("ops@[2001:db8::1]:22") == ("ops", "2001:db8::1", 22)


# --------------------------------------------------------------------------- F13/F14 sudo


def test_F13_sudo_password_goes_to_stdin_with_LC_ALL_C_never_on_the_command_line(tmp_path):
    r = remote(tmp_path, sudo_password="hunter2-very-secret")
    command, prompt = r._sudo("cat /etc/shadow")
    assert command.startswith("LC_ALL=C sudo -S -p '[registry-tls sudo ") and command.endswith("-- sh -c 'cat /etc/shadow'")
    assert prompt is not None and f"-p '{prompt}'" in command
    assert "hunter2" not in command
    assert T.SUDO_RETRY == b"Sorry, try again."  # matches only because LC_ALL=C keeps sudo in English
    assert r._sudo("true")[0] != command  # a fresh random prompt each time
    command, prompt = remote(tmp_path)._sudo("true")
    assert command == "LC_ALL=C sudo -n -- sh -c true" and prompt is None


@pytest.mark.parametrize(("stderr", "fragment"), [
    ("sudo: a password is required\n", "sudo needs a password and none was given"),
    ("sudo: a terminal is required to read the password; either use the -S option\n",
     "sudo needs a password and none was given"),
    ("sudo: sorry, you must have a tty to run sudo\n", "sudo: you must have a tty (sudoers has requiretty"),
    ("sudo: 1 incorrect password attempt\n", "sudo: wrong password (stopped after one attempt)"),
    ("deploy is not in the sudoers file.  This incident will be reported.\nsudo: x\n", "sudo refused"),
])
def test_F14_sudo_refusals_are_one_clear_line(stderr, fragment):
    with pytest.raises(RemoteError) as err:
        T._raise_for_sudo("c2", T.Result(stdout="", stderr=stderr, exited=1))
    assert err.value.host == "c2" and fragment in err.value.reason and "\n" not in err.value.reason


# --------------------------------------------------------------------------- F16 docker stopped on a client


def test_F16_client_dockerd_stopped_needs_a_restart_then_says_so_precisely():
    """Better design than the brief's 'client failed' (docs/FAULTS.md F16): the trust files do not need
    dockerd; a dockerd that is not running loads the new OS store when it starts, so the host is 'changed'
    with a warning."""
    client, reg = make_client(trust=("os",)), make_registry()
    anchor = C.Anchor("current", b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    todo = C.plan(client, reg, (anchor,), F.parse_client("OS debian \n", C.probe_paths(client, reg, (anchor,))))
    assert todo.step(Kind.RESTART_DOCKERD) is None and todo.writes
    assert todo.warnings == (("dockerd is not running, so it was not restarted (the OS trust store changed): "
                             "it loads the new trust when it starts"),)


# --------------------------------------------------------------------------- F19 clocks


@pytest.mark.parametrize(("offset", "expected"), [
    (0, None), (60, None), (-60, None),
    (61, (False, "clock differs from this machine by +61s")),
    (-299, (False, "clock differs from this machine by -299s")),
    (7200, (False, "clock differs from this machine by +7200s")),  # ahead: the certificate only lives shorter
    (-301, (True, "clock is 301s behind this machine, more than the 300s a certificate is backdated")),
])
def test_F19_clock_problem_table(offset, expected):
    got = F.clock_problem(EPOCH + offset, EPOCH)
    assert (got if got is None else (got[0], got[1][:len(expected[1])])) == expected


@pytest.fixture(scope="module")
def material(key_cache, spec) -> Material:
    from fabfile import certs

    key = key_cache("faults-server")
    cert = certs.build_self_signed(spec, key, NOW)
    return Material(chain=(cert,), key=key, anchor=cert)


def test_F19_registry_host_clock_far_behind_fails_naming_the_host(material):
    want = R.desired(make_registry(), material, b"")
    with pytest.raises(RemoteError) as err:
        R.plan(want, F.RegistryFacts(clock=EPOCH - 7200), now=EPOCH)
    assert err.value.host == "reg.example" and "7200s behind" in err.value.reason


def test_F19_registry_host_clock_off_by_minutes_warns(material):
    want = R.desired(make_registry(), material, b"")
    todo = R.plan(want, F.RegistryFacts(clock=EPOCH + 120), now=EPOCH)
    assert todo.warnings == (("clock differs from this machine by +120s; a fresh certificate may be "
                             "'not yet valid' there"),)
    assert R.plan(want, F.RegistryFacts(clock=EPOCH + 5), now=EPOCH).warnings == ()


# --------------------------------------------------------------------------- F24 interrupts and locks


def test_F24_a_remote_step_runs_to_its_end_and_the_interrupt_lands_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt), T.uninterrupted("reg"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("step finished")
    assert done == ["step finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_F24_a_second_interrupt_stops_at_once():
    done = []
    with pytest.raises(KeyboardInterrupt), T.uninterrupted("reg"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("not reached")
    assert done == []


def test_F24_sigterm_is_held_like_sigint():
    with pytest.raises(KeyboardInterrupt), T.uninterrupted("reg"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_F24_interrupted_fan_out_starts_no_new_host():
    started = []

    def work(item):
        started.append(item)
        if item == 0:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the first hosts run
        time.sleep(0.2)
        return HostResult(host=str(item))

    with pytest.raises(KeyboardInterrupt):
        fleet.fan_out(list(range(20)), work, name=str, parallel=2)
    assert len(started) <= 4, started  # the two in flight finished; the queue was dropped


def test_F24_local_lock_second_run_fails_with_exit_1_and_names_the_holder(tmp_path):
    from fabfile.state import LocalState

    inv = inventory.parse("registry: {host: r.example}\ncertificate: {san: [DNS:r.example]}\n"
                          f"state_dir: {tmp_path / 'state'}\n", tmp_path / "inventory.yaml")
    with LocalState(inv).lock(), pytest.raises(LockedError) as err, LocalState(inv).lock():
        pass
    assert err.value.exit_code == ExitCode.HOSTS_FAILED == 1
    assert str(err.value) == (f"{tmp_path / 'state' / 'lock'}: another registry-tls run holds the lock "
                              f"(pid {os.getpid()}); wait for it to finish")
    with LocalState(inv).lock():  # released by the first
        pass


def test_F24_remote_lock_staleness(monkeypatch):
    here, now = socket.gethostname(), int(time.time())
    monkeypatch.setattr(RL, "machine_id", lambda: "m-here")
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert RL._stale(f"{here} pid {os.getpid()} run ab12 m-here {now}", 5) is None  # alive here
    assert RL._stale(f"{here} pid {dead.pid} run ab12 m-here {now}", 5) == f"process {dead.pid} on this machine is gone"
    # review L4: the same host name on another machine (CI runners, containers) is not this machine
    assert RL._stale(f"{here} pid {dead.pid} run ab12 m-other {now - 5}", 5) is None
    assert RL._stale(f"other-host pid 4242 run ab12 m-other {now - 10}", 10) is None  # fresh: respected
    assert RL._stale(f"other-host pid 4242 run ab12 m-other {now - 3700}", 3700) == "older than 60 minutes"
    # an unreadable owner is held until the lock folder itself is old
    assert RL._stale("garbage", 5) is None and RL._stale("", 0) is None
    assert RL._stale("garbage", 3700) == "its owner file is unreadable and it is older than 60 minutes"
    assert RL._owner_text(f"other-host pid 4242 run ab12 m-other {now - 10}") in (
        f"other-host pid 4242 run ab12, {s}s ago" for s in (10, 11))


# --------------------------------------------------------------------------- F25 restart gate


def test_F25_restart_gate_bounds_concurrency_and_stops_after_a_failure():
    gate = C.RestartGate(2)
    running, peak, lock = [0], [0], threading.Lock()

    def restart(host, fail=False):
        with gate.slot(host):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            if fail:
                raise RemoteError(host, "dockerd restart command failed: false")

    threads = [threading.Thread(target=restart, args=(f"h{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2
    with pytest.raises(RemoteError):
        restart("bad", fail=True)
    with pytest.raises(RemoteError) as err:
        restart("later")
    assert err.value.reason == "dockerd restart skipped: the restart on bad failed"


def test_F25_a_refused_restart_does_not_stop_the_others():
    gate = C.RestartGate(1)
    with pytest.raises(RemoteError), gate.slot("busy"):
        raise RestartRefused("busy", "dockerd not restarted: 1 container(s) running and live-restore is off")
    with gate.slot("next"):
        pass
    assert gate.failed_on is None


# --------------------------------------------------------------------------- exit codes (every row)


def inv(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**base, **(env or {})}, check=False)


BAD_INVENTORIES = [
    ("F01", "registry:\n  host: r.example\n   port: 443\n", "inventory.yaml:3:"),
    ("F02", "registry: {host: r.example, prot: 443}\ncertificate: {san: [DNS:r.example]}\n", "did you mean 'port'"),
    ("F02", "registry: {host: r.example}\nregistry: {host: r.example}\ncertificate: {san: [DNS:r.example]}\n",
     "duplicate key"),
    ("F03", "registry: {host: r.example}\ncertificate: {san: [DNS:r.example, IP:10.0.0.256]}\n", "10.0.0.256"),
    ("F04", "registry: {host: reg_1.example}\ncertificate: {san: [DNS:reg_1.example]}\n", "reg_1"),
    ("F05", "registry: {host: r.example, port: 65536}\ncertificate: {san: [DNS:r.example]}\n", "registry.port"),
    ("F07", "registry: {host: r.example}\ncertificate: {san: [DNS:r.example], days: 0}\n", "certificate.days"),
    ("F15", "registry: {host: r.example, gateway: 'u@g:0'}\ncertificate: {san: [DNS:r.example]}\n",
     "registry.gateway"),
]


@pytest.mark.parametrize(("row", "text", "fragment"), BAD_INVENTORIES, ids=[f"{r[0]}-{i}" for i, r in
                                                                          enumerate(BAD_INVENTORIES)])
def test_F01_F02_F03_F04_F05_F07_bad_inventory_exits_2_in_one_line_touching_nothing(tmp_path, row, text, fragment):
    (tmp_path / "inventory.yaml").write_text(text)
    proc = inv("deploy", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.yaml"]  # no state, no pki, no log


@pytest.mark.parametrize(("task", "code"), [("clients.trust", 2), ("rotate", 2), ("verify", 2), ("status", 3)])
def test_F01_every_task_exits_2_on_a_bad_inventory_status_3(tmp_path, task, code):
    """`inv status` follows monitoring conventions: UNKNOWN (3) when it cannot even start."""
    (tmp_path / "inventory.yaml").write_text(BAD_INVENTORIES[1][1])
    proc = inv(task, cwd=tmp_path)
    assert proc.returncode == code and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_F01_missing_inventory_is_exit_2(tmp_path):
    proc = inv("deploy", cwd=tmp_path)
    assert proc.returncode == 2 and "no such inventory file" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- secrets (rule of every row)


def test_F13_sudo_password_user_passwords_and_the_uploaded_key_are_registered_for_masking(tmp_path, material):
    """Defence in depth: these never travel in text, but any message that quoted one would print ***."""
    from fabfile import deploy as D
    from fabfile.htpasswd import hash_password
    from fabfile.redact import MASK, redact
    from fabfile.session import open_session

    path = tmp_path / "inventory.yaml"
    path.write_text(f"registry: {{host: r.example}}\ncertificate: {{san: [DNS:r.example], pki_dir: {tmp_path}}}\n"
                    f"state_dir: {tmp_path / 'state'}\n")
    sudo = "sudo-" + os.urandom(6).hex()
    session = open_session(path, sudo_password=sudo)
    user = "user-" + os.urandom(6).hex()
    hash_password(user, 10)
    D.registry_job(session, material)
    key_line = material.key_pem.decode().splitlines()[1]
    assert redact(f"x {sudo} {user} {key_line} y") == f"x {MASK} {MASK} {MASK} y"


def test_F11_broken_ssh_config_is_invalid_input_before_any_connection(tmp_path):
    from fabfile.session import open_session

    config = tmp_path / "ssh_config"
    config.write_text("Host a\n  ProxyCommand\n")
    path = tmp_path / "inventory.yaml"
    path.write_text(f"registry: {{host: r.example}}\ncertificate: {{san: [DNS:r.example]}}\nssh: {{config: {config}}}\n")
    with pytest.raises(Exception) as err:
        open_session(path)
    assert err.value.exit_code == ExitCode.INVALID_INPUT and str(config) in str(err.value)
