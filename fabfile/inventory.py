"""inventory.yaml -> a validated, resolved ``Inventory``. Pure: reads one file, no network.

Two layers:

- the *schema* (pydantic models, strict: unknown keys, bool-for-int and
  duplicate keys are errors), read with ruamel.yaml in YAML 1.2 so ``no`` and
  ``22:22`` stay strings instead of turning into ``False`` and ``1342``;
- the *resolved* inventory (frozen dataclasses) the rest of the code uses:
  client vars merged defaults -> groups (in listed order) -> host.

Every error is an ``InventoryError`` naming file, line and key path, e.g.
``inventory.yaml:7:5: clients.hosts.web1.hots: unknown key; did you mean 'host'?``.

The YAML is plain data only: anchors/aliases, merge keys (``<<``), tags,
directives and more than one document are refused (they hide or multiply
meaning), and so are control characters in any value; size, nesting and
value length are bounded. Loading is linear in the file's size.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, overload

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML, events
from ruamel.yaml.error import MarkedYAMLError

from . import certs
from .errors import CertificateError, InventoryError
from .report import hidden_character, literal

Port = Annotated[int, Field(ge=1, le=65535)]
TrustTarget = Literal["docker", "containerd", "podman", "os", "buildkit"]
RestartMode = Literal["auto", "always", "never"]
DEFAULT_TRUST: tuple[str, ...] = ("docker",)
DEFAULT_RESTART_COMMAND = "systemctl restart docker"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@overload
def _check_address(value: str) -> str: ...
@overload
def _check_address(value: str | None) -> str | None: ...
def _check_address(value: str | None) -> str | None:
    if value is None:
        return None
    if "%" in value:
        raise ValueError(f"{value!r}: zone indexes (%iface) are not accepted")  # review L10
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    try:
        return certs.parse_dns_name(value)
    except CertificateError as exc:
        raise ValueError(str(exc)) from None


# POSIX-ish login names (review L10): they reach ssh_config's %r and ProxyCommand, which paramiko shlex-splits
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_CONTAINER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")                   # docker's own rule (review M4)
# An image reference (registry.image, kubernetes.image): [host[:port]/]name, an optional tag, an optional digest;
# lowercase name, starting with a letter or digit, so never an option (review M4). Use with fullmatch.
IMAGE_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._/:-]*?(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
                             r"(?:@sha256:[0-9a-f]{64})?")
_REALM = re.compile(r'[ !#-\[\]-~]{1,128}')                                   # printable ASCII, no '"' or '\'
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# environment keys registry-tls sets itself (review L9): registry.env may not override them
MANAGED_ENV = re.compile(r"REGISTRY_(AUTH.*|HTTP_ADDR|HTTP_TLS_.*)")
# registry.env keys whose values are secrets (review M3): a key naming one of these words, in any case
# (REGISTRY_HTTP_SECRET, REGISTRY_STORAGE_S3_ACCESSKEY/SECRETKEY, REGISTRY_STORAGE_AZURE_ACCOUNTKEY,
# REGISTRY_STORAGE_GCS_KEYFILE, REGISTRY_PROXY_PASSWORD, REGISTRY_REDIS_PASSWORD, ..._SESSIONTOKEN, ..._TRUSTID).
# Other values stay readable, so the registry's own error line can name the value that is wrong
# (`panic: StorageDriver not registered: bogus-driver`). CERT is not a word here: a certificate is public,
# and its path is what the registry names when it cannot read it.
SECRET_ENV_WORDS = ("PASS", "PWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "SESSION", "TRUST",
                    "COOKIE")
_URL_PASSWORD = re.compile(r"://[^/@\s:]*:(?P<password>[^/@\s]+)@")   # scheme://user:password@host
SYSTEM_DIRS = {"/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin",
               "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/tmp", "/usr/local"}


def env_secrets(env: Iterable[tuple[str, str]]) -> list[str]:
    """The registry.env values masked everywhere (log, message, --json): the value of every key that names a
    secret (SECRET_ENV_WORDS), and the password of a URL in any value (``scheme://user:password@host``)."""
    found = []
    for key, value in env:
        if any(word in key.upper() for word in SECRET_ENV_WORDS):
            found.append(value)
        found += [m["password"] for m in _URL_PASSWORD.finditer(value)]
    return found


def check_user(value: str | None) -> str | None:
    if value is not None and not _USER.fullmatch(value):
        raise ValueError(f"{value!r}: a user name is letters, digits, '_', '.', '-' (not starting with '-' or a digit)")
    return value


def check_name(value: str) -> str:
    """A registry name clients use (registry_names, review M1): a DNS name or an IP, never a wildcard."""
    try:
        return certs.san_text(certs.parse_san(value)).partition(":")[2]
    except CertificateError as exc:
        raise ValueError(str(exc)) from None


_GATEWAY = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[^@:\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_gateway(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``) -> (user, host, port); ValueError when malformed."""
    m = _GATEWAY.match(text.strip())
    if not m:
        raise ValueError(f"{text!r}: expected [user@]host[:port] (IPv6 as [addr]:port)")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is not in 1-65535")
    return check_user(m["user"]), _check_address(m["ip6"] or m["host"]), port


class SshVars(_Strict):
    """How to reach a host over SSH. Unset values fall back to ~/.ssh/config, then to SSH defaults."""

    address: str | None = None
    ssh_user: str | None = None
    ssh_port: Port | None = None
    ssh_key: str | None = None
    gateway: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return _check_address(v)

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        return check_user(v)

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, v: str | None) -> str | None:
        if v is not None:
            parse_gateway(v)
        return v


class ClientVars(SshVars):
    """One layer of client settings: defaults, a group, or a host."""

    trust: list[TrustTarget] | None = None
    restart: RestartMode | None = None
    restart_command: str | None = None
    registry_names: list[str] | None = None
    verify: bool | None = None

    @field_validator("registry_names")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [check_name(n) for n in v]

    @field_validator("trust")
    @classmethod
    def _no_duplicate_targets(cls, v: list[TrustTarget] | None) -> list[TrustTarget] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("lists a trust target twice")
        return v


class ClientHostVars(ClientVars):
    groups: list[str] = []


class ClientsSection(_Strict):
    defaults: ClientVars = ClientVars()
    groups: dict[str, ClientVars] = {}
    hosts: dict[str, ClientHostVars | None] = {}


class RegistrySection(SshVars):
    host: str
    port: Port = 443
    data_dir: str = "/var/lib/docker-registry"
    container: str = "registry"
    image: str = "registry:2"
    engine: Literal["docker", "podman"] = "docker"
    realm: str = "Registry Realm"
    restart_policy: Literal["always", "unless-stopped", "on-failure", "no"] = "always"
    minimum_tls: Literal["tls1.2", "tls1.3"] = "tls1.2"
    bcrypt_cost: Annotated[int, Field(ge=10, le=15)] = 10
    env: dict[str, str] = {}
    health_timeout: Annotated[int, Field(ge=1, le=600)] = 30

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _check_address(v)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or v.rstrip("/") == "":
            raise ValueError(f"must be an absolute path other than '/', got {v!r}")
        if any(part in ("..", ".") for part in v.split("/")) or re.search(r"[:,\x00-\x1f\x7f]", v):
            raise ValueError(f"{v!r}: no '.', '..', ':', ',' or control characters (root writes there)")  # review L2
        if posixpath.normpath(v) in SYSTEM_DIRS:
            raise ValueError(f"{v!r} is a system folder; give a folder of its own, e.g. /var/lib/docker-registry")
        return posixpath.normpath(v)

    @field_validator("container")
    @classmethod
    def _container(cls, v: str) -> str:
        if not _CONTAINER.fullmatch(v):
            raise ValueError(f"{v!r}: a container name is letters, digits, '_', '.', '-', starting with a letter or digit")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not IMAGE_REFERENCE.fullmatch(v):
            raise ValueError(f"{v!r}: not an image reference (e.g. registry:2 or registry@sha256:...)")
        return v

    @field_validator("realm")
    @classmethod
    def _realm(cls, v: str) -> str:
        if not _REALM.fullmatch(v):
            raise ValueError(f"{v!r}: printable ASCII without '\"' or '\\' (it is quoted in WWW-Authenticate)")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if MANAGED_ENV.fullmatch(name.upper()):
                raise ValueError(f"{name!r} is set by registry-tls (auth, TLS and address follow the inventory: "
                                 "realm, minimum_tls, port); remove it from registry.env")
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v[name]):
                raise ValueError(f"{name}: the value has a control character (it is written to an env file, "
                                 "one KEY=VALUE a line)")
        return v


class CertificateSection(_Strict):
    subject: dict[Literal["C", "ST", "L", "O", "OU", "CN"], str] = {}
    san: list[str] = Field(min_length=1)
    days: Annotated[int, Field(ge=1, le=3650)] | None = None   # ca: 90, self-signed: 365
    key_type: Literal[certs.KEY_TYPES] = "rsa-4096"  # type: ignore[valid-type]
    mode: Literal["self-signed", "ca"] = "ca"
    pki_dir: str = "pki"
    ca_days: Annotated[int, Field(ge=1, le=7300)] = 1825
    encrypt_ca_key: bool = False
    accept_self_signed_os_trust: bool = False
    renew_before_days: Annotated[int, Field(ge=0, le=365)] | None = None   # a third of days: renewed at 2/3
    allow_wildcard: bool = False

    @field_validator("subject")
    @classmethod
    def _subject_values(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not value:
                raise ValueError(f"{key} is empty")
            if key == "C" and len(value) != 2:
                raise ValueError(f"C must be a two-letter country code, got {value!r}")
            if len(value) > 64:
                raise ValueError(f"{key} is longer than 64 characters")
        return v


def pin_warning(key: str, image: str) -> str | None:
    """One line when ``image`` is a tag, which can be moved to other content, not a digest (review L11); else None.

    A warning, not an error: a local image (the lab's, one built on the host) has no digest to pin."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return None
    return (f"{key} {image!r} is a mutable tag, not pinned by digest: whoever can move the tag chooses the code that "
            f"runs with the registry's key or trust; pin it as {image.split('@')[0]}@sha256:<digest> "
            "(README: Pinning images)")


class KubernetesSection(_Strict):
    """For ``export.kubernetes``: the DaemonSet's namespace and image (any image with sh, cp, mv, cmp)."""

    image: str | None = None
    namespace: str = "kube-system"

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = IMAGE_REFERENCE.fullmatch(v)
        if not m:
            raise ValueError(f"{v!r} is not an image reference like busybox:1.36.1 or name@sha256:<digest>")
        if "@" not in v and (m["tag"] in (None, "latest")):
            raise ValueError(f"{v!r}: pin a version tag or a digest (not 'latest'), so every node runs the same image")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v):
            raise ValueError(f"{v!r} is not a Kubernetes namespace name (lowercase letters, digits, '-')")
        return v


class SshSection(_Strict):
    known_hosts: str = "~/.ssh/known_hosts"
    config: str | None = "~/.ssh/config"
    connect_timeout: Annotated[int, Field(ge=1, le=120)] = 10


class InventoryFile(_Strict):
    registry: RegistrySection
    certificate: CertificateSection
    clients: ClientsSection = ClientsSection()
    ssh: SshSection = SshSection()
    state_dir: str = ".registry-tls"
    kubernetes: KubernetesSection = KubernetesSection()


# --------------------------------------------------------------------------- resolved


@dataclass(frozen=True)
class SshTarget:
    """Everything transport needs to open one SSH connection."""

    name: str
    address: str
    user: str | None = None
    port: int | None = None
    key: str | None = None
    gateway: str | None = None


@dataclass(frozen=True)
class Registry:
    ssh: SshTarget
    host: str
    port: int
    data_dir: str
    container: str
    image: str
    engine: str
    realm: str
    restart_policy: str
    minimum_tls: str
    bcrypt_cost: int
    env: tuple[tuple[str, str], ...] = field(repr=False)   # values may be secrets (review L6)
    health_timeout: int

    @property
    def endpoint(self) -> str:
        """``host`` or ``host:port``: how image references name this registry."""
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Client:
    ssh: SshTarget
    groups: tuple[str, ...]
    trust: tuple[str, ...]
    restart: str
    restart_command: str
    registry_names: tuple[str, ...]
    verify: bool

    @property
    def name(self) -> str:
        return self.ssh.name


DEFAULT_DAYS = {"ca": 90, "self-signed": 365}


@dataclass(frozen=True)
class Certificate:
    spec: certs.CertSpec
    mode: str
    pki_dir: Path
    ca_days: int
    renew_before_days: int
    encrypt_ca_key: bool = False


@dataclass(frozen=True)
class Inventory:
    path: Path
    registry: Registry
    certificate: Certificate
    clients: tuple[Client, ...]
    known_hosts: Path
    ssh_config: Path | None
    connect_timeout: int
    state_dir: Path
    # What a new client of each group gets (defaults -> group), for the exports; '' is the defaults alone.
    groups: dict[str, Client] = field(default_factory=dict)
    kubernetes: KubernetesSection = field(default_factory=KubernetesSection)

    def group(self, name: str | None) -> Client:
        """The settings a new client of group ``name`` (None: of no group) would get."""
        if (name or "") not in self.groups:
            raise InventoryError(f"{self.path}: --group {name}: not in clients.groups"
                                 f"{_suggest(name or '', [g for g in self.groups if g])}")
        return self.groups[name or ""]

    def select(self, hosts: str | None = None, groups: str | None = None) -> tuple[Client, ...]:
        """Clients filtered by comma-separated host names and/or groups; unknown names are errors."""
        chosen = self.clients
        for flag, value in (("--hosts", hosts), ("--groups", groups)):
            if value is not None and not _split(value):   # ',' or '': never 'all' by accident
                raise InventoryError(f"{flag} {value!r}: no names given (comma-separated)")
        if hosts:
            wanted = _split(hosts)
            known = {c.name for c in self.clients}
            for name in wanted:
                if name not in known:
                    raise InventoryError(f"{self.path}: --hosts {name}: no such client{_suggest(name, known)}")
            chosen = tuple(c for c in chosen if c.name in wanted)
        if groups:
            wanted = _split(groups)
            known = {g for c in self.clients for g in c.groups}
            for group in wanted:
                if group not in known:
                    raise InventoryError(f"{self.path}: --groups {group}: no client is in that group{_suggest(group, known)}")
            chosen = tuple(c for c in chosen if set(c.groups) & set(wanted))
        return chosen


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- loading


MAX_BYTES = 1 << 20    # 1 MiB: far above any real fleet (2,000 hosts are ~100 KiB)
MAX_DEPTH = 12         # the schema nests 5 deep
MAX_VALUE = 4096       # characters in one key or value


def load(path: str | Path) -> Inventory:
    """Read, validate and resolve an inventory file. Raises InventoryError."""
    path = Path(path)
    try:
        with path.open("rb") as fh:   # at most one byte more than allowed: /dev/zero or a FIFO never ends
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise InventoryError(f"{path}: larger than {MAX_BYTES // 1024} KiB; is this an inventory file?")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise InventoryError(f"{path}: no such inventory file (give --inventory PATH or set INVOKE_INVENTORY)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read: {exc}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Inventory:
    tree = _read_yaml(text, path)
    if not isinstance(tree, dict):
        raise InventoryError(f"{path}: the inventory must be a mapping with registry, certificate and clients")
    try:
        model = InventoryFile.model_validate(_plain(tree))
    except ValidationError as exc:
        raise InventoryError(_format_validation_error(exc, tree, path)) from None
    return _resolve(model, path, tree)


def _check_events(text: str, path: Path) -> None:
    """One pass over the YAML events: refuse what can hide or multiply meaning, and control characters."""
    if len(text) > MAX_BYTES:
        raise InventoryError(f"{path}: larger than {MAX_BYTES // 1024} KiB; is this an inventory file?")
    # one frame per open mapping/sequence: [is_mapping, key or index, expecting a key]
    frames: list[list] = []
    documents = 0

    def fail(event: events.Event, problem: str) -> InventoryError:
        mark = event.start_mark
        keys = ".".join(str(f[1]) for f in frames if f[1] is not None and not (f[0] and f[2]))
        return InventoryError(f"{path}:{mark.line + 1}:{mark.column + 1}: {keys + ': ' if keys else ''}{problem}")

    def done_value() -> None:
        if frames:
            frame = frames[-1]
            if frame[0]:
                frame[2] = True
            else:
                frame[1] += 1

    for event in YAML(typ="safe", pure=True).parse(text):  # events only: no comments to keep
        if isinstance(event, events.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise fail(event, "more than one YAML document ('---'); an inventory is one document")
            directive = _directive(text[:event.start_mark.index])
            if directive or event.version or event.tags:
                line, name = directive or (event.start_mark.line, "%YAML/%TAG")
                raise InventoryError(f"{path}:{line + 1}:1: directive {literal(name)}: YAML directives "
                                     "(%YAML, %TAG, any %...) are not allowed")
            continue
        if isinstance(event, events.AliasEvent):
            raise fail(event, f"alias *{event.anchor}: anchors and aliases are not allowed; write the value out")
        if not isinstance(event, (events.ScalarEvent, events.CollectionStartEvent, events.CollectionEndEvent)):
            continue
        if isinstance(event, events.CollectionEndEvent):
            frames.pop()
            done_value()
            continue
        problem = _node_problem(event)
        if problem:
            raise fail(event, problem)
        if isinstance(event, events.CollectionStartEvent):
            if len(frames) >= MAX_DEPTH:
                raise fail(event, f"nested more than {MAX_DEPTH} levels deep")
            frames.append([isinstance(event, events.MappingStartEvent), None if isinstance(
                event, events.MappingStartEvent) else 0, True])
            continue
        value, in_key = event.value, bool(frames and frames[-1][0] and frames[-1][2])
        problem = _scalar_problem(value, in_key=in_key, plain=event.style is None)
        if problem:
            raise fail(event, problem)
        if in_key:
            frames[-1][1], frames[-1][2] = value, False
        else:
            done_value()


def _directive(prefix: str) -> tuple[int, str] | None:
    """The first directive line (``%NAME ...``) before the document's ``---``, as (line index, %NAME), or None.

    The parser drops directives it does not know (``%FOO``), so they are looked for in the text itself:
    before the one document starts there can only be comments, blank lines and directives.
    """
    for number, line in enumerate(prefix.removeprefix("\ufeff").splitlines()):   # a BOM may come first
        if line.startswith("%"):
            return number, line.split()[0][:40]
    return None


def _node_problem(event: events.ScalarEvent | events.CollectionStartEvent) -> str | None:
    """What is wrong with a scalar or collection's anchor or tag, if anything."""
    if event.anchor is not None:
        return f"anchor &{event.anchor}: anchors and aliases are not allowed; write the value out"
    if event.tag is not None:
        return f"tag {str(event.tag).replace('tag:yaml.org,2002:', '!!')}: tags are not allowed; write a plain value"
    return None


# A plain key YAML 1.2 reads as something other than text (null, a boolean, a number): the schema would
# name it by what it became ('registry.1', 'registry.None'), so it is refused here by what was written.
_NOT_TEXT_KEY = re.compile(r"~|null|Null|NULL|true|True|TRUE|false|False|FALSE|[-+]?(\d[\d_]*|0o[0-7]+|0x[0-9a-fA-F]+)"
                           r"|[-+]?(\.\d+|\d[\d_]*(\.\d*)?)([eE][-+]?\d+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


def _scalar_problem(value: str, *, in_key: bool, plain: bool) -> str | None:
    """What is wrong with a key or value's text, if anything: merge keys, keys that are not text, length,
    control characters."""
    what = "key" if in_key else "value"
    if in_key and value == "<<" and plain:
        return "merge keys (<<) are not allowed; write the keys out"
    if in_key and plain and (value == "" or _NOT_TEXT_KEY.fullmatch(value)):
        return f"key '{literal(value)}' is not text to YAML (null, a boolean or a number); quote it or fix the name"
    if len(value) > MAX_VALUE:
        return f"a {what} longer than {MAX_VALUE} characters"
    bad = hidden_character(value)
    if bad:
        return f"control character {literal(bad)} in {what} '{literal(value[:60])}': not allowed"
    return None


def _read_yaml(text: str, path: Path) -> Any:
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    try:
        _check_events(text, path)
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        context = (exc.context or "").strip()
        if exc.problem and exc.context_mark and ("quoted" in context or "flow" in context):
            # an unclosed quote or bracket shows up lines later: point at where it opened
            mark = exc.context_mark
            thing = context.removeprefix("while scanning ").removeprefix("while parsing ")
            problem = f"{thing} opened here is never closed ({problem})"
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        if "duplicate key" in str(exc):
            key = str(exc).split('found duplicate key "', 1)[-1].split('"', 1)[0]
            problem = f"duplicate key {key!r} (each key may appear once)"
        elif "'\\t'" in problem:
            problem = f"{problem} (use spaces, not tabs, to indent)"
        raise InventoryError(f"{where}: {problem}") from None
    except InventoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - ruamel raises a few unmarked errors
        raise InventoryError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers -> plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if node is not None and type(node).__module__.startswith("ruamel"):
        for base in (bool, int, float, str):
            if isinstance(node, base):
                return base(node)
    return node


def _line_of(tree: Any, loc: tuple) -> str:
    """``line:col`` of the deepest key of ``loc`` that exists in the YAML tree."""
    node, found = tree, None
    for part in loc:
        if isinstance(node, dict) and part in node:
            position = getattr(getattr(node, "lc", None), "key", None)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            position = getattr(getattr(node, "lc", None), "item", None)
        else:
            break
        try:
            if position is not None:
                line, col = position(part)
                found = f"{line + 1}:{col + 1}"
        except (KeyError, TypeError):
            pass
        node = node[part]
    return found or ""


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema model that owns the last key of ``loc`` (for 'did you mean')."""
    model: Any = InventoryFile
    for part in loc[:-1]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            # inside a dict[str, Model] / list[...] / Optional[Model]: step to the value type
            model = _inner_model(model)
            if model is None:
                return None
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = info.annotation
    return _inner_model(model) if not (isinstance(model, type) and issubclass(model, BaseModel)) else model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    for arg in get_args(annotation) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


def _format_validation_error(exc: ValidationError, tree: Any, path: Path) -> str:
    """The first error, as ``file:line:col: key.path: problem``; the count of others."""
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p == "function-after")))
    key_path = ".".join(str(p) for p in loc) or "(top level)"
    where = _line_of(tree, loc)
    kind, msg = first["type"], first["msg"]
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        close = _suggest(str(loc[-1]), owner.model_fields) if owner else ""
        msg = f"unknown key{close}"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind in ("int_type", "int_parsing") and isinstance(first.get("input"), bool):
        msg = f"expected an integer, got {first['input']!r}"
    elif kind in ("int_type", "int_parsing"):
        msg = f"expected an integer, got {first.get('input')!r}"
    elif kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", first.get("ctx", {}).get("expected", ""))
        msg = f"got {first.get('input')!r}; expected one of {', '.join(allowed)}{_suggest(str(first.get('input')), allowed)}"
    elif kind == "bool_type":
        msg = f"expected true or false, got {first.get('input')!r}"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif kind in ("greater_than_equal", "less_than_equal"):
        msg = f"{first.get('input')!r}: {msg[0].lower()}{msg[1:]}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    prefix = f"{path}:{where}" if where else str(path)
    return f"{prefix}: {key_path}: {msg}{more}"


@dataclass(frozen=True)
class _Source:
    """Where the inventory came from: an error names ``file:line:col`` and the key path."""

    path: Path
    tree: Any

    def error(self, loc: tuple, message: str) -> InventoryError:
        where, keys = _line_of(self.tree, loc), ".".join(map(str, loc))
        return InventoryError(f"{self.path}:{where}: {keys}: {message}" if where else f"{self.path}: {keys}: {message}")


def _resolve(model: InventoryFile, path: Path, tree: Any) -> Inventory:
    """The validated file -> the frozen Inventory: certificate, registry, clients and group templates."""
    src, base, cert = _Source(path, tree), path.parent, model.certificate
    spec = _cert_spec(cert, model.registry.host, src)
    san_texts = spec.san_texts     # built once: 2,000 SANs are common enough (test_loading_is_linear...)
    covered = certs.coverage(san_texts)
    if not covered(model.registry.host):
        raise src.error(("registry", "host"),
                        f"{model.registry.host!r} is not in certificate.san; clients reaching it by that name would "
                        "fail with 'certificate is valid for ..., not ...'")
    make = _ClientMaker(src, base, covered, _default_registry_names(san_texts))
    clients = _clients(model.clients, make)
    groups = _group_templates(model.clients, make)
    if cert.mode == "self-signed" and not cert.accept_self_signed_os_trust:
        _refuse_self_signed_os_trust((*clients, *groups.values()), src)  # groups too: export.cloud-init hands them out
    return Inventory(
        path=path,
        registry=_registry(model.registry, base),
        certificate=Certificate(spec=spec, mode=cert.mode, pki_dir=_expand_path(cert.pki_dir, base),
                                ca_days=cert.ca_days, renew_before_days=_renew_before_days(cert, spec),
                                encrypt_ca_key=cert.encrypt_ca_key),
        clients=clients,
        known_hosts=_expand_path(model.ssh.known_hosts, base),
        ssh_config=_expand_path(model.ssh.config, base) if model.ssh.config else None,
        connect_timeout=model.ssh.connect_timeout,
        state_dir=_expand_path(model.state_dir, base),
        groups=groups,
        kubernetes=model.kubernetes,
    )


def _sans(cert: CertificateSection, src: _Source) -> tuple[x509.GeneralName, ...]:
    """certificate.san parsed, in order, without duplicates (``REG.EXAMPLE`` and ``DNS:reg.example`` are one)."""
    unique: dict[str, x509.GeneralName] = {}
    for i, entry in enumerate(cert.san):
        try:
            san = certs.parse_san(entry, allow_wildcard=cert.allow_wildcard)
        except CertificateError as exc:
            raise src.error(("certificate", "san", i), str(exc)) from None
        unique.setdefault(certs.san_text(san), san)
    return tuple(unique.values())


def _default_subject(host: str) -> tuple[tuple[str, str], ...]:
    """CN is at most 64 characters (X.520); a longer host name falls back to its first label."""
    return (("CN", host if len(host) <= 64 else host.split(".")[0]),)


def _cert_spec(cert: CertificateSection, host: str, src: _Source) -> certs.CertSpec:
    subject = tuple(cert.subject.items()) or _default_subject(host)
    try:
        return certs.CertSpec(subject=subject, sans=_sans(cert, src), days=cert.days or DEFAULT_DAYS[cert.mode],
                              key_type=cert.key_type)
    except CertificateError as exc:
        raise src.error(("certificate",), str(exc)) from None


def _renew_before_days(cert: CertificateSection, spec: certs.CertSpec) -> int:
    """As given, or a third of the lifetime (rounded up)."""
    return cert.renew_before_days if cert.renew_before_days is not None else -(-spec.days // 3)


def _registry(reg: RegistrySection, base: Path) -> Registry:
    return Registry(
        ssh=SshTarget(name=reg.host, address=reg.address or reg.host, user=reg.ssh_user,
                      port=reg.ssh_port, key=_expand(reg.ssh_key, base), gateway=reg.gateway),
        host=reg.host, port=reg.port, data_dir=reg.data_dir, container=reg.container, image=reg.image,
        engine=reg.engine, realm=reg.realm, restart_policy=reg.restart_policy, minimum_tls=reg.minimum_tls,
        bcrypt_cost=reg.bcrypt_cost, env=tuple(sorted(reg.env.items())), health_timeout=reg.health_timeout,
    )


def _default_registry_names(san_texts: Iterable[str]) -> tuple[str, ...]:
    """The names a client trusts the registry under by default: every SAN but the loopback ones."""
    return tuple(s.partition(":")[2] for s in san_texts
                 if s.partition(":")[2] != "localhost" and not s.startswith("IP:127.") and s != "IP:::1")


@dataclass(frozen=True)
class _ClientMaker:
    """Resolves one client (or group template) from its layers: defaults -> groups -> host."""

    src: _Source
    base: Path
    covered: Callable[[str], bool]            # certs.coverage of the certificate's SANs
    default_names: tuple[str, ...]

    def __call__(self, name: str, groups: Sequence[str], layers: Sequence[ClientVars], loc: tuple) -> Client:
        merged = _merge(layers)
        self._check_registry_names(merged.get("registry_names") or (), loc)
        if loc[1] == "hosts" and not merged.get("address"):
            try:  # the host's key is its SSH address (review L10)
                _check_address(name)
            except ValueError as exc:
                raise self.src.error(loc, f"{exc}; a client without address: must be named by its DNS name or IP") from None
        return Client(
            ssh=SshTarget(name=name, address=merged.get("address") or name, user=merged.get("ssh_user"),
                          port=merged.get("ssh_port"), key=_expand(merged.get("ssh_key"), self.base),
                          gateway=merged.get("gateway")),
            groups=tuple(groups),
            trust=tuple(merged.get("trust") or DEFAULT_TRUST),
            restart=merged.get("restart") or "auto",
            restart_command=merged.get("restart_command") or DEFAULT_RESTART_COMMAND,
            registry_names=tuple(merged.get("registry_names") or self.default_names),
            verify=merged.get("verify", True),
        )

    def _check_registry_names(self, names: Sequence[str], loc: tuple) -> None:
        """Names given by hand must be covered (the default names are the SANs themselves)."""
        for i, n in enumerate(names):
            if not self.covered(n):
                raise self.src.error((*loc, "registry_names", i),
                                     f"{n!r} is not in certificate.san; docker would fail with 'certificate is valid for'")


def _clients(section: ClientsSection, make: _ClientMaker) -> tuple[Client, ...]:
    clients = []
    for name, given in section.hosts.items():
        host = given or ClientHostVars()
        for i, group in enumerate(host.groups):
            if group not in section.groups:
                raise make.src.error(("clients", "hosts", name, "groups", i),
                                     f"group {group!r} is not defined in clients.groups{_suggest(group, section.groups)}")
        layers = [section.defaults, *(section.groups[g] for g in host.groups), host]
        clients.append(make(name, host.groups, layers, ("clients", "hosts", name)))
    return tuple(clients)


def _group_templates(section: ClientsSection, make: _ClientMaker) -> dict[str, Client]:
    """What a new client of each group gets, for the exports; '' is the defaults alone."""
    groups = {"": make("defaults", [], [section.defaults], ("clients", "defaults"))}
    groups.update({g: make(g, [g], [section.defaults, layer], ("clients", "groups", g))
                   for g, layer in section.groups.items()})
    return groups


def _refuse_self_signed_os_trust(clients: Iterable[Client], src: _Source) -> None:
    for client in clients:
        if "os" in client.trust:
            raise src.error(("certificate", "mode"),
                            f"self-signed with trust: os on {client.name}: its key, kept on the registry host, could "
                            "sign for any name the OS trusts; use mode: ca, or accept that risk with "
                            "certificate.accept_self_signed_os_trust: true")


def _merge(layers: Sequence[ClientVars]) -> dict[str, Any]:
    """defaults -> groups -> host: a later layer's explicitly set keys win.

    An empty value (``verify:``, ``trust: ~``) inherits: it must never turn
    ``verify`` into a falsy None that silently skips the TLS check.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.model_dump(exclude_unset=True, exclude={"groups"}).items()
                       if v is not None})
    return merged


def _expand_path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _expand(value: str | None, base: Path) -> str | None:
    return str(_expand_path(value, base)) if value else None
