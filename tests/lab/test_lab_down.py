"""down() on a separate small lab (own prefix and subnet, so the shared lab is not disturbed)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

PREFIX = "rtlsd"
SUBNET = "10.213.1.0/24"


def really_alive(pid: int, started: int | None) -> bool:
    """Independent of the lab's own bookkeeping: /proc entry, not a zombie, same start time."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0] not in "ZX" and (started is None or int(fields[19]) == started)


def start_time(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2:].split()[19])


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=False).stdout.strip()
    return [n["name"] for n in json.loads(out)] if out else []


def lab_links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return [link["ifname"] for link in json.loads(out) if link["ifname"].startswith(PREFIX + "-")]


def mounts_mentioning(root: Path) -> list[str]:
    found = []
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            text = mountinfo.read_text()
        except OSError:
            continue
        found += [f"{mountinfo}: {line}" for line in text.splitlines() if str(root) in line]
    return found


@pytest.fixture
def small_lab(make_lab):
    lab = make_lab(".lab-test-down", PREFIX)
    yield lab
    lab.down()


def test_down_removes_everything(small_lab):
    lab = small_lab
    # a stale leftover with the lab's prefix (a netns with a process in it) is cleaned by up()
    subprocess.run(["ip", "netns", "add", f"{PREFIX}-stale"], check=True)
    stale = subprocess.Popen(["nsenter", f"--net=/run/netns/{PREFIX}-stale", "sleep", "300"])
    time.sleep(0.1)
    lab.up(clients=1, docker=False, subnet=SUBNET)
    stale.wait(timeout=10)
    assert f"{PREFIX}-stale" not in netns_names()

    statuses = lab.status()
    assert [(s.name, s.up, s.docker) for s in statuses] == [("registry", True, True),
                                                            ("client1", True, False)]
    pids = {}
    for s in statuses:
        for pid in (s.holder_pid, s.sshd_pid, s.dockerd_pid):
            if pid:
                pids[pid] = start_time(pid)
    state = json.loads(lab.state_path.read_text())
    assert {h["holder_pid"] for h in state["hosts"]} <= set(pids)
    assert len(pids) == 5  # 2 holders, 2 sshd, 1 dockerd
    assert any(n.startswith(PREFIX + "-") for n in netns_names()) and lab_links()

    started = time.monotonic()
    lab.down()
    elapsed = time.monotonic() - started

    assert not [n for n in netns_names() if n.startswith(PREFIX + "-")]
    assert lab_links() == []
    assert [pid for pid, st in pids.items() if really_alive(pid, st)] == []
    assert mounts_mentioning(lab.root) == []
    assert not lab.root.exists()
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=False).stdout
    assert f"{PREFIX}-br0" not in rules
    assert lab.status() == []
    assert elapsed < 30
    lab.down()  # safe twice


def test_down_cleans_a_half_made_lab(small_lab):
    lab = small_lab
    lab.up(clients=1, docker=False, subnet=SUBNET)
    holder = lab.status()[1].holder_pid
    subprocess.run(["kill", "-KILL", str(holder)], check=True)
    lab.state_path.unlink()                      # lost state: only name-prefix leftovers remain
    lab.down()
    assert not [n for n in netns_names() if n.startswith(PREFIX + "-")]
    assert lab_links() == []
    assert not lab.root.exists()
