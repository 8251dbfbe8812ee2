"""``inv verify``: the registry checked from this machine, every client checked by its own runtimes.

``probe`` does one TLS handshake validated against the anchor clients trust
(with OpenSSL's strict X.509 checks, as Python 3.13 clients do), records the
presented certificate's fingerprint and TLS version, then asks ``/v2/``
without and with credentials. ``problems`` says, in words, what is wrong.
The registry deploy's health check (``wait_healthy``) uses it too.

``verify_all`` surveys the fleet read-only (``survey``, which ``inv status``
shares): ``verify_registry`` probes the registry from here (fingerprint,
every name the clients pull with, ``/v2/`` 401 anonymous and 200 as the
health user); ``verify_client`` makes one round trip per client, as root,
through ``facts.gather_client``: each runtime of its trust targets is asked
whether it accepts the registry's TLS (``runtimes.script``; docker through
dockerd's API, containerd through ``ctr``, ...), and the certs.d folders are
listed, so files registry-tls did not write that make docker refuse every
pull are named as the cause (``runtimes.foreign_files``).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography import x509

from . import certs, fleet
from . import clients as C
from . import facts as F
from . import runtimes as RT
from .errors import InputError
from .htpasswd import HEALTH_USER
from .inventory import Client
from .pki import Material
from .program import command
from .results import HostResult, Report, Status
from .session import Session


@dataclass(frozen=True)
class Probe:
    address: str
    port: int
    server_name: str
    error: str | None = None          # connection or TLS validation failure
    fingerprint: str | None = None    # of the presented leaf certificate
    tls_version: str | None = None
    not_after: dt.datetime | None = None
    sans: tuple[str, ...] = ()
    unauthenticated: int | None = None  # HTTP status of GET /v2/ without credentials
    api_header: str | None = None
    authenticated: int | None = None    # with credentials, when given
    extra: dict = field(default_factory=dict)

    def problems(self, expected_fingerprint: str | None = None, names: tuple[str, ...] = ()) -> list[str]:
        if self.error:
            return [self.error]
        found = []
        if expected_fingerprint and self.fingerprint != expected_fingerprint:
            found.append(f"serves certificate {self.fingerprint}, expected {expected_fingerprint}")
        found += [f"certificate does not cover {name}" for name in names if not certs.covers(self.sans, name)]
        if self.unauthenticated != 401:
            found.append(f"GET /v2/ without credentials answered {self.unauthenticated}, expected 401")
        elif self.api_header != "registry/2.0":
            found.append("GET /v2/ lacks 'Docker-Distribution-Api-Version: registry/2.0'")
        if self.authenticated is not None and self.authenticated != 200:
            found.append(f"GET /v2/ with credentials answered {self.authenticated}, expected 200")
        return found


def tls_context(anchor_pem: bytes | None) -> ssl.SSLContext:
    """Validate against ``anchor_pem`` only (never the system store); None: no validation."""
    if anchor_pem is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cadata=anchor_pem.decode("ascii"))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def probe(
    address: str,
    port: int,
    server_name: str,
    anchor_pem: bytes | None,
    *,
    credentials: tuple[str, str] | None = None,
    timeout: float = 5.0,
) -> Probe:
    """Handshake + ``/v2/`` checks. Never raises for network or TLS problems: see ``Probe.error``."""
    base = Probe(address=address, port=port, server_name=server_name)
    ctx = tls_context(anchor_pem)
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return replace(base, error=f"TLS verification failed: {exc.verify_message or exc.reason}")
    except ssl.SSLError as exc:
        return replace(base, error=f"TLS handshake failed: {exc.reason or exc}")
    except (TimeoutError, OSError) as exc:
        return replace(base, error=f"cannot connect to {address}:{port}: {exc.strerror or exc}")
    if der is None:
        return replace(base, error="TLS handshake: the server presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    seen = replace(base, fingerprint=certs.fingerprint(cert), tls_version=version,
                   not_after=cert.not_valid_after_utc, sans=certs.cert_sans(cert))
    try:
        status, header = _get_v2(address, port, server_name, ctx, None, timeout)
        auth_status = _get_v2(address, port, server_name, ctx, credentials, timeout)[0] if credentials else None
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return replace(seen, error=f"GET /v2/ failed: {exc}")
    return replace(seen, unauthenticated=status, api_header=header, authenticated=auth_status)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``address`` while SNI, hostname check and Host header use the registry name."""

    def __init__(self, address: str, server_name: str, port: int, ctx: ssl.SSLContext, timeout: float):
        super().__init__(server_name, port, timeout=timeout, context=ctx)
        self._address, self._ctx = address, ctx

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def _get_v2(address: str, port: int, server_name: str, ctx: ssl.SSLContext, credentials: tuple[str, str] | None,
            timeout: float) -> tuple[int, str | None]:
    conn = _PinnedHTTPS(address, server_name, port, ctx, timeout)
    headers: dict[str, str] = {}
    if credentials:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", "/v2/", headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Docker-Distribution-Api-Version")
    finally:
        conn.close()


