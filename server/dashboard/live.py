"""Server-sent events: a running build's lines, and an app's processes as they change.

Each stream is registered with the application so that stopping the server
ends it at once instead of waiting for the browser to hang up. While it is
open, its session is looked up again every ACCESS_INTERVAL seconds: a session
that ended (its key removed, its password changed, its user deleted) or lost
the app (its user left the app's team) ends the stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from aiohttp import web

from core import log as logging
from core.commands import CommandError
from server.dashboard import views
from server.dashboard.auth import actor, actor_of, load_login
from server.dashboard.pages import platform, requested_build, visible

log = logging.get(__name__)
PS_INTERVAL = 2.0
ACCESS_INTERVAL = 5.0
STREAMS_KEY: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("teresa_streams")


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    return response


def _event(data: str, event: str | None = None) -> bytes:
    lines = data.replace("\r", "").split("\n")
    return ((f"event: {event}\n" if event else "") + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


async def _stream(request: web.Request, events: AsyncIterator[bytes]) -> web.StreamResponse:
    response = await _open(request)
    task = asyncio.current_task()
    assert task is not None
    streams = request.app[STREAMS_KEY]
    streams.add(task)
    watch = asyncio.create_task(_end_when_revoked(request, task))
    try:
        async for chunk in events:
            await response.write(chunk)
    except (ConnectionResetError, asyncio.CancelledError):
        if watch.done() and not watch.cancelled():
            task.uncancel()  # the watch ended it, not the server or the client: return normally
    finally:
        watch.cancel()
        streams.discard(task)
    return response


async def _end_when_revoked(request: web.Request, stream: asyncio.Task[Any]) -> None:
    try:
        while await _still_allowed(request):
            await asyncio.sleep(ACCESS_INTERVAL)
    except Exception:  # a check that cannot be made ends the stream: the browser reconnects and is checked anew
        log.warning("dashboard_stream_check_failed", path=request.path, exc_info=True)
    stream.cancel()


async def _still_allowed(request: web.Request) -> bool:
    """The session is still live and may still see the app it streams (both read from the database now)."""
    login = await load_login(request)
    if login is None:
        return False
    who, name = actor_of(request, login), request.match_info["app"]
    try:
        await platform(request).db.run(lambda s: views.visible_app(s, who, name))
    except CommandError:
        return False
    return True


async def build_lines(request: web.Request) -> web.StreamResponse:
    _build, live = await requested_build(request)

    async def events() -> AsyncIterator[bytes]:
        if live is not None:
            async for line in live.follow():
                yield _event(line)
        yield _event("finished", event="end")  # the page reloads to show the stored log and outcome

    return await _stream(request, events())


async def processes(request: web.Request) -> web.StreamResponse:
    name, who = request.match_info["app"], actor(request)
    await visible(request, lambda s: views.visible_app(s, who, name))

    async def events() -> AsyncIterator[bytes]:
        last = None
        while True:
            found = await views.processes_of(platform(request), name)
            rows = json.dumps(views.process_rows(found or []))
            yield _event(rows, event="ps") if rows != last else b": still here\n\n"
            last = rows
            await asyncio.sleep(PS_INTERVAL)

    return await _stream(request, events())


async def close_streams(app: web.Application) -> None:
    streams: set[asyncio.Task[Any]] = app[STREAMS_KEY]
    for task in list(streams):
        task.cancel()
