"""The asyncssh floor: the least a tool can do, as one asyncio.gather over N hosts.

Run with the bench venv's Python (asyncssh lives there), as its own process so that
its wall time includes interpreter start and imports, like `inv` and `ansible-playbook`:

    bench/.venv/bin/python bench/floor.py SPEC.json

SPEC.json (written by the bench driver):
    {"known_hosts": PATH, "command": "job" | "connect1",
     "hosts": [{"name", "address", "user", "key", "password" (or null), "command"}]}

Per host: one SSH connection (host keys checked against known_hosts, key auth), then ONE
command. For "job" the command is the bare job (sudo sh -c 'mkdir; write; TLS check'), for
"connect1" a read-only one (sha256sum of the installed files). Prints one JSON object:
{"seconds": in-process wall, "hosts": {name: {"exit": int, "stdout": str, "stderr": str}}}.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

import asyncssh


async def one(host: dict, known_hosts: str) -> tuple[str, dict]:
    try:
        async with asyncssh.connect(host["address"], username=host["user"], client_keys=[host["key"]],
                                    known_hosts=known_hosts, agent_path=None, config=[],
                                    connect_timeout=60) as conn:   # 200 handshakes share 2 cores
            stdin = host["password"] + "\n" if host.get("password") else None
            res = await conn.run(host["command"], input=stdin, check=False)
            return host["name"], {"exit": res.exit_status, "stdout": res.stdout, "stderr": res.stderr}
    except (OSError, asyncssh.Error) as exc:
        return host["name"], {"exit": -1, "stdout": "", "stderr": f"{type(exc).__name__}: {exc}"}


async def main(spec: dict) -> dict:
    started = time.monotonic()
    results = await asyncio.gather(*(one(h, spec["known_hosts"]) for h in spec["hosts"]))
    return {"seconds": round(time.monotonic() - started, 4), "hosts": dict(results)}


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    out = asyncio.run(main(spec))
    json.dump(out, sys.stdout)
    sys.exit(0 if all(h["exit"] == 0 for h in out["hosts"].values()) else 1)