def wait_healthy(
    address: str,
    port: int,
    server_name: str,
    anchor_pem: bytes | None,
    *,
    expected_fingerprint: str | None,
    credentials: tuple[str, str] | None,
    timeout: float,
    interval: float = 0.2,
) -> tuple[Probe, list[str]]:
    """Probe until healthy or ``timeout``; returns the last probe and its problems."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe(address, port, server_name, anchor_pem, credentials=credentials, timeout=min(5.0, timeout))
        problems = result.problems(expected_fingerprint)
        if not problems or time.monotonic() >= deadline:
            return result, problems
        time.sleep(interval)


# --------------------------------------------------------------------------- the fleet, through a Session


def verify_registry(s: Session, material: Material) -> HostResult:
    """From this machine: chain, fingerprint, SAN coverage, days left, TLS version, /v2/ 401 and 200."""
    reg = s.inv.registry
    password = s.state.known_health_credentials()   # read only: verify writes nothing
    found = probe(reg.ssh.address, reg.port, reg.host, material.anchor_pem,
                  credentials=None if password is None else (HEALTH_USER, password.reveal()))
    names = tuple(dict.fromkeys((reg.host, *(n for c in s.inv.clients for n in c.registry_names))))
    problems = found.problems(material.fingerprint, names)
    if password is None and not found.error:
        problems.append(f"cannot log in as {HEALTH_USER}: {s.state.health_path} is missing or does not match "
                        f"{s.state.htpasswd_path}; `inv registry.deploy` makes a new one")
    result = HostResult(host=reg.host, role="registry")
    result.facts = {"fingerprint": found.fingerprint, "tls": found.tls_version,
                    "days_left": (found.not_after - s.now).days if found.not_after else None,
                    "v2_anonymous": found.unauthenticated, "v2_authenticated": found.authenticated}
    if problems:
        result.status, result.message = Status.FAILED, "; ".join(problems)
    else:
        result.message = (f"{found.tls_version}, serves the expected certificate "
                          f"({result.facts['days_left']} days left), /v2/ 401 anonymous, 200 as {HEALTH_USER}")
    return result


def verify_client(client: Client, s: Session, material: Material) -> HostResult:
    """Ask every runtime of the client's trust targets itself (``runtimes``), in one remote script."""
    reg = s.inv.registry
    targets = C.check_targets(client, reg, s.anchors(material))
    if not targets:
        return HostResult(host=client.name, status=Status.SKIPPED, message="verify: false for this client")
    folders = C.trust_folders(client, reg)
    with s.connect(client.ssh) as remote:   # one round trip, as root: the folders' files, every runtime asked
        found = F.gather_client(remote, (), folders=folders, runtimes=targets, sudo=True)
    result = HostResult(host=client.name)
    result.message = C.apply_checks(result, RT.judge(found.runtimes, targets, found.listing))
    foreign, warnings = RT.foreign_files(found.listing, folders)
    result.warnings += warnings
    if foreign:   # the runtime's words (it was asked), then the cause
        result.message = C.explain(result, foreign)
        result.status = Status.FAILED
    return result


def survey(s: Session, title: str, on_registry: Callable[[], HostResult],
           on_client: Callable[[Client], HostResult], targets: tuple[Client, ...], parallel: int) -> Report:
    """A read-only look at the registry host, then at every client in parallel."""
    report = Report()
    report.add(fleet.guarded(s.inv.registry.host, "registry", on_registry))
    with s.progress(title, len(targets)) as progress:
        for r in fleet.fan_out(targets, on_client, name=lambda c: c.name, parallel=parallel, progress=progress):
            report.add(r)
    return report


def verify_all(s: Session, targets: tuple[Client, ...], parallel: int = 10) -> Report:
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate; run {command('deploy')} first")
    return survey(s, "verify", lambda: verify_registry(s, material), lambda c: verify_client(c, s, material),
                  targets, parallel)
