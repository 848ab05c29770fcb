"""Keep a pushed pack from piling up in memory: a fix to asyncssh's channel flow control.

asyncssh 2.24.1 re-opens a channel's receive window in full for every packet it
hands to the session after a pause, not counting the data it still holds. A git
client that sends faster than dulwich stores the pack is then granted more and
more, and the server's memory grows with the pack (seen: 25 MB held for a 30 MB
push, about 180 MB for a 200 MB push). Counting the held data when the window is
re-opened bounds what is held to the window. The same mistake was fixed in
Apache MINA SSHD; this belongs upstream, and is version-guarded so a new asyncssh
is not patched blindly.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel

FIXED_VERSIONS = {"2.24.1"}
_deliver_data = SSHChannel._deliver_data


def _deliver_counting_held_data(self: SSHChannel[Any], data: bytes, datatype: int | None) -> None:
    held = sum(len(chunk) for chunk, _ in self._recv_buf)
    self._recv_window += held  # as if still in flight: the window re-opens only by what is free
    try:
        _deliver_data(self, data, datatype)
    finally:
        self._recv_window -= held


def install() -> None:
    if asyncssh.__version__ in FIXED_VERSIONS and SSHChannel._deliver_data is _deliver_data:
        setattr(SSHChannel, "_deliver_data", _deliver_counting_held_data)  # mypy refuses assigning to a method
