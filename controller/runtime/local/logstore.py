"""An app's process output: a ring buffer per process type, a log file, and live followers.

Each line is shown as `<timestamp> <source> | <text>`, the timestamp as `log_timestamp` writes it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, TextIO

from controller.runtime.base import log_timestamp, split_log_timestamp
from core.private import open_private, private_dir

RING_LINES = 2000
FILE_LIMIT = 10 * 1024 * 1024
FOLLOW_QUEUE = 10_000


@dataclass(frozen=True)
class LogLine:
    seq: int
    process_type: str
    text: str          # already prefixed, e.g. "web.1 | listening on 5000"
    at: str = ""       # when it was written, e.g. "2025-01-31T12:00:00.123Z"

    @property
    def shown(self) -> str:
        return f"{self.at} {self.text}" if self.at else self.text


class LogStore:
    def __init__(self, directory: Path, ring_lines: int = RING_LINES) -> None:
        self.directory = directory
        self._rings: dict[str, collections.deque[LogLine]] = {}
        self._ring_lines = ring_lines
        self._seq = itertools.count()
        self._followers: set[tuple[asyncio.Queue[LogLine | None], str | None]] = set()
        self._file: TextIO | None = None
        self._file_size = 0
        self._flush_pending = False

    @property
    def path(self) -> Path:
        return self.directory / "app.log"

    def load_history(self) -> None:
        """Fill the ring buffers from the log file (after a restart); blocking, run it in a thread."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                history = collections.deque(handle, maxlen=self._ring_lines)
        except FileNotFoundError:
            return
        for raw in history:
            at, text = split_log_timestamp(raw.rstrip("\n"))
            source = text.partition(" | ")[0].removeprefix("teresa[").removesuffix("]")
            process_type = source.rpartition(".")[0] or source
            entry = LogLine(next(self._seq), process_type, text, at)
            self._rings.setdefault(process_type, collections.deque(maxlen=self._ring_lines)).append(entry)

    def append(self, process_type: str, source: str, line: str) -> None:
        entry = LogLine(next(self._seq), process_type, f"{source} | {line}", log_timestamp())
        self._rings.setdefault(process_type, collections.deque(maxlen=self._ring_lines)).append(entry)
        self._write(entry.shown)
        for queue, wanted in list(self._followers):
            if wanted in (None, process_type):
                if queue.full():  # a follower that cannot keep up loses its oldest lines
                    queue.get_nowait()
                queue.put_nowait(entry)

    def tail(self, lines: int, process_type: str | None = None) -> list[str]:
        rings = [self._rings.get(process_type, ())] if process_type else list(self._rings.values())
        merged = sorted((entry for ring in rings for entry in ring), key=lambda e: e.seq)
        return [entry.shown for entry in merged[-lines:]] if lines > 0 else []

    async def read(self, lines: int, follow: bool, process_type: str | None = None) -> AsyncIterator[str]:
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue(FOLLOW_QUEUE)
        key = (queue, process_type)
        if follow:
            self._followers.add(key)
        try:
            for text in self.tail(lines, process_type):
                yield text
            while follow:
                entry = await queue.get()
                if entry is None:
                    return
                yield entry.shown
        finally:
            self._followers.discard(key)

    def close(self) -> None:
        """End every follower and close the log file."""
        for queue, _ in list(self._followers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._followers.clear()
        if self._file:
            self._file.close()
            self._file = None

    def _flush_soon(self) -> None:
        """Flush once the event loop has run what is ready: the router's access lines of many
        requests answered together reach the file in one write rather than one each."""
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._file:
            self._file.flush()

    def _write(self, text: str) -> None:
        # Small appends to a local file: the page cache absorbs them.
        if self._file is None:
            private_dir(self.directory)
            self._file = open(open_private(self.path), "a", encoding="utf-8")
            self._file_size = self._file.tell()
        data = text + "\n"
        self._file.write(data)
        self._flush_soon()
        self._file_size += len(data)
        if self._file_size > FILE_LIMIT:
            self._file.close()
            self.path.replace(self.path.with_suffix(".log.1"))
            self._file = None
