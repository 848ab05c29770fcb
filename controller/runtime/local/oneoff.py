"""One-off processes (`run`): stdin forwarded, and a pseudo-terminal when the client has a terminal.

The process runs as the app's user when it has one (Teresa as root; see
tenancy.py), in its own process group (a session led by it, the PTY its
controlling terminal when there is one, so Ctrl-C reaches it as SIGINT). Its
output goes to the client as it comes, not line by line, so prompts show.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import signal
import struct
import termios
from pathlib import Path
from typing import Mapping, Sequence

from controller.runtime.local.processes import CHUNK, signal_group, stop_group
from controller.runtime.local.tenancy import AppUser
from core.commands import Input, Output, Terminal

DRAIN_AFTER_EXIT = 1.0  # seconds to wait for output still in flight once the process has exited
CTRL_D = b"\x04"        # what a terminal's end of input is


def set_size(fd: int, terminal: Terminal) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", terminal.rows, terminal.columns, 0, 0))


def _take_terminal() -> None:
    """In the child, after setsid(): its stdin (the PTY) becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def run_oneoff(argv: Sequence[str], env: Mapping[str, str], cwd: Path, stdin: Input, out: Output, *,
                     user: AppUser | None = None) -> int:
    """Run `argv` (as `user`, when given) with stdin forwarded and output streamed; returns its exit status
    (128+N for signal N)."""
    terminal = stdin.terminal
    as_user = user.spawn_options() if user else {}
    argv = user.command(argv) if user else list(argv)
    if terminal is None:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, **as_user)
        assert proc.stdout is not None
        return await _supervise(proc, _PipeEnds(proc), proc.stdout, stdin, out)
    master, slave = os.openpty()
    try:
        set_size(slave, terminal)
        if user:  # its terminal is the app user's, as login(1) would make it
            os.fchown(slave, user.uid, user.gid)
        proc = await asyncio.create_subprocess_exec(
            *argv, env={**env, "TERM": terminal.type or "xterm"}, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=_take_terminal, **as_user)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    ends = _PtyEnds(master)
    return await _supervise(proc, ends, await ends.reader(), stdin, out)


async def _supervise(proc: asyncio.subprocess.Process, ends: "_PipeEnds | _PtyEnds", output: asyncio.StreamReader,
                     stdin: Input, out: Output) -> int:
    feeding = asyncio.create_task(_feed(stdin, ends))
    relaying = asyncio.create_task(_relay(output, out))
    try:
        status = await proc.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(relaying), DRAIN_AFTER_EXIT)
        return status if status >= 0 else 128 - status
    finally:
        feeding.cancel()
        relaying.cancel()
        await asyncio.gather(feeding, relaying, return_exceptions=True)
        if proc.returncode is None:
            await stop_group(proc, 2.0)
        else:
            signal_group(proc, signal.SIGKILL)  # whatever it left behind in its group
        ends.close()


async def _feed(stdin: Input, ends: "_PipeEnds | _PtyEnds") -> None:
    while True:
        chunk = await stdin.chunk()
        if isinstance(chunk, Terminal):
            ends.resize(chunk)
        elif chunk:
            await ends.write(chunk)
        else:
            await ends.end()
            return


async def _relay(output: asyncio.StreamReader, out: Output) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        try:
            data = await output.read(CHUNK)
        except OSError:  # EIO: every holder of the PTY's other side has closed it
            data = b""
        if text := decoder.decode(data, final=not data):
            await out.write(text)
        if not data:
            return


class _PipeEnds:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        self.pipe = proc.stdin

    async def write(self, data: bytes) -> None:
        self.pipe.write(data)
        with contextlib.suppress(ConnectionError):
            await self.pipe.drain()

    async def end(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.close()

    def resize(self, terminal: Terminal) -> None:
        pass

    def close(self) -> None:
        if not self.pipe.is_closing():
            self.pipe.close()


class _PtyEnds:
    """The PTY's master side: what the process prints is read here, what the client types written here."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.transport: asyncio.BaseTransport | None = None

    async def reader(self) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=CHUNK)
        self.transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(self.master), "rb", buffering=0))
        return reader

    async def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:  # the PTY's buffer is full: the process is not reading yet
                await asyncio.sleep(0.01)
            except OSError:
                return

    async def end(self) -> None:
        await self.write(CTRL_D)

    def resize(self, terminal: Terminal) -> None:
        with contextlib.suppress(OSError):
            set_size(self.master, terminal)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        with contextlib.suppress(OSError):
            os.close(self.master)
