"""A build's output: relayed live to the pusher, kept for `builds:output`, and offered to live viewers.

`LiveBuilds` is a small in-process pub/sub: the running build appends lines, any
number of viewers (the dashboard's server-sent events) follow them. A viewer
never slows the build: lines are kept in a bounded buffer and each viewer reads
at its own pace, skipping what fell out of the buffer if it is far behind.
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
from typing import AsyncIterator

from controller.runtime.base import LineSink
from core.storage import Storage

LIVE_LINES = 5000  # per running build: enough to replay a build to a viewer who arrives late


class LiveBuild:
    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=LIVE_LINES)
        self.count = 0  # lines ever published
        self.done = False
        self.changed = asyncio.Condition()

    async def publish(self, line: str) -> None:
        async with self.changed:
            self.lines.append(line)
            self.count += 1
            self.changed.notify_all()

    async def close(self) -> None:
        async with self.changed:
            self.done = True
            self.changed.notify_all()

    async def follow(self) -> AsyncIterator[str]:
        """Every line so far (what the buffer still holds), then each new one until the build ends."""
        position = 0
        while True:
            async with self.changed:
                await self.changed.wait_for(lambda: self.count > position or self.done)
                first = self.count - len(self.lines)
                position = max(position, first)
                batch = list(self.lines)[position - first:]
                position = self.count
                finished = self.done
            for line in batch:
                yield line
            if finished:
                return


class LiveBuilds:
    """The running builds, by build id."""

    def __init__(self) -> None:
        self.running: dict[str, LiveBuild] = {}

    def start(self, build_id: str) -> LiveBuild:
        build = self.running[build_id] = LiveBuild()
        return build

    async def finish(self, build_id: str) -> None:
        build = self.running.pop(build_id, None)
        if build is not None:
            await build.close()

    def get(self, build_id: str) -> LiveBuild | None:
        return self.running.get(build_id)


class BuildLog:
    def __init__(self, out: LineSink, live: LiveBuild | None = None):
        self.out = out
        self.live = live
        self.file = tempfile.TemporaryFile()

    async def __call__(self, line: str) -> None:
        self.file.write(line.encode("utf-8", "replace") + b"\n")
        if self.live is not None:
            await self.live.publish(line)
        await self.out(line)

    def save(self, storage: Storage, key: str) -> None:
        with self.file:
            self.file.flush()
            self.file.seek(0)
            storage.put_stream(key, self.file)
