"""The `teresa` command on the server host: the command table, as the superuser."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import sys

from typing import TextIO

from controller.controller import Controller
from controller.platform import Platform
from core import log as logging
from core.commands import TABLE, Actor, CommandError, Terminal, execute
from core.config import ConfigError, Settings
from core.services import Services
from server.control import run_via_server
from server.registry import load_commands


class StdinInput:
    terminal: Terminal | None = None  # commands run in this process need no terminal; `run` needs the server

    async def read(self, limit: int) -> bytes:
        data: bytes = await asyncio.to_thread(sys.stdin.buffer.read, limit + 1)
        if len(data) > limit:
            raise CommandError(f"stdin is larger than {limit} bytes; send less.")
        return data

    async def chunk(self) -> bytes | Terminal:
        stream = sys.stdin.buffer
        return await asyncio.to_thread(stream.read1 if isinstance(stream, io.BufferedReader) else stream.read, 65536)


class StreamOutput:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    async def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


IN_PROCESS = {"serve", "db:upgrade", "help", "version"}
NEEDS_NO_DATA = {"help", "version"}


def missing_data_dir(argv: list[str], settings: Settings) -> str | None:
    """The sentence refusing to make a fresh data directory for anything but `teresa serve`."""
    if argv[0] == "serve" or argv[0] in NEEDS_NO_DATA or settings.data_dir.is_dir():
        return None
    return (f"error: there is no Teresa data directory at {settings.data_dir}; run teresa where `teresa serve` "
            "runs, or point TERESA_DATA_DIR at its data directory (teresa serve creates one on first start).")


async def run_local(argv: list[str], settings: Settings) -> int:
    """Run in the running server when there is one (it owns the runtime), else in this process."""
    if argv[0] not in IN_PROCESS:
        command = TABLE.get(argv[0])
        status = await run_via_server(settings.data_dir, argv, wants_stdin=bool(command and command.stdin))
        if status is not None:
            return status
    services = Services.open(settings, make_data_dir=argv[0] not in NEEDS_NO_DATA)
    try:
        if argv[0] not in IN_PROCESS:
            await asyncio.to_thread(services.db.upgrade)
        platform = Platform.assemble(services, Controller(services, runtime=None))
        return await execute(argv, Actor.local(), platform, StdinInput(), StreamOutput(sys.stdout),
                             StreamOutput(sys.stderr), remote=False)
    finally:
        services.db.dispose()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.configure(settings.log_format)
    load_commands()
    argv = argv or ["help"]
    if refusal := missing_data_dir(argv, settings):
        print(refusal, file=sys.stderr)
        return 2
    if argv[0] in NEEDS_NO_DATA and not settings.data_dir.is_dir():  # help and version touch no data: keep it so
        settings = dataclasses.replace(settings, database_url="sqlite://")
    try:
        return asyncio.run(run_local(argv, settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
