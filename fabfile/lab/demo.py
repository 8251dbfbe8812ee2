"""``inv demo``: the whole job on the local lab, proven the way a user would prove it.

Brings up the lab (a registry host and three Docker clients), runs the same
code as ``inv deploy`` against the lab inventory, pushes an image from one
client and pulls it from another through TLS with an htpasswd login, then
shows ``inv status``. The tool itself does not know it runs in a lab.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from .. import deploy as D
from ..results import Report
from ..session import ProgressFactory, open_session
from ..sh import q
from ..status import FleetStatus, fleet_status
from . import Lab

DEMO_USER = "demo"
IMAGE = "lab/hello:1"


def run(root: Path, *, prefix: str = "rtls", subnet: str = "10.213.0.0/24", clients: int = 3,
        say: Callable[[str], None] = print, progress: ProgressFactory | None = None) -> tuple[Report, FleetStatus, dict[str, float]]:
    """Returns the deploy report, the fleet status and the timings (seconds)."""
    timings: dict[str, float] = {}
    lab = Lab(root=root, prefix=prefix)
    start = time.monotonic()
    say(f"1/4 lab: a registry host and {clients} Docker clients in network namespaces ({subnet})")
    lab.up(clients=clients, docker=True, subnet=subnet)
    timings["lab_up"] = time.monotonic() - start

    start = time.monotonic()
    say(f"2/4 inv deploy -i {lab.inventory_path}")
    session = open_session(lab.inventory_path, sudo_password=lab.sudo_password, progress=progress)
    password = secrets.token_urlsafe(18)
    table = session.state.htpasswd()
    session.state.save_htpasswd(table.with_user(DEMO_USER, password, session.inv.registry.bcrypt_cost))
    with session.state.lock():
        report = D.deploy_all(session, session.inv.clients)
    timings["deploy"] = time.monotonic() - start

    start = time.monotonic()
    names = [c.name for c in session.inv.clients]
    ref = f"{session.inv.registry.endpoint}/demo/hello:1"
    login = (f"printf %s {q(password)} | docker login -u {DEMO_USER} --password-stdin "
             f"{session.inv.registry.endpoint} >/dev/null 2>&1")
    say(f"3/4 push {ref} from {names[0]}, pull it on {', '.join(names[1:])} (TLS + htpasswd login)")
    _must(lab, names[0], f"{login} && docker tag {IMAGE} {ref} && docker push {ref}", "push")
    for name in names[1:]:
        _must(lab, name, f"docker rmi -f {ref} >/dev/null 2>&1; {login} && docker pull {ref}", "pull")
        say(f"    {name}: pulled {ref}")
    timings["push_pull"] = time.monotonic() - start

    say("4/4 inv status")
    status = fleet_status(session, session.inv.clients)
    return report, status, timings


def _must(lab: Lab, host: str, command: str, what: str) -> None:
    result = lab.run(host, command, timeout=120)
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise RuntimeError(f"{host}: docker {what} failed: {detail[0] if detail else result.returncode}")
