"""Child processes in their own process group: spawn, stream their lines, stop them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

import psutil

from controller.runtime.base import LineSink
from controller.runtime.local.tenancy import AppUser

CHUNK = 64 * 1024
MAX_LINE = 16 * 1024
# What a child inherits from the server's environment; everything else (database
# passwords, storage keys) stays out of apps' processes.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.update(extra or {})
    return env


async def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None, *,
                user: AppUser | None = None, pass_fds: Sequence[int] = ()) -> asyncio.subprocess.Process:
    """Start `argv` as the leader of a new process group, stdout and stderr merged into one pipe.

    With `user`, the process runs as that app's uid and gid; `pass_fds` stay open in it."""
    return await asyncio.create_subprocess_exec(
        *(user.command(argv) if user else argv),
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        **(user.spawn_options() if user else {}),
    )


def listening_ports(pid: int) -> set[int]:
    """TCP ports that process `pid` or any of its descendants listens on (blocking: run it in a thread)."""
    try:
        leader = psutil.Process(pid)
        family = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return set()
    ports: set[int] = set()
    for process in family:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports.update(c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr)
    return ports


def signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def stop_group(proc: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM the process group, SIGKILL it if the leader has not exited after `grace` seconds."""
    if proc.returncode is None:
        signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except asyncio.TimeoutError:
            pass
    # The leader may be gone while children it started linger in the group.
    signal_group(proc, signal.SIGKILL)
    return await proc.wait()


async def iter_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines as they arrive; an over-long line is cut into MAX_LINE pieces."""
    pending = b""
    while chunk := await stream.read(CHUNK):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        while len(pending) >= MAX_LINE:
            yield pending[:MAX_LINE].decode("utf-8", "replace")
            pending = pending[MAX_LINE:]
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


async def run_streaming(
    argv: Sequence[str], env: Mapping[str, str], out: LineSink, *, cwd: Path | None = None,
    timeout: float | None = None, grace: float = 5.0, tail: list[str] | None = None, tail_size: int = 10,
    user: AppUser | None = None, pass_fds: Sequence[int] = (),
) -> int:
    """Run `argv`, sending each output line to `out` as it arrives; returns the exit status.

    On timeout raises asyncio.TimeoutError and on cancellation re-raises, after
    stopping the whole process group either way. `tail`, if given, receives the
    last `tail_size` lines.
    """
    proc = await spawn(argv, env, cwd, user=user, pass_fds=pass_fds)

    async def pump() -> None:
        assert proc.stdout is not None
        async for line in iter_lines(proc.stdout):
            if tail is not None:
                tail.append(line)
                del tail[:-tail_size]
            await out(line)

    try:
        async with asyncio.timeout(timeout):
            await pump()
            return await proc.wait()
    finally:
        if proc.returncode is None:
            await stop_group(proc, grace)
        else:
            signal_group(proc, signal.SIGKILL)
