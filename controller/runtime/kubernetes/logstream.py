"""Container logs streamed live from the API: a reader thread per stream, lines relayed to the event loop.

The official client is synchronous, so each stream is read in its own daemon
thread (a follow can block for as long as the container runs; the shared
default executor is kept for short calls). Lines travel to the loop through an
asyncio.Queue via `call_soon_threadsafe` as they arrive. Every line carries
the kubelet's timestamp, so a dropped stream is reopened and the lines already
relayed are skipped: nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError

from controller.runtime.base import log_timestamp
from controller.runtime.kubernetes.client import KubeClient, KubeError

READ_SIZE = 64 * 1024


def timestamp_key(stamp: str) -> tuple[str, int]:
    """An RFC 3339 (nano) timestamp as a sortable key; its fraction has a varying number of digits."""
    whole, _, rest = stamp.rstrip("Z").partition(".")
    digits = rest[:9] if rest.isdigit() else "0"
    return whole, int(digits.ljust(9, "0"))


def shown_timestamp(key: tuple[str, int] | None) -> str:
    """The kubelet's timestamp (a `timestamp_key`) as `logs` shows every line's (`log_timestamp`)."""
    if key is None:
        return log_timestamp()
    try:
        moment = datetime.datetime.fromisoformat(key[0]).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return log_timestamp()
    return log_timestamp(moment.replace(microsecond=key[1] // 1000))


def split_timestamp(raw: str) -> tuple[tuple[str, int] | None, str]:
    stamp, sep, line = raw.partition(" ")
    if not sep or not stamp[:4].isdigit() or "T" not in stamp:
        return None, raw
    return timestamp_key(stamp), line


@dataclass
class LogCursor:
    """How far a reader got in one container's log, so that a reopened stream resumes after it."""

    last: tuple[str, int] | None = None
    at_last: int = 0          # lines relayed that carry the `last` timestamp
    _skip_equal: int = field(default=0, repr=False)

    def reopened(self) -> None:
        self._skip_equal = self.at_last

    def accept(self, raw: str) -> str | None:
        """The line without its timestamp if it is new, else None."""
        key, line = split_timestamp(raw)
        if key is None or self.last is None or key > self.last:
            if key is not None:
                self.last, self.at_last, self._skip_equal = key, 1, 0
            return line
        if key < self.last:
            return None
        if self._skip_equal > 0:
            self._skip_equal -= 1
            return None
        self.at_last += 1
        return line


@dataclass(frozen=True)
class StreamEnd:
    clean: bool               # the server ended the stream (the container stopped); False: it dropped
    error: str = ""


# What a reader thread hands to the loop: a line, then how the stream ended.
StreamItem = str | StreamEnd


class _Reader(threading.Thread):
    def __init__(self, kube: KubeClient, namespace: str, pod: str, container: str, follow: bool,
                 tail_lines: int | None, previous: bool, emit: Callable[[StreamItem], None]) -> None:
        super().__init__(name=f"log-{pod}", daemon=True)

        def open_log() -> BaseHTTPResponse:
            return kube.open_log(namespace, pod, container, follow=follow, tail_lines=tail_lines, previous=previous)
        self._open = open_log
        self._emit = emit
        self._response: BaseHTTPResponse | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            self._response = response = self._open()
            if self._stopped.is_set():
                response.release_conn()
                return
            self._pump(response)
        except KubeError as exc:
            self._emit(StreamEnd(False, str(exc)))
        except (HTTPError, OSError, ValueError) as exc:
            self._emit(StreamEnd(False, type(exc).__name__))
        else:
            self._emit(StreamEnd(True))

    def _pump(self, response: BaseHTTPResponse) -> None:
        pending = b""
        try:
            while chunk := response.read1(READ_SIZE):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._emit(line.decode(errors="replace"))
        finally:
            if pending:
                self._emit(pending.decode(errors="replace"))
            response.release_conn()

    def stop(self) -> None:
        """Unblocks a read in progress; the thread then ends by itself."""
        self._stopped.set()
        if self._response is not None and self.is_alive():
            with contextlib.suppress(RuntimeError, OSError):  # it may have finished meanwhile
                self._response.shutdown()


async def stream_once(kube: KubeClient, namespace: str, pod: str, container: str,
                      on_line: Callable[[str], Awaitable[None]], *, follow: bool, tail_lines: int | None = None,
                      previous: bool = False) -> StreamEnd:
    """Relay one log stream line by line (with timestamps) until it ends or drops."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[StreamItem] = asyncio.Queue()

    def emit(item: StreamItem) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            pass  # the loop is closed: nobody is listening any more

    reader = _Reader(kube, namespace, pod, container, follow, tail_lines, previous, emit)
    reader.start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, StreamEnd):
                return item
            await on_line(item)
    finally:
        reader.stop()


async def follow_lines(kube: KubeClient, namespace: str, pod: str, container: str, cursor: LogCursor,
                       out: Callable[[str], Awaitable[None]], *, follow: bool = True) -> StreamEnd:
    """One (re)connection: relays the lines `cursor` has not seen yet, without their timestamps."""
    cursor.reopened()

    async def relay(raw: str) -> None:
        line = cursor.accept(raw)
        if line is not None:
            await out(line)

    return await stream_once(kube, namespace, pod, container, relay, follow=follow)


async def tail(kube: KubeClient, namespace: str, pod: str, container: str, lines: int,
               previous: bool = False) -> list[str]:
    """The last `lines` lines of a container's log, [] if there is none to read."""
    found: list[str] = []

    async def keep(raw: str) -> None:
        found.append(split_timestamp(raw)[1])

    end = await stream_once(kube, namespace, pod, container, keep, follow=False, tail_lines=lines, previous=previous)
    return found[-lines:] if end.clean else []
