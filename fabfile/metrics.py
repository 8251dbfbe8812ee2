"""``status --format prometheus``: the fleet status as Prometheus text exposition (pure).

Written with prometheus_client (its own registry, never the process-global one), so names,
escaping and the format version are the library's. Every series carries ``registry`` (the
registry host from the inventory), so one node_exporter can hold the files of several
registries. The status of each host is a state set: one series per status, 1 for the current.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest

from .results import Status

if TYPE_CHECKING:
    from .status import FleetStatus

PREFIX = "registry_tls"


def exposition(result: FleetStatus | None, *, registry: str, checked_at: dt.datetime) -> bytes:
    """The metrics of one ``fleet_status`` result (``result`` None: the check itself failed)."""
    reg = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, ("registry", *labels), registry=reg)

    level = 3 if result is None else int(result.level)
    gauge("status", "Fleet status as the exit code of `status`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"
          ).labels(registry).set(level)
    gauge("last_check_timestamp_seconds", "When this check ran (Unix time)").labels(registry).set(
        checked_at.timestamp())
    if result is None:
        return generate_latest(reg)

    cert = result.certificate
    if cert:
        not_after = dt.datetime.fromisoformat(cert["not_after"])
        gauge("certificate_expiry_timestamp_seconds", "notAfter of the local registry certificate (Unix time)"
              ).labels(registry).set(not_after.timestamp())
        gauge("certificate_remaining_seconds", "Time left until the local registry certificate expires, at the "
              "check (days left, in Prometheus' base unit)").labels(registry).set(
            (not_after - checked_at).total_seconds())
        Info(f"{PREFIX}_certificate", "The local registry certificate", ("registry",), registry=reg).labels(
            registry).info({"sha256": cert["sha256"], "subject": cert["subject"], "serial": cert["serial"]})

    states = gauge("host_status", "1 for the status of each host (state set: ok, changed, failed, unreachable, "
                   "skipped)", ("host", "role", "status"))
    for r in result.report.results.values():
        for s in Status:
            states.labels(registry, r.host, r.role, s.value).set(int(r.status is s))

    facts = result.report.registry.facts if result.report.registry else {}
    served = facts.get("served_fingerprint")
    if served:
        expected = facts.get("expected_fingerprint")
        Info(f"{PREFIX}_served_certificate", "Fingerprint of the certificate the registry serves",
             ("registry",), registry=reg).labels(registry).info(
            {"sha256": served, "expected": "true" if served == expected else "false"})
    return generate_latest(reg)
