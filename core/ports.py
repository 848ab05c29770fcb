"""Listening ports for processes Teresa starts, picked below the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` comes from the same range as the source
ports of outgoing connections: between choosing it and the child binding it, any
outgoing connection on the machine (often the child's own) may take it, and the
child fails with "address already in use". Ports below that range are never
given to outgoing connections.

Each process walks that range from a random start, one port after the other: two
processes picking at the same moment are far apart in it, and a port another
process has bound by the time a walk reaches it fails the bind check.
"""

from __future__ import annotations

import functools
import itertools
import random
import socket
from pathlib import Path
from typing import Iterator

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000    # above the well-known ports of databases, Kubernetes (10250-10259) and SeaweedFS (18080-19333)
TRIES = 200


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _candidates() -> range:
    low, high = ephemeral_range()
    if low - LOWEST >= 1000:
        return range(LOWEST, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    return range(LOWEST, 65536)  # an unusual range: a bound check is all there is


@functools.cache
def _walk() -> Iterator[int]:
    ports = _candidates()
    start = random.randrange(len(ports))
    return itertools.cycle([*ports[start:], *ports[:start]])


def _bindable(sock: socket.socket, host: str, port: int) -> bool:
    try:
        sock.bind((host, port))
    except OSError:
        return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free on `host` right now ("" checks every address)."""
    sockets: list[socket.socket] = []
    tries = TRIES * count
    try:
        while len(sockets) < count:
            tries -= 1
            sock = socket.socket()
            # nearly everything taken: the kernel chooses (0)
            if _bindable(sock, host, next(_walk()) if tries >= 0 else 0):
                sockets.append(sock)
            else:
                sock.close()
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
