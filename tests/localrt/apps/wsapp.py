"""A WebSocket echo app for the router's tests (aiohttp)."""

import os

from aiohttp import web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == web.WSMsgType.TEXT:
            await ws.send_str(f"echo: {message.data}")
        elif message.type == web.WSMsgType.BINARY:
            await ws.send_bytes(message.data[::-1])
    return ws


app = web.Application()
app.router.add_get("/ws", echo)
web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None)
