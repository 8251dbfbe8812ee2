"""inventory.yaml: the example loads as documented; bad inventories are rejected with file:line:col,
the key path and a suggestion (cases as data: one edit of the example inventory per row).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fabfile import inventory
from fabfile.errors import ExitCode, InputError, InventoryError

from _support import EXAMPLE_INVENTORY

BASE = EXAMPLE_INVENTORY.read_text()


@pytest.fixture(scope="module")
def example() -> inventory.Inventory:
    return inventory.load(EXAMPLE_INVENTORY)


# --------------------------------------------------------------------------- the example


def test_example_registry(example):
    reg = example.registry
    assert (reg.host, reg.port, reg.data_dir) == ("centos8s-server.singleton.net", 443, "/var/lib/docker-registry")
    assert (reg.ssh.address, reg.ssh.user, reg.ssh.name) == ("192.168.56.200", "root", reg.host)
    assert (reg.container, reg.image, reg.realm, reg.restart_policy) == ("registry", "registry:2", "Registry Realm",
                                                                         "always")
    assert reg.env == (("REGISTRY_STORAGE_DELETE_ENABLED", "true"),)
    assert reg.endpoint == "centos8s-server.singleton.net"  # port 443: no ':443' in image references


def test_example_certificate(example):
    cert = example.certificate
    assert cert.spec.san_texts == ("DNS:cents8s-server", "DNS:centos8s-server.singleton.net", "IP:192.168.56.200")
    assert (cert.spec.days, cert.spec.key_type, cert.mode) == (90, "rsa-4096", "ca")
    assert dict(cert.spec.subject) == {"C": "FR", "ST": "Alpes Maritimes", "L": "Nice", "O": "SINGLETON",
                                       "OU": "R&D", "CN": "docker-registry"}
    assert cert.pki_dir == EXAMPLE_INVENTORY.parent / "pki"  # relative to the inventory file
    assert example.connect_timeout == 10
    assert example.known_hosts == Path("~/.ssh/known_hosts").expanduser()


def test_example_clients_inherit_defaults_then_groups_then_host(example):
    by_name = {c.name: c for c in example.clients}
    assert list(by_name) == ["build-1", "build-2", "node-1", "laptop"]  # file order kept
    b1, node, laptop = by_name["build-1"], by_name["node-1"], by_name["laptop"]
    assert (b1.ssh.user, b1.trust, b1.restart, b1.groups) == ("deploy", ("docker", "os"), "auto", ("builders",))
    assert (node.trust, node.restart) == (("containerd",), "never")  # group beats defaults
    assert (laptop.ssh.user, laptop.trust, laptop.restart) == ("alice", ("docker",), "auto")  # host beats defaults
    assert laptop.ssh.address == "192.168.56.50"
    assert all(c.restart_command == "systemctl restart docker" and c.verify is True for c in example.clients)
    # by default clients pull with every SAN except loopback names
    assert b1.registry_names == ("cents8s-server", "centos8s-server.singleton.net", "192.168.56.200")


INHERIT = """
registry: {host: reg.example}
certificate: {san: [reg.example, 10.0.0.5]}
clients:
  defaults: {ssh_user: d, trust: [docker], restart: auto, verify: true}
  groups:
    g1: {trust: [os], restart: never, ssh_port: 2222}
    g2: {restart: always}
  hosts:
    h1: {groups: [g1, g2], ssh_user: h}
    h2: {groups: [g2, g1]}
    h3:
    h4:
      groups: [g1]
      trust:
      verify:
