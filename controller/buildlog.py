"""A build's output: relayed live to the pusher and kept for `builds:output`."""

from __future__ import annotations

import tempfile

from controller.runtime.base import LineSink
from core.storage import Storage


class BuildLog:
    def __init__(self, out: LineSink):
        self.out = out
        self.file = tempfile.TemporaryFile()

    async def __call__(self, line: str) -> None:
        self.file.write(line.encode("utf-8", "replace") + b"\n")
        await self.out(line)

    def save(self, storage: Storage, key: str) -> None:
        with self.file:
            self.file.flush()
            self.file.seek(0)
            storage.put_stream(key, self.file)
