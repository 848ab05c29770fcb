"""The server's control socket: `teresa COMMAND` on the server host runs inside `teresa serve`.

Commands that act on running processes (ps, logs, run, config:set, ...) need
the server's runtime, so the local command line sends its argv and stdin over
a Unix socket in the data directory (mode 0600: only the operator's account)
and prints the framed stdout/stderr it gets back, ending with the exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
from pathlib import Path

from core import log as logging
from core.commands import Actor, CommandError, Terminal, execute
from controller.platform import Platform

log = logging.get(__name__)
STDOUT, STDERR, EXIT = 1, 2, 3
HEADER = struct.Struct("!BI")
MAX_STDIN = 1 << 20


def socket_path(data_dir: Path) -> Path:
    return data_dir / "control.sock"


class _Frames:
    def __init__(self, writer: asyncio.StreamWriter, channel: int):
        self.writer = writer
        self.channel = channel

    async def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        self.writer.write(HEADER.pack(self.channel, len(data)) + data)
        await self.writer.drain()


class _SocketInput:
    """Stdin as the command line sent it, whole (up to MAX_STDIN); never a terminal."""

    terminal: Terminal | None = None

    def __init__(self, data: bytes):
        self.data = data

    async def read(self, limit: int) -> bytes:
        if len(self.data) > limit:
            raise CommandError(f"stdin is larger than {limit} bytes; send less.")
        return self.data

    async def chunk(self) -> bytes | Terminal:
        data, self.data = self.data, b""
        return data


async def serve_control(services: Platform) -> asyncio.AbstractServer:
    path = socket_path(services.settings.data_dir)
    path.unlink(missing_ok=True)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            argv = json.loads(await reader.readline())["argv"]
            stdin = b""
            while len(stdin) <= MAX_STDIN and (chunk := await reader.read(65536)):
                stdin += chunk
            status = await execute(argv, Actor.local(), services, _SocketInput(stdin), _Frames(writer, STDOUT),
                                   _Frames(writer, STDERR), remote=False)
            writer.write(HEADER.pack(EXIT, status))
            await writer.drain()
        except (ConnectionError, ValueError, KeyError, TypeError):
            log.info("control_request_dropped")
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    os.chmod(path, 0o600)  # the operator's account alone: commands run here as the superuser
    return server


async def run_via_server(data_dir: Path, argv: list[str], wants_stdin: bool) -> int | None:
    """Run argv in the running server; None when no server is listening.

    Stdin is forwarded only to commands that read it, so a command run with an
    open but idle stdin (from a script, say) does not wait for its end.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path(data_dir)))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except PermissionError:
        print(f"error: {socket_path(data_dir)} belongs to another account; run teresa as the user that runs "
              "teresa serve.", file=sys.stderr)
        return 2
    writer.write(json.dumps({"argv": argv}).encode() + b"\n")
    stdin = b""
    if wants_stdin and sys.stdin is not None and not sys.stdin.isatty():
        stdin = await asyncio.to_thread(sys.stdin.buffer.read, MAX_STDIN + 1)
    writer.write(stdin)
    writer.write_eof()
    try:
        while True:
            header: tuple[int, int] = HEADER.unpack(await reader.readexactly(HEADER.size))
            channel, size = header
            if channel == EXIT:
                return size
            data = await reader.readexactly(size)
            stream = sys.stdout if channel == STDOUT else sys.stderr
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()
    except asyncio.IncompleteReadError:
        print("error: the server closed the connection; see its log.", file=sys.stderr)
        return 1
    finally:
        writer.close()
