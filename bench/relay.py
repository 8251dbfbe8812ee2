"""Latency for the bench: a TCP relay inside each client's network namespace that forwards SSH
with a fixed delay each way (the kernel here has no netem; this is user space, no bandwidth limit).

    python bench/relay.py RTT_MS NETNS...     (as root; prints READY once every listener is bound)

One process serves every namespace: for each one it enters the namespace (setns on this, the
only thread), opens a listening socket on port 2222 there, and goes back. The bench then adds
`iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 22 -j REDIRECT --to-ports 2222` in each
client, so every tool keeps dialling ADDRESS:22 (same known_hosts, same inventory) and lands
here. Per connection: wait one RTT (the SYN/SYN-ACK round trip a user-space relay cannot delay),
connect to the host's own sshd (from inside the namespace: local traffic, not redirected), then
copy both ways, each chunk released RTT/2 after it arrived, in order. Sockets have TCP_NODELAY
and quick ACKs, so the relay adds no Nagle/delayed-ACK stalls of its own. Stops on SIGTERM/SIGINT.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import signal
import socket
import sys

PORT = 2222
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Netns:
    """Make sockets inside a named network namespace (/run/netns/NAME) from this thread."""

    _home = os.open("/proc/self/ns/net", os.O_RDONLY)

    def __init__(self, name: str):
        self.fd = os.open(f"/run/netns/{name}", os.O_RDONLY)

    def socket(self) -> socket.socket:
        _setns(self.fd)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(self._home)
        sock.setblocking(False)
        return sock


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Copy src -> dst, each chunk (and the EOF) delivered ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: collections.deque = collections.deque()
    ready = asyncio.Event()

    async def deliver() -> None:
        while True:
            while not queue:
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            await loop.sock_sendall(dst, data)

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            try:
                data = await loop.sock_recv(src, 65536)
            except OSError:
                data = b""
            src.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            queue.append((loop.time() + delay, data))
            ready.set()
            if not data:
                break
        await sender
    except OSError:
        sender.cancel()


async def _serve_one(client: socket.socket, ns: Netns, target: tuple[str, int], rtt: float) -> None:
    loop = asyncio.get_running_loop()
    upstream = ns.socket()
    try:
        _tune(client)
        await asyncio.sleep(rtt)        # the TCP handshake's round trip
        await loop.sock_connect(upstream, target)
        _tune(upstream)
        await asyncio.gather(_pump(client, upstream, rtt / 2), _pump(upstream, client, rtt / 2))
    except OSError:
        pass
    finally:
        client.close()
        upstream.close()


def _server(ns: Netns) -> socket.socket:
    server = ns.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", PORT))
    server.listen(128)
    return server


async def _accept(server: socket.socket, ns: Netns, rtt: float) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Future[None]] = set()
    while True:
        client, (_, _) = await loop.sock_accept(server)
        client.setblocking(False)
        target = client.getsockname()[0], 22      # the host's own sshd, dialled from inside its namespace
        task = asyncio.ensure_future(_serve_one(client, ns, target, rtt))
        tasks.add(task)                            # the loop keeps only a weak reference to a task
        task.add_done_callback(tasks.discard)


async def main(rtt_ms: float, names: list[str]) -> None:
    rtt = rtt_ms / 1000
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    spaces = [Netns(n) for n in names]
    tasks = [asyncio.ensure_future(_accept(_server(ns), ns, rtt)) for ns in spaces]
    print("READY", flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), sys.argv[2:]))