"""


def test_inheritance_order_and_null_means_inherit():
    inv = inventory.parse(INHERIT, Path("/inv/inventory.yaml"))
    h1, h2, h3, h4 = inv.clients
    assert (h1.ssh.user, h1.trust, h1.restart, h1.ssh.port) == ("h", ("os",), "always", 2222)
    assert h2.restart == "never"  # groups apply in listed order: the later one wins
    assert (h3.ssh.user, h3.trust, h3.restart, h3.ssh.address) == ("d", ("docker",), "auto", "h3")
    # an empty value ("trust:", "verify:") inherits; it never silently disables TLS verification
    assert h4.trust == ("os",)
    assert h4.verify is True


def test_sans_are_lower_cased_and_deduplicated():
    text = ("registry: {host: reg.example}\ncertificate:\n  san: [DNS:reg.example, REG.EXAMPLE, dns:Reg.Example, "
            "IP:10.0.0.1, 10.0.0.1, IP:::1, '0:0::1']\n")
    inv = inventory.parse(text, Path("/inv/inventory.yaml"))
    assert inv.certificate.spec.san_texts == ("DNS:reg.example", "IP:10.0.0.1", "IP:::1")


def test_a_long_registry_host_still_gives_a_valid_default_subject():
    host = "a" * 40 + "." + "b" * 30 + ".example"
    inv = inventory.parse(f"registry: {{host: {host}}}\ncertificate: {{san: [{host}]}}\n", Path("/i/inventory.yaml"))
    cn = dict(inv.certificate.spec.subject)["CN"]
    assert len(cn) <= 64 and host.startswith(cn)
    assert inv.certificate.spec.name  # builds: no 'Attribute's length must be <= 64' at generation time


def test_F04_wildcard_needs_allow_wildcard():
    text = "registry: {host: reg.example.com}\ncertificate: {san: [reg.example.com, '*.example.com']%s}\n"
    with pytest.raises(InventoryError, match=r"certificate\.san\.1: DNS name '\*\.example\.com': wildcards"):
        inventory.parse(text % "", Path("/i/inventory.yaml"))
    inv = inventory.parse(text % ", allow_wildcard: true", Path("/i/inventory.yaml"))
    assert inv.certificate.spec.san_texts == ("DNS:reg.example.com", "DNS:*.example.com")


def test_F02_registry_host_may_be_an_ip_in_an_ip_san():
    inv = inventory.parse("registry: {host: 10.0.0.5}\ncertificate: {san: [IP:10.0.0.5]}\n", Path("/i/inventory.yaml"))
    assert inv.registry.host == "10.0.0.5"


# --------------------------------------------------------------------------- bad inventories, as data

# (id, (old, new) edit of the example inventory, fragment the message must contain, text of the reported line)
BAD = [
    ("F01-bad-indent", ("  port: 443 ", "   port: 443 "), "expected <block end>", "   port: 443"),
    ("F01-tab", ("  port: 443 ", "\tport: 443 "), "use spaces, not tabs, to indent", "\tport: 443"),
    ("F01-unclosed-quote", ("ssh:\n  known_hosts:", 'ssh:\n  config: "~/.ssh/config\n  known_hosts:'),
     "a quoted scalar opened here is never closed (found unexpected end of stream)", '  config: "~/.ssh/config'),
    ("F01-unclosed-bracket", ("trust: [docker, os]", "trust: [docker, os"), "a flow sequence opened here is never closed",
     "      trust: [docker, os"),
    ("F02-typo-key", ("  container: registry", "  contaner: registry"),
     "registry.contaner: unknown key; did you mean 'container'?", "  contaner: registry"),
    ("F02-hots", ("clients:\n  defaults:", "clients:\n  hots: {}\n  defaults:"),
     "clients.hots: unknown key; did you mean 'hosts'?", "  hots: {}"),
    ("F02-host-level-typo", ("{address: 192.168.56.50, ssh_user: alice}", "{adress: 192.168.56.50}"),
     "clients.hosts.laptop.adress: unknown key; did you mean 'address'?", "    laptop: {adress"),
    ("F02-group-level-typo", ("      trust: [docker, os]", "      trsut: [docker, os]"),
     "clients.groups.builders.trsut: unknown key; did you mean 'trust'?", "      trsut:"),
    ("F02-port-abc", ("  port: 443 ", '  port: "abc" '), "registry.port: expected an integer, got 'abc'",
     '  port: "abc"'),
    ("F02-port-true", ("  port: 443 ", "  port: true "), "registry.port: expected an integer, got True",
     "  port: true"),
    ("F02-port-float", ("  port: 443 ", "  port: 443.0 "), "registry.port: expected an integer", "  port: 443.0"),
    ("F02-duplicate-key", ("  container: registry", "  container: registry\n  container: other"),
     "duplicate key 'container' (each key may appear once)", "  container: other"),
    ("F02-ssh-port-22:22", ("  ssh_user: root", "  ssh_user: root\n  ssh_port: 22:22"),
     "registry.ssh_port: expected an integer, got '22:22'", "  ssh_port: 22:22"),
    ("F02-verify-no", ("    restart: auto ", "    verify: no\n    restart: auto "),
     "clients.defaults.verify: expected true or false, got 'no'", "    verify: no"),
    ("F02-unknown-group", ("groups: [k8s]", "groups: [k8z]"),
     "clients.hosts.node-1.groups.0: group 'k8z' is not defined in clients.groups; did you mean 'k8s'?",
     "    node-1:"),
    ("F02-trust-typo", ("trust: [containerd]", "trust: [containrd]"),
     ("clients.groups.k8s.trust.0: got 'containrd'; expected one of docker, containerd, podman, os, buildkit; "
      "did you mean 'containerd'?"), "      trust: [containrd]"),
    ("F02-restart-yes", ("      restart: never", "      restart: yes"),
     "clients.groups.k8s.restart: got 'yes'; expected one of auto, always, never", "      restart: yes"),
    ("F02-timeout-string", ("  connect_timeout: 10", '  connect_timeout: "10"'),
     "ssh.connect_timeout: expected an integer, got '10'", "  connect_timeout:"),
    ("F02-missing-host", ("  host: centos8s-server.singleton.net", "  hostname: x"),
     "registry.hostname: unknown key; did you mean 'host'? (and 1 more problem)", "  hostname: x"),
    ("F02-top-level-typo", ("registry:\n", "registy:\n"),
     "registy: unknown key; did you mean 'registry'?", "registy:"),
    ("F05-port-0", ("  port: 443 ", "  port: 0 "), "registry.port: 0: input should be greater than or equal to 1",
     "  port: 0"),
    ("F05-port-65536", ("  port: 443 ", "  port: 65536 "),
     "registry.port: 65536: input should be less than or equal to 65535", "  port: 65536"),
    ("F05-port-minus-1", ("  port: 443 ", "  port: -1 "), "registry.port: -1: input should be greater than",
     "  port: -1"),
    ("F05-port-5000a", ("  port: 443 ", "  port: 5000a "), "registry.port: expected an integer, got '5000a'",
     "  port: 5000a"),
    ("F05-client-ssh-port-0", ("{address: 192.168.56.50, ssh_user: alice}", "{ssh_port: 0}"),
     "clients.hosts.laptop.ssh_port: 0: input should be greater than or equal to 1", "    laptop:"),
    ("F03-san-256", ("- IP:192.168.56.200", "- IP:10.0.0.256"),
     "certificate.san.2: IP '10.0.0.256' is not a valid IPv4 or IPv6 address", "    - IP:10.0.0.256"),
    ("F03-san-zone", ("- IP:192.168.56.200", "- fe80::1%eth0"), "certificate.san.2: IP 'fe80::1%eth0': zone",
     "    - fe80::1%eth0"),
    ("F03-san-network", ("- IP:192.168.56.200", "- 10.0.0.0/24"), "'10.0.0.0/24': a network is not an address",
     "    - 10.0.0.0/24"),
    ("F03-ip-in-dns", ("- IP:192.168.56.200", "- DNS:192.168.56.200"), "an IP address must be an IP: entry",
     "    - DNS:192.168.56.200"),
    ("F04-underscore", ("- DNS:cents8s-server", "- DNS:reg_1"), "certificate.san.0: DNS name 'reg_1'", "    - DNS:reg_1"),
    ("F04-u-label", ("- DNS:cents8s-server", "- DNS:régistry"), "use its IDNA A-label 'xn--rgistry-bya'",
     "    - DNS:régistry"),
    ("F04-trailing-dot", ("- DNS:cents8s-server", "- DNS:localhost."), "remove the trailing dot", "    - DNS:localhost."),
    ("F04-wildcard", ("- DNS:cents8s-server", "- DNS:*.singleton.net"), "wildcards are refused unless allow_wildcard",
     "    - DNS:*.singleton.net"),
    ("F04-registry-host-invalid", ("  host: centos8s-server.singleton.net", "  host: -reg.example"),
     "registry.host: DNS name '-reg.example'", "  host: -reg.example"),
    ("F07-days-0", ("  days: 90 ", "  days: 0 "), "certificate.days: 0: input should be greater than or equal to 1",
     "  days: 0"),
    ("F07-days-huge", ("  days: 90 ", "  days: 36500 "), "certificate.days: 36500: input should be less than",
     "  days: 36500"),
    ("host-not-in-san", ("  host: centos8s-server.singleton.net", "  host: other.singleton.net"),
     "registry.host: 'other.singleton.net' is not in certificate.san", "  host: other.singleton.net"),
    ("registry-names-not-covered", ("{address: 192.168.56.50, ssh_user: alice}",
                                    "{registry_names: [centos8s-server.singleton.net, nope.example]}"),
     "clients.hosts.laptop.registry_names.1: 'nope.example' is not in certificate.san", "    laptop:"),
    ("key-type", ("key_type: rsa-4096", "key_type: rsa-1024"), ("certificate.key_type: got 'rsa-1024'; expected one "
     "of rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384, ed25519; did you mean"), "  key_type: rsa-1024"),
    ("country", ("{C: FR,", "{C: FRA,"), "certificate.subject: C must be a two-letter country code, got 'FRA'",
     "  subject:"),
    ("data-dir-relative", ("  data_dir: /var/lib/docker-registry", "  data_dir: var/lib/registry"),
     "registry.data_dir: must be an absolute path other than '/'", "  data_dir:"),
    ("env-name", ("    REGISTRY_STORAGE_DELETE_ENABLED:", "    1BAD:"),
     "registry.env: '1BAD' is not a valid environment variable name", "  env:"),
    ("duplicate-trust", ("trust: [docker, os]", "trust: [docker, docker]"),
     "clients.groups.builders.trust: lists a trust target twice", "      trust:"),
    ("bcrypt-cost", ("  realm: Registry Realm", "  realm: Registry Realm\n  bcrypt_cost: 4"),
     "registry.bcrypt_cost: 4: input should be greater than or equal to 10", "  bcrypt_cost: 4"),
]


def apply_edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, f"edit {old!r} no longer matches inventory.yaml exactly once"
    return BASE.replace(old, new)


@pytest.mark.parametrize(("edit", "fragment", "line_text"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_inventory_is_rejected(tmp_path, edit, fragment, line_text):
    path = tmp_path / "inventory.yaml"
    text = apply_edit(*edit)
    path.write_text(text)
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    message = str(err.value)
    assert fragment in message
    assert err.value.exit_code == ExitCode.INVALID_INPUT == 2
    assert isinstance(err.value, (InputError, ValueError))
    assert "\n" not in message  # one line
    # every message starts with file:line:col pointing at the offending line
    assert message.startswith(f"{path}:"), message
    line, col = message[len(str(path)) + 1:].split(":", 2)[:2]
    assert line.isdigit() and col.isdigit(), message
    if line_text is not None:
        assert text.splitlines()[int(line) - 1].startswith(line_text), (message, text.splitlines()[int(line) - 1])


def test_F01_unclosed_quote_names_file_line_col(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(BASE + 'state_dir: "unclosed\n')
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    assert str(err.value).startswith(f"{path}:{len(BASE.splitlines()) + 1}:12: ")  # where the quote opens
    assert "a quoted scalar opened here is never closed" in str(err.value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "must be a mapping"),
    ("- a\n- b\n", "must be a mapping"),
    ("registry: {host: r.example}\n", "certificate: required key is missing"),
])
def test_not_an_inventory(tmp_path, text, fragment):
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError, match=fragment):
        inventory.load(path)


def test_missing_file_names_the_way_out(tmp_path):
    with pytest.raises(InventoryError, match=r"no such inventory file \(give --inventory PATH"):
        inventory.load(tmp_path / "nope.yaml")


def test_yaml_1_1_coercions_do_not_happen(tmp_path):
    """YAML 1.2: `no` stays the string 'no' and `22:22` is not the sexagesimal 1342."""
    text = apply_edit("      restart: never", "      restart: never\n      restart_command: no\n      ssh_port: 2222")
    inv = inventory.parse(text, tmp_path / "inventory.yaml")
    node = inv.select(hosts="node-1")[0]
    assert (node.restart_command, node.ssh.port) == ("no", 2222)


# --------------------------------------------------------------------------- select()


@pytest.mark.parametrize(("hosts", "groups", "expected"), [
    (None, None, ["build-1", "build-2", "node-1", "laptop"]),
    ("laptop,build-1", None, ["build-1", "laptop"]),  # inventory order, not argument order
    (" build-2 , ", None, ["build-2"]),
    (None, "builders", ["build-1", "build-2"]),
    (None, "k8s,builders", ["build-1", "build-2", "node-1"]),
    ("build-1,node-1", "builders", ["build-1"]),
])
def test_select(example, hosts, groups, expected):
    assert [c.name for c in example.select(hosts=hosts, groups=groups)] == expected


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"hosts": "buld-1"}, "--hosts buld-1: no such client; did you mean 'build-1'?"),
    ({"hosts": "build-1,zzz"}, "--hosts zzz: no such client"),
    ({"groups": "k8"}, "--groups k8: no client is in that group; did you mean 'k8s'?"),
])
def test_select_errors(example, kwargs, fragment):
    with pytest.raises(InventoryError) as err:
        example.select(**kwargs)
    assert fragment in str(err.value) and err.value.exit_code == 2


# --------------------------------------------------------------------------- F01: zero connections


def test_F01_loading_opens_no_network_connection(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError(f"inventory.load opened a network connection: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    inv = inventory.load(EXAMPLE_INVENTORY)
    assert len(inv.clients) == 4
    bad = tmp_path / "inventory.yaml"
    bad.write_text(apply_edit("  port: 443 ", "\tport: 443 "))
    with pytest.raises(InventoryError):
        inventory.load(bad)


# --------------------------------------------------------------------------- linear loading (issue 15)


def test_loading_is_linear_in_sans_and_clients(monkeypatch):
    """2,000 SANs took 8 s: each client re-built the SAN list and scanned it per name (O(clients x SANs^2)).
    Counted, not timed: SAN texts are built a bounded number of times per SAN, whatever the client count."""
    from fabfile import certs

    calls = {"san_text": 0}
    real = certs.san_text

    def counting(name):
        calls["san_text"] += 1
        return real(name)

    monkeypatch.setattr(certs, "san_text", counting)
    sans = "\n".join(f"    - DNS:h{i}.example.test" for i in range(2000))
    hosts = "\n".join(f"    c{i}: {{address: 10.0.0.{i + 1}}}" for i in range(50))
    text = (f"registry: {{host: h0.example.test}}\ncertificate:\n  san:\n{sans}\n"
            f"clients:\n  hosts:\n{hosts}\n    named: {{registry_names: [h1999.example.test]}}\n")
    inv = inventory.parse(text, Path("inventory.yaml"))
    assert len(inv.clients) == 51 and len(inv.clients[0].registry_names) == 2000
    assert calls["san_text"] <= 3 * 2000


def test_coverage_agrees_with_covers():
    from fabfile import certs

    sans = ("DNS:registry.test", "DNS:*.apps.test", "DNS:UPPER.test", "IP:10.0.0.1", "IP:::1")
    names = ["registry.test", "REGISTRY.test", "x.apps.test", "apps.test", "a.b.apps.test", "upper.test",
             "10.0.0.1", "10.0.0.2", "::1", "0:0::1", "999.1.1.1", "*.apps.test", "other.test", ".apps.test"]
    covered = certs.coverage(sans)
    assert [covered(n) for n in names] == [certs.covers(sans, n) for n in names]
